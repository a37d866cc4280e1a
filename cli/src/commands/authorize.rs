//! `govctl authorize`: one decision against a policy directory, explained.

use std::process::ExitCode;

use anyhow::Context as _;
use governance::model::UserContext;
use governance::policy::{load_engine, DecisionInput, PolicyBundle, PolicyVersionRef};

use crate::cli::AuthorizeArgs;

/// Runs the dry run; exit 0 for allow or pending approval, 2 for deny (1,
/// from `main`, when it cannot be answered).
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
    let now = args.time.unwrap_or_else(time::OffsetDateTime::now_utc);
    let mut eval = engine.decide(&DecisionInput {
        agent_id: &args.agent,
        user: &user,
        tool_id: &args.tool,
        requested_risk: args.risk,
        arguments: &arguments,
        session_id: None,
        environment: args.environment,
        now,
    });
    // The limits an allowed call would be counted against; a dry run has
    // no counters, so it shows them and counts nothing.
    let limits = match governance::limits::plan(
        engine.registry(),
        &governance::limits::Call {
            agent: engine.agent(&args.agent),
            tool: engine.tool(&args.tool),
            user: &user,
            run_id: args.run_id.as_deref(),
            session_id: None,
            decision: eval.decision,
            now,
        },
    ) {
        Ok(plan) => plan.describe(),
        Err(refused) => {
            eval.decision = governance::model::Decision::Deny;
            eval.reasons = vec![refused.reason];
            eval.determining_policies.clear();
            Vec::new()
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "decision": eval.decision,
                "reasons": eval.reasons,
                "determining_policies": eval.determining_policies,
                "errors": eval.errors,
                "agent_version": eval.agent_version,
                "limits": limits,
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
        if !limits.is_empty() {
            println!("limits (a dry run counts nothing; the call is counted if allowed):");
            for l in &limits {
                println!("  - {l}");
            }
        }
        println!("policy: {} (unpublished)", engine.version().content_hash);
    }
    Ok(match eval.decision {
        governance::model::Decision::Deny => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}
