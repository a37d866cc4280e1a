//! The shadow report: what enforcing the log-only policies would have
//! changed. A policy annotated `@log_only` (or in a `*.log-only.cedar`
//! file) is evaluated with every decision and never enforced; a decision it
//! would have flipped carries a `shadow` outcome in its record (see
//! [`crate::model::ShadowOutcome`]). This module counts those records, per
//! log-only policy, so that a rule can be tried on real traffic before it
//! is enforced.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Decision, DecisionRecord};

/// How many example decision ids the report keeps per policy.
pub const EXAMPLES: usize = 5;

/// What one log-only policy would have changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyShadow {
    /// Decisions it would have turned into denials.
    pub would_deny: u64,
    /// Denials it would have turned into allows.
    pub would_allow: u64,
    /// Those decisions by agent.
    pub agents: BTreeMap<String, u64>,
    /// By tool.
    pub tools: BTreeMap<String, u64>,
    /// A few of them, oldest first, for `govctl audit explain`.
    pub examples: Vec<String>,
}

/// The report over a window of decisions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShadowReport {
    /// The window's start (RFC 3339).
    pub since: String,
    /// Its end.
    pub until: String,
    /// Decisions in the window.
    pub decisions: u64,
    /// Decisions a log-only policy would have flipped.
    pub flipped: u64,
    /// Per log-only policy.
    pub policies: BTreeMap<String, PolicyShadow>,
}

impl ShadowReport {
    /// An empty report of `[since, until)`.
    pub fn new(since: &str, until: &str) -> Self {
        Self {
            since: since.to_owned(),
            until: until.to_owned(),
            ..Self::default()
        }
    }

    /// Counts one record of the window (records other than decisions are
    /// not counted).
    pub fn push(&mut self, r: &DecisionRecord) {
        if !r.is_decision() {
            return;
        }
        self.decisions += 1;
        let Some(shadow) = &r.shadow else {
            return;
        };
        self.flipped += 1;
        for id in &shadow.policies {
            let p = self.policies.entry(id.clone()).or_default();
            if shadow.decision == Decision::Deny {
                p.would_deny += 1;
            } else {
                p.would_allow += 1;
            }
            *p.agents.entry(r.agent_id.clone()).or_default() += 1;
            *p.tools.entry(r.tool_id.clone()).or_default() += 1;
            if p.examples.len() < EXAMPLES {
                p.examples.push(r.decision_id.clone());
            }
        }
    }
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as text.
pub fn render(r: &ShadowReport) -> String {
    let mut out = format!(
        "Log-only policies from {} to {}: {} of {} decisions would have been decided otherwise\n",
        r.since, r.until, r.flipped, r.decisions
    );
    if r.policies.is_empty() {
        out.push_str("\nNo log-only policy would have changed a decision.\n");
    }
    for (id, p) in &r.policies {
        out.push_str(&format!(
            "\n{id}\n  would deny {} call(s) the policies allowed, would allow {} they denied\n  agents: {}\n  tools: {}\n  for example: {}\n",
            p.would_deny,
            p.would_allow,
            counts(&p.agents),
            counts(&p.tools),
            p.examples.join(", ")
        ));
    }
    out
}
