//! The agent inventory: every registered agent with its owner, team,
//! environments, identities, tools, limits and last activity. Seed 003's
//! governance framework feeds the company's model inventory from the agent
//! registry; `govctl registry export` prints this as CSV or JSON for that
//! feed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{AgentSpec, Registry, RunLimits, ToolSpec};

/// One agent of the inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventoryAgent {
    /// The agent.
    pub agent_id: String,
    /// Its registered version.
    pub version: String,
    /// The person accountable for it; `None` is a finding of its own.
    pub owner: Option<String>,
    /// The team that runs it.
    pub team: String,
    /// The environment it may run in.
    pub environment: String,
    /// `active` or `disabled`, as registered.
    pub status: String,
    /// What it does.
    pub description: Option<String>,
    /// The AWS principals it runs as.
    pub principals: Vec<String>,
    /// The OAuth clients its MCP client authenticates as.
    pub oauth_clients: Vec<String>,
    /// The tools it is granted.
    pub tools: Vec<InventoryTool>,
    /// Its run limits, if any.
    pub run_limits: Option<RunLimits>,
    /// Its anomaly threshold, in percent of its 7-day hourly average.
    pub anomaly_threshold_percent: u32,
    /// Its newest decision in the log (RFC 3339), any version; `None`: never.
    pub last_activity: Option<String>,
}

/// One granted tool, as the inventory shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventoryTool {
    /// The tool.
    pub tool_id: String,
    /// Its category (`read`, `write`, `delete`, …).
    pub category: String,
    /// Its risk.
    pub risk: String,
    /// The data it touches.
    pub classification: String,
    /// Whether its calls wait for a human.
    pub approval_required: bool,
    /// Its rate limit, as `LIMIT/WINDOWs per SCOPE`.
    pub rate_limit: Option<String>,
}

