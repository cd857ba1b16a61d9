//! The memtable: acknowledged records not yet in a segment, grouped by tenant and
//! time partition, queryable by a scan with the shared tokenizer.

use std::collections::BTreeMap;

use crate::model::{Record, Tenant};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The UTC day of a timestamp as `YYYYMMDD`.
pub fn partition_of(time_ns: i64) -> String {
    let (y, m, d) = crate::ingest::time::civil_from_days(time_ns.div_euclid(NANOS_PER_DAY));
    format!("{y:04}{m:02}{d:02}")
}

/// Rough in-memory size of a record, for the flush threshold.
pub fn record_bytes(r: &Record) -> usize {
    64 + r.msg.len()
        + r.level.as_ref().map_or(0, String::len)
        + r.stream
            .iter()
            .map(|(k, v)| k.len() + v.len() + 32)
            .sum::<usize>()
        + r.fields
            .iter()
            .map(|(k, v)| k.len() + v.to_text().len() + 32)
            .sum::<usize>()
}

/// Records by (tenant, partition).
#[derive(Debug, Default)]
pub struct Memtable {
    parts: BTreeMap<(Tenant, String), Vec<Record>>,
    bytes: usize,
    rows: u64,
    raw_bytes: u64,
}

impl Memtable {
    /// Adds records of `tenant`; `raw_bytes` is their input size.
    pub fn insert(&mut self, tenant: &Tenant, records: Vec<Record>, raw_bytes: u64) {
        self.raw_bytes += raw_bytes;
        for r in records {
            self.bytes += record_bytes(&r);
            self.rows += 1;
            self.parts
                .entry((tenant.clone(), partition_of(r.time_ns)))
                .or_default()
                .push(r);
        }
    }

    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records held.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Input bytes of the records held.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// The (tenant, partition) groups.
    pub fn parts(&self) -> impl Iterator<Item = (&(Tenant, String), &Vec<Record>)> {
        self.parts.iter()
    }

    /// Records of `tenant` whose `_msg` contains all `words` as tokens.
    pub fn search<'a>(
        &'a self,
        tenant: &'a Tenant,
        words: &'a [&'a str],
    ) -> impl Iterator<Item = &'a Record> + 'a {
        self.parts
            .iter()
            .filter(move |((t, _), _)| t == tenant)
            .flat_map(|(_, rs)| rs.iter())
            .filter(move |r| {
                words
                    .iter()
                    .all(|w| crate::token::contains_token(&r.msg, w))
            })
    }
}
