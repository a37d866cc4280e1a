//! The embedded store: one SQLite database under the data directory.
//!
//! Decisions are written by one writer thread that commits them in groups:
//! every record waiting when a commit starts goes into the same transaction,
//! and each caller is answered only after the commit (WAL, `synchronous =
//! FULL`) has reached the disk. Under load, one fsync covers many decisions;
//! idle, a decision waits for its own fsync only.
//!
//! Policy versions, activations and decisions are append-only: triggers
//! refuse UPDATE and DELETE, so history cannot be rewritten through SQL
//! either.

/// The one statement that stores a chained decision row.
macro_rules! insert_decision {
    () => {
        "INSERT INTO decisions (decision_id, agent_id, timestamp, decision, idempotency_key, record,
                                partition, seq, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    };
}

mod approvals;
mod audit;
mod changes;
mod counters;
mod decisions;
mod executions;
mod killswitch;
mod schema;

pub use decisions::DecisionFilter;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::adapters::local::files::{create_private_dir, restrict_file};
use crate::audit::{link_hash, partition_of, GENESIS};
use crate::clock::rfc3339;
use crate::limits::{Charge, Charged, Counter};
use crate::model::DecisionRecord;
use crate::policy::PolicyBundle;
use crate::ports::{
    key_claim_times, version_id, ActivePolicy, Appended, Counters, DecisionLog, PolicyStore,
    PolicyVersion, PublishRequest, StoreError,
};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "governance.db";

/// How long a write waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(1000);

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// How large the WAL may grow before the decision writer restarts it.
///
/// Passive checkpoints beside a writer that never pauses copy the WAL into
/// the database but can never let it start over, so under sustained load it
/// grows without bound. Past this size the writer itself, between two group
/// commits, runs a RESTART checkpoint: the passive ones have copied nearly
/// everything by then, so it costs little, and the next commit writes from
/// the start of the file again. `journal_size_limit` then cuts the file back.
/// The WAL therefore stays near this size, however long the load lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalBound {
    /// WAL size, in bytes, past which the writer restarts it.
    pub restart_after_bytes: i64,
}

impl Default for WalBound {
    fn default() -> Self {
        Self {
            restart_after_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The most records one group commit takes.
const MAX_BATCH: usize = 1024;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

struct Job {
    record: PreparedRecord,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// A record serialized by the caller, so the writer thread only writes.
struct PreparedRecord {
    decision_id: String,
    agent_id: String,
    timestamp: String,
    decision: &'static str,
    idempotency_key: Option<String>,
    json: String,
    /// The chain it is linked into.
    partition: String,
    /// How the record claims its idempotency key, if it has one.
    claim: Option<KeyClaim>,
    /// The limit charges its decision makes.
    charges: Vec<Charge>,
}

/// A keyed record's claim on its agent's key.
struct KeyClaim {
    /// The record's own time (Unix seconds): claims that ended by then are free.
    at: i64,
    /// When this record's claim ends.
    expires_at: i64,
    /// The decision the claim is taken over from, for a repeat decided afresh.
    supersedes: Option<String>,
}

/// The SQLite adapter of every store port.
#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    control: Arc<Mutex<Connection>>,
    writer: mpsc::SyncSender<Job>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(unavailable)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, WalBound::default())
    }

    /// Opens (creating if needed) the store in `data_dir`, keeping its WAL
    /// within `wal`.
    pub fn open_with(data_dir: &Path, wal: WalBound) -> Result<Self, StoreError> {
        create_private_dir(data_dir)
            .map_err(|e| unavailable(format!("cannot create `{}`: {e}", data_dir.display())))?;
        let path = data_dir.join(DB_FILE);
        // Before SQLite opens it: a new WAL and shared memory take its mode.
        // Those an older build left behind are tightened as they are.
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if suffix.is_empty() || file.exists() {
                restrict_file(&file).map_err(|e| {
                    unavailable(format!(
                        "cannot restrict `{}` to its owner: {e}",
                        file.display()
                    ))
                })?;
            }
        }
        let mut control = open(&path)?;
        control.execute_batch(schema::SCHEMA).map_err(unavailable)?;
        migrate_idempotency(&mut control)?;
        approvals::migrate(&control)?;
        audit::migrate(&mut control)?;
        let writer_conn = open(&path)?;
        // Checkpoints copy the WAL into the database and fsync both; done by
        // the committing writer they would stall every decision behind them.
        writer_conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(unavailable)?;
        writer_conn
            .pragma_update(None, "journal_size_limit", wal.restart_after_bytes)
            .map_err(unavailable)?;
        let page_size: i64 = writer_conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(unavailable)?;
        let restart_after_frames = (wal.restart_after_bytes / page_size.max(1)).max(1);
        // Registered after `wal_autocheckpoint`, which would replace it.
        writer_conn.wal_hook(Some(note_wal_frames));
        let checkpoint_conn = open(&path)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(16 * MAX_BATCH);
        std::thread::Builder::new()
            .name("decision-writer".into())
            .spawn(move || write_loop(writer_conn, &rx, restart_after_frames))
            .map_err(unavailable)?;
        let control = Arc::new(Mutex::new(control));
        let alive = Arc::downgrade(&control);
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint_conn, &alive))
            .map_err(unavailable)?;
        Ok(Self {
            path,
            control,
            writer: tx,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_control<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.control);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| unavailable("store lock poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(unavailable)?
    }

    /// Runs `f` on the control connection synchronously (for the CLI).
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self
            .control
            .lock()
            .map_err(|_| unavailable("store lock poisoned"))?;
        f(&mut guard)
    }
}

