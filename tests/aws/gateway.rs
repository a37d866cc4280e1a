//! The gateway function on the emulator: MCP over API Gateway events, with
//! the agent as its IAM principal, the real handlers, DynamoDB for the
//! decisions, executions and exactly-once keys, Secrets Manager for the
//! upstream credential, and the example upstream (the official MCP Python
//! SDK) as every server's dev endpoint.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::emulator::{workspace_root, ACCOUNT};
use crate::stack::{HttpAnswer, Stack, MCP_AUDIENCE, UPSTREAM_SECRET};

/// The example upstream, started once per test binary; it exits when its
/// stdin (held here) closes with the test process.
struct Upstream {
    url: String,
    stats: String,
    _child: Child,
    _stdin: ChildStdin,
}

fn upstream() -> &'static Upstream {
    static UPSTREAM: OnceLock<Upstream> = OnceLock::new();
    UPSTREAM.get_or_init(|| {
        let port = crate::common::free_port();
        let python = workspace_root().join(".venv/bin/python");
        let mut child = Command::new(&python)
            .arg(workspace_root().join("tests/mcp/upstream.py"))
            .args([
                "--port",
                &port.to_string(),
                "--name",
                "aws-upstream",
                "--exit-with-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let stdin = child.stdin.take().expect("stdin");
        let stats = format!("http://127.0.0.1:{port}/stats");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !reqwest::blocking::get(&stats).is_ok_and(|r| r.status().is_success()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the example upstream did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Upstream {
            url: format!("http://127.0.0.1:{port}/mcp"),
            stats,
            _child: child,
            _stdin: stdin,
        }
    })
}

fn stats() -> Value {
    reqwest::blocking::get(&upstream().stats)
        .expect("stats")
        .json()
        .expect("stats JSON")
}

fn executions(tool: &str) -> u64 {
    stats()["executions"][tool].as_u64().unwrap_or(0)
}

/// The example policies with every dev endpoint on the test upstream, the
/// privacy server reachable only from prod, `flag_for_review` executed
/// exactly once per application, and credit reports at any hour.
fn gateway_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let from = workspace_root().join("infra/policies");
    copy(&from, dir.path());
    let path = dir.path().join("registry.yaml");
    let text = std::fs::read_to_string(&path).expect("registry");
    let text = text.replace(
        "\"http://127.0.0.1:8931/mcp\"",
        &format!("\"{}\"", upstream().url),
    );
    let privacy = format!(
        "  - id: privacy\n    description: Customer records (right to erasure)\n    endpoints:\n      dev: {{ url: \"{}\" }}\n",
        upstream().url
    );
    assert!(
        text.contains(&privacy),
        "the registry names the privacy server as expected"
    );
    let text = text.replace(
        &privacy,
        "  - id: privacy\n    description: Customer records (right to erasure)\n    endpoints:\n      prod: { url: \"https://privacy.internal.example/mcp\" }\n",
    );
    let loan_agent = "  - id: meridian-loan-agent\n";
    assert!(text.contains(loan_agent));
    let text = text.replace(
        loan_agent,
        "  - id: meridian-loan-agent\n    oauth_clients: [loan-agent-mcp-client]\n",
    );
    let flag = "  - id: flag_for_review\n";
    assert!(text.contains(flag));
    let text = text.replace(
        flag,
        "  - id: flag_for_review\n    idempotency: { key: [application_id], window_seconds: 3600 }\n",
    );
    std::fs::write(&path, text).expect("write registry");
    crate::common::without_business_hours(dir.path());
    dir
}

/// Every file under `dir`, concatenated.
fn read_all(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&read_all(&path));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.push_str(&text);
        }
    }
    out
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// One JSON-RPC request to `/mcp` as the agent running as IAM role `role`,
/// a client of the 2025-06-18 revision without a session (the function
/// keeps none): the JSON-RPC response.
fn mcp(stack: &Stack, role: &str, user: &str, method: &str, params: Value) -> Value {
    let answer = mcp_raw(stack, role, user, method, params);
    assert_eq!(answer.status, 200, "{method}: {}", answer.body);
    answer.json
}

