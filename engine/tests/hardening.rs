//! What no client request and no damaged directory may do to a node: each test
//! is a scenario that once bricked a node or lost data (issue "Hardening").

use engine::engine::{Engine, EngineConfig, EngineError, LEASE_OBJECT};
use engine::model::{Record, Tenant};

mod common;

use common::{rec, rt};

fn cfg(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.wal.preallocate = false;
    c.templates = None;
    c
}

/// A batch over the count WAL replay accepts was once acknowledged, and the node
/// then could not start again. Now it is refused before it is stored, and a
/// batch of exactly the limit replays.
#[test]
fn a_batch_replay_would_refuse_is_refused_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let max = engine::walrec::BATCH_RECORDS_MAX;
    let e = Engine::open(cfg(dir.path())).unwrap();
    let over: Vec<Record> = (0..=max as i64).map(|i| rec(i, "x")).collect();
    match rt.block_on(e.ingest(&t, over, 0)) {
        Err(EngineError::BatchTooLarge { count, max: m, .. }) => {
            assert_eq!((count, m), (max + 1, max));
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    let full: Vec<Record> = (0..max as i64).map(|i| rec(i, "y")).collect();
    rt.block_on(e.ingest(&t, full, 0)).unwrap();
    drop(e); // no flush: the batch is only in the WAL
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(e.memory().memtable_records, max as u64);
}

/// Ingests `batches` batches of 50 records, flushing after each, with WAL files
/// small enough that checkpoints drop them; the ids stored.
fn stored_and_checkpointed(dir: &std::path::Path, batches: i64) -> Vec<i64> {
    let rt = rt();
    let mut c = cfg(dir);
    c.wal.file_bytes_max = 4096;
    let e = Engine::open(c).unwrap();
    let t = Tenant::default();
    let mut ids = Vec::new();
    for b in 0..batches {
        let recs: Vec<Record> = (0..50)
            .map(|i| {
                let id = b * 50 + i;
                ids.push(id);
                rec(id, &format!("event id_{id} stored"))
            })
            .collect();
        rt.block_on(e.ingest(&t, recs, 0)).unwrap();
        rt.block_on(e.flush()).unwrap();
    }
    drop(e);
    ids
}

fn ids_in(e: &Engine) -> Vec<i64> {
    let mut ids: Vec<i64> = e
        .search(&Tenant::default(), &["stored"], usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.time_ns)
        .collect();
    ids.sort_unstable();
    ids
}

fn seg_files(dir: &std::path::Path) -> usize {
    walkdir(dir.join("segments"))
}

fn walkdir(d: std::path::PathBuf) -> usize {
    let Ok(rd) = std::fs::read_dir(&d) else {
        return 0;
    };
    rd.map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walkdir(e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A missing manifest once made the open sweep every segment away as an orphan.
#[test]
fn a_missing_manifest_refuses_to_open_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ids = stored_and_checkpointed(dir.path(), 6);
    let manifest = dir.path().join("MANIFEST");
    let saved = std::fs::read(&manifest).unwrap();
    let files = seg_files(dir.path());
    assert_eq!(files, 6);
    std::fs::remove_file(&manifest).unwrap();
    for _ in 0..2 {
        let err = Engine::open(cfg(dir.path())).unwrap_err();
        assert!(
            matches!(err, EngineError::ManifestMissing { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("MANIFEST") && text.contains("checkpointed"),
            "{text}"
        );
        assert_eq!(seg_files(dir.path()), files, "nothing deleted");
    }
    std::fs::write(&manifest, &saved).unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(ids_in(&e), ids);
}

/// Segment files with no manifest and no WAL: only the manifest could name them.
#[test]
fn segments_without_manifest_or_wal_refuse_to_open() {
    let dir = tempfile::tempdir().unwrap();
    stored_and_checkpointed(dir.path(), 2);
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    let err = Engine::open(cfg(dir.path())).unwrap_err();
    assert!(err.to_string().contains("2 segment files"), "{err}");
    assert_eq!(seg_files(dir.path()), 2);
}

/// A first flush that crashed before its manifest: the WAL holds every record
/// from LSN 1, so the open goes ahead (no false refusal after a crash), and each
/// record is there once.
#[test]
fn a_first_flush_cut_before_its_manifest_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let e = Engine::open(cfg(dir.path())).unwrap();
    let recs: Vec<Record> = (0..100)
        .map(|i| rec(i, &format!("event id_{i} stored")))
        .collect();
    rt.block_on(e.ingest(&t, recs, 0)).unwrap();
    drop(e);
    // The WAL as the crash leaves it: the flush had not checkpointed it.
    let wal = dir.path().join("wal");
    let saved = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(&wal).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), saved.path().join(f.file_name())).unwrap();
    }
    let e = Engine::open(cfg(dir.path())).unwrap();
    rt.block_on(e.flush()).unwrap();
    drop(e);
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    std::fs::remove_dir_all(&wal).unwrap();
    std::fs::create_dir(&wal).unwrap();
    for f in std::fs::read_dir(saved.path()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), wal.join(f.file_name())).unwrap();
    }
    assert_eq!(seg_files(dir.path()), 1);
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(ids_in(&e), (0..100).collect::<Vec<_>>());
}

