//! `govctl registry import --server NAME`: proposes registry entries for an
//! upstream server's tools, from its own `tools/list`.

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
