//! Writing a segment: sort records by time, cut into blocks, encode every column
//! chunk with the smallest codec, then footer and tail ([`encode_segment`]);
//! published atomically through [`crate::fs::write_atomic`] (temp file, fsync,
//! rename, fsync directory).

use std::collections::BTreeMap;
use std::path::Path;

use super::index::IndexBuilder;
use super::layout::{self, BlockMeta, Chunk, ColumnKind, ColumnMeta, Footer, IndexRef, MAGIC};
use super::message;
use super::SegmentError;
use crate::codec::{bits, ints, strs};
use crate::model::{Record, Tenant, Value};

/// How segments are cut and compressed.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Rows per block (the last block may hold fewer).
    pub block_rows: usize,
    /// zstd level for codecs that use zstd.
    pub zstd_level: i32,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            block_rows: 8192,
            zstd_level: 3,
        }
    }
}

/// A column being built: one optional value per row.
enum Builder<'a> {
    /// `_msg`: encoded from the index builder's templates and ordinals.
    Msg,
    Str(Vec<Option<&'a str>>),
    I64(Vec<Option<i64>>),
}

fn presence_and<'a, T: 'a>(rows: &'a [Option<T>]) -> (Option<Vec<u8>>, Vec<&'a T>) {
    let present: Vec<&T> = rows.iter().flatten().collect();
    if present.len() == rows.len() {
        return (None, present);
    }
    let mut bitmap = Vec::new();
    bits::pack(&mut bitmap, rows.iter().map(|r| u64::from(r.is_some())), 1);
    (Some(bitmap), present)
}

/// Encodes one column's rows of one block: presence byte (0 = every row has a value,
/// 1 = a 1-bit-per-row bitmap follows), then the codec bytes of the present values.
/// `None` when no row has a value.
fn encode_chunk(b: &Builder<'_>, range: std::ops::Range<usize>, level: i32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let presence = |bitmap: Option<Vec<u8>>, out: &mut Vec<u8>| match bitmap {
        None => out.push(0),
        Some(bm) => {
            out.push(1);
            out.extend_from_slice(&bm);
        }
    };
    match b {
        Builder::Msg => return None,
        Builder::Str(rows) => {
            let rows = rows.get(range)?;
            let (bitmap, present) = presence_and(rows);
            if present.is_empty() {
                return None;
            }
            presence(bitmap, &mut out);
            out.extend(strs::encode(
                &present.iter().map(|s| **s).collect::<Vec<&str>>(),
                level,
            ));
        }
        Builder::I64(rows) => {
            let rows = rows.get(range)?;
            let (bitmap, present) = presence_and(rows);
            if present.is_empty() {
                return None;
            }
            presence(bitmap, &mut out);
            out.extend(ints::encode(
                &present.into_iter().copied().collect::<Vec<_>>(),
                level,
            ));
        }
    }
    Some(out)
}

fn stream_text(r: &Record) -> String {
    serde_json::to_string(&r.stream).unwrap_or_default()
}

/// Writes `records` (any order) of `tenant` as a segment at `path`. Returns the footer.
pub fn write_segment(
    path: &Path,
    tenant: &Tenant,
    records: &[Record],
    opts: &SegmentOptions,
) -> Result<Footer, SegmentError> {
    write_segment_refs(path, tenant, records.iter().collect(), opts)
}

/// [`write_segment`] for records gathered from several places (any order).
pub fn write_segment_refs(
    path: &Path,
    tenant: &Tenant,
    order: Vec<&Record>,
    opts: &SegmentOptions,
) -> Result<Footer, SegmentError> {
    let (bytes, footer) = encode_segment(tenant, order, opts);
    crate::fs::write_atomic(&crate::fs::RealFs, path, &bytes)?;
    Ok(footer)
}

