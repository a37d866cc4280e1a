//! On-behalf-of tokens of an external OIDC issuer, verified against its JWKS.
//!
//! The key set is fetched on first use and cached. A token signed with a key
//! id the cache does not know triggers one refetch (the issuer may have
//! rotated its keys), at most once per [`MIN_REFETCH`], so a stream of
//! forged key ids cannot turn into a stream of requests to the issuer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use super::{ApproverVerifier, ClaimMapping, JwtVerifier, TokenError, UserVerifier};
use crate::model::UserContext;

/// Cached keys are refreshed after this long even when every key id is known.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// The shortest time between two fetches caused by unknown key ids.
const MIN_REFETCH: Duration = Duration::from_secs(30);
/// How long one fetch of the key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

struct Cached {
    verifier: JwtVerifier,
    kids: Vec<String>,
    fetched: Instant,
}

/// Verifies user tokens of one OIDC issuer and audience.
pub struct OidcVerifier {
    jwks_url: String,
    issuer: String,
    audience: String,
    claims: ClaimMapping,
    http: reqwest::Client,
    cached: ArcSwapOption<Cached>,
    fetching: Mutex<()>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// A verifier for tokens of `issuer` for `audience` (for a Cognito user
    /// pool, the app client id), with keys from `jwks_url` and roles in the
    /// claim `roles_claim`.
    pub fn new(
        jwks_url: &str,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<Self, TokenError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
        Ok(Self {
            jwks_url: jwks_url.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            claims: ClaimMapping::with_roles(roles_claim),
            http,
            cached: ArcSwapOption::empty(),
            fetching: Mutex::new(()),
        })
    }

    /// Reads the user id, roles and organization from the claims `claims` names.
    #[must_use]
    pub fn with_claims(mut self, claims: ClaimMapping) -> Self {
        self.claims = claims;
        self
    }

    async fn fetch(&self) -> Result<Arc<Cached>, TokenError> {
        let unavailable = |e: reqwest::Error| {
            TokenError::KeysUnavailable(format!("cannot fetch `{}`: {e}", self.jwks_url))
        };
        let jwks: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let kids = jwks
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        let verifier = JwtVerifier::new(&jwks, &self.issuer, &self.audience, &self.claims.roles)
            .map_err(|e| TokenError::KeysUnavailable(format!("the key set is unusable: {e}")))?
            .with_claims(self.claims.clone());
        let cached = Arc::new(Cached {
            verifier,
            kids,
            fetched: Instant::now(),
        });
        self.cached.store(Some(Arc::clone(&cached)));
        tracing::info!(jwks_url = %self.jwks_url, "identity provider keys fetched");
        Ok(cached)
    }

    /// The cached keys, fetched when missing, stale, or missing `kid`.
    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<Cached>, TokenError> {
        let usable = |c: &Cached| {
            c.fetched.elapsed() < MAX_AGE
                && kid.is_none_or(|k| c.kids.iter().any(|known| known == k))
        };
        if let Some(c) = self.cached.load_full() {
            if usable(&c) {
                return Ok(c);
            }
        }
        // One fetch at a time; whoever waited finds the fresh keys.
        let _guard = self.fetching.lock().await;
        match self.cached.load_full() {
            Some(c) if usable(&c) => Ok(c),
            Some(c) if c.fetched.elapsed() < MIN_REFETCH => Ok(c),
            _ => self.fetch().await,
        }
    }
}

#[async_trait::async_trait]
impl UserVerifier for OidcVerifier {
    async fn verify_user(&self, token: &str) -> Result<UserContext, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let keys = self.keys_for(header.kid.as_deref()).await?;
        keys.verifier.verify_user(token)
    }
}

#[async_trait::async_trait]
impl ApproverVerifier for OidcVerifier {
    async fn verify_approver(&self, token: &str) -> Result<UserContext, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let keys = self.keys_for(header.kid.as_deref()).await?;
        keys.verifier.verify_approver(token).await
    }
}
