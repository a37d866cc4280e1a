//! Immutable policy versions and the active pointer on DynamoDB.
//!
//! | pk | sk | item |
//! |---|---|---|
//! | `version#ID` | `meta` | the version's metadata and chunk count |
//! | `version#ID` | `chunk#00000` … | the bundle's JSON, in pieces under the item size limit |
//! | `versions` | `CREATED_AT#ID` | the list of versions, oldest first |
//! | `active` | `pointer` | the active version |
//! | `activations` | `AT#ID` | every activation, append-only |
//!
//! `govctl policy push` writes each publication and activation in one
//! transaction with its control-plane event in the decision log's table
//! ([`DynamoPolicyStore::publish_recorded`],
//! [`DynamoPolicyStore::activate_recorded`]): a version is never visible,
//! nor active, without the record that says who made it so.
//!
//! Every write is conditional on the item not existing, except the pointer:
//! a version, once written, cannot be overwritten through this adapter, and
//! the functions' IAM roles allow them only to read. Chunks are written
//! before the metadata, so a version without its metadata is invisible.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::{corrupt, get_s, n, opt_s, s, unavailable, Item};
use crate::audit::ControlEvent;
use crate::clock::rfc3339;
use crate::policy::PolicyBundle;
use crate::ports::{
    version_id, ActivePolicy, PolicyStore, PolicyVersion, PublishRequest, StoreError,
};

/// Bundle JSON per chunk item: well under DynamoDB's 400 KB item limit.
const CHUNK_BYTES: usize = 300 * 1024;

/// Policy versions in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoPolicyStore {
    pub(super) client: Client,
    pub(super) table: String,
    /// Where kill-switch changes record their control events.
    pub(super) decisions_table: Option<String>,
}

fn version_pk(id: &str) -> String {
    format!("version#{id}")
}

/// Splits `text` into pieces of at most `max` bytes, on character boundaries.
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        out.push(head);
        rest = tail;
    }
    out
}

fn version_from(item: &Item) -> Result<PolicyVersion, StoreError> {
    Ok(PolicyVersion {
        id: get_s(item, "version_id")?.to_owned(),
        content_hash: get_s(item, "content_hash")?.to_owned(),
        parent: opt_s(item, "parent"),
        author: get_s(item, "author")?.to_owned(),
        message: get_s(item, "message")?.to_owned(),
        created_at: get_s(item, "created_at")?.to_owned(),
    })
}

fn active_from(item: &Item) -> Result<ActivePolicy, StoreError> {
    Ok(ActivePolicy {
        version_id: get_s(item, "version_id")?.to_owned(),
        activated_by: get_s(item, "activated_by")?.to_owned(),
        activated_at: get_s(item, "activated_at")?.to_owned(),
    })
}

fn version_item(pk: String, sk: String, v: &PolicyVersion) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(sk));
    item.insert("version_id".into(), s(&v.id));
    item.insert("content_hash".into(), s(&v.content_hash));
    if let Some(p) = &v.parent {
        item.insert("parent".into(), s(p));
    }
    item.insert("author".into(), s(&v.author));
    item.insert("message".into(), s(&v.message));
    item.insert("created_at".into(), s(&v.created_at));
    item
}

impl DynamoPolicyStore {
    /// The versions in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            decisions_table: None,
        }
    }

    /// The same, able to switch agents off and on: the control events go
    /// into `decisions_table`, which decision-log chains into the evidence.
    #[must_use]
    pub fn with_decisions(mut self, decisions_table: impl Into<String>) -> Self {
        self.decisions_table = Some(decisions_table.into());
        self
    }

    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Every item under `pk`, in sort-key order.
    pub(super) async fn query_all(&self, pk: &str, forward: bool) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// The full id of a version given by id or unique prefix.
    async fn resolve(&self, id: &str) -> Result<String, StoreError> {
        let prefix = crate::ports::id_prefix(id)?;
        // A full id needs no listing: reading it finds it or not.
        if prefix.len() == 64 {
            return Ok(prefix);
        }
        let matches: Vec<String> = self
            .versions()
            .await?
            .into_iter()
            .map(|v| v.id)
            .filter(|v| v.starts_with(&prefix))
            .collect();
        crate::ports::one_match(id, matches, String::as_str)
    }
}

