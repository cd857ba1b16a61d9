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
//! A *time run* is stored as one number instead: a time of day `H:MM:SS` (hour of
//! one or two digits), optionally after a date of digit fields joined by `-`, `/`
//! or `.` and then one ` ` or `T` (`2015-10-18 18:01:47`, `03-17 16:13:38`,
//! `14 15:16:01` after a month name, `2026-01-02T03:04:05`), optionally followed
//! by a fraction (`.811`, `,978`): its digits, read as one decimal number of at
//! most 19 digits, with the fields' widths and separators in the template. Read in
//! row order those numbers mostly grow by small steps, so a block stores each as
//! the difference from the previous row's (where an ordinal per field cost bytes
//! per field, and made `08` and `38` two templates). Its tokens stay in the
//! dictionaries (the index finds them as before); a search checks them on the
//! rebuilt run (`docs/decisions/0011-time-runs.md`).
//!
//! Template bytes: [`PH_INT`] and [`PH_STR`] stand for a variable; [`ESC`] 0x01, a
//! field count `n`, `n` widths and `n - 1` separator bytes stand for a time run; a
//! separator byte equal to one of the three reserved bytes is written as [`ESC`] +
//! the byte.

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
/// Codec tag of a template-coded `_msg` chunk with time runs: the runs' numbers
/// follow the template ids.
pub(crate) const TAG_TEMPLATE_TIME: u8 = 3;
/// After [`ESC`] in a template: a time run's format follows.
const TIME_MARK: u8 = 0x01;
/// Most digits of a time run (the number fits a `u64`).
const TIME_DIGITS_MAX: usize = 19;

/// A token of a message that is stored outside its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var<'a> {
    /// A canonical decimal integer.
    Int(u64),
    /// Any other token with a digit, exactly as written.
    Str(&'a str),
    /// A time run (its format is in the template): its digits as one number, and
    /// its text.
    Time(u64, &'a str),
}

/// The format of a time run: its digit fields' widths and the byte between each
/// two fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeFormat {
    pub(crate) widths: Vec<u8>,
    pub(crate) seps: Vec<u8>,
}

impl TimeFormat {
    /// Appends the run holding `value`; `None` when `value` has more digits than
    /// the format (a corrupt chunk).
    pub(crate) fn render(&self, value: u64, out: &mut String) -> Option<()> {
        let total: usize = self.widths.iter().map(|w| usize::from(*w)).sum();
        let mut digits = [0u8; TIME_DIGITS_MAX];
        let mut v = value;
        for i in (0..total).rev() {
            *digits.get_mut(i)? = b'0' + (v % 10) as u8;
            v /= 10;
        }
        if v != 0 {
            return None;
        }
        let mut at = 0;
        for (k, w) in self.widths.iter().enumerate() {
            if k > 0 {
                out.push(char::from(*self.seps.get(k - 1)?));
            }
            let field = digits.get(at..at + usize::from(*w))?;
            out.push_str(std::str::from_utf8(field).ok()?);
            at += usize::from(*w);
        }
        Some(())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(ESC);
        out.push(TIME_MARK);
        out.push(self.widths.len() as u8);
        out.extend_from_slice(&self.widths);
        out.extend_from_slice(&self.seps);
    }
}

/// Whether `b` may join two fields of a time run.
fn time_sep(b: u8) -> bool {
    matches!(b, b'-' | b'/' | b'.' | b':' | b',' | b' ' | b'T')
}

