//! The object-store tier against a real `object_store` backend (a local
//! directory) behind the fault-injecting wrapper: offload, transparent reads,
//! restore from the store, read-only opening, retention, faults. The same paths
//! against a real S3 server (moto) are in tests/objstore.rs of the e2e crate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::engine::{Engine, EngineConfig, EngineError, RetentionRule};
use engine::model::{Record, Tenant};
use engine::tier::faults::{FaultPlan, Faulty};
use engine::tier::TierConfig;

const DAY: i64 = 86_400_000_000_000;

fn rec(t: i64, msg: String) -> Record {
    Record {
        time_ns: t,
        msg,
        stream: Default::default(),
        level: None,
        fields: vec![],
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Setup {
    _dirs: Vec<tempfile::TempDir>,
    store_dir: std::path::PathBuf,
    plan: Arc<FaultPlan>,
    backend: Arc<Faulty>,
}

fn setup() -> Setup {
    let store = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(store.path()).unwrap();
    let backend = Arc::new(Faulty::new(Arc::new(fs)));
    Setup {
        store_dir: store.path().to_path_buf(),
        plan: Arc::clone(&backend.plan),
        backend,
        _dirs: vec![store],
    }
}

fn cfg(s: &Setup, data: &std::path::Path, read_only: bool) -> EngineConfig {
    let mut c = EngineConfig::new(data);
    c.wal.preallocate = false;
    c.segment.block_rows = 64;
    let mut t = TierConfig::new("test://store", data.join("cache"));
    t.backend = Some(Arc::clone(&s.backend) as Arc<dyn object_store::ObjectStore>);
    t.read_only = read_only;
    t.offload_after = Duration::from_secs(3600);
    t.multipart_above = 8 << 10;
    t.part_bytes = 4 << 10;
    t.attempt_timeout = Duration::from_secs(2);
    t.read_deadline = Duration::from_secs(2);
    t.write_deadline = Duration::from_secs(3);
    c.tier = Some(t);
    c
}

/// Four days of records, the last one recent; each day flushed to its own segment.
fn fill(e: &Engine, rt: &tokio::runtime::Runtime) -> u64 {
    let t = Tenant::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut n = 0;
    for day in 0..4i64 {
        let base = now - (3 - day) * DAY - 1_000_000_000;
        let batch: Vec<Record> = (0..3000)
            .map(|i| {
                rec(
                    base + i,
                    format!(
                        "day{day} request {i} user u{} took {}ms status {}",
                        i % 97,
                        i * 7 % 1000,
                        if i % 13 == 0 { "ERROR" } else { "ok" }
                    ),
                )
            })
            .collect();
        n += batch.len() as u64;
        rt.block_on(e.ingest(&t, batch, 0)).unwrap();
        rt.block_on(e.flush()).unwrap();
    }
    n
}

/// Everything a query can see, plus a few index searches: what must not change.
fn view(e: &Engine) -> (Vec<(i64, String)>, Vec<usize>) {
    let t = Tenant::default();
    let mut all = Vec::new();
    let snap = e.snapshot(&t, (i64::MIN, i64::MAX)).unwrap();
    all.extend(snap.memtable.records().map(|r| (r.time_ns, r.msg.clone())));
    for h in snap.segments {
        for b in 0..h.reader.footer().blocks.len() {
            for r in h.reader.records(b).unwrap() {
                all.push((r.time_ns, r.msg));
            }
        }
    }
    all.sort();
    let searches = [
        &["error"][..],
        &["u42"],
        &["day1", "error"],
        &["nothing_here"],
    ]
    .iter()
    .map(|w| e.search(&t, w, 100_000).unwrap().len())
    .collect();
    (all, searches)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("segments")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn segment_files(dir: &std::path::Path) -> usize {
    walk(dir).len()
}

#[test]
fn offloaded_segments_answer_identically_from_every_node() {
    let s = setup();
    let rt = rt();
    let data = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    let n = fill(&e, &rt);
    let before = view(&e);
    assert_eq!(before.0.len() as u64, n);
    assert!(before.1[0] > 0 && before.1[3] == 0, "{:?}", before.1);

    // Age-based: the three old days go, the recent one stays.
    let st = e.offload(false).unwrap();
    assert_eq!((st.segments, st.failed), (3, 0), "{st:?}");
    assert_eq!(segment_files(data.path()), 1);
    assert_eq!(view(&e), before);
    // Forced: everything; the local segment directory is then empty.
    let st = e.offload(true).unwrap();
    assert_eq!((st.segments, st.local_bytes), (1, 0), "{st:?}");
    assert_eq!(segment_files(data.path()), 0);
    assert_eq!(view(&e), before);
    let stats = e.stats().unwrap();
    assert_eq!(
        (stats.offloaded_segments, stats.local_segment_bytes),
        (4, 0)
    );

    // Reopen with the disk cache deleted: everything comes from the store.
    drop(e);
    std::fs::remove_dir_all(data.path().join("cache")).unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    let gets = e
        .tier()
        .unwrap()
        .store
        .counters
        .gets
        .load(Ordering::Relaxed);
    assert_eq!(view(&e), before);
    let t = e.tier().unwrap();
    assert!(t.store.counters.gets.load(Ordering::Relaxed) > gets);
    // Again: served by the caches, no new request.
    let gets = t.store.counters.gets.load(Ordering::Relaxed);
    assert_eq!(view(&e), before);
    assert_eq!(t.store.counters.gets.load(Ordering::Relaxed), gets);
    drop(e);

    // A manifest without the open hints (written before they existed): the
    // header and the last 64 KiB are fetched instead; the same answers.
    let mpath = data.path().join("MANIFEST");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for seg in m["segments"].as_array_mut().unwrap() {
        let o = seg["offloaded"].as_object_mut().unwrap();
        assert!(o.remove("tail_from").is_some() && o.remove("version").is_some());
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::remove_dir_all(data.path().join("cache")).unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    assert_eq!(view(&e), before);
    drop(e);
    // A memory budget of one byte: no reader of an offloaded segment stays open
    // and nothing stays in memory; the answers are the same.
    let mut tiny = cfg(&s, data.path(), false);
    if let Some(t) = tiny.tier.as_mut() {
        t.memory_cache_bytes_max = 1;
    }
    let e = Engine::open(tiny).unwrap();
    assert_eq!(view(&e), before);
    assert_eq!(view(&e), before);
    assert_eq!(e.tier().unwrap().cache.bytes().0, 0);
    drop(e);

    // A fresh node with an empty data directory: read-only from the bucket.
    let fresh = tempfile::tempdir().unwrap();
    let ro = Engine::open(cfg(&s, fresh.path(), true)).unwrap();
    assert_eq!(view(&ro), before);
    let refused = rt.block_on(ro.ingest(&Tenant::default(), vec![rec(1, "x".into())], 1));
    assert!(matches!(refused, Err(EngineError::ReadOnly)), "{refused:?}");
    assert!(matches!(ro.offload(true), Err(EngineError::ReadOnly)));
    drop(ro);

    // A lost disk: a writable node on an empty directory adopts the store's
    // manifest, and new segments never reuse an offloaded segment's name.
    let lost = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(&s, lost.path(), false)).unwrap();
    assert_eq!(view(&e), before);
    rt.block_on(e.ingest(&Tenant::default(), vec![rec(5, "after the loss".into())], 1))
        .unwrap();
    rt.block_on(e.flush()).unwrap();
    e.offload(true).unwrap();
    assert_eq!(view(&e).0.len() as u64, n + 1);
    assert_eq!(e.stats().unwrap().offloaded_segments, 5);
}

#[test]
fn faults_are_retried_and_an_unreachable_store_loses_nothing() {
    let s = setup();
    let rt = rt();
    let data = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    let n = fill(&e, &rt);
    drop(e);
    // From here on, any local segment is over the hard disk budget.
    let mut c = cfg(&s, data.path(), false);
    if let Some(t) = c.tier.as_mut() {
        t.local_bytes_hard_max = Some(1);
    }
    let e = Engine::open(c).unwrap();
    let before = view(&e);

    // Transient errors and failed multipart parts: retried, then done.
    s.plan.fail_next.store(2, Ordering::Relaxed);
    s.plan.fail_parts.store(2, Ordering::Relaxed);
    s.plan.latency_ms.store(20, Ordering::Relaxed);
    let st = e.offload(false).unwrap();
    assert_eq!((st.segments, st.failed), (3, 0), "{st:?}");
    assert!(
        e.tier()
            .unwrap()
            .store
            .counters
            .retries
            .load(Ordering::Relaxed)
            >= 4
    );
    assert!(s.plan.injected.load(Ordering::Relaxed) >= 4);
    assert_eq!(
        s.plan.fail_parts.load(Ordering::Relaxed),
        0,
        "multipart parts were failed"
    );
    s.plan.latency_ms.store(0, Ordering::Relaxed);
    assert_eq!(view(&e), before); // (and fills the cache)

    // Down: the offload fails, the segment stays local and readable; ingest is
    // refused once local segments are over the hard disk budget (1 byte here).
    s.plan.down.store(true, Ordering::Relaxed);
    let st = e.offload(true).unwrap();
    assert_eq!((st.segments, st.failed), (0, 1), "{st:?}");
    assert!(st.error.unwrap().contains("unavailable"));
    assert_eq!(segment_files(data.path()), 1);
    let refused = rt.block_on(e.ingest(&Tenant::default(), vec![rec(1, "x".into())], 1));
    assert!(
        matches!(refused, Err(EngineError::DiskBudget { .. })),
        "{refused:?}"
    );
    // Cached reads still answer; an uncached one fails within the read deadline
    // with a clear error.
    assert_eq!(view(&e), before);
    drop(e);
    std::fs::remove_dir_all(data.path().join("cache")).unwrap();
    let mut c = cfg(&s, data.path(), false);
    if let Some(t) = c.tier.as_mut() {
        t.local_bytes_hard_max = Some(1);
    }
    let e = Engine::open(c).unwrap();
    let started = Instant::now();
    let err = e
        .snapshot(&Tenant::default(), (i64::MIN, i64::MAX))
        .map(|_| ())
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("object store unavailable"),
        "{err}"
    );

    // Back up: the offload finishes, ingest is accepted, nothing lost.
    s.plan.down.store(false, Ordering::Relaxed);
    let st = e.offload(true).unwrap();
    assert_eq!((st.segments, st.failed), (1, 0), "{st:?}");
    rt.block_on(e.ingest(&Tenant::default(), vec![rec(1, "x".into())], 1))
        .unwrap();
    assert_eq!(view(&e).0.len() as u64, n + 1);
}

#[test]
fn retention_deletes_exactly_the_old_segments_from_both_tiers() {
    let s = setup();
    let rt = rt();
    let data = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    fill(&e, &rt);
    // Days 0 and 1 offloaded, days 2 and 3 local.
    let mut c = cfg(&s, data.path(), false);
    drop(e);
    if let Some(t) = c.tier.as_mut() {
        t.offload_after = Duration::from_secs(36 * 3600);
    }
    let e = Engine::open(c).unwrap();
    assert_eq!(e.offload(false).unwrap().segments, 2);
    let (all, _) = view(&e);
    // An orphan object (a crash between upload and manifest) is swept.
    let orphan = s.store_dir.join("segments/default/19700101");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("0000009999.seg"), b"left by a crash").unwrap();
    // So is a template file the store's manifest does not name.
    let templates = s.store_dir.join("templates");
    let named: Vec<_> = std::fs::read_dir(&templates).unwrap().collect();
    assert_eq!(named.len(), 1, "the offload put the template file");
    std::fs::write(
        templates.join("00000000000000000001.tpl"),
        b"left by a crash",
    )
    .unwrap();
    assert_eq!(e.sweep_store().unwrap(), 2);
    assert_eq!(std::fs::read_dir(&templates).unwrap().count(), 1);

    // Keep 2.5 days: day 0 (remote) goes, nothing else.
    let rule = RetentionRule {
        tenant: "*".into(),
        stream: None,
        max_age: Some(Duration::from_secs(60 * 3600)),
        max_bytes: None,
    };
    let st = e.retain(&[rule]).unwrap();
    assert_eq!(
        (st.remote_segments, st.local_segments, st.rows),
        (1, 0, 3000)
    );
    let (left, _) = view(&e);
    let want: Vec<_> = all
        .iter()
        .filter(|(_, m)| !m.starts_with("day0 "))
        .cloned()
        .collect();
    assert_eq!(left, want);
    // Bytes: room for the newest segment only: the remote day 1 and the local
    // day 2 go.
    let mut local: Vec<_> = walk(data.path());
    local.sort();
    let newest = std::fs::metadata(local.last().unwrap()).unwrap().len();
    let rule = RetentionRule {
        tenant: "default".into(),
        stream: None,
        max_age: None,
        max_bytes: Some(newest),
    };
    let st = e.retain(&[rule]).unwrap();
    assert_eq!((st.remote_segments, st.local_segments), (1, 1), "{st:?}");
    let (left, _) = view(&e);
    assert!(left.iter().all(|(_, m)| m.starts_with("day3 ")) && left.len() == 3000);
    // The store holds exactly the listed objects, and a read-only node agrees.
    assert_eq!(e.sweep_store().unwrap(), 0);
    drop(e);
    let fresh = tempfile::tempdir().unwrap();
    let ro = Engine::open(cfg(&s, fresh.path(), true)).unwrap();
    assert!(
        view(&ro).0.is_empty(),
        "the remaining segment was never offloaded"
    );
}

#[test]
fn stream_retention_rewrites_segments_without_the_expired_records() {
    let s = setup();
    let rt = rt();
    let data = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let t = Tenant::default();
    // Days 10, 5 and 0 ago; streams app=a and app=b in each; day 10 offloaded.
    for (i, ago) in [10i64, 5, 0].iter().enumerate() {
        let batch: Vec<Record> = (0..400)
            .map(|k| {
                let mut r = rec(
                    now - ago * DAY - 1_000_000_000 + k,
                    format!("d{ago} line {k}"),
                );
                r.stream
                    .insert("app".into(), if k % 2 == 0 { "a" } else { "b" }.into());
                r
            })
            .collect();
        rt.block_on(e.ingest(&t, batch, 0)).unwrap();
        rt.block_on(e.flush()).unwrap();
        if i == 0 {
            assert_eq!(e.offload(true).unwrap().segments, 1);
        }
    }
    let (all, _) = view(&e);
    let mut sel = engine::model::Labels::new();
    sel.insert("app".into(), "a".into());
    let rule = RetentionRule {
        tenant: "default".into(),
        stream: Some(sel),
        max_age: Some(Duration::from_secs(3 * 86_400)),
        max_bytes: None,
    };
    let st = e.retain(std::slice::from_ref(&rule)).unwrap();
    // Days 10 (remote) and 5 (local) rewritten, 200 records each gone; today untouched.
    assert_eq!((st.rewritten_segments, st.rows), (2, 400), "{st:?}");
    let (left, _) = view(&e);
    let gone = |m: &str| {
        let k: u64 = m.rsplit(' ').next().unwrap().parse().unwrap();
        !m.starts_with("d0 ") && k.is_multiple_of(2)
    };
    let want: Vec<_> = all.iter().filter(|(_, m)| !gone(m)).cloned().collect();
    assert_eq!(left, want);
    // The old object is gone from the store; a second run finds nothing to do.
    assert_eq!(e.sweep_store().unwrap(), 0);
    assert_eq!(e.stats().unwrap().offloaded_segments, 0);
    let st = e.retain(&[rule]).unwrap();
    assert_eq!((st.rewritten_segments, st.rows), (0, 0), "{st:?}");
}

#[test]
fn label_pruning_never_fetches_segments_without_the_label() {
    let s = setup();
    let rt = rt();
    let data = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    let t = Tenant::default();
    // Three segments (days 1, 2, 3): app=a only in day 2.
    for day in 1..=3i64 {
        let batch: Vec<Record> = (0..200)
            .map(|k| {
                let mut r = rec(day * DAY + k, format!("line {k}"));
                let app = if day == 2 { "a" } else { "b" };
                r.stream.insert("app".into(), app.into());
                r
            })
            .collect();
        rt.block_on(e.ingest(&t, batch, 0)).unwrap();
        rt.block_on(e.flush()).unwrap();
    }
    assert_eq!(e.offload(true).unwrap().segments, 3);
    drop(e);
    std::fs::remove_dir_all(data.path().join("cache")).unwrap();
    let e = Engine::open(cfg(&s, data.path(), false)).unwrap();
    let before = s.plan.requests.load(Ordering::Relaxed);
    let segs = e
        .snapshot_with_labels(&t, (i64::MIN, i64::MAX), &["app=a".to_string()])
        .unwrap()
        .segments;
    assert_eq!(segs.len(), 1);
    assert!(segs[0].entry.min_time >= 2 * DAY && segs[0].entry.max_time < 3 * DAY);
    // One request: the open of that one segment.
    assert_eq!(s.plan.requests.load(Ordering::Relaxed) - before, 1);
    let none = e
        .snapshot_with_labels(&t, (i64::MIN, i64::MAX), &["app=zzz".to_string()])
        .unwrap()
        .segments;
    assert!(none.is_empty());
    assert_eq!(
        e.snapshot(&t, (i64::MIN, i64::MAX)).unwrap().segments.len(),
        3
    );
}
