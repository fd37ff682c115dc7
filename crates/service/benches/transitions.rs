//! Durable step transitions per second: many renewals (owner-approved, then auto-approved)
//! driven through [`Service`] on SQLite and on PostgreSQL, each call one transaction holding
//! the state change, its effects (keystore, signer table, trust), outbox rows and audit
//! entries; beside a plain single-row `UPDATE` transaction loop on the same database in the
//! same run. RSA operations are counted apart ([`Service::crypto_counts`]): inside a write
//! transaction or outside, and the transitions without any reported on their own.
//!
//! `cargo bench -p rekey-service --bench transitions` (harness = false). PostgreSQL is used
//! when `REKEY_TEST_POSTGRES_URL` names a server (a fresh database is created and dropped).
//! `REKEY_BENCH_RENEWALS` (default 40) and `REKEY_BENCH_PLAIN` (default 1000) set the sizes.

#[path = "../tests/scheduler_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use rekey_engine::{ProcedureId, RenewalStatus};
use rekey_service::CryptoCounts;
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
    /// RSA operations inside a write transaction (test messages signed, keys generated).
    rsa_inside: u64,
    /// Test messages signed with no transaction open.
    rsa_outside: u64,
}

/// RSA operations between two readings: (inside a transaction, outside).
fn rsa(before: CryptoCounts, after: CryptoCounts) -> (u64, u64) {
    (
        (after.signed_inside - before.signed_inside) + (after.keys_inside - before.keys_inside),
        after.signed_outside - before.signed_outside,
    )
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
        rsa_inside: 0,
        rsa_outside: 0,
    }
}

/// `stats` with the RSA operations counted over the same calls.
fn with_rsa(mut s: Stats, (inside, outside): (u64, u64)) -> Stats {
    s.rsa_inside = inside;
    s.rsa_outside = outside;
    s
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

/// Runs `renewals` renewals (dual-trust and dual-signature alternating) to completion, every
/// owner-approved action approved by its owner or, with `auto`, run at once. Returns the start calls, every step-transition call, and the step transitions
/// that did no RSA work at all.
async fn renewals(db: &TestDb, renewals: usize, auto: bool) -> Result<[Stats; 3], BoxError> {
    let s = service(db.store.clone());
    let mut starts = Vec::new();
    let mut acts = Vec::new();
    let mut plain_acts = Vec::new();
    let mut start_steps = 0;
    let mut act_steps = 0;
    let mut plain_steps = 0;
    let (mut start_rsa, mut act_rsa) = ((0, 0), (0, 0));
    for i in 0..renewals {
        let p = [ProcedureId::DualTrust, ProcedureId::DualSignature][i % 2];
        let setup = setup(&db.store, p, t0()).await?;
        let mut now = t0() + chrono::Duration::minutes(i as i64);
        let c = s.crypto_counts();
        let t = Instant::now();
        let mut out = start(&s, &setup, auto, now).await?;
        starts.push(t.elapsed());
        let (i, o) = rsa(c, s.crypto_counts());
        start_rsa = (start_rsa.0 + i, start_rsa.1 + o);
        start_steps += out.completed.len();
        while out.renewal.status == RenewalStatus::Running {
            now += chrono::Duration::minutes(1);
            let c = s.crypto_counts();
            let t = Instant::now();
            out = perform_next(&s, &out.renewal, now)
                .await?
                .ok_or("stuck: nothing due")?;
            let took = t.elapsed();
            let (i, o) = rsa(c, s.crypto_counts());
            act_rsa = (act_rsa.0 + i, act_rsa.1 + o);
            acts.push(took);
            act_steps += out.completed.len();
            if i + o == 0 {
                plain_acts.push(took);
                plain_steps += out.completed.len();
            }
        }
    }
    Ok([
        with_rsa(
            stats(
                if auto {
                    "auto-approved: renewal start (key generation, RSA-2048)"
                } else {
                    "owner-approved: renewal start"
                },
                starts,
                start_steps,
            ),
            start_rsa,
        ),
        with_rsa(
            stats(
                if auto {
                    "auto-approved: step transition (task + follow-ups)"
                } else {
                    "owner-approved: step transition (one task or approval)"
                },
                acts,
                act_steps,
            ),
            act_rsa,
        ),
        stats("… of which without RSA work", plain_acts, plain_steps),
    ])
}

/// Makes the table of the plain single-row transactions.
async fn plain_table(db: &TestDb) -> Result<(), BoxError> {
    let conn = db.store.db();
    conn.execute_unprepared(
        "CREATE TABLE bench_plain (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, note TEXT NOT NULL)",
    )
    .await?;
    conn.execute_unprepared("INSERT INTO bench_plain (id, n, note) VALUES (1, 0, '')")
        .await?;
    Ok(())
}

/// `n` plain single-row transactions (`BEGIN; UPDATE one row; COMMIT`), their latencies added
/// to `lat`.
async fn plain(db: &TestDb, n: usize, lat: &mut Vec<Duration>) -> Result<(), BoxError> {
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
    Ok(())
}

async fn bench(
    backend: &str,
    db: TestDb,
    n_renewals: usize,
    n_plain: usize,
) -> Result<(), BoxError> {
    // The bare commits run in three parts, before, between and after the renewals, so that a
    // machine whose load changes during the run affects both sides of the ratio alike.
    plain_table(&db).await?;
    let mut lat = Vec::with_capacity(n_plain);
    plain(&db, n_plain / 3, &mut lat).await?;
    let owner = renewals(&db, n_renewals, false).await?;
    plain(&db, n_plain / 3, &mut lat).await?;
    let auto = renewals(&db, n_renewals, true).await?;
    plain(&db, n_plain - 2 * (n_plain / 3), &mut lat).await?;
    let plain = stats("plain single-row UPDATE transaction", lat, n_plain);
    let commits = plain.n as f64 / plain.total.as_secs_f64().max(f64::MIN_POSITIVE);
    let [o_start, o_act, o_plain] = &owner;
    let [a_start, a_act, a_plain] = &auto;
    for s in [&plain, o_start, o_act, o_plain, a_start, a_act, a_plain] {
        let rate = s.n as f64 / s.total.as_secs_f64().max(f64::MIN_POSITIVE);
        println!(
            "| {backend} | {} | {} | {} | {} | {:.1} % | {} | {} | {} / {} |",
            s.what,
            s.n,
            per_s(s.n, s.total),
            per_s(s.steps, s.total),
            100.0 * rate / commits,
            ms(s.p50),
            ms(s.p99),
            s.rsa_inside,
            s.rsa_outside,
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
        "{n_renewals} renewals owner-approved, then {n_renewals} auto-approved (dual-trust / dual-signature), {n_plain} plain transactions, one client\n"
    );
    println!(
        "| database | what | calls | calls/s | steps/s | ÷ bare commit | p50 ms | p99 ms | RSA in txn / outside |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
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
