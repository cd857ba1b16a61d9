//! Flush: the memtable frozen and written to segments, published in freeze order
//! under a manifest with the new checkpoint, then the WAL checkpointed.

use super::*;

impl Engine {
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
                        self.miners().as_ref().map(templates::Miners::freeze),
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
    pub(super) async fn wait_turn(&self, tickets: u64) -> Result<()> {
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
    pub(super) async fn publish_flush(
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
        let old_templates = self.publish_manifest(
            |st| {
                let mut next = st.manifest.clone();
                next.segments.extend(entries);
                next.next_segment = next.next_segment.max(st.next_seq);
                next.checkpoint_lsn = checkpoint;
                next.producers = producers;
                next.positions = positions;
                next.raw_bytes += frozen.raw_bytes();
                if let Some(name) = &templates_file {
                    next.templates = Some(name.clone());
                }
                next
            },
            |st, next| {
                let old = std::mem::replace(&mut st.manifest, next).templates;
                // The records are in the listed segments now: the frozen memtable
                // leaves the read view in the same step.
                st.frozen.retain(|m| !Arc::ptr_eq(m, frozen));
                old.filter(|o| templates_file.as_ref().is_some_and(|n| n != o))
            },
        )?;
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
    pub(super) fn write_parts(
        &self,
        frozen: &Memtable,
        first_seq: u64,
    ) -> Result<Vec<SegmentEntry>> {
        slow_disk_hook();
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
                            let records = g.records().collect();
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
}

/// A fault-injection hook for the overload tests: with
/// `HEIMDALL_TEST_FLUSH_DELAY_MS=N`, every flush waits N ms before it writes, as
/// on a disk slower than the writers, so that a test's surge meets the backlog
/// limit on any machine (a fast disk otherwise keeps up with a client in Python).
fn slow_disk_hook() {
    static DELAY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("HEIMDALL_TEST_FLUSH_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(ms) = delay {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}
