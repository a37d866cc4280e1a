//! YAML with positions: parsing that reports file:line:column, and lookups of
//! where a value stands so that semantic errors can point at it.

use marked_yaml::{LoadError, LoaderOptions, Marker, Node};
use serde::de::DeserializeOwned;

use super::Diagnostic;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence index.
    Index(usize),
}

/// Parses `text` into the node tree and into `T`.
pub(crate) fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<(T, Node), Diagnostic> {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let node =
        marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| load_error(file, &e))?;
    let value = marked_yaml::from_node::<T>(&node).map_err(|e| {
        let (line, column) = match (e.start_mark(), &*e) {
            (Some(m), _) => (m.line(), m.column()),
            // Unknown fields come without a position; the key's first use is it.
            (None, marked_yaml::Error::UnknownFieldError(field, _, _)) => key_position(text, field),
            // e.g. "unknown variant `lowish`": the value's first use is it.
            (None, other) => other
                .to_string()
                .split('`')
                .nth(1)
                .map_or((0, 0), |value| value_position(text, value)),
        };
        Diagnostic::error(file, line, column, lowercase_first(&e.to_string()))
    })?;
    Ok((value, node))
}

fn key_position(text: &str, key: &str) -> (usize, usize) {
    let wanted = format!("{key}:");
    text.lines()
        .enumerate()
        .find_map(|(i, line)| {
            let body = line.trim_start().trim_start_matches("- ").trim_start();
            body.starts_with(&wanted)
                .then(|| (i + 1, line.len() - body.len() + 1))
        })
        .unwrap_or((0, 0))
}

fn value_position(text: &str, value: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, line)| {
            let body = line.split('#').next().unwrap_or(line);
            let at = [
                format!(": {value}"),
                format!("- {value}"),
                format!("[{value}"),
            ]
            .iter()
            .find_map(|p| body.find(p.as_str()).map(|c| c + p.len() - value.len()))?;
            let rest = body.get(at + value.len()..).unwrap_or("");
            rest.chars()
                .next()
                .is_none_or(|c| matches!(c, ' ' | ',' | ']' | '}'))
                .then_some((i + 1, at + 1))
        })
        .unwrap_or((0, 0))
}

fn load_error(file: &str, e: &LoadError) -> Diagnostic {
    let mark = match e {
        LoadError::TopLevelMustBeMapping(m)
        | LoadError::TopLevelMustBeSequence(m)
        | LoadError::UnexpectedAnchor(m)
        | LoadError::MappingKeyMustBeScalar(m)
        | LoadError::UnexpectedTag(m)
        | LoadError::ScanError(m, _) => Some(*m),
        LoadError::DuplicateKey(inner) => inner.key.span().start().copied(),
    };
    let (line, column) = mark.map_or((0, 0), |m: Marker| (m.line(), m.column()));
    // The loader prefixes its own position; ours is in the diagnostic already.
    let text = e.to_string();
    let message = text
        .split_once(": ")
        .filter(|_| !matches!(e, LoadError::DuplicateKey(_)))
        .map_or(text.as_str(), |(_, rest)| rest)
        .to_owned();
    Diagnostic::error(file, line, column, lowercase_first(&message))
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The node at `path`, if any.
pub(crate) fn node_at<'n>(node: &'n Node, path: &[Seg<'_>]) -> Option<&'n Node> {
    let mut cur = node;
    for seg in path {
        cur = match (seg, cur) {
            (Seg::Key(k), Node::Mapping(m)) => m.get_node(k)?,
            (Seg::Index(i), Node::Sequence(s)) => s.get_node(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Line and column of the value at `path`, or of its nearest existing parent.
pub(crate) fn position(node: &Node, path: &[Seg<'_>]) -> (usize, usize) {
    for len in (0..=path.len()).rev() {
        if let Some(n) = path.get(..len).and_then(|p| node_at(node, p)) {
            if let Some(m) = n.span().start() {
                return (m.line(), m.column());
            }
        }
    }
    (0, 0)
}

/// Converts a YAML node to JSON, typing plain scalars as YAML 1.2's core
/// schema does (quoted scalars stay strings).
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Scalar(s) => {
            let text = s.as_str();
            if !s.may_coerce() {
                return Value::String(text.to_owned());
            }
            match text {
                "null" | "~" | "" => Value::Null,
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => serde_json::from_str::<serde_json::Number>(text)
                    .map_or_else(|_| Value::String(text.to_owned()), Value::Number),
            }
        }
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        count: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Kinds {
        kinds: Vec<crate::model::Risk>,
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = parse::<Doc>("f.yaml", "name: a\ncount: many\n").unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("f.yaml", 2));
        let err = parse::<Doc>("f.yaml", "name: a\ncount: 1\ncolour: red\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("colour"), "{}", err.message);
        let err = parse::<Doc>("f.yaml", "name: a\nname: b\ncount: 1\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse::<Kinds>("f.yaml", "kinds:\n  - low\n  - lowish\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 5), "{err}");
    }

    #[test]
    fn plain_scalars_are_typed_and_quoted_ones_are_strings() {
        let options = LoaderOptions::default().prevent_coercion(true);
        let text = "a: 1\nb: '1'\nc: true\nd: 2.5\ne: x\n";
        let node = marked_yaml::parse_yaml_with_options(0, text, options).unwrap();
        assert_eq!(
            to_json(&node),
            serde_json::json!({"a": 1, "b": "1", "c": true, "d": 2.5, "e": "x"})
        );
    }
}
