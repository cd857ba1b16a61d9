//! Differential test: random queries over random data, run by the executor (index
//! pruning, segments, memtable, parallel partial aggregates) and by the reference
//! evaluator scanning every record; the results must be identical.

use engine::engine::{Engine, EngineConfig};
use engine::model::{Record, Tenant, Value};
use engine::template::{Miner, MinerConfig};
use proptest::prelude::*;
use query::eval::run_naive;
use query::{parse, run, run_batches, Limits};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type TestRng = SmallRng;

const WORDS: [&str; 15] = [
    "error", "ERROR", "disk", "full", "timeout", "user", "login", "ok", "blk_7", "R02", "42",
    "4242", "08", "45", "02T08",
];

/// Times of day with dates: stored as time runs (one number per row), whose
/// tokens ("08", "45", "02T08") queries must still find.
const TIMES: [&str; 5] = [
    "2023-11-02 08:30:45",
    "2023-11-02T08:30:45.123",
    "Nov  2 08:45:08",
    "12:08:45,999",
    "02/11/23 8:30:45",
];

fn message(rng: &mut TestRng) -> String {
    let n = rng.gen_range(1..7);
    let seps = [" ", ", ", ":", "/", "-", "="];
    let mut m = String::new();
    if rng.gen_bool(0.3) {
        m.push_str(TIMES[rng.gen_range(0..TIMES.len())]);
        m.push(' ');
    }
    for i in 0..n {
        if i > 0 {
            m.push_str(seps[rng.gen_range(0..seps.len())]);
        }
        m.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
    }
    m
}

fn records(rng: &mut TestRng, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut fields = vec![(
                "status".to_string(),
                Value::I64(200 + rng.gen_range(0..4) * 100),
            )];
            if rng.gen_bool(0.7) {
                fields.push((
                    "host".into(),
                    Value::Str(format!("h{}", rng.gen_range(0..4))),
                ));
            }
            if rng.gen_bool(0.5) {
                fields.push(("latency".into(), Value::F64(rng.gen_range(0..1000) as f64)));
            }
            Record {
                // Unique times (ties would make "newest first" ambiguous), over 3 days.
                time_ns: 1_700_000_000_000_000_000
                    + i as i64 * 997_000_000_000
                    + rng.gen_range(0..1000),
                msg: message(rng),
                stream: [(
                    "service".to_string(),
                    ["api", "web"][rng.gen_range(0..2)].to_string(),
                )]
                .into(),
                level: match rng.gen_range(0..4) {
                    0 => None,
                    1 => Some("INFO".into()),
                    2 => Some("WARN".into()),
                    _ => Some("ERROR".into()),
                },
                fields,
            }
        })
        .collect()
}

fn atom(rng: &mut TestRng) -> String {
    let w = WORDS[rng.gen_range(0..WORDS.len())];
    let w2 = WORDS[rng.gen_range(0..WORDS.len())];
    match rng.gen_range(0..16) {
        0 | 1 => w.to_string(),
        2 => format!("\"{w} {w2}\""),
        3 => format!("{}*", &w[..1]),
        4 => [
            "level:ERROR",
            "level:INFO",
            "level:warn",
            "level:*",
            "level:E*",
        ][rng.gen_range(0..5)]
        .into(),
        5 => format!("status:{}", 200 + rng.gen_range(0..5) * 100),
        6 => format!("status:>{}", 200 + rng.gen_range(0..4) * 100),
        7 => format!(
            "status:[{}, {})",
            200 + rng.gen_range(0..3) * 100,
            300 + rng.gen_range(0..3) * 100
        ),
        8 => ["host:h1", "host:*", "host:h*", "latency:<500", "latency:*"][rng.gen_range(0..5)]
            .into(),
        9 => [
            "~\"err(or)?\"",
            "~\"(?i)disk.full\"",
            "~\"^ok\"",
            "host:~\"h[12]\"",
            // Prefilters: inside a string variable, inside an integer, inside a
            // template word, alternatives, a literal spanning a separator.
            "~\"blk_[0-9]+\"",
            "~\"424\"",
            "~\"rro\"",
            "~\"time(out)?|logi\"",
            "~\"user.log\"",
            // Upper case in a template word (the dictionary keeps it folded).
            "~\"RROR\"",
            // Inside and across the tokens of a time run.
            "~\"0:4\"",
            "~\"2T0\"",
        ][rng.gen_range(0..12)]
        .into(),
        10 => [
            "{service=\"api\"}",
            "{service!=\"api\"}",
            "{service=\"web\", service!=\"x\"}",
        ][rng.gen_range(0..3)]
        .into(),
        11 => {
            let day = rng.gen_range(0..3);
            format!(
                "_time:[2023-11-{:02}T12:00:00Z, 2023-11-{:02}T00:00:00Z)",
                14 + day,
                16 + day
            )
        }
        12 => "*".into(),
        13 => format!("_msg:{w}"),
        14 => "host:\"h1\"".into(),
        15 if rng.gen_bool(0.5) => format!("_template:{}", rng.gen_range(0..12)),
        _ => format!("{}:{}", ["R02", "42", "blk_7"][rng.gen_range(0..3)], "x"),
    }
}

