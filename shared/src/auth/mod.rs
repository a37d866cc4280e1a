//! Identity: signed JWTs for agents and for the users they act for.
//!
//! One verification path serves both hosts: [`JwtVerifier`] checks a token
//! against a JSON Web Key Set, an issuer and an audience. Locally the key set
//! is the data directory's own ([`LocalKeys`], minted by `govctl agent token`
//! and `govctl user token`); on AWS it is the configured OIDC issuer's JWKS.

mod jwt;
mod keys;
#[cfg(feature = "oidc")]
mod oidc;
#[cfg(feature = "oidc")]
pub mod signin;

pub use jwt::{
    is_cognito_issuer, ApproverVerifier, ClaimMapping, Claims, JwtVerifier, TokenError, TokenUse,
    UserVerifier,
};
pub use keys::{session_secret, KeyError, LocalKeys, LOCAL_ISSUER};
#[cfg(feature = "oidc")]
pub use oidc::OidcVerifier;

/// Verifies the session cookie of a person who signed in (see
/// `signin::SignIn`, with the `oidc` feature).
pub trait Sessions: Send + Sync {
    /// The signed-in person, or why the session is refused (forged, expired).
    fn session(&self, cookie: &str) -> Result<crate::model::UserContext, TokenError>;
    /// Whether people sign in here (the approver pages offer it).
    fn sign_in_path(&self) -> &'static str {
        "/v1/signin"
    }
}

/// The audience of agent credentials.
pub const AGENT_AUDIENCE: &str = "agent-governance/agent";
/// The audience of on-behalf-of user tokens.
pub const USER_AUDIENCE: &str = "agent-governance/user";
/// The audience of approver tokens.
pub const APPROVER_AUDIENCE: &str = "agent-governance/approver";
