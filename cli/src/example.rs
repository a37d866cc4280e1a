//! The example policy set (`infra/policies`), built into the binary so that
//! `govctl serve` starts with something to serve from any directory.

use governance::policy::PolicyBundle;

const FILES: [(&str, &str); 5] = [
    (
        "registry.yaml",
        include_str!("../../infra/policies/registry.yaml"),
    ),
    (
        "meridian.cedar",
        include_str!("../../infra/policies/meridian.cedar"),
    ),
    (
        "operations.cedar",
        include_str!("../../infra/policies/operations.cedar"),
    ),
    (
        "treasury.cedar",
        include_str!("../../infra/policies/treasury.cedar"),
    ),
    (
        "tests/seed_cases.yaml",
        include_str!("../../infra/policies/tests/seed_cases.yaml"),
    ),
];

/// The example bundle.
pub fn bundle() -> PolicyBundle {
    PolicyBundle {
        files: FILES
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_set_is_the_one_in_infra() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/policies");
        let on_disk = governance::policy::PolicyBundle::from_dir(&dir).unwrap();
        assert_eq!(
            super::bundle(),
            on_disk,
            "add new files of infra/policies to cli/src/example.rs"
        );
    }
}
