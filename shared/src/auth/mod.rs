//! Identity: signed JWTs for agents and for the users they act for.
//!
//! One verification path serves both hosts: [`JwtVerifier`] checks a token
//! against a JSON Web Key Set, an issuer and an audience. Locally the key set
//! is the data directory's own ([`LocalKeys`], minted by `govctl agent token`
//! and `govctl user token`); on AWS it is the configured OIDC issuer's JWKS.

mod jwt;
mod keys;
#[cfg(feature = "aws")]
mod oidc;

pub use jwt::{
    is_cognito_issuer, ApproverVerifier, ClaimMapping, Claims, JwtVerifier, TokenError, TokenUse,
    UserVerifier,
};
pub use keys::{KeyError, LocalKeys, LOCAL_ISSUER};
#[cfg(feature = "aws")]
pub use oidc::OidcVerifier;

/// The audience of agent credentials.
pub const AGENT_AUDIENCE: &str = "agent-governance/agent";
/// The audience of on-behalf-of user tokens.
pub const USER_AUDIENCE: &str = "agent-governance/user";
/// The audience of approver tokens.
pub const APPROVER_AUDIENCE: &str = "agent-governance/approver";
