//! Every allow answered is durably recorded as answered.

use serde_json::{json, Value};

use crate::common::{arguments_hash, Server};

const THREADS: usize = 8;
const PER_THREAD: usize = 25;

struct Answered {
    decision_id: String,
    trace_id: String,
    policy_version: String,
    policy_hash: String,
    arguments: Value,
}

/// Concurrent allowed calls: each answered decision is in the log with
/// decision `allow` and the arguments hash, policy version and trace id
/// that were answered.
#[test]
fn concurrent_allows_are_all_recorded_as_answered() {
    let mut server = Server::start();
    let agent = server.agent_token("agent-support-1");
    let user = server.user_token("alice", &["support_agent"], None);

    let answered: Vec<Answered> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, agent, user) = (&server, &agent, &user);
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            // Keys in sorted order: see idempotency.rs for why.
                            let arguments = json!({"limit": i, "query": format!("q-{t}-{i}")});
                            let body = json!({
                                "tool_id": "search_kb",
                                "arguments": arguments,
                                "session_id": format!("session-{t}"),
                            });
                            let traceparent =
                                format!("00-{:016x}{:016x}-00f067aa0ba902b7-01", t + 1, i + 1);
                            let trace_given = i % 2 == 0;
                            let extra: &[(&str, &str)] = if trace_given {
                                &[("traceparent", traceparent.as_str())]
                            } else {
                                &[]
                            };
                            let reply = server.authorize_with(agent, user, &body, extra);
                            let context = format!("request {t}/{i}");
                            reply.expect_decision(200, "allow", Some("allowed"), &context);
                            let trace_id = reply.str("trace_id").to_owned();
                            if trace_given {
                                assert_eq!(
                                    trace_id,
                                    traceparent[3..35],
                                    "{context}: the traceparent's trace id should be kept: {reply}"
                                );
                            }
                            Answered {
                                decision_id: reply.decision_id(&context),
                                trace_id,
                                policy_version: reply.str("policy_version").to_owned(),
                                policy_hash: reply.str("policy_hash").to_owned(),
                                arguments,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a request thread panicked"))
            .collect()
    });

    // Killed the moment the last answer arrived, as a crash would: what was
    // answered must already be on disk, not in a buffer a shutdown flushes.
    server.kill();
    let total = THREADS * PER_THREAD;
    assert_eq!(answered.len(), total);
    let mut ids: Vec<&str> = answered.iter().map(|a| a.decision_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "decision ids must be unique");

    for a in &answered {
        let id = &a.decision_id;
        let (column, record) = server
            .stored(id)
            .unwrap_or_else(|| panic!("allow {id} was answered but is not in governance.db"));
        assert_eq!(column, "allow", "decisions.decision of {id}");
        let expect = [
            ("decision", json!("allow")),
            ("agent_id", json!("agent-support-1")),
            ("user_id", json!("alice")),
            ("tool_id", json!("search_kb")),
            ("trace_id", json!(a.trace_id)),
            ("policy_version", json!(a.policy_version)),
            ("policy_hash", json!(a.policy_hash)),
            ("arguments_hash", json!(arguments_hash(&a.arguments))),
        ];
        for (field, value) in expect {
            assert_eq!(
                record.get(field),
                Some(&value),
                "record {id}, field `{field}`, for arguments {}\nrecord: {record}",
                a.arguments
            );
        }
    }
    assert_eq!(
        server.count_decisions("agent_id = 'agent-support-1' AND decision = 'allow'", &[]),
        i64::try_from(total).unwrap(),
        "the log holds exactly the decisions that were answered"
    );
}
