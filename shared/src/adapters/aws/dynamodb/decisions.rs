//! The decision log on DynamoDB.
//!
//! One item per decision (`pk = decision#ID`). A decision with an
//! idempotency key is written in one transaction with an item that claims
//! the key (`pk = idem#AGENT#KEY`, holding a copy of the record and when the
//! claim ends), so a live key is claimed once and the replay costs one read.
//! An ended claim is taken over by a conditional write on its end; a repeat
//! decided afresh moves the claim by a conditional write on its holder. Either way an append is
//! one request, acknowledged only once DynamoDB has stored it durably.
//!
//! The table's stream feeds the decision-log and denial-metrics functions;
//! `kind` tells decisions made by authorize (`decision`) from the records
//! that close an approval (`approval`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::{corrupt, get_s, n, s, unavailable, Item};
use crate::limits::Charge;
use crate::model::DecisionRecord;
use crate::ports::{key_claim_times, Appended, DecisionLog, StoreError};

/// The decision log in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDecisionLog {
    client: Client,
    table: String,
    /// Where the limit charges of decisions go (see [`super::DynamoCounters`]).
    counters_table: Option<String>,
}

fn decision_key(id: &str) -> String {
    format!("decision#{id}")
}

/// The item of a control-plane event, of kind `control`.
pub(super) fn control_item(event: &crate::audit::ControlEvent) -> Result<Item, StoreError> {
    let json = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = Item::new();
    item.insert("pk".into(), s(format!("control#{}", event.event_id)));
    item.insert("kind".into(), s("control"));
    item.insert("timestamp".into(), s(&event.timestamp));
    item.insert("record".into(), s(json));
    Ok(item)
}

/// Length-prefixed, so that no agent and key pair shares another's key.
fn idempotency_key(agent: &str, key: &str) -> String {
    format!("idem#{}:{agent}#{key}", agent.len())
}

impl DynamoDecisionLog {
    /// The log in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            counters_table: None,
        }
    }

    /// The same log, charging decisions' limits to the counters in `table`.
    #[must_use]
    pub fn with_counters(mut self, table: impl Into<String>) -> Self {
        self.counters_table = Some(table.into());
        self
    }

    /// Records a control-plane event (a policy version published or
    /// activated, by `govctl policy push`) as an item of kind `control`: the
    /// table's stream carries it to decision-log, which chains it into the
    /// audit evidence beside the decisions. Written once, never replaced.
    pub async fn append_control(
        &self,
        event: &crate::audit::ControlEvent,
    ) -> Result<(), StoreError> {
        super::put_once(&self.client, &self.table, control_item(event)?).await
    }

    /// The item of one decision record.
    pub(super) fn item(record: &DecisionRecord, json: &str) -> Item {
        let kind = if record.approval.is_some() {
            "approval"
        } else if record.execution.is_some() {
            "execution"
        } else {
            "decision"
        };
        let mut item = Item::new();
        item.insert("pk".into(), s(decision_key(&record.decision_id)));
        item.insert("kind".into(), s(kind));
        item.insert("decision_id".into(), s(&record.decision_id));
        item.insert("agent_id".into(), s(&record.agent_id));
        item.insert("tool_id".into(), s(&record.tool_id));
        item.insert("decision".into(), s(record.decision.as_str()));
        item.insert("timestamp".into(), s(&record.timestamp));
        item.insert("latency_us".into(), n(record.latency_us));
        item.insert("record".into(), s(json));
        item
    }

    async fn read(&self, pk: String) -> Result<Option<DecisionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        out.item
            .map(|item| serde_json::from_str(get_s(&item, "record")?).map_err(corrupt))
            .transpose()
    }
}

impl DynamoDecisionLog {
    /// Writes a record with its key's claim (if it has a key) and its limit
    /// charges in one transaction. The claim is taken if no live claim
    /// holds the key (`supersedes` is None) or moved from the decision
    /// `supersedes` names.
    async fn append_transaction(
        &self,
        record: &DecisionRecord,
        json: &str,
        supersedes: Option<&str>,
        charges: &[Charge],
    ) -> Result<Appended, StoreError> {
        let put = |p: aws_sdk_dynamodb::types::builders::PutBuilder| {
            p.build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(|e| unavailable(&e))
        };
        let mut items = Vec::with_capacity(2 + charges.len());
        if let Some(key) = &record.idempotency_key {
            let (at, expires_at) = key_claim_times(record)?;
            let mut claim = Item::new();
            claim.insert("pk".into(), s(idempotency_key(&record.agent_id, key)));
            claim.insert("kind".into(), s("idempotency"));
            claim.insert("decision_id".into(), s(&record.decision_id));
            claim.insert("record".into(), s(json));
            // Also the table's time-to-live attribute: DynamoDB deletes claims
            // some time after they end, and decisions never carry it.
            claim.insert("expires_at".into(), n(expires_at));
            let claim = match supersedes {
                None => Put::builder()
                    .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                    .expression_attribute_values(":now", n(at)),
                Some(previous) => Put::builder()
                    .condition_expression("decision_id = :previous")
                    .expression_attribute_values(":previous", s(previous)),
            }
            .table_name(&self.table)
            .set_item(Some(claim));
            items.push(put(claim)?);
        }
        let keyed = items.len();
        items.push(put(Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::item(record, json)))
            .condition_expression("attribute_not_exists(pk)"))?);
        if !charges.is_empty() {
            let counters = self.counters_table.as_deref().ok_or_else(|| {
                StoreError::Unavailable("no counters table is configured for limits".into())
            })?;
            for c in charges {
                items.push(super::counters::charge_item(counters, c)?);
            }
        }
        match super::counters::transact(&self.client, items).await {
            Ok(()) => Ok(Appended::Stored),
            Err(e) => {
                let reasons = e
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c.cancellation_reasons.as_deref(),
                        _ => None,
                    })
                    .unwrap_or_default();
                let failed = |i: usize| {
                    reasons
                        .get(i)
                        .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
                };
                // A repeat comes before the limits: a replay charges nothing.
                if keyed == 1 && failed(0) {
                    return Ok(Appended::DuplicateKey);
                }
                match super::counters::refused_charge(reasons, keyed + 1) {
                    Some((index, current)) => Ok(Appended::OverLimit { index, current }),
                    None => Err(unavailable(&e)),
                }
            }
        }
    }
}

#[async_trait]
impl crate::anomaly::ControlLog for DynamoDecisionLog {
    async fn append_control(&self, event: &crate::audit::ControlEvent) -> Result<(), StoreError> {
        DynamoDecisionLog::append_control(self, event).await
    }
}

#[async_trait]
impl DecisionLog for DynamoDecisionLog {
    async fn append_charged(
        &self,
        record: &DecisionRecord,
        supersedes: Option<&str>,
        charges: &[Charge],
    ) -> Result<Appended, StoreError> {
        let json = serde_json::to_string(record).map_err(corrupt)?;
        if record.idempotency_key.is_some() || !charges.is_empty() {
            return self
                .append_transaction(record, &json, supersedes, charges)
                .await;
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(record, &json)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Appended::Stored),
            // Decision ids are unique, and approval outcomes derive theirs
            // from the outcome: the item is there because a retry of this
            // very append stored it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Appended::Stored)
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn get(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        self.read(decision_key(decision_id)).await
    }

    async fn by_idempotency_key(
        &self,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<DecisionRecord>, StoreError> {
        self.read(idempotency_key(agent_id, key)).await
    }
}
