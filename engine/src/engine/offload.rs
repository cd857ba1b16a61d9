//! Offload, retention and the object store's manifest.
//!
//! Offload of one segment, and what a crash at each step leaves:
//! 1. upload the file (multipart when large) and read the object back, comparing
//!    size and CRC-32 with the local file. Crash: an object no manifest lists; the
//!    next offload uploads it again, the store sweep removes it otherwise.
//! 2. put the store's `MANIFEST` listing it. Crash: the store lists it, the local
//!    manifest does not; the local manifest is the truth for this node, and the
//!    next offload uploads the same bytes again.
//! 3. publish the local manifest with the segment marked offloaded. Crash: the
//!    local file is an orphan, removed at the next open.
//! 4. delete the local file.
//!
//! Retention (whole segments past a tenant's maximum age, or its oldest beyond its
//! maximum bytes, across both tiers): both manifests first, then the files and
//! objects; what a crash leaves behind is swept (local orphans at open, objects by
//! [`Engine::sweep_store`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{io_err, Engine, EngineError, Result};
use crate::manifest::{Manifest, Offloaded, SegmentEntry};
use crate::tier::{Tier, TierError, REMOTE_MANIFEST};

/// What [`Engine::offload`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Segments offloaded.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Segments whose offload failed (kept locally, tried again next time). An
    /// unreachable store ends the round at its first failure.
    pub failed: usize,
    /// The first failure, if any.
    pub error: Option<String>,
    /// Bytes of segments on local disk afterwards.
    pub local_bytes: u64,
    /// Bytes of segments in the object store afterwards.
    pub remote_bytes: u64,
}

/// A retention rule. Without `stream`: segments of `tenant` (`*`: every tenant)
/// whose newest record is older than `max_age` go, and the oldest go while the
/// tenant's segments take more than `max_bytes`; the unit is a whole segment (a day
/// of a tenant, or several small days). With `stream`: the records of the streams
/// carrying these labels older than `max_age` go (`max_bytes` does not apply);
/// segments holding such records are rewritten without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// The tenant, or `*`.
    pub tenant: String,
    /// Only the streams whose labels include all of these.
    pub stream: Option<crate::model::Labels>,
    /// Maximum age of the newest record of a segment.
    pub max_age: Option<Duration>,
    /// Maximum bytes of the tenant's segments, both tiers together.
    pub max_bytes: Option<u64>,
}

/// What [`Engine::retain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Segments deleted from local disk.
    pub local_segments: usize,
    /// Segments deleted from the object store.
    pub remote_segments: usize,
    /// Segments rewritten without a stream's expired records (stream rules).
    pub rewritten_segments: usize,
    /// Their rows.
    pub rows: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// An offloaded segment whose index section and footer together take at most this
/// is opened with one GET of both.
const OPEN_WITH_INDEX_MAX: u64 = 4 << 20;

pub(super) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The manifest to open with when an object store is configured: read-only, the
/// store's; otherwise the local one, or the store's when the data directory has
/// none (a new or lost disk: everything offloaded comes back). The next segment
/// number is never below the store's, so no object is ever overwritten by a
/// different segment.
pub(super) fn open_manifest(
    fs: &dyn crate::fs::Fs,
    dir: &std::path::Path,
    tier: &Tier,
) -> Result<Manifest> {
    let remote = || -> Result<Option<Manifest>> {
        let Some(b) = tier.store.get(REMOTE_MANIFEST)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&b);
        let name = std::path::PathBuf::from(format!("{}/{REMOTE_MANIFEST}", tier.cfg.url));
        Ok(Some(Manifest::parse(&text, &name)?))
    };
    if tier.cfg.read_only {
        let m = remote()?.unwrap_or_else(|| {
            tracing::warn!(url = %tier.cfg.url, "the object store has no manifest yet: no data");
            Manifest::default()
        });
        return Ok(m);
    }
    match Manifest::load_existing(dir)? {
        Some(local) => Ok(local),
        None => match remote()? {
            Some(mut m) => {
                tracing::info!(
                    url = %tier.cfg.url,
                    segments = m.segments.len(),
                    "no local manifest: opening the object store's (the offloaded segments)"
                );
                m.checkpoint_lsn = 1;
                m.publish(fs, dir)?;
                Ok(m)
            }
            None => Ok(Manifest::default()),
        },
    }
}

