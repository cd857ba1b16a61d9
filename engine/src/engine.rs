//! The engine: ingest through the WAL into the memtable, flush to segments under a
//! manifest, recover on open (manifest + WAL replay), search across both.
//!
//! Write path: encode batch -> WAL append (durable) -> template mining (`_template`)
//! -> memtable. Flush: swap the memtable out, and freeze the template miners, under a
//! gate that waits for in-flight appends (so every LSN below the WAL's written point
//! at the swap is in the swapped table), write one segment per (tenant, day) and the
//! miners' state, publish the manifest naming both with the new checkpoint, then let
//! the WAL drop files below it. A crash anywhere in between replays from the old checkpoint; a
//! segment written but not yet listed is an orphan and is never read.
//!
//! Up to [`EngineConfig::flushes_in_flight`] flushes write segments at once (one
//! memtable each), but they publish strictly in the order their memtables were
//! frozen, so a checkpoint never passes a memtable that is not yet in segments. A
//! flush that fails stops every later one from publishing (and the engine from
//! accepting writes): the data stays in the WAL and comes back at the next open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use wal::{LsnRange, Wal, WalConfig, WalError};

use crate::manifest::{Manifest, ManifestError, SegmentEntry, SourcePosition};
use crate::memtable::Memtable;
use crate::memtable::SegmentGroup;
use crate::model::{Record, Tenant};
use crate::segment::{encode_segment, SegmentError, SegmentOptions, SegmentReader};
use crate::walrec;
pub use crate::walrec::{Position, Retract};

mod lease;
mod offload;
pub mod repair;
mod templates;

pub use lease::{LEASE_OBJECT, NODE_ID_FILE};
pub use offload::{OffloadStats, RetentionRule, RetentionStats};
pub use templates::{
    check_template_file, frame_template_json, TemplateInfo, TemplatesError, TEMPLATE_FIELD,
};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Data directory (WAL in `wal/`, segments in `segments/`, the manifest).
    pub data_dir: PathBuf,
    /// WAL settings.
    pub wal: WalConfig,
    /// Segment settings.
    pub segment: SegmentOptions,
    /// Flush once the memtable holds about this many bytes.
    pub memtable_bytes_max: usize,
    /// Flush once the memtable's first record is this old (`None`: by size only),
    /// so a quiet node still gets its records into segments, checkpoints its WAL,
    /// offloads and expires. [`Engine::wants_flush`] tells; the caller flushes.
    pub flush_interval: Option<std::time::Duration>,
    /// Segments of one flush written at once (one per tenant and partition).
    pub flush_threads: usize,
    /// Flushes (frozen memtables being written) at once; each holds a memtable in
    /// memory until it publishes.
    pub flushes_in_flight: usize,
    /// Consecutive days of a tenant share one segment while together they hold
    /// less than this many (memtable) bytes; a bigger day gets its own segment.
    pub pack_bytes: usize,
    /// The object store sealed segments are offloaded to, if any.
    pub tier: Option<crate::tier::TierConfig>,
    /// Template mining ([`crate::template`]): each record gets the `_template`
    /// field. `None` turns it off.
    pub templates: Option<crate::template::MinerConfig>,
    /// The file operations that change the data directory ([`crate::fs`]); tests
    /// put a fault-injecting one here.
    pub fs: Arc<dyn crate::fs::Fs>,
    /// Free space kept on the data directory's file system: ingest is refused
    /// ([`EngineError::DiskFull`]) while less is free, and a flush waits while
    /// less than a quarter of it is, so the WAL and flushes never meet a full
    /// disk, and writes go on by themselves once space returns. 0: no check.
    pub disk_reserve_bytes: u64,
}

impl EngineConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            wal: WalConfig::default(),
            segment: SegmentOptions::default(),
            memtable_bytes_max: 256 << 20,
            flush_interval: None,
            flush_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            flushes_in_flight: 2,
            pack_bytes: 8 << 20,
            tier: None,
            templates: Some(crate::template::MinerConfig::default()),
            fs: Arc::new(crate::fs::RealFs),
            disk_reserve_bytes: 256 << 20,
        }
    }
}

/// Engine errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// From the WAL.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// From a segment.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// From the manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A WAL record that does not decode as a record batch.
    #[error("WAL record {lsn} does not decode: {source}")]
    BadWalRecord {
        /// Its LSN.
        lsn: u64,
        /// Why.
        #[source]
        source: walrec::DecodeError,
    },
    /// A producer's batch sequence number lower than every one remembered for it:
    /// whether it was stored cannot be told.
    #[error(
        "producer {producer:?} sequence {seq} is older than the {window} remembered \
         (lowest {oldest}): cannot tell whether it was stored; use increasing sequence \
         numbers (or a new producer id)"
    )]
    SequenceTooOld {
        /// The producer.
        producer: String,
        /// Its sequence number.
        seq: u64,
        /// The lowest one remembered.
        oldest: u64,
        /// How many are remembered.
        window: usize,
    },
    /// The same (producer, sequence) is being stored by another request right now.
    #[error("producer {producer:?} sequence {seq} is being stored by another request: retry")]
    SequenceInFlight {
        /// The producer.
        producer: String,
        /// Its sequence number.
        seq: u64,
    },
    /// An earlier flush failed: nothing more is flushed or ingested until the data
    /// directory is opened again (which replays the WAL).
    #[error("a flush failed, the engine no longer accepts writes (reopen to recover): {0}")]
    FlushFailed(String),
    /// From the object store.
    #[error(transparent)]
    Tier(#[from] crate::tier::TierError),
    /// From the template file.
    #[error(transparent)]
    Templates(#[from] TemplatesError),
    /// A batch with more records than one WAL record may hold: replay refuses
    /// such a record, so it is refused before it is stored.
    #[error(
        "{count} {what} in one batch, over the limit of {max} (the most one WAL record may hold): send smaller batches"
    )]
    BatchTooLarge {
        /// What is counted (records, source positions).
        what: &'static str,
        /// How many the batch has.
        count: usize,
        /// The limit ([`walrec::BATCH_RECORDS_MAX`], [`walrec::BATCH_POSITIONS_MAX`]).
        max: usize,
    },
    /// A record that breaks the rules every ingest path shares
    /// ([`crate::model::check_record`]).
    #[error("record {index} of the batch: {reason}")]
    InvalidRecord {
        /// Its position in the batch.
        index: usize,
        /// What is wrong with it.
        reason: crate::model::RecordError,
    },
    /// The data directory holds data that only a manifest can name, and its
    /// manifest is missing: opening it as new would discard that data.
    #[error(
        "the manifest {} is missing, but {why}: opening the directory as new would discard them. \
         Restore the file, or rebuild it from the segments with `heimdall repair --data-dir {}`",
        path.display(), dir.display()
    )]
    ManifestMissing {
        /// Where the manifest should be.
        path: PathBuf,
        /// The data directory.
        dir: PathBuf,
        /// What was found that needs it.
        why: String,
    },
    /// The manifest's checkpoint and the WAL do not meet: records between them
    /// would be in neither.
    #[error(
        "the manifest {} says every record below WAL LSN {checkpoint} is in segments, but the WAL \
         in {} {}: the WAL directory was replaced or lost; restore it, or run `heimdall repair`",
        path.display(), wal_dir.display(), if *oldest > *checkpoint {
            format!("starts at LSN {oldest}")
        } else {
            format!("ends before LSN {written}")
        }
    )]
    WalMismatch {
        /// The manifest.
        path: PathBuf,
        /// The WAL directory.
        wal_dir: PathBuf,
        /// The manifest's checkpoint.
        checkpoint: u64,
        /// The WAL's oldest retained LSN.
        oldest: u64,
        /// The LSN the WAL's next record would get.
        written: u64,
    },
    /// Another writable node holds the object store prefix's lease.
    #[error(
        "another node ({node}) writes to the object store {url} (its lease runs {left:?} more): \
         two writable nodes on one prefix would delete each other's objects. Stop that node \
         (or, if it is gone, start again once its lease ran out), or open this one --read-only"
    )]
    LeaseHeld {
        /// The store.
        url: String,
        /// The holder (host and data directory).
        node: String,
        /// How long its lease still runs.
        left: std::time::Duration,
    },
    /// This node's lease on the object store prefix was taken by another node.
    #[error("{0}")]
    LeaseLost(String),
    /// The data directory's file system has less free space than the reserve.
    #[error(
        "{free} bytes free on the file system of {}, below the reserve of {reserve} (disk_reserve_bytes): writes resume once space is freed",
        dir.display()
    )]
    DiskFull {
        /// The data directory.
        dir: PathBuf,
        /// Bytes free.
        free: u64,
        /// The reserve.
        reserve: u64,
    },
    /// The engine was opened read-only (from an object store).
    #[error("this node is read-only (opened from the object store): it does not ingest, flush, compact, offload or delete")]
    ReadOnly,
    /// Local segments use up the disk budget: the object store has not taken
    /// enough of them (unreachable, or too slow).
    #[error(
        "local segments take {local} bytes, over the disk budget of {max}: offloading to the object store is behind (is it reachable?); retry later"
    )]
    DiskBudget {
        /// Bytes of local segments.
        local: u64,
        /// The hard limit.
        max: u64,
    },
    /// A file operation of [`crate::fs`].
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),
    /// Other I/O.
    #[error("{op} failed on {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, Default)]
