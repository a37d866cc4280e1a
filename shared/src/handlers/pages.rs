//! What the approver's pages share: one style, one page frame with its
//! content security policy, escaping, and the double-submit CSRF check.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{ErrorType, HandlerError};

/// The cookie of the double-submit CSRF check: the review page sets it and
/// puts the same random value in its forms; an answer must carry both.
/// Another site can make a browser send the cookie, but cannot read it to
/// put it in the form.
pub(crate) const CSRF_COOKIE: &str = "agov_csrf";

/// A review id: 256 random bits, hex.
pub(crate) fn new_review_id() -> Result<String, HandlerError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| HandlerError::new(ErrorType::NotifyFailed, format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// `text`, safe inside HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The pages' only style. The content security policy admits it by its
/// hash, and nothing else: no script, no other style, no framing.
pub(crate) const STYLE: &str =
    "body{font:15px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;\
padding:0 1rem;color:#1d2430}h1{font-size:1.4rem}table{border-collapse:collapse;width:100%;\
margin:1rem 0}th,td{text-align:left;vertical-align:top;padding:.35rem .6rem;\
border-bottom:1px solid #e3e6ea}th{width:16rem;color:#5a6472;font-weight:600}\
td{word-break:break-all}form{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap;\
margin:.6rem 0;padding:.6rem;border:1px solid #e3e6ea;border-radius:6px}input{padding:.3rem}\
button{padding:.4rem 1.1rem;border:0;border-radius:4px;color:#fff;font-weight:600}\
form.approve button{background:#1f7a3f}form.reject button{background:#a32020}\
.left{font-weight:600}h2{font-size:1.1rem}button.signout{background:#5a6472}pre{overflow-x:auto;background:#f6f8fa;padding:.5rem}";

/// A whole page: `title` as heading, `body` as given (already escaped).
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let style_hash = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE.as_bytes()))
    };
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; \
         frame-ancestors 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(&csp) {
        headers.insert("content-security-policy", v);
    }
    headers.insert(
        "cache-control",
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The values of the CSRF cookies the request carries: one per path the
/// pages set it for (the most specific first).
fn csrf_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| *k == CSRF_COOKIE)
        .map(|(_, v)| v)
}

/// Equal, in time that does not depend on where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether the request came over HTTPS (API Gateway says so): cookies are
/// then `Secure`, never sent in clear.
pub(crate) fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The `Set-Cookie` value of the CSRF cookie for pages under `path`.
pub(crate) fn csrf_set_cookie(csrf: &str, path: &str, headers: &HeaderMap) -> Option<HeaderValue> {
    let cookie = format!(
        "{CSRF_COOKIE}={csrf}; Path={path}; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if over_https(headers) { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).ok()
}

/// The longest comment an answer keeps.
pub(crate) const MAX_COMMENT: usize = 1024;

/// An Approve or Reject form, as every answer page posts it.
#[derive(Debug, Deserialize)]
pub(crate) struct AnswerForm {
    /// The page's CSRF value.
    pub(crate) csrf: String,
    /// A pasted approver token; absent when the person is signed in.
    #[serde(default)]
    pub(crate) approver_token: Option<String>,
    /// The answer's comment.
    #[serde(default)]
    pub(crate) comment: Option<String>,
}

/// An answer form posting to `{id}/{verb}`, relative to the page that shows
/// `id`. `token_field` adds the pasted-token fallback for headless use;
/// pages that require a signed-in person leave it out.
pub(crate) fn answer_form(
    id: &str,
    verb: &str,
    label: &str,
    csrf: &str,
    token_field: bool,
) -> String {
    let token = if token_field {
        "<label>Approver token, unless signed in <input type=\"password\" \
         name=\"approver_token\" autocomplete=\"off\"></label> "
    } else {
        ""
    };
    format!(
        "<form class=\"{verb}\" method=\"post\" action=\"{id}/{verb}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{token}\
         <label>Comment <input name=\"comment\" maxlength=\"{MAX_COMMENT}\"></label> \
         <button type=\"submit\">{label}</button></form>",
        id = escape(id)
    )
}

/// A page with a fresh CSRF value: `body` gets the value for its forms, and
/// the cookie that must match it is set for the pages under `path`.
pub(crate) fn with_csrf(
    title: &str,
    body: impl FnOnce(&str) -> String,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    let Ok(csrf) = new_review_id() else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "<p>No randomness available.</p>",
        );
    };
    let mut r = page(StatusCode::OK, title, &body(&csrf));
    if let Some(v) = csrf_set_cookie(&csrf, path, headers) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Whether a form's CSRF value matches the request's cookie.
pub(crate) fn csrf_ok(headers: &HeaderMap, form_value: &str) -> bool {
    csrf_cookies(headers).any(|c| !c.is_empty() && same(c, form_value))
}

/// The page an answer without a matching CSRF value gets.
pub(crate) fn csrf_refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Open the page again",
        "<p>This answer did not come from the review page (CSRF check). \
         Open the link again and answer there.</p>",
    )
}

/// The approver's token: pasted into the form, else `Authorization: Bearer`.
pub(crate) fn approver_token<'a>(
    pasted: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Option<&'a str> {
    pasted.map(str::trim).filter(|t| !t.is_empty()).or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Who answers: the approver token pasted into the form or sent as
/// `Authorization: Bearer`, else the session of a person who signed in.
/// A refusal is the page to answer with; `back` is where sign-in returns.
pub(crate) async fn who(
    approvers: &dyn crate::auth::ApproverVerifier,
    sessions: Option<&dyn crate::auth::Sessions>,
    pasted: Option<&str>,
    headers: &HeaderMap,
    back: &str,
) -> Result<crate::model::UserContext, Response> {
    let refused = |e: &crate::auth::TokenError| {
        page(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            &format!(
                "<p>Your sign-in was refused: {}.{}</p>",
                escape(&e.to_string()),
                sign_in_link(sessions, back)
            ),
        )
    };
    if let Some(token) = approver_token(pasted, headers) {
        return approvers.verify_approver(token).await.map_err(|e| {
            tracing::warn!(error = %e, "approver token refused");
            refused(&e)
        });
    }
    match (sessions, cookie(headers, SESSION_COOKIE)) {
        (Some(s), Some(c)) => s.session(c).map_err(|e| {
            tracing::warn!(error = %e, "session refused");
            refused(&e)
        }),
        _ => Err(page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            &format!(
                "<p>Sign in, or paste an approver token, to answer.{}</p>",
                sign_in_link(sessions, back)
            ),
        )),
    }
}

/// The session cookie's name (see `auth::signin`).
pub(crate) const SESSION_COOKIE: &str = "agov_session";

/// A sign-in link returning to `back`, where people sign in.
pub(crate) fn sign_in_link(sessions: Option<&dyn crate::auth::Sessions>, back: &str) -> String {
    match sessions {
        Some(s) => format!(
            " <a href=\"{}?next={}\">Sign in</a>",
            s.sign_in_path(),
            escape(&urlencoding(back))
        ),
        None => String::new(),
    }
}

/// Percent-encodes a path for a query value.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
