//! End-to-end tests of Kafka sources: a real Kafka-protocol broker (tansu, built and
//! installed by `tests/run.sh`, which sets `HEIMDALL_TANSU`), kafka-python as the
//! producer (in the test venv), and the real heimdall binary consuming. Every id
//! produced must be stored exactly once, across kill -9 of Heimdall at random
//! moments and at the one moment chance rarely hits (a batch durable, its offsets
//! not committed), and across a node of a two-node group dying mid-way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use heimdall_e2e::{
    http_get, kafka_producer_script, python, query_jsonl, test_seed, Broker, Moto, Rng, Served,
};
use serde_json::Value;

/// The tests share the two cores; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A node's config: topic `logs`, group `heimdall`, JSON lines, small batches (many
/// commits, so kills land between them), quick session expiry (a killed node's
/// partitions move on after 3 s).
fn node_config(dir: &Path, broker: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("heimdall.toml");
    let text = format!(
        r#"data_dir = "{data}"
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"

[[sources.kafka]]
brokers = "{broker}"
topics = ["logs"]
group = "heimdall"
format = "jsonl"
tenant = "default"
batch_records_max = 200
linger = "5ms"
message_bytes_max = 4096
{extra}
[sources.kafka.options]
"session.timeout.ms" = "3000"
"heartbeat.interval.ms" = "500"
"max.poll.interval.ms" = "30000"
"#,
        data = dir.join("data").display(),
    );
    std::fs::write(&cfg, text).expect("write the config");
    cfg
}

/// A broker with topic `logs` of `partitions` partitions, and a node's config in a
/// temporary directory of its own.
fn broker_and_node(partitions: u32) -> (Broker, tempfile::TempDir, PathBuf) {
    let broker = Broker::start();
    broker.create_topic("logs", partitions);
    let dir = tempfile::tempdir().unwrap();
    let cfg = node_config(dir.path(), &broker.addr, "");
    (broker, dir, cfg)
}

fn start_node(cfg: &Path, envs: &[(&str, &str)]) -> Served {
    Served::start_with(&["--config", &cfg.to_string_lossy()], envs)
}

fn count(s: &Served, q: &str) -> u64 {
    query_jsonl(&["--connect", &s.grpc], &format!("{q} | stats count()"))
        .first()
        .and_then(|v| v["count()"].as_u64())
        .unwrap_or(0)
}

