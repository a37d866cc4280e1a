//! The tamper-evidence suite: a log of thousands of records, chained and
//! sealed by a signed digest, is edited the way someone with write access to
//! the database file could (triggers and indexes dropped first): records
//! modified, deleted, reordered, inserted, and chains rewritten with
//! recomputed links. `verify` must catch every edit, name the chain it is
//! in, and pass on the untouched log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use governance::adapters::sqlite::{SqliteStore, DB_FILE};
use governance::audit::{link_hash, MinDigest, Report};
use governance::auth::LocalKeys;
use governance::model::{Decision, DecisionRecord, Reason, ReasonCode};
use governance::policy::PolicyBundle;
use governance::ports::{DecisionLog, PolicyStore, PublishRequest};
use proptest::prelude::*;
use rusqlite::{params, Connection};
use time::OffsetDateTime;

/// Records in the log under test.
const RECORDS: usize = 3_000;

fn record(i: usize) -> DecisionRecord {
    DecisionRecord {
        decision_id: format!("{i:08}-0000-7000-8000-000000000000"),
        trace_id: format!("trace-{i}"),
        timestamp: format!(
            "2026-01-07T12:{:02}:{:02}.{:03}Z",
            (i / 60) % 60,
            i % 60,
            i % 1000
        ),
        decision: if i.is_multiple_of(3) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reasons: vec![Reason {
            code: if i.is_multiple_of(3) {
                ReasonCode::ToolNotGranted
            } else {
                ReasonCode::Allowed
            },
            message: "m".into(),
            policy_id: None,
        }],
        determining_policies: vec![],
        errors: vec![],
        agent_id: format!("agent-{}", i % 40),
        agent_version: Some("1.0.0".into()),
        user_id: format!("user-{}", i % 7),
        user_roles: vec!["support".into()],
        tool_id: "search_kb".into(),
        requested_risk: None,
        arguments_hash: format!("sha256:{i:064x}"),
        arguments: Some(serde_json::json!({ "query": format!("q{i}") })),
        environment: "dev".into(),
        policy_version: "v".into(),
        policy_hash: "sha256:p".into(),
        session_id: Some(format!("s{}", i % 11)),
        run_id: None,
        limit: None,
        idempotency_key: i.is_multiple_of(5).then(|| format!("k{i}")),
        reasoning: Some("because".into()),
        latency_us: 20,
        approval_id: None,
        approval: None,
        execution: None,
        shadow: None,
    }
}

/// The untouched log, built once: control events, thousands of decisions
/// over every partition, and a digest sealing them all.
fn pristine() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = SqliteStore::open(&dir).unwrap();
            let now = OffsetDateTime::now_utc();
            for (n, text) in ["tools: []\n", "tools: []\nagents: []\n"]
                .iter()
                .enumerate()
            {
                let mut bundle = PolicyBundle::default();
                bundle.files.insert("registry.yaml".into(), (*text).into());
                let v = store
                    .publish(PublishRequest {
                        bundle,
                        author: "ana".into(),
                        message: format!("v{n}"),
                        at: now,
                    })
                    .await
                    .unwrap();
                store.activate(&v.id, "ana", now).await.unwrap();
            }
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..RECORDS {
                let store = store.clone();
                tasks.spawn(async move { store.append(&record(i)).await.unwrap() });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            let keys = LocalKeys::audit(&dir).unwrap();
            store
                .write_digest(&keys, OffsetDateTime::now_utc())
                .unwrap()
                .unwrap();
            store
                .blocking(|c| {
                    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                        .unwrap();
                    Ok(())
                })
                .unwrap();
        });
        dir
    })
}

/// A copy of the pristine log, and a connection to edit it with.
fn tamperable() -> (tempfile::TempDir, Connection) {
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(pristine().join(DB_FILE), copy.path().join(DB_FILE)).unwrap();
    std::fs::create_dir_all(copy.path().join("keys")).unwrap();
    for entry in std::fs::read_dir(pristine().join("keys")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            copy.path().join("keys").join(entry.file_name()),
        )
        .unwrap();
    }
    let conn = Connection::open(copy.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TRIGGER decisions_no_update; DROP TRIGGER decisions_no_delete;
         DROP TRIGGER control_events_no_update; DROP TRIGGER control_events_no_delete;
         DROP INDEX decisions_chain;",
    )
    .unwrap();
    (copy, conn)
}

fn verify(dir: &Path) -> Report {
    let store = SqliteStore::open(dir).unwrap();
    let key = LocalKeys::audit(dir).unwrap().public_key();
    store.verify_audit(Some(key), None, &mut |_| {}).unwrap()
}

