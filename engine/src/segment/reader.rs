//! Reading a segment: map the file, verify magic, version and footer checksum once,
//! then decode single column chunks on demand, each CRC-checked before decoding.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use roaring::RoaringBitmap;

use super::index::{
    decode_directory, decode_templates, scan_int_block, scan_term_block, var_text, Directory,
    FrameRef, Want, NS_MSG,
};
use super::layout::{
    footer_crc32, ColumnKind, ColumnMeta, Footer, FORMAT_VERSION, HEADER_LEN, MAGIC,
    OLDEST_SUPPORTED_VERSION, TAIL_LEN,
};
use super::message::{self, Template};
use super::SegmentError;
use crate::codec::{bits, ints, strs};
use crate::mmap;
use crate::model::{Labels, Record, Value};
use crate::tier::Tier;

/// Decoded values of one chunk (present rows only).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Strings.
    Str(Vec<String>),
    /// Integers (also time, float bits and booleans before conversion).
    I64(Vec<i64>),
}

/// One column of one block, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBlock {
    /// Per row, whether it has a value; `None` means every row does.
    pub present: Option<Vec<bool>>,
    /// The values of the rows that have one, in row order.
    pub values: Values,
}

/// Where a segment's bytes are: a mapped local file, or an object in the store
/// (read through the tier's caches).
#[derive(Debug)]
enum Source {
    Local(bytes::Bytes),
    Remote {
        tier: std::sync::Arc<Tier>,
        object: String,
        size: u64,
        /// The header, when known without a request (from the manifest).
        head: Option<bytes::Bytes>,
        /// The object's last bytes (tail, footer, often the index directory),
        /// fetched at open.
        tail: bytes::Bytes,
        tail_start: u64,
    },
}

/// Bytes of the end of an offloaded segment fetched at open: enough for the
/// footer of a segment of a few hundred blocks in one request.
const REMOTE_TAIL: u64 = 64 << 10;

/// A column chunk of an offloaded segment that is not cached brings the same
/// column's chunks of the blocks up to this many before and after it with it:
/// scans read a column block after block (docs/decisions/0005-object-store-reads.md).
const READAHEAD_BLOCKS: usize = 16;

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::Local(b) => b.len() as u64,
            Source::Remote { size, .. } => *size,
        }
    }

    /// Bytes `[start, start + len)`; `None` when outside the file. `index`: footer
    /// or index bytes (kept in the memory cache when remote).
    fn range(
        &self,
        path: &Path,
        start: u64,
        len: u64,
        index: bool,
    ) -> Result<Option<bytes::Bytes>, SegmentError> {
        let Some(end) = start.checked_add(len).filter(|e| *e <= self.len()) else {
            return Ok(None);
        };
        match self {
            Source::Local(b) => Ok(Some(b.slice(start as usize..end as usize))),
            Source::Remote {
                tier,
                object,
                tail,
                tail_start,
                head,
                ..
            } => {
                if let Some(h) = head.as_ref().filter(|h| end <= h.len() as u64) {
                    return Ok(Some(h.slice(start as usize..end as usize)));
                }
                if start >= *tail_start {
                    let a = (start - tail_start) as usize;
                    return Ok(Some(tail.slice(a..a + len as usize)));
                }
                tier.read(object, start, len, index)
                    .map(Some)
                    .map_err(|source| SegmentError::Remote {
                        path: path.to_path_buf(),
                        source: Box::new(source),
                    })
            }
        }
    }
}

/// An open segment.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    src: Source,
    footer: Footer,
    /// The index directory: where each term and integer block is.
    dir: Directory,
    /// The templates, decoded when a `_msg` chunk is first read.
    templates: OnceLock<Vec<Template>>,
    /// The templates' words, indexed, built when a query first asks for a word.
    vocab: OnceLock<Vocab>,
    /// Per term block, the text of each entry that is a `_msg` token, decoded when
    /// a message needs one of them.
    term_texts: Vec<OnceLock<Vec<Option<Box<str>>>>>,
    /// Per integer block, its values, decoded on demand.
    int_values: Vec<OnceLock<Vec<u64>>>,
}

/// The words of a segment's templates: each distinct normalized word once, the
/// templates holding it, and each template as a sequence of word ids (`None` for a
/// placeholder). Built once per open segment, so a query's word, phrase and prefix
/// conditions cost a hash lookup instead of tokenizing every template.
#[derive(Debug, Default)]
struct Vocab {
    ids: rustc_hash::FxHashMap<Box<str>, u32>,
    /// Per word id, its templates (increasing, distinct).
    templates: Vec<Vec<u32>>,
    /// Per template, its token sequence.
    seqs: Vec<Vec<Option<u32>>>,
}

impl Vocab {
    fn build(templates: &[Template]) -> Vocab {
        let mut v = Vocab::default();
        for (t, tpl) in templates.iter().enumerate() {
            let mut seq = Vec::new();
            for (i, p) in tpl.pieces.iter().enumerate() {
                for w in crate::token::tokens(p) {
                    let norm = crate::token::normalize(w);
                    let id = match v.ids.get(norm.as_ref()) {
                        Some(id) => *id,
                        None => {
                            let id = v.templates.len() as u32;
                            v.ids.insert(norm.into(), id);
                            v.templates.push(Vec::new());
                            id
                        }
                    };
                    if let Some(list) = v.templates.get_mut(id as usize) {
                        if list.last() != Some(&(t as u32)) {
                            list.push(t as u32);
                        }
                    }
                    seq.push(Some(id));
                }
                if i < tpl.slots.len() {
                    seq.push(None);
                }
            }
            v.seqs.push(seq);
        }
        v
    }

    /// A per-template flag set from template ids.
    fn set(&self, ids: impl IntoIterator<Item = u32>) -> Vec<bool> {
        let mut set = vec![false; self.seqs.len()];
        for t in ids {
            if let Some(x) = set.get_mut(t as usize) {
                *x = true;
            }
        }
        set
    }
}

/// The rows (of `n`) that have a value, given a chunk's presence bitmap.
fn present_rows(present: &Option<Vec<bool>>, n: usize) -> Vec<usize> {
    match present {
        None => (0..n).collect(),
        Some(p) => p
            .iter()
            .enumerate()
            .filter(|(_, x)| **x)
            .map(|(i, _)| i)
            .collect(),
    }
}

/// A string column's block as distinct values and per-row ids.
#[derive(Debug, Clone, PartialEq)]
pub struct StrColumn {
    /// Per row, whether it has a value; `None` means every row does.
    pub present: Option<Vec<bool>>,
    /// The values.
    pub dict: strs::StrList,
    /// Per row with a value, its index in `dict`; `None`: the i-th row with a value
    /// is `dict[i]`.
    pub ids: Option<Vec<u32>>,
}

impl StrColumn {
    /// Per block row (of `rows`), the index in `dict` of its value.
    pub fn row_ids(&self, rows: usize) -> Vec<Option<u32>> {
        let mut out = vec![None; rows];
        for (v, r) in present_rows(&self.present, rows).into_iter().enumerate() {
            let id = match &self.ids {
                Some(ids) => ids.get(v).copied(),
                None => u32::try_from(v).ok(),
            };
            if let Some(slot) = out.get_mut(r) {
                *slot = id;
            }
        }
        out
    }
}

