//! Access reviews, computed from the decision log: seed 003's quarterly
//! question, per agent, "does it still need that API, and is the limit
//! still calibrated?".
//!
//! For each registered agent, over a window of its decisions:
//!
//! - every grant with its allowed and denied calls and its last use; a
//!   grant with no allowed call is **unused**, one with fewer than
//!   [`RARELY_USED`] is **rarely used**;
//! - its denials by reason;
//! - the utilisation of each granted tool's rate limit: the most allowed
//!   calls in one window (fixed windows of the limit's length from the Unix
//!   epoch, per scope key: agent, user or session) against the limit; and
//!   of its run limit: the most calls in one run against `max_calls`.
//!   A peak at or above [`CALIBRATION_HIGH`] of the limit is **near its
//!   limit**; a peak above zero but below [`CALIBRATION_LOW`], **far below
//!   its limit** (a limit that could be tightened);
//! - tools whose classification is not what it was when the grant first
//!   appeared in a policy version (**classification changed**);
//! - an agent that names no owner (**no owner**).

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::model::{Decision, DecisionRecord, RateLimitScope, Registry};

/// Fewer allowed calls than this in the window make a grant rarely used.
pub const RARELY_USED: u64 = 5;

/// A peak at or above this share of its limit is near the limit.
pub const CALIBRATION_HIGH: f64 = 0.8;

/// A peak below this share of its limit is far below it.
pub const CALIBRATION_LOW: f64 = 0.1;

/// The most calls seen in one window against the limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Utilisation {
    /// What is limited, as the registry says it (`10/60s per agent`).
    pub limit: String,
    /// The most allowed calls in one window (or run).
    pub peak: u64,
    /// The limit.
    pub max: u64,
}

impl Utilisation {
    /// The peak as a share of the limit.
    pub fn share(&self) -> f64 {
        if self.max == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let share = self.peak as f64 / self.max as f64;
        share
    }

    /// Near or far below the limit; nothing to say of a limit never used
    /// (the grant's own finding says that).
    fn finding(&self) -> Option<&'static str> {
        if self.peak == 0 {
            None
        } else if self.share() >= CALIBRATION_HIGH {
            Some("near its limit")
        } else if self.share() < CALIBRATION_LOW {
            Some("far below its limit")
        } else {
            None
        }
    }
}

/// One grant of an agent, as it was used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantReview {
    /// The tool.
    pub tool_id: String,
    /// Allowed calls in the window.
    pub allowed: u64,
    /// Denied calls in the window.
    pub denied: u64,
    /// The newest allowed call (RFC 3339); `None`: none in the window.
    pub last_use: Option<String>,
    /// The tool's classification now.
    pub classification: String,
    /// Its classification when the grant first appeared, if different.
    pub classification_at_grant: Option<String>,
    /// Its rate limit's utilisation, if it has one.
    pub rate_limit: Option<Utilisation>,
    /// What a reviewer should look at.
    pub findings: Vec<String>,
}

/// One agent's review.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentReview {
    /// The agent.
    pub agent_id: String,
    /// Its registered version.
    pub version: String,
    /// Its owner.
    pub owner: Option<String>,
    /// Its grants.
    pub grants: Vec<GrantReview>,
    /// Its denials in the window, by reason code.
    pub denials_by_reason: BTreeMap<String, u64>,
    /// Its run limit's utilisation, if it has one.
    pub run_limit: Option<Utilisation>,
    /// What a reviewer should look at, about the agent itself.
    pub findings: Vec<String>,
}

/// The review of every registered agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessReview {
    /// The window's start (RFC 3339).
    pub since: String,
    /// Its end.
    pub until: String,
    /// The agents, in registry order.
    pub agents: Vec<AgentReview>,
}

/// Counts per grant while the log is read.
#[derive(Default)]
struct Tally {
    allowed: u64,
    denied: u64,
    last_use: Option<String>,
    windows: BTreeMap<(String, i64), u64>,
}

/// Reads the window's decision records and computes the review.
pub struct Reviewer<'a> {
    registry: &'a Registry,
    /// For each agent and tool, the tool's classification when the grant
    /// first appeared (oldest policy version that has it).
    granted_as: &'a BTreeMap<(String, String), String>,
    since: String,
    until: String,
    grants: BTreeMap<(String, String), Tally>,
    denials: BTreeMap<String, BTreeMap<String, u64>>,
    runs: BTreeMap<(String, String), u64>,
}

