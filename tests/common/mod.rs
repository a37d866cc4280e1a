//! What every scenario needs: the `govctl` binary, a running `govctl serve`
//! on its own port and data directory, tokens, HTTP calls and the SQLite
//! decision log, read from outside the server.

pub mod openapi;

use std::fmt;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The issuer of tokens minted by `govctl agent token` / `govctl user token`.
pub const ISSUER: &str = "urn:agent-governance:local";
/// The audience of agent credentials.
pub const AGENT_AUDIENCE: &str = "agent-governance/agent";
/// The audience of on-behalf-of user tokens.
pub const USER_AUDIENCE: &str = "agent-governance/user";

/// Requests slower than this are noted on stderr (shown when a test fails).
const SLOW_REQUEST: Duration = Duration::from_secs(2);

/// How long a server may take to answer `/healthz` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace root (this package lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package has a parent directory")
        .to_path_buf()
}

/// The example policy directory the built-in policy set comes from.
pub fn example_policies() -> PathBuf {
    workspace_root().join("infra").join("policies")
}

/// The `govctl` binary (with AWS support, for `policy push`), built once per test run.
pub fn govctl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                if dir.is_relative() {
                    root.join(dir)
                } else {
                    dir
                }
            }
            _ => root.join("target"),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let started = Instant::now();
        let out = Command::new(&cargo)
            .current_dir(&root)
            .args([
                "build",
                "-p",
                "govctl",
                "--features",
                "aws",
                "--bin",
                "govctl",
                "--target-dir",
            ])
            .arg(&target)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{cargo:?} build -p govctl`: {e}"));
        assert!(
            out.status.success(),
            "`cargo build -p govctl --bin govctl` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = target
            .join("debug")
            .join(format!("govctl{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "cargo built govctl but `{}` does not exist",
            bin.display()
        );
        eprintln!(
            "[common] govctl built in {:.1?}: {}",
            started.elapsed(),
            bin.display()
        );
        bin
    })
}

/// Runs `govctl ARGS` and returns its output, whatever the exit status.
pub fn run_govctl(args: &[&str]) -> Output {
    let bin = govctl_bin();
    let started = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .env_remove("GOVCTL_DATA_DIR")
        .env_remove("RUST_LOG")
        .env("GOVCTL_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run govctl {args:?}: {e}"));
    let elapsed = started.elapsed();
    if elapsed > SLOW_REQUEST {
        eprintln!(
            "[common] slow command: govctl {} took {elapsed:.1?}",
            args.join(" ")
        );
    }
    out
}

/// Takes the credit bureau's business-hours rule (and its test case) out
/// of the example policies copied into `dir`, so that a story that pulls
/// credit reports does not depend on the hour the suite runs at.
pub fn without_business_hours(dir: &Path) {
    let cases_file = dir.join("tests/seed_cases.yaml");
    let cases = std::fs::read_to_string(&cases_file).expect("the seed cases");
    let without_night = cases
        .split("\n  - name: ")
        .filter(|case| !case.starts_with("no credit reports at night"))
        .collect::<Vec<_>>()
        .join("\n  - name: ");
    assert_ne!(
        cases, without_night,
        "the night case is gone from the seed cases"
    );
    std::fs::write(&cases_file, without_night).expect("write the seed cases");
    let meridian_file = dir.join("meridian.cedar");
    let meridian = std::fs::read_to_string(&meridian_file).expect("meridian.cedar");
    let cut = meridian
        .find("@id(\"meridian:credit-report-hours\")")
        .expect("the hours rule");
    let rest = &meridian[cut..];
    // The rule ends with the first `};` after its id.
    let end = rest.find("};").map_or(rest.len(), |i| i + 2);
    let without = format!("{}{}", &meridian[..cut], &rest[end..]);
    std::fs::write(&meridian_file, without).expect("write meridian.cedar");
}

/// Runs `govctl ARGS` and returns its stdout; panics with its output if it fails.
pub fn govctl_ok(args: &[&str]) -> String {
    let out = run_govctl(args);
    assert!(
        out.status.success(),
        "`govctl {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("govctl prints UTF-8")
}

/// Mints an agent credential with the key of `data_dir`.
pub fn agent_token_in(data_dir: &Path, agent_id: &str) -> String {
    let dir = data_dir.to_str().expect("UTF-8 temp path");
    govctl_ok(&["agent", "token", agent_id, "--data-dir", dir])
        .trim()
        .to_owned()
}

