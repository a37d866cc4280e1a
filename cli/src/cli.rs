//! The command line: every command, flag and default in one place.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use governance::model::{Environment, Risk};

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".govctl";

/// Governance control plane for AI agents that call MCP tools.
#[derive(Debug, Parser)]
#[command(name = "govctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (e.g. `info`, `warn,decision=info`); default:
    /// `$GOVCTL_LOG`, else `info,rmcp=warn`; RUST_LOG overrides it.
    // Defaults read from the environment here, not with clap's `env`: clap
    // counts an argument set by its variable as given, and usage errors
    // would then show it as something to type.
    #[arg(long, global = true, default_value_t = env_or("GOVCTL_LOG", "info,rmcp=warn"))]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the local store and signing key live.
#[derive(Debug, Clone, Args)]
pub struct DataDir {
    /// Data directory (SQLite store, signing key); default:
    /// `$GOVCTL_DATA_DIR`, else `.govctl`.
    #[arg(long, value_name = "DIR", default_value_os_t = PathBuf::from(env_or("GOVCTL_DATA_DIR", DEFAULT_DATA_DIR)))]
    pub data_dir: PathBuf,
}

/// The variable `name` when it is set and not empty, else `default`.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The AWS stack whose policy change requests to read or write, instead
/// of the data directory's (`govctl` built with `--features aws`).
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// The stack of this environment (`agent-governance-ENV`); its
    /// reviewers answer on the stack's `/v1/changes/ID`.
    #[arg(long, value_parser = parse_env)]
    pub env: Option<Environment>,
    /// The stack's name, when it is not `agent-governance-ENV`.
    #[arg(long, requires = "env")]
    pub stack_name: Option<String>,
    /// Another endpoint for every AWS call (a local emulator).
    #[arg(long, requires = "env")]
    pub endpoint_url: Option<String>,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the local control plane: the authorize API over HTTP on an embedded store.
    Serve(ServeArgs),
    /// Validate, test, publish and roll back policy versions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Dry-run one decision against a policy directory and explain it.
    ///
    /// Exit status: 0 when the call would be allowed or wait for approval,
    /// 2 when it would be denied, 1 when the question cannot be answered
    /// (an invalid policy directory or argument).
    Authorize(AuthorizeArgs),
    /// Agent credentials.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// On-behalf-of user tokens.
    #[command(subcommand)]
    User(UserCommand),
    /// Approver tokens, for answering approval requests.
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// The tamper-evident audit trail: verify it, explain a decision, export it.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Recorded decisions.
    #[command(subcommand)]
    Decision(DecisionCommand),
    /// The registry: the agent inventory, and entries from upstream MCP servers.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Incident response: one agent's timeline.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Access reviews computed from the decision log.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Log-only (shadow) policies: what enforcing them would have changed.
    #[command(subcommand)]
    Shadow(ShadowCommand),
    /// Every agent version's call rate this hour against its 7-day hourly
    /// average, and the anomaly alerts raised.
    Anomalies {
        /// How many days of alerts to list.
        #[arg(long, default_value_t = 7)]
        days: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl registry …`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Propose registry entries for an upstream server's tools, from its
    /// `tools/list` and annotations (unannotated tools count as
    /// destructive); prints YAML to review and add under `tools:`.
    Import {
        /// The server, as `servers:` names it.
        #[arg(long)]
        server: String,
        /// The policy directory whose registry names the server.
        #[arg(long, default_value = "infra/policies")]
        policy: PathBuf,
        /// Whose endpoint to ask.
        #[arg(long, default_value = "dev", value_parser = parse_env)]
        environment: Environment,
        /// Where the server's credential is (`secrets/NAME`), when the
        /// environment does not hold it.
        #[command(flatten)]
        data: DataDir,
    },
    /// The agent inventory, for the model-inventory feed: every agent with
    /// its version, owner, team, environment, principals, tools (with risk
    /// and classification), limits and last activity (its newest decision
    /// in the data directory's log).
    Export {
        /// `csv` (one row per agent) or `json`.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
        /// The policy directory whose registry to list; default: the
        /// version active in the data directory.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Read last activity from an `audit export` or a copy of an AWS
        /// stack's evidence bucket (a directory) instead of the data directory.
        #[arg(long, value_name = "PATH", requires = "policy")]
        file: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl review …`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Per agent: grants never or rarely used and their last use, denials
    /// by reason, rate-limit and run-limit utilisation (peak against
    /// limit), tools whose classification changed since the grant, and
    /// agents without an owner; for the active policy version, from the
    /// decisions in the window.
    Access {
        /// Start, inclusive: RFC 3339, a date, or an age (`90d` ago).
        #[arg(long, default_value = "90d")]
        since: String,
        /// End, exclusive, in the same forms; default: now.
        #[arg(long)]
        until: Option<String>,
        /// `md`, `csv` (one row per grant) or `json`.
        #[arg(long, default_value = "md", value_parser = ["md", "csv", "json"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Read the trail from an `audit export` or a copy of an AWS
        /// stack's evidence bucket (a directory) instead of the data directory.
        #[arg(long, value_name = "PATH", requires = "policy")]
        file: Option<PathBuf>,
        /// The policy directory whose grants to review (with `--file`: the
        /// registry of the stack's active version).
        #[arg(long, value_name = "DIR")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Record a reviewer's outcome for one grant, as a control event in the
    /// audit trail (`access_reviewed`).
    Record {
        /// The agent.
        #[arg(long)]
        agent: String,
        /// The granted tool.
        #[arg(long)]
        tool: String,
        /// What to do with the grant.
        #[arg(long, value_parser = ["keep", "revoke", "recalibrate"])]
        outcome: String,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
        /// Who reviewed (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl shadow …`.
#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Per log-only policy: the decisions of the window it would have
    /// flipped (allows it would deny, denials it would allow), by agent and
    /// tool, with examples.
    Report {
        /// Start, inclusive: RFC 3339, a date, or an age (`7d` ago).
        #[arg(long, default_value = "7d")]
        since: String,
        /// End, exclusive, in the same forms; default: now.
        #[arg(long)]
        until: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Read the trail from an `audit export` or a copy of an AWS
        /// stack's evidence bucket (a directory) instead of the data directory.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl incident …`.
#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Every decision, execution, approval outcome and control event of one
    /// agent in a window, in order, with the chain positions that show the
    /// list is complete, and the containment at hand (disable, rollback).
    /// Exits 1 when a chain run does not verify.
    Timeline {
        /// The agent.
        #[arg(long)]
        agent: String,
        /// Only this registered version of it.
        #[arg(long, value_name = "VERSION")]
        agent_version: Option<String>,
        /// Start, inclusive: RFC 3339, a date, or an age (`90m`, `24h`, `7d` ago).
        #[arg(long, default_value = "24h")]
        since: String,
        /// End, exclusive, in the same forms; default: now.
        #[arg(long)]
        until: Option<String>,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Read the trail from an `audit export` or a copy of an AWS
        /// stack's evidence bucket (a directory) instead of the data directory.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
}

/// Approvers' sign-in with an OpenID Connect provider (`govctl serve`).
/// Without `--oidc-issuer`, approvers paste approver tokens.
#[derive(Debug, Args)]
pub struct SignInArgs {
    /// The provider's issuer URL; its discovery document is read from
    /// `/.well-known/openid-configuration`.
    #[arg(long, value_name = "URL", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,
    /// This server's client id at the provider (redirect URI:
    /// `PUBLIC_URL/v1/signin/callback`).
    #[arg(long, value_name = "ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// A file holding the client secret, for a confidential client; without
    /// it, a public client (PKCE only).
    #[arg(long, value_name = "FILE", requires = "oidc_issuer")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// The ID token claim listing the person's groups.
    #[arg(long, default_value = "groups", value_name = "CLAIM")]
    pub oidc_groups_claim: String,
    /// The ID token claim naming the person.
    #[arg(long, default_value = "sub", value_name = "CLAIM")]
    pub oidc_user_claim: String,
    /// A scope to ask for besides `openid` (repeat for several), such as
    /// `groups` or `email`.
    #[arg(long = "oidc-scope", value_name = "SCOPE")]
    pub oidc_scopes: Vec<String>,
    /// The URL approvers reach this server at (default: `http://LISTEN`).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The longest an approver's session lasts, in seconds.
    #[arg(long, default_value_t = 28_800, value_name = "SECONDS")]
    pub session_ttl: u64,
}

/// `govctl serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub data: DataDir,
    /// Policy directory to publish and activate at start-up; without it the
    /// active version is served, or the built-in example set on first start.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The environment this control plane runs in.
    #[arg(long, default_value = "dev", value_parser = parse_env)]
    pub environment: Environment,
    #[command(flatten)]
    pub signin: SignInArgs,
    /// Seconds between signed audit digests (written only when records were
    /// appended since the last one, and once more at shutdown).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub digest_interval: u64,
    /// Seconds between checks for a newly activated policy version.
    #[arg(long, default_value_t = 1)]
    pub reload_interval: u64,
    /// Seconds the served policy version may go unconfirmed as the active
    /// one (the store unreadable, or a newly activated version unloadable)
    /// before every call is denied with `policy_stale`. More than the
    /// reload interval.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub max_policy_staleness: u64,
    /// Seconds between checks of every agent version's call rate against
    /// its 7-day average (anomaly alerts).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub anomaly_interval: u64,
    /// Another `Host` name `/mcp` answers to when listening on a loopback
    /// address (by default only the loopback names, against DNS
    /// rebinding); repeat for several.
    #[arg(long, value_name = "HOST")]
    pub mcp_allowed_host: Vec<String>,
    /// Hold an MCP tool call that waits for human approval open for up to
    /// this many seconds, when its client asked for progress: it is told
    /// every 5 s that the call still waits, and gets the call's result as
    /// soon as the approval is granted. 0 (the default): answer at once
    /// that the call waits, and let the client repeat it once approved.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub mcp_hold_approval: u64,
    /// For tests of time-bound limits only: a file holding seconds to add
    /// to the clock decisions are made by (read at each decision).
    #[arg(long, hide = true, value_name = "FILE")]
    pub test_clock_offset_file: Option<PathBuf>,
}

/// `govctl policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy directory; print every problem with file, line and column.
    Validate {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Run a policy directory's test cases (tests/*.yaml).
    Test {
        /// The policy directory.
        dir: PathBuf,
        /// Print passing cases too.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Print the Cedar schema a policy directory's policies are validated against.
    Schema {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Validate, test and publish a directory as a new immutable version, and activate it.
    Publish {
        /// The policy directory.
        dir: PathBuf,
        /// Why this version exists.
        #[arg(long, short)]
        message: String,
        /// Who publishes (default: $USER).
        #[arg(long)]
        author: Option<String>,
        /// Store the version without activating it.
        #[arg(long)]
        no_activate: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// List versions, newest first; `*` marks the active one.
    Versions {
        #[command(flatten)]
        data: DataDir,
    },
    /// One stored version: who published it, when and why, its content
    /// hash, and its files (or one of them).
    Show {
        /// Version id or unique prefix (at least 6 characters).
        #[arg(value_name = "VERSION")]
        version_id: String,
        /// Print only this file of it (`registry.yaml`, `meridian.cedar`, …).
        #[arg(long)]
        file: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// What changed from version A to version B: per file, per registry
    /// entry, and a line diff.
    Diff {
        /// The older version (id or unique prefix).
        #[arg(value_name = "A")]
        from: String,
        /// The newer version (id or unique prefix).
        #[arg(value_name = "B")]
        to: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Validate, test and publish a directory as a new immutable version into an
    /// AWS stack's DynamoDB tables, and activate it. Credentials and region come
    /// from the standard AWS chain (environment, profile, SSO, instance role).
    Push {
        /// The policy directory.
        dir: PathBuf,
        /// The stack's environment; the stack is `agent-governance-ENV`.
        #[arg(long, value_parser = parse_env)]
        env: Environment,
        /// The stack's name, when it is not `agent-governance-ENV`.
        #[arg(long)]
        stack_name: Option<String>,
        /// Another endpoint for every AWS call (an emulator, a VPC endpoint).
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// Why this version exists.
        #[arg(long, short, default_value = "govctl policy push")]
        message: String,
        /// Who publishes (default: $USER).
        #[arg(long)]
        author: Option<String>,
        /// Store the version without activating it.
        #[arg(long)]
        no_activate: bool,
    },
    /// Propose a policy directory as a reviewed change: validated, tested
    /// and published without activating it, with its diff and risk class.
    /// A low-risk change, or any change where the environment does not
    /// review changes, activates at once; a high-risk one waits for a member
    /// of the reviewers group other than its author, on the page
    /// `/v1/changes/ID` of `govctl serve`.
    Propose {
        /// The policy directory.
        dir: PathBuf,
        /// Why this change.
        #[arg(long, short)]
        message: String,
        /// Who proposes: the identity you sign in to the approver page
        /// with, so that you cannot review your own change (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        data: DataDir,
    },
    /// Policy change requests, newest first.
    Changes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        data: DataDir,
    },
    /// One change request, with its risk reasons and per-file diff.
    Change {
        /// Change id or unique prefix (at least 6 characters).
        #[arg(value_name = "CHANGE")]
        change_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        data: DataDir,
    },
    /// Activate a stored version (id or unique prefix): a rollback or
    /// roll-forward. Where policy changes are reviewed, it opens a change
    /// request instead, which activates at once only if it is low-risk.
    #[command(visible_alias = "rollback")]
    Activate {
        /// Version id or prefix.
        #[arg(value_name = "VERSION")]
        version_id: String,
        /// Who activates (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl authorize`.
#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// Policy directory.
    #[arg(long)]
    pub policy: PathBuf,
    /// Agent id.
    #[arg(long)]
    pub agent: String,
    /// User id.
    #[arg(long)]
    pub user: String,
    /// User role (repeat for several).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// User organization.
    #[arg(long)]
    pub org: Option<String>,
    /// Tool id.
    #[arg(long)]
    pub tool: String,
    /// Arguments, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Risk the agent declares.
    #[arg(long, value_parser = parse_risk)]
    pub risk: Option<Risk>,
    /// Environment.
    #[arg(long, default_value = "dev", value_parser = parse_env)]
    pub environment: Environment,
    /// The run the call belongs to (agents with run limits must name one).
    #[arg(long)]
    pub run_id: Option<String>,
    /// When the call is made (RFC 3339, e.g. `2026-12-07T21:30:00Z`):
    /// time-of-day and date rules are evaluated at it; default: now.
    #[arg(long, value_parser = parse_time)]
    pub time: Option<time::OffsetDateTime>,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `govctl agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Mint a bearer credential for an agent, signed with the data directory's key.
    Token {
        /// Agent id.
        agent_id: String,
        /// Lifetime (e.g. 15m, 1h, 1d).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        #[command(flatten)]
        data: DataDir,
    },
    /// The kill switch: deny every call of an agent (or of one version of
    /// it) with `agent_disabled`, at once, until it is enabled again. Who,
    /// when and why is a control event in the audit trail.
    // `--version` names the agent's version here, not govctl's.
    #[command(disable_version_flag = true)]
    Disable {
        /// Agent id.
        agent_id: String,
        /// Only this registered version of the agent.
        #[arg(long)]
        version: Option<String>,
        /// Why: shown in every deny and in `audit explain`.
        #[arg(long)]
        reason: String,
        /// Who disables (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        target: SwitchTarget,
    },
    /// Switch a disabled agent (or version) back on.
    #[command(disable_version_flag = true)]
    Enable {
        /// Agent id.
        agent_id: String,
        /// The version, when only one was disabled.
        #[arg(long)]
        version: Option<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Who enables (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        target: SwitchTarget,
    },
    /// List the agents (and versions) disabled now.
    Disabled {
        #[command(flatten)]
        target: SwitchTarget,
    },
}

/// Where the kill switch is: the local data directory, or with `--env` an
/// AWS stack (its authorize functions apply a change within their refresh
/// interval).
#[derive(Debug, Clone, Args)]
pub struct SwitchTarget {
    #[command(flatten)]
    pub data: DataDir,
    /// The AWS stack's environment; the stack is `agent-governance-ENV`.
    #[arg(long, value_parser = parse_env)]
    pub env: Option<Environment>,
    /// The stack's name, when it is not `agent-governance-ENV`.
    #[arg(long, requires = "env")]
    pub stack_name: Option<String>,
    /// Another endpoint for every AWS call (an emulator, a VPC endpoint).
    #[arg(long, env = "AWS_ENDPOINT_URL", requires = "env")]
    pub endpoint_url: Option<String>,
}

/// `govctl user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Mint an X-On-Behalf-Of token for a user.
    Token {
        /// User id.
        user_id: String,
        /// Role (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Organization.
        #[arg(long)]
        org: Option<String>,
        /// Lifetime (e.g. 15m, 1h, 1d).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl approver …`.
#[derive(Debug, Subcommand)]
pub enum ApproverCommand {
    /// Mint a token an approver pastes into the approval page.
    Token {
        /// Approver id.
        approver_id: String,
        /// Approver group (repeat for several), as tools' `approval.approver_group` names them.
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// Lifetime (e.g. 15m, 1h, 1d).
        #[arg(long, default_value = "8h", value_parser = parse_ttl)]
        ttl: u64,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every hash link and signed digest; name the first broken link.
    /// Exits 1 when the trail was tampered with.
    Verify {
        /// The audit key's public half (64 hex digits) to check digests
        /// against; default: the key in the data directory. For a copy of
        /// the AWS evidence bucket, the key decision-log logs at cold start.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
        /// A digest kept from an earlier run (its number, or better its
        /// hash, as `govctl audit digest` prints it): the trail must still
        /// hold it, or the newest digests and the records they sealed were cut.
        #[arg(long, value_name = "N|HASH")]
        min_digest: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Verify JSON lines instead of the store: an export, or a copy of
        /// the evidence bucket (a directory is read whole; `-` reads
        /// standard input). Each chain may start anywhere.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// With `--file`, also hold the copy to the heads in this chain-head
        /// table (the stack's `AuditChainTableName` output); needs AWS
        /// credentials and a govctl built with the `aws` feature.
        #[arg(long, value_name = "TABLE", requires = "file")]
        chain_table: Option<String>,
        /// Another endpoint for the chain-head table (an emulator).
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Tell one decision's whole story: agent version, policy version and the
    /// text of the determining policies, the data touched, approvals, reasoning.
    Explain {
        /// Decision id.
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Write the records of a time range, both layers, oldest first.
    Export {
        /// Start, inclusive: RFC 3339 (`2026-01-07T00:00:00Z`), a date
        /// (`2026-01-07`), or an age (`90m`, `24h`, `30d` ago).
        #[arg(long, default_value = "1970-01-01")]
        since: String,
        /// End, exclusive, in the same forms; default: now.
        #[arg(long)]
        until: Option<String>,
        /// `jsonl` (each record's exact bytes with its chain links) or `csv`.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Seal every chain's head now in a signed digest (`govctl serve` also
    /// writes one every `--digest-interval` and when it stops), and print
    /// the newest digest's hash, to keep for `verify --min-digest`.
    Digest {
        /// Also append the newest digest, as a JSON line, to this file (a
        /// second location: another disk, a mounted bucket).
        #[arg(long, value_name = "PATH")]
        copy_to: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `govctl decision …`.
#[derive(Debug, Subcommand)]
pub enum DecisionCommand {
    /// Print one recorded decision as JSON.
    Show {
        /// Decision id, or a unique prefix of it (at least 6 characters).
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// The recorded decisions that match, newest first: one line each, or
    /// JSON.
    List {
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only those made for this user.
        #[arg(long)]
        user: Option<String>,
        /// Only calls of this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Only this outcome.
        #[arg(long, value_parser = ["allow", "deny", "pending_approval"])]
        result: Option<String>,
        /// Start, inclusive: RFC 3339, a date, or an age (`24h` ago).
        #[arg(long, default_value = "24h")]
        since: String,
        /// End, exclusive, in the same forms; default: now.
        #[arg(long)]
        until: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON (an array of decision records).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2026-12-07T21:30:00Z: {e}"))
}

fn parse_env(s: &str) -> Result<Environment, String> {
    s.parse()
        .map_err(|e: governance::model::UnknownEnvironmentError| e.to_string())
}

fn parse_risk(s: &str) -> Result<Risk, String> {
    s.parse()
        .map_err(|e: governance::model::UnknownRiskError| e.to_string())
}

/// Parses `90`, `90s`, `15m`, `1h`, `1d` into seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 15m, 1h or 1d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}` is not a duration like 15m, 1h or 1d")),
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("`{s}` must be between 1 second and many years")),
        Some(v) if v > 366 * 86_400 => Err(format!("`{s}` is longer than a year")),
        Some(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("15m").unwrap(), 900);
        assert_eq!(parse_ttl("1d").unwrap(), 86_400);
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
