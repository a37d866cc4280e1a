//! The limits scenarios, written once and run against both hosts:
//! `govctl serve` (tests/serve/limits.rs) and the AWS deployment on the
//! emulator (tests/aws/limits.rs). They are seed 003's Meridian guardrails
//! as the example registry writes them: 50 credit-report pulls per
//! underwriter per day, 20 calls and 60 seconds and $2 per loan-processing
//! run, $50 per user per day across all agents; and the operations agent's
//! 10 incidents per hour, the kill switch, and exactness under concurrency.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use time::OffsetDateTime;

/// One answer of a host.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub json: Value,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

impl Answer {
    fn reason(&self) -> &str {
        self.json["reasons"][0]["code"].as_str().unwrap_or_default()
    }

    fn expect(&self, status: u16, decision: &str, reason: &str, what: &str) -> &Self {
        assert_eq!(self.status, status, "{what}: {}", self.json);
        assert_eq!(self.json["decision"], decision, "{what}: {}", self.json);
        assert_eq!(self.reason(), reason, "{what}: {}", self.json);
        self
    }

    fn error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.json);
        assert_eq!(self.json["error"]["code"], code, "{what}: {}", self.json);
    }
}

/// A user the agents act for.
#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    /// Id.
    pub id: &'a str,
    /// Roles.
    pub roles: &'a [&'a str],
    /// Organization.
    pub org: Option<&'a str>,
}

const UNDERWRITER: &[&str] = &["underwriter"];
const MERIDIAN: Option<&str> = Some("meridian-capital");
const LOAN: &str = "meridian-loan-agent";
const COMPLIANCE: &str = "meridian-compliance-agent";
const OPS: &str = "agent-ops-1";

fn underwriter(id: &str) -> User<'_> {
    User {
        id,
        roles: UNDERWRITER,
        org: MERIDIAN,
    }
}

fn sre(id: &str) -> User<'_> {
    User {
        id,
        roles: &["sre"],
        org: None,
    }
}

/// What a scenario needs of a host.
pub trait LimitsHost: Sync {
    /// `POST /v1/authorize` as `agent` for `user`.
    fn authorize(&self, agent: &str, user: User<'_>, body: &Value) -> Answer;
    /// `POST /v1/runs/{run_id}/usage` as `agent`.
    fn report_usage(&self, agent: &str, run_id: &str, body: &Value) -> Answer;
    /// `GET /v1/runs/{run_id}` as `agent`.
    fn run(&self, agent: &str, run_id: &str) -> Answer;
    /// Moves the clock decisions are made by to `at` (time then runs on).
    fn move_clock_to(&self, at: OffsetDateTime);
    /// Every decision record of `user`, as the log holds them.
    fn decisions_of(&self, user: &str) -> Vec<Value>;
    /// The kill switch, as an operator uses it.
    fn switch(&self, disable: bool, agent: &str, version: Option<&str>, reason: &str);
    /// How long a switch may take to apply on this host.
    fn switch_bound(&self) -> Duration;
    /// The kill-switch control events of `agent` in the audit trail.
    fn switch_events(&self, agent: &str) -> Vec<Value>;
    /// Lets the host's anomaly watcher run (at the clock's time), then
    /// returns every `anomaly_detected` control event in the audit trail.
    fn watch_anomalies(&self) -> Vec<Value>;
    /// The alerts the host's metrics count for `agent` at `version`.
    fn anomaly_metric(&self, agent: &str, version: &str) -> f64;
}

/// The `govctl agent disable|enable` arguments of a switch, without where
/// the switch is (each host adds its data directory or stack).
pub fn switch_args<'a>(
    disable: bool,
    agent: &'a str,
    version: Option<&'a str>,
    reason: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![
        "agent",
        if disable { "disable" } else { "enable" },
        agent,
        "--reason",
        reason,
        "--by",
        "oncall",
    ];
    if let Some(v) = version {
        args.extend(["--version", v]);
    }
    args
}

/// A day of no importance, at `hh:mm:ss` UTC.
fn at(hh: u8, mm: u8, ss: u8) -> OffsetDateTime {
    time::Date::from_calendar_date(2027, time::Month::March, 1)
        .expect("a date")
        .with_hms(hh, mm, ss)
        .expect("a time")
        .assume_utc()
}

