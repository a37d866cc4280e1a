//! `govctl policy push`: publishes a policy directory into an AWS stack.
//!
//! The version is validated and its test cases run first, exactly as for a
//! local publish. It then goes into the stack's policy versions table
//! (immutable, content-addressed), the active pointer moves to it, and the
//! seed's tool-policy table is rewritten to the new version's grants. The
//! authorize functions pick it up within their refresh interval. The
//! publication and the activation, with the diff against the version they
//! replace, are written to the decisions table as control-plane events,
//! each in one transaction with the change it records, which decision-log
//! chains into the audit evidence.

use std::process::ExitCode;

use governance::adapters::aws::aws_sdk_dynamodb;
use governance::adapters::aws::dynamodb::{sync_tool_policy, DynamoChanges, DynamoPolicyStore};
use governance::adapters::aws::sdk_config;
use governance::audit::ControlEvent;
use governance::changes;
use governance::policy::{compile, PolicyBundle};
use governance::ports::{PolicyStore, PublishRequest};

use super::runtime;

/// The stack of `env`: `stack_name` when given, else `agent-governance-ENV`.
fn stack_of(env: governance::model::Environment, stack_name: Option<&str>) -> String {
    stack_name.map_or_else(|| format!("agent-governance-{env}"), str::to_owned)
}

/// The policy change requests of the stack of `env` (`stack_name` when
/// given), and the name of the table that holds them.
pub(crate) async fn stack_changes(
    env: governance::model::Environment,
    stack_name: Option<&str>,
    endpoint_url: Option<&str>,
) -> (DynamoChanges, String) {
    let stack = stack_of(env, stack_name);
    let versions_table = format!("{stack}-policy-versions");
    let sdk = sdk_config(endpoint_url).await;
    let store = DynamoPolicyStore::new(aws_sdk_dynamodb::Client::new(&sdk), &versions_table);
    let changes = DynamoChanges::new(store, format!("{stack}-decisions"))
        .with_tool_policy(format!("{stack}-tool-policy"));
    (changes, versions_table)
}

/// The decisions table of the stack of `env`, where control events go.
pub(crate) async fn stack_control_log(
    env: governance::model::Environment,
    stack_name: Option<&str>,
    endpoint_url: Option<&str>,
) -> governance::adapters::aws::dynamodb::DynamoDecisionLog {
    let sdk = sdk_config(endpoint_url).await;
    governance::adapters::aws::dynamodb::DynamoDecisionLog::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        format!("{}-decisions", stack_of(env, stack_name)),
    )
}

/// Pushes; the directory's tests must have passed.
pub fn run(push: super::PushArgs<'_>) -> anyhow::Result<ExitCode> {
    let stack = push
        .stack_name
        .clone()
        .unwrap_or_else(|| format!("agent-governance-{}", push.env));
    let versions_table = format!("{stack}-policy-versions");
    let decisions_table = format!("{stack}-decisions");
    let grants_table = format!("{stack}-tool-policy");
    let bundle = PolicyBundle::from_dir(push.dir)?;
    let registry = compile(&bundle)
        .map_err(|_| anyhow::anyhow!("the policy directory is invalid"))?
        .registry;
    let wrong_env: Vec<&str> = registry
        .agents
        .iter()
        .filter(|a| a.environment != push.env)
        .map(|a| a.id.as_str())
        .collect();
    if !wrong_env.is_empty() {
        eprintln!(
            "note: {} agent(s) are registered for another environment than `{}` and will be denied there: {}",
            wrong_env.len(),
            push.env,
            wrong_env.join(", ")
        );
    }
    runtime()?.block_on(async {
        let sdk = sdk_config(push.endpoint_url.as_deref()).await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let store = DynamoPolicyStore::new(client.clone(), &versions_table);
        if push.propose {
            let changes =
                DynamoChanges::new(store, &decisions_table).with_tool_policy(&grants_table);
            let change = changes::propose(
                &changes,
                push.env,
                PublishRequest {
                    bundle,
                    author: push.author.clone(),
                    message: push.message.clone(),
                    at: time::OffsetDateTime::now_utc(),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot propose to `{versions_table}`: {e}"))?;
            return Ok(super::change::report(&change));
        }
        if let Some(spec) = changes::direct_activation_refused(&store, push.env)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read `{versions_table}`: {e}"))?
        {
            anyhow::bail!(
                "not pushed: {env} reviews policy changes, so `push` is refused. Use `govctl \
                 policy propose DIR --env {env} --message …`: low-risk changes activate at once, \
                 high-risk ones once a member of `{}` other than you approves them",
                spec.reviewers_group,
                env = push.env
            );
        }
        // The version being replaced, for the diff the audit trail keeps.
        let previous = match store.active().await {
            Ok(Some(a)) => Some(store.version(&a.version_id).await.map_err(|e| {
                anyhow::anyhow!("cannot read the active version {}: {e}", a.version_id)
            })?),
            Ok(None) => None,
            Err(e) => anyhow::bail!("cannot read `{versions_table}`: {e}"),
        };
        let now = time::OffsetDateTime::now_utc();
        // Each change and its control-plane event are one transaction across
        // the two tables: nothing is published or activated unrecorded.
        let version = store
            .publish_recorded(
                PublishRequest {
                    bundle: bundle.clone(),
                    author: push.author.clone(),
                    message: push.message.clone(),
                    at: now,
                },
                &decisions_table,
                |version| {
                    let parent = previous
                        .as_ref()
                        .filter(|(v, _)| version.parent.as_deref() == Some(v.id.as_str()))
                        .map(|(_, b)| b);
                    ControlEvent::published(version, parent, &bundle)
                },
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot publish to `{versions_table}` and record it in `{decisions_table}`: {e}"
                )
            })?;
        println!(
            "pushed {} ({}) to {versions_table}",
            version.id, version.content_hash
        );
        if push.no_activate {
            return Ok(ExitCode::SUCCESS);
        }
        store
            .activate_recorded(&version.id, &push.author, now, &decisions_table, |active| {
                ControlEvent::activated(
                    (&active.version_id, &version.content_hash, &bundle),
                    previous.as_ref().map(|(v, b)| (v.id.as_str(), b)),
                    false,
                    &active.activated_by,
                    &active.activated_at,
                )
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot activate {} and record it in `{decisions_table}`: {e}",
                    version.id
                )
            })?;
        println!("activated {}", version.id);
        sync_tool_policy(&client, &grants_table, &registry, &version.id)
            .await
            .map_err(|e| anyhow::anyhow!("cannot update `{grants_table}`: {e}"))?;
        println!("grants written to {grants_table}");
        Ok(ExitCode::SUCCESS)
    })
}