/// A column chunk's CRC-checked bytes, split from its presence bitmap.
struct RawChunk {
    kind: ColumnKind,
    offset: u64,
    present: Option<Vec<bool>>,
    bytes: bytes::Bytes,
    n: usize,
}

/// How one query word is checked against a row's template id and ordinals.
#[derive(Debug)]
enum Matcher {
    /// The word is not in the segment.
    Never,
    /// A digit-free word: the templates containing it.
    Templates(Vec<bool>),
    /// A canonical integer: its ordinal.
    Int(u32),
    /// Another variable: the ordinals of its spellings.
    Str(std::ops::Range<u32>),
    /// Tokens containing one of some strings: the templates with such a word, and
    /// the integer and string ordinals of such tokens.
    Contains {
        templates: Vec<bool>,
        ints: RoaringBitmap,
        strs: RoaringBitmap,
    },
    /// A prefix: templates with a word starting with it, integer ordinal ranges,
    /// the string-variable ordinal range.
    Prefix {
        templates: Vec<bool>,
        ints: Vec<std::ops::Range<u32>>,
        strs: std::ops::Range<u32>,
    },
}

/// Predicates prepared for one segment ([`SegmentReader::msg_matchers`]).
#[derive(Debug)]
pub struct MsgMatchers(Vec<Matcher>);

impl MsgMatchers {
    /// Whether predicate `i` can match no row of the segment (its words are not in
    /// the segment): then no index lookup is needed to know.
    pub fn never(&self, i: usize) -> bool {
        matches!(self.0.get(i), Some(Matcher::Never))
    }
}

/// A condition on `_msg` checked on template ids and ordinals
/// ([`SegmentReader::msg_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgPredicate<'a> {
    /// Contains this token (ASCII case ignored).
    Word(&'a str),
    /// Contains a token starting with this (ASCII case ignored).
    Prefix(&'a str),
    /// Contains these tokens consecutively (ASCII case ignored), every one of them a
    /// template word ([`is_template_word`]): decided by the template alone.
    Phrase(&'a [String]),
    /// Has a token containing one of these strings (case as given). A prefilter:
    /// for a regex, strings every match must hold inside one token.
    Contains(&'a [String]),
}

/// Whether `tok` (one token) is stored in templates rather than as a variable: a
/// phrase of such tokens is decided per template, without reading variables.
pub fn is_template_word(tok: &str) -> bool {
    !message::is_variable(tok)
}

impl Matcher {
    /// Whether every row with template `t` matches, whatever its variables.
    fn template(&self, t: u32) -> bool {
        match self {
            Matcher::Templates(set)
            | Matcher::Prefix { templates: set, .. }
            | Matcher::Contains { templates: set, .. } => {
                set.get(t as usize).copied().unwrap_or(false)
            }
            Matcher::Never | Matcher::Int(_) | Matcher::Str(_) => false,
        }
    }

    /// Whether a row with a variable `o` in an integer (`int`) or string placeholder
    /// matches.
    fn ordinal(&self, int: bool, o: u32) -> bool {
        match self {
            Matcher::Never | Matcher::Templates(_) => false,
            Matcher::Int(x) => int && o == *x,
            Matcher::Str(r) => !int && r.contains(&o),
            Matcher::Contains { ints, strs, .. } => {
                if int {
                    ints.contains(o)
                } else {
                    strs.contains(o)
                }
            }
            Matcher::Prefix { ints, strs, .. } => {
                if int {
                    ints.iter().any(|r| r.contains(&o))
                } else {
                    strs.contains(&o)
                }
            }
        }
    }

    /// Whether variables in an integer (`int`) or string placeholder can match.
    fn wants(&self, int: bool) -> bool {
        match self {
            Matcher::Never | Matcher::Templates(_) => false,
            Matcher::Int(_) => int,
            Matcher::Str(_) => !int,
            Matcher::Contains { ints, strs, .. } => {
                if int {
                    !ints.is_empty()
                } else {
                    !strs.is_empty()
                }
            }
            Matcher::Prefix { ints, strs, .. } => {
                if int {
                    !ints.is_empty()
                } else {
                    !strs.is_empty()
                }
            }
        }
    }

    /// Whether variables can decide a row (else templates alone do).
    fn needs_ordinals(&self) -> bool {
        !matches!(self, Matcher::Never | Matcher::Templates(_))
    }
}

/// Marks, per matcher, the block rows whose template or variables match.
struct MarkRows<'a> {
    matchers: &'a [Matcher],
    templates: &'a [Template],
    /// Block row of each chunk row.
    block_rows: &'a [usize],
    out: &'a mut [Vec<bool>],
    /// The matchers that look at the current placeholder's variables.
    slot: Vec<usize>,
    /// Whether the current placeholder is an integer one.
    int: bool,
}

impl MarkRows<'_> {
    fn mark(&mut self, i: usize, m: usize) {
        if let Some(row) = self.block_rows.get(i) {
            if let Some(x) = self.out.get_mut(m).and_then(|o| o.get_mut(*row)) {
                *x = true;
            }
        }
    }
}

impl message::ChunkVisitor for MarkRows<'_> {
    fn row(&mut self, i: usize, t: u32) {
        for m in 0..self.matchers.len() {
            if self.matchers.get(m).is_some_and(|x| x.template(t)) {
                self.mark(i, m);
            }
        }
    }

    fn slot(&mut self, t: u32, slot: usize) -> bool {
        let int = self
            .templates
            .get(t as usize)
            .and_then(|tpl| tpl.slots.get(slot))
            .copied()
            .unwrap_or(false);
        self.slot.clear();
        for (m, x) in self.matchers.iter().enumerate() {
            if x.wants(int) {
                self.slot.push(m);
            }
        }
        self.int = int;
        !self.slot.is_empty()
    }

    fn ordinal(&mut self, i: usize, o: u32) {
        for k in 0..self.slot.len() {
            let Some(&m) = self.slot.get(k) else { continue };
            if self.matchers.get(m).is_some_and(|x| x.ordinal(self.int, o)) {
                self.mark(i, m);
            }
        }
    }
}

/// Bytes of a segment's index section by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSizes {
    /// The directory frame.
    pub directory: u64,
    /// Term blocks (words, string variables, field pairs, with postings).
    pub terms: u64,
    /// Integer blocks (integer variables, with postings).
    pub integers: u64,
    /// The templates frame.
    pub templates: u64,
    /// Number of templates.
    pub template_count: u64,
}

/// The smallest key above every key that starts with `prefix` (`None`: no bound).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut hi = prefix.to_vec();
    while let Some(last) = hi.pop() {
        if last < u8::MAX {
            hi.push(last + 1);
            return Some(hi);
        }
    }
    None
}

/// The value ranges of canonical integers whose decimal text starts with `tok`.
fn int_prefix_ranges(tok: &[u8]) -> Vec<(u64, u64)> {
    if tok.is_empty() {
        return vec![(0, u64::MAX)];
    }
    if !tok.iter().all(u8::is_ascii_digit) || tok.len() > 19 {
        return Vec::new();
    }
    if tok.first() == Some(&b'0') {
        return if tok.len() == 1 {
            vec![(0, 0)]
        } else {
            Vec::new()
        };
    }
    let Some(p) = std::str::from_utf8(tok)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut scale = 1u64;
    for _ in tok.len()..=19 {
        let (Some(lo), Some(next)) = (p.checked_mul(scale), (p + 1).checked_mul(scale)) else {
            break;
        };
        out.push((lo, next - 1));
        let Some(s) = scale.checked_mul(10) else {
            break;
        };
        scale = s;
    }
    out
}

