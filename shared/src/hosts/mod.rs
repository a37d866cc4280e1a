//! Hosts that run the functions in process, for the local control plane
//! (`govctl serve`): what Step Functions and Lambda do on AWS, done here with
//! the same handlers and payloads. Adapters implement ports; a host calls
//! handlers, so it is kept apart from them.
//!
//! - [`workflow`]: the approval workflow of `statemachines/approval.asl.json`.
//! - The HTTP and MCP endpoints are hosted by [`crate::http`].

pub mod workflow;
