//! Human approval of high-impact calls: the record that closes an approval,
//! and the single-use grant an approval gives for exactly the approved call.
//!
//! The workflow that waits for a human is host-specific (a Step Functions
//! state machine on AWS); what it records is not. Each outcome becomes a
//! decision record of its own that repeats the pending decision's parties,
//! tool, arguments hash and policy version, so the decision log alone tells
//! the whole story.
//!
//! An approvals row goes `pending` → `approved` (a human said yes) →
//! `granted` (the `approval_granted` record is durable; the grant is
//! usable), written with that record in one atomic write. An approval whose
//! workflow cannot be resumed goes from `pending` or `approved` to
//! `expired` or `failed` the same way, with its record, so a grant is never
//! usable without the record that says it was granted.

use sha2::{Digest, Sha256};

use crate::model::{ApprovalOutcome, ApprovalStatus, Decision, DecisionRecord, Reason, ReasonCode};
use crate::ports::{ApprovalItem, ApprovalRequest};

/// How long after a human approved a call the agent may make it: the
/// approval's single-use grant expires then.
pub const GRANT_TTL_SECONDS: i64 = 900;

/// Why a presented grant cannot be used for `call`, most specific first;
/// `None` if nothing speaks against it (the store's conditional write then
/// decides, so a grant is used once even when two calls race).
pub fn grant_refusal(
    item: Option<&ApprovalItem>,
    call: &DecisionRecord,
    decided_after: &str,
) -> Option<Reason> {
    let reason = |code: ReasonCode, message: String| {
        Some(Reason {
            code,
            message,
            policy_id: None,
        })
    };
    let Some(item) = item else {
        return reason(ReasonCode::GrantNotFound, "no such approval".to_owned());
    };
    let granted = &item.request.decision;
    if granted.agent_id != call.agent_id {
        return reason(
            ReasonCode::GrantAgentMismatch,
            "the approval was given to another agent".to_owned(),
        );
    }
    match item.status {
        ApprovalStatus::Granted => {}
        ApprovalStatus::Approved => {
            return reason(
                ReasonCode::GrantNotApproved,
                "the approval is approved, but its grant is not recorded yet".to_owned(),
            )
        }
        other => {
            return reason(
                ReasonCode::GrantNotApproved,
                format!("the approval is {}", other.as_str()),
            )
        }
    }
    if granted.user_id != call.user_id {
        return reason(
            ReasonCode::GrantUserMismatch,
            "the approval was given for another user".to_owned(),
        );
    }
    if granted.tool_id != call.tool_id {
        return reason(
            ReasonCode::GrantToolMismatch,
            format!("the approval was given for tool `{}`", granted.tool_id),
        );
    }
    if granted.arguments_hash != call.arguments_hash {
        return reason(
            ReasonCode::GrantArgumentsMismatch,
            "the approval was given for other arguments".to_owned(),
        );
    }
    if granted.policy_version != call.policy_version {
        return reason(
            ReasonCode::GrantPolicyChanged,
            "the policy version changed since the approval was requested".to_owned(),
        );
    }
    if let Some(at) = &item.grant_used_at {
        return reason(
            ReasonCode::GrantAlreadyUsed,
            format!("the approval's grant was used at {at}"),
        );
    }
    if item
        .decided_at
        .as_deref()
        .is_none_or(|at| at <= decided_after)
    {
        return reason(
            ReasonCode::GrantExpired,
            format!(
                "the approval's grant expired {} minutes after it was given",
                GRANT_TTL_SECONDS / 60
            ),
        );
    }
    None
}