#[test]
fn a_damaged_manifest_refuses_to_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    stored_and_checkpointed(dir.path(), 3);
    let manifest = dir.path().join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&manifest, &bytes).unwrap();
    let err = Engine::open(cfg(dir.path())).unwrap_err().to_string();
    assert!(
        err.contains("corrupt manifest") && err.contains("MANIFEST"),
        "{err}"
    );
    assert_eq!(seg_files(dir.path()), 3);
}

/// A WAL directory lost under a manifest with a checkpoint: new records would get
/// LSNs below the checkpoint, which replay skips.
#[test]
fn a_lost_wal_under_a_manifest_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    stored_and_checkpointed(dir.path(), 3);
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    let err = Engine::open(cfg(dir.path())).unwrap_err();
    assert!(matches!(err, EngineError::WalMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("ends before LSN"), "{err}");
}

/// Tenant B reusing tenant A's (producer, sequence) was told "duplicate" and its
/// batch was dropped.
#[test]
fn producers_are_known_within_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let a = Tenant::new("a").unwrap();
    let b = Tenant::new("b").unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    let push = |e: &Engine, t: &Tenant, msg: &str| {
        rt.block_on(e.ingest_with(t, vec![rec(1, msg)], 0, Some(("p1".into(), 7))))
            .unwrap()
    };
    assert!(!push(&e, &a, "from a").duplicate);
    assert!(!push(&e, &b, "from b").duplicate, "another tenant's batch");
    assert!(push(&e, &a, "from a").duplicate, "a's own retry");
    // The same after replay from the WAL, and from the manifest after a flush.
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert!(push(&e, &b, "from b").duplicate);
    rt.block_on(e.flush()).unwrap();
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert!(push(&e, &a, "from a").duplicate);
    let c = Tenant::new("c").unwrap();
    assert!(!push(&e, &c, "from c").duplicate);
    for (t, msg) in [(&a, "from"), (&b, "from"), (&c, "from")] {
        assert_eq!(e.search(t, &[msg], 10).unwrap().len(), 1, "{t:?}");
    }
}

/// Per record at most `RECORD_FIELDS_MAX` fields, checked by the engine whatever
/// the ingest path.
#[test]
fn a_record_over_the_field_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let e = Engine::open(cfg(dir.path())).unwrap();
    let max = engine::model::RECORD_FIELDS_MAX;
    let wide = |n: usize| {
        let mut r = rec(1, "wide");
        r.fields = (0..n)
            .map(|j| (format!("f{j}"), engine::model::Value::I64(j as i64)))
            .collect();
        r
    };
    let err = rt
        .block_on(e.ingest(&Tenant::default(), vec![rec(0, "ok"), wide(max + 1)], 0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::InvalidRecord {
                index: 1,
                reason: engine::model::RecordError::TooManyFields { count, .. }
            } if count == max + 1
        ),
        "{err:?}"
    );
    rt.block_on(e.ingest(&Tenant::default(), vec![wide(max)], 0))
        .unwrap();
    // Every path shares one rule for names: the engine refuses a reserved or
    // empty field name, or an empty label name, from any caller.
    for (field, label) in [("_x", "k"), ("", "k"), ("ok", "")] {
        let mut r = rec(2, "named");
        r.fields = vec![(field.to_string(), engine::model::Value::I64(1))];
        r.stream = [(label.to_string(), "v".to_string())].into();
        let err = rt
            .block_on(e.ingest(&Tenant::default(), vec![r], 0))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::InvalidRecord { index: 0, .. }),
            "{field:?} {label:?}: {err:?}"
        );
    }
}

