//! Approvals on DynamoDB: one item per approval, keyed by its random id.
//!
//! Every change of status is one conditional update, so an approval is
//! decided once: a second click, or a click racing the timeout, finds it
//! closed. An outcome that settles an approval (granted, expired, failed)
//! is one transaction with its record in the decisions table. The task token of the waiting workflow step is kept
//! here; no link, message or log line carries it. Beside each approval, an
//! item keyed `review#KEY` points from the hash of the approver link's
//! review id to the approval.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{CancellationReason, Put, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::{corrupt, get_s, is_condition_failure, n, opt_s, s, unavailable, Item};
use crate::limits::Charge;
use crate::model::{ApprovalStatus, DecisionRecord};
use crate::ports::{
    ApprovalItem, ApprovalRequest, ApprovalStore, CallKey, Decided, GrantUse, HumanDecision,
    ReviewKey, Settled, StoreError, TaskToken,
};

/// Closed approvals stay this long after they expire, then DynamoDB's TTL
/// removes them; the decision log keeps the evidence for good.
const KEEP_SECONDS: i64 = 90 * 86_400;

/// Approvals in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoApprovals {
    client: Client,
    table: String,
    /// Where a used grant's allow is recorded, in the same transaction.
    decisions_table: Option<String>,
    /// Where a used grant's limit charges go, in the same transaction.
    counters_table: Option<String>,
}

fn call_pk(call: &CallKey) -> String {
    format!("call#{}", call.0)
}

fn review_pk(review: &ReviewKey) -> String {
    format!("review#{}", review.0)
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
        grant_used_at: opt_s(item, "grant_used_at"),
    })
}

impl DynamoApprovals {
    /// The approvals in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            decisions_table: None,
            counters_table: None,
        }
    }

    /// The same, able to settle approvals and use grants: their records go
    /// into `decisions_table`.
    pub fn with_decisions(mut self, decisions_table: impl Into<String>) -> Self {
        self.decisions_table = Some(decisions_table.into());
        self
    }

    /// The same, charging the limits of a used grant's call to the counters in `table`.
    #[must_use]
    pub fn with_counters(mut self, table: impl Into<String>) -> Self {
        self.counters_table = Some(table.into());
        self
    }
}

