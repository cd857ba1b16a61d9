//! `heimdall verify` and `heimdall repair`: check a data directory without changing
//! it, and rebuild a missing or damaged manifest from the segments' own footers.
//!
//! Rebuilding needs the WAL checkpoint the manifest held: every WAL record below it
//! is in segments, every one from it on is not. Flushes publish in WAL order, so the
//! records in segments are a prefix of the WAL (less what retention removed since).
//! [`repair`] therefore reads every segment's records, and walks the WAL from its
//! oldest record: a batch all of whose records are in segments (counted as a
//! multiset, so a record stored twice needs two copies) is flushed; the checkpoint
//! goes after the last such batch. Segments one of which holds every record of
//! another of the same tenant and day are leftovers of a compaction or rewrite cut
//! short (the older one goes aside). Nothing is deleted: damaged and superseded
//! segment files are moved to `quarantine/`.
//!
//! What cannot come back: retried-batch memory (`producers`) and source positions
//! older than the WAL's oldest record (a Kafka source then resumes from its group's
//! committed offsets), and the raw-bytes statistic. The template state is the file
//! of the newest flush at or below the checkpoint; without one, mining starts over
//! and new ids may repeat stored ones.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::manifest::{Manifest, SegmentEntry, SourcePosition, MANIFEST_FILE};
use crate::model::{Record, Value};
use crate::segment::SegmentReader;
use crate::walrec;

use super::{io_err, segment_files, templates, EngineConfig, EngineError, Result};

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments listed (local, offloaded).
    pub local_segments: usize,
    /// Offloaded segments listed.
    pub offloaded_segments: usize,
    /// Rows in listed local segments, checked against the manifest.
    pub rows: u64,
    /// WAL files and the records in them.
    pub wal_files: usize,
    /// WAL records.
    pub wal_records: u64,
    /// Segment files the manifest does not list (the next open removes them).
    pub orphans: Vec<PathBuf>,
    /// Problems, each naming the file.
    pub problems: Vec<String>,
}

/// Checks `dir` without changing anything: the manifest parses; every listed
/// local segment exists, passes every checksum and holds the rows and times the
/// manifest says; the template file it names decodes; every WAL file scans (a
/// torn tail of the newest file is normal after a crash and is reported as such).
pub fn verify(dir: &Path) -> VerifyReport {
    let mut r = VerifyReport::default();
    let manifest = match Manifest::load_existing(dir) {
        Ok(Some(m)) => Some(m),
        Ok(None) => {
            if !segment_files(dir).unwrap_or_default().is_empty() {
                r.problems.push(format!(
                    "{} is missing but segment files are there: `heimdall repair` rebuilds it",
                    dir.join(MANIFEST_FILE).display()
                ));
            }
            None
        }
        Err(e) => {
            r.problems
                .push(format!("{e}: `heimdall repair` rebuilds it"));
            None
        }
    };
    if let Some(m) = &manifest {
        for e in &m.segments {
            if !e.is_local() {
                r.offloaded_segments += 1;
                continue;
            }
            r.local_segments += 1;
            let path = dir.join(&e.file);
            let reader = match SegmentReader::open(&path).and_then(|s| s.verify().map(|()| s)) {
                Ok(s) => s,
                Err(err) => {
                    r.problems.push(err.to_string());
                    continue;
                }
            };
            let f = reader.footer();
            r.rows += f.rows;
            if f.rows != e.rows
                || f.min_time().unwrap_or(0) != e.min_time
                || f.max_time().unwrap_or(0) != e.max_time
            {
                r.problems.push(format!(
                    "{}: {} rows from {} to {}, the manifest says {} rows from {} to {}",
                    path.display(),
                    f.rows,
                    f.min_time().unwrap_or(0),
                    f.max_time().unwrap_or(0),
                    e.rows,
                    e.min_time,
                    e.max_time
                ));
            }
        }
        if let Some(name) = &m.templates {
            if let Err(e) = templates::load(dir, name) {
                r.problems.push(e.to_string());
            }
        }
        let listed: std::collections::HashSet<PathBuf> =
            m.segments.iter().map(|s| dir.join(&s.file)).collect();
        r.orphans = segment_files(dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !listed.contains(p))
            .collect();
    }
    verify_wal(&dir.join("wal"), &mut r);
    r
}

