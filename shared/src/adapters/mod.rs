//! Adapters behind the [`crate::ports`]: the embedded SQLite store used by
//! `govctl serve`, and in-process metrics and notifications.

pub mod local;
pub mod sqlite;
