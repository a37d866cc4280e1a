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
//!   An approval whose workflow cannot be resumed (stopped, timed out, the
//!   call failed) moves from `approved` to `failed` by a conditional write,
//!   with its record, and the page says the call is denied: the grant is
//!   usable only once the workflow records it as `granted`.
//!
//! Who may answer: an approver whose token verifies (pasted into the form,
//! or sent as `Authorization: Bearer`), who belongs to the approver group
//! the approval names, and who is not the user the agent acts for. An
//! approval that names no group is answered by nobody. The forms carry a
//! CSRF value that must match the page's cookie.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::{
    answer_form, csrf_ok, csrf_refused, escape, new_review_id, page, who, with_csrf, AnswerForm,
    MAX_COMMENT,
};
use super::{ErrorType, HandlerError};
use crate::approval::outcome_record;
use crate::auth::{ApproverVerifier, Sessions};
use crate::clock::rfc3339;
use crate::model::ApprovalStatus;
use crate::ports::{
    ApprovalItem, ApprovalStore, CallbackError, Clock, Decided, DecisionLog, HumanDecision,
    Notification, Notifier, ReviewKey, Settled, TaskCallbacks, TaskToken,
};

/// How long an approver's answer waits for the workflow to record the grant
/// before the page says it is still being recorded.
const GRANT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the function talks to.
#[derive(Clone)]
pub struct ApprovalCallbackHandler {
    /// Approvals and their tokens.
    pub approvals: Arc<dyn ApprovalStore>,
    /// Completes the waiting step.
    pub tasks: Arc<dyn TaskCallbacks>,
    /// Tells approvers.
    pub notifier: Arc<dyn Notifier>,
    /// Where the notification is recorded as a step of the approval.
    pub log: Arc<dyn DecisionLog>,
    /// Verifies approvers' tokens; their roles are their groups.
    pub approvers: Arc<dyn ApproverVerifier>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Approvers' sessions, when they sign in with an OpenID Connect provider.
    pub sessions: Option<Arc<dyn Sessions>>,
    /// More pages the same function serves on AWS: the policy changes'
    /// and, with sign-in, the inbox (`govctl serve` mounts them itself).
    pub routes: Option<Router>,
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

impl ApprovalCallbackHandler {
    /// The handler on DynamoDB, Step Functions and SNS, with approvers of
    /// the configured OIDC issuer; with the policy change pages when the
    /// policy versions table is configured, and approvers' sign-in and
    /// inbox when `SIGNIN_CLIENT_ID` is.
    #[cfg(feature = "aws")]
    pub async fn aws(
        config: &super::config::ApprovalCallbackConfig,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, lambda_runtime::Error> {
        use crate::adapters::aws::{
            dynamodb::{DynamoApprovals, DynamoChanges, DynamoPolicyStore},
            sfn::SfnTaskCallbacks,
            sns::SnsNotifier,
        };
        let approvals = Arc::new(
            DynamoApprovals::new(aws_sdk_dynamodb::Client::new(sdk), &config.approvals_table)
                .with_decisions(&config.decisions_table),
        );
        let signin = match &config.signin {
            Some(env) => Some(Arc::new(sign_in(config, env, sdk).await?)),
            None => None,
        };
        let mut handler = Self {
            approvals: approvals.clone(),
            log: Arc::new(crate::adapters::aws::dynamodb::DynamoDecisionLog::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.decisions_table,
            )),
            tasks: Arc::new(SfnTaskCallbacks::new(aws_sdk_sfn::Client::new(sdk))),
            notifier: Arc::new(SnsNotifier::new(
                aws_sdk_sns::Client::new(sdk),
                &config.topic_arn,
            )),
            approvers: Arc::new(crate::auth::OidcVerifier::new(
                &config.approver_jwks_url,
                &config.approver_issuer,
                &config.approver_audience,
                &config.approver_groups_claim,
            )?),
            clock: Arc::new(crate::clock::SystemClock),
            sessions: signin.clone().map(|s| s as Arc<dyn Sessions>),
            routes: None,
        };
        let mut routes = Router::new();
        let mut changes: Option<Arc<dyn crate::ports::ChangeStore>> = None;
        if let Some(table) = &config.policy_versions_table {
            let mut store = DynamoChanges::new(
                DynamoPolicyStore::new(aws_sdk_dynamodb::Client::new(sdk), table),
                &config.decisions_table,
            );
            if let Some(grants) = &config.tool_policy_table {
                store = store.with_tool_policy(grants);
            }
            let store = Arc::new(store);
            changes = Some(store.clone());
            routes = routes.merge(
                super::change_review::ChangeReviewHandler {
                    changes: store.clone(),
                    versions: store,
                    approvers: Arc::clone(&handler.approvers),
                    clock: Arc::clone(&handler.clock),
                    sessions: handler.sessions.clone(),
                }
                .router(),
            );
        }
        if let Some(signin) = signin {
            routes = routes.merge(
                super::inbox::InboxHandler {
                    signin,
                    callback: handler.clone(),
                    inbox: approvals,
                    changes,
                }
                .router(),
            );
        }
        handler.routes = Some(routes);
        Ok(handler)
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
        // Evidence that approvers were asked; its id is derived from the
        // approval, so a retried step records it once.
        let notified = outcome_record(
            &item.request,
            ApprovalStatus::Pending,
            None,
            None,
            &rfc3339(self.clock.now()),
        );
        self.log.append(&notified).await?;
        tracing::info!(approval_id = %event.approval_id, tool_id = %d.tool_id, "approvers notified");
        Ok(json!({ "approval_id": event.approval_id, "notified": true }))
    }

