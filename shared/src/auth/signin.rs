//! Approvers sign in with the company's OpenID Connect provider.
//!
//! The authorization code flow with PKCE (RFC 7636, `S256`), `state` and
//! `nonce`: [`SignIn::start`] sends the browser to the provider with a
//! short-lived, signed sign-in cookie that holds the state, nonce and code
//! verifier; [`SignIn::finish`] checks the state, exchanges the code (with
//! the verifier and, for a confidential client, the client secret), verifies
//! the ID token against the provider's key set, issuer, audience and nonce,
//! and returns a session: a signed cookie value (HS256 under a key only the
//! control plane holds) naming the person and their groups, read from a
//! configurable claim, valid for [`SignInConfig::session_ttl`] at most and
//! never past the ID token's own expiry.
//!
//! Sessions are stateless, so both hosts (one process locally, many Lambda
//! invocations on AWS) check them the same way: the signature, the
//! audience and the expiry, with no leeway. Signing out removes the cookie.

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::OnceCell;

use super::{ApproverVerifier, ClaimMapping, OidcVerifier, TokenError};
use crate::model::UserContext;

/// The audience of session cookies.
const SESSION_AUDIENCE: &str = "agent-governance/session";
/// The audience of the sign-in cookie that carries state, nonce and verifier.
const FLOW_AUDIENCE: &str = "agent-governance/signin";
/// How long a person has to finish signing in at the provider.
const FLOW_TTL: i64 = 600;
/// How long one request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The session cookie's name.
pub const SESSION_COOKIE: &str = crate::handlers::pages::SESSION_COOKIE;
/// The sign-in cookie's name.
pub const FLOW_COOKIE: &str = "agov_signin";

/// How approvers sign in.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// The provider's issuer URL (its discovery document is under
    /// `/.well-known/openid-configuration`).
    pub issuer: String,
    /// This application's client id at the provider.
    pub client_id: String,
    /// Its client secret, for a confidential client (`client_secret_basic`).
    pub client_secret: Option<String>,
    /// The claim listing the person's groups (`groups`, `cognito:groups`, …).
    pub groups_claim: String,
    /// The claim naming the person (`sub` by default; `email` is common).
    pub user_claim: String,
    /// The URL the approver pages are served under, without a trailing
    /// slash; the redirect URI is this plus `/v1/signin/callback`.
    pub public_url: String,
    /// The scopes asked for, besides `openid`.
    pub scopes: Vec<String>,
    /// The longest a session lasts.
    pub session_ttl: Duration,
}

/// Why signing in failed. Messages are safe to show the person.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider is unavailable: {0}")]
    Provider(String),
    /// The sign-in cookie is missing, forged or expired, or its state does
    /// not match: the flow did not start here, or took too long.
    #[error("this sign-in did not start here or took too long; sign in again")]
    BadState,
    /// The provider said no.
    #[error("the identity provider refused: {0}")]
    Refused(String),
    /// The ID token did not verify.
    #[error("the identity token was refused: {0}")]
    Token(#[from] TokenError),
    /// No randomness.
    #[error("no randomness available")]
    Random,
}

/// What the provider's discovery document says.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

/// The signed content of the sign-in cookie.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    aud: String,
    exp: i64,
    state: String,
    nonce: String,
    verifier: String,
    next: String,
}

