//! The embedded store's tables. Statements are idempotent, so opening an
//! existing database applies nothing twice.

/// Creates every table, index and trigger that does not exist yet.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS policy_versions (
    id           TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    parent       TEXT REFERENCES policy_versions(id),
    author       TEXT NOT NULL,
    message      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    bundle       TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS policy_versions_no_update BEFORE UPDATE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are immutable'); END;
CREATE TRIGGER IF NOT EXISTS policy_versions_no_delete BEFORE DELETE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are immutable'); END;

CREATE TABLE IF NOT EXISTS policy_activations (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id   TEXT NOT NULL REFERENCES policy_versions(id),
    activated_by TEXT NOT NULL,
    activated_at TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS policy_activations_no_update BEFORE UPDATE ON policy_activations
BEGIN SELECT RAISE(ABORT, 'the activation history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS policy_activations_no_delete BEFORE DELETE ON policy_activations
BEGIN SELECT RAISE(ABORT, 'the activation history is append-only'); END;

CREATE TABLE IF NOT EXISTS decisions (
    decision_id     TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    decision        TEXT NOT NULL,
    idempotency_key TEXT,
    record          TEXT NOT NULL,
    partition       TEXT,
    seq             INTEGER,
    prev_hash       TEXT,
    hash            TEXT
);
CREATE INDEX IF NOT EXISTS decisions_timestamp ON decisions (timestamp);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;

CREATE TABLE IF NOT EXISTS control_events (
    seq       INTEGER PRIMARY KEY,
    event_id  TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    event     TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS control_events_no_update BEFORE UPDATE ON control_events
BEGIN SELECT RAISE(ABORT, 'the control-plane audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS control_events_no_delete BEFORE DELETE ON control_events
BEGIN SELECT RAISE(ABORT, 'the control-plane audit trail is append-only'); END;

CREATE TABLE IF NOT EXISTS audit_digests (
    digest_seq INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    body       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    signature  TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_digests_no_update BEFORE UPDATE ON audit_digests
BEGIN SELECT RAISE(ABORT, 'audit digests are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_digests_no_delete BEFORE DELETE ON audit_digests
BEGIN SELECT RAISE(ABORT, 'audit digests are append-only'); END;

-- Which decision holds each agent's idempotency key, until when (Unix
-- seconds). A claim moves to a newer decision when it has expired or when a
-- repeat is decided afresh, so this table, unlike the log, is updated.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    agent_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, key)
) WITHOUT ROWID;

-- The counters of rate limits, runs and budgets (see `limits`): calls,
-- cost in micro-dollars and tokens per key and window; a run's row also
-- holds when it started and whose it is. Moved in the same transaction as
-- the decision that charges them; rows past `expires_at` are pruned.
CREATE TABLE IF NOT EXISTS limit_counters (
    key          TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    calls        INTEGER NOT NULL DEFAULT 0,
    cost_micros  INTEGER NOT NULL DEFAULT 0,
    tokens       INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER,
    user_id      TEXT,
    organization TEXT,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
) WITHOUT ROWID;

-- The kill switch: agents (or one version, `version`) disabled now. The
-- history is the control chain; a row goes when its agent is enabled.
CREATE TABLE IF NOT EXISTS agent_switches (
    switch_key  TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    version     TEXT,
    disabled_by TEXT NOT NULL,
    reason      TEXT NOT NULL,
    disabled_at TEXT NOT NULL
) WITHOUT ROWID;

-- The MCP gateway's exactly-once keys: which attempt carries out a call
-- of a tool that declares `idempotency`, and the result its duplicates get
-- until `expires_at` (Unix seconds). A claim that was never completed
-- lapses at its lease's end.
CREATE TABLE IF NOT EXISTS executions (
    key         TEXT PRIMARY KEY,
    attempt     TEXT NOT NULL,
    decision_id TEXT,
    result      TEXT,
    claimed_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    decision_id TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    request     TEXT NOT NULL
);

-- Policy change requests. A row moves out of `pending` once, by a
-- conditional update in the transaction that appends its control event;
-- the history is the control chain.
CREATE TABLE IF NOT EXISTS policy_changes (
    change_id TEXT PRIMARY KEY,
    status    TEXT NOT NULL,
    change    TEXT NOT NULL
);

-- Settings of the control plane the data directory belongs to
-- (`environment`), fixed when it first serves.
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;
