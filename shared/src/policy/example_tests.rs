//! The shipped example policy set compiles and passes its own test cases.

use std::path::Path;

use super::*;

/// The registry of the shipped example set, for tests elsewhere in the crate.
pub(crate) fn example_registry() -> crate::model::Registry {
    example().1.registry().clone()
}

fn example() -> (PolicyBundle, PolicyEngine) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/policies");
    let bundle = PolicyBundle::from_dir(&dir).unwrap();
    let compiled = compile(&bundle).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let version = PolicyVersionRef {
        id: "test".into(),
        content_hash: compiled.content_hash.clone(),
    };
    (bundle, PolicyEngine::new(compiled, version).unwrap())
}

#[test]
fn example_policy_set_passes_its_cases() {
    let (bundle, engine) = example();
    let outcomes = run_tests(&engine, &bundle).unwrap();
    assert!(outcomes.len() >= 20);
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(TestOutcome::summary)
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
