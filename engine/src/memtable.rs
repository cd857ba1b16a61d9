//! The memtable: acknowledged records not yet in a segment, grouped by tenant and
//! time partition, queryable by a scan with the shared tokenizer.

use std::collections::BTreeMap;

use crate::model::{Record, Tenant};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The UTC day of a timestamp as `YYYYMMDD`.
pub fn partition_of(time_ns: i64) -> String {
    day_name(time_ns.div_euclid(NANOS_PER_DAY))
}

fn day_name(day: i64) -> String {
    let (y, m, d) = crate::ingest::time::civil_from_days(day);
    format!("{y:04}{m:02}{d:02}")
}

/// Rough in-memory size of a record, for the flush threshold.
pub fn record_bytes(r: &Record) -> usize {
    64 + r.msg.len()
        + r.level.as_ref().map_or(0, String::len)
        + r.stream
            .iter()
            .map(|(k, v)| k.len() + v.len() + 32)
            .sum::<usize>()
        + r.fields
            .iter()
            .map(|(k, v)| k.len() + v.text_len() + 32)
            .sum::<usize>()
}

/// Records a chunk holds at most: chunks start small (a quiet tenant's day costs
/// little) and double up to this.
const CHUNK_RECORDS_MAX: usize = 8192;
const CHUNK_RECORDS_MIN: usize = 64;

/// An append-only run of records with a fixed capacity. The memtable appends to
/// it under the engine lock; a snapshot holds the chunk and the length it saw,
/// and reads that many records with no lock at all (records past the length are
/// not looked at; a set slot never changes).
#[derive(Debug)]
pub struct Chunk {
    slots: Box<[std::sync::OnceLock<Record>]>,
    len: std::sync::atomic::AtomicUsize,
}

