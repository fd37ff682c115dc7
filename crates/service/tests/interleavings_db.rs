//! Seeded pseudo-random walks through [`Service::act`] on SQLite and PostgreSQL: every event
//! drawn from the full set (each step approved and completed with the right, a wrong and no
//! fingerprint by each of the people, windows proposed and accepted, cancel and rollback by
//! each, timers with the clock jumping), biased toward what a correct person would do next.
//!
//! After every call, on the real data: a refusal changed nothing in the database; an accepted
//! event keeps every signer step's probe accepted by the reference receiver (real CMS
//! verification under the receiver's stored trust and profile) — except between the exchanges
//! inside the agreed window of `downtime-window` — the engine's model agrees with the reference
//! receiver, the audit chain verifies, and the outbox grew by exactly the mail the call reported.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rekey_crypto::{ReceiverProfile as Profile, receiver_verdict};
use rekey_engine::{
    Catalog, Event, Fingerprint, Procedure, ProcedureId, Renewal, RenewalStatus, Role, StepKind,
    StepStatus, TimerKind,
};
use rekey_model::{Email, Grant, ReceiverName, TenantId, TenantName};
use rekey_service::demo::{self, DEVELOPER, Setup, TENANT_ADMIN};
use rekey_service::{Outcome, Service, ServiceError};
use rekey_store::ReceiverProfile;
use rekey_testdb::{TestDb, TestResult, on_both};
use uuid::Uuid;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BITS: u32 = 2048;
/// Events per walk.
const EVENTS: usize = 32;
/// How often the walk does "the right next event" instead of a random one.
const RIGHT: f64 = 0.6;

/// Holds tenant roles for another tenant and `receiver_admin` for that tenant's receiver.
const STRANGER: &str = "stranger@other-tenant.example";
/// Holds `receiver_admin` for another receiver of the same tenant.
const NEIGHBOUR: &str = "neighbour@other-receiver.example";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date")
}

/// xorshift64*: small, deterministic, good enough to pick events.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// What a walk aims at when it does the right thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Finish the renewal.
    Complete,
    /// Like `Complete`, but mostly random events: long walks through the running states.
    Wander,
    /// Cancel once this many steps are settled (before the point of no return).
    CancelAfter(usize),
    /// Roll back once the point of no return is done and this many steps are settled
    /// (`usize::MAX`: once the renewal completed).
    RollbackAt(usize),
}

#[derive(Debug, Clone, Copy)]
enum Fp {
    New,
    Old,
    Missing,
}

/// An event before it is bound to the renewal's state and the clock.
#[derive(Debug, Clone)]
enum Template {
    Approve(String),
    Complete(String, Fp),
    Propose,
    Accept,
    Cancel,
    Rollback,
    Timer(Option<String>, TimerKind),
    /// A certificate reported for the key generation (never awaited: keys are self-signed).
    KeyReady(Fp),
}

/// Everyone who may send anything: the renewal's three people, the stranger, the neighbour.
fn people(p: ProcedureId) -> Vec<String> {
    vec![
        TENANT_ADMIN.to_string(),
        DEVELOPER.to_string(),
        demo::receiver_admin(p),
        STRANGER.to_string(),
        NEIGHBOUR.to_string(),
    ]
}

fn who(p: ProcedureId, role: Role) -> String {
    match role {
        Role::TenantAdmin => TENANT_ADMIN.to_string(),
        Role::IntegrationDeveloper => DEVELOPER.to_string(),
        Role::ReceiverAdmin => demo::receiver_admin(p),
        Role::Signer => unreachable!("no procedure step or notice is a signer's"),
    }
}

