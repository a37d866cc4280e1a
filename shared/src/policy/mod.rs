//! Policy as code: bundles, the Cedar schema, compilation and the decision engine.
//!
//! A policy directory holds `registry.yaml` (agents, tools, roles), any number
//! of `.cedar` files, and declarative test cases under `tests/`. It is read
//! into a [`PolicyBundle`], compiled and validated into a [`CompiledPolicies`],
//! and served by a [`PolicyEngine`] that names the version it came from.

mod bundle;
pub mod change_risk;
mod compile;
mod diagnostics;
pub mod edit;
mod engine;
mod index;
mod servers;
mod testcases;
pub(crate) mod yaml;

pub use bundle::{BundleError, PolicyBundle, REGISTRY_FILE};
pub use compile::{compile, CompiledPolicies};
pub use diagnostics::{Diagnostic, Severity};
pub use engine::{DecisionInput, EngineError, Evaluation, PolicyEngine, PolicyVersionRef};
pub use testcases::{load_tests, run_tests, TestCase, TestOutcome};

/// A stored or read bundle could not become an engine.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bundle does not compile; each diagnostic says where and why.
    #[error("the policy bundle is invalid:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// The compiled bundle could not be turned into an engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Compiles a bundle and builds the engine that serves it as `version`.
pub fn load_engine(
    bundle: &PolicyBundle,
    version: PolicyVersionRef,
) -> Result<PolicyEngine, LoadError> {
    let compiled = compile(bundle).map_err(LoadError::Invalid)?;
    Ok(PolicyEngine::new(compiled, version)?)
}

/// The built-in base policies: the intersection of capability, permission and context.
pub const BASE_POLICIES: &str = include_str!("base.cedar");

/// The fixed part of the Cedar schema; tool actions are generated from the registry.
pub const BASE_SCHEMA: &str = include_str!("schema.cedarschema");
#[cfg(test)]
pub(crate) mod example_tests;
