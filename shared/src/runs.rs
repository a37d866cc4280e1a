//! Runs: what an agent's run has used against its limits, and the model
//! usage the agent reports for it (`GET /v1/runs/{run_id}`,
//! `POST /v1/runs/{run_id}/usage`).
//!
//! A run exists from its first decision (see [`crate::limits`]). A report
//! adds tokens and cost to the run and the cost to every budget of the
//! run's user and organization, in one atomic write; once the run is closed
//! (past its time, or its cost or tokens used up) reports are refused.

use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::limits::{run_key, run_state, usage_charges, Charged, Counter, RunState, Usage};
use crate::model::{ReasonCode, RunLimits, Usd};
use crate::ports::StoreError;
use crate::service::AuthorizeService;

/// The body of `POST /v1/runs/{run_id}/usage`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// Model tokens used since the last report.
    #[serde(default)]
    pub tokens: u64,
    /// What they cost, in US dollars.
    #[serde(default)]
    pub cost_usd: f64,
}

/// The most tokens one report may carry: far above any real model call, low
/// enough that no sum of reports overflows a counter.
pub const MAX_REPORTED_TOKENS: u64 = 1_000_000_000;

/// The most dollars one report may carry.
pub const MAX_REPORTED_USD: f64 = 1_000_000.0;

/// A run's limits as the answer shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitsView {
    /// Calls per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Seconds per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u64>,
    /// Dollars per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Tokens per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

/// One run, against its agent's limits in the active policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    /// The run.
    pub run_id: String,
    /// Its agent.
    pub agent_id: String,
    /// The user of its first decision, whose budgets its usage is charged to.
    pub user_id: String,
    /// That user's organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// When its first decision was made (RFC 3339).
    pub started_at: String,
    /// Seconds since then.
    pub elapsed_seconds: i64,
    /// Allowed tool calls.
    pub calls: u64,
    /// Reported model tokens.
    pub tokens: u64,
    /// Spent: reported usage and the tools' costs.
    pub cost_usd: f64,
    /// Its agent's run limits.
    pub limits: LimitsView,
    /// `open` or `closed`.
    pub status: &'static str,
    /// Why it is closed: `run_time_limit`, `run_cost_limit` or `run_token_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_reason: Option<ReasonCode>,
}

