//! Human approval under `govctl serve`: the in-process workflow announces
//! each pending call on the terminal with an approver link, the approver
//! answers on the page, and the agent polls its approval.

use std::time::Duration;

use serde_json::{json, Value};

use crate::approval_suite::{self, transfer, ApprovalHost};
use crate::common::{poll, Reply, Server};

/// The review id of the newest approver link the server printed.
fn review_id(server: &Server) -> String {
    poll(
        Duration::from_secs(10),
        "an approver link on the terminal",
        || {
            let log = server.stderr_log();
            log.rmatch_indices("/v1/reviews/")
                .next()
                .map(|(at, m)| log[at + m.len()..].chars().take(64).collect::<String>())
                .filter(|id| id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| "no link yet".to_owned())
        },
    )
}

/// An approver token minted by `govctl approver token`.
fn approver(server: &Server, id: &str, group: &str) -> String {
    server
        .govctl(&["approver", "token", id, "--group", group])
        .trim()
        .to_owned()
}

/// Opens the review page as a browser does: its CSRF form value and cookie.
fn open_page(server: &Server, review_id: &str) -> (String, String) {
    let page = reqwest::blocking::Client::new()
        .get(server.url(&format!("/v1/reviews/{review_id}")))
        .send()
        .expect("GET the review page");
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("the page sets the CSRF cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let body = page.text().unwrap_or_default();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form carries the CSRF value")
        .to_owned();
    (csrf, cookie)
}

/// Opens the page and answers with `token`.
fn answer(
    server: &Server,
    review_id: &str,
    verb: &str,
    token: &str,
    comment: &str,
) -> (u16, String) {
    let (csrf, cookie) = open_page(server, review_id);
    post(server, review_id, verb, &csrf, &cookie, token, comment)
}

