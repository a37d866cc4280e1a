//! Anomaly alerts: an agent version that calls tools much faster than it
//! usually does (seed 003: above 150% of its trailing 7-day average) is
//! reported, and optionally switched off.
//!
//! Every decision adds one call to two counters of its agent version, in
//! the same write as its record: the current UTC hour and the current UTC
//! day (see [`call_charges`]). A watcher ([`watch`]; every minute on AWS,
//! every few seconds under `govctl serve`, on demand in `govctl
//! anomalies`) compares, for each registered agent version, the calls of
//! the current hour with the average hour of the 7 whole UTC days before
//! today:
//!
//! `rate_percent = calls_this_hour × 168 × 100 / calls_in_the_7_days`
//!
//! and raises an alert when it is above the agent's `anomaly.threshold_percent`
//! (150 unless the registry says otherwise). An agent version without
//! history in those 7 days has no baseline and raises nothing. An alert is
//! raised once per agent version and hour: a control event in the audit
//! trail (`anomaly_detected`), a metric and a log line; with
//! `anomaly.auto_disable` the kill switch disables that version too.

use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::{ControlAction, ControlEvent};
use crate::clock::rfc3339;
use crate::killswitch::{Disablement, Switch};
use crate::limits::{part, Amounts, Charge, Charged, Maxima};
use crate::metrics::{MetricDatum, Unit};
use crate::model::{default_anomaly_percent, Registry};
use crate::ports::{Counters, KillSwitchStore, StoreError};

/// Days the baseline averages over.
pub const BASELINE_DAYS: i64 = 7;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Who the kill switch names when an alert disables a version.
pub const DETECTOR: &str = "anomaly-detector";

fn hour_key(agent_id: &str, version: &str) -> String {
    format!("calls-hour#{}#{}", part(agent_id), part(version))
}

fn day_key(agent_id: &str, version: &str) -> String {
    format!("calls-day#{}#{}", part(agent_id), part(version))
}

fn alert_key(agent_id: &str, version: &str) -> String {
    format!("anomaly#{}#{}", part(agent_id), part(version))
}

fn start_of(t: i64, len: i64) -> i64 {
    t - t.rem_euclid(len)
}

/// The charges that count one call of `agent_id` at `version` made at `now`:
/// unconditional, they never refuse a decision.
pub fn call_charges(agent_id: &str, version: &str, now: OffsetDateTime) -> [Charge; 2] {
    let t = now.unix_timestamp();
    let counting = |key: String, window_start: i64, keep: i64| Charge {
        key,
        window_start,
        expires_at: window_start.saturating_add(keep),
        add: Amounts {
            calls: 1,
            ..Amounts::default()
        },
        max: Maxima::default(),
        started_not_before: None,
        owner: None,
        must_exist: false,
    };
    [
        counting(hour_key(agent_id, version), start_of(t, HOUR), 2 * DAY),
        counting(
            day_key(agent_id, version),
            start_of(t, DAY),
            (BASELINE_DAYS + 2) * DAY,
        ),
    ]
}

/// One agent version's call rate against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rate {
    /// The agent.
    pub agent_id: String,
    /// Its registered version.
    pub version: String,
    /// The start of the current hour (RFC 3339).
    pub hour: String,
    /// Calls in the current hour.
    pub calls_this_hour: u64,
    /// Calls in the 7 whole days before today.
    pub baseline_calls: u64,
    /// The average hour of those days.
    pub baseline_per_hour: f64,
    /// This hour against that average, in percent; none without a baseline.
    pub rate_percent: Option<f64>,
    /// The threshold.
    pub threshold_percent: u32,
    /// Whether the rate is above the threshold.
    pub anomalous: bool,
}

impl Rate {
    fn new(
        agent_id: &str,
        version: &str,
        hour: i64,
        calls_this_hour: u64,
        baseline_calls: u64,
        threshold_percent: u32,
    ) -> Self {
        let hours = u64::try_from(BASELINE_DAYS * 24).unwrap_or(168);
        // In integers, so that 150% is exactly the threshold and not above it.
        let anomalous = baseline_calls > 0
            && u128::from(calls_this_hour) * u128::from(hours) * 100
                > u128::from(threshold_percent) * u128::from(baseline_calls);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let per_hour = baseline_calls as f64 / hours as f64;
        #[allow(clippy::cast_precision_loss)]
        let rate = (baseline_calls > 0).then(|| calls_this_hour as f64 * 100.0 / per_hour);
        Rate {
            agent_id: agent_id.to_owned(),
            version: version.to_owned(),
            hour: OffsetDateTime::from_unix_timestamp(hour)
                .map(rfc3339)
                .unwrap_or_default(),
            calls_this_hour,
            baseline_calls,
            baseline_per_hour: per_hour,
            rate_percent: rate,
            threshold_percent,
            anomalous,
        }
    }

