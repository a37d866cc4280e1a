//! The approval workflow in process, for `govctl serve`.
//!
//! Each approval runs as a task through the states of
//! `statemachines/approval.asl.json`, calling the same step handlers with
//! the same payloads the state machine sends to the Lambda functions:
//! RecordPending → NotifyApprovers (wait for the task token, up to the
//! tool's timeout) → RecordApproved (a failure there is caught into
//! RecordFailed), or RecordRejected / RecordExpired / RecordFailed →
//! EmitDenialMetric. Transient step errors are retried as the state
//! machine's `Retry` does (three times, 1, 2 and 4 seconds apart).
//!
//! Waiting steps live in memory. When `govctl serve` starts,
//! [`LocalWorkflow::recover`] picks up what the previous run left open, from
//! the approvals table: a pending approval with time left waits again for
//! the rest of it (its approvers' link still works), one past its expiry is
//! expired, and one a human approved whose workflow never recorded it is
//! granted, each with its record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::handlers::approval_callback::ApprovalCallbackHandler;
use crate::handlers::decision_log::DecisionLogHandler;
use crate::handlers::denial_metrics::DenialMetricsHandler;
use crate::handlers::{ErrorType, HandlerError};
use crate::model::ApprovalStatus;
use crate::ports::{
    ApprovalItem, ApprovalRequest, ApprovalWorkflow, CallbackError, StoreError, TaskCallbacks,
    TaskToken,
};

/// What [`LocalWorkflow::recover`] did with the approvals a previous run left open.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Pending approvals that wait again for the rest of their time.
    pub resumed: usize,
    /// Pending approvals past their expiry, now expired with their record.
    pub expired: usize,
    /// Approved approvals whose grant the previous run never recorded, now
    /// recorded (granted) or, if that failed, failed, with their record.
    pub completed: usize,
}

/// How the waiting step was resumed.
#[derive(Debug)]
enum Resume {
    Success(Value),
    Failure { error: String, cause: String },
}

/// The steps that wait for a task token, by token.
#[derive(Debug, Default)]
pub struct LocalTasks {
    waiting: Mutex<HashMap<String, oneshot::Sender<Resume>>>,
}

