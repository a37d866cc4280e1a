//! Hash links: each record's link commits to its partition, its position,
//! its predecessor's link and its exact bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The predecessor of every chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain of control-plane events (policy versions published and activated).
pub const CONTROL_PARTITION: &str = "control";

/// How many chains decisions are spread over. A fixed, small number: each
/// chain's head is read once per group commit, and a digest names every head.
pub const DECISION_PARTITIONS: u8 = 16;

/// Separates this scheme's hashes from any other use of SHA-256 over the same bytes.
const DOMAIN: &[u8] = b"agent-governance/audit/v1\n";

/// The chain a decision of `agent_id` belongs to: `d0` … `df`. The same agent
/// always lands in the same chain, so one agent's history is one ordered chain.
pub fn partition_of(agent_id: &str) -> String {
    let first = Sha256::digest(agent_id.as_bytes())
        .first()
        .copied()
        .unwrap_or(0);
    format!("d{:x}", (first >> 4) % DECISION_PARTITIONS)
}

/// The link of the record at `seq` in `partition`, whose predecessor's link is
/// `prev_hash` and whose stored bytes are `body` (hex SHA-256).
pub fn link_hash(partition: &str, seq: u64, prev_hash: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(partition.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// One chained record as stored: where it sits, its links and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// The chain.
    pub partition: String,
    /// Its position in the chain, from 1.
    pub seq: u64,
    /// The predecessor's link ([`GENESIS`] for the first record).
    pub prev_hash: String,
    /// This record's link.
    pub hash: String,
    /// The record's exact stored bytes (a decision record or a control event, as JSON).
    pub body: String,
}

impl ChainEntry {
    /// Links `body` after a predecessor at `prev` (its seq and link), or first.
    pub fn link(partition: &str, prev: Option<(u64, &str)>, body: String) -> Self {
        let (seq, prev_hash) = match prev {
            Some((seq, hash)) => (seq + 1, hash.to_owned()),
            None => (1, GENESIS.to_owned()),
        };
        let hash = link_hash(partition, seq, &prev_hash, &body);
        Self {
            partition: partition.to_owned(),
            seq,
            prev_hash,
            hash,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers, computed outside this code base (Python's hashlib) from
    /// the formula the README documents, so that a change to the formula
    /// cannot pass unnoticed by changing both sides.
    #[test]
    fn links_and_chains_match_known_answers() {
        let first = link_hash(
            "d3",
            1,
            GENESIS,
            r#"{"decision_id":"a","decision":"allow"}"#,
        );
        assert_eq!(
            first,
            "42b0425ea66f23832aa33568907041f270b1f4c3fa3b193132d5b26503b2e67d"
        );
        assert_eq!(
            link_hash("d3", 2, &first, r#"{"decision_id":"b","decision":"deny"}"#),
            "5c00e9da297616ebb777498ed0d5c9d4967a3c66c4433855e36755dfff76847c"
        );
        assert_eq!(partition_of("agent-support-1"), "d8");
    }

    #[test]
    fn partitions_are_stable_and_bounded() {
        assert_eq!(partition_of("agent-a"), partition_of("agent-a"));
        let all: std::collections::BTreeSet<String> = (0..500)
            .map(|i| partition_of(&format!("agent-{i}")))
            .collect();
        assert_eq!(all.len(), usize::from(DECISION_PARTITIONS));
        assert!(all.iter().all(|p| p.len() == 2 && p.starts_with('d')));
    }

    #[test]
    fn a_link_commits_to_every_input() {
        let base = link_hash("d1", 2, GENESIS, "{}");
        assert_ne!(base, link_hash("d2", 2, GENESIS, "{}"));
        assert_ne!(base, link_hash("d1", 3, GENESIS, "{}"));
        assert_ne!(base, link_hash("d1", 2, &"1".repeat(64), "{}"));
        assert_ne!(base, link_hash("d1", 2, GENESIS, "{ }"));
        let first = ChainEntry::link("d1", None, "{}".into());
        assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS));
        let second = ChainEntry::link("d1", Some((1, &first.hash)), "{}".into());
        assert_eq!(second.seq, 2);
        assert_eq!(second.prev_hash, first.hash);
    }
}