/// A segment file's bytes holding `order` (any order), and its footer.
pub fn encode_segment(
    tenant: &Tenant,
    mut order: Vec<&Record>,
    opts: &SegmentOptions,
) -> (Vec<u8>, Footer) {
    order.sort_by_key(|r| r.time_ns);

    // The stream labels' text, once per distinct label set (most rows share a few).
    let mut stream_ids: rustc_hash::FxHashMap<&crate::model::Labels, usize> = Default::default();
    let mut stream_texts: Vec<String> = Vec::new();
    let mut stream_of: Vec<usize> = Vec::with_capacity(order.len());
    for r in &order {
        let id = *stream_ids.entry(&r.stream).or_insert_with(|| {
            stream_texts.push(stream_text(r));
            stream_texts.len() - 1
        });
        stream_of.push(id);
    }
    let mut columns: BTreeMap<(ColumnKind, String), Builder<'_>> = BTreeMap::new();
    let n = order.len();
    let mut time = Vec::with_capacity(n);
    let mut stream = Vec::with_capacity(n);
    let mut level = Vec::with_capacity(n);
    for (r, sid) in order.iter().zip(&stream_of) {
        time.push(Some(r.time_ns));
        stream.push(stream_texts.get(*sid).map(String::as_str));
        level.push(r.level.as_deref());
    }
    columns.insert((ColumnKind::Time, "_time".into()), Builder::I64(time));
    columns.insert((ColumnKind::Msg, "_msg".into()), Builder::Msg);
    columns.insert((ColumnKind::Stream, "_stream".into()), Builder::Str(stream));
    if level.iter().any(Option::is_some) {
        columns.insert((ColumnKind::Level, "level".into()), Builder::Str(level));
    }
    // Field columns by borrowed name (no allocation per value), moved into
    // `columns` once all rows are in.
    let mut field_columns: rustc_hash::FxHashMap<(ColumnKind, &str), Builder<'_>> =
        Default::default();
    for (i, r) in order.iter().enumerate() {
        for (name, value) in &r.fields {
            let kind = match value {
                Value::Str(_) => ColumnKind::Str,
                Value::I64(_) => ColumnKind::I64,
                Value::F64(_) => ColumnKind::F64,
                Value::Bool(_) => ColumnKind::Bool,
            };
            // The column is made (n empty rows) once, not once per value: building it
            // eagerly here made a segment with fields quadratic in its rows.
            let col = field_columns
                .entry((kind, name.as_str()))
                .or_insert_with(|| match kind {
                    ColumnKind::Str => Builder::Str(vec![None; n]),
                    _ => Builder::I64(vec![None; n]),
                });
            match (col, value) {
                (Builder::Str(v), Value::Str(s)) => v[i] = Some(s.as_str()),
                (Builder::I64(v), Value::I64(x)) => v[i] = Some(*x),
                (Builder::I64(v), Value::F64(x)) => v[i] = Some(x.to_bits() as i64),
                (Builder::I64(v), Value::Bool(x)) => v[i] = Some(i64::from(*x)),
                _ => unreachable!("column kind is derived from the value"),
            }
        }
    }
    for ((kind, name), col) in field_columns {
        // A field named like a fixed column keeps its own (kind, name) entry, as
        // before: the fixed columns' kinds differ from the field kinds.
        columns.entry((kind, name.to_string())).or_insert(col);
    }

    let block_rows = opts.block_rows.max(1);
    let mut data = layout::header().to_vec();
    let mut blocks = Vec::new();
    let mut metas: Vec<ColumnMeta> = columns
        .keys()
        .map(|(kind, name)| ColumnMeta {
            name: name.clone(),
            kind: *kind,
            chunks: Vec::new(),
        })
        .collect();
    // First pass: split messages into templates and variables and collect every
    // term, block by block; the dictionaries' order (and so every ordinal) is only
    // known once all rows are seen.
    let mut index = IndexBuilder::default();
    // A field value's text, reused.
    let mut text = String::new();
    let mut start = 0;
    let mut block_id = 0u32;
    while start < n {
        let end = (start + block_rows).min(n);
        index.start_block(block_id);
        for r in &order[start..end] {
            index.message(&r.msg);
            if let Some(l) = &r.level {
                index.field("level", l);
            }
            for (k, v) in &r.stream {
                index.field(k, v);
            }
            for (name, value) in &r.fields {
                text.clear();
                value.write_text(&mut text);
                index.field(name, &text);
            }
        }
        block_id += 1;
        start = end;
    }
    let row_templates = std::mem::take(&mut index.row_templates);
    let finished = index.finish(opts.zstd_level);
    let slots_of = |t: u32| {
        finished
            .template_slots
            .get(t as usize)
            .copied()
            .unwrap_or(0)
    };
    let mut var_at = 0usize;
    let mut start = 0;
    while start < n {
        let end = (start + block_rows).min(n);
        let ts = &order[start..end];
        blocks.push(BlockMeta {
            rows: (end - start) as u32,
            min_time: ts.iter().map(|r| r.time_ns).min().unwrap_or(0),
            max_time: ts.iter().map(|r| r.time_ns).max().unwrap_or(0),
        });
        for (meta, builder) in metas.iter_mut().zip(columns.values()) {
            let encoded = match builder {
                Builder::Msg => {
                    let templates = row_templates.get(start..end).unwrap_or(&[]);
                    let vars: usize = templates.iter().map(|t| slots_of(*t)).sum();
                    let ordinals = finished
                        .row_ordinals
                        .get(var_at..var_at + vars)
                        .unwrap_or(&[]);
                    var_at += vars;
                    let mut out = vec![0u8];
                    message::encode_chunk(&mut out, templates, ordinals, slots_of, opts.zstd_level);
                    Some(out)
                }
                _ => encode_chunk(builder, start..end, opts.zstd_level),
            };
            let chunk = match encoded {
                Some(bytes) => {
                    let c = Chunk {
                        offset: data.len() as u64,
                        len: bytes.len() as u32,
                        crc: crc32fast::hash(&bytes),
                    };
                    data.extend_from_slice(&bytes);
                    c
                }
                None => Chunk {
                    offset: 0,
                    len: 0,
                    crc: 0,
                },
            };
            meta.chunks.push(chunk);
        }
        start = end;
    }
    let (section, dir_len) = (finished.section, finished.dir_len);
    let index = Some(IndexRef {
        offset: data.len() as u64,
        len: section.len() as u64,
        dir_len: dir_len as u64,
        dir_crc: crc32fast::hash(section.get(..dir_len).unwrap_or(&[])),
    });
    data.extend_from_slice(&section);
    let footer = Footer {
        tenant: tenant.as_str().to_string(),
        rows: n as u64,
        blocks,
        columns: metas,
        index,
    };
    let fbytes = footer.encode();
    data.extend_from_slice(&fbytes);
    data.extend_from_slice(&(fbytes.len() as u32).to_le_bytes());
    data.extend_from_slice(&crc32fast::hash(&fbytes).to_le_bytes());
    data.extend_from_slice(&MAGIC);
    (data, footer)
}
