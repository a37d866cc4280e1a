use std::sync::Arc;

use super::*;
use crate::model::{Decision, DecisionRecord};

fn record(id: &str, key: Option<&str>) -> DecisionRecord {
    DecisionRecord {
        decision_id: id.into(),
        trace_id: "t".into(),
        timestamp: "2026-01-07T12:00:00.000Z".into(),
        decision: Decision::Allow,
        reasons: vec![],
        determining_policies: vec!["base:permit-granted".into()],
        errors: vec![],
        agent_id: "agent-a".into(),
        agent_version: Some("1".into()),
        user_id: "u".into(),
        user_roles: vec!["r".into()],
        tool_id: "t".into(),
        requested_risk: None,
        arguments_hash: "h".into(),
        arguments: None,
        environment: "dev".into(),
        policy_version: "v".into(),
        policy_hash: "sha256:x".into(),
        session_id: None,
        run_id: None,
        limit: None,
        idempotency_key: key.map(Into::into),
        reasoning: None,
        latency_us: 3,
        approval_id: None,
        approval: None,
        execution: None,
        shadow: None,
    }
}

fn bundle(text: &str) -> PolicyBundle {
    let mut b = PolicyBundle::default();
    b.files.insert("registry.yaml".into(), text.into());
    b
}

#[tokio::test]
async fn versions_are_immutable_and_rollback_moves_the_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let at = OffsetDateTime::now_utc();
    let req = |t: &str, m: &str| PublishRequest {
        bundle: bundle(t),
        author: "ana".into(),
        message: m.into(),
        at,
    };
    let v1 = store.publish(req("agents: []", "first")).await.unwrap();
    store.activate(&v1.id, "ana", at).await.unwrap();
    let v2 = store
        .publish(req("agents: [] # two", "second"))
        .await
        .unwrap();
    assert_eq!(v2.parent.as_deref(), Some(v1.id.as_str()));
    store.activate(&v2.id[..10], "ana", at).await.unwrap();
    assert_eq!(store.active().await.unwrap().unwrap().version_id, v2.id);
    store.activate(&v1.id, "bob", at).await.unwrap();
    assert_eq!(store.active().await.unwrap().unwrap().version_id, v1.id);
    let (got, files) = store.version(&v1.id).await.unwrap();
    assert_eq!((got, files), (v1.clone(), bundle("agents: []")));
    assert_eq!(store.versions().await.unwrap().len(), 2);

    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let err = conn
        .execute(
            "UPDATE policy_versions SET message = 'rewritten' WHERE id = ?1",
            [&v1.id],
        )
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    let refused = |sql: &str| conn.execute(sql, []).unwrap_err().to_string();
    assert!(
        refused("DELETE FROM policy_versions").contains("policy versions are immutable"),
        "the trigger refuses, not something else"
    );
    assert!(
        refused("DELETE FROM policy_activations").contains("the activation history is append-only")
    );
    assert!(matches!(
        store.version("ffffffff").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_appends_are_all_durable_and_keys_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..500 {
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            s.append(&record(&format!("d{i}"), None)).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Appended::Stored);
    }
    assert_eq!(
        store.append(&record("k1", Some("key"))).await.unwrap(),
        Appended::Stored
    );
    assert_eq!(
        store.append(&record("k2", Some("key"))).await.unwrap(),
        Appended::DuplicateKey
    );
    assert_eq!(
        store
            .by_idempotency_key("agent-a", "key")
            .await
            .unwrap()
            .unwrap()
            .decision_id,
        "k1"
    );
    assert_eq!(
        store.get("d42").await.unwrap().unwrap(),
        record("d42", None)
    );
    assert!(store.get("nope").await.unwrap().is_none());

    // A second connection sees every record: they were committed, not buffered.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM decisions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 501);
    let refused = conn
        .execute("UPDATE decisions SET decision = 'allow'", [])
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("the decision log is append-only"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_locked_database_fails_the_append_instead_of_losing_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store.append(&record("x", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        store.append(&record("x", None)).await.unwrap(),
        Appended::Stored
    );
}

fn one_call_of(limit: u64) -> crate::limits::Charge {
    crate::limits::Charge {
        key: "rate#t#user#u".into(),
        window_start: 60,
        expires_at: i64::MAX,
        add: crate::limits::Amounts {
            calls: 1,
            ..Default::default()
        },
        max: crate::limits::Maxima {
            calls: Some(limit - 1),
            ..Default::default()
        },
        started_not_before: None,
        owner: None,
        must_exist: false,
    }
}

/// Concurrent appends in one group commit: exactly the limit's worth are
/// stored with their charge; the others store nothing and see the count.
#[tokio::test]
async fn charges_admit_exactly_the_limit_and_refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append_charged(&record(&format!("c{i}"), None), None, &[one_call_of(3)])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        match t.await.unwrap() {
            Appended::Stored => stored += 1,
            Appended::OverLimit { index, current } => {
                assert_eq!(index, 0);
                assert_eq!(current.unwrap().used.calls, 3);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stored, 3);
    let counter = store.counter("rate#t#user#u", 60).await.unwrap().unwrap();
    assert_eq!(counter.used.calls, 3);
    let rows: i64 = store
        .blocking(|c| {
            c.query_row("SELECT count(*) FROM decisions", [], |r| r.get(0))
                .map_err(unavailable)
        })
        .unwrap();
    assert_eq!(rows, 3, "a refused append stores no record");
    // Another window starts from zero.
    let mut next = one_call_of(3);
    next.window_start = 120;
    assert_eq!(
        store.charge(&[next]).await.unwrap(),
        crate::limits::Charged::Applied
    );
}

/// A keyed repeat is found before the limits: it is a duplicate, never a
/// refusal, and charges nothing.
#[tokio::test]
async fn a_keyed_repeat_is_a_duplicate_and_charges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let first = store
        .append_charged(&record("k1", Some("key")), None, &[one_call_of(1)])
        .await
        .unwrap();
    assert_eq!(first, Appended::Stored);
    let repeat = store
        .append_charged(&record("k2", Some("key")), None, &[one_call_of(1)])
        .await
        .unwrap();
    assert_eq!(repeat, Appended::DuplicateKey);
    let other = store
        .append_charged(&record("k3", Some("other")), None, &[one_call_of(1)])
        .await
        .unwrap();
    assert!(
        matches!(other, Appended::OverLimit { index: 0, .. }),
        "{other:?}"
    );
    assert_eq!(
        store
            .counter("rate#t#user#u", 60)
            .await
            .unwrap()
            .unwrap()
            .used
            .calls,
        1
    );
    // A refused call did not claim its key.
    assert_eq!(
        store.by_idempotency_key("agent-a", "other").await.unwrap(),
        None
    );
}

fn keyed_at(id: &str, timestamp: &str) -> DecisionRecord {
    DecisionRecord {
        timestamp: timestamp.into(),
        ..record(id, Some("key"))
    }
}

#[tokio::test]
async fn an_idempotency_claim_expires_after_its_ttl_and_moves_only_from_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let holder = |s: &SqliteStore| {
        let s = s.clone();
        async move {
            s.by_idempotency_key("agent-a", "key")
                .await
                .unwrap()
                .unwrap()
                .decision_id
        }
    };
    assert_eq!(
        store
            .append(&keyed_at("k1", "2026-01-07T12:00:00.000Z"))
            .await
            .unwrap(),
        Appended::Stored
    );
    // One second before the 24 h are up the key is still held...
    assert_eq!(
        store
            .append(&keyed_at("k2", "2026-01-08T11:59:59.000Z"))
            .await
            .unwrap(),
        Appended::DuplicateKey
    );
    assert_eq!(holder(&store).await, "k1");
    // ...and at 24 h it is free: the new decision claims it.
    assert_eq!(
        store
            .append(&keyed_at("k3", "2026-01-08T12:00:00.000Z"))
            .await
            .unwrap(),
        Appended::Stored
    );
    assert_eq!(holder(&store).await, "k3");

    // A takeover names the holder it replaces; a stale one changes nothing.
    let next = keyed_at("k4", "2026-01-08T12:00:01.000Z");
    assert_eq!(
        store.append_superseding(&next, "k1").await.unwrap(),
        Appended::DuplicateKey
    );
    assert_eq!(holder(&store).await, "k3");
    assert_eq!(
        store.append_superseding(&next, "k3").await.unwrap(),
        Appended::Stored
    );
    assert_eq!(holder(&store).await, "k4");
    // Every stored record stays in the log; the refused ones were never written.
    for id in ["k1", "k3", "k4"] {
        assert!(store.get(id).await.unwrap().is_some(), "{id}");
    }
    assert!(store.get("k2").await.unwrap().is_none());
}

