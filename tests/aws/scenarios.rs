//! The deployment's scenarios, end to end on the emulator.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::approval_suite::{self, transfer, ApprovalHost};
use crate::emulator::{ACCOUNT, REGION};
use crate::stack::{table, HttpAnswer, Stack, StackOptions, REFRESH};

fn example_policies() -> PathBuf {
    crate::emulator::workspace_root().join("infra/policies")
}

/// A copy of the example policies with `edit` applied to the registry.
fn edited_policies(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&example_policies(), dir.path());
    let registry = dir.path().join("registry.yaml");
    let text = std::fs::read_to_string(&registry).expect("registry");
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changes the registry");
    std::fs::write(&registry, edited).expect("write registry");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A pending transfer: its approval id (the agent's) and the review id of
/// the link approvers were sent.
fn pending_transfer(stack: &Stack) -> (String, String) {
    let tom = stack.user_token("tom", &["treasury_operator"]);
    let answer = stack.authorize("agent-treasury-1", &tom, &transfer(250.0));
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.json["decision"], "pending_approval");
    let approval_id = answer.json["approval_id"]
        .as_str()
        .expect("a pending decision names its approval")
        .to_owned();
    assert_eq!(
        answer.json["poll_url"],
        format!("/v1/approvals/{approval_id}")
    );
    let message = stack.wait_for_notification(Duration::from_secs(20));
    let text = message["Message"].as_str().expect("a message").to_owned();
    let link = text
        .lines()
        .find(|l| l.starts_with("https://"))
        .expect("the message carries a link")
        .to_owned();
    let review_id = link
        .strip_prefix(&format!(
            "https://{}.approvals.test/v1/reviews/",
            stack.name
        ))
        .expect("the link opens a review")
        .to_owned();
    assert_eq!(review_id.len(), 64);
    // The agent's approval id opens nothing: only the approvers' link does.
    assert!(
        !text.contains(&approval_id),
        "the message does not carry the agent's id"
    );
    assert_eq!(review_page(stack, &approval_id).status, 404);
    // The task token stays out of the link and the message.
    let item = stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .get_item()
                .table_name(table(&stack.name, "approvals"))
                .key(
                    "approval_id",
                    governance::adapters::aws::aws_sdk_dynamodb::types::AttributeValue::S(
                        approval_id.clone(),
                    ),
                )
                .send(),
        )
        .expect("get approval")
        .item
        .expect("the approval is recorded");
    let token = item["task_token"]
        .as_s()
        .expect("the waiting step's token is kept");
    assert!(!text.contains(token.as_str()) && !link.contains(token.as_str()));
    assert_eq!(item["status"].as_s().expect("status"), "pending");
    // Only the review id's hash is stored.
    assert!(!format!("{item:?}").contains(&review_id));
    (approval_id, review_id)
}

/// The approver's page of `review_id`.
fn review_page(stack: &Stack, review_id: &str) -> HttpAnswer {
    stack.http(
        "approval-callback",
        "GET",
        &format!("/v1/reviews/{review_id}"),
        None,
        &[("x-forwarded-proto", "https")],
        "",
    )
}

/// A review page opened in a browser: its CSRF form field and cookie.
struct OpenedPage {
    csrf: String,
    cookie: String,
}

/// Opens the review page as a browser does.
fn open_page(stack: &Stack, review_id: &str) -> Result<OpenedPage, Box<HttpAnswer>> {
    let page = review_page(stack, review_id);
    if page.status != 200 || !page.body.contains("name=\"csrf\"") {
        return Err(Box::new(page));
    }
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let set = page
        .cookies
        .iter()
        .find(|c| c.starts_with("agov_csrf="))
        .unwrap_or_else(|| panic!("the page sets the CSRF cookie: {:?}", page.cookies));
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(
            set.contains(attribute),
            "the CSRF cookie is {attribute}: {set}"
        );
    }
    let cookie = set.split(';').next().unwrap_or_default().to_owned();
    Ok(OpenedPage { csrf, cookie })
}

/// Posts an answer from an opened page.
fn post_answer(
    stack: &Stack,
    review_id: &str,
    page: &OpenedPage,
    verb: &str,
    token: &str,
    comment: &str,
) -> HttpAnswer {
    stack.http(
        "approval-callback",
        "POST",
        &format!("/v1/reviews/{review_id}/{verb}"),
        None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &page.cookie),
        ],
        &format!(
            "csrf={}&approver_token={token}&comment={}",
            page.csrf,
            comment.replace(' ', "+")
        ),
    )
}

/// Opens the page and answers, as an approver in a browser does.
fn answer(stack: &Stack, review_id: &str, verb: &str, token: &str, comment: &str) -> HttpAnswer {
    match open_page(stack, review_id) {
        Ok(page) => post_answer(stack, review_id, &page, verb, token, comment),
        Err(answer) => *answer,
    }
}

/// `GET /v1/approvals/{id}` as the agent running as `role`.
fn poll(stack: &Stack, role: &str, approval_id: &str) -> crate::stack::HttpAnswer {
    let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/s");
    stack.http(
        "authorize",
        "GET",
        &format!("/v1/approvals/{approval_id}"),
        Some(&arn),
        &[],
        "",
    )
}

fn outcome_of(stack: &Stack, approval_id: &str) -> Value {
    stack
        .decision_items()
        .into_iter()
        .find(|r| {
            r["approval"]["approval_id"] == approval_id && r["approval"]["status"] != "pending"
        })
        .unwrap_or_else(|| panic!("no outcome record for {approval_id}"))
}

