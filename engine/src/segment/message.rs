//! The template codec of `_msg` (CLP-style; measured in
//! `docs/decisions/0003-template-message-codec.md`).
//!
//! A message is split at its tokens ([`crate::token`]) into
//! - a *template* ("logtype"): the separators and the tokens without a digit, with a
//!   placeholder byte for each token with a digit (a *variable*);
//! - its variables: canonical decimal integers (`0`, or 1-19 ASCII digits without a
//!   leading zero) by value, every other variable as a string.
//!
//! Templates are stored once per segment; integer variables are ordinals into the
//! segment's sorted integer dictionary and string variables ordinals into its sorted
//! term dictionary, which are also the inverted index: a value is stored once and is
//! its own index entry. A block's `_msg` chunk holds only template ids and ordinals.
//!
//! Template bytes: [`PH_INT`] and [`PH_STR`] stand for a variable; a separator byte
//! equal to one of the three reserved bytes is written as [`ESC`] + the byte.

use rustc_hash::FxHashMap;

use crate::codec::{unzstd_frame_into, zstd_frame, CodecError};
use crate::token;
use crate::wire::{put_varint, unzigzag, zigzag, Reader};

/// Placeholder of an integer variable in a template.
pub(crate) const PH_INT: u8 = 0x11;
/// Placeholder of a string variable in a template.
pub(crate) const PH_STR: u8 = 0x12;
/// Escapes a literal 0x11, 0x12 or 0x13 byte of a separator.
pub(crate) const ESC: u8 = 0x13;
/// Codec tag of a template-coded `_msg` chunk (after the presence byte).
pub(crate) const TAG_TEMPLATE: u8 = 2;

/// A token of a message that is stored outside its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var<'a> {
    /// A canonical decimal integer.
    Int(u64),
    /// Any other token with a digit, exactly as written.
    Str(&'a str),
}

/// The value of `tok` if it is a canonical decimal integer: `0`, or 1 to 19 ASCII
/// digits without a leading zero (so it fits a `u64` and prints back identically).
pub(crate) fn canonical_int(tok: &str) -> Option<u64> {
    let b = tok.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 19
        && b.iter().all(u8::is_ascii_digit)
        && (b.len() == 1 || b.first() != Some(&b'0'));
    if !ok {
        return None;
    }
    // At most 19 digits: no overflow.
    Some(
        b.iter()
            .fold(0u64, |v, d| v * 10 + u64::from(d.wrapping_sub(b'0'))),
    )
}

/// Whether a token is a variable (stored outside the template): it has a digit.
pub(crate) fn is_variable(tok: &str) -> bool {
    if tok.is_ascii() {
        tok.bytes().any(|b| b.is_ascii_digit())
    } else {
        tok.chars().any(char::is_numeric)
    }
}

fn push_separator(out: &mut Vec<u8>, sep: &[u8]) {
    if !sep.iter().any(|b| matches!(*b, PH_INT | PH_STR | ESC)) {
        out.extend_from_slice(sep);
        return;
    }
    for &b in sep {
        if matches!(b, PH_INT | PH_STR | ESC) {
            out.push(ESC);
        }
        out.push(b);
    }
}

/// ASCII bytes that belong inside a token (letters, digits, `_`), as
/// [`token::is_token_char`] defines it.
const ASCII_TOKEN: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'_';
        i += 1;
    }
    t
};

/// Whether the character at byte `i` of `s` (a char boundary) is a token character,
/// whether it is numeric, and its length.
#[inline]
fn class(s: &str, i: usize) -> Option<(bool, bool, usize)> {
    let b = *s.as_bytes().get(i)?;
    if b < 0x80 {
        let tok = ASCII_TOKEN.get(b as usize).copied().unwrap_or(false);
        return Some((tok, b.is_ascii_digit(), 1));
    }
    let c = s.get(i..)?.chars().next()?;
    Some((token::is_token_char(c), c.is_numeric(), c.len_utf8()))
}

