//! The human-approval scenarios, written once and run against both hosts:
//! `govctl serve` with its in-process workflow (tests/serve.rs) and the AWS
//! deployment on the emulator, with the real state machine (tests/aws.rs).
//! A host only says how to ask, poll, find the approvers' link and answer.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What a scenario needs of a host.
pub trait ApprovalHost {
    /// `POST /v1/authorize` as `agent`, for `user` with `roles`: status and body.
    fn authorize(&self, agent: &str, user: &str, roles: &[&str], body: &Value) -> (u16, Value);
    /// `GET /v1/approvals/{id}` as `agent`: status and body.
    fn poll(&self, agent: &str, approval_id: &str) -> (u16, Value);
    /// The review id of the link in the newest notification to approvers,
    /// waiting for it; none older than `after` (the number seen before).
    fn review_id(&self, after: usize) -> String;
    /// How many notifications approvers got so far.
    fn notifications(&self) -> usize;
    /// Opens the review page as a browser does and answers (`approve` or
    /// `reject`) with a token of `approver` in `groups`: status and page.
    fn answer(
        &self,
        review_id: &str,
        verb: &str,
        approver: &str,
        groups: &[&str],
        comment: &str,
    ) -> (u16, String);
    /// The records of `approval_id`'s steps so far (notified, and how it ended).
    fn approval_records(&self, approval_id: &str) -> Vec<Value>;
    /// The review page: status and body.
    fn page(&self, review_id: &str) -> (u16, String);
    /// Opens the review page as a browser does, without answering yet: its
    /// CSRF form value and cookie (`None` when it offers no form).
    fn open(&self, review_id: &str) -> Option<(String, String)>;
    /// Answers from a page opened earlier with [`ApprovalHost::open`].
    fn answer_from(
        &self,
        review_id: &str,
        opened: &(String, String),
        verb: &str,
        approver: &str,
        groups: &[&str],
    ) -> (u16, String);
}

const AGENT: &str = "agent-treasury-1";
const OPERATOR: &[&str] = &["treasury_operator"];
const APPROVERS: &[&str] = &["treasury-approvers"];

/// The treasury agent's transfer of `amount` EUR, the call every host's
/// approval tests ask for.
pub fn transfer(amount: f64) -> Value {
    json!({
        "tool_id": "transfer_funds",
        "arguments": {"amount": amount, "currency": "EUR", "to_account": "DE89370400440532013000"},
        "reasoning": "supplier invoice INV-2291 is due today"
    })
}

fn wait<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The record that closed an approval, waiting for it.
fn outcome(host: &impl ApprovalHost, approval_id: &str) -> Value {
    wait("the outcome record", || {
        host.approval_records(approval_id)
            .into_iter()
            .find(|r| r["approval"]["status"] != "pending")
    })
}

fn code(body: &Value) -> &str {
    body["reasons"][0]["code"].as_str().unwrap_or_default()
}

/// A transfer waits for a human: its approval id and the approvers' review id.
fn pending(host: &impl ApprovalHost) -> (String, String) {
    let seen = host.notifications();
    let (status, body) = host.authorize(AGENT, "tom", OPERATOR, &transfer(250.0));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["decision"], "pending_approval");
    let approval_id = body["approval_id"]
        .as_str()
        .expect("an approval id")
        .to_owned();
    assert_eq!(body["poll_url"], format!("/v1/approvals/{approval_id}"));
    let (status, polled) = host.poll(AGENT, &approval_id);
    assert_eq!(
        (status, polled["status"].as_str()),
        (200, Some("pending")),
        "{polled}"
    );
    let review_id = host.review_id(seen);
    assert_ne!(
        review_id, approval_id,
        "approvers' links are not the agent's id"
    );
    // The notification is a step in the decision log.
    let notified = wait("the notification record", || {
        host.approval_records(&approval_id)
            .into_iter()
            .find(|r| r["reasons"][0]["code"] == "approvers_notified")
    });
    assert_eq!(notified["decision"], "pending_approval");
    (approval_id, review_id)
}

fn wait_status(host: &impl ApprovalHost, approval_id: &str, want: &str) {
    wait(&format!("the approval to be {want}"), || {
        (host.poll(AGENT, approval_id).1["status"] == want).then_some(())
    });
}