fn post(
    server: &Server,
    review_id: &str,
    verb: &str,
    csrf: &str,
    cookie: &str,
    token: &str,
    comment: &str,
) -> (u16, String) {
    let response = reqwest::blocking::Client::new()
        .post(server.url(&format!("/v1/reviews/{review_id}/{verb}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(format!(
            "csrf={csrf}&approver_token={token}&comment={}",
            comment.replace(' ', "+")
        ))
        .send()
        .expect("POST the answer");
    (
        response.status().as_u16(),
        response.text().unwrap_or_default(),
    )
}

fn status_of(server: &Server, agent: &str, approval_id: &str) -> Reply {
    server.get(&format!("/v1/approvals/{approval_id}"), Some(agent))
}

/// A pending transfer: the agent's token, its approval id, and the review id of the link.
fn pending(server: &Server) -> (String, String, String) {
    let agent = server.agent_token("agent-treasury-1");
    let tom = server.user_token("tom", &["treasury_operator"], None);
    let reply = server.authorize(&agent, &tom, &transfer(250.0));
    reply.expect_decision(
        202,
        "pending_approval",
        Some("approval_required"),
        "a transfer waits for a human",
    );
    let approval_id = reply.str("approval_id").to_owned();
    assert_eq!(
        reply.str("poll_url"),
        format!("/v1/approvals/{approval_id}")
    );
    let review = review_id(server);
    assert_ne!(
        review, approval_id,
        "the agent's id is not the approvers' link"
    );
    (agent, approval_id, review)
}

#[test]
fn an_approver_approves_on_the_page_and_the_agent_sees_it() {
    let server = Server::start();
    let (agent, approval_id, review) = pending(&server);
    let waiting = status_of(&server, &agent, &approval_id);
    waiting.expect_status(200, "the agent polls its approval");
    assert_eq!(waiting.str("status"), "pending");
    // Only the agent that asked sees it.
    let other = server.agent_token("agent-support-1");
    status_of(&server, &other, &approval_id).expect_error(404, "not_found", "another agent");
    // The agent's own id opens nothing.
    assert_eq!(
        server
            .get(&format!("/v1/reviews/{approval_id}"), None)
            .status,
        404
    );

    let page = server.get(&format!("/v1/reviews/{review}"), None);
    page.expect_status(200, "the review page");
    for shown in [
        "agent-treasury-1",
        "tom",
        "transfer_funds",
        "DE89370400440532013000",
        "250.0",
    ] {
        assert!(page.text.contains(shown), "the page shows {shown}: {page}");
    }
    // Refused: an approver outside the tool's group, the user the agent acts
    // for, an answer without the page's CSRF cookie, and no valid token.
    let (csrf, cookie) = open_page(&server, &review);
    let olga = approver(&server, "olga", "privacy-approvers");
    assert_eq!(
        post(&server, &review, "approve", &csrf, &cookie, &olga, "").0,
        403
    );
    let tom_approver = approver(&server, "tom", "treasury-approvers");
    assert_eq!(
        post(
            &server,
            &review,
            "approve",
            &csrf,
            &cookie,
            &tom_approver,
            ""
        )
        .0,
        403
    );
    let alice = approver(&server, "alice", "treasury-approvers");
    assert_eq!(
        post(
            &server,
            &review,
            "approve",
            &csrf,
            "agov_csrf=forged",
            &alice,
            ""
        )
        .0,
        403
    );
    assert_eq!(
        post(
            &server,
            &review,
            "approve",
            &csrf,
            &cookie,
            "not-a-token",
            ""
        )
        .0,
        401
    );
    let (status, body) = post(
        &server, &review, "approve", &csrf, &cookie, &alice, "checked",
    );
    assert_eq!(status, 200, "{body}");
    poll(
        Duration::from_secs(10),
        "the approval to be granted",
        || {
            let s = status_of(&server, &agent, &approval_id);
            (s.str("status") == "granted")
                .then_some(())
                .ok_or(s.to_string())
        },
    );
    // The outcome is a decision record of its own, naming the approver.
    let outcome: Value = poll(Duration::from_secs(10), "the outcome record", || {
        let db = server.db();
        db.query_row(
            "SELECT record FROM decisions WHERE json_extract(record, '$.approval.approval_id') = ?1 \
             AND json_extract(record, '$.approval.status') <> 'pending'",
            [&approval_id],
            |r| r.get::<_, String>(0),
        )
        .map_err(|e| e.to_string())
        .and_then(|j| serde_json::from_str(&j).map_err(|e| e.to_string()))
    });
    assert_eq!(outcome["reasons"][0]["code"], "approval_granted");
    assert_eq!(outcome["approval"]["approver"], "alice");
    // A second answer, from a page opened before the first, sees the first.
    let bob = approver(&server, "bob", "treasury-approvers");
    let (again, body) = post(&server, &review, "reject", &csrf, &cookie, &bob, "");
    assert_eq!(again, 409, "{body}");

    // The approval is a single-use grant for exactly the approved call.
    let tom = server.user_token("tom", &["treasury_operator"], None);
    let with_grant = |user: &str, amount: f64| {
        let mut call = transfer(250.0);
        call["approval_id"] = json!(approval_id);
        call["arguments"]["amount"] = json!(amount);
        server.authorize(&agent, user, &call)
    };
    let tina = server.user_token("tina", &["treasury_operator"], None);
    with_grant(&tina, 250.0).expect_decision(
        403,
        "deny",
        Some("grant_user_mismatch"),
        "another user",
    );
    with_grant(&tom, 300.0).expect_decision(
        403,
        "deny",
        Some("grant_arguments_mismatch"),
        "other arguments",
    );
    let used = with_grant(&tom, 250.0);
    used.expect_decision(200, "allow", Some("approved_call"), "the approved call");
    assert_eq!(used.str("approval_id"), approval_id);
    with_grant(&tom, 250.0).expect_decision(
        403,
        "deny",
        Some("grant_already_used"),
        "a second use",
    );
}

/// The records of `approval_id`'s steps, by their first reason code.
fn step_codes(server: &Server, approval_id: &str) -> Vec<String> {
    let db = server.db();
    let mut stmt = db
        .prepare(
            "SELECT json_extract(record, '$.reasons[0].code') FROM decisions
             WHERE json_extract(record, '$.approval.approval_id') = ?1 ORDER BY rowid",
        )
        .expect("a query");
    stmt.query_map([approval_id], |r| r.get::<_, String>(0))
        .expect("records")
        .filter_map(Result::ok)
        .collect()
}

fn wait_for_status(server: &Server, agent: &str, approval_id: &str, want: &str) {
    poll(
        Duration::from_secs(15),
        &format!("the approval to be {want}"),
        || {
            let s = status_of(server, agent, approval_id);
            (s.str("status") == want).then_some(()).ok_or(s.to_string())
        },
    );
}

/// `govctl serve` stopped with approvals open. On the next start: a pending
/// approval with time left waits again and its approvers' link still works;
/// one past its expiry is expired; one a human approved whose grant the
/// stopped run never recorded is granted. Each gets its record, and a grant
/// is usable only once it is recorded.
#[test]
fn a_restart_resumes_expires_and_completes_the_approvals_left_open() {
    let mut server = Server::start();
    let (agent, waiting, waiting_review) = pending(&server);
    let (_, approved, _) = pending(&server);
    let (_, lapsed, _) = pending(&server);
    for id in [&waiting, &approved, &lapsed] {
        poll(Duration::from_secs(10), "approvers to be notified", || {
            step_codes(&server, id)
                .contains(&"approvers_notified".to_owned())
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        });
    }
    server.kill();
    {
        let db = rusqlite::Connection::open(server.db_path()).expect("open the store");
        // Answered just before the crash: the answer's write happened, the
        // workflow never recorded the grant.
        db.execute(
            "UPDATE approvals SET status = 'approved', approver = 'alice',
                    decided_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE approval_id = ?1",
            [&approved],
        )
        .expect("approve");
        // Its time ran out while the server was down.
        db.execute(
            "UPDATE approvals SET expires_at = '2000-01-01T00:00:00.000Z',
                    request = json_set(request, '$.expires_at', '2000-01-01T00:00:00.000Z')
             WHERE approval_id = ?1",
            [&lapsed],
        )
        .expect("lapse");
    }
    server.restart();

    wait_for_status(&server, &agent, &lapsed, "expired");
    assert_eq!(
        step_codes(&server, &lapsed),
        ["approvers_notified", "approval_expired"]
    );

    wait_for_status(&server, &agent, &approved, "granted");
    assert_eq!(
        step_codes(&server, &approved),
        ["approvers_notified", "approval_granted"]
    );
    let tom = server.user_token("tom", &["treasury_operator"], None);
    let mut call = transfer(250.0);
    call["approval_id"] = json!(approved);
    server.authorize(&agent, &tom, &call).expect_decision(
        200,
        "allow",
        Some("approved_call"),
        "the grant recorded at start-up",
    );

    // The pending one still waits, and the link approvers got still works.
    assert_eq!(
        status_of(&server, &agent, &waiting).str("status"),
        "pending"
    );
    let alice = approver(&server, "alice", "treasury-approvers");
    let (status, page) = answer(&server, &waiting_review, "approve", &alice, "ok");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("may now make exactly"), "{page}");
    wait_for_status(&server, &agent, &waiting, "granted");
    assert_eq!(
        step_codes(&server, &waiting),
        ["approvers_notified", "approval_granted"]
    );
    call["approval_id"] = json!(waiting);
    server.authorize(&agent, &tom, &call).expect_decision(
        200,
        "allow",
        Some("approved_call"),
        "the grant of the resumed approval",
    );
    assert!(
        server
            .stderr_log()
            .contains("approvals left open by the previous run picked up"),
        "{}",
        server.stderr_log()
    );
}