#[test]
fn an_allow_is_recorded_and_costs_at_most_two_dynamodb_requests() {
    let stack = Stack::new("allow", &example_policies());
    let alice = stack.user_token("alice", &["support_agent"]);
    let ask = json!({"tool_id": "search_kb", "arguments": {"query": "reset password"}});
    // Warm: the first call fetches the issuer's keys.
    assert_eq!(stack.authorize("agent-support-1", &alice, &ask).status, 200);
    // Past the refresh interval, the next allow also re-reads the active pointer:
    // the most an allow ever costs.
    std::thread::sleep(REFRESH + Duration::from_millis(200));
    let before = stack.emu.stack_dynamodb_calls(&stack.name).len();
    let answer = stack.authorize("agent-support-1", &alice, &ask);
    let calls = stack.emu.stack_dynamodb_calls(&stack.name)[before..].to_vec();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json["decision"], "allow");
    assert_eq!(answer.json["agent_id"], "agent-support-1");
    let ops: Vec<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
    assert!(
        calls.len() <= 2,
        "an allow made {} DynamoDB requests: {ops:?}",
        calls.len()
    );
    assert_eq!(
        ops,
        ["Query", "TransactWriteItems"],
        "pointer and kill switch check (one partition), then the durable write with \
         the user's and organization's budget checks"
    );
    // Within the interval, an allow is one request: the write.
    let before = stack.emu.stack_dynamodb_calls(&stack.name).len();
    assert_eq!(stack.authorize("agent-support-1", &alice, &ask).status, 200);
    let ops: Vec<String> = stack.emu.stack_dynamodb_calls(&stack.name)[before..]
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(ops, ["TransactWriteItems"]);

    // An idempotent allow is one write too; its repeat answers the first decision.
    std::thread::sleep(REFRESH + Duration::from_millis(200));
    let keyed =
        json!({"tool_id": "search_kb", "arguments": {"query": "x"}, "idempotency_key": "k-1"});
    let before = stack.emu.stack_dynamodb_calls(&stack.name).len();
    let first = stack.authorize("agent-support-1", &alice, &keyed);
    let ops: Vec<String> = stack.emu.stack_dynamodb_calls(&stack.name)[before..]
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(ops, ["Query", "TransactWriteItems"]);
    let repeat = stack.authorize("agent-support-1", &alice, &keyed);
    assert_eq!(repeat.json["decision_id"], first.json["decision_id"]);

    // The record is durable and the agent can read it back.
    let id = answer.json["decision_id"].as_str().expect("an id");
    let records = stack.decision_items();
    let record = records
        .iter()
        .find(|r| r["decision_id"] == id)
        .expect("the allow is recorded");
    assert_eq!(record["tool_id"], "search_kb");
    assert_eq!(record["user_id"], "alice");
    let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/agent-support-1/s");
    let read = stack.http(
        "authorize",
        "GET",
        &format!("/v1/decisions/{id}"),
        Some(&arn),
        &[],
        "",
    );
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json["decision_id"], id);
    let other = format!("arn:aws:sts::{ACCOUNT}:assumed-role/agent-ops-1/s");
    let hidden = stack.http(
        "authorize",
        "GET",
        &format!("/v1/decisions/{id}"),
        Some(&other),
        &[],
        "",
    );
    assert_eq!(hidden.status, 404, "another agent's decision is not found");
    // The stream reaches decision-log and denial-metrics; an allow is no denial.
    assert!(stack.pump_stream() >= 4);
}

#[test]
fn a_denial_and_a_risky_attempt_become_metrics() {
    let stack = Stack::new("deny", &example_policies());
    let alice = stack.user_token("alice", &["support_agent"]);
    let denied = stack.authorize(
        "agent-support-1",
        &alice,
        &json!({"tool_id": "search_logs", "arguments": {"query": "timeout"}}),
    );
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(denied.json["reasons"][0]["code"], "tool_not_granted");
    let risky = stack.authorize(
        "agent-support-1",
        &alice,
        &json!({"tool_id": "search_kb", "requested_risk": "critical", "arguments": {"query": "x"}}),
    );
    assert_eq!(risky.status, 403, "{}", risky.body);
    assert!(risky.body.contains("risk_exceeds_policy"));
    assert_eq!(stack.pump_stream(), 2);
    assert_eq!(
        stack.metric_sum(
            "PolicyDenied",
            &[("Environment", "dev"), ("Reason", "tool_not_granted")]
        ),
        1.0
    );
    assert_eq!(
        stack.metric_sum("RiskyAttempt", &[("Environment", "dev")]),
        1.0
    );
    assert!(stack.metric_sum("PolicyDenied", &[("Environment", "dev")]) >= 2.0);
}

#[test]
fn the_agent_is_the_iam_principal_never_the_body() {
    let stack = Stack::new("identity", &example_policies());
    let alice = stack.user_token("alice", &["support_agent"]);
    let ask = json!({"tool_id": "search_kb", "arguments": {"query": "x"}});
    // A principal no agent runs as is an unknown agent, and that deny is recorded.
    let stranger = stack.authorize("some-other-role", &alice, &ask);
    assert_eq!(stranger.status, 403, "{}", stranger.body);
    assert_eq!(stranger.json["reasons"][0]["code"], "unknown_agent");
    assert!(stack
        .decision_items()
        .iter()
        .any(|r| r["decision_id"] == stranger.json["decision_id"]));
    // No IAM context: refused before anything is decided.
    let anonymous = stack.http(
        "authorize",
        "POST",
        "/v1/authorize",
        None,
        &[
            ("content-type", "application/json"),
            ("x-on-behalf-of", &alice),
        ],
        &ask.to_string(),
    );
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json["error"]["code"], "missing_credentials");
    // Naming another agent in the body is refused.
    let spoof = stack.authorize(
        "agent-support-1",
        &alice,
        &json!({"tool_id": "search_logs", "agent_id": "agent-ops-1", "arguments": {"query": "x"}}),
    );
    assert_eq!(spoof.status, 400);
    assert_eq!(spoof.json["error"]["code"], "unknown_field");
    // A user token with a broken signature, or for another audience, is refused.
    let mut tampered = stack.user_token("mallory", &["support_agent"]);
    tampered.push('x');
    let forged = stack.authorize("agent-support-1", &tampered, &ask);
    assert_eq!(forged.status, 401);
    assert_eq!(forged.json["error"]["code"], "invalid_user_token");
    let elsewhere = stack.user_token_for("another-service", "mallory", &["support_agent"]);
    let refused = stack.authorize("agent-support-1", &elsewhere, &ask);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.json["error"]["code"], "invalid_user_token");
    assert!(refused.body.contains("issued by or for someone else"));
}

