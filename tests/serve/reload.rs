//! Publishing and rolling back policy while the server runs.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::common::{example_policies, poll, Reply, Server};

/// How long a running server may take to serve a newly activated version.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The grants of agent-support-1 in infra/policies/registry.yaml.
const SUPPORT_GRANTS: &str = "    grants:\n      - tool: search_kb\n      - tool: get_ticket\n";

/// The new version's own test cases (`govctl policy publish` runs them).
const REVOKED_CASES: &str = r#"environment: dev
cases:
  - name: search_kb is revoked for the support agent
    agent: agent-support-1
    user: alice
    roles: [support_agent]
    tool: search_kb
    arguments: { query: "reset password" }
    expect: deny
    reason: tool_not_granted
  - name: tickets are still readable
    agent: agent-support-1
    user: alice
    roles: [support_agent]
    tool: get_ticket
    arguments: { ticket_id: "T-1042" }
    expect: allow
"#;

/// Copies the example policies into `dir`, without agent-support-1's
/// search_kb grant, with a test case that says so.
fn revoked_policies(dir: &Path) {
    let source = example_policies();
    for entry in std::fs::read_dir(&source).expect("cannot list infra/policies") {
        let path = entry.expect("cannot read infra/policies").path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".cedar") {
            std::fs::copy(&path, dir.join(&name)).expect("cannot copy a policy file");
        }
    }
    let registry = std::fs::read_to_string(source.join("registry.yaml"))
        .expect("cannot read infra/policies/registry.yaml");
    assert_eq!(
        registry.matches(SUPPORT_GRANTS).count(),
        1,
        "infra/policies/registry.yaml changed: cannot find agent-support-1's grants exactly once"
    );
    let registry = registry.replace(SUPPORT_GRANTS, "    grants:\n      - tool: get_ticket\n");
    std::fs::write(dir.join("registry.yaml"), registry).expect("cannot write registry.yaml");
    // The seed cases expect the grant; this version's own case expects it gone.
    std::fs::create_dir_all(dir.join("tests")).expect("cannot create tests/");
    std::fs::write(dir.join("tests").join("revoked.yaml"), REVOKED_CASES)
        .expect("cannot write the test case");
}

/// Polls search_kb until it is answered under `version`, checking that every
/// answer on the way is consistent with the version it names.
fn until_served(
    server: &Server,
    agent: &str,
    user: &str,
    version: &str,
    old: &str,
    new: &str,
) -> Reply {
    let body = json!({"tool_id": "search_kb", "arguments": {"query": "reset password"}});
    poll(
        RELOAD_TIMEOUT,
        &format!("policy version {version} to be served"),
        || {
            let reply = server.authorize(agent, user, &body);
            let served = reply.str("policy_version");
            // Whatever version answers, the answer must be that version's.
            if served == old {
                reply.expect_decision(200, "allow", Some("allowed"), "search_kb under the grant");
            } else if served == new {
                reply.expect_decision(
                    403,
                    "deny",
                    Some("tool_not_granted"),
                    "search_kb after the revocation",
                );
            } else {
                panic!("answered under an unexpected policy version: {reply}");
            }
            if served == version {
                Ok(reply)
            } else {
                Err(reply.to_string())
            }
        },
    )
}

