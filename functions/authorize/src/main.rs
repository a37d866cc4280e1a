//! The authorize Lambda: `POST /v1/authorize` and `GET /v1/decisions/{id}`
//! behind API Gateway with IAM authorization.

use governance::adapters::aws::sdk_config;
use governance::handlers::authorize::{app, AuthorizePorts};
use governance::handlers::config::AuthorizeConfig;
use governance::handlers::init_tracing;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let config = AuthorizeConfig::from_env()?;
    let sdk = sdk_config(None).await;
    let router = app(&config, AuthorizePorts::aws(&config, &sdk)?).await?;
    lambda_http::run(router).await
}
