//! The anomaly-watch Lambda: on a schedule, every agent version's call rate
//! against its 7-day average; alerts as metrics and control events.

use std::sync::Arc;

use governance::adapters::aws::sdk_config;
use governance::handlers::anomaly_watch::AnomalyWatchHandler;
use governance::handlers::config::AnomalyWatchConfig;
use governance::handlers::init_tracing;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = AnomalyWatchConfig::from_env()?;
    let handler = Arc::new(AnomalyWatchHandler::aws(&config, &sdk_config(None).await));
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event.payload).await }
    }))
    .await
}
