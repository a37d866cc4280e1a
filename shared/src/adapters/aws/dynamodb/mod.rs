//! DynamoDB adapters. Each table is named by the template; items are plain
//! attributes plus, where a whole record is kept, its JSON in `record`.
//!
//! | table | keys | holds |
//! |---|---|---|
//! | policy versions | `pk`, `sk` | immutable versions in chunks, the active pointer, activation history, the kill switch |
//! | tool policy | `agent_id`, `tool_id` | the active version's grants (the seed's table) |
//! | decisions | `pk` | decision records and idempotency keys |
//! | approvals | `approval_id` | pending approvals, their task tokens and outcomes |
//! | counters | `pk`, `window_start` | rate limits, runs and budgets (see [`crate::limits`]); the gateway's exactly-once keys (`exec#…`) |

mod approvals;
mod changes;
mod counters;
mod decisions;
mod executions;
mod killswitch;
mod policies;
mod tool_policy;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

pub use approvals::DynamoApprovals;
pub use changes::DynamoChanges;
pub use counters::DynamoCounters;
pub use decisions::DynamoDecisionLog;
pub use executions::DynamoExecutionLedger;
pub use policies::DynamoPolicyStore;
pub use tool_policy::sync_tool_policy;

use crate::ports::StoreError;

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A string attribute, or `Corrupt`.
fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("item lacks string attribute `{name}`")))
}

fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn unavailable<E: std::error::Error>(e: &E) -> StoreError {
    StoreError::Unavailable(super::describe(e))
}

/// Puts an item that must not exist yet: history is written once and never
/// replaced.
async fn put_once(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    item: Item,
) -> Result<(), StoreError> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(())
}

/// Whether a request failed only because its condition did not hold.
fn is_condition_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}