impl SegmentReader {
    /// Opens and verifies the file's frame (magic, version, footer checksum).
    pub fn open(path: impl AsRef<Path>) -> Result<SegmentReader, SegmentError> {
        let path = path.as_ref().to_path_buf();
        let file = fs::File::open(&path).map_err(|source| SegmentError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
        let map = mmap::map(&file).map_err(|source| SegmentError::Io {
            op: "mmap",
            path: path.clone(),
            source,
        })?;
        SegmentReader::parse(path, Source::Local(bytes::Bytes::from_owner(map)))
    }

    /// Opens offloaded segment `object` (`size` bytes) through `tier`. With `hint`
    /// = (where the index directory starts, format version), from the manifest: one
    /// GET of the index directory, footer and tail, and the header made from the
    /// version. Without: the header and the last 64 KiB (footer, usually the index
    /// directory), concurrently. Every other byte range is fetched when a query
    /// first needs it. Errors name the object as `<url>/<object>`.
    pub fn open_remote(
        tier: std::sync::Arc<Tier>,
        object: &str,
        size: u64,
        hint: Option<(u64, u16)>,
    ) -> Result<SegmentReader, SegmentError> {
        let path = PathBuf::from(format!("{}/{object}", tier.cfg.url.trim_end_matches('/')));
        let (tail_start, head) = match hint {
            Some((from, version)) if from >= HEADER_LEN as u64 && from < size => {
                let mut h = Vec::with_capacity(HEADER_LEN);
                h.extend_from_slice(&MAGIC);
                h.extend_from_slice(&version.to_le_bytes());
                h.resize(HEADER_LEN, 0);
                (from, Some(bytes::Bytes::from(h)))
            }
            _ => (size - size.min(REMOTE_TAIL), None),
        };
        let tail_len = size - tail_start;
        // The header too, in the same round trip (it is read first by `parse`).
        let head_len = (HEADER_LEN as u64).min(tail_start);
        let mut ranges = vec![(tail_start, tail_len)];
        if head_len > 0 && head.is_none() {
            ranges.push((0, head_len));
        }
        let mut got = tier
            .read_many(object, &ranges, true)
            .map_err(|source| SegmentError::Remote {
                path: path.clone(),
                source: Box::new(source),
            })?
            .into_iter();
        let tail = got.next().unwrap_or_default();
        let src = Source::Remote {
            tier,
            object: object.to_string(),
            size,
            head,
            tail,
            tail_start,
        };
        SegmentReader::parse(path, src)
    }

    fn parse(path: PathBuf, src: Source) -> Result<SegmentReader, SegmentError> {
        let corrupt = |offset: usize, what: String| SegmentError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            what,
        };
        let size = src.len() as usize;
        if size < HEADER_LEN + TAIL_LEN {
            return Err(corrupt(
                0,
                format!("{size} bytes is too short for a segment"),
            ));
        }
        let header = src
            .range(&path, 0, HEADER_LEN as u64, true)?
            .unwrap_or_default();
        let b: &[u8] = &header;
        if b.get(..8) != Some(&MAGIC[..]) {
            return Err(corrupt(0, "bad magic at the start".into()));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if !(OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(corrupt(
                8,
                format!("format version {version} not supported"),
            ));
        }
        // Flags and reserved bytes are zero in version 1; anything else is damage.
        if let Some(i) = b[10..HEADER_LEN].iter().position(|x| *x != 0) {
            return Err(corrupt(10 + i, "non-zero reserved header byte".into()));
        }
        let tail = size - TAIL_LEN;
        let tb = src
            .range(&path, tail as u64, TAIL_LEN as u64, true)?
            .unwrap_or_default();
        if tb.get(8..) != Some(&MAGIC[..]) {
            return Err(corrupt(
                tail + 8,
                "bad magic at the end (truncated file?)".into(),
            ));
        }
        let footer_len = u32::from_le_bytes([tb[0], tb[1], tb[2], tb[3]]) as usize;
        let footer_crc = u32::from_le_bytes([tb[4], tb[5], tb[6], tb[7]]);
        let footer_start = tail
            .checked_sub(footer_len)
            .filter(|s| *s >= HEADER_LEN)
            .ok_or_else(|| {
                corrupt(
                    tail,
                    format!("footer length {footer_len} does not fit the file"),
                )
            })?;
        let fbytes = src
            .range(&path, footer_start as u64, footer_len as u64, true)?
            .unwrap_or_default();
        let fbytes: &[u8] = &fbytes;
        let crc = footer_crc32(version, b, fbytes);
        if crc != footer_crc {
            return Err(corrupt(
                footer_start,
                format!("footer checksum {crc:#010x}, expected {footer_crc:#010x}"),
            ));
        }
        let footer = Footer::decode(fbytes, footer_start as u64)
            .map_err(|e| corrupt(footer_start + e.offset, e.what))?;
        let dir = match &footer.index {
            None => Directory::default(),
            Some(ix) => {
                let start = ix.offset as usize;
                let dir = src
                    .range(&path, ix.offset, ix.dir_len, true)?
                    .ok_or_else(|| corrupt(start, "index directory outside the file".into()))?;
                let dir: &[u8] = &dir;
                let crc = crc32fast::hash(dir);
                if crc != ix.dir_crc {
                    return Err(corrupt(
                        start,
                        format!(
                            "index directory checksum {crc:#010x}, expected {:#010x}",
                            ix.dir_crc
                        ),
                    ));
                }
                decode_directory(dir, (ix.len - ix.dir_len) as usize)
                    .map_err(|e| corrupt(start, e))?
            }
        };
        let term_texts = (0..dir.terms.len()).map(|_| OnceLock::new()).collect();
        let int_values = (0..dir.ints.len()).map(|_| OnceLock::new()).collect();
        Ok(SegmentReader {
            path,
            src,
            footer,
            dir,
            templates: OnceLock::new(),
            vocab: OnceLock::new(),
            term_texts,
            int_values,
        })
    }

    /// The bytes of a frame of the index section, CRC-checked.
    fn frame(&self, fr: &FrameRef, what: &str) -> Result<bytes::Bytes, SegmentError> {
        let Some(ix) = &self.footer.index else {
            return Err(SegmentError::NotFound("the segment has no index".into()));
        };
        let start = ix.offset as usize + ix.dir_len as usize + fr.offset;
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: start as u64,
            what,
        };
        let bytes = self
            .src
            .range(&self.path, start as u64, fr.len as u64, true)?
            .ok_or_else(|| corrupt(format!("{what} outside the file")))?;
        let crc = crc32fast::hash(&bytes);
        if crc != fr.crc {
            return Err(corrupt(format!(
                "{what}: checksum {crc:#010x}, expected {:#010x}",
                fr.crc
            )));
        }
        Ok(bytes)
    }

    fn corrupt_at(&self, fr: &FrameRef, what: String) -> SegmentError {
        let base = self
            .footer
            .index
            .map_or(0, |ix| ix.offset as usize + ix.dir_len as usize);
        SegmentError::Corrupt {
            path: self.path.clone(),
            offset: (base + fr.offset) as u64,
            what,
        }
    }