impl LocalTasks {
    fn register(&self) -> Result<(TaskToken, oneshot::Receiver<Resume>), HandlerError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| {
            HandlerError::new(ErrorType::NotifyFailed, format!("no randomness: {e}"))
        })?;
        let token = hex::encode(bytes);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(token.clone(), tx);
        Ok((TaskToken(token), rx))
    }

    fn forget(&self, token: &TaskToken) {
        self.lock().remove(&token.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Resume>>> {
        // A poisoned map still holds valid senders; keep serving it.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn resume(&self, token: &TaskToken, how: Resume) -> Result<(), CallbackError> {
        let sender = self
            .lock()
            .remove(&token.0)
            .ok_or(CallbackError::NotWaiting)?;
        sender.send(how).map_err(|_| CallbackError::NotWaiting)
    }
}

#[async_trait]
impl TaskCallbacks for LocalTasks {
    async fn succeed(&self, token: &TaskToken, output: &Value) -> Result<(), CallbackError> {
        self.resume(token, Resume::Success(output.clone()))
    }

    async fn fail(&self, token: &TaskToken, error: &str, cause: &str) -> Result<(), CallbackError> {
        self.resume(
            token,
            Resume::Failure {
                error: error.to_owned(),
                cause: cause.to_owned(),
            },
        )
    }
}

/// The workflow: starts a task per approval.
#[derive(Clone)]
pub struct LocalWorkflow {
    /// Records the steps (the decision-log function's handler).
    pub decision_log: Arc<DecisionLogHandler>,
    /// Notifies approvers (the approval-callback function's handler).
    pub callback: ApprovalCallbackHandler,
    /// Counts denials (the denial-metrics function's handler).
    pub metrics: Arc<DenialMetricsHandler>,
    /// The waiting steps, which the callback resumes.
    pub tasks: Arc<LocalTasks>,
    /// Where approvers' links point (the state machine's `ApprovalBaseUrl`).
    pub base_url: String,
}

/// Whether the state machine's `Retry` retries an error.
fn transient(e: &HandlerError) -> bool {
    matches!(
        e.kind,
        ErrorType::StoreUnavailable | ErrorType::NotifyFailed | ErrorType::MetricsUnavailable
    )
}

/// Runs a step, retrying transient errors three times, 1, 2 and 4 seconds apart.
async fn with_retry<F, Fut>(mut step: F) -> Result<Value, HandlerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, HandlerError>>,
{
    let mut wait = Duration::from_secs(1);
    for _ in 0..3 {
        match step().await {
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, "approval step failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    step().await
}

/// The `$.failure` a caught error leaves in the state: `{Error, Cause}`.
fn failure(e: &HandlerError) -> Value {
    json!({ "Error": e.kind.as_str(), "Cause": e.message })
}

impl LocalWorkflow {
    async fn run(self, request: ApprovalRequest) {
        let approval_id = request.approval_id.clone();
        let state = match serde_json::to_value(&request) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(%approval_id, error = %e, "cannot run the approval");
                return;
            }
        };
        let recorded = with_retry(|| {
            self.decision_log
                .handle(json!({"action": "approval_requested", "approval": state.clone()}))
        })
        .await;
        if let Err(e) = recorded {
            return self.deny(state, "approval_failed", failure(&e)).await;
        }
        let Some((token, answered)) = self.notify(&state, &approval_id).await else {
            return;
        };
        self.wait(
            state,
            token,
            answered,
            Duration::from_secs(request.timeout_seconds),
        )
        .await;
    }

    /// A token for a new waiting step; `None`: it failed, and the failure
    /// is recorded.
    async fn register(&self, state: &Value) -> Option<(TaskToken, oneshot::Receiver<Resume>)> {
        match self.tasks.register() {
            Ok(t) => Some(t),
            Err(e) => {
                self.deny(state.clone(), "approval_failed", failure(&e))
                    .await;
                None
            }
        }
    }

    /// NotifyApprovers up to the wait: keeps a new token and tells approvers.
    /// `None`: it failed, and the failure is recorded.
    async fn notify(
        &self,
        state: &Value,
        approval_id: &str,
    ) -> Option<(TaskToken, oneshot::Receiver<Resume>)> {
        let (token, answered) = self.register(state).await?;
        let notified = with_retry(|| {
            self.callback.notify(json!({
                "action": "notify",
                "approval_id": approval_id,
                "task_token": token.0,
                "base_url": self.base_url,
            }))
        })
        .await;
        if let Err(e) = notified {
            self.tasks.forget(&token);
            self.deny(state.clone(), "approval_failed", failure(&e))
                .await;
            return None;
        }
        Some((token, answered))
    }

    /// NotifyApprovers' wait, for at most `left`, and the step that follows.
    async fn wait(
        &self,
        mut state: Value,
        token: TaskToken,
        answered: oneshot::Receiver<Resume>,
        left: Duration,
    ) {
        match tokio::time::timeout(left, answered).await {
            Ok(Ok(Resume::Success(output))) => {
                if let Some(obj) = state.as_object_mut() {
                    obj.insert("outcome".into(), output);
                }
                self.approved(state).await;
            }
            Ok(Ok(Resume::Failure { error, cause })) => {
                let action = if error == "ApprovalRejected" {
                    "approval_rejected"
                } else {
                    "approval_failed"
                };
                self.deny(state, action, json!({"Error": error, "Cause": cause}))
                    .await;
            }
            Ok(Err(_)) => {
                self.deny(
                    state,
                    "approval_failed",
                    json!({"Error": "States.Runtime", "Cause": ""}),
                )
                .await;
            }
            Err(_) => {
                self.tasks.forget(&token);
                self.deny(
                    state,
                    "approval_expired",
                    json!({"Error": "States.Timeout", "Cause": ""}),
                )
                .await;
            }
        }
    }

    /// RecordApproved, whose failure the state machine's `Catch` sends to
    /// RecordFailed: the grant becomes usable only with its record.
    async fn approved(&self, state: Value) {
        let approval_id = state
            .get("approval_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let done = with_retry(|| {
            self.decision_log
                .handle(json!({"action": "approval_approved", "approval": state.clone()}))
        })
        .await;
        match done {
            Ok(_) => tracing::info!(%approval_id, "approval granted"),
            Err(e) => {
                tracing::error!(%approval_id, error = %e, "approved, but the grant could not be recorded");
                self.deny(state, "approval_failed", failure(&e)).await;
            }
        }
    }

    /// Picks up the approvals a previous run left open (`items`, from the
    /// approvals table), as of `now`: call it before serving answers, so
    /// that an answer finds its step waiting again.
    pub async fn recover(&self, items: Vec<ApprovalItem>, now: time::OffsetDateTime) -> Recovered {
        let mut done = Recovered::default();
        for item in items {
            let approval_id = item.request.approval_id.clone();
            let mut state = match serde_json::to_value(&item.request) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(%approval_id, error = %e, "cannot resume the approval");
                    continue;
                }
            };
            match item.status {
                ApprovalStatus::Approved => {
                    // The human's answer is durable and was given in time
                    // (the answer's write checks the expiry); only its
                    // record is missing: RecordApproved writes it.
                    if let Some(obj) = state.as_object_mut() {
                        obj.insert(
                            "outcome".into(),
                            json!({"outcome": "approved", "decided_at": item.decided_at}),
                        );
                    }
                    self.approved(state).await;
                    done.completed += 1;
                }
                ApprovalStatus::Pending => {
                    let left = time::OffsetDateTime::parse(
                        &item.request.expires_at,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok()
                    .map(|at| at - now)
                    .and_then(|d| Duration::try_from(d).ok())
                    .filter(|d| !d.is_zero());
                    let Some(left) = left else {
                        self.deny(
                            state,
                            "approval_expired",
                            json!({"Error": "States.Timeout", "Cause": ""}),
                        )
                        .await;
                        done.expired += 1;
                        continue;
                    };
                    let waiting = if item.task_token.is_some() {
                        self.rewait(&state, &approval_id).await
                    } else {
                        // Approvers were never told: tell them now.
                        self.notify(&state, &approval_id).await
                    };
                    if let Some((token, answered)) = waiting {
                        tracing::info!(%approval_id, seconds_left = left.as_secs(), "approval waits again");
                        let me = self.clone();
                        tokio::spawn(async move { me.wait(state, token, answered, left).await });
                        done.resumed += 1;
                    }
                }
                ApprovalStatus::Granted
                | ApprovalStatus::Rejected
                | ApprovalStatus::Expired
                | ApprovalStatus::Failed => {}
            }
        }
        done
    }

    /// A new waiting step for a pending approval whose approvers were told:
    /// its token replaces the lost one, and their link stays.
    async fn rewait(
        &self,
        state: &Value,
        approval_id: &str,
    ) -> Option<(TaskToken, oneshot::Receiver<Resume>)> {
        let (token, answered) = self.register(state).await?;
        match self
            .callback
            .approvals
            .reattach_token(approval_id, &token)
            .await
        {
            Ok(_) => Some((token, answered)),
            Err(StoreError::NotFound(_)) => {
                // Answered or closed meanwhile: nothing waits.
                self.tasks.forget(&token);
                None
            }
            Err(e) => {
                self.tasks.forget(&token);
                let e = HandlerError::from(e);
                self.deny(state.clone(), "approval_failed", failure(&e))
                    .await;
                None
            }
        }
    }

    /// RecordRejected / RecordExpired / RecordFailed, then EmitDenialMetric.
    async fn deny(&self, mut state: Value, action: &str, failure: Value) {
        let approval_id = state
            .get("approval_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(obj) = state.as_object_mut() {
            obj.insert("failure".into(), failure);
        }
        let recorded = with_retry(|| {
            self.decision_log
                .handle(json!({"action": action, "approval": state.clone()}))
        })
        .await;
        let record = match recorded {
            Ok(out) => out.get("record").cloned().unwrap_or(Value::Null),
            Err(e) => {
                tracing::error!(%approval_id, error = %e, "the denial could not be recorded");
                return;
            }
        };
        let counted = with_retry(|| {
            self.metrics
                .handle(json!({"action": "approval_denied", "record": record.clone()}))
        })
        .await;
        if let Err(e) = counted {
            tracing::warn!(%approval_id, error = %e, "the denial metric was not emitted");
        }
        tracing::info!(%approval_id, outcome = action, "approval closed");
    }
}

#[async_trait]
impl ApprovalWorkflow for LocalWorkflow {
    async fn start(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        tokio::spawn(self.clone().run(request.clone()));
        Ok(())
    }
}
