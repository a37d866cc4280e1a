//! The domain model: the registry of agents and tools, the request, and the decision.

mod decision;
mod registry;
mod request;

pub use decision::{ApprovalOutcome, ApprovalStatus, Decision, DecisionRecord, Reason, ReasonCode};
pub use registry::iam_principal;
pub use registry::{
    AgentSpec, AgentStatus, ApprovalSpec, ArgumentSpec, ArgumentType, Category, Environment,
    GrantSpec, RateLimitScope, RateLimitSpec, Registry, Risk, RoleSpec, ToolSpec,
    UnknownEnvironmentError, UnknownRiskError,
};
pub use request::{AuthorizeRequest, UserContext};
