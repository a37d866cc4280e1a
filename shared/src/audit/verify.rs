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
    /// Set when no digest is signed by the trusted key although they are
    /// intact: the key given is not the one that signed them (the digests
    /// are then checked as unsigned, so their count and links are real).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrong_key: Option<String>,
    /// Every problem, in the order found; the first one per chain is the
    /// first broken link.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing is wrong, the signatures included.
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty() && self.wrong_key.is_none()
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
    /// Every (partition, position) a digest or the chain-head table
    /// vouches for → (who vouched, the link it names).
    sealed: BTreeMap<(String, u64), Vec<(String, String)>>,
    /// (partition, last position, last link) of the chain being read.
    current: Option<(String, u64, String)>,
    /// Whether chains may start past their first record (a time range).
    partial: bool,
    /// Each chain's first position seen.
    first_seen: BTreeMap<String, u64>,
    /// Every decision or event id seen → where, when ids are checked for repeats.
    ids: Option<BTreeMap<String, (String, u64)>>,
    /// The newest digest seen and the hashes of every digest seen.
    newest_digest: u64,
    digest_hashes: BTreeSet<String>,
    /// The digest the verifier kept, which must be among those verified.
    required: Option<MinDigest>,
}

/// A digest a verifier kept from an earlier run (printed by `govctl audit
/// digest`): the trail must hold it, or a newer one, or its tail was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MinDigest {
    /// At least this digest number.
    Seq(u64),
    /// The digest with this hash (hex SHA-256 of its body).
    Hash(String),
}

