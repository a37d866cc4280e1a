//! Policy as code: bundles, the Cedar schema, compilation and the decision engine.
//!
//! A policy directory holds `registry.yaml` (agents, tools, roles), any number
//! of `.cedar` files, and declarative test cases under `tests/`. It is read
//! into a [`PolicyBundle`], compiled and validated into a [`CompiledPolicies`],
//! and served by a [`PolicyEngine`] that names the version it came from.

mod bundle;
mod compile;
mod diagnostics;
mod engine;
mod index;
mod testcases;
mod yaml;

pub use bundle::{BundleError, PolicyBundle, REGISTRY_FILE};
pub use compile::{compile, CompiledPolicies};
pub use diagnostics::{Diagnostic, Severity};
pub use engine::{DecisionInput, Evaluation, PolicyEngine, PolicyVersionRef};
pub use testcases::{run_tests, TestCase, TestOutcome};

/// The built-in base policies: the intersection of capability, permission and context.
pub const BASE_POLICIES: &str = include_str!("base.cedar");

/// The fixed part of the Cedar schema; tool actions are generated from the registry.
pub const BASE_SCHEMA: &str = include_str!("schema.cedarschema");
#[cfg(test)]
mod example_tests;