/// Splits `msg` into its template (appended to `template`) and its variables (pushed
/// to `vars`, in order). One pass over the bytes: the tokens are exactly those of
/// [`token::tokens`], a token is a variable exactly when [`is_variable`] says so
/// (both tested).
pub(crate) fn split<'a>(msg: &'a str, template: &mut Vec<u8>, vars: &mut Vec<Var<'a>>) {
    if msg.is_ascii() {
        return split_ascii(msg, template, vars);
    }
    let bytes = msg.as_bytes();
    let mut i = 0;
    let mut sep_start = 0;
    while let Some((is_tok, _, len)) = class(msg, i) {
        if !is_tok {
            i += len;
            continue;
        }
        push_separator(template, bytes.get(sep_start..i).unwrap_or(&[]));
        let start = i;
        let mut numeric = false;
        while let Some((true, num, len)) = class(msg, i) {
            numeric |= num;
            i += len;
        }
        push_token(msg.get(start..i).unwrap_or(""), numeric, template, vars);
        sep_start = i;
    }
    push_separator(template, bytes.get(sep_start..).unwrap_or(&[]));
}

/// Appends a token to the template (a word) or as a placeholder and variable.
fn push_token<'a>(tok: &'a str, numeric: bool, template: &mut Vec<u8>, vars: &mut Vec<Var<'a>>) {
    if !numeric {
        template.extend_from_slice(tok.as_bytes());
        return;
    }
    match canonical_int(tok) {
        Some(v) => {
            template.push(PH_INT);
            vars.push(Var::Int(v));
        }
        None => {
            template.push(PH_STR);
            vars.push(Var::Str(tok));
        }
    }
}

/// Byte classes of ASCII text: separator, letter or `_`, digit.
const SEP: u8 = 0;
const LETTER: u8 = 1;
const DIGIT: u8 = 2;
const ASCII_CLASS: [u8; 128] = {
    let mut t = [SEP; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_digit() {
            DIGIT
        } else if c.is_ascii_alphabetic() || c == b'_' {
            LETTER
        } else {
            SEP
        };
        i += 1;
    }
    t
};

/// [`split`] for ASCII text (most log lines): one byte is one character.
fn split_ascii<'a>(msg: &'a str, template: &mut Vec<u8>, vars: &mut Vec<Var<'a>>) {
    let bytes = msg.as_bytes();
    let class = |i: usize| {
        bytes
            .get(i)
            .and_then(|b| ASCII_CLASS.get(*b as usize))
            .copied()
    };
    let mut i = 0;
    let mut sep_start = 0;
    while let Some(c) = class(i) {
        if c == SEP {
            i += 1;
            continue;
        }
        let start = i;
        let mut numeric = false;
        while let Some(c) = class(i).filter(|c| *c != SEP) {
            numeric |= c == DIGIT;
            i += 1;
        }
        push_separator(template, bytes.get(sep_start..start).unwrap_or(&[]));
        push_token(msg.get(start..i).unwrap_or(""), numeric, template, vars);
        sep_start = i;
    }
    push_separator(template, bytes.get(sep_start..).unwrap_or(&[]));
}

/// A segment's templates, decoded: text pieces and placeholders.
#[derive(Debug, Default)]
pub(crate) struct Template {
    /// Literal text between placeholders: `pieces.len() == slots.len() + 1`.
    pub(crate) pieces: Vec<String>,
    /// Per placeholder, whether it is an integer (else a string variable).
    pub(crate) slots: Vec<bool>,
}

impl Template {
    /// Parses template bytes; errors on a dangling escape or invalid UTF-8.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Template, String> {
        let mut t = Template::default();
        let mut piece = Vec::new();
        let mut it = bytes.iter();
        while let Some(&b) = it.next() {
            match b {
                PH_INT | PH_STR => {
                    t.pieces.push(utf8(std::mem::take(&mut piece))?);
                    t.slots.push(b == PH_INT);
                }
                ESC => piece.push(*it.next().ok_or("template ends inside an escape")?),
                _ => piece.push(b),
            }
        }
        t.pieces.push(utf8(piece)?);
        Ok(t)
    }

    /// The digit-free tokens of the template (the words it is indexed under).
    pub(crate) fn words(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().flat_map(|p| token::tokens(p))
    }
}

fn utf8(b: Vec<u8>) -> Result<String, String> {
    String::from_utf8(b).map_err(|_| "template is not UTF-8".to_string())
}

