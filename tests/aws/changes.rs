//! Reviewed policy changes on an AWS stack: `govctl policy propose --env`
//! writes to the stack's tables, the approval-callback function serves the
//! change's page and activates it when another reviewer approves, and every
//! step is a control event in the decisions table.

use std::path::Path;

use crate::stack::{table, HttpAnswer, Stack};

const OPS: &str = "    description: Triages alerts and opens incidents\n";

/// The example policies in `dir`, changes reviewed in dev (the stacks'
/// environment), with `edit` applied to the registry.
fn policies(dir: &Path, edit: impl Fn(String) -> String) {
    let src = crate::common::example_policies();
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
    assert_eq!(registry.matches("\nroles:\n").count(), 1);
    let registry = registry.replace(
        "\nroles:\n",
        "\nchange_review: { environments: [dev] }\nroles:\n",
    );
    std::fs::write(dir.join("registry.yaml"), edit(registry)).unwrap();
}

fn active(stack: &Stack) -> String {
    let out = stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .get_item()
                .table_name(table(&stack.name, "policy-versions"))
                .key(
                    "pk",
                    governance::adapters::aws::aws_sdk_dynamodb::types::AttributeValue::S(
                        "active".into(),
                    ),
                )
                .key(
                    "sk",
                    governance::adapters::aws::aws_sdk_dynamodb::types::AttributeValue::S(
                        "pointer".into(),
                    ),
                )
                .consistent_read(true)
                .send(),
        )
        .expect("read the active pointer");
    out.item.expect("a version is active")["version_id"]
        .as_s()
        .expect("version_id")
        .clone()
}

