//! In-process adapters for the local control plane: metrics counted in
//! memory, notifications written to the log, secrets from the environment
//! or the data directory ([`secrets`]), and the owner-only files of the
//! data directory ([`files`]). The approval workflow run in process is a
//! host, in [`crate::hosts::workflow`].

pub mod files;
pub mod prometheus;
pub mod secrets;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::metrics::MetricDatum;
use crate::model::{Decision, DecisionRecord};
use crate::ports::{MetricSink, Metrics, Notification, Notifier, StoreError};

/// Decision counters kept in memory.
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    allowed: AtomicU64,
    denied: AtomicU64,
    pending: AtomicU64,
    risky: AtomicU64,
    by_reason: Mutex<BTreeMap<String, u64>>,
    series: Mutex<BTreeMap<String, f64>>,
}

/// A snapshot of [`MemoryMetrics`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Allowed decisions.
    pub allowed: u64,
    /// Denied decisions.
    pub denied: u64,
    /// Decisions waiting for approval.
    pub pending_approval: u64,
    /// Denials because the requested risk exceeded a ceiling.
    pub risky_attempts: u64,
    /// Denials by reason code.
    pub denials_by_reason: BTreeMap<String, u64>,
}

impl MemoryMetrics {
    /// The counts so far.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            pending_approval: self.pending.load(Ordering::Relaxed),
            risky_attempts: self.risky.load(Ordering::Relaxed),
            denials_by_reason: self.by_reason.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}

impl Metrics for MemoryMetrics {
    fn record_decision(&self, record: &DecisionRecord) {
        if record.execution.is_some() {
            // A forwarded call's outcome, not a decision.
            return;
        }
        let counter = match record.decision {
            Decision::Allow => &self.allowed,
            Decision::Deny => &self.denied,
            Decision::PendingApproval => &self.pending,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if record.decision == Decision::Deny {
            if record
                .reasons
                .iter()
                .any(|r| r.code == crate::model::ReasonCode::RiskExceedsPolicy)
            {
                self.risky.fetch_add(1, Ordering::Relaxed);
            }
            if let (Ok(mut m), Some(first)) = (self.by_reason.lock(), record.reasons.first()) {
                *m.entry(first.code.as_str().to_owned()).or_default() += 1;
            }
        }
    }
}

/// Data points kept in memory, summed per series (`Name{Dim=value,…}`).
#[async_trait]
impl MetricSink for MemoryMetrics {
    async fn put(&self, datums: &[MetricDatum]) -> Result<(), StoreError> {
        let mut series = self
            .series
            .lock()
            .map_err(|_| StoreError::Unavailable("metrics lock poisoned".into()))?;
        for d in datums {
            let dims: Vec<String> = d
                .dimensions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            *series
                .entry(format!("{}{{{}}}", d.name, dims.join(",")))
                .or_default() += d.value;
        }
        Ok(())
    }
}

impl MemoryMetrics {
    /// The data points published so far, summed per series.
    pub fn series(&self) -> BTreeMap<String, f64> {
        self.series.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Writes notifications to the log (the terminal of `govctl serve`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), StoreError> {
        tracing::info!(target: "notification", subject = %n.subject, "{}", n.body);
        Ok(())
    }
}
