//! The incident timeline of one agent: every decision, execution, approval
//! outcome and control event that concerns it in a window, in order, with
//! the chain positions that show the list is complete, and the containment
//! at hand. Seed 003's incident response (contain, trace, remediate,
//! review) starts from this list.
//!
//! Completeness: an agent's records live in one decision chain, shared
//! with the other agents that hash to it. Within the window that chain is
//! a run of consecutive positions; the timeline relinks every record of
//! that run (the other agents' too, which it does not list) and checks that
//! each names its predecessor's link. A record removed from the run, or
//! edited, breaks a link; one that was never written cannot be in it. The
//! control events are one chain of their own, checked the same way.

use serde::Serialize;

use super::chain::{link_hash, ChainEntry};
use super::control::{ControlAction, ControlEvent};
use crate::model::DecisionRecord;

/// What one line of the timeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A decision (allow, deny, pending approval).
    Decision,
    /// The outcome of a human approval.
    Approval,
    /// What an upstream server did with a forwarded call.
    Execution,
    /// A change to the control plane: a policy version, the kill switch,
    /// an anomaly alert.
    Control,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// When (RFC 3339).
    pub timestamp: String,
    /// What it is.
    pub kind: EntryKind,
    /// The record's id (decision id or control event id).
    pub id: String,
    /// Its chain.
    pub partition: String,
    /// Its position in the chain.
    pub seq: u64,
    /// The agent's version the record names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// One line saying what happened.
    pub summary: String,
}

/// A chain's run of positions within the window, relinked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainSpan {
    /// The chain.
    pub partition: String,
    /// The first position in the window.
    pub first_seq: u64,
    /// The last.
    pub last_seq: u64,
    /// How many of its records the window holds (every position from the
    /// first to the last, if none is missing).
    pub records: u64,
    /// How many of them are listed (this agent's, or control events that
    /// concern it).
    pub listed: u64,
    /// Why the run does not verify; `None`: every link verifies and no
    /// position is missing.
    pub broken: Option<String>,
}

/// The timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// The agent.
    pub agent_id: String,
    /// The one version listed, if not all.
    pub version: Option<String>,
    /// The window's start (inclusive).
    pub since: String,
    /// Its end (exclusive).
    pub until: String,
    /// The lines, in time order.
    pub entries: Vec<TimelineEntry>,
    /// The chains they come from, relinked.
    pub chains: Vec<ChainSpan>,
}

impl Timeline {
    /// Whether every chain run verifies.
    pub fn complete(&self) -> bool {
        self.chains.iter().all(|c| c.broken.is_none())
    }
}

/// Collects the timeline from the chained records of the window (in any
/// order): the records of `agent_id` (of `version` only, if given) and the
/// control events that concern it (its kill switch and anomaly alerts, and
/// every policy activation and rollback, which change what it may do).
/// Then each chain's run of positions from the first to the last the window
/// holds is read again by position ([`Collector::runs`], [`Collector::check`])
/// and relinked: a record decided just before the window's edge can commit
/// just after a later one, so positions, not times, decide what is complete.
pub struct Collector {
    timeline: Timeline,
    /// Per chain: the first and last position in the window, and how many
    /// of its records are listed.
    seen: std::collections::BTreeMap<String, (u64, u64, u64)>,
}

impl Collector {
    /// An empty timeline of `agent_id` (and `version`) for `[since, until)`.
    pub fn new(agent_id: &str, version: Option<&str>, since: &str, until: &str) -> Self {
        Self {
            timeline: Timeline {
                agent_id: agent_id.to_owned(),
                version: version.map(str::to_owned),
                since: since.to_owned(),
                until: until.to_owned(),
                entries: Vec::new(),
                chains: Vec::new(),
            },
            seen: std::collections::BTreeMap::new(),
        }
    }

