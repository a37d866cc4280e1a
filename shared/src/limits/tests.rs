use time::macros::datetime;

use super::*;
use crate::model::{
    AgentStatus, BudgetSpec, Category, Environment, RateLimitSpec, Risk, RunLimits,
};

fn agent(limits: Option<RunLimits>) -> AgentSpec {
    AgentSpec {
        id: "loan".into(),
        description: None,
        team: "t".into(),
        owner: None,
        environment: Environment::Dev,
        status: AgentStatus::Active,
        version: "1".into(),
        risk_ceiling: Risk::High,
        grants: Vec::new(),
        principals: Vec::new(),
        oauth_clients: Vec::new(),
        run_limits: limits,
        anomaly: None,
    }
}

fn tool(rate: Option<RateLimitSpec>, cost: Option<Usd>) -> ToolSpec {
    ToolSpec {
        id: "pull".into(),
        description: None,
        category: Category::Read,
        risk: Risk::High,
        classification: "pii".into(),
        allowed_roles: Vec::new(),
        rate_limit: rate,
        cost_usd: cost,
        response_filter: Vec::new(),
        approval: None,
        arguments: Default::default(),
        server: None,
        upstream_tool: None,
        idempotency: None,
    }
}

fn user() -> UserContext {
    UserContext {
        id: "ana".into(),
        roles: vec!["underwriter".into()],
        organization: Some("meridian".into()),
    }
}

fn usd(d: f64) -> Usd {
    Usd::from_dollars(d).unwrap()
}

fn meridian() -> (Registry, AgentSpec, ToolSpec) {
    let registry = Registry {
        budgets: vec![BudgetSpec {
            id: "daily".into(),
            per: BudgetScope::User,
            max_cost_usd: usd(50.0),
            window_seconds: 86_400,
        }],
        ..Registry::default()
    };
    let agent = agent(Some(RunLimits {
        max_calls: Some(20),
        max_seconds: Some(60),
        max_cost_usd: Some(usd(2.0)),
        max_tokens: None,
    }));
    let tool = tool(
        Some(RateLimitSpec {
            limit: 50,
            per: RateLimitScope::User,
            window_seconds: 86_400,
        }),
        Some(usd(0.25)),
    );
    (registry, agent, tool)
}

const NOON: OffsetDateTime = datetime!(2026-12-02 12:00:00.5 UTC);

fn call<'a>(
    agent: &'a AgentSpec,
    tool: &'a ToolSpec,
    user: &'a UserContext,
    decision: Decision,
) -> Call<'a> {
    Call {
        agent: Some(agent),
        tool: Some(tool),
        user,
        run_id: Some("run-1"),
        session_id: None,
        decision,
        now: NOON,
    }
}

#[test]
fn an_allowed_call_is_charged_to_its_run_its_rate_limit_and_every_budget() {
    let (registry, agent, tool) = meridian();
    let user = user();
    let plan = plan(&registry, &call(&agent, &tool, &user, Decision::Allow)).unwrap();
    let [run, rate, budget] = plan.charges.as_slice() else {
        panic!("{:?}", plan.charges)
    };
    assert_eq!(run.window_start, 0);
    assert_eq!(run.add.calls, 1);
    assert_eq!(run.add.cost_micros, 250_000);
    assert_eq!(run.max.calls, Some(19));
    // Spent must leave room for this call's cost: 2.00 - 0.25.
    assert_eq!(run.max.cost_micros, Some(1_750_000));
    assert_eq!(run.started_not_before, Some(NOON.unix_timestamp() - 60));
    assert_eq!(run.owner.as_ref().unwrap().user_id, "ana");
    // A day window is the UTC day.
    let midnight = datetime!(2026-12-02 00:00 UTC).unix_timestamp();
    assert_eq!(rate.window_start, midnight);
    assert_eq!(rate.max.calls, Some(49));
    assert_eq!(budget.window_start, midnight);
    assert_eq!(budget.add.cost_micros, 250_000);
    assert_eq!(budget.max.cost_micros, Some(49_750_000));
    // Keys name who is counted: another user has another counter.
    let bob = UserContext {
        id: "bob".into(),
        ..user.clone()
    };
    let other = super::plan(&registry, &call(&agent, &tool, &bob, Decision::Allow)).unwrap();
    assert_eq!(other.charges[0].key, run.key, "the run is the agent's");
    assert_ne!(other.charges[1].key, rate.key);
    assert_ne!(other.charges[2].key, budget.key);
}

