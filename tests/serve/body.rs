//! What the request body may and may not say.

use serde_json::json;

use crate::common::Server;

/// The agent is whoever the credential says; a body naming another agent is
/// refused before anything is decided or recorded.
#[test]
fn a_body_naming_an_agent_is_refused_and_records_nothing() {
    let server = Server::start();
    let support = server.agent_token("agent-support-1");
    let alice = server.user_token("alice", &["support_agent"], None);
    let sam = server.user_token("sam", &["sre"], None);

    let impersonation = json!({
        "agent_id": "agent-ops-1",
        "tool_id": "search_logs",
        "arguments": {"query": "timeout"},
    });
    for (user, who) in [(&alice, "alice"), (&sam, "sam (an SRE)")] {
        let reply = server.authorize(&support, user, &impersonation);
        reply.expect_error(
            400,
            "unknown_field",
            &format!("agent-support-1 naming agent-ops-1 in the body, for {who}"),
        );
        assert!(
            reply.text.contains("agent_id"),
            "the error should name the refused field: {reply}"
        );
    }
    // Naming the user in the body is refused the same way.
    server
        .authorize(
            &support,
            &alice,
            &json!({"tool_id": "search_kb", "user_id": "sam", "arguments": {"query": "x"}}),
        )
        .expect_error(400, "unknown_field", "a body naming the user");

    assert_eq!(
        server.count_decisions("agent_id = ?1 AND decision = 'allow'", &["agent-ops-1"]),
        0,
        "the decision log must hold no allow for agent-ops-1"
    );
    assert_eq!(
        server.count_decisions("1 = 1", &[]),
        0,
        "a refused body decides nothing, so nothing is recorded"
    );

    // The same call, honestly made, is decided as agent-support-1's.
    let reply = server.authorize(
        &support,
        &sam,
        &json!({"tool_id": "search_logs", "arguments": {"query": "timeout"}}),
    );
    reply.expect_decision(
        403,
        "deny",
        Some("tool_not_granted"),
        "agent-support-1 asking for search_logs itself",
    );
    assert_eq!(reply.str("agent_id"), "agent-support-1", "{reply}");
    assert_eq!(
        server.count_decisions("agent_id = ?1", &["agent-ops-1"]),
        0,
        "nothing may be recorded in agent-ops-1's name"
    );
}

