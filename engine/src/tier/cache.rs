//! Caches of byte ranges of offloaded segments: a bounded in-memory LRU for footers
//! and index frames, and a bounded LRU directory on local disk for everything
//! fetched (column chunks and index frames), kept across restarts.
//!
//! A disk entry is a file named after a hash of its key (object name and byte
//! range) holding `u32 key length, key, payload, u32 crc32(payload)`; an entry whose
//! key or checksum does not match is a miss (and is removed), so a damaged or
//! colliding cache file never reaches a reader.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// A byte-bounded least-recently-used map.
#[derive(Debug)]
struct Lru<V> {
    map: HashMap<String, (V, u64, u64)>,
    order: BTreeMap<u64, String>,
    bytes: u64,
    tick: u64,
    max: u64,
}

impl<V: Clone> Lru<V> {
    fn new(max: u64) -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            bytes: 0,
            tick: 0,
            max,
        }
    }

    fn get(&mut self, k: &str) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (v, _, t) = self.map.get_mut(k)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, k.to_string());
        Some(v.clone())
    }

    /// Inserts; returns what was evicted to stay within the bound.
    fn insert(&mut self, k: String, v: V, size: u64) -> Vec<(String, V)> {
        self.remove(&k);
        self.tick += 1;
        self.order.insert(self.tick, k.clone());
        self.map.insert(k, (v, size, self.tick));
        self.bytes += size;
        let mut out = Vec::new();
        while self.bytes > self.max {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((v, s, _)) = self.map.remove(&old) {
                self.bytes -= s;
                out.push((old, v));
            }
        }
        out
    }

    fn remove(&mut self, k: &str) -> Option<V> {
        let (v, s, t) = self.map.remove(k)?;
        self.order.remove(&t);
        self.bytes -= s;
        Some(v)
    }
}

/// Hit and miss counters.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Served from memory.
    pub memory_hits: AtomicU64,
    /// Served from the disk cache.
    pub disk_hits: AtomicU64,
    /// Fetched from the object store.
    pub misses: AtomicU64,
    /// Disk entries dropped for a bad checksum or key.
    pub bad_entries: AtomicU64,
}

/// The two caches.
#[derive(Debug)]
pub struct Cache {
    mem: Mutex<Lru<Bytes>>,
    disk_dir: PathBuf,
    disk: Mutex<Lru<()>>,
    /// Counters.
    pub counters: CacheCounters,
}

fn file_name(key: &str) -> String {
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    format!("{:016x}-{}.blk", h.finish(), key.len())
}

