//! The scheduler on SQLite and PostgreSQL with a controllable clock: reminders and escalations
//! of every step of every procedure go out when due and not a minute before; the downtime
//! window opens and closes on time; two processes sharing a database fire each timer once.

mod scheduler_common;

use chrono::{DateTime, Duration, Utc};
use rekey_engine::{ProcedureId, RenewalStatus, Role, StepStatus};
use rekey_model::TimerStatus;
use rekey_service::{Service, scheduler};
use rekey_store::Kek;
use rekey_testdb::{TestDb, TestResult, on_both};
use scheduler_common::*;
use uuid::Uuid;

const MINUTE: Duration = Duration::minutes(1);

async fn tick(s: &Service, now: DateTime<Utc>) -> Result<scheduler::Report, BoxError> {
    let r = scheduler::run_once(s, now, "test").await?;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    Ok(r)
}

/// `times` copies of every recipient, sorted.
fn times(who: &[String], n: usize) -> Vec<String> {
    let mut v: Vec<String> = who.iter().flat_map(|w| vec![w.clone(); n]).collect();
    v.sort();
    v
}

/// Walks one due step through its reminders and its escalation, checking a minute before
/// each that nothing went out yet. Returns the time of the escalation.
async fn walk_step(
    s: &Service,
    renewal: Uuid,
    step_id: &str,
    since: DateTime<Utc>,
) -> Result<DateTime<Utc>, BoxError> {
    let r = s.renewal(renewal).await?;
    let p = r.procedure;
    let def = s.catalog().get(p).step(step_id).ok_or("step")?.clone();
    let store = s.store();
    let role_to = recipients(p, def.role);
    let mut reminders = 0;
    if def.remind > Duration::zero() {
        let mut at = since + def.remind;
        while at < since + def.escalate {
            tick(s, at - MINUTE).await?;
            assert_eq!(
                mailed(store, renewal, "reminder", step_id).await?,
                times(&role_to, reminders),
                "{p} {step_id}: no reminder before {at}"
            );
            tick(s, at).await?;
            reminders += 1;
            assert_eq!(
                mailed(store, renewal, "reminder", step_id).await?,
                times(&role_to, reminders),
                "{p} {step_id}: reminder {reminders} at {at}"
            );
            at += def.remind;
        }
    }
    assert!(
        reminders >= 1 || def.remind <= Duration::zero(),
        "{p} {step_id}"
    );
    let esc = since + def.escalate;
    tick(s, esc - MINUTE).await?;
    assert!(
        mailed(store, renewal, "escalation", step_id)
            .await?
            .is_empty(),
        "{p} {step_id}: no escalation before {esc}"
    );
    tick(s, esc).await?;
    let mut want = role_to.clone();
    if def.role != Role::TenantAdmin {
        want.extend(recipients(p, Role::TenantAdmin));
    }
    want.sort();
    assert_eq!(
        mailed(store, renewal, "escalation", step_id).await?,
        want,
        "{p} {step_id}: escalation at {esc}"
    );
    // Later passes change nothing: the timers are spent.
    tick(s, esc + Duration::hours(1)).await?;
    assert_eq!(
        mailed(store, renewal, "reminder", step_id).await?.len(),
        reminders * role_to.len()
    );
    assert_eq!(mailed(store, renewal, "escalation", step_id).await?, want);
    Ok(esc)
}

