//! Reviewed policy changes under `govctl serve --environment prod`: a
//! low-risk change activates on its own, a high-risk one waits for a
//! reviewer who is not its author, direct publication is refused, and every
//! step is a control event in the verified audit chain.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{example_policies, govctl_bin, poll, run_govctl, Server};

const OPS: &str = "    description: Triages alerts and opens incidents\n";

/// The example policies in `dir`, with `edit` applied to the registry.
fn policies(dir: &Path, edit: impl Fn(String) -> String) {
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
    let registry = std::fs::read_to_string(dir.join("registry.yaml")).unwrap();
    assert_eq!(
        registry.matches(OPS).count(),
        1,
        "the example registry changed"
    );
    std::fs::write(dir.join("registry.yaml"), edit(registry)).unwrap();
}

fn reviewer(server: &Server, id: &str, group: &str) -> String {
    server
        .govctl(&["approver", "token", id, "--group", group])
        .trim()
        .to_owned()
}

/// The change id a `propose` printed.
fn change_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("change "))
        .and_then(|l| l.split_whitespace().next())
        .filter(|id| id.len() == 32)
        .unwrap_or_else(|| panic!("no change id in: {out}"))
        .to_owned()
}

/// Opens the change page as a browser does, then posts `verb` with `token`.
fn answer(server: &Server, id: &str, verb: &str, token: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::new();
    let page = client
        .get(server.url(&format!("/v1/changes/{id}")))
        .send()
        .unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a waiting change's page sets the CSRF cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = page.text().unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form carries the CSRF value")
        .to_owned();
    let r = client
        .post(server.url(&format!("/v1/changes/{id}/{verb}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(format!(
            "csrf={csrf}&approver_token={token}&comment=checked+with+the+owner"
        ))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The control events of the chain, in order: (action, actor, change id).
fn control_events(server: &Server) -> Vec<(String, String, Option<String>)> {
    let db = server.db();
    let mut stmt = db
        .prepare("SELECT event FROM control_events ORDER BY seq")
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            (
                v["action"].as_str().unwrap().to_owned(),
                v["actor"].as_str().unwrap().to_owned(),
                v["change"]["change_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn wait_served(server: &Server, version: &str) {
    poll(Duration::from_secs(10), "the new version served", || {
        let (served, _) = server.policy();
        if served == version {
            Ok(())
        } else {
            Err(format!("still serving {served}"))
        }
    });
}

/// `govctl serve ARGS` must exit with an error (within 30 s), saying `why`.
fn refuses_to_start(args: &[&str], why: &str) {
    let mut child = Command::new(govctl_bin())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("GOVCTL_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("govctl serve {args:?} started; it should have refused");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(why), "{stderr}");
}

#[test]
fn in_prod_a_high_risk_change_waits_for_another_reviewer_and_a_low_risk_one_does_not() {
    let mut server = Server::start_with(&["--environment", "prod"]);
    let data = server.data_dir_str().to_owned();
    let (first, _) = server.policy();

    // Direct publication is refused where changes are reviewed.
    let low = server.scratch("low");
    policies(&low, |r| {
        r.replace(OPS, "    description: Triages alerts, opens incidents\n")
    });
    let refused = run_govctl(&[
        "policy",
        "publish",
        low.to_str().unwrap(),
        "-m",
        "direct",
        "--data-dir",
        &data,
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("reviews policy changes") && stderr.contains("govctl policy propose"),
        "{stderr}"
    );

    // A description is low risk: it activates on its own.
    let out = server.govctl(&[
        "policy",
        "propose",
        low.to_str().unwrap(),
        "-m",
        "wording",
        "--author",
        "alice",
    ]);
    assert!(
        out.contains("(low risk)") && out.contains("activated"),
        "{out}"
    );
    let low_change = change_id(&out);
    let low_version = out
        .lines()
        .find_map(|l| l.strip_prefix("activated "))
        .unwrap()
        .to_owned();
    wait_served(&server, &low_version);

    // A new OAuth client for an agent is high risk: it waits.
    let high = server.scratch("high");
    policies(&high, |r| {
        r.replace(OPS, &format!("{OPS}    oauth_clients: [ops-console]\n"))
    });
    let out = server.govctl(&[
        "policy",
        "propose",
        high.to_str().unwrap(),
        "-m",
        "ops console",
        "--author",
        "alice",
    ]);
    assert!(
        out.contains("(high risk)")
            && out.contains("agent agent-ops-1: oauth_clients gains ops-console")
            && out
                .contains("waiting for review by a member of `policy-reviewers` other than alice"),
        "{out}"
    );
    let high_change = change_id(&out);
    let listed = server.govctl(&["policy", "changes"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&high_change) && l.contains("high") && l.contains("pending")),
        "{listed}"
    );
    let shown = server.govctl(&["policy", "change", &high_change[..8]]);
    assert!(
        shown.contains("+    oauth_clients: [ops-console]"),
        "{shown}"
    );
    assert_eq!(
        server.policy().0,
        low_version,
        "a waiting change is not served"
    );

    // Its author may not review it; nor may someone outside the group.
    let alice = reviewer(&server, "alice", "policy-reviewers");
    let (status, body) = answer(&server, &high_change, "approve", &alice);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("alice` proposed this change"), "{body}");
    let carol = reviewer(&server, "carol", "incident-commanders");
    let (status, body) = answer(&server, &high_change, "approve", &carol);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("only members of `policy-reviewers`"),
        "{body}"
    );
    let (status, body) = answer(&server, &high_change, "approve", "not-a-token");
    assert_eq!(status, 401, "{body}");
    assert_eq!(server.policy().0, low_version);

    // Another reviewer approves: the version activates.
    let bob = reviewer(&server, "bob", "policy-reviewers");
    let (status, body) = answer(&server, &high_change, "approve", &bob);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Approved and activated"), "{body}");
    let shown = server.govctl(&["policy", "change", &high_change, "--json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "activated");
    assert_eq!(shown["reviewed_by"], "bob");
    let high_version = shown["version_id"].as_str().unwrap().to_owned();
    wait_served(&server, &high_version);
    // Answered once: the page has no forms left, and a stale form is refused.
    let page = reqwest::blocking::get(server.url(&format!("/v1/changes/{high_change}")))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("activated") && !page.contains("name=\"csrf\""),
        "{page}"
    );

    // A rollback is a change too: removing the client is low risk.
    let out = server.govctl(&[
        "policy",
        "rollback",
        &low_version[..12],
        "--author",
        "alice",
    ]);
    assert!(
        out.contains("(low risk)") && out.contains("activated"),
        "{out}"
    );
    let rollback_change = change_id(&out);
    wait_served(&server, &low_version);

    // Every step is in the control chain, which verifies.
    let events = control_events(&server);
    let steps: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_deref()))
        .skip_while(|(a, _, _)| *a != "change_proposed")
        .filter(|(a, _, _)| *a != "policy_published")
        .collect();
    assert_eq!(
        steps,
        [
            ("change_proposed", "alice", Some(low_change.as_str())),
            ("policy_activated", "alice", Some(low_change.as_str())),
            ("change_proposed", "alice", Some(high_change.as_str())),
            ("change_approved", "bob", Some(high_change.as_str())),
            ("policy_activated", "bob", Some(high_change.as_str())),
            ("change_proposed", "alice", Some(rollback_change.as_str())),
            (
                "policy_rolled_back",
                "alice",
                Some(rollback_change.as_str())
            ),
        ]
    );
    // An access review's revocation becomes a proposed change: it only
    // tightens, so it activates at once.
    let out = server.govctl(&[
        "review",
        "record",
        "--agent",
        "meridian-loan-agent",
        "--tool",
        "calculate_risk_score",
        "--outcome",
        "revoke",
        "--by",
        "carol",
    ]);
    assert!(
        out.contains("(low risk)")
            && out.contains("agent meridian-loan-agent: grant of calculate_risk_score removed")
            && out.contains("activated"),
        "{out}"
    );
    let revoked: Value =
        serde_json::from_str(&server.govctl(&["policy", "change", &change_id(&out), "--json"]))
            .unwrap();
    assert_eq!(revoked["author"], "carol");
    assert!(revoked["message"]
        .as_str()
        .unwrap()
        .starts_with("access review: revoke `calculate_risk_score` from `meridian-loan-agent`"));
    let verified = server.govctl(&["audit", "verify"]);
    assert!(verified.contains("OK"), "{verified}");
    assert_ne!(first, low_version);

    // A prod data directory is served as prod, and `--policy` does not
    // bypass review.
    server.kill();
    refuses_to_start(
        &["--data-dir", &data, "--environment", "dev"],
        "holds the prod control plane",
    );
    refuses_to_start(
        &[
            "--data-dir",
            &data,
            "--environment",
            "prod",
            "--policy",
            high.to_str().unwrap(),
        ],
        "prod reviews policy changes",
    );
}
