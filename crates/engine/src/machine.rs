//! The renewal state machine: `apply(state, event, now) -> (state, effects)` or a refusal.
//!
//! Nothing here performs I/O or reads a clock. The shell loads the renewal and the [`World`],
//! calls [`apply`], and then carries out the returned [`Effect`]s and stores the new state in
//! one database transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use rekey_model::{Alias, Fingerprint, ReceiverId, Role, TenantId};
pub use rekey_model::{Grant, RenewalStatus};

use crate::definition::{
    ActionKind, Condition, Procedure, ProcedureId, StepDef, StepKind, TaskKind,
};
use crate::world::{Change, World};
use crate::{Refusal, access, choose};

/// The user `rekey` itself acts as for automatic steps.
pub const SYSTEM: &str = "rekey";

/// Who sends an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Email address, or [`SYSTEM`].
    pub email: String,
    /// Roles held, each in its scope (a tenant or a receiver).
    pub grants: Vec<Grant>,
}

impl Actor {
    /// A person with these roles.
    pub fn new(email: impl Into<String>, grants: Vec<Grant>) -> Self {
        Actor {
            email: email.into(),
            grants,
        }
    }

    /// rekey itself: timers, key generation results.
    pub fn system() -> Self {
        Actor {
            email: SYSTEM.into(),
            grants: Vec::new(),
        }
    }

    /// Whether this is rekey itself.
    pub fn is_system(&self) -> bool {
        self.email == SYSTEM && self.grants.is_empty()
    }

    /// Whether this actor holds `role` in its scope for `renewal` ([`access::holds`]).
    pub fn holds(&self, role: Role, renewal: &Renewal) -> bool {
        access::holds(self, role, renewal)
    }
}

/// What starts a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartParams {
    /// Renewal id (chosen by the shell).
    pub id: Uuid,
    /// Tenant.
    pub tenant: TenantId,
    /// Receiver.
    pub receiver: ReceiverId,
    /// The alias whose key is renewed.
    pub alias: Alias,
    /// Alias for the new key where the procedure needs one (default derived from `alias`).
    pub new_alias: Option<Alias>,
    /// A procedure named explicitly; `None` lets the receiver's profile choose.
    pub procedure: Option<ProcedureId>,
    /// Run owner-approved actions without waiting for approval.
    pub auto_approve: bool,
    /// Key and CSR; the tenant administrator uploads the CA-signed chain.
    pub ca_signed: bool,
    /// RSA key size for the new key.
    pub bits: u32,
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// Earlier steps (or the window) are not done yet.
    Waiting,
    /// Its owner should act.
    Due {
        /// When it became due.
        since: DateTime<Utc>,
        /// Its due date.
        due_at: DateTime<Utc>,
    },
    /// Finished.
    Done {
        /// When it became due.
        since: DateTime<Utc>,
        /// When it was done.
        at: DateTime<Utc>,
        /// Email of who did it, or [`SYSTEM`].
        by: String,
    },
    /// Not needed in this renewal (a condition was not met).
    Skipped,
}

/// One step's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    /// The step id.
    pub id: String,
    /// Its status.
    pub status: StepStatus,
    /// Reminders sent so far.
    pub reminders: u32,
    /// Whether it has escalated.
    pub escalated: bool,
    /// Roles emailed when this step ran or became due.
    pub notified: Vec<Role>,
    /// Why an automatic attempt was refused, if one was.
    pub blocked: Option<String>,
}

/// The downtime window of `downtime-window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Opens.
    pub start: DateTime<Utc>,
    /// Closes.
    pub end: DateTime<Utc>,
    /// Role that proposed it.
    pub proposed_by: Role,
    /// Email of the proposer.
    pub proposer: String,
    /// Whether the other party accepted.
    pub agreed: bool,
    /// Whether it is open now.
    pub open: bool,
    /// Whether it has closed.
    pub closed: bool,
}

/// Interruption actually caused inside the window: from the first moment the receiver would
/// reject a message to the moment it accepts again.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Downtime {
    /// First moment of rejection.
    pub started: Option<DateTime<Utc>>,
    /// Back to acceptance.
    pub ended: Option<DateTime<Utc>>,
}

/// A renewal: everything the engine needs besides the definition and the world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// Id.
    pub id: Uuid,
    /// Tenant (stored as its UUID text).
    pub tenant: TenantId,
    /// Receiver whose trust must hold throughout (stored as its UUID text).
    pub receiver: ReceiverId,
    /// The procedure run.
    pub procedure: ProcedureId,
    /// The alias renewed.
    pub alias: Alias,
    /// The alias the new key goes under, for procedures that use a second alias.
    pub new_alias: Option<Alias>,
    /// Whether actions run without approval.
    pub auto_approve: bool,
    /// Whether the new certificate comes from a CA.
    pub ca_signed: bool,
    /// Key size.
    pub bits: u32,
    /// The certificate under `alias` when the renewal started.
    pub old_cert: Option<Fingerprint>,
    /// The new certificate, once generated (or uploaded).
    pub new_cert: Option<Fingerprint>,
    /// Whether key generation was requested and not yet reported.
    pub generating: bool,
    /// Who approved the key generation (a self-signed key is reported back by rekey, but the
    /// step is theirs).
    #[serde(default)]
    pub generation_approved_by: Option<String>,
    /// Signer steps (`flow/step`) that already listed `new_alias` when the renewal started: a
    /// cancel leaves their row alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared_on: Vec<String>,
    /// Per-step state, in definition order.
    pub steps: Vec<StepState>,
    /// Overall status.
    pub status: RenewalStatus,
    /// Changes rekey applied, in order (for cancel and rollback).
    pub applied: Vec<Change>,
    /// The downtime window, once proposed.
    pub window: Option<Window>,
    /// Measured interruption.
    pub downtime: Downtime,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Renewal {
    /// A step's state by id.
    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.id == id)
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| s.id == id)
    }

    fn is_settled(&self, id: &str) -> bool {
        matches!(
            self.step(id).map(|s| &s.status),
            Some(StepStatus::Done { .. } | StepStatus::Skipped)
        )
    }

    /// Steps currently due, in order.
    pub fn due_steps(&self) -> impl Iterator<Item = &StepState> {
        self.steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Due { .. }))
    }

    fn window_open(&self) -> bool {
        self.window
            .as_ref()
            .is_some_and(|w| w.agreed && w.open && !w.closed)
    }
}