    /// The alert's sentence.
    pub fn describe(&self) -> String {
        format!(
            "agent `{}` version {} made {} calls this hour, {:.0}% of its 7-day hourly average of {:.2} (threshold {}%)",
            self.agent_id,
            self.version,
            self.calls_this_hour,
            self.rate_percent.unwrap_or(0.0),
            self.baseline_per_hour,
            self.threshold_percent
        )
    }

    /// The metric data points: the rate per agent version, and an
    /// `AnomalyDetected` count when this check raised an alert.
    pub fn datums(&self, raised: bool) -> Vec<MetricDatum> {
        let dims = vec![
            ("AgentId", self.agent_id.clone()),
            ("AgentVersion", self.version.clone()),
        ];
        let mut out = vec![MetricDatum {
            name: crate::metrics::CALL_RATE_PERCENT,
            dimensions: dims.clone(),
            value: self.rate_percent.unwrap_or(0.0),
            unit: Unit::Percent,
        }];
        if raised {
            for dimensions in [dims, Vec::new()] {
                out.push(MetricDatum {
                    name: crate::metrics::ANOMALY_DETECTED,
                    dimensions,
                    value: 1.0,
                    unit: Unit::Count,
                });
            }
        }
        out
    }
}

/// The rate of every registered agent at `now`, from the counters.
pub async fn rates(
    counters: &dyn Counters,
    registry: &Registry,
    now: OffsetDateTime,
) -> Result<Vec<Rate>, StoreError> {
    let t = now.unix_timestamp();
    let hour = start_of(t, HOUR);
    let today = start_of(t, DAY);
    let mut out = Vec::with_capacity(registry.agents.len());
    for agent in &registry.agents {
        let mut keys = vec![(hour_key(&agent.id, &agent.version), hour)];
        for d in 1..=BASELINE_DAYS {
            keys.push((day_key(&agent.id, &agent.version), today - d * DAY));
        }
        let found = counters.counters(&keys).await?;
        let calls = |c: &Option<crate::limits::Counter>| c.as_ref().map_or(0, |c| c.used.calls);
        let this_hour = found.first().map_or(0, calls);
        let baseline = found.iter().skip(1).map(calls).sum();
        let threshold = agent
            .anomaly
            .as_ref()
            .map_or_else(default_anomaly_percent, |a| a.threshold_percent);
        out.push(Rate::new(
            &agent.id,
            &agent.version,
            hour,
            this_hour,
            baseline,
            threshold,
        ));
    }
    Ok(out)
}

/// Where an alert goes besides the return value.
pub struct Alerting<'a> {
    /// The counters (rates, and the once-per-hour mark of an alert).
    pub counters: &'a dyn Counters,
    /// Records the alert's control event.
    pub control: &'a dyn ControlLog,
    /// Disables versions whose agent asks for it.
    pub killswitch: &'a dyn KillSwitchStore,
}

/// Appends control events to the audit trail.
#[async_trait::async_trait]
pub trait ControlLog: Send + Sync {
    /// Appends one event.
    async fn append_control(&self, event: &ControlEvent) -> Result<(), StoreError>;
}

/// What one watch found: every rate, and the alerts it raised.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Every registered agent version's rate.
    pub rates: Vec<Rate>,
    /// The ones this watch raised an alert for (once per version and hour).
    pub raised: Vec<Rate>,
}

impl Watch {
    /// The metric data points of this watch.
    pub fn datums(&self) -> Vec<MetricDatum> {
        self.rates
            .iter()
            .flat_map(|r| {
                r.datums(
                    self.raised
                        .iter()
                        .any(|x| x.agent_id == r.agent_id && x.version == r.version),
                )
            })
            .collect()
    }
}

