//! `rekey mail`: the outbox the engine fills in the same transaction as each state change —
//! list it, queue a failed email again, and run one dispatcher pass with the configured
//! transport (SMTP, or `.eml` files in `<data-dir>/outbox` by default).

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use rekey_model::OutboxStatus;
use rekey_notifier::dispatch::{self, Dispatcher, Outcome};
use rekey_notifier::{SmtpSettings, TlsMode, Transport};
use rekey_store::outbox::OutboxRow;
use serde::Serialize;
use uuid::Uuid;

use super::state::{JsonArg, print_json, print_table, with_ctx};
use crate::config::{GlobalArgs, MailTls, MailTransport, Settings};

/// `rekey mail ...`.
#[derive(Debug, Subcommand)]
pub enum MailCmd {
    /// List the outbox, newest first.
    List(ListArgs),
    /// Queue a failed (or waiting) email to be sent at the next pass, with a fresh retry period.
    Retry(RetryArgs),
    /// Send every email that is due now: one dispatcher pass with the configured transport.
    SendDue(SendArgs),
}

/// Delivery state of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MailStatus {
    /// Waiting to be sent (also while retrying).
    Queued,
    /// Delivered.
    Sent,
    /// Given up.
    Failed,
}

impl From<MailStatus> for OutboxStatus {
    fn from(s: MailStatus) -> Self {
        match s {
            MailStatus::Queued => OutboxStatus::Queued,
            MailStatus::Sent => OutboxStatus::Sent,
            MailStatus::Failed => OutboxStatus::Failed,
        }
    }
}

