//! Compiling a bundle: registry checks, the generated Cedar schema, parsing
//! and strict validation of every policy. All problems are reported at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use marked_yaml::Node;
use miette::Diagnostic as _;

use super::yaml::{self, Seg};
use super::{Diagnostic, PolicyBundle, Severity, BASE_POLICIES, BASE_SCHEMA, REGISTRY_FILE};
use crate::model::{Category, ReasonCode, Registry};

/// The name built-in policies are reported under.
pub(crate) const BASE_FILE: &str = "<built-in>/base.cedar";

/// A bundle that passed every check, ready to become a [`super::PolicyEngine`].
#[derive(Debug, Clone)]
pub struct CompiledPolicies {
    /// The registry.
    pub registry: Registry,
    /// The full Cedar schema text (fixed part and generated tool actions).
    pub schema_text: String,
    /// Base and team policies, validated: the enforced ones.
    pub policies: PolicySet,
    /// The log-only (shadow) policies: annotated `@log_only`, or in a file
    /// named `*.log-only.cedar`. Evaluated and recorded, never enforced.
    pub shadow: PolicySet,
    /// Their ids.
    pub shadow_ids: std::collections::BTreeSet<String>,
    /// Policy id → (file, policy text), for explanations.
    pub sources: BTreeMap<String, (String, String)>,
    /// Problems that do not stop the bundle.
    pub warnings: Vec<Diagnostic>,
    /// The bundle's content hash.
    pub content_hash: String,
    /// The bundle itself.
    pub bundle: PolicyBundle,
    /// The schema, which also defines the action hierarchy (tool → category).
    pub schema: Schema,
}

/// Compiles a bundle, or returns every error found (warnings included).
pub fn compile(bundle: &PolicyBundle) -> Result<CompiledPolicies, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let Some(text) = bundle.registry() else {
        return Err(vec![Diagnostic::error(
            REGISTRY_FILE,
            0,
            0,
            "file is missing",
        )]);
    };
    let (registry, node) = match yaml::parse::<Registry>(REGISTRY_FILE, text) {
        Ok(parsed) => parsed,
        Err(d) => return Err(vec![d]),
    };
    check_registry(&registry, &node, &mut diags);
    super::servers::check_servers(&registry, &node, valid_id, &mut diags);

    // The Cedar files parse without the registry: their problems are
    // reported in the same run as the registry's.
    let mut sets = Sets::default();
    let mut sources = BTreeMap::new();
    let mut files_by_policy: HashMap<String, (String, String)> = HashMap::new();
    let files = std::iter::once((BASE_FILE, BASE_POLICIES)).chain(bundle.cedar_files());
    for (file, text) in files {
        add_file(
            file,
            text,
            &mut sets,
            &mut sources,
            &mut files_by_policy,
            &mut diags,
        );
    }
    if has_errors(&diags) {
        return Err(diags);
    }
    let schema_text = schema_text(&registry);
    let schema = match Schema::from_cedarschema_str(&schema_text) {
        Ok((schema, _warnings)) => schema,
        Err(e) => {
            diags.push(Diagnostic::error(
                REGISTRY_FILE,
                0,
                0,
                format!("the registry does not produce a valid Cedar schema: {e}"),
            ));
            return Err(diags);
        }
    };

    let Sets {
        enforced: policies,
        shadow,
        shadow_ids,
    } = sets;

    // Log-only policies are validated as strictly as the enforced ones.
    let mut all = policies.clone();
    for p in shadow.policies() {
        if let Err(e) = all.add(p.clone()) {
            diags.push(Diagnostic::error(
                REGISTRY_FILE,
                0,
                0,
                format!("policy `{}` cannot be added: {e}", p.id()),
            ));
        }
    }
    let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
    for e in result.validation_errors() {
        diags.push(validation_diag(
            Severity::Error,
            e.policy_id(),
            e,
            &files_by_policy,
        ));
    }
    for w in result.validation_warnings() {
        diags.push(validation_diag(
            Severity::Warning,
            w.policy_id(),
            w,
            &files_by_policy,
        ));
    }
    check_entity_literals(&all, &registry, &files_by_policy, &mut diags);
    for (file, text) in bundle.cedar_files() {
        check_role_literals(file, text, &registry, &mut diags);
    }
    if has_errors(&diags) {
        return Err(diags);
    }
    Ok(CompiledPolicies {
        registry,
        schema_text,
        policies,
        shadow,
        shadow_ids,
        sources,
        warnings: diags,
        content_hash: bundle.content_hash(),
        bundle: bundle.clone(),
        schema,
    })
}

fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

fn validation_diag(
    severity: Severity,
    policy: &PolicyId,
    err: &dyn miette::Diagnostic,
    files: &HashMap<String, (String, String)>,
) -> Diagnostic {
    let message = format!("{err}");
    let Some((file, text)) = files.get(AsRef::<str>::as_ref(policy)) else {
        return Diagnostic {
            severity,
            ..Diagnostic::error("<unknown>", 0, 0, message)
        };
    };
    let offset = err
        .labels()
        .and_then(|mut l| l.next())
        .map_or(0, |l| l.offset());
    let message = match err.help() {
        Some(help) => format!("{message} (policy `{policy}`; {help})"),
        None => format!("{message} (policy `{policy}`)"),
    };
    Diagnostic::at_offset(severity, file, text, offset, message)
}

/// Entity literals that name what the registry does not define. Cedar's
/// validator checks their types only, so `Team::"billng"` validates and a
/// forbid written with it silently never matches.
fn check_entity_literals(
    all: &PolicySet,
    reg: &Registry,
    files: &HashMap<String, (String, String)>,
    diags: &mut Vec<Diagnostic>,
) {
    let agents: BTreeSet<&str> = reg.agents.iter().map(|a| a.id.as_str()).collect();
    let teams: BTreeSet<&str> = reg.agents.iter().map(|a| a.team.as_str()).collect();
    let tools: BTreeSet<&str> = reg.tools.iter().map(|t| t.id.as_str()).collect();
    for policy in all.policies() {
        let id: &str = policy.id().as_ref();
        if id.starts_with("base:") {
            continue;
        }
        let mut seen = BTreeSet::new();
        for uid in policy.entity_literals() {
            let ty = uid.type_name().basename().to_owned();
            let name = uid.id().unescaped().to_owned();
            let known = match ty.as_str() {
                "Agent" => &agents,
                "Team" => &teams,
                "Tool" => &tools,
                _ => continue,
            };
            if known.contains(name.as_str()) || !seen.insert((ty.clone(), name.clone())) {
                continue;
            }
            let hint = match closest(known.iter().copied(), &name) {
                Some(k) => format!("; did you mean `{ty}::\"{k}\"`?"),
                None if known.is_empty() => String::new(),
                None => format!(
                    " (it defines {})",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            };
            let message = format!(
                "policy `{id}` names {ty}::\"{name}\", which the registry does not define, \
                 so the rule never matches it{hint}"
            );
            diags.push(match files.get(id) {
                Some((file, text)) => {
                    let offset = text.find(&format!("{ty}::\"{name}\"")).unwrap_or(0);
                    Diagnostic::at_offset(Severity::Error, file, text, offset, message)
                }
                None => Diagnostic::error("<unknown>", 0, 0, message),
            });
        }
    }
}

/// The closest of `known` to `name`, within two edits.
fn closest<'a>(known: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(k, name), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Role names a policy tests the user's roles for (`roles.contains("…")`,
/// `containsAny([…])`, `containsAll([…])`) that `roles` does not define:
/// nobody holds such a role, so the condition never holds. Checked only
/// where the registry defines its roles.
fn check_role_literals(file: &str, text: &str, reg: &Registry, diags: &mut Vec<Diagnostic>) {
    if reg.roles.is_empty() {
        return;
    }
    let defined: BTreeSet<&str> = reg.roles.iter().map(|r| r.id.as_str()).collect();
    let mut from = 0;
    while let Some(at) = text
        .get(from..)
        .and_then(|rest| rest.find("roles.contains"))
    {
        let start = from + at;
        // The call's argument: up to its closing parenthesis.
        let Some(open) = text
            .get(start..)
            .and_then(|r| r.find('('))
            .map(|i| start + i)
        else {
            break;
        };
        let end = text
            .get(open..)
            .and_then(|r| r.find(')'))
            .map_or(text.len(), |i| open + i);
        let mut cursor = open;
        while let Some(q) = text.get(cursor..end).and_then(|r| r.find('"')) {
            let first = cursor + q + 1;
            let Some(len) = text.get(first..end).and_then(|r| r.find('"')) else {
                break;
            };
            let role = text.get(first..first + len).unwrap_or_default();
            if !defined.contains(role) {
                let hint = closest(defined.iter().copied(), role)
                    .map(|k| format!("; did you mean \"{k}\"?"))
                    .unwrap_or_default();
                diags.push(Diagnostic::at_offset(
                    Severity::Error,
                    file,
                    text,
                    first - 1,
                    format!(
                        "role \"{role}\" is not among the registry's roles, so nobody holds it \
                         and the condition never holds{hint}"
                    ),
                ));
            }
            cursor = first + len + 1;
        }
        from = end.max(start + 1);
    }
}

/// The policies of a bundle, enforced or log-only.
#[derive(Default)]
struct Sets {
    enforced: PolicySet,
    shadow: PolicySet,
    shadow_ids: std::collections::BTreeSet<String>,
}

/// The suffix of a file whose policies all run log-only.
pub const LOG_ONLY_SUFFIX: &str = ".log-only.cedar";

fn add_file(
    file: &str,
    text: &str,
    sets: &mut Sets,
    sources: &mut BTreeMap<String, (String, String)>,
    files_by_policy: &mut HashMap<String, (String, String)>,
    diags: &mut Vec<Diagnostic>,
) {
    let parsed = match PolicySet::from_str(text) {
        Ok(p) => p,
        Err(errs) => {
            for e in errs.iter() {
                let offset = e
                    .labels()
                    .and_then(|mut l| l.next())
                    .map_or(0, |l| l.offset());
                let message = match e.help() {
                    Some(help) => format!("{e} ({help})"),
                    None => e.to_string(),
                };
                diags.push(Diagnostic::at_offset(
                    Severity::Error,
                    file,
                    text,
                    offset,
                    message,
                ));
            }
            return;
        }
    };
    if let Some(t) = parsed.templates().next() {
        let offset = text.find(&t.to_cedar()).unwrap_or(0);
        diags.push(Diagnostic::at_offset(
            Severity::Error,
            file,
            text,
            offset,
            "templates (`?principal`, `?resource`) are not supported; write static policies",
        ));
    }
    let is_base = file == BASE_FILE;
    // Policies come back in source order; each one's original text is found
    // after the previous one's, which gives its position in the file.
    let mut cursor = 0;
    for (n, policy) in parsed.policies().enumerate() {
        let policy_text = policy.to_cedar().unwrap_or_else(|| policy.to_string());
        let offset = text
            .get(cursor..)
            .and_then(|rest| rest.find(&policy_text))
            .map_or(cursor, |i| cursor + i);
        cursor = offset + policy_text.len();
        let id = match policy.annotation("id") {
            Some(id) => id.to_owned(),
            None => format!("{file}#{}", n + 1),
        };
        let here = |msg: String| Diagnostic::at_offset(Severity::Error, file, text, offset, msg);
        if !is_base && id.starts_with("base:") {
            diags.push(here(format!(
                "policy id `{id}` is reserved: `base:` names built-in policies"
            )));
            continue;
        }
        if let Some(reason) = policy.annotation("reason") {
            if ReasonCode::parse(reason).is_none() {
                diags.push(here(format!(
                    "`@reason(\"{reason}\")` is not a reason code; use `forbidden_by_policy` or another code from the documentation"
                )));
            }
        }
        let log_only = policy.annotation("log_only").is_some() || file.ends_with(LOG_ONLY_SUFFIX);
        if log_only && is_base {
            continue;
        }
        // Ids are unique across both sets.
        let taken =
            sets.enforced.policy(&PolicyId::new(&id)).is_some() || sets.shadow_ids.contains(&id);
        let added = if taken {
            Err(format!("the id `{id}` is used by another policy"))
        } else if log_only {
            sets.shadow_ids.insert(id.clone());
            sets.shadow
                .add(policy.new_id(PolicyId::new(&id)))
                .map_err(|e| e.to_string())
        } else {
            sets.enforced
                .add(policy.new_id(PolicyId::new(&id)))
                .map_err(|e| e.to_string())
        };
        if let Err(e) = added {
            diags.push(here(format!("policy `{id}` cannot be added: {e}")));
            continue;
        }
        files_by_policy.insert(id.clone(), (file.to_owned(), text.to_owned()));
        sources.insert(id, (file.to_owned(), policy_text));
    }
}

/// The longest a call may wait for a human.
const MAX_APPROVAL_TIMEOUT_SECONDS: u64 = 30 * 86_400;

/// Identifiers that become Cedar entity ids and action names stay plain.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@'))
}

fn valid_argument_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !CEDAR_RESERVED.contains(&s)
}

