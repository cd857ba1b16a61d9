//! The engine's template miners ([`crate::template`]), one per tenant, and their
//! persistence with the data.
//!
//! Records are mined as they enter the memtable (in append order, and again in LSN
//! order when the WAL is replayed); each gets its template id as the `_template`
//! field. A flush freezes the miners' state together with the memtable (under the
//! gate, so the state covers exactly the WAL below the flush's checkpoint), writes
//! it to a file of its own (`templates/<checkpoint LSN>.tpl`) and lists that file in
//! the manifest it publishes: the templates and the segments whose records carry
//! their ids move together, and a restart continues from the same state. Records
//! that were not yet flushed at a crash are mined again on replay, in LSN order:
//! concurrent appends may have been mined in another order before the crash, so
//! such a record can come back with another id (never one a flushed record holds
//! for another template).
//!
//! File format: magic `HTPL`, format version (u32 LE), CRC-32 of the rest (u32 LE),
//! then a zstd frame of the JSON of [`Saved`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::{Record, Tenant, Value};
use crate::template::{Miner, MinerConfig, MinerState};

/// The field holding a record's template id.
pub const TEMPLATE_FIELD: &str = "_template";

const MAGIC: &[u8; 4] = b"HTPL";
const VERSION: u32 = 1;
/// Directory of the template files, under the data directory.
pub(crate) const DIR: &str = "templates";

/// Why a template file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplatesError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file is not a template file this version reads.
    #[error("template file {path} is unusable: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// What a template file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Saved {
    /// Each tenant's miner.
    pub(crate) tenants: BTreeMap<String, MinerState>,
}

/// One template as listed (`heimdall templates`, the `templates` Flight action).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateInfo {
    /// Its id (the `_template` value of its records).
    pub id: u64,
    /// Its text, `<*>` for a variable part.
    pub text: String,
    /// Messages given this id since mining began (records deleted since, by
    /// retention or retraction, still count).
    pub count: u64,
    /// `_time` of the earliest message given it, ns.
    pub first_seen: i64,
    /// `_time` of the latest, ns.
    pub last_seen: i64,
    /// The template this one was folded into, if any: `_template:<that id>`
    /// matches this one's records too.
    pub alias_of: Option<u64>,
}

/// Every tenant's miner, frozen ([`Miners::freeze`]).
#[derive(Debug)]
pub(crate) struct FrozenMiners(Vec<(String, crate::template::Frozen)>);

impl FrozenMiners {
    /// What the template file holds.
    pub(crate) fn saved(&self) -> Saved {
        Saved {
            tenants: self.0.iter().map(|(t, f)| (t.clone(), f.state())).collect(),
        }
    }
}

/// Every tenant's miner.
#[derive(Debug, Default)]
pub(crate) struct Miners {
    cfg: MinerConfig,
    by_tenant: BTreeMap<Tenant, Miner>,
}

impl Miners {
    /// Fresh miners with `cfg`.
    pub(crate) fn new(cfg: MinerConfig) -> Miners {
        Miners {
            cfg,
            by_tenant: BTreeMap::new(),
        }
    }

    /// Miners continuing from `saved`.
    pub(crate) fn restore(cfg: MinerConfig, saved: &Saved) -> Miners {
        let mut by_tenant = BTreeMap::new();
        for (t, state) in &saved.tenants {
            // Names were checked when written; a bad one is skipped, not fatal.
            if let Ok(tenant) = Tenant::new(t) {
                by_tenant.insert(tenant, Miner::restore(cfg.clone(), state));
            }
        }
        Miners { cfg, by_tenant }
    }

    /// Gives each record its template id (the `_template` field). The engine
    /// refuses records carrying reserved names before they get here
    /// (`model::check_record`); records replayed from a WAL written before that
    /// rule may carry one, which is replaced.
    pub(crate) fn mine(&mut self, tenant: &Tenant, records: &mut [Record]) {
        let miner = match self.by_tenant.get_mut(tenant) {
            Some(m) => m,
            None => self
                .by_tenant
                .entry(tenant.clone())
                .or_insert_with(|| Miner::new(self.cfg.clone())),
        };
        for r in records {
            let id = miner.mine(&r.msg, r.time_ns);
            let v = Value::I64(i64::try_from(id).unwrap_or(i64::MAX));
            match r.fields.iter_mut().find(|(k, _)| k == TEMPLATE_FIELD) {
                Some((_, old)) => *old = v,
                None => {
                    // Most records have few fields (raw lines none): no spare room.
                    r.fields.reserve_exact(1);
                    r.fields.push((TEMPLATE_FIELD.to_string(), v));
                }
            }
        }
    }

