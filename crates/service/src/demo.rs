//! `rekey demo`: every procedure end to end on one store, the three roles played by scripted
//! users through the same [`Service`] calls a person's actions make, and a reference receiver
//! (real CMS verification under the receiver's confirmed trust and profile) judging a probe
//! message signed by the signer step after every step.

use chrono::{DateTime, Duration, Utc};
use rekey_crypto::{KeyBits, ReceiverProfile as Profile, receiver_verdict, self_signed, to_base64};
use rekey_engine::{Event, ProcedureId, Renewal, Role, StepKind, StepStatus, TimerKind};
use rekey_model::{Alias, Email, FlowName, Grant, ReceiverName, StepName, TenantId, TenantName};
use rekey_store::{ReceiverProfile, SignerParams, StepOptions};
use serde::Serialize;
use uuid::Uuid;

use crate::sapci::{KeyPairRequest, SapCiClient};
use crate::{Result, Service, ServiceError, StartRequest};

/// Who plays the tenant administrator.
pub const TENANT_ADMIN: &str = "tenant-admin@tenant.example";
/// Who plays the integration developer.
pub const DEVELOPER: &str = "developer@tenant.example";

/// The receiver administrator of one procedure's receiver.
pub fn receiver_admin(p: ProcedureId) -> String {
    format!("admin@{p}.receiver.example")
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Procedures to run, in order.
    pub procedures: Vec<ProcedureId>,
    /// RSA size for every key.
    pub bits: u32,
    /// The simulated clock's start.
    pub start: DateTime<Utc>,
}

/// Where the demo tenant's keys live and who signs its probes.
#[derive(Debug, Clone, Default)]
pub enum DemoTenant {
    /// rekey's own keystore (embedded, or a PKCS#11 token): probes are signed by rekey as the
    /// signer step is configured.
    #[default]
    Own,
    /// An SAP Cloud Integration tenant configured on the service for the demo tenant — in the
    /// demo, the FAKE tenant of `tests/fake-sap-ci`, reached at `control` (its `/fake` root)
    /// for what the tenant's web UI and runtime do: each procedure's key is made on the tenant,
    /// its integration flow ([`tenant_flow`]) gets the signer rows and is deployed, and every
    /// probe is signed by the tenant's runtime from the deployed flow and the current keystore.
    SapCiFake {
        /// The fake's control root, e.g. `http://127.0.0.1:PORT/fake`.
        control: String,
    },
}

/// The integration flow on an SAP Cloud Integration tenant that signs for procedure `p` in
/// the demo.
pub fn tenant_flow(p: ProcedureId) -> String {
    format!("Rekey_Demo_{}", p.as_str().replace('-', "_"))
}

/// The receiver's state when a probe arrived.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReceiver {
    /// Profile flag.
    pub verifies_multiple_keys: bool,
    /// Profile flag.
    pub accepts_multiple_signatures: bool,
    /// Certificates it trusted, PEM.
    pub trusted_certificates_pem: Vec<String>,
}

/// One probe, as `probes.jsonl` records it (see DEMO-EVIDENCE.md).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    /// 0, 1, 2, …
    pub seq: usize,
    /// Workflow step just completed (none before the first).
    pub after_step: Option<String>,
    /// Its seed step number.
    pub seed_step: Option<String>,
    /// When it was signed (simulated clock).
    pub at: DateTime<Utc>,
    /// The payload.
    pub content_base64: String,
    /// ContentInfo(SignedData), DER, Base64.
    pub signed_data_der_base64: String,
    /// SignerInfos in it.
    pub signer_count: usize,
    /// The receiver when it arrived.
    pub receiver: ProbeReceiver,
    /// `accepted` or `rejected`.
    pub receiver_verdict: String,
    /// True only between the two exchanges of `downtime-window`.
    pub in_downtime_window: bool,
    /// Why the reference receiver rejected it (not part of the evidence format's claims).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One completed step, as `timeline.json` records it.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// Workflow step id.
    pub step: String,
    /// Seed step number.
    pub seed_step: String,
    /// Owning role.
    pub role: Role,
    /// Kind of step.
    pub kind: StepKind,
    /// User email or `rekey`.
    pub performed_by: String,
    /// When it became due.
    pub started_at: DateTime<Utc>,
    /// When it was done.
    pub completed_at: DateTime<Utc>,
    /// Recipients notified by it.
    pub emails: Vec<String>,
}

