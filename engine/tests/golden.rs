//! Golden files: a segment written by each format version (2; 3, with the overflow
//! column; 4, with time runs, words found through templates and `_template` coded
//! by the `_msg` templates), committed, read back by every later build. If this test fails after a format change, the change broke reading old
//! data: keep the old layout readable (bump `FORMAT_VERSION`, keep
//! `OLDEST_SUPPORTED_VERSION`) instead of regenerating the file.
//!
//! The files were produced by `cargo test -p heimdall-engine --test golden -- --ignored
//! write_golden_vN` (of the build writing version N) from the records below.

use std::path::PathBuf;

use engine::model::{Record, Tenant, Value};
use engine::segment::{
    field_term, msg_term, write_segment, ColumnKind, SegmentOptions, SegmentReader,
};

fn golden_path() -> PathBuf {
    golden_path_of(2)
}

fn golden_path_of(version: u16) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/segment-v{version}.seg"))
}

/// Version 3: the same records with two field columns, the rest in the overflow
/// column.
const V3_FIELDS_MAX: usize = 2;

fn golden_records() -> Vec<Record> {
    (0..300i64)
        .map(|i| Record {
            time_ns: 1_700_000_000_000_000_000 + i * 1_000_000_007,
            msg: format!(
                "{} request {i} from 10.0.{}.{} took {} ms{}",
                ["GET", "POST", "PUT"][(i % 3) as usize],
                i % 7,
                i % 250,
                (i * 37) % 1000,
                if i % 50 == 0 { " ERROR timeout" } else { "" }
            ),
            stream: [("service".to_string(), format!("svc{}", i % 2))].into(),
            level: (i % 4 != 0).then(|| ["INFO", "WARN", "ERROR"][(i % 3) as usize].to_string()),
            fields: {
                let mut f = vec![("status".to_string(), Value::I64(200 + (i % 3) * 100))];
                if i % 5 == 0 {
                    f.push(("ratio".to_string(), Value::F64(i as f64 / 8.0)));
                }
                if i % 6 == 0 {
                    f.push((
                        "user.name".to_string(),
                        Value::Str(format!("user{}", i % 10)),
                    ));
                }
                f.push(("cached".to_string(), Value::Bool(i % 2 == 0)));
                f
            },
        })
        .collect()
}

#[test]
#[ignore = "writes the golden file; run only to create a new format version's file"]
fn write_golden_v2() {
    assert_eq!(
        engine::segment::FORMAT_VERSION,
        2,
        "this build writes another version"
    );
    write_segment(
        &golden_path(),
        &Tenant::new("golden").unwrap(),
        &golden_records(),
        &SegmentOptions {
            block_rows: 64,
            zstd_level: 3,
            ..SegmentOptions::default()
        },
    )
    .unwrap();
}

#[test]
#[ignore = "writes the golden file; run only to create a new format version's file"]
fn write_golden_v3() {
    assert_eq!(engine::segment::FORMAT_VERSION, 3);
    write_segment(
        &golden_path_of(3),
        &Tenant::new("golden").unwrap(),
        &golden_records(),
        &SegmentOptions {
            block_rows: 64,
            zstd_level: 3,
            fields_max: V3_FIELDS_MAX,
        },
    )
    .unwrap();
}

/// Version 4: the records with a time of day at the start of each message and a
/// `_template` field (mostly following the message's shape).
fn golden_records_v4() -> Vec<Record> {
    golden_records()
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.msg = format!(
                "2023-11-14 22:{:02}:{:02}.{:03} {}",
                13 + i / 60,
                i % 60,
                (i * 7) % 1000,
                r.msg
            );
            let template = if i % 40 == 0 { 99 } else { 1 + (i % 3) as i64 };
            r.fields.push(("_template".into(), Value::I64(template)));
            r
        })
        .collect()
}

#[test]
#[ignore = "writes the golden file; run only to create a new format version's file"]
fn write_golden_v4() {
    assert_eq!(engine::segment::FORMAT_VERSION, 4);
    write_segment(
        &golden_path_of(4),
        &Tenant::new("golden").unwrap(),
        &golden_records_v4(),
        &SegmentOptions {
            block_rows: 64,
            zstd_level: 3,
            fields_max: usize::MAX,
        },
    )
    .unwrap();
}

#[test]
fn golden_v2_reads_back() {
    reads_back(2);
}

#[test]
fn golden_v4_reads_back() {
    let r = reads_back_records(4, golden_records_v4());
    // A word of a time run, and words found through the templates.
    assert_eq!(
        r.search_words(&["22", "timeout"]).unwrap().len(),
        6,
        "rows with a time run and the word"
    );
    assert_eq!(r.lookup(&msg_term("request")).unwrap().len(), 5);
    assert_eq!(r.lookup(&msg_term("22")).unwrap().len(), 5);
}

#[test]
fn golden_v3_reads_back() {
    let r = reads_back(3);
    assert!(r.column(ColumnKind::Overflow, "_overflow").is_some());
    let field_columns = r
        .footer()
        .columns
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                ColumnKind::Str | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool
            )
        })
        .count();
    assert_eq!(field_columns, V3_FIELDS_MAX);
}

fn reads_back(version: u16) -> SegmentReader {
    reads_back_records(version, golden_records())
}

fn reads_back_records(version: u16, records: Vec<Record>) -> SegmentReader {
    let dir = tempfile::tempdir().unwrap();
    // Read a copy: tests never touch committed files.
    let copy = dir.path().join(format!("segment-v{version}.seg"));
    std::fs::copy(golden_path_of(version), &copy).unwrap();
    let r = SegmentReader::open(&copy).unwrap();
    r.verify().unwrap();
    let f = r.footer();
    assert_eq!(f.tenant, "golden");
    assert_eq!(f.rows, 300);
    assert_eq!(f.blocks.len(), 5);
    let mut got = Vec::new();
    for b in 0..f.blocks.len() {
        got.extend(r.records(b).unwrap());
    }
    let mut want = records;
    for w in &mut want {
        w.fields.sort_by(|a, b| a.0.cmp(&b.0));
    }
    for g in &mut got {
        g.fields.sort_by(|a, b| a.0.cmp(&b.0));
    }
    assert_eq!(got, want);
    assert_eq!(
        r.lookup(&msg_term("timeout"))
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(r.lookup(&field_term("service", "svc1")).unwrap().len(), 5);
    assert_eq!(
        r.lookup(&field_term("user.name", "user6"))
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        r.lookup(&field_term("ratio", "2.5"))
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        vec![0]
    );
    r
}

/// Version 1 (`_msg` as zstd string blocks) was written only before the first release
/// and is not readable: opening it must be a clear typed error, not garbage.
#[test]
fn version_1_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("segment-v1.seg");
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/segment-v1.seg"),
        &copy,
    )
    .unwrap();
    let err = SegmentReader::open(&copy).unwrap_err();
    assert!(
        matches!(&err, engine::segment::SegmentError::Corrupt { offset: 8, what, .. }
            if what.contains("format version 1 not supported")),
        "{err}"
    );
}
