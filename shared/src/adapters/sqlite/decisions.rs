//! `govctl decision list`: the recorded decisions that match a filter,
//! newest first, read from the embedded store.

use rusqlite::types::Value as SqlValue;

use super::{unavailable, SqliteStore};
use crate::model::DecisionRecord;
use crate::ports::StoreError;

/// Which decisions to list; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    /// The agent.
    pub agent_id: Option<String>,
    /// The user the agent acted for.
    pub user_id: Option<String>,
    /// The tool.
    pub tool_id: Option<String>,
    /// `allow`, `deny` or `pending_approval`.
    pub decision: Option<String>,
    /// From this time (RFC 3339), inclusive.
    pub since: Option<String>,
    /// Until this time (RFC 3339), exclusive.
    pub until: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl SqliteStore {
    /// The decisions `filter` selects, newest first. Records of approval
    /// steps and executions are decisions' companions, not decisions, and
    /// are left out.
    pub fn list_decisions(
        &self,
        filter: &DecisionFilter,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let mut sql = String::from("SELECT record FROM decisions WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        let mut add = |clause: &str, value: &Option<String>| {
            if let Some(v) = value {
                args.push(SqlValue::Text(v.clone()));
                sql.push_str(&format!(" AND {clause} ?{}", args.len()));
            }
        };
        add("agent_id =", &filter.agent_id);
        add("json_extract(record, '$.user_id') =", &filter.user_id);
        add("json_extract(record, '$.tool_id') =", &filter.tool_id);
        add("decision =", &filter.decision);
        add("timestamp >=", &filter.since);
        add("timestamp <", &filter.until);
        sql.push_str(" ORDER BY timestamp DESC, decision_id DESC");
        let limit = filter.limit;
        self.blocking(move |conn| {
            let mut stmt = conn.prepare(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                let text = row.map_err(unavailable)?;
                let record: DecisionRecord =
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if !record.is_decision() {
                    continue;
                }
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}
