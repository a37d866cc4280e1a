//! Upstream MCP servers through the official Rust SDK (`rmcp`): Streamable
//! HTTP, and stdio child processes for the local control plane.
//!
//! One connection per server endpoint is made on first use and shared by
//! every call (the SDK's client handle multiplexes concurrent requests). A
//! connection that fails at the transport is dropped, and the next call
//! connects again. The shared client probes the stateless 2026-07-28
//! revision first (`server/discover`) and falls back to the `initialize`
//! handshake, so it reaches servers of every revision the SDK speaks. On
//! it, a server asks for the client's input with `InputRequiredResult`s
//! (SEP-2322), which go back to the client as results, and each request
//! carries the client's own declared capabilities.
//!
//! A client session of an earlier revision (2025-06-18, 2025-11-25) gets
//! connections of its own instead ([`McpUpstreams`]'s `session`): they make
//! the `initialize` handshake with the client's revision and capabilities,
//! so a server sends that client its requests (sampling, elicitation,
//! roots) and notifications (log messages, resource updates) on them, and
//! the gateway passes them on. They close with the session.

// Sampling, roots and logging are deprecated from 2026-07-28 on (SEP-2577),
// but clients of the earlier revisions use them, and the gateway relays them.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use rmcp::handler::client::ClientHandler;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientConfig, ClientRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, RequestMetaObject, ResourceUpdatedNotificationParam, ServerResult,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, InboundStreamOrigin, NotificationContext,
    PeerRequestOptions, RequestContext, RunningService, ServiceError,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData as McpError, RoleClient};
use serde_json::{Map, Value};

use crate::model::{Endpoint, ServerSpec, Transport};
use crate::ports::{
    CallContext, ClientRelay, ClientSession, ProgressSink, Secrets, Upstream, UpstreamError,
    Upstreams,
};

type Client = RunningService<RoleClient, Relay>;

/// The client side of one upstream connection: it relays each call's
/// progress notifications to the caller that asked for them (every call
/// gets its own progress token, so the one shared connection can tell
/// concurrent calls apart), and on a session's own connection the server's
/// requests and notifications to that session's client.
#[derive(Clone, Default)]
struct Relay {
    inner: Arc<std::sync::Mutex<Sinks>>,
    /// The client session the connection belongs to, if it is its own.
    session: Option<SessionLink>,
}

/// A client session, as its own connections present it to a server.
#[derive(Clone)]
struct SessionLink {
    /// The client's `initialize` parameters, sent as the gateway's own.
    info: ClientConfig,
    /// Where what is not tied to a call in flight goes.
    relay: Arc<dyn ClientRelay>,
}

/// The sinks of the calls in flight, by progress token, and notifications
/// that arrived before their call's sink was registered (the SDK chooses
/// the token as it sends the request, so the first notification can win);
/// and the clients of calls in flight, by request id, for the requests a
/// server makes during a call.
#[derive(Default)]
struct Sinks {
    by_token: HashMap<String, ProgressSink>,
    early: HashMap<String, (std::time::Instant, Vec<ProgressNotificationParam>)>,
    by_request: HashMap<String, Arc<dyn ClientRelay>>,
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

    /// Routes the server's requests made during request `id` to `client`.
    fn register_request(&self, id: String, client: Arc<dyn ClientRelay>) {
        if let Ok(mut sinks) = self.inner.lock() {
            sinks.by_request.insert(id, client);
        }
    }

    fn unregister_request(&self, id: &str) {
        if let Ok(mut sinks) = self.inner.lock() {
            sinks.by_request.remove(id);
        }
    }

    /// The client a server's request is for: the one of the call whose
    /// response stream it came on, else the session's.
    fn client_for(&self, context: &RequestContext<RoleClient>) -> Option<Arc<dyn ClientRelay>> {
        let by_call = match context.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => self
                .inner
                .lock()
                .ok()
                .and_then(|sinks| sinks.by_request.get(&id.to_string()).cloned()),
            _ => None,
        };
        by_call.or_else(|| self.session.as_ref().map(|s| Arc::clone(&s.relay)))
    }

    /// Passes a server's request on to its client.
    async fn pass_request<P: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        context: &RequestContext<RoleClient>,
    ) -> Result<R, McpError> {
        let Some(client) = self.client_for(context) else {
            return Err(McpError::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                format!("{method}: no client that could answer is connected through the gateway"),
                None,
            ));
        };
        let params = serde_json::to_value(params)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        match client.request(method, params).await {
            Ok(result) => serde_json::from_value(result).map_err(|e| {
                McpError::internal_error(format!("the client's answer to {method}: {e}"), None)
            }),
            Err(UpstreamError::Rpc {
                code,
                message,
                data,
            }) => Err(McpError::new(rmcp::model::ErrorCode(code), message, data)),
            Err(e) => Err(McpError::internal_error(e.to_string(), None)),
        }
    }

    /// Passes a server's notification on to the session's client.
    async fn pass_notification<P: serde::Serialize>(&self, method: &str, params: &P) {
        if let (Some(session), Ok(params)) = (&self.session, serde_json::to_value(params)) {
            session.relay.notify(method, params).await;
        }
    }
}