/// The full set of events: who × what.
fn full_set(def: &Procedure) -> Vec<(String, Template)> {
    let mut out = Vec::new();
    for person in people(def.id) {
        for step in &def.steps {
            out.push((person.clone(), Template::Approve(step.id.clone())));
            for fp in [Fp::New, Fp::Old, Fp::Missing] {
                out.push((person.clone(), Template::Complete(step.id.clone(), fp)));
            }
        }
        for t in [
            Template::Propose,
            Template::Accept,
            Template::Cancel,
            Template::Rollback,
        ] {
            out.push((person.clone(), t));
        }
    }
    let system = rekey_engine::machine::SYSTEM.to_string();
    for step in &def.steps {
        for kind in [TimerKind::Reminder, TimerKind::Escalation] {
            out.push((system.clone(), Template::Timer(Some(step.id.clone()), kind)));
        }
    }
    for kind in [TimerKind::WindowOpen, TimerKind::WindowClose] {
        out.push((system.clone(), Template::Timer(None, kind)));
    }
    for fp in [Fp::New, Fp::Old] {
        out.push((system.clone(), Template::KeyReady(fp)));
        out.push((TENANT_ADMIN.to_string(), Template::KeyReady(fp)));
    }
    out
}

fn settled(r: &Renewal, id: &str) -> bool {
    matches!(
        r.step(id).map(|s| &s.status),
        Some(StepStatus::Done { .. } | StepStatus::Skipped)
    )
}

/// What a correct person would do next, if anything.
fn right_next(
    r: &Renewal,
    def: &Procedure,
    plan: Plan,
    clock: DateTime<Utc>,
    rng: &mut Rng,
) -> Option<(String, Template)> {
    let p = def.id;
    let pnr_done = settled(r, &def.point_of_no_return);
    let n_settled = r.steps.iter().filter(|s| settled(r, &s.id)).count();
    match (r.status, plan) {
        (RenewalStatus::Running, Plan::CancelAfter(n)) if !pnr_done && n_settled >= n => {
            return Some((TENANT_ADMIN.into(), Template::Cancel));
        }
        (RenewalStatus::Running, Plan::RollbackAt(n)) if pnr_done && n_settled >= n => {
            return Some((TENANT_ADMIN.into(), Template::Rollback));
        }
        (RenewalStatus::Completed, Plan::RollbackAt(_)) => {
            return Some((TENANT_ADMIN.into(), Template::Rollback));
        }
        (RenewalStatus::Running, _) => {}
        _ => return None,
    }
    let due: Vec<_> = r.due_steps().collect();
    if due.is_empty() {
        return r
            .window
            .as_ref()
            .filter(|w| w.agreed && !w.open && !w.closed)
            .map(|_| {
                (
                    rekey_engine::machine::SYSTEM.to_string(),
                    Template::Timer(None, TimerKind::WindowOpen),
                )
            });
    }
    let st = due[rng.below(due.len())];
    let step = def.step(&st.id)?;
    Some(match (step.kind, step.action, step.task) {
        (StepKind::Agreement, _, _) => {
            let other = step.with_role.unwrap_or(step.role);
            match &r.window {
                Some(w) if w.start >= clock && !w.agreed => {
                    let accepter = if w.proposed_by == step.role {
                        other
                    } else {
                        step.role
                    };
                    (who(p, accepter), Template::Accept)
                }
                _ => {
                    let proposer = if rng.chance(0.5) { step.role } else { other };
                    (who(p, proposer), Template::Propose)
                }
            }
        }
        (_, Some(_), _) => (who(p, step.role), Template::Approve(step.id.clone())),
        (_, _, Some(_)) => (
            who(p, step.role),
            Template::Complete(step.id.clone(), Fp::New),
        ),
        _ => return None,
    })
}

