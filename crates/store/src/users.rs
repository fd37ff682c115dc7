//! Users, their roles, and API tokens.
//!
//! A user is an email address with grants: `tenant_admin` or `integration_developer` of a
//! tenant, `receiver_admin` of a receiver, `signer` of a flow (its `scope_id` is the flow's id,
//! its `tenant_id` the flow's tenant). API tokens are 256 random bits handed out once as
//! base64url; only their SHA-256 is stored, and a token is looked up by hashing what is
//! presented. A token may carry an expiry; an expired or revoked one is refused with its own
//! error so the caller can say which. Removing a user ([`remove`]) takes their roles, revokes
//! their tokens, ends their web sessions and uses up their email links in one transaction.
//! This module records who holds what; deciding who may do what is the engine's.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::audit::{self, AuditRecord};
use crate::db::now;
use crate::entity::{
    api_token, flow, idempotency_key, link_token, receiver, renewal, user, user_role,
};
use crate::error::{Result, StoreError};
use crate::tenants;
use rekey_model::{Email, FlowId, Grant, ReceiverId, Role, TenantId, TokenId, UserId};

/// A user and the grants they hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its email address (unique).
    pub email: Email,
    /// Roles held, sorted.
    pub grants: Vec<Grant>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl User {
    /// Whether the user holds `grant`.
    pub fn holds(&self, grant: &Grant) -> bool {
        self.grants.contains(grant)
    }
}

/// A freshly created API token: the secret is shown once and never stored.
pub struct NewApiToken {
    /// The token's id (for listing and revoking).
    pub id: TokenId,
    /// The secret, base64url without padding (43 characters).
    pub token: Zeroizing<String>,
}

impl std::fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewApiToken({})", self.id)
    }
}

/// What is stored about an API token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiTokenInfo {
    /// Its id.
    pub id: TokenId,
    /// Whose it is.
    pub user: UserId,
    /// A label given at creation.
    pub label: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it stops working (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn grant_from_model(m: &user_role::Model) -> Result<Grant> {
    let role: Role = m.role.parse().map_err(corrupt)?;
    Ok(match role {
        Role::TenantAdmin => Grant::TenantAdmin {
            tenant: TenantId::from_uuid(m.scope_id),
        },
        Role::IntegrationDeveloper => Grant::IntegrationDeveloper {
            tenant: TenantId::from_uuid(m.scope_id),
        },
        Role::ReceiverAdmin => Grant::ReceiverAdmin {
            receiver: ReceiverId::from_uuid(m.scope_id),
        },
        Role::Signer => Grant::Signer {
            tenant: TenantId::from_uuid(m.tenant_id),
            flow: FlowId::from_uuid(m.scope_id),
        },
    })
}

async fn load(conn: &impl ConnectionTrait, m: user::Model) -> Result<User> {
    let roles = user_role::Entity::find()
        .filter(user_role::Column::UserId.eq(m.id))
        .all(conn)
        .await?;
    let mut grants = roles
        .iter()
        .map(grant_from_model)
        .collect::<Result<Vec<_>>>()?;
    grants.sort();
    Ok(User {
        id: UserId::from_uuid(m.id),
        email: Email::parse(&m.email).map_err(corrupt)?,
        grants,
        created_at: m.created_at,
    })
}

/// Registers a user; refuses an email already registered.
pub async fn add(txn: &DatabaseTransaction, email: &Email, actor: &str) -> Result<User> {
    audit::lock_head(txn).await?;
    let taken = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(txn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::DuplicateUser(email.clone()));
    }
    let id = UserId::random();
    let at = now();
    user::Entity::insert(user::ActiveModel {
        id: Set(id.as_uuid()),
        email: Set(email.to_string()),
        created_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "user.add",
            tenant: None,
            subject: format!("user {email}"),
            before: String::new(),
            after: format!("id {id}"),
        },
    )
    .await?;
    Ok(User {
        id,
        email: email.clone(),
        grants: Vec::new(),
        created_at: at,
    })
}

/// A user by id.
pub async fn get(conn: &impl ConnectionTrait, id: UserId) -> Result<User> {
    let m = user::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownUser(id.to_string()))?;
    load(conn, m).await
}

/// A user by email.
pub async fn by_email(conn: &impl ConnectionTrait, email: &Email) -> Result<User> {
    let m = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownUser(email.to_string()))?;
    load(conn, m).await
}

