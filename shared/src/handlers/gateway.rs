//! The gateway function: the MCP endpoint (`/mcp`) behind API Gateway.
//!
//! The same authorization service as the authorize function, on the call
//! path: the agent is the IAM principal API Gateway verified (never a
//! header it writes), the user its `X-On-Behalf-Of` token, and allowed calls
//! are forwarded to the upstream endpoints of this stack's environment with
//! credentials from Secrets Manager. Requests are served statelessly with
//! JSON answers: API Gateway cannot stream, and consecutive requests of one
//! client may reach different instances, so no session is kept (clients of
//! the `initialize` revisions are answered without an `Mcp-Session-Id`, as
//! the specification allows). Exactly-once keys live in the counters table,
//! so every instance agrees on which duplicate runs.

use std::sync::Arc;

use axum::Router;

use super::authorize::{assemble, refreshed, AuthorizePorts, IamAgentAuth, VersionError};
use super::config::GatewayConfig;
use crate::adapters::aws::dynamodb::DynamoExecutionLedger;
use crate::adapters::aws::secrets::SecretsManagerSecrets;
use crate::adapters::mcp::McpUpstreams;
use crate::gateway::Gateway;
use crate::http::mcp::{router, McpOptions, McpState, OAuthAgents};
use crate::ports::{ExecutionLedger, Upstreams};

/// What the gateway adds to the authorize function's ports.
pub struct GatewayPorts {
    /// The authorization service's ports.
    pub authorize: AuthorizePorts,
    /// Connections to upstream servers.
    pub upstreams: Arc<dyn Upstreams>,
    /// Exactly-once keys.
    pub ledger: Arc<dyn ExecutionLedger>,
    /// Verifies MCP clients' OAuth access tokens (the client is the
    /// "user" it returns), when an issuer is configured.
    pub agent_tokens: Option<Arc<dyn crate::auth::UserVerifier>>,
}

impl GatewayPorts {
    /// The AWS adapters, from one SDK configuration.
    pub fn aws(
        config: &GatewayConfig,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, crate::auth::TokenError> {
        let secrets = SecretsManagerSecrets::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            &config.secrets_prefix,
        );
        Ok(Self {
            authorize: AuthorizePorts::aws(&config.authorize, sdk)?,
            // A Lambda function starts no child processes.
            upstreams: Arc::new(McpUpstreams::new(Arc::new(secrets), false)),
            ledger: Arc::new(DynamoExecutionLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.authorize.counters_table,
            )),
            agent_tokens: match &config.agent_tokens {
                None => None,
                Some(t) => Some(Arc::new(
                    crate::auth::OidcVerifier::new(&t.jwks_url, &t.issuer, &t.audience, "roles")?
                        .with_claims(crate::auth::ClaimMapping {
                            user_id: t.client_claim.clone(),
                            roles: crate::auth::ClaimMapping::DEFAULT_ROLES.to_owned(),
                            organization: crate::auth::ClaimMapping::DEFAULT_ORGANIZATION
                                .to_owned(),
                        }),
                )),
            },
        })
    }
}

/// The gateway function's router.
pub async fn app(config: &GatewayConfig, ports: GatewayPorts) -> Result<Router, VersionError> {
    let a = assemble(&config.authorize, ports.authorize).await?;
    let oauth = ports.agent_tokens.map(|verifier| OAuthAgents {
        verifier,
        engine: Arc::clone(&a.engine),
    });
    let mut authorization_servers = config.authorization_servers.clone();
    if let Some(t) = &config.agent_tokens {
        if !authorization_servers.contains(&t.issuer) {
            authorization_servers.push(t.issuer.clone());
        }
    }
    let mcp = router(McpState {
        gateway: Arc::new(Gateway::new(a.service, ports.upstreams, ports.ledger)),
        oauth,
        agents: Arc::new(IamAgentAuth::new(a.engine)),
        users: a.users,
        options: McpOptions {
            sessions: false,
            json_response: true,
            authorization_servers,
            // API Gateway answers only for the API's own host names.
            allowed_hosts: Vec::new(),
        },
    });
    Ok(refreshed(mcp, a.refresher))
}
