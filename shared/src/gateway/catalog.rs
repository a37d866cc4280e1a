//! What `tools/list` offers an agent acting for a user: the registry's tools
//! that the agent could call for this user in some context (its grants, the
//! user's roles and the environment), described as the upstream server
//! describes them, under the registry's ids.
//!
//! Context that changes from call to call (arguments, time, risk declared,
//! team `forbid` rules) is decided at `tools/call`; a listed tool may still
//! be denied there. Upstream tools the registry does not name are never
//! offered.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::model::{
    AgentSpec, AgentStatus, Category, Endpoint, Environment, Registry, ServerSpec, ToolSpec,
    UserContext,
};

/// A tool the agent may be offered, and where it runs.
#[derive(Debug, Clone, Copy)]
pub struct Offered<'a> {
    /// The registry's entry.
    pub tool: &'a ToolSpec,
    /// Its server.
    pub server: &'a ServerSpec,
    /// The server's endpoint in this environment.
    pub endpoint: &'a Endpoint,
}

/// Where `tool` runs in `environment`: its server and that server's
/// endpoint there, or why it cannot be called through the gateway.
pub fn route<'a>(
    registry: &'a Registry,
    tool: &'a ToolSpec,
    environment: Environment,
) -> Result<Offered<'a>, Unroutable> {
    let server_id = tool.server.as_deref().ok_or(Unroutable::NoServer)?;
    let server = registry.server(server_id).ok_or(Unroutable::NoServer)?;
    let endpoint = server.endpoint(environment).ok_or(Unroutable::NoEndpoint)?;
    Ok(Offered {
        tool,
        server,
        endpoint,
    })
}

/// Why a registry tool cannot be called through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unroutable {
    /// The tool names no upstream server.
    NoServer,
    /// Its server has no endpoint in this environment.
    NoEndpoint,
}

/// The user's roles with every role they inherit.
pub fn effective_roles<'a>(registry: &'a Registry, roles: &'a [String]) -> BTreeSet<&'a str> {
    let mut all: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = roles.iter().map(String::as_str).collect();
    while let Some(role) = todo.pop() {
        if all.insert(role) {
            if let Some(spec) = registry.roles.iter().find(|r| r.id == role) {
                todo.extend(spec.inherits.iter().map(String::as_str));
            }
        }
    }
    all
}

/// The tools `agent` could call for `user` in `environment`: granted within
/// its risk ceiling, allowed for one of the user's roles, and served by an
/// upstream endpoint here. A disabled agent, or one registered for another
/// environment, is offered nothing.
pub fn offered<'a>(
    registry: &'a Registry,
    agent: &'a AgentSpec,
    user: &UserContext,
    environment: Environment,
) -> Vec<Offered<'a>> {
    if agent.status != AgentStatus::Active || agent.environment != environment {
        return Vec::new();
    }
    let roles = effective_roles(registry, &user.roles);
    agent
        .grants
        .iter()
        .filter_map(|grant| {
            let tool = registry.tools.iter().find(|t| t.id == grant.tool)?;
            let permitted = tool
                .allowed_roles
                .iter()
                .any(|r| roles.contains(r.as_str()));
            (permitted && tool.risk <= agent.ceiling_for(grant))
                .then(|| route(registry, tool, environment).ok())
                .flatten()
        })
        .collect()
}

/// The MCP `Tool` an agent is shown for `offered`, from the upstream's own
/// description `upstream` of it: renamed to the registry id, with the
/// filtered fields gone from its output schema, annotations that are never
/// looser than the registry's, and a note when calls wait for a human.
pub fn describe(offered: &Offered<'_>, upstream: &Value) -> Value {
    let tool = offered.tool;
    let mut out = upstream.as_object().cloned().unwrap_or_default();
    out.insert("name".into(), Value::String(tool.id.clone()));
    let mut description = upstream
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| tool.description.clone())
        .unwrap_or_default();
    if tool.requires_approval() {
        let group = tool
            .approval
            .as_ref()
            .and_then(|a| a.approver_group.as_deref())
            .unwrap_or("an approver");
        description.push_str(&format!(
            "\n\nCalls wait for human approval by {group}: the first call answers with the \
             approval to wait for; repeat exactly the same call once it is approved."
        ));
    }
    out.insert("description".into(), Value::String(description));
    if !out.contains_key("inputSchema") {
        out.insert("inputSchema".into(), json!({"type": "object"}));
    }
    if let Some(schema) = out.get_mut("outputSchema") {
        for path in &tool.response_filter {
            let steps: Vec<&str> = path.split('.').collect();
            strip_schema(schema, &steps);
        }
    }
    out.insert(
        "annotations".into(),
        annotations(tool, upstream.get("annotations")),
    );
    let mut meta = out
        .remove("_meta")
        .and_then(|m| m.as_object().cloned())
        .unwrap_or_default();
    meta.insert(
        "agent-governance/tool".into(),
        json!({
            "category": tool.category.as_str(),
            "risk": tool.risk.as_str(),
            "classification": tool.classification,
            "requires_approval": tool.requires_approval(),
        }),
    );
    out.insert("_meta".into(), Value::Object(meta));
    Value::Object(out)
}

