//! The HTTP API, shared by `govctl serve` and the Lambda functions.
//!
//! Routes: `POST /v1/authorize`, `GET /v1/decisions/{id}`,
//! `GET /v1/approvals/{id}`, `GET /v1/runs/{run_id}`,
//! `POST /v1/runs/{run_id}/usage`, `GET /healthz`.
//! The agent is whoever [`AgentAuthenticator`] says the transport
//! authenticated; the user is the verified `X-On-Behalf-Of` token. The body
//! never names the agent.

mod error;
#[cfg(feature = "mcp")]
pub mod mcp;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

pub use error::{ApiError, ErrorBody, ErrorDetail};

use crate::auth::{JwtVerifier, TokenError, UserVerifier};
use crate::model::{AuthorizeRequest, Decision, DecisionRecord, Reason};
use crate::ports::{ApprovalStore, DecisionLog};
use crate::service::{limits, new_trace_id, AuthorizeService, ServiceError};

/// The header that carries the verified token of the user an agent acts for.
pub const ON_BEHALF_OF: &str = "x-on-behalf-of";

/// Establishes which agent is calling, from what the transport verified:
/// a header checked here, or a request extension that the host put there
/// (API Gateway's IAM authorizer context on AWS).
pub trait AgentAuthenticator: Send + Sync {
    /// The agent id, or why there is none.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<String, ApiError>;
}

/// Agents present a bearer JWT (the local control plane's credential).
pub struct BearerAgentAuth(pub JwtVerifier);

impl AgentAuthenticator for BearerAgentAuth {
    fn authenticate(&self, headers: &HeaderMap, _: &Extensions) -> Result<String, ApiError> {
        self.0
            .verify_agent(bearer(headers)?)
            .map_err(ApiError::InvalidCredentials)
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingCredentials)?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::InvalidCredentials(TokenError::Malformed(
            "expected `Bearer <token>`".into(),
        )))
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Decides and records.
    pub service: Arc<AuthorizeService>,
    /// Identifies the calling agent.
    pub agents: Arc<dyn AgentAuthenticator>,
    /// Verifies on-behalf-of tokens.
    pub users: Arc<dyn UserVerifier>,
    /// Reads recorded decisions.
    pub log: Arc<dyn DecisionLog>,
    /// Reads approvals, for the agents that wait on them.
    pub approvals: Arc<dyn ApprovalStore>,
}

/// `GET /metrics`: the local host's counters in the OpenMetrics text format,
/// which Prometheus scrapes.
pub fn metrics_router(
    metrics: Arc<crate::adapters::local::prometheus::PrometheusMetrics>,
) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/authorize", post(authorize))
        .route("/v1/decisions/{id}", get(get_decision))
        .route("/v1/approvals/{id}", get(get_approval))
        .route("/v1/runs/{run_id}", get(get_run))
        .route("/v1/runs/{run_id}/usage", post(report_usage))
        .route("/healthz", get(healthz))
        // The extractor's own limit is the one enforced; this only has to be as large.
        .layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
        .with_state(state)
}

/// The answer to `POST /v1/authorize` and `GET /v1/decisions/{id}`.
#[derive(Debug, Serialize)]
pub struct DecisionResponse<'a> {
    /// `allow`, `deny` or `pending_approval`.
    pub decision: Decision,
    /// The record's id.
    pub decision_id: &'a str,
    /// Why.
    pub reasons: &'a [Reason],
    /// The policy version that decided.
    pub policy_version: &'a str,
    /// Its content hash.
    pub policy_hash: &'a str,
    /// The trace.
    pub trace_id: &'a str,
    /// The policies that determined the outcome.
    pub determining_policies: &'a [String],
    /// The agent.
    pub agent_id: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The tool.
    pub tool_id: &'a str,
    /// When.
    pub timestamp: &'a str,
    /// The approval a pending decision waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<&'a str>,
    /// Where the agent polls that approval (`GET`, with its credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_url: Option<String>,
    /// The run the call belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
    /// The limit that denied the call, its count, and when to retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'a crate::model::LimitHit>,
    /// Seconds until the call may succeed, for a deny that a window ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// A stable error code, when the decision is a deny because of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl<'a> DecisionResponse<'a> {
    fn from_record(r: &'a DecisionRecord) -> Self {
        DecisionResponse {
            decision: r.decision,
            decision_id: &r.decision_id,
            reasons: &r.reasons,
            policy_version: &r.policy_version,
            policy_hash: &r.policy_hash,
            trace_id: &r.trace_id,
            determining_policies: &r.determining_policies,
            agent_id: &r.agent_id,
            user_id: &r.user_id,
            tool_id: &r.tool_id,
            timestamp: &r.timestamp,
            approval_id: r.approval_id.as_deref(),
            poll_url: r
                .approval_id
                .as_ref()
                .map(|id| format!("/v1/approvals/{id}")),
            run_id: r.run_id.as_deref(),
            limit: r.limit.as_ref(),
            retry_after: retry_after(r),
            error: None,
        }
    }
}

