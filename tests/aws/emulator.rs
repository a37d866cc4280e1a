//! moto's server behind the router, started once per test binary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use governance::auth::LocalKeys;
use governance::handlers::approval_callback::ApprovalCallbackHandler;
use governance::handlers::decision_log::DecisionLogHandler;
use governance::handlers::denial_metrics::DenialMetricsHandler;
use governance::handlers::HandlerError;
use serde_json::{json, Value};

/// The region and account every ARN uses.
pub const REGION: &str = "us-east-1";
/// The emulator's account.
pub const ACCOUNT: &str = "123456789012";
/// The OIDC issuer whose JWKS the router serves.
pub const ISSUER: &str = "https://idp.agent-governance.test";
/// The audience of user tokens.
pub const AUDIENCE: &str = "agent-governance";
/// The audience of approver tokens.
pub const APPROVER_AUDIENCE: &str = "agent-governance-approvers";

/// The functions of one stack.
#[derive(Clone)]
pub struct Functions {
    /// The authorize function's router.
    pub authorize: Router,
    /// The gateway function's router (`/mcp`).
    pub gateway: Router,
    /// decision-log.
    pub decision_log: Arc<DecisionLogHandler>,
    /// denial-metrics.
    pub denial_metrics: Arc<DenialMetricsHandler>,
    /// approval-callback.
    pub approval_callback: ApprovalCallbackHandler,
}

/// One DynamoDB request as the router saw it.
#[derive(Debug, Clone)]
pub struct DynamoCall {
    /// The operation (`PutItem`, …).
    pub operation: String,
    /// The tables it touched.
    pub tables: Vec<String>,
}

#[derive(Default)]
struct Shared {
    functions: Mutex<HashMap<String, Functions>>,
    /// Function name → how many of its next invocations fail, and how.
    faults: Mutex<HashMap<String, (usize, governance::handlers::ErrorType)>>,
    dynamodb: Mutex<Vec<DynamoCall>>,
    /// DynamoDB requests refused as a failing service would: those that
    /// touch a table with the prefix and whose body holds the text.
    dynamodb_faults: Mutex<Vec<(String, String)>>,
    /// Held while one DynamoDB request is with moto. moto's
    /// TransactWriteItems is not atomic across threads (it snapshots whole
    /// tables and restores the snapshot on a cancellation, over whatever
    /// another request wrote meanwhile); real DynamoDB isolates
    /// transactions. One request at a time gives moto that isolation; the
    /// conditions that make limits exact are still the product's own.
    dynamodb_gate: tokio::sync::Mutex<()>,
    sns: Mutex<HashMap<String, Vec<Value>>>,
}

/// The running emulator.
pub struct Emulator {
    /// The router's URL: every client's endpoint.
    pub url: String,
    /// The key that signs user tokens; its JWKS is served by the router.
    pub keys: LocalKeys,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    _moto: ChildGuard,
    _keys_dir: tempfile::TempDir,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub use crate::common::workspace_root;

fn moto_server() -> PathBuf {
    let bin = workspace_root().join(".venv/bin/moto_server");
    assert!(
        bin.is_file(),
        "`{}` is missing: run ./scripts/test.sh, which creates .venv with moto[server]",
        bin.display()
    );
    bin
}

/// The emulator, started on first use and shared by every test.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(start)
}

