//! Which metric data points a recorded decision produces.
//!
//! The same rules serve every host: denials become `PolicyDenied` (by
//! environment, and by environment and reason), and a denial because the
//! declared risk exceeded a ceiling is also a `RiskyAttempt`. The seed's alarm
//! watches `PolicyDenied` by environment.

use std::collections::BTreeMap;

use crate::model::{Decision, DecisionRecord, ReasonCode};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "AgentGovernance";
/// Denied decisions.
pub const POLICY_DENIED: &str = "PolicyDenied";
/// Denials because the call's risk was above the agent's ceiling.
pub const RISKY_ATTEMPT: &str = "RiskyAttempt";

/// A metric series: its name and dimensions.
type Series = (&'static str, Vec<(&'static str, String)>);

/// One data point: a count under a metric name and its dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    /// The metric name.
    pub name: &'static str,
    /// Dimension name → value, in a stable order.
    pub dimensions: Vec<(&'static str, String)>,
    /// The count.
    pub value: f64,
}

/// The data points of one recorded decision: none for an allow or a pending approval.
pub fn datums(record: &DecisionRecord) -> Vec<MetricDatum> {
    if record.decision != Decision::Deny {
        return Vec::new();
    }
    let env = || ("Environment", record.environment.clone());
    let reason = record
        .reasons
        .first()
        .map_or(ReasonCode::NotPermitted, |r| r.code);
    let mut out = vec![
        MetricDatum {
            name: POLICY_DENIED,
            dimensions: vec![env()],
            value: 1.0,
        },
        MetricDatum {
            name: POLICY_DENIED,
            dimensions: vec![env(), ("Reason", reason.as_str().to_owned())],
            value: 1.0,
        },
    ];
    if record
        .reasons
        .iter()
        .any(|r| r.code == ReasonCode::RiskExceedsPolicy)
    {
        out.push(MetricDatum {
            name: RISKY_ATTEMPT,
            dimensions: vec![env()],
            value: 1.0,
        });
    }
    out
}

/// Sums data points with the same name and dimensions, so that a batch of
/// decisions costs one data point per distinct series.
pub fn aggregate(datums: impl IntoIterator<Item = MetricDatum>) -> Vec<MetricDatum> {
    let mut sums: BTreeMap<Series, f64> = BTreeMap::new();
    for d in datums {
        *sums.entry((d.name, d.dimensions)).or_default() += d.value;
    }
    sums.into_iter()
        .map(|((name, dimensions), value)| MetricDatum {
            name,
            dimensions,
            value,
        })
        .collect()
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

    #[test]
    fn only_denials_count_and_risk_denials_count_twice() {
        assert!(datums(&record(Decision::Allow, &[ReasonCode::Allowed])).is_empty());
        assert!(datums(&record(
            Decision::PendingApproval,
            &[ReasonCode::ApprovalRequired]
        ))
        .is_empty());
        let d = datums(&record(Decision::Deny, &[ReasonCode::ToolNotGranted]));
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[1].dimensions[1],
            ("Reason", "tool_not_granted".to_owned())
        );
        let d = datums(&record(
            Decision::Deny,
            &[ReasonCode::RiskExceedsPolicy, ReasonCode::ForbiddenByPolicy],
        ));
        assert_eq!(d.iter().filter(|d| d.name == RISKY_ATTEMPT).count(), 1);
    }

    #[test]
    fn aggregation_sums_equal_series() {
        let one = record(Decision::Deny, &[ReasonCode::ToolNotGranted]);
        let all = aggregate([datums(&one), datums(&one), datums(&one)].concat());
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|d| (d.value - 3.0).abs() < f64::EPSILON));
    }
}