/// The id of the user registered under `address` exactly as written (a mail recipient), if
/// any: `None` for an address that is not a user's, including one that is not a valid email.
pub async fn id_of_address(conn: &impl ConnectionTrait, address: &str) -> Result<Option<UserId>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(address))
        .one(conn)
        .await?
        .map(|u| UserId::from_uuid(u.id)))
}

/// Every user, by email.
pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<User>> {
    let models = user::Entity::find()
        .order_by_asc(user::Column::Email)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        out.push(load(conn, m).await?);
    }
    Ok(out)
}

/// The tenant a grant's scope belongs to (checking that the scope exists), with the receiver
/// or flow id the row keeps.
async fn scope_tenant(
    conn: &impl ConnectionTrait,
    grant: &Grant,
) -> Result<(TenantId, Option<uuid::Uuid>)> {
    match grant {
        Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => {
            tenants::ensure(conn, *tenant).await?;
            Ok((*tenant, None))
        }
        Grant::ReceiverAdmin { receiver: r } => {
            let m = receiver::Entity::find_by_id(r.as_uuid())
                .one(conn)
                .await?
                .ok_or_else(|| StoreError::UnknownReceiverId(r.to_string()))?;
            Ok((TenantId::from_uuid(m.tenant_id), Some(m.id)))
        }
        Grant::Signer { tenant, flow: f } => {
            flow::Entity::find_by_id(f.as_uuid())
                .filter(flow::Column::TenantId.eq(tenant.as_uuid()))
                .one(conn)
                .await?
                .ok_or_else(|| StoreError::UnknownFlowId(f.to_string()))?;
            Ok((*tenant, None))
        }
    }
}

/// Gives a user a role in a scope; refuses one already held.
pub async fn grant(
    txn: &DatabaseTransaction,
    user_id: UserId,
    grant: Grant,
    actor: &str,
) -> Result<User> {
    audit::lock_head(txn).await?;
    let u = get(txn, user_id).await?;
    let (tenant, receiver_id) = scope_tenant(txn, &grant).await?;
    if u.holds(&grant) {
        return Err(StoreError::DuplicateGrant {
            user: u.email,
            grant: grant.to_string(),
        });
    }
    user_role::Entity::insert(user_role::ActiveModel {
        user_id: Set(user_id.as_uuid()),
        role: Set(grant.role().as_str().to_string()),
        scope_id: Set(grant.scope_id()),
        tenant_id: Set(tenant.as_uuid()),
        receiver_id: Set(receiver_id),
        flow_id: Set(grant.flow().map(|f| f.as_uuid())),
        created_at: Set(now()),
    })
    .exec_without_returning(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "user.grant",
            tenant: Some(tenant),
            subject: format!("user {}", u.email),
            before: String::new(),
            after: grant.to_string(),
        },
    )
    .await?;
    get(txn, user_id).await
}

/// Takes a role in a scope away from a user.
pub async fn revoke(
    txn: &DatabaseTransaction,
    user_id: UserId,
    grant: Grant,
    actor: &str,
) -> Result<User> {
    audit::lock_head(txn).await?;
    let u = get(txn, user_id).await?;
    if !u.holds(&grant) {
        return Err(StoreError::UnknownGrant {
            user: u.email,
            grant: grant.to_string(),
        });
    }
    check_not_last_admin(txn, &u, &grant).await?;
    let (tenant, _) = scope_tenant(txn, &grant).await?;
    user_role::Entity::delete_many()
        .filter(user_role::Column::UserId.eq(user_id.as_uuid()))
        .filter(user_role::Column::Role.eq(grant.role().as_str()))
        .filter(user_role::Column::ScopeId.eq(grant.scope_id()))
        .exec(txn)
        .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "user.revoke",
            tenant: Some(tenant),
            subject: format!("user {}", u.email),
            before: grant.to_string(),
            after: String::new(),
        },
    )
    .await?;
    get(txn, user_id).await
}

