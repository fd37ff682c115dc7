//! `rekey serve`: one process running the HTTP server (JSON API, OpenAPI document, web inbox,
//! `/healthz`, `/metrics`), the scheduler loop, the mail dispatcher and the expiry watch (every
//! `[server] watch_interval_secs`) on the configured database, behind `[server]`'s HTTP limits. Ctrl-C or SIGTERM stops accepting connections, lets in-flight requests, the
//! scheduler's current pass and the dispatcher's current pass finish, then exits.
//!
//! Its log goes to stderr as `[log]` says ([`crate::logging`]); where it listens and that it
//! stopped are its answer to whoever started it: plain lines in text mode, log events in JSON
//! mode so that every line a log collector reads is JSON.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use rekey_notifier::Dispatcher;
use rekey_server::{AppState, app, limits};
use rekey_service::watch::{self as expiry, WatchOptions};
use rekey_service::{Service, scheduler};
use tokio::sync::watch;

use crate::cmd::mail::transport;
use crate::cmd::state::with_ctx;
use crate::config::{GlobalArgs, LogFormat};
use crate::logging;

/// Options of `rekey serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "Listens on [server] listen (REKEY_SERVER_LISTEN); links in emails use [server] \
base_url (cookies are Secure when it is https). API clients send `Authorization: Bearer <token>` \
(`rekey user token --email EMAIL`); the document is at /openapi.json. Several `rekey serve` processes \
may share one database: timers fire once, each email is sent once, one instance runs each expiry-watch \
pass ([server] watch_interval_secs), and a dead instance's work is taken over after [server] lease_secs. \
Timeouts, the body limit and rate limits are [server] settings (see `rekey init`'s rekey.toml)."
)]
pub struct ServeArgs {
    /// Address to listen on instead of [server] listen (port 0: any free port; the address
    /// is printed).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Seconds between scheduler passes.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    scheduler_interval: u64,
    /// Seconds between mail dispatcher passes.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    mail_interval: u64,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    no_scheduler: bool,
    /// Do not send mail from this process.
    #[arg(long)]
    no_mail: bool,
    /// Log format on stderr instead of [log] format (REKEY_LOG_FORMAT): text or json. The
    /// level is [log] level (REKEY_LOG_LEVEL), or RUST_LOG when set.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// Runs `rekey serve`.
pub fn run(global: &GlobalArgs, args: ServeArgs) -> Result<ExitCode> {
    if args.scheduler_interval == 0 || args.mail_interval == 0 {
        bail!("intervals must be at least 1 second");
    }
    with_ctx(global, async |ctx| {
        let format = args.log_format.unwrap_or(ctx.settings.log.format);
        logging::init(format, &ctx.settings.log.level)?;
        let json = format == LogFormat::Json;
        let service = ctx.service().await?;
        let addr = args.listen.unwrap_or(ctx.settings.server.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().context("listening address")?;
        // With no base_url configured it is derived from [server] listen; follow --listen
        // (and the port actually bound) instead.
        let mut base_url = ctx.settings.server.base_url.clone();
        if base_url == format!("http://{}", ctx.settings.server.listen) {
            base_url = format!("http://{local}");
        }
        let state = AppState::new(service.clone(), &base_url)
            .map_err(|e| anyhow!(e))?
            .with_metrics(
                ctx.settings
                    .server
                    .metrics_token
                    .as_ref()
                    .map(|t| t.expose().to_string()),
                ctx.settings.server.metrics_names,
            );
        let (stop_tx, stop_rx) = watch::channel(false);

        let sched = (!args.no_scheduler).then(|| {
            let service = service.clone();
            let rx = stop_rx.clone();
            let every = Duration::from_secs(args.scheduler_interval);
            tokio::spawn(async move {
                let owner = scheduler::default_owner();
                scheduler::run_loop(&service, &owner, every, rx, |r| match r {
                    Ok(r) => {
                        for e in &r.errors {
                            tracing::warn!(error = %e, "scheduler: timer not fired");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "scheduler pass failed"),
                })
                .await;
            })
        });
        let mail = if args.no_mail {
            None
        } else {
            let d = Dispatcher::new(
                ctx.store.db().clone(),
                transport(&ctx.settings)?,
                ctx.settings.mail.from.clone(),
                base_url.clone(),
            )
            .with_lease(ctx.settings.server.lease);
            let rx = stop_rx.clone();
            let every = Duration::from_secs(args.mail_interval);
            Some(tokio::spawn(dispatch_loop(d, every, rx)))
        };

        let expiry = ctx.settings.server.watch_interval.map(|every| {
            let opts = WatchOptions {
                policy: ctx.settings.server.watch_policy,
                renew_before: chrono::Duration::days(i64::from(
                    ctx.settings.renewal.renew_before_days,
                )),
            };
            tokio::spawn(watch_loop(service.clone(), opts, every, stop_rx.clone()))
        });

        announce(
            json,
            &format!("listening on http://{local} (links use {base_url})"),
        );
        axum_serve(listener, state, &ctx.settings.server.limits, stop_tx, json).await;
        if let Some(h) = sched {
            let _ = h.await;
        }
        if let Some(h) = mail {
            let _ = h.await;
        }
        if let Some(h) = expiry {
            let _ = h.await;
        }
        announce(json, "stopped");
        Ok(())
    })
}

/// One of `serve`'s own lines to whoever started it: `rekey serve: <text>` on stderr, or in
/// JSON mode an `info` event, so that the log stays one JSON object per line.
fn announce(json: bool, text: &str) {
    if json {
        tracing::info!("{text}");
    } else {
        eprintln!("rekey serve: {text}");
    }
}

/// Serves the router behind `[server]`'s limits until Ctrl-C or SIGTERM.
async fn axum_serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: &limits::Limits,
    stop: watch::Sender<bool>,
    json: bool,
) {
    let router = limits::layer(app(state), limits);
    limits::serve(listener, router, limits, async move {
        shutdown_signal().await;
        announce(
            json,
            "stopping: finishing requests, the scheduler's and the dispatcher's current pass",
        );
        let _ = stop.send(true);
    })
    .await;
}

/// Sends due mail every `every` until `stop`; a pass in progress finishes first.
async fn dispatch_loop(d: Dispatcher, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match d.run_once(rekey_store::db::now()).await {
            Ok(r) => {
                if r.retried() + r.failed() > 0 {
                    tracing::warn!(
                        sent = r.sent(),
                        retried = r.retried(),
                        failed = r.failed(),
                        "mail: not everything was sent"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "mail pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Runs the expiry watch every `every` until `stop`; a pass in progress finishes first. Each
/// pass is leased ([`watch::run_once`]), so with several instances one runs it.
async fn watch_loop(
    service: Service,
    opts: WatchOptions,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        match expiry::run_once(&service, rekey_store::db::now(), &opts).await {
            Ok(r) if r.skipped_until.is_none() && !r.aliases.is_empty() => {
                tracing::info!(aliases = r.aliases.len(), "expiry watch: aliases due");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "expiry watch pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
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