/// The time run starting at byte `start` of `msg` (the start of a token), if
/// there is one: its end, its number and its format (see the module docs). It
/// ends where a token ends.
fn time_run(msg: &str, start: usize) -> Option<(usize, u64, TimeFormat)> {
    let b = msg.as_bytes();
    // Digit fields joined by single separator bytes, as far as they go (no
    // allocation: this runs at every token that starts with a digit).
    const FIELDS: usize = 12;
    let (mut ends_buf, mut seps_buf) = ([0usize; FIELDS], [0u8; FIELDS]);
    let (mut nf, mut colons) = (0, 0);
    let mut i = start;
    loop {
        let d = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == d || i - d > TIME_DIGITS_MAX {
            return None;
        }
        *ends_buf.get_mut(nf)? = i;
        nf += 1;
        match (b.get(i), b.get(i + 1)) {
            (Some(&s), Some(n)) if time_sep(s) && n.is_ascii_digit() && nf < FIELDS => {
                *seps_buf.get_mut(nf - 1)? = s;
                colons += usize::from(s == b':');
                i += 1;
            }
            _ => break,
        }
    }
    if colons < 2 {
        return None;
    }
    let (ends, seps) = (ends_buf.get(..nf)?, seps_buf.get(..nf - 1)?);
    let width = |k: usize| -> usize {
        let from = if k == 0 {
            start
        } else {
            ends.get(k - 1).map_or(0, |e| e + 1)
        };
        ends.get(k).map_or(0, |e| e - from)
    };
    // The time of day: the first two `:` in a row.
    let j = seps.windows(2).position(|w| w == b"::")?;
    if !(1..=2).contains(&width(j)) || width(j + 1) != 2 || width(j + 2) != 2 {
        return None;
    }
    if j > 0 {
        let (date, joint) = (seps.get(..j - 1)?, *seps.get(j - 1)?);
        if !matches!(joint, b' ' | b'T') || !date.iter().all(|s| matches!(s, b'-' | b'/' | b'.')) {
            return None;
        }
    }
    // Fields: the date, the time, and a fraction when one follows.
    let mut n = j + 3;
    if seps.get(j + 2).is_some_and(|s| matches!(s, b'.' | b',')) {
        n += 1;
    }
    // It must end where a token ends, within the digit budget.
    let ends_token = |n: usize| {
        let e = ends.get(n - 1).copied().unwrap_or(0);
        let total: usize = (0..n).map(width).sum();
        total <= TIME_DIGITS_MAX
            && msg
                .get(e..)
                .and_then(|r| r.chars().next())
                .is_none_or(|c| !crate::token::is_token_char(c))
    };
    if n > j + 3 && !ends_token(n) {
        n -= 1;
    }
    if !ends_token(n) {
        return None;
    }
    let end = ends.get(n - 1).copied()?;
    let mut value = 0u64;
    for d in b.get(start..end)? {
        if d.is_ascii_digit() {
            value = value * 10 + u64::from(d - b'0');
        }
    }
    let format = TimeFormat {
        widths: (0..n).map(|k| width(k) as u8).collect(),
        seps: seps.get(..n - 1)?.to_vec(),
    };
    Some((end, value, format))
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
        if let Some(end) = push_time(msg, start, template, vars) {
            i = end;
            sep_start = end;
            continue;
        }
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

/// Appends the time run at `start` (a token's start), if there is one: its end.
#[inline]
fn push_time<'a>(
    msg: &'a str,
    start: usize,
    template: &mut Vec<u8>,
    vars: &mut Vec<Var<'a>>,
) -> Option<usize> {
    let b = msg.as_bytes();
    if !b.get(start).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    // The time of day's first `:` comes within a date and an hour of the start
    // (`2026-01-02T03:`): most numbers are not times, and leave here.
    let near = b.get(start..(start + 24).min(b.len())).unwrap_or(&[]);
    memchr::memchr(b':', near)?;
    let (end, value, format) = time_run(msg, start)?;
    format.encode(template);
    vars.push(Var::Time(value, msg.get(start..end)?));
    Some(end)
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
        if c == DIGIT {
            let at = template.len();
            push_separator(template, bytes.get(sep_start..start).unwrap_or(&[]));
            if let Some(end) = push_time(msg, start, template, vars) {
                i = end;
                sep_start = end;
                continue;
            }
            template.truncate(at);
        }
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

/// A placeholder of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    /// An integer variable (an ordinal into the integer dictionary).
    Int,
    /// A string variable (an ordinal into the term dictionary).
    Str,
    /// A time run (a number in the chunk's time stream).
    Time(TimeFormat),
}

impl Slot {
    /// Whether the slot's values are ordinals (else numbers of time runs).
    pub(crate) fn has_ordinals(&self) -> bool {
        !matches!(self, Slot::Time(_))
    }
}