/// Every user holding `grant`, by email (who gets a task's email, who may complete it).
pub async fn holders(conn: &impl ConnectionTrait, grant: &Grant) -> Result<Vec<User>> {
    let roles = user_role::Entity::find()
        .filter(user_role::Column::Role.eq(grant.role().as_str()))
        .filter(user_role::Column::ScopeId.eq(grant.scope_id()))
        .all(conn)
        .await?;
    let ids: Vec<uuid::Uuid> = roles.iter().map(|r| r.user_id).collect();
    let models = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .order_by_asc(user::Column::Email)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        out.push(load(conn, m).await?);
    }
    Ok(out)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates an API token for a user, working until `expires_at` (`None`: until revoked). The
/// secret is in the result only.
pub async fn create_token(
    txn: &DatabaseTransaction,
    user_id: UserId,
    label: &str,
    expires_at: Option<DateTime<Utc>>,
    actor: &str,
) -> Result<NewApiToken> {
    audit::lock_head(txn).await?;
    let u = get(txn, user_id).await?;
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| crate::kek::KekError::Random(e.to_string()))?;
    let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_ref()));
    let id = TokenId::random();
    let label: String = label
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    api_token::Entity::insert(api_token::ActiveModel {
        id: Set(id.as_uuid()),
        token_sha256: Set(token_hash(&token)),
        user_id: Set(user_id.as_uuid()),
        label: Set(label.clone()),
        created_at: Set(now()),
        revoked_at: Set(None),
        expires_at: Set(expires_at),
    })
    .exec_without_returning(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "user.token.create",
            tenant: None,
            subject: format!("user {}", u.email),
            before: String::new(),
            after: match expires_at {
                Some(t) => format!("token {id} {label:?} expires {}", t.to_rfc3339()),
                None => format!("token {id} {label:?}"),
            },
        },
    )
    .await?;
    Ok(NewApiToken { id, token })
}

/// The user a presented token belongs to at `now`: [`StoreError::UnknownToken`] if no token
/// has this secret, [`StoreError::RevokedToken`] or [`StoreError::ExpiredToken`] if it no
/// longer works.
pub async fn user_for_token(
    conn: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
) -> Result<User> {
    let t = api_token::Entity::find()
        .filter(api_token::Column::TokenSha256.eq(token_hash(token.trim())))
        .one(conn)
        .await?
        .ok_or(StoreError::UnknownToken)?;
    if t.revoked_at.is_some() {
        return Err(StoreError::RevokedToken);
    }
    if t.expires_at.is_some_and(|e| e <= now) {
        return Err(StoreError::ExpiredToken);
    }
    get(conn, UserId::from_uuid(t.user_id)).await
}

/// Revokes a token; it no longer authenticates. With `owner`, only a token of that user
/// (someone revoking their own): another's is answered as unknown.
/// [`StoreError::UnknownTokenId`] names an id that is no live token.
pub async fn revoke_token(
    txn: &DatabaseTransaction,
    id: TokenId,
    owner: Option<UserId>,
    actor: &str,
) -> Result<()> {
    audit::lock_head(txn).await?;
    let t = api_token::Entity::find_by_id(id.as_uuid())
        .filter(api_token::Column::RevokedAt.is_null())
        .one(txn)
        .await?
        .filter(|t| owner.is_none_or(|o| o.as_uuid() == t.user_id))
        .ok_or_else(|| StoreError::UnknownTokenId(id.to_string()))?;
    let u = get(txn, UserId::from_uuid(t.user_id)).await?;
    api_token::Entity::update_many()
        .col_expr(api_token::Column::RevokedAt, Expr::value(Some(now())))
        .filter(api_token::Column::Id.eq(id.as_uuid()))
        .exec(txn)
        .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "user.token.revoke",
            tenant: None,
            subject: format!("user {}", u.email),
            before: format!("token {id}"),
            after: String::new(),
        },
    )
    .await?;
    Ok(())
}

/// Refuses taking `grant` from its holder when it is the last tenant_admin grant of a tenant
/// with a running renewal: nobody would be left to approve, cancel or roll it back.
async fn check_not_last_admin(
    conn: &impl ConnectionTrait,
    user: &User,
    grant: &Grant,
) -> Result<()> {
    let Grant::TenantAdmin { tenant } = grant else {
        return Ok(());
    };
    let admins = holders(conn, grant).await?;
    if admins.iter().any(|a| a.id != user.id) {
        return Ok(());
    }
    let running = renewal::Entity::find()
        .filter(renewal::Column::TenantId.eq(tenant.as_uuid()))
        .filter(renewal::Column::Status.eq("running"))
        .all(conn)
        .await?
        .len();
    if running > 0 {
        return Err(StoreError::LastTenantAdmin {
            user: user.email.clone(),
            tenant: *tenant,
            running,
        });
    }
    Ok(())
}