/// A port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind an ephemeral port")
        .port()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    i64::try_from(secs).expect("the clock fits in i64")
}

/// Calls `attempt` until it returns `Ok`, or panics with its last error after `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// JSON with object keys sorted at every level and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        canonical_json(&map[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// The `arguments_hash` a record must carry for `arguments`: SHA-256 of the
/// canonical JSON, computed here independently of the product.
pub fn arguments_hash(arguments: &Value) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical_json(arguments).as_bytes()))
    )
}

/// One HTTP answer, kept whole so that failures can show it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub text: String,
    /// The body as JSON, or `Null` if it is not JSON.
    pub json: Value,
    /// How long the request took.
    pub elapsed: Duration,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.text.clone();
        if text.len() > 4000 {
            let mut end = 4000;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        write!(f, "HTTP {} ({:.0?}) {}", self.status, self.elapsed, text)
    }
}

impl Reply {
    fn from_response(r: reqwest::blocking::Response, started: Instant, what: &str) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().expect("cannot read the response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        openapi::check(what, status, content_type, &json);
        let elapsed = started.elapsed();
        if elapsed > SLOW_REQUEST {
            eprintln!("[common] slow request: {what} took {elapsed:.1?} (HTTP {status})");
        }
        Reply {
            status,
            headers,
            text,
            json,
            elapsed,
        }
    }

    /// A string field of the body ("" when absent).
    pub fn str(&self, field: &str) -> &str {
        self.json.get(field).and_then(Value::as_str).unwrap_or("")
    }

    /// `decision` of the body.
    pub fn decision(&self) -> &str {
        self.str("decision")
    }

