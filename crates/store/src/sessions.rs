//! The `web_sessions` and `server_secrets` tables: what every server instance on one database
//! shares, so a restart keeps people signed in and any instance answers any browser.
//!
//! A session is stored under the SHA-256 of its id (the cookie's value, which is never
//! stored), with the email it belongs to, the CSRF token of its forms and when it ends. Making
//! ids and tokens is the server's; this module keeps the rows. A shared secret is made once,
//! by whichever instance asks first ([`shared_secret`]); the others read that one.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entity::{server_secret, web_session};
use crate::error::Result;

/// A stored web session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Whose it is.
    pub email: String,
    /// The CSRF token of its forms.
    pub csrf: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Stores a session under `id_sha256` (the hash of its id), pruning the expired ones.
pub async fn insert(
    conn: &impl ConnectionTrait,
    id_sha256: &str,
    row: &SessionRow,
    now: DateTime<Utc>,
) -> Result<()> {
    prune(conn, now).await?;
    web_session::Entity::insert(web_session::ActiveModel {
        id_sha256: Set(id_sha256.to_string()),
        email: Set(row.email.clone()),
        csrf: Set(row.csrf.clone()),
        expires_at: Set(row.expires_at),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The live session stored under `id_sha256`; `None` when there is none or it has expired
/// (an expired one is deleted).
pub async fn get(
    conn: &impl ConnectionTrait,
    id_sha256: &str,
    now: DateTime<Utc>,
) -> Result<Option<SessionRow>> {
    let Some(m) = web_session::Entity::find_by_id(id_sha256.to_string())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if m.expires_at <= now {
        delete(conn, id_sha256).await?;
        return Ok(None);
    }
    Ok(Some(SessionRow {
        email: m.email,
        csrf: m.csrf,
        expires_at: m.expires_at,
    }))
}

/// Ends a session (sign-out).
pub async fn delete(conn: &impl ConnectionTrait, id_sha256: &str) -> Result<()> {
    web_session::Entity::delete_by_id(id_sha256.to_string())
        .exec(conn)
        .await?;
    Ok(())
}

/// Ends every session of `email` (the user was removed); returns how many there were.
pub async fn delete_for_email(conn: &impl ConnectionTrait, email: &str) -> Result<u64> {
    Ok(web_session::Entity::delete_many()
        .filter(web_session::Column::Email.eq(email))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Deletes the sessions that have expired by `now`.
pub async fn prune(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64> {
    Ok(web_session::Entity::delete_many()
        .filter(web_session::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?
        .rows_affected)
}

/// The secret named `name` shared by every instance: `candidate` if none was stored yet (it is
/// stored), else the one stored first. Two instances asking at once get the same answer: the
/// insert of the second does nothing (primary key), and both read the row back.
pub async fn shared_secret(
    conn: &impl ConnectionTrait,
    name: &str,
    candidate: &[u8],
    now: DateTime<Utc>,
) -> Result<Vec<u8>> {
    server_secret::Entity::insert(server_secret::ActiveModel {
        name: Set(name.to_string()),
        secret: Set(candidate.to_vec()),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(server_secret::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    let m = server_secret::Entity::find_by_id(name.to_string())
        .one(conn)
        .await?
        .ok_or_else(|| {
            crate::error::StoreError::Corrupt(format!("server secret {name} vanished"))
        })?;
    Ok(m.secret)
}