impl Chunk {
    fn with_capacity(n: usize) -> Chunk {
        Chunk {
            slots: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
            len: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Appends `r`, or gives it back when full. One appender at a time (the
    /// part's owner).
    fn push(&self, r: Record) -> Result<(), Record> {
        use std::sync::atomic::Ordering;
        let i = self.len.load(Ordering::Relaxed);
        let Some(slot) = self.slots.get(i) else {
            return Err(r);
        };
        slot.set(r)?;
        // Published after the slot is set: a reader that sees the length sees it.
        self.len.store(i + 1, Ordering::Release);
        Ok(())
    }

    fn len(&self) -> usize {
        self.len.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The first `n` records.
    fn records(&self, n: usize) -> impl Iterator<Item = &Record> + '_ {
        self.slots
            .iter()
            .take(n)
            .filter_map(std::sync::OnceLock::get)
    }

    /// Its records, moved out when no snapshot shares it, cloned otherwise.
    fn into_records(this: std::sync::Arc<Chunk>) -> Vec<Record> {
        match std::sync::Arc::try_unwrap(this) {
            Ok(c) => c
                .slots
                .into_vec()
                .into_iter()
                .filter_map(std::sync::OnceLock::into_inner)
                .collect(),
            Err(shared) => shared.records(shared.len()).cloned().collect(),
        }
    }
}

/// One (tenant, day) of the memtable.
#[derive(Debug, Default)]
pub struct Part {
    chunks: Vec<std::sync::Arc<Chunk>>,
    /// Per record, the sources its batch moved (an id of `Memtable::origins`; 0:
    /// none): a retraction takes back only records its source stored.
    origins: Vec<u32>,
    bytes: usize,
}

impl Part {
    /// Appends `r`; the bytes of the slots of a chunk it had to start (0 when it
    /// found room): the memtable counts them, filled or not.
    fn push(&mut self, r: Record) -> usize {
        let r = match self.chunks.last() {
            Some(c) => match c.push(r) {
                Ok(()) => return 0,
                Err(r) => r,
            },
            None => r,
        };
        let cap = self.chunks.last().map_or(CHUNK_RECORDS_MIN, |c| {
            (c.slots.len() * 2).min(CHUNK_RECORDS_MAX)
        });
        let c = Chunk::with_capacity(cap);
        // A fresh chunk has room.
        let _ = c.push(r);
        self.chunks.push(std::sync::Arc::new(c));
        cap * std::mem::size_of::<std::sync::OnceLock<Record>>()
    }

    /// Its records, in insertion order.
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.chunks.iter().flat_map(|c| c.records(c.len()))
    }

    fn len(&self) -> usize {
        self.origins.len()
    }
}

/// Records of the memtable as of one instant, shared with it (no record is
/// copied): what a query reads from memory, with no lock held.
#[derive(Debug, Clone, Default)]
pub struct MemSnapshot {
    chunks: Vec<(std::sync::Arc<Chunk>, usize)>,
}

impl MemSnapshot {
    /// Its records.
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.chunks.iter().flat_map(|(c, n)| c.records(*n))
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|(_, n)| n).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records by (tenant, UTC day number).
#[derive(Debug, Default)]
pub struct Memtable {
    parts: BTreeMap<(Tenant, i64), Part>,
    /// The source keys of positioned batches (id - 1 -> keys), interned.
    origins: Vec<Vec<String>>,
    origin_ids: std::collections::HashMap<Vec<String>, u32>,
    bytes: usize,
    /// Bytes of the chunks' record slots, filled or not (a chunk's are allocated
    /// when it starts): counted in [`Self::bytes`] besides the records' own size.
    slot_bytes: usize,
    rows: u64,
    raw_bytes: u64,
    /// When the first record went in (the age policy flushes by it).
    first_at: Option<std::time::Instant>,
}

/// Records of one tenant to be written as one segment: one day, or a run of
/// consecutive small days (see [`Memtable::segments`]).
#[derive(Debug)]
pub struct SegmentGroup<'a> {
    /// The tenant.
    pub tenant: &'a Tenant,
    /// The partition: the first day, `YYYYMMDD`.
    pub partition: String,
    /// The records' parts, one per day.
    pub parts: Vec<&'a Part>,
}

impl SegmentGroup<'_> {
    /// Its records.
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.parts.iter().flat_map(|p| p.records())
    }
}

impl Memtable {
    /// How long ago its first record went in; `None` while empty.
    pub fn age(&self) -> Option<std::time::Duration> {
        self.first_at.map(|t| t.elapsed())
    }

    /// Adds records of `tenant`; `raw_bytes` is their input size.
    pub fn insert(&mut self, tenant: &Tenant, records: Vec<Record>, raw_bytes: u64) {
        self.insert_from(tenant, records, raw_bytes, &[]);
    }

    /// [`Self::insert`] for a batch that moved the numbered sources `sources` (their
    /// position keys): [`Self::remove`] can then take them back for one of them.
    pub fn insert_from(
        &mut self,
        tenant: &Tenant,
        records: Vec<Record>,
        raw_bytes: u64,
        sources: &[String],
    ) {
        let origin = if sources.is_empty() {
            0
        } else {
            match self.origin_ids.get(sources) {
                Some(id) => *id,
                None => {
                    self.origins.push(sources.to_vec());
                    let id = self.origins.len() as u32;
                    self.origin_ids.insert(sources.to_vec(), id);
                    id
                }
            }
        };
        self.raw_bytes += raw_bytes;
        if self.first_at.is_none() && !records.is_empty() {
            self.first_at = Some(std::time::Instant::now());
        }
        // Consecutive records of a batch are mostly of one day: look the part up
        // once per run of a day, not once per record.
        let mut current: Option<(i64, &mut Part)> = None;
        for r in records {
            let day = r.time_ns.div_euclid(NANOS_PER_DAY);
            let part = match current.take() {
                Some((d, p)) if d == day => p,
                _ => self.parts.entry((tenant.clone(), day)).or_default(),
            };
            let b = record_bytes(&r);
            part.bytes += b;
            self.slot_bytes += part.push(r);
            part.origins.push(origin);
            self.bytes += b;
            self.rows += 1;
            current = Some((day, part));
        }
    }