/// Binds a template to the renewal and the clock, moving the clock where a timer needs it (but
/// not past `horizon`).
fn bind(
    t: &Template,
    r: &Renewal,
    clock: &mut DateTime<Utc>,
    horizon: DateTime<Utc>,
    rng: &mut Rng,
    right: bool,
) -> Event {
    match t {
        Template::Approve(step) => Event::Approve { step: step.clone() },
        Template::Complete(step, fp) => Event::Complete {
            step: step.clone(),
            // The edges refuse an empty fingerprint; the engine must refuse one that names no
            // certificate of the renewal.
            fingerprint: match fp {
                Fp::New => r.new_cert,
                Fp::Old => r.old_cert,
                Fp::Missing => None,
            }
            .unwrap_or(Fingerprint::from_bytes([0xee; 32])),
        },
        Template::Propose => {
            let start = *clock + Duration::hours(1 + rng.below(3) as i64);
            Event::ProposeWindow {
                start,
                end: start + Duration::hours(1),
            }
        }
        Template::Accept => Event::AcceptWindow,
        Template::KeyReady(fp) => Event::KeyReady {
            cert: match fp {
                Fp::New => r.new_cert,
                _ => r.old_cert,
            }
            .unwrap_or(Fingerprint::from_bytes([0; 32])),
        },
        Template::Cancel => Event::Cancel,
        Template::Rollback => Event::Rollback,
        Template::Timer(step, kind) => {
            match kind {
                TimerKind::WindowOpen => {
                    if let Some(w) = r.window.as_ref().filter(|w| w.agreed && !w.open)
                        && (right || rng.chance(0.6))
                    {
                        *clock = (*clock).max(w.start);
                    }
                }
                TimerKind::WindowClose => {
                    if let Some(w) = r.window.as_ref().filter(|w| w.agreed && !w.closed)
                        && rng.chance(0.5)
                    {
                        *clock = (*clock).max(w.end);
                    }
                }
                TimerKind::Reminder | TimerKind::Escalation => {
                    // Jump by nothing (a stale or early timer), or by up to eight days.
                    let jump = Duration::hours(*rng.pick(&[0, 0, 12, 24, 49, 73, 170, 192]));
                    *clock = (*clock + jump).min(horizon).max(*clock);
                }
            }
            Event::Timer {
                step: step.clone(),
                kind: *kind,
            }
        }
    }
}

/// Everything a refused event must leave as it was.
async fn snapshot(db: &TestDb, id: Uuid) -> Res<rekey_store::testing::Snapshot> {
    Ok(rekey_store::testing::snapshot(db.store.db(), id).await?)
}

/// Signs a probe with every signer step listing the renewal's aliases and asks the reference
/// receiver; checks the invariant, the model's agreement, and the audit chain. Returns how many
/// probes were rejected (inside the window of `downtime-window` only).
async fn check_accepted(s: &Service, db: &TestDb, set: &Setup, r: &Renewal) -> Res<usize> {
    let store = s.store();
    let stored = s.renewal(r.id).await?;
    if &stored != r {
        return Err(format!("the stored renewal differs from the outcome: {stored:?}").into());
    }
    let receiver = store.receiver(set.tenant, &set.receiver_name).await?;
    let trusted: Vec<_> = receiver
        .trusted
        .iter()
        .map(|t| t.certificate.clone())
        .collect();
    let profile = Profile {
        verifies_multiple_keys: receiver.profile.verifies_multiple_keys,
        accepts_multiple_signatures: receiver.profile.accepts_multiple_signatures,
    };
    let mut steps = Vec::new();
    for flow in store.flows(set.tenant).await? {
        for step in flow.steps {
            if step.rows.iter().any(|row| {
                row.params.alias == r.alias || Some(&row.params.alias) == r.new_alias.as_ref()
            }) {
                steps.push((flow.name.clone(), step.name.clone()));
            }
        }
    }
    steps.sort_by_key(|(f, s)| (f.to_string(), s.to_string()));
    if steps.is_empty() {
        return Err("no signer step lists the renewal's aliases".into());
    }
    let windowed = r.procedure == ProcedureId::DowntimeWindow
        && r.downtime.started.is_some()
        && r.downtime.ended.is_none();
    let mut real = Vec::new();
    // Signed and received on the engine's clock: the renewal's last event.
    let at = r.updated_at;
    for (flow, step) in &steps {
        let payload = format!("probe of {flow}/{step}").into_bytes();
        let verdict = match store
            .sign_for_step(set.tenant, flow, step, &payload, at)
            .await
        {
            Ok(m) => match receiver_verdict(&m.der, None, &trusted, &profile, at)?.0 {
                rekey_crypto::Verdict::Accepted { .. } => Ok(()),
                rekey_crypto::Verdict::Rejected { reason } => Err(reason),
            },
            Err(e) => Err(format!("signing failed: {e}")),
        };
        if let Err(reason) = &verdict
            && !windowed
        {
            return Err(format!(
                "{}: {flow}/{step} rejected outside the agreed window: {reason}\nrenewal: {r:#?}",
                r.procedure
            )
            .into());
        }
        real.push(verdict.is_ok());
    }
    let model: Vec<bool> = s
        .world(r, at)
        .await?
        .probes()
        .iter()
        .map(|p| p.accepted)
        .collect();
    if model != real {
        return Err(format!(
            "{}: the engine's model {model:?} disagrees with the reference receiver {real:?}",
            r.procedure
        )
        .into());
    }
    if let Err(e) = db.store.verify_audit().await {
        return Err(format!("audit chain: {e}").into());
    }
    Ok(real.iter().filter(|ok| !**ok).count())
}

