//! The risk class of a policy change: what a reviewer must look at.
//!
//! A change is **high** risk when it can let a call through that was denied
//! before, or take a human out of the loop:
//!
//! | Where | High risk |
//! |---|---|
//! | agents | a new agent with grants; a new grant; a raised risk ceiling (agent or grant); a new principal or OAuth client; a changed environment or team; re-enabled (`status: active`); looser run limits or anomaly watch |
//! | tools | a new tool whose data is `pii` or `confidential`; new `allowed_roles`; a lowered risk; a less sensitive classification; a changed category, server or upstream name; a looser or removed rate limit; a lower or removed cost; approval no longer required, or another approver group; a response-filter path removed; a new or loosened argument |
//! | roles | a new inheritance |
//! | budgets | removed, raised, widened or with a shorter window |
//! | servers | a changed endpoint, credential or forwarded header |
//! | Cedar | an enforced `forbid` removed, changed or made log-only; an enforced `permit` added or changed |
//! | change review | an environment no longer reviewed, or another reviewers group |
//! | anything | a first version; a field this list does not know (fail closed) |
//!
//! Everything else is **low**: descriptions, owners, agent versions, test
//! cases, log-only policies, new forbids, removed grants, tools and
//! permits, and every tightening of the above.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CompiledPolicies;
use crate::model::{
    AgentSpec, AgentStatus, BudgetSpec, Registry, RoleSpec, RunLimits, ServerSpec, ToolSpec,
};

/// Low or high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskClass {
    /// Descriptions and tightening: activates on its own.
    Low,
    /// May widen access or remove a control: reviewed where review is required.
    High,
}

impl RiskClass {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::Low => "low",
            RiskClass::High => "high",
        }
    }
}

/// A change's class and the reasons for it: one line per high-risk finding,
/// or, for a low-risk change, one line per change seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRisk {
    /// The class.
    pub class: RiskClass,
    /// Why: the high-risk findings, else what changed.
    pub reasons: Vec<String>,
}

/// How sensitive each known data classification is; an unknown one ranks
/// above all, so any move away from it is a loosening.
fn sensitivity(classification: &str) -> u8 {
    match classification {
        "public" => 0,
        "internal" => 1,
        "confidential" => 2,
        "pii" => 3,
        _ => 4,
    }
}

/// Collects findings while comparing.
#[derive(Default)]
struct Findings {
    high: Vec<String>,
    low: Vec<String>,
}

impl Findings {
    fn high(&mut self, why: String) {
        self.high.push(why);
    }
    fn low(&mut self, why: String) {
        self.low.push(why);
    }
}

/// Classifies the change from `old` (none: the first version) to `new`.
pub fn classify(old: Option<&CompiledPolicies>, new: &CompiledPolicies) -> ChangeRisk {
    let Some(old) = old else {
        return ChangeRisk {
            class: RiskClass::High,
            reasons: vec!["first policy version: everything it grants is new".to_owned()],
        };
    };
    let mut f = Findings::default();
    registry(&old.registry, &new.registry, &mut f);
    cedar(old, new, &mut f);
    if old
        .bundle
        .files
        .iter()
        .any(|(k, v)| k.starts_with("tests/") && new.bundle.files.get(k) != Some(v))
        || new
            .bundle
            .files
            .keys()
            .any(|k| k.starts_with("tests/") && !old.bundle.files.contains_key(k))
    {
        f.low("test cases changed".to_owned());
    }
    if f.high.is_empty() {
        ChangeRisk {
            class: RiskClass::Low,
            reasons: if f.low.is_empty() {
                vec!["no change to what is enforced".to_owned()]
            } else {
                f.low
            },
        }
    } else {
        ChangeRisk {
            class: RiskClass::High,
            reasons: f.high,
        }
    }
}

fn by_id<T>(items: &[T], id: impl Fn(&T) -> &str) -> BTreeMap<&str, &T> {
    items.iter().map(|i| (id(i), i)).collect()
}