/// Checkpoints the WAL beside the writer (PASSIVE never blocks it) for as
/// long as the store exists.
fn checkpoint_loop(conn: &Connection, store: &Weak<Mutex<Connection>>) {
    let mut ticks: u32 = 0;
    while store.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; it is retried");
        }
        // About once a minute: limit counters of ended windows and old runs.
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(PRUNE_EVERY_TICKS) {
            match counters::prune(conn, OffsetDateTime::now_utc().unix_timestamp()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(counters = n, "expired limit counters pruned"),
                Err(e) => tracing::warn!(error = %e, "cannot prune limit counters; it is retried"),
            }
        }
    }
}

/// Checkpoint ticks between two prunings of expired limit counters.
const PRUNE_EVERY_TICKS: u32 = 120;

thread_local! {
    /// The WAL's size in frames after the writer thread's last commit.
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: SQLite calls it after each commit with
/// the WAL's size, on the committing (writer) thread.
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(i64::from(frames)));
    Ok(())
}

/// Restarts the WAL from the writer's connection, between two group
/// commits, so that no commit waits on a lock for it. A checkpoint that
/// cannot finish (a reader holds an old snapshot) is tried again after the
/// next commit.
fn restart_wal(conn: &Connection) {
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    }) {
        Ok((0, _)) => WAL_FRAMES.with(|f| f.set(0)),
        Ok((_, frames)) => {
            tracing::debug!(
                frames,
                "WAL restart deferred: a reader holds an old snapshot"
            );
        }
        Err(e) => tracing::warn!(error = %e, "WAL restart failed; it is retried"),
    }
}

/// Moves the idempotency keys of a store from an older build, held by a
/// unique index on the (immutable) decisions, into `idempotency_keys`, whose
/// claims can expire and move. Runs once: the index is dropped in the same
/// transaction.
fn migrate_idempotency(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let old: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'decisions_idempotency')",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if old {
        tx.execute(
            "INSERT OR IGNORE INTO idempotency_keys (agent_id, key, decision_id, expires_at)
             SELECT agent_id, idempotency_key, decision_id,
                    CAST(strftime('%s', timestamp) AS INTEGER) + ?1
             FROM decisions WHERE idempotency_key IS NOT NULL",
            [crate::ports::IDEMPOTENCY_KEY_TTL_SECONDS],
        )
        .map_err(unavailable)?;
        tx.execute_batch("DROP INDEX decisions_idempotency")
            .map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)
}

fn write_loop(mut conn: Connection, rx: &mpsc::Receiver<Job>, restart_after_frames: i64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        // After the previous batch's callers have their answers, before this
        // one begins: the restart delays no decision already committed.
        if WAL_FRAMES.with(Cell::get) > restart_after_frames {
            restart_wal(&conn);
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch) {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "decision log commit failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(unavailable(&e)));
                }
            }
        }
    }
}