/// Transport-level problems are 4xx errors without a decision; argument
/// problems are recorded denies.
#[test]
fn malformed_oversized_and_mistyped_bodies() {
    let server = Server::start();
    let agent = server.agent_token("agent-support-1");
    let user = server.user_token("alice", &["support_agent"], None);
    let bearer = format!("Bearer {agent}");
    let post = |content_type: Option<&str>, body: String| {
        let mut headers = vec![
            ("authorization", bearer.as_str()),
            ("x-on-behalf-of", user.as_str()),
        ];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        server.post_authorize(&headers, body)
    };
    let json_ct = Some("application/json");

    post(json_ct, r#"{"tool_id": "search_kb", "arguments": "#.into()).expect_error(
        400,
        "malformed_json",
        "truncated JSON",
    );
    post(json_ct, "tool_id=search_kb".into()).expect_error(400, "malformed_json", "not JSON");
    post(json_ct, String::new()).expect_error(400, "malformed_json", "empty body");

    let oversized = json!({
        "tool_id": "search_kb",
        "arguments": {"query": "x"},
        "reasoning": "r".repeat(100 * 1024),
    });
    post(json_ct, oversized.to_string()).expect_error(413, "payload_too_large", "a 100 KiB body");
    // Within the body limit but over the reasoning limit (16 KiB).
    let long_reasoning = json!({
        "tool_id": "search_kb",
        "arguments": {"query": "x"},
        "reasoning": "r".repeat(20 * 1024),
    });
    post(json_ct, long_reasoning.to_string()).expect_error(
        400,
        "invalid_request",
        "20 KiB of reasoning",
    );
    // At the limits exactly: 64 KiB of body (JSON padded with trailing
    // whitespace) and 16 KiB of reasoning are accepted; one byte more is not.
    let at_most = |reasoning: usize, body: usize| {
        let mut text = json!({
            "tool_id": "search_kb",
            "arguments": {"query": "x"},
            "reasoning": "r".repeat(reasoning),
        })
        .to_string();
        assert!(text.len() <= body, "the JSON itself fits");
        text.push_str(&" ".repeat(body - text.len()));
        text
    };
    post(json_ct, at_most(16 * 1024, 64 * 1024)).expect_decision(
        200,
        "allow",
        Some("allowed"),
        "16 KiB of reasoning in a 64 KiB body",
    );
    post(json_ct, at_most(1024, 64 * 1024 + 1)).expect_error(
        413,
        "payload_too_large",
        "64 KiB and one byte",
    );
    post(json_ct, at_most(16 * 1024 + 1, 32 * 1024)).expect_error(
        400,
        "invalid_request",
        "16 KiB and one byte of reasoning",
    );
    // A grant is single-use already: an idempotency key beside it is refused.
    post(
        json_ct,
        json!({
            "tool_id": "search_kb", "arguments": {"query": "x"},
            "approval_id": "0190a0b0-0000-7000-8000-000000000000",
            "idempotency_key": "retry-1",
        })
        .to_string(),
    )
    .expect_error(400, "invalid_request", "approval_id with idempotency_key");

    post(
        json_ct,
        json!({"tool_id": "search_kb", "arguments": {"query": "x"}, "priority": "urgent"})
            .to_string(),
    )
    .expect_error(400, "unknown_field", "an unknown top-level field");
    post(json_ct, json!({"arguments": {"query": "x"}}).to_string()).expect_error(
        400,
        "invalid_request",
        "no tool_id",
    );
    post(
        json_ct,
        json!({"tool_id": "search_kb", "requested_risk": "extreme"}).to_string(),
    )
    .expect_error(400, "invalid_request", "an unknown risk level");
    post(json_ct, json!({"tool_id": ""}).to_string()).expect_error(
        400,
        "invalid_request",
        "an empty tool_id",
    );

    let valid = json!({"tool_id": "search_kb", "arguments": {"query": "x"}}).to_string();
    post(Some("text/plain"), valid.clone()).expect_error(
        415,
        "unsupported_media_type",
        "text/plain",
    );
    post(None, valid.clone()).expect_error(415, "unsupported_media_type", "no content-type");
    post(Some("application/x-www-form-urlencoded"), valid.clone()).expect_error(
        415,
        "unsupported_media_type",
        "a form content-type",
    );
    // The one call within the limits exactly is the only decision.
    assert_eq!(
        server.count_decisions("1 = 1", &[]),
        1,
        "refused requests must not be recorded as decisions"
    );

    // A parameterized JSON content-type is JSON.
    post(Some("application/json; charset=utf-8"), valid).expect_decision(
        200,
        "allow",
        Some("allowed"),
        "application/json; charset=utf-8",
    );

    // Arguments are checked by the decision, which is a recorded deny.
    let mut denies = Vec::new();
    for (arguments, what) in [
        (json!(["x"]), "arguments as an array"),
        (json!("query=x"), "arguments as a string"),
        (
            json!({"query": "x", "verbose": true}),
            "an undeclared argument",
        ),
        (json!({"query": 42}), "a mistyped argument"),
        (json!({}), "a missing required argument"),
    ] {
        let reply = post(
            json_ct,
            json!({"tool_id": "search_kb", "arguments": arguments}).to_string(),
        );
        reply.expect_decision(403, "deny", Some("invalid_arguments"), what);
        let id = reply.decision_id(what);
        let (column, _) = server
            .stored(&id)
            .unwrap_or_else(|| panic!("{what}: the deny {id} is not in the log"));
        assert_eq!(column, "deny", "{what}");
        denies.push(id);
    }
    assert_eq!(
        server.count_decisions("1 = 1", &[]),
        2 + i64::try_from(denies.len()).unwrap(),
        "exactly the decided requests are recorded (two allows and the denies)"
    );
}

/// A well-formed W3C `traceparent` names the decision's trace; a malformed
/// one (or an all-zero trace id) is not an error, and the decision gets a
/// trace id of its own.
#[test]
fn a_traceparent_names_the_trace_and_a_malformed_one_is_replaced() {
    let server = Server::start();
    let agent = format!("Bearer {}", server.agent_token("agent-support-1"));
    let user = server.user_token("alice", &["support_agent"], None);
    let body = json!({"tool_id": "search_kb", "arguments": {"query": "x"}}).to_string();
    let traced = |traceparent: &str| -> String {
        let reply = server.post_authorize(
            &[
                ("authorization", agent.as_str()),
                ("x-on-behalf-of", user.as_str()),
                ("content-type", "application/json"),
                ("traceparent", traceparent),
            ],
            body.clone(),
        );
        reply.expect_status(200, traceparent);
        let (_, record) = server
            .stored(&reply.decision_id(traceparent))
            .expect("the decision is recorded");
        record["trace_id"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(
        traced("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    for malformed in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "not a traceparent",
    ] {
        let id = traced(malformed);
        assert!(
            id.len() == 32
                && id.chars().all(|c| c.is_ascii_hexdigit())
                && id != "0".repeat(32)
                && !malformed.contains(&id),
            "`{malformed}` gave trace id `{id}`"
        );
    }
}
