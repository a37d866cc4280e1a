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

/// Which claims of a person's token hold the user's id, roles and
/// organization. Identity providers differ: Okta puts groups in `groups`,
/// Entra ID app roles in `roles` and the tenant in `tid`, Cognito groups in
/// `cognito:groups`, Auth0 custom claims under a namespace
/// (`https://example.com/roles`). Names are matched whole, never split on
/// dots or slashes, so namespaced claims need no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The claim holding the user id (a non-empty string of at most 256 bytes).
    pub user_id: String,
    /// The claim listing the roles: an array of strings, or one
    /// space-separated string. Absent: no roles.
    pub roles: String,
    /// The claim holding the organization, a string. Absent: none.
    pub organization: String,
}

impl ClaimMapping {
    /// The default user id claim.
    pub const DEFAULT_USER_ID: &'static str = "sub";
    /// The default roles claim.
    pub const DEFAULT_ROLES: &'static str = "roles";
    /// The default organization claim.
    pub const DEFAULT_ORGANIZATION: &'static str = "org";

    /// The defaults, with the roles read from `roles`.
    pub fn with_roles(roles: &str) -> Self {
        Self {
            roles: roles.to_owned(),
            ..Self::default()
        }
    }
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            user_id: Self::DEFAULT_USER_ID.to_owned(),
            roles: Self::DEFAULT_ROLES.to_owned(),
            organization: Self::DEFAULT_ORGANIZATION.to_owned(),
        }
    }
}

/// Whether `issuer` is an Amazon Cognito user pool
/// (`https://cognito-idp.REGION.amazonaws.com/POOL_ID`).
pub fn is_cognito_issuer(issuer: &str) -> bool {
    issuer
        .strip_prefix("https://cognito-idp.")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(host, pool)| {
            (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
                && !pool.is_empty()
                && !pool.contains('/')
        })
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
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// The token names a signing key the verifier does not hold: most
    /// often a token minted against another data directory or stack.
    #[error(
        "the token is signed with key `{0}`, which this server does not hold: was it minted \
         with another data directory (`govctl … --data-dir`) or by another issuer?"
    )]
    UnknownKey(String),
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

