//! Registry checks of what the MCP gateway reads: the `servers:` entries and
//! the tools' `server`, `upstream_tool` and `idempotency`.

use std::collections::HashSet;

use marked_yaml::Node;

use super::yaml::{self, Seg};
use super::{Diagnostic, REGISTRY_FILE};
use crate::model::{Registry, Transport};

/// The longest an exactly-once key is remembered: 31 days.
const MAX_IDEMPOTENCY_WINDOW_SECONDS: u64 = 31 * 86_400;
/// The longest an upstream request may be given.
const MAX_UPSTREAM_TIMEOUT_SECONDS: u64 = 900;

/// Secret names become environment variable and file names.
fn valid_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

pub(super) fn check_servers(
    reg: &Registry,
    node: &Node,
    valid_id: fn(&str) -> bool,
    diags: &mut Vec<Diagnostic>,
) {
    let err = |diags: &mut Vec<Diagnostic>, path: &[Seg<'_>], msg: String| {
        let (line, column) = yaml::position(node, path);
        diags.push(Diagnostic::error(REGISTRY_FILE, line, column, msg));
    };
    let warn = |diags: &mut Vec<Diagnostic>, path: &[Seg<'_>], msg: String| {
        let (line, column) = yaml::position(node, path);
        diags.push(Diagnostic::warning(REGISTRY_FILE, line, column, msg));
    };

    let mut servers = HashSet::new();
    for (i, server) in reg.servers.iter().enumerate() {
        let at = |k: &'static str| [Seg::Key("servers"), Seg::Index(i), Seg::Key(k)];
        if !valid_id(&server.id) {
            err(
                diags,
                &at("id"),
                format!(
                    "server id `{}` must be 1-128 characters of letters, digits and - _ . : / @",
                    server.id
                ),
            );
        }
        if !servers.insert(server.id.as_str()) {
            err(
                diags,
                &at("id"),
                format!("server `{}` is defined twice", server.id),
            );
        }
        if server.endpoints.is_empty() {
            warn(
                diags,
                &at("endpoints"),
                format!(
                    "server `{}` has no endpoints: its tools are unavailable everywhere",
                    server.id
                ),
            );
        }
        for (env, endpoint) in &server.endpoints {
            let at = [
                Seg::Key("servers"),
                Seg::Index(i),
                Seg::Key("endpoints"),
                Seg::Key(env.as_str()),
            ];
            match endpoint.transport() {
                Err(why) => err(
                    diags,
                    &at,
                    format!("the {env} endpoint of server `{}` {why}", server.id),
                ),
                Ok(Transport::Http(url)) => {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        err(
                            diags,
                            &at,
                            format!(
                                "the {env} endpoint of server `{}` must be an http:// or https:// URL, not `{url}`",
                                server.id
                            ),
                        );
                    }
                }
                Ok(Transport::Stdio { command, .. }) => {
                    if command.trim().is_empty() {
                        err(
                            diags,
                            &at,
                            format!("the {env} command of server `{}` is empty", server.id),
                        );
                    }
                }
            }
        }
        if let Some(cred) = &server.credential {
            if !valid_secret_name(&cred.secret) {
                err(
                    diags,
                    &at("credential"),
                    format!(
                        "credential secret `{}` of server `{}` must be 1-128 letters, digits, - and _",
                        cred.secret, server.id
                    ),
                );
            }
            if axum::http::HeaderName::from_bytes(cred.header.as_bytes()).is_err() {
                err(
                    diags,
                    &at("credential"),
                    format!(
                        "credential header `{}` of server `{}` is not an HTTP header name",
                        cred.header, server.id
                    ),
                );
            }
        }
        if server
            .timeout_seconds
            .is_some_and(|t| t == 0 || t > MAX_UPSTREAM_TIMEOUT_SECONDS)
        {
            err(
                diags,
                &at("timeout_seconds"),
                format!(
                    "timeout_seconds of server `{}` must be between 1 and {MAX_UPSTREAM_TIMEOUT_SECONDS}",
                    server.id
                ),
            );
        }
    }

    let mut clients = std::collections::HashMap::new();
    for (i, agent) in reg.agents.iter().enumerate() {
        for (j, client) in agent.oauth_clients.iter().enumerate() {
            let at = [
                Seg::Key("agents"),
                Seg::Index(i),
                Seg::Key("oauth_clients"),
                Seg::Index(j),
            ];
            if client.trim().is_empty() || client.len() > 256 {
                err(
                    diags,
                    &at,
                    format!(
                        "an OAuth client id of agent `{}` must be 1-256 characters",
                        agent.id
                    ),
                );
            } else if let Some(other) = clients.insert(client.as_str(), agent.id.as_str()) {
                err(
                    diags,
                    &at,
                    format!(
                        "OAuth client `{client}` is mapped to both `{other}` and `{}`",
                        agent.id
                    ),
                );
            }
        }
    }

    let mut upstream_names = HashSet::new();
    for (i, tool) in reg.tools.iter().enumerate() {
        let at = |k: &'static str| [Seg::Key("tools"), Seg::Index(i), Seg::Key(k)];
        match &tool.server {
            Some(server) if !servers.contains(server.as_str()) => err(
                diags,
                &at("server"),
                format!(
                    "tool `{}` names server `{server}`, which `servers` does not define",
                    tool.id
                ),
            ),
            Some(server) => {
                if !upstream_names.insert((server.as_str(), tool.upstream_name())) {
                    err(
                        diags,
                        &at("id"),
                        format!(
                            "two tools are `{}` on server `{server}`: one upstream tool has one registry entry",
                            tool.upstream_name()
                        ),
                    );
                }
            }
            None => {
                if tool.upstream_tool.is_some() {
                    err(
                        diags,
                        &at("upstream_tool"),
                        format!("tool `{}` names an upstream_tool but no server", tool.id),
                    );
                }
                if tool.idempotency.is_some() {
                    warn(
                        diags,
                        &at("idempotency"),
                        format!(
                            "tool `{}` declares idempotency but no server: only calls through the gateway execute exactly once",
                            tool.id
                        ),
                    );
                }
            }
        }
        if let Some(idem) = &tool.idempotency {
            if idem.key.is_empty() {
                err(
                    diags,
                    &at("idempotency"),
                    format!(
                        "idempotency of tool `{}` needs at least one key argument",
                        tool.id
                    ),
                );
            }
            for name in &idem.key {
                if !tool.arguments.contains_key(name) {
                    err(
                        diags,
                        &at("idempotency"),
                        format!(
                            "idempotency key `{name}` of tool `{}` is not one of its declared arguments",
                            tool.id
                        ),
                    );
                }
            }
            if idem.window_seconds == 0 || idem.window_seconds > MAX_IDEMPOTENCY_WINDOW_SECONDS {
                err(
                    diags,
                    &at("idempotency"),
                    format!(
                        "idempotency window_seconds of tool `{}` must be between 1 and {MAX_IDEMPOTENCY_WINDOW_SECONDS} (31 days)",
                        tool.id
                    ),
                );
            }
        }
    }
}