#[test]
fn an_approved_transfer_succeeds_and_the_approval_is_recorded() {
    let stack = Stack::new("approve", &example_policies());
    let (approval_id, review_id) = pending_transfer(&stack);
    let page = review_page(&stack, &review_id);
    assert_eq!(page.status, 200);
    // What is approved: the parties, the tool and the arguments themselves.
    for expected in [
        "agent-treasury-1",
        "transfer_funds",
        "tom",
        "250.0",
        "DE89370400440532013000",
        "EUR",
        "supplier invoice INV-2291",
        "unverified",
    ] {
        assert!(
            page.body.contains(expected),
            "the page shows {expected}: {}",
            page.body
        );
    }
    assert!(page
        .body
        .contains(&format!("action=\"{review_id}/approve\"")));
    // Two approvers open the page; the first answer decides.
    let bobs_page = open_page(&stack, &review_id).expect("the page");
    // Refused: no token, a token outside the group, the user the agent acts
    // for, a post without the page's CSRF value.
    let alice = stack.approver_token("alice", &["treasury-approvers"]);
    let opened = open_page(&stack, &review_id).expect("the page");
    assert_eq!(
        post_answer(&stack, &review_id, &opened, "approve", "", "").status,
        401
    );
    let outsider = stack.approver_token("olga", &["privacy-approvers"]);
    assert_eq!(
        post_answer(&stack, &review_id, &opened, "approve", &outsider, "").status,
        403
    );
    let tom_approver = stack.approver_token("tom", &["treasury-approvers"]);
    let own = post_answer(&stack, &review_id, &opened, "approve", &tom_approver, "");
    assert_eq!(own.status, 403);
    assert!(own.body.contains("someone else must answer"));
    let forged = OpenedPage {
        csrf: "0".repeat(64),
        cookie: opened.cookie.clone(),
    };
    assert_eq!(
        post_answer(&stack, &review_id, &forged, "approve", &alice, "").status,
        403
    );
    let approved = post_answer(
        &stack,
        &review_id,
        &opened,
        "approve",
        &alice,
        "invoice checked",
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    let (status, error) = stack.wait_for_execution(&approval_id, Duration::from_secs(30));
    assert_eq!((status.as_str(), error), ("SUCCEEDED", None));
    let outcome = outcome_of(&stack, &approval_id);
    assert_eq!(outcome["decision"], "allow");
    assert_eq!(outcome["reasons"][0]["code"], "approval_granted");
    assert_eq!(outcome["approval"]["approver"], "alice");
    assert_eq!(outcome["approval"]["comment"], "invoice checked");
    assert_eq!(
        poll(&stack, "agent-treasury-1", &approval_id).json["status"],
        "granted"
    );
    assert_eq!(poll(&stack, "agent-support-1", &approval_id).status, 404);
    // The approved call itself: one grant, used once, within two DynamoDB requests.
    let tom = stack.user_token("tom", &["treasury_operator"]);
    let mut call = transfer(250.0);
    call["approval_id"] = json!(approval_id);
    let before = stack.emu.stack_dynamodb_calls(&stack.name).len();
    let used = stack.authorize("agent-treasury-1", &tom, &call);
    let calls = stack.emu.stack_dynamodb_calls(&stack.name).len() - before;
    assert_eq!(used.status, 200, "{}", used.body);
    assert_eq!(used.json["reasons"][0]["code"], "approved_call");
    assert!(
        calls <= 2,
        "the approved call made {calls} DynamoDB requests"
    );
    let again = stack.authorize("agent-treasury-1", &tom, &call);
    assert_eq!(again.status, 403, "{}", again.body);
    assert_eq!(again.json["reasons"][0]["code"], "grant_already_used");
    call["arguments"]["amount"] = json!(300.0);
    let other = stack.authorize("agent-treasury-1", &tom, &call);
    assert_eq!(other.json["reasons"][0]["code"], "grant_arguments_mismatch");
    // A second click sees the outcome; it decides nothing.
    let bob = stack.approver_token("bob", &["treasury-approvers"]);
    let again = post_answer(&stack, &review_id, &bobs_page, "reject", &bob, "");
    assert_eq!(again.status, 409);
    assert!(again.body.contains("already approved"));
}

#[test]
fn a_rejected_transfer_fails_is_recorded_and_counted() {
    let stack = Stack::new("reject", &example_policies());
    let (approval_id, review_id) = pending_transfer(&stack);
    let carol = stack.approver_token("carol", &["treasury-approvers"]);
    let rejected = answer(&stack, &review_id, "reject", &carol, "unknown supplier");
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    let (status, error) = stack.wait_for_execution(&approval_id, Duration::from_secs(30));
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("ApprovalRejected"))
    );
    let outcome = outcome_of(&stack, &approval_id);
    assert_eq!(outcome["decision"], "deny");
    assert_eq!(outcome["reasons"][0]["code"], "approval_rejected");
    assert_eq!(outcome["approval"]["approver"], "carol");
    assert_eq!(outcome["approval"]["comment"], "unknown supplier");
    assert_eq!(
        poll(&stack, "agent-treasury-1", &approval_id).json["status"],
        "rejected"
    );
    assert_eq!(
        stack.metric_sum(
            "PolicyDenied",
            &[("Environment", "dev"), ("Reason", "approval_rejected")]
        ),
        1.0
    );
    // The stream delivers the outcome record too, and it is not counted twice;
    // it counts as an approval's outcome, and the pending decision as a request.
    stack.pump_stream();
    assert_eq!(
        stack.metric_sum(
            "PolicyDenied",
            &[("Environment", "dev"), ("Reason", "approval_rejected")]
        ),
        1.0
    );
    for (outcome, n) in [("requested", 1.0), ("rejected", 1.0), ("approved", 0.0)] {
        assert_eq!(
            stack.metric_sum("Approvals", &[("Environment", "dev"), ("Outcome", outcome)]),
            n,
            "Approvals {outcome}"
        );
    }
}

#[test]
fn an_unanswered_transfer_expires_is_recorded_and_counted() {
    let policies = edited_policies(|r| {
        r.replace(
            "approval: { approver_group: treasury-approvers, timeout_seconds: 1800 }",
            "approval: { approver_group: treasury-approvers, timeout_seconds: 2 }",
        )
    });
    let stack = Stack::new("expire", policies.path());
    let (approval_id, review_id) = pending_transfer(&stack);
    let (status, error) = stack.wait_for_execution(&approval_id, Duration::from_secs(30));
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("ApprovalExpired"))
    );
    let outcome = outcome_of(&stack, &approval_id);
    assert_eq!(outcome["decision"], "deny");
    assert_eq!(outcome["reasons"][0]["code"], "approval_expired");
    assert_eq!(
        poll(&stack, "agent-treasury-1", &approval_id).json["status"],
        "expired"
    );
    assert_eq!(
        stack.metric_sum(
            "PolicyDenied",
            &[("Environment", "dev"), ("Reason", "approval_expired")]
        ),
        1.0
    );
    stack.pump_stream();
    assert_eq!(
        stack.metric_sum(
            "Approvals",
            &[("Environment", "dev"), ("Outcome", "expired")]
        ),
        1.0
    );
    // A late visit finds the approval closed: no forms to answer.
    let late = review_page(&stack, &review_id);
    assert_eq!(late.status, 200, "{}", late.body);
    assert!(late.body.contains("expired") && !late.body.contains("<form"));
}