fn mcp_raw(stack: &Stack, role: &str, user: &str, method: &str, params: Value) -> HttpAnswer {
    mcp_in_run(stack, role, user, Some("run-aws-1"), method, params)
}

/// [`mcp_raw`] in the run `run` (none: without `X-Run-Id`).
fn mcp_in_run(
    stack: &Stack,
    role: &str,
    user: &str,
    run: Option<&str>,
    method: &str,
    params: Value,
) -> HttpAnswer {
    let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/session-1");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
        ("x-on-behalf-of", user),
    ];
    if let Some(run) = run {
        headers.push(("x-run-id", run));
    }
    stack.http(
        "gateway",
        "POST",
        "/mcp",
        Some(&arn),
        &headers,
        &body.to_string(),
    )
}

fn call(stack: &Stack, role: &str, user: &str, tool: &str, arguments: Value) -> Value {
    let answer = mcp(
        stack,
        role,
        user,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    );
    answer["result"].clone()
}

/// [`call`] in the run `run` (none: without `X-Run-Id`).
fn call_in_run(
    stack: &Stack,
    role: &str,
    user: &str,
    run: Option<&str>,
    tool: &str,
    arguments: Value,
) -> Value {
    let answer = mcp_in_run(
        stack,
        role,
        user,
        run,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    );
    assert_eq!(answer.status, 200, "tools/call {tool}: {}", answer.body);
    answer.json["result"].clone()
}

/// The decision a result carries.
fn meta(result: &Value) -> &Value {
    &result["_meta"]["agent-governance/decision"]
}

fn reasons(result: &Value) -> Value {
    meta(result)["reasons"].clone()
}