/// Compares two lists of entries by id: `added` and `changed` decide.
fn entries<T: PartialEq>(
    kind: &str,
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> &str,
    f: &mut Findings,
    mut added: impl FnMut(&T, &mut Findings),
    mut changed: impl FnMut(&T, &T, &mut Findings),
) {
    let (o, n) = (by_id(old, &id), by_id(new, &id));
    for (key, before) in &o {
        match n.get(key) {
            None => f.low(format!("{kind} {key} removed")),
            Some(after) if after != before => changed(before, after, f),
            Some(_) => {}
        }
    }
    for (key, item) in &n {
        if !o.contains_key(key) {
            added(item, f);
        }
    }
}

/// Every top-level field whose value differs, as JSON.
fn changed_fields<T: Serialize>(a: &T, b: &T) -> BTreeSet<String> {
    let (a, b) = (
        serde_json::to_value(a).unwrap_or(Value::Null),
        serde_json::to_value(b).unwrap_or(Value::Null),
    );
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect(),
        _ => BTreeSet::from(["value".to_owned()]),
    }
}

/// Fields a rule above did not account for are high risk: a field added to
/// the registry later is reviewed until a rule says otherwise.
fn unknown(kind: &str, id: &str, fields: BTreeSet<String>, f: &mut Findings) {
    for field in fields {
        f.high(format!("{kind} {id}: `{field}` changed"));
    }
}

fn registry(old: &Registry, new: &Registry, f: &mut Findings) {
    entries(
        "agent",
        &old.agents,
        &new.agents,
        |a| &a.id,
        f,
        |a, f| {
            if a.grants.is_empty() {
                f.low(format!("agent {} added, with no grants", a.id));
            } else {
                let tools: Vec<&str> = a.grants.iter().map(|g| g.tool.as_str()).collect();
                f.high(format!(
                    "agent {} added, granted {}",
                    a.id,
                    tools.join(", ")
                ));
            }
        },
        agent,
    );
    entries("tool", &old.tools, &new.tools, |t| &t.id, f, new_tool, tool);
    entries("role", &old.roles, &new.roles, |r| &r.id, f, new_role, role);
    entries(
        "budget",
        &old.budgets,
        &new.budgets,
        |b| &b.id,
        f,
        |b, f| f.low(format!("budget {} added", b.id)),
        budget,
    );
    // A removed budget no longer limits anything.
    for b in &old.budgets {
        if !new.budgets.iter().any(|n| n.id == b.id) {
            f.high(format!("budget {} removed", b.id));
        }
    }
    entries(
        "server",
        &old.servers,
        &new.servers,
        |s| &s.id,
        f,
        |s, f| f.low(format!("server {} added", s.id)),
        server,
    );
    let (a, b) = (old.change_review(), new.change_review());
    for env in &a.environments {
        if !b.environments.contains(env) {
            f.high(format!("change review no longer required in {env}"));
        }
    }
    if a.reviewers_group != b.reviewers_group {
        f.high(format!(
            "policy changes reviewed by {} instead of {}",
            b.reviewers_group, a.reviewers_group
        ));
    }
    for env in &b.environments {
        if !a.environments.contains(env) {
            f.low(format!("change review now required in {env}"));
        }
    }
}