/// Claims a keyed record's idempotency key inside the group commit; false
/// if a live claim of another decision holds it.
fn claim_key(
    tx: &rusqlite::Transaction<'_>,
    r: &PreparedRecord,
    key: &str,
    claim: &KeyClaim,
) -> Result<bool, rusqlite::Error> {
    let n = match &claim.supersedes {
        None => tx
            .prepare_cached(
                "INSERT INTO idempotency_keys (agent_id, key, decision_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent_id, key) DO UPDATE
                 SET decision_id = excluded.decision_id, expires_at = excluded.expires_at
                 WHERE idempotency_keys.expires_at <= ?5",
            )?
            .execute(params![
                r.agent_id,
                key,
                r.decision_id,
                claim.expires_at,
                claim.at
            ])?,
        Some(previous) => tx
            .prepare_cached(
                "UPDATE idempotency_keys SET decision_id = ?3, expires_at = ?4
                 WHERE agent_id = ?1 AND key = ?2 AND decision_id = ?5",
            )?
            .execute(params![
                r.agent_id,
                key,
                r.decision_id,
                claim.expires_at,
                previous
            ])?,
    };
    Ok(n == 1)
}

/// Whether [`claim_key`] would fail: a live claim of another decision holds
/// the key, or (for a takeover) the named decision no longer holds it.
fn key_taken(
    tx: &rusqlite::Transaction<'_>,
    r: &PreparedRecord,
    key: &str,
    claim: &KeyClaim,
) -> Result<bool, rusqlite::Error> {
    let holder: Option<(String, i64)> = tx
        .prepare_cached(
            "SELECT decision_id, expires_at FROM idempotency_keys WHERE agent_id = ?1 AND key = ?2",
        )?
        .query_row(params![r.agent_id, key], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok(match (&claim.supersedes, holder) {
        (None, Some((_, expires_at))) => expires_at > claim.at,
        (None, None) => false,
        (Some(previous), Some((id, _))) => &id != previous,
        (Some(_), None) => true,
    })
}

/// Writes a group of records in one transaction, each linked after the head
/// of its agent's chain. The heads are read inside the (immediate) write
/// transaction, so a second writer on the same file cannot fork a chain: the
/// unique (partition, seq) index would refuse the commit. A keyed record is
/// stored only if it wins its key's claim in the same transaction.
fn commit(conn: &mut Connection, batch: &[Job]) -> Result<Vec<Appended>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut heads: HashMap<&str, Option<(u64, String)>> = HashMap::new();
    {
        let mut stmt = tx.prepare_cached(insert_decision!())?;
        for job in batch {
            let r = &job.record;
            // A repeat is found before the limits are looked at (a replay
            // charges nothing), and the limits before the key is claimed (a
            // refused call claims nothing).
            let keyed = r.idempotency_key.as_deref().zip(r.claim.as_ref());
            if let Some((key, claim)) = keyed {
                if !r.charges.is_empty() && key_taken(&tx, r, key, claim)? {
                    outcomes.push(Appended::DuplicateKey);
                    continue;
                }
            }
            if let Some((index, current)) = refused_charge(&tx, &r.charges)? {
                outcomes.push(Appended::OverLimit { index, current });
                continue;
            }
            if let Some((key, claim)) = keyed {
                if !claim_key(&tx, r, key, claim)? {
                    outcomes.push(Appended::DuplicateKey);
                    continue;
                }
            }
            if let Charged::Refused { index, current } = counters::apply(&tx, &r.charges)? {
                // Checked above in this transaction: cannot happen.
                outcomes.push(Appended::OverLimit { index, current });
                continue;
            }
            let head = match heads.get(r.partition.as_str()) {
                Some(h) => h.clone(),
                None => audit::head(&tx, &r.partition)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            };
            let prev_hash = head.as_ref().map_or(GENESIS, |(_, h)| h.as_str());
            let seq = head.as_ref().map_or(1, |(s, _)| s + 1);
            let hash = link_hash(&r.partition, seq, prev_hash, &r.json);
            stmt.execute(params![
                r.decision_id,
                r.agent_id,
                r.timestamp,
                r.decision,
                r.idempotency_key,
                r.json,
                r.partition,
                seq,
                prev_hash,
                hash
            ])?;
            heads.insert(&r.partition, Some((seq, hash)));
            outcomes.push(Appended::Stored);
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// The first of `charges` that its counter does not admit.
fn refused_charge(
    tx: &rusqlite::Transaction<'_>,
    charges: &[Charge],
) -> Result<Option<(usize, Option<Counter>)>, rusqlite::Error> {
    for (index, charge) in charges.iter().enumerate() {
        let current = counters::read(tx, &charge.key, charge.window_start)?;
        if !charge.admits(current.as_ref()) {
            return Ok(Some((index, current)));
        }
    }
    Ok(None)
}

pub(super) fn version_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PolicyVersion> {
    Ok(PolicyVersion {
        id: row.get(0)?,
        content_hash: row.get(1)?,
        parent: row.get(2)?,
        author: row.get(3)?,
        message: row.get(4)?,
        created_at: row.get(5)?,
    })
}

fn resolve(conn: &Connection, id: &str) -> Result<String, StoreError> {
    let prefix = crate::ports::id_prefix(id)?;
    let mut stmt = conn
        .prepare("SELECT id FROM policy_versions WHERE id LIKE ?1 || '%' ORDER BY id LIMIT ?2")
        .map_err(unavailable)?;
    let ids: Vec<String> = stmt
        .query_map(
            rusqlite::params![prefix, crate::ports::LISTED_MATCHES],
            |r| r.get(0),
        )
        .map_err(unavailable)?
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    crate::ports::one_match(id, ids, String::as_str)
}

fn active(conn: &Connection) -> Result<Option<ActivePolicy>, StoreError> {
    conn.query_row(
        "SELECT version_id, activated_by, activated_at FROM policy_activations ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok(ActivePolicy { version_id: r.get(0)?, activated_by: r.get(1)?, activated_at: r.get(2)? }),
    )
    .optional()
    .map_err(unavailable)
}

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn publish(&self, req: PublishRequest) -> Result<PolicyVersion, StoreError> {
        self.with_control(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let parent = active(&tx)?.map(|a| a.version_id);
            let content_hash = req.bundle.content_hash();
            let created_at = rfc3339(req.at);
            let id = version_id(&content_hash, parent.as_deref(), &req.author, &req.message, &created_at);
            let bundle = serde_json::to_string(&req.bundle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO policy_versions (id, content_hash, parent, author, message, created_at, bundle)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, content_hash, parent, req.author, req.message, created_at, bundle],
            )
            .map_err(unavailable)?;
            let version = PolicyVersion { id, content_hash, parent, author: req.author, message: req.message, created_at };
            let event = audit::published_event(&tx, &version, &req.bundle)?;
            audit::append_control(&tx, &event)?;
            tx.commit().map_err(unavailable)?;
            Ok(version)
        })
        .await
    }

    async fn version(&self, id: &str) -> Result<(PolicyVersion, PolicyBundle), StoreError> {
        let id = id.to_owned();
        self.with_control(move |conn| {
            let full = resolve(conn, &id)?;
            let (version, bundle): (PolicyVersion, String) = conn
                .query_row(
                    "SELECT id, content_hash, parent, author, message, created_at, bundle FROM policy_versions WHERE id = ?1",
                    [&full],
                    |r| Ok((version_from_row(r)?, r.get(6)?)),
                )
                .map_err(unavailable)?;
            let bundle: PolicyBundle =
                serde_json::from_str(&bundle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if bundle.content_hash() != version.content_hash {
                return Err(StoreError::Corrupt(format!("version `{full}` does not match its content hash")));
            }
            Ok((version, bundle))
        })
        .await
    }

    async fn versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        self.with_control(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, content_hash, parent, author, message, created_at FROM policy_versions ORDER BY created_at DESC, rowid DESC")
                .map_err(unavailable)?;
            let rows = stmt.query_map([], version_from_row).map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn active(&self) -> Result<Option<ActivePolicy>, StoreError> {
        self.with_control(|conn| active(conn)).await
    }

    async fn active_state(
        &self,
    ) -> Result<(Option<ActivePolicy>, crate::killswitch::KillSwitch), StoreError> {
        self.with_control(|conn| {
            Ok((
                active(conn)?,
                crate::killswitch::KillSwitch(killswitch::disabled(conn)?),
            ))
        })
        .await
    }

    async fn activate(
        &self,
        id: &str,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<ActivePolicy, StoreError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.with_control(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let full = resolve(&tx, &id)?;
            let active = activate_in(&tx, &full, &by, at, None)?;
            tx.commit().map_err(unavailable)?;
            Ok(active)
        })
        .await
    }
}

/// Points the active pointer at `full` and appends its control event
/// (carrying `change`, when a change request activates it), inside `tx`.
fn activate_in(
    tx: &rusqlite::Transaction<'_>,
    full: &str,
    by: &str,
    at: OffsetDateTime,
    change: Option<crate::audit::ChangeNote>,
) -> Result<ActivePolicy, StoreError> {
    let previous = active(tx)?.map(|a| a.version_id);
    let activated_at = rfc3339(at);
    tx.execute(
        "INSERT INTO policy_activations (version_id, activated_by, activated_at) VALUES (?1, ?2, ?3)",
        params![full, by, activated_at],
    )
    .map_err(unavailable)?;
    let mut event = audit::activated_event(tx, previous.as_deref(), full, by, &activated_at)?;
    event.change = change;
    audit::append_control(tx, &event)?;
    Ok(ActivePolicy {
        version_id: full.to_owned(),
        activated_by: by.to_owned(),
        activated_at,
    })
}

impl SqliteStore {
    /// Hands one record to the group commit and waits for its outcome.
    async fn append_claiming(
        &self,
        record: &DecisionRecord,
        supersedes: Option<&str>,
        charges: &[Charge],
    ) -> Result<Appended, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let claim = match &record.idempotency_key {
            Some(_) => {
                let (at, expires_at) = key_claim_times(record)?;
                Some(KeyClaim {
                    at,
                    expires_at,
                    supersedes: supersedes.map(str::to_owned),
                })
            }
            None => None,
        };
        let (reply, done) = oneshot::channel();
        let job = Job {
            record: PreparedRecord {
                decision_id: record.decision_id.clone(),
                agent_id: record.agent_id.clone(),
                timestamp: record.timestamp.clone(),
                decision: record.decision.as_str(),
                idempotency_key: record.idempotency_key.clone(),
                json,
                partition: partition_of(&record.agent_id),
                claim,
                charges: charges.to_vec(),
            },
            reply,
        };
        match self.writer.try_send(job) {
            Ok(()) => {}
            // A full queue means the disk cannot keep up; waiting is the back-pressure.
            Err(mpsc::TrySendError::Full(job)) => {
                let writer = self.writer.clone();
                tokio::task::spawn_blocking(move || writer.send(job).map_err(|_| ()))
                    .await
                    .map_err(unavailable)?
                    .map_err(|_| unavailable("the decision writer has stopped"))?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(unavailable("the decision writer has stopped"))
            }
        }
        done.await
            .map_err(|_| unavailable("the decision writer has stopped"))?
    }
}

