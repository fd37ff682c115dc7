//! Web sessions and the checks on every posted form: sessions and their cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` under an https base URL), CSRF tokens (a link page's derived
//! from the link and the secret all instances share, a session's own after sign-in), and the
//! same-origin check on `Sec-Fetch-Site` / `Origin` (`Origin: null` is refused).
//!
//! Sessions live in the database (`rekey_store::sessions`), under the SHA-256 of their id
//! only: a restart keeps people signed in, any instance on the same database knows every
//! session, sign-out deletes the row, expired rows are refused and pruned, and removing a user
//! ends theirs. The link CSRF secret is stored there too, made once by the first instance.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use rekey_store::sessions::{self, SessionRow};

use crate::{ApiError, AppState, now};

/// The name of the link pages' CSRF secret in the database.
const LINK_SECRET: &str = "link_csrf";

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::hours(8);
const COOKIE: &str = "rekey_session";

/// The `Set-Cookie` value that ends a session in the browser.
pub(crate) const CLEAR_COOKIE: &str =
    "rekey_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    /// Their email address.
    pub email: String,
    /// The CSRF token of their forms.
    pub csrf: String,
    /// When it ends.
    pub expires: DateTime<Utc>,
}

fn random_hex() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(&e))?;
    Ok(hex::encode(b))
}

fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The secret link CSRF tokens derive from, shared by every instance on the database: this
/// process's candidate is stored if none is yet, else the stored one is used.
pub(crate) async fn shared_secret(st: &AppState) -> Result<Vec<u8>, ApiError> {
    let mut candidate = [0u8; 32];
    getrandom::fill(&mut candidate).map_err(|e| ApiError::internal(&e))?;
    Ok(sessions::shared_secret(st.service().store().db(), LINK_SECRET, &candidate, now()).await?)
}

/// The CSRF token of a link page's forms: bound to the link and the shared secret, so a page
/// opened on one instance may be posted to another.
pub(crate) async fn link_csrf(st: &AppState, token: &str) -> Result<String, ApiError> {
    Ok(sha(&[st.secret().await?, b"link-csrf", token.as_bytes()]))
}

/// Equal without an early exit.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The live session the request's cookie names, if any (an expired one is deleted). A
/// database error is logged and answered as not signed in.
pub(crate) async fn session_of(st: &AppState, headers: &HeaderMap) -> Option<Session> {
    let id = cookie_value(headers)?;
    match sessions::get(st.service().store().db(), &sha(&[id.as_bytes()]), now()).await {
        Ok(row) => row.map(|r| Session {
            email: r.email,
            csrf: r.csrf,
            expires: r.expires_at,
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a web session");
            None
        }
    }
}

/// Starts a session for `email` (pruning expired ones); returns it and its `Set-Cookie` value.
pub(crate) async fn start_session(
    st: &AppState,
    email: &str,
) -> Result<(Session, HeaderValue), ApiError> {
    let id = random_hex()?;
    let s = Session {
        email: email.to_string(),
        csrf: random_hex()?,
        expires: now() + SESSION_TTL,
    };
    let row = SessionRow {
        email: s.email.clone(),
        csrf: s.csrf.clone(),
        expires_at: s.expires,
    };
    sessions::insert(
        st.service().store().db(),
        &sha(&[id.as_bytes()]),
        &row,
        now(),
    )
    .await?;
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.num_seconds(),
        if st.secure_cookies() { "; Secure" } else { "" }
    );
    let value = HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(&e))?;
    Ok((s, value))
}

/// Ends the request's session when `csrf` is its token and the form came from this site.
pub(crate) async fn end_session(st: &AppState, headers: &HeaderMap, csrf: &str) {
    if let (Some(s), Some(id)) = (session_of(st, headers).await, cookie_value(headers))
        && same(&s.csrf, csrf)
        && same_origin(st, headers).is_ok()
        && let Err(e) = sessions::delete(st.service().store().db(), &sha(&[id.as_bytes()])).await
    {
        tracing::error!(error = %e, "cannot end a web session");
    }
}

/// Refuses a form posted from another site (login CSRF with the attacker's own link, or a
/// forged form): browsers say so in `Sec-Fetch-Site` and `Origin`.
pub(crate) fn same_origin(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this form was sent from another site; open rekey's page and submit it there",
        )
    };
    // Modern browsers: Sec-Fetch-Site says where the form came from. Without it, the Origin
    // must be rekey's: `Origin: null` (a sandboxed frame, a data: or file: page, a redirect
    // across sites) says nothing about where the form came from, so it is refused.
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin" | "none") => Ok(()),
            _ => Err(refused()),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| refused())?;
        if origin == "null" {
            return Err(refused());
        }
        let base = st.base_url();
        // The base URL's scheme://host[:port], without any path.
        let base_origin = match base.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
            None => base.to_string(),
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same_host = origin
            .split_once("://")
            .is_some_and(|(_, h)| !host.is_empty() && h == host);
        if origin != base_origin && !same_host {
            return Err(refused());
        }
    }
    Ok(())
}

/// Refuses a signed-in form whose CSRF token is not the session's.
pub(crate) fn check_csrf(s: &Session, csrf: &str) -> Result<(), ApiError> {
    if same(&s.csrf, csrf) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the form is stale; reload the page and try again",
        ))
    }
}
