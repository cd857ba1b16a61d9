//! The embedded data commands: `heimdall ingest`, `search`, `stats`, over a data
//! directory with no server.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use engine::engine::{Engine, EngineConfig};
use engine::ingest::{line_text, parse_json, parse_raw, IngestContext, LineError};
use engine::model::{Labels, Record, Tenant, Value};

use super::{FormatArg, OnError};

/// Records per engine batch, and the byte bound that closes a batch early.
const BATCH_RECORDS: usize = 1000;
const BATCH_BYTES: usize = 8 << 20;

/// The `--config` file of this invocation, if any.
static CONFIG_FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

pub(super) fn set_config_file(p: Option<PathBuf>) {
    let _ = CONFIG_FILE.set(p);
}

/// The `--config` file's settings (`[object_store]`, `[templates]`), for
/// `data_dir`; the defaults without one.
fn file_config(data_dir: &Path) -> Result<crate::serve::Config> {
    let Some(file) = CONFIG_FILE.get().cloned().flatten() else {
        return Ok(crate::serve::Config::default());
    };
    let over = crate::serve::Overrides {
        data_dir: Some(data_dir.to_path_buf()),
        ..Default::default()
    };
    crate::serve::Config::load(Some(&file), &over)
}

fn config(data_dir: &Path) -> Result<EngineConfig> {
    let mut cfg = EngineConfig::new(data_dir);
    let file = file_config(data_dir)?;
    cfg.tier = file.tier();
    cfg.templates = file.templates.miner();
    // A one-shot command gains nothing from preallocated or recycled WAL files, and
    // they would sit in the data directory afterwards.
    cfg.wal.preallocate = false;
    cfg.wal.recycle_files_max = 0;
    Ok(cfg)
}

/// Opens an existing data directory (every command but `ingest`, which creates
/// one): a path holding no Heimdall data is refused, naming it, instead of being
/// made into an empty data directory that answers nothing.
pub(super) fn open(data_dir: &Path) -> Result<Engine> {
    let manifest = data_dir.join(engine::manifest::MANIFEST_FILE);
    if !manifest.exists() && !data_dir.join("wal").exists() {
        if data_dir.exists() {
            bail!(
                "{} holds no Heimdall data (no MANIFEST, no wal/): check --data-dir (`heimdall ingest` creates a data directory)",
                data_dir.display()
            );
        }
        bail!(
            "no data directory at {}: check --data-dir (`heimdall ingest` creates one)",
            data_dir.display()
        );
    }
    Engine::open(config(data_dir)?)
        .with_context(|| format!("opening the data directory {}", data_dir.display()))
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Parses `key=value,key=value`.
pub(crate) fn parse_stream(s: &str) -> Result<Labels> {
    let mut labels = Labels::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--stream expects key=value pairs separated by commas, got {pair:?}");
        };
        if k.is_empty() {
            bail!("--stream label name is empty in {pair:?}");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

pub(super) struct Progress {
    started: Instant,
    last: Instant,
    records: u64,
    bytes: u64,
    skipped: u64,
}

impl Progress {
    pub(super) fn new() -> Progress {
        Progress {
            started: Instant::now(),
            last: Instant::now(),
            records: 0,
            bytes: 0,
            skipped: 0,
        }
    }

    /// Counts `n` more records stored.
    pub(super) fn stored(&mut self, n: u64) {
        self.records += n;
    }

    /// The closing line: what was stored, how fast.
    pub(super) fn summary(&self) {
        let secs = self.started.elapsed().as_secs_f64();
        println!(
            "ingested {} records ({:.1} MB) in {secs:.2} s, {:.1} MB/s{}",
            self.records,
            self.bytes as f64 / 1e6,
            self.bytes as f64 / 1e6 / secs.max(1e-9),
            if self.skipped > 0 {
                format!("; skipped {} bad lines", self.skipped)
            } else {
                String::new()
            }
        );
    }

    pub(super) fn tick(&mut self) {
        if self.last.elapsed().as_secs() >= 2 {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "heimdall: {} records, {:.1} MB, {:.1} MB/s",
                self.records,
                self.bytes as f64 / 1e6,
                self.bytes as f64 / 1e6 / secs
            );
        }
    }
}

pub(crate) struct IngestArgs<'a> {
    pub(super) data_dir: &'a Path,
    pub(super) files: &'a [PathBuf],
    pub(super) format: FormatArg,
    pub(super) tenant: &'a str,
    pub(super) stream: &'a str,
    pub(super) on_error: OnError,
}