impl ClientHandler for Relay {
    fn get_info(&self) -> ClientConfig {
        self.session
            .as_ref()
            .map_or_else(ClientConfig::default, |s| s.info.clone())
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        self.pass_request("sampling/createMessage", &params, &context)
            .await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        self.pass_request("elicitation/create", &params, &context)
            .await
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        self.pass_request("roots/list", &serde_json::json!({}), &context)
            .await
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.pass_notification("notifications/message", &params)
            .await;
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.pass_notification("notifications/resources/updated", &params)
            .await;
    }

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
    pool: Arc<Pool>,
}

/// What every connection is made with, and the shared connections.
struct Pool {
    secrets: Arc<dyn Secrets>,
    /// Whether `command` endpoints may be started (the local control plane).
    allow_stdio: bool,
    connections: Connections,
}

/// Connections by server and endpoint.
type Connections = tokio::sync::Mutex<HashMap<String, Arc<McpUpstream>>>;

fn connection_key(server: &ServerSpec, endpoint: &Endpoint) -> String {
    format!(
        "{}\u{0}{}",
        server.id,
        serde_json::to_string(&(endpoint, &server.credential)).unwrap_or_default()
    )
}

impl McpUpstreams {
    /// Connections whose credentials come from `secrets`; stdio servers are
    /// started only if `allow_stdio`.
    pub fn new(secrets: Arc<dyn Secrets>, allow_stdio: bool) -> Self {
        Self {
            pool: Arc::new(Pool {
                secrets,
                allow_stdio,
                connections: tokio::sync::Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Pool {
    async fn open(
        &self,
        server: &ServerSpec,
        endpoint: &Endpoint,
        relay: Relay,
    ) -> Result<Client, UpstreamError> {
        let lifecycle = if relay.session.is_some() {
            // The client's own revision, through its own handshake.
            ClientLifecycleMode::Initialize
        } else {
            ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::LATEST],
                legacy_version: None,
            }
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
                relay.serve_with_lifecycle(transport, lifecycle).await
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
                relay.serve_with_lifecycle(transport, lifecycle).await
            }
        };
        connected.map_err(|e| UpstreamError::Unavailable(format!("server `{}`: {e}", server.id)))
    }

    /// The open connection in `connections` to `server`, or a new one.
    async fn connect_in(
        &self,
        connections: &Connections,
        server: &ServerSpec,
        endpoint: &Endpoint,
        relay: impl FnOnce() -> Relay,
    ) -> Result<Arc<dyn Upstream>, UpstreamError> {
        let key = connection_key(server, endpoint);
        let mut connections = connections.lock().await;
        if let Some(c) = connections.get(&key) {
            if !c.client.is_closed() {
                return Ok(Arc::clone(c) as Arc<dyn Upstream>);
            }
        }
        // Held across the handshake, so that concurrent first calls make
        // one connection, not one each.
        let client = self.open(server, endpoint, relay()).await?;
        let upstream = Arc::new(McpUpstream { client });
        connections.insert(key, Arc::clone(&upstream));
        Ok(upstream)
    }
}

#[async_trait]
impl Upstreams for McpUpstreams {
    async fn connect(
        &self,
        server: &ServerSpec,
        endpoint: &Endpoint,
    ) -> Result<Arc<dyn Upstream>, UpstreamError> {
        self.pool
            .connect_in(&self.pool.connections, server, endpoint, Relay::default)
            .await
    }

    fn session(&self, client: ClientSession) -> Option<Arc<dyn Upstreams>> {
        let info: ClientConfig = match serde_json::from_value(client.initialize) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(error = %e, "a client's initialize parameters cannot be presented upstream; its session shares the gateway's connections");
                return None;
            }
        };
        Some(Arc::new(SessionUpstreams {
            pool: Arc::clone(&self.pool),
            link: SessionLink {
                info,
                relay: client.relay,
            },
            connections: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }
}

/// The connections of one client session; they close when it is dropped
/// with the session.
struct SessionUpstreams {
    pool: Arc<Pool>,
    link: SessionLink,
    connections: Connections,
}

#[async_trait]
impl Upstreams for SessionUpstreams {
    async fn connect(
        &self,
        server: &ServerSpec,
        endpoint: &Endpoint,
    ) -> Result<Arc<dyn Upstream>, UpstreamError> {
        if matches!(endpoint.transport(), Ok(Transport::Stdio { .. })) {
            // One child process serves every client: a process per session
            // would be a program started per client.
            return self
                .pool
                .connect_in(&self.pool.connections, server, endpoint, Relay::default)
                .await;
        }
        let link = self.link.clone();
        self.pool
            .connect_in(&self.connections, server, endpoint, move || Relay {
                inner: Arc::default(),
                session: Some(link),
            })
            .await
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

/// The options that present `meta` (the client's own `_meta` entries) to
/// the server; the SDK sets them after its own, so they win.
fn with_meta(meta: Map<String, Value>) -> PeerRequestOptions {
    let mut options = PeerRequestOptions::no_options();
    if !meta.is_empty() {
        options.meta = Some(RequestMetaObject::from(meta));
    }
    options
}

/// A request whose parameters are the client's, as JSON.
fn client_request(method: &str, params: Value) -> Result<ClientRequest, UpstreamError> {
    let mut message = Map::new();
    message.insert("method".into(), Value::String(method.to_owned()));
    message.insert("params".into(), params);
    serde_json::from_value(Value::Object(message)).map_err(|e| UpstreamError::Rpc {
        code: -32602,
        message: format!("invalid params for {method}: {e}"),
        data: None,
    })
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
        context: CallContext,
    ) -> Result<Value, UpstreamError> {
        let mut params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        if let Some(responses) = context.input_responses {
            params.input_responses = Some(parse("tools/call", responses)?);
        }
        params.request_state = context.request_state;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // The SDK gives every request a progress token of its own; the
        // call's notifications are relayed by it.
        let handle = self
            .client
            .peer()
            .send_cancellable_request(request, with_meta(context.meta))
            .await
            .map_err(upstream_error)?;
        let relay = self.client.service();
        let key = token_key(&handle.progress_token);
        let request_id = handle.id.to_string();
        let relaying = context.progress.is_some();
        if let Some(sink) = context.progress {
            relay.register(&key, sink);
        }
        if let Some(client) = context.client {
            relay.register_request(request_id.clone(), client);
        }
        let answer = handle.await_response().await;
        if relaying {
            // The SDK hands notifications to the handler on a task of their
            // own, so the last ones a server sent before its result can
            // still be on their way when the result is here.
            tokio::time::sleep(PROGRESS_GRACE).await;
        }
        relay.unregister(&key);
        relay.unregister_request(&request_id);
        match answer.map_err(upstream_error)? {
            ServerResult::CallToolResult(result) => to_json(&result),
            ServerResult::InputRequiredResult(result) => to_json(&result),
            _ => Err(UpstreamError::Unavailable(
                "the server answered a tool call with another kind of result".into(),
            )),
        }
    }

    async fn request(
        &self,
        method: &str,
        params: Value,
        meta: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let known = matches!(
            method,
            "resources/list"
                | "resources/templates/list"
                | "resources/read"
                | "prompts/list"
                | "prompts/get"
                | "completion/complete"
                | "resources/subscribe"
                | "resources/unsubscribe"
        );
        if !known {
            return Err(UpstreamError::Rpc {
                code: -32601,
                message: format!("the gateway does not forward `{method}`"),
                data: None,
            });
        }
        // Sent as the client's request, once: a server's input requests
        // (SEP-2322) go back to the client, which answers them itself.
        let request = client_request(method, params)?;
        let result = self
            .client
            .peer()
            .send_cancellable_request(request, with_meta(meta))
            .await
            .map_err(upstream_error)?
            .await_response()
            .await
            .map_err(upstream_error)?;
        match result {
            // The revisions before 2026-07-28 answer a subscription with
            // an empty result.
            ServerResult::EmptyResult(_) => Ok(Value::Object(Map::new())),
            other => to_json(&other),
        }
    }
}
