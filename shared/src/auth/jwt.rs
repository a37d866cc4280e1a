//! Verifying JWTs against a key set, issuer and audience.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::model::UserContext;

/// What a token is for; an agent credential is never accepted as a user token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// An agent's own credential.
    Agent,
    /// A user the agent acts for.
    User,
    /// A person who approves or rejects high-impact calls.
    Approver,
}

/// The claims this project mints and reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the agent or user id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// What the token is for.
    pub token_use: TokenUse,
    /// User roles (user tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// User organization (user tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Approver groups (approver tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Why a token was refused. Messages are safe to return to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The token is not valid yet.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The signature does not verify, or the key is unknown.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Issuer or audience is wrong.
    #[error("the token was issued by or for someone else")]
    WrongIssuerOrAudience,
    /// The token is not a JWT or lacks claims.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// An agent token was presented as a user token or the other way round.
    #[error("the token is a credential of another kind")]
    WrongUse,
    /// The identity provider's keys could not be fetched, so nothing can be verified.
    #[error("the identity provider's keys are unavailable, try again")]
    KeysUnavailable(String),
}

/// Verifies the token of the user an agent acts for.
#[async_trait::async_trait]
pub trait UserVerifier: Send + Sync {
    /// The verified user, or why the token was refused.
    async fn verify_user(&self, token: &str) -> Result<UserContext, TokenError>;
}

/// Verifies the token of a person who answers approval requests; the
/// returned context's `roles` are the approver's groups.
#[async_trait::async_trait]
pub trait ApproverVerifier: Send + Sync {
    /// The verified approver, or why the token was refused.
    async fn verify_approver(&self, token: &str) -> Result<UserContext, TokenError>;
}

#[async_trait::async_trait]
impl ApproverVerifier for JwtVerifier {
    async fn verify_approver(&self, token: &str) -> Result<UserContext, TokenError> {
        let claims = self.decode(token)?;
        Self::check_use(&claims, TokenUse::Approver)?;
        self.person(&claims)
    }
}

#[async_trait::async_trait]
impl UserVerifier for JwtVerifier {
    async fn verify_user(&self, token: &str) -> Result<UserContext, TokenError> {
        JwtVerifier::verify_user(self, token)
    }
}

/// How many verified tokens are remembered. Agents reuse a token for many
/// calls, and a signature check costs far more than the rest of a decision.
const CACHE_CAPACITY: usize = 16_384;

/// A token that verified, and until when that holds.
#[derive(Clone)]
struct Verified {
    claims: Arc<serde_json::Map<String, serde_json::Value>>,
    exp: i64,
}

/// Verifies tokens of one issuer and audience against a key set.
pub struct JwtVerifier {
    keys: HashMap<String, DecodingKey>,
    unnamed: Vec<DecodingKey>,
    validation: Validation,
    roles_claim: String,
    verified: Mutex<HashMap<String, Verified>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier for `issuer` and `audience` with the keys of `jwks`.
    /// `roles_claim` names the claim that holds the user's roles.
    pub fn new(
        jwks: &JwkSet,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<Self, TokenError> {
        let mut keys = HashMap::new();
        let mut unnamed = Vec::new();
        for jwk in &jwks.keys {
            let key =
                DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Malformed(e.to_string()))?;
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.insert(kid.clone(), key);
                }
                None => unnamed.push(key),
            }
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA, Algorithm::RS256, Algorithm::ES256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(Self {
            keys,
            unnamed,
            validation,
            roles_claim: roles_claim.to_owned(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The claims of a valid token, from the cache while it has not expired.
    fn decode(
        &self,
        token: &str,
    ) -> Result<Arc<serde_json::Map<String, serde_json::Value>>, TokenError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        if let Ok(cache) = self.verified.lock() {
            if let Some(v) = cache.get(token) {
                if now <= v.exp.saturating_add(leeway) {
                    return Ok(Arc::clone(&v.claims));
                }
            }
        }
        let claims = Arc::new(self.verify_signature(token)?);
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(now);
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, v| now <= v.exp.saturating_add(leeway));
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(
                token.to_owned(),
                Verified {
                    claims: claims.clone(),
                    exp,
                },
            );
        }
        Ok(claims)
    }

