//! The local signing key: an Ed25519 key kept in the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

/// The issuer of locally minted tokens.
pub const LOCAL_ISSUER: &str = "urn:agent-governance:local";

const KEY_FILE: &str = "signing-key.pem";

/// The file of the key that signs audit digests: kept apart from the token
/// key, so that rotating one never invalidates the other's history.
const AUDIT_KEY_FILE: &str = "audit-key.pem";

/// The local key could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("cannot access the signing key at `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not an Ed25519 PKCS#8 key.
    #[error("the signing key at `{0}` is not a valid Ed25519 PKCS#8 PEM key")]
    Invalid(PathBuf),
    /// The session secret file does not hold 32 or more hex-encoded bytes.
    #[error("the session secret at `{0}` is not 32 or more hex-encoded bytes")]
    InvalidSecret(PathBuf),
    /// No randomness was available.
    #[error("the operating system gave no randomness")]
    Random,
    /// Signing failed.
    #[error("cannot sign the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The data directory's signing key and its public key set.
pub struct LocalKeys {
    pem: String,
    kid: String,
    public: [u8; 32],
    key: SigningKey,
}

impl std::fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("LocalKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl LocalKeys {
    /// Loads the key from `data_dir/keys/`, creating it (mode 0600) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        Self::load_or_create_file(data_dir, KEY_FILE)
    }

    /// Loads the key that signs audit digests, creating it on first use.
    pub fn audit(data_dir: &Path) -> Result<Self, KeyError> {
        Self::load_or_create_file(data_dir, AUDIT_KEY_FILE)
    }

    fn load_or_create_file(data_dir: &Path, file: &str) -> Result<Self, KeyError> {
        let dir = data_dir.join("keys");
        let path = dir.join(file);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::adapters::local::files::create_private_dir(&dir).map_err(io)?;
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|_| KeyError::Random)?;
                let key = SigningKey::from_bytes(&seed);
                let pem = key
                    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map_err(|_| KeyError::Invalid(path.clone()))?
                    .to_string();
                write_private(&path, &pem).map_err(io)?;
                pem
            }
            Err(e) => return Err(io(e)),
        };
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Invalid(path.clone()))?;
        let public = key.verifying_key().to_bytes();
        let kid = hex::encode(Sha256::digest(public))
            .chars()
            .take(16)
            .collect();
        Ok(Self {
            pem,
            kid,
            public,
            key,
        })
    }

    /// The key id, as tokens' `kid` header carries it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set.
    pub fn jwks(&self) -> JwkSet {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.public);
        JwkSet {
            keys: vec![Jwk {
                common: CommonParameters {
                    public_key_use: Some(PublicKeyUse::Signature),
                    key_id: Some(self.kid.clone()),
                    key_algorithm: Some(KeyAlgorithm::EdDSA),
                    ..CommonParameters::default()
                },
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x,
                }),
            }],
        }
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Signs `message` (Ed25519), for audit digests.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }

    /// Signs claims (this project's [`super::Claims`], or any other set) into a compact JWT.
    pub fn mint<C: serde::Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        let key = EncodingKey::from_ed_pem(self.pem.as_bytes()).map_err(KeyError::Sign)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &key).map_err(KeyError::Sign)
    }
}

/// The secret that signs approvers' session cookies, from
/// `data_dir/keys/session.key` (32 random bytes, hex), created on first use.
pub fn session_secret(data_dir: &Path) -> Result<Vec<u8>, KeyError> {
    let dir = data_dir.join("keys");
    let path = dir.join("session.key");
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::adapters::local::files::create_private_dir(&dir).map_err(io)?;
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|_| KeyError::Random)?;
            let text = hex::encode(secret);
            write_private(&path, &text).map_err(io)?;
            text
        }
        Err(e) => return Err(io(e)),
    };
    match hex::decode(text.trim()) {
        Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
        _ => Err(KeyError::InvalidSecret(path)),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
