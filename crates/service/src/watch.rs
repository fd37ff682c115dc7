//! The expiry watch: for every alias a signer step lists, plans backwards from its current
//! certificate's `notAfter` and acts once the latest safe start has passed.
//!
//! latest safe start = notAfter − lead − `renew_before`, where the lead is the sum of the `due`
//! times of the procedure's steps (from `workflows/*.toml`): the procedure the receiver's
//! profile chooses when the tenant has exactly one receiver, else the longest procedure (a
//! signer step does not say which receiver its messages go to).
//!
//! Once past it, per [`Policy`]: open a renewal as rekey itself with auto-approved actions
//! (only when the receiver is known), or queue a notice to the tenant administrators (the
//! default, and the fall-back). Either happens once per alias and certificate: no second
//! renewal while one is running or after one was started for the same certificate, and the
//! notice's Message-ID is derived from tenant, alias, certificate and recipient.
//!
//! Each pass also looks at the running renewals of those certificates: when a step is overdue
//! and the steps after it, taken as planned from now, would end after the old certificate's
//! notAfter, every role of the renewal (tenant administrators, integration developers, the
//! receiver's administrators and contacts) is warned once per renewal and stalled step.
//!
//! Time comes in as an argument. Nothing here decides a renewal's steps: [`Service::start`]
//! and the engine do.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rekey_engine::{
    Procedure, ProcedureId, Renewal, RenewalStatus, Role, StepDef, StepKind, StepStatus,
};
use rekey_model::{Grant, TenantId};
use rekey_store::lease::{self, Queue};
use rekey_store::mail::{AtRiskMail, OutboxMail, WatchMail};
use rekey_store::outbox::{self, OutboxMessage};
use rekey_store::{KeystoreEntry, Receiver, StepRef, audit, flows, keystore, receivers, renewals};
use serde::Serialize;
use uuid::Uuid;

use crate::shell::commit;
use crate::{Result, Service, StartRequest, load_world};

/// What to do when an alias's latest safe start has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Queue a notice asking the tenant administrators to start a renewal.
    Notify,
    /// Open the renewal (auto-approved actions), falling back to a notice when it cannot.
    Open,
}

/// How the watch plans.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// What to do.
    pub policy: Policy,
    /// Margin before the procedure's lead time.
    pub renew_before: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            policy: Policy::Notify,
            renew_before: Duration::days(30),
        }
    }
}

/// What the watch did about one alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WatchAction {
    /// A renewal was opened.
    Opened {
        /// It.
        renewal: Uuid,
    },
    /// Tenant administrators were sent a notice.
    Notified {
        /// Emails queued.
        emails: usize,
        /// Why no renewal was opened, under [`Policy::Open`].
        reason: Option<String>,
    },
    /// A renewal for this alias is running, or was started for this certificate.
    AlreadyRenewing {
        /// The renewal.
        renewal: Uuid,
        /// Its status.
        status: String,
    },
    /// The notice went out on an earlier pass.
    AlreadyNotified,
}

impl std::fmt::Display for WatchAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchAction::Opened { renewal } => write!(f, "opened renewal {renewal}"),
            WatchAction::Notified { emails, reason } => {
                write!(f, "notified the tenant administrators ({emails} email(s))")?;
                match reason {
                    Some(r) => write!(f, "; not opened: {r}"),
                    None => Ok(()),
                }
            }
            WatchAction::AlreadyRenewing { renewal, status } => {
                write!(f, "renewal {renewal} is {status}")
            }
            WatchAction::AlreadyNotified => write!(f, "tenant administrators already notified"),
        }
    }
}

