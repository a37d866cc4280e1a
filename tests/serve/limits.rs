//! The shared limits scenarios on `govctl serve`: counters move in the same
//! SQLite transaction (group commit) as the decision records. The clock is
//! moved through the server's test clock file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::common::{Reply, Server};
use crate::limits_suite::{self, Answer, LimitsHost, User};

/// A server whose decision clock the tests move.
struct Local {
    server: Server,
    clock: PathBuf,
    _clock_dir: tempfile::TempDir,
    tokens: Mutex<HashMap<String, String>>,
}

impl Local {
    fn start() -> Local {
        let dir = tempfile::tempdir().expect("a temp dir");
        let clock = dir.path().join("clock-offset");
        let server = Server::start_with(&[
            "--test-clock-offset-file",
            clock.to_str().expect("a UTF-8 path"),
            "--anomaly-interval",
            "1",
        ]);
        Local {
            server,
            clock,
            _clock_dir: dir,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Tokens are minted once per party (a `govctl` run each).
    fn token(&self, key: String, mint: impl FnOnce() -> String) -> String {
        let mut tokens = self.tokens.lock().expect("tokens");
        tokens.entry(key).or_insert_with(mint).clone()
    }

    fn agent(&self, agent: &str) -> String {
        self.token(format!("agent:{agent}"), || self.server.agent_token(agent))
    }
}

fn answer(reply: &Reply) -> Answer {
    Answer {
        status: reply.status,
        json: reply.json.clone(),
        retry_after: Some(reply.header("retry-after").to_owned()).filter(|h| !h.is_empty()),
    }
}

impl LimitsHost for Local {
    fn authorize(&self, agent: &str, user: User<'_>, body: &Value) -> Answer {
        let agent = self.agent(agent);
        let user = self.token(
            format!("user:{}:{:?}:{:?}", user.id, user.roles, user.org),
            || self.server.user_token(user.id, user.roles, user.org),
        );
        answer(&self.server.authorize(&agent, &user, body))
    }

    fn report_usage(&self, agent: &str, run_id: &str, body: &Value) -> Answer {
        let agent = self.agent(agent);
        answer(
            &self
                .server
                .post(&format!("/v1/runs/{run_id}/usage"), &agent, body),
        )
    }

    fn run(&self, agent: &str, run_id: &str) -> Answer {
        let agent = self.agent(agent);
        answer(&self.server.get(&format!("/v1/runs/{run_id}"), Some(&agent)))
    }

    fn move_clock_to(&self, at: OffsetDateTime) {
        let offset = (at - OffsetDateTime::now_utc()).as_seconds_f64();
        std::fs::write(&self.clock, format!("{offset}")).expect("write the clock offset");
    }

    fn decisions_of(&self, user: &str) -> Vec<Value> {
        let db = self.server.db();
        let mut stmt = db
            .prepare("SELECT record FROM decisions WHERE json_extract(record, '$.user_id') = ?1")
            .expect("a query");
        let rows: Vec<String> = stmt
            .query_map([user], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("records");
        rows.iter()
            .map(|r| serde_json::from_str(r).expect("a JSON record"))
            .collect()
    }

    fn switch(&self, disable: bool, agent: &str, version: Option<&str>, reason: &str) {
        let args = limits_suite::switch_args(disable, agent, version, reason);
        self.server.govctl(&args);
    }

    fn switch_bound(&self) -> Duration {
        // The reload interval.
        Duration::from_secs(1)
    }

    fn switch_events(&self, agent: &str) -> Vec<Value> {
        self.control_events(
            "json_extract(event, '$.agent_id') = ?1
             AND json_extract(event, '$.action') IN ('agent_disabled', 'agent_enabled')",
            &[agent],
        )
    }

    fn watch_anomalies(&self) -> Vec<Value> {
        // The watcher runs every second (--anomaly-interval 1).
        std::thread::sleep(Duration::from_millis(2500));
        self.control_events("json_extract(event, '$.action') = 'anomaly_detected'", &[])
    }

    fn anomaly_metric(&self, agent: &str, version: &str) -> f64 {
        let metrics = self.server.get("/metrics", None).text;
        let series =
            format!("governance_anomalies_total{{agent=\"{agent}\",version=\"{version}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }
}

impl Local {
    fn control_events(&self, condition: &str, params: &[&str]) -> Vec<Value> {
        let db = self.server.db();
        let mut stmt = db
            .prepare(&format!(
                "SELECT event FROM control_events WHERE {condition} ORDER BY seq"
            ))
            .expect("a query");
        let rows: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("events");
        rows.iter()
            .map(|r| serde_json::from_str(r).expect("a JSON event"))
            .collect()
    }
}

#[test]
fn suite_the_51st_credit_pull_of_the_day_is_denied_for_that_underwriter_only() {
    limits_suite::the_51st_credit_pull_of_the_day_is_denied_for_that_underwriter_only(
        &Local::start(),
    );
}

#[test]
fn suite_the_21st_call_of_a_run_is_denied() {
    limits_suite::the_21st_call_of_a_run_is_denied(&Local::start());
}

#[test]
fn suite_a_run_past_60_seconds_is_denied() {
    limits_suite::a_run_past_60_seconds_is_denied(&Local::start());
}

#[test]
fn suite_two_dollars_of_reported_cost_ends_the_run() {
    limits_suite::two_dollars_of_reported_cost_ends_the_run(&Local::start());
}

#[test]
fn suite_a_daily_user_budget_is_reached_across_two_agents() {
    limits_suite::a_daily_user_budget_is_reached_across_two_agents(&Local::start());
}

#[test]
fn suite_retry_after_counts_down_to_the_end_of_the_window() {
    limits_suite::retry_after_counts_down_to_the_end_of_the_window(&Local::start());
}

#[test]
fn suite_idempotent_replays_are_not_counted_twice() {
    limits_suite::idempotent_replays_are_not_counted_twice(&Local::start());
}

#[test]
fn suite_the_kill_switch_contains_an_agent_at_once() {
    limits_suite::the_kill_switch_contains_an_agent_at_once(&Local::start());
}

#[test]
fn suite_anomaly_alerts_at_151_percent_and_not_at_149() {
    let host = Local::start();
    limits_suite::anomaly_alerts_at_151_percent_and_not_at_149(&host);
    let listed = host.server.govctl(&["anomalies"]);
    assert!(
        listed.contains("Alerts in the last 7 day(s): 1") && listed.contains("151%"),
        "{listed}"
    );
}

#[test]
fn suite_limits_are_exact_under_concurrency() {
    limits_suite::limits_are_exact_under_concurrency(&Local::start(), 5);
}

/// `audit explain` of a call the kill switch stopped names who disabled the
/// agent, when and why.
#[test]
fn explain_shows_the_kill_switch_that_stopped_a_call() {
    let host = Local::start();
    host.switch(true, "agent-support-1", None, "leaking ticket data");
    let user = User {
        id: "alice",
        roles: &["support_agent"],
        org: None,
    };
    let denied = crate::common::poll(Duration::from_secs(3), "the switch", || {
        let a = host.authorize(
            "agent-support-1",
            user,
            &serde_json::json!({"tool_id": "search_kb", "arguments": {"query": "q"}}),
        );
        if a.json["reasons"][0]["code"] == "agent_disabled" {
            Ok(a)
        } else {
            Err(a.json.to_string())
        }
    });
    let id = denied.json["decision_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let story = host.server.govctl(&["audit", "explain", &id]);
    assert!(
        story.contains("kill switch   every version disabled")
            && story.contains("by oncall: leaking ticket data"),
        "{story}"
    );
    let listed = host.server.govctl(&["agent", "disabled"]);
    assert!(
        listed.contains("agent `agent-support-1` (every version)"),
        "{listed}"
    );
}

/// An operator who mistypes an agent is told so, and nothing is switched.
#[test]
fn disabling_an_unknown_agent_is_refused() {
    let host = Local::start();
    let out = crate::common::run_govctl(&[
        "agent",
        "disable",
        "agent-suport-1",
        "--reason",
        "typo",
        "--data-dir",
        host.server.data_dir_str(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`agent-suport-1` is not in the active policy version")
            && stderr.contains("agent-support-1"),
        "{stderr}"
    );
    assert!(host.switch_events("agent-suport-1").is_empty());
}
