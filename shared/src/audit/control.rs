//! Control-plane events: who published or activated which policy version,
//! when, and exactly what changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Registry;
use crate::policy::{PolicyBundle, REGISTRY_FILE};

/// The largest diff kept for one file; a longer one is cut, and says so.
const MAX_DIFF_BYTES: usize = 64 * 1024;

/// What happened in the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// A new immutable policy version was stored.
    PolicyPublished,
    /// A version became active (a roll-forward to a newer one).
    PolicyActivated,
    /// An older version became active again.
    PolicyRolledBack,
    /// An agent, or one version of it, was switched off (the kill switch).
    AgentDisabled,
    /// It was switched back on.
    AgentEnabled,
    /// An agent version called tools far above its usual rate (see [`crate::anomaly`]).
    AnomalyDetected,
    /// A reviewer's outcome for one grant in an access review.
    AccessReviewed,
    /// A policy change was proposed (its version published, not active).
    ChangeProposed,
    /// A reviewer approved a change; its activation follows in the same write.
    ChangeApproved,
    /// A reviewer rejected a change.
    ChangeRejected,
    /// A change's base was replaced before it activated; it must be proposed again.
    ChangeSuperseded,
}

impl ControlAction {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::PolicyPublished => "policy_published",
            ControlAction::PolicyActivated => "policy_activated",
            ControlAction::PolicyRolledBack => "policy_rolled_back",
            ControlAction::AgentDisabled => "agent_disabled",
            ControlAction::AgentEnabled => "agent_enabled",
            ControlAction::AnomalyDetected => "anomaly_detected",
            ControlAction::AccessReviewed => "access_reviewed",
            ControlAction::ChangeProposed => "change_proposed",
            ControlAction::ChangeApproved => "change_approved",
            ControlAction::ChangeRejected => "change_rejected",
            ControlAction::ChangeSuperseded => "change_superseded",
        }
    }
}

/// One control-plane event, chained in the `control` partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlEvent {
    /// Unique, time-ordered id (UUIDv7).
    pub event_id: String,
    /// When (RFC 3339, UTC).
    pub timestamp: String,
    /// Who did it.
    pub actor: String,
    /// What they did.
    pub action: ControlAction,
    /// The version published or activated.
    pub version_id: String,
    /// Its content hash.
    pub content_hash: String,
    /// The version it replaces: the parent of a published version, the
    /// previously active one of an activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// The publisher's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What changed against `previous_version`, file by file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<BundleChange>,
    /// The agent a kill-switch event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The one version of it, when not all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// An access review's outcome for one grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewOutcome>,
    /// The change request a change event, or an activation, belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeNote>,
}

/// What a control event says about a change request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNote {
    /// The change.
    pub change_id: String,
    /// `low` or `high`.
    pub risk: String,
    /// Why, as [`crate::policy::change_risk`] found it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Whether a reviewer must approve it.
    pub review_required: bool,
    /// The reviewer's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What a reviewer decided about one grant of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewOutcome {
    /// The granted tool.
    pub tool_id: String,
    /// `keep`, `revoke` or `recalibrate`.
    pub outcome: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl ControlEvent {
    /// The publication of `version`, whose parent's bundle was `parent`.
    pub fn published(
        version: &crate::ports::PolicyVersion,
        parent: Option<&PolicyBundle>,
        bundle: &PolicyBundle,
    ) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            timestamp: version.created_at.clone(),
            actor: version.author.clone(),
            action: ControlAction::PolicyPublished,
            version_id: version.id.clone(),
            content_hash: version.content_hash.clone(),
            previous_version: version.parent.clone(),
            message: Some(version.message.clone()),
            changes: diff_bundles(parent, bundle),
            agent_id: None,
            agent_version: None,
            review: None,
            change: None,
        }
    }

    /// The activation of `version` (its content hash and bundle) by `by` at
    /// `at`, replacing `previous` (its id and bundle); `rollback` when the
    /// version is older than the one it replaces.
    pub fn activated(
        version: (&str, &str, &PolicyBundle),
        previous: Option<(&str, &PolicyBundle)>,
        rollback: bool,
        by: &str,
        at: &str,
    ) -> Self {
        let (version_id, content_hash, bundle) = version;
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            timestamp: at.to_owned(),
            actor: by.to_owned(),
            action: if rollback {
                ControlAction::PolicyRolledBack
            } else {
                ControlAction::PolicyActivated
            },
            version_id: version_id.to_owned(),
            content_hash: content_hash.to_owned(),
            previous_version: previous.map(|(id, _)| id.to_owned()),
            message: None,
            changes: diff_bundles(previous.map(|(_, b)| b), bundle),
            agent_id: None,
            agent_version: None,
            review: None,
            change: None,
        }
    }
}

impl ControlEvent {
    /// One step of a change request's life (`change_proposed`,
    /// `change_approved`, `change_rejected`, `change_superseded`) by
    /// `actor` at `at`; `content_hash` is its version's.
    pub fn change_step(
        change: &crate::changes::ChangeRequest,
        action: ControlAction,
        actor: &str,
        at: &str,
        content_hash: &str,
    ) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            timestamp: at.to_owned(),
            actor: actor.to_owned(),
            action,
            version_id: change.version_id.clone(),
            content_hash: content_hash.to_owned(),
            previous_version: change.base_version.clone(),
            message: Some(change.message.clone()),
            changes: Vec::new(),
            agent_id: None,
            agent_version: None,
            review: None,
            change: Some(ChangeNote::of(change)),
        }
    }
}

