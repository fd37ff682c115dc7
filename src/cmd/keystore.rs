//! `rekey keystore ...`: the tenant's outbound keystore (list with alias usage, generate,
//! import from PEM/DER or PKCS#12, export the certificate, remove, history, restore).
//!
//! Private keys never leave the store from here: generate and import go through the tenant's
//! keystore backend (the embedded one encrypts keys under the KEK; a PKCS#11 tenant's keys are
//! made on, or imported into, its token); only certificates are exported. Changes (generate,
//! import, remove, restore) are the tenant administrator's: `--as EMAIL` names them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rekey_crypto::{Certificate, KeyBits, KeyPair, parse_subject, self_signed_at};
use rekey_model::{Alias, EntryId, Role};
use rekey_service::tokens::NewKey;
use rekey_store::{KeyMaterial, KeystoreEntry, StepRef, flows, keystore};
use serde::Serialize;

use super::state::{JsonArg, day, print_json, print_table, read_file, with_ctx, write_new};
use crate::config::{Context, GlobalArgs};

/// `rekey keystore ...`.
#[derive(Debug, Subcommand)]
pub enum KeystoreCmd {
    /// List the current entries: fingerprint, notAfter and the signer steps using each alias.
    List(JsonArg),
    /// Generate an RSA key pair with a self-signed certificate under a new alias.
    Generate(GenerateArgs),
    /// Import a key and its certificate chain (PKCS#12, or key and certificate files).
    Import(ImportArgs),
    /// Write an alias's certificate chain (PEM, end entity first).
    ExportCert(ExportCertArgs),
    /// Move an alias's entry to history; refused while a signer step lists the alias.
    Remove(AliasArg),
    /// List an alias's entries, current and earlier.
    History(HistoryArgs),
    /// Make an earlier entry of an alias current again.
    Restore(RestoreArgs),
    /// Make the tenant's PKCS#11 token match the keystore: destroy key objects rekey made
    /// that no entry refers to, set labels and certificate objects, report entries whose key
    /// object is missing (exit 1). Runs by itself after every step; this is for after a crash
    /// or a change made on the token by hand.
    Reconcile(JsonArg),
}

/// `--alias A`.
#[derive(Debug, Args)]
pub struct AliasArg {
    /// The keystore alias.
    #[arg(long)]
    pub alias: String,
}

/// `rekey keystore generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The new alias.
    #[arg(long)]
    pub alias: String,
    /// RSA modulus size: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 3072)]
    pub bits: u32,
    /// Subject distinguished name, RFC 4514 form [default: CN=<alias>].
    #[arg(long)]
    pub subject: Option<String>,
    /// Validity of the self-signed certificate in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// `rekey keystore import`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["pkcs12", "key"])))]
pub struct ImportArgs {
    /// The new alias.
    #[arg(long)]
    pub alias: String,
    /// A PKCS#12 file holding the key and its chain.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "cert"])]
    pub pkcs12: Option<PathBuf>,
    /// A file holding the PKCS#12 password (first line) [default: empty password].
    #[arg(long, value_name = "FILE", requires = "pkcs12")]
    pub password_file: Option<PathBuf>,
    /// The private key (PEM or DER, PKCS#8 or PKCS#1).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The certificate, possibly followed by its issuers (PEM), or DER.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
}

/// `rekey keystore export-cert`.
#[derive(Debug, Args)]
pub struct ExportCertArgs {
    /// The keystore alias.
    #[arg(long)]
    pub alias: String,
    /// Where to write the PEM chain [default: standard output].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `rekey keystore history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The keystore alias.
    #[arg(long)]
    pub alias: String,
    #[command(flatten)]
    json: JsonArg,
}

/// `rekey keystore restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The keystore alias.
    #[arg(long)]
    pub alias: String,
    /// The entry id to make current (see `rekey keystore history`).
    #[arg(long, value_name = "ID")]
    pub entry: String,
}

