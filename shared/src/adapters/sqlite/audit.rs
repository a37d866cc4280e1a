//! The audit trail in the embedded store: chain columns on `decisions`, the
//! `control_events` chain, signed `audit_digests`, and the reads behind
//! `govctl audit verify | explain | export`.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::OffsetDateTime;

use super::{unavailable, SqliteStore};
use crate::audit::chain::DECISION_PARTITIONS;
use crate::audit::digest::key_id;
use crate::audit::explain::{PolicyStory, Story};
use crate::audit::{
    link_hash, partition_of, ChainEntry, ControlEvent, Digest, DigestHead, MinDigest, Report,
    SignedDigest, Verifier, CONTROL_PARTITION, GENESIS,
};
use crate::auth::LocalKeys;
use crate::clock::rfc3339;
use crate::model::DecisionRecord;
use crate::policy::{compile, PolicyBundle};
use crate::ports::{PolicyVersion, StoreError};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Adds the chain columns to a store made before them, and chains the
/// records it holds, oldest first, so that every record is covered.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('decisions')")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(unavailable)?;
    for name in ["partition", "seq", "prev_hash", "hash"] {
        if !existing.iter().any(|c| c == name) {
            let ty = if name == "seq" { "INTEGER" } else { "TEXT" };
            conn.execute_batch(&format!("ALTER TABLE decisions ADD COLUMN {name} {ty}"))
                .map_err(unavailable)?;
        }
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS decisions_chain ON decisions (partition, seq)",
    )
    .map_err(unavailable)?;
    let unchained: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM decisions WHERE partition IS NULL",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if unchained > 0 && existing.iter().all(|c| c != "partition") {
        chain_legacy(conn)?;
    }
    Ok(())
}

