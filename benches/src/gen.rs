//! Deterministic scale-up of the Loghub samples to millions of lines.
//!
//! Output line `i` comes from one of the ten systems (chosen by a seeded RNG, weighted
//! by the systems' sample sizes) and is that system's next sample line, cycling; each
//! full cycle through a system's sample is a *pass*. On pass `p`:
//! - every timestamp in the line (per-system formats below) is mapped into pass `p`'s
//!   window: the whole run covers `Spec::span_secs` (default 7 days) for every system,
//!   split into equal windows, one per pass; within a window the sample's own time
//!   order and gaps are kept (compressed when the sample spans more than a window).
//!   Timestamps are re-rendered in the line's own format;
//! - every token with 4 or more digits outside a timestamp (block ids, pids, request
//!   ids) has its digits rotated by amounts derived from `(seed, pass, token)`: the
//!   same token maps to the same new token within a pass, so cardinality grows with
//!   the data as it does in real logs, while short numbers (ports, counts, codes) keep
//!   their real distribution;
//! - needle tokens are appended at exact, evenly spread positions: `needle_1`,
//!   `needle_100`, `needle_10000` occur exactly 1, 100 and 10,000 times (when the run
//!   has at least that many lines).
//!
//! Same inputs and seed give the same bytes. Nothing generated is ever committed.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use engine::ingest::time::{civil_from_days, days_from_civil, format_rfc3339};

/// Needle tokens and how often each occurs.
pub const NEEDLES: [(&str, u64); 3] = [
    ("needle_1", 1),
    ("needle_100", 100),
    ("needle_10000", 10_000),
];

/// A timestamp layout, strftime-like: `%Y %y %m %d %e %H %M %S %b %a %s` and `%3`/`%6`
/// (fraction digits); other characters are literal.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Whitespace-separated field the timestamp starts at.
    field: usize,
    fmt: &'static str,
}

