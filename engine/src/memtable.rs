//! The memtable: acknowledged records not yet in a segment, grouped by tenant and
//! time partition, queryable by a scan with the shared tokenizer.

use std::collections::BTreeMap;

use crate::model::{Record, Tenant};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The UTC day of a timestamp as `YYYYMMDD`.
pub fn partition_of(time_ns: i64) -> String {
    day_name(time_ns.div_euclid(NANOS_PER_DAY))
}

fn day_name(day: i64) -> String {
    let (y, m, d) = crate::ingest::time::civil_from_days(day);
    format!("{y:04}{m:02}{d:02}")
}

/// Rough in-memory size of a record, for the flush threshold.
pub fn record_bytes(r: &Record) -> usize {
    64 + r.msg.len()
        + r.level.as_ref().map_or(0, String::len)
        + r.stream
            .iter()
            .map(|(k, v)| k.len() + v.len() + 32)
            .sum::<usize>()
        + r.fields
            .iter()
            .map(|(k, v)| k.len() + v.text_len() + 32)
            .sum::<usize>()
}

/// One (tenant, day) of the memtable.
#[derive(Debug, Default)]
struct Part {
    records: Vec<Record>,
    /// Per record, the sources its batch moved (an id of `Memtable::origins`; 0:
    /// none): a retraction takes back only records its source stored.
    origins: Vec<u32>,
    bytes: usize,
}

/// Records by (tenant, UTC day number).
#[derive(Debug, Default)]
pub struct Memtable {
    parts: BTreeMap<(Tenant, i64), Part>,
    /// The source keys of positioned batches (id - 1 -> keys), interned.
    origins: Vec<Vec<String>>,
    origin_ids: std::collections::HashMap<Vec<String>, u32>,
    bytes: usize,
    rows: u64,
    raw_bytes: u64,
    /// When the first record went in (the age policy flushes by it).
    first_at: Option<std::time::Instant>,
}

/// Records of one tenant to be written as one segment: one day, or a run of
/// consecutive small days (see [`Memtable::segments`]).
#[derive(Debug)]
pub struct SegmentGroup<'a> {
    /// The tenant.
    pub tenant: &'a Tenant,
    /// The partition: the first day, `YYYYMMDD`.
    pub partition: String,
    /// The records, one slice per day.
    pub records: Vec<&'a [Record]>,
}

impl Memtable {
    /// How long ago its first record went in; `None` while empty.
    pub fn age(&self) -> Option<std::time::Duration> {
        self.first_at.map(|t| t.elapsed())
    }

    /// Adds records of `tenant`; `raw_bytes` is their input size.
    pub fn insert(&mut self, tenant: &Tenant, records: Vec<Record>, raw_bytes: u64) {
        self.insert_from(tenant, records, raw_bytes, &[]);
    }

    /// [`Self::insert`] for a batch that moved the numbered sources `sources` (their
    /// position keys): [`Self::remove`] can then take them back for one of them.
    pub fn insert_from(
        &mut self,
        tenant: &Tenant,
        records: Vec<Record>,
        raw_bytes: u64,
        sources: &[String],
    ) {
        let origin = if sources.is_empty() {
            0
        } else {
            match self.origin_ids.get(sources) {
                Some(id) => *id,
                None => {
                    self.origins.push(sources.to_vec());
                    let id = self.origins.len() as u32;
                    self.origin_ids.insert(sources.to_vec(), id);
                    id
                }
            }
        };
        self.raw_bytes += raw_bytes;
        if self.first_at.is_none() && !records.is_empty() {
            self.first_at = Some(std::time::Instant::now());
        }
        // Consecutive records of a batch are mostly of one day: look the part up
        // once per run of a day, not once per record.
        let mut current: Option<(i64, &mut Part)> = None;
        for r in records {
            let day = r.time_ns.div_euclid(NANOS_PER_DAY);
            let part = match current.take() {
                Some((d, p)) if d == day => p,
                _ => self.parts.entry((tenant.clone(), day)).or_default(),
            };
            let b = record_bytes(&r);
            part.bytes += b;
            part.records.push(r);
            part.origins.push(origin);
            self.bytes += b;
            self.rows += 1;
            current = Some((day, part));
        }
    }

