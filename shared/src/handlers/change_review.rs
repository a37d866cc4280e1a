//! The reviewer's pages for policy changes, beside the call approver's.
//!
//! - `GET /v1/changes/{change_id}`: the change (author, message, risk class
//!   and its reasons, status) with the per-file diff against the version it
//!   was proposed on, and Approve and Reject forms while it waits. It
//!   changes nothing.
//! - `POST /v1/changes/{change_id}/approve|reject`: a reviewer's answer. An
//!   approval activates the version in the same write that records it.
//!
//! Who may answer: a person whose approver token verifies (pasted into the
//! form, or `Authorization: Bearer`), who belongs to the change's reviewers
//! group and did not propose it. The forms carry a CSRF value that must
//! match the page's cookie.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};

use super::pages::{
    answer_form, csrf_ok, csrf_refused, escape, page, who, with_csrf, AnswerForm, MAX_COMMENT,
};
use crate::audit::diff_bundles;
use crate::auth::{ApproverVerifier, Sessions};
use crate::changes::{answer, ChangeError, ChangeRequest, ChangeStatus, Settled};
use crate::ports::{ChangeStore, Clock, PolicyStore, StoreError};

/// What the pages talk to.
#[derive(Clone)]
pub struct ChangeReviewHandler {
    /// The change requests.
    pub changes: Arc<dyn ChangeStore>,
    /// The versions, for the diff.
    pub versions: Arc<dyn PolicyStore>,
    /// Verifies reviewers' tokens; their roles are their groups.
    pub approvers: Arc<dyn ApproverVerifier>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Reviewers' sessions, when they sign in with an OpenID Connect provider.
    pub sessions: Option<Arc<dyn Sessions>>,
}

impl ChangeReviewHandler {
    /// The reviewer's pages.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/changes/{change_id}", get(show))
            .route("/v1/changes/{change_id}/approve", post(approve))
            .route("/v1/changes/{change_id}/reject", post(reject))
            .with_state(self)
    }
}

fn failed(e: &StoreError) -> Response {
    match e {
        StoreError::NotFound(_) | StoreError::Ambiguous { .. } | StoreError::TooShort(_) => page(
            StatusCode::NOT_FOUND,
            "No such change",
            "<p>No policy change has this id.</p>",
        ),
        other => {
            tracing::error!(error = %other, "change store unavailable");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>The change store is unavailable. Nothing was decided; try again.</p>",
            )
        }
    }
}

fn meaning(status: ChangeStatus) -> &'static str {
    match status {
        ChangeStatus::Pending => "waiting for a reviewer",
        ChangeStatus::Activated => "activated",
        ChangeStatus::Rejected => "rejected: not activated",
        ChangeStatus::Superseded => {
            "superseded: another version became active first; propose it again"
        }
    }
}

fn details(c: &ChangeRequest) -> String {
    let row = |k: &str, v: &str| format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    let reasons: String = c
        .risk
        .reasons
        .iter()
        .map(|r| format!("<li>{}</li>", escape(r)))
        .collect();
    [
        "<table>".to_owned(),
        row("Change", &c.change_id),
        row("Proposed by", &c.author),
        row("Message", &c.message),
        row("Proposed", &c.proposed_at),
        row("Environment", c.environment.as_str()),
        row("Version", &c.version_id),
        row(
            "Replaces",
            c.base_version.as_deref().unwrap_or("(no active version)"),
        ),
        row("Risk", c.risk.class.as_str()),
        format!("<tr><th>Why</th><td><ul>{reasons}</ul></td></tr>"),
        row(
            "Review",
            &if c.review_required {
                format!("required, by a member of {}", c.reviewers_group)
            } else {
                "not required".to_owned()
            },
        ),
        row(
            "Status",
            &format!("{} ({})", c.status.as_str(), meaning(c.status)),
        ),
        c.reviewed_by
            .as_deref()
            .map(|r| row("Reviewed by", r))
            .unwrap_or_default(),
        c.comment
            .as_deref()
            .map(|r| row("Comment", r))
            .unwrap_or_default(),
        "</table>".to_owned(),
    ]
    .concat()
}