/// How far token times may be off the verifier's clock: a token is accepted
/// up to this long after `exp` (and before `nbf`), for clocks that drift.
pub const CLOCK_LEEWAY_SECONDS: u64 = 30;

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
        self.check_use(&claims, TokenUse::Approver)?;
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
    /// The expected audience; for a Cognito user pool, the app client id.
    audience: String,
    /// The issuer is a Cognito user pool: its `id` and `access` tokens are
    /// person tokens, and access tokens name the client in `client_id`.
    cognito: bool,
    claims: ClaimMapping,
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
    /// `roles_claim` names the claim that holds the user's roles; the user
    /// id and organization are read from the default claims unless
    /// [`JwtVerifier::with_claims`] says otherwise.
    ///
    /// When `issuer` is a Cognito user pool, `audience` is the app client
    /// id, and both kinds of token the pool issues are accepted: ID tokens
    /// (`token_use: id`, the client in `aud`) and access tokens
    /// (`token_use: access`, the client in `client_id`, no `aud`).
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
        let cognito = is_cognito_issuer(issuer);
        if cognito {
            // Access tokens carry no `aud`; `check_use` checks the client
            // claim that each kind of token does carry.
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        } else {
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        }
        validation.validate_nbf = true;
        validation.leeway = CLOCK_LEEWAY_SECONDS;
        Ok(Self {
            keys,
            unnamed,
            validation,
            audience: audience.to_owned(),
            cognito,
            claims: ClaimMapping::with_roles(roles_claim),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the user id, roles and organization from the claims `claims` names.
    #[must_use]
    pub fn with_claims(mut self, claims: ClaimMapping) -> Self {
        self.claims = claims;
        self
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
        let candidates: Vec<&DecodingKey> = match header.kid.as_deref() {
            Some(kid) => match self.keys.get(kid) {
                Some(k) => vec![k],
                None => return Err(TokenError::UnknownKey(kid.to_owned())),
            },
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
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        want: TokenUse,
    ) -> Result<(), TokenError> {
        let token_use = claims.get("token_use");
        if self.cognito {
            // A user pool issues tokens for people only, of two kinds that
            // name the app client in different claims.
            let client = match token_use.and_then(serde_json::Value::as_str) {
                Some("id") if want != TokenUse::Agent => claims.get("aud"),
                Some("access") if want != TokenUse::Agent => claims.get("client_id"),
                _ => return Err(TokenError::WrongUse),
            };
            let names_us = match client {
                Some(serde_json::Value::String(c)) => *c == self.audience,
                Some(serde_json::Value::Array(cs)) => {
                    cs.iter().any(|c| c.as_str() == Some(&self.audience))
                }
                _ => false,
            };
            return if names_us {
                Ok(())
            } else {
                Err(TokenError::WrongIssuerOrAudience)
            };
        }
        // Tokens of other issuers carry no `token_use`; the audience separates them.
        match token_use.map(|v| serde_json::from_value::<TokenUse>(v.clone())) {
            None => Ok(()),
            Some(Ok(u)) if u == want => Ok(()),
            Some(_) => Err(TokenError::WrongUse),
        }
    }

    /// Verifies an agent credential and returns the agent id.
    pub fn verify_agent(&self, token: &str) -> Result<String, TokenError> {
        let claims = self.decode(token)?;
        self.check_use(&claims, TokenUse::Agent)?;
        identifier(&claims, "sub")
    }

    /// Verifies an on-behalf-of token and returns the user.
    pub fn verify_user(&self, token: &str) -> Result<UserContext, TokenError> {
        let claims = self.decode(token)?;
        self.check_use(&claims, TokenUse::User)?;
        self.person(&claims)
    }

    /// The person a verified token names, from the configured claims.
    fn person(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<UserContext, TokenError> {
        let name = &self.claims.roles;
        let not_strings = || TokenError::Malformed(format!("claim `{name}` must list strings"));
        let roles = match claims.get(name) {
            None => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(not_strings)?,
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(_) => return Err(not_strings()),
        };
        let organization = claims
            .get(&self.claims.organization)
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok(UserContext {
            id: identifier(claims, &self.claims.user_id)?,
            roles,
            organization,
        })
    }
}

/// The non-empty string of at most 256 bytes in claim `name`.
fn identifier(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, TokenError> {
    match claims.get(name).and_then(|v| v.as_str()) {
        Some(s) if !s.is_empty() && s.len() <= 256 => Ok(s.to_owned()),
        _ => Err(TokenError::Malformed(format!(
            "claim `{name}` must be a non-empty string of at most 256 bytes"
        ))),
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
        // The leeway is at most 30 s: 35 s past `exp` is refused, 20 s is
        // within it.
        let just_expired = keys
            .mint(&claims("agent-a", AGENT_AUDIENCE, TokenUse::Agent, -35))
            .unwrap();
        assert_eq!(
            agents.verify_agent(&just_expired).unwrap_err(),
            TokenError::Expired
        );
        let within = keys
            .mint(&claims("agent-a", AGENT_AUDIENCE, TokenUse::Agent, -20))
            .unwrap();
        assert!(agents.verify_agent(&within).is_ok());

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
        assert!(
            matches!(agents.verify_agent(&forged).unwrap_err(), TokenError::UnknownKey(k) if k == forger.kid()),
            "a token of another data directory's key names that key"
        );

        let mut tampered = agent.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(agents.verify_agent(&tampered).is_err());
        assert!(matches!(
            agents.verify_agent("not-a-jwt"),
            Err(TokenError::Malformed(_))
        ));
    }

    const POOL: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
    const CLIENT: &str = "3n4b5urk1ft4fl3mg5e62d9ado";

    /// A token as a Cognito user pool issues it, minus the claims that do not matter here.
    fn cognito(keys: &LocalKeys, token_use: &str, client: serde_json::Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = serde_json::json!({
            "iss": POOL, "sub": "5f1e7a3c-0000-4000-8000-00000000abcd",
            "token_use": token_use, "exp": now + 60, "iat": now, "auth_time": now,
            "cognito:groups": ["underwriter", "loan-officers"],
            "custom:org": "meridian-capital",
        });
        let field = if token_use == "access" {
            "client_id"
        } else {
            "aud"
        };
        claims[field] = client;
        keys.mint(&claims).unwrap()
    }

    #[test]
    fn cognito_id_and_access_tokens_are_user_tokens_of_their_app_client() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeys::load_or_create(dir.path()).unwrap();
        let mapping = ClaimMapping {
            user_id: "sub".into(),
            roles: "cognito:groups".into(),
            organization: "custom:org".into(),
        };
        let users = JwtVerifier::new(&keys.jwks(), POOL, CLIENT, "roles")
            .unwrap()
            .with_claims(mapping);
        for token_use in ["id", "access"] {
            let token = cognito(&keys, token_use, serde_json::json!(CLIENT));
            let user = users.verify_user(&token).unwrap();
            assert_eq!(user.id, "5f1e7a3c-0000-4000-8000-00000000abcd");
            assert_eq!(user.roles, ["underwriter", "loan-officers"]);
            assert_eq!(user.organization.as_deref(), Some("meridian-capital"));
            // Another app client of the same pool is someone else's audience.
            let other = cognito(&keys, token_use, serde_json::json!("another-client"));
            assert_eq!(
                users.verify_user(&other).unwrap_err(),
                TokenError::WrongIssuerOrAudience
            );
        }
        // An access token names its client in `client_id`, never in `aud`.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let misplaced = keys
            .mint(&serde_json::json!({
                "iss": POOL, "sub": "u", "token_use": "access", "aud": CLIENT, "exp": now + 60,
            }))
            .unwrap();
        assert_eq!(
            users.verify_user(&misplaced).unwrap_err(),
            TokenError::WrongIssuerOrAudience
        );
        // Neither an agent credential nor a token of no known kind is a user token.
        for token_use in [Some("agent"), Some("refresh"), None] {
            let mut claims = serde_json::json!({
                "iss": POOL, "sub": "u", "aud": CLIENT, "client_id": CLIENT, "exp": now + 60,
            });
            if let Some(u) = token_use {
                claims["token_use"] = serde_json::json!(u);
            }
            let token = keys.mint(&claims).unwrap();
            assert_eq!(users.verify_user(&token).unwrap_err(), TokenError::WrongUse);
        }
        // The issuer is still checked.
        let elsewhere = keys
            .mint(&serde_json::json!({
                "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other",
                "sub": "u", "token_use": "id", "aud": CLIENT, "exp": now + 60,
            }))
            .unwrap();
        assert_eq!(
            users.verify_user(&elsewhere).unwrap_err(),
            TokenError::WrongIssuerOrAudience
        );
    }

    #[test]
    fn claims_are_read_where_each_identity_provider_puts_them() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeys::load_or_create(dir.path()).unwrap();
        let issuer = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = keys
            .mint(&serde_json::json!({
                "iss": issuer, "aud": "api://agent-governance", "exp": now + 60,
                "sub": "pairwise-subject", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
                "tid": "9188040d-6c67-4c5b-b112-36a304b66dad",
                "roles": ["Underwriter"],
                "https://example.com/roles": ["auth0-role"],
            }))
            .unwrap();
        let entra = JwtVerifier::new(&keys.jwks(), issuer, "api://agent-governance", "roles")
            .unwrap()
            .with_claims(ClaimMapping {
                user_id: "oid".into(),
                roles: "roles".into(),
                organization: "tid".into(),
            });
        let user = entra.verify_user(&token).unwrap();
        assert_eq!(user.id, "00000000-0000-0000-66f3-3332eca7ea81");
        assert_eq!(user.roles, ["Underwriter"]);
        assert_eq!(
            user.organization.as_deref(),
            Some("9188040d-6c67-4c5b-b112-36a304b66dad")
        );
        // A namespaced claim is one name, dots and slashes included.
        let auth0 = JwtVerifier::new(&keys.jwks(), issuer, "api://agent-governance", "roles")
            .unwrap()
            .with_claims(ClaimMapping::with_roles("https://example.com/roles"));
        let user = auth0.verify_user(&token).unwrap();
        assert_eq!(
            (user.id.as_str(), user.roles.as_slice()),
            ("pairwise-subject", &["auth0-role".to_owned()][..])
        );
        assert_eq!(user.organization, None);
        // A user id claim the token lacks refuses the token.
        let missing = JwtVerifier::new(&keys.jwks(), issuer, "api://agent-governance", "roles")
            .unwrap()
            .with_claims(ClaimMapping {
                user_id: "email".into(),
                ..ClaimMapping::default()
            });
        assert!(matches!(
            missing.verify_user(&token),
            Err(TokenError::Malformed(m)) if m.contains("`email`")
        ));
        // Outside Cognito, a `token_use` this project does not know is refused.
        let cognito_like = keys
            .mint(&serde_json::json!({
                "iss": issuer, "aud": "api://agent-governance", "exp": now + 60,
                "sub": "u", "token_use": "id",
            }))
            .unwrap();
        assert_eq!(
            entra.verify_user(&cognito_like).unwrap_err(),
            TokenError::WrongUse
        );
    }

    #[test]
    fn only_user_pool_urls_are_cognito_issuers() {
        assert!(is_cognito_issuer(POOL));
        for other in [
            "https://cognito-idp.eu-west-1.amazonaws.com/",
            "https://cognito-idp.evil.example.com/eu-west-1_AbCdEf123",
            "http://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
            "https://idp.agent-governance.test",
            "https://cognito-idp.eu-west-1.amazonaws.com/pool/extra",
        ] {
            assert!(!is_cognito_issuer(other), "{other}");
        }
    }
}
