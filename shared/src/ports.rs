//! The ports the domain talks through. Adapters implement them: SQLite for
//! `govctl serve` (see [`crate::adapters::sqlite`]), AWS services for the
//! Lambda functions. The handlers never see a concrete client.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::limits::{Charge, Charged, Counter};
use crate::metrics::MetricDatum;
use crate::model::{ApprovalStatus, DecisionRecord};
use crate::policy::PolicyBundle;

/// A store could not do what was asked. Callers deny on any of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing store refused or failed the operation.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The named item does not exist.
    #[error("`{0}` does not exist")]
    NotFound(String),
    /// An id prefix matches more than one version or change.
    #[error(
        "`{prefix}` matches more than one: {}; give more characters",
        matches.join(", ")
    )]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// Some of the ids it matches (at most [`LISTED_MATCHES`]).
        matches: Vec<String>,
    },
    /// An id prefix is too short to name one version or change for long.
    #[error("`{0}` is too short: give at least {MIN_ID_PREFIX} characters of the id")]
    TooShort(String),
}

/// The fewest characters of a version or change id that name it.
pub const MIN_ID_PREFIX: usize = 6;

/// How many matches an ambiguous prefix lists.
pub const LISTED_MATCHES: usize = 5;

/// The lowercase form of an id prefix, or why it cannot name anything:
/// ids are hexadecimal (decision ids, UUIDs, with hyphens), and a prefix
/// has at least [`MIN_ID_PREFIX`] characters.
pub fn id_prefix(id: &str) -> Result<String, StoreError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    if id.len() < MIN_ID_PREFIX {
        return Err(StoreError::TooShort(id.to_owned()));
    }
    Ok(id.to_ascii_lowercase())
}

/// The one item `matches` holds for `prefix` (a store lists up to
/// [`LISTED_MATCHES`] of them), or why there is not exactly one.
pub fn one_match<T>(
    prefix: &str,
    mut matches: Vec<T>,
    id_of: impl Fn(&T) -> &str,
) -> Result<T, StoreError> {
    match matches.len() {
        0 => Err(StoreError::NotFound(prefix.to_owned())),
        1 => Ok(matches.swap_remove(0)),
        _ => Err(StoreError::Ambiguous {
            prefix: prefix.to_owned(),
            matches: matches
                .iter()
                .take(LISTED_MATCHES)
                .map(|m| id_of(m).to_owned())
                .collect(),
        }),
    }
}

/// Metadata of one immutable policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// Content-addressed id: SHA-256 of the content hash, parent and metadata.
    pub id: String,
    /// SHA-256 of the bundle's files.
    pub content_hash: String,
    /// The version this one was published on top of.
    pub parent: Option<String>,
    /// Who published it.
    pub author: String,
    /// Why.
    pub message: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// The active pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePolicy {
    /// The active version.
    pub version_id: String,
    /// Who activated it.
    pub activated_by: String,
    /// When (RFC 3339).
    pub activated_at: String,
}

/// What a publisher says about a new version.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The files.
    pub bundle: PolicyBundle,
    /// Who publishes.
    pub author: String,
    /// Why.
    pub message: String,
    /// When.
    pub at: OffsetDateTime,
}

/// Immutable, content-addressed policy versions and the active pointer.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Stores a new version on top of the active one. Versions never change afterwards.
    async fn publish(&self, request: PublishRequest) -> Result<PolicyVersion, StoreError>;
    /// A version and its files, by full id or unique prefix.
    async fn version(&self, id: &str) -> Result<(PolicyVersion, PolicyBundle), StoreError>;
    /// Every version, newest first.
    async fn versions(&self) -> Result<Vec<PolicyVersion>, StoreError>;
    /// The active pointer, if any version was ever activated.
    async fn active(&self) -> Result<Option<ActivePolicy>, StoreError>;
    /// The active pointer and the kill switch's disablements, read
    /// together (one request where the store allows): what a host re-reads
    /// to stay current.
    async fn active_state(
        &self,
    ) -> Result<(Option<ActivePolicy>, crate::killswitch::KillSwitch), StoreError>;
    /// Points the active pointer at a stored version (publish or rollback).
    async fn activate(
        &self,
        id: &str,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<ActivePolicy, StoreError>;
}

