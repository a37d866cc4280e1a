//! `govctl policy propose|changes|change`, and `activate` where policy
//! changes are reviewed: change requests on the local store.

use std::path::Path;
use std::process::ExitCode;

use governance::adapters::sqlite::SqliteStore;
use governance::audit::diff_bundles;
use governance::changes::{self, ChangeRequest, ChangeStatus};
use governance::model::Environment;
use governance::policy::PolicyBundle;
use governance::ports::{ChangeStore, PolicyStore, PublishRequest};

use super::{existing_store, open_store, runtime};
use crate::cli::StackArgs;

/// The environment changes on `store` are proposed in: the one its control
/// plane serves, or `dev` before it ever served.
fn environment(store: &SqliteStore) -> anyhow::Result<Environment> {
    Ok(store.environment()?.unwrap_or(Environment::Dev))
}

/// Validates, tests and proposes `dir` as a change.
pub fn propose(
    dir: &Path,
    message: String,
    author: String,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    if super::policy::test(dir, false)? != ExitCode::SUCCESS {
        anyhow::bail!("not proposed: fix the problems above first");
    }
    let bundle = PolicyBundle::from_dir(dir)?;
    let store = open_store(data_dir)?;
    let env = environment(&store)?;
    let rt = runtime()?;
    let change = rt.block_on(changes::propose(
        &store,
        env,
        PublishRequest {
            bundle,
            author,
            message,
            at: time::OffsetDateTime::now_utc(),
        },
    ))?;
    Ok(report(&change))
}

/// Opens a change that activates a stored version.
pub fn activate(version: &str, author: String, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let store = existing_store(data_dir)?;
    let env = environment(&store)?;
    let rt = runtime()?;
    let change = rt.block_on(changes::propose_activation(
        &store,
        env,
        version,
        author,
        format!("activate {version}"),
        time::OffsetDateTime::now_utc(),
    ))?;
    Ok(report(&change))
}

/// Prints what became of a proposal: activated, or waiting for whom and where.
pub(crate) fn report(c: &ChangeRequest) -> ExitCode {
    println!(
        "change {} ({} risk) for version {}",
        c.change_id,
        c.risk.class.as_str(),
        c.version_id
    );
    for r in &c.risk.reasons {
        println!("  - {r}");
    }
    match c.status {
        ChangeStatus::Activated => {
            println!("activated {}", c.version_id);
            ExitCode::SUCCESS
        }
        ChangeStatus::Pending => {
            println!(
                "waiting for review by a member of `{}` other than {} ({} reviews high-risk \
                 changes): /v1/changes/{}",
                c.reviewers_group, c.author, c.environment, c.change_id
            );
            ExitCode::SUCCESS
        }
        ChangeStatus::Superseded => {
            eprintln!("another version became active meanwhile: propose it again");
            ExitCode::from(1)
        }
        ChangeStatus::Rejected => ExitCode::from(1),
    }
}

/// Lists change requests, newest first: the data directory's, or with
/// `--env` the AWS stack's.
pub fn list(json: bool, data_dir: &Path, stack: &StackArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match stack.env {
        None => {
            let store = existing_store(data_dir)?;
            rt.block_on(print_list(
                &store,
                json,
                &format!("`{}`", data_dir.display()),
            ))
        }
        Some(env) => rt.block_on(async {
            let (store, table) = on_stack(env, stack).await?;
            print_list(&store, json, &format!("`{table}`")).await
        }),
    }
}

/// Shows one change with its diff: the data directory's, or with `--env`
/// the AWS stack's.
pub fn show(id: &str, json: bool, data_dir: &Path, stack: &StackArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match stack.env {
        None => {
            let store = existing_store(data_dir)?;
            rt.block_on(print_change(&store, id, json))
        }
        Some(env) => rt.block_on(async {
            let (store, _) = on_stack(env, stack).await?;
            print_change(&store, id, json).await
        }),
    }
}

/// The change requests of an AWS stack, and the table that holds them.
#[cfg(feature = "aws")]
async fn on_stack(
    env: Environment,
    stack: &StackArgs,
) -> anyhow::Result<(governance::adapters::aws::dynamodb::DynamoChanges, String)> {
    let (changes, table) = super::push::stack_changes(
        env,
        stack.stack_name.as_deref(),
        stack.endpoint_url.as_deref(),
    )
    .await;
    Ok((changes, table))
}

/// Without AWS support, naming a stack is an error.
#[cfg(not(feature = "aws"))]
async fn on_stack(_: Environment, _: &StackArgs) -> anyhow::Result<(SqliteStore, String)> {
    Err(super::without_aws())
}

async fn print_list(store: &dyn ChangeStore, json: bool, place: &str) -> anyhow::Result<ExitCode> {
    let all = store.changes().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no policy changes in {place}");
    }
    for c in all {
        println!(
            "{}  {}  {:<4} {:<10} {:<12} {}",
            c.change_id,
            c.proposed_at,
            c.risk.class.as_str(),
            c.status.as_str(),
            c.author,
            c.message
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn print_change<S: ChangeStore + PolicyStore>(
    store: &S,
    id: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let c = store.change(id).await?;
    let (_, new) = store.version(&c.version_id).await?;
    let old = match &c.base_version {
        Some(b) => Some(store.version(b).await?.1),
        None => None,
    };
    let diff = diff_bundles(old.as_ref(), &new);
    if json {
        let mut v = serde_json::to_value(&c)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("changes".into(), serde_json::to_value(&diff)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("change      {}", c.change_id);
    println!("status      {}", c.status.as_str());
    println!("proposed    {} by {}", c.proposed_at, c.author);
    println!("message     {}", c.message);
    println!("environment {}", c.environment);
    println!(
        "version     {} (replaces {})",
        c.version_id,
        c.base_version.as_deref().unwrap_or("nothing")
    );
    println!(
        "risk        {}{}",
        c.risk.class.as_str(),
        if c.review_required {
            format!(", reviewed by a member of `{}`", c.reviewers_group)
        } else {
            String::new()
        }
    );
    for r in &c.risk.reasons {
        println!("  - {r}");
    }
    if let Some(by) = &c.reviewed_by {
        println!(
            "reviewed    by {by} at {}{}",
            c.decided_at.as_deref().unwrap_or("?"),
            c.comment
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    for f in diff {
        println!("\n{} ({})", f.file, f.change);
        for s in &f.summary {
            println!("  {s}");
        }
        print!("{}", f.diff);
    }
    Ok(ExitCode::SUCCESS)
}
