//! Verification of chains and digests.
//!
//! The verifier is fed the digests first, then every chained record in
//! (partition, position) order, and reports every problem it sees. What a
//! problem means: a record whose bytes no longer match its link was
//! modified; a record that does not follow its predecessor, or a gap or a
//! repeat in the positions, means records were deleted, reordered or
//! inserted; a digest's head that is missing or differs means the tail was
//! cut or the chain recomputed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::chain::{link_hash, partition_of, ChainEntry, CONTROL_PARTITION, GENESIS};
use super::control::ControlEvent;
use super::digest::{Digest, SignedDigest};
use crate::model::DecisionRecord;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The chain, when the problem is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The position in the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The decision or event id, or `digest #N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.partition, self.seq) {
            (Some(p), Some(s)) => write!(f, "chain {p} #{s}")?,
            (Some(p), None) => write!(f, "chain {p}")?,
            _ => f.write_str("log")?,
        }
        if let Some(r) = &self.record {
            write!(f, " ({r})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// One chain's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    /// Records seen.
    pub records: u64,
    /// The head's position.
    pub head_seq: u64,
    /// The head's link.
    pub head_hash: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every chain seen, by partition.
    pub chains: BTreeMap<String, ChainSummary>,
    /// Records verified, over all chains.
    pub records: u64,
    /// Digests verified.
    pub digests: u64,
    /// When the newest digest was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_digest_at: Option<String>,
    /// Records newer than the newest digest: protected by their chain only
    /// until the next digest covers them.
    pub records_after_newest_digest: u64,
    /// Every problem, in the order found; the first one per chain is the
    /// first broken link.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }

    /// The first problem of each chain (and each digest problem), the links
    /// an investigation starts from.
    pub fn first_broken_links(&self) -> Vec<&Finding> {
        let mut seen = BTreeSet::new();
        self.findings
            .iter()
            .filter(|f| f.partition.is_none() || seen.insert(f.partition.clone()))
            .collect()
    }
}

/// Verifies digests, then chained records, streamed in order.
#[derive(Debug)]
pub struct Verifier {
    trusted_key: Option<[u8; 32]>,
    report: Report,
    /// The newest digest's head per chain.
    newest: BTreeMap<String, u64>,
    /// Every digest's (partition, position) → (digest, sealed link).
    sealed: BTreeMap<(String, u64), Vec<(u64, String)>>,
    /// (partition, last position, last link) of the chain being read.
    current: Option<(String, u64, String)>,
    /// Whether chains may start past their first record (a time range).
    partial: bool,
}

impl Verifier {
    /// A verifier that checks digest signatures against `trusted_key`, or only
    /// their hashes without one.
    pub fn new(trusted_key: Option<[u8; 32]>) -> Self {
        Self {
            trusted_key,
            report: Report::default(),
            newest: BTreeMap::new(),
            sealed: BTreeMap::new(),
            current: None,
            partial: false,
        }
    }

    /// A verifier of an excerpt (an export of a time range, or segments
    /// copied from the evidence bucket): each chain may start at any
    /// position, its first record's predecessor taken on trust.
    pub fn excerpt() -> Self {
        Self {
            partial: true,
            ..Self::new(None)
        }
    }

    fn find(
        &mut self,
        partition: Option<&str>,
        seq: Option<u64>,
        record: Option<String>,
        problem: String,
    ) {
        self.report.findings.push(Finding {
            partition: partition.map(str::to_owned),
            seq,
            record,
            problem,
        });
    }

    /// Checks the digests, oldest first: each must be intact, signed by the
    /// trusted key (when one is given), follow the previous one, and never
    /// move a chain's head backwards.
    pub fn digests(&mut self, digests: impl IntoIterator<Item = SignedDigest>) {
        let mut previous: Option<(u64, String)> = None;
        let mut heads: BTreeMap<String, u64> = BTreeMap::new();
        for signed in digests {
            let digest: Digest = match signed.open(self.trusted_key.as_ref()) {
                Ok(d) => d,
                Err(e) => {
                    let n = previous.as_ref().map_or(1, |(n, _)| n + 1);
                    self.find(
                        None,
                        None,
                        Some(format!("digest #{n}")),
                        format!("digest is not intact: {e}"),
                    );
                    previous = Some((n, signed.hash.clone()));
                    continue;
                }
            };
            let name = format!("digest #{}", digest.digest_seq);
            let (expected_seq, expected_prev) = previous
                .as_ref()
                .map_or((1, GENESIS.to_owned()), |(n, h)| (n + 1, h.clone()));
            if digest.digest_seq != expected_seq {
                self.find(
                    None,
                    None,
                    Some(name.clone()),
                    format!("expected digest #{expected_seq}: a digest was removed or inserted"),
                );
            } else if digest.previous_digest_hash != expected_prev {
                self.find(
                    None,
                    None,
                    Some(name.clone()),
                    "does not follow the previous digest".into(),
                );
            }
            for head in &digest.heads {
                if heads.get(&head.partition).is_some_and(|&s| s > head.seq) {
                    self.find(
                        Some(&head.partition),
                        Some(head.seq),
                        Some(name.clone()),
                        "the digest moves the chain's head backwards".into(),
                    );
                }
                heads.insert(head.partition.clone(), head.seq);
                self.sealed
                    .entry((head.partition.clone(), head.seq))
                    .or_default()
                    .push((digest.digest_seq, head.hash.clone()));
            }
            self.report.digests += 1;
            self.report.newest_digest_at = Some(digest.created_at.clone());
            previous = Some((digest.digest_seq, signed.hash));
            self.newest = digest
                .heads
                .iter()
                .map(|h| (h.partition.clone(), h.seq))
                .collect();
        }
    }

    /// A record the store holds outside any chain: one inserted around it.
    pub fn unchained(&mut self, record: String) {
        self.find(
            None,
            None,
            Some(record),
            "the record is not in any chain: it was inserted around the chain".into(),
        );
    }

    /// A problem the store found in a record's stored form (for example, an
    /// indexed column that no longer agrees with the record's bytes).
    pub fn inconsistent(&mut self, entry: &ChainEntry, problem: String) {
        let (id, _) = inspect(&entry.partition, &entry.body);
        self.find(Some(&entry.partition), Some(entry.seq), id, problem);
    }

    /// Checks one chained record; records must come in (partition, seq) order.
    pub fn entry(&mut self, e: &ChainEntry) {
        let (id, wrong_chain) = inspect(&e.partition, &e.body);
        let (expected_seq, expected_prev) = match &self.current {
            Some((p, seq, hash)) if *p == e.partition => (seq + 1, hash.clone()),
            _ if self.partial => (e.seq, e.prev_hash.clone()),
            _ => (1, GENESIS.to_owned()),
        };
        if e.seq != expected_seq {
            let what = if e.seq > expected_seq {
                format!("expected #{expected_seq}: records were deleted before this one")
            } else {
                format!("repeats position #{}: a record was inserted", e.seq)
            };
            self.find(Some(&e.partition), Some(e.seq), id.clone(), what);
        } else if e.prev_hash != expected_prev {
            self.find(
                Some(&e.partition),
                Some(e.seq),
                id.clone(),
                "does not follow its predecessor: records were deleted, reordered or inserted here"
                    .into(),
            );
        }
        if link_hash(&e.partition, e.seq, &e.prev_hash, &e.body) != e.hash {
            self.find(
                Some(&e.partition),
                Some(e.seq),
                id.clone(),
                "its content does not match its link: the record was modified".into(),
            );
        }
        if let Some(problem) = wrong_chain {
            self.find(Some(&e.partition), Some(e.seq), id.clone(), problem);
        }
        if let Some(seals) = self.sealed.get(&(e.partition.clone(), e.seq)).cloned() {
            for (digest, hash) in seals {
                if hash != e.hash {
                    self.find(Some(&e.partition), Some(e.seq), id.clone(), format!("differs from the link digest #{digest} sealed: the chain was rewritten"));
                }
            }
            self.sealed.remove(&(e.partition.clone(), e.seq));
        }
        if self.newest.get(&e.partition).is_none_or(|&s| e.seq > s) {
            self.report.records_after_newest_digest += 1;
        }
        let summary = self.report.chains.entry(e.partition.clone()).or_default();
        summary.records += 1;
        summary.head_seq = e.seq;
        summary.head_hash.clone_from(&e.hash);
        self.report.records += 1;
        self.current = Some((e.partition.clone(), e.seq, e.hash.clone()));
    }

    /// The report, after checking that every sealed head was seen.
    pub fn finish(mut self) -> Report {
        for ((partition, seq), seals) in std::mem::take(&mut self.sealed) {
            let digests: Vec<String> = seals.iter().map(|(d, _)| format!("#{d}")).collect();
            self.find(
                Some(&partition),
                Some(seq),
                None,
                format!(
                    "is missing, but digest {} sealed it: records were deleted from the chain's tail",
                    digests.join(", ")
                ),
            );
        }
        self.report
    }
}

/// Verifies chained records as exported or archived (JSON lines from
/// `govctl audit export` or the evidence bucket's segments), in any order.
///
/// Each chain is walked back from its newest record along the links, so
/// that a segment which lost the race for a chain's head (and was written
/// again after the new head) is set aside: the second number returned
/// counts such superseded records. Any other record off the walked chain is
/// a finding.
pub fn verify_excerpt(entries: Vec<ChainEntry>) -> (Report, usize) {
    let mut by_chain: BTreeMap<String, Vec<ChainEntry>> = BTreeMap::new();
    for e in entries {
        by_chain.entry(e.partition.clone()).or_default().push(e);
    }
    let mut verifier = Verifier::excerpt();
    let mut superseded = 0;
    for (_, mut chain) in by_chain {
        chain.sort_by_key(|e| e.seq);
        let by_link: BTreeMap<&str, &ChainEntry> =
            chain.iter().map(|e| (e.hash.as_str(), e)).collect();
        // The newest record is the head; follow the links back from it.
        let mut path: Vec<&ChainEntry> = Vec::new();
        let mut at = chain.last();
        while let Some(e) = at {
            path.push(e);
            at = by_link
                .get(e.prev_hash.as_str())
                .copied()
                .filter(|p| p.seq + 1 == e.seq);
        }
        path.reverse();
        let on_path: BTreeSet<(u64, &str)> =
            path.iter().map(|e| (e.seq, e.hash.as_str())).collect();
        let positions: BTreeSet<u64> = path.iter().map(|e| e.seq).collect();
        let first = path.first().map_or(0, |e| e.seq);
        for e in &chain {
            if on_path.contains(&(e.seq, e.hash.as_str())) {
                continue;
            }
            if positions.contains(&e.seq) {
                superseded += 1;
            } else if e.seq < first {
                // Older than the walk reached: the link between was broken.
                verifier.inconsistent(e, format!("does not lead to the chain's head: the chain is broken between #{} and #{first}", e.seq));
            }
        }
        for e in path {
            verifier.entry(e);
        }
    }
    (verifier.finish(), superseded)
}

/// The id a record's body names (its decision id or control event id), and
/// why it does not belong in its chain, if it does not: one parse of the body.
fn inspect(partition: &str, body: &str) -> (Option<String>, Option<String>) {
    if partition == CONTROL_PARTITION {
        return match serde_json::from_str::<ControlEvent>(body) {
            Ok(c) => (Some(c.event_id), None),
            Err(e) => (
                loose_id(body, "event_id"),
                Some(format!("not a control-plane event: {e}")),
            ),
        };
    }
    match serde_json::from_str::<DecisionRecord>(body) {
        Err(e) => (
            loose_id(body, "decision_id"),
            Some(format!("not a decision record: {e}")),
        ),
        Ok(r) => {
            let belongs = partition_of(&r.agent_id);
            let moved = (belongs != partition).then(|| {
                format!(
                    "a decision of agent `{}` belongs in chain {belongs}: it was moved",
                    r.agent_id
                )
            });
            (Some(r.decision_id), moved)
        }
    }
}

/// The id of a body that is JSON but not a record of its chain's kind.
fn loose_id(body: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get(key).and_then(|id| id.as_str()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(partition: &str, bodies: &[&str]) -> Vec<ChainEntry> {
        let mut out: Vec<ChainEntry> = Vec::new();
        for b in bodies {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let e = ChainEntry::link(partition, prev, (*b).to_owned());
            out.push(e);
        }
        out
    }

    fn event(n: u32) -> String {
        format!(
            r#"{{"event_id":"e{n}","timestamp":"t","actor":"a","action":"policy_activated","version_id":"v","content_hash":"h"}}"#
        )
    }

    fn run(entries: &[ChainEntry]) -> Report {
        let mut v = Verifier::new(None);
        for e in entries {
            v.entry(e);
        }
        v.finish()
    }

    #[test]
    fn an_excerpt_verifies_from_any_position_and_sets_lost_races_aside() {
        let bodies: Vec<String> = (1..=6).map(event).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let good = chain(CONTROL_PARTITION, &refs);
        // From the third record on, as an export of a time range holds it.
        let mut excerpt: Vec<ChainEntry> = good.iter().skip(2).cloned().collect();
        // A lost race: a segment linked after #3 that never became the head.
        let orphan = ChainEntry::link(CONTROL_PARTITION, Some((3, &good[2].hash)), event(99));
        excerpt.push(orphan);
        excerpt.reverse();
        let (report, superseded) = verify_excerpt(excerpt.clone());
        assert!(report.is_intact(), "{:?}", report.findings);
        assert_eq!((report.records, superseded), (4, 1));

        let mut edited = excerpt.clone();
        if let Some(e) = edited.iter_mut().find(|e| e.seq == 5) {
            e.body = e.body.replace("\"a\"", "\"b\"");
        }
        assert!(!verify_excerpt(edited).0.is_intact(), "a modified record");
        let mut cut = excerpt;
        cut.retain(|e| e.seq != 4);
        let (report, _) = verify_excerpt(cut);
        assert!(!report.is_intact(), "a deleted record");
    }

    #[test]
    fn an_intact_chain_passes_and_each_edit_is_named() {
        let bodies: Vec<String> = (1..=5).map(event).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let good = chain(CONTROL_PARTITION, &refs);
        let report = run(&good);
        assert!(report.is_intact(), "{:?}", report.findings);
        assert_eq!(report.records, 5);

        let mut modified = good.clone();
        if let Some(e) = modified.get_mut(2) {
            e.body = e.body.replace("\"a\"", "\"b\"");
        }
        let r = run(&modified);
        assert_eq!(r.first_broken_links().first().map(|f| f.seq), Some(Some(3)));

        let mut deleted = good.clone();
        deleted.remove(1);
        let r = run(&deleted);
        assert_eq!(r.first_broken_links().first().map(|f| f.seq), Some(Some(3)));
    }
}
