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
    // Newest first: 4999, 4998, 4997; the newest records asked for by a sort on
    // `_time` are the same (it was refused: more than the row limit to sort).
    let newest = [
        "* | limit 3 | fields _msg",
        "* | sort by (_time) desc | limit 3 | fields _msg",
        "* | sort by (_time desc) | limit 3 | fields _msg",
    ];
    for q in newest {
        let r = query(&e, &t, q, &limits).unwrap();
        let msgs: Vec<String> = r.rows.iter().map(|row| row[0].text().unwrap()).collect();
        assert_eq!(msgs, ["line 4999", "line 4998", "line 4997"], "{q}");
    }
    // The same once the records are in segments (several blocks, one segment).
    rt_flush(&e);
    for q in newest {
        let r = query(&e, &t, q, &limits).unwrap();
        let msgs: Vec<String> = r.rows.iter().map(|row| row[0].text().unwrap()).collect();
        assert_eq!(msgs, ["line 4999", "line 4998", "line 4997"], "{q}");
    }
    // The oldest are not the newest: that sort is bound by the row limit.
    assert!(matches!(
        query(&e, &t, "* | sort by (_time) | limit 3", &limits),
        Err(QueryError::TooManyRows(1000))
    ));
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

/// `count_uniq` and `quantile` once kept every value outside the memory budget;
/// groups' keys too. Each is now refused past the budget, over segments and the
/// memtable alike, and answered within it.
#[test]
fn aggregation_state_counts_against_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.wal.preallocate = false;
    cfg.templates = None;
    let e = Engine::open(cfg).unwrap();
    let t = Tenant::default();
    let recs = |from: i64| -> Vec<Record> {
        (from..from + 20_000)
            .map(|i| Record {
                time_ns: i,
                msg: format!("line {i}"),
                stream: Default::default(),
                level: None,
                fields: vec![
                    (
                        "id".into(),
                        engine::model::Value::Str(format!("request-{i:012}")),
                    ),
                    ("ms".into(), engine::model::Value::F64(i as f64)),
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
    rt.block_on(e.ingest(&t, recs(20_000), 0)).unwrap();
    let small = Limits {
        memory_bytes: 256 << 10,
        ..Limits::default()
    };
    for q in [
        "* | stats count_uniq(id)",
        "* | stats quantile(0.5, ms)",
        "* | stats count() by (id)",
        "* | stats count(), max(ms) by (id, _time:1s)",
        "* | uniq by (id)",
    ] {
        let err = query(&e, &t, q, &small).unwrap_err();
        assert!(matches!(err, QueryError::Memory(_)), "{q}: {err}");
        query(&e, &t, q, &Limits::default()).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    let r = query(
        &e,
        &t,
        "* | stats count_uniq(id), quantile(0.5, ms)",
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(r.rows[0][0], query::Cell::I64(40_000));
    assert_eq!(r.rows[0][1], query::Cell::F64(19_999.0));
}