/// Per-system timestamp layouts (generator knowledge, not product parsing rules).
fn layouts(system: &str) -> &'static [Layout] {
    match system {
        "Android" => &[Layout {
            field: 0,
            fmt: "%m-%d %H:%M:%S.%3",
        }],
        "Apache" => &[Layout {
            field: 0,
            fmt: "[%a %b %d %H:%M:%S %Y]",
        }],
        "BGL" => &[
            Layout {
                field: 1,
                fmt: "%s",
            },
            Layout {
                field: 2,
                fmt: "%Y.%m.%d",
            },
            Layout {
                field: 4,
                fmt: "%Y-%m-%d-%H.%M.%S.%6",
            },
        ],
        "HDFS" => &[Layout {
            field: 0,
            fmt: "%y%m%d %H%M%S",
        }],
        "HPC" => &[Layout {
            field: 4,
            fmt: "%s",
        }],
        "Hadoop" => &[Layout {
            field: 0,
            fmt: "%Y-%m-%d %H:%M:%S,%3",
        }],
        "Linux" | "OpenSSH" => &[Layout {
            field: 0,
            fmt: "%b %e %H:%M:%S",
        }],
        "Spark" => &[Layout {
            field: 0,
            fmt: "%y/%m/%d %H:%M:%S",
        }],
        "Windows" => &[Layout {
            field: 0,
            fmt: "%Y-%m-%d %H:%M:%S",
        }],
        _ => &[],
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Parses `fmt` at the start of `s`: (unix seconds, fraction digits as text, bytes used).
fn parse_layout(s: &str, fmt: &str) -> Option<(i64, usize)> {
    let b = s.as_bytes();
    let (mut y, mut mo, mut d, mut h, mut mi, mut se) = (2000i64, 1u32, 1u32, 0i64, 0i64, 0i64);
    let mut epoch = None;
    let mut i = 0;
    let mut f = fmt.as_bytes().iter();
    let num = |i: &mut usize, n: usize| -> Option<i64> {
        let t = b.get(*i..*i + n)?;
        if !t.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *i += n;
        std::str::from_utf8(t).ok()?.parse().ok()
    };
    while let Some(&c) = f.next() {
        if c != b'%' {
            if b.get(i) != Some(&c) {
                return None;
            }
            i += 1;
            continue;
        }
        match f.next()? {
            b'Y' => y = num(&mut i, 4)?,
            b'y' => y = 2000 + num(&mut i, 2)?,
            b'm' => mo = num(&mut i, 2)? as u32,
            b'd' => d = num(&mut i, 2)? as u32,
            b'e' => {
                if b.get(i) == Some(&b' ') {
                    i += 1;
                    d = num(&mut i, 1)? as u32;
                } else {
                    d = num(&mut i, 2)? as u32;
                }
            }
            b'H' => h = num(&mut i, 2)?,
            b'M' => mi = num(&mut i, 2)?,
            b'S' => se = num(&mut i, 2)?,
            b'b' => {
                let t = s.get(i..i + 3)?;
                mo = MONTHS.iter().position(|m| *m == t)? as u32 + 1;
                i += 3;
            }
            b'a' => i += 3,
            b's' => epoch = Some(num(&mut i, 10)?),
            b'3' => i += 3 * usize::from(b.get(i..i + 3)?.iter().all(u8::is_ascii_digit)),
            b'6' => i += 6 * usize::from(b.get(i..i + 6)?.iter().all(u8::is_ascii_digit)),
            _ => return None,
        }
    }
    if let Some(e) = epoch {
        return Some((e, i));
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    Some((
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se,
        i,
    ))
}

/// Renders `secs` in `fmt`, copying fraction digits from `orig` (the original text).
fn render_layout(out: &mut String, secs: i64, fmt: &str, orig: &str) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut f = fmt.as_bytes().iter();
    // Fraction digits sit at the same offset in the original as in the output, since
    // every other directive has a fixed width.
    let mut pos = 0usize;
    while let Some(&c) = f.next() {
        if c != b'%' {
            out.push(c as char);
            pos += 1;
            continue;
        }
        let Some(&k) = f.next() else { break };
        let piece = match k {
            b'Y' => format!("{y:04}"),
            b'y' => format!("{:02}", y.rem_euclid(100)),
            b'm' => format!("{m:02}"),
            b'd' => format!("{d:02}"),
            b'e' => format!("{d:>2}"),
            b'H' => format!("{:02}", sod / 3600),
            b'M' => format!("{:02}", sod / 60 % 60),
            b'S' => format!("{:02}", sod % 60),
            b'b' => MONTHS[(m - 1) as usize].to_string(),
            b'a' => DAYS[days.rem_euclid(7) as usize].to_string(),
            b's' => format!("{secs}"),
            b'3' => orig.get(pos..pos + 3).unwrap_or("000").to_string(),
            b'6' => orig.get(pos..pos + 6).unwrap_or("000000").to_string(),
            _ => String::new(),
        };
        pos += piece.len();
        out.push_str(&piece);
    }
}

/// A timestamp found in a sample line.
#[derive(Debug, Clone)]
struct Stamp {
    start: usize,
    end: usize,
    secs: i64,
    layout: Layout,
}

/// A sample line with its timestamps and mutable tokens located once.
#[derive(Debug, Clone)]
struct SampleLine {
    text: String,
    stamps: Vec<Stamp>,
    /// Byte spans of tokens with 4+ digits outside the stamps.
    variables: Vec<(usize, usize)>,
}

/// One system's sample.
#[derive(Debug, Clone)]
pub struct System {
    name: String,
    lines: Vec<SampleLine>,
    /// Earliest timestamp of the sample, seconds.
    lo: i64,
    /// Seconds the sample spans (+1).
    period: i64,
    /// Seconds of output time per pass, and the factor mapping sample time into it
    /// (set by `generate`).
    window: i64,
    scale: f64,
    /// Cursor: next line, and the pass it is on.
    next: usize,
    pass: u64,
    bytes: u64,
    /// Time of the last line that had one (for lines without a timestamp).
    last_time: i64,
}

fn field_starts(line: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == ' ' {
            prev_space = true;
        } else {
            if prev_space {
                starts.push(i);
            }
            prev_space = false;
        }
    }
    starts
}

