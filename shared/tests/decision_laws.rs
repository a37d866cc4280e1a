//! Property tests of the decision engine on random registries, policies and
//! requests: the laws every decision obeys, checked against a plain-Rust
//! model of the base policies and of the generated team policies, and a
//! differential test of per-request policy selection against the whole set.
//!
//! The model is written from the documented meaning of `base.cedar` and of
//! the generated policies, independently of the engine, so that a mistake in
//! either shows up as a disagreement.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use governance::model::{
    AgentSpec, AgentStatus, ApprovalSpec, ArgumentSpec, ArgumentType, Category, Decision,
    Environment, GrantSpec, ReasonCode, Registry, Risk, RoleSpec, ToolSpec, UserContext,
};
use governance::policy::{
    compile, DecisionInput, Evaluation, PolicyBundle, PolicyEngine, PolicyVersionRef,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

// ---------------------------------------------------------------------------
// Vocabulary. Small, so that random requests often hit what policies name.

const TEAMS: [&str; 4] = ["payments", "support", "platform-ops", "nobody-team"];
/// Roles a registry defines; a request may also carry [`STRANGER`].
const ROLES: [&str; 5] = ["viewer", "clerk", "manager", "auditor", "admin"];
/// A role no registry defines, which role expansion must pass through unharmed.
const STRANGER: &str = "contractor";
/// The id requests use for an agent that is not registered; policies may name it too.
const GHOST_AGENT: &str = "ghost-agent";
const GHOST_TOOL: &str = "no_such_tool";
const ENVIRONMENTS: [Environment; 3] = [Environment::Dev, Environment::Stage, Environment::Prod];
const ORGANIZATIONS: [&str; 2] = ["acme", "globex"];

/// Requests per generated registry.
const REQUESTS_PER_CASE: usize = 20;

fn agent_id(i: usize) -> String {
    // Ids with `/`, `.`, `:` and `@` exercise the index's parsing of entity ids.
    match i % 3 {
        0 => format!("agent-{i}"),
        1 => format!("team/agent.{i}"),
        _ => format!("svc:agent@{i}"),
    }
}

fn tool_id(i: usize) -> String {
    match i % 3 {
        0 => format!("tool_{i}"),
        1 => format!("crm:tool.{i}"),
        _ => format!("svc/tool-{i}@v2"),
    }
}

// ---------------------------------------------------------------------------
// Generated worlds: a compact description that shrinks well, resolved into a
// registry and Cedar text.

#[derive(Debug, Clone)]
struct ToolGen {
    category: Category,
    risk: Risk,
    roles: Vec<usize>,
    approval: Option<bool>,
    /// `Some(required)`: the tool declares a `long` argument `amount`.
    amount: Option<bool>,
    /// The tool declares an optional `string` argument `note`.
    note: bool,
    /// The tool declares an optional `bool` argument `urgent`.
    urgent: bool,
    /// The tool declares an optional `decimal` argument `price`.
    price: bool,
}

#[derive(Debug, Clone)]
struct AgentGen {
    team: usize,
    environment: Environment,
    status: AgentStatus,
    ceiling: Risk,
    grants: Vec<(usize, Option<Risk>)>,
}

#[derive(Debug, Clone)]
enum ScopeGen {
    Global,
    /// Index modulo the registered agents.
    Agent(usize),
    Team(usize),
    TeamIs(usize),
    Tool(usize),
    Resource(usize),
    Category(Category),
    ToolOrCategory(usize, Category),
    AgentTool(usize, usize),
    TeamCategory(usize, Category),
}

#[derive(Debug, Clone, Copy)]
enum Cond {
    Always,
    RiskAtLeast(i64),
    UserHasRole(usize),
    CeilingBelow(i64),
    ToolRiskAtLeast(i64),
    EnvironmentIs(Environment),
    DeclaresRisk,
    HourBefore(i64),
    Weekend,
    Organization,
}

#[derive(Debug, Clone)]
struct RuleGen {
    forbid: bool,
    scope: ScopeGen,
    cond: Cond,
    unless: bool,
    reason: Option<ReasonCode>,
}

/// A forbid on a tool that declares `amount`, possibly limited to one team.
#[derive(Debug, Clone)]
struct ArgRuleGen {
    tool: usize,
    team: Option<usize>,
    threshold: i64,
    /// `amount * 2 > N`: overflows for huge amounts, which must deny.
    doubled: bool,
}

#[derive(Debug, Clone)]
struct WorldGen {
    inherits: Vec<Option<usize>>,
    tools: Vec<ToolGen>,
    agents: Vec<AgentGen>,
    rules: Vec<RuleGen>,
    arg_rules: Vec<ArgRuleGen>,
}

fn risk() -> impl Strategy<Value = Risk> {
    prop::sample::select(Risk::ALL.to_vec())
}

fn category() -> impl Strategy<Value = Category> {
    prop::sample::select(Category::ALL.to_vec())
}

fn environment() -> impl Strategy<Value = Environment> {
    prop::sample::select(ENVIRONMENTS.to_vec())
}

fn tool_gen() -> impl Strategy<Value = ToolGen> {
    (
        category(),
        risk(),
        // Rarely no role at all: such a tool is callable for nobody.
        prop_oneof![1 => Just(Vec::new()), 7 => prop::collection::vec(0..ROLES.len(), 1..3)],
        prop::option::weighted(0.3, any::<bool>()),
        prop::option::weighted(0.5, any::<bool>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(category, risk, roles, approval, amount, note, urgent, price)| ToolGen {
                category,
                risk,
                roles,
                approval,
                amount,
                note,
                urgent,
                price,
            },
        )
}

fn agent_gen() -> impl Strategy<Value = AgentGen> {
    (
        0..3usize,
        environment(),
        prop::sample::select(vec![
            AgentStatus::Active,
            AgentStatus::Active,
            AgentStatus::Active,
            AgentStatus::Disabled,
        ]),
        // Ceilings lean high, so that risk checks pass often enough to reach the rest.
        prop::sample::select(vec![
            Risk::Low,
            Risk::Medium,
            Risk::High,
            Risk::High,
            Risk::Critical,
            Risk::Critical,
        ]),
        prop::collection::vec((0..8usize, prop::option::weighted(0.25, risk())), 0..5),
    )
        .prop_map(|(team, environment, status, ceiling, grants)| AgentGen {
            team,
            environment,
            status,
            ceiling,
            grants,
        })
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        2 => Just(Cond::Always),
        1 => (1..=4i64).prop_map(Cond::RiskAtLeast),
        1 => (0..ROLES.len()).prop_map(Cond::UserHasRole),
        1 => (1..=4i64).prop_map(Cond::CeilingBelow),
        1 => (1..=4i64).prop_map(Cond::ToolRiskAtLeast),
        1 => environment().prop_map(Cond::EnvironmentIs),
        1 => Just(Cond::DeclaresRisk),
        1 => (0..24i64).prop_map(Cond::HourBefore),
        1 => Just(Cond::Weekend),
        1 => Just(Cond::Organization),
    ]
}

fn scope_gen() -> impl Strategy<Value = ScopeGen> {
    prop_oneof![
        Just(ScopeGen::Global),
        (0..8usize).prop_map(ScopeGen::Agent),
        (0..TEAMS.len()).prop_map(ScopeGen::Team),
        (0..TEAMS.len()).prop_map(ScopeGen::TeamIs),
        (0..8usize).prop_map(ScopeGen::Tool),
        (0..8usize).prop_map(ScopeGen::Resource),
        category().prop_map(ScopeGen::Category),
        (0..8usize, category()).prop_map(|(t, c)| ScopeGen::ToolOrCategory(t, c)),
        (0..8usize, 0..8usize).prop_map(|(a, t)| ScopeGen::AgentTool(a, t)),
        (0..TEAMS.len(), category()).prop_map(|(t, c)| ScopeGen::TeamCategory(t, c)),
    ]
}

fn rule_gen() -> impl Strategy<Value = RuleGen> {
    (
        prop::bool::weighted(0.75),
        scope_gen(),
        cond(),
        any::<bool>(),
        prop::option::weighted(
            0.2,
            prop::sample::select(vec![
                ReasonCode::ForbiddenByPolicy,
                ReasonCode::RiskExceedsPolicy,
                ReasonCode::EnvironmentMismatch,
            ]),
        ),
    )
        .prop_map(|(forbid, scope, cond, unless, reason)| RuleGen {
            forbid,
            scope,
            cond,
            unless,
            reason,
        })
}

fn amount_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => -100..2_000i64,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => (i64::MAX / 2 - 3)..(i64::MAX / 2 + 3),
    ]
}

