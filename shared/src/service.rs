//! The authorization service: decide, record durably, then answer.
//!
//! The order is the guarantee: a decision leaves only after its record is
//! durable. If the record cannot be written, the answer is a deny
//! ([`ServiceError::NotRecorded`]), whatever the policies said.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::anomaly::call_charges;
use crate::approval::{grant_refusal, outcome_record, GRANT_TTL_SECONDS};
use crate::clock::rfc3339;
use crate::killswitch::KillSwitch;
use crate::limits::{Call, Charge, Plan};
use crate::model::{
    ApprovalStatus, AuthorizeRequest, Decision, DecisionRecord, Environment, Reason, ReasonCode,
    UserContext,
};
use crate::policy::{DecisionInput, Evaluation, PolicyEngine};
use crate::ports::{
    Appended, ApprovalRequest, ApprovalStore, ApprovalWorkflow, Clock, Counters, DecisionLog,
    GrantUse, Metrics, StoreError,
};

/// Limits on what an agent may send.
pub mod limits {
    /// Largest request body, in bytes.
    pub const MAX_BODY_BYTES: usize = 64 * 1024;
    /// Largest arguments kept, masked, in a decision record, in bytes; larger
    /// ones are kept as their hash only.
    pub const MAX_KEPT_ARGUMENTS_BYTES: usize = 4 * 1024;
    /// Largest `reasoning`, in bytes.
    pub const MAX_REASONING_BYTES: usize = 16 * 1024;
    /// Longest id-like field (`tool_id`, `session_id`, `idempotency_key`).
    pub const MAX_ID_LEN: usize = 256;
}

/// Approval requests expire after this long when the tool names no timeout.
const DEFAULT_APPROVAL_TIMEOUT_SECONDS: u64 = 3600;

/// Why an authorization produced no normal answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is invalid; nothing was decided.
    #[error("{0}")]
    InvalidRequest(String),
    /// The idempotency key holds a different call (another user, tool or
    /// arguments). The attempt is recorded as a deny: `record`.
    #[error("idempotency key `{key}` holds a different call")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The recorded deny of this attempt.
        record: Box<DecisionRecord>,
    },
    /// The decision could not be recorded: the answer is a deny.
    #[error("the decision could not be recorded")]
    NotRecorded {
        /// The deny that was answered instead.
        record: Box<DecisionRecord>,
        /// The store's failure.
        #[source]
        source: StoreError,
    },
}

/// What the host carrying out a call knows about it before it is decided.
#[derive(Debug, Clone)]
pub enum Gate {
    /// The host cannot carry the call out (no endpoint in this environment):
    /// a call the policy permits is denied with this reason instead.
    Unavailable(Reason),
    /// The call repeats one whose effect was already carried out (an
    /// exactly-once key): a call the policy permits is allowed with this
    /// reason, without asking for approval or charging a limit, and the
    /// host answers with the first call's result instead of running it.
    Duplicate(Reason),
}

/// What a repeated idempotency key comes to, measured against the decision
/// that holds it.
enum Repeat {
    /// The same call under the same policy with the same outcome: answer
    /// with the earlier decision.
    Replay(DecisionRecord),
    /// The same call, but the policy changed or the call now decides
    /// differently: the new decision takes the key over from this one.
    Supersede(String),
    /// Another user, tool or arguments: the key is not this call's.
    Reused(DecisionRecord),
}

/// How often a keyed append retries when concurrent repeats move the key
/// under it; each retry follows a write that some other request won.
const MAX_KEY_ATTEMPTS: usize = 4;

/// How long a served policy version may go unconfirmed as the active one
/// before every decision denies with `policy_stale`.
pub const DEFAULT_MAX_POLICY_STALENESS: Duration = Duration::from_secs(60);

