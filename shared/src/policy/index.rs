//! Per-request policy selection.
//!
//! Cedar evaluates every policy in the set it is given, about a microsecond
//! each, so evaluating the whole set would make a decision's cost grow with
//! the number of agents and tools. Each policy goes into one bucket by its
//! scope — global, one agent, one team, or a set of tools — and a request
//! evaluates only the global bucket plus those of its agent, the agent's team
//! and its tool. A policy whose scope cannot match a request is never
//! satisfied and never errs, so leaving it out cannot change the answer; the
//! differential test in `engine` checks exactly that against the whole set.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, EntityUid, Policy, PolicySet, PolicySetError, PrincipalConstraint,
    ResourceConstraint,
};

use crate::model::Registry;

/// Where a policy can apply.
#[derive(Debug, PartialEq, Eq)]
enum Bucket {
    Global,
    Agent(String),
    Team(String),
    Tools(Vec<String>),
}

/// Policies bucketed by scope, with the sets for granted (agent, tool) pairs
/// assembled ahead of time so the hot path allocates nothing.
#[derive(Debug)]
pub(crate) struct PolicyIndex {
    global: Vec<Policy>,
    by_agent: HashMap<String, Vec<Policy>>,
    by_team: HashMap<String, Vec<Policy>>,
    by_tool: HashMap<String, Vec<Policy>>,
    prepared: HashMap<String, HashMap<String, PolicySet>>,
}

fn uid_parts(uid: &EntityUid) -> (String, String) {
    (uid.type_name().to_string(), uid.id().unescaped().to_owned())
}

fn classify(policy: &Policy, registry: &Registry) -> Bucket {
    if let PrincipalConstraint::Eq(uid) = policy.principal_constraint() {
        let (ty, id) = uid_parts(&uid);
        if ty == "Agent" {
            return Bucket::Agent(id);
        }
    }
    let expand = |uid: &EntityUid| -> Vec<String> {
        let (_, id) = uid_parts(uid);
        match id.strip_prefix("category:") {
            Some(cat) => registry
                .tools
                .iter()
                .filter(|t| t.category.as_str() == cat)
                .map(|t| t.id.clone())
                .collect(),
            None => vec![id],
        }
    };
    let tools = match policy.action_constraint() {
        ActionConstraint::Eq(uid) => Some(expand(&uid)),
        ActionConstraint::In(uids) => Some(uids.iter().flat_map(expand).collect()),
        ActionConstraint::Any => match policy.resource_constraint() {
            ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid)
                if uid_parts(&uid).0 == "Tool" =>
            {
                Some(vec![uid_parts(&uid).1])
            }
            _ => None,
        },
    };
    if let Some(tools) = tools {
        return Bucket::Tools(tools);
    }
    match policy.principal_constraint() {
        PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid)
            if uid_parts(&uid).0 == "Team" =>
        {
            Bucket::Team(uid_parts(&uid).1)
        }
        _ => Bucket::Global,
    }
}

impl PolicyIndex {
    /// Buckets every policy and prepares the sets of all granted pairs.
    pub(crate) fn build(
        policies: &PolicySet,
        registry: &Registry,
    ) -> Result<Self, Box<PolicySetError>> {
        let mut index = PolicyIndex {
            global: Vec::new(),
            by_agent: HashMap::new(),
            by_team: HashMap::new(),
            by_tool: HashMap::new(),
            prepared: HashMap::new(),
        };
        for policy in policies.policies() {
            match classify(policy, registry) {
                Bucket::Global => index.global.push(policy.clone()),
                Bucket::Agent(a) => index.by_agent.entry(a).or_default().push(policy.clone()),
                Bucket::Team(t) => index.by_team.entry(t).or_default().push(policy.clone()),
                Bucket::Tools(tools) => {
                    let unique: HashSet<String> = tools.into_iter().collect();
                    for t in unique {
                        index.by_tool.entry(t).or_default().push(policy.clone());
                    }
                }
            }
        }
        for agent in &registry.agents {
            let mut sets = HashMap::new();
            for grant in &agent.grants {
                sets.insert(
                    grant.tool.clone(),
                    index.assemble(&agent.id, &agent.team, &grant.tool)?,
                );
            }
            index.prepared.insert(agent.id.clone(), sets);
        }
        Ok(index)
    }

    /// The prepared set of a granted pair.
    pub(crate) fn prepared(&self, agent: &str, tool: &str) -> Option<&PolicySet> {
        self.prepared.get(agent).and_then(|m| m.get(tool))
    }

    /// Assembles the set relevant to one (agent, tool) pair.
    pub(crate) fn assemble(
        &self,
        agent: &str,
        team: &str,
        tool: &str,
    ) -> Result<PolicySet, Box<PolicySetError>> {
        let none = Vec::new();
        let parts = [
            &self.global,
            self.by_agent.get(agent).unwrap_or(&none),
            self.by_team.get(team).unwrap_or(&none),
            self.by_tool.get(tool).unwrap_or(&none),
        ];
        let mut set = PolicySet::new();
        for policy in parts.into_iter().flatten() {
            set.add(policy.clone()).map_err(Box::new)?;
        }
        Ok(set)
    }
}
