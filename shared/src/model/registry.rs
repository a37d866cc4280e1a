//! The registry: agents with their grants, tools with their risk profile, and roles.
//!
//! This is what a policy directory's `registry.yaml` holds. It becomes Cedar
//! entities in [`crate::policy`]; nothing here evaluates anything.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much harm a tool call can do, ordered `low < medium < high < critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Reads public or internal data.
    Low,
    /// Reads sensitive data or makes a reversible change.
    Medium,
    /// Makes a change with business or legal standing.
    High,
    /// Moves money, deletes data, or speaks for the organization.
    Critical,
}

impl Risk {
    /// Every level, lowest first.
    pub const ALL: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

    /// The level as the integer Cedar policies compare (`low` = 1 … `critical` = 4).
    pub fn level(self) -> i64 {
        match self {
            Risk::Low => 1,
            Risk::Medium => 2,
            Risk::High => 3,
            Risk::Critical => 4,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no risk level.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown risk `{0}`, expected one of low, medium, high, critical")]
pub struct UnknownRiskError(pub String);

impl FromStr for Risk {
    type Err = UnknownRiskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Risk::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRiskError(s.to_owned()))
    }
}

/// The deployment environment an agent belongs to and a control plane runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development: synthetic data.
    Dev,
    /// Staging: anonymized production data.
    Stage,
    /// Production: real data.
    Prod,
}

impl Environment {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Stage => "stage",
            Environment::Prod => "prod",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no environment.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown environment `{0}`, expected one of dev, stage, prod")]
pub struct UnknownEnvironmentError(pub String);

impl FromStr for Environment {
    type Err = UnknownEnvironmentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dev" => Ok(Environment::Dev),
            "stage" => Ok(Environment::Stage),
            "prod" => Ok(Environment::Prod),
            other => Err(UnknownEnvironmentError(other.to_owned())),
        }
    }
}

/// Whether an agent may act at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// The agent may act within its grants.
    #[default]
    Active,
    /// Every call is denied (`agent_disabled`): the containment switch.
    Disabled,
}

impl AgentStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Disabled => "disabled",
        }
    }
}

/// What a tool does, which decides whether it needs human approval by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Reads data.
    Read,
    /// Creates or changes records.
    Write,
    /// Deletes data.
    Delete,
    /// Moves money or assets.
    Transfer,
    /// Publishes to an audience outside the agent's team.
    Publish,
    /// Runs code or commands.
    Execute,
    /// Changes configuration, identities or permissions.
    Admin,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 7] = [
        Category::Read,
        Category::Write,
        Category::Delete,
        Category::Transfer,
        Category::Publish,
        Category::Execute,
        Category::Admin,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Read => "read",
            Category::Write => "write",
            Category::Delete => "delete",
            Category::Transfer => "transfer",
            Category::Publish => "publish",
            Category::Execute => "execute",
            Category::Admin => "admin",
        }
    }

    /// Whether calls of this category wait for a human unless the tool says otherwise.
    pub fn requires_approval_by_default(self) -> bool {
        matches!(
            self,
            Category::Delete | Category::Transfer | Category::Publish
        )
    }
}

/// Who a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitScope {
    /// Per user the agents act for.
    User,
    /// Per agent.
    Agent,
    /// Per organization of the users the agents act for (all agents together).
    #[serde(alias = "organization")]
    Org,
    /// Per agent session (`session_id`); calls without one share one bucket per agent.
    Session,
}

impl RateLimitScope {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitScope::User => "user",
            RateLimitScope::Agent => "agent",
            RateLimitScope::Org => "org",
            RateLimitScope::Session => "session",
        }
    }
}

/// An amount of US dollars, kept as whole micro-dollars so that sums are
/// exact. Written in policy files as a number (`2`, `0.35`); more than six
/// decimal places are rounded to the nearest micro-dollar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(pub u64);

impl Usd {
    /// The largest amount a policy may name: one billion dollars.
    pub const MAX: Usd = Usd(1_000_000_000 * 1_000_000);

    /// The amount in micro-dollars.
    pub fn micros(self) -> u64 {
        self.0
    }

    /// The amount as a decimal number of dollars, for answers and reports.
    pub fn dollars(self) -> f64 {
        // Exact for every amount below 2^53 micro-dollars (9 billion dollars).
        self.0 as f64 / 1e6
    }

