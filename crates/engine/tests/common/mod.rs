//! A small harness that plays the three roles against the pure engine.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use rekey_engine::*;
use uuid::Uuid;

pub const TENANT: TenantId = TenantId::from_uuid(Uuid::from_u128(0x7e1));
pub const RECEIVER: ReceiverId = ReceiverId::from_uuid(Uuid::from_u128(0x7ec1));
/// Another tenant and receiver, where the stranger holds its roles.
pub const OTHER_TENANT: TenantId = TenantId::from_uuid(Uuid::from_u128(0x7e2));
pub const OTHER_RECEIVER: ReceiverId = ReceiverId::from_uuid(Uuid::from_u128(0x7ec2));
/// The certificate under `signing` when a renewal starts.
pub const OLD: Fingerprint = Fingerprint::from_bytes([0x01; 32]);
/// The renewal's new certificate.
pub const NEW: Fingerprint = Fingerprint::from_bytes([0x02; 32]);

/// An alias the tests name (they only name valid ones).
pub fn alias(s: &str) -> Alias {
    Alias::parse(s).expect("a valid alias")
}

/// Aliases the tests name.
pub fn aliases(list: &[&str]) -> Vec<Alias> {
    list.iter().map(|a| alias(a)).collect()
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("valid date")
}

pub fn catalog() -> Catalog {
    Catalog::builtin().expect("built-in workflows are valid")
}

pub fn actor(email: &str, role: Role) -> Actor {
    let grant = match role {
        Role::TenantAdmin => Grant::TenantAdmin { tenant: TENANT },
        Role::IntegrationDeveloper => Grant::IntegrationDeveloper { tenant: TENANT },
        Role::ReceiverAdmin => Grant::ReceiverAdmin { receiver: RECEIVER },
        Role::Signer => unreachable!("no procedure step or notice is a signer's"),
    };
    Actor::new(email, vec![grant])
}

pub fn admin() -> Actor {
    actor("admin@tenant.example", Role::TenantAdmin)
}
pub fn developer() -> Actor {
    actor("dev@tenant.example", Role::IntegrationDeveloper)
}
pub fn receiver_admin() -> Actor {
    actor("ops@receiver.example", Role::ReceiverAdmin)
}
/// Holds the right roles, but for another tenant and receiver.
pub fn stranger() -> Actor {
    Actor::new(
        "someone@elsewhere.example",
        vec![
            Grant::TenantAdmin {
                tenant: OTHER_TENANT,
            },
            Grant::IntegrationDeveloper {
                tenant: OTHER_TENANT,
            },
            Grant::ReceiverAdmin {
                receiver: OTHER_RECEIVER,
            },
        ],
    )
}

pub fn actor_for(role: Role) -> Actor {
    match role {
        Role::TenantAdmin => admin(),
        Role::IntegrationDeveloper => developer(),
        Role::ReceiverAdmin => receiver_admin(),
        Role::Signer => unreachable!("no procedure step or notice is a signer's"),
    }
}

/// The world each procedure is chosen for: alias `signing` holds OLD, which the receiver trusts.
pub fn world_for(procedure: ProcedureId) -> World {
    let (profile, aliases) = match procedure {
        ProcedureId::DualTrust => (
            Profile {
                verifies_multiple_keys: true,
                accepts_multiple_signatures: false,
            },
            vec!["signing"],
        ),
        ProcedureId::DualSignature => (
            Profile {
                verifies_multiple_keys: false,
                accepts_multiple_signatures: true,
            },
            vec!["signing"],
        ),
        ProcedureId::PreparedSecondAlias => (
            Profile {
                verifies_multiple_keys: false,
                accepts_multiple_signatures: true,
            },
            vec!["signing", "signing-next"],
        ),
        ProcedureId::DowntimeWindow => (Profile::default(), vec!["signing"]),
    };
    let aliases = aliases.iter().map(|a| alias(a)).collect::<Vec<_>>();
    World {
        keystore: BTreeMap::from([(alias("signing"), OLD)]),
        signer_steps: vec![
            SignerStepModel::new("orders", "sign", aliases.clone()),
            SignerStepModel::new("invoices", "sign", aliases),
        ],
        trust: BTreeSet::from([OLD]),
        profile,
        others: BTreeMap::new(),
        not_yet_valid: BTreeSet::new(),
    }
}

