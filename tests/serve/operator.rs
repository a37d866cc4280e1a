//! Operator commands that must never mislead: read-only commands refuse a
//! data directory that holds no store (a typo must not be reported as a
//! clean, empty audit trail).

use crate::common::run_govctl;

#[test]
fn read_only_commands_refuse_a_directory_without_a_store() {
    let root = tempfile::tempdir().unwrap();
    let typo = root.path().join("govctl-dta");
    let dir = typo.to_str().unwrap();
    let commands: [&[&str]; 10] = [
        &["audit", "verify"],
        &["audit", "explain", "0190a0b0-0000-7000-8000-000000000000"],
        &["audit", "export", "--since", "1d"],
        &["audit", "digest"],
        &["decision", "show", "0190a0b0-0000-7000-8000-000000000000"],
        &["policy", "versions"],
        &["policy", "activate", "abcdef123456"],
        &["anomalies"],
        &["agent", "disable", "agent-support-1", "--reason", "test"],
        &["incident", "timeline", "--agent", "agent-support-1"],
    ];
    for args in commands {
        let mut with_dir = args.to_vec();
        with_dir.extend(["--data-dir", dir]);
        let out = run_govctl(&with_dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "govctl {args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("`{dir}` holds no store")),
            "govctl {args:?}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("OK"),
            "govctl {args:?} reported OK"
        );
        assert!(!typo.exists(), "govctl {args:?} created `{dir}`");
    }
}