struct State {
    memtable: Memtable,
    /// Memtables being flushed: still searchable until their segments are listed.
    frozen: Vec<Arc<Memtable>>,
    manifest: Manifest,
    /// Next segment number not yet handed to a flush or compaction.
    next_seq: u64,
    /// Flushes frozen so far (the next one's turn to publish).
    flush_tickets: u64,
    /// Why a flush failed; once set, nothing more is flushed or ingested.
    failed: Option<String>,
    /// Producers' recent batches, up to the last append ([`crate::dedup`]).
    producers: crate::dedup::Producers,
    /// Source positions, up to the last append: for a source that numbers its
    /// records (a Kafka partition's offsets), the position after the last one
    /// stored, moved by the same WAL record as the records.
    positions: std::collections::BTreeMap<String, SourcePosition>,
    /// (producer key, sequence) pairs being appended right now ([`crate::dedup::key`]).
    in_flight: std::collections::HashSet<(String, u64)>,
    /// Open readers of listed segments, by file name, opened on first use. A query
    /// holds its own `Arc`s, so a segment compacted away mid-query stays mapped
    /// (and readable) until the query drops it, though its file is unlinked.
    /// At most [`OPEN_READERS_MAX`]; the least recently used go first (a query
    /// holding one keeps it alive).
    readers: Readers,
    /// Template miners, up to the last append (when mining is on).
    miners: Option<templates::Miners>,
    /// The template file last put in the object store by this process.
    remote_templates: Option<String>,
}

impl State {
    /// `tenant`'s records not yet in a published segment: the memtable's and
    /// those of memtables being flushed.
    fn unflushed<'a>(&'a self, tenant: &'a Tenant) -> impl Iterator<Item = &'a Record> + 'a {
        self.memtable
            .records_of(tenant)
            .chain(self.frozen.iter().flat_map(move |m| m.records_of(tenant)))
    }

    /// Mines `records` (when mining is on) and adds them to the memtable, as moving
    /// the numbered sources `sources` (their position keys).
    fn insert(
        &mut self,
        tenant: &Tenant,
        mut records: Vec<Record>,
        raw_bytes: u64,
        sources: &[String],
    ) {
        if let Some(m) = &mut self.miners {
            m.mine(tenant, &mut records);
        }
        self.memtable
            .insert_from(tenant, records, raw_bytes, sources);
    }
}

/// Open segment readers kept at once: each holds its footer, index directory and
/// whatever of its index it decoded, so months of offloaded segments must not all
/// stay open.
const OPEN_READERS_MAX: usize = 2048;

/// Offloaded segments opened at once (each open is one or two requests).
const REMOTE_OPENS: usize = 16;

/// The open readers with a use counter for least-recently-used eviction, bounded
/// in count and in the bytes offloaded segments' readers hold (their fetched
/// index and footer; reopening one reads the disk cache).
#[derive(Debug, Default)]
struct Readers {
    map: std::collections::HashMap<String, (Arc<SegmentReader>, u64)>,
    tick: u64,
    resident: u64,
    /// Bound on `resident` (0: none).
    resident_max: u64,
}

impl Readers {
    fn get(&mut self, file: &str) -> Option<Arc<SegmentReader>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(file).map(|(r, t)| {
            *t = tick;
            Arc::clone(r)
        })
    }

    fn insert(&mut self, file: String, r: Arc<SegmentReader>) {
        self.tick += 1;
        self.resident += r.resident_bytes();
        if let Some((old, _)) = self.map.insert(file, (r, self.tick)) {
            self.resident -= old.resident_bytes();
        }
        let over = |s: &Self| {
            s.map.len() > OPEN_READERS_MAX || (s.resident_max > 0 && s.resident > s.resident_max)
        };
        if over(self) {
            // Evict the oldest eighth at once (then more while still over), so
            // eviction scans stay rare.
            let mut by_age: Vec<(u64, String)> =
                self.map.iter().map(|(f, (_, t))| (*t, f.clone())).collect();
            by_age.sort_unstable();
            let eighth = (by_age.len() / 8).max(1);
            for (i, (_, f)) in by_age.into_iter().enumerate() {
                if i >= eighth && !over(self) {
                    break;
                }
                self.remove(&f);
            }
        }
    }

    fn remove(&mut self, file: &str) {
        if let Some((r, _)) = self.map.remove(file) {
            self.resident -= r.resident_bytes();
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self.map.keys().filter(|f| !keep(f)).cloned().collect();
        for f in gone {
            self.remove(&f);
        }
    }
}

/// A source's position after a retraction back to `next`.
fn retracted(before: Option<&SourcePosition>, next: u64) -> SourcePosition {
    let first = before.map_or(next, |p| p.first.min(next));
    SourcePosition { first, next }
}

/// What [`Engine::ingest_positioned`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positioned {
    /// The batch's WAL record.
    pub range: LsnRange,
    /// The sources the confirmation asked to take back, with the records that went.
    pub retracted: Vec<(String, u64)>,
}