    /// The whole state, to be written with a flush: cheap to take (the flush
    /// takes it while ingest waits); [`FrozenMiners::saved`] makes it plain data.
    pub(crate) fn freeze(&self) -> FrozenMiners {
        FrozenMiners(
            self.by_tenant
                .iter()
                .map(|(t, m)| (t.as_str().to_string(), m.freeze()))
                .collect(),
        )
    }

    /// The whole state as plain data.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Saved {
        self.freeze().saved()
    }

    /// A tenant's templates, most frequent first.
    pub(crate) fn list(&self, tenant: &Tenant) -> Vec<TemplateInfo> {
        let Some(m) = self.by_tenant.get(tenant) else {
            return Vec::new();
        };
        let mut out: Vec<TemplateInfo> = m
            .templates()
            .iter()
            .map(|t| TemplateInfo {
                id: t.id,
                text: m.text(t),
                count: t.count,
                first_seen: t.first_seen,
                last_seen: t.last_seen,
                alias_of: t.alias_of.map(|a| m.canonical(a)),
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
        out
    }

    /// The ids whose records `_template:id` matches: `id` and every id folded
    /// into it (directly or not).
    pub(crate) fn ids_of(&self, tenant: &Tenant, id: u64) -> Vec<u64> {
        let Some(m) = self.by_tenant.get(tenant) else {
            return vec![id];
        };
        let mut out = vec![id];
        for t in m.templates() {
            if t.id != id && t.alias_of.is_some() && m.canonical(t.id) == id {
                out.push(t.id);
            }
        }
        out
    }

    /// Templates held, over every tenant.
    pub(crate) fn len(&self) -> usize {
        self.by_tenant.values().map(|m| m.templates().len()).sum()
    }
}

/// The file name (under the data directory) of the templates as of `checkpoint`.
pub(crate) fn file_name(checkpoint: u64) -> String {
    format!("{DIR}/{checkpoint:020}.tpl")
}

/// The bytes of a template file holding `saved`.
pub(crate) fn encode(saved: &Saved) -> Vec<u8> {
    // Serialising plain strings and integers cannot fail.
    let json = serde_json::to_vec(saved).unwrap_or_default();
    // The file is rewritten once per flush: level 19 up to 128 KiB of JSON (some
    // 50 ms), 9 beyond (a few MB of state at most).
    frame(
        &json,
        crate::segment::index::small_frame_level(json.len(), 128 << 10, 9),
    )
}

/// Magic, version, checksum, then `json` compressed at zstd `level`.
fn frame(json: &[u8], level: i32) -> Vec<u8> {
    let body = zstd::bulk::compress(json, level).unwrap_or_default();
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// What a template file's bytes hold.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Saved, TemplatesError> {
    let bad = |what: String| TemplatesError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return Err(bad("not a template file".into()));
    }
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes)
    };
    let version = word(4);
    if version != VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads {VERSION}"
        )));
    }
    let body = &bytes[12..];
    if crc32fast::hash(body) != word(8) {
        return Err(bad("checksum mismatch".into()));
    }
    // Bounded: a damaged length must not make the open allocate without limit.
    let mut json = Vec::new();
    {
        use std::io::Read;
        let dec = zstd::stream::read::Decoder::new(body).map_err(|e| bad(format!("zstd: {e}")))?;
        dec.take(JSON_BYTES_MAX + 1)
            .read_to_end(&mut json)
            .map_err(|e| bad(format!("zstd: {e}")))?;
    }
    if json.len() as u64 > JSON_BYTES_MAX {
        return Err(bad(format!("more than {JSON_BYTES_MAX} bytes of state")));
    }
    let saved: Saved = serde_json::from_slice(&json).map_err(|e| bad(format!("contents: {e}")))?;
    for (t, state) in &saved.tenants {
        state
            .validate()
            .map_err(|e| bad(format!("tenant {t:?}: {e}")))?;
    }
    Ok(saved)
}

/// Most bytes of state (JSON) a template file may hold.
const JSON_BYTES_MAX: u64 = 1 << 30;

