//! The answer and its durable record.

use serde::{Deserialize, Serialize};

use super::Risk;

/// The outcome of one authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The call may proceed.
    Allow,
    /// The call may not proceed.
    Deny,
    /// Policy allows the call, but a human must approve it first.
    PendingApproval,
}

impl Decision {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::PendingApproval => "pending_approval",
        }
    }
}

/// Stable reason codes. Clients and runbooks match on these; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Every check passed.
    Allowed,
    /// Policy allows it; a human must approve.
    ApprovalRequired,
    /// The authenticated agent is not in the registry.
    UnknownAgent,
    /// The tool is not in the registry.
    UnknownTool,
    /// The agent's status is `disabled`.
    AgentDisabled,
    /// The agent has no grant for the tool.
    ToolNotGranted,
    /// The call's risk is above the agent's or the grant's ceiling.
    RiskExceedsPolicy,
    /// None of the user's roles may have this tool called for them.
    UserRoleNotPermitted,
    /// The agent belongs to another environment.
    EnvironmentMismatch,
    /// A team policy forbids the call.
    ForbiddenByPolicy,
    /// The arguments do not match the tool's declared arguments.
    InvalidArguments,
    /// No policy permits the call (default deny).
    NotPermitted,
    /// A policy could not be evaluated; errors deny.
    PolicyEvaluationError,
    /// The decision could not be durably recorded, so it cannot be an allow.
    DecisionNotRecorded,
    /// Approvers were told about the pending call (the workflow now waits).
    ApproversNotified,
    /// A human approved the pending call.
    ApprovalGranted,
    /// A human rejected the pending call.
    ApprovalRejected,
    /// Nobody decided before the tool's approval timeout.
    ApprovalExpired,
    /// The approval workflow failed (for example, approvers could not be notified).
    ApprovalFailed,
    /// The call is the exact call a human approved; its single-use grant is now used.
    ApprovedCall,
    /// The presented approval does not exist.
    GrantNotFound,
    /// The presented approval is not approved (pending, rejected, expired or failed).
    GrantNotApproved,
    /// The presented approval was granted to another agent.
    GrantAgentMismatch,
    /// The presented approval was granted for another user.
    GrantUserMismatch,
    /// The presented approval was granted for another tool.
    GrantToolMismatch,
    /// The presented approval was granted for other arguments.
    GrantArgumentsMismatch,
    /// The policy version changed since the approval was requested.
    GrantPolicyChanged,
    /// The presented approval's grant was already used.
    GrantAlreadyUsed,
    /// The presented approval's grant has expired.
    GrantExpired,
    /// The idempotency key holds a decision for another call (user, tool or arguments).
    IdempotencyKeyReused,
    /// The policy version being served has not been confirmed as the active
    /// one for longer than the maximum staleness: the store could not be
    /// read, or the newly activated version could not be loaded.
    PolicyStale,
    /// A tool's rate limit for this user, agent, organization or session is
    /// used up for the current window.
    RateLimited,
    /// The run has made as many calls as its agent's `max_calls` allows.
    RunCallLimit,
    /// The run is older than its agent's `max_seconds`.
    RunTimeLimit,
    /// The run has spent its agent's `max_cost_usd`, or this call would exceed it.
    RunCostLimit,
    /// The run has used its agent's `max_tokens`.
    RunTokenLimit,
    /// The agent has run limits, and the call names no `run_id`.
    RunIdRequired,
    /// The user's cost budget for the current window is spent.
    UserBudgetExhausted,
    /// The organization's cost budget for the current window is spent.
    OrgBudgetExhausted,
    /// The gateway forwarded the allowed call and the upstream server answered.
    Executed,
    /// The gateway forwarded the allowed call and the upstream server failed
    /// to answer (unreachable, timed out, or a protocol error).
    ExecutionFailed,
    /// The tool has no upstream endpoint in this environment, or its server
    /// does not offer it: the gateway cannot forward the call.
    ToolUnavailable,
    /// The call repeats one that already executed (or is executing) under
    /// the tool's exactly-once key: it is not executed again, and gets the
    /// first call's result.
    DuplicateCall,
    /// A request other than a tool call (resources, prompts, completions)
    /// was forwarded to the servers whose registry entry allows it.
    Forwarded,
    /// A request other than a tool call was refused: no server this agent
    /// reaches for this user allows it to be forwarded.
    NotForwarded,
}

