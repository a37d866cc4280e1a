//! The idempotency-key scenarios, written once and run against both hosts:
//! `govctl serve` (tests/serve/idempotency.rs) and the AWS deployment on the
//! emulator (tests/aws/idempotency.rs). A replay must be the whole call
//! again; any other use of a key is refused, and the refusal is recorded.

use serde_json::{json, Value};

/// What a scenario needs of a host.
pub trait DecisionHost {
    /// `POST /v1/authorize` as `agent`, for `user` with `roles`: status and body.
    fn authorize(&self, agent: &str, user: &str, roles: &[&str], body: &Value) -> (u16, Value);
    /// The record the decision log holds under `decision_id`, if any.
    fn stored_decision(&self, decision_id: &str) -> Option<Value>;
}

const AGENT: &str = "agent-support-1";

fn decision_id(body: &Value) -> String {
    body["decision_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision_id in {body}"))
        .to_owned()
}

/// A key first used by alice cannot answer for bob, whose roles may not
/// have `search_kb` called for them, nor for another tool or arguments: each
/// reuse is a 409 `idempotency_key_reused` whose own deny is in the log, and
/// the key still replays alice's call.
pub fn a_key_replays_only_the_whole_call(host: &impl DecisionHost) {
    let body =
        json!({"tool_id": "search_kb", "arguments": {"query": "x"}, "idempotency_key": "k1"});
    let (status, first) = host.authorize(AGENT, "alice", &["support_agent"], &body);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["decision"], "allow");
    let first_id = decision_id(&first);

    // Without the key, bob is denied: the replay must not launder that.
    let (status, fresh) = host.authorize(
        AGENT,
        "bob",
        &["sre"],
        &json!({"tool_id": "search_kb", "arguments": {"query": "x"}}),
    );
    assert_eq!(status, 403, "bob without a key: {fresh}");

    let reuses = [
        ("bob", vec!["sre"], body.clone(), "the same body for bob"),
        (
            "alice",
            vec!["support_agent"],
            json!({"tool_id": "search_kb", "arguments": {"query": "y"}, "idempotency_key": "k1"}),
            "other arguments",
        ),
        (
            "alice",
            vec!["support_agent"],
            json!({"tool_id": "get_ticket", "arguments": {"ticket_id": "T-1"}, "idempotency_key": "k1"}),
            "another tool",
        ),
    ];
    for (user, roles, reuse, what) in reuses {
        let (status, answer) = host.authorize(AGENT, user, &roles, &reuse);
        assert_eq!(status, 409, "{what}: {answer}");
        assert_eq!(
            answer["error"]["code"], "idempotency_key_reused",
            "{what}: {answer}"
        );
        assert_eq!(answer["decision"], "deny", "{what}: {answer}");
        assert_eq!(answer["user_id"], user, "{what}: {answer}");
        assert_eq!(
            answer["reasons"][0]["code"], "idempotency_key_reused",
            "{what}: {answer}"
        );
        let id = decision_id(&answer);
        assert_ne!(id, first_id, "{what}: answered from alice's decision");
        let stored = host
            .stored_decision(&id)
            .unwrap_or_else(|| panic!("{what}: the refused attempt {id} is not recorded"));
        assert_eq!(stored["decision"], "deny", "{what}: {stored}");
        assert_eq!(stored["user_id"], user, "{what}: {stored}");
        assert_eq!(
            stored["reasons"][0]["code"], "idempotency_key_reused",
            "{what}: {stored}"
        );
        assert!(
            stored["reasons"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&first_id)),
            "{what}: the reason names the decision holding the key: {stored}"
        );
    }

    // The key still belongs to alice's call.
    let (status, again) = host.authorize(AGENT, "alice", &["support_agent"], &body);
    assert_eq!(status, 200, "{again}");
    assert_eq!(decision_id(&again), first_id, "alice's repeat is a replay");
}