/// Chains the decisions a store held before chaining existed, in the order
/// they were written. Only ever run in the migration that adds the columns:
/// afterwards an unchained record is evidence of tampering, not history.
fn chain_legacy(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(unavailable)?;
    let rows: Vec<(i64, String, String)> = tx
        .prepare(
            "SELECT rowid, agent_id, record FROM decisions WHERE partition IS NULL ORDER BY rowid",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(unavailable)?;
    tx.execute_batch("DROP TRIGGER IF EXISTS decisions_no_update")
        .map_err(unavailable)?;
    let mut heads: std::collections::HashMap<String, (u64, String)> = Default::default();
    for (rowid, agent, body) in rows {
        let partition = partition_of(&agent);
        let prev = match heads.get(&partition) {
            Some(h) => Some(h.clone()),
            None => head(&tx, &partition)?,
        };
        let e = ChainEntry::link(
            &partition,
            prev.as_ref().map(|(s, h)| (*s, h.as_str())),
            body,
        );
        tx.execute(
            "UPDATE decisions SET partition = ?1, seq = ?2, prev_hash = ?3, hash = ?4 WHERE rowid = ?5",
            params![e.partition, e.seq, e.prev_hash, e.hash, rowid],
        )
        .map_err(unavailable)?;
        heads.insert(partition, (e.seq, e.hash));
    }
    tx.execute_batch(
        "CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
         BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;",
    )
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

/// The head (position, link) of a decision chain.
pub(super) fn head(
    conn: &Connection,
    partition: &str,
) -> Result<Option<(u64, String)>, StoreError> {
    conn.prepare_cached(
        "SELECT seq, hash FROM decisions WHERE partition = ?1 ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row([partition], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    })
    .map_err(unavailable)
}

/// Inserts one decision linked after its chain's head, inside the caller's
/// (immediate) write transaction.
pub(super) fn insert_chained(
    tx: &Connection,
    r: &DecisionRecord,
    json: String,
) -> Result<(), StoreError> {
    let partition = partition_of(&r.agent_id);
    let prev = head(tx, &partition)?;
    let e = ChainEntry::link(
        &partition,
        prev.as_ref().map(|(s, h)| (*s, h.as_str())),
        json,
    );
    tx.execute(
        insert_decision!(),
        params![
            r.decision_id,
            r.agent_id,
            r.timestamp,
            r.decision.as_str(),
            r.idempotency_key,
            e.body,
            e.partition,
            e.seq,
            e.prev_hash,
            e.hash
        ],
    )
    .map_err(unavailable)?;
    Ok(())
}

fn control_head(conn: &Connection) -> Result<Option<(u64, String)>, StoreError> {
    conn.query_row(
        "SELECT seq, hash FROM control_events ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(unavailable)
}

/// Chains and stores a control-plane event, inside the caller's transaction.
pub(super) fn append_control(tx: &Transaction<'_>, event: &ControlEvent) -> Result<(), StoreError> {
    let body = serde_json::to_string(event).map_err(corrupt)?;
    let prev = control_head(tx)?;
    let e = ChainEntry::link(
        CONTROL_PARTITION,
        prev.as_ref().map(|(s, h)| (*s, h.as_str())),
        body,
    );
    tx.execute(
        "INSERT INTO control_events (seq, event_id, timestamp, prev_hash, hash, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.seq, event.event_id, event.timestamp, e.prev_hash, e.hash, e.body],
    )
    .map_err(unavailable)?;
    Ok(())
}

fn stored_bundle(conn: &Connection, id: &str) -> Result<Option<PolicyBundle>, StoreError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT bundle FROM policy_versions WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    text.map(|t| serde_json::from_str(&t).map_err(corrupt))
        .transpose()
}

/// The event of a publication, with the diff against the parent version.
pub(super) fn published_event(
    conn: &Connection,
    version: &PolicyVersion,
    bundle: &PolicyBundle,
) -> Result<ControlEvent, StoreError> {
    let parent = match &version.parent {
        Some(p) => stored_bundle(conn, p)?,
        None => None,
    };
    Ok(ControlEvent::published(version, parent.as_ref(), bundle))
}

/// The event of an activation: a rollback when the version is older than the
/// one it replaces, with the diff between the two either way.
pub(super) fn activated_event(
    conn: &Connection,
    previous: Option<&str>,
    version_id: &str,
    by: &str,
    at: &str,
) -> Result<ControlEvent, StoreError> {
    let created = |id: &str| -> Result<(String, String), StoreError> {
        conn.query_row(
            "SELECT created_at, content_hash FROM policy_versions WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(unavailable)
    };
    let (created_at, content_hash) = created(version_id)?;
    let rollback = match previous {
        Some(p) => created(p)?.0 > created_at,
        None => false,
    };
    let old = match previous {
        Some(p) => stored_bundle(conn, p)?.map(|b| (p, b)),
        None => None,
    };
    let new = stored_bundle(conn, version_id)?.unwrap_or_default();
    Ok(ControlEvent::activated(
        (version_id, &content_hash, &new),
        old.as_ref().map(|(p, b)| (*p, b)),
        rollback,
        by,
        at,
    ))
}

/// Every chain's head now, control chain first.
fn heads(conn: &Connection) -> Result<Vec<DigestHead>, StoreError> {
    let mut out = Vec::new();
    if let Some((seq, hash)) = control_head(conn)? {
        out.push(DigestHead {
            partition: CONTROL_PARTITION.to_owned(),
            seq,
            hash,
        });
    }
    for p in 0..DECISION_PARTITIONS {
        let partition = format!("d{p:x}");
        if let Some((seq, hash)) = head(conn, &partition)? {
            out.push(DigestHead {
                partition,
                seq,
                hash,
            });
        }
    }
    Ok(out)
}

fn chain_entry(r: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<ChainEntry> {
    Ok(ChainEntry {
        partition: r.get(offset)?,
        seq: r.get(offset + 1)?,
        prev_hash: r.get(offset + 2)?,
        hash: r.get(offset + 3)?,
        body: r.get(offset + 4)?,
    })
}

const DECISION_ENTRY: &str = "partition, seq, prev_hash, hash, record";
const CONTROL_ENTRY: &str = "'control', seq, prev_hash, hash, event";

/// Which columns of a decision row disagree with its record's bytes.
fn column_mismatch(
    body: &str,
    id: &str,
    agent: &str,
    timestamp: &str,
    decision: &str,
    key: Option<&str>,
) -> Option<String> {
    let r: DecisionRecord = serde_json::from_str(body).ok()?;
    let mut wrong = Vec::new();
    if r.decision_id != id {
        wrong.push("decision_id");
    }
    if r.agent_id != agent {
        wrong.push("agent_id");
    }
    if r.timestamp != timestamp {
        wrong.push("timestamp");
    }
    if r.decision.as_str() != decision {
        wrong.push("decision");
    }
    if r.idempotency_key.as_deref() != key {
        wrong.push("idempotency_key");
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "its indexed columns ({}) disagree with its record: the row was modified",
            wrong.join(", ")
        )
    })
}

impl SqliteStore {
    /// Writes a signed digest of every chain's head, unless nothing was
    /// appended since the last one. Safe beside a running writer: the heads
    /// are read in the digest's own write transaction.
    pub fn write_digest(
        &self,
        keys: &LocalKeys,
        at: OffsetDateTime,
    ) -> Result<Option<Digest>, StoreError> {
        self.blocking(|conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let heads = heads(&tx)?;
            let last: Option<(u64, String, String)> = tx
                .query_row(
                    "SELECT digest_seq, hash, body FROM audit_digests ORDER BY digest_seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            if let Some((_, _, body)) = &last {
                let previous: Digest = serde_json::from_str(body).map_err(corrupt)?;
                if previous.heads == heads {
                    return Ok(None);
                }
            }
            if heads.is_empty() {
                return Ok(None);
            }
            let digest = Digest {
                digest_seq: last.as_ref().map_or(1, |(n, _, _)| n + 1),
                created_at: rfc3339(at),
                previous_digest_hash: last.map_or_else(|| GENESIS.to_owned(), |(_, h, _)| h),
                records: heads.iter().map(|h| h.seq).sum(),
                heads,
                key_id: Some(key_id(&keys.public_key())),
            };
            let sign = |m: &[u8]| keys.sign(m);
            let signed = SignedDigest::new(&digest, Some(&sign));
            tx.execute(
                "INSERT INTO audit_digests (digest_seq, created_at, body, hash, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![digest.digest_seq, digest.created_at, signed.body, signed.hash, signed.signature],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(Some(digest))
        })
    }

    /// How many records the audit trail holds (both layers).
    pub fn audit_records(&self) -> Result<u64, StoreError> {
        self.blocking(|conn| {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM decisions) + (SELECT COUNT(*) FROM control_events)",
                [],
                |r| r.get(0),
            )
            .map_err(unavailable)
        })
    }

    /// Verifies every digest and every chained record. `progress` is told
    /// how many records were read so far, now and then.
    /// With `kept`, the digest a verifier kept must be among them (or
    /// older than the newest), or the trail's tail was cut.
    pub fn verify_audit(
        &self,
        trusted_key: Option<[u8; 32]>,
        kept: Option<MinDigest>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Report, StoreError> {
        self.blocking(|conn| {
            // One read transaction: a snapshot, however long the walk takes.
            let tx = conn.transaction().map_err(unavailable)?;
            let mut verifier = Verifier::new(trusted_key);
            if let Some(kept) = kept {
                verifier.require_digest(kept);
            }
            let digests: Vec<SignedDigest> = tx
                .prepare("SELECT body, hash, signature FROM audit_digests ORDER BY digest_seq")
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok(SignedDigest {
                            body: r.get(0)?,
                            hash: r.get(1)?,
                            signature: r.get(2)?,
                        })
                    })?
                    .collect()
                })
                .map_err(unavailable)?;
            verifier.digests(digests);
            let mut seen = 0u64;
            {
                let mut stmt = tx
                    .prepare(&format!("SELECT {CONTROL_ENTRY} FROM control_events ORDER BY seq"))
                    .map_err(unavailable)?;
                let mut rows = stmt.query([]).map_err(unavailable)?;
                while let Some(row) = rows.next().map_err(unavailable)? {
                    verifier.entry(&chain_entry(row, 0).map_err(unavailable)?);
                    seen += 1;
                }
            }
            progress(seen);
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT decision_id, agent_id, timestamp, decision, idempotency_key, {DECISION_ENTRY}
                     FROM decisions ORDER BY partition, seq"
                ))
                .map_err(unavailable)?;
            let mut rows = stmt.query([]).map_err(unavailable)?;
            while let Some(row) = rows.next().map_err(unavailable)? {
                seen += 1;
                if seen.is_multiple_of(4096) {
                    progress(seen);
                }
                let partition: Option<String> = row.get(5).map_err(unavailable)?;
                let id: String = row.get(0).map_err(unavailable)?;
                if partition.is_none() {
                    verifier.unchained(id);
                    continue;
                }
                let e = chain_entry(row, 5).map_err(unavailable)?;
                verifier.entry(&e);
                let (agent, ts, decision, key): (String, String, String, Option<String>) = (
                    row.get(1).map_err(unavailable)?,
                    row.get(2).map_err(unavailable)?,
                    row.get(3).map_err(unavailable)?,
                    row.get(4).map_err(unavailable)?,
                );
                if let Some(problem) = column_mismatch(&e.body, &id, &agent, &ts, &decision, key.as_deref()) {
                    verifier.inconsistent(&e, problem);
                }
            }
            progress(seen);
            Ok(verifier.finish())
        })
    }

    /// The signed digests made before `until`, oldest first.
    pub fn audit_digests(&self, until: &str) -> Result<Vec<SignedDigest>, StoreError> {
        let until = until.to_owned();
        self.blocking(move |conn| {
            conn.prepare(
                "SELECT body, hash, signature FROM audit_digests WHERE created_at < ?1 ORDER BY digest_seq",
            )
            .and_then(|mut s| {
                s.query_map([until], |r| {
                    Ok(SignedDigest {
                        body: r.get(0)?,
                        hash: r.get(1)?,
                        signature: r.get(2)?,
                    })
                })?
                .collect()
            })
            .map_err(unavailable)
        })
    }

    /// How many records fall in `[since, until)`.
    pub fn audit_count(&self, since: &str, until: &str) -> Result<u64, StoreError> {
        let (since, until) = (since.to_owned(), until.to_owned());
        self.blocking(move |conn| {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM decisions WHERE timestamp >= ?1 AND timestamp < ?2)
                      + (SELECT COUNT(*) FROM control_events WHERE timestamp >= ?1 AND timestamp < ?2)",
                params![since, until],
                |r| r.get(0),
            )
            .map_err(unavailable)
        })
    }

    /// Streams the chained records in `[since, until)` (RFC 3339 strings),
    /// both layers merged in time order, to `sink`.
    pub fn export_audit(
        &self,
        since: &str,
        until: &str,
        sink: &mut dyn FnMut(&ChainEntry) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.blocking(|conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let control: Vec<(String, ChainEntry)> = tx
                .prepare(&format!(
                    "SELECT timestamp, {CONTROL_ENTRY} FROM control_events
                     WHERE timestamp >= ?1 AND timestamp < ?2 ORDER BY timestamp, seq"
                ))
                .and_then(|mut s| {
                    s.query_map(params![since, until], |r| {
                        Ok((r.get(0)?, chain_entry(r, 1)?))
                    })?
                    .collect()
                })
                .map_err(unavailable)?;
            let mut control = control.into_iter().peekable();
            let mut n = 0u64;
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT timestamp, {DECISION_ENTRY} FROM decisions
                     WHERE timestamp >= ?1 AND timestamp < ?2 AND partition IS NOT NULL
                     ORDER BY timestamp, decision_id"
                ))
                .map_err(unavailable)?;
            let mut rows = stmt.query(params![since, until]).map_err(unavailable)?;
            while let Some(row) = rows.next().map_err(unavailable)? {
                let ts: String = row.get(0).map_err(unavailable)?;
                while let Some((_, c)) = control.next_if(|(t, _)| *t <= ts) {
                    sink(&c)?;
                    n += 1;
                }
                sink(&chain_entry(row, 1).map_err(unavailable)?)?;
                n += 1;
            }
            for (_, c) in control {
                sink(&c)?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// The records of chain `partition` at positions `first` to `last`, in
    /// position order (what is there: a missing position is left out).
    pub fn chain_run(
        &self,
        partition: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        let sql = if partition == CONTROL_PARTITION {
            format!(
                "SELECT {CONTROL_ENTRY} FROM control_events
                 WHERE ?1 = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq"
            )
        } else {
            format!(
                "SELECT {DECISION_ENTRY} FROM decisions
                 WHERE partition = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq"
            )
        };
        let (partition, first, last) = (partition.to_owned(), first, last);
        self.blocking(move |conn| {
            let mut stmt = conn.prepare(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params![partition, first, last], |r| chain_entry(r, 0))
                .and_then(Iterator::collect);
            rows.map_err(unavailable)
        })
    }

    /// The full id of the decision `id` names: a whole id, or a prefix of
    /// one decision's id (at least [`crate::ports::MIN_ID_PREFIX`] characters).
    pub fn resolve_decision(&self, id: &str) -> Result<String, StoreError> {
        let prefix = crate::ports::id_prefix(id)?;
        let given = id.to_owned();
        self.blocking(move |conn| {
            // A range rather than LIKE, so that the primary key's index
            // serves it: '~' sorts after every hex digit and '-'.
            let mut stmt = conn
                .prepare(
                    "SELECT decision_id FROM decisions WHERE decision_id >= ?1 \
                     AND decision_id < ?1 || '~' ORDER BY decision_id LIMIT ?2",
                )
                .map_err(unavailable)?;
            let ids: Vec<String> = stmt
                .query_map(
                    rusqlite::params![prefix, crate::ports::LISTED_MATCHES],
                    |r| r.get(0),
                )
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            if ids.contains(&prefix) {
                return Ok(prefix);
            }
            crate::ports::one_match(&given, ids, String::as_str)
        })
    }

    /// Everything known about one decision, for `govctl audit explain`, by
    /// its full id.
    pub fn story(&self, decision_id: &str) -> Result<Option<Story>, StoreError> {
        let id = decision_id.to_owned();
        self.blocking(move |conn| {
            let row: Option<StoryRow> = conn
                .query_row(
                    "SELECT record, partition, seq, hash FROM decisions WHERE decision_id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let Some((body, partition, seq, hash)) = row else {
                return Ok(None);
            };
            let record: DecisionRecord = serde_json::from_str(&body).map_err(corrupt)?;
            let position = match (partition, seq, hash) {
                (Some(p), Some(s), Some(h)) => Some((p, s, h)),
                _ => None,
            };
            let sealed_by = match &position {
                Some((p, s, _)) => first_seal(conn, p, *s)?,
                None => None,
            };
            let policy = policy_story(conn, &record)?;
            let control = control_for(conn, &record.policy_version, &record.timestamp)?;
            let containment = containment_for(conn, &record)?;
            let session = match &record.session_id {
                Some(session) => records(
                    conn,
                    "SELECT record FROM decisions
                     WHERE agent_id = ?1 AND json_extract(record, '$.session_id') = ?2
                       AND json_extract(record, '$.approval') IS NULL
                       AND json_extract(record, '$.execution') IS NULL
                     ORDER BY timestamp, decision_id",
                    params![record.agent_id, session],
                )?,
                None => Vec::new(),
            };
            let approval_id = record
                .approval_id
                .clone()
                .or_else(|| record.approval.as_ref().map(|a| a.approval_id.clone()));
            let approval_trail = match approval_id {
                Some(a) => records(
                    conn,
                    "SELECT record FROM decisions
                     WHERE json_extract(record, '$.approval_id') = ?1
                        OR json_extract(record, '$.approval.approval_id') = ?1
                     ORDER BY timestamp, decision_id",
                    params![a],
                )?,
                None => Vec::new(),
            };
            let execution = match &record.execution {
                Some(_) => None,
                None => records(
                    conn,
                    "SELECT record FROM decisions WHERE decision_id = ?1",
                    params![crate::gateway::outcome::execution_id(&record.decision_id)],
                )?
                .into_iter()
                .next(),
            };
            let tampered = link_problem(conn, &id)?;
            Ok(Some(Story {
                tampered,
                execution,
                record,
                position,
                sealed_by,
                policy,
                control,
                containment,
                session,
                approval_trail,
            }))
        })
    }
}

