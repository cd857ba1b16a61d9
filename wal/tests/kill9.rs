//! Process-level crash test: a child process (`wal-crash-child`) appends from several
//! tasks and prints every acknowledged LSN range; the parent SIGKILLs it at a random
//! moment, reopens the WAL, and checks that every acknowledged record is there, whole.
//! The same directory is reused across rounds, so recovery of a recovered log is
//! exercised too.
//!
//! Rounds per backend: 25 by default (50 in all); set `HEIMDALL_KILL9_ROUNDS` for the
//! long mode (e.g. 1000, see README).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use wal::{BackendChoice, Wal, WalConfig};

fn expected_payload(writer: u64, counter: u64, i: usize) -> Vec<u8> {
    let mut p = format!("{writer}:{counter}:{i}:").into_bytes();
    let fill = 50 + ((writer * 31 + counter * 7 + i as u64) % 400) as usize;
    p.extend((0..fill).map(|k| b'a' + ((k as u64 + counter) % 26) as u8));
    let crc = crc32fast::hash(&p);
    p.extend_from_slice(format!("#{crc:08x}").as_bytes());
    p
}

fn rounds() -> usize {
    std::env::var("HEIMDALL_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

fn run(backend: &str) {
    let bin = env!("CARGO_BIN_EXE_wal-crash-child");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed ^ backend.len() as u64);
    let mut total_acked = 0usize;
    let choice = if backend == "pwrite" {
        BackendChoice::Pwrite
    } else {
        BackendChoice::IoUring
    };
    for round in 0..rounds() {
        let mut child = Command::new(bin)
            .arg(dir.path())
            .arg(backend)
            .arg("8")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..250)));
        // SIGKILL: no destructor, no final sync.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let lines = reader.join().unwrap();
        assert!(
            lines.first().is_some_and(|l| l.starts_with("OPEN")) || lines.is_empty(),
            "round {round}: child did not open: {lines:?} {status:?}"
        );
        let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for line in &lines {
            let f: Vec<&str> = line.split(' ').collect();
            if f.first() == Some(&"ACK") && f.len() == 5 {
                let (first, last): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
                let (w, c): (u64, u64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
                for (i, lsn) in (first..=last).enumerate() {
                    acked.insert(lsn, expected_payload(w, c, i));
                }
            }
        }
        total_acked += acked.len();
        let wal = Wal::open(
            dir.path(),
            WalConfig {
                backend: choice,
                ..WalConfig::default()
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        let mut got = BTreeMap::new();
        for r in wal.replay_all().unwrap() {
            let r = r.unwrap_or_else(|e| panic!("round {round}: replay: {e}"));
            // Every record present is whole: its self-checksum holds.
            let text = std::str::from_utf8(&r.payload).unwrap();
            let (body, crc) = text.rsplit_once('#').unwrap();
            assert_eq!(
                format!("{:08x}", crc32fast::hash(body.as_bytes())),
                crc,
                "round {round}"
            );
            got.insert(r.lsn, r.payload.to_vec());
        }
        for (lsn, p) in &acked {
            assert_eq!(
                got.get(lsn),
                Some(p),
                "round {round}: acknowledged lsn {lsn} lost"
            );
        }
        // Keep the directory small between rounds.
        let written = wal.written_lsn();
        let rt = common::rt();
        rt.block_on(wal.checkpoint(written.saturating_sub(2000)))
            .unwrap();
    }
    assert!(total_acked > 0, "the child never acknowledged anything");
}

#[test]
fn kill9_pwrite() {
    run("pwrite");
}

#[test]
fn kill9_io_uring() {
    run("io_uring");
}