/// The example policies (top-level files) in a temp dir, with the transfer
/// tool's approval block replaced by `block`: the dir and the new registry.
fn transfer_approval_as(block: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    for entry in std::fs::read_dir(crate::common::example_policies()).expect("the example") {
        let entry = entry.expect("an entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
    }
    let registry = dir.path().join("registry.yaml");
    let text = std::fs::read_to_string(&registry).expect("the registry");
    let edited = text.replace(
        "approval: { approver_group: treasury-approvers, timeout_seconds: 1800 }",
        block,
    );
    assert_ne!(edited, text, "the example's transfer approval changed");
    std::fs::write(&registry, &edited).expect("write");
    (dir, edited)
}

/// A tool that needs approval but names no approver group does not validate:
/// the error names the file and line.
#[test]
fn a_tool_needing_approval_without_an_approver_group_does_not_validate() {
    let (dir, edited) = transfer_approval_as("approval: { timeout_seconds: 1800 }");
    let line = edited
        .lines()
        .position(|l| l.contains("approval: { timeout_seconds: 1800 }"))
        .expect("the edited line")
        + 1;
    let out = crate::common::run_govctl(&["policy", "validate", dir.path().to_str().unwrap()]);
    assert!(!out.status.success(), "the policy set must not validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("registry.yaml:{line}:"))
            && text.contains("error: tool `transfer_funds` needs approval")
            && text.contains("names no approver_group"),
        "{text}"
    );
}

/// `govctl serve` as a host of the shared approval scenarios.
pub(crate) struct Local(pub(crate) Server);

impl ApprovalHost for Local {
    fn authorize(&self, agent: &str, user: &str, roles: &[&str], body: &Value) -> (u16, Value) {
        let agent = self.0.agent_token(agent);
        let user = self.0.user_token(user, roles, None);
        let reply = self.0.authorize(&agent, &user, body);
        (reply.status, reply.json)
    }

    fn poll(&self, agent: &str, approval_id: &str) -> (u16, Value) {
        let reply = status_of(&self.0, &self.0.agent_token(agent), approval_id);
        (reply.status, reply.json)
    }

    fn notifications(&self) -> usize {
        self.0.stderr_log().matches("/v1/reviews/").count()
    }

    fn review_id(&self, after: usize) -> String {
        poll(Duration::from_secs(10), "a new approver link", || {
            (self.notifications() > after)
                .then(|| review_id(&self.0))
                .ok_or_else(|| "no new link yet".to_owned())
        })
    }

    fn answer(
        &self,
        review_id: &str,
        verb: &str,
        approver_id: &str,
        groups: &[&str],
        comment: &str,
    ) -> (u16, String) {
        let page = self.0.get(&format!("/v1/reviews/{review_id}"), None);
        if !page.text.contains("name=\"csrf\"") {
            return (page.status, page.text);
        }
        let mut args = vec!["approver", "token", approver_id];
        for g in groups {
            args.extend(["--group", g]);
        }
        let token = self.0.govctl(&args).trim().to_owned();
        answer(&self.0, review_id, verb, &token, comment)
    }

    fn page(&self, review_id: &str) -> (u16, String) {
        let page = self.0.get(&format!("/v1/reviews/{review_id}"), None);
        (page.status, page.text)
    }

    fn open(&self, review_id: &str) -> Option<(String, String)> {
        let page = self.0.get(&format!("/v1/reviews/{review_id}"), None);
        page.text
            .contains("name=\"csrf\"")
            .then(|| open_page(&self.0, review_id))
    }

    fn answer_from(
        &self,
        review_id: &str,
        opened: &(String, String),
        verb: &str,
        approver_id: &str,
        groups: &[&str],
    ) -> (u16, String) {
        let mut args = vec!["approver", "token", approver_id];
        for g in groups {
            args.extend(["--group", g]);
        }
        let token = self.0.govctl(&args).trim().to_owned();
        post(&self.0, review_id, verb, &opened.0, &opened.1, &token, "")
    }

    fn approval_records(&self, approval_id: &str) -> Vec<Value> {
        let db = self.0.db();
        let mut stmt = db
            .prepare(
                "SELECT record FROM decisions WHERE json_extract(record, '$.approval.approval_id') = ?1",
            )
            .expect("a query");
        stmt.query_map([approval_id], |r| r.get::<_, String>(0))
            .expect("records")
            .filter_map(Result::ok)
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect()
    }
}

#[test]
fn suite_approved_calls_are_allowed_once() {
    approval_suite::approved_calls_are_allowed_once(&Local(Server::start()));
}

#[test]
fn suite_rejected_calls_are_denied() {
    approval_suite::rejected_calls_are_denied(&Local(Server::start()));
}

#[test]
fn suite_personal_data_is_masked_for_approvers() {
    approval_suite::personal_data_is_masked_for_approvers(&Local(Server::start()));
}

#[test]
fn suite_only_other_members_of_the_group_may_answer() {
    approval_suite::only_other_members_of_the_group_may_answer(&Local(Server::start()));
}

/// An approval nobody answers expires on its own time while the server
/// runs: its record says so, the page offers no answer, and the call is
/// not allowed with it.
#[test]
fn an_unanswered_approval_expires_on_time() {
    let (dir, _) = transfer_approval_as(
        "approval: { approver_group: treasury-approvers, timeout_seconds: 3 }",
    );
    let server = Server::start_with(&["--policy", dir.path().to_str().expect("UTF-8")]);
    let (agent, approval_id, review) = pending(&server);
    wait_for_status(&server, &agent, &approval_id, "expired");
    assert_eq!(
        step_codes(&server, &approval_id),
        ["approvers_notified", "approval_expired"]
    );
    let page = reqwest::blocking::get(server.url(&format!("/v1/reviews/{review}")))
        .expect("GET the review page")
        .text()
        .expect("the page");
    assert!(
        page.contains("<title>Expired</title>") && !page.contains("<form"),
        "{page}"
    );
    let tom = server.user_token("tom", &["treasury_operator"], None);
    let mut call = transfer(250.0);
    call["approval_id"] = json!(approval_id);
    server.authorize(&agent, &tom, &call).expect_decision(
        403,
        "deny",
        Some("grant_not_approved"),
        "a call with an expired approval",
    );
}

/// A grant is usable for 15 minutes from its approval: at 16 minutes (the
/// decision clock moved, not waited for) the approved call is denied.
#[test]
fn a_grant_expires_fifteen_minutes_after_it_is_approved() {
    let clock_dir = tempfile::tempdir().expect("a temp dir");
    let clock = clock_dir.path().join("clock-offset");
    let server = Server::start_with(&["--test-clock-offset-file", clock.to_str().expect("UTF-8")]);
    let (agent, approval_id, review) = pending(&server);
    let (csrf, cookie) = open_page(&server, &review);
    let alice = approver(&server, "alice", "treasury-approvers");
    let (status, page) = post(&server, &review, "approve", &csrf, &cookie, &alice, "");
    assert_eq!(status, 200, "{page}");
    wait_for_status(&server, &agent, &approval_id, "granted");
    let tom = server.user_token("tom", &["treasury_operator"], None);
    let mut call = transfer(250.0);
    call["approval_id"] = json!(approval_id);
    std::fs::write(&clock, "960").expect("move the clock 16 minutes on");
    server.authorize(&agent, &tom, &call).expect_decision(
        403,
        "deny",
        Some("grant_expired"),
        "the approved call 16 minutes after the approval",
    );
}
