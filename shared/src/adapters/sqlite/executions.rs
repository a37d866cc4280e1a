//! The gateway's exactly-once keys in the `executions` table: a claim is one
//! conditional upsert, so of any number of concurrent duplicates exactly
//! one finds the key free.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{unavailable, SqliteStore};
use crate::ports::{Claimed, ExecutionLedger, Held, StoreError};

#[async_trait]
impl ExecutionLedger for SqliteStore {
    async fn claim(
        &self,
        key: &str,
        attempt: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed, StoreError> {
        let (key, attempt) = (key.to_owned(), attempt.to_owned());
        self.with_control(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO executions (key, attempt, claimed_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key) DO UPDATE SET attempt = excluded.attempt,
                         decision_id = NULL, result = NULL,
                         claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
                     WHERE executions.expires_at <= ?3",
                    params![key, attempt, now, lease_until],
                )
                .map_err(unavailable)?;
            if changed == 1 {
                return Ok(Claimed::Yours);
            }
            let held: Option<(Option<String>, Option<String>, i64)> = conn
                .query_row(
                    "SELECT decision_id, result, claimed_at FROM executions WHERE key = ?1",
                    [&key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            match held {
                Some((Some(decision_id), Some(result), _)) => Ok(Claimed::Held(Held::Done {
                    decision_id,
                    result: serde_json::from_str(&result)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })),
                Some((_, _, since)) => Ok(Claimed::Held(Held::Running { since })),
                None => Err(StoreError::Unavailable(format!(
                    "exactly-once key `{key}` is neither free nor held"
                ))),
            }
        })
        .await
    }

    async fn complete(
        &self,
        key: &str,
        attempt: &str,
        decision_id: &str,
        result: &serde_json::Value,
        until: i64,
    ) -> Result<(), StoreError> {
        let (key, attempt, decision_id, result) = (
            key.to_owned(),
            attempt.to_owned(),
            decision_id.to_owned(),
            result.to_string(),
        );
        self.with_control(move |conn| {
            conn.execute(
                "UPDATE executions SET decision_id = ?3, result = ?4, expires_at = ?5
                 WHERE key = ?1 AND attempt = ?2",
                params![key, attempt, decision_id, result, until],
            )
            .map_err(unavailable)?;
            // Lapsed keys go as new ones are completed.
            conn.execute(
                "DELETE FROM executions WHERE expires_at < unixepoch() - 86400",
                [],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn release(&self, key: &str, attempt: &str) -> Result<(), StoreError> {
        let (key, attempt) = (key.to_owned(), attempt.to_owned());
        self.with_control(move |conn| {
            conn.execute(
                "DELETE FROM executions WHERE key = ?1 AND attempt = ?2 AND result IS NULL",
                params![key, attempt],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
