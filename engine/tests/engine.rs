//! Engine: ingest, flush, recover, search; no record lost or duplicated across
//! flushes and reopens.

use engine::engine::{Engine, EngineConfig};
use engine::model::{Record, Tenant};

mod common;

use common::{rec, rt};

fn cfg(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.wal.preallocate = false;
    c.segment.block_rows = 16;
    c
}

#[test]
fn ingest_flush_reopen_search() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let other = Tenant::new("other").unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    let day = 86_400_000_000_000i64;
    let batch: Vec<Record> = (0..100)
        .map(|i| {
            rec(
                i * day / 10,
                &format!(
                    "req {i} status {}",
                    if i % 10 == 0 { "ERROR" } else { "ok" }
                ),
            )
        })
        .collect();
    rt.block_on(e.ingest(&t, batch, 1000)).unwrap();
    rt.block_on(e.ingest(&other, vec![rec(5, "error elsewhere")], 16))
        .unwrap();
    let hits = e.search(&t, &["error"], 100).unwrap();
    assert_eq!(hits.len(), 10);
    assert!(
        hits.windows(2).all(|w| w[0].time_ns >= w[1].time_ns),
        "newest first"
    );
    let flushed = rt.block_on(e.flush()).unwrap();
    assert_eq!(flushed.rows, 101);
    assert_eq!(
        flushed.segments, 2,
        "ten small days packed into one segment per tenant: {flushed:?}"
    );
    assert_eq!(e.search(&t, &["error"], 100).unwrap().len(), 10);
    assert_eq!(e.search(&t, &["error"], 3).unwrap().len(), 3);
    assert_eq!(
        e.search(&t, &["error"], 3).unwrap()[0].msg,
        "req 90 status ERROR"
    );
    assert_eq!(e.search(&other, &["error"], 10).unwrap().len(), 1);
    assert_eq!(e.search(&t, &["req", "90"], 10).unwrap().len(), 1);
    // More after the flush, then a drop without flush: the WAL has them.
    rt.block_on(e.ingest(&t, vec![rec(day * 20, "late ERROR")], 11))
        .unwrap();
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    let hits = e.search(&t, &["error"], 100).unwrap();
    assert_eq!(
        hits.len(),
        11,
        "10 from segments + 1 replayed, no duplicates"
    );
    assert_eq!(hits[0].msg, "late ERROR");
    let s = e.stats().unwrap();
    assert_eq!(s.records, 102);
    assert!(
        s.column_bytes > 0 && s.index_bytes > 0 && s.wal_bytes > 0,
        "{s:?}"
    );
    rt.block_on(e.close()).unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(e.stats().unwrap().records, 102);
    assert_eq!(e.search(&t, &["error"], 100).unwrap().len(), 11);
}