/// The store's copy of the template file `name` (a lost disk, a read-only node),
/// also written to the data directory unless the node is read-only.
pub(super) fn fetch_templates(
    fs: &dyn crate::fs::Fs,
    dir: &std::path::Path,
    tier: &Tier,
    name: &str,
) -> Result<super::templates::Saved> {
    let path = dir.join(name);
    let Some(bytes) = tier.store.get(name)? else {
        return Err(super::TemplatesError::Corrupt {
            path: std::path::PathBuf::from(format!("{}/{name}", tier.cfg.url)),
            what: "the manifest names it, but neither the data directory nor the object \
                   store has it"
                .into(),
        }
        .into());
    };
    let saved = super::templates::decode(&path, &bytes)?;
    if !tier.cfg.read_only {
        super::templates::write(fs, dir, name, &bytes)?;
    }
    Ok(saved)
}

impl Engine {
    /// The object store, when one is configured.
    pub fn tier(&self) -> Option<&Arc<Tier>> {
        self.tier.as_ref()
    }

    fn tier_writable(&self) -> Result<&Arc<Tier>> {
        let t = self.tier.as_ref().ok_or_else(|| {
            EngineError::Tier(TierError::Config("no object store is configured".into()))
        })?;
        if t.cfg.read_only {
            return Err(EngineError::ReadOnly);
        }
        Ok(t)
    }

    /// Before any write to the bucket: this node still holds the prefix's lease
    /// (renewed when half of it is gone).
    fn bucket_write(&self, tier: &Tier) -> Result<()> {
        match &self.lease {
            Some(l) => l.lease.check(tier),
            None => Ok(()),
        }
    }

    /// Gives the object store lease up now (a clean stop; also done when the
    /// engine is dropped): the next writable node need not wait it out.
    pub fn release_lease(&self) {
        if let Some(l) = &self.lease {
            l.release();
        }
    }

    /// Renews the object store lease (a background task calls it a few times per
    /// lease time); fails once another node took it.
    pub fn renew_lease(&self) -> Result<()> {
        match (&self.lease, &self.tier) {
            (Some(l), Some(t)) => l.lease.renew(t),
            _ => Ok(()),
        }
    }

    /// Offloads local segments: with `force` every one, otherwise those whose
    /// newest record is older than the configured age, then the oldest while local
    /// segments take more than the disk budget. Each is uploaded, verified, listed
    /// in both manifests and only then deleted locally (module docs). A failure
    /// leaves that segment local and goes on with the next; the stats say how many
    /// failed. Blocking: call it from a thread of your own, not a runtime worker.
    pub fn offload(&self, force: bool) -> Result<OffloadStats> {
        let tier = Arc::clone(self.tier_writable()?);
        let _one_at_a_time = self.compacting.blocking_lock();
        if let Err(e @ (EngineError::LeaseLost(_) | EngineError::LeaseHeld { .. })) =
            self.bucket_write(&tier)
        {
            return Err(e);
        }
        let manifest = self.state().manifest.clone();
        let cutoff = now_ns().saturating_sub(tier.cfg.offload_after.as_nanos() as i64);
        let mut local: Vec<&SegmentEntry> =
            manifest.segments.iter().filter(|s| s.is_local()).collect();
        local.sort_by_key(|s| (s.max_time, s.file.clone()));
        let mut budget_left = manifest.local_bytes();
        let mut chosen = Vec::new();
        for s in local {
            let over = tier.cfg.local_bytes_max.is_some_and(|m| budget_left > m);
            if force || s.max_time < cutoff || over {
                budget_left -= s.bytes;
                chosen.push(s.clone());
            }
        }
        let mut stats = OffloadStats::default();
        for s in chosen {
            match self.offload_one(&tier, &s) {
                Ok(()) => {
                    stats.segments += 1;
                    stats.bytes += s.bytes;
                }
                Err(e) => {
                    tracing::warn!(segment = %s.file, error = %e, "offload failed; the segment stays local");
                    stats.failed += 1;
                    stats.error.get_or_insert_with(|| e.to_string());
                    // An unreachable store fails the next ones the same way, each
                    // after the whole write deadline: the round ends here.
                    if matches!(e, EngineError::Tier(TierError::Unavailable { .. })) {
                        break;
                    }
                }
            }
        }
        let m = &self.state().manifest;
        stats.local_bytes = m.local_bytes();
        stats.remote_bytes = m
            .segments
            .iter()
            .filter(|s| !s.is_local())
            .map(|s| s.bytes)
            .sum();
        Ok(stats)
    }

