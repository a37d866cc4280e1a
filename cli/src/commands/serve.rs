//! `govctl serve`: the local control plane.
//!
//! The same router the Lambda functions mount, over HTTP, on the embedded
//! SQLite store. A background task watches the active-version pointer, so a
//! `govctl policy publish` or `rollback` in another terminal takes effect
//! within the reload interval without a restart. Before it serves, it picks
//! up the approvals the previous run left open.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use governance::adapters::local::prometheus::{MeteredLog, PrometheusMetrics};
use governance::adapters::local::secrets::LocalSecrets;
use governance::adapters::local::{LogNotifier, MemoryMetrics};
use governance::adapters::mcp::McpUpstreams;
use governance::adapters::sqlite::SqliteStore;
use governance::anomaly::{watch, Alerting};
use governance::auth::signin::{SignIn, SignInConfig};
use governance::auth::{session_secret, ApproverVerifier, Sessions, UserVerifier};
use governance::auth::{
    JwtVerifier, LocalKeys, AGENT_AUDIENCE, APPROVER_AUDIENCE, LOCAL_ISSUER, USER_AUDIENCE,
};
use governance::changes::direct_activation_refused;
use governance::clock::{FileOffsetClock, SystemClock};
use governance::gateway::Gateway;
use governance::handlers::approval_callback::ApprovalCallbackHandler;
use governance::handlers::change_review::ChangeReviewHandler;
use governance::handlers::decision_log::DecisionLogHandler;
use governance::handlers::denial_metrics::DenialMetricsHandler;
use governance::handlers::inbox::InboxHandler;
use governance::hosts::workflow::{LocalTasks, LocalWorkflow};
use governance::http::mcp::{self, McpOptions, McpState};
use governance::http::{metrics_router, router, AgentAuthenticator, AppState, BearerAgentAuth};
use governance::policy::{compile, load_engine, PolicyBundle, PolicyEngine, PolicyVersionRef};
use governance::ports::{Clock, PolicyStore, PublishRequest};
use governance::service::{AuthorizeService, EngineHandle};

use super::open_store;
use crate::cli::ServeArgs;

