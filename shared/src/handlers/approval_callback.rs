//! The approval-callback function: tells approvers, and turns their answer
//! into the waiting workflow step's completion.
//!
//! - `notify` (from the state machine's waiting step): keeps the step's task
//!   token beside the approval, draws a random review id, and publishes a
//!   message whose link carries only that id. The review id is not the
//!   approval id the agent was given, so the agent cannot answer its own
//!   request; the store keeps only the review id's hash.
//! - `GET /v1/reviews/{review_id}`: the call to approve (agent, user, tool,
//!   arguments, the agent's stated reasoning, policy version, expiry), with
//!   Approve and Reject forms. It changes nothing.
//! - `POST /v1/reviews/{review_id}/approve|reject`: one conditional write
//!   decides the approval, then `SendTaskSuccess` or `SendTaskFailure`
//!   resumes the workflow. A second answer sees the first one's outcome.
//!
//! Approver authentication and the approver group check are not here yet:
//! the approver names themself in the form, and the unguessable review id,
//! sent only to approvers, is what protects the link.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ErrorType, HandlerError};
use crate::clock::rfc3339;
use crate::model::ApprovalStatus;
use crate::ports::{
    ApprovalItem, ApprovalStore, CallbackError, Clock, Decided, HumanDecision, Notification,
    Notifier, ReviewKey, TaskCallbacks, TaskToken,
};

/// The longest approver name and comment kept.
const MAX_FIELD: usize = 1024;