    /// Takes a record of the window.
    pub fn push(&mut self, e: &ChainEntry) {
        let listed = self.entry(e);
        let span = self
            .seen
            .entry(e.partition.clone())
            .or_insert((e.seq, e.seq, 0));
        span.0 = span.0.min(e.seq);
        span.1 = span.1.max(e.seq);
        if let Some(entry) = listed {
            span.2 += 1;
            self.timeline.entries.push(entry);
        }
    }

    /// The runs to relink: chain, first and last position; for every chain
    /// that holds a listed record, and the control chain.
    pub fn runs(&self) -> Vec<(String, u64, u64)> {
        self.seen
            .iter()
            .filter(|(p, (_, _, listed))| {
                *listed > 0 || p.as_str() == super::chain::CONTROL_PARTITION
            })
            .map(|(p, (first, last, _))| (p.clone(), *first, *last))
            .collect()
    }

    /// Relinks `partition`'s run from `first` to `last` from `entries` (its
    /// records at those positions, in position order).
    pub fn check(
        &mut self,
        partition: &str,
        first: u64,
        last: u64,
        entries: impl IntoIterator<Item = ChainEntry>,
    ) {
        let listed = self.seen.get(partition).map_or(0, |s| s.2);
        let mut span = ChainSpan {
            partition: partition.to_owned(),
            first_seq: first,
            last_seq: last,
            records: 0,
            listed,
            broken: None,
        };
        let mut expected = first;
        let mut last_hash: Option<String> = None;
        for e in entries {
            span.records += 1;
            if span.broken.is_some() {
                continue;
            }
            if e.seq != expected {
                span.broken = Some(format!(
                    "position {} follows {}: {} missing",
                    e.seq,
                    expected.saturating_sub(1),
                    e.seq.saturating_sub(expected)
                ));
            } else if last_hash.as_ref().is_some_and(|h| *h != e.prev_hash) {
                span.broken = Some(format!(
                    "position {} does not name its predecessor's link",
                    e.seq
                ));
            } else if link_hash(&e.partition, e.seq, &e.prev_hash, &e.body) != e.hash {
                span.broken = Some(format!("position {} was altered", e.seq));
            }
            expected = e.seq + 1;
            last_hash = Some(e.hash);
        }
        if span.broken.is_none() && expected != last + 1 {
            span.broken = Some(format!(
                "positions {}–{last} are missing",
                expected.max(first)
            ));
        }
        self.timeline.chains.push(span);
    }

    /// The line of `e`, if it concerns the agent.
    fn entry(&self, e: &ChainEntry) -> Option<TimelineEntry> {
        let t = &self.timeline;
        if e.partition == super::chain::CONTROL_PARTITION {
            let event: ControlEvent = serde_json::from_str(&e.body).ok()?;
            let about_agent = event.agent_id.as_deref() == Some(t.agent_id.as_str())
                && (t.version.is_none()
                    || event.agent_version.is_none()
                    || event.agent_version == t.version);
            let policy = matches!(
                event.action,
                ControlAction::PolicyActivated | ControlAction::PolicyRolledBack
            );
            if !about_agent && !policy {
                return None;
            }
            let mut summary = format!("{} by {}", event.action.as_str(), event.actor);
            if policy {
                summary.push_str(&format!(" → version {}", short(&event.version_id)));
            }
            if let Some(v) = &event.agent_version {
                summary.push_str(&format!(" (version {v})"));
            }
            if let Some(m) = &event.message {
                summary.push_str(&format!(": {m}"));
            }
            if let Some(r) = &event.review {
                summary.push_str(&format!(": {} `{}`", r.outcome, r.tool_id));
                if let Some(c) = &r.comment {
                    summary.push_str(&format!(" ({c})"));
                }
            }
            return Some(TimelineEntry {
                timestamp: event.timestamp,
                kind: EntryKind::Control,
                id: event.event_id,
                partition: e.partition.clone(),
                seq: e.seq,
                agent_version: event.agent_version,
                summary,
            });
        }
        let r: DecisionRecord = serde_json::from_str(&e.body).ok()?;
        if r.agent_id != t.agent_id
            || t.version
                .as_ref()
                .is_some_and(|v| r.agent_version.as_ref() != Some(v))
        {
            return None;
        }
        let reasons: Vec<&str> = r.reasons.iter().map(|x| x.code.as_str()).collect();
        let (kind, summary) = if let Some(x) = &r.execution {
            (
                EntryKind::Execution,
                format!(
                    "{} on `{}` ({}) {} in {} ms{} [decision {}]",
                    r.tool_id,
                    x.server,
                    x.upstream_tool,
                    x.status.as_str(),
                    x.duration_ms,
                    x.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default(),
                    short(&x.decision_id)
                ),
            )
        } else if let Some(a) = &r.approval {
            (
                EntryKind::Approval,
                format!(
                    "{} approval {} for user {}: {}{}",
                    r.tool_id,
                    short(&a.approval_id),
                    r.user_id,
                    a.status.as_str(),
                    a.approver
                        .as_deref()
                        .map(|by| format!(" by {by}"))
                        .unwrap_or_default()
                ),
            )
        } else {
            (
                EntryKind::Decision,
                format!(
                    "{} {} for user {} ({}){}",
                    r.decision.as_str(),
                    r.tool_id,
                    r.user_id,
                    reasons.join(", "),
                    r.run_id
                        .as_deref()
                        .map(|run| format!(" run {run}"))
                        .unwrap_or_default()
                ),
            )
        };
        Some(TimelineEntry {
            timestamp: r.timestamp,
            kind,
            id: r.decision_id,
            partition: e.partition.clone(),
            seq: e.seq,
            agent_version: r.agent_version,
            summary,
        })
    }