impl std::str::FromStr for MinDigest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Self::Seq(n));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Self::Hash(s.to_ascii_lowercase()));
        }
        Err(format!(
            "`{s}` is neither a digest number nor a digest's hash (64 hex digits)"
        ))
    }
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
            first_seen: BTreeMap::new(),
            ids: None,
            newest_digest: 0,
            digest_hashes: BTreeSet::new(),
            required: None,
        }
    }

    /// Requires the digest a verifier kept (or a newer one) to be among the
    /// digests verified: without it, cutting the newest digests together
    /// with the records they sealed would go unseen.
    pub fn require_digest(&mut self, kept: MinDigest) {
        self.required = Some(kept);
    }

    /// Holds each chain to a head read elsewhere (the chain-head table):
    /// the record at that position must be present with that link.
    pub fn vouch(&mut self, who: &str, partition: &str, seq: u64, hash: &str) {
        self.sealed
            .entry((partition.to_owned(), seq))
            .or_default()
            .push((who.to_owned(), hash.to_owned()));
    }

    /// A verifier of an excerpt (an export of a time range, or segments
    /// copied from the evidence bucket): each chain may start at any
    /// position, its first record's predecessor taken on trust.
    pub fn excerpt(trusted_key: Option<[u8; 32]>) -> Self {
        Self {
            partial: true,
            ids: Some(BTreeMap::new()),
            ..Self::new(trusted_key)
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
        let digests: Vec<SignedDigest> = digests.into_iter().collect();
        self.check_key(&digests);
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
            let (expected_seq, expected_prev) = match &previous {
                Some((n, h)) => (n + 1, h.clone()),
                // An excerpt may begin after the first digest.
                None if self.partial => (digest.digest_seq, digest.previous_digest_hash.clone()),
                None => (1, GENESIS.to_owned()),
            };
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
                    .push((name.clone(), head.hash.clone()));
            }
            self.report.digests += 1;
            self.newest_digest = self.newest_digest.max(digest.digest_seq);
            self.digest_hashes.insert(signed.hash.clone());
            self.report.newest_digest_at = Some(digest.created_at.clone());
            previous = Some((digest.digest_seq, signed.hash));
            self.newest = digest
                .heads
                .iter()
                .map(|h| (h.partition.clone(), h.seq))
                .collect();
        }
    }

    /// Tells a wrong key from tampering: when digests are intact but not one
    /// of them is signed by the trusted key, the key is not theirs. Every
    /// digest failing its signature would otherwise read as a tampered
    /// trail, and hide the real count.
    fn check_key(&mut self, digests: &[SignedDigest]) {
        let Some(key) = self.trusted_key else {
            return;
        };
        let intact: Vec<Digest> = digests.iter().filter_map(|d| d.open(None).ok()).collect();
        if intact.is_empty() || digests.iter().any(|d| d.open(Some(&key)).is_ok()) {
            return;
        }
        let named: BTreeSet<String> = intact.iter().filter_map(|d| d.key_id.clone()).collect();
        self.report.wrong_key = Some(format!(
            "the digests are not signed by this key (key id {}){}",
            super::digest::key_id(&key),
            if named.is_empty() {
                String::new()
            } else {
                format!(
                    "; they name key id {}",
                    named.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        ));
        self.trusted_key = None;
    }

    /// A digest off the digest chain at a position the chain holds (one
    /// that lost the race for the digest head): it must still be intact and
    /// signed, and what it states about each chain's head must hold.
    fn set_aside_digest(&mut self, signed: &SignedDigest) {
        match signed.open(self.trusted_key.as_ref()) {
            Ok(digest) => {
                let name = format!("digest #{} ({})", digest.digest_seq, short(&signed.hash));
                for head in &digest.heads {
                    self.vouch(&name, &head.partition, head.seq, &head.hash);
                }
                self.digest_hashes.insert(signed.hash.clone());
            }
            Err(e) => self.find(
                None,
                None,
                Some(format!("digest {}", short(&signed.hash))),
                format!("digest is not intact: {e}"),
            ),
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
        if let (Some(ids), Some(name)) = (self.ids.as_mut(), id.as_ref()) {
            let first = ids
                .entry(name.clone())
                .or_insert_with(|| (e.partition.clone(), e.seq))
                .clone();
            if first != (e.partition.clone(), e.seq) {
                self.find(
                    Some(&e.partition),
                    Some(e.seq),
                    id.clone(),
                    format!(
                        "its id is already at chain {} #{}: the record was chained twice",
                        first.0, first.1
                    ),
                );
            }
        }
        self.first_seen.entry(e.partition.clone()).or_insert(e.seq);
        if let Some(seals) = self.sealed.get(&(e.partition.clone(), e.seq)).cloned() {
            for (who, hash) in seals {
                if hash != e.hash {
                    self.find(
                        Some(&e.partition),
                        Some(e.seq),
                        id.clone(),
                        format!(
                            "differs from the link {who} names: the chain was rewritten or forked"
                        ),
                    );
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
            // An excerpt may start after a sealed position: older records
            // are simply not part of it.
            if self.partial && self.first_seen.get(&partition).is_some_and(|&f| seq < f) {
                continue;
            }
            let who: Vec<String> = seals.into_iter().map(|(w, _)| w).collect();
            self.find(
                Some(&partition),
                Some(seq),
                None,
                format!(
                    "is missing, but {} names it: records were deleted from the chain's tail",
                    who.join(", ")
                ),
            );
        }
        match self.required.take() {
            Some(MinDigest::Seq(n)) if self.newest_digest < n => self.find(
                None,
                None,
                Some(format!("digest #{n}")),
                format!(
                    "the newest digest here is #{}, older than the kept digest #{n}: digests (and the records they sealed) were cut",
                    self.newest_digest
                ),
            ),
            Some(MinDigest::Hash(h)) if !self.digest_hashes.contains(&h) => self.find(
                None,
                None,
                Some(format!("digest {}", short(&h))),
                "the kept digest is not here: digests (and the records they sealed) were cut or rewritten".into(),
            ),
            _ => {}
        }
        self.report
    }
}

/// What an excerpt is held to besides its own links.
#[derive(Debug, Clone, Default)]
pub struct ExcerptChecks {
    /// The audit key's public half: digests must be signed by it.
    pub trusted_key: Option<[u8; 32]>,
    /// A digest kept from an earlier verification.
    pub kept: Option<MinDigest>,
    /// The heads read from the chain-head table, when it could be read.
    pub heads: Option<TableHeads>,
}

/// The heads the chain-head table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableHeads {
    /// Each chain's head: (position, link).
    pub chains: BTreeMap<String, (u64, String)>,
    /// The digest chain's head: (digest number, hash).
    pub digest: Option<(u64, String)>,
}

/// What the chain-head table is called in findings.
const TABLE: &str = "the chain-head table";

/// Verifies chained records and digests as exported or archived (JSON
/// lines from `govctl audit export`, or a copy of the evidence bucket), in
/// any order.
///
/// Each chain is walked back from its newest record along the links. A
/// record off that path, at a position the path holds, is set aside only
/// when its exact bytes are also on the path: a segment that lost the race
/// for its chain's head and whose records were linked again after the new
/// head. Anything else off the path is a finding: a fork, or an overwritten
/// segment. Digests are resolved the same way. The second number returned
/// counts what was set aside.
pub fn verify_excerpt(
    entries: Vec<ChainEntry>,
    digests: Vec<SignedDigest>,
    checks: &ExcerptChecks,
) -> (Report, usize) {
    let mut verifier = Verifier::excerpt(checks.trusted_key);
    if let Some(kept) = &checks.kept {
        verifier.require_digest(kept.clone());
    }
    let (chain_of_digests, lost) = resolve_digests(digests);
    let mut set_aside = lost.len();
    verifier.digests(chain_of_digests);
    for d in &lost {
        verifier.set_aside_digest(d);
    }
    let table = checks.heads.as_ref();
    if let Some(heads) = table {
        for (partition, (seq, hash)) in &heads.chains {
            verifier.vouch(TABLE, partition, *seq, hash);
        }
        if let Some((n, hash)) = &heads.digest {
            if !verifier.digest_hashes.contains(hash) {
                verifier.find(
                    None,
                    None,
                    Some(format!("digest #{n}")),
                    format!("{TABLE} names it as the newest digest, but it is not here: digests were cut"),
                );
            }
        }
    }
    let mut by_chain: BTreeMap<String, Vec<ChainEntry>> = BTreeMap::new();
    for e in entries {
        by_chain.entry(e.partition.clone()).or_default().push(e);
    }
    for (partition, mut chain) in by_chain {
        chain.sort_by(|a, b| (a.seq, &a.hash).cmp(&(b.seq, &b.hash)));
        let by_link: BTreeMap<&str, &ChainEntry> =
            chain.iter().map(|e| (e.hash.as_str(), e)).collect();
        // The head is the newest record; of several at that position (a
        // copy taken while a writer relinks), the one whose path passes
        // through the head the table names.
        let top = chain.last().map_or(0, |e| e.seq);
        let vouched = table.and_then(|t| t.chains.get(&partition));
        let mut path = Vec::new();
        for candidate in chain.iter().rev().take_while(|e| e.seq == top) {
            path = walk(candidate, &by_link);
            let through = |(s, h): &(u64, String)| path.iter().any(|e| e.seq == *s && e.hash == *h);
            if vouched.is_none_or(through) {
                break;
            }
        }
        let on_path: BTreeSet<(u64, &str)> =
            path.iter().map(|e| (e.seq, e.hash.as_str())).collect();
        let bodies: BTreeSet<&str> = path.iter().map(|e| e.body.as_str()).collect();
        let first = path.first().map_or(0, |e| e.seq);
        for e in &chain {
            if on_path.contains(&(e.seq, e.hash.as_str())) {
                continue;
            }
            if e.seq < first {
                // Older than the walk reached: the link between was broken.
                verifier.inconsistent(e, format!("does not lead to the chain's head: the chain is broken between #{} and #{first}", e.seq));
            } else if bodies.contains(e.body.as_str()) {
                set_aside += 1;
            } else {
                verifier.inconsistent(
                    e,
                    "is off the chain at a position the chain holds, and its bytes are nowhere on the chain: the chain was forked or a segment overwritten".into(),
                );
            }
        }
        for e in path {
            verifier.entry(e);
        }
    }
    (verifier.finish(), set_aside)
}

/// The records from a chain's first reachable one to `from`, along the links.
fn walk<'a>(from: &'a ChainEntry, by_link: &BTreeMap<&str, &'a ChainEntry>) -> Vec<&'a ChainEntry> {
    let mut path: Vec<&ChainEntry> = Vec::new();
    let mut at = Some(from);
    while let Some(e) = at {
        path.push(e);
        at = by_link
            .get(e.prev_hash.as_str())
            .copied()
            .filter(|p| p.seq + 1 == e.seq);
    }
    path.reverse();
    path
}

/// Splits digests into the digest chain (walked back from the newest along
/// `previous_digest_hash`; with anything off it that is not at a position
/// the chain holds, so that the verifier reports the break) and the digests
/// set aside: those that lost the race for the digest head.
fn resolve_digests(digests: Vec<SignedDigest>) -> (Vec<SignedDigest>, Vec<SignedDigest>) {
    let mut parsed: Vec<(u64, String, SignedDigest)> = Vec::new();
    let mut unreadable = Vec::new();
    for d in digests {
        match serde_json::from_str::<Digest>(&d.body) {
            Ok(body) => parsed.push((body.digest_seq, body.previous_digest_hash, d)),
            Err(_) => unreadable.push(d),
        }
    }
    parsed.sort_by(|a, b| (a.0, &a.2.hash).cmp(&(b.0, &b.2.hash)));
    let mut on_chain: BTreeSet<String> = BTreeSet::new();
    let mut at = parsed.last();
    while let Some((seq, prev, d)) = at {
        on_chain.insert(d.hash.clone());
        at = parsed
            .iter()
            .find(|(s, _, p)| *s + 1 == *seq && p.hash == *prev);
    }
    let held: BTreeSet<u64> = parsed
        .iter()
        .filter(|(_, _, d)| on_chain.contains(&d.hash))
        .map(|(s, _, _)| *s)
        .collect();
    let (mut chain, mut lost) = (Vec::new(), Vec::new());
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for (seq, _, d) in parsed {
        if !taken.insert(d.hash.clone()) {
            continue;
        }
        if on_chain.contains(&d.hash) || !held.contains(&seq) {
            chain.push(d);
        } else {
            lost.push(d);
        }
    }
    chain.extend(unreadable);
    (chain, lost)
}

/// The first 16 hex digits of a hash, to name a digest in a finding.
fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
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
        let (report, _) = verify_excerpt(excerpt.clone(), vec![], &none());
        assert!(
            !report.is_intact(),
            "a record off the chain whose bytes are nowhere on it is a fork"
        );
        // A lost race: a segment linked after #3 whose record was then
        // linked again after the new head.
        excerpt.retain(|e| e.body != event(99));
        let lost = ChainEntry::link(CONTROL_PARTITION, Some((3, &good[2].hash)), event(5));
        excerpt.push(lost);
        let (report, superseded) = verify_excerpt(excerpt.clone(), vec![], &none());
        assert!(report.is_intact(), "{:?}", report.findings);
        assert_eq!((report.records, superseded), (4, 1));

        let mut edited = excerpt.clone();
        if let Some(e) = edited.iter_mut().find(|e| e.seq == 5) {
            e.body = e.body.replace("\"a\"", "\"b\"");
        }
        assert!(
            !verify_excerpt(edited, vec![], &none()).0.is_intact(),
            "a modified record"
        );
        let mut cut = excerpt;
        cut.retain(|e| e.seq != 4);
        let (report, _) = verify_excerpt(cut, vec![], &none());
        assert!(!report.is_intact(), "a deleted record");
    }

    fn none() -> ExcerptChecks {
        ExcerptChecks::default()
    }

    fn decision(n: u32) -> String {
        format!(
            r#"{{"decision_id":"d{n}","trace_id":"t","timestamp":"2026-01-07T12:00:00.000Z","decision":"allow","reasons":[],"determining_policies":[],"agent_id":"a","user_id":"u","user_roles":[],"tool_id":"x","arguments_hash":"h","environment":"dev","policy_version":"v","policy_hash":"p","latency_us":1}}"#
        )
    }

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[9; 32])
    }

    /// A digest sealing `heads`, after `previous`.
    fn seal(previous: Option<&SignedDigest>, heads: &[&ChainEntry]) -> SignedDigest {
        use ed25519_dalek::Signer as _;
        let before: Option<Digest> = previous.map(|p| serde_json::from_str(&p.body).unwrap());
        let digest = Digest {
            digest_seq: before.as_ref().map_or(1, |d| d.digest_seq + 1),
            created_at: "2026-01-07T12:00:00.000Z".into(),
            previous_digest_hash: previous.map_or(GENESIS.to_owned(), |p| p.hash.clone()),
            heads: heads
                .iter()
                .map(|e| super::super::DigestHead {
                    partition: e.partition.clone(),
                    seq: e.seq,
                    hash: e.hash.clone(),
                })
                .collect(),
            records: heads.iter().map(|e| e.seq).sum(),
            key_id: None,
        };
        let k = key();
        let sign = |m: &[u8]| k.sign(m).to_bytes();
        SignedDigest::new(&digest, Some(&sign))
    }

    #[test]
    fn an_overwritten_segment_is_reported_against_the_digest_and_the_table() {
        let agent = partition_of("a");
        let bodies: Vec<String> = (1..=5).map(decision).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let winner = chain(&agent, &refs);
        let digest = seal(None, &[&winner[4]]);
        // A writer that lost the race for #3 overwrote the segment #4-#5
        // with its own records, linked after #3.
        let mut copy: Vec<ChainEntry> = winner.iter().take(3).cloned().collect();
        let l4 = ChainEntry::link(&agent, Some((3, &winner[2].hash)), decision(40));
        let l5 = ChainEntry::link(&agent, Some((4, &l4.hash)), decision(50));
        copy.extend([l4, l5.clone()]);
        let checks = ExcerptChecks {
            trusted_key: Some(key().verifying_key().to_bytes()),
            ..none()
        };
        let (report, _) = verify_excerpt(copy.clone(), vec![digest], &checks);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.seq == Some(5) && f.problem.contains("digest #1")),
            "{:?}",
            report.findings
        );
        let table = ExcerptChecks {
            heads: Some(TableHeads {
                chains: BTreeMap::from([(agent.clone(), (5, winner[4].hash.clone()))]),
                digest: None,
            }),
            ..none()
        };
        let (report, _) = verify_excerpt(copy, vec![], &table);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.problem.contains("the chain-head table")),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn a_record_chained_twice_is_reported() {
        let agent = partition_of("a");
        let (d1, d2) = (decision(1), decision(2));
        let twice = chain(&agent, &[&d1, &d2, &d1]);
        let (report, _) = verify_excerpt(twice, vec![], &none());
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(report.findings[0].problem.contains("chained twice"));
        assert_eq!(report.findings[0].record.as_deref(), Some("d1"));
    }

    #[test]
    fn a_cut_tail_is_caught_by_a_kept_digest() {
        let agent = partition_of("a");
        let bodies: Vec<String> = (1..=6).map(decision).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let full = chain(&agent, &refs);
        let first = seal(None, &[&full[2]]);
        let second = seal(Some(&first), &[&full[5]]);
        let with_key = |kept: Option<MinDigest>| ExcerptChecks {
            trusted_key: Some(key().verifying_key().to_bytes()),
            kept,
            heads: None,
        };
        let (report, _) = verify_excerpt(
            full.clone(),
            vec![second.clone(), first.clone()],
            &with_key(Some(MinDigest::Seq(2))),
        );
        assert!(report.is_intact(), "{:?}", report.findings);
        // Records #4-#6 cut, with the digest that sealed them.
        let cut: Vec<ChainEntry> = full.iter().take(3).cloned().collect();
        let (report, _) = verify_excerpt(cut.clone(), vec![first.clone()], &with_key(None));
        assert!(
            report.is_intact(),
            "without a kept digest the cut is invisible"
        );
        for kept in [MinDigest::Seq(2), MinDigest::Hash(second.hash.clone())] {
            let (report, _) =
                verify_excerpt(cut.clone(), vec![first.clone()], &with_key(Some(kept)));
            assert!(!report.is_intact(), "the kept digest is missing");
        }
        assert_eq!("2".parse::<MinDigest>(), Ok(MinDigest::Seq(2)));
        assert_eq!(
            second.hash.parse::<MinDigest>(),
            Ok(MinDigest::Hash(second.hash.clone()))
        );
        assert!("latest".parse::<MinDigest>().is_err());
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