/// The active policy engine, swapped atomically when a version is activated,
/// and when the store last confirmed that it is still the active one.
///
/// Whatever keeps the engine current (the Lambda's refresher, the local
/// reload loop) calls [`EngineHandle::confirm`] after each successful read
/// of the active pointer that names the served version, and
/// [`EngineHandle::replace`] when it loads a new one. When neither has
/// happened for longer than the maximum staleness, the service denies every
/// call with `policy_stale` instead of serving a version that may have been
/// replaced.
#[derive(Debug)]
pub struct EngineHandle {
    engine: ArcSwap<PolicyEngine>,
    /// The agents switched off, read with the active pointer.
    killswitch: ArcSwap<KillSwitch>,
    /// Unix time of the last confirmation, in milliseconds.
    confirmed_ms: AtomicI64,
    max_staleness: Duration,
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl EngineHandle {
    /// A handle serving `engine`, confirmed now, with the default maximum staleness.
    pub fn new(engine: PolicyEngine) -> Self {
        Self::with_max_staleness(engine, DEFAULT_MAX_POLICY_STALENESS)
    }
    /// A handle serving `engine`, confirmed now, that goes stale after `max_staleness`.
    pub fn with_max_staleness(engine: PolicyEngine, max_staleness: Duration) -> Self {
        Self {
            engine: ArcSwap::from_pointee(engine),
            killswitch: ArcSwap::from_pointee(KillSwitch::default()),
            confirmed_ms: AtomicI64::new(unix_ms(time::OffsetDateTime::now_utc())),
            max_staleness,
        }
    }
    /// The engine now.
    pub fn current(&self) -> Arc<PolicyEngine> {
        self.engine.load_full()
    }
    /// Serves `engine` from now on: it was just read as the active version.
    pub fn replace(&self, engine: PolicyEngine) {
        self.engine.store(Arc::new(engine));
        self.confirm();
    }
    /// The agents switched off now.
    pub fn killswitch(&self) -> Arc<KillSwitch> {
        self.killswitch.load_full()
    }
    /// Serves `killswitch` from now on: it was just read from the store.
    pub fn set_killswitch(&self, killswitch: KillSwitch) {
        if *self.killswitch.load_full() != killswitch {
            for d in &killswitch.0 {
                if self
                    .killswitch
                    .load()
                    .find(&d.agent_id, d.version.as_deref())
                    .is_none()
                {
                    tracing::warn!(agent_id = %d.agent_id, version = d.version.as_deref(), by = %d.by, reason = %d.reason, "agent disabled");
                }
            }
            self.killswitch.store(Arc::new(killswitch));
        }
    }
    /// Records that the store was just read and names the version being served.
    pub fn confirm(&self) {
        self.confirmed_ms
            .store(unix_ms(time::OffsetDateTime::now_utc()), Ordering::Release);
    }
    /// How long the served version may go unconfirmed.
    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }
    /// How long the served version has gone unconfirmed at `now`, when that
    /// is longer than the maximum staleness; `None` while it is fresh.
    pub fn stale_at(&self, now: time::OffsetDateTime) -> Option<Duration> {
        let age_ms = unix_ms(now).saturating_sub(self.confirmed_ms.load(Ordering::Acquire));
        // A clock that went backwards gives a negative age: fresh.
        let age = Duration::from_millis(u64::try_from(age_ms).ok()?);
        (age > self.max_staleness).then_some(age)
    }
}

/// Everything the service needs, through ports.
pub struct AuthorizeService {
    /// The active policy.
    pub engine: Arc<EngineHandle>,
    /// Where decisions are recorded.
    pub log: Arc<dyn DecisionLog>,
    /// Where pending approvals start.
    pub approvals: Arc<dyn ApprovalWorkflow>,
    /// Where approvals' single-use grants are used.
    pub grants: Arc<dyn ApprovalStore>,
    /// The counters of runs and budgets, for usage reports and run views
    /// (decisions move them through the log, in the same write as their record).
    pub counters: Arc<dyn Counters>,
    /// Where decisions are counted.
    pub metrics: Arc<dyn Metrics>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The environment this control plane runs in.
    pub environment: Environment,
}

