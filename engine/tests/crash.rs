//! Crash consistency above the WAL, through the fault-injecting file layer
//! (`engine::fs::fault`): a workload of flushes (template persistence included),
//! a compaction, retention and an offload "loses power" after its k-th file
//! operation; unsynced directory entries are dropped (all of them, or all but a
//! prefix that happened to reach the disk); the directory is opened again and must
//! hold every acknowledged record exactly once (records retention was removing:
//! at most once), answer queries, and take writes again.
//!
//! Default: a bounded sample of crash points (`HEIMDALL_CRASH_POINTS`, default 48,
//! spread over the workload's operations). Long mode: `HEIMDALL_CRASH_POINTS=all`
//! tries every one, each with every kept prefix of the unsynced entries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine::engine::{Engine, EngineConfig, RetentionRule};
use engine::fs::fault::FaultyFs;
use engine::model::{Record, Tenant};
use engine::tier::TierConfig;

const DAY: i64 = 86_400_000_000_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

mod common;

use common::rt;

fn cfg(data: &std::path::Path, store: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(data);
    c.wal.preallocate = false;
    c.segment.block_rows = 16;
    c.flush_threads = 1;
    let local = object_store::local::LocalFileSystem::new_with_prefix(store).unwrap();
    let mut t = TierConfig::new("test://crash", data.join("cache"));
    t.backend = Some(Arc::new(local) as Arc<dyn object_store::ObjectStore>);
    t.attempt_timeout = Duration::from_secs(2);
    t.read_deadline = Duration::from_secs(2);
    t.write_deadline = Duration::from_secs(3);
    c.tier = Some(t);
    c
}

/// What the workload got acknowledged: id -> tenant; and the ids retention was
/// asked to remove.
#[derive(Default)]
struct Acked {
    ids: BTreeMap<u64, &'static str>,
    expiring: Vec<u64>,
}

struct Workload<'a> {
    e: &'a Engine,
    rt: &'a tokio::runtime::Runtime,
    acked: Acked,
    next: u64,
    base: i64,
}

impl Workload<'_> {
    /// Ingests `n` records of `tenant`, `days_ago` days back; true if acknowledged.
    fn ingest(&mut self, tenant: &'static str, days_ago: i64, n: u64) -> bool {
        let t = Tenant::new(tenant).unwrap();
        let first = self.next;
        self.next += n;
        let recs: Vec<Record> = (first..first + n)
            .map(|id| Record {
                time_ns: self.base - days_ago * DAY + id as i64 * 1000,
                msg: format!("event id_{id} stored by worker {}", id % 3),
                stream: [("svc".to_string(), tenant.to_string())].into(),
                level: Some(["INFO", "WARN"][(id % 2) as usize].into()),
                fields: vec![("n".into(), engine::model::Value::I64(id as i64))],
            })
            .collect();
        let ok = self.rt.block_on(self.e.ingest(&t, recs, 0)).is_ok();
        if ok {
            for id in first..first + n {
                self.acked.ids.insert(id, tenant);
            }
        }
        ok
    }

    fn flush(&self) {
        let _ = self.rt.block_on(self.e.flush());
    }
}

