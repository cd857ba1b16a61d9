//! End-to-end tests of the object-store tier: a real S3 API server (moto, installed
//! into the test venv by `tests/run.sh`), boto3 to create and list the bucket,
//! pyarrow.flight for the actions, and the real heimdall binary. Offloaded data
//! answers exactly as local data did, from the same node after its cache is gone,
//! and from a fresh read-only node with an empty disk; kill -9 during uploads
//! loses nothing and leaves no unlisted object behind; retention deletes exactly
//! the old segments, from both tiers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use heimdall_e2e::{
    heimdall_bin, http_get, loghub_dir, python, query_jsonl, s3_tool as tool, test_seed, Moto, Rng,
    Served, BUCKET,
};
use serde_json::Value;

/// The tests share the two cores; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A config with the object store (prefix `node`); `extra` is appended to the
/// `[object_store]` table (default: the task every second, 5 s per request),
/// `tail` after it.
fn config(dir: &Path, moto: &Moto, extra: &str, tail: &str) -> PathBuf {
    let cfg = dir.join("heimdall.toml");
    let mut extra = extra.to_string();
    for (k, v) in [
        ("offload_interval", "\"1s\""),
        ("request_timeout", "\"5s\""),
    ] {
        if !extra.contains(k) {
            extra.push_str(&format!("\n{k} = {v}"));
        }
    }
    let text = format!(
        r#"data_dir = "{data}"
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"

[object_store]
url = "s3://{BUCKET}/node"
endpoint = "{endpoint}"
region = "us-east-1"
allow_http = true
offload_after = "100000d"
{extra}

[object_store.options]
access_key_id = "test"
secret_access_key = "test"

{tail}
"#,
        data = dir.join("data").display(),
        endpoint = moto.endpoint,
    );
    std::fs::write(&cfg, text).expect("write the config");
    cfg
}

