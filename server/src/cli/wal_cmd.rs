//! `heimdall wal ...`: dump the record batches recovery would replay, show what the
//! WAL holds.

use std::io::{self, Write};

use anyhow::{Context, Result};
use wal::{BackendChoice, Wal, WalConfig};

use super::{BackendArg, WalOpts};

fn open(opts: &WalOpts) -> Result<Wal> {
    let backend = match opts.backend {
        BackendArg::Auto => BackendChoice::Auto,
        BackendArg::IoUring => BackendChoice::IoUring,
        BackendArg::Pwrite => BackendChoice::Pwrite,
    };
    let dir = opts.data_dir.join("wal");
    let wal = Wal::open(
        &dir,
        WalConfig {
            backend,
            ..WalConfig::default()
        },
    )
    .with_context(|| format!("opening the WAL in {}", dir.display()))?;
    let report = wal.recovery_report();
    if report.truncated_bytes > 0 {
        eprintln!(
            "heimdall: recovered WAL: cut {} bytes of torn tail ({})",
            report.truncated_bytes,
            report.torn_tail.as_deref().unwrap_or("zero padding")
        );
    }
    if let Some(reason) = wal.fallback_reason() {
        eprintln!("heimdall: io_uring unavailable, using pwrite: {reason}");
    }
    Ok(wal)
}

pub(super) fn dump(opts: &WalOpts, from: Option<u64>, limit: Option<usize>) -> Result<()> {
    let wal = open(opts)?;
    let replay = match from {
        Some(lsn) => wal.replay(lsn)?,
        None => wal.replay_all()?,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut printed = 0usize;
    'records: for rec in replay {
        let rec = rec?;
        let batch = engine::walrec::decode(&rec.payload)
            .with_context(|| format!("WAL record {} is not an engine record batch", rec.lsn))?;
        // Source positions and retractions (Kafka offsets) print as lines of their own.
        for p in &batch.positions {
            let line = serde_json::json!({
                "lsn": rec.lsn,
                "tenant": batch.tenant.as_str(),
                "position": {"source": p.key, "first": p.first, "next": p.next},
            });
            writeln!(out, "{line}")?;
        }
        if let Some(r) = &batch.retract {
            let line = serde_json::json!({
                "lsn": rec.lsn,
                "tenant": batch.tenant.as_str(),
                "retract": {"source": r.key, "next": r.next, "field": r.field, "from": r.from},
            });
            writeln!(out, "{line}")?;
        }
        for r in &batch.records {
            if limit.is_some_and(|l| printed >= l) {
                break 'records;
            }
            let line = serde_json::json!({
                "lsn": rec.lsn,
                "tenant": batch.tenant.as_str(),
                "record": super::data::record_json(r),
            });
            writeln!(out, "{line}")?;
            printed += 1;
        }
    }
    out.flush()?;
    Ok(())
}

pub(super) fn stats(opts: &WalOpts, json: bool) -> Result<()> {
    let wal = open(opts)?;
    let report = wal.recovery_report().clone();
    let mut on_disk = 0u64;
    for entry in std::fs::read_dir(wal.dir())? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(wal::format::FILE_SUFFIX)
        {
            on_disk += entry.metadata()?.len();
        }
    }
    let records = wal.written_lsn() - wal.oldest_lsn();
    if json {
        println!(
            "{{\"dir\":{:?},\"backend\":\"{}\",\"files\":{},\"records\":{},\"oldest_lsn\":{},\"next_lsn\":{},\"bytes_on_disk\":{},\"truncated_bytes\":{}}}",
            wal.dir().display().to_string(),
            wal.backend(),
            report.files.max(1),
            records,
            wal.oldest_lsn(),
            wal.written_lsn(),
            on_disk,
            report.truncated_bytes
        );
    } else {
        println!("dir            {}", wal.dir().display());
        println!("backend        {}", wal.backend());
        println!("records        {records}");
        println!("oldest LSN     {}", wal.oldest_lsn());
        println!("next LSN       {}", wal.written_lsn());
        println!("bytes on disk  {on_disk}");
    }
    Ok(())
}
