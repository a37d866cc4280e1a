//! The decision-log function: the audit path after the durable write.
//!
//! - From the decision table's stream, it writes the seed's structured
//!   decision line (`agent_id`, `tool_id`, `policy_result`, `reason`,
//!   `trace_id`) for every record, into its own log group, whose retention
//!   the template sets for audit rather than for operations; and it chains
//!   every decision and approval record, and the control-plane events that
//!   `govctl policy push` writes, into the audit archive (S3 under Object
//!   Lock), failing the batch, so that it is delivered again, if the
//!   evidence cannot be written. After each batch it seals every chain's
//!   head in a digest signed with the audit key.
//! - From the approval state machine, it records each step of an approval:
//!   the pending request, and the outcome as a decision record of its own.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::stream::{evidence, is_stream_event};
use super::{ErrorType, HandlerError};
use crate::approval::outcome_record;
use crate::audit::archive::Evidence;
use crate::audit::digest::SecretAuditKey;
use crate::clock::rfc3339;
use crate::model::ApprovalStatus;
use crate::ports::{ApprovalRequest, ApprovalStore, AuditArchive, Clock, DecisionLog, Settled};
use crate::service::log_decision;

/// The approval steps the state machine records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Authorize started the workflow: keep the pending approval.
    ApprovalRequested,
    /// A human approved.
    ApprovalApproved,
    /// A human rejected.
    ApprovalRejected,
    /// Nobody decided in time.
    ApprovalExpired,
    /// The workflow could not notify or wait.
    ApprovalFailed,
}

/// The state machine's payload: the action and the execution's state.
#[derive(Debug, Deserialize)]
struct StepEvent {
    action: Action,
    approval: StepState,
}

/// The execution's state: the input authorize started it with, plus what
/// the waiting step produced.
#[derive(Debug, Deserialize)]
struct StepState {
    #[serde(flatten)]
    request: ApprovalRequest,
    /// `SendTaskSuccess`'s output: `{outcome, approver, comment, decided_at}`.
    #[serde(default)]
    outcome: Option<Answer>,
    /// A caught error: `{Error, Cause}`; for a rejection the cause is the answer as JSON.
    #[serde(default)]
    failure: Option<Failure>,
}

/// What the workflow carried of the answer; only its time is used, since
/// the approvals row holds who answered and why.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    decided_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Failure {
    #[serde(rename = "Error", default)]
    error: Option<String>,
    #[serde(rename = "Cause", default)]
    cause: Option<String>,
}

/// The decision-log function.
pub struct DecisionLogHandler {
    /// Where outcome records go.
    pub log: Arc<dyn DecisionLog>,
    /// Where approvals are kept.
    pub approvals: Arc<dyn ApprovalStore>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Where stream records are chained as evidence; none where the log
    /// chains them itself (the embedded store).
    pub archive: Option<Arc<dyn AuditArchive>>,
    /// The key that signs the archive's digests.
    pub audit_key: Option<Arc<SecretAuditKey>>,
}

