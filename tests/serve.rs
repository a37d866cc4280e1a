//! Black-box tests of `govctl serve`: each test starts its own server on a
//! free port and a fresh data directory, talks to it over HTTP with tokens
//! minted by `govctl`, and reads the SQLite decision log from outside.
//!
//! The modules are `#[cfg(test)]` (always true in a test binary) so that
//! clippy's `allow-*-in-tests` settings cover their helpers too.

#[cfg(test)]
#[path = "approval_suite.rs"]
mod approval_suite;
#[cfg(test)]
mod common;
#[cfg(test)]
#[path = "idempotency_suite.rs"]
mod idempotency_suite;

#[cfg(test)]
#[path = "serve/approvals.rs"]
mod approvals;
#[cfg(test)]
#[path = "serve/audit.rs"]
mod audit;
#[cfg(test)]
#[path = "serve/body.rs"]
mod body;
#[cfg(test)]
#[path = "serve/changes.rs"]
mod changes;
#[cfg(test)]
#[path = "serve/durability.rs"]
mod durability;
#[cfg(test)]
#[path = "serve/idempotency.rs"]
mod idempotency;

#[cfg(test)]
#[path = "limits_suite.rs"]
mod limits_suite;

#[cfg(test)]
#[path = "serve/limits.rs"]
mod limits;
#[cfg(test)]
#[path = "serve/operator.rs"]
mod operator;
#[cfg(test)]
#[path = "serve/reload.rs"]
mod reload;
#[cfg(test)]
#[path = "serve/seeds.rs"]
mod seeds;
#[cfg(test)]
#[path = "serve/store.rs"]
mod store;
#[cfg(test)]
#[path = "serve/tokens.rs"]
mod tokens;
