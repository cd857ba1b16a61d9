//! Compaction: a tenant's small local segments merged into bigger ones.
//!
//! Planning reads the manifest only: a tenant's local segments smaller than
//! [`CompactionPolicy::small_bytes`], in time order, are cut into runs whose
//! records take at most [`CompactionPolicy::memory_bytes_max`] in memory (by the
//! entries' [`SegmentEntry::memory_bytes`]); a run crosses a day boundary only
//! while it is smaller than the flush's `pack_bytes` (so sparse days share a
//! segment, as they do at a flush, and retention still drops whole days of busy
//! tenants). Each run of two or more is read, written as one segment, and
//! published with its inputs removed in one manifest step; the old files are
//! deleted after (a crash in between leaves orphans, removed at the next open;
//! a query holding a reader keeps reading the unlinked file).
//!
//! Memory is bounded by the budget: one merge holds at most its run's records
//! (a segment whose records alone exceed the budget is never merged). One merge
//! at a time holds the maintenance lock (offload and retention take turns in
//! between), and [`CompactionPolicy::bytes_per_s`] paces the merges.

use super::*;

/// How compaction picks and merges segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Local segments with fewer file bytes than this are merged; bigger ones
    /// are left as they are.
    pub small_bytes: u64,
    /// A tenant's small segments are merged once a run has at least this many.
    pub min_inputs: usize,
    /// Bytes of records (in memory, [`crate::memtable::record_bytes`]) one merge
    /// holds at most, and so about the most an output holds.
    pub memory_bytes_max: u64,
    /// Input file bytes merged per second at most (0: no pause between merges).
    pub bytes_per_s: u64,
}

impl CompactionPolicy {
    /// The background policy: segments under 4 MiB (a flush of a full 64 MiB
    /// memtable writes more), merged four or more at a time into outputs of up
    /// to 64 MiB of records, at most 8 MiB of input a second.
    pub fn background() -> CompactionPolicy {
        CompactionPolicy {
            small_bytes: 4 << 20,
            min_inputs: 4,
            memory_bytes_max: 64 << 20,
            bytes_per_s: 8 << 20,
        }
    }

    /// An explicit `compact`: every local segment, two or more at a time, into
    /// outputs of up to 256 MiB of records, unpaced.
    pub fn everything() -> CompactionPolicy {
        CompactionPolicy {
            small_bytes: u64::MAX,
            min_inputs: 2,
            memory_bytes_max: 256 << 20,
            bytes_per_s: 0,
        }
    }
}

/// The UTC day of a time, as a number.
fn day(time_ns: i64) -> i64 {
    time_ns.div_euclid(86_400 * 1_000_000_000)
}

/// The first run worth merging under `policy` (see the module docs), if any.
/// Segments holding more than half the memory budget are left out: adding a
/// little to one would rewrite a lot.
pub(super) fn plan(
    manifest: &crate::manifest::Manifest,
    policy: &CompactionPolicy,
    pack_bytes: u64,
) -> Option<Vec<SegmentEntry>> {
    let mut by_tenant: std::collections::BTreeMap<&str, Vec<&SegmentEntry>> = Default::default();
    for e in &manifest.segments {
        if e.is_local()
            && e.bytes < policy.small_bytes
            && e.memory_bytes().saturating_mul(2) <= policy.memory_bytes_max
        {
            by_tenant.entry(e.tenant.as_str()).or_default().push(e);
        }
    }
    for (_, mut small) in by_tenant {
        small.sort_by_key(|e| (e.min_time, e.max_time));
        let mut run: Vec<&SegmentEntry> = Vec::new();
        let mut mem = 0u64;
        let min = policy.min_inputs.max(2);
        for e in small {
            let m = e.memory_bytes();
            let crosses = run
                .last()
                .is_some_and(|last| day(last.max_time) != day(e.min_time));
            let fits = mem.saturating_add(m) <= policy.memory_bytes_max
                && (!crosses || mem.saturating_add(m) < pack_bytes);
            if !fits {
                if run.len() >= min {
                    break;
                }
                run.clear();
                mem = 0;
            }
            run.push(e);
            mem = mem.saturating_add(m);
        }
        if run.len() >= min {
            return Some(run.into_iter().cloned().collect());
        }
    }
    None
}