/// One procedure's run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcedureRun {
    /// The procedure.
    pub procedure: ProcedureId,
    /// The renewal.
    pub renewal: Uuid,
    /// Completed steps in order.
    pub timeline: Vec<TimelineEntry>,
    /// Probe messages.
    pub probes: Vec<ProbeRecord>,
    /// Measured downtime, for `downtime-window`.
    pub downtime: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Claims of DEMO-EVIDENCE.md that do not hold (empty when all hold).
    pub failures: Vec<String>,
}

impl ProcedureRun {
    /// Probes the reference receiver rejected.
    pub fn rejected(&self) -> usize {
        self.probes
            .iter()
            .filter(|p| p.receiver_verdict != "accepted")
            .count()
    }
}

/// What the demo sets up for one procedure (see [`prepare`]).
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `demo` tenant.
    pub tenant: TenantId,
    /// The procedure's receiver.
    pub receiver: rekey_model::ReceiverId,
    /// Its name.
    pub receiver_name: ReceiverName,
    /// The flow holding the signer step.
    pub flow: FlowName,
    /// The signer step listing the alias.
    pub step: StepName,
    /// The alias to renew.
    pub alias: Alias,
    /// The procedure the receiver's profile was chosen for.
    pub procedure: ProcedureId,
    /// The SAP Cloud Integration tenant whose runtime signs the probes, and its flow.
    pub tenant_flow: Option<(String, String)>,
}

impl Setup {
    /// The request that starts this set-up's procedure on its alias with a new `bits`-bit key
    /// (self-signed, key generation awaiting the tenant administrator's approval).
    pub fn start_request(&self, bits: u32) -> StartRequest {
        StartRequest {
            tenant: self.tenant,
            receiver: self.receiver,
            alias: self.alias.clone(),
            new_alias: None,
            procedure: Some(self.procedure),
            bits,
            ca_signed: false,
            auto_approve: false,
        }
    }
}

/// The demo's set-up for one procedure, without running it: the `demo` tenant with
/// [`TENANT_ADMIN`] and [`DEVELOPER`], a fresh alias with a key, a signer step listing it (and a
/// free second alias for `prepared-second-alias`), and a receiver with the procedure's profile
/// that trusts the key, administered by [`receiver_admin`]. The key's certificate is 30 days
/// from expiry at `now`.
pub async fn prepare(
    service: &Service,
    p: ProcedureId,
    bits: u32,
    now: DateTime<Utc>,
) -> Result<Setup> {
    prepare_with(service, p, bits, now - Duration::days(335), 365).await
}

/// [`prepare`] with a certificate valid `days` days from `not_before`: tests of what happens
/// as a key nears its expiry (the expiry watch) choose when that is.
pub async fn prepare_with(
    service: &Service,
    p: ProcedureId,
    bits: u32,
    not_before: DateTime<Utc>,
    days: u32,
) -> Result<Setup> {
    let tenant = tenant(service).await?;
    setup(service, tenant, p, bits, not_before, days, &DemoTenant::Own).await
}

fn input<T>(r: std::result::Result<T, rekey_model::InvalidInput>) -> Result<T> {
    r.map_err(|e| ServiceError::Input(e.to_string()))
}

async fn user(service: &Service, email: &str, grant: Grant) -> Result<()> {
    let store = service.store();
    let e = input(Email::parse(email))?;
    let u = match store.user_by_email(&e).await {
        Ok(u) => u,
        Err(rekey_store::StoreError::UnknownUser { .. }) => store.add_user(&e, "demo").await?,
        Err(other) => return Err(other.into()),
    };
    if !u.grants.contains(&grant) {
        store.grant(u.id, grant, "demo").await?;
    }
    Ok(())
}

/// The demo's tenant (`demo`), created with [`TENANT_ADMIN`] and [`DEVELOPER`] if it does not
/// exist yet.
pub async fn tenant(service: &Service) -> Result<TenantId> {
    let store = service.store();
    let name = input(TenantName::parse("demo"))?;
    let t = match store.tenant_by_name(&name).await {
        Ok(t) => t,
        Err(rekey_store::StoreError::UnknownTenant { .. }) => {
            store.create_tenant(&name, "demo").await?
        }
        Err(other) => return Err(other.into()),
    };
    user(service, TENANT_ADMIN, Grant::TenantAdmin { tenant: t.id }).await?;
    user(
        service,
        DEVELOPER,
        Grant::IntegrationDeveloper { tenant: t.id },
    )
    .await?;
    Ok(t.id)
}