#[test]
fn a_pushed_version_decides_within_the_refresh_interval() {
    let stack = Stack::new("push", &example_policies());
    let alice = stack.user_token("alice", &["support_agent"]);
    let ask = json!({"tool_id": "get_ticket", "arguments": {"ticket_id": "T-1"}});
    let first = stack.authorize("agent-support-1", &alice, &ask);
    assert_eq!(first.status, 200, "{}", first.body);
    let v1 = first.json["policy_version"]
        .as_str()
        .expect("a version")
        .to_owned();

    // Version 2 revokes the support agent's grant for tickets, with a test
    // case that says so in place of the example's cases.
    let revoked = edited_policies(|r| r.replacen("      - tool: get_ticket\n", "", 1));
    let cases = revoked.path().join("tests");
    std::fs::remove_dir_all(&cases).expect("remove the example cases");
    std::fs::create_dir(&cases).expect("tests dir");
    std::fs::write(
        cases.join("revoked.yaml"),
        "environment: dev\ncases:\n  - name: the support agent no longer reads tickets\n    agent: agent-support-1\n    user: alice\n    roles: [support_agent]\n    tool: get_ticket\n    arguments: { ticket_id: \"T-1\" }\n    expect: deny\n    reason: tool_not_granted\n",
    )
    .expect("write the case");
    let v2 = stack.push(revoked.path(), "revoke get_ticket from agent-support-1");
    assert_ne!(v1, v2);
    std::thread::sleep(REFRESH + Duration::from_millis(200));
    let second = stack.authorize("agent-support-1", &alice, &ask);
    assert_eq!(second.status, 403, "{}", second.body);
    assert_eq!(second.json["policy_version"], v2.as_str());
    assert_eq!(second.json["reasons"][0]["code"], "tool_not_granted");

    // The seed's tool-policy table holds the active version's grants.
    let rows = stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .scan()
                .table_name(table(&stack.name, "tool-policy"))
                .send(),
        )
        .expect("scan tool-policy")
        .items
        .unwrap_or_default();
    let support: Vec<String> = rows
        .iter()
        .filter(|r| r["agent_id"].as_s().is_ok_and(|a| a == "agent-support-1"))
        .map(|r| r["tool_id"].as_s().expect("tool").clone())
        .collect();
    assert_eq!(support, ["search_kb"]);
    assert!(rows
        .iter()
        .all(|r| r["policy_version"].as_s().is_ok_and(|v| *v == v2)));
}

#[test]
fn without_the_decision_log_every_call_is_denied() {
    let stack = Stack::new("nolog", &example_policies());
    let alice = stack.user_token("alice", &["support_agent"]);
    let ask = json!({"tool_id": "search_kb", "arguments": {"query": "x"}});
    assert_eq!(stack.authorize("agent-support-1", &alice, &ask).status, 200);
    let decisions = table(&stack.name, "decisions");
    stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .delete_table()
                .table_name(&decisions)
                .send(),
        )
        .expect("delete the decisions table");
    // The policy allows the call; the missing durable record denies it.
    let answer = stack.authorize("agent-support-1", &alice, &ask);
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json["decision"], "deny");
    assert_eq!(answer.json["error"]["code"], "decision_not_recorded");
    assert_eq!(answer.json["reasons"][0]["code"], "decision_not_recorded");
}

#[test]
fn a_failing_workflow_step_is_retried_then_closed_as_a_recorded_denial() {
    let stack = Stack::new("wffail", &example_policies());
    // decision-log fails its first four invocations: the first step and its
    // three retries.
    stack.emu.fail_next(
        &stack.name,
        "decision-log",
        4,
        governance::handlers::ErrorType::StoreUnavailable,
    );
    let tom = stack.user_token("tom", &["treasury_operator"]);
    let started = std::time::Instant::now();
    let answer = stack.authorize("agent-treasury-1", &tom, &transfer(250.0));
    assert_eq!(answer.status, 202, "{}", answer.body);
    let approval_id = answer.json["approval_id"]
        .as_str()
        .expect("an approval id")
        .to_owned();
    let (status, error) = stack.wait_for_execution(&approval_id, Duration::from_secs(60));
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("ApprovalFailed"))
    );
    // Three retries wait 1 + 2 + 4 seconds before the Catch.
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "the step was retried"
    );
    let outcome = outcome_of(&stack, &approval_id);
    assert_eq!(outcome["decision"], "deny");
    assert_eq!(outcome["reasons"][0]["code"], "approval_failed");
    assert_eq!(
        outcome["approval"]["comment"],
        "workflow error `StoreUnavailable`"
    );
    // Nobody was asked to approve a call the workflow could not keep.
    assert!(stack.emu.sns_messages(&stack.name).is_empty());
    assert_eq!(
        poll(&stack, "agent-treasury-1", &approval_id).json["status"],
        "failed"
    );
    assert_eq!(
        stack.metric_sum(
            "PolicyDenied",
            &[("Environment", "dev"), ("Reason", "approval_failed")]
        ),
        1.0
    );
}

/// An execution stopped while it waits for approvers: the answer cannot
/// resume it, and no grant is ever usable, since nothing records it.
///
/// moto 5.2.5 still accepts `SendTaskSuccess` for a stopped execution whose
/// waiting step has not woken (AWS answers `TaskDoesNotExist`, which fails
/// the approval with its record); the execution then ends ABORTED without
/// RecordApproved. Either way the approval stays short of `granted`.
/// The pending transfer's approval, presented with the same call, grants
/// nothing: the workflow never recorded it as granted.
fn assert_grant_not_approved(stack: &Stack, approval_id: &str) {
    let tom = stack.user_token("tom", &["treasury_operator"]);
    let mut call = transfer(250.0);
    call["approval_id"] = json!(approval_id);
    let used = stack.authorize("agent-treasury-1", &tom, &call);
    assert_eq!(used.status, 403, "{}", used.body);
    assert_eq!(used.json["reasons"][0]["code"], "grant_not_approved");
}

#[test]
fn an_answer_to_a_stopped_execution_grants_nothing() {
    let stack = Stack::new("stopped", &example_policies());
    let (approval_id, review_id) = pending_transfer(&stack);
    let arn = format!(
        "arn:aws:states:{REGION}:{ACCOUNT}:execution:{}-approval:{approval_id}",
        stack.name
    );
    stack
        .emu
        .block_on(
            stack
                .clients
                .sfn
                .stop_execution()
                .execution_arn(&arn)
                .cause("stopped by an operator")
                .send(),
        )
        .expect("stop the execution");

    let alice = stack.approver_token("alice", &["treasury-approvers"]);
    let answered = answer(&stack, &review_id, "approve", &alice, "invoice checked");
    assert!(
        !answered.body.contains("may now make exactly"),
        "the page does not say the call may be made: {}",
        answered.body
    );
    assert_no_internal_names(&answered);
    let (status, _) = stack.wait_for_execution(&approval_id, Duration::from_secs(20));
    assert_eq!(status, "ABORTED");
    let polled = poll(&stack, "agent-treasury-1", &approval_id).json;
    assert!(
        polled["status"] == "approved" || polled["status"] == "failed",
        "{polled}"
    );
    assert!(!stack
        .decision_items()
        .iter()
        .any(|r| r["approval"]["approval_id"] == approval_id
            && r["reasons"][0]["code"] == "approval_granted"));

    assert_grant_not_approved(&stack, &approval_id);
}

/// The error names of Step Functions and of this code base, which an
/// approver must never be shown: the page says what happened instead.
const INTERNAL_NAMES: [&str; 7] = [
    "InvalidToken",
    "TaskDoesNotExist",
    "TaskTimedOut",
    "NotWaiting",
    "Unavailable",
    "CallbackError",
    "StoreError",
];

fn assert_no_internal_names(page: &HttpAnswer) {
    for name in INTERNAL_NAMES {
        assert!(
            !page.body.contains(name),
            "the approver's page names `{name}`: {}",
            page.body
        );
    }
}

