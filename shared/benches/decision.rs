//! Benchmarks of one authorization decision at three registry sizes, with
//! per-request policy selection (`decide`) beside evaluation of the whole
//! Cedar set (`decide_with_full_set`), followed by a p50/p99 latency table
//! of individually timed decisions.
//!
//! Registries are generated in code from a fixed-seed LCG, so every run
//! measures the same policy set. Run with
//! `cargo bench -p governance --bench decision -- --warm-up-time 1 --measurement-time 3`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use governance::model::{
    AgentSpec, AgentStatus, ApprovalSpec, ArgumentSpec, ArgumentType, Category, Decision,
    Environment, GrantSpec, Registry, Risk, RoleSpec, ToolSpec, UserContext,
};
use governance::policy::{compile, DecisionInput, PolicyBundle, PolicyEngine, PolicyVersionRef};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

/// Calls timed one by one per percentile row.
const TIMED_CALLS: usize = 100_000;
const ROLES: usize = 8;
const GRANTS_PER_AGENT: usize = 5;

/// A fixed-seed linear congruential generator: reproducible and dependency-free.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        // `n` is small and non-zero everywhere below; the modulo bias is irrelevant here.
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Size {
    name: &'static str,
    agents: usize,
    tools: usize,
    policies: usize,
}

const SIZES: [Size; 3] = [
    Size {
        name: "10 agents x 10 tools",
        agents: 10,
        tools: 10,
        policies: 5,
    },
    Size {
        name: "100 agents x 50 tools",
        agents: 100,
        tools: 50,
        policies: 20,
    },
    Size {
        name: "1000 agents x 200 tools",
        agents: 1_000,
        tools: 200,
        policies: 50,
    },
];

fn tool_id(i: usize) -> String {
    format!("tool-{i}")
}

fn agent_id(i: usize) -> String {
    format!("agent-{i}")
}

fn role_id(i: usize) -> String {
    format!("role-{}", i % ROLES)
}

fn team_of(agent: usize, agents: usize) -> String {
    format!("team-{}", agent % (agents / 10).max(1))
}

/// Every fourth tool declares a required `long` argument `amount`, which
/// argument-conditioned policies compare.
fn declares_amount(tool: usize) -> bool {
    tool.is_multiple_of(4)
}

fn registry(size: &Size, rng: &mut Lcg) -> Registry {
    let roles = (0..ROLES)
        .map(|i| RoleSpec {
            id: role_id(i),
            inherits: if i % 2 == 1 {
                vec![role_id(i - 1)]
            } else {
                Vec::new()
            },
        })
        .collect();
    let tools = (0..size.tools)
        .map(|i| {
            let mut arguments = BTreeMap::new();
            if declares_amount(i) {
                arguments.insert(
                    "amount".to_owned(),
                    ArgumentSpec {
                        ty: ArgumentType::Long,
                        required: true,
                        masked: None,
                    },
                );
            }
            arguments.insert(
                "note".to_owned(),
                ArgumentSpec {
                    ty: ArgumentType::String,
                    required: false,
                    masked: None,
                },
            );
            // Tool 0 is the allowed request's tool: a read, so no approval is involved.
            let category = if i == 0 {
                Category::Read
            } else {
                Category::ALL
                    .get(rng.below(Category::ALL.len()))
                    .copied()
                    .unwrap_or(Category::Read)
            };
            ToolSpec {
                id: tool_id(i),
                description: None,
                category,
                risk: if i == 0 {
                    Risk::Low
                } else {
                    Risk::ALL.get(rng.below(3)).copied().unwrap_or(Risk::Low)
                },
                classification: "internal".to_owned(),
                allowed_roles: if i == 0 {
                    vec![role_id(0)]
                } else {
                    vec![role_id(rng.below(ROLES)), role_id(rng.below(ROLES))]
                },
                rate_limit: None,
                cost_usd: None,
                response_filter: Vec::new(),
                // Delete, transfer and publish tools need approval, and so a group.
                approval: Some(ApprovalSpec {
                    required: None,
                    approver_group: Some("approvers".to_owned()),
                    timeout_seconds: None,
                }),
                arguments,
                server: None,
                upstream_tool: None,
                idempotency: None,
            }
        })
        .collect();
    let agents = (0..size.agents)
        .map(|i| {
            let mut granted: Vec<usize> = if i == 0 { vec![0] } else { Vec::new() };
            while granted.len() < GRANTS_PER_AGENT.min(size.tools) {
                let t = rng.below(size.tools);
                if !granted.contains(&t) {
                    granted.push(t);
                }
            }
            let grants = granted
                .into_iter()
                .map(|t| GrantSpec {
                    tool: tool_id(t),
                    risk_ceiling: (rng.below(4) == 0 && !(i == 0 && t == 0))
                        .then_some(Risk::Medium),
                })
                .collect();
            AgentSpec {
                id: agent_id(i),
                description: None,
                team: team_of(i, size.agents),
                owner: None,
                environment: Environment::Dev,
                status: if i % 50 == 49 {
                    AgentStatus::Disabled
                } else {
                    AgentStatus::Active
                },
                version: "1.0.0".to_owned(),
                risk_ceiling: if i % 3 == 0 {
                    Risk::Critical
                } else {
                    Risk::High
                },
                grants,
                principals: Vec::new(),
                oauth_clients: Vec::new(),
                run_limits: None,
                anomaly: None,
            }
        })
        .collect();
    Registry {
        roles,
        tools,
        agents,
        budgets: Vec::new(),
        servers: Vec::new(),
        change_review: None,
    }
}

