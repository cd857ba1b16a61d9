//! `heimdall wal ...`: append lines durably, dump records, show what the WAL holds.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn reader_for(path: &Path) -> Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(io::stdin().lock())));
    }
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
}

pub(super) fn append(opts: &WalOpts, files: &[PathBuf], batch: usize) -> Result<()> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let wal = open(opts)?;
    let rt = runtime()?;
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut range: Option<(u64, u64)> = None;
    let mut last_progress = Instant::now();
    for path in files {
        let mut input = reader_for(path)?;
        let mut pending = Vec::with_capacity(batch);
        let mut line_no = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.len() > wal::WalConfig::default().record_bytes_max as usize {
                bail!(
                    "{}:{line_no}: line of {} bytes exceeds the record limit",
                    path.display(),
                    line.len()
                );
            }
            bytes += line.len() as u64;
            pending.push(Bytes::copy_from_slice(&line));
            if pending.len() == batch {
                let r = rt.block_on(wal.append_batch(std::mem::take(&mut pending)))?;
                range = Some((range.map_or(r.first, |(f, _)| f), r.last));
            }
            records += 1;
            if last_progress.elapsed().as_secs() >= 2 {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "heimdall: {records} records, {:.1} MB, {:.1} MB/s",
                    bytes as f64 / 1e6,
                    bytes as f64 / 1e6 / secs
                );
            }
        }
        if !pending.is_empty() {
            let r = rt.block_on(wal.append_batch(pending))?;
            range = Some((range.map_or(r.first, |(f, _)| f), r.last));
        }
    }
    wal.close()?;
    let secs = started.elapsed().as_secs_f64();
    match range {
        Some((first, last)) => println!(
            "appended {records} records ({:.1} MB) as LSN {first}..={last} in {secs:.2} s, durable",
            bytes as f64 / 1e6
        ),
        None => println!("no records appended (empty input)"),
    }
    Ok(())
}

pub(super) fn dump(opts: &WalOpts, from: Option<u64>, limit: Option<usize>) -> Result<()> {
    let wal = open(opts)?;
    let replay = match from {
        Some(lsn) => wal.replay(lsn)?,
        None => wal.replay_all()?,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for rec in replay.take(limit.unwrap_or(usize::MAX)) {
        let rec = rec?;
        out.write_all(rec.lsn.to_string().as_bytes())?;
        out.write_all(b"\t")?;
        out.write_all(&rec.payload)?;
        out.write_all(b"\n")?;
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