/// The stranger (another tenant's roles and its receiver) and the neighbour (another receiver
/// of the demo tenant).
async fn outsiders(s: &Service, demo_tenant: TenantId) -> Res<()> {
    let store = s.store();
    let other = store
        .create_tenant(&TenantName::parse("other")?, "walk")
        .await?;
    let profile = ReceiverProfile {
        verifies_multiple_keys: true,
        accepts_multiple_signatures: true,
    };
    let theirs = store
        .add_receiver(
            other.id,
            &ReceiverName::parse("other-receiver")?,
            profile,
            "walk",
        )
        .await?;
    let stranger = store.add_user(&Email::parse(STRANGER)?, "walk").await?;
    for g in [
        Grant::TenantAdmin { tenant: other.id },
        Grant::IntegrationDeveloper { tenant: other.id },
        Grant::ReceiverAdmin {
            receiver: theirs.id,
        },
    ] {
        store.grant(stranger.id, g, "walk").await?;
    }
    let next_door = store
        .add_receiver(
            demo_tenant,
            &ReceiverName::parse("neighbour-receiver")?,
            profile,
            "walk",
        )
        .await?;
    let neighbour = store.add_user(&Email::parse(NEIGHBOUR)?, "walk").await?;
    store
        .grant(
            neighbour.id,
            Grant::ReceiverAdmin {
                receiver: next_door.id,
            },
            "walk",
        )
        .await?;
    Ok(())
}

/// The receiver administrator switches back to the old certificate, as a refused rollback
/// asks (`None` when there is nothing to switch back to).
async fn switch_back(s: &Service, set: &Setup, r: &Renewal) -> Res<Option<()>> {
    let store = s.store();
    let (Some(old), Some(new)) = (&r.old_cert, &r.new_cert) else {
        return Ok(None);
    };
    let alias = r.alias.clone();
    let mut entries = store.key_history(set.tenant, &alias).await?;
    entries.extend(store.key_entry(set.tenant, &alias).await.ok());
    let Some(old_cert) = entries
        .iter()
        .find(|e| e.fingerprint == *old)
        .and_then(|e| e.certificate().cloned())
    else {
        return Ok(None);
    };
    let trusted: Vec<Fingerprint> = store
        .trusted_certificates(set.tenant, &set.receiver_name)
        .await?
        .iter()
        .map(|t| t.fingerprint)
        .collect();
    if trusted.contains(new) {
        store
            .untrust_certificate(set.tenant, &set.receiver_name, new, "walk")
            .await?;
    }
    if !trusted.contains(old) {
        store
            .trust_certificate(set.tenant, &set.receiver_name, &old_cert, "walk")
            .await?;
    }
    Ok(Some(()))
}

#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    accepted: usize,
    refused: usize,
    completed: usize,
    cancelled_before_pnr: usize,
    rolled_back_after_pnr: usize,
    rollback_refused_after_pnr: usize,
    unsafe_refusals: usize,
    downtime_probes: usize,
    finals: Vec<&'static str>,
}

