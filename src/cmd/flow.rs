//! `rekey flow ...`, `rekey signer ...` and `rekey sign --flow F --step S`: integration flows,
//! the Signer Parameters table of each signer step, and signing a payload exactly as a step
//! signs it (`Service::sign`, the path `POST /api/sign` takes too). Changing a flow or a
//! signer table is the tenant administrator's or the integration developer's (`--as EMAIL`);
//! signing also a `signer` of the flow's.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use rekey_crypto::DigestAlg;
use rekey_model::{Alias, Email, FlowName, ReceiverName, Role, StepName};
use rekey_service::SignRequest;
use rekey_store::{OutputChoice, SignerParams, StepOptions, StoreError, flows, keystore};
use serde::Serialize;

use super::files::SignArgs;
use super::state::{JsonArg, day, print_json, print_table, read_file, with_ctx};
use crate::config::{Context, GlobalArgs};

/// `rekey flow ...`.
#[derive(Debug, Subcommand)]
pub enum FlowCmd {
    /// Add a signer step to a flow (creating the flow if it is new).
    Add(FlowAddArgs),
    /// List the flows with their signer steps and Signer Parameters tables.
    List(JsonArg),
}

/// `rekey flow add`.
#[derive(Debug, Args)]
pub struct FlowAddArgs {
    /// The flow.
    #[arg(long)]
    pub flow: String,
    /// The signer step.
    #[arg(long)]
    pub step: String,
    /// Leave the content out of the SignedData (sent separately).
    #[arg(long)]
    pub detached: bool,
    /// Emit Base64 text instead of DER.
    #[arg(long)]
    pub base64: bool,
}

/// `rekey signer ...`.
#[derive(Debug, Subcommand)]
pub enum SignerCmd {
    /// Show a step's Signer Parameters table and which aliases have a key.
    Show(StepJsonArgs),
    /// Append a row for an alias to a step's table (the alias need not have a key yet).
    AddAlias(AddAliasArgs),
    /// Remove an alias's row from a step's table.
    RemoveAlias(RemoveAliasArgs),
    /// Record that a step's messages reach a receiver (a renewal's guard judges every one).
    AddReceiver(StepReceiverArgs),
    /// Record that a step's messages no longer reach a receiver.
    RemoveReceiver(StepReceiverArgs),
}

/// `rekey signer add-receiver|remove-receiver`.
#[derive(Debug, Args)]
pub struct StepReceiverArgs {
    #[command(flatten)]
    step: StepArgs,
    /// The receiver's name.
    #[arg(long)]
    pub receiver: String,
}

/// `--flow F --step S`.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// The flow.
    #[arg(long)]
    pub flow: String,
    /// The signer step.
    #[arg(long)]
    pub step: String,
}

/// `rekey signer show`.
#[derive(Debug, Args)]
pub struct StepJsonArgs {
    #[command(flatten)]
    step: StepArgs,
    #[command(flatten)]
    json: JsonArg,
}

/// `rekey signer add-alias`.
#[derive(Debug, Args)]
pub struct AddAliasArgs {
    #[command(flatten)]
    step: StepArgs,
    /// The keystore alias.
    #[arg(long)]
    pub alias: String,
    /// Digest with RSA: sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256", value_parser = parse_digest)]
    pub digest: DigestAlg,
    /// Leave the signer's certificates out of the message.
    #[arg(long)]
    pub no_certs: bool,
    /// Do not sign a signingTime attribute.
    #[arg(long)]
    pub no_signing_time: bool,
}

/// `rekey signer remove-alias`.
#[derive(Debug, Args)]
pub struct RemoveAliasArgs {
    #[command(flatten)]
    step: StepArgs,
    /// The keystore alias.
    #[arg(long)]
    pub alias: String,
}

fn parse_digest(s: &str) -> Result<DigestAlg, String> {
    s.parse()
        .map_err(|e: rekey_crypto::CryptoError| e.to_string())
}

