//! The seed agents' cases (infra/policies/tests/seed_cases.yaml), over HTTP.

use serde_json::{json, Value};

use crate::common::{Reply, Server};

struct Case {
    name: &'static str,
    agent: &'static str,
    user: &'static str,
    roles: &'static [&'static str],
    org: Option<&'static str>,
    tool: &'static str,
    requested_risk: Option<&'static str>,
    arguments: Value,
    status: u16,
    decision: &'static str,
    reason: &'static str,
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "support agent searches the knowledge base",
            agent: "agent-support-1",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "search_kb",
            requested_risk: None,
            arguments: json!({"query": "reset password"}),
            status: 200,
            decision: "allow",
            reason: "allowed",
        },
        Case {
            name: "support agent reads a ticket",
            agent: "agent-support-1",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "get_ticket",
            requested_risk: None,
            arguments: json!({"ticket_id": "T-1042"}),
            status: 200,
            decision: "allow",
            reason: "allowed",
        },
        Case {
            name: "support agent may not search logs",
            agent: "agent-support-1",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "search_logs",
            requested_risk: None,
            arguments: json!({"query": "error"}),
            status: 403,
            decision: "deny",
            reason: "tool_not_granted",
        },
        Case {
            name: "support agent declaring high risk exceeds its medium ceiling",
            agent: "agent-support-1",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "search_kb",
            requested_risk: Some("high"),
            arguments: json!({"query": "refund policy"}),
            status: 403,
            decision: "deny",
            reason: "risk_exceeds_policy",
        },
        Case {
            name: "an unregistered agent is denied",
            agent: "agent-unknown-9",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "search_kb",
            requested_risk: None,
            arguments: json!({"query": "x"}),
            status: 403,
            decision: "deny",
            reason: "unknown_agent",
        },
        Case {
            name: "ops agent searches logs for an SRE",
            agent: "agent-ops-1",
            user: "sam",
            roles: &["sre"],
            org: None,
            tool: "search_logs",
            requested_risk: None,
            arguments: json!({"query": "timeout", "service": "checkout"}),
            status: 200,
            decision: "allow",
            reason: "allowed",
        },
        Case {
            name: "ops agent opens an incident for an SRE",
            agent: "agent-ops-1",
            user: "sam",
            roles: &["sre"],
            org: None,
            tool: "open_incident",
            requested_risk: None,
            arguments: json!({"title": "checkout latency", "severity": 2}),
            status: 200,
            decision: "allow",
            reason: "allowed",
        },
        Case {
            name: "ops agent cannot act for a support user",
            agent: "agent-ops-1",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "search_logs",
            requested_risk: None,
            arguments: json!({"query": "timeout"}),
            status: 403,
            decision: "deny",
            reason: "user_role_not_permitted",
        },
        Case {
            name: "any underwriter may flag for review",
            agent: "meridian-loan-agent",
            user: "uma",
            roles: &["underwriter"],
            org: Some("meridian-capital"),
            tool: "flag_for_review",
            requested_risk: None,
            arguments: json!({"application_id": "L-2024-118", "reason": "income mismatch"}),
            status: 200,
            decision: "allow",
            reason: "allowed",
        },
        Case {
            name: "junior underwriter cannot have a recommendation generated",
            agent: "meridian-loan-agent",
            user: "uma",
            roles: &["underwriter"],
            org: Some("meridian-capital"),
            tool: "generate_recommendation",
            requested_risk: None,
            arguments: json!({"application_id": "L-2024-118", "recommendation": "approve"}),
            status: 403,
            decision: "deny",
            reason: "user_role_not_permitted",
        },
        Case {
            name: "senior underwriter's recommendation waits for explicit approval",
            agent: "meridian-loan-agent",
            user: "sofia",
            roles: &["senior_underwriter"],
            org: Some("meridian-capital"),
            tool: "generate_recommendation",
            requested_risk: None,
            arguments: json!({"application_id": "L-2024-118", "recommendation": "approve"}),
            status: 202,
            decision: "pending_approval",
            reason: "approval_required",
        },
        Case {
            name: "the loan agent acts only for Meridian users",
            agent: "meridian-loan-agent",
            user: "eve",
            roles: &["underwriter"],
            org: Some("other-bank"),
            tool: "flag_for_review",
            requested_risk: None,
            arguments: json!({"application_id": "L-2024-118"}),
            status: 403,
            decision: "deny",
            reason: "forbidden_by_policy",
        },
        Case {
            name: "a large transfer is forbidden outright",
            agent: "agent-treasury-1",
            user: "tom",
            roles: &["treasury_operator"],
            org: None,
            tool: "transfer_funds",
            requested_risk: None,
            arguments: json!({"amount": 25000, "currency": "EUR", "to_account": "DE89370400440532013000"}),
            status: 403,
            decision: "deny",
            reason: "forbidden_by_policy",
        },
        Case {
            name: "a small transfer waits for approval",
            agent: "agent-treasury-1",
            user: "tom",
            roles: &["treasury_operator"],
            org: None,
            tool: "transfer_funds",
            requested_risk: None,
            arguments: json!({"amount": 250.5, "currency": "EUR", "to_account": "DE89370400440532013000"}),
            status: 202,
            decision: "pending_approval",
            reason: "approval_required",
        },
        Case {
            name: "undeclared arguments are refused",
            agent: "agent-treasury-1",
            user: "tom",
            roles: &["treasury_operator"],
            org: None,
            tool: "transfer_funds",
            requested_risk: None,
            arguments: json!({"amount": 10, "currency": "EUR", "to_account": "X", "memo": "hi"}),
            status: 403,
            decision: "deny",
            reason: "invalid_arguments",
        },
        Case {
            name: "a prod agent cannot act in dev",
            agent: "agent-reporting-prod",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "search_kb",
            requested_risk: None,
            arguments: json!({"query": "x"}),
            status: 403,
            decision: "deny",
            reason: "environment_mismatch",
        },
        Case {
            name: "a disabled agent is denied everything",
            agent: "agent-legacy-1",
            user: "alice",
            roles: &["support_agent"],
            org: None,
            tool: "search_kb",
            requested_risk: None,
            arguments: json!({"query": "x"}),
            status: 403,
            decision: "deny",
            reason: "agent_disabled",
        },
    ]
}

