//! The audit trail of a running `govctl serve`, end to end: seed 003's
//! Meridian Capital loan scenario, told back by `govctl audit explain`
//! (compared with a reviewed snapshot), verified and exported by `govctl
//! audit`, and counted at `GET /metrics`.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::approval_suite::ApprovalHost;
use crate::approvals::Local;
use crate::common::{example_policies, poll, Server};

const SESSION: &str = "loan-L-2024-118";
/// The loan agent has run limits: one run per application.
const RUN: &str = "run-L-2024-118";

/// The example policies without the credit bureau's business-hours rule, so
/// that the story does not depend on the hour the suite runs at.
fn daytime_policies(dir: &Path) {
    let src = example_policies();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::copy(
        src.join("tests/seed_cases.yaml"),
        dir.join("tests/seed_cases.yaml"),
    )
    .unwrap();
    crate::common::without_business_hours(dir);
}

/// Publishes `dir` and waits until the server decides with it.
fn publish(server: &Server, dir: &Path) {
    let (before, _) = server.policy();
    server.govctl(&[
        "policy",
        "publish",
        dir.to_str().unwrap(),
        "--message",
        "Meridian lending rules, Q3 model review",
        "--author",
        "ana.risk",
    ]);
    poll(Duration::from_secs(10), "the new version served", || {
        let (now, _) = server.policy();
        (now != before)
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    });
}

fn call(server: &Server, tool: &str, arguments: Value, reasoning: &str) -> Value {
    let agent = server.agent_token("meridian-loan-agent");
    let sofia = server.user_token("sofia", &["senior_underwriter"], Some("meridian-capital"));
    let reply = server.authorize(
        &agent,
        &sofia,
        &json!({
            "tool_id": tool, "arguments": arguments, "session_id": SESSION, "run_id": RUN,
            "reasoning": reasoning
        }),
    );
    reply.json
}

/// Seed 003: the underwriter's agent pulls the credit report, computes the
/// risk score, reads the state's rules, and recommends approval, which waits
/// for a senior underwriter; the approved call is then made.
fn meridian_loan(host: &Local) -> String {
    let server = &host.0;
    let dir = server.scratch("meridian-policies");
    daytime_policies(&dir);
    publish(server, &dir);
    for (tool, args, why) in [
        (
            "pull_credit_report",
            json!({"applicant_id": "A-77"}),
            "Need the bureau file for application L-2024-118.",
        ),
        (
            "calculate_risk_score",
            json!({"application_id": "L-2024-118"}),
            "Score the application from the bureau file.",
        ),
        (
            "lookup_regulatory_requirements",
            json!({"state": "OH", "product": "conventional-30y"}),
            "Check Ohio's rules for a conventional 30-year loan.",
        ),
    ] {
        let r = call(server, tool, args, why);
        assert_eq!(r["decision"], "allow", "{tool}: {r}");
    }
    let before = host.notifications();
    let recommendation = json!({"application_id": "L-2024-118", "recommendation": "approve"});
    let reasoning = "Risk score 712 is above the 680 threshold.\nDebt-to-income 28% is under Ohio's 43% limit.\nCredit report shows no delinquencies in 24 months; recommending approval.";
    let pending = call(
        server,
        "generate_recommendation",
        recommendation.clone(),
        reasoning,
    );
    assert_eq!(pending["decision"], "pending_approval", "{pending}");
    let review = host.review_id(before);
    let (status, page) = host.answer(
        &review,
        "approve",
        "rita",
        &["senior-underwriters"],
        "Checked the file; agree",
    );
    assert_eq!(status, 200, "{page}");
    let approval_id = pending["approval_id"].as_str().unwrap().to_owned();
    poll(Duration::from_secs(10), "the approval", || {
        let (_, s) = host.poll("meridian-loan-agent", &approval_id);
        (s["status"] == "granted")
            .then_some(())
            .ok_or_else(|| s.to_string())
    });
    let agent = server.agent_token("meridian-loan-agent");
    let sofia = server.user_token("sofia", &["senior_underwriter"], Some("meridian-capital"));
    let used = server.authorize(
        &agent,
        &sofia,
        &json!({"tool_id": "generate_recommendation", "arguments": recommendation,
                "session_id": SESSION, "run_id": RUN, "approval_id": approval_id}),
    );
    used.expect_decision(
        200,
        "allow",
        Some("approved_call"),
        "the approved recommendation",
    );
    pending["decision_id"].as_str().unwrap().to_owned()
}

