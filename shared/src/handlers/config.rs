//! Each function's configuration, read once from its environment.
//!
//! The template sets these variables; a missing or invalid one stops the
//! function at start-up with a message naming it, never in a handler.

use std::time::Duration;

use crate::auth::ClaimMapping;
use crate::model::Environment;

/// A variable is missing or invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The variable is not set or empty.
    #[error("environment variable `{0}` is not set")]
    Missing(&'static str),
    /// The variable's value is not usable.
    #[error("environment variable `{name}` is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

fn var(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))
}

fn var_or(name: &'static str, default: &str) -> String {
    var(name).unwrap_or_else(|_| default.to_owned())
}

fn environment() -> Result<Environment, ConfigError> {
    var("ENVIRONMENT")?
        .parse()
        .map_err(
            |e: crate::model::UnknownEnvironmentError| ConfigError::Invalid {
                name: "ENVIRONMENT",
                reason: e.to_string(),
            },
        )
}

/// The authorize function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeConfig {
    /// `ENVIRONMENT`: where this stack runs.
    pub environment: Environment,
    /// `POLICY_TABLE`: the policy versions table.
    pub policy_table: String,
    /// `DECISIONS_TABLE`: the decision log table.
    pub decisions_table: String,
    /// `APPROVALS_TABLE`: where agents' approvals are read.
    pub approvals_table: String,
    /// `COUNTERS_TABLE`: the counters of rate limits, runs and budgets.
    pub counters_table: String,
    /// `APPROVAL_STATE_MACHINE_ARN`: the approval workflow.
    pub state_machine_arn: String,
    /// `OIDC_ISSUER`: the issuer of on-behalf-of tokens.
    pub oidc_issuer: String,
    /// `OIDC_AUDIENCE`: their audience.
    pub oidc_audience: String,
    /// `OIDC_JWKS_URL`: the issuer's key set.
    pub oidc_jwks_url: String,
    /// The claims read for the user's id, roles and organization:
    /// `OIDC_USER_ID_CLAIM` (default `sub`), `OIDC_ROLES_CLAIM` (default
    /// `roles`), `OIDC_ORG_CLAIM` (default `org`).
    pub oidc_claims: ClaimMapping,
    /// `POLICY_REFRESH_SECONDS`: how often the active version is checked (default 5).
    pub policy_refresh: Duration,
    /// `POLICY_MAX_STALENESS_SECONDS`: how long the served version may go
    /// unconfirmed as the active one before every call is denied with
    /// `policy_stale` (default 60; more than the refresh interval).
    pub policy_max_staleness: Duration,
}

impl AuthorizeConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let refresh = var_or("POLICY_REFRESH_SECONDS", "5");
        let refresh: u64 = refresh
            .parse()
            .ok()
            .filter(|s| (1..=300).contains(s))
            .ok_or(ConfigError::Invalid {
                name: "POLICY_REFRESH_SECONDS",
                reason: format!("`{refresh}` is not a number of seconds from 1 to 300"),
            })?;
        let staleness = var_or("POLICY_MAX_STALENESS_SECONDS", "60");
        let staleness: u64 = staleness
            .parse()
            .ok()
            .filter(|s| *s > refresh && *s <= 3600)
            .ok_or(ConfigError::Invalid {
                name: "POLICY_MAX_STALENESS_SECONDS",
                reason: format!(
                    "`{staleness}` is not a number of seconds above POLICY_REFRESH_SECONDS ({refresh}) and at most 3600"
                ),
            })?;
        Ok(Self {
            environment: environment()?,
            policy_table: var("POLICY_TABLE")?,
            decisions_table: var("DECISIONS_TABLE")?,
            approvals_table: var("APPROVALS_TABLE")?,
            counters_table: var("COUNTERS_TABLE")?,
            state_machine_arn: var("APPROVAL_STATE_MACHINE_ARN")?,
            oidc_issuer: var("OIDC_ISSUER")?,
            oidc_audience: var("OIDC_AUDIENCE")?,
            oidc_jwks_url: var("OIDC_JWKS_URL")?,
            oidc_claims: ClaimMapping {
                user_id: var_or("OIDC_USER_ID_CLAIM", ClaimMapping::DEFAULT_USER_ID),
                roles: var_or("OIDC_ROLES_CLAIM", ClaimMapping::DEFAULT_ROLES),
                organization: var_or("OIDC_ORG_CLAIM", ClaimMapping::DEFAULT_ORGANIZATION),
            },
            policy_refresh: Duration::from_secs(refresh),
            policy_max_staleness: Duration::from_secs(staleness),
        })
    }
}

