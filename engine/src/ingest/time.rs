//! Leading-timestamp detection for raw log lines.
//!
//! Recognised at the start of a line (the first match wins):
//! - RFC 3339 and its common relatives: `2006-01-02T15:04:05Z`,
//!   `2006-01-02 15:04:05,123`, `...+07:00` / `+0700`; no zone means UTC.
//! - syslog: `Jan  2 15:04:05` (day space- or zero-padded); the year is the ingest
//!   year, or the previous one when that would put the record more than a day in the
//!   future (the December lines read in January case).
//! - Apache/nginx common log: `[02/Jan/2006:15:04:05 -0700]`, at the start or after
//!   the `host ident user` fields of a common-log line.
//! - Apache error log: `[Mon Jan 02 15:04:05 2006]` (optional `.micros`), as local
//!   time taken to be UTC.
//! - Epoch: 10 digits (seconds, optional fraction) or 13 digits (milliseconds),
//!   followed by the end of the line or a character that is not a letter or digit.

const NANOS: i64 = 1_000_000_000;
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let d = i64::from(d);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC with nanoseconds
/// (`2006-01-02T15:04:05.000000000Z`).
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(NANOS);
    let frac = ns.rem_euclid(NANOS);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    if !(0..=9999).contains(&y) {
        // Outside four-digit years (not reachable from i64 nanoseconds today, kept
        // exact anyway).
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        );
    }
    // Digit by digit into a fixed buffer: this runs once per row a query returns.
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            if let Some(c) = b.get_mut(i) {
                *c = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, (sod / 3600) as u64);
    put(14, 2, (sod / 60 % 60) as u64);
    put(17, 2, (sod % 60) as u64);
    put(20, 9, frac as u64);
    String::from_utf8_lossy(&b).into_owned()
}

/// The civil year of a Unix time in nanoseconds.
fn year_of(ns: i64) -> i64 {
    civil_from_days(ns.div_euclid(NANOS * 86_400)).0
}

/// A byte cursor over the line.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
    }
    /// 1 or 2 digits, optionally preceded by one space (syslog's `Jan  2`).
    fn day(&mut self) -> Option<u32> {
        if self.peek() == Some(b' ') {
            self.i += 1;
            return self.digits(1);
        }
        let start = self.i;
        self.digits(2).or_else(|| {
            self.i = start;
            self.digits(1)
        })
    }
    fn month_name(&mut self) -> Option<u32> {
        let s = self.b.get(self.i..self.i + 3)?;
        let lower = [
            s[0].to_ascii_lowercase(),
            s[1].to_ascii_lowercase(),
            s[2].to_ascii_lowercase(),
        ];
        let m = MONTHS.iter().position(|n| n.as_bytes() == lower)?;
        self.i += 3;
        Some(m as u32 + 1)
    }
    /// Fraction after `.` or `,`: nanoseconds.
    fn fraction(&mut self) -> i64 {
        let start = self.i;
        if self.eat(b'.').is_none() && self.eat(b',').is_none() {
            return 0;
        }
        let mut ns = 0i64;
        let mut scale = NANOS / 10;
        let mut any = false;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            any = true;
            ns += i64::from(d - b'0') * scale;
            scale /= 10;
            self.i += 1;
        }
        if !any {
            self.i = start;
        }
        ns
    }
    /// `Z`, `±HH:MM`, `±HHMM`, or nothing: offset in seconds east of UTC.
    fn zone(&mut self) -> i64 {
        if self.eat(b'Z').is_some() || self.eat(b'z').is_some() {
            return 0;
        }
        let start = self.i;
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return 0,
        };
        self.i += 1;
        let parsed = (|| {
            let h = self.digits(2)?;
            let _ = self.eat(b':');
            let m = self.digits(2)?;
            (h < 24 && m < 60).then_some(sign * i64::from(h * 3600 + m * 60))
        })();
        parsed.unwrap_or_else(|| {
            self.i = start;
            0
        })
    }
    fn hms(&mut self) -> Option<(u32, u32, u32)> {
        let h = self.digits(2)?;
        self.eat(b':')?;
        let mi = self.digits(2)?;
        self.eat(b':')?;
        let s = self.digits(2)?;
        (h < 24 && mi < 60 && s <= 60).then_some((h, mi, s))
    }
}

fn valid_date(y: i64, m: u32, d: u32) -> bool {
    (1..=12).contains(&m) && (1..=31).contains(&d) && (1..=9999).contains(&y)
}

fn to_ns(
    y: i64,
    m: u32,
    d: u32,
    (h, mi, s): (u32, u32, u32),
    frac: i64,
    offset_s: i64,
) -> Option<i64> {
    if !valid_date(y, m, d) {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s) - offset_s;
    secs.checked_mul(NANOS)?.checked_add(frac)
}