pub(super) fn ingest(a: IngestArgs<'_>) -> Result<()> {
    let tenant = Tenant::new(a.tenant).context("--tenant")?;
    let ctx = IngestContext {
        stream: parse_stream(a.stream)?,
        now_ns: now_ns(),
    };
    let mut cfg = config(a.data_dir)?;
    // Up to three memtables are alive at once (one filling, two being written out),
    // so each is smaller than the server's default.
    cfg.memtable_bytes_max = 128 << 20;
    let in_flight = cfg.flushes_in_flight.max(1);
    let engine = Arc::new(
        Engine::open(cfg)
            .with_context(|| format!("opening the data directory {}", a.data_dir.display()))?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut p = Progress::new();
    // The reader parses while a writer thread stores (WAL append, template mining,
    // memtable) the batch before: the two overlap on two cores.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<Record>, u64)>(4);
    let (outcome, written) = std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("heimdall-ingest".into())
            .spawn_scoped(scope, || {
                store_batches(&rt, &engine, &tenant, in_flight, rx)
            });
        let writer = match writer {
            Ok(w) => w,
            Err(e) => return (Err(e.into()), Ok(std::time::Duration::ZERO)),
        };
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH_RECORDS);
        let (mut batch_bytes, mut batch_raw) = (0usize, 0u64);
        let outcome = read_records(&a, &ctx, &mut p, |rec, n, p| {
            batch_bytes += engine::memtable::record_bytes(&rec);
            batch_raw += n;
            batch.push(rec);
            if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                p.records += batch.len() as u64;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_RECORDS));
                if tx.send((full, batch_raw)).is_err() {
                    bail!("storing stopped");
                }
                (batch_bytes, batch_raw) = (0, 0);
                p.tick();
            }
            Ok(())
        });
        // Whatever happened, store what was read before it.
        if !batch.is_empty() {
            p.records += batch.len() as u64;
            let _ = tx.send((batch, batch_raw));
        }
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (outcome, written)
    });
    // A failed store explains a stopped reader.
    let waited = written?;
    let engine =
        Arc::try_unwrap(engine).map_err(|_| anyhow::anyhow!("engine still shared at close"))?;
    rt.block_on(engine.close())?;
    tracing::debug!(
        waited_for_flush_seconds = waited.as_secs_f64(),
        "ingest finished"
    );
    p.summary();
    outcome
}

/// The writer of [`ingest`]: stores each batch, starting a flush (on the runtime,
/// at most `in_flight` at once) whenever the memtable is full; returns once every
/// batch is stored and every flush it started is done, with the time it waited
/// for flushes.
fn store_batches(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<Engine>,
    tenant: &Tenant,
    in_flight: usize,
    batches: std::sync::mpsc::Receiver<(Vec<Record>, u64)>,
) -> Result<std::time::Duration> {
    // Flushes in flight, oldest first.
    let mut flushing: std::collections::VecDeque<
        tokio::task::JoinHandle<engine::engine::Result<engine::engine::FlushStats>>,
    > = Default::default();
    // A flush was started and has not swapped the memtable out yet.
    let mut swap_pending = false;
    // Time spent waiting for a flush to finish (flushing is the limit).
    let mut waited = std::time::Duration::ZERO;
    for (batch, raw) in batches {
        rt.block_on(engine.ingest(tenant, batch, raw))?;
        let wants = engine.wants_flush();
        swap_pending &= wants;
        if wants && !swap_pending {
            // Write segments on the other core while this one keeps storing;
            // wait only when the most flushes are in flight.
            while flushing.len() >= in_flight {
                if let Some(h) = flushing.pop_front() {
                    let waiting = Instant::now();
                    rt.block_on(h)??;
                    waited += waiting.elapsed();
                }
            }
            let e = Arc::clone(engine);
            flushing.push_back(rt.spawn(async move { e.flush().await }));
            swap_pending = true;
        }
    }
    for h in flushing {
        rt.block_on(h)??;
    }
    Ok(waited)
}

