//! Each documented rule, on edits of the shipped example set.

use std::path::Path;

use super::*;
use crate::policy::{compile, PolicyBundle};

fn example() -> PolicyBundle {
    PolicyBundle::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/policies"))
        .unwrap()
}

fn compiled(bundle: &PolicyBundle) -> CompiledPolicies {
    compile(bundle).unwrap_or_else(|d| panic!("{d:?}"))
}

/// The class and reasons of one edit (`file`: replace `from` by `to`).
fn edit(edits: &[(&str, &str, &str)]) -> ChangeRisk {
    let old = example();
    let mut new = old.clone();
    for (file, from, to) in edits {
        let text = new.files.get_mut(*file).unwrap();
        assert!(text.contains(from), "{file} has no `{from}`");
        *text = text.replacen(from, to, 1);
    }
    classify(Some(&compiled(&old)), &compiled(&new))
}

fn high(risk: &ChangeRisk, needle: &str) {
    assert_eq!(risk.class, RiskClass::High, "{risk:?}");
    assert!(
        risk.reasons.iter().any(|r| r.contains(needle)),
        "no reason with `{needle}`: {risk:?}"
    );
}

fn low(risk: &ChangeRisk) {
    assert_eq!(risk.class, RiskClass::Low, "{risk:?}");
}

const REG: &str = "registry.yaml";

#[test]
fn a_first_version_is_high() {
    let risk = classify(None, &compiled(&example()));
    high(&risk, "first policy version");
}

#[test]
fn the_same_content_is_low_and_says_nothing_changed() {
    let risk = edit(&[]);
    low(&risk);
    assert_eq!(risk.reasons, ["no change to what is enforced"]);
}

#[test]
fn descriptions_owners_and_versions_are_low() {
    low(&edit(&[(
        REG,
        "description: Pull an applicant's credit report from the bureau",
        "description: Pull a credit report",
    )]));
    low(&edit(&[(
        REG,
        "      - tool: search_kb\n      - tool: get_ticket\n",
        "      - tool: search_kb\n",
    )]));
}

#[test]
fn a_new_grant_is_high_and_a_removed_one_low() {
    high(
        &edit(&[(
            REG,
            "      - tool: search_logs\n",
            "      - tool: search_logs\n      - tool: search_kb\n",
        )]),
        "granted search_kb",
    );
    let risk = edit(&[(REG, "      - tool: pull_credit_report\n", "")]);
    low(&risk);
    assert!(risk
        .reasons
        .iter()
        .any(|r| r.contains("grant of pull_credit_report removed")));
}

#[test]
fn a_raised_ceiling_is_high_and_a_lowered_one_low() {
    high(
        &edit(&[(
            REG,
            "        risk_ceiling: medium\n",
            "        risk_ceiling: high\n",
        )]),
        "risk ceiling for flag_for_review raised from medium to high",
    );
    high(
        &edit(&[(
            REG,
            "    version: \"3.0.1\"\n    risk_ceiling: high\n",
            "    version: \"3.0.1\"\n    risk_ceiling: critical\n",
        )]),
        "risk ceiling raised from high to critical",
    );
    low(&edit(&[(
        REG,
        "      - tool: pull_credit_report\n",
        "      - tool: pull_credit_report\n        risk_ceiling: low\n",
    )]));
}

#[test]
fn a_new_sensitive_tool_is_high_and_a_new_public_one_low() {
    let tool = |classification: &str| {
        format!(
            "tools:\n  - id: new_tool\n    description: d\n    server: operations\n    category: read\n    risk: low\n    classification: {classification}\n    allowed_roles: [sre]\n\n"
        )
    };
    high(
        &edit(&[(REG, "tools:\n", &tool("pii"))]),
        "tool new_tool added, touching pii data",
    );
    high(
        &edit(&[(REG, "tools:\n", &tool("confidential"))]),
        "touching confidential data",
    );
    low(&edit(&[(REG, "tools:\n", &tool("public"))]));
}

