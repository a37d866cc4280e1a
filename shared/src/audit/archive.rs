//! Chaining records into an [`AuditArchive`]: the audit path on AWS.
//!
//! There the decision table's stream delivers records to decision-log in
//! batches, several shards at a time. For each chain a batch touches, the
//! records are linked after the chain's head and written as one immutable
//! segment (`chains/{partition}/{first}-{last}-{link}.jsonl`, JSON lines in
//! the export format), created only if its key is free; only then is the
//! head moved, in one transaction with a marker per record that says it is
//! chained. A writer that loses the race for a head relinks after the new
//! head and writes a new segment, so a chain never forks; the lost segment
//! stays in the bucket, unreferenced, and verification sets it aside
//! because its records are on the chain. A stream batch delivered again
//! after a partial failure finds its chained records marked and leaves them
//! out. Every batch then [`seal`]s every chain's head in a signed digest,
//! itself chained by its own head (`digests/{n}-{hash}.json`).

use std::collections::BTreeMap;

use super::chain::{partition_of, ChainEntry, CONTROL_PARTITION, DECISION_PARTITIONS, GENESIS};
use super::control::ControlEvent;
use super::digest::{key_id, Digest, DigestHead, SecretAuditKey, SignedDigest};
use super::export::{digest_jsonl, jsonl};
use crate::model::DecisionRecord;
use crate::ports::{Advance, AuditArchive, StoreError};

/// How often a segment is relinked after losing the race for its chain's head.
const ATTEMPTS: usize = 5;

/// The most records in one segment: its head moves in one transaction with a
/// marker per record, and a transaction holds at most 100 writes.
pub const SEGMENT_RECORDS: usize = 99;

/// The chain of digests, whose head sits beside the chains' heads.
pub const DIGEST_CHAIN: &str = "digests";

/// The key of a segment: unique per content (its last link commits to every
/// record in it and before it), so that no writer can replace another's.
pub fn segment_key(partition: &str, first: u64, last: u64, last_hash: &str) -> String {
    let link = last_hash.get(..16).unwrap_or(last_hash);
    format!("chains/{partition}/{first:012}-{last:012}-{link}.jsonl")
}

/// The key of a digest, unique per content.
pub fn digest_key(digest_seq: u64, hash: &str) -> String {
    let h = hash.get(..16).unwrap_or(hash);
    format!("digests/{digest_seq:012}-{h}.json")
}

/// Every chain a digest names: the decision chains and the control chain.
pub fn all_partitions() -> Vec<String> {
    (0..DECISION_PARTITIONS)
        .map(|n| format!("d{n:x}"))
        .chain(std::iter::once(CONTROL_PARTITION.to_owned()))
        .collect()
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
    /// Its chain, its id (unique over both layers) and its bytes.
    fn chained(&self) -> Result<(String, String, String), StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        Ok(match self {
            Evidence::Decision(r) => (
                partition_of(&r.agent_id),
                format!("decision:{}", r.decision_id),
                serde_json::to_string(r).map_err(corrupt)?,
            ),
            Evidence::Control(c) => (
                CONTROL_PARTITION.to_owned(),
                format!("control:{}", c.event_id),
                serde_json::to_string(c).map_err(corrupt)?,
            ),
        })
    }
}

/// Chains `records` (in stream order) into the archive; returns how many
/// segments were written. Records an earlier delivery chained are left out.
/// Any failure is returned, so that the stream delivers the batch again:
/// evidence is never skipped.
pub async fn archive(
    archive: &dyn AuditArchive,
    records: &[Evidence],
) -> Result<usize, StoreError> {
    let mut by_chain: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for r in records {
        let (partition, id, body) = r.chained()?;
        let chain = by_chain.entry(partition).or_default();
        // A batch may carry the same stream record twice.
        if chain.iter().all(|(i, _)| *i != id) {
            chain.push((id, body));
        }
    }
    let mut segments = 0;
    for (partition, mut records) in by_chain {
        // Leave out what an earlier delivery chained, before writing anything.
        let ids: Vec<String> = records.iter().map(|(id, _)| id.clone()).collect();
        let done = archive.chained(&ids).await?;
        if !done.is_empty() {
            tracing::info!(partition = %partition, records = done.len(), "records chained by an earlier delivery; leaving them out");
            records.retain(|(id, _)| !done.contains(id));
        }
        for chunk in records.chunks(SEGMENT_RECORDS) {
            segments += chain_segment(archive, &partition, chunk.to_vec()).await?;
        }
    }
    Ok(segments)
}

