//! The authorize function: the shared HTTP API behind API Gateway.
//!
//! The agent is the IAM principal that API Gateway's IAM authorizer
//! verified, mapped to a registered agent by the active policy version; the
//! user is a token of the configured OIDC issuer. The active version is held
//! in memory and its pointer re-read at most every `POLICY_REFRESH_SECONDS`
//! on the request path (a frozen Lambda runs no background task), so a
//! steady-state allow costs at most two DynamoDB requests: that read, now
//! and then, and the decision's write. A version not confirmed as the
//! active one for longer than `POLICY_MAX_STALENESS_SECONDS` decides
//! nothing: every call is denied with `policy_stale`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Extensions, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use lambda_http::request::RequestContext;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::config::AuthorizeConfig;
use crate::adapters::aws::dynamodb::{
    DynamoApprovals, DynamoCounters, DynamoDecisionLog, DynamoPolicyStore,
};
use crate::adapters::aws::sfn::SfnApprovalWorkflow;
use crate::adapters::local::MemoryMetrics;
use crate::auth::{OidcVerifier, TokenError, UserVerifier};
use crate::clock::SystemClock;
use crate::http::{router, AgentAuthenticator, ApiError, AppState};
use crate::model::Registry;
use crate::policy::{load_engine, LoadError, PolicyEngine, PolicyVersionRef};
use crate::ports::{
    ApprovalStore, ApprovalWorkflow, Clock, Counters, DecisionLog, PolicyStore, StoreError,
};
use crate::service::{AuthorizeService, EngineHandle};

/// The version id of the empty engine served before any version is activated.
const NO_VERSION: &str = "none";

/// The agent is the IAM principal of the request context, never a header or
/// a body field: API Gateway put the context there after verifying the
/// caller's SigV4 signature.
pub struct IamAgentAuth {
    engine: Arc<EngineHandle>,
}

impl IamAgentAuth {
    /// Maps principals with the registry of the version `engine` serves.
    pub fn new(engine: Arc<EngineHandle>) -> Self {
        Self { engine }
    }
}

impl AgentAuthenticator for IamAgentAuth {
    fn authenticate(&self, _: &HeaderMap, extensions: &Extensions) -> Result<String, ApiError> {
        let arn = extensions
            .get::<RequestContext>()
            .and_then(RequestContext::authorizer)
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.as_deref())
            .ok_or(ApiError::MissingCredentials)?;
        // An authenticated principal that no agent runs as is still decided
        // (and recorded) as an unknown agent, named so that no registered
        // agent id can be it: ids cannot hold spaces or angle brackets.
        Ok(self
            .engine
            .current()
            .agent_for_principal(arn)
            .map_or_else(|| format!("<unregistered> {arn}"), str::to_owned))
    }
}

/// Keeps the engine on the active version, checking the pointer at most once per interval.
///
/// Each read of the pointer that finds the served version, or loads the
/// newly activated one, confirms the engine ([`EngineHandle::confirm`]);
/// failures leave it unconfirmed, so that past the maximum staleness the
/// service denies with `policy_stale` rather than serve a replaced version
/// forever.
pub struct PolicyRefresher {
    store: Arc<dyn PolicyStore>,
    engine: Arc<EngineHandle>,
    interval: Duration,
    // Wall-clock time, not `Instant`: an execution environment that was
    // frozen between invocations must check again as soon as it thaws.
    last_check: Mutex<OffsetDateTime>,
}

impl PolicyRefresher {
    /// Refreshes `engine` from `store` at most every `interval`.
    pub fn new(store: Arc<dyn PolicyStore>, engine: Arc<EngineHandle>, interval: Duration) -> Self {
        Self {
            store,
            engine,
            interval,
            last_check: Mutex::new(OffsetDateTime::now_utc()),
        }
    }

