//! Windowed counters on DynamoDB: one atomic `ADD` per increment.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use aws_sdk_dynamodb::Client;

use super::{n, s, unavailable};
use crate::ports::{Counters, StoreError};

/// Windows are kept this long after they start, then DynamoDB's TTL removes them.
const KEEP_SECONDS: i64 = 8 * 86_400;

/// Counters in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoCounters {
    client: Client,
    table: String,
}

impl DynamoCounters {
    /// The counters in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl Counters for DynamoCounters {
    async fn increment(&self, key: &str, window_start: i64, by: u64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("window_start", n(window_start))
            .update_expression("ADD #c :by SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#c", "count")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":by", n(by))
            .expression_attribute_values(":ttl", n(window_start.saturating_add(KEEP_SECONDS)))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        out.attributes
            .as_ref()
            .and_then(|a| a.get("count"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("counter `{key}` has no count")))
    }
}