fn seconds(timestamp: &str) -> Option<i64> {
    OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

impl<'a> Reviewer<'a> {
    /// A review of `registry`'s agents over `[since, until)`; `granted_as`
    /// as [`granted_as`] computes it.
    pub fn new(
        registry: &'a Registry,
        granted_as: &'a BTreeMap<(String, String), String>,
        since: &str,
        until: &str,
    ) -> Self {
        Self {
            registry,
            granted_as,
            since: since.to_owned(),
            until: until.to_owned(),
            grants: BTreeMap::new(),
            denials: BTreeMap::new(),
            runs: BTreeMap::new(),
        }
    }

    /// Takes one record of the window (records other than decisions are
    /// ignored).
    pub fn push(&mut self, r: &DecisionRecord) {
        if !r.is_decision() {
            return;
        }
        let key = (r.agent_id.clone(), r.tool_id.clone());
        match r.decision {
            Decision::Allow => {
                let tally = self.grants.entry(key).or_default();
                tally.allowed += 1;
                if tally.last_use.as_deref() < Some(r.timestamp.as_str()) {
                    tally.last_use = Some(r.timestamp.clone());
                }
                let tool = self.registry.tools.iter().find(|t| t.id == r.tool_id);
                if let (Some(limit), Some(t)) = (
                    tool.and_then(|t| t.rate_limit.as_ref()),
                    seconds(&r.timestamp),
                ) {
                    let scope = match limit.per {
                        RateLimitScope::Agent | RateLimitScope::Org => String::new(),
                        RateLimitScope::User => r.user_id.clone(),
                        RateLimitScope::Session => r.session_id.clone().unwrap_or_default(),
                    };
                    let window = i64::try_from(limit.window_seconds.max(1)).unwrap_or(i64::MAX);
                    *tally
                        .windows
                        .entry((scope, t.div_euclid(window)))
                        .or_default() += 1;
                }
                if let Some(run) = &r.run_id {
                    *self
                        .runs
                        .entry((r.agent_id.clone(), run.clone()))
                        .or_default() += 1;
                }
            }
            Decision::Deny => {
                self.grants.entry(key).or_default().denied += 1;
                if let Some(reason) = r.reasons.first() {
                    *self
                        .denials
                        .entry(r.agent_id.clone())
                        .or_default()
                        .entry(reason.code.as_str().to_owned())
                        .or_default() += 1;
                }
            }
            Decision::PendingApproval => {}
        }
    }

    /// The review.
    pub fn finish(self) -> AccessReview {
        let registry = self.registry;
        let agents = registry
            .agents
            .iter()
            .map(|agent| {
                let grants = agent
                    .grants
                    .iter()
                    .map(|g| {
                        let tool = registry.tools.iter().find(|t| t.id == g.tool);
                        let tally = self.grants.get(&(agent.id.clone(), g.tool.clone()));
                        let allowed = tally.map_or(0, |t| t.allowed);
                        let classification =
                            tool.map(|t| t.classification.clone()).unwrap_or_default();
                        let classification_at_grant = self
                            .granted_as
                            .get(&(agent.id.clone(), g.tool.clone()))
                            .filter(|c| **c != classification)
                            .cloned();
                        let rate_limit =
                            tool.and_then(|t| t.rate_limit.as_ref())
                                .map(|l| Utilisation {
                                    limit: format!(
                                        "{}/{}s per {}",
                                        l.limit,
                                        l.window_seconds,
                                        l.per.as_str()
                                    ),
                                    peak: tally
                                        .and_then(|t| t.windows.values().max().copied())
                                        .unwrap_or(0),
                                    max: u64::from(l.limit),
                                });
                        let mut findings = Vec::new();
                        if allowed == 0 {
                            findings.push("unused".to_owned());
                        } else if allowed < RARELY_USED {
                            findings.push("rarely used".to_owned());
                        }
                        if let Some(before) = &classification_at_grant {
                            findings.push(format!(
                                "classification changed ({before} → {classification})"
                            ));
                        }
                        if let Some(f) = rate_limit.as_ref().and_then(Utilisation::finding) {
                            findings.push(format!("rate limit {f}"));
                        }
                        GrantReview {
                            tool_id: g.tool.clone(),
                            allowed,
                            denied: tally.map_or(0, |t| t.denied),
                            last_use: tally.and_then(|t| t.last_use.clone()),
                            classification,
                            classification_at_grant,
                            rate_limit,
                            findings,
                        }
                    })
                    .collect();
                let run_limit = agent
                    .run_limits
                    .as_ref()
                    .and_then(|l| l.max_calls)
                    .map(|max| Utilisation {
                        limit: format!("{max} calls per run"),
                        peak: self
                            .runs
                            .iter()
                            .filter(|((a, _), _)| *a == agent.id)
                            .map(|(_, n)| *n)
                            .max()
                            .unwrap_or(0),
                        max: u64::from(max),
                    });
                let mut findings = Vec::new();
                if agent.owner.is_none() {
                    findings.push("no owner".to_owned());
                }
                if let Some(f) = run_limit.as_ref().and_then(Utilisation::finding) {
                    findings.push(format!("run limit {f}"));
                }
                AgentReview {
                    agent_id: agent.id.clone(),
                    version: agent.version.clone(),
                    owner: agent.owner.clone(),
                    grants,
                    denials_by_reason: self.denials.get(&agent.id).cloned().unwrap_or_default(),
                    run_limit,
                    findings,
                }
            })
            .collect();
        AccessReview {
            since: self.since,
            until: self.until,
            agents,
        }
    }
}

/// For each agent and granted tool, the tool's classification in the
/// oldest of `registries` (oldest first) whose agent holds the grant.
pub fn granted_as<'a>(
    registries: impl IntoIterator<Item = &'a Registry>,
) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for registry in registries {
        for agent in &registry.agents {
            for g in &agent.grants {
                if let Some(tool) = registry.tools.iter().find(|t| t.id == g.tool) {
                    out.entry((agent.id.clone(), g.tool.clone()))
                        .or_insert_with(|| tool.classification.clone());
                }
            }
        }
    }
    out
}

