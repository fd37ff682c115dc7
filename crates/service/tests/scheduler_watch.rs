//! The expiry watch on SQLite and PostgreSQL with a controllable clock: a renewal opens (or the
//! tenant administrators are told) at the latest safe start planned back from notAfter, not a
//! minute before, and only once.

mod scheduler_common;

use chrono::Duration;
use rekey_engine::{ProcedureId, RenewalStatus};
use rekey_service::watch::{self, Policy, WatchAction, WatchOptions};
use rekey_testdb::{TestDb, TestResult, on_both};
use scheduler_common::*;

const MINUTE: Duration = Duration::minutes(1);

#[tokio::test]
async fn an_expiring_certificate_opens_a_renewal_at_the_planned_time_and_only_once() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let setup = setup_with(&db.store, ProcedureId::DualTrust, t0(), 120).await?;
        let entry = db.store.key_entry(setup.tenant, &setup.alias).await?;
        // dual-trust: create 2d + trust old and new 5d + exchange 2d + remove old trust 5d.
        assert_eq!(watch::lead(&s, ProcedureId::DualTrust), Duration::days(14));
        let latest = entry.not_after - Duration::days(14) - Duration::days(30);
        let opts = WatchOptions {
            policy: Policy::Open,
            renew_before: Duration::days(30),
        };
        let before = watch::run_once(&s, latest - MINUTE, &opts).await?;
        assert!(before.aliases.is_empty(), "{before:?}");
        assert!(s.renewals(None).await?.is_empty());

        let at = watch::run_once(&s, latest, &opts).await?;
        assert_eq!(at.aliases.len(), 1, "{at:?}");
        let due = &at.aliases[0];
        assert_eq!(due.alias, setup.alias.as_str());
        assert_eq!(due.procedure, Some(ProcedureId::DualTrust));
        assert_eq!(due.latest_start, latest);
        let WatchAction::Opened { renewal } = due.action else {
            return Err(format!("expected a renewal, got {:?}", due.action).into());
        };
        let r = s.renewal(renewal).await?;
        assert_eq!(r.status, RenewalStatus::Running);
        assert!(r.auto_approve);
        assert_eq!(r.alias, setup.alias);
        assert!(r.new_cert.is_some(), "the auto-approved first step ran");

        // Later passes see the running renewal and open nothing more.
        for later in [latest + MINUTE, latest + Duration::days(3)] {
            let again = watch::run_once(&s, later, &opts).await?;
            assert_eq!(
                again.aliases[0].action,
                WatchAction::AlreadyRenewing {
                    renewal,
                    status: "running".into()
                }
            );
        }
        assert_eq!(s.renewals(None).await?.len(), 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn by_default_the_tenant_administrators_are_told_once() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let setup = setup_with(&db.store, ProcedureId::DowntimeWindow, t0(), 90).await?;
        let entry = db.store.key_entry(setup.tenant, &setup.alias).await?;
        let lead = watch::lead(&s, ProcedureId::DowntimeWindow);
        assert_eq!(lead, Duration::days(7), "create 2d + agree 5d");
        let latest = entry.not_after - lead - Duration::days(30);
        let opts = WatchOptions::default();
        assert!(
            watch::run_once(&s, latest - MINUTE, &opts)
                .await?
                .aliases
                .is_empty()
        );
        let audit_before = db.audit_len().await?;
        let first = watch::run_once(&s, latest, &opts).await?;
        assert_eq!(
            first.aliases[0].action,
            WatchAction::Notified {
                emails: 1,
                reason: None
            }
        );
        assert_eq!(db.audit_len().await?, audit_before + 1);
        let second = watch::run_once(&s, latest + Duration::days(1), &opts).await?;
        assert_eq!(second.aliases[0].action, WatchAction::AlreadyNotified);
        assert!(s.renewals(None).await?.is_empty(), "notify opens nothing");
        let rows = rekey_store::outbox::list(db.store.db(), None, None).await?;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].recipients, TENANT_ADMIN);
        assert!(
            rows[0].subject.contains(setup.alias.as_str()),
            "{}",
            rows[0].subject
        );
        // The typed expiry-watch mail the notifier renders, with what the watch computed.
        match rekey_store::mail::parse(&rows[0].state)? {
            rekey_store::mail::OutboxMail::ExpiryWatch(w) => {
                assert_eq!(w.alias, setup.alias.as_str());
                assert_eq!(w.recipient, TENANT_ADMIN);
                assert!(w.start_command.contains("renewal start"), "{w:?}");
            }
            other => return Err(format!("{other:?}").into()),
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_pass_does_nothing_while_another_instance_holds_the_watch_lease() {
    use rekey_store::lease::{self, Queue};
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let setup = setup_with(&db.store, ProcedureId::DualTrust, t0(), 120).await?;
        let entry = db.store.key_entry(setup.tenant, &setup.alias).await?;
        let latest = entry.not_after - watch::lead(&s, ProcedureId::DualTrust) - Duration::days(30);
        let opts = WatchOptions {
            policy: Policy::Open,
            renew_before: Duration::days(30),
        };
        // Another instance is in the middle of a pass.
        let other = lease::claim(
            db.store.db(),
            Queue::Job(lease::WATCH),
            "other-instance",
            latest,
            s.lease(),
            1,
        )
        .await?;
        assert_eq!(other.rows, 1);
        let skipped = watch::run_once(&s, latest, &opts).await?;
        assert!(skipped.aliases.is_empty(), "{skipped:?}");
        assert!(skipped.skipped_until.is_some());
        assert!(s.renewals(None).await?.is_empty(), "nothing opened twice");

        // The other pass ends and gives the lease back: the next pass runs.
        lease::release(db.store.db(), lease::WATCH, &other.token).await?;
        let ran = watch::run_once(&s, latest, &opts).await?;
        assert_eq!(ran.skipped_until, None);
        assert_eq!(ran.aliases.len(), 1, "{ran:?}");
        assert_eq!(s.renewals(None).await?.len(), 1);

        // A pass that died keeps the lease only until it runs out.
        let dead = lease::claim(
            db.store.db(),
            Queue::Job(lease::WATCH),
            "dead-instance",
            latest + MINUTE,
            s.lease(),
            1,
        )
        .await?;
        assert_eq!(dead.rows, 1, "the finished pass gave its lease back");
        let during = watch::run_once(&s, latest + MINUTE + s.lease() - MINUTE, &opts).await?;
        assert!(during.skipped_until.is_some());
        let after = watch::run_once(&s, dead.until, &opts).await?;
        assert_eq!(after.skipped_until, None, "a lease ending now has run out");
        Ok(())
    })
    .await;
}
