//! End-to-end tests of `heimdall serve`: the real binary on loopback, driven by
//! clients no one here wrote (grpcio with stubs generated from our .proto,
//! pyarrow.flight, prometheus_client's parser; see tests/py/heimdall_client.py).
//! `tests/run.sh` installs them in a venv and sets `HEIMDALL_TEST_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use heimdall_e2e::{heimdall_bin, python, test_seed, Rng};
use serde_json::Value;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/heimdall_client.py")
}

use heimdall_e2e::Served as Server;

/// Runs a client scenario against `s`; its JSON line.
fn client(s: &Server, args: &[&str]) -> Value {
    heimdall_e2e::py_scenario("heimdall_client.py", s, args)
}

fn cli_count(dir: &Path, q: &str) -> u64 {
    let out = Command::new(heimdall_bin())
        .args(["query", "--output", "jsonl", "--data-dir"])
        .arg(dir)
        .arg(format!("{q} | stats count()"))
        .output()
        .expect("heimdall query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    v["count()"].as_u64().expect("count")
}

#[test]
fn ingest_query_put_actions_metrics_and_refusals_over_real_clients() {
    let dir = tempfile::tempdir().unwrap();
    // The flush action's answer is checked: no flush by age before it.
    let s = start_flushing_every(dir.path(), "1h", &[]);
    let v = client(&s, &["api"]);
    let j = |k: &str| v[k].clone();
    // Push: one batch, one LSN.
    assert_eq!(j("push")[2], 100);
    assert_eq!(j("push")[0], j("push")[1]);
    // The retried batch is acknowledged with the first one's LSN, stored once.
    assert_eq!(j("retry"), serde_json::json!([0, 1, true]));
    assert_eq!(j("stream"), serde_json::json!([3, 30]));
    // Refused with a clear status each, and the server kept serving.
    assert_eq!(j("oversized")[0], "OUT_OF_RANGE", "{}", j("oversized"));
    assert!(j("oversized")[1].as_str().unwrap().contains("too large"));
    assert_eq!(j("reserved_field")[0], "INVALID_ARGUMENT");
    assert_eq!(j("bad_tenant")[0], "INVALID_ARGUMENT");
    assert_eq!(j("malformed")[0], "INVALID_ARGUMENT", "{}", j("malformed"));
    // Queries see exactly what was acknowledged: 100 + 50 + 30 records.
    assert_eq!(j("count"), 180);
    assert_eq!(
        j("plain_ticket"),
        serde_json::json!([{"_msg": "event id_42 user login ok"}])
    );
    // Every fifth id is ERROR: 20 of 0..100, 10 of 100..150, 6 of 200..230.
    assert_eq!(
        j("by_level"),
        serde_json::json!([{"level": "ERROR", "count()": 36}, {"level": "INFO", "count()": 144}])
    );
    assert_eq!(j("label"), 100);
    assert_eq!(j("field"), 10);
    assert_eq!(
        j("info"),
        serde_json::json!([["_msg", "n"], -1, [{"_msg": "event id_7 user login ok", "n": 7}]])
    );
    // DoPut: two rows, a label from a column, a null float, explicit times.
    assert_eq!(j("put"), 2);
    assert_eq!(
        j("put_rows"),
        serde_json::json!([
            {"_time": 1_700_000_000_000_000_000u64, "_msg": "put alpha", "level": "WARN", "k": 1.5, "svc": "w"},
            {"_time": 1_700_000_000_000_000_001u64, "_msg": "put beta", "level": null, "k": null, "svc": "w"},
        ])
    );
    assert!(j("put_bad").as_str().unwrap().contains("cannot be stored"));
    assert!(j("bad_query").as_str().unwrap().contains("unknown pipe"));
    assert_eq!(
        j("actions"),
        serde_json::json!([
            "compact",
            "flush",
            "offload",
            "retention",
            "stats",
            "tasks",
            "templates"
        ])
    );
    assert_eq!(j("flush")["rows"], 182);
    // Every stored message was mined; `_template:ID` finds as many records as the
    // listing counts for ID (and the ids folded into it); the field shows only
    // when named.
    let t = j("templates");
    assert_eq!(t["counted"], 182, "{t}");
    assert_eq!(t["total"], t["listed"], "{t}");
    assert!(t["total"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["top_count"], t["top_queried"], "{t}");
    assert!(t["top_text"].as_str().unwrap().contains("<*>"), "{t}");
    assert_eq!(t["hidden"], false, "{t}");
    assert_eq!(t["named"], true, "{t}");
    assert_eq!(j("stats"), 182);
    assert_eq!(j("count_after_flush"), 182);
    assert_eq!(j("readyz"), serde_json::json!([200, true]));
    assert_eq!(j("http_insert"), 2);
    assert_eq!(j("http_bad")[0], 400);
    let m = j("metrics");
    assert_eq!(m["records"], 184.0);
    assert_eq!(m["duplicates"], 1.0);
    for k in ["rejected", "fsyncs", "queries", "segments"] {
        assert_eq!(m[k], true, "{k}: {m}");
    }
    assert_eq!(
        m["types"],
        serde_json::json!(["counter", "gauge", "histogram"])
    );

    // SIGTERM: a clean exit, everything in segments and readable without a server.
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let data = dir.path().join("data");
    assert_eq!(cli_count(&data, "*"), 184);

    // The idempotency key outlives a restart.
    let s = Server::start(&data);
    let r = client(&s, &["retry", "p-1", "7"]);
    assert_eq!(r["duplicates"], 1);
    assert!(s.terminate().success());
    assert_eq!(cli_count(&data, "*"), 184);
}

#[test]
fn kill_9_under_concurrent_grpc_ingest_loses_no_acknowledged_record() {
    let rounds: u64 = std::env::var("HEIMDALL_SERVER_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = test_seed();
    eprintln!("kill -9 test: {rounds} rounds, HEIMDALL_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let acked = dir.path().join("acked.txt");
    let data = dir.path().join("data");
    for round in 0..rounds {
        let s = Server::start(&data);
        let start_id = (round + 1) * 10_000_000;
        let mut load = Command::new(python())
            .arg(script())
            .args(["load", &s.grpc, &s.http])
            .arg(&acked)
            .args([start_id.to_string().as_str(), "4", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the load");
        // Let the load start (the client generates its stubs first), then kill the
        // server at a random moment while batches are in flight.
        std::thread::sleep(Duration::from_millis(1200 + rng.next(1500)));
        s.kill9();
        let status = load.wait().expect("load");
        assert!(status.success(), "round {round}: load client failed");
    }
    // Every acknowledged batch is stored, whole and once; nothing is duplicated.
    let s = Server::start(&data);
    let v = client(&s, &["ids"]);
    assert!(s.terminate().success());
    let stored: std::collections::HashSet<u64> = v["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(v["dupes"], serde_json::json!([]), "records stored twice");
    let text = std::fs::read_to_string(&acked).expect("acked ids");
    let mut promised = 0u64;
    for line in text.lines() {
        let (a, b) = line.split_once(' ').expect("range");
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        for id in a..b {
            assert!(
                stored.contains(&id),
                "acknowledged id {id} lost (seed {seed})"
            );
        }
        promised += b - a;
    }
    assert!(
        promised > 0,
        "no batch was acknowledged: the test proved nothing"
    );
    // Unacknowledged batches may be stored too, but only whole (50 ids each).
    assert_eq!(v["distinct"].as_u64().unwrap() % 50, 0);
    eprintln!(
        "{promised} acknowledged records over {rounds} kill -9 rounds, all stored once ({} stored)",
        v["total"]
    );
}

fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(heimdall_bin())
        .args(args)
        .output()
        .expect("run heimdall");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `heimdall ingest --connect` and `heimdall query --connect` give what the
/// embedded commands give on a data directory holding the same files.
#[test]
fn client_mode_answers_like_the_embedded_commands() {
    let loghub = heimdall_e2e::loghub_dir();
    let files: Vec<String> = [
        "HDFS/HDFS_2k.log",
        "Apache/Apache_2k.log",
        "OpenSSH/OpenSSH_2k.log",
    ]
    .iter()
    .map(|f| loghub.join(f).display().to_string())
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let embedded = dir.path().join("embedded");
    let s = Server::start(&dir.path().join("served"));
    let emb = embedded.display().to_string();
    let mut args = vec!["ingest", "--data-dir", &emb];
    args.extend(files.iter().map(String::as_str));
    let (ok, _, err) = run_cli(&args);
    assert!(ok, "{err}");
    let mut args = vec!["ingest", "--connect", &s.grpc];
    args.extend(files.iter().map(String::as_str));
    let (ok, out, err) = run_cli(&args);
    assert!(ok, "{err}");
    assert!(out.starts_with("ingested 6000 records"), "{out}");
    for q in [
        "* | stats count() by (level)",
        "PacketResponder | stats count()",
        "\"Failed password\" | top 5 by (_msg)",
        "error | sort by (_time) | limit 3",
        "~\"Dec\\W+04\" | stats count()",
    ] {
        for output in ["jsonl", "csv", "table"] {
            let a = run_cli(&["query", "--data-dir", &emb, "--output", output, q]);
            let b = run_cli(&["query", "--connect", &s.grpc, "--output", output, q]);
            assert!(a.0 && b.0, "{q}: {} / {}", a.2, b.2);
            assert!(!a.1.is_empty());
            assert_eq!(a.1, b.1, "{q} --output {output}");
        }
    }
    // The same refusal for a bad query, with the caret under the error.
    let a = run_cli(&["query", "--data-dir", &emb, "error | bogus"]);
    let b = run_cli(&["query", "--connect", &s.grpc, "error | bogus"]);
    assert!(!a.0 && !b.0);
    assert_eq!(a.2, b.2);
    assert!(b.2.contains('^'), "{}", b.2);
    // A server that is not there is a clear error, not a hang.
    let c = run_cli(&["query", "--connect", "127.0.0.1:1", "*"]);
    assert!(!c.0 && c.2.contains("cannot connect"), "{}", c.2);
    assert!(s.terminate().success());
}

/// The value of an unlabelled metric.
fn metric(s: &Server, name: &str) -> f64 {
    heimdall_e2e::http_get(&s.http, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(-1.0)
}

/// A server on `dir/data` whose `[limits] flush_interval` is `every`, with extra
/// environment variables.
fn start_flushing_every(dir: &Path, every: &str, envs: &[(&str, &str)]) -> Server {
    start_configured(
        dir,
        &format!("[limits]\nflush_interval = \"{every}\"\n"),
        envs,
    )
}

/// A server on `dir/data` (loopback, free ports) with the config sections `toml`.
fn start_configured(dir: &Path, toml: &str, envs: &[(&str, &str)]) -> Server {
    let cfg = dir.join("heimdall.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\n{toml}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    Server::start_with(&["--config", cfg.to_str().unwrap()], envs)
}

/// Task `name` as `heimdall tasks --connect --json` lists it.
fn task(s: &Server, name: &str) -> Value {
    let out = run_cli(&["tasks", "--connect", &s.grpc, "--json"]);
    assert!(out.0, "{}", out.2);
    let v: Value = serde_json::from_str(&out.1).unwrap();
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no task {name}: {v}"))
}

/// POSTs JSON lines to `/insert/jsonl`; the answer's JSON.
fn post_jsonl(s: &Server, body: &str) -> Value {
    let (_, answer) = heimdall_e2e::http_post(&s.http, "/insert/jsonl", body);
    serde_json::from_str(&answer).unwrap()
}

/// A node with default settings that receives 20 records and nothing else has
/// them in a segment, its WAL checkpointed past them, within `flush_interval`
/// (10 s) plus a few seconds, without any flush action (it once kept them in the
/// WAL and memtable until the memtable filled: a quiet stream was never
/// offloaded or expired).
#[test]
fn a_quiet_node_flushes_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let body: String = (0..20)
        .map(|i| format!("{{\"_msg\":\"quiet record {i}\"}}\n"))
        .collect();
    let reply = post_jsonl(&s, &body);
    assert_eq!(reply["records"], 20, "{reply}");
    let last = reply["last_lsn"].as_f64().unwrap();
    let started = std::time::Instant::now();
    assert_eq!(metric(&s, "heimdall_segments"), 0.0);
    loop {
        if metric(&s, "heimdall_memtable_records") == 0.0
            && metric(&s, "heimdall_segments") >= 1.0
            && metric(&s, "heimdall_wal_checkpoint_lsn") >= last
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(16),
            "not flushed within 16 s: {}",
            heimdall_e2e::http_get(&s.http, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "flushed after {waited:?}, before its age"
    );
    // The flush task's runs are listed.
    let flush = task(&s, "flush");
    assert!(flush["runs"].as_u64().unwrap() >= 8, "{flush}");
    assert!(s.terminate().success());
    eprintln!("20 records flushed by age after {waited:?}; {flush}");
}

/// The supervisor: a task whose runs fail (injected: the first 3 runs of
/// `flush`) is listed backing off with its error, then recovers by itself and
/// does its work; `heimdall tasks` and `/metrics` show it.
#[test]
fn a_failing_task_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_flushing_every(
        dir.path(),
        "1s",
        &[("HEIMDALL_TEST_TASK_FAULTS", "flush:3")],
    );
    let reply = post_jsonl(&s, "{\"_msg\":\"one\"}\n{\"_msg\":\"two\"}\n");
    assert_eq!(reply["records"], 2, "{reply}");
    let started = std::time::Instant::now();
    let mut seen_backing_off = None;
    let flush = loop {
        let flush = task(&s, "flush");
        if flush["state"] == "backing_off" {
            seen_backing_off = Some(flush.clone());
        }
        if flush["failures"] == 3
            && flush["state"] == "idle"
            && metric(&s, "heimdall_segments") >= 1.0
        {
            break flush;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{flush}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let b = seen_backing_off.expect("never seen backing off");
    assert!(
        b["last_error"].as_str().unwrap().contains("injected fault"),
        "{b}"
    );
    assert!(b["retry_in_seconds"].as_f64().unwrap() >= 1.0, "{b}");
    assert_eq!(flush["failures_in_a_row"], 0, "{flush}");
    // Backing off 1 + 2 + 4 s before the fourth run.
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let m = heimdall_e2e::http_get(&s.http, "/metrics");
    assert!(
        m.contains("heimdall_task_failures_total{task=\"flush\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("heimdall_task_state{task=\"flush\",state=\"idle\"} 1"),
        "{m}"
    );
    let table = run_cli(&["tasks", "--connect", &s.grpc]);
    assert!(
        table.1.lines().any(|l| l.starts_with("flush ")),
        "{}",
        table.1
    );
    assert!(s.terminate().success());
}

/// 300 small ingests of one day, each flushed into a segment of its own: once
/// the background compaction has had its turn, a handful of segments is left,
/// and every query answers exactly as before (and as the input says).
#[test]
fn background_compaction_merges_300_small_ingests_and_answers_stay() {
    let dir = tempfile::tempdir().unwrap();
    let lines = heimdall_e2e::loghub_dir().join("OpenSSH/OpenSSH_2k.log");
    let s = start_configured(dir.path(), "[compaction]\nenabled = false\n", &[]);
    let pushed = client(&s, &["small_ingests", "300", lines.to_str().unwrap()]);
    let records = pushed["records"].as_u64().unwrap();
    assert_eq!(metric(&s, "heimdall_segments"), 300.0);
    let queries = serde_json::json!([
        "* | stats count()",
        "* | stats count() by (host) | sort by (host)",
        "n:[100, 400) | sort by (n)",
        "~\"(?i)fail\\w* password\" | stats count()",
        "Accepted | stats count() by (host)",
        "* | top 5 by (_template)",
        "* | sort by (_time desc) | limit 20",
        "_time:[2023-11-14T22:13:20Z, 2023-11-14T22:13:20.5Z) | stats count()"
    ])
    .to_string();
    let before = client(&s, &["answers", &queries]);
    assert_eq!(
        before["* | stats count()"][0]["count()"], records,
        "{before}"
    );
    let by_host: Vec<u64> = (0..3)
        .map(|h| (0..records).filter(|n| n % 3 == h).count() as u64)
        .collect();
    let got: Vec<u64> = before["* | stats count() by (host) | sort by (host)"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count()"].as_u64().unwrap())
        .collect();
    assert_eq!(got, by_host);
    assert_eq!(
        before["n:[100, 400) | sort by (n)"]
            .as_array()
            .unwrap()
            .len(),
        300
    );
    assert!(s.terminate().success());

    // The same data, compaction on.
    let s = start_configured(dir.path(), "[compaction]\ninterval = \"1s\"\n", &[]);
    let started = std::time::Instant::now();
    loop {
        let segments = metric(&s, "heimdall_segments");
        if (1.0..=5.0).contains(&segments) && task(&s, "compaction")["runs"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{segments} segments after 60 s: {}",
            task(&s, "compaction")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = client(&s, &["answers", &queries]);
    assert_eq!(before, after);
    let m = heimdall_e2e::http_get(&s.http, "/metrics");
    assert!(
        m.lines()
            .any(|l| l.starts_with("heimdall_compactions_total ") && !l.ends_with(" 0")),
        "{m}"
    );
    eprintln!(
        "300 segments compacted to {} in {:?}",
        metric(&s, "heimdall_segments"),
        started.elapsed()
    );
    assert!(s.terminate().success());
}
