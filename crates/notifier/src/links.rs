//! Action links: `{base_url}/tasks/{token}`.
//!
//! A token is 256 random bits (URL-safe Base64, 43 characters). Only its SHA-256 (hex) is
//! stored, in `link_tokens`, with the task it opens (renewal + step), the one recipient it was
//! sent to (and their user id when they have an account), and its expiry. [`lookup`] reads a
//! token without using it (showing the task page); [`consume`] uses it, exactly once, with a
//! conditional update that two concurrent requests cannot both win; [`reissue`] replaces a
//! token (expired, used or lost) by a fresh one for the same recipient and task.
//!
//! The task is recorded in `purpose` as JSON; the rows are the store's
//! ([`rekey_store::link_tokens`]), which holds hashes only.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use rekey_store::ConnectionTrait;
use rekey_store::link_tokens::{self, LinkRow, NewLink};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{NotifierError, Result};

/// How long a link works unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::hours(72);

/// A token as it appears in a link. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl LinkToken {
    /// The token text, for the link. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the token text, hex: what the database holds.
    pub fn hash(&self) -> String {
        hash(&self.0)
    }

    fn generate() -> Result<LinkToken> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| NotifierError::Link(format!("no randomness for a link token: {e}")))?;
        Ok(LinkToken(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
        ))
    }
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// What a link opens (stored as `purpose`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Purpose {
    /// Always `task`.
    kind: String,
    renewal: Uuid,
    step: String,
    recipient: String,
}

/// What a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkInfo {
    /// Tenant.
    pub tenant: Uuid,
    /// Renewal.
    pub renewal: Uuid,
    /// Step id.
    pub step: String,
    /// The one person it was sent to.
    pub recipient: String,
    /// Their user id, when they have an account.
    pub user: Option<Uuid>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was used.
    pub used_at: Option<DateTime<Utc>>,
}

/// The task a link opens.
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    /// Tenant.
    pub tenant: Uuid,
    /// Renewal.
    pub renewal: Uuid,
    /// Step id.
    pub step: &'a str,
    /// The recipient (an email address).
    pub recipient: &'a str,
}

/// Issues a token for `task`, valid for `ttl` from `now`.
pub async fn issue(
    conn: &impl ConnectionTrait,
    task: Task<'_>,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(LinkToken, DateTime<Utc>)> {
    let token = LinkToken::generate()?;
    let user = rekey_store::users::id_of_address(conn, task.recipient)
        .await?
        .map(|u| u.as_uuid());
    let purpose = Purpose {
        kind: "task".into(),
        renewal: task.renewal,
        step: task.step.to_string(),
        recipient: task.recipient.to_string(),
    };
    let expires_at = now + ttl;
    let link = NewLink {
        token_sha256: token.hash(),
        tenant: task.tenant,
        user,
        purpose: serde_json::to_string(&purpose)
            .map_err(|e| NotifierError::Link(format!("link purpose: {e}")))?,
        expires_at,
    };
    link_tokens::insert(conn, link, now).await?;
    Ok((token, expires_at))
}

fn info(m: &LinkRow) -> Result<LinkInfo> {
    let p: Purpose = serde_json::from_str(&m.purpose)
        .map_err(|e| NotifierError::Link(format!("stored link purpose unreadable: {e}")))?;
    Ok(LinkInfo {
        tenant: m.tenant_id,
        renewal: p.renewal,
        step: p.step,
        recipient: p.recipient,
        user: m.user_id,
        expires_at: m.expires_at,
        used_at: m.used_at,
    })
}

async fn find(conn: &impl ConnectionTrait, token: &str) -> Result<LinkRow> {
    link_tokens::find(conn, &hash(token))
        .await?
        .ok_or_else(|| NotifierError::Link("this link is not valid".into()))
}

fn usable(m: &LinkRow, now: DateTime<Utc>) -> Result<()> {
    if let Some(at) = m.used_at {
        return Err(NotifierError::Link(format!(
            "this link was already used on {}",
            at.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    if m.expires_at <= now {
        return Err(NotifierError::Link(format!(
            "this link expired on {}",
            m.expires_at.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    Ok(())
}

/// What `token` opens, without using it (for showing the task page). Refuses unknown, used
/// and expired tokens.
pub async fn lookup(
    conn: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
) -> Result<LinkInfo> {
    let m = find(conn, token).await?;
    usable(&m, now)?;
    info(&m)
}

/// Uses `token`: succeeds once, for the first caller, while it has not expired.
pub async fn consume(
    conn: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
) -> Result<LinkInfo> {
    let m = find(conn, token).await?;
    usable(&m, now)?;
    if !link_tokens::mark_used(conn, &m.token_sha256, now).await? {
        return Err(NotifierError::Link("this link was already used".into()));
    }
    let mut out = info(&m)?;
    out.used_at = Some(now);
    Ok(out)
}

/// Replaces `token` (which may have expired or been used) by a fresh one for the same
/// recipient and task; the old one stops working.
pub async fn reissue(
    conn: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(LinkToken, DateTime<Utc>)> {
    let m = find(conn, token).await?;
    let old = info(&m)?;
    revoke(conn, token, now).await?;
    issue(
        conn,
        Task {
            tenant: old.tenant,
            renewal: old.renewal,
            step: &old.step,
            recipient: &old.recipient,
        },
        now,
        ttl,
    )
    .await
}

/// Makes `token` unusable (marks it used now, if it was not).
pub async fn revoke(conn: &impl ConnectionTrait, token: &str, now: DateTime<Utc>) -> Result<()> {
    Ok(link_tokens::revoke(conn, &hash(token), now).await?)
}

/// Deletes a token that never reached anyone (its email was not delivered).
pub(crate) async fn discard(conn: &impl ConnectionTrait, token: &LinkToken) -> Result<()> {
    Ok(link_tokens::delete(conn, &token.hash()).await?)
}