impl System {
    /// Loads `dir/<name>/<name>_2k.log`.
    pub fn load(dir: &Path, name: &str) -> io::Result<System> {
        let text = fs::read_to_string(dir.join(name).join(format!("{name}_2k.log")))?;
        let mut lines = Vec::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for raw in text.lines() {
            let starts = field_starts(raw);
            let mut stamps = Vec::new();
            for layout in layouts(name) {
                let Some(&at) = starts.get(layout.field) else {
                    continue;
                };
                if let Some((secs, used)) = raw.get(at..).and_then(|s| parse_layout(s, layout.fmt))
                {
                    lo = lo.min(secs);
                    hi = hi.max(secs);
                    stamps.push(Stamp {
                        start: at,
                        end: at + used,
                        secs,
                        layout: *layout,
                    });
                }
            }
            let mut variables = Vec::new();
            for t in engine::token::tokens(raw) {
                let start = t.as_ptr() as usize - raw.as_ptr() as usize;
                let end = start + t.len();
                let inside = stamps.iter().any(|s| start < s.end && end > s.start);
                if !inside && t.bytes().filter(u8::is_ascii_digit).count() >= 4 {
                    variables.push((start, end));
                }
            }
            lines.push(SampleLine {
                text: raw.to_string(),
                stamps,
                variables,
            });
        }
        let (lo, period) = if hi >= lo {
            (lo, hi - lo + 1)
        } else {
            (0, 86_400)
        };
        let bytes = text.len() as u64;
        Ok(System {
            name: name.to_string(),
            lines,
            lo,
            period,
            window: period,
            scale: 1.0,
            next: 0,
            pass: 0,
            bytes,
            last_time: lo,
        })
    }

    /// Fits the passes a run of `lines` output lines will make into `span_secs`.
    fn plan(&mut self, lines: u64, share: f64, span_secs: i64) {
        let sample = self.lines.len().max(1) as f64;
        let passes = ((lines as f64 * share) / sample).ceil().max(1.0);
        self.window = ((span_secs as f64 / passes) as i64).max(1);
        self.scale = (self.window as f64 / self.period as f64).min(1.0);
        if self.scale >= 1.0 {
            self.window = self.window.max(self.period);
        }
    }

    fn map_time(&self, secs: i64) -> i64 {
        let within = ((secs - self.lo) as f64 * self.scale) as i64;
        self.lo + within + self.window * self.pass as i64
    }

    /// The system's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders this system's next line into `out`; returns its time in seconds (that
    /// of the previous line when it has no timestamp of its own).
    fn next_line(&mut self, seed: u64, out: &mut String) -> i64 {
        let Some(line) = self.lines.get(self.next) else {
            return self.last_time;
        };
        let mut time = None;
        let mut pos = 0;
        // Events in order of position: stamps and variables never overlap.
        let mut events: Vec<(usize, usize, Option<&Stamp>)> = line
            .stamps
            .iter()
            .map(|s| (s.start, s.end, Some(s)))
            .chain(line.variables.iter().map(|&(a, b)| (a, b, None)))
            .collect();
        events.sort_by_key(|e| e.0);
        for (start, end, stamp) in events {
            out.push_str(line.text.get(pos..start).unwrap_or(""));
            let orig = line.text.get(start..end).unwrap_or("");
            match stamp {
                Some(s) => {
                    let t = self.map_time(s.secs);
                    render_layout(out, t, s.layout.fmt, orig);
                    time.get_or_insert(t);
                }
                None if self.pass == 0 => out.push_str(orig),
                None => mutate(
                    out,
                    orig,
                    mix(seed ^ mix(self.pass) ^ hash(orig.as_bytes())),
                ),
            }
            pos = end;
        }
        out.push_str(line.text.get(pos..).unwrap_or(""));
        self.next += 1;
        if self.next == self.lines.len() {
            self.next = 0;
            self.pass += 1;
        }
        let t = time.unwrap_or(self.last_time);
        self.last_time = t;
        t
    }
}

/// Rotates each digit of `token` by an amount drawn from `key`.
fn mutate(out: &mut String, token: &str, mut key: u64) {
    for c in token.chars() {
        if let Some(d) = c.to_digit(10) {
            let r = (key % 10) as u32;
            key = mix(key);
            out.push(char::from_digit((d + r) % 10, 10).unwrap_or(c));
        } else {
            out.push(c);
        }
    }
}

/// The splitmix64 step: `z` advanced by the golden gamma, then mixed.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Output form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The lines as they are.
    Raw,
    /// `{"_time": ..., "_msg": ..., "system": ..., "level": ..., "client": ...}` per
    /// line.
    Jsonl,
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Lines to write.
    pub lines: u64,
    /// RNG seed.
    pub seed: u64,
    /// Output form.
    pub format: Format,
    /// Seconds of log time the whole run covers, for every system.
    pub span_secs: i64,
}