    /// The approver's pages.
    pub fn router(self) -> Router {
        let more = self.routes.clone().unwrap_or_default();
        Router::new()
            .route("/v1/reviews/{review_id}", get(review))
            .route("/v1/reviews/{review_id}/approve", post(approve))
            .route("/v1/reviews/{review_id}/reject", post(reject))
            .with_state(self)
            .merge(more)
    }
}

/// Approvers' sign-in on AWS: the approvers' issuer, with the client secret
/// and the session key from Secrets Manager (read once, at cold start).
#[cfg(feature = "aws")]
async fn sign_in(
    config: &super::config::ApprovalCallbackConfig,
    env: &super::config::SignInEnv,
    sdk: &aws_config::SdkConfig,
) -> Result<crate::auth::signin::SignIn, lambda_runtime::Error> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let read = |id: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_secret_value()
                .secret_id(&id)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "cannot read the secret `{id}`: {}",
                        crate::adapters::aws::describe(&e)
                    )
                })?
                .secret_string
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the secret `{id}` is empty"))
        }
    };
    let client_secret = match &env.client_secret_id {
        Some(id) => Some(read(id.clone()).await?),
        None => None,
    };
    let session_key = read(env.session_secret_id.clone()).await?;
    if session_key.len() < 32 {
        return Err("the session secret must be at least 32 characters".into());
    }
    Ok(crate::auth::signin::SignIn::new(
        crate::auth::signin::SignInConfig {
            issuer: config.approver_issuer.clone(),
            client_id: env.client_id.clone(),
            client_secret,
            groups_claim: config.approver_groups_claim.clone(),
            user_claim: env.user_claim.clone(),
            public_url: env.public_url.trim_end_matches('/').to_owned(),
            scopes: env.scopes.clone(),
            session_ttl: std::time::Duration::from_secs(env.session_ttl_seconds.max(60)),
        },
        session_key.as_bytes(),
    )?)
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

/// "12 min left", "expired" …, from RFC 3339 times.
pub(crate) fn time_left(expires_at: &str, now: time::OffsetDateTime) -> String {
    let format = time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(expires_at, &format) {
        Ok(at) if at > now => {
            let secs = (at - now).whole_seconds();
            if secs >= 3600 {
                format!("{} h {} min left", secs / 3600, (secs % 3600) / 60)
            } else {
                format!("{} min {} s left", secs / 60, secs % 60)
            }
        }
        Ok(_) => "expired".to_owned(),
        Err(_) => "unknown".to_owned(),
    }
}