/// Links `records` (id, bytes) after the chain's head, writes them as a
/// segment and moves the head; 0 when every record was chained before.
async fn chain_segment(
    archive: &dyn AuditArchive,
    partition: &str,
    mut records: Vec<(String, String)>,
) -> Result<usize, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let head = archive.head(partition).await?;
        let mut entries: Vec<ChainEntry> = Vec::with_capacity(records.len());
        for (_, body) in &records {
            let prev = entries
                .last()
                .map(|e| (e.seq, e.hash.clone()))
                .or_else(|| head.clone());
            entries.push(ChainEntry::link(
                partition,
                prev.as_ref().map(|(s, h)| (*s, h.as_str())),
                body.clone(),
            ));
        }
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(0);
        };
        let mut text = String::new();
        for e in &entries {
            text.push_str(&jsonl(e).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            text.push('\n');
        }
        // A taken key holds these very bytes (the key names the last link):
        // an earlier attempt wrote it.
        archive
            .put_segment(
                &segment_key(partition, first.seq, last.seq, &last.hash),
                text.into_bytes(),
            )
            .await?;
        let ids: Vec<String> = records.iter().map(|(id, _)| id.clone()).collect();
        match archive
            .advance(
                partition,
                head.as_ref().map(|(s, _)| *s),
                (last.seq, &last.hash),
                &ids,
            )
            .await?
        {
            Advance::Moved => return Ok(1),
            Advance::AlreadyChained(done) => {
                tracing::info!(partition = %partition, records = done.len(), "records chained by an earlier delivery; leaving them out");
                records.retain(|(id, _)| !done.contains(id));
                if records.is_empty() {
                    return Ok(0);
                }
            }
            Advance::Raced => {
                tracing::info!(partition = %partition, attempt, "another writer moved the chain's head; relinking");
            }
        }
        if attempt >= ATTEMPTS {
            return Err(StoreError::Unavailable(format!(
                "chain {partition}: the head kept moving; the batch is retried"
            )));
        }
    }
}

