//! Reviewed policy changes (change management).
//!
//! `propose` publishes a bundle as a new version without activating it and
//! opens a change request with the diff's risk class (see
//! [`crate::policy::change_risk`]). Where the environment reviews changes
//! (the active version's `change_review`, by default `prod`), a high-risk
//! change waits until a member of the reviewers group who is not its author
//! approves it; a low-risk one, or any change elsewhere, activates at once.
//! Proposal, approval, rejection and activation are control events in the
//! audit chain, written in the same transaction as the state they record.
//!
//! The rules that apply are the active version's, never the proposed one's:
//! a change cannot exempt itself from review.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::model::{ChangeReviewSpec, Environment, UserContext};
use crate::policy::change_risk::{classify, ChangeRisk, RiskClass};
use crate::policy::{compile, CompiledPolicies, Diagnostic};
use crate::ports::{ChangeStore, PolicyStore, PublishRequest, StoreError};

/// Where a change request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// Waiting for a reviewer.
    Pending,
    /// Its version is (or was) activated.
    Activated,
    /// A reviewer rejected it.
    Rejected,
    /// Another version was activated since it was proposed: its diff no
    /// longer describes what activating it would change. Propose it again.
    Superseded,
}

impl ChangeStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Pending => "pending",
            ChangeStatus::Activated => "activated",
            ChangeStatus::Rejected => "rejected",
            ChangeStatus::Superseded => "superseded",
        }
    }

    /// The status a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ChangeStatus::Pending,
            ChangeStatus::Activated,
            ChangeStatus::Rejected,
            ChangeStatus::Superseded,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// One proposed policy change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// Unique random id (UUIDv4 as 32 hex digits), so that a short prefix names it.
    pub change_id: String,
    /// The published, not yet active, version.
    pub version_id: String,
    /// The version active when it was proposed: what the diff and the risk
    /// class compare against.
    pub base_version: Option<String>,
    /// Who proposed it.
    pub author: String,
    /// Why.
    pub message: String,
    /// The risk class and its reasons.
    pub risk: ChangeRisk,
    /// The environment of the control plane it was proposed to.
    pub environment: Environment,
    /// Whether a reviewer had to approve it (high risk where review is required).
    pub review_required: bool,
    /// The group whose members review it.
    pub reviewers_group: String,
    /// Where it is.
    pub status: ChangeStatus,
    /// When it was proposed (RFC 3339).
    pub proposed_at: String,
    /// Who approved or rejected it (absent: activated on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    /// The reviewer's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it left `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
}

/// A reviewer's answer.
#[derive(Debug, Clone)]
pub struct ChangeAnswer {
    /// Approve (activate) or reject.
    pub approve: bool,
    /// The verified reviewer.
    pub reviewer: String,
    /// Why.
    pub comment: Option<String>,
    /// When.
    pub at: OffsetDateTime,
}

/// What a store did with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Recorded; the change is now in this state.
    Done(Box<ChangeRequest>),
    /// It had already left `pending`.
    AlreadyClosed(ChangeStatus),
    /// Another version became active since it was proposed; it is now
    /// `superseded`, and nothing was activated.
    Superseded,
}

