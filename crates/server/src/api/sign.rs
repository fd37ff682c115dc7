//! `POST /api/sign`: signs a payload as a flow's signer step signs it now — the HTTP side of
//! `rekey sign --flow`, through the same [`rekey_service::Service::sign`]. Systems that use
//! rekey as their signer call it with a service user's token holding `signer` of their flow,
//! so a renewal that changes the step's Signer Parameters table takes effect for them at once.
//!
//! The body is JSON (the payload Base64-encoded), so that every refusal can name its field as
//! the other routes do; the answer is the SignedData itself, DER (`application/pkcs7-mime`) or
//! Base64 text, with headers naming the aliases that signed.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekey_model::{Alias, FlowName, StepName, TenantId, TenantName};
use rekey_service::{ServiceError, SignRequest};
use rekey_store::{OutputChoice, StoreError};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ApiBytes, ApiUser, body, schema};
use crate::{ApiError, AppState, now};

/// What to sign and as which flow's step.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignBody {
    /// The tenant (name); may be left out when the caller holds roles in one tenant only.
    tenant: Option<String>,
    /// The flow (name) whose signer step signs.
    flow: String,
    /// The signer step (name) of the flow.
    step: String,
    /// The payload, Base64 (RFC 4648, with padding; line breaks are ignored).
    payload: String,
    /// Leave the content out of the SignedData (`true`) or carry it (`false`); by default as
    /// the step is configured.
    detached: Option<bool>,
    /// `der` or `base64`; by default as the step is configured.
    #[schema(value_type = Option<Encoding>)]
    encoding: Option<String>,
}

/// How the SignedData is answered.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // describes the request; parsed by `encoding`
pub(crate) enum Encoding {
    /// DER bytes, `application/pkcs7-mime`.
    Der,
    /// Base64 text of the DER bytes, `text/plain`.
    Base64,
}

fn encoding(s: &str) -> Result<bool, ApiError> {
    match s {
        "der" => Ok(false),
        "base64" => Ok(true),
        _ => Err(ApiError::field(
            "encoding",
            format!("{s:?} is not an encoding (der or base64)"),
        )),
    }
}

/// The payload's bytes: Base64 with its line breaks and other ASCII whitespace left out.
fn payload(s: &str) -> Result<Vec<u8>, ApiError> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| ApiError::field("payload", format!("not Base64: {e}")))
}

/// The tenant the request means: the one named, or the only one the caller holds a role in.
/// A tenant the caller holds no role in is answered as one that does not exist.
async fn tenant(
    st: &AppState,
    u: &rekey_store::User,
    name: Option<&str>,
) -> Result<TenantId, ApiError> {
    let store = st.service().store();
    match name {
        Some(n) => {
            let tname = TenantName::parse(n).map_err(|e| ApiError::field("tenant", e))?;
            match store.tenant_by_name(&tname).await {
                Ok(t) => Ok(t.id),
                Err(StoreError::UnknownTenant(_)) => Err(unknown_tenant(n)),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let mut held: Vec<TenantId> = u.grants.iter().filter_map(|g| g.tenant()).collect();
            held.sort();
            held.dedup();
            match held.as_slice() {
                [one] => Ok(*one),
                [] => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "you hold no role that signs: signing takes signer of the flow, or \
                     tenant_admin or integration_developer of its tenant",
                )),
                _ => Err(ApiError::field(
                    "tenant",
                    "you hold roles in several tenants: name the tenant",
                )),
            }
        }
    }
}

fn unknown_tenant(name: &str) -> ApiError {
    ApiError::from(StoreError::UnknownTenant(format!("{name:?}"))).with_field("tenant")
}

fn aliases(v: &[Alias]) -> String {
    v.iter().map(Alias::as_str).collect::<Vec<_>>().join(", ")
}

/// `Rekey-Signers`: the aliases that signed, in table order.
pub(crate) const SIGNERS: HeaderName = HeaderName::from_static("rekey-signers");
/// `Rekey-Signature-Count`: how many SignerInfos the SignedData carries.
pub(crate) const SIGNATURE_COUNT: HeaderName = HeaderName::from_static("rekey-signature-count");
/// `Rekey-Skipped`: aliases the step lists that have no key now (left out).
pub(crate) const SKIPPED: HeaderName = HeaderName::from_static("rekey-skipped");
/// `Rekey-Detached`: whether the content was left out.
pub(crate) const DETACHED: HeaderName = HeaderName::from_static("rekey-detached");

