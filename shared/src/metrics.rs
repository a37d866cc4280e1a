//! Which metric data points a recorded decision produces.
//!
//! The same rules serve every host: every decision counts in `Decisions` (by
//! environment and result) and its time in `DecisionLatency`
//! (microseconds); denials become `PolicyDenied` (by environment, and by
//! environment and reason), and a denial because the declared risk exceeded
//! a ceiling is also a `RiskyAttempt`, and a denial because the policy
//! version in use is stale (`policy_stale`) also a `PolicyStale`; a denial
//! by a limit is a `LimitDenied` (by reason), and one by a spent budget also
//! a `BudgetExhausted`. A pending decision is an `Approvals`
//! request; the records that close approvals count as `Approvals` by
//! outcome ([`approval_datums`]). The seed's alarm watches `PolicyDenied` by
//! environment.

use std::collections::BTreeMap;

use crate::model::{Decision, DecisionRecord, ReasonCode};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "AgentGovernance";
/// Denied decisions.
pub const POLICY_DENIED: &str = "PolicyDenied";
/// Denials because the call's risk was above the agent's ceiling.
pub const RISKY_ATTEMPT: &str = "RiskyAttempt";
/// Decisions, by result.
pub const DECISIONS: &str = "Decisions";
/// Human approvals, by outcome (`requested`, `approved`, `rejected`, `expired`, `failed`).
pub const APPROVALS: &str = "Approvals";
/// Denials because the policy version in use went unconfirmed as the active
/// one for longer than the maximum staleness; the template alarms on any.
pub const POLICY_STALE: &str = "PolicyStale";
/// Time spent deciding, in microseconds.
pub const DECISION_LATENCY: &str = "DecisionLatency";
/// Denials by a limit (rate limit, run limit, budget), by reason.
pub const LIMIT_DENIED: &str = "LimitDenied";
/// Denials because a user's or organization's cost budget is spent; the
/// template alarms on bursts.
pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
/// An agent version's calls this hour against its 7-day hourly average, in
/// percent (see [`crate::anomaly`]).
pub const CALL_RATE_PERCENT: &str = "CallRatePercent";
/// Anomaly alerts raised, per agent version and in total; the template alarms on any.
pub const ANOMALY_DETECTED: &str = "AnomalyDetected";
/// Calls the MCP gateway forwarded, by tool and status (`succeeded`,
/// `tool_error`, `upstream_error`).
pub const UPSTREAM_CALLS: &str = "UpstreamCalls";
/// Time upstream servers took to answer forwarded calls, by tool.
pub const UPSTREAM_LATENCY: &str = "UpstreamLatency";

/// What a data point's value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// A count; equal series are summed.
    Count,
    /// A duration; each value is kept, so that percentiles can be taken.
    Microseconds,
    /// A duration in milliseconds; each value is kept.
    Milliseconds,
    /// A ratio in percent; each value is kept.
    Percent,
}

/// A metric series: its name and dimensions.
type Series = (&'static str, Vec<(&'static str, String)>);

/// One data point: a count under a metric name and its dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    /// The metric name.
    pub name: &'static str,
    /// Dimension name → value, in a stable order.
    pub dimensions: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
    /// What the value measures.
    pub unit: Unit,
}

fn count(name: &'static str, dimensions: Vec<(&'static str, String)>) -> MetricDatum {
    MetricDatum {
        name,
        dimensions,
        value: 1.0,
        unit: Unit::Count,
    }
}

