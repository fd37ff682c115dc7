//! Explores every reachable interleaving of each procedure's events — right and wrong actors,
//! repeated, out of order, cancel and rollback at every point — and checks the invariant in
//! every reachable state, against the engine's model and against real CMS verification.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};

use common::*;
use rekey_crypto::{
    Certificate, DigestAlg, KeyPair, ReceiverProfile, SignOptions, SignerSpec, receiver_verdict,
    self_signed_at, sign,
};
use rekey_engine::*;

/// Real keys and certificates for the model's two certificate ids.
struct Reference {
    keys: HashMap<Fingerprint, (KeyPair, Certificate)>,
}

impl Reference {
    fn new() -> Self {
        // Issued as rekey issues them: on the engine's clock, notBefore an hour back.
        let load = |n: u32, cn: &str| {
            let path = format!(
                "{}/../crypto/tests/fixtures/key{n}.pem",
                env!("CARGO_MANIFEST_DIR")
            );
            let pem = std::fs::read_to_string(&path).expect("fixture");
            let key = KeyPair::from_pem(&pem).expect("key");
            let cert = self_signed_at(
                &key,
                &format!("CN={cn}"),
                t0(),
                chrono::Duration::hours(1),
                365,
            )
            .expect("cert");
            (key, cert)
        };
        let keys = HashMap::from([(OLD, load(1, "old")), (NEW, load(2, "new"))]);
        Reference { keys }
    }

    /// Signs a probe per signer step as the world's configuration would, and asks the reference
    /// receiver (real CMS verification, the profile's rule) for its verdict.
    fn verdicts(&self, world: &World) -> Vec<bool> {
        let trusted: Vec<Certificate> =
            world.trust.iter().map(|c| self.keys[c].1.clone()).collect();
        let profile = ReceiverProfile {
            verifies_multiple_keys: world.profile.verifies_multiple_keys,
            accepts_multiple_signatures: world.profile.accepts_multiple_signatures,
        };
        world
            .probes()
            .iter()
            .map(|p| {
                let chains: Vec<[Certificate; 1]> =
                    p.signers.iter().map(|c| [self.keys[c].1.clone()]).collect();
                let specs: Vec<SignerSpec<'_>> = p
                    .signers
                    .iter()
                    .zip(&chains)
                    .map(|(c, chain)| SignerSpec {
                        key: &self.keys[c].0,
                        chain,
                        digest: DigestAlg::Sha256,
                        include_certs: true,
                        include_signing_time: true,
                    })
                    .collect();
                if specs.is_empty() {
                    return false; // signing would fail: nothing reaches the receiver
                }
                let der = sign(
                    b"probe",
                    &specs,
                    &SignOptions {
                        detached: false,
                        signing_time: t0(),
                    },
                )
                .expect("sign");
                receiver_verdict(&der, None, &trusted, &profile, t0())
                    .expect("verify")
                    .0
                    .is_accepted()
            })
            .collect()
    }
}

fn events(def: &Procedure) -> Vec<(Actor, Event)> {
    let people = [admin(), developer(), receiver_admin(), stranger()];
    let mut out = Vec::new();
    for step in &def.steps {
        for who in &people {
            out.push((
                who.clone(),
                Event::Approve {
                    step: step.id.clone(),
                },
            ));
            for fp in [NEW, OLD] {
                out.push((
                    who.clone(),
                    Event::Complete {
                        step: step.id.clone(),
                        fingerprint: fp,
                    },
                ));
            }
        }
        for kind in [TimerKind::Reminder, TimerKind::Escalation] {
            out.push((
                Actor::system(),
                Event::Timer {
                    step: Some(step.id.clone()),
                    kind,
                },
            ));
        }
    }
    let ws = t0() + chrono::Duration::hours(1);
    for who in &people {
        out.push((
            who.clone(),
            Event::ProposeWindow {
                start: ws,
                end: ws + chrono::Duration::hours(1),
            },
        ));
        out.push((who.clone(), Event::AcceptWindow));
        out.push((who.clone(), Event::Cancel));
        out.push((who.clone(), Event::Rollback));
    }
    for kind in [TimerKind::WindowOpen, TimerKind::WindowClose] {
        out.push((Actor::system(), Event::Timer { step: None, kind }));
    }
    out.push((Actor::system(), Event::KeyReady { cert: NEW }));
    out.push((admin(), Event::KeyReady { cert: NEW }));
    out
}

/// Outside an agreed window, every message must be accepted; inside `downtime-window` a
/// rejection is allowed only once the window opened and it is recorded as downtime.
fn check_invariant(r: &Renewal, w: &World, real: &[bool]) -> Result<(), String> {
    let model: Vec<bool> = w.probes().iter().map(|p| p.accepted).collect();
    if model != real {
        return Err(format!(
            "model {model:?} disagrees with the reference receiver {real:?}"
        ));
    }
    if let Some(v) = w.violation() {
        let windowed = r.procedure == ProcedureId::DowntimeWindow
            && r.window
                .as_ref()
                .is_some_and(|win| win.agreed && (win.open || win.closed))
            && r.downtime.started.is_some();
        if !windowed {
            return Err(format!(
                "receiver would reject outside an agreed window: {v}"
            ));
        }
    }
    // Each of rekey's changes is applied at most once.
    let mut seen = HashSet::new();
    for c in &r.applied {
        if !seen.insert(format!("{c:?}")) {
            return Err(format!("change applied twice: {c:?}"));
        }
    }
    Ok(())
}

