//! `rekey demo`: every procedure end to end on an embedded database, the roles played
//! automatically, a reference receiver judging a probe after every step, and the evidence
//! files of DEMO-EVIDENCE.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, DurationRound as _, Utc};
use clap::Args;
use rekey_engine::{Catalog, ProcedureId};
use rekey_service::Service;
use rekey_service::demo::{self, DemoOptions, ProcedureRun};
use rekey_store::{Kek, Store};

use crate::cmd::state::block_on;
use crate::config::GlobalArgs;

/// Options of `rekey demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Procedure to run: dual-trust, dual-signature, prepared-second-alias, downtime-window, or
    /// all.
    #[arg(long, default_value = "all", value_name = "ID|all")]
    procedure: String,
    /// Write probes.jsonl and timeline.json per procedure under DIR/<procedure>/.
    #[arg(long, value_name = "DIR")]
    evidence: Option<PathBuf>,
    /// RSA key size of every key the demo makes.
    #[arg(long, default_value_t = 3072)]
    bits: u32,
    /// Print the runs as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Start of the demo's simulated clock (RFC 3339). Default: a day before now, so that the
    /// whole run (a few simulated hours) lies in the past and its certificates are valid now:
    /// tools that verify at the current time (GnuTLS, OpenSSL by default) accept the evidence.
    #[arg(long, value_name = "TIME")]
    start: Option<DateTime<Utc>>,
    /// Where the demo tenant's private keys live: `embedded` (encrypted in the demo's
    /// database) or `pkcs11` (generated on a PKCS#11 token and never leaving it).
    #[arg(long, value_enum, default_value = "embedded")]
    keystore: DemoKeystore,
    /// The PKCS#11 module for `--keystore pkcs11`, e.g. /usr/lib/softhsm/libsofthsm2.so.
    /// Without `--pkcs11-token` the demo initialises a fresh token in the module's first free
    /// slot (SoftHSM2 always has one), keeping SoftHSM2's tokens in the demo's data directory.
    #[arg(long, value_name = "PATH")]
    pkcs11_module: Option<PathBuf>,
    /// Label of an initialised token to use instead of a fresh one.
    #[arg(long, value_name = "LABEL", requires = "pkcs11_pin_env")]
    pkcs11_token: Option<String>,
    /// Environment variable holding the user PIN of `--pkcs11-token`.
    #[arg(long, value_name = "VAR", requires = "pkcs11_token")]
    pkcs11_pin_env: Option<String>,
    /// The Python 3 interpreter (with the `cryptography` package) that runs the fake SAP Cloud
    /// Integration tenant for `--keystore sap-ci-fake`. Default: `target/xtask-venv/bin/python`
    /// when `cargo xtask test` made it, else `python3`.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
}

/// `rekey demo --keystore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DemoKeystore {
    /// Keys encrypted under the KEK in the demo's database.
    Embedded,
    /// Keys on a PKCS#11 token.
    Pkcs11,
    /// Keys on an SAP Cloud Integration tenant — a FAKE one (`tests/fake-sap-ci`, written from
    /// SAP's documented API), started on loopback for the run: rekey reaches it through the API
    /// as it would a real tenant, and the tenant's runtime signs every probe.
    SapCiFake,
}

/// Set on the demo process that `rekey demo` re-runs with `SOFTHSM2_CONF` pointing into its
/// data directory (SoftHSM2 reads the variable when it is loaded; rekey sets no variable in
/// its own process).
const DEMO_SOFTHSM_ENV: &str = "REKEY_DEMO_SOFTHSM_CONF";

/// Exit code when a claim of the demo does not hold.
const EXIT_CLAIM_FAILED: u8 = 4;