impl DynamoApprovals {
    /// Every approval `filter` admits (with `values` for its placeholders),
    /// read page by page. A Scan: the inbox is read by people, a page at a
    /// time, over a table that holds approvals for their lifetime only.
    async fn scan(
        &self,
        filter: &str,
        values: &[(&str, &str)],
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(format!("attribute_exists(#rq) AND ({filter})"))
                // `request` is one of DynamoDB's reserved words.
                .expression_attribute_names("#rq", "request")
                .set_exclusive_start_key(start);
            // DynamoDB refuses a name placeholder the expression does not use.
            if filter.contains("#st") {
                scan = scan.expression_attribute_names("#st", "status");
            }
            for (k, v) in values {
                scan = scan.expression_attribute_values(*k, s(*v));
            }
            let page = scan.send().await.map_err(|e| unavailable(&e))?;
            for item in page.items.unwrap_or_default() {
                out.push(item_from(&item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl crate::ports::ApprovalInbox for DynamoApprovals {
    async fn pending_for(
        &self,
        groups: &[String],
        limit: usize,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        let mut items: Vec<ApprovalItem> = self
            .scan(
                "#st = :pending",
                &[(":pending", ApprovalStatus::Pending.as_str())],
            )
            .await?
            .into_iter()
            .filter(|i| {
                i.request
                    .approver_group
                    .as_ref()
                    .is_some_and(|g| groups.contains(g))
            })
            .collect();
        items.sort_by(|a, b| {
            b.request
                .decision
                .timestamp
                .cmp(&a.request.decision.timestamp)
        });
        items.truncate(limit);
        Ok(items)
    }

    async fn answered_by(
        &self,
        approver: &str,
        limit: usize,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        let mut items = self.scan("approver = :a", &[(":a", approver)]).await?;
        items.sort_by(|a, b| b.decided_at.cmp(&a.decided_at));
        items.truncate(limit);
        Ok(items)
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
        // What a grant is bound to, for the conditional write that uses it.
        item.insert("arguments_hash".into(), s(&d.arguments_hash));
        item.insert("policy_version".into(), s(&d.policy_version));
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
            Ok(_) => {}
            // A retried step: the approval is already recorded.
            Err(e) if is_condition_failure(&e) => {}
            Err(e) => return Err(unavailable(&e)),
        }
        // The newest approval of this exact call, for the gateway whose
        // clients repeat the call instead of naming the approval.
        let mut pointer = Item::new();
        pointer.insert("approval_id".into(), s(call_pk(&CallKey::of(d))));
        pointer.insert("target".into(), s(&request.approval_id));
        pointer.insert(
            "ttl".into(),
            n(expires.unix_timestamp().saturating_add(KEEP_SECONDS)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(pointer))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    async fn open_for_call(&self, call: &CallKey) -> Result<Option<ApprovalItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("approval_id", s(call_pk(call)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(target) = out.item.as_ref().map(|i| get_s(i, "target")).transpose()? else {
            return Ok(None);
        };
        Ok(self.get(target).await?.filter(|item| match item.status {
            ApprovalStatus::Pending | ApprovalStatus::Approved => true,
            ApprovalStatus::Granted => item.grant_used_at.is_none(),
            _ => false,
        }))
    }

    async fn attach_token(
        &self,
        approval_id: &str,
        token: &TaskToken,
        review: &ReviewKey,
    ) -> Result<ApprovalItem, StoreError> {
        let approval = self
            .get(approval_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("approval `{approval_id}`")))?;
        let expires = time::OffsetDateTime::parse(
            &approval.request.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(corrupt)?;
        let update = Update::builder()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            .update_expression("SET task_token = :t, review_key = :r")
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":t", s(&token.0))
            .expression_attribute_values(":r", s(&review.0))
            .expression_attribute_values(":pending", s(ApprovalStatus::Pending.as_str()))
            .build()
            .map_err(|e| unavailable(&e))?;
        let mut pointer = Item::new();
        pointer.insert("approval_id".into(), s(review_pk(review)));
        pointer.insert("target".into(), s(approval_id));
        pointer.insert(
            "ttl".into(),
            n(expires.unix_timestamp().saturating_add(KEEP_SECONDS)),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(pointer))
            .condition_expression("attribute_not_exists(approval_id)")
            .build()
            .map_err(|e| unavailable(&e))?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(ApprovalItem {
                task_token: Some(token.clone()),
                ..approval
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Err(StoreError::NotFound(format!(
                    "pending approval `{approval_id}`"
                )))
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn find_by_review(&self, review: &ReviewKey) -> Result<Option<ApprovalItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("approval_id", s(review_pk(review)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match out.item.as_ref().map(|i| get_s(i, "target")).transpose()? {
            Some(target) => self.get(target).await,
            None => Ok(None),
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
            // RFC 3339 UTC timestamps of one format compare as strings. An
            // approval is answered only while its workflow step waits (it
            // holds the token) and before it expires.
            .condition_expression(
                "#st = :pending AND expires_at > :at AND attribute_exists(task_token)",
            )
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
            Ok(out) => item_from(&out.attributes.unwrap_or_default())?
                .task_token
                .map(Decided::Recorded)
                .ok_or_else(|| corrupt(format!("approval `{approval_id}` lost its token"))),
            Err(e) if is_condition_failure(&e) => Ok(Decided::refused(
                self.get(approval_id).await?.as_ref(),
                &answer.decided_at,
            )),
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

    async fn settle(
        &self,
        approval_id: &str,
        from: &[ApprovalStatus],
        to: ApprovalStatus,
        record: &DecisionRecord,
    ) -> Result<Settled, StoreError> {
        let mut values = Item::new();
        values.insert(":to".into(), s(to.as_str()));
        let mut names = Vec::with_capacity(from.len());
        for (i, status) in from.iter().enumerate() {
            let name = format!(":f{i}");
            values.insert(name.clone(), s(status.as_str()));
            names.push(name);
        }
        let condition = format!("#st IN ({})", names.join(", "));
        let update = Update::builder()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            .update_expression("SET #st = :to REMOVE task_token")
            .condition_expression(&condition)
            .expression_attribute_names("#st", "status")
            .set_expression_attribute_values(Some(values.clone()))
            .build()
            .map_err(|e| unavailable(&e))?;
        if self.update_with_record(update, record).await? {
            return Ok(Settled::Recorded);
        }
        let Some(held) = self.get(approval_id).await? else {
            return Ok(Settled::NotFound);
        };
        if !from.contains(&held.status) {
            return Ok(Settled::Held(held.status));
        }
        // The status allows the move, so the record was what stood in the
        // way: outcome ids derive from the approval and the outcome, and an
        // earlier path appended this one. The status follows it alone.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            .update_expression("SET #st = :to REMOVE task_token")
            .condition_expression(condition)
            .expression_attribute_names("#st", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Settled::Recorded),
            Err(e) if is_condition_failure(&e) => Ok(self
                .get(approval_id)
                .await?
                .map_or(Settled::NotFound, |i| Settled::Held(i.status))),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn reattach_token(
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

    async fn use_grant(
        &self,
        approval_id: &str,
        record: &DecisionRecord,
        decided_after: &str,
        charges: &[Charge],
    ) -> Result<GrantUse, StoreError> {
        let use_it = Update::builder()
            .table_name(&self.table)
            .key("approval_id", s(approval_id))
            .update_expression("SET grant_used_at = :now, grant_decision_id = :d")
            .condition_expression(
                "#st = :granted AND attribute_not_exists(grant_used_at) AND decided_at > :after \
                 AND agent_id = :a AND user_id = :u AND tool_id = :t \
                 AND arguments_hash = :h AND policy_version = :v",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":granted", s(ApprovalStatus::Granted.as_str()))
            .expression_attribute_values(":now", s(&record.timestamp))
            .expression_attribute_values(":d", s(&record.decision_id))
            .expression_attribute_values(":after", s(decided_after))
            .expression_attribute_values(":a", s(&record.agent_id))
            .expression_attribute_values(":u", s(&record.user_id))
            .expression_attribute_values(":t", s(&record.tool_id))
            .expression_attribute_values(":h", s(&record.arguments_hash))
            .expression_attribute_values(":v", s(&record.policy_version))
            .build()
            .map_err(|e| unavailable(&e))?;
        let mut extra = Vec::with_capacity(charges.len());
        if !charges.is_empty() {
            let counters = self.counters_table.as_deref().ok_or_else(|| {
                StoreError::Unavailable("no counters table is configured for limits".into())
            })?;
            for c in charges {
                extra.push(super::counters::charge_item(counters, c)?);
            }
        }
        match self.write_with_record(use_it, record, extra).await? {
            Written::Done => Ok(GrantUse::Used),
            // The approval's update and the record come first.
            Written::Cancelled(reasons) => match super::counters::refused_charge(&reasons, 2) {
                Some((index, current)) if !failed(&reasons, 0) => {
                    Ok(GrantUse::OverLimit { index, current })
                }
                _ => Ok(GrantUse::Unusable),
            },
        }
    }
}

/// Whether item `i` of a cancelled transaction failed its condition.
fn failed(reasons: &[CancellationReason], i: usize) -> bool {
    reasons
        .get(i)
        .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
}

/// What a transaction of an approval's update and its record came to.
enum Written {
    /// Both (and anything written with them) are durable.
    Done,
    /// A condition refused the write; nothing changed. The reasons, by item.
    Cancelled(Vec<CancellationReason>),
}

impl DynamoApprovals {
    /// Applies `update` to an approval and appends `record` to the decisions
    /// table in one transaction, so that the approval's status and the log
    /// never disagree. False if a condition of either refused the write.
    async fn update_with_record(
        &self,
        update: Update,
        record: &DecisionRecord,
    ) -> Result<bool, StoreError> {
        Ok(matches!(
            self.write_with_record(update, record, Vec::new()).await?,
            Written::Done
        ))
    }

    /// [`Self::update_with_record`], with `extra` items in the same
    /// transaction, after the update and the record.
    async fn write_with_record(
        &self,
        update: Update,
        record: &DecisionRecord,
        extra: Vec<TransactWriteItem>,
    ) -> Result<Written, StoreError> {
        let decisions = self.decisions_table.as_deref().ok_or_else(|| {
            StoreError::Unavailable("this approval store records no decisions".into())
        })?;
        let json = serde_json::to_string(record).map_err(corrupt)?;
        let put = Put::builder()
            .table_name(decisions)
            .set_item(Some(super::decisions::DynamoDecisionLog::item(
                record, &json,
            )))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        let mut items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        items.extend(extra);
        match super::counters::transact(&self.client, items).await {
            Ok(()) => Ok(Written::Done),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c),
                ) => Ok(Written::Cancelled(c.cancellation_reasons.clone().unwrap_or_default())),
                _ => Err(unavailable(&e)),
            },
        }
    }
}
