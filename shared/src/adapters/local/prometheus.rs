//! `GET /metrics` of `govctl serve`: the decision log's records as
//! Prometheus counters and a latency histogram.
//!
//! Decisions are counted through the [`Metrics`] port, which the service
//! calls once a decision is durably recorded; the outcomes of approvals,
//! which the workflow's steps record, are counted as they are stored, by
//! [`MeteredLog`] around the decision log.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::{Decision, DecisionRecord, ReasonCode};
use crate::ports::{Appended, DecisionLog, Metrics, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolStatusLabel {
    tool: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: String,
}

type LatencyFamily = Family<ToolLabel, Histogram, fn() -> Histogram>;

fn upstream_histogram() -> Histogram {
    // 1 ms to ~33 s: an upstream tool call.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentVersionLabel {
    agent: String,
    version: String,
}

type PercentGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The metrics, in a Prometheus registry.
#[derive(Debug)]
pub struct PrometheusMetrics {
    registry: Registry,
    decisions: Family<ResultLabel, Counter>,
    denials: Family<ReasonLabel, Counter>,
    risky: Counter,
    stale: Counter,
    approvals: Family<OutcomeLabel, Counter>,
    latency: Histogram,
    limited: Family<ReasonLabel, Counter>,
    call_rate: Family<AgentVersionLabel, PercentGauge>,
    anomalies: Family<AgentVersionLabel, Counter>,
    upstream_calls: Family<ToolStatusLabel, Counter>,
    upstream_latency: LatencyFamily,
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("governance");
        let decisions = Family::<ResultLabel, Counter>::default();
        let denials = Family::<ReasonLabel, Counter>::default();
        let risky = Counter::default();
        let stale = Counter::default();
        let approvals = Family::<OutcomeLabel, Counter>::default();
        // 10 µs to ~0.33 s: decisions take tens of microseconds; a slow one
        // is an incident.
        let latency = Histogram::new(exponential_buckets(0.000_01, 2.0, 16));
        let limited = Family::<ReasonLabel, Counter>::default();
        let call_rate = Family::<AgentVersionLabel, PercentGauge>::default();
        let anomalies = Family::<AgentVersionLabel, Counter>::default();
        let upstream_calls = Family::<ToolStatusLabel, Counter>::default();
        let upstream_latency: LatencyFamily = Family::new_with_constructor(upstream_histogram);
        registry.register(
            "upstream_calls",
            "Calls the MCP gateway forwarded, by tool and outcome (succeeded, tool_error, upstream_error)",
            upstream_calls.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time upstream servers took to answer forwarded calls, by tool",
            upstream_latency.clone(),
        );
        registry.register(
            "limited",
            "Denials by a limit (rate limit, run limit, budget), by reason code",
            limited.clone(),
        );
        registry.register(
            "call_rate_percent",
            "Each agent version's calls this hour against its 7-day hourly average, in percent",
            call_rate.clone(),
        );
        registry.register(
            "anomalies",
            "Anomaly alerts raised, by agent version",
            anomalies.clone(),
        );
        registry.register(
            "decisions",
            "Authorization decisions, by result (allow, deny, pending_approval)",
            decisions.clone(),
        );
        registry.register(
            "denials",
            "Denied decisions, by their first reason code",
            denials.clone(),
        );
        registry.register(
            "risky_attempts",
            "Denials because the declared risk exceeded the agent's ceiling",
            risky.clone(),
        );
        registry.register(
            "policy_stale",
            "Denials because the policy version in use went unconfirmed as the active one for longer than the maximum staleness",
            stale.clone(),
        );
        registry.register(
            "approvals",
            "Human approvals, by outcome (requested, approved, rejected, expired, failed)",
            approvals.clone(),
        );
        registry.register(
            "decision_latency_seconds",
            "Time spent deciding, before recording",
            latency.clone(),
        );
        Self {
            registry,
            decisions,
            denials,
            risky,
            stale,
            approvals,
            latency,
            limited,
            call_rate,
            anomalies,
            upstream_calls,
            upstream_latency,
        }
    }
}