/// A signer step listing the procedure's alias (and a free second alias for
/// `prepared-second-alias`), its key, and a receiver with the matching profile that trusts it.
async fn setup(
    service: &Service,
    tenant: TenantId,
    p: ProcedureId,
    bits: u32,
    not_before: DateTime<Utc>,
    days: u32,
    on: &DemoTenant,
) -> Result<Setup> {
    let store = service.store();
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let alias = format!("{p}-{run}");
    let a = input(Alias::parse(&alias))?;
    let cert = match on {
        DemoTenant::Own => {
            let subject = format!("CN={p} signer,O=rekey demo");
            let entry = service
                .add_key(
                    tenant,
                    &a,
                    crate::tokens::NewKey::Generate {
                        bits: KeyBits::try_from(bits)?,
                        certify: Box::new(move |key| self_signed(key, &subject, not_before, days)),
                    },
                    "demo",
                )
                .await?;
            entry.certificate().cloned().ok_or_else(|| {
                ServiceError::Corrupt(format!("entry {} has no certificate", entry.id))
            })?
        }
        DemoTenant::SapCiFake { .. } => {
            key_on_tenant(service, tenant, p, &a, bits, not_before, days).await?
        }
    };
    let flow = input(FlowName::parse(&format!("{p}-orders-{run}")))?;
    let step = input(StepName::parse("sign"))?;
    store.add_flow(tenant, &flow, "demo").await?;
    store
        .add_step(
            tenant,
            &flow,
            &step,
            StepOptions {
                detached: false,
                base64: false,
            },
            "demo",
        )
        .await?;
    let mut rows = vec![a.clone()];
    if p == ProcedureId::PreparedSecondAlias {
        rows.push(input(Alias::parse(&format!("{alias}-next")))?);
    }
    let tenant_flow = match on {
        DemoTenant::Own => None,
        DemoTenant::SapCiFake { control } => {
            let flow = deploy_signer(service, tenant, control, p, &rows, not_before).await?;
            Some((control.clone(), flow))
        }
    };
    for alias in rows {
        let params = SignerParams {
            alias,
            digest: rekey_crypto::DigestAlg::Sha256,
            include_certs: true,
            include_signing_time: true,
        };
        store.add_row(tenant, &flow, &step, &params, "demo").await?;
    }
    let profile = match p {
        ProcedureId::DualTrust => ReceiverProfile {
            verifies_multiple_keys: true,
            accepts_multiple_signatures: false,
        },
        ProcedureId::DualSignature | ProcedureId::PreparedSecondAlias => ReceiverProfile {
            verifies_multiple_keys: false,
            accepts_multiple_signatures: true,
        },
        ProcedureId::DowntimeWindow => ReceiverProfile {
            verifies_multiple_keys: false,
            accepts_multiple_signatures: false,
        },
    };
    let receiver_name = input(ReceiverName::parse(&format!("{p}-receiver-{run}")))?;
    let receiver = store
        .add_receiver(tenant, &receiver_name, profile, "demo")
        .await?;
    store
        .trust_certificate(tenant, &receiver_name, &cert, "demo")
        .await?;
    user(
        service,
        &receiver_admin(p),
        Grant::ReceiverAdmin {
            receiver: receiver.id,
        },
    )
    .await?;
    Ok(Setup {
        tenant,
        receiver: receiver.id,
        receiver_name,
        flow,
        step,
        alias: a,
        procedure: p,
        tenant_flow,
    })
}

/// The demo's SAP Cloud Integration client for `tenant`.
async fn client(service: &Service, tenant: TenantId) -> Result<std::sync::Arc<SapCiClient>> {
    service.sap_ci_client(tenant).await?.ok_or_else(|| {
        ServiceError::Input("the demo tenant is not an SAP Cloud Integration tenant".into())
    })
}

