//! Segment files: round trips, lazy per-chunk reads, and damage at every byte.

use engine::model::{Record, Tenant, Value};
use engine::segment::{write_segment, ColumnKind, SegmentError, SegmentOptions, SegmentReader};
use proptest::prelude::*;

fn sorted_fields(mut r: Record) -> Record {
    r.fields.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(format!("{:?}", a.1).cmp(&format!("{:?}", b.1)))
    });
    r
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z\"\\\\]{0,6}".prop_map(Value::Str),
        any::<i64>().prop_map(Value::I64),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        -1_000_000i64..1_000_000,
        "\\PC{0,30}",
        proptest::collection::btree_map("(service|host)", "[a-c]{1,2}", 0..2),
        proptest::option::of("(INFO|WARN|ERROR)"),
        proptest::collection::btree_map("(a|b|c\\.d)", value(), 0..3),
    )
        .prop_map(|(time_ns, msg, stream, level, fields)| Record {
            time_ns,
            msg,
            stream,
            level,
            fields: fields.into_iter().collect(),
        })
}

fn read_all(r: &SegmentReader) -> Result<Vec<Record>, SegmentError> {
    let mut out = Vec::new();
    for b in 0..r.footer().blocks.len() {
        out.extend(r.records(b)?);
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn records_round_trip_sorted_by_time(records in proptest::collection::vec(record(), 0..60), block_rows in 1usize..20) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        let tenant = Tenant::new("t1").unwrap();
        // Some cases keep fewer field columns than names: the rest round-trip
        // through the overflow column.
        let fields_max = [0, 1, 2, usize::MAX][block_rows % 4];
        let footer = write_segment(&path, &tenant, &records, &SegmentOptions { block_rows, zstd_level: 1, fields_max }).unwrap();
        prop_assert_eq!(footer.rows, records.len() as u64);
        let reader = SegmentReader::open(&path).unwrap();
        prop_assert_eq!(reader.footer(), &footer);
        let got: Vec<Record> = read_all(&reader).unwrap().into_iter().map(sorted_fields).collect();
        let mut want: Vec<Record> = records.into_iter().map(sorted_fields).collect();
        want.sort_by_key(|r| r.time_ns);
        // Stable sort on both sides: equal times keep input order.
        prop_assert_eq!(got, want);
        for b in &reader.footer().blocks {
            prop_assert!(b.min_time <= b.max_time);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `_template` chunks are coded by the rows' `_msg` templates when that is
    /// smaller: values that follow the message's shape, values that do not, rows
    /// without one, and several blocks all round-trip.
    #[test]
    fn template_ids_round_trip_whatever_they_follow(
        rows in proptest::collection::vec((0usize..4, 0u32..1000, 0u8..10), 0..80),
        block_rows in 1usize..30,
    ) {
        let shapes = ["user {} logged in", "disk {} full", "at 12:{}:00.5 ok", ""];
        let records: Vec<Record> = rows
            .iter()
            .enumerate()
            .map(|(i, (shape, n, roll))| Record {
                time_ns: i as i64,
                msg: shapes[*shape].replace("{}", &format!("{:02}", n % 60)),
                stream: Default::default(),
                level: None,
                fields: match roll {
                    0 => vec![],
                    1 => vec![("_template".into(), Value::I64(i64::from(*n) - 500))],
                    _ => vec![("_template".into(), Value::I64(*shape as i64 + 1))],
                },
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        let tenant = Tenant::new("t1").unwrap();
        write_segment(&path, &tenant, &records, &SegmentOptions { block_rows, zstd_level: 1, fields_max: usize::MAX }).unwrap();
        let reader = SegmentReader::open(&path).unwrap();
        reader.verify().unwrap();
        let got: Vec<Record> = read_all(&reader).unwrap();
        prop_assert_eq!(got, records);
    }
}

fn sample() -> Vec<Record> {
    (0..40)
        .map(|i| Record {
            time_ns: 1_000 + i * 10,
            msg: format!("request {i} served"),
            stream: [("service".to_string(), "api".to_string())].into(),
            level: (i % 3 == 0).then(|| "WARN".to_string()),
            fields: vec![
                ("status".into(), Value::I64(200 + i % 2)),
                ("ok".into(), Value::Bool(i % 5 != 0)),
            ],
        })
        .collect()
}

#[test]
fn reads_only_the_chunk_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    write_segment(
        &path,
        &Tenant::default(),
        &sample(),
        &SegmentOptions {
            block_rows: 16,
            zstd_level: 3,
            ..SegmentOptions::default()
        },
    )
    .unwrap();
    let r = SegmentReader::open(&path).unwrap();
    assert_eq!(r.footer().blocks.len(), 3);
    assert_eq!(r.footer().min_time(), Some(1_000));
    assert_eq!(r.footer().max_time(), Some(1_390));
    let level = r.column(ColumnKind::Level, "level").unwrap();
    let cb = r.read(level, 1).unwrap().unwrap();
    let present = cb.present.unwrap();
    assert_eq!(present.len(), 16);
    assert_eq!(
        present.iter().filter(|p| **p).count(),
        (16..32).filter(|i| i % 3 == 0).count()
    );
    assert!(r.column(ColumnKind::Str, "status").is_none());
    assert!(r.column(ColumnKind::I64, "status").is_some());
    assert!(matches!(r.read(99, 0), Err(SegmentError::NotFound(_))));
}

#[test]
fn every_damaged_byte_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    let tenant = Tenant::default();
    write_segment(
        &path,
        &tenant,
        &sample(),
        &SegmentOptions {
            block_rows: 16,
            zstd_level: 3,
            ..SegmentOptions::default()
        },
    )
    .unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad_path = dir.path().join("bad.seg");
    for at in 0..good.len() {
        for bit in [0u8, 5] {
            let mut b = good.clone();
            b[at] ^= 1 << bit;
            std::fs::write(&bad_path, &b).unwrap();
            let outcome = SegmentReader::open(&bad_path).and_then(|r| {
                r.verify()?;
                read_all(&r)
            });
            match outcome {
                Err(SegmentError::Corrupt { .. }) => {}
                other => panic!(
                    "flip of bit {bit} at byte {at} of {}: {other:?}",
                    good.len()
                ),
            }
        }
    }
    // Truncation anywhere is an error too.
    for len in [0, 10, good.len() / 2, good.len() - 1] {
        std::fs::write(&bad_path, &good[..len]).unwrap();
        assert!(
            matches!(
                SegmentReader::open(&bad_path),
                Err(SegmentError::Corrupt { .. })
            ),
            "len {len}"
        );
    }
}

#[test]
fn records_at_answers_in_the_asked_order_repeats_included_and_projects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    let opts = SegmentOptions {
        block_rows: 16,
        zstd_level: 1,
        ..SegmentOptions::default()
    };
    write_segment(&path, &Tenant::default(), &sample(), &opts).unwrap();
    let r = SegmentReader::open(&path).unwrap();
    let all = r.records(1).unwrap();
    // Newest first, as queries ask: the records move into that order.
    let rows = [15, 9, 3, 0];
    let got = r.records_at(1, &rows).unwrap();
    let want: Vec<Record> = rows.iter().map(|i| all[*i].clone()).collect();
    assert_eq!(got, want);
    // A row asked for twice comes back twice.
    let rows = [4, 2, 4];
    let got = r.records_at(1, &rows).unwrap();
    let want: Vec<Record> = rows.iter().map(|i| all[*i].clone()).collect();
    assert_eq!(got, want);
    // A column left out stays empty; the others are whole.
    let got = r
        .records_at_with(1, &[7, 1], &|c| c.name != "status")
        .unwrap();
    for (g, i) in got.iter().zip([7, 1]) {
        let w = &all[i];
        assert_eq!(
            (g.time_ns, &g.msg, &g.stream, &g.level),
            (w.time_ns, &w.msg, &w.stream, &w.level)
        );
        assert!(g.fields.iter().all(|(k, _)| k != "status"), "{g:?}");
        assert!(g.fields.iter().any(|(k, _)| k == "ok"), "{g:?}");
    }
}