impl PrometheusMetrics {
    /// Counts a stored step of an approval by its outcome; other records
    /// are decisions, which the service counts.
    pub fn observe_approval_step(&self, r: &DecisionRecord) {
        if let Some(a) = &r.approval {
            if a.status != crate::model::ApprovalStatus::Pending {
                self.approvals
                    .get_or_create(&OutcomeLabel {
                        outcome: a.status.as_str().to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Counts one recorded decision.
    pub fn observe_decision(&self, r: &DecisionRecord) {
        self.decisions
            .get_or_create(&ResultLabel {
                result: r.decision.as_str().to_owned(),
            })
            .inc();
        #[allow(clippy::cast_precision_loss)] // microseconds fit an f64's mantissa
        self.latency.observe(r.latency_us as f64 / 1e6);
        match r.decision {
            Decision::PendingApproval => {
                self.approvals
                    .get_or_create(&OutcomeLabel {
                        outcome: "requested".to_owned(),
                    })
                    .inc();
            }
            Decision::Deny => {
                let reason = r
                    .reasons
                    .first()
                    .map_or(ReasonCode::NotPermitted, |x| x.code);
                self.denials
                    .get_or_create(&ReasonLabel {
                        reason: reason.as_str().to_owned(),
                    })
                    .inc();
                if r.reasons
                    .iter()
                    .any(|x| x.code == ReasonCode::RiskExceedsPolicy)
                {
                    self.risky.inc();
                }
                if reason == ReasonCode::PolicyStale {
                    self.stale.inc();
                }
                if r.limit.is_some() || reason == ReasonCode::RunIdRequired {
                    self.limited
                        .get_or_create(&ReasonLabel {
                            reason: reason.as_str().to_owned(),
                        })
                        .inc();
                }
            }
            Decision::Allow => {}
        }
    }

    /// Shows the rates one anomaly watch found, and counts its alerts.
    pub fn observe_watch(&self, watch: &crate::anomaly::Watch) {
        let label = |r: &crate::anomaly::Rate| AgentVersionLabel {
            agent: r.agent_id.clone(),
            version: r.version.clone(),
        };
        for r in &watch.rates {
            self.call_rate
                .get_or_create(&label(r))
                .set(r.rate_percent.unwrap_or(0.0));
        }
        for r in &watch.raised {
            self.anomalies.get_or_create(&label(r)).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Metrics for PrometheusMetrics {
    fn record_decision(&self, record: &DecisionRecord) {
        match &record.execution {
            Some(e) => {
                self.upstream_calls
                    .get_or_create(&ToolStatusLabel {
                        tool: record.tool_id.clone(),
                        status: e.status.as_str().to_owned(),
                    })
                    .inc();
                #[allow(clippy::cast_precision_loss)] // milliseconds fit an f64's mantissa
                self.upstream_latency
                    .get_or_create(&ToolLabel {
                        tool: record.tool_id.clone(),
                    })
                    .observe(e.duration_ms as f64 / 1000.0);
            }
            None => self.observe_decision(record),
        }
    }
}

/// A decision log that counts the approval outcomes it stores.
#[derive(Debug, Clone)]
pub struct MeteredLog<L> {
    /// The log.
    pub inner: L,
    /// Where the counts go.
    pub metrics: Arc<PrometheusMetrics>,
}

#[async_trait]
impl<L: DecisionLog> DecisionLog for MeteredLog<L> {
    async fn append_charged(
        &self,
        record: &DecisionRecord,
        supersedes: Option<&str>,
        charges: &[crate::limits::Charge],
    ) -> Result<Appended, StoreError> {
        let appended = self
            .inner
            .append_charged(record, supersedes, charges)
            .await?;
        // Only approval outcome records are counted here; decisions are counted by authorize.
        if appended == Appended::Stored {
            self.metrics.observe_approval_step(record);
        }
        Ok(appended)
    }

    async fn get(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        self.inner.get(decision_id).await
    }

    async fn by_idempotency_key(
        &self,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<DecisionRecord>, StoreError> {
        self.inner.by_idempotency_key(agent_id, key).await
    }
}

/// The same wrapper around the approval store counts the outcomes its
/// settling writes append with their approval.
#[async_trait]
impl<L: crate::ports::ApprovalStore> crate::ports::ApprovalStore for MeteredLog<L> {
    async fn record_pending(
        &self,
        request: &crate::ports::ApprovalRequest,
    ) -> Result<(), StoreError> {
        self.inner.record_pending(request).await
    }

    async fn attach_token(
        &self,
        approval_id: &str,
        token: &crate::ports::TaskToken,
        review: &crate::ports::ReviewKey,
    ) -> Result<crate::ports::ApprovalItem, StoreError> {
        self.inner.attach_token(approval_id, token, review).await
    }

    async fn get(
        &self,
        approval_id: &str,
    ) -> Result<Option<crate::ports::ApprovalItem>, StoreError> {
        crate::ports::ApprovalStore::get(&self.inner, approval_id).await
    }

    async fn find_by_review(
        &self,
        review: &crate::ports::ReviewKey,
    ) -> Result<Option<crate::ports::ApprovalItem>, StoreError> {
        self.inner.find_by_review(review).await
    }

    async fn open_for_call(
        &self,
        call: &crate::ports::CallKey,
    ) -> Result<Option<crate::ports::ApprovalItem>, StoreError> {
        self.inner.open_for_call(call).await
    }

    async fn decide(
        &self,
        approval_id: &str,
        answer: &crate::ports::HumanDecision,
    ) -> Result<crate::ports::Decided, StoreError> {
        self.inner.decide(approval_id, answer).await
    }

    async fn close(
        &self,
        approval_id: &str,
        status: crate::model::ApprovalStatus,
    ) -> Result<(), StoreError> {
        self.inner.close(approval_id, status).await
    }

    async fn settle(
        &self,
        approval_id: &str,
        from: &[crate::model::ApprovalStatus],
        to: crate::model::ApprovalStatus,
        record: &DecisionRecord,
    ) -> Result<crate::ports::Settled, StoreError> {
        let settled = self.inner.settle(approval_id, from, to, record).await?;
        if settled == crate::ports::Settled::Recorded {
            self.metrics.observe_approval_step(record);
        }
        Ok(settled)
    }

    async fn reattach_token(
        &self,
        approval_id: &str,
        token: &crate::ports::TaskToken,
    ) -> Result<crate::ports::ApprovalItem, StoreError> {
        self.inner.reattach_token(approval_id, token).await
    }

    async fn use_grant(
        &self,
        approval_id: &str,
        record: &DecisionRecord,
        decided_after: &str,
        charges: &[crate::limits::Charge],
    ) -> Result<crate::ports::GrantUse, StoreError> {
        self.inner
            .use_grant(approval_id, record, decided_after, charges)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family() {
        let m = PrometheusMetrics::default();
        let record: DecisionRecord = serde_json::from_value(serde_json::json!({
            "decision_id": "d", "trace_id": "t", "timestamp": "2026-01-07T12:00:00.000Z",
            "decision": "deny", "reasons": [{"code": "risk_exceeds_policy", "message": "m"}],
            "determining_policies": [], "agent_id": "a", "user_id": "u", "user_roles": [],
            "tool_id": "x", "arguments_hash": "h", "environment": "prod", "policy_version": "v",
            "policy_hash": "p", "latency_us": 40
        }))
        .unwrap();
        m.record_decision(&record);
        let text = m.render();
        assert!(
            text.contains("governance_decisions_total{result=\"deny\"} 1"),
            "{text}"
        );
        assert!(text.contains("governance_denials_total{reason=\"risk_exceeds_policy\"} 1"));
        assert!(text.contains("governance_risky_attempts_total 1"));
        assert!(text.contains("governance_decision_latency_seconds_count 1"));
        assert!(text.contains("# EOF"));
        assert!(text.contains("governance_policy_stale_total 0"));
        let mut stale = record.clone();
        stale.reasons[0].code = ReasonCode::PolicyStale;
        m.record_decision(&stale);
        let text = m.render();
        assert!(text.contains("governance_policy_stale_total 1"), "{text}");
        assert!(text.contains("governance_denials_total{reason=\"policy_stale\"} 1"));
    }
}
