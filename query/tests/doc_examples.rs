//! Every example in `docs/query-language.md` (the ```query block) parses, runs
//! through the executor and through a scan of every record with the same result, and
//! finds something in the data set below.

use engine::engine::{Engine, EngineConfig};
use engine::model::{Record, Tenant, Value};
use query::eval::run_naive;
use query::{parse, run, Limits};

fn t(min: i64) -> i64 {
    // 2026-11-26T10:00:00Z + min minutes.
    1_795_687_200_000_000_000 + min * 60_000_000_000
}

fn rec(min: i64, msg: &str, level: &str, service: &str, fields: Vec<(&str, Value)>) -> Record {
    Record {
        time_ns: t(min),
        msg: msg.into(),
        stream: [
            ("service".to_string(), service.to_string()),
            (
                "env".to_string(),
                if min % 2 == 0 { "prod" } else { "dev" }.to_string(),
            ),
        ]
        .into(),
        level: (!level.is_empty()).then(|| level.to_string()),
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

fn data() -> Vec<Record> {
    use Value::*;
    vec![
        rec(
            1,
            "GET /api/v1/users 200 in 12 ms",
            "INFO",
            "api",
            vec![
                ("host", Str("web-1".into())),
                ("status", I64(200)),
                ("latency", F64(0.012)),
                ("bytes", I64(512)),
            ],
        ),
        rec(
            7,
            "ERROR disk full on /var",
            "ERROR",
            "api",
            vec![
                ("host", Str("web-1".into())),
                ("status", I64(507)),
                ("bytes", I64(0)),
            ],
        ),
        rec(
            13,
            "request timed out after 30 s",
            "WARN",
            "api",
            vec![
                ("host", Str("web-2".into())),
                ("status", I64(504)),
                ("latency", F64(30.0)),
            ],
        ),
        rec(
            19,
            "connection from 10.0.0.1 refused: error",
            "ERROR",
            "web",
            vec![
                ("host", Str("web-2".into())),
                ("status", I64(503)),
                ("latency", F64(1.5)),
            ],
        ),
        rec(
            25,
            "User logged in",
            "INFO",
            "web",
            vec![
                ("host", Str("db-1".into())),
                ("user.name", Str("Ann Lee".into())),
                ("status", I64(200)),
                ("latency", F64(0.7)),
            ],
        ),
        rec(
            31,
            "timeout waiting for lock or deadlock",
            "WARN",
            "api",
            vec![
                ("host", Str("db-1".into())),
                ("status", I64(500)),
                ("bytes", I64(2048)),
            ],
        ),
        rec(
            37,
            "error: retry 3 of 5",
            "ERROR",
            "api",
            vec![
                ("host", Str("web-1".into())),
                ("status", I64(201)),
                ("latency", F64(2.0)),
            ],
        ),
        rec(
            43,
            "GET /health 200",
            "",
            "web",
            vec![("status", I64(200)), ("latency", F64(0.001))],
        ),
        rec(
            70,
            "cache warmed, 1200 keys",
            "INFO",
            "api",
            vec![("host", Str("web-2".into())), ("bytes", I64(65536))],
        ),
        rec(
            95,
            "disk  FULL again (twice)",
            "ERROR",
            "web",
            vec![("host", Str("web-1".into())), ("status", I64(507))],
        ),
    ]
}

#[test]
fn every_documented_example_runs_and_equals_a_scan() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/query-language.md"),
    )
    .unwrap();
    let mut examples = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        match (inside, line.trim()) {
            (false, "```query") => inside = true,
            (true, "```") => inside = false,
            (true, q) if !q.is_empty() => examples.push(q.to_string()),
            _ => {}
        }
    }
    assert!(examples.len() >= 35, "found {} examples", examples.len());

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.wal.preallocate = false;
    cfg.segment.block_rows = 2;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = Engine::open(cfg).unwrap();
    let tenant = Tenant::default();
    let all = data();
    // Most in segments, the last two still in the memtable.
    rt.block_on(e.ingest(&tenant, all[..5].to_vec(), 0))
        .unwrap();
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.ingest(&tenant, all[5..8].to_vec(), 0))
        .unwrap();
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.ingest(&tenant, all[8..].to_vec(), 0))
        .unwrap();

    for q in &examples {
        let parsed = parse(q, t(120)).unwrap_or_else(|err| panic!("{q}: {err}"));
        let want = run_naive(&parsed, &all).unwrap();
        let got = run(&e, &tenant, &parsed, &Limits::default())
            .unwrap_or_else(|err| panic!("{q}: {err}"));
        assert_eq!(got, want, "{q}");
        assert!(!got.rows.is_empty(), "the example finds nothing: {q}");
        // The same result as Arrow batches: same columns, same row count.
        let batches = query::run_batches(&e, &tenant, &parsed, &Limits::default(), 3).unwrap();
        let names: Vec<String> = batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, got.columns, "{q}");
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            got.rows.len(),
            "{q}"
        );
    }
}