#[test]
fn a_workflow_that_refuses_the_answer_fails_the_approval_in_plain_words() {
    use governance::adapters::aws::aws_sdk_dynamodb::types::AttributeValue;
    let stack = Stack::new("badtoken", &example_policies());
    let (approval_id, review_id) = pending_transfer(&stack);
    // A token Step Functions does not know: it answers `InvalidToken`, as
    // it does for a step that no longer exists.
    stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .update_item()
                .table_name(table(&stack.name, "approvals"))
                .key("approval_id", AttributeValue::S(approval_id.clone()))
                .update_expression("SET task_token = :t")
                .expression_attribute_values(
                    ":t",
                    AttributeValue::S("AAAAKgAAAAIAAAAAAAAAAQ-not-a-waiting-step".into()),
                )
                .send(),
        )
        .expect("replace the task token");

    let alice = stack.approver_token("alice", &["treasury-approvers"]);
    let answered = answer(&stack, &review_id, "approve", &alice, "invoice checked");
    assert_eq!(answered.status, 409, "{}", answered.body);
    assert!(
        answered.body.contains("Not delivered")
            && answered
                .body
                .contains("the approval workflow was no longer waiting"),
        "the page says in plain words that the call is denied: {}",
        answered.body
    );
    assert_no_internal_names(&answered);

    // The approval failed, with its record, and grants nothing.
    let polled = poll(&stack, "agent-treasury-1", &approval_id).json;
    assert_eq!(polled["status"], "failed", "{polled}");
    let failed = stack
        .decision_items()
        .into_iter()
        .find(|r| {
            r["approval"]["approval_id"] == approval_id
                && r["reasons"][0]["code"] == "approval_failed"
        })
        .expect("the failure is recorded");
    assert_eq!(failed["approval"]["approver"], "alice", "{failed}");
    assert_grant_not_approved(&stack, &approval_id);

    // Opened again, the page shows the outcome, still in plain words.
    let again = review_page(&stack, &review_id);
    assert_no_internal_names(&again);
    assert!(!again.body.contains("Approve this call?"), "{}", again.body);
}

#[test]
fn without_the_approvals_table_a_pending_call_is_denied_and_closed() {
    let stack = Stack::new("noappr", &example_policies());
    stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .delete_table()
                .table_name(table(&stack.name, "approvals"))
                .send(),
        )
        .expect("delete the approvals table");
    let tom = stack.user_token("tom", &["treasury_operator"]);
    let answer = stack.authorize("agent-treasury-1", &tom, &transfer(250.0));
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json["decision"], "deny");
    assert_eq!(answer.json["error"]["code"], "decision_not_recorded");
    // The log agrees: the pending record is closed as failed.
    let records = stack.decision_items();
    let closed = records
        .iter()
        .find(|r| r["reasons"][0]["code"] == "approval_failed")
        .expect("the pending decision is closed");
    assert!(closed["approval"]["comment"]
        .as_str()
        .is_some_and(|c| c.contains("did not start")));
}

/// The AWS deployment on the emulator as a host of the shared approval scenarios.
struct Aws(Stack);

impl ApprovalHost for Aws {
    fn authorize(&self, agent: &str, user: &str, roles: &[&str], body: &Value) -> (u16, Value) {
        let answer = self
            .0
            .authorize(agent, &self.0.user_token(user, roles), body);
        (u16::try_from(answer.status).unwrap_or(0), answer.json)
    }

    fn poll(&self, agent: &str, approval_id: &str) -> (u16, Value) {
        let answer = poll(&self.0, agent, approval_id);
        (u16::try_from(answer.status).unwrap_or(0), answer.json)
    }

    fn notifications(&self) -> usize {
        self.0.emu.sns_messages(&self.0.name).len()
    }

    fn review_id(&self, after: usize) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.0.emu.sns_messages(&self.0.name);
            if let Some(m) = messages.get(after..).and_then(<[Value]>::last) {
                let text = m["Message"].as_str().unwrap_or_default();
                let prefix = format!("https://{}.approvals.test/v1/reviews/", self.0.name);
                return text
                    .lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .expect("the message carries the review link")
                    .to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "no new notification");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answer(
        &self,
        review_id: &str,
        verb: &str,
        approver: &str,
        groups: &[&str],
        comment: &str,
    ) -> (u16, String) {
        let token = self.0.approver_token(approver, groups);
        let page = answer(&self.0, review_id, verb, &token, comment);
        (u16::try_from(page.status).unwrap_or(0), page.body)
    }

    fn page(&self, review_id: &str) -> (u16, String) {
        let page = review_page(&self.0, review_id);
        (u16::try_from(page.status).unwrap_or(0), page.body)
    }

    fn open(&self, review_id: &str) -> Option<(String, String)> {
        open_page(&self.0, review_id)
            .ok()
            .map(|p| (p.csrf, p.cookie))
    }

    fn answer_from(
        &self,
        review_id: &str,
        opened: &(String, String),
        verb: &str,
        approver: &str,
        groups: &[&str],
    ) -> (u16, String) {
        let token = self.0.approver_token(approver, groups);
        let page = OpenedPage {
            csrf: opened.0.clone(),
            cookie: opened.1.clone(),
        };
        let answer = post_answer(&self.0, review_id, &page, verb, &token, "");
        (u16::try_from(answer.status).unwrap_or(0), answer.body)
    }

    fn approval_records(&self, approval_id: &str) -> Vec<Value> {
        self.0
            .decision_items()
            .into_iter()
            .filter(|r| r["approval"]["approval_id"] == approval_id)
            .collect()
    }
}

#[test]
fn suite_approved_calls_are_allowed_once() {
    approval_suite::approved_calls_are_allowed_once(&Aws(Stack::new(
        "s-approve",
        &example_policies(),
    )));
}

#[test]
fn suite_rejected_calls_are_denied() {
    approval_suite::rejected_calls_are_denied(&Aws(Stack::new("s-reject", &example_policies())));
}

#[test]
fn suite_personal_data_is_masked_for_approvers() {
    approval_suite::personal_data_is_masked_for_approvers(&Aws(Stack::new(
        "s-masked",
        &example_policies(),
    )));
}

#[test]
fn suite_only_other_members_of_the_group_may_answer() {
    approval_suite::only_other_members_of_the_group_may_answer(&Aws(Stack::new(
        "s-members",
        &example_policies(),
    )));
}