/// (partition, seq) of the `n`th decision row, in chain order.
fn nth(conn: &Connection, n: u64) -> (String, u64) {
    conn.query_row(
        "SELECT partition, seq FROM decisions ORDER BY partition, seq LIMIT 1 OFFSET ?1",
        [n],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn link_of(conn: &Connection, partition: &str, seq: u64) -> String {
    if seq == 0 {
        return governance::audit::GENESIS.to_owned();
    }
    conn.query_row(
        "SELECT hash FROM decisions WHERE partition = ?1 AND seq = ?2",
        params![partition, seq],
        |r| r.get(0),
    )
    .unwrap()
}

/// Relinks every record of `partition` from `from` on, as an attacker who
/// knows the scheme would after an edit.
fn relink(conn: &Connection, partition: &str, from: u64) {
    let rows: Vec<(u64, String)> = conn
        .prepare(
            "SELECT seq, record FROM decisions WHERE partition = ?1 AND seq >= ?2 ORDER BY seq",
        )
        .unwrap()
        .query_map(params![partition, from], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = link_of(conn, partition, from - 1);
    for (seq, body) in rows {
        let hash = link_hash(partition, seq, &prev, &body);
        conn.execute(
            "UPDATE decisions SET prev_hash = ?1, hash = ?2 WHERE partition = ?3 AND seq = ?4",
            params![prev, hash, partition, seq],
        )
        .unwrap();
        prev = hash;
    }
}

#[derive(Debug, Clone, Copy)]
enum Edit {
    /// A field of the record's bytes changed.
    ModifyRecord,
    /// An indexed column changed, the record left alone.
    ModifyColumn,
    /// A record removed.
    Delete,
    /// Two records of one chain swapped.
    Reorder,
    /// A forged record linked in at a position, later ones shifted.
    Insert,
    /// A record modified and its chain relinked from there to the head.
    Rewrite,
    /// A control-plane event modified.
    ModifyControl,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::ModifyRecord),
        Just(Edit::ModifyColumn),
        Just(Edit::Delete),
        Just(Edit::Reorder),
        Just(Edit::Insert),
        Just(Edit::Rewrite),
        Just(Edit::ModifyControl),
    ]
}

/// Applies `edit` around the `at`th record; returns the chain it touched.
fn apply(conn: &Connection, edit: Edit, at: u64, other: u64) -> String {
    let (partition, seq) = nth(conn, at);
    let w = params![partition, seq];
    match edit {
        Edit::ModifyRecord => {
            conn.execute(
                "UPDATE decisions SET record = replace(record, '\"user_id\":\"', '\"user_id\":\"x') WHERE partition = ?1 AND seq = ?2",
                w,
            )
            .unwrap();
        }
        Edit::ModifyColumn => {
            conn.execute(
                "UPDATE decisions SET decision = CASE decision WHEN 'allow' THEN 'deny' ELSE 'allow' END WHERE partition = ?1 AND seq = ?2",
                w,
            )
            .unwrap();
        }
        Edit::Delete => {
            conn.execute("DELETE FROM decisions WHERE partition = ?1 AND seq = ?2", w)
                .unwrap();
        }
        Edit::Reorder => {
            let len: u64 = conn
                .query_row(
                    "SELECT MAX(seq) FROM decisions WHERE partition = ?1",
                    [&partition],
                    |r| r.get(0),
                )
                .unwrap();
            // Another record of the same chain; never the same one.
            let mut with = 1 + other % len;
            if with == seq {
                with = if seq == len { 1 } else { seq + 1 };
            }
            conn.execute_batch("BEGIN").unwrap();
            conn.execute(
                "UPDATE decisions SET seq = -1 WHERE partition = ?1 AND seq = ?2",
                w,
            )
            .unwrap();
            conn.execute(
                "UPDATE decisions SET seq = ?3 WHERE partition = ?1 AND seq = ?2",
                params![partition, with, seq],
            )
            .unwrap();
            conn.execute(
                "UPDATE decisions SET seq = ?2 WHERE partition = ?1 AND seq = -1",
                params![partition, with],
            )
            .unwrap();
            conn.execute_batch("COMMIT").unwrap();
        }
        Edit::Insert => {
            conn.execute(
                "UPDATE decisions SET seq = seq + 1000000 WHERE partition = ?1 AND seq >= ?2",
                w,
            )
            .unwrap();
            conn.execute(
                "UPDATE decisions SET seq = seq - 999999 WHERE partition = ?1 AND seq >= 1000000",
                [&partition],
            )
            .unwrap();
            let body: String = conn
                .query_row(
                    "SELECT record FROM decisions WHERE partition = ?1 AND seq = ?2",
                    params![partition, seq + 1],
                    |r| r.get(0),
                )
                .unwrap();
            let forged = body.replace("\"decision_id\":\"", "\"decision_id\":\"f");
            let id: String = serde_json::from_str::<serde_json::Value>(&forged).unwrap()
                ["decision_id"]
                .as_str()
                .unwrap()
                .to_owned();
            let prev = link_of(conn, &partition, seq - 1);
            let hash = link_hash(&partition, seq, &prev, &forged);
            conn.execute(
                "INSERT INTO decisions (decision_id, agent_id, timestamp, decision, idempotency_key, record, partition, seq, prev_hash, hash)
                 SELECT ?1, agent_id, timestamp, decision, NULL, ?2, partition, ?3, ?4, ?5 FROM decisions
                 WHERE partition = ?6 AND seq = ?7",
                params![id, forged, seq, prev, hash, partition, seq + 1],
            )
            .unwrap();
        }
        Edit::Rewrite => {
            conn.execute(
                "UPDATE decisions SET record = replace(record, '\"reasoning\":\"because\"', '\"reasoning\":\"rewritten\"') WHERE partition = ?1 AND seq = ?2",
                w,
            )
            .unwrap();
            relink(conn, &partition, seq);
        }
        Edit::ModifyControl => {
            let n: u64 = conn
                .query_row("SELECT COUNT(*) FROM control_events", [], |r| r.get(0))
                .unwrap();
            conn.execute(
                "UPDATE control_events SET event = replace(event, '\"actor\":\"ana\"', '\"actor\":\"eve\"') WHERE seq = ?1",
                [1 + other % n],
            )
            .unwrap();
            return "control".to_owned();
        }
    }
    partition
}

#[test]
fn the_untouched_log_verifies() {
    let report = verify(pristine());
    assert!(report.is_intact(), "{:#?}", report.findings);
    assert_eq!(
        report.records,
        RECORDS as u64 + 4,
        "decisions and control events"
    );
    assert_eq!(
        report.chains.len(),
        17,
        "16 decision chains and the control chain"
    );
    assert_eq!(report.digests, 1);
    assert_eq!(report.records_after_newest_digest, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 140, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_edit_is_caught_in_its_chain(edit in edit(), at in 0..RECORDS as u64, other in any::<u64>()) {
        let (dir, conn) = tamperable();
        let partition = apply(&conn, edit, at, other);
        drop(conn);
        let report = verify(dir.path());
        prop_assert!(!report.is_intact(), "{edit:?} at {at} went unnoticed");
        let first = report.first_broken_links();
        prop_assert!(
            first.iter().any(|f| f.partition.as_deref() == Some(partition.as_str())),
            "{edit:?} in chain {partition}: findings name other chains: {:?}", first
        );
    }
}

/// The newest records cut together with the digest that sealed them leave
/// a shorter trail that verifies; a verifier who kept that digest (its
/// number or its hash) still catches the cut.
#[test]
fn a_cut_tail_is_caught_by_a_kept_digest() {
    let (dir, conn) = tamperable();
    drop(conn);
    let kept = {
        let store = SqliteStore::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for i in RECORDS..RECORDS + 5 {
            rt.block_on(store.append(&record(i))).unwrap();
        }
        let keys = LocalKeys::audit(dir.path()).unwrap();
        let digest = store
            .write_digest(&keys, OffsetDateTime::now_utc())
            .unwrap()
            .unwrap();
        assert_eq!(digest.digest_seq, 2);
        governance::audit::SignedDigest::new(&digest, None).hash
    };
    assert!(verify(dir.path()).is_intact());
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS decisions_no_delete; DROP TRIGGER IF EXISTS audit_digests_no_delete;",
    )
    .unwrap();
    let cut = conn
        .execute(
            "DELETE FROM decisions WHERE CAST(substr(decision_id, 1, 8) AS INTEGER) >= ?1",
            [RECORDS as i64],
        )
        .unwrap();
    assert_eq!(cut, 5);
    conn.execute("DELETE FROM audit_digests WHERE digest_seq = 2", [])
        .unwrap();
    drop(conn);
    assert!(
        verify(dir.path()).is_intact(),
        "without a kept digest the cut tail is invisible"
    );
    let store = SqliteStore::open(dir.path()).unwrap();
    let key = LocalKeys::audit(dir.path()).unwrap().public_key();
    for min in [MinDigest::Seq(2), MinDigest::Hash(kept)] {
        let report = store
            .verify_audit(Some(key), Some(min.clone()), &mut |_| {})
            .unwrap();
        assert!(!report.is_intact(), "{min:?}: the cut went unnoticed");
        assert!(report.findings[0].problem.contains("kept digest"));
    }
}

/// Appends `n` records after the pristine ones, with no digest after them.
fn append_unsealed(dir: &Path, n: usize) {
    let store = SqliteStore::open(dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in RECORDS..RECORDS + n {
        rt.block_on(store.append(&record(i))).unwrap();
    }
}

/// The last record of one chain deleted while the digest that sealed it
/// stays: the digest names a head the chain no longer reaches.
#[test]
fn a_tail_cut_under_its_digest_is_caught() {
    let (dir, conn) = tamperable();
    let (partition, last): (String, u64) = conn
        .query_row(
            "SELECT partition, max(seq) FROM decisions WHERE partition = 'd5'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let cut = conn
        .execute(
            "DELETE FROM decisions WHERE partition = ?1 AND seq = ?2",
            params![partition, last],
        )
        .unwrap();
    assert_eq!(cut, 1);
    drop(conn);
    let report = verify(dir.path());
    assert!(!report.is_intact(), "a cut tail went unnoticed");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.partition.as_deref() == Some(partition.as_str())),
        "{:#?}",
        report.findings
    );
}

/// A digest altered or deleted is caught, whatever the records say.
#[test]
fn an_altered_or_deleted_digest_is_caught() {
    // Altered: its body no longer matches its hash and signature.
    let (dir, conn) = tamperable();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_digests_no_update;
         UPDATE audit_digests SET body = replace(body, '\"d5\"', '\"d6\"') WHERE digest_seq = 1;",
    )
    .unwrap();
    drop(conn);
    let report = verify(dir.path());
    assert!(!report.is_intact(), "an altered digest went unnoticed");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.record.as_deref() == Some("digest #1") && f.problem.contains("not intact")),
        "{:#?}",
        report.findings
    );

    // Deleted from the middle of the digest chain: the next one no longer
    // follows, and the numbering has a gap.
    let (dir, conn) = tamperable();
    drop(conn);
    append_unsealed(dir.path(), 3);
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let keys = LocalKeys::audit(dir.path()).unwrap();
        store
            .write_digest(&keys, OffsetDateTime::now_utc())
            .unwrap()
            .unwrap();
    }
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_digests_no_delete;
         DELETE FROM audit_digests WHERE digest_seq = 1;",
    )
    .unwrap();
    drop(conn);
    let report = verify(dir.path());
    assert!(!report.is_intact(), "a deleted digest went unnoticed");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.problem.contains("a digest was removed or inserted")),
        "{:#?}",
        report.findings
    );
}

