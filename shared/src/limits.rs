//! Limits against runaway agents: tool rate limits, run limits and cost
//! budgets, evaluated after the policy permits a call.
//!
//! A limit is a counter in the store and a condition on it. The service asks
//! [`plan`] which counters a decision moves and under which conditions
//! ([`Charge`]s); the decision log applies them in the same atomic write as
//! the decision's record, or refuses the whole write when a condition does
//! not hold. So a limit of ten lets exactly ten calls through, however many
//! arrive at once and on however many hosts, and no allow is counted without
//! its record, nor recorded without its count.
//!
//! Counting rules:
//! - Windows are fixed and aligned on multiples of their length since the
//!   Unix epoch, in UTC: a window of 86400 seconds is a UTC day, from 00:00.
//! - A denied call consumes nothing. An allowed call consumes once: one call
//!   of each rate limit and of its run, and the tool's `cost_usd` from its
//!   run and from every budget. A replay by idempotency key consumes nothing
//!   more. A pending approval consumes nothing, but is refused when a limit
//!   is already used up; the call consumes when its grant is used.
//! - A run starts at its first decision (whatever the outcome) and belongs
//!   to the user of that decision; usage reported for it is charged to that
//!   user's and organization's budgets.
//! - A run is closed once it is older than `max_seconds` or has spent
//!   `max_cost_usd` or used `max_tokens`; no call is allowed in it, and no
//!   usage can be reported for it.

use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::model::{
    AgentSpec, BudgetScope, Decision, LimitHit, RateLimitScope, Reason, ReasonCode, Registry,
    RunLimits, ToolSpec, Usd, UserContext,
};

/// How long a run's counter is kept after it starts (then the store may drop it).
pub const RUN_KEEP_SECONDS: i64 = 7 * 86_400;

/// How long a window's counter is kept after the window ends, for reports.
pub const WINDOW_KEEP_SECONDS: i64 = 86_400;

/// Amounts a counter holds or a charge adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts {
    /// Tool calls.
    pub calls: u64,
    /// Cost, in micro-dollars.
    pub cost_micros: u64,
    /// Model tokens.
    pub tokens: u64,
}

/// Upper bounds a counter must be within, before the charge, for it to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Maxima {
    /// Calls at most.
    pub calls: Option<u64>,
    /// Micro-dollars at most.
    pub cost_micros: Option<u64>,
    /// Tokens at most.
    pub tokens: Option<u64>,
}

/// Who a run belongs to, written when its counter is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    /// When the run started (Unix seconds).
    pub started_at: i64,
    /// The user of its first decision.
    pub user_id: String,
    /// That user's organization.
    pub organization: Option<String>,
}

/// What a store holds for one counter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counter {
    /// The amounts counted so far.
    pub used: Amounts,
    /// For a run: who it belongs to and when it started.
    pub owner: Option<RunOwner>,
}

/// One conditional change to one counter, applied atomically with others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The counter's key (it names the limit and who is counted).
    pub key: String,
    /// The start of its window (Unix seconds); 0 for a run.
    pub window_start: i64,
    /// When the store may forget the counter (Unix seconds).
    pub expires_at: i64,
    /// What to add.
    pub add: Amounts,
    /// Bounds the counter must be within before the addition.
    pub max: Maxima,
    /// For a run: it must have started at or after this time (Unix seconds).
    pub started_not_before: Option<i64>,
    /// For a run: its owner, written if the counter is new.
    pub owner: Option<RunOwner>,
    /// The counter must already exist (a usage report for a known run).
    pub must_exist: bool,
}

impl Charge {
    /// Whether `current` (absent: never counted) admits this charge. Stores
    /// that evaluate conditions themselves (SQLite) use this; DynamoDB
    /// evaluates the same conditions as a condition expression.
    pub fn admits(&self, current: Option<&Counter>) -> bool {
        let Some(c) = current else {
            // A new counter is at zero, within any bound.
            return !self.must_exist;
        };
        within(c.used.calls, self.max.calls)
            && within(c.used.cost_micros, self.max.cost_micros)
            && within(c.used.tokens, self.max.tokens)
            && match (self.started_not_before, &c.owner) {
                (Some(cutoff), Some(owner)) => owner.started_at >= cutoff,
                _ => true,
            }
    }
}