/// The hints shown to the agent: the registry's category and the upstream's
/// hints together, each taking the stricter of the two. Hints the upstream
/// leaves out take the protocol's defaults (not read-only, destructive, not
/// idempotent, open world).
fn annotations(tool: &ToolSpec, upstream: Option<&Value>) -> Value {
    let hint = |name: &str| upstream.and_then(|a| a.get(name)).and_then(Value::as_bool);
    let read_only = tool.category == Category::Read && hint("readOnlyHint").unwrap_or(false);
    let registry_destructive = matches!(
        tool.category,
        Category::Delete
            | Category::Transfer
            | Category::Publish
            | Category::Execute
            | Category::Admin
    );
    let mut out = Map::new();
    if let Some(title) = upstream.and_then(|a| a.get("title")) {
        out.insert("title".into(), title.clone());
    }
    out.insert("readOnlyHint".into(), Value::Bool(read_only));
    if !read_only {
        out.insert(
            "destructiveHint".into(),
            Value::Bool(registry_destructive || hint("destructiveHint").unwrap_or(true)),
        );
        // Exactly-once execution makes a repeat harmless whatever the server
        // says; otherwise only the server can know.
        out.insert(
            "idempotentHint".into(),
            Value::Bool(tool.idempotency.is_some() || hint("idempotentHint").unwrap_or(false)),
        );
    }
    out.insert(
        "openWorldHint".into(),
        Value::Bool(hint("openWorldHint").unwrap_or(true)),
    );
    Value::Object(out)
}

/// Removes the property at `steps` from a JSON Schema (through `properties`
/// and array `items`), and from its parent's `required`.
fn strip_schema(schema: &mut Value, steps: &[&str]) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.get("type").and_then(Value::as_str) == Some("array") {
        if let Some(items) = obj.get_mut("items") {
            strip_schema(items, steps);
        }
        return;
    }
    match steps {
        [] => {}
        [last] => {
            if let Some(Value::Object(props)) = obj.get_mut("properties") {
                props.remove(*last);
            }
            if let Some(Value::Array(required)) = obj.get_mut("required") {
                required.retain(|r| r.as_str() != Some(last));
            }
        }
        [first, rest @ ..] => {
            if let Some(next) = obj.get_mut("properties").and_then(|p| p.get_mut(*first)) {
                strip_schema(next, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Risk;

    fn tool(category: Category) -> ToolSpec {
        serde_json::from_value(json!({
            "id": "pull_credit_report", "category": category, "risk": "high",
            "classification": "pii", "allowed_roles": ["underwriter"],
            "response_filter": ["raw_fico_model", "bureau.contact.phone"],
            "server": "bureau", "upstream_tool": "credit_report"
        }))
        .unwrap()
    }

    fn server() -> ServerSpec {
        serde_json::from_value(json!({
            "id": "bureau",
            "endpoints": {"dev": {"url": "http://127.0.0.1:1/mcp"}, "prod": {"url": "https://bureau.example/mcp"}}
        }))
        .unwrap()
    }

    fn in_dev<'a>(tool: &'a ToolSpec, server: &'a ServerSpec) -> Offered<'a> {
        Offered {
            tool,
            server,
            endpoint: server.endpoint(Environment::Dev).unwrap(),
        }
    }

    #[test]
    fn an_upstream_cannot_loosen_the_registry() {
        let t = tool(Category::Read);
        let s = server();
        let o = in_dev(&t, &s);
        // An unannotated upstream tool counts as destructive.
        let shown = describe(&o, &json!({"name": "credit_report"}));
        assert_eq!(shown["name"], "pull_credit_report");
        assert_eq!(shown["annotations"]["readOnlyHint"], false);
        assert_eq!(shown["annotations"]["destructiveHint"], true);
        let shown = describe(
            &o,
            &json!({"name": "credit_report", "annotations": {"readOnlyHint": true}}),
        );
        assert_eq!(shown["annotations"]["readOnlyHint"], true);
        // A write tool stays a write whatever the server claims.
        let w = tool(Category::Transfer);
        let o = Offered { tool: &w, ..o };
        let shown = describe(
            &o,
            &json!({"name": "credit_report", "annotations": {"readOnlyHint": true, "destructiveHint": false}}),
        );
        assert_eq!(shown["annotations"]["readOnlyHint"], false);
        assert_eq!(shown["annotations"]["destructiveHint"], true);
    }

    #[test]
    fn filtered_fields_leave_the_output_schema() {
        let t = tool(Category::Read);
        let s = server();
        let o = in_dev(&t, &s);
        let upstream = json!({"name": "credit_report", "inputSchema": {"type": "object"},
            "outputSchema": {"type": "object", "required": ["score", "raw_fico_model"], "properties": {
                "score": {"type": "integer"}, "raw_fico_model": {"type": "object"},
                "bureau": {"type": "object", "properties": {"contact": {"type": "object",
                    "required": ["phone"], "properties": {"phone": {"type": "string"}}}}}}}});
        let shown = describe(&o, &upstream);
        let schema = &shown["outputSchema"];
        assert_eq!(schema["required"], json!(["score"]));
        assert!(schema["properties"].get("raw_fico_model").is_none());
        assert_eq!(
            schema["properties"]["bureau"]["properties"]["contact"],
            json!({"type": "object", "required": [], "properties": {}})
        );
        assert_eq!(t.risk, Risk::High);
    }
}
