//! Crash safety: a child process (this test binary, re-run as `crash_child`) drives a renewal
//! on a SQLite file with `REKEY_FAILPOINT` set and aborts — as abruptly as `kill -9` for the
//! database — after an effect, before a commit, or after a commit; a second child resumes
//! from whatever was committed and finishes the renewal. Afterwards keystore, signer table,
//! recorded trust, outbox and audit log must be exactly what an uninterrupted run produces:
//! no step applied twice, no email lost, the audit chain intact.
//!
//! Coverage: every fail point of `dual-trust` (every effect, every commit); for the other
//! procedures a spread sample of about ten points each (set `REKEY_CRASH_FULL=1` for every
//! point of every procedure; `cargo xtask test` does). The whole matrix runs on SQLite and,
//! when `REKEY_TEST_POSTGRES_URL` is set, again on a fresh PostgreSQL database per crash.

mod scheduler_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Duration;
use rekey_crypto::{ReceiverProfile as Profile, receiver_verdict};
use rekey_engine::{ProcedureId, RenewalStatus};
use rekey_model::{ReceiverId, TenantId};
use rekey_service::{failpoint, scheduler};
use rekey_store::{Kek, Store};
use scheduler_common::*;

const DIR_ENV: &str = "REKEY_CRASH_DIR";
const PROC_ENV: &str = "REKEY_CRASH_PROCEDURE";
/// The database the child works on; a SQLite file in the run's folder when unset.
const URL_ENV: &str = "REKEY_CRASH_DATABASE_URL";

/// Where one run keeps its data: a folder (key-encryption key, set-up) and a database.
struct Run {
    dir: tempfile::TempDir,
    url: Option<String>,
    _db: Option<rekey_testdb::TestDb>,
}