/// The hash that names a call's arguments: the canonical hash, with the
/// numbers of the tool's decimal-typed arguments written by value, so that
/// `300`, `300.0` and `300.00` are one amount (and one approved call).
pub fn arguments_hash(
    tool: Option<&crate::model::ToolSpec>,
    arguments: &serde_json::Value,
) -> String {
    let (Some(tool), serde_json::Value::Object(map)) = (tool, arguments) else {
        return canonical_hash(arguments);
    };
    let mut normal = map.clone();
    for (name, spec) in &tool.arguments {
        if spec.ty != crate::model::ArgumentType::Decimal {
            continue;
        }
        if let Some(v) = normal.get_mut(name) {
            if let Some(n) = v.as_f64().and_then(serde_json::Number::from_f64) {
                *v = serde_json::Value::Number(n);
            }
        }
    }
    canonical_hash(&serde_json::Value::Object(normal))
}

/// SHA-256 of the canonical JSON (keys sorted at every level, no spaces) of a value.
pub fn canonical_hash(value: &serde_json::Value) -> String {
    let mut text = String::new();
    canonical_json(value, &mut text);
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Writes `value` with object keys sorted. Sorting is explicit because a
/// dependency (Cedar) turns on serde_json's `preserve_order` for the whole build.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn check_len(name: &str, value: Option<&str>, max: usize) -> Result<(), ServiceError> {
    match value {
        Some(v) if v.is_empty() || v.len() > max => Err(ServiceError::InvalidRequest(format!(
            "`{name}` must be 1 to {max} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Writes the seed's structured decision line (`agent_id`, `tool_id`,
/// `policy_result`, `reason`, `trace_id`) for a recorded decision. `kind` is
/// `decision` for a decision made by authorize and `approval` for the record
/// that closes an approval.
pub fn log_decision(kind: &str, r: &DecisionRecord) {
    let reason = r.reasons.first().map_or("", |x| x.code.as_str());
    let approval = r.approval.as_ref().map(|a| a.approval_id.as_str());
    tracing::info!(
        target: "decision",
        kind,
        agent_id = %r.agent_id,
        tool_id = %r.tool_id,
        policy_result = r.decision.as_str(),
        reason,
        trace_id = %r.trace_id,
        decision_id = %r.decision_id,
        user_id = %r.user_id,
        policy_version = %r.policy_version,
        approval_id = approval.or(r.approval_id.as_deref()),
        "decision"
    );
}

/// A 128-bit random trace id, hex.
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl AuthorizeService {
    /// Decides whether `agent_id`, acting for `user`, may make the call in
    /// `request`, records the decision durably, and returns the record.
    pub async fn authorize(
        &self,
        agent_id: &str,
        user: &UserContext,
        request: AuthorizeRequest,
        trace_id: String,
    ) -> Result<DecisionRecord, ServiceError> {
        self.authorize_gated(agent_id, user, request, trace_id, None)
            .await
    }

    /// [`AuthorizeService::authorize`] for a host that carries the call out
    /// (the MCP gateway), which may know more about it than the policy: see
    /// [`Gate`]. A call the policy denies keeps the policy's reasons either
    /// way, and every outcome is recorded like any other decision.
    pub async fn authorize_gated(
        &self,
        agent_id: &str,
        user: &UserContext,
        request: AuthorizeRequest,
        trace_id: String,
        gate: Option<Gate>,
    ) -> Result<DecisionRecord, ServiceError> {
        let started = Instant::now();
        check_len("tool_id", Some(&request.tool_id), limits::MAX_ID_LEN)?;
        check_len(
            "session_id",
            request.session_id.as_deref(),
            limits::MAX_ID_LEN,
        )?;
        check_len(
            "idempotency_key",
            request.idempotency_key.as_deref(),
            limits::MAX_ID_LEN,
        )?;
        check_len("run_id", request.run_id.as_deref(), limits::MAX_ID_LEN)?;
        check_len(
            "approval_id",
            request.approval_id.as_deref(),
            limits::MAX_ID_LEN,
        )?;
        if request.approval_id.is_some() && request.idempotency_key.is_some() {
            // A grant is used once; a key would replay its use.
            return Err(ServiceError::InvalidRequest(
                "`approval_id` and `idempotency_key` cannot be combined: a grant is already single-use"
                    .to_owned(),
            ));
        }
        if request
            .reasoning
            .as_ref()
            .is_some_and(|r| r.len() > limits::MAX_REASONING_BYTES)
        {
            return Err(ServiceError::InvalidRequest(format!(
                "`reasoning` is longer than {} bytes; store it elsewhere and send a reference",
                limits::MAX_REASONING_BYTES
            )));
        }
        // A repeated idempotency key is found by the conditional write of
        // the record, not by a read first: that keeps an allow, keyed or
        // not, to one write. A repeat is decided again, so that it is
        // answered from the earlier decision only if that is still the
        // answer (see `repeat`).
        let now = self.clock.now();
        let engine = self.engine.current();
        let arguments_hash = arguments_hash(engine.tool(&request.tool_id), &request.arguments);
        // A version that may have been replaced decides nothing: the call is
        // denied, and recorded, like any other decision.
        // Staleness is wall time since the store was last read, whatever
        // clock decisions are made by.
        let agent_version = engine.agent(agent_id).map(|a| a.version.as_str());
        let killswitch = self.engine.killswitch();
        let evaluation = match (
            self.engine.stale_at(time::OffsetDateTime::now_utc()),
            killswitch.find(agent_id, agent_version),
        ) {
            (Some(age), _) => stale_evaluation(age, self.engine.max_staleness()),
            // A disabled agent is stopped before any policy is asked.
            (None, Some(off)) => Evaluation {
                decision: Decision::Deny,
                reasons: vec![off.deny_reason()],
                determining_policies: Vec::new(),
                errors: Vec::new(),
                agent_version: agent_version.map(str::to_owned),
                shadow: None,
            },
            (None, None) => engine.decide(&DecisionInput {
                agent_id,
                user,
                tool_id: &request.tool_id,
                requested_risk: request.requested_risk,
                arguments: &request.arguments,
                session_id: request.session_id.as_deref(),
                environment: self.environment,
                now,
            }),
        };
        let duplicate =
            matches!(gate, Some(Gate::Duplicate(_))) && evaluation.decision != Decision::Deny;
        let evaluation = match gate {
            Some(Gate::Unavailable(reason)) if evaluation.decision != Decision::Deny => {
                Evaluation {
                    decision: Decision::Deny,
                    reasons: vec![reason],
                    determining_policies: Vec::new(),
                    errors: Vec::new(),
                    agent_version: evaluation.agent_version,
                    shadow: evaluation.shadow,
                }
            }
            // Nothing will run: no approval is asked for and no limit is
            // charged, but the policy must still permit the call.
            Some(Gate::Duplicate(reason)) if evaluation.decision != Decision::Deny => Evaluation {
                decision: Decision::Allow,
                reasons: vec![reason],
                ..evaluation
            },
            _ => evaluation,
        };
        // The limits come after the policy: they count only what it lets
        // through (see `crate::limits`). A call with an approval is charged
        // as the allow its grant makes it.
        let limit_decision = match (evaluation.decision, &request.approval_id) {
            (Decision::PendingApproval, Some(_)) => Decision::Allow,
            (d, _) => d,
        };
        let planned = if duplicate {
            Ok(Plan::default())
        } else {
            crate::limits::plan(
                engine.registry(),
                &Call {
                    agent: engine.agent(agent_id),
                    tool: engine.tool(&request.tool_id),
                    user,
                    run_id: request.run_id.as_deref(),
                    session_id: request.session_id.as_deref(),
                    decision: limit_decision,
                    now,
                },
            )
        };
        let version = engine.version();
        let kept_arguments = engine
            .tool(&request.tool_id)
            .map(|t| t.arguments_for_approvers(&request.arguments))
            .filter(|v| {
                serde_json::to_string(v).is_ok_and(|s| s.len() <= limits::MAX_KEPT_ARGUMENTS_BYTES)
            });
        let record = DecisionRecord {
            decision_id: uuid::Uuid::now_v7().to_string(),
            trace_id,
            timestamp: rfc3339(now),
            decision: evaluation.decision,
            reasons: evaluation.reasons,
            determining_policies: evaluation.determining_policies,
            errors: evaluation.errors,
            agent_id: agent_id.to_owned(),
            agent_version: evaluation.agent_version,
            user_id: user.id.clone(),
            user_roles: user.roles.clone(),
            tool_id: request.tool_id,
            requested_risk: request.requested_risk,
            arguments_hash,
            arguments: kept_arguments,
            environment: self.environment.to_string(),
            policy_version: version.id.clone(),
            policy_hash: version.content_hash.clone(),
            session_id: request.session_id,
            idempotency_key: request.idempotency_key,
            reasoning: request.reasoning,
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            // Chosen before the record is written, so the pending record names
            // the approval that will close it.
            approval_id: (evaluation.decision == Decision::PendingApproval)
                .then(|| uuid::Uuid::new_v4().simple().to_string()),
            approval: None,
            execution: None,
            shadow: evaluation.shadow,
            run_id: request.run_id,
            limit: None,
        };
        // What the policy decided, before any limit: a repeat is measured
        // against it, so that a replay of an allow is never taken for a
        // new call because a limit has filled since.
        let policy_decision = record.decision;
        let (mut record, mut charges) = match planned {
            Ok(plan) => (record, plan),
            Err(refused) => (record.limited(refused.reason, None), Plan::default()),
        };

        // An approved call: the policy still asks for a human, and the agent
        // presents the approval a human gave.
        if let (Decision::PendingApproval, Some(approval_id)) =
            (record.decision, request.approval_id.clone())
        {
            if let Some(a) = engine.agent(agent_id) {
                charges.charges.extend(call_charges(&a.id, &a.version, now));
            }
            return self.use_grant(record, approval_id, &charges, now).await;
        }

        // Every recorded decision of a registered agent counts towards its
        // call rate (see `crate::anomaly`), after the plan's charges so that
        // a refusal's index still names a limit.
        let counting: Vec<Charge> = engine
            .agent(agent_id)
            .map(|a| call_charges(&a.id, &a.version, now).to_vec())
            .unwrap_or_default();
        let mut supersedes: Option<String> = None;
        let mut attempt = 0;
        loop {
            let all: Vec<Charge> = charges.charges.iter().chain(&counting).cloned().collect();
            let appended = self
                .log
                .append_charged(&record, supersedes.as_deref(), &all)
                .await;
            match appended {
                Ok(Appended::Stored) => break,
                // Once at most: the deny that takes its place charges nothing.
                Ok(Appended::OverLimit { index, current }) if !charges.charges.is_empty() => {
                    // A limit is used up: the call is a deny, recorded in
                    // its place.
                    let (reason, hit) = charges.refusal(index, current.as_ref(), now);
                    record = record.limited(reason, Some(hit));
                    charges = Plan::default();
                }
                Ok(Appended::OverLimit { .. }) => {
                    return Err(self.not_recorded(
                        record,
                        StoreError::Corrupt("an unconditional charge was refused".into()),
                    ))
                }
                Ok(Appended::DuplicateKey) if attempt + 1 < MAX_KEY_ATTEMPTS => {
                    attempt += 1;
                    match self.repeat(&record, policy_decision).await {
                        Ok(Repeat::Replay(previous)) => return Ok(previous),
                        Ok(Repeat::Supersede(previous)) => supersedes = Some(previous),
                        Ok(Repeat::Reused(holder)) => {
                            return Err(self.key_reused(record, &holder).await)
                        }
                        Err(source) => return Err(self.not_recorded(record, source)),
                    }
                }
                Ok(Appended::DuplicateKey) => {
                    return Err(self.not_recorded(
                        record,
                        StoreError::Unavailable(
                            "the idempotency key kept moving under concurrent repeats".into(),
                        ),
                    ))
                }
                Err(source) => return Err(self.not_recorded(record, source)),
            }
        }
        // The workflow starts only once the pending decision is durable, so
        // that nothing can be approved that the log does not hold.
        if let Some(approval_id) = record.approval_id.clone() {
            let tool = engine.tool(&record.tool_id);
            let timeout = tool
                .and_then(|t| t.approval.as_ref())
                .and_then(|a| a.timeout_seconds)
                .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECONDS);
            let expires = i64::try_from(timeout)
                .ok()
                .and_then(|t| now.checked_add(time::Duration::seconds(t)))
                .unwrap_or(now);
            let approval = ApprovalRequest {
                approval_id,
                decision: record.clone(),
                approver_group: tool
                    .and_then(|t| t.approval.as_ref())
                    .and_then(|a| a.approver_group.clone()),
                expires_at: rfc3339(expires),
                timeout_seconds: timeout,
                // Approvers see what the tool's classification lets them see;
                // the arguments hash binds the approval to the exact values.
                arguments: tool.map_or(serde_json::Value::Null, |t| {
                    t.arguments_for_approvers(&request.arguments)
                }),
                tool_category: tool.map(|t| t.category),
                tool_risk: tool.map(|t| t.risk),
            };
            // The approval is kept before the workflow starts, so the agent's
            // poll finds it at once (the workflow's first step records it
            // again, which changes nothing).
            let started = match self.grants.record_pending(&approval).await {
                Ok(()) => self.approvals.start(&approval).await,
                Err(e) => Err(e),
            };
            if let Err(source) = started {
                // The log holds a pending decision that no workflow will
                // close: close it here, so the log agrees with the deny the
                // agent gets. A retried start of the same approval is a
                // no-op, so if the workflow did start, its outcome is the
                // one recorded after this.
                let failed = outcome_record(
                    &approval,
                    ApprovalStatus::Failed,
                    None,
                    Some(format!("the approval workflow did not start: {source}")),
                    &rfc3339(self.clock.now()),
                );
                if let Err(e) = self.log.append(&failed).await {
                    tracing::error!(approval_id = %approval.approval_id, error = %e, "cannot close the pending decision");
                }
                if let Err(e) = self
                    .grants
                    .close(&approval.approval_id, ApprovalStatus::Failed)
                    .await
                {
                    tracing::warn!(approval_id = %approval.approval_id, error = %e, "cannot close the approval");
                }
                return Err(self.not_recorded(record, source));
            }
        }

        self.metrics.record_decision(&record);
        log_decision("decision", &record);
        Ok(record)
    }

    /// Allows the call with the presented approval's grant, or denies it
    /// with the reason the grant does not fit. Using the grant and recording
    /// the allow are one atomic write.
    async fn use_grant(
        &self,
        mut record: DecisionRecord,
        approval_id: String,
        plan: &Plan,
        now: time::OffsetDateTime,
    ) -> Result<DecisionRecord, ServiceError> {
        let decided_after = rfc3339(now - time::Duration::seconds(GRANT_TTL_SECONDS));
        record.approval_id = Some(approval_id.clone());
        let mut allow = record.clone();
        allow.decision = Decision::Allow;
        allow.reasons = vec![Reason {
            code: ReasonCode::ApprovedCall,
            message: format!("a human approved exactly this call (approval `{approval_id}`)"),
            policy_id: None,
        }];
        match self
            .grants
            .use_grant(&approval_id, &allow, &decided_after, &plan.charges)
            .await
        {
            Ok(GrantUse::Used) => {
                self.metrics.record_decision(&allow);
                log_decision("decision", &allow);
                return Ok(allow);
            }
            Ok(GrantUse::OverLimit { index, current }) => {
                let (reason, hit) = plan.refusal(index, current.as_ref(), now);
                record = record.limited(reason, Some(hit));
            }
            Ok(GrantUse::Unusable) => {
                let item = match self.grants.get(&approval_id).await {
                    Ok(item) => item,
                    Err(source) => return Err(self.not_recorded(record, source)),
                };
                let reason =
                    grant_refusal(item.as_ref(), &record, &decided_after).unwrap_or(Reason {
                        // Everything fits, yet the write lost: a concurrent call used it.
                        code: ReasonCode::GrantAlreadyUsed,
                        message: "the approval's grant was used by a concurrent call".to_owned(),
                        policy_id: None,
                    });
                record.decision = Decision::Deny;
                record.reasons = vec![reason];
            }
            Err(source) => return Err(self.not_recorded(record, source)),
        }
        if let Err(source) = self.log.append(&record).await {
            return Err(self.not_recorded(record, source));
        }
        self.metrics.record_decision(&record);
        log_decision("decision", &record);
        Ok(record)
    }

    /// What the fresh decision `record`, whose idempotency key another
    /// decision holds, comes to. A replay must be the whole call again
    /// (agent, user, tool, arguments) under the same policy version with the
    /// same outcome, so that neither another user, nor a newer policy (a
    /// disabled agent, a revoked grant), nor a time-bound rule that has since
    /// closed is ever answered from an old allow. The outcome compared is
    /// `decided`, the policy's, before limits: an allow's replay charges
    /// nothing, so a limit that filled since does not make it a new call.
    /// The claim's 24-hour end bounds the age of anything replayed.
    async fn repeat(
        &self,
        record: &DecisionRecord,
        decided: Decision,
    ) -> Result<Repeat, StoreError> {
        let key = record.idempotency_key.as_deref().unwrap_or_default();
        let holder = self
            .log
            .by_idempotency_key(&record.agent_id, key)
            .await?
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "idempotency key `{key}` is claimed, but its decision cannot be read"
                ))
            })?;
        let same_call = holder.user_id == record.user_id
            && holder.tool_id == record.tool_id
            && holder.arguments_hash == record.arguments_hash;
        Ok(if !same_call {
            Repeat::Reused(holder)
        } else if holder.policy_version == record.policy_version && holder.decision == decided {
            Repeat::Replay(holder)
        } else {
            Repeat::Supersede(holder.decision_id)
        })
    }

    /// Records the refused reuse of an idempotency key as a deny (the key is
    /// named in its reason, not claimed) and answers with it.
    async fn key_reused(
        &self,
        mut record: DecisionRecord,
        holder: &DecisionRecord,
    ) -> ServiceError {
        let key = record.idempotency_key.take().unwrap_or_default();
        record.decision = Decision::Deny;
        record.determining_policies.clear();
        record.approval_id = None;
        record.reasons = vec![Reason {
            code: ReasonCode::IdempotencyKeyReused,
            message: format!(
                "idempotency key `{key}` holds decision `{}`, made for another call \
                 (a different user, tool or arguments); use a new key for a new call",
                holder.decision_id
            ),
            policy_id: None,
        }];
        if let Err(source) = self.log.append(&record).await {
            return self.not_recorded(record, source);
        }
        self.metrics.record_decision(&record);
        log_decision("decision", &record);
        ServiceError::IdempotencyKeyReused {
            key,
            record: Box::new(record),
        }
    }

    fn not_recorded(&self, record: DecisionRecord, source: StoreError) -> ServiceError {
        tracing::error!(
            target: "decision",
            agent_id = %record.agent_id,
            tool_id = %record.tool_id,
            would_have_been = record.decision.as_str(),
            trace_id = %record.trace_id,
            error = %source,
            "decision could not be recorded; denying"
        );
        ServiceError::NotRecorded {
            record: Box::new(record.with_not_recorded()),
            source,
        }
    }
}