#[test]
fn concurrent_ingest_and_flush_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let e = std::sync::Arc::new(Engine::open(cfg(dir.path())).unwrap());
    let t = Tenant::default();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let e = std::sync::Arc::clone(&e);
        let t = t.clone();
        tasks.push(rt.spawn(async move {
            for i in 0..50 {
                let r = rec(i, &format!("writer{w} item{i} common"));
                e.ingest(&t, vec![r], 20).await.unwrap();
            }
        }));
    }
    let flusher = {
        let e = std::sync::Arc::clone(&e);
        rt.spawn(async move {
            for _ in 0..20 {
                e.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    rt.block_on(flusher).unwrap();
    assert_eq!(e.search(&t, &["common"], 10_000).unwrap().len(), 200);
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    let all = e.search(&t, &["common"], 10_000).unwrap();
    assert_eq!(all.len(), 200);
    let mut msgs: Vec<String> = all.into_iter().map(|r| r.msg).collect();
    msgs.sort();
    msgs.dedup();
    assert_eq!(msgs.len(), 200, "no duplicates");
}

/// A stop asked for during a merge's pacing pause ends the compaction there: a
/// shutdown waits for one merge, not for the pauses of all that are planned.
/// A file system that holds the writing of `MANIFEST.tmp` until told to go on.
#[derive(Debug, Default)]
struct HeldManifest {
    hold: std::sync::Mutex<bool>,
    entered: std::sync::Condvar,
    released: std::sync::Condvar,
    waiting: std::sync::atomic::AtomicBool,
}

impl engine::fs::Fs for HeldManifest {
    fn create_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
        engine::fs::RealFs.create_dir(path)
    }
    fn write_file(&self, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
        if path.file_name().is_some_and(|n| n == "MANIFEST.tmp") {
            let mut hold = self.hold.lock().unwrap();
            while *hold {
                self.waiting
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.entered.notify_all();
                hold = self.released.wait(hold).unwrap();
            }
        }
        engine::fs::RealFs.write_file(path, bytes)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        engine::fs::RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        engine::fs::RealFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        engine::fs::RealFs.sync_dir(dir)
    }
}

/// The manifest is written and synced outside the state lock: while a flush's
/// manifest write is held, ingest is acknowledged and queries answer (the flushed
/// records included); once it goes on, the flush publishes. Before, both waited on
/// the publish.
#[test]
fn ingest_and_queries_do_not_wait_on_a_manifest_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let fs = std::sync::Arc::new(HeldManifest::default());
    let mut c = cfg(dir.path());
    c.fs = fs.clone();
    let e = Engine::open(c).unwrap();
    let t = Tenant::default();
    let batch = |from: i64| -> Vec<Record> {
        (from..from + 50)
            .map(|i| rec(i, &format!("line {i} of the test")))
            .collect()
    };
    rt().block_on(e.ingest(&t, batch(0), 0)).unwrap();
    *fs.hold.lock().unwrap() = true;
    std::thread::scope(|scope| {
        let flush = scope.spawn(|| rt().block_on(e.flush()));
        {
            let mut hold = fs.hold.lock().unwrap();
            while !fs.waiting.load(std::sync::atomic::Ordering::SeqCst) {
                hold = fs.entered.wait(hold).unwrap();
            }
        }
        // The flush is inside its manifest write. Ingest and a query, on a thread
        // of their own so that a wait shows as a timeout, not a hang.
        let (tx, rx) = std::sync::mpsc::channel();
        let e = &e;
        let t = &t;
        scope.spawn(move || {
            let acked = rt().block_on(e.ingest(t, batch(50), 0)).map(|_| ());
            let hits = e.search(t, &["line"], 1000).map(|h| h.len());
            let _ = tx.send((acked, hits));
        });
        let answer = rx.recv_timeout(std::time::Duration::from_secs(30));
        // Whatever happened, let the flush go on (a failed assertion must not hang).
        *fs.hold.lock().unwrap() = false;
        fs.released.notify_all();
        let (acked, hits) = answer.expect("ingest or the query waited on the manifest write");
        acked.unwrap();
        assert_eq!(hits.unwrap(), 100, "the records being flushed stay visible");
        assert_eq!(flush.join().unwrap().unwrap().rows, 50);
    });
    assert_eq!(e.stats().unwrap().segments, 1);
    assert_eq!(e.search(&t, &["line"], 1000).unwrap().len(), 100);
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(e.search(&t, &["line"], 1000).unwrap().len(), 100);
}

#[test]
fn compaction_stops_between_merges_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let e = Engine::open(cfg(dir.path())).unwrap();
    for tenant in ["a", "b"] {
        let t = Tenant::new(tenant.to_string()).unwrap();
        for round in 0..3 {
            let batch: Vec<Record> = (0..40)
                .map(|i| rec(round * 1000 + i, &format!("{tenant} round{round} item{i}")))
                .collect();
            rt.block_on(e.ingest(&t, batch, 0)).unwrap();
            rt.block_on(e.flush()).unwrap();
        }
    }
    assert_eq!(e.stats().unwrap().segments, 6);
    // One byte a second: the first merge's pause would last about an hour.
    let policy = engine::engine::CompactionPolicy {
        bytes_per_s: 1,
        ..engine::engine::CompactionPolicy::everything()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = std::sync::Arc::clone(&stop);
    let asker = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        s.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let started = std::time::Instant::now();
    let stats = rt
        .block_on(e.compact_with(&policy, &|| stop.load(std::sync::atomic::Ordering::Relaxed)))
        .unwrap();
    asker.join().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!((stats.merged, stats.written), (3, 1));
    assert_eq!(e.stats().unwrap().segments, 4);
    // Asked again without a stop, it finishes the rest.
    assert_eq!(rt.block_on(e.compact()).unwrap().written, 1);
    assert_eq!(e.stats().unwrap().segments, 2);
    assert_eq!(e.stats().unwrap().records, 240);
}

#[test]
fn compaction_merges_a_days_segments_and_orphans_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let e = Engine::open(cfg(dir.path())).unwrap();
    for round in 0..3 {
        let batch: Vec<Record> = (0..40)
            .map(|i| rec(round * 1000 + i, &format!("round{round} item{i} shared")))
            .collect();
        rt.block_on(e.ingest(&t, batch, 0)).unwrap();
        rt.block_on(e.flush()).unwrap();
    }
    assert_eq!(e.stats().unwrap().segments, 3);
    let before = e.search(&t, &["shared"], 1000).unwrap();
    let stats = rt.block_on(e.compact()).unwrap();
    assert_eq!((stats.merged, stats.written), (3, 1));
    assert_eq!(e.stats().unwrap().segments, 1);
    assert_eq!(e.stats().unwrap().records, 120);
    let after = e.search(&t, &["shared"], 1000).unwrap();
    assert_eq!(after.len(), 120);
    assert_eq!(
        before.iter().map(|r| &r.msg).collect::<Vec<_>>(),
        after.iter().map(|r| &r.msg).collect::<Vec<_>>()
    );
    // Nothing left to merge.
    assert_eq!(rt.block_on(e.compact()).unwrap().merged, 0);
    drop(e);
    // A segment file the manifest does not list (a crash before publishing) is
    // removed at open; listed ones stay.
    let day_dir = std::fs::read_dir(dir.path().join("segments/default"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orphan = day_dir.join("9999999999.seg");
    std::fs::write(&orphan, b"partial").unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert!(!orphan.exists());
    assert_eq!(e.search(&t, &["shared"], 1000).unwrap().len(), 120);
}

/// Flushes running at once publish in the order their memtables were frozen; every
/// record is stored exactly once, and the data directory reopens with all of them.
#[test]
fn concurrent_flushes_publish_in_order_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = Tenant::default();
    let mut c = cfg(dir.path());
    c.flushes_in_flight = 3;
    let e = std::sync::Arc::new(Engine::open(c.clone()).unwrap());
    let day = 86_400_000_000_000i64;
    let mut handles = Vec::new();
    for round in 0..12i64 {
        // Several days per memtable, so each flush writes several segments.
        let batch: Vec<Record> = (0..200)
            .map(|i| {
                rec(
                    (round * 200 + i) * day / 97,
                    &format!("round{round} item{i}"),
                )
            })
            .collect();
        rt.block_on(e.ingest(&t, batch, 200)).unwrap();
        let e2 = std::sync::Arc::clone(&e);
        handles.push(rt.spawn(async move { e2.flush().await }));
    }
    let mut rows = 0;
    for h in handles {
        rows += rt.block_on(h).unwrap().unwrap().rows;
    }
    assert_eq!(rows, 12 * 200);
    let stats = e.stats().unwrap();
    assert_eq!(stats.records, 12 * 200);
    let e = std::sync::Arc::try_unwrap(e).unwrap();
    rt.block_on(e.close()).unwrap();
    let e = Engine::open(c).unwrap();
    assert_eq!(
        e.stats().unwrap().records,
        12 * 200,
        "nothing replayed twice"
    );
    for round in [0, 5, 11] {
        assert_eq!(
            e.search(&t, &[&format!("round{round}")], 1000)
                .unwrap()
                .len(),
            200
        );
    }
    rt.block_on(e.close()).unwrap();
}

/// A flush that cannot write its segment stops the engine from accepting writes
/// (its data is only in the WAL); reopening replays it, nothing is lost.
#[test]
fn a_failed_flush_is_sticky_and_reopen_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let e = Engine::open(cfg(dir.path())).unwrap();
    // 2026-11-26: the partition directory name is taken by a file.
    let time = 1_795_651_200_000_000_000i64;
    let blocker = dir.path().join("segments/default/20261126");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a directory").unwrap();
    rt.block_on(e.ingest(&t, vec![rec(time, "first batch")], 12))
        .unwrap();
    let err = rt.block_on(e.flush()).unwrap_err().to_string();
    assert!(err.contains("create directory"), "{err}");
    let again = rt
        .block_on(e.ingest(&t, vec![rec(time + 1, "second batch")], 13))
        .unwrap_err();
    assert!(again.to_string().contains("a flush failed"), "{again}");
    assert!(rt.block_on(e.flush()).is_err());
    // Still searchable in memory.
    assert_eq!(e.search(&t, &["first"], 10).unwrap().len(), 1);
    drop(e);
    std::fs::remove_file(&blocker).unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(e.search(&t, &["first"], 10).unwrap().len(), 1);
    assert!(e.search(&t, &["second"], 10).unwrap().is_empty());
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.close()).unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(e.stats().unwrap().records, 1);
}

