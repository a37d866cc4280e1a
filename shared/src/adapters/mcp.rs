//! Upstream MCP servers through the official Rust SDK (`rmcp`): Streamable
//! HTTP, and stdio child processes for the local control plane.
//!
//! One connection per server endpoint is made on first use and shared by
//! every call (the SDK's client handle multiplexes concurrent requests). A
//! connection that fails at the transport is dropped, and the next call
//! connects again. The client probes the stateless 2026-07-28 revision
//! first (`server/discover`) and falls back to the `initialize` handshake,
//! so it reaches servers of every revision the SDK speaks.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use rmcp::handler::client::ClientHandler;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, ProgressNotificationParam,
    ProgressToken, ProtocolVersion, ServerResult,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, PeerRequestOptions, RunningService,
    ServiceError,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::RoleClient;
use serde_json::Value;

use crate::model::{Endpoint, ServerSpec, Transport};
use crate::ports::{ProgressSink, Secrets, Upstream, UpstreamError, Upstreams};

type Client = RunningService<RoleClient, Relay>;

/// The client side of one upstream connection: it relays each call's
/// progress notifications to the caller that asked for them. Every call
/// gets its own progress token, so the one shared connection can tell
/// concurrent calls apart.
#[derive(Clone, Default)]
struct Relay {
    inner: Arc<std::sync::Mutex<Sinks>>,
}

/// The sinks of the calls in flight, by progress token, and notifications
/// that arrived before their call's sink was registered (the SDK chooses
/// the token as it sends the request, so the first notification can win).
#[derive(Default)]
struct Sinks {
    by_token: HashMap<String, ProgressSink>,
    early: HashMap<String, (std::time::Instant, Vec<ProgressNotificationParam>)>,
}

/// How long a call that relays progress waits, after its result, for the
/// notifications sent before it.
const PROGRESS_GRACE: std::time::Duration = std::time::Duration::from_millis(25);

/// How long a notification waits for its call's sink.
const EARLY_KEPT: std::time::Duration = std::time::Duration::from_secs(10);

impl Relay {
    /// Routes the token's notifications to `sink`, first those that came early.
    fn register(&self, key: &str, sink: ProgressSink) {
        let early = match self.inner.lock() {
            Ok(mut sinks) => {
                sinks.by_token.insert(key.to_owned(), Arc::clone(&sink));
                sinks.early.remove(key).map(|(_, n)| n).unwrap_or_default()
            }
            Err(_) => Vec::new(),
        };
        for n in early {
            sink(n.progress, n.total, n.message);
        }
    }

    fn unregister(&self, key: &str) {
        if let Ok(mut sinks) = self.inner.lock() {
            sinks.by_token.remove(key);
            sinks.early.remove(key);
        }
    }
}

impl ClientHandler for Relay {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let key = token_key(&params.progress_token);
        let sink = match self.inner.lock() {
            Ok(mut sinks) => match sinks.by_token.get(&key).cloned() {
                Some(sink) => Some((sink, params)),
                None => {
                    sinks.early.retain(|_, (at, _)| at.elapsed() < EARLY_KEPT);
                    sinks
                        .early
                        .entry(key)
                        .or_insert_with(|| (std::time::Instant::now(), Vec::new()))
                        .1
                        .push(params);
                    None
                }
            },
            Err(_) => None,
        };
        if let Some((sink, n)) = sink {
            sink(n.progress, n.total, n.message);
        }
    }
}

fn token_key(token: &ProgressToken) -> String {
    serde_json::to_string(token).unwrap_or_default()
}

/// Connections to upstream servers, made with the SDK's client.
pub struct McpUpstreams {
    secrets: Arc<dyn Secrets>,
    /// Whether `command` endpoints may be started (the local control plane).
    allow_stdio: bool,
    connections: tokio::sync::Mutex<HashMap<String, Arc<McpUpstream>>>,
}

impl McpUpstreams {
    /// Connections whose credentials come from `secrets`; stdio servers are
    /// started only if `allow_stdio`.
    pub fn new(secrets: Arc<dyn Secrets>, allow_stdio: bool) -> Self {
        Self {
            secrets,
            allow_stdio,
            connections: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn open(
        &self,
        server: &ServerSpec,
        endpoint: &Endpoint,
    ) -> Result<Client, UpstreamError> {
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::LATEST],
            legacy_version: None,
        };
        let connected = match endpoint.transport().map_err(|why| {
            UpstreamError::Unusable(format!("the endpoint of server `{}` {why}", server.id))
        })? {
            Transport::Http(url) => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url);
                if let Some(cred) = &server.credential {
                    let secret = self.secrets.secret(&cred.secret).await?;
                    if cred.header.eq_ignore_ascii_case("authorization") {
                        if cred.prefix != "Bearer " {
                            return Err(UpstreamError::Unusable(format!(
                                "server `{}`: an Authorization credential must be a Bearer token",
                                server.id
                            )));
                        }
                        config = config.auth_header(secret);
                    } else {
                        let name = axum::http::HeaderName::from_bytes(cred.header.as_bytes())
                            .map_err(|e| UpstreamError::Unusable(e.to_string()))?;
                        let value =
                            axum::http::HeaderValue::from_str(&format!("{}{secret}", cred.prefix))
                                .map_err(|_| {
                                    UpstreamError::Unusable(format!(
                                        "the credential of server `{}` is not a valid header value",
                                        server.id
                                    ))
                                })?;
                        config = config.custom_headers(HashMap::from([(name, value)]));
                    }
                }
                let transport = StreamableHttpClientTransport::from_config(config);
                Relay::default()
                    .serve_with_lifecycle(transport, lifecycle)
                    .await
            }
            Transport::Stdio { command, args } => {
                if !self.allow_stdio {
                    return Err(UpstreamError::Unusable(format!(
                        "server `{}` is a stdio command, which only the local control plane can start",
                        server.id
                    )));
                }
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args);
                if let Some(cred) = &server.credential {
                    // A stdio server gets its credential in its environment.
                    let secret = self.secrets.secret(&cred.secret).await?;
                    cmd.env(
                        crate::adapters::local::secrets::LocalSecrets::variable(&cred.secret),
                        secret,
                    );
                }
                let transport = TokioChildProcess::new(cmd).map_err(|e| {
                    UpstreamError::Unavailable(format!("cannot start `{command}`: {e}"))
                })?;
                Relay::default()
                    .serve_with_lifecycle(transport, lifecycle)
                    .await
            }
        };
        connected.map_err(|e| UpstreamError::Unavailable(format!("server `{}`: {e}", server.id)))
    }
}