/// How long an idempotency key holds its decision, counted from the
/// decision's timestamp. Past it the key is free again: a repeat is decided
/// afresh and claims the key for its own decision.
pub const IDEMPOTENCY_KEY_TTL_SECONDS: i64 = 24 * 60 * 60;

/// Whether an append stored the record or found an earlier one with the same
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The record is durable.
    Stored,
    /// An earlier record of this agent holds the idempotency key, and its
    /// claim is still live (or, for a takeover, is no longer the one named).
    DuplicateKey,
    /// The limit charge `index` refused: its counter (as `current` shows)
    /// is used up. Nothing was written.
    OverLimit {
        /// Which charge.
        index: usize,
        /// Its counter, as the store held it.
        current: Option<Counter>,
    },
}

/// The Unix time of a record's timestamp and the end of the idempotency
/// claim it makes, the two figures a store compares claims by. The record's
/// own time is used, not the store's clock, so that a claim expires at the
/// same instant on every host.
pub fn key_claim_times(record: &DecisionRecord) -> Result<(i64, i64), StoreError> {
    let at = time::OffsetDateTime::parse(
        &record.timestamp,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| StoreError::Corrupt(format!("record timestamp `{}`: {e}", record.timestamp)))?
    .unix_timestamp();
    Ok((at, at.saturating_add(IDEMPOTENCY_KEY_TTL_SECONDS)))
}

/// The durable decision log. `append` returns only once the record is durable.
#[async_trait]
pub trait DecisionLog: Send + Sync {
    /// Durably appends one record and applies the limit `charges` its
    /// decision makes, in one atomic write. A record with an idempotency
    /// key claims the key in the same write: with `supersedes` empty, only
    /// if no other record of the agent holds a live claim on it (see
    /// [`IDEMPOTENCY_KEY_TTL_SECONDS`]); otherwise by taking it over from
    /// the decision `supersedes` names (a repeat decided afresh because the
    /// policy changed, or its outcome did), only if that one still holds it.
    /// When the claim fails nothing is written and the answer is
    /// [`Appended::DuplicateKey`]; when a charge is refused, nothing is
    /// written and the answer is [`Appended::OverLimit`].
    async fn append_charged(
        &self,
        record: &DecisionRecord,
        supersedes: Option<&str>,
        charges: &[Charge],
    ) -> Result<Appended, StoreError>;
    /// Durably appends one record, claiming its idempotency key if it has
    /// one (see [`DecisionLog::append_charged`]).
    async fn append(&self, record: &DecisionRecord) -> Result<Appended, StoreError> {
        self.append_charged(record, None, &[]).await
    }
    /// Durably appends a record that takes the agent's idempotency key over
    /// from the decision `previous` (see [`DecisionLog::append_charged`]).
    async fn append_superseding(
        &self,
        record: &DecisionRecord,
        previous: &str,
    ) -> Result<Appended, StoreError> {
        self.append_charged(record, Some(previous), &[]).await
    }
    /// One record by id.
    async fn get(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError>;
    /// The record an agent made with an idempotency key.
    async fn by_idempotency_key(
        &self,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<DecisionRecord>, StoreError>;
}

/// The counters of rate limits, runs and budgets (see [`crate::limits`]).
/// Decisions move them through [`DecisionLog::append_charged`]; usage
/// reports and reads come through here.
#[async_trait]
pub trait Counters: Send + Sync {
    /// One counter, if it exists.
    async fn counter(&self, key: &str, window_start: i64) -> Result<Option<Counter>, StoreError>;
    /// Several counters, in the order of `keys` (key, window start).
    async fn counters(&self, keys: &[(String, i64)]) -> Result<Vec<Option<Counter>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for (key, window_start) in keys {
            out.push(self.counter(key, *window_start).await?);
        }
        Ok(out)
    }
    /// Applies every charge or none, in one atomic write.
    async fn charge(&self, charges: &[Charge]) -> Result<Charged, StoreError>;
}

/// The kill switch, kept beside the policy versions (see [`crate::killswitch`]).
#[async_trait]
pub trait KillSwitchStore: Send + Sync {
    /// Every disablement in force (also part of [`PolicyStore::active_state`]).
    async fn disabled(&self) -> Result<Vec<crate::killswitch::Disablement>, StoreError>;
    /// Applies `change` and appends its control event (naming the active
    /// policy version) in one atomic write. `false`: nothing to change (an
    /// enable of what was not disabled); nothing was written.
    async fn switch(&self, change: &crate::killswitch::Switch) -> Result<bool, StoreError>;
}

/// The approvals a signed-in approver sees in their inbox.
#[async_trait]
pub trait ApprovalInbox: Send + Sync {
    /// Pending approvals whose approver group is one of `groups`, newest
    /// first, at most `limit`.
    async fn pending_for(
        &self,
        groups: &[String],
        limit: usize,
    ) -> Result<Vec<ApprovalItem>, StoreError>;
    /// The approvals `approver` answered, newest first, at most `limit`.
    async fn answered_by(
        &self,
        approver: &str,
        limit: usize,
    ) -> Result<Vec<ApprovalItem>, StoreError>;
}

/// Change requests for policy versions (see [`crate::changes`]), and the
/// environment the control plane runs in.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// Stores a new `pending` change and its `change_proposed` control event.
    async fn open_change(&self, change: &crate::changes::ChangeRequest) -> Result<(), StoreError>;
    /// A change by full id or unique prefix.
    async fn change(&self, id: &str) -> Result<crate::changes::ChangeRequest, StoreError>;
    /// Every change, newest first.
    async fn changes(&self) -> Result<Vec<crate::changes::ChangeRequest>, StoreError>;
    /// Closes a pending change in one atomic write: with no answer or an
    /// approval, activates its version if the active version is still its
    /// base (else marks it superseded); with a rejection, marks it
    /// rejected. Appends the control events of each step.
    async fn settle_change(
        &self,
        id: &str,
        answer: Option<&crate::changes::ChangeAnswer>,
        at: OffsetDateTime,
    ) -> Result<crate::changes::Settled, StoreError>;
}