fn within(value: u64, max: Option<u64>) -> bool {
    max.is_none_or(|m| value <= m)
}

/// What applying a set of charges (with a record, or alone) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Every charge applied (and the record, if any, is durable).
    Applied,
    /// Charge `index` was refused; nothing was written. `current` is its
    /// counter as the store held it (none: it does not exist).
    Refused {
        /// Which charge.
        index: usize,
        /// Its counter.
        current: Option<Counter>,
    },
}

/// What one charge stands for, to explain a refusal.
#[derive(Debug, Clone, PartialEq)]
enum Meaning {
    Rate {
        tool: String,
        per: RateLimitScope,
        limit: u32,
        window_seconds: u64,
        window_end: i64,
    },
    Run {
        limits: RunLimits,
        call_cost: Usd,
    },
    Budget {
        id: String,
        per: BudgetScope,
        max: Usd,
        window_seconds: u64,
        window_end: i64,
        call_cost: Usd,
    },
}

/// The charges a decision makes, and what each stands for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The charges, in the order a refusal is reported.
    pub charges: Vec<Charge>,
    meanings: Vec<Meaning>,
}

impl Plan {
    fn push(&mut self, charge: Charge, meaning: Meaning) {
        self.charges.push(charge);
        self.meanings.push(meaning);
    }

    /// One line per limit the call is counted against, for dry runs and reviews.
    pub fn describe(&self) -> Vec<String> {
        self.meanings
            .iter()
            .map(|m| match m {
                Meaning::Rate {
                    tool,
                    per,
                    limit,
                    window_seconds,
                    ..
                } => format!(
                    "rate_limit of `{tool}`: {limit} calls per {} per {}",
                    per.as_str(),
                    window_words(*window_seconds)
                ),
                Meaning::Run { limits, call_cost } => {
                    let mut parts = Vec::new();
                    if let Some(c) = limits.max_calls {
                        parts.push(format!("{c} calls"));
                    }
                    if let Some(s) = limits.max_seconds {
                        parts.push(format!("{s} seconds"));
                    }
                    if let Some(c) = limits.max_cost_usd {
                        parts.push(format!("{c}"));
                    }
                    if let Some(t) = limits.max_tokens {
                        parts.push(format!("{t} tokens"));
                    }
                    format!(
                        "run limits: at most {} per run; this call costs {call_cost}",
                        parts.join(", ")
                    )
                }
                Meaning::Budget {
                    id,
                    per,
                    max,
                    window_seconds,
                    call_cost,
                    ..
                } => format!(
                    "budget `{id}`: {max} per {} per {}; this call costs {call_cost}",
                    per.as_str(),
                    window_words(*window_seconds)
                ),
            })
            .collect()
    }

    /// The deny reason, and the limit with its count, for the refusal of
    /// charge `index` whose counter was `current`, at `now`.
    pub fn refusal(
        &self,
        index: usize,
        current: Option<&Counter>,
        now: OffsetDateTime,
    ) -> (Reason, LimitHit) {
        let used = current.map(|c| c.used).unwrap_or_default();
        match self.meanings.get(index) {
            Some(Meaning::Rate {
                tool,
                per,
                limit,
                window_seconds,
                window_end,
            }) => windowed(
                ReasonCode::RateLimited,
                format!(
                    "tool `{tool}` allows {limit} calls per {} per {}; {} were made in this window",
                    per.as_str(),
                    window_words(*window_seconds),
                    used.calls
                ),
                Hit {
                    name: format!("rate_limit:{tool}"),
                    unit: "calls",
                    per: per.as_str(),
                    limit: u64::from(*limit).into(),
                    current: used.calls.into(),
                },
                *window_seconds,
                *window_end,
                now,
            ),
            Some(Meaning::Budget {
                id,
                per,
                max,
                window_seconds,
                window_end,
                call_cost,
            }) => {
                let code = match per {
                    BudgetScope::User => ReasonCode::UserBudgetExhausted,
                    BudgetScope::Org => ReasonCode::OrgBudgetExhausted,
                };
                let spent = Usd(used.cost_micros);
                let message = if spent >= *max {
                    format!(
                        "budget `{id}` allows {max} per {} per {}; {spent} is spent",
                        per.as_str(),
                        window_words(*window_seconds)
                    )
                } else {
                    format!(
                        "budget `{id}` allows {max} per {} per {}; {spent} is spent and this call costs {call_cost}",
                        per.as_str(),
                        window_words(*window_seconds)
                    )
                };
                windowed(
                    code,
                    message,
                    Hit {
                        name: format!("budget:{id}"),
                        unit: "usd",
                        per: per.as_str(),
                        limit: dollars(*max),
                        current: dollars(spent),
                    },
                    *window_seconds,
                    *window_end,
                    now,
                )
            }
            Some(Meaning::Run { limits, call_cost }) => {
                run_refusal(limits, *call_cost, current, now)
            }
            None => (
                Reason {
                    code: ReasonCode::PolicyEvaluationError,
                    message: format!("limit {index} refused the call but is not in the plan"),
                    policy_id: None,
                },
                Hit {
                    name: "unknown".into(),
                    unit: "calls",
                    per: "agent",
                    limit: 0.into(),
                    current: 0.into(),
                }
                .into_hit(None, None, None),
            ),
        }
    }
}

