//! `rekey receiver ...`: receiving systems, their administrators' contacts, their capability
//! profile, and the certificates their administrators confirmed they trust.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rekey_crypto::{Certificate, Fingerprint};
use rekey_model::{Alias, Email, ReceiverName};
use rekey_store::{Receiver, ReceiverProfile, TrustedCertificate, receivers};
use serde::Serialize;

use super::state::{JsonArg, day, print_json, print_table, read_file, with_ctx};
use crate::config::GlobalArgs;

/// `rekey receiver ...`.
#[derive(Debug, Subcommand)]
pub enum ReceiverCmd {
    /// Register a receiver with its administrators' contacts and capability profile.
    Add(ReceiverAddArgs),
    /// Show a receiver: profile, contacts and trusted certificates.
    Show(ReceiverShowArgs),
    /// List the receivers.
    List(JsonArg),
    /// Record that the receiver's administrator confirmed trusting a certificate.
    Trust(TrustArgs),
    /// Record that the receiver no longer trusts a certificate.
    Untrust(UntrustArgs),
}

/// `rekey receiver add`.
#[derive(Debug, Args)]
pub struct ReceiverAddArgs {
    /// The receiver's name.
    #[arg(long)]
    pub name: String,
    /// An administrator's email address; repeat for several.
    #[arg(long = "admin", value_name = "EMAIL", required = true)]
    pub admins: Vec<String>,
    /// The receiver can trust the old and the new certificate at the same time.
    #[arg(long)]
    pub verifies_multiple_keys: bool,
    /// The receiver accepts SignedData with several signatures and checks the one it trusts.
    #[arg(long)]
    pub accepts_multiple_signatures: bool,
}

/// `rekey receiver show`.
#[derive(Debug, Args)]
pub struct ReceiverShowArgs {
    /// The receiver's name.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    json: JsonArg,
}

/// `rekey receiver trust`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["cert", "alias"])))]
pub struct TrustArgs {
    /// The receiver's name.
    #[arg(long)]
    pub name: String,
    /// The certificate file (PEM or DER; the first certificate counts).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The certificate of this keystore alias.
    #[arg(long)]
    pub alias: Option<String>,
}

/// `rekey receiver untrust`.
#[derive(Debug, Args)]
pub struct UntrustArgs {
    /// The receiver's name.
    #[arg(long)]
    pub name: String,
    /// SHA-256 fingerprint of the certificate: 64 hex digits, plain or with one `:` or space
    /// between bytes (see `task complete --fingerprint`).
    #[arg(long, value_name = "HEX")]
    pub fingerprint: String,
}

#[derive(Serialize)]
struct TrustedView {
    fingerprint: String,
    subject: String,
    not_after: DateTime<Utc>,
    added_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct ReceiverView {
    id: String,
    name: String,
    profile: ReceiverProfile,
    admin_emails: Vec<String>,
    trusted: Vec<TrustedView>,
    created_at: DateTime<Utc>,
}

fn trusted_view(t: &TrustedCertificate) -> TrustedView {
    TrustedView {
        fingerprint: t.fingerprint.to_colon_hex(),
        subject: t.subject.clone(),
        not_after: t.not_after,
        added_at: t.added_at,
    }
}

fn view(r: &Receiver) -> ReceiverView {
    ReceiverView {
        id: r.id.to_string(),
        name: r.name.to_string(),
        profile: r.profile,
        admin_emails: r.admin_emails.iter().map(ToString::to_string).collect(),
        trusted: r.trusted.iter().map(trusted_view).collect(),
        created_at: r.created_at,
    }
}

fn name(s: &str) -> Result<ReceiverName> {
    ReceiverName::parse(s).context("--name")
}

/// `rekey receiver ...`.
pub fn run(global: &GlobalArgs, cmd: ReceiverCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        let t = ctx.tenant().await?;
        match cmd {
            ReceiverCmd::Add(a) => {
                let name = name(&a.name)?;
                let emails = a
                    .admins
                    .iter()
                    .map(|e| Email::parse(e).context("--admin"))
                    .collect::<Result<Vec<_>>>()?;
                let profile = ReceiverProfile {
                    verifies_multiple_keys: a.verifies_multiple_keys,
                    accepts_multiple_signatures: a.accepts_multiple_signatures,
                };
                // The receiver and its contacts commit together.
                let txn = ctx.store.begin().await?;
                receivers::add(&txn, t.id, &name, profile, &ctx.actor).await?;
                for e in &emails {
                    receivers::add_admin_email(&txn, t.id, &name, e, &ctx.actor).await?;
                }
                txn.commit().await?;
                println!(
                    "added receiver {:?} ({profile}); administrators: {}",
                    name.as_str(),
                    emails
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            ReceiverCmd::Show(a) => {
                let r = ctx.store.receiver(t.id, &name(&a.name)?).await?;
                let v = view(&r);
                if a.json.json {
                    print_json(&v)?;
                } else {
                    println!("receiver {:?} (id {})", v.name, v.id);
                    println!("profile: {}", r.profile);
                    println!("administrators: {}", v.admin_emails.join(", "));
                    if v.trusted.is_empty() {
                        println!("trusts: no certificate recorded");
                    }
                    for c in &v.trusted {
                        println!(
                            "trusts: \"{}\" until {}, SHA-256 {}",
                            c.subject,
                            day(c.not_after),
                            c.fingerprint
                        );
                    }
                }
            }
            ReceiverCmd::List(j) => {
                let all = ctx.store.receivers(t.id).await?;
                if j.json {
                    print_json(&all.iter().map(view).collect::<Vec<_>>())?;
                } else {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|r| {
                            vec![
                                r.name.to_string(),
                                r.profile.to_string(),
                                r.admin_emails
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                r.trusted.len().to_string(),
                            ]
                        })
                        .collect();
                    print_table(
                        &["receiver", "profile", "administrators", "trusted certs"],
                        &rows,
                    );
                }
            }
            ReceiverCmd::Trust(a) => {
                let name = name(&a.name)?;
                let cert = match (&a.cert, &a.alias) {
                    (Some(path), _) => {
                        let certs =
                            Certificate::parse_any(&read_file(path, "certificate file")?)
                                .with_context(|| format!("certificate file {}", path.display()))?;
                        match certs.into_iter().next() {
                            Some(c) => c,
                            None => {
                                bail!("certificate file {} holds no certificate", path.display())
                            }
                        }
                    }
                    (None, Some(alias)) => {
                        let alias = Alias::parse(alias).context("--alias")?;
                        let e = ctx.store.key_entry(t.id, &alias).await?;
                        match e.chain.into_iter().next() {
                            Some(c) => c,
                            None => bail!("alias {alias} has no certificate"),
                        }
                    }
                    (None, None) => bail!("give --cert FILE or --alias ALIAS"),
                };
                let tc = ctx
                    .store
                    .trust_certificate(t.id, &name, &cert, &ctx.actor)
                    .await?;
                println!(
                    "receiver {:?} trusts \"{}\" (until {}), SHA-256 {}",
                    name.as_str(),
                    tc.subject,
                    day(tc.not_after),
                    tc.fingerprint.to_colon_hex()
                );
            }
            ReceiverCmd::Untrust(a) => {
                let name = name(&a.name)?;
                let fp: Fingerprint = a.fingerprint.parse().context("--fingerprint")?;
                ctx.store
                    .untrust_certificate(t.id, &name, &fp, &ctx.actor)
                    .await?;
                println!(
                    "receiver {:?} no longer trusts SHA-256 {}",
                    name.as_str(),
                    fp.to_colon_hex()
                );
            }
        }
        Ok(())
    })
}