fn pull(applicant: &str, run: &str) -> Value {
    json!({"tool_id": "pull_credit_report", "arguments": {"applicant_id": applicant}, "run_id": run})
}

fn lookup(run: &str) -> Value {
    json!({"tool_id": "lookup_regulatory_requirements",
           "arguments": {"state": "OH", "product": "conventional-30y"}, "run_id": run})
}

fn incident(title: &str) -> Value {
    json!({"tool_id": "open_incident", "arguments": {"title": title, "severity": 2}})
}

/// The 51st credit-report pull of the day is denied for that underwriter,
/// with the limit, its count and when it starts over, and the deny is
/// recorded; another underwriter still pulls.
pub fn the_51st_credit_pull_of_the_day_is_denied_for_that_underwriter_only(host: &impl LimitsHost) {
    host.move_clock_to(at(12, 0, 0));
    let ana = underwriter("ana");
    // A run makes at most 20 calls: the 50 pulls span three runs.
    for i in 0..50 {
        let run = format!("pulls-{}", i / 20);
        host.authorize(LOAN, ana, &pull(&format!("A-{i}"), &run))
            .expect(200, "allow", "allowed", &format!("pull {}", i + 1));
    }
    let denied = host.authorize(LOAN, ana, &pull("A-50", "pulls-3"));
    denied.expect(429, "deny", "rate_limited", "the 51st pull");
    let limit = &denied.json["limit"];
    assert_eq!(limit["name"], "rate_limit:pull_credit_report", "{denied:?}");
    assert_eq!(limit["per"], "user");
    assert_eq!(limit["limit"], 50);
    assert_eq!(limit["current"], 50);
    assert_eq!(limit["resets_at"], "2027-03-02T00:00:00.000Z");
    // Noon to midnight, give or take the seconds the pulls took.
    let retry = denied.json["retry_after"].as_u64().expect("retry_after");
    assert!((43_000..=43_200).contains(&retry), "{retry}");
    assert_eq!(
        denied.retry_after.as_deref(),
        Some(retry.to_string().as_str())
    );
    let recorded = host
        .decisions_of("ana")
        .into_iter()
        .find(|r| r["decision_id"] == denied.json["decision_id"])
        .expect("the deny is recorded");
    assert_eq!(recorded["decision"], "deny");
    assert_eq!(recorded["limit"]["current"], 50);
    assert_eq!(recorded["run_id"], "pulls-3");

    host.authorize(LOAN, underwriter("ben"), &pull("A-50", "ben-1"))
        .expect(200, "allow", "allowed", "another underwriter's first pull");
    // The next day starts over.
    host.move_clock_to(at(12, 0, 0) + time::Duration::days(1));
    host.authorize(LOAN, ana, &pull("A-51", "pulls-4")).expect(
        200,
        "allow",
        "allowed",
        "ana's first pull the next day",
    );
}

/// The 21st call of a run is denied (403: waiting does not help); a new
/// run starts from zero. Denied calls consume nothing.
pub fn the_21st_call_of_a_run_is_denied(host: &impl LimitsHost) {
    host.move_clock_to(at(9, 0, 0));
    let uma = underwriter("uma");
    for i in 0..20 {
        host.authorize(LOAN, uma, &lookup("run-21")).expect(
            200,
            "allow",
            "allowed",
            &format!("call {}", i + 1),
        );
    }
    for _ in 0..3 {
        let denied = host.authorize(LOAN, uma, &lookup("run-21"));
        denied.expect(403, "deny", "run_call_limit", "the 21st call");
        assert_eq!(denied.json["limit"]["limit"], 20);
        assert_eq!(
            denied.json["limit"]["current"], 20,
            "denied calls consume nothing"
        );
        assert_eq!(denied.json.get("retry_after"), None);
        assert_eq!(denied.retry_after, None);
    }
    // A call the policy denies starts nothing and counts nothing either.
    let run = host.run(LOAN, "run-21");
    assert_eq!(run.status, 200, "{:?}", run);
    assert_eq!(run.json["calls"], 20);
    assert_eq!(run.json["limits"]["max_calls"], 20);
    assert_eq!(
        run.json["status"], "open",
        "a run is not closed by its calls"
    );
    host.authorize(LOAN, uma, &lookup("run-22"))
        .expect(200, "allow", "allowed", "a new run");
    // Without a run, the agent's calls are refused: its limits could not count them.
    let unnamed = json!({"tool_id": "lookup_regulatory_requirements",
                         "arguments": {"state": "OH", "product": "conventional-30y"}});
    host.authorize(LOAN, uma, &unnamed).expect(
        403,
        "deny",
        "run_id_required",
        "a call without run_id",
    );
}