/// The gateway function's configuration: the authorize function's, and
/// where upstream credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Everything the authorization service needs.
    pub authorize: AuthorizeConfig,
    /// `UPSTREAM_SECRETS_PREFIX`: a registry credential `NAME` is the
    /// Secrets Manager secret `PREFIX/NAME`.
    pub secrets_prefix: String,
    /// `AUTHORIZATION_SERVERS`: comma-separated issuers MCP clients may get
    /// tokens from, published in the protected-resource metadata (optional).
    pub authorization_servers: Vec<String>,
    /// OAuth access tokens for MCP clients at `/oauth/mcp`, when
    /// `AGENT_TOKEN_ISSUER` is set.
    pub agent_tokens: Option<AgentTokenConfig>,
}

/// The issuer of the access tokens MCP clients present at `/oauth/mcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenConfig {
    /// `AGENT_TOKEN_ISSUER`: the issuer (`iss`).
    pub issuer: String,
    /// `AGENT_TOKEN_AUDIENCE`: the audience the tokens carry.
    pub audience: String,
    /// `AGENT_TOKEN_JWKS_URL`: the issuer's key set.
    pub jwks_url: String,
    /// `AGENT_TOKEN_CLIENT_CLAIM`: the claim naming the client (default
    /// `client_id`), which registry agents list in `oauth_clients`.
    pub client_claim: String,
}

impl GatewayConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            authorize: AuthorizeConfig::from_env()?,
            secrets_prefix: var("UPSTREAM_SECRETS_PREFIX")?,
            authorization_servers: var_or("AUTHORIZATION_SERVERS", "")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            agent_tokens: match var("AGENT_TOKEN_ISSUER") {
                Err(_) => None,
                Ok(issuer) => Some(AgentTokenConfig {
                    issuer,
                    audience: var("AGENT_TOKEN_AUDIENCE")?,
                    jwks_url: var("AGENT_TOKEN_JWKS_URL")?,
                    client_claim: var_or("AGENT_TOKEN_CLIENT_CLAIM", "client_id"),
                }),
            },
        })
    }
}

/// The decision-log function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLogConfig {
    /// `DECISIONS_TABLE`.
    pub decisions_table: String,
    /// `APPROVALS_TABLE`.
    pub approvals_table: String,
    /// `EVIDENCE_BUCKET`: the Object Lock bucket of audit evidence.
    pub evidence_bucket: String,
    /// `AUDIT_CHAIN_TABLE`: the heads of the audit trail's chains.
    pub audit_chain_table: String,
    /// `AUDIT_KEY_SECRET`: the Secrets Manager secret the audit key (which
    /// signs the digests in the evidence bucket) is derived from.
    pub audit_key_secret: String,
}

impl DecisionLogConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            decisions_table: var("DECISIONS_TABLE")?,
            approvals_table: var("APPROVALS_TABLE")?,
            evidence_bucket: var("EVIDENCE_BUCKET")?,
            audit_chain_table: var("AUDIT_CHAIN_TABLE")?,
            audit_key_secret: var("AUDIT_KEY_SECRET")?,
        })
    }
}

/// The anomaly-watch function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyWatchConfig {
    /// `POLICY_TABLE`: the active version's registry, and the kill switch.
    pub policy_table: String,
    /// `DECISIONS_TABLE`: where alerts are recorded as control events.
    pub decisions_table: String,
    /// `COUNTERS_TABLE`: the agents' call counters.
    pub counters_table: String,
    /// `METRICS_NAMESPACE` (default `AgentGovernance`).
    pub namespace: String,
}

impl AnomalyWatchConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            policy_table: var("POLICY_TABLE")?,
            decisions_table: var("DECISIONS_TABLE")?,
            counters_table: var("COUNTERS_TABLE")?,
            namespace: var_or("METRICS_NAMESPACE", crate::metrics::NAMESPACE),
        })
    }
}

/// The denial-metrics function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialMetricsConfig {
    /// `METRICS_NAMESPACE` (default `AgentGovernance`).
    pub namespace: String,
}