    /// Dollars to micro-dollars, refusing what no budget can mean.
    pub fn from_dollars(d: f64) -> Result<Usd, String> {
        if !d.is_finite() || d < 0.0 {
            return Err(format!(
                "`{d}` is not an amount of dollars (a number, 0 or more)"
            ));
        }
        let micros = (d * 1e6).round();
        if micros > Usd::MAX.0 as f64 {
            return Err(format!(
                "`{d}` dollars is more than the largest amount, 1000000000"
            ));
        }
        // In range and rounded: the conversion is exact.
        Ok(Usd(micros as u64))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cents always, further digits only when the amount has them: $2.00, $0.0125.
        let fraction = format!("{:06}", self.0 % 1_000_000);
        let fraction = fraction.trim_end_matches('0');
        write!(f, "${}.{fraction:0<2}", self.0 / 1_000_000)
    }
}

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let dollars = f64::deserialize(d)?;
        Usd::from_dollars(dollars).map_err(serde::de::Error::custom)
    }
}

/// Limits on one run of an agent: one task, named by the `run_id` the agent
/// sends with each call. A run starts at its first decision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLimits {
    /// Tool calls allowed in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Seconds a run may last, from its first decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u64>,
    /// Dollars one run may spend: reported model usage plus the tools' `cost_usd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<Usd>,
    /// Model tokens one run may use, as the agent reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

impl RunLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_calls.is_some()
            || self.max_seconds.is_some()
            || self.max_cost_usd.is_some()
            || self.max_tokens.is_some()
    }
}

/// Who a cost budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    /// Each user, across every agent that acts for them.
    User,
    /// Each organization, across every agent and user.
    #[serde(alias = "organization")]
    Org,
}

impl BudgetScope {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::User => "user",
            BudgetScope::Org => "org",
        }
    }
}

/// A cost budget, e.g. $50 per underwriter per day across all agents (seed 003).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// The budget's name, unique in the registry; its counters are kept under it.
    pub id: String,
    /// Who is counted.
    pub per: BudgetScope,
    /// Dollars allowed per window: tools' `cost_usd` plus reported model usage.
    pub max_cost_usd: Usd,
    /// Window length in seconds (fixed windows; 86400 is a UTC day).
    pub window_seconds: u64,
}

/// How an agent's call rate is watched for anomalies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySpec {
    /// The alert fires when the agent version's calls in the current hour
    /// exceed this percentage of its trailing 7-day hourly average.
    #[serde(default = "default_anomaly_percent")]
    pub threshold_percent: u32,
    /// Whether an alert also disables the agent version (a recorded control event).
    #[serde(default)]
    pub auto_disable: bool,
}

/// 150%: the seed's threshold.
pub fn default_anomaly_percent() -> u32 {
    150
}

impl Default for AnomalySpec {
    fn default() -> Self {
        Self {
            threshold_percent: default_anomaly_percent(),
            auto_disable: false,
        }
    }
}

/// A tool's rate limit, e.g. 50 per user per day (seed 003's credit bureau agreement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Calls allowed per window.
    pub limit: u32,
    /// Who is counted.
    pub per: RateLimitScope,
    /// Window length in seconds.
    pub window_seconds: u64,
}

/// A tool's human-approval settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Overrides the category default (delete, transfer and publish need approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// The group whose members may approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_group: Option<String>,
    /// How long a request may wait before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// The type of one tool argument, as Cedar sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgumentType {
    /// A JSON string; Cedar `String`.
    String,
    /// A JSON integer; Cedar `Long`.
    Long,
    /// A JSON boolean; Cedar `Bool`.
    Bool,
    /// A JSON number with up to four decimal places; Cedar `decimal`.
    Decimal,
}

impl ArgumentType {
    /// The Cedar schema type.
    pub fn cedar_type(self) -> &'static str {
        match self {
            ArgumentType::String => "String",
            ArgumentType::Long => "Long",
            ArgumentType::Bool => "Bool",
            ArgumentType::Decimal => "decimal",
        }
    }
}

/// One declared tool argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentSpec {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ArgumentType,
    /// Whether every call must carry it.
    #[serde(default)]
    pub required: bool,
    /// Whether approvers see it masked. Default: masked when the tool's
    /// classification is `pii`, shown otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<bool>,
}

