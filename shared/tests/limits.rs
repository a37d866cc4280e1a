//! Limits and human approval, at the service: a pending approval consumes
//! nothing; the approved call consumes when its grant is used, and a grant
//! that a limit refuses stays usable.

// The harness's helpers are not `#[test]` functions, which is all that
// `allow-unwrap-in-tests` covers.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use governance::adapters::local::MemoryMetrics;
use governance::adapters::sqlite::SqliteStore;
use governance::approval::outcome_record;
use governance::clock::{rfc3339, FixedClock};
use governance::model::{
    ApprovalStatus, AuthorizeRequest, Decision, DecisionRecord, Environment, ReasonCode,
    UserContext,
};
use governance::policy::{load_engine, PolicyBundle, PolicyVersionRef};
use governance::ports::{
    ApprovalRequest, ApprovalStore, ApprovalWorkflow, Counters, HumanDecision, ReviewKey, Settled,
    StoreError, TaskToken,
};
use governance::service::{AuthorizeService, EngineHandle};

struct NoWorkflow;

#[async_trait]
impl ApprovalWorkflow for NoWorkflow {
    async fn start(&self, _: &ApprovalRequest) -> Result<(), StoreError> {
        Ok(())
    }
}

const NOW: time::OffsetDateTime = time::macros::datetime!(2026-12-01 10:00 UTC);

fn service(store: &SqliteStore) -> AuthorizeService {
    let bundle =
        PolicyBundle::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/policies"))
            .unwrap();
    let engine = load_engine(
        &bundle,
        PolicyVersionRef {
            id: "v1".into(),
            content_hash: bundle.content_hash(),
        },
    )
    .unwrap();
    AuthorizeService {
        // The fixed clock is not the wall clock staleness is measured by.
        engine: Arc::new(EngineHandle::with_max_staleness(
            engine,
            std::time::Duration::MAX,
        )),
        log: Arc::new(store.clone()),
        approvals: Arc::new(NoWorkflow),
        grants: Arc::new(store.clone()),
        counters: Arc::new(store.clone()),
        metrics: Arc::new(MemoryMetrics::default()),
        clock: Arc::new(FixedClock(NOW)),
        environment: Environment::Dev,
    }
}

fn sofia() -> UserContext {
    UserContext {
        id: "sofia".into(),
        roles: vec!["senior_underwriter".into()],
        organization: Some("meridian-capital".into()),
    }
}

async fn ask(service: &AuthorizeService, body: serde_json::Value) -> DecisionRecord {
    let request: AuthorizeRequest = serde_json::from_value(body).unwrap();
    service
        .authorize("meridian-loan-agent", &sofia(), request, "t".into())
        .await
        .unwrap()
}

fn lookup(run: &str) -> serde_json::Value {
    serde_json::json!({"tool_id": "lookup_regulatory_requirements",
                       "arguments": {"state": "OH", "product": "conventional-30y"}, "run_id": run})
}

fn recommendation(run: &str, approval: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({"tool_id": "generate_recommendation",
        "arguments": {"application_id": "L-7", "recommendation": "approve"}, "run_id": run});
    if let Some(a) = approval {
        body["approval_id"] = serde_json::json!(a);
    }
    body
}

async fn calls(store: &SqliteStore, run: &str) -> u64 {
    store
        .counter(&governance::limits::run_key("meridian-loan-agent", run), 0)
        .await
        .unwrap()
        .map_or(0, |c| c.used.calls)
}