    /// Removes the records of `tenant` stored by a batch that moved source
    /// `source` (see [`Self::insert_from`]) and that `drop` picks; how many went.
    pub fn remove(
        &mut self,
        tenant: &Tenant,
        source: &str,
        mut drop: impl FnMut(&Record) -> bool,
    ) -> u64 {
        let from_source: Vec<bool> = std::iter::once(false)
            .chain(
                self.origins
                    .iter()
                    .map(|keys| keys.iter().any(|k| k == source)),
            )
            .collect();
        let mut removed = 0u64;
        for ((t, _), part) in self.parts.iter_mut() {
            if t != tenant {
                continue;
            }
            let records = std::mem::take(&mut part.records);
            let origins = std::mem::take(&mut part.origins);
            for (r, o) in records.into_iter().zip(origins) {
                if from_source.get(o as usize) == Some(&true) && drop(&r) {
                    let b = record_bytes(&r);
                    part.bytes -= b;
                    self.bytes -= b;
                    self.rows -= 1;
                    self.raw_bytes = self.raw_bytes.saturating_sub(r.msg.len() as u64 + 1);
                    removed += 1;
                } else {
                    part.records.push(r);
                    part.origins.push(o);
                }
            }
        }
        self.parts.retain(|_, p| !p.records.is_empty());
        removed
    }

    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records held.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Input bytes of the records held.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// The segments a flush writes: per tenant, each day on its own, except that
    /// consecutive days are packed into one segment while together they hold less
    /// than `pack_bytes` (sparse logs would otherwise make one tiny segment per day,
    /// each paying for its own dictionaries, footer and manifest entry).
    pub fn segments(&self, pack_bytes: usize) -> Vec<SegmentGroup<'_>> {
        let mut out: Vec<SegmentGroup<'_>> = Vec::new();
        let mut open: Option<(usize, &Tenant)> = None;
        for ((tenant, day), part) in &self.parts {
            let fits =
                open.is_some_and(|(bytes, t)| t == tenant && bytes + part.bytes < pack_bytes);
            match out.last_mut() {
                Some(g) if fits => {
                    g.records.push(&part.records);
                    open = open.map(|(b, t)| (b + part.bytes, t));
                }
                _ => {
                    out.push(SegmentGroup {
                        tenant,
                        partition: day_name(*day),
                        records: vec![&part.records],
                    });
                    open = Some((part.bytes, tenant));
                }
            }
        }
        out
    }

    /// Every record of `tenant`.
    pub fn records_of<'a>(&'a self, tenant: &'a Tenant) -> impl Iterator<Item = &'a Record> + 'a {
        self.parts
            .iter()
            .filter(move |((t, _), _)| t == tenant)
            .flat_map(|(_, p)| p.records.iter())
    }

    /// Records of `tenant` whose `_msg` contains all `words` as tokens.
    pub fn search<'a>(
        &'a self,
        tenant: &'a Tenant,
        words: &'a [&'a str],
    ) -> impl Iterator<Item = &'a Record> + 'a {
        self.parts
            .iter()
            .filter(move |((t, _), _)| t == tenant)
            .flat_map(|(_, p)| p.records.iter())
            .filter(move |r| {
                words
                    .iter()
                    .all(|w| crate::token::contains_token(&r.msg, w))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(day: i64, len: usize) -> Record {
        Record {
            time_ns: day * NANOS_PER_DAY + 1,
            msg: "x".repeat(len),
            stream: Default::default(),
            level: None,
            fields: Vec::new(),
        }
    }

    #[test]
    fn small_consecutive_days_share_a_segment_big_ones_do_not() {
        let a = Tenant::default();
        let b = Tenant::new("b").unwrap();
        let mut m = Memtable::default();
        // Days 0-2 small, day 3 big, days 4-5 small; tenant b small.
        let mut recs: Vec<Record> = (0..3).map(|d| rec(d, 100)).collect();
        recs.push(rec(3, 10_000));
        recs.extend((4..6).map(|d| rec(d, 100)));
        m.insert(&a, recs, 0);
        m.insert(&b, vec![rec(0, 100), rec(1, 100)], 0);
        let groups: Vec<(String, String, usize)> = m
            .segments(5_000)
            .iter()
            .map(|g| {
                (
                    g.tenant.as_str().to_string(),
                    g.partition.clone(),
                    g.records.iter().map(|r| r.len()).sum(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("b".into(), "19700101".into(), 2),
                ("default".into(), "19700101".into(), 3),
                ("default".into(), "19700104".into(), 1),
                ("default".into(), "19700105".into(), 2),
            ]
        );
        // No packing: one segment per (tenant, day).
        assert_eq!(m.segments(0).len(), 8);
    }
}
