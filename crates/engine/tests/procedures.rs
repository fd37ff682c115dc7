//! Every procedure end to end with the three roles, the seed trace, and every kind of refusal.

mod common;

use common::*;
use rekey_engine::*;

fn seed_steps(p: &Procedure) -> Vec<&str> {
    p.steps.iter().map(|s| s.seed.as_str()).collect()
}

#[test]
fn definitions_trace_every_numbered_seed_step_in_order() {
    let c = catalog();
    assert_eq!(
        seed_steps(c.get(ProcedureId::DualTrust)),
        ["1", "2", "3", "4", "5", "6", "7"]
    );
    assert_eq!(
        seed_steps(c.get(ProcedureId::DualSignature)),
        ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]
    );
    assert_eq!(
        seed_steps(c.get(ProcedureId::PreparedSecondAlias)),
        ["assumption", "1", "2", "3", "4", "5", "6"]
    );
    assert_eq!(
        seed_steps(c.get(ProcedureId::DowntimeWindow)),
        ["1", "2", "3", "4.1", "4.2"]
    );
}

#[test]
fn every_procedure_completes_without_a_rejected_message() {
    for procedure in ProcedureId::ALL {
        let mut sim = Sim::start(procedure, false);
        assert_eq!(sim.renewal.procedure, procedure);
        sim.play_all();
        assert_eq!(
            sim.renewal.status,
            RenewalStatus::Completed,
            "{procedure}: {:#?}",
            sim.renewal.steps
        );
        // The last messages are signed by the new key alone, and the receiver trusts only it.
        for probe in sim.world.probes() {
            assert_eq!(probe.signers, vec![NEW], "{procedure}");
            assert!(probe.accepted, "{procedure}");
        }
        assert_eq!(
            sim.world.trust.iter().cloned().collect::<Vec<_>>(),
            vec![NEW]
        );
        // Every step of the definition is done (none skipped: the prepared alias exists).
        let done = sim
            .renewal
            .steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Done { .. }))
            .count();
        let skipped = sim
            .renewal
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Skipped)
            .count();
        assert_eq!(done + skipped, sim.def().steps.len());
        if procedure == ProcedureId::DowntimeWindow {
            assert!(sim.renewal.downtime.started.is_some() && sim.renewal.downtime.ended.is_some());
        } else {
            assert_eq!(sim.renewal.downtime, machine::Downtime::default());
        }
    }
}

#[test]
fn auto_approve_runs_actions_and_waits_only_for_people() {
    let mut sim = Sim::start(ProcedureId::DualSignature, true);
    // Steps 1-4 run at once (the developer's action is auto-approved too); the receiver is due.
    let due: Vec<_> = sim.renewal.due_steps().map(|s| s.id.clone()).collect();
    assert_eq!(due, ["switch-receiver"]);
    sim.play_all();
    assert_eq!(sim.renewal.status, RenewalStatus::Completed);
}

#[test]
fn informs_email_the_informed_role_with_the_certificate_attached() {
    let sim = Sim::start(ProcedureId::DualTrust, true);
    let notices: Vec<&Notice> = sim
        .log
        .iter()
        .flat_map(|(_, _, effects)| effects)
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n),
            _ => None,
        })
        .collect();
    let provide = notices
        .iter()
        .find(|n| n.step.as_deref() == Some("provide-certificate"))
        .expect("step 2 informs");
    assert_eq!(provide.to, Role::ReceiverAdmin);
    assert_eq!(provide.attach_certificate, Some(NEW));
    // The receiver's task carries a test message signed as after the exchange: new key alone.
    let task = notices
        .iter()
        .find(|n| n.step.as_deref() == Some("trust-old-and-new") && n.kind == NoticeKind::StepDue)
        .expect("task due");
    assert_eq!(task.test_message, Some(vec![NEW]));
}

#[test]
fn dual_signature_test_message_carries_both_signatures() {
    let sim = Sim::start(ProcedureId::DualSignature, true);
    let task = sim
        .log
        .iter()
        .flat_map(|(_, _, e)| e)
        .find_map(|e| match e {
            Effect::Notify(n)
                if n.step.as_deref() == Some("switch-receiver")
                    && n.kind == NoticeKind::StepDue =>
            {
                Some(n.clone())
            }
            _ => None,
        })
        .expect("switch task due");
    assert_eq!(task.test_message, Some(vec![OLD, NEW]));
}