    fn offload_one(&self, tier: &Tier, s: &SegmentEntry) -> Result<()> {
        self.bucket_write(tier)?;
        let path = self.dir.join(&s.file);
        let bytes = Bytes::from(std::fs::read(&path).map_err(io_err("read", &path))?);
        let crc32 = crc32fast::hash(&bytes);
        tier.store.upload(&s.file, bytes.clone())?;
        // Verify: the object, read back whole, has the file's size and checksum.
        let back = tier.store.get(&s.file)?.unwrap_or_default();
        if back.len() != bytes.len() || crc32fast::hash(&back) != crc32 {
            return Err(EngineError::Tier(TierError::Verify {
                object: s.file.clone(),
                what: format!(
                    "{} bytes with CRC {:#010x} uploaded, {} bytes with CRC {:#010x} read back",
                    bytes.len(),
                    crc32,
                    back.len(),
                    crc32fast::hash(&back)
                ),
            }));
        }
        // What lets a reader open the object in one request.
        let local = crate::segment::SegmentReader::open(&path)?;
        let n = bytes.len();
        let footer_len = bytes
            .get(n.saturating_sub(16)..n.saturating_sub(12))
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        let footer_start = (n as u64).saturating_sub(16 + u64::from(footer_len));
        // The whole index section with the footer when that is small (one request
        // answers every index lookup), else the footer alone (the directory is
        // then a second request): docs/decisions/0005-object-store-reads.md.
        let tail_from = match local.footer().index {
            Some(ix) if (n as u64).saturating_sub(ix.offset) <= OPEN_WITH_INDEX_MAX => ix.offset,
            _ => footer_start,
        };
        let version = bytes.get(8..10).map(|v| u16::from_le_bytes([v[0], v[1]]));
        drop(local);
        let mark = Offloaded {
            crc32,
            at: now_ns(),
            tail_from: Some(tail_from),
            version,
        };
        let marked = |m: &Manifest| {
            let mut next = m.clone();
            for e in next.segments.iter_mut().filter(|e| e.file == s.file) {
                e.offloaded = Some(mark);
            }
            next
        };
        let remote = marked(&self.state().manifest).remote();
        self.put_remote_manifest(tier, &remote)?;
        self.publish_manifest(
            |st| marked(&st.manifest),
            |st, next| {
                st.manifest = next;
                // Queries opening it from now on read the object; open readers
                // keep their mapping of the (unlinked) file.
                st.readers.remove(&s.file);
            },
        )?;
        self.cfg
            .fs
            .remove_file(&path)
            .map_err(io_err("remove", &path))?;
        tracing::info!(segment = %s.file, bytes = s.bytes, "offloaded");
        Ok(())
    }