#[tokio::test]
async fn every_step_of_every_procedure_reminds_then_escalates_on_time() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        for p in ProcedureId::ALL {
            let setup = setup(&db.store, p, t0()).await?;
            let outcome = start(&s, &setup, false, t0()).await?;
            let id = outcome.renewal.id;
            let mut walked = 0;
            for _ in 0..32 {
                let r = s.renewal(id).await?;
                if r.status != RenewalStatus::Running {
                    break;
                }
                let Some(due) = r.due_steps().next().cloned() else {
                    // Waiting for the agreed window: open it on time.
                    let w = r.window.clone().ok_or("nothing due and no window")?;
                    tick(&s, w.start).await?;
                    assert!(s.renewal(id).await?.window.is_some_and(|w| w.open));
                    continue;
                };
                let StepStatus::Due { since, .. } = due.status else {
                    unreachable!("due_steps yields due steps")
                };
                let def = s.catalog().get(p).step(&due.id).ok_or("step")?.clone();
                // The owner was told when the step became due.
                let told = mailed(&db.store, id, "step_due", &due.id).await?;
                for who in recipients(p, def.role) {
                    assert!(told.contains(&who), "{p} {}: {who} told {told:?}", due.id);
                }
                let now = if def.escalate > Duration::zero() {
                    walked += 1;
                    walk_step(&s, id, &due.id, since).await? + MINUTE
                } else {
                    since + MINUTE
                };
                perform_next(&s, &r, now)
                    .await?
                    .ok_or("a due step could not be done")?;
            }
            let r = s.renewal(id).await?;
            assert_eq!(r.status, RenewalStatus::Completed, "{p}");
            assert!(walked >= 2, "{p}: walked {walked} steps");
            // Completion cancelled whatever was still pending.
            let pending = timers(&db.store, id)
                .await?
                .into_iter()
                .filter(|t| t.status == TimerStatus::Pending)
                .count();
            assert_eq!(pending, 0, "{p}");
        }
        assert!(db.store.verify_audit().await.is_ok());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_downtime_window_opens_at_its_start_and_closes_at_its_end_escalating_what_is_left() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let p = ProcedureId::DowntimeWindow;
        let setup = setup(&db.store, p, t0()).await?;
        let id = start(&s, &setup, false, t0()).await?.renewal.id;
        let r = s.renewal(id).await?;
        perform_next(&s, &r, t0() + MINUTE).await?; // create-key-pair
        let r = s.renewal(id).await?;
        let start_at = t0() + Duration::days(1);
        let end_at = start_at + Duration::hours(2);
        s.act(
            id,
            TENANT_ADMIN,
            rekey_engine::Event::ProposeWindow {
                start: start_at,
                end: end_at,
            },
            t0() + MINUTE * 2,
        )
        .await?;
        s.act(
            id,
            &receiver_admin(p),
            rekey_engine::Event::AcceptWindow,
            t0() + MINUTE * 3,
        )
        .await?;
        assert_eq!(r.procedure, p);
        let is_due = |r: &rekey_engine::Renewal, step: &str| {
            matches!(
                r.step(step).map(|s| &s.status),
                Some(StepStatus::Due { .. })
            )
        };
        // A minute before the start: still closed, nothing due.
        tick(&s, start_at - MINUTE).await?;
        let r = s.renewal(id).await?;
        assert!(r.window.as_ref().is_some_and(|w| w.agreed && !w.open));
        assert_eq!(r.due_steps().count(), 0);
        // At the start: open, both window steps due, their owners told.
        tick(&s, start_at).await?;
        let r = s.renewal(id).await?;
        assert!(r.window.as_ref().is_some_and(|w| w.open && !w.closed));
        assert!(is_due(&r, "exchange-key-pair") && is_due(&r, "switch-receiver"));
        assert_eq!(
            mailed(&db.store, id, "step_due", "switch-receiver").await?,
            recipients(p, Role::ReceiverAdmin)
        );
        // The tenant administrator exchanges; the receiver administrator does nothing.
        s.act(
            id,
            TENANT_ADMIN,
            rekey_engine::Event::Approve {
                step: "exchange-key-pair".into(),
            },
            start_at + MINUTE * 10,
        )
        .await?;
        tick(&s, end_at - MINUTE).await?;
        assert!(
            mailed(&db.store, id, "escalation", "switch-receiver")
                .await?
                .is_empty()
        );
        assert!(s.renewal(id).await?.window.is_some_and(|w| w.open));
        // At the end: closed, the step left escalates to its owner and the tenant admin.
        tick(&s, end_at).await?;
        let r = s.renewal(id).await?;
        assert!(r.window.as_ref().is_some_and(|w| w.closed && !w.open));
        let mut want = recipients(p, Role::ReceiverAdmin);
        want.extend(recipients(p, Role::TenantAdmin));
        want.sort();
        assert_eq!(
            mailed(&db.store, id, "escalation", "switch-receiver").await?,
            want
        );
        assert!(
            mailed(&db.store, id, "escalation", "exchange-key-pair")
                .await?
                .is_empty(),
            "the step done inside the window does not escalate"
        );
        // Both window timers fired exactly once.
        for kind in ["window_open", "window_close"] {
            let t: Vec<_> = timers(&db.store, id)
                .await?
                .into_iter()
                .filter(|t| t.kind == kind)
                .collect();
            assert_eq!(t.len(), 1, "{kind}");
            assert_eq!(
                (t[0].status.as_str(), t[0].attempts),
                ("fired", 1),
                "{kind}"
            );
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn timers_of_finished_renewals_are_marked_stale() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let setup = setup(&db.store, ProcedureId::DualTrust, t0()).await?;
        let id = start(&s, &setup, false, t0()).await?.renewal.id;
        s.act(id, TENANT_ADMIN, rekey_engine::Event::Cancel, t0() + MINUTE)
            .await?;
        // Cancel dropped the pending timers; put one back as if a crash had left it.
        let t = timers(&db.store, id)
            .await?
            .into_iter()
            .next()
            .ok_or("timer")?;
        rekey_store::testing::set_timer_pending(db.store.db(), t.id).await?;
        let report = tick(&s, t0() + Duration::days(10)).await?;
        assert_eq!((report.claimed, report.stale, report.fired), (1, 1, 0));
        let t = timers(&db.store, id)
            .await?
            .into_iter()
            .find(|x| x.id == t.id)
            .ok_or("timer")?;
        assert_eq!(t.status, TimerStatus::Stale);
        assert_eq!(t.lease_owner, None);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_database_fire_each_timer_once() {
    on_both(async |db: &TestDb| -> TestResult {
        let a = service(db.store.clone());
        let kek = Kek::from_base64(&db.store.kek()?.to_base64(), "test")?;
        let b = service(db.reopen().await?.with_kek(kek));
        let mut ids = Vec::new();
        for i in 0..12 {
            let p = ProcedureId::ALL[i % 4];
            let setup = setup(&db.store, p, t0()).await?;
            ids.push(start(&a, &setup, false, t0()).await?.renewal.id);
        }
        // Every renewal's first step: reminders at +1d, +2d (or +2d, +4d, +6d), escalation at
        // +3d (+7d). Both schedulers run at every hour of eight days.
        let mut fired = 0;
        let mut claimed = 0;
        let mut mail = 0;
        let mut at = t0();
        while at <= t0() + Duration::days(8) {
            let (ra, rb) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    async move { scheduler::run_once(&a, at, "a").await }
                }),
                tokio::spawn({
                    let b = b.clone();
                    async move { scheduler::run_once(&b, at, "b").await }
                }),
            );
            for r in [ra??, rb??] {
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                assert_eq!(r.claimed, r.fired + r.stale + r.lost + r.released);
                fired += r.fired;
                claimed += r.claimed;
                mail += r.mail;
            }
            at += Duration::hours(1);
        }
        let all = rekey_store::timers::all(db.store.db()).await?;
        let rows: Vec<_> = all
            .iter()
            .filter(|t| t.status == TimerStatus::Fired)
            .collect();
        assert_eq!(rows.len(), fired, "each fired timer counted once");
        assert_eq!(claimed, fired, "no timer claimed twice");
        assert!(
            rows.iter()
                .all(|t| t.attempts == 1 && t.lease_owner.is_none())
        );
        let left = all
            .iter()
            .filter(|t| t.status == TimerStatus::Pending && t.due_at <= t0() + Duration::days(8))
            .count();
        assert_eq!(left, 0);
        // Each renewal got exactly its reminders and its escalation, once each.
        let mut expected_mail = 0;
        for id in &ids {
            let r = a.renewal(*id).await?;
            let due = r.due_steps().next().ok_or("due")?.id.clone();
            let def = a
                .catalog()
                .get(r.procedure)
                .step(&due)
                .ok_or("step")?
                .clone();
            let n = (1..).take_while(|k| def.remind * *k < def.escalate).count();
            let to = recipients(r.procedure, def.role);
            assert_eq!(
                mailed(&db.store, *id, "reminder", &due).await?,
                times(&to, n),
                "{}",
                r.procedure
            );
            let esc = mailed(&db.store, *id, "escalation", &due).await?;
            let mut want = to.clone();
            if def.role != Role::TenantAdmin {
                want.extend(recipients(r.procedure, Role::TenantAdmin));
            }
            want.sort();
            assert_eq!(esc, want, "{}", r.procedure);
            expected_mail += n * to.len() + want.len();
        }
        assert_eq!(mail, expected_mail, "mail queued = mail in the outbox");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_loop_stops_when_asked() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let passes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = passes.clone();
        let task = tokio::spawn(async move {
            scheduler::run_loop(&s, "loop", std::time::Duration::from_millis(20), rx, |r| {
                assert!(r.is_ok(), "{r:?}");
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .await
        });
        // The loop repeats (however slow the machine), then stops when asked.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while passes.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the loop did not repeat"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tx.send(true)?;
        // Stopping is what is tested: the loop ends within the timeout once asked.
        tokio::time::timeout(std::time::Duration::from_secs(10), task).await??;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_timer_leased_by_a_crashed_process_fires_when_the_lease_runs_out() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let setup = setup(&db.store, ProcedureId::DualTrust, t0()).await?;
        let id = start(&s, &setup, false, t0()).await?.renewal.id;
        let at = t0() + Duration::days(1); // the first reminder
        // Another process claimed the reminder and died.
        let reminder = timers(&db.store, id)
            .await?
            .into_iter()
            .find(|t| t.kind == "reminder")
            .ok_or("reminder")?;
        rekey_store::testing::set_timer_lease(
            db.store.db(),
            reminder.id,
            "dead:1#x",
            at + s.lease(),
        )
        .await?;
        let r = tick(&s, at).await?;
        assert_eq!(r.claimed, 0);
        assert!(
            mailed(&db.store, id, "reminder", "create-key-pair")
                .await?
                .is_empty()
        );
        let r = tick(&s, at + s.lease()).await?;
        assert_eq!((r.claimed, r.fired), (1, 1));
        assert_eq!(
            mailed(&db.store, id, "reminder", "create-key-pair").await?,
            vec![TENANT_ADMIN.to_string()]
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_timer_claimed_by_a_worker_that_died_is_fired_by_another_within_the_short_lease() {
    use rekey_store::lease::{self, Queue};
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        assert_eq!(s.lease(), Duration::seconds(30));
        let setup = setup(&db.store, ProcedureId::DualTrust, t0()).await?;
        let id = start(&s, &setup, false, t0()).await?.renewal.id;
        let at = t0() + Duration::days(1); // the first reminder
        // A worker claims it through the one claim, as the scheduler does, and dies.
        let dead = lease::claim(db.store.db(), Queue::Timers, "dead:1", at, s.lease(), 50).await?;
        assert!(dead.rows >= 1);
        let r = tick(&s, at + Duration::seconds(29)).await?;
        assert_eq!(r.claimed, 0, "the lease still holds");
        // Thirty seconds later another worker takes it over and fires it.
        let r = tick(&s, at + Duration::seconds(30)).await?;
        assert!(r.fired >= 1, "{r:?}");
        assert_eq!(
            mailed(&db.store, id, "reminder", "create-key-pair").await?,
            vec![TENANT_ADMIN.to_string()]
        );
        // The dead worker's token no longer holds anything: it cannot settle the timer.
        let renewed = lease::renew(
            db.store.db(),
            Queue::Timers,
            &dead.token,
            at + Duration::seconds(31),
            at + Duration::minutes(1),
        )
        .await?;
        assert_eq!(renewed, 0);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_long_running_holder_keeps_its_lease_by_renewing_it() {
    use rekey_store::lease::{self, Queue};
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let setup = setup(&db.store, ProcedureId::DualTrust, t0()).await?;
        start(&s, &setup, false, t0()).await?;
        let at = t0() + Duration::days(1);
        let length = Duration::milliseconds(600);
        let held = lease::claim(db.store.db(), Queue::Timers, "busy:1", at, length, 50).await?;
        assert!(held.rows >= 1);
        let started = std::time::Instant::now();
        let keeper = lease::keep(
            db.store.db().clone(),
            Queue::Timers,
            held.token.clone(),
            at,
            length,
        );
        // Several lease lengths later (on the claim's clock moved on as much), nobody else
        // can take the rows: the holder renewed them.
        tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
        let later = at + Duration::from_std(started.elapsed())?;
        let other =
            lease::claim(db.store.db(), Queue::Timers, "other:2", later, length, 50).await?;
        assert_eq!(other.rows, 0, "renewed leases hold");
        // Once the holder stops renewing, the lease runs out and another worker takes over.
        drop(keeper);
        let after = at + Duration::from_std(started.elapsed())? + length;
        let other =
            lease::claim(db.store.db(), Queue::Timers, "other:2", after, length, 50).await?;
        assert_eq!(other.rows, held.rows);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_timer_that_keeps_failing_is_retried_with_back_off_then_marked_failed() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let setup = setup(&db.store, ProcedureId::DualTrust, t0()).await?;
        let id = start(&s, &setup, false, t0()).await?.renewal.id;
        // The renewal's stored state becomes unreadable: every firing fails.
        rekey_store::testing::overwrite_renewal_state(db.store.db(), id, "{").await?;
        let mut at = t0() + Duration::days(1);
        for attempt in 1..=scheduler::MAX_ATTEMPTS {
            let r = scheduler::run_once(&s, at, "test").await?;
            assert_eq!(r.claimed, 1, "attempt {attempt}");
            assert_eq!(r.errors.len(), 1, "attempt {attempt}: {:?}", r.errors);
            let t = timers(&db.store, id)
                .await?
                .into_iter()
                .find(|t| t.kind == "reminder")
                .ok_or("reminder")?;
            assert_eq!(t.attempts, attempt);
            assert_eq!(t.lease_owner, None);
            if attempt < scheduler::MAX_ATTEMPTS {
                assert_eq!(r.released, 1);
                assert_eq!(t.status, TimerStatus::Pending);
                assert_eq!(t.lease_until, Some(at + scheduler::RETRY_AFTER));
                // Not retried before the back-off has passed.
                let again = scheduler::run_once(&s, at, "test").await?;
                assert_eq!(again.claimed, 0);
            } else {
                assert_eq!(r.failed, 1);
                assert_eq!(t.status, TimerStatus::Failed);
            }
            at += scheduler::RETRY_AFTER;
        }
        Ok(())
    })
    .await;
}