impl DecisionLogHandler {
    /// The handler on DynamoDB, S3 and the audit key (see
    /// [`crate::adapters::aws::evidence::audit_key`]).
    #[cfg(feature = "aws")]
    pub fn aws(
        config: &super::config::DecisionLogConfig,
        sdk: &aws_config::SdkConfig,
        audit_key: SecretAuditKey,
    ) -> Self {
        use crate::adapters::aws::dynamodb::{DynamoApprovals, DynamoDecisionLog};
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        // Path-style addressing only against another endpoint (an emulator),
        // where bucket subdomains do not resolve.
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(sdk.endpoint_url().is_some())
                .build(),
        );
        Self {
            log: Arc::new(DynamoDecisionLog::new(
                dynamodb.clone(),
                &config.decisions_table,
            )),
            approvals: Arc::new(
                DynamoApprovals::new(dynamodb.clone(), &config.approvals_table)
                    .with_decisions(&config.decisions_table),
            ),
            clock: Arc::new(crate::clock::SystemClock),
            archive: Some(Arc::new(crate::adapters::aws::evidence::S3Evidence::new(
                s3,
                dynamodb,
                &config.evidence_bucket,
                &config.audit_chain_table,
            ))),
            audit_key: Some(Arc::new(audit_key)),
        }
    }

    /// Handles a stream batch or a state machine step.
    pub async fn handle(&self, event: Value) -> Result<Value, HandlerError> {
        if is_stream_event(&event) {
            let (controls, records) = evidence(event)?;
            // Control-plane events first: in a batch they precede the
            // decisions made under the version they activate.
            let mut chained = Vec::with_capacity(controls.len() + records.len());
            for c in controls {
                tracing::info!(target: "decision_log", action = c.action.as_str(), version = %c.version_id, actor = %c.actor, "control-plane event");
                chained.push(Evidence::Control(Box::new(c)));
            }
            for d in records {
                log_decision(&d.kind, &d.record);
                chained.push(Evidence::Decision(Box::new(d.record)));
            }
            let (mut segments, mut digest) = (0, None);
            if let Some(archive) = &self.archive {
                let failed = |e: crate::ports::StoreError| {
                    HandlerError::new(
                        ErrorType::StoreUnavailable,
                        format!("audit evidence not written: {e}"),
                    )
                };
                segments = crate::audit::archive::archive(archive.as_ref(), &chained)
                    .await
                    .map_err(failed)?;
                // Every batch that moved a head is sealed, so that the
                // newest heads are held outside the chain-head table too.
                if let (true, Some(key)) = (segments > 0, &self.audit_key) {
                    let at = rfc3339(self.clock.now());
                    let sealed = crate::audit::archive::seal(archive.as_ref(), key, &at)
                        .await
                        .map_err(failed)?;
                    digest = Some(sealed.digest_seq);
                }
            }
            return Ok(
                json!({ "batchItemFailures": [], "evidence_segments": segments, "digest": digest }),
            );
        }
        let step: StepEvent = serde_json::from_value(event)
            .map_err(|e| HandlerError::invalid(format!("not an approval step: {e}")))?;
        self.step(step).await
    }

    async fn step(&self, step: StepEvent) -> Result<Value, HandlerError> {
        let state = step.approval;
        let request = &state.request;
        let now = rfc3339(self.clock.now());
        match step.action {
            Action::ApprovalRequested => {
                self.approvals.record_pending(request).await?;
                tracing::info!(
                    target: "decision_log",
                    approval_id = %request.approval_id,
                    decision_id = %request.decision.decision_id,
                    agent_id = %request.decision.agent_id,
                    tool_id = %request.decision.tool_id,
                    approver_group = request.approver_group.as_deref(),
                    expires_at = %request.expires_at,
                    "approval requested"
                );
                Ok(json!({ "approval_id": request.approval_id, "status": "pending" }))
            }
            Action::ApprovalApproved => {
                self.grant(request, state.outcome.unwrap_or_default(), &now)
                    .await
            }
            Action::ApprovalRejected => {
                let cause = state.failure.and_then(|f| f.cause).unwrap_or_default();
                // The cause is the callback's JSON answer.
                let answer = serde_json::from_str(&cause).unwrap_or_default();
                self.rejected(request, answer, &now).await
            }
            Action::ApprovalExpired => {
                let (closed, settled) = self
                    .settle_closed(
                        request,
                        &[ApprovalStatus::Pending],
                        ApprovalStatus::Expired,
                        None,
                        &now,
                    )
                    .await?;
                if settled == Settled::Held(ApprovalStatus::Approved) {
                    // Answered in time, but the wait ended before the answer
                    // resumed it: the grant can never be recorded.
                    return self
                        .close(
                            request,
                            &[ApprovalStatus::Approved],
                            ApprovalStatus::Failed,
                            Some("approved, but the workflow stopped waiting before the answer resumed it".to_owned()),
                            &now,
                        )
                        .await;
                }
                Ok(closed)
            }
            Action::ApprovalFailed => {
                let error = state.failure.and_then(|f| f.error);
                self.close(
                    request,
                    &[ApprovalStatus::Pending, ApprovalStatus::Approved],
                    ApprovalStatus::Failed,
                    error.map(|e| format!("workflow error `{e}`")),
                    &now,
                )
                .await
            }
        }
    }

    /// RecordApproved: the approvals row must hold the human's answer as the
    /// callback's conditional write recorded it; that is the authority,
    /// whatever the workflow carried along. The row becomes `granted` in
    /// the same write that appends the `approval_granted` record. A step
    /// that resumed without that answer (a token sent by anyone else, or an
    /// approval already failed) is no approval: it fails, and the state
    /// machine records the failure.
    async fn grant(
        &self,
        request: &ApprovalRequest,
        carried: Answer,
        now: &str,
    ) -> Result<Value, HandlerError> {
        let id = &request.approval_id;
        let not_granted = |held: &str| {
            tracing::error!(approval_id = %id, held, "the workflow resumed without a matching answer");
            HandlerError::new(
                ErrorType::ApprovalNotGranted,
                format!("the workflow reported `approved` but the approvals table holds `{held}`"),
            )
        };
        let item = match self.approvals.get(id).await? {
            Some(item)
                if matches!(
                    item.status,
                    ApprovalStatus::Approved | ApprovalStatus::Granted
                ) =>
            {
                item
            }
            found => return Err(not_granted(found.map_or("missing", |i| i.status.as_str()))),
        };
        let at = item
            .decided_at
            .clone()
            .or(carried.decided_at)
            .unwrap_or_else(|| now.to_owned());
        let record = outcome_record(
            request,
            ApprovalStatus::Granted,
            item.approver,
            item.comment,
            &at,
        );
        match self
            .approvals
            .settle(
                id,
                &[ApprovalStatus::Approved],
                ApprovalStatus::Granted,
                &record,
            )
            .await?
        {
            Settled::Recorded => log_decision("approval", &record),
            // A retried step: the earlier attempt granted it.
            Settled::Held(ApprovalStatus::Granted) => {}
            Settled::Held(other) => return Err(not_granted(other.as_str())),
            Settled::NotFound => return Err(not_granted("missing")),
        }
        Ok(json!({ "record": record, "outcome": ApprovalStatus::Approved.as_str() }))
    }

    /// RecordRejected: the approvals row already holds the rejection (the
    /// callback's conditional write); the record follows it.
    async fn rejected(
        &self,
        request: &ApprovalRequest,
        carried: Answer,
        now: &str,
    ) -> Result<Value, HandlerError> {
        let id = &request.approval_id;
        match self.approvals.get(id).await? {
            Some(item) if item.status == ApprovalStatus::Rejected => {
                let at = item
                    .decided_at
                    .or(carried.decided_at)
                    .unwrap_or_else(|| now.to_owned());
                let record = outcome_record(
                    request,
                    ApprovalStatus::Rejected,
                    item.approver,
                    item.comment,
                    &at,
                );
                self.log.append(&record).await?;
                log_decision("approval", &record);
                Ok(json!({ "record": record, "outcome": ApprovalStatus::Rejected.as_str() }))
            }
            found => {
                let held = found.map_or("missing", |i| i.status.as_str());
                tracing::error!(approval_id = %id, held, "the workflow resumed without a matching answer; recording a failed approval");
                self.close(
                    request,
                    &[ApprovalStatus::Pending, ApprovalStatus::Approved],
                    ApprovalStatus::Failed,
                    Some(format!(
                        "the workflow reported `rejected` but the approvals table holds `{held}`"
                    )),
                    now,
                )
                .await
            }
        }
    }

    /// RecordExpired / RecordFailed: moves the approval from one of `from` to
    /// `status` with its denial record, in one write. An approval already
    /// closed otherwise keeps its outcome (and its record); nothing is
    /// written twice.
    async fn close(
        &self,
        request: &ApprovalRequest,
        from: &[ApprovalStatus],
        status: ApprovalStatus,
        comment: Option<String>,
        now: &str,
    ) -> Result<Value, HandlerError> {
        Ok(self
            .settle_closed(request, from, status, comment, now)
            .await?
            .0)
    }

    /// [`Self::close`], also saying what the store found.
    async fn settle_closed(
        &self,
        request: &ApprovalRequest,
        from: &[ApprovalStatus],
        status: ApprovalStatus,
        comment: Option<String>,
        now: &str,
    ) -> Result<(Value, Settled), HandlerError> {
        let id = &request.approval_id;
        let record = outcome_record(request, status, None, comment, now);
        let settled = match self.approvals.settle(id, from, status, &record).await {
            Ok(s) => s,
            Err(e) => {
                // The denial record is what must not be lost. An approval
                // left open in its table is never usable: a grant needs the
                // `granted` status, written only with its record.
                tracing::warn!(approval_id = %id, error = %e, "cannot close the approval; recording the denial anyway");
                Settled::NotFound
            }
        };
        match settled {
            Settled::Recorded => {}
            Settled::NotFound => {
                self.log.append(&record).await?;
            }
            Settled::Held(held) if held == status => {
                // A retried step: the earlier attempt closed it with this record.
            }
            Settled::Held(held) => {
                tracing::info!(approval_id = %id, held = held.as_str(), "approval already closed");
                let record = outcome_record(request, held, None, None, now);
                return Ok((
                    json!({ "record": record, "outcome": held.as_str() }),
                    settled,
                ));
            }
        }
        log_decision("approval", &record);
        Ok((
            json!({ "record": record, "outcome": status.as_str() }),
            settled,
        ))
    }
}