fn arg_rule_gen() -> impl Strategy<Value = ArgRuleGen> {
    (
        0..8usize,
        prop::option::weighted(0.3, 0..TEAMS.len()),
        -10..1_500i64,
        prop::bool::weighted(0.3),
    )
        .prop_map(|(tool, team, threshold, doubled)| ArgRuleGen {
            tool,
            team,
            threshold,
            doubled,
        })
}

fn world_gen() -> impl Strategy<Value = WorldGen> {
    (
        prop::collection::vec(prop::option::weighted(0.4, 0..ROLES.len()), ROLES.len()),
        prop::collection::vec(tool_gen(), 1..7),
        prop::collection::vec(agent_gen(), 1..6),
        prop::collection::vec(rule_gen(), 0..7),
        prop::collection::vec(arg_rule_gen(), 0..3),
    )
        .prop_map(|(inherits, tools, agents, rules, arg_rules)| WorldGen {
            inherits,
            tools,
            agents,
            rules,
            arg_rules,
        })
}

// ---------------------------------------------------------------------------
// Resolved policies: Cedar text and their meaning in plain Rust.

#[derive(Debug, Clone)]
enum PrincipalScope {
    Any,
    Agent(String),
    InTeam(String),
    IsAgentInTeam(String),
}

#[derive(Debug, Clone)]
enum ActionRef {
    Tool(String),
    Category(Category),
}

#[derive(Debug, Clone)]
enum ActionScope {
    Any,
    Eq(String),
    InGroup(Category),
    InList(Vec<ActionRef>),
}

#[derive(Debug, Clone)]
enum Condition {
    Simple(Cond),
    Amount {
        optional: bool,
        doubled: bool,
        threshold: i64,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    forbid: bool,
    principal: PrincipalScope,
    action: ActionScope,
    resource: Option<String>,
    condition: Condition,
    unless: bool,
    reason: Option<ReasonCode>,
}

/// What a policy did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Satisfied,
    NotSatisfied,
    Error,
}

fn cond_text(c: Cond) -> Option<String> {
    Some(match c {
        Cond::Always => return None,
        Cond::RiskAtLeast(k) => format!("context.risk >= {k}"),
        Cond::UserHasRole(r) => format!("context.user.roles.contains(\"{}\")", role_name(r)),
        Cond::CeilingBelow(k) => format!("principal.risk_ceiling < {k}"),
        Cond::ToolRiskAtLeast(k) => format!("resource.risk >= {k}"),
        Cond::EnvironmentIs(e) => format!("context.environment == \"{e}\""),
        Cond::DeclaresRisk => "context has requested_risk".to_owned(),
        Cond::HourBefore(h) => format!("context.now.hour_utc < {h}"),
        Cond::Weekend => "context.now.weekday >= 6".to_owned(),
        Cond::Organization => {
            format!(
                "context.user has organization && context.user.organization == \"{}\"",
                ORGANIZATIONS[0]
            )
        }
    })
}

fn role_name(i: usize) -> &'static str {
    ROLES.get(i % ROLES.len()).copied().unwrap_or(STRANGER)
}

fn team_name(i: usize) -> &'static str {
    TEAMS.get(i % TEAMS.len()).copied().unwrap_or("payments")
}

