//! Digests: periodic, signed statements of every chain's head, each linked
//! to the digest before it (the model is CloudTrail's digest files).
//!
//! A chain alone cannot show that its newest records were cut off, nor that
//! the whole chain was recomputed after an edit. A digest can: it names the
//! position and link of every chain's head at a moment, and it is signed
//! with a key that the writer of records does not need to keep beside them.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a digest states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Its position among digests, from 1.
    pub digest_seq: u64,
    /// When it was made (RFC 3339, UTC).
    pub created_at: String,
    /// The hash of the previous digest's body ([`super::GENESIS`] for the first).
    pub previous_digest_hash: String,
    /// Every chain's head at `created_at`, by partition name.
    pub heads: Vec<DigestHead>,
    /// How many records the heads cover, over all chains.
    pub records: u64,
    /// The id of the key that signed it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// One chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestHead {
    /// The chain.
    pub partition: String,
    /// The head's position.
    pub seq: u64,
    /// The head's link.
    pub hash: String,
}

/// Signs bytes (Ed25519): the audit key's `sign`.
pub type Signer<'a> = dyn Fn(&[u8]) -> [u8; 64] + 'a;

/// A digest as stored: its exact bytes, their hash and the signature over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDigest {
    /// The digest, as JSON.
    pub body: String,
    /// Hex SHA-256 of `body`.
    pub hash: String,
    /// Hex Ed25519 signature over `body`, when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl SignedDigest {
    /// Serializes `digest` and signs it with `sign` (none: unsigned, for
    /// evidence whose immutability comes from the storage, such as S3 Object Lock).
    pub fn new(digest: &Digest, sign: Option<&Signer<'_>>) -> Self {
        let body = serde_json::to_string(digest).unwrap_or_default();
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let signature = sign.map(|s| hex::encode(s(body.as_bytes())));
        Self {
            body,
            hash,
            signature,
        }
    }

    /// The digest, after checking the stored hash and, with a trusted public
    /// key, the signature.
    pub fn open(&self, trusted: Option<&[u8; 32]>) -> Result<Digest, String> {
        if hex::encode(Sha256::digest(self.body.as_bytes())) != self.hash {
            return Err("its body does not match its hash".into());
        }
        if let Some(key) = trusted {
            let key = ed25519_dalek::VerifyingKey::from_bytes(key)
                .map_err(|_| "the trusted public key is not an Ed25519 key".to_owned())?;
            let sig = self
                .signature
                .as_deref()
                .ok_or_else(|| "it is not signed".to_owned())?;
            let bytes: [u8; 64] = hex::decode(sig)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| "its signature is malformed".to_owned())?;
            key.verify_strict(
                self.body.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&bytes),
            )
            .map_err(|_| "its signature is not valid for the audit key".to_owned())?;
        }
        serde_json::from_str(&self.body).map_err(|e| format!("its body is not a digest: {e}"))
    }
}

/// The id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public))
        .chars()
        .take(16)
        .collect()
}

/// Separates the audit key's derivation from any other use of the secret.
const KEY_DOMAIN: &[u8] = b"agent-governance/audit-key/v1\n";

/// The fewest characters a secret may have to derive the audit key from
/// (the template generates 64 random letters and digits).
pub const MIN_SECRET_CHARS: usize = 32;

/// The audit key of the AWS deployment: an Ed25519 key whose seed is the
/// SHA-256 of a secret (a Secrets Manager secret, read once at cold start).
pub struct SecretAuditKey {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SecretAuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretAuditKey({})", self.id())
    }
}

/// A secret too short to derive a key from.
#[derive(Debug, thiserror::Error)]
#[error("the audit key secret has {0} characters; at least {MIN_SECRET_CHARS} are needed")]
pub struct WeakSecretError(pub usize);

impl SecretAuditKey {
    /// The key derived from `secret`.
    pub fn from_secret(secret: &str) -> Result<Self, WeakSecretError> {
        let secret = secret.trim();
        let chars = secret.chars().count();
        if chars < MIN_SECRET_CHARS {
            return Err(WeakSecretError(chars));
        }
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        h.update(secret.as_bytes());
        let seed: [u8; 32] = h.finalize().into();
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// The public half, which verifiers pass as `--public-key`.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The key's id, named in every digest it signs.
    pub fn id(&self) -> String {
        key_id(&self.public_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;

    fn digest() -> Digest {
        Digest {
            digest_seq: 1,
            created_at: "2026-01-07T12:00:00Z".into(),
            previous_digest_hash: super::super::GENESIS.into(),
            heads: vec![DigestHead {
                partition: "d1".into(),
                seq: 3,
                hash: "ab".into(),
            }],
            records: 3,
            key_id: None,
        }
    }

    #[test]
    fn signatures_are_checked_against_the_trusted_key() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let sign = |m: &[u8]| key.sign(m).to_bytes();
        let signed = SignedDigest::new(&digest(), Some(&sign));
        let public = key.verifying_key().to_bytes();
        assert_eq!(signed.open(Some(&public)), Ok(digest()));
        assert!(signed
            .open(Some(&other.verifying_key().to_bytes()))
            .is_err());
        let mut edited = signed.clone();
        edited.body = edited.body.replace("\"seq\":3", "\"seq\":2");
        assert!(edited.open(None).is_err(), "the hash no longer matches");
        edited.hash = hex::encode(Sha256::digest(edited.body.as_bytes()));
        assert!(
            edited.open(None).is_ok(),
            "unsigned, only the hash is checked"
        );
        assert!(edited.open(Some(&public)).is_err(), "the signature is not");
        let unsigned = SignedDigest::new(&digest(), None);
        assert!(unsigned.open(Some(&public)).is_err());
    }

    #[test]
    fn a_secret_derives_a_stable_key_and_short_ones_are_refused() {
        let secret = "a".repeat(MIN_SECRET_CHARS);
        let key = SecretAuditKey::from_secret(&secret).unwrap();
        assert_eq!(
            key.public_key(),
            SecretAuditKey::from_secret(&format!("{secret}\n"))
                .unwrap()
                .public_key()
        );
        let sign = |m: &[u8]| key.sign(m);
        let signed = SignedDigest::new(&digest(), Some(&sign));
        assert!(signed.open(Some(&key.public_key())).is_ok());
        assert!(!format!("{key:?}").contains(&secret));
        assert!(SecretAuditKey::from_secret("short").is_err());
    }
}