/// A row written around the chains (no chain, no position) is named.
#[test]
fn a_row_outside_any_chain_is_caught() {
    let (dir, conn) = tamperable();
    let body = serde_json::to_string(&record(RECORDS + 1)).unwrap();
    conn.execute(
        "INSERT INTO decisions (decision_id, agent_id, timestamp, decision, record)
         VALUES (?1, 'agent-1', '2026-01-07T13:00:00.000Z', 'allow', ?2)",
        params![record(RECORDS + 1).decision_id, body],
    )
    .unwrap();
    drop(conn);
    let report = verify(dir.path());
    assert!(!report.is_intact(), "an unchained row went unnoticed");
    assert!(
        report.findings.iter().any(|f| f
            .record
            .as_deref()
            .is_some_and(|r| r.contains(&record(RECORDS + 1).decision_id))
            && f.problem.contains("not in any chain")),
        "{:#?}",
        report.findings
    );
}

/// Records newer than the newest digest are protected by their links: an
/// edit there is caught even though no digest vouches for them yet.
#[test]
fn an_edit_after_the_newest_digest_is_caught() {
    let (dir, conn) = tamperable();
    drop(conn);
    append_unsealed(dir.path(), 6);
    let report = verify(dir.path());
    assert!(report.is_intact(), "{:#?}", report.findings);
    assert_eq!(report.records_after_newest_digest, 6);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    // Opening the store put its triggers back; whoever edits drops them.
    conn.execute_batch("DROP TRIGGER IF EXISTS decisions_no_update;")
        .unwrap();
    let edited = conn
        .execute(
            "UPDATE decisions SET record = replace(record, '\"user-', '\"mallory-') \
             WHERE decision_id = ?1",
            [record(RECORDS + 2).decision_id],
        )
        .unwrap();
    assert_eq!(edited, 1);
    drop(conn);
    let report = verify(dir.path());
    assert!(
        !report.is_intact(),
        "an edit after the newest digest went unnoticed"
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.problem.contains("the record was modified")),
        "{:#?}",
        report.findings
    );
}