/// `rekey mail list`.
#[derive(Debug, Args)]
#[command(
    after_help = "Lists every tenant's mail, or only --tenant's when given. Queued rows that \
failed before show their attempts, next attempt and last error."
)]
pub struct ListArgs {
    /// Only emails in this state.
    #[arg(long, value_enum)]
    pub state: Option<MailStatus>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `rekey mail retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The email's id (from `rekey mail list`).
    pub id: Uuid,
}

/// `rekey mail send-due`.
#[derive(Debug, Args)]
#[command(
    after_help = "Uses [mail] transport: \"file\" writes <message-id>.eml into [mail] outbox_dir \
(default <data-dir>/outbox); \"smtp\" sends through [mail] host/port/tls with username/password. \
Failures are retried by later passes with back-off (1 minute doubling to 30 minutes) and given \
up after 5 days; an address the server rejects (5xx) fails at once and the tenant's \
administrators are told. A row rekey cannot read or render is an internal error: it is marked \
failed and named on stderr, nobody is told it is undeliverable, and the exit code is 1. Exit code \
0 when every row was handled."
)]
pub struct SendArgs {
    /// Send what is due at this time (RFC 3339) instead of now, as `scheduler run --at` fires
    /// timers: mail a timer queued for a later time waits for that time.
    #[arg(long, value_name = "TIME")]
    pub at: Option<chrono::DateTime<Utc>>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// One outbox row as `mail list` shows it.
#[derive(Debug, Serialize)]
struct MailView {
    id: Uuid,
    status: OutboxStatus,
    to: String,
    subject: String,
    message_id: String,
    attempts: i32,
    next_attempt_at: chrono::DateTime<Utc>,
    sent_at: Option<chrono::DateTime<Utc>>,
    last_error: Option<String>,
    renewal: Option<Uuid>,
    created_at: chrono::DateTime<Utc>,
}

impl From<OutboxRow> for MailView {
    fn from(m: OutboxRow) -> Self {
        MailView {
            id: m.id,
            status: m.status,
            to: m.recipients,
            subject: m.subject,
            message_id: m.message_id,
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            sent_at: m.sent_at,
            last_error: m.last_error,
            renewal: m.renewal_id,
            created_at: m.created_at,
        }
    }
}

/// The transport `[mail]` configures.
pub fn transport(settings: &Settings) -> Result<Transport> {
    let m = &settings.mail;
    match m.transport {
        MailTransport::File => Ok(Transport::file(m.outbox_dir.clone())),
        MailTransport::Smtp => {
            let Some(host) = &m.host else {
                bail!("mail transport \"smtp\" needs [mail] host");
            };
            let mut s = SmtpSettings::new(
                host.clone(),
                m.port,
                match m.tls {
                    MailTls::Starttls => TlsMode::Starttls,
                    MailTls::Tls => TlsMode::Tls,
                    MailTls::None => TlsMode::None,
                },
            );
            s.username = m.username.clone();
            s.password = m.password.as_ref().map(|p| p.expose().to_string());
            Ok(Transport::smtp(&s)?)
        }
    }
}

/// A stored value on one terminal line: control characters (a subject or address refused for
/// carrying CR/LF, say) shown as `?`.
fn shown(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn when(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `rekey mail ...`.
pub fn run(global: &GlobalArgs, cmd: MailCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| match cmd {
        MailCmd::List(args) => {
            let tenant = match &ctx.global.tenant {
                Some(_) => Some(ctx.tenant().await?.id.as_uuid()),
                None => None,
            };
            let rows = dispatch::list(ctx.store.db(), args.state.map(OutboxStatus::from), tenant)
                .await
                .context("cannot read the outbox")?;
            let views: Vec<MailView> = rows.into_iter().map(MailView::from).collect();
            if args.json.json {
                return print_json(&views);
            }
            if views.is_empty() {
                println!("no mail");
                return Ok(());
            }
            let table: Vec<Vec<String>> = views
                .iter()
                .map(|v| {
                    let when_col = match (&v.sent_at, v.status) {
                        (Some(t), _) => format!("sent {}", when(*t)),
                        (None, OutboxStatus::Queued) => format!("next {}", when(v.next_attempt_at)),
                        _ => String::new(),
                    };
                    vec![
                        v.id.to_string(),
                        v.status.to_string(),
                        shown(&v.to),
                        v.attempts.to_string(),
                        when_col,
                        shown(&v.subject),
                        shown(v.last_error.as_deref().unwrap_or_default()),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "STATE",
                    "TO",
                    "TRIES",
                    "WHEN",
                    "SUBJECT",
                    "LAST ERROR",
                ],
                &table,
            );
            Ok(())
        }
        MailCmd::Retry(args) => {
            let row = dispatch::retry(ctx.store.db(), args.id, Utc::now()).await?;
            println!(
                "queued mail {} to {} again; `rekey mail send-due` sends it",
                row.id, row.recipients
            );
            Ok(())
        }
        MailCmd::SendDue(args) => {
            let t = transport(&ctx.settings)?;
            let desc = t.describe();
            let d = Dispatcher::new(
                ctx.store.db().clone(),
                t,
                ctx.settings.mail.from.clone(),
                ctx.settings.server.base_url.clone(),
            )
            .with_lease(ctx.settings.server.lease);
            let report = d.run_once(args.at.unwrap_or_else(Utc::now)).await?;
            let internal = report.internal();
            if args.json.json {
                print_json(&report)?;
                if internal > 0 {
                    bail!("internal error: {internal} outbox row(s) could not be read or rendered");
                }
                return Ok(());
            }
            for item in &report.items {
                match &item.outcome {
                    Outcome::Sent => {
                        println!("sent    {}  {}", shown(&item.to), shown(&item.subject))
                    }
                    Outcome::Retry { at, error } => println!(
                        "retry   {}  {} (next attempt {}): {}",
                        shown(&item.to),
                        shown(&item.subject),
                        when(*at),
                        shown(error)
                    ),
                    Outcome::Failed { error } => {
                        println!(
                            "failed  {}  {}: {}",
                            shown(&item.to),
                            shown(&item.subject),
                            shown(error)
                        )
                    }
                    // A bug, not a delivery problem: on stderr, and the exit code says so.
                    Outcome::Internal { error } => eprintln!(
                        "rekey: mail {} to {} not sent: {}",
                        item.id,
                        shown(&item.to),
                        shown(error)
                    ),
                }
            }
            println!(
                "{} sent, {} to retry, {} failed ({desc})",
                report.sent(),
                report.retried(),
                report.failed()
            );
            if internal > 0 {
                bail!(
                    "internal error: {internal} outbox row(s) could not be read or rendered; \
                     they are marked failed and nobody was told they are undeliverable"
                );
            }
            Ok(())
        }
    })
}
