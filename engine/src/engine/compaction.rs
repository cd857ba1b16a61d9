//! Compaction: each (tenant, day)'s small segments merged into one.

use super::*;

impl Engine {
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
        let (data, footer) = encode_segment(tenant, records, &self.cfg.segment);
        crate::fs::write_atomic(&*self.cfg.fs, &path, &data)?;
        let bytes = data.len() as u64;
        Ok(SegmentEntry::local(&footer, partition, rel, bytes, labels))
    }
}