/// Plays the tenant administrator before the renewal: the key pair `alias` generated on the
/// tenant, valid `days` days from `not_before`, then recorded by a sync. Its certificate.
async fn key_on_tenant(
    service: &Service,
    tenant: TenantId,
    p: ProcedureId,
    alias: &Alias,
    bits: u32,
    not_before: DateTime<Utc>,
    days: u32,
) -> Result<rekey_crypto::Certificate> {
    client(service, tenant)
        .await?
        .generate_key_pair(&KeyPairRequest {
            alias: alias.to_string(),
            bits,
            common_name: format!("{p} signer"),
            organization: Some("rekey demo".into()),
            organization_unit: None,
            country: "DE".into(),
            not_before,
            not_after: not_before + Duration::days(i64::from(days)),
        })
        .await
        .map_err(ServiceError::SapCi)?;
    service.sync_sap_ci(tenant).await?;
    rekey_store::keystore::find_current(service.store().db(), tenant, alias)
        .await?
        .and_then(|e| e.certificate().cloned())
        .ok_or_else(|| ServiceError::Corrupt(format!("{alias} was not recorded by the sync")))
}

/// Plays the integration developer before the renewal: the signer step of the procedure's
/// flow on the tenant lists `rows` (in the tenant's web UI: the fake's control endpoint), and
/// the flow is deployed through the API and followed until it runs. The flow's id.
async fn deploy_signer(
    service: &Service,
    tenant: TenantId,
    control: &str,
    p: ProcedureId,
    rows: &[Alias],
    asked: DateTime<Utc>,
) -> Result<String> {
    let flow = tenant_flow(p);
    let body = serde_json::json!({
        "rows": rows.iter().map(|a| serde_json::json!({
            "alias": a.as_str(),
            "algorithm": "SHA256/RSA",
            "include_certificates": true,
            "include_signing_time": true,
        })).collect::<Vec<_>>(),
        "payload_included": true,
    });
    fake_call(
        &format!("{control}/iflows/{flow}/signer"),
        body.to_string().into_bytes(),
    )
    .await?;
    client(service, tenant)
        .await?
        .deploy_and_wait(
            &flow,
            asked,
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(60),
        )
        .await
        .map_err(ServiceError::SapCi)?;
    Ok(flow)
}