fn start() -> Emulator {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let router_port = crate::common::free_port();
    let moto_port = crate::common::free_port();
    let log = std::env::temp_dir().join(format!("agent-governance-moto-{moto_port}.log"));
    let moto = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
        // moto's Step Functions interpreter invokes Lambda functions at
        // localhost:$MOTO_PORT: that is the router.
        .env("MOTO_PORT", router_port.to_string())
        .env("AWS_DEFAULT_REGION", REGION)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file for moto"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto_server: {e}"));
    let moto = ChildGuard(moto);
    let keys_dir = tempfile::tempdir().expect("a temp dir");
    let keys = LocalKeys::load_or_create(keys_dir.path()).expect("a signing key");
    let shared = Arc::new(Shared::default());
    let state = RouterState {
        shared: Arc::clone(&shared),
        moto: format!("http://127.0.0.1:{moto_port}"),
        http: reqwest::Client::new(),
        jwks: serde_json::to_value(keys.jwks()).expect("a JWKS"),
    };
    let app = Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/sns/{stack}", post(sns_sink))
        .fallback(forward)
        .with_state(state);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", router_port)))
        .expect("the router's port");
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://127.0.0.1:{router_port}");
    // moto answers once its server is up; then turn on execution of state machines.
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = http
            .post(format!("{url}/moto-api/config"))
            .json(&json!({"stepfunctions": {"execute_state_machine": true}}))
            .send()
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not start within 30 s; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "[emulator] moto on {moto_port} behind the router on {router_port}; log {}",
        log.display()
    );
    Emulator {
        url,
        keys,
        shared,
        runtime,
        _moto: moto,
        _keys_dir: keys_dir,
    }
}

impl Emulator {
    /// Runs a future on the emulator's runtime, where every client lives.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The JWKS URL of the test issuer.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// Routes invocations of `stack`'s functions to `functions`.
    pub fn register(&self, stack: &str, functions: Functions) {
        self.shared
            .functions
            .lock()
            .expect("lock")
            .insert(stack.to_owned(), functions);
    }

    /// Makes the next `times` invocations of `stack`'s `function` fail with
    /// `error`, as a failing handler would.
    pub fn fail_next(
        &self,
        stack: &str,
        function: &str,
        times: usize,
        error: governance::handlers::ErrorType,
    ) {
        self.shared
            .faults
            .lock()
            .expect("lock")
            .insert(format!("{stack}-{function}"), (times, error));
    }

    /// From now on, refuses every DynamoDB request that touches a table of
    /// `stack` and whose body contains `text`, with a `ValidationException`.
    pub fn refuse_dynamodb(&self, stack: &str, text: &str) {
        self.shared
            .dynamodb_faults
            .lock()
            .expect("lock")
            .push((format!("{stack}-"), text.to_owned()));
    }

    /// Every DynamoDB request so far that touched a table of `stack`.
    pub fn stack_dynamodb_calls(&self, stack: &str) -> Vec<DynamoCall> {
        let prefix = format!("{stack}-");
        self.shared
            .dynamodb
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.tables.iter().any(|t| t.starts_with(&prefix)))
            .cloned()
            .collect()
    }

    /// The SNS notifications delivered to `stack`'s subscriber so far.
    pub fn sns_messages(&self, stack: &str) -> Vec<Value> {
        self.shared
            .sns
            .lock()
            .expect("lock")
            .get(stack)
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct RouterState {
    shared: Arc<Shared>,
    moto: String,
    http: reqwest::Client,
    jwks: Value,
}

/// A Lambda `Invoke`: the function's real handler answers, with a failed
/// invocation shaped as Lambda shapes it (`X-Amz-Function-Error`).
async fn invoke(
    State(state): State<RouterState>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Response {
    // moto sends the full ARN; its last segment is the function name.
    let name = name.rsplit(':').next().unwrap_or_default().to_owned();
    let found = {
        let functions = state.shared.functions.lock().expect("lock");
        functions.iter().find_map(|(stack, f)| {
            name.strip_prefix(stack.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .map(|function| (function.to_owned(), f.clone()))
        })
    };
    let Some((function, functions)) = found else {
        return lambda_service_error(StatusCode::NOT_FOUND, "ResourceNotFoundException");
    };
    let fault = {
        let mut faults = state.shared.faults.lock().expect("lock");
        match faults.get_mut(&name) {
            Some((left, kind)) if *left > 0 => {
                *left -= 1;
                Some(*kind)
            }
            _ => None,
        }
    };
    if let Some(kind) = fault {
        let mut r = (
            StatusCode::OK,
            axum::Json(json!({"errorType": kind.as_str(), "errorMessage": "injected by the test"})),
        )
            .into_response();
        r.headers_mut()
            .insert("x-amz-function-error", "Unhandled".parse().expect("header"));
        return r;
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return lambda_service_error(StatusCode::BAD_REQUEST, "InvalidRequestContentException");
    };
    if ![
        "authorize",
        "gateway",
        "decision-log",
        "denial-metrics",
        "approval-callback",
    ]
    .contains(&function.as_str())
    {
        return lambda_service_error(StatusCode::NOT_FOUND, "ResourceNotFoundException");
    }
    // The HTTP adapter's future is not `Send` (Lambda's runtime polls it in
    // place); run each invocation to completion on a blocking thread.
    let runtime = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            let context = lambda_runtime::Context::default();
            match function.as_str() {
                "authorize" => {
                    governance::handlers::invoke_http(functions.authorize, event, context).await
                }
                "gateway" => {
                    governance::handlers::invoke_http(functions.gateway, event, context).await
                }
                "decision-log" => functions.decision_log.handle(event).await,
                "denial-metrics" => functions.denial_metrics.handle(event).await,
                _ => functions.approval_callback.handle(event, context).await,
            }
        })
    })
    .await
    .expect("the handler ran");
    match result {
        Ok(payload) => (StatusCode::OK, axum::Json(payload)).into_response(),
        Err(HandlerError { kind, message }) => {
            let mut r = (
                StatusCode::OK,
                axum::Json(json!({"errorType": kind.as_str(), "errorMessage": message})),
            )
                .into_response();
            r.headers_mut()
                .insert("x-amz-function-error", "Unhandled".parse().expect("header"));
            r
        }
    }
}