#[derive(Serialize)]
struct EntryView {
    alias: String,
    entry: String,
    current: bool,
    has_key: bool,
    key_bits: Option<u32>,
    subject: Option<String>,
    fingerprint: Option<String>,
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    archived_reason: Option<&'static str>,
    used_by: Vec<StepRef>,
}

impl EntryView {
    fn of(e: &KeystoreEntry, used_by: Vec<StepRef>) -> EntryView {
        EntryView {
            alias: e.alias.to_string(),
            entry: e.id.to_string(),
            current: e.current,
            has_key: true,
            key_bits: Some(e.key_bits),
            subject: Some(e.subject.clone()),
            fingerprint: Some(e.fingerprint.to_colon_hex()),
            not_before: Some(e.not_before),
            not_after: Some(e.not_after),
            archived_at: e.archived_at,
            archived_reason: e.archived_reason.map(|r| r.as_str()),
            used_by,
        }
    }
}

fn uses(v: &[StepRef]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn alias(s: &str) -> Result<Alias> {
    Alias::parse(s).context("--alias")
}

/// `rekey keystore ...`.
pub fn run(global: &GlobalArgs, cmd: KeystoreCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        match cmd {
            KeystoreCmd::List(j) => list(ctx, j.json).await?,
            KeystoreCmd::Generate(a) => generate(ctx, a).await?,
            KeystoreCmd::Reconcile(j) => reconcile(ctx, j.json).await?,
            KeystoreCmd::Import(a) => import(ctx, a).await?,
            KeystoreCmd::ExportCert(a) => export_cert(ctx, a).await?,
            KeystoreCmd::Remove(a) => {
                let t = ctx.tenant().await?;
                ctx.require_role(&t, &[Role::TenantAdmin], None, "removing a keystore entry")
                    .await?;
                let alias = alias(&a.alias)?;
                let e = ctx.store.remove_key(t.id, &alias, &ctx.actor).await?;
                println!(
                    "removed alias {alias} (entry {} moved to history; restore it with `rekey \
                     keystore restore --alias {alias} --entry {}`)",
                    e.id, e.id
                );
            }
            KeystoreCmd::History(a) => {
                let t = ctx.tenant().await?;
                let alias = alias(&a.alias)?;
                // The current entry first, then the earlier ones, newest first.
                let mut entries: Vec<KeystoreEntry> =
                    keystore::find_current(ctx.store.db(), t.id, &alias)
                        .await?
                        .into_iter()
                        .collect();
                entries.extend(ctx.store.key_history(t.id, &alias).await?);
                if entries.is_empty() {
                    bail!(
                        "tenant {:?}: alias {alias} has no keystore entries",
                        t.name.as_str()
                    );
                }
                let used = ctx.store.alias_usage(t.id, &alias).await?;
                let views: Vec<EntryView> = entries
                    .iter()
                    .map(|e| EntryView::of(e, if e.current { used.clone() } else { vec![] }))
                    .collect();
                if a.json.json {
                    print_json(&views)?;
                } else {
                    let rows: Vec<Vec<String>> = entries
                        .iter()
                        .map(|e| {
                            vec![
                                e.id.to_string(),
                                match e.archived_reason {
                                    _ if e.current => "current".into(),
                                    Some(r) => r.as_str().into(),
                                    None => "archived".into(),
                                },
                                day(e.created_at),
                                e.archived_at.map(day).unwrap_or_else(|| "-".into()),
                                day(e.not_after),
                                e.fingerprint.to_colon_hex(),
                            ]
                        })
                        .collect();
                    print_table(
                        &[
                            "entry",
                            "state",
                            "added",
                            "archived",
                            "not after",
                            "SHA-256",
                        ],
                        &rows,
                    );
                }
            }
            KeystoreCmd::Restore(a) => {
                let t = ctx.tenant().await?;
                ctx.require_role(&t, &[Role::TenantAdmin], None, "restoring a keystore entry")
                    .await?;
                let alias = alias(&a.alias)?;
                let entry: EntryId = a.entry.parse().context("--entry")?;
                let e = ctx
                    .store
                    .restore_key(t.id, &alias, entry, &ctx.actor)
                    .await?;
                println!(
                    "alias {alias} is entry {} again: \"{}\" SHA-256 {}",
                    e.id,
                    e.subject,
                    e.fingerprint.to_colon_hex()
                );
            }
        }
        Ok(())
    })
}