/// A [`LimitHit`] before its window is known.
struct Hit {
    name: String,
    unit: &'static str,
    per: &'static str,
    limit: serde_json::Number,
    current: serde_json::Number,
}

impl Hit {
    fn into_hit(
        self,
        window_seconds: Option<u64>,
        resets_at: Option<String>,
        retry_after_seconds: Option<u64>,
    ) -> LimitHit {
        LimitHit {
            name: self.name,
            unit: self.unit.into(),
            per: self.per.into(),
            limit: self.limit,
            current: self.current,
            window_seconds,
            resets_at,
            retry_after_seconds,
        }
    }
}

fn dollars(usd: Usd) -> serde_json::Number {
    serde_json::Number::from_f64(usd.dollars()).unwrap_or_else(|| 0.into())
}

/// A window's length in words, for messages: `day`, `hour`, `3600 seconds`.
fn window_words(seconds: u64) -> String {
    match seconds {
        86_400 => "day".into(),
        3_600 => "hour".into(),
        60 => "minute".into(),
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s => format!("{s} seconds"),
    }
}

fn windowed(
    code: ReasonCode,
    message: String,
    hit: Hit,
    window_seconds: u64,
    window_end: i64,
    now: OffsetDateTime,
) -> (Reason, LimitHit) {
    let retry = retry_after(window_end, now);
    let resets_at = OffsetDateTime::from_unix_timestamp(window_end)
        .map(rfc3339)
        .ok();
    (
        Reason {
            code,
            message: format!("{message}; it starts over in {retry}s"),
            policy_id: None,
        },
        hit.into_hit(Some(window_seconds), resets_at, Some(retry)),
    )
}

/// Whole seconds from `now` until `end`, rounded up, at least 1.
pub fn retry_after(end: i64, now: OffsetDateTime) -> u64 {
    let nanos = i128::from(end) * 1_000_000_000 - now.unix_timestamp_nanos();
    let secs = (nanos + 999_999_999).div_euclid(1_000_000_000);
    u64::try_from(secs).unwrap_or(0).max(1)
}

