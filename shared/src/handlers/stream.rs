//! DynamoDB stream events, as Lambda delivers them to the decision-log and
//! denial-metrics functions: only what those need, the new image's
//! `kind` and `record` attributes.

use serde::Deserialize;

use super::HandlerError;
use crate::audit::ControlEvent;
use crate::model::DecisionRecord;

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Records")]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventID", default)]
    event_id: String,
    dynamodb: Option<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(rename = "NewImage")]
    new_image: Option<Image>,
}

#[derive(Deserialize)]
struct Image {
    kind: Option<Str>,
    record: Option<Str>,
}

#[derive(Deserialize)]
struct Str {
    #[serde(rename = "S")]
    s: String,
}

/// One decision that reached the table.
#[derive(Debug, Clone)]
pub(crate) struct Streamed {
    /// `decision` (made by authorize) or `approval` (closing an approval).
    pub kind: String,
    /// The record.
    pub record: DecisionRecord,
}

/// Whether `event` is a stream batch.
pub(crate) fn is_stream_event(event: &serde_json::Value) -> bool {
    event
        .get("Records")
        .is_some_and(serde_json::Value::is_array)
}

/// The new images of a batch: (event id, kind, record text).
fn images(event: serde_json::Value) -> Result<Vec<(String, String, String)>, HandlerError> {
    let event: Event = serde_json::from_value(event)
        .map_err(|e| HandlerError::invalid(format!("not a DynamoDB stream event: {e}")))?;
    Ok(event
        .records
        .into_iter()
        .filter_map(|r| {
            let image = r.dynamodb.and_then(|d| d.new_image)?;
            Some((r.event_id, image.kind?.s, image.record?.s))
        })
        .collect())
}

/// The decisions in a stream batch; items that are not decisions (the
/// idempotency claims, control-plane events) are skipped.
pub(crate) fn decisions(event: serde_json::Value) -> Result<Vec<Streamed>, HandlerError> {
    Ok(split(event, false)?.1)
}

/// The control-plane events (items of kind `control`, written by `govctl
/// policy push`) and the decisions of a stream batch, from one parse.
pub(crate) fn evidence(
    event: serde_json::Value,
) -> Result<(Vec<ControlEvent>, Vec<Streamed>), HandlerError> {
    split(event, true)
}

fn split(
    event: serde_json::Value,
    with_control: bool,
) -> Result<(Vec<ControlEvent>, Vec<Streamed>), HandlerError> {
    let (mut controls, mut decisions) = (Vec::new(), Vec::new());
    for (event_id, kind, record) in images(event)? {
        match kind.as_str() {
            // Executions (the MCP gateway's) are evidence like the rest.
            "decision" | "approval" | "execution" => {
                let record = serde_json::from_str(&record).map_err(|e| {
                    HandlerError::invalid(format!(
                        "stream record `{event_id}` holds no decision: {e}"
                    ))
                })?;
                decisions.push(Streamed { kind, record });
            }
            "control" if with_control => {
                controls.push(serde_json::from_str(&record).map_err(|e| {
                    HandlerError::invalid(format!(
                        "stream record `{event_id}` holds no control-plane event: {e}"
                    ))
                })?);
            }
            _ => {}
        }
    }
    Ok((controls, decisions))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream batch as Lambda delivers it: an insert of a decision, an
    /// idempotency claim, and a removal without a new image.
    fn event() -> serde_json::Value {
        let record = serde_json::json!({
            "decision_id": "0193-a", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "timestamp": "2026-11-24T12:00:00.000Z", "decision": "deny",
            "reasons": [{"code": "tool_not_granted", "message": "m"}],
            "determining_policies": ["base:grant"], "agent_id": "agent-support-1",
            "user_id": "alice", "user_roles": ["support_agent"], "tool_id": "search_logs",
            "arguments_hash": "sha256:00", "environment": "dev", "policy_version": "v",
            "policy_hash": "sha256:11", "latency_us": 12
        })
        .to_string();
        serde_json::json!({"Records": [
            {
                "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1795521600,
                    "Keys": {"pk": {"S": "decision#0193-a"}},
                    "NewImage": {
                        "pk": {"S": "decision#0193-a"}, "kind": {"S": "decision"},
                        "decision": {"S": "deny"}, "latency_us": {"N": "12"},
                        "record": {"S": record}
                    },
                    "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/x-decisions/stream/2026-11-24T00:00:00.000"
            },
            {
                "eventID": "2", "eventName": "INSERT", "eventSource": "aws:dynamodb",
                "dynamodb": {"NewImage": {"pk": {"S": "idem#1:a#k"}, "kind": {"S": "idempotency"}, "record": {"S": "{}"}}}
            },
            {
                "eventID": "3", "eventName": "REMOVE", "eventSource": "aws:dynamodb",
                "dynamodb": {"Keys": {"pk": {"S": "decision#old"}}}
            }
        ]})
    }

    #[test]
    fn only_decisions_are_read_from_a_stream_batch() {
        assert!(is_stream_event(&event()));
        assert!(!is_stream_event(&serde_json::json!({"action": "notify"})));
        let found = decisions(event()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, "decision");
        assert_eq!(found[0].record.tool_id, "search_logs");
    }

    #[test]
    fn a_record_that_is_not_a_decision_fails_the_batch() {
        let mut e = event();
        e["Records"][0]["dynamodb"]["NewImage"]["record"]["S"] = "not json".into();
        let err = decisions(e).unwrap_err();
        assert_eq!(err.kind, super::super::ErrorType::InvalidEvent);
    }
}