fn verify_wal(wal: &Path, r: &mut VerifyReport) {
    let Ok(entries) = std::fs::read_dir(wal) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    let last = files.len().saturating_sub(1);
    for (i, f) in files.iter().enumerate() {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                r.problems.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        match wal::format::scan_file(&bytes, 1 << 30) {
            Ok(scan) => {
                r.wal_files += 1;
                r.wal_records += scan.frames.len() as u64;
                if i != last
                    && !matches!(
                        scan.tail,
                        wal::format::Tail::Clean
                            | wal::format::Tail::Zeroes
                            | wal::format::Tail::Stale { .. }
                    )
                {
                    r.problems.push(format!(
                        "{}: damaged after byte {} ({:?}), and it is not the newest file",
                        f.display(),
                        scan.valid_end,
                        scan.tail
                    ));
                }
            }
            // A spare file not yet used holds no header: not a problem.
            Err(_) if bytes.iter().all(|b| *b == 0) => {}
            Err(e) => r.problems.push(format!("{}: {e:?}", f.display())),
        }
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Segments listed in the new manifest (local).
    pub segments: usize,
    /// Offloaded segments taken from the object store's manifest.
    pub offloaded: usize,
    /// Files moved to `quarantine/`, with why.
    pub quarantined: Vec<(PathBuf, String)>,
    /// The checkpoint found.
    pub checkpoint: u64,
    /// The WAL's oldest and next LSN.
    pub wal: (u64, u64),
    /// WAL records found already in segments.
    pub wal_flushed: u64,
    /// The template file chosen, if any.
    pub templates: Option<String>,
}

/// A record's identity for matching WAL batches to segments: tenant, time,
/// message, level, labels and fields (sorted; `_template`, which the WAL does not
/// hold, left out).
fn fingerprint(tenant: &str, r: &Record) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tenant.hash(&mut h);
    r.time_ns.hash(&mut h);
    r.msg.hash(&mut h);
    r.level.hash(&mut h);
    r.stream.hash(&mut h);
    let mut fields: Vec<(&str, String)> = r
        .fields
        .iter()
        .filter(|(k, _)| k != super::TEMPLATE_FIELD)
        .map(|(k, v)| {
            let v = match v {
                Value::Str(s) => format!("s{s}"),
                Value::I64(x) => format!("i{x}"),
                Value::F64(x) => format!("f{}", x.to_bits()),
                Value::Bool(b) => format!("b{b}"),
            };
            (k.as_str(), v)
        })
        .collect();
    fields.sort();
    fields.hash(&mut h);
    h.finish()
}

struct Found {
    entry: SegmentEntry,
    seq: u64,
    prints: HashMap<u64, u32>,
}

fn contains(big: &HashMap<u64, u32>, small: &HashMap<u64, u32>) -> bool {
    small
        .iter()
        .all(|(k, n)| big.get(k).is_some_and(|m| m >= n))
}