/// One exact call: the hash of its agent, user, tool and arguments hash,
/// which approvals of that call are found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey(pub String);

impl CallKey {
    /// The key of `record`'s call.
    pub fn of(record: &DecisionRecord) -> Self {
        Self::new(
            &record.agent_id,
            &record.user_id,
            &record.tool_id,
            &record.arguments_hash,
        )
    }
    /// The key of a call.
    pub fn new(agent_id: &str, user_id: &str, tool_id: &str, arguments_hash: &str) -> Self {
        let mut h = Sha256::new();
        for part in [agent_id, user_id, tool_id, arguments_hash] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        Self(hex::encode(h.finalize()))
    }
}

/// A call waiting for a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The approval's random id: the only thing an approver's link carries.
    pub approval_id: String,
    /// The pending decision, already durable.
    pub decision: DecisionRecord,
    /// Who may approve.
    pub approver_group: Option<String>,
    /// When the request expires (RFC 3339).
    pub expires_at: String,
    /// How long approvers have, from the tool's policy.
    pub timeout_seconds: u64,
    /// The call's arguments, for approvers to see what they approve.
    #[serde(default)]
    pub arguments: serde_json::Value,
    /// The tool's category (`transfer`, `delete`, …), for approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_category: Option<crate::model::Category>,
    /// The tool's risk, for approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_risk: Option<crate::model::Risk>,
}

/// Starts human approval of a pending call.
#[async_trait]
pub trait ApprovalWorkflow: Send + Sync {
    /// Starts the workflow for `request.approval_id`.
    async fn start(&self, request: &ApprovalRequest) -> Result<(), StoreError>;
}

/// A Step Functions task token. It completes a waiting workflow step, so it
/// is a secret: it never appears in logs, links or messages.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskToken(pub String);

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskToken(<redacted>)")
    }
}

/// One approval as the approval store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalItem {
    /// What was asked.
    pub request: ApprovalRequest,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Who decided.
    pub approver: Option<String>,
    /// The approver's comment.
    pub comment: Option<String>,
    /// When it was decided (RFC 3339).
    pub decided_at: Option<String>,
    /// The token of the waiting workflow step, once approvers were notified.
    pub task_token: Option<TaskToken>,
    /// When the approved call's grant was used.
    pub grant_used_at: Option<String>,
}

