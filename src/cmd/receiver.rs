//! `rekey receiver ...`: receiving systems, their administrators' contacts, their capability
//! profile (and `probe`, which asks the receiver's AS2 system for it), their AS2 endpoint, and
//! the certificates their administrators confirmed they trust. Adding a receiver, its AS2
//! endpoint and probing it are the tenant administrator's; recording its trust also its own
//! administrator's (`--as`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rekey_crypto::{Certificate, Fingerprint, KeyBits, KeyPair};
use rekey_model::{Alias, As2Id, Email, ReceiverName, Role};
use rekey_store::{Receiver, ReceiverProfile, Tenant, TrustedCertificate, as2, receivers};
use serde::Serialize;

use super::state::{JsonArg, day, print_json, print_table, read_file, with_ctx};
use crate::config::{Context, GlobalArgs};

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
    /// The receiver's AS2 endpoint, where rekey sends test messages its system answers with
    /// signed MDNs.
    #[command(subcommand)]
    As2(As2Cmd),
    /// Ask the receiver's AS2 system what it accepts (test messages: one signature by a trusted
    /// key, one by a key it cannot trust, both together, each other trusted key alone) and
    /// propose its capability profile from the signed MDNs.
    Probe(ProbeArgs),
}

/// `rekey receiver probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The receiver's name.
    #[arg(long)]
    pub name: String,
    /// Set the receiver's profile to the proposal (the tenant administrator accepts it).
    #[arg(long)]
    pub accept: bool,
    /// Seconds each test message may take.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,
    #[command(flatten)]
    json: JsonArg,
}

/// `rekey receiver as2 ...`.
#[derive(Debug, Subcommand)]
pub enum As2Cmd {
    /// Set (or replace) the receiver's AS2 endpoint.
    Set(As2SetArgs),
    /// Remove the receiver's AS2 endpoint: its steps are confirmed by hand again.
    Remove(As2RemoveArgs),
}

/// `rekey receiver as2 set`.
#[derive(Debug, Args)]
pub struct As2SetArgs {
    /// The receiver's name.
    #[arg(long)]
    pub name: String,
    /// The receiver's AS2 URL (`http://` or `https://`).
    #[arg(long)]
    pub url: String,
    /// The identifier the receiver knows this sender by (`AS2-From`).
    #[arg(long, value_name = "ID")]
    pub as2_from: String,
    /// The receiver's identifier (`AS2-To`).
    #[arg(long, value_name = "ID")]
    pub as2_to: String,
    /// The certificate the receiver's system signs its MDNs with (PEM or DER).
    #[arg(long, value_name = "FILE")]
    pub mdn_cert: PathBuf,
    /// The MIC algorithm to ask for: sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256")]
    pub mic: String,
}

/// `rekey receiver as2 remove`.
#[derive(Debug, Args)]
pub struct As2RemoveArgs {
    /// The receiver's name.
    #[arg(long)]
    pub name: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    as2: Option<As2View>,
}

#[derive(Serialize)]
struct As2View {
    url: String,
    as2_from: String,
    as2_to: String,
    mdn_certificate: String,
    mdn_certificate_subject: String,
    mic: &'static str,
    updated_at: DateTime<Utc>,
}

fn as2_view(e: &as2::As2Endpoint) -> As2View {
    As2View {
        url: e.config.url.clone(),
        as2_from: e.config.as2_from.to_string(),
        as2_to: e.config.as2_to.to_string(),
        mdn_certificate: e.config.mdn_certificate.fingerprint().to_colon_hex(),
        mdn_certificate_subject: e.config.mdn_certificate.subject(),
        mic: e.config.mic.name(),
        updated_at: e.updated_at,
    }
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
        as2: None,
    }
}

fn name(s: &str) -> Result<ReceiverName> {
    ReceiverName::parse(s).context("--name")
}

/// What a receiver trusts is recorded by the tenant administrator or the receiver's own
/// administrator (`--as EMAIL`).
async fn may_change_trust(ctx: &Context, t: &Tenant, name: &ReceiverName) -> Result<()> {
    let r = ctx.store.receiver(t.id, name).await?;
    ctx.require_role(
        t,
        &[Role::TenantAdmin, Role::ReceiverAdmin],
        Some(r.id),
        "recording what a receiver trusts",
    )
    .await
}