    /// The timeline, its lines in time order.
    pub fn finish(mut self) -> Timeline {
        self.timeline.entries.sort_by(|a, b| {
            (&a.timestamp, &a.partition, a.seq).cmp(&(&b.timestamp, &b.partition, b.seq))
        });
        self.timeline
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The timeline as text: the lines, the chains, and the containment.
pub fn render(t: &Timeline) -> String {
    let mut out = format!(
        "Incident timeline of agent `{}`{} from {} to {}: {} records\n\n",
        t.agent_id,
        t.version
            .as_deref()
            .map(|v| format!(" version {v}"))
            .unwrap_or_default(),
        t.since,
        t.until,
        t.entries.len()
    );
    for e in &t.entries {
        out.push_str(&format!(
            "{}  {:<9} {}#{:<6} {}\n",
            e.timestamp,
            match e.kind {
                EntryKind::Decision => "decision",
                EntryKind::Approval => "approval",
                EntryKind::Execution => "execution",
                EntryKind::Control => "control",
            },
            e.partition,
            e.seq,
            e.summary
        ));
    }
    out.push_str("\nCompleteness (every record of these chains in the window, relinked):\n");
    if t.chains.is_empty() {
        out.push_str("  no chained record in the window\n");
    }
    for c in &t.chains {
        out.push_str(&format!(
            "  chain {}: positions {}–{} ({} records, {} listed): {}\n",
            c.partition,
            c.first_seq,
            c.last_seq,
            c.records,
            c.listed,
            c.broken.as_deref().map_or_else(
                || "every link verifies".to_owned(),
                |b| format!("BROKEN: {b}")
            )
        ));
    }
    // The version the agent's newest record names, unless one was asked for.
    let version = t
        .version
        .as_deref()
        .or_else(|| {
            t.entries
                .iter()
                .rev()
                .filter(|e| e.kind != EntryKind::Control)
                .find_map(|e| e.agent_version.as_deref())
        })
        .unwrap_or("VERSION");
    out.push_str(&format!(
        "\nContainment:\n  govctl agent disable {agent} --version {version} --reason \"…\"   (this version, at once)\n  govctl agent disable {agent} --reason \"…\"   (every version)\n  govctl policy rollback VERSION   (a version before the change; `govctl policy versions` lists them)\n",
        agent = t.agent_id,
    ));
    out
}