#[test]
fn wrong_role_and_wrong_scope_are_refused_and_change_nothing() {
    let mut sim = Sim::start(ProcedureId::DualTrust, false);
    let before = (sim.renewal.clone(), sim.world.clone());
    let approve = Event::Approve {
        step: "create-key-pair".into(),
    };
    for who in [developer(), receiver_admin(), stranger()] {
        let r = sim.send(&who, approve.clone()).expect_err("refused");
        assert!(
            matches!(
                r,
                Refusal::WrongRole {
                    role: Role::TenantAdmin,
                    ..
                }
            ),
            "{r}"
        );
    }
    assert_eq!((sim.renewal.clone(), sim.world.clone()), before);
    sim.send(&admin(), approve).expect("owner approves");
}

#[test]
fn wrong_fingerprint_is_refused_and_nothing_advances() {
    let mut sim = Sim::start(ProcedureId::DualTrust, true);
    let before = (sim.renewal.clone(), sim.world.clone());
    for fp in [OLD, Fingerprint::from_bytes([0xab; 32])] {
        let r = sim
            .send(
                &receiver_admin(),
                Event::Complete {
                    step: "trust-old-and-new".into(),
                    fingerprint: fp,
                },
            )
            .expect_err("refused");
        assert!(matches!(r, Refusal::WrongFingerprint { .. }), "{r}");
    }
    assert_eq!((sim.renewal.clone(), sim.world.clone()), before);
}

#[test]
fn steps_out_of_order_are_refused() {
    let mut sim = Sim::start(ProcedureId::DualTrust, false);
    let r = sim
        .send(
            &admin(),
            Event::Approve {
                step: "exchange-key-pair".into(),
            },
        )
        .expect_err("not due");
    assert!(matches!(r, Refusal::NotDue { .. }), "{r}");
    let r = sim
        .send(
            &receiver_admin(),
            Event::Complete {
                step: "remove-old-trust".into(),
                fingerprint: NEW,
            },
        )
        .expect_err("not due");
    assert!(matches!(r, Refusal::NotDue { .. }), "{r}");
    let r = sim
        .send(
            &admin(),
            Event::Approve {
                step: "no-such-step".into(),
            },
        )
        .expect_err("unknown");
    assert!(matches!(r, Refusal::UnknownStep { .. }), "{r}");
}

#[test]
fn guard_refuses_an_exchange_the_receiver_could_not_verify() {
    // The receiver confirmed trust in old and new, then its trust store lost the new certificate
    // (recorded by an administrator); exchanging now would break verification.
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
    let r = sim
        .send(
            &admin(),
            Event::Approve {
                step: "exchange-key-pair".into(),
            },
        )
        .expect_err("unsafe");
    match r {
        Refusal::Unsafe { step, reason } => {
            assert_eq!(step, "exchange-key-pair");
            assert!(reason.contains("trusts"), "{reason}");
        }
        other => panic!("expected Unsafe, got {other}"),
    }
}

#[test]
fn incompatible_procedures_are_refused_with_the_reason() {
    let c = catalog();
    let cases = [
        (
            ProcedureId::DowntimeWindow,
            ProcedureId::DualTrust,
            "cannot trust",
        ),
        (
            ProcedureId::DowntimeWindow,
            ProcedureId::DualSignature,
            "exactly one signature",
        ),
        (
            ProcedureId::DualTrust,
            ProcedureId::DowntimeWindow,
            "without downtime",
        ),
    ];
    for (world_of, asked, why) in cases {
        let r = start(
            &c,
            params(Some(asked), false),
            &world_for(world_of),
            &admin(),
            t0(),
        )
        .expect_err("refused");
        assert!(
            matches!(&r, Refusal::ProcedureNotAllowed { procedure, reason } if *procedure == asked && reason.contains(why)),
            "{r}"
        );
    }
}

#[test]
fn profile_chooses_the_procedure() {
    let c = catalog();
    for p in ProcedureId::ALL {
        let t = start(&c, params(None, false), &world_for(p), &admin(), t0()).expect("starts");
        assert_eq!(t.renewal.procedure, p);
    }
}

