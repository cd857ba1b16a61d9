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
//!
//! By concern: `recovery.rs` (open), `write.rs` (admission, WAL append, memtable),
//! `flush.rs`, `compaction.rs`, `read.rs` (search, snapshots, columns),
//! `offload.rs` and `lease.rs` (the object store), `templates.rs` (the miners'
//! state), `repair.rs` (`heimdall verify` / `repair`); this file holds the shared
//! state, configuration, errors and the small accessors.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use wal::{LsnRange, Wal, WalConfig, WalError};

use crate::manifest::{Manifest, ManifestError, SegmentEntry, SourcePosition};
use crate::memtable::Memtable;
use crate::memtable::{MemSnapshot, SegmentGroup};
use crate::model::{Record, Tenant};
use crate::segment::{encode_segment, SegmentError, SegmentOptions, SegmentReader};
use crate::walrec;
pub use crate::walrec::{Position, Retract};

mod compaction;
mod flush;
mod lease;
mod offload;
mod read;
mod recovery;
pub mod repair;
mod templates;
mod write;

use recovery::segment_files;

pub use compaction::CompactionPolicy;
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
    /// `manifest.local_bytes()`, kept with it: every write checks it against the
    /// local disk budget, and summing the segments each time grows with them.
    local_bytes: u64,
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
    /// The template file last put in the object store by this process.
    remote_templates: Option<String>,
}

impl State {
    /// `tenant`'s records not yet in a published segment on the days `time`
    /// touches (the memtable's and those of memtables being flushed), by
    /// reference: read them after the lock is released.
    fn unflushed(&self, tenant: &Tenant, time: (i64, i64)) -> MemSnapshot {
        let mut out = MemSnapshot::default();
        self.memtable.snapshot(tenant, time, &mut out);
        for m in &self.frozen {
            m.snapshot(tenant, time, &mut out);
        }
        out
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

/// What a query reads, as of one instant ([`Engine::snapshot`]): records still in
/// memory and published segments, held by reference (no engine lock is held
/// while it is read; a segment compacted away meanwhile stays readable).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Records not yet in a published segment.
    pub memtable: MemSnapshot,
    /// Published segments.
    pub segments: Vec<SegmentHandle>,
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
    /// Manifest writers (flush, compaction, offload, retention) take turns on it
    /// ([`Engine::publish_manifest`]): the manifest file is written and synced
    /// outside the state lock, so writes and queries never wait on that disk I/O.
    /// Taken before `state`, never while holding it.
    publishing: Mutex<()>,
    state: Mutex<State>,
    /// Template miners, up to the last append (when mining is on). A lock of
    /// their own: records are mined outside the state lock (queries and other
    /// tenants' writes do not wait on it). Taken after `state` when both are
    /// held, never before.
    miners: Mutex<Option<templates::Miners>>,
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
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the manifest `change` makes of the current one, then `install`s it
    /// (with whatever goes with it: readers dropped, memtables retired) and returns
    /// what `install` does. `change` and `install` run under the state lock; the
    /// file's write, fsyncs and rename between them do not, so ingest and queries
    /// never wait on them. Writers take turns ([`Engine::publishing`]), so the
    /// manifest `change` saw is still the current one when `install` runs. Nothing
    /// changes when publishing fails.
    fn publish_manifest<T>(
        &self,
        change: impl FnOnce(&State) -> Manifest,
        install: impl FnOnce(&mut State, Manifest) -> T,
    ) -> Result<T> {
        let _turn = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let next = change(&self.state());
        next.publish(&*self.cfg.fs, &self.dir)?;
        let local = next.local_bytes();
        let mut st = self.state();
        let out = install(&mut st, next);
        st.local_bytes = local;
        Ok(out)
    }

    fn miners(&self) -> MutexGuard<'_, Option<templates::Miners>> {
        self.miners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `records` their template ids (when mining is on): after their WAL
    /// append, before they enter the memtable, outside the state lock.
    fn mine(&self, tenant: &Tenant, records: &mut [Record]) {
        if let Some(m) = self.miners().as_mut() {
            m.mine(tenant, records);
        }
    }

    /// `tenant`'s templates, most frequent first (none when mining is off).
    pub fn templates(&self, tenant: &Tenant) -> Vec<TemplateInfo> {
        self.miners()
            .as_ref()
            .map_or_else(Vec::new, |m| m.list(tenant))
    }

    /// The `_template` values `_template:id` stands for: `id` and the ids of
    /// templates folded into it ([`crate::template::Miner::canonical`]).
    pub fn template_ids(&self, tenant: &Tenant, id: u64) -> Vec<u64> {
        self.miners()
            .as_ref()
            .map_or_else(|| vec![id], |m| m.ids_of(tenant, id))
    }

    /// Templates held in memory, over every tenant.
    pub fn templates_held(&self) -> usize {
        self.miners().as_ref().map_or(0, templates::Miners::len)
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

    /// Flushes, then closes the WAL.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        self.wal.close()?;
        Ok(())
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

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