/// Timers the shell keeps and reports back when they fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Remind the step's owner.
    Reminder,
    /// The step is overdue past escalation.
    Escalation,
    /// The agreed window opens.
    WindowOpen,
    /// The agreed window closes.
    WindowClose,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The owner approves an action step.
    Approve {
        /// Step id.
        step: String,
    },
    /// A person confirms a task, with the fingerprint of the certificate now installed.
    Complete {
        /// Step id.
        step: String,
        /// The certificate named by the fingerprint the person gave, parsed at the edge (CLI,
        /// API, web form) by `rekey_model::Fingerprint`: the engine compares names, it does not
        /// clean up what was typed.
        fingerprint: Fingerprint,
    },
    /// The new key's certificate exists: generated (rekey) or CA-signed and uploaded (tenant
    /// administrator).
    KeyReady {
        /// The certificate.
        cert: Fingerprint,
    },
    /// Propose (or counter-propose) the downtime window.
    ProposeWindow {
        /// Opens.
        start: DateTime<Utc>,
        /// Closes.
        end: DateTime<Utc>,
    },
    /// Accept the proposed window.
    AcceptWindow,
    /// A timer fired.
    Timer {
        /// The step it belongs to (none for window timers).
        step: Option<String>,
        /// Which timer.
        kind: TimerKind,
    },
    /// Cancel before the point of no return, undoing rekey's changes.
    Cancel,
    /// Roll back after the point of no return to the previous keystore entries.
    Rollback,
}

/// Why an email is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A step became due for the recipient.
    StepDue,
    /// The seed's "X informs Y".
    Inform,
    /// A due step is still open.
    Reminder,
    /// A step is overdue past escalation, or an automatic step was refused.
    Escalation,
    /// A downtime window was proposed.
    WindowProposed,
    /// Both parties agreed on the window.
    WindowAgreed,
    /// The renewal finished.
    Completed,
    /// The renewal was cancelled.
    Cancelled,
    /// The renewal was rolled back.
    RolledBack,
    /// A CA-signed renewal's CSR is ready: have a CA sign it and upload the chain.
    CertificateRequest,
}

/// An email to queue in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Recipient role (the shell resolves the people holding it in scope).
    pub to: Role,
    /// Why.
    pub kind: NoticeKind,
    /// The step concerned.
    pub step: Option<String>,
    /// Attach this certificate (PEM).
    pub attach_certificate: Option<Fingerprint>,
    /// Attach a test message signed by exactly these certificates' keys (the first affected
    /// signer step's; see `test_steps` for every step).
    pub test_message: Option<Vec<Fingerprint>>,
    /// One test message per affected signer step: how each will sign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_steps: Vec<StepSigners>,
    /// Due date of the step.
    pub due_at: Option<DateTime<Utc>>,
    /// For an escalation because an automatic action was refused: the guard's reason, verbatim.
    #[serde(default)]
    pub refused: Option<String>,
}

/// How one signer step will sign: what a test message for it is signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSigners {
    /// `flow/step`.
    pub signer_step: String,
    /// Certificates whose keys sign, in table order.
    pub signers: Vec<Fingerprint>,
}

/// Work for the shell, carried out in the same transaction as the state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Generate the new key (and a CSR when CA-signed) and keep it pending, outside the
    /// keystore; for a self-signed key, report it back with [`Event::KeyReady`].
    GenerateKey {
        /// RSA size.
        bits: u32,
        /// Produce a CSR for a CA instead of a self-signed certificate.
        ca_signed: bool,
    },
    /// Change keystore, signer steps or the recorded receiver trust.
    Apply(Change),
    /// Delete a generated key that never entered the keystore.
    DiscardPendingKey {
        /// Its certificate.
        cert: Fingerprint,
    },
    /// Queue an email.
    Notify(Notice),
    /// Set a timer.
    Schedule {
        /// Step, for step timers.
        step: Option<String>,
        /// Kind.
        kind: TimerKind,
        /// When.
        at: DateTime<Utc>,
    },
    /// Drop every pending timer of this renewal.
    CancelTimers,
    /// Append to the audit log.
    Audit {
        /// What happened, e.g. `step.approve`.
        action: String,
        /// Short detail.
        detail: String,
    },
}

/// The result of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// New renewal state.
    pub renewal: Renewal,
    /// The world after the effects.
    pub world: World,
    /// Effects to carry out, in order.
    pub effects: Vec<Effect>,
    /// Steps completed by this transition, in order.
    pub completed: Vec<String>,
}

struct Ctx<'a> {
    def: &'a Procedure,
    r: Renewal,
    world: World,
    effects: Vec<Effect>,
    completed: Vec<String>,
    now: DateTime<Utc>,
}

