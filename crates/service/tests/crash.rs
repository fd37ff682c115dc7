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
//!
//! On a tenant whose keys are on a PKCS#11 token (SoftHSM2, a fresh token per run), every
//! procedure crashes at every fail point, the token calls' included (before and after a key
//! is generated on the token, before an orphan is destroyed); afterwards the token must hold
//! exactly the keys the database refers to, none missing and none left over. SoftHSM2 reads
//! `SOFTHSM2_CONF` when it is loaded, so every process touching the token is a child started
//! with it.

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
/// Set (to the token's label) when the tenant's keys are on a SoftHSM2 token; the user PIN
/// is in `token.pin` in the run's folder.
const TOKEN_ENV: &str = "REKEY_CRASH_TOKEN";
/// Set when the child only reports the outcome (`outcome.json`), for a token run.
const REPORT_ENV: &str = "REKEY_CRASH_REPORT";

fn pkcs11_module() -> PathBuf {
    std::env::var_os("REKEY_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// Where one run keeps its data: a folder (key-encryption key, set-up) and a database.
struct Run {
    dir: tempfile::TempDir,
    url: Option<String>,
    _db: Option<rekey_testdb::TestDb>,
    /// SoftHSM2's configuration, for a run whose keys are on a token.
    softhsm_conf: Option<PathBuf>,
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
            softhsm_conf: None,
        })
    }

    /// A fresh run on SQLite whose tenant keeps its keys on a fresh SoftHSM2 token.
    fn on_token(rt: &tokio::runtime::Runtime) -> Result<Run, BoxError> {
        let mut run = Run::new(rt, None)?;
        let conf = rekey_pkcs11::softhsm_conf(&run.path().join("softhsm"))?;
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "crash"])
            .args(["--so-pin", "so-secret", "--pin", "user-secret"])
            .env("SOFTHSM2_CONF", &conf)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "softhsm2-util --init-token: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        std::fs::write(run.path().join("token.pin"), "user-secret")?;
        run.softhsm_conf = Some(conf);
        Ok(run)
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
    let store = open_at(dir, url.as_deref()).await?;
    let Ok(label) = std::env::var(TOKEN_ENV) else {
        return Ok(store);
    };
    // The demo tenant's keys are on the token from its first key on.
    let tenant = rekey_service::demo::tenant(&service(store.clone())).await?;
    let keystore = rekey_pkcs11::Pkcs11Keystore::open(&rekey_pkcs11::Pkcs11Config {
        module: pkcs11_module(),
        token_label: label,
        pin: rekey_pkcs11::PinSource::File(dir.join("token.pin")),
    })?;
    Ok(store.with_backend(tenant, std::sync::Arc::new(keystore)))
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
    if std::env::var_os(REPORT_ENV).is_some() {
        let o = outcome_of(store).await?;
        std::fs::write(dir.join("outcome.json"), serde_json::to_vec(&o)?)?;
        return Ok(());
    }
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
                tenant_flow: None,
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
                waited += s.lease();
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
    .env_remove(URL_ENV)
    .env_remove(TOKEN_ENV)
    .env_remove(REPORT_ENV);
    if let Some(u) = &run.url {
        cmd.env(URL_ENV, u);
    }
    if let Some(conf) = &run.softhsm_conf {
        cmd.env("SOFTHSM2_CONF", conf).env(TOKEN_ENV, "crash");
    }
    if failpoint == Some(REPORT) {
        cmd.env(REPORT_ENV, "1");
    } else if let Some(f) = failpoint {
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

/// Passed to [`child`] instead of a fail point: report the outcome, change nothing.
const REPORT: &str = "report";

/// What must be identical between an uninterrupted run and a crashed-and-resumed one.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// For a token tenant, after a last reconciliation: key objects on the token for the
    /// tenant, and rows whose key object is missing (must be none).
    token: Option<(usize, Vec<String>)>,
}

