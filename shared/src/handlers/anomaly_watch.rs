//! The anomaly-watch function: on a schedule (every minute), every
//! registered agent version's call rate this hour against its 7-day hourly
//! average (see [`crate::anomaly`]). Each run publishes `CallRatePercent`
//! per agent version and, for each alert it raises, `AnomalyDetected`; the
//! alert itself is a control event in the decision table, which the audit
//! trail chains, and with `anomaly.auto_disable` the kill switch disables
//! the version. A failure fails the invocation; the next run retries.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{ErrorType, HandlerError};
use crate::anomaly::{watch, Alerting, ControlLog};
use crate::ports::{Clock, Counters, KillSwitchStore, MetricSink, PolicyStore, StoreError};

/// The anomaly-watch function.
pub struct AnomalyWatchHandler {
    /// The active policy version (the registry and its thresholds).
    pub policies: Arc<dyn PolicyStore>,
    /// The kill switch, for versions that ask to be disabled on an alert.
    pub killswitch: Arc<dyn KillSwitchStore>,
    /// The call counters.
    pub counters: Arc<dyn Counters>,
    /// Where alerts are recorded.
    pub control: Arc<dyn ControlLog>,
    /// Where data points go.
    pub sink: Arc<dyn MetricSink>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

fn store_error(e: &StoreError) -> HandlerError {
    HandlerError::new(ErrorType::StoreUnavailable, e.to_string())
}

impl AnomalyWatchHandler {
    /// The handler on DynamoDB and CloudWatch.
    #[cfg(feature = "aws")]
    pub fn aws(config: &super::config::AnomalyWatchConfig, sdk: &aws_config::SdkConfig) -> Self {
        use crate::adapters::aws::dynamodb::{
            DynamoCounters, DynamoDecisionLog, DynamoPolicyStore,
        };
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let policies = Arc::new(
            DynamoPolicyStore::new(dynamodb.clone(), &config.policy_table)
                .with_decisions(&config.decisions_table),
        );
        Self {
            policies: policies.clone(),
            killswitch: policies,
            counters: Arc::new(DynamoCounters::new(
                dynamodb.clone(),
                &config.counters_table,
            )),
            control: Arc::new(DynamoDecisionLog::new(dynamodb, &config.decisions_table)),
            sink: Arc::new(crate::adapters::aws::cloudwatch::CloudWatchMetrics::new(
                aws_sdk_cloudwatch::Client::new(sdk),
                &config.namespace,
            )),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    /// Runs one watch; the event (a schedule's) carries nothing it needs.
    pub async fn handle(&self, _event: Value) -> Result<Value, HandlerError> {
        let Some(active) = self.policies.active().await.map_err(|e| store_error(&e))? else {
            return Ok(json!({"agents": 0, "alerts": []}));
        };
        let (stored, bundle) = self
            .policies
            .version(&active.version_id)
            .await
            .map_err(|e| store_error(&e))?;
        let engine = crate::policy::load_engine(
            &bundle,
            crate::policy::PolicyVersionRef {
                id: stored.id,
                content_hash: stored.content_hash,
            },
        )
        .map_err(|e| HandlerError::new(ErrorType::StoreUnavailable, e.to_string()))?;
        let version = engine.version();
        let found = watch(
            &Alerting {
                counters: self.counters.as_ref(),
                control: self.control.as_ref(),
                killswitch: self.killswitch.as_ref(),
            },
            engine.registry(),
            (&version.id, &version.content_hash),
            self.clock.now(),
        )
        .await
        .map_err(|e| store_error(&e))?;
        super::publish(self.sink.as_ref(), &found.datums()).await?;
        tracing::info!(
            target: "anomaly_watch",
            agents = found.rates.len(),
            alerts = found.raised.len(),
            "call rates watched"
        );
        Ok(json!({
            "agents": found.rates.len(),
            "alerts": found.raised.iter().map(|r| json!({
                "agent_id": r.agent_id, "version": r.version, "rate_percent": r.rate_percent,
            })).collect::<Vec<_>>(),
        }))
    }
}
