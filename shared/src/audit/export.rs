//! Export rows: each chained record with its chain position and links, as a
//! JSON line (lossless: the stored bytes are kept) or a flat CSV row.

use serde::Serialize;

use super::chain::{ChainEntry, CONTROL_PARTITION};
use super::control::ControlEvent;
use super::digest::SignedDigest;
use crate::model::DecisionRecord;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, holding the record's exact stored bytes.
    Jsonl,
    /// One flat row per record, for spreadsheets.
    Csv,
}

/// The CSV header, in column order.
pub const CSV_HEADER: [&str; 26] = [
    "layer",
    "timestamp",
    "id",
    "partition",
    "seq",
    "hash",
    "prev_hash",
    "agent_id",
    "agent_version",
    "user_id",
    "tool_id",
    "decision",
    "reasons",
    "policy_version",
    "policy_hash",
    "arguments_hash",
    "trace_id",
    "session_id",
    "latency_us",
    "approval_id",
    "approval_status",
    "approver",
    "reasoning",
    "control_action",
    "actor",
    "message",
];

/// One JSON line: the chain position and the record itself.
#[derive(Debug, Serialize)]
struct RecordLine<'a> {
    layer: &'static str,
    partition: &'a str,
    seq: u64,
    prev_hash: &'a str,
    hash: &'a str,
    record: &'a serde_json::value::RawValue,
}

/// The layer a chain holds: `control` or `decision`.
pub fn layer(partition: &str) -> &'static str {
    if partition == CONTROL_PARTITION {
        "control"
    } else {
        "decision"
    }
}

/// The JSON line of `e`. The record is embedded byte for byte, so the line
/// can be verified against its link.
pub fn jsonl(e: &ChainEntry) -> Result<String, serde_json::Error> {
    let record = serde_json::value::RawValue::from_string(e.body.clone())?;
    serde_json::to_string(&RecordLine {
        layer: layer(&e.partition),
        partition: &e.partition,
        seq: e.seq,
        prev_hash: &e.prev_hash,
        hash: &e.hash,
        record: &record,
    })
}

/// A JSON line back into its chain entry, the record's bytes as exported.
pub fn parse_jsonl(line: &str) -> Result<ChainEntry, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Owned<'a> {
        partition: String,
        seq: u64,
        prev_hash: String,
        hash: String,
        #[serde(borrow)]
        record: &'a serde_json::value::RawValue,
    }
    let l: Owned<'_> = serde_json::from_str(line)?;
    Ok(ChainEntry {
        partition: l.partition,
        seq: l.seq,
        prev_hash: l.prev_hash,
        hash: l.hash,
        body: l.record.get().to_owned(),
    })
}

/// One JSON line of a signed digest, in exports and in the evidence bucket.
#[derive(Debug, Serialize, serde::Deserialize)]
struct DigestLine {
    layer: String,
    digest_seq: u64,
    body: String,
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// The layer name of digest lines.
pub const DIGEST_LAYER: &str = "digest";

/// The JSON line of a signed digest (`layer` `digest`): its exact body,
/// hash and signature, so that it verifies as stored.
pub fn digest_jsonl(d: &SignedDigest) -> Result<String, serde_json::Error> {
    let body: super::Digest = serde_json::from_str(&d.body)?;
    serde_json::to_string(&DigestLine {
        layer: DIGEST_LAYER.to_owned(),
        digest_seq: body.digest_seq,
        body: d.body.clone(),
        hash: d.hash.clone(),
        signature: d.signature.clone(),
    })
}

/// One line of an export or of the evidence bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A chained record.
    Record(ChainEntry),
    /// A signed digest.
    Digest(SignedDigest),
}

/// A line of an export or of the evidence bucket: a record or a digest.
pub fn parse_line(line: &str) -> Result<Line, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Layer<'a> {
        #[serde(borrow, default)]
        layer: Option<&'a str>,
    }
    let layer: Layer<'_> = serde_json::from_str(line)?;
    if layer.layer == Some(DIGEST_LAYER) {
        let d: DigestLine = serde_json::from_str(line)?;
        return Ok(Line::Digest(SignedDigest {
            body: d.body,
            hash: d.hash,
            signature: d.signature,
        }));
    }
    parse_jsonl(line).map(Line::Record)
}

/// The CSV row of `e`, in [`CSV_HEADER`]'s order.
pub fn csv_row(e: &ChainEntry) -> Result<Vec<String>, serde_json::Error> {
    let position = [
        e.partition.clone(),
        e.seq.to_string(),
        e.hash.clone(),
        e.prev_hash.clone(),
    ];
    let mut row = Vec::with_capacity(CSV_HEADER.len());
    if e.partition == CONTROL_PARTITION {
        let c: ControlEvent = serde_json::from_str(&e.body)?;
        row.extend(["control".to_owned(), c.timestamp, c.event_id]);
        row.extend(position);
        row.extend(std::iter::repeat_n(String::new(), 6));
        row.extend([c.version_id, c.content_hash]);
        row.extend(std::iter::repeat_n(String::new(), 8));
        row.extend([
            c.action.as_str().to_owned(),
            c.actor,
            c.message.unwrap_or_default(),
        ]);
    } else {
        let d: DecisionRecord = serde_json::from_str(&e.body)?;
        let reasons: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
        row.extend(["decision".to_owned(), d.timestamp, d.decision_id]);
        row.extend(position);
        row.extend([
            d.agent_id,
            d.agent_version.unwrap_or_default(),
            d.user_id,
            d.tool_id,
            d.decision.as_str().to_owned(),
            reasons.join(";"),
            d.policy_version,
            d.policy_hash,
            d.arguments_hash,
            d.trace_id,
            d.session_id.unwrap_or_default(),
            d.latency_us.to_string(),
            d.approval_id.unwrap_or_default(),
            d.approval
                .as_ref()
                .map(|a| a.status.as_str().to_owned())
                .unwrap_or_default(),
            d.approval.and_then(|a| a.approver).unwrap_or_default(),
            d.reasoning.unwrap_or_default(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_one_value_per_column() {
        let event = r#"{"event_id":"e1","timestamp":"t","actor":"ana","action":"policy_published","version_id":"v","content_hash":"h","message":"m"}"#;
        let e = ChainEntry::link(CONTROL_PARTITION, None, event.to_owned());
        let row = csv_row(&e).unwrap();
        assert_eq!(row.len(), CSV_HEADER.len());
        assert_eq!(row.last().map(String::as_str), Some("m"));
        let line: serde_json::Value = serde_json::from_str(&jsonl(&e).unwrap()).unwrap();
        assert_eq!(line["record"]["actor"], "ana");
        assert_eq!(line["hash"], e.hash.as_str());
        assert_eq!(parse_jsonl(&jsonl(&e).unwrap()).unwrap(), e, "lossless");
        assert_eq!(parse_line(&jsonl(&e).unwrap()).unwrap(), Line::Record(e));
        let digest = super::super::Digest {
            digest_seq: 3,
            created_at: "t".into(),
            previous_digest_hash: super::super::GENESIS.into(),
            heads: vec![],
            records: 0,
            key_id: None,
        };
        let signed = SignedDigest::new(&digest, None);
        let line = digest_jsonl(&signed).unwrap();
        assert!(
            line.starts_with(r#"{"layer":"digest","digest_seq":3,"#),
            "{line}"
        );
        assert_eq!(parse_line(&line).unwrap(), Line::Digest(signed));
    }
}