/// A human's answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanDecision {
    /// `Approved` or `Rejected`.
    pub status: ApprovalStatus,
    /// Who decided.
    pub approver: String,
    /// Why, optionally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When (RFC 3339).
    pub decided_at: String,
}

/// What recording a human's answer found.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// This answer is the decision; the workflow step waits on this token.
    Recorded(TaskToken),
    /// The approval was already closed (or is past its expiry); a second
    /// click sees the outcome.
    AlreadyClosed(ApprovalStatus),
    /// The workflow is not waiting for approvers yet.
    NotReady,
    /// No such approval.
    NotFound,
}

impl Decided {
    /// Why an answer given at `decided_at` was not recorded, from the
    /// approval as the store holds it (the same on every store).
    pub fn refused(item: Option<&ApprovalItem>, decided_at: &str) -> Self {
        match item {
            None => Decided::NotFound,
            Some(i) if i.status != ApprovalStatus::Pending => Decided::AlreadyClosed(i.status),
            // Past its expiry, a pending approval is as good as expired: the
            // workflow is about to record it so.
            Some(i) if i.request.expires_at.as_str() <= decided_at => {
                Decided::AlreadyClosed(ApprovalStatus::Expired)
            }
            Some(_) => Decided::NotReady,
        }
    }
}

/// What settling an approval found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The approval moved to the new status, and its record was appended, in one write.
    Recorded,
    /// The approval is in another status (which may be the new one, when a
    /// retried step settled it before); nothing was written.
    Held(ApprovalStatus),
    /// No such approval.
    NotFound,
}

/// The SHA-256 (hex) of an approver link's review id. Only the message to
/// approvers carries the review id itself; the agent, which knows the
/// approval id, never learns it, and the store keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewKey(pub String);

impl ReviewKey {
    /// The key of a review id.
    pub fn of(review_id: &str) -> Self {
        Self(hex::encode(Sha256::digest(review_id.as_bytes())))
    }
}

/// Pending approvals and their outcomes. Every state change is one
/// conditional write, so an approval is decided exactly once.
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Records a new pending approval; recording the same one again is a no-op.
    async fn record_pending(&self, request: &ApprovalRequest) -> Result<(), StoreError>;
    /// Keeps the token of the step that waits for approvers, and the key of
    /// the review id their link carries, while the approval is pending.
    async fn attach_token(
        &self,
        approval_id: &str,
        token: &TaskToken,
        review: &ReviewKey,
    ) -> Result<ApprovalItem, StoreError>;
    /// One approval, if it exists.
    async fn get(&self, approval_id: &str) -> Result<Option<ApprovalItem>, StoreError>;
    /// The approval an approver link's review id opens, if any.
    async fn find_by_review(&self, review: &ReviewKey) -> Result<Option<ApprovalItem>, StoreError>;
    /// The newest approval of exactly the call `call` names that is still
    /// open: pending, approved, or granted with its grant unused (whether
    /// it has expired is the caller's to check). The MCP gateway finds an
    /// approval this way, since its clients repeat a call rather than name
    /// the approval.
    async fn open_for_call(&self, call: &CallKey) -> Result<Option<ApprovalItem>, StoreError>;
    /// Records a human's answer if the approval is still pending.
    async fn decide(
        &self,
        approval_id: &str,
        answer: &HumanDecision,
    ) -> Result<Decided, StoreError>;
    /// Closes a still-pending approval as expired or failed; a decided one is left as it is.
    async fn close(&self, approval_id: &str, status: ApprovalStatus) -> Result<(), StoreError>;
    /// Moves an approval whose status is one of `from` to `to` and appends
    /// `record`, the outcome that says so, in one atomic write: the status
    /// and the decision log never disagree. `Granted` is written only this
    /// way, so a grant is usable only once its `approval_granted` record is
    /// durable.
    async fn settle(
        &self,
        approval_id: &str,
        from: &[ApprovalStatus],
        to: ApprovalStatus,
        record: &DecisionRecord,
    ) -> Result<Settled, StoreError>;
    /// Replaces the token of the step that waits for approvers of a pending
    /// approval (a wait resumed after a restart); its review link stays.
    async fn reattach_token(
        &self,
        approval_id: &str,
        token: &TaskToken,
    ) -> Result<ApprovalItem, StoreError>;
    /// Uses an approval's single-use grant for `record`'s call, appends
    /// `record` and applies the limit `charges` of the allowed call, in one
    /// atomic write, if the approval is granted, unused, decided after
    /// `decided_after`, and bound to `record`'s agent, user, tool, arguments
    /// hash and policy version, and if every charge is admitted.
    async fn use_grant(
        &self,
        approval_id: &str,
        record: &DecisionRecord,
        decided_after: &str,
        charges: &[Charge],
    ) -> Result<GrantUse, StoreError>;
}

