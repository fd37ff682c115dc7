//! `rekey keygen`, `rekey sign` and `rekey verify` on files: the crypto crate from the shell.
//!
//! This module owns reading and writing the files and turning results into exit codes; every
//! cryptographic decision is `rekey_crypto`'s. Errors name the file and what was wrong, on one
//! line.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use clap::Args;
use rekey_crypto::{
    Certificate, DigestAlg, KeyBits, KeyPair, ReceiverProfile, SignOptions, SignerSpec, Verdict,
    certificate_request, certificate_request_pem, decode_input, parse_subject, receiver_verdict,
    self_signed_at, sign as cms_sign, to_base64,
};
use serde::Serialize;

/// Exit code of `rekey verify` when the receiver rule rejects the message.
///
/// Not 2: clap exits 2 on a usage error, and a script must be able to tell a typo from a
/// rejected message.
/// Unreadable or malformed input exits 1, as every error `main` reports.
pub const EXIT_REJECTED: u8 = 3;
const _: () = assert!(EXIT_REJECTED != 1 && EXIT_REJECTED != 2 && EXIT_REJECTED < 100);

/// `rekey keygen`: an RSA key pair and a self-signed certificate (and optionally a CSR).
#[derive(Debug, Args)]
#[command(
    after_help = "The key file is written with mode 0600. Existing files are not \
overwritten unless --force is given.\n\nExample:\n  rekey keygen --bits 3072 --subject \
\"CN=signer,O=Example\" --days 365 --key-out k.pem --cert-out c.pem --csr-out r.csr"
)]
pub struct KeygenArgs {
    /// RSA modulus size: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 3072)]
    pub bits: u32,
    /// Subject distinguished name, RFC 4514 form, e.g. "CN=signer,O=Example".
    #[arg(long)]
    pub subject: String,
    /// Validity of the self-signed certificate in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key_out: PathBuf,
    /// Where to write the self-signed certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert_out: PathBuf,
    /// Also write a PKCS#10 certificate signing request (PEM) for a CA.
    #[arg(long, value_name = "FILE")]
    pub csr_out: Option<PathBuf>,
    /// Overwrite output files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `rekey sign`: one SignedData with one SignerInfo per `--signer`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each --signer is KEY:CERT: a private key file (PEM or DER, PKCS#8 or \
PKCS#1) and its certificate file (PEM, possibly followed by its issuers, or DER).\n\nExample:\n  \
rekey sign --signer old.pem:old.crt --signer new.pem:new.crt --digest sha256 --in payload.xml \
--out signed.p7m\n  rekey sign --flow Orders --step sign --in payload.xml --out signed.p7m --as \
erp-signer@acme.example\n\nWith --flow, the signatures are those the step's Signer Parameters table \
lists now; a system signs the same way over HTTP with POST /api/sign."
)]
pub struct SignArgs {
    /// A signer as KEY_FILE:CERT_FILE; repeat for several signatures.
    #[arg(
        long = "signer",
        value_name = "KEY:CERT",
        required_unless_present = "flow"
    )]
    pub signers: Vec<String>,
    /// Sign as this flow's signer step signs now (with --step), with the keys in the store,
    /// acting --as a user holding the signer role of the flow (or tenant_admin or
    /// integration_developer of the tenant). --detached and --base64 then override the
    /// step's options.
    #[arg(long, requires = "step", conflicts_with_all = ["signers", "no_certs", "no_signing_time"])]
    pub flow: Option<String>,
    /// The signer step of --flow.
    #[arg(long, requires = "flow")]
    pub step: Option<String>,
    /// Digest algorithm for every signer: sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256", value_parser = parse_digest)]
    pub digest: DigestAlg,
    /// Leave the signers' certificates out of the message.
    #[arg(long)]
    pub no_certs: bool,
    /// Do not sign a signingTime attribute.
    #[arg(long)]
    pub no_signing_time: bool,
    /// Leave the content out of the message (the receiver gets it separately); with --flow,
    /// whatever the step's option says.
    #[arg(long)]
    pub detached: bool,
    /// Write the message as Base64 text instead of DER; with --flow, whatever the step's
    /// option says.
    #[arg(long)]
    pub base64: bool,
    /// The payload to sign.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the SignedData.
    #[arg(long = "out", value_name = "FILE")]
    pub output: PathBuf,
}