/// One alias whose latest safe start has passed.
#[derive(Debug, Clone, Serialize)]
pub struct AliasDue {
    /// Tenant.
    pub tenant: TenantId,
    /// Its name.
    pub tenant_name: String,
    /// The alias.
    pub alias: String,
    /// Its current certificate's fingerprint.
    pub fingerprint: String,
    /// Its notAfter.
    pub not_after: DateTime<Utc>,
    /// The procedure planned with (none when the receiver is not known).
    pub procedure: Option<ProcedureId>,
    /// Sum of the procedure's step lead times.
    pub lead_days: i64,
    /// notAfter − lead − renew_before.
    pub latest_start: DateTime<Utc>,
    /// What the watch did.
    pub action: WatchAction,
}

/// A running renewal that can no longer finish before its old certificate expires unless its
/// overdue step is done now — and maybe not even then.
#[derive(Debug, Clone, Serialize)]
pub struct AtRisk {
    /// The renewal.
    pub renewal: Uuid,
    /// Its tenant's name.
    pub tenant_name: String,
    /// The alias renewed.
    pub alias: String,
    /// The overdue step.
    pub step: String,
    /// Who owns it.
    pub owner: Role,
    /// When it was due.
    pub due_at: DateTime<Utc>,
    /// The old certificate's notAfter.
    pub not_after: DateTime<Utc>,
    /// When the renewal ends if the step is done now and every later step takes its planned
    /// time.
    pub finish_at: DateTime<Utc>,
    /// Warnings queued by this pass (0: every role was warned on an earlier pass).
    pub emails: usize,
}

/// One pass's result: the aliases past their latest safe start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchReport {
    /// Aliases acted on (or already being renewed).
    pub aliases: Vec<AliasDue>,
    /// Running renewals whose overdue step puts the old certificate's expiry at risk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at_risk: Vec<AtRisk>,
    /// The SAP Cloud Integration tenants read before planning, so that the pass plans from
    /// their real certificates ([`Service::sync_sap_ci`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synced: Vec<TenantSynced>,
    /// Set when this pass did nothing because another instance holds the watch's lease: until
    /// when that lease runs, at the latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_until: Option<DateTime<Utc>>,
}