#[test]
fn widened_roles_lowered_risk_and_looser_classification_are_high() {
    high(
        &edit(&[(
            REG,
            "    allowed_roles: [underwriter]\n",
            "    allowed_roles: [underwriter, sre]\n",
        )]),
        "tool pull_credit_report: role sre allowed",
    );
    high(
        &edit(&[(
            REG,
            "    category: read\n    risk: high\n    classification: pii\n",
            "    category: read\n    risk: medium\n    classification: pii\n",
        )]),
        "risk lowered from high to medium",
    );
    high(
        &edit(&[(
            REG,
            "    category: read\n    risk: high\n    classification: pii\n",
            "    category: read\n    risk: high\n    classification: internal\n",
        )]),
        "classification changed from pii to internal",
    );
    low(&edit(&[(
        REG,
        "    category: read\n    risk: high\n    classification: pii\n",
        "    category: read\n    risk: critical\n    classification: pii\n",
    )]));
}

#[test]
fn looser_limits_are_high_and_tighter_ones_low() {
    high(
        &edit(&[(
            REG,
            "{ limit: 50, per: user, window_seconds: 86400 }",
            "{ limit: 80, per: user, window_seconds: 86400 }",
        )]),
        "rate limit loosened",
    );
    // The same count in a shorter window is looser too.
    high(
        &edit(&[(
            REG,
            "{ limit: 50, per: user, window_seconds: 86400 }",
            "{ limit: 50, per: user, window_seconds: 3600 }",
        )]),
        "rate limit loosened",
    );
    high(
        &edit(&[(
            REG,
            "    rate_limit: { limit: 50, per: user, window_seconds: 86400 }\n",
            "",
        )]),
        "rate limit loosened or removed",
    );
    low(&edit(&[(
        REG,
        "{ limit: 50, per: user, window_seconds: 86400 }",
        "{ limit: 20, per: user, window_seconds: 86400 }",
    )]));
    high(
        &edit(&[(
            REG,
            "run_limits: { max_calls: 20, max_seconds: 60, max_cost_usd: 2 }",
            "run_limits: { max_calls: 20, max_seconds: 60 }",
        )]),
        "run limits loosened (max_cost_usd)",
    );
    low(&edit(&[(
        REG,
        "run_limits: { max_calls: 20, max_seconds: 60, max_cost_usd: 2 }",
        "run_limits: { max_calls: 12, max_seconds: 60, max_cost_usd: 2 }",
    )]));
    high(
        &edit(&[(
            REG,
            "anomaly: { threshold_percent: 150 }",
            "anomaly: { threshold_percent: 400 }",
        )]),
        "anomaly watch loosened",
    );
}

#[test]
fn a_disabled_approval_or_another_approver_group_is_high() {
    high(
        &edit(&[(
            REG,
            "approval: { approver_group: incident-commanders, timeout_seconds: 900 }",
            "approval: { required: false }",
        )]),
        "tool publish_status_page: human approval no longer required",
    );
    high(
        &edit(&[(
            REG,
            "approval: { approver_group: incident-commanders, timeout_seconds: 900 }",
            "approval: { approver_group: sre, timeout_seconds: 900 }",
        )]),
        "approved by sre instead of incident-commanders",
    );
    low(&edit(&[(
        REG,
        "approval: { approver_group: incident-commanders, timeout_seconds: 900 }",
        "approval: { approver_group: incident-commanders, timeout_seconds: 600 }",
    )]));
}

#[test]
fn a_removed_response_filter_path_is_high() {
    high(
        &edit(&[(REG, "    response_filter: [raw_fico_model]\n", "")]),
        "response filter no longer removes raw_fico_model",
    );
}

#[test]
fn a_new_argument_or_an_unmasked_one_is_high() {
    high(
        &edit(&[(REG, "      applicant_id: { type: string, required: true }\n", "      applicant_id: { type: string, required: true }\n      bureau: { type: string }\n")]),
        "argument bureau accepted",
    );
    high(
        &edit(&[(
            REG,
            "      applicant_id: { type: string, required: true }\n",
            "      applicant_id: { type: string, required: true, masked: false }\n",
        )]),
        "argument applicant_id loosened",
    );
}