/// A copy of the example policy set in `dir`, its test cases included.
fn example_copy(dir: &std::path::Path) {
    let src = crate::common::example_policies();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    for sub in ["", "tests"] {
        for entry in std::fs::read_dir(src.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
}

#[test]
fn a_failing_policy_test_says_which_rule_answered() {
    let dir = tempfile::tempdir().unwrap();
    example_copy(dir.path());
    let cases = dir.path().join("tests/seed_cases.yaml");
    let text = std::fs::read_to_string(&cases).unwrap();
    let edited = text.replacen(
        "    arguments: { query: \"error\" }\n    expect: deny\n    reason: tool_not_granted\n",
        "    arguments: { query: \"error\" }\n    expect: allow\n",
        1,
    );
    assert_ne!(edited, text, "the example case changed");
    std::fs::write(&cases, edited).unwrap();
    let out = run_govctl(&["policy", "test", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let fail = stdout
        .lines()
        .find(|l| l.starts_with("FAIL support agent may not search logs"))
        .unwrap_or_else(|| panic!("no FAIL line in {stdout}"));
    assert!(
        fail.contains("expected allow, got deny (tool_not_granted")
            && fail.contains("tool_not_granted: the agent holds no grant for this tool"),
        "{fail}"
    );
}

#[test]
fn publish_prints_the_warnings_validate_prints() {
    let policies = crate::common::example_policies();
    let validated = run_govctl(&["policy", "validate", policies.to_str().unwrap()]);
    assert!(validated.status.success());
    let warnings: Vec<String> = String::from_utf8_lossy(&validated.stderr)
        .lines()
        .filter(|l| l.contains("warning"))
        .map(str::to_owned)
        .collect();
    // The example's retired agent names no owner.
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("agent `agent-legacy-1` names no owner")),
        "{warnings:?}"
    );
    let data = tempfile::tempdir().unwrap();
    let published = run_govctl(&[
        "policy",
        "publish",
        policies.to_str().unwrap(),
        "-m",
        "first",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&published.stderr);
    assert!(published.status.success(), "{stderr}");
    for w in &warnings {
        assert!(
            stderr.contains(w.as_str()),
            "publish did not print `{w}`: {stderr}"
        );
    }
}

#[test]
fn logs_carry_no_colour_codes_and_tokens_of_unknown_agents_warn() {
    let server = crate::common::Server::start();
    let agent = server.agent_token("agent-support-1");
    let user = server.user_token("alice", &["support_agent"], None);
    let reply = server.authorize(
        &agent,
        &user,
        &serde_json::json!({"tool_id": "search_kb", "arguments": {"query": "refund"}}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let log = server.stderr_log();
    assert!(log.contains("INFO"), "the server logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file: {log:?}"
    );

    // A second server on the same data directory refuses to start, and
    // names the one that serves it.
    let mut second = std::process::Command::new(crate::common::govctl_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            server.data_dir_str(),
        ])
        .env("GOVCTL_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a second server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server on the same data directory kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut refusal = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut refusal).unwrap();
    assert_eq!(status.code(), Some(1), "{refusal}");
    assert!(
        refusal.contains("is already served by another govctl serve (pid ")
            && refusal.contains(&format!(
                "listening on {}",
                server.url("").trim_start_matches("http://")
            )),
        "{refusal}"
    );

    // Decisions are found by filters, without an export.
    let denied = server.authorize(
        &agent,
        &user,
        &serde_json::json!({"tool_id": "search_logs", "arguments": {"query": "error"}}),
    );
    assert_eq!(denied.status, 403, "{denied:?}");
    let listed = server.govctl(&["decision", "list", "--result", "deny", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["tool_id"], "search_logs");
    assert_eq!(listed[0]["decision"], "deny");
    let allowed = server.govctl(&[
        "decision",
        "list",
        "--agent",
        "agent-support-1",
        "--tool",
        "search_kb",
        "--user",
        "alice",
    ]);
    assert_eq!(allowed.lines().count(), 1, "{allowed}");
    assert!(
        allowed.contains(reply.json["decision_id"].as_str().unwrap()) && allowed.contains("allow"),
        "{allowed}"
    );
    let none = server.govctl(&["decision", "list", "--user", "bob"]);
    assert_eq!(none.trim(), "no decisions match");
    let both = server.govctl(&["decision", "list", "--since", "1h", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&both)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A decision is found by a unique prefix of its id, as versions are;
    // a prefix too short to be unique for long says so.
    let decision_id = reply.json["decision_id"].as_str().unwrap().to_owned();
    let shown = server.govctl(&["decision", "show", &decision_id[..13]]);
    assert!(shown.contains(&decision_id), "{shown}");
    let short = run_govctl(&[
        "decision",
        "show",
        &decision_id[..4],
        "--data-dir",
        server.data_dir_str(),
    ]);
    assert_eq!(short.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("is too short: give at least 6 characters"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
    let short = run_govctl(&[
        "policy",
        "activate",
        "abc",
        "--data-dir",
        server.data_dir_str(),
    ]);
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("`abc` is too short"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );

    // A token for an agent the active version does not register warns.
    let dir = server.data_dir_str();
    let typo = run_govctl(&["agent", "token", "agent-suport-1", "--data-dir", dir]);
    let warning = String::from_utf8_lossy(&typo.stderr);
    assert!(typo.status.success(), "{warning}");
    assert!(
        warning.contains("registers no agent `agent-suport-1`")
            && warning.contains("agent-support-1"),
        "{warning}"
    );
    let known = run_govctl(&["agent", "token", "agent-support-1", "--data-dir", dir]);
    assert!(known.status.success());
    assert!(
        !String::from_utf8_lossy(&known.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&known.stderr)
    );
}

#[test]
fn authorize_answers_as_of_a_given_time_with_documented_exit_codes() {
    let policies = crate::common::example_policies();
    let ask = |time: &str| {
        run_govctl(&[
            "authorize",
            "--policy",
            policies.to_str().unwrap(),
            "--agent",
            "meridian-loan-agent",
            "--user",
            "uma",
            "--role",
            "underwriter",
            "--org",
            "meridian-capital",
            "--tool",
            "pull_credit_report",
            "--args",
            r#"{"applicant_id":"A-77"}"#,
            "--run-id",
            "run-L-1",
            "--time",
            time,
        ])
    };
    // The bureau's hours: 07:00 to 19:00 UTC.
    let midday = ask("2026-12-07T12:00:00Z");
    assert_eq!(
        midday.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&midday.stdout)
    );
    let night = ask("2026-12-07T21:30:00Z");
    let text = String::from_utf8_lossy(&night.stdout);
    assert_eq!(night.status.code(), Some(2), "{text}");
    assert!(text.contains("meridian:credit-report-hours"), "{text}");
    // A malformed time is an error, not a deny.
    let typo = ask("yesterday");
    assert_eq!(typo.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("is not an RFC 3339 time"));
}

/// The diagnostic lines of `govctl policy validate DIR` that mention `needle`.
fn diagnostics(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let out = run_govctl(&["policy", "validate", dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the directory must not validate"
    );
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// `FILE:LINE:COLUMN: error: …` with a line and column above zero.
fn at_a_position(line: &str, file: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("{file}:")) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let number = |p: Option<&str>| {
        p.and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > 0)
    };
    number(parts.next())
        && number(parts.next())
        && parts.next().is_some_and(|r| r.starts_with(" error: "))
}

#[test]
fn invalid_policy_directories_are_refused_with_their_positions() {
    // Roles that inherit in a cycle.
    let dir = tempfile::tempdir().unwrap();
    example_copy(dir.path());
    let registry = dir.path().join("registry.yaml");
    let text = std::fs::read_to_string(&registry).unwrap();
    let cyclic = text.replacen(
        "  - id: support_agent\n",
        "  - id: support_agent\n    inherits: [support_lead]\n",
        1,
    );
    assert_ne!(cyclic, text, "the example's roles changed");
    std::fs::write(&registry, cyclic).unwrap();
    let found = diagnostics(dir.path(), "roles inherit in a cycle");
    assert!(
        found.len() == 1 && at_a_position(&found[0], "registry.yaml"),
        "{found:?}"
    );

    // A Cedar file that does not parse.
    let dir = tempfile::tempdir().unwrap();
    example_copy(dir.path());
    std::fs::write(
        dir.path().join("broken.cedar"),
        "// a missing comma\npermit (principal, action resource);\n",
    )
    .unwrap();
    let found = diagnostics(dir.path(), "broken.cedar");
    assert!(
        !found.is_empty() && found.iter().all(|l| at_a_position(l, "broken.cedar")),
        "{found:?}"
    );

    // Problems in the registry, a Cedar file and a test file: one run
    // reports each of them.
    let dir = tempfile::tempdir().unwrap();
    example_copy(dir.path());
    let registry = dir.path().join("registry.yaml");
    let text = std::fs::read_to_string(&registry).unwrap();
    std::fs::write(
        &registry,
        text.replacen(
            "allowed_roles: [support_agent, privacy_officer]",
            "allowed_roles: [support_agnt, privacy_officer]",
            1,
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.cedar"),
        "permit (principal, action resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tests/broken.yaml"),
        "environment: dev\ncases:\n  - name: half a case\n    agent: agent-support-1\n",
    )
    .unwrap();
    let out = run_govctl(&["policy", "validate", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (file, what) in [
        ("registry.yaml:", "support_agnt"),
        ("broken.cedar:", "error"),
        ("tests/broken.yaml:", "error"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(file) && l.contains(what)),
            "no `{file}` problem in one run: {stderr}"
        );
    }

    // Test cases that fail: publish refuses, and stores nothing.
    let dir = tempfile::tempdir().unwrap();
    example_copy(dir.path());
    let cases = dir.path().join("tests/seed_cases.yaml");
    let text = std::fs::read_to_string(&cases).unwrap();
    std::fs::write(
        &cases,
        text.replacen(
            "    arguments: { query: \"error\" }\n    expect: deny\n",
            "    arguments: { query: \"error\" }\n    expect: allow\n",
            1,
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("store");
    let published = run_govctl(&[
        "policy",
        "publish",
        dir.path().to_str().unwrap(),
        "-m",
        "failing cases",
        "--data-dir",
        store.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&published.stderr);
    assert_eq!(published.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not published: fix the problems above first"),
        "{stderr}"
    );
    assert!(!store.exists(), "a refused publish creates no store");
}

/// With `GOVCTL_DATA_DIR` set, usage lines do not present `--data-dir` as
/// something to give, and a usage error exits 1 (2 is `authorize`'s deny).
#[test]
fn usage_errors_exit_1_and_do_not_ask_for_the_data_directory() {
    let out = std::process::Command::new(crate::common::govctl_bin())
        .args(["audit", "explain"])
        .env("GOVCTL_DATA_DIR", "/tmp/govctl-usage-test")
        .env_remove("NO_COLOR")
        .output()
        .expect("run govctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let usage = stderr
        .lines()
        .find(|l| l.starts_with("Usage: govctl audit explain"))
        .unwrap_or_else(|| panic!("no usage line: {stderr}"));
    assert!(!usage.contains("--data-dir"), "{usage}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes off a terminal: {stderr:?}"
    );
    assert!(!std::path::Path::new("/tmp/govctl-usage-test").exists());
}