/// A run lasts at most 60 seconds from its first decision: past that its
/// calls are denied and no usage can be reported for it.
pub fn a_run_past_60_seconds_is_denied(host: &impl LimitsHost) {
    let start = at(10, 0, 0);
    host.move_clock_to(start);
    let uma = underwriter("uma");
    host.authorize(LOAN, uma, &lookup("slow")).expect(
        200,
        "allow",
        "allowed",
        "the run's first call",
    );
    host.move_clock_to(start + time::Duration::seconds(50));
    host.authorize(LOAN, uma, &lookup("slow"))
        .expect(200, "allow", "allowed", "50 s into the run");
    host.move_clock_to(start + time::Duration::seconds(62));
    let late = host.authorize(LOAN, uma, &lookup("slow"));
    late.expect(403, "deny", "run_time_limit", "62 s into the run");
    assert_eq!(late.json["limit"]["limit"], 60);
    host.report_usage(LOAN, "slow", &json!({"tokens": 10, "cost_usd": 0.01}))
        .error(409, "run_closed", "usage for a run past its time");
    let run = host.run(LOAN, "slow");
    assert_eq!(run.json["status"], "closed", "{:?}", run);
    assert_eq!(run.json["closed_reason"], "run_time_limit");
    assert_eq!(run.json["calls"], 2);
}

/// Reported model cost ends a run at $2; reports are bounded, belong to
/// the run's own agent, and name known runs.
pub fn two_dollars_of_reported_cost_ends_the_run(host: &impl LimitsHost) {
    host.move_clock_to(at(11, 0, 0));
    let uma = underwriter("uma");
    host.report_usage(LOAN, "costly", &json!({"tokens": 100, "cost_usd": 0.5}))
        .error(
            404,
            "run_not_found",
            "usage before the run's first decision",
        );
    host.authorize(LOAN, uma, &lookup("costly")).expect(
        200,
        "allow",
        "allowed",
        "the run's first call",
    );
    let first = host.report_usage(LOAN, "costly", &json!({"tokens": 12000, "cost_usd": 1.5}));
    assert_eq!(first.status, 200, "{:?}", first);
    assert_eq!(first.json["cost_usd"], 1.5);
    assert_eq!(first.json["tokens"], 12000);
    assert_eq!(first.json["user_id"], "uma");
    // The scoring tool costs $0.05 a call; it counts against the run too.
    let score = json!({"tool_id": "calculate_risk_score",
                       "arguments": {"application_id": "L-1"}, "run_id": "costly"});
    host.authorize(LOAN, uma, &score)
        .expect(200, "allow", "allowed", "a $0.05 call at $1.50");
    assert_eq!(host.run(LOAN, "costly").json["cost_usd"], 1.55);
    let second = host.report_usage(LOAN, "costly", &json!({"tokens": 5000, "cost_usd": 0.6}));
    assert_eq!(
        second.status, 200,
        "the report that crosses $2 is kept: {:?}",
        second
    );
    assert_eq!(second.json["status"], "closed");
    assert_eq!(second.json["closed_reason"], "run_cost_limit");
    let denied = host.authorize(LOAN, uma, &lookup("costly"));
    denied.expect(403, "deny", "run_cost_limit", "a call after $2.15");
    assert_eq!(denied.json["limit"]["limit"], 2.0);
    assert_eq!(denied.json["limit"]["current"], 2.15);
    host.report_usage(LOAN, "costly", &json!({"tokens": 1}))
        .error(409, "run_closed", "usage for a spent run");

    // Another agent's run is nobody's business, and bad reports are refused.
    host.authorize(LOAN, uma, &lookup("checked"))
        .expect(200, "allow", "allowed", "another run");
    host.report_usage(COMPLIANCE, "checked", &json!({"tokens": 1}))
        .error(404, "run_not_found", "usage for another agent's run");
    assert_eq!(host.run(COMPLIANCE, "checked").status, 404);
    for (bad, what) in [
        (json!({"cost_usd": -1}), "a negative cost"),
        (json!({"tokens": 0}), "an empty report"),
        (json!({"cost_usd": "1"}), "a cost that is not a number"),
        (json!({"tokens": 1, "agent_id": LOAN}), "an unknown field"),
    ] {
        let answer = host.report_usage(LOAN, "checked", &bad);
        assert!(
            answer.status == 400 && answer.json["error"]["code"].is_string(),
            "{what}: {:?}",
            answer
        );
    }
    assert_eq!(host.run(LOAN, "checked").json["cost_usd"], 0.0);
}

