//! `govctl review access`: the access review of every agent of the active
//! policy version, from the decision log (see `governance::review`); and
//! `govctl review record`: a reviewer's outcome for one grant, as a control
//! event; and `govctl shadow report`: what the log-only policies would
//! have changed (see `governance::shadow`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use governance::anomaly::ControlLog;
use governance::clock::rfc3339;
use governance::ports::{ChangeStore, PolicyStore};
use governance::review::{granted_as, to_csv, to_markdown, Reviewer};
use time::OffsetDateTime;

use super::audit::window;
use super::trail::Trail;
use super::{existing_store, runtime};
use crate::cli::StackArgs;

/// What `govctl review access` was asked.
pub struct AccessArgs<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// The window's start.
    pub since: &'a str,
    /// Its end; now when `None`.
    pub until: Option<&'a str>,
    /// `md`, `csv` or `json`.
    pub format: &'a str,
    /// Where to write; standard output when `None`.
    pub output: Option<&'a Path>,
    /// An export or a copy of the evidence bucket, instead of the store.
    pub file: Option<&'a Path>,
    /// The policy directory to review instead of the active version.
    pub policy: Option<&'a Path>,
}

/// Prints the review.
pub fn access(args: &AccessArgs<'_>) -> anyhow::Result<ExitCode> {
    let (since, until) = window(args.since, args.until)?;
    let trail = Trail::open(args.dir, args.file)?;
    let (registry, registries) = match (args.policy, trail.store()) {
        (Some(dir), _) => {
            let bundle = governance::policy::PolicyBundle::from_dir(dir)?;
            let registry = governance::policy::compile(&bundle)
                .map_err(|_| anyhow::anyhow!("`{}` does not compile", dir.display()))?
                .registry;
            // One version only: when a grant first appeared is not known.
            (registry.clone(), vec![registry])
        }
        (None, Some(store)) => store_registries(store, args.dir)?,
        (None, None) => anyhow::bail!("name the policy directory to review with --policy"),
    };
    let at_grant = granted_as(&registries);
    let mut reviewer = Reviewer::new(&registry, &at_grant, &since, &until);
    trail.each(&since, &until, &mut |e| {
        if let Ok(record) = serde_json::from_str(&e.body) {
            reviewer.push(&record);
        }
    })?;
    let review = reviewer.finish();
    let text = match args.format {
        "json" => serde_json::to_string_pretty(&review)? + "\n",
        "csv" => to_csv(&review),
        _ => to_markdown(&review),
    };
    match args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The active version's registry, and every version's, oldest first (when
/// each grant first appeared).
fn store_registries(
    store: &governance::adapters::sqlite::SqliteStore,
    dir: &Path,
) -> anyhow::Result<(
    governance::model::Registry,
    Vec<governance::model::Registry>,
)> {
    let rt = runtime()?;
    let registries = rt.block_on(async {
        let mut versions = store.versions().await?;
        versions.reverse();
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let (_, bundle) = store.version(&v.id).await?;
            if let Ok(compiled) = governance::policy::compile(&bundle) {
                out.push(compiled.registry);
            }
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    let active = rt
        .block_on(store.active())?
        .with_context(|| format!("no policy version is active in `{}`", dir.display()))?;
    let (_, bundle) = rt.block_on(store.version(&active.version_id))?;
    let registry = governance::policy::compile(&bundle)
        .map_err(|_| anyhow::anyhow!("the active policy version does not compile"))?
        .registry;
    Ok((registry, registries))
}

/// What `govctl review record` was asked.
pub struct RecordArgs<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// The agent.
    pub agent: &'a str,
    /// The granted tool.
    pub tool: &'a str,
    /// `keep`, `revoke` or `recalibrate`.
    pub outcome: &'a str,
    /// Why.
    pub comment: Option<&'a str>,
    /// Who reviewed.
    pub by: &'a str,
    /// The AWS stack to record on, instead of the data directory.
    pub stack: &'a StackArgs,
}

/// Appends the outcome to the control plane's audit chain: the data
/// directory's, or with `--env` the AWS stack's.
pub fn record(args: &RecordArgs<'_>) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match args.stack.env {
        None => {
            let store = existing_store(args.dir)?;
            let env = store
                .environment()?
                .unwrap_or(governance::model::Environment::Dev);
            rt.block_on(record_on(&store, &store, env, args))
        }
        Some(env) => rt.block_on(record_on_stack(env, args)),
    }
}

#[cfg(feature = "aws")]
async fn record_on_stack(
    env: governance::model::Environment,
    args: &RecordArgs<'_>,
) -> anyhow::Result<ExitCode> {
    let (name, endpoint) = (
        args.stack.stack_name.as_deref(),
        args.stack.endpoint_url.as_deref(),
    );
    let (changes, _) = super::push::stack_changes(env, name, endpoint).await;
    let log = super::push::stack_control_log(env, name, endpoint).await;
    record_on(&changes, &log, env, args).await
}

#[cfg(not(feature = "aws"))]
async fn record_on_stack(
    _: governance::model::Environment,
    _: &RecordArgs<'_>,
) -> anyhow::Result<ExitCode> {
    Err(super::without_aws())
}

/// Records the outcome on `store`'s active version into `log`, and
/// proposes a revocation as a change in `env`.
async fn record_on<S: PolicyStore + ChangeStore>(
    store: &S,
    log: &dyn ControlLog,
    env: governance::model::Environment,
    args: &RecordArgs<'_>,
) -> anyhow::Result<ExitCode> {
    use governance::audit::{ControlAction, ControlEvent, ReviewOutcome};
    let active = store
        .active()
        .await?
        .with_context(|| match args.stack.env {
            Some(env) => format!("no policy version is active on the {env} stack"),
            None => format!("no policy version is active in `{}`", args.dir.display()),
        })?;
    let (version, bundle) = store.version(&active.version_id).await?;
    let registry = governance::policy::compile(&bundle)
        .map_err(|_| anyhow::anyhow!("the active policy version does not compile"))?
        .registry;
    let agent = registry
        .agents
        .iter()
        .find(|a| a.id == args.agent)
        .with_context(|| format!("the active registry has no agent `{}`", args.agent))?;
    anyhow::ensure!(
        agent.grants.iter().any(|g| g.tool == args.tool),
        "agent `{}` has no grant of `{}` (it has: {})",
        args.agent,
        args.tool,
        agent
            .grants
            .iter()
            .map(|g| g.tool.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let event = ControlEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        timestamp: rfc3339(OffsetDateTime::now_utc()),
        actor: args.by.to_owned(),
        action: ControlAction::AccessReviewed,
        version_id: version.id.clone(),
        content_hash: version.content_hash.clone(),
        previous_version: None,
        message: None,
        changes: Vec::new(),
        agent_id: Some(agent.id.clone()),
        agent_version: Some(agent.version.clone()),
        review: Some(ReviewOutcome {
            tool_id: args.tool.to_owned(),
            outcome: args.outcome.to_owned(),
            comment: args.comment.map(str::to_owned),
        }),
        change: None,
    };
    log.append_control(&event).await?;
    println!(
        "recorded: {} `{}` of agent `{}` (event {})",
        args.outcome, args.tool, args.agent, event.event_id
    );
    if args.outcome == "revoke" {
        return propose_revocation(store, env, &bundle, args).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns a revocation into a proposed change: the active version without
/// the grant. It tightens, so it activates at once unless a rule of the
/// change review says otherwise; a registry whose grant cannot be edited
/// safely, or whose test cases expect the grant, is left to a person.
async fn propose_revocation<S: PolicyStore + ChangeStore>(
    store: &S,
    env: governance::model::Environment,
    active: &governance::policy::PolicyBundle,
    args: &RecordArgs<'_>,
) -> anyhow::Result<ExitCode> {
    use governance::policy::{edit, load_engine, run_tests, PolicyVersionRef, REGISTRY_FILE};
    let edited = active
        .registry()
        .and_then(|text| edit::without_grant(text, args.agent, args.tool));
    let Some(edited) = edited else {
        eprintln!(
            "warning: no change proposed: the grant is not a plain list item of the \
             registry; remove it by hand and `govctl policy propose` the result"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let mut bundle = active.clone();
    bundle.files.insert(REGISTRY_FILE.to_owned(), edited);
    let engine = load_engine(
        &bundle,
        PolicyVersionRef {
            id: "revocation".into(),
            content_hash: bundle.content_hash(),
        },
    )
    .map_err(|e| anyhow::anyhow!("the registry without the grant does not compile: {e}"))?;
    let failing: Vec<String> = run_tests(&engine, &bundle)
        .map_err(|_| anyhow::anyhow!("the test cases do not load"))?
        .into_iter()
        .filter(|o| !o.passed)
        .map(|o| o.summary())
        .collect();
    if !failing.is_empty() {
        // The outcome is recorded; only the change is left to a person.
        eprintln!(
            "warning: no change proposed: without the grant, {} test case(s) fail; update \
             them, remove the grant and `govctl policy propose` the directory:",
            failing.len()
        );
        for f in failing {
            eprintln!("  {f}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let change = governance::changes::propose(
        store,
        env,
        governance::ports::PublishRequest {
            bundle,
            author: args.by.to_owned(),
            message: format!(
                "access review: revoke `{}` from `{}`{}",
                args.tool,
                args.agent,
                args.comment.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            at: OffsetDateTime::now_utc(),
        },
    )
    .await?;
    Ok(super::change::report(&change))
}

/// `govctl shadow report`.
pub fn shadow(
    dir: &Path,
    file: Option<&Path>,
    since: &str,
    until: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (since, until) = window(since, until)?;
    let trail = Trail::open(dir, file)?;
    let mut report = governance::shadow::ShadowReport::new(&since, &until);
    trail.each(&since, &until, &mut |e| {
        if let Ok(record) = serde_json::from_str(&e.body) {
            report.push(&record);
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", governance::shadow::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