/// A retraction once matched records by their field values only: a client's push
/// carrying the same `kafka.*` fields, or another source reading the same topic,
/// could be taken back with the failed batch.
#[test]
fn a_retraction_takes_back_only_its_own_sources_records() {
    use engine::engine::{Position, Retract};
    use engine::model::Value;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let kafka = |msg: &str, offset: i64| {
        let mut r = rec(offset, msg);
        r.fields = vec![
            ("kafka.topic".into(), Value::Str("logs".into())),
            ("kafka.partition".into(), Value::I64(0)),
            ("kafka.offset".into(), Value::I64(offset)),
        ];
        r
    };
    let key = |group: &str| format!("kafka/{group}/logs/0");
    let retract = |group: &str| Retract {
        key: key(group),
        next: 0,
        equals: vec![
            ("kafka.topic".into(), Value::Str("logs".into())),
            ("kafka.partition".into(), Value::I64(0)),
        ],
        field: "kafka.offset".into(),
        from: 0,
    };
    let e = Engine::open(cfg(dir.path())).unwrap();
    // A client's push with look-alike fields, and group b's batch.
    rt.block_on(e.ingest(&t, vec![kafka("pushed", 5)], 0))
        .unwrap();
    let pos = |group: &str| {
        vec![Position {
            key: key(group),
            first: 0,
            next: 10,
        }]
    };
    rt.block_on(e.ingest_positioned(&t, vec![kafka("from b", 5)], 0, pos("b"), |_| vec![]))
        .unwrap();
    // Group a's batch is taken back at once: only its own record goes.
    let got = rt
        .block_on(
            e.ingest_positioned(&t, vec![kafka("from a", 5)], 0, pos("a"), |_| {
                vec![retract("a")]
            }),
        )
        .unwrap();
    assert_eq!(got.retracted, vec![(key("a"), 1)]);
    let left = |e: &Engine| {
        let mut m: Vec<String> = e
            .search(&t, &[], 100)
            .unwrap()
            .into_iter()
            .map(|r| r.msg)
            .collect();
        m.sort();
        m
    };
    assert_eq!(left(&e), ["from b", "pushed"]);
    // The same through WAL replay.
    drop(e);
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(left(&e), ["from b", "pushed"]);
    assert_eq!(rt.block_on(e.retract(&t, &retract("a"))).unwrap(), 0);
    assert_eq!(left(&e), ["from b", "pushed"]);
}

/// Two writable nodes on one bucket prefix (a lost-disk restore while the old
/// node still runs) once deleted each other's objects and overwrote each other's
/// manifest. The second now refuses to start while the first holds the lease;
/// a node that lost its lease stops writing to the bucket.
#[test]
fn a_second_writer_on_a_bucket_prefix_refuses_to_start() {
    use std::sync::Arc;
    use std::time::Duration;
    for backend in ["memory", "local directory"] {
        let store_dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn object_store::ObjectStore> = match backend {
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            _ => Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(store_dir.path()).unwrap(),
            ),
        };
        let tiered = |data: &std::path::Path, ttl: Duration| {
            let mut c = cfg(data);
            let mut t = engine::tier::TierConfig::new("test://lease", data.join("cache"));
            t.backend = Some(Arc::clone(&store));
            t.lease_ttl = ttl;
            c.tier = Some(t);
            c
        };
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ttl = Duration::from_secs(2);
        let a = Engine::open(tiered(a_dir.path(), ttl)).unwrap();
        let err = Engine::open(tiered(b_dir.path(), ttl)).unwrap_err();
        assert!(
            matches!(err, EngineError::LeaseHeld { .. }),
            "{backend}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&a_dir.path().display().to_string()),
            "{err}"
        );
        // A clean stop gives the lease up: the next node starts at once.
        drop(a);
        let b = Engine::open(tiered(b_dir.path(), ttl)).unwrap();
        // A crashed holder (never renews, never releases): its lease runs out.
        std::mem::forget(b);
        let err = Engine::open(tiered(a_dir.path(), ttl)).unwrap_err();
        assert!(
            matches!(err, EngineError::LeaseHeld { .. }),
            "{backend}: {err}"
        );
        std::thread::sleep(ttl + Duration::from_millis(200));
        let a = Engine::open(tiered(a_dir.path(), ttl)).unwrap();
        // A crashed node restarting takes its own lease back at once: the lease
        // names the data directory's node id (here copied to a directory of its
        // own, as the crashed process still holds the first one's WAL lock).
        std::mem::forget(a);
        let a_again = tempfile::tempdir().unwrap();
        std::fs::copy(
            a_dir.path().join(engine::engine::NODE_ID_FILE),
            a_again.path().join(engine::engine::NODE_ID_FILE),
        )
        .unwrap();
        let a = Engine::open(tiered(a_again.path(), ttl)).unwrap();
        a.renew_lease().unwrap();
        // An earlier renewal of `a` that timed out on its side but reached the
        // store later (seen in the kill -9 torture after a stall) changed the
        // lease's version behind a's back: still a's own lease, not lost.
        use object_store::ObjectStoreExt;
        let rt = rt();
        let lease = rt.block_on(async {
            for p in [LEASE_OBJECT.to_string(), format!("lease/{LEASE_OBJECT}")] {
                let p = object_store::path::Path::from(p);
                if let Ok(got) = store.get(&p).await {
                    return (p, got.bytes().await.unwrap());
                }
            }
            panic!("{backend}: no lease object");
        });
        let mut doc: serde_json::Value = serde_json::from_slice(&lease.1).unwrap();
        doc["nonce"] = serde_json::json!(doc["nonce"].as_u64().unwrap() ^ 1);
        rt.block_on(store.put(&lease.0, serde_json::to_vec(&doc).unwrap().into()))
            .unwrap();
        a.renew_lease().unwrap();
        if backend == "memory" {
            // Taken over behind its back (another node after a missed renewal):
            // the next renewal learns it, and the bucket is no longer written.
            let c_dir = tempfile::tempdir().unwrap();
            std::thread::sleep(ttl + Duration::from_millis(200));
            let b = Engine::open(tiered(c_dir.path(), ttl)).unwrap();
            let err = a.renew_lease().unwrap_err();
            assert!(matches!(err, EngineError::LeaseLost(_)), "{err}");
            let err = a.offload(true).map(|_| ()).unwrap_err();
            assert!(matches!(err, EngineError::LeaseLost(_)), "{err}");
            b.renew_lease().unwrap();
        }
    }
}

