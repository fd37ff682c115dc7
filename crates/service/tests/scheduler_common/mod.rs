//! Shared set-up of the scheduler, watch and crash tests: the demo's set-up for a procedure
//! ([`rekey_service::demo::prepare_with`]: a tenant with its three roles, an alias with a key
//! listed by a signer step, a receiver with the procedure's profile that trusts it) plus a
//! receiver contact who is not a user; and readers for the outbox and timers.

#![allow(dead_code)] // each test file uses a part

use chrono::{DateTime, Duration, TimeZone, Utc};
use rekey_engine::{Catalog, Event, ProcedureId, Renewal, Role, StepKind};
use rekey_model::Email;
use rekey_service::{Outcome, Service, ServiceError, StartRequest, demo};
use rekey_store::Store;
use rekey_store::timers::Timer;
use uuid::Uuid;

pub use rekey_service::demo::{DEVELOPER, Setup, TENANT_ADMIN, receiver_admin};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// The demo's set-up of `p` with a 2048-bit key whose certificate runs from `not_before` for
/// `days`, and [`receiver_contact`] added to the receiver.
pub async fn setup_with(
    store: &Store,
    p: ProcedureId,
    not_before: DateTime<Utc>,
    days: u32,
) -> Result<Setup, BoxError> {
    let s = demo::prepare_with(&service(store.clone()), p, 2048, not_before, days).await?;
    let contact = Email::parse(&receiver_contact(p)).map_err(|e| e.to_string())?;
    store
        .add_receiver_admin(s.tenant, &s.receiver_name, &contact, "test")
        .await?;
    Ok(s)
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
            StartRequest {
                auto_approve,
                ..s.start_request(2048)
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
        Role::Signer => unreachable!("no procedure step or notice is a signer's"),
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
        Role::Signer => unreachable!("no procedure step or notice is a signer's"),
    }
}

/// One outbox row: (kind, step, recipient).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Mail {
    pub kind: String,
    pub step: Option<String>,
    pub to: String,
}

/// Every outbox row of a renewal, sorted.
pub async fn mails(store: &Store, renewal: Uuid) -> Result<Vec<Mail>, BoxError> {
    let rows = rekey_store::outbox::of_renewal(store.db(), renewal).await?;
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
pub async fn timers(store: &Store, renewal: Uuid) -> Result<Vec<Timer>, BoxError> {
    Ok(rekey_store::timers::of_renewal(store.db(), renewal).await?)
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
                        fingerprint: r
                            .new_cert
                            .unwrap_or(rekey_engine::Fingerprint::from_bytes([0xee; 32])),
                    },
                    now,
                )
                .await?
        }
        _ => return Err(format!("step {due} is due but nobody can act on it").into()),
    };
    Ok(Some(out))
}