impl ReasonCode {
    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Allowed => "allowed",
            ReasonCode::ApprovalRequired => "approval_required",
            ReasonCode::UnknownAgent => "unknown_agent",
            ReasonCode::UnknownTool => "unknown_tool",
            ReasonCode::AgentDisabled => "agent_disabled",
            ReasonCode::ToolNotGranted => "tool_not_granted",
            ReasonCode::RiskExceedsPolicy => "risk_exceeds_policy",
            ReasonCode::UserRoleNotPermitted => "user_role_not_permitted",
            ReasonCode::EnvironmentMismatch => "environment_mismatch",
            ReasonCode::ForbiddenByPolicy => "forbidden_by_policy",
            ReasonCode::InvalidArguments => "invalid_arguments",
            ReasonCode::NotPermitted => "not_permitted",
            ReasonCode::PolicyEvaluationError => "policy_evaluation_error",
            ReasonCode::DecisionNotRecorded => "decision_not_recorded",
            ReasonCode::ApproversNotified => "approvers_notified",
            ReasonCode::ApprovalGranted => "approval_granted",
            ReasonCode::ApprovalRejected => "approval_rejected",
            ReasonCode::ApprovalExpired => "approval_expired",
            ReasonCode::ApprovalFailed => "approval_failed",
            ReasonCode::ApprovedCall => "approved_call",
            ReasonCode::GrantNotFound => "grant_not_found",
            ReasonCode::GrantNotApproved => "grant_not_approved",
            ReasonCode::GrantAgentMismatch => "grant_agent_mismatch",
            ReasonCode::GrantUserMismatch => "grant_user_mismatch",
            ReasonCode::GrantToolMismatch => "grant_tool_mismatch",
            ReasonCode::GrantArgumentsMismatch => "grant_arguments_mismatch",
            ReasonCode::GrantPolicyChanged => "grant_policy_changed",
            ReasonCode::GrantAlreadyUsed => "grant_already_used",
            ReasonCode::GrantExpired => "grant_expired",
            ReasonCode::IdempotencyKeyReused => "idempotency_key_reused",
            ReasonCode::PolicyStale => "policy_stale",
            ReasonCode::RateLimited => "rate_limited",
            ReasonCode::RunCallLimit => "run_call_limit",
            ReasonCode::RunTimeLimit => "run_time_limit",
            ReasonCode::RunCostLimit => "run_cost_limit",
            ReasonCode::RunTokenLimit => "run_token_limit",
            ReasonCode::RunIdRequired => "run_id_required",
            ReasonCode::UserBudgetExhausted => "user_budget_exhausted",
            ReasonCode::OrgBudgetExhausted => "org_budget_exhausted",
            ReasonCode::Executed => "executed",
            ReasonCode::ExecutionFailed => "execution_failed",
            ReasonCode::ToolUnavailable => "tool_unavailable",
            ReasonCode::DuplicateCall => "duplicate_call",
            ReasonCode::Forwarded => "forwarded",
            ReasonCode::NotForwarded => "not_forwarded",
        }
    }

    /// Parses a code as written in a policy's `@reason` annotation or a test case.
    pub fn parse(s: &str) -> Option<ReasonCode> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

impl ReasonCode {
    /// Whether this deny ends when a window does, so that the caller may
    /// try again later (HTTP 429 with `Retry-After`).
    pub fn is_windowed(self) -> bool {
        matches!(
            self,
            ReasonCode::RateLimited
                | ReasonCode::UserBudgetExhausted
                | ReasonCode::OrgBudgetExhausted
        )
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The stable code.
    pub code: ReasonCode,
    /// A sentence for humans.
    pub message: String,
    /// The policy that produced it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
}

/// The durable record of one decision: what the decision log keeps and what
/// `GET /v1/decisions/{id}` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Unique, time-ordered id (UUIDv7).
    pub decision_id: String,
    /// The trace this decision belongs to.
    pub trace_id: String,
    /// When it was made (RFC 3339, UTC).
    pub timestamp: String,
    /// The outcome.
    pub decision: Decision,
    /// Why.
    pub reasons: Vec<Reason>,
    /// The policies that determined it.
    pub determining_policies: Vec<String>,
    /// Evaluation errors, which always deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The authenticated agent.
    pub agent_id: String,
    /// The agent's registered version, when the agent is registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The verified user the agent acts for.
    pub user_id: String,
    /// The user's roles, as the token carried them.
    pub user_roles: Vec<String>,
    /// The requested tool.
    pub tool_id: String,
    /// The risk the agent declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_risk: Option<Risk>,
    /// SHA-256 of the canonical JSON of the arguments.
    pub arguments_hash: String,
    /// The data the call touches, as the audit trail keeps it: the arguments
    /// with every value the tool marks personal masked (the hash commits to
    /// the real ones). Absent for unknown tools and above 4 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// The environment the control plane runs in.
    pub environment: String,
    /// The policy version that decided.
    pub policy_version: String,
    /// The content hash of that version.
    pub policy_hash: String,
    /// The agent's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The agent's run, which run limits count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The limit that denied the call, with the count it had reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitHit>,
    /// The client's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The agent's stated reasoning, bounded in size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Time spent deciding, in microseconds, before recording.
    pub latency_us: u64,
    /// The approval a pending decision waits for, or the one whose grant an
    /// agent presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Set on the record of a human approval's outcome; such a record
    /// repeats the pending decision's parties, tool and arguments hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalOutcome>,
    /// Set on the record of a call the gateway forwarded: what the upstream
    /// server did with it. Such a record repeats its decision's parties,
    /// tool and arguments hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// Set when log-only (shadow) policies would have decided the call
    /// otherwise: what enforcing them would have answered, and which of
    /// them made the difference. They are evaluated and recorded, never
    /// enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowOutcome>,
}

