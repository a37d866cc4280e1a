//! Response filters: the `response_filter` paths of a tool are removed from
//! its result before the agent sees it (seed 003: the raw FICO model details
//! never reach the loan agent).
//!
//! A path is a dotted list of object keys (`customer.payment_method`). Where
//! a step meets an array, the rest of the path applies to each element, so
//! `accounts.number` removes the number of every account. A path is removed
//! from `structuredContent` and from every text content item whose text is a
//! JSON object or array; other text is left alone, since nothing in it can be
//! found by path. The caller records which paths were removed, never the
//! values.

use serde_json::Value;

/// Removes `paths` from an MCP `CallToolResult` (as JSON), and returns the
/// paths that removed something, in the order given.
pub fn strip(result: &mut Value, paths: &[String]) -> Vec<String> {
    if paths.is_empty() {
        return Vec::new();
    }
    let mut hit = vec![false; paths.len()];
    if let Some(structured) = result.get_mut("structuredContent") {
        mark(&mut hit, structured, paths);
    }
    if let Some(Value::Array(items)) = result.get_mut("content") {
        for item in items.iter_mut() {
            if item.get("type").and_then(Value::as_str) != Some("text") {
                continue;
            }
            let Some(Value::String(text)) = item.get_mut("text") else {
                continue;
            };
            let Ok(mut parsed) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if !(parsed.is_object() || parsed.is_array()) {
                continue;
            }
            let mut here = vec![false; paths.len()];
            mark(&mut here, &mut parsed, paths);
            if here.iter().any(|h| *h) {
                // Rewritten compactly: the agent gets the same data, without
                // the removed parts.
                *text = parsed.to_string();
            }
            for (h, x) in hit.iter_mut().zip(here) {
                *h |= x;
            }
        }
    }
    paths
        .iter()
        .zip(hit)
        .filter(|(_, h)| *h)
        .map(|(p, _)| p.clone())
        .collect()
}

fn mark(hit: &mut [bool], value: &mut Value, paths: &[String]) {
    for (flag, path) in hit.iter_mut().zip(paths) {
        let steps: Vec<&str> = path.split('.').collect();
        if remove(value, &steps) {
            *flag = true;
        }
    }
}

/// Removes the path `steps` under `value`; whether anything was removed.
fn remove(value: &mut Value, steps: &[&str]) -> bool {
    match value {
        // Every element, not just up to the first that had the path.
        Value::Array(items) => {
            items
                .iter_mut()
                .map(|item| remove(item, steps))
                .filter(|removed| *removed)
                .count()
                > 0
        }
        Value::Object(map) => match steps {
            [] => false,
            [last] => map.remove(*last).is_some(),
            [first, rest @ ..] => map.get_mut(*first).is_some_and(|v| remove(v, rest)),
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::strip;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn removes_paths_from_structured_content_and_json_text() {
        let report = json!({"score": 712, "raw_fico_model": {"weights": [1, 2]}, "bureau": "x"});
        let mut result = json!({
            "content": [
                {"type": "text", "text": report.to_string()},
                {"type": "text", "text": "raw_fico_model is mentioned in prose"},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"}
            ],
            "structuredContent": report,
            "isError": false
        });
        let removed = strip(&mut result, &paths(&["raw_fico_model", "absent.path"]));
        assert_eq!(removed, ["raw_fico_model"]);
        assert_eq!(
            result["structuredContent"],
            json!({"score": 712, "bureau": "x"})
        );
        let text: serde_json::Value =
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, json!({"score": 712, "bureau": "x"}));
        // Prose is not JSON: nothing in it can be found by path.
        assert_eq!(
            result["content"][1]["text"],
            "raw_fico_model is mentioned in prose"
        );
    }

    #[test]
    fn nested_paths_reach_into_every_array_element() {
        let mut result = json!({"structuredContent": {
            "customer": {"name": "A", "payment_method": {"iban": "DE89"}},
            "accounts": [{"number": "1", "kind": "c"}, {"number": "2"}, 7]
        }});
        let removed = strip(
            &mut result,
            &paths(&[
                "customer.payment_method",
                "accounts.number",
                "customer.name.x",
            ]),
        );
        assert_eq!(removed, ["customer.payment_method", "accounts.number"]);
        assert_eq!(
            result["structuredContent"],
            json!({"customer": {"name": "A"}, "accounts": [{"kind": "c"}, {}, 7]})
        );
    }

    #[test]
    fn a_result_without_the_paths_is_unchanged() {
        let original = json!({"content": [{"type": "text", "text": "{\"a\": 1}"}]});
        let mut result = original.clone();
        assert!(strip(&mut result, &paths(&["b"])).is_empty());
        // Untouched text keeps its exact bytes.
        assert_eq!(result, original);
    }
}
