//! Approvals on DynamoDB: one item per approval, keyed by its random id.
//!
//! Every change of status is one conditional update from `pending`, so an
//! approval is decided once: a second click, or a click racing the timeout,
//! finds it closed. The task token of the waiting workflow step is kept only
//! here; no link, message or log line carries it.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use aws_sdk_dynamodb::Client;

use super::{corrupt, get_s, n, opt_s, s, unavailable, Item};
use crate::model::ApprovalStatus;
use crate::ports::{
    ApprovalItem, ApprovalRequest, ApprovalStore, Decided, HumanDecision, StoreError, TaskToken,
};

/// Closed approvals stay this long after they expire, then DynamoDB's TTL
/// removes them; the decision log keeps the evidence for good.
const KEEP_SECONDS: i64 = 90 * 86_400;

/// Approvals in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoApprovals {
    client: Client,
    table: String,
}

fn is_condition_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

fn status_from(text: &str) -> Result<ApprovalStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| corrupt(format!("unknown approval status `{text}`")))
}

fn item_from(item: &Item) -> Result<ApprovalItem, StoreError> {
    Ok(ApprovalItem {
        request: serde_json::from_str(get_s(item, "request")?).map_err(corrupt)?,
        status: status_from(get_s(item, "status")?)?,
        approver: opt_s(item, "approver"),
        comment: opt_s(item, "comment"),
        decided_at: opt_s(item, "decided_at"),
        task_token: opt_s(item, "task_token").map(TaskToken),
    })
}

impl DynamoApprovals {
    /// The approvals in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ApprovalStore for DynamoApprovals {
    async fn record_pending(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        let d = &request.decision;
        let expires = time::OffsetDateTime::parse(
            &request.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(corrupt)?;
        let mut item = Item::new();
        item.insert("approval_id".into(), s(&request.approval_id));
        item.insert("status".into(), s(ApprovalStatus::Pending.as_str()));
        item.insert("decision_id".into(), s(&d.decision_id));
        item.insert("agent_id".into(), s(&d.agent_id));
        item.insert("user_id".into(), s(&d.user_id));
        item.insert("tool_id".into(), s(&d.tool_id));
        if let Some(g) = &request.approver_group {
            item.insert("approver_group".into(), s(g));
        }
        item.insert("created_at".into(), s(&d.timestamp));
        item.insert("expires_at".into(), s(&request.expires_at));
        item.insert(
            "ttl".into(),
            n(expires.unix_timestamp().saturating_add(KEEP_SECONDS)),
        );
        item.insert(
            "request".into(),
            s(serde_json::to_string(request).map_err(corrupt)?),
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(approval_id)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            // A retried step: the approval is already recorded.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn attach_token(
        &self,
        approval_id: &str,
        token: &TaskToken,
    ) -> Result<ApprovalItem, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            .update_expression("SET task_token = :t")
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":t", s(&token.0))
            .expression_attribute_values(":pending", s(ApprovalStatus::Pending.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => item_from(&out.attributes.unwrap_or_default()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound(format!(
                "pending approval `{approval_id}`"
            ))),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn get(&self, approval_id: &str) -> Result<Option<ApprovalItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        out.item.as_ref().map(item_from).transpose()
    }

    async fn decide(
        &self,
        approval_id: &str,
        answer: &HumanDecision,
    ) -> Result<Decided, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            // RFC 3339 UTC timestamps of one format compare as strings.
            .condition_expression("#st = :pending AND expires_at > :at")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(ApprovalStatus::Pending.as_str()))
            .expression_attribute_values(":s", s(answer.status.as_str()))
            .expression_attribute_values(":by", s(&answer.approver))
            .expression_attribute_values(":at", s(&answer.decided_at))
            .return_values(ReturnValue::AllNew);
        update = match &answer.comment {
            Some(c) => update
                .update_expression("SET #st = :s, approver = :by, decided_at = :at, #c = :c")
                .expression_attribute_names("#c", "comment")
                .expression_attribute_values(":c", s(c)),
            None => update.update_expression("SET #st = :s, approver = :by, decided_at = :at"),
        };
        match update.send().await {
            Ok(out) => Ok(Decided::Recorded(
                item_from(&out.attributes.unwrap_or_default())?.task_token,
            )),
            Err(e) if is_condition_failure(&e) => match self.get(approval_id).await? {
                // Past its expiry, a pending approval is as good as expired:
                // the workflow is about to record it so.
                Some(item) if item.status == ApprovalStatus::Pending => {
                    Ok(Decided::AlreadyClosed(ApprovalStatus::Expired))
                }
                Some(item) => Ok(Decided::AlreadyClosed(item.status)),
                None => Ok(Decided::NotFound),
            },
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn close(&self, approval_id: &str, status: ApprovalStatus) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            .update_expression("SET #st = :s REMOVE task_token")
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":s", s(status.as_str()))
            .expression_attribute_values(":pending", s(ApprovalStatus::Pending.as_str()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(&e)),
        }
    }
}