/// The data points of one recorded decision. A record that closes an
/// approval counts here only if it denies (`PolicyDenied`); its outcome is
/// counted by [`approval_datums`].
pub fn datums(record: &DecisionRecord) -> Vec<MetricDatum> {
    let env = || ("Environment", record.environment.clone());
    if let Some(e) = &record.execution {
        // A forwarded call's outcome: not a decision.
        #[allow(clippy::cast_precision_loss)] // milliseconds fit an f64's mantissa
        return vec![
            count(
                UPSTREAM_CALLS,
                vec![
                    env(),
                    ("Tool", record.tool_id.clone()),
                    ("Status", e.status.as_str().to_owned()),
                ],
            ),
            MetricDatum {
                name: UPSTREAM_LATENCY,
                dimensions: vec![env(), ("Tool", record.tool_id.clone())],
                value: e.duration_ms as f64,
                unit: Unit::Milliseconds,
            },
        ];
    }
    let mut out = Vec::new();
    if record.approval.is_none() {
        out.push(count(
            DECISIONS,
            vec![env(), ("Result", record.decision.as_str().to_owned())],
        ));
        #[allow(clippy::cast_precision_loss)] // microseconds fit an f64's mantissa
        out.push(MetricDatum {
            name: DECISION_LATENCY,
            dimensions: vec![env()],
            value: record.latency_us as f64,
            unit: Unit::Microseconds,
        });
        if record.decision == Decision::PendingApproval {
            out.push(count(
                APPROVALS,
                vec![env(), ("Outcome", "requested".to_owned())],
            ));
        }
    }
    if record.decision != Decision::Deny {
        return out;
    }
    let reason = record
        .reasons
        .first()
        .map_or(ReasonCode::NotPermitted, |r| r.code);
    out.push(count(POLICY_DENIED, vec![env()]));
    out.push(count(
        POLICY_DENIED,
        vec![env(), ("Reason", reason.as_str().to_owned())],
    ));
    if record
        .reasons
        .iter()
        .any(|r| r.code == ReasonCode::RiskExceedsPolicy)
    {
        out.push(count(RISKY_ATTEMPT, vec![env()]));
    }
    if reason == ReasonCode::PolicyStale {
        out.push(count(POLICY_STALE, vec![env()]));
    }
    if record.limit.is_some() || reason == ReasonCode::RunIdRequired {
        out.push(count(
            LIMIT_DENIED,
            vec![env(), ("Reason", reason.as_str().to_owned())],
        ));
    }
    if matches!(
        reason,
        ReasonCode::UserBudgetExhausted | ReasonCode::OrgBudgetExhausted
    ) {
        out.push(count(BUDGET_EXHAUSTED, vec![env()]));
    }
    out
}

/// The outcome of an approval, from the record that closes it: `Approvals`
/// by outcome. None for other records (and for "approvers notified").
pub fn approval_datums(record: &DecisionRecord) -> Vec<MetricDatum> {
    match &record.approval {
        Some(a) if a.status != crate::model::ApprovalStatus::Pending => vec![count(
            APPROVALS,
            vec![
                ("Environment", record.environment.clone()),
                ("Outcome", a.status.as_str().to_owned()),
            ],
        )],
        _ => Vec::new(),
    }
}