#[test]
fn prepared_second_alias_without_a_free_alias_asks_the_developer_first() {
    let c = catalog();
    let world = world_for(ProcedureId::DualSignature); // accepts two signatures, no free alias
    let t = start(
        &c,
        params(Some(ProcedureId::PreparedSecondAlias), false),
        &world,
        &admin(),
        t0(),
    )
    .expect("starts");
    assert_eq!(
        t.renewal
            .step("prepare-second-alias")
            .map(|s| &s.status)
            .map(|s| matches!(s, StepStatus::Due { .. })),
        Some(true)
    );
    assert!(t.effects.iter().any(|e| matches!(e, Effect::Notify(n) if n.to == Role::IntegrationDeveloper && n.kind == NoticeKind::StepDue)));
    let mut sim = Sim {
        catalog: c,
        renewal: t.renewal,
        world: t.world,
        now: t0(),
        log: vec![],
    };
    sim.play_all();
    assert_eq!(sim.renewal.status, RenewalStatus::Completed);
    // Both signer steps now list the new alias only, under which the new key sits.
    for s in &sim.world.signer_steps {
        assert_eq!(sim.world.keystore.get(&s.aliases[1]), Some(&NEW), "{s:?}");
    }
}

#[test]
fn start_refuses_bad_input() {
    let c = catalog();
    let mut p = params(None, false);
    p.alias = alias("nope");
    assert!(matches!(
        start(&c, p, &world_for(ProcedureId::DualTrust), &admin(), t0()),
        Err(Refusal::Invalid { .. })
    ));
    let r = start(
        &c,
        params(None, false),
        &world_for(ProcedureId::DualTrust),
        &developer(),
        t0(),
    )
    .expect_err("role");
    assert!(matches!(r, Refusal::WrongRole { .. }));
    let mut p = params(Some(ProcedureId::DualSignature), false);
    p.new_alias = Some(alias("signing"));
    assert!(matches!(
        start(
            &c,
            p,
            &world_for(ProcedureId::DualSignature),
            &admin(),
            t0()
        ),
        Err(Refusal::Invalid { .. })
    ));
}

#[test]
fn downtime_window_needs_both_parties_and_opens_on_time() {
    let mut sim = Sim::start(ProcedureId::DowntimeWindow, false);
    sim.send(
        &admin(),
        Event::Approve {
            step: "create-key-pair".into(),
        },
    )
    .expect("generate");
    let start_at = sim.now + chrono::Duration::hours(3);
    let end_at = start_at + chrono::Duration::hours(1);
    let r = sim
        .send(
            &admin(),
            Event::ProposeWindow {
                start: end_at,
                end: start_at,
            },
        )
        .expect_err("inverted");
    assert!(matches!(r, Refusal::Invalid { .. }));
    sim.send(
        &admin(),
        Event::ProposeWindow {
            start: start_at,
            end: end_at,
        },
    )
    .expect("proposed");
    let r = sim
        .send(&admin(), Event::AcceptWindow)
        .expect_err("own proposal");
    assert!(matches!(r, Refusal::Invalid { .. }), "{r}");
    assert!(matches!(
        sim.send(&developer(), Event::AcceptWindow),
        Err(Refusal::WrongRole { .. })
    ));
    // Counter-proposal by the receiver, accepted by the tenant administrator.
    sim.send(
        &receiver_admin(),
        Event::ProposeWindow {
            start: start_at,
            end: end_at + chrono::Duration::hours(1),
        },
    )
    .expect("counter");
    let t = sim.send(&admin(), Event::AcceptWindow).expect("agreed");
    assert!(t.effects.iter().any(
        |e| matches!(e, Effect::Schedule { kind: TimerKind::WindowOpen, at, .. } if *at == start_at)
    ));
    // The exchange is not due before the window opens.
    let r = sim
        .send(
            &admin(),
            Event::Approve {
                step: "exchange-key-pair".into(),
            },
        )
        .expect_err("window closed");
    assert!(
        matches!(r, Refusal::NotDue { ref waiting_for, .. } if waiting_for.contains("window")),
        "{r}"
    );
    let early = sim
        .fire_at(sim.now, None, TimerKind::WindowOpen)
        .expect("early");
    assert!(early.effects.is_empty(), "the window does not open early");
    sim.fire_at(start_at, None, TimerKind::WindowOpen)
        .expect("opens");
    sim.send(
        &admin(),
        Event::Approve {
            step: "exchange-key-pair".into(),
        },
    )
    .expect("inside the window");
    assert!(
        sim.world.violation().is_some(),
        "the receiver rejects during the downtime"
    );
    sim.send(
        &receiver_admin(),
        Event::Complete {
            step: "switch-receiver".into(),
            fingerprint: NEW,
        },
    )
    .expect("switch");
    assert_eq!(sim.renewal.status, RenewalStatus::Completed);
    assert!(sim.world.violation().is_none());
}

