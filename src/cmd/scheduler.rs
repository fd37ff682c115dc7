//! `rekey scheduler run`: fires due timers (reminders, escalations, window openings and
//! closings) and sends receivers' AS2 systems their test messages, once or in a loop;
//! `rekey watch`: one pass of the expiry watch.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rekey_service::Result as ServiceResult;
use rekey_service::scheduler::{self, Report};
use rekey_service::watch::{self, Policy, WatchOptions};

use crate::cmd::state::{print_json, with_ctx};
use crate::config::GlobalArgs;

/// `rekey scheduler …`
#[derive(Debug, Subcommand)]
pub enum SchedulerCmd {
    /// Fire due timers; safe to run in several processes on one database.
    Run(RunArgs),
}

/// Options of `rekey scheduler run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// One pass, then exit.
    #[arg(long)]
    once: bool,
    /// Seconds between passes.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    interval: u64,
    /// With --once: fire what is due at this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", requires = "once")]
    at: Option<DateTime<Utc>>,
    /// Print each pass's report as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `rekey watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// What to do when an alias's latest safe start has passed: `notify` the tenant
    /// administrators, or `open` a renewal (auto-approved actions, procedure chosen from the
    /// receiver's profile).
    #[arg(long, default_value = "notify", value_name = "notify|open")]
    policy: String,
    /// Days of margin before the planned lead time (default: the configured
    /// renew_before_days).
    #[arg(long, value_name = "DAYS")]
    renew_before_days: Option<u32>,
    /// Check as if the time were this (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    at: Option<DateTime<Utc>>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

fn print_report(r: &ServiceResult<Report>, json: bool) {
    match r {
        Ok(r) if json => {
            if let Ok(s) = serde_json::to_string(r) {
                println!("{s}");
            }
        }
        Ok(r) => {
            if r.claimed > 0 || !r.errors.is_empty() {
                println!(
                    "scheduler: {} due, {} fired, {} stale, {} retried later, {} failed, {} email(s) queued",
                    r.claimed, r.fired, r.stale, r.released, r.failed, r.mail
                );
            }
            for e in &r.errors {
                eprintln!("rekey scheduler: {e}");
            }
        }
        Err(e) => eprintln!("rekey scheduler: pass failed: {e}"),
    }
}

/// Runs `rekey scheduler …`.
pub fn scheduler(global: &GlobalArgs, cmd: SchedulerCmd) -> Result<ExitCode> {
    let SchedulerCmd::Run(args) = cmd;
    if args.interval == 0 {
        bail!("--interval must be at least 1 second");
    }
    with_ctx(global, async |ctx| {
        let service = ctx.service().await?;
        let owner = scheduler::default_owner();
        if args.once {
            let now = args.at.unwrap_or_else(rekey_store::db::now);
            let r = scheduler::run_once(&service, now, &owner).await;
            print_report(&r, args.json);
            let checks = service
                .as2_pass(now, rekey_service::as2::DEFAULT_TIMEOUT)
                .await?;
            for c in &checks {
                if args.json {
                    println!("{}", serde_json::to_string(c)?);
                } else {
                    println!(
                        "as2: renewal {} step {} (receiver {}): {}{}: {}",
                        c.renewal,
                        c.step,
                        c.receiver,
                        c.outcome,
                        if c.completed { ", step completed" } else { "" },
                        c.detail
                    );
                }
            }
            let r = r?;
            if !r.errors.is_empty() {
                bail!("{} timer(s) could not be fired", r.errors.len());
            }
            return Ok(());
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        eprintln!(
            "rekey scheduler: running as {owner} every {}s; Ctrl-C or SIGTERM stops after the current pass",
            args.interval
        );
        scheduler::run_loop(
            &service,
            &owner,
            std::time::Duration::from_secs(args.interval),
            rx,
            |r| print_report(r, args.json),
        )
        .await;
        eprintln!("rekey scheduler: stopped");
        Ok(())
    })
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `rekey watch`.
pub fn watch(global: &GlobalArgs, args: WatchArgs) -> Result<ExitCode> {
    let policy = match args.policy.as_str() {
        "notify" => Policy::Notify,
        "open" => Policy::Open,
        other => bail!("--policy: expected notify or open, not {other:?}"),
    };
    with_ctx(global, async |ctx| {
        let service = ctx.service().await?;
        let opts = WatchOptions {
            policy,
            renew_before: chrono::Duration::days(i64::from(
                args.renew_before_days
                    .unwrap_or(ctx.settings.renewal.renew_before_days),
            )),
        };
        let now = args.at.unwrap_or_else(rekey_store::db::now);
        let report = watch::run_once(&service, now, &opts)
            .await
            .context("expiry watch")?;
        if args.json {
            return print_json(&report);
        }
        if let Some(until) = report.skipped_until {
            println!(
                "watch: another instance is running the expiry watch (its lease runs until {} at the latest); nothing done",
                until.format("%Y-%m-%d %H:%M:%S UTC")
            );
            return Ok(());
        }
        for t in &report.synced {
            match (&t.report, &t.error) {
                (Some(r), _) => print!("{}", super::sapci::sync_lines(&t.tenant_name, r)),
                (None, Some(e)) => println!(
                    "{}: SAP Cloud Integration tenant not read ({e}); planned from rekey's last record",
                    t.tenant_name
                ),
                (None, None) => {}
            }
        }
        for a in &report.aliases {
            println!(
                "{:<10} {:<32} expires {}  latest safe start {}  {}",
                a.tenant_name,
                a.alias,
                a.not_after.format("%Y-%m-%d"),
                a.latest_start.format("%Y-%m-%d %H:%M"),
                a.action
            );
        }
        for r in &report.at_risk {
            println!(
                "{:<10} {:<32} AT RISK: renewal {} step {:?} (the {}'s) overdue since {}; done now, \
                 it ends {}, after the certificate expires {}; {}",
                r.tenant_name,
                r.alias,
                r.renewal,
                r.step,
                r.owner.as_str(),
                r.due_at.format("%Y-%m-%d %H:%M"),
                r.finish_at.format("%Y-%m-%d %H:%M"),
                r.not_after.format("%Y-%m-%d %H:%M"),
                if r.emails == 0 {
                    "every role already warned".to_string()
                } else {
                    format!("warned every role ({} email(s))", r.emails)
                }
            );
        }
        if report.aliases.is_empty() {
            println!("watch: no signing certificate is due for renewal");
        }
        Ok(())
    })
}
