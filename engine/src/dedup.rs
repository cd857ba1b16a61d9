//! Idempotent ingest: per producer, the sequence numbers of its recent batches and
//! the LSNs they were stored at, so a retried batch is recognised and not stored
//! twice. A producer is identified within its tenant ([`key`]): producer ids are
//! chosen by clients, and another tenant's reuse of one is not a retry.
//!
//! The table is rebuilt exactly at every open: the manifest holds it as of its
//! checkpoint (each flush stores the table as it was when its memtable was frozen,
//! i.e. covering exactly the WAL below the checkpoint), and replaying the WAL above
//! the checkpoint adds the batches logged since (a batch's producer and sequence
//! travel in its WAL record).
//!
//! Bounds: the last [`WINDOW`] sequences of each producer are remembered; a batch
//! with a lower sequence than all of them cannot be checked and is refused
//! ([`Check::TooOld`]). At most [`PRODUCERS_MAX`] producers are remembered; past
//! that, the one that pushed least recently is forgotten (a retry from it would be
//! stored again). Both are documented for clients in `docs/ingest.md`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Sequences remembered per producer.
pub const WINDOW: usize = 32;
/// Producers remembered.
pub const PRODUCERS_MAX: usize = 4096;

/// The table's key of `producer` of `tenant`: `tenant/producer` (a tenant name
/// has no `/`, so keys of different tenants never meet).
pub fn key(tenant: &crate::model::Tenant, producer: &str) -> String {
    format!("{}/{producer}", tenant.as_str())
}

/// What the table says about a (producer, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not seen: store it.
    New,
    /// Stored before, at these LSNs (first, last).
    Duplicate(u64, u64),
    /// Lower than every remembered sequence of the producer (the lowest given).
    TooOld(u64),
}

/// One producer's recent batches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Sequence -> (first LSN, last LSN).
    pub seqs: BTreeMap<u64, (u64, u64)>,
    /// Sequences below this were forgotten (0: none).
    pub floor: u64,
    /// When it last pushed (a counter, for forgetting the least recent).
    pub last_used: u64,
}

/// The table of every remembered producer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producers {
    /// Producer key ([`key`]: tenant and producer id) -> its window.
    pub producers: HashMap<String, Window>,
    /// Pushes recorded so far (the clock of `last_used`).
    pub clock: u64,
}

impl Producers {
    /// Whether (`producer`, `seq`) was stored.
    pub fn check(&self, producer: &str, seq: u64) -> Check {
        let Some(w) = self.producers.get(producer) else {
            return Check::New;
        };
        if let Some((a, b)) = w.seqs.get(&seq) {
            return Check::Duplicate(*a, *b);
        }
        if seq < w.floor {
            return Check::TooOld(w.seqs.keys().next().copied().unwrap_or(w.floor));
        }
        Check::New
    }

    /// Remembers that (`producer`, `seq`) was stored at LSNs `first..=last`.
    pub fn record(&mut self, producer: &str, seq: u64, first: u64, last: u64) {
        self.clock += 1;
        let clock = self.clock;
        let w = self.producers.entry(producer.to_string()).or_default();
        w.seqs.insert(seq, (first, last));
        w.last_used = clock;
        while w.seqs.len() > WINDOW {
            if let Some((old, _)) = w.seqs.pop_first() {
                w.floor = w.floor.max(old + 1);
            }
        }
        if self.producers.len() > PRODUCERS_MAX {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                tracing::warn!(
                    producer = %p,
                    limit = PRODUCERS_MAX,
                    "forgetting the least recently seen producer's sequences"
                );
                self.producers.remove(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_recognised_and_old_ones_refused() {
        let mut p = Producers::default();
        assert_eq!(p.check("a", 1), Check::New);
        p.record("a", 1, 10, 10);
        assert_eq!(p.check("a", 1), Check::Duplicate(10, 10));
        assert_eq!(p.check("b", 1), Check::New);
        for s in 2..=(WINDOW as u64 + 5) {
            p.record("a", s, 10 + s, 10 + s);
        }
        // The window slid: 1..=5 forgotten.
        assert_eq!(p.check("a", 1), Check::TooOld(6));
        assert_eq!(p.check("a", 6), Check::Duplicate(16, 16));
        // Gaps are fine: a new sequence inside the window is new.
        assert_eq!(p.check("a", 1000), Check::New);
    }

    #[test]
    fn the_least_recent_producer_is_forgotten_past_the_limit() {
        let mut p = Producers::default();
        for i in 0..=PRODUCERS_MAX {
            p.record(&format!("p{i}"), 1, i as u64, i as u64);
        }
        assert_eq!(p.producers.len(), PRODUCERS_MAX);
        assert_eq!(p.check("p0", 1), Check::New);
        assert_eq!(p.check("p1", 1), Check::Duplicate(1, 1));
    }

    #[test]
    fn round_trips_through_json() {
        let mut p = Producers::default();
        p.record("a", 7, 1, 2);
        let text = serde_json::to_string(&p).unwrap();
        let back: Producers = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
    }
}