const CEDAR_RESERVED: [&str; 12] = [
    "true",
    "false",
    "if",
    "then",
    "else",
    "in",
    "is",
    "like",
    "has",
    "principal",
    "action",
    "resource",
];

fn check_registry(reg: &Registry, node: &Node, diags: &mut Vec<Diagnostic>) {
    let err = |diags: &mut Vec<Diagnostic>, path: &[Seg<'_>], msg: String| {
        let (line, column) = yaml::position(node, path);
        diags.push(Diagnostic::error(REGISTRY_FILE, line, column, msg));
    };
    let warn = |diags: &mut Vec<Diagnostic>, path: &[Seg<'_>], msg: String| {
        let (line, column) = yaml::position(node, path);
        diags.push(Diagnostic::warning(REGISTRY_FILE, line, column, msg));
    };

    let mut roles = HashSet::new();
    for (i, role) in reg.roles.iter().enumerate() {
        let at = [Seg::Key("roles"), Seg::Index(i), Seg::Key("id")];
        if role.id.is_empty() {
            err(diags, &at, "a role id cannot be empty".into());
        }
        if !roles.insert(role.id.as_str()) {
            err(diags, &at, format!("role `{}` is defined twice", role.id));
        }
    }
    for (i, role) in reg.roles.iter().enumerate() {
        for (j, parent) in role.inherits.iter().enumerate() {
            if !roles.contains(parent.as_str()) {
                let at = [
                    Seg::Key("roles"),
                    Seg::Index(i),
                    Seg::Key("inherits"),
                    Seg::Index(j),
                ];
                err(
                    diags,
                    &at,
                    format!("role `{}` inherits undefined role `{parent}`", role.id),
                );
            }
        }
    }
    if let Some(cycle) = role_cycle(reg) {
        err(
            diags,
            &[Seg::Key("roles")],
            format!("roles inherit in a cycle through `{cycle}`"),
        );
    }

    let mut tools = HashSet::new();
    for (i, tool) in reg.tools.iter().enumerate() {
        let at = |k: &'static str| [Seg::Key("tools"), Seg::Index(i), Seg::Key(k)];
        if !valid_id(&tool.id) {
            err(
                diags,
                &at("id"),
                format!(
                    "tool id `{}` must be 1-128 characters of letters, digits and - _ . : / @",
                    tool.id
                ),
            );
        }
        if tool.id.starts_with("category:") {
            err(
                diags,
                &at("id"),
                format!(
                    "tool id `{}` is reserved: `category:` names action groups",
                    tool.id
                ),
            );
        }
        if !tools.insert(tool.id.as_str()) {
            err(
                diags,
                &at("id"),
                format!("tool `{}` is defined twice", tool.id),
            );
        }
        if tool.allowed_roles.is_empty() {
            warn(
                diags,
                &at("id"),
                format!(
                    "tool `{}` has no allowed_roles: no agent may call it for anyone",
                    tool.id
                ),
            );
        }
        for (j, role) in tool.allowed_roles.iter().enumerate() {
            // An undefined role would never be held by anyone: an error, as
            // in `inherits` (a registry without `roles` names them freely).
            if !reg.roles.is_empty() && !roles.contains(role.as_str()) {
                let at = [
                    Seg::Key("tools"),
                    Seg::Index(i),
                    Seg::Key("allowed_roles"),
                    Seg::Index(j),
                ];
                err(
                    diags,
                    &at,
                    format!(
                        "tool `{}` allows role `{role}`, which `roles` does not define",
                        tool.id
                    ),
                );
            }
        }
        for name in tool.arguments.keys() {
            if !valid_argument_name(name) {
                let at = [
                    Seg::Key("tools"),
                    Seg::Index(i),
                    Seg::Key("arguments"),
                    Seg::Key(name),
                ];
                err(diags, &at, format!("argument `{name}` of tool `{}` must be a Cedar identifier (letters, digits, _; not a keyword)", tool.id));
            }
        }
        if let Some(limit) = &tool.rate_limit {
            if limit.limit == 0
                || limit.window_seconds == 0
                || limit.window_seconds > MAX_LIMIT_WINDOW_SECONDS
            {
                err(
                    diags,
                    &at("rate_limit"),
                    format!(
                        "rate_limit of tool `{}` needs a limit above zero and window_seconds between 1 and {MAX_LIMIT_WINDOW_SECONDS} (31 days)",
                        tool.id
                    ),
                );
            }
        }
        if let Some(approval) = &tool.approval {
            if approval
                .timeout_seconds
                .is_some_and(|t| t == 0 || t > MAX_APPROVAL_TIMEOUT_SECONDS)
            {
                err(
                    diags,
                    &at("approval"),
                    format!(
                        "approval timeout of tool `{}` must be between 1 and {MAX_APPROVAL_TIMEOUT_SECONDS} seconds (30 days)",
                        tool.id
                    ),
                );
            }
        }
        if tool.requires_approval()
            && tool
                .approval
                .as_ref()
                .and_then(|a| a.approver_group.as_deref())
                .is_none_or(|g| g.trim().is_empty())
        {
            // Without a group, any holder of any approver token could answer.
            let (path, why) = match &tool.approval {
                Some(a) if a.required == Some(true) => ("approval", "needs approval"),
                Some(_) => (
                    "approval",
                    "needs approval (its category is delete, transfer or publish)",
                ),
                None => (
                    "category",
                    "needs approval (its category is delete, transfer or publish)",
                ),
            };
            err(
                diags,
                &at(path),
                format!(
                    "tool `{}` {why} but names no approver_group: add \
                     `approval: {{ approver_group: GROUP }}`, or `required: false`",
                    tool.id
                ),
            );
        }
    }

    let mut principals = HashMap::new();
    for (i, agent) in reg.agents.iter().enumerate() {
        for (j, arn) in agent.principals.iter().enumerate() {
            let at = [
                Seg::Key("agents"),
                Seg::Index(i),
                Seg::Key("principals"),
                Seg::Index(j),
            ];
            match crate::model::iam_principal(arn) {
                None => err(
                    diags,
                    &at,
                    format!(
                        "principal `{arn}` of agent `{}` is not an IAM role or user ARN",
                        agent.id
                    ),
                ),
                Some(p) => {
                    if let Some(other) = principals.insert(p, agent.id.as_str()) {
                        err(
                            diags,
                            &at,
                            format!(
                                "principal `{arn}` is mapped to both `{other}` and `{}`",
                                agent.id
                            ),
                        );
                    }
                }
            }
        }
    }

    let mut agents = HashSet::new();
    for (i, agent) in reg.agents.iter().enumerate() {
        let at = |k: &'static str| [Seg::Key("agents"), Seg::Index(i), Seg::Key(k)];
        // The model inventory and every access review name an accountable
        // person per agent; a missing one is a finding, not a broken policy.
        if agent.owner.as_deref().is_none_or(|o| o.trim().is_empty()) {
            warn(
                diags,
                &[Seg::Key("agents"), Seg::Index(i)],
                format!(
                    "agent `{}` names no owner: the inventory and access reviews will list it as unowned",
                    agent.id
                ),
            );
        }
        if !valid_id(&agent.id) {
            err(
                diags,
                &at("id"),
                format!(
                    "agent id `{}` must be 1-128 characters of letters, digits and - _ . : / @",
                    agent.id
                ),
            );
        }
        if !valid_id(&agent.team) {
            err(diags, &at("team"), format!("team `{}` of agent `{}` must be 1-128 characters of letters, digits and - _ . : / @", agent.team, agent.id));
        }
        if !agents.insert(agent.id.as_str()) {
            err(
                diags,
                &at("id"),
                format!("agent `{}` is defined twice", agent.id),
            );
        }
        let mut granted = HashSet::new();
        for (j, grant) in agent.grants.iter().enumerate() {
            let at = [
                Seg::Key("agents"),
                Seg::Index(i),
                Seg::Key("grants"),
                Seg::Index(j),
                Seg::Key("tool"),
            ];
            if !tools.contains(grant.tool.as_str()) {
                err(
                    diags,
                    &at,
                    format!(
                        "agent `{}` is granted unknown tool `{}`",
                        agent.id, grant.tool
                    ),
                );
            }
            if !granted.insert(grant.tool.as_str()) {
                err(
                    diags,
                    &at,
                    format!("agent `{}` is granted `{}` twice", agent.id, grant.tool),
                );
            }
            if grant.risk_ceiling.is_some_and(|g| g > agent.risk_ceiling) {
                warn(diags, &at, format!("grant of `{}` to `{}` has a ceiling above the agent's; the agent's ({}) applies", grant.tool, agent.id, agent.risk_ceiling));
            }
        }
        if let Some(limits) = &agent.run_limits {
            let zero = [
                ("max_calls", limits.max_calls == Some(0)),
                ("max_seconds", limits.max_seconds == Some(0)),
                (
                    "max_cost_usd",
                    limits.max_cost_usd.is_some_and(|c| c.micros() == 0),
                ),
                ("max_tokens", limits.max_tokens == Some(0)),
            ];
            for (name, is_zero) in zero {
                if is_zero {
                    err(
                        diags,
                        &at("run_limits"),
                        format!(
                            "run_limits.{name} of agent `{}` must be above zero (leave it out for no limit, or disable the agent)",
                            agent.id
                        ),
                    );
                }
            }
            if !limits.any() {
                warn(
                    diags,
                    &at("run_limits"),
                    format!("run_limits of agent `{}` sets no limit", agent.id),
                );
            }
        }
        if let Some(anomaly) = &agent.anomaly {
            if anomaly.threshold_percent <= 100 {
                err(
                    diags,
                    &at("anomaly"),
                    format!(
                        "anomaly.threshold_percent of agent `{}` must be above 100 (150 alerts at one and a half times the usual rate)",
                        agent.id
                    ),
                );
            }
        }
    }

    let mut budgets = HashSet::new();
    for (i, budget) in reg.budgets.iter().enumerate() {
        let at = |k: &'static str| [Seg::Key("budgets"), Seg::Index(i), Seg::Key(k)];
        if !valid_id(&budget.id) {
            err(
                diags,
                &at("id"),
                format!(
                    "budget id `{}` must be 1-128 characters of letters, digits and - _ . : / @",
                    budget.id
                ),
            );
        }
        if !budgets.insert(budget.id.as_str()) {
            err(
                diags,
                &at("id"),
                format!("budget `{}` is defined twice", budget.id),
            );
        }
        if budget.max_cost_usd.micros() == 0 {
            err(
                diags,
                &at("max_cost_usd"),
                format!("budget `{}` must allow more than $0", budget.id),
            );
        }
        if budget.window_seconds == 0 || budget.window_seconds > MAX_LIMIT_WINDOW_SECONDS {
            err(
                diags,
                &at("window_seconds"),
                format!(
                    "window_seconds of budget `{}` must be between 1 and {MAX_LIMIT_WINDOW_SECONDS} (31 days)",
                    budget.id
                ),
            );
        }
    }
}