/// Runs the demo; exit 0 only when every claim holds.
pub fn run(global: &GlobalArgs, args: DemoArgs) -> Result<ExitCode> {
    let procedures = if args.procedure == "all" {
        ProcedureId::ALL.to_vec()
    } else {
        vec![
            args.procedure
                .parse::<ProcedureId>()
                .map_err(anyhow::Error::msg)
                .context("--procedure")?,
        ]
    };
    let procedures = if args.keystore == DemoKeystore::SapCiFake {
        let (carried, refused): (Vec<_>, Vec<_>) = procedures
            .into_iter()
            .partition(|p| rekey_service::SAP_CI_PROCEDURES.contains(p));
        if args.procedure != "all"
            && let Some(p) = refused.first()
        {
            bail!(
                "--procedure {p}: not carried out on an SAP Cloud Integration tenant (it changes \
                 the signer step's aliases, a parameter change and a deploy of the flow); choose \
                 one of {}",
                carried_names()
            );
        }
        carried
    } else {
        procedures
    };
    if args.python.is_some() && args.keystore != DemoKeystore::SapCiFake {
        bail!("--python is for --keystore sap-ci-fake");
    }
    rekey_crypto::KeyBits::try_from(args.bits).context("--bits")?;
    let dir = match &global.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("rekey-demo-{}", uuid::Uuid::new_v4().simple())),
    };
    let token = match args.keystore {
        DemoKeystore::Embedded | DemoKeystore::SapCiFake => {
            if args.pkcs11_module.is_some() {
                bail!("--pkcs11-module is for --keystore pkcs11");
            }
            None
        }
        DemoKeystore::Pkcs11 => {
            let module = args.pkcs11_module.clone().context(
                "--keystore pkcs11 needs --pkcs11-module PATH (the token's PKCS#11 library)",
            )?;
            if !module.exists() {
                bail!(
                    "--pkcs11-module {}: no such file (SoftHSM2 for trying it: apt-get install softhsm2, then /usr/lib/softhsm/libsofthsm2.so)",
                    module.display()
                );
            }
            match (&args.pkcs11_token, &args.pkcs11_pin_env) {
                (Some(label), Some(var)) => Some(rekey_pkcs11::Pkcs11Config {
                    module,
                    token_label: label.clone(),
                    pin: rekey_pkcs11::PinSource::Env(var.clone()),
                }),
                _ => {
                    if is_softhsm(&module)
                        && std::env::var_os("SOFTHSM2_CONF").is_none()
                        && std::env::var_os(DEMO_SOFTHSM_ENV).is_none()
                    {
                        return rerun_with_softhsm_conf(&dir);
                    }
                    Some(fresh_token(&dir, module)?)
                }
            }
        }
    };
    // Only the clock-skew allowance is taken from the configuration: the demo keeps its own
    // database and sends no mail.
    let skew = crate::config::Settings::load(global)?.renewal.clock_skew;
    let fake = match args.keystore {
        DemoKeystore::SapCiFake => Some(FakeTenant::start(&dir, args.python.as_deref())?),
        _ => None,
    };
    let runs = block_on(async {
        let mut store = open(&dir).await?;
        if let Some(config) = &token {
            let keystore = rekey_pkcs11::Pkcs11Keystore::open(config)
                .context("cannot open the demo's PKCS#11 token")?;
            let tenant = demo::tenant(&Service::new(store.clone(), Catalog::builtin()?)).await?;
            store = store.with_backend(tenant, std::sync::Arc::new(keystore));
        }
        let mut on = demo::DemoTenant::Own;
        let mut sap_ci = None;
        if let Some(fake) = &fake {
            let tenant = demo::tenant(&Service::new(store.clone(), Catalog::builtin()?)).await?;
            store = store.with_backend(
                tenant,
                std::sync::Arc::new(rekey_service::sapci::SapCiKeystore::new(&fake.config)),
            );
            sap_ci = Some((tenant, fake.config.clone()));
            on = demo::DemoTenant::SapCiFake {
                control: format!("{}/fake", fake.url),
            };
        }
        let mut service = Service::new(store.clone(), Catalog::builtin()?).with_clock_skew(skew);
        if let Some((tenant, config)) = sap_ci {
            service = service.with_sap_ci(tenant, config);
        }
        // The wall clock is read once, here; from then on the demo runs on its simulated clock,
        // which is the engine's clock for every step, key and probe.
        let start = match args.start {
            Some(t) => t,
            None => (Utc::now() - chrono::Duration::days(1))
                .duration_trunc(chrono::Duration::minutes(1))
                .context("start time")?,
        };
        let mut runs = demo::run_on(
            &service,
            &DemoOptions {
                procedures,
                bits: args.bits,
                start,
            },
            &on,
        )
        .await?;
        if let Some(fake) = &fake
            && !args.json
        {
            println!(
                "keystore: a FAKE SAP Cloud Integration tenant at {} (tests/fake-sap-ci, \
                 written from SAP's documented API), reached through that API like a real one; \
                 every probe signed by the tenant's runtime from the deployed flow",
                fake.url
            );
        }
        if let Some(config) = &token {
            let claims = token_claims(&service, config).await?;
            if let Some(last) = runs.last_mut() {
                last.failures.extend(claims.failures);
            }
            if !args.json {
                println!("{}", claims.summary);
            }
        }
        store
            .verify_audit()
            .await
            .context("audit log after the demo")?;
        let _ = store.close().await;
        anyhow::Ok(runs)
    })??;
    if args.json {
        crate::cmd::state::print_json(&runs)?;
    } else {
        print!("{}", render(&runs));
        println!("data: {}", dir.display());
    }
    if let Some(ev) = &args.evidence {
        write_evidence(ev, &runs)?;
        if !args.json {
            println!("evidence: {}", ev.display());
        }
    }
    let failures: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.failures
                .iter()
                .map(move |f| format!("{}: {f}", r.procedure))
        })
        .collect();
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            eprintln!("rekey demo: claim failed: {f}");
        }
        Ok(ExitCode::from(EXIT_CLAIM_FAILED))
    }
}