/// `rekey verify`: check every signature and apply a receiver's rule.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes:\n  0  accepted: the receiver rule accepts the message\n  1  \
bad input: a file is unreadable or malformed, or detached content is missing\n  2  usage error \
(unknown or missing options)\n  3  rejected: the message was read but the receiver rule refuses \
it (no signature verifies under a trusted certificate, or several signatures with \
--single-signature-only)\n\nOnly the --trust certificates count; certificates carried in the \
message are not trusted. The input may be DER, PEM or Base64."
)]
pub struct VerifyArgs {
    /// The SignedData (DER, PEM or Base64).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// The signed content, for a detached message.
    #[arg(long, value_name = "FILE")]
    pub content: Option<PathBuf>,
    /// A trusted certificate file (PEM, may hold several, or DER); repeat for more.
    #[arg(long, value_name = "FILE", required = true)]
    pub trust: Vec<PathBuf>,
    /// The receiver accepts several SignerInfos and checks the one it trusts (the default).
    #[arg(long, conflicts_with = "single_signature_only")]
    pub accept_multiple_signatures: bool,
    /// The receiver accepts exactly one SignerInfo (AS ABAP systems).
    #[arg(long)]
    pub single_signature_only: bool,
    /// Print the verdict and each signer's result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

fn parse_digest(s: &str) -> Result<DigestAlg, String> {
    s.parse()
        .map_err(|e: rekey_crypto::CryptoError| e.to_string())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Writes a new file, refusing to replace one unless `force`; `private` files get mode 0600.
fn write_file(path: &Path, bytes: &[u8], force: bool, private: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} already exists; use --force to overwrite it",
                path.display()
            )
        } else {
            anyhow!("cannot write {}: {e}", path.display())
        }
    })?;
    #[cfg(unix)]
    if private {
        // An existing file keeps its mode when opened; a key must not stay world-readable.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
    }
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `rekey keygen`.
pub fn keygen(args: KeygenArgs) -> Result<ExitCode> {
    let bits = KeyBits::try_from(args.bits).context("--bits")?;
    parse_subject(&args.subject).context("--subject")?;
    let mut outputs = vec![&args.key_out, &args.cert_out];
    outputs.extend(args.csr_out.as_ref());
    for (i, p) in outputs.iter().enumerate() {
        if outputs[..i].contains(p) {
            bail!("{} is named for two outputs", p.display());
        }
        if !args.force && p.exists() {
            bail!(
                "{} already exists; use --force to overwrite it",
                p.display()
            );
        }
    }

    let key = KeyPair::generate(bits)?;
    // Backdated like a renewal's certificate, for receivers whose clock is a little behind.
    let cert = self_signed_at(
        &key,
        &args.subject,
        Utc::now(),
        rekey_service::DEFAULT_CLOCK_SKEW,
        args.days,
    )?;
    let csr = match &args.csr_out {
        Some(_) => Some(certificate_request_pem(&certificate_request(
            &key,
            &args.subject,
        )?)),
        None => None,
    };

    write_file(
        &args.key_out,
        key.to_pkcs8_pem()?.as_bytes(),
        args.force,
        true,
    )?;
    write_file(&args.cert_out, cert.to_pem().as_bytes(), args.force, false)?;
    if let (Some(path), Some(csr)) = (&args.csr_out, &csr) {
        write_file(path, csr.as_bytes(), args.force, false)?;
    }
    println!(
        "RSA-{} key {}; certificate {} \"{}\" valid until {}, SHA-256 {}",
        key.bits(),
        args.key_out.display(),
        args.cert_out.display(),
        cert.subject(),
        cert.not_after().format("%Y-%m-%d"),
        cert.fingerprint().to_colon_hex()
    );
    Ok(ExitCode::SUCCESS)
}