fn percent(u: &Utilisation) -> String {
    format!("{} of {} ({:.0}%)", u.peak, u.max, u.share() * 100.0)
}

/// The review as Markdown, for the reviewer's record.
pub fn to_markdown(review: &AccessReview) -> String {
    let mut out = format!(
        "# Access review\n\nDecisions from {} to {}. A grant is *rarely used* below {} allowed calls; a limit is *near* at {:.0}% of it and *far below* under {:.0}%.\n",
        review.since,
        review.until,
        RARELY_USED,
        CALIBRATION_HIGH * 100.0,
        CALIBRATION_LOW * 100.0
    );
    for a in &review.agents {
        out.push_str(&format!(
            "\n## {} (version {})\n\nOwner: {}\n",
            a.agent_id,
            a.version,
            a.owner.as_deref().unwrap_or("**none**")
        ));
        if !a.findings.is_empty() {
            out.push_str(&format!("Findings: {}\n", a.findings.join("; ")));
        }
        if let Some(u) = &a.run_limit {
            out.push_str(&format!("Run limit {}: peak {}\n", u.limit, percent(u)));
        }
        out.push_str("\n| tool | allowed | denied | last use | classification | rate limit peak | findings |\n|---|---|---|---|---|---|---|\n");
        for g in &a.grants {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                g.tool_id,
                g.allowed,
                g.denied,
                g.last_use.as_deref().unwrap_or("never"),
                match &g.classification_at_grant {
                    Some(before) => format!("{before} → {}", g.classification),
                    None => g.classification.clone(),
                },
                g.rate_limit.as_ref().map_or_else(
                    || "–".to_owned(),
                    |u| format!("{} ({})", percent(u), u.limit)
                ),
                g.findings.join("; ")
            ));
        }
        if !a.denials_by_reason.is_empty() {
            let denials: Vec<String> = a
                .denials_by_reason
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            out.push_str(&format!("\nDenials: {}\n", denials.join(", ")));
        }
    }
    out
}