/// The per-file diff of the change, as preformatted text.
async fn diff(h: &ChangeReviewHandler, c: &ChangeRequest) -> String {
    let new = match h.versions.version(&c.version_id).await {
        Ok((_, b)) => b,
        Err(e) => return format!("<p>The diff is unavailable: {}</p>", escape(&e.to_string())),
    };
    let old = match &c.base_version {
        Some(id) => match h.versions.version(id).await {
            Ok((_, b)) => Some(b),
            Err(e) => return format!("<p>The diff is unavailable: {}</p>", escape(&e.to_string())),
        },
        None => None,
    };
    diff_bundles(old.as_ref(), &new)
        .iter()
        .map(|f| {
            let summary: String = f
                .summary
                .iter()
                .map(|s| format!("<li>{}</li>", escape(s)))
                .collect();
            format!(
                "<h2>{} ({})</h2><ul>{summary}</ul><pre>{}</pre>",
                escape(&f.file),
                escape(&f.change),
                escape(&f.diff)
            )
        })
        .collect()
}

async fn show(
    State(h): State<ChangeReviewHandler>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let change = match h.changes.change(&id).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let title = "Activate this policy change?";
    let body = details(&change) + &diff(&h, &change).await;
    if change.status != ChangeStatus::Pending || !change.review_required {
        return page(StatusCode::OK, title, &body);
    }
    with_csrf(
        title,
        |csrf| {
            let form =
                |verb: &str, label: &str| answer_form(&change.change_id, verb, label, csrf, true);
            body + &form("approve", "Approve and activate") + &form("reject", "Reject")
        },
        "/v1/changes/",
        &headers,
    )
}

async fn approve(
    State(h): State<ChangeReviewHandler>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&id, true, &headers, form).await
}

async fn reject(
    State(h): State<ChangeReviewHandler>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&id, false, &headers, form).await
}

impl ChangeReviewHandler {
    async fn answer(
        &self,
        id: &str,
        approve: bool,
        headers: &HeaderMap,
        form: AnswerForm,
    ) -> Response {
        if !csrf_ok(headers, &form.csrf) {
            return csrf_refused();
        }
        let change = match self.changes.change(id).await {
            Ok(c) => c,
            Err(e) => return failed(&e),
        };
        let reviewer = match who(
            self.approvers.as_ref(),
            self.sessions.as_deref(),
            form.approver_token.as_deref(),
            headers,
            &format!("/v1/changes/{}", change.change_id),
        )
        .await
        {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let comment = form
            .comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
            return page(
                StatusCode::BAD_REQUEST,
                "Comment too long",
                "<p>Comments are at most 1024 characters.</p>",
            );
        }
        let settled = answer(
            self.changes.as_ref(),
            &change,
            &reviewer,
            approve,
            comment,
            self.clock.now(),
        )
        .await;
        let (status, title, text) = match settled {
            Ok(Settled::Done(c)) => {
                tracing::info!(change_id = %c.change_id, reviewer = %reviewer.id, status = c.status.as_str(), "policy change reviewed");
                return page(
                    StatusCode::OK,
                    if c.status == ChangeStatus::Activated {
                        "Approved and activated"
                    } else {
                        "Rejected"
                    },
                    &details(&c),
                );
            }
            Ok(Settled::AlreadyClosed(s)) => (
                StatusCode::CONFLICT,
                "Already closed",
                format!("This change is already {} ({}).", s.as_str(), meaning(s)),
            ),
            Ok(Settled::Superseded) => (
                StatusCode::CONFLICT,
                "Superseded",
                meaning(ChangeStatus::Superseded).to_owned(),
            ),
            Err(e @ (ChangeError::NotAReviewer(_) | ChangeError::OwnChange(_))) => {
                tracing::warn!(change_id = %change.change_id, reviewer = %reviewer.id, error = %e, "review refused");
                (StatusCode::FORBIDDEN, "Not yours to review", e.to_string())
            }
            Err(e @ ChangeError::NoReviewNeeded(_)) => {
                (StatusCode::CONFLICT, "Nothing to review", e.to_string())
            }
            Err(ChangeError::Store(e)) => return failed(&e),
            Err(e @ (ChangeError::Invalid(_) | ChangeError::ActiveUnreadable(..))) => {
                (StatusCode::CONFLICT, "Cannot review", e.to_string())
            }
        };
        page(status, title, &format!("<p>{}</p>", escape(&text)))
    }
}