/// Removes a user: their roles go, their API tokens are revoked and then deleted, their web
/// sessions end, their unused email links stop working, and the user row goes; one audit
/// entry per tenant they held a role in, plus one for the user. Refused (nothing changed) when
/// it would take the last tenant administrator from a tenant with a running renewal.
pub async fn remove(txn: &DatabaseTransaction, user_id: UserId, actor: &str) -> Result<User> {
    audit::lock_head(txn).await?;
    let u = get(txn, user_id).await?;
    for g in &u.grants {
        check_not_last_admin(txn, &u, g).await?;
    }
    let at = now();
    for g in &u.grants {
        let (tenant, _) = scope_tenant(txn, g).await?;
        audit::append(
            txn,
            AuditRecord {
                actor,
                action: "user.revoke",
                tenant: Some(tenant),
                subject: format!("user {}", u.email),
                before: g.to_string(),
                after: String::new(),
            },
        )
        .await?;
    }
    user_role::Entity::delete_many()
        .filter(user_role::Column::UserId.eq(user_id.as_uuid()))
        .exec(txn)
        .await?;
    let tokens = api_token::Entity::delete_many()
        .filter(api_token::Column::UserId.eq(user_id.as_uuid()))
        .exec(txn)
        .await?
        .rows_affected;
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::UserId.eq(user_id.as_uuid()))
        .exec(txn)
        .await?;
    // The links stay (their hashes are evidence of what was sent) but are used up and no
    // longer name the user.
    let links = link_token::Entity::update_many()
        .col_expr(link_token::Column::UsedAt, Expr::value(Some(at)))
        .filter(link_token::Column::UserId.eq(user_id.as_uuid()))
        .filter(link_token::Column::UsedAt.is_null())
        .exec(txn)
        .await?
        .rows_affected;
    link_token::Entity::update_many()
        .col_expr(
            link_token::Column::UserId,
            Expr::value(Option::<uuid::Uuid>::None),
        )
        .filter(link_token::Column::UserId.eq(user_id.as_uuid()))
        .exec(txn)
        .await?;
    let sessions = crate::sessions::delete_for_email(txn, u.email.as_str()).await?;
    user::Entity::delete_by_id(user_id.as_uuid())
        .exec(txn)
        .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "user.remove",
            tenant: None,
            subject: format!("user {}", u.email),
            before: format!("id {}", u.id),
            after: format!(
                "removed; {tokens} API token(s), {sessions} web session(s) and {links} unused link(s) ended"
            ),
        },
    )
    .await?;
    Ok(u)
}

/// A user's tokens (without secrets), newest first.
pub async fn tokens(conn: &impl ConnectionTrait, user_id: UserId) -> Result<Vec<ApiTokenInfo>> {
    get(conn, user_id).await?;
    Ok(api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(user_id.as_uuid()))
        .order_by_desc(api_token::Column::CreatedAt)
        .all(conn)
        .await?
        .into_iter()
        .map(|t| ApiTokenInfo {
            id: TokenId::from_uuid(t.id),
            user: UserId::from_uuid(t.user_id),
            label: t.label,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
            expires_at: t.expires_at,
        })
        .collect())
}

/// Every user of a tenant with the roles they hold there (tenant roles, and receiver_admin of
/// the tenant's receivers).
pub async fn tenant_members(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
) -> Result<Vec<(User, Vec<Grant>)>> {
    tenants::ensure(conn, tenant).await?;
    let roles = user_role::Entity::find()
        .filter(user_role::Column::TenantId.eq(tenant.as_uuid()))
        .all(conn)
        .await?;
    let mut by_user: HashMap<uuid::Uuid, Vec<Grant>> = HashMap::new();
    for r in &roles {
        by_user
            .entry(r.user_id)
            .or_default()
            .push(grant_from_model(r)?);
    }
    let mut out = Vec::with_capacity(by_user.len());
    for (id, mut grants) in by_user {
        grants.sort();
        out.push((get(conn, UserId::from_uuid(id)).await?, grants));
    }
    out.sort_by(|a, b| a.0.email.cmp(&b.0.email));
    Ok(out)
}