/// A retried batch (same producer and sequence) is stored once: while the engine
/// runs, after a reopen that replays the WAL, and after a flush moved the table
/// into the manifest and the WAL below it was dropped.
#[test]
fn retried_batches_are_stored_once_across_reopens_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let count = |e: &Engine| e.search(&t, &["batch"], 1000).unwrap().len();
    let push = |e: &Engine, seq: u64| {
        rt.block_on(e.ingest_with(
            &t,
            vec![rec(seq as i64, &format!("batch {seq}"))],
            8,
            Some(("p1".to_string(), seq)),
        ))
    };
    let e = Engine::open(cfg(dir.path())).unwrap();
    let first = push(&e, 1).unwrap();
    assert!(!first.duplicate);
    let again = push(&e, 1).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.range, first.range);
    // Another producer's sequence 1 is its own.
    let other = rt
        .block_on(e.ingest_with(&t, vec![rec(9, "batch x")], 8, Some(("p2".into(), 1))))
        .unwrap();
    assert!(!other.duplicate);
    assert_eq!(count(&e), 2);
    drop(e);

    // Reopen: the table comes back from the WAL.
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(push(&e, 1).unwrap(), first_dup(first));
    assert!(!push(&e, 2).unwrap().duplicate);
    rt.block_on(e.flush()).unwrap();
    drop(e);

    // Reopen after a flush: from the manifest (the WAL below the checkpoint is gone).
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(push(&e, 1).unwrap(), first_dup(first));
    assert!(push(&e, 2).unwrap().duplicate);
    assert!(!push(&e, 3).unwrap().duplicate);
    assert_eq!(count(&e), 4, "batches 1, 2, 3 of p1 and 1 of p2, each once");

    // Far behind the window: refused, not guessed.
    for seq in 4..=(engine::dedup::WINDOW as u64 + 10) {
        push(&e, seq).unwrap();
    }
    assert!(matches!(
        push(&e, 1),
        Err(engine::engine::EngineError::SequenceTooOld { .. })
    ));
}