/// The status each decision is answered with.
pub fn decision_status(d: Decision) -> StatusCode {
    match d {
        Decision::Allow => StatusCode::OK,
        Decision::Deny => StatusCode::FORBIDDEN,
        Decision::PendingApproval => StatusCode::ACCEPTED,
    }
}

/// Seconds until a deny that a window ends (a rate limit, a budget) may
/// turn into an allow; none for any other answer.
fn retry_after(r: &DecisionRecord) -> Option<u64> {
    let code = r.reasons.first()?.code;
    (r.decision == Decision::Deny && code.is_windowed())
        .then(|| r.limit.as_ref()?.retry_after_seconds)
        .flatten()
}

/// The status a recorded decision is answered with: 429 for a deny that
/// waiting ends, else by the decision.
fn record_status(r: &DecisionRecord) -> StatusCode {
    if retry_after(r).is_some() {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        decision_status(r.decision)
    }
}

/// The user of the verified `X-On-Behalf-Of` token.
async fn on_behalf_of(
    users: &dyn UserVerifier,
    headers: &HeaderMap,
) -> Result<crate::model::UserContext, ApiError> {
    let token = headers
        .get(ON_BEHALF_OF)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::MissingUserToken)?;
    users
        .verify_user(token)
        .await
        .map_err(ApiError::InvalidUserToken)
}

/// The trace id of a W3C `traceparent` header, or a new one.
fn trace_id(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let mut parts = v.split('-');
            let (_, id) = (parts.next()?, parts.next()?);
            (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32))
                .then(|| id.to_ascii_lowercase())
        })
        .unwrap_or_else(new_trace_id)
}

fn parse_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<AuthorizeRequest, ApiError> {
    parse_json(headers, body)
}

/// A JSON body of type `T`, refused with the API's stable errors.
fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limits::MAX_BODY_BYTES)
        } else {
            ApiError::InvalidRequest(e.body_text())
        }
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json") || v.to_ascii_lowercase().ends_with("+json")
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice::<T>(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => ApiError::MalformedJson(e.to_string()),
        serde_json::error::Category::Data if e.to_string().starts_with("unknown field") => {
            let message = e.to_string();
            let message = message
                .split(" at line")
                .next()
                .unwrap_or(&message)
                .to_owned();
            ApiError::UnknownField(format!(
                "{message}; the agent is identified by its credential, never by the body"
            ))
        }
        serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
    })
}

