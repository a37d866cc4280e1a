//! The upstream MCP servers the gateway forwards allowed calls to, as the
//! registry's `servers:` entries describe them.
//!
//! A tool names its server (`server:`) and, when it differs from the tool's
//! id, its name there (`upstream_tool:`). The environment the control plane
//! runs in picks one endpoint of the server, so that a `dev` control plane
//! can never reach a `prod` endpoint: a server without an endpoint for this
//! environment is unavailable, and so are its tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Environment;

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// The server's name, unique in the registry; tools name it in `server:`.
    pub id: String,
    /// What it is, for reviewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where it runs, per environment.
    #[serde(default)]
    pub endpoints: BTreeMap<Environment, Endpoint>,
    /// The credential the gateway presents upstream. It comes from the
    /// host's configuration, never from the agent: the agent's own
    /// credential is never forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialSpec>,
    /// MCP features other than tools that are forwarded to this server
    /// (default: none; such requests are refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward: Vec<Forwarded>,
    /// How long one upstream request may take, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// Upstream requests wait this long unless the server says otherwise.
pub const DEFAULT_UPSTREAM_TIMEOUT_SECONDS: u64 = 30;

impl ServerSpec {
    /// The endpoint for `environment`, if the server has one there.
    pub fn endpoint(&self, environment: Environment) -> Option<&Endpoint> {
        self.endpoints.get(&environment)
    }

    /// How long one upstream request may take.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.timeout_seconds
                .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT_SECONDS),
        )
    }

    /// Whether requests of `feature` may be forwarded here.
    pub fn forwards(&self, feature: Forwarded) -> bool {
        self.forward.contains(&feature)
    }
}

/// Where one server runs in one environment: a Streamable HTTP `url`, or,
/// for the local control plane only, a `command` started as a stdio server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The Streamable HTTP endpoint (`https://host/mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The program of a stdio server (local control plane only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// An endpoint, checked: exactly one transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport<'a> {
    /// Streamable HTTP.
    Http(&'a str),
    /// A child process speaking over stdin and stdout.
    Stdio {
        /// The program.
        command: &'a str,
        /// Its arguments.
        args: &'a [String],
    },
}

impl Endpoint {
    /// The transport, or why the endpoint names none (or both).
    pub fn transport(&self) -> Result<Transport<'_>, &'static str> {
        match (&self.url, &self.command) {
            (Some(url), None) => Ok(Transport::Http(url)),
            (None, Some(command)) => Ok(Transport::Stdio {
                command,
                args: &self.args,
            }),
            (Some(_), Some(_)) => Err("names both a `url` and a `command`; keep one"),
            (None, None) => Err("names neither a `url` nor a `command`"),
        }
    }
}

/// The credential presented to an upstream server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// The secret's name. Locally it is read from the environment variable
    /// `GOVCTL_SECRET_<NAME>` (upper case, `-` as `_`) or from the file
    /// `secrets/<name>` in the data directory; on AWS from Secrets Manager.
    pub secret: String,
    /// The header it goes in (default `Authorization`).
    #[serde(default = "default_credential_header")]
    pub header: String,
    /// Written before the secret in the header (default `Bearer `).
    #[serde(default = "default_credential_prefix")]
    pub prefix: String,
}

fn default_credential_header() -> String {
    "Authorization".to_owned()
}

fn default_credential_prefix() -> String {
    "Bearer ".to_owned()
}

/// An MCP feature besides tools that a server may have forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarded {
    /// `resources/list`, `resources/read`, `resources/templates/list`.
    Resources,
    /// `prompts/list`, `prompts/get`.
    Prompts,
    /// `completion/complete`.
    Completions,
}

impl Forwarded {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarded::Resources => "resources",
            Forwarded::Prompts => "prompts",
            Forwarded::Completions => "completions",
        }
    }
}

/// A tool's exactly-once execution through the gateway: calls with equal
/// values of the `key` arguments within the window execute upstream once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySpec {
    /// The arguments whose values identify one effect (an application id).
    pub key: Vec<String>,
    /// How long a key is remembered, in seconds.
    pub window_seconds: u64,
}