impl Rule {
    fn cedar(&self) -> String {
        let mut s = format!("@id(\"{}\")\n", self.id);
        if let Some(r) = self.reason {
            s.push_str(&format!("@reason(\"{}\")\n", r.as_str()));
        }
        s.push_str(if self.forbid { "forbid (" } else { "permit (" });
        s.push_str(&match &self.principal {
            PrincipalScope::Any => "principal".to_owned(),
            PrincipalScope::Agent(a) => format!("principal == Agent::\"{a}\""),
            PrincipalScope::InTeam(t) => format!("principal in Team::\"{t}\""),
            PrincipalScope::IsAgentInTeam(t) => format!("principal is Agent in Team::\"{t}\""),
        });
        s.push_str(", ");
        let action_ref = |r: &ActionRef| match r {
            ActionRef::Tool(t) => format!("Action::\"{t}\""),
            ActionRef::Category(c) => format!("Action::\"category:{}\"", c.as_str()),
        };
        s.push_str(&match &self.action {
            ActionScope::Any => "action".to_owned(),
            ActionScope::Eq(t) => format!("action == Action::\"{t}\""),
            ActionScope::InGroup(c) => format!("action in Action::\"category:{}\"", c.as_str()),
            ActionScope::InList(list) => {
                format!(
                    "action in [{}]",
                    list.iter().map(action_ref).collect::<Vec<_>>().join(", ")
                )
            }
        });
        s.push_str(", ");
        s.push_str(&match &self.resource {
            None => "resource".to_owned(),
            Some(t) => format!("resource == Tool::\"{t}\""),
        });
        s.push(')');
        let body = match self.condition {
            Condition::Simple(c) => cond_text(c),
            Condition::Amount {
                optional,
                doubled,
                threshold,
            } => {
                let value = if doubled {
                    "context.arguments.amount * 2"
                } else {
                    "context.arguments.amount"
                };
                let test = format!("{value} > {threshold}");
                Some(if optional {
                    format!("context.arguments has amount && {test}")
                } else {
                    test
                })
            }
        };
        if let Some(body) = body {
            s.push_str(&format!(
                "\n{} {{ {body} }}",
                if self.unless { "unless" } else { "when" }
            ));
        }
        s.push_str(";\n");
        s
    }

    fn evaluate(&self, c: &Ctx<'_>) -> Outcome {
        let principal = match &self.principal {
            PrincipalScope::Any => true,
            PrincipalScope::Agent(a) => *a == c.agent.id,
            PrincipalScope::InTeam(t) | PrincipalScope::IsAgentInTeam(t) => *t == c.agent.team,
        };
        let in_ref = |r: &ActionRef| match r {
            ActionRef::Tool(t) => *t == c.tool.id,
            ActionRef::Category(cat) => *cat == c.tool.category,
        };
        let action = match &self.action {
            ActionScope::Any => true,
            ActionScope::Eq(t) => *t == c.tool.id,
            ActionScope::InGroup(cat) => *cat == c.tool.category,
            ActionScope::InList(list) => list.iter().any(in_ref),
        };
        let resource = self.resource.as_ref().is_none_or(|t| *t == c.tool.id);
        if !(principal && action && resource) {
            return Outcome::NotSatisfied;
        }
        let value: Result<bool, ()> = match self.condition {
            Condition::Simple(Cond::Always) => return Outcome::Satisfied,
            Condition::Simple(cond) => Ok(match cond {
                Cond::Always => true,
                Cond::RiskAtLeast(k) => c.risk.level() >= k,
                Cond::UserHasRole(r) => c.roles.contains(role_name(r)),
                Cond::CeilingBelow(k) => c.agent.risk_ceiling.level() < k,
                Cond::ToolRiskAtLeast(k) => c.tool.risk.level() >= k,
                Cond::EnvironmentIs(e) => e == c.environment,
                Cond::DeclaresRisk => c.requested_risk.is_some(),
                Cond::HourBefore(h) => i64::from(c.now.hour()) < h,
                Cond::Weekend => c.now.weekday().number_from_monday() >= 6,
                Cond::Organization => c.organization == ORGANIZATIONS.first().copied(),
            }),
            Condition::Amount {
                optional,
                doubled,
                threshold,
            } => match c.amount {
                // Strict validation forbids reading an optional argument
                // without `has`, so an absent amount means an optional one.
                None => {
                    assert!(optional, "required amount missing from valid arguments");
                    Ok(false)
                }
                Some(a) if doubled => a.checked_mul(2).map(|d| d > threshold).ok_or(()),
                Some(a) => Ok(a > threshold),
            },
        };
        match value {
            Err(()) => Outcome::Error,
            Ok(v) if v != self.unless => Outcome::Satisfied,
            Ok(_) => Outcome::NotSatisfied,
        }
    }
}

struct World {
    registry: Registry,
    rules: Vec<Rule>,
    engine: PolicyEngine,
}

