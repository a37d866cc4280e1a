//! Policy change requests on DynamoDB, beside the versions they activate.
//!
//! | pk | sk | item |
//! |---|---|---|
//! | `changes` | change id | `status` and the request's JSON (`change`) |
//!
//! [`DynamoChanges`] is the policy store of a stack whose changes are
//! reviewed: every publication, activation and change step is one
//! transaction with its control event in the decisions table, which
//! decision-log chains into the evidence. An activation also rewrites the
//! tool-policy table to the new version's grants, as `govctl policy push`
//! does.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use time::OffsetDateTime;

use super::{get_s, s, unavailable, DynamoPolicyStore, Item};
use crate::audit::{ChangeNote, ControlAction, ControlEvent};
use crate::changes::{ChangeAnswer, ChangeRequest, ChangeStatus, Settled};
use crate::clock::rfc3339;
use crate::policy::{compile, PolicyBundle};
use crate::ports::{
    ActivePolicy, ChangeStore, PolicyStore, PolicyVersion, PublishRequest, StoreError,
};

const PK: &str = "changes";

/// The policy versions and change requests of one stack, recorded.
#[derive(Debug, Clone)]
pub struct DynamoChanges {
    versions: DynamoPolicyStore,
    decisions_table: String,
    tool_policy_table: Option<String>,
}

fn encode(change: &ChangeRequest) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("pk".into(), s(PK));
    item.insert("sk".into(), s(&change.change_id));
    item.insert("status".into(), s(change.status.as_str()));
    item.insert(
        "change".into(),
        s(serde_json::to_string(change).map_err(super::corrupt)?),
    );
    Ok(item)
}

fn decode(item: &Item) -> Result<ChangeRequest, StoreError> {
    serde_json::from_str(get_s(item, "change")?).map_err(super::corrupt)
}

impl DynamoChanges {
    /// Changes in `versions`' table; control events into `decisions_table`.
    pub fn new(versions: DynamoPolicyStore, decisions_table: impl Into<String>) -> Self {
        Self {
            versions,
            decisions_table: decisions_table.into(),
            tool_policy_table: None,
        }
    }

    /// The same, keeping `table` (the seed's tool-policy table) in step
    /// with every activation.
    #[must_use]
    pub fn with_tool_policy(mut self, table: impl Into<String>) -> Self {
        self.tool_policy_table = Some(table.into());
        self
    }

