//! The counters of rate limits, runs and budgets, in `limit_counters`.
//!
//! Charges are applied inside the write transaction of whatever they go
//! with (the group commit of a decision, the use of a grant, a usage
//! report). Every write transaction on the database is IMMEDIATE, so the
//! check and the update of a counter are never interleaved with another
//! writer's: the limit is exact.

use rusqlite::{params, Connection, OptionalExtension};

use crate::limits::{Amounts, Charge, Charged, Counter, RunOwner};

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// One counter, if it exists.
pub(super) fn read(
    conn: &Connection,
    key: &str,
    window_start: i64,
) -> rusqlite::Result<Option<Counter>> {
    conn.prepare_cached(
        "SELECT calls, cost_micros, tokens, started_at, user_id, organization
         FROM limit_counters WHERE key = ?1 AND window_start = ?2",
    )?
    .query_row(params![key, window_start], |r| {
        let started_at: Option<i64> = r.get(3)?;
        let user_id: Option<String> = r.get(4)?;
        Ok(Counter {
            used: Amounts {
                calls: to_u64(r.get(0)?),
                cost_micros: to_u64(r.get(1)?),
                tokens: to_u64(r.get(2)?),
            },
            owner: match (started_at, user_id) {
                (Some(started_at), Some(user_id)) => Some(RunOwner {
                    started_at,
                    user_id,
                    organization: r.get(5)?,
                }),
                _ => None,
            },
        })
    })
    .optional()
}

/// Checks every charge, then applies them all; applies none if one is
/// refused. Runs inside the caller's write transaction.
pub(super) fn apply(conn: &Connection, charges: &[Charge]) -> rusqlite::Result<Charged> {
    for (index, charge) in charges.iter().enumerate() {
        let current = read(conn, &charge.key, charge.window_start)?;
        if !charge.admits(current.as_ref()) {
            return Ok(Charged::Refused { index, current });
        }
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO limit_counters
             (key, window_start, calls, cost_micros, tokens, started_at, user_id, organization, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (key, window_start) DO UPDATE SET
             calls = calls + excluded.calls,
             cost_micros = cost_micros + excluded.cost_micros,
             tokens = tokens + excluded.tokens",
    )?;
    for c in charges {
        upsert.execute(params![
            c.key,
            c.window_start,
            to_i64(c.add.calls),
            to_i64(c.add.cost_micros),
            to_i64(c.add.tokens),
            c.owner.as_ref().map(|o| o.started_at),
            c.owner.as_ref().map(|o| o.user_id.as_str()),
            c.owner.as_ref().and_then(|o| o.organization.as_deref()),
            c.expires_at,
        ])?;
    }
    Ok(Charged::Applied)
}

/// Forgets the counters whose keep time has passed.
pub(super) fn prune(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM limit_counters WHERE expires_at < ?1", [now])
}