/// One SAP Cloud Integration tenant's sync in a watch pass.
#[derive(Debug, Clone, Serialize)]
pub struct TenantSynced {
    /// The rekey tenant's name.
    pub tenant_name: String,
    /// What the sync found and did, when the tenant could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::sapci_sync::SyncReport>,
    /// Why it could not: the pass then plans from what rekey recorded before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The lead time of a procedure: the sum of its steps' `due` times.
pub fn lead(service: &Service, p: ProcedureId) -> Duration {
    service
        .catalog()
        .get(p)
        .steps
        .iter()
        .fold(Duration::zero(), |acc, s| acc + s.due)
}

/// The latest safe start for a certificate expiring at `not_after`.
pub fn latest_start(
    service: &Service,
    procedure: Option<ProcedureId>,
    not_after: DateTime<Utc>,
    renew_before: Duration,
) -> DateTime<Utc> {
    let lead = match procedure {
        Some(p) => lead(service, p),
        None => ProcedureId::ALL
            .iter()
            .map(|p| lead(service, *p))
            .max()
            .unwrap_or_else(Duration::zero),
    };
    not_after - lead - renew_before
}

/// One pass over every tenant's signing aliases at `now`, by the instance holding the watch's
/// lease ([`lease::claim`] on [`lease::WATCH`]): when another instance is running a pass, this
/// one does nothing and says so in [`WatchReport::skipped_until`].
pub async fn run_once(
    service: &Service,
    now: DateTime<Utc>,
    opts: &WatchOptions,
) -> Result<WatchReport> {
    let db = service.store().db();
    let owner = format!("watch@{}", std::process::id());
    // Held for [`Service::lease`], renewed while the pass runs and given back when it ends: a
    // pass that dies holds it about that long at most.
    let held = lease::claim(
        db,
        Queue::Job(lease::WATCH),
        &owner,
        now,
        service.lease(),
        1,
    )
    .await?;
    if held.rows == 0 {
        return Ok(WatchReport {
            skipped_until: Some(held.until),
            ..WatchReport::default()
        });
    }
    let kept = lease::keep(
        db.clone(),
        Queue::Job(lease::WATCH),
        held.token.clone(),
        now,
        service.lease(),
    );
    let pass = pass(service, now, opts).await;
    drop(kept);
    // Given back whether the pass succeeded or not; if this fails, the lease runs out by itself.
    let released = lease::release(db, lease::WATCH, &held.token).await;
    let report = pass?;
    released?;
    Ok(report)
}

async fn pass(service: &Service, now: DateTime<Utc>, opts: &WatchOptions) -> Result<WatchReport> {
    let db = service.store().db();
    let mut report = WatchReport::default();
    // An SAP Cloud Integration tenant is read first: its keys are planned from as it holds
    // them. One that cannot be read is reported and planned from the last record.
    for tenant in service.sap_ci_tenants() {
        let tenant_name = rekey_store::tenants::get(db, tenant)
            .await?
            .name
            .to_string();
        let synced = match service.sync_sap_ci(tenant).await {
            Ok(r) => TenantSynced {
                tenant_name,
                report: Some(r),
                error: None,
            },
            Err(e) => {
                tracing::warn!(tenant = %tenant_name, error = %e, "SAP Cloud Integration tenant not read; planning from rekey's last record");
                TenantSynced {
                    tenant_name,
                    report: None,
                    error: Some(e.to_string()),
                }
            }
        };
        report.synced.push(synced);
    }
    // Only certificates that some procedure's lead time already reaches can be due: read those
    // (by the expiry index), and only their tenants' signer steps and receivers, so that a pass
    // costs what is about to expire, not every alias ever stored.
    let max_lead = now - latest_start(service, None, now, Duration::zero());
    let reach = now + max_lead + opts.renew_before + Duration::seconds(1);
    let mut candidates: BTreeMap<TenantId, Vec<KeystoreEntry>> = BTreeMap::new();
    for e in keystore::expiring_before(db, reach).await? {
        candidates.entry(e.tenant).or_default().push(e);
    }
    for tenant in rekey_store::tenants::list(db).await? {
        let Some(due) = candidates.get(&tenant.id) else {
            continue;
        };
        let usage = flows::all_alias_usage(db, tenant.id).await?;
        let recs = receivers::list(db, tenant.id).await?;
        for (alias, used_by) in &usage {
            // An alias without a current key (a prepared one) expires nothing.
            let Some(entry) = due.iter().find(|e| &e.alias == alias).cloned() else {
                continue;
            };
            let receiver = match recs.as_slice() {
                [only] => Some(only),
                _ => None,
            };
            let procedure = match receiver {
                Some(r) => {
                    let world = load_world(db, tenant.id, r.id, alias, None, now).await?;
                    rekey_engine::choose::choose(&world, alias, None).ok()
                }
                None => None,
            };
            let latest = latest_start(service, procedure, entry.not_after, opts.renew_before);
            if now < latest {
                continue;
            }
            let plan = Plan {
                tenant_name: tenant.name.to_string(),
                used_by: used_by.first().cloned(),
                receiver,
                procedure,
            };
            let action = act(service, &entry, &plan, now, opts).await?;
            report.aliases.push(AliasDue {
                tenant: tenant.id,
                tenant_name: tenant.name.to_string(),
                alias: alias.to_string(),
                fingerprint: entry.fingerprint.to_string(),
                not_after: entry.not_after,
                procedure,
                lead_days: (entry.not_after - opts.renew_before - latest).num_days(),
                latest_start: latest,
                action,
            });
        }
        // The running renewals of the due aliases whose old certificate is still the current
        // one a signer step signs with: one indexed read per tenant with something due.
        let scope = renewals::Scope::Of {
            tenants: vec![tenant.id],
            receivers: Vec::new(),
        };
        for r in renewals::running_in(db, &scope).await? {
            if r.tenant != tenant.id || !usage.contains_key(&r.alias) {
                continue;
            }
            let Some(entry) = due
                .iter()
                .find(|e| e.alias == r.alias && Some(e.fingerprint) == r.old_cert)
            else {
                continue;
            };
            let def = service.catalog().get(r.procedure);
            let Some(stall) = stalled(&r, def, now) else {
                continue;
            };
            if stall.finish_at <= entry.not_after {
                continue;
            }
            let emails = warn(service, &r, entry, &stall, now).await?;
            report.at_risk.push(AtRisk {
                renewal: r.id,
                tenant_name: tenant.name.to_string(),
                alias: r.alias.to_string(),
                step: stall.step.id.clone(),
                owner: stall.step.role,
                due_at: stall.due_at,
                not_after: entry.not_after,
                finish_at: stall.finish_at,
                emails,
            });
        }
    }
    Ok(report)
}

/// A running renewal's overdue step, and when the renewal would end were it done now.
#[derive(Debug)]
struct Stall<'a> {
    /// The step overdue the longest.
    step: &'a StepDef,
    /// When it was due.
    due_at: DateTime<Utc>,
    /// `now` plus the planned times of the steps not yet due.
    finish_at: DateTime<Utc>,
    /// Those steps.
    remaining: Vec<&'a StepDef>,
}

