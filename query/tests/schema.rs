//! The schema planned from the query and the stored columns (what Flight's
//! `GetSchema` answers without running the query) is the schema `DoGet`'s batches
//! carry, whenever the rows found have a value in every column.

use engine::engine::{Engine, EngineConfig};
use engine::model::{Record, Tenant, Value};
use query::{parse, run_batches, Limits};

#[test]
fn the_planned_schema_is_the_answers_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.wal.preallocate = false;
    let e = Engine::open(cfg).unwrap();
    let t = Tenant::default();
    let recs = |from: i64| -> Vec<Record> {
        (from..from + 50)
            .map(|i| Record {
                time_ns: 1_700_000_000_000_000_000 + i * 60_000_000_000,
                msg: format!("request {i} served"),
                stream: [("service".to_string(), "api".to_string())].into(),
                level: Some("INFO".into()),
                fields: vec![
                    ("status".into(), Value::I64(200 + i % 3)),
                    ("host".into(), Value::Str(format!("h{}", i % 4))),
                    ("latency".into(), Value::F64(i as f64 / 3.0)),
                    ("ok".into(), Value::Bool(i % 2 == 0)),
                ],
            })
            .collect()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(e.ingest(&t, recs(0), 0)).unwrap();
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.ingest(&t, recs(50), 0)).unwrap();
    for text in [
        "*",
        "* | limit 3",
        "request | sort by (status) | limit 5",
        "* | fields _time, host, status, latency, ok, service",
        "* | stats count(), count_uniq(host), avg(latency), quantile(0.5, status) by (host)",
        "* | stats count() by (_time:1h)",
        "* | stats count() by (_time:1h, level) | sort by (count()) desc",
        "* | top 2 by (host, ok)",
        "* | uniq by (host)",
        "* | fields host, status | stats count() by (host)",
    ] {
        let q = parse(text, 0).unwrap();
        let planned = query::schema::planned_schema(&e, &t, &q).unwrap();
        let got = run_batches(&e, &t, &q, &Limits::default(), 1000).unwrap();
        assert_eq!(planned, got[0].schema(), "{text}");
    }
}
