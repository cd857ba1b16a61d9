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
    let recs: Vec<Record> = (0..5000).map(|i| line(i, format!("line {i}"))).collect();
    ingest(&e, &t, recs);
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

#[test]
fn the_newest_records_come_whole_from_segments_and_memtable_and_within_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.wal.preallocate = false;
    let e = Engine::open(cfg).unwrap();
    let t = Tenant::default();
    // Three segments whose times interleave (so no segment is skipped whole), each
    // of several blocks, then records still in the memtable; every third record
    // has a field, every fifth a level.
    let rec = |i: i64| {
        let mut r = line(i, format!("request {i} took {} ms", i % 97));
        if i % 3 == 0 {
            r.fields.push((
                "user".into(),
                engine::model::Value::Str(format!("u{}", i % 11)),
            ));
        }
        if i % 5 == 0 {
            r.level = Some("ERROR".into());
        }
        r
    };
    for part in 0..3 {
        ingest(&e, &t, (0..20_000).map(|k| rec(k * 4 + part)).collect());
        rt_flush(&e);
    }
    ingest(&e, &t, (0..3_000).map(|k| rec(k * 4 + 3)).collect());
    let all: Vec<i64> = (0..20_000 * 4)
        .filter(|i| i % 4 < 3 || *i < 12_000)
        .collect();
    let newest = |n: usize, keep: &dyn Fn(i64) -> bool| -> Vec<Vec<String>> {
        let mut ts: Vec<i64> = all.iter().copied().filter(|i| keep(*i)).collect();
        ts.sort_unstable_by(|a, b| b.cmp(a));
        ts.truncate(n);
        ts.into_iter()
            .map(|i| {
                let r = rec(i);
                let user = r.fields.first().map(|f| f.1.to_text()).unwrap_or_default();
                vec![r.msg, user, r.level.unwrap_or_default()]
            })
            .collect()
    };
    let limits = Limits::default();
    let rows = |q: &str| -> Vec<Vec<String>> {
        query(&e, &t, q, &limits)
            .unwrap()
            .rows
            .iter()
            .map(|row| row.iter().map(|c| c.text().unwrap_or_default()).collect())
            .collect()
    };
    for n in [1, 10, 2_999, 3_001, 25_000] {
        assert_eq!(
            rows(&format!("* | limit {n} | fields _msg, user, level")),
            newest(n, &|_| true),
            "limit {n}"
        );
    }
    assert_eq!(
        rows("level:ERROR | sort by (_time) desc | limit 700 | fields _msg, user, level"),
        newest(700, &|i| i % 5 == 0)
    );
    // The records kept count against the memory limit.
    let small = Limits {
        memory_bytes: 1 << 20,
        ..Limits::default()
    };
    assert!(matches!(
        query(&e, &t, "* | limit 50000", &small),
        Err(QueryError::Memory(_))
    ));
}

/// A record with a time and a message only.
fn line(time_ns: i64, msg: String) -> Record {
    Record {
        time_ns,
        msg,
        stream: Default::default(),
        level: None,
        fields: vec![],
    }
}

fn ingest(e: &Engine, t: &Tenant, recs: Vec<Record>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(e.ingest(t, recs, 0))
        .unwrap();
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

/// Lines without a timestamp of their own share their batch's ingest time: many
/// records of one time. The newest N are N of the newest time (which ones is
/// unspecified), in the memtable and in segments, and a limit past the ties
/// reaches the next older time.
#[test]
fn the_newest_n_among_records_of_one_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.wal.preallocate = false;
    cfg.segment.block_rows = 64;
    let e = Engine::open(cfg).unwrap();
    let t = Tenant::default();
    // 1,000 records at time 5, then 1,000 at time 7 (the newest), 1,000 at time 6.
    let recs: Vec<Record> = [5i64, 7, 6]
        .iter()
        .flat_map(|&time| (0..1000).map(move |i| line(time, format!("line {time} {i}"))))
        .collect();
    ingest(&e, &t, recs);
    let limits = Limits {
        max_rows: 100,
        ..Limits::default()
    };
    let times = |q: &str| -> Vec<String> {
        let r = query(&e, &t, q, &limits).unwrap();
        r.rows.iter().map(|row| row[0].text().unwrap()).collect()
    };
    for flushed in [false, true] {
        if flushed {
            rt_flush(&e);
        }
        for q in [
            "* | limit 3 | fields _time",
            "* | sort by (_time) desc | limit 3 | fields _time",
        ] {
            let got = times(q);
            assert_eq!(got.len(), 3, "{q}");
            assert!(
                got.iter().all(|t| t.ends_with(".000000007Z")),
                "{q}: {got:?}"
            );
        }
        // Past the 1,000 of time 7: the rest from time 6, none from 5.
        let counts: Vec<(String, i64)> =
            query(&e, &t, "* | limit 1010 | stats count() by (_time)", &limits)
                .unwrap()
                .rows
                .iter()
                .map(|r| (r[0].text().unwrap(), r[1].text().unwrap().parse().unwrap()))
                .collect();
        assert_eq!(
            counts,
            [
                ("1970-01-01T00:00:00.000000006Z".to_string(), 10),
                ("1970-01-01T00:00:00.000000007Z".to_string(), 1000)
            ],
            "flushed: {flushed}"
        );
    }
}