/// The decision table's stream lands in the evidence bucket: every record
/// chained in its agent's chain and the push's control-plane events in the
/// control chain, in segments that Object Lock retains, and a later batch
/// links on after the first. The same records count in
/// CloudWatch by result, with their latency.
#[test]
fn every_record_lands_chained_in_the_locked_evidence_bucket() {
    use governance::audit::{ChainEntry, Verifier};

    let stack = Stack::new("evidence", &example_policies());
    let alice = stack.user_token("alice", &["support_agent"]);
    let sam = stack.user_token("sam", &["sre"]);
    let ask = |role: &str, user: &str, tool: &str, args: Value| {
        stack.authorize(role, user, &json!({"tool_id": tool, "arguments": args}))
    };
    assert_eq!(
        ask(
            "agent-support-1",
            &alice,
            "search_kb",
            json!({"query": "vpn"})
        )
        .status,
        200
    );
    assert_eq!(
        ask(
            "agent-support-1",
            &alice,
            "search_logs",
            json!({"query": "x"})
        )
        .status,
        403
    );
    assert_eq!(
        ask("agent-ops-1", &sam, "search_logs", json!({"query": "5xx"})).status,
        200
    );
    assert_eq!(stack.pump_stream(), 3);
    assert_eq!(
        ask(
            "agent-support-1",
            &alice,
            "search_kb",
            json!({"query": "sso"})
        )
        .status,
        200
    );
    assert_eq!(stack.pump_stream(), 1);

    let bucket = stack.evidence_bucket();
    let s3 = &stack.clients.s3;
    let keys: Vec<String> = stack
        .emu
        .block_on(
            s3.list_objects_v2()
                .bucket(&bucket)
                .prefix("chains/")
                .send(),
        )
        .expect("list evidence")
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.key)
        .collect();
    assert_eq!(
        keys.len(),
        4,
        "one segment per chain per batch, the push's control events included: {keys:?}"
    );
    let mut entries: Vec<ChainEntry> = Vec::new();
    let mut copied = String::new();
    for key in &keys {
        let object = stack
            .emu
            .block_on(s3.get_object().bucket(&bucket).key(key).send())
            .expect("get segment");
        let body = stack
            .emu
            .block_on(object.body.collect())
            .expect("body")
            .into_bytes();
        let text = String::from_utf8(body.to_vec()).expect("UTF-8");
        copied.push_str(&text);
        for line in text.lines() {
            entries.push(governance::audit::export::parse_jsonl(line).expect("a chain entry"));
        }
        // The bucket's default retention locks every segment as it lands.
        let head = stack
            .emu
            .block_on(s3.head_object().bucket(&bucket).key(key).send())
            .expect("head segment");
        assert_eq!(
            head.object_lock_mode
                .map(|m| m.as_str().to_owned())
                .as_deref(),
            Some("GOVERNANCE"),
            "{key} is locked"
        );
        assert!(
            head.object_lock_retain_until_date.is_some(),
            "{key} has a retention date"
        );
    }
    entries.sort_by(|a, b| (&a.partition, a.seq).cmp(&(&b.partition, b.seq)));
    let mut verifier = Verifier::new(None);
    for e in &entries {
        verifier.entry(e);
    }
    let report = verifier.finish();
    assert!(report.is_intact(), "{:?}", report.findings);
    assert_eq!(
        report.records, 6,
        "four decisions and the push's two control events"
    );
    let control: Vec<Value> = entries
        .iter()
        .filter(|e| e.partition == "control")
        .map(|e| serde_json::from_str(&e.body).expect("a control event"))
        .collect();
    let actions: Vec<&str> = control
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["policy_published", "policy_activated"]);
    assert!(
        control[0]["changes"].to_string().contains("registry.yaml"),
        "the first version's publication lists what it adds"
    );
    let support = governance::audit::partition_of("agent-support-1");
    assert_eq!(
        report.chains.get(&support).map(|c| c.head_seq),
        Some(3),
        "the second batch linked on after the first"
    );

    // What an auditor does with a copy of the bucket (`aws s3 sync`).
    let copy = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(copy.path(), &copied).expect("write the copy");
    let out = crate::common::run_govctl(&[
        "audit",
        "verify",
        "--file",
        copy.path().to_str().expect("UTF-8 path"),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("OK"), "{said}");

    assert_eq!(
        stack.metric_sum("Decisions", &[("Environment", "dev"), ("Result", "allow")]),
        3.0
    );
    assert_eq!(
        stack.metric_sum("Decisions", &[("Environment", "dev"), ("Result", "deny")]),
        1.0
    );
}

/// The active pointer's version id, read from the policy versions table.
fn active_pointer(stack: &Stack) -> String {
    use governance::adapters::aws::aws_sdk_dynamodb::types::AttributeValue;
    let item = stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .get_item()
                .table_name(table(&stack.name, "policy-versions"))
                .key("pk", AttributeValue::S("active".into()))
                .key("sk", AttributeValue::S("pointer".into()))
                .consistent_read(true)
                .send(),
        )
        .expect("get the active pointer")
        .item
        .expect("a pointer");
    item["version_id"].as_s().expect("version_id").clone()
}

/// Points the active pointer at `version_id` directly, as nothing but a
/// broken or hostile writer would.
fn force_pointer(stack: &Stack, version_id: &str) {
    use governance::adapters::aws::aws_sdk_dynamodb::types::AttributeValue;
    stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .put_item()
                .table_name(table(&stack.name, "policy-versions"))
                .item("pk", AttributeValue::S("active".into()))
                .item("sk", AttributeValue::S("pointer".into()))
                .item("version_id", AttributeValue::S(version_id.into()))
                .item("activated_by", AttributeValue::S("test".into()))
                .item(
                    "activated_at",
                    AttributeValue::S("2026-01-07T12:00:00.000Z".into()),
                )
                .send(),
        )
        .expect("put the active pointer");
}

#[test]
fn a_push_writes_each_change_in_one_transaction_with_its_control_event() {
    let stack = Stack::new("pushtx", &example_policies());
    let v1 = active_pointer(&stack);
    let calls = stack.emu.stack_dynamodb_calls(&stack.name);
    let versions = table(&stack.name, "policy-versions");
    let decisions = table(&stack.name, "decisions");
    let both = calls
        .iter()
        .filter(|c| {
            c.operation == "TransactWriteItems"
                && c.tables.contains(&versions)
                && c.tables.contains(&decisions)
        })
        .count();
    assert_eq!(
        both, 2,
        "publication and activation, each with its event: {calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.operation == "PutItem" && c.tables.contains(&decisions)),
        "no control event is written on its own: {calls:?}"
    );

    // The decisions table refuses the activation's event: the activation
    // does not happen either.
    stack.emu.refuse_dynamodb(&stack.name, "policy_activated");
    let out = stack.try_push(&example_policies(), "a second version");
    assert!(
        !out.status.success(),
        "the push reports the failure:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(active_pointer(&stack), v1, "the pointer did not move");
    let events = stack.decision_items();
    let activated: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "policy_activated")
        .collect();
    assert_eq!(activated.len(), 1, "{events:?}");
    assert_eq!(activated[0]["version_id"], v1.as_str());
    // The second version was published, and its publication recorded.
    let published: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "policy_published")
        .collect();
    assert_eq!(published.len(), 2, "{events:?}");
    // The one activation in the history is the first.
    let history = stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .query()
                .table_name(&versions)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(
                    ":pk",
                    governance::adapters::aws::aws_sdk_dynamodb::types::AttributeValue::S(
                        "activations".into(),
                    ),
                )
                .send(),
        )
        .expect("query the activations")
        .items
        .unwrap_or_default();
    assert_eq!(history.len(), 1);
}

