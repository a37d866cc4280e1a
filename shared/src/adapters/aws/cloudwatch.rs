//! Metrics in CloudWatch: data points summed per series and sent in as few
//! `PutMetricData` calls as the API allows.

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum as CwDatum, StandardUnit};
use aws_sdk_cloudwatch::Client;

use super::describe;
use crate::metrics::{aggregate, MetricDatum, Unit};
use crate::ports::{MetricSink, StoreError};

/// Data points per `PutMetricData` call (the API takes up to 1,000).
const BATCH: usize = 500;

/// Publishes data points into one namespace.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: Client,
    namespace: String,
}

impl CloudWatchMetrics {
    /// Publishes into `namespace`.
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }
}

#[async_trait]
impl MetricSink for CloudWatchMetrics {
    async fn put(&self, datums: &[MetricDatum]) -> Result<(), StoreError> {
        let series: Vec<CwDatum> = aggregate(datums.iter().cloned())
            .into_iter()
            .map(|d| {
                CwDatum::builder()
                    .metric_name(d.name)
                    .set_dimensions(Some(
                        d.dimensions
                            .into_iter()
                            .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                            .collect(),
                    ))
                    .unit(match d.unit {
                        Unit::Count => StandardUnit::Count,
                        Unit::Microseconds => StandardUnit::Microseconds,
                        Unit::Milliseconds => StandardUnit::Milliseconds,
                        Unit::Percent => StandardUnit::Percent,
                    })
                    .value(d.value)
                    .build()
            })
            .collect();
        for batch in series.chunks(BATCH) {
            self.client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        }
        Ok(())
    }
}
