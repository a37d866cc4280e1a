//! Approvals in the embedded store, with the DynamoDB adapter's semantics:
//! every change of status is one conditional write, an answer needs the
//! waiting step's token and an unexpired approval, an outcome that settles
//! an approval is written in the same transaction as its record, and
//! approver links are found by the hash of their review id.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{unavailable, SqliteStore};
use crate::limits::{Charge, Charged};
use crate::model::ApprovalStatus;
use crate::model::DecisionRecord;
use crate::ports::{
    ApprovalItem, ApprovalRequest, ApprovalStore, CallKey, Decided, GrantUse, HumanDecision,
    ReviewKey, Settled, StoreError, TaskToken,
};

/// Columns added to the foundation's `approvals` table, for stores created before them.
pub(super) const COLUMNS: [(&str, &str); 7] = [
    ("task_token", "TEXT"),
    ("review_key", "TEXT"),
    ("approver", "TEXT"),
    ("comment", "TEXT"),
    ("decided_at", "TEXT"),
    ("grant_used_at", "TEXT"),
    ("call_key", "TEXT"),
];

/// Adds the columns a store created by an older build lacks.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('approvals')")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(unavailable)?;
    for (name, ty) in COLUMNS {
        if !existing.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE approvals ADD COLUMN {name} {ty}"))
                .map_err(unavailable)?;
        }
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS approvals_review ON approvals (review_key)
         WHERE review_key IS NOT NULL;
         CREATE INDEX IF NOT EXISTS approvals_call ON approvals (call_key, created_at)
         WHERE call_key IS NOT NULL",
    )
    .map_err(unavailable)
}

/// request, status, approver, comment, decided_at, task_token, grant_used_at.
type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const SELECT: &str = "SELECT request, status, approver, comment, decided_at, task_token, \
     grant_used_at FROM approvals";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn status_from(text: String) -> Result<ApprovalStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(text))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_row(row: Row) -> Result<ApprovalItem, StoreError> {
    let (request, status, approver, comment, decided_at, token, used) = row;
    Ok(ApprovalItem {
        request: serde_json::from_str::<ApprovalRequest>(&request)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        status: status_from(status)?,
        approver,
        comment,
        decided_at,
        task_token: token.map(TaskToken),
        grant_used_at: used,
    })
}

fn item(conn: &Connection, filter: &str, key: &str) -> Result<Option<ApprovalItem>, StoreError> {
    conn.query_row(&format!("{SELECT} WHERE {filter} = ?1"), [key], row)
        .optional()
        .map_err(unavailable)?
        .map(from_row)
        .transpose()
}

impl SqliteStore {
    /// The approvals no workflow has closed yet (`pending`, or `approved`
    /// and not yet granted), oldest first: what `govctl serve` resumes when
    /// it starts.
    pub async fn unfinished_approvals(&self) -> Result<Vec<ApprovalItem>, StoreError> {
        self.with_control(|conn| {
            let rows: Vec<Row> = conn
                .prepare(&format!(
                    "{SELECT} WHERE status IN ('pending', 'approved') ORDER BY created_at"
                ))
                .and_then(|mut s| s.query_map([], row)?.collect())
                .map_err(unavailable)?;
            rows.into_iter().map(from_row).collect()
        })
        .await
    }
}