#[test]
fn a_version_that_cannot_be_loaded_goes_stale_and_every_call_is_denied() {
    let max = Duration::from_secs(3);
    let stack = Stack::with_options(
        "stale",
        &example_policies(),
        StackOptions {
            max_staleness: max,
            ..StackOptions::default()
        },
    );
    let alice = stack.user_token("alice", &["support_agent"]);
    let ask = json!({"tool_id": "search_kb", "arguments": {"query": "x"}});
    let first = stack.authorize("agent-support-1", &alice, &ask);
    assert_eq!(first.status, 200, "{}", first.body);
    let v1 = active_pointer(&stack);

    // A version is activated that this instance cannot load.
    force_pointer(&stack, &"f".repeat(64));
    let since = std::time::Instant::now();
    std::thread::sleep(REFRESH + Duration::from_millis(200));
    // Within the bound the previous version still decides.
    let within = stack.authorize("agent-support-1", &alice, &ask);
    assert_eq!(within.status, 200, "{}", within.body);
    assert_eq!(within.json["policy_version"], v1.as_str());

    // Past it, every call is denied, and recorded like any decision.
    std::thread::sleep((max + Duration::from_millis(500)).saturating_sub(since.elapsed()));
    let stale = stack.authorize("agent-support-1", &alice, &ask);
    assert_eq!(stale.status, 403, "{}", stale.body);
    assert_eq!(stale.json["decision"], "deny");
    assert_eq!(stale.json["reasons"][0]["code"], "policy_stale");
    assert_eq!(stale.json["policy_version"], v1.as_str());
    let id = stale.json["decision_id"].as_str().expect("a decision id");
    assert!(stack
        .decision_items()
        .iter()
        .any(|r| r["decision_id"] == id && r["reasons"][0]["code"] == "policy_stale"));
    stack.pump_stream();
    assert_eq!(
        stack.metric_sum("PolicyStale", &[("Environment", "dev")]),
        1.0
    );

    // Once the pointer names a loadable version again, calls are decided again.
    force_pointer(&stack, &v1);
    std::thread::sleep(REFRESH + Duration::from_millis(200));
    let back = stack.authorize("agent-support-1", &alice, &ask);
    assert_eq!(back.status, 200, "{}", back.body);
}

#[test]
fn cognito_id_and_access_tokens_name_the_user_and_their_groups() {
    let pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AgGov0001";
    let client = "5q2dmh0e6rnl4k1iq3ctfnk2a0";
    let stack = Stack::with_options(
        "cognito",
        &example_policies(),
        StackOptions {
            oidc_issuer: pool.into(),
            oidc_audience: client.into(),
            claims: governance::auth::ClaimMapping {
                user_id: "sub".into(),
                roles: "cognito:groups".into(),
                organization: "custom:org".into(),
            },
            ..StackOptions::default()
        },
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = |token_use: &str, client_claim: &str, client_id: &str| {
        let mut claims = json!({
            "iss": pool, "sub": "0c8e4f2a-alice", "token_use": token_use,
            "exp": now + 600, "iat": now, "auth_time": now,
            "cognito:groups": ["support_agent"], "custom:org": "meridian-capital",
        });
        claims[client_claim] = json!(client_id);
        stack.emu.keys.mint(&claims).expect("mint a Cognito token")
    };
    let ask = json!({"tool_id": "search_kb", "arguments": {"query": "x"}});
    for (token_use, client_claim) in [("id", "aud"), ("access", "client_id")] {
        let answer = stack.authorize(
            "agent-support-1",
            &token(token_use, client_claim, client),
            &ask,
        );
        assert_eq!(answer.status, 200, "{token_use}: {}", answer.body);
        let id = answer.json["decision_id"].as_str().expect("a decision id");
        let record = stack
            .decision_items()
            .into_iter()
            .find(|r| r["decision_id"] == id)
            .expect("the decision is recorded");
        assert_eq!(record["user_id"], "0c8e4f2a-alice");
        assert_eq!(record["user_roles"], json!(["support_agent"]));
        let other = stack.authorize(
            "agent-support-1",
            &token(token_use, client_claim, "another-app-client"),
            &ask,
        );
        assert_eq!(other.status, 401, "{}", other.body);
        assert_eq!(other.json["error"]["code"], "invalid_user_token");
    }
}

/// The SAM template as JSON, its short-form intrinsics (`!Ref X`) turned
/// into their long form (`{"Ref": "X"}`), read with the PyYAML that
/// cfn-lint brings into `.venv`.
fn template() -> Value {
    const READ: &str = r#"
import json, sys, yaml
class Loader(yaml.SafeLoader):
    pass
def intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix in ("Ref", "Condition") else "Fn::" + suffix: value}
Loader.add_multi_constructor("!", intrinsic)
print(json.dumps(yaml.load(open(sys.argv[1]), Loader=Loader)))
"#;
    let root = crate::emulator::workspace_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .args(["-c", READ])
        .arg(root.join("infra/template.yaml"))
        .output()
        .expect("run .venv/bin/python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the template as JSON")
}

/// A parameter's default, as a number.
fn default_of(template: &Value, reference: &Value) -> f64 {
    let name = reference["Ref"].as_str().expect("a parameter reference");
    template["Parameters"][name]["Default"]
        .as_f64()
        .unwrap_or_else(|| panic!("parameter {name} has a numeric default"))
}

#[test]
fn the_template_throttles_unauthenticated_routes_and_reserves_authorize_capacity() {
    let template = template();
    let resources = template["Resources"].as_object().expect("resources");
    let mut open = Vec::new();
    for (name, resource) in resources {
        let Some(events) = resource["Properties"]["Events"].as_object() else {
            continue;
        };
        for (event, e) in events {
            if e["Type"] != "HttpApi" || e["Properties"]["Auth"]["Authorizer"] != "NONE" {
                continue;
            }
            open.push(event.as_str());
            let settings = &e["Properties"]["RouteSettings"];
            let rate = default_of(&template, &settings["ThrottlingRateLimit"]);
            let burst = default_of(&template, &settings["ThrottlingBurstLimit"]);
            // The gateway's OAuth route carries agents' calls, authenticated
            // by the function: bounded, at an agent's pace.
            let most = if event == "OAuthMcp" { 1000.0 } else { 50.0 };
            assert!(
                (1.0..=most).contains(&rate) && (rate..=2.0 * most).contains(&burst),
                "{name}.{event}: rate {rate}/s, burst {burst}"
            );
        }
    }
    // The people's pages authenticate in the function (approver token or
    // session), and the gateway's OAuth route and its metadata are public
    // by the protocol; nothing else is open.
    open.sort_unstable();
    assert_eq!(
        open,
        [
            "Approve",
            "ChangeApprove",
            "ChangeReject",
            "ChangeReview",
            "Inbox",
            "InboxApproval",
            "InboxApprove",
            "InboxReject",
            "OAuthMcp",
            "OAuthProtectedResourceMetadata",
            "ProtectedResourceMetadata",
            "Reject",
            "Review",
            "SignIn",
            "SignInCallback",
            "SignOut",
        ]
    );
    let authorize = &resources["AuthorizeFunction"]["Properties"];
    assert!(default_of(&template, &authorize["ReservedConcurrentExecutions"]) >= 10.0);
}