/// The step of `r` overdue the longest at `now`, if one is. The steps still waiting count with
/// their full planned time (a step a condition will skip counts too: the estimate errs towards
/// warning).
fn stalled<'a>(r: &Renewal, def: &'a Procedure, now: DateTime<Utc>) -> Option<Stall<'a>> {
    let (id, due_at) = r
        .steps
        .iter()
        .filter_map(|s| match s.status {
            StepStatus::Due { due_at, .. } if due_at < now => Some((s.id.as_str(), due_at)),
            _ => None,
        })
        .min_by_key(|(_, due_at)| *due_at)?;
    let step = def.step(id)?;
    let remaining: Vec<&StepDef> = r
        .steps
        .iter()
        .filter(|s| matches!(s.status, StepStatus::Waiting))
        .filter_map(|s| def.step(&s.id))
        .collect();
    let finish_at = remaining.iter().fold(now, |at, s| at + s.due);
    Some(Stall {
        step,
        due_at,
        finish_at,
        remaining,
    })
}

/// The CLI command that does `step` of renewal `id` (the person adds `--as`).
fn step_command(step: &StepDef, id: Uuid) -> String {
    match step.kind {
        StepKind::Agreement => format!(
            "rekey window propose {id} --start <RFC 3339> --end <RFC 3339>  (or: rekey window \
             accept {id})"
        ),
        _ if step.action.is_some() => format!("rekey task approve {id}:{}", step.id),
        _ => format!(
            "rekey task complete {id}:{} --fingerprint <SHA-256 of the certificate installed>",
            step.id
        ),
    }
}

