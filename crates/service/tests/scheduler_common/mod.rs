//! Shared set-up of the scheduler, watch and crash tests: a tenant with its three roles, an
//! alias with a key listed by a signer step, a receiver with the procedure's profile that
//! trusts it; and readers for the outbox and timers.

#![allow(dead_code)] // each test file uses a part

use chrono::{DateTime, Duration, TimeZone, Utc};
use rekey_crypto::{KeyBits, KeyPair, self_signed};
use rekey_engine::{Catalog, CertId, Event, ProcedureId, Renewal, Role, StepKind};
use rekey_service::{Outcome, Service, ServiceError};
use rekey_store::entity::{outbox, timer};
use rekey_store::{
    Alias, Email, FlowName, Grant, KeyMaterial, ReceiverId, ReceiverName, ReceiverProfile,
    SignerParams, StepName, StepOptions, Store, TenantId, TenantName,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const TENANT_ADMIN: &str = "admin@tenant.example";
pub const DEVELOPER: &str = "dev@tenant.example";

/// The receiver administrator (a user) of procedure `p`'s receiver.
pub fn receiver_admin(p: ProcedureId) -> String {
    format!("ops@{p}.receiver.example")
}

/// A contact address of the receiver that is not a user.
pub fn receiver_contact(p: ProcedureId) -> String {
    format!("contact@{p}.receiver.example")
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date")
}

pub fn service(store: Store) -> Service {
    Service::new(store, Catalog::builtin().expect("built-in workflows"))
}

/// What [`setup`] made.
#[derive(Debug, Clone)]
pub struct Setup {
    pub tenant: TenantId,
    pub receiver: ReceiverId,
    pub receiver_name: ReceiverName,
    pub flow: FlowName,
    pub step: StepName,
    pub alias: String,
    pub procedure: ProcedureId,
}

fn input<T>(r: Result<T, rekey_store::InvalidInput>) -> Result<T, BoxError> {
    r.map_err(|e| e.to_string().into())
}

async fn user(store: &Store, email: &str, grant: Grant) -> Result<(), BoxError> {
    let e = input(Email::parse(email))?;
    let u = match store.user_by_email(&e).await {
        Ok(u) => u,
        Err(rekey_store::StoreError::UnknownUser { .. }) => store.add_user(&e, "test").await?,
        Err(other) => return Err(other.into()),
    };
    if !u.grants.contains(&grant) {
        store.grant(u.id, grant, "test").await?;
    }
    Ok(())
}

/// The tenant `name` (created if new) with [`TENANT_ADMIN`] and [`DEVELOPER`].
pub async fn tenant(store: &Store, name: &str) -> Result<TenantId, BoxError> {
    let n = input(TenantName::parse(name))?;
    let t = match store.tenant_by_name(&n).await {
        Ok(t) => t,
        Err(rekey_store::StoreError::UnknownTenant { .. }) => {
            store.create_tenant(&n, "test").await?
        }
        Err(other) => return Err(other.into()),
    };
    user(store, TENANT_ADMIN, Grant::TenantAdmin { tenant: t.id }).await?;
    user(
        store,
        DEVELOPER,
        Grant::IntegrationDeveloper { tenant: t.id },
    )
    .await?;
    Ok(t.id)
}

/// A fresh alias with a 2048-bit key whose certificate runs from `not_before` for `days`,
/// listed by a new signer step, and a receiver with `p`'s profile trusting it.
pub async fn setup_with(
    store: &Store,
    p: ProcedureId,
    not_before: DateTime<Utc>,
    days: u32,
) -> Result<Setup, BoxError> {
    let tenant = tenant(store, "sched").await?;
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let alias = format!("{p}-{run}");
    let a = input(Alias::parse(&alias))?;
    let key = KeyPair::generate(KeyBits::try_from(2048u32)?)?;
    let cert = self_signed(&key, &format!("CN={p} signer"), not_before, days)?;
    store
        .add_key(
            tenant,
            &a,
            &KeyMaterial::new(&a, key, vec![cert.clone()])?,
            "test",
        )
        .await?;
    let flow = input(FlowName::parse(&format!("{p}-orders-{run}")))?;
    let step = input(StepName::parse("sign"))?;
    store.add_flow(tenant, &flow, "test").await?;
    store
        .add_step(
            tenant,
            &flow,
            &step,
            StepOptions {
                detached: false,
                base64: false,
            },
            "test",
        )
        .await?;
    let mut rows = vec![a.clone()];
    if p == ProcedureId::PreparedSecondAlias {
        rows.push(input(Alias::parse(&format!("{alias}-next")))?);
    }
    for alias in rows {
        let params = SignerParams {
            alias,
            digest: rekey_crypto::DigestAlg::Sha256,
            include_certs: true,
            include_signing_time: true,
        };
        store.add_row(tenant, &flow, &step, &params, "test").await?;
    }
    let profile = match p {
        ProcedureId::DualTrust => ReceiverProfile {
            verifies_multiple_keys: true,
            accepts_multiple_signatures: false,
        },
        ProcedureId::DualSignature | ProcedureId::PreparedSecondAlias => ReceiverProfile {
            verifies_multiple_keys: false,
            accepts_multiple_signatures: true,
        },
        ProcedureId::DowntimeWindow => ReceiverProfile {
            verifies_multiple_keys: false,
            accepts_multiple_signatures: false,
        },
    };
    let receiver_name = input(ReceiverName::parse(&format!("{p}-receiver-{run}")))?;
    let receiver = store
        .add_receiver(tenant, &receiver_name, profile, "test")
        .await?;
    store
        .trust_certificate(tenant, &receiver_name, &cert, "test")
        .await?;
    store
        .add_receiver_admin(
            tenant,
            &receiver_name,
            &input(Email::parse(&receiver_contact(p)))?,
            "test",
        )
        .await?;
    user(
        store,
        &receiver_admin(p),
        Grant::ReceiverAdmin {
            receiver: receiver.id,
        },
    )
    .await?;
    Ok(Setup {
        tenant,
        receiver: receiver.id,
        receiver_name,
        flow,
        step,
        alias,
        procedure: p,
    })
}

/// [`setup_with`] for a certificate valid from 335 days before `now` for a year.
pub async fn setup(store: &Store, p: ProcedureId, now: DateTime<Utc>) -> Result<Setup, BoxError> {
    setup_with(store, p, now - Duration::days(335), 365).await
}

/// Starts `p` on `s` as the tenant administrator.
pub async fn start(
    service: &Service,
    s: &Setup,
    auto_approve: bool,
    now: DateTime<Utc>,
) -> Result<Outcome, ServiceError> {
    service
        .start(
            rekey_service::StartRequest {
                tenant: s.tenant,
                receiver: s.receiver,
                alias: s.alias.clone(),
                new_alias: None,
                procedure: Some(s.procedure),
                bits: 2048,
                ca_signed: false,
                auto_approve,
            },
            TENANT_ADMIN,
            now,
        )
        .await
}

/// The people emailed for `role` of procedure `p`'s receiver, sorted.
pub fn recipients(p: ProcedureId, role: Role) -> Vec<String> {
    let mut v = match role {
        Role::TenantAdmin => vec![TENANT_ADMIN.to_string()],
        Role::IntegrationDeveloper => vec![DEVELOPER.to_string()],
        Role::ReceiverAdmin => vec![receiver_admin(p), receiver_contact(p)],
    };
    v.sort();
    v
}

/// Who acts for `role`.
pub fn who(p: ProcedureId, role: Role) -> String {
    match role {
        Role::TenantAdmin => TENANT_ADMIN.into(),
        Role::IntegrationDeveloper => DEVELOPER.into(),
        Role::ReceiverAdmin => receiver_admin(p),
    }
}

/// One outbox row: (kind, step, recipient).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mail {
    pub kind: String,
    pub step: Option<String>,
    pub to: String,
}