fn rfc3339(c: &mut Cur<'_>) -> Option<i64> {
    let y = i64::from(c.digits(4)?);
    c.eat(b'-')?;
    let m = c.digits(2)?;
    c.eat(b'-')?;
    let d = c.digits(2)?;
    if c.eat(b'T').is_none() && c.eat(b't').is_none() {
        c.eat(b' ')?;
    }
    let t = c.hms()?;
    let frac = c.fraction();
    let off = c.zone();
    to_ns(y, m, d, t, frac, off)
}

/// Parses a whole RFC 3339 timestamp (`2026-11-26T12:00:00Z`, `...+01:00`, fractions,
/// a space instead of `T`, no zone = UTC) or a date alone (`2026-11-26`, midnight
/// UTC), as nanoseconds since the epoch. Anything else (trailing bytes included) is
/// `None`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let mut c = Cur {
        b: s.as_bytes(),
        i: 0,
    };
    if s.len() == 10 {
        let y = i64::from(c.digits(4)?);
        c.eat(b'-')?;
        let m = c.digits(2)?;
        c.eat(b'-')?;
        let d = c.digits(2)?;
        return to_ns(y, m, d, (0, 0, 0), 0, 0);
    }
    let ns = rfc3339(&mut c)?;
    (c.i == s.len()).then_some(ns)
}

fn syslog(c: &mut Cur<'_>, now_ns: i64) -> Option<i64> {
    let m = c.month_name()?;
    c.eat(b' ')?;
    let d = c.day()?;
    c.eat(b' ')?;
    let t = c.hms()?;
    let frac = c.fraction();
    let year = year_of(now_ns);
    let ts = to_ns(year, m, d, t, frac, 0)?;
    if ts > now_ns + 86_400 * NANOS {
        to_ns(year - 1, m, d, t, frac, 0)
    } else {
        Some(ts)
    }
}

/// `02/Jan/2006:15:04:05 -0700]` (after the `[`).
fn clf(c: &mut Cur<'_>) -> Option<i64> {
    let d = c.digits(2)?;
    c.eat(b'/')?;
    let m = c.month_name()?;
    c.eat(b'/')?;
    let y = i64::from(c.digits(4)?);
    c.eat(b':')?;
    let t = c.hms()?;
    let frac = c.fraction();
    c.eat(b' ')?;
    let off = c.zone();
    c.eat(b']')?;
    to_ns(y, m, d, t, frac, off)
}

/// `Mon Jan 02 15:04:05 2006]` (after the `[`).
fn apache_error(c: &mut Cur<'_>) -> Option<i64> {
    c.i += 3; // weekday name
    c.eat(b' ')?;
    let m = c.month_name()?;
    c.eat(b' ')?;
    let d = c.day()?;
    c.eat(b' ')?;
    let t = c.hms()?;
    let frac = c.fraction();
    c.eat(b' ')?;
    let y = i64::from(c.digits(4)?);
    c.eat(b']')?;
    to_ns(y, m, d, t, frac, 0)
}

fn epoch(c: &mut Cur<'_>) -> Option<i64> {
    let start = c.i;
    while c.peek().is_some_and(|b| b.is_ascii_digit()) {
        c.i += 1;
    }
    let n = c.i - start;
    let v: i64 = std::str::from_utf8(c.b.get(start..c.i)?)
        .ok()?
        .parse()
        .ok()?;
    let ns = match n {
        10 => v.checked_mul(NANOS)?.checked_add(c.fraction())?,
        13 => v.checked_mul(1_000_000)?,
        _ => return None,
    };
    match c.peek() {
        Some(b) if b.is_ascii_alphanumeric() => None,
        _ => Some(ns),
    }
}

