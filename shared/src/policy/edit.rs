//! Edits of a registry's text that keep everything else as written
//! (comments, order, layout): what an access review's revocation proposes.

/// `text` without agent `agent`'s grant of `tool`, or `None` when the grant
/// is not written as a block-style list item under the agent's `grants:`
/// (the edit is then left to a person).
pub fn without_grant(text: &str, agent: &str, tool: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let value = |l: &str, key: &str| -> Option<String> {
        let rest = l.trim_start().strip_prefix("- ").unwrap_or(l.trim_start());
        let v = rest.strip_prefix(key)?.trim_start().strip_prefix(':')?;
        let v = v.split(" #").next().unwrap_or(v).trim();
        Some(v.trim_matches(|c| c == '"' || c == '\'').to_owned())
    };
    // The agent's item: `- id: AGENT`, up to the next line indented as
    // little as its dash.
    let start = lines.iter().position(|l| {
        l.trim_start().starts_with("- ") && value(l, "id").as_deref() == Some(agent)
    })?;
    let dash = indent(lines.get(start)?);
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| !l.trim().is_empty() && indent(l) <= dash)
        .map_or(lines.len(), |(i, _)| i);
    let grants = (start + 1..end).find(|&i| {
        lines
            .get(i)
            .is_some_and(|l| l.trim_start().starts_with("grants:") && l.trim_end().ends_with(':'))
    })?;
    let grants_indent = indent(lines.get(grants)?);
    // The grant's item: `- tool: TOOL` and any deeper lines after it.
    let item = (grants + 1..end).find(|&i| {
        lines.get(i).is_some_and(|l| {
            indent(l) >= grants_indent
                && l.trim_start().starts_with("- ")
                && value(l, "tool").as_deref() == Some(tool)
        })
    })?;
    let item_indent = indent(lines.get(item)?);
    let item_end = (item + 1..end)
        .find(|&i| {
            lines
                .get(i)
                .is_some_and(|l| l.trim().is_empty() || indent(l) <= item_indent)
        })
        .unwrap_or(end);
    // The last grant gone, the list is written empty rather than null.
    let others = (grants + 1..end).any(|i| {
        (i < item || i >= item_end)
            && lines
                .get(i)
                .is_some_and(|l| indent(l) >= grants_indent && l.trim_start().starts_with("- "))
    });
    let emptied = format!("{}grants: []\n", " ".repeat(grants_indent));
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    out.extend(lines.get(..grants)?);
    out.push(if others { lines.get(grants)? } else { &emptied });
    out.extend(lines.get(grants + 1..item)?);
    out.extend(lines.get(item_end..)?);
    Some(out.concat())
}

#[cfg(test)]
mod tests {
    use super::without_grant;

    const REGISTRY: &str = "agents:
  - id: a   # the first
    team: t
    grants:
      - tool: read
      - tool: \"write\"
        risk_ceiling: low
      - tool: delete
    run_limits: { max_calls: 3 }

  - id: b
    grants:
      - tool: write
";

    #[test]
    fn removes_one_grant_and_its_settings_and_nothing_else() {
        let out = without_grant(REGISTRY, "a", "write").unwrap();
        assert_eq!(
            out,
            REGISTRY.replace("      - tool: \"write\"\n        risk_ceiling: low\n", "")
        );
        let out = without_grant(REGISTRY, "a", "delete").unwrap();
        assert_eq!(out, REGISTRY.replace("      - tool: delete\n", ""));
        let out = without_grant(REGISTRY, "b", "write").unwrap();
        assert!(out.ends_with("  - id: b\n    grants: []\n"), "{out}");
        assert!(out.contains("      - tool: \"write\""));
    }

    #[test]
    fn an_unknown_agent_or_grant_or_a_flow_list_is_left_to_a_person() {
        assert_eq!(without_grant(REGISTRY, "c", "read"), None);
        assert_eq!(without_grant(REGISTRY, "b", "read"), None);
        let flow = "agents:\n  - id: a\n    grants: [{ tool: read }]\n";
        assert_eq!(without_grant(flow, "a", "read"), None);
    }
}
