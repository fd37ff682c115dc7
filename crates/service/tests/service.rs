//! The shell end to end on SQLite and PostgreSQL: every procedure through the store, with the
//! reference receiver judging a probe after every step; refusals leave nothing behind.

use chrono::{TimeZone, Utc};
use rekey_engine::{Catalog, Event, ProcedureId, Refusal, RenewalStatus};
use rekey_service::demo::{self, DemoOptions, TENANT_ADMIN, receiver_admin};
use rekey_service::{Service, ServiceError};
use rekey_store::entity::outbox;
use rekey_testdb::{TestDb, TestResult, on_both};
use sea_orm::{EntityTrait, PaginatorTrait};

fn service(db: &TestDb) -> Service {
    Service::new(
        db.store.clone(),
        Catalog::builtin().expect("built-in workflows"),
    )
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date")
}

#[tokio::test]
async fn every_procedure_runs_through_the_store_and_no_probe_is_rejected_unexpectedly() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        let runs = demo::run(
            &s,
            &DemoOptions {
                procedures: ProcedureId::ALL.to_vec(),
                bits: 2048,
                start: t0(),
            },
        )
        .await?;
        for r in &runs {
            assert!(r.failures.is_empty(), "{}: {:?}", r.procedure, r.failures);
            assert_eq!(
                r.probes.len(),
                r.timeline.len() + 1,
                "{}: one probe before, one after each step",
                r.procedure
            );
            let last = r.probes.last().expect("probes");
            assert_eq!(last.signer_count, 1);
            if r.procedure == ProcedureId::DowntimeWindow {
                assert!(r.rejected() >= 1, "the downtime is real and measured");
                assert!(r.downtime.is_some());
            } else {
                assert_eq!(r.rejected(), 0, "{}", r.procedure);
            }
            // Informs emailed someone.
            assert!(
                r.timeline
                    .iter()
                    .filter(|t| t.kind == rekey_engine::StepKind::Inform)
                    .all(|t| !t.emails.is_empty()),
                "{}",
                r.procedure
            );
        }
        let dual = runs
            .iter()
            .find(|r| r.procedure == ProcedureId::DualSignature)
            .expect("ran");
        assert!(
            dual.probes.iter().any(|p| p.signer_count == 2),
            "dual-signature sends two signatures during the switch"
        );
        assert!(db.store.verify_audit().await.is_ok());
        let mails = outbox::Entity::find().count(db.store.db()).await?;
        assert!(mails > 20, "{mails} emails queued");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn refusals_through_the_service_change_nothing() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        // Run dual-trust up to the receiver's task.
        let run = demo::run(
            &s,
            &DemoOptions {
                procedures: vec![ProcedureId::DualTrust],
                bits: 2048,
                start: t0(),
            },
        )
        .await?;
        let done = s.renewal(run[0].renewal).await?;
        assert_eq!(done.status, RenewalStatus::Completed);
        // A completed renewal refuses further steps; unknown users and renewals are named.
        let r = s
            .act(
                done.id,
                &receiver_admin(ProcedureId::DualTrust),
                Event::Approve {
                    step: "exchange-key-pair".into(),
                },
                t0(),
            )
            .await;
        assert!(
            matches!(r, Err(ServiceError::Refused(Refusal::Finished { .. }))),
            "{r:?}"
        );
        let r = s
            .act(done.id, "nobody@example.com", Event::Cancel, t0())
            .await;
        assert!(matches!(r, Err(ServiceError::UnknownUser(_))), "{r:?}");
        let r = s
            .act(uuid::Uuid::new_v4(), TENANT_ADMIN, Event::Cancel, t0())
            .await;
        assert!(matches!(r, Err(ServiceError::UnknownRenewal(_))), "{r:?}");
        let audit_before = db.store.audit_entries(0, 1_000_000).await?.len();
        let r = s.act(done.id, TENANT_ADMIN, Event::Rollback, t0()).await;
        assert!(
            matches!(r, Err(ServiceError::Refused(Refusal::Unsafe { .. }))),
            "rollback would break the receiver: {r:?}"
        );
        assert_eq!(
            db.store.audit_entries(0, 1_000_000).await?.len(),
            audit_before,
            "nothing was written"
        );
        Ok(())
    })
    .await;
}
