//! Authentication at the edge: who sent a request (a bearer token or a session cookie), cross-site
//! request refusal for cookie-authenticated changes, and the sign-in and sign-out form handlers.
//!
//! Only identity is settled here. What the identity may do is decided by the service layer, for every
//! way in alike.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use slope_app::Authenticated;
use slope_service::{Access, ServiceError};

use crate::api::ApiError;
use crate::security::Transport;

/// The session cookie's name over plain HTTP (a loopback host, or TLS configured off).
pub const SESSION_COOKIE: &str = "slope_session";
/// The session cookie's name over TLS. Browsers only accept a `__Host-` cookie that is `Secure`, has
/// `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow it.
pub const TLS_SESSION_COOKIE: &str = "__Host-slope_session";

/// Settings of the authentication layer.
#[derive(Clone)]
pub struct AuthState {
    pub access: Access,
    /// Whether requests came over TLS, and which client address they came from.
    pub transport: Transport,
}

impl AuthState {
    fn cookie_name(&self, headers: &HeaderMap) -> &'static str {
        if self.transport.is_tls(headers) { TLS_SESSION_COOKIE } else { SESSION_COOKIE }
    }

    fn session_cookie(&self, headers: &HeaderMap, value: &str, max_age: i64) -> HeaderValue {
        let tls = self.transport.is_tls(headers);
        let (name, secure) = if tls { (TLS_SESSION_COOKIE, "; Secure") } else { (SESSION_COOKIE, "") };
        let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
        HeaderValue::from_str(&cookie).expect("a session cookie is printable ASCII")
    }
}