#[tokio::test]
async fn keys_of_a_store_from_an_older_build_are_migrated_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.append(&record("k1", Some("key"))).await.unwrap();
        // What an older build left: the claim only as a unique index on the log.
        store
            .blocking(|c| {
                c.execute_batch(
                    "DELETE FROM idempotency_keys;
                     CREATE UNIQUE INDEX decisions_idempotency
                         ON decisions (agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;",
                )
                .map_err(unavailable)
            })
            .unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(
        store
            .by_idempotency_key("agent-a", "key")
            .await
            .unwrap()
            .unwrap()
            .decision_id,
        "k1"
    );
    assert_eq!(
        store.append(&record("k2", Some("key"))).await.unwrap(),
        Appended::DuplicateKey
    );
    let expires: i64 = store
        .blocking(|c| {
            c.query_row("SELECT expires_at FROM idempotency_keys", [], |r| r.get(0))
                .map_err(unavailable)
        })
        .unwrap();
    assert_eq!(
        expires,
        time::macros::datetime!(2026-01-08 12:00 UTC).unix_timestamp()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_database_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = SqliteStore::open(&data).unwrap();
    store.append(&record("d1", None)).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    let wal = data.join(format!("{DB_FILE}-wal"));
    for file in [
        data.join(DB_FILE),
        wal.clone(),
        data.join(format!("{DB_FILE}-shm")),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(store);
    // Files an older build left readable by others are tightened on open.
    std::fs::set_permissions(data.join(DB_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    if wal.exists() {
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let _store = SqliteStore::open(&data).unwrap();
    assert_eq!(mode(&data.join(DB_FILE)), 0o600);
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
}

/// Under a writer that never pauses, passive checkpoints alone let the WAL
/// grow without bound; the writer's restarts keep it near its bound. The
/// bound is small here so that a few seconds of load write many times it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_appends_keep_the_wal_bounded() {
    const BOUND: i64 = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open_with(
            dir.path(),
            WalBound {
                restart_after_bytes: BOUND,
            },
        )
        .unwrap(),
    );
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..64 {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut r = record(&format!("w{w}-{n}"), None);
                r.reasoning = Some("x".repeat(512));
                store.append(&r).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut largest = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(6) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    let db_size = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
    // The load must have written far more than the bound, or the test proves nothing.
    assert!(
        db_size > 16 * BOUND as u64,
        "only {written} records ({db_size} bytes) were written"
    );
    assert!(
        largest <= 4 * BOUND as u64,
        "the WAL reached {largest} bytes with a bound of {BOUND} ({written} records, database {db_size} bytes)"
    );
}

/// One claim of an exactly-once key wins among concurrent duplicates; the
/// result is kept for its window; a released or lapsed claim frees the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_keys_are_claimed_once_kept_released_and_lapse() {
    use crate::ports::{Claimed, ExecutionLedger, Held};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let now = 1_800_000_000;
    let claims: Vec<Claimed> = futures_join(
        (0..32)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .claim("tool#k", &format!("a{i}"), now, now + 60)
                        .await
                        .unwrap()
                })
            })
            .collect(),
    )
    .await;
    let won: Vec<usize> = claims
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == Claimed::Yours)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "{claims:?}");
    assert!(claims.iter().all(|c| matches!(
        c,
        Claimed::Yours
            | Claimed::Held(Held::Running {
                since: 1_800_000_000
            })
    )));
    let winner = format!("a{}", won[0]);
    // Not the winner's: a release by another attempt changes nothing.
    store.release("tool#k", "someone-else").await.unwrap();
    let result = serde_json::json!({"content": [], "structuredContent": {"write": 1}});
    store
        .complete("tool#k", &winner, "d-1", &result, now + 3600)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim("tool#k", "late", now + 10, now + 70)
            .await
            .unwrap(),
        Claimed::Held(Held::Done {
            decision_id: "d-1".into(),
            result: result.clone()
        })
    );
    // A completed key is not given up by its attempt either.
    store.release("tool#k", &winner).await.unwrap();
    assert!(matches!(
        store
            .claim("tool#k", "later", now + 20, now + 80)
            .await
            .unwrap(),
        Claimed::Held(Held::Done { .. })
    ));
    // Past its window the key is free again.
    assert_eq!(
        store
            .claim("tool#k", "next-day", now + 3600, now + 3660)
            .await
            .unwrap(),
        Claimed::Yours
    );
    // A claim that is never completed lapses at its lease's end, or is given up.
    assert_eq!(
        store.claim("other", "x", now, now + 30).await.unwrap(),
        Claimed::Yours
    );
    assert!(matches!(
        store.claim("other", "y", now + 29, now + 59).await.unwrap(),
        Claimed::Held(Held::Running { .. })
    ));
    assert_eq!(
        store.claim("other", "z", now + 30, now + 60).await.unwrap(),
        Claimed::Yours
    );
    store.release("other", "z").await.unwrap();
    assert_eq!(
        store.claim("other", "w", now + 31, now + 61).await.unwrap(),
        Claimed::Yours
    );
}

async fn futures_join<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