/// Team policies: agent-, tool- and team-scoped forbids, some with argument
/// conditions, and an occasional global one. The first four name the allowed
/// request's agent, team and tool, so that its selected set is not trivially
/// just the base policies; none of them fires for it.
fn policies(size: &Size, rng: &mut Lcg) -> String {
    let amount_tools: Vec<usize> = (0..size.tools).filter(|&t| declares_amount(t)).collect();
    let mut text = String::new();
    for k in 0..size.policies {
        let agent = if k < 4 { 0 } else { rng.below(size.agents) };
        let tool = if k < 4 {
            0
        } else {
            amount_tools
                .get(rng.below(amount_tools.len()))
                .copied()
                .unwrap_or(0)
        };
        let policy = if k % 12 == 11 {
            "forbid (principal, action, resource)\nwhen { context.user has organization && context.user.organization == \"blocked-org\" };".to_owned()
        } else {
            match k % 4 {
                0 => format!(
                    "forbid (principal == Agent::\"{}\", action, resource)\nwhen {{ context.now.hour_utc < 6 || context.risk >= 4 }};",
                    agent_id(agent)
                ),
                1 => format!(
                    "forbid (principal, action == Action::\"{}\", resource)\nwhen {{ context.arguments.amount > {} }};",
                    tool_id(tool),
                    1_000 * (1 + rng.below(20))
                ),
                2 => format!(
                    "forbid (principal in Team::\"{}\", action in Action::\"category:delete\", resource)\nwhen {{ context.now.weekday >= 6 }};",
                    team_of(agent, size.agents)
                ),
                _ => format!(
                    "forbid (principal in Team::\"{}\", action == Action::\"{}\", resource)\nwhen {{ context.arguments.amount > 100000 && !context.user.roles.contains(\"{}\") }};",
                    team_of(agent, size.agents),
                    tool_id(tool),
                    role_id(1)
                ),
            }
        };
        text.push_str(&format!("@id(\"custom:{k}\")\n{policy}\n\n"));
    }
    text
}

/// One benchmarked request.
struct Call {
    label: &'static str,
    agent: String,
    tool: String,
    user: UserContext,
    arguments: Value,
    now: OffsetDateTime,
    expect: Decision,
}

impl Call {
    fn input(&self) -> DecisionInput<'_> {
        DecisionInput {
            agent_id: &self.agent,
            user: &self.user,
            tool_id: &self.tool,
            requested_risk: None,
            arguments: &self.arguments,
            session_id: Some("bench-session"),
            environment: Environment::Dev,
            now: self.now,
        }
    }
}

struct Scale {
    name: &'static str,
    summary: String,
    engine: PolicyEngine,
    allow: Call,
    deny_not_granted: Call,
    deny_forbidden: Call,
}

