//! The domain model: the registry of agents and tools, the request, and the decision.

mod decision;
mod registry;
mod request;
mod servers;

pub use decision::{
    ApprovalOutcome, ApprovalStatus, Decision, DecisionRecord, Execution, ExecutionStatus,
    LimitHit, Reason, ReasonCode, ShadowOutcome,
};
pub use registry::iam_principal;
pub use registry::{
    default_anomaly_percent, AgentSpec, AgentStatus, AnomalySpec, ApprovalSpec, ArgumentSpec,
    ArgumentType, BudgetScope, BudgetSpec, Category, ChangeReviewSpec, Environment, GrantSpec,
    RateLimitScope, RateLimitSpec, Registry, Risk, RoleSpec, RunLimits, ToolSpec,
    UnknownEnvironmentError, UnknownRiskError, Usd,
};
pub use request::{AuthorizeRequest, UserContext};
pub use servers::{
    CredentialSpec, Endpoint, Forwarded, IdempotencySpec, ServerSpec, Transport,
    DEFAULT_UPSTREAM_TIMEOUT_SECONDS,
};
