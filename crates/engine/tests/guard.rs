//! The guard sees everything a renewal touches (issue 11 §2): every receiver each signer step's
//! messages reach, and a prepared second alias decided per signer step.

mod common;

use std::collections::BTreeSet;

use common::*;
use rekey_engine::*;

fn due(sim: &Sim) -> Option<String> {
    sim.renewal.due_steps().next().map(|s| s.id.clone())
}

/// Plays every step before `step` as its owner would.
fn play_until(sim: &mut Sim, step: &str) {
    while due(sim).as_deref() != Some(step) {
        assert!(sim.play_one(), "{step} never became due");
    }
}

/// Another receiver some signer step's messages reach.
const R2: ReceiverId = ReceiverId::from_uuid(uuid::Uuid::from_u128(0x7ec3));

fn other_receiver(profile: Profile) -> OtherReceiver {
    OtherReceiver {
        name: "R2".into(),
        trust: BTreeSet::from([OLD]),
        profile,
    }
}

#[test]
fn the_guard_judges_every_receiver_a_signer_step_reaches() {
    let mut sim = Sim::start(ProcedureId::DualSignature, false);
    // While the renewal runs, the invoices step is recorded to send to a second receiver too.
    sim.world.others.insert(
        R2,
        other_receiver(Profile {
            verifies_multiple_keys: false,
            accepts_multiple_signatures: true,
        }),
    );
    sim.world.signer_steps[1].others.push(R2);
    play_until(&mut sim, "remove-signer-alias");
    // Removing the old alias would leave the invoices step signing with the new key alone,
    // which R2 does not trust: refused, naming the step and the receiver.
    let before = sim.renewal.clone();
    let refused = sim
        .send(
            &developer(),
            Event::Approve {
                step: "remove-signer-alias".into(),
            },
        )
        .expect_err("R2 would reject");
    let msg = refused.to_string();
    assert!(
        matches!(refused, Refusal::Unsafe { .. })
            && msg.contains("invoices/sign")
            && msg.contains("to receiver R2"),
        "{msg}"
    );
    assert_eq!(sim.renewal, before, "nothing changed");
}

#[test]
fn a_start_is_refused_when_no_signer_step_of_the_alias_sends_to_the_receiver() {
    let mut world = world_for(ProcedureId::DualTrust);
    world.others.insert(
        R2,
        other_receiver(Profile {
            verifies_multiple_keys: true,
            accepts_multiple_signatures: false,
        }),
    );
    for s in &mut world.signer_steps {
        s.reaches_receiver = false;
        s.others = vec![R2];
    }
    let refused =
        start(&catalog(), params(None, false), &world, &admin(), t0()).expect_err("refused");
    let msg = refused.to_string();
    assert!(
        msg.contains("no signer step listing alias") && msg.contains("orders/sign"),
        "{msg}"
    );
}

#[test]
fn receivers_with_different_profiles_are_refused_with_the_reason() {
    let mut world = world_for(ProcedureId::DualTrust);
    world.others.insert(
        R2,
        other_receiver(Profile {
            verifies_multiple_keys: false,
            accepts_multiple_signatures: false,
        }),
    );
    world.signer_steps[1].others.push(R2);
    let refused =
        start(&catalog(), params(None, false), &world, &admin(), t0()).expect_err("refused");
    let msg = refused.to_string();
    assert!(
        msg.contains("R2 (via signer step invoices/sign)")
            && msg.contains("no procedure is safe for all")
            && msg.contains("this receiver allows dual-trust")
            && msg.contains("R2 allows downtime-window"),
        "{msg}"
    );
}

/// The orders step lists the prepared alias, the invoices step does not.
fn half_prepared() -> World {
    let mut world = world_for(ProcedureId::PreparedSecondAlias);
    world.signer_steps[1].aliases = aliases(&["signing"]);
    world
}

#[test]
fn a_prepared_alias_is_added_only_to_the_signer_steps_that_lack_it() {
    let mut sim_world = half_prepared();
    let t = start(&catalog(), params(None, false), &sim_world, &admin(), t0()).expect("starts");
    assert_eq!(t.renewal.procedure, ProcedureId::PreparedSecondAlias);
    assert_eq!(t.renewal.new_alias, Some(alias("signing-next")));
    assert_eq!(t.renewal.prepared_on, vec!["orders/sign".to_string()]);
    // The developer's step is due, not skipped: one step lacks the alias.
    assert!(matches!(
        t.renewal.step("prepare-second-alias").map(|s| &s.status),
        Some(StepStatus::Due { .. })
    ));
    sim_world = t.world;
    let t = apply(
        &catalog(),
        &t.renewal,
        &sim_world,
        &developer(),
        Event::Approve {
            step: "prepare-second-alias".into(),
        },
        t0(),
    )
    .expect("approved");
    for s in &t.world.signer_steps {
        assert_eq!(
            s.aliases,
            aliases(&["signing", "signing-next"]),
            "{}",
            s.name()
        );
    }
    // A cancel removes the alias from the step it was added to and keeps the one that listed
    // it before the renewal.
    let c = apply(
        &catalog(),
        &t.renewal,
        &t.world,
        &admin(),
        Event::Cancel,
        t0(),
    )
    .expect("cancelled");
    assert_eq!(
        c.world.signer_steps[0].aliases,
        aliases(&["signing", "signing-next"])
    );
    assert_eq!(c.world.signer_steps[1].aliases, aliases(&["signing"]));
}

#[test]
fn a_half_prepared_alias_renewal_completes_without_a_rejected_message() {
    let catalog = catalog();
    let world = half_prepared();
    let t = start(&catalog, params(None, true), &world, &admin(), t0()).expect("starts");
    let mut sim = Sim {
        catalog,
        renewal: t.renewal,
        world: t.world,
        now: t0(),
        log: vec![],
    };
    sim.send(&Actor::system(), Event::KeyReady { cert: NEW })
        .expect("key ready");
    sim.play_all();
    assert_eq!(sim.renewal.status, RenewalStatus::Completed);
    assert!(sim.world.violation().is_none());
}

#[test]
fn a_certificate_not_valid_yet_counts_as_untrusted_by_every_receiver_a_step_reaches() {
    let mut world = world_for(ProcedureId::DualTrust);
    world.others.insert(
        R2,
        other_receiver(Profile {
            verifies_multiple_keys: true,
            accepts_multiple_signatures: false,
        }),
    );
    world.signer_steps[1].reaches_receiver = false;
    world.signer_steps[1].others = vec![R2];
    let r2_verdict = |w: &World| {
        w.probes()
            .into_iter()
            .find(|p| p.signer_step == "invoices/sign" && p.receiver.as_deref() == Some("R2"))
            .expect("R2 judges the invoices step")
    };
    assert!(r2_verdict(&world).accepted);
    // The certificate R2 trusts (and the step signs with) starts being valid only later.
    world.not_yet_valid.insert(OLD);
    let p = r2_verdict(&world);
    assert!(
        !p.accepted
            && p.reason
                .as_deref()
                .is_some_and(|r| r.contains("not begun yet")),
        "{p:?}"
    );
}
