//! Durable step transitions per second: many auto-approved renewals driven through
//! [`Service`] on SQLite and on PostgreSQL, each call one transaction holding the state change,
//! its effects (keystore, signer table, trust), outbox rows and audit entries; beside a plain
//! single-row `UPDATE` transaction loop on the same database in the same run.
//!
//! `cargo bench -p rekey-service --bench transitions` (harness = false). PostgreSQL is used
//! when `REKEY_TEST_POSTGRES_URL` names a server (a fresh database is created and dropped).
//! `REKEY_BENCH_RENEWALS` (default 40) and `REKEY_BENCH_PLAIN` (default 1000) set the sizes.

#[path = "../tests/scheduler_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use rekey_engine::{ProcedureId, RenewalStatus};
use rekey_store::ConnectionTrait;
use rekey_testdb::TestDb;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    what: String,
    n: usize,
    steps: usize,
    total: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(what: &str, mut lat: Vec<Duration>, steps: usize) -> Stats {
    lat.sort();
    let total = lat.iter().sum();
    let at = |q: usize| {
        lat.get((lat.len() * q / 100).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        what: what.into(),
        n: lat.len(),
        steps,
        total,
        p50: at(50),
        p99: at(99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn per_s(n: usize, d: Duration) -> String {
    if d.is_zero() {
        return "-".into();
    }
    format!("{:.0}", n as f64 / d.as_secs_f64())
}

/// Runs `renewals` auto-approved renewals (dual-trust and dual-signature alternating) to
/// completion. Returns (start calls, step-transition calls).
async fn renewals(db: &TestDb, renewals: usize) -> Result<(Stats, Stats), BoxError> {
    let s = service(db.store.clone());
    let mut starts = Vec::new();
    let mut acts = Vec::new();
    let mut start_steps = 0;
    let mut act_steps = 0;
    for i in 0..renewals {
        let p = [ProcedureId::DualTrust, ProcedureId::DualSignature][i % 2];
        let setup = setup(&db.store, p, t0()).await?;
        let mut now = t0() + chrono::Duration::minutes(i as i64);
        let t = Instant::now();
        let mut out = start(&s, &setup, true, now).await?;
        starts.push(t.elapsed());
        start_steps += out.completed.len();
        while out.renewal.status == RenewalStatus::Running {
            now += chrono::Duration::minutes(1);
            let t = Instant::now();
            out = perform_next(&s, &out.renewal, now)
                .await?
                .ok_or("stuck: nothing due")?;
            acts.push(t.elapsed());
            act_steps += out.completed.len();
        }
    }
    Ok((
        stats(
            "renewal start (auto-approved key generation, RSA-2048)",
            starts,
            start_steps,
        ),
        stats(
            "step transition (task completed + auto-approved follow-ups)",
            acts,
            act_steps,
        ),
    ))
}

/// A plain single-row transaction: `BEGIN; UPDATE one row; COMMIT`.
async fn plain(db: &TestDb, n: usize) -> Result<Stats, BoxError> {
    let conn = db.store.db();
    conn.execute_unprepared(
        "CREATE TABLE bench_plain (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, note TEXT NOT NULL)",
    )
    .await?;
    conn.execute_unprepared("INSERT INTO bench_plain (id, n, note) VALUES (1, 0, '')")
        .await?;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let txn = db.store.begin().await?;
        txn.execute_unprepared(&format!(
            "UPDATE bench_plain SET n = n + 1, note = 'row {i}' WHERE id = 1"
        ))
        .await?;
        txn.commit().await?;
        lat.push(t.elapsed());
    }
    Ok(stats("plain single-row UPDATE transaction", lat, n))
}

async fn bench(
    backend: &str,
    db: TestDb,
    n_renewals: usize,
    n_plain: usize,
) -> Result<(), BoxError> {
    let (starts, acts) = renewals(&db, n_renewals).await?;
    let plain = plain(&db, n_plain).await?;
    for s in [&plain, &acts, &starts] {
        println!(
            "| {backend} | {} | {} | {} | {} | {} | {} |",
            s.what,
            s.n,
            per_s(s.n, s.total),
            per_s(s.steps, s.total),
            ms(s.p50),
            ms(s.p99),
        );
    }
    let _ = db.store.clone().close().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let n_renewals = env_usize("REKEY_BENCH_RENEWALS", 40);
    let n_plain = env_usize("REKEY_BENCH_PLAIN", 1000);
    println!(
        "{n_renewals} renewals (dual-trust / dual-signature, auto-approved), {n_plain} plain transactions, one client\n"
    );
    println!("| database | what | transactions | txn/s | steps/s | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    bench(
        "SQLite (WAL, synchronous=FULL)",
        TestDb::sqlite().await?,
        n_renewals,
        n_plain,
    )
    .await?;
    match std::env::var(rekey_testdb::PG_ENV) {
        Ok(url) => {
            bench(
                "PostgreSQL 15",
                TestDb::postgres(&url).await?,
                n_renewals,
                n_plain,
            )
            .await?;
        }
        Err(_) => eprintln!("skipping PostgreSQL: {} not set", rekey_testdb::PG_ENV),
    }
    Ok(())
}
