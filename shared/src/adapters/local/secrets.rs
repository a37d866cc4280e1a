//! Upstream credentials of the local control plane: the environment
//! variable `GOVCTL_SECRET_<NAME>` (upper case, `-` as `_`), else the file
//! `secrets/<name>` in the data directory (owner-only, like the signing key).

use std::path::PathBuf;

use async_trait::async_trait;

use crate::ports::{Secrets, UpstreamError};

/// Secrets from the environment and the data directory.
#[derive(Debug, Clone)]
pub struct LocalSecrets {
    dir: PathBuf,
}

impl LocalSecrets {
    /// Secrets from the environment, else from `data_dir/secrets/`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: data_dir.into().join("secrets"),
        }
    }

    /// The environment variable that holds secret `name`.
    pub fn variable(name: &str) -> String {
        format!(
            "GOVCTL_SECRET_{}",
            name.to_ascii_uppercase().replace('-', "_")
        )
    }
}

#[async_trait]
impl Secrets for LocalSecrets {
    async fn secret(&self, name: &str) -> Result<String, UpstreamError> {
        let variable = Self::variable(name);
        if let Ok(value) = std::env::var(&variable) {
            if !value.is_empty() {
                return Ok(value);
            }
        }
        // Names are letters, digits, - and _ (checked by the registry), so
        // this stays inside the directory.
        let path = self.dir.join(name);
        // Read once per connection: a small file, worth no thread of its own.
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            _ => Err(UpstreamError::Unusable(format!(
                "the upstream credential `{name}` is not configured: set {variable} or write it to {}",
                path.display()
            ))),
        }
    }
}