fn propose(stack: &Stack, dir: &Path, message: &str, author: &str) -> String {
    let out = stack.govctl(&[
        "policy",
        "propose",
        dir.to_str().unwrap(),
        "-m",
        message,
        "--author",
        author,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn change_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("change "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no change id in {out}"))
        .to_owned()
}

/// Opens the change's page (over HTTPS, as API Gateway serves it) and answers.
fn answer(stack: &Stack, id: &str, verb: &str, token: &str) -> HttpAnswer {
    let page = stack.http(
        "approval-callback",
        "GET",
        &format!("/v1/changes/{id}"),
        None,
        &[("x-forwarded-proto", "https")],
        "",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("a waiting change has forms: {}", page.body))
        .to_owned();
    let cookie = page
        .cookies
        .iter()
        .find(|c| c.starts_with("agov_csrf="))
        .expect("the CSRF cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    stack.http(
        "approval-callback",
        "POST",
        &format!("/v1/changes/{id}/{verb}"),
        None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &cookie),
        ],
        &format!("csrf={csrf}&approver_token={token}&comment=reviewed"),
    )
}

#[test]
fn on_aws_a_high_risk_change_waits_for_another_reviewer_and_push_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    policies(&base, |r| r);
    // The stack's first version is its bootstrap: pushed directly.
    let stack = Stack::new("changes", &base);
    let first = active(&stack);

    let low = root.path().join("low");
    std::fs::create_dir_all(&low).unwrap();
    policies(&low, |r| {
        r.replace(OPS, "    description: Triages alerts, opens incidents\n")
    });
    let refused = stack.try_push(&low, "direct");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("dev reviews policy changes"), "{stderr}");
    assert_eq!(active(&stack), first);

    let out = propose(&stack, &low, "wording", "alice");
    assert!(
        out.contains("(low risk)") && out.contains("activated"),
        "{out}"
    );
    let low_change = change_id(&out);
    let low_version = active(&stack);
    assert_ne!(low_version, first);

    let high = root.path().join("high");
    std::fs::create_dir_all(&high).unwrap();
    policies(&high, |r| {
        r.replace(OPS, &format!("{OPS}    oauth_clients: [ops-console]\n"))
    });
    let out = propose(&stack, &high, "ops console", "alice");
    assert!(
        out.contains("(high risk)") && out.contains("oauth_clients gains ops-console"),
        "{out}"
    );
    let high_change = change_id(&out);
    assert_eq!(
        active(&stack),
        low_version,
        "a waiting change is not active"
    );

    let alice = stack.approver_token("alice", &["policy-reviewers"]);
    let refused = answer(&stack, &high_change, "approve", &alice);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("alice` proposed this change"),
        "{}",
        refused.body
    );
    let olga = stack.approver_token("olga", &["treasury-approvers"]);
    let refused = answer(&stack, &high_change, "approve", &olga);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(active(&stack), low_version);

    let bob = stack.approver_token("bob", &["policy-reviewers"]);
    let approved = answer(&stack, &high_change, "approve", &bob);
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert!(
        approved.body.contains("Approved and activated"),
        "{}",
        approved.body
    );
    let high_version = active(&stack);
    assert_ne!(high_version, low_version);
    // The grants table follows the activated version.
    let grants = stack
        .emu
        .block_on(
            stack
                .clients
                .dynamodb
                .scan()
                .table_name(table(&stack.name, "tool-policy"))
                .send(),
        )
        .expect("scan the grants");
    let items = grants.items.unwrap_or_default();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["policy_version"].as_s().ok() == Some(&high_version)),
        "{items:?}"
    );

    // Every step is a control event, written with the change it records.
    let steps: Vec<(String, String, Option<String>)> = stack
        .decision_items()
        .into_iter()
        .filter(|r| r.get("action").is_some())
        .map(|r| {
            (
                r["timestamp"].as_str().unwrap().to_owned(),
                format!(
                    "{} {}",
                    r["action"].as_str().unwrap(),
                    r["actor"].as_str().unwrap()
                ),
                r["change"]["change_id"].as_str().map(str::to_owned),
            )
        })
        .filter(|(_, _, c)| c.is_some())
        .collect();
    let mut steps = steps;
    steps.sort();
    let steps: Vec<(&str, &str)> = steps
        .iter()
        .map(|(_, a, c)| (a.as_str(), c.as_deref().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("change_proposed alice", low_change.as_str()),
            ("policy_activated alice", low_change.as_str()),
            ("change_proposed alice", high_change.as_str()),
            ("change_approved bob", high_change.as_str()),
            ("policy_activated bob", high_change.as_str()),
        ]
    );
    // The stack's change requests, as an operator lists them.
    let listed = stack.govctl(&["policy", "changes", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed: Vec<(&str, &str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change_id"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["risk"]["class"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (high_change.as_str(), "activated", "high"),
            (low_change.as_str(), "activated", "low"),
        ]
    );
    let shown = stack.govctl(&["policy", "change", &high_change[..8]]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(
        text.contains("reviewed    by bob")
            && text.contains("oauth_clients gains ops-console")
            && text.contains(&format!("replaces {low_version}")),
        "{text}"
    );

    // A second answer finds it closed.
    let page = stack.http(
        "approval-callback",
        "GET",
        &format!("/v1/changes/{high_change}"),
        None,
        &[],
        "",
    );
    assert!(page.body.contains("activated") && !page.body.contains("name=\"csrf\""));

    // An access review on the stack: the outcome is a control event, and
    // the revocation a proposed change; it only tightens, so it activates.
    let revoked = stack.govctl(&[
        "review",
        "record",
        "--agent",
        "meridian-compliance-agent",
        "--tool",
        "calculate_risk_score",
        "--outcome",
        "revoke",
        "--comment",
        "never used this quarter",
        "--by",
        "carol",
    ]);
    let out = String::from_utf8_lossy(&revoked.stdout);
    assert!(
        revoked.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(
        out.contains(
            "recorded: revoke `calculate_risk_score` of agent `meridian-compliance-agent`"
        ) && out.contains("(low risk)")
            && out.contains("activated"),
        "{out}"
    );
    let revoked_version = active(&stack);
    assert_ne!(revoked_version, high_version);
    let items = stack.decision_items();
    let reviewed = items
        .iter()
        .find(|r| r["action"] == "access_reviewed")
        .expect("the outcome is a control event");
    assert_eq!(reviewed["actor"], "carol");
    assert_eq!(reviewed["agent_id"], "meridian-compliance-agent");
    assert_eq!(reviewed["review"]["outcome"], "revoke");
    assert_eq!(reviewed["version_id"], high_version.as_str());
    assert!(
        items.iter().any(|r| r["action"] == "policy_activated"
            && r["actor"] == "carol"
            && r["version_id"] == revoked_version.as_str()),
        "the revocation's activation is recorded"
    );
}
