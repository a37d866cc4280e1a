//! The denial-metrics Lambda: denials from the decision table's stream and
//! from the approval state machine, as CloudWatch metrics.

use std::sync::Arc;

use governance::adapters::aws::sdk_config;
use governance::handlers::config::DenialMetricsConfig;
use governance::handlers::denial_metrics::DenialMetricsHandler;
use governance::handlers::init_tracing;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = DenialMetricsConfig::from_env()?;
    let handler = Arc::new(DenialMetricsHandler::aws(&config, &sdk_config(None).await));
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event.payload).await }
    }))
    .await
}
