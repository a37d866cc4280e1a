//! The gateway's exactly-once keys on DynamoDB, in the counters table under
//! `pk = exec#KEY`, `window_start = 0`: a claim is one conditional
//! `PutItem`, so of any number of concurrent duplicates, on any number of
//! function instances, exactly one finds the key free. DynamoDB's TTL
//! removes keys a day after they lapse.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

use super::{is_condition_failure, n, opt_s, s, unavailable, Item};
use crate::ports::{Claimed, ExecutionLedger, Held, StoreError};

/// Exactly-once keys in one DynamoDB table (the counters table).
#[derive(Debug, Clone)]
pub struct DynamoExecutionLedger {
    client: Client,
    table: String,
}

impl DynamoExecutionLedger {
    /// The keys in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(&self, key: &str) -> (String, aws_sdk_dynamodb::types::AttributeValue) {
        (format!("exec#{key}"), n(0))
    }
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

#[async_trait]
impl ExecutionLedger for DynamoExecutionLedger {
    async fn claim(
        &self,
        key: &str,
        attempt: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed, StoreError> {
        let (pk, sk) = self.key(key);
        let mut item = Item::new();
        item.insert("pk".into(), s(&pk));
        item.insert("window_start".into(), sk.clone());
        item.insert("attempt".into(), s(attempt));
        item.insert("claimed_at".into(), n(now));
        item.insert("expires_at".into(), n(lease_until));
        item.insert("ttl".into(), n(lease_until.saturating_add(86_400)));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match put {
            Ok(_) => return Ok(Claimed::Yours),
            Err(e) if is_condition_failure(&e) => {}
            Err(e) => return Err(unavailable(&e)),
        }
        let held = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("window_start", sk)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?
            .item
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "exactly-once key `{key}` is neither free nor held"
                ))
            })?;
        Ok(Claimed::Held(
            match (opt_s(&held, "decision_id"), opt_s(&held, "result")) {
                (Some(decision_id), Some(result)) => Held::Done {
                    decision_id,
                    result: serde_json::from_str(&result)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                },
                _ => Held::Running {
                    since: number(&held, "claimed_at").unwrap_or(now),
                },
            },
        ))
    }

    async fn complete(
        &self,
        key: &str,
        attempt: &str,
        decision_id: &str,
        result: &serde_json::Value,
        until: i64,
    ) -> Result<(), StoreError> {
        let (pk, sk) = self.key(key);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("window_start", sk)
            .update_expression("SET decision_id = :d, #r = :r, expires_at = :u, #t = :ttl")
            .condition_expression("attempt = :a")
            .expression_attribute_names("#r", "result")
            .expression_attribute_names("#t", "ttl")
            .expression_attribute_values(":d", s(decision_id))
            .expression_attribute_values(":r", s(result.to_string()))
            .expression_attribute_values(":u", n(until))
            .expression_attribute_values(":ttl", n(until.saturating_add(86_400)))
            .expression_attribute_values(":a", s(attempt))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::Unavailable(format!(
                "exactly-once key `{key}` is no longer held by this attempt (its lease lapsed)"
            ))),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn release(&self, key: &str, attempt: &str) -> Result<(), StoreError> {
        let (pk, sk) = self.key(key);
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("window_start", sk)
            .condition_expression("attempt = :a AND attribute_not_exists(#r)")
            .expression_attribute_names("#r", "result")
            .expression_attribute_values(":a", s(attempt))
            .send()
            .await;
        match delete {
            Ok(_) => Ok(()),
            // Held by a later attempt already: nothing of ours to give up.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(&e)),
        }
    }
}
