//! Policy change requests in `policy_changes`, and the control plane's
//! environment in `settings`.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::OffsetDateTime;

use super::{activate_in, active, audit, unavailable, SqliteStore};
use crate::audit::{ChangeNote, ControlAction, ControlEvent};
use crate::changes::{ChangeAnswer, ChangeRequest, ChangeStatus, Settled};
use crate::clock::rfc3339;
use crate::model::Environment;
use crate::ports::{ChangeStore, StoreError};

fn decode(json: &str) -> Result<ChangeRequest, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(change: &ChangeRequest) -> Result<String, StoreError> {
    serde_json::to_string(change).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The one change `id` (full, or a prefix of at least 6 characters) names.
fn resolve(conn: &Connection, id: &str) -> Result<ChangeRequest, StoreError> {
    let prefix = crate::ports::id_prefix(id)?;
    let mut stmt = conn
        .prepare(
            "SELECT change_id, change FROM policy_changes WHERE change_id LIKE ?1 || '%' \
             ORDER BY change_id LIMIT ?2",
        )
        .map_err(unavailable)?;
    let rows: Vec<(String, String)> = stmt
        .query_map(
            rusqlite::params![prefix, crate::ports::LISTED_MATCHES],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(unavailable)?
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    let (_, change) = crate::ports::one_match(id, rows, |(id, _)| id.as_str())?;
    decode(&change)
}

/// The control event of one step of `change`.
fn event(
    conn: &Connection,
    change: &ChangeRequest,
    action: ControlAction,
    actor: &str,
    at: &str,
) -> Result<ControlEvent, StoreError> {
    let content_hash: String = conn
        .query_row(
            "SELECT content_hash FROM policy_versions WHERE id = ?1",
            [&change.version_id],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    Ok(ControlEvent::change_step(
        change,
        action,
        actor,
        at,
        &content_hash,
    ))
}

/// Moves `change` out of `pending`: `false` when another writer did first.
fn close(tx: &Transaction<'_>, change: &ChangeRequest) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "UPDATE policy_changes SET status = ?2, change = ?3
             WHERE change_id = ?1 AND status = 'pending'",
            params![change.change_id, change.status.as_str(), encode(change)?],
        )
        .map_err(unavailable)?;
    Ok(n == 1)
}

#[async_trait]
impl ChangeStore for SqliteStore {
    async fn open_change(&self, change: &ChangeRequest) -> Result<(), StoreError> {
        let change = change.clone();
        self.with_control(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO policy_changes (change_id, status, change) VALUES (?1, ?2, ?3)",
                params![change.change_id, change.status.as_str(), encode(&change)?],
            )
            .map_err(unavailable)?;
            let e = event(
                &tx,
                &change,
                ControlAction::ChangeProposed,
                &change.author,
                &change.proposed_at,
            )?;
            audit::append_control(&tx, &e)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn change(&self, id: &str) -> Result<ChangeRequest, StoreError> {
        let id = id.to_owned();
        self.with_control(move |conn| resolve(conn, &id)).await
    }

    async fn changes(&self) -> Result<Vec<ChangeRequest>, StoreError> {
        self.with_control(|conn| {
            let mut stmt = conn
                .prepare("SELECT change FROM policy_changes ORDER BY rowid DESC")
                .map_err(unavailable)?;
            let rows: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            rows.iter().map(|r| decode(r)).collect()
        })
        .await
    }

    async fn settle_change(
        &self,
        id: &str,
        answer: Option<&ChangeAnswer>,
        at: OffsetDateTime,
    ) -> Result<Settled, StoreError> {
        let (id, answer) = (id.to_owned(), answer.cloned());
        self.with_control(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let mut change = resolve(&tx, &id)?;
            if change.status != ChangeStatus::Pending {
                return Ok(Settled::AlreadyClosed(change.status));
            }
            let when = rfc3339(at);
            change.decided_at = Some(when.clone());
            if let Some(a) = &answer {
                change.reviewed_by = Some(a.reviewer.clone());
                change.comment = a.comment.clone();
            }
            let actor = answer
                .as_ref()
                .map_or(change.author.clone(), |a| a.reviewer.clone());
            if answer.as_ref().is_some_and(|a| !a.approve) {
                change.status = ChangeStatus::Rejected;
                if !close(&tx, &change)? {
                    return Ok(Settled::AlreadyClosed(resolve(&tx, &id)?.status));
                }
                let e = event(&tx, &change, ControlAction::ChangeRejected, &actor, &when)?;
                audit::append_control(&tx, &e)?;
                tx.commit().map_err(unavailable)?;
                return Ok(Settled::Done(Box::new(change)));
            }
            // The diff and its risk class compare against the base: once
            // another version is active they describe another change.
            let current = active(&tx)?.map(|a| a.version_id);
            if current != change.base_version {
                change.status = ChangeStatus::Superseded;
                if close(&tx, &change)? {
                    let e = event(&tx, &change, ControlAction::ChangeSuperseded, &actor, &when)?;
                    audit::append_control(&tx, &e)?;
                    tx.commit().map_err(unavailable)?;
                }
                return Ok(Settled::Superseded);
            }
            change.status = ChangeStatus::Activated;
            if !close(&tx, &change)? {
                return Ok(Settled::AlreadyClosed(resolve(&tx, &id)?.status));
            }
            if answer.is_some() {
                let e = event(&tx, &change, ControlAction::ChangeApproved, &actor, &when)?;
                audit::append_control(&tx, &e)?;
            }
            let version = change.version_id.clone();
            activate_in(&tx, &version, &actor, at, Some(ChangeNote::of(&change)))?;
            tx.commit().map_err(unavailable)?;
            Ok(Settled::Done(Box::new(change)))
        })
        .await
    }
}

impl SqliteStore {
    /// The environment this data directory's control plane runs in, once
    /// fixed by [`Self::bind_environment`].
    pub fn environment(&self) -> Result<Option<Environment>, StoreError> {
        self.blocking(|conn| {
            let value: Option<String> = conn
                .query_row(
                    "SELECT value FROM settings WHERE key = 'environment'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            value
                .map(|v| {
                    v.parse()
                        .map_err(|e: crate::model::UnknownEnvironmentError| {
                            StoreError::Corrupt(e.to_string())
                        })
                })
                .transpose()
        })
    }

    /// Fixes the environment on first use; afterwards, returns the one
    /// fixed, which the caller compares with what it was asked to serve.
    pub fn bind_environment(&self, environment: Environment) -> Result<Environment, StoreError> {
        self.blocking(|conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES ('environment', ?1) ON CONFLICT (key) DO NOTHING",
                [environment.as_str()],
            )
            .map_err(unavailable)?;
            Ok(())
        })?;
        Ok(self.environment()?.unwrap_or(environment))
    }
}
