//! Idempotency keys: a repeated request is answered with the first decision.

use serde_json::{json, Value};

use crate::common::{arguments_hash, Reply, Server};
use crate::idempotency_suite::{self, DecisionHost};

fn keyed_rows(server: &Server, agent: &str, key: &str) -> i64 {
    server.count_decisions("agent_id = ?1 AND idempotency_key = ?2", &[agent, key])
}

/// Same key and body: the same decision, recorded once. Same key, another
/// request: 409. Keys belong to one agent.
#[test]
fn repeated_keys_replay_and_conflicting_keys_are_refused() {
    let server = Server::start();
    let support = server.agent_token("agent-support-1");
    let alice = server.user_token("alice", &["support_agent"], None);

    let body = json!({
        "tool_id": "search_kb",
        "arguments": {"query": "reset password"},
        "idempotency_key": "idem-1",
    });
    let first = server.authorize(&support, &alice, &body);
    first.expect_decision(200, "allow", Some("allowed"), "first use of idem-1");
    let second = server.authorize(&support, &alice, &body);
    second.expect_decision(200, "allow", Some("allowed"), "second use of idem-1");
    assert_eq!(
        second.decision_id("second use"),
        first.decision_id("first use"),
        "a repeated request must be answered with the first decision\nfirst: {first}\nsecond: {second}"
    );
    assert_eq!(
        second.json, first.json,
        "the replay should be the first answer, unchanged"
    );
    assert_eq!(keyed_rows(&server, "agent-support-1", "idem-1"), 1);

    // The same key for anything else is refused, and the refusal is a
    // recorded deny that holds no key.
    let rows_before = server.count_decisions("1 = 1", &[]);
    for (conflicting, what) in [
        (
            json!({"tool_id": "search_kb", "arguments": {"query": "other"}, "idempotency_key": "idem-1"}),
            "idem-1 with other arguments",
        ),
        (
            json!({"tool_id": "get_ticket", "arguments": {"ticket_id": "T-1"}, "idempotency_key": "idem-1"}),
            "idem-1 for another tool",
        ),
    ] {
        let refused = server.authorize(&support, &alice, &conflicting);
        refused.expect_decision(409, "deny", Some("idempotency_key_reused"), what);
        assert_eq!(
            refused.error_code(),
            "idempotency_key_reused",
            "{what}: {refused}"
        );
    }
    assert_eq!(
        server.count_decisions("1 = 1", &[]),
        rows_before + 2,
        "each refused reuse is recorded"
    );
    assert_eq!(
        server.count_decisions(
            "json_extract(record, '$.reasons[0].code') = 'idempotency_key_reused' AND idempotency_key IS NULL",
            &[]
        ),
        2
    );
    // The original still replays after the conflicts.
    let third = server.authorize(&support, &alice, &body);
    assert_eq!(
        third.decision_id("third use"),
        first.decision_id("first use"),
        "{third}"
    );

    // Denies replay too.
    let deny = json!({
        "tool_id": "search_logs",
        "arguments": {"query": "error"},
        "idempotency_key": "idem-deny",
    });
    let d1 = server.authorize(&support, &alice, &deny);
    d1.expect_decision(403, "deny", Some("tool_not_granted"), "first keyed deny");
    let d2 = server.authorize(&support, &alice, &deny);
    d2.expect_decision(403, "deny", Some("tool_not_granted"), "second keyed deny");
    assert_eq!(d2.decision_id("d2"), d1.decision_id("d1"));

    // Another agent's key of the same name is its own.
    let privacy = server.agent_token("agent-privacy-1");
    let petra = server.user_token("petra", &["privacy_officer"], None);
    let theirs = server.authorize(&privacy, &petra, &body);
    theirs.expect_decision(
        200,
        "allow",
        Some("allowed"),
        "agent-privacy-1 using idem-1",
    );
    assert_ne!(
        theirs.decision_id("theirs"),
        first.decision_id("first"),
        "idempotency keys must be scoped to the agent"
    );
    assert_eq!(theirs.str("agent_id"), "agent-privacy-1", "{theirs}");
    assert_eq!(keyed_rows(&server, "agent-privacy-1", "idem-1"), 1);
    assert_eq!(keyed_rows(&server, "agent-support-1", "idem-1"), 1);
}

/// Many copies of one keyed request at once: one decision, recorded once.
#[test]
fn concurrent_repeats_of_a_keyed_request_get_one_decision() {
    let server = Server::start();
    let support = server.agent_token("agent-support-1");
    let alice = server.user_token("alice", &["support_agent"], None);
    let body = json!({
        "tool_id": "get_ticket",
        "arguments": {"ticket_id": "T-1042"},
        "idempotency_key": "idem-race",
    });
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| s.spawn(|| server.authorize(&support, &alice, &body)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread panicked"))
            .collect()
    });
    let first = replies[0].decision_id("racing request");
    for reply in &replies {
        reply.expect_decision(200, "allow", Some("allowed"), "a racing keyed request");
        assert_eq!(
            reply.decision_id("racing request"),
            first,
            "every copy must get the one decision"
        );
    }
    assert_eq!(keyed_rows(&server, "agent-support-1", "idem-race"), 1);
    assert_eq!(server.count_decisions("1 = 1", &[]), 1);
}

/// The record's `arguments_hash` is documented as the SHA-256 of the
/// *canonical* JSON (sorted keys) of the arguments, so the order in which a
/// client happens to write the keys changes neither the hash nor what an
/// idempotency key matches.
#[test]
fn arguments_hash_and_idempotency_ignore_json_key_order() {
    let server = Server::start();
    let support = server.agent_token("agent-support-1");
    let alice = server.user_token("alice", &["support_agent"], None);
    // Written by hand so that the key order on the wire is certain.
    let bearer = format!("Bearer {support}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("x-on-behalf-of", alice.as_str()),
        ("content-type", "application/json"),
    ];
    let query_first = r#"{"tool_id":"search_kb","arguments":{"query":"x","limit":2},"idempotency_key":"order-1"}"#;
    let limit_first = r#"{"tool_id":"search_kb","arguments":{"limit":2,"query":"x"},"idempotency_key":"order-1"}"#;
    let expected_hash = arguments_hash(&json!({"limit": 2, "query": "x"}));

    let a = server.post_authorize(&headers, query_first);
    a.expect_decision(200, "allow", Some("allowed"), "arguments {query, limit}");
    let id = a.decision_id("arguments {query, limit}");
    let record = server.decision(&support, &id);
    record.expect_status(200, "GET the decision");
    assert_eq!(
        record.str("arguments_hash"),
        expected_hash,
        "arguments_hash should be SHA-256 of the canonical (key-sorted) JSON {}; record: {record}",
        r#"{"limit":2,"query":"x"}"#
    );

    let b = server.post_authorize(&headers, limit_first);
    b.expect_decision(
        200,
        "allow",
        Some("allowed"),
        "the same arguments and key, keys written in another order",
    );
    assert_eq!(b.decision_id("replay"), id, "{b}");
}

impl DecisionHost for Server {
    fn authorize(&self, agent: &str, user: &str, roles: &[&str], body: &Value) -> (u16, Value) {
        let reply = Server::authorize(
            self,
            &self.agent_token(agent),
            &self.user_token(user, roles, None),
            body,
        );
        (reply.status, reply.json)
    }

    fn stored_decision(&self, decision_id: &str) -> Option<Value> {
        self.stored(decision_id).map(|(_, record)| record)
    }
}

#[test]
fn suite_a_key_replays_only_the_whole_call() {
    idempotency_suite::a_key_replays_only_the_whole_call(&Server::start());
}
