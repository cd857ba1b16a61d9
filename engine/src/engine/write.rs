//! The write path: admission (limits, the record rule, writability, free space),
//! then WAL append and the memtable; positioned batches and retractions of Kafka
//! sources.

use super::*;

impl Engine {
    /// Whether a batch of `records` records may be stored: within the count that
    /// replay accepts ([`walrec::BATCH_RECORDS_MAX`], the same constant the decoder
    /// checks), every record by the shared rules ([`crate::model::check_record`]),
    /// and [`Self::writable`].
    pub(super) fn admit(&self, records: &[Record], positions: usize) -> Result<()> {
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
    pub(super) fn writable(&self) -> Result<()> {
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
            let local = st.local_bytes;
            if local > max {
                return Err(EngineError::DiskBudget { local, max });
            }
        }
        drop(st);
        self.check_free(self.cfg.disk_reserve_bytes)
    }
    /// Fails with [`EngineError::DiskFull`] while fewer than `need` bytes are free
    /// (read at most every 200 ms; an unreadable value passes).
    pub(super) fn check_free(&self, need: u64) -> Result<()> {
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
        let mut records = records;
        self.mine(tenant, &mut records);
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
            st.memtable
                .insert_from(tenant, records, raw_bytes, &sources);
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
    pub(super) async fn retract_locked(&self, tenant: &Tenant, r: &Retract) -> Result<u64> {
        let payload = Bytes::from(walrec::encode_retract(tenant, r));
        self.wal.append_batch(vec![payload]).await?;
        let mut st = self.state();
        let removed = st.memtable.remove(tenant, &r.key, |rec| r.matches(rec));
        let p = retracted(st.positions.get(&r.key), r.next);
        st.positions.insert(r.key.clone(), p);
        Ok(removed)
    }
    pub(super) async fn append(
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
        let mut records = records;
        self.mine(tenant, &mut records);
        let mut st = self.state();
        // Under the gate, like the memtable insert: a flush freezing both sees
        // exactly the batches below its checkpoint.
        if let Some((p, seq)) = producer {
            st.producers
                .record(&crate::dedup::key(tenant, p), *seq, range.first, range.last);
        }
        st.memtable.insert_from(tenant, records, raw_bytes, &[]);
        Ok(range)
    }
}