#[test]
fn a_removed_or_log_only_forbid_is_high_and_a_new_forbid_low() {
    const MERIDIAN: &str = "meridian.cedar";
    const HOURS: &str = "@id(\"meridian:credit-report-hours\")\n";
    high(
        &edit(&[(
            MERIDIAN,
            HOURS,
            "@log_only\n@id(\"meridian:credit-report-hours\")\n",
        )]),
        "forbid `meridian:credit-report-hours` in meridian.cedar made log-only",
    );
    high(
        &edit(&[(
            MERIDIAN,
            "context.now.hour_utc < 7",
            "context.now.hour_utc < 5",
        )]),
        "forbid `meridian:credit-report-hours` in meridian.cedar removed or changed",
    );
    low(&edit(&[(
        MERIDIAN,
        HOURS,
        "@id(\"meridian:no-weekend\")\nforbid (principal, action == Action::\"pull_credit_report\", resource)\nwhen { context.now.hour_utc == 3 };\n\n@id(\"meridian:credit-report-hours\")\n",
    )]));
    // A message is an annotation: it explains, it does not decide.
    low(&edit(&[(
        MERIDIAN,
        "credit reports are pulled only between 07:00 and 19:00 UTC",
        "credit reports: 07:00 to 19:00 UTC only",
    )]));
    // A new log-only permit enforces nothing.
    low(&edit(&[(
        MERIDIAN,
        HOURS,
        "@log_only\n@id(\"meridian:shadow-permit\")\npermit (principal, action, resource);\n\n@id(\"meridian:credit-report-hours\")\n",
    )]));
}

#[test]
fn a_new_permit_is_high() {
    high(
        &edit(&[(
            "meridian.cedar",
            "@id(\"meridian:credit-report-hours\")\n",
            "@id(\"meridian:anyone\")\npermit (principal, action, resource);\n\n@id(\"meridian:credit-report-hours\")\n",
        )]),
        "permit `meridian:anyone` in meridian.cedar added or changed",
    );
}

#[test]
fn lifting_change_review_is_high() {
    let risk = edit(&[(
        REG,
        "roles:\n",
        "change_review: { environments: [] }\nroles:\n",
    )]);
    high(&risk, "change review no longer required in prod");
    low(&edit(&[(
        REG,
        "roles:\n",
        "change_review: { environments: [stage, prod] }\nroles:\n",
    )]));
    high(
        &edit(&[(
            REG,
            "roles:\n",
            "change_review: { reviewers_group: friends }\nroles:\n",
        )]),
        "reviewed by friends instead of policy-reviewers",
    );
}

#[test]
fn a_new_inheritance_a_moved_agent_or_a_new_principal_is_high() {
    high(
        &edit(&[(
            REG,
            "  - id: sre\n",
            "  - id: sre\n    inherits: [underwriter]\n",
        )]),
        "role sre now inherits underwriter",
    );
    high(
        &edit(&[(REG, "    team: meridian-lending\n    owner: priya.shah@meridian.example\n    environment: dev\n", "    team: meridian-lending\n    owner: priya.shah@meridian.example\n    environment: prod\n")]),
        "agent meridian-loan-agent: `environment` changed",
    );
    high(
        &edit(&[(REG, "[\"arn:aws:iam::123456789012:role/meridian-loan-agent\"]", "[\"arn:aws:iam::123456789012:role/meridian-loan-agent\", \"arn:aws:iam::123456789012:role/intern\"]")]),
        "principals gains arn:aws:iam::123456789012:role/intern",
    );
}

#[test]
fn a_test_case_change_is_low() {
    let old = example();
    let mut new = old.clone();
    let (name, text) = new
        .files
        .iter_mut()
        .find(|(k, _)| k.starts_with("tests/"))
        .unwrap();
    let name = name.clone();
    text.push('\n');
    let risk = classify(Some(&compiled(&old)), &compiled(&new));
    low(&risk);
    assert!(
        risk.reasons.contains(&"test cases changed".to_owned()),
        "{name}: {risk:?}"
    );
}
