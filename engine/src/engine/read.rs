//! The read side: word search, snapshots of the segments and memtable a query
//! runs on, and the stored columns.

use super::*;

impl Engine {
    /// Records of `tenant` whose `_msg` contains every word, newest first, at most
    /// `limit`.
    pub fn search(&self, tenant: &Tenant, words: &[&str], limit: usize) -> Result<Vec<Record>> {
        let (mem, mut segments): (MemSnapshot, Vec<SegmentEntry>) = {
            let st = self.state();
            let segs = st
                .manifest
                .segments
                .iter()
                .filter(|s| s.tenant == tenant.as_str())
                .cloned()
                .collect();
            (st.unflushed(tenant, (i64::MIN, i64::MAX)), segs)
        };
        let mut out: Vec<Record> = mem
            .records()
            .filter(|r| {
                words
                    .iter()
                    .all(|w| crate::token::contains_token(&r.msg, w))
            })
            .cloned()
            .collect();
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
    /// What a query reads, as of one instant: `tenant`'s records still in memory
    /// (not yet in a published segment) on the days `time` (nanoseconds,
    /// `[start, end)`) touches, and its published segments overlapping `time`,
    /// open. The engine lock is held only to take the references: the caller
    /// reads both without it, so queries never hold up writes. Readers are opened
    /// once and cached; opening under the lock is what makes the list and the
    /// files one consistent view.
    pub fn snapshot(&self, tenant: &Tenant, time: (i64, i64)) -> Result<Snapshot> {
        self.snapshot_with_labels(tenant, time, &[])
    }
    /// [`Self::snapshot`] of only the segments that may hold records carrying every
    /// stream label of `labels` (`name=value`), by the manifest's label lists:
    /// the others are not opened (an offloaded one is not fetched).
    pub fn snapshot_with_labels(
        &self,
        tenant: &Tenant,
        time: (i64, i64),
        labels: &[String],
    ) -> Result<Snapshot> {
        let mut st = self.state();
        let memtable = st.unflushed(tenant, time);
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
        Ok(Snapshot {
            memtable,
            segments: out.into_iter().flatten().collect(),
        })
    }
    /// The columns `tenant`'s records may have, from metadata alone (no record is
    /// read): the field columns of its local segments' footers and of offloaded
    /// segments whose reader is open (an offloaded footer is not fetched for this),
    /// and the fields of its records in memory. Fields kept in a segment's overflow
    /// column are not listed.
    pub fn columns(&self, tenant: &Tenant) -> Result<StoredColumns> {
        use crate::segment::ColumnKind;
        let (mem, readers) = {
            let mut st = self.state();
            let mem = st.unflushed(tenant, (i64::MIN, i64::MAX));
            let entries: Vec<SegmentEntry> = st
                .manifest
                .segments
                .iter()
                .filter(|e| e.tenant == tenant.as_str())
                .cloned()
                .collect();
            let mut readers = Vec::with_capacity(entries.len());
            for e in entries {
                match st.readers.get(&e.file) {
                    Some(r) => readers.push(r),
                    None if e.is_local() => {
                        readers.push(st.reader(&self.dir, self.tier.as_ref(), &e)?);
                    }
                    None => {}
                }
            }
            (mem, readers)
        };
        let mut out = StoredColumns::default();
        let kind = |v: &crate::model::Value| match v {
            crate::model::Value::Str(_) => ColumnKind::Str,
            crate::model::Value::I64(_) => ColumnKind::I64,
            crate::model::Value::F64(_) => ColumnKind::F64,
            crate::model::Value::Bool(_) => ColumnKind::Bool,
        };
        for r in mem.records() {
            out.level |= r.level.is_some();
            for (k, v) in &r.fields {
                out.fields.entry(k.clone()).or_default().insert(kind(v));
            }
        }
        for reader in readers {
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
    pub(super) fn open_remote(
        &self,
        todo: Vec<(usize, SegmentEntry)>,
    ) -> Result<Vec<(usize, SegmentHandle)>> {
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
}