#[async_trait]
impl crate::ports::ApprovalInbox for SqliteStore {
    async fn pending_for(
        &self,
        groups: &[String],
        limit: usize,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        let groups = groups.to_vec();
        self.with_control(move |conn| {
            let rows: Vec<Row> = conn
                .prepare(&format!(
                    "{SELECT} WHERE status = 'pending' ORDER BY created_at DESC"
                ))
                .and_then(|mut s| s.query_map([], row)?.collect())
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for r in rows {
                let item = from_row(r)?;
                let mine = item
                    .request
                    .approver_group
                    .as_ref()
                    .is_some_and(|g| groups.contains(g));
                if mine {
                    out.push(item);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn answered_by(
        &self,
        approver: &str,
        limit: usize,
    ) -> Result<Vec<ApprovalItem>, StoreError> {
        let (approver, limit) = (
            approver.to_owned(),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        self.with_control(move |conn| {
            let rows: Vec<Row> = conn
                .prepare(&format!(
                    "{SELECT} WHERE approver = ?1 ORDER BY decided_at DESC LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(rusqlite::params![approver, limit], row)?
                        .collect()
                })
                .map_err(unavailable)?;
            rows.into_iter().map(from_row).collect()
        })
        .await
    }
}

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn record_pending(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (id, decision_id, created, expires) = (
            request.approval_id.clone(),
            request.decision.decision_id.clone(),
            request.decision.timestamp.clone(),
            request.expires_at.clone(),
        );
        let call = CallKey::of(&request.decision).0;
        self.with_control(move |conn| {
            conn.execute(
                "INSERT INTO approvals (approval_id, decision_id, status, created_at, expires_at, request, call_key)
                 VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6) ON CONFLICT (approval_id) DO NOTHING",
                params![id, decision_id, created, expires, json, call],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn attach_token(
        &self,
        approval_id: &str,
        token: &TaskToken,
        review: &ReviewKey,
    ) -> Result<ApprovalItem, StoreError> {
        let (id, token, review) = (approval_id.to_owned(), token.0.clone(), review.0.clone());
        self.with_control(move |conn| {
            let n = conn
                .execute(
                    "UPDATE approvals SET task_token = ?1, review_key = ?2
                     WHERE approval_id = ?3 AND status = 'pending'",
                    params![token, review, id],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("pending approval `{id}`")));
            }
            item(conn, "approval_id", &id)?
                .ok_or_else(|| StoreError::NotFound(format!("approval `{id}`")))
        })
        .await
    }

    async fn get(&self, approval_id: &str) -> Result<Option<ApprovalItem>, StoreError> {
        let id = approval_id.to_owned();
        self.with_control(move |conn| item(conn, "approval_id", &id))
            .await
    }

    async fn open_for_call(&self, call: &CallKey) -> Result<Option<ApprovalItem>, StoreError> {
        let key = call.0.clone();
        self.with_control(move |conn| {
            conn.query_row(
                &format!(
                    "{SELECT} WHERE call_key = ?1 AND (status IN ('pending', 'approved') \
                     OR (status = 'granted' AND grant_used_at IS NULL)) \
                     ORDER BY created_at DESC LIMIT 1"
                ),
                [key],
                row,
            )
            .optional()
            .map_err(unavailable)?
            .map(from_row)
            .transpose()
        })
        .await
    }

    async fn find_by_review(&self, review: &ReviewKey) -> Result<Option<ApprovalItem>, StoreError> {
        let key = review.0.clone();
        self.with_control(move |conn| item(conn, "review_key", &key))
            .await
    }

    async fn decide(
        &self,
        approval_id: &str,
        answer: &HumanDecision,
    ) -> Result<Decided, StoreError> {
        let (id, answer) = (approval_id.to_owned(), answer.clone());
        self.with_control(move |conn| {
            let token: Option<String> = conn
                .query_row(
                    "UPDATE approvals SET status = ?1, approver = ?2, comment = ?3, decided_at = ?4
                     WHERE approval_id = ?5 AND status = 'pending' AND expires_at > ?4
                       AND task_token IS NOT NULL
                     RETURNING task_token",
                    params![
                        answer.status.as_str(),
                        answer.approver,
                        answer.comment,
                        answer.decided_at,
                        id
                    ],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            if let Some(token) = token {
                return Ok(Decided::Recorded(TaskToken(token)));
            }
            Ok(Decided::refused(
                item(conn, "approval_id", &id)?.as_ref(),
                &answer.decided_at,
            ))
        })
        .await
    }

    async fn close(&self, approval_id: &str, status: ApprovalStatus) -> Result<(), StoreError> {
        let id = approval_id.to_owned();
        self.with_control(move |conn| {
            conn.execute(
                "UPDATE approvals SET status = ?1, task_token = NULL
                 WHERE approval_id = ?2 AND status = 'pending'",
                params![status.as_str(), id],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn settle(
        &self,
        approval_id: &str,
        from: &[ApprovalStatus],
        to: ApprovalStatus,
        record: &DecisionRecord,
    ) -> Result<Settled, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (id, from, r) = (approval_id.to_owned(), from.to_vec(), record.clone());
        self.with_control(move |conn| {
            // Immediate: the status is read and changed, and the chain's head
            // read and extended, in one write transaction.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let held: Option<String> = tx
                .query_row(
                    "SELECT status FROM approvals WHERE approval_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            let Some(held) = held else {
                return Ok(Settled::NotFound);
            };
            let held = status_from(held)?;
            if !from.contains(&held) {
                return Ok(Settled::Held(held));
            }
            tx.execute(
                "UPDATE approvals SET status = ?1, task_token = NULL WHERE approval_id = ?2",
                params![to.as_str(), id],
            )
            .map_err(unavailable)?;
            // Outcome ids derive from the approval and the outcome: one
            // already there was appended by an earlier path and stands.
            let recorded = tx
                .query_row(
                    "SELECT 1 FROM decisions WHERE decision_id = ?1",
                    [&r.decision_id],
                    |_| Ok(()),
                )
                .optional()
                .map_err(unavailable)?
                .is_some();
            if !recorded {
                super::audit::insert_chained(&tx, &r, json)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(Settled::Recorded)
        })
        .await
    }

    async fn reattach_token(
        &self,
        approval_id: &str,
        token: &TaskToken,
    ) -> Result<ApprovalItem, StoreError> {
        let (id, token) = (approval_id.to_owned(), token.0.clone());
        self.with_control(move |conn| {
            let n = conn
                .execute(
                    "UPDATE approvals SET task_token = ?1
                     WHERE approval_id = ?2 AND status = 'pending'",
                    params![token, id],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("pending approval `{id}`")));
            }
            item(conn, "approval_id", &id)?
                .ok_or_else(|| StoreError::NotFound(format!("approval `{id}`")))
        })
        .await
    }

    async fn use_grant(
        &self,
        approval_id: &str,
        record: &DecisionRecord,
        decided_after: &str,
        charges: &[Charge],
    ) -> Result<GrantUse, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (id, after, r, charges) = (
            approval_id.to_owned(),
            decided_after.to_owned(),
            record.clone(),
            charges.to_vec(),
        );
        self.with_control(move |conn| {
            // Immediate: the chain's head is read and extended in one write transaction.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let used = tx
                .execute(
                    "UPDATE approvals SET grant_used_at = ?1
                     WHERE approval_id = ?2 AND status = 'granted' AND grant_used_at IS NULL
                       AND decided_at > ?3
                       AND json_extract(request, '$.decision.agent_id') = ?4
                       AND json_extract(request, '$.decision.user_id') = ?5
                       AND json_extract(request, '$.decision.tool_id') = ?6
                       AND json_extract(request, '$.decision.arguments_hash') = ?7
                       AND json_extract(request, '$.decision.policy_version') = ?8",
                    params![
                        r.timestamp,
                        id,
                        after,
                        r.agent_id,
                        r.user_id,
                        r.tool_id,
                        r.arguments_hash,
                        r.policy_version
                    ],
                )
                .map_err(unavailable)?;
            if used == 0 {
                return Ok(GrantUse::Unusable);
            }
            // Dropped without commit on a refusal: the grant stays unused.
            if let Charged::Refused { index, current } =
                super::counters::apply(&tx, &charges).map_err(unavailable)?
            {
                return Ok(GrantUse::OverLimit { index, current });
            }
            super::audit::insert_chained(&tx, &r, json)?;
            tx.commit().map_err(unavailable)?;
            Ok(GrantUse::Used)
        })
        .await
    }
}