/// Rebuilds the manifest of `cfg.data_dir` (see the module docs). Refuses when
/// the manifest is present and parses, unless `force`.
pub fn repair(cfg: &EngineConfig, force: bool) -> Result<RepairReport> {
    let dir = &cfg.data_dir;
    if !force {
        if let Ok(Some(_)) = Manifest::load_existing(dir) {
            return Err(EngineError::Manifest(
                crate::manifest::ManifestError::Corrupt {
                    path: dir.join(MANIFEST_FILE),
                    what:
                        "it is present and parses: nothing to repair (--force rebuilds it anyway)"
                            .into(),
                },
            ));
        }
    }
    // Holds the WAL's lock (no server may run on the directory meanwhile).
    let wal = wal::Wal::open(dir.join("wal"), cfg.wal.clone())?;
    let mut report = RepairReport {
        wal: (wal.oldest_lsn(), wal.written_lsn()),
        ..RepairReport::default()
    };
    let quarantine = dir.join("quarantine");
    let set_aside = |p: &Path, why: String, report: &mut RepairReport| -> Result<()> {
        crate::fs::create_dir_all(&*cfg.fs, &quarantine)?;
        let rel = p
            .strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('/', "_");
        let to = quarantine.join(rel);
        std::fs::rename(p, &to).map_err(io_err("move aside", p))?;
        cfg.fs
            .sync_dir(&quarantine)
            .map_err(io_err("fsync directory", &quarantine))?;
        if let Some(parent) = p.parent() {
            cfg.fs
                .sync_dir(parent)
                .map_err(io_err("fsync directory", parent))?;
        }
        tracing::warn!(file = %p.display(), to = %to.display(), why = %why, "segment set aside");
        report.quarantined.push((p.to_path_buf(), why));
        Ok(())
    };
    // Every segment file that opens and passes its checksums.
    let mut found: Vec<Found> = Vec::new();
    for p in segment_files(dir)? {
        let rel = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        let seq = parts
            .last()
            .and_then(|f| f.strip_suffix(".seg"))
            .and_then(|s| s.parse::<u64>().ok());
        let (Some(seq), [_, _tenant, partition, _]) = (seq, parts.as_slice()) else {
            set_aside(&p, "not a segment file name".into(), &mut report)?;
            continue;
        };
        let r = match SegmentReader::open(&p).and_then(|r| r.verify().map(|()| r)) {
            Ok(r) => r,
            Err(e) => {
                set_aside(&p, e.to_string(), &mut report)?;
                continue;
            }
        };
        let f = r.footer().clone();
        let mut prints: HashMap<u64, u32> = HashMap::new();
        let mut labels: std::collections::BTreeSet<String> = Default::default();
        for b in 0..f.blocks.len() {
            for rec in r.records(b)? {
                *prints.entry(fingerprint(&f.tenant, &rec)).or_default() += 1;
                labels.extend(rec.stream.iter().map(|(k, v)| format!("{k}={v}")));
            }
        }
        let bytes = std::fs::metadata(&p).map_err(io_err("stat", &p))?.len();
        found.push(Found {
            entry: SegmentEntry::local(
                &f,
                partition,
                rel.clone(),
                bytes,
                (labels.len() <= crate::manifest::LABELS_MAX).then(|| labels.into_iter().collect()),
            ),
            seq,
            prints,
        });
    }
    // Leftovers of a compaction (older segments inside a newer one) or a rewrite
    // (a newer segment inside an older one) cut short: the older one goes aside.
    found.sort_by_key(|f| f.seq);
    let mut superseded = vec![false; found.len()];
    for i in 0..found.len() {
        for j in i + 1..found.len() {
            let (a, b) = (&found[i], &found[j]);
            if superseded[i]
                || a.entry.tenant != b.entry.tenant
                || a.entry.partition != b.entry.partition
            {
                continue;
            }
            if contains(&b.prints, &a.prints) || contains(&a.prints, &b.prints) {
                superseded[i] = true;
            }
        }
    }
    let mut kept = Vec::new();
    for (f, gone) in found.into_iter().zip(superseded) {
        if gone {
            set_aside(
                &dir.join(&f.entry.file),
                "its records are also in a newer segment of the same day".into(),
                &mut report,
            )?;
        } else {
            kept.push(f);
        }
    }
    // The checkpoint: after the last WAL batch wholly in segments.
    let mut left: HashMap<u64, u32> = HashMap::new();
    for f in &kept {
        for (k, n) in &f.prints {
            *left.entry(*k).or_default() += n;
        }
    }
    let mut checkpoint = wal.oldest_lsn();
    let mut batches: Vec<(u64, walrec::Batch)> = Vec::new();
    for rec in wal.replay(wal.oldest_lsn())? {
        let rec = rec?;
        let batch = walrec::decode(&rec.payload).map_err(|source| EngineError::BadWalRecord {
            lsn: rec.lsn,
            source,
        })?;
        if !batch.records.is_empty() {
            let prints: Vec<u64> = batch
                .records
                .iter()
                .map(|r| fingerprint(batch.tenant.as_str(), r))
                .collect();
            let mut need: HashMap<u64, u32> = HashMap::new();
            for p in &prints {
                *need.entry(*p).or_default() += 1;
            }
            if contains(&left, &need) {
                for (k, n) in need {
                    if let Some(m) = left.get_mut(&k) {
                        *m -= n;
                    }
                }
                checkpoint = rec.lsn + 1;
                report.wal_flushed += 1;
            }
        }
        batches.push((rec.lsn, batch));
    }
    // Producers and positions as of the checkpoint, from the WAL below it.
    let mut manifest = Manifest {
        checkpoint_lsn: checkpoint,
        ..Manifest::default()
    };
    for (lsn, b) in batches.into_iter().filter(|(l, _)| *l < checkpoint) {
        if let Some((p, seq)) = &b.producer {
            manifest
                .producers
                .record(&crate::dedup::key(&b.tenant, p), *seq, lsn, lsn);
        }
        for p in b.positions {
            manifest.positions.insert(
                p.key,
                SourcePosition {
                    first: p.first,
                    next: p.next,
                },
            );
        }
        if let Some(r) = b.retract {
            let before = manifest.positions.get(&r.key).copied();
            manifest
                .positions
                .insert(r.key.clone(), super::retracted(before.as_ref(), r.next));
        }
    }
    // The newest template state at or below the checkpoint.
    let mut tpl: BTreeMap<u64, String> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir.join(templates::DIR)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_suffix(".tpl")
                .and_then(|n| n.parse::<u64>().ok())
            {
                let rel = format!("{}/{name}", templates::DIR);
                if n <= checkpoint && templates::load(dir, &rel).is_ok() {
                    tpl.insert(n, rel);
                }
            }
        }
    }
    manifest.templates = tpl.into_values().next_back();
    report.templates = manifest.templates.clone();
    manifest.next_segment = kept.iter().map(|f| f.seq + 1).max().unwrap_or(1);
    report.segments = kept.len();
    manifest.segments = kept.into_iter().map(|f| f.entry).collect();
    // Offloaded segments: the object store's manifest lists them.
    if let Some(tc) = &cfg.tier {
        let tier = crate::tier::Tier::open(tc.clone())?;
        if let Some(b) = tier.store.get(crate::tier::REMOTE_MANIFEST)? {
            let name = PathBuf::from(format!("{}/{}", tc.url, crate::tier::REMOTE_MANIFEST));
            let remote = Manifest::parse(&String::from_utf8_lossy(&b), &name)?;
            for e in remote.segments {
                if !manifest.segments.iter().any(|m| m.file == e.file) {
                    report.offloaded += 1;
                    manifest.segments.push(e);
                }
            }
            manifest.next_segment = manifest.next_segment.max(remote.next_segment);
        }
    }
    report.checkpoint = checkpoint;
    manifest.publish(&*cfg.fs, dir)?;
    wal.close()?;
    Ok(report)
}