async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let agent_id = state.agents.authenticate(&headers, &extensions)?;
    let user = on_behalf_of(state.users.as_ref(), &headers).await?;
    let request = parse_body(&headers, body)?;
    let trace_id = trace_id(&headers);
    match state
        .service
        .authorize(&agent_id, &user, request, trace_id)
        .await
    {
        Ok(record) => Ok(decision_response(record_status(&record), &record, None)),
        Err(ServiceError::InvalidRequest(m)) => Err(ApiError::InvalidRequest(m)),
        Err(ServiceError::IdempotencyKeyReused { key, record }) => {
            // The refused attempt is itself a recorded deny: the body is that
            // decision, with the error that explains the 409.
            let error = ApiError::IdempotencyKeyReused(format!(
                "idempotency key `{key}` already holds a decision for another call \
                 (a different user, tool or arguments); this attempt was recorded as a deny"
            ));
            let (status, code) = error.status_and_code();
            Ok(decision_response(
                status,
                &record,
                Some(ErrorDetail {
                    code,
                    message: error.to_string(),
                }),
            ))
        }
        Err(ServiceError::NotRecorded { record, .. }) => Ok(decision_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &record,
            Some(ErrorDetail {
                code: "decision_not_recorded",
                message: "the decision log is unavailable; the call is denied".into(),
            }),
        )),
    }
}

fn decision_response(
    status: StatusCode,
    record: &DecisionRecord,
    error: Option<ErrorDetail>,
) -> Response {
    let mut body = DecisionResponse::from_record(record);
    body.error = error;
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&record.trace_id) {
        response.headers_mut().insert("x-trace-id", v);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    } else if let Some(seconds) = retry_after(record) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A run id from the path, or not found (ids are bounded like the body's).
fn run_id(id: &str) -> Result<&str, ApiError> {
    if id.is_empty() || id.len() > limits::MAX_ID_LEN {
        return Err(ApiError::RunNotFound(format!("run `{id}` is unknown")));
    }
    Ok(id)
}

async fn get_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Path(id): Path<String>,
) -> Result<Json<crate::runs::RunView>, ApiError> {
    let agent_id = state.agents.authenticate(&headers, &extensions)?;
    Ok(Json(state.service.run(&agent_id, run_id(&id)?).await?))
}

async fn report_usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<crate::runs::RunView>, ApiError> {
    let agent_id = state.agents.authenticate(&headers, &extensions)?;
    let report: crate::runs::UsageReport = parse_json(&headers, body)?;
    Ok(Json(
        state
            .service
            .report_usage(&agent_id, run_id(&id)?, &report)
            .await?,
    ))
}

async fn get_decision(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Path(id): Path<String>,
) -> Result<Json<DecisionRecord>, ApiError> {
    let agent_id = state.agents.authenticate(&headers, &extensions)?;
    if id.len() > limits::MAX_ID_LEN {
        return Err(ApiError::NotFound);
    }
    match state.log.get(&id).await.map_err(ApiError::Unavailable)? {
        // Another agent's decision is answered exactly like a missing one.
        Some(record) if record.agent_id == agent_id => Ok(Json(record)),
        Some(_) | None => Err(ApiError::NotFound),
    }
}

/// What an agent learns of its approval: where it stands, never who may approve.
#[derive(Debug, Serialize)]
pub struct ApprovalView {
    /// The approval.
    pub approval_id: String,
    /// `pending`, `approved`, `rejected`, `expired` or `failed`.
    pub status: crate::model::ApprovalStatus,
    /// The pending decision.
    pub decision_id: String,
    /// The tool.
    pub tool_id: String,
    /// When it expires (or expired).
    pub expires_at: String,
    /// When it was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
}

async fn get_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    let agent_id = state.agents.authenticate(&headers, &extensions)?;
    if id.len() > limits::MAX_ID_LEN {
        return Err(ApiError::NotFound);
    }
    match state
        .approvals
        .get(&id)
        .await
        .map_err(ApiError::Unavailable)?
    {
        // Another agent's approval is answered exactly like a missing one.
        Some(item) if item.request.decision.agent_id == agent_id => Ok(Json(ApprovalView {
            approval_id: item.request.approval_id,
            status: item.status,
            decision_id: item.request.decision.decision_id,
            tool_id: item.request.decision.tool_id,
            expires_at: item.request.expires_at,
            decided_at: item.decided_at,
        })),
        Some(_) | None => Err(ApiError::NotFound),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    policy_version: String,
    policy_hash: String,
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let engine = state.service.engine.current();
    Json(Health {
        status: "ok",
        policy_version: engine.version().id.clone(),
        policy_hash: engine.version().content_hash.clone(),
    })
}