    /// Loads a newly activated version if the interval has passed. Failures
    /// keep the version being served, unconfirmed, and are retried after the
    /// interval.
    pub async fn refresh(&self) {
        let mut last = self.last_check.lock().await;
        let now = OffsetDateTime::now_utc();
        let since = now - *last;
        if since.is_positive() && since < self.interval {
            return;
        }
        *last = now;
        let active = match self.store.active_state().await {
            Ok((active, killswitch)) => {
                self.engine.set_killswitch(killswitch);
                active
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the active policy version; serving the previous one until it goes stale");
                return;
            }
        };
        let active = match active {
            Some(a) => a,
            None => {
                // Only the empty engine of a stack where nothing was ever
                // activated agrees with an absent pointer.
                if self.engine.current().version().id == NO_VERSION {
                    self.engine.confirm();
                } else {
                    tracing::error!("the active policy pointer is missing; serving the previous version until it goes stale");
                }
                return;
            }
        };
        if active.version_id == self.engine.current().version().id {
            self.engine.confirm();
            return;
        }
        match load_version(self.store.as_ref(), &active.version_id).await {
            Ok(engine) => {
                tracing::info!(version = %active.version_id, by = %active.activated_by, "activated policy version loaded");
                self.engine.replace(engine);
            }
            Err(e) => {
                tracing::error!(version = %active.version_id, error = %e, "cannot load the activated version; serving the previous one until it goes stale");
            }
        }
    }
}

async fn refresh_first(
    State(refresher): State<Arc<PolicyRefresher>>,
    request: Request,
    next: Next,
) -> Response {
    refresher.refresh().await;
    next.run(request).await
}

/// Loading a stored version failed.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored version does not compile with this build.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Loads and compiles one stored version.
pub async fn load_version(
    store: &dyn PolicyStore,
    version_id: &str,
) -> Result<PolicyEngine, VersionError> {
    let (version, bundle) = store.version(version_id).await?;
    Ok(load_engine(
        &bundle,
        PolicyVersionRef {
            id: version.id,
            content_hash: version.content_hash,
        },
    )?)
}

/// The engine of the active version; with none activated yet, an empty
/// registry, under which every call is denied (and recorded) as an unknown agent.
pub async fn active_engine(store: &dyn PolicyStore) -> Result<PolicyEngine, VersionError> {
    match store.active().await? {
        Some(a) => load_version(store, &a.version_id).await,
        None => {
            tracing::warn!("no policy version is active; every call is denied until one is pushed");
            let compiled = crate::policy::compile(&empty_bundle()).map_err(LoadError::Invalid)?;
            Ok(PolicyEngine::new(
                compiled,
                PolicyVersionRef {
                    id: NO_VERSION.into(),
                    content_hash: NO_VERSION.into(),
                },
            )
            .map_err(LoadError::from)?)
        }
    }
}

fn empty_bundle() -> crate::policy::PolicyBundle {
    let mut bundle = crate::policy::PolicyBundle::default();
    let registry = serde_json::to_string(&Registry::default()).unwrap_or_else(|_| "{}".into());
    bundle
        .files
        .insert(crate::policy::REGISTRY_FILE.to_owned(), registry);
    bundle
}