    /// Removes the records of `tenant` stored by a batch that moved source
    /// `source` (see [`Self::insert_from`]) and that `drop` picks; how many went.
    pub fn remove(
        &mut self,
        tenant: &Tenant,
        source: &str,
        mut drop: impl FnMut(&Record) -> bool,
    ) -> u64 {
        let from_source: Vec<bool> = std::iter::once(false)
            .chain(
                self.origins
                    .iter()
                    .map(|keys| keys.iter().any(|k| k == source)),
            )
            .collect();
        let mut removed = 0u64;
        let mut slots = 0usize;
        for ((t, _), part) in self.parts.iter_mut() {
            if t != tenant {
                continue;
            }
            // Rebuilt into new chunks: a snapshot holding the old ones keeps
            // what it saw.
            let chunks = std::mem::take(&mut part.chunks);
            let old_slots: usize = chunks
                .iter()
                .map(|c| c.slots.len() * std::mem::size_of::<std::sync::OnceLock<Record>>())
                .sum();
            self.slot_bytes = self.slot_bytes.saturating_sub(old_slots);
            let origins = std::mem::take(&mut part.origins);
            let records = chunks.into_iter().flat_map(Chunk::into_records);
            for (r, o) in records.zip(origins) {
                if from_source.get(o as usize) == Some(&true) && drop(&r) {
                    let b = record_bytes(&r);
                    part.bytes -= b;
                    self.bytes -= b;
                    self.rows -= 1;
                    self.raw_bytes = self.raw_bytes.saturating_sub(r.msg.len() as u64 + 1);
                    removed += 1;
                } else {
                    slots += part.push(r);
                    part.origins.push(o);
                }
            }
        }
        self.slot_bytes += slots;
        self.parts.retain(|_, p| p.len() > 0);
        removed
    }

    /// Approximate memory held: the records, and their chunks' slots.
    pub fn bytes(&self) -> usize {
        self.bytes + self.slot_bytes
    }