/// Queues the at-risk warning to every role of `r`, once per renewal, step and recipient;
/// returns how many were queued now.
async fn warn(
    service: &Service,
    r: &Renewal,
    old: &KeystoreEntry,
    stall: &Stall<'_>,
    now: DateTime<Utc>,
) -> Result<usize> {
    let txn = service.store().begin().await?;
    let receiver = receivers::by_id(&txn, r.receiver).await?;
    let mut to: BTreeMap<String, Vec<Role>> = BTreeMap::new();
    for (grant, role) in [
        (Grant::TenantAdmin { tenant: r.tenant }, Role::TenantAdmin),
        (
            Grant::IntegrationDeveloper { tenant: r.tenant },
            Role::IntegrationDeveloper,
        ),
        (
            Grant::ReceiverAdmin {
                receiver: r.receiver,
            },
            Role::ReceiverAdmin,
        ),
    ] {
        for u in rekey_store::users::holders(&txn, &grant).await? {
            to.entry(u.email.to_string()).or_default().push(role);
        }
    }
    // The receiver's contacts hear of its steps without an account; they hear of this too.
    for e in &receiver.admin_emails {
        let roles = to.entry(e.to_string()).or_default();
        if !roles.contains(&Role::ReceiverAdmin) {
            roles.push(Role::ReceiverAdmin);
        }
    }
    let subject = format!(
        "[rekey] Renewal of {} at risk: \"{}\" is overdue and the certificate expires {}",
        r.alias,
        stall.step.title,
        old.not_after.format("%Y-%m-%d")
    );
    let renewal = r.id.to_string();
    let mut queued = 0;
    for (recipient, roles) in to {
        let message_id = outbox::message_id(&[
            renewal.as_str(),
            stall.step.id.as_str(),
            "at-risk",
            &recipient,
        ]);
        let mail = OutboxMail::AtRisk(AtRiskMail {
            recipient: recipient.clone(),
            roles,
            renewal: r.id,
            procedure: r.procedure,
            alias: r.alias.to_string(),
            receiver: receiver.name.to_string(),
            step: stall.step.id.clone(),
            step_title: stall.step.title.clone(),
            step_role: stall.step.role,
            step_command: step_command(stall.step, r.id),
            due_at: stall.due_at,
            fingerprint: old.fingerprint.to_string(),
            not_after: old.not_after,
            finish_at: stall.finish_at,
            remaining: stall.remaining.iter().map(|s| s.title.clone()).collect(),
        });
        let message = OutboxMessage {
            tenant: r.tenant,
            renewal: Some(r.id),
            message_id,
            recipient,
            subject: subject.clone(),
            mail,
        };
        if outbox::enqueue(&txn, message, now).await? {
            queued += 1;
        }
    }
    if queued == 0 {
        return Ok(0);
    }
    audit::append(
        &txn,
        audit::AuditRecord {
            actor: rekey_engine::machine::SYSTEM,
            action: "watch.at_risk",
            tenant: Some(r.tenant),
            subject: format!("renewal {}", r.id),
            before: String::new(),
            after: format!(
                "step {} overdue since {}; the steps after it end {} as planned; certificate {} \
                 expires {}; {queued} warning(s) queued",
                stall.step.id, stall.due_at, stall.finish_at, old.fingerprint, old.not_after
            ),
        },
    )
    .await?;
    commit(txn).await?;
    Ok(queued)
}