#[test]
fn explain_tells_the_meridian_loan_story() {
    let host = Local(Server::start());
    let server = &host.0;
    let decision = meridian_loan(&host);
    server.govctl(&["audit", "digest"]);
    let story = server.govctl(&["audit", "explain", &decision]);
    insta::with_settings!({
        filters => vec![
            (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uuid]"),
            (r"\b[0-9a-f]{64}\b", "[sha256]"),
            (r"\b[0-9a-f]{32}\b", "[id]"),
            (r"\b[0-9a-f]{12}\b", "[id12]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "[time]"),
            (r"\d+ µs", "[n] µs"),
            (r"digest #\d+", "digest #[n]"),
        ],
        snapshot_path => "snapshots",
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!("audit_explain_meridian", story);
    });
    // What the snapshot must show, said again so a careless re-review cannot drop it.
    for needed in [
        "meridian-loan-agent (version 3.0.1)",
        "sofia (roles: senior_underwriter)",
        "generate_recommendation",
        "Risk score 712 is above the 680 threshold.",
        "pull_credit_report",
        "calculate_risk_score",
        "lookup_regulatory_requirements",
        "approval_granted",
        "by rita",
        "published",
        "ana.risk",
    ] {
        assert!(story.contains(needed), "`{needed}` missing from:\n{story}");
    }
}

#[test]
fn the_trail_verifies_exports_and_counts() {
    let host = Local(Server::start());
    let server = &host.0;
    meridian_loan(&host);
    let report = server.govctl(&["audit", "verify"]);
    assert!(
        report.contains("OK: every link and digest verifies"),
        "{report}"
    );

    let jsonl = server.govctl(&["audit", "export", "--since", "1d"]);
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let layers: Vec<&str> = lines.iter().map(|l| l["layer"].as_str().unwrap()).collect();
    assert!(
        layers.contains(&"control") && layers.contains(&"decision"),
        "{layers:?}"
    );
    let published = lines
        .iter()
        .find(|l| l["record"]["actor"] == "ana.risk" && l["record"]["action"] == "policy_published")
        .expect("the publication is exported");
    let diff = published["record"]["changes"].to_string();
    assert!(
        diff.contains("credit-report-hours"),
        "the diff shows the removed rule: {diff}"
    );
    // An export verifies on its own, and an edited one does not.
    let file = server.scratch("export").join("evidence.jsonl");
    std::fs::write(&file, &jsonl).unwrap();
    let checked = crate::common::run_govctl(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    std::fs::write(&file, jsonl.replacen("\"sofia\"", "\"mallory\"", 1)).unwrap();
    let edited = crate::common::run_govctl(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert_eq!(edited.status.code(), Some(1), "an edited export fails");
    assert!(String::from_utf8_lossy(&edited.stdout).contains("the record was modified"));

    // The whole trail carries its digests; a digest kept from `govctl audit
    // digest` catches a copy whose newest digests were cut.
    let sealed = server.govctl(&["audit", "digest"]);
    let kept = sealed
        .lines()
        .find_map(|l| l.strip_prefix("newest digest: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest hash in:\n{sealed}"))
        .to_owned();
    let whole = server.govctl(&["audit", "export"]);
    let digests = whole
        .lines()
        .filter(|l| l.contains(r#""layer":"digest""#))
        .count();
    assert!(digests >= 1, "{whole}");
    let key = sealed
        .lines()
        .find_map(|l| l.strip_prefix("audit key (verify with --public-key): "))
        .expect("the public key")
        .to_owned();
    let trail = server.scratch("export").join("trail.jsonl");
    std::fs::write(&trail, &whole).unwrap();
    let args = |file: &std::path::Path| {
        crate::common::run_govctl(&[
            "audit",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--public-key",
            &key,
            "--min-digest",
            &kept,
        ])
    };
    let checked = args(&trail);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && said.contains("signatures checked"),
        "{said}"
    );
    // Another key (RFC 8032's first test key): the digests are intact but
    // not signed by it. That is reported as such, with the real count, and
    // not as tampering; it still exits 1, since nothing is vouched for.
    let wrong = crate::common::run_govctl(&[
        "audit",
        "verify",
        "--file",
        trail.to_str().unwrap(),
        "--public-key",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    ]);
    let said = String::from_utf8_lossy(&wrong.stdout);
    assert_eq!(wrong.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{digests} digest{} (intact, but not signed by this key)",
            if digests == 1 { "" } else { "s" }
        )) && said.contains("WRONG KEY: the digests are not signed by this key")
            && !said.contains("TAMPERED"),
        "{said}"
    );
    let cut: String = whole
        .lines()
        .filter(|l| !l.contains(&kept))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&trail, cut).unwrap();
    let checked = args(&trail);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{said}");
    assert!(said.contains("kept digest"), "{said}");
    let store = server.govctl(&["audit", "verify", "--min-digest", &kept]);
    assert!(store.contains("OK"), "{store}");

    let csv = server.govctl(&["audit", "export", "--since", "1d", "--format", "csv"]);
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), lines.len(), "one row per record");
    let reasoning = header.iter().position(|h| h == "reasoning").unwrap();
    assert!(
        rows.iter()
            .any(|r| r[reasoning].contains("Risk score 712\nDebt")
                || r[reasoning].contains("Risk score 712 is above the 680 threshold.\n")),
        "multi-line reasoning survives the CSV"
    );

    let metrics = server.get("/metrics", None);
    metrics.expect_status(200, "/metrics");
    for series in [
        "governance_decisions_total{result=\"allow\"} 4",
        "governance_decisions_total{result=\"pending_approval\"} 1",
        "governance_approvals_total{outcome=\"requested\"} 1",
        "governance_approvals_total{outcome=\"approved\"} 1",
        "governance_decision_latency_seconds_count 5",
    ] {
        // The whole line: `} 4` must not pass for `} 40`.
        assert!(
            metrics.text.lines().any(|l| l == series),
            "`{series}` missing:\n{}",
            metrics.text
        );
    }

    // Tampering with the file is caught and the broken link named.
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    db.execute_batch(
        "DROP TRIGGER decisions_no_update;
         UPDATE decisions SET record = replace(record, '\"sofia\"', '\"mallory\"')
         WHERE json_extract(record, '$.tool_id') = 'pull_credit_report';",
    )
    .unwrap();
    let out = crate::common::run_govctl(&["audit", "verify", "--data-dir", server.data_dir_str()]);
    assert_eq!(out.status.code(), Some(1), "verify fails on a tampered log");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("first broken link") && text.contains("the record was modified"),
        "{text}"
    );
    // The tampered record's own story and show say so, and exit 1: an
    // edited record is never presented as sealed.
    let edited: String = db
        .query_row(
            "SELECT decision_id FROM decisions WHERE json_extract(record, '$.tool_id') = \
             'pull_credit_report' AND json_extract(record, '$.user_id') = 'mallory' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let dir = server.data_dir_str();
    let story = crate::common::run_govctl(&["audit", "explain", &edited, "--data-dir", dir]);
    let told = String::from_utf8_lossy(&story.stdout);
    assert_eq!(story.status.code(), Some(1), "{told}");
    assert!(
        told.contains("TAMPERED      the record's bytes do not match its link")
            && !told.contains("sealed by     digest"),
        "{told}"
    );
    let shown = crate::common::run_govctl(&["decision", "show", &edited, "--data-dir", dir]);
    assert_eq!(shown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&shown.stderr).contains("TAMPERED: the record's bytes"));
    // Its neighbour in the chain is untouched, but no longer followed.
    let untouched: String = db
        .query_row(
            "SELECT b.decision_id FROM decisions a JOIN decisions b \
             ON a.partition = b.partition AND b.seq = a.seq - 1 WHERE a.decision_id = ?1",
            [&edited],
            |r| r.get(0),
        )
        .unwrap_or_default();
    if !untouched.is_empty() {
        let shown = crate::common::run_govctl(&["decision", "show", &untouched, "--data-dir", dir]);
        assert_eq!(
            shown.status.code(),
            Some(0),
            "the predecessor's own link still holds"
        );
    }
}

