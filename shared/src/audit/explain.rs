//! `govctl audit explain`: one decision's whole story, for a regulator.
//!
//! The store gathers the facts ([`Story`]); this module only lays them out:
//! who asked (agent and the version it ran), for whom, what call with what
//! data, which policy version decided and the text of the policies that
//! determined it, the agent's stated reasoning, the other calls of the same
//! session (the data the agent touched), the human approval, and where the
//! record sits in its tamper-evident chain.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::control::ControlEvent;
use crate::model::{AgentSpec, Decision, DecisionRecord, ToolSpec};
use crate::ports::PolicyVersion;

/// Everything known about one decision.
#[derive(Debug, Clone)]
pub struct Story {
    /// The decision.
    pub record: DecisionRecord,
    /// Its place in the chain: partition, position, link.
    pub position: Option<(String, u64, String)>,
    /// The first digest that seals it: number and time.
    pub sealed_by: Option<(u64, String)>,
    /// The policy version that decided, when the store still has it.
    pub policy: Option<PolicyStory>,
    /// The control-plane events that put that version in force, newest last.
    pub control: Vec<ControlEvent>,
    /// The kill-switch event that had disabled the agent when the decision
    /// was made, if one had.
    pub containment: Option<ControlEvent>,
    /// The other records of the same agent's session, in time order.
    pub session: Vec<DecisionRecord>,
    /// The records of the approval this decision belongs to, in time order.
    pub approval_trail: Vec<DecisionRecord>,
    /// The record of the decision's execution, when the MCP gateway carried
    /// it out.
    pub execution: Option<DecisionRecord>,
    /// What is wrong with the record's place in its chain, if anything:
    /// its bytes against its link, and its neighbours' links.
    pub tampered: Option<String>,
}

/// The deciding policy version and what it said about this call.
#[derive(Debug, Clone)]
pub struct PolicyStory {
    /// The version.
    pub version: PolicyVersion,
    /// Determining policy id → (file, text).
    pub sources: BTreeMap<String, (String, String)>,
    /// The agent as that version registered it.
    pub agent: Option<AgentSpec>,
    /// The tool as that version registered it.
    pub tool: Option<ToolSpec>,
}

fn args_line(r: &DecisionRecord) -> String {
    r.arguments
        .as_ref()
        .map_or_else(|| "(not kept)".to_owned(), ToString::to_string)
}

/// What the upstream server did with a forwarded call.
fn execution_lines(o: &mut String, e: &crate::model::Execution, record_id: &str) {
    let _ = writeln!(
        o,
        "  server        {} (tool `{}`)",
        e.server, e.upstream_tool
    );
    let _ = writeln!(
        o,
        "  outcome       {} in {} ms",
        e.status.as_str(),
        e.duration_ms
    );
    if let Some(err) = &e.error {
        let _ = writeln!(o, "  error         {err}");
    }
    if let Some(h) = &e.result_hash {
        let _ = writeln!(o, "  result hash   {h}");
    }
    if !e.removed_paths.is_empty() {
        let _ = writeln!(
            o,
            "  removed       {} (values never kept)",
            e.removed_paths.join(", ")
        );
    }
    let _ = writeln!(o, "  record        {record_id}");
}