/// The timestamp at the start of `line`, in nanoseconds since the epoch (UTC), if it
/// has one in a recognised form. `now_ns` supplies the year for syslog stamps.
pub fn leading_timestamp(line: &str, now_ns: i64) -> Option<i64> {
    let b = line.as_bytes();
    let first = *b.first()?;
    let attempt = |f: &dyn Fn(&mut Cur<'_>) -> Option<i64>, at: usize| f(&mut Cur { b, i: at });
    let found = if first.is_ascii_digit() {
        attempt(&rfc3339, 0).or_else(|| attempt(&epoch, 0))
    } else if first == b'[' {
        return attempt(&clf, 1).or_else(|| attempt(&apache_error, 1));
    } else if first.is_ascii_alphabetic() {
        attempt(&|c| syslog(c, now_ns), 0)
    } else {
        None
    };
    if found.is_some() {
        return found;
    }
    // Common log format: `host ident user [timestamp] ...`.
    let mut fields = 0;
    for (i, &ch) in b.iter().enumerate().take(512) {
        if ch == b' ' {
            fields += 1;
            if fields == 3 {
                return (b.get(i + 1) == Some(&b'['))
                    .then(|| attempt(&clf, i + 2))
                    .flatten();
            }
        }
    }
    None
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;

    #[test]
    fn whole_timestamps_and_dates_parse_garbage_does_not() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(NANOS));
        assert_eq!(
            parse_rfc3339("1970-01-01 00:00:01.5"),
            Some(NANOS + NANOS / 2)
        );
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-02"), Some(86_400 * NANOS));
        for bad in [
            "",
            "1970-01-01T00:00:01Zx",
            "1970-13-01",
            "yesterday",
            "1970-01-01T25:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_115_200 * NANOS; // 2025-11-26T00:00:00Z

    fn ts(s: &str) -> Option<i64> {
        leading_timestamp(s, NOW)
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(year_of(NOW), 2025);
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(-1), 1969);
        for days in [
            -800_000i64,
            -1,
            0,
            1,
            59,
            60,
            11_016,
            11_017,
            20_000,
            2_932_896,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days}");
        }
        assert_eq!(
            format_rfc3339(1_445_191_307_978_000_000),
            "2015-10-18T18:01:47.978000000Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        // The digit-by-digit formatting equals `format!` over the whole i64 range.
        let slow = |ns: i64| {
            let secs = ns.div_euclid(NANOS);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                sod / 3600,
                sod / 60 % 60,
                sod % 60,
                ns.rem_euclid(NANOS)
            )
        };
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for ns in [i64::MIN, i64::MAX, 0, -1, 1]
            .into_iter()
            .chain((0..20_000).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as i64
            }))
        {
            assert_eq!(format_rfc3339(ns), slow(ns), "{ns}");
        }
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(ts("2015-10-18T18:01:47Z x"), Some(1_445_191_307 * NANOS));
        assert_eq!(
            ts("2015-10-18 18:01:47,978 INFO"),
            Some(1_445_191_307 * NANOS + 978_000_000)
        );
        assert_eq!(
            ts("2015-10-18T20:01:47.5+02:00"),
            Some(1_445_191_307 * NANOS + 500_000_000)
        );
        assert_eq!(
            ts("2015-10-18T13:01:47-0500 x"),
            Some(1_445_191_307 * NANOS)
        );
        assert_eq!(ts("2015-13-18T18:01:47Z"), None);
        assert_eq!(ts("2015-10-18"), None);
    }

    #[test]
    fn syslog_forms_take_the_ingest_year() {
        assert_eq!(
            ts("Nov  9 12:01:01 host sshd"),
            Some((days_from_civil(2025, 11, 9) * 86_400 + 43_261) * NANOS)
        );
        assert_eq!(
            ts("Jun 14 15:16:01 combo"),
            Some((days_from_civil(2025, 6, 14) * 86_400 + 15 * 3600 + 16 * 60 + 1) * NANOS)
        );
        // December seen in late November of the same year is fine; a date more than a
        // day ahead belongs to the previous year.
        assert_eq!(
            ts("Dec 10 06:55:46 LabSZ"),
            Some((days_from_civil(2024, 12, 10) * 86_400 + 6 * 3600 + 55 * 60 + 46) * NANOS)
        );
        assert_eq!(ts("Now 10 06:55:46"), None);
    }

    #[test]
    fn apache_forms() {
        let want =
            (days_from_civil(2000, 10, 10) * 86_400 + 13 * 3600 + 55 * 60 + 36 + 7 * 3600) * NANOS;
        assert_eq!(ts("[10/Oct/2000:13:55:36 -0700] GET /"), Some(want));
        assert_eq!(ts("127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /apache_pb.gif HTTP/1.0\" 200"), Some(want));
        assert_eq!(
            ts("[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok"),
            Some((days_from_civil(2005, 12, 4) * 86_400 + 4 * 3600 + 47 * 60 + 44) * NANOS)
        );
        assert_eq!(ts("[notice] no time"), None);
    }

    #[test]
    fn epoch_forms() {
        assert_eq!(ts("1117838570 2005.06.03 R02"), Some(1_117_838_570 * NANOS));
        assert_eq!(
            ts("1117838570.25 x"),
            Some(1_117_838_570 * NANOS + 250_000_000)
        );
        assert_eq!(ts("1117838570123 x"), Some(1_117_838_570_123 * 1_000_000));
        // Not epochs: other digit counts, or digits running into letters.
        assert_eq!(ts("081109 203615 148 INFO"), None);
        assert_eq!(ts("1117838570abc"), None);
        assert_eq!(ts("134681 node-246"), None);
    }

    #[test]
    fn truncated_or_odd_input_has_no_timestamp() {
        for s in [
            "",
            "[",
            "2",
            "Jan",
            "Jan ",
            "[1",
            "a b c [",
            "2015-10-18T",
            "9999999999999999999999",
            "[Sun",
            "Jan 99 10:00:00",
        ] {
            assert_eq!(ts(s), None, "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_input_is_safe(s in "\\PC{0,40}") {
            let _ = ts(&s);
        }
    }
}