/// One walk: set-up, start, then `EVENTS` events.
async fn walk(
    s: &Service,
    db: &TestDb,
    p: ProcedureId,
    seed: u64,
    plan: Plan,
    tally: &mut Tally,
) -> Res<()> {
    let catalog = s.catalog();
    let def = catalog.get(p).clone();
    let mut rng = Rng::new(seed);
    let mut clock = t0() + Duration::days(seed as i64 % 7);
    let set = demo::prepare(s, p, BITS, clock).await?;
    // The old certificate expires 30 days after `clock`; receivers judge probes at the engine's
    // time, so the walk stays well inside its life (a renewal outliving it is another matter).
    let horizon = clock + Duration::days(28);
    let started = s
        .start(set.start_request(BITS), TENANT_ADMIN, clock)
        .await?;
    let id = started.renewal.id;
    check_accepted(s, db, &set, &started.renewal).await?;
    let all = full_set(&def);
    // Timers are a handful among hundreds of events: draw them more often than that.
    let timers: Vec<_> = all
        .iter()
        .filter(|(_, t)| matches!(t, Template::Timer(..)))
        .cloned()
        .collect();
    let mut r = started.renewal;
    // After the renewal ends a few more events (all refused, or a rollback) and the walk stops.
    let mut after_end = 0;
    for n in 0..EVENTS {
        if r.status != RenewalStatus::Running {
            after_end += 1;
            if after_end > 4 {
                break;
            }
        }
        clock += Duration::minutes(1 + rng.below(20) as i64);
        let right = rng.chance(if plan == Plan::Wander { 0.15 } else { RIGHT });
        let (person, template) = match right
            .then(|| right_next(&r, &def, plan, clock, &mut rng))
            .flatten()
        {
            Some(x) => x,
            None if rng.chance(0.25) => rng.pick(&timers).clone(),
            None => rng.pick(&all).clone(),
        };
        let event = bind(&template, &r, &mut clock, horizon, &mut rng, right);
        let pnr_done = settled(&r, &def.point_of_no_return);
        let before = snapshot(db, id).await?;
        tally.sent += 1;
        let mut result = s.act(id, &person, event.clone(), clock).await;
        // A refused rollback asks the receiver administrator to trust the old certificate again
        // first: in rollback walks they do, and the tenant administrator tries again.
        if matches!(plan, Plan::RollbackAt(_))
            && matches!(event, Event::Rollback)
            && person == TENANT_ADMIN
            && pnr_done
            && matches!(
                &result,
                Err(ServiceError::Refused(rekey_engine::Refusal::Unsafe { .. }))
            )
        {
            let after = snapshot(db, id).await?;
            if after != before {
                return Err(format!("{p} seed {seed} event {n}: refused rollback changed the database:\nbefore {before:?}\nafter {after:?}").into());
            }
            tally.refused += 1;
            tally.unsafe_refusals += 1;
            tally.rollback_refused_after_pnr += 1;
            if switch_back(s, &set, &r).await?.is_some() {
                tally.sent += 1;
                result = s.act(id, &person, event.clone(), clock).await;
                if result.is_err() {
                    return Err(format!(
                        "{p} seed {seed} event {n}: rollback refused after the receiver switched back: {result:?}"
                    )
                    .into());
                }
            }
        }
        match result {
            Ok(Outcome {
                renewal,
                mail,
                completed: _,
            }) => {
                tally.accepted += 1;
                let after = snapshot(db, id).await?;
                let ids: BTreeSet<&str> = mail.iter().map(|m| m.message_id.as_str()).collect();
                if ids.len() != mail.len() || after.outbox != before.outbox + mail.len() as u64 {
                    return Err(format!(
                        "{p} seed {seed} event {n} ({person}: {event:?}): outbox {} -> {} but {} mail reported",
                        before.outbox,
                        after.outbox,
                        mail.len()
                    )
                    .into());
                }
                tally.downtime_probes += check_accepted(s, db, &set, &renewal)
                    .await
                    .map_err(|e| format!("{p} seed {seed} event {n} ({person}: {event:?}): {e}"))?;
                match (&event, renewal.status) {
                    (Event::Cancel, RenewalStatus::Cancelled) if !pnr_done => {
                        tally.cancelled_before_pnr += 1
                    }
                    (Event::Rollback, RenewalStatus::RolledBack) if pnr_done => {
                        tally.rolled_back_after_pnr += 1
                    }
                    (Event::Cancel, _) | (Event::Rollback, _) => {
                        return Err(format!(
                            "{p} seed {seed} event {n}: {event:?} accepted with the point of no return {} (status {:?})",
                            if pnr_done { "done" } else { "not done" },
                            renewal.status
                        )
                        .into());
                    }
                    _ => {}
                }
                r = renewal;
            }
            Err(e) => {
                tally.refused += 1;
                if matches!(
                    e,
                    ServiceError::Refused(rekey_engine::Refusal::Unsafe { .. })
                ) {
                    tally.unsafe_refusals += 1;
                }
                let after = snapshot(db, id).await?;
                if after != before {
                    return Err(format!(
                        "{p} seed {seed} event {n} ({person}: {event:?}) refused ({e}) but changed the database:\nbefore {before:?}\nafter {after:?}"
                    )
                    .into());
                }
                // Someone who may not see the renewal is told it does not exist, before the
                // engine names its steps, roles or status.
                let hidden = matches!(e, ServiceError::UnknownRenewal(x) if x == id)
                    && (person == STRANGER || person == NEIGHBOUR);
                if !matches!(e, ServiceError::Refused(_)) && !hidden {
                    return Err(format!(
                        "{p} seed {seed} event {n} ({person}: {event:?}): not a refusal: {e}"
                    )
                    .into());
                }
            }
        }
    }
    if r.status == RenewalStatus::Completed {
        tally.completed += 1;
    }
    tally.finals.push(r.status.as_str());
    Ok(())
}

