//! Agent credentials and on-behalf-of user tokens.

use serde_json::json;

use crate::common::{agent_token_in, claims, Reply, Server, AGENT_AUDIENCE, USER_AUDIENCE};

fn unauthorized(reply: &Reply, code: &str, context: &str) {
    reply.expect_error(401, code, context);
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer",
        "{context}: a 401 should carry `WWW-Authenticate: Bearer`: {reply:?}"
    );
}

/// Every way a credential can be missing, forged, expired or of the wrong
/// kind is a 401 with its own code, and none of them records a decision.
#[test]
fn bad_agent_and_user_tokens_are_refused_with_their_codes() {
    let server = Server::start();
    let agent = server.agent_token("agent-support-1");
    let user = server.user_token("alice", &["support_agent"], None);
    let body = json!({"tool_id": "search_kb", "arguments": {"query": "reset password"}});
    let text = body.to_string();
    let json_ct = ("content-type", "application/json");
    let obo = ("x-on-behalf-of", user.as_str());

    // Control: crafted tokens that are valid are accepted, so the crafted
    // failures below fail for the reason they claim.
    let crafted_agent =
        server.craft_token(&claims("agent-support-1", AGENT_AUDIENCE, "agent", 600));
    let mut crafted_user = claims("alice", USER_AUDIENCE, "user", 600);
    crafted_user["roles"] = json!(["support_agent"]);
    let crafted_user = server.craft_token(&crafted_user);
    server
        .authorize(&crafted_agent, &crafted_user, &body)
        .expect_decision(200, "allow", Some("allowed"), "crafted, valid tokens");

    // --- the agent credential ---------------------------------------------
    unauthorized(
        &server.post_authorize(&[obo, json_ct], text.clone()),
        "missing_credentials",
        "no Authorization header",
    );
    let basic = "Basic YWdlbnQ6c2VjcmV0";
    unauthorized(
        &server.post_authorize(&[("authorization", basic), obo, json_ct], text.clone()),
        "invalid_token",
        "a Basic credential",
    );
    unauthorized(
        &server.post_authorize(&[("authorization", "Bearer "), obo, json_ct], text.clone()),
        "invalid_token",
        "an empty bearer token",
    );
    unauthorized(
        &server.authorize("not.a.jwt", &user, &body),
        "invalid_token",
        "a garbage bearer token",
    );
    let mut tampered = agent.clone();
    tampered.insert(tampered.len() / 2, 'x');
    unauthorized(
        &server.authorize(&tampered, &user, &body),
        "invalid_token",
        "a tampered agent token",
    );
    let other_dir = server.scratch("other-data-dir");
    let forged = agent_token_in(&other_dir, "agent-support-1");
    let refused = server.authorize(&forged, &user, &body);
    unauthorized(
        &refused,
        "invalid_token",
        "an agent token signed with another data directory's key",
    );
    // It names the likely cause, not only a signature that fails.
    let message = refused
        .json
        .pointer("/error/message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    assert!(
        message.contains("which this server does not hold") && message.contains("--data-dir"),
        "{message}"
    );
    let expired = server.craft_token(&claims("agent-support-1", AGENT_AUDIENCE, "agent", -600));
    unauthorized(
        &server.authorize(&expired, &user, &body),
        "token_expired",
        "an agent token that expired 10 minutes ago",
    );
    unauthorized(
        &server.get("/v1/decisions/anything", Some(&expired)),
        "token_expired",
        "GET a decision with an expired agent token",
    );
    unauthorized(
        &server.authorize(&user, &user, &body),
        "invalid_token",
        "a user token presented as the agent credential",
    );
    let wrong_issuer = {
        let mut c = claims("agent-support-1", AGENT_AUDIENCE, "agent", 600);
        c["iss"] = json!("https://issuer.example");
        server.craft_token(&c)
    };
    unauthorized(
        &server.authorize(&wrong_issuer, &user, &body),
        "invalid_token",
        "an agent token of another issuer",
    );
    // `alg: none` with no signature.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        agent.split('.').nth(1).unwrap()
    );
    unauthorized(
        &server.authorize(&unsigned, &user, &body),
        "invalid_token",
        "an unsigned (alg none) agent token",
    );

    // --- the user token ------------------------------------------------------
    let bearer = format!("Bearer {agent}");
    let auth = ("authorization", bearer.as_str());
    unauthorized(
        &server.post_authorize(&[auth, json_ct], text.clone()),
        "missing_user_token",
        "no X-On-Behalf-Of header",
    );
    unauthorized(
        &server.post_authorize(&[auth, ("x-on-behalf-of", "  "), json_ct], text.clone()),
        "missing_user_token",
        "a blank X-On-Behalf-Of header",
    );
    unauthorized(
        &server.authorize(&agent, &agent, &body),
        "invalid_user_token",
        "an agent token presented as the user token",
    );
    unauthorized(
        &server.authorize(&agent, "garbage", &body),
        "invalid_user_token",
        "a garbage user token",
    );
    let forged_user = {
        let dir = other_dir.to_str().unwrap();
        crate::common::govctl_ok(&[
            "user",
            "token",
            "alice",
            "--role",
            "support_agent",
            "--data-dir",
            dir,
        ])
        .trim()
        .to_owned()
    };
    unauthorized(
        &server.authorize(&agent, &forged_user, &body),
        "invalid_user_token",
        "a user token signed with another data directory's key",
    );
    let mut expired_user = claims("alice", USER_AUDIENCE, "user", -600);
    expired_user["roles"] = json!(["support_agent"]);
    let expired_user = server.craft_token(&expired_user);
    unauthorized(
        &server.authorize(&agent, &expired_user, &body),
        "user_token_expired",
        "a user token that expired 10 minutes ago",
    );
    // The agent credential is checked first.
    unauthorized(
        &server.authorize(&expired, &expired_user, &body),
        "token_expired",
        "both tokens expired",
    );

    assert_eq!(
        server.count_decisions("1 = 1", &[]),
        1,
        "only the control request may be recorded; refused credentials decide nothing\n{}",
        server.stderr_log()
    );
}