pub fn params(procedure: Option<ProcedureId>, auto_approve: bool) -> StartParams {
    StartParams {
        id: Uuid::nil(),
        tenant: TENANT,
        receiver: RECEIVER,
        alias: alias("signing"),
        new_alias: None,
        procedure,
        auto_approve,
        ca_signed: false,
        bits: 3072,
    }
}

/// One renewal in progress together with its world.
#[derive(Clone)]
pub struct Sim {
    pub catalog: Catalog,
    pub renewal: Renewal,
    pub world: World,
    pub now: DateTime<Utc>,
    pub log: Vec<(Event, String, Vec<Effect>)>,
}

impl Sim {
    pub fn start(procedure: ProcedureId, auto_approve: bool) -> Self {
        let catalog = catalog();
        let world = world_for(procedure);
        let t = start(
            &catalog,
            params(Some(procedure), auto_approve),
            &world,
            &admin(),
            t0(),
        )
        .expect("starts");
        let mut sim = Sim {
            catalog,
            renewal: t.renewal,
            world: t.world,
            now: t0(),
            log: vec![],
        };
        sim.after(&t.effects);
        sim
    }

    /// The shell's part: answers key generation at once.
    fn after(&mut self, effects: &[Effect]) {
        if effects
            .iter()
            .any(|e| matches!(e, Effect::GenerateKey { .. }))
        {
            self.send(&Actor::system(), Event::KeyReady { cert: NEW })
                .expect("key ready accepted");
        }
    }

    pub fn send(&mut self, actor: &Actor, event: Event) -> Result<Transition, Refusal> {
        self.now += chrono::Duration::minutes(5);
        let t = apply(
            &self.catalog,
            &self.renewal,
            &self.world,
            actor,
            event.clone(),
            self.now,
        )?;
        self.renewal = t.renewal.clone();
        self.world = t.world.clone();
        self.log
            .push((event, actor.email.clone(), t.effects.clone()));
        self.after(&t.effects);
        Ok(t)
    }

    /// Fires a timer as the scheduler would at `at`.
    pub fn fire_at(
        &mut self,
        at: DateTime<Utc>,
        step: Option<&str>,
        kind: TimerKind,
    ) -> Result<Transition, Refusal> {
        self.now = at - chrono::Duration::minutes(5);
        let step = step.map(str::to_string);
        self.send(&Actor::system(), Event::Timer { step, kind })
    }

    pub fn def(&self) -> &Procedure {
        self.catalog.get(self.renewal.procedure)
    }

    /// Does the next due step as its owner would; returns false when nothing is due.
    pub fn play_one(&mut self) -> bool {
        let Some(due) = self.renewal.due_steps().next().map(|s| s.id.clone()) else {
            return false;
        };
        let step = self.def().step(&due).expect("step exists").clone();
        let who = actor_for(step.role);
        let event = match (step.kind, step.action, step.task) {
            (StepKind::Agreement, _, _) => {
                let start = self.now + chrono::Duration::hours(2);
                self.send(
                    &who,
                    Event::ProposeWindow {
                        start,
                        end: start + chrono::Duration::hours(1),
                    },
                )
                .expect("propose");
                let other = actor_for(step.with_role.expect("agreement has two parties"));
                self.send(&other, Event::AcceptWindow)
                    .unwrap_or_else(|r| panic!("{r}"));
                return true;
            }
            (_, Some(_), _) => Event::Approve { step: due },
            (_, _, Some(_)) => Event::Complete {
                step: due,
                fingerprint: NEW,
            },
            _ => panic!("step {due} is due but cannot be played"),
        };
        self.send(&who, event).unwrap_or_else(|r| panic!("{r}"));
        true
    }

    /// Plays until nothing is due; opens the window when the renewal waits for it.
    pub fn play_all(&mut self) {
        for _ in 0..100 {
            if self.play_one() {
                continue;
            }
            let waiting_for_window = self
                .renewal
                .window
                .as_ref()
                .is_some_and(|w| w.agreed && !w.open && !w.closed);
            if waiting_for_window {
                let at = self.renewal.window.as_ref().map_or(self.now, |w| w.start);
                self.fire_at(at, None, TimerKind::WindowOpen)
                    .expect("window opens");
                continue;
            }
            return;
        }
        panic!("renewal did not settle");
    }
}