fn scale(size: &Size) -> Result<Scale, String> {
    let mut rng = Lcg(0x5eed_0000 + size.agents as u64);
    let registry = registry(size, &mut rng);
    let mut bundle = PolicyBundle::default();
    // JSON is YAML, and the registry has no YAML serializer.
    let yaml = serde_json::to_string_pretty(&registry).map_err(|e| e.to_string())?;
    bundle.files.insert("registry.yaml".to_owned(), yaml);
    bundle
        .files
        .insert("custom.cedar".to_owned(), policies(size, &mut rng));
    let compiled = compile(&bundle).map_err(|diags| {
        diags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let summary = format!(
        "{} agents, {} tools, {} grants, {} policies ({} custom)",
        registry.agents.len(),
        registry.tools.len(),
        registry
            .agents
            .iter()
            .map(|a| a.grants.len())
            .sum::<usize>(),
        compiled.policies.policies().count(),
        size.policies,
    );
    let version = PolicyVersionRef {
        id: "bench".to_owned(),
        content_hash: compiled.content_hash.clone(),
    };
    let engine = PolicyEngine::new(compiled, version).map_err(|e| format!("{e:?}"))?;

    let granted: Vec<&str> = registry
        .agents
        .first()
        .map(|a| a.grants.iter().map(|g| g.tool.as_str()).collect())
        .unwrap_or_default();
    let ungranted = (0..size.tools)
        .map(tool_id)
        .find(|t| !granted.contains(&t.as_str()) && !t.is_empty())
        .ok_or("agent-0 holds every tool")?;
    let user = UserContext {
        id: "user-1".to_owned(),
        roles: vec![role_id(0)],
        organization: Some("acme".to_owned()),
    };
    let now = datetime!(2026-01-07 12:00 UTC);
    let call = |label, tool: String, amount: i64, expect| Call {
        label,
        agent: agent_id(0),
        arguments: if declares_amount(tool_number(&tool)) {
            json!({ "amount": amount, "note": "invoice 42" })
        } else {
            json!({ "note": "invoice 42" })
        },
        tool,
        user: user.clone(),
        now,
        expect,
    };
    let s = Scale {
        name: size.name,
        summary,
        allow: call("allow", tool_id(0), 50, Decision::Allow),
        deny_not_granted: call("deny (not granted)", ungranted, 50, Decision::Deny),
        deny_forbidden: call(
            "deny (argument forbid)",
            tool_id(0),
            10_000_000,
            Decision::Deny,
        ),
        engine,
    };
    // A benchmark of the wrong outcome measures the wrong path.
    for c in [&s.allow, &s.deny_not_granted, &s.deny_forbidden] {
        for (path, got) in [
            ("decide", s.engine.decide(&c.input())),
            ("full set", s.engine.decide_with_full_set(&c.input())),
        ] {
            if got.decision != c.expect {
                return Err(format!(
                    "{}: `{}` via {path} got {:?} ({:?})",
                    s.name,
                    c.label,
                    got.decision,
                    got.codes()
                ));
            }
        }
    }
    Ok(s)
}

fn tool_number(id: &str) -> usize {
    id.strip_prefix("tool-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

fn bench_decisions(c: &mut Criterion, scales: &[Scale]) {
    for s in scales {
        let mut group = c.benchmark_group(s.name);
        let allow = s.allow.input();
        let not_granted = s.deny_not_granted.input();
        let forbidden = s.deny_forbidden.input();
        group.bench_function("decide allow", |b| {
            b.iter(|| s.engine.decide(black_box(&allow)))
        });
        group.bench_function("decide deny (not granted)", |b| {
            b.iter(|| s.engine.decide(black_box(&not_granted)))
        });
        group.bench_function("decide deny (argument forbid)", |b| {
            b.iter(|| s.engine.decide(black_box(&forbidden)))
        });
        group.bench_function("full set allow", |b| {
            b.iter(|| s.engine.decide_with_full_set(black_box(&allow)))
        });
        group.finish();
    }
}

/// Latency of individually timed calls, in microseconds: (p50, p99, max).
fn percentiles(mut call: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..TIMED_CALLS / 10 {
        call();
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(TIMED_CALLS);
    for _ in 0..TIMED_CALLS {
        let start = Instant::now();
        call();
        samples.push(start.elapsed());
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (
        at(0.50),
        at(0.99),
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
    )
}

fn percentile_report(scales: &[Scale]) {
    println!("\nPer-decision latency, {TIMED_CALLS} individually timed calls per row (µs):\n");
    println!(
        "{:<26} {:<32} {:>9} {:>9} {:>9}",
        "scale", "call", "p50", "p99", "max"
    );
    for s in scales {
        let rows: [(&str, &Call, bool); 4] = [
            ("decide allow", &s.allow, false),
            ("decide deny (not granted)", &s.deny_not_granted, false),
            ("decide deny (argument forbid)", &s.deny_forbidden, false),
            ("full set allow", &s.allow, true),
        ];
        for (label, call, full) in rows {
            let input = call.input();
            let (p50, p99, max) = percentiles(|| {
                let e = if full {
                    s.engine.decide_with_full_set(black_box(&input))
                } else {
                    s.engine.decide(black_box(&input))
                };
                black_box(e);
            });
            println!(
                "{:<26} {:<32} {p50:>9.1} {p99:>9.1} {max:>9.1}",
                s.name, label
            );
        }
    }
    for s in scales {
        println!("{}: {}", s.name, s.summary);
    }
}

// A hand-written main instead of `criterion_main!`: the scales are built once
// and shared, setup errors end the run with a message instead of a panic, and
// the percentile table follows criterion's runs.
fn main() {
    let mut scales = Vec::new();
    for size in &SIZES {
        match scale(size) {
            Ok(s) => scales.push(s),
            Err(e) => {
                eprintln!("cannot set up `{}`: {e}", size.name);
                std::process::exit(1);
            }
        }
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench_decisions(&mut criterion, &scales);
    criterion.final_summary();
    // Without `--bench` (`cargo test --benches`) criterion only smoke-tests; so do we.
    if std::env::args().any(|a| a == "--bench") {
        percentile_report(&scales);
    }
}
