//! Chaining records into an [`AuditArchive`]: the audit path on AWS.
//!
//! There the decision table's stream delivers records to decision-log in
//! batches, several shards at a time. For each chain a batch touches, the
//! records are linked after the chain's head and written as one immutable
//! segment (`chains/{partition}/{first}-{last}.jsonl`, JSON lines in the
//! export format); only then is the head moved, by a conditional write. A
//! writer that loses the race for a head relinks after the new head and
//! writes a new segment, so a chain never forks; the lost segment stays in
//! the bucket, unreferenced, and verification follows the links past it.

use std::collections::BTreeMap;

use super::chain::{partition_of, ChainEntry, CONTROL_PARTITION};
use super::control::ControlEvent;
use super::export::jsonl;
use crate::model::DecisionRecord;
use crate::ports::{AuditArchive, StoreError};

/// How often a segment is relinked after losing the race for its chain's head.
const ATTEMPTS: usize = 5;

/// The key of a segment.
pub fn segment_key(partition: &str, first: u64, last: u64) -> String {
    format!("chains/{partition}/{first:012}-{last:012}.jsonl")
}

/// One record to chain: a decision (in its agent's chain) or a control-plane
/// event (in the `control` chain).
#[derive(Debug, Clone)]
pub enum Evidence {
    /// A decision or an approval's outcome.
    Decision(Box<DecisionRecord>),
    /// A policy version published or activated.
    Control(Box<ControlEvent>),
}

impl Evidence {
    /// Its chain and its bytes.
    fn chained(&self) -> Result<(String, String), StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        Ok(match self {
            Evidence::Decision(r) => (
                partition_of(&r.agent_id),
                serde_json::to_string(r).map_err(corrupt)?,
            ),
            Evidence::Control(c) => (
                CONTROL_PARTITION.to_owned(),
                serde_json::to_string(c).map_err(corrupt)?,
            ),
        })
    }
}

/// Chains `records` (in stream order) into the archive; returns how many
/// segments were written. Any failure is returned, so that the stream
/// delivers the batch again: evidence is never skipped.
pub async fn archive(
    archive: &dyn AuditArchive,
    records: &[Evidence],
) -> Result<usize, StoreError> {
    let mut by_chain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        let (partition, body) = r.chained()?;
        by_chain.entry(partition).or_default().push(body);
    }
    let mut segments = 0;
    for (partition, bodies) in by_chain {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head = archive.head(&partition).await?;
            let mut entries: Vec<ChainEntry> = Vec::with_capacity(bodies.len());
            for body in &bodies {
                let prev = entries
                    .last()
                    .map(|e| (e.seq, e.hash.clone()))
                    .or_else(|| head.clone());
                entries.push(ChainEntry::link(
                    &partition,
                    prev.as_ref().map(|(s, h)| (*s, h.as_str())),
                    body.clone(),
                ));
            }
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                break;
            };
            let mut text = String::new();
            for e in &entries {
                text.push_str(&jsonl(e).map_err(|e| StoreError::Corrupt(e.to_string()))?);
                text.push('\n');
            }
            archive
                .put_segment(
                    &segment_key(&partition, first.seq, last.seq),
                    text.into_bytes(),
                )
                .await?;
            if archive
                .advance(
                    &partition,
                    head.as_ref().map(|(s, _)| *s),
                    (last.seq, &last.hash),
                )
                .await?
            {
                segments += 1;
                break;
            }
            if attempt >= ATTEMPTS {
                return Err(StoreError::Unavailable(format!(
                    "chain {partition}: the head kept moving; the batch is retried"
                )));
            }
            tracing::info!(partition = %partition, attempt, "another writer moved the chain's head; relinking");
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::audit::verify::Verifier;

    /// An archive in memory, whose head can be moved behind the writer's back once.
    #[derive(Default)]
    struct Memory {
        heads: Mutex<BTreeMap<String, (u64, String)>>,
        segments: Mutex<BTreeMap<String, String>>,
        race_once: Mutex<bool>,
    }

    #[async_trait]
    impl AuditArchive for Memory {
        async fn head(&self, partition: &str) -> Result<Option<(u64, String)>, StoreError> {
            Ok(self.heads.lock().unwrap().get(partition).cloned())
        }
        async fn put_segment(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
            self.segments
                .lock()
                .unwrap()
                .insert(key.to_owned(), String::from_utf8(body).unwrap());
            Ok(())
        }
        async fn advance(
            &self,
            partition: &str,
            from: Option<u64>,
            to: (u64, &str),
        ) -> Result<bool, StoreError> {
            let mut race = self.race_once.lock().unwrap();
            if *race {
                *race = false;
                return Ok(false);
            }
            let mut heads = self.heads.lock().unwrap();
            if heads.get(partition).map(|h| h.0) != from {
                return Ok(false);
            }
            heads.insert(partition.to_owned(), (to.0, to.1.to_owned()));
            Ok(true)
        }
    }

    fn record(i: u32, agent: &str) -> DecisionRecord {
        serde_json::from_value(serde_json::json!({
            "decision_id": format!("d{i}"), "trace_id": "t", "timestamp": "2026-01-07T12:00:00.000Z",
            "decision": "allow", "reasons": [], "determining_policies": [], "agent_id": agent,
            "user_id": "u", "user_roles": [], "tool_id": "x", "arguments_hash": "h",
            "environment": "dev", "policy_version": "v", "policy_hash": "p", "latency_us": 1
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn batches_extend_their_chains_and_races_are_relinked() {
        let memory = Memory::default();
        let first: Vec<Evidence> = (0..6)
            .map(|i| {
                Evidence::Decision(Box::new(record(
                    i,
                    if i.is_multiple_of(2) { "a" } else { "b" },
                )))
            })
            .collect();
        archive(&memory, &first).await.unwrap();
        *memory.race_once.lock().unwrap() = true;
        let second: Vec<Evidence> = (6..9)
            .map(|i| Evidence::Decision(Box::new(record(i, "a"))))
            .collect();
        archive(&memory, &second).await.unwrap();

        // Following the links from the heads back reaches every record once,
        // in order; the segment that lost the race is not on the path.
        let segments = memory.segments.lock().unwrap();
        let mut by_link: BTreeMap<String, ChainEntry> = BTreeMap::new();
        for text in segments.values() {
            for line in text.lines() {
                let e = crate::audit::export::parse_jsonl(line).unwrap();
                by_link.insert(e.hash.clone(), e);
            }
        }
        let heads = memory.heads.lock().unwrap().clone();
        let mut verifier = Verifier::new(None);
        let mut total = 0;
        for (_, (_, head)) in heads {
            let mut chain = Vec::new();
            let mut at = head;
            while let Some(e) = by_link.get(&at) {
                chain.push(e.clone());
                at = e.prev_hash.clone();
            }
            chain.reverse();
            total += chain.len();
            for e in &chain {
                verifier.entry(e);
            }
        }
        assert_eq!(total, 9);
        let report = verifier.finish();
        assert!(report.is_intact(), "{:?}", report.findings);
    }
}