fn run_refusal(
    limits: &RunLimits,
    call_cost: Usd,
    current: Option<&Counter>,
    now: OffsetDateTime,
) -> (Reason, LimitHit) {
    let used = current.map(|c| c.used).unwrap_or_default();
    let run =
        |name: &str, unit: &'static str, limit: serde_json::Number, value: serde_json::Number| {
            Hit {
                name: format!("run:{name}"),
                unit,
                per: "run",
                limit,
                current: value,
            }
            .into_hit(None, None, None)
        };
    let reason = |code, message: String| Reason {
        code,
        message,
        policy_id: None,
    };
    // The most fundamental first: a run past its time is over whatever it spent.
    if let (Some(max), Some(owner)) = (limits.max_seconds, current.and_then(|c| c.owner.as_ref())) {
        let age = now.unix_timestamp().saturating_sub(owner.started_at);
        if u64::try_from(age).is_ok_and(|a| a > max) {
            return (
                reason(
                    ReasonCode::RunTimeLimit,
                    format!("the run started {age}s ago; its agent's runs may last {max}s"),
                ),
                run("max_seconds", "seconds", max.into(), age.into()),
            );
        }
    }
    if let Some(max) = limits.max_cost_usd {
        let spent = Usd(used.cost_micros);
        if spent >= max || spent.0.saturating_add(call_cost.0) > max.0 {
            let message = if spent >= max {
                format!("the run has spent {spent}; its agent's runs may spend {max}")
            } else {
                format!("the run has spent {spent} and this call costs {call_cost}; its agent's runs may spend {max}")
            };
            return (
                reason(ReasonCode::RunCostLimit, message),
                run("max_cost_usd", "usd", dollars(max), dollars(spent)),
            );
        }
    }
    if let Some(max) = limits.max_tokens {
        if used.tokens >= max {
            return (
                reason(
                    ReasonCode::RunTokenLimit,
                    format!(
                        "the run has used {} tokens; its agent's runs may use {max}",
                        used.tokens
                    ),
                ),
                run("max_tokens", "tokens", max.into(), used.tokens.into()),
            );
        }
    }
    let max = limits.max_calls.unwrap_or(0);
    (
        reason(
            ReasonCode::RunCallLimit,
            format!(
                "the run has made {} calls; its agent's runs may make {max}",
                used.calls
            ),
        ),
        run(
            "max_calls",
            "calls",
            u64::from(max).into(),
            used.calls.into(),
        ),
    )
}

/// Length-prefixed, so that no pair of parts spells another's key.
pub(crate) fn part(s: &str) -> String {
    format!("{}:{s}", s.len())
}

/// The counter key of an agent's run.
pub fn run_key(agent_id: &str, run_id: &str) -> String {
    format!("run#{}#{}", part(agent_id), part(run_id))
}

fn window(now: i64, seconds: u64) -> (i64, i64) {
    let len = i64::try_from(seconds).unwrap_or(i64::MAX).max(1);
    let start = now - now.rem_euclid(len);
    (start, start.saturating_add(len))
}

/// The organization a user's calls and spending count under: the one the
/// token names, else one shared bucket for every user without one.
fn organization(user: &UserContext) -> &str {
    user.organization.as_deref().unwrap_or("-")
}

/// What [`plan`] needs to know about a call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The agent's registration, when it is registered.
    pub agent: Option<&'a AgentSpec>,
    /// The tool's registration, when it is registered.
    pub tool: Option<&'a ToolSpec>,
    /// The verified user.
    pub user: &'a UserContext,
    /// The run the call names.
    pub run_id: Option<&'a str>,
    /// The session the call names.
    pub session_id: Option<&'a str>,
    /// The decision the policy reached.
    pub decision: Decision,
    /// Now.
    pub now: OffsetDateTime,
}

/// A call refused before anything is counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Why.
    pub reason: Reason,
}

