//! Upstream credentials from Secrets Manager: the registry's secret `NAME`
//! is the secret `PREFIX/NAME` (the stack's prefix), read on first use and
//! kept for a few minutes, so that a rotated secret is picked up without a
//! deployment and a warm function does not read it on every call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use tokio::sync::Mutex;

use crate::ports::{Secrets, UpstreamError};

/// How long a secret is kept in memory.
const KEEP: Duration = Duration::from_secs(300);

/// Secrets under one prefix.
#[derive(Debug)]
pub struct SecretsManagerSecrets {
    client: Client,
    prefix: String,
    cache: Mutex<HashMap<String, (Instant, String)>>,
}

impl SecretsManagerSecrets {
    /// The secrets named `PREFIX/NAME`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Secrets for SecretsManagerSecrets {
    async fn secret(&self, name: &str) -> Result<String, UpstreamError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, value)) = cache.get(name) {
            if at.elapsed() < KEEP {
                return Ok(value.clone());
            }
        }
        let id = format!("{}/{name}", self.prefix.trim_end_matches('/'));
        let value = self
            .client
            .get_secret_value()
            .secret_id(&id)
            .send()
            .await
            .map_err(|e| {
                // The secret's value never reaches a message; its name does.
                UpstreamError::Unusable(format!(
                    "the upstream credential `{id}` cannot be read from Secrets Manager: {}",
                    super::describe(&e)
                ))
            })?
            .secret_string
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                UpstreamError::Unusable(format!("the upstream credential `{id}` is empty"))
            })?;
        cache.insert(name.to_owned(), (Instant::now(), value.clone()));
        Ok(value)
    }
}