    /// `error.code` of the body ("" when absent).
    pub fn error_code(&self) -> &str {
        self.json
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The codes of `reasons`.
    pub fn reason_codes(&self) -> Vec<String> {
        self.json
            .get("reasons")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r.get("code").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `decision_id`, which must be there.
    pub fn decision_id(&self, context: &str) -> String {
        let id = self.str("decision_id");
        assert!(!id.is_empty(), "{context}: no decision_id in {self}");
        id.to_owned()
    }

    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the status.
    pub fn expect_status(&self, status: u16, context: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "{context}: expected HTTP {status}, got {self}"
        );
        self
    }

    /// Asserts an error answer: status and `error.code`, and no decision.
    pub fn expect_error(&self, status: u16, code: &str, context: &str) -> &Self {
        self.expect_status(status, context);
        assert_eq!(
            self.error_code(),
            code,
            "{context}: expected error code `{code}`, got {self}"
        );
        let message = self
            .json
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(
            !message.is_empty(),
            "{context}: error without a message: {self}"
        );
        assert!(
            self.json.get("decision").is_none(),
            "{context}: an error answer must carry no decision: {self}"
        );
        self
    }

    /// Asserts a decision answer: status, `decision` and, when given, a reason code.
    pub fn expect_decision(
        &self,
        status: u16,
        decision: &str,
        reason: Option<&str>,
        context: &str,
    ) -> &Self {
        self.expect_status(status, context);
        assert_eq!(
            self.decision(),
            decision,
            "{context}: expected decision `{decision}`, got {self}"
        );
        if let Some(code) = reason {
            assert!(
                self.reason_codes().iter().any(|c| c == code),
                "{context}: expected reason code `{code}` among {:?}, got {self}",
                self.reason_codes()
            );
        }
        self
    }
}

/// Starts `govctl serve` over `data_dir`, appending its stderr to
/// `stderr_path`, and waits until it answers `/healthz`: the child and its base URL.
fn launch(
    data_dir: &Path,
    stderr_path: &Path,
    client: &Client,
    args: &[String],
) -> (Child, String) {
    let bin = govctl_bin();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port();
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(stderr_path)
            .expect("cannot create the stderr log");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("GOVCTL_DATA_DIR")
            .env_remove("RUST_LOG")
            .env("GOVCTL_LOG", "info")
            // Colour is off because stderr is a file, not because of NO_COLOR.
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}` serve: {e}", bin.display()));
        let base = format!("http://127.0.0.1:{port}");
        let spawned = Instant::now();
        let deadline = spawned + START_TIMEOUT;
        let outcome = loop {
            if let Some(status) = child.try_wait().expect("cannot poll the server") {
                break Err(status.to_string());
            }
            // The port is ours only once our server says it listens there:
            // another test's server may have taken it after we probed.
            let listening = std::fs::read_to_string(stderr_path).is_ok_and(|log| {
                log.lines().any(|l| {
                    l.contains(&format!("127.0.0.1:{port}"))
                        && l.contains("listening")
                        && !l.contains("cannot listen")
                })
            });
            let healthy = listening
                && client
                    .get(format!("{base}/healthz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
            if healthy {
                break Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "no answer on {base}/healthz within {START_TIMEOUT:?}, or no \
                     `listening … 127.0.0.1:{port}` in its log (listening: {listening})"
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        match outcome {
            Ok(()) => {
                let elapsed = spawned.elapsed();
                if elapsed > SLOW_REQUEST {
                    eprintln!("[common] slow start: govctl serve took {elapsed:.1?}");
                }
                return (child, base);
            }
            Err(why) => {
                let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
                // Someone else may have taken the port between our probe and the bind.
                if attempt < 5 && log.contains("cannot listen") {
                    continue;
                }
                panic!("govctl serve did not start ({why}); its stderr:\n{log}");
            }
        }
    }
}

/// A `govctl serve` on its own port and data directory, killed on drop.
pub struct Server {
    /// Extra arguments of `govctl serve`.
    args: Vec<String>,
    root: tempfile::TempDir,
    data_dir: PathBuf,
    stderr_path: PathBuf,
    child: Child,
    base: String,
    client: Client,
}

impl Server {
    /// Starts a server on a fresh data directory and waits until it answers `/healthz`.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// [`Server::start`], with `args` added to `govctl serve`'s command line
    /// (a restart keeps them).
    pub fn start_with(args: &[&str]) -> Server {
        let root = tempfile::Builder::new()
            .prefix("govctl-serve-test-")
            .tempdir()
            .expect("cannot create a temp dir");
        let data_dir = root.path().join("data");
        let stderr_path = root.path().join("server.stderr.log");
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("cannot build an HTTP client");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (child, base) = launch(&data_dir, &stderr_path, &client, &args);
        Server {
            args,
            root,
            data_dir,
            stderr_path,
            child,
            base,
            client,
        }
    }

    /// Stops the server as a service manager does (SIGTERM), and waits for
    /// it to finish its shutdown: its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "cannot signal the server");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot poll the server") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "govctl serve did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server as a crash would: no graceful shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server (if it still runs) and starts it again, on another
    /// port, over the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        let (child, base) = launch(&self.data_dir, &self.stderr_path, &self.client, &self.args);
        self.child = child;
        self.base = base;
    }

    /// The data directory, as a string for command lines.
    pub fn data_dir_str(&self) -> &str {
        self.data_dir.to_str().expect("UTF-8 temp path")
    }

    /// A scratch directory next to the data directory, removed with the server.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).expect("cannot create a scratch dir");
        dir
    }

    /// What the server wrote on stderr so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Runs `govctl ARGS --data-dir <this server's>` and returns its stdout.
    pub fn govctl(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--data-dir", self.data_dir_str()]);
        govctl_ok(&all)
    }

    /// An agent credential minted by `govctl agent token`.
    pub fn agent_token(&self, agent_id: &str) -> String {
        agent_token_in(&self.data_dir, agent_id)
    }

    /// An on-behalf-of token minted by `govctl user token`.
    pub fn user_token(&self, user_id: &str, roles: &[&str], org: Option<&str>) -> String {
        let mut args = vec!["user", "token", user_id];
        for role in roles {
            args.extend(["--role", role]);
        }
        if let Some(org) = org {
            args.extend(["--org", org]);
        }
        self.govctl(&args).trim().to_owned()
    }

