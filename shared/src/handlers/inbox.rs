//! Approvers who sign in, and their inbox.
//!
//! - `GET /v1/signin?next=PATH`: starts the OpenID Connect sign-in
//!   ([`SignIn::start`]) and returns to `PATH` (a page of this site) after.
//! - `GET /v1/signin/callback`: the provider's redirect; sets the session
//!   cookie (`HttpOnly`, `SameSite=Lax`, `Secure` behind HTTPS).
//! - `POST /v1/signout`: removes the session cookie, and links to the
//!   provider's sign-out page when it has one.
//! - `GET /v1/inbox`: the pending approvals of the person's groups, newest
//!   first with the time left, the policy changes they may review, and the
//!   approvals they answered.
//! - `GET /v1/inbox/approvals/{approval_id}` and `POST …/approve|reject`:
//!   one approval, answered as the signed-in person, with the same checks
//!   as the emailed link's page (group, not for oneself, once).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::approval_callback::{details, time_left, ApprovalCallbackHandler};
use super::pages::{
    answer_form, cookie, csrf_ok, csrf_refused, escape, over_https, page, with_csrf, AnswerForm,
    SESSION_COOKIE,
};
use crate::auth::signin::{SignIn, FLOW_COOKIE};
use crate::auth::Sessions;
use crate::changes::ChangeStatus;
use crate::model::{ApprovalStatus, UserContext};
use crate::ports::{ApprovalInbox, ChangeStore};

/// How many items each list of the inbox shows.
const LIST: usize = 50;

/// What the sign-in and inbox pages talk to.
#[derive(Clone)]
pub struct InboxHandler {
    /// The sign-in flow and sessions.
    pub signin: Arc<SignIn>,
    /// Answers approvals (and reads them).
    pub callback: ApprovalCallbackHandler,
    /// Lists approvals by group and by approver.
    pub inbox: Arc<dyn ApprovalInbox>,
    /// Policy changes waiting for review, where this host keeps them.
    pub changes: Option<Arc<dyn ChangeStore>>,
}

impl InboxHandler {
    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/signin", get(sign_in))
            .route("/v1/signin/callback", get(callback))
            .route("/v1/signout", post(sign_out))
            .route("/v1/inbox", get(inbox))
            .route("/v1/inbox/approvals/{approval_id}", get(approval))
            .route("/v1/inbox/approvals/{approval_id}/approve", post(approve))
            .route("/v1/inbox/approvals/{approval_id}/reject", post(reject))
            .with_state(self)
    }

    /// The signed-in person, or the redirect to sign in and come back to `back`.
    // The error is the page to answer with, built once per refused request.
    #[allow(clippy::result_large_err)]
    fn person(&self, headers: &HeaderMap, back: &str) -> Result<UserContext, Response> {
        match cookie(headers, SESSION_COOKIE).map(|c| self.signin.session(c)) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "session refused");
                Err(page(
                    StatusCode::UNAUTHORIZED,
                    "Sign in again",
                    &format!(
                        "<p>Your session was refused: {}. <a href=\"/v1/signin?next={}\">Sign in</a></p>",
                        escape(&e.to_string()),
                        escape(back)
                    ),
                ))
            }
            None => Err(redirect(&format!("/v1/signin?next={back}"), None)),
        }
    }
}

fn redirect(to: &str, cookies: Option<Vec<String>>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, "").into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies.unwrap_or_default() {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, headers: &HeaderMap) -> String {
    format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if over_https(headers) { "; Secure" } else { "" }
    )
}

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    next: Option<String>,
}

