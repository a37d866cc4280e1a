//! The denial-metrics function: denials and risky attempts become
//! CloudWatch data points.
//!
//! Decisions and the records that close approvals arrive in batches from the
//! decision table's stream (the template's filter lets nothing else through);
//! approvals that end in a denial also arrive one at a time from the
//! approval state machine, for their `PolicyDenied`. Each
//! invocation sends its data points in as few `PutMetricData` calls as
//! possible. A failure fails the invocation, so the stream or the state
//! machine retries it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::stream::{decisions, is_stream_event};
use super::HandlerError;
use crate::metrics::{approval_datums, datums};
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
        let (records, points): (Vec<DecisionRecord>, Vec<_>) = if is_stream_event(&event) {
            let mut points = Vec::new();
            let mut records = Vec::new();
            for d in decisions(event)? {
                match d.kind.as_str() {
                    // An execution's datums are the gateway's upstream calls.
                    "decision" | "execution" => points.extend(datums(&d.record)),
                    // An approval's closing record counts its outcome only:
                    // a denial's PolicyDenied comes from the state machine
                    // step that closes it, so nothing is counted twice.
                    "approval" => points.extend(approval_datums(&d.record)),
                    _ => continue,
                }
                records.push(d.record);
            }
            (records, points)
        } else {
            let StepEvent::ApprovalDenied { record } = serde_json::from_value(event)
                .map_err(|e| HandlerError::invalid(format!("not a metrics event: {e}")))?;
            let points = datums(&record);
            (vec![*record], points)
        };
        super::publish(self.sink.as_ref(), &points).await?;
        tracing::info!(
            target: "denial_metrics",
            decisions = records.len(),
            data_points = points.len(),
            "metrics published"
        );
        Ok(json!({ "batchItemFailures": [], "data_points": points.len() }))
    }
}
