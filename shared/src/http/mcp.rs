//! The MCP endpoint (`/mcp`, Streamable HTTP) of `govctl serve` and of the
//! gateway function, over the [`crate::gateway`].
//!
//! The protocol layer is the official Rust SDK, `rmcp`, rather than a
//! hand-written one: it tracks every revision the official clients speak
//! (2025-06-18 and 2025-11-25 through `initialize` with `Mcp-Session-Id`
//! sessions, and the stateless 2026-07-28 with `server/discover` and the
//! `Mcp-Method`/`Mcp-Name` routing headers, whose agreement with the body it
//! checks), negotiates versions, and answers malformed traffic with the
//! protocol's JSON-RPC errors. What is ours is in front of it and behind it:
//! authentication before a request reaches the SDK, and the decision,
//! forwarding and evidence of every call behind it.
//!
//! An agent authenticates exactly as to `/v1/authorize` (its bearer token
//! locally, IAM on AWS) and names its user in `X-On-Behalf-Of`. Neither
//! credential is ever forwarded upstream: upstream requests are new
//! requests, with the server's own configured credential. A refused
//! credential is a 401 with `WWW-Authenticate` naming the protected-resource
//! metadata (RFC 9728) served at `/.well-known/oauth-protected-resource/mcp`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
    CompleteResult, GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation,
    InitializeResult, InputRequiredResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ResultType, ServerCapabilities, ServerNotification, ServerRequest, Tool,
};
use rmcp::service::{Peer, RequestContext, ServiceError};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::Value;

use super::{bearer, on_behalf_of, trace_id, AgentAuthenticator, ApiError};
use crate::auth::UserVerifier;
use crate::gateway::outcome::is_input_required;
use crate::gateway::{Caller, Gateway, GatewayError, Via};
use crate::model::Forwarded;
use crate::ports::{ClientRelay, ClientSession, ProgressSink, UpstreamError, Upstreams};

/// The header an agent names its run in (run limits count per run).
pub const RUN_ID: &str = "x-run-id";

/// How the endpoint is served.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// Keep `Mcp-Session-Id` sessions for clients of the revisions that have
    /// them. Only a host whose requests all reach one process can: `govctl
    /// serve`, not a Lambda function.
    pub sessions: bool,
    /// Answer with `application/json` instead of an event stream where the
    /// revision allows it (a host that cannot stream).
    pub json_response: bool,
    /// The authorization servers an MCP client may get agent tokens from,
    /// published in the protected-resource metadata.
    pub authorization_servers: Vec<String>,
    /// The `Host` names (or `host:port`) requests may carry; empty: any.
    /// A control plane on a workstation keeps DNS rebinding out by
    /// accepting only its loopback names; behind API Gateway the host is
    /// the API's own.
    pub allowed_hosts: Vec<String>,
}

/// Agents that authenticate with OAuth access tokens of a configured
/// issuer: MCP clients that speak MCP authorization, at `/oauth/mcp` (the
/// AWS gateway, where `/mcp` takes SigV4-signed requests).
#[derive(Clone)]
pub struct OAuthAgents {
    /// Verifies access tokens. The "user" it returns is the client: its id
    /// is the token's client claim (`client_id` by default).
    pub verifier: Arc<dyn UserVerifier>,
    /// The served registry, which maps clients to agents (`oauth_clients`).
    pub engine: Arc<crate::service::EngineHandle>,
}

impl OAuthAgents {
    /// The agent an access token's client is, or why there is none. A
    /// verified client that no agent lists is decided (and recorded) as an
    /// unknown agent, named so that no registered id can be it.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let client = self
            .verifier
            .verify_user(bearer(headers)?)
            .await
            .map_err(ApiError::InvalidCredentials)?
            .id;
        Ok(self
            .engine
            .current()
            .agent_for_oauth_client(&client)
            .map_or_else(|| format!("<unregistered client> {client}"), str::to_owned))
    }
}

/// Where OAuth clients reach the gateway.
pub const OAUTH_PATH: &str = "/oauth/mcp";

