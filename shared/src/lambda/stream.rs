//! DynamoDB stream events, as Lambda delivers them to the decision-log and
//! denial-metrics functions: only what those need, the new image's
//! `kind` and `record` attributes.

use serde::Deserialize;

use super::HandlerError;
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

/// The decisions in a stream batch; items that are not decisions (the
/// idempotency claims) are skipped.
pub(crate) fn decisions(event: serde_json::Value) -> Result<Vec<Streamed>, HandlerError> {
    let event: Event = serde_json::from_value(event)
        .map_err(|e| HandlerError::invalid(format!("not a DynamoDB stream event: {e}")))?;
    let mut out = Vec::new();
    for r in event.records {
        let Some(image) = r.dynamodb.and_then(|d| d.new_image) else {
            continue;
        };
        let (Some(kind), Some(record)) = (image.kind, image.record) else {
            continue;
        };
        if kind.s != "decision" && kind.s != "approval" {
            continue;
        }
        let record = serde_json::from_str(&record.s).map_err(|e| {
            HandlerError::invalid(format!(
                "stream record `{}` holds no decision: {e}",
                r.event_id
            ))
        })?;
        out.push(Streamed {
            kind: kind.s,
            record,
        });
    }
    Ok(out)
}
