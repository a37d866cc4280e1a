//! `govctl policy …`: validate, test, schema, publish, versions, activate.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use governance::changes::direct_activation_refused;
use governance::policy::{
    compile, load_engine, run_tests, PolicyBundle, PolicyVersionRef, Severity,
};
use governance::ports::{PolicyStore, PublishRequest};

use super::{existing_store, open_store, operator, push, runtime};
use crate::cli::{PolicyCommand, StackArgs};

/// Runs a policy command.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Validate { dir } => validate(&dir),
        PolicyCommand::Test { dir, verbose } => test(&dir, verbose),
        PolicyCommand::Schema { dir } => {
            let bundle = PolicyBundle::from_dir(&dir)?;
            match compile(&bundle) {
                Ok(c) => {
                    print!("{}", c.schema_text);
                    Ok(ExitCode::SUCCESS)
                }
                Err(diags) => report(&diags),
            }
        }
        PolicyCommand::Publish {
            dir,
            message,
            author,
            no_activate,
            data,
        } => {
            if test(&dir, false)? != ExitCode::SUCCESS {
                anyhow::bail!("not published: fix the problems above first");
            }
            let bundle = PolicyBundle::from_dir(&dir)?;
            let store = open_store(&data.data_dir)?;
            let author = operator(author);
            let rt = runtime()?;
            refuse_where_reviewed(&rt, &store, "publish")?;
            // Identical content would be a new version that changes nothing
            // and hides, in `versions`, which publication mattered.
            if let Some(active) = rt.block_on(store.active())? {
                let (current, _) = rt.block_on(store.version(&active.version_id))?;
                if current.content_hash == bundle.content_hash() {
                    println!(
                        "unchanged: `{}` is the active version {} (content {}); nothing published",
                        dir.display(),
                        current.id,
                        current.content_hash
                    );
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let now = time::OffsetDateTime::now_utc();
            let version = rt.block_on(store.publish(PublishRequest {
                bundle,
                author: author.clone(),
                message,
                at: now,
            }))?;
            println!("published {} ({})", version.id, version.content_hash);
            if !no_activate {
                rt.block_on(store.activate(&version.id, &author, now))?;
                println!("activated {}", version.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Push {
            dir,
            env,
            stack_name,
            endpoint_url,
            message,
            author,
            no_activate,
        } => {
            if test(&dir, false)? != ExitCode::SUCCESS {
                anyhow::bail!("not pushed: fix the problems above first");
            }
            push(super::PushArgs {
                dir: &dir,
                env,
                stack_name,
                endpoint_url,
                message,
                author: operator(author),
                no_activate,
                propose: false,
            })
        }
        PolicyCommand::Show {
            version_id,
            file,
            data,
        } => {
            let store = existing_store(&data.data_dir)?;
            let rt = runtime()?;
            let (v, bundle) = rt.block_on(store.version(&version_id))?;
            if let Some(name) = file {
                let text = bundle.files.get(&name).with_context(|| {
                    format!(
                        "version {} has no file `{name}`; it has: {}",
                        v.id,
                        bundle.files.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            let active = rt.block_on(store.active())?.map(|a| a.version_id);
            println!(
                "version     {}{}",
                v.id,
                if active.as_deref() == Some(v.id.as_str()) {
                    " (active)"
                } else {
                    ""
                }
            );
            println!("content     {}", v.content_hash);
            println!("published   {} by {}", v.created_at, v.author);
            println!("message     {}", v.message);
            println!("parent      {}", v.parent.as_deref().unwrap_or("none"));
            println!("files");
            for (name, text) in &bundle.files {
                println!("  {name} ({} lines)", text.lines().count());
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Diff { from, to, data } => {
            let store = existing_store(&data.data_dir)?;
            let rt = runtime()?;
            let (a, old) = rt.block_on(store.version(&from))?;
            let (b, new) = rt.block_on(store.version(&to))?;
            println!("from {} ({})", a.id, a.message);
            println!("to   {} ({})", b.id, b.message);
            let changes = governance::audit::diff_bundles(Some(&old), &new);
            if changes.is_empty() {
                println!("\nno differences: the two versions hold the same files");
            }
            for f in changes {
                println!("\n{} ({})", f.file, f.change);
                for s in &f.summary {
                    println!("  {s}");
                }
                print!("{}", f.diff);
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Versions { data } => {
            let store = existing_store(&data.data_dir)?;
            let rt = runtime()?;
            let active = rt.block_on(store.active())?.map(|a| a.version_id);
            let versions = rt.block_on(store.versions())?;
            if versions.is_empty() {
                println!("no versions in `{}`", data.data_dir.display());
            }
            for v in versions {
                let mark = if active.as_deref() == Some(v.id.as_str()) {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{mark} {}  {}  {:<12} {}",
                    &v.id[..v.id.len().min(16)],
                    v.created_at,
                    v.author,
                    v.message
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Propose {
            dir,
            message,
            author,
            stack:
                StackArgs {
                    env: Some(env),
                    stack_name,
                    endpoint_url,
                },
            data: _,
        } => {
            if test(&dir, false)? != ExitCode::SUCCESS {
                anyhow::bail!("not proposed: fix the problems above first");
            }
            push(super::PushArgs {
                dir: &dir,
                env,
                stack_name,
                endpoint_url,
                message,
                author: operator(author),
                no_activate: false,
                propose: true,
            })
        }
        PolicyCommand::Propose {
            dir,
            message,
            author,
            data,
            ..
        } => super::change::propose(&dir, message, operator(author), &data.data_dir),
        PolicyCommand::Changes { json, stack, data } => {
            super::change::list(json, &data.data_dir, &stack)
        }
        PolicyCommand::Change {
            change_id,
            json,
            stack,
            data,
        } => super::change::show(&change_id, json, &data.data_dir, &stack),
        PolicyCommand::Activate {
            version_id,
            author,
            data,
        } => {
            let store = existing_store(&data.data_dir)?;
            let rt = runtime()?;
            if reviewed(&rt, &store)?.is_some() {
                // Where changes are reviewed, an activation is a change too:
                // a rollback that tightens goes through at once.
                return super::change::activate(&version_id, operator(author), &data.data_dir);
            }
            // Refuse to activate what this build cannot serve.
            let (v, bundle) = rt.block_on(store.version(&version_id))?;
            load_engine(
                &bundle,
                PolicyVersionRef {
                    id: v.id.clone(),
                    content_hash: v.content_hash.clone(),
                },
            )
            .with_context(|| format!("version {} cannot be served", v.id))?;
            let active = rt.block_on(store.activate(
                &v.id,
                &operator(author),
                time::OffsetDateTime::now_utc(),
            ))?;
            println!(
                "activated {} ({}: {})",
                active.version_id, v.author, v.message
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The review settings in force, when this data directory's environment
/// reviews policy changes and a version is active.
fn reviewed(
    rt: &tokio::runtime::Runtime,
    store: &governance::adapters::sqlite::SqliteStore,
) -> anyhow::Result<Option<governance::model::ChangeReviewSpec>> {
    let Some(env) = store.environment()? else {
        return Ok(None);
    };
    Ok(rt.block_on(direct_activation_refused(store, env))?)
}

/// Refuses `verb` where policy changes are reviewed.
fn refuse_where_reviewed(
    rt: &tokio::runtime::Runtime,
    store: &governance::adapters::sqlite::SqliteStore,
    verb: &str,
) -> anyhow::Result<()> {
    if let Some(spec) = reviewed(rt, store)? {
        anyhow::bail!(
            "not published: this control plane's environment ({}) reviews policy changes, so \
             `{verb}` is refused. Use `govctl policy propose DIR --message …`: low-risk changes \
             activate at once, high-risk ones once a member of `{}` other than you approves them",
            store.environment()?.map_or("?", |e| e.as_str()),
            spec.reviewers_group
        );
    }
    Ok(())
}

fn report(diags: &[governance::policy::Diagnostic]) -> anyhow::Result<ExitCode> {
    for d in diags {
        eprintln!("{d}");
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        eprintln!("{errors} error(s)");
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn validate(dir: &Path) -> anyhow::Result<ExitCode> {
    let bundle = PolicyBundle::from_dir(dir)?;
    // The test cases are read too, so that one run reports every problem.
    let cases = governance::policy::load_tests(&bundle)
        .err()
        .unwrap_or_default();
    match compile(&bundle) {
        Ok(c) => {
            let mut found = c.warnings.clone();
            found.extend(cases);
            let code = report(&found)?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            let custom = c.sources.keys().filter(|k| !k.starts_with("base:")).count();
            println!(
                "ok: {} agents, {} tools, {} team policies ({})",
                c.registry.agents.len(),
                c.registry.tools.len(),
                custom,
                c.content_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(mut diags) => {
            diags.extend(cases);
            report(&diags)
        }
    }
}

pub(crate) fn test(dir: &Path, verbose: bool) -> anyhow::Result<ExitCode> {
    let bundle = PolicyBundle::from_dir(dir)?;
    // The warnings `validate` prints, so that publish and propose (which
    // test first) show them too; errors are reported by the load below.
    if let Ok(compiled) = compile(&bundle) {
        report(&compiled.warnings)?;
    }
    let engine = match load_engine(
        &bundle,
        PolicyVersionRef {
            id: "test".into(),
            content_hash: bundle.content_hash(),
        },
    ) {
        Ok(e) => e,
        Err(governance::policy::LoadError::Invalid(diags)) => return report(&diags),
        Err(e) => return Err(e.into()),
    };
    let outcomes = match run_tests(&engine, &bundle) {
        Ok(o) => o,
        Err(diags) => return report(&diags),
    };
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    for o in &outcomes {
        if verbose || !o.passed {
            println!("{}", o.summary());
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if outcomes.is_empty() {
        eprintln!(
            "warning: `{}` has no test cases under tests/",
            dir.display()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