/// Builds a publication's control-plane event once the version is known.
type PublicationEvent<'a> = Box<dyn FnOnce(&PolicyVersion) -> ControlEvent + Send + 'a>;
/// Builds an activation's control-plane event once the activation is known.
type ActivationEvent<'a> = Box<dyn FnOnce(&ActivePolicy) -> ControlEvent + Send + 'a>;

impl DynamoPolicyStore {
    /// Publishes like [`PolicyStore::publish`], and writes the publication's
    /// control event in the same transaction as the version's metadata: the
    /// version is visible if and only if its publication is recorded.
    /// `event` builds the event from the version; it goes into `decisions_table`.
    pub async fn publish_recorded(
        &self,
        req: PublishRequest,
        decisions_table: &str,
        event: impl FnOnce(&PolicyVersion) -> ControlEvent + Send,
    ) -> Result<PolicyVersion, StoreError> {
        self.publish_with(req, Some((decisions_table, Box::new(event))))
            .await
    }

    /// Activates like [`PolicyStore::activate`], and writes the activation's
    /// control event in the same transaction as the pointer: the pointer
    /// moves if and only if the activation is recorded.
    /// `event` builds the event from the activation; it goes into `decisions_table`.
    pub async fn activate_recorded(
        &self,
        id: &str,
        by: &str,
        at: OffsetDateTime,
        decisions_table: &str,
        event: impl FnOnce(&ActivePolicy) -> ControlEvent + Send,
    ) -> Result<ActivePolicy, StoreError> {
        self.activate_with(id, by, at, Some((decisions_table, Box::new(event))))
            .await
    }