/// The story as text.
pub fn render(s: &Story) -> String {
    let r = &s.record;
    let mut o = String::new();
    let _ = writeln!(o, "Decision {}", r.decision_id);
    let _ = writeln!(o, "  result        {}", r.decision.as_str());
    let _ = writeln!(o, "  at            {}", r.timestamp);
    let _ = writeln!(o, "  environment   {}", r.environment);
    let _ = writeln!(o, "  trace         {}", r.trace_id);
    if let Some(run) = &r.run_id {
        let _ = writeln!(o, "  run           {run}");
    }
    if let Some(session) = &r.session_id {
        let _ = writeln!(o, "  session       {session}");
    }
    let _ = writeln!(o, "  latency       {} µs", r.latency_us);

    let _ = writeln!(o, "\nWho");
    let agent_version = r.agent_version.as_deref().unwrap_or("(unregistered)");
    let _ = writeln!(
        o,
        "  agent         {} (version {agent_version})",
        r.agent_id
    );
    if let Some(a) = s.policy.as_ref().and_then(|p| p.agent.as_ref()) {
        let _ = writeln!(
            o,
            "                team {}, environment {}, risk ceiling {}{}",
            a.team,
            a.environment,
            a.risk_ceiling.as_str(),
            a.description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        o,
        "  on behalf of  {} (roles: {})",
        r.user_id,
        if r.user_roles.is_empty() {
            "none".to_owned()
        } else {
            r.user_roles.join(", ")
        }
    );

    let _ = writeln!(o, "\nCall");
    let _ = writeln!(o, "  tool          {}", r.tool_id);
    if let Some(t) = s.policy.as_ref().and_then(|p| p.tool.as_ref()) {
        let _ = writeln!(
            o,
            "                {}, risk {}, data {}{}",
            t.category.as_str(),
            t.risk.as_str(),
            t.classification,
            t.description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    if let Some(risk) = r.requested_risk {
        let _ = writeln!(o, "  declared risk {}", risk.as_str());
    }
    let _ = writeln!(o, "  arguments     {}", args_line(r));
    let _ = writeln!(o, "  arguments sha {}", r.arguments_hash);

    let _ = writeln!(o, "\nWhy");
    for reason in &r.reasons {
        let by = reason
            .policy_id
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        let _ = writeln!(o, "  {}: {}{by}", reason.code, reason.message);
    }
    for e in &r.errors {
        let _ = writeln!(o, "  error: {e}");
    }

    let _ = writeln!(o, "\nPolicy");
    let _ = writeln!(o, "  version       {}", r.policy_version);
    let _ = writeln!(o, "  content       {}", r.policy_hash);
    if s.control.is_empty() {
        match &s.policy {
            Some(p) => {
                let _ = writeln!(
                    o,
                    "  published     {} by {}: {}",
                    p.version.created_at, p.version.author, p.version.message
                );
            }
            None => {
                let _ = writeln!(o, "  (this version is not in the store)");
            }
        }
    }
    for c in &s.control {
        let message = c
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  {:<13} {} by {}{message}",
            c.action.as_str().trim_start_matches("policy_"),
            c.timestamp,
            c.actor
        );
    }
    if let Some(c) = &s.containment {
        let which = c
            .agent_version
            .as_deref()
            .map_or_else(|| "every version".to_owned(), |v| format!("version {v}"));
        let _ = writeln!(
            o,
            "  kill switch   {which} disabled {} by {}: {}",
            c.timestamp,
            c.actor,
            c.message.as_deref().unwrap_or("")
        );
    }
    if r.determining_policies.is_empty() && s.containment.is_none() {
        let _ = writeln!(
            o,
            "  determining   none (nothing permitted the call: default deny)"
        );
    }
    if let Some(limit) = &r.limit {
        let window = limit
            .resets_at
            .as_deref()
            .map(|t| format!(", starts over at {t}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  limit         {} ({} per {}): {} of {}{window}",
            limit.name, limit.unit, limit.per, limit.current, limit.limit
        );
    }
    for id in &r.determining_policies {
        let source = s.policy.as_ref().and_then(|p| p.sources.get(id));
        match source {
            Some((file, text)) => {
                let _ = writeln!(o, "  determining   {id} ({file})");
                for line in text.lines() {
                    let _ = writeln!(o, "      {line}");
                }
            }
            None => {
                let _ = writeln!(o, "  determining   {id} (text not in the store)");
            }
        }
    }

    let _ = writeln!(o, "\nReasoning (as the agent stated it; not verified)");
    match &r.reasoning {
        Some(text) => {
            for line in text.lines() {
                let _ = writeln!(o, "  {line}");
            }
        }
        None => {
            let _ = writeln!(o, "  (none given)");
        }
    }

    let _ = writeln!(o, "\nData touched in this session");
    if s.session.is_empty() {
        let _ = writeln!(o, "  (no other calls in this session)");
    }
    for d in &s.session {
        let marker = if d.decision_id == r.decision_id {
            "  ← this decision"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  {}  {:<16} {} {}{marker}",
            d.timestamp,
            d.decision.as_str(),
            d.tool_id,
            args_line(d)
        );
    }

    if !s.approval_trail.is_empty() {
        let _ = writeln!(o, "\nApproval");
        for d in &s.approval_trail {
            let what = d.reasons.first().map_or("", |x| x.code.as_str());
            let mut line = format!("  {}  {:<20}", d.timestamp, what);
            if let Some(a) = &d.approval {
                if let Some(by) = &a.approver {
                    let _ = write!(line, " by {by}");
                }
                if let Some(c) = &a.comment {
                    let _ = write!(line, " ({c:?})");
                }
            }
            if d.decision == Decision::Allow && d.approval.is_none() {
                let _ = write!(line, " decision {}", d.decision_id);
            }
            let _ = writeln!(o, "{}", line.trim_end());
        }
    }

    if let Some(e) = &r.execution {
        let _ = writeln!(o, "\nExecution of decision {}", e.decision_id);
        execution_lines(&mut o, e, &r.decision_id);
    } else if let Some(x) = &s.execution {
        if let Some(e) = &x.execution {
            let _ = writeln!(o, "\nExecution");
            execution_lines(&mut o, e, &x.decision_id);
        }
    }

    let _ = writeln!(o, "\nIntegrity");
    if let Some(problem) = &s.tampered {
        let _ = writeln!(o, "  TAMPERED      {problem}");
    }
    match &s.position {
        Some((p, seq, hash)) => {
            let _ = writeln!(o, "  chain         {p} #{seq}");
            let _ = writeln!(o, "  link          {hash}");
        }
        None => {
            let _ = writeln!(o, "  chain         (not chained)");
        }
    }
    match &s.sealed_by {
        // A seal vouches for the chain as it was: not for a record that no
        // longer matches its link.
        Some(_) if s.tampered.is_some() => {}
        Some((n, at)) => {
            let _ = writeln!(o, "  sealed by     digest #{n} of {at}");
        }
        None => {
            let _ = writeln!(o, "  sealed by     no digest yet (the next one will)");
        }
    }
    let _ = writeln!(o, "  check         govctl audit verify");
    o
}