fn check_answer(reply: &Reply, case: &Case, policy: &(String, String)) {
    let ctx = case.name;
    reply.expect_decision(case.status, case.decision, Some(case.reason), ctx);
    assert_eq!(
        reply.reason_codes().first().map(String::as_str),
        Some(case.reason),
        "{ctx}: the first reason should be `{}`: {reply}",
        case.reason
    );
    assert_eq!(reply.str("agent_id"), case.agent, "{ctx}: {reply}");
    assert_eq!(reply.str("user_id"), case.user, "{ctx}: {reply}");
    assert_eq!(reply.str("tool_id"), case.tool, "{ctx}: {reply}");
    assert_eq!(reply.str("policy_version"), policy.0, "{ctx}: {reply}");
    assert_eq!(reply.str("policy_hash"), policy.1, "{ctx}: {reply}");
    assert!(
        !reply.str("timestamp").is_empty(),
        "{ctx}: no timestamp: {reply}"
    );
    let trace = reply.str("trace_id");
    assert!(
        trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ctx}: trace_id should be 32 hex digits: {reply}"
    );
    assert_eq!(
        reply.header("x-trace-id"),
        trace,
        "{ctx}: the x-trace-id header should carry the trace id"
    );
    assert!(
        reply
            .json
            .get("determining_policies")
            .is_some_and(Value::is_array),
        "{ctx}: no determining_policies: {reply}"
    );
    assert!(
        reply.json.get("error").is_none(),
        "{ctx}: a recorded decision carries no error: {reply}"
    );
}

/// Every seed case answers with the right status, decision and reason, and
/// its record is readable by the agent that asked and by no other.
#[test]
fn seed_cases_decide_over_http_and_records_belong_to_their_agent() {
    let server = Server::start();
    let policy = server.policy();
    let outsider = server.agent_token("agent-privacy-1");
    let mut recorded = Vec::new();

    for case in cases() {
        let agent = server.agent_token(case.agent);
        let user = server.user_token(case.user, case.roles, case.org);
        // Each case is its own run (the loan agent has run limits).
        let mut body =
            json!({"tool_id": case.tool, "arguments": case.arguments, "run_id": case.name});
        if let Some(risk) = case.requested_risk {
            body["requested_risk"] = json!(risk);
        }
        let reply = server.authorize(&agent, &user, &body);
        check_answer(&reply, &case, &policy);
        let id = reply.decision_id(case.name);

        // The agent that asked reads the full record back.
        let record = server.decision(&agent, &id);
        record.expect_status(200, &format!("{}: GET own decision", case.name));
        for field in [
            "decision_id",
            "decision",
            "agent_id",
            "user_id",
            "tool_id",
            "trace_id",
            "timestamp",
            "policy_version",
            "policy_hash",
        ] {
            assert_eq!(
                record.json.get(field),
                reply.json.get(field),
                "{}: record field `{field}` differs from the answer\nanswer: {reply}\nrecord: {record}",
                case.name
            );
        }
        assert_eq!(
            record.json.get("reasons"),
            reply.json.get("reasons"),
            "{}: record reasons differ from the answer\nanswer: {reply}\nrecord: {record}",
            case.name
        );
        let roles: Vec<Value> = case.roles.iter().map(|r| json!(r)).collect();
        assert_eq!(
            record.json.get("user_roles"),
            Some(&Value::Array(roles)),
            "{}: record: {record}",
            case.name
        );
        assert_eq!(record.str("environment"), "dev", "{}: {record}", case.name);
        assert!(
            record.str("arguments_hash").starts_with("sha256:"),
            "{}: {record}",
            case.name
        );

        // Any other agent is told there is nothing there.
        let other = if case.agent == "agent-privacy-1" {
            server.agent_token("agent-support-1")
        } else {
            outsider.clone()
        };
        server.decision(&other, &id).expect_error(
            404,
            "not_found",
            &format!("{}: GET another agent's decision", case.name),
        );
        recorded.push((id, case.decision));
    }

    // Reading a decision still needs a credential.
    let (first, _) = &recorded[0];
    server
        .get(&format!("/v1/decisions/{first}"), None)
        .expect_error(401, "missing_credentials", "GET a decision anonymously");
    // Unknown and absurdly long ids are simply not found.
    let support = server.agent_token("agent-support-1");
    server
        .decision(&support, "00000000-0000-7000-8000-000000000000")
        .expect_error(404, "not_found", "GET an unknown decision");
    server.decision(&support, &"a".repeat(300)).expect_error(
        404,
        "not_found",
        "GET an over-long decision id",
    );

    // Each answered decision is in the log exactly as answered.
    for (id, decision) in &recorded {
        let (column, record) = server
            .stored(id)
            .unwrap_or_else(|| panic!("decision {id} is not in governance.db"));
        assert_eq!(column, *decision, "decisions.decision of {id}");
        assert_eq!(record["decision"], json!(decision), "record of {id}");
    }
    // The approval workflow records its own steps (approvers notified);
    // every other row is a decision that was answered.
    let total = server.count_decisions("json_extract(record, '$.approval') IS NULL", &[]);
    assert_eq!(
        total,
        i64::try_from(recorded.len()).unwrap(),
        "one row per decision answered"
    );
}