/// Sums data points with the same name and dimensions, so that a batch of
/// decisions costs one data point per distinct series.
pub fn aggregate(datums: impl IntoIterator<Item = MetricDatum>) -> Vec<MetricDatum> {
    let mut sums: BTreeMap<Series, f64> = BTreeMap::new();
    let mut kept = Vec::new();
    for d in datums {
        if d.unit == Unit::Count {
            *sums.entry((d.name, d.dimensions)).or_default() += d.value;
        } else {
            kept.push(d);
        }
    }
    let mut out: Vec<MetricDatum> = sums
        .into_iter()
        .map(|((name, dimensions), value)| MetricDatum {
            name,
            dimensions,
            value,
            unit: Unit::Count,
        })
        .collect();
    out.extend(kept);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;

    fn record(decision: Decision, codes: &[ReasonCode]) -> DecisionRecord {
        let json = serde_json::json!({
            "decision_id": "d", "trace_id": "t", "timestamp": "2026-01-07T12:00:00.000Z",
            "decision": decision, "reasons": [], "determining_policies": [],
            "agent_id": "a", "user_id": "u", "user_roles": [], "tool_id": "t",
            "arguments_hash": "h", "environment": "prod", "policy_version": "v",
            "policy_hash": "p", "latency_us": 1
        });
        let mut r: DecisionRecord = serde_json::from_value(json).unwrap();
        r.reasons = codes
            .iter()
            .map(|c| Reason {
                code: *c,
                message: String::new(),
                policy_id: None,
            })
            .collect();
        r
    }

    fn names(d: &[MetricDatum]) -> Vec<&str> {
        d.iter().map(|d| d.name).collect()
    }

    #[test]
    fn limit_denials_count_by_reason_and_spent_budgets_count_apart() {
        let hit = |name: &str| crate::model::LimitHit {
            name: name.into(),
            unit: "calls".into(),
            per: "user".into(),
            limit: 1.into(),
            current: 1.into(),
            window_seconds: None,
            resets_at: None,
            retry_after_seconds: None,
        };
        let mut rate = record(Decision::Deny, &[ReasonCode::RateLimited]);
        rate.limit = Some(hit("rate_limit:t"));
        let d = datums(&rate);
        let limited: Vec<_> = d.iter().filter(|d| d.name == LIMIT_DENIED).collect();
        assert_eq!(limited.len(), 1);
        assert_eq!(
            limited[0].dimensions[1],
            ("Reason", "rate_limited".to_owned())
        );
        assert!(d.iter().all(|d| d.name != BUDGET_EXHAUSTED));
        let mut budget = record(Decision::Deny, &[ReasonCode::UserBudgetExhausted]);
        budget.limit = Some(hit("budget:user-daily"));
        let d = datums(&budget);
        assert_eq!(d.iter().filter(|d| d.name == LIMIT_DENIED).count(), 1);
        assert_eq!(d.iter().filter(|d| d.name == BUDGET_EXHAUSTED).count(), 1);
        // A call without its run counts as a limit denial too; a policy deny does not.
        let d = datums(&record(Decision::Deny, &[ReasonCode::RunIdRequired]));
        assert_eq!(d.iter().filter(|d| d.name == LIMIT_DENIED).count(), 1);
        let d = datums(&record(Decision::Deny, &[ReasonCode::ToolNotGranted]));
        assert!(d.iter().all(|d| d.name != LIMIT_DENIED));
    }

    #[test]
    fn every_decision_counts_and_denials_count_more() {
        let allow = datums(&record(Decision::Allow, &[ReasonCode::Allowed]));
        assert_eq!(names(&allow), [DECISIONS, DECISION_LATENCY]);
        assert_eq!(allow[0].dimensions[1], ("Result", "allow".to_owned()));
        let pending = datums(&record(
            Decision::PendingApproval,
            &[ReasonCode::ApprovalRequired],
        ));
        assert_eq!(names(&pending), [DECISIONS, DECISION_LATENCY, APPROVALS]);
        let d = datums(&record(Decision::Deny, &[ReasonCode::ToolNotGranted]));
        assert_eq!(
            names(&d),
            [DECISIONS, DECISION_LATENCY, POLICY_DENIED, POLICY_DENIED]
        );
        assert_eq!(
            d[3].dimensions[1],
            ("Reason", "tool_not_granted".to_owned())
        );
        let d = datums(&record(
            Decision::Deny,
            &[ReasonCode::RiskExceedsPolicy, ReasonCode::ForbiddenByPolicy],
        ));
        assert_eq!(d.iter().filter(|d| d.name == RISKY_ATTEMPT).count(), 1);
        assert!(d.iter().all(|d| d.name != POLICY_STALE));
        let d = datums(&record(Decision::Deny, &[ReasonCode::PolicyStale]));
        assert_eq!(
            names(&d),
            [
                DECISIONS,
                DECISION_LATENCY,
                POLICY_DENIED,
                POLICY_DENIED,
                POLICY_STALE
            ]
        );
        assert_eq!(d[4].dimensions, [("Environment", "prod".to_owned())]);
    }

    #[test]
    fn aggregation_sums_equal_series() {
        let one = record(Decision::Deny, &[ReasonCode::ToolNotGranted]);
        let all = aggregate([datums(&one), datums(&one), datums(&one)].concat());
        let counts: Vec<&MetricDatum> = all.iter().filter(|d| d.unit == Unit::Count).collect();
        assert_eq!(counts.len(), 3, "Decisions and the two PolicyDenied series");
        assert!(counts.iter().all(|d| (d.value - 3.0).abs() < f64::EPSILON));
        let latencies = all.iter().filter(|d| d.name == DECISION_LATENCY).count();
        assert_eq!(
            latencies, 3,
            "latencies are kept one by one, for percentiles"
        );
    }
}