/// Every outbox row of a renewal, sorted.
pub async fn mails(store: &Store, renewal: Uuid) -> Result<Vec<Mail>, BoxError> {
    let rows = outbox::Entity::find()
        .filter(outbox::Column::RenewalId.eq(renewal))
        .all(store.db())
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let v: serde_json::Value = serde_json::from_str(&r.state)?;
        out.push(Mail {
            kind: v["notice"]["kind"].as_str().unwrap_or_default().to_string(),
            step: v["notice"]["step"].as_str().map(String::from),
            to: r.recipients.clone(),
        });
    }
    out.sort();
    Ok(out)
}

/// Recipients of `kind` mail about `step`, sorted, with repeats.
pub async fn mailed(
    store: &Store,
    renewal: Uuid,
    kind: &str,
    step: &str,
) -> Result<Vec<String>, BoxError> {
    Ok(mails(store, renewal)
        .await?
        .into_iter()
        .filter(|m| m.kind == kind && m.step.as_deref() == Some(step))
        .map(|m| m.to)
        .collect())
}

/// Every timer row of a renewal.
pub async fn timers(store: &Store, renewal: Uuid) -> Result<Vec<timer::Model>, BoxError> {
    Ok(timer::Entity::find()
        .filter(timer::Column::RenewalId.eq(renewal))
        .all(store.db())
        .await?)
}

/// Does the next due step of `r` as its owner would (agreeing on a window one hour ahead);
/// `None` when nothing is due.
pub async fn perform_next(
    service: &Service,
    r: &Renewal,
    now: DateTime<Utc>,
) -> Result<Option<Outcome>, BoxError> {
    let p = r.procedure;
    let Some(due) = r.due_steps().next().map(|s| s.id.clone()) else {
        return Ok(None);
    };
    let def = service.catalog().get(p);
    let step = def.step(&due).ok_or("unknown step")?.clone();
    let out = match (step.kind, step.action, step.task) {
        (StepKind::Agreement, _, _) => {
            let start = now + Duration::hours(1);
            service
                .act(
                    r.id,
                    &who(p, step.role),
                    Event::ProposeWindow {
                        start,
                        end: start + Duration::hours(1),
                    },
                    now,
                )
                .await?;
            let other = step.with_role.unwrap_or(Role::ReceiverAdmin);
            service
                .act(r.id, &who(p, other), Event::AcceptWindow, now)
                .await?
        }
        (_, Some(_), _) => {
            service
                .act(
                    r.id,
                    &who(p, step.role),
                    Event::Approve { step: due.clone() },
                    now,
                )
                .await?
        }
        (_, _, Some(_)) => {
            service
                .act(
                    r.id,
                    &who(p, step.role),
                    Event::Complete {
                        step: due.clone(),
                        fingerprint: r.new_cert.clone().unwrap_or_else(|| CertId(String::new())),
                    },
                    now,
                )
                .await?
        }
        _ => return Err(format!("step {due} is due but nobody can act on it").into()),
    };
    Ok(Some(out))
}
