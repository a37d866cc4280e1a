//! The MCP gateway's domain: governance on the call path.
//!
//! An MCP client points at the gateway instead of its servers and changes
//! nothing else. `tools/list` offers only what the agent could call for the
//! user ([`catalog`]); each `tools/call` is decided by the same
//! [`AuthorizeService`] as `POST /v1/authorize` (grants, roles, arguments,
//! limits, approvals), recorded before anything is forwarded, carried out
//! upstream only when allowed, filtered ([`filter`]) before the agent sees
//! the result, and its outcome recorded in the same audit chain
//! ([`outcome`]). The protocol itself (sessions, versions, JSON-RPC) is the
//! host's: see `crate::http::mcp`.

pub mod catalog;
pub mod exactly_once;
pub mod filter;
pub mod import;
pub mod outcome;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::clock::rfc3339;
use crate::model::{
    ApprovalStatus, AuthorizeRequest, Decision, DecisionRecord, Execution, ExecutionStatus,
    Forwarded, Reason, ReasonCode, ToolSpec, UserContext,
};
use crate::ports::{
    ApprovalItem, CallContext, CallKey, Claimed, ExecutionLedger, StoreError, UpstreamError,
    Upstreams,
};
use crate::service::{canonical_hash, AuthorizeService, Gate, ServiceError};

use catalog::{Offered, Unroutable};

/// Where a server's tool list is cached: the server and its endpoint.
fn catalog_key(offered: &Offered<'_>) -> String {
    format!("{}\u{0}{:?}", offered.server.id, offered.endpoint)
}

/// A server's tool list and when it was fetched.
type Listed = (Instant, Arc<Vec<Value>>);

/// How long an upstream's tool list is reused before it is asked again.
const CATALOG_TTL: Duration = Duration::from_secs(30);

/// Who is calling, as the host verified it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated agent.
    pub agent_id: String,
    /// The verified user it acts for.
    pub user: UserContext,
    /// The MCP session, when the protocol revision has one.
    pub session_id: Option<String>,
    /// The run the call belongs to (`X-Run-Id`), for run limits.
    pub run_id: Option<String>,
    /// The trace.
    pub trace_id: String,
}

/// How a request reaches upstream servers: what it carries besides its
/// parameters, and the connections of the client's session where it has
/// its own (see [`Upstreams::session`]).
#[derive(Clone, Default)]
pub struct Via {
    /// The request's context for the server.
    pub context: CallContext,
    /// The session's own connections; otherwise the shared ones.
    pub session: Option<Arc<dyn Upstreams>>,
}

/// The registry's view of a called tool: its entry, where it runs, and why
/// the gateway cannot carry it out, if it cannot.
struct Target<'a> {
    tool: Option<&'a ToolSpec>,
    route: Option<Result<Offered<'a>, Unroutable>>,
    unavailable: Option<Reason>,
}

/// Why a request gets a protocol error instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed: JSON-RPC invalid params.
    #[error("{0}")]
    InvalidParams(String),
    /// The method is not offered for this server or agent.
    #[error("{0}")]
    NotOffered(String),
    /// A store could not be read: nothing was decided or forwarded.
    #[error("the gateway cannot decide now: {0}")]
    Unavailable(String),
    /// The upstream server answered the forwarded call with a JSON-RPC
    /// error, which goes back to the client as it came.
    #[error("{message}")]
    Upstream {
        /// The server's error code.
        code: i32,
        /// Its message.
        message: String,
        /// Its data.
        data: Option<Value>,
    },
}

/// The gateway: the authorization service, and the connections to the
/// upstream servers.
pub struct Gateway {
    /// Decides and records.
    pub service: Arc<AuthorizeService>,
    /// Connects to upstream servers.
    pub upstreams: Arc<dyn Upstreams>,
    /// Decides which duplicate carries out an exactly-once call.
    pub ledger: Arc<dyn ExecutionLedger>,
    /// Each server's tool list, as last fetched, by server id.
    catalog: Mutex<HashMap<String, Listed>>,
    /// Whether a forwarded call's execution record may be written after
    /// its result is answered (see [`Gateway::deferring_outcomes`]).
    defer_outcomes: bool,
    /// How long a call that waits for approval is held open (see
    /// [`Gateway::holding_approvals`]).
    hold_approvals: Option<Duration>,
}

