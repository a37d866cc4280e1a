//! The decision engine: one policy version, compiled into Cedar entities and
//! indexed policies, answering [`DecisionInput`]s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::index::PolicyIndex;
use super::CompiledPolicies;
use crate::model::{
    AgentSpec, ArgumentType, Decision, Environment, Reason, ReasonCode, Registry, Risk, ToolSpec,
    UserContext,
};

/// The policy version an engine serves, named in every decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionRef {
    /// The version id.
    pub id: String,
    /// The content hash of the version's bundle.
    pub content_hash: String,
}

/// Building an engine failed; [`super::compile`] should have caught it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An entity could not be built.
    #[error("cannot build Cedar entities from the registry")]
    Entities(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The policy index could not be built.
    #[error("cannot index the policies")]
    Index(#[from] Box<cedar_policy::PolicySetError>),
}

/// One question to the engine. The agent id comes from the authenticated
/// credential and the user from a verified token; the caller guarantees both.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    /// The authenticated agent.
    pub agent_id: &'a str,
    /// The verified user it acts for.
    pub user: &'a UserContext,
    /// The tool it wants to call.
    pub tool_id: &'a str,
    /// The risk the agent declares, if any.
    pub requested_risk: Option<Risk>,
    /// The call's arguments (a JSON object).
    pub arguments: &'a serde_json::Value,
    /// The agent's session.
    pub session_id: Option<&'a str>,
    /// The environment the control plane runs in.
    pub environment: Environment,
    /// The time of the request.
    pub now: OffsetDateTime,
}

/// The engine's answer, before it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The outcome.
    pub decision: Decision,
    /// Why, most fundamental first.
    pub reasons: Vec<Reason>,
    /// The policies that determined it.
    pub determining_policies: Vec<String>,
    /// Evaluation errors (any error denies).
    pub errors: Vec<String>,
    /// The agent's registered version.
    pub agent_version: Option<String>,
    /// What enforcing the log-only policies would have decided, when it
    /// differs.
    pub shadow: Option<crate::model::ShadowOutcome>,
}

impl Evaluation {
    fn deny(code: ReasonCode, message: String, agent_version: Option<String>) -> Self {
        Evaluation {
            decision: Decision::Deny,
            reasons: vec![Reason {
                code,
                message,
                policy_id: None,
            }],
            determining_policies: Vec::new(),
            errors: Vec::new(),
            agent_version,
            shadow: None,
        }
    }

    /// The reason codes, in order.
    pub fn codes(&self) -> Vec<ReasonCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }
}

struct AgentEntry {
    spec: AgentSpec,
    uid: EntityUid,
}

struct ToolEntry {
    spec: ToolSpec,
    uid: EntityUid,
    action: EntityUid,
}