fn agent(a: &AgentSpec, b: &AgentSpec, f: &mut Findings) {
    let id = &a.id;
    let mut fields = changed_fields(a, b);
    for field in ["description", "owner", "version"] {
        if fields.remove(field) {
            f.low(format!("agent {id}: {field} changed"));
        }
    }
    if fields.remove("grants") {
        let old: BTreeMap<&str, _> = a.grants.iter().map(|g| (g.tool.as_str(), g)).collect();
        for g in &b.grants {
            match old.get(g.tool.as_str()) {
                None => f.high(format!("agent {id} granted {}", g.tool)),
                Some(before) => {
                    let ceiling = |c: Option<crate::model::Risk>, agent: crate::model::Risk| {
                        c.map_or(agent, |c| c.min(agent))
                    };
                    let (was, now) = (
                        ceiling(before.risk_ceiling, a.risk_ceiling),
                        ceiling(g.risk_ceiling, b.risk_ceiling),
                    );
                    if now > was {
                        f.high(format!(
                            "agent {id}: risk ceiling for {} raised from {was} to {now}",
                            g.tool
                        ));
                    }
                }
            }
        }
        for g in &a.grants {
            if !b.grants.iter().any(|n| n.tool == g.tool) {
                f.low(format!("agent {id}: grant of {} removed", g.tool));
            }
        }
    }
    if fields.remove("risk_ceiling") {
        if b.risk_ceiling > a.risk_ceiling {
            f.high(format!(
                "agent {id}: risk ceiling raised from {} to {}",
                a.risk_ceiling, b.risk_ceiling
            ));
        } else {
            f.low(format!("agent {id}: risk ceiling lowered"));
        }
    }
    for (field, old, new) in [
        ("principals", &a.principals, &b.principals),
        ("oauth_clients", &a.oauth_clients, &b.oauth_clients),
    ] {
        if fields.remove(field) {
            for p in new.iter().filter(|p| !old.contains(p)) {
                f.high(format!("agent {id}: {field} gains {p}"));
            }
            if old.iter().any(|p| !new.contains(p)) {
                f.low(format!("agent {id}: {field} removed"));
            }
        }
    }
    if fields.remove("status") {
        if b.status == AgentStatus::Active {
            f.high(format!("agent {id} enabled"));
        } else {
            f.low(format!("agent {id} disabled"));
        }
    }
    if fields.remove("run_limits") {
        run_limits(id, a.run_limits.as_ref(), b.run_limits.as_ref(), f);
    }
    if fields.remove("anomaly") {
        let (was, now) = (
            a.anomaly.clone().unwrap_or_default(),
            b.anomaly.clone().unwrap_or_default(),
        );
        if now.threshold_percent > was.threshold_percent || (was.auto_disable && !now.auto_disable)
        {
            f.high(format!("agent {id}: anomaly watch loosened"));
        } else {
            f.low(format!("agent {id}: anomaly watch tightened"));
        }
    }
    // Environment and team change which Cedar policies match the agent.
    unknown("agent", id, fields, f);
}

/// A limit that was set and is now higher or gone is looser.
fn looser<T: PartialOrd>(old: Option<T>, new: Option<T>) -> bool {
    match (old, new) {
        (Some(_), None) => true,
        (Some(o), Some(n)) => n > o,
        (None, _) => false,
    }
}

fn run_limits(id: &str, a: Option<&RunLimits>, b: Option<&RunLimits>, f: &mut Findings) {
    let (a, b) = (
        a.cloned().unwrap_or_default(),
        b.cloned().unwrap_or_default(),
    );
    let mut loosened = Vec::new();
    if looser(a.max_calls, b.max_calls) {
        loosened.push("max_calls");
    }
    if looser(a.max_seconds, b.max_seconds) {
        loosened.push("max_seconds");
    }
    if looser(a.max_cost_usd, b.max_cost_usd) {
        loosened.push("max_cost_usd");
    }
    if looser(a.max_tokens, b.max_tokens) {
        loosened.push("max_tokens");
    }
    if loosened.is_empty() {
        f.low(format!("agent {id}: run limits tightened"));
    } else {
        f.high(format!(
            "agent {id}: run limits loosened ({})",
            loosened.join(", ")
        ));
    }
}

fn new_tool(t: &ToolSpec, f: &mut Findings) {
    if matches!(t.classification.as_str(), "pii" | "confidential") {
        f.high(format!(
            "tool {} added, touching {} data",
            t.id, t.classification
        ));
    } else {
        f.low(format!("tool {} added", t.id));
    }
}