/// A registered tool and its risk profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The tool's name as MCP servers expose it.
    pub id: String,
    /// What it does, for reviewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What kind of effect it has.
    pub category: Category,
    /// How much harm one call can do.
    pub risk: Risk,
    /// The classification of the data it touches (`public`, `internal`, `pii`, …).
    pub classification: String,
    /// The user roles an agent may call it for. Empty means nobody.
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Calls allowed per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// What one allowed call costs, counted against the run and the budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<Usd>,
    /// Response fields stripped before the agent sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_filter: Vec<String>,
    /// Human approval settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
    /// Declared arguments; a call with any other argument is denied.
    #[serde(default)]
    pub arguments: BTreeMap<String, ArgumentSpec>,
    /// The upstream MCP server (a `servers:` id) that executes the tool
    /// for calls through the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The tool's name on that server, when it is not the tool's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tool: Option<String>,
    /// Exactly-once execution of calls through the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<super::IdempotencySpec>,
}

impl ToolSpec {
    /// Whether approvers see argument `name` masked: as the argument says,
    /// else when the tool's data is personal (`pii`). Undeclared arguments
    /// never reach approvers (they are denied).
    pub fn masks(&self, name: &str) -> bool {
        self.arguments
            .get(name)
            .and_then(|a| a.masked)
            .unwrap_or(self.classification == "pii")
    }

    /// The arguments as approvers may see them: masked ones replaced.
    pub fn arguments_for_approvers(&self, arguments: &serde_json::Value) -> serde_json::Value {
        match arguments {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let shown = if self.masks(k) {
                            serde_json::Value::String(format!(
                                "•••• (masked: {})",
                                self.classification
                            ))
                        } else {
                            v.clone()
                        };
                        (k.clone(), shown)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The tool's name on its upstream server.
    pub fn upstream_name(&self) -> &str {
        self.upstream_tool.as_deref().unwrap_or(&self.id)
    }

    /// Whether an allowed call still waits for a human.
    pub fn requires_approval(&self) -> bool {
        self.approval
            .as_ref()
            .and_then(|a| a.required)
            .unwrap_or_else(|| self.category.requires_approval_by_default())
    }
}

/// One grant: the seed's `(agent_id, tool_id)` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// The granted tool.
    pub tool: String,
    /// Lowers the agent's ceiling for this tool only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_ceiling: Option<Risk>,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The agent's identity, as its credential names it.
    pub id: String,
    /// What it does, for reviewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The team that owns it.
    pub team: String,
    /// The person accountable for it (an email address or a name), as the
    /// model inventory and access reviews name them. An agent without one
    /// is a finding of every access review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The environment it may run in.
    pub environment: Environment,
    /// Whether it may act.
    #[serde(default)]
    pub status: AgentStatus,
    /// The agent version this registration describes.
    pub version: String,
    /// The highest risk it may ever take.
    pub risk_ceiling: Risk,
    /// The tools it may call.
    #[serde(default)]
    pub grants: Vec<GrantSpec>,
    /// The AWS IAM roles or users the agent runs as
    /// (`arn:aws:iam::123456789012:role/support-agent`). On AWS, an agent is
    /// whoever API Gateway's IAM authorizer verified, mapped here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// The OAuth client ids its MCP client authenticates as at the AWS
    /// gateway's `/oauth/mcp` (the access token's client claim, `client_id`
    /// by default): for MCP clients that speak MCP authorization rather
    /// than sign their requests with AWS credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oauth_clients: Vec<String>,
    /// Limits on each of its runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_limits: Option<RunLimits>,
    /// How its call rate is watched; the default threshold applies when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalySpec>,
}

/// The IAM identity an ARN names, in one form for roles whatever their path
/// and for the sessions assumed from them:
/// `arn:aws:sts::123:assumed-role/NAME/SESSION` and
/// `arn:aws:iam::123:role/some/path/NAME` both become
/// `arn:aws:iam::123:role/NAME`. `None` for anything that is not an IAM role
/// or user ARN.
pub fn iam_principal(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if partition.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (kind, name) = match (service, resource.split_once('/')) {
        ("sts", Some(("assumed-role", rest))) => ("role", rest.split('/').next()?),
        ("iam", Some(("role", rest))) => ("role", rest.rsplit('/').next()?),
        ("iam", Some(("user", rest))) => ("user", rest.rsplit('/').next()?),
        _ => return None,
    };
    (!name.is_empty()).then(|| format!("arn:{partition}:iam::{account}:{kind}/{name}"))
}

#[cfg(test)]
mod masking_tests {
    use super::*;

