//! `/api/tokens` and `/api/users`: a token's user listing and revoking their own API tokens,
//! and a tenant administrator taking a role from a user or removing a user.
//!
//! A tenant administrator sees only the users of the tenants they administer: a user who
//! holds no role there is answered as unknown (404), like a tenant the caller holds no role
//! in. Removing a user who also holds roles in a tenant the caller does not administer is
//! refused (403): that is for an administrator of every such tenant, or an operator's CLI.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rekey_engine::Actor;
use rekey_engine::access::holds_for;
use rekey_model::{Email, FlowName, Grant, ReceiverName, Role, TenantId, TenantName, TokenId};
use rekey_store::{StoreError, User};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ApiBytes, ApiUser, body, schema};
use crate::{ApiError, AppState};

#[utoipa::path(
    get,
    path = "/api/tokens",
    tag = "users",
    summary = "The token's user's own API tokens (never their secrets), newest first",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tokens", body = Vec<schema::ApiToken>),
        (status = 401, description = "No, unknown, revoked or expired bearer token", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn list_tokens(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
) -> Result<Response, ApiError> {
    let tokens: Vec<schema::ApiToken> = st
        .service()
        .store()
        .tokens(u.id)
        .await?
        .into_iter()
        .map(schema::ApiToken::from)
        .collect();
    Ok(Json(tokens).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/tokens/{id}",
    tag = "users",
    summary = "Revoke one of the token's user's own API tokens (this one included)",
    params(("id" = String, Path, description = "Token id (a UUID), from GET /api/tokens")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked; it no longer authenticates", body = schema::ApiToken),
        (status = 400, description = "Not a token id", body = schema::Error),
        (status = 401, description = "No, unknown, revoked or expired bearer token", body = schema::Error),
        (status = 404, description = "No live token of the user's with this id", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn revoke_token(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: TokenId = id.parse().map_err(|e| ApiError::field("id", e))?;
    let store = st.service().store();
    store.revoke_own_token(u.id, id, u.email.as_str()).await?;
    let revoked = store
        .tokens(u.id)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::internal(&"a revoked token vanished"))?;
    Ok(Json(schema::ApiToken::from(revoked)).into_response())
}

/// Taking a role from a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRoleBody {
    /// The user's email address.
    email: String,
    /// `tenant_admin`, `integration_developer`, `receiver_admin` or `signer`.
    role: String,
    /// The tenant (name) the role is held in.
    tenant: String,
    /// The receiver (name), for `receiver_admin`.
    receiver: Option<String>,
    /// The flow (name), for `signer`.
    flow: Option<String>,
}

/// Removing a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveUserBody {
    /// The user's email address.
    email: String,
}

fn actor_of(u: &User) -> Actor {
    Actor::new(u.email.to_string(), u.grants.clone())
}

/// The tenant a grant is held in.
async fn tenant_of(st: &AppState, g: &Grant) -> Result<TenantId, ApiError> {
    Ok(match g {
        Grant::TenantAdmin { tenant }
        | Grant::IntegrationDeveloper { tenant }
        | Grant::Signer { tenant, .. } => *tenant,
        Grant::ReceiverAdmin { receiver } => {
            st.service().store().receiver_by_id(*receiver).await?.tenant
        }
    })
}

/// The user under `email` when the caller administers a tenant they hold a role in; else
/// unknown (the caller may not see them).
async fn visible_user(
    st: &AppState,
    caller: &User,
    email: &str,
) -> Result<(User, BTreeSet<TenantId>), ApiError> {
    let email = Email::parse(email).map_err(|e| ApiError::field("email", e))?;
    let unknown = || ApiError::from(StoreError::UnknownUser(email.to_string())).with_field("email");
    let target = match st.service().store().user_by_email(&email).await {
        Ok(u) => u,
        Err(StoreError::UnknownUser(_)) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    let mut tenants = BTreeSet::new();
    for g in &target.grants {
        tenants.insert(tenant_of(st, g).await?);
    }
    let actor = actor_of(caller);
    if !tenants
        .iter()
        .any(|t| holds_for(&actor, Role::TenantAdmin, *t, None))
    {
        return Err(unknown());
    }
    Ok((target, tenants))
}

#[utoipa::path(
    post,
    path = "/api/users/revoke-role",
    tag = "users",
    summary = "Take a role from a user (tenant administrator of the role's tenant)",
    request_body = RevokeRoleBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked; the user's remaining roles", body = schema::UserRoles),
        (status = 400, description = "Bad body, or an email, role, tenant or receiver that is not well-formed", body = schema::Error),
        (status = 401, description = "No, unknown, revoked or expired bearer token", body = schema::Error),
        (status = 403, description = "The caller is not a tenant administrator of the tenant", body = schema::Error),
        (status = 404, description = "Unknown tenant, receiver or user, or the user does not hold the role", body = schema::Error),
        (status = 409, description = "The last tenant administrator of a tenant with running renewals", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn revoke_role(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    ApiBytes(bytes): ApiBytes,
) -> Result<Response, ApiError> {
    let b: RevokeRoleBody = body(&bytes)?;
    let store = st.service().store();
    let role: Role = b.role.parse().map_err(|e| ApiError::field("role", e))?;
    let tname = TenantName::parse(&b.tenant).map_err(|e| ApiError::field("tenant", e))?;
    let rname = b
        .receiver
        .as_deref()
        .map(ReceiverName::parse)
        .transpose()
        .map_err(|e| ApiError::field("receiver", e))?;
    let fname = b
        .flow
        .as_deref()
        .map(FlowName::parse)
        .transpose()
        .map_err(|e| ApiError::field("flow", e))?;
    let unknown_tenant = || {
        ApiError::from(StoreError::UnknownTenant(format!("{:?}", tname.as_str())))
            .with_field("tenant")
    };
    let tenant = match store.tenant_by_name(&tname).await {
        Ok(t) => t,
        Err(StoreError::UnknownTenant(_)) => return Err(unknown_tenant()),
        Err(e) => return Err(e.into()),
    };
    let actor = actor_of(&u);
    if !rekey_engine::access::may_see_scope(&actor, tenant.id, None) {
        return Err(unknown_tenant());
    }
    if !holds_for(&actor, Role::TenantAdmin, tenant.id, None) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "only a tenant_admin of tenant {:?} may take roles there",
                tname.as_str()
            ),
        ));
    }
    if fname.is_some() && role != Role::Signer {
        return Err(ApiError::field("flow", "a flow only goes with signer"));
    }
    let grant = match (role, rname) {
        (Role::Signer, None) => {
            let Some(f) = fname else {
                return Err(ApiError::field("flow", "signer needs a flow"));
            };
            let flow = store
                .flow(tenant.id, &f)
                .await
                .map_err(|e| ApiError::from(e).with_field("flow"))?;
            Grant::Signer {
                tenant: tenant.id,
                flow: flow.id,
            }
        }
        (Role::ReceiverAdmin, Some(r)) => {
            let rec = store
                .receiver(tenant.id, &r)
                .await
                .map_err(|e| ApiError::from(e).with_field("receiver"))?;
            Grant::ReceiverAdmin { receiver: rec.id }
        }
        (Role::ReceiverAdmin, None) => {
            return Err(ApiError::field(
                "receiver",
                "receiver_admin needs a receiver",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::field(
                "receiver",
                "a receiver only goes with receiver_admin",
            ));
        }
        (Role::TenantAdmin, None) => Grant::TenantAdmin { tenant: tenant.id },
        (Role::IntegrationDeveloper, None) => Grant::IntegrationDeveloper { tenant: tenant.id },
    };
    let (target, _) = visible_user(&st, &u, &b.email).await?;
    let after = store.revoke(target.id, grant, u.email.as_str()).await?;
    Ok(Json(schema::UserRoles::of(&after)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/users/remove",
    tag = "users",
    summary = "Remove a user: roles, API tokens, web sessions and email links end at once",
    request_body = RemoveUserBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed; the roles they held", body = schema::UserRoles),
        (status = 400, description = "Bad body or an email that is not well-formed", body = schema::Error),
        (status = 401, description = "No, unknown, revoked or expired bearer token", body = schema::Error),
        (status = 403, description = "The user holds roles in a tenant the caller does not administer", body = schema::Error),
        (status = 404, description = "No such user in a tenant the caller administers", body = schema::Error),
        (status = 409, description = "The last tenant administrator of a tenant with running renewals", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn remove_user(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    ApiBytes(bytes): ApiBytes,
) -> Result<Response, ApiError> {
    let b: RemoveUserBody = body(&bytes)?;
    let (target, tenants) = visible_user(&st, &u, &b.email).await?;
    let actor = actor_of(&u);
    if tenants
        .iter()
        .any(|t| !holds_for(&actor, Role::TenantAdmin, *t, None))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} also holds roles in a tenant you do not administer; take your tenant's roles \
                 from them instead (POST /api/users/revoke-role)",
                target.email
            ),
        ));
    }
    let removed = st
        .service()
        .store()
        .remove_user(target.id, u.email.as_str())
        .await?;
    Ok(Json(schema::UserRoles::of(&removed)).into_response())
}