fn tool(a: &ToolSpec, b: &ToolSpec, f: &mut Findings) {
    let id = &a.id;
    let mut fields = changed_fields(a, b);
    if fields.remove("description") {
        f.low(format!("tool {id}: description changed"));
    }
    if fields.remove("allowed_roles") {
        for r in b
            .allowed_roles
            .iter()
            .filter(|r| !a.allowed_roles.contains(r))
        {
            f.high(format!("tool {id}: role {r} allowed"));
        }
        if a.allowed_roles.iter().any(|r| !b.allowed_roles.contains(r)) {
            f.low(format!("tool {id}: roles removed"));
        }
    }
    if fields.remove("risk") {
        if b.risk < a.risk {
            f.high(format!(
                "tool {id}: risk lowered from {} to {}",
                a.risk, b.risk
            ));
        } else {
            f.low(format!("tool {id}: risk raised"));
        }
    }
    if fields.remove("classification") {
        if sensitivity(&b.classification) < sensitivity(&a.classification)
            || sensitivity(&b.classification) == 4
        {
            f.high(format!(
                "tool {id}: classification changed from {} to {}",
                a.classification, b.classification
            ));
        } else {
            f.low(format!("tool {id}: classification more sensitive"));
        }
    }
    if fields.remove("rate_limit") {
        let loosened = match (&a.rate_limit, &b.rate_limit) {
            (Some(_), None) => true,
            (Some(o), Some(n)) => {
                n.per != o.per
                    || u128::from(n.limit) * u128::from(o.window_seconds)
                        > u128::from(o.limit) * u128::from(n.window_seconds)
                    || n.limit > o.limit
            }
            (None, _) => false,
        };
        if loosened {
            f.high(format!("tool {id}: rate limit loosened or removed"));
        } else {
            f.low(format!("tool {id}: rate limit tightened"));
        }
    }
    if fields.remove("cost_usd") {
        // A lower cost lets budgets last longer.
        if a.cost_usd.is_some() && (b.cost_usd.is_none() || b.cost_usd < a.cost_usd) {
            f.high(format!("tool {id}: cost lowered or removed"));
        } else {
            f.low(format!("tool {id}: cost raised"));
        }
    }
    if fields.remove("approval") || a.requires_approval() != b.requires_approval() {
        if a.requires_approval() && !b.requires_approval() {
            f.high(format!("tool {id}: human approval no longer required"));
        }
        let group = |t: &ToolSpec| t.approval.as_ref().and_then(|x| x.approver_group.clone());
        if b.requires_approval() && group(a) != group(b) {
            f.high(format!(
                "tool {id}: approved by {} instead of {}",
                group(b).unwrap_or_else(|| "nobody".into()),
                group(a).unwrap_or_else(|| "nobody".into())
            ));
        }
        f.low(format!("tool {id}: approval settings changed"));
    }
    if fields.remove("response_filter") {
        for p in a
            .response_filter
            .iter()
            .filter(|p| !b.response_filter.contains(p))
        {
            f.high(format!("tool {id}: response filter no longer removes {p}"));
        }
        f.low(format!("tool {id}: response filter changed"));
    }
    if fields.remove("arguments") {
        for (name, spec) in &b.arguments {
            match a.arguments.get(name) {
                None => f.high(format!("tool {id}: argument {name} accepted")),
                Some(before) if before != spec => {
                    let masked_before = a.masks(name);
                    let loosened = before.ty != spec.ty
                        || (before.required && !spec.required)
                        || (masked_before && !b.masks(name));
                    if loosened {
                        f.high(format!("tool {id}: argument {name} loosened"));
                    } else {
                        f.low(format!("tool {id}: argument {name} tightened"));
                    }
                }
                Some(_) => {}
            }
        }
        if a.arguments.keys().any(|k| !b.arguments.contains_key(k)) {
            f.low(format!("tool {id}: arguments removed"));
        }
    }
    // category, server, upstream_tool, idempotency and anything new.
    unknown("tool", id, fields, f);
}

