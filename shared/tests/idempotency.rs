//! Idempotency keys at the service: a repeat is answered from the decision
//! that holds its key only if that is still the answer (same whole call,
//! same policy version, same outcome, within the key's 24 hours). A newer
//! policy, a disabled agent or an expired key decide afresh, and the fresh
//! decision takes the key over.

// The harness's helpers are not `#[test]` functions, which is all that
// `allow-unwrap-in-tests` covers.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use governance::adapters::local::MemoryMetrics;
use governance::adapters::sqlite::SqliteStore;
use governance::model::{AuthorizeRequest, Decision, DecisionRecord, Environment, UserContext};
use governance::policy::{load_engine, PolicyBundle, PolicyEngine, PolicyVersionRef};
use governance::ports::{
    ApprovalRequest, ApprovalWorkflow, Clock, DecisionLog, StoreError, IDEMPOTENCY_KEY_TTL_SECONDS,
};
use governance::service::{AuthorizeService, EngineHandle, ServiceError};
use time::{Duration, OffsetDateTime};

struct ManualClock(Mutex<OffsetDateTime>);

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

struct NoWorkflow;

#[async_trait]
impl ApprovalWorkflow for NoWorkflow {
    async fn start(&self, _: &ApprovalRequest) -> Result<(), StoreError> {
        Ok(())
    }
}

fn engine(bundle: &PolicyBundle, version: &str) -> PolicyEngine {
    load_engine(
        bundle,
        PolicyVersionRef {
            id: version.into(),
            content_hash: bundle.content_hash(),
        },
    )
    .unwrap()
}

fn example() -> PolicyBundle {
    PolicyBundle::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/policies"))
        .unwrap()
}

struct Harness {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    clock: Arc<ManualClock>,
    service: AuthorizeService,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(
        time::macros::datetime!(2026-12-01 10:00 UTC),
    )));
    let service = AuthorizeService {
        // The manual clock runs ahead of the wall clock, which staleness is
        // measured against; staleness is not what these tests are about.
        engine: Arc::new(EngineHandle::with_max_staleness(
            engine(&example(), "v1"),
            std::time::Duration::MAX,
        )),
        log: Arc::new(store.clone()),
        approvals: Arc::new(NoWorkflow),
        grants: Arc::new(store.clone()),
        counters: Arc::new(store.clone()),
        metrics: Arc::new(MemoryMetrics::default()),
        clock: clock.clone(),
        environment: Environment::Dev,
    };
    Harness {
        _dir: dir,
        store,
        clock,
        service,
    }
}

fn alice() -> UserContext {
    UserContext {
        id: "alice".into(),
        roles: vec!["support_agent".into()],
        organization: None,
    }
}

fn keyed() -> AuthorizeRequest {
    serde_json::from_value(serde_json::json!({
        "tool_id": "search_kb", "arguments": {"query": "x"}, "idempotency_key": "k1"
    }))
    .unwrap()
}

impl Harness {
    async fn ask(&self) -> DecisionRecord {
        self.service
            .authorize("agent-support-1", &alice(), keyed(), "t".into())
            .await
            .unwrap()
    }

    async fn holder(&self) -> String {
        self.store
            .by_idempotency_key("agent-support-1", "k1")
            .await
            .unwrap()
            .unwrap()
            .decision_id
    }

    fn advance(&self, by: Duration) {
        *self.clock.0.lock().unwrap() += by;
    }
}

#[tokio::test]
async fn a_repeat_under_the_same_policy_is_a_replay() {
    let h = harness();
    let first = h.ask().await;
    assert_eq!(first.decision, Decision::Allow);
    h.advance(Duration::hours(23));
    assert_eq!(h.ask().await, first);
}

#[tokio::test]
async fn a_newer_policy_decides_afresh_and_takes_the_key_over() {
    let h = harness();
    let first = h.ask().await;
    h.service.engine.replace(engine(&example(), "v2"));
    let second = h.ask().await;
    assert_ne!(second.decision_id, first.decision_id);
    assert_eq!(second.policy_version, "v2");
    assert_eq!(h.holder().await, second.decision_id);
    // Both are in the log; the repeat under v2 now replays the v2 decision.
    assert!(h.store.get(&first.decision_id).await.unwrap().is_some());
    assert_eq!(h.ask().await, second);
}

#[tokio::test]
async fn an_agent_disabled_since_is_never_answered_from_its_old_allow() {
    let h = harness();
    let first = h.ask().await;
    assert_eq!(first.decision, Decision::Allow);
    let mut bundle = example();
    let registry = bundle.files.get_mut("registry.yaml").unwrap();
    let at = registry.find("  - id: agent-support-1").unwrap();
    let team = at + registry[at..].find("    team: support\n").unwrap();
    registry.insert_str(team, "    status: disabled\n");
    h.service.engine.replace(engine(&bundle, "v2-disabled"));
    let second = h.ask().await;
    assert_eq!(second.decision, Decision::Deny, "{second:?}");
    assert_eq!(second.reasons[0].code.as_str(), "agent_disabled");
    assert_eq!(h.holder().await, second.decision_id);
}

#[tokio::test]
async fn a_key_past_its_ttl_decides_afresh() {
    let h = harness();
    let first = h.ask().await;
    h.advance(Duration::seconds(IDEMPOTENCY_KEY_TTL_SECONDS));
    let second = h.ask().await;
    assert_ne!(second.decision_id, first.decision_id);
    assert_eq!(h.holder().await, second.decision_id);
}

#[tokio::test]
async fn another_user_on_the_key_is_refused_and_recorded() {
    let h = harness();
    let first = h.ask().await;
    let bob = UserContext {
        id: "bob".into(),
        roles: vec!["sre".into()],
        organization: None,
    };
    let err = h
        .service
        .authorize("agent-support-1", &bob, keyed(), "t".into())
        .await
        .unwrap_err();
    let ServiceError::IdempotencyKeyReused { key, record } = err else {
        panic!("expected a refused reuse, got {err:?}");
    };
    assert_eq!(key, "k1");
    assert_eq!(record.decision, Decision::Deny);
    assert_eq!(record.user_id, "bob");
    assert_eq!(record.idempotency_key, None, "the refusal claims no key");
    assert_eq!(
        h.store.get(&record.decision_id).await.unwrap().as_ref(),
        Some(&*record)
    );
    assert_eq!(h.holder().await, first.decision_id);
}