impl SqliteStore {
    /// What is wrong with decision `decision_id`'s place in its chain, if
    /// anything (`None` also when there is no such decision).
    pub fn link_problem(&self, decision_id: &str) -> Result<Option<String>, StoreError> {
        let id = decision_id.to_owned();
        self.blocking(move |conn| link_problem(conn, &id))
    }
}

/// Checks one record where it sits: its bytes against its link, its link
/// against its predecessor's, and its successor's against it (the whole
/// chain is `govctl audit verify`'s).
fn link_problem(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(Option<String>, Option<u64>)> = conn
        .query_row(
            "SELECT partition, seq FROM decisions WHERE decision_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(unavailable)?;
    let (partition, seq) = match row {
        None => return Ok(None),
        Some((Some(p), Some(s))) => (p, s),
        Some(_) => {
            return Ok(Some(
                "the record is on no chain: it was written outside the decision log".into(),
            ))
        }
    };
    let entries: Vec<ChainEntry> = conn
        .prepare(&format!(
            "SELECT {DECISION_ENTRY} FROM decisions WHERE partition = ?1 AND seq BETWEEN ?2 AND ?3 \
             ORDER BY seq"
        ))
        .and_then(|mut s| {
            s.query_map(params![partition, seq.saturating_sub(1), seq + 1], |r| {
                chain_entry(r, 0)
            })?
            .collect()
        })
        .map_err(unavailable)?;
    let at = |n: u64| entries.iter().filter(|e| e.seq == n).collect::<Vec<_>>();
    let [this] = at(seq)[..] else {
        return Ok(Some(format!(
            "position {seq} of chain {partition} holds more than one record"
        )));
    };
    if link_hash(&this.partition, this.seq, &this.prev_hash, &this.body) != this.hash {
        return Ok(Some(
            "the record's bytes do not match its link: it was modified after it was written".into(),
        ));
    }
    if seq == 1 {
        if this.prev_hash != GENESIS {
            return Ok(Some(
                "the chain's first record does not start from its origin".into(),
            ));
        }
    } else {
        match at(seq - 1)[..] {
            [prev] if prev.hash == this.prev_hash => {}
            [] => {
                return Ok(Some(format!(
                    "its predecessor, position {} of chain {partition}, is missing",
                    seq - 1
                )))
            }
            _ => {
                return Ok(Some(format!(
                    "it does not follow its predecessor, position {} of chain {partition}",
                    seq - 1
                )))
            }
        }
    }
    if let [next] = at(seq + 1)[..] {
        if next.prev_hash != this.hash
            || link_hash(&next.partition, next.seq, &next.prev_hash, &next.body) != next.hash
        {
            return Ok(Some(format!(
                "its successor, position {} of chain {partition}, does not follow it",
                seq + 1
            )));
        }
    }
    Ok(None)
}

/// A decision row: record, partition, position, link.
type StoryRow = (String, Option<String>, Option<u64>, Option<String>);

fn records(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DecisionRecord>, StoreError> {
    let bodies: Vec<String> = conn
        .prepare(sql)
        .and_then(|mut s| s.query_map(params, |r| r.get(0))?.collect())
        .map_err(unavailable)?;
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).map_err(corrupt))
        .collect()
}