/// Seeds and plans per procedure: walks aiming at completion (two mostly wandering), cancelling early and later
/// before the point of no return, rolling back right after it and after completion.
fn walks() -> Vec<(u64, Plan)> {
    vec![
        (1, Plan::Complete),
        (2, Plan::Wander),
        (3, Plan::Wander),
        (4, Plan::CancelAfter(1)),
        (5, Plan::CancelAfter(3)),
        (6, Plan::RollbackAt(0)),
        (7, Plan::RollbackAt(usize::MAX)),
    ]
}

#[tokio::test]
async fn random_walks_through_the_service_keep_the_invariant_on_the_real_data() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = Service::new(db.store.clone(), Catalog::builtin()?);
        let backend = format!("{:?}", db.backend);
        // The demo's tenant (its set-up finds it), then the outsiders.
        let demo_tenant = s
            .store()
            .create_tenant(&TenantName::parse("demo")?, "walk")
            .await?;
        outsiders(&s, demo_tenant.id).await?;
        for p in ProcedureId::ALL {
            let mut tally = Tally::default();
            let t = std::time::Instant::now();
            for (seed, plan) in walks() {
                let seed = seed * 1000 + p as u64;
                walk(&s, db, p, seed, plan, &mut tally).await?;
            }
            println!(
                "{backend} {p}: {} walks, {} events sent, {} accepted, {} refused ({} as unsafe); {} probes rejected inside the window; final {:?}; {} completed, {} cancelled before and {} rolled back after the point of no return ({} rollbacks refused as unsafe first); {:.1}s",
                walks().len(),
                tally.sent,
                tally.accepted,
                tally.refused,
                tally.unsafe_refusals,
                tally.downtime_probes,
                tally.finals,
                tally.completed,
                tally.cancelled_before_pnr,
                tally.rolled_back_after_pnr,
                tally.rollback_refused_after_pnr,
                t.elapsed().as_secs_f64()
            );
            assert!(tally.completed >= 1, "{backend} {p}: some walk completes");
            assert!(
                tally.cancelled_before_pnr >= 1,
                "{backend} {p}: some walk cancels before the point of no return"
            );
            if p == ProcedureId::DowntimeWindow {
                assert!(
                    tally.downtime_probes >= 1,
                    "{backend} {p}: the downtime inside the window is real"
                );
            }
            assert!(
                tally.rolled_back_after_pnr >= 1,
                "{backend} {p}: some walk rolls back after the point of no return"
            );
        }
        Ok(())
    })
    .await;
}