/// The status, and what it means for the call.
pub(crate) fn status_text(item: &ApprovalItem) -> String {
    let meaning = match item.status {
        ApprovalStatus::Pending => "waiting for an answer",
        ApprovalStatus::Approved => "approved; the workflow is recording the grant",
        ApprovalStatus::Granted => "approved and recorded: the agent may make this call once",
        ApprovalStatus::Rejected => "the call is denied",
        ApprovalStatus::Expired => "nobody answered in time; the call is denied",
        ApprovalStatus::Failed => "the approval workflow failed; the call is denied",
    };
    format!("{} ({meaning})", item.status.as_str())
}

/// Who answered and when, with their comment, once someone has.
pub(crate) fn answered_text(item: &ApprovalItem) -> Option<String> {
    let who = item.approver.as_deref()?;
    Some(format!(
        "{who}{}{}",
        item.decided_at
            .as_deref()
            .map(|at| format!(" at {at}"))
            .unwrap_or_default(),
        item.comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default()
    ))
}

/// The heading of a page about an approval that is no longer waiting.
pub(crate) fn closed_title(item: &ApprovalItem) -> &'static str {
    match item.status {
        ApprovalStatus::Pending => "Approve this call?",
        ApprovalStatus::Approved | ApprovalStatus::Granted => "Already approved",
        ApprovalStatus::Rejected => "Already rejected",
        ApprovalStatus::Expired => "Expired",
        ApprovalStatus::Failed => "Failed",
    }
}

pub(crate) fn details(item: &ApprovalItem, now: time::OffsetDateTime) -> String {
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
        row(
            "Category and risk",
            &format!(
                "{}, {} risk",
                item.request
                    .tool_category
                    .map_or("unknown", crate::model::Category::as_str),
                item.request
                    .tool_risk
                    .map_or("unknown", crate::model::Risk::as_str)
            ),
        ),
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
        row(
            "Expires",
            &format!(
                "{} ({})",
                item.request.expires_at,
                time_left(&item.request.expires_at, now)
            ),
        ),
        row("Status", &status_text(item)),
        answered_text(item).map_or_else(String::new, |a| row("Answered by", &a)),
        "</table>".to_owned(),
    ]
    .concat()
}

