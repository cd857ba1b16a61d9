//! The ledger: a one-partition topic on the same brokers where a node records, each
//! time a partition is assigned to it and before it consumes a message, the offset
//! it starts from (a *claim*: `{"node": ID, "from": OFFSET}` under the key
//! `GROUP/TOPIC/PARTITION`). Kafka's committed offsets cannot say which member
//! committed, and some brokers drop commit metadata; the claims let a node that
//! crashed between storing a batch and committing its offsets tell, at its next
//! start, whether another node has consumed that batch since (then it takes its
//! copy back) or not (docs/kafka.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// One node's start on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub(crate) node: String,
    pub(crate) from: i64,
}

/// Claims by `GROUP/TOPIC/PARTITION`, oldest first.
pub(crate) type Claims = BTreeMap<String, Vec<Claim>>;

/// The claim key of a partition.
pub(crate) fn claim_key(group: &str, topic: &str, partition: i32) -> String {
    format!("{group}/{topic}/{partition}")
}

/// A source's handle on its ledger topic.
pub(crate) struct Ledger {
    topic: String,
    base: ClientConfig,
    producer: FutureProducer,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Ledger {
    /// `base` carries the brokers (and any security options).
    pub(crate) fn new(base: &ClientConfig, topic: &str) -> Result<Ledger> {
        let producer: FutureProducer = base
            .clone()
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .create()
            .context("creating the ledger producer")?;
        Ok(Ledger {
            topic: topic.to_string(),
            base: base.clone(),
            producer,
        })
    }

    /// Creates the ledger topic (one partition) unless it exists.
    pub(crate) async fn ensure_topic(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            self.base.create().context("creating the admin client")?;
        let t = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let res = admin
            .create_topics(&[t], &opts)
            .await
            .with_context(|| format!("creating the ledger topic {}", self.topic))?;
        for r in res {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => bail!("creating the ledger topic {t}: {e}"),
            }
        }
        Ok(())
    }

    /// Records, durably (acks from all replicas), that `node` consumes the partition
    /// from `from` on.
    pub(crate) async fn claim(
        &self,
        node: &str,
        group: &str,
        topic: &str,
        partition: i32,
        from: i64,
    ) -> Result<()> {
        let key = claim_key(group, topic, partition);
        let body = serde_json::to_vec(&Claim {
            node: node.to_string(),
            from,
        })?;
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(&key).payload(&body),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("writing a claim to {}: {e}", self.topic))?;
        Ok(())
    }

    /// Every claim in the ledger (blocking; reads the topic from its start).
    pub(crate) fn read(&self, timeout: Duration) -> Result<Claims> {
        let deadline = Instant::now() + timeout;
        let reader: BaseConsumer = self
            .base
            .clone()
            .set("group.id", "heimdall-ledger-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .context("creating the ledger reader")?;
        let (low, high) = reader
            .fetch_watermarks(&self.topic, 0, timeout)
            .with_context(|| format!("reading the ledger topic {}'s offsets", self.topic))?;
        let mut claims = Claims::new();
        if high <= low {
            return Ok(claims);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low))?;
        reader.assign(&tpl)?;
        let mut next = low;
        while next < high {
            let Some(m) = reader.poll(Duration::from_millis(200)) else {
                if Instant::now() > deadline {
                    bail!(
                        "reading the ledger topic {}: stopped at offset {next} of {high}",
                        self.topic
                    );
                }
                continue;
            };
            let m = m.with_context(|| format!("reading the ledger topic {}", self.topic))?;
            next = m.offset() + 1;
            let (Some(k), Some(v)) = (m.key(), m.payload()) else {
                continue;
            };
            let (Ok(k), Ok(c)) = (std::str::from_utf8(k), serde_json::from_slice::<Claim>(v))
            else {
                tracing::warn!(offset = m.offset(), "ignoring an unreadable ledger entry");
                continue;
            };
            claims.entry(k.to_string()).or_default().push(c);
        }
        Ok(claims)
    }
}