impl Spec {
    /// Default time span of a run: 7 days.
    pub const SPAN_SECS_DEFAULT: i64 = 7 * 86_400;
}

/// What a run wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Lines written.
    pub lines: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Each needle and how often it was planted.
    pub needles: Vec<(String, u64)>,
}

/// Whether line `i` of `n` carries a needle planted `count` times: evenly spread
/// positions, offset by the seed, so the count is exact.
fn has_needle(i: u64, n: u64, count: u64, seed: u64) -> bool {
    if count > n {
        return false;
    }
    let stride = n / count;
    let offset = mix(seed ^ count) % stride;
    i >= offset && (i - offset).is_multiple_of(stride) && (i - offset) / stride < count
}

/// Writes `spec.lines` lines generated from `systems` to `out`.
pub fn generate(systems: &mut [System], spec: &Spec, out: &mut impl Write) -> io::Result<Summary> {
    let total: u64 = systems.iter().map(|s| s.bytes).sum();
    for s in systems.iter_mut() {
        let share = s.bytes as f64 / total.max(1) as f64;
        s.plan(spec.lines, share, spec.span_secs);
    }
    let mut rng = mix(spec.seed);
    let mut line = String::with_capacity(1024);
    let mut json = String::with_capacity(1200);
    let mut summary = Summary::default();
    for i in 0..spec.lines {
        rng = mix(rng);
        let mut pick = rng % total.max(1);
        let idx = systems
            .iter()
            .position(|s| {
                if pick < s.bytes {
                    true
                } else {
                    pick -= s.bytes;
                    false
                }
            })
            .unwrap_or(0);
        let Some(system) = systems.get_mut(idx) else {
            break;
        };
        line.clear();
        let time = system.next_line(spec.seed, &mut line);
        for (name, count) in NEEDLES {
            if has_needle(i, spec.lines, count, spec.seed) {
                line.push(' ');
                line.push_str(name);
            }
        }
        let written = match spec.format {
            Format::Raw => {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                line.len() + 1
            }
            Format::Jsonl => {
                json.clear();
                json.push_str("{\"_time\":\"");
                json.push_str(&format_rfc3339(time * 1_000_000_000));
                json.push_str("\",\"_msg\":");
                json.push_str(&serde_json::to_string(&line).unwrap_or_default());
                json.push_str(",\"system\":\"");
                json.push_str(system.name());
                // A level (80% INFO, 12% WARN, 5% ERROR, 3% DEBUG) and a client id
                // with about 100,000 distinct values, for field filters and top-k.
                let r = mix(rng ^ 0x5eed);
                json.push_str("\",\"level\":\"");
                json.push_str(match r % 100 {
                    0..80 => "INFO",
                    80..92 => "WARN",
                    92..97 => "ERROR",
                    _ => "DEBUG",
                });
                json.push_str("\",\"client\":\"c");
                json.push_str(&((r >> 8) % 100_000).to_string());
                json.push_str("\"}\n");
                out.write_all(json.as_bytes())?;
                json.len()
            }
        };
        summary.lines += 1;
        summary.bytes += written as u64;
    }
    summary.needles = NEEDLES
        .iter()
        .map(|(n, c)| (n.to_string(), if *c <= spec.lines { *c } else { 0 }))
        .collect();
    Ok(summary)
}

