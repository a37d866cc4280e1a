//! Exactly-once side effects: a tool that declares `idempotency: {key:
//! [arguments], window_seconds}` is carried out upstream at most once per
//! key within the window, whatever number of duplicates arrive, at once or
//! later, from the agent or from a client's retries.
//!
//! Before a call of such a tool is decided, it claims its key in the
//! [`ExecutionLedger`] with one conditional write. The one attempt that gets
//! the key is decided and, if allowed, carried out; its filtered result is
//! kept for the window. Every other attempt is a duplicate: it is still
//! decided (the policy must permit it, so that nobody reads a result they
//! may not cause), recorded with `duplicate_call`, and answered with the
//! first call's result, or told that it is still running. An attempt that
//! is not allowed, or whose server could not be reached at all, gives the
//! key up, so that a later call can carry the effect out.
//!
//! [`ExecutionLedger`]: crate::ports::ExecutionLedger

use serde_json::{json, Map, Value};

use crate::model::{IdempotencySpec, Reason, ReasonCode, ToolSpec};
use crate::ports::Held;

/// How long a claim whose attempt never completes (a crash) holds its key
/// beyond the server's timeout.
pub const LEASE_MARGIN_SECONDS: i64 = 30;

/// The exactly-once key of a call: the tool and the values of its key
/// arguments (an absent argument counts as `null`).
pub fn key(tool: &ToolSpec, spec: &IdempotencySpec, arguments: &Value) -> String {
    let values: Map<String, Value> = spec
        .key
        .iter()
        .map(|name| {
            (
                name.clone(),
                arguments.get(name).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    format!(
        "{}#{}",
        tool.id,
        crate::service::arguments_hash(Some(tool), &Value::Object(values))
    )
}

/// The reason a duplicate is allowed with.
pub fn duplicate_reason(tool: &ToolSpec, spec: &IdempotencySpec, held: &Held) -> Reason {
    let keys = spec.key.join(", ");
    let message = match held {
        Held::Done { decision_id, .. } => format!(
            "a call of `{}` with the same {keys} was carried out under decision {decision_id} \
             within the last {} s; it is not carried out again, and this call gets its result",
            tool.id, spec.window_seconds
        ),
        Held::Running { .. } => format!(
            "a call of `{}` with the same {keys} is being carried out now; it is not carried \
             out again",
            tool.id
        ),
    };
    Reason {
        code: ReasonCode::DuplicateCall,
        message,
        policy_id: None,
    }
}

/// What a permitted duplicate gets: the first call's result, marked as a
/// replay, or an answer that it is still running.
pub fn duplicate_answer(held: &Held, decision_id: &str) -> Value {
    match held {
        Held::Done {
            decision_id: first,
            result,
        } => {
            let mut result = result.clone();
            if let Some(obj) = result.as_object_mut() {
                let meta = obj.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert(
                        super::outcome::META_KEY.into(),
                        json!({
                            "decision": "allow",
                            "decision_id": decision_id,
                            "reasons": ["duplicate_call"],
                            "replay_of": first,
                        }),
                    );
                }
            }
            result
        }
        Held::Running { since } => json!({
            "content": [{"type": "text", "text": format!(
                "A call with the same key is being carried out now (since Unix time {since}); this \
                 duplicate was not carried out. Repeat the call in a moment to get its result \
                 (decision {decision_id})."
            )}],
            "isError": true,
            "_meta": {super::outcome::META_KEY: {
                "decision": "allow",
                "decision_id": decision_id,
                "reasons": ["duplicate_call"],
                "in_progress": true,
            }},
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_key_is_the_tool_and_the_key_arguments_only() {
        let tool: ToolSpec = serde_json::from_value(json!({
            "id": "generate_recommendation", "category": "write", "risk": "high",
            "classification": "confidential"
        }))
        .unwrap();
        let spec = IdempotencySpec {
            key: vec!["application_id".into()],
            window_seconds: 86_400,
        };
        let a = key(
            &tool,
            &spec,
            &json!({"application_id": "A-1", "recommendation": "approve"}),
        );
        let b = key(
            &tool,
            &spec,
            &json!({"recommendation": "decline", "application_id": "A-1"}),
        );
        let c = key(
            &tool,
            &spec,
            &json!({"application_id": "A-2", "recommendation": "approve"}),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("generate_recommendation#sha256:"));
    }
}
