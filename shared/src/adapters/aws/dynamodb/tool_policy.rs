//! The seed's tool-policy table (`agent_id`, `tool_id`): one row per grant
//! of the active version, for people and tools that ask DynamoDB directly
//! which agent may call what. The authorize function never reads it: it
//! decides from the whole version it holds in memory.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

use super::{get_s, s, unavailable, Item};
use crate::model::Registry;
use crate::ports::StoreError;

/// DynamoDB's limit of requests per `BatchWriteItem`.
const BATCH: usize = 25;

/// Makes `table` hold exactly the grants of `registry`, stamped with `version_id`.
pub async fn sync_tool_policy(
    client: &Client,
    table: &str,
    registry: &Registry,
    version_id: &str,
) -> Result<(), StoreError> {
    let mut writes = Vec::new();
    let mut current = HashSet::new();
    for agent in &registry.agents {
        for grant in &agent.grants {
            let Some(tool) = registry.tools.iter().find(|t| t.id == grant.tool) else {
                continue;
            };
            current.insert((agent.id.clone(), tool.id.clone()));
            let mut item = Item::new();
            item.insert("agent_id".into(), s(&agent.id));
            item.insert("tool_id".into(), s(&tool.id));
            item.insert("risk_ceiling".into(), s(agent.ceiling_for(grant).as_str()));
            item.insert("tool_risk".into(), s(tool.risk.as_str()));
            item.insert("category".into(), s(tool.category.as_str()));
            item.insert(
                "requires_approval".into(),
                aws_sdk_dynamodb::types::AttributeValue::Bool(tool.requires_approval()),
            );
            item.insert("agent_status".into(), s(agent.status.as_str()));
            item.insert("policy_version".into(), s(version_id));
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| unavailable(&e))?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
    }
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .projection_expression("agent_id, tool_id")
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        for item in page.items.unwrap_or_default() {
            let key = (
                get_s(&item, "agent_id")?.to_owned(),
                get_s(&item, "tool_id")?.to_owned(),
            );
            if !current.contains(&key) {
                let delete = DeleteRequest::builder()
                    .key("agent_id", s(key.0))
                    .key("tool_id", s(key.1))
                    .build()
                    .map_err(|e| unavailable(&e))?;
                writes.push(WriteRequest::builder().delete_request(delete).build());
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    for batch in writes.chunks(BATCH) {
        let mut pending = batch.to_vec();
        // Unprocessed writes are retried; throttling is the usual cause.
        for attempt in 0..8u32 {
            let out = client
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(table))
                .unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "{} tool-policy rows were not written after retries",
                pending.len()
            )));
        }
    }
    Ok(())
}
