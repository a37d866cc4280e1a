//! Adapters behind the [`crate::ports`]: the embedded SQLite store used by
//! `govctl serve`, in-process metrics and notifications, and (with the
//! `aws` feature) the AWS services.

#[cfg(feature = "aws")]
pub mod aws;
pub mod local;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod sqlite;