#[tokio::test]
async fn an_approved_call_consumes_when_its_grant_is_used_and_a_refused_grant_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let service = service(&store);
    for _ in 0..19 {
        assert_eq!(ask(&service, lookup("R")).await.decision, Decision::Allow);
    }
    let pending = ask(&service, recommendation("R", None)).await;
    assert_eq!(pending.decision, Decision::PendingApproval);
    assert_eq!(
        calls(&store, "R").await,
        19,
        "a pending approval consumes nothing"
    );

    // A human approves; the workflow records the grant.
    let approval_id = pending.approval_id.clone().unwrap();
    store
        .attach_token(
            &approval_id,
            &TaskToken("token".into()),
            &ReviewKey::of("review"),
        )
        .await
        .unwrap();
    let at = rfc3339(NOW);
    store
        .decide(
            &approval_id,
            &HumanDecision {
                status: ApprovalStatus::Approved,
                approver: "paula".into(),
                comment: None,
                decided_at: at.clone(),
            },
        )
        .await
        .unwrap();
    let item = store.get(&approval_id).await.unwrap().unwrap();
    let granted = outcome_record(
        &item.request,
        ApprovalStatus::Approved,
        Some("paula".into()),
        None,
        &at,
    );
    assert_eq!(
        store
            .settle(
                &approval_id,
                &[ApprovalStatus::Approved],
                ApprovalStatus::Granted,
                &granted
            )
            .await
            .unwrap(),
        Settled::Recorded
    );

    // The run fills up; the grant's call would be its 21st.
    assert_eq!(ask(&service, lookup("R")).await.decision, Decision::Allow);
    let refused = ask(&service, recommendation("R", Some(&approval_id))).await;
    assert_eq!(refused.decision, Decision::Deny);
    assert_eq!(refused.reasons[0].code, ReasonCode::RunCallLimit);
    assert_eq!(calls(&store, "R").await, 20);
    let item = store.get(&approval_id).await.unwrap().unwrap();
    assert_eq!(item.grant_used_at, None, "a refused grant stays usable");

    // The same approved call in a new run: allowed, and counted there.
    let used = ask(&service, recommendation("R2", Some(&approval_id))).await;
    assert_eq!(used.decision, Decision::Allow, "{used:?}");
    assert_eq!(used.reasons[0].code, ReasonCode::ApprovedCall);
    assert_eq!(calls(&store, "R2").await, 1);
    let again = ask(&service, recommendation("R3", Some(&approval_id))).await;
    assert_eq!(again.reasons[0].code, ReasonCode::GrantAlreadyUsed);
    assert_eq!(
        calls(&store, "R3").await,
        0,
        "a denied call consumes nothing"
    );
}

/// An agent that asks for it is disabled by its own alert, by the anomaly
/// detector, and the alert and the switch are both in the audit trail.
#[tokio::test]
async fn an_alert_disables_the_version_of_an_agent_that_asks_for_it() {
    use governance::anomaly::{call_charges, watch, Alerting};
    use governance::ports::KillSwitchStore;

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut bundle =
        PolicyBundle::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/policies"))
            .unwrap();
    let registry = bundle.files.get_mut("registry.yaml").unwrap();
    *registry = registry.replace(
        "anomaly: { threshold_percent: 150 }",
        "anomaly: { threshold_percent: 150, auto_disable: true }",
    );
    let registry = governance::policy::compile(&bundle).unwrap().registry;
    // 111 calls over the last seven days, then one this hour: 151%.
    for i in 0..111_i64 {
        let at = NOW - time::Duration::days(1 + i % 7);
        store
            .charge(&call_charges("meridian-loan-agent", "3.0.1", at))
            .await
            .unwrap();
    }
    store
        .charge(&call_charges("meridian-loan-agent", "3.0.1", NOW))
        .await
        .unwrap();
    let alerting = Alerting {
        counters: &store,
        control: &store,
        killswitch: &store,
    };
    let found = watch(&alerting, &registry, ("v1", "h1"), NOW)
        .await
        .unwrap();
    assert_eq!(found.raised.len(), 1, "{:?}", found.rates);
    let disabled = store.disabled().await.unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].agent_id, "meridian-loan-agent");
    assert_eq!(disabled[0].version.as_deref(), Some("3.0.1"));
    assert_eq!(disabled[0].by, "anomaly-detector");
    assert!(
        disabled[0].reason.contains("151%"),
        "{}",
        disabled[0].reason
    );
    // Another watch in the same hour raises nothing more.
    let again = watch(&alerting, &registry, ("v1", "h1"), NOW)
        .await
        .unwrap();
    assert!(again.raised.is_empty());
    let events: Vec<String> = store
        .blocking(|c| {
            let mut stmt = c
                .prepare("SELECT json_extract(event, '$.action') FROM control_events ORDER BY seq")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            Ok(rows.map(Result::unwrap).collect())
        })
        .unwrap();
    assert_eq!(events, ["anomaly_detected", "agent_disabled"]);
}