fn names(flow: &str, step: &str) -> Result<(FlowName, StepName)> {
    Ok((
        FlowName::parse(flow).context("--flow")?,
        StepName::parse(step).context("--step")?,
    ))
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn options_text(o: StepOptions) -> String {
    format!(
        "{}, {}",
        if o.detached { "detached" } else { "attached" },
        if o.base64 { "Base64" } else { "DER" }
    )
}

/// Who changes flows and signer tables: the tenant administrator, and the integration
/// developer who owns them.
const SIGNER_ROLES: &[Role] = &[Role::TenantAdmin, Role::IntegrationDeveloper];

/// `rekey flow ...`.
pub fn flow(global: &GlobalArgs, cmd: FlowCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        let t = ctx.tenant().await?;
        match cmd {
            FlowCmd::Add(a) => {
                ctx.require_role(&t, SIGNER_ROLES, None, "adding a signer step")
                    .await?;
                let (flow, step) = names(&a.flow, &a.step)?;
                let options = StepOptions {
                    detached: a.detached,
                    base64: a.base64,
                };
                // Creating the flow and its step commit together.
                let txn = ctx.store.begin().await?;
                let created = match flows::flow(&txn, t.id, &flow).await {
                    Ok(_) => false,
                    Err(StoreError::UnknownFlow { .. }) => {
                        flows::add_flow(&txn, t.id, &flow, &ctx.actor).await?;
                        true
                    }
                    Err(e) => return Err(e.into()),
                };
                flows::add_step(&txn, t.id, &flow, &step, options, &ctx.actor).await?;
                txn.commit().await?;
                println!(
                    "{} flow {:?} with signer step {:?} ({}); next: rekey signer add-alias \
                     --flow {:?} --step {:?} --alias ALIAS",
                    if created { "created" } else { "extended" },
                    flow.as_str(),
                    step.as_str(),
                    options_text(options),
                    flow.as_str(),
                    step.as_str()
                );
            }
            FlowCmd::List(j) => {
                let all = ctx.store.flows(t.id).await?;
                if j.json {
                    print_json(&all)?;
                } else {
                    let mut rows = Vec::new();
                    for f in &all {
                        if f.steps.is_empty() {
                            rows.push(vec![f.name.to_string(), "-".into(), "-".into(), "-".into()]);
                        }
                        for s in &f.steps {
                            rows.push(vec![
                                f.name.to_string(),
                                s.name.to_string(),
                                options_text(s.options),
                                if s.rows.is_empty() {
                                    "-".into()
                                } else {
                                    s.rows
                                        .iter()
                                        .map(|r| {
                                            format!(
                                                "{} ({})",
                                                r.params.alias,
                                                r.params.digest.name()
                                            )
                                        })
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                },
                            ]);
                        }
                    }
                    print_table(&["flow", "step", "output", "signer aliases"], &rows);
                }
            }
        }
        Ok(())
    })
}

#[derive(Serialize)]
struct RowView {
    position: i32,
    alias: String,
    digest: DigestAlg,
    include_certs: bool,
    include_signing_time: bool,
    has_key: bool,
    fingerprint: Option<String>,
    not_after: Option<chrono::DateTime<Utc>>,
}

#[derive(Serialize)]
struct StepView {
    flow: String,
    step: String,
    options: StepOptions,
    rows: Vec<RowView>,
    /// Receivers its messages reach; empty: not recorded (a renewal's receiver is assumed).
    receivers: Vec<String>,
}

fn receiver_list(r: &[ReceiverName]) -> String {
    if r.is_empty() {
        "no recorded receiver (a renewal assumes the receiver it names)".into()
    } else {
        r.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `rekey signer ...`.
pub fn signer(global: &GlobalArgs, cmd: SignerCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        match cmd {
            SignerCmd::Show(a) => show(ctx, &a.step, a.json.json).await?,
            SignerCmd::AddAlias(a) => {
                let t = ctx.tenant().await?;
                ctx.require_role(&t, SIGNER_ROLES, None, "changing a signer step")
                    .await?;
                let (flow, step) = names(&a.step.flow, &a.step.step)?;
                let alias = Alias::parse(&a.alias).context("--alias")?;
                let params = SignerParams {
                    alias: alias.clone(),
                    digest: a.digest,
                    include_certs: !a.no_certs,
                    include_signing_time: !a.no_signing_time,
                };
                ctx.store
                    .add_row(t.id, &flow, &step, &params, &ctx.actor)
                    .await?;
                let has_key = keystore::find_current(ctx.store.db(), t.id, &alias)
                    .await?
                    .is_some();
                println!(
                    "flow {:?} step {:?} now lists alias {alias} ({}, certificates {}, signing \
                     time {}){}",
                    flow.as_str(),
                    step.as_str(),
                    a.digest.name(),
                    if params.include_certs {
                        "included"
                    } else {
                        "left out"
                    },
                    if params.include_signing_time {
                        "signed"
                    } else {
                        "left out"
                    },
                    if has_key {
                        ""
                    } else {
                        "; the alias has no key yet, so it is skipped when signing"
                    }
                );
            }
            SignerCmd::AddReceiver(a) => {
                let t = ctx.tenant().await?;
                ctx.require_role(&t, SIGNER_ROLES, None, "changing a signer step")
                    .await?;
                let (flow, step) = names(&a.step.flow, &a.step.step)?;
                let receiver = ReceiverName::parse(&a.receiver).context("--receiver")?;
                let s = ctx
                    .store
                    .add_step_receiver(t.id, &flow, &step, &receiver, &ctx.actor)
                    .await?;
                println!(
                    "flow {:?} step {:?} now sends to receiver(s) {}",
                    flow.as_str(),
                    step.as_str(),
                    receiver_list(&s.receivers)
                );
            }
            SignerCmd::RemoveReceiver(a) => {
                let t = ctx.tenant().await?;
                ctx.require_role(&t, SIGNER_ROLES, None, "changing a signer step")
                    .await?;
                let (flow, step) = names(&a.step.flow, &a.step.step)?;
                let receiver = ReceiverName::parse(&a.receiver).context("--receiver")?;
                let s = ctx
                    .store
                    .remove_step_receiver(t.id, &flow, &step, &receiver, &ctx.actor)
                    .await?;
                println!(
                    "flow {:?} step {:?} no longer sends to receiver {receiver}; it sends to {}",
                    flow.as_str(),
                    step.as_str(),
                    receiver_list(&s.receivers)
                );
            }
            SignerCmd::RemoveAlias(a) => {
                let t = ctx.tenant().await?;
                ctx.require_role(&t, SIGNER_ROLES, None, "changing a signer step")
                    .await?;
                let (flow, step) = names(&a.step.flow, &a.step.step)?;
                let alias = Alias::parse(&a.alias).context("--alias")?;
                ctx.store
                    .remove_row(t.id, &flow, &step, &alias, &ctx.actor)
                    .await?;
                println!(
                    "flow {:?} step {:?} no longer lists alias {alias}",
                    flow.as_str(),
                    step.as_str()
                );
            }
        }
        Ok(())
    })
}

