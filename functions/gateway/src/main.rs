//! The gateway Lambda: the MCP endpoint `/mcp` behind API Gateway with IAM
//! authorization.

use governance::adapters::aws::sdk_config;
use governance::handlers::config::GatewayConfig;
use governance::handlers::gateway::{app, GatewayPorts};
use governance::handlers::init_tracing;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let config = GatewayConfig::from_env()?;
    let sdk = sdk_config(None).await;
    let router = app(&config, GatewayPorts::aws(&config, &sdk)?).await?;
    lambda_http::run(router).await
}