/// Reads every line of the input files (`-`: standard input), parses it in the
/// chosen format and hands each record to `sink` with its input size in bytes. A bad
/// line is reported with its file and number, then skipped or ends the run
/// (`--on-error`).
pub(super) fn read_records(
    a: &IngestArgs<'_>,
    ctx: &IngestContext,
    p: &mut Progress,
    mut sink: impl FnMut(Record, u64, &mut Progress) -> Result<()>,
) -> Result<()> {
    for path in a.files {
        let mut input: Box<dyn BufRead> = if path == Path::new("-") {
            Box::new(BufReader::new(io::stdin().lock()))
        } else {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Box::new(BufReader::with_capacity(1 << 20, f))
        };
        let mut line = Vec::new();
        let mut line_no = 0u64;
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            p.bytes += n as u64;
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let parsed = line_text(&line).and_then(|text| match a.format {
                FormatArg::Raw => Ok(parse_raw(text, ctx)),
                FormatArg::Jsonl => parse_json(text, ctx),
            });
            let rec = match parsed {
                Ok(r) => r,
                Err(e) => {
                    report(path, line_no, &e);
                    match a.on_error {
                        OnError::Skip => {
                            p.skipped += 1;
                            continue;
                        }
                        OnError::Abort => bail!(
                            "{}:{line_no}: {e} (stopped; every earlier line is stored; --on-error skip goes on past bad lines)",
                            path.display()
                        ),
                    }
                }
            };
            sink(rec, n as u64, p)?;
        }
    }
    Ok(())
}

fn report(path: &Path, line: u64, e: &LineError) {
    eprintln!("heimdall: {}:{line}: {e}", path.display());
}

pub(super) fn record_json(r: &Record) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "_time".into(),
        engine::ingest::time::format_rfc3339(r.time_ns).into(),
    );
    m.insert("_msg".into(), r.msg.clone().into());
    if !r.stream.is_empty() {
        m.insert(
            "_stream".into(),
            serde_json::to_value(&r.stream).unwrap_or_default(),
        );
    }
    if let Some(l) = &r.level {
        m.insert("level".into(), l.clone().into());
    }
    for (k, v) in r.fields.iter().filter(|(k, _)| !query::table::hidden(k)) {
        let v = match v {
            Value::Str(s) => serde_json::Value::from(s.clone()),
            Value::I64(i) => (*i).into(),
            Value::F64(x) => (*x).into(),
            Value::Bool(b) => (*b).into(),
        };
        m.insert(k.clone(), v);
    }
    serde_json::Value::Object(m)
}

pub(super) fn search(
    data_dir: &Path,
    tenant: &str,
    limit: usize,
    jsonl: bool,
    words: &[String],
) -> Result<()> {
    let tenant = Tenant::new(tenant).context("--tenant")?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    for w in &words {
        let mut toks = engine::token::tokens(w);
        if toks.next() != Some(*w) || toks.next().is_some() {
            bail!("{w:?} is not a single word: a word is a run of letters, digits and '_' (phrases come with the query language)");
        }
    }
    let engine = open(data_dir)?;
    let hits = engine.search(&tenant, &words, limit)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for r in &hits {
        if jsonl {
            writeln!(out, "{}", record_json(r))?;
        } else {
            writeln!(
                out,
                "{}\t{}",
                engine::ingest::time::format_rfc3339(r.time_ns),
                r.msg
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

pub(super) fn stats(data_dir: &Path, json: bool) -> Result<()> {
    let engine = open(data_dir)?;
    let s = engine.stats()?;
    let on_disk = s.column_bytes + s.index_bytes + s.metadata_bytes + s.wal_bytes;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "records": s.records,
                "segments": s.segments,
                "raw_bytes": s.raw_bytes,
                "bytes_on_disk": on_disk,
                "column_bytes": s.column_bytes,
                "column_bytes_by_name": s.column_bytes_by_name,
                "index_bytes": s.index_bytes,
                "metadata_bytes": s.metadata_bytes,
                "wal_bytes": s.wal_bytes,
                "templates": engine.templates_held(),
            })
        );
    } else {
        println!("records          {}", s.records);
        println!("segments         {}", s.segments);
        println!("raw bytes        {}", s.raw_bytes);
        println!("bytes on disk    {on_disk}");
        println!("  column data    {}", s.column_bytes);
        for (name, bytes) in &s.column_bytes_by_name {
            println!("    {name:<12} {bytes}");
        }
        println!("  index          {}", s.index_bytes);
        println!("  metadata       {}", s.metadata_bytes);
        println!("  WAL            {}", s.wal_bytes);
        println!("templates        {}", engine.templates_held());
    }
    Ok(())
}