async fn review(
    State(h): State<ApprovalCallbackHandler>,
    Path(review_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let item = match h.approvals.find_by_review(&ReviewKey::of(&review_id)).await {
        Ok(Some(item)) => item,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    };
    if item.status != ApprovalStatus::Pending {
        return page(
            StatusCode::OK,
            closed_title(&item),
            &details(&item, h.clock.now()),
        );
    }
    with_csrf(
        "Approve this call?",
        |csrf| {
            // Relative to `/v1/reviews/{review_id}`, each form posts to a child.
            let form = |verb: &str, label: &str| answer_form(&review_id, verb, label, csrf, true);
            details(&item, h.clock.now()) + &form("approve", "Approve") + &form("reject", "Reject")
        },
        "/v1/reviews/",
        &headers,
    )
}

async fn approve(
    State(h): State<ApprovalCallbackHandler>,
    Path(review_id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&review_id, ApprovalStatus::Approved, &headers, form)
        .await
}

async fn reject(
    State(h): State<ApprovalCallbackHandler>,
    Path(review_id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&review_id, ApprovalStatus::Rejected, &headers, form)
        .await
}

impl ApprovalCallbackHandler {
    async fn answer(
        &self,
        review_id: &str,
        status: ApprovalStatus,
        headers: &HeaderMap,
        form: AnswerForm,
    ) -> Response {
        if !csrf_ok(headers, &form.csrf) {
            return csrf_refused();
        }
        let item = match self
            .approvals
            .find_by_review(&ReviewKey::of(review_id))
            .await
        {
            Ok(Some(item)) => item,
            Ok(None) => return not_found(),
            Err(e) => return unavailable(e),
        };
        let approver = match who(
            self.approvers.as_ref(),
            self.sessions.as_deref(),
            form.approver_token.as_deref(),
            headers,
            &format!("/v1/reviews/{review_id}"),
        )
        .await
        {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        self.answer_as(&item, approver, status, form.comment).await
    }

    /// Records `approver`'s answer to `item`, once they are authenticated:
    /// the group and self-approval checks, the conditional write, and the
    /// workflow's resumption.
    pub(crate) async fn answer_as(
        &self,
        item: &ApprovalItem,
        approver: crate::model::UserContext,
        status: ApprovalStatus,
        comment: Option<String>,
    ) -> Response {
        let id = item.request.approval_id.as_str();
        let Some(group) = item
            .request
            .approver_group
            .as_deref()
            .filter(|g| !g.is_empty())
        else {
            // Without a group, any approver token would do: nobody answers,
            // and the call is denied when the approval expires.
            tracing::warn!(approval_id = %id, approver = %approver.id, "answer refused: the approval names no approver group");
            return page(
                StatusCode::FORBIDDEN,
                "No approver group",
                "<p>The tool's policy names no approver group, so nobody may answer this \
                 request; it is denied when it expires. Name an <code>approver_group</code> \
                 for the tool and publish the policy again.</p>",
            );
        };
        if !approver.roles.iter().any(|g| g == group) {
            tracing::warn!(approval_id = %id, approver = %approver.id, group = %group, "approver outside the group");
            return page(
                StatusCode::FORBIDDEN,
                "Not an approver here",
                &format!(
                    "<p>Only members of <code>{}</code> answer this request.</p>",
                    escape(group)
                ),
            );
        }
        if approver.id == item.request.decision.user_id {
            tracing::warn!(approval_id = %id, approver = %approver.id, "self-approval refused");
            return page(
                StatusCode::FORBIDDEN,
                "Not your own call",
                "<p>The agent acts for you in this call; someone else must answer it.</p>",
            );
        }
        let approver = approver.id;
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
            return page(
                StatusCode::BAD_REQUEST,
                "Comment too long",
                "<p>Comments are at most 1024 characters.</p>",
            );
        }
        let answer = HumanDecision {
            status,
            approver,
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
                // Say who answered first: the second approver must know
                // their answer changed nothing, and whose did.
                let by = match self.approvals.get(id).await {
                    Ok(Some(item)) => answered_text(&item)
                        .map(|a| format!(" by {}", escape(&a)))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                return page(
                    StatusCode::CONFLICT,
                    "Already closed",
                    &format!(
                        "<p>This approval is already {}{by}; your answer was not recorded.</p>",
                        match s {
                            ApprovalStatus::Granted => "approved (granted)",
                            other => other.as_str(),
                        }
                    ),
                );
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
        match (status, resumed) {
            (ApprovalStatus::Approved, Ok(())) => {
                tracing::info!(approval_id = %id, approver = %answer.approver, "approval answered: approved");
                self.approved_page(id, &answer.approver).await
            }
            (ApprovalStatus::Approved, Err(e)) => {
                tracing::error!(approval_id = %id, error = %e, "approved, but the workflow could not be resumed");
                self.unresumed(item, &answer, &e).await
            }
            (_, Ok(())) => {
                tracing::info!(approval_id = %id, approver = %answer.approver, "approval answered: rejected");
                page(
                    StatusCode::OK,
                    "Rejected",
                    &format!(
                        "<p>Recorded: rejected by {}. The call is denied.</p>",
                        escape(&answer.approver)
                    ),
                )
            }
            (_, Err(e)) => {
                // The rejection stands in the approvals table; the workflow
                // that would record it is gone, so it is recorded here.
                tracing::error!(approval_id = %id, error = %e, "rejected, but the workflow could not be resumed");
                let record = outcome_record(
                    &item.request,
                    ApprovalStatus::Rejected,
                    Some(answer.approver.clone()),
                    answer.comment.clone(),
                    &answer.decided_at,
                );
                if let Err(e) = self.log.append(&record).await {
                    tracing::error!(approval_id = %id, error = %e, "the rejection could not be recorded");
                }
                page(
                    StatusCode::OK,
                    "Rejected",
                    &format!(
                        "<p>Recorded: rejected by {}. The call is denied.</p>",
                        escape(&answer.approver)
                    ),
                )
            }
        }
    }

    /// The page after an approval resumed its workflow: granted once the
    /// workflow recorded it, failed if it could not, or still being recorded.
    async fn approved_page(&self, id: &str, approver: &str) -> Response {
        let deadline = tokio::time::Instant::now() + GRANT_WAIT;
        loop {
            let held = match self.approvals.get(id).await {
                Ok(item) => item.map(|i| i.status),
                Err(e) => {
                    tracing::warn!(approval_id = %id, error = %e, "cannot read the approval back");
                    None
                }
            };
            match held {
                Some(ApprovalStatus::Granted) => {
                    return page(
                        StatusCode::OK,
                        "Approved",
                        &format!(
                            "<p>Recorded: approved by {}. The agent may now make exactly \
                             this call, once, within {} minutes.</p>",
                            escape(approver),
                            crate::approval::GRANT_TTL_SECONDS / 60
                        ),
                    )
                }
                Some(ApprovalStatus::Failed) => {
                    return page(
                        StatusCode::CONFLICT,
                        "Approval failed",
                        "<p>Your approval is recorded, but the approval workflow failed to \
                         record the grant. The call is denied; the agent must ask again.</p>",
                    )
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return page(
                        StatusCode::ACCEPTED,
                        "Approved, being recorded",
                        &format!(
                            "<p>Recorded: approved by {}. The agent may make the call once \
                             the workflow records the grant; reload this page to see it.</p>",
                            escape(approver)
                        ),
                    )
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    }

    /// An approval whose workflow could not be resumed: it fails, with its
    /// record, unless the workflow closed it first.
    async fn unresumed(
        &self,
        item: &ApprovalItem,
        answer: &HumanDecision,
        error: &CallbackError,
    ) -> Response {
        let id = item.request.approval_id.as_str();
        let why = match error {
            CallbackError::NotWaiting => {
                "the approval workflow was no longer waiting (stopped or timed out)"
            }
            CallbackError::Unavailable(_) => "the approval workflow could not be resumed",
        };
        let record = outcome_record(
            &item.request,
            ApprovalStatus::Failed,
            Some(answer.approver.clone()),
            Some(format!("approved, but {why}")),
            &rfc3339(self.clock.now()),
        );
        let settled = self
            .approvals
            .settle(
                id,
                &[ApprovalStatus::Approved],
                ApprovalStatus::Failed,
                &record,
            )
            .await;
        match settled {
            Ok(Settled::Recorded | Settled::Held(ApprovalStatus::Failed)) => page(
                StatusCode::CONFLICT,
                "Not delivered",
                &format!(
                    "<p>Your approval is recorded, but {why}. The approval failed and the \
                     call is denied; the agent must ask again.</p>"
                ),
            ),
            Ok(Settled::Held(ApprovalStatus::Expired)) => page(
                StatusCode::GONE,
                "Expired",
                "<p>The approval timed out before this answer arrived; the call is denied.</p>",
            ),
            Ok(Settled::Held(ApprovalStatus::Granted)) => page(
                StatusCode::OK,
                "Approved",
                &format!(
                    "<p>Recorded: approved by {}. The agent may now make exactly this call, \
                     once, within {} minutes.</p>",
                    escape(&answer.approver),
                    crate::approval::GRANT_TTL_SECONDS / 60
                ),
            ),
            Ok(Settled::Held(other)) => page(
                StatusCode::CONFLICT,
                "Already closed",
                &format!(
                    "<p>This approval is {}; the call is denied.</p>",
                    other.as_str()
                ),
            ),
            Ok(Settled::NotFound) => not_found(),
            Err(e) => {
                tracing::error!(approval_id = %id, error = %e, "cannot record the failed approval");
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Not delivered",
                    &format!(
                        "<p>Your approval is recorded, but {why}. It cannot be used: a grant \
                         is usable only once the workflow records it. The call is denied.</p>"
                    ),
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