    /// Records held.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Input bytes of the records held.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// The segments a flush writes: per tenant, each day on its own, except that
    /// consecutive days are packed into one segment while together they hold less
    /// than `pack_bytes` (sparse logs would otherwise make one tiny segment per day,
    /// each paying for its own dictionaries, footer and manifest entry).
    pub fn segments(&self, pack_bytes: usize) -> Vec<SegmentGroup<'_>> {
        let mut out: Vec<SegmentGroup<'_>> = Vec::new();
        let mut open: Option<(usize, &Tenant)> = None;
        for ((tenant, day), part) in &self.parts {
            let fits =
                open.is_some_and(|(bytes, t)| t == tenant && bytes + part.bytes < pack_bytes);
            match out.last_mut() {
                Some(g) if fits => {
                    g.parts.push(part);
                    open = open.map(|(b, t)| (b + part.bytes, t));
                }
                _ => {
                    out.push(SegmentGroup {
                        tenant,
                        partition: day_name(*day),
                        parts: vec![part],
                    });
                    open = Some((part.bytes, tenant));
                }
            }
        }
        out
    }

    /// Adds to `out` every record of `tenant` on the days `time` (nanoseconds,
    /// `[start, end)`) touches, by reference.
    pub fn snapshot(&self, tenant: &Tenant, time: (i64, i64), out: &mut MemSnapshot) {
        if time.0 >= time.1 {
            return;
        }
        let first = time.0.div_euclid(NANOS_PER_DAY);
        let last = (time.1 - 1).div_euclid(NANOS_PER_DAY);
        for (_, part) in self
            .parts
            .range((tenant.clone(), first)..=(tenant.clone(), last))
        {
            for c in &part.chunks {
                let n = c.len();
                if n > 0 {
                    out.chunks.push((std::sync::Arc::clone(c), n));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(day: i64, len: usize) -> Record {
        Record {
            time_ns: day * NANOS_PER_DAY + 1,
            msg: "x".repeat(len),
            stream: Default::default(),
            level: None,
            fields: Vec::new(),
        }
    }

    #[test]
    fn small_consecutive_days_share_a_segment_big_ones_do_not() {
        let a = Tenant::default();
        let b = Tenant::new("b").unwrap();
        let mut m = Memtable::default();
        // Days 0-2 small, day 3 big, days 4-5 small; tenant b small.
        let mut recs: Vec<Record> = (0..3).map(|d| rec(d, 100)).collect();
        recs.push(rec(3, 10_000));
        recs.extend((4..6).map(|d| rec(d, 100)));
        m.insert(&a, recs, 0);
        m.insert(&b, vec![rec(0, 100), rec(1, 100)], 0);
        let groups: Vec<(String, String, usize)> = m
            .segments(5_000)
            .iter()
            .map(|g| {
                (
                    g.tenant.as_str().to_string(),
                    g.partition.clone(),
                    g.records().count(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("b".into(), "19700101".into(), 2),
                ("default".into(), "19700101".into(), 3),
                ("default".into(), "19700104".into(), 1),
                ("default".into(), "19700105".into(), 2),
            ]
        );
        // No packing: one segment per (tenant, day).
        assert_eq!(m.segments(0).len(), 8);
    }

    #[test]
    fn a_snapshot_keeps_what_it_saw_while_the_memtable_changes() {
        let t = Tenant::default();
        let mut m = Memtable::default();
        let key = "kafka:topic:0".to_string();
        // Enough records for several chunks on day 0, and one on day 2.
        let recs: Vec<Record> = (0..1000).map(|i| rec(0, i % 7 + 1)).collect();
        m.insert_from(&t, recs, 0, std::slice::from_ref(&key));
        m.insert(&t, vec![rec(2, 3)], 0);
        let all = |m: &Memtable, time| {
            let mut s = MemSnapshot::default();
            m.snapshot(&t, time, &mut s);
            s
        };
        let before = all(&m, (i64::MIN, i64::MAX));
        assert_eq!(before.len(), 1001);
        // Only the days a time range touches.
        assert_eq!(all(&m, (0, NANOS_PER_DAY)).len(), 1000);
        assert_eq!(all(&m, (2 * NANOS_PER_DAY, 2 * NANOS_PER_DAY + 1)).len(), 1);
        assert!(all(&m, (NANOS_PER_DAY, 2 * NANOS_PER_DAY)).is_empty());
        assert!(all(&m, (5, 5)).is_empty());
        // Appends after it, and a retraction, do not change it.
        m.insert(&t, (0..500).map(|_| rec(0, 9)).collect(), 0);
        let removed = m.remove(&t, &key, |r| r.msg.len() == 1);
        assert_eq!(removed, 143);
        assert_eq!(before.len(), 1001);
        assert_eq!(before.records().filter(|r| r.msg.len() == 1).count(), 143);
        assert_eq!(before.records().filter(|r| r.msg.len() == 9).count(), 0);
        let after = all(&m, (i64::MIN, i64::MAX));
        assert_eq!(after.len(), 1001 + 500 - 143);
        assert_eq!(after.records().filter(|r| r.msg.len() == 1).count(), 0);
        assert_eq!(m.rows(), after.len() as u64);
        // The slots are counted, filled or not: at least one per record.
        let slot = std::mem::size_of::<std::sync::OnceLock<Record>>();
        assert!(
            m.bytes() >= m.rows() as usize * (slot + 64),
            "{}",
            m.bytes()
        );
        // The flush's view agrees.
        let flushed: usize = m
            .segments(usize::MAX)
            .iter()
            .map(|g| g.records().count())
            .sum();
        assert_eq!(flushed, after.len());
    }
}
