//! `rekey demo`: every procedure end to end on an embedded database, the roles played
//! automatically, a reference receiver judging a probe after every step, and the evidence
//! files of DEMO-EVIDENCE.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
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
}

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
    rekey_crypto::KeyBits::try_from(args.bits).context("--bits")?;
    let dir = match &global.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("rekey-demo-{}", uuid::Uuid::new_v4().simple())),
    };
    // Only the clock-skew allowance is taken from the configuration: the demo keeps its own
    // database and sends no mail.
    let skew = crate::config::Settings::load(global)?.renewal.clock_skew;
    let runs = block_on(async {
        let store = open(&dir).await?;
        let service = Service::new(store.clone(), Catalog::builtin()?).with_clock_skew(skew);
        // The wall clock is read once, here; from then on the demo runs on its simulated clock,
        // which is the engine's clock for every step, key and probe.
        let start = match args.start {
            Some(t) => t,
            None => (Utc::now() - chrono::Duration::days(1))
                .duration_trunc(chrono::Duration::minutes(1))
                .context("start time")?,
        };
        let runs = demo::run(
            &service,
            &DemoOptions {
                procedures,
                bits: args.bits,
                start,
            },
        )
        .await?;
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
