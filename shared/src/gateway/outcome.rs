//! What the gateway answers a `tools/call` it did not forward, and the
//! execution record of one it did.
//!
//! A refused call is a tool result with `isError: true` whose text tells the
//! model why, so that an agent can recover (ask for approval, try later, use
//! another tool) instead of failing on a protocol error.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::model::{Decision, DecisionRecord, Execution, Reason, ReasonCode};
use crate::ports::ApprovalItem;

/// The `_meta` key under which results carry the decision.
pub const META_KEY: &str = "agent-governance/decision";

fn reasons_text(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(|r| format!("- {}: {}", r.code.as_str(), r.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The decision as results carry it under [`META_KEY`].
fn decision_meta(record: &DecisionRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("decision".into(), json!(record.decision.as_str()));
    m.insert("decision_id".into(), json!(record.decision_id));
    m.insert(
        "reasons".into(),
        json!(record
            .reasons
            .iter()
            .map(|r| r.code.as_str())
            .collect::<Vec<_>>()),
    );
    if let Some(a) = &record.approval_id {
        m.insert("approval_id".into(), json!(a));
    }
    if let Some(retry) = record.limit.as_ref().and_then(|l| l.retry_after_seconds) {
        m.insert("retry_after_seconds".into(), json!(retry));
    }
    m
}

fn meta(record: &DecisionRecord) -> Value {
    json!({ META_KEY: decision_meta(record) })
}

/// The result of a denied call: nothing was forwarded.
pub fn refused(record: &DecisionRecord) -> Value {
    let mut text = format!(
        "The call to `{}` was denied by the governance gateway and was not executed \
         (decision {}).\nReasons:\n{}",
        record.tool_id,
        record.decision_id,
        reasons_text(&record.reasons)
    );
    if let Some(retry) = record.limit.as_ref().and_then(|l| l.retry_after_seconds) {
        text.push_str(&format!("\nThe limit resets in {retry} s."));
    }
    json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "_meta": meta(record),
    })
}

/// The result of a call that waits for a human: it names the approval, who
/// must approve and until when; the agent repeats exactly the same call once
/// it is approved.
pub fn waiting(record: &DecisionRecord, item: Option<&ApprovalItem>) -> Value {
    let approval_id = record.approval_id.as_deref().unwrap_or("unknown");
    let group = item
        .and_then(|i| i.request.approver_group.as_deref())
        .unwrap_or("the tool's approvers");
    let until = item.map_or("its timeout", |i| i.request.expires_at.as_str());
    let status = item.map_or("pending", |i| i.status.as_str());
    let text = format!(
        "The call to `{tool}` needs human approval and was not executed yet. Approval \
         {approval_id} ({status}) waits for a member of `{group}` until {until}. Once it is \
         approved, repeat exactly the same call (same tool, same arguments) to execute it \
         once; the approval is bound to these arguments. Decision {decision}.",
        tool = record.tool_id,
        decision = record.decision_id,
    );
    let mut m = decision_meta(record);
    m.insert(
        "approval".into(),
        json!({
            "approval_id": approval_id,
            "status": status,
            "approver_group": item.and_then(|i| i.request.approver_group.clone()),
            "expires_at": item.map(|i| i.request.expires_at.clone()),
        }),
    );
    json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "_meta": {META_KEY: m},
    })
}

/// The approval a call's answer says it waits for, if it does.
pub fn waiting_approval_id(result: &Value) -> Option<String> {
    let m = result.get("_meta")?.get(META_KEY)?;
    if m.get("decision").and_then(Value::as_str) != Some("pending_approval") {
        return None;
    }
    m.get("approval")?
        .get("approval_id")?
        .as_str()
        .map(str::to_owned)
}

/// The answer to a held call whose approval ended without a grant
/// (rejected, expired, failed): the waiting answer, saying how it ended.
pub fn not_approved(waiting: &Value, item: &ApprovalItem) -> Value {
    let mut result = waiting.clone();
    let text = format!(
        "The call to `{tool}` was not executed: approval {id} was {status}{by}. Nothing was \
         forwarded.",
        tool = item.request.decision.tool_id,
        id = item.request.approval_id,
        status = item.status.as_str(),
        by = item
            .approver
            .as_deref()
            .map(|a| format!(" by {a}"))
            .unwrap_or_default(),
    );
    if let Some(obj) = result.as_object_mut() {
        obj.insert("content".into(), json!([{"type": "text", "text": text}]));
    }
    if let Some(approval) = result
        .get_mut("_meta")
        .and_then(|m| m.get_mut(META_KEY))
        .and_then(|m| m.get_mut("approval"))
    {
        if let Some(approval) = approval.as_object_mut() {
            approval.insert("status".into(), json!(item.status.as_str()));
        }
    }
    result
}