/// The deny of a call decided while the served version is stale.
fn stale_evaluation(age: Duration, bound: Duration) -> Evaluation {
    Evaluation {
        decision: Decision::Deny,
        reasons: vec![Reason {
            code: ReasonCode::PolicyStale,
            message: format!(
                "the policy version in use was last confirmed as the active one {}s ago, \
                 more than the maximum staleness of {}s; every call is denied until it is",
                age.as_secs(),
                bound.as_secs()
            ),
            policy_id: None,
        }],
        determining_policies: Vec::new(),
        errors: Vec::new(),
        agent_version: None,
        shadow: None,
    }
}

impl DecisionRecord {
    /// This record turned into the deny of a call that a limit refused.
    fn limited(mut self, reason: Reason, limit: Option<crate::model::LimitHit>) -> Self {
        self.decision = Decision::Deny;
        // The policies permitted the call; the limit decided.
        self.determining_policies.clear();
        self.approval_id = None;
        self.reasons = vec![reason];
        self.limit = limit;
        self
    }

    /// This record turned into the deny answered when it cannot be recorded.
    fn with_not_recorded(mut self) -> Self {
        self.decision = Decision::Deny;
        // The policies did not decide this deny; the missing record did.
        self.determining_policies.clear();
        self.reasons = vec![Reason {
            code: ReasonCode::DecisionNotRecorded,
            message:
                "the decision log is unavailable; without a durable record every call is denied"
                    .to_owned(),
            policy_id: None,
        }];
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::EngineHandle;
    use crate::policy::{compile, PolicyBundle, PolicyEngine, PolicyVersionRef, REGISTRY_FILE};

    fn engine(id: &str) -> PolicyEngine {
        let mut bundle = PolicyBundle::default();
        let registry = serde_json::to_string(&crate::model::Registry::default()).unwrap();
        bundle.files.insert(REGISTRY_FILE.to_owned(), registry);
        let version = PolicyVersionRef {
            id: id.into(),
            content_hash: id.into(),
        };
        PolicyEngine::new(compile(&bundle).unwrap(), version).unwrap()
    }

    #[test]
    fn a_served_version_goes_stale_only_past_the_bound_since_its_last_confirmation() {
        let handle = EngineHandle::with_max_staleness(engine("a"), Duration::from_secs(60));
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(handle.stale_at(now), None);
        assert_eq!(handle.stale_at(now + Duration::from_secs(59)), None);
        let age = handle.stale_at(now + Duration::from_secs(61)).unwrap();
        assert!(age > Duration::from_secs(60));
        // A clock that went backwards is no reason to deny.
        assert_eq!(handle.stale_at(now - Duration::from_secs(3600)), None);
        std::thread::sleep(Duration::from_millis(20));
        let later = time::OffsetDateTime::now_utc();
        handle.confirm();
        assert_eq!(handle.stale_at(later + Duration::from_secs(60)), None);
        handle.replace(engine("b"));
        assert_eq!(handle.current().version().id, "b");
        assert_eq!(handle.stale_at(later + Duration::from_secs(60)), None);
        assert_eq!(
            EngineHandle::new(engine("c")).max_staleness(),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn decimal_arguments_are_one_call_by_value() {
        let registry = crate::policy::example_tests::example_registry();
        let transfer = registry
            .tools
            .iter()
            .find(|t| t.id == "transfer_funds")
            .expect("the example's transfer tool");
        let call = |amount: &str| -> serde_json::Value {
            serde_json::from_str(&format!(
                r#"{{"amount": {amount}, "currency": "EUR", "to_account": "DE89"}}"#
            ))
            .unwrap()
        };
        let hash = |amount: &str| super::arguments_hash(Some(transfer), &call(amount));
        assert_eq!(hash("300"), hash("300.0"));
        assert_eq!(hash("300"), hash("300.00"));
        assert_eq!(hash("0.1"), hash("0.10"));
        assert_ne!(hash("300"), hash("300.01"));
        // Other arguments keep their exact form: a string is not a number.
        let text = |to: &str| {
            let mut c = call("300");
            c["to_account"] = serde_json::json!(to);
            super::arguments_hash(Some(transfer), &c)
        };
        assert_ne!(text("300"), text("300.0"));
        // Without the tool's declaration, the hash is the canonical one.
        assert_eq!(
            super::arguments_hash(None, &call("300")),
            super::canonical_hash(&call("300"))
        );
    }

    #[test]
    fn the_arguments_hash_ignores_key_order_at_every_level() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": "s"}});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": "s", "y": [1, {"p": 2, "q": 1}]}, "b": 1}"#)
                .unwrap();
        assert_eq!(super::canonical_hash(&a), super::canonical_hash(&b));
        assert_ne!(
            super::canonical_hash(&a),
            super::canonical_hash(&serde_json::json!({"b": 2}))
        );
    }
}
