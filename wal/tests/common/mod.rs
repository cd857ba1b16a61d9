//! Shared helpers for the WAL integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use wal::{BackendChoice, Lsn, Wal, WalConfig};

/// Both backends: every behavioural test runs on each.
pub const BACKENDS: [BackendChoice; 2] = [BackendChoice::Pwrite, BackendChoice::IoUring];

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn cfg(backend: BackendChoice) -> WalConfig {
    WalConfig {
        backend,
        ..WalConfig::default()
    }
}

/// A payload that can be recognised later: `tag` repeated to `len` bytes.
pub fn payload(tag: u64, len: usize) -> Bytes {
    let t = tag.to_le_bytes();
    Bytes::from((0..len).map(|i| t[i % 8] ^ (i as u8)).collect::<Vec<u8>>())
}

/// Replays everything and returns it as a map, failing the test on any error.
pub fn replay_map(wal: &Wal) -> BTreeMap<Lsn, Bytes> {
    wal.replay_all()
        .expect("replay")
        .map(|r| {
            let r = r.expect("record");
            (r.lsn, r.payload)
        })
        .collect()
}

pub fn open(dir: &Path, cfg: WalConfig) -> Wal {
    Wal::open(dir, cfg).expect("open WAL")
}