fn carried_names() -> String {
    rekey_service::SAP_CI_PROCEDURES
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fake SAP Cloud Integration tenant of `tests/fake-sap-ci`, compiled into the binary so
/// that `rekey demo --keystore sap-ci-fake` runs from any directory.
const FAKE_SAP_CI: &str = include_str!("../../tests/fake-sap-ci/fake_sap_ci.py");

/// Runs the fake under a wrapper that exits when its standard input closes: the fake never
/// outlives the demo, however the demo ends.
const FAKE_WRAPPER: &str = "import os, runpy, sys, threading\n\
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
    sys.argv = sys.argv[1:]\n\
    runpy.run_path(sys.argv[0], run_name='__main__')\n";

/// A running fake tenant and the client configuration that reaches it.
struct FakeTenant {
    url: String,
    config: rekey_service::sapci::SapCiConfig,
    _child: std::process::Child,
    _stdin: std::process::ChildStdin,
}

impl FakeTenant {
    /// Writes the fake, its configuration (one integration flow per procedure, no keys yet)
    /// and a random client secret into `dir`, starts it on a free loopback port and reads the
    /// address it prints.
    fn start(dir: &Path, python: Option<&Path>) -> Result<FakeTenant> {
        use std::io::BufRead as _;
        let python = match python {
            Some(p) => p.to_path_buf(),
            None => {
                let venv = PathBuf::from("target/xtask-venv/bin/python");
                if venv.exists() {
                    venv
                } else {
                    PathBuf::from("python3")
                }
            }
        };
        let has_cryptography = std::process::Command::new(&python)
            .args(["-c", "import cryptography"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_cryptography {
            bail!(
                "--keystore sap-ci-fake runs the fake tenant with Python 3 and its \
                 `cryptography` package, which {} does not have: run `cargo xtask test` once \
                 (it makes target/xtask-venv), or `pip install cryptography`, or name an \
                 interpreter with --python",
                python.display()
            );
        }
        let dir = dir.join("fake-sap-ci");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let script = dir.join("fake_sap_ci.py");
        std::fs::write(&script, FAKE_SAP_CI)
            .with_context(|| format!("cannot write {}", script.display()))?;
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let secret_file = dir.join(format!("client-secret-{}", uuid::Uuid::new_v4().simple()));
        write_secret(&secret_file, secret.as_bytes())?;
        let flows: Vec<serde_json::Value> = ProcedureId::ALL
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": demo::tenant_flow(*p),
                    "version": "1.0.0",
                    "signer": {"rows": [], "payload_included": true},
                    "deployed": false,
                })
            })
            .collect();
        let config = dir.join(format!("config-{}.json", uuid::Uuid::new_v4().simple()));
        let text = serde_json::json!({
            "client_id": "rekey-demo",
            "client_secret": secret,
            "iflows": flows,
        });
        write_secret(&config, text.to_string().as_bytes())?;
        let mut child = std::process::Command::new(&python)
            .args(["-c", FAKE_WRAPPER])
            .arg(&script)
            .args(["--port", "0", "--config"])
            .arg(&config)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start the fake tenant with {}", python.display()))?;
        let stdin = child.stdin.take().context("the fake's standard input")?;
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().context("the fake's standard output")?)
            .read_line(&mut ready)
            .context("the fake tenant did not start")?;
        let line: serde_json::Value = serde_json::from_str(&ready)
            .with_context(|| format!("the fake tenant did not start: {ready:?}"))?;
        let field = |k: &str| {
            line[k]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("the fake tenant's start line has no {k}: {ready:?}"))
        };
        let url = field("url")?;
        Ok(FakeTenant {
            config: rekey_service::sapci::SapCiConfig {
                url: url.clone(),
                token_url: field("tokenurl")?,
                client_id: "rekey-demo".into(),
                client_secret: rekey_service::sapci::SecretSource::File(secret_file),
                timeout: std::time::Duration::from_secs(30),
                attempts: 5,
                country: Some("DE".into()),
            },
            url,
            _child: child,
            _stdin: stdin,
        })
    }
}