/// Computes every rate and raises the alerts not yet raised this hour: a
/// control event, a log line, and the kill switch where the agent asks for it.
pub async fn watch(
    to: &Alerting<'_>,
    registry: &Registry,
    active_version: (&str, &str),
    now: OffsetDateTime,
) -> Result<Watch, StoreError> {
    let rates = rates(to.counters, registry, now).await?;
    let mut raised = Vec::new();
    let hour = start_of(now.unix_timestamp(), HOUR);
    for rate in rates.iter().filter(|r| r.anomalous) {
        // The first watch of the hour to mark it raises the alert.
        let mark = Charge {
            key: alert_key(&rate.agent_id, &rate.version),
            window_start: hour,
            expires_at: hour + 2 * DAY,
            add: Amounts {
                calls: 1,
                ..Amounts::default()
            },
            max: Maxima {
                calls: Some(0),
                ..Maxima::default()
            },
            started_not_before: None,
            owner: None,
            must_exist: false,
        };
        if to.counters.charge(&[mark]).await? != Charged::Applied {
            continue;
        }
        let at = rfc3339(now);
        tracing::warn!(
            target: "anomaly",
            agent_id = %rate.agent_id,
            agent_version = %rate.version,
            calls_this_hour = rate.calls_this_hour,
            baseline_per_hour = rate.baseline_per_hour,
            rate_percent = rate.rate_percent.unwrap_or(0.0),
            threshold_percent = rate.threshold_percent,
            "anomaly: {}",
            rate.describe()
        );
        to.control
            .append_control(&ControlEvent {
                event_id: uuid::Uuid::now_v7().to_string(),
                timestamp: at.clone(),
                actor: DETECTOR.to_owned(),
                action: ControlAction::AnomalyDetected,
                version_id: active_version.0.to_owned(),
                content_hash: active_version.1.to_owned(),
                previous_version: None,
                message: Some(rate.describe()),
                changes: Vec::new(),
                agent_id: Some(rate.agent_id.clone()),
                agent_version: Some(rate.version.clone()),
                review: None,
                change: None,
            })
            .await?;
        let auto_disable = registry
            .agents
            .iter()
            .find(|a| a.id == rate.agent_id)
            .and_then(|a| a.anomaly.as_ref())
            .is_some_and(|a| a.auto_disable);
        if auto_disable {
            to.killswitch
                .switch(&Switch::Disable(Disablement {
                    agent_id: rate.agent_id.clone(),
                    version: Some(rate.version.clone()),
                    by: DETECTOR.to_owned(),
                    reason: format!("automatic containment: {}", rate.describe()),
                    at,
                }))
                .await?;
        }
        raised.push(rate.clone());
    }
    Ok(Watch { rates, raised })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_exact_at_the_seeds_150_percent() {
        // 111 calls in 7 days: 0.66 an hour; one call this hour is 151%.
        let above = Rate::new("a", "1", 0, 1, 111, 150);
        assert!(above.anomalous);
        assert_eq!(above.rate_percent.map(f64::round), Some(151.0));
        // 113 calls: one call is 149%.
        let below = Rate::new("a", "1", 0, 1, 113, 150);
        assert!(!below.anomalous);
        assert_eq!(below.rate_percent.map(f64::round), Some(149.0));
        // Exactly 150% does not exceed 150%.
        assert!(!Rate::new("a", "1", 0, 3, 336, 150).anomalous);
        assert!(Rate::new("a", "1", 0, 4, 336, 150).anomalous);
        // Without history there is no baseline to exceed.
        let new = Rate::new("a", "1", 0, 1000, 0, 150);
        assert!(!new.anomalous);
        assert_eq!(new.rate_percent, None);
    }

    #[test]
    fn a_call_counts_in_its_hour_and_its_day() {
        let now = time::macros::datetime!(2026-12-02 10:17:03 UTC);
        let [hour, day] = call_charges("loan", "3.0.1", now);
        assert_eq!(
            hour.window_start,
            time::macros::datetime!(2026-12-02 10:00 UTC).unix_timestamp()
        );
        assert_eq!(
            day.window_start,
            time::macros::datetime!(2026-12-02 00:00 UTC).unix_timestamp()
        );
        assert_eq!(hour.add.calls, 1);
        assert_eq!(hour.max, Maxima::default(), "counting never refuses a call");
        assert!(hour.admits(None));
    }
}