/// A POST to the fake tenant's control root or runtime; the answer's body.
async fn fake_call(url: &str, body: Vec<u8>) -> Result<Vec<u8>> {
    let answer = crate::http::request(
        crate::http::Method::Post,
        url,
        &[("content-type", "application/json".to_string())],
        body,
        std::time::Duration::from_secs(30),
    )
    .await
    .map_err(|e| {
        ServiceError::Input(format!(
            "the fake SAP Cloud Integration tenant at {url}: {e}"
        ))
    })?;
    if answer.status != 200 {
        return Err(ServiceError::Input(format!(
            "the fake SAP Cloud Integration tenant answered {} at {url}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    Ok(answer.body)
}

/// Signs a probe with the signer step as configured now and asks the reference receiver.
async fn probe(
    service: &Service,
    s: &Setup,
    seq: usize,
    after: Option<(&str, &str)>,
    at: DateTime<Utc>,
    in_window: bool,
) -> Result<ProbeRecord> {
    let store = service.store();
    let content = format!("probe {seq} of {}", s.alias).into_bytes();
    let der = match &s.tenant_flow {
        None => {
            store
                .sign_for_step(s.tenant, &s.flow, &s.step, &content, at)
                .await?
                .der
        }
        // What the tenant's deployed flow sends, signed by its runtime.
        Some((control, flow)) => {
            fake_call(&format!("{control}/runtime/{flow}/sign"), content.clone()).await?
        }
    };
    let receiver = store.receiver(s.tenant, &s.receiver_name).await?;
    let trusted: Vec<rekey_crypto::Certificate> = receiver
        .trusted
        .iter()
        .map(|t| t.certificate.clone())
        .collect();
    let profile = Profile {
        verifies_multiple_keys: receiver.profile.verifies_multiple_keys,
        accepts_multiple_signatures: receiver.profile.accepts_multiple_signatures,
    };
    // Received the moment it was signed, on the demo's clock.
    let (verdict, verification) = receiver_verdict(&der, None, &trusted, &profile, at)?;
    Ok(ProbeRecord {
        seq,
        after_step: after.map(|a| a.0.to_string()),
        seed_step: after.map(|a| a.1.to_string()),
        at,
        content_base64: to_base64(&content),
        signed_data_der_base64: to_base64(&der),
        signer_count: verification.signers.len(),
        receiver: ProbeReceiver {
            verifies_multiple_keys: profile.verifies_multiple_keys,
            accepts_multiple_signatures: profile.accepts_multiple_signatures,
            trusted_certificates_pem: trusted.iter().map(|c| c.to_pem()).collect(),
        },
        receiver_verdict: if verdict.is_accepted() {
            "accepted".into()
        } else {
            "rejected".into()
        },
        in_downtime_window: in_window,
        reason: match verdict {
            rekey_crypto::Verdict::Rejected { reason } => Some(reason),
            rekey_crypto::Verdict::Accepted { .. } => None,
        },
    })
}

/// Between the two exchanges of `downtime-window`: exactly one of them done, inside the window.
fn between_exchanges(r: &Renewal) -> bool {
    if r.procedure != ProcedureId::DowntimeWindow
        || !r.window.as_ref().is_some_and(|w| w.agreed && w.open)
    {
        return false;
    }
    let done = |id: &str| matches!(r.step(id).map(|s| &s.status), Some(StepStatus::Done { .. }));
    done("exchange-key-pair") != done("switch-receiver")
}

/// Runs one procedure from set-up to completion.
pub async fn run_procedure(
    service: &Service,
    p: ProcedureId,
    bits: u32,
    start: DateTime<Utc>,
) -> Result<ProcedureRun> {
    run_procedure_on(service, p, bits, start, &DemoTenant::Own).await
}

/// [`run_procedure`] with the keys where `on` says.
pub async fn run_procedure_on(
    service: &Service,
    p: ProcedureId,
    bits: u32,
    start: DateTime<Utc>,
    on: &DemoTenant,
) -> Result<ProcedureRun> {
    let mut clock = start;
    let tenant = tenant(service).await?;
    let s = setup(
        service,
        tenant,
        p,
        bits,
        clock - Duration::days(335),
        365,
        on,
    )
    .await?;
    let def = service.catalog().get(p).clone();
    let mut probes = vec![probe(service, &s, 0, None, clock, false).await?];
    let mut timeline = Vec::new();
    let mut outcome = service
        .start(s.start_request(bits), TENANT_ADMIN, clock)
        .await?;
    let id = outcome.renewal.id;
    // Every email queued so far, by step: a step's notices go out when it becomes due.
    let mut mail_by_step: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for _ in 0..64 {
        for m in &outcome.mail {
            if let Some(s) = &m.step {
                let list = mail_by_step.entry(s.clone()).or_default();
                if !list.contains(&m.to) {
                    list.push(m.to.clone());
                }
            }
        }
        // Record what the last call completed, with a probe after each step.
        for step_id in std::mem::take(&mut outcome.completed) {
            let Some(step) = def.step(&step_id) else {
                continue;
            };
            let Some(StepStatus::Done { since, at, by }) =
                outcome.renewal.step(&step_id).map(|s| s.status.clone())
            else {
                continue;
            };
            let emails = mail_by_step.get(&step_id).cloned().unwrap_or_default();
            timeline.push(TimelineEntry {
                step: step_id.clone(),
                seed_step: step.seed.clone(),
                role: step.role,
                kind: step.kind,
                performed_by: by,
                started_at: since,
                completed_at: at,
                emails,
            });
            let seq = probes.len();
            probes.push(
                probe(
                    service,
                    &s,
                    seq,
                    Some((&step_id, &step.seed)),
                    clock,
                    between_exchanges(&outcome.renewal),
                )
                .await?,
            );
        }
        let r = &outcome.renewal;
        if r.status != rekey_engine::RenewalStatus::Running {
            break;
        }
        clock += Duration::minutes(10);
        let Some(due) = r.due_steps().next().map(|s| s.id.clone()) else {
            // Nothing due: the renewal waits for its agreed window to open.
            let at = r
                .window
                .as_ref()
                .filter(|w| w.agreed && !w.open)
                .map(|w| w.start)
                .ok_or_else(|| {
                    ServiceError::Corrupt(format!("{p}: renewal is stuck with nothing due"))
                })?;
            clock = clock.max(at);
            outcome = service
                .act(
                    id,
                    rekey_engine::machine::SYSTEM,
                    Event::Timer {
                        step: None,
                        kind: TimerKind::WindowOpen,
                    },
                    clock,
                )
                .await?;
            continue;
        };
        let step = def
            .step(&due)
            .ok_or_else(|| ServiceError::Corrupt(format!("unknown step {due}")))?
            .clone();
        let who = |role: Role| match role {
            Role::TenantAdmin => TENANT_ADMIN.to_string(),
            Role::IntegrationDeveloper => DEVELOPER.to_string(),
            Role::ReceiverAdmin => receiver_admin(p),
            // Refused when the procedures are read: no step is a signer's.
            Role::Signer => String::new(),
        };
        outcome = match (step.kind, step.action, step.task) {
            (StepKind::Agreement, _, _) => {
                let start = clock + Duration::hours(1);
                let proposed = service
                    .act(
                        id,
                        &who(step.role),
                        Event::ProposeWindow {
                            start,
                            end: start + Duration::hours(1),
                        },
                        clock,
                    )
                    .await?;
                clock += Duration::minutes(10);
                let other = step.with_role.unwrap_or(Role::ReceiverAdmin);
                let mut accepted = service
                    .act(id, &who(other), Event::AcceptWindow, clock)
                    .await?;
                accepted.mail.splice(0..0, proposed.mail);
                accepted
            }
            (_, Some(_), _) => {
                service
                    .act(
                        id,
                        &who(step.role),
                        Event::Approve { step: due.clone() },
                        clock,
                    )
                    .await?
            }
            (_, _, Some(_)) => {
                // The receiver administrator reads the fingerprint off the certificate installed.
                let fp = r.new_cert.map(|c| c.to_string());
                service
                    .act(
                        id,
                        &who(step.role),
                        crate::complete_event(due.clone(), fp.as_deref())?,
                        clock,
                    )
                    .await?
            }
            _ => {
                return Err(ServiceError::Corrupt(format!(
                    "step {due} is due but nobody can act on it"
                )));
            }
        };
    }
    let renewal = outcome.renewal;
    let downtime = match (renewal.downtime.started, renewal.downtime.ended) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let mut run = ProcedureRun {
        procedure: p,
        renewal: id,
        timeline,
        probes,
        downtime,
        failures: Vec::new(),
    };
    run.failures = check_claims(&run, &def, &renewal);
    Ok(run)
}

/// The claims of DEMO-EVIDENCE.md, checked on rekey's side.
fn check_claims(
    run: &ProcedureRun,
    def: &rekey_engine::Procedure,
    renewal: &Renewal,
) -> Vec<String> {
    let mut out = Vec::new();
    if renewal.status != rekey_engine::RenewalStatus::Completed {
        out.push(format!("renewal ended {}", renewal.status.as_str()));
    }
    for pr in &run.probes {
        let rejected = pr.receiver_verdict != "accepted";
        if rejected && (run.procedure != ProcedureId::DowntimeWindow || !pr.in_downtime_window) {
            out.push(format!(
                "probe {} after {:?} was rejected: {}",
                pr.seq,
                pr.after_step,
                pr.reason.clone().unwrap_or_default()
            ));
        }
    }
    let numbered = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_digit());
    let expected: Vec<&str> = def
        .steps
        .iter()
        .map(|s| s.seed.as_str())
        .filter(|s| numbered(s))
        .collect();
    let got: Vec<&str> = run
        .timeline
        .iter()
        .map(|t| t.seed_step.as_str())
        .filter(|s| numbered(s))
        .collect();
    if expected != got {
        out.push(format!(
            "timeline lists seed steps {got:?}, expected {expected:?}"
        ));
    }
    match run.probes.last() {
        Some(last) if last.signer_count == 1 && last.receiver_verdict == "accepted" => {
            let new_only = last.receiver.trusted_certificates_pem.len() == 1;
            if !new_only {
                out.push("the receiver trusts more than the new certificate at the end".into());
            }
        }
        _ => out.push("the last probe is not signed by the new key alone".into()),
    }
    out
}

/// Runs the chosen procedures one after the other.
pub async fn run(service: &Service, opts: &DemoOptions) -> Result<Vec<ProcedureRun>> {
    run_on(service, opts, &DemoTenant::Own).await
}

/// [`run`] with the keys where `on` says.
pub async fn run_on(
    service: &Service,
    opts: &DemoOptions,
    on: &DemoTenant,
) -> Result<Vec<ProcedureRun>> {
    let mut out = Vec::new();
    let mut clock = opts.start;
    for p in &opts.procedures {
        let r = run_procedure_on(service, *p, opts.bits, clock, on).await?;
        clock = r.probes.last().map_or(clock, |p| p.at) + Duration::hours(1);
        out.push(r);
    }
    Ok(out)
}