#[test]
fn window_closing_before_the_steps_escalates() {
    let mut sim = Sim::start(ProcedureId::DowntimeWindow, true);
    let s = sim.now + chrono::Duration::hours(1);
    sim.send(
        &admin(),
        Event::ProposeWindow {
            start: s,
            end: s + chrono::Duration::hours(1),
        },
    )
    .expect("propose");
    sim.send(&receiver_admin(), Event::AcceptWindow)
        .expect("accept");
    sim.fire_at(s, None, TimerKind::WindowOpen).expect("open");
    // Auto-approve ran the exchange at once; the receiver did not switch in time.
    let t = sim
        .fire_at(s + chrono::Duration::hours(1), None, TimerKind::WindowClose)
        .expect("close");
    assert!(t.effects.iter().any(|e| matches!(e, Effect::Notify(n) if n.kind == NoticeKind::Escalation && n.to == Role::ReceiverAdmin)));
    assert!(
        sim.renewal
            .step("switch-receiver")
            .is_some_and(|s| s.escalated)
    );
}

/// A half-done exchange at the close: both sides are told, the receiver's step stays due (it
/// was due by the close, not by the opening), the downtime keeps counting after the close and
/// ends when the receiver switches.
#[test]
fn window_half_done_at_close_keeps_the_step_due_and_the_downtime_ends_after_the_close() {
    let mut sim = Sim::start(ProcedureId::DowntimeWindow, false);
    sim.send(
        &admin(),
        Event::Approve {
            step: "create-key-pair".into(),
        },
    )
    .expect("generate");
    let s = sim.now + chrono::Duration::hours(1);
    let e = s + chrono::Duration::hours(1);
    sim.send(&admin(), Event::ProposeWindow { start: s, end: e })
        .expect("propose");
    sim.send(&receiver_admin(), Event::AcceptWindow)
        .expect("accept");
    sim.fire_at(s, None, TimerKind::WindowOpen).expect("open");
    for step in ["exchange-key-pair", "switch-receiver"] {
        assert!(
            matches!(
                sim.renewal.step(step).map(|st| &st.status),
                Some(StepStatus::Due { due_at, .. }) if *due_at == e
            ),
            "{step} is due by the close: {:?}",
            sim.renewal.step(step)
        );
    }
    sim.now = s + chrono::Duration::minutes(10);
    sim.send(
        &admin(),
        Event::Approve {
            step: "exchange-key-pair".into(),
        },
    )
    .expect("inside the window");
    let began = sim.renewal.downtime.started.expect("downtime began");
    let t = sim.fire_at(e, None, TimerKind::WindowClose).expect("close");
    let told: Vec<Role> = t
        .effects
        .iter()
        .filter_map(|x| match x {
            Effect::Notify(n) if n.kind == NoticeKind::Escalation => {
                assert_eq!(n.step.as_deref(), Some("switch-receiver"));
                assert_eq!(n.due_at, Some(e));
                Some(n.to)
            }
            _ => None,
        })
        .collect();
    assert_eq!(told, [Role::ReceiverAdmin, Role::TenantAdmin], "both sides");
    assert!(matches!(
        sim.renewal.step("switch-receiver").map(|st| &st.status),
        Some(StepStatus::Due { .. })
    ));
    assert_eq!(sim.renewal.downtime.ended, None, "still counting");
    sim.now = e + chrono::Duration::minutes(30);
    sim.send(
        &receiver_admin(),
        Event::Complete {
            step: "switch-receiver".into(),
            fingerprint: NEW,
        },
    )
    .expect("the switch after the close restores verification");
    assert_eq!(sim.renewal.status, RenewalStatus::Completed);
    assert_eq!(sim.renewal.downtime.started, Some(began));
    assert_eq!(sim.renewal.downtime.ended, Some(sim.now));
    assert!(sim.renewal.downtime.ended > Some(e));
    assert!(sim.world.violation().is_none());
}

