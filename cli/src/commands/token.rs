//! `govctl agent token`, `govctl user token` and `govctl approver token`:
//! credentials signed with the
//! data directory's key, printed on stdout.

use std::path::Path;

use anyhow::Context as _;
use governance::auth::{
    Claims, LocalKeys, TokenUse, AGENT_AUDIENCE, APPROVER_AUDIENCE, LOCAL_ISSUER, USER_AUDIENCE,
};

fn mint(data_dir: &Path, claims: Claims) -> anyhow::Result<()> {
    let keys = LocalKeys::load_or_create(data_dir)
        .with_context(|| format!("cannot load the signing key of `{}`", data_dir.display()))?;
    println!("{}", keys.mint(&claims)?);
    Ok(())
}

fn claims(sub: &str, aud: &str, token_use: TokenUse, ttl: u64) -> anyhow::Result<Claims> {
    anyhow::ensure!(
        !sub.is_empty() && sub.len() <= 256,
        "the id must be 1 to 256 characters"
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(Claims {
        iss: LOCAL_ISSUER.to_owned(),
        sub: sub.to_owned(),
        aud: aud.to_owned(),
        exp: now + i64::try_from(ttl)?,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        token_use,
        roles: Vec::new(),
        org: None,
        groups: Vec::new(),
    })
}

/// Mints an agent credential; warns when the data directory's active
/// policy version registers no such agent (its calls would all be denied).
pub fn agent(data_dir: &Path, agent_id: &str, ttl: u64) -> anyhow::Result<()> {
    if let Some(known) = registered_agents(data_dir) {
        if !known.iter().any(|a| a == agent_id) {
            eprintln!(
                "warning: the active policy version in `{}` registers no agent `{agent_id}`, so \
                 every call with this token is denied (unknown_agent); registered agents: {}",
                data_dir.display(),
                known.join(", ")
            );
        }
    }
    mint(
        data_dir,
        claims(agent_id, AGENT_AUDIENCE, TokenUse::Agent, ttl)?,
    )
}

/// The agents of the active policy version in `data_dir`, when it has a
/// store with one (a token may be minted before the first `serve`).
fn registered_agents(data_dir: &Path) -> Option<Vec<String>> {
    use governance::ports::PolicyStore as _;
    if !data_dir
        .join(governance::adapters::sqlite::DB_FILE)
        .exists()
    {
        return None;
    }
    let store = governance::adapters::sqlite::SqliteStore::open(data_dir).ok()?;
    let rt = super::runtime().ok()?;
    let active = rt.block_on(store.active()).ok()??;
    let (_, bundle) = rt.block_on(store.version(&active.version_id)).ok()?;
    let registry = governance::policy::compile(&bundle).ok()?.registry;
    Some(registry.agents.into_iter().map(|a| a.id).collect())
}

/// Mints an on-behalf-of user token.
pub fn user(
    data_dir: &Path,
    user_id: &str,
    roles: Vec<String>,
    org: Option<String>,
    ttl: u64,
) -> anyhow::Result<()> {
    let mut c = claims(user_id, USER_AUDIENCE, TokenUse::User, ttl)?;
    c.roles = roles;
    c.org = org;
    mint(data_dir, c)
}

/// Mints an approver token: the approver's id and the groups they approve for.
pub fn approver(
    data_dir: &Path,
    approver_id: &str,
    groups: Vec<String>,
    ttl: u64,
) -> anyhow::Result<()> {
    let mut c = claims(approver_id, APPROVER_AUDIENCE, TokenUse::Approver, ttl)?;
    c.groups = groups;
    mint(data_dir, c)
}