    /// Whether the segment has one block (its index then stores no postings).
    fn single(&self) -> bool {
        self.footer.blocks.len() <= 1
    }

    /// Entries block `i` of a dictionary with `blocks` blocks must hold.
    fn expected(&self, i: usize, blocks: usize) -> std::ops::RangeInclusive<usize> {
        if i + 1 == blocks {
            1..=self.dir.per_block
        } else {
            self.dir.per_block..=self.dir.per_block
        }
    }

    /// Walks term block `i` (see [`scan_term_block`]).
    fn scan_terms(
        &self,
        i: usize,
        want: impl FnMut(usize, &[u8]) -> Want,
        take: impl FnMut(usize, RoaringBitmap),
    ) -> Result<(), SegmentError> {
        let Some((_, fr)) = self.dir.terms.get(i) else {
            return Ok(());
        };
        let what = format!("index term block {i}");
        let bytes = self.frame(fr, &what)?;
        let expect = self.expected(i, self.dir.terms.len());
        scan_term_block(&bytes, expect, self.single(), want, take)
            .map_err(|e| self.corrupt_at(fr, format!("{what}: {e}")))
    }

    /// Walks integer block `i` (see [`scan_int_block`]).
    fn scan_ints(
        &self,
        i: usize,
        want: impl FnMut(usize, u64) -> Want,
        take: impl FnMut(usize, RoaringBitmap),
    ) -> Result<(), SegmentError> {
        let Some((_, fr)) = self.dir.ints.get(i) else {
            return Ok(());
        };
        let what = format!("index integer block {i}");
        let bytes = self.frame(fr, &what)?;
        let expect = self.expected(i, self.dir.ints.len());
        scan_int_block(&bytes, expect, self.single(), want, take)
            .map_err(|e| self.corrupt_at(fr, format!("{what}: {e}")))
    }

    /// Union of the postings of every term key in `[lo, hi)` (`hi = None`: no bound).
    fn term_range(&self, lo: &[u8], hi: Option<&[u8]>) -> Result<RoaringBitmap, SegmentError> {
        let mut out = RoaringBitmap::new();
        let below = |k: &[u8]| hi.is_none_or(|h| k < h);
        let first = self
            .dir
            .terms
            .partition_point(|t| t.0.as_slice() <= lo)
            .saturating_sub(1);
        for i in first..self.dir.terms.len() {
            if self.dir.terms.get(i).is_some_and(|t| !below(&t.0)) {
                break;
            }
            self.scan_terms(
                i,
                |_, k| {
                    if k < lo {
                        Want::Skip
                    } else if below(k) {
                        Want::Take
                    } else {
                        Want::Stop
                    }
                },
                |_, bm| out |= bm,
            )?;
        }
        Ok(out)
    }

    /// Union of the postings of every integer variable in `[lo, hi]`.
    fn int_range(&self, lo: u64, hi: u64) -> Result<RoaringBitmap, SegmentError> {
        let mut out = RoaringBitmap::new();
        let first = self
            .dir
            .ints
            .partition_point(|t| t.0 <= lo)
            .saturating_sub(1);
        for i in first..self.dir.ints.len() {
            if self.dir.ints.get(i).is_some_and(|t| t.0 > hi) {
                break;
            }
            self.scan_ints(
                i,
                |_, v| {
                    if v < lo {
                        Want::Skip
                    } else if v <= hi {
                        Want::Take
                    } else {
                        Want::Stop
                    }
                },
                |_, bm| out |= bm,
            )?;
        }
        Ok(out)
    }

    /// Blocks that contain `term` (an index key from [`super::msg_term`] or
    /// [`super::field_term`]); empty when none does.
    pub fn lookup(&self, term: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        if let Some(tok) = term.strip_prefix(&[NS_MSG]) {
            if tok.is_empty() {
                return Ok(RoaringBitmap::new());
            }
            if let Some(v) = std::str::from_utf8(tok)
                .ok()
                .and_then(message::canonical_int)
            {
                return self.int_range(v, v);
            }
            // The word and its other spellings (`key 0x00 case-mask`).
            let mut hi = term.to_vec();
            hi.push(1);
            return self.term_range(term, Some(&hi));
        }
        let mut hi = term.to_vec();
        hi.push(0);
        self.term_range(term, Some(&hi))
    }

    /// Blocks that contain any term starting with `prefix`.
    pub fn lookup_prefix(&self, prefix: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        let hi = successor(prefix);
        let mut out = self.term_range(prefix, hi.as_deref())?;
        if let Some(tok) = prefix.strip_prefix(&[NS_MSG]) {
            for (lo, hi) in int_prefix_ranges(tok) {
                out |= self.int_range(lo, hi)?;
            }
        }
        Ok(out)
    }

    /// The segment's templates, decoded on first use.
    fn templates(&self) -> Result<&[Template], SegmentError> {
        if let Some(t) = self.templates.get() {
            return Ok(t);
        }
        let templates = match &self.dir.templates {
            None => Vec::new(),
            Some(fr) => {
                let bytes = self.frame(fr, "templates")?;
                decode_templates(&bytes, self.dir.template_count)
                    .map_err(|e| self.corrupt_at(fr, format!("templates: {e}")))?
            }
        };
        Ok(self.templates.get_or_init(|| templates))
    }

    /// The templates' words, indexed on first use.
    fn vocab(&self) -> Result<&Vocab, SegmentError> {
        if let Some(v) = self.vocab.get() {
            return Ok(v);
        }
        let v = Vocab::build(self.templates()?);
        Ok(self.vocab.get_or_init(|| v))
    }

    /// The `_msg` texts of term block `i` (`None` for field pairs).
    fn term_texts(&self, i: usize) -> Result<&[Option<Box<str>>], SegmentError> {
        let cell = self
            .term_texts
            .get(i)
            .ok_or_else(|| SegmentError::NotFound(format!("term block {i}")))?;
        if let Some(t) = cell.get() {
            return Ok(t);
        }
        let mut texts = Vec::with_capacity(self.dir.per_block);
        self.scan_terms(
            i,
            |_, k| {
                texts.push(var_text(k).map(String::into_boxed_str));
                Want::Skip
            },
            |_, _| {},
        )?;
        Ok(cell.get_or_init(|| texts))
    }

    /// The values of integer block `i`.
    fn int_values(&self, i: usize) -> Result<&[u64], SegmentError> {
        let cell = self
            .int_values
            .get(i)
            .ok_or_else(|| SegmentError::NotFound(format!("integer block {i}")))?;
        if let Some(v) = cell.get() {
            return Ok(v);
        }
        let mut values = Vec::with_capacity(self.dir.per_block);
        self.scan_ints(
            i,
            |_, v| {
                values.push(v);
                Want::Skip
            },
            |_, _| {},
        )?;
        Ok(cell.get_or_init(|| values))
    }