/// Establishes who sent the request and puts it on the request as [`Authenticated`]. A bearer token
/// that is not valid is refused here (401), since a script with a wrong token should hear so at once;
/// a missing or stale session cookie just leaves the request anonymous (pages then ask to sign in).
pub async fn authenticate(State(state): State<AuthState>, mut req: Request, next: Next) -> Response {
    // The built site's static files (stylesheet, script, wasm) need no caller; resolving a session for
    // each would cost a database query per asset of every page load.
    if req.uri().path().starts_with("/pkg/") {
        req.extensions_mut().insert(Authenticated(None));
        return next.run(req).await;
    }
    let bearer = match bearer_token(req.headers()) {
        Ok(token) => token,
        Err(message) => return ApiError::from(ServiceError::Unauthorized(message.into())).into_response(),
    };
    let mut credential = None;
    let actor = if let Some(token) = bearer {
        match state.access.token_actor(&token).await {
            Ok(Some(actor)) => {
                credential = Some(Credential::Token(token));
                Some(actor)
            }
            Ok(None) => {
                return ApiError::from(ServiceError::Unauthorized("the token is unknown or revoked".into()))
                    .into_response();
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        let session = cookie(req.headers(), state.cookie_name(req.headers()));
        // A browser (anything sending cookies) changing state must come from our own pages: SameSite=Lax
        // already keeps the cookie off most cross-site requests, and this check closes the rest
        // (cross-site form posts from same-site subdomains, older browsers).
        if (session.is_some() || is_form_endpoint(req.uri().path()))
            && !is_safe(req.method())
            && !same_origin(req.headers(), state.transport.scheme(req.headers()))
        {
            return ApiError::Service(ServiceError::Forbidden(
                "cross-site request refused: the Origin header does not match this server".into(),
            ))
            .into_response();
        }
        match session {
            Some(session) => match state.access.session_actor(&session).await {
                Ok(actor) => {
                    credential = actor.as_ref().map(|_| Credential::Session(session));
                    actor
                }
                Err(e) => return ApiError::from(e).into_response(),
            },
            None => None,
        }
    };
    req.extensions_mut().insert(Authenticated(actor));
    if let Some(credential) = credential {
        req.extensions_mut().insert(credential);
    }
    next.run(req).await
}

/// What the caller presented, kept for long-lived answers (event streams) that must end when it stops
/// being valid: a revoked token or an ended session is refused on the next request, and a stream is
/// one request that lasts.
#[derive(Clone, Debug)]
pub enum Credential {
    Token(String),
    Session(String),
}

impl Credential {
    /// Whether the credential still stands for someone.
    pub async fn is_live(&self, access: &Access) -> Result<bool, ServiceError> {
        Ok(match self {
            Credential::Token(token) => access.token_actor(token).await?.is_some(),
            Credential::Session(session) => access.session_actor(session).await?.is_some(),
        })
    }
}

/// Sends anonymous browsers to the sign-in page instead of rendering a page they may not read.
pub async fn require_sign_in(req: Request, next: Next) -> Response {
    let signed_in = req.extensions().get::<Authenticated>().is_some_and(|a| a.0.is_some());
    let path = req.uri().path();
    // An invitation's page is for its holder, who may have no account yet: its secret is the credential.
    let public =
        path == "/login" || path.starts_with("/invitations/") || path.starts_with("/pkg/") || path.contains('.');
    if signed_in || public || req.method() != Method::GET {
        return next.run(req).await;
    }
    let next_path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Redirect::to(&format!("/login?next={}", encode(next_path))).into_response()
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    next: String,
}

/// `POST /auth/login`: checks the form and, when it is right, sets a fresh session cookie and sends the
/// browser on; otherwise back to the form with the reason.
pub async fn sign_in(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = local_path(&form.next);
    let address = state.transport.client_address(&headers, peer);
    let org = Some(form.org.as_str()).filter(|o| !o.trim().is_empty());
    match state.access.sign_in(&form.email, &form.password, org, &address).await {
        Ok(signed_in) => {
            let max_age = (signed_in.expires_at - chrono::Utc::now()).num_seconds().max(0);
            let cookie = state.session_cookie(&headers, &signed_in.session, max_age);
            let mut response = Redirect::to(next).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => {
            let (status, message) = match &e {
                ServiceError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
                ServiceError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, e.to_string()),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "sign-in failed; try again".to_owned()),
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "sign-in failed");
            }
            // The status tells scripts what happened; the redirect shows people the form again.
            let location = format!("/login?error={}&next={}", encode(&message), encode(next));
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            response.headers_mut().insert("x-slope-sign-in", HeaderValue::from(status.as_u16()));
            if let ServiceError::TooManyRequests { retry_after_secs } = e {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            response
        }
    }
}

#[derive(Deserialize)]
pub struct AcceptForm {
    token: String,
    #[serde(default)]
    name: String,
    password: String,
}

/// `POST /auth/accept`: accepts an invitation (see `Access::accept_invitation`) and signs its holder in
/// to the organisation that invited them; otherwise back to the invitation's page with the reason. As
/// with the sign-in form, `x-slope-accept` carries the status of a refusal for scripts.
pub async fn accept(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<AcceptForm>,
) -> Response {
    let address = state.transport.client_address(&headers, peer);
    let input =
        slope_domain::AcceptInput { token: form.token.clone(), name: form.name, password: form.password.clone() };
    let accepted = match state.access.accept_invitation(&input, &address).await {
        Ok((org, member)) => state.access.sign_in(&member.email, &form.password, Some(&org), &address).await,
        Err(e) => Err(e),
    };
    match accepted {
        Ok(signed_in) => {
            let max_age = (signed_in.expires_at - chrono::Utc::now()).num_seconds().max(0);
            let cookie = state.session_cookie(&headers, &signed_in.session, max_age);
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => {
            let (status, message) = match &e {
                ServiceError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
                ServiceError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
                ServiceError::Invalid(fields) => (StatusCode::UNPROCESSABLE_ENTITY, fields.to_string()),
                ServiceError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, e.to_string()),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "accepting the invitation failed; try again".to_owned()),
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "accepting an invitation failed");
            }
            let location = format!("/invitations/{}?error={}", encode(form.token.trim()), encode(&message));
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            response.headers_mut().insert("x-slope-accept", HeaderValue::from(status.as_u16()));
            if let ServiceError::TooManyRequests { retry_after_secs } = e {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            response
        }
    }
}