/// A segment's templates, decoded: text pieces and placeholders.
#[derive(Debug, Default)]
pub(crate) struct Template {
    /// Literal text between placeholders: `pieces.len() == slots.len() + 1`.
    pub(crate) pieces: Vec<String>,
    /// The placeholders.
    pub(crate) slots: Vec<Slot>,
}

impl Template {
    /// Parses template bytes; errors on a dangling escape, a bad time format or
    /// invalid UTF-8.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Template, String> {
        let mut t = Template::default();
        let mut piece = Vec::new();
        let mut it = bytes.iter();
        while let Some(&b) = it.next() {
            match b {
                PH_INT | PH_STR => {
                    t.pieces.push(utf8(std::mem::take(&mut piece))?);
                    t.slots
                        .push(if b == PH_INT { Slot::Int } else { Slot::Str });
                }
                ESC => match *it.next().ok_or("template ends inside an escape")? {
                    TIME_MARK => {
                        let mut next = || {
                            it.next()
                                .copied()
                                .ok_or("template ends inside a time format")
                        };
                        let n = usize::from(next()?);
                        let widths = (0..n).map(|_| next()).collect::<Result<Vec<u8>, _>>()?;
                        let seps = (1..n).map(|_| next()).collect::<Result<Vec<u8>, _>>()?;
                        let total: usize = widths.iter().map(|w| usize::from(*w)).sum();
                        if n == 0
                            || widths.contains(&0)
                            || total > TIME_DIGITS_MAX
                            || !seps.iter().all(|s| time_sep(*s))
                        {
                            return Err("bad time format".into());
                        }
                        t.pieces.push(utf8(std::mem::take(&mut piece))?);
                        t.slots.push(Slot::Time(TimeFormat { widths, seps }));
                    }
                    lit => piece.push(lit),
                },
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
/// holds every row's variable ordinals back to back, `times` every row's time-run
/// numbers back to back; `slots_of(t)` tells, per placeholder of template `t`,
/// whether it is a time run.
pub(crate) fn encode_chunk<'s>(
    out: &mut Vec<u8>,
    templates: &[u32],
    ordinals: &[u32],
    times: &[u64],
    slots_of: impl Fn(u32) -> &'s [bool],
    level: i32,
) {
    let mut raw = Vec::with_capacity(templates.len() * 3);
    for t in templates {
        put_varint(&mut raw, u64::from(*t));
    }
    // Time runs in row order, each the difference from the previous row's run in
    // the same place (the k-th run of a row follows the k-th of the row before).
    if !times.is_empty() {
        let mut prev: Vec<u64> = Vec::new();
        let mut at = 0;
        for t in templates {
            let runs = slots_of(*t).iter().filter(|x| **x).count();
            for k in 0..runs {
                if prev.len() <= k {
                    prev.push(0);
                }
                let v = times.get(at).copied().unwrap_or(0);
                at += 1;
                if let Some(p) = prev.get_mut(k) {
                    put_varint(&mut raw, zigzag(v.wrapping_sub(*p) as i64));
                    *p = v;
                }
            }
        }
    }
    // Variables as columns: per template (in order of first appearance in the block),
    // per placeholder, the ordinals of that template's rows, delta + zigzag coded.
    // Values of one placeholder of one template are alike (and often increasing).
    let mut starts = Vec::with_capacity(templates.len());
    let mut at = 0;
    for t in templates {
        starts.push(at);
        at += slots_of(*t).iter().filter(|x| !**x).count();
    }
    let groups = Groups::new(templates, |t| Some(t as usize));
    for (t, rows) in groups.iter() {
        let slots = slots_of(t);
        let ordinal_slots = slots.iter().filter(|x| !**x).count();
        for slot in 0..ordinal_slots {
            let mut prev = 0i64;
            for row in rows {
                let s = starts.get(*row as usize).copied().unwrap_or(0);
                let v = i64::from(ordinals.get(s + slot).copied().unwrap_or(0));
                put_varint(&mut raw, zigzag(v - prev));
                prev = v;
            }
        }
    }
    out.push(if times.is_empty() {
        TAG_TEMPLATE
    } else {
        TAG_TEMPLATE_TIME
    });
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
    /// Per row, where its placeholders' values start in `ordinals`.
    pub(crate) starts: Vec<usize>,
    /// Every row's placeholder values, back to back: an ordinal, or for a time run
    /// its number's index in `times`.
    pub(crate) ordinals: Vec<u32>,
    /// The time runs' numbers.
    pub(crate) times: Vec<u64>,
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
        self.allocate();
        self.slot = slot;
        self.wanted.is_none() || self.want_template.get(t as usize).copied().unwrap_or(false)
    }

    fn time(&mut self, i: usize, slot: usize, value: u64) {
        self.allocate();
        let start = self.out.starts.get(i).copied().unwrap_or(usize::MAX);
        if start != usize::MAX {
            if let Some(x) = self.out.ordinals.get_mut(start + slot) {
                *x = self.out.times.len() as u32;
                self.out.times.push(value);
            }
        }
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

impl Collect<'_> {
    fn allocate(&mut self) {
        if !self.allocated {
            self.out.ordinals = vec![0; self.total];
            self.allocated = true;
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
    /// Row `i`'s time run in placeholder `slot` holds `value` (reported in row
    /// order, before any ordinal).
    fn time(&mut self, i: usize, slot: usize, value: u64);
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
    let times = match crate::codec::take_u8(b, "message codec tag")? {
        TAG_TEMPLATE => false,
        TAG_TEMPLATE_TIME => true,
        other => return Err(CodecError::new(format!("unknown message codec {other}"))),
    };
    let mut raw = SCAN_BUF.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let res = scan_raw(b, &mut raw, n, templates, ordinals, times, v);
    SCAN_BUF.with(|c| *c.borrow_mut() = raw);
    res
}

fn scan_raw(
    b: &mut &[u8],
    raw: &mut Vec<u8>,
    n: usize,
    templates: &[Template],
    ordinals: bool,
    times: bool,
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
    let tpl_slots = |t: u32| {
        templates
            .get(t as usize)
            .map_or(&[][..], |x| x.slots.as_slice())
    };
    if times {
        let mut prev: Vec<u64> = Vec::new();
        for (i, t) in ids.iter().enumerate() {
            let mut k = 0;
            for (slot, s) in tpl_slots(*t).iter().enumerate() {
                if s.has_ordinals() {
                    continue;
                }
                if prev.len() <= k {
                    prev.push(0);
                }
                if let Some(p) = prev.get_mut(k) {
                    *p = p.wrapping_add(unzigzag(r.varint().map_err(err)?) as u64);
                    v.time(i, slot, *p);
                }
                k += 1;
            }
        }
    } else if ids
        .iter()
        .any(|t| tpl_slots(*t).iter().any(|s| !s.has_ordinals()))
    {
        return Err(CodecError::new(
            "a template has a time run the chunk does not hold",
        ));
    }
    let groups = Groups::new(&ids, |t| {
        (templates.len() <= GROUPS_DENSE_MAX).then_some(t as usize)
    });
    for (t, rows) in groups.iter() {
        for (slot, s) in tpl_slots(t).iter().enumerate() {
            if !s.has_ordinals() {
                continue;
            }
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

/// Rebuilds a message from its template and placeholder values (`ordinals`, with a
/// time run's number at `times[o]`); `int(o)` / `string(o)` look up ordinals and
/// fail on ones outside the dictionaries.
pub(crate) fn render<'d>(
    out: &mut String,
    tpl: &Template,
    ordinals: &[u32],
    times: &[u64],
    int: impl Fn(u32) -> Result<u64, CodecError>,
    string: impl Fn(u32) -> Result<&'d str, CodecError>,
) -> Result<(), CodecError> {
    let mut pieces = tpl.pieces.iter();
    if let Some(p) = pieces.next() {
        out.push_str(p);
    }
    for ((slot, o), p) in tpl.slots.iter().zip(ordinals).zip(pieces) {
        match slot {
            Slot::Int => push_u64(out, int(*o)?),
            Slot::Str => out.push_str(string(*o)?),
            Slot::Time(f) => times
                .get(*o as usize)
                .and_then(|v| f.render(*v, out))
                .ok_or_else(|| CodecError::new("a time run outside its format"))?,
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
                _ => None,
            })
            .collect();
        let ints: Vec<u64> = vars
            .iter()
            .filter_map(|v| match v {
                Var::Int(i) => Some(*i),
                _ => None,
            })
            .collect();
        let times: Vec<u64> = vars
            .iter()
            .filter_map(|v| match v {
                Var::Time(x, _) => Some(*x),
                _ => None,
            })
            .collect();
        let (mut si, mut ii, mut ti) = (0u32, 0u32, 0u32);
        let ords: Vec<u32> = vars
            .iter()
            .map(|v| {
                let c = match v {
                    Var::Int(_) => &mut ii,
                    Var::Str(_) => &mut si,
                    Var::Time(..) => &mut ti,
                };
                *c += 1;
                *c - 1
            })
            .collect();
        let mut out = String::new();
        render(
            &mut out,
            &tpl,
            &ords,
            &times,
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

    /// The time runs `split` finds in `msg`, as text.
    fn runs(msg: &str) -> Vec<&str> {
        let (mut tb, mut vars) = (Vec::new(), Vec::new());
        split(msg, &mut tb, &mut vars);
        vars.iter()
            .filter_map(|v| match v {
                Var::Time(_, t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn time_runs_are_times_of_day_with_their_dates() {
        let cases: [(&str, &[&str]); 14] = [
            (
                "2015-10-18 18:01:47,978 INFO [main]",
                &["2015-10-18 18:01:47,978"],
            ),
            ("03-17 16:13:38.811  1702  2395 D", &["03-17 16:13:38.811"]),
            ("Jun 14 15:16:01 combo sshd", &["14 15:16:01"]),
            ("[Sun Dec 04 04:47:44 2005] [notice]", &["04 04:47:44"]),
            ("17/06/09 20:10:40 INFO x", &["17/06/09 20:10:40"]),
            (
                "ts=2026-01-02T03:04:05.123456Z level=info",
                &["2026-01-02T03:04:05"],
            ),
            ("at 2026-01-02T03:04:05+00:00 ok", &["2026-01-02T03:04:05"]),
            (
                "from 9:05:01 to 12:30:45 13:00:00",
                &["9:05:01", "12:30:45", "13:00:00"],
            ),
            (
                "2026-01-02 03:04:05.123456789 nanos",
                &["2026-01-02 03:04:05"],
            ),
            ("10.0.0.1:8080 1.2.3.4:80 v1.2.3", &[]),
            ("12:34 and 1:2:3 and 12:345:67", &[]),
            ("a12:30:45 12:30:45b 12:30:45_x", &[]),
            ("1 2015-10-18 18:01:47", &["2015-10-18 18:01:47"]),
            ("2026-01-02 03:04:05é 03:04:05 é", &["03:04:05"]),
        ];
        for (msg, want) in cases {
            assert_eq!(runs(msg), want, "{msg}");
            assert_eq!(rebuild(msg), msg);
        }
        // `08` and `38` share a template.
        let tpl = |m: &str| {
            let (mut tb, mut vars) = (Vec::new(), Vec::new());
            split(m, &mut tb, &mut vars);
            tb
        };
        assert_eq!(tpl("x 10:08:38 y"), tpl("x 10:38:08 y"));
        assert!(Template::parse(b"a\x13\x01\x02\x02").is_err());
        assert!(Template::parse(b"a\x13\x01\x01\x00").is_err());
        assert!(Template::parse(b"a\x13\x01\x02\x02\x02:").is_ok());
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
        fn split_agrees_with_the_tokenizer(msg in "\\PC{0,40}|[a-zA-Z0-9 ._\u{663}\u{e9}\u{11}-]{0,40}|([0-9]{1,3}[:.,/ T-]){0,9}[0-9a-z\u{e9}\u{663}]{0,3}") {
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
            // A time run stands for its tokens.
            let vars: Vec<Var<'_>> = vars
                .into_iter()
                .flat_map(|v| match v {
                    Var::Time(_, text) => token::tokens(text)
                        .map(|t| canonical_int(t).map_or(Var::Str(t), Var::Int))
                        .collect(),
                    v => vec![v],
                })
                .collect();
            prop_assert_eq!(vars, want_vars);
        }

        #[test]
        fn any_message_round_trips(msg in "\\PC{0,40}|[a-z0-9 ._\u{11}\u{12}\u{13}-]{0,40}|[0-9 :.,/T-]{0,40}|([0-9]{1,3}[:.,/ T-]){0,9}[0-9a-z\u{e9}]{0,3}") {
            prop_assert_eq!(rebuild(&msg), msg);
        }

        #[test]
        fn chunks_round_trip(rows in proptest::collection::vec((0u32..4, proptest::collection::vec(0u32..1000, 3)), 0..200)) {
            // Template t has t placeholders.
            let templates: Vec<Template> = (0..4)
                .map(|t| Template { pieces: vec![String::new(); t + 1], slots: vec![Slot::Int; t] })
                .collect();
            let masks: Vec<Vec<bool>> = (0..4).map(|t| vec![false; t]).collect();
            let ids: Vec<u32> = rows.iter().map(|(t, _)| *t).collect();
            let ords: Vec<u32> = rows.iter().flat_map(|(t, o)| o[..*t as usize].to_vec()).collect();
            let mut b = Vec::new();
            encode_chunk(&mut b, &ids, &ords, &[], |t| masks[t as usize].as_slice(), 3);
            let d = decode_chunk(&b, ids.len(), &templates).unwrap();
            prop_assert_eq!(d.templates, ids);
            prop_assert_eq!(d.ordinals, ords);
        }

        #[test]
        fn chunks_with_time_runs_round_trip(rows in proptest::collection::vec((0u32..3, proptest::collection::vec(0u32..1000, 2), proptest::collection::vec(any::<u64>(), 2)), 0..200)) {
            // Template 0: nothing; 1: a run; 2: an integer, a run, an integer, a run.
            let f = TimeFormat { widths: vec![19], seps: vec![] };
            let templates = [
                Template { pieces: vec![String::new()], slots: vec![] },
                Template { pieces: vec![String::new(); 2], slots: vec![Slot::Time(f.clone())] },
                Template {
                    pieces: vec![String::new(); 5],
                    slots: vec![Slot::Int, Slot::Time(f.clone()), Slot::Int, Slot::Time(f)],
                },
            ];
            let masks = [vec![], vec![true], vec![false, true, false, true]];
            let ids: Vec<u32> = rows.iter().map(|(t, ..)| *t).collect();
            let mut ords = Vec::new();
            let mut times = Vec::new();
            let mut want = Vec::new();
            for (t, o, x) in &rows {
                for (k, is_time) in masks[*t as usize].iter().enumerate() {
                    if *is_time {
                        want.push(Err(x[k / 2] % 10_000_000_000_000_000_000));
                        times.push(x[k / 2] % 10_000_000_000_000_000_000);
                    } else {
                        want.push(Ok(o[k / 2]));
                        ords.push(o[k / 2]);
                    }
                }
            }
            let mut b = Vec::new();
            encode_chunk(&mut b, &ids, &ords, &times, |t| masks[t as usize].as_slice(), 3);
            let d = decode_chunk(&b, ids.len(), &templates).unwrap();
            prop_assert_eq!(&d.templates, &ids);
            let got: Vec<Result<u32, u64>> = ids
                .iter()
                .zip(&d.starts)
                .flat_map(|(t, s)| {
                    let d = &d;
                    masks[*t as usize].iter().enumerate().map(move |(k, is_time)| {
                        let o = d.ordinals[s + k];
                        if *is_time { Err(d.times[o as usize]) } else { Ok(o) }
                    })
                })
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..50) {
            let templates = vec![
                Template { pieces: vec![String::new(); 2], slots: vec![Slot::Str] },
                Template {
                    pieces: vec![String::new(); 2],
                    slots: vec![Slot::Time(TimeFormat { widths: vec![2, 2], seps: vec![b':'] })],
                },
            ];
            let _ = decode_chunk(&bytes, n, &templates);
            let mut tagged = vec![TAG_TEMPLATE_TIME];
            tagged.extend_from_slice(&bytes);
            let _ = decode_chunk(&tagged, n, &templates);
        }
    }
}