async fn sign_in(
    State(h): State<InboxHandler>,
    Query(q): Query<Next>,
    headers: HeaderMap,
) -> Response {
    match h
        .signin
        .start(q.next.as_deref().unwrap_or("/v1/inbox"))
        .await
    {
        Ok((url, flow)) => redirect(
            &url,
            Some(vec![set_cookie(
                FLOW_COOKIE,
                &flow,
                "/v1/signin",
                600,
                &headers,
            )]),
        ),
        Err(e) => {
            tracing::error!(error = %e, "sign-in could not start");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot sign in",
                &format!("<p>{}</p>", escape(&e.to_string())),
            )
        }
    }
}

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn callback(
    State(h): State<InboxHandler>,
    Query(q): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not signed in",
            &format!(
                "<p>The identity provider did not sign you in ({}). <a href=\"/v1/signin\">Try again</a></p>",
                escape(q.error.as_deref().unwrap_or("no code"))
            ),
        );
    };
    match h
        .signin
        .finish(&code, &state, cookie(&headers, FLOW_COOKIE))
        .await
    {
        Ok((person, session, next)) => {
            tracing::info!(approver = %person.id, groups = ?person.roles, "approver signed in");
            redirect(
                &next,
                Some(vec![
                    set_cookie(
                        SESSION_COOKIE,
                        &session,
                        "/",
                        h.signin.session_seconds(),
                        &headers,
                    ),
                    set_cookie(FLOW_COOKIE, "", "/v1/signin", 0, &headers),
                ]),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in failed");
            page(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                &format!(
                    "<p>{}</p><p><a href=\"/v1/signin\">Sign in again</a></p>",
                    escape(&e.to_string())
                ),
            )
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(h): State<InboxHandler>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&headers, &form.csrf) {
        return csrf_refused();
    }
    let clear = set_cookie(SESSION_COOKIE, "", "/", 0, &headers);
    let back = format!("{}/v1/inbox", h.signin.config().public_url);
    // A link, not a redirect: the pages' `form-action 'self'` forbids a
    // form's answer from leading to another site.
    let provider = match h.signin.end_session_url(&back).await {
        Some(url) => format!(
            "<p><a id=\"provider-signout\" href=\"{}\">Sign out of the identity provider too</a></p>",
            escape(&url)
        ),
        None => String::new(),
    };
    let mut r = page(
        StatusCode::OK,
        "Signed out",
        &format!("<p>You are signed out here.</p>{provider}<p><a href=\"/v1/inbox\">Sign in again</a></p>"),
    );
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn sign_out_form(csrf: &str, who: &UserContext) -> String {
    format!(
        "<form method=\"post\" action=\"/v1/signout\"><input type=\"hidden\" name=\"csrf\" \
         value=\"{csrf}\"><span>Signed in as <b>{}</b> ({})</span> \
         <button class=\"signout\" type=\"submit\">Sign out</button></form>",
        escape(&who.id),
        escape(&who.roles.join(", "))
    )
}

async fn inbox(State(h): State<InboxHandler>, headers: HeaderMap) -> Response {
    let who = match h.person(&headers, "/v1/inbox") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = h.callback.clock.now();
    let pending = match h.inbox.pending_for(&who.roles, LIST).await {
        Ok(p) => p,
        Err(e) => return unavailable(&e),
    };
    let answered = match h.inbox.answered_by(&who.id, LIST).await {
        Ok(a) => a,
        Err(e) => return unavailable(&e),
    };
    let changes = match &h.changes {
        Some(c) => match c.changes().await {
            Ok(all) => all
                .into_iter()
                .filter(|c| {
                    c.status == ChangeStatus::Pending
                        && c.review_required
                        && who.roles.contains(&c.reviewers_group)
                })
                .take(LIST)
                .collect(),
            Err(e) => return unavailable(&e),
        },
        None => Vec::new(),
    };
    let rows = |items: &[crate::ports::ApprovalItem], answered: bool| -> String {
        if items.is_empty() {
            return "<p>None.</p>".to_owned();
        }
        let body: String = items
            .iter()
            .map(|i| {
                let d = &i.request.decision;
                let when = if answered {
                    format!(
                        "{} at {}",
                        match i.status {
                            ApprovalStatus::Granted => "approved (granted)",
                            other => other.as_str(),
                        },
                        i.decided_at.as_deref().unwrap_or("?")
                    )
                } else {
                    time_left(&i.request.expires_at, now)
                };
                format!(
                    "<tr><td><a href=\"/v1/inbox/approvals/{id}\">{tool}</a></td><td>{agent} for {user}</td>\
                     <td>{group}</td><td class=\"left\">{when}</td></tr>",
                    id = escape(&i.request.approval_id),
                    tool = escape(&d.tool_id),
                    agent = escape(&d.agent_id),
                    user = escape(&d.user_id),
                    group = escape(i.request.approver_group.as_deref().unwrap_or("")),
                    when = escape(&when),
                )
            })
            .collect();
        format!(
            "<table><tr><th>Tool</th><th>Agent and user</th><th>Group</th><th>{}</th></tr>{body}</table>",
            if answered { "Your answer" } else { "Time left" }
        )
    };
    let change_rows: String = if changes.is_empty() {
        "<p>None.</p>".to_owned()
    } else {
        let body: String = changes
            .iter()
            .map(|c| {
                format!(
                    "<tr><td><a href=\"/v1/changes/{id}\">{msg}</a></td><td>{author}</td><td>{risk} risk</td><td>{at}</td></tr>",
                    id = escape(&c.change_id),
                    msg = escape(&c.message),
                    author = escape(&c.author),
                    risk = c.risk.class.as_str(),
                    at = escape(&c.proposed_at),
                )
            })
            .collect();
        format!("<table><tr><th>Change</th><th>Proposed by</th><th>Risk</th><th>Proposed</th></tr>{body}</table>")
    };
    with_csrf(
        "Approvals inbox",
        |csrf| {
            format!(
                "{}<h2>Waiting for your group ({})</h2>{}<h2>Policy changes to review ({})</h2>{}\
                 <h2>Answered by you</h2>{}",
                sign_out_form(csrf, &who),
                pending.len(),
                rows(&pending, false),
                changes.len(),
                change_rows,
                rows(&answered, true)
            )
        },
        "/v1/",
        &headers,
    )
}

fn unavailable(e: &impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "inbox unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>The approval store is unavailable; try again.</p>",
    )
}

async fn approval(
    State(h): State<InboxHandler>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let back = format!("/v1/inbox/approvals/{id}");
    let who = match h.person(&headers, &back) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let item = match h.callback.approvals.get(&id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such approval",
                "<p>This approval does not exist.</p>",
            )
        }
        Err(e) => return unavailable(&e),
    };
    let mine = item
        .request
        .approver_group
        .as_ref()
        .is_some_and(|g| who.roles.contains(g));
    if !mine {
        return page(
            StatusCode::FORBIDDEN,
            "Not an approver here",
            "<p>This approval is for another group.</p>",
        );
    }
    let now = h.callback.clock.now();
    let open = item.status == ApprovalStatus::Pending;
    with_csrf(
        super::approval_callback::closed_title(&item),
        |csrf| {
            // Signed in, the person needs no pasted token.
            let form = |verb: &str, label: &str| {
                answer_form(&item.request.approval_id, verb, label, csrf, false)
            };
            let answered = item
                .approver
                .as_deref()
                .map(|a| {
                    format!(
                        "<p>Answered by {} at {}.</p>",
                        escape(a),
                        escape(item.decided_at.as_deref().unwrap_or("?"))
                    )
                })
                .unwrap_or_default();
            format!(
                "{}{}{answered}{}<p><a href=\"/v1/inbox\">Back to the inbox</a></p>",
                sign_out_form(csrf, &who),
                details(&item, now),
                if open {
                    form("approve", "Approve") + &form("reject", "Reject")
                } else {
                    String::new()
                }
            )
        },
        "/v1/",
        &headers,
    )
}

async fn approve(
    State(h): State<InboxHandler>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&id, ApprovalStatus::Approved, &headers, form)
        .await
}

async fn reject(
    State(h): State<InboxHandler>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    h.answer(&id, ApprovalStatus::Rejected, &headers, form)
        .await
}

impl InboxHandler {
    async fn answer(
        &self,
        id: &str,
        status: ApprovalStatus,
        headers: &HeaderMap,
        form: AnswerForm,
    ) -> Response {
        if !csrf_ok(headers, &form.csrf) {
            return csrf_refused();
        }
        let who = match self.person(headers, &format!("/v1/inbox/approvals/{id}")) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let item = match self.callback.approvals.get(id).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return page(
                    StatusCode::NOT_FOUND,
                    "No such approval",
                    "<p>This approval does not exist.</p>",
                )
            }
            Err(e) => return unavailable(&e),
        };
        self.callback
            .answer_as(&item, who, status, form.comment)
            .await
    }
}