impl Engine {
    /// Merges small segments under the explicit policy
    /// ([`CompactionPolicy::everything`]): what the `compact` command runs.
    pub async fn compact(&self) -> Result<CompactStats> {
        self.compact_with(&CompactionPolicy::everything(), &|| false)
            .await
    }

    /// Merges segments under `policy` until nothing is left to merge or `stop`
    /// says so (checked between merges and during the pauses that pace them: a
    /// shutdown waits for one merge at most); see the module docs. Read-only
    /// engines do nothing.
    pub async fn compact_with(
        &self,
        policy: &CompactionPolicy,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<CompactStats> {
        const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(100);
        let mut stats = CompactStats::default();
        if self.tier.as_ref().is_some_and(|t| t.cfg.read_only) {
            return Ok(stats);
        }
        while !stop() {
            let started = std::time::Instant::now();
            let Some(read) = self.merge_one(policy).await? else {
                break;
            };
            stats.merged += read.0;
            stats.written += 1;
            if policy.bytes_per_s > 0 {
                let due =
                    std::time::Duration::from_secs_f64(read.1 as f64 / policy.bytes_per_s as f64);
                while let Some(rest) = due.checked_sub(started.elapsed()) {
                    if stop() || rest.is_zero() {
                        break;
                    }
                    tokio::time::sleep(rest.min(STOP_CHECK)).await;
                }
            }
        }
        Ok(stats)
    }

    /// Plans and does one merge; the inputs merged and their file bytes, or
    /// `None` when nothing is left to merge.
    async fn merge_one(&self, policy: &CompactionPolicy) -> Result<Option<(usize, u64)>> {
        let _one_at_a_time = self.compacting.lock().await;
        if let Some(why) = &self.state().failed {
            return Err(EngineError::FlushFailed(why.clone()));
        }
        let olds = {
            let st = self.state();
            plan(&st.manifest, policy, self.cfg.pack_bytes as u64)
        };
        let Some(olds) = olds else {
            return Ok(None);
        };
        let tenant = olds.first().map(|e| e.tenant.clone()).unwrap_or_default();
        let tenant_id = Tenant::new(tenant.clone()).map_err(|e| {
            EngineError::Segment(SegmentError::NotFound(format!(
                "manifest tenant {tenant:?}: {e}"
            )))
        })?;
        let mut records = Vec::new();
        let mut read_bytes = 0u64;
        for old in &olds {
            let r = SegmentReader::open(self.dir.join(&old.file))?;
            for b in 0..r.footer().blocks.len() {
                records.extend(r.records(b)?);
            }
            read_bytes += old.bytes;
        }
        let partition =
            crate::memtable::partition_of(olds.iter().map(|e| e.min_time).min().unwrap_or(0));
        let seq = {
            let mut st = self.state();
            st.next_seq += 1;
            st.next_seq - 1
        };
        let merged =
            self.write_segment_file(&tenant_id, &partition, seq, records.iter().collect())?;
        drop(records);
        self.publish_manifest(
            |st| {
                let mut next = st.manifest.clone();
                next.segments
                    .retain(|s| !olds.iter().any(|o| o.file == s.file));
                next.segments.push(merged);
                next.next_segment = next.next_segment.max(st.next_seq);
                next
            },
            |st, next| {
                st.manifest = next;
                for old in &olds {
                    st.readers.remove(&old.file);
                }
            },
        )?;
        for old in &olds {
            let p = self.dir.join(&old.file);
            self.cfg.fs.remove_file(&p).map_err(io_err("remove", &p))?;
        }
        tracing::debug!(
            tenant = %tenant,
            inputs = olds.len(),
            bytes = read_bytes,
            "compacted"
        );
        Ok(Some((olds.len(), read_bytes)))
    }
    /// Writes `records` as segment number `seq` of (tenant, partition) and returns its
    /// manifest entry (not yet published).
    pub(super) fn write_segment_file(
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
        let mem_bytes: u64 = records
            .iter()
            .map(|r| crate::memtable::record_bytes(r) as u64)
            .sum();
        let (data, footer) = encode_segment(tenant, records, &self.cfg.segment);
        crate::fs::write_atomic(&*self.cfg.fs, &path, &data)?;
        let bytes = data.len() as u64;
        let mut entry = SegmentEntry::local(&footer, partition, rel, bytes, labels);
        entry.mem_bytes = Some(mem_bytes);
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    const DAY: i64 = 86_400 * 1_000_000_000;
    const MIB: u64 = 1 << 20;

    fn seg(tenant: &str, n: u64, day: i64, bytes: u64, mem: u64) -> SegmentEntry {
        SegmentEntry {
            tenant: tenant.into(),
            partition: crate::memtable::partition_of(day * DAY),
            file: format!("segments/{tenant}/{n:010}.seg"),
            rows: 10,
            min_time: day * DAY + n as i64,
            max_time: day * DAY + n as i64 + 1,
            bytes,
            offloaded: None,
            labels: None,
            mem_bytes: Some(mem),
        }
    }

    fn files(run: Option<Vec<SegmentEntry>>) -> Vec<String> {
        run.unwrap_or_default()
            .into_iter()
            .map(|e| e.file)
            .collect()
    }

    #[test]
    fn small_segments_of_a_day_are_planned_together_within_the_budget() {
        let p = CompactionPolicy::background();
        let mut m = Manifest {
            segments: (0..300).map(|n| seg("a", n, 100, 2_000, 40_000)).collect(),
            ..Manifest::default()
        };
        // All 300 (12 MB of records) fit one merge.
        assert_eq!(files(plan(&m, &p, 8 * MIB)).len(), 300);
        // A budget of 1 MB: runs of 25.
        let small = CompactionPolicy {
            memory_bytes_max: 1_000_000,
            ..p.clone()
        };
        assert_eq!(files(plan(&m, &small, 8 * MIB)).len(), 25);
        // Fewer than min_inputs: nothing.
        m.segments.truncate(3);
        assert!(plan(&m, &p, 8 * MIB).is_none());
        // Big files, big records, offloaded ones are left alone.
        m.segments = (0..3).map(|n| seg("a", n, 100, 2_000, 40_000)).collect();
        m.segments.push(seg("a", 10, 100, 5 * MIB, 40_000));
        m.segments.push(seg("a", 11, 100, 2_000, 40 * MIB));
        let mut off = seg("a", 12, 100, 2_000, 40_000);
        off.offloaded = Some(crate::manifest::Offloaded {
            crc32: 0,
            at: 0,
            tail_from: None,
            version: None,
        });
        m.segments.push(off);
        assert!(plan(&m, &p, 8 * MIB).is_none());
        m.segments.push(seg("a", 13, 100, 2_000, 40_000));
        assert_eq!(
            files(plan(&m, &p, 8 * MIB)),
            [0, 1, 2, 13].map(|n| format!("segments/a/{n:010}.seg"))
        );
    }

    #[test]
    fn days_are_packed_while_small_and_tenants_never_mix() {
        let p = CompactionPolicy::background();
        // Tenant b: one segment a day for 10 days, 1 MB each in memory.
        let mut m = Manifest {
            segments: (0..10)
                .map(|d| seg("b", d as u64, 200 + d, 1_000, MIB))
                .collect(),
            ..Manifest::default()
        };
        // Tenant a: only two segments.
        m.segments.push(seg("a", 0, 200, 1_000, 1_000));
        m.segments.push(seg("a", 1, 200, 1_000, 1_000));
        // Days pack while the run stays under pack_bytes (5 MB here): 4 days.
        let run = plan(&m, &p, 5 * MIB).unwrap_or_default();
        assert!(run.iter().all(|e| e.tenant == "b"));
        assert_eq!(run.len(), 4);
        // Under a pack size of 0, days never share a merge: one a day, so none.
        assert!(plan(&m, &p, 0).is_none());
        // An explicit compact takes two of the same tenant.
        let a_only = Manifest {
            segments: m
                .segments
                .iter()
                .filter(|e| e.tenant == "a")
                .cloned()
                .collect(),
            ..Manifest::default()
        };
        assert_eq!(
            plan(&a_only, &CompactionPolicy::everything(), 0).map(|r| r.len()),
            Some(2)
        );
    }
}
