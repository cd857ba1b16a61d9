//! Basic behaviour on both backends: append, replay, reopen, limits.

mod common;

use std::sync::Arc;

use common::*;
use wal::{Backend, BackendChoice, Backpressure, SyncPolicy, Wal, WalConfig, WalError};

#[test]
fn append_replay_reopen_on_both_backends() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let wal = open(dir.path(), cfg(backend));
        assert_eq!(
            wal.backend(),
            if backend == BackendChoice::IoUring {
                Backend::IoUring
            } else {
                Backend::Pwrite
            }
        );
        let r = rt
            .block_on(wal.append_batch(vec![payload(1, 10), payload(2, 0), payload(3, 300)]))
            .unwrap();
        assert_eq!((r.first, r.last), (1, 3));
        let lsn = rt.block_on(wal.append(payload(4, 5))).unwrap();
        assert_eq!(lsn, 4);
        assert_eq!(wal.durable_lsn(), 5);
        let got = replay_map(&wal);
        assert_eq!(got.len(), 4);
        assert_eq!(got[&3], payload(3, 300));
        drop(wal);
        let wal = open(dir.path(), cfg(backend));
        assert_eq!(wal.recovery_report().records, 4);
        assert_eq!(wal.written_lsn(), 5);
        assert_eq!(rt.block_on(wal.append(payload(5, 1))).unwrap(), 5);
        let got = replay_map(&wal);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(wal.replay(4).unwrap().count(), 2);
    }
}

#[test]
fn concurrent_appenders_get_distinct_contiguous_lsns() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let wal = Arc::new(open(
            dir.path(),
            WalConfig {
                file_bytes_max: 64 << 10,
                ..cfg(backend)
            },
        ));
        let mut handles = Vec::new();
        for t in 0..16u64 {
            let wal = Arc::clone(&wal);
            handles.push(rt.spawn(async move {
                let mut mine = Vec::new();
                for i in 0..50u64 {
                    let p = payload(t * 1000 + i, 100 + (i as usize % 7) * 30);
                    let lsn = wal.append(p.clone()).await.unwrap();
                    mine.push((lsn, p));
                }
                mine
            }));
        }
        let mut acked = Vec::new();
        for h in handles {
            acked.extend(rt.block_on(h).unwrap());
        }
        acked.sort_by_key(|(l, _)| *l);
        let lsns: Vec<u64> = acked.iter().map(|(l, _)| *l).collect();
        assert_eq!(lsns, (1..=800).collect::<Vec<_>>());
        let got = replay_map(&wal);
        for (lsn, p) in &acked {
            assert_eq!(&got[lsn], p, "lsn {lsn}");
        }
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() > 3,
            "small file_bytes_max must have rotated"
        );
    }
}

#[test]
fn record_over_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let wal = open(
        dir.path(),
        WalConfig {
            record_bytes_max: 1000,
            ..cfg(BackendChoice::Pwrite)
        },
    );
    let err = rt.block_on(wal.append(payload(1, 1001))).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::RecordTooLarge {
                len: 1001,
                max: 1000
            }
        ),
        "{err}"
    );
    assert_eq!(rt.block_on(wal.append(payload(1, 1000))).unwrap(), 1);
}

#[test]
fn fail_fast_backpressure_reports_queue_full() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let wal = Arc::new(open(
        dir.path(),
        WalConfig {
            record_bytes_max: 4096,
            inflight_bytes_max: 8192,
            backpressure: Backpressure::FailFast,
            ..cfg(BackendChoice::Pwrite)
        },
    ));
    // Many concurrent appends of 4 KiB into an 8 KiB budget: some must be refused,
    // every accepted one must be durable and replayable.
    let mut handles = Vec::new();
    for i in 0..64u64 {
        let wal = Arc::clone(&wal);
        handles.push(rt.spawn(async move { wal.append(payload(i, 4000)).await }));
    }
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| rt.block_on(h).unwrap())
        .collect();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(WalError::QueueFull { .. })))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(full + ok, 64, "{results:?}");
    assert!(full > 0, "an 8 KiB budget cannot hold 64 x 4 KiB at once");
    assert_eq!(replay_map(&wal).len(), ok);
}

#[test]
fn second_open_of_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _wal = open(dir.path(), cfg(BackendChoice::Pwrite));
    let err = Wal::open(dir.path(), cfg(BackendChoice::Pwrite)).unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[test]