/// A compiled policy version, ready to decide.
pub struct PolicyEngine {
    version: PolicyVersionRef,
    compiled: CompiledPolicies,
    agents: HashMap<String, AgentEntry>,
    principals: HashMap<String, String>,
    /// OAuth client id → agent id.
    oauth_clients: HashMap<String, String>,
    tools: HashMap<String, ToolEntry>,
    role_closure: HashMap<String, BTreeSet<String>>,
    entities: Entities,
    index: PolicyIndex,
    policy_reasons: HashMap<PolicyId, (ReasonCode, String)>,
    authorizer: Authorizer,
    /// Every policy, the log-only ones included, when there are any: what
    /// would be decided if they were enforced.
    with_shadow: Option<PolicySet>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("version", &self.version)
            .field("agents", &self.agents.len())
            .field("tools", &self.tools.len())
            .finish_non_exhaustive()
    }
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, EngineError> {
    let ty = EntityTypeName::from_str(ty).map_err(|e| EngineError::Entities(Box::new(e)))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn entity_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> EngineError {
    EngineError::Entities(Box::new(e))
}

impl PolicyEngine {
    /// Builds the engine for one compiled version.
    pub fn new(compiled: CompiledPolicies, version: PolicyVersionRef) -> Result<Self, EngineError> {
        let reg = &compiled.registry;
        let mut entities = Vec::new();
        let mut agents = HashMap::new();
        let mut teams = BTreeSet::new();
        let tool_specs: HashMap<&str, &ToolSpec> =
            reg.tools.iter().map(|t| (t.id.as_str(), t)).collect();
        for a in &reg.agents {
            let agent_uid = uid("Agent", &a.id)?;
            let team_uid = uid("Team", &a.team)?;
            teams.insert(a.team.clone());
            let attrs = [
                ("team", RestrictedExpression::new_string(a.team.clone())),
                (
                    "environment",
                    RestrictedExpression::new_string(a.environment.to_string()),
                ),
                (
                    "status",
                    RestrictedExpression::new_string(a.status.as_str().to_owned()),
                ),
                (
                    "version",
                    RestrictedExpression::new_string(a.version.clone()),
                ),
                (
                    "risk_ceiling",
                    RestrictedExpression::new_long(a.risk_ceiling.level()),
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v));
            // A grant is a tag: tool id → the lower of the agent's and the grant's ceiling.
            let tags = a
                .grants
                .iter()
                .filter(|g| tool_specs.contains_key(g.tool.as_str()))
                .map(|g| {
                    (
                        g.tool.clone(),
                        RestrictedExpression::new_long(a.ceiling_for(g).level()),
                    )
                });
            entities.push(
                Entity::new_with_tags(agent_uid.clone(), attrs, [team_uid], tags)
                    .map_err(entity_err)?,
            );
            agents.insert(
                a.id.clone(),
                AgentEntry {
                    spec: a.clone(),
                    uid: agent_uid,
                },
            );
        }
        for t in teams {
            entities.push(Entity::with_uid(uid("Team", &t)?));
        }
        let mut tools = HashMap::new();
        for t in &reg.tools {
            let tool_uid = uid("Tool", &t.id)?;
            let roles = t
                .allowed_roles
                .iter()
                .map(|r| RestrictedExpression::new_string(r.clone()));
            let attrs = [
                ("tool_id", RestrictedExpression::new_string(t.id.clone())),
                (
                    "category",
                    RestrictedExpression::new_string(t.category.as_str().to_owned()),
                ),
                ("risk", RestrictedExpression::new_long(t.risk.level())),
                (
                    "classification",
                    RestrictedExpression::new_string(t.classification.clone()),
                ),
                ("allowed_roles", RestrictedExpression::new_set(roles)),
                (
                    "requires_approval",
                    RestrictedExpression::new_bool(t.requires_approval()),
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into_iter()
            .collect();
            entities
                .push(Entity::new(tool_uid.clone(), attrs, HashSet::new()).map_err(entity_err)?);
            tools.insert(
                t.id.clone(),
                ToolEntry {
                    spec: t.clone(),
                    uid: tool_uid,
                    action: uid("Action", &t.id)?,
                },
            );
        }
        // With the schema, the store also holds the action entities, so that
        // `action in Action::"category:delete"` sees each tool's category.
        let entities =
            Entities::from_entities(entities, Some(&compiled.schema)).map_err(entity_err)?;
        let index = PolicyIndex::build(&compiled.policies, reg)?;
        let with_shadow = if compiled.shadow_ids.is_empty() {
            None
        } else {
            let mut all = compiled.policies.clone();
            for p in compiled.shadow.policies() {
                all.add(p.clone())
                    .map_err(|e| EngineError::Index(Box::new(e)))?;
            }
            Some(all)
        };
        let policy_reasons = compiled
            .policies
            .policies()
            .map(|p| {
                let code = p
                    .annotation("reason")
                    .and_then(ReasonCode::parse)
                    .unwrap_or(ReasonCode::ForbiddenByPolicy);
                let message = p.annotation("message").map_or_else(
                    || format!("forbidden by policy `{}`", p.id()),
                    str::to_owned,
                );
                (p.id().clone(), (code, message))
            })
            .collect();
        let principals = reg
            .agents
            .iter()
            .flat_map(|a| {
                a.principals
                    .iter()
                    .filter_map(|p| crate::model::iam_principal(p))
                    .map(|p| (p, a.id.clone()))
            })
            .collect();
        let oauth_clients = reg
            .agents
            .iter()
            .flat_map(|a| a.oauth_clients.iter().map(|c| (c.clone(), a.id.clone())))
            .collect();
        Ok(PolicyEngine {
            principals,
            oauth_clients,
            role_closure: role_closure(reg),
            version,
            agents,
            tools,
            entities,
            index,
            policy_reasons,
            authorizer: Authorizer::new(),
            with_shadow,
            compiled,
        })
    }

    /// The version this engine serves.
    pub fn version(&self) -> &PolicyVersionRef {
        &self.version
    }

    /// The registry of this version.
    pub fn registry(&self) -> &Registry {
        &self.compiled.registry
    }

    /// The compiled bundle.
    pub fn compiled(&self) -> &CompiledPolicies {
        &self.compiled
    }

    /// A registered tool.
    pub fn tool(&self, id: &str) -> Option<&ToolSpec> {
        self.tools.get(id).map(|t| &t.spec)
    }

    /// The agent an IAM principal (role, assumed-role session or user ARN) runs as.
    pub fn agent_for_principal(&self, arn: &str) -> Option<&str> {
        let principal = crate::model::iam_principal(arn)?;
        self.principals.get(&principal).map(String::as_str)
    }

    /// The agent whose MCP client authenticates as OAuth client `client`.
    pub fn agent_for_oauth_client(&self, client: &str) -> Option<&str> {
        self.oauth_clients.get(client).map(String::as_str)
    }

    /// A registered agent.
    pub fn agent(&self, id: &str) -> Option<&AgentSpec> {
        self.agents.get(id).map(|a| &a.spec)
    }

    /// Decides, evaluating only the policies relevant to this agent and tool.
    pub fn decide(&self, input: &DecisionInput<'_>) -> Evaluation {
        self.decide_inner(input, false)
    }

    /// Decides by evaluating the whole policy set: the plain reference the
    /// selective path is tested and benchmarked against.
    pub fn decide_with_full_set(&self, input: &DecisionInput<'_>) -> Evaluation {
        self.decide_inner(input, true)
    }

    /// How many policies the selective path evaluates for `agent_id` calling
    /// `tool_id`, and how many the whole set holds; `None` for an unknown
    /// agent or tool, or a selection that fails. It shows that tests of the
    /// selective path exercise selection, not the whole set by another name.
    pub fn selection_size(&self, agent_id: &str, tool_id: &str) -> Option<(usize, usize)> {
        let agent = self.agents.get(agent_id)?;
        self.tools.get(tool_id)?;
        let total = self.compiled.policies.policies().count();
        if let Some(set) = self.index.prepared(agent_id, tool_id) {
            return Some((set.policies().count(), total));
        }
        let set = self
            .index
            .assemble(&agent.spec.id, &agent.spec.team, tool_id)
            .ok()?;
        Some((set.policies().count(), total))
    }

    fn decide_inner(&self, input: &DecisionInput<'_>, full: bool) -> Evaluation {
        let Some(agent) = self.agents.get(input.agent_id) else {
            return Evaluation::deny(
                ReasonCode::UnknownAgent,
                format!("agent `{}` is not registered", input.agent_id),
                None,
            );
        };
        let agent_version = Some(agent.spec.version.clone());
        let Some(tool) = self.tools.get(input.tool_id) else {
            return Evaluation::deny(
                ReasonCode::UnknownTool,
                format!("tool `{}` is not registered", input.tool_id),
                agent_version,
            );
        };
        let arguments = match arguments_expr(&tool.spec, input.arguments) {
            Ok(a) => a,
            Err(message) => {
                return Evaluation::deny(ReasonCode::InvalidArguments, message, agent_version)
            }
        };
        let request = match self.request(agent, tool, input, arguments) {
            Ok(r) => r,
            Err(message) => {
                return Evaluation::deny(ReasonCode::PolicyEvaluationError, message, agent_version)
            }
        };
        let assembled;
        let set: &PolicySet = if full {
            &self.compiled.policies
        } else if let Some(set) = self.index.prepared(input.agent_id, input.tool_id) {
            set
        } else {
            match self
                .index
                .assemble(&agent.spec.id, &agent.spec.team, input.tool_id)
            {
                Ok(s) => {
                    assembled = s;
                    &assembled
                }
                Err(e) => {
                    return Evaluation::deny(
                        ReasonCode::PolicyEvaluationError,
                        format!("cannot select policies: {e}"),
                        agent_version,
                    )
                }
            }
        };
        let response = self.authorizer.is_authorized(&request, set, &self.entities);
        let enforced = if response.diagnostics().errors().next().is_some() {
            cedar_policy::Decision::Deny
        } else {
            response.decision()
        };
        let mut evaluation = self.interpret(&response, &tool.spec, agent_version);
        evaluation.shadow = self.shadow(&request, enforced);
        evaluation
    }

    fn request(
        &self,
        agent: &AgentEntry,
        tool: &ToolEntry,
        input: &DecisionInput<'_>,
        arguments: RestrictedExpression,
    ) -> Result<Request, String> {
        let mut roles = BTreeSet::new();
        for r in &input.user.roles {
            match self.role_closure.get(r) {
                Some(closure) => roles.extend(closure.iter().cloned()),
                None => {
                    roles.insert(r.clone());
                }
            }
        }
        let mut user = vec![
            (
                "id".to_owned(),
                RestrictedExpression::new_string(input.user.id.clone()),
            ),
            (
                "roles".to_owned(),
                RestrictedExpression::new_set(
                    roles.into_iter().map(RestrictedExpression::new_string),
                ),
            ),
        ];
        if let Some(org) = &input.user.organization {
            user.push((
                "organization".to_owned(),
                RestrictedExpression::new_string(org.clone()),
            ));
        }
        let user = RestrictedExpression::new_record(user).map_err(|e| e.to_string())?;
        let risk = input
            .requested_risk
            .map_or(tool.spec.risk, |r| r.max(tool.spec.risk));
        let now = RestrictedExpression::new_record([
            (
                "timestamp".to_owned(),
                RestrictedExpression::new_long(input.now.unix_timestamp()),
            ),
            (
                "hour_utc".to_owned(),
                RestrictedExpression::new_long(i64::from(input.now.hour())),
            ),
            (
                "weekday".to_owned(),
                RestrictedExpression::new_long(i64::from(input.now.weekday().number_from_monday())),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let mut pairs = vec![
            ("user".to_owned(), user),
            (
                "environment".to_owned(),
                RestrictedExpression::new_string(input.environment.to_string()),
            ),
            (
                "risk".to_owned(),
                RestrictedExpression::new_long(risk.level()),
            ),
            ("now".to_owned(), now),
            ("arguments".to_owned(), arguments),
        ];
        if let Some(r) = input.requested_risk {
            pairs.push((
                "requested_risk".to_owned(),
                RestrictedExpression::new_long(r.level()),
            ));
        }
        if let Some(s) = input.session_id {
            pairs.push((
                "session_id".to_owned(),
                RestrictedExpression::new_string(s.to_owned()),
            ));
        }
        let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
        Request::new(
            agent.uid.clone(),
            tool.action.clone(),
            tool.uid.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }

    fn interpret(
        &self,
        response: &cedar_policy::Response,
        tool: &ToolSpec,
        agent_version: Option<String>,
    ) -> Evaluation {
        let diagnostics = response.diagnostics();
        let mut determining: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        determining.sort();
        let errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
        let allowed = response.decision() == cedar_policy::Decision::Allow;
        let mut reasons = Vec::new();
        if !errors.is_empty() {
            reasons.push(Reason {
                code: ReasonCode::PolicyEvaluationError,
                message: format!(
                    "{} policy evaluation error(s); an error always denies: {}",
                    errors.len(),
                    errors.join("; ")
                ),
                policy_id: None,
            });
        }
        if !allowed {
            for id in diagnostics.reason() {
                let (code, message) = self.policy_reasons.get(id).cloned().unwrap_or((
                    ReasonCode::ForbiddenByPolicy,
                    format!("forbidden by policy `{id}`"),
                ));
                reasons.push(Reason {
                    code,
                    message,
                    policy_id: Some(id.to_string()),
                });
            }
            if reasons.is_empty() {
                reasons.push(Reason {
                    code: ReasonCode::NotPermitted,
                    message: "no policy permits this call".to_owned(),
                    policy_id: None,
                });
            }
        }
        reasons.sort_by(|a, b| (a.code, &a.policy_id).cmp(&(b.code, &b.policy_id)));
        let decision = if !allowed || !errors.is_empty() {
            Decision::Deny
        } else if tool.requires_approval() {
            reasons.push(Reason {
                code: ReasonCode::ApprovalRequired,
                message: format!(
                    "`{}` is a {} tool: a human must approve this call",
                    tool.id,
                    tool.category.as_str()
                ),
                policy_id: None,
            });
            Decision::PendingApproval
        } else {
            reasons.push(Reason {
                code: ReasonCode::Allowed,
                message: "the agent's grant, the user's role and the context all permit this call"
                    .to_owned(),
                policy_id: None,
            });
            Decision::Allow
        };
        Evaluation {
            decision,
            reasons,
            determining_policies: determining,
            errors,
            agent_version,
            shadow: None,
        }
    }

    /// What the call's policy decision would be with the log-only policies
    /// enforced too, if that differs from `enforced`'s.
    fn shadow(
        &self,
        request: &Request,
        enforced: cedar_policy::Decision,
    ) -> Option<crate::model::ShadowOutcome> {
        let with_shadow = self.with_shadow.as_ref()?;
        let response = self
            .authorizer
            .is_authorized(request, with_shadow, &self.entities);
        let errors = response.diagnostics().errors().next().is_some();
        let decision = if errors {
            cedar_policy::Decision::Deny
        } else {
            response.decision()
        };
        if decision == enforced {
            return None;
        }
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .filter(|id| self.compiled.shadow_ids.contains(id))
            .collect();
        policies.sort();
        Some(crate::model::ShadowOutcome {
            decision: match decision {
                cedar_policy::Decision::Allow => Decision::Allow,
                cedar_policy::Decision::Deny => Decision::Deny,
            },
            policies,
        })
    }
}

fn role_closure(reg: &Registry) -> HashMap<String, BTreeSet<String>> {
    let parents: HashMap<&str, &Vec<String>> = reg
        .roles
        .iter()
        .map(|r| (r.id.as_str(), &r.inherits))
        .collect();
    reg.roles
        .iter()
        .map(|r| {
            let mut all = BTreeSet::new();
            let mut stack = vec![r.id.as_str()];
            while let Some(cur) = stack.pop() {
                if all.insert(cur.to_owned()) {
                    if let Some(ps) = parents.get(cur) {
                        stack.extend(ps.iter().map(String::as_str));
                    }
                }
            }
            (r.id.clone(), all)
        })
        .collect()
}

/// Converts the call's arguments to a Cedar record typed by the tool's
/// declaration. Undeclared, mistyped or missing arguments are refused, so
/// that no argument reaches a tool unchecked by its policies.
fn arguments_expr(
    tool: &ToolSpec,
    args: &serde_json::Value,
) -> Result<RestrictedExpression, String> {
    use serde_json::Value;
    let empty = serde_json::Map::new();
    let map = match args {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err("`arguments` must be a JSON object".to_owned()),
    };
    let mut fields = Vec::with_capacity(map.len());
    for (name, value) in map {
        let Some(spec) = tool.arguments.get(name) else {
            return Err(format!(
                "argument `{name}` is not declared by tool `{}`",
                tool.id
            ));
        };
        let expr = match (spec.ty, value) {
            (ArgumentType::String, Value::String(s)) => RestrictedExpression::new_string(s.clone()),
            (ArgumentType::Long, Value::Number(n)) if n.as_i64().is_some() => {
                RestrictedExpression::new_long(n.as_i64().unwrap_or_default())
            }
            (ArgumentType::Bool, Value::Bool(b)) => RestrictedExpression::new_bool(*b),
            (ArgumentType::Decimal, Value::Number(n)) => match cedar_decimal(n) {
                Some(d) => RestrictedExpression::new_decimal(d),
                None => {
                    return Err(format!(
                        "argument `{name}` must be a decimal with at most 4 fractional digits"
                    ))
                }
            },
            (ty, _) => {
                return Err(format!(
                    "argument `{name}` must be of type {}",
                    serde_json::to_value(ty)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ))
            }
        };
        fields.push((name.clone(), expr));
    }
    for (name, spec) in &tool.arguments {
        if spec.required && !map.contains_key(name) {
            return Err(format!("tool `{}` requires argument `{name}`", tool.id));
        }
    }
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

/// A JSON number as Cedar decimal text (`12.5` → `12.5`, `3` → `3.0`), if it fits.
fn cedar_decimal(n: &serde_json::Number) -> Option<String> {
    let text = n.to_string();
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_owned(), f.to_owned()),
        None => (text.clone(), "0".to_owned()),
    };
    let digits_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let int_digits = int.strip_prefix('-').unwrap_or(&int);
    if !digits_ok(int_digits) || !digits_ok(&frac) || frac.len() > 4 {
        return None;
    }
    // Cedar decimals are i64 scaled by 10^4.
    format!("{int_digits}{frac:0<4}").parse::<i64>().ok()?;
    Some(format!("{int}.{frac}"))
}