/// The loan agent's timeline of the last hour, with `extra` arguments.
fn timeline(server: &Server, extra: &[&str]) -> String {
    let mut args = vec![
        "incident",
        "timeline",
        "--agent",
        "meridian-loan-agent",
        "--since",
        "1h",
    ];
    args.extend_from_slice(extra);
    server.govctl(&args)
}

/// Seed 003's incident response: contain (the kill switch), then trace the
/// agent's every record in order, with the chain runs that show nothing of
/// it was left out, and find the agent in the inventory.
#[test]
fn an_incident_timeline_lists_every_record_of_the_agent_and_proves_it_complete() {
    let host = Local(Server::start());
    let server = &host.0;
    meridian_loan(&host);
    // Another agent's records share the window (and maybe the chain).
    let compliance = server.agent_token("meridian-compliance-agent");
    let uma = server.user_token("uma", &["underwriter"], Some("meridian-capital"));
    server
        .authorize(
            &compliance,
            &uma,
            &json!({"tool_id": "lookup_regulatory_requirements",
                    "arguments": {"state": "NY", "product": "auto"}, "run_id": "run-c-1"}),
        )
        .expect_decision(200, "allow", None, "the compliance agent's call");
    server.govctl(&[
        "agent",
        "disable",
        "meridian-loan-agent",
        "--version",
        "3.0.1",
        "--reason",
        "INC-42: recommendations without review",
        "--by",
        "oncall",
    ]);

    let text = timeline(server, &[]);
    let kinds_and_tools: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| l.starts_with("20"))
        .map(|l| {
            let mut words = l.split_whitespace().skip(1);
            let kind = words.next().unwrap_or_default();
            let what = match kind {
                "approval" => words.nth(1),
                _ => words.nth(2),
            }
            .unwrap_or_default();
            (kind, what)
        })
        .collect();
    assert_eq!(
        kinds_and_tools,
        [
            // The example set at start, then the Meridian rules.
            ("control", "by"),
            ("control", "by"),
            ("decision", "pull_credit_report"),
            ("decision", "calculate_risk_score"),
            ("decision", "lookup_regulatory_requirements"),
            ("decision", "generate_recommendation"),
            // Requested, then approved.
            ("approval", "generate_recommendation"),
            ("approval", "generate_recommendation"),
            ("decision", "generate_recommendation"),
            ("control", "by"),
        ],
        "{text}"
    );
    for needed in [
        "policy_activated by ana.risk",
        "pending_approval generate_recommendation for user sofia",
        "approved by rita",
        "govctl agent disable meridian-loan-agent --version 3.0.1",
        "allow generate_recommendation for user sofia (approved_call)",
        "agent_disabled by oncall (version 3.0.1): INC-42: recommendations without review",
        "every link verifies",
        "govctl agent disable meridian-loan-agent",
    ] {
        assert!(text.contains(needed), "`{needed}` missing from:\n{text}");
    }
    assert!(
        !text.contains("uma"),
        "another agent's record is listed:\n{text}"
    );
    let json: Value = serde_json::from_str(&timeline(server, &["--format", "json"])).unwrap();
    let listed: u64 = json["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["listed"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, 10, "{json}");

    // The inventory names its owner and its last activity; an agent that
    // never acted has none.
    let inventory: Value =
        serde_json::from_str(&server.govctl(&["registry", "export", "--format", "json"])).unwrap();
    let agent = |id: &str| {
        inventory
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} missing from {inventory}"))
    };
    let loan = agent("meridian-loan-agent");
    assert_eq!(loan["owner"], "priya.shah@meridian.example");
    assert!(loan["last_activity"].as_str().unwrap().starts_with("20"));
    assert_eq!(agent("agent-ops-1")["last_activity"], Value::Null);
    let csv = server.govctl(&["registry", "export"]);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("meridian-loan-agent,3.0.1,priya.shah@meridian.example,")),
        "{csv}"
    );

    // The access review counts the window's decisions; a reviewer's outcome
    // is a control event, in the agent's timeline too.
    let review: Value = serde_json::from_str(
        &server.govctl(&["review", "access", "--since", "1h", "--format", "json"]),
    )
    .unwrap();
    let loan = review["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "meridian-loan-agent")
        .unwrap();
    let grant = |tool: &str| {
        loan["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["tool_id"] == tool)
            .unwrap_or_else(|| panic!("{tool} not reviewed: {loan}"))
            .clone()
    };
    assert_eq!(grant("pull_credit_report")["allowed"], 1);
    assert_eq!(grant("generate_recommendation")["allowed"], 1);
    assert_eq!(grant("flag_for_review")["findings"], json!(["unused"]));
    assert_eq!(loan["run_limit"]["peak"], 4, "{loan}");
    let markdown = server.govctl(&["review", "access", "--since", "1h"]);
    assert!(
        markdown.contains("## meridian-loan-agent (version 3.0.1)")
            && markdown.contains("Owner: priya.shah@meridian.example"),
        "{markdown}"
    );
    let revoked = crate::common::run_govctl(&[
        "review",
        "record",
        "--agent",
        "meridian-loan-agent",
        "--tool",
        "flag_for_review",
        "--outcome",
        "revoke",
        "--comment",
        "never used this quarter",
        "--by",
        "risk-lead",
        "--data-dir",
        server.data_dir_str(),
    ]);
    assert!(revoked.status.success());
    // A test case of the policy set expects the grant: the revocation is
    // recorded, and the change is left to a person.
    let warning = String::from_utf8_lossy(&revoked.stderr);
    assert!(
        warning.contains("no change proposed")
            && warning.contains("any underwriter may flag for review"),
        "{warning}"
    );
    let text = timeline(server, &[]);
    assert!(text.contains("access_reviewed by risk-lead"), "{text}");

    // A record of the agent taken out of the log breaks its chain's run.
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    db.execute_batch(
        "DROP TRIGGER IF EXISTS decisions_no_delete;
         DELETE FROM decisions WHERE json_extract(record, '$.tool_id') = 'calculate_risk_score';",
    )
    .unwrap();
    let out = crate::common::run_govctl(&[
        "incident",
        "timeline",
        "--agent",
        "meridian-loan-agent",
        "--since",
        "1h",
        "--data-dir",
        server.data_dir_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "a broken run fails the command");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN: position"), "{text}");
    assert!(!text.contains("calculate_risk_score"), "{text}");
}

/// Shadow mode: a log-only forbid is evaluated with every decision and
/// recorded where it would have denied, but denies nothing; `govctl shadow
/// report` counts exactly the records that say so.
#[test]
fn a_log_only_forbid_flips_nothing_and_the_report_counts_its_records() {
    let server = Server::start();
    let dir = server.scratch("shadow-policies");
    for entry in std::fs::read_dir(example_policies()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    // A whole file runs log-only, and so does one annotated policy.
    std::fs::write(
        dir.join("support-trial.log-only.cedar"),
        "@id(\"trial:no-password-searches\")\n@reason(\"forbidden_by_policy\")\n\
         forbid (principal, action == Action::\"search_kb\", resource)\n\
         when { context.arguments.query like \"*password*\" };\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("support.cedar"),
        "@id(\"trial:no-ticket-reads\")\n@log_only(\"until the Q1 review\")\n\
         forbid (principal, action == Action::\"get_ticket\", resource);\n",
    )
    .unwrap();
    publish(&server, &dir);
    let agent = server.agent_token("agent-support-1");
    let lee = server.user_token("lee", &["support_agent"], None);
    for query in [
        "reset password",
        "refund policy",
        "password rules",
        "shipping times",
        "forgot password",
    ] {
        server
            .authorize(
                &agent,
                &lee,
                &json!({"tool_id": "search_kb", "arguments": {"query": query}}),
            )
            .expect_decision(
                200,
                "allow",
                Some("allowed"),
                "a log-only forbid denies nothing",
            );
    }
    server
        .authorize(
            &agent,
            &lee,
            &json!({"tool_id": "get_ticket", "arguments": {"ticket_id": "T-9"}}),
        )
        .expect_decision(200, "allow", Some("allowed"), "nor does an annotated one");

    // The records say which decisions it would have flipped.
    let db = server.db();
    let shadowed: Vec<(String, String)> = db
        .prepare(
            "SELECT json_extract(record, '$.arguments.query'), json_extract(record, '$.shadow.policies[0]')
             FROM decisions WHERE json_extract(record, '$.shadow.decision') = 'deny' ORDER BY rowid",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        shadowed,
        [
            (
                "reset password".to_owned(),
                "trial:no-password-searches".to_owned()
            ),
            (
                "password rules".to_owned(),
                "trial:no-password-searches".to_owned()
            ),
            (
                "forgot password".to_owned(),
                "trial:no-password-searches".to_owned()
            ),
            (String::new(), "trial:no-ticket-reads".to_owned()),
        ]
    );
    let report: Value =
        serde_json::from_str(&server.govctl(&["shadow", "report", "--since", "1h", "--json"]))
            .unwrap();
    assert_eq!(report["flipped"], 4, "{report}");
    assert_eq!(report["decisions"], 6, "{report}");
    let trial = &report["policies"]["trial:no-password-searches"];
    assert_eq!(trial["would_deny"], 3, "{report}");
    assert_eq!(trial["tools"]["search_kb"], 3, "{report}");
    assert_eq!(report["policies"]["trial:no-ticket-reads"]["would_deny"], 1);
    let text = server.govctl(&["shadow", "report", "--since", "1h"]);
    assert!(
        text.contains("4 of 6 decisions would have been decided otherwise"),
        "{text}"
    );
}

/// `govctl serve` seals what it appends: a signed digest every
/// `--digest-interval` seconds while records arrive (none while nothing
/// does), and one when it stops on SIGTERM.
#[test]
fn digests_are_written_periodically_and_when_the_server_stops() {
    let digests = |server: &Server| -> i64 {
        server
            .db()
            .query_row("SELECT count(*) FROM audit_digests", [], |r| r.get(0))
            .unwrap()
    };
    let call = |server: &Server| {
        let agent = server.agent_token("agent-support-1");
        let user = server.user_token("alice", &["support_agent"], None);
        server
            .authorize(
                &agent,
                &user,
                &json!({"tool_id": "search_kb", "arguments": {"query": "refund"}}),
            )
            .expect_status(200, "an allowed call");
    };

    let periodic = Server::start_with(&["--digest-interval", "1"]);
    call(&periodic);
    poll(Duration::from_secs(10), "a periodic digest", || {
        (digests(&periodic) >= 1)
            .then_some(())
            .ok_or_else(|| "none yet".to_owned())
    });
    let sealed = digests(&periodic);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(digests(&periodic), sealed, "nothing new, no new digest");
    let report: Value =
        serde_json::from_str(&periodic.govctl(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(report["records_after_newest_digest"], 0, "{report}");

    // An hour between digests: only the stop seals the last record.
    let mut stopping = Server::start_with(&["--digest-interval", "3600"]);
    call(&stopping);
    assert_eq!(digests(&stopping), 0);
    let status = stopping.stop();
    assert!(
        status.success(),
        "govctl serve exits 0 on SIGTERM: {status}"
    );
    assert_eq!(digests(&stopping), 1, "the stop sealed what was appended");
    let report: Value =
        serde_json::from_str(&stopping.govctl(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(report["records_after_newest_digest"], 0, "{report}");
    assert_eq!(report["findings"], json!([]), "{report}");
}
