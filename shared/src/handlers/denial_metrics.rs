//! The denial-metrics function: denials and risky attempts become
//! CloudWatch data points.
//!
//! Decisions arrive in batches from the decision table's stream (the
//! template filters it to denials made by authorize); approvals that end in
//! a denial arrive one at a time from the approval state machine. Each
//! invocation sends its data points in as few `PutMetricData` calls as
//! possible. A failure fails the invocation, so the stream or the state
//! machine retries it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::stream::{decisions, is_stream_event};
use super::{ErrorType, HandlerError};
use crate::metrics::datums;
use crate::model::DecisionRecord;
use crate::ports::MetricSink;

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum StepEvent {
    /// An approval ended in a denial.
    ApprovalDenied { record: Box<DecisionRecord> },
}

/// The denial-metrics function.
pub struct DenialMetricsHandler {
    /// Where data points go.
    pub sink: Arc<dyn MetricSink>,
}

impl DenialMetricsHandler {
    /// The handler on CloudWatch.
    #[cfg(feature = "aws")]
    pub fn aws(config: &super::config::DenialMetricsConfig, sdk: &aws_config::SdkConfig) -> Self {
        Self {
            sink: Arc::new(crate::adapters::aws::cloudwatch::CloudWatchMetrics::new(
                aws_sdk_cloudwatch::Client::new(sdk),
                &config.namespace,
            )),
        }
    }

    /// Handles a stream batch or a state machine step.
    pub async fn handle(&self, event: Value) -> Result<Value, HandlerError> {
        let records: Vec<DecisionRecord> = if is_stream_event(&event) {
            decisions(event)?
                .into_iter()
                // Approval outcomes are counted by the state machine that
                // closes them, so they are not counted twice.
                .filter(|d| d.kind == "decision")
                .map(|d| d.record)
                .collect()
        } else {
            let StepEvent::ApprovalDenied { record } = serde_json::from_value(event)
                .map_err(|e| HandlerError::invalid(format!("not a metrics event: {e}")))?;
            vec![*record]
        };
        let points: Vec<_> = records.iter().flat_map(datums).collect();
        if !points.is_empty() {
            self.sink
                .put(&points)
                .await
                .map_err(|e| HandlerError::new(ErrorType::MetricsUnavailable, e.to_string()))?;
        }
        tracing::info!(
            target: "denial_metrics",
            decisions = records.len(),
            data_points = points.len(),
            "metrics published"
        );
        Ok(json!({ "batchItemFailures": [], "data_points": points.len() }))
    }
}