fn first_dup(first: engine::engine::Ingested) -> engine::engine::Ingested {
    engine::engine::Ingested {
        duplicate: true,
        ..first
    }
}

/// Source positions ride in the same WAL record as their records: after a reopen
/// (WAL replay), after a flush (manifest) and after both, the stored position of
/// each source says exactly how many of its records are stored; a retraction (at
/// hand-over time or at start-up) takes back exactly the records it names, durably.
#[test]
fn source_positions_are_durable_with_their_records() {
    use engine::engine::{Position, Retract};
    use engine::manifest::SourcePosition;
    use engine::model::Value;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let key = |p: i64| format!("kafka/g/logs/{p}");
    // Partition p's record at offset n is "p{p} n{n}" with fields partition, offset.
    let batch = |p: i64, from: u64, to: u64| -> Vec<Record> {
        (from..to)
            .map(|n| {
                let mut r = rec(n as i64, &format!("p{p} n{n}"));
                r.fields = vec![
                    ("partition".into(), Value::I64(p)),
                    ("offset".into(), Value::I64(n as i64)),
                ];
                r
            })
            .collect()
    };
    let pos = |p: i64, first: u64, next: u64| Position {
        key: key(p),
        first,
        next,
    };
    let tail = |p: i64, from: i64, next: u64| Retract {
        key: key(p),
        next,
        equals: vec![("partition".into(), Value::I64(p))],
        field: "offset".into(),
        from,
    };
    let count =
        |e: &Engine, p: i64| e.search(&t, &[&format!("p{p}")], 10_000).unwrap().len() as u64;
    let sp = |first, next| SourcePosition { first, next };
    let keep = |_| Vec::new();
    {
        let e = Engine::open(cfg(dir.path())).unwrap();
        assert_eq!(e.position(&key(0)), None);
        rt.block_on(e.ingest_positioned(&t, batch(0, 0, 50), 0, vec![pos(0, 0, 50)], keep))
            .unwrap();
        rt.block_on(e.ingest_positioned(&t, batch(1, 0, 30), 0, vec![pos(1, 0, 30)], keep))
            .unwrap();
        // A batch whose hand-over fails is taken back at once.
        let got = rt
            .block_on(
                e.ingest_positioned(&t, batch(1, 30, 40), 0, vec![pos(1, 30, 40)], |_| {
                    vec![tail(1, 30, 30)]
                }),
            )
            .unwrap();
        assert_eq!(got.retracted, vec![(key(1), 10)]);
        rt.block_on(e.ingest_positioned(&t, batch(2, 0, 7), 0, vec![pos(2, 0, 7)], keep))
            .unwrap();
        // One WAL record for two partitions; only one part is taken back.
        let got = rt
            .block_on(e.ingest_positioned(
                &t,
                [batch(2, 7, 9), batch(1, 30, 33)].concat(),
                0,
                vec![pos(2, 7, 9), pos(1, 30, 33)],
                |_| vec![tail(1, 30, 30)],
            ))
            .unwrap();
        assert_eq!(got.retracted, vec![(key(1), 3)]);
        assert_eq!(e.position(&key(0)), Some(sp(0, 50)));
        assert_eq!(e.position(&key(1)), Some(sp(30, 30)));
        assert_eq!(count(&e, 1), 30);
        assert_eq!(
            e.positions("kafka/g/logs/"),
            vec![
                (key(0), sp(0, 50)),
                (key(1), sp(30, 30)),
                (key(2), sp(7, 9))
            ]
        );
        assert_eq!(e.positions("kafka/other/"), vec![]);
    }
    // Reopen: positions and the retraction come back from the WAL.
    {
        let e = Engine::open(cfg(dir.path())).unwrap();
        assert_eq!(
            e.positions("kafka/"),
            vec![
                (key(0), sp(0, 50)),
                (key(1), sp(30, 30)),
                (key(2), sp(7, 9))
            ]
        );
        assert_eq!(count(&e, 1), 30);
        rt.block_on(e.flush()).unwrap();
        rt.block_on(e.ingest_positioned(&t, batch(0, 50, 80), 0, vec![pos(0, 50, 80)], keep))
            .unwrap();
    }
    // Reopen: the manifest's positions (as of the flush), then the WAL's after it;
    // then a start-up retraction of partition 0's last batch from offset 60.
    {
        let e = Engine::open(cfg(dir.path())).unwrap();
        assert_eq!(
            e.positions("kafka/"),
            vec![
                (key(0), sp(50, 80)),
                (key(1), sp(30, 30)),
                (key(2), sp(7, 9))
            ]
        );
        for p in 0..3 {
            assert_eq!(
                count(&e, p),
                e.position(&key(p)).unwrap().next,
                "partition {p}"
            );
        }
        assert_eq!(rt.block_on(e.retract(&t, &tail(0, 60, 60))).unwrap(), 20);
        assert_eq!(e.position(&key(0)), Some(sp(50, 60)));
    }
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(e.position(&key(0)), Some(sp(50, 60)));
    assert_eq!(count(&e, 0), 60);
    assert_eq!(count(&e, 2), 9);
    rt.block_on(e.flush()).unwrap();
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(e.position(&key(0)), Some(sp(50, 60)));
    assert_eq!(count(&e, 0), 60);
}