/// `POST /auth/logout`: ends the session on the server (the cookie is worthless afterwards, even if kept)
/// and clears the cookie.
pub async fn sign_out(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers, state.cookie_name(&headers))
        && let Err(e) = state.access.sign_out(&session).await
    {
        return ApiError::from(e).into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    let cleared = state.session_cookie(&headers, "", 0);
    response.headers_mut().insert(header::SET_COOKIE, cleared);
    response
}

/// `Authorization: Bearer <token>` → the token; no header → `None`; any other scheme is an error.
fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| "the Authorization header is not readable text")?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err("use `Authorization: Bearer <token>`"),
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The sign-in and sign-out forms change state without a session (or to end one), so they are held to
/// the same-origin rule even without a cookie: a cross-site page must not sign a browser in or out.
fn is_form_endpoint(path: &str) -> bool {
    path == "/auth/login" || path == "/auth/logout" || path == "/auth/accept"
}

/// Whether the request comes from a page of this server: its `Origin` (or, failing that, `Referer`)
/// names the scheme and host the request was sent to. Browsers send `Origin` on every cross-origin
/// request and on same-origin POSTs; a request with neither header is refused, as only non-browser
/// clients omit both and those use tokens. The scheme counts: a page served over plain HTTP (which a
/// network attacker can write) is another origin than this server's HTTPS pages.
fn same_origin(headers: &HeaderMap, scheme: &str) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v != "null");
    let Some(source) = source else { return false };
    let Some((source_scheme, rest)) = source.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or("");
    source_scheme.eq_ignore_ascii_case(scheme) && authority.eq_ignore_ascii_case(host)
}

/// Only paths of this server are followed after sign-in, so a crafted link cannot send a person who
/// just signed in to another site.
fn local_path(next: &str) -> &str {
    // Browsers drop tabs and line breaks from URLs and read `\` as `/`, so `/\t/evil.example` would be
    // followed as `//evil.example`: any control character, whitespace or backslash disqualifies a path.
    let clean = !next.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if clean && next.starts_with('/') && !next.starts_with("//") { next } else { "/" }
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_match_the_host() {
        let same = |pairs: &[(&'static str, &'static str)], scheme| same_origin(&headers(pairs), scheme);
        assert!(same(&[("host", "slope.example:3000"), ("origin", "http://slope.example:3000")], "http"));
        assert!(same(&[("host", "a.b"), ("referer", "https://a.b/seasons/1")], "https"));
        assert!(!same(&[("host", "a.b"), ("origin", "https://evil.example")], "https"));
        assert!(!same(&[("host", "a.b"), ("origin", "https://a.b.evil.example")], "https"));
        assert!(!same(&[("host", "a.b"), ("origin", "null")], "https"));
        assert!(!same(&[("host", "a.b")], "https"));
        // The scheme must match too: a plain-HTTP page of the same host is not this HTTPS server.
        assert!(!same(&[("host", "a.b"), ("origin", "http://a.b")], "https"));
        assert!(!same(&[("host", "a.b"), ("referer", "a.b/seasons/1")], "https"));
    }

    #[test]
    fn cookies_and_tokens_are_read_strictly() {
        let h = headers(&[("cookie", "a=1; slope_session=abc; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer slope_x")])), Ok(Some("slope_x".into())));
        assert!(bearer_token(&headers(&[("authorization", "Basic dTpw")])).is_err());
        assert_eq!(bearer_token(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/seasons/1?x=y"), "/seasons/1?x=y");
        assert_eq!(local_path("//evil.example"), "/");
        assert_eq!(local_path("https://evil.example"), "/");
        assert_eq!(local_path("/\t/evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
        assert_eq!(local_path("/a\r\nSet-Cookie: x=y"), "/");
        assert_eq!(encode("/a b?c=d"), "/a%20b%3Fc%3Dd");
    }
}
