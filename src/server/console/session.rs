//! Sign-in and sessions. Signing in checks an API key exactly as the API does (`keys::verify`,
//! constant-time); the server then keeps a session (the key's id, role and brand, a CSRF token,
//! its age) in memory under the SHA-256 of a random session id, and the browser gets only that id,
//! in an `HttpOnly; SameSite=Strict` cookie limited to `/console`. The key itself is never kept.
//! Each request re-reads the key, so revoking it ends its sessions at once; a restart of the server
//! signs everybody out. Form posts must carry the session's CSRF token and, when the browser names
//! the page's origin, come from this very server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{render, PageError};
use crate::server::keys::{self, Caller};
use crate::server::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "knockoff_session";
/// A session ends this long after sign-in.
const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// ... or after this long without a request.
const IDLE: Duration = Duration::from_secs(2 * 3600);
/// Most sessions kept at once (expired ones are dropped first).
const MAX_SESSIONS: usize = 10_000;

struct Entry {
    caller: Caller,
    csrf: String,
    started: Instant,
    last: Instant,
}

/// The server-side sessions, by SHA-256 of their ids.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

fn digest(id: &str) -> String {
    Sha256::digest(id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    /// Starts a session for `caller`; returns its id (for the cookie).
    fn start(&self, caller: Caller) -> anyhow::Result<String> {
        let id = random_hex(32)?;
        let now = Instant::now();
        let entry = Entry { caller, csrf: random_hex(32)?, started: now, last: now };
        let mut map = self.map.lock().map_err(|_| anyhow::anyhow!("session lock poisoned"))?;
        map.retain(|_, e| alive(e, now));
        if map.len() >= MAX_SESSIONS {
            anyhow::bail!("too many open console sessions ({MAX_SESSIONS})");
        }
        map.insert(digest(&id), entry);
        Ok(id)
    }

    /// The live session of cookie value `id`: its caller (as signed in) and CSRF token.
    fn touch(&self, id: &str) -> Option<(Caller, String)> {
        let mut map = self.map.lock().ok()?;
        let key = digest(id);
        let now = Instant::now();
        match map.get_mut(&key) {
            Some(e) if alive(e, now) => {
                e.last = now;
                Some((e.caller.clone(), e.csrf.clone()))
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    fn end(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&digest(id));
        }
    }
}

fn alive(e: &Entry, now: Instant) -> bool {
    now.duration_since(e.started) < MAX_AGE && now.duration_since(e.last) < IDLE
}

/// The session id the browser sent, if any.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// A signed-in request: the key's holder (re-read from the key table) and the session's token.
pub struct Signed {
    /// Who, as the API would see the key.
    pub caller: Caller,
    /// The session's CSRF token, for forms.
    pub csrf: String,
    id: String,
}

impl Signed {
    /// Refuses a form post without the session's token or from another origin.
    pub fn check_post(&self, headers: &HeaderMap, token: &str) -> Result<(), PageError> {
        same_origin(headers)?;
        if bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(PageError::forbidden(
                "the form's security token is missing or stale: reload the page and try again",
            ))
        }
    }
}

/// Refuses a request whose `Origin` (sent by browsers on posts) is not this server's.
pub fn same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(PageError::forbidden("cross-site form post refused")),
    }
}

impl FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Signed, Response> {
        let to_login = || Redirect::to("/console/login").into_response();
        let Some(sessions) = parts.extensions.get::<Arc<Sessions>>().cloned() else {
            return Err(PageError::internal(anyhow::anyhow!("no session store")).into_response());
        };
        let id = cookie(&parts.headers).ok_or_else(to_login)?;
        let (signed_in, csrf) = sessions.touch(&id).ok_or_else(to_login)?;
        let key_id = signed_in.key_id.clone();
        let caller = state
            .with_db(move |c| keys::active(c, &key_id))
            .await
            .map_err(|e| PageError::from(e).into_response())?;
        match caller {
            Some(caller) => Ok(Signed { caller, csrf, id }),
            None => {
                sessions.end(&id);
                Err(to_login())
            }
        }
    }
}

/// The sign-in page.
pub async fn login_page() -> Result<Response, PageError> {
    Ok(render("login.html", minijinja::context! {})?.into_response())
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
}

/// Signs in with an API key; a wrong key gets the page again with 401.
pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    same_origin(&headers)?;
    let presented = form.key.trim().to_string();
    let caller = state.with_db(move |c| keys::verify(c, &presented)).await?;
    let Some(caller) = caller else {
        let page = render("login.html", minijinja::context! { error => "unknown or revoked key" })?;
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    tracing::info!("console: key {} signed in", caller.key_id);
    let id = sessions.start(caller).map_err(PageError::internal)?;
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        MAX_AGE.as_secs()
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console/queue")).into_response())
}

/// A form that carries only the CSRF token.
#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// Signs out: the session ends on the server and the cookie is cleared.
pub async fn logout(
    Extension(sessions): Extension<Arc<Sessions>>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    signed.check_post(&headers, &form.csrf)?;
    sessions.end(&signed.id);
    let cookie = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console/login")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::keys::Role;

    fn caller() -> Caller {
        Caller { key_id: "abc".into(), role: Role::Analyst, brand: None }
    }

    #[test]
    fn sessions_are_found_by_id_only_and_end() {
        let s = Sessions::default();
        let id = s.start(caller()).unwrap();
        assert_eq!(id.len(), 64);
        let (c, csrf) = s.touch(&id).expect("live");
        assert_eq!(c, caller());
        assert_eq!(csrf.len(), 64);
        assert_ne!(csrf, id);
        assert!(s.touch("0000").is_none());
        // stored under the id's hash, never the id
        assert!(!s.map.lock().unwrap().contains_key(&id));
        s.end(&id);
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; knockoff_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h).as_deref(), Some("xyz"));
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h).is_ok(), "no Origin: not a cross-site browser post");
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(same_origin(&h).is_err());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(same_origin(&h).is_err());
    }
}