/// What the endpoint needs.
#[derive(Clone)]
pub struct McpState {
    /// Decides, forwards and records.
    pub gateway: Arc<Gateway>,
    /// Identifies the calling agent.
    pub agents: Arc<dyn AgentAuthenticator>,
    /// Verifies on-behalf-of tokens.
    pub users: Arc<dyn UserVerifier>,
    /// How it is served.
    pub options: McpOptions,
    /// Agents with OAuth access tokens, at [`OAUTH_PATH`], when configured.
    pub oauth: Option<OAuthAgents>,
}

/// The routes `/mcp` and its protected-resource metadata.
pub fn router(state: McpState) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(state.options.sessions)
        .with_json_response(state.options.json_response)
        .with_allowed_hosts(state.options.allowed_hosts.clone());
    let gateway = Arc::clone(&state.gateway);
    let sessions = state.options.sessions;
    // Called once per client session (or per request, without sessions):
    // each handler keeps its session's own upstream connections.
    let service = StreamableHttpService::new(
        move || {
            Ok(GatewayHandler {
                gateway: Arc::clone(&gateway),
                sessions,
                upstreams: Arc::default(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mut mcp = Router::new().nest_service("/mcp", service.clone());
    let mut metadata = Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(|s, h| resource_metadata(s, h, "/mcp")),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(|s, h| resource_metadata(s, h, "/mcp")),
        );
    if state.oauth.is_some() {
        mcp = mcp.nest_service(OAUTH_PATH, service);
        metadata = metadata.route(
            "/.well-known/oauth-protected-resource/oauth/mcp",
            get(|s, h| resource_metadata(s, h, OAUTH_PATH)),
        );
    }
    let mcp = mcp.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        authenticate,
    ));
    metadata.with_state(state).merge(mcp)
}

/// The base URL clients reached this host by.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// RFC 9728 protected-resource metadata of the endpoint at `path`.
async fn resource_metadata(
    State(state): State<McpState>,
    headers: HeaderMap,
    path: &'static str,
) -> Response {
    let base = base_url(&headers);
    Json(serde_json::json!({
        "resource": format!("{base}{path}"),
        "authorization_servers": state.options.authorization_servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "agent-governance MCP gateway",
    }))
    .into_response()
}

/// Establishes the caller before the SDK sees the request; refuses with 401
/// and the metadata's address otherwise.
async fn authenticate(State(state): State<McpState>, mut request: Request, next: Next) -> Response {
    // CORS preflights and the SDK's own method checks need no identity.
    if request.method() == axum::http::Method::OPTIONS {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    let headers = &headers;
    let oauth_path = request.uri().path().starts_with(OAUTH_PATH);
    let agent = if oauth_path {
        None
    } else {
        Some(state.agents.authenticate(headers, request.extensions()))
    };
    let caller = async {
        let agent_id = match (agent, &state.oauth) {
            (Some(agent), _) => agent?,
            (None, Some(oauth)) => oauth.authenticate(headers).await?,
            (None, None) => return Err(ApiError::NotFound),
        };
        let user = on_behalf_of(state.users.as_ref(), headers).await?;
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok::<_, ApiError>(Caller {
            agent_id,
            user,
            session_id: text("mcp-session-id"),
            run_id: text(RUN_ID),
            trace_id: trace_id(headers),
        })
    }
    .await;
    match caller {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => {
            let status = e.status_and_code().0;
            let mut response = e.into_response();
            if status == StatusCode::UNAUTHORIZED {
                let challenge = format!(
                    "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource{}\"",
                    base_url(headers),
                    if oauth_path { OAUTH_PATH } else { "/mcp" }
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            response
        }
    }
}

/// The SDK's server handler: every request of one client is answered here.
#[derive(Clone)]
struct GatewayHandler {
    gateway: Arc<Gateway>,
    /// Whether client sessions are kept (see [`McpOptions::sessions`]).
    sessions: bool,
    /// The session's own upstream connections, made on its first request
    /// (none for a client of 2026-07-28 or later, or where the host shares
    /// its connections).
    upstreams: Arc<tokio::sync::OnceCell<Option<Arc<dyn Upstreams>>>>,
}

/// The `_meta` entry in which a client of 2026-07-28 or later declares its
/// capabilities with each request; the upstream server must see the
/// client's, not the gateway's, to ask only for what the client can answer.
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// A client session as upstream servers reach it: their notifications and
/// requests not tied to a call go to the session's own stream.
struct SessionClient {
    peer: Peer<RoleServer>,
}

/// A JSON-RPC message of `method` with `params`, typed for the SDK.
fn message<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, String> {
    serde_json::from_value(serde_json::json!({ "method": method, "params": params }))
        .map_err(|e| format!("{method}: {e}"))
}

/// Sends `request` to the client and returns its result as JSON.
async fn ask_client(
    peer: &Peer<RoleServer>,
    method: &str,
    params: Value,
) -> Result<Value, UpstreamError> {
    let request: ServerRequest = message(method, params).map_err(UpstreamError::Unusable)?;
    match peer.send_request(request).await {
        Ok(result) => serde_json::to_value(result)
            .map_err(|e| UpstreamError::Unusable(format!("the client's answer to {method}: {e}"))),
        Err(ServiceError::McpError(e)) => Err(UpstreamError::Rpc {
            code: e.code.0,
            message: e.message.to_string(),
            data: e.data,
        }),
        Err(e) => Err(UpstreamError::Unavailable(format!(
            "the client did not answer {method}: {e}"
        ))),
    }
}

#[async_trait::async_trait]
impl ClientRelay for SessionClient {
    async fn notify(&self, method: &str, params: Value) {
        let sent = match message::<ServerNotification>(method, params) {
            Ok(n) => self
                .peer
                .send_notification(n)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::debug!(method, error = %e, "a server's notification could not be relayed");
        }
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, UpstreamError> {
        ask_client(&self.peer, method, params).await
    }
}

/// What a call's upstream sends for its client while it runs, handed to the
/// task that serves the call: requests sent from there ride the call's own
/// response stream.
enum CallEvent {
    Progress(ProgressNotificationParam),
    Request(
        String,
        Value,
        tokio::sync::oneshot::Sender<Result<Value, UpstreamError>>,
    ),
}

/// The client of one call in flight.
struct CallClient {
    events: tokio::sync::mpsc::UnboundedSender<CallEvent>,
}

#[async_trait::async_trait]
impl ClientRelay for CallClient {
    async fn notify(&self, _method: &str, _params: Value) {}

    async fn request(&self, method: &str, params: Value) -> Result<Value, UpstreamError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(CallEvent::Request(method.to_owned(), params, tx))
            .map_err(|_| UpstreamError::Unavailable("the call has ended".into()))?;
        rx.await
            .map_err(|_| UpstreamError::Unavailable("the call has ended".into()))?
    }
}

/// The caller the authentication layer established for this request.
fn caller(context: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| {
            McpError::internal_error("the request carries no authenticated caller", None)
        })
}

fn gateway_error(e: GatewayError) -> McpError {
    match e {
        GatewayError::InvalidParams(m) => McpError::invalid_params(m, None),
        GatewayError::NotOffered(m) => {
            McpError::new(rmcp::model::ErrorCode::METHOD_NOT_FOUND, m, None)
        }
        GatewayError::Unavailable(m) => McpError::internal_error(m, None),
        GatewayError::Upstream {
            code,
            message,
            data,
        } => McpError::new(rmcp::model::ErrorCode(code), message, data),
    }
}

impl GatewayHandler {
    /// How this request reaches upstream servers: the client's declared
    /// capabilities, and its session's own connections if it has a session
    /// of a revision before 2026-07-28.
    async fn via(&self, context: &RequestContext<RoleServer>) -> Via {
        let mut via = Via::default();
        if let Some(caps) = context.meta.get(CLIENT_CAPABILITIES) {
            via.context
                .meta
                .insert(CLIENT_CAPABILITIES.into(), caps.clone());
        }
        let info = context.peer.peer_info();
        let legacy = info
            .as_deref()
            .is_some_and(|i| i.protocol_version < ProtocolVersion::V_2026_07_28);
        if self.sessions && legacy {
            via.session = self
                .upstreams
                .get_or_init(|| async {
                    let initialize = serde_json::to_value(info.as_deref()).ok()?;
                    self.gateway.upstreams.session(ClientSession {
                        initialize,
                        relay: Arc::new(SessionClient {
                            peer: context.peer.clone(),
                        }),
                    })
                })
                .await
                .clone();
        }
        via
    }

    /// Forwards a request other than a tool call through the gateway, as JSON.
    async fn forward<P: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        context: &RequestContext<RoleServer>,
        feature: Forwarded,
        method: &str,
        params: &P,
    ) -> Result<R, McpError> {
        let caller = caller(context)?;
        let mut params = serde_json::to_value(params)
            .map_err(|e| McpError::invalid_params(e.to_string(), None))?;
        if params.is_null() {
            params = serde_json::json!({});
        }
        let via = self.via(context).await;
        let result = self
            .gateway
            .forward(&caller, feature, method, params, &via)
            .await
            .map_err(gateway_error)?;
        upstream_result(method, result)
    }
}

/// An upstream's answer to `method`, typed.
fn upstream_result<R: serde::de::DeserializeOwned>(
    method: &str,
    result: Value,
) -> Result<R, McpError> {
    serde_json::from_value(result).map_err(|e| {
        McpError::internal_error(
            format!("the upstream answer to {method} is not valid: {e}"),
            None,
        )
    })
}

/// An upstream's `InputRequiredResult` (SEP-2322), passed to the client as
/// it came: the client answers and repeats its request.
fn input_required(result: Value) -> Result<InputRequiredResult, McpError> {
    upstream_result("an input request", result)
}

impl ServerHandler for GatewayHandler {
    fn get_info(&self) -> InitializeResult {
        // Features besides tools are offered when some server forwards them.
        let engine = self.gateway.service.engine.current();
        let forwards = |f: Forwarded| engine.registry().servers.iter().any(|s| s.forwards(f));
        let mut capabilities = serde_json::Map::new();
        for key in ["tools", "logging"] {
            capabilities.insert(key.into(), serde_json::json!({}));
        }
        for (feature, key) in [
            (Forwarded::Resources, "resources"),
            (Forwarded::Prompts, "prompts"),
            (Forwarded::Completions, "completions"),
        ] {
            if forwards(feature) {
                capabilities.insert(key.into(), serde_json::json!({}));
            }
        }
        let capabilities: ServerCapabilities =
            serde_json::from_value(serde_json::Value::Object(capabilities)).unwrap_or_default();
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new(
                "agent-governance",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Tools are offered and executed under the organization's governance policy. \
                 A denied or waiting call answers with a result that says why; a call that \
                 waits for human approval is repeated unchanged once it is approved.",
            )
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let list: ListResourcesResult = self
            .forward(&context, Forwarded::Resources, "resources/list", &request)
            .await?;
        Ok(ListResourcesResult::with_all_items(list.resources)
            .with_cache_scope(CacheScope::Private))
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let list: ListResourceTemplatesResult = self
            .forward(
                &context,
                Forwarded::Resources,
                "resources/templates/list",
                &request,
            )
            .await?;
        Ok(
            ListResourceTemplatesResult::with_all_items(list.resource_templates)
                .with_cache_scope(CacheScope::Private),
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let result: Value = self
            .forward(&context, Forwarded::Resources, "resources/read", &request)
            .await?;
        if is_input_required(&result) {
            return input_required(result).map(ReadResourceResponse::InputRequired);
        }
        let mut result: ReadResourceResult = upstream_result("resources/read", result)?;
        result.result_type.get_or_insert(ResultType::COMPLETE);
        Ok(ReadResourceResponse::Complete(result))
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let list: ListPromptsResult = self
            .forward(&context, Forwarded::Prompts, "prompts/list", &request)
            .await?;
        Ok(ListPromptsResult::with_all_items(list.prompts).with_cache_scope(CacheScope::Private))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let result: Value = self
            .forward(&context, Forwarded::Prompts, "prompts/get", &request)
            .await?;
        if is_input_required(&result) {
            return input_required(result).map(GetPromptResponse::InputRequired);
        }
        let mut result: GetPromptResult = upstream_result("prompts/get", result)?;
        result.result_type.get_or_insert(ResultType::COMPLETE);
        Ok(GetPromptResponse::Complete(result))
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.forward(
            &context,
            Forwarded::Completions,
            "completion/complete",
            &request,
        )
        .await
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let _: serde_json::Value = self
            .forward(
                &context,
                Forwarded::Resources,
                "resources/subscribe",
                &request,
            )
            .await?;
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let _: serde_json::Value = self
            .forward(
                &context,
                Forwarded::Resources,
                "resources/unsubscribe",
                &request,
            )
            .await?;
        Ok(())
    }

    /// Accepted, so that clients that set a level work. A session's log
    /// messages come from its own upstream connections, at the level each
    /// server logs by default; the level is not passed on. Logging is
    /// deprecated from 2026-07-28 on (where a request opts in to log
    /// messages itself; the shared connections relay none, as they cannot
    /// tell which call a message belongs to), but the earlier revisions
    /// have it.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }

    /// Lets the SDK check a 2026-07-28 request's `Mcp-Param-*` headers
    /// against the tool's input schema, as the upstream last described it.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.gateway
            .cached_tool(name)
            .and_then(|t| serde_json::from_value(t).ok())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = caller(&context)?;
        let tools = self
            .gateway
            .list_tools(&caller)
            .await
            .into_iter()
            .filter_map(|t| match serde_json::from_value::<Tool>(t) {
                Ok(tool) => Some(tool),
                Err(e) => {
                    tracing::warn!(error = %e, "an upstream tool description is not a valid MCP tool; not listed");
                    None
                }
            })
            .collect();
        // The list depends on who asks: no shared cache may keep it.
        Ok(ListToolsResult::with_all_items(tools).with_cache_scope(CacheScope::Private))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&context)?;
        let mut via = self.via(&context).await;
        via.context.input_responses = request
            .input_responses
            .map(|r| serde_json::to_value(r).unwrap_or_default());
        via.context.request_state = request.request_state;
        // What the upstream sends for this client while the call runs comes
        // here, to be sent from this task: the SDK puts what a request's
        // handler sends on that request's own response stream.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<CallEvent>();
        // The client's progress token, if it asked for progress: the
        // upstream's notifications for this call are relayed under it, in
        // order, and all of them before the result.
        if let Some(token) = context.meta.get_progress_token() {
            let tx = tx.clone();
            let sink: ProgressSink = Arc::new(move |progress, total, message| {
                let mut params = ProgressNotificationParam::new(token.clone(), progress);
                params.total = total;
                params.message = message;
                let _ = tx.send(CallEvent::Progress(params));
            });
            via.context.progress = Some(sink);
        }
        // A session's own connections carry the server's requests (sampling,
        // elicitation, roots) to this client.
        if via.session.is_some() {
            via.context.client = Some(Arc::new(CallClient { events: tx }));
        } else {
            drop(tx);
        }
        let call = self
            .gateway
            .call_tool(&caller, &request.name, request.arguments, via);
        tokio::pin!(call);
        let relay = |event: CallEvent| {
            let peer = context.peer.clone();
            async move {
                match event {
                    CallEvent::Progress(params) => {
                        if let Err(e) = peer.notify_progress(params).await {
                            tracing::debug!(error = %e, "a progress notification could not be relayed");
                        }
                    }
                    CallEvent::Request(method, params, answer) => {
                        let _ = answer.send(ask_client(&peer, &method, params).await);
                    }
                }
            }
        };
        let result = loop {
            tokio::select! {
                result = &mut call => break result,
                Some(event) = rx.recv() => relay(event).await,
            }
        };
        // The sinks are gone with the call: what they sent is all there is.
        while let Ok(event) = rx.try_recv() {
            relay(event).await;
        }
        let result = result.map_err(gateway_error)?;
        if is_input_required(&result) {
            return input_required(result).map(CallToolResponse::InputRequired);
        }
        let mut result: CallToolResult = serde_json::from_value(result).map_err(|e| {
            McpError::internal_error(
                format!("the upstream result is not a valid tool result: {e}"),
                None,
            )
        })?;
        // Older upstreams leave it out; the SDK drops it again for clients
        // of the revisions without it.
        if result.result_type.is_none() {
            result.result_type = Some(ResultType::COMPLETE);
        }
        Ok(CallToolResponse::Complete(result))
    }
}
