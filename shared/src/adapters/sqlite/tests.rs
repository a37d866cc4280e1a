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
        idempotency_key: key.map(Into::into),
        reasoning: None,
        latency_us: 3,
        approval_id: None,
        approval: None,
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
    assert!(conn.execute("DELETE FROM policy_versions", []).is_err());
    assert!(conn.execute("DELETE FROM policy_activations", []).is_err());
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
    assert!(conn
        .execute("UPDATE decisions SET decision = 'allow'", [])
        .is_err());
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

#[tokio::test]
async fn counters_add_up_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.increment("u1", 0, 1).await.unwrap(), 1);
    assert_eq!(store.increment("u1", 0, 2).await.unwrap(), 3);
    assert_eq!(store.increment("u1", 60, 1).await.unwrap(), 1);
}