impl Run {
    /// A fresh run on SQLite, or on a fresh PostgreSQL database of `server`.
    fn new(rt: &tokio::runtime::Runtime, server: Option<&str>) -> Result<Run, BoxError> {
        let dir = tempfile::tempdir()?;
        let db = match server {
            Some(s) => Some(rt.block_on(rekey_testdb::TestDb::postgres(s))?),
            None => None,
        };
        Ok(Run {
            dir,
            url: db.as_ref().map(|d| d.url.clone()),
            _db: db,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn database_url(dir: &Path, url: Option<&str>) -> String {
    match url {
        Some(u) => u.to_string(),
        None => format!("sqlite://{}?mode=rwc", dir.join("rekey.db").display()),
    }
}

async fn open(dir: &Path) -> Result<Store, BoxError> {
    let url = std::env::var(URL_ENV).ok();
    open_at(dir, url.as_deref()).await
}

async fn open_at(dir: &Path, url: Option<&str>) -> Result<Store, BoxError> {
    let kek_path = dir.join("kek.key");
    let kek = if kek_path.exists() {
        Kek::from_file(&kek_path)?
    } else {
        Kek::generate_file(&kek_path)?
    };
    Ok(Store::open(&database_url(dir, url)).await?.with_kek(kek))
}

/// The child: sets up (once), starts the renewal (unless one exists), then does each due step
/// at the renewal's last change + 10 minutes, so a resumed run repeats the same clock.
/// Writes how often each fail point was reached to `counts.json`.
#[tokio::test]
async fn crash_child() -> Result<(), BoxError> {
    let (Ok(dir), Ok(p)) = (std::env::var(DIR_ENV), std::env::var(PROC_ENV)) else {
        return Ok(()); // only meaningful as a child of the tests below
    };
    let dir = PathBuf::from(dir);
    let p: ProcedureId = p.parse()?;
    let store = open(&dir).await?;
    let s = service(store.clone());
    let setup_file = dir.join("setup.json");
    let (tenant, receiver, alias) = if setup_file.exists() {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&setup_file)?)?;
        (
            v["tenant"].as_str().ok_or("tenant")?.parse()?,
            v["receiver"].as_str().ok_or("receiver")?.parse()?,
            rekey_model::Alias::parse(v["alias"].as_str().ok_or("alias")?)?,
        )
    } else {
        let st = setup(&store, p, t0()).await?;
        let v = serde_json::json!({
            "tenant": st.tenant.as_uuid(),
            "receiver": st.receiver.as_uuid(),
            "alias": st.alias,
        });
        std::fs::write(&setup_file, v.to_string())?;
        (st.tenant.as_uuid(), st.receiver.as_uuid(), st.alias)
    };
    let id = match s.renewals(None).await?.first() {
        Some(r) => r.id,
        None => {
            let st = Setup {
                tenant: TenantId::from_uuid(tenant),
                receiver: ReceiverId::from_uuid(receiver),
                receiver_name: rekey_model::ReceiverName::parse("unused")?,
                flow: rekey_model::FlowName::parse("unused")?,
                step: rekey_model::StepName::parse("unused")?,
                alias,
                procedure: p,
            };
            start(&s, &st, false, t0()).await?.renewal.id
        }
    };
    // A timer claimed by a process that then crashed stays leased until its lease runs out:
    // when a pass finds nothing to fire, let that much time pass.
    let mut waited = Duration::zero();
    for _ in 0..64 {
        let r = s.renewal(id).await?;
        if r.status != RenewalStatus::Running {
            break;
        }
        let now = r.updated_at + Duration::minutes(10);
        if r.due_steps().next().is_none() {
            let w = r.window.clone().ok_or("nothing due and no window")?;
            let report = scheduler::run_once(&s, now.max(w.start) + waited, "crash-child").await?;
            if report.fired == 0 {
                waited += scheduler::LEASE;
            }
        } else {
            perform_next(&s, &r, now).await?;
        }
    }
    let counts: BTreeMap<&str, u64> = failpoint::POINTS
        .iter()
        .map(|p| (*p, failpoint::seen(p)))
        .collect();
    std::fs::write(dir.join("counts.json"), serde_json::to_string(&counts)?)?;
    Ok(())
}

/// Runs the child on `dir`, with `failpoint` armed if given. Returns whether it aborted.
fn child(run: &Run, p: ProcedureId, failpoint: Option<&str>) -> Result<bool, BoxError> {
    let dir = run.path();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "crash_child",
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(DIR_ENV, dir)
    .env(PROC_ENV, p.as_str())
    .env_remove(failpoint::ENV)
    .env_remove(URL_ENV);
    if let Some(u) = &run.url {
        cmd.env(URL_ENV, u);
    }
    if let Some(f) = failpoint {
        cmd.env(failpoint::ENV, f);
    }
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if out.status.signal() == Some(6) {
            return Ok(true);
        }
    }
    Err(format!(
        "child {p} {failpoint:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .into())
}

/// What must be identical between an uninterrupted run and a crashed-and-resumed one.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: RenewalStatus,
    steps_done: usize,
    keystore_current: u64,
    keystore_total: u64,
    pending_keys: u64,
    pending_timers: u64,
    signer_rows: usize,
    trusted: usize,
    probe: String,
    /// Audit actions with their counts (a re-proposed window excluded).
    audit: BTreeMap<String, usize>,
    mail: Vec<Mail>,
}

async fn outcome(run: &Run) -> Result<Outcome, BoxError> {
    let store = open_at(run.path(), run.url.as_deref()).await?;
    let s = service(store.clone());
    let renewals = s.renewals(None).await?;
    assert_eq!(renewals.len(), 1, "exactly one renewal");
    let r = &renewals[0];
    let tenant = r.tenant;
    store.verify_audit().await?;
    let db = store.db();
    let counts = rekey_store::testing::counts(db).await?;
    let usage = store.alias_usage(tenant, &r.alias).await?;
    let usage = match usage.first() {
        Some(u) => u.clone(),
        None => {
            // dual-signature moved the signer step to the new alias.
            let a = r.new_alias.clone().ok_or("no alias in use")?;
            store
                .alias_usage(tenant, &a)
                .await?
                .first()
                .cloned()
                .ok_or("new alias not in use")?
        }
    };
    let step = store.step(tenant, &usage.flow, &usage.step).await?;
    let receiver = store.receiver_by_id(r.receiver).await?;
    let signed = store
        .sign_for_step(tenant, &usage.flow, &usage.step, b"probe", t0())
        .await?;
    let trusted: Vec<_> = receiver
        .trusted
        .iter()
        .map(|t| t.certificate.clone())
        .collect();
    let (verdict, v) = receiver_verdict(
        &signed.der,
        None,
        &trusted,
        &Profile {
            verifies_multiple_keys: receiver.profile.verifies_multiple_keys,
            accepts_multiple_signatures: receiver.profile.accepts_multiple_signatures,
        },
        t0(),
    )?;
    let new_only = trusted.len() == 1 && r.new_cert == Some(trusted[0].fingerprint());
    let probe = format!(
        "accepted={} signers={} trusts-new-only={new_only}",
        verdict.is_accepted(),
        v.signers.len()
    );
    let mut audit = BTreeMap::new();
    for e in store.audit_entries(0, 1_000_000).await? {
        if e.action != "window.propose" {
            *audit.entry(e.action).or_insert(0) += 1;
        }
    }
    let steps_done = r
        .steps
        .iter()
        .filter(|s| matches!(s.status, rekey_engine::StepStatus::Done { .. }))
        .count();
    let out = Outcome {
        status: r.status,
        steps_done,
        keystore_current: counts.keystore_current,
        keystore_total: counts.keystore_total,
        pending_keys: counts.pending_keys,
        pending_timers: counts.pending_timers,
        signer_rows: step.rows.len(),
        trusted: trusted.len(),
        probe,
        audit,
        mail: mails(&store, r.id).await?,
    };
    let _ = store.close().await;
    Ok(out)
}

/// Crashes `p` at the chosen points (all when `sample` is `None`, else about `sample` spread
/// over each point's range), resumes, and compares with an uninterrupted run.
fn crash_matrix(p: ProcedureId, sample: Option<u64>) -> Result<usize, BoxError> {
    let mut n = crash_matrix_on(p, sample, None)?;
    match std::env::var(rekey_testdb::PG_ENV) {
        Ok(server) => n += crash_matrix_on(p, sample, Some(&server))?,
        Err(_) => eprintln!("skipping PostgreSQL: {} not set", rekey_testdb::PG_ENV),
    }
    Ok(n)
}

fn crash_matrix_on(
    p: ProcedureId,
    sample: Option<u64>,
    server: Option<&str>,
) -> Result<usize, BoxError> {
    let backend = if server.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reference = Run::new(&rt, server)?;
    assert!(
        !child(&reference, p, None)?,
        "{p} [{backend}]: reference run"
    );
    let counts: BTreeMap<String, u64> =
        serde_json::from_slice(&std::fs::read(reference.path().join("counts.json"))?)?;
    let want = rt.block_on(outcome(&reference))?;
    assert_eq!(want.status, RenewalStatus::Completed, "{p}");
    assert_eq!(
        want.probe, "accepted=true signers=1 trusts-new-only=true",
        "{p}"
    );
    let mut points = Vec::new();
    for (point, n) in &counts {
        assert!(*n > 0, "{p}: fail point {point} never reached");
        let step = match sample {
            Some(k) if *n > k => n.div_ceil(k),
            _ => 1,
        };
        let mut i = 1;
        while i <= *n {
            points.push(format!("{point}:{i}"));
            i += step;
        }
        if !points.contains(&format!("{point}:{n}")) {
            points.push(format!("{point}:{n}"));
        }
    }
    for fp in &points {
        let run = Run::new(&rt, server)?;
        assert!(
            child(&run, p, Some(fp))?,
            "{p} [{backend}]: the child did not crash at {fp}"
        );
        assert!(!child(&run, p, None)?, "{p} [{backend}]: resume after {fp}");
        let got = rt.block_on(outcome(&run))?;
        assert_eq!(got, want, "{p} [{backend}]: after a crash at {fp}");
    }
    Ok(points.len())
}

fn full() -> bool {
    std::env::var("REKEY_CRASH_FULL").is_ok_and(|v| v == "1")
}

#[test]
fn dual_trust_survives_a_crash_at_every_fail_point() -> Result<(), BoxError> {
    let n = crash_matrix(ProcedureId::DualTrust, None)?;
    eprintln!("dual-trust: crashed and resumed at {n} points");
    Ok(())
}

#[test]
fn the_other_procedures_survive_crashes_at_sampled_fail_points() -> Result<(), BoxError> {
    for p in [
        ProcedureId::DualSignature,
        ProcedureId::PreparedSecondAlias,
        ProcedureId::DowntimeWindow,
    ] {
        let n = crash_matrix(p, if full() { None } else { Some(4) })?;
        eprintln!("{p}: crashed and resumed at {n} points");
    }
    Ok(())
}