/// Every record's `(message, _template)`, by message.
fn template_ids(e: &Engine, t: &Tenant) -> std::collections::BTreeMap<String, i64> {
    e.search(t, &["svc"], 100_000)
        .unwrap()
        .into_iter()
        .map(|r| {
            let id = r
                .fields
                .iter()
                .find(|(k, _)| k == engine::engine::TEMPLATE_FIELD)
                .and_then(|(_, v)| match v {
                    engine::model::Value::I64(i) => Some(*i),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no _template on {:?}", r.msg));
            (r.msg, id)
        })
        .collect()
}

fn svc_batch(from: i64, n: i64) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            let msg = match i % 4 {
                0 => format!("svc request {i} served in {} ms", i * 7 % 300),
                1 => format!("svc user u{i} logged in from 10.0.0.{}", i % 250),
                // Words that differ: siblings, folding once more than 3 were seen.
                2 => format!(
                    "svc cache {} warmed {i}",
                    ["alpha", "beta", "gamma", "delta", "eps"][(i as usize / 4) % 5]
                ),
                _ => format!("svc shutting down worker {i}"),
            };
            rec(1_700_000_000_000_000_000 + i * 1_000_000_000, &msg)
        })
        .collect()
}

#[test]
fn template_ids_survive_flushes_crashes_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let e = Engine::open(cfg(dir.path())).unwrap();
    rt.block_on(e.ingest(&t, svc_batch(0, 40), 0)).unwrap();
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.ingest(&t, svc_batch(40, 40), 0)).unwrap();
    rt.block_on(e.flush()).unwrap();
    // Left in the WAL and the memtable only.
    rt.block_on(e.ingest(&t, svc_batch(80, 40), 0)).unwrap();
    let before = template_ids(&e, &t);
    let listed = e.templates(&t);
    assert_eq!(before.len(), 120);
    // Four patterns; the cache lines folded (their later ids alias the first).
    let distinct: std::collections::BTreeSet<i64> = before.values().copied().collect();
    assert!(distinct.len() >= 4, "{distinct:?}");
    assert!(
        listed.iter().any(|l| l.alias_of.is_some()),
        "the cache lines fold: {listed:?}"
    );
    let files = |d: &std::path::Path| std::fs::read_dir(d.join("templates")).unwrap().count();
    assert_eq!(files(dir.path()), 1, "older template files are removed");
    // A crash: no close, no flush.
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(template_ids(&e, &t), before, "same ids after a crash");
    assert_eq!(e.templates(&t), listed, "same templates after a crash");
    // Known messages keep their template; a new kind gets the next id.
    rt.block_on(e.ingest(&t, svc_batch(120, 4), 0)).unwrap();
    rt.block_on(e.ingest(
        &t,
        vec![rec(1_700_000_000_000_000_000, "svc something new entirely")],
        0,
    ))
    .unwrap();
    let after = template_ids(&e, &t);
    for i in 120..124 {
        let msg = &svc_batch(i, 1)[0].msg;
        let same_kind = &svc_batch(i - 4, 1)[0].msg;
        let (id, kind) = (after[msg] as u64, after[same_kind] as u64);
        let canonical = |i: u64| {
            listed
                .iter()
                .find(|l| l.id == i)
                .and_then(|l| l.alias_of)
                .unwrap_or(i)
        };
        assert_eq!(canonical(id), canonical(kind), "{msg} and {same_kind}");
    }
    let max = listed.iter().map(|l| l.id).max().unwrap();
    assert_eq!(after["svc something new entirely"], max as i64 + 1);
    // Compaction rewrites segments, not ids; a clean close and reopen neither.
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.compact()).unwrap();
    assert_eq!(template_ids(&e, &t), after);
    rt.block_on(e.close()).unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(template_ids(&e, &t), after);
    drop(e);
    // A damaged template file is refused with its name, not silently replaced
    // (fresh ids would collide with the stored ones).
    let tpl = std::fs::read_dir(dir.path().join("templates"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&tpl).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&tpl, bytes).unwrap();
    let err = Engine::open(cfg(dir.path())).err().unwrap().to_string();
    assert!(err.contains("checksum") && err.contains(".tpl"), "{err}");
}