impl Cache {
    /// Opens the disk cache in `dir` (created if needed), adopting the entries a
    /// previous run left there (oldest first, trimmed to `disk_max`).
    pub fn open(dir: &Path, mem_max: u64, disk_max: u64) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".blk") {
                let _ = std::fs::remove_file(e.path()); // a temp file of a crash
                continue;
            }
            let m = e.metadata()?;
            found.push((m.modified().ok(), name, m.len()));
        }
        found.sort();
        let mut disk = Lru::new(disk_max);
        for (_, name, len) in found {
            for (gone, ()) in disk.insert(name, (), len) {
                let _ = std::fs::remove_file(dir.join(gone));
            }
        }
        Ok(Cache {
            mem: Mutex::new(Lru::new(mem_max)),
            disk_dir: dir.to_path_buf(),
            disk: Mutex::new(disk),
            counters: CacheCounters::default(),
        })
    }

    /// Bytes held (memory, disk).
    pub fn bytes(&self) -> (u64, u64) {
        let m = self.mem.lock().map_or(0, |l| l.bytes);
        let d = self.disk.lock().map_or(0, |l| l.bytes);
        (m, d)
    }

    /// The cached bytes of `key`; `memory` also looks in (and refills) memory.
    pub fn get(&self, key: &str, memory: bool) -> Option<Bytes> {
        if memory {
            if let Some(b) = self.mem.lock().ok()?.get(key) {
                self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
                return Some(b);
            }
        }
        let name = file_name(key);
        self.disk.lock().ok()?.get(&name)?;
        match read_entry(&self.disk_dir.join(&name), key) {
            Some(b) => {
                self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                if memory {
                    self.put_memory(key, &b);
                }
                Some(b)
            }
            None => {
                self.counters.bad_entries.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut d) = self.disk.lock() {
                    d.remove(&name);
                }
                let _ = std::fs::remove_file(self.disk_dir.join(&name));
                None
            }
        }
    }

    /// Whether `key` is in the disk cache (no read, no recency update).
    pub fn contains(&self, key: &str) -> bool {
        self.disk
            .lock()
            .is_ok_and(|d| d.map.contains_key(&file_name(key)))
    }

    fn put_memory(&self, key: &str, b: &Bytes) {
        if let Ok(mut m) = self.mem.lock() {
            m.insert(
                key.to_string(),
                b.clone(),
                b.len() as u64 + key.len() as u64,
            );
        }
    }

    /// Caches `b` as `key` on disk (and in memory when `memory`). A failure to
    /// write the disk cache is logged, not returned: the cache is an optimisation.
    pub fn put(&self, key: &str, b: &Bytes, memory: bool) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        if memory {
            self.put_memory(key, b);
        }
        let name = file_name(key);
        let path = self.disk_dir.join(&name);
        let tmp = self
            .disk_dir
            .join(format!("{name}.tmp{}", std::process::id()));
        let mut buf = Vec::with_capacity(b.len() + key.len() + 8);
        buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(b);
        buf.extend_from_slice(&crc32fast::hash(b).to_le_bytes());
        let len = buf.len() as u64;
        if let Err(e) = std::fs::write(&tmp, &buf).and_then(|()| std::fs::rename(&tmp, &path)) {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "writing the object cache");
            return;
        }
        let gone = match self.disk.lock() {
            Ok(mut d) => d.insert(name, (), len),
            Err(_) => Vec::new(),
        };
        for (g, ()) in gone {
            let _ = std::fs::remove_file(self.disk_dir.join(g));
        }
    }

    /// Drops every entry of `object` from memory (disk entries age out).
    pub fn forget(&self, object: &str) {
        if let Ok(mut m) = self.mem.lock() {
            let prefix = format!("{object}@");
            let keys: Vec<String> = m
                .map
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in keys {
                m.remove(&k);
            }
        }
    }
}

fn read_entry(path: &Path, key: &str) -> Option<Bytes> {
    let buf = std::fs::read(path).ok()?;
    let klen = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if buf.get(4..4 + klen)? != key.as_bytes() {
        return None;
    }
    let body = buf.get(4 + klen..buf.len().checked_sub(4)?)?;
    let crc = u32::from_le_bytes(buf.get(buf.len() - 4..)?.try_into().ok()?);
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some(Bytes::copy_from_slice(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used_within_the_bound() {
        let mut l = Lru::new(10);
        assert!(l.insert("a".into(), 1, 4).is_empty());
        assert!(l.insert("b".into(), 2, 4).is_empty());
        assert_eq!(l.get("a"), Some(1));
        let gone = l.insert("c".into(), 3, 4);
        assert_eq!(gone, vec![("b".to_string(), 2)]);
        assert_eq!(l.bytes, 8);
        assert_eq!(l.get("b"), None);
    }

    #[test]
    fn disk_entries_survive_reopen_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let b = Bytes::from_static(b"hello chunk");
        c.put("seg@0+11", &b, false);
        assert_eq!(c.get("seg@0+11", false), Some(b.clone()));
        drop(c);
        let c = Cache::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(c.get("seg@0+11", true), Some(b.clone()));
        assert_eq!(c.get("seg@0+11", true), Some(b));
        assert_eq!(c.counters.memory_hits.load(Ordering::Relaxed), 1);
        // Flip a payload byte: a miss, and the entry is gone.
        let f = dir.path().join(file_name("seg@0+11"));
        let mut raw = std::fs::read(&f).unwrap();
        raw[4 + 8 + 2] ^= 1;
        std::fs::write(&f, raw).unwrap();
        c.forget("seg");
        assert_eq!(c.get("seg@0+11", true), None);
        assert!(!f.exists());
    }

    #[test]
    fn the_disk_cache_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), 0, 100).unwrap();
        for i in 0..10 {
            c.put(&format!("o@{i}+30"), &Bytes::from(vec![i as u8; 30]), false);
        }
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(
            c.bytes().1 <= 100 && files <= 2,
            "{files} files, {:?}",
            c.bytes()
        );
        assert!(c.get("o@9+30", false).is_some());
        assert!(c.get("o@0+30", false).is_none());
    }
}