/// The signed content of a session cookie.
#[derive(Debug, Serialize, Deserialize)]
struct Session {
    aud: String,
    iat: i64,
    exp: i64,
    sub: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// The sign-in flow of one provider, and the sessions it gives.
pub struct SignIn {
    config: SignInConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    http: reqwest::Client,
    discovery: OnceCell<(Discovery, OidcVerifier)>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the session key or the client secret.
        f.debug_struct("SignIn")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

fn random(bytes: usize) -> Result<String, SignInError> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|_| SignInError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Only a path on this site: never an absolute URL (an open redirect).
fn local_path(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        "/v1/inbox".to_owned()
    }
}

impl SignIn {
    /// Sign-in with `config`; sessions are signed with `session_key` (at
    /// least 32 random bytes, kept secret).
    pub fn new(config: SignInConfig, session_key: &[u8]) -> Result<Self, SignInError> {
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| SignInError::Provider(e.to_string()))?;
        Ok(Self {
            encoding: EncodingKey::from_secret(session_key),
            decoding: DecodingKey::from_secret(session_key),
            config,
            http,
            discovery: OnceCell::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SignInConfig {
        &self.config
    }

    fn redirect_uri(&self) -> String {
        format!("{}/v1/signin/callback", self.config.public_url)
    }

    /// The provider's endpoints and a verifier of its ID tokens, fetched once.
    async fn provider(&self) -> Result<&(Discovery, OidcVerifier), SignInError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let d: Discovery = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| SignInError::Provider(format!("{url}: {e}")))?
                    .json()
                    .await
                    .map_err(|e| SignInError::Provider(format!("{url}: {e}")))?;
                if d.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
                    return Err(SignInError::Provider(format!(
                        "the discovery document names issuer {}, not {}",
                        d.issuer, self.config.issuer
                    )));
                }
                let verifier = OidcVerifier::new(
                    &d.jwks_uri,
                    &d.issuer,
                    &self.config.client_id,
                    &self.config.groups_claim,
                )?
                .with_claims(ClaimMapping {
                    user_id: self.config.user_claim.clone(),
                    roles: self.config.groups_claim.clone(),
                    organization: ClaimMapping::DEFAULT_ORGANIZATION.to_owned(),
                });
                Ok((d, verifier))
            })
            .await
    }

    /// Where to send the browser, and the sign-in cookie's value; `next` is
    /// the page to return to after signing in.
    pub async fn start(&self, next: &str) -> Result<(String, String), SignInError> {
        let (d, _) = self.provider().await?;
        let flow = Flow {
            aud: FLOW_AUDIENCE.to_owned(),
            exp: now() + FLOW_TTL,
            state: random(32)?,
            nonce: random(32)?,
            verifier: random(48)?,
            next: local_path(next),
        };
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(flow.verifier.as_bytes()));
        let scope = std::iter::once("openid")
            .chain(self.config.scopes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let mut url = reqwest::Url::parse(&d.authorization_endpoint)
            .map_err(|e| SignInError::Provider(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("scope", &scope)
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let cookie = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &flow, &self.encoding)
            .map_err(|e| SignInError::Provider(e.to_string()))?;
        Ok((url.to_string(), cookie))
    }

    /// Finishes signing in: the person, the session cookie's value, and the
    /// page to return to.
    pub async fn finish(
        &self,
        code: &str,
        state: &str,
        flow_cookie: Option<&str>,
    ) -> Result<(UserContext, String, String), SignInError> {
        let flow: Flow = flow_cookie
            .and_then(|c| self.decode(c, FLOW_AUDIENCE).ok())
            .ok_or(SignInError::BadState)?;
        if !crate::handlers::pages::same(&flow.state, state) {
            return Err(SignInError::BadState);
        }
        let (d, verifier) = self.provider().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", flow.verifier.as_str()),
        ];
        let redirect_uri = self.redirect_uri();
        form.push(("redirect_uri", &redirect_uri));
        let request = self.http.post(&d.token_endpoint);
        let request = match &self.config.client_secret {
            Some(secret) => request.basic_auth(&self.config.client_id, Some(secret)),
            None => {
                form.push(("client_id", &self.config.client_id));
                request
            }
        };
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| SignInError::Provider(e.to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| SignInError::Provider(e.to_string()))?;
        if !status.is_success() {
            return Err(SignInError::Refused(
                body.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("token request failed")
                    .to_owned(),
            ));
        }
        let id_token = body
            .get("id_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| SignInError::Refused("no ID token in the answer".to_owned()))?;
        let person = verifier.verify_approver(id_token).await?;
        // The signature verified; the nonce binds the token to this flow.
        let claims = payload(id_token)?;
        if claims.get("nonce").and_then(|n| n.as_str()) != Some(flow.nonce.as_str()) {
            return Err(TokenError::Malformed("the nonce does not match".to_owned()).into());
        }
        let issued = now();
        let ttl = i64::try_from(self.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
        let token_exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(issued);
        let session = Session {
            aud: SESSION_AUDIENCE.to_owned(),
            iat: issued,
            exp: issued.saturating_add(ttl).min(token_exp.max(issued + 60)),
            sub: person.id.clone(),
            groups: person.roles.clone(),
        };
        let cookie = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &session, &self.encoding)
            .map_err(|e| SignInError::Provider(e.to_string()))?;
        Ok((person, cookie, flow.next))
    }

    /// When a session cookie expires (Unix seconds), for its `Max-Age`.
    pub fn session_seconds(&self) -> u64 {
        self.config.session_ttl.as_secs()
    }

    /// The provider's sign-out page, if it has one, returning to `back`.
    pub async fn end_session_url(&self, back: &str) -> Option<String> {
        let (d, _) = self.provider().await.ok()?;
        let mut url = reqwest::Url::parse(d.end_session_endpoint.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", back);
        Some(url.to_string())
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        aud: &str,
    ) -> Result<T, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[aud]);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "aud"]);
        jsonwebtoken::decode::<T>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    TokenError::WrongIssuerOrAudience
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            })
    }
}

impl super::Sessions for SignIn {
    fn session(&self, cookie: &str) -> Result<UserContext, TokenError> {
        let s: Session = self.decode(cookie, SESSION_AUDIENCE)?;
        Ok(UserContext {
            id: s.sub,
            roles: s.groups,
            organization: None,
        })
    }
}

/// The claims of a JWT whose signature was already verified.
fn payload(token: &str) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let part = token
        .split('.')
        .nth(1)
        .ok_or_else(|| TokenError::Malformed("not a JWT".to_owned()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Sessions as _;

    fn signin() -> SignIn {
        SignIn::new(
            SignInConfig {
                issuer: "http://127.0.0.1:1".into(),
                client_id: "c".into(),
                client_secret: None,
                groups_claim: "groups".into(),
                user_claim: "sub".into(),
                public_url: "http://127.0.0.1:2".into(),
                scopes: vec![],
                session_ttl: Duration::from_secs(3600),
            },
            &[7u8; 32],
        )
        .unwrap()
    }

    fn mint(key: &[u8], aud: &str, exp: i64) -> String {
        let s = Session {
            aud: aud.into(),
            iat: now(),
            exp,
            sub: "alice".into(),
            groups: vec!["treasury-approvers".into()],
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &s,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    #[test]
    fn a_session_verifies_only_with_our_key_our_audience_and_before_expiry() {
        let s = signin();
        let ok = mint(&[7u8; 32], SESSION_AUDIENCE, now() + 60);
        assert_eq!(s.session(&ok).unwrap().id, "alice");
        assert_eq!(
            s.session(&mint(&[8u8; 32], SESSION_AUDIENCE, now() + 60)),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            s.session(&mint(&[7u8; 32], SESSION_AUDIENCE, now() - 1)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.session(&mint(&[7u8; 32], FLOW_AUDIENCE, now() + 60)),
            Err(TokenError::WrongIssuerOrAudience)
        );
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(local_path("/v1/changes/abc"), "/v1/changes/abc");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil",
            "inbox",
        ] {
            assert_eq!(local_path(bad), "/v1/inbox", "{bad}");
        }
    }
}