fn resolve(w: &WorldGen) -> (Registry, Vec<Rule>) {
    let roles = w
        .inherits
        .iter()
        .enumerate()
        .map(|(i, parent)| RoleSpec {
            id: role_name(i).to_owned(),
            // Only earlier roles, so the hierarchy has no cycle.
            inherits: parent
                .filter(|&p| p < i)
                .map(|p| vec![role_name(p).to_owned()])
                .unwrap_or_default(),
        })
        .collect();
    let tools: Vec<ToolSpec> = w
        .tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut arguments = BTreeMap::new();
            if let Some(required) = t.amount {
                arguments.insert(
                    "amount".to_owned(),
                    ArgumentSpec {
                        ty: ArgumentType::Long,
                        required,
                        masked: None,
                    },
                );
            }
            for (declared, name, ty) in [
                (t.note, "note", ArgumentType::String),
                (t.urgent, "urgent", ArgumentType::Bool),
                (t.price, "price", ArgumentType::Decimal),
            ] {
                if declared {
                    arguments.insert(
                        name.to_owned(),
                        ArgumentSpec {
                            ty,
                            required: false,
                            masked: None,
                        },
                    );
                }
            }
            let mut allowed: Vec<String> =
                t.roles.iter().map(|&r| role_name(r).to_owned()).collect();
            allowed.dedup();
            ToolSpec {
                id: tool_id(i),
                description: None,
                category: t.category,
                risk: t.risk,
                classification: "internal".to_owned(),
                allowed_roles: allowed,
                rate_limit: None,
                cost_usd: None,
                response_filter: Vec::new(),
                // Every tool names a group: one that needs approval must.
                approval: Some(ApprovalSpec {
                    required: t.approval,
                    approver_group: Some("approvers".to_owned()),
                    timeout_seconds: None,
                }),
                arguments,
                server: None,
                upstream_tool: None,
                idempotency: None,
            }
        })
        .collect();
    let n_tools = tools.len();
    let agents: Vec<AgentSpec> = w
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut seen = BTreeSet::new();
            let grants = a
                .grants
                .iter()
                .filter(|(t, _)| seen.insert(t % n_tools))
                .map(|&(t, risk_ceiling)| GrantSpec {
                    tool: tool_id(t % n_tools),
                    risk_ceiling,
                })
                .collect();
            AgentSpec {
                id: agent_id(i),
                description: None,
                team: team_name(a.team % 3).to_owned(),
                owner: None,
                environment: a.environment,
                status: a.status,
                version: format!("1.0.{i}"),
                risk_ceiling: a.ceiling,
                grants,
                principals: Vec::new(),
                oauth_clients: Vec::new(),
                run_limits: None,
                anomaly: None,
            }
        })
        .collect();
    // Policies name registered agents and teams only: a name the registry
    // does not define is a validation error (see `policy::compile`).
    let n_agents = agents.len().max(1);
    let agent_ref = |i: usize| agent_id(i % n_agents);
    let teams: Vec<String> = agents
        .iter()
        .map(|a| a.team.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let team_ref = |i: usize| {
        teams
            .get(i % teams.len().max(1))
            .cloned()
            .unwrap_or_else(|| team_name(0).to_owned())
    };
    let tool_ref = |i: usize| tool_id(i % n_tools);

    let mut rules = Vec::new();
    for (n, r) in w.rules.iter().enumerate() {
        let (principal, action, resource) = match &r.scope {
            ScopeGen::Global => (PrincipalScope::Any, ActionScope::Any, None),
            ScopeGen::Agent(a) => (PrincipalScope::Agent(agent_ref(*a)), ActionScope::Any, None),
            ScopeGen::Team(t) => (PrincipalScope::InTeam(team_ref(*t)), ActionScope::Any, None),
            ScopeGen::TeamIs(t) => (
                PrincipalScope::IsAgentInTeam(team_ref(*t)),
                ActionScope::Any,
                None,
            ),
            ScopeGen::Tool(t) => (PrincipalScope::Any, ActionScope::Eq(tool_ref(*t)), None),
            ScopeGen::Resource(t) => (PrincipalScope::Any, ActionScope::Any, Some(tool_ref(*t))),
            ScopeGen::Category(c) => (PrincipalScope::Any, ActionScope::InGroup(*c), None),
            ScopeGen::ToolOrCategory(t, c) => (
                PrincipalScope::Any,
                ActionScope::InList(vec![ActionRef::Tool(tool_ref(*t)), ActionRef::Category(*c)]),
                None,
            ),
            ScopeGen::AgentTool(a, t) => (
                PrincipalScope::Agent(agent_ref(*a)),
                ActionScope::Eq(tool_ref(*t)),
                None,
            ),
            ScopeGen::TeamCategory(t, c) => (
                PrincipalScope::InTeam(team_ref(*t)),
                ActionScope::InGroup(*c),
                None,
            ),
        };
        rules.push(Rule {
            id: format!("custom:{n}"),
            forbid: r.forbid,
            principal,
            action,
            resource,
            condition: Condition::Simple(r.cond),
            unless: r.unless,
            reason: if r.forbid { r.reason } else { None },
        });
    }
    let amount_tools: Vec<&ToolSpec> = tools
        .iter()
        .filter(|t| t.arguments.contains_key("amount"))
        .collect();
    if !amount_tools.is_empty() {
        for (n, r) in w.arg_rules.iter().enumerate() {
            let Some(tool) = amount_tools.get(r.tool % amount_tools.len()) else {
                continue;
            };
            let optional = tool.arguments.get("amount").is_some_and(|a| !a.required);
            rules.push(Rule {
                id: format!("limit:{n}"),
                forbid: true,
                principal: r
                    .team
                    .map_or(PrincipalScope::Any, |t| PrincipalScope::InTeam(team_ref(t))),
                action: ActionScope::Eq(tool.id.clone()),
                resource: None,
                condition: Condition::Amount {
                    optional,
                    doubled: r.doubled,
                    threshold: r.threshold,
                },
                unless: false,
                reason: None,
            });
        }
    }
    (
        Registry {
            roles,
            tools,
            agents,
            budgets: Vec::new(),
            servers: Vec::new(),
            change_review: None,
        },
        rules,
    )
}

