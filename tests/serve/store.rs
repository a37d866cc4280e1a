//! When the decision log cannot be written, nothing is allowed.

use std::time::Duration;

use serde_json::json;

use crate::common::{poll, Reply, Server};

fn expect_not_recorded(reply: &Reply, context: &str) {
    assert_ne!(
        reply.status, 200,
        "{context}: an allow escaped while the decision log was unwritable: {reply}"
    );
    reply.expect_decision(503, "deny", Some("decision_not_recorded"), context);
    assert_eq!(
        reply.error_code(),
        "decision_not_recorded",
        "{context}: {reply}"
    );
    assert!(
        !reply.header("retry-after").is_empty(),
        "{context}: a 503 should say when to retry: {reply:?}"
    );
}

/// While another process holds the database's write lock, an otherwise
/// allowed call is a 503 deny; once the lock is gone it is allowed again, and
/// every allow answered is in the log while no unrecorded deny is.
#[test]
fn an_unwritable_decision_log_denies_with_503_and_recovers() {
    let server = Server::start();
    let agent = server.agent_token("agent-support-1");
    let user = server.user_token("alice", &["support_agent"], None);
    let loan_agent = server.agent_token("meridian-loan-agent");
    let sofia = server.user_token("sofia", &["senior_underwriter"], Some("meridian-capital"));
    let allowed = json!({"tool_id": "search_kb", "arguments": {"query": "reset password"}});
    let keyed = json!({
        "tool_id": "search_kb",
        "arguments": {"query": "during the outage"},
        "idempotency_key": "outage-1",
    });
    let pending = json!({
        "tool_id": "generate_recommendation",
        "arguments": {"application_id": "L-1", "recommendation": "approve"},
        "run_id": "L-1",
    });

    let mut allows = Vec::new();
    let mut unrecorded = Vec::new();

    let before = server.authorize(&agent, &user, &allowed);
    before.expect_decision(200, "allow", Some("allowed"), "before the lock");
    allows.push(before.decision_id("before the lock"));

    // Take the write lock the way another process would.
    let mut locker =
        rusqlite::Connection::open(server.db_path()).expect("cannot open governance.db");
    locker
        .busy_timeout(Duration::from_secs(10))
        .expect("cannot set a busy timeout");
    let lock = locker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .expect("cannot take the exclusive lock");

    let reply = server.authorize(&agent, &user, &allowed);
    expect_not_recorded(&reply, "an allowed call while the log is locked");
    unrecorded.push(reply.decision_id("while locked"));

    // Concurrent calls fail together too, including ones that would be pending.
    let mut jobs: Vec<(String, &str, &str, &serde_json::Value)> = (0..4)
        .map(|i| {
            (
                format!("concurrent allowed call {i} while locked"),
                agent.as_str(),
                user.as_str(),
                &allowed,
            )
        })
        .collect();
    jobs.push((
        "an idempotent call while locked".to_owned(),
        &agent,
        &user,
        &keyed,
    ));
    jobs.push((
        "a call that would wait for approval, while locked".to_owned(),
        &loan_agent,
        &sofia,
        &pending,
    ));
    let server = &server;
    let replies: Vec<(String, Reply)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(what, agent, user, body)| {
                s.spawn(move || {
                    let reply = server.authorize(agent, user, body);
                    (what, reply)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread panicked"))
            .collect()
    });
    let mut keyed_unrecorded = String::new();
    for (what, reply) in &replies {
        expect_not_recorded(reply, what);
        let id = reply.decision_id(what);
        if what.contains("idempotent") {
            keyed_unrecorded.clone_from(&id);
        }
        unrecorded.push(id);
    }

    lock.rollback().expect("cannot release the lock");
    drop(locker);

    // Recovered: the same call is allowed again, promptly.
    let after = poll(
        Duration::from_secs(5),
        "an allow after the lock is released",
        || {
            let reply = server.authorize(&agent, &user, &allowed);
            if reply.status == 200 {
                Ok(reply)
            } else {
                Err(reply.to_string())
            }
        },
    );
    after.expect_decision(200, "allow", Some("allowed"), "after the lock");
    allows.push(after.decision_id("after the lock"));

    // The unrecorded deny left no trace of the key: the retry is decided afresh.
    let retried = server.authorize(&agent, &user, &keyed);
    retried.expect_decision(
        200,
        "allow",
        Some("allowed"),
        "the idempotent call, retried",
    );
    let retried_id = retried.decision_id("the idempotent call, retried");
    assert_ne!(
        retried_id, keyed_unrecorded,
        "the retry must not replay the decision that was never recorded"
    );
    allows.push(retried_id);
    server
        .authorize(&loan_agent, &sofia, &pending)
        .expect_decision(202, "pending_approval", None, "the pending call, retried");

    for id in &allows {
        let (column, record) = server
            .stored(id)
            .unwrap_or_else(|| panic!("allow {id} was answered 200 but is not in governance.db"));
        assert_eq!(column, "allow", "decision {id}");
        assert_eq!(record["decision_id"], json!(id), "record of {id}");
    }
    for id in &unrecorded {
        assert!(
            server.stored(id).is_none(),
            "decision {id} was answered `decision_not_recorded` but is in the log"
        );
    }
    assert_eq!(
        server.count_decisions("decision = 'allow'", &[]),
        i64::try_from(allows.len()).unwrap(),
        "the log holds exactly the allows that were answered"
    );
}
