//! The signed-in approver's inbox on AWS, served by the approval-callback
//! function: the session cookie is verified with the stack's session secret
//! (Secrets Manager), and the answer goes through the same checks and the
//! same workflow as the emailed link. (Signing in at a real OpenID provider
//! is exercised under `govctl serve`, in tests/browser/signin.py: the same
//! code makes the session.)

use std::time::Duration;

use crate::approval_suite::transfer;
use crate::stack::{HttpAnswer, Stack};

fn get(stack: &Stack, path: &str, cookie: &str) -> HttpAnswer {
    stack.http(
        "approval-callback",
        "GET",
        path,
        None,
        &[("cookie", cookie), ("x-forwarded-proto", "https")],
        "",
    )
}

#[test]
fn a_signed_in_approver_answers_from_the_inbox_on_aws() {
    let stack = Stack::new(
        "inbox",
        &crate::emulator::workspace_root().join("infra/policies"),
    );
    let tom = stack.user_token("tom", &["treasury_operator"]);
    let asked = stack.authorize("agent-treasury-1", &tom, &transfer(250.0));
    assert_eq!(asked.status, 202, "{}", asked.body);
    let approval_id = asked.json["approval_id"].as_str().unwrap().to_owned();
    stack.wait_for_notification(Duration::from_secs(20));

    let alice = stack.session_cookie("alice", &["treasury-approvers"], 600, None);
    let inbox = get(&stack, "/v1/inbox", &alice);
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    let waiting = inbox.body.split("Answered by you").next().unwrap();
    assert!(
        waiting.contains(&format!("/v1/inbox/approvals/{approval_id}"))
            && waiting.contains("transfer_funds")
            && waiting.contains("left"),
        "{}",
        inbox.body
    );

    // Someone of another group sees nothing to answer, and may not open it.
    let carol = stack.session_cookie("carol", &["incident-commanders"], 600, None);
    let other = get(&stack, "/v1/inbox", &carol);
    assert!(!other.body.contains(&approval_id), "{}", other.body);
    let refused = get(
        &stack,
        &format!("/v1/inbox/approvals/{approval_id}"),
        &carol,
    );
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Forged, altered and expired sessions are refused; none sends to sign in.
    let forged = stack.session_cookie("alice", &["treasury-approvers"], 600, Some(&[7u8; 32]));
    let answer = get(&stack, "/v1/inbox", &forged);
    assert_eq!(answer.status, 401, "{}", answer.body);
    let expired = stack.session_cookie("alice", &["treasury-approvers"], -5, None);
    let answer = get(&stack, "/v1/inbox", &expired);
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(answer.body.contains("expired"), "{}", answer.body);
    let answer = get(&stack, "/v1/inbox", "");
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.headers["location"], "/v1/signin?next=/v1/inbox",
        "{:?}",
        answer.headers
    );

    // alice answers from the inbox: no token pasted.
    let page = get(
        &stack,
        &format!("/v1/inbox/approvals/{approval_id}"),
        &alice,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("DE89370400440532013000"),
        "{}",
        page.body
    );
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form carries the CSRF value")
        .to_owned();
    let set = page
        .cookies
        .iter()
        .find(|c| c.starts_with("agov_csrf="))
        .expect("the CSRF cookie");
    assert!(set.contains("Secure"), "{set}");
    let csrf_cookie = set.split(';').next().unwrap();
    let answered = stack.http(
        "approval-callback",
        "POST",
        &format!("/v1/inbox/approvals/{approval_id}/approve"),
        None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("{alice}; {csrf_cookie}")),
            ("x-forwarded-proto", "https"),
        ],
        &format!("csrf={csrf}&comment=invoice+checked"),
    );
    assert!(
        answered.status == 200 || answered.status == 202,
        "{}",
        answered.body
    );
    assert!(
        answered.body.contains("approved by alice"),
        "{}",
        answered.body
    );
    let inbox = get(&stack, "/v1/inbox", &alice);
    let answered = inbox.body.split("Answered by you").nth(1).unwrap();
    assert!(answered.contains(&approval_id), "{}", inbox.body);

    // The reports read a copy of the stack's evidence bucket.
    stack.pump_stream();
    let copy = tempfile::tempdir().unwrap();
    assert!(!stack.copy_evidence(copy.path()).is_empty());
    let file = copy.path().to_str().unwrap();
    let timeline = crate::common::run_govctl(&[
        "incident",
        "timeline",
        "--agent",
        "agent-treasury-1",
        "--since",
        "1h",
        "--file",
        file,
    ]);
    let text = String::from_utf8_lossy(&timeline.stdout);
    assert!(timeline.status.success(), "{text}");
    assert!(
        text.contains("pending_approval transfer_funds for user tom")
            && text.contains("every link verifies"),
        "{text}"
    );
    let review = crate::common::run_govctl(&[
        "review",
        "access",
        "--since",
        "1h",
        "--format",
        "json",
        "--file",
        file,
        "--policy",
        crate::emulator::workspace_root()
            .join("infra/policies")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        review.status.success(),
        "{}",
        String::from_utf8_lossy(&review.stderr)
    );
    let review: serde_json::Value = serde_json::from_slice(&review.stdout).unwrap();
    let treasury = review["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "agent-treasury-1")
        .expect("the treasury agent is reviewed");
    assert!(
        treasury.to_string().contains("transfer_funds"),
        "{treasury}"
    );
    let inventory = crate::common::run_govctl(&[
        "registry",
        "export",
        "--format",
        "json",
        "--file",
        file,
        "--policy",
        crate::emulator::workspace_root()
            .join("infra/policies")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        inventory.status.success(),
        "{}",
        String::from_utf8_lossy(&inventory.stderr)
    );
    let inventory: serde_json::Value = serde_json::from_slice(&inventory.stdout).unwrap();
    let last = |agent: &str| {
        inventory
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_id"] == agent)
            .map(|a| a["last_activity"].clone())
    };
    assert!(
        last("agent-treasury-1").is_some_and(|t| t.is_string()),
        "{inventory}"
    );
    assert_eq!(last("agent-legacy-1"), Some(serde_json::Value::Null));
    let shadow = crate::common::run_govctl(&["shadow", "report", "--since", "1h", "--file", file]);
    assert!(
        shadow.status.success(),
        "{}",
        String::from_utf8_lossy(&shadow.stderr)
    );

    // A record edited in the copy breaks its chain's run.
    let mut edited = false;
    for entry in walk(copy.path()) {
        let text = std::fs::read_to_string(&entry).unwrap();
        if !edited && text.contains("\"tool_id\":\"transfer_funds\"") {
            std::fs::write(
                &entry,
                text.replacen("\"user_id\":\"tom\"", "\"user_id\":\"eve\"", 1),
            )
            .unwrap();
            edited = true;
        }
    }
    assert!(edited, "a segment holds the transfer");
    let timeline = crate::common::run_govctl(&[
        "incident",
        "timeline",
        "--agent",
        "agent-treasury-1",
        "--since",
        "1h",
        "--file",
        file,
    ]);
    assert_eq!(
        timeline.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&timeline.stdout)
    );
    assert!(String::from_utf8_lossy(&timeline.stdout).contains("BROKEN"));
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
