//! The shared limits scenarios on the AWS deployment: a decision's counter
//! updates are conditional `ADD`s in the same `TransactWriteItems` as its
//! record, against DynamoDB on the emulator. Authorize decides by a clock
//! the tests move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::common::example_policies;
use crate::emulator::ACCOUNT;
use crate::limits_suite::{self, Answer, LimitsHost, User};
use crate::stack::{HttpAnswer, Stack, StackOptions, REFRESH};

/// The system clock moved by an offset the test sets.
#[derive(Debug, Default)]
struct MovableClock {
    offset_ms: AtomicI64,
}

impl governance::ports::Clock for MovableClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

struct Cloud {
    stack: Stack,
    clock: Arc<MovableClock>,
}

impl Cloud {
    fn new(label: &str) -> Cloud {
        let clock = Arc::new(MovableClock::default());
        let stack = Stack::with_options(
            label,
            &example_policies(),
            StackOptions {
                clock: Some(clock.clone()),
                ..StackOptions::default()
            },
        );
        Cloud { stack, clock }
    }

    fn as_agent(&self, agent: &str, method: &str, path: &str, body: &str) -> Answer {
        let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{agent}/session-1");
        answer(self.stack.http(
            "authorize",
            method,
            path,
            Some(&arn),
            &[("content-type", "application/json")],
            body,
        ))
    }
}

fn answer(a: HttpAnswer) -> Answer {
    Answer {
        status: u16::try_from(a.status).unwrap_or(0),
        retry_after: a.headers["retry-after"].as_str().map(str::to_owned),
        json: a.json,
    }
}

impl LimitsHost for Cloud {
    fn authorize(&self, agent: &str, user: User<'_>, body: &Value) -> Answer {
        let token = self.stack.user_token_in(user.id, user.roles, user.org);
        answer(self.stack.authorize(agent, &token, body))
    }

    fn report_usage(&self, agent: &str, run_id: &str, body: &Value) -> Answer {
        self.as_agent(
            agent,
            "POST",
            &format!("/v1/runs/{run_id}/usage"),
            &body.to_string(),
        )
    }

    fn run(&self, agent: &str, run_id: &str) -> Answer {
        self.as_agent(agent, "GET", &format!("/v1/runs/{run_id}"), "")
    }

    fn move_clock_to(&self, at: OffsetDateTime) {
        let offset = at - OffsetDateTime::now_utc();
        self.clock.offset_ms.store(
            i64::try_from(offset.whole_milliseconds()).unwrap_or(0),
            Ordering::Relaxed,
        );
    }

    fn decisions_of(&self, user: &str) -> Vec<Value> {
        self.stack
            .decision_items()
            .into_iter()
            .filter(|r| r["user_id"] == user)
            .collect()
    }

    fn switch(&self, disable: bool, agent: &str, version: Option<&str>, reason: &str) {
        let args = limits_suite::switch_args(disable, agent, version, reason);
        let out = self.stack.govctl(&args);
        assert!(
            out.status.success(),
            "govctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn switch_bound(&self) -> Duration {
        // POLICY_REFRESH_SECONDS of the stack's authorize function.
        REFRESH
    }

    fn switch_events(&self, agent: &str) -> Vec<Value> {
        let mut events: Vec<Value> = self
            .stack
            .decision_items()
            .into_iter()
            .filter(|r| {
                r["agent_id"] == agent
                    && (r["action"] == "agent_disabled" || r["action"] == "agent_enabled")
            })
            .collect();
        // Event ids are UUIDv7: time-ordered.
        events.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
        events
    }

    fn watch_anomalies(&self) -> Vec<Value> {
        self.stack.run_anomaly_watch(self.clock.clone());
        let mut events: Vec<Value> = self
            .stack
            .decision_items()
            .into_iter()
            .filter(|r| r["action"] == "anomaly_detected")
            .collect();
        events.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
        events
    }

    fn anomaly_metric(&self, agent: &str, version: &str) -> f64 {
        self.stack.metric_sum(
            "AnomalyDetected",
            &[("AgentId", agent), ("AgentVersion", version)],
        )
    }
}

#[test]
fn suite_the_51st_credit_pull_of_the_day_is_denied_for_that_underwriter_only() {
    limits_suite::the_51st_credit_pull_of_the_day_is_denied_for_that_underwriter_only(&Cloud::new(
        "lim-pulls",
    ));
}

#[test]
fn suite_the_21st_call_of_a_run_is_denied() {
    limits_suite::the_21st_call_of_a_run_is_denied(&Cloud::new("lim-run"));
}

#[test]
fn suite_a_run_past_60_seconds_is_denied() {
    limits_suite::a_run_past_60_seconds_is_denied(&Cloud::new("lim-time"));
}

#[test]
fn suite_two_dollars_of_reported_cost_ends_the_run() {
    limits_suite::two_dollars_of_reported_cost_ends_the_run(&Cloud::new("lim-cost"));
}

#[test]
fn suite_a_daily_user_budget_is_reached_across_two_agents() {
    limits_suite::a_daily_user_budget_is_reached_across_two_agents(&Cloud::new("lim-budget"));
}

#[test]
fn suite_retry_after_counts_down_to_the_end_of_the_window() {
    limits_suite::retry_after_counts_down_to_the_end_of_the_window(&Cloud::new("lim-retry"));
}

#[test]
fn suite_idempotent_replays_are_not_counted_twice() {
    limits_suite::idempotent_replays_are_not_counted_twice(&Cloud::new("lim-idem"));
}

#[test]
fn suite_the_kill_switch_contains_an_agent_at_once() {
    limits_suite::the_kill_switch_contains_an_agent_at_once(&Cloud::new("lim-kill"));
}

#[test]
fn suite_anomaly_alerts_at_151_percent_and_not_at_149() {
    limits_suite::anomaly_alerts_at_151_percent_and_not_at_149(&Cloud::new("lim-anomaly"));
}

#[test]
fn suite_limits_are_exact_under_concurrency() {
    limits_suite::limits_are_exact_under_concurrency(&Cloud::new("lim-burst"), 3);
}

/// A limited allow still costs at most two DynamoDB requests: the pointer
/// (and kill switch) check, and one transaction that writes the record and
/// moves the counters.
#[test]
fn a_limited_allow_costs_at_most_two_dynamodb_requests() {
    let cloud = Cloud::new("lim-cost-requests");
    let stack = &cloud.stack;
    let uma = stack.user_token_in("uma", &["underwriter"], Some("meridian-capital"));
    let call = |run: &str| {
        serde_json::json!({"tool_id": "calculate_risk_score",
                           "arguments": {"application_id": "L-1"}, "run_id": run})
    };
    assert_eq!(
        stack
            .authorize("meridian-loan-agent", &uma, &call("warm"))
            .status,
        200
    );
    std::thread::sleep(REFRESH + Duration::from_millis(200));
    let before = stack.emu.stack_dynamodb_calls(&stack.name).len();
    let answer = stack.authorize("meridian-loan-agent", &uma, &call("r-1"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let ops: Vec<String> = stack.emu.stack_dynamodb_calls(&stack.name)[before..]
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    // The run, the user's and the organization's budgets: one transaction.
    assert_eq!(ops, ["Query", "TransactWriteItems"], "{ops:?}");
}