#[async_trait]
impl Upstreams for McpUpstreams {
    async fn connect(
        &self,
        server: &ServerSpec,
        endpoint: &Endpoint,
    ) -> Result<Arc<dyn Upstream>, UpstreamError> {
        let key = format!(
            "{}\u{0}{}",
            server.id,
            serde_json::to_string(&(endpoint, &server.credential)).unwrap_or_default()
        );
        let mut connections = self.connections.lock().await;
        if let Some(c) = connections.get(&key) {
            if !c.client.is_closed() {
                return Ok(Arc::clone(c) as Arc<dyn Upstream>);
            }
        }
        // Held across the handshake, so that concurrent first calls make
        // one connection, not one each.
        let client = self.open(server, endpoint).await?;
        let upstream = Arc::new(McpUpstream { client });
        connections.insert(key, Arc::clone(&upstream));
        Ok(upstream)
    }
}

/// One connected upstream server.
struct McpUpstream {
    client: Client,
}

fn upstream_error(e: ServiceError) -> UpstreamError {
    match e {
        ServiceError::McpError(e) => UpstreamError::Rpc {
            code: e.code.0,
            message: e.message.to_string(),
            data: e.data,
        },
        ServiceError::Timeout { timeout } => UpstreamError::Timeout(timeout.as_secs()),
        other => UpstreamError::Unavailable(other.to_string()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, UpstreamError> {
    serde_json::from_value(params).map_err(|e| UpstreamError::Rpc {
        code: -32602,
        message: format!("invalid params for {method}: {e}"),
        data: None,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, UpstreamError> {
    serde_json::to_value(value)
        .map_err(|e| UpstreamError::Unavailable(format!("unreadable answer: {e}")))
}

#[async_trait]
impl Upstream for McpUpstream {
    async fn list_tools(&self) -> Result<Vec<Value>, UpstreamError> {
        let tools = self
            .client
            .peer()
            .list_all_tools()
            .await
            .map_err(upstream_error)?;
        tools.iter().map(to_json).collect()
    }

    async fn call_tool(
        &self,
        name: &str,
        arguments: serde_json::Map<String, Value>,
        progress: Option<ProgressSink>,
    ) -> Result<Value, UpstreamError> {
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // The SDK gives every request a progress token of its own; the
        // call's notifications are relayed by it.
        let handle = self
            .client
            .peer()
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(upstream_error)?;
        let relay = self.client.service();
        let key = token_key(&handle.progress_token);
        let relaying = progress.is_some();
        if let Some(sink) = progress {
            relay.register(&key, sink);
        }
        let answer = handle.await_response().await;
        if relaying {
            // The SDK hands notifications to the handler on a task of their
            // own, so the last ones a server sent before its result can
            // still be on their way when the result is here.
            tokio::time::sleep(PROGRESS_GRACE).await;
        }
        relay.unregister(&key);
        let result = match answer.map_err(upstream_error)? {
            ServerResult::CallToolResult(result) => result,
            _ => {
                return Err(UpstreamError::Unavailable(
                    "the server answered a tool call with another kind of result".into(),
                ))
            }
        };
        to_json(&result)
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, UpstreamError> {
        let peer = self.client.peer();
        match method {
            "resources/list" => to_json(
                &peer
                    .list_resources(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?,
            ),
            "resources/templates/list" => to_json(
                &peer
                    .list_resource_templates(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?,
            ),
            "resources/read" => to_json(
                &peer
                    .read_resource(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?,
            ),
            "prompts/list" => to_json(
                &peer
                    .list_prompts(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?,
            ),
            "prompts/get" => to_json(
                &peer
                    .get_prompt(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?,
            ),
            "completion/complete" => to_json(
                &peer
                    .complete(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?,
            ),
            // The revisions before 2026-07-28 subscribe to one resource at a
            // time; the update notifications are not relayed (they are not
            // tied to a call of the shared connection).
            #[allow(deprecated)]
            "resources/subscribe" => {
                peer.subscribe(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?;
                Ok(Value::Object(serde_json::Map::new()))
            }
            #[allow(deprecated)]
            "resources/unsubscribe" => {
                peer.unsubscribe(parse(method, params)?)
                    .await
                    .map_err(upstream_error)?;
                Ok(Value::Object(serde_json::Map::new()))
            }
            other => Err(UpstreamError::Rpc {
                code: -32601,
                message: format!("the gateway does not forward `{other}`"),
                data: None,
            }),
        }
    }
}