/// Checks a template file's bytes as an open does: framing, checksum, state;
/// then restores the miners and mines a few messages with them. The templates
/// held. (For `heimdall verify`-like tools and the fuzz target.)
pub fn check_template_file(bytes: &[u8]) -> Result<usize, TemplatesError> {
    let saved = decode(Path::new("<bytes>"), bytes)?;
    let mut m = Miners::restore(MinerConfig::default(), &saved);
    let tenants: Vec<Tenant> = m.by_tenant.keys().cloned().collect();
    for t in tenants {
        let mut recs: Vec<Record> = ["user 42 logged in", "disk /dev/sda1 full", ""]
            .iter()
            .map(|msg| Record {
                time_ns: 1,
                msg: (*msg).to_string(),
                stream: Default::default(),
                level: None,
                fields: Vec::new(),
            })
            .collect();
        m.mine(&t, &mut recs);
        for id in 0..4 {
            m.ids_of(&t, id);
        }
        m.list(&t);
    }
    Ok(m.len())
}

/// A template file framing `json` (magic, version, checksum, zstd): for tests and
/// the fuzz target, which build files around arbitrary state.
pub fn frame_template_json(json: &[u8]) -> Vec<u8> {
    frame(json, 1)
}

/// Writes `bytes` as `dir/name` durably (file and every directory on its path).
pub(crate) fn write(
    fs: &dyn crate::fs::Fs,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), TemplatesError> {
    let path = dir.join(name);
    let io = |e: crate::fs::FsError| TemplatesError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    };
    if let Some(parent) = path.parent() {
        crate::fs::create_dir_all(fs, parent).map_err(io)?;
    }
    crate::fs::write_atomic(fs, &path, bytes).map_err(io)
}

/// Reads the template file `dir/name`.
pub(crate) fn load(dir: &Path, name: &str) -> Result<Saved, TemplatesError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|source| TemplatesError::Io {
        op: "read",
        path: path.clone(),
        source,
    })?;
    decode(&path, &bytes)
}

/// Removes every file of the template directory but `keep` (older states, a
/// crash's leftovers). Failures are logged: a stray file costs only space.
pub(crate) fn sweep(fs: &dyn crate::fs::Fs, dir: &Path, keep: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(dir.join(DIR)) else {
        return;
    };
    let keep = keep.map(|k| dir.join(k));
    for e in entries.flatten() {
        let p = e.path();
        if Some(&p) != keep.as_ref() {
            if let Err(err) = fs.remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %err, "could not remove an old template file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(msg: &str) -> Record {
        Record {
            time_ns: 1,
            msg: msg.into(),
            stream: Default::default(),
            level: None,
            fields: vec![("_template".into(), Value::Str("spoofed".into()))],
        }
    }

    fn id(r: &Record) -> &Value {
        &r.fields
            .iter()
            .find(|(k, _)| k == TEMPLATE_FIELD)
            .unwrap()
            .1
    }

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let t = Tenant::new("default").unwrap();
        let mut m = Miners::new(MinerConfig::default());
        let mut recs = vec![rec("open file 1"), rec("open file 2"), rec("close all")];
        m.mine(&t, &mut recs);
        assert_eq!(id(&recs[0]), id(&recs[1]));
        assert_ne!(id(&recs[0]), id(&recs[2]));
        assert_eq!(recs[0].fields.len(), 1, "the input's _template is replaced");
        let saved = m.snapshot();
        let bytes = encode(&saved);
        let p = Path::new("x.tpl");
        assert_eq!(decode(p, &bytes).unwrap(), saved);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(p, &bad)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let mut newer = bytes;
        newer[4] = 9;
        assert!(decode(p, &newer)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        // A restored miner gives known messages their ids and continues numbering.
        let mut again = Miners::restore(MinerConfig::default(), &saved);
        let mut more = vec![rec("open file 3"), rec("something else entirely")];
        again.mine(&t, &mut more);
        assert_eq!(id(&more[0]), id(&recs[0]));
        assert_eq!(id(&more[1]), &Value::I64(3));
        // Tenants have miners of their own.
        let other = Tenant::new("other").unwrap();
        let mut theirs = vec![rec("close all")];
        again.mine(&other, &mut theirs);
        assert_eq!(id(&theirs[0]), &Value::I64(1));
        assert_eq!(again.list(&t).len(), 3);
        assert_eq!(again.list(&other).len(), 1);
    }
}
