//! The counters of rate limits, runs and budgets on DynamoDB.
//!
//! One item per counter (`pk` = the limit and who it counts, `window_start`
//! = the window, 0 for a run). A charge is one `Update` with `ADD` and a
//! condition on the limit, written in the same `TransactWriteItems` as the
//! decision it belongs to, so an allow that moves its counters is still one
//! request. A refused condition cancels the transaction; the cancellation
//! reason carries the counter as it was (`ALL_OLD`), which the deny reports.
//!
//! Every counter of a run lives under that run's own key, so runs never
//! share a partition. A per-user, per-tool or per-organization counter is
//! one item: DynamoDB sustains about 1,000 writes per second on one
//! partition key, so one organization's budget, or one tool's per-agent
//! rate limit, takes at most that many allowed calls per second. Past that,
//! split the budget (several budgets, one per team) rather than the
//! counter: a counter sharded over N items can no longer refuse the exact
//! call that crosses its limit.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;

use super::{n, opt_s, s, unavailable, Item};
use crate::limits::{Amounts, Charge, Charged, Counter, RunOwner};
use crate::ports::{Counters, StoreError};

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

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn amount(item: &Item, name: &str) -> u64 {
    number(item, name)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// A counter from its item.
pub(super) fn counter_from(item: &Item) -> Counter {
    Counter {
        used: Amounts {
            calls: amount(item, "calls"),
            cost_micros: amount(item, "cost_micros"),
            tokens: amount(item, "tokens"),
        },
        owner: match (number(item, "started_at"), opt_s(item, "user_id")) {
            (Some(started_at), Some(user_id)) => Some(RunOwner {
                started_at,
                user_id,
                organization: opt_s(item, "organization"),
            }),
            _ => None,
        },
    }
}

/// The transaction item of one charge on the counters in `table`.
pub(super) fn charge_item(table: &str, c: &Charge) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(table)
        .key("pk", s(&c.key))
        .key("window_start", n(c.window_start))
        .expression_attribute_names("#calls", "calls")
        .expression_attribute_names("#cost", "cost_micros")
        .expression_attribute_names("#tokens", "tokens")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(":calls", n(c.add.calls))
        .expression_attribute_values(":cost", n(c.add.cost_micros))
        .expression_attribute_values(":tokens", n(c.add.tokens))
        .expression_attribute_values(":ttl", n(c.expires_at))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    let mut set = vec!["#ttl = if_not_exists(#ttl, :ttl)"];
    if let Some(owner) = &c.owner {
        update = update
            .expression_attribute_names("#started", "started_at")
            .expression_attribute_names("#user", "user_id")
            .expression_attribute_values(":started", n(owner.started_at))
            .expression_attribute_values(":user", s(&owner.user_id));
        set.push("#started = if_not_exists(#started, :started)");
        set.push("#user = if_not_exists(#user, :user)");
        if let Some(org) = &owner.organization {
            update = update
                .expression_attribute_names("#org", "organization")
                .expression_attribute_values(":org", s(org));
            set.push("#org = if_not_exists(#org, :org)");
        }
    }
    let mut conditions = Vec::new();
    if c.must_exist {
        conditions.push("attribute_exists(pk)".to_owned());
    }
    for (name, placeholder, max) in [
        ("#calls", ":max_calls", c.max.calls),
        ("#cost", ":max_cost", c.max.cost_micros),
        ("#tokens", ":max_tokens", c.max.tokens),
    ] {
        if let Some(max) = max {
            update = update.expression_attribute_values(placeholder, n(max));
            conditions.push(format!(
                "(attribute_not_exists({name}) OR {name} <= {placeholder})"
            ));
        }
    }
    if let Some(cutoff) = c.started_not_before {
        if c.owner.is_none() {
            update = update.expression_attribute_names("#started", "started_at");
        }
        update = update.expression_attribute_values(":cutoff", n(cutoff));
        conditions.push("(attribute_not_exists(#started) OR #started >= :cutoff)".to_owned());
    }
    update = update.update_expression(format!(
        "ADD #calls :calls, #cost :cost, #tokens :tokens SET {}",
        set.join(", ")
    ));
    if !conditions.is_empty() {
        update = update.condition_expression(conditions.join(" AND "));
    }
    let update = update.build().map_err(|e| unavailable(&e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// How often a transaction cancelled only by conflicts is sent again.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Whether DynamoDB cancelled a transaction only because another one was
/// writing the same items (no condition failed): sending it again is safe.
fn only_conflicts(e: &SdkError<TransactWriteItemsError>) -> bool {
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error()
    else {
        return false;
    };
    let codes: Vec<&str> = c
        .cancellation_reasons()
        .iter()
        .filter_map(|r| r.code())
        .filter(|code| *code != "None")
        .collect();
    !codes.is_empty() && codes.iter().all(|code| *code == "TransactionConflict")
}

/// Sends one transaction. Concurrent transactions on one item (a hot
/// budget or rate-limit counter) cancel each other with
/// `TransactionConflict`, although nothing is wrong with either: such a
/// cancellation is sent again, after a short random pause, a few times.
/// Each attempt carries its own client request token, so that the SDK's
/// retry of an attempt whose answer was lost cannot apply it twice.
pub(super) async fn transact(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<(), SdkError<TransactWriteItemsError>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await;
        match out {
            Err(e) if attempt < CONFLICT_ATTEMPTS && only_conflicts(&e) => {
                let pause = 5_u64 << attempt;
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % pause;
                tokio::time::sleep(std::time::Duration::from_millis(pause + jitter)).await;
            }
            other => return other.map(drop),
        }
    }
}

/// The first charge whose condition cancelled a transaction, given the
/// cancellation reasons of all its items and where the charges start among
/// them, with its counter as it was.
pub(super) fn refused_charge(
    reasons: &[CancellationReason],
    first_charge: usize,
) -> Option<(usize, Option<Counter>)> {
    reasons
        .iter()
        .enumerate()
        .skip(first_charge)
        .find(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
        .map(|(i, r)| (i - first_charge, r.item().map(counter_from)))
}

#[async_trait]
impl Counters for DynamoCounters {
    async fn counter(&self, key: &str, window_start: i64) -> Result<Option<Counter>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("window_start", n(window_start))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(out.item.as_ref().map(counter_from))
    }

    async fn counters(&self, keys: &[(String, i64)]) -> Result<Vec<Option<Counter>>, StoreError> {
        // One BatchGetItem per 100 keys; what it leaves unprocessed is asked again.
        let mut found: std::collections::HashMap<(String, i64), Counter> =
            std::collections::HashMap::new();
        for chunk in keys.chunks(100) {
            let mut unique: Vec<&(String, i64)> = chunk.iter().collect();
            unique.sort();
            unique.dedup();
            let mut pending: Vec<Item> = unique
                .iter()
                .map(|(k, w)| {
                    Item::from([("pk".to_owned(), s(k)), ("window_start".to_owned(), n(w))])
                })
                .collect();
            let mut attempts = 0;
            while !pending.is_empty() {
                attempts += 1;
                if attempts > 8 {
                    return Err(StoreError::Unavailable(
                        "DynamoDB left counter reads unprocessed".into(),
                    ));
                }
                let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| unavailable(&e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| unavailable(&e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let key = item.get("pk").and_then(|v| v.as_s().ok()).cloned();
                    let window = number(&item, "window_start");
                    if let (Some(key), Some(window)) = (key, window) {
                        found.insert((key, window), counter_from(&item));
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn charge(&self, charges: &[Charge]) -> Result<Charged, StoreError> {
        if charges.is_empty() {
            return Ok(Charged::Applied);
        }
        let items = charges
            .iter()
            .map(|c| charge_item(&self.table, c))
            .collect::<Result<Vec<_>, _>>()?;
        match transact(&self.client, items).await {
            Ok(()) => Ok(Charged::Applied),
            Err(e) => {
                let refused = e
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c.cancellation_reasons.as_deref(),
                        _ => None,
                    })
                    .and_then(|reasons| refused_charge(reasons, 0));
                match refused {
                    Some((index, current)) => Ok(Charged::Refused { index, current }),
                    None => Err(unavailable(&e)),
                }
            }
        }
    }
}
