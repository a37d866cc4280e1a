//! `govctl registry import --server NAME`: proposes registry entries for an
//! upstream server's tools, from its own `tools/list`; and `govctl registry
//! export`: the agent inventory.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use governance::adapters::local::secrets::LocalSecrets;
use governance::adapters::mcp::McpUpstreams;
use governance::gateway::import::propose;
use governance::model::Environment;
use governance::policy::{compile, PolicyBundle};
use governance::ports::Upstreams as _;

/// Connects to `server`'s endpoint for `environment`, as the registry in
/// `policy` names it, and prints the proposal.
pub fn import(
    policy: &Path,
    server: &str,
    environment: Environment,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let bundle = PolicyBundle::from_dir(policy)?;
    let compiled = compile(&bundle).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        anyhow::anyhow!("the policy directory is invalid")
    })?;
    let registry = compiled.registry;
    let spec = registry.server(server).with_context(|| {
        let known: Vec<&str> = registry.servers.iter().map(|s| s.id.as_str()).collect();
        format!(
            "`servers` in {} has no `{server}` (it has: {})",
            policy.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )
    })?;
    let endpoint = spec.endpoint(environment).with_context(|| {
        format!(
            "server `{server}` has no endpoint for `{environment}`; pick one with --environment"
        )
    })?;
    let upstreams = McpUpstreams::new(Arc::new(LocalSecrets::new(data_dir)), true);
    let tools = super::runtime()?.block_on(async {
        let upstream = upstreams.connect(spec, endpoint).await?;
        tokio::time::timeout(spec.timeout(), upstream.list_tools())
            .await
            .map_err(|_| governance::ports::UpstreamError::Timeout(spec.timeout().as_secs()))?
    });
    let tools = tools.with_context(|| format!("cannot list the tools of `{server}`"))?;
    print!("{}", propose(server, &tools, &registry));
    Ok(ExitCode::SUCCESS)
}

/// What `govctl registry export` was asked.
pub struct ExportArgs<'a> {
    /// `csv` or `json`.
    pub format: &'a str,
    /// The policy directory to list instead of the active version.
    pub policy: Option<&'a Path>,
    /// Where to write; standard output when `None`.
    pub output: Option<&'a Path>,
    /// The data directory: the active version and the decision log.
    pub data_dir: &'a Path,
    /// An export or a copy of the evidence bucket to read last activity
    /// from, instead of the data directory's log.
    pub file: Option<&'a Path>,
}

/// Prints the agent inventory.
pub fn export(args: &ExportArgs<'_>) -> anyhow::Result<ExitCode> {
    use governance::ports::PolicyStore as _;
    // A store is read only where one exists: an export never creates one.
    let store = args
        .data_dir
        .join(governance::adapters::sqlite::DB_FILE)
        .exists()
        .then(|| super::open_store(args.data_dir))
        .transpose()?;
    let bundle = match (args.policy, &store) {
        (Some(dir), _) => PolicyBundle::from_dir(dir)?,
        (None, Some(store)) => super::runtime()?.block_on(async {
            let active = store.active().await?.with_context(|| {
                format!(
                    "no policy version is active in `{}`; name one with --policy",
                    args.data_dir.display()
                )
            })?;
            Ok::<_, anyhow::Error>(store.version(&active.version_id).await?.1)
        })?,
        (None, None) => anyhow::bail!(
            "`{}` holds no store; name a policy directory with --policy, or the data directory of a control plane with --data-dir",
            args.data_dir.display()
        ),
    };
    let registry = compile(&bundle)
        .map_err(|diags| {
            for d in &diags {
                eprintln!("{d}");
            }
            anyhow::anyhow!("the policy is invalid")
        })?
        .registry;
    let last_activity = match (args.file, &store) {
        (Some(file), _) => {
            let (entries, _) = super::trail::read(file)?;
            let mut newest = std::collections::BTreeMap::<String, String>::new();
            for e in &entries {
                let Ok(r) = serde_json::from_str::<governance::model::DecisionRecord>(&e.body)
                else {
                    continue;
                };
                if !r.is_decision() {
                    continue;
                }
                let at = newest.entry(r.agent_id).or_default();
                if *at < r.timestamp {
                    *at = r.timestamp;
                }
            }
            newest
        }
        (None, Some(store)) => store.blocking(|conn| {
            let mut stmt = conn
                .prepare("SELECT agent_id, max(timestamp) FROM decisions GROUP BY agent_id")
                .map_err(|e| governance::ports::StoreError::Unavailable(e.to_string()))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .and_then(Iterator::collect)
                .map_err(|e| governance::ports::StoreError::Unavailable(e.to_string()))?;
            Ok(rows)
        })?,
        (None, None) => std::collections::BTreeMap::new(),
    };
    let agents = governance::inventory::inventory(&registry, &last_activity);
    let text = if args.format == "json" {
        let mut json = serde_json::to_string_pretty(&agents)?;
        json.push('\n');
        json
    } else {
        governance::inventory::to_csv(&agents)
    };
    match args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