/// Why a change cannot be proposed or answered.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The bundle does not compile.
    #[error("the policy directory is invalid:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// The active version does not compile with this build: nothing to compare against.
    #[error("the active version {0} cannot be compiled to compare against: {1}")]
    ActiveUnreadable(String, String),
    /// The reviewer is not in the reviewers group.
    #[error("only members of `{0}` review policy changes")]
    NotAReviewer(String),
    /// The reviewer proposed the change.
    #[error("`{0}` proposed this change; another member of the reviewers group must review it")]
    OwnChange(String),
    /// A low-risk change, or one outside review: nothing to review.
    #[error("change {0} needs no review")]
    NoReviewNeeded(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The review settings in force in `environment`: the active version's.
pub fn review_settings(
    active: Option<&CompiledPolicies>,
    environment: Environment,
) -> (bool, ChangeReviewSpec) {
    let spec = active
        .map(|c| c.registry.change_review())
        .unwrap_or_default();
    (spec.environments.contains(&environment), spec)
}

/// Compiles the active version, if any.
pub async fn active_compiled(
    store: &dyn PolicyStore,
) -> Result<Option<(String, CompiledPolicies)>, ChangeError> {
    let Some(active) = store.active().await? else {
        return Ok(None);
    };
    let (_, bundle) = store.version(&active.version_id).await?;
    let compiled = compile(&bundle).map_err(|d| {
        ChangeError::ActiveUnreadable(
            active.version_id.clone(),
            d.first().map(ToString::to_string).unwrap_or_default(),
        )
    })?;
    Ok(Some((active.version_id, compiled)))
}

/// Whether direct `publish`/`activate` is refused on this control plane:
/// its environment reviews changes and a version is active (the first
/// version of a new control plane is its bootstrap).
pub async fn direct_activation_refused(
    store: &dyn PolicyStore,
    environment: Environment,
) -> Result<Option<ChangeReviewSpec>, ChangeError> {
    let Some((_, active)) = active_compiled(store).await? else {
        return Ok(None);
    };
    let (required, spec) = review_settings(Some(&active), environment);
    Ok(required.then_some(spec))
}

/// Publishes `bundle` as a new version and opens its change request; a
/// change that needs no review is activated in the same step.
pub async fn propose<S>(
    store: &S,
    environment: Environment,
    request: PublishRequest,
) -> Result<ChangeRequest, ChangeError>
where
    S: PolicyStore + ChangeStore,
{
    let new = compile(&request.bundle).map_err(ChangeError::Invalid)?;
    let (author, message, at) = (request.author.clone(), request.message.clone(), request.at);
    let version = store.publish(request).await?;
    open(store, environment, &version.id, &new, author, message, at).await
}

/// Opens a change request that activates the stored version `version_id`
/// (a rollback or roll-forward where changes are reviewed).
pub async fn propose_activation<S>(
    store: &S,
    environment: Environment,
    version_id: &str,
    author: String,
    message: String,
    at: OffsetDateTime,
) -> Result<ChangeRequest, ChangeError>
where
    S: PolicyStore + ChangeStore,
{
    let (version, bundle) = store.version(version_id).await?;
    let new = compile(&bundle).map_err(ChangeError::Invalid)?;
    open(store, environment, &version.id, &new, author, message, at).await
}

async fn open<S>(
    store: &S,
    environment: Environment,
    version_id: &str,
    new: &CompiledPolicies,
    author: String,
    message: String,
    at: OffsetDateTime,
) -> Result<ChangeRequest, ChangeError>
where
    S: PolicyStore + ChangeStore,
{
    let active = active_compiled(store).await?;
    let risk = classify(active.as_ref().map(|(_, c)| c), new);
    let (required, spec) = review_settings(active.as_ref().map(|(_, c)| c), environment);
    let review_required = required && risk.class == RiskClass::High;
    let change = ChangeRequest {
        change_id: uuid::Uuid::new_v4().simple().to_string(),
        version_id: version_id.to_owned(),
        base_version: active.map(|(id, _)| id),
        author,
        message,
        risk,
        environment,
        review_required,
        reviewers_group: spec.reviewers_group,
        status: ChangeStatus::Pending,
        proposed_at: rfc3339(at),
        reviewed_by: None,
        comment: None,
        decided_at: None,
    };
    store.open_change(&change).await?;
    if review_required {
        return Ok(change);
    }
    match store.settle_change(&change.change_id, None, at).await? {
        Settled::Done(c) => Ok(*c),
        Settled::AlreadyClosed(s) => Err(StoreError::Corrupt(format!(
            "change {} was {} before it could activate",
            change.change_id,
            s.as_str()
        ))
        .into()),
        Settled::Superseded => Ok(ChangeRequest {
            status: ChangeStatus::Superseded,
            ..change
        }),
    }
}

/// Records a reviewer's answer to a change: approval activates it.
pub async fn answer(
    store: &dyn ChangeStore,
    change: &ChangeRequest,
    reviewer: &UserContext,
    approve: bool,
    comment: Option<String>,
    at: OffsetDateTime,
) -> Result<Settled, ChangeError> {
    if !change.review_required {
        return Err(ChangeError::NoReviewNeeded(change.change_id.clone()));
    }
    if !reviewer.roles.contains(&change.reviewers_group) {
        return Err(ChangeError::NotAReviewer(change.reviewers_group.clone()));
    }
    if reviewer.id == change.author {
        return Err(ChangeError::OwnChange(change.author.clone()));
    }
    let answer = ChangeAnswer {
        approve,
        reviewer: reviewer.id.clone(),
        comment,
        at,
    };
    Ok(store
        .settle_change(&change.change_id, Some(&answer), at)
        .await?)
}
