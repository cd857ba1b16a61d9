//! Fuzz the segment reader: any bytes as a segment file, and a valid small segment
//! damaged as the input says, must open, verify and read, or fail with a typed error;
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use engine::model::{Record, Tenant, Value};
use engine::segment::{msg_term, write_segment, SegmentOptions, SegmentReader};

fn exercise(path: &std::path::Path) {
    let Ok(r) = SegmentReader::open(path) else {
        return;
    };
    let _ = r.verify();
    for b in 0..r.footer().blocks.len() {
        let _ = r.records(b);
    }
    let _ = r.lookup(&msg_term("error"));
    let _ = r.lookup_prefix(&msg_term("re"));
    let _ = r.search_words(&["request"]);
}

/// A valid small segment's bytes, written once per process (writing one per
/// execution fsyncs and held the target to under 1,000 executions a second).
fn valid_segment() -> &'static [u8] {
    static VALID: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    VALID.get_or_init(|| {
        let records: Vec<Record> = (0..20i64)
            .map(|i| Record {
                time_ns: i,
                msg: format!("request {i} error"),
                stream: Default::default(),
                level: (i % 2 == 0).then(|| "INFO".to_string()),
                fields: vec![
                    ("n".into(), Value::I64(i)),
                    ("host".into(), Value::Str(format!("h{}", i % 3))),
                ],
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("valid.seg");
        write_segment(
            &path,
            &Tenant::default(),
            &records,
            &SegmentOptions {
                block_rows: 8,
                zstd_level: 1,
                // A small cap, so the overflow column is decoded too.
                fields_max: 1,
            },
        )
        .expect("write segment");
        std::fs::read(&path).expect("read")
    })
}

/// One file per process, rewritten by every execution (no fsync), in memory
/// (`/dev/shm`) where there is one: on disk the writes held the target to about
/// 1,100 executions a second, on tmpfs 6,500.
fn scratch() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("segment-fuzz")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("tempdir")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let path = scratch().join("f.seg");
    std::fs::write(&path, data).expect("write");
    exercise(&path);

    // A valid segment with the input's bytes XOR-ed over it at the positions the
    // input picks.
    let mut bytes = valid_segment().to_vec();
    for pair in data.chunks(3) {
        if let [a, b, x] = pair {
            let at = (usize::from(*a) << 8 | usize::from(*b)) % bytes.len();
            bytes[at] ^= *x;
        }
    }
    std::fs::write(&path, &bytes).expect("write");
    exercise(&path);
});