    fn tool(classification: &str, masked: Option<bool>) -> ToolSpec {
        let arg = |masked| ArgumentSpec {
            ty: ArgumentType::String,
            required: true,
            masked,
        };
        ToolSpec {
            id: "t".into(),
            description: None,
            category: Category::Delete,
            risk: Risk::High,
            classification: classification.into(),
            allowed_roles: Vec::new(),
            rate_limit: None,
            cost_usd: None,
            response_filter: Vec::new(),
            approval: None,
            server: None,
            upstream_tool: None,
            idempotency: None,
            arguments: [
                ("a".to_owned(), arg(masked)),
                ("b".to_owned(), arg(Some(false))),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn personal_data_is_masked_unless_an_argument_says_otherwise() {
        let args = serde_json::json!({"a": "C-98121", "b": "erasure request 7"});
        let shown = tool("pii", None).arguments_for_approvers(&args);
        assert_eq!(shown["a"], "•••• (masked: pii)");
        assert_eq!(shown["b"], "erasure request 7");
        let shown = tool("internal", None).arguments_for_approvers(&args);
        assert_eq!(shown["a"], "C-98121");
        let shown = tool("internal", Some(true)).arguments_for_approvers(&args);
        assert_eq!(shown["a"], "•••• (masked: internal)");
    }
}

#[cfg(test)]
mod principal_tests {
    use super::iam_principal;

    #[test]
    fn roles_sessions_and_paths_name_one_principal() {
        let role = Some("arn:aws:iam::123456789012:role/support-agent".to_owned());
        assert_eq!(
            iam_principal("arn:aws:iam::123456789012:role/support-agent"),
            role
        );
        assert_eq!(
            iam_principal("arn:aws:iam::123456789012:role/agents/support-agent"),
            role
        );
        assert_eq!(
            iam_principal("arn:aws:sts::123456789012:assumed-role/support-agent/session-1"),
            role
        );
        assert_eq!(
            iam_principal("arn:aws:iam::123456789012:user/ci"),
            Some("arn:aws:iam::123456789012:user/ci".to_owned())
        );
        for bad in [
            "",
            "support-agent",
            "arn:aws:iam::12345:role/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:federated-user/x",
        ] {
            assert_eq!(iam_principal(bad), None, "{bad}");
        }
    }
}

impl AgentSpec {
    /// The ceiling for one granted tool: the lower of the agent's and the grant's.
    pub fn ceiling_for(&self, grant: &GrantSpec) -> Risk {
        grant
            .risk_ceiling
            .map_or(self.risk_ceiling, |g| g.min(self.risk_ceiling))
    }
}

/// A user role, optionally inheriting others (`senior_underwriter` inherits `underwriter`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// The role's name, as identity tokens carry it.
    pub id: String,
    /// Roles whose permissions this one includes.
    #[serde(default)]
    pub inherits: Vec<String>,
}

/// The whole registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Role hierarchy.
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    /// Registered tools.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Registered agents.
    #[serde(default)]
    pub agents: Vec<AgentSpec>,
    /// Cost budgets, summed over all agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetSpec>,
    /// The upstream MCP servers the gateway forwards to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<super::ServerSpec>,
    /// Which environments review high-risk policy changes, and who reviews
    /// them; absent: `prod`, by `policy-reviewers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_review: Option<ChangeReviewSpec>,
}

/// Change management: in the environments named here, a high-risk policy
/// change activates only once a member of `reviewers_group` other than its
/// author approves it, and `publish`/`activate` are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeReviewSpec {
    /// The environments whose policy changes are reviewed.
    #[serde(default = "default_review_environments")]
    pub environments: Vec<Environment>,
    /// The approver group whose members review them.
    #[serde(default = "default_reviewers_group")]
    pub reviewers_group: String,
}

fn default_review_environments() -> Vec<Environment> {
    vec![Environment::Prod]
}

fn default_reviewers_group() -> String {
    "policy-reviewers".to_owned()
}

impl Default for ChangeReviewSpec {
    fn default() -> Self {
        Self {
            environments: default_review_environments(),
            reviewers_group: default_reviewers_group(),
        }
    }
}

impl Registry {
    /// The server named `id`.
    pub fn server(&self, id: &str) -> Option<&super::ServerSpec> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// The change-review settings, with their defaults.
    pub fn change_review(&self) -> ChangeReviewSpec {
        self.change_review.clone().unwrap_or_default()
    }
}