/// Seals every chain's head in a digest signed with `key`, linked after the
/// newest digest, written create-only and then made the digest chain's head.
pub async fn seal(
    archive: &dyn AuditArchive,
    key: &SecretAuditKey,
    created_at: &str,
) -> Result<Digest, StoreError> {
    let partitions = all_partitions();
    for attempt in 1..=ATTEMPTS {
        let last = archive.head(DIGEST_CHAIN).await?;
        let heads: Vec<DigestHead> = archive
            .heads(&partitions)
            .await?
            .into_iter()
            .map(|(partition, (seq, hash))| DigestHead {
                partition,
                seq,
                hash,
            })
            .collect();
        let digest = Digest {
            digest_seq: last.as_ref().map_or(1, |(n, _)| n + 1),
            created_at: created_at.to_owned(),
            previous_digest_hash: last
                .as_ref()
                .map_or_else(|| GENESIS.to_owned(), |(_, h)| h.clone()),
            records: heads.iter().map(|h| h.seq).sum(),
            heads,
            key_id: Some(key_id(&key.public_key())),
        };
        let sign = |m: &[u8]| key.sign(m);
        let signed = SignedDigest::new(&digest, Some(&sign));
        let mut line = digest_jsonl(&signed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        line.push('\n');
        archive
            .put_segment(
                &digest_key(digest.digest_seq, &signed.hash),
                line.into_bytes(),
            )
            .await?;
        let moved = archive
            .advance(
                DIGEST_CHAIN,
                last.as_ref().map(|(n, _)| *n),
                (digest.digest_seq, &signed.hash),
                &[],
            )
            .await?;
        if moved == Advance::Moved {
            return Ok(digest);
        }
        tracing::info!(
            attempt,
            "another writer sealed a digest first; sealing again"
        );
    }
    Err(StoreError::Unavailable(
        "the digest head kept moving; the batch is retried".into(),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::audit::export::{parse_line, Line};
    use crate::audit::verify::{verify_excerpt, ExcerptChecks, TableHeads};

    /// An archive in memory: create-only objects, heads and markers moved
    /// together, a head that can be moved behind the writer's back once, and
    /// a chain whose head cannot be moved once.
    #[derive(Default)]
    struct Memory {
        heads: Mutex<BTreeMap<String, (u64, String)>>,
        objects: Mutex<BTreeMap<String, String>>,
        chained: Mutex<BTreeSet<String>>,
        /// A competitor's decision, chained the first time a head would move.
        race_once: Mutex<Option<DecisionRecord>>,
        fail_once: Mutex<Option<String>>,
    }

    #[async_trait]
    impl AuditArchive for Memory {
        async fn head(&self, partition: &str) -> Result<Option<(u64, String)>, StoreError> {
            Ok(self.heads.lock().unwrap().get(partition).cloned())
        }
        async fn chained(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
            let chained = self.chained.lock().unwrap();
            Ok(ids
                .iter()
                .filter(|i| chained.contains(*i))
                .cloned()
                .collect())
        }
        async fn put_segment(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError> {
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(key) {
                return Ok(false);
            }
            objects.insert(key.to_owned(), String::from_utf8(body).unwrap());
            Ok(true)
        }
        async fn advance(
            &self,
            partition: &str,
            from: Option<u64>,
            to: (u64, &str),
            ids: &[String],
        ) -> Result<Advance, StoreError> {
            let mut fail = self.fail_once.lock().unwrap();
            if fail.as_deref() == Some(partition) {
                *fail = None;
                return Err(StoreError::Unavailable("throttled".into()));
            }
            let mut chained = self.chained.lock().unwrap();
            let mut heads = self.heads.lock().unwrap();
            if let Some(r) = self.race_once.lock().unwrap().take() {
                let head = heads.get(partition).cloned();
                let e = ChainEntry::link(
                    partition,
                    head.as_ref().map(|(s, h)| (*s, h.as_str())),
                    serde_json::to_string(&r).unwrap(),
                );
                self.objects.lock().unwrap().insert(
                    segment_key(partition, e.seq, e.seq, &e.hash),
                    jsonl(&e).unwrap() + "\n",
                );
                heads.insert(partition.to_owned(), (e.seq, e.hash.clone()));
                chained.insert(format!("decision:{}", r.decision_id));
                return Ok(Advance::Raced);
            }
            let done: Vec<String> = ids
                .iter()
                .filter(|i| chained.contains(*i))
                .cloned()
                .collect();
            if !done.is_empty() {
                return Ok(Advance::AlreadyChained(done));
            }
            if heads.get(partition).map(|h| h.0) != from {
                return Ok(Advance::Raced);
            }
            heads.insert(partition.to_owned(), (to.0, to.1.to_owned()));
            chained.extend(ids.iter().cloned());
            Ok(Advance::Moved)
        }
    }

    impl Memory {
        /// A copy of the bucket, as `govctl audit verify --file` reads it,
        /// and the chain-head table.
        fn copy(&self) -> (Vec<ChainEntry>, Vec<SignedDigest>, TableHeads) {
            let (mut entries, mut digests) = (Vec::new(), Vec::new());
            for text in self.objects.lock().unwrap().values() {
                for line in text.lines() {
                    match parse_line(line).unwrap() {
                        Line::Record(e) => entries.push(e),
                        Line::Digest(d) => digests.push(d),
                    }
                }
            }
            let mut heads = self.heads.lock().unwrap().clone();
            let digest = heads.remove(DIGEST_CHAIN);
            (
                entries,
                digests,
                TableHeads {
                    chains: heads,
                    digest,
                },
            )
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

    fn key() -> SecretAuditKey {
        SecretAuditKey::from_secret(&"k".repeat(40)).unwrap()
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
        seal(&memory, &key(), "2026-01-07T12:00:01.000Z")
            .await
            .unwrap();
        *memory.race_once.lock().unwrap() = Some(record(99, "a"));
        let second: Vec<Evidence> = (6..9)
            .map(|i| Evidence::Decision(Box::new(record(i, "a"))))
            .collect();
        archive(&memory, &second).await.unwrap();
        let digest = seal(&memory, &key(), "2026-01-07T12:00:02.000Z")
            .await
            .unwrap();
        assert_eq!((digest.digest_seq, digest.records), (2, 10));

        // The segment that lost the race to the competitor is set aside:
        // its records are on the chain, after the competitor's; every
        // digest is signed by the key and holds.
        let (entries, digests, heads) = memory.copy();
        let checks = ExcerptChecks {
            trusted_key: Some(key().public_key()),
            kept: None,
            heads: Some(heads),
        };
        let (report, set_aside) = verify_excerpt(entries, digests, &checks);
        assert!(report.is_intact(), "{:?}", report.findings);
        assert_eq!((report.records, report.digests, set_aside), (10, 2, 3));
    }

    #[tokio::test]
    async fn a_batch_delivered_again_after_a_partial_failure_is_chained_once() {
        let memory = Memory::default();
        // Agents in two chains; the second chain's head cannot move the first time.
        let mut agents = ["agent-a", "agent-b"];
        agents.sort_by_key(|a| partition_of(a));
        let [a, b] = agents;
        assert_ne!(partition_of(a), partition_of(b));
        *memory.fail_once.lock().unwrap() = Some(partition_of(b));
        let batch: Vec<Evidence> = (0..6)
            .map(|i| Evidence::Decision(Box::new(record(i, if i < 3 { a } else { b }))))
            .collect();
        assert!(archive(&memory, &batch).await.is_err(), "the batch fails");
        // The stream delivers the whole batch again.
        assert_eq!(
            archive(&memory, &batch).await.unwrap(),
            1,
            "only b's segment is new"
        );
        seal(&memory, &key(), "2026-01-07T12:00:01.000Z")
            .await
            .unwrap();
        let (entries, digests, heads) = memory.copy();
        let (report, _) = verify_excerpt(
            entries,
            digests,
            &ExcerptChecks {
                heads: Some(heads),
                ..ExcerptChecks::default()
            },
        );
        assert!(report.is_intact(), "{:?}", report.findings);
        assert_eq!(report.records, 6, "each record chained once");
    }

    #[test]
    fn segments_over_the_same_positions_have_their_own_keys() {
        let a = ChainEntry::link("d1", None, "{\"x\":1}".into());
        let b = ChainEntry::link("d1", None, "{\"x\":2}".into());
        assert_ne!(
            segment_key("d1", 1, 1, &a.hash),
            segment_key("d1", 1, 1, &b.hash)
        );
    }
}
