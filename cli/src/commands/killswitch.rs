//! `govctl agent disable|enable|disabled`: the kill switch, on the local
//! store or (with `--env`) on an AWS stack.

use std::process::ExitCode;

use governance::clock::rfc3339;
use governance::killswitch::{Disablement, Switch};
use governance::model::Registry;
use governance::ports::{KillSwitchStore, PolicyStore};

use super::{existing_store, runtime};
use crate::cli::SwitchTarget;

/// The store the switch is in, and the registry of its active version.
async fn open(target: &SwitchTarget) -> anyhow::Result<(Box<dyn SwitchStore>, Option<Registry>)> {
    let store: Box<dyn SwitchStore> = match target.env {
        None => Box::new(existing_store(&target.data.data_dir)?),
        Some(env) => aws(target, env).await?,
    };
    let registry = match store.active().await? {
        Some(a) => {
            let (_, bundle) = store.version(&a.version_id).await?;
            governance::policy::compile(&bundle)
                .ok()
                .map(|c| c.registry)
        }
        None => None,
    };
    Ok((store, registry))
}

/// Both halves of a store the switch needs.
trait SwitchStore: KillSwitchStore + PolicyStore {}
impl<T: KillSwitchStore + PolicyStore> SwitchStore for T {}

#[cfg(feature = "aws")]
async fn aws(
    target: &SwitchTarget,
    env: governance::model::Environment,
) -> anyhow::Result<Box<dyn SwitchStore>> {
    use governance::adapters::aws::{aws_sdk_dynamodb, dynamodb::DynamoPolicyStore, sdk_config};
    let stack = target
        .stack_name
        .clone()
        .unwrap_or_else(|| format!("agent-governance-{env}"));
    let sdk = sdk_config(target.endpoint_url.as_deref()).await;
    Ok(Box::new(
        DynamoPolicyStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            format!("{stack}-policy-versions"),
        )
        .with_decisions(format!("{stack}-decisions")),
    ))
}

#[cfg(not(feature = "aws"))]
async fn aws(
    _: &SwitchTarget,
    _: governance::model::Environment,
) -> anyhow::Result<Box<dyn SwitchStore>> {
    Err(super::without_aws())
}

/// Refuses an agent the active registry does not know: a typo would
/// otherwise switch nothing off while the operator believes it contained.
fn check_agent(
    registry: Option<&Registry>,
    agent_id: &str,
    version: Option<&str>,
) -> anyhow::Result<()> {
    let Some(registry) = registry else {
        return Ok(());
    };
    let Some(agent) = registry.agents.iter().find(|a| a.id == agent_id) else {
        let known: Vec<&str> = registry.agents.iter().map(|a| a.id.as_str()).collect();
        anyhow::bail!(
            "agent `{agent_id}` is not in the active policy version; registered agents: {}",
            known.join(", ")
        );
    };
    if let Some(v) = version.filter(|v| *v != agent.version) {
        eprintln!(
            "note: the active registry has `{agent_id}` at version {}; the switch applies once it runs {v}",
            agent.version
        );
    }
    Ok(())
}

fn where_(target: &SwitchTarget) -> String {
    match target.env {
        Some(env) => format!(
            "stack `{}` (applied within its authorize functions' refresh interval)",
            target
                .stack_name
                .clone()
                .unwrap_or_else(|| format!("agent-governance-{env}"))
        ),
        None => format!(
            "`{}` (a running `govctl serve` applies it within its reload interval)",
            target.data.data_dir.display()
        ),
    }
}

fn which(agent_id: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("version {v} of agent `{agent_id}`"),
        None => format!("agent `{agent_id}` (every version)"),
    }
}

/// `govctl agent disable`.
pub fn disable(
    target: &SwitchTarget,
    agent_id: String,
    version: Option<String>,
    reason: String,
    by: String,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why: it is shown in every deny and in the audit trail");
    }
    runtime()?.block_on(async {
        let (store, registry) = open(target).await?;
        check_agent(registry.as_ref(), &agent_id, version.as_deref())?;
        let change = Switch::Disable(Disablement {
            agent_id: agent_id.clone(),
            version: version.clone(),
            by,
            reason,
            at: rfc3339(time::OffsetDateTime::now_utc()),
        });
        store.switch(&change).await?;
        println!(
            "disabled {} in {}",
            which(&agent_id, version.as_deref()),
            where_(target)
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `govctl agent enable`.
pub fn enable(
    target: &SwitchTarget,
    agent_id: String,
    version: Option<String>,
    reason: Option<String>,
    by: String,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (store, _) = open(target).await?;
        let change = Switch::Enable {
            agent_id: agent_id.clone(),
            version: version.clone(),
            by,
            reason,
            at: rfc3339(time::OffsetDateTime::now_utc()),
        };
        if store.switch(&change).await? {
            println!(
                "enabled {} in {}",
                which(&agent_id, version.as_deref()),
                where_(target)
            );
            Ok(ExitCode::SUCCESS)
        } else {
            let disabled = store.disabled().await?;
            let listed: Vec<String> = disabled
                .iter()
                .map(|d| which(&d.agent_id, d.version.as_deref()))
                .collect();
            eprintln!(
                "{} is not disabled{}",
                which(&agent_id, version.as_deref()),
                if listed.is_empty() {
                    String::new()
                } else {
                    format!("; disabled now: {}", listed.join(", "))
                }
            );
            Ok(ExitCode::FAILURE)
        }
    })
}

/// `govctl agent disabled`.
pub fn list(target: &SwitchTarget) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (store, _) = open(target).await?;
        let disabled = store.disabled().await?;
        if disabled.is_empty() {
            println!("no agent is disabled in {}", where_(target));
        }
        for d in disabled {
            println!(
                "{}\tdisabled {} by {}: {}",
                which(&d.agent_id, d.version.as_deref()),
                d.at,
                d.by,
                d.reason
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