/// The text content of a tool result.
fn text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The review id of the notification to the stack's approvers that follows
/// the first `after`, once delivered.
fn review_after(stack: &Stack, after: usize) -> String {
    let prefix = format!("https://{}.approvals.test/v1/reviews/", stack.name);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = stack.emu.sns_messages(&stack.name).get(after) {
            let text = m["Message"].as_str().unwrap_or_default();
            return text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("the message carries the review link: {text}"))
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no notification to the approvers after the first {after}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Approves `review_id` as `approver`, a member of `group`, as in a
/// browser: opens the review page (its CSRF field and cookie), then posts
/// the answer. The page, which shows what is approved.
fn approve(stack: &Stack, review_id: &str, approver: &str, group: &str) -> String {
    let page = stack.http(
        "approval-callback",
        "GET",
        &format!("/v1/reviews/{review_id}"),
        None,
        &[("x-forwarded-proto", "https")],
        "",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page has a CSRF field: {}", page.body));
    let cookie = page
        .cookies
        .iter()
        .find(|c| c.starts_with("agov_csrf="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("the page sets the CSRF cookie: {:?}", page.cookies));
    let token = stack.approver_token(approver, &[group]);
    let answered = stack.http(
        "approval-callback",
        "POST",
        &format!("/v1/reviews/{review_id}/approve"),
        None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", cookie),
        ],
        &format!("csrf={csrf}&approver_token={token}&comment=checked"),
    );
    assert_eq!(answered.status, 200, "{}", answered.body);
    page.body
}

/// The approval ids of the stack's pending decisions of `tool`.
fn pending_approvals(stack: &Stack, tool: &str) -> Vec<String> {
    let mut ids: Vec<String> = stack
        .decision_items()
        .iter()
        .filter(|r| r["tool_id"] == tool && r["decision"] == "pending_approval")
        .map(|r| {
            r["approval_id"]
                .as_str()
                .expect("a pending decision names its approval")
                .to_owned()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn the_gateway_function_governs_mcp_calls_on_aws() {
    let policies = gateway_policies();
    let stack = Stack::new("gateway", policies.path());
    let ana = stack.user_token_in("ana", &["underwriter"], Some("meridian-capital"));

    let init = mcp(
        &stack,
        "meridian-loan-agent",
        &ana,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "agent-governance");

    // tools/list: this agent, for this user, under the registry's names.
    let listed = mcp(&stack, "meridian-loan-agent", &ana, "tools/list", json!({}));
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "calculate_risk_score",
            "flag_for_review",
            "lookup_regulatory_requirements",
            "pull_credit_report"
        ]
    );

    // An allowed call: forwarded with the Secrets Manager credential, filtered.
    let before = executions("get_credit_report");
    let report = call(
        &stack,
        "meridian-loan-agent",
        &ana,
        "pull_credit_report",
        json!({"applicant_id": "APL-9"}),
    );
    assert_eq!(report["isError"], false, "{report}");
    assert_eq!(
        report["structuredContent"],
        json!({"applicant_id": "APL-9", "score": 712, "tradelines": 9})
    );
    assert_eq!(executions("get_credit_report"), before + 1);
    let seen = stats();
    assert!(seen["authorization"]
        .as_array()
        .expect("list")
        .contains(&json!(format!("Bearer {UPSTREAM_SECRET}"))));
    assert_eq!(
        seen["on_behalf_of"],
        json!([]),
        "the user's token never goes upstream"
    );

    // Its decision and its execution, in the decisions table.
    let decision_id = report["_meta"]["agent-governance/decision"]["decision_id"]
        .as_str()
        .expect("a decision id")
        .to_owned();
    let records = stack.decision_items();
    let execution = records
        .iter()
        .find(|r| r["execution"]["decision_id"] == decision_id.as_str())
        .expect("an execution record");
    assert_eq!(execution["execution"]["server"], "credit-bureau");
    assert_eq!(execution["execution"]["status"], "succeeded");
    assert_eq!(
        execution["execution"]["removed_paths"],
        json!(["raw_fico_model"])
    );
    assert!(!serde_json::to_string(&records)
        .expect("json")
        .contains("FICO 10T"));

    // A denied call is explained and never forwarded.
    let lee = stack.user_token("lee", &["support_agent"]);
    let denied = call(
        &stack,
        "agent-support-1",
        &lee,
        "search_logs",
        json!({"query": "x"}),
    );
    assert_eq!(denied["isError"], true);
    assert!(
        reasons(&denied)
            .as_array()
            .expect("reasons")
            .contains(&json!("tool_not_granted")),
        "{denied}"
    );
    assert_eq!(executions("search_logs"), 0);

    // A server without an endpoint in this environment is never reached.
    let pia = stack.user_token("pia", &["privacy_officer"]);
    let erase = call(
        &stack,
        "agent-privacy-1",
        &pia,
        "delete_customer_record",
        json!({"customer_id": "C-1"}),
    );
    assert_eq!(reasons(&erase), json!(["environment_mismatch"]));
    assert_eq!(executions("delete_customer_record"), 0);

    // Concurrent duplicates of an exactly-once call run upstream once: the
    // key is claimed with one conditional write in the counters table.
    let before = executions("flag_for_review");
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (stack, ana) = (&stack, &ana);
                s.spawn(move || {
                    call(
                        stack,
                        "meridian-loan-agent",
                        ana,
                        "flag_for_review",
                        json!({"application_id": "APP-77", "reason": format!("attempt {i}")}),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a call"))
            .collect()
    });
    assert_eq!(executions("flag_for_review"), before + 1);
    let duplicates = results
        .iter()
        .filter(|r| reasons(r) == json!(["duplicate_call"]))
        .count();
    assert_eq!(duplicates, 7, "{results:?}");
    let later = call(
        &stack,
        "meridian-loan-agent",
        &ana,
        "flag_for_review",
        json!({"application_id": "APP-77"}),
    );
    assert_eq!(reasons(&later), json!(["duplicate_call"]));
    let first = results
        .iter()
        .find(|r| reasons(r) != json!(["duplicate_call"]))
        .expect("the call that ran");
    assert_eq!(later["structuredContent"], first["structuredContent"]);
    assert_eq!(executions("flag_for_review"), before + 1);

    // The executions ride the decision table's stream like every record:
    // chained into the evidence bucket (which verifies), and counted as
    // upstream calls by tool.
    assert!(stack.pump_stream() > 0);
    assert_eq!(
        stack.metric_sum(
            "UpstreamCalls",
            &[
                ("Environment", "dev"),
                ("Tool", "pull_credit_report"),
                ("Status", "succeeded")
            ]
        ),
        1.0
    );
    assert_eq!(
        stack.metric_sum(
            "UpstreamCalls",
            &[
                ("Environment", "dev"),
                ("Tool", "flag_for_review"),
                ("Status", "succeeded")
            ]
        ),
        1.0,
        "duplicates are not executions"
    );
    let copy = tempfile::tempdir().expect("temp dir");
    stack.copy_evidence(copy.path());
    let (code, said) = stack.verify_copy(copy.path(), &[]);
    assert_eq!(code, Some(0), "{said}");
    let evidence = read_all(copy.path());
    assert!(
        evidence.contains("\"execution\"") && evidence.contains(&decision_id),
        "the evidence holds the executions"
    );

    // An MCP client that speaks MCP authorization: an OAuth access token of
    // the configured issuer at /oauth/mcp, its client mapped to the agent.
    let oauth = |token: &str, method: &str, params: Value| {
        stack.http(
            "gateway",
            "POST",
            "/oauth/mcp",
            None,
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2025-06-18"),
                ("authorization", &format!("Bearer {token}")),
                ("x-on-behalf-of", &ana),
                ("x-run-id", "run-oauth-1"),
            ],
            &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
        )
    };
    let client_token = stack.user_token_for(MCP_AUDIENCE, "loan-agent-mcp-client", &[]);
    let listed = oauth(&client_token, "tools/list", json!({}));
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.json["result"]["tools"].as_array().map(Vec::len),
        Some(4)
    );
    let before = executions("calculate_risk_score");
    let scored = oauth(
        &client_token,
        "tools/call",
        json!({"name": "calculate_risk_score", "arguments": {"application_id": "APP-5"}}),
    );
    assert_eq!(scored.json["result"]["isError"], false, "{}", scored.body);
    assert_eq!(executions("calculate_risk_score"), before + 1);
    assert!(
        !stats().to_string().contains(&client_token),
        "no token passthrough"
    );
    // A client no agent lists is an unknown agent; no token is a 401 that
    // names this route's metadata.
    let stranger = stack.user_token_for(MCP_AUDIENCE, "someone-else", &[]);
    let refused = oauth(
        &stranger,
        "tools/call",
        json!({"name": "calculate_risk_score", "arguments": {"application_id": "APP-5"}}),
    );
    assert_eq!(reasons(&refused.json["result"]), json!(["unknown_agent"]));
    let wrong_audience = stack.user_token("loan-agent-mcp-client", &[]);
    assert_eq!(oauth(&wrong_audience, "tools/list", json!({})).status, 401);
    let anonymous = stack.http(
        "gateway",
        "POST",
        "/oauth/mcp",
        None,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
    );
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers["www-authenticate"]
        .as_str()
        .is_some_and(|c| c.contains("/.well-known/oauth-protected-resource/oauth/mcp")));
    let metadata = stack.http(
        "gateway",
        "GET",
        "/.well-known/oauth-protected-resource/oauth/mcp",
        None,
        &[],
        "",
    );
    assert!(metadata.json["authorization_servers"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));

    // No credentials, no answer; the metadata names the resource.
    let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/meridian-loan-agent/s");
    let anonymous = stack.http(
        "gateway",
        "POST",
        "/mcp",
        Some(&arn),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
    );
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let metadata = stack.http(
        "gateway",
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        None,
        &[],
        "",
    );
    assert_eq!(metadata.status, 200);
    assert!(metadata.json["resource"]
        .as_str()
        .expect("resource")
        .ends_with("/mcp"));
}

/// A call that waits for a human, then the same call again once approved;
/// and limits on the call path. A stack of its own, on the shared emulator
/// and upstream.
#[test]
fn the_gateway_function_waits_for_approval_and_applies_limits_on_aws() {
    let policies = gateway_policies();
    let stack = Stack::new("gateway-gov", policies.path());

    // A transfer waits for a treasury approver: the model is told which
    // approval, and nothing reaches the upstream.
    let tom = stack.user_token("tom", &["treasury_operator"]);
    let transfer =
        json!({"amount": 250.0, "currency": "EUR", "to_account": "DE89370400440532013000"});
    let transfer_call = |arguments: &Value| {
        call(
            &stack,
            "agent-treasury-1",
            &tom,
            "transfer_funds",
            arguments.clone(),
        )
    };
    let before = executions("transfer_funds");
    let notified = stack.emu.sns_messages(&stack.name).len();
    let waiting = transfer_call(&transfer);
    assert_eq!(waiting["isError"], true, "{waiting}");
    assert_eq!(meta(&waiting)["decision"], "pending_approval", "{waiting}");
    let approval = meta(&waiting)["approval"].clone();
    let approval_id = approval["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the result names its approval: {waiting}"))
        .to_owned();
    assert_eq!(approval["approver_group"], "treasury-approvers");
    assert!(approval["expires_at"].is_string(), "{waiting}");
    let said = text(&waiting);
    assert!(
        said.contains(&approval_id) && said.contains("repeat exactly the same call"),
        "{said}"
    );
    assert_eq!(executions("transfer_funds"), before);
    // Asking again while it waits: the same approval, no second one, and
    // still nothing executed.
    let again = transfer_call(&transfer);
    assert_eq!(again["isError"], true, "{again}");
    assert_eq!(meta(&again)["decision"], "pending_approval", "{again}");
    assert_eq!(
        meta(&again)["approval"]["approval_id"],
        approval_id.as_str()
    );
    assert_eq!(executions("transfer_funds"), before);
    assert_eq!(
        pending_approvals(&stack, "transfer_funds"),
        [approval_id.as_str()]
    );

    // A treasury approver approves it on the page the notification links.
    let page = approve(
        &stack,
        &review_after(&stack, notified),
        "alice",
        "treasury-approvers",
    );
    assert!(
        page.contains("transfer_funds") && page.contains("DE89370400440532013000"),
        "the page shows the call: {page}"
    );
    let (status, error) = stack.wait_for_execution(&approval_id, Duration::from_secs(30));
    assert_eq!((status.as_str(), error), ("SUCCEEDED", None));
    assert_eq!(
        stack.emu.sns_messages(&stack.name).len(),
        notified + 1,
        "one approval, one notification"
    );

    // The grant is bound to the arguments: another amount waits for an
    // approval of its own.
    let mut other_amount = transfer.clone();
    other_amount["amount"] = json!(251.0);
    let other = transfer_call(&other_amount);
    assert_eq!(meta(&other)["decision"], "pending_approval", "{other}");
    let other_id = meta(&other)["approval"]["approval_id"].clone();
    assert!(
        other_id.is_string() && other_id != approval_id.as_str(),
        "{other}"
    );
    assert_eq!(executions("transfer_funds"), before);

    // The approved call, repeated exactly: executed once, its result back.
    let done = transfer_call(&transfer);
    assert_eq!(done["isError"], false, "{done}");
    assert_eq!(done["structuredContent"]["amount"], 250.0, "{done}");
    assert_eq!(
        done["structuredContent"]["to_account"],
        "DE89370400440532013000"
    );
    assert_eq!(meta(&done)["decision"], "allow");
    assert_eq!(reasons(&done), json!(["approved_call"]));
    assert_eq!(meta(&done)["approval_id"], approval_id.as_str());
    assert_eq!(executions("transfer_funds"), before + 1);
    let decision_id = meta(&done)["decision_id"].clone();
    let records = stack.decision_items();
    let execution = records
        .iter()
        .find(|r| r["execution"]["decision_id"] == decision_id)
        .unwrap_or_else(|| panic!("an execution record of {decision_id}"));
    assert_eq!(execution["execution"]["status"], "succeeded");
    assert_eq!(execution["execution"]["server"], "treasury");

    // Single use: the same call again asks a human again.
    let next = transfer_call(&transfer);
    assert_eq!(next["isError"], true, "{next}");
    assert_eq!(meta(&next)["decision"], "pending_approval", "{next}");
    let next_id = meta(&next)["approval"]["approval_id"].clone();
    assert!(
        next_id.is_string() && next_id != approval_id.as_str() && next_id != other_id,
        "{next}"
    );
    assert_eq!(executions("transfer_funds"), before + 1);

    // A tool's rate limit: ten incidents an hour for the agent; the
    // eleventh is refused, says when to retry, and is not executed.
    let ops = stack.user_token("ops", &["sre"]);
    let before = executions("open_incident");
    let incidents: Vec<Value> = (0..11)
        .map(|i| {
            call(
                &stack,
                "agent-ops-1",
                &ops,
                "open_incident",
                json!({"title": format!("disk {i}"), "severity": 2}),
            )
        })
        .collect();
    let errors: Vec<Option<bool>> = incidents.iter().map(|r| r["isError"].as_bool()).collect();
    assert_eq!(
        errors,
        [vec![Some(false); 10], vec![Some(true)]].concat(),
        "{incidents:?}"
    );
    let limited = &incidents[10];
    assert_eq!(reasons(limited), json!(["rate_limited"]), "{limited}");
    assert!(
        meta(limited)["retry_after_seconds"]
            .as_u64()
            .is_some_and(|s| s > 0),
        "{limited}"
    );
    assert_eq!(executions("open_incident"), before + 10);

    // An agent's run limits: a loan-processing run may make 20 calls; the
    // 21st of the run is refused and not executed, another run is not
    // affected, and a call that names no run is refused.
    let ana = stack.user_token_in("ana", &["underwriter"], Some("meridian-capital"));
    let lookup = |run: Option<&str>| {
        call_in_run(
            &stack,
            "meridian-loan-agent",
            &ana,
            run,
            "lookup_regulatory_requirements",
            json!({"state": "NY", "product": "auto"}),
        )
    };
    let before = executions("lookup_regulatory_requirements");
    for i in 0..20 {
        let allowed = lookup(Some("run-aws-limits"));
        assert_eq!(allowed["isError"], false, "call {i}: {allowed}");
    }
    assert_eq!(executions("lookup_regulatory_requirements"), before + 20);
    let over = lookup(Some("run-aws-limits"));
    assert_eq!(over["isError"], true, "{over}");
    assert_eq!(meta(&over)["decision"], "deny", "{over}");
    assert_eq!(reasons(&over), json!(["run_call_limit"]), "{over}");
    assert!(text(&over).contains("run_call_limit"), "{over}");
    assert_eq!(executions("lookup_regulatory_requirements"), before + 20);
    let fresh = lookup(Some("run-aws-limits-2"));
    assert_eq!(fresh["isError"], false, "{fresh}");
    assert_eq!(executions("lookup_regulatory_requirements"), before + 21);
    let no_run = lookup(None);
    assert_eq!(no_run["isError"], true, "{no_run}");
    assert_eq!(reasons(&no_run), json!(["run_id_required"]), "{no_run}");
    assert_eq!(executions("lookup_regulatory_requirements"), before + 21);
}