fn start(cfg: &Path, extra: &[&str]) -> Served {
    let mut args = vec!["--config".to_string(), cfg.to_string_lossy().into_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Served::start_with(&args, &[("HEIMDALL_LOG", "warn")])
}

fn query(s: &Served, q: &str) -> Vec<Value> {
    query_jsonl(&["--connect", &s.grpc], q)
}

fn ingest(s: &Served, args: &[&str]) -> std::process::Output {
    Command::new(heimdall_bin())
        .args(["ingest", "--connect", &s.grpc])
        .args(args)
        .output()
        .expect("heimdall ingest")
}

fn action(s: &Served, name: &str) -> Value {
    tool(&["action", &s.grpc, name])
}

/// The query set whose answers must not change when data moves between tiers.
const QUERIES: &[&str] = &[
    "* | stats count()",
    "* | stats count() by (system)",
    "error | stats count() by (system)",
    "blk_ | stats count_uniq(_msg)",
    "\"session opened\" | stats count()",
    "* | top 5 by (level)",
    "Failed password | sort by (_time, _msg) | limit 20",
    "* | stats count() by (_time:1d) | sort by (count()) desc | limit 5",
];

fn answers(s: &Served) -> Vec<Vec<Value>> {
    QUERIES.iter().map(|q| query(s, q)).collect()
}

const SYSTEMS: &[&str] = &["HDFS", "OpenSSH", "Linux", "Apache"];

fn log_file(system: &str) -> PathBuf {
    loghub_dir().join(system).join(format!("{system}_2k.log"))
}

fn segment_files(data: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![data.join("segments")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// The offloaded segments the data directory's manifest lists.
fn listed_offloaded(data: &Path) -> Vec<String> {
    let m: Value = serde_json::from_slice(&std::fs::read(data.join("MANIFEST")).unwrap()).unwrap();
    let mut v: Vec<String> = m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["offloaded"].is_null())
        .map(|s| format!("node/{}", s["file"].as_str().unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn offloaded_data_answers_identically_from_the_same_and_a_fresh_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, "", "");
    let data = dir.path().join("data");
    let s = start(&cfg, &[]);
    for sys in SYSTEMS {
        let file = log_file(sys);
        let out = ingest(
            &s,
            &[
                "--stream",
                &format!("system={sys}"),
                &file.to_string_lossy(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        action(&s, "flush");
    }
    let local = answers(&s);
    assert_eq!(local[0][0]["count()"], 8000, "{:?}", local[0]);
    assert!(segment_files(&data) > 1);
    let templates = action(&s, "templates");
    let top = templates["templates"][0]["id"].clone();
    let top_query = format!("_template:{top} | stats count()");
    let top_count = query(&s, &top_query);
    assert!(
        top_count[0]["count()"].as_u64().unwrap() > 0,
        "{top_count:?}"
    );

    let r = action(&s, "offload");
    assert_eq!(r["failed"], 0, "{r}");
    assert!(r["segments"].as_u64().unwrap() > 1, "{r}");
    assert_eq!(r["local_bytes"], 0, "{r}");
    assert_eq!(segment_files(&data), 0, "local segment files remain");
    let keys = moto.keys("node/");
    assert!(keys.contains_key("node/MANIFEST"), "{keys:?}");
    let objects: Vec<String> = keys
        .keys()
        .filter(|k| k.ends_with(".seg"))
        .cloned()
        .collect();
    assert_eq!(objects, listed_offloaded(&data));
    assert_eq!(
        answers(&s),
        local,
        "offloaded answers differ from local ones"
    );
    assert!(s.terminate().success());

    // Same node, disk cache gone: every byte comes from S3 again.
    std::fs::remove_dir_all(data.join("cache")).unwrap();
    let s = start(&cfg, &[]);
    assert_eq!(answers(&s), local, "answers after a cold restart differ");
    let metrics = http_get(&s.http, "/metrics");
    let gets = metric(&metrics, "heimdall_object_store_gets_total");
    assert!(gets > 0.0, "no GET after a cold restart:\n{metrics}");
    // Warm: the same queries again fetch nothing.
    assert_eq!(answers(&s), local);
    let again = metric(
        &http_get(&s.http, "/metrics"),
        "heimdall_object_store_gets_total",
    );
    assert_eq!(again, gets, "warm queries went to S3");

    // A fresh node with an empty data directory, read-only from the bucket.
    let fresh = tempfile::tempdir().unwrap();
    let ro = start(
        &cfg,
        &["--read-only", "--data-dir", &fresh.path().to_string_lossy()],
    );
    assert_eq!(
        answers(&ro),
        local,
        "the read-only node answers differently"
    );
    // The templates came along: the same listing, the same `_template` answers.
    assert_eq!(action(&ro, "templates"), templates);
    assert_eq!(query(&ro, &top_query), top_count);
    let out = ingest(&ro, &[&log_file("HDFS").to_string_lossy()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read-only"), "{err}");
    // Over HTTP too: refused as the node's state (409), not as a server fault.
    let (code, body) = heimdall_e2e::http_post(&ro.http, "/insert/jsonl", "{\"_msg\":\"x\"}\n");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("read-only"), "{body}");
    assert!(ro.terminate().success());
    assert!(s.terminate().success());
    // A lost disk: a writable node with an empty data directory adopts the
    // bucket's manifest and templates.
    let lost = tempfile::tempdir().unwrap();
    let w = start(&cfg, &["--data-dir", &lost.path().to_string_lossy()]);
    assert_eq!(action(&w, "templates"), templates);
    assert_eq!(query(&w, &top_query), top_count);
    assert!(w.terminate().success());
}

#[test]
fn kill_9_during_uploads_loses_nothing_and_leaves_no_stray_object() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = test_seed();
    let mut rng = Rng(seed);
    let rounds: usize = std::env::var("HEIMDALL_OBJSTORE_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, "", "");
    let data = dir.path().join("data");
    let mut s = start(&cfg, &[]);
    let mut total = 0u64;
    for round in 0..rounds {
        let sys = SYSTEMS[round % SYSTEMS.len()];
        let out = ingest(
            &s,
            &[
                "--stream",
                &format!("system={sys},round=r{round}"),
                &log_file(sys).to_string_lossy(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        total += 2000;
        action(&s, "flush");
        // An offload in the background, and kill -9 at a random moment of it.
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/s3_tool.py");
        let mut offload = Command::new(python())
            .arg(script)
            .args(["action", &s.grpc, "offload"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the offload");
        std::thread::sleep(Duration::from_millis(rng.next(400)));
        s.kill9();
        let _ = offload.wait();
        s = start(&cfg, &[]);
        let n = query(&s, "* | stats count()")[0]["count()"].as_u64();
        assert_eq!(
            n,
            Some(total),
            "round {round} (seed {seed}): records lost or doubled"
        );
    }
    // Everything offloaded in the end, nothing lost; the store holds exactly what
    // the manifest lists once the sweep has run (a second after start).
    let r = action(&s, "offload");
    assert_eq!(
        (r["failed"].as_u64(), r["local_bytes"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    let per_round = query(&s, "* | stats count() by (round)");
    assert_eq!(per_round.len(), rounds, "{per_round:?}");
    assert!(
        per_round.iter().all(|r| r["count()"] == 2000),
        "{per_round:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(s.terminate().success());
    let objects: Vec<String> = moto.keys("node/segments/").into_keys().collect();
    assert_eq!(objects, listed_offloaded(&data), "seed {seed}");
}

#[test]
fn retention_deletes_exactly_the_old_segments_from_both_tiers() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    // The task would apply retention by itself; here the action does, once.
    let cfg = config(
        dir.path(),
        &moto,
        "offload_interval = \"1h\"",
        "[[retention]]\ntenant = \"*\"\nmax_age = \"30d\"\n",
    );
    let data = dir.path().join("data");
    let s = start(&cfg, &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86_400i64;
    // Four batches, each its own segment: old and recent offloaded (the action
    // offloads every local segment), then old and recent local.
    let batches = [
        (0, now - 400 * day, true),
        (2, now - day, true),
        (1, now - 399 * day, false),
        (3, now - 60, false),
    ];
    for (i, t, offload) in batches.iter() {
        let file = dir.path().join(format!("b{i}.jsonl"));
        let lines: Vec<String> = (0..500)
            .map(|k| {
                format!(
                    r#"{{"_time":{},"_msg":"batch b{i} line {k}","batch":"b{i}"}}"#,
                    t + k
                )
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let out = ingest(&s, &["--format", "jsonl", &file.to_string_lossy()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if *offload {
            let r = action(&s, "offload");
            assert_eq!(r["failed"], 0, "{r}");
        } else {
            action(&s, "flush");
        }
    }
    let before: Vec<String> = moto.keys("node/segments/").into_keys().collect();
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(segment_files(&data), 2);

    let r = action(&s, "retention");
    assert_eq!(
        (
            r["local_segments"].as_u64(),
            r["remote_segments"].as_u64(),
            r["rows"].as_u64()
        ),
        (Some(1), Some(1), Some(1000)),
        "{r}"
    );
    let left = query(&s, "* | stats count() by (batch)");
    let got: Vec<(String, u64)> = left
        .iter()
        .map(|r| {
            (
                r["batch"].as_str().unwrap_or("").to_string(),
                r["count()"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, vec![("b2".to_string(), 500), ("b3".to_string(), 500)]);
    assert_eq!(segment_files(&data), 1);
    let after: Vec<String> = moto.keys("node/segments/").into_keys().collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(before.contains(&after[0]));
    assert!(s.terminate().success());
    assert_eq!(after, listed_offloaded(&data));
    // The bucket's manifest agrees: a read-only node sees the offloaded recent batch.
    let fresh = tempfile::tempdir().unwrap();
    let ro = start(
        &cfg,
        &["--read-only", "--data-dir", &fresh.path().to_string_lossy()],
    );
    let seen = query(&ro, "* | stats count() by (batch)");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["batch"], "b2");
    assert!(ro.terminate().success());
}

#[test]
fn an_unreachable_store_fails_queries_clearly_and_ingest_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &moto,
        "read_deadline = \"3s\"\nrequest_timeout = \"1s\"\nwrite_deadline = \"4s\"",
        "",
    );
    let data = dir.path().join("data");
    let s = start(&cfg, &[]);
    // A month-old day, offloaded.
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 30 * 86_400;
    let file = dir.path().join("old.jsonl");
    let lines: Vec<String> = (0..1000)
        .map(|k| format!(r#"{{"_time":{},"_msg":"old line {k}"}}"#, old + k))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = ingest(&s, &["--format", "jsonl", &file.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = action(&s, "offload");
    assert_eq!(r["failed"], 0, "{r}");
    assert!(s.terminate().success());
    std::fs::remove_dir_all(data.join("cache")).unwrap();
    // S3 goes away.
    let _ = moto.child.kill();
    let _ = moto.child.wait();
    let s = start(&cfg, &[]);
    let started = Instant::now();
    let out = Command::new(heimdall_bin())
        .args(["query", "--connect", &s.grpc, "* | stats count()"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "a query over an unreachable store succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("object store unavailable"), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // Ingest goes on (the disk budget is not set here), and its data is queryable
    // from the memtable by a query whose time range prunes the offloaded day
    // without touching it.
    let file = dir.path().join("new.jsonl");
    std::fs::write(&file, "{\"_msg\":\"while s3 is down\",\"k\":1}\n").unwrap();
    let out = ingest(&s, &["--format", "jsonl", &file.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = query(&s, "_time:1h k:1 | stats count()");
    assert_eq!(n[0]["count()"], 1);
    // The offload of the new segment fails and keeps it local.
    let r = action(&s, "offload");
    assert_eq!(r["failed"], 1, "{r}");
    assert!(
        r["error"].as_str().unwrap_or("").contains("unavailable"),
        "{r}"
    );
    let ready = http_get(&s.http, "/readyz");
    assert!(ready.contains("\"last_error\":\""), "{ready}");
    assert!(s.terminate().success());
    drop(moto);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