    fn put(
        &self,
        table: &str,
        item: Item,
        condition: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(|e| unavailable(&e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The change item, replacing a still-pending one.
    fn close(&self, change: &ChangeRequest) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.versions.table)
            .set_item(Some(encode(change)?))
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(ChangeStatus::Pending.as_str()))
            .build()
            .map_err(|e| unavailable(&e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn event(&self, event: &ControlEvent) -> Result<TransactWriteItem, StoreError> {
        self.put(
            &self.decisions_table,
            super::decisions::control_item(event)?,
            "attribute_not_exists(pk)",
        )
    }

    async fn content_hash(&self, version: &str) -> Result<String, StoreError> {
        Ok(self.versions.version(version).await?.0.content_hash)
    }

    /// Rewrites the tool-policy table to `version`'s grants.
    async fn sync(&self, version: &str) -> Result<(), StoreError> {
        let Some(table) = &self.tool_policy_table else {
            return Ok(());
        };
        let (_, bundle) = self.versions.version(version).await?;
        let registry = compile(&bundle)
            .map_err(|d| {
                StoreError::Corrupt(format!(
                    "version {version} does not compile: {}",
                    d.first().map(ToString::to_string).unwrap_or_default()
                ))
            })?
            .registry;
        super::sync_tool_policy(&self.versions.client, table, &registry, version).await
    }

    /// The activation event of `to`, replacing `from`.
    async fn activation(
        &self,
        to: &str,
        from: Option<&str>,
        by: &str,
        at: &str,
    ) -> Result<ControlEvent, StoreError> {
        let (new, bundle) = self.versions.version(to).await?;
        let old = match from {
            Some(id) => Some(self.versions.version(id).await?),
            None => None,
        };
        let rollback = old
            .as_ref()
            .is_some_and(|(v, _)| v.created_at > new.created_at);
        Ok(ControlEvent::activated(
            (&new.id, &new.content_hash, &bundle),
            old.as_ref().map(|(v, b)| (v.id.as_str(), b)),
            rollback,
            by,
            at,
        ))
    }

    async fn bundle_of(&self, id: Option<&str>) -> Result<Option<PolicyBundle>, StoreError> {
        match id {
            Some(id) => Ok(Some(self.versions.version(id).await?.1)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl PolicyStore for DynamoChanges {
    async fn publish(&self, req: PublishRequest) -> Result<PolicyVersion, StoreError> {
        let parent = self
            .bundle_of(
                self.versions
                    .active()
                    .await?
                    .map(|a| a.version_id)
                    .as_deref(),
            )
            .await?;
        let bundle = req.bundle.clone();
        self.versions
            .publish_recorded(req, &self.decisions_table, |v| {
                ControlEvent::published(v, parent.as_ref(), &bundle)
            })
            .await
    }

    async fn version(&self, id: &str) -> Result<(PolicyVersion, PolicyBundle), StoreError> {
        self.versions.version(id).await
    }

    async fn versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        self.versions.versions().await
    }

    async fn active(&self) -> Result<Option<ActivePolicy>, StoreError> {
        self.versions.active().await
    }

    async fn active_state(
        &self,
    ) -> Result<(Option<ActivePolicy>, crate::killswitch::KillSwitch), StoreError> {
        self.versions.active_state().await
    }

    async fn activate(
        &self,
        id: &str,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<ActivePolicy, StoreError> {
        let previous = self.versions.active().await?.map(|a| a.version_id);
        let (version, _) = self.versions.version(id).await?;
        let event = self
            .activation(&version.id, previous.as_deref(), by, &rfc3339(at))
            .await?;
        let active = self
            .versions
            .activate_recorded(&version.id, by, at, &self.decisions_table, |_| event)
            .await?;
        self.sync(&active.version_id).await?;
        Ok(active)
    }
}

#[async_trait]
impl ChangeStore for DynamoChanges {
    async fn open_change(&self, change: &ChangeRequest) -> Result<(), StoreError> {
        let hash = self.content_hash(&change.version_id).await?;
        let event = ControlEvent::change_step(
            change,
            ControlAction::ChangeProposed,
            &change.author,
            &change.proposed_at,
            &hash,
        );
        let writes = vec![
            self.put(
                &self.versions.table,
                encode(change)?,
                "attribute_not_exists(pk)",
            )?,
            self.event(&event)?,
        ];
        self.versions.transact(writes).await
    }

    async fn change(&self, id: &str) -> Result<ChangeRequest, StoreError> {
        let prefix = crate::ports::id_prefix(id)?;
        let found: Vec<ChangeRequest> = self
            .versions
            .query_all(PK, true)
            .await?
            .iter()
            .filter(|i| get_s(i, "sk").is_ok_and(|sk| sk.starts_with(&prefix)))
            .map(decode)
            .collect::<Result<_, _>>()?;
        crate::ports::one_match(id, found, |c| c.change_id.as_str())
    }

    async fn changes(&self) -> Result<Vec<ChangeRequest>, StoreError> {
        let mut all: Vec<ChangeRequest> = self
            .versions
            .query_all(PK, true)
            .await?
            .iter()
            .map(decode)
            .collect::<Result<_, _>>()?;
        all.sort_by(|a, b| b.proposed_at.cmp(&a.proposed_at));
        Ok(all)
    }

    async fn settle_change(
        &self,
        id: &str,
        answer: Option<&ChangeAnswer>,
        at: OffsetDateTime,
    ) -> Result<Settled, StoreError> {
        let mut change = self.change(id).await?;
        if change.status != ChangeStatus::Pending {
            return Ok(Settled::AlreadyClosed(change.status));
        }
        let when = rfc3339(at);
        change.decided_at = Some(when.clone());
        if let Some(a) = answer {
            change.reviewed_by = Some(a.reviewer.clone());
            change.comment = a.comment.clone();
        }
        let actor = answer.map_or(change.author.clone(), |a| a.reviewer.clone());
        let hash = self.content_hash(&change.version_id).await?;
        let step = |change: &ChangeRequest, action| {
            ControlEvent::change_step(change, action, &actor, &when, &hash)
        };
        // Whatever fails, the change's own state says what happened.
        let closed_meanwhile = |e: StoreError| async move {
            match self.change(id).await {
                Ok(c) if c.status != ChangeStatus::Pending => Ok(Settled::AlreadyClosed(c.status)),
                _ => Err(e),
            }
        };
        if answer.is_some_and(|a| !a.approve) {
            change.status = ChangeStatus::Rejected;
            let writes = vec![
                self.close(&change)?,
                self.event(&step(&change, ControlAction::ChangeRejected))?,
            ];
            return match self.versions.transact(writes).await {
                Ok(()) => Ok(Settled::Done(Box::new(change))),
                Err(e) => closed_meanwhile(e).await,
            };
        }
        let current = self.versions.active().await?.map(|a| a.version_id);
        if current != change.base_version {
            change.status = ChangeStatus::Superseded;
            let writes = vec![
                self.close(&change)?,
                self.event(&step(&change, ControlAction::ChangeSuperseded))?,
            ];
            return match self.versions.transact(writes).await {
                Ok(()) => Ok(Settled::Superseded),
                Err(e) => closed_meanwhile(e).await,
            };
        }
        change.status = ChangeStatus::Activated;
        let mut activated = self
            .activation(&change.version_id, current.as_deref(), &actor, &when)
            .await?;
        activated.change = Some(ChangeNote::of(&change));
        let mut writes = vec![self.close(&change)?];
        if answer.is_some() {
            writes.push(self.event(&step(&change, ControlAction::ChangeApproved))?);
        }
        writes.push(self.event(&activated)?);
        // The pointer moves only from the base the change was reviewed against.
        writes.extend(self.versions.activation_writes(
            &change.version_id,
            &actor,
            &when,
            Some(current.as_deref()),
        )?);
        if let Err(e) = self.versions.transact(writes).await {
            return match closed_meanwhile(e).await {
                Err(e) if self.versions.active().await?.map(|a| a.version_id) != current => {
                    tracing::warn!(change_id = %change.change_id, error = %e, "the active version moved during the review");
                    Box::pin(self.settle_change(id, answer, at)).await
                }
                other => other,
            };
        }
        self.sync(&change.version_id).await?;
        Ok(Settled::Done(Box::new(change)))
    }
}
