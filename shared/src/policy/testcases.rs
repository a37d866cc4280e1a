//! Declarative policy tests, in the manner of `opa test`: files under
//! `tests/` list cases (agent, user and roles, tool, arguments) and the
//! decision and reason each must get.

use marked_yaml::Node;
use serde::Deserialize;
use time::OffsetDateTime;

use super::yaml::{self, Seg};
use super::{DecisionInput, Diagnostic, Evaluation, PolicyBundle, PolicyEngine};
use crate::model::{Decision, Environment, ReasonCode, Risk, UserContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    environment: Option<Environment>,
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    agent: String,
    #[serde(default = "default_user")]
    user: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    organization: Option<String>,
    tool: String,
    #[serde(default)]
    requested_risk: Option<Risk>,
    // Read from the node tree instead, so numbers keep their type.
    #[serde(default)]
    #[allow(dead_code)]
    arguments: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    environment: Option<Environment>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    time: Option<String>,
    expect: Decision,
    #[serde(default)]
    reason: Option<String>,
}

fn default_user() -> String {
    "test-user".to_owned()
}

/// One declarative case.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Its name.
    pub name: String,
    /// The file it is in.
    pub file: String,
    /// Its line.
    pub line: usize,
    /// The agent.
    pub agent: String,
    /// The user and roles.
    pub user: UserContext,
    /// The tool.
    pub tool: String,
    /// The declared risk.
    pub requested_risk: Option<Risk>,
    /// The arguments.
    pub arguments: serde_json::Value,
    /// The environment.
    pub environment: Environment,
    /// The session.
    pub session_id: Option<String>,
    /// The request time.
    pub now: OffsetDateTime,
    /// The expected decision.
    pub expect: Decision,
    /// The expected reason, which must be among the decision's reasons.
    pub reason: Option<ReasonCode>,
}

/// A case and what it got.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// The case.
    pub case: TestCase,
    /// What the engine answered.
    pub got: Evaluation,
    /// Whether that matches.
    pub passed: bool,
}

impl TestOutcome {
    /// A one-line account, `PASS name` or `FAIL name: …` with the reasons'
    /// codes and messages.
    pub fn summary(&self) -> String {
        let codes = self
            .got
            .codes()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if self.passed {
            format!(
                "PASS {} ({}: {})",
                self.case.name,
                self.got.decision.as_str(),
                codes
            )
        } else {
            let want = match self.case.reason {
                Some(r) => format!("{} ({r})", self.case.expect.as_str()),
                None => self.case.expect.as_str().to_owned(),
            };
            // The messages say which rule answered, which the codes alone
            // do not (several policies share `forbidden_by_policy`).
            let why = self
                .got
                .reasons
                .iter()
                .map(|r| format!("{}: {}", r.code.as_str(), r.message))
                .collect::<Vec<_>>()
                .join("; ");
            format!(
                "FAIL {} [{}:{}]: expected {want}, got {} ({codes}): {why}",
                self.case.name,
                self.case.file,
                self.case.line,
                self.got.decision.as_str()
            )
        }
    }
}

/// The reference time of cases that give none: a weekday, midday UTC.
const DEFAULT_TIME: &str = "2026-01-07T12:00:00Z";

/// Reads every test file of a bundle.
pub fn load_tests(bundle: &PolicyBundle) -> Result<Vec<TestCase>, Vec<Diagnostic>> {
    let mut cases = Vec::new();
    let mut diags = Vec::new();
    for (file, text) in bundle.test_files() {
        match yaml::parse::<TestFile>(file, text) {
            Ok((parsed, node)) => {
                convert(file, parsed, &node, &mut cases, &mut diags);
            }
            Err(d) => diags.push(d),
        }
    }
    if diags.is_empty() {
        Ok(cases)
    } else {
        Err(diags)
    }
}

fn convert(
    file: &str,
    parsed: TestFile,
    node: &Node,
    cases: &mut Vec<TestCase>,
    diags: &mut Vec<Diagnostic>,
) {
    let rfc = time::format_description::well_known::Rfc3339;
    for (i, raw) in parsed.cases.into_iter().enumerate() {
        let at = |k: &'static str| [Seg::Key("cases"), Seg::Index(i), Seg::Key(k)];
        let (line, _) = yaml::position(node, &[Seg::Key("cases"), Seg::Index(i)]);
        let reason = match raw.reason.as_deref().map(|r| (r, ReasonCode::parse(r))) {
            None => None,
            Some((_, Some(code))) => Some(code),
            Some((r, None)) => {
                let (l, c) = yaml::position(node, &at("reason"));
                diags.push(Diagnostic::error(
                    file,
                    l,
                    c,
                    format!("`{r}` is not a reason code"),
                ));
                continue;
            }
        };
        let t = raw.time.as_deref().unwrap_or(DEFAULT_TIME);
        let now = match OffsetDateTime::parse(t, &rfc) {
            Ok(now) => now,
            Err(e) => {
                let (l, c) = yaml::position(node, &at("time"));
                diags.push(Diagnostic::error(
                    file,
                    l,
                    c,
                    format!("`{t}` is not an RFC 3339 time: {e}"),
                ));
                continue;
            }
        };
        let arguments = yaml::node_at(node, &at("arguments")).map_or_else(
            || serde_json::Value::Object(serde_json::Map::new()),
            yaml::to_json,
        );
        cases.push(TestCase {
            name: raw.name,
            file: file.to_owned(),
            line,
            agent: raw.agent,
            user: UserContext {
                id: raw.user,
                roles: raw.roles,
                organization: raw.organization,
            },
            tool: raw.tool,
            requested_risk: raw.requested_risk,
            arguments,
            environment: raw
                .environment
                .or(parsed.environment)
                .unwrap_or(Environment::Dev),
            session_id: raw.session_id,
            now,
            expect: raw.expect,
            reason,
        });
    }
}

/// Runs every case of `bundle` against `engine`.
pub fn run_tests(
    engine: &PolicyEngine,
    bundle: &PolicyBundle,
) -> Result<Vec<TestOutcome>, Vec<Diagnostic>> {
    let cases = load_tests(bundle)?;
    Ok(cases
        .into_iter()
        .map(|case| {
            let got = engine.decide(&DecisionInput {
                agent_id: &case.agent,
                user: &case.user,
                tool_id: &case.tool,
                requested_risk: case.requested_risk,
                arguments: &case.arguments,
                session_id: case.session_id.as_deref(),
                environment: case.environment,
                now: case.now,
            });
            let passed = got.decision == case.expect
                && case
                    .reason
                    .is_none_or(|r| got.reasons.iter().any(|x| x.code == r));
            TestOutcome { case, got, passed }
        })
        .collect())
}