fn late() -> chrono::DateTime<chrono::Utc> {
    t0() + chrono::Duration::days(60)
}

/// Two states that differ only in when things happened are the same state for the invariant.
fn strip_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
            s.clear()
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_times),
        serde_json::Value::Object(o) => {
            // How many reminders went out does not matter to the invariant either.
            o.remove("reminders");
            o.values_mut().for_each(strip_times)
        }
        _ => {}
    }
}

fn explore(
    procedure: ProcedureId,
    auto_approve: bool,
    reference: &Reference,
) -> (usize, usize, bool) {
    let catalog = catalog();
    let def = catalog.get(procedure).clone();
    let world = world_for(procedure);
    let t = start(
        &catalog,
        params(Some(procedure), auto_approve),
        &world,
        &admin(),
        t0(),
    )
    .expect("start");
    let evs = events(&def);
    let key = |r: &Renewal, w: &World| {
        let mut v = serde_json::to_value((r, w)).expect("serialise");
        strip_times(&mut v);
        v.to_string()
    };
    let mut queue = VecDeque::from([(t.renewal, t.world)]);
    let mut seen: HashSet<String> = HashSet::new();
    let mut verdict_cache: HashMap<String, Vec<bool>> = HashMap::new();
    let mut transitions = 0;
    let mut completed = false;
    while let Some((r, w)) = queue.pop_front() {
        if !seen.insert(key(&r, &w)) {
            continue;
        }
        assert!(
            seen.len() < 200_000,
            "{procedure}: state space larger than expected"
        );
        let wk = serde_json::to_string(&w).expect("serialise");
        let real = verdict_cache
            .entry(wk)
            .or_insert_with(|| reference.verdicts(&w))
            .clone();
        if let Err(e) = check_invariant(&r, &w, &real) {
            panic!("{procedure}: {e}\nrenewal: {r:#?}");
        }
        completed |= r.status == RenewalStatus::Completed;
        for (who, ev) in &evs {
            // People act at t0; timers fire late enough to be due. A refusal changes nothing
            // (the state is not even touched), so only accepted events lead anywhere.
            let now = if matches!(ev, Event::Timer { .. }) {
                late()
            } else {
                t0()
            };
            if let Ok(t) = apply(&catalog, &r, &w, who, ev.clone(), now) {
                transitions += 1;
                queue.push_back((t.renewal, t.world));
            }
        }
    }
    (seen.len(), transitions, completed)
}

#[test]
fn every_reachable_state_of_every_procedure_keeps_the_invariant() {
    let reference = Reference::new();
    for procedure in ProcedureId::ALL {
        for auto in [false, true] {
            let (states, transitions, completed) = explore(procedure, auto, &reference);
            println!(
                "{procedure} (auto-approve {auto}): {states} states, {transitions} transitions"
            );
            assert!(completed, "{procedure}: completion is reachable");
            assert!(states > 5, "{procedure}: the exploration went somewhere");
        }
    }
}

#[test]
fn the_guard_refuses_exactly_what_the_reference_receiver_would_reject() {
    // Drop the receiver's trust in the new certificate behind the engine's back. The model and
    // the reference receiver must agree that exchanging now breaks verification, and the engine
    // must refuse the exchange.
    let reference = Reference::new();
    let mut sim = Sim::start(ProcedureId::DualTrust, false);
    sim.send(
        &admin(),
        Event::Approve {
            step: "create-key-pair".into(),
        },
    )
    .expect("generate");
    sim.send(
        &receiver_admin(),
        Event::Complete {
            step: "trust-old-and-new".into(),
            fingerprint: NEW,
        },
    )
    .expect("trust");
    sim.world.trust.remove(&NEW);
    let mut exchanged = sim.world.clone();
    exchanged
        .apply(&Change::ExchangeKey {
            alias: alias("signing"),
            cert: NEW,
        })
        .expect("applies");
    assert_eq!(reference.verdicts(&exchanged), vec![false, false]);
    assert!(exchanged.probes().iter().all(|p| !p.accepted));
    let r = sim
        .send(
            &admin(),
            Event::Approve {
                step: "exchange-key-pair".into(),
            },
        )
        .expect_err("refused");
    assert!(matches!(r, Refusal::Unsafe { .. }), "{r}");
    // With the trust restored the same step goes through, and both agree it is accepted.
    sim.world.trust.insert(NEW);
    sim.send(
        &admin(),
        Event::Approve {
            step: "exchange-key-pair".into(),
        },
    )
    .expect("safe now");
    assert_eq!(reference.verdicts(&sim.world), vec![true, true]);
}
