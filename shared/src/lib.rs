//! `governance`: the domain of agent-governance.
//!
//! It answers one question — may this agent, acting for this user, call this
//! tool with these arguments, here and now — and keeps the evidence of every
//! answer. The crate holds the model ([`model`]), the Cedar decision engine and
//! policy bundles ([`policy`]), the ports the domain talks through ([`ports`]),
//! the embedded adapters ([`adapters`]), token verification ([`auth`]), the
//! authorization service ([`service`]) and the HTTP surface ([`http`]) that
//! both `govctl serve` and the Lambda functions mount. The handlers of
//! the approval workflow's steps and of the Lambda functions are in
//! [`handlers`], and the hosts that run them in process for `govctl serve`
//! in [`hosts`]; with the `aws` feature the crate also holds the AWS adapters.

pub mod adapters;
pub mod anomaly;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod clock;
pub mod gateway;
pub mod handlers;
pub mod hosts;
pub mod http;
pub mod inventory;
pub mod killswitch;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod ports;
pub mod review;
pub mod runs;
pub mod service;
pub mod shadow;