/// Encodes one block's messages: `templates[i]` is row i's template id; `ordinals`
/// holds every row's variable ordinals back to back; `slots_of(t)` is the number of
/// placeholders of template `t`.
pub(crate) fn encode_chunk(
    out: &mut Vec<u8>,
    templates: &[u32],
    ordinals: &[u32],
    slots_of: impl Fn(u32) -> usize,
    level: i32,
) {
    let mut raw = Vec::with_capacity(templates.len() * 3);
    for t in templates {
        put_varint(&mut raw, u64::from(*t));
    }
    // Variables as columns: per template (in order of first appearance in the block),
    // per placeholder, the ordinals of that template's rows, delta + zigzag coded.
    // Values of one placeholder of one template are alike (and often increasing).
    let mut starts = Vec::with_capacity(templates.len());
    let mut at = 0;
    for t in templates {
        starts.push(at);
        at += slots_of(*t);
    }
    let groups = Groups::new(templates, |t| Some(t as usize));
    for (t, rows) in groups.iter() {
        for slot in 0..slots_of(t) {
            let mut prev = 0i64;
            for row in rows {
                let s = starts.get(*row as usize).copied().unwrap_or(0);
                let v = i64::from(ordinals.get(s + slot).copied().unwrap_or(0));
                put_varint(&mut raw, zigzag(v - prev));
                prev = v;
            }
        }
    }
    out.push(TAG_TEMPLATE);
    zstd_frame(out, &raw, level);
}

/// Largest template dictionary grouped through a dense table (else a hash map).
const GROUPS_DENSE_MAX: usize = 1 << 20;

/// Rows of a block grouped by template, groups in order of first appearance: a
/// counting sort, one allocation for all the groups' rows.
struct Groups {
    /// (template, end of its rows in `rows`), in order of first appearance.
    groups: Vec<(u32, usize)>,
    rows: Vec<u32>,
}

impl Groups {
    /// `dense(t)` gives `t`'s slot in a dense table, or `None` to use a hash map.
    fn new(templates: &[u32], dense: impl Fn(u32) -> Option<usize>) -> Groups {
        let mut table: Vec<u32> = Vec::new();
        let mut map: FxHashMap<u32, u32> = FxHashMap::default();
        let mut first: Vec<u32> = Vec::new();
        let mut group_of = Vec::with_capacity(templates.len());
        for t in templates {
            let g = match dense(*t) {
                Some(i) => {
                    if table.len() <= i {
                        table.resize(i + 1, u32::MAX);
                    }
                    let slot = table.get_mut(i);
                    match slot {
                        Some(g) if *g != u32::MAX => *g,
                        Some(g) => {
                            *g = first.len() as u32;
                            first.push(*t);
                            *g
                        }
                        None => 0,
                    }
                }
                None => *map.entry(*t).or_insert_with(|| {
                    first.push(*t);
                    first.len() as u32 - 1
                }),
            };
            group_of.push(g);
        }
        let mut ends = vec![0usize; first.len()];
        for g in &group_of {
            if let Some(c) = ends.get_mut(*g as usize) {
                *c += 1;
            }
        }
        let mut acc = 0;
        for c in ends.iter_mut() {
            acc += *c;
            *c = acc;
        }
        let mut fill: Vec<usize> = std::iter::once(0)
            .chain(ends.iter().copied())
            .take(first.len())
            .collect();
        let mut rows = vec![0u32; templates.len()];
        for (row, g) in group_of.iter().enumerate() {
            if let Some(f) = fill.get_mut(*g as usize) {
                if let Some(slot) = rows.get_mut(*f) {
                    *slot = row as u32;
                }
                *f += 1;
            }
        }
        Groups {
            groups: first.into_iter().zip(ends).collect(),
            rows,
        }
    }

    /// (template, its rows in order).
    fn iter(&self) -> impl Iterator<Item = (u32, &[u32])> {
        let mut start = 0;
        self.groups.iter().map(move |(t, end)| {
            let rows = self.rows.get(start..*end).unwrap_or(&[]);
            start = *end;
            (*t, rows)
        })
    }
}