/// Marks a forwarded call's result with its decision, so that the agent
/// (and whoever reads its transcript) can find the evidence.
pub fn annotate(result: &mut Value, record: &DecisionRecord, removed_paths: &[String]) {
    let Some(obj) = result.as_object_mut() else {
        return;
    };
    let meta = obj.entry("_meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Some(meta) = meta.as_object_mut() {
        let mut m = decision_meta(record);
        if !removed_paths.is_empty() {
            m.insert("removed_paths".into(), json!(removed_paths));
        }
        meta.insert(META_KEY.into(), Value::Object(m));
    }
}

/// Whether a server's answer to a call is an `InputRequiredResult`
/// (SEP-2322): questions for the client, not the tool's result.
pub fn is_input_required(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// The result of a forwarded call whose upstream gave no answer.
pub fn upstream_failed(record: &DecisionRecord, error: &str) -> Value {
    json!({
        "content": [{"type": "text", "text": format!(
            "The call to `{}` was allowed (decision {}) but its server did not answer: {error}. \
             Whether it took effect is unknown.",
            record.tool_id, record.decision_id
        )}],
        "isError": true,
        "_meta": meta(record),
    })
}

/// The record of `execution`, the carrying out of the allow `decision`: it
/// repeats the decision's parties, tool and arguments hash, so that the
/// audit chain links decision, approval and effect. Its id is derived from
/// the decision's, so each allow has at most one execution record.
pub fn execution_record(
    decision: &DecisionRecord,
    execution: Execution,
    at: &str,
) -> DecisionRecord {
    let (code, message) = match &execution.error {
        None => (
            ReasonCode::Executed,
            format!(
                "executed as `{}` on server `{}` in {} ms: {}",
                execution.upstream_tool,
                execution.server,
                execution.duration_ms,
                execution.status.as_str()
            ),
        ),
        Some(e) => (
            ReasonCode::ExecutionFailed,
            format!(
                "forwarded as `{}` to server `{}`, which failed after {} ms: {e}",
                execution.upstream_tool, execution.server, execution.duration_ms
            ),
        ),
    };
    DecisionRecord {
        decision_id: execution_id(&decision.decision_id),
        timestamp: at.to_owned(),
        decision: Decision::Allow,
        reasons: vec![Reason {
            code,
            message,
            policy_id: None,
        }],
        errors: Vec::new(),
        requested_risk: None,
        idempotency_key: None,
        reasoning: None,
        latency_us: 0,
        limit: None,
        approval: None,
        execution: Some(execution),
        shadow: None,
        ..decision.clone()
    }
}

/// The record of a request other than a tool call (`resources/read`,
/// `prompts/get`, …): forwarded to `servers`, or refused. Its `tool_id` is
/// the method; its arguments are the request's parameters.
#[allow(clippy::too_many_arguments)]
pub fn forward_record(
    agent_id: &str,
    agent_version: Option<String>,
    user: &crate::model::UserContext,
    trace_id: &str,
    method: &str,
    params: &Value,
    servers: &[String],
    environment: &str,
    policy: (&str, &str),
    at: &str,
) -> DecisionRecord {
    let (decision, code, message) = if servers.is_empty() {
        (
            Decision::Deny,
            ReasonCode::NotForwarded,
            format!(
                "`{method}` is forwarded only to servers whose registry entry lists it under \
                 `forward`, and no server this agent reaches for this user does"
            ),
        )
    } else {
        (
            Decision::Allow,
            ReasonCode::Forwarded,
            format!("`{method}` forwarded to {}", servers.join(", ")),
        )
    };
    let kept = serde_json::to_string(params)
        .is_ok_and(|s| s.len() <= crate::service::limits::MAX_KEPT_ARGUMENTS_BYTES)
        .then(|| params.clone());
    DecisionRecord {
        decision_id: uuid::Uuid::now_v7().to_string(),
        trace_id: trace_id.to_owned(),
        timestamp: at.to_owned(),
        decision,
        reasons: vec![Reason {
            code,
            message,
            policy_id: None,
        }],
        determining_policies: Vec::new(),
        errors: Vec::new(),
        agent_id: agent_id.to_owned(),
        agent_version,
        user_id: user.id.clone(),
        user_roles: user.roles.clone(),
        tool_id: method.to_owned(),
        requested_risk: None,
        arguments_hash: crate::service::canonical_hash(params),
        arguments: kept,
        environment: environment.to_owned(),
        policy_version: policy.0.to_owned(),
        policy_hash: policy.1.to_owned(),
        session_id: None,
        run_id: None,
        limit: None,
        idempotency_key: None,
        reasoning: None,
        latency_us: 0,
        approval_id: None,
        approval: None,
        execution: None,
        shadow: None,
    }
}

/// A UUID-shaped id that only this decision's execution produces.
pub fn execution_id(decision_id: &str) -> String {
    let digest = Sha256::digest(format!("{decision_id}/execution"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}