pub(super) fn compact(data_dir: &Path) -> Result<()> {
    let engine = open(data_dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let s = rt.block_on(engine.compact())?;
    rt.block_on(engine.close())?;
    println!(
        "compacted {} segments into {} in {:.2} s",
        s.merged,
        s.written,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `heimdall verify`: checks a data directory without changing it.
pub(super) fn verify(data_dir: &Path, json: bool) -> Result<()> {
    let r = engine::engine::repair::verify(data_dir);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "local_segments": r.local_segments,
                "offloaded_segments": r.offloaded_segments,
                "rows": r.rows,
                "wal_files": r.wal_files,
                "wal_records": r.wal_records,
                "orphans": r.orphans,
                "problems": r.problems,
            })
        );
    } else {
        println!(
            "{} local segments ({} rows) and {} offloaded listed; WAL: {} files, {} records; {} unlisted segment files",
            r.local_segments,
            r.rows,
            r.offloaded_segments,
            r.wal_files,
            r.wal_records,
            r.orphans.len()
        );
        for p in &r.problems {
            println!("problem: {p}");
        }
    }
    if !r.problems.is_empty() {
        bail!("{} problem(s) in {}", r.problems.len(), data_dir.display());
    }
    Ok(())
}

/// `heimdall repair`: rebuilds the manifest from the segments and the WAL.
pub(super) fn repair(data_dir: &Path, force: bool) -> Result<()> {
    let r = engine::engine::repair::repair(&config(data_dir)?, force)
        .with_context(|| format!("repairing {}", data_dir.display()))?;
    println!(
        "rebuilt {}: {} local segments, {} offloaded; checkpoint at WAL LSN {} (WAL {}..{}, {} batches found in segments); templates: {}",
        data_dir.join(engine::manifest::MANIFEST_FILE).display(),
        r.segments,
        r.offloaded,
        r.checkpoint,
        r.wal.0,
        r.wal.1,
        r.wal_flushed,
        r.templates.as_deref().unwrap_or("none (mining starts over)")
    );
    for (p, why) in &r.quarantined {
        println!("set aside {}: {why}", p.display());
    }
    Ok(())
}

/// `heimdall offload`: flushes, then moves every local segment to the object store
/// of the `--config` file.
pub(super) fn offload(data_dir: &Path) -> Result<()> {
    let engine = open(data_dir)?;
    if engine.tier().is_none() {
        bail!("offload needs an object store: give --config FILE with an [object_store] table");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    rt.block_on(engine.flush())?;
    let s = engine.offload(true)?;
    rt.block_on(engine.close())?;
    println!(
        "offloaded {} segments ({} bytes) in {:.2} s; {} failed; {} bytes local, {} bytes in the store",
        s.segments,
        s.bytes,
        started.elapsed().as_secs_f64(),
        s.failed,
        s.local_bytes,
        s.remote_bytes
    );
    if let Some(e) = s.error {
        bail!(
            "{} segments could not be offloaded (they stay local): {e}",
            s.failed
        );
    }
    Ok(())
}
