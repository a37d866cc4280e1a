//! `govctl authorize`: one decision against a policy directory, explained.

use std::process::ExitCode;

use anyhow::Context as _;
use governance::model::UserContext;
use governance::policy::{load_engine, DecisionInput, PolicyBundle, PolicyVersionRef};

use crate::cli::AuthorizeArgs;

/// Runs the dry run; exit 0 for allow or pending approval, 2 for deny.
pub fn run(args: &AuthorizeArgs) -> anyhow::Result<ExitCode> {
    let bundle = PolicyBundle::from_dir(&args.policy)?;
    let hash = bundle.content_hash();
    let engine = load_engine(
        &bundle,
        PolicyVersionRef {
            id: "unpublished".into(),
            content_hash: hash,
        },
    )?;
    let arguments: serde_json::Value =
        serde_json::from_str(&args.args).context("`--args` must be a JSON object")?;
    let user = UserContext {
        id: args.user.clone(),
        roles: args.roles.clone(),
        organization: args.org.clone(),
    };
    let eval = engine.decide(&DecisionInput {
        agent_id: &args.agent,
        user: &user,
        tool_id: &args.tool,
        requested_risk: args.risk,
        arguments: &arguments,
        session_id: None,
        environment: args.environment,
        now: time::OffsetDateTime::now_utc(),
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "decision": eval.decision,
                "reasons": eval.reasons,
                "determining_policies": eval.determining_policies,
                "errors": eval.errors,
                "agent_version": eval.agent_version,
                "policy_hash": engine.version().content_hash,
            }))?
        );
    } else {
        println!("decision: {}", eval.decision.as_str());
        println!("reasons:");
        for r in &eval.reasons {
            match &r.policy_id {
                Some(p) => println!("  - {}: {} [{p}]", r.code, r.message),
                None => println!("  - {}: {}", r.code, r.message),
            }
        }
        if !eval.determining_policies.is_empty() {
            println!("determining policies:");
            for id in &eval.determining_policies {
                let (file, text) = engine
                    .compiled()
                    .sources
                    .get(id)
                    .map_or(("?", ""), |(f, t)| (f.as_str(), t.as_str()));
                println!("  {id} ({file})");
                for line in text.lines() {
                    println!("    {line}");
                }
            }
        }
        println!("policy: {} (unpublished)", engine.version().content_hash);
    }
    Ok(match eval.decision {
        governance::model::Decision::Deny => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}