/// How often a held call looks at its approval.
const HOLD_POLL: Duration = Duration::from_millis(500);

/// How often a held call tells its client it is still waiting.
const HOLD_PROGRESS: Duration = Duration::from_secs(5);

impl Gateway {
    /// A gateway deciding with `service`, forwarding through `upstreams`,
    /// and keeping exactly-once keys in `ledger`.
    pub fn new(
        service: Arc<AuthorizeService>,
        upstreams: Arc<dyn Upstreams>,
        ledger: Arc<dyn ExecutionLedger>,
    ) -> Self {
        Self {
            service,
            upstreams,
            ledger,
            catalog: Mutex::new(HashMap::new()),
            defer_outcomes: false,
            hold_approvals: None,
        }
    }

    /// The same, holding a call that waits for human approval open for up
    /// to `bound` (never past the approval's expiry) when its client asked
    /// for progress notifications: they tell it every few seconds that the
    /// call still waits, and once the approval is granted the call is
    /// carried out with its grant and answered with its result, as if the
    /// client had repeated it. Otherwise (a client without progress, a
    /// rejection, the bound) the answer is the one it would have had
    /// without holding. For a host that keeps requests open: `govctl
    /// serve`, where it is off unless configured.
    #[must_use]
    pub fn holding_approvals(mut self, bound: Duration) -> Self {
        self.hold_approvals = (!bound.is_zero()).then_some(bound);
        self
    }

    /// The same, writing each execution record beside the answer rather
    /// than before it, for a host whose process outlives the request
    /// (`govctl serve`; never a Lambda function, which is frozen once it
    /// answers). The decision is durable before anything is forwarded
    /// either way; what a crash in the instant after an answer can lose is
    /// that call's outcome record, which `audit explain` then shows as
    /// missing. It saves one durable write's wait on every forwarded call.
    #[must_use]
    pub fn deferring_outcomes(mut self) -> Self {
        self.defer_outcomes = true;
        self
    }

    /// The MCP `Tool`s offered to `caller`: see [`catalog`]. A server that
    /// cannot be reached contributes nothing (and is logged); the others
    /// still list.
    pub async fn list_tools(&self, caller: &Caller) -> Vec<Value> {
        let engine = self.service.engine.current();
        let Some(agent) = engine.agent(&caller.agent_id) else {
            return Vec::new();
        };
        if self
            .service
            .engine
            .killswitch()
            .find(&agent.id, Some(&agent.version))
            .is_some()
        {
            return Vec::new();
        }
        let offered = catalog::offered(
            engine.registry(),
            agent,
            &caller.user,
            self.service.environment,
        );
        let mut out = Vec::with_capacity(offered.len());
        for o in &offered {
            let Ok(tools) = self.server_tools(o).await else {
                continue;
            };
            let name = o.tool.upstream_name();
            match tools
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            {
                Some(upstream) => out.push(catalog::describe(o, upstream)),
                None => tracing::warn!(
                    server = %o.server.id, tool = %o.tool.id, upstream_tool = name,
                    "the registry names a tool its server does not offer; it is not listed"
                ),
            }
        }
        out
    }

