//! Limits against data still in the memtable.

use engine::engine::{Engine, EngineConfig};
use engine::model::{Record, Tenant};
use query::{query, Limits, QueryError};

#[test]
fn a_leading_limit_over_a_big_memtable_is_not_bound_by_the_row_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.wal.preallocate = false;
    let e = Engine::open(cfg).unwrap();
    let t = Tenant::default();
    let recs: Vec<Record> = (0..5000)
        .map(|i| Record {
            time_ns: i,
            msg: format!("line {i}"),
            stream: Default::default(),
            level: None,
            fields: vec![],
        })
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(e.ingest(&t, recs, 0))
        .unwrap();
    let limits = Limits {
        max_rows: 1000,
        ..Limits::default()
    };
    // Newest first: 4999, 4998, 4997.
    let r = query(&e, &t, "* | limit 3 | fields _msg", &limits).unwrap();
    let msgs: Vec<String> = r.rows.iter().map(|row| row[0].text().unwrap()).collect();
    assert_eq!(msgs, ["line 4999", "line 4998", "line 4997"]);
    // The same once the records are in segments (several blocks, one segment).
    rt_flush(&e);
    let r = query(&e, &t, "* | limit 3 | fields _msg", &limits).unwrap();
    let msgs: Vec<String> = r.rows.iter().map(|row| row[0].text().unwrap()).collect();
    assert_eq!(msgs, ["line 4999", "line 4998", "line 4997"]);
    let r = query(&e, &t, "* | limit 1000 | stats count()", &limits).unwrap();
    assert_eq!(r.rows[0][0], query::Cell::I64(1000));
    assert!(query(&e, &t, "* | limit 0", &limits)
        .unwrap()
        .rows
        .is_empty());
    // Without the leading limit the row limit applies.
    assert!(matches!(
        query(&e, &t, "line | fields _msg | limit 3", &limits),
        Err(QueryError::TooManyRows(1000))
    ));
}

fn rt_flush(e: &Engine) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(e.flush())
        .unwrap();
}