/// One step of the workload.
type Step = Box<dyn Fn(&mut Workload<'_>)>;

/// Runs the workload; stops at the first step after the power loss (the process
/// is gone). The returned value says what was acknowledged.
fn workload(e: &Engine, fs: &FaultyFs) -> Acked {
    let rt = rt();
    let mut w = Workload {
        e,
        rt: &rt,
        acked: Acked::default(),
        next: 0,
        base: now() - 3600 * 1_000_000_000,
    };
    let steps: Vec<Step> = vec![
        Box::new(|w| {
            w.ingest("default", 3, 40);
        }),
        Box::new(|w| w.flush()),
        Box::new(|w| {
            w.ingest("default", 3, 40);
            w.ingest("default", 2, 30);
        }),
        Box::new(|w| w.flush()),
        Box::new(|w| {
            let _ = w.rt.block_on(w.e.compact());
        }),
        Box::new(|w| {
            let first = w.next;
            if w.ingest("old", 20, 30) {
                w.acked.expiring.extend(first..first + 30);
            }
        }),
        Box::new(|w| w.flush()),
        Box::new(|w| {
            let rule = RetentionRule {
                tenant: "old".into(),
                stream: None,
                max_age: Some(Duration::from_secs(10 * 86_400)),
                max_bytes: None,
            };
            let _ = w.e.retain(&[rule]);
        }),
        Box::new(|w| {
            let _ = w.e.offload(true);
        }),
        Box::new(|w| {
            w.ingest("default", 0, 20);
        }),
        Box::new(|w| w.flush()),
        Box::new(|w| {
            w.ingest("default", 0, 10);
        }),
    ];
    for step in steps {
        if fs.crashed() {
            break;
        }
        step(&mut w);
    }
    w.acked
}

/// Every record of `tenant`: id -> how many times it is there.
fn stored(e: &Engine, tenant: &str) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    let t = Tenant::new(tenant).unwrap();
    for r in e.search(&t, &["stored"], usize::MAX).unwrap() {
        let id: u64 = r
            .msg
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.strip_prefix("id_"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected record {r:?}"));
        *out.entry(id).or_default() += 1;
    }
    out
}

/// One crash: power lost after operation `k`, `keep` unsynced entries surviving.
/// Returns whether the power loss happened within the workload.
fn crash_once(k: u64, keep: Option<usize>) -> bool {
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::new());
    let mut c = cfg(data.path(), store.path());
    c.fs = Arc::clone(&fs) as Arc<dyn engine::fs::Fs>;
    let e = Engine::open(c).unwrap_or_else(|err| panic!("k={k}: first open: {err}"));
    // Counted from the workload's first operation.
    fs.crash_after(fs.ops() + k);
    let acked = workload(&e, &fs);
    drop(e);
    let crashed = fs.crashed();
    let keep = keep.unwrap_or(0).min(fs.unsynced());
    fs.power_loss_keeping(keep).unwrap();
    let ctx = format!(
        "crash after op {k} (keeping {keep} unsynced), ops: {:?}",
        fs.log()
    );

    let e = Engine::open(cfg(data.path(), store.path()))
        .unwrap_or_else(|err| panic!("{ctx}: reopen: {err}"));
    let mut all = stored(&e, "default");
    for (id, n) in stored(&e, "old") {
        *all.entry(id).or_default() += n;
    }
    for (id, tenant) in &acked.ids {
        let n = all.get(id).copied().unwrap_or(0);
        if acked.expiring.contains(id) {
            assert!(
                n <= 1,
                "{ctx}: expiring id {id} ({tenant}) stored {n} times"
            );
        } else {
            assert_eq!(
                n, 1,
                "{ctx}: acknowledged id {id} ({tenant}) stored {n} times"
            );
        }
    }
    for (id, n) in &all {
        assert_eq!(*n, 1, "{ctx}: id {id} stored {n} times");
    }
    // Queries read every listed segment, and the directory takes writes again.
    e.stats()
        .unwrap_or_else(|err| panic!("{ctx}: stats: {err}"));
    let rt = rt();
    let t = Tenant::default();
    let again = Record {
        time_ns: now(),
        msg: "after the crash".into(),
        stream: Default::default(),
        level: None,
        fields: vec![],
    };
    rt.block_on(e.ingest(&t, vec![again], 0))
        .unwrap_or_else(|err| panic!("{ctx}: ingest after: {err}"));
    rt.block_on(e.flush())
        .unwrap_or_else(|err| panic!("{ctx}: flush after: {err}"));
    assert_eq!(
        e.search(&t, &["after", "crash"], 10).unwrap().len(),
        1,
        "{ctx}"
    );
    crashed
}

/// Operations of the whole workload without a crash.
fn total_ops() -> u64 {
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::new());
    let mut c = cfg(data.path(), store.path());
    c.fs = Arc::clone(&fs) as Arc<dyn engine::fs::Fs>;
    let e = Engine::open(c).unwrap();
    let opened = fs.ops();
    let acked = workload(&e, &fs);
    assert_eq!(acked.ids.len(), 170);
    drop(e);
    fs.ops() - opened
}

#[test]
fn every_acknowledged_record_survives_a_crash_after_any_file_operation() {
    let total = total_ops();
    assert!(total > 40, "the workload should touch files often: {total}");
    let mode = std::env::var("HEIMDALL_CRASH_POINTS").unwrap_or_default();
    let (points, keeps): (Vec<u64>, Vec<Option<usize>>) = if mode == "all" {
        (
            (0..=total).collect(),
            vec![None, Some(1), Some(2), Some(4), Some(8)],
        )
    } else {
        let n: u64 = mode.parse().unwrap_or(48).max(1);
        let step = (total / n).max(1);
        (
            (0..=total).step_by(step as usize).collect(),
            vec![None, Some(1)],
        )
    };
    let mut crashed = 0;
    for k in &points {
        for keep in &keeps {
            if crash_once(*k, *keep) {
                crashed += 1;
            }
        }
    }
    eprintln!(
        "{} crash points of {total} file operations, {crashed} runs crashed mid-workload",
        points.len()
    );
    assert!(crashed > 0);
}

/// A new day's directory is made durable with the segment in it: once its
/// directory entry could be lost to a power loss after the manifest listed the
/// segment and the WAL was checkpointed past it.
#[test]
fn a_flush_into_new_directories_survives_a_power_loss() {
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::new());
    let mut c = cfg(data.path(), store.path());
    c.tier = None;
    c.wal.file_bytes_max = 4096;
    c.fs = Arc::clone(&fs) as Arc<dyn engine::fs::Fs>;
    let e = Engine::open(c).unwrap();
    let rt = rt();
    let mut w = Workload {
        e: &e,
        rt: &rt,
        acked: Acked::default(),
        next: 0,
        base: now(),
    };
    for day in [5, 4, 3] {
        assert!(w.ingest("default", day, 60));
        w.flush();
    }
    let acked = w.acked.ids.len();
    drop(e);
    fs.power_loss().unwrap();
    let mut c = cfg(data.path(), store.path());
    c.tier = None;
    let e = Engine::open(c).unwrap();
    assert_eq!(stored(&e, "default").len(), acked);
}