async fn outcome(run: &Run) -> Result<Outcome, BoxError> {
    if run.softhsm_conf.is_some() {
        // Only a child started with SOFTHSM2_CONF can reach the token.
        let p = ProcedureId::DualTrust; // unused by the report
        assert!(!child(run, p, Some(REPORT))?, "report child");
        return Ok(serde_json::from_slice(&std::fs::read(
            run.path().join("outcome.json"),
        )?)?);
    }
    let store = open_at(run.path(), run.url.as_deref()).await?;
    outcome_of(store).await
}

async fn outcome_of(store: Store) -> Result<Outcome, BoxError> {
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
        token: None,
    };
    let out = if store.backend(tenant).kind() == "pkcs11" {
        let rec = s.reconcile_tokens(tenant).await?;
        let refs = rekey_store::keystore::token_refs(store.db(), tenant).await?;
        assert_eq!(
            rekey_store::keystore::sealed_key_count(store.db(), tenant).await?,
            0,
            "no private-key bytes in the database of a token tenant"
        );
        let objects = store
            .backend(tenant)
            .objects()?
            .into_iter()
            .filter(|o| rekey_service::tokens::belongs_to(&o.id, tenant))
            .count();
        assert_eq!(objects, refs.len(), "one key object per row on the token");
        Outcome {
            token: Some((objects, rec.missing)),
            ..out
        }
    } else {
        out
    };
    let _ = store.close().await;
    Ok(out)
}

/// Crashes `p` at the chosen points (all when `sample` is `None`, else about `sample` spread
/// over each point's range), resumes, and compares with an uninterrupted run.
fn crash_matrix(p: ProcedureId, sample: Option<u64>) -> Result<usize, BoxError> {
    let mut n = crash_matrix_on(p, sample, None, false)?;
    match std::env::var(rekey_testdb::PG_ENV) {
        Ok(server) => n += crash_matrix_on(p, sample, Some(&server), false)?,
        Err(_) => eprintln!("skipping PostgreSQL: {} not set", rekey_testdb::PG_ENV),
    }
    Ok(n)
}

fn crash_matrix_on(
    p: ProcedureId,
    sample: Option<u64>,
    server: Option<&str>,
    token: bool,
) -> Result<usize, BoxError> {
    let backend = match (server, token) {
        (_, true) => "sqlite, keys on a PKCS#11 token",
        (Some(_), false) => "postgres",
        (None, false) => "sqlite",
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let new_run = || {
        if token {
            Run::on_token(&rt)
        } else {
            Run::new(&rt, server)
        }
    };
    let reference = new_run()?;
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
    if token {
        assert_eq!(
            want.token.as_ref().map(|t| t.1.len()),
            Some(0),
            "{p}: keys missing"
        );
    }
    let mut points = Vec::new();
    for (point, n) in &counts {
        // The SAP Cloud Integration points are reached only on such a tenant; its crash matrix
        // runs through the binary against the fake tenant (tests/sap_ci.rs).
        if *n == 0 && point.contains("remote") {
            continue;
        }
        if *n == 0 && (!token || *point == "before-token-destroy") && point.contains("token") {
            // The embedded keystore makes no token calls; an uninterrupted renewal leaves no
            // orphan on the token to destroy (crashed runs do, and their reconciliation is
            // checked by the outcome).
            continue;
        }
        assert!(*n > 0, "{p}: fail point {point} never reached");
        let step = match sample {
            // Around a token call, every occurrence.
            _ if point.contains("token") => 1,
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
        let run = new_run()?;
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

#[test]
fn a_token_tenant_survives_a_crash_around_every_token_call() -> Result<(), BoxError> {
    if !pkcs11_module().exists() {
        assert!(
            std::env::var("CI").is_err(),
            "the PKCS#11 module {} is missing (cargo xtask test installs softhsm2)",
            pkcs11_module().display()
        );
        eprintln!(
            "skipping: no PKCS#11 module at {}",
            pkcs11_module().display()
        );
        return Ok(());
    }
    for p in ProcedureId::ALL {
        // Every token fail point at every occurrence; the others sampled (they are crashed
        // at every occurrence on the embedded keystore above).
        let sample = if p == ProcedureId::DualTrust {
            None
        } else {
            Some(3)
        };
        let n = crash_matrix_on(p, sample, None, true)?;
        eprintln!("{p} on a token: crashed and resumed at {n} points");
    }
    Ok(())
}