impl ChangeNote {
    /// What a control event says about `change`.
    pub fn of(change: &crate::changes::ChangeRequest) -> Self {
        Self {
            change_id: change.change_id.clone(),
            risk: change.risk.class.as_str().to_owned(),
            reasons: change.risk.reasons.clone(),
            review_required: change.review_required,
            comment: change.comment.clone(),
        }
    }
}

/// How one file of a policy bundle changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleChange {
    /// The file, relative to the policy directory.
    pub file: String,
    /// `added`, `removed` or `modified`.
    pub change: String,
    /// For the registry: agents, tools and roles added, removed or changed,
    /// one line each (`agent meridian-loan-agent changed: version, grants`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<String>,
    /// A unified diff of the text.
    pub diff: String,
}

/// What changed from `old` (none: an empty bundle) to `new`, file by file.
pub fn diff_bundles(old: Option<&PolicyBundle>, new: &PolicyBundle) -> Vec<BundleChange> {
    let empty = BTreeMap::new();
    let old_files = old.map_or(&empty, |b| &b.files);
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        old_files.keys().chain(new.files.keys()).collect();
    for name in names {
        let (before, after) = (old_files.get(name), new.files.get(name));
        let change = match (before, after) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a != b => "modified",
            _ => continue,
        };
        let (a, b) = (
            before.map_or("", String::as_str),
            after.map_or("", String::as_str),
        );
        let summary = if name == REGISTRY_FILE {
            registry_summary(a, b)
        } else {
            Vec::new()
        };
        out.push(BundleChange {
            file: name.clone(),
            change: change.to_owned(),
            summary,
            diff: unified(name, a, b),
        });
    }
    out
}

fn unified(name: &str, a: &str, b: &str) -> String {
    let mut text = similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string();
    if text.len() > MAX_DIFF_BYTES {
        let mut cut = MAX_DIFF_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n… (diff cut at 64 KiB; the versions themselves are stored in full)\n");
    }
    text
}

/// One line per registry entry added, removed or changed, naming the fields
/// that changed. Unparseable registries give no summary: the diff remains.
fn registry_summary(a: &str, b: &str) -> Vec<String> {
    let parse = |t: &str| -> Option<Registry> {
        if t.is_empty() {
            return Some(Registry::default());
        }
        crate::policy::yaml::parse::<Registry>(REGISTRY_FILE, t)
            .ok()
            .map(|(r, _)| r)
    };
    let (Some(old), Some(new)) = (parse(a), parse(b)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    compare("role", &old.roles, &new.roles, |r| &r.id, &mut out);
    compare("tool", &old.tools, &new.tools, |t| &t.id, &mut out);
    compare("agent", &old.agents, &new.agents, |a| &a.id, &mut out);
    out
}

fn compare<T: Serialize>(
    kind: &str,
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> &String,
    out: &mut Vec<String>,
) {
    let as_map = |items: &[T]| -> BTreeMap<String, serde_json::Value> {
        items
            .iter()
            .map(|i| (id(i).clone(), serde_json::to_value(i).unwrap_or_default()))
            .collect()
    };
    let (old, new) = (as_map(old), as_map(new));
    for (key, before) in &old {
        match new.get(key) {
            None => out.push(format!("{kind} {key} removed")),
            Some(after) if after != before => {
                let fields = changed_fields(before, after);
                out.push(format!("{kind} {key} changed: {}", fields.join(", ")));
            }
            Some(_) => {}
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        out.push(format!("{kind} {key} added"));
    }
}

fn changed_fields(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["value".to_owned()];
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(files: &[(&str, &str)]) -> PolicyBundle {
        PolicyBundle {
            files: files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_diff_names_each_file_and_registry_entry() {
        let old = bundle(&[
            (
                "registry.yaml",
                "agents:\n  - id: a\n    description: x\n    team: t\n    environment: dev\n    risk_ceiling: low\n    version: \"1\"\n",
            ),
            ("gone.cedar", "permit (principal, action, resource);\n"),
            ("same.cedar", "forbid (principal, action, resource);\n"),
        ]);
        let new = bundle(&[
            (
                "registry.yaml",
                "agents:\n  - id: a\n    description: x\n    team: t\n    environment: dev\n    risk_ceiling: low\n    version: \"2\"\n",
            ),
            ("new.cedar", "permit (principal, action, resource);\n"),
            ("same.cedar", "forbid (principal, action, resource);\n"),
        ]);
        let changes = diff_bundles(Some(&old), &new);
        let kinds: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.file.as_str(), c.change.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("gone.cedar", "removed"),
                ("new.cedar", "added"),
                ("registry.yaml", "modified")
            ]
        );
        let registry = changes.iter().find(|c| c.file == "registry.yaml");
        assert_eq!(
            registry.map(|c| c.summary.clone()),
            Some(vec!["agent a changed: version".to_owned()])
        );
        assert!(registry
            .is_some_and(|c| c.diff.contains("-    version: \"1\"")
                && c.diff.contains("+    version: \"2\"")));
    }

    #[test]
    fn a_first_version_adds_everything() {
        let new = bundle(&[("registry.yaml", "tools: []\n"), ("p.cedar", "")]);
        let changes = diff_bundles(None, &new);
        assert!(changes.iter().all(|c| c.change == "added"));
        assert_eq!(changes.len(), 2);
    }
}