    /// Puts the template file `name` (the local manifest's) in the store unless it
    /// is there already; the name the store's manifest is to list (the one put
    /// before, if the file was replaced by a newer flush meanwhile), and the
    /// object that name replaces.
    fn upload_templates(
        &self,
        tier: &Tier,
        name: Option<String>,
    ) -> Result<(Option<String>, Option<String>)> {
        let before = self.state().remote_templates.clone();
        let mut name = name;
        // A flush may replace the file between reading the manifest and reading
        // the file: then the newer one goes.
        for _ in 0..8 {
            let Some(n) = name else {
                return Ok((before, None));
            };
            if before.as_deref() == Some(n.as_str()) {
                return Ok((before, None));
            }
            let path = self.dir.join(&n);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    tier.store.put(&n, Bytes::from(bytes))?;
                    self.state().remote_templates = Some(n.clone());
                    return Ok((Some(n), before));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    name = self.state().manifest.templates.clone();
                }
                Err(e) => return Err(io_err("read", &path)(e)),
            }
        }
        Ok((before, None))
    }

    /// Puts the store's manifest `m`, with the template file it names put first
    /// (the store's manifest never names an object the store lacks).
    fn put_remote_manifest(&self, tier: &Tier, m: &Manifest) -> Result<()> {
        self.bucket_write(tier)?;
        let mut m = m.clone();
        let (templates, replaced) = self.upload_templates(tier, m.templates.take())?;
        m.templates = templates;
        let text = serde_json::to_vec(&m).map_err(|e| {
            EngineError::Tier(TierError::Config(format!("encoding the manifest: {e}")))
        })?;
        tier.store.put(REMOTE_MANIFEST, Bytes::from(text))?;
        if let Some(old) = replaced {
            // The store's manifest no longer names it.
            if let Err(e) = tier.store.delete(&old) {
                tracing::warn!(object = %old, error = %e, "could not remove an old template object");
            }
        }
        Ok(())
    }

    /// Applies retention `rules` (the first rule naming a tenant wins over `*`):
    /// the segments that go leave both manifests first, then local disk and the
    /// object store. Blocking, like [`Self::offload`].
    pub fn retain(&self, rules: &[RetentionRule]) -> Result<RetentionStats> {
        if self.tier.as_ref().is_some_and(|t| t.cfg.read_only) {
            return Err(EngineError::ReadOnly);
        }
        let _one_at_a_time = self.compacting.blocking_lock();
        let manifest = self.state().manifest.clone();
        let now = now_ns();
        let mut by_tenant: std::collections::BTreeMap<&str, Vec<&SegmentEntry>> =
            Default::default();
        for s in &manifest.segments {
            by_tenant.entry(s.tenant.as_str()).or_default().push(s);
        }
        let mut doomed: Vec<SegmentEntry> = Vec::new();
        for (tenant, mut segs) in by_tenant {
            let whole = |r: &&RetentionRule| r.stream.is_none();
            let Some(rule) = rules
                .iter()
                .filter(whole)
                .find(|r| r.tenant == tenant)
                .or_else(|| rules.iter().filter(whole).find(|r| r.tenant == "*"))
            else {
                continue;
            };
            segs.sort_by_key(|s| (s.max_time, s.file.clone()));
            let mut total: u64 = segs.iter().map(|s| s.bytes).sum();
            for s in segs {
                let old = rule
                    .max_age
                    .is_some_and(|a| s.max_time < now.saturating_sub(a.as_nanos() as i64));
                let big = rule.max_bytes.is_some_and(|m| total > m);
                if old || big {
                    total -= s.bytes;
                    doomed.push(s.clone());
                }
            }
        }
        let mut stats = RetentionStats::default();
        self.retain_streams(rules, &doomed, now, &mut stats)?;
        if doomed.is_empty() {
            return Ok(stats);
        }
        let gone = |m: &Manifest| {
            let mut next = m.clone();
            next.segments
                .retain(|e| !doomed.iter().any(|d| d.file == e.file));
            next
        };
        self.publish_manifest(
            |st| gone(&st.manifest),
            |st, next| {
                st.manifest = next;
                for d in &doomed {
                    st.readers.remove(&d.file);
                }
            },
        )?;
        if doomed.iter().any(|d| !d.is_local()) {
            if let Some(t) = &self.tier {
                let remote = self.state().manifest.remote();
                self.put_remote_manifest(t, &remote)?;
            }
        }
        for d in &doomed {
            stats.rows += d.rows;
            stats.bytes += d.bytes;
            if d.is_local() {
                let p = self.dir.join(&d.file);
                self.cfg.fs.remove_file(&p).map_err(io_err("remove", &p))?;
                stats.local_segments += 1;
            } else if let Some(t) = &self.tier {
                t.store.delete(&d.file)?;
                t.cache.forget(&d.file);
                stats.remote_segments += 1;
            }
        }
        tracing::info!(
            local = stats.local_segments,
            remote = stats.remote_segments,
            rows = stats.rows,
            bytes = stats.bytes,
            "retention deleted segments"
        );
        Ok(stats)
    }

    /// Stream rules: rewrites each segment holding records of a selected stream
    /// older than the rule's age without them (deleting it when nothing is left).
    /// The new segment is local (the next offload moves it); it replaces the old
    /// one in both manifests in one step, then the old file or object goes.
    fn retain_streams(
        &self,
        rules: &[RetentionRule],
        doomed: &[SegmentEntry],
        now: i64,
        stats: &mut RetentionStats,
    ) -> Result<()> {
        for rule in rules {
            let (Some(sel), Some(age)) = (&rule.stream, rule.max_age) else {
                continue;
            };
            let cutoff = now.saturating_sub(age.as_nanos() as i64);
            let expired = |r: &crate::model::Record| {
                r.time_ns < cutoff && sel.iter().all(|(k, v)| r.stream.get(k) == Some(v))
            };
            let segs: Vec<SegmentEntry> = self
                .state()
                .manifest
                .segments
                .iter()
                .filter(|s| rule.tenant == "*" || s.tenant == rule.tenant)
                .filter(|s| s.min_time < cutoff && !doomed.iter().any(|d| d.file == s.file))
                .cloned()
                .collect();
            for seg in segs {
                let reader = self.state().reader(&self.dir, self.tier.as_ref(), &seg)?;
                // Candidate blocks: holding every selected label, starting before
                // the cutoff; only those are decoded to check.
                let mut blocks: Option<roaring::RoaringBitmap> = None;
                for (k, v) in sel {
                    let b = reader.lookup(&crate::segment::field_term(k, v))?;
                    blocks = Some(match blocks {
                        Some(a) => a & b,
                        None => b,
                    });
                }
                let footer = reader.footer();
                let n_blocks = footer.blocks.len();
                let candidates: Vec<usize> = match blocks {
                    Some(b) => b.iter().map(|x| x as usize).collect(),
                    None => (0..n_blocks).collect(),
                };
                let mut hit = false;
                for b in candidates {
                    if footer.blocks.get(b).is_some_and(|m| m.min_time < cutoff)
                        && reader.records(b)?.iter().any(expired)
                    {
                        hit = true;
                        break;
                    }
                }
                if !hit {
                    continue;
                }
                let mut kept = Vec::new();
                let mut gone = 0u64;
                for b in 0..n_blocks {
                    for r in reader.records(b)? {
                        if expired(&r) {
                            gone += 1;
                        } else {
                            kept.push(r);
                        }
                    }
                }
                self.replace_segment(&seg, kept)?;
                stats.rows += gone;
                stats.rewritten_segments += 1;
            }
        }
        Ok(())
    }

    /// Replaces listed segment `old` by one holding `records` (none: no segment).
    fn replace_segment(
        &self,
        old: &SegmentEntry,
        records: Vec<crate::model::Record>,
    ) -> Result<()> {
        let tenant = crate::model::Tenant::new(old.tenant.clone()).map_err(|e| {
            EngineError::Segment(crate::segment::SegmentError::NotFound(format!(
                "manifest tenant {:?}: {e}",
                old.tenant
            )))
        })?;
        let new = if records.is_empty() {
            None
        } else {
            let seq = {
                let mut st = self.state();
                st.next_seq += 1;
                st.next_seq - 1
            };
            Some(self.write_segment_file(&tenant, &old.partition, seq, records.iter().collect())?)
        };
        self.publish_manifest(
            |st| {
                let mut next = st.manifest.clone();
                next.segments.retain(|s| s.file != old.file);
                next.segments.extend(new);
                next.next_segment = next.next_segment.max(st.next_seq);
                next
            },
            |st, next| {
                st.manifest = next;
                st.readers.remove(&old.file);
            },
        )?;
        match (&old.offloaded, &self.tier) {
            (None, _) => {
                let p = self.dir.join(&old.file);
                self.cfg.fs.remove_file(&p).map_err(io_err("remove", &p))?;
            }
            (Some(_), Some(t)) => {
                let remote = self.state().manifest.remote();
                self.put_remote_manifest(t, &remote)?;
                t.store.delete(&old.file)?;
                t.cache.forget(&old.file);
            }
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// Deletes segment objects the manifest does not list as offloaded (left by a
    /// crash during an offload or a retention delete), and template files it does
    /// not name. How many went. Only a
    /// writable node sweeps; one node per store prefix.
    pub fn sweep_store(&self) -> Result<usize> {
        let tier = Arc::clone(self.tier_writable()?);
        let _one_at_a_time = self.compacting.blocking_lock();
        self.bucket_write(&tier)?;
        let listed: std::collections::HashSet<String> = self
            .state()
            .manifest
            .segments
            .iter()
            .filter(|s| !s.is_local())
            .map(|s| s.file.clone())
            .collect();
        let mut n = 0;
        for o in tier.store.list("segments")? {
            if !listed.contains(&o.name) {
                tracing::warn!(object = %o.name, "removing an object the manifest does not list");
                tier.store.delete(&o.name)?;
                n += 1;
            }
        }
        // Template files: all but the one the store's manifest names (known once
        // this process has put it; a crash between putting a file and the
        // manifest leaves one behind).
        if let Some(keep) = self.state().remote_templates.clone() {
            for o in tier.store.list(super::templates::DIR)? {
                if o.name != keep {
                    tracing::warn!(object = %o.name, "removing a template file the manifest does not name");
                    tier.store.delete(&o.name)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Read-only nodes: reloads the store's manifest (segments offloaded or
    /// deleted since). Whether it changed.
    pub fn refresh_from_store(&self) -> Result<bool> {
        let Some(tier) = self.tier.as_ref().filter(|t| t.cfg.read_only) else {
            return Ok(false);
        };
        let Some(b) = tier.store.get(REMOTE_MANIFEST)? else {
            return Ok(false);
        };
        let name = std::path::PathBuf::from(format!("{}/{REMOTE_MANIFEST}", tier.cfg.url));
        let m = Manifest::parse(&String::from_utf8_lossy(&b), &name)?;
        let saved = match (&m.templates, &self.cfg.templates) {
            (Some(name), Some(_)) if self.state().manifest.templates != m.templates => {
                Some(fetch_templates(&*self.cfg.fs, &self.dir, tier, name)?)
            }
            _ => None,
        };
        let mut st = self.state();
        if st.manifest == m {
            return Ok(false);
        }
        if let (Some(saved), Some(mc)) = (saved, &self.cfg.templates) {
            *self.miners() = Some(super::templates::Miners::restore(mc.clone(), &saved));
        }
        st.readers
            .retain(|f| m.segments.iter().any(|s| s.file == f));
        st.local_bytes = m.local_bytes();
        st.manifest = m;
        Ok(true)
    }
}