/// A decoded chunk: per row its template id and the range of its ordinals.
#[derive(Debug, Default)]
pub(crate) struct DecodedChunk {
    /// Template id per row.
    pub(crate) templates: Vec<u32>,
    /// Per row, where its ordinals start in `ordinals`.
    pub(crate) starts: Vec<usize>,
    /// Every row's variable ordinals, back to back.
    pub(crate) ordinals: Vec<u32>,
}

/// Decodes a chunk of `n` rows given the segment's templates.
#[cfg(test)]
pub(crate) fn decode_chunk(
    b: &[u8],
    n: usize,
    templates: &[Template],
) -> Result<DecodedChunk, CodecError> {
    decode_chunk_rows(b, n, templates, None)
}

/// Decodes a chunk's template ids, and the ordinals of the `wanted` rows only
/// (`None`: every row). An unwanted row gets start [`usize::MAX`] and no ordinals;
/// with no row wanted, no variable is decoded at all.
pub(crate) fn decode_chunk_rows(
    b: &[u8],
    n: usize,
    templates: &[Template],
    wanted: Option<&[bool]>,
) -> Result<DecodedChunk, CodecError> {
    let mut c = Collect {
        templates,
        wanted,
        out: DecodedChunk::default(),
        want_template: vec![false; if wanted.is_some() { templates.len() } else { 0 }],
        total: 0,
        slot: 0,
        allocated: false,
    };
    let ordinals = wanted.is_none_or(|w| w.contains(&true));
    c.out.templates.reserve(n.min(b.len().saturating_mul(64)));
    c.out.starts.reserve(n.min(b.len().saturating_mul(64)));
    scan_chunk(b, n, templates, ordinals, &mut c)?;
    if ordinals && !c.allocated {
        c.out.ordinals = vec![0; c.total];
    }
    Ok(c.out)
}

/// The [`ChunkVisitor`] of [`decode_chunk_rows`].
struct Collect<'a> {
    templates: &'a [Template],
    wanted: Option<&'a [bool]>,
    out: DecodedChunk,
    /// Per template, whether a wanted row has it (only with `wanted`).
    want_template: Vec<bool>,
    total: usize,
    slot: usize,
    allocated: bool,
}

impl ChunkVisitor for Collect<'_> {
    fn row(&mut self, i: usize, t: u32) {
        self.out.templates.push(t);
        let wanted = match self.wanted {
            None => true,
            Some(w) => w.get(i).copied().unwrap_or(false),
        };
        if wanted {
            self.out.starts.push(self.total);
            self.total += self.templates.get(t as usize).map_or(0, |x| x.slots.len());
            if let Some(x) = self.want_template.get_mut(t as usize) {
                *x = true;
            }
        } else {
            self.out.starts.push(usize::MAX);
        }
    }

    fn slot(&mut self, t: u32, slot: usize) -> bool {
        if !self.allocated {
            self.out.ordinals = vec![0; self.total];
            self.allocated = true;
        }
        self.slot = slot;
        self.wanted.is_none() || self.want_template.get(t as usize).copied().unwrap_or(false)
    }

    fn ordinal(&mut self, i: usize, o: u32) {
        let start = self.out.starts.get(i).copied().unwrap_or(usize::MAX);
        if start != usize::MAX {
            if let Some(x) = self.out.ordinals.get_mut(start + self.slot) {
                *x = o;
            }
        }
    }
}

/// What [`scan_chunk`] reports to.
pub(crate) trait ChunkVisitor {
    /// Row `i` (of the chunk's rows with a message) has template `t`; rows come in
    /// order.
    fn row(&mut self, i: usize, t: u32);
    /// Whether the variables of placeholder `slot` of template `t` are wanted; if
    /// not, they are stepped over.
    fn slot(&mut self, t: u32, slot: usize) -> bool;
    /// Row `i`'s variable in the placeholder last agreed to by [`Self::slot`].
    fn ordinal(&mut self, i: usize, o: u32);
}