    /// The description of tool `name` as the last listing of its server
    /// gave it, renamed to the registry's id; `None` when the registry has
    /// no such tool or its server was not listed yet. For checks that must
    /// not wait (the `Mcp-Param-*` headers of 2026-07-28 against the
    /// tool's input schema).
    pub fn cached_tool(&self, name: &str) -> Option<Value> {
        let engine = self.service.engine.current();
        let tool = engine.tool(name)?;
        let route = catalog::route(engine.registry(), tool, self.service.environment).ok()?;
        let key = catalog_key(&route);
        let cache = self.catalog.lock().ok()?;
        let (_, tools) = cache.get(&key)?;
        let upstream_name = tool.upstream_name();
        tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(upstream_name))
            .map(|upstream| catalog::describe(&route, upstream))
    }

    /// The tools `offered`'s server lists, cached for a short while.
    async fn server_tools(&self, offered: &Offered<'_>) -> Result<Arc<Vec<Value>>, UpstreamError> {
        let key = catalog_key(offered);
        if let Ok(cache) = self.catalog.lock() {
            if let Some((at, tools)) = cache.get(&key) {
                if at.elapsed() < CATALOG_TTL {
                    return Ok(Arc::clone(tools));
                }
            }
        }
        let listed = async {
            let upstream = self
                .upstreams
                .connect(offered.server, offered.endpoint)
                .await?;
            tokio::time::timeout(offered.server.timeout(), upstream.list_tools())
                .await
                .map_err(|_| UpstreamError::Timeout(offered.server.timeout().as_secs()))?
        }
        .await;
        match listed {
            Ok(tools) => {
                let tools = Arc::new(tools);
                if let Ok(mut cache) = self.catalog.lock() {
                    cache.insert(key, (Instant::now(), Arc::clone(&tools)));
                }
                Ok(tools)
            }
            Err(e) => {
                tracing::warn!(server = %offered.server.id, error = %e, "cannot list the upstream server's tools");
                Err(e)
            }
        }
    }

    /// Decides, records and, if allowed, carries out one `tools/call`; the
    /// MCP `CallToolResult` the agent gets (or the server's
    /// `InputRequiredResult`).
    pub async fn call_tool(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Option<Map<String, Value>>,
        via: Via,
    ) -> Result<Value, GatewayError> {
        let first = self
            .call_tool_once(caller, name, arguments.clone(), via.clone())
            .await?;
        let (Some(bound), Some(progress), Some(approval_id)) = (
            self.hold_approvals,
            via.context.progress.clone(),
            outcome::waiting_approval_id(&first),
        ) else {
            return Ok(first);
        };
        let held = Instant::now();
        let mut told = held;
        loop {
            tokio::time::sleep(HOLD_POLL).await;
            let item = self
                .service
                .grants
                .get(&approval_id)
                .await
                .map_err(unavailable)?;
            let Some(item) = item else {
                return Ok(first);
            };
            match item.status {
                // Carried out with the grant, exactly as a repetition is.
                ApprovalStatus::Granted => {
                    return self.call_tool_once(caller, name, arguments, via).await
                }
                _ if self.still_waiting(&item) && held.elapsed() < bound => {
                    if told.elapsed() >= HOLD_PROGRESS {
                        told = Instant::now();
                        let group = item
                            .request
                            .approver_group
                            .as_deref()
                            .unwrap_or("the tool's approvers");
                        #[allow(clippy::cast_precision_loss)] // seconds
                        progress(
                            held.elapsed().as_secs() as f64,
                            Some(bound.as_secs() as f64),
                            Some(format!(
                                "waiting for approval {approval_id} by a member of `{group}` \
                                 (until {})",
                                item.request.expires_at
                            )),
                        );
                    }
                }
                ApprovalStatus::Pending | ApprovalStatus::Approved => return Ok(first),
                _ => return Ok(outcome::not_approved(&first, &item)),
            }
        }
    }

    /// One decision and, if allowed, its execution.
    async fn call_tool_once(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Option<Map<String, Value>>,
        via: Via,
    ) -> Result<Value, GatewayError> {
        let arguments = Value::Object(arguments.unwrap_or_default());
        let engine = self.service.engine.current();
        let environment = self.service.environment;
        let tool = engine.tool(name);
        let route = tool.map(|t| catalog::route(engine.registry(), t, environment));
        // A call the gateway could not carry out is still decided: the
        // policy's deny, if any, is the answer; otherwise this.
        let unavailable_reason = match &route {
            Some(Err(Unroutable::NoEndpoint)) => Some(Reason {
                code: ReasonCode::EnvironmentMismatch,
                message: format!(
                    "tool `{name}` runs on server `{}`, which has no endpoint in the `{environment}` \
                     environment this control plane runs in",
                    tool.and_then(|t| t.server.as_deref()).unwrap_or_default()
                ),
                policy_id: None,
            }),
            Some(Err(Unroutable::NoServer)) => Some(Reason {
                code: ReasonCode::ToolUnavailable,
                message: format!(
                    "tool `{name}` names no upstream server: it cannot be called through the gateway"
                ),
                policy_id: None,
            }),
            _ => None,
        };

        // An exactly-once tool: one attempt claims the key; the others are
        // duplicates, decided but never carried out.
        let mut claim = None;
        if let Some((t, spec)) = tool
            .and_then(|t| t.idempotency.as_ref().map(|s| (t, s)))
            .filter(|_| unavailable_reason.is_none())
        {
            let key = exactly_once::key(t, spec, &arguments);
            let attempt = uuid::Uuid::new_v4().simple().to_string();
            let now = self.service.clock.now().unix_timestamp();
            let lease = i64::try_from(
                route
                    .as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .map_or(0, |r| r.server.timeout().as_secs()),
            )
            .unwrap_or(i64::MAX / 4)
                + exactly_once::LEASE_MARGIN_SECONDS;
            match self
                .ledger
                .claim(&key, &attempt, now, now.saturating_add(lease))
                .await
                .map_err(unavailable)?
            {
                Claimed::Yours => claim = Some((key, attempt, spec.window_seconds)),
                Claimed::Held(held) => {
                    let reason = exactly_once::duplicate_reason(t, spec, &held);
                    let record = match self
                        .decide(
                            caller,
                            name,
                            &arguments,
                            None,
                            Some(Gate::Duplicate(reason)),
                        )
                        .await?
                    {
                        Ok(record) => record,
                        Err(refused) => return Ok(refused),
                    };
                    return Ok(match record.decision {
                        Decision::Allow => {
                            exactly_once::duplicate_answer(&held, &record.decision_id)
                        }
                        _ => outcome::refused(&record),
                    });
                }
            }
        }
        let answer = self
            .decide_and_execute(
                caller,
                name,
                arguments,
                Target {
                    tool,
                    route,
                    unavailable: unavailable_reason,
                },
                claim.as_ref(),
                via,
            )
            .await;
        if let Some((key, attempt, _)) = &claim {
            // Anything but a carried-out call gives the key up: a call
            // whose server asked for the client's input first has not run,
            // and its repetition with the answers claims the key again.
            let carried_out =
                matches!(&answer, Ok((result, true)) if !outcome::is_input_required(result));
            if !carried_out {
                if let Err(e) = self.ledger.release(key, attempt).await {
                    tracing::warn!(key = %key, error = %e, "cannot release an exactly-once key; it lapses with its lease");
                }
            }
        }
        answer.map(|(result, _)| result)
    }

    /// Decides the call (using the grant of an approval of exactly this
    /// call, if one is open) and, if allowed, carries it out: the result,
    /// and whether the call reached its server.
    async fn decide_and_execute(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Value,
        target: Target<'_>,
        claim: Option<&(String, String, u64)>,
        via: Via,
    ) -> Result<(Value, bool), GatewayError> {
        let Target {
            tool,
            route,
            unavailable: refusal,
        } = target;
        let gate = refusal.map(Gate::Unavailable);
        // A client repeats a call once it is approved: the open approval of
        // exactly this call is found, and its grant used.
        let mut approval_id = None;
        if let Some(t) = tool.filter(|t| t.requires_approval() && gate.is_none()) {
            let call = CallKey::new(
                &caller.agent_id,
                &caller.user.id,
                &t.id,
                &crate::service::arguments_hash(Some(t), &arguments),
            );
            let open = self
                .service
                .grants
                .open_for_call(&call)
                .await
                .map_err(unavailable)?;
            match open {
                Some(item) if item.status == ApprovalStatus::Granted => {
                    approval_id = Some(item.request.approval_id.clone());
                }
                Some(item) if self.still_waiting(&item) => {
                    return Ok((outcome::waiting(&item.request.decision, Some(&item)), false));
                }
                _ => {}
            }
        }
        let record = match self
            .decide(caller, name, &arguments, approval_id, gate)
            .await?
        {
            Ok(record) => record,
            Err(refused) => return Ok((refused, false)),
        };
        match (record.decision, route, tool) {
            (Decision::Allow, Some(Ok(route)), Some(tool)) => {
                let (result, reached) = self.execute(&route, tool, &record, arguments, via).await;
                let result = result?;
                let ran = reached && !outcome::is_input_required(&result);
                if let (Some((key, attempt, window)), true) = (claim, ran) {
                    let until = self
                        .service
                        .clock
                        .now()
                        .unix_timestamp()
                        .saturating_add(i64::try_from(*window).unwrap_or(i64::MAX / 4));
                    if let Err(e) = self
                        .ledger
                        .complete(key, attempt, &record.decision_id, &result, until)
                        .await
                    {
                        // The call ran; its duplicates are told it is running
                        // until the lease ends, and never run it again before.
                        tracing::error!(key = %key, error = %e, "cannot keep an exactly-once result");
                    }
                }
                Ok((result, reached))
            }
            (Decision::PendingApproval, _, _) => {
                let item = match &record.approval_id {
                    Some(id) => self.service.grants.get(id).await.ok().flatten(),
                    None => None,
                };
                Ok((outcome::waiting(&record, item.as_ref()), false))
            }
            _ => Ok((outcome::refused(&record), false)),
        }
    }

    /// Decides one call with the authorization service: the record, or the
    /// refusal to answer with when the decision could not be recorded.
    async fn decide(
        &self,
        caller: &Caller,
        name: &str,
        arguments: &Value,
        approval_id: Option<String>,
        gate: Option<Gate>,
    ) -> Result<Result<DecisionRecord, Value>, GatewayError> {
        let request = AuthorizeRequest {
            tool_id: name.to_owned(),
            requested_risk: None,
            arguments: arguments.clone(),
            session_id: caller.session_id.clone(),
            run_id: caller.run_id.clone(),
            idempotency_key: None,
            reasoning: None,
            approval_id,
        };
        match self
            .service
            .authorize_gated(
                &caller.agent_id,
                &caller.user,
                request,
                caller.trace_id.clone(),
                gate,
            )
            .await
        {
            Ok(record) => Ok(Ok(record)),
            Err(ServiceError::InvalidRequest(m)) => Err(GatewayError::InvalidParams(m)),
            Err(ServiceError::NotRecorded { record, .. })
            | Err(ServiceError::IdempotencyKeyReused { record, .. }) => {
                Ok(Err(outcome::refused(&record)))
            }
        }
    }

    /// Forwards a request other than a tool call (`resources/*`,
    /// `prompts/*`, `completion/complete`) to the servers that allow
    /// `feature` among those hosting a tool offered to `caller`, and records
    /// it. A list is gathered from all of them; a request for one item goes
    /// to the first that answers it. Nothing is forwarded, and the refusal
    /// is recorded, where no server allows it.
    pub async fn forward(
        &self,
        caller: &Caller,
        feature: Forwarded,
        method: &str,
        params: Value,
        via: &Via,
    ) -> Result<Value, GatewayError> {
        let engine = self.service.engine.current();
        let agent = engine.agent(&caller.agent_id);
        let disabled = agent.is_some_and(|a| {
            self.service
                .engine
                .killswitch()
                .find(&a.id, Some(&a.version))
                .is_some()
        });
        let mut servers: Vec<Offered<'_>> = Vec::new();
        if let (Some(agent), false) = (agent, disabled) {
            for o in catalog::offered(
                engine.registry(),
                agent,
                &caller.user,
                self.service.environment,
            ) {
                if o.server.forwards(feature) && !servers.iter().any(|s| s.server.id == o.server.id)
                {
                    servers.push(o);
                }
            }
        }
        let names: Vec<String> = servers.iter().map(|o| o.server.id.clone()).collect();
        let version = engine.version();
        let record = outcome::forward_record(
            &caller.agent_id,
            agent.map(|a| a.version.clone()),
            &caller.user,
            &caller.trace_id,
            method,
            &params,
            &names,
            self.service.environment.as_str(),
            (&version.id, &version.content_hash),
            &rfc3339(self.service.clock.now()),
        );
        // Recorded before anything is forwarded, as every decision is.
        self.service
            .log
            .append(&record)
            .await
            .map_err(unavailable)?;
        self.service.metrics.record_decision(&record);
        if servers.is_empty() {
            return Err(GatewayError::NotOffered(
                record
                    .reasons
                    .first()
                    .map(|r| r.message.clone())
                    .unwrap_or_default(),
            ));
        }
        let list_key = match method {
            "resources/list" => Some("resources"),
            "resources/templates/list" => Some("resourceTemplates"),
            "prompts/list" => Some("prompts"),
            _ => None,
        };
        let mut gathered: Vec<Value> = Vec::new();
        let mut last_error = None;
        for o in &servers {
            let answer = async {
                let upstream = self.connect(via, o).await?;
                tokio::time::timeout(
                    o.server.timeout(),
                    upstream.request(method, params.clone(), via.context.meta.clone()),
                )
                .await
                .map_err(|_| UpstreamError::Timeout(o.server.timeout().as_secs()))?
            }
            .await;
            match (answer, list_key) {
                (Ok(mut result), Some(key)) => {
                    if let Some(Value::Array(items)) = result.get_mut(key).map(Value::take) {
                        gathered.extend(items);
                    }
                }
                (Ok(result), None) => return Ok(result),
                (Err(e), _) => {
                    tracing::warn!(server = %o.server.id, method, error = %e, "a forwarded request failed");
                    last_error = Some(e);
                }
            }
        }
        match (list_key, last_error) {
            (Some(key), _) => Ok(serde_json::json!({ key: gathered })),
            (
                None,
                Some(UpstreamError::Rpc {
                    code,
                    message,
                    data,
                }),
            ) => Err(GatewayError::Upstream {
                code,
                message,
                data,
            }),
            (None, e) => Err(GatewayError::Unavailable(
                e.map_or_else(|| "no server answered".to_owned(), |e| e.to_string()),
            )),
        }
    }

    /// The connection to `offered`'s server: the client session's own, if
    /// it has them, otherwise the shared one.
    async fn connect(
        &self,
        via: &Via,
        offered: &Offered<'_>,
    ) -> Result<Arc<dyn crate::ports::Upstream>, UpstreamError> {
        via.session
            .as_deref()
            .unwrap_or(self.upstreams.as_ref())
            .connect(offered.server, offered.endpoint)
            .await
    }

    /// Whether an open approval still waits for a human (not expired).
    fn still_waiting(&self, item: &ApprovalItem) -> bool {
        matches!(
            item.status,
            ApprovalStatus::Pending | ApprovalStatus::Approved
        ) && item.request.expires_at.as_str() > rfc3339(self.service.clock.now()).as_str()
    }

    /// Forwards the allowed call, filters its result, and records the execution.
    async fn execute(
        &self,
        route: &Offered<'_>,
        tool: &ToolSpec,
        decision: &DecisionRecord,
        arguments: Value,
        via: Via,
    ) -> (Result<Value, GatewayError>, bool) {
        let upstream_tool = tool.upstream_name().to_owned();
        let arguments = match arguments {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let started = Instant::now();
        let answer = async {
            let upstream = self.connect(&via, route).await?;
            tokio::time::timeout(
                route.server.timeout(),
                upstream.call_tool(&upstream_tool, arguments, via.context),
            )
            .await
            .map_err(|_| UpstreamError::Timeout(route.server.timeout().as_secs()))?
        }
        .await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // A server that could not be reached never saw the call; one that
        // answered with a JSON-RPC error refused it.
        let reached = !matches!(
            answer,
            Err(UpstreamError::Unavailable(_)
                | UpstreamError::Unusable(_)
                | UpstreamError::Rpc { .. })
        );
        let (execution, reply) = match answer {
            Ok(mut result) => {
                let result_hash = canonical_hash(&result);
                // The server's questions for the client (SEP-2322) are no
                // tool output: they go to the client as they came.
                let input_required = outcome::is_input_required(&result);
                let removed_paths = if input_required {
                    Vec::new()
                } else {
                    filter::strip(&mut result, &tool.response_filter)
                };
                outcome::annotate(&mut result, decision, &removed_paths);
                let status = if input_required {
                    ExecutionStatus::InputRequired
                } else if result.get("isError").and_then(Value::as_bool) == Some(true) {
                    ExecutionStatus::ToolError
                } else {
                    ExecutionStatus::Succeeded
                };
                (
                    Execution {
                        decision_id: decision.decision_id.clone(),
                        server: route.server.id.clone(),
                        upstream_tool,
                        status,
                        duration_ms,
                        result_hash: Some(result_hash),
                        removed_paths,
                        error: None,
                    },
                    Ok(result),
                )
            }
            Err(e) => (
                Execution {
                    decision_id: decision.decision_id.clone(),
                    server: route.server.id.clone(),
                    upstream_tool,
                    status: ExecutionStatus::UpstreamError,
                    duration_ms,
                    result_hash: None,
                    removed_paths: Vec::new(),
                    error: Some(e.to_string()),
                },
                match &e {
                    UpstreamError::Rpc {
                        code,
                        message,
                        data,
                    } => Err(GatewayError::Upstream {
                        code: *code,
                        message: message.clone(),
                        data: data.clone(),
                    }),
                    _ => Ok(outcome::upstream_failed(decision, &e.to_string())),
                },
            ),
        };
        let record =
            outcome::execution_record(decision, execution, &rfc3339(self.service.clock.now()));
        let (log, metrics) = (
            Arc::clone(&self.service.log),
            Arc::clone(&self.service.metrics),
        );
        if self.defer_outcomes {
            tokio::spawn(record_execution(log, metrics, record));
        } else {
            record_execution(log, metrics, record).await;
        }
        (reply, reached)
    }
}