/// Why a run request was not answered with the run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The report is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The agent has no run of this id (another agent's run is not found either).
    #[error("run `{0}` is unknown: a run starts with the first decision that names it")]
    NotFound(String),
    /// The run is closed; no usage can be reported for it.
    #[error("run `{run_id}` is closed ({reason}); report usage while it is open")]
    Closed {
        /// The run.
        run_id: String,
        /// Why it closed.
        reason: ReasonCode,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UsageReport {
    fn usage(&self) -> Result<Usage, RunError> {
        if self.tokens > MAX_REPORTED_TOKENS {
            return Err(RunError::Invalid(format!(
                "`tokens` must be at most {MAX_REPORTED_TOKENS} per report"
            )));
        }
        if !(0.0..=MAX_REPORTED_USD).contains(&self.cost_usd) {
            return Err(RunError::Invalid(format!(
                "`cost_usd` must be a number of dollars from 0 to {MAX_REPORTED_USD}"
            )));
        }
        let cost = Usd::from_dollars(self.cost_usd).map_err(RunError::Invalid)?;
        if self.tokens == 0 && cost.micros() == 0 {
            return Err(RunError::Invalid(
                "a report needs `tokens` or `cost_usd` above zero".into(),
            ));
        }
        Ok(Usage {
            tokens: self.tokens,
            cost,
        })
    }
}

fn view(
    agent_id: &str,
    run_id: &str,
    limits: &RunLimits,
    counter: &Counter,
    now: time::OffsetDateTime,
) -> Result<RunView, RunError> {
    let owner = counter
        .owner
        .as_ref()
        .ok_or_else(|| StoreError::Corrupt(format!("run `{run_id}` has no owner")))?;
    let state = run_state(limits, counter, now);
    Ok(RunView {
        run_id: run_id.to_owned(),
        agent_id: agent_id.to_owned(),
        user_id: owner.user_id.clone(),
        organization: owner.organization.clone(),
        started_at: time::OffsetDateTime::from_unix_timestamp(owner.started_at)
            .map(rfc3339)
            .unwrap_or_default(),
        elapsed_seconds: now.unix_timestamp().saturating_sub(owner.started_at),
        calls: counter.used.calls,
        tokens: counter.used.tokens,
        cost_usd: Usd(counter.used.cost_micros).dollars(),
        limits: LimitsView {
            max_calls: limits.max_calls,
            max_seconds: limits.max_seconds,
            max_cost_usd: limits.max_cost_usd.map(Usd::dollars),
            max_tokens: limits.max_tokens,
        },
        status: match state {
            RunState::Open => "open",
            RunState::Closed(_) => "closed",
        },
        closed_reason: match state {
            RunState::Open => None,
            RunState::Closed(r) => Some(r),
        },
    })
}

impl AuthorizeService {
    /// The run `run_id` of `agent_id`.
    pub async fn run(&self, agent_id: &str, run_id: &str) -> Result<RunView, RunError> {
        let engine = self.engine.current();
        let limits = engine
            .agent(agent_id)
            .and_then(|a| a.run_limits.clone())
            .unwrap_or_default();
        let counter = self
            .counters
            .counter(&run_key(agent_id, run_id), 0)
            .await?
            .ok_or_else(|| RunError::NotFound(run_id.to_owned()))?;
        view(agent_id, run_id, &limits, &counter, self.clock.now())
    }

    /// Adds `report` to the open run `run_id` of `agent_id` and to the
    /// budgets of its user and organization, and answers with the run.
    pub async fn report_usage(
        &self,
        agent_id: &str,
        run_id: &str,
        report: &UsageReport,
    ) -> Result<RunView, RunError> {
        let usage = report.usage()?;
        let engine = self.engine.current();
        let agent = engine
            .agent(agent_id)
            .ok_or_else(|| RunError::NotFound(run_id.to_owned()))?;
        let limits = agent.run_limits.clone().unwrap_or_default();
        let key = run_key(agent_id, run_id);
        let now = self.clock.now();
        let counter = self
            .counters
            .counter(&key, 0)
            .await?
            .ok_or_else(|| RunError::NotFound(run_id.to_owned()))?;
        let owner = counter
            .owner
            .clone()
            .ok_or_else(|| StoreError::Corrupt(format!("run `{run_id}` has no owner")))?;
        if let RunState::Closed(reason) = run_state(&limits, &counter, now) {
            return Err(RunError::Closed {
                run_id: run_id.to_owned(),
                reason,
            });
        }
        let charges = usage_charges(engine.registry(), agent, run_id, &owner, usage, now);
        match self.counters.charge(&charges).await? {
            Charged::Applied => {}
            // The run closed between the read and the write.
            Charged::Refused { current, .. } => {
                let reason = current
                    .map(|c| run_state(&limits, &c, now))
                    .and_then(|s| match s {
                        RunState::Closed(r) => Some(r),
                        RunState::Open => None,
                    })
                    .ok_or_else(|| RunError::NotFound(run_id.to_owned()))?;
                return Err(RunError::Closed {
                    run_id: run_id.to_owned(),
                    reason,
                });
            }
        }
        tracing::info!(
            target: "usage",
            agent_id,
            run_id,
            user_id = %owner.user_id,
            tokens = usage.tokens,
            cost_usd = usage.cost.dollars(),
            "usage reported"
        );
        let counter = self
            .counters
            .counter(&key, 0)
            .await?
            .ok_or_else(|| RunError::NotFound(run_id.to_owned()))?;
        view(agent_id, run_id, &limits, &counter, now)
    }
}