fn interval_and_never_policies_still_persist_on_close() {
    for sync in [
        SyncPolicy::Interval(std::time::Duration::from_millis(5)),
        SyncPolicy::Never,
    ] {
        for backend in BACKENDS {
            let dir = tempfile::tempdir().unwrap();
            let rt = rt();
            let wal = open(
                dir.path(),
                WalConfig {
                    sync,
                    ..cfg(backend)
                },
            );
            for i in 0..20 {
                rt.block_on(wal.append(payload(i, 64))).unwrap();
            }
            if let SyncPolicy::Interval(_) = sync {
                std::thread::sleep(std::time::Duration::from_millis(50));
                assert_eq!(wal.durable_lsn(), 21, "interval sync must have run");
            }
            wal.close().unwrap();
            let wal = open(dir.path(), cfg(backend));
            assert_eq!(replay_map(&wal).len(), 20);
        }
    }
}

#[test]
fn checkpoint_removes_only_whole_files_below_the_lsn() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let wal = open(
            dir.path(),
            WalConfig {
                file_bytes_max: 4096,
                ..cfg(backend)
            },
        );
        for i in 0..200 {
            rt.block_on(wal.append(payload(i, 100))).unwrap();
        }
        let before = wal.recovery_report().files;
        let _ = before;
        let stats = rt.block_on(wal.checkpoint(120)).unwrap();
        assert!(stats.files_removed > 0);
        assert!(stats.oldest_lsn <= 120);
        // Everything from the checkpoint on is still there.
        let from: Vec<u64> = wal.replay(120).unwrap().map(|r| r.unwrap().lsn).collect();
        assert_eq!(from, (120..=200).collect::<Vec<_>>());
        let err = wal.replay(1).unwrap_err();
        assert!(
            matches!(err, WalError::Truncated { requested: 1, .. }),
            "{err}"
        );
        drop(wal);
        let wal = open(dir.path(), cfg(backend));
        assert_eq!(wal.oldest_lsn(), stats.oldest_lsn);
        assert_eq!(wal.written_lsn(), 201);
    }
}

#[test]
fn wait_backpressure_bounds_inflight_bytes_and_loses_nothing() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let wal = Arc::new(open(
            dir.path(),
            WalConfig {
                record_bytes_max: 4096,
                inflight_bytes_max: 8192,
                backpressure: Backpressure::Wait,
                ..cfg(backend)
            },
        ));
        let mut handles = Vec::new();
        for i in 0..64u64 {
            let wal = Arc::clone(&wal);
            handles.push(rt.spawn(async move { wal.append(payload(i, 4000)).await }));
        }
        for h in handles {
            rt.block_on(h).unwrap().unwrap();
        }
        let st = wal.stats();
        // No write group can exceed what the budget lets in at once.
        assert!(st.bytes / st.groups <= 8192 + 16, "{st:?}");
        assert_eq!(replay_map(&wal).len(), 64);
    }
}

#[test]
fn files_rotate_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let wal = open(
        dir.path(),
        WalConfig {
            file_age_max: Some(std::time::Duration::from_millis(30)),
            preallocate: false,
            ..cfg(BackendChoice::Pwrite)
        },
    );
    rt.block_on(wal.append(payload(1, 10))).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    rt.block_on(wal.append(payload(2, 10))).unwrap();
    let wal_files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count();
    assert_eq!(wal_files, 2);
    assert_eq!(replay_map(&wal).len(), 2);
}

#[test]
fn checkpoint_of_everything_leaves_an_empty_log() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let wal = open(
            dir.path(),
            WalConfig {
                preallocate: false,
                recycle_files_max: 0,
                ..cfg(backend)
            },
        );
        for i in 0..10 {
            rt.block_on(wal.append(payload(i, 100))).unwrap();
        }
        let stats = rt.block_on(wal.checkpoint(wal.written_lsn())).unwrap();
        assert_eq!(stats.files_removed, 1);
        assert_eq!(stats.oldest_lsn, 11);
        drop(wal);
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".wal"))
            .collect();
        assert_eq!(files, vec![wal::format::file_name(11)]);
        let wal = open(dir.path(), cfg(backend));
        assert_eq!(wal.written_lsn(), 11);
        assert_eq!(replay_map(&wal).len(), 0);
        assert_eq!(rt.block_on(wal.append(payload(1, 1))).unwrap(), 11);
    }
}