impl DenialMetricsConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            namespace: var_or("METRICS_NAMESPACE", crate::metrics::NAMESPACE),
        })
    }
}

/// The approval-callback function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalCallbackConfig {
    /// `APPROVALS_TABLE`.
    pub approvals_table: String,
    /// `DECISIONS_TABLE`: where the notification is recorded.
    pub decisions_table: String,
    /// `APPROVAL_TOPIC_ARN`: where approvers are notified.
    pub topic_arn: String,
    /// `APPROVER_OIDC_ISSUER`: the issuer of approvers' tokens.
    pub approver_issuer: String,
    /// `APPROVER_OIDC_AUDIENCE`: their audience.
    pub approver_audience: String,
    /// `APPROVER_OIDC_JWKS_URL`: the issuer's key set.
    pub approver_jwks_url: String,
    /// `APPROVER_GROUPS_CLAIM`: the claim listing an approver's groups (default `groups`).
    pub approver_groups_claim: String,
    /// `POLICY_VERSIONS_TABLE`: where reviewed policy changes wait; without
    /// it the function serves no change pages.
    pub policy_versions_table: Option<String>,
    /// `TOOL_POLICY_TABLE`: rewritten to an approved change's grants.
    pub tool_policy_table: Option<String>,
    /// Approvers' sign-in with the approvers' OIDC issuer, when
    /// `SIGNIN_CLIENT_ID` is set.
    pub signin: Option<SignInEnv>,
}

/// How approvers sign in on AWS (the issuer and groups claim are the
/// approver token's: `APPROVER_OIDC_ISSUER`, `APPROVER_GROUPS_CLAIM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInEnv {
    /// `SIGNIN_CLIENT_ID`: the app client at the provider.
    pub client_id: String,
    /// `SIGNIN_CLIENT_SECRET_ID`: the Secrets Manager secret holding its
    /// client secret (a confidential client); absent: a public client.
    pub client_secret_id: Option<String>,
    /// `SIGNIN_SCOPES`: scopes besides `openid`, space-separated.
    pub scopes: Vec<String>,
    /// `SIGNIN_USER_CLAIM`: the claim naming the person (default `sub`).
    pub user_claim: String,
    /// `PUBLIC_URL`: the API's URL, which the redirect URI is under.
    pub public_url: String,
    /// `SESSION_SECRET_ID`: the Secrets Manager secret that signs sessions.
    pub session_secret_id: String,
    /// `SESSION_TTL_SECONDS`: the longest a session lasts (default 28800).
    pub session_ttl_seconds: u64,
}

impl SignInEnv {
    fn from_env() -> Result<Option<Self>, ConfigError> {
        let Some(client_id) = std::env::var("SIGNIN_CLIENT_ID")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let ttl = var_or("SESSION_TTL_SECONDS", "28800");
        Ok(Some(Self {
            client_id,
            client_secret_id: std::env::var("SIGNIN_CLIENT_SECRET_ID")
                .ok()
                .filter(|v| !v.is_empty()),
            scopes: var_or("SIGNIN_SCOPES", "")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            user_claim: var_or("SIGNIN_USER_CLAIM", "sub"),
            public_url: var("PUBLIC_URL")?,
            session_secret_id: var("SESSION_SECRET_ID")?,
            session_ttl_seconds: ttl.parse().map_err(|_| ConfigError::Invalid {
                name: "SESSION_TTL_SECONDS",
                reason: format!("`{ttl}` is not a number of seconds"),
            })?,
        }))
    }
}

impl ApprovalCallbackConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            approvals_table: var("APPROVALS_TABLE")?,
            decisions_table: var("DECISIONS_TABLE")?,
            topic_arn: var("APPROVAL_TOPIC_ARN")?,
            approver_issuer: var("APPROVER_OIDC_ISSUER")?,
            approver_audience: var("APPROVER_OIDC_AUDIENCE")?,
            approver_jwks_url: var("APPROVER_OIDC_JWKS_URL")?,
            approver_groups_claim: var_or("APPROVER_GROUPS_CLAIM", "groups"),
            policy_versions_table: std::env::var("POLICY_VERSIONS_TABLE")
                .ok()
                .filter(|v| !v.is_empty()),
            tool_policy_table: std::env::var("TOOL_POLICY_TABLE")
                .ok()
                .filter(|v| !v.is_empty()),
            signin: SignInEnv::from_env()?,
        })
    }
}
