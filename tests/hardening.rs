//! Hardening scenarios against the real binary: inputs that once took a node down
//! or bricked it (see the engine's `tests/hardening.rs` for the engine-level ones).

use std::process::Command;

use heimdall_e2e::{heimdall_bin, query_jsonl};

/// 20,000 JSON lines with 100,000 distinct keys between them once made the segment
/// writer allocate a full column per key (rows x keys: 32 GB here) at the flush.
/// Under a 3 GiB address-space limit the ingest must finish, and every field
/// must still be found by the index and read back through the overflow column.
#[test]
fn many_distinct_field_names_stay_within_memory_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("wide.jsonl");
    let keys = 100_000u64;
    let mut text = String::new();
    for i in 0..20_000u64 {
        text.push_str(&format!("{{\"_msg\":\"wide record {i}\""));
        for j in 0..5 {
            let k = (i * 5 + j) % keys;
            text.push_str(&format!(",\"k{k}\":\"v{i}\""));
        }
        text.push_str("}\n");
    }
    std::fs::write(&input, text).unwrap();
    let data = dir.path().join("data");
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 3145728 && exec \"$0\" ingest --format jsonl --data-dir \"$1\" \"$2\"")
        .arg(heimdall_bin())
        .arg(&data)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ingest under a 3 GiB limit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = data.to_string_lossy().into_owned();
    let target = ["--data-dir", d.as_str()];
    let count = |q: &str| {
        let rows = query_jsonl(&target, &format!("{q} | stats count()"));
        rows[0]["count()"].as_u64().unwrap()
    };
    assert_eq!(count("*"), 20_000);
    // First, middle and last keys: column or overflow, the same answer.
    for (k, i) in [(0u64, 0u64), (50_003, 10_000), (99_999, 19_999)] {
        assert_eq!(count(&format!("k{k}:v{i}")), 1, "k{k}");
        let rec = query_jsonl(&target, &format!("k{k}:v{i} | fields _msg, k{k}"));
        assert_eq!(rec[0][format!("k{k}")], format!("v{i}"), "{rec:?}");
        assert_eq!(rec[0]["_msg"], format!("wide record {i}"));
    }
    assert_eq!(count("k77777:*"), 1);
}

/// A line with more fields than a record may hold is a bad line, named.
#[test]
fn a_record_with_too_many_fields_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one.jsonl");
    let fields: Vec<String> = (0..1001).map(|j| format!("\"f{j}\":{j}")).collect();
    std::fs::write(&input, format!("{{{}}}\n", fields.join(","))).unwrap();
    let data = dir.path().join("data");
    let out = Command::new(heimdall_bin())
        .args(["ingest", "--format", "jsonl", "--data-dir"])
        .arg(&data)
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("1001 fields") && err.contains("1000"), "{err}");
}
