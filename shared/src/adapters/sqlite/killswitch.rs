//! The kill switch in `agent_switches`: one row per disablement in force.
//! A change and its control event are one transaction; the history is the
//! control chain, so a row is deleted when its agent is switched back on.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::{active, audit, unavailable, SqliteStore};
use crate::killswitch::{switch_key, Disablement, Switch};
use crate::ports::{KillSwitchStore, StoreError};

/// The active version and its content hash, named by a switch's event.
fn active_version(conn: &Connection) -> Result<(String, String), StoreError> {
    let Some(a) = active(conn)? else {
        return Ok(("none".into(), "none".into()));
    };
    let hash: String = conn
        .query_row(
            "SELECT content_hash FROM policy_versions WHERE id = ?1",
            [&a.version_id],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    Ok((a.version_id, hash))
}

/// Every disablement in force, oldest first.
pub(super) fn disabled(conn: &Connection) -> Result<Vec<Disablement>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT agent_id, version, disabled_by, reason, disabled_at
             FROM agent_switches ORDER BY disabled_at, switch_key",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Disablement {
                agent_id: r.get(0)?,
                version: r.get(1)?,
                by: r.get(2)?,
                reason: r.get(3)?,
                at: r.get(4)?,
            })
        })
        .map_err(unavailable)?;
    rows.collect::<Result<_, _>>().map_err(unavailable)
}

#[async_trait]
impl KillSwitchStore for SqliteStore {
    async fn disabled(&self) -> Result<Vec<Disablement>, StoreError> {
        self.with_control(|conn| disabled(conn)).await
    }

    async fn switch(&self, change: &Switch) -> Result<bool, StoreError> {
        let change = change.clone();
        self.with_control(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let (agent_id, version) = change.target();
            let key = switch_key(agent_id, version);
            let changed = match &change {
                Switch::Disable(d) => tx
                    .execute(
                        "INSERT INTO agent_switches
                             (switch_key, agent_id, version, disabled_by, reason, disabled_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (switch_key) DO UPDATE SET
                             disabled_by = excluded.disabled_by, reason = excluded.reason,
                             disabled_at = excluded.disabled_at",
                        params![key, d.agent_id, d.version, d.by, d.reason, d.at],
                    )
                    .map_err(unavailable)?,
                Switch::Enable { .. } => tx
                    .execute("DELETE FROM agent_switches WHERE switch_key = ?1", [&key])
                    .map_err(unavailable)?,
            };
            if changed == 0 {
                return Ok(false);
            }
            let (id, hash) = active_version(&tx)?;
            audit::append_control(&tx, &change.event((&id, &hash)))?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl crate::anomaly::ControlLog for SqliteStore {
    async fn append_control(&self, event: &crate::audit::ControlEvent) -> Result<(), StoreError> {
        let event = event.clone();
        self.with_control(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            audit::append_control(&tx, &event)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }
}