/// $50 per user per day, summed over the runs of two agents: once spent,
/// both agents' calls for that user are denied until the day ends (429),
/// and another user is unaffected.
pub fn a_daily_user_budget_is_reached_across_two_agents(host: &impl LimitsHost) {
    host.move_clock_to(at(8, 0, 0));
    let una = underwriter("una");
    // 26 runs, alternating agents, each reporting $1.99 (under the run's $2).
    for i in 0..26 {
        let agent = if i % 2 == 0 { LOAN } else { COMPLIANCE };
        let run = format!("day-{i}");
        host.authorize(agent, una, &lookup(&run)).expect(
            200,
            "allow",
            "allowed",
            &format!("run {i}"),
        );
        let report = host.report_usage(agent, &run, &json!({"tokens": 900, "cost_usd": 1.99}));
        assert_eq!(report.status, 200, "report {i}: {:?}", report);
    }
    // 26 × $1.99 = $51.74: spent.
    for agent in [LOAN, COMPLIANCE] {
        let denied = host.authorize(agent, una, &lookup("day-26"));
        denied.expect(429, "deny", "user_budget_exhausted", agent);
        assert_eq!(denied.json["limit"]["name"], "budget:user-daily");
        assert_eq!(denied.json["limit"]["current"], 51.74);
        assert_eq!(denied.json["limit"]["limit"], 50.0);
        let retry = denied.json["retry_after"].as_u64().expect("retry_after");
        assert!(
            (57_000..=57_600).contains(&retry),
            "8:00 to midnight: {retry}"
        );
    }
    host.authorize(LOAN, underwriter("vic"), &lookup("vic-1"))
        .expect(200, "allow", "allowed", "another underwriter");
    host.move_clock_to(at(8, 0, 0) + time::Duration::days(1));
    host.authorize(LOAN, una, &lookup("day-27"))
        .expect(200, "allow", "allowed", "the next day");
}

/// A windowed deny says when the window ends, and the call is allowed
/// again from then.
pub fn retry_after_counts_down_to_the_end_of_the_window(host: &impl LimitsHost) {
    let near_end = at(14, 59, 30);
    host.move_clock_to(near_end);
    for i in 0..10 {
        host.authorize(OPS, sre("sam"), &incident(&format!("i{i}")))
            .expect(200, "allow", "allowed", &format!("incident {}", i + 1));
    }
    // Per agent: another SRE's request counts against the same ten.
    let denied = host.authorize(OPS, sre("sue"), &incident("i10"));
    denied.expect(429, "deny", "rate_limited", "the 11th incident this hour");
    let retry = denied.json["retry_after"].as_u64().expect("retry_after");
    assert!((1..=30).contains(&retry), "14:59:30 to 15:00: {retry}");
    assert_eq!(denied.json["limit"]["per"], "agent");
    assert_eq!(
        denied.json["limit"]["resets_at"],
        "2027-03-01T15:00:00.000Z"
    );
    host.move_clock_to(at(15, 0, 1));
    host.authorize(OPS, sre("sue"), &incident("i10")).expect(
        200,
        "allow",
        "allowed",
        "the first incident of the next hour",
    );
}