fn is_softhsm(module: &Path) -> bool {
    module
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("softhsm"))
}

/// Runs this demo again as a child whose `SOFTHSM2_CONF` keeps SoftHSM2's tokens in the demo's
/// data directory, so the demo leaves nothing in the system's token directory.
fn rerun_with_softhsm_conf(dir: &Path) -> Result<ExitCode> {
    let conf_dir = dir.join("softhsm");
    let conf = rekey_pkcs11::softhsm_conf(&conf_dir).with_context(|| {
        format!(
            "cannot write a SoftHSM2 configuration in {}",
            conf_dir.display()
        )
    })?;
    let exe = std::env::current_exe().context("cannot find rekey's own executable")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !args.iter().any(|a| a == "--data-dir") {
        args.push("--data-dir".into());
        args.push(dir.into());
    }
    let status = std::process::Command::new(exe)
        .args(args)
        .env("SOFTHSM2_CONF", &conf)
        .env(DEMO_SOFTHSM_ENV, "1")
        .status()
        .context("cannot run the demo with its SoftHSM2 configuration")?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}

/// Initialises a fresh token for the demo (random PINs; the user PIN in a 0600 file of the
/// data directory) and returns how to reach it. A data directory whose demo already made a
/// token keeps using it (its keys are there).
fn fresh_token(dir: &Path, module: PathBuf) -> Result<rekey_pkcs11::Pkcs11Config> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let remembered = dir.join("demo-token.label");
    if let Ok(label) = std::fs::read_to_string(&remembered) {
        let label = label.trim().to_string();
        return Ok(rekey_pkcs11::Pkcs11Config {
            module,
            pin: rekey_pkcs11::PinSource::File(dir.join(format!("{label}.pin"))),
            token_label: label,
        });
    }
    let label = format!(
        "rekey-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let user_pin = uuid::Uuid::new_v4().simple().to_string();
    let so_pin = uuid::Uuid::new_v4().simple().to_string();
    rekey_pkcs11::init_token(&module, &so_pin, &user_pin, &label)
        .with_context(|| format!("cannot initialise a demo token in {}", module.display()))?;
    let pin_file = dir.join(format!("{label}.pin"));
    write_secret(&pin_file, user_pin.as_bytes())?;
    std::fs::write(&remembered, &label)
        .with_context(|| format!("cannot write {}", remembered.display()))?;
    Ok(rekey_pkcs11::Pkcs11Config {
        module,
        token_label: label,
        pin: rekey_pkcs11::PinSource::File(pin_file),
    })
}

/// Writes a new file readable by its owner only.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What the demo shows about a token tenant's keys.
struct TokenClaims {
    summary: String,
    failures: Vec<String>,
}