#[async_trait]
impl DecisionLog for SqliteStore {
    async fn append_charged(
        &self,
        record: &DecisionRecord,
        supersedes: Option<&str>,
        charges: &[Charge],
    ) -> Result<Appended, StoreError> {
        self.append_claiming(record, supersedes, charges).await
    }

    async fn get(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        let id = decision_id.to_owned();
        self.with_control(move |conn| {
            query_record(
                conn,
                "SELECT record FROM decisions WHERE decision_id = ?1",
                &[&id],
            )
        })
        .await
    }

    async fn by_idempotency_key(
        &self,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<DecisionRecord>, StoreError> {
        let (agent, key) = (agent_id.to_owned(), key.to_owned());
        self.with_control(move |conn| {
            query_record(
                conn,
                "SELECT d.record FROM idempotency_keys k JOIN decisions d ON d.decision_id = k.decision_id
                 WHERE k.agent_id = ?1 AND k.key = ?2",
                &[&agent, &key],
            )
        })
        .await
    }
}

/// The one decision record `sql` selects, decoded.
fn query_record(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Option<DecisionRecord>, StoreError> {
    let json: Option<String> = conn
        .query_row(sql, params, |r| r.get(0))
        .optional()
        .map_err(unavailable)?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

#[async_trait]
impl Counters for SqliteStore {
    async fn counter(&self, key: &str, window_start: i64) -> Result<Option<Counter>, StoreError> {
        let key = key.to_owned();
        self.with_control(move |conn| counters::read(conn, &key, window_start).map_err(unavailable))
            .await
    }

    async fn charge(&self, charges: &[Charge]) -> Result<Charged, StoreError> {
        let charges = charges.to_vec();
        self.with_control(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let charged = counters::apply(&tx, &charges).map_err(unavailable)?;
            if charged == Charged::Applied {
                tx.commit().map_err(unavailable)?;
            }
            Ok(charged)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
