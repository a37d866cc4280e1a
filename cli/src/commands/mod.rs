//! One module per command; [`run`] dispatches.

mod anomalies;
mod audit;
mod authorize;
mod change;
mod incident;
mod killswitch;
mod policy;
#[cfg(feature = "aws")]
mod push;
mod registry;
mod review;
mod serve;
mod token;
mod trail;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use governance::adapters::sqlite::SqliteStore;

use crate::cli::{
    AgentCommand, ApproverCommand, AuditCommand, Cli, Command, DecisionCommand, IncidentCommand,
    RegistryCommand, ReviewCommand, ShadowCommand, UserCommand,
};

/// Logs go to stderr, so that tokens and JSON on stdout stay pipeable.
///
/// A background thread writes them: under load, one `write` per decision
/// line on the request path costs a fifth of the throughput. Lines are never
/// dropped (a full buffer makes the logger wait); the returned guard flushes
/// them when `main` ends.
pub fn init_tracing(cli: &Cli) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(writer)
        .with_ansi(colour())
        .try_init();
    guard
}

/// Colour only for a person at a terminal: escape codes in a file, a pipe
/// or a CI log are noise (and `NO_COLOR` turns them off anywhere).
fn colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs a command; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => runtime()?
            .block_on(serve::run(args))
            .map(|()| ExitCode::SUCCESS),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Authorize(args) => authorize::run(&args),
        Command::Agent(AgentCommand::Token {
            agent_id,
            ttl,
            data,
        }) => token::agent(&data.data_dir, &agent_id, ttl).map(|()| ExitCode::SUCCESS),
        Command::Agent(AgentCommand::Disable {
            agent_id,
            version,
            reason,
            by,
            target,
        }) => killswitch::disable(&target, agent_id, version, reason, operator(by)),
        Command::Agent(AgentCommand::Enable {
            agent_id,
            version,
            reason,
            by,
            target,
        }) => killswitch::enable(&target, agent_id, version, reason, operator(by)),
        Command::Agent(AgentCommand::Disabled { target }) => killswitch::list(&target),
        Command::User(UserCommand::Token {
            user_id,
            roles,
            org,
            ttl,
            data,
        }) => token::user(&data.data_dir, &user_id, roles, org, ttl).map(|()| ExitCode::SUCCESS),
        Command::Approver(ApproverCommand::Token {
            approver_id,
            groups,
            ttl,
            data,
        }) => {
            token::approver(&data.data_dir, &approver_id, groups, ttl).map(|()| ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify {
            public_key,
            min_digest,
            json,
            file,
            chain_table,
            endpoint_url,
            data,
        }) => audit::verify(&audit::VerifyArgs {
            dir: &data.data_dir,
            public_key: public_key.as_deref(),
            min_digest: min_digest.as_deref(),
            json,
            file: file.as_deref(),
            chain_table: chain_table.as_deref(),
            endpoint_url: endpoint_url.as_deref(),
        }),
        Command::Audit(AuditCommand::Explain { id, data }) => audit::explain(&data.data_dir, &id),
        Command::Audit(AuditCommand::Digest { copy_to, data }) => {
            audit::digest(&data.data_dir, copy_to.as_deref())
        }
        Command::Audit(AuditCommand::Export {
            since,
            until,
            format,
            output,
            data,
        }) => audit::export(&audit::ExportArgs {
            dir: &data.data_dir,
            since: &since,
            until: until.as_deref(),
            format: &format,
            output: output.as_deref(),
        }),
        Command::Anomalies { days, json, data } => anomalies::run(&data.data_dir, days, json),
        Command::Registry(RegistryCommand::Import {
            server,
            policy,
            environment,
            data,
        }) => registry::import(&policy, &server, environment, &data.data_dir),
        Command::Registry(RegistryCommand::Export {
            format,
            policy,
            output,
            file,
            data,
        }) => registry::export(&registry::ExportArgs {
            format: &format,
            policy: policy.as_deref(),
            output: output.as_deref(),
            data_dir: &data.data_dir,
            file: file.as_deref(),
        }),
        Command::Incident(IncidentCommand::Timeline {
            agent,
            agent_version,
            since,
            until,
            format,
            file,
            data,
        }) => incident::timeline(&incident::TimelineArgs {
            dir: &data.data_dir,
            agent: &agent,
            version: agent_version.as_deref(),
            since: &since,
            until: until.as_deref(),
            json: format == "json",
            file: file.as_deref(),
        }),
        Command::Review(ReviewCommand::Access {
            since,
            until,
            format,
            output,
            file,
            policy,
            data,
        }) => review::access(&review::AccessArgs {
            dir: &data.data_dir,
            since: &since,
            until: until.as_deref(),
            format: &format,
            output: output.as_deref(),
            file: file.as_deref(),
            policy: policy.as_deref(),
        }),
        Command::Review(ReviewCommand::Record {
            agent,
            tool,
            outcome,
            comment,
            by,
            stack,
            data,
        }) => review::record(&review::RecordArgs {
            dir: &data.data_dir,
            agent: &agent,
            tool: &tool,
            outcome: &outcome,
            comment: comment.as_deref(),
            by: &operator(by),
            stack: &stack,
        }),
        Command::Shadow(ShadowCommand::Report {
            since,
            until,
            json,
            file,
            data,
        }) => review::shadow(
            &data.data_dir,
            file.as_deref(),
            &since,
            until.as_deref(),
            json,
        ),
        Command::Decision(DecisionCommand::List {
            agent,
            user,
            tool,
            result,
            since,
            until,
            limit,
            json,
            data,
        }) => {
            let (since, until) = audit::window(&since, until.as_deref())?;
            let store = existing_store(&data.data_dir)?;
            let found = store.list_decisions(&governance::adapters::sqlite::DecisionFilter {
                agent_id: agent,
                user_id: user,
                tool_id: tool,
                decision: result,
                since: Some(since),
                until: Some(until),
                limit: limit.max(1),
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
                return Ok(ExitCode::SUCCESS);
            }
            if found.is_empty() {
                println!("no decisions match");
            }
            for r in &found {
                let codes: Vec<&str> = r.reasons.iter().map(|x| x.code.as_str()).collect();
                println!(
                    "{}  {}  {:<16} {:<20} {:<12} {:<24} {}",
                    r.decision_id,
                    r.timestamp,
                    r.decision.as_str(),
                    r.agent_id,
                    r.user_id,
                    r.tool_id,
                    codes.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Decision(DecisionCommand::Show { id, data }) => {
            let store = existing_store(&data.data_dir)?;
            let id = decision_id(&store, &data.data_dir, &id)?;
            let record = runtime()?
                .block_on(governance::ports::DecisionLog::get(&store, &id))?
                .with_context(|| format!("no decision `{id}` in `{}`", data.data_dir.display()))?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            // The record is shown either way: it is the evidence of what was
            // changed. Whether it can be relied on is said beside it.
            match store.link_problem(&id)? {
                Some(problem) => {
                    eprintln!("TAMPERED: {problem}");
                    Ok(ExitCode::from(1))
                }
                None => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn open_store(dir: &Path) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(dir).with_context(|| format!("cannot open the store in `{}`", dir.display()))
}

/// The store of a control plane's data directory, for a command that only
/// reads it: a directory without one is refused, never given an empty one.
fn existing_store(dir: &Path) -> anyhow::Result<SqliteStore> {
    anyhow::ensure!(
        dir.join(governance::adapters::sqlite::DB_FILE).exists(),
        "`{}` holds no store: name the data directory of a control plane with --data-dir",
        dir.display()
    );
    open_store(dir)
}

/// The full id of the decision `id` (whole, or a unique prefix) names.
fn decision_id(store: &SqliteStore, dir: &Path, id: &str) -> anyhow::Result<String> {
    match store.resolve_decision(id) {
        Ok(full) => Ok(full),
        Err(governance::ports::StoreError::NotFound(_)) => {
            anyhow::bail!("no decision `{id}` in `{}`", dir.display())
        }
        Err(e) => Err(e.into()),
    }
}

/// The operator's name for history records.
fn operator(explicit: Option<String>) -> String {
    explicit
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What `govctl policy push` was asked.
// Without the `aws` feature the arguments are refused before they are read.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) struct PushArgs<'a> {
    /// The policy directory.
    pub dir: &'a Path,
    /// The stack's environment.
    pub env: governance::model::Environment,
    /// The stack, when not `agent-governance-ENV`.
    pub stack_name: Option<String>,
    /// Another endpoint for every AWS call.
    pub endpoint_url: Option<String>,
    /// Why.
    pub message: String,
    /// Who.
    pub author: String,
    /// Store without activating.
    pub no_activate: bool,
    /// Open a change request (`govctl policy propose --env`) rather than
    /// publish and activate.
    pub propose: bool,
}

#[cfg(feature = "aws")]
fn push(args: PushArgs<'_>) -> anyhow::Result<ExitCode> {
    push::run(args)
}

#[cfg(not(feature = "aws"))]
fn push(_: PushArgs<'_>) -> anyhow::Result<ExitCode> {
    Err(without_aws())
}

/// What a command that reaches an AWS stack says in a govctl built without
/// AWS support.
#[cfg(not(feature = "aws"))]
pub(crate) fn without_aws() -> anyhow::Error {
    anyhow::anyhow!(
        "this govctl was built without AWS support; build it with `cargo install --path cli --features aws`"
    )
}
