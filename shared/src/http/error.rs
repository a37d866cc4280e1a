//! The one mapping from errors to HTTP statuses and stable error codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::auth::TokenError;
use crate::ports::StoreError;

/// Every error the API answers with. The `match` in [`ApiError::status_and_code`]
/// has no catch-all arm, so a new variant forces a decision about its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body names a field the API does not know (the agent id, for one).
    #[error("{0}")]
    UnknownField(String),
    /// The body is JSON but not a valid request.
    #[error("{0}")]
    InvalidRequest(String),
    /// The body is larger than allowed.
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not `application/json`.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// No agent credential was presented.
    #[error("the agent credential is missing: send `Authorization: Bearer <agent token>`")]
    MissingCredentials,
    /// The agent credential was refused.
    #[error("the agent credential was refused: {0}")]
    InvalidCredentials(TokenError),
    /// No user token was presented.
    #[error("the user token is missing: send `X-On-Behalf-Of: <user token>`")]
    MissingUserToken,
    /// The user token was refused.
    #[error("the user token was refused: {0}")]
    InvalidUserToken(TokenError),
    /// Nothing is there, or it belongs to someone else.
    #[error("not found")]
    NotFound,
    /// The idempotency key holds a different call; the attempt was recorded
    /// as a deny, which the answer's body carries beside this error.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// The agent has no run of this id.
    #[error("{0}")]
    RunNotFound(String),
    /// The run is closed.
    #[error("{0}")]
    RunClosed(String),
    /// A store failed while reading.
    #[error("the store is unavailable, try again")]
    Unavailable(#[source] StoreError),
}

/// The JSON body of an error.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message safe to show the client.
#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    /// Stable, snake_case.
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

impl ApiError {
    /// The status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::UnknownField(_) => (StatusCode::BAD_REQUEST, "unknown_field"),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::MissingCredentials => (StatusCode::UNAUTHORIZED, "missing_credentials"),
            ApiError::InvalidCredentials(TokenError::Expired) => {
                (StatusCode::UNAUTHORIZED, "token_expired")
            }
            ApiError::InvalidCredentials(TokenError::KeysUnavailable(_))
            | ApiError::InvalidUserToken(TokenError::KeysUnavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "identity_provider_unavailable",
            ),
            ApiError::InvalidCredentials(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::MissingUserToken => (StatusCode::UNAUTHORIZED, "missing_user_token"),
            ApiError::InvalidUserToken(TokenError::Expired) => {
                (StatusCode::UNAUTHORIZED, "user_token_expired")
            }
            ApiError::InvalidUserToken(_) => (StatusCode::UNAUTHORIZED, "invalid_user_token"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::IdempotencyKeyReused(_) => (StatusCode::CONFLICT, "idempotency_key_reused"),
            ApiError::RunNotFound(_) => (StatusCode::NOT_FOUND, "run_not_found"),
            ApiError::RunClosed(_) => (StatusCode::CONFLICT, "run_closed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        }
    }

    /// The body clients get.
    pub fn body(&self) -> ErrorBody {
        let (_, code) = self.status_and_code();
        ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        }
    }
}

impl From<crate::runs::RunError> for ApiError {
    fn from(e: crate::runs::RunError) -> Self {
        use crate::runs::RunError;
        match e {
            RunError::Invalid(m) => ApiError::InvalidRequest(m),
            RunError::NotFound(_) => ApiError::RunNotFound(e.to_string()),
            RunError::Closed { .. } => ApiError::RunClosed(e.to_string()),
            RunError::Store(s) => ApiError::Unavailable(s),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(code, error = ?self, "request failed");
        } else {
            tracing::debug!(code, error = %self, "request refused");
        }
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
