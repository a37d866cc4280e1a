//! `govctl registry import --server NAME`: registry entries proposed from
//! an upstream server's `tools/list`, for a reviewer to complete.
//!
//! The server's annotations are hints, so they only set the starting point,
//! and never a loose one: a tool the server calls read-only becomes a `read`
//! of low risk; one it calls non-destructive a `write` of medium risk; any
//! other, unannotated ones included (the protocol's default is
//! destructive), a `delete` of high risk, which waits for human approval
//! until someone decides otherwise. Nobody may call a proposed tool
//! (`allowed_roles` is empty) and no agent is granted it: that is the
//! reviewer's decision.

use std::fmt::Write as _;

use serde_json::Value;

use crate::model::Registry;

/// One tool the registry does not name yet, as YAML for `tools:`.
fn entry(server: &str, tool: &Value, out: &mut String) {
    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
    let hint = |h: &str| {
        tool.get("annotations")
            .and_then(|a| a.get(h))
            .and_then(Value::as_bool)
    };
    let (category, risk, why) = if hint("readOnlyHint") == Some(true) {
        ("read", "low", "the server marks it read-only")
    } else if hint("destructiveHint") == Some(false) {
        ("write", "medium", "the server marks it non-destructive")
    } else {
        (
            "delete",
            "high",
            "the server does not mark it read-only or non-destructive (MCP's default: destructive)",
        )
    };
    let description = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let _ = writeln!(out, "  - id: {}", yaml_str(name));
    if !description.is_empty() {
        let _ = writeln!(out, "    description: {}", yaml_str(&description));
    }
    let _ = writeln!(out, "    server: {}", yaml_str(server));
    let _ = writeln!(out, "    category: {category}          # {why}");
    let _ = writeln!(out, "    risk: {risk}              # review");
    let _ = writeln!(
        out,
        "    classification: internal   # review: public, internal, confidential or pii"
    );
    let _ = writeln!(
        out,
        "    allowed_roles: []          # review: nobody may call it yet"
    );
    if category == "delete" {
        let _ = writeln!(
            out,
            "    approval: {{ approver_group: REVIEW-ME }}   # delete tools wait for a human"
        );
    }
    let schema = tool.get("inputSchema");
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    match properties {
        Some(props) if !props.is_empty() => {
            let _ = writeln!(out, "    arguments:");
            for (arg, spec) in props {
                let ty = match spec.get("type").and_then(Value::as_str) {
                    Some("integer") => "long",
                    Some("boolean") => "bool",
                    Some("number") => "decimal",
                    Some("string") => "string",
                    other => {
                        let _ = writeln!(
                            out,
                            "      # `{arg}` is {}: declare it as a string or leave it out",
                            other.unwrap_or("untyped")
                        );
                        continue;
                    }
                };
                let req = if required.contains(&arg.as_str()) {
                    ", required: true"
                } else {
                    ""
                };
                let _ = writeln!(out, "      {arg}: {{ type: {ty}{req} }}");
            }
        }
        _ => {
            let _ = writeln!(out, "    arguments: {{}}");
        }
    }
}

/// A YAML scalar, quoted when plain style could misread it.
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ' ' | ','))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !matches!(s, "true" | "false" | "null" | "yes" | "no");
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The proposal for `server`'s `tools` (MCP `Tool` objects): entries for
/// the tools `registry` does not map yet, and a note of those it does.
pub fn propose(server: &str, tools: &[Value], registry: &Registry) -> String {
    let mut out = String::new();
    let mut known = Vec::new();
    let mut new = String::new();
    for tool in tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mapped = registry
            .tools
            .iter()
            .find(|t| t.server.as_deref() == Some(server) && t.upstream_name() == name);
        match mapped {
            Some(t) => known.push(format!("{name} (registry id `{}`)", t.id)),
            None => entry(server, tool, &mut new),
        }
    }
    let _ = writeln!(
        out,
        "# Proposed by `govctl registry import --server {server}` from its tools/list:\n\
         # {} tool(s), {} already in the registry. Review every entry, then add it\n\
         # under `tools:` and grant it to agents.",
        tools.len(),
        known.len()
    );
    for k in &known {
        let _ = writeln!(out, "#   already registered: {k}");
    }
    if new.is_empty() {
        let _ = writeln!(out, "# Nothing to add.");
    } else {
        out.push_str("tools:\n");
        out.push_str(&new);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::{compile, PolicyBundle, REGISTRY_FILE};

    #[test]
    fn annotations_set_a_starting_point_that_is_never_loose() {
        let tools = vec![
            json!({"name": "get_rate", "description": "Read a rate\nmore", "annotations": {"readOnlyHint": true},
                   "inputSchema": {"type": "object", "properties": {"currency": {"type": "string"}, "days": {"type": "integer"}}, "required": ["currency"]}}),
            json!({"name": "tag_account", "annotations": {"destructiveHint": false},
                   "inputSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}, "amount": {"type": "number"}, "meta": {"type": "object"}}}}),
            json!({"name": "close_account", "inputSchema": {"type": "object"}}),
            json!({"name": "search_kb", "inputSchema": {"type": "object"}}),
        ];
        let registry: Registry = serde_json::from_value(json!({
            "servers": [{"id": "bank", "endpoints": {"dev": {"url": "http://x/mcp"}}}],
            "tools": [{"id": "search_kb", "server": "bank", "category": "read", "risk": "low", "classification": "internal"}]
        }))
        .unwrap();
        let text = propose("bank", &tools, &registry);
        assert!(text.contains("4 tool(s), 1 already in the registry"));
        assert!(text.contains("already registered: search_kb"));
        let proposal = &text[text.find("\ntools:\n").unwrap() + 1..];
        assert!(proposal.contains("  - id: get_rate\n    description: Read a rate\n"));
        assert!(proposal.contains("category: read") && proposal.contains("risk: low"));
        assert!(proposal.contains("      currency: { type: string, required: true }"));
        assert!(proposal.contains("      days: { type: long }"));
        assert!(proposal.contains("  - id: tag_account"));
        assert!(proposal.contains("category: write"));
        assert!(proposal.contains("      amount: { type: decimal }"));
        assert!(proposal.contains("`meta` is object"));
        // Unannotated: destructive, high, and waiting for a human.
        let close = &proposal[proposal.find("  - id: close_account").unwrap()..];
        assert!(close.contains("category: delete") && close.contains("risk: high"));
        assert!(close.contains("approval: { approver_group: REVIEW-ME }"));
        // The proposal is a valid registry once the server is defined.
        let mut bundle = PolicyBundle::default();
        let yaml = format!(
            "servers:\n  - id: bank\n    endpoints:\n      dev: {{ url: \"http://x/mcp\" }}\n{proposal}"
        );
        bundle.files.insert(REGISTRY_FILE.to_owned(), yaml);
        assert!(compile(&bundle).is_ok(), "{proposal}");
    }
}
