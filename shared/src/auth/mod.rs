//! Identity: signed JWTs for agents and for the users they act for.
//!
//! One verification path serves both hosts: [`JwtVerifier`] checks a token
//! against a JSON Web Key Set, an issuer and an audience. Locally the key set
//! is the data directory's own ([`LocalKeys`], minted by `govctl agent token`
//! and `govctl user token`); on AWS it is the configured OIDC issuer's JWKS.

mod jwt;
mod keys;

pub use jwt::{Claims, JwtVerifier, TokenError, TokenUse};
pub use keys::{KeyError, LocalKeys, LOCAL_ISSUER};

/// The audience of agent credentials.
pub const AGENT_AUDIENCE: &str = "agent-governance/agent";
/// The audience of on-behalf-of user tokens.
pub const USER_AUDIENCE: &str = "agent-governance/user";