fn filter(rng: &mut TestRng, depth: u32) -> String {
    if depth == 0 || rng.gen_bool(0.4) {
        return atom(rng);
    }
    let a = filter(rng, depth - 1);
    let b = filter(rng, depth - 1);
    match rng.gen_range(0..5) {
        0 => format!("{a} {b}"),
        1 => format!("{a} OR {b}"),
        2 => format!("({a} OR {b}) {}", atom(rng)),
        3 => format!("NOT {a}"),
        _ => format!("-{a} {b}"),
    }
}

fn pipes(rng: &mut TestRng) -> String {
    match rng.gen_range(0..11) {
        0 | 1 => String::new(),
        2 => format!(" | limit {}", rng.gen_range(0..20)),
        3 => [" | stats count() by (level)", " | stats count() by (service)", " | top 2 by (status)", " | uniq by (latency)", " | stats count() by (nothere)"][rng.gen_range(0..5)].into(),
        4 => " | stats count(), count_uniq(host), sum(latency), avg(latency), min(status), max(status), quantile(0.5, latency) by (_time:1h)".into(),
        5 => " | top 3 by (host)".into(),
        6 => " | uniq by (host, level)".into(),
        7 => [" | sort by (status desc, _time) | limit 7", " | sort by (_time) desc | limit 6", " | sort by (_time desc) | limit 4 | fields _time, _msg, host"][rng.gen_range(0..3)].into(),
        8 => [" | fields _time, level, host, service | limit 5", " | stats count() by (_template)", " | fields _template, _msg | limit 9"][rng.gen_range(0..3)].into(),
        9 => [" | stats count() | fields count()", " | stats count() by (_time:1h)", " | stats count(), count() by (_time:1d)"][rng.gen_range(0..3)].into(),
        _ => " | stats max(latency) by (service, host) | sort by (max(latency)) desc | limit 3".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn executor_equals_a_scan_of_every_record(seed in any::<u64>()) {
        let mut rng = TestRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path());
        cfg.wal.preallocate = false;
        cfg.segment.block_rows = 8;
        // Half the cases keep only the two most used field names as columns: the
        // others go through the overflow column.
        if seed % 2 == 0 {
            cfg.segment.fields_max = 2;
        }
        cfg.pack_bytes = 0;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let e = Engine::open(cfg).unwrap();
        let t = Tenant::default();
        let mut all = records(&mut rng, 300);
        // Half the cases ingest out of time order: segments and blocks then overlap
        // in time (what pruning by time and the newest-first scans must get right).
        if seed % 4 >= 2 {
            for i in (1..all.len()).rev() {
                all.swap(i, rng.gen_range(0..=i));
            }
        }
        // The reference gets the template ids the engine gives, from a miner fed
        // the same records in the same order.
        let mut miner = Miner::new(MinerConfig::default());
        for r in &mut all {
            let id = miner.mine(&r.msg, r.time_ns);
            r.fields.push(("_template".into(), Value::I64(id as i64)));
        }
        // Three flushed batches (several segments per day) and one left in memory.
        for (i, chunk) in all.chunks(80).enumerate() {
            // Stored without the reference's `_template` (a reserved name the
            // engine refuses from callers); the engine's miner gives the same ids.
            let stored: Vec<Record> = chunk
                .iter()
                .cloned()
                .map(|mut r| {
                    r.fields.retain(|(k, _)| k != "_template");
                    r
                })
                .collect();
            rt.block_on(e.ingest(&t, stored, 0)).unwrap();
            if i < 3 {
                rt.block_on(e.flush()).unwrap();
            }
        }
        for _ in 0..40 {
            let text = format!("{}{}", filter(&mut rng, 3), pipes(&mut rng));
            let q = parse(&text, 1_700_500_000_000_000_000).unwrap_or_else(|e| panic!("{text}: {e}"));
            // `_template:N` also matches the ids folded into N: the reference scans
            // for them all.
            let mut widened = text.clone();
            for id in (0..12u64).rev() {
                let ids = e.template_ids(&t, id);
                if ids.len() > 1 {
                    let alts: Vec<String> = ids.iter().map(|i| format!("_template:{i}")).collect();
                    widened = widened.replace(&format!("_template:{id}"), &format!("({})", alts.join(" OR ")));
                }
            }
            let wq = parse(&widened, 1_700_500_000_000_000_000).unwrap();
            let want = run_naive(&wq, &all).unwrap();
            let got = run(&e, &t, &q, &Limits::default()).unwrap_or_else(|e| panic!("{text}: {e}"));
            prop_assert_eq!(&got.columns, &want.columns, "{}", text);
            prop_assert_eq!(got.rows.len(), want.rows.len(), "{}", text);
            prop_assert_eq!(&got, &want, "{}", text);
            // What Flight streams: the same rows as Arrow, whichever path built them.
            let batches = run_batches(&e, &t, &q, &Limits::default(), 7).unwrap();
            let want_batches = query::arrow::to_record_batches(&want, 7).unwrap();
            prop_assert_eq!(batches, want_batches, "{}", text);
        }
    }
}