/// Starts the control plane and serves until Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Held until the server stops: a second server on the same store would
    // run its own digests, reloads and workflows against it.
    let _lock = lock_data_dir(&args.data.data_dir, &args.listen.to_string())?;
    let store = Arc::new(open_store(&args.data.data_dir)?);
    let bound = store.bind_environment(args.environment)?;
    anyhow::ensure!(
        bound == args.environment,
        "`{}` holds the {bound} control plane; serve it with --environment {bound} \
         (a data directory keeps the environment it first served)",
        args.data.data_dir.display()
    );
    let keys = LocalKeys::load_or_create(&args.data.data_dir)?;
    let audit_key = Arc::new(LocalKeys::audit(&args.data.data_dir)?);
    let engine = bootstrap(&store, &args).await?;
    tracing::info!(
        version = %engine.version().id,
        hash = %engine.version().content_hash,
        agents = engine.registry().agents.len(),
        tools = engine.registry().tools.len(),
        "serving policy version"
    );
    let reload_every = Duration::from_secs(args.reload_interval.max(1));
    let max_staleness = Duration::from_secs(args.max_policy_staleness);
    anyhow::ensure!(
        max_staleness > reload_every,
        "--max-policy-staleness ({}s) must be more than --reload-interval ({}s)",
        max_staleness.as_secs(),
        reload_every.as_secs()
    );
    let handle = Arc::new(EngineHandle::with_max_staleness(engine, max_staleness));
    // Before the first answer: a disabled agent is never served.
    handle.set_killswitch(
        store
            .active_state()
            .await
            .context("cannot read the kill switch")?
            .1,
    );
    tokio::spawn(reload_loop(
        Arc::clone(&store),
        Arc::clone(&handle),
        reload_every,
    ));

    let clock: Arc<dyn Clock> = match &args.test_clock_offset_file {
        Some(file) => {
            tracing::warn!(file = %file.display(), "decisions use a test clock moved by the file's offset");
            Arc::new(FileOffsetClock(file.clone()))
        }
        None => Arc::new(SystemClock),
    };

    tokio::spawn(digest_loop(
        Arc::clone(&store),
        Arc::clone(&audit_key),
        Duration::from_secs(args.digest_interval.max(1)),
    ));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(MemoryMetrics::default());
    let prometheus = Arc::new(PrometheusMetrics::default());
    // Approval outcomes are counted as the workflow's steps store them.
    let metered_log = Arc::new(MeteredLog {
        inner: (*store).clone(),
        metrics: Arc::clone(&prometheus),
    });
    // The approval workflow runs in process, through the same step handlers
    // the state machine calls on AWS; approvers' links point here.
    let tasks = Arc::new(LocalTasks::default());
    let signin = sign_in(&args, addr)?;
    let approvers: Arc<dyn ApproverVerifier> = Arc::new(JwtVerifier::new(
        &keys.jwks(),
        LOCAL_ISSUER,
        APPROVER_AUDIENCE,
        "groups",
    )?);
    let callback = ApprovalCallbackHandler {
        approvals: metered_log.clone(),
        tasks: tasks.clone(),
        notifier: Arc::new(LogNotifier),
        log: metered_log.clone(),
        approvers: Arc::clone(&approvers),
        clock: Arc::new(SystemClock),
        sessions: signin.clone().map(|s| s as Arc<dyn Sessions>),
        // Mounted on their own below.
        routes: None,
    };
    let change_review = ChangeReviewHandler {
        changes: store.clone(),
        versions: store.clone(),
        approvers,
        clock: Arc::new(SystemClock),
        sessions: signin.clone().map(|s| s as Arc<dyn Sessions>),
    };
    let inbox = signin.map(|signin| InboxHandler {
        signin,
        callback: callback.clone(),
        inbox: store.clone(),
        changes: Some(store.clone()),
    });
    let workflow = LocalWorkflow {
        decision_log: Arc::new(DecisionLogHandler {
            log: metered_log.clone(),
            approvals: metered_log.clone(),
            clock: Arc::new(SystemClock),
            // The embedded store chains every record as it writes it.
            archive: None,
            audit_key: None,
        }),
        callback: callback.clone(),
        metrics: Arc::new(DenialMetricsHandler {
            sink: metrics.clone(),
        }),
        tasks,
        base_url: format!("http://{addr}"),
    };
    // Before any answer is served, so that an answer finds its step waiting.
    let open = store
        .unfinished_approvals()
        .await
        .context("cannot read the approvals left open")?;
    if !open.is_empty() {
        let done = workflow
            .recover(open, time::OffsetDateTime::now_utc())
            .await;
        tracing::info!(
            resumed = done.resumed,
            expired = done.expired,
            completed = done.completed,
            "approvals left open by the previous run picked up"
        );
    }
    tokio::spawn(anomaly_loop(
        Arc::clone(&store),
        Arc::clone(&handle),
        Arc::clone(&prometheus),
        Arc::clone(&clock),
        Duration::from_secs(args.anomaly_interval.max(1)),
    ));
    let service = Arc::new(AuthorizeService {
        engine: handle,
        log: store.clone(),
        approvals: Arc::new(workflow),
        grants: store.clone(),
        counters: store.clone(),
        metrics: prometheus.clone(),
        clock,
        environment: args.environment,
    });
    let jwks = keys.jwks();
    let agents: Arc<dyn AgentAuthenticator> = Arc::new(BearerAgentAuth(JwtVerifier::new(
        &jwks,
        LOCAL_ISSUER,
        AGENT_AUDIENCE,
        "roles",
    )?));
    let users: Arc<dyn UserVerifier> = Arc::new(JwtVerifier::new(
        &jwks,
        LOCAL_ISSUER,
        USER_AUDIENCE,
        "roles",
    )?);
    // The MCP gateway: the same service on the call path. Upstream
    // credentials come from the environment or the data directory; stdio
    // servers may be started here.
    let upstreams = McpUpstreams::new(Arc::new(LocalSecrets::new(&args.data.data_dir)), true);
    let mcp = mcp::router(McpState {
        gateway: Arc::new(
            Gateway::new(Arc::clone(&service), Arc::new(upstreams), store.clone())
                .deferring_outcomes()
                .holding_approvals(std::time::Duration::from_secs(args.mcp_hold_approval)),
        ),
        agents: Arc::clone(&agents),
        users: Arc::clone(&users),
        options: McpOptions {
            sessions: true,
            // JSON where the revision allows it; a call whose progress is
            // relayed is answered as an event stream.
            json_response: true,
            authorization_servers: Vec::new(),
            allowed_hosts: allowed_hosts(&args),
        },
        // Agents present the control plane's own tokens at /mcp.
        oauth: None,
    });
    let state = AppState {
        service,
        agents,
        users,
        log: store.clone(),
        approvals: store.clone(),
    };
    tracing::info!(
        %addr,
        data_dir = %args.data.data_dir.display(),
        environment = %args.environment,
        "agent-governance control plane listening"
    );
    eprintln!(
        "listening on http://{addr}  (try: govctl agent token agent-support-1 --data-dir {})",
        args.data.data_dir.display()
    );
    let app = router(state)
        .merge(callback.router())
        .merge(change_review.router())
        .merge(inbox.map(InboxHandler::router).unwrap_or_default())
        .merge(metrics_router(prometheus))
        .merge(mcp);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await
        .context("the HTTP server failed")?;
    // Seal what this run appended, so no record is left outside a digest.
    seal(&store, &audit_key).await;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM (what service managers and containers send): either