/// The first digest whose head of `partition` is at or past `seq`.
fn first_seal(
    conn: &Connection,
    partition: &str,
    seq: u64,
) -> Result<Option<(u64, String)>, StoreError> {
    let digests: Vec<(u64, String, String)> = conn
        .prepare("SELECT digest_seq, created_at, body FROM audit_digests ORDER BY digest_seq")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(unavailable)?;
    for (n, at, body) in digests {
        let d: Digest = serde_json::from_str(&body).map_err(corrupt)?;
        if d.heads
            .iter()
            .any(|h| h.partition == partition && h.seq >= seq)
        {
            return Ok(Some((n, at)));
        }
    }
    Ok(None)
}

/// The deciding version, the determining policies' text, and the agent and
/// tool as that version registered them.
fn policy_story(
    conn: &Connection,
    record: &DecisionRecord,
) -> Result<Option<PolicyStory>, StoreError> {
    let row: Option<(PolicyVersion, String)> = conn
        .query_row(
            "SELECT id, content_hash, parent, author, message, created_at, bundle FROM policy_versions WHERE id = ?1",
            [&record.policy_version],
            |r| Ok((super::version_from_row(r)?, r.get(6)?)),
        )
        .optional()
        .map_err(unavailable)?;
    let Some((version, bundle)) = row else {
        return Ok(None);
    };
    let bundle: PolicyBundle = serde_json::from_str(&bundle).map_err(corrupt)?;
    let Ok(compiled) = compile(&bundle) else {
        return Ok(Some(PolicyStory {
            version,
            sources: Default::default(),
            agent: None,
            tool: None,
        }));
    };
    let sources = record
        .determining_policies
        .iter()
        .filter_map(|id| compiled.sources.get(id).map(|s| (id.clone(), s.clone())))
        .collect();
    Ok(Some(PolicyStory {
        version,
        sources,
        agent: compiled
            .registry
            .agents
            .iter()
            .find(|a| a.id == record.agent_id)
            .cloned(),
        tool: compiled
            .registry
            .tools
            .iter()
            .find(|t| t.id == record.tool_id)
            .cloned(),
    }))
}

