//! The approval-callback Lambda: the state machine's notify step, and the
//! approver's pages behind API Gateway.

use std::sync::Arc;

use governance::adapters::aws::sdk_config;
use governance::handlers::approval_callback::ApprovalCallbackHandler;
use governance::handlers::config::ApprovalCallbackConfig;
use governance::handlers::init_tracing;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = ApprovalCallbackConfig::from_env()?;
    let handler = Arc::new(ApprovalCallbackHandler::aws(&config, &sdk_config(None).await).await?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event.payload, event.context).await }
    }))
    .await
}