/// Loads all ten systems from a Loghub directory.
pub fn load_all(dir: &Path) -> io::Result<Vec<System>> {
    [
        "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "Linux", "OpenSSH", "Spark", "Windows",
    ]
    .iter()
    .map(|n| System::load(dir, n))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loghub() -> std::path::PathBuf {
        let here = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        here.ancestors()
            .map(|a| a.join("shared/data/loghub"))
            .find(|p| p.is_dir())
            .unwrap_or_else(|| "/work/shared/data/loghub".into())
    }

    fn run(lines: u64, seed: u64, format: Format) -> (Vec<u8>, Summary) {
        let mut systems = load_all(&loghub()).unwrap();
        let mut out = Vec::new();
        let spec = Spec {
            lines,
            seed,
            format,
            span_secs: Spec::SPAN_SECS_DEFAULT,
        };
        let s = generate(&mut systems, &spec, &mut out).unwrap();
        (out, s)
    }

    #[test]
    fn layouts_parse_every_sample_line_of_their_system() {
        for s in load_all(&loghub()).unwrap() {
            let with = s.lines.iter().filter(|l| !l.stamps.is_empty()).count();
            assert!(
                with * 100 >= s.lines.len() * 95,
                "{}: {with}/{} lines with a timestamp",
                s.name,
                s.lines.len()
            );
        }
    }

    #[test]
    fn pass_zero_reproduces_the_samples() {
        for mut s in load_all(&loghub()).unwrap() {
            let orig: Vec<String> = s.lines.iter().map(|l| l.text.clone()).collect();
            for want in &orig {
                let mut out = String::new();
                s.next_line(7, &mut out);
                assert_eq!(&out, want, "{}", s.name);
            }
        }
    }

    #[test]
    fn a_run_stays_within_its_time_span() {
        let mut systems = load_all(&loghub()).unwrap();
        let mut out = Vec::new();
        let spec = Spec {
            lines: 200_000,
            seed: 3,
            format: Format::Jsonl,
            span_secs: 86_400,
        };
        generate(&mut systems, &spec, &mut out).unwrap();
        let ctx = engine::ingest::IngestContext::default();
        let mut per_system: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for line in String::from_utf8(out).unwrap().lines() {
            let r = engine::ingest::parse_json(line, &ctx).unwrap();
            let sys = r.fields[0].1.to_text();
            let e = per_system.entry(sys).or_insert((i64::MAX, i64::MIN));
            e.0 = e.0.min(r.time_ns);
            e.1 = e.1.max(r.time_ns);
        }
        for (sys, (lo, hi)) in per_system {
            let span_s = (hi - lo) / 1_000_000_000;
            // One day of windows, plus at most one sample period when the sample is
            // shorter than a window.
            assert!(span_s <= 2 * 86_400, "{sys}: {span_s} s");
        }
    }

    #[test]
    fn later_passes_move_time_forward_and_vary_ids() {
        let mut s = System::load(&loghub(), "Hadoop").unwrap();
        s.plan(100_000, 0.1, 7 * 86_400);
        let n = s.lines.len();
        let mut first = Vec::new();
        let mut second = Vec::new();
        for _ in 0..n {
            let mut o = String::new();
            first.push((s.next_line(1, &mut o), o));
        }
        for _ in 0..n {
            let mut o = String::new();
            second.push((s.next_line(1, &mut o), o));
        }
        let last_first = first.iter().map(|(t, _)| *t).max().unwrap();
        let first_second = second.iter().map(|(t, _)| *t).min().unwrap();
        assert!(first_second > last_first, "pass 1 starts after pass 0 ends");
        let changed = first
            .iter()
            .zip(&second)
            .filter(|(a, b)| a.1[24..] != b.1[24..])
            .count();
        assert!(changed > n / 2, "ids vary across passes: {changed}/{n}");
        // Within a pass the same token maps the same way: a pass-1 line re-parses.
        for (t, line) in &second {
            if let Some((secs, _)) = parse_layout(line, "%Y-%m-%d %H:%M:%S,%3") {
                assert_eq!(secs, *t);
            }
        }
    }

    #[test]
    fn deterministic_with_exact_needle_counts() {
        let (a, sa) = run(25_000, 42, Format::Raw);
        let (b, _) = run(25_000, 42, Format::Raw);
        assert_eq!(a, b);
        let (c, _) = run(25_000, 43, Format::Raw);
        assert_ne!(a, c);
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count(), 25_000);
        assert_eq!(sa.lines, 25_000);
        assert_eq!(sa.bytes, text.len() as u64);
        for (needle, count) in NEEDLES {
            let found = text
                .lines()
                .filter(|l| engine::token::tokens(l).any(|t| t == needle))
                .count() as u64;
            assert_eq!(found, count, "{needle}");
        }
    }

    #[test]
    fn jsonl_lines_parse_with_the_engine() {
        let (out, _) = run(2_000, 5, Format::Jsonl);
        let ctx = engine::ingest::IngestContext::default();
        for line in String::from_utf8(out).unwrap().lines() {
            let r = engine::ingest::parse_json(line, &ctx).unwrap();
            assert!(!r.msg.is_empty());
            // `system` and `client` are fields; `level` is the level.
            let names: Vec<&str> = r.fields.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, ["system", "client"]);
            assert!(matches!(
                r.level.as_deref(),
                Some("INFO" | "WARN" | "ERROR" | "DEBUG")
            ));
        }
    }
}