async fn list(ctx: &Context, json: bool) -> Result<()> {
    let t = ctx.tenant().await?;
    if ctx.store.backend(t.id).remote() {
        // What rekey keeps; the tenant's own keystore is read live by `tenant show`.
        eprintln!(
            "note: tenant {:?} keeps its keys in SAP Cloud Integration; `rekey tenant show` reads them from the tenant",
            t.name.as_str()
        );
    }
    let entries = ctx.store.key_entries(t.id).await?;
    let mut usage = flows::all_alias_usage(ctx.store.db(), t.id).await?;
    let mut views: Vec<EntryView> = entries
        .iter()
        .map(|e| EntryView::of(e, usage.remove(&e.alias).unwrap_or_default()))
        .collect();
    // Aliases that signer steps list but that have no key (yet): part of the picture.
    for (alias, used_by) in usage {
        views.push(EntryView {
            alias: alias.to_string(),
            entry: String::new(),
            current: false,
            has_key: false,
            key_bits: None,
            subject: None,
            fingerprint: None,
            not_before: None,
            not_after: None,
            archived_at: None,
            archived_reason: None,
            used_by,
        });
    }
    views.sort_by(|a, b| a.alias.cmp(&b.alias));
    if json {
        return print_json(&views);
    }
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.alias.clone(),
                v.key_bits.map(|b| b.to_string()).unwrap_or_else(dash),
                v.not_after
                    .map(day)
                    .unwrap_or_else(|| "(no key)".to_string()),
                v.fingerprint.clone().unwrap_or_else(dash),
                uses(&v.used_by),
            ]
        })
        .collect();
    print_table(&["alias", "bits", "not after", "SHA-256", "used by"], &rows);
    Ok(())
}

async fn refuse_taken(ctx: &Context, tenant: &rekey_store::Tenant, alias: &Alias) -> Result<()> {
    if keystore::find_current(ctx.store.db(), tenant.id, alias)
        .await?
        .is_some()
    {
        bail!(
            "tenant {:?}: alias {alias} already has a keystore entry; remove it or choose another alias",
            tenant.name.as_str()
        );
    }
    Ok(())
}

async fn generate(ctx: &Context, a: GenerateArgs) -> Result<()> {
    let t = ctx.tenant().await?;
    ctx.require_role(
        &t,
        &[Role::TenantAdmin],
        None,
        "adding a key to the keystore",
    )
    .await?;
    let alias = alias(&a.alias)?;
    let bits = KeyBits::try_from(a.bits).context("--bits")?;
    let subject = a.subject.unwrap_or_else(|| format!("CN={alias}"));
    parse_subject(&subject).context("--subject")?;
    // Checked before spending seconds on key generation; the store checks again.
    refuse_taken(ctx, &t, &alias).await?;
    let skew = ctx.settings.renewal.clock_skew;
    let (now, days) = (Utc::now(), a.days);
    if days == 0 {
        bail!("--days: validity must be at least one day");
    }
    let e = crate::cmd::renewal::service(ctx)
        .await?
        .add_key(
            t.id,
            &alias,
            NewKey::Generate {
                bits,
                certify: Box::new(move |key| self_signed_at(key, &subject, now, skew, days)),
            },
            &ctx.actor,
        )
        .await?;
    print_added("generated", &e);
    Ok(())
}