    /// The text of string variable ordinal `o`.
    fn term_text(&self, o: u32) -> Result<&str, SegmentError> {
        let per = self.dir.per_block;
        self.term_texts(o as usize / per)?
            .get(o as usize % per)
            .and_then(|t| t.as_deref())
            .ok_or_else(|| SegmentError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: format!("string ordinal {o} is not a message token"),
            })
    }

    /// The value of integer ordinal `o`.
    fn int_value(&self, o: u32) -> Result<u64, SegmentError> {
        let per = self.dir.per_block;
        self.int_values(o as usize / per)?
            .get(o as usize % per)
            .copied()
            .ok_or_else(|| SegmentError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: format!("integer ordinal {o} outside the dictionary"),
            })
    }

    /// How `word` is recognised in this segment's rows: the same split into
    /// template words and variables the writer makes ([`message::split`]).
    fn matcher(&self, word: &str) -> Result<Matcher, SegmentError> {
        let mut toks = crate::token::tokens(word);
        if toks.next() != Some(word) || toks.next().is_some() {
            return Ok(Matcher::Never);
        }
        let norm = crate::token::normalize(word);
        if !message::is_variable(word) {
            let v = self.vocab()?;
            return Ok(match v.ids.get(norm.as_ref()) {
                Some(id) => Matcher::Templates(
                    v.set(v.templates.get(*id as usize).into_iter().flatten().copied()),
                ),
                None => Matcher::Never,
            });
        }
        let per = self.dir.per_block;
        if let Some(v) = message::canonical_int(word) {
            let b = self
                .dir
                .ints
                .partition_point(|t| t.0 <= v)
                .saturating_sub(1);
            if self.dir.ints.is_empty() {
                return Ok(Matcher::Never);
            }
            return Ok(match self.int_values(b)?.binary_search(&v) {
                Ok(i) => Matcher::Int((b * per + i) as u32),
                Err(_) => Matcher::Never,
            });
        }
        // The word's spellings are the consecutive keys in [key, key 0x01).
        let key = super::msg_term(word);
        let mut hi_key = key.clone();
        hi_key.push(1);
        let first = self
            .dir
            .terms
            .partition_point(|t| t.0.as_slice() <= key.as_slice())
            .saturating_sub(1);
        let (mut lo, mut hi) = (u32::MAX, 0u32);
        for b in first..self.dir.terms.len() {
            if self
                .dir
                .terms
                .get(b)
                .is_some_and(|t| t.0.as_slice() >= hi_key.as_slice())
            {
                break;
            }
            for (i, t) in self.term_texts(b)?.iter().enumerate() {
                let Some(t) = t.as_deref() else { continue };
                if crate::token::normalize(t) == norm {
                    let o = (b * per + i) as u32;
                    lo = lo.min(o);
                    hi = hi.max(o + 1);
                }
            }
        }
        Ok(if lo < hi {
            Matcher::Str(lo..hi)
        } else {
            Matcher::Never
        })
    }

    /// How a phrase of template words is recognised: the templates in whose token
    /// sequence (words, with each placeholder one token) the phrase's tokens are
    /// consecutive. A variable can never equal a template word, so this is exact.
    fn phrase_matcher(&self, toks: &[String]) -> Result<Matcher, SegmentError> {
        if toks.is_empty() || !toks.iter().all(|t| is_template_word(t)) {
            return Err(SegmentError::NotFound(format!(
                "phrase {toks:?} is not made of template words only"
            )));
        }
        let v = self.vocab()?;
        let mut ids = Vec::with_capacity(toks.len());
        for t in toks {
            match v.ids.get(crate::token::normalize(t).as_ref()) {
                Some(id) => ids.push(Some(*id)),
                None => return Ok(Matcher::Never),
            }
        }
        // Candidates: the templates holding the first word; then adjacency.
        let first = ids.first().copied().flatten().unwrap_or(u32::MAX);
        let hits = v
            .templates
            .get(first as usize)
            .into_iter()
            .flatten()
            .copied()
            .filter(|t| {
                v.seqs
                    .get(*t as usize)
                    .is_some_and(|seq| seq.windows(ids.len()).any(|w| w == ids.as_slice()))
            });
        let set = v.set(hits);
        Ok(if set.contains(&true) {
            Matcher::Templates(set)
        } else {
            Matcher::Never
        })
    }

    /// How "a token contains one of `subs`" is recognised: by the templates' words
    /// and the dictionary's token texts, each checked once.
    fn contains_matcher(&self, subs: &[String]) -> Result<Matcher, SegmentError> {
        // Compared with ASCII case folded: the dictionary keeps a template word's
        // text lower-cased (its case lives in the template), so an exact-case
        // check could miss it. Folding only widens the match, and callers verify
        // the rows they get (a regex is run on each).
        let folded: Vec<Vec<u8>> = subs
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.bytes().map(|b| b.to_ascii_lowercase()).collect())
            .collect();
        let finders: Vec<memchr::memmem::Finder<'_>> = folded
            .iter()
            .map(|s| memchr::memmem::Finder::new(s.as_slice()))
            .collect();
        let buf = std::cell::RefCell::new(Vec::<u8>::new());
        let hit = |t: &str| {
            let mut b = buf.borrow_mut();
            b.clear();
            b.extend(t.bytes().map(|c| c.to_ascii_lowercase()));
            finders.iter().any(|f| f.find(&b).is_some())
        };
        let templates: Vec<bool> = self
            .templates()?
            .iter()
            .map(|t| t.words().any(&hit))
            .collect();
        let per = self.dir.per_block;
        let mut strs = RoaringBitmap::new();
        for b in 0..self.dir.terms.len() {
            for (i, t) in self.term_texts(b)?.iter().enumerate() {
                if t.as_deref().is_some_and(&hit) {
                    strs.insert((b * per + i) as u32);
                }
            }
        }
        // Integer tokens are digits only: only an all-digit string can be in one.
        let mut ints = RoaringBitmap::new();
        if subs
            .iter()
            .any(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        {
            let mut text = String::new();
            for b in 0..self.dir.ints.len() {
                for (i, v) in self.int_values(b)?.iter().enumerate() {
                    text.clear();
                    use std::fmt::Write as _;
                    let _ = write!(text, "{v}");
                    if hit(&text) {
                        ints.insert((b * per + i) as u32);
                    }
                }
            }
        }
        Ok(
            if !templates.contains(&true) && strs.is_empty() && ints.is_empty() {
                Matcher::Never
            } else {
                Matcher::Contains {
                    templates,
                    ints,
                    strs,
                }
            },
        )
    }

    /// The blocks that may hold a row matching prepared predicate `i`: the union of
    /// the postings of the dictionary entries it matches. `None` when the predicate
    /// does not narrow blocks this way (only [`MsgPredicate::Contains`] does).
    pub fn matcher_blocks(
        &self,
        matchers: &MsgMatchers,
        i: usize,
    ) -> Result<Option<RoaringBitmap>, SegmentError> {
        let Some(m) = matchers.0.get(i) else {
            return Ok(None);
        };
        let (ints, strs) = match m {
            Matcher::Never => return Ok(Some(RoaringBitmap::new())),
            Matcher::Contains { ints, strs, .. } => (ints, strs),
            _ => return Ok(None),
        };
        // Every matched template word is itself a dictionary entry (in `strs`), so
        // the entries' postings cover the template matches too.
        let per = self.dir.per_block as u32;
        let mut out = RoaringBitmap::new();
        let blocks = |set: &RoaringBitmap| {
            let mut v: Vec<u32> = set.iter().map(|o| o / per).collect();
            v.dedup();
            v
        };
        // Entry j of dictionary block b is taken when its ordinal is in the set.
        let pick = |set: &RoaringBitmap, b: u32, j: usize| {
            if set.contains(b * per + j as u32) {
                Want::Take
            } else {
                Want::Skip
            }
        };
        for b in blocks(strs) {
            self.scan_terms(b as usize, |j, _| pick(strs, b, j), |_, bm| out |= bm)?;
        }
        for b in blocks(ints) {
            self.scan_ints(b as usize, |j, _| pick(ints, b, j), |_, bm| out |= bm)?;
        }
        Ok(Some(out))
    }

    /// How a prefix is recognised in this segment's rows.
    fn prefix_matcher(&self, prefix: &str) -> Result<Matcher, SegmentError> {
        let norm = crate::token::normalize(prefix);
        let v = self.vocab()?;
        let templates = v.set(
            v.ids
                .iter()
                .filter(|(w, _)| w.starts_with(norm.as_ref()))
                .flat_map(|(_, id)| v.templates.get(*id as usize).into_iter().flatten())
                .copied(),
        );
        let key = super::msg_term(prefix);
        let strs = self.term_ordinals(&key, successor(&key).as_deref())?;
        let mut ints = Vec::new();
        for (lo, hi) in int_prefix_ranges(norm.as_bytes()) {
            let r = self.int_ordinals(lo, hi)?;
            if !r.is_empty() {
                ints.push(r);
            }
        }
        Ok(Matcher::Prefix {
            templates,
            ints,
            strs,
        })
    }

    /// Ordinals of the term keys in `[lo, hi)`.
    fn term_ordinals(
        &self,
        lo: &[u8],
        hi: Option<&[u8]>,
    ) -> Result<std::ops::Range<u32>, SegmentError> {
        let per = self.dir.per_block;
        let below = |k: &[u8]| hi.is_none_or(|h| k < h);
        let first = self
            .dir
            .terms
            .partition_point(|t| t.0.as_slice() <= lo)
            .saturating_sub(1);
        let (mut a, mut b) = (u32::MAX, 0u32);
        for i in first..self.dir.terms.len() {
            if self.dir.terms.get(i).is_some_and(|t| !below(&t.0)) {
                break;
            }
            self.scan_terms(
                i,
                |j, k| {
                    if k < lo {
                        return Want::Skip;
                    }
                    if !below(k) {
                        return Want::Stop;
                    }
                    let o = (i * per + j) as u32;
                    a = a.min(o);
                    b = b.max(o + 1);
                    Want::Skip
                },
                |_, _| {},
            )?;
        }
        Ok(if a < b { a..b } else { 0..0 })
    }

    /// Ordinals of the integer values in `[lo, hi]`.
    fn int_ordinals(&self, lo: u64, hi: u64) -> Result<std::ops::Range<u32>, SegmentError> {
        let per = self.dir.per_block;
        let first = self
            .dir
            .ints
            .partition_point(|t| t.0 <= lo)
            .saturating_sub(1);
        let (mut a, mut b) = (u32::MAX, 0u32);
        for i in first..self.dir.ints.len() {
            if self.dir.ints.get(i).is_some_and(|t| t.0 > hi) {
                break;
            }
            for (j, v) in self.int_values(i)?.iter().enumerate() {
                if (lo..=hi).contains(v) {
                    let o = (i * per + j) as u32;
                    a = a.min(o);
                    b = b.max(o + 1);
                }
            }
        }
        Ok(if a < b { a..b } else { 0..0 })
    }

    /// For each predicate, which rows of `block` satisfy it (`out[p][row]`), decided
    /// on the `_msg` chunk's template ids and ordinals without rebuilding any text.
    /// Same answers as the tokenizer on the text (property-tested through the query
    /// executor against a full scan).
    pub fn msg_rows(
        &self,
        block: usize,
        preds: &[MsgPredicate<'_>],
    ) -> Result<Vec<Vec<bool>>, SegmentError> {
        let m = self.msg_matchers(preds)?;
        self.msg_rows_with(block, &m)
    }

    /// Prepares predicates for [`Self::msg_rows_with`] (once per segment: it reads the
    /// templates and dictionary blocks).
    pub fn msg_matchers(&self, preds: &[MsgPredicate<'_>]) -> Result<MsgMatchers, SegmentError> {
        Ok(MsgMatchers(
            preds
                .iter()
                .map(|p| match p {
                    MsgPredicate::Word(w) => self.matcher(w),
                    MsgPredicate::Prefix(w) => self.prefix_matcher(w),
                    MsgPredicate::Phrase(toks) => self.phrase_matcher(toks),
                    MsgPredicate::Contains(subs) => self.contains_matcher(subs),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ))
    }

    /// [`Self::msg_rows`] with prepared predicates.
    pub fn msg_rows_with(
        &self,
        block: usize,
        matchers: &MsgMatchers,
    ) -> Result<Vec<Vec<bool>>, SegmentError> {
        let matchers = &matchers.0;
        let rows = self.footer.blocks.get(block).map_or(0, |b| b.rows as usize);
        let mut out = vec![vec![false; rows]; matchers.len()];
        if matchers.iter().all(|m| matches!(m, Matcher::Never)) {
            return Ok(out);
        }
        let Some(msg_col) = self.column(ColumnKind::Msg, "_msg") else {
            return Ok(out);
        };
        let Some(c) = self.chunk(msg_col, block)? else {
            return Ok(out);
        };
        let templates = self.templates()?;
        let block_rows = present_rows(&c.present, c.n);
        let ordinals = matchers.iter().any(Matcher::needs_ordinals);
        let mut v = MarkRows {
            matchers,
            templates,
            block_rows: &block_rows,
            out: &mut out,
            slot: Vec::new(),
            int: false,
        };
        message::scan_chunk(&c.bytes, c.n, templates, ordinals, &mut v).map_err(|e| {
            SegmentError::Corrupt {
                path: self.path.clone(),
                offset: c.offset,
                what: e.what,
            }
        })?;
        Ok(out)
    }

    /// The messages of the given rows of `block` (indexed by row; rows not asked for
    /// are empty strings), rebuilding only those.
    pub fn messages_at(&self, block: usize, rows: &[usize]) -> Result<Vec<String>, SegmentError> {
        let n = self.footer.blocks.get(block).map_or(0, |b| b.rows as usize);
        let Some(col) = self.column(ColumnKind::Msg, "_msg") else {
            return Ok(vec![String::new(); n]);
        };
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let Some(cb) = self.read_rows(col, block, Some(&sorted))? else {
            return Ok(vec![String::new(); n]);
        };
        let Values::Str(v) = cb.values else {
            return Ok(vec![String::new(); n]);
        };
        let mut out = vec![String::new(); n];
        let rows_with = present_rows(&cb.present, n);
        for (r, m) in rows_with.into_iter().zip(v) {
            if let Some(slot) = out.get_mut(r) {
                *slot = m;
            }
        }
        Ok(out)
    }

    /// Bytes of the index section by part (for statistics).
    pub fn index_sizes(&self) -> IndexSizes {
        let sum = |v: &[FrameRef]| v.iter().map(|f| f.len as u64).sum::<u64>();
        IndexSizes {
            directory: self.footer.index.map_or(0, |ix| ix.dir_len),
            terms: sum(&self.dir.terms.iter().map(|t| t.1).collect::<Vec<_>>()),
            integers: sum(&self.dir.ints.iter().map(|t| t.1).collect::<Vec<_>>()),
            templates: self.dir.templates.map_or(0, |f| f.len as u64),
            template_count: self.dir.template_count as u64,
        }
    }

    /// Number of term blocks in the index directory (for statistics).
    pub fn index_term_blocks(&self) -> usize {
        self.dir.terms.len()
    }

    /// Rows (as `(block, row in block)`) whose `_msg` contains every one of `words` as
    /// a token (ASCII case ignored; a "word" that is not a single token matches
    /// nothing). An index intersection picks candidate blocks; each candidate row is
    /// then checked on its template id and variable ordinals, without rebuilding the
    /// text. Newest blocks first, newest rows first within a block.
    pub fn search_words(&self, words: &[&str]) -> Result<Vec<(usize, usize)>, SegmentError> {
        let mut candidates: Option<RoaringBitmap> = None;
        for w in words {
            let bm = self.lookup(&super::msg_term(w))?;
            candidates = Some(match candidates {
                None => bm,
                Some(c) => c & bm,
            });
        }
        let Some(candidates) = candidates.filter(|c| !c.is_empty()) else {
            return Ok(Vec::new());
        };
        let preds: Vec<MsgPredicate<'_>> = words.iter().map(|w| MsgPredicate::Word(w)).collect();
        let matchers = self.msg_matchers(&preds)?;
        let mut out = Vec::new();
        for block in candidates.iter().rev() {
            let hits = self.msg_rows_with(block as usize, &matchers)?;
            let rows = self
                .footer
                .blocks
                .get(block as usize)
                .map_or(0, |b| b.rows as usize);
            for row in (0..rows).rev() {
                if hits.iter().all(|h| h.get(row) == Some(&true)) {
                    out.push((block as usize, row));
                }
            }
        }
        Ok(out)
    }

    /// Checks every byte of the segment: decodes every column chunk and every index
    /// term block (each after its CRC). For `verify` commands and before compaction.
    pub fn verify(&self) -> Result<(), SegmentError> {
        for block in 0..self.footer.blocks.len() {
            for col in 0..self.footer.columns.len() {
                self.read(col, block)?;
            }
        }
        // Every entry's postings decoded, so their bytes are checked too.
        for i in 0..self.dir.terms.len() {
            self.scan_terms(i, |_, _| Want::Take, |_, _| {})?;
        }
        for i in 0..self.dir.ints.len() {
            self.scan_ints(i, |_, _| Want::Take, |_, _| {})?;
        }
        self.templates()?;
        Ok(())
    }

    /// Bytes this reader holds in memory beyond its decoded state: the fetched end
    /// of an offloaded segment (a mapped local file: 0).
    pub fn resident_bytes(&self) -> u64 {
        match &self.src {
            Source::Local(_) => 0,
            Source::Remote { tail, .. } => tail.len() as u64,
        }
    }

    /// The footer (blocks, columns, tenant, row count).
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the column `name` of `kind`.
    pub fn column(&self, kind: ColumnKind, name: &str) -> Option<usize> {
        self.footer
            .columns
            .iter()
            .position(|c| c.kind == kind && c.name == name)
    }

    /// Decodes column `col` of block `block`; `None` when no row of the block has a
    /// value.
    pub fn read(&self, col: usize, block: usize) -> Result<Option<ColumnBlock>, SegmentError> {
        self.read_rows(col, block, None)
    }

    /// The CRC-checked bytes of column `col` of block `block` after its presence
    /// bitmap: (presence, codec bytes, values present); `None` when no row has one.
    fn chunk(&self, col: usize, block: usize) -> Result<Option<RawChunk>, SegmentError> {
        let meta: &ColumnMeta = self.footer.columns.get(col).ok_or_else(|| {
            SegmentError::NotFound(format!("column {col} of {}", self.footer.columns.len()))
        })?;
        let rows = self
            .footer
            .blocks
            .get(block)
            .ok_or_else(|| {
                SegmentError::NotFound(format!("block {block} of {}", self.footer.blocks.len()))
            })?
            .rows as usize;
        let Some(chunk) = meta.chunks.get(block).filter(|c| c.len > 0) else {
            return Ok(None);
        };
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: chunk.offset,
            what,
        };
        let start = chunk.offset as usize;
        if let Source::Remote { tier, object, .. } = &self.src {
            if !tier
                .cache
                .contains(&format!("{object}@{}+{}", chunk.offset, chunk.len))
            {
                // Both ways: scans go newest block first as often as oldest.
                let from = block.saturating_sub(READAHEAD_BLOCKS - 1);
                let ahead: Vec<(u64, u64)> = meta
                    .chunks
                    .iter()
                    .skip(from)
                    .take(2 * READAHEAD_BLOCKS - 1)
                    .filter(|c| c.len > 0)
                    .map(|c| (c.offset, u64::from(c.len)))
                    .collect();
                tier.prefetch(object, &ahead)
                    .map_err(|source| SegmentError::Remote {
                        path: self.path.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        let bytes = self
            .src
            .range(&self.path, start as u64, u64::from(chunk.len), false)?
            .ok_or_else(|| corrupt("chunk outside the file".into()))?;
        let crc = crc32fast::hash(&bytes);
        if crc != chunk.crc {
            return Err(corrupt(format!(
                "column {:?} block {block}: checksum {crc:#010x}, expected {:#010x}",
                meta.name, chunk.crc
            )));
        }
        let (present, rest) = match bytes.first() {
            Some(0) => (None, bytes.slice(1..)),
            Some(1) => {
                let rest = &bytes[1..];
                let bm = bits::unpack(rest, rows, 1).map_err(|e| corrupt(e.what))?;
                let skip = (1 + bits::packed_len(rows, 1)).min(bytes.len());
                (
                    Some(bm.into_iter().map(|v| v == 1).collect::<Vec<bool>>()),
                    bytes.slice(skip..),
                )
            }
            _ => return Err(corrupt("bad presence byte".into())),
        };
        let n = present
            .as_ref()
            .map_or(rows, |p| p.iter().filter(|x| **x).count());
        Ok(Some(RawChunk {
            kind: meta.kind,
            offset: chunk.offset,
            present,
            bytes: rest,
            n,
        }))
    }

    /// Like [`Self::read`]; with `only = Some(rows)` (sorted row numbers of the
    /// block) messages are rebuilt only for those rows (others come back empty).
    fn read_rows(
        &self,
        col: usize,
        block: usize,
        only: Option<&[usize]>,
    ) -> Result<Option<ColumnBlock>, SegmentError> {
        let Some(c) = self.chunk(col, block)? else {
            return Ok(None);
        };
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: c.offset,
            what,
        };
        let values = match c.kind {
            ColumnKind::Msg => {
                // Rows given are block rows; map them to positions among present values.
                let wanted: Option<Vec<bool>> = only.map(|rows| {
                    let mut w = vec![false; c.n];
                    let pos = present_rows(&c.present, c.n);
                    for r in rows {
                        if let Ok(i) = pos.binary_search(r) {
                            if let Some(x) = w.get_mut(i) {
                                *x = true;
                            }
                        }
                    }
                    w
                });
                Values::Str(
                    self.messages(&c.bytes, c.n, wanted.as_deref())
                        .map_err(|e| corrupt(e.what))?,
                )
            }
            ColumnKind::Stream | ColumnKind::Level | ColumnKind::Str | ColumnKind::Overflow => {
                Values::Str(strs::decode(&c.bytes, c.n).map_err(|e| corrupt(e.what))?)
            }
            ColumnKind::Time | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool => {
                Values::I64(ints::decode(&c.bytes, c.n).map_err(|e| corrupt(e.what))?)
            }
        };
        Ok(Some(ColumnBlock {
            present: c.present,
            values,
        }))
    }

    /// A string column's block (`_stream`, `level`, a string field) as distinct values
    /// and ids, without a copy of the value per row ([`strs::decode_dict`]); `None`
    /// when no row has a value or the column is not a string column.
    pub fn string_ids(&self, col: usize, block: usize) -> Result<Option<StrColumn>, SegmentError> {
        let Some(c) = self.chunk(col, block)? else {
            return Ok(None);
        };
        if !matches!(
            c.kind,
            ColumnKind::Stream | ColumnKind::Level | ColumnKind::Str
        ) {
            return Ok(None);
        }
        let (dict, ids) = strs::decode_dict(&c.bytes, c.n).map_err(|e| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: c.offset,
            what: e.what,
        })?;
        Ok(Some(StrColumn {
            present: c.present,
            dict,
            ids,
        }))
    }

    /// Decodes a template-coded `_msg` chunk of `n` rows into the messages; with
    /// `wanted`, only the rows marked are rebuilt (the others are empty strings).
    fn messages(
        &self,
        bytes: &[u8],
        n: usize,
        wanted: Option<&[bool]>,
    ) -> Result<Vec<String>, crate::codec::CodecError> {
        let templates = self
            .templates()
            .map_err(|e| crate::codec::CodecError::new(e.to_string()))?;
        let chunk = message::decode_chunk_rows(bytes, n, templates, wanted)?;
        let err = |e: SegmentError| crate::codec::CodecError::new(e.to_string());
        let mut out = Vec::with_capacity(n);
        // Rendered in one scratch buffer, then copied to a string of its exact size:
        // one allocation per message, none of a growing string's reallocations.
        let mut m = String::new();
        for (row, t) in chunk.templates.iter().enumerate() {
            m.clear();
            let start = chunk.starts.get(row).copied().unwrap_or(usize::MAX);
            if start != usize::MAX {
                if let Some(tpl) = templates.get(*t as usize) {
                    let ords = chunk
                        .ordinals
                        .get(start..start + tpl.slots.len())
                        .unwrap_or(&[]);
                    message::render(
                        &mut m,
                        tpl,
                        ords,
                        |o| self.int_value(o).map_err(err),
                        |o| self.term_text(o).map_err(err),
                    )?;
                }
            }
            out.push(m.as_str().to_owned());
        }
        Ok(out)
    }

    /// Rebuilds every record of `block` (all columns decoded). Fields come back in
    /// column order (by kind, then name), not in their ingest order.
    pub fn records(&self, block: usize) -> Result<Vec<Record>, SegmentError> {
        self.records_impl(block, None, &|_| true)
    }

    /// The records of `block` with only the columns `want` accepts decoded (the
    /// others stay empty): what a query reads when it needs a few fields.
    pub fn records_with(
        &self,
        block: usize,
        want: &dyn Fn(&ColumnMeta) -> bool,
    ) -> Result<Vec<Record>, SegmentError> {
        self.records_impl(block, None, want)
    }

    /// The records of the given rows of `block` (sorted, as from
    /// [`Self::search_words`]), decoding each column once and rebuilding only those
    /// rows' messages.
    pub fn records_at(&self, block: usize, rows: &[usize]) -> Result<Vec<Record>, SegmentError> {
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let found = self.records_impl(block, Some(&sorted), &|_| true)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                sorted
                    .binary_search(r)
                    .ok()
                    .and_then(|i| found.get(i).cloned())
            })
            .collect())
    }

    /// The records of `block`; with `only` (sorted rows), just those rows, in order.
    fn records_impl(
        &self,
        block: usize,
        only: Option<&[usize]>,
        want: &dyn Fn(&ColumnMeta) -> bool,
    ) -> Result<Vec<Record>, SegmentError> {
        let rows = self
            .footer
            .blocks
            .get(block)
            .ok_or_else(|| SegmentError::NotFound(format!("block {block}")))?
            .rows as usize;
        // Position in `out` of each block row that is returned.
        let mut slot: Vec<Option<usize>> = vec![None; rows];
        let mut n_out = 0;
        for r in only.map_or_else(|| (0..rows).collect::<Vec<_>>(), <[usize]>::to_vec) {
            if let Some(s) = slot.get_mut(r).filter(|s| s.is_none()) {
                *s = Some(n_out);
                n_out += 1;
            }
        }
        let mut out: Vec<Record> = (0..n_out)
            .map(|_| Record {
                time_ns: 0,
                msg: String::new(),
                stream: Labels::new(),
                level: None,
                fields: Vec::new(),
            })
            .collect();
        let bad = |what: &str| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: 0,
            what: what.to_string(),
        };
        for (col, meta) in self.footer.columns.iter().enumerate() {
            if !want(meta) {
                continue;
            }
            if meta.kind == ColumnKind::Stream {
                // Stream labels repeat: each distinct text is parsed once per block,
                // from the column's dictionary (no string per row).
                let Some(sc) = self.string_ids(col, block)? else {
                    continue;
                };
                let parsed = sc
                    .dict
                    .iter()
                    .map(serde_json::from_str::<Labels>)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad("bad _stream labels"))?;
                for (row, id) in sc.row_ids(rows).into_iter().enumerate() {
                    let (Some(t), Some(id)) = (slot.get(row).copied().flatten(), id) else {
                        continue;
                    };
                    let l = parsed
                        .get(id as usize)
                        .ok_or_else(|| bad("stream id out of range"))?;
                    if let Some(rec) = out.get_mut(t) {
                        rec.stream = l.clone();
                    }
                }
                continue;
            }
            let Some(cb) = self.read_rows(col, block, only)? else {
                continue;
            };
            let rows_with = present_rows(&cb.present, rows);
            let targets = rows_with.iter().map(|r| slot.get(*r).copied().flatten());
            match cb.values {
                Values::I64(v) => {
                    for (t, x) in targets.zip(v) {
                        let Some(rec) = t.and_then(|t| out.get_mut(t)) else {
                            continue;
                        };
                        let name = || meta.name.clone();
                        match meta.kind {
                            ColumnKind::Time => rec.time_ns = x,
                            ColumnKind::I64 => rec.fields.push((name(), Value::I64(x))),
                            ColumnKind::F64 => rec
                                .fields
                                .push((name(), Value::F64(f64::from_bits(x as u64)))),
                            ColumnKind::Bool => rec.fields.push((name(), Value::Bool(x != 0))),
                            _ => return Err(bad("column values do not match the column kind")),
                        }
                    }
                }
                Values::Str(v) => {
                    for (t, x) in targets.zip(v) {
                        let Some(rec) = t.and_then(|t| out.get_mut(t)) else {
                            continue;
                        };
                        match meta.kind {
                            ColumnKind::Msg => rec.msg = x,
                            ColumnKind::Level => rec.level = Some(x),
                            ColumnKind::Str => rec.fields.push((meta.name.clone(), Value::Str(x))),
                            ColumnKind::Overflow => rec
                                .fields
                                .extend(super::overflow::decode_row(&x).map_err(|e| bad(&e))?),
                            _ => return Err(bad("column values do not match the column kind")),
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