/// The review as CSV: one row per grant, with the agent's own findings.
pub fn to_csv(review: &AccessReview) -> String {
    let mut out = String::from(
        "agent_id,version,owner,tool_id,allowed,denied,last_use,classification,classification_at_grant,rate_limit,rate_limit_peak,findings\n",
    );
    for a in &review.agents {
        for g in &a.grants {
            let mut findings = a.findings.clone();
            findings.extend(g.findings.iter().cloned());
            let row = [
                a.agent_id.clone(),
                a.version.clone(),
                a.owner.clone().unwrap_or_default(),
                g.tool_id.clone(),
                g.allowed.to_string(),
                g.denied.to_string(),
                g.last_use.clone().unwrap_or_default(),
                g.classification.clone(),
                g.classification_at_grant.clone().unwrap_or_default(),
                g.rate_limit
                    .as_ref()
                    .map(|u| u.limit.clone())
                    .unwrap_or_default(),
                g.rate_limit
                    .as_ref()
                    .map(|u| u.peak.to_string())
                    .unwrap_or_default(),
                findings.join("; "),
            ];
            out.push_str(&crate::inventory::csv_row(&row));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reason, ReasonCode};

    use crate::policy::example_tests::example_registry as registry;

    /// A decision of `agent` on `tool` at `at` (RFC 3339).
    fn decided(agent: &str, tool: &str, decision: Decision, at: &str, run: &str) -> DecisionRecord {
        DecisionRecord {
            decision_id: format!("{agent}-{tool}-{at}"),
            trace_id: "t".into(),
            timestamp: at.into(),
            decision,
            reasons: match decision {
                Decision::Deny => vec![Reason {
                    code: ReasonCode::RateLimited,
                    message: "over".into(),
                    policy_id: None,
                }],
                _ => Vec::new(),
            },
            determining_policies: Vec::new(),
            errors: Vec::new(),
            agent_id: agent.into(),
            agent_version: Some("1".into()),
            user_id: "ana".into(),
            user_roles: vec!["underwriter".into()],
            tool_id: tool.into(),
            requested_risk: None,
            arguments_hash: "h".into(),
            arguments: None,
            environment: "dev".into(),
            policy_version: "v".into(),
            policy_hash: "sha256:x".into(),
            session_id: None,
            run_id: Some(run.into()),
            limit: None,
            idempotency_key: None,
            reasoning: None,
            latency_us: 1,
            approval_id: None,
            approval: None,
            execution: None,
            shadow: None,
        }
    }

    /// Seeded history, on an injected clock: ninety days of the example
    /// registry's loan agent and support agent.
    #[test]
    fn the_review_reports_use_utilisation_owners_and_changes() {
        let registry = registry();
        // The credit report was `internal` when the loan agent got it.
        let mut at_grant = granted_as([&registry]);
        at_grant.insert(
            ("meridian-loan-agent".into(), "pull_credit_report".into()),
            "internal".into(),
        );
        let mut reviewer = Reviewer::new(
            &registry,
            &at_grant,
            "2026-09-01T00:00:00Z",
            "2026-11-30T00:00:00Z",
        );
        // 18 calls in one run, 6 of them pulls within one minute; 2 pulls
        // over its 50-per-day user limit denied.
        for i in 0..18 {
            let tool = if i < 6 {
                "pull_credit_report"
            } else {
                "lookup_regulatory_requirements"
            };
            reviewer.push(&decided(
                "meridian-loan-agent",
                tool,
                Decision::Allow,
                &format!("2026-10-01T09:00:{i:02}Z"),
                "run-1",
            ));
        }
        for i in 0..2 {
            reviewer.push(&decided(
                "meridian-loan-agent",
                "pull_credit_report",
                Decision::Deny,
                &format!("2026-10-01T09:01:{i:02}Z"),
                "run-1",
            ));
        }
        // The support agent searched twice, months ago.
        for day in ["2026-09-02", "2026-09-03"] {
            reviewer.push(&decided(
                "agent-support-1",
                "search_kb",
                Decision::Allow,
                &format!("{day}T10:00:00Z"),
                "r",
            ));
        }
        let review = reviewer.finish();
        let loan = review
            .agents
            .iter()
            .find(|a| a.agent_id == "meridian-loan-agent")
            .expect("reviewed");
        let pull = loan
            .grants
            .iter()
            .find(|g| g.tool_id == "pull_credit_report")
            .expect("granted");
        assert_eq!((pull.allowed, pull.denied), (6, 2));
        assert_eq!(pull.last_use.as_deref(), Some("2026-10-01T09:00:05Z"));
        assert_eq!(pull.classification_at_grant.as_deref(), Some("internal"));
        assert_eq!(
            loan.run_limit.as_ref().map(|u| (u.peak, u.max)),
            Some((18, 20))
        );
        assert!(loan
            .findings
            .contains(&"run limit near its limit".to_owned()));
        assert_eq!(loan.denials_by_reason.get("rate_limited"), Some(&2));
        let unused: Vec<&str> = loan
            .grants
            .iter()
            .filter(|g| g.findings.iter().any(|f| f == "unused"))
            .map(|g| g.tool_id.as_str())
            .collect();
        assert!(unused.contains(&"generate_recommendation"), "{unused:?}");
        let support = review
            .agents
            .iter()
            .find(|a| a.agent_id == "agent-support-1")
            .expect("reviewed");
        assert_eq!(support.grants[0].findings, ["rarely used"]);
        let legacy = review
            .agents
            .iter()
            .find(|a| a.agent_id == "agent-legacy-1")
            .expect("reviewed");
        assert!(legacy.findings.contains(&"no owner".to_owned()));
        insta::with_settings!({snapshot_path => "../tests/snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!("access_review", to_markdown(&review));
        });
        let csv = to_csv(&review);
        assert!(csv.lines().any(|l| l.starts_with(
            "meridian-loan-agent,3.0.1,priya.shah@meridian.example,pull_credit_report,6,2,"
        )));
    }
}