thread_local! {
    /// Decompression buffer of [`scan_chunk`], reused across chunks.
    static SCAN_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Walks a chunk of `n` rows without building per-row arrays: each row's template
/// in row order, then, when `ordinals` is set, the variables the visitor wants
/// (grouped by template and placeholder, not in row order). Without `ordinals` the
/// walk stops after the template ids: a condition decided by templates alone never
/// decodes a variable.
pub(crate) fn scan_chunk(
    mut b: &[u8],
    n: usize,
    templates: &[Template],
    ordinals: bool,
    v: &mut impl ChunkVisitor,
) -> Result<(), CodecError> {
    let b = &mut b;
    match crate::codec::take_u8(b, "message codec tag")? {
        TAG_TEMPLATE => {}
        other => return Err(CodecError::new(format!("unknown message codec {other}"))),
    }
    let mut raw = SCAN_BUF.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let res = scan_raw(b, &mut raw, n, templates, ordinals, v);
    SCAN_BUF.with(|c| *c.borrow_mut() = raw);
    res
}

fn scan_raw(
    b: &mut &[u8],
    raw: &mut Vec<u8>,
    n: usize,
    templates: &[Template],
    ordinals: bool,
    v: &mut impl ChunkVisitor,
) -> Result<(), CodecError> {
    unzstd_frame_into(b, raw)?;
    if !b.is_empty() {
        return Err(CodecError::new("bytes after the message frame"));
    }
    let mut r = Reader::new(raw);
    let err = |e: crate::wire::DecodeError| CodecError::new(e.to_string());
    let mut ids = Vec::with_capacity(if ordinals { n.min(raw.len()) } else { 0 });
    for i in 0..n {
        let t = u32::try_from(r.varint().map_err(err)?).unwrap_or(u32::MAX);
        if t as usize >= templates.len() {
            return Err(CodecError::new(format!(
                "template {t} outside a dictionary of {}",
                templates.len()
            )));
        }
        v.row(i, t);
        if ordinals {
            ids.push(t);
        }
    }
    if !ordinals {
        return Ok(());
    }
    let groups = Groups::new(&ids, |t| {
        (templates.len() <= GROUPS_DENSE_MAX).then_some(t as usize)
    });
    for (t, rows) in groups.iter() {
        let slots = templates.get(t as usize).map_or(0, |x| x.slots.len());
        for slot in 0..slots {
            if !v.slot(t, slot) {
                for _ in rows {
                    r.varint().map_err(err)?;
                }
                continue;
            }
            let mut prev = 0i64;
            for row in rows {
                let x = prev.wrapping_add(unzigzag(r.varint().map_err(err)?));
                let x = u32::try_from(x)
                    .map_err(|_| CodecError::new(format!("ordinal {x} out of range")))?;
                v.ordinal(*row as usize, x);
                prev = i64::from(x);
            }
        }
    }
    if !r.done() {
        return Err(CodecError::new("bytes after the last ordinal"));
    }
    Ok(())
}

/// Rebuilds a message from its template and variables; `int(o)` / `string(o)` look
/// up ordinals and fail on ones outside the dictionaries.
pub(crate) fn render<'d>(
    out: &mut String,
    tpl: &Template,
    ordinals: &[u32],
    int: impl Fn(u32) -> Result<u64, CodecError>,
    string: impl Fn(u32) -> Result<&'d str, CodecError>,
) -> Result<(), CodecError> {
    let mut pieces = tpl.pieces.iter();
    if let Some(p) = pieces.next() {
        out.push_str(p);
    }
    for ((is_int, o), p) in tpl.slots.iter().zip(ordinals).zip(pieces) {
        if *is_int {
            let v = int(*o)?;
            push_u64(out, v);
        } else {
            let s = string(*o)?;
            out.push_str(s);
        }
        out.push_str(p);
    }
    Ok(())
}