#[test]
fn reminders_and_escalation_go_to_the_owner_and_stale_timers_do_nothing() {
    let mut sim = Sim::start(ProcedureId::DualTrust, true);
    let step = Some("trust-old-and-new");
    let since = sim.now;
    let early = sim
        .fire_at(
            since + chrono::Duration::hours(1),
            step,
            TimerKind::Reminder,
        )
        .expect("early");
    assert!(
        early.effects.is_empty(),
        "a timer delivered early does nothing: {:?}",
        early.effects
    );
    let t = sim
        .fire_at(since + chrono::Duration::days(2), step, TimerKind::Reminder)
        .expect("reminder");
    assert!(t.effects.iter().any(|e| matches!(e, Effect::Notify(n) if n.kind == NoticeKind::Reminder && n.to == Role::ReceiverAdmin)));
    assert!(
        t.effects.iter().any(|e| matches!(
            e,
            Effect::Schedule {
                kind: TimerKind::Reminder,
                ..
            }
        )),
        "the next reminder is planned"
    );
    let again = sim
        .fire_at(since + chrono::Duration::days(2), step, TimerKind::Reminder)
        .expect("duplicate");
    assert!(
        again.effects.is_empty(),
        "a duplicate delivery sends nothing: {:?}",
        again.effects
    );
    let early = sim
        .fire_at(
            since + chrono::Duration::days(3),
            step,
            TimerKind::Escalation,
        )
        .expect("early escalation");
    assert!(early.effects.is_empty());
    let t = sim
        .fire_at(
            since + chrono::Duration::days(7),
            step,
            TimerKind::Escalation,
        )
        .expect("escalation");
    let to: Vec<Role> = t
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(n) if n.kind == NoticeKind::Escalation => Some(n.to),
            _ => None,
        })
        .collect();
    assert_eq!(to, [Role::ReceiverAdmin, Role::TenantAdmin]);
    let t = sim
        .fire_at(
            since + chrono::Duration::days(8),
            Some("create-key-pair"),
            TimerKind::Reminder,
        )
        .expect("stale");
    assert!(t.effects.is_empty(), "{:?}", t.effects);
    let r = sim.send(
        &admin(),
        Event::Timer {
            step: None,
            kind: TimerKind::WindowOpen,
        },
    );
    assert!(
        matches!(r, Err(Refusal::Invalid { .. })),
        "only rekey fires timers"
    );
}

#[test]
fn cancel_before_the_point_of_no_return_undoes_rekeys_changes() {
    let mut sim = Sim::start(ProcedureId::DualSignature, false);
    let initial = sim.world.clone();
    for step in ["create-key-pair", "add-key-new-alias"] {
        sim.send(&admin(), Event::Approve { step: step.into() })
            .expect("approve");
    }
    sim.send(
        &developer(),
        Event::Approve {
            step: "add-signer-alias".into(),
        },
    )
    .expect("approve");
    assert_ne!(sim.world, initial);
    assert!(matches!(
        sim.send(&developer(), Event::Cancel),
        Err(Refusal::WrongRole { .. })
    ));
    let t = sim.send(&admin(), Event::Cancel).expect("cancel");
    assert_eq!(sim.world, initial);
    assert_eq!(sim.renewal.status, RenewalStatus::Cancelled);
    assert!(
        t.effects
            .iter()
            .any(|e| matches!(e, Effect::Apply(Change::RemoveSignerAlias { .. })))
    );
    assert!(matches!(
        sim.send(
            &admin(),
            Event::Approve {
                step: "switch-receiver".into()
            }
        ),
        Err(Refusal::Finished { .. })
    ));
}

#[test]
fn cancel_discards_a_generated_key_that_never_entered_the_keystore() {
    let mut sim = Sim::start(ProcedureId::DualTrust, false);
    sim.send(
        &admin(),
        Event::Approve {
            step: "create-key-pair".into(),
        },
    )
    .expect("generate");
    let t = sim.send(&admin(), Event::Cancel).expect("cancel");
    assert!(t.effects.contains(&Effect::DiscardPendingKey { cert: NEW }));
}