impl State {
    /// The open reader of listed segment `e`, opened on first use and cached.
    fn reader(
        &mut self,
        dir: &Path,
        tier: Option<&Arc<crate::tier::Tier>>,
        e: &SegmentEntry,
    ) -> Result<Arc<SegmentReader>> {
        if let Some(r) = self.readers.get(&e.file) {
            return Ok(r);
        }
        let r = Arc::new(match (&e.offloaded, tier) {
            (None, _) => SegmentReader::open(dir.join(&e.file))?,
            (Some(o), Some(t)) => SegmentReader::open_remote(
                Arc::clone(t),
                &e.file,
                e.bytes,
                o.tail_from.zip(o.version),
            )?,
            (Some(_), None) => {
                return Err(EngineError::Segment(SegmentError::NotFound(format!(
                    "segment {} is in the object store, but none is configured",
                    e.file
                ))))
            }
        });
        self.readers.insert(e.file.clone(), Arc::clone(&r));
        Ok(r)
    }
}

/// What [`Engine::ingest_with`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Where the batch is in the WAL (for a duplicate: where it was stored first).
    pub range: LsnRange,
    /// Whether it was a retry of a stored batch, not stored again.
    pub duplicate: bool,
}

/// Memory held by records not yet in segments, and the segment count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of records in the memtable and in memtables being flushed.
    pub memtable_bytes: usize,
    /// Their records.
    pub memtable_records: u64,
    /// Segments listed in the manifest.
    pub segments: usize,
    /// The WAL position the segments hold everything up to (the checkpoint).
    pub checkpoint_lsn: u64,
}

/// What [`Engine::columns`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredColumns {
    /// Field names with the kinds of their values.
    pub fields:
        std::collections::BTreeMap<String, std::collections::BTreeSet<crate::segment::ColumnKind>>,
    /// Whether a record has a level.
    pub level: bool,
}

/// A published segment as a query sees it: its manifest entry and an open reader.
#[derive(Debug, Clone)]
pub struct SegmentHandle {
    /// The manifest entry.
    pub entry: SegmentEntry,
    /// The reader (shared with other queries; its lazily decoded parts are kept).
    pub reader: Arc<SegmentReader>,
}

/// What a flush wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Segments written.
    pub segments: usize,
    /// Rows written.
    pub rows: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Segments merged away.
    pub merged: usize,
    /// Segments written in their place.
    pub written: usize,
}

/// Sizes and counts of a data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Records stored (segments + memtable).
    pub records: u64,
    /// Published segments.
    pub segments: usize,
    /// Raw input bytes ingested (for the records stored).
    pub raw_bytes: u64,
    /// Bytes of column data in segments.
    pub column_bytes: u64,
    /// The same, per column name.
    pub column_bytes_by_name: std::collections::BTreeMap<String, u64>,
    /// Bytes of index sections in segments.
    pub index_bytes: u64,
    /// Other segment bytes (headers, footers) plus the manifest.
    pub metadata_bytes: u64,
    /// Bytes of WAL files (including preallocated spares).
    pub wal_bytes: u64,
    /// Segments in the object store.
    pub offloaded_segments: usize,
    /// Their bytes.
    pub offloaded_bytes: u64,
    /// Bytes of segments on local disk.
    pub local_segment_bytes: u64,
}

/// An open data directory; see the module docs.
#[derive(Debug)]
pub struct Engine {
    dir: PathBuf,
    cfg: EngineConfig,
    wal: Wal,
    /// Ingests hold it shared across append + memtable insert; a flush takes it
    /// exclusively to swap the memtable.
    gate: tokio::sync::RwLock<()>,
    /// Bounds the flushes in flight.
    flush_slots: tokio::sync::Semaphore,
    /// Flushes published (or abandoned after a failure), in ticket order.
    published: tokio::sync::watch::Sender<u64>,
    /// One maintenance job at a time: compaction, offload, retention.
    compacting: tokio::sync::Mutex<()>,
    /// Free bytes on the data directory's file system, and when they were read.
    free: Mutex<Option<(std::time::Instant, u64)>>,
    state: Mutex<State>,
    /// The object store, when configured.
    tier: Option<Arc<crate::tier::Tier>>,
    /// The lease on the object store prefix, when writable with one (given up
    /// when the engine is dropped or closed).
    lease: Option<lease::Held>,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io { op, path, source }
}