/// What enforcing the log-only policies would have changed in a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowOutcome {
    /// The policy decision with them enforced (`allow` or `deny`).
    pub decision: Decision,
    /// The log-only policies that determined it.
    pub policies: Vec<String>,
}

impl DecisionRecord {
    /// Whether this record is a decision, rather than the outcome of an
    /// earlier one (an approval's answer or a forwarded call's execution).
    pub fn is_decision(&self) -> bool {
        self.approval.is_none() && self.execution.is_none()
    }
}

/// How a forwarded call ended upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// The tool ran and returned a result.
    Succeeded,
    /// The tool ran and returned a result marked `isError`.
    ToolError,
    /// The upstream server did not answer with a result: unreachable, timed
    /// out, or a JSON-RPC error. Whether the tool ran is unknown.
    UpstreamError,
    /// The server asked for the client's input before it would run the
    /// tool (an `InputRequiredResult`, SEP-2322); the client repeats the
    /// call with its answers, and that repetition is decided anew.
    InputRequired,
}

impl ExecutionStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::ToolError => "tool_error",
            ExecutionStatus::UpstreamError => "upstream_error",
            ExecutionStatus::InputRequired => "input_required",
        }
    }
}

/// What the upstream server did with a forwarded call: the evidence that
/// links a decision to its effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// The decision (an allow) this call carried out.
    pub decision_id: String,
    /// The registry's server id.
    pub server: String,
    /// The tool's name on that server.
    pub upstream_tool: String,
    /// How it ended.
    pub status: ExecutionStatus,
    /// Time from forwarding to the answer, in milliseconds.
    pub duration_ms: u64,
    /// SHA-256 of the canonical JSON of the result as the upstream returned
    /// it, before filtering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_hash: Option<String>,
    /// The `response_filter` paths removed from the result before the agent
    /// saw it (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_paths: Vec<String>,
    /// Why the upstream failed, for `upstream_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The limit a call ran into, as the deny records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitHit {
    /// Which limit: `rate_limit:TOOL`, `run:max_calls`, `budget:ID`, ….
    pub name: String,
    /// What it counts: `calls`, `usd`, `tokens` or `seconds`.
    pub unit: String,
    /// Who it counts: `user`, `agent`, `org`, `session` or `run`.
    pub per: String,
    /// The limit.
    pub limit: serde_json::Number,
    /// How much was used when the call was refused.
    pub current: serde_json::Number,
    /// The window's length, for windowed limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// When the window ends and the limit starts over (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
    /// Seconds until a call may succeed again; absent when waiting does not help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// How a pending approval ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a human.
    Pending,
    /// A human approved the exact call; the workflow has not yet recorded
    /// the grant, so it cannot be used. On an outcome record: the approval
    /// was granted.
    Approved,
    /// The approval's `approval_granted` record is durable: its single-use
    /// grant may be used. Only an approvals row holds this status; it is
    /// written in the same atomic write as that record.
    Granted,
    /// A human rejected it.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// The workflow could not complete.
    Failed,
}

impl ApprovalStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Granted => "granted",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Failed => "failed",
        }
    }
}

/// The outcome of a human approval, kept on the record that closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalOutcome {
    /// The approval's random id (the one in the approver's link).
    pub approval_id: String,
    /// The pending decision this outcome closes.
    pub pending_decision_id: String,
    /// How it ended.
    pub status: ApprovalStatus,
    /// Who decided, when a human did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// The approver's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