    fn control_put(
        decisions_table: &str,
        event: &ControlEvent,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(decisions_table)
            .set_item(Some(super::decisions::control_item(event)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn publish_with(
        &self,
        req: PublishRequest,
        control: Option<(&str, PublicationEvent<'_>)>,
    ) -> Result<PolicyVersion, StoreError> {
        let parent = self.active().await?.map(|a| a.version_id);
        let content_hash = req.bundle.content_hash();
        let created_at = rfc3339(req.at);
        let id = version_id(
            &content_hash,
            parent.as_deref(),
            &req.author,
            &req.message,
            &created_at,
        );
        let version = PolicyVersion {
            id: id.clone(),
            content_hash,
            parent,
            author: req.author,
            message: req.message,
            created_at,
        };
        let json = serde_json::to_string(&req.bundle).map_err(corrupt)?;
        let pieces = chunks(&json, CHUNK_BYTES);
        for (i, piece) in pieces.iter().enumerate() {
            let mut item = Item::new();
            item.insert("pk".into(), s(version_pk(&id)));
            item.insert("sk".into(), s(format!("chunk#{i:05}")));
            item.insert("data".into(), s(*piece));
            super::put_once(&self.client, &self.table, item).await?;
        }
        let mut meta = version_item(version_pk(&id), "meta".into(), &version);
        meta.insert("chunks".into(), n(pieces.len()));
        let listed = version_item(
            "versions".into(),
            format!("{}#{id}", version.created_at),
            &version,
        );
        let mut writes = vec![self.put_new(meta)?, self.put_new(listed)?];
        if let Some((decisions_table, build)) = control {
            writes.push(Self::control_put(decisions_table, &build(&version))?);
        }
        self.transact(writes).await?;
        Ok(version)
    }

    /// Writes `writes` in one transaction.
    pub(super) async fn transact(&self, writes: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
            .map(drop)
            .map_err(|e| unavailable(&e))
    }

    async fn activate_with(
        &self,
        id: &str,
        by: &str,
        at: OffsetDateTime,
        control: Option<(&str, ActivationEvent<'_>)>,
    ) -> Result<ActivePolicy, StoreError> {
        let full = self.resolve(id).await?;
        let activated_at = rfc3339(at);
        let mut writes = self.activation_writes(&full, by, &activated_at, None)?;
        let active = ActivePolicy {
            version_id: full,
            activated_by: by.to_owned(),
            activated_at,
        };
        if let Some((decisions_table, build)) = control {
            writes.push(Self::control_put(decisions_table, &build(&active))?);
        }
        self.transact(writes).await?;
        Ok(active)
    }

    /// The writes that make `full` active: the version must exist, the
    /// pointer moves (only from `from`, when given: `Some(None)` means from
    /// no active version), and the activation is listed.
    pub(super) fn activation_writes(
        &self,
        full: &str,
        by: &str,
        activated_at: &str,
        from: Option<Option<&str>>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let item = |pk: &str, sk: String| {
            let mut item = Item::new();
            item.insert("pk".into(), s(pk));
            item.insert("sk".into(), s(sk));
            item.insert("version_id".into(), s(full));
            item.insert("activated_by".into(), s(by));
            item.insert("activated_at".into(), s(activated_at));
            item
        };
        let exists = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(version_pk(full)))
            .key("sk", s("meta"))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        let pointer = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item("active", "pointer".into())));
        let pointer = match from {
            None => pointer,
            Some(None) => pointer.condition_expression("attribute_not_exists(pk)"),
            Some(Some(base)) => pointer
                .condition_expression("version_id = :base")
                .expression_attribute_values(":base", s(base)),
        }
        .build()
        .map_err(|e| unavailable(&e))?;
        Ok(vec![
            TransactWriteItem::builder().condition_check(exists).build(),
            TransactWriteItem::builder().put(pointer).build(),
            self.put_new(item("activations", format!("{activated_at}#{full}")))?,
        ])
    }
}

#[async_trait]
impl PolicyStore for DynamoPolicyStore {
    async fn publish(&self, req: PublishRequest) -> Result<PolicyVersion, StoreError> {
        self.publish_with(req, None).await
    }

    async fn version(&self, id: &str) -> Result<(PolicyVersion, PolicyBundle), StoreError> {
        let full = self.resolve(id).await?;
        let items = self.query_all(&version_pk(&full), true).await?;
        let meta = items
            .iter()
            .find(|i| {
                i.get("sk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|k| k == "meta")
            })
            .ok_or_else(|| StoreError::NotFound(full.clone()))?;
        let version = version_from(meta)?;
        let expected: usize = meta
            .get("chunks")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(format!("version `{full}` has no chunk count")))?;
        let mut json = String::new();
        let mut found = 0;
        for item in &items {
            if item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|k| k.starts_with("chunk#"))
            {
                json.push_str(get_s(item, "data")?);
                found += 1;
            }
        }
        if found != expected {
            return Err(corrupt(format!(
                "version `{full}` has {found} of its {expected} chunks"
            )));
        }
        let bundle: PolicyBundle = serde_json::from_str(&json).map_err(corrupt)?;
        if bundle.content_hash() != version.content_hash {
            return Err(corrupt(format!(
                "version `{full}` does not match its content hash"
            )));
        }
        Ok((version, bundle))
    }

    async fn versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        self.query_all("versions", false)
            .await?
            .iter()
            .map(version_from)
            .collect()
    }

    async fn active_state(
        &self,
    ) -> Result<(Option<ActivePolicy>, crate::killswitch::KillSwitch), StoreError> {
        // The pointer and the disablements share a partition: one Query.
        let items = self.query_all("active", true).await?;
        let pointer = items
            .iter()
            .find(|i| get_s(i, "sk").is_ok_and(|sk| sk == "pointer"))
            .map(active_from)
            .transpose()?;
        Ok((
            pointer,
            crate::killswitch::KillSwitch(super::killswitch::disablements(&items)?),
        ))
    }

    async fn active(&self) -> Result<Option<ActivePolicy>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("active"))
            .key("sk", s("pointer"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        out.item.as_ref().map(active_from).transpose()
    }

    async fn activate(
        &self,
        id: &str,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<ActivePolicy, StoreError> {
        self.activate_with(id, by, at, None).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_split_on_character_boundaries_and_join_back() {
        let text = "aé€😀".repeat(100);
        for max in [4, 5, 7, 1000] {
            let parts = super::chunks(&text, max);
            assert!(parts.iter().all(|p| p.len() <= max && !p.is_empty()));
            assert_eq!(parts.concat(), text);
        }
        assert!(super::chunks("", 4).is_empty());
    }
}