/// What using a grant came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantUse {
    /// The grant is used and the allow is durable.
    Used,
    /// The approval does not fit (or its grant is gone); nothing was written.
    Unusable,
    /// The limit charge `index` refused; nothing was written, and the grant
    /// stays usable until it expires.
    OverLimit {
        /// Which charge.
        index: usize,
        /// Its counter, as the store held it.
        current: Option<Counter>,
    },
}

/// Completing a waiting workflow step failed.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The step is no longer waiting (timed out, or already completed).
    #[error("the approval step is no longer waiting")]
    NotWaiting,
    /// The workflow service failed.
    #[error("the workflow service is unavailable: {0}")]
    Unavailable(String),
}

/// Completes a workflow step that waits for a task token.
#[async_trait]
pub trait TaskCallbacks: Send + Sync {
    /// Resumes the step with `output`.
    async fn succeed(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), CallbackError>;
    /// Fails the step with a stable error name and a cause.
    async fn fail(&self, token: &TaskToken, error: &str, cause: &str) -> Result<(), CallbackError>;
}

/// The archive of the audit trail where the log itself is not chained (on
/// AWS: chain heads in DynamoDB, segments of chained records in an S3 bucket
/// under Object Lock). See [`crate::audit::archive`].
#[async_trait]
pub trait AuditArchive: Send + Sync {
    /// The head (position, link) of a chain; none before its first record.
    async fn head(&self, partition: &str) -> Result<Option<(u64, String)>, StoreError>;
    /// The heads of several chains, by partition; chains without a record are left out.
    async fn heads(
        &self,
        partitions: &[String],
    ) -> Result<std::collections::BTreeMap<String, (u64, String)>, StoreError> {
        let mut found = std::collections::BTreeMap::new();
        for p in partitions {
            if let Some(head) = self.head(p).await? {
                found.insert(p.clone(), head);
            }
        }
        Ok(found)
    }
    /// Which of the records `ids` are already chained (by an earlier delivery).
    async fn chained(&self, ids: &[String]) -> Result<Vec<String>, StoreError>;
    /// Stores an immutable object under `key`, never replacing one: `false`
    /// when the key is already taken.
    async fn put_segment(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError>;
    /// Moves a chain's head from `from` (none: the chain is new) to `to` and
    /// marks the records `ids` as chained, in one transaction.
    async fn advance(
        &self,
        partition: &str,
        from: Option<u64>,
        to: (u64, &str),
        ids: &[String],
    ) -> Result<Advance, StoreError>;
}

/// What [`AuditArchive::advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The head moved; the records are marked chained.
    Moved,
    /// Another writer moved the head first; nothing changed.
    Raced,
    /// Nothing changed: these records (by id) were chained before, by an
    /// earlier delivery of the same stream records.
    AlreadyChained(Vec<String>),
}

/// Where metric data points go (CloudWatch on AWS).
#[async_trait]
pub trait MetricSink: Send + Sync {
    /// Publishes the data points; the sink batches them.
    async fn put(&self, datums: &[MetricDatum]) -> Result<(), StoreError>;
}

/// A message to people (approvers, on-call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Short subject line.
    pub subject: String,
    /// Body text. Never holds secrets or task tokens.
    pub body: String,
}

/// Sends notifications.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one notification.
    async fn notify(&self, notification: &Notification) -> Result<(), StoreError>;
}

/// Decision metrics: denials, risky attempts, latency.
pub trait Metrics: Send + Sync {
    /// Counts one recorded decision. Must not block.
    fn record_decision(&self, record: &DecisionRecord);
}

