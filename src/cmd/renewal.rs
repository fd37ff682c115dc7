//! `rekey renewal …`, `rekey task …`, `rekey window …`: the three roles' side of a renewal.
//! Every command acts `--as` a registered user, with the engine's role rules.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rekey_engine::{Event, Fingerprint, ProcedureId, Renewal, Role, StepStatus};
use rekey_model::{Alias, FlowName, OutboxStatus, ReceiverName, StepName};
use rekey_service::{Outcome, Service, StartRequest};
use serde::Serialize;
use uuid::Uuid;

use crate::cmd::state::{print_json, with_ctx};
use crate::config::{Context, GlobalArgs};

/// `rekey renewal …`
#[derive(Debug, Subcommand)]
pub enum RenewalCmd {
    /// Start renewing the key under an alias a signer step lists.
    Start(StartArgs),
    /// List renewals.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one renewal's steps.
    Show {
        /// Renewal id.
        id: Uuid,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// The evidence pack: every step, who did it and when, the emails sent, the certificates.
    Report {
        /// Renewal id.
        id: Uuid,
    },
    /// Cancel before the point of no return; rekey's changes are undone.
    Cancel {
        /// Renewal id.
        id: Uuid,
    },
    /// After the exchange: restore the previous keystore entries.
    Rollback {
        /// Renewal id.
        id: Uuid,
    },
    /// Print the certificate signing request (PEM) of a `--ca-signed` renewal's new key, for
    /// the CA; it waits until the chain is uploaded with `upload-cert`.
    Csr {
        /// Renewal id.
        id: Uuid,
    },
    /// Upload the CA-signed chain for a `--ca-signed` renewal's new key.
    UploadCert {
        /// Renewal id.
        id: Uuid,
        /// PEM file: the certificate, then its issuers.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
    },
}

/// Options of `rekey renewal start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Integration flow of the signer step.
    #[arg(long)]
    flow: String,
    /// Signer step (it must list the alias).
    #[arg(long)]
    step: String,
    /// The alias whose key is renewed (every signer step listing it is changed).
    #[arg(long)]
    alias: String,
    /// The receiver that must keep verifying.
    #[arg(long)]
    receiver: String,
    /// Procedure to run; by default the receiver's profile chooses.
    #[arg(long)]
    procedure: Option<String>,
    /// Alias for the new key where the procedure adds one [default: the old alias with today's
    /// date, replacing a date an earlier renewal appended: `signer-20261102`].
    #[arg(long)]
    new_alias: Option<String>,
    /// RSA size of the new key.
    #[arg(long, default_value_t = 3072)]
    bits: u32,
    /// Make a CSR; the tenant administrator uploads the CA-signed chain.
    #[arg(long)]
    ca_signed: bool,
    /// Carry out rekey's actions without waiting for each owner's approval.
    #[arg(long)]
    auto_approve: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// `rekey task …`
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Due steps: yours with `--as EMAIL`, else everyone's.
    List {
        /// Only steps of this role.
        #[arg(long)]
        role: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Confirm a task (receiver changes), with the fingerprint of the certificate installed.
    Complete {
        /// Task id, `<renewal>:<step>` as `task list` prints it.
        id: String,
        /// SHA-256 fingerprint of the certificate now installed: 64 hex digits, any case, plain
        /// or with one `:` or space between bytes, optionally after `sha256 Fingerprint=`.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Approve an action rekey performs for you.
    Approve {
        /// Task id, `<renewal>:<step>`.
        id: String,
    },
}

/// `rekey window …`
#[derive(Debug, Subcommand)]
pub enum WindowCmd {
    /// Propose (or counter-propose) the downtime window.
    Propose {
        /// Renewal id.
        id: Uuid,
        /// Opens (RFC 3339).
        #[arg(long)]
        start: DateTime<Utc>,
        /// Closes (RFC 3339).
        #[arg(long)]
        end: DateTime<Utc>,
    },
    /// Accept the window the other party proposed.
    Accept {
        /// Renewal id.
        id: Uuid,
    },
}

pub(crate) async fn service(ctx: &Context) -> Result<Service> {
    ctx.service().await
}

/// The person acting: `--as EMAIL` is required for renewal actions.
fn person(ctx: &Context) -> Result<String> {
    ctx.global.as_user.clone().ok_or_else(|| {
        anyhow!(
            "give --as EMAIL: renewal steps are done by a registered user holding the step's role"
        )
    })
}

fn parse_task(id: &str) -> Result<(Uuid, String)> {
    let (r, s) = id.split_once(':').ok_or_else(|| {
        anyhow!("task id {id:?} must be <renewal>:<step>, as `rekey task list` prints it")
    })?;
    Ok((
        Uuid::parse_str(r).with_context(|| format!("task id {id:?}: renewal id"))?,
        s.to_string(),
    ))
}

fn summary(o: &Outcome) {
    for s in &o.completed {
        println!("done: {s}");
    }
    for m in &o.mail {
        println!(
            "mail queued: {} ({:?}) to {}",
            m.step.as_deref().unwrap_or("renewal"),
            m.kind,
            m.to
        );
    }
    let due: Vec<&str> = o.renewal.due_steps().map(|s| s.id.as_str()).collect();
    println!(
        "renewal {} {}; due: {}",
        o.renewal.id,
        o.renewal.status.as_str(),
        if due.is_empty() {
            "-".to_string()
        } else {
            due.join(", ")
        }
    );
}

/// Runs `rekey renewal …`.
pub fn renewal(global: &GlobalArgs, cmd: RenewalCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        let svc = service(ctx).await?;
        match cmd {
            RenewalCmd::Start(a) => {
                let tenant = ctx.tenant().await?;
                let flow = FlowName::parse(&a.flow).context("--flow")?;
                let step = StepName::parse(&a.step).context("--step")?;
                let alias = Alias::parse(&a.alias).context("--alias")?;
                let s = ctx.store.step(tenant.id, &flow, &step).await?;
                if !s.rows.iter().any(|r| r.params.alias == alias) {
                    bail!(
                        "signer step {}/{} does not list alias {}",
                        a.flow,
                        a.step,
                        a.alias
                    );
                }
                let receiver = ctx
                    .store
                    .receiver(
                        tenant.id,
                        &ReceiverName::parse(&a.receiver).context("--receiver")?,
                    )
                    .await?;
                let procedure = a
                    .procedure
                    .as_deref()
                    .map(str::parse::<ProcedureId>)
                    .transpose()
                    .map_err(anyhow::Error::msg)
                    .context("--procedure")?;
                let new_alias = a
                    .new_alias
                    .as_deref()
                    .map(Alias::parse)
                    .transpose()
                    .context("--new-alias")?;
                let req = StartRequest {
                    tenant: tenant.id,
                    receiver: receiver.id,
                    alias,
                    new_alias,
                    procedure,
                    bits: a.bits,
                    ca_signed: a.ca_signed,
                    auto_approve: a.auto_approve,
                };
                let o = svc.start(req, &person(ctx)?, Utc::now()).await?;
                if a.json {
                    print_json(&o.renewal)?;
                } else {
                    println!("started {} ({})", o.renewal.id, o.renewal.procedure);
                    summary(&o);
                }
            }
            RenewalCmd::List { json } => {
                let tenant = ctx.tenant().await?;
                let all = svc.renewals(Some(tenant.id)).await?;
                if json {
                    print_json(&all)?;
                } else {
                    for r in &all {
                        println!(
                            "{}  {:<22} {:<12} alias {}  started {}",
                            r.id,
                            r.procedure.as_str(),
                            r.status.as_str(),
                            r.alias,
                            r.started_at.to_rfc3339()
                        );
                    }
                }
            }
            RenewalCmd::Show { id, json } => {
                let r = svc.renewal(id).await?;
                if json {
                    print_json(&r)?;
                } else {
                    show(&svc, &r);
                    // What the receiver's AS2 system last answered each receiver step's test
                    // message (`Service::as2_pass`), in its own words.
                    for c in rekey_store::as2::checks(ctx.store.db(), r.id).await? {
                        println!(
                            "AS2 check of {}: {} after {} test message(s), {}: {}",
                            c.step,
                            c.outcome,
                            c.attempts,
                            c.updated_at.format("%Y-%m-%d %H:%M UTC"),
                            c.detail
                        );
                    }
                }
            }
            RenewalCmd::Report { id } => print_json(&report(ctx, &svc, id).await?)?,
            RenewalCmd::Cancel { id } => summary(
                &svc.act(id, &person(ctx)?, Event::Cancel, Utc::now())
                    .await?,
            ),
            RenewalCmd::Rollback { id } => summary(
                &svc.act(id, &person(ctx)?, Event::Rollback, Utc::now())
                    .await?,
            ),
            RenewalCmd::Csr { id } => print!("{}", svc.certificate_request(id).await?),
            RenewalCmd::UploadCert { id, cert } => {
                let bytes = std::fs::read(&cert)
                    .with_context(|| format!("cannot read {}", cert.display()))?;
                let chain = rekey_crypto::Certificate::parse_any(&bytes)
                    .with_context(|| format!("{}", cert.display()))?;
                summary(
                    &svc.upload_certificate(id, &person(ctx)?, &chain, Utc::now())
                        .await?,
                );
            }
        }
        Ok(())
    })
}