fn load_key(path: &Path) -> Result<KeyPair> {
    let bytes = read(path, "key file")?;
    KeyPair::from_pem_or_der(&bytes).with_context(|| format!("key file {}", path.display()))
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<Certificate>> {
    let bytes = read(path, what)?;
    Certificate::parse_any(&bytes).with_context(|| format!("{what} {}", path.display()))
}

/// `rekey sign`.
pub fn sign(args: SignArgs) -> Result<ExitCode> {
    let mut loaded: Vec<(String, KeyPair, Vec<Certificate>)> = Vec::new();
    for s in &args.signers {
        let (key_path, cert_path) = s
            .split_once(':')
            .filter(|(k, c)| !k.is_empty() && !c.is_empty())
            .ok_or_else(|| anyhow!("--signer {s:?}: expected KEY_FILE:CERT_FILE"))?;
        let key = load_key(Path::new(key_path))?;
        let chain = load_certs(Path::new(cert_path), "certificate file")?;
        loaded.push((s.clone(), key, chain));
    }
    let specs: Vec<SignerSpec<'_>> = loaded
        .iter()
        .map(|(_, key, chain)| SignerSpec {
            key,
            chain,
            digest: args.digest,
            include_certs: !args.no_certs,
            include_signing_time: !args.no_signing_time,
        })
        .collect();
    for (name, key, chain) in &loaded {
        if let Some(leaf) = chain.first().filter(|c| !key.matches(c)) {
            bail!(
                "--signer {name}: the certificate ({}, SHA-256 {}) does not belong to the key",
                leaf.subject(),
                leaf.fingerprint().to_colon_hex()
            );
        }
    }
    let payload = read(&args.input, "payload")?;
    let der = cms_sign(
        &payload,
        &specs,
        &SignOptions {
            detached: args.detached,
            signing_time: Utc::now(),
        },
    )?;
    let out = if args.base64 {
        let mut text = to_base64(&der);
        text.push('\n');
        text.into_bytes()
    } else {
        der
    };
    fs::write(&args.output, out)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    accepted: bool,
    verdict: &'a Verdict,
    profile: &'a ReceiverProfile,
    attached: bool,
    signers: &'a [rekey_crypto::SignerReport],
}

/// `rekey verify`.
pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let raw = read(&args.input, "message")?;
    let der = decode_input(&raw).with_context(|| format!("message {}", args.input.display()))?;
    let content = match &args.content {
        Some(p) => Some(read(p, "content file")?),
        None => None,
    };
    let mut trusted = Vec::new();
    for p in &args.trust {
        trusted.extend(load_certs(p, "trusted certificate file")?);
    }
    let profile = ReceiverProfile {
        verifies_multiple_keys: false,
        accepts_multiple_signatures: !args.single_signature_only,
    };
    let (verdict, v) = receiver_verdict(&der, content.as_deref(), &trusted, &profile, Utc::now())
        .map_err(|e| match e {
        rekey_crypto::CryptoError::Content(m) if args.content.is_none() => {
            anyhow!("message {}: {m} (use --content FILE)", args.input.display())
        }
        other => anyhow!("message {}: {other}", args.input.display()),
    })?;

    if args.json {
        let report = JsonReport {
            accepted: verdict.is_accepted(),
            verdict: &verdict,
            profile: &profile,
            attached: v.attached,
            signers: &v.signers,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    match &verdict {
        Verdict::Accepted { by } => {
            if !args.json {
                let subject = v
                    .signers
                    .iter()
                    .find(|s| s.certificate == Some(*by))
                    .and_then(|s| s.subject.clone())
                    .unwrap_or_default();
                println!(
                    "accepted: {} of {} signature(s) verify; trusted signer \"{subject}\" SHA-256 {}",
                    v.signers.iter().filter(|s| s.is_valid()).count(),
                    v.signers.len(),
                    by.to_colon_hex()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Rejected { reason } => {
            eprintln!("rekey: rejected: {}: {reason}", args.input.display());
            Ok(ExitCode::from(EXIT_REJECTED))
        }
    }
}