/// What the function talks to.
#[derive(Clone)]
pub struct ApprovalCallbackHandler {
    /// Approvals and their tokens.
    pub approvals: Arc<dyn ApprovalStore>,
    /// Completes the waiting step.
    pub tasks: Arc<dyn TaskCallbacks>,
    /// Tells approvers.
    pub notifier: Arc<dyn Notifier>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
struct NotifyEvent {
    approval_id: String,
    task_token: String,
    base_url: String,
}

/// Whether an event comes from the state machine (rather than API Gateway).
pub fn is_step_event(event: &Value) -> bool {
    event.get("action").and_then(Value::as_str) == Some("notify")
}

/// The link approvers follow.
pub fn review_link(base_url: &str, review_id: &str) -> String {
    format!("{}/v1/reviews/{review_id}", base_url.trim_end_matches('/'))
}

/// A review id: 256 random bits, hex.
fn new_review_id() -> Result<String, HandlerError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| HandlerError::new(ErrorType::NotifyFailed, format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

impl ApprovalCallbackHandler {
    /// The handler on DynamoDB, Step Functions and SNS.
    #[cfg(feature = "aws")]
    pub fn aws(
        config: &super::config::ApprovalCallbackConfig,
        sdk: &aws_config::SdkConfig,
    ) -> Self {
        use crate::adapters::aws::{
            dynamodb::DynamoApprovals, sfn::SfnTaskCallbacks, sns::SnsNotifier,
        };
        Self {
            approvals: Arc::new(DynamoApprovals::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.approvals_table,
            )),
            tasks: Arc::new(SfnTaskCallbacks::new(aws_sdk_sfn::Client::new(sdk))),
            notifier: Arc::new(SnsNotifier::new(
                aws_sdk_sns::Client::new(sdk),
                &config.topic_arn,
            )),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    /// Answers one invocation: the state machine's notify step, or an
    /// API Gateway request for the approver's pages.
    #[cfg(feature = "aws")]
    pub async fn handle(
        &self,
        event: Value,
        context: lambda_runtime::Context,
    ) -> Result<Value, HandlerError> {
        if is_step_event(&event) {
            self.notify(event).await
        } else {
            super::invoke_http(self.clone().router(), event, context).await
        }
    }

    /// Handles the state machine's `notify` step.
    pub async fn notify(&self, event: Value) -> Result<Value, HandlerError> {
        let event: NotifyEvent = serde_json::from_value(event)
            .map_err(|e| HandlerError::invalid(format!("not a notify step: {e}")))?;
        let review_id = new_review_id()?;
        let item = self
            .approvals
            .attach_token(
                &event.approval_id,
                &TaskToken(event.task_token),
                &ReviewKey::of(&review_id),
            )
            .await?;
        let d = &item.request.decision;
        let link = review_link(&event.base_url, &review_id);
        let notification = Notification {
            subject: format!(
                "Approval needed: {} by {} for {}",
                d.tool_id, d.agent_id, d.user_id
            ),
            body: format!(
                "Agent `{}` (version {}) asks to call `{}` for user `{}`.\n\
                 Approver group: {}\nArguments hash: {}\nPolicy version: {}\n\
                 Expires: {}\n\nReview, then approve or reject:\n{link}\n",
                d.agent_id,
                d.agent_version.as_deref().unwrap_or("unknown"),
                d.tool_id,
                d.user_id,
                item.request
                    .approver_group
                    .as_deref()
                    .unwrap_or("(none named)"),
                d.arguments_hash,
                d.policy_version,
                item.request.expires_at,
            ),
        };
        self.notifier
            .notify(&notification)
            .await
            .map_err(|e| HandlerError::new(ErrorType::NotifyFailed, e.to_string()))?;
        tracing::info!(approval_id = %event.approval_id, tool_id = %d.tool_id, "approvers notified");
        Ok(json!({ "approval_id": event.approval_id, "notified": true }))
    }

    /// The approver's pages.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/reviews/{review_id}", get(review))
            .route("/v1/reviews/{review_id}/approve", post(approve))
            .route("/v1/reviews/{review_id}/reject", post(reject))
            .with_state(self)
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        axum::http::HeaderValue::from_static(
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        "cache-control",
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "approval store unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>The approval service is unavailable. Nothing was decided; try again.</p>",
    )
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "No such approval",
        "<p>This approval does not exist.</p>",
    )
}

fn details(item: &ApprovalItem) -> String {
    let d = &item.request.decision;
    let row = |k: &str, v: &str| format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    let arguments: Vec<String> = match &item.request.arguments {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| row(&format!("Argument `{k}`"), &v.to_string()))
            .collect(),
        _ => vec![row("Arguments", "(none)")],
    };
    [
        "<table>".to_owned(),
        row("Agent", &d.agent_id),
        row(
            "Agent version",
            d.agent_version.as_deref().unwrap_or("unknown"),
        ),
        row("Acting for", &d.user_id),
        row("Tool", &d.tool_id),
        arguments.concat(),
        row("Arguments hash", &d.arguments_hash),
        row(
            "The agent's stated reasoning (unverified)",
            d.reasoning.as_deref().unwrap_or("(none given)"),
        ),
        row("Policy version", &d.policy_version),
        row(
            "Approver group",
            item.request
                .approver_group
                .as_deref()
                .unwrap_or("(none named)"),
        ),
        row("Expires", &item.request.expires_at),
        row("Status", item.status.as_str()),
        "</table>".to_owned(),
    ]
    .concat()
}

async fn review(
    State(h): State<ApprovalCallbackHandler>,
    Path(review_id): Path<String>,
) -> Response {
    let item = match h.approvals.find_by_review(&ReviewKey::of(&review_id)).await {
        Ok(Some(item)) => item,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    };
    let form = |verb: &str, label: &str| {
        // Relative to `/v1/reviews/{review_id}`, each form posts to a child.
        format!(
            "<form method=\"post\" action=\"{id}/{verb}\"><label>Your name \
             <input name=\"approver\" required maxlength=\"{MAX_FIELD}\"></label> \
             <label>Comment <input name=\"comment\" maxlength=\"{MAX_FIELD}\"></label> \
             <button type=\"submit\">{label}</button></form>",
            id = escape(&review_id)
        )
    };
    let forms = if item.status == ApprovalStatus::Pending {
        form("approve", "Approve") + &form("reject", "Reject")
    } else {
        String::new()
    };
    page(
        StatusCode::OK,
        "Approve this call?",
        &(details(&item) + &forms),
    )
}

/// The approve and reject forms.
#[derive(Debug, Deserialize)]
struct AnswerForm {
    approver: String,
    #[serde(default)]
    comment: Option<String>,
}

async fn approve(
    State(h): State<ApprovalCallbackHandler>,
    Path(review_id): Path<String>,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&review_id, ApprovalStatus::Approved, form).await
}