/// The charges `call` makes under `registry`. An allowed call is charged
/// under every limit that applies; a pending one is checked against them
/// without being charged; any decision starts its run. `Err` when the call
/// cannot be allowed whatever the counters hold (no `run_id` for an agent
/// with run limits, or a cost above a whole budget).
pub fn plan(registry: &Registry, call: &Call<'_>) -> Result<Plan, Refused> {
    let mut plan = Plan::default();
    let Some(agent) = call.agent else {
        return Ok(plan);
    };
    let now = call.now.unix_timestamp();
    // Checked and charged only for what the policy let through.
    let checked = matches!(call.decision, Decision::Allow | Decision::PendingApproval);
    let charged = call.decision == Decision::Allow;
    let cost = if charged {
        call.tool.and_then(|t| t.cost_usd).unwrap_or_default()
    } else {
        Usd::default()
    };
    let one = u64::from(charged);

    if let Some(limits) = agent.run_limits.as_ref().filter(|l| l.any()) {
        let Some(run_id) = call.run_id else {
            if !checked {
                return Ok(plan);
            }
            return Err(Refused {
                reason: Reason {
                    code: ReasonCode::RunIdRequired,
                    message: format!(
                        "agent `{}` has run limits: every call must name its run in `run_id`",
                        agent.id
                    ),
                    policy_id: None,
                },
            });
        };
        // A deny only starts the run; what the policy let through must fit.
        let (max, started_not_before) = if checked {
            let cost_micros =
                match limits.max_cost_usd {
                    Some(m) => Some(bound_for(m, cost).map_err(|()| {
                        cost_above(cost, ReasonCode::RunCostLimit, "run budget", m)
                    })?),
                    None => None,
                };
            (
                Maxima {
                    calls: limits.max_calls.map(|m| u64::from(m).saturating_sub(1)),
                    cost_micros,
                    tokens: limits.max_tokens.map(|m| m.saturating_sub(1)),
                },
                limits
                    .max_seconds
                    .map(|s| now.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX))),
            )
        } else {
            (Maxima::default(), None)
        };
        plan.push(
            Charge {
                key: run_key(&agent.id, run_id),
                window_start: 0,
                expires_at: now.saturating_add(RUN_KEEP_SECONDS),
                add: Amounts {
                    calls: one,
                    cost_micros: cost.micros(),
                    tokens: 0,
                },
                max,
                started_not_before,
                owner: Some(RunOwner {
                    started_at: now,
                    user_id: call.user.id.clone(),
                    organization: call.user.organization.clone(),
                }),
                must_exist: false,
            },
            Meaning::Run {
                limits: limits.clone(),
                call_cost: cost,
            },
        );
    }
    if !checked {
        return Ok(plan);
    }

    if let Some(tool) = call.tool {
        if let Some(rate) = &tool.rate_limit {
            let subject = match rate.per {
                RateLimitScope::User => call.user.id.as_str(),
                RateLimitScope::Agent => agent.id.as_str(),
                RateLimitScope::Org => organization(call.user),
                // Calls without a session share one bucket per agent.
                RateLimitScope::Session => call.session_id.unwrap_or("-"),
            };
            let scope_key = match rate.per {
                RateLimitScope::Session => format!("{}#{}", part(&agent.id), part(subject)),
                _ => part(subject),
            };
            let (start, end) = window(now, rate.window_seconds);
            plan.push(
                Charge {
                    key: format!("rate#{}#{}#{scope_key}", part(&tool.id), rate.per.as_str()),
                    window_start: start,
                    expires_at: end.saturating_add(WINDOW_KEEP_SECONDS),
                    add: Amounts {
                        calls: one,
                        ..Amounts::default()
                    },
                    max: Maxima {
                        calls: Some(u64::from(rate.limit).saturating_sub(1)),
                        ..Maxima::default()
                    },
                    started_not_before: None,
                    owner: None,
                    must_exist: false,
                },
                Meaning::Rate {
                    tool: tool.id.clone(),
                    per: rate.per,
                    limit: rate.limit,
                    window_seconds: rate.window_seconds,
                    window_end: end,
                },
            );
        }
    }

    for (charge, meaning) in budget_charges(registry, call.user, now, cost, true)? {
        plan.push(charge, meaning);
    }
    Ok(plan)
}

/// The largest amount spent that still admits a call costing `cost` under
/// `max`: nothing may be charged to a spent budget, and no call may take
/// one past its end. `Err` when the call costs more than the whole budget.
fn bound_for(max: Usd, cost: Usd) -> Result<u64, ()> {
    if cost > max || max.0 == 0 {
        return Err(());
    }
    Ok((max.0 - 1).min(max.0 - cost.0))
}

fn cost_above(cost: Usd, code: ReasonCode, what: &str, max: Usd) -> Refused {
    Refused {
        reason: Reason {
            code,
            message: format!("the call costs {cost}, more than the whole {what} of {max}"),
            policy_id: None,
        },
    }
}