    /// A JWT signed with this data directory's key (read from
    /// `keys/signing-key.pem`) carrying exactly `claims`: for tokens the CLI
    /// will not mint, such as expired ones.
    pub fn craft_token(&self, claims: &Value) -> String {
        let pem = std::fs::read(self.data_dir.join("keys").join("signing-key.pem"))
            .expect("cannot read the data directory's signing key");
        // The key id the verifier looks the key up by, as the CLI sets it.
        let reference = self.agent_token("kid-probe");
        let kid = jsonwebtoken::decode_header(&reference)
            .expect("a minted token has a readable header")
            .kid
            .expect("minted tokens name their key");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid);
        let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("an Ed25519 PEM key");
        jsonwebtoken::encode(&header, claims, &key).expect("cannot sign the token")
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1/authorize` with exactly these headers and body bytes.
    pub fn post_authorize(&self, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        let started = Instant::now();
        let mut request = self.client.post(self.url("/v1/authorize"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .body(body.into())
            .send()
            .unwrap_or_else(|e| panic!("POST /v1/authorize failed: {e}\n{}", self.stderr_log()));
        Reply::from_response(response, started, "POST /v1/authorize")
    }

    /// `POST /v1/authorize` as `agent_token` for `user_token`, with a JSON body
    /// and extra headers.
    pub fn authorize_with(
        &self,
        agent_token: &str,
        user_token: &str,
        body: &Value,
        extra: &[(&str, &str)],
    ) -> Reply {
        let bearer = format!("Bearer {agent_token}");
        let mut headers = vec![
            ("authorization", bearer.as_str()),
            ("x-on-behalf-of", user_token),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.post_authorize(&headers, body.to_string())
    }

    /// `POST /v1/authorize` as `agent_token` for `user_token`.
    pub fn authorize(&self, agent_token: &str, user_token: &str, body: &Value) -> Reply {
        self.authorize_with(agent_token, user_token, body, &[])
    }

    /// `GET path`, with a bearer credential when one is given.
    pub fn get(&self, path: &str, agent_token: Option<&str>) -> Reply {
        let started = Instant::now();
        let mut request = self.client.get(self.url(path));
        if let Some(token) = agent_token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}\n{}", self.stderr_log()));
        Reply::from_response(response, started, &format!("GET {path}"))
    }

    /// `POST path` with a JSON body, as `agent_token`.
    pub fn post(&self, path: &str, agent_token: &str, body: &Value) -> Reply {
        let started = Instant::now();
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(agent_token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}\n{}", self.stderr_log()));
        Reply::from_response(response, started, &format!("POST {path}"))
    }

    /// `GET /v1/decisions/{id}` as `agent_token`.
    pub fn decision(&self, agent_token: &str, decision_id: &str) -> Reply {
        self.get(&format!("/v1/decisions/{decision_id}"), Some(agent_token))
    }

    /// The active policy version and hash, as `/healthz` reports them.
    pub fn policy(&self) -> (String, String) {
        let health = self.get("/healthz", None);
        health.expect_status(200, "/healthz");
        assert_eq!(health.str("status"), "ok", "/healthz: {health}");
        (
            health.str("policy_version").to_owned(),
            health.str("policy_hash").to_owned(),
        )
    }

    /// The decision database, `governance.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("governance.db")
    }

    /// A read-only connection to the decision database.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("cannot open governance.db read-only");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("cannot set a busy timeout");
        conn
    }

    /// The number of rows in `decisions` matching `where_clause`.
    pub fn count_decisions(&self, where_clause: &str, params: &[&str]) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM decisions WHERE {where_clause}");
        self.db()
            .query_row(&sql, rusqlite::params_from_iter(params), |r| r.get(0))
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
    }

    /// The `decision` column and parsed `record` of one row, if it is there.
    pub fn stored(&self, decision_id: &str) -> Option<(String, Value)> {
        use rusqlite::OptionalExtension as _;
        self.db()
            .query_row(
                "SELECT decision, record FROM decisions WHERE decision_id = ?1",
                [decision_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .expect("cannot read the decisions table")
            .map(|(decision, record)| {
                let record = serde_json::from_str(&record)
                    .unwrap_or_else(|e| panic!("record of {decision_id} is not JSON: {e}"));
                (decision, record)
            })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.stderr_log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines.len().saturating_sub(80);
            eprintln!(
                "---- govctl serve ({}, data dir {}) stderr, last {} lines ----\n{}\n---- end ----",
                self.base,
                self.data_dir.display(),
                lines.len() - tail,
                lines[tail..].join("\n")
            );
        }
    }
}

/// The claims of a local token for `sub`, expiring `exp_in` seconds from now.
pub fn claims(sub: &str, audience: &str, token_use: &str, exp_in: i64) -> Value {
    let now = unix_now();
    let issued = now.min(now + exp_in) - 60;
    json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": audience,
        "exp": now + exp_in,
        "iat": issued,
        "nbf": issued,
        "jti": format!("test-{sub}-{now}-{exp_in}"),
        "token_use": token_use,
    })
}