/// Appends an execution record. The effect has happened, so the result goes
/// to the agent whatever happens here; a record that cannot be written is
/// retried, then logged as an error with everything it held.
async fn record_execution(
    log: Arc<dyn crate::ports::DecisionLog>,
    metrics: Arc<dyn crate::ports::Metrics>,
    record: DecisionRecord,
) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=3 {
        match log.append(&record).await {
            Ok(_) => {
                metrics.record_decision(&record);
                log_execution(&record);
                return;
            }
            Err(e) if attempt < 3 => {
                tracing::warn!(decision_id = %record.decision_id, error = %e, "cannot record an execution; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                tracing::error!(
                    target: "decision",
                    execution = %serde_json::to_string(&record).unwrap_or_default(),
                    error = %e,
                    "an execution could not be recorded"
                );
            }
        }
    }
}

fn log_execution(record: &DecisionRecord) {
    if let Some(e) = &record.execution {
        tracing::info!(
            target: "decision",
            kind = "execution",
            agent_id = %record.agent_id,
            tool_id = %record.tool_id,
            server = %e.server,
            status = e.status.as_str(),
            duration_ms = e.duration_ms,
            decision_id = %e.decision_id,
            trace_id = %record.trace_id,
            "execution"
        );
    }
}

fn unavailable(e: StoreError) -> GatewayError {
    GatewayError::Unavailable(e.to_string())
}