#[test]
fn rollback_after_the_exchange_restores_the_old_key_while_the_receiver_still_trusts_it() {
    let mut sim = Sim::start(ProcedureId::DualTrust, true);
    sim.send(
        &receiver_admin(),
        Event::Complete {
            step: "trust-old-and-new".into(),
            fingerprint: NEW,
        },
    )
    .expect("trust");
    assert_eq!(sim.world.keystore[&alias("signing")], NEW);
    assert!(matches!(
        sim.send(&admin(), Event::Cancel),
        Err(Refusal::Invalid { .. })
    ));
    sim.send(&admin(), Event::Rollback).expect("rollback");
    assert_eq!(sim.world.keystore[&alias("signing")], OLD);
    assert_eq!(sim.renewal.status, RenewalStatus::RolledBack);
}

#[test]
fn rollback_is_refused_once_the_receiver_dropped_the_old_certificate() {
    let mut sim = Sim::start(ProcedureId::DualTrust, true);
    sim.play_all();
    let r = sim.send(&admin(), Event::Rollback).expect_err("unsafe");
    assert!(matches!(r, Refusal::Unsafe { .. }), "{r}");
}

#[test]
fn invalid_definitions_name_file_step_and_reason() {
    let good = include_str!("../../../workflows/dual-trust.toml");
    let cases = [
        (
            good.replace("seed = \"3\"", "seed = \"\""),
            Some("trust-old-and-new"),
            "seed",
        ),
        (
            good.replace(
                "kind = \"task\"\ntask = \"trust_new_keep_old\"",
                "kind = \"task\"",
            ),
            Some("trust-old-and-new"),
            "needs `task`",
        ),
        (
            good.replace(
                "due = \"5d\"\nremind = \"2d\"",
                "due = \"5x\"\nremind = \"2d\"",
            ),
            Some("trust-old-and-new"),
            "invalid duration",
        ),
        (
            good.replace("id = \"provide-certificate\"", "id = \"create-key-pair\""),
            Some("create-key-pair"),
            "duplicate",
        ),
        (
            good.replace(
                "point_of_no_return = \"exchange-key-pair\"",
                "point_of_no_return = \"nowhere\"",
            ),
            None,
            "point_of_no_return",
        ),
        (
            good.replace(
                "role = \"receiver_admin\"\nkind = \"task\"",
                "role = \"tenant_admin\"\nkind = \"task\"",
            ),
            Some("trust-old-and-new"),
            "receiver_admin",
        ),
        (
            good.replace("told = \"The new certificate is attached\"\n", ""),
            Some("provide-certificate"),
            "needs `told`",
        ),
    ];
    for (text, step, reason) in cases {
        let e = definition::parse("workflows/dual-trust.toml", &text).expect_err("invalid");
        assert_eq!(e.file, "workflows/dual-trust.toml");
        assert_eq!(e.step.as_deref(), step, "{e}");
        assert!(e.to_string().contains(reason), "{e}");
    }
    let e =
        definition::parse("x.toml", "id = \"dual-trust\"\nbogus = 1").expect_err("unknown field");
    assert!(e.to_string().contains("x.toml"));
}

#[test]
fn a_window_missed_entirely_is_agreed_again_and_the_renewal_still_completes() {
    let mut sim = Sim::start(ProcedureId::DowntimeWindow, false);
    sim.send(
        &admin(),
        Event::Approve {
            step: "create-key-pair".into(),
        },
    )
    .expect("generate");
    let s = sim.now + chrono::Duration::hours(1);
    let e = s + chrono::Duration::hours(1);
    sim.send(&admin(), Event::ProposeWindow { start: s, end: e })
        .expect("propose");
    sim.send(&receiver_admin(), Event::AcceptWindow)
        .expect("accept");
    // rekey was down for the whole window: the close timer arrives first.
    let t = sim
        .fire_at(e, None, TimerKind::WindowClose)
        .expect("closes");
    assert!(sim.renewal.window.is_none(), "the missed window is void");
    assert!(matches!(
        sim.renewal.step("agree-downtime").map(|s| &s.status),
        Some(StepStatus::Due { .. })
    ));
    let told: Vec<Role> = t
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(n) if n.kind == NoticeKind::StepDue => Some(n.to),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        [Role::TenantAdmin, Role::ReceiverAdmin],
        "both parties are asked again"
    );
    // A late open timer of the void window does nothing.
    let late = sim.fire_at(e, None, TimerKind::WindowOpen).expect("stale");
    assert!(late.effects.is_empty(), "{:?}", late.effects);
    assert!(
        sim.world.violation().is_none(),
        "nothing changed at the receiver"
    );
    sim.play_all();
    assert_eq!(sim.renewal.status, RenewalStatus::Completed);
}
