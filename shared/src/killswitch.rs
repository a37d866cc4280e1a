//! The kill switch: immediate containment of an agent, or of one version of
//! it, that misbehaves. While an agent is disabled every call it makes is
//! denied (`agent_disabled`), whatever the policy says, and recorded.
//!
//! The switch is kept beside the policy versions, not in them: containment
//! must not wait for a policy review, and publishing a new version must not
//! silently turn an agent back on. Each change is a control event in the
//! audit chain, written in the same transaction as the change: who, when,
//! why. The hosts re-read the switch with the active policy pointer (every
//! second locally, every `POLICY_REFRESH_SECONDS` on AWS).

use serde::{Deserialize, Serialize};

use crate::audit::{ControlAction, ControlEvent};
use crate::model::{Reason, ReasonCode};

/// One agent, or one version of it, switched off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disablement {
    /// The agent.
    pub agent_id: String,
    /// Only this registered version of it; every version when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Who switched it off.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

impl Disablement {
    /// Whether this disablement covers `agent_id` running `version`.
    pub fn covers(&self, agent_id: &str, version: Option<&str>) -> bool {
        self.agent_id == agent_id
            && match &self.version {
                None => true,
                Some(v) => version == Some(v.as_str()),
            }
    }

    /// The deny reason of a call it stops.
    pub fn deny_reason(&self) -> Reason {
        let which = match &self.version {
            Some(v) => format!("version {v} of agent `{}`", self.agent_id),
            None => format!("agent `{}`", self.agent_id),
        };
        Reason {
            code: ReasonCode::AgentDisabled,
            message: format!(
                "{which} was disabled by {} at {}: {}",
                self.by, self.at, self.reason
            ),
            policy_id: None,
        }
    }
}

/// Every disablement in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillSwitch(pub Vec<Disablement>);

impl KillSwitch {
    /// The disablement that stops `agent_id` running `version`, if any.
    pub fn find(&self, agent_id: &str, version: Option<&str>) -> Option<&Disablement> {
        self.0.iter().find(|d| d.covers(agent_id, version))
    }
}

/// A change of the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    /// Switch an agent (or version) off; replaces an earlier disablement of the same.
    Disable(Disablement),
    /// Switch it back on.
    Enable {
        /// The agent.
        agent_id: String,
        /// The version, when only one was disabled.
        version: Option<String>,
        /// Who.
        by: String,
        /// Why, optionally.
        reason: Option<String>,
        /// When (RFC 3339).
        at: String,
    },
}

impl Switch {
    /// The agent and version it is about.
    pub fn target(&self) -> (&str, Option<&str>) {
        match self {
            Switch::Disable(d) => (&d.agent_id, d.version.as_deref()),
            Switch::Enable {
                agent_id, version, ..
            } => (agent_id, version.as_deref()),
        }
    }

    /// The control event that records it, naming the policy version
    /// (id and content hash) active at the time.
    pub fn event(&self, active: (&str, &str)) -> ControlEvent {
        let (action, actor, message, at) = match self {
            Switch::Disable(d) => (
                ControlAction::AgentDisabled,
                &d.by,
                Some(d.reason.clone()),
                &d.at,
            ),
            Switch::Enable { by, reason, at, .. } => {
                (ControlAction::AgentEnabled, by, reason.clone(), at)
            }
        };
        let (agent_id, version) = self.target();
        ControlEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            timestamp: at.clone(),
            actor: actor.clone(),
            action,
            version_id: active.0.to_owned(),
            content_hash: active.1.to_owned(),
            previous_version: None,
            message,
            changes: Vec::new(),
            agent_id: Some(agent_id.to_owned()),
            agent_version: version.map(str::to_owned),
            review: None,
            change: None,
        }
    }
}

/// The key a store keeps a disablement under: the agent, and the version
/// or `*` for all of them (length-prefixed, so no pair spells another).
pub fn switch_key(agent_id: &str, version: Option<&str>) -> String {
    let version = version.unwrap_or("*");
    format!("{}:{agent_id}#{version}", agent_id.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(version: Option<&str>) -> Disablement {
        Disablement {
            agent_id: "loan".into(),
            version: version.map(Into::into),
            by: "ops".into(),
            reason: "loop".into(),
            at: "2026-12-02T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_disablement_covers_its_agent_and_only_its_version() {
        let all = KillSwitch(vec![off(None)]);
        assert!(all.find("loan", Some("3.0.1")).is_some());
        assert!(all.find("loan", None).is_some());
        assert!(all.find("other", Some("3.0.1")).is_none());
        let one = KillSwitch(vec![off(Some("3.0.1"))]);
        assert!(one.find("loan", Some("3.0.1")).is_some());
        assert!(one.find("loan", Some("3.0.2")).is_none());
        assert!(one.find("loan", None).is_none());
        let reason = one.0[0].deny_reason();
        assert_eq!(reason.code, ReasonCode::AgentDisabled);
        assert!(
            reason.message.contains("version 3.0.1") && reason.message.contains("ops"),
            "{}",
            reason.message
        );
        assert_ne!(switch_key("a#1", None), switch_key("a", Some("1#*")));
    }
}