#[test]
fn a_pending_call_is_checked_but_not_charged_and_a_deny_only_starts_its_run() {
    let (registry, agent, tool) = meridian();
    let user = user();
    let pending = plan(
        &registry,
        &call(&agent, &tool, &user, Decision::PendingApproval),
    )
    .unwrap();
    assert_eq!(pending.charges.len(), 3);
    for c in &pending.charges {
        assert_eq!(c.add, Amounts::default(), "{c:?}");
    }
    assert_eq!(pending.charges[1].max.calls, Some(49));
    let deny = plan(&registry, &call(&agent, &tool, &user, Decision::Deny)).unwrap();
    let [run] = deny.charges.as_slice() else {
        panic!("{:?}", deny.charges)
    };
    assert_eq!(run.add, Amounts::default());
    assert_eq!(run.max, Maxima::default());
    assert_eq!(run.started_not_before, None);
    assert!(run.owner.is_some(), "a deny starts the run");
}

#[test]
fn an_agent_with_run_limits_must_name_its_run() {
    let (registry, agent, tool) = meridian();
    let user = user();
    let mut c = call(&agent, &tool, &user, Decision::Allow);
    c.run_id = None;
    let refused = plan(&registry, &c).unwrap_err();
    assert_eq!(refused.reason.code, ReasonCode::RunIdRequired);
    c.decision = Decision::Deny;
    assert_eq!(plan(&registry, &c).unwrap().charges, Vec::new());
}

#[test]
fn a_call_that_costs_more_than_a_whole_budget_is_refused_before_counting() {
    let (registry, loan, _) = meridian();
    let user = user();
    let dear = tool(None, Some(usd(2.5)));
    let refused = plan(&registry, &call(&loan, &dear, &user, Decision::Allow)).unwrap_err();
    assert_eq!(refused.reason.code, ReasonCode::RunCostLimit);
    let free_agent = agent(None);
    let dearer = tool(None, Some(usd(51.0)));
    let refused = plan(
        &registry,
        &call(&free_agent, &dearer, &user, Decision::Allow),
    )
    .unwrap_err();
    assert_eq!(refused.reason.code, ReasonCode::UserBudgetExhausted);
}

#[test]
fn counters_admit_within_their_bounds_and_runs_within_their_time() {
    let (registry, agent, tool) = meridian();
    let user = user();
    let plan = plan(&registry, &call(&agent, &tool, &user, Decision::Allow)).unwrap();
    let run = &plan.charges[0];
    let at = |calls, cost_micros, started_at| Counter {
        used: Amounts {
            calls,
            cost_micros,
            tokens: 0,
        },
        owner: Some(RunOwner {
            started_at,
            user_id: "ana".into(),
            organization: None,
        }),
    };
    let now = NOON.unix_timestamp();
    assert!(run.admits(None));
    assert!(run.admits(Some(&at(19, 1_750_000, now - 60))));
    assert!(!run.admits(Some(&at(20, 0, now))), "the 21st call");
    assert!(
        !run.admits(Some(&at(0, 1_750_001, now))),
        "the call would pass $2"
    );
    assert!(!run.admits(Some(&at(0, 0, now - 61))), "past 60 s");
    let mut usage = run.clone();
    usage.must_exist = true;
    assert!(!usage.admits(None), "usage needs a known run");
}