/// Waits until `nodes` together hold `want` records with an id.
fn wait_for(nodes: &[&Served], want: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got: u64 = nodes.iter().map(|s| count(s, "id:*")).sum();
        if got >= want {
            return;
        }
        if Instant::now() >= deadline {
            let sources: Vec<String> = nodes.iter().map(|s| http_get(&s.http, "/readyz")).collect();
            panic!(
                "stored {got} of {want} ids within {timeout:?}; the nodes' sources: {sources:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The ids stored in a (stopped) node's data directory, with repeats.
fn stored_ids(data: &Path) -> Vec<u64> {
    let dir = data.to_string_lossy();
    query_jsonl(&["--data-dir", &dir], "id:* | fields id | limit 10000000")
        .iter()
        .filter_map(|v| v["id"].as_u64())
        .collect()
}

/// Every id of `0..n` exactly once among `ids`.
fn assert_exactly_once(ids: &[u64], n: u64, seed: u64) {
    let mut seen = vec![0u32; n as usize];
    for id in ids {
        assert!(*id < n, "id {id} was never produced");
        seen[*id as usize] += 1;
    }
    let lost: Vec<usize> = (0..seen.len()).filter(|i| seen[*i] == 0).collect();
    let twice: Vec<usize> = (0..seen.len()).filter(|i| seen[*i] > 1).collect();
    assert!(
        lost.is_empty() && twice.is_empty(),
        "{} ids lost (first {:?}), {} stored more than once (first {:?}); HEIMDALL_SEED={seed}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>(),
    );
}

/// A session has to expire before a killed node's partitions move on.
const SESSION_EXPIRY: Duration = Duration::from_millis(3500);

/// The source's task as `heimdall tasks --json` lists it.
fn source_task(s: &Served) -> Value {
    let tasks: Value = serde_json::from_str(&heimdall_e2e::heimdall_ok(&[
        "tasks",
        "--connect",
        &s.grpc,
        "--json",
    ]))
    .expect("tasks JSON");
    tasks["tasks"]
        .as_array()
        .and_then(|v| v.iter().find(|t| t["name"] == "kafka:heimdall/logs"))
        .cloned()
        .unwrap_or_else(|| panic!("no Kafka source task: {tasks}"))
}

#[test]
fn kill_9_while_consuming_stores_every_message_exactly_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rounds: u64 = std::env::var("HEIMDALL_KAFKA_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = test_seed();
    eprintln!("Kafka kill -9 test: {rounds} rounds, HEIMDALL_SEED={seed}");
    let mut rng = Rng(seed);
    let (broker, dir, cfg) = broker_and_node(3);
    let n = rounds * 1500;
    // The producer keeps going through the rounds, so each life of the node
    // consumes while it is killed.
    let mut producer = broker.produce(0, n, 3, rounds as f64 * 4.0);
    let mut aborted = 0;
    for round in 0..rounds {
        if round % 4 == 3 {
            // Abort with a batch durable in the WAL and its offsets not committed.
            let after = (1 + rng.next(6)).to_string();
            let mut s = start_node(&cfg, &[("HEIMDALL_TEST_KAFKA_ABORT_BEFORE_COMMIT", &after)]);
            if s.wait_exit(Duration::from_secs(20)) {
                aborted += 1;
            } else {
                s.kill9();
            }
        } else {
            let s = start_node(&cfg, &[]);
            std::thread::sleep(Duration::from_millis(800 + rng.next(1500)));
            s.kill9();
        }
        std::thread::sleep(SESSION_EXPIRY);
    }
    assert!(
        producer.wait().expect("producer").success(),
        "producer failed"
    );
    // The source is a task of the supervisor: an injected failure of its first
    // run shows it backing off, then consuming.
    let s = start_node(
        &cfg,
        &[("HEIMDALL_TEST_TASK_FAULTS", "kafka:heimdall/logs:1")],
    );
    wait_for(&[&s], n, Duration::from_secs(120));
    // Every message may be in already (stored by an earlier life): the source
    // may still be in its back-off.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut source = source_task(&s);
    while source["state"] != "running" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        source = source_task(&s);
    }
    assert_eq!(source["state"], "running", "{source}");
    assert_eq!(source["failures"], 1, "{source}");
    assert!(
        source["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("injected")),
        "{source}"
    );
    assert!(s.terminate().success());
    assert!(
        aborted > 0 || rounds < 4,
        "no round aborted between storing and committing: the test proved less than it says"
    );
    assert_exactly_once(&stored_ids(&dir.path().join("data")), n, seed);
    eprintln!("{n} messages, {rounds} kill -9 rounds ({aborted} between store and commit): each stored once");
}

#[test]
fn two_nodes_in_one_group_store_every_message_exactly_once_when_one_dies() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = test_seed();
    let broker = Broker::start();
    broker.create_topic("logs", 4);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ca, cb) = (
        node_config(da.path(), &broker.addr, ""),
        node_config(db.path(), &broker.addr, ""),
    );
    let n = 12_000;
    let mut producer = broker.produce(0, n, 4, 12.0);
    // A dies mid-way with a batch stored and not committed; B takes its
    // partitions over (and reads that batch again from the broker).
    let mut a = start_node(&ca, &[("HEIMDALL_TEST_KAFKA_ABORT_BEFORE_COMMIT", "12")]);
    let b = start_node(&cb, &[]);
    assert!(
        a.wait_exit(Duration::from_secs(60)),
        "node A did not reach its abort point"
    );
    drop(a);
    assert!(
        producer.wait().expect("producer").success(),
        "producer failed"
    );
    // A comes back: it takes back its uncommitted batch before anything else, and
    // rejoins the group.
    std::thread::sleep(SESSION_EXPIRY);
    let a = start_node(&ca, &[]);
    wait_for(&[&a, &b], n, Duration::from_secs(120));
    // Let both settle (a rebalance may be moving partitions), then stop them.
    std::thread::sleep(Duration::from_secs(2));
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let mut ids = stored_ids(&da.path().join("data"));
    let from_a = ids.len();
    ids.extend(stored_ids(&db.path().join("data")));
    assert!(
        from_a > 0 && ids.len() > from_a,
        "both nodes stored a share ({from_a} / {})",
        ids.len()
    );
    assert_exactly_once(&ids, n, seed);
}

#[test]
fn poison_messages_go_to_the_dead_letter_stream_and_the_partition_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (broker, _dir, cfg) = broker_and_node(2);
    let s = start_node(&cfg, &[]);
    let out = Command::new(python())
        .arg(kafka_producer_script())
        .args(["poison", &broker.addr, "logs", "1", "4096"])
        .output()
        .expect("poison producer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("offsets");
    let offsets: Vec<i64> = v["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(offsets.len(), 4);
    // The good messages after each poison one are stored: the partition went on.
    wait_for(&[&s], 4, Duration::from_secs(60));
    let dead = query_jsonl(
        &["--connect", &s.grpc],
        "source:kafka-dead-letter | fields kafka.partition, kafka.offset, error, kafka.value_bytes",
    );
    assert_eq!(dead.len(), 4, "{dead:?}");
    let mut got: Vec<i64> = dead
        .iter()
        .filter_map(|d| d["kafka.offset"].as_i64())
        .collect();
    got.sort_unstable();
    assert_eq!(got, offsets);
    let errors: Vec<String> = dead
        .iter()
        .map(|d| d["error"].as_str().unwrap_or("").to_string())
        .collect();
    for want in [
        "malformed JSON",
        "not valid UTF-8",
        "no value",
        "exceeds the limit",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "no {want:?} in {errors:?}"
        );
    }
    assert!(dead
        .iter()
        .all(|d| d["kafka.partition"].as_i64() == Some(1)));
    // Visible as a source state and in the metrics.
    let stats = query_jsonl(
        &["--connect", &s.grpc],
        "source:kafka-dead-letter | stats count()",
    );
    assert_eq!(stats[0]["count()"].as_u64(), Some(4));
    let metrics = http_get(&s.http, "/metrics");
    assert!(
        metrics.contains("heimdall_kafka_dead_lettered_total{source=\"heimdall/logs\",topic=\"logs\",partition=\"1\"} 4"),
        "{metrics}"
    );
    let ready = http_get(&s.http, "/readyz");
    assert!(ready.contains("\"state\":\"running\""), "{ready}");
    assert!(s.terminate().success());
}

#[test]
fn a_full_write_backlog_pauses_the_partitions_and_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = test_seed();
    // Backlog limit = one 1 MiB memtable: every batch (about 2 MB) goes over it.
    let (broker, dir, cfg) = broker_and_node(2);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[[sources.kafka]]",
        "[limits]\nmemtable_bytes_max = 1048576\nbacklog_bytes_max = 1048576\n\n[[sources.kafka]]",
        1,
    );
    let text = text.replace("batch_records_max = 200", "batch_records_max = 10000");
    std::fs::write(&cfg, text).unwrap();
    let n = 30_000;
    let mut producer = broker.produce(0, n, 2, 0.0);
    assert!(
        producer.wait().expect("producer").success(),
        "producer failed"
    );
    let s = start_node(&cfg, &[]);
    wait_for(&[&s], n, Duration::from_secs(120));
    let ready: Value = serde_json::from_str(&http_get(&s.http, "/readyz")).expect("readyz JSON");
    let pauses = ready["sources"][0]["backpressure_pauses"]
        .as_u64()
        .unwrap_or(0);
    assert!(pauses > 0, "the source never paused: {ready}");
    assert!(s.terminate().success());
    assert_exactly_once(&stored_ids(&dir.path().join("data")), n, seed);
}