/// A call repeated with its idempotency key is answered from its decision
/// and counted once.
pub fn idempotent_replays_are_not_counted_twice(host: &impl LimitsHost) {
    host.move_clock_to(at(16, 10, 0));
    let mut keyed = incident("keyed");
    keyed["idempotency_key"] = json!("incident-keyed");
    let first = host.authorize(OPS, sre("sam"), &keyed);
    first.expect(200, "allow", "allowed", "the keyed call");
    for _ in 0..5 {
        let again = host.authorize(OPS, sre("sam"), &keyed);
        again.expect(200, "allow", "allowed", "a replay");
        assert_eq!(again.json["decision_id"], first.json["decision_id"]);
    }
    for i in 0..9 {
        host.authorize(OPS, sre("sam"), &incident(&format!("i{i}")))
            .expect(200, "allow", "allowed", &format!("incident {}", i + 2));
    }
    host.authorize(OPS, sre("sam"), &incident("one too many"))
        .expect(429, "deny", "rate_limited", "the 11th incident");
    // Still a replay, not a new call: the key holds an allow.
    let again = host.authorize(OPS, sre("sam"), &keyed);
    assert_eq!(again.json["decision_id"], first.json["decision_id"]);
}

/// The kill switch denies every call of the agent (or of one version)
/// within the host's bound, says who and why, and is recorded; enabling
/// restores it.
pub fn the_kill_switch_contains_an_agent_at_once(host: &impl LimitsHost) {
    host.move_clock_to(at(13, 0, 0));
    let uma = underwriter("uma");
    host.authorize(LOAN, uma, &lookup("ks-1"))
        .expect(200, "allow", "allowed", "before the switch");
    // Another version than the one registered: nothing changes.
    host.switch(true, LOAN, Some("9.9.9"), "a canary gone wrong");
    std::thread::sleep(host.switch_bound());
    host.authorize(LOAN, uma, &lookup("ks-2")).expect(
        200,
        "allow",
        "allowed",
        "another version is disabled",
    );

    // Each attempt is its own run: polling must not run into the run's limit.
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let next_run = || {
        let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("ks-poll-{n}")
    };
    let disabled_at = Instant::now();
    host.switch(true, LOAN, Some("3.0.1"), "looping on pull_credit_report");
    let denied = wait_for(host.switch_bound(), || {
        let a = host.authorize(LOAN, uma, &lookup(&next_run()));
        (a.reason() == "agent_disabled").then_some(a)
    })
    .unwrap_or_else(|| panic!("not denied within {:?}", host.switch_bound()));
    assert!(disabled_at.elapsed() <= host.switch_bound() + Duration::from_secs(1));
    denied.expect(403, "deny", "agent_disabled", "the disabled version");
    let message = denied.json["reasons"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("looping on pull_credit_report") && message.contains("3.0.1"),
        "{message}"
    );
    // Every tool, every user.
    host.authorize(LOAN, underwriter("ben"), &pull("A-1", "ks-4"))
        .expect(403, "deny", "agent_disabled", "another tool and user");
    // Other agents go on.
    host.authorize(COMPLIANCE, uma, &lookup("ks-5")).expect(
        200,
        "allow",
        "allowed",
        "another agent",
    );

    host.switch(false, LOAN, Some("3.0.1"), "fixed in 3.0.2");
    wait_for(host.switch_bound(), || {
        (host.authorize(LOAN, uma, &lookup(&next_run())).status == 200).then_some(())
    })
    .expect("enabled again within the bound");

    host.switch(true, LOAN, None, "incident INC-7");
    wait_for(host.switch_bound(), || {
        (host.authorize(LOAN, uma, &lookup(&next_run())).reason() == "agent_disabled").then_some(())
    })
    .expect("every version disabled within the bound");

    let events = host.switch_events(LOAN);
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "agent_disabled",
            "agent_disabled",
            "agent_enabled",
            "agent_disabled"
        ],
        "{events:?}"
    );
    assert_eq!(events[1]["message"], "looping on pull_credit_report");
    assert_eq!(events[1]["agent_version"], "3.0.1");
    assert!(events[3]["actor"].is_string());
    assert_eq!(events[3].get("agent_version"), None);
}