/// A Lambda service error; moto needs the request id to map it.
fn lambda_service_error(status: StatusCode, kind: &'static str) -> Response {
    let mut r = (status, axum::Json(json!({"message": kind}))).into_response();
    let h = r.headers_mut();
    h.insert("x-amzn-errortype", kind.parse().expect("header"));
    h.insert("x-amzn-requestid", "router".parse().expect("header"));
    r
}

async fn jwks(State(state): State<RouterState>) -> axum::Json<Value> {
    axum::Json(state.jwks)
}

/// An SNS HTTP subscriber: keeps every notification per stack.
async fn sns_sink(
    State(state): State<RouterState>,
    UrlPath(stack): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .shared
        .sns
        .lock()
        .expect("lock")
        .entry(stack)
        .or_default()
        .push(message);
    StatusCode::OK
}

/// Every table name in a DynamoDB request body.
fn table_names(body: &Value, out: &mut Vec<String>) {
    match body {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("TableName", Value::String(t)) => out.push(t.clone()),
                    // BatchWriteItem / BatchGetItem key their requests by table.
                    ("RequestItems", Value::Object(tables)) => {
                        out.extend(tables.keys().cloned());
                    }
                    _ => table_names(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| table_names(v, out)),
        _ => {}
    }
}

/// Anything else goes to moto as it came.
async fn forward(
    State(state): State<RouterState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let dynamodb = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("DynamoDB_20120810."));
    let _gate = match dynamodb {
        Some(_) => Some(state.shared.dynamodb_gate.lock().await),
        None => None,
    };
    if let Some(target) = dynamodb {
        let mut tables = Vec::new();
        if let Ok(json) = serde_json::from_slice::<Value>(&body) {
            table_names(&json, &mut tables);
        }
        tables.sort();
        tables.dedup();
        let refused = {
            let text = String::from_utf8_lossy(&body);
            state
                .shared
                .dynamodb_faults
                .lock()
                .expect("lock")
                .iter()
                .any(|(prefix, needle)| {
                    tables.iter().any(|t| t.starts_with(prefix.as_str()))
                        && text.contains(needle.as_str())
                })
        };
        if refused {
            let mut r = (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                    "message": "refused by the test",
                })),
            )
                .into_response();
            r.headers_mut().insert(
                "content-type",
                "application/x-amz-json-1.0".parse().expect("header"),
            );
            return r;
        }
        state
            .shared
            .dynamodb
            .lock()
            .expect("lock")
            .push(DynamoCall {
                operation: target.to_owned(),
                tables,
            });
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = state
        .http
        .request(method, format!("{}{path}", state.moto))
        .body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            request = request.header(k, v);
        }
    }
    match request.send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            for (k, v) in &headers {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    response.headers_mut().insert(k, v.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("moto is unreachable: {e}")).into_response(),
    }
}
