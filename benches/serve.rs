//! `rekey serve` at scale, through HTTP: a tenant administrator's task list, their renewal
//! list's first page and a `/metrics` scrape, with the database holding `n` renewals of other
//! tenants (half running, half completed, one tenant per ten renewals) and ten keystore entries
//! per renewal — at two sizes ten times apart, in the same run, each in a fresh data directory
//! (SQLite) and a fresh server process. Reports each request's p50 and p99 and the server's
//! resident memory (`VmRSS` after the requests, `VmHWM` its peak) from `/proc`.
//!
//! `cargo bench --bench serve` (harness = false). `REKEY_BENCH_RENEWALS` (default 10000) is the
//! large size; the small size is a tenth.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use common::BoxError;
use common::serve::{self, request};
use rekey_engine::Renewal;
use rekey_store::{Store, renewals, testing};
use uuid::Uuid;

const ADMIN: &str = "admin@acme.example";

/// Runs `args` on data directory `data` ([`common::try_in`]).
fn ok(data: &Path, args: &[&str]) -> Result<String, BoxError> {
    common::try_in(data, args)
}

/// Seeds `n` renewals (clones of `template` under other tenants and aliases) and `10 n`
/// keystore entries, in transactions of 500 renewals.
async fn seed(store: &Store, template: &Renewal, n: usize) -> Result<(), BoxError> {
    let now = Utc::now();
    let far = now + Duration::days(730);
    testing::seed_renewals(store, template, n, now - Duration::seconds(60), far).await?;
    Ok(())
}

/// `VmRSS` and `VmHWM` of process `pid`, in MiB.
fn memory(pid: u32) -> Result<(f64, f64), BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<f64, BoxError> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .ok_or_else(|| format!("{key} not in /proc/{pid}/status"))?;
        let v: f64 = line.split_whitespace().nth(1).ok_or("value")?.parse()?;
        Ok(v / 1024.0)
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

fn p50_p99(mut lat: Vec<StdDuration>) -> (f64, f64) {
    lat.sort();
    let at = |q: f64| {
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat[i].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.99))
}

struct Figures {
    rows: Vec<(String, f64, f64)>,
    rss: f64,
    hwm: f64,
}

async fn measure(n: usize) -> Result<Figures, BoxError> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "365");
    let started = ok(
        &data,
        &[
            "renewal",
            "start",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            "A",
            "--receiver",
            "R",
            "--procedure",
            "dual-signature",
            "--bits",
            "2048",
            "--as",
            ADMIN,
            "--json",
        ],
    )?;
    let id: Uuid = serde_json::from_str::<serde_json::Value>(&started)?["id"]
        .as_str()
        .ok_or("renewal id")?
        .parse()?;
    let url = format!("sqlite://{}?mode=rwc", data.join("rekey.db").display());
    let store = Store::open(&url).await?;
    let template = renewals::load(store.db(), id)
        .await?
        .ok_or("the started renewal")?
        .renewal;
    seed(&store, &template, n).await?;
    store.close().await?;
    let token = ok(&data, &["user", "token", "--email", ADMIN])?
        .trim()
        .to_string();

    let mut cmd = common::rekey();
    cmd.arg("--data-dir")
        .arg(&data)
        .env("REKEY_SERVER_API_REQUESTS_PER_MINUTE", "100000")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let server = serve::start(cmd)?;
    let auth = format!("Bearer {token}");
    let mut rows = Vec::new();
    for (what, path, bearer) in [
        ("GET /api/tasks (1 own task)", "/api/tasks", true),
        (
            "GET /api/renewals?limit=50 (first page)",
            "/api/renewals?limit=50",
            true,
        ),
        ("GET /metrics", "/metrics", false),
    ] {
        let headers: Vec<(&str, &str)> = if bearer {
            vec![("Authorization", auth.as_str())]
        } else {
            Vec::new()
        };
        let mut lat = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let a = request(&server.addr, "GET", path, &headers, None)?;
            lat.push(t.elapsed());
            if a.status != 200 {
                return Err(format!("{path}: {} {}", a.status, a.body).into());
            }
        }
        let (p50, p99) = p50_p99(lat);
        rows.push((what.to_string(), p50, p99));
    }
    let (rss, hwm) = memory(server.pid())?;
    let (status, log) = server.stop()?;
    if !status.success() {
        return Err(format!("rekey serve: {status}: {log:?}").into());
    }
    Ok(Figures { rows, rss, hwm })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let large = std::env::var("REKEY_BENCH_RENEWALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000usize)
        .max(10);
    let small = large / 10;
    let s = measure(small).await?;
    let l = measure(large).await?;
    println!(
        "| request | p50 ms at {small} renewals | p99 ms | p50 ms at {large} renewals | p99 ms | ratio of p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for ((what, s50, s99), (_, l50, l99)) in s.rows.iter().zip(&l.rows) {
        println!(
            "| {what} | {s50:.2} | {s99:.2} | {l50:.2} | {l99:.2} | {:.2} |",
            l50 / s50.max(1e-9)
        );
    }
    println!(
        "| serve resident memory after the requests (VmRSS), MiB | {:.1} | | {:.1} | | {:.2} |",
        s.rss,
        l.rss,
        l.rss / s.rss.max(1e-9)
    );
    println!(
        "| serve peak resident memory (VmHWM), MiB | {:.1} | | {:.1} | | {:.2} |",
        s.hwm,
        l.hwm,
        l.hwm / s.hwm.max(1e-9)
    );
    Ok(())
}