/// Starts a renewal: chooses (or checks) the procedure and makes the first steps due.
pub fn start(
    catalog: &crate::Catalog,
    params: StartParams,
    world: &World,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Transition, Refusal> {
    if !actor.is_system()
        && !access::holds_in(actor, Role::TenantAdmin, params.tenant, params.receiver)
    {
        return Err(Refusal::WrongRole {
            step: "start".into(),
            role: Role::TenantAdmin,
            actor: actor.email.clone(),
        });
    }
    let old_cert = world
        .keystore
        .get(&params.alias)
        .copied()
        .ok_or_else(|| Refusal::Invalid {
            step: "start".into(),
            reason: format!("alias {:?} holds no key to renew", params.alias),
        })?;
    if !world
        .signer_steps
        .iter()
        .any(|s| s.aliases.contains(&params.alias))
    {
        return Err(Refusal::Invalid {
            step: "start".into(),
            reason: format!("no signer step lists alias {:?}", params.alias),
        });
    }
    receivers_reached(world, &params.alias)?;
    if let Some(reason) = world.violation() {
        return Err(Refusal::Invalid {
            step: "start".into(),
            reason: format!("the receiver would already reject messages: {reason}"),
        });
    }
    let procedure = choose::choose(world, &params.alias, params.procedure)?;
    let def = catalog.get(procedure);
    let free = world.free_aliases(&params.alias);
    let new_alias = match procedure {
        ProcedureId::DualTrust | ProcedureId::DowntimeWindow => None,
        ProcedureId::PreparedSecondAlias if !free.is_empty() => match &params.new_alias {
            Some(a) if !free.contains(a) => {
                return Err(Refusal::Invalid {
                    step: "start".into(),
                    reason: format!(
                        "{a:?} is not an alias the signer step lists without a key (free: {})",
                        free.iter()
                            .map(Alias::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            Some(a) => Some(a.clone()),
            None => free.first().cloned(),
        },
        _ => {
            let a = match params.new_alias.clone() {
                Some(a) => a,
                None => derived_alias(&params.alias, now, |a| {
                    world.keystore.contains_key(a)
                        || world.signer_steps.iter().any(|s| s.aliases.contains(a))
                })
                .map_err(|reason| Refusal::Invalid {
                    step: "start".into(),
                    reason,
                })?,
            };
            if world.keystore.contains_key(&a)
                || world.signer_steps.iter().any(|s| s.aliases.contains(&a))
            {
                return Err(Refusal::Invalid {
                    step: "start".into(),
                    reason: format!("new alias {a:?} is already in use"),
                });
            }
            Some(a)
        }
    };
    // Decided per signer step: the prepared alias is added to the steps that lack it.
    let (lacking, prepared_on) = match (&new_alias, procedure) {
        (Some(a), ProcedureId::PreparedSecondAlias) => (
            world.steps_lacking(&params.alias, a),
            world.steps_listing_both(&params.alias, a),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    let steps = def
        .steps
        .iter()
        .map(|s| StepState {
            id: s.id.clone(),
            status: match s.only_when {
                Some(Condition::NoPreparedAlias) if lacking.is_empty() => StepStatus::Skipped,
                _ => StepStatus::Waiting,
            },
            reminders: 0,
            escalated: false,
            notified: Vec::new(),
            blocked: None,
        })
        .collect();
    let r = Renewal {
        id: params.id,
        tenant: params.tenant,
        receiver: params.receiver,
        procedure,
        alias: params.alias,
        new_alias,
        prepared_on,
        auto_approve: params.auto_approve,
        ca_signed: params.ca_signed,
        bits: params.bits,
        old_cert: Some(old_cert),
        new_cert: None,
        generating: false,
        generation_approved_by: None,
        steps,
        status: RenewalStatus::Running,
        applied: Vec::new(),
        window: None,
        downtime: Downtime::default(),
        started_at: now,
        updated_at: now,
    };
    let mut cx = Ctx {
        def,
        r,
        world: world.clone(),
        effects: Vec::new(),
        completed: Vec::new(),
        now,
    };
    cx.effects.push(Effect::Audit {
        action: "renewal.start".into(),
        detail: format!("{} of alias {} by {}", procedure, cx.r.alias, actor.email),
    });
    cx.advance();
    Ok(cx.finish())
}

/// Refuses a renewal whose alias's signer steps send to receivers it cannot keep verifying:
/// it switches the receiver it names, so every other receiver a step reaches would reject
/// messages once the old key is retired. Names the steps, the receivers and, where their
/// profiles differ, why no one procedure fits them all.
/// The alias a renewal's new key goes under when none is named: the old alias's stem — without
/// the `-YYYYMMDD` (or `-YYYYMMDD-N`) an earlier renewal appended — with `now`'s date, so that
/// renewing again replaces the date instead of growing the name; `-2`, `-3`, … when that name
/// is `taken` (a second renewal the same day). A stem too long for any such name is refused
/// here, at the start, naming the alias, rather than later.
pub fn derived_alias(
    old: &Alias,
    now: DateTime<Utc>,
    taken: impl Fn(&Alias) -> bool,
) -> Result<Alias, String> {
    let stem = alias_stem(old.as_str());
    let date = now.format("%Y%m%d").to_string();
    for n in 1..100u32 {
        let name = match n {
            1 => format!("{stem}-{date}"),
            n => format!("{stem}-{date}-{n}"),
        };
        let a = Alias::parse(&name).map_err(|_| {
            format!(
                "alias {old:?} is too long to name its new key after it ({name:?} would be {}                  characters; an alias has at most 64): name the new alias (new_alias,                  --new-alias)",
                name.chars().count()
            )
        })?;
        if a != *old && !taken(&a) {
            return Ok(a);
        }
    }
    Err(format!(
        "no free alias for alias {old:?}'s new key today: name the new alias (new_alias, --new-alias)"
    ))
}

/// `alias` without a trailing `-YYYYMMDD` or `-YYYYMMDD-N` (N of one or two digits): every
/// name [`derived_alias`] may choose for it begins with this and a `-`, so a world that holds
/// the aliases with that prefix holds every name the choice depends on.
pub fn alias_stem(alias: &str) -> &str {
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let mut stem = alias;
    if let Some((rest, n)) = stem.rsplit_once('-')
        && digits(n, 1..=2)
        && rest.rsplit_once('-').is_some_and(|(_, d)| digits(d, 8..=8))
    {
        stem = rest;
    }
    match stem.rsplit_once('-') {
        Some((rest, d)) if digits(d, 8..=8) && !rest.is_empty() => rest,
        _ => stem,
    }
}

fn receivers_reached(world: &World, alias: &Alias) -> Result<(), Refusal> {
    let affected: Vec<_> = world
        .signer_steps
        .iter()
        .filter(|s| s.aliases.contains(alias))
        .collect();
    if !affected.iter().any(|s| s.reaches_receiver) {
        return Err(Refusal::Invalid {
            step: "start".into(),
            reason: format!(
                "no signer step listing alias {alias:?} sends to this receiver ({}); start the renewal for a receiver they send to",
                affected
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut others: Vec<(String, &crate::world::OtherReceiver)> = Vec::new();
    for s in &affected {
        for id in &s.others {
            if let Some(o) = world.others.get(id)
                && !others.iter().any(|(_, x)| x.name == o.name)
            {
                others.push((s.name(), o));
            }
        }
    }
    if others.is_empty() {
        return Ok(());
    }
    let ours = choose::allowed_by(world.profile);
    let common: Vec<ProcedureId> = ours
        .iter()
        .copied()
        .filter(|p| {
            others
                .iter()
                .all(|(_, o)| choose::allowed_by(o.profile).contains(p))
        })
        .collect();
    let list = |ids: &[ProcedureId]| {
        ids.iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let named: Vec<String> = others
        .iter()
        .map(|(step, o)| format!("{} (via signer step {step})", o.name))
        .collect();
    let reason = if common.is_empty() {
        format!(
            "alias {alias:?} also signs messages for receiver(s) {} whose profiles differ from this receiver's, and no procedure is safe for all: this receiver allows {}; {}",
            named.join(", "),
            list(&ours),
            others
                .iter()
                .map(|(_, o)| format!("{} allows {}", o.name, list(&choose::allowed_by(o.profile))))
                .collect::<Vec<_>>()
                .join("; ")
        )
    } else {
        format!(
            "alias {alias:?} also signs messages for receiver(s) {}, which this renewal does not switch: they would reject messages once the old key is retired; renew with a new alias for those signer steps, or stop sending them to those receivers",
            named.join(", ")
        )
    };
    Err(Refusal::Invalid {
        step: "start".into(),
        reason,
    })
}

/// How every signer step reaching a receiver will sign once receiver task `step` is done: the
/// signers of its test message (the steps up to its `test_message_after` carried out, or none
/// but itself). `None` when the renewal is not running, `step` is not a receiver task that is
/// due, or no signer step reaches a receiver. A receiver's own system is asked about exactly
/// this (AS2 test messages) before the step is confirmed by it.
pub fn task_test_signers(
    catalog: &crate::Catalog,
    renewal: &Renewal,
    world: &World,
    step: &str,
    now: DateTime<Utc>,
) -> Option<Vec<StepSigners>> {
    let def = catalog.get(renewal.procedure);
    let s = def.step(step)?;
    s.task.as_ref()?;
    if renewal.status != RenewalStatus::Running
        || !matches!(renewal.step(step)?.status, StepStatus::Due { .. })
    {
        return None;
    }
    let cx = Ctx {
        def,
        r: renewal.clone(),
        world: world.clone(),
        effects: Vec::new(),
        completed: Vec::new(),
        now,
    };
    cx.test_signers(s.test_message_after.as_deref().unwrap_or(step))
}

/// Applies one event to a running renewal.
pub fn apply(
    catalog: &crate::Catalog,
    renewal: &Renewal,
    world: &World,
    actor: &Actor,
    event: Event,
    now: DateTime<Utc>,
) -> Result<Transition, Refusal> {
    let def = catalog.get(renewal.procedure);
    let mut cx = Ctx {
        def,
        r: renewal.clone(),
        world: world.clone(),
        effects: Vec::new(),
        completed: Vec::new(),
        now,
    };
    let running = cx.r.status == RenewalStatus::Running;
    match event {
        Event::Rollback => cx.rollback(actor)?,
        _ if !running => {
            return Err(Refusal::Finished {
                status: cx.r.status,
            });
        }
        Event::Approve { step } => cx.approve(&step, actor)?,
        Event::Complete { step, fingerprint } => cx.complete(&step, &fingerprint, actor)?,
        Event::KeyReady { cert } => cx.key_ready(cert, actor)?,
        Event::ProposeWindow { start, end } => cx.propose_window(start, end, actor)?,
        Event::AcceptWindow => cx.accept_window(actor)?,
        Event::Timer { step, kind } => cx.timer(step.as_deref(), kind, actor)?,
        Event::Cancel => cx.cancel(actor)?,
    }
    cx.advance();
    Ok(cx.finish())
}

impl Ctx<'_> {
    fn finish(mut self) -> Transition {
        // A downtime lasts until the receiver verifies again, whichever event brings that about
        // and whether or not the window is still open: its end is the real one.
        if self.r.downtime.started.is_some()
            && self.r.downtime.ended.is_none()
            && self.world.violation().is_none()
        {
            self.r.downtime.ended = Some(self.now);
        }
        self.r.updated_at = self.now;
        Transition {
            renewal: self.r,
            world: self.world,
            effects: self.effects,
            completed: self.completed,
        }
    }

    fn def_step(&self, id: &str) -> Result<&StepDef, Refusal> {
        self.def.step(id).ok_or_else(|| Refusal::UnknownStep {
            step: id.to_string(),
        })
    }

    fn require_role(&self, step: &StepDef, role: Role, actor: &Actor) -> Result<(), Refusal> {
        if actor.holds(role, &self.r) {
            Ok(())
        } else {
            Err(Refusal::WrongRole {
                step: step.id.clone(),
                role,
                actor: actor.email.clone(),
            })
        }
    }

    fn require_due(&self, step: &StepDef) -> Result<(), Refusal> {
        match self.r.step(&step.id).map(|s| &s.status) {
            Some(StepStatus::Due { .. }) => Ok(()),
            Some(StepStatus::Done { .. }) => Err(Refusal::AlreadyDone {
                step: step.id.clone(),
            }),
            Some(StepStatus::Skipped) => Err(Refusal::Invalid {
                step: step.id.clone(),
                reason: "the step is skipped in this renewal".into(),
            }),
            _ => Err(Refusal::NotDue {
                step: step.id.clone(),
                waiting_for: self.waiting_for(step),
            }),
        }
    }

    fn waiting_for(&self, step: &StepDef) -> String {
        let pending: Vec<&str> = step
            .after
            .iter()
            .filter(|a| !self.r.is_settled(a))
            .map(String::as_str)
            .collect();
        if !pending.is_empty() {
            pending.join(", ")
        } else if step.kind == StepKind::Window {
            "the agreed downtime window to open".into()
        } else {
            "nothing".into()
        }
    }

    fn approve(&mut self, id: &str, actor: &Actor) -> Result<(), Refusal> {
        let step = self.def_step(id)?.clone();
        if step.action.is_none() {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "only action steps are approved; confirm tasks with complete".into(),
            });
        }
        self.require_role(&step, step.role, actor)?;
        self.require_due(&step)?;
        if step.action == Some(ActionKind::GenerateKey) && self.r.generating {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "key generation is already under way".into(),
            });
        }
        self.perform(&step, &actor.email)
    }

    fn complete(
        &mut self,
        id: &str,
        fingerprint: &Fingerprint,
        actor: &Actor,
    ) -> Result<(), Refusal> {
        let step = self.def_step(id)?.clone();
        let Some(task) = step.task else {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "only tasks are completed; approve actions with approve".into(),
            });
        };
        self.require_role(&step, step.role, actor)?;
        self.require_due(&step)?;
        let new = self.r.new_cert.ok_or_else(|| Refusal::Invalid {
            step: step.id.clone(),
            reason: "the new certificate does not exist yet".into(),
        })?;
        if *fingerprint != new {
            return Err(Refusal::WrongFingerprint {
                step: step.id.clone(),
                given: fingerprint.to_string(),
            });
        }
        let old = self.r.old_cert;
        let changes = match (task, old) {
            (TaskKind::TrustNewKeepOld, _) => vec![Change::Trust { cert: new }],
            (TaskKind::DistrustOld, Some(old)) => vec![Change::Distrust { cert: old }],
            (TaskKind::SwitchToNew, Some(old)) => {
                vec![Change::Trust { cert: new }, Change::Distrust { cert: old }]
            }
            (TaskKind::SwitchToNew, None) => vec![Change::Trust { cert: new }],
            (TaskKind::DistrustOld, None) => vec![],
        };
        self.change(&step, changes)?;
        self.done(&step, &actor.email);
        Ok(())
    }

    fn key_ready(&mut self, cert: Fingerprint, actor: &Actor) -> Result<(), Refusal> {
        let step = self
            .def
            .steps
            .iter()
            .find(|s| s.action == Some(ActionKind::GenerateKey))
            .cloned()
            .ok_or_else(|| Refusal::UnknownStep {
                step: "generate_key".into(),
            })?;
        if !actor.is_system() {
            if !self.r.ca_signed {
                return Err(Refusal::Invalid {
                    step: step.id,
                    reason: "only CA-signed renewals take an uploaded certificate".into(),
                });
            }
            self.require_role(&step, Role::TenantAdmin, actor)?;
        }
        if !self.r.generating {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "no key generation is pending".into(),
            });
        }
        if Some(&cert) == self.r.old_cert.as_ref()
            || self.world.keystore.values().any(|c| c == &cert)
        {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "the certificate is already in the keystore; a renewal needs a new key"
                    .into(),
            });
        }
        self.r.generating = false;
        self.r.new_cert = Some(cert);
        self.effects.push(Effect::Audit {
            action: "key.ready".into(),
            detail: format!("new certificate {cert}"),
        });
        let by = match (&self.r.generation_approved_by, actor.is_system()) {
            (Some(approver), true) => approver.clone(),
            _ => actor.email.clone(),
        };
        self.done(&step, &by);
        Ok(())
    }

    fn agreement_step(&self) -> Result<StepDef, Refusal> {
        self.def
            .steps
            .iter()
            .find(|s| s.kind == StepKind::Agreement)
            .cloned()
            .ok_or_else(|| Refusal::Invalid {
                step: "window".into(),
                reason: format!("procedure {} has no downtime window", self.def.id),
            })
    }

    fn party(&self, step: &StepDef, actor: &Actor) -> Result<Role, Refusal> {
        [Some(step.role), step.with_role]
            .into_iter()
            .flatten()
            .find(|r| actor.holds(*r, &self.r))
            .ok_or_else(|| Refusal::WrongRole {
                step: step.id.clone(),
                role: step.role,
                actor: actor.email.clone(),
            })
    }

    fn propose_window(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<(), Refusal> {
        let step = self.agreement_step()?;
        let role = self.party(&step, actor)?;
        self.require_due(&step)?;
        if end <= start {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: format!("the window must end after it starts ({start} .. {end})"),
            });
        }
        if start < self.now {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: format!("the window must not start in the past ({start})"),
            });
        }
        self.r.window = Some(Window {
            start,
            end,
            proposed_by: role,
            proposer: actor.email.clone(),
            agreed: false,
            open: false,
            closed: false,
        });
        let other = if role == step.role {
            step.with_role.unwrap_or(step.role)
        } else {
            step.role
        };
        self.notify(
            other,
            NoticeKind::WindowProposed,
            Some(&step.id),
            None,
            None,
            None,
        );
        self.effects.push(Effect::Audit {
            action: "window.propose".into(),
            detail: format!("{start} .. {end} by {}", actor.email),
        });
        Ok(())
    }

    fn accept_window(&mut self, actor: &Actor) -> Result<(), Refusal> {
        let step = self.agreement_step()?;
        let role = self.party(&step, actor)?;
        self.require_due(&step)?;
        let Some(w) = self.r.window.clone() else {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "no window has been proposed".into(),
            });
        };
        if w.proposed_by == role {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "the other party must accept the window its proposer chose".into(),
            });
        }
        if w.start < self.now {
            return Err(Refusal::Invalid {
                step: step.id,
                reason: "the proposed window has already started; propose a new one".into(),
            });
        }
        if let Some(w) = self.r.window.as_mut() {
            w.agreed = true;
        }
        self.effects.push(Effect::Schedule {
            step: None,
            kind: TimerKind::WindowOpen,
            at: w.start,
        });
        self.effects.push(Effect::Schedule {
            step: None,
            kind: TimerKind::WindowClose,
            at: w.end,
        });
        for r in [step.role, step.with_role.unwrap_or(step.role)] {
            self.notify(
                r,
                NoticeKind::WindowAgreed,
                Some(&step.id),
                None,
                None,
                None,
            );
        }
        self.effects.push(Effect::Audit {
            action: "window.accept".into(),
            detail: format!("{} .. {} by {}", w.start, w.end, actor.email),
        });
        self.done(&step, &actor.email);
        Ok(())
    }

    fn timer(&mut self, step: Option<&str>, kind: TimerKind, actor: &Actor) -> Result<(), Refusal> {
        if !actor.is_system() {
            return Err(Refusal::Invalid {
                step: step.unwrap_or("timer").into(),
                reason: "only rekey fires timers".into(),
            });
        }
        match kind {
            TimerKind::WindowOpen => {
                let now = self.now;
                if let Some(w) = self
                    .r
                    .window
                    .as_mut()
                    .filter(|w| w.agreed && !w.open && !w.closed && now >= w.start)
                {
                    w.open = true;
                    self.effects.push(Effect::Audit {
                        action: "window.open".into(),
                        detail: String::new(),
                    });
                }
            }
            TimerKind::WindowClose => {
                let now = self.now;
                let closing = self
                    .r
                    .window
                    .as_mut()
                    .filter(|w| w.agreed && !w.closed && now >= w.end);
                if let Some(w) = closing {
                    w.open = false;
                    w.closed = true;
                    let end = w.end;
                    self.effects.push(Effect::Audit {
                        action: "window.close".into(),
                        detail: String::new(),
                    });
                    let window_steps: Vec<StepDef> = self
                        .def
                        .steps
                        .iter()
                        .filter(|s| s.kind == StepKind::Window)
                        .cloned()
                        .collect();
                    if window_steps.iter().all(|s| !self.r.is_settled(&s.id)) {
                        // Nothing happened inside the window (it was missed, or rekey was down
                        // throughout): both sides agree on a new one.
                        self.renegotiate_window(&window_steps)?;
                        return Ok(());
                    }
                    // Half done: the receiver rejects until the rest is done. Both sides hear
                    // of it at once; the remaining step stays due (the guard lets it finish
                    // after the close, since it makes verification work again) and the
                    // downtime keeps counting until then.
                    let agreement = self.agreement_step()?;
                    let parties = [Some(agreement.role), agreement.with_role];
                    let open: Vec<StepDef> = window_steps
                        .into_iter()
                        .filter(|s| !self.r.is_settled(&s.id))
                        .collect();
                    for s in open {
                        if let Some(st) = self.r.step_mut(&s.id) {
                            st.escalated = true;
                        }
                        let mut told = Vec::new();
                        for role in [Some(s.role)].into_iter().chain(parties).flatten() {
                            if !told.contains(&role) {
                                told.push(role);
                                self.notify(
                                    role,
                                    NoticeKind::Escalation,
                                    Some(&s.id),
                                    None,
                                    None,
                                    Some(end),
                                );
                            }
                        }
                    }
                }
            }
            TimerKind::Reminder | TimerKind::Escalation => {
                let Some(id) = step else { return Ok(()) };
                let def = self.def_step(id)?.clone();
                let Some(st) = self.r.step_mut(id) else {
                    return Ok(());
                };
                // A timer for a step no longer due, or delivered early or twice, is stale:
                // timers are honoured only when their time has come, so duplicates are harmless.
                let StepStatus::Due { since, due_at } = st.status else {
                    return Ok(());
                };
                let now = self.now;
                if kind == TimerKind::Reminder {
                    let next = since + def.remind * (st.reminders as i32 + 1);
                    // Past the escalation time reminders stop: the escalation says it all.
                    let past = now >= since + def.escalate;
                    if def.remind <= chrono::Duration::zero() || now < next || st.escalated || past
                    {
                        return Ok(());
                    }
                    st.reminders += 1;
                    let following = now + def.remind;
                    if following < since + def.escalate {
                        self.effects.push(Effect::Schedule {
                            step: Some(id.to_string()),
                            kind: TimerKind::Reminder,
                            at: following,
                        });
                    }
                    self.notify(
                        def.role,
                        NoticeKind::Reminder,
                        Some(id),
                        None,
                        None,
                        Some(due_at),
                    );
                } else if !st.escalated && now >= since + def.escalate {
                    st.escalated = true;
                    self.notify(
                        def.role,
                        NoticeKind::Escalation,
                        Some(id),
                        None,
                        None,
                        Some(due_at),
                    );
                    if def.role != Role::TenantAdmin {
                        self.notify(
                            Role::TenantAdmin,
                            NoticeKind::Escalation,
                            Some(id),
                            None,
                            None,
                            Some(due_at),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// A window that closed with none of its steps done is void: its steps wait again and the
    /// agreement is due once more.
    fn renegotiate_window(&mut self, window_steps: &[StepDef]) -> Result<(), Refusal> {
        let agreement = self.agreement_step()?;
        for s in window_steps {
            if let Some(st) = self.r.step_mut(&s.id) {
                st.status = StepStatus::Waiting;
                st.escalated = false;
            }
        }
        self.r.window = None;
        if let Some(st) = self.r.step_mut(&agreement.id) {
            st.status = StepStatus::Waiting;
            st.reminders = 0;
            st.escalated = false;
        }
        self.effects.push(Effect::Audit {
            action: "window.missed".into(),
            detail: "the agreed window closed before anything was exchanged; a new one is needed"
                .into(),
        });
        // `advance` makes the agreement due again and tells both parties.
        Ok(())
    }

    fn cancel(&mut self, actor: &Actor) -> Result<(), Refusal> {
        let pnr = self.def.point_of_no_return.clone();
        if !actor.holds(Role::TenantAdmin, &self.r) {
            return Err(Refusal::WrongRole {
                step: "cancel".into(),
                role: Role::TenantAdmin,
                actor: actor.email.clone(),
            });
        }
        if self.r.is_settled(&pnr) {
            return Err(Refusal::Invalid {
                step: "cancel".into(),
                reason: format!(
                    "step {pnr} is done, past the point of no return: roll back instead"
                ),
            });
        }
        self.undo("cancel")?;
        if let (Some(cert), false) = (
            self.r.new_cert,
            self.world
                .keystore
                .values()
                .any(|c| Some(c) == self.r.new_cert.as_ref()),
        ) {
            self.effects.push(Effect::DiscardPendingKey { cert });
        }
        self.r.status = RenewalStatus::Cancelled;
        self.r.generating = false;
        self.end_notices(NoticeKind::Cancelled);
        self.effects.push(Effect::Audit {
            action: "renewal.cancel".into(),
            detail: format!("by {}", actor.email),
        });
        Ok(())
    }

    fn rollback(&mut self, actor: &Actor) -> Result<(), Refusal> {
        if !actor.holds(Role::TenantAdmin, &self.r) {
            return Err(Refusal::WrongRole {
                step: "rollback".into(),
                role: Role::TenantAdmin,
                actor: actor.email.clone(),
            });
        }
        match self.r.status {
            RenewalStatus::Running | RenewalStatus::Completed => {}
            other => {
                return Err(Refusal::Finished { status: other });
            }
        }
        let pnr = self.def.point_of_no_return.clone();
        if !self.r.is_settled(&pnr) {
            return Err(Refusal::Invalid {
                step: "rollback".into(),
                reason: format!("step {pnr} is not done yet: cancel instead"),
            });
        }
        self.undo("rollback")?;
        self.r.status = RenewalStatus::RolledBack;
        self.end_notices(NoticeKind::RolledBack);
        self.effects.push(Effect::Audit {
            action: "renewal.rollback".into(),
            detail: format!("by {}", actor.email),
        });
        Ok(())
    }

    /// Reverses rekey's own changes, newest first, refusing if the result would break
    /// verification. Receiver trust is the receiver administrator's and is left alone.
    fn undo(&mut self, what: &str) -> Result<(), Refusal> {
        let mut inverse = Vec::new();
        for c in self.r.applied.iter().rev() {
            let inv = match c {
                Change::AddKey { alias, .. } => Some(Change::RemoveKey {
                    alias: alias.clone(),
                }),
                Change::ExchangeKey { alias, .. } => {
                    self.previous_cert(alias).map(|cert| Change::RestoreKey {
                        alias: alias.clone(),
                        cert,
                    })
                }
                Change::RemoveKey { alias } => {
                    self.previous_cert(alias).map(|cert| Change::AddKey {
                        alias: alias.clone(),
                        cert,
                    })
                }
                Change::AddSignerAlias { alias, .. } => Some(Change::RemoveSignerAlias {
                    alias: alias.clone(),
                    keep: if Some(alias) == self.r.new_alias.as_ref() {
                        self.r.prepared_on.clone()
                    } else {
                        Vec::new()
                    },
                }),
                Change::RemoveSignerAlias { alias, .. } if alias == &self.r.alias => self
                    .r
                    .new_alias
                    .clone()
                    .map(|copy_from| Change::AddSignerAlias {
                        alias: alias.clone(),
                        copy_from,
                    }),
                _ => None,
            };
            inverse.extend(inv);
        }
        let mut w = self.world.clone();
        for c in &inverse {
            w.apply(c).map_err(|e| Refusal::Invalid {
                step: what.into(),
                reason: e,
            })?;
        }
        if let Some(reason) = w.violation() {
            return Err(Refusal::Unsafe {
                step: what.into(),
                reason: format!(
                    "{reason}; ask the receiver administrator to trust the old certificate again first"
                ),
            });
        }
        self.world = w;
        for c in inverse {
            self.effects.push(Effect::Apply(c));
        }
        self.effects.push(Effect::CancelTimers);
        Ok(())
    }

    /// The certificate an alias held before this renewal touched it.
    fn previous_cert(&self, alias: &Alias) -> Option<Fingerprint> {
        if *alias == self.r.alias {
            self.r.old_cert
        } else {
            None
        }
    }

    fn end_notices(&mut self, kind: NoticeKind) {
        for role in Role::PEOPLE {
            self.notify(role, kind, None, None, None, None);
        }
    }

    /// The changes an action step makes.
    fn planned(&self, step: &StepDef) -> Result<Vec<Change>, Refusal> {
        let Some(action) = step.action else {
            return Ok(vec![]);
        };
        let need_new = || {
            self.r.new_cert.ok_or_else(|| Refusal::Invalid {
                step: step.id.clone(),
                reason: "the new key does not exist yet".into(),
            })
        };
        let need_alias = || {
            self.r.new_alias.clone().ok_or_else(|| Refusal::Invalid {
                step: step.id.clone(),
                reason: "this renewal has no second alias".into(),
            })
        };
        let alias = self.r.alias.clone();
        Ok(match action {
            ActionKind::GenerateKey => vec![],
            ActionKind::AddKeyNewAlias | ActionKind::AddKeyPreparedAlias => vec![Change::AddKey {
                alias: need_alias()?,
                cert: need_new()?,
            }],
            ActionKind::ExchangeKeyKeepAlias => vec![Change::ExchangeKey {
                alias,
                cert: need_new()?,
            }],
            ActionKind::AddSignerAlias | ActionKind::AddPreparedAlias => {
                vec![Change::AddSignerAlias {
                    alias: need_alias()?,
                    copy_from: alias,
                }]
            }
            ActionKind::RemoveOldSignerAlias => vec![Change::RemoveSignerAlias {
                alias,
                keep: Vec::new(),
            }],
            ActionKind::RemoveOldKey => vec![Change::RemoveKey { alias }],
        })
    }

    /// Carries out an action step for `by`.
    fn perform(&mut self, step: &StepDef, by: &str) -> Result<(), Refusal> {
        if step.action == Some(ActionKind::GenerateKey) {
            if self.r.new_cert.is_some() {
                self.done(step, by);
            } else if !self.r.generating {
                self.r.generating = true;
                self.r.generation_approved_by = Some(by.to_string());
                self.effects.push(Effect::GenerateKey {
                    bits: self.r.bits,
                    ca_signed: self.r.ca_signed,
                });
                if self.r.ca_signed {
                    // The step stays due until the chain is uploaded: its due date is the CSR's.
                    let due = self.due_of(&step.id);
                    self.notify(
                        Role::TenantAdmin,
                        NoticeKind::CertificateRequest,
                        Some(&step.id),
                        None,
                        None,
                        due,
                    );
                }
                self.effects.push(Effect::Audit {
                    action: "step.approve".into(),
                    detail: format!("{} by {by}", step.id),
                });
            }
            return Ok(());
        }
        let changes = self.planned(step)?;
        self.change(step, changes)?;
        self.done(step, by);
        Ok(())
    }

    /// The guard: applies changes to a copy of the world and refuses them if the receiver would
    /// then reject a message — except inside an agreed, open downtime window.
    fn change(&mut self, step: &StepDef, changes: Vec<Change>) -> Result<(), Refusal> {
        let mut w = self.world.clone();
        for c in &changes {
            w.apply(c).map_err(|e| Refusal::Invalid {
                step: step.id.clone(),
                reason: e,
            })?;
        }
        let violation = w.violation();
        let in_window = step.kind == StepKind::Window && self.r.window_open();
        if let Some(reason) = &violation
            && !in_window
        {
            return Err(Refusal::Unsafe {
                step: step.id.clone(),
                reason: reason.clone(),
            });
        }
        // Its end is recorded in `finish`, once the receiver verifies again.
        if in_window && violation.is_some() && self.r.downtime.started.is_none() {
            self.r.downtime.started = Some(self.now);
        }
        self.world = w;
        for c in changes {
            if !matches!(c, Change::Trust { .. } | Change::Distrust { .. }) {
                self.r.applied.push(c.clone());
            }
            self.effects.push(Effect::Apply(c));
        }
        Ok(())
    }

    fn done(&mut self, step: &StepDef, by: &str) {
        let now = self.now;
        if let Some(st) = self.r.step_mut(&step.id) {
            let since = match st.status {
                StepStatus::Due { since, .. } => since,
                _ => now,
            };
            st.status = StepStatus::Done {
                since,
                at: now,
                by: by.to_string(),
            };
            st.blocked = None;
        }
        self.completed.push(step.id.clone());
        self.effects.push(Effect::Audit {
            action: "step.done".into(),
            detail: format!("{} (seed {}) by {by}", step.id, step.seed),
        });
    }

    fn notify(
        &mut self,
        to: Role,
        kind: NoticeKind,
        step: Option<&str>,
        attach_certificate: Option<Fingerprint>,
        test_steps: Option<Vec<StepSigners>>,
        due_at: Option<DateTime<Utc>>,
    ) {
        let test_steps = test_steps.unwrap_or_default();
        let test_message = test_steps.first().map(|t| t.signers.clone());
        if let Some(st) = step.and_then(|s| self.r.step_mut(s))
            && !st.notified.contains(&to)
        {
            st.notified.push(to);
        }
        self.effects.push(Effect::Notify(Notice {
            to,
            kind,
            step: step.map(str::to_string),
            attach_certificate,
            test_message,
            test_steps,
            due_at,
            refused: None,
        }));
    }

    /// `step`'s due date while it is due.
    fn due_of(&self, step: &str) -> Option<DateTime<Utc>> {
        match self.r.step(step)?.status {
            StepStatus::Due { due_at, .. } => Some(due_at),
            _ => None,
        }
    }

    /// How every signer step sending to the renewal's receiver signs after the actions up to
    /// and including `until` — what the test messages show, one per step.
    fn test_signers(&self, until: &str) -> Option<Vec<StepSigners>> {
        let mut w = self.world.clone();
        let end = self.def.index(until)?;
        for s in &self.def.steps[..=end] {
            if self.r.is_settled(&s.id) {
                continue;
            }
            for c in self.planned(s).ok()? {
                // A change already in effect is fine to skip.
                let _ = w.apply(&c);
            }
        }
        let out: Vec<StepSigners> = w
            .signer_steps
            .iter()
            .filter(|s| s.reaches_receiver)
            .map(|s| StepSigners {
                signer_step: s.name(),
                signers: w.signers(s),
            })
            .collect();
        (!out.is_empty()).then_some(out)
    }

    /// Makes every step whose prerequisites are met due, running informs and auto-approved
    /// actions at once, until nothing moves; then completes the renewal if all is done.
    fn advance(&mut self) {
        if self.r.status != RenewalStatus::Running {
            return;
        }
        loop {
            let mut moved = false;
            for step in self.def.steps.clone() {
                let waiting = matches!(
                    self.r.step(&step.id).map(|s| &s.status),
                    Some(StepStatus::Waiting)
                );
                let ready = waiting
                    && step.after.iter().all(|a| self.r.is_settled(a))
                    && (step.kind != StepKind::Window || self.r.window_open());
                if ready {
                    self.make_due(&step);
                    moved = true;
                }
                // Auto-approved actions that were due but blocked by the guard get another try.
                let retry = self.r.auto_approve
                    && step.action.is_some()
                    && matches!(
                        self.r.step(&step.id).map(|s| &s.status),
                        Some(StepStatus::Due { .. })
                    )
                    && !ready
                    && self.r.step(&step.id).is_some_and(|s| s.blocked.is_some());
                if retry && self.run_auto(&step) {
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        if self
            .r
            .steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Done { .. } | StepStatus::Skipped))
        {
            self.r.status = RenewalStatus::Completed;
            self.effects.push(Effect::CancelTimers);
            self.end_notices(NoticeKind::Completed);
            self.effects.push(Effect::Audit {
                action: "renewal.complete".into(),
                detail: String::new(),
            });
        }
    }

    fn make_due(&mut self, step: &StepDef) {
        let now = self.now;
        // A window step becomes due when the window opens and must be done before it closes.
        let due_at = match (step.kind, &self.r.window) {
            (StepKind::Window, Some(w)) => w.end,
            _ => now + step.due,
        };
        if let Some(st) = self.r.step_mut(&step.id) {
            st.status = StepStatus::Due { since: now, due_at };
        }
        match step.kind {
            StepKind::Inform => {
                let to = step.notify.unwrap_or(step.role);
                let cert = if step.attach_certificate {
                    self.r.new_cert
                } else {
                    None
                };
                self.notify(to, NoticeKind::Inform, Some(&step.id), cert, None, None);
                self.done(step, SYSTEM);
                return;
            }
            _ => {
                if step.remind > chrono::Duration::zero() {
                    self.effects.push(Effect::Schedule {
                        step: Some(step.id.clone()),
                        kind: TimerKind::Reminder,
                        at: now + step.remind,
                    });
                }
                if step.escalate > chrono::Duration::zero() {
                    self.effects.push(Effect::Schedule {
                        step: Some(step.id.clone()),
                        kind: TimerKind::Escalation,
                        at: now + step.escalate,
                    });
                }
            }
        }
        if step.action.is_some() && self.r.auto_approve {
            self.run_auto(step);
            return;
        }
        let test = step
            .test_message_after
            .as_deref()
            .and_then(|u| self.test_signers(u));
        let cert = if step.task.is_some() {
            self.r.new_cert
        } else {
            None
        };
        self.notify(
            step.role,
            NoticeKind::StepDue,
            Some(&step.id),
            cert,
            test,
            Some(due_at),
        );
        if let (StepKind::Agreement, Some(other)) = (step.kind, step.with_role) {
            self.notify(
                other,
                NoticeKind::StepDue,
                Some(&step.id),
                None,
                None,
                Some(due_at),
            );
        }
    }

    /// Runs an auto-approved action; a refusal leaves the step due, records why, and escalates.
    fn run_auto(&mut self, step: &StepDef) -> bool {
        match self.perform(step, SYSTEM) {
            Ok(()) => true,
            Err(refusal) => {
                let reason = refusal.to_string();
                let first = self
                    .r
                    .step(&step.id)
                    .is_some_and(|s| s.blocked.as_deref() != Some(reason.as_str()));
                if let Some(st) = self.r.step_mut(&step.id) {
                    st.blocked = Some(reason.clone());
                }
                if first {
                    let due = self.due_of(&step.id);
                    self.notify(
                        Role::TenantAdmin,
                        NoticeKind::Escalation,
                        Some(&step.id),
                        None,
                        None,
                        due,
                    );
                    // The mail says why, in the guard's words.
                    if let Some(Effect::Notify(n)) = self.effects.last_mut() {
                        n.refused = Some(reason);
                    }
                }
                false
            }
        }
    }
}