/// Seven days of history through the moved clock, then one call this
/// hour: 111 calls in the week make it 151% of the hourly average (an
/// alert), 113 calls 149% (none). One alert per agent version and hour.
pub fn anomaly_alerts_at_151_percent_and_not_at_149(host: &impl LimitsHost) {
    let today = at(12, 0, 0);
    let uma = underwriter("uma");
    let mut run = 0;
    // Newest day first, both agents' calls of a day before the next day:
    // while the history is written, the days before the clock's are still
    // empty for every agent, so nothing alerts early. (Writing one agent's
    // whole week first would let the watcher see it as a baseline while
    // the clock passes its newest day again for the second agent.)
    for day in 1..=7_i64 {
        for (agent, calls) in [(LOAN, 111), (COMPLIANCE, 113)] {
            let on_this_day = (0..calls).filter(|i| i % 7 == day - 1).count();
            for i in 0..on_this_day {
                let hour = i64::try_from(i % 24).expect("an hour");
                host.move_clock_to(
                    today - time::Duration::days(day) + time::Duration::hours(hour - 12),
                );
                run += 1;
                host.authorize(agent, uma, &lookup(&format!("hist-{run}")))
                    .expect(200, "allow", "allowed", "history");
            }
        }
    }
    assert!(
        host.watch_anomalies().is_empty(),
        "history alone alerts nothing"
    );
    host.move_clock_to(today);
    for agent in [LOAN, COMPLIANCE] {
        host.authorize(agent, uma, &lookup("today")).expect(
            200,
            "allow",
            "allowed",
            "this hour's call",
        );
    }
    let alerts = host.watch_anomalies();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["action"], "anomaly_detected");
    assert_eq!(alert["agent_id"], LOAN);
    assert_eq!(alert["agent_version"], "3.0.1");
    assert_eq!(alert["actor"], "anomaly-detector");
    let message = alert["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("151%") && message.contains("threshold 150%"),
        "{message}"
    );
    assert_eq!(host.anomaly_metric(LOAN, "3.0.1"), 1.0);
    assert_eq!(host.anomaly_metric(COMPLIANCE, "1.1.0"), 0.0);
    // Once per hour: more calls, another watch, no second alert.
    host.authorize(LOAN, uma, &lookup("today-2")).expect(
        200,
        "allow",
        "allowed",
        "another call this hour",
    );
    assert_eq!(host.watch_anomalies().len(), 1);
}

fn wait_for<T>(bound: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    // The bound, and the time one more request takes.
    let deadline = Instant::now() + bound + Duration::from_secs(1);
    loop {
        if let Some(v) = attempt() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 64 concurrent requests against a limit of 10 let exactly 10 through,
/// every time, and every one of them is recorded; the same for one run's
/// limit of 20 calls.
pub fn limits_are_exact_under_concurrency(host: &impl LimitsHost, rounds: usize) {
    for round in 0..rounds {
        let hour = u8::try_from(round).expect("few rounds");
        host.move_clock_to(at(hour, 30, 0));
        let user = format!("burst-{round}");
        let answers = concurrently(64, |i| {
            host.authorize(OPS, sre(&user), &incident(&format!("burst {round}.{i}")))
        });
        let allowed = answers.iter().filter(|a| a.status == 200).count();
        let limited = answers
            .iter()
            .filter(|a| a.status == 429 && a.reason() == "rate_limited")
            .count();
        assert_eq!((allowed, limited), (10, 54), "round {round}: {answers:?}");
        let recorded = host.decisions_of(&user);
        assert_eq!(
            recorded.len(),
            64,
            "round {round}: every decision is recorded"
        );
        assert_eq!(
            recorded.iter().filter(|r| r["decision"] == "allow").count(),
            10,
            "round {round}"
        );
    }
    let run = "burst-run";
    let answers = concurrently(64, |_| {
        host.authorize(LOAN, underwriter("una-burst"), &lookup(run))
    });
    let allowed = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(allowed, 20, "{answers:?}");
    assert!(answers
        .iter()
        .filter(|a| a.status != 200)
        .all(|a| a.reason() == "run_call_limit"));
    assert_eq!(host.run(LOAN, run).json["calls"], 20);
    assert_eq!(host.decisions_of("una-burst").len(), 64);
}

/// Runs `n` calls of `f` at once, from `n` threads released together.
fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread panicked"))
            .collect()
    })
}
