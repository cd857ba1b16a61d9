//! Opening a data directory: the WAL, the manifest (refusing to open without one
//! when only it could name the data), the orphan sweep, the template miners, and
//! WAL replay into the memtable.

use super::*;

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
            publishing: Mutex::new(()),
            state: Mutex::new(State {
                memtable,
                frozen: Vec::new(),
                next_seq: manifest.next_segment,
                local_bytes: manifest.local_bytes(),
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
                remote_templates: None,
            }),
            miners: Mutex::new(miners),
            tier,
            lease,
        })
    }
}

/// Refuses to open a directory whose manifest is missing while something only the
/// manifest can name is there: the WAL was checkpointed (records below its first
/// LSN are in segments), or segment files exist and the WAL is empty (their
/// records are nowhere else). Segment files beside a WAL that still holds every
/// record from LSN 1 are a first flush that crashed before its manifest: the
/// sweep removes them and replay brings their records back.
pub(super) fn refuse_without_manifest(dir: &Path, wal: &Wal) -> Result<()> {
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
pub(super) fn segment_files(dir: &Path) -> Result<Vec<PathBuf>> {
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
pub(super) fn sweep_orphans(fs: &dyn crate::fs::Fs, dir: &Path, manifest: &Manifest) -> Result<()> {
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
