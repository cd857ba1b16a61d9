//! Model-based test: random appends, rotations (tiny files), checkpoints, syncs and
//! reopens, checked after every step against a `BTreeMap` model of what must be there.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use wal::{BackendChoice, Lsn, Wal, WalConfig};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    Checkpoint(u8),
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(0usize..600, 1..6).prop_map(Op::Append),
        1 => any::<u8>().prop_map(Op::Checkpoint),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn check(wal: &Wal, model: &BTreeMap<Lsn, Bytes>, checkpoint: Lsn, next: Lsn) {
    assert_eq!(wal.written_lsn(), next);
    // Everything at or above the checkpoint is there, exactly.
    let from: BTreeMap<Lsn, Bytes> = wal
        .replay(checkpoint.min(next))
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.lsn, r.payload)
        })
        .collect();
    let expected: BTreeMap<Lsn, Bytes> = model
        .range(checkpoint..)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(from, expected);
    // Below it, whole files may have gone, but what remains is a correct suffix.
    let all = replay_map(wal);
    if let Some((first, _)) = all.iter().next() {
        assert!(*first <= checkpoint.max(1));
        for (k, v) in &all {
            assert_eq!(model.get(k), Some(v));
        }
    }
}

fn run(backend: BackendChoice, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = WalConfig {
        file_bytes_max: 1500,
        group_bytes_max: 2000,
        ..cfg(backend)
    };
    let mut wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    let mut model = BTreeMap::new();
    let mut next: Lsn = 1;
    let mut checkpoint: Lsn = 1;
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append(sizes) => {
                let batch: Vec<Bytes> = sizes
                    .iter()
                    .map(|s| payload(next * 31 + i as u64, *s))
                    .collect();
                let r = rt.block_on(wal.append_batch(batch.clone())).unwrap();
                assert_eq!(r.first, next);
                for p in batch {
                    model.insert(next, p);
                    next += 1;
                }
                assert_eq!(r.last, next - 1);
            }
            Op::Checkpoint(frac) => {
                let target = 1 + (next - 1) * frac as u64 / 255;
                if target > checkpoint {
                    checkpoint = target;
                    let stats = rt.block_on(wal.checkpoint(checkpoint)).unwrap();
                    assert!(stats.oldest_lsn <= checkpoint);
                }
            }
            Op::Sync => {
                assert_eq!(rt.block_on(wal.sync()).unwrap(), next);
                assert_eq!(wal.durable_lsn(), next);
            }
            Op::Reopen => {
                drop(wal);
                wal = Wal::open(dir.path(), cfg.clone()).unwrap();
                assert_eq!(wal.recovery_report().truncated_bytes, 0);
            }
        }
        check(&wal, &model, checkpoint, next);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn model_pwrite(ops in proptest::collection::vec(op(), 1..40)) {
        run(BackendChoice::Pwrite, ops);
    }

    #[test]
    fn model_io_uring(ops in proptest::collection::vec(op(), 1..40)) {
        run(BackendChoice::IoUring, ops);
    }
}
