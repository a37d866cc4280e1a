//! What an agent asks: the verified parties and the call it wants to make.

use serde::{Deserialize, Serialize};

use super::Risk;

/// The user an agent acts for, taken only from a verified identity token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserContext {
    /// The user's id (`sub`).
    pub id: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The user's organization, when the token names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
}

/// The body of `POST /v1/authorize`. The agent is not in it: the agent is
/// whoever the transport authenticated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The tool the agent wants to call.
    pub tool_id: String,
    /// The risk the agent declares for this call; the tool's own risk when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_risk: Option<Risk>,
    /// The call's arguments, checked against the tool's declared arguments.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
    /// The agent's session, for correlation and per-session limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The run (one task of the agent) this call belongs to: run limits
    /// (`max_calls`, `max_seconds`, `max_cost_usd`, `max_tokens`) count per
    /// run, and usage is reported against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Repeating a request with the same key returns the first decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The agent's stated reasoning or a trace reference, kept with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// The approval a human gave for exactly this call: presenting it uses
    /// its single-use grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}