/// `rekey receiver ...`.
pub fn run(global: &GlobalArgs, cmd: ReceiverCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        let t = ctx.tenant().await?;
        match cmd {
            ReceiverCmd::Add(a) => {
                ctx.require_role(&t, &[Role::TenantAdmin], None, "adding a receiver")
                    .await?;
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
                let n = name(&a.name)?;
                let r = ctx.store.receiver(t.id, &n).await?;
                let mut v = view(&r);
                v.as2 = as2::get(ctx.store.db(), t.id, &n)
                    .await?
                    .as_ref()
                    .map(as2_view);
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
                    match &v.as2 {
                        None => println!("AS2: none (steps are confirmed by hand)"),
                        Some(e) => println!(
                            "AS2: {} as {} to {}, MDNs signed by \"{}\" SHA-256 {}, MIC {}",
                            e.url,
                            e.as2_from,
                            e.as2_to,
                            e.mdn_certificate_subject,
                            e.mdn_certificate,
                            e.mic
                        ),
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
                may_change_trust(ctx, &t, &name).await?;
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
            ReceiverCmd::As2(As2Cmd::Set(a)) => {
                ctx.require_role(&t, &[Role::TenantAdmin], None, "setting an AS2 endpoint")
                    .await?;
                let name = name(&a.name)?;
                rekey_service::http::parse_url(&a.url).context("--url")?;
                let config = as2::As2Config {
                    url: a.url.clone(),
                    as2_from: As2Id::parse(&a.as2_from).context("--as2-from")?,
                    as2_to: As2Id::parse(&a.as2_to).context("--as2-to")?,
                    mdn_certificate: {
                        let path = &a.mdn_cert;
                        let certs = Certificate::parse_any(&read_file(path, "certificate file")?)
                            .with_context(|| format!("--mdn-cert {}", path.display()))?;
                        match certs.into_iter().next() {
                            Some(c) => c,
                            None => bail!("--mdn-cert {} holds no certificate", path.display()),
                        }
                    },
                    mic: a.mic.parse().context("--mic")?,
                };
                let txn = ctx.store.begin().await?;
                let e = as2::set(&txn, t.id, &name, &config, &ctx.actor).await?;
                txn.commit().await?;
                let v = as2_view(&e);
                println!(
                    "receiver {:?}: AS2 endpoint {} as {} to {}, MDNs signed by \"{}\" SHA-256 {}, MIC {}",
                    name.as_str(),
                    v.url,
                    v.as2_from,
                    v.as2_to,
                    v.mdn_certificate_subject,
                    v.mdn_certificate,
                    v.mic
                );
            }
            ReceiverCmd::Probe(a) => {
                ctx.require_role(&t, &[Role::TenantAdmin], None, "probing a receiver")
                    .await?;
                let name = name(&a.name)?;
                if a.timeout == 0 {
                    bail!("--timeout must be at least 1 second");
                }
                let r = ctx.store.receiver(t.id, &name).await?;
                let Some(e) = as2::get(ctx.store.db(), t.id, &name).await? else {
                    bail!(
                        "receiver {:?} has no AS2 endpoint: set one with `rekey receiver as2 set`",
                        name.as_str()
                    );
                };
                // Keys of the keystore whose certificates the receiver is recorded to trust.
                // They sign through the tenant's keystore (on its token, for a token tenant).
                let mut held = Vec::new();
                for entry in ctx.store.key_entries(t.id).await? {
                    if !r.trusted.iter().any(|c| c.fingerprint == entry.fingerprint) {
                        continue;
                    }
                    let key = ctx.store.private_key(t.id, &entry.alias).await?;
                    if let Some(cert) = entry.chain.first() {
                        held.push((key, cert.clone()));
                    }
                }
                let backend = ctx.store.backend(t.id);
                let signers = held
                    .iter()
                    .map(|(key, _)| backend.signer(key))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let trusted: Vec<rekey_service::as2::ProbeKey<'_>> = signers
                    .iter()
                    .zip(&held)
                    .map(|(s, (_, cert))| (&**s as &dyn rekey_crypto::RsaSigner, cert.clone()))
                    .collect();
                let now = rekey_store::db::now();
                let stranger = tokio::task::spawn_blocking(move || {
                    let key = KeyPair::generate(KeyBits::B2048)?;
                    let cert = rekey_crypto::self_signed(
                        &key,
                        "CN=rekey capability probe (never trusted)",
                        now - chrono::Duration::hours(1),
                        1,
                    )?;
                    Ok::<_, rekey_crypto::CryptoError>((key, cert))
                })
                .await??;
                let endpoint = rekey_service::as2::As2Endpoint {
                    url: e.config.url.clone(),
                    as2_from: e.config.as2_from.clone(),
                    as2_to: e.config.as2_to.clone(),
                    mdn_certificate: e.config.mdn_certificate.clone(),
                    mic: e.config.mic,
                };
                let stranger = (&stranger.0 as &dyn rekey_crypto::RsaSigner, stranger.1);
                let report = rekey_service::as2::probe(
                    &endpoint,
                    &trusted,
                    &stranger,
                    now,
                    std::time::Duration::from_secs(a.timeout),
                )
                .await;
                if a.accept
                    && let Some(p) = report.proposed
                {
                    let profile = ReceiverProfile {
                        verifies_multiple_keys: p.verifies_multiple_keys,
                        accepts_multiple_signatures: p.accepts_multiple_signatures,
                    };
                    let txn = ctx.store.begin().await?;
                    receivers::set_profile(&txn, t.id, &name, profile, &ctx.actor).await?;
                    txn.commit().await?;
                }
                if a.json.json {
                    print_json(&report)?;
                } else {
                    for m in &report.messages {
                        println!("{}: {} ({})", m.purpose, m.result, m.detail);
                    }
                    match (&report.proposed, &report.problem) {
                        (Some(p), _) => println!(
                            "proposed profile: verifies_multiple_keys={} accepts_multiple_signatures={}{}",
                            p.verifies_multiple_keys,
                            p.accepts_multiple_signatures,
                            if a.accept {
                                " (accepted: the receiver's profile is set)"
                            } else {
                                " (rerun with --accept to set it)"
                            }
                        ),
                        (None, Some(problem)) => println!("no profile proposed: {problem}"),
                        (None, None) => {}
                    }
                }
                if report.proposed.is_none() {
                    bail!(
                        "receiver {:?}: no profile proposed: {}",
                        name.as_str(),
                        report.problem.unwrap_or_default()
                    );
                }
            }
            ReceiverCmd::As2(As2Cmd::Remove(a)) => {
                ctx.require_role(&t, &[Role::TenantAdmin], None, "removing an AS2 endpoint")
                    .await?;
                let name = name(&a.name)?;
                let txn = ctx.store.begin().await?;
                as2::remove(&txn, t.id, &name, &ctx.actor).await?;
                txn.commit().await?;
                println!("receiver {:?}: AS2 endpoint removed", name.as_str());
            }
            ReceiverCmd::Untrust(a) => {
                let name = name(&a.name)?;
                may_change_trust(ctx, &t, &name).await?;
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
