//! Crash consistency through the fault-injecting file layer, on both backends.
//!
//! For every k, the machine "loses power" after the k-th file operation of a workload
//! with concurrent appenders, rotations and a checkpoint. From the durability the
//! injector tracked, a crash image is built three ways (unsynced data dropped, a random
//! prefix of it kept, the last write torn); recovery of each image must yield exactly
//! the acknowledged records plus possibly whole unacknowledged ones, and must leave a
//! log that accepts appends again.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use wal::fault::{CrashMode, FaultInjector, OpKind};
use wal::{BackendChoice, Lsn, Wal, WalConfig};

struct Outcome {
    acked: BTreeMap<Lsn, Bytes>,
    submitted: HashSet<Bytes>,
    checkpoint: Option<Lsn>,
    crashed: bool,
}

fn crash_cfg(backend: BackendChoice) -> WalConfig {
    WalConfig {
        file_bytes_max: 2048,
        group_bytes_max: 1024,
        ..cfg(backend)
    }
}

fn workload(rt: &tokio::runtime::Runtime, wal: Arc<Wal>, faults: &FaultInjector) -> Outcome {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let submitted = Arc::new(Mutex::new(HashSet::new()));
    let checkpoint = Arc::new(Mutex::new(None));
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (wal, acked, submitted, checkpoint) = (
            Arc::clone(&wal),
            Arc::clone(&acked),
            Arc::clone(&submitted),
            Arc::clone(&checkpoint),
        );
        tasks.push(rt.spawn(async move {
            for i in 0..8u64 {
                let n = 1 + ((t + i) % 3) as usize;
                let batch: Vec<Bytes> = (0..n)
                    .map(|j| {
                        payload(
                            t << 32 | i << 8 | j as u64,
                            40 + ((t * 13 + i * 7 + j as u64) % 90) as usize,
                        )
                    })
                    .collect();
                submitted.lock().unwrap().extend(batch.iter().cloned());
                match wal.append_batch(batch.clone()).await {
                    Ok(r) => {
                        let mut a = acked.lock().unwrap();
                        for (k, p) in batch.into_iter().enumerate() {
                            a.insert(r.first + k as u64, p);
                        }
                    }
                    Err(_) => return,
                }
                if t == 0 && i % 2 == 1 {
                    let lsn = wal.written_lsn().saturating_sub(3).max(1);
                    // Once asked for, a checkpoint may take effect even if the call fails.
                    *checkpoint.lock().unwrap() = Some(lsn);
                    let _ = wal.checkpoint(lsn).await;
                }
            }
        }));
    }
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let submitted = submitted.lock().unwrap().clone();
    let checkpoint = *checkpoint.lock().unwrap();
    Outcome {
        acked,
        submitted,
        checkpoint,
        crashed: faults.crashed(),
    }
}

fn verify(label: &str, recovered: &Wal, out: &Outcome) {
    let got = replay_map(recovered);
    for (lsn, p) in &out.acked {
        if out.checkpoint.is_some_and(|c| *lsn < c) {
            if let Some(g) = got.get(lsn) {
                assert_eq!(g, p, "{label}: lsn {lsn} below checkpoint differs");
            }
            continue;
        }
        assert_eq!(
            got.get(lsn),
            Some(p),
            "{label}: acknowledged lsn {lsn} lost or changed"
        );
    }
    for (lsn, p) in &got {
        assert!(
            out.submitted.contains(p),
            "{label}: lsn {lsn} holds bytes that were never appended"
        );
    }
}

fn run_matrix(backend: BackendChoice) {
    let rt = rt();
    let mut k = 0;
    let mut crashes = 0;
    loop {
        k += 1;
        let live = tempfile::tempdir().unwrap();
        let faults = FaultInjector::crash_after(k);
        let out = match Wal::open_with_faults(live.path(), crash_cfg(backend), Arc::clone(&faults))
        {
            Ok(wal) => {
                let wal = Arc::new(wal);
                let out = workload(&rt, Arc::clone(&wal), &faults);
                drop(Arc::try_unwrap(wal).expect("sole owner"));
                out
            }
            // The crash hit start-up (creating the first file): nothing was acknowledged.
            Err(_) => {
                assert!(faults.crashed(), "open failed without a crash");
                Outcome {
                    acked: BTreeMap::new(),
                    submitted: HashSet::new(),
                    checkpoint: None,
                    crashed: true,
                }
            }
        };
        if !out.crashed {
            // k is past the workload's last operation: every crash point was covered.
            // The workload must have exercised rotation into spares and recycling.
            let log = faults.op_log();
            let renames = log.iter().filter(|o| **o == OpKind::Rename).count();
            assert!(
                renames >= 4,
                "workload did too little recycling: {renames} renames"
            );
            break;
        }
        crashes += 1;
        for (m, mode) in [
            CrashMode::DropUnsynced,
            CrashMode::KeepRandomPrefix,
            CrashMode::TornLastWrite,
        ]
        .into_iter()
        .enumerate()
        {
            let image = tempfile::tempdir().unwrap();
            faults
                .crash_image(live.path(), image.path(), mode, k * 3 + m as u64)
                .unwrap();
            let label = format!("{backend:?} k={k} {mode:?}");
            let recovered = Wal::open(image.path(), crash_cfg(backend))
                .unwrap_or_else(|e| panic!("{label}: recovery failed: {e}"));
            verify(&label, &recovered, &out);
            // The recovered log must take appends and keep them.
            let lsn = rt
                .block_on(recovered.append(payload(u64::MAX, 33)))
                .unwrap();
            drop(recovered);
            let again = Wal::open(image.path(), crash_cfg(backend)).unwrap();
            assert_eq!(
                replay_map(&again).get(&lsn),
                Some(&payload(u64::MAX, 33)),
                "{label}"
            );
        }
    }
    assert!(
        crashes > 40,
        "workload too small to be meaningful: {crashes} crash points"
    );
}

#[test]
fn crash_at_every_operation_pwrite() {
    run_matrix(BackendChoice::Pwrite);
}

#[test]
fn crash_at_every_operation_io_uring() {
    run_matrix(BackendChoice::IoUring);
}