/// A renewal of `alias` that is running, or that was started for certificate `fingerprint`.
async fn existing(service: &Service, e: &KeystoreEntry) -> Result<Option<Renewal>> {
    let rows = renewals::of_alias(service.store().db(), e.tenant, e.alias.as_str()).await?;
    for r in rows {
        if r.status == RenewalStatus::Running || r.old_cert == Some(e.fingerprint) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// What the watch knows about an alias beyond its keystore entry.
struct Plan<'a> {
    tenant_name: String,
    /// A signer step listing the alias.
    used_by: Option<StepRef>,
    /// The receiver, when the tenant has exactly one.
    receiver: Option<&'a Receiver>,
    /// The procedure planned with.
    procedure: Option<ProcedureId>,
}

async fn act(
    service: &Service,
    e: &KeystoreEntry,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
    opts: &WatchOptions,
) -> Result<WatchAction> {
    let (receiver, procedure) = (plan.receiver, plan.procedure);
    if let Some(r) = existing(service, e).await? {
        return Ok(WatchAction::AlreadyRenewing {
            renewal: r.id,
            status: r.status.as_str().into(),
        });
    }
    let mut reason = None;
    if opts.policy == Policy::Open {
        match receiver {
            Some(rec) => {
                let req = StartRequest {
                    tenant: e.tenant,
                    receiver: rec.id,
                    alias: e.alias.clone(),
                    new_alias: None,
                    procedure,
                    bits: e.key_bits.max(2048),
                    ca_signed: false,
                    auto_approve: true,
                };
                match service.start(req, rekey_engine::machine::SYSTEM, now).await {
                    Ok(o) => {
                        return Ok(WatchAction::Opened {
                            renewal: o.renewal.id,
                        });
                    }
                    Err(err) => reason = Some(err.to_string()),
                }
            }
            None => {
                reason =
                    Some("the tenant has several receivers (or none); a person must choose".into())
            }
        }
    }
    notify(service, e, plan, now, opts, reason).await
}

/// Queues the notice to every tenant administrator, once per alias and certificate.
async fn notify(
    service: &Service,
    e: &KeystoreEntry,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
    opts: &WatchOptions,
    reason: Option<String>,
) -> Result<WatchAction> {
    let txn = service.store().begin().await?;
    let admins =
        rekey_store::users::holders(&txn, &Grant::TenantAdmin { tenant: e.tenant }).await?;
    let fp = e.fingerprint.to_string();
    let latest = latest_start(service, plan.procedure, e.not_after, opts.renew_before);
    let overdue = if now > latest { " (overdue)" } else { "" };
    let subject = format!(
        "[rekey] Start renewing {}{overdue}: its certificate expires {}",
        e.alias,
        e.not_after.format("%Y-%m-%d")
    );
    let not_opened_because = reason.clone().unwrap_or_else(|| {
        "the watch runs with policy \"notify\": it tells, a tenant administrator starts the \
         renewal (with policy \"open\" it would open the renewal itself)"
            .into()
    });
    let start_command = |admin: &str| {
        let (flow, step) = plan.used_by.as_ref().map_or_else(
            || ("<flow>".to_string(), "<step>".to_string()),
            |u| (u.flow.to_string(), u.step.to_string()),
        );
        format!(
            "rekey --tenant {} renewal start --flow {flow} --step {step} --alias {} --receiver {}{} --as {admin}",
            plan.tenant_name,
            e.alias,
            plan.receiver
                .map_or_else(|| "<receiver>".to_string(), |r| r.name.to_string()),
            plan.procedure
                .map(|p| format!(" --procedure {p}"))
                .unwrap_or_default(),
        )
    };
    let mut queued = 0;
    for u in &admins {
        let to = u.email.to_string();
        let message_id = outbox::message_id(&[
            e.tenant.as_uuid().to_string().as_str(),
            e.alias.as_str(),
            &fp,
            "expiry",
            &to,
        ]);
        let mail = OutboxMail::ExpiryWatch(WatchMail {
            start_command: start_command(&to),
            recipient: to.clone(),
            alias: e.alias.to_string(),
            fingerprint: fp.clone(),
            not_after: e.not_after,
            procedure: plan.procedure,
            receiver: plan.receiver.map(|r| r.name.to_string()),
            lead_days: (e.not_after - opts.renew_before - latest).num_days(),
            renew_before_days: opts.renew_before.num_days(),
            latest_start: latest,
            not_opened_because: not_opened_because.clone(),
        });
        let message = OutboxMessage {
            tenant: e.tenant,
            renewal: None,
            message_id,
            recipient: to,
            subject: subject.clone(),
            mail,
        };
        if outbox::enqueue(&txn, message, now).await? {
            queued += 1;
        }
    }
    if queued == 0 {
        return Ok(WatchAction::AlreadyNotified);
    }
    audit::append(
        &txn,
        audit::AuditRecord {
            actor: rekey_engine::machine::SYSTEM,
            action: "watch.notify",
            tenant: Some(e.tenant),
            subject: format!("alias {}", e.alias),
            before: String::new(),
            after: format!(
                "certificate {fp} expires {}; latest safe start {latest}",
                e.not_after
            ),
        },
    )
    .await?;
    commit(txn).await?;
    Ok(WatchAction::Notified {
        emails: queued,
        reason,
    })
}
