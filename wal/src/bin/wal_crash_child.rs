//! Child process for the kill -9 test (`wal/tests/kill9.rs`).
//!
//! Opens the WAL in `DIR` with the given backend and appends forever from several
//! concurrent tasks. Each payload is self-describing (`writer:counter:` followed by a
//! deterministic filler and its own checksum), so the parent can tell a whole record
//! from a damaged one. After each acknowledged append it prints
//! `ACK <first_lsn> <last_lsn> <writer> <counter>` on stdout and flushes, so every line
//! the parent reads is a promise the WAL made.
//!
//! Usage: `wal-crash-child DIR auto|pwrite|io_uring [appenders] [--deny-io-uring]
//! [--probe-only]`. `--deny-io-uring` first forbids io_uring with a seccomp filter;
//! `--probe-only` prints `BACKEND <name> <fallback reason>` after opening and exits.

mod deny_io_uring;

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use wal::{BackendChoice, Wal, WalConfig};

fn payload(writer: u64, counter: u64, records: usize) -> Vec<Bytes> {
    (0..records)
        .map(|i| {
            let mut p = format!("{writer}:{counter}:{i}:").into_bytes();
            let fill = 50 + ((writer * 31 + counter * 7 + i as u64) % 400) as usize;
            p.extend((0..fill).map(|k| b'a' + ((k as u64 + counter) % 26) as u8));
            let crc = crc32fast::hash(&p);
            p.extend_from_slice(format!("#{crc:08x}").as_bytes());
            Bytes::from(p)
        })
        .collect()
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| all.iter().any(|a| a == f);
    let mut args = all.iter().filter(|a| !a.starts_with("--")).cloned();
    let (Some(dir), Some(backend)) = (args.next(), args.next()) else {
        eprintln!("usage: wal-crash-child DIR auto|pwrite|io_uring [appenders] [--deny-io-uring] [--probe-only]");
        std::process::exit(2);
    };
    let appenders: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    if flag("--deny-io-uring") {
        if let Err(e) = deny_io_uring::install() {
            eprintln!("seccomp: {e}");
            std::process::exit(3);
        }
    }
    let backend = match backend.as_str() {
        "auto" => BackendChoice::Auto,
        "pwrite" => BackendChoice::Pwrite,
        "io_uring" => BackendChoice::IoUring,
        other => {
            eprintln!("unknown backend {other}");
            std::process::exit(2);
        }
    };
    let cfg = WalConfig {
        backend,
        file_bytes_max: 256 << 10,
        ..WalConfig::default()
    };
    let wal = match Wal::open(&dir, cfg) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    if flag("--probe-only") {
        println!(
            "BACKEND {} {}",
            wal.backend(),
            wal.fallback_reason().unwrap_or("-")
        );
        return;
    }
    println!("OPEN {}", wal.written_lsn());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for w in 0..appenders {
            let wal = Arc::clone(&wal);
            tasks.push(tokio::spawn(async move {
                for counter in 0u64.. {
                    let records = 1 + ((w + counter) % 5) as usize;
                    match wal.append_batch(payload(w, counter, records)).await {
                        Ok(r) => {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "ACK {} {} {w} {counter}", r.first, r.last);
                            let _ = out.flush();
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            std::process::exit(1);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}