/// Approved by an approver of the group: recorded with who and why, and the
/// exact call is allowed once; nothing else is.
pub fn approved_calls_are_allowed_once(host: &impl ApprovalHost) {
    let (approval_id, review_id) = pending(host);
    // bob opens the page too, and answers only after alice has.
    let stale = host.open(&review_id).expect("the page offers a form");
    let (status, page) = host.answer(&review_id, "approve", "alice", APPROVERS, "invoice checked");
    assert_eq!(status, 200, "{page}");
    wait_status(host, &approval_id, "granted");
    let outcome = outcome(host, &approval_id);
    assert_eq!(outcome["decision"], "allow");
    assert_eq!(code(&outcome), "approval_granted");
    assert_eq!(outcome["approval"]["approver"], "alice");
    assert_eq!(outcome["approval"]["comment"], "invoice checked");

    let with_grant = |amount: f64| {
        let mut call = transfer(amount);
        call["approval_id"] = json!(approval_id);
        call
    };
    let (status, body) = host.authorize(AGENT, "tina", OPERATOR, &with_grant(250.0));
    assert_eq!(
        (status, code(&body)),
        (403, "grant_user_mismatch"),
        "{body}"
    );
    let (status, body) = host.authorize(AGENT, "tom", OPERATOR, &with_grant(300.0));
    assert_eq!(
        (status, code(&body)),
        (403, "grant_arguments_mismatch"),
        "{body}"
    );
    // A decimal argument binds by value: 250 is the 250.0 that was approved.
    let mut as_integer = with_grant(250.0);
    as_integer["arguments"]["amount"] = json!(250);
    let (status, body) = host.authorize(AGENT, "tom", OPERATOR, &as_integer);
    assert_eq!((status, code(&body)), (200, "approved_call"), "{body}");
    let (status, body) = host.authorize(AGENT, "tom", OPERATOR, &with_grant(250.0));
    assert_eq!((status, code(&body)), (403, "grant_already_used"), "{body}");
    // An answer from a page opened before the first answer is refused, and
    // says whose answer stands.
    let (status, page) = host.answer_from(&review_id, &stale, "reject", "bob", APPROVERS);
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("already approved (granted) by alice at ")
            && page.contains("your answer was not recorded"),
        "{page}"
    );
    // A second answer sees the first: the page offers no form, and says
    // what was answered and by whom.
    let (status, page) = host.answer(&review_id, "reject", "bob", APPROVERS, "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<title>Already approved</title>")
            && page.contains("Answered by")
            && page.contains("alice at ")
            && page.contains("invoice checked")
            && !page.contains("<form"),
        "{page}"
    );
}

/// Rejected: recorded as a denial with who and why; the approval grants nothing.
pub fn rejected_calls_are_denied(host: &impl ApprovalHost) {
    let (approval_id, review_id) = pending(host);
    let (status, page) = host.answer(&review_id, "reject", "carol", APPROVERS, "unknown account");
    assert_eq!(status, 200, "{page}");
    wait_status(host, &approval_id, "rejected");
    let outcome = outcome(host, &approval_id);
    assert_eq!(outcome["decision"], "deny");
    assert_eq!(code(&outcome), "approval_rejected");
    assert_eq!(outcome["approval"]["approver"], "carol");
    let mut call = transfer(250.0);
    call["approval_id"] = json!(approval_id);
    let (status, body) = host.authorize(AGENT, "tom", OPERATOR, &call);
    assert_eq!((status, code(&body)), (403, "grant_not_approved"), "{body}");
}

/// Only a member of the tool's approver group who is not the user the agent
/// acts for may answer; refused answers decide nothing.
pub fn only_other_members_of_the_group_may_answer(host: &impl ApprovalHost) {
    let (approval_id, review_id) = pending(host);
    let (status, page) = host.answer(&review_id, "approve", "olga", &["privacy-approvers"], "");
    assert_eq!(status, 403, "outside the group: {page}");
    assert!(
        page.contains("Only members of <code>treasury-approvers</code> answer this request"),
        "{page}"
    );
    let (status, page) = host.answer(&review_id, "approve", "tom", APPROVERS, "");
    assert_eq!(status, 403, "the user the agent acts for: {page}");
    assert!(page.contains("Not your own call"), "{page}");
    assert_eq!(host.poll(AGENT, &approval_id).1["status"], "pending");
    // Another agent sees nothing of it.
    assert_eq!(host.poll("agent-support-1", &approval_id).0, 404);
    // Refusals leave it open: a member who is not the user answers it.
    let (status, page) = host.answer(&review_id, "approve", "alice", APPROVERS, "");
    assert_eq!(status, 200, "{page}");
    wait_status(host, &approval_id, "granted");
}

/// Arguments the tool's classification hides are masked on the approver's
/// page; the approval still binds the exact values through their hash.
pub fn personal_data_is_masked_for_approvers(host: &impl ApprovalHost) {
    let seen = host.notifications();
    let erase =
        json!({"tool_id": "delete_customer_record", "arguments": {"customer_id": "C-98121"}});
    let (status, body) = host.authorize("agent-privacy-1", "pia", &["privacy_officer"], &erase);
    assert_eq!(status, 202, "{body}");
    let review_id = host.review_id(seen);
    let (status, page) = host.page(&review_id);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("delete, critical risk"),
        "the tool's category and risk: {page}"
    );
    assert!(page.contains("masked: pii"), "{page}");
    assert!(
        !page.contains("C-98121"),
        "the customer id is not shown: {page}"
    );
    // What the approver could not see is still what the grant binds.
    let approval_id = body["approval_id"].as_str().unwrap().to_owned();
    let (status, page) = host.answer(&review_id, "approve", "petra", &["privacy-approvers"], "");
    assert_eq!(status, 200, "{page}");
    wait("the erasure approval to be granted", || {
        (host.poll("agent-privacy-1", &approval_id).1["status"] == "granted").then_some(())
    });
    let mut other = erase.clone();
    other["arguments"]["customer_id"] = json!("C-00001");
    other["approval_id"] = json!(approval_id);
    let (status, body) = host.authorize("agent-privacy-1", "pia", &["privacy_officer"], &other);
    assert_eq!(
        (status, code(&body)),
        (403, "grant_arguments_mismatch"),
        "{body}"
    );
    let mut exact = erase;
    exact["approval_id"] = json!(approval_id);
    let (status, body) = host.authorize("agent-privacy-1", "pia", &["privacy_officer"], &exact);
    assert_eq!((status, code(&body)), (200, "approved_call"), "{body}");
}
