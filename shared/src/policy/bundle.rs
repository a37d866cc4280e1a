//! A policy bundle: the files of a policy directory, content-addressed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The registry's file name inside a policy directory.
pub const REGISTRY_FILE: &str = "registry.yaml";

/// Bundles larger than this are refused: a policy set is reviewed by people.
const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;

/// Reading a policy directory failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory has no registry.
    #[error("`{0}` has no {REGISTRY_FILE}")]
    MissingRegistry(PathBuf),
    /// A file is not UTF-8.
    #[error("`{0}` is not UTF-8 text")]
    NotUtf8(PathBuf),
    /// The bundle is too large.
    #[error("the policy directory holds more than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
}

/// The files of a policy directory: relative path (with `/`) → text.
///
/// Only `registry.yaml`, `*.cedar` and `tests/*.yaml` belong to a bundle;
/// anything else in the directory is ignored, so READMEs do not change the hash.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyBundle {
    /// Relative path → file content.
    pub files: BTreeMap<String, String>,
}

impl PolicyBundle {
    /// Reads a policy directory.
    pub fn from_dir(dir: &Path) -> Result<Self, BundleError> {
        let mut files = BTreeMap::new();
        let mut total = 0usize;
        collect(dir, dir, &mut files, &mut total)?;
        if !files.contains_key(REGISTRY_FILE) {
            return Err(BundleError::MissingRegistry(dir.to_path_buf()));
        }
        Ok(Self { files })
    }

    /// The registry's text.
    pub fn registry(&self) -> Option<&str> {
        self.files.get(REGISTRY_FILE).map(String::as_str)
    }

    /// The Cedar files, by path.
    pub fn cedar_files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .filter(|(p, _)| p.ends_with(".cedar"))
            .map(|(p, t)| (p.as_str(), t.as_str()))
    }

    /// The test case files, by path.
    pub fn test_files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .filter(|(p, _)| is_test_file(p))
            .map(|(p, t)| (p.as_str(), t.as_str()))
    }

    /// `sha256:<hex>` over every path and content, length-prefixed so that no
    /// two different bundles share an encoding.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for (path, text) in &self.files {
            h.update((path.len() as u64).to_be_bytes());
            h.update(path.as_bytes());
            h.update((text.len() as u64).to_be_bytes());
            h.update(text.as_bytes());
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}

fn is_test_file(path: &str) -> bool {
    path.starts_with("tests/") && (path.ends_with(".yaml") || path.ends_with(".yml"))
}

fn belongs(path: &str) -> bool {
    path == REGISTRY_FILE || path.ends_with(".cedar") || is_test_file(path)
}

fn collect(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, String>,
    total: &mut usize,
) -> Result<(), BundleError> {
    let io = |source| BundleError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(io)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if file_type.is_dir() {
            collect(root, &path, files, total)?;
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if !belongs(&rel) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| BundleError::Io {
            path: path.clone(),
            source,
        })?;
        *total += bytes.len();
        if *total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge);
        }
        let text = String::from_utf8(bytes).map_err(|_| BundleError::NotUtf8(path.clone()))?;
        files.insert(rel, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_any_byte_and_path() {
        let mut a = PolicyBundle::default();
        a.files.insert("registry.yaml".into(), "agents: []".into());
        let mut b = a.clone();
        b.files.insert("registry.yaml".into(), "agents: [] ".into());
        let mut c = PolicyBundle::default();
        c.files.insert("registry.yml".into(), "agents: []".into());
        assert_ne!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
        assert_eq!(a.content_hash(), a.clone().content_hash());
    }
}
