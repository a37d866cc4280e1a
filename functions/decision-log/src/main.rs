//! The decision-log Lambda: the decision table's stream and the approval
//! state machine's recording steps.

use std::sync::Arc;

use governance::adapters::aws::evidence::audit_key;
use governance::adapters::aws::sdk_config;
use governance::handlers::config::DecisionLogConfig;
use governance::handlers::decision_log::DecisionLogHandler;
use governance::handlers::init_tracing;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = DecisionLogConfig::from_env()?;
    let sdk = sdk_config(None).await;
    let key = audit_key(&sdk, &config.audit_key_secret).await?;
    let handler = Arc::new(DecisionLogHandler::aws(&config, &sdk, key));
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event.payload).await }
    }))
    .await
}