/// The time.
pub trait Clock: Send + Sync {
    /// Now, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// Why an upstream MCP server gave no answer. Whether a forwarded call ran
/// upstream is then unknown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The server could not be reached or spoke no MCP.
    #[error("the upstream server is unavailable: {0}")]
    Unavailable(String),
    /// The server did not answer in time.
    #[error("the upstream server did not answer within {0} s")]
    Timeout(u64),
    /// The server answered with a JSON-RPC error.
    #[error("the upstream server answered with error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i32,
        /// Its message.
        message: String,
        /// Its data, passed on to the client as it came.
        data: Option<serde_json::Value>,
    },
    /// This host cannot use the endpoint (a stdio command on AWS Lambda) or
    /// its credential is missing.
    #[error("{0}")]
    Unusable(String),
}

/// Where a forwarded call's progress notifications go: progress, total and
/// message, as the upstream server sent them.
pub type ProgressSink = std::sync::Arc<dyn Fn(f64, Option<f64>, Option<String>) + Send + Sync>;

/// The agent's client, as an upstream server reaches it through the
/// gateway: the notifications and requests a server sends its client
/// (`notifications/message`, `sampling/createMessage`, `elicitation/create`,
/// `roots/list`, …) are passed on to it unchanged.
#[async_trait]
pub trait ClientRelay: Send + Sync {
    /// Passes a notification on.
    async fn notify(&self, method: &str, params: serde_json::Value);
    /// Passes a request on and returns the client's result.
    async fn request(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, UpstreamError>;
}

/// What one forwarded request carries besides its own parameters.
#[derive(Clone, Default)]
pub struct CallContext {
    /// Where the call's progress notifications go, if the client asked.
    pub progress: Option<ProgressSink>,
    /// Where the server's requests during the call go (sampling,
    /// elicitation, roots), when the client can answer them.
    pub client: Option<std::sync::Arc<dyn ClientRelay>>,
    /// `_meta` entries of the client's request that the server must see as
    /// the client's own: from 2026-07-28 on a client declares its
    /// capabilities in every request, and a server asks only for what they
    /// allow.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// A repeated call's answers to the server's input requests (SEP-2322).
    pub input_responses: Option<serde_json::Value>,
    /// The state the server handed out with those requests, echoed as it came.
    pub request_state: Option<String>,
}

/// A client session of a revision before 2026-07-28, which the gateway
/// keeps open (`initialize` and `Mcp-Session-Id`): its upstream servers get
/// connections of their own that speak the client's revision, declare its
/// capabilities, and relay what the servers send to it.
#[derive(Clone)]
pub struct ClientSession {
    /// The client's `initialize` parameters (revision, capabilities, info).
    pub initialize: serde_json::Value,
    /// Where the servers' notifications and requests not tied to a call go.
    pub relay: std::sync::Arc<dyn ClientRelay>,
}

/// One upstream MCP server, connected. Requests and results are the
/// protocol's JSON objects, so that the domain does not depend on an SDK.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// Every tool the server offers (all pages): MCP `Tool` objects.
    async fn list_tools(&self) -> Result<Vec<serde_json::Value>, UpstreamError>;
    /// Calls the tool `name` and returns its MCP `CallToolResult`, or the
    /// `InputRequiredResult` of a server that needs the client's input first
    /// (SEP-2322); the server's messages during the call go where `context`
    /// says.
    async fn call_tool(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        context: CallContext,
    ) -> Result<serde_json::Value, UpstreamError>;
    /// Sends any other request (`resources/read`, `prompts/get`, …) and
    /// returns its result; `meta` as in [`CallContext::meta`].
    async fn request(
        &self,
        method: &str,
        params: serde_json::Value,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, UpstreamError>;
}

/// The connections to upstream servers, made on first use and kept.
#[async_trait]
pub trait Upstreams: Send + Sync {
    /// The connection to `server` at `endpoint` (the one of the environment
    /// the control plane runs in), with the server's configured credential.
    async fn connect(
        &self,
        server: &crate::model::ServerSpec,
        endpoint: &crate::model::Endpoint,
    ) -> Result<std::sync::Arc<dyn Upstream>, UpstreamError>;