/// Checks that every key of the demo tenant is on the token, sensitive and never extractable,
/// that the database holds no private-key bytes for it, and that the token holds nothing the
/// database does not know.
async fn token_claims(
    service: &Service,
    config: &rekey_pkcs11::Pkcs11Config,
) -> Result<TokenClaims> {
    let store = service.store();
    let tenant = demo::tenant(service).await?;
    let rec = service.reconcile_tokens(tenant).await?;
    let keystore = rekey_pkcs11::Pkcs11Keystore::open(config)?;
    let refs = rekey_store::keystore::token_refs(store.db(), tenant).await?;
    let mut failures = Vec::new();
    for r in &refs {
        let a = keystore
            .attributes(&r.id)
            .with_context(|| format!("key object {} of alias {}", r.id, r.alias))?;
        if !a.sensitive || a.extractable || !a.never_extractable {
            failures.push(format!(
                "the key of alias {} on the token is not sensitive and never extractable",
                r.alias
            ));
        }
    }
    let in_database = rekey_store::keystore::sealed_key_count(store.db(), tenant).await?;
    if in_database > 0 {
        failures.push(format!(
            "the database holds {in_database} encrypted private key(s) of the token tenant"
        ));
    }
    if !rec.destroyed.is_empty() || !rec.missing.is_empty() {
        failures.push(format!(
            "token and database disagreed: destroyed {:?}, missing {:?}",
            rec.destroyed, rec.missing
        ));
    }
    Ok(TokenClaims {
        summary: format!(
            "keystore: PKCS#11 token {:?} in {}: {} key objects, each sensitive and never extractable; no private-key bytes in the database",
            config.token_label,
            config.module.display(),
            refs.len()
        ),
        failures,
    })
}

/// Opens (creating) the demo's SQLite database and key-encryption key in `dir`.
async fn open(dir: &Path) -> Result<Store> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kek_path = dir.join("kek.key");
    let kek = if kek_path.exists() {
        Kek::from_file(&kek_path)?
    } else {
        Kek::generate_file(&kek_path)?
    };
    let url = format!("sqlite://{}?mode=rwc", dir.join("rekey.db").display());
    Ok(Store::open(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?
        .with_kek(kek))
}

fn render(runs: &[ProcedureRun]) -> String {
    let mut out = String::new();
    for r in runs {
        let _ = writeln!(out, "\n== {} (renewal {})", r.procedure, r.renewal);
        let _ = writeln!(
            out,
            "  {:<6} {:<28} {:<22} {:<36} emails",
            "seed", "step", "role", "by"
        );
        for t in &r.timeline {
            let emails = if t.emails.is_empty() {
                "-".to_string()
            } else {
                t.emails.join(", ")
            };
            let _ = writeln!(
                out,
                "  {:<6} {:<28} {:<22} {:<36} {}",
                t.seed_step,
                t.step,
                t.role.as_str(),
                t.performed_by,
                emails
            );
        }
        for p in r.probes.iter().filter(|p| p.receiver_verdict != "accepted") {
            let _ = writeln!(
                out,
                "  probe {} after {} rejected{}: {}",
                p.seq,
                p.after_step.as_deref().unwrap_or("start"),
                if p.in_downtime_window {
                    " inside the agreed window"
                } else {
                    ""
                },
                p.reason.as_deref().unwrap_or("")
            );
        }
    }
    out.push('\n');
    for r in runs {
        let _ = write!(
            out,
            "{}: {} probes, {} rejected",
            r.procedure,
            r.probes.len(),
            r.rejected()
        );
        if let Some((a, b)) = r.downtime {
            let _ = write!(
                out,
                " (all inside the agreed window; downtime {} min)",
                (b - a).num_minutes()
            );
        }
        if !r.failures.is_empty() {
            let _ = write!(out, " — {} claim(s) FAILED", r.failures.len());
        }
        out.push('\n');
    }
    out
}

/// Writes DIR/<procedure>/probes.jsonl and timeline.json.
fn write_evidence(dir: &Path, runs: &[ProcedureRun]) -> Result<()> {
    for r in runs {
        let d = dir.join(r.procedure.as_str());
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let mut lines = String::new();
        for p in &r.probes {
            lines.push_str(&serde_json::to_string(p)?);
            lines.push('\n');
        }
        std::fs::write(d.join("probes.jsonl"), lines)
            .with_context(|| format!("cannot write {}", d.display()))?;
        std::fs::write(
            d.join("timeline.json"),
            serde_json::to_string_pretty(&r.timeline)?,
        )
        .with_context(|| format!("cannot write {}", d.display()))?;
    }
    Ok(())
}
