//! Injected write and fsync failures: the log stops, and nothing is acknowledged after
//! the failure (PostgreSQL's lesson: a failed fsync is never retried).

mod common;

use std::sync::Arc;

use common::*;
use wal::fault::{CrashMode, FaultInjector};
use wal::{BackendChoice, Wal, WalConfig, WalError};

fn run(backend: BackendChoice, faults: Arc<FaultInjector>, label: &str) {
    let rt = rt();
    let live = tempfile::tempdir().unwrap();
    // Without preallocation every write and sync belongs to the log itself, so the
    // n-th one is always on the append path.
    let cfg = WalConfig {
        file_bytes_max: 4096,
        preallocate: false,
        ..cfg(backend)
    };
    let wal = match Wal::open_with_faults(live.path(), cfg.clone(), Arc::clone(&faults)) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            // The failure hit start-up: open must report it.
            assert!(e.to_string().contains("injected"), "{label}: {e}");
            return;
        }
    };
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let wal = Arc::clone(&wal);
        tasks.push(rt.spawn(async move {
            let mut results = Vec::new();
            for i in 0..30u64 {
                results.push(wal.append(payload(t * 100 + i, 150)).await);
            }
            results
        }));
    }
    let results: Vec<_> = tasks
        .into_iter()
        .flat_map(|t| rt.block_on(t).unwrap())
        .collect();
    let failure = wal
        .failure()
        .unwrap_or_else(|| panic!("{label}: WAL should be failed"));
    assert!(
        failure.to_string().contains("injected"),
        "{label}: {failure}"
    );
    let durable = wal.durable_lsn();
    let mut acked: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    acked.sort_unstable();
    // Exactly the records made durable before the failure were acknowledged.
    assert_eq!(acked, (1..durable).collect::<Vec<_>>(), "{label}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, WalError::Failed { .. }), "{label}: {e}");
        }
    }
    // Later appends and syncs fail at once; the durable point never moves again.
    assert!(matches!(
        rt.block_on(wal.append(payload(9, 9))),
        Err(WalError::Failed { .. })
    ));
    assert!(rt.block_on(wal.sync()).is_err());
    assert_eq!(wal.durable_lsn(), durable);
    let wal = Arc::try_unwrap(wal).unwrap();
    assert!(wal.close().is_err(), "close reports the failure");
    // What a power loss keeps holds every acknowledged record.
    let image = tempfile::tempdir().unwrap();
    faults
        .crash_image(live.path(), image.path(), CrashMode::DropUnsynced, 1)
        .unwrap();
    let recovered = Wal::open(image.path(), cfg).unwrap();
    let got = replay_map(&recovered);
    for lsn in acked {
        assert!(
            got.contains_key(&lsn),
            "{label}: acknowledged lsn {lsn} lost"
        );
    }
}

#[test]
fn failed_fsync_stops_the_log() {
    for backend in BACKENDS {
        for n in 1..12 {
            run(
                backend,
                FaultInjector::fail_nth_sync(n),
                &format!("{backend:?} sync#{n}"),
            );
        }
    }
}

#[test]
fn failed_write_stops_the_log() {
    for backend in BACKENDS {
        for n in 1..12 {
            run(
                backend,
                FaultInjector::fail_nth_write(n),
                &format!("{backend:?} write#{n}"),
            );
        }
    }
}

/// A failure while zero-filling a spare file costs speed only: the log keeps going,
/// rotating into plain files.
#[test]
fn failed_preallocation_does_not_stop_the_log() {
    for backend in BACKENDS {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultInjector::fail_writes_to_spares();
        let wal = Wal::open_with_faults(
            dir.path(),
            WalConfig {
                file_bytes_max: 4096,
                ..cfg(backend)
            },
            Arc::clone(&faults),
        )
        .unwrap();
        for i in 0..100u64 {
            rt.block_on(wal.append(payload(i, 150))).unwrap();
        }
        assert!(wal.failure().is_none());
        assert_eq!(replay_map(&wal).len(), 100);
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files > 3, "the log rotated on");
    }
}
