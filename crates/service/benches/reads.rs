//! Reads at scale: what a person's task list, their inbox's renewal list, a `/metrics` scrape
//! and a pass of the expiry watch cost when the database holds many renewals and keystore
//! entries of other tenants — at two sizes, ten times apart, in the same run, so that the
//! growth ratio shows whether a read grows with everything stored.
//!
//! `cargo bench -p rekey-service --bench reads` (harness = false), on SQLite (a temporary
//! file each size). `REKEY_BENCH_RENEWALS` (default 10000) is the large size's number of
//! renewals; the small size has a tenth. Each size has ten keystore entries per renewal and one
//! tenant per ten renewals; half the renewals are running, half completed. The person measured
//! is the demo's tenant administrator, whose own four running renewals (one per procedure) are
//! the same at both sizes. The administrator's own tenant also gets `n` keystore entries of its
//! own, so that the world a step of their renewal loads (its keys, signer steps and receivers)
//! is measured in a keystore that grows tenfold.

#[path = "../tests/scheduler_common/mod.rs"]
mod common;

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use common::*;
use rekey_engine::{ProcedureId, Renewal};
use rekey_model::Email;
use rekey_service::watch::{self, WatchOptions};
use rekey_store::{keystore, renewals, testing};
use rekey_testdb::TestDb;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and 99th percentile of `lat`.
fn p50_p99(mut lat: Vec<StdDuration>) -> (StdDuration, StdDuration) {
    lat.sort();
    let at = |q: usize| {
        lat.get((lat.len() * q / 100).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(50), at(99))
}

fn ms(d: StdDuration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The demo's four procedures set up and started (not auto-approved) in tenant `demo`: the
/// tenant administrator's own tasks. Returns a running renewal to clone.
async fn own_renewals(db: &TestDb) -> Result<Renewal, BoxError> {
    let svc = service(db.store.clone());
    let now = t0();
    let mut first = None;
    for p in ProcedureId::ALL {
        let s = setup(&db.store, p, now).await?;
        let out = start(&svc, &s, false, now).await?;
        first.get_or_insert(out.renewal);
    }
    Ok(first.ok_or("no renewal started")?)
}

/// `n` renewals over `n / 10` other tenants (half running, half completed) and `10 n`
/// keystore entries, expiring in two years (beyond every procedure's lead time), written in
/// large transactions.
async fn seed(db: &TestDb, template: &Renewal, n: usize) -> Result<(), BoxError> {
    let far = t0() + Duration::days(730);
    testing::seed_renewals(&db.store, template, n, t0(), far).await?;
    let mut txn = db.store.begin().await?;
    // The measured person's own tenant grows too: `n` keys no renewal of theirs touches.
    for k in 0..n {
        testing::insert_placeholder_entry(
            &txn,
            template.tenant.as_uuid(),
            &format!("own-{k}"),
            far,
        )
        .await?;
        if k % 500 == 499 {
            txn.commit().await?;
            txn = db.store.begin().await?;
        }
    }
    txn.commit().await?;
    Ok(())
}

/// One row per read: (what, p50, p99).
async fn measure(n: usize) -> Result<Vec<(String, StdDuration, StdDuration)>, BoxError> {
    let db = TestDb::sqlite().await?;
    let template = own_renewals(&db).await?;
    seed(&db, &template, n).await?;
    let svc = service(db.store.clone());
    let admin = db
        .store
        .user_by_email(&Email::parse(TENANT_ADMIN).map_err(|e| e.to_string())?)
        .await?;
    let conn = db.store.db();
    let reps = 30;
    let mut rows = Vec::new();

    let mut lat = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let tasks = svc.tasks(Some(TENANT_ADMIN), None).await?;
        lat.push(t.elapsed());
        assert_eq!(tasks.len(), 4, "the tenant administrator's own approvals");
    }
    let (a, b) = p50_p99(lat);
    rows.push(("task list (4 own tasks)".to_string(), a, b));

    let mut lat = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let page = svc.renewals_for(&admin.grants, None, None, 51).await?;
        lat.push(t.elapsed());
        assert_eq!(page.len(), 4);
    }
    let (a, b) = p50_p99(lat);
    rows.push(("inbox renewal list (first page)".to_string(), a, b));

    let mut lat = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let counts = renewals::count_by_status(conn).await?;
        let (expiring, soonest) = keystore::expiry_summary(conn, t0(), &[7, 30, 90]).await?;
        lat.push(t.elapsed());
        assert!(!counts.is_empty() && expiring.len() == 3 && soonest.is_some());
    }
    let (a, b) = p50_p99(lat);
    rows.push((
        "/metrics counts (renewals by state, certificates by expiry)".to_string(),
        a,
        b,
    ));

    let mut lat = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let expiries = keystore::current_expiries(conn).await?;
        lat.push(t.elapsed());
        assert!(expiries.len() >= n * 10);
    }
    let (a, b) = p50_p99(lat);
    rows.push((
        "/metrics with metrics_names (one line per certificate)".to_string(),
        a,
        b,
    ));

    let mut lat = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let all = svc.tasks(None, None).await?;
        lat.push(t.elapsed());
        assert!(all.len() >= n / 2);
    }
    let (a, b) = p50_p99(lat);
    rows.push((
        "/metrics due-task gauge (every running renewal decoded)".to_string(),
        a,
        b,
    ));

    let mut lat = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let world = rekey_service::load_world(
            conn,
            template.tenant,
            template.receiver,
            &template.alias,
            template.new_alias.as_ref(),
            t0(),
        )
        .await?;
        lat.push(t.elapsed());
        assert!(world.keystore.contains_key(&template.alias));
        assert!(world.keystore.len() < 10, "only the renewal's keys");
    }
    let (a, b) = p50_p99(lat);
    rows.push((
        format!("a step's world (its keys, signer steps, receivers) in a tenant of {n}+ keys"),
        a,
        b,
    ));

    let mut lat = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        watch::run_once(&svc, t0(), &WatchOptions::default()).await?;
        lat.push(t.elapsed());
    }
    let (a, b) = p50_p99(lat);
    rows.push(("watch pass".to_string(), a, b));
    Ok(rows)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let large = env_usize("REKEY_BENCH_RENEWALS", 10_000).max(10);
    let small = large / 10;
    let s = measure(small).await?;
    let l = measure(large).await?;
    println!(
        "| read | p50 ms at {small} renewals | p99 ms | p50 ms at {large} renewals | p99 ms | ratio of p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for ((what, s50, s99), (_, l50, l99)) in s.iter().zip(&l) {
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(*s50),
            ms(*s99),
            ms(*l50),
            ms(*l99),
            l50.as_secs_f64() / s50.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}