impl Engine {
    /// Opens (creating if needed) a data directory and recovers it.
    pub fn open(cfg: EngineConfig) -> Result<Engine> {
        let dir = cfg.data_dir.clone();
        crate::fs::create_dir_all(&*cfg.fs, &dir)?;
        // The WAL's lock makes this process the only writer of the directory.
        let wal = Wal::open(dir.join("wal"), cfg.wal.clone())?;
        // The WAL's directory entry (made by the WAL) is durable before anything is
        // acknowledged.
        cfg.fs
            .sync_dir(&dir)
            .map_err(io_err("fsync directory", &dir))?;
        let tier = match &cfg.tier {
            Some(t) => Some(Arc::new(crate::tier::Tier::open(t.clone())?)),
            None => None,
        };
        let read_only = tier.as_ref().is_some_and(|t| t.cfg.read_only);
        if !read_only {
            refuse_without_manifest(&dir, &wal)?;
        }
        // One writable node per bucket prefix, before anything is read from or
        // written to it.
        let lease = match &tier {
            Some(t) if !read_only => {
                let id = lease::node_id(&*cfg.fs, &dir)?;
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "unknown host".into());
                let node = format!("{host}:{} pid {}", dir.display(), std::process::id());
                let l = lease::Lease::new(t, id, node);
                match l.take(t) {
                    Ok(()) => {}
                    Err(e @ EngineError::LeaseHeld { .. }) => return Err(e),
                    // Unreachable now: taken at the first write to the bucket
                    // (ingest does not wait for the store).
                    Err(e) => {
                        tracing::warn!(error = %e, "could not take the object store lease yet")
                    }
                }
                Some(lease::Held::new(l, Arc::clone(t)))
            }
            _ => None,
        };
        let manifest = match &tier {
            None => Manifest::load(&dir)?,
            Some(t) => offload::open_manifest(&*cfg.fs, &dir, t)?,
        };
        if !read_only {
            let (oldest, written) = (wal.oldest_lsn(), wal.written_lsn());
            let checkpoint = manifest.checkpoint_lsn;
            // Below `oldest` the WAL dropped records the manifest must list; past
            // `written`, new records would get LSNs replay skips.
            if checkpoint < oldest || checkpoint > written {
                return Err(EngineError::WalMismatch {
                    path: dir.join(crate::manifest::MANIFEST_FILE),
                    wal_dir: dir.join("wal"),
                    checkpoint,
                    oldest,
                    written,
                });
            }
        }
        for s in manifest.segments.iter().filter(|s| s.is_local()) {
            let p = dir.join(&s.file);
            if !p.is_file() {
                return Err(EngineError::Segment(SegmentError::NotFound(format!(
                    "segment {} listed in the manifest is missing",
                    p.display()
                ))));
            }
        }
        if !read_only {
            sweep_orphans(&*cfg.fs, &dir, &manifest)?;
        }
        let mut miners = match &cfg.templates {
            None => None,
            Some(mc) => Some(match &manifest.templates {
                None => templates::Miners::new(mc.clone()),
                Some(name) => {
                    let saved = match (templates::load(&dir, name), &tier) {
                        (Ok(s), _) => s,
                        // A lost disk or a read-only node: the store's copy.
                        (Err(TemplatesError::Io { source, .. }), Some(t))
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            offload::fetch_templates(&*cfg.fs, &dir, t, name)?
                        }
                        (Err(e), _) => return Err(e.into()),
                    };
                    templates::Miners::restore(mc.clone(), &saved)
                }
            }),
        };
        if !read_only {
            templates::sweep(&*cfg.fs, &dir, manifest.templates.as_deref());
        }
        let mut memtable = Memtable::default();
        let mut producers = manifest.producers.clone();
        let mut positions = manifest.positions.clone();
        let mut replayed = 0u64;
        for rec in wal.replay(manifest.checkpoint_lsn)? {
            let rec = rec?;
            let batch =
                walrec::decode(&rec.payload).map_err(|source| EngineError::BadWalRecord {
                    lsn: rec.lsn,
                    source,
                })?;
            let raw: u64 = batch.records.iter().map(|r| r.msg.len() as u64 + 1).sum();
            replayed += batch.records.len() as u64;
            if let Some((p, seq)) = &batch.producer {
                producers.record(&crate::dedup::key(&batch.tenant, p), *seq, rec.lsn, rec.lsn);
            }
            let sources: Vec<String> = batch.positions.iter().map(|p| p.key.clone()).collect();
            for p in batch.positions {
                positions.insert(
                    p.key,
                    SourcePosition {
                        first: p.first,
                        next: p.next,
                    },
                );
            }
            if let Some(r) = &batch.retract {
                memtable.remove(&batch.tenant, &r.key, |rec| r.matches(rec));
                positions.insert(r.key.clone(), retracted(positions.get(&r.key), r.next));
            }
            let mut records = batch.records;
            if let Some(m) = &mut miners {
                m.mine(&batch.tenant, &mut records);
            }
            memtable.insert_from(&batch.tenant, records, raw, &sources);
        }
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                from_lsn = manifest.checkpoint_lsn,
                "replayed the WAL into the memtable"
            );
        }
        let flushes_in_flight = cfg.flushes_in_flight.max(1);
        Ok(Engine {
            dir,
            cfg,
            wal,
            gate: tokio::sync::RwLock::new(()),
            flush_slots: tokio::sync::Semaphore::new(flushes_in_flight),
            published: tokio::sync::watch::Sender::new(0),
            compacting: tokio::sync::Mutex::new(()),
            free: Mutex::new(None),
            state: Mutex::new(State {
                memtable,
                frozen: Vec::new(),
                next_seq: manifest.next_segment,
                manifest,
                flush_tickets: 0,
                failed: None,
                producers,
                positions,
                in_flight: Default::default(),
                readers: Readers {
                    resident_max: tier.as_ref().map_or(0, |t| t.cfg.memory_cache_bytes_max),
                    ..Readers::default()
                },
                miners,
                remote_templates: None,
            }),
            tier,
            lease,
        })
    }

    /// Whether a batch of `records` records may be stored: within the count that
    /// replay accepts ([`walrec::BATCH_RECORDS_MAX`], the same constant the decoder
    /// checks), every record by the shared rules ([`crate::model::check_record`]),
    /// and [`Self::writable`].
    fn admit(&self, records: &[Record], positions: usize) -> Result<()> {
        for (what, count, max) in [
            ("records", records.len(), walrec::BATCH_RECORDS_MAX),
            ("source positions", positions, walrec::BATCH_POSITIONS_MAX),
        ] {
            if count > max {
                return Err(EngineError::BatchTooLarge { what, count, max });
            }
        }
        for (index, r) in records.iter().enumerate() {
            crate::model::check_record(r)
                .map_err(|reason| EngineError::InvalidRecord { index, reason })?;
        }
        self.writable()
    }

    /// Whether an ingest may go ahead: not read-only, no failed flush, local
    /// segments within the disk budget.
    fn writable(&self) -> Result<()> {
        if let Some(t) = &self.tier {
            if t.cfg.read_only {
                return Err(EngineError::ReadOnly);
            }
        }
        let st = self.state();
        if let Some(why) = &st.failed {
            return Err(EngineError::FlushFailed(why.clone()));
        }
        if let Some(max) = self.tier.as_ref().and_then(|t| t.cfg.local_bytes_hard_max) {
            let local = st.manifest.local_bytes();
            if local > max {
                return Err(EngineError::DiskBudget { local, max });
            }
        }
        drop(st);
        self.check_free(self.cfg.disk_reserve_bytes)
    }

    /// Fails with [`EngineError::DiskFull`] while fewer than `need` bytes are free
    /// (read at most every 200 ms; an unreadable value passes).
    fn check_free(&self, need: u64) -> Result<()> {
        if self.cfg.disk_reserve_bytes == 0 {
            return Ok(());
        }
        let free = {
            let mut cached = self.free.lock().unwrap_or_else(|p| p.into_inner());
            match *cached {
                Some((at, free)) if at.elapsed() < std::time::Duration::from_millis(200) => free,
                _ => match crate::fs::free_bytes(&self.dir) {
                    Ok(free) => {
                        *cached = Some((std::time::Instant::now(), free));
                        free
                    }
                    Err(_) => return Ok(()),
                },
            }
        };
        if free < need {
            return Err(EngineError::DiskFull {
                dir: self.dir.clone(),
                free,
                reserve: self.cfg.disk_reserve_bytes,
            });
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `records` durable (one WAL record, so the batch is atomic) and
    /// searchable. `raw_bytes` is their input size, for statistics.
    pub async fn ingest(
        &self,
        tenant: &Tenant,
        records: Vec<Record>,
        raw_bytes: u64,
    ) -> Result<LsnRange> {
        Ok(self
            .ingest_with(tenant, records, raw_bytes, None)
            .await?
            .range)
    }

    /// [`Self::ingest`] for a batch that `producer` = (id, sequence) may retry: a
    /// batch already stored is not stored again, and its first storing is reported
    /// ([`crate::dedup`] for what is remembered).
    pub async fn ingest_with(
        &self,
        tenant: &Tenant,
        records: Vec<Record>,
        raw_bytes: u64,
        producer: Option<(String, u64)>,
    ) -> Result<Ingested> {
        // Producer ids are the clients' own: two tenants may use the same one.
        let key = producer
            .as_ref()
            .map(|(p, seq)| (crate::dedup::key(tenant, p), *seq));
        if let (Some((p, seq)), Some(key)) = (&producer, &key) {
            let mut st = self.state();
            match st.producers.check(&key.0, *seq) {
                crate::dedup::Check::Duplicate(first, last) => {
                    return Ok(Ingested {
                        range: LsnRange { first, last },
                        duplicate: true,
                    })
                }
                crate::dedup::Check::TooOld(oldest) => {
                    return Err(EngineError::SequenceTooOld {
                        producer: p.clone(),
                        seq: *seq,
                        oldest,
                        window: crate::dedup::WINDOW,
                    })
                }
                crate::dedup::Check::New => {}
            }
            if !st.in_flight.insert(key.clone()) {
                return Err(EngineError::SequenceInFlight {
                    producer: p.clone(),
                    seq: *seq,
                });
            }
        }
        let res = self
            .append(tenant, records, raw_bytes, producer.as_ref())
            .await;
        if let Some(key) = key {
            self.state().in_flight.remove(&key);
        }
        Ok(Ingested {
            range: res?,
            duplicate: false,
        })
    }

    /// Appends records of `tenant` that move numbered sources (Kafka partitions)
    /// to `positions`: the records and the positions are one WAL record, durable
    /// together, so after any crash [`Engine::position`] says exactly which of a
    /// source's records are stored, and a consumer resumes from there.
    ///
    /// Once the batch is durable and in the memtable, `confirm` runs (it may block:
    /// call this from a thread of your own, not a runtime worker) while flushes
    /// wait, so the batch is still in the memtable when it returns: each
    /// [`Retract`] it returns takes back what it names (the hand-over of that
    /// source's part failed), durably too; none keeps the whole batch.
    pub async fn ingest_positioned(
        &self,
        tenant: &Tenant,
        records: Vec<Record>,
        raw_bytes: u64,
        positions: Vec<Position>,
        confirm: impl FnOnce(LsnRange) -> Vec<Retract>,
    ) -> Result<Positioned> {
        self.admit(&records, positions.len())?;
        let payload = Bytes::from(walrec::encode_with(tenant, &records, None, &positions));
        let _shared = self.gate.read().await;
        let range = self.wal.append_batch(vec![payload]).await?;
        {
            let mut st = self.state();
            let sources: Vec<String> = positions.iter().map(|p| p.key.clone()).collect();
            for p in positions {
                st.positions.insert(
                    p.key,
                    SourcePosition {
                        first: p.first,
                        next: p.next,
                    },
                );
            }
            st.insert(tenant, records, raw_bytes, &sources);
        }
        let mut retracted = Vec::new();
        for r in confirm(range) {
            let n = self.retract_locked(tenant, &r).await?;
            retracted.push((r.key, n));
        }
        Ok(Positioned { range, retracted })
    }

    /// Takes back records of a numbered source stored but not handed over (see
    /// [`Retract`]), durably: a WAL record, then the memtable. Only records still in
    /// the memtable can go: call it before any flush after [`Engine::open`] (a
    /// source that resolves its last batch at start-up). How many records went.
    pub async fn retract(&self, tenant: &Tenant, r: &Retract) -> Result<u64> {
        let _shared = self.gate.read().await;
        self.retract_locked(tenant, r).await
    }

    async fn retract_locked(&self, tenant: &Tenant, r: &Retract) -> Result<u64> {
        let payload = Bytes::from(walrec::encode_retract(tenant, r));
        self.wal.append_batch(vec![payload]).await?;
        let mut st = self.state();
        let removed = st.memtable.remove(tenant, &r.key, |rec| r.matches(rec));
        let p = retracted(st.positions.get(&r.key), r.next);
        st.positions.insert(r.key.clone(), p);
        Ok(removed)
    }

    /// `tenant`'s templates, most frequent first (none when mining is off).
    pub fn templates(&self, tenant: &Tenant) -> Vec<TemplateInfo> {
        self.state()
            .miners
            .as_ref()
            .map_or_else(Vec::new, |m| m.list(tenant))
    }

    /// The `_template` values `_template:id` stands for: `id` and the ids of
    /// templates folded into it ([`crate::template::Miner::canonical`]).
    pub fn template_ids(&self, tenant: &Tenant, id: u64) -> Vec<u64> {
        self.state()
            .miners
            .as_ref()
            .map_or_else(|| vec![id], |m| m.ids_of(tenant, id))
    }

    /// Templates held in memory, over every tenant.
    pub fn templates_held(&self) -> usize {
        self.state()
            .miners
            .as_ref()
            .map_or(0, templates::Miners::len)
    }

    /// The stored position of source `key`, if any of its records were ever stored.
    pub fn position(&self, key: &str) -> Option<SourcePosition> {
        self.state().positions.get(key).copied()
    }

    /// Every stored source position whose key starts with `prefix`.
    pub fn positions(&self, prefix: &str) -> Vec<(String, SourcePosition)> {
        self.state()
            .positions
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    async fn append(
        &self,
        tenant: &Tenant,
        records: Vec<Record>,
        raw_bytes: u64,
        producer: Option<&(String, u64)>,
    ) -> Result<LsnRange> {
        if records.is_empty() && producer.is_none() {
            let next = self.wal.written_lsn();
            return Ok(LsnRange {
                first: next,
                last: next.saturating_sub(1),
            });
        }
        self.admit(&records, 0)?;
        let payload = Bytes::from(walrec::encode_with(
            tenant,
            &records,
            producer.map(|(p, s)| (p.as_str(), *s)),
            &[],
        ));
        let _shared = self.gate.read().await;
        let range = self.wal.append_batch(vec![payload]).await?;
        let mut st = self.state();
        // Under the gate, like the memtable insert: a flush freezing both sees
        // exactly the batches below its checkpoint.
        if let Some((p, seq)) = producer {
            st.producers
                .record(&crate::dedup::key(tenant, p), *seq, range.first, range.last);
        }
        st.insert(tenant, records, raw_bytes, &[]);
        Ok(range)
    }

    /// Memory held by records not yet in segments, and the segment count.
    pub fn memory(&self) -> MemoryStats {
        let st = self.state();
        MemoryStats {
            memtable_bytes: st.memtable.bytes()
                + st.frozen.iter().map(|m| m.bytes()).sum::<usize>(),
            memtable_records: st.memtable.rows() + st.frozen.iter().map(|m| m.rows()).sum::<u64>(),
            segments: st.manifest.segments.len(),
            checkpoint_lsn: st.manifest.checkpoint_lsn,
        }
    }

    /// The WAL's activity counters.
    pub fn wal_stats(&self) -> wal::WalStats {
        self.wal.stats()
    }

    /// Waits until everything appended is durable.
    pub async fn sync(&self) -> Result<()> {
        self.wal.sync().await?;
        Ok(())
    }

    /// Why the engine stopped accepting writes, if it did.
    pub fn failure(&self) -> Option<String> {
        let st = self.state();
        st.failed
            .clone()
            .or_else(|| self.wal.failure().map(|e| e.to_string()))
    }

    /// Whether the memtable should be flushed: it reached its flush size, or its
    /// first record is older than `flush_interval`.
    pub fn wants_flush(&self) -> bool {
        let st = self.state();
        st.memtable.bytes() >= self.cfg.memtable_bytes_max
            || self
                .cfg
                .flush_interval
                .is_some_and(|every| st.memtable.age().is_some_and(|age| age >= every))
    }

    /// Writes the memtable to segments and publishes them; see the module docs.
    pub async fn flush(&self) -> Result<FlushStats> {
        let _slot = self
            .flush_slots
            .acquire()
            .await
            .map_err(|_| EngineError::FlushFailed("engine closed".into()))?;
        // Writing segments into a full disk would fail the flush for good: wait
        // (the records stay in the memtable and the WAL) until space returns.
        if self.state().memtable.rows() > 0 {
            self.check_free(self.cfg.disk_reserve_bytes / 4)?;
        }
        let started = std::time::Instant::now();
        let (frozen, checkpoint, ticket, first_seq, sources) = {
            let _exclusive = self.gate.write().await;
            let mut st = self.state();
            if let Some(why) = &st.failed {
                return Err(EngineError::FlushFailed(why.clone()));
            }
            if st.memtable.rows() == 0 {
                (None, 0, st.flush_tickets, 0, Default::default())
            } else {
                let m = Arc::new(std::mem::take(&mut st.memtable));
                st.frozen.push(Arc::clone(&m));
                let ticket = st.flush_tickets;
                st.flush_tickets += 1;
                let first_seq = st.next_seq;
                st.next_seq += m.segments(self.cfg.pack_bytes).len() as u64;
                // The producers table as of this instant covers exactly the WAL
                // below the checkpoint: the manifest keeps it with the checkpoint.
                // So do the miners: the records below it carry their ids.
                (
                    Some(m),
                    self.wal.written_lsn(),
                    ticket,
                    first_seq,
                    (
                        st.producers.clone(),
                        st.positions.clone(),
                        st.miners.as_ref().map(templates::Miners::freeze),
                    ),
                )
            }
        };
        let Some(frozen) = frozen else {
            // Nothing to write, but an earlier flush may still be publishing:
            // "flushed" means everything frozen before is in segments.
            self.wait_turn(ticket).await?;
            return Ok(FlushStats::default());
        };
        let written = self.write_parts(&frozen, first_seq);
        // Publish in freeze order: wait for every earlier flush.
        self.wait_turn(ticket).await?;
        let outcome = match written {
            Ok(entries) => {
                self.publish_flush(&frozen, entries, checkpoint, sources)
                    .await
            }
            Err(e) => Err(e),
        };
        let stats = match outcome {
            Ok(stats) => stats,
            Err(e) => {
                self.state().failed = Some(e.to_string());
                self.published.send_replace(ticket + 1);
                return Err(e);
            }
        };
        self.published.send_replace(ticket + 1);
        tracing::debug!(
            rows = stats.rows,
            segments = stats.segments,
            seconds = started.elapsed().as_secs_f64(),
            "flushed"
        );
        Ok(stats)
    }

    /// Waits until `tickets` flushes have published, then fails if one failed.
    async fn wait_turn(&self, tickets: u64) -> Result<()> {
        let mut rx = self.published.subscribe();
        rx.wait_for(|p| *p >= tickets)
            .await
            .map_err(|_| EngineError::FlushFailed("engine closed".into()))?;
        match &self.state().failed {
            Some(why) => Err(EngineError::FlushFailed(why.clone())),
            None => Ok(()),
        }
    }

    /// Lists a flush's segments in the manifest with its checkpoint, then lets the
    /// WAL drop what the checkpoint covers.
    async fn publish_flush(
        &self,
        frozen: &Arc<Memtable>,
        entries: Vec<SegmentEntry>,
        checkpoint: u64,
        (producers, positions, saved): (
            crate::dedup::Producers,
            std::collections::BTreeMap<String, SourcePosition>,
            Option<templates::FrozenMiners>,
        ),
    ) -> Result<FlushStats> {
        let mut stats = FlushStats::default();
        for e in &entries {
            stats.segments += 1;
            stats.rows += e.rows;
        }
        // The templates first: the manifest that lists the segments names them.
        let templates_file = match saved {
            Some(frozen) => {
                let name = templates::file_name(checkpoint);
                templates::write(
                    &*self.cfg.fs,
                    &self.dir,
                    &name,
                    &templates::encode(&frozen.saved()),
                )?;
                Some(name)
            }
            None => None,
        };
        let old_templates = {
            let mut st = self.state();
            let mut next = st.manifest.clone();
            next.segments.extend(entries);
            next.next_segment = next.next_segment.max(st.next_seq);
            next.checkpoint_lsn = checkpoint;
            next.producers = producers;
            next.positions = positions;
            next.raw_bytes += frozen.raw_bytes();
            let old = match templates_file {
                Some(name) => {
                    let old = next.templates.replace(name.clone());
                    old.filter(|o| *o != name)
                }
                None => None,
            };
            next.publish(&*self.cfg.fs, &self.dir)?;
            st.manifest = next;
            st.frozen.retain(|m| !Arc::ptr_eq(m, frozen));
            old
        };
        if let Some(old) = old_templates {
            let p = self.dir.join(&old);
            if let Err(e) = self.cfg.fs.remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "could not remove an old template file");
            }
        }
        self.wal.checkpoint(checkpoint).await?;
        Ok(stats)
    }

    /// Writes one segment per (tenant, partition) of `frozen`, numbered from
    /// `first_seq`, in parallel: they share nothing until the manifest lists them.
    fn write_parts(&self, frozen: &Memtable, first_seq: u64) -> Result<Vec<SegmentEntry>> {
        let parts: Vec<(u64, SegmentGroup<'_>)> = frozen
            .segments(self.cfg.pack_bytes)
            .into_iter()
            .enumerate()
            .map(|(i, g)| (first_seq + i as u64, g))
            .collect();
        let threads = self.cfg.flush_threads.clamp(1, parts.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let written = std::thread::scope(|scope| -> Result<Vec<Result<Vec<_>>>> {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let worker = || {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((seq, g)) = parts.get(i) else {
                                return Ok(mine);
                            };
                            let records = g.records.iter().flat_map(|r| r.iter()).collect();
                            let entry =
                                self.write_segment_file(g.tenant, &g.partition, *seq, records)?;
                            mine.push((i, entry));
                        }
                    };
                    std::thread::Builder::new()
                        .name("heimdall-flush".into())
                        .spawn_scoped(scope, worker)
                })
                .collect::<std::io::Result<_>>()
                .map_err(io_err("start a flush thread", &self.dir))?;
            Ok(workers
                .into_iter()
                // A writer that panicked is a bug: carry the panic on.
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect())
        })?;
        let mut entries: Vec<(usize, SegmentEntry)> = Vec::new();
        for w in written {
            entries.extend(w?);
        }
        entries.sort_by_key(|(i, _)| *i);
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }

    /// Flushes, then closes the WAL.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        self.wal.close()?;
        Ok(())
    }

    /// Records of `tenant` whose `_msg` contains every word, newest first, at most
    /// `limit`.
    pub fn search(&self, tenant: &Tenant, words: &[&str], limit: usize) -> Result<Vec<Record>> {
        let (mut out, mut segments): (Vec<Record>, Vec<SegmentEntry>) = {
            let st = self.state();
            let mut hits: Vec<Record> = st.memtable.search(tenant, words).cloned().collect();
            for m in &st.frozen {
                hits.extend(m.search(tenant, words).cloned());
            }
            let segs = st
                .manifest
                .segments
                .iter()
                .filter(|s| s.tenant == tenant.as_str())
                .cloned()
                .collect();
            (hits, segs)
        };
        out.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
        out.truncate(limit);
        segments.sort_by_key(|s| std::cmp::Reverse(s.max_time));
        for s in segments {
            // Newest segments first: once `limit` results are newer than everything
            // left, stop.
            if out.len() >= limit && out.last().is_some_and(|r| r.time_ns > s.max_time) {
                break;
            }
            let reader = self.state().reader(&self.dir, self.tier.as_ref(), &s)?;
            let hits = reader.search_words(words)?;
            let mut by_block: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
            for (b, row) in hits {
                by_block.entry(b).or_default().push(row);
            }
            for (b, rows) in by_block.into_iter().rev() {
                out.extend(reader.records_at(b, &rows)?);
            }
            out.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
            out.truncate(limit);
        }
        Ok(out)
    }

    /// What a query reads, from one instant: calls `memtable` with every record of
    /// `tenant` still in memory (not yet in a published segment) and returns the
    /// tenant's published segments overlapping `time` (nanoseconds, `[start, end)`),
    /// open. Readers are opened once and cached; opening under the state lock is what
    /// makes the list and the files one consistent view.
    pub fn snapshot(
        &self,
        tenant: &Tenant,
        time: (i64, i64),
        memtable: impl FnMut(&Record),
    ) -> Result<Vec<SegmentHandle>> {
        self.snapshot_with_labels(tenant, time, &[], memtable)
    }

    /// [`Self::snapshot`] of only the segments that may hold records carrying every
    /// stream label of `labels` (`name=value`), by the manifest's label lists:
    /// the others are not opened (an offloaded one is not fetched).
    pub fn snapshot_with_labels(
        &self,
        tenant: &Tenant,
        time: (i64, i64),
        labels: &[String],
        mut memtable: impl FnMut(&Record),
    ) -> Result<Vec<SegmentHandle>> {
        let mut st = self.state();
        for r in st.unflushed(tenant) {
            memtable(r);
        }
        let entries: Vec<SegmentEntry> = st
            .manifest
            .segments
            .iter()
            .filter(|e| e.tenant == tenant.as_str() && e.max_time >= time.0 && e.min_time < time.1)
            .filter(|e| e.may_have_labels(labels))
            .cloned()
            .collect();
        // Local segments open under the lock (a mapping is quick, and the lock keeps
        // compaction from unlinking a listed file first). Offloaded ones not open
        // yet take requests to the store: opened after the lock is released (ingest
        // must not wait on the network), several at once.
        let mut out: Vec<Option<SegmentHandle>> = Vec::with_capacity(entries.len());
        let mut remote = Vec::new();
        for entry in entries {
            match st.readers.get(&entry.file) {
                Some(reader) => out.push(Some(SegmentHandle { entry, reader })),
                None if entry.is_local() => {
                    let reader = st.reader(&self.dir, self.tier.as_ref(), &entry)?;
                    out.push(Some(SegmentHandle { entry, reader }));
                }
                None => {
                    remote.push((out.len(), entry));
                    out.push(None);
                }
            }
        }
        drop(st);
        if !remote.is_empty() {
            for (i, h) in self.open_remote(remote)? {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(h);
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The columns `tenant`'s records may have, from metadata alone (no record is
    /// read): the field columns of its local segments' footers and of offloaded
    /// segments whose reader is open (an offloaded footer is not fetched for this),
    /// and the fields of its records in memory. Fields kept in a segment's overflow
    /// column are not listed.
    pub fn columns(&self, tenant: &Tenant) -> Result<StoredColumns> {
        use crate::segment::ColumnKind;
        let mut out = StoredColumns::default();
        let mut st = self.state();
        let kind = |v: &crate::model::Value| match v {
            crate::model::Value::Str(_) => ColumnKind::Str,
            crate::model::Value::I64(_) => ColumnKind::I64,
            crate::model::Value::F64(_) => ColumnKind::F64,
            crate::model::Value::Bool(_) => ColumnKind::Bool,
        };
        let mut add = |r: &Record| {
            out.level |= r.level.is_some();
            for (k, v) in &r.fields {
                out.fields.entry(k.clone()).or_default().insert(kind(v));
            }
        };
        for r in st.unflushed(tenant) {
            add(r);
        }
        let entries: Vec<SegmentEntry> = st
            .manifest
            .segments
            .iter()
            .filter(|e| e.tenant == tenant.as_str())
            .cloned()
            .collect();
        for e in entries {
            let reader = match st.readers.get(&e.file) {
                Some(r) => r,
                None if e.is_local() => st.reader(&self.dir, self.tier.as_ref(), &e)?,
                None => continue,
            };
            for c in &reader.footer().columns {
                match c.kind {
                    ColumnKind::Level => out.level = true,
                    ColumnKind::Str | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool => {
                        out.fields.entry(c.name.clone()).or_default().insert(c.kind);
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Opens offloaded segments, up to [`REMOTE_OPENS`] at once, and caches the
    /// readers.
    fn open_remote(&self, todo: Vec<(usize, SegmentEntry)>) -> Result<Vec<(usize, SegmentHandle)>> {
        let Some(tier) = &self.tier else {
            return Err(EngineError::Segment(SegmentError::NotFound(
                "offloaded segments listed, but no object store is configured".into(),
            )));
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = REMOTE_OPENS.min(todo.len());
        let opened: Vec<Result<Vec<(usize, SegmentHandle)>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((i, entry)) = todo.get(k) else {
                                return Ok(mine);
                            };
                            let hint = entry.offloaded.and_then(|o| o.tail_from.zip(o.version));
                            let reader = Arc::new(SegmentReader::open_remote(
                                Arc::clone(tier),
                                &entry.file,
                                entry.bytes,
                                hint,
                            )?);
                            mine.push((
                                *i,
                                SegmentHandle {
                                    entry: entry.clone(),
                                    reader,
                                },
                            ));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut out = Vec::with_capacity(todo.len());
        for part in opened {
            out.extend(part?);
        }
        let mut st = self.state();
        for (_, h) in &out {
            st.readers
                .insert(h.entry.file.clone(), Arc::clone(&h.reader));
        }
        Ok(out)
    }

    /// Counts and sizes of the data directory.
    pub fn stats(&self) -> Result<EngineStats> {
        let (manifest, mem_rows, mem_raw, readers) = {
            let mut st = self.state();
            let frozen_rows: u64 = st.frozen.iter().map(|m| m.rows()).sum();
            let frozen_raw: u64 = st.frozen.iter().map(|m| m.raw_bytes()).sum();
            let manifest = st.manifest.clone();
            let readers = manifest
                .segments
                .iter()
                .map(|e| st.reader(&self.dir, self.tier.as_ref(), e))
                .collect::<Result<Vec<_>>>()?;
            (
                manifest,
                st.memtable.rows() + frozen_rows,
                st.memtable.raw_bytes() + frozen_raw,
                readers,
            )
        };
        let mut s = EngineStats {
            records: mem_rows,
            segments: manifest.segments.len(),
            raw_bytes: mem_raw + manifest.raw_bytes,
            ..EngineStats::default()
        };
        s.local_segment_bytes = manifest.local_bytes();
        for (e, r) in manifest.segments.iter().zip(&readers) {
            if !e.is_local() {
                s.offloaded_segments += 1;
                s.offloaded_bytes += e.bytes;
            }
            s.records += e.rows;
            let mut cols = 0u64;
            for c in &r.footer().columns {
                let n: u64 = c.chunks.iter().map(|c| u64::from(c.len)).sum();
                *s.column_bytes_by_name.entry(c.name.clone()).or_default() += n;
                cols += n;
            }
            let index = r.footer().index.map_or(0, |i| i.len);
            s.column_bytes += cols;
            s.index_bytes += index;
            s.metadata_bytes += e.bytes - cols - index;
        }
        s.metadata_bytes +=
            std::fs::metadata(self.dir.join(crate::manifest::MANIFEST_FILE)).map_or(0, |m| m.len());
        let wal_dir = self.dir.join("wal");
        for entry in std::fs::read_dir(&wal_dir).map_err(io_err("list", &wal_dir))? {
            let entry = entry.map_err(io_err("list", &wal_dir))?;
            s.wal_bytes += entry.metadata().map_or(0, |m| m.len());
        }
        Ok(s)
    }

    /// Merges the segments of each (tenant, day) that has more than one into a single
    /// segment. The new segment is published with the old ones removed from the
    /// manifest in one atomic step; the old files are deleted after it (a crash in
    /// between leaves orphans, removed at the next open).
    pub async fn compact(&self) -> Result<CompactStats> {
        let _one_at_a_time = self.compacting.lock().await;
        let manifest = self.state().manifest.clone();
        let mut groups: std::collections::BTreeMap<(String, String), Vec<SegmentEntry>> =
            Default::default();
        for s in manifest.segments.iter().filter(|s| s.is_local()) {
            groups
                .entry((s.tenant.clone(), s.partition.clone()))
                .or_default()
                .push(s.clone());
        }
        let mut stats = CompactStats::default();
        for ((tenant, part), olds) in groups {
            if olds.len() < 2 {
                continue;
            }
            let mut records = Vec::new();
            for old in &olds {
                let r = SegmentReader::open(self.dir.join(&old.file))?;
                for b in 0..r.footer().blocks.len() {
                    records.extend(r.records(b)?);
                }
            }
            let tenant_id = Tenant::new(tenant.clone()).map_err(|e| {
                EngineError::Segment(SegmentError::NotFound(format!(
                    "manifest tenant {tenant:?}: {e}"
                )))
            })?;
            let seq = {
                let mut st = self.state();
                st.next_seq += 1;
                st.next_seq - 1
            };
            let merged =
                self.write_segment_file(&tenant_id, &part, seq, records.iter().collect())?;
            {
                let mut st = self.state();
                let mut next = st.manifest.clone();
                next.segments
                    .retain(|s| !olds.iter().any(|o| o.file == s.file));
                next.segments.push(merged);
                next.next_segment = next.next_segment.max(st.next_seq);
                next.publish(&*self.cfg.fs, &self.dir)?;
                st.manifest = next;
                for old in &olds {
                    st.readers.remove(&old.file);
                }
            }
            for old in &olds {
                let p = self.dir.join(&old.file);
                self.cfg.fs.remove_file(&p).map_err(io_err("remove", &p))?;
            }
            stats.merged += olds.len();
            stats.written += 1;
        }
        Ok(stats)
    }

    /// Writes `records` as segment number `seq` of (tenant, partition) and returns its
    /// manifest entry (not yet published).
    fn write_segment_file(
        &self,
        tenant: &Tenant,
        partition: &str,
        seq: u64,
        records: Vec<&Record>,
    ) -> Result<SegmentEntry> {
        let rel = format!("segments/{}/{partition}/{seq:010}.seg", tenant.as_str());
        let path = self.dir.join(&rel);
        if let Some(parent) = path.parent() {
            crate::fs::create_dir_all(&*self.cfg.fs, parent)?;
        }
        // The stream labels for the manifest (records share a few label sets).
        let mut sets: std::collections::HashSet<&crate::model::Labels> = Default::default();
        let mut labels: std::collections::BTreeSet<String> = Default::default();
        for r in &records {
            if labels.len() > crate::manifest::LABELS_MAX {
                break;
            }
            if sets.insert(&r.stream) {
                labels.extend(r.stream.iter().map(|(k, v)| format!("{k}={v}")));
            }
        }
        let labels =
            (labels.len() <= crate::manifest::LABELS_MAX).then(|| labels.into_iter().collect());
        let (data, footer) = encode_segment(tenant, records, &self.cfg.segment);
        crate::fs::write_atomic(&*self.cfg.fs, &path, &data)?;
        let bytes = data.len() as u64;
        Ok(SegmentEntry::local(&footer, partition, rel, bytes, labels))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Refuses to open a directory whose manifest is missing while something only the
/// manifest can name is there: the WAL was checkpointed (records below its first
/// LSN are in segments), or segment files exist and the WAL is empty (their
/// records are nowhere else). Segment files beside a WAL that still holds every
/// record from LSN 1 are a first flush that crashed before its manifest: the
/// sweep removes them and replay brings their records back.
fn refuse_without_manifest(dir: &Path, wal: &Wal) -> Result<()> {
    let path = dir.join(crate::manifest::MANIFEST_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("stat", &path)(e)),
    }
    let missing = |why: String| EngineError::ManifestMissing {
        path: path.clone(),
        dir: dir.to_path_buf(),
        why,
    };
    if wal.oldest_lsn() > 1 {
        return Err(missing(format!(
            "the WAL was checkpointed (it starts at LSN {}): older records are in segments only the manifest lists",
            wal.oldest_lsn()
        )));
    }
    let segments = segment_files(dir)?;
    if !segments.is_empty() && wal.written_lsn() <= 1 {
        return Err(missing(format!(
            "{} segment files are there (e.g. {}) and the WAL is empty",
            segments.len(),
            segments[0].display()
        )));
    }
    Ok(())
}

/// Every file under `segments/`.
fn segment_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("segments")];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list", &d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list", &d))?;
            let p = entry.path();
            if entry.file_type().map_err(io_err("stat", &p))?.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Removes segment files the manifest does not list (left by a crash between writing
/// a segment and publishing the manifest, or between publishing and deleting merged
/// ones). Only at open, when no flush or compaction can be writing.
fn sweep_orphans(fs: &dyn crate::fs::Fs, dir: &Path, manifest: &Manifest) -> Result<()> {
    let listed: std::collections::HashSet<PathBuf> = manifest
        .segments
        .iter()
        .filter(|s| s.is_local())
        .map(|s| dir.join(&s.file))
        .collect();
    for p in segment_files(dir)? {
        if !listed.contains(&p) {
            tracing::warn!(path = %p.display(), "removing a segment file the manifest does not list");
            fs.remove_file(&p).map_err(io_err("remove", &p))?;
        }
    }
    Ok(())
}