/// stops the server gracefully, sealing what it appended.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C still stops");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The `Host` names `/mcp` answers to: on a loopback address only the
/// loopback names (DNS rebinding stays out), plus `--mcp-allowed-host`;
/// on any other address, any.
fn allowed_hosts(args: &ServeArgs) -> Vec<String> {
    if !args.listen.ip().is_loopback() {
        return Vec::new();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    hosts.extend(args.mcp_allowed_host.iter().cloned());
    hosts
}

/// Approvers' sign-in, when `--oidc-issuer` names a provider.
fn sign_in(args: &ServeArgs, addr: std::net::SocketAddr) -> anyhow::Result<Option<Arc<SignIn>>> {
    let a = &args.signin;
    let (Some(issuer), Some(client_id)) = (&a.oidc_issuer, &a.oidc_client_id) else {
        return Ok(None);
    };
    let client_secret = match &a.oidc_client_secret_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the client secret in `{}`", f.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let public_url = a
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let config = SignInConfig {
        issuer: issuer.clone(),
        client_id: client_id.clone(),
        client_secret,
        groups_claim: a.oidc_groups_claim.clone(),
        user_claim: a.oidc_user_claim.clone(),
        public_url,
        scopes: a.oidc_scopes.clone(),
        session_ttl: Duration::from_secs(a.session_ttl.max(60)),
    };
    tracing::info!(issuer = %config.issuer, client_id = %config.client_id, public_url = %config.public_url, "approvers sign in with OpenID Connect");
    let secret = session_secret(&args.data.data_dir)?;
    Ok(Some(Arc::new(SignIn::new(config, &secret)?)))
}

/// Decides what to serve at start-up: `--policy DIR` (published and activated
/// if its content is new), else the active version, else the built-in example.
/// The file whose exclusive lock marks a data directory as served.
const LOCK_FILE: &str = "serve.lock";

/// Takes the data directory's serve lock, or names the server that holds
/// it. The operating system releases the lock when the process ends, so a
/// server that crashed leaves nothing to clean up.
fn lock_data_dir(dir: &std::path::Path, listen: &str) -> anyhow::Result<std::fs::File> {
    use std::io::{Read as _, Seek as _, Write as _};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            anyhow::bail!(
                "`{}` is already served by another govctl serve ({}); stop it first, or \
                 give this one another --data-dir",
                dir.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock `{}`", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(
        file,
        "pid {}, listening on {listen}, since {}",
        std::process::id(),
        governance::clock::rfc3339(time::OffsetDateTime::now_utc())
    )?;
    file.flush()?;
    Ok(file)
}

async fn bootstrap(store: &SqliteStore, args: &ServeArgs) -> anyhow::Result<PolicyEngine> {
    let active = store.active().await?;
    let (bundle, message) = match (&args.policy, &active) {
        (Some(dir), _) => (
            PolicyBundle::from_dir(dir)?,
            format!("govctl serve --policy {}", dir.display()),
        ),
        (None, Some(a)) => return load(store, &a.version_id).await,
        (None, None) => (
            crate::example::bundle(),
            "built-in example policy set".to_owned(),
        ),
    };
    if let Err(diags) = compile(&bundle) {
        for d in &diags {
            eprintln!("{d}");
        }
        anyhow::bail!("the policy directory is invalid; nothing was published");
    }
    if let Some(a) = &active {
        let (current, _) = store.version(&a.version_id).await?;
        if current.content_hash == bundle.content_hash() {
            return load(store, &a.version_id).await;
        }
        if let Some(spec) = direct_activation_refused(store, args.environment).await? {
            anyhow::bail!(
                "{env} reviews policy changes: `--policy` differs from the active version {id}, \
                 and is not activated directly. Propose it with `govctl policy propose DIR \
                 --message …` (a member of `{group}` reviews high-risk changes), or start \
                 without --policy",
                env = args.environment,
                id = a.version_id,
                group = spec.reviewers_group
            );
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let version = store
        .publish(PublishRequest {
            bundle,
            author: super::operator(None),
            message,
            at: now,
        })
        .await?;
    store.activate(&version.id, "govctl serve", now).await?;
    load(store, &version.id).await
}

async fn load(store: &SqliteStore, version_id: &str) -> anyhow::Result<PolicyEngine> {
    let (version, bundle) = store.version(version_id).await?;
    let id = version.id.clone();
    load_engine(
        &bundle,
        PolicyVersionRef {
            id: version.id,
            content_hash: version.content_hash,
        },
    )
    .with_context(|| format!("stored version {id} cannot be served"))
}

/// Keeps `handle` on the active version. Each read that finds the served
/// version, or loads the newly activated one, confirms it; a store that
/// cannot be read or a version that cannot be loaded leaves it unconfirmed,
/// so that past the maximum staleness calls are denied with `policy_stale`.
async fn reload_loop(store: Arc<SqliteStore>, handle: Arc<EngineHandle>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let active = match store.active_state().await {
            Ok((Some(a), killswitch)) => {
                handle.set_killswitch(killswitch);
                a
            }
            Ok((None, killswitch)) => {
                handle.set_killswitch(killswitch);
                tracing::error!(
                    "no policy version is active; serving the previous one until it goes stale"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the active policy version; serving the previous one until it goes stale");
                continue;
            }
        };
        if active.version_id == handle.current().version().id {
            handle.confirm();
            continue;
        }
        match load(&store, &active.version_id).await {
            Ok(engine) => {
                tracing::info!(version = %active.version_id, by = %active.activated_by, "activated policy version loaded");
                handle.replace(engine);
            }
            Err(e) => {
                tracing::error!(version = %active.version_id, error = %e, "cannot load the activated version; serving the previous one until it goes stale")
            }
        }
    }
}

/// Watches every registered agent version's call rate every `every` (see
/// `governance::anomaly`): alerts go to the log, the audit trail and
/// `/metrics`.
async fn anomaly_loop(
    store: Arc<SqliteStore>,
    handle: Arc<EngineHandle>,
    metrics: Arc<PrometheusMetrics>,
    clock: Arc<dyn Clock>,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let engine = handle.current();
        let version = engine.version();
        let alerting = Alerting {
            counters: store.as_ref(),
            control: store.as_ref(),
            killswitch: store.as_ref(),
        };
        match watch(
            &alerting,
            engine.registry(),
            (&version.id, &version.content_hash),
            clock.now(),
        )
        .await
        {
            Ok(w) => metrics.observe_watch(&w),
            Err(e) => tracing::warn!(error = %e, "cannot watch call rates; it is retried"),
        }
    }
}

/// Writes a signed digest every `every`, when records were appended since the last.
async fn digest_loop(store: Arc<SqliteStore>, key: Arc<LocalKeys>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        seal(&store, &key).await;
    }
}

async fn seal(store: &Arc<SqliteStore>, key: &Arc<LocalKeys>) {
    let (store, key) = (Arc::clone(store), Arc::clone(key));
    let written = tokio::task::spawn_blocking(move || {
        store.write_digest(&key, time::OffsetDateTime::now_utc())
    })
    .await;
    match written {
        Ok(Ok(Some(d))) => {
            tracing::info!(
                digest = d.digest_seq,
                records = d.records,
                "audit digest written"
            )
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit digest; it is retried"),
        Err(e) => tracing::error!(error = %e, "the audit digest task failed"),
    }
}