#[utoipa::path(
    post,
    path = "/api/sign",
    tag = "signing",
    summary = "Sign a payload as a flow's signer step signs it now (signer of the flow, or tenant_admin or integration_developer of its tenant): one SignedData with a signature per listed alias that has a key",
    request_body = SignBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The SignedData: DER, or its Base64 text",
            content(
                (String = "application/pkcs7-mime"),
                (String = "text/plain"),
            ),
            headers(
                ("Rekey-Signers" = String, description = "The aliases that signed, in the step's table order, comma-separated"),
                ("Rekey-Signature-Count" = u32, description = "How many signatures (SignerInfos) the SignedData carries"),
                ("Rekey-Skipped" = String, description = "Aliases the step lists that have no key now, left out (only when there are)"),
                ("Rekey-Detached" = bool, description = "Whether the content was left out of the SignedData"),
            )
        ),
        (status = 400, description = "Bad body: a field missing, unknown or not well-formed (named), a payload that is not Base64", body = schema::Error),
        (status = 401, description = "No, unknown, revoked or expired bearer token", body = schema::Error),
        (status = 403, description = "The user may not sign as this flow (it is not told whether the flow exists)", body = schema::Error),
        (status = 404, description = "Unknown tenant (or one the user holds no role in), flow or step", body = schema::Error),
        (status = 409, description = "None of the step's aliases has a key: nothing can sign", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn sign(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    ApiBytes(bytes): ApiBytes,
) -> Result<Response, ApiError> {
    let b: SignBody = body(&bytes)?;
    let flow = FlowName::parse(&b.flow).map_err(|e| ApiError::field("flow", e))?;
    let step = StepName::parse(&b.step).map_err(|e| ApiError::field("step", e))?;
    let base64 = b.encoding.as_deref().map(encoding).transpose()?;
    let payload = payload(&b.payload)?;
    let tenant = tenant(&st, &u, b.tenant.as_deref()).await?;
    let req = SignRequest {
        tenant,
        flow,
        step,
        choice: OutputChoice {
            detached: b.detached,
            base64,
        },
    };
    // The token's user and roles were read to authenticate: they are the actor.
    let actor = rekey_engine::Actor::new(u.email.to_string(), u.grants.clone());
    let signed = match st.service().sign_as(&actor, &req, payload, now()).await {
        Ok(s) => s,
        Err(ServiceError::UnknownScope(_)) => {
            return Err(unknown_tenant(b.tenant.as_deref().unwrap_or_default()));
        }
        // The store names the tenant by id; the caller named it (or holds roles in it alone).
        Err(ServiceError::Store(StoreError::UnknownFlow { flow, .. })) => {
            return Err(
                ApiError::not_found(format!("unknown flow {:?}", flow.as_str())).with_field("flow"),
            );
        }
        Err(ServiceError::Store(e @ StoreError::UnknownStep { .. })) => {
            return Err(ApiError::from(e).with_field("step"));
        }
        Err(e) => return Err(e.into()),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if signed.options.base64 {
            "text/plain; charset=us-ascii"
        } else {
            "application/pkcs7-mime; smime-type=signed-data"
        }),
    );
    headers.insert(SIGNATURE_COUNT, HeaderValue::from(signed.signers.len()));
    headers.insert(
        DETACHED,
        HeaderValue::from_static(if signed.options.detached {
            "true"
        } else {
            "false"
        }),
    );
    // Aliases are visible ASCII (the model's rule), so they are valid header values.
    let value =
        |v: &[Alias]| HeaderValue::from_str(&aliases(v)).map_err(|e| ApiError::internal(&e));
    headers.insert(SIGNERS, value(&signed.signers)?);
    if !signed.skipped.is_empty() {
        headers.insert(SKIPPED, value(&signed.skipped)?);
    }
    Ok((StatusCode::OK, headers, signed.output).into_response())
}