/// The biggest and deepest filters the parser accepts run on segments and the
/// memtable without exhausting a thread's stack, with the scan's answer.
#[test]
fn the_largest_filters_accepted_run_like_a_scan() {
    use query::parse::{CONDITIONS_MAX, FILTER_DEPTH_MAX, NESTING_MAX};
    let mut rng = TestRng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.wal.preallocate = false;
    cfg.segment.block_rows = 8;
    cfg.templates = None;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = Engine::open(cfg).unwrap();
    let t = Tenant::default();
    let all = records(&mut rng, 200);
    rt.block_on(e.ingest(&t, all[..150].to_vec(), 0)).unwrap();
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.ingest(&t, all[150..].to_vec(), 0)).unwrap();
    let mut atom = || loop {
        let a = atom(&mut rng);
        if !a.contains("_template") {
            return a;
        }
    };
    let chain = |n: usize, sep: &str, atom: &mut dyn FnMut() -> String| {
        (0..n).map(|_| atom()).collect::<Vec<_>>().join(sep)
    };
    let mut texts = vec![
        chain(CONDITIONS_MAX, " OR ", &mut atom),
        chain(CONDITIONS_MAX, " ", &mut atom),
        format!("{}{}", "NOT ".repeat(NESTING_MAX), atom()),
    ];
    // As deep as accepted: each level nests the last one first in a chain.
    let mut deep = atom();
    loop {
        let next = format!("({deep}) {} OR {}", atom(), atom());
        match parse(&next, 0) {
            Ok(q) if q.filter.depth() <= FILTER_DEPTH_MAX => deep = next,
            _ => break,
        }
    }
    assert!(parse(&deep, 0).unwrap().filter.depth() > FILTER_DEPTH_MAX / 2);
    texts.push(deep);
    for text in texts {
        let q = parse(&text, 1_700_500_000_000_000_000).unwrap();
        let want = run_naive(&q, &all).unwrap();
        let got = run(&e, &t, &q, &Limits::default()).unwrap();
        assert_eq!(got, want, "{}...", &text[..80.min(text.len())]);
    }
}