async fn reconcile(ctx: &Context, json: bool) -> Result<()> {
    let t = ctx.tenant().await?;
    let backend = ctx.store.backend(t.id);
    let kind = backend.kind();
    if backend.remote() {
        bail!(
            "tenant {:?} keeps its keys in SAP Cloud Integration: `rekey tenant sync` reconciles it (deletes what rekey retired there, then records what the tenant holds)",
            t.name.as_str()
        );
    }
    let report = crate::cmd::renewal::service(ctx)
        .await?
        .reconcile_tokens(t.id)
        .await?;
    if json {
        print_json(&report)?;
    } else if kind == "embedded" {
        println!(
            "tenant {:?} keeps its keys in the embedded keystore: nothing to reconcile",
            t.name.as_str()
        );
    } else {
        println!(
            "tenant {:?}: {} key object(s) match the keystore; {} orphan(s) destroyed",
            t.name.as_str(),
            report.projected,
            report.destroyed.len()
        );
        for d in &report.destroyed {
            println!("  destroyed {d}");
        }
    }
    if !report.missing.is_empty() {
        bail!(
            "the token lacks the key object of {} keystore row(s): {}",
            report.missing.len(),
            report.missing.join("; ")
        );
    }
    Ok(())
}

fn print_added(verb: &str, e: &KeystoreEntry) {
    println!(
        "{verb} alias {}: RSA-{} \"{}\" valid until {}, SHA-256 {}",
        e.alias,
        e.key_bits,
        e.subject,
        day(e.not_after),
        e.fingerprint.to_colon_hex()
    );
}

async fn import(ctx: &Context, a: ImportArgs) -> Result<()> {
    let t = ctx.tenant().await?;
    ctx.require_role(
        &t,
        &[Role::TenantAdmin],
        None,
        "adding a key to the keystore",
    )
    .await?;
    let alias = alias(&a.alias)?;
    let material = match (&a.pkcs12, &a.key, &a.cert) {
        (Some(p12), _, _) => {
            let der = read_file(p12, "PKCS#12 file")?;
            let password = match &a.password_file {
                Some(p) => {
                    let bytes = read_file(p, "password file")?;
                    let text = String::from_utf8(bytes)
                        .with_context(|| format!("password file {} is not UTF-8", p.display()))?;
                    zeroize::Zeroizing::new(text.lines().next().unwrap_or_default().to_string())
                }
                None => zeroize::Zeroizing::new(String::new()),
            };
            let (key, chain) = rekey_crypto::pkcs12::import(&der, &password)
                .with_context(|| format!("PKCS#12 file {}", p12.display()))?;
            KeyMaterial::new(&alias, key.clone(), chain.clone())
                .with_context(|| format!("PKCS#12 file {}", p12.display()))?;
            (key, chain)
        }
        (None, Some(key_path), Some(cert_path)) => {
            let key = KeyPair::from_pem_or_der(&read_file(key_path, "key file")?)
                .with_context(|| format!("key file {}", key_path.display()))?;
            let chain = Certificate::parse_any(&read_file(cert_path, "certificate file")?)
                .with_context(|| format!("certificate file {}", cert_path.display()))?;
            KeyMaterial::new(&alias, key.clone(), chain.clone())?;
            (key, chain)
        }
        _ => bail!("give --pkcs12 FILE, or --key FILE and --cert FILE"),
    };
    let (key, chain) = material;
    if ctx.store.backend(t.id).kind() != "embedded" {
        eprintln!(
            "warning: the key of alias {alias} existed outside the token before this import; \
             it is now on the token, but every copy of the file remains a copy of the key. \
             Keys that must never leave the token are made there: `rekey keystore generate`."
        );
    }
    let e = crate::cmd::renewal::service(ctx)
        .await?
        .add_key(t.id, &alias, NewKey::Import { key, chain }, &ctx.actor)
        .await?;
    print_added("imported", &e);
    Ok(())
}

async fn export_cert(ctx: &Context, a: ExportCertArgs) -> Result<()> {
    let t = ctx.tenant().await?;
    let alias = alias(&a.alias)?;
    let e = ctx.store.key_entry(t.id, &alias).await?;
    let pem: String = e.chain.iter().map(Certificate::to_pem).collect();
    match &a.out {
        Some(path) => {
            write_new(path, pem.as_bytes(), a.force)?;
            eprintln!(
                "wrote the certificate chain of alias {alias} ({} certificate(s)) to {}",
                e.chain.len(),
                path.display()
            );
        }
        None => print!("{pem}"),
    }
    Ok(())
}
