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
use crate::http::mcp::{router, McpOptions, McpState};
use crate::ports::{ExecutionLedger, Upstreams};

/// What the gateway adds to the authorize function's ports.
pub struct GatewayPorts {
    /// The authorization service's ports.
    pub authorize: AuthorizePorts,
    /// Connections to upstream servers.
    pub upstreams: Arc<dyn Upstreams>,
    /// Exactly-once keys.
    pub ledger: Arc<dyn ExecutionLedger>,
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
        })
    }
}

/// The gateway function's router.
pub async fn app(config: &GatewayConfig, ports: GatewayPorts) -> Result<Router, VersionError> {
    let a = assemble(&config.authorize, ports.authorize).await?;
    let mcp = router(McpState {
        gateway: Arc::new(Gateway::new(a.service, ports.upstreams, ports.ledger)),
        agents: Arc::new(IamAgentAuth::new(a.engine)),
        users: a.users,
        options: McpOptions {
            sessions: false,
            json_response: true,
            authorization_servers: config.authorization_servers.clone(),
            // API Gateway answers only for the API's own host names.
            allowed_hosts: Vec::new(),
        },
    });
    Ok(refreshed(mcp, a.refresher))
}