/// The decision record of a step of an approval: approvers notified
/// (`Pending`), or how it ended. `Approved` and `Granted` give the same
/// record, the `approval_granted` allow, whose outcome status is `approved`.
///
/// Its id is derived from the approval and the outcome, so a workflow step
/// that is retried after recording it records nothing twice.
pub fn outcome_record(
    request: &ApprovalRequest,
    status: ApprovalStatus,
    approver: Option<String>,
    comment: Option<String>,
    at: &str,
) -> DecisionRecord {
    let pending = &request.decision;
    let status = match status {
        ApprovalStatus::Granted => ApprovalStatus::Approved,
        other => other,
    };
    let (decision, code, message) = match status {
        ApprovalStatus::Pending => (
            Decision::PendingApproval,
            ReasonCode::ApproversNotified,
            format!(
                "approvers ({}) were notified; the call waits until {}",
                request
                    .approver_group
                    .as_deref()
                    .unwrap_or("no group named"),
                request.expires_at
            ),
        ),
        ApprovalStatus::Approved | ApprovalStatus::Granted => (
            Decision::Allow,
            ReasonCode::ApprovalGranted,
            format!(
                "approved by `{}`",
                approver.as_deref().unwrap_or("an approver")
            ),
        ),
        ApprovalStatus::Rejected => (
            Decision::Deny,
            ReasonCode::ApprovalRejected,
            format!(
                "rejected by `{}`",
                approver.as_deref().unwrap_or("an approver")
            ),
        ),
        ApprovalStatus::Expired => (
            Decision::Deny,
            ReasonCode::ApprovalExpired,
            format!(
                "nobody approved the call before {}; it is denied",
                request.expires_at
            ),
        ),
        ApprovalStatus::Failed => (
            Decision::Deny,
            ReasonCode::ApprovalFailed,
            "the approval workflow failed; the call is denied".to_owned(),
        ),
    };
    DecisionRecord {
        decision_id: outcome_id(&request.approval_id, status),
        trace_id: pending.trace_id.clone(),
        timestamp: at.to_owned(),
        decision,
        reasons: vec![Reason {
            code,
            message,
            policy_id: None,
        }],
        determining_policies: pending.determining_policies.clone(),
        errors: Vec::new(),
        agent_id: pending.agent_id.clone(),
        agent_version: pending.agent_version.clone(),
        user_id: pending.user_id.clone(),
        user_roles: pending.user_roles.clone(),
        tool_id: pending.tool_id.clone(),
        requested_risk: pending.requested_risk,
        arguments_hash: pending.arguments_hash.clone(),
        arguments: pending.arguments.clone(),
        environment: pending.environment.clone(),
        policy_version: pending.policy_version.clone(),
        policy_hash: pending.policy_hash.clone(),
        session_id: pending.session_id.clone(),
        run_id: pending.run_id.clone(),
        limit: None,
        // The key belongs to the agent's request, which the pending record holds.
        idempotency_key: None,
        reasoning: None,
        latency_us: 0,
        approval_id: None,
        approval: Some(ApprovalOutcome {
            approval_id: request.approval_id.clone(),
            pending_decision_id: pending.decision_id.clone(),
            status,
            approver,
            comment,
        }),
        execution: None,
        shadow: None,
    }
}