/// The kill-switch event in force for `record`'s agent when it was made: the
/// agent's last switch before it, if that disabled the agent (or the version
/// it ran).
fn containment_for(
    conn: &Connection,
    record: &DecisionRecord,
) -> Result<Option<ControlEvent>, StoreError> {
    let switches = control_events(
        conn,
        "json_extract(event, '$.agent_id') = ?1 AND timestamp <= ?2
         AND json_extract(event, '$.action') IN ('agent_disabled', 'agent_enabled')
         ORDER BY seq DESC",
        params![record.agent_id, record.timestamp],
    )?;
    Ok(switches
        .into_iter()
        .find(|e| match &e.agent_version {
            None => true,
            Some(v) => record.agent_version.as_deref() == Some(v.as_str()),
        })
        .filter(|e| e.action == crate::audit::ControlAction::AgentDisabled))
}

/// The control events `condition` (with its ordering) selects, decoded.
fn control_events(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<ControlEvent>, StoreError> {
    let bodies: Vec<String> = conn
        .prepare(&format!(
            "SELECT event FROM control_events WHERE {condition}"
        ))
        .and_then(|mut s| s.query_map(params, |r| r.get(0))?.collect())
        .map_err(unavailable)?;
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).map_err(corrupt))
        .collect()
}

/// The publication of `version` and its activations up to `until`.
fn control_for(
    conn: &Connection,
    version: &str,
    until: &str,
) -> Result<Vec<ControlEvent>, StoreError> {
    control_events(
        conn,
        "json_extract(event, '$.version_id') = ?1 AND timestamp <= ?2
         AND json_extract(event, '$.agent_id') IS NULL
         ORDER BY seq",
        params![version, until],
    )
}