fn tool_entry(tool: &ToolSpec) -> InventoryTool {
    InventoryTool {
        tool_id: tool.id.clone(),
        category: tool.category.as_str().to_owned(),
        risk: tool.risk.as_str().to_owned(),
        classification: tool.classification.clone(),
        approval_required: tool.requires_approval(),
        rate_limit: tool.rate_limit.as_ref().map(|r| {
            format!(
                "{}/{}s per {}",
                r.limit,
                r.window_seconds,
                serde_json::to_value(r.per)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        }),
    }
}

fn agent_entry(
    registry: &Registry,
    agent: &AgentSpec,
    last_activity: Option<&String>,
) -> InventoryAgent {
    InventoryAgent {
        agent_id: agent.id.clone(),
        version: agent.version.clone(),
        owner: agent.owner.clone(),
        team: agent.team.clone(),
        environment: agent.environment.as_str().to_owned(),
        status: serde_json::to_value(agent.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        description: agent.description.clone(),
        principals: agent.principals.clone(),
        oauth_clients: agent.oauth_clients.clone(),
        tools: agent
            .grants
            .iter()
            .filter_map(|g| registry.tools.iter().find(|t| t.id == g.tool))
            .map(tool_entry)
            .collect(),
        run_limits: agent.run_limits.clone(),
        anomaly_threshold_percent: agent
            .anomaly
            .as_ref()
            .map_or_else(crate::model::default_anomaly_percent, |a| {
                a.threshold_percent
            }),
        last_activity: last_activity.cloned(),
    }
}

/// The inventory of `registry`'s agents, in registry order; `last_activity`
/// maps agent ids to their newest decision's time.
pub fn inventory(
    registry: &Registry,
    last_activity: &BTreeMap<String, String>,
) -> Vec<InventoryAgent> {
    registry
        .agents
        .iter()
        .map(|a| agent_entry(registry, a, last_activity.get(&a.id)))
        .collect()
}

/// The columns of [`to_csv`].
pub const CSV_HEADER: [&str; 13] = [
    "agent_id",
    "version",
    "owner",
    "team",
    "environment",
    "status",
    "principals",
    "oauth_clients",
    "tools",
    "highest_tool_risk",
    "classifications",
    "limits",
    "last_activity",
];

/// One CSV field, quoted when it must be (RFC 4180).
pub(crate) fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The run limits and tool rate limits of an agent, in one cell.
fn limits_cell(agent: &InventoryAgent) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &agent.run_limits {
        if let Some(n) = r.max_calls {
            parts.push(format!("run: {n} calls"));
        }
        if let Some(s) = r.max_seconds {
            parts.push(format!("run: {s} s"));
        }
        if let Some(c) = &r.max_cost_usd {
            parts.push(format!("run: {c}"));
        }
        if let Some(t) = r.max_tokens {
            parts.push(format!("run: {t} tokens"));
        }
    }
    for t in &agent.tools {
        if let Some(rate) = &t.rate_limit {
            parts.push(format!("{}: {rate}", t.tool_id));
        }
    }
    parts.join("; ")
}

/// The inventory as CSV: one row per agent, lists joined with `;`.
pub fn to_csv(agents: &[InventoryAgent]) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push('\n');
    for a in agents {
        let tools: Vec<String> = a
            .tools
            .iter()
            .map(|t| {
                format!(
                    "{} ({} {}{})",
                    t.tool_id,
                    t.category,
                    t.risk,
                    if t.approval_required { " approval" } else { "" }
                )
            })
            .collect();
        let highest = a
            .tools
            .iter()
            .map(|t| t.risk.as_str())
            .max_by_key(|r| {
                ["low", "medium", "high", "critical"]
                    .iter()
                    .position(|x| x == r)
            })
            .unwrap_or("");
        let mut classes: Vec<&str> = a.tools.iter().map(|t| t.classification.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        let row = [
            a.agent_id.clone(),
            a.version.clone(),
            a.owner.clone().unwrap_or_default(),
            a.team.clone(),
            a.environment.clone(),
            a.status.clone(),
            a.principals.join(";"),
            a.oauth_clients.join(";"),
            tools.join(";"),
            highest.to_owned(),
            classes.join(";"),
            limits_cell(a),
            a.last_activity.clone().unwrap_or_default(),
        ];
        out.push_str(&csv_row(&row));
    }
    out
}

/// One CSV line of `cells`, each quoted when it must be.
pub(crate) fn csv_row(cells: &[String]) -> String {
    let mut line = cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::example_tests::example_registry as registry;

    #[test]
    fn every_agent_is_listed_with_its_owner_tools_and_last_activity() {
        let registry = registry();
        let last = BTreeMap::from([(
            "agent-support-1".to_owned(),
            "2026-12-01T09:00:00.000Z".to_owned(),
        )]);
        let agents = inventory(&registry, &last);
        assert_eq!(agents.len(), registry.agents.len());
        let support = agents
            .iter()
            .find(|a| a.agent_id == "agent-support-1")
            .expect("listed");
        assert_eq!(support.owner.as_deref(), Some("dana.lee@example.com"));
        assert_eq!(
            support.last_activity.as_deref(),
            Some("2026-12-01T09:00:00.000Z")
        );
        let tools: Vec<&str> = support.tools.iter().map(|t| t.tool_id.as_str()).collect();
        assert_eq!(tools, ["search_kb", "get_ticket"]);
        let never = agents
            .iter()
            .find(|a| a.agent_id == "agent-ops-1")
            .expect("listed");
        assert_eq!(never.last_activity, None);
        let treasury = agents
            .iter()
            .find(|a| a.tools.iter().any(|t| t.tool_id == "transfer_funds"))
            .expect("an agent with transfer_funds");
        assert!(treasury
            .tools
            .iter()
            .any(|t| t.tool_id == "transfer_funds" && t.approval_required));
    }

    #[test]
    fn csv_quotes_what_must_be_quoted_and_has_one_row_per_agent() {
        let registry = registry();
        let csv = to_csv(&inventory(&registry, &BTreeMap::new()));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), registry.agents.len() + 1);
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
        let support = lines
            .iter()
            .find(|l| l.starts_with("agent-support-1,"))
            .expect("a row");
        assert!(support.contains("search_kb (read low)"), "{support}");
    }
}