/// A UUID-shaped id that only this approval and outcome produce.
fn outcome_id(approval_id: &str, status: ApprovalStatus) -> String {
    let digest = Sha256::digest(format!("{approval_id}/{}", status.as_str()));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    // Version 8 (custom) and the RFC 4122 variant, so it parses as a UUID.
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ApprovalRequest {
        let pending: DecisionRecord = serde_json::from_value(serde_json::json!({
            "decision_id": "0190-pending", "trace_id": "t1", "timestamp": "2026-01-07T12:00:00.000Z",
            "decision": "pending_approval", "reasons": [], "determining_policies": ["base:permit-granted"],
            "agent_id": "agent-treasury-1", "user_id": "tom", "user_roles": ["treasury_operator"],
            "tool_id": "transfer_funds", "arguments_hash": "sha256:ab", "environment": "dev",
            "policy_version": "v1", "policy_hash": "sha256:cd", "latency_us": 5,
            "idempotency_key": "k1"
        }))
        .unwrap();
        ApprovalRequest {
            approval_id: "a1".into(),
            decision: pending,
            approver_group: Some("treasury-approvers".into()),
            expires_at: "2026-01-07T12:30:00.000Z".into(),
            timeout_seconds: 1800,
            arguments: serde_json::json!({"amount": 250.0}),
            tool_category: None,
            tool_risk: None,
        }
    }

    #[test]
    fn outcomes_repeat_the_call_and_name_the_approval() {
        let r = outcome_record(
            &request(),
            ApprovalStatus::Rejected,
            Some("alice".into()),
            Some("wrong account".into()),
            "2026-01-07T12:05:00.000Z",
        );
        assert_eq!(r.decision, Decision::Deny);
        assert_eq!(r.reasons[0].code, ReasonCode::ApprovalRejected);
        assert_eq!(
            (
                r.agent_id.as_str(),
                r.tool_id.as_str(),
                r.arguments_hash.as_str()
            ),
            ("agent-treasury-1", "transfer_funds", "sha256:ab")
        );
        assert_eq!(r.idempotency_key, None);
        let outcome = r.approval.unwrap();
        assert_eq!(outcome.pending_decision_id, "0190-pending");
        assert_eq!(outcome.approver.as_deref(), Some("alice"));
        let approved = outcome_record(&request(), ApprovalStatus::Approved, None, None, "t");
        assert_eq!(approved.decision, Decision::Allow);
        let granted = outcome_record(&request(), ApprovalStatus::Granted, None, None, "t");
        assert_eq!(granted, approved);
    }

    fn granted(request: ApprovalRequest) -> ApprovalItem {
        ApprovalItem {
            request,
            status: ApprovalStatus::Granted,
            approver: Some("alice".into()),
            comment: None,
            decided_at: Some("2026-01-07T12:05:00.000Z".into()),
            task_token: None,
            grant_used_at: None,
        }
    }

    #[test]
    fn every_mismatch_has_its_own_reason() {
        let item = granted(request());
        let call = request().decision;
        let after = "2026-01-07T12:00:00.000Z";
        assert_eq!(grant_refusal(Some(&item), &call, after), None);
        let code = |item: Option<&ApprovalItem>, call: &DecisionRecord, after: &str| {
            grant_refusal(item, call, after).map(|r| r.code)
        };
        assert_eq!(code(None, &call, after), Some(ReasonCode::GrantNotFound));
        let mut other = call.clone();
        other.agent_id = "agent-ops-1".into();
        assert_eq!(
            code(Some(&item), &other, after),
            Some(ReasonCode::GrantAgentMismatch)
        );
        let mut other = call.clone();
        other.user_id = "mallory".into();
        assert_eq!(
            code(Some(&item), &other, after),
            Some(ReasonCode::GrantUserMismatch)
        );
        let mut other = call.clone();
        other.tool_id = "delete_customer_record".into();
        assert_eq!(
            code(Some(&item), &other, after),
            Some(ReasonCode::GrantToolMismatch)
        );
        let mut other = call.clone();
        other.arguments_hash = "sha256:ff".into();
        assert_eq!(
            code(Some(&item), &other, after),
            Some(ReasonCode::GrantArgumentsMismatch)
        );
        let mut other = call.clone();
        other.policy_version = "v2".into();
        assert_eq!(
            code(Some(&item), &other, after),
            Some(ReasonCode::GrantPolicyChanged)
        );
        let used = ApprovalItem {
            grant_used_at: Some("2026-01-07T12:06:00.000Z".into()),
            ..item.clone()
        };
        assert_eq!(
            code(Some(&used), &call, after),
            Some(ReasonCode::GrantAlreadyUsed)
        );
        assert_eq!(
            code(Some(&item), &call, "2026-01-07T12:05:00.000Z"),
            Some(ReasonCode::GrantExpired)
        );
        let pending = ApprovalItem {
            status: ApprovalStatus::Pending,
            ..item.clone()
        };
        assert_eq!(
            code(Some(&pending), &call, after),
            Some(ReasonCode::GrantNotApproved)
        );
        // Approved by a human, but the grant is not recorded: not usable.
        let unrecorded = ApprovalItem {
            status: ApprovalStatus::Approved,
            ..item
        };
        assert_eq!(
            code(Some(&unrecorded), &call, after),
            Some(ReasonCode::GrantNotApproved)
        );
    }

    #[test]
    fn a_retried_outcome_has_the_same_id_and_another_outcome_does_not() {
        let a = outcome_record(&request(), ApprovalStatus::Expired, None, None, "t1");
        let b = outcome_record(&request(), ApprovalStatus::Expired, None, None, "t2");
        let c = outcome_record(&request(), ApprovalStatus::Rejected, None, None, "t1");
        assert_eq!(a.decision_id, b.decision_id);
        assert_ne!(a.decision_id, c.decision_id);
        assert!(uuid::Uuid::parse_str(&a.decision_id).is_ok());
    }
}