/// The budget charges of spending `cost` for `user` at `now`: each budget's
/// counter for the user or their organization in the current window. With
/// `check`, each is conditional on the budget admitting the cost.
fn budget_charges(
    registry: &Registry,
    user: &UserContext,
    now: i64,
    cost: Usd,
    check: bool,
) -> Result<Vec<(Charge, Meaning)>, Refused> {
    let mut out = Vec::new();
    for budget in &registry.budgets {
        let subject = match budget.per {
            BudgetScope::User => user.id.as_str(),
            BudgetScope::Org => organization(user),
        };
        let (start, end) = window(now, budget.window_seconds);
        let max = if check {
            let code = match budget.per {
                BudgetScope::User => ReasonCode::UserBudgetExhausted,
                BudgetScope::Org => ReasonCode::OrgBudgetExhausted,
            };
            Some(bound_for(budget.max_cost_usd, cost).map_err(|()| {
                cost_above(
                    cost,
                    code,
                    &format!("budget `{}`", budget.id),
                    budget.max_cost_usd,
                )
            })?)
        } else {
            None
        };
        out.push((
            Charge {
                key: format!(
                    "budget#{}#{}#{}",
                    part(&budget.id),
                    budget.per.as_str(),
                    part(subject)
                ),
                window_start: start,
                expires_at: end.saturating_add(WINDOW_KEEP_SECONDS),
                add: Amounts {
                    cost_micros: cost.micros(),
                    ..Amounts::default()
                },
                max: Maxima {
                    cost_micros: max,
                    ..Maxima::default()
                },
                started_not_before: None,
                owner: None,
                must_exist: false,
            },
            Meaning::Budget {
                id: budget.id.clone(),
                per: budget.per,
                max: budget.max_cost_usd,
                window_seconds: budget.window_seconds,
                window_end: end,
                call_cost: cost,
            },
        ));
    }
    Ok(out)
}

/// Model usage an agent reports for one of its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Model tokens used.
    pub tokens: u64,
    /// What they cost.
    pub cost: Usd,
}

/// The charges of reporting `usage` for the run `run_id` of `agent`, owned
/// by `owner`: the run itself (which must exist and still be open), then
/// every budget of its user and organization, unconditionally (the money is
/// spent; the budget denies the calls that follow).
pub fn usage_charges(
    registry: &Registry,
    agent: &AgentSpec,
    run_id: &str,
    owner: &RunOwner,
    usage: Usage,
    now: OffsetDateTime,
) -> Vec<Charge> {
    let limits = agent.run_limits.clone().unwrap_or_default();
    let at = now.unix_timestamp();
    let mut charges = vec![Charge {
        key: run_key(&agent.id, run_id),
        window_start: 0,
        expires_at: at.saturating_add(RUN_KEEP_SECONDS),
        add: Amounts {
            calls: 0,
            cost_micros: usage.cost.micros(),
            tokens: usage.tokens,
        },
        // Open: neither spent nor used up; a report may take it past its end.
        max: Maxima {
            calls: None,
            cost_micros: limits.max_cost_usd.map(|m| m.0.saturating_sub(1)),
            tokens: limits.max_tokens.map(|m| m.saturating_sub(1)),
        },
        started_not_before: limits
            .max_seconds
            .map(|s| at.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX))),
        owner: None,
        must_exist: true,
    }];
    let user = UserContext {
        id: owner.user_id.clone(),
        roles: Vec::new(),
        organization: owner.organization.clone(),
    };
    if let Ok(budgets) = budget_charges(registry, &user, at, usage.cost, false) {
        charges.extend(budgets.into_iter().map(|(c, _)| c));
    }
    charges
}

/// Where a run stands against its agent's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Calls may still be allowed.
    Open,
    /// No call may be allowed any more, for this reason.
    Closed(ReasonCode),
}

/// Whether a run with `counter` is open under `limits` at `now`.
pub fn run_state(limits: &RunLimits, counter: &Counter, now: OffsetDateTime) -> RunState {
    if let (Some(max), Some(owner)) = (limits.max_seconds, &counter.owner) {
        let age = now.unix_timestamp().saturating_sub(owner.started_at);
        if u64::try_from(age).is_ok_and(|a| a > max) {
            return RunState::Closed(ReasonCode::RunTimeLimit);
        }
    }
    if limits
        .max_cost_usd
        .is_some_and(|m| counter.used.cost_micros >= m.0)
    {
        return RunState::Closed(ReasonCode::RunCostLimit);
    }
    if limits.max_tokens.is_some_and(|m| counter.used.tokens >= m) {
        return RunState::Closed(ReasonCode::RunTokenLimit);
    }
    RunState::Open
}

#[cfg(test)]
mod tests;