#[test]
fn a_partition_whose_fetch_jumps_ahead_is_sought_back_and_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = test_seed();
    let (broker, dir, cfg) = broker_and_node(2);
    // Every message is on the broker before the node starts: once the fetch
    // positions jump to the end, no later message shows the gap; only the stall
    // check can bring the partitions back.
    let n = 6_000;
    let mut producer = broker.produce(0, n, 2, 0.0);
    assert!(
        producer.wait().expect("producer").success(),
        "producer failed"
    );
    let s = start_node(&cfg, &[("HEIMDALL_TEST_KAFKA_SKIP_AHEAD", "2")]);
    wait_for(&[&s], n, Duration::from_secs(90));
    let ready: Value = serde_json::from_str(&http_get(&s.http, "/readyz")).expect("readyz JSON");
    let stalls: u64 = ready["sources"][0]["partitions"]
        .as_array()
        .map(|v| v.iter().filter_map(|p| p["stalls"].as_u64()).sum())
        .unwrap_or(0);
    assert!(stalls > 0, "no stall was noticed: {ready}");
    let metrics = http_get(&s.http, "/metrics");
    assert!(
        metrics.contains("heimdall_kafka_stalls_total{source=\"heimdall/logs\""),
        "{metrics}"
    );
    assert!(s.terminate().success());
    assert_exactly_once(&stored_ids(&dir.path().join("data")), n, seed);
}

#[test]
fn a_broker_restart_mid_way_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = test_seed();
    let mut rng = Rng(seed);
    // tansu keeps its log in S3 (moto) so that a restarted broker has it.
    let moto = Moto::start();
    let mut broker = Broker::start_on_s3(&moto);
    broker.create_topic("logs", 2);
    let dir = tempfile::tempdir().unwrap();
    let cfg = node_config(dir.path(), &broker.addr, "");
    let n = 40_000;
    let mut producer = broker.produce(0, n / 2, 2, 0.0);
    assert!(
        producer.wait().expect("producer").success(),
        "producer failed"
    );
    let s = start_node(&cfg, &[]);
    // The broker dies while the node consumes (somewhere in the first half).
    let target = n / 16 + rng.next(n / 4);
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&s, "id:*") < target {
        assert!(
            Instant::now() < deadline,
            "the node did not start consuming (seed {seed})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = count(&s, "id:*");
    broker.restart(Duration::from_millis(500 + rng.next(2000)));
    let mut producer = broker.produce(n / 2, n, 2, 0.0);
    assert!(
        producer.wait().expect("producer").success(),
        "producer failed after the restart"
    );
    wait_for(&[&s], n, Duration::from_secs(180));
    assert!(s.terminate().success());
    assert_exactly_once(&stored_ids(&dir.path().join("data")), n, seed);
    eprintln!(
        "broker restarted with {before} of {} first-half ids stored",
        n / 2
    );
    drop(broker);
    drop(moto);
}