fn new_role(r: &RoleSpec, f: &mut Findings) {
    if r.inherits.is_empty() {
        f.low(format!("role {} added", r.id));
    } else {
        f.high(format!(
            "role {} added, inheriting {}",
            r.id,
            r.inherits.join(", ")
        ));
    }
}

fn role(a: &RoleSpec, b: &RoleSpec, f: &mut Findings) {
    for i in b.inherits.iter().filter(|i| !a.inherits.contains(i)) {
        f.high(format!("role {} now inherits {i}", a.id));
    }
    if a.inherits.iter().any(|i| !b.inherits.contains(i)) {
        f.low(format!("role {}: inheritance removed", a.id));
    }
}

fn budget(a: &BudgetSpec, b: &BudgetSpec, f: &mut Findings) {
    if b.per != a.per
        || b.max_cost_usd > a.max_cost_usd
        || u128::from(b.max_cost_usd.0) * u128::from(a.window_seconds)
            > u128::from(a.max_cost_usd.0) * u128::from(b.window_seconds)
    {
        f.high(format!("budget {} loosened", a.id));
    } else {
        f.low(format!("budget {} tightened", a.id));
    }
}

fn server(a: &ServerSpec, b: &ServerSpec, f: &mut Findings) {
    let mut fields = changed_fields(a, b);
    for field in ["description", "timeout_seconds"] {
        if fields.remove(field) {
            f.low(format!("server {}: {field} changed", a.id));
        }
    }
    unknown("server", &a.id, fields, f);
}

/// A policy's meaning: its JSON form without annotations, which only name
/// and explain it.
fn body(p: &cedar_policy::Policy) -> Value {
    let mut v = p.to_json().unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("annotations");
    }
    v
}

fn cedar(old: &CompiledPolicies, new: &CompiledPolicies, f: &mut Findings) {
    let collect = |c: &CompiledPolicies, effect: cedar_policy::Effect| -> Vec<(String, Value)> {
        c.policies
            .policies()
            .filter(|p| p.effect() == effect && !p.id().to_string().starts_with("base:"))
            .map(|p| (p.id().to_string(), body(p)))
            .collect()
    };
    let place = |c: &CompiledPolicies, id: &str| {
        c.sources
            .get(id)
            .map_or_else(|| id.to_owned(), |(file, _)| format!("`{id}` in {file}"))
    };
    let (old_forbids, new_forbids) = (
        collect(old, cedar_policy::Effect::Forbid),
        collect(new, cedar_policy::Effect::Forbid),
    );
    for (id, b) in &old_forbids {
        if !new_forbids.iter().any(|(_, n)| n == b) {
            let why = if new.shadow_ids.contains(id) {
                "made log-only"
            } else {
                "removed or changed"
            };
            f.high(format!("forbid {} {why}", place(old, id)));
        }
    }
    for (id, b) in &new_forbids {
        if !old_forbids.iter().any(|(_, o)| o == b) {
            f.low(format!("forbid {} added", place(new, id)));
        }
    }
    let (old_permits, new_permits) = (
        collect(old, cedar_policy::Effect::Permit),
        collect(new, cedar_policy::Effect::Permit),
    );
    for (id, b) in &new_permits {
        if !old_permits.iter().any(|(_, o)| o == b) {
            f.high(format!("permit {} added or changed", place(new, id)));
        }
    }
    for (id, b) in &old_permits {
        if !new_permits.iter().any(|(_, n)| n == b) {
            f.low(format!("permit {} removed", place(old, id)));
        }
    }
    if old.shadow_ids != new.shadow_ids {
        f.low("log-only policies changed".to_owned());
    }
    let annotations = |c: &CompiledPolicies| -> Vec<String> {
        c.sources.values().map(|(_, text)| text.clone()).collect()
    };
    if f.high.is_empty() && annotations(old) != annotations(new) {
        f.low("policy annotations or layout changed".to_owned());
    }
}

#[cfg(test)]
mod tests;