async fn show(ctx: &Context, a: &StepArgs, json: bool) -> Result<()> {
    let t = ctx.tenant().await?;
    let (flow, step) = names(&a.flow, &a.step)?;
    let (s, resolved) = flows::resolve_step(ctx.store.db(), t.id, &flow, &step).await?;
    let view = StepView {
        flow: s.flow.to_string(),
        step: s.name.to_string(),
        options: s.options,
        rows: resolved
            .iter()
            .map(|r| RowView {
                position: r.row.position,
                alias: r.row.params.alias.to_string(),
                digest: r.row.params.digest,
                include_certs: r.row.params.include_certs,
                include_signing_time: r.row.params.include_signing_time,
                has_key: r.entry.is_some(),
                fingerprint: r.entry.as_ref().map(|e| e.fingerprint.to_colon_hex()),
                not_after: r.entry.as_ref().map(|e| e.not_after),
            })
            .collect(),
        receivers: s.receivers.iter().map(|n| n.to_string()).collect(),
    };
    if json {
        return print_json(&view);
    }
    println!(
        "flow {:?} step {:?}: {}",
        view.flow,
        view.step,
        options_text(view.options)
    );
    let rows: Vec<Vec<String>> = view
        .rows
        .iter()
        .map(|r| {
            vec![
                r.alias.clone(),
                r.digest.name().to_string(),
                yes_no(r.include_certs),
                yes_no(r.include_signing_time),
                r.not_after
                    .map(|d| format!("until {}", day(d)))
                    .unwrap_or_else(|| "no key (skipped)".into()),
            ]
        })
        .collect();
    print_table(
        &["alias", "digest", "certificates", "signing time", "key"],
        &rows,
    );
    println!("sends to: {}", receiver_list(&s.receivers));
    Ok(())
}

/// `rekey sign --flow F --step S --in P --out O --as EMAIL`: signs as the step signs now, for a
/// user who may (the engine's rule, as for `POST /api/sign`).
pub fn sign(global: &GlobalArgs, args: SignArgs) -> Result<ExitCode> {
    let (Some(flow), Some(step)) = (&args.flow, &args.step) else {
        anyhow::bail!("--flow and --step go together");
    };
    let (flow, step) = names(flow, step)?;
    let payload = read_file(&args.input, "payload")?;
    with_ctx(global, async |ctx| {
        let t = ctx.tenant().await?;
        let Some(email) = &ctx.global.as_user else {
            anyhow::bail!(
                "give --as EMAIL: signing as flow {:?} takes a registered user holding the signer \
                 role of that flow, or tenant_admin or integration_developer of tenant {:?}",
                flow.as_str(),
                t.name.as_str()
            );
        };
        let email = Email::parse(email).context("--as")?;
        let req = SignRequest {
            tenant: t.id,
            flow: flow.clone(),
            step: step.clone(),
            choice: OutputChoice {
                detached: args.detached.then_some(true),
                base64: args.base64.then_some(true),
            },
        };
        let signed = match ctx
            .service()
            .await?
            .sign(email.as_str(), &req, payload.clone(), Utc::now())
            .await
        {
            Ok(s) => s,
            // The API answers this as an unknown tenant; on the operator's own machine the
            // tenant is no secret, so say what is missing.
            Err(rekey_service::ServiceError::UnknownScope(_)) => anyhow::bail!(
                "signing as flow {:?}: {email} holds no role in tenant {:?}; it takes the signer \
                 role of that flow, or tenant_admin or integration_developer of the tenant",
                flow.as_str(),
                t.name.as_str()
            ),
            Err(e) => return Err(e.into()),
        };
        std::fs::write(&args.output, &signed.output)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        let list = |v: &[Alias]| v.iter().map(Alias::as_str).collect::<Vec<_>>().join(", ");
        println!(
            "signed {} as flow {:?} step {:?} ({}) with {} signature(s): {}{}",
            args.input.display(),
            flow.as_str(),
            step.as_str(),
            options_text(signed.options),
            signed.signers.len(),
            list(&signed.signers),
            if signed.skipped.is_empty() {
                String::new()
            } else {
                format!("; skipped (no key): {}", list(&signed.skipped))
            }
        );
        Ok(())
    })
}
