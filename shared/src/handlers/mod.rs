//! The handlers of the five functions and of the approval workflow's steps.
//!
//! On AWS, each Lambda function's `main.rs` reads its [`config`], builds its
//! SDK clients, and hands events to one of these; the end-to-end tests call
//! the very same handlers. `govctl serve` runs the approval workflow's steps
//! in process with the same handlers and the same payloads, on its embedded
//! store.
//!
//! Handlers that Step Functions calls fail with a [`HandlerError`] whose
//! `errorType` is one of a few stable names, which the state machine's
//! `Retry` and `Catch` match.

pub mod anomaly_watch;
pub mod approval_callback;
#[cfg(feature = "aws")]
pub mod authorize;
pub mod change_review;
pub mod config;
pub mod decision_log;
pub mod denial_metrics;
#[cfg(all(feature = "aws", feature = "mcp"))]
pub mod gateway;
#[cfg(feature = "oidc")]
pub mod inbox;
pub(crate) mod pages;
mod stream;

#[cfg(feature = "aws")]
use axum::Router;
#[cfg(feature = "aws")]
use lambda_runtime::{Context, Diagnostic, LambdaEvent, Service as _};

use crate::ports::StoreError;

/// Publishes data points, if there are any; a failure is retried.
async fn publish(
    sink: &dyn crate::ports::MetricSink,
    points: &[crate::metrics::MetricDatum],
) -> Result<(), HandlerError> {
    if points.is_empty() {
        return Ok(());
    }
    sink.put(points)
        .await
        .map_err(|e| HandlerError::new(ErrorType::MetricsUnavailable, e.to_string()))
}

/// The stable error types a handler fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A store could not be reached: retried by the state machine.
    StoreUnavailable,
    /// Approvers could not be notified: retried.
    NotifyFailed,
    /// Metrics could not be published: retried.
    MetricsUnavailable,
    /// The event is not what the handler takes: never retried.
    InvalidEvent,
    /// The approval does not exist or is no longer pending: never retried.
    ApprovalNotFound,
    /// The workflow resumed, but the approval cannot be granted (it is no
    /// longer `approved`): never retried; the state machine records a failure.
    ApprovalNotGranted,
}

impl ErrorType {
    /// The name `Retry` and `Catch` match.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::StoreUnavailable => "StoreUnavailable",
            ErrorType::NotifyFailed => "NotifyFailed",
            ErrorType::MetricsUnavailable => "MetricsUnavailable",
            ErrorType::InvalidEvent => "InvalidEvent",
            ErrorType::ApprovalNotFound => "ApprovalNotFound",
            ErrorType::ApprovalNotGranted => "ApprovalNotGranted",
        }
    }
}

/// A failed invocation: a stable type and a message without secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct HandlerError {
    /// The stable type.
    pub kind: ErrorType,
    /// What went wrong.
    pub message: String,
}

impl HandlerError {
    /// An error of `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The event could not be understood.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InvalidEvent, message)
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        let kind = match e {
            StoreError::Unavailable(_) => ErrorType::StoreUnavailable,
            StoreError::NotFound(_) => ErrorType::ApprovalNotFound,
            StoreError::Corrupt(_) | StoreError::Ambiguous { .. } | StoreError::TooShort(_) => {
                ErrorType::InvalidEvent
            }
        };
        Self::new(kind, e.to_string())
    }
}

#[cfg(feature = "aws")]
impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        tracing::error!(error_type = e.kind.as_str(), error = %e.message, "invocation failed");
        Diagnostic {
            error_type: e.kind.as_str().to_owned(),
            error_message: e.message,
        }
    }
}

#[cfg(feature = "aws")]
/// Answers an API Gateway HTTP API event (payload 2.0) with `router`,
/// exactly as `lambda_http::run` does, and returns the Lambda response.
pub async fn invoke_http(
    router: Router,
    event: serde_json::Value,
    context: Context,
) -> Result<serde_json::Value, HandlerError> {
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(event)
        .map_err(|e| HandlerError::invalid(format!("not an HTTP API event: {e}")))?;
    let mut adapter = lambda_http::Adapter::from(router);
    let response = match adapter.call(LambdaEvent::new(request, context)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    serde_json::to_value(response)
        .map_err(|e| HandlerError::invalid(format!("cannot encode the response: {e}")))
}

#[cfg(feature = "aws")]
/// Logs as JSON lines on stdout, which Lambda's JSON log format keeps as
/// they are; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(true)
        .try_init();
}