/// The longest window a rate limit or budget may count over.
const MAX_LIMIT_WINDOW_SECONDS: u64 = 31 * 86_400;

fn role_cycle(reg: &Registry) -> Option<String> {
    let parents: HashMap<&str, &[String]> = reg
        .roles
        .iter()
        .map(|r| (r.id.as_str(), r.inherits.as_slice()))
        .collect();
    for start in parents.keys() {
        let mut stack: Vec<&str> = vec![start];
        let mut seen = HashSet::new();
        while let Some(r) = stack.pop() {
            for p in parents.get(r).copied().unwrap_or_default() {
                if p == start {
                    return Some((*start).to_owned());
                }
                if seen.insert(p.as_str()) {
                    stack.push(p);
                }
            }
        }
    }
    None
}

/// The full Cedar schema: the fixed part and one action per tool.
pub(crate) fn schema_text(reg: &Registry) -> String {
    let mut s = String::from(BASE_SCHEMA);
    s.push_str(
        "\n// Generated from registry.yaml: one action group per category, one action per tool.\n",
    );
    for c in Category::ALL {
        s.push_str(&format!("action \"category:{}\";\n", c.as_str()));
    }
    for tool in &reg.tools {
        let args = tool
            .arguments
            .iter()
            .map(|(name, spec)| {
                let opt = if spec.required { "" } else { "?" };
                format!("      {name}{opt}: {},\n", spec.ty.cedar_type())
            })
            .collect::<String>();
        s.push_str(&format!(
            "action \"{id}\" in [\"category:{cat}\"] appliesTo {{\n  principal: [Agent],\n  resource: [Tool],\n  context: {{\n    user: UserContext,\n    environment: String,\n    risk: Long,\n    requested_risk?: Long,\n    session_id?: String,\n    now: Now,\n    arguments: {{\n{args}    }},\n  }},\n}};\n",
            id = tool.id,
            cat = tool.category.as_str(),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The example policy set with its registry edited by `edit`.
    fn example_with(edit: impl Fn(&str) -> String) -> PolicyBundle {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/policies");
        let mut bundle = PolicyBundle::from_dir(&dir).unwrap();
        let registry = bundle.files.get_mut(REGISTRY_FILE).unwrap();
        *registry = edit(registry);
        bundle
    }

    fn errors(bundle: &PolicyBundle) -> Vec<Diagnostic> {
        match compile(bundle) {
            Ok(_) => Vec::new(),
            Err(diags) => diags
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect(),
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn cedar_names_the_registry_does_not_define_are_errors_at_their_place() {
        let mut bundle = example_with(str::to_owned);
        bundle.files.insert(
            "typo.cedar".into(),
            "// a typo in the team\n@id(\"typo:no-logs\")\nforbid (principal in Team::\"suport\", action == Action::\"search_logs\", resource);\n\n@id(\"typo:agent\")\npermit (principal == Agent::\"agent-nobody\", action, resource == Tool::\"search_kb\");\n"
                .into(),
        );
        let errs = errors(&bundle);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!((errs[0].file.as_str(), errs[0].line), ("typo.cedar", 3));
        assert!(
            errs[0]
                .message
                .contains("names Team::\"suport\", which the registry does not define")
                && errs[0]
                    .message
                    .contains("did you mean `Team::\"support\"`?"),
            "{}",
            errs[0]
        );
        assert_eq!((errs[1].file.as_str(), errs[1].line), ("typo.cedar", 6));
        assert!(
            errs[1].message.contains("Agent::\"agent-nobody\""),
            "{}",
            errs[1]
        );
        // The same names, registered, are fine.
        let mut fine = example_with(str::to_owned);
        fine.files.insert(
            "fine.cedar".into(),
            "@id(\"fine:no-logs\")\nforbid (principal in Team::\"support\", action == Action::\"search_logs\", resource == Tool::\"search_logs\");\n"
                .into(),
        );
        assert!(errors(&fine).is_empty(), "{:?}", errors(&fine));
    }

    #[test]
    fn roles_a_policy_tests_for_must_be_defined() {
        let mut bundle = example_with(str::to_owned);
        bundle.files.insert(
            "roles.cedar".into(),
            "@id(\"roles:seniors\")\nforbid (principal, action == Action::\"generate_recommendation\", resource)\nunless { context.user.roles.containsAny([\"senior_underwriter\", \"senior_undewriter\"]) };\n"
                .into(),
        );
        let errs = errors(&bundle);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].file.as_str(), errs[0].line), ("roles.cedar", 3));
        assert!(
            errs[0]
                .message
                .contains("role \"senior_undewriter\" is not among the registry's roles")
                && errs[0]
                    .message
                    .contains("did you mean \"senior_underwriter\"?"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn an_undefined_role_in_allowed_roles_is_an_error() {
        let bundle = example_with(|r| {
            r.replace(
                "allowed_roles: [support_agent, privacy_officer]",
                "allowed_roles: [support_agnt, privacy_officer]",
            )
        });
        let errs = errors(&bundle);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0]
                .message
                .contains("allows role `support_agnt`, which `roles` does not define"),
            "{}",
            errs[0]
        );
        assert_eq!(
            errs[0].line,
            line_of(&bundle.files[REGISTRY_FILE], "support_agnt")
        );
    }

    #[test]
    fn an_agent_without_an_owner_is_a_warning_at_its_entry() {
        let compiled = compile(&example_with(str::to_owned)).expect("the example compiles");
        let unowned: Vec<&Diagnostic> = compiled
            .warnings
            .iter()
            .filter(|d| d.message.contains("names no owner"))
            .collect();
        // agent-legacy-1 is the example's one agent without an owner.
        assert_eq!(unowned.len(), 1, "{unowned:?}");
        assert!(unowned[0].message.contains("agent `agent-legacy-1`"));
        let text = &example_with(str::to_owned).files[REGISTRY_FILE];
        assert_eq!(unowned[0].line, line_of(text, "- id: agent-legacy-1"));

        // A blank owner is no owner either; naming one clears the warning.
        let bundle = example_with(|r| {
            r.replace(
                "    owner: priya.shah@meridian.example\n",
                "    owner: \"  \"\n",
            )
            .replace(
                "    team: support\n    environment: dev\n    status: disabled\n",
                "    team: support\n    owner: dana.lee@example.com\n    environment: dev\n    status: disabled\n",
            )
        });
        let compiled = compile(&bundle).expect("still compiles");
        let unowned: Vec<&str> = compiled
            .warnings
            .iter()
            .filter(|d| d.message.contains("names no owner"))
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(unowned.len(), 1, "{unowned:?}");
        assert!(unowned[0].contains("meridian-loan-agent"), "{unowned:?}");
    }

    #[test]
    fn a_tool_that_needs_approval_must_name_its_approver_group() {
        assert!(errors(&example_with(str::to_owned)).is_empty());

        // Approval by its category (transfer), with no approval block at all.
        let bundle = example_with(|r| {
            r.replace(
                "    approval: { approver_group: treasury-approvers, timeout_seconds: 1800 }\n",
                "",
            )
        });
        let errs = errors(&bundle);
        let text = &bundle.files[REGISTRY_FILE];
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].file, REGISTRY_FILE);
        assert_eq!(errs[0].line, line_of(text, "category: transfer"));
        assert!(
            errs[0]
                .message
                .contains("tool `transfer_funds` needs approval (its category is delete, transfer or publish) but names no approver_group"),
            "{}",
            errs[0]
        );

        // Required explicitly, with a block that names no group.
        let bundle = example_with(|r| {
            r.replace(
                "approval: { required: true, approver_group: senior-underwriters, timeout_seconds: 3600 }",
                "approval: { required: true, timeout_seconds: 3600 }",
            )
        });
        let errs = errors(&bundle);
        let text = &bundle.files[REGISTRY_FILE];
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].line,
            line_of(text, "approval: { required: true, timeout_seconds: 3600 }")
        );
        assert!(errs[0].message.contains("names no approver_group"));

        // An empty group is no group.
        let bundle = example_with(|r| {
            r.replace("approver_group: privacy-approvers", "approver_group: \"\"")
        });
        assert_eq!(errors(&bundle).len(), 1);

        // A tool that opts out of approval needs no group.
        let bundle = example_with(|r| {
            r.replace(
                "approval: { approver_group: treasury-approvers, timeout_seconds: 1800 }",
                "approval: { required: false }",
            )
        });
        assert!(errors(&bundle).is_empty());
    }

    #[test]
    fn limits_that_cannot_mean_anything_are_errors_at_their_line() {
        let cases = [
            (
                "run_limits: { max_calls: 20, max_seconds: 60, max_cost_usd: 2 }",
                "run_limits: { max_calls: 0, max_seconds: 60, max_cost_usd: 2 }",
                "run_limits.max_calls of agent `meridian-loan-agent` must be above zero",
            ),
            (
                "    max_cost_usd: 50\n",
                "    max_cost_usd: 0\n",
                "budget `user-daily` must allow more than $0",
            ),
            (
                "rate_limit: { limit: 50, per: user, window_seconds: 86400 }",
                "rate_limit: { limit: 50, per: user, window_seconds: 0 }",
                "rate_limit of tool `pull_credit_report` needs a limit above zero",
            ),
            (
                "anomaly: { threshold_percent: 150 }",
                "anomaly: { threshold_percent: 90 }",
                "anomaly.threshold_percent of agent `meridian-loan-agent` must be above 100",
            ),
            (
                "  - id: org-daily",
                "  - id: user-daily",
                "budget `user-daily` is defined twice",
            ),
        ];
        for (from, to, message) in cases {
            let bundle = example_with(|r| {
                assert!(r.contains(from), "{from}");
                r.replacen(from, to, 1)
            });
            let errs = errors(&bundle);
            assert_eq!(errs.len(), 1, "{to}: {errs:?}");
            assert!(errs[0].message.contains(message), "{}", errs[0]);
            let text = &bundle.files[REGISTRY_FILE];
            let expected = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(to.trim()))
                .map(|(i, _)| i + 1)
                .last()
                .unwrap();
            assert_eq!(errs[0].line, expected, "{to}: {}", errs[0]);
        }
        // A negative amount is refused by the parser, with its line.
        let bundle = example_with(|r| r.replacen("cost_usd: 0.05", "cost_usd: -0.05", 1));
        let diags = compile(&bundle).unwrap_err();
        assert!(
            diags
                .iter()
                .any(|d| d.message.contains("is not an amount of dollars")
                    && d.line == line_of(&bundle.files[REGISTRY_FILE], "cost_usd: -0.05")),
            "{diags:?}"
        );
    }
}