/// `repair` rebuilds a lost manifest from the segments and the WAL: every
/// acknowledged record exactly once, with compaction leftovers and a damaged
/// segment set aside, records retention removed staying removed, and records only
/// in the WAL replayed.
#[test]
fn repair_rebuilds_a_lost_manifest_with_every_record_once() {
    use engine::engine::repair::{repair, verify};
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let mut c = cfg(dir.path());
    c.wal.file_bytes_max = 4096;
    c.templates = Some(Default::default());
    let day = 86_400_000_000_000i64;
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 3 * day;
    let batch = |from: i64, n: i64, at: i64| -> Vec<Record> {
        (from..from + n)
            .map(|i| rec(at + i, &format!("event id_{i} stored by worker {}", i % 3)))
            .collect()
    };
    let e = Engine::open(c.clone()).unwrap();
    // Day 1: two flushes, then compaction (its old files kept aside to put back,
    // as a crash between publishing and deleting leaves them).
    rt.block_on(e.ingest(&t, batch(0, 50, base), 0)).unwrap();
    rt.block_on(e.flush()).unwrap();
    rt.block_on(e.ingest(&t, batch(50, 50, base), 0)).unwrap();
    rt.block_on(e.flush()).unwrap();
    let before_compaction: Vec<(std::path::PathBuf, Vec<u8>)> = segment_paths(dir.path())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    rt.block_on(e.compact()).unwrap();
    // Day 2, and a tenant whose day retention removes.
    rt.block_on(e.ingest(&t, batch(100, 50, base + day), 0))
        .unwrap();
    let old = Tenant::new("old").unwrap();
    rt.block_on(e.ingest(&old, batch(1000, 20, base - 30 * day), 0))
        .unwrap();
    rt.block_on(e.flush()).unwrap();
    let rule = engine::engine::RetentionRule {
        tenant: "old".into(),
        stream: None,
        max_age: Some(std::time::Duration::from_secs(10 * 86_400)),
        max_bytes: None,
    };
    assert_eq!(e.retain(&[rule]).unwrap().local_segments, 1);
    // Records only in the WAL.
    rt.block_on(e.ingest(&t, batch(150, 30, base + day), 0))
        .unwrap();
    let ids_before = ids_in(&e);
    let templates_before = e.templates(&t).len();
    drop(e);
    assert_eq!(ids_before.len(), 180);
    assert!(
        verify(dir.path()).problems.is_empty(),
        "{:?}",
        verify(dir.path())
    );

    // The damage: the manifest gone, compaction leftovers back, one more copy of
    // a segment damaged.
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    for (p, b) in &before_compaction {
        std::fs::write(p, b).unwrap();
    }
    let junk = dir.path().join("segments/default/20000101");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("0000000099.seg"), b"not a segment at all").unwrap();
    let v = verify(dir.path());
    assert!(v.problems.iter().any(|p| p.contains("repair")), "{v:?}");
    assert!(Engine::open(c.clone()).is_err());

    let r = repair(&c, false).unwrap();
    assert_eq!(r.quarantined.len(), 3, "{r:?}");
    assert!(r.templates.is_some(), "{r:?}");
    assert!(
        verify(dir.path()).problems.is_empty(),
        "{:?}",
        verify(dir.path())
    );
    let e = Engine::open(c.clone()).unwrap();
    assert_eq!(ids_in(&e), ids_before);
    assert!(
        e.search(&old, &["stored"], 10).unwrap().is_empty(),
        "retention undone"
    );
    assert_eq!(e.templates(&t).len(), templates_before);
    // A sound manifest is not rebuilt unless asked.
    drop(e);
    assert!(repair(&c, false).is_err());
    repair(&c, true).unwrap();
    let e = Engine::open(c).unwrap();
    assert_eq!(ids_in(&e), ids_before);
}