/// Appends the decimal text of `v` without allocating.
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(buf.get(i..).unwrap_or(&[])).unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rebuild(msg: &str) -> String {
        let mut tb = Vec::new();
        let mut vars = Vec::new();
        split(msg, &mut tb, &mut vars);
        let tpl = Template::parse(&tb).unwrap();
        assert_eq!(tpl.slots.len(), vars.len());
        let strs: Vec<String> = vars
            .iter()
            .filter_map(|v| match v {
                Var::Str(s) => Some(s.to_string()),
                Var::Int(_) => None,
            })
            .collect();
        let ints: Vec<u64> = vars
            .iter()
            .filter_map(|v| match v {
                Var::Int(i) => Some(*i),
                Var::Str(_) => None,
            })
            .collect();
        let (mut si, mut ii) = (0u32, 0u32);
        let ords: Vec<u32> = vars
            .iter()
            .map(|v| match v {
                Var::Int(_) => {
                    ii += 1;
                    ii - 1
                }
                Var::Str(_) => {
                    si += 1;
                    si - 1
                }
            })
            .collect();
        let mut out = String::new();
        render(
            &mut out,
            &tpl,
            &ords,
            |o| ints.get(o as usize).copied().ok_or(CodecError::new("int")),
            |o| {
                strs.get(o as usize)
                    .map(String::as_str)
                    .ok_or(CodecError::new("str"))
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn splits_words_variables_and_integers() {
        let mut tb = Vec::new();
        let mut vars = Vec::new();
        split(
            "081109 203615 148 INFO dfs.DataNode: blk_-1608999687919862906 from /10.250.19.102:54106",
            &mut tb,
            &mut vars,
        );
        assert_eq!(
            tb,
            b"\x12 \x11 \x11 INFO dfs.DataNode: blk_-\x11 from /\x11.\x11.\x11.\x11:\x11".to_vec()
        );
        assert_eq!(vars[0], Var::Str("081109"));
        assert_eq!(vars[1], Var::Int(203615));
        assert_eq!(vars[3], Var::Int(1608999687919862906));
        assert_eq!(canonical_int("0"), Some(0));
        assert_eq!(canonical_int("007"), None);
        assert_eq!(canonical_int("99999999999999999999"), None);
        assert_eq!(
            canonical_int("9999999999999999999"),
            Some(9999999999999999999)
        );
        assert!(is_variable("R02") && !is_variable("INFO"));
    }

    #[test]
    fn reserved_bytes_round_trip() {
        for m in [
            "a\u{11}b 1",
            "\u{13}\u{12}\u{11}",
            "x\u{13}",
            "",
            "12",
            "é 3 ü",
        ] {
            assert_eq!(rebuild(m), m);
        }
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Template::parse(b"abc\x13").is_err());
        assert!(Template::parse(&[0xff, 0x11]).is_err());
    }

    proptest! {
        #[test]
        fn split_agrees_with_the_tokenizer(msg in "\\PC{0,40}|[a-zA-Z0-9 ._\u{663}\u{e9}\u{11}-]{0,40}") {
            let mut tb = Vec::new();
            let mut vars = Vec::new();
            split(&msg, &mut tb, &mut vars);
            let tpl = Template::parse(&tb).unwrap();
            let words: Vec<&str> = tpl.words().collect();
            let want_words: Vec<&str> = token::tokens(&msg).filter(|t| !is_variable(t)).collect();
            prop_assert_eq!(words, want_words);
            let want_vars: Vec<Var<'_>> = token::tokens(&msg)
                .filter(|t| is_variable(t))
                .map(|t| canonical_int(t).map_or(Var::Str(t), Var::Int))
                .collect();
            prop_assert_eq!(vars, want_vars);
        }

        #[test]
        fn any_message_round_trips(msg in "\\PC{0,40}|[a-z0-9 ._\u{11}\u{12}\u{13}-]{0,40}") {
            prop_assert_eq!(rebuild(&msg), msg);
        }

        #[test]
        fn chunks_round_trip(rows in proptest::collection::vec((0u32..4, proptest::collection::vec(0u32..1000, 3)), 0..200)) {
            // Template t has t placeholders.
            let templates: Vec<Template> = (0..4)
                .map(|t| Template { pieces: vec![String::new(); t + 1], slots: vec![true; t] })
                .collect();
            let ids: Vec<u32> = rows.iter().map(|(t, _)| *t).collect();
            let ords: Vec<u32> = rows.iter().flat_map(|(t, o)| o[..*t as usize].to_vec()).collect();
            let mut b = Vec::new();
            encode_chunk(&mut b, &ids, &ords, |t| t as usize, 3);
            let d = decode_chunk(&b, ids.len(), &templates).unwrap();
            prop_assert_eq!(d.templates, ids);
            prop_assert_eq!(d.ordinals, ords);
        }

        #[test]
        fn garbage_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..50) {
            let templates = vec![Template { pieces: vec![String::new(); 2], slots: vec![false] }];
            let _ = decode_chunk(&bytes, n, &templates);
        }
    }
}