#[test]
fn the_template_wires_staleness_claims_and_the_stale_policy_alarm() {
    let template = template();
    let resources = &template["Resources"];
    let env = &resources["AuthorizeFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        default_of(&template, &env["POLICY_MAX_STALENESS_SECONDS"]),
        60.0
    );
    for (variable, default) in [
        ("OIDC_USER_ID_CLAIM", "sub"),
        ("OIDC_ROLES_CLAIM", "roles"),
        ("OIDC_ORG_CLAIM", "org"),
    ] {
        let name = env[variable]["Ref"].as_str().expect(variable);
        assert_eq!(
            template["Parameters"][name]["Default"], default,
            "{variable}"
        );
    }
    let alarm = &resources["PolicyStaleAlarm"]["Properties"];
    assert_eq!(alarm["Namespace"], "AgentGovernance");
    assert_eq!(alarm["MetricName"], governance::metrics::POLICY_STALE);
    assert_eq!(alarm["Threshold"], 1);
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    assert_eq!(alarm["AlarmActions"][0]["Ref"], "AlertsTopic");
}

/// The evidence bucket cannot be forked, overwritten or cut unseen: objects
/// are created only under free keys, a batch delivered again is not chained
/// twice, every batch is sealed in a digest signed with the audit key, and
/// `govctl audit verify` holds a copy of the bucket to the signed digests,
/// to a digest the auditor kept and to the chain-head table.
#[test]
fn a_copy_of_the_evidence_bucket_is_held_to_signed_digests_and_the_chain_heads() {
    use governance::adapters::aws::evidence::S3Evidence;
    use governance::ports::AuditArchive;

    let stack = Stack::new("digests", &example_policies());
    let alice = stack.user_token("alice", &["support_agent"]);
    let ask = |query: &str| {
        stack.authorize(
            "agent-support-1",
            &alice,
            &json!({"tool_id": "search_kb", "arguments": {"query": query}}),
        )
    };
    assert_eq!(ask("vpn").status, 200);
    assert_eq!(ask("sso").status, 200);
    let batch = stack.stream_batch();
    let first = stack.deliver_to_decision_log(&batch);
    assert_eq!(first["evidence_segments"], 2, "{first}");
    assert_eq!(first["digest"], 1, "{first}");
    // The same batch again, as the stream redelivers after a failure.
    let again = stack.deliver_to_decision_log(&batch);
    assert_eq!(
        again["evidence_segments"], 0,
        "nothing is chained twice: {again}"
    );
    assert_eq!(ask("mfa").status, 200);
    let second = stack.deliver_to_decision_log(&stack.stream_batch());
    assert_eq!(second["digest"], 2, "{second}");

    let copy = tempfile::tempdir().expect("temp dir");
    let keys = stack.copy_evidence(copy.path());
    let chain_table = table(&stack.name, "audit-chain");
    let (code, said) = stack.verify_copy(copy.path(), &["--chain-table", &chain_table]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 digests (signatures checked"), "{said}");
    assert!(
        said.contains("5 records"),
        "three decisions, two control events: {said}"
    );

    // No writer can replace an object: the bucket honours If-None-Match.
    let archive = S3Evidence::new(
        stack.clients.s3.clone(),
        stack.clients.dynamodb.clone(),
        stack.evidence_bucket(),
        &chain_table,
    );
    let segment = keys
        .iter()
        .find(|k| k.starts_with("chains/"))
        .expect("a segment");
    assert!(
        !stack
            .emu
            .block_on(archive.put_segment(segment, b"forged".to_vec()))
            .expect("put"),
        "an existing segment is not replaced"
    );

    // A forked record in the copy: off the chain, its bytes nowhere on it.
    let support = governance::audit::partition_of("agent-support-1");
    let newest: Vec<governance::audit::ChainEntry> = std::fs::read_to_string(
        copy.path().join(
            keys.iter()
                .filter(|k| k.starts_with(&format!("chains/{support}/")))
                .max()
                .expect("the support chain"),
        ),
    )
    .expect("read")
    .lines()
    .map(|l| governance::audit::export::parse_jsonl(l).expect("an entry"))
    .collect();
    let head = newest.last().expect("a record");
    let before = newest.first().expect("a record");
    let forked = governance::audit::ChainEntry::link(
        &support,
        Some((before.seq - 1, &before.prev_hash)),
        head.body.replace("mfa", "nothing to see"),
    );
    let fork_file = copy.path().join("chains").join(&support).join("fork.jsonl");
    std::fs::write(
        &fork_file,
        governance::audit::export::jsonl(&forked).expect("a line") + "\n",
    )
    .expect("write");
    let (code, said) = stack.verify_copy(copy.path(), &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("forked"), "{said}");
    std::fs::remove_file(&fork_file).expect("remove");

    // The newest segment and the newest digest are cut (delete markers hide
    // their current versions): the chain-head table and a kept digest both
    // notice, though the rest of the copy is consistent.
    let kept_digest = std::fs::read_dir(copy.path().join("digests"))
        .expect("digests")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .max()
        .expect("a digest");
    let kept: Value =
        serde_json::from_str(std::fs::read_to_string(&kept_digest).expect("read").trim())
            .expect("a digest line");
    let kept_hash = kept["hash"].as_str().expect("a hash").to_owned();
    let newest_segment = keys
        .iter()
        .filter(|k| k.starts_with(&format!("chains/{support}/")))
        .max()
        .expect("the support chain")
        .clone();
    let newest_digest = keys
        .iter()
        .filter(|k| k.starts_with("digests/"))
        .max()
        .expect("a digest")
        .clone();
    for key in [&newest_segment, &newest_digest] {
        stack
            .emu
            .block_on(
                stack
                    .clients
                    .s3
                    .delete_object()
                    .bucket(stack.evidence_bucket())
                    .key(key)
                    .send(),
            )
            .expect("delete marker");
    }
    let cut = tempfile::tempdir().expect("temp dir");
    stack.copy_evidence(cut.path());
    let (code, said) = stack.verify_copy(cut.path(), &[]);
    assert_eq!(code, Some(0), "alone, the cut copy is consistent: {said}");
    let (code, said) = stack.verify_copy(cut.path(), &["--min-digest", &kept_hash]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("kept digest"), "{said}");
    let (code, said) = stack.verify_copy(cut.path(), &["--chain-table", &chain_table]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("the chain-head table"), "{said}");
}