fn segment_paths(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.map(|e| e.unwrap()) {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("segments"), &mut out);
    out.sort();
    out
}

/// Writes the seed inputs of the fuzz targets added with this file (kept in the
/// repository under `fuzz/seeds/`): real WAL payloads, a real manifest and a real
/// template state, from a small workload.
#[test]
#[ignore = "writes fuzz/seeds; run once when the formats change"]
fn write_fuzz_seeds() {
    let corpus = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let t = Tenant::default();
    let mut c = cfg(dir.path());
    c.templates = Some(Default::default());
    let e = Engine::open(c).unwrap();
    let mut r1 = rec(1_700_000_000_000_000_000, "user 42 logged in from 10.0.0.1");
    r1.level = Some("INFO".into());
    r1.fields = vec![
        ("status".into(), engine::model::Value::I64(200)),
        ("ratio".into(), engine::model::Value::F64(0.5)),
        ("ok".into(), engine::model::Value::Bool(true)),
        ("host".into(), engine::model::Value::Str("h1".into())),
    ];
    r1.stream = [("service".to_string(), "api".to_string())].into();
    let r2 = rec(1_700_000_000_000_000_007, "disk /dev/sda1 full");
    let w = corpus.join("walrec_decode");
    std::fs::create_dir_all(&w).unwrap();
    let batch = vec![r1.clone(), r2.clone()];
    std::fs::write(
        w.join("batch"),
        engine::walrec::encode_with(&t, &batch, None, &[]),
    )
    .unwrap();
    std::fs::write(
        w.join("producer"),
        engine::walrec::encode_with(&t, &batch, Some(("p-1", 7)), &[]),
    )
    .unwrap();
    let pos = engine::walrec::Position {
        key: "kafka/g/logs/0".into(),
        first: 10,
        next: 12,
    };
    std::fs::write(
        w.join("positioned"),
        engine::walrec::encode_with(&t, &batch, None, &[pos]),
    )
    .unwrap();
    let retract = engine::walrec::Retract {
        key: "kafka/g/logs/0".into(),
        next: 10,
        equals: vec![("kafka.partition".into(), engine::model::Value::I64(0))],
        field: "kafka.offset".into(),
        from: 10,
    };
    std::fs::write(
        w.join("retract"),
        engine::walrec::encode_retract(&t, &retract),
    )
    .unwrap();
    rt.block_on(e.ingest(&t, batch, 0)).unwrap();
    for i in 0..20 {
        let msg = format!("request {i} served in {} ms by worker {}", i * 7, i % 3);
        rt.block_on(e.ingest(&t, vec![rec(1_700_000_000_000_000_100 + i, &msg)], 0))
            .unwrap();
    }
    let wal = corpus.join("wal_decode");
    std::fs::create_dir_all(&wal).unwrap();
    let wal_file = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .unwrap();
    std::fs::copy(wal_file, wal.join("file")).unwrap();
    rt.block_on(e.flush()).unwrap();
    drop(e);
    let m = corpus.join("manifest_parse");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::copy(dir.path().join("MANIFEST"), m.join("manifest")).unwrap();
    let tpl = corpus.join("template_file");
    std::fs::create_dir_all(&tpl).unwrap();
    let tdir = dir.path().join("templates");
    let file = std::fs::read_dir(&tdir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(tpl.join("file"), &bytes).unwrap();
    let json = zstd::stream::decode_all(&bytes[12..]).unwrap();
    std::fs::write(tpl.join("state.json"), json).unwrap();
}