    /// Connections that belong to one client session, closed with it; none
    /// where this host shares its connections among all clients.
    fn session(&self, _client: ClientSession) -> Option<std::sync::Arc<dyn Upstreams>> {
        None
    }
}

/// The secrets the gateway presents to upstream servers, from the host's
/// configuration (never from an agent).
#[async_trait]
pub trait Secrets: Send + Sync {
    /// The secret named `name`, or why there is none.
    async fn secret(&self, name: &str) -> Result<String, UpstreamError>;
}

/// Who holds an exactly-once key (see [`ExecutionLedger`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    /// Another attempt is carrying the call out now, since this Unix time.
    Running {
        /// When it claimed the key.
        since: i64,
    },
    /// The call was carried out under `decision_id`; `result` is what its
    /// agent got (filtered).
    Done {
        /// The allow it carried out.
        decision_id: String,
        /// The result, as the agent saw it.
        result: serde_json::Value,
    },
}

/// What claiming an exactly-once key came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    /// This attempt holds the key: it may carry the call out.
    Yours,
    /// Another attempt holds it.
    Held(Held),
}

/// The exactly-once keys of the gateway's tools that declare `idempotency`:
/// one conditional write decides which of any number of concurrent
/// duplicates carries a call out.
#[async_trait]
pub trait ExecutionLedger: Send + Sync {
    /// Claims `key` for `attempt`, unless an unexpired claim holds it (at
    /// Unix time `now`). A claim that is never completed lapses at
    /// `lease_until`.
    async fn claim(
        &self,
        key: &str,
        attempt: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claimed, StoreError>;
    /// `attempt` carried the call out under `decision_id`: duplicates get
    /// `result` until `until`.
    async fn complete(
        &self,
        key: &str,
        attempt: &str,
        decision_id: &str,
        result: &serde_json::Value,
        until: i64,
    ) -> Result<(), StoreError>;
    /// `attempt` gives the key up: it was not allowed, or never reached the
    /// server, so a later call may carry the call out.
    async fn release(&self, key: &str, attempt: &str) -> Result<(), StoreError>;
}

/// The id of a version: it commits to the content and to the history.
pub fn version_id(
    content_hash: &str,
    parent: Option<&str>,
    author: &str,
    message: &str,
    created_at: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        content_hash,
        parent.unwrap_or(""),
        author,
        message,
        created_at,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers, computed outside this code base (Python's hashlib)
    /// from the formula the README documents.
    #[test]
    fn version_ids_match_known_answers() {
        assert_eq!(
            version_id(
                "sha256:abc",
                None,
                "alice",
                "first",
                "2026-01-07T12:00:00.000Z"
            ),
            "38c515a2d08f1b977ddf1d5b2f9b709f200e8455f516fb2f88e97157fb5db618"
        );
        assert_eq!(
            version_id(
                "sha256:def",
                Some("v1parent"),
                "bob",
                "second",
                "2026-01-08T12:00:00.000Z"
            ),
            "c17b1aba5d9b7434ecc015d7d5827f3dbd324f22268d865e69523c8e33509cfd"
        );
    }

    #[test]
    fn an_id_prefix_is_long_enough_or_says_so() {
        assert_eq!(id_prefix("ABCDEF12").unwrap(), "abcdef12");
        assert_eq!(
            id_prefix("0190a0b0-0000").unwrap(),
            "0190a0b0-0000",
            "decision ids carry hyphens"
        );
        let short = id_prefix("abc").unwrap_err();
        assert!(matches!(short, StoreError::TooShort(_)));
        assert_eq!(
            short.to_string(),
            "`abc` is too short: give at least 6 characters of the id"
        );
        assert!(matches!(
            id_prefix("v1-final"),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(id_prefix(""), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn an_ambiguous_prefix_lists_what_it_matches() {
        let ids = vec!["abcdef01".to_owned(), "abcdef02".to_owned()];
        let err = one_match("abcdef", ids, String::as_str).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`abcdef` matches more than one: abcdef01, abcdef02; give more characters"
        );
        let one = one_match("abcdef", vec!["abcdef01".to_owned()], String::as_str).unwrap();
        assert_eq!(one, "abcdef01");
        assert!(matches!(
            one_match("abcdef", Vec::<String>::new(), String::as_str),
            Err(StoreError::NotFound(_))
        ));
    }
}
