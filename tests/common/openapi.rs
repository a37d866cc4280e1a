//! Every JSON answer of the black-box tests is checked against
//! `docs/openapi.yaml`: its path and method must be documented, its status
//! must be one the operation lists, and its body must match that
//! response's schema. The spec is the contract clients are generated from;
//! an answer it does not describe is a defect of one or the other.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The spec as JSON, read once.
fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = super::workspace_root().join("docs/openapi.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
        serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("`{}` is not YAML: {e}", path.display()))
    })
}

/// The spec's path template that `path` (no query) matches, if any.
fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    spec()["paths"].as_object()?.keys().find_map(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        (parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())))
        .then_some(template.as_str())
    })
}

/// Follows a local `$ref` (`#/components/…`).
fn resolve(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(
            r.strip_prefix('#')
                .and_then(|pointer| spec().pointer(pointer))
                .unwrap_or_else(|| panic!("docs/openapi.yaml: `{r}` does not resolve")),
        ),
        None => value,
    }
}

/// Checks one answer; `what` is `METHOD /path?query` as the harness logs it.
/// Answers that are not JSON (pages, metrics) and paths the spec does not
/// cover (the approver's HTML pages) are left alone.
pub fn check(what: &str, status: u16, content_type: &str, body: &Value) {
    if !content_type.starts_with("application/json") {
        return;
    }
    let (method, target) = what.split_once(' ').unwrap_or(("GET", what));
    let path = target.split('?').next().unwrap_or(target);
    let Some(template) = template_of(path) else {
        assert!(
            !path.starts_with("/v1/") || path.starts_with("/v1/reviews/"),
            "{what} answered JSON but docs/openapi.yaml has no path for it"
        );
        return;
    };
    let operation = &spec()["paths"][template][method.to_ascii_lowercase()];
    assert!(
        operation.is_object(),
        "{what}: docs/openapi.yaml documents no {method} on `{template}`"
    );
    let responses = &operation["responses"];
    let class = format!("{}XX", status / 100);
    let response = [status.to_string(), class, "default".to_owned()]
        .iter()
        .map(|k| &responses[k.as_str()])
        .find(|r| !r.is_null())
        .unwrap_or_else(|| {
            panic!("{what}: HTTP {status} is not among the responses docs/openapi.yaml lists for {method} {template}")
        });
    let Some(schema) = resolve(response)
        .pointer("/content/application~1json/schema")
        .map(resolve)
    else {
        panic!("{what}: docs/openapi.yaml gives HTTP {status} of {method} {template} no JSON body");
    };
    let key = format!("{method} {template} {status}");
    static VALIDATORS: OnceLock<Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let validator = {
        let mut cache = VALIDATORS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .entry(key)
            .or_insert_with(|| {
                // The response's schema, with the spec's components beside it
                // so that its `#/components/…` references resolve.
                let mut root = schema.clone();
                if let Some(obj) = root.as_object_mut() {
                    obj.insert("components".into(), spec()["components"].clone());
                }
                std::sync::Arc::new(jsonschema::draft202012::new(&root).unwrap_or_else(|e| {
                    panic!("docs/openapi.yaml: the schema of {method} {template} {status} is invalid: {e}")
                }))
            })
            .clone()
    };
    let problems: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("  at `{}`: {e}", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "{what}: HTTP {status} does not match docs/openapi.yaml:\n{}\nbody: {body}",
        problems.join("\n")
    );
}