fn show(svc: &Service, r: &Renewal) {
    let def = svc.catalog().get(r.procedure);
    println!("renewal {} — {} — {}", r.id, r.procedure, r.status.as_str());
    println!(
        "alias {} {}",
        r.alias,
        r.new_alias
            .as_ref()
            .map(|a| format!("(new alias {a})"))
            .unwrap_or_default()
    );
    if let Some(c) = &r.new_cert {
        println!("new certificate SHA-256 {c}");
    }
    for (st, d) in r.steps.iter().zip(&def.steps) {
        let status = match &st.status {
            StepStatus::Waiting => "waiting".to_string(),
            StepStatus::Due { due_at, .. } => format!("DUE by {}", due_at.to_rfc3339()),
            StepStatus::Done { at, by, .. } => format!("done {} by {by}", at.to_rfc3339()),
            StepStatus::Skipped => "skipped".to_string(),
        };
        println!(
            "  {:<10} {:<28} {:<22} {status}",
            d.seed,
            d.id,
            d.role.as_str()
        );
    }
}

#[derive(Serialize)]
struct ReportStep {
    step: String,
    seed_step: String,
    role: Role,
    status: StepStatus,
}

#[derive(Serialize)]
struct ReportMail {
    message_id: String,
    to: String,
    subject: String,
    status: OutboxStatus,
    created_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct Report {
    renewal: Uuid,
    procedure: ProcedureId,
    status: String,
    alias: Alias,
    new_alias: Option<Alias>,
    old_certificate_sha256: Option<Fingerprint>,
    new_certificate_sha256: Option<Fingerprint>,
    downtime: rekey_engine::machine::Downtime,
    steps: Vec<ReportStep>,
    emails: Vec<ReportMail>,
}

async fn report(ctx: &Context, svc: &Service, id: Uuid) -> Result<Report> {
    let r = svc.renewal(id).await?;
    let def = svc.catalog().get(r.procedure);
    let mails = rekey_store::outbox::of_renewal(ctx.store.db(), id).await?;
    Ok(Report {
        renewal: r.id,
        procedure: r.procedure,
        status: r.status.as_str().into(),
        alias: r.alias.clone(),
        new_alias: r.new_alias.clone(),
        old_certificate_sha256: r.old_cert,
        new_certificate_sha256: r.new_cert,
        downtime: r.downtime.clone(),
        steps: r
            .steps
            .iter()
            .zip(&def.steps)
            .map(|(s, d)| ReportStep {
                step: d.id.clone(),
                seed_step: d.seed.clone(),
                role: d.role,
                status: s.status.clone(),
            })
            .collect(),
        emails: mails
            .into_iter()
            .map(|m| ReportMail {
                message_id: m.message_id,
                to: m.recipients,
                subject: m.subject,
                status: m.status,
                created_at: m.created_at,
            })
            .collect(),
    })
}

/// Runs `rekey task …`.
pub fn task(global: &GlobalArgs, cmd: TaskCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        let svc = service(ctx).await?;
        match cmd {
            TaskCmd::List { role, json } => {
                let role = role
                    .as_deref()
                    .map(str::parse::<Role>)
                    .transpose()
                    .map_err(anyhow::Error::msg)
                    .context("--role")?;
                let tasks = svc.tasks(ctx.global.as_user.as_deref(), role).await?;
                if json {
                    print_json(&tasks)?;
                } else if tasks.is_empty() {
                    println!("nothing is due");
                } else {
                    for t in &tasks {
                        let due = t.due_at.map(|d| d.to_rfc3339()).unwrap_or_default();
                        println!(
                            "{}  [{}] seed {} {} — {} (due {due})",
                            t.id,
                            t.role.as_str(),
                            t.seed,
                            t.verb,
                            t.title
                        );
                    }
                }
            }
            TaskCmd::Complete { id, fingerprint } => {
                let (r, step) = parse_task(&id)?;
                let event = rekey_service::complete_event(step, fingerprint.as_deref())
                    .with_context(|| format!("task {id}"))?;
                summary(&svc.act(r, &person(ctx)?, event, Utc::now()).await?);
            }
            TaskCmd::Approve { id } => {
                let (r, step) = parse_task(&id)?;
                summary(
                    &svc.act(r, &person(ctx)?, Event::Approve { step }, Utc::now())
                        .await?,
                );
            }
        }
        Ok(())
    })
}

/// Runs `rekey window …`.
pub fn window(global: &GlobalArgs, cmd: WindowCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        let svc = service(ctx).await?;
        let (id, event) = match cmd {
            WindowCmd::Propose { id, start, end } => (id, Event::ProposeWindow { start, end }),
            WindowCmd::Accept { id } => (id, Event::AcceptWindow),
        };
        summary(&svc.act(id, &person(ctx)?, event, Utc::now()).await?);
        Ok(())
    })
}