async fn reject(
    State(h): State<ApprovalCallbackHandler>,
    Path(review_id): Path<String>,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&review_id, ApprovalStatus::Rejected, form).await
}

impl ApprovalCallbackHandler {
    async fn answer(&self, review_id: &str, status: ApprovalStatus, form: AnswerForm) -> Response {
        let item = match self
            .approvals
            .find_by_review(&ReviewKey::of(review_id))
            .await
        {
            Ok(Some(item)) => item,
            Ok(None) => return not_found(),
            Err(e) => return unavailable(e),
        };
        let id = item.request.approval_id.as_str();
        let approver = form.approver.trim();
        if approver.is_empty() || approver.len() > MAX_FIELD {
            return page(
                StatusCode::BAD_REQUEST,
                "Name needed",
                "<p>Give your name (at most 1024 characters).</p>",
            );
        }
        let comment = form
            .comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.len() > MAX_FIELD) {
            return page(
                StatusCode::BAD_REQUEST,
                "Comment too long",
                "<p>Comments are at most 1024 characters.</p>",
            );
        }
        let answer = HumanDecision {
            status,
            approver: approver.to_owned(),
            comment,
            decided_at: rfc3339(self.clock.now()),
        };
        let token = match self.approvals.decide(id, &answer).await {
            Ok(Decided::Recorded(token)) => token,
            Ok(Decided::NotReady) => {
                return page(
                    StatusCode::CONFLICT,
                    "Not ready",
                    "<p>The approval is not waiting for an answer yet.</p>",
                );
            }
            Ok(Decided::AlreadyClosed(s)) => {
                return page(
                    StatusCode::CONFLICT,
                    "Already closed",
                    &format!("<p>This approval is already {}.</p>", s.as_str()),
                )
            }
            Ok(Decided::NotFound) => return not_found(),
            Err(e) => return unavailable(e),
        };
        let resumed = match status {
            ApprovalStatus::Approved => {
                let output = json!({
                    "outcome": "approved",
                    "approver": answer.approver,
                    "comment": answer.comment,
                    "decided_at": answer.decided_at,
                });
                self.tasks.succeed(&token, &output).await
            }
            _ => {
                let cause = json!({
                    "approver": answer.approver,
                    "comment": answer.comment,
                    "decided_at": answer.decided_at,
                });
                self.tasks
                    .fail(&token, "ApprovalRejected", &cause.to_string())
                    .await
            }
        };
        match resumed {
            Ok(()) => {
                tracing::info!(approval_id = %id, status = status.as_str(), approver = %answer.approver, "approval decided");
                page(
                    StatusCode::OK,
                    if status == ApprovalStatus::Approved {
                        "Approved"
                    } else {
                        "Rejected"
                    },
                    &format!(
                        "<p>Recorded: {} by {}.</p>",
                        status.as_str(),
                        escape(&answer.approver)
                    ),
                )
            }
            Err(CallbackError::NotWaiting) => page(
                StatusCode::GONE,
                "Expired",
                "<p>The approval timed out before this answer arrived; the call is denied.</p>",
            ),
            Err(CallbackError::Unavailable(e)) => {
                // The answer is recorded but did not reach the workflow (the
                // SDK already retried); unless it is resumed, it expires and
                // the call is denied.
                tracing::error!(approval_id = %id, error = %e, "answer recorded, workflow not resumed");
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Recorded, not delivered",
                    "<p>Your answer is recorded, but the approval workflow could not be \
                     resumed. If it is not resumed before the approval expires, the call \
                     is denied.</p>",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_carry_only_a_fresh_review_id() {
        assert_eq!(
            super::review_link("https://x.example/", "abc"),
            "https://x.example/v1/reviews/abc"
        );
        let (a, b) = (
            super::new_review_id().unwrap(),
            super::new_review_id().unwrap(),
        );
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
