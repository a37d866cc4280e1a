//! The kill switch on DynamoDB: one item per disablement in force, in the
//! partition of the active pointer (`pk = active`, `sk = switch#…`) of the
//! policy versions table, so that the authorize function reads the pointer
//! and the switch in one Query. A change is one transaction with its
//! control event in the decisions table, whose stream carries it into the
//! audit evidence.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::{get_s, opt_s, s, unavailable, DynamoPolicyStore, Item};
use crate::killswitch::{switch_key, Disablement, Switch};
use crate::ports::{KillSwitchStore, PolicyStore, StoreError};

/// The partition of the disablements: the active pointer's.
const PARTITION: &str = "active";

/// The sort key prefix of a disablement.
const SORT_PREFIX: &str = "switch#";

/// The disablements among the items of the active partition.
pub(super) fn disablements(items: &[Item]) -> Result<Vec<Disablement>, StoreError> {
    items
        .iter()
        .filter(|i| get_s(i, "sk").is_ok_and(|sk| sk.starts_with(SORT_PREFIX)))
        .map(disablement)
        .collect()
}

fn disablement(item: &Item) -> Result<Disablement, StoreError> {
    Ok(Disablement {
        agent_id: get_s(item, "agent_id")?.to_owned(),
        version: opt_s(item, "agent_version"),
        by: get_s(item, "disabled_by")?.to_owned(),
        reason: get_s(item, "reason")?.to_owned(),
        at: get_s(item, "disabled_at")?.to_owned(),
    })
}

#[async_trait]
impl KillSwitchStore for DynamoPolicyStore {
    async fn disabled(&self) -> Result<Vec<Disablement>, StoreError> {
        disablements(&self.query_all(PARTITION, true).await?)
    }

    async fn switch(&self, change: &Switch) -> Result<bool, StoreError> {
        let decisions = self.decisions_table.as_deref().ok_or_else(|| {
            StoreError::Unavailable("this policy store records no control events".into())
        })?;
        let (id, hash) = match self.active().await? {
            Some(a) => {
                let (version, _) = self.version(&a.version_id).await?;
                (version.id, version.content_hash)
            }
            None => ("none".to_owned(), "none".to_owned()),
        };
        let (agent_id, version) = change.target();
        let key = format!("{SORT_PREFIX}{}", switch_key(agent_id, version));
        let write = match change {
            Switch::Disable(d) => {
                let mut item = Item::new();
                item.insert("pk".into(), s(PARTITION));
                item.insert("sk".into(), s(&key));
                item.insert("agent_id".into(), s(&d.agent_id));
                if let Some(v) = &d.version {
                    item.insert("agent_version".into(), s(v));
                }
                item.insert("disabled_by".into(), s(&d.by));
                item.insert("reason".into(), s(&d.reason));
                item.insert("disabled_at".into(), s(&d.at));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| unavailable(&e))?;
                TransactWriteItem::builder().put(put).build()
            }
            Switch::Enable { .. } => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key("pk", s(PARTITION))
                    .key("sk", s(&key))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .map_err(|e| unavailable(&e))?;
                TransactWriteItem::builder().delete(delete).build()
            }
        };
        let event = Put::builder()
            .table_name(decisions)
            .set_item(Some(super::decisions::control_item(
                &change.event((&id, &hash)),
            )?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(write)
            .transact_items(TransactWriteItem::builder().put(event).build())
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(change, Switch::Enable { .. })
                    && e.as_service_error()
                        .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                // Nothing was disabled under this key.
                Ok(false)
            }
            Err(e) => Err(unavailable(&e)),
        }
    }
}