/// `govctl policy publish` and `rollback` take effect in a running server
/// within seconds, without a restart.
#[test]
fn published_and_rolled_back_policy_is_served_without_restart() {
    let server = Server::start();
    let agent = server.agent_token("agent-support-1");
    let user = server.user_token("alice", &["support_agent"], None);
    let (original, original_hash) = server.policy();
    let body = json!({"tool_id": "search_kb", "arguments": {"query": "reset password"}});

    let before = server.authorize(&agent, &user, &body);
    before.expect_decision(
        200,
        "allow",
        Some("allowed"),
        "search_kb before the revocation",
    );
    assert_eq!(before.str("policy_version"), original, "{before}");

    let dir = server.scratch("revoked-policies");
    revoked_policies(&dir);
    let out = server.govctl(&[
        "policy",
        "publish",
        dir.to_str().unwrap(),
        "--message",
        "revoke",
        "--author",
        "serve-tests",
    ]);
    let revoked = out
        .lines()
        .find_map(|l| l.strip_prefix("published "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `published <id>` line in:\n{out}"))
        .to_owned();
    assert_ne!(revoked, original, "publishing must create a new version");

    let denied = until_served(&server, &agent, &user, &revoked, &original, &revoked);
    assert_ne!(denied.str("policy_hash"), original_hash, "{denied}");
    let (active, _) = server.policy();
    assert_eq!(active, revoked, "/healthz should report the new version");
    // Publishing what is already active changes nothing, and says so.
    let versions = server.govctl(&["policy", "versions"]).lines().count();
    let again = server.govctl(&[
        "policy",
        "publish",
        dir.to_str().unwrap(),
        "--message",
        "revoke again",
        "--author",
        "serve-tests",
    ]);
    assert!(
        again.contains("unchanged: ") && again.contains(&revoked),
        "{again}"
    );
    assert_eq!(
        server.govctl(&["policy", "versions"]).lines().count(),
        versions,
        "no version was added"
    );
    server
        .authorize(
            &agent,
            &user,
            &json!({"tool_id": "get_ticket", "arguments": {"ticket_id": "T-1042"}}),
        )
        .expect_decision(
            200,
            "allow",
            Some("allowed"),
            "get_ticket after the revocation",
        );
    // The deny is on record under the version that decided it.
    let id = denied.decision_id("deny after revocation");
    let (column, record) = server.stored(&id).expect("the deny is recorded");
    assert_eq!(column, "deny");
    assert_eq!(record["policy_version"], json!(revoked), "{record}");

    server.govctl(&["policy", "rollback", &original, "--author", "serve-tests"]);
    let allowed = until_served(&server, &agent, &user, &original, &original, &revoked);
    assert_eq!(allowed.str("policy_hash"), original_hash, "{allowed}");
    let (active, _) = server.policy();
    assert_eq!(
        active, original,
        "/healthz should report the rolled-back version"
    );
    // Each step is a control event in the audit chain, naming who and what.
    let events: Vec<(String, String, String)> = server
        .db()
        .prepare(
            "SELECT json_extract(event, '$.action'), json_extract(event, '$.version_id'), \
             json_extract(event, '$.actor') FROM control_events ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let tail: Vec<(&str, &str, &str)> = events
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|(a, v, by)| (a.as_str(), v.as_str(), by.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            ("policy_published", revoked.as_str(), "serve-tests"),
            ("policy_activated", revoked.as_str(), "serve-tests"),
            ("policy_rolled_back", original.as_str(), "serve-tests"),
        ],
        "{events:?}"
    );
    let verified = server.govctl(&["audit", "verify"]);
    assert!(
        verified.contains("OK: every link and digest verifies"),
        "{verified}"
    );
    // Any version can be read back and compared, by a prefix of its id.
    let shown = server.govctl(&["policy", "show", &revoked[..10]]);
    assert!(
        shown.contains(&format!("version     {revoked}"))
            && shown.contains("by serve-tests")
            && shown.contains("registry.yaml ("),
        "{shown}"
    );
    let registry = server.govctl(&["policy", "show", &revoked[..10], "--file", "registry.yaml"]);
    assert_eq!(
        registry,
        std::fs::read_to_string(dir.join("registry.yaml")).unwrap(),
        "the stored file is the published one"
    );
    let diff = server.govctl(&["policy", "diff", &original[..10], &revoked[..10]]);
    assert!(
        diff.contains("registry.yaml (") && diff.contains("search_kb"),
        "{diff}"
    );
    let same = server.govctl(&["policy", "diff", &original[..10], &original[..10]]);
    assert!(same.contains("no differences"), "{same}");
}

/// A running server whose newly activated version cannot be loaded keeps
/// serving the previous one only up to `--max-policy-staleness`; past it,
/// every call is denied with `policy_stale`, recorded and counted.
#[test]
fn a_version_that_cannot_be_loaded_goes_stale_and_every_call_is_denied() {
    let max = Duration::from_secs(3);
    let server = Server::start_with(&["--max-policy-staleness", "3"]);
    let agent = server.agent_token("agent-support-1");
    let user = server.user_token("alice", &["support_agent"], None);
    let (original, _) = server.policy();
    let body = json!({"tool_id": "search_kb", "arguments": {"query": "reset password"}});
    server.authorize(&agent, &user, &body).expect_decision(
        200,
        "allow",
        Some("allowed"),
        "before the broken activation",
    );

    // Another writer activates a version whose bundle is unreadable.
    let broken = "f".repeat(64);
    let db = rusqlite::Connection::open(server.db_path()).expect("cannot open governance.db");
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO policy_versions (id, content_hash, parent, author, message, created_at, bundle)
         VALUES (?1, 'sha256:0', NULL, 'tests', 'broken', '2026-01-07T12:00:00.000Z', 'not json')",
        [&broken],
    )
    .expect("insert the broken version");
    db.execute(
        "INSERT INTO policy_activations (version_id, activated_by, activated_at)
         VALUES (?1, 'tests', '2026-01-07T12:00:00.000Z')",
        [&broken],
    )
    .expect("activate the broken version");
    drop(db);
    let since = std::time::Instant::now();

    // Within the bound the previous version still decides.
    std::thread::sleep(Duration::from_millis(1500));
    let within = server.authorize(&agent, &user, &body);
    if since.elapsed() < max {
        within.expect_decision(200, "allow", Some("allowed"), "within the bound");
        assert_eq!(within.str("policy_version"), original, "{within}");
    }

    // Past it, every call is denied and recorded under the version it holds.
    std::thread::sleep((max + Duration::from_millis(1200)).saturating_sub(since.elapsed()));
    let stale = server.authorize(&agent, &user, &body);
    stale.expect_decision(403, "deny", Some("policy_stale"), "past the bound");
    assert_eq!(stale.str("policy_version"), original, "{stale}");
    let id = stale.decision_id("the stale deny");
    let (column, record) = server.stored(&id).expect("the stale deny is recorded");
    assert_eq!(column, "deny");
    assert_eq!(record["reasons"][0]["code"], "policy_stale", "{record}");
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .expect("GET /metrics")
        .text()
        .expect("the exposition");
    assert!(
        metrics
            .lines()
            .any(|l| l == "governance_policy_stale_total 1"),
        "{metrics}"
    );
    assert!(
        server
            .stderr_log()
            .contains("cannot load the activated version"),
        "the failure is logged"
    );
}

/// The bound must leave the reload loop time to confirm the version.
#[test]
fn a_staleness_bound_within_the_reload_interval_is_refused() {
    let out = crate::common::run_govctl(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        tempfile::tempdir().unwrap().path().to_str().unwrap(),
        "--reload-interval",
        "5",
        "--max-policy-staleness",
        "5",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-policy-staleness"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