/// What the authorize function talks to, already built.
pub struct AuthorizePorts {
    /// Policy versions.
    pub policies: Arc<dyn PolicyStore>,
    /// The decision log.
    pub log: Arc<dyn DecisionLog>,
    /// The approval workflow.
    pub approvals: Arc<dyn ApprovalWorkflow>,
    /// Approvals, read for the agents that poll them.
    pub approval_store: Arc<dyn ApprovalStore>,
    /// Verifies on-behalf-of tokens.
    pub users: Arc<dyn UserVerifier>,
    /// The counters of runs and budgets.
    pub counters: Arc<dyn Counters>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

impl AuthorizePorts {
    /// The AWS adapters, from one SDK configuration.
    pub fn aws(config: &AuthorizeConfig, sdk: &aws_config::SdkConfig) -> Result<Self, TokenError> {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            policies: Arc::new(DynamoPolicyStore::new(
                dynamodb.clone(),
                &config.policy_table,
            )),
            log: Arc::new(
                DynamoDecisionLog::new(dynamodb.clone(), &config.decisions_table)
                    .with_counters(&config.counters_table),
            ),
            approval_store: Arc::new(
                DynamoApprovals::new(dynamodb.clone(), &config.approvals_table)
                    .with_decisions(&config.decisions_table)
                    .with_counters(&config.counters_table),
            ),
            counters: Arc::new(DynamoCounters::new(dynamodb, &config.counters_table)),
            clock: Arc::new(SystemClock),
            approvals: Arc::new(SfnApprovalWorkflow::new(
                aws_sdk_sfn::Client::new(sdk),
                &config.state_machine_arn,
            )),
            users: Arc::new(
                OidcVerifier::new(
                    &config.oidc_jwks_url,
                    &config.oidc_issuer,
                    &config.oidc_audience,
                    &config.oidc_claims.roles,
                )?
                .with_claims(config.oidc_claims.clone()),
            ),
        })
    }
}

/// The authorization service over the ports, with the engine it serves
/// and what keeps that engine on the active version.
pub struct Assembled {
    /// Decides and records.
    pub service: Arc<AuthorizeService>,
    /// The served policy version.
    pub engine: Arc<EngineHandle>,
    /// Re-reads the active pointer on the request path.
    pub refresher: Arc<PolicyRefresher>,
    /// Verifies on-behalf-of tokens.
    pub users: Arc<dyn UserVerifier>,
    /// The decision log, for reads.
    pub log: Arc<dyn DecisionLog>,
    /// Approvals, for reads.
    pub approval_store: Arc<dyn ApprovalStore>,
}

/// Loads the active version and builds the service the authorize and
/// gateway functions share.
pub async fn assemble(
    config: &AuthorizeConfig,
    ports: AuthorizePorts,
) -> Result<Assembled, VersionError> {
    let engine = Arc::new(EngineHandle::with_max_staleness(
        active_engine(ports.policies.as_ref()).await?,
        config.policy_max_staleness,
    ));
    // Before the first answer: a disabled agent is never served, not even
    // in the refresh interval after a cold start.
    engine.set_killswitch(ports.policies.active_state().await?.1);
    tracing::info!(version = %engine.current().version().id, "serving policy version");
    let refresher = Arc::new(PolicyRefresher::new(
        ports.policies,
        Arc::clone(&engine),
        config.policy_refresh,
    ));
    let service = AuthorizeService {
        engine: Arc::clone(&engine),
        log: Arc::clone(&ports.log),
        approvals: ports.approvals,
        grants: Arc::clone(&ports.approval_store),
        counters: ports.counters,
        // Denial metrics come from the decision table's stream, off the request path.
        metrics: Arc::new(MemoryMetrics::default()),
        clock: ports.clock,
        environment: config.environment,
    };
    Ok(Assembled {
        service: Arc::new(service),
        engine,
        refresher,
        users: ports.users,
        log: ports.log,
        approval_store: ports.approval_store,
    })
}

/// Runs the policy refresher before each request of `router`.
pub fn refreshed(router: Router, refresher: Arc<PolicyRefresher>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        refresher,
        refresh_first,
    ))
}

/// The authorize function's router: the shared API, with the agent taken
/// from the IAM context and the policy refreshed before each request.
pub async fn app(config: &AuthorizeConfig, ports: AuthorizePorts) -> Result<Router, VersionError> {
    let a = assemble(config, ports).await?;
    let state = AppState {
        service: a.service,
        agents: Arc::new(IamAgentAuth::new(a.engine)),
        users: a.users,
        log: a.log,
        approvals: a.approval_store,
    };
    Ok(refreshed(router(state), a.refresher))
}