fn build(w: &WorldGen) -> Result<World, TestCaseError> {
    let (registry, rules) = resolve(w);
    let yaml = serde_json::to_string_pretty(&registry)
        .map_err(|e| TestCaseError::fail(format!("cannot serialize the registry: {e}")))?;
    let mut bundle = PolicyBundle::default();
    bundle.files.insert("registry.yaml".to_owned(), yaml);
    // Two files, so that policies from several files meet in one set.
    for (n, rule) in rules.iter().enumerate() {
        let file = if n % 2 == 0 {
            "custom/a.cedar"
        } else {
            "custom/b.cedar"
        };
        bundle
            .files
            .entry(file.to_owned())
            .or_default()
            .push_str(&rule.cedar());
    }
    let compiled = compile(&bundle).map_err(|diags| {
        TestCaseError::fail(format!(
            "generator bug: the generated bundle does not compile:\n{}\n--- bundle ---\n{}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            bundle
                .files
                .iter()
                .map(|(p, t)| format!("# {p}\n{t}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ))
    })?;
    let version = PolicyVersionRef {
        id: "prop".to_owned(),
        content_hash: compiled.content_hash.clone(),
    };
    let engine = PolicyEngine::new(compiled, version)
        .map_err(|e| TestCaseError::fail(format!("engine cannot be built: {e:?}")))?;
    Ok(World {
        registry,
        rules,
        engine,
    })
}

// ---------------------------------------------------------------------------
// Requests.

#[derive(Debug, Clone)]
enum ToolPick {
    /// One of the agent's grants (any tool when it has none).
    Granted(usize),
    Any(usize),
    Unknown,
}

/// A decimal argument, written as JSON: `int.frac` (frac of 0 to 6 digits,
/// so that some have more than the 4 that Cedar's decimals hold), or a
/// number far outside their range.
#[derive(Debug, Clone)]
enum PriceGen {
    Written { int: i64, frac: String },
    Huge,
}

impl PriceGen {
    fn json(&self) -> Value {
        let text = match self {
            PriceGen::Written { int, frac } if frac.is_empty() => int.to_string(),
            PriceGen::Written { int, frac } => format!("{int}.{frac}"),
            PriceGen::Huge => "1e20".to_owned(),
        };
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

fn price_gen() -> impl Strategy<Value = PriceGen> {
    prop_oneof![
        12 => (-1_000_000i64..1_000_000, "[0-9]{0,6}")
            .prop_map(|(int, frac)| PriceGen::Written { int, frac }),
        1 => Just(PriceGen::Huge),
    ]
}

#[derive(Debug, Clone)]
enum ArgsGen {
    Valid {
        amount: i64,
        optional: bool,
        urgent: bool,
        price: PriceGen,
    },
    Undeclared,
    WrongType,
    MissingRequired,
    Null,
    NotAnObject,
}

#[derive(Debug, Clone)]
struct RequestGen {
    /// `None`: the unregistered ghost agent.
    agent: Option<usize>,
    tool: ToolPick,
    roles: Vec<usize>,
    /// Adds one of the tool's allowed roles, so that role checks often pass.
    allowed_role: Option<usize>,
    requested_risk: Option<Risk>,
    /// Use the agent's own environment, so that environment checks often pass.
    same_environment: bool,
    environment: Environment,
    args: ArgsGen,
    day: u8,
    hour: u8,
    organization: Option<usize>,
}

fn request_gen() -> impl Strategy<Value = RequestGen> {
    let tool = prop_oneof![
        6 => (0..8usize).prop_map(ToolPick::Granted),
        3 => (0..8usize).prop_map(ToolPick::Any),
        1 => Just(ToolPick::Unknown),
    ];
    let args = prop_oneof![
        20 => (amount_value(), any::<bool>(), any::<bool>(), price_gen()).prop_map(
            |(amount, optional, urgent, price)| ArgsGen::Valid { amount, optional, urgent, price }
        ),
        1 => Just(ArgsGen::Undeclared),
        1 => Just(ArgsGen::WrongType),
        1 => Just(ArgsGen::MissingRequired),
        1 => Just(ArgsGen::Null),
        1 => Just(ArgsGen::NotAnObject),
    ];
    (
        prop::option::weighted(0.93, 0..8usize),
        tool,
        prop::collection::vec(0..=ROLES.len(), 0..3),
        prop::option::weighted(0.85, 0..4usize),
        prop::option::weighted(0.3, risk()),
        prop::bool::weighted(0.85),
        environment(),
        args,
        (0..7u8, 0..24u8),
        prop::option::weighted(0.7, 0..ORGANIZATIONS.len()),
    )
        .prop_map(
            |(
                agent,
                tool,
                roles,
                allowed_role,
                requested_risk,
                same_environment,
                environment,
                args,
                (day, hour),
                organization,
            )| {
                RequestGen {
                    agent,
                    tool,
                    roles,
                    allowed_role,
                    requested_risk,
                    same_environment,
                    environment,
                    args,
                    day,
                    hour,
                    organization,
                }
            },
        )
}

/// A request made concrete against one registry.
#[derive(Debug, Clone)]
struct Req {
    agent_id: String,
    tool_id: String,
    user: UserContext,
    requested_risk: Option<Risk>,
    environment: Environment,
    arguments: Value,
    now: OffsetDateTime,
}

impl Req {
    fn input(&self) -> DecisionInput<'_> {
        DecisionInput {
            agent_id: &self.agent_id,
            user: &self.user,
            tool_id: &self.tool_id,
            requested_risk: self.requested_risk,
            arguments: &self.arguments,
            session_id: Some("session-1"),
            environment: self.environment,
            now: self.now,
        }
    }
}

fn concretize(reg: &Registry, g: &RequestGen) -> Req {
    let agent = g.agent.and_then(|i| reg.agents.get(i % reg.agents.len()));
    let tool = match &g.tool {
        ToolPick::Unknown => None,
        ToolPick::Granted(i) => match agent.filter(|a| !a.grants.is_empty()) {
            Some(a) => a
                .grants
                .get(i % a.grants.len())
                .and_then(|gr| reg.tools.iter().find(|t| t.id == gr.tool)),
            None => reg.tools.get(i % reg.tools.len()),
        },
        ToolPick::Any(i) => reg.tools.get(i % reg.tools.len()),
    };
    let mut roles: Vec<String> = g
        .roles
        .iter()
        .map(|&r| {
            if r == ROLES.len() {
                STRANGER.to_owned()
            } else {
                role_name(r).to_owned()
            }
        })
        .collect();
    if let (Some(i), Some(t)) = (g.allowed_role, tool) {
        if !t.allowed_roles.is_empty() {
            roles.extend(t.allowed_roles.get(i % t.allowed_roles.len()).cloned());
        }
    }
    let environment = match agent {
        Some(a) if g.same_environment => a.environment,
        _ => g.environment,
    };
    let declares = |name: &str| tool.and_then(|t| t.arguments.get(name));
    let arguments = match &g.args {
        ArgsGen::Valid {
            amount,
            optional,
            urgent,
            price,
        } => {
            let mut m = serde_json::Map::new();
            if let Some(spec) = declares("amount") {
                if spec.required || *optional {
                    m.insert("amount".to_owned(), json!(amount));
                }
            }
            if declares("note").is_some() && *optional {
                m.insert("note".to_owned(), json!("a note"));
            }
            if declares("urgent").is_some() && *optional {
                m.insert("urgent".to_owned(), json!(urgent));
            }
            if declares("price").is_some() && *optional {
                m.insert("price".to_owned(), price.json());
            }
            Value::Object(m)
        }
        ArgsGen::Undeclared => json!({ "bogus": 1 }),
        ArgsGen::WrongType if declares("amount").is_some() => json!({ "amount": "ten" }),
        ArgsGen::WrongType if declares("urgent").is_some() => json!({ "urgent": "yes" }),
        ArgsGen::WrongType if declares("price").is_some() => json!({ "price": "12.5" }),
        ArgsGen::WrongType if declares("note").is_some() => json!({ "note": 5 }),
        ArgsGen::WrongType => json!({ "amount": 1.5 }),
        ArgsGen::MissingRequired => json!({}),
        ArgsGen::Null => Value::Null,
        ArgsGen::NotAnObject => json!([1, 2]),
    };
    let now = datetime!(2026-01-05 00:17 UTC) // a Monday
        + time::Duration::days(i64::from(g.day))
        + time::Duration::hours(i64::from(g.hour));
    Req {
        agent_id: agent.map_or_else(|| GHOST_AGENT.to_owned(), |a| a.id.clone()),
        tool_id: tool.map_or_else(|| GHOST_TOOL.to_owned(), |t| t.id.clone()),
        user: UserContext {
            id: "user-1".to_owned(),
            roles,
            organization: g
                .organization
                .and_then(|o| ORGANIZATIONS.get(o))
                .map(|o| (*o).to_owned()),
        },
        requested_risk: g.requested_risk,
        environment,
        arguments,
        now,
    }
}

// ---------------------------------------------------------------------------
// The model.

/// What a request carries once the agent and tool are known and the arguments valid.
struct Ctx<'a> {
    agent: &'a AgentSpec,
    tool: &'a ToolSpec,
    roles: BTreeSet<String>,
    risk: Risk,
    requested_risk: Option<Risk>,
    environment: Environment,
    now: OffsetDateTime,
    organization: Option<&'a str>,
    amount: Option<i64>,
}

fn role_closure(reg: &Registry, roles: &[String]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut stack: Vec<String> = roles.to_vec();
    while let Some(r) = stack.pop() {
        if all.insert(r.clone()) {
            if let Some(spec) = reg.roles.iter().find(|s| s.id == r) {
                stack.extend(spec.inherits.iter().cloned());
            }
        }
    }
    all
}

/// Whether the arguments fit the tool's declaration: an object (or null) of
/// declared, well-typed arguments carrying every required one.
fn arguments_valid(tool: &ToolSpec, args: &Value) -> bool {
    let empty = serde_json::Map::new();
    let map = match args {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return false,
    };
    let typed = map
        .iter()
        .all(|(name, v)| match tool.arguments.get(name).map(|s| s.ty) {
            Some(ArgumentType::Long) => v.as_i64().is_some(),
            Some(ArgumentType::String) => v.is_string(),
            Some(ArgumentType::Bool) => v.is_boolean(),
            Some(ArgumentType::Decimal) => decimal_valid(v),
            None => false,
        });
    typed
        && tool
            .arguments
            .iter()
            .all(|(name, spec)| !spec.required || map.contains_key(name))
}

/// Whether a JSON value is a decimal Cedar holds: a number with at most 4
/// fractional digits within ±922337203685477.5807 (an i64 of ten-thousandths).
/// Computed by arithmetic, not by the product's text-based parser.
fn decimal_valid(v: &Value) -> bool {
    let Some(x) = v.as_f64() else {
        return false;
    };
    let scaled = x * 10_000.0;
    x.is_finite() && x.abs() < 922_337_203_685_477.0 && (scaled - scaled.round()).abs() < 1e-3
}

/// Whether a tool waits for a human: as declared, else by its category
/// (deletes, transfers and publications do).
fn model_requires_approval(tool: &ToolSpec) -> bool {
    match tool.approval.as_ref().and_then(|a| a.required) {
        Some(required) => required,
        None => matches!(
            tool.category,
            Category::Delete | Category::Transfer | Category::Publish
        ),
    }
}

/// The conditions a decision is made of, each computed from the registry.
#[derive(Debug, Default)]
struct Facts {
    registered: bool,
    tool_known: bool,
    arguments_valid: bool,
    active: bool,
    granted: bool,
    role_permitted: bool,
    within_ceiling: bool,
    same_environment: bool,
    requires_approval: bool,
    /// Custom forbids that apply, with the reason code each reports.
    forbids: Vec<(String, ReasonCode)>,
    /// Custom permits that apply.
    permits: Vec<String>,
    /// Policies whose evaluation errs.
    erring: Vec<String>,
}

impl Facts {
    fn base_holds(&self) -> bool {
        self.registered
            && self.tool_known
            && self.arguments_valid
            && self.active
            && self.granted
            && self.role_permitted
            && self.within_ceiling
            && self.same_environment
    }
}

fn facts(world: &World, req: &Req) -> Facts {
    let reg = &world.registry;
    let mut f = Facts::default();
    let Some(agent) = reg.agents.iter().find(|a| a.id == req.agent_id) else {
        return f;
    };
    f.registered = true;
    let Some(tool) = reg.tools.iter().find(|t| t.id == req.tool_id) else {
        return f;
    };
    f.tool_known = true;
    f.requires_approval = model_requires_approval(tool);
    f.arguments_valid = arguments_valid(tool, &req.arguments);
    let roles = role_closure(reg, &req.user.roles);
    let grant = agent.grants.iter().find(|g| g.tool == tool.id);
    let risk = req.requested_risk.map_or(tool.risk, |r| r.max(tool.risk));
    f.active = agent.status == AgentStatus::Active;
    f.granted = grant.is_some();
    f.role_permitted = tool.allowed_roles.iter().any(|r| roles.contains(r));
    f.within_ceiling = grant
        .is_some_and(|g| risk <= agent.risk_ceiling && g.risk_ceiling.is_none_or(|c| risk <= c));
    f.same_environment = agent.environment == req.environment;
    if !f.arguments_valid {
        return f;
    }
    let ctx = Ctx {
        agent,
        tool,
        roles,
        risk,
        requested_risk: req.requested_risk,
        environment: req.environment,
        now: req.now,
        organization: req.user.organization.as_deref(),
        amount: req.arguments.get("amount").and_then(Value::as_i64),
    };
    for rule in &world.rules {
        match rule.evaluate(&ctx) {
            Outcome::Satisfied if rule.forbid => f.forbids.push((
                rule.id.clone(),
                rule.reason.unwrap_or(ReasonCode::ForbiddenByPolicy),
            )),
            Outcome::Satisfied => f.permits.push(rule.id.clone()),
            Outcome::Error => f.erring.push(rule.id.clone()),
            Outcome::NotSatisfied => {}
        }
    }
    f
}

type ReasonKey = (ReasonCode, Option<String>);

/// The evaluation the model predicts: decision, reasons as (code, policy), determining policies.
fn predict(f: &Facts) -> (Decision, Vec<ReasonKey>, Vec<String>) {
    let deny = |code| (Decision::Deny, vec![(code, None)], Vec::new());
    if !f.registered {
        return deny(ReasonCode::UnknownAgent);
    }
    if !f.tool_known {
        return deny(ReasonCode::UnknownTool);
    }
    if !f.arguments_valid {
        return deny(ReasonCode::InvalidArguments);
    }
    let base_forbids = [
        (!f.active, "base:agent-active", ReasonCode::AgentDisabled),
        (
            !f.same_environment,
            "base:environment",
            ReasonCode::EnvironmentMismatch,
        ),
        (!f.granted, "base:grant", ReasonCode::ToolNotGranted),
        (
            f.granted && !f.within_ceiling,
            "base:risk-ceiling",
            ReasonCode::RiskExceedsPolicy,
        ),
        (
            !f.role_permitted,
            "base:user-role",
            ReasonCode::UserRoleNotPermitted,
        ),
    ];
    let mut forbids: Vec<(String, ReasonCode)> = base_forbids
        .iter()
        .filter(|(applies, _, _)| *applies)
        .map(|(_, id, code)| ((*id).to_owned(), *code))
        .collect();
    forbids.extend(f.forbids.iter().cloned());
    let mut permits: Vec<String> = f.permits.clone();
    if f.granted {
        permits.push("base:permit-granted".to_owned());
    }
    let cedar_allows = forbids.is_empty() && !permits.is_empty();
    let mut reasons: Vec<ReasonKey> = Vec::new();
    if !f.erring.is_empty() {
        reasons.push((ReasonCode::PolicyEvaluationError, None));
    }
    let mut determining: Vec<String> = if cedar_allows {
        permits
    } else {
        forbids.iter().map(|(id, _)| id.clone()).collect()
    };
    determining.sort();
    if cedar_allows && f.erring.is_empty() {
        let code = if f.requires_approval {
            ReasonCode::ApprovalRequired
        } else {
            ReasonCode::Allowed
        };
        let decision = if f.requires_approval {
            Decision::PendingApproval
        } else {
            Decision::Allow
        };
        return (decision, vec![(code, None)], determining);
    }
    if !cedar_allows {
        reasons.extend(forbids.into_iter().map(|(id, code)| (code, Some(id))));
        if reasons.is_empty() {
            reasons.push((ReasonCode::NotPermitted, None));
        }
    }
    reasons.sort();
    (Decision::Deny, reasons, determining)
}

fn reason_keys(e: &Evaluation) -> Vec<ReasonKey> {
    let mut keys: Vec<ReasonKey> = e
        .reasons
        .iter()
        .map(|r| (r.code, r.policy_id.clone()))
        .collect();
    keys.sort();
    keys
}

fn sorted_codes(e: &Evaluation) -> Vec<ReasonCode> {
    let mut codes = e.codes();
    codes.sort();
    codes
}

// ---------------------------------------------------------------------------
// Running.

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // A failing world is printed in full; there is no source file to persist it next to.
        failure_persistence: None,
        max_shrink_iters: 400,
        ..Config::default()
    })
}

/// Runs a property; a failure comes back with its shrunk input, printed in full.
fn run<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Result<(), String>
where
    S::Value: std::fmt::Debug,
{
    match runner(cases).run(&strategy, test) {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, value)) => Err(format!(
            "property failed: {reason}\nminimal input: {value:#?}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn context(world: &World, req: &Req, got: &Evaluation) -> String {
    format!(
        "request: {req:#?}\ngot: {got:#?}\npolicies:\n{}",
        world.rules.iter().map(Rule::cedar).collect::<String>()
    )
}

/// Tallies over all cases, so that a vacuous generator fails the test.
#[derive(Default)]
struct Tally {
    allow: AtomicUsize,
    pending: AtomicUsize,
    custom_forbid: AtomicUsize,
    errors: AtomicUsize,
    codes: std::sync::Mutex<BTreeMap<ReasonCode, usize>>,
    /// Decided calls carrying a well-formed decimal, and calls denied for
    /// a malformed one (too many digits, out of range).
    decimals: AtomicUsize,
    bad_decimals: AtomicUsize,
    /// Decided calls carrying a boolean.
    booleans: AtomicUsize,
    /// Allowed calls of a tool whose category waits for approval but whose
    /// registry entry says `required: false`.
    approval_waived: AtomicUsize,
    /// Pending calls of a tool that waits by its category's default alone.
    approval_by_default: AtomicUsize,
}

#[test]
fn decisions_obey_the_laws() {
    let tally = Tally::default();
    let strategy = (
        world_gen(),
        prop::collection::vec(request_gen(), REQUESTS_PER_CASE),
    );
    let result = run(256, strategy, |(wg, requests)| {
        let world = build(&wg)?;
        for rg in &requests {
            let req = concretize(&world.registry, rg);
            let got = world.engine.decide(&req.input());
            let f = facts(&world, &req);
            let why = || context(&world, &req, &got);
            let codes = got.codes();
            let has = |c: ReasonCode| codes.contains(&c);

            // Safety: nothing passes that any check refuses.
            if got.decision != Decision::Deny {
                prop_assert!(
                    f.base_holds(),
                    "a call failing a base check got {:?}: {facts:?}\n{}",
                    got.decision,
                    why(),
                    facts = f
                );
                prop_assert!(
                    f.forbids.is_empty(),
                    "a forbidden call got {:?}: {:?}\n{}",
                    got.decision,
                    f.forbids,
                    why()
                );
                prop_assert!(
                    f.erring.is_empty() && got.errors.is_empty(),
                    "an erring evaluation got {:?}\n{}",
                    got.decision,
                    why()
                );
                prop_assert_eq!(
                    got.decision == Decision::PendingApproval,
                    f.requires_approval,
                    "approval must follow the tool\n{}",
                    why()
                );
            }
            // Liveness: default deny is not over-eager.
            if f.base_holds() && f.forbids.is_empty() && f.erring.is_empty() {
                let want = if f.requires_approval {
                    Decision::PendingApproval
                } else {
                    Decision::Allow
                };
                prop_assert_eq!(got.decision, want, "a call every check permits\n{}", why());
            }
            // Reasons name every failed check.
            if got.decision == Decision::Deny {
                prop_assert!(
                    !has(ReasonCode::Allowed) && !has(ReasonCode::ApprovalRequired),
                    "{}",
                    why()
                );
                if !f.registered {
                    prop_assert_eq!(&codes, &vec![ReasonCode::UnknownAgent], "{}", why());
                    prop_assert_eq!(&got.agent_version, &None, "{}", why());
                } else if !f.tool_known {
                    prop_assert_eq!(&codes, &vec![ReasonCode::UnknownTool], "{}", why());
                } else if !f.arguments_valid {
                    prop_assert_eq!(&codes, &vec![ReasonCode::InvalidArguments], "{}", why());
                } else {
                    let expected = [
                        (!f.active, ReasonCode::AgentDisabled),
                        (!f.granted, ReasonCode::ToolNotGranted),
                        (
                            f.granted && !f.within_ceiling,
                            ReasonCode::RiskExceedsPolicy,
                        ),
                        (!f.role_permitted, ReasonCode::UserRoleNotPermitted),
                        (!f.same_environment, ReasonCode::EnvironmentMismatch),
                        (!f.erring.is_empty(), ReasonCode::PolicyEvaluationError),
                    ];
                    for (failed, code) in expected {
                        prop_assert!(!failed || has(code), "{code} missing\n{}", why());
                    }
                    for (id, code) in &f.forbids {
                        prop_assert!(
                            got.reasons
                                .iter()
                                .any(|r| r.code == *code && r.policy_id.as_deref() == Some(id)),
                            "forbid `{id}` applies but is not among the reasons\n{}",
                            why()
                        );
                    }
                }
            } else {
                prop_assert_eq!(got.reasons.len(), 1, "{}", why());
                prop_assert!(
                    got.determining_policies
                        .iter()
                        .any(|p| p == "base:permit-granted"),
                    "{}",
                    why()
                );
            }
            if f.registered {
                let version = world
                    .registry
                    .agents
                    .iter()
                    .find(|a| a.id == req.agent_id)
                    .map(|a| a.version.clone());
                prop_assert_eq!(&got.agent_version, &version, "{}", why());
            }
            // And exactly: the model predicts the whole evaluation.
            let (decision, reasons, determining) = predict(&f);
            prop_assert_eq!(
                got.decision,
                decision,
                "decision differs from the model\n{}",
                why()
            );
            prop_assert_eq!(
                reason_keys(&got),
                reasons,
                "reasons differ from the model\n{}",
                why()
            );
            prop_assert_eq!(
                &got.determining_policies,
                &determining,
                "determining policies differ from the model\n{}",
                why()
            );
            prop_assert_eq!(
                got.errors.len(),
                f.erring.len(),
                "errors differ from the model\n{}",
                why()
            );

            match got.decision {
                Decision::Allow => tally.allow.fetch_add(1, Ordering::Relaxed),
                Decision::PendingApproval => tally.pending.fetch_add(1, Ordering::Relaxed),
                Decision::Deny => 0,
            };
            let decided = !has(ReasonCode::InvalidArguments);
            match req.arguments.get("price") {
                Some(p) if p.is_number() && decided => {
                    tally.decimals.fetch_add(1, Ordering::Relaxed);
                }
                Some(p) if p.is_number() && !decimal_valid(p) => {
                    tally.bad_decimals.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            if decided && req.arguments.get("urgent").is_some_and(Value::is_boolean) {
                tally.booleans.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(tool) = world.registry.tools.iter().find(|t| t.id == req.tool_id) {
                let by_category = matches!(
                    tool.category,
                    Category::Delete | Category::Transfer | Category::Publish
                );
                let declared = tool.approval.as_ref().and_then(|a| a.required);
                if by_category && declared == Some(false) && got.decision == Decision::Allow {
                    tally.approval_waived.fetch_add(1, Ordering::Relaxed);
                }
                if by_category && declared.is_none() && got.decision == Decision::PendingApproval {
                    tally.approval_by_default.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !f.forbids.is_empty() {
                tally.custom_forbid.fetch_add(1, Ordering::Relaxed);
            }
            if !got.errors.is_empty() {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
            let mut seen = tally
                .codes
                .lock()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for c in codes {
                *seen.entry(c).or_default() += 1;
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }

    // A generator that never reaches a branch proves nothing about it.
    let codes = tally.codes.lock().map(|c| c.clone()).unwrap_or_default();
    println!(
        "allow {}, pending {}, custom forbid {}, errors {}, codes {codes:?}",
        tally.allow.load(Ordering::Relaxed),
        tally.pending.load(Ordering::Relaxed),
        tally.custom_forbid.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    );
    assert!(
        tally.allow.load(Ordering::Relaxed) >= 50,
        "too few allows generated"
    );
    assert!(
        tally.pending.load(Ordering::Relaxed) >= 20,
        "too few pending approvals generated"
    );
    assert!(
        tally.custom_forbid.load(Ordering::Relaxed) >= 50,
        "too few custom forbids applied"
    );
    assert!(
        tally.errors.load(Ordering::Relaxed) >= 1,
        "no evaluation error generated"
    );
    for (what, n) in [
        ("well-formed decimals decided", &tally.decimals),
        ("malformed decimals refused", &tally.bad_decimals),
        ("booleans decided", &tally.booleans),
        ("allows of a waived approval", &tally.approval_waived),
        (
            "approvals by the category's default",
            &tally.approval_by_default,
        ),
    ] {
        let n = n.load(Ordering::Relaxed);
        println!("{what}: {n}");
        assert!(
            n >= 5,
            "{what}: only {n}; the generators no longer reach them"
        );
    }
    for code in [
        ReasonCode::UnknownAgent,
        ReasonCode::UnknownTool,
        ReasonCode::InvalidArguments,
        ReasonCode::AgentDisabled,
        ReasonCode::ToolNotGranted,
        ReasonCode::RiskExceedsPolicy,
        ReasonCode::UserRoleNotPermitted,
        ReasonCode::EnvironmentMismatch,
        ReasonCode::ForbiddenByPolicy,
        ReasonCode::PolicyEvaluationError,
    ] {
        assert!(
            codes.get(&code).is_some_and(|&n| n >= 5),
            "reason {code} seen too rarely: {codes:?}"
        );
    }
}

#[test]
fn selective_evaluation_agrees_with_the_full_set() {
    let compared = AtomicUsize::new(0);
    // Comparisons where selection left policies out: only those test it.
    let narrowed = AtomicUsize::new(0);
    let strategy = (
        world_gen(),
        prop::collection::vec(request_gen(), REQUESTS_PER_CASE),
    );
    let result = run(256, strategy, |(wg, requests)| {
        let world = build(&wg)?;
        for rg in &requests {
            let req = concretize(&world.registry, rg);
            let selective = world.engine.decide(&req.input());
            let full = world.engine.decide_with_full_set(&req.input());
            let why = || {
                format!(
                    "request: {req:#?}\nselective: {selective:#?}\nfull: {full:#?}\nregistry: {}\npolicies:\n{}",
                    serde_json::to_string_pretty(&world.registry).unwrap_or_default(),
                    world.rules.iter().map(Rule::cedar).collect::<String>()
                )
            };
            prop_assert_eq!(selective.decision, full.decision, "decision\n{}", why());
            prop_assert_eq!(
                sorted_codes(&selective),
                sorted_codes(&full),
                "reason codes\n{}",
                why()
            );
            prop_assert_eq!(
                &selective.determining_policies,
                &full.determining_policies,
                "determining policies\n{}",
                why()
            );
            prop_assert_eq!(&selective.errors, &full.errors, "errors\n{}", why());
            compared.fetch_add(1, Ordering::Relaxed);
            if world
                .engine
                .selection_size(req.input().agent_id, req.input().tool_id)
                .is_some_and(|(selected, total)| selected < total)
            {
                narrowed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let compared = compared.load(Ordering::Relaxed);
    assert_eq!(compared, 256 * REQUESTS_PER_CASE);
    let narrowed = narrowed.load(Ordering::Relaxed);
    assert!(
        narrowed * 4 >= compared,
        "only {narrowed} of {compared} comparisons had policies left out by selection: \
         the generators no longer exercise it"
    );
}