#[test]
fn refusals_name_the_limit_the_count_and_when_to_retry() {
    let (registry, agent, tool) = meridian();
    let user = user();
    let plan = plan(&registry, &call(&agent, &tool, &user, Decision::Allow)).unwrap();
    let used = |calls, cost_micros| Counter {
        used: Amounts {
            calls,
            cost_micros,
            tokens: 0,
        },
        owner: Some(RunOwner {
            started_at: NOON.unix_timestamp() - 5,
            user_id: "ana".into(),
            organization: None,
        }),
    };
    let (reason, hit) = plan.refusal(1, Some(&used(50, 0)), NOON);
    assert_eq!(reason.code, ReasonCode::RateLimited);
    assert_eq!(hit.limit, serde_json::Number::from(50));
    assert_eq!(hit.current, serde_json::Number::from(50));
    assert_eq!(hit.per, "user");
    // 12:00:00.5 to midnight: 11 h 59 min 59.5 s, rounded up.
    assert_eq!(hit.retry_after_seconds, Some(12 * 3600));
    assert_eq!(hit.resets_at.as_deref(), Some("2026-12-03T00:00:00.000Z"));

    let (reason, hit) = plan.refusal(0, Some(&used(20, 0)), NOON);
    assert_eq!(reason.code, ReasonCode::RunCallLimit);
    assert_eq!(hit.retry_after_seconds, None, "waiting does not help a run");
    let (reason, _) = plan.refusal(0, Some(&used(3, 2_000_000)), NOON);
    assert_eq!(reason.code, ReasonCode::RunCostLimit);
    let late = NOON + time::Duration::seconds(61);
    let (reason, hit) = plan.refusal(0, Some(&used(3, 0)), late);
    assert_eq!(reason.code, ReasonCode::RunTimeLimit);
    assert_eq!(hit.current, serde_json::Number::from(66));

    let (reason, hit) = plan.refusal(2, Some(&used(0, 50_000_000)), NOON);
    assert_eq!(reason.code, ReasonCode::UserBudgetExhausted);
    assert_eq!(hit.limit, serde_json::Number::from_f64(50.0).unwrap());
    assert!(reason.message.contains("$50.00"), "{}", reason.message);
}

#[test]
fn a_run_closes_on_time_cost_or_tokens_but_not_on_calls() {
    let limits = RunLimits {
        max_calls: Some(2),
        max_seconds: Some(60),
        max_cost_usd: Some(usd(2.0)),
        max_tokens: Some(1000),
    };
    let start = NOON.unix_timestamp();
    let counter = |calls, cost_micros, tokens| Counter {
        used: Amounts {
            calls,
            cost_micros,
            tokens,
        },
        owner: Some(RunOwner {
            started_at: start,
            user_id: "ana".into(),
            organization: None,
        }),
    };
    assert_eq!(run_state(&limits, &counter(2, 0, 0), NOON), RunState::Open);
    assert_eq!(
        run_state(&limits, &counter(0, 2_000_000, 0), NOON),
        RunState::Closed(ReasonCode::RunCostLimit)
    );
    assert_eq!(
        run_state(&limits, &counter(0, 0, 1000), NOON),
        RunState::Closed(ReasonCode::RunTokenLimit)
    );
    assert_eq!(
        run_state(
            &limits,
            &counter(0, 0, 0),
            NOON + time::Duration::seconds(61)
        ),
        RunState::Closed(ReasonCode::RunTimeLimit)
    );
}

#[test]
fn dollars_are_exact_micro_dollars() {
    assert_eq!(usd(0.1).micros() + usd(0.2).micros(), usd(0.3).micros());
    assert_eq!(usd(2.0).to_string(), "$2.00");
    assert_eq!(usd(0.35).to_string(), "$0.35");
    assert_eq!(usd(0.0125).to_string(), "$0.0125");
    assert!(Usd::from_dollars(-1.0).is_err());
    assert!(Usd::from_dollars(f64::NAN).is_err());
    assert!(Usd::from_dollars(2e9).is_err());
    let parsed: Usd = serde_json::from_str("1.5").unwrap();
    assert_eq!(parsed, usd(1.5));
    assert_eq!(serde_json::to_string(&parsed).unwrap(), "1.5");
}