    fn verify_signature(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let candidates: Vec<&DecodingKey> =
            match header.kid.as_deref().and_then(|k| self.keys.get(k)) {
                Some(k) => vec![k],
                None if header.kid.is_some() => return Err(TokenError::BadSignature),
                None => self.unnamed.iter().collect(),
            };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(TokenError::BadSignature);
        }
        let mut last = TokenError::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                key,
                &validation,
            ) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => TokenError::Expired,
                        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                            TokenError::BadSignature
                        }
                        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                            TokenError::WrongIssuerOrAudience
                        }
                        ErrorKind::MissingRequiredClaim(c) => {
                            TokenError::Malformed(format!("missing claim `{c}`"))
                        }
                        _ => TokenError::Malformed(e.to_string()),
                    };
                    if last != TokenError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn check_use(
        claims: &serde_json::Map<String, serde_json::Value>,
        want: TokenUse,
    ) -> Result<(), TokenError> {
        // Tokens of other issuers carry no `token_use`; the audience separates them.
        match claims
            .get("token_use")
            .map(|v| serde_json::from_value::<TokenUse>(v.clone()))
        {
            None => Ok(()),
            Some(Ok(u)) if u == want => Ok(()),
            Some(_) => Err(TokenError::WrongUse),
        }
    }

    /// Verifies an agent credential and returns the agent id.
    pub fn verify_agent(&self, token: &str) -> Result<String, TokenError> {
        let claims = self.decode(token)?;
        Self::check_use(&claims, TokenUse::Agent)?;
        subject(&claims)
    }

    /// Verifies an on-behalf-of token and returns the user.
    pub fn verify_user(&self, token: &str) -> Result<UserContext, TokenError> {
        let claims = self.decode(token)?;
        Self::check_use(&claims, TokenUse::User)?;
        self.person(&claims)
    }

    /// The person a verified token names, with the roles (or groups) of the configured claim.
    fn person(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<UserContext, TokenError> {
        let roles = match claims.get(&self.roles_claim) {
            None => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    TokenError::Malformed(format!("claim `{}` must list strings", self.roles_claim))
                })?,
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(_) => {
                return Err(TokenError::Malformed(format!(
                    "claim `{}` must list strings",
                    self.roles_claim
                )))
            }
        };
        let organization = claims
            .get("org")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok(UserContext {
            id: subject(claims)?,
            roles,
            organization,
        })
    }
}

fn subject(claims: &serde_json::Map<String, serde_json::Value>) -> Result<String, TokenError> {
    match claims.get("sub").and_then(|v| v.as_str()) {
        Some(s) if !s.is_empty() && s.len() <= 256 => Ok(s.to_owned()),
        _ => Err(TokenError::Malformed(
            "claim `sub` must be a non-empty string".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{LocalKeys, AGENT_AUDIENCE, LOCAL_ISSUER, USER_AUDIENCE};

    fn claims(sub: &str, aud: &str, use_: TokenUse, exp_in: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            iss: LOCAL_ISSUER.into(),
            sub: sub.into(),
            aud: aud.into(),
            exp: now + exp_in,
            iat: now,
            nbf: now,
            jti: "j".into(),
            token_use: use_,
            roles: vec!["underwriter".into()],
            org: Some("meridian-capital".into()),
            groups: Vec::new(),
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_audience_use_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeys::load_or_create(dir.path()).unwrap();
        let again = LocalKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(keys.kid(), again.kid());
        let agents = JwtVerifier::new(&keys.jwks(), LOCAL_ISSUER, AGENT_AUDIENCE, "roles").unwrap();
        let users = JwtVerifier::new(&keys.jwks(), LOCAL_ISSUER, USER_AUDIENCE, "roles").unwrap();

        let agent = keys
            .mint(&claims("agent-a", AGENT_AUDIENCE, TokenUse::Agent, 60))
            .unwrap();
        assert_eq!(agents.verify_agent(&agent).unwrap(), "agent-a");
        assert_eq!(
            users.verify_user(&agent).unwrap_err(),
            TokenError::WrongIssuerOrAudience
        );

        let user = keys
            .mint(&claims("uma", USER_AUDIENCE, TokenUse::User, 60))
            .unwrap();
        let u = users.verify_user(&user).unwrap();
        assert_eq!(
            (u.id.as_str(), u.roles.as_slice()),
            ("uma", &["underwriter".to_owned()][..])
        );
        assert_eq!(u.organization.as_deref(), Some("meridian-capital"));

        let expired = keys
            .mint(&claims("agent-a", AGENT_AUDIENCE, TokenUse::Agent, -120))
            .unwrap();
        assert_eq!(
            agents.verify_agent(&expired).unwrap_err(),
            TokenError::Expired
        );

        let mislabeled = keys
            .mint(&claims("uma", AGENT_AUDIENCE, TokenUse::User, 60))
            .unwrap();
        assert_eq!(
            agents.verify_agent(&mislabeled).unwrap_err(),
            TokenError::WrongUse
        );

        let other_dir = tempfile::tempdir().unwrap();
        let forger = LocalKeys::load_or_create(other_dir.path()).unwrap();
        let forged = forger
            .mint(&claims("agent-a", AGENT_AUDIENCE, TokenUse::Agent, 60))
            .unwrap();
        assert_eq!(
            agents.verify_agent(&forged).unwrap_err(),
            TokenError::BadSignature
        );

        let mut tampered = agent.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(agents.verify_agent(&tampered).is_err());
        assert!(matches!(
            agents.verify_agent("not-a-jwt"),
            Err(TokenError::Malformed(_))
        ));
    }
}
