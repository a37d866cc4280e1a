//! End-to-end tests of the AWS deployment on moto's server.
//!
//! The harness starts moto (from the project's `.venv`, which
//! `scripts/test.sh` creates) behind a router of its own: moto's Step
//! Functions interpreter sends Lambda invocations to the router, which runs
//! this project's real handlers, and every other request goes through to
//! moto. All AWS calls, the handlers' and the tests', are made by the real
//! Rust SDK clients over HTTP. Each test provisions its own stack (tables,
//! topic, state machine from `statemachines/approval.asl.json`) under a
//! unique prefix, so the tests run in parallel on one emulator.

// Only the binary and path helpers of the shared test module, and its
// OpenAPI check of every JSON answer, are used here.
#[cfg(test)]
#[path = "approval_suite.rs"]
mod approval_suite;
#[cfg(test)]
#[path = "aws/changes.rs"]
mod changes;
#[cfg(test)]
#[allow(dead_code)]
mod common;
#[cfg(test)]
#[path = "aws/emulator.rs"]
mod emulator;
#[cfg(test)]
#[path = "aws/gateway.rs"]
mod gateway;
#[cfg(test)]
#[path = "aws/idempotency.rs"]
mod idempotency;
#[cfg(test)]
#[path = "idempotency_suite.rs"]
mod idempotency_suite;
#[cfg(test)]
#[path = "aws/inbox.rs"]
mod inbox;
#[cfg(test)]
#[path = "aws/limits.rs"]
mod limits;
#[cfg(test)]
#[path = "limits_suite.rs"]
mod limits_suite;
#[cfg(test)]
#[path = "aws/scenarios.rs"]
mod scenarios;
#[cfg(test)]
#[path = "aws/stack.rs"]
mod stack;
