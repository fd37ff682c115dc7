//! AS2 test messages against an AS2 implementation not written here: pyas2lib (PyPI), wrapped
//! in the loopback receiver `tests/as2/receiver.py`, which keeps its own partner trust store
//! and answers with signed synchronous MDNs.
//!
//! The receiver is started once for this test binary (127.0.0.1, a port the system picks) and
//! shared; each test configures its own AS2 organization in it, so tests do not interfere.
//! It needs `REKEY_TEST_PYTHON`: a Python with pyas2lib 1.4.4 (`cargo xtask test` creates it).
//!
//! pyas2lib verifies every SignerInfo against its one partner certificate: it accepts one
//! signature by one trusted key at a time, like the receivers of the `downtime-window`
//! procedure. These tests show that rekey reads its answers right — accepted, refused with its
//! words, and every answer that must confirm nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use rekey_crypto::as2::{Disposition, MdnError, build_message};
use rekey_crypto::{Certificate, DigestAlg, KeyBits, KeyPair, SignOptions, SignerSpec};
use rekey_model::As2Id;
use rekey_service::as2::{As2Answer, As2Endpoint, As2Problem, send_test};
use rekey_service::http;

/// The shared receiver: its port, and the process (whose stdin we hold: it exits when this
/// test binary does).
struct Receiver {
    port: u16,
    _child: Child,
}

fn receiver() -> &'static Receiver {
    static RECEIVER: OnceLock<Receiver> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let python = std::env::var("REKEY_TEST_PYTHON").unwrap_or_else(|_| {
            panic!(
                "REKEY_TEST_PYTHON is not set: run the tests with `cargo xtask test` (it creates \
                 target/xtask-venv with pyas2lib==1.4.4 and exports its python), or point it at \
                 a python with pyas2lib==1.4.4 installed"
            )
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/as2/receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pyas2lib receiver");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the receiver's port");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the receiver did not start: {line:?}"));
        Receiver {
            port,
            _child: child,
        }
    })
}

struct Party {
    key: KeyPair,
    cert: Certificate,
}

fn party(cn: &str) -> Party {
    let key = KeyPair::generate(KeyBits::B2048).expect("key");
    // pyas2lib checks validity against the real clock.
    let cert = rekey_crypto::self_signed(
        &key,
        &format!("CN={cn}"),
        Utc::now() - chrono::Duration::hours(1),
        30,
    )
    .expect("certificate");
    Party { key, cert }
}

/// One receiver organization in the shared process, and what rekey knows of it.
struct Setup {
    org: String,
    partner: String,
    mdn: Party,
}

impl Setup {
    async fn new(trusted: &Certificate, mode: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let s = Setup {
            org: format!("RECEIVER-{id}"),
            partner: format!("REKEY-{id}"),
            mdn: party("receiver AS2 MDN signing"),
        };
        s.configure(trusted, mode).await;
        s
    }

    /// What the receiver administrator does in their AS2 system: install the certificate they
    /// trust for the partner (and, here, how the test wants the system to behave).
    async fn configure(&self, trusted: &Certificate, mode: &str) {
        let body = serde_json::json!({
            "key_pem": *self.mdn.key.to_pkcs8_pem().expect("pem"),
            "cert_pem": self.mdn.cert.to_pem(),
            "partner": self.partner,
            "partner_cert_pem": trusted.to_pem(),
            "mode": mode,
        });
        let answer = http::post(
            &format!("http://127.0.0.1:{}/admin/{}", receiver().port, self.org),
            &[("content-type", "application/json".into())],
            body.to_string().into_bytes(),
            Duration::from_secs(10),
        )
        .await
        .expect("configure the receiver");
        assert_eq!(
            answer.status,
            204,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }

    fn endpoint(&self) -> As2Endpoint {
        As2Endpoint {
            url: format!("http://127.0.0.1:{}/as2", receiver().port),
            as2_from: As2Id::parse(&self.partner).expect("id"),
            as2_to: As2Id::parse(&self.org).expect("id"),
            mdn_certificate: self.mdn.cert.clone(),
            mic: DigestAlg::Sha256,
        }
    }
}

/// Sends a test message signed by `signers` (each signs as a signer step would).
async fn send(
    endpoint: &As2Endpoint,
    signers: &[&Party],
    timeout: Duration,
) -> Result<As2Answer, As2Problem> {
    let chains: Vec<[Certificate; 1]> = signers.iter().map(|p| [p.cert.clone()]).collect();
    let specs: Vec<SignerSpec<'_>> = signers
        .iter()
        .zip(&chains)
        .map(|(p, chain)| SignerSpec {
            key: &p.key,
            chain,
            digest: DigestAlg::Sha256,
            include_certs: true,
            include_signing_time: true,
        })
        .collect();
    let now = Utc::now();
    let message = build_message(
        b"rekey test message\r\n",
        "rekey-test.txt",
        &specs,
        &SignOptions {
            detached: true,
            signing_time: now,
        },
    )
    .expect("message");
    let id = format!("{}@rekey.test", uuid::Uuid::new_v4().simple());
    send_test(endpoint, &message, &id, now, timeout).await
}

const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_message_signed_by_the_trusted_key_is_processed_and_its_signed_mdn_verifies() {
    let old = party("signer old");
    let s = Setup::new(&old.cert, "normal").await;
    let answer = send(&s.endpoint(), &[&old], TIMEOUT)
        .await
        .expect("a verified MDN");
    assert!(answer.accepted(), "{:?}", answer.mdn);
    assert_eq!(answer.mdn.disposition, Disposition::Processed);
    assert!(answer.mdn.received_mic.is_some());
    let raw = String::from_utf8_lossy(&answer.raw);
    assert!(raw.contains("message/disposition-notification"), "{raw}");
    assert!(raw.contains("application/pkcs7-signature"), "{raw}");
}

#[tokio::test]
async fn the_new_key_is_refused_until_the_receiver_trusts_it_then_accepted() {
    let old = party("signer old");
    let new = party("signer new");
    let s = Setup::new(&old.cert, "normal").await;
    let refused = send(&s.endpoint(), &[&new], TIMEOUT)
        .await
        .expect("a verified MDN");
    assert!(!refused.accepted());
    let Disposition::Refused(words) = &refused.mdn.disposition else {
        panic!("expected a refusal: {:?}", refused.mdn);
    };
    // pyas2lib's words for a signature its partner certificate does not verify.
    assert_eq!(words, "processed/Error: authentication-failed");
    assert_eq!(&refused.summary(), words);

    // The receiver administrator installs the new certificate.
    s.configure(&new.cert, "normal").await;
    let accepted = send(&s.endpoint(), &[&new], TIMEOUT)
        .await
        .expect("a verified MDN");
    assert!(accepted.accepted(), "{:?}", accepted.mdn);
    // ... and the old key is now refused: one key at a time.
    let old_now = send(&s.endpoint(), &[&old], TIMEOUT).await.expect("MDN");
    assert!(!old_now.accepted());
}

#[tokio::test]
async fn two_signatures_are_refused_even_when_one_key_is_trusted() {
    let old = party("signer old");
    let new = party("signer new");
    let s = Setup::new(&old.cert, "normal").await;
    let answer = send(&s.endpoint(), &[&old, &new], TIMEOUT)
        .await
        .expect("a verified MDN");
    assert!(!answer.accepted(), "{:?}", answer.mdn);
}

#[tokio::test]
async fn an_mdn_signed_by_another_key_confirms_nothing() {
    let old = party("signer old");
    let s = Setup::new(&old.cert, "normal").await;
    let mut endpoint = s.endpoint();
    endpoint.mdn_certificate = party("receiver AS2 MDN signing").cert;
    let problem = send(&endpoint, &[&old], TIMEOUT)
        .await
        .expect_err("confirms nothing");
    assert!(
        matches!(problem, As2Problem::Mdn(MdnError::Signature { .. })),
        "{problem}"
    );
    assert!(!problem.transient());
}

#[tokio::test]
async fn an_mdn_reporting_another_mic_confirms_nothing() {
    let old = party("signer old");
    let s = Setup::new(&old.cert, "wrong-mic").await;
    let problem = send(&s.endpoint(), &[&old], TIMEOUT)
        .await
        .expect_err("confirms nothing");
    assert!(
        matches!(problem, As2Problem::Mdn(MdnError::MicMismatch { .. })),
        "{problem}"
    );
}

#[tokio::test]
async fn a_receiver_answering_an_error_page_is_retried_later() {
    let old = party("signer old");
    let s = Setup::new(&old.cert, "http-500").await;
    let problem = send(&s.endpoint(), &[&old], TIMEOUT)
        .await
        .expect_err("no MDN");
    assert!(
        matches!(problem, As2Problem::HttpStatus { status: 500, .. }),
        "{problem}"
    );
    assert!(problem.transient());
    assert!(
        problem.to_string().contains("AS2 server error"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_or_silent_is_retried_later() {
    let old = party("signer old");
    let s = Setup::new(&old.cert, "hang").await;
    let problem = send(&s.endpoint(), &[&old], Duration::from_secs(1))
        .await
        .expect_err("timeout");
    assert!(
        matches!(problem, As2Problem::Unreachable { .. }) && problem.transient(),
        "{problem}"
    );
    assert!(problem.to_string().contains("within 1 s"), "{problem}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let mut endpoint = s.endpoint();
    endpoint.url = format!("http://127.0.0.1:{port}/as2");
    let problem = send(&endpoint, &[&old], TIMEOUT).await.expect_err("down");
    assert!(
        matches!(problem, As2Problem::Unreachable { .. }) && problem.transient(),
        "{problem}"
    );
}

/// `downtime-window` end to end against the pyas2lib receiver: the receiver step's test message
/// (signed by the new key alone, as the signer signs after the exchange) is refused while the
/// receiver trusts the old certificate, the step stays due with the receiver's words recorded;
/// once the receiver administrator installs the new certificate in their AS2 system, the next
/// check is accepted and the step is completed by the receiver's system — no person confirms —
/// with the MDN kept and its SHA-256 in the audit log.
#[tokio::test]
async fn downtime_window_receiver_step_is_confirmed_by_the_receivers_mdn() {
    use rekey_engine::{Catalog, Event, ProcedureId, RenewalStatus, StepStatus, TimerKind};
    use rekey_service::Service;
    use rekey_service::demo::{self, TENANT_ADMIN, receiver_admin};
    use rekey_store::as2::{As2Config, CheckOutcome};

    rekey_testdb::on_both(async |db| {
        let p = ProcedureId::DowntimeWindow;
        let service = Service::new(db.store.clone(), Catalog::builtin()?);
        // pyas2lib checks certificates against the real clock, so the engine's clock is it.
        let mut clock = Utc::now();
        let s =
            demo::prepare_with(&service, p, 2048, clock - chrono::Duration::days(1), 30).await?;
        let old_cert = db.store.key_entry(s.tenant, &s.alias).await?.chain[0].clone();

        // The receiver's AS2 system trusts the old certificate; its endpoint is in the profile.
        let org = Setup::new(&old_cert, "normal").await;
        let endpoint = org.endpoint();
        let txn = db.store.begin().await?;
        rekey_store::as2::set(
            &txn,
            s.tenant,
            &s.receiver_name,
            &As2Config {
                url: endpoint.url.clone(),
                as2_from: endpoint.as2_from.clone(),
                as2_to: endpoint.as2_to.clone(),
                mdn_certificate: endpoint.mdn_certificate.clone(),
                mic: DigestAlg::Sha256,
            },
            TENANT_ADMIN,
        )
        .await?;
        txn.commit().await?;

        let id = service
            .start(s.start_request(2048), TENANT_ADMIN, clock)
            .await?
            .renewal
            .id;
        let approve = |step: &str| Event::Approve {
            step: step.to_string(),
        };
        service
            .act(id, TENANT_ADMIN, approve("create-key-pair"), clock)
            .await?;
        let start = clock + chrono::Duration::seconds(30);
        service
            .act(
                id,
                TENANT_ADMIN,
                Event::ProposeWindow {
                    start,
                    end: start + chrono::Duration::hours(2),
                },
                clock,
            )
            .await?;
        service
            .act(id, &receiver_admin(p), Event::AcceptWindow, clock)
            .await?;
        clock = start;
        let r = service
            .act(
                id,
                rekey_engine::machine::SYSTEM,
                Event::Timer {
                    step: None,
                    kind: TimerKind::WindowOpen,
                },
                clock,
            )
            .await?
            .renewal;
        let new_cert = r.new_cert.expect("new certificate");
        assert!(
            r.due_steps().any(|st| st.id == "switch-receiver"),
            "{:?}",
            r.steps
        );

        // Before the receiver's trust is updated: refused, in pyas2lib's words; still due.
        let checks = service.as2_pass(clock, TIMEOUT).await?;
        let [check] = checks.as_slice() else {
            panic!("one check expected: {checks:?}");
        };
        assert_eq!(check.step, "switch-receiver");
        assert_eq!(check.outcome, CheckOutcome::Refused, "{}", check.detail);
        assert!(
            check
                .detail
                .contains("processed/Error: authentication-failed"),
            "{}",
            check.detail
        );
        assert!(!check.completed);
        let next_at = check.next_at.expect("retried later");
        assert!(next_at > clock);
        // The receiver's administrators are told, in their system's words.
        let told: Vec<rekey_store::mail::As2Mail> =
            rekey_store::outbox::of_renewal(db.store.db(), id)
                .await?
                .iter()
                .filter_map(|row| match rekey_store::mail::parse(&row.state) {
                    Ok(rekey_store::mail::OutboxMail::As2Refused(m)) => Some(m),
                    _ => None,
                })
                .collect();
        let mine = told
            .iter()
            .find(|m| m.recipient == receiver_admin(p))
            .expect("the receiver administrator is told");
        assert!(
            mine.answer
                .contains("processed/Error: authentication-failed"),
            "{}",
            mine.answer
        );
        assert_eq!(mine.step, "switch-receiver");
        // Within the back-off, nothing is sent again.
        assert!(service.as2_pass(clock, TIMEOUT).await?.is_empty());
        let r = service.renewal(id).await?;
        assert!(r.due_steps().any(|st| st.id == "switch-receiver"));

        // The tenant administrator exchanges the key; the receiver administrator installs the
        // new certificate in their AS2 system (not in rekey).
        service
            .act(id, TENANT_ADMIN, approve("exchange-key-pair"), clock)
            .await?;
        let new = db.store.key_entry(s.tenant, &s.alias).await?.chain[0].clone();
        assert_eq!(new.fingerprint(), new_cert);
        org.configure(&new, "normal").await;

        clock = next_at;
        let checks = service.as2_pass(clock, TIMEOUT).await?;
        let [check] = checks.as_slice() else {
            panic!("one check expected: {checks:?}");
        };
        assert_eq!(check.outcome, CheckOutcome::Accepted, "{}", check.detail);
        assert!(check.completed);

        let r = service.renewal(id).await?;
        assert_eq!(r.status, RenewalStatus::Completed, "{:?}", r.steps);
        let who = rekey_service::as2::system_actor(s.receiver_name.as_str(), &endpoint);
        match &r.step("switch-receiver").expect("step").status {
            StepStatus::Done { by, .. } => assert_eq!(by, &who),
            other => panic!("switch-receiver is {other:?}"),
        }
        // The MDN is kept; the audit log names the receiver's system and the MDN's digest.
        let kept = rekey_store::as2::check(db.store.db(), id, "switch-receiver")
            .await?
            .expect("check recorded");
        let mdn = kept.mdn.expect("MDN kept");
        let text = String::from_utf8_lossy(&mdn);
        assert!(text.contains("message/disposition-notification"), "{text}");
        let audit = rekey_store::audit::tenant_entries(db.store.db(), s.tenant).await?;
        let evidence = audit
            .iter()
            .find(|e| e.action == "receiver.as2.mdn")
            .expect("MDN audited");
        assert_eq!(evidence.actor, who);
        let digest: String = DigestAlg::Sha256
            .digest(&mdn)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(evidence.after.contains(&digest), "{}", evidence.after);
        assert!(
            audit
                .iter()
                .any(|e| e.action == "step.done" && e.actor == who),
            "the step is audited as done by the receiver's system"
        );
        rekey_store::audit::verify(db.store.db()).await?;
        Ok(())
    })
    .await;
}

/// The probe classifies pyas2lib as it is: it accepts one signature by its one trusted key,
/// refuses a key it does not trust, and refuses two signatures even when one is by the trusted
/// key (it verifies every SignerInfo against its one partner certificate) — so neither
/// capability is proposed.
#[tokio::test]
async fn the_probe_classifies_pyas2lib_as_one_signature_one_key() {
    let old = party("signer old");
    let stranger = party("never trusted");
    let s = Setup::new(&old.cert, "normal").await;
    let report = rekey_service::as2::probe(
        &s.endpoint(),
        &[(&old.key, old.cert)],
        &(&stranger.key, stranger.cert),
        Utc::now(),
        TIMEOUT,
    )
    .await;
    let results: Vec<&str> = report.messages.iter().map(|m| m.result.as_str()).collect();
    assert_eq!(results, ["accepted", "refused", "refused"], "{report:?}");
    assert_eq!(report.problem, None);
    assert_eq!(
        report.proposed,
        Some(rekey_service::as2::ProposedProfile {
            accepts_multiple_signatures: false,
            verifies_multiple_keys: false,
        })
    );
}

/// A probe that cannot conclude says why and proposes nothing: here the receiver's system
/// does not trust the key rekey records it trusts.
#[tokio::test]
async fn a_probe_refused_for_the_trusted_key_proposes_nothing() {
    let old = party("signer old");
    let other = party("signer other");
    let stranger = party("never trusted");
    let s = Setup::new(&other.cert, "normal").await;
    let report = rekey_service::as2::probe(
        &s.endpoint(),
        &[(&old.key, old.cert)],
        &(&stranger.key, stranger.cert),
        Utc::now(),
        TIMEOUT,
    )
    .await;
    assert_eq!(report.proposed, None);
    let problem = report.problem.expect("a reason");
    assert!(
        problem.contains("refused a message signed by the key it is recorded to trust"),
        "{problem}"
    );
}

/// `rekey receiver probe` through the binary: it proposes the profile from the MDNs, and with
/// `--accept` sets it (the receiver had been registered as accepting several signatures).
/// The tenant administrator, who adds receivers and their AS2 endpoints and probes them.
const ADMIN: &str = "admin@acme.example";

#[test]
fn rekey_receiver_probe_proposes_and_accepts_the_profile() {
    common::on_both(|env| {
        env.ok(&["init"]);
        env.ok(&["tenant", "add", "acme"]);
        env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
        env.ok(&[
            "keystore",
            "generate",
            "--alias",
            "signer",
            "--bits",
            "2048",
            "--subject",
            "CN=acme signer",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "receiver",
            "add",
            "--name",
            "ERP",
            "--admin",
            "bob@example.com",
            "--accepts-multiple-signatures",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "receiver", "trust", "--name", "ERP", "--alias", "signer", "--as", ADMIN,
        ]);
        let pem = env.ok(&["keystore", "export-cert", "--alias", "signer"]);
        let signer = Certificate::from_pem(&pem).expect("certificate");
        let s = common::runtime().block_on(Setup::new(&signer, "normal"));
        let endpoint = s.endpoint();
        std::fs::write(env.path("mdn.pem"), endpoint.mdn_certificate.to_pem()).expect("write");
        let mdn = env.p("mdn.pem");
        env.ok(&[
            "receiver",
            "as2",
            "set",
            "--name",
            "ERP",
            "--url",
            &endpoint.url,
            "--as2-from",
            endpoint.as2_from.as_str(),
            "--as2-to",
            endpoint.as2_to.as_str(),
            "--mdn-cert",
            &mdn,
            "--as",
            ADMIN,
        ]);

        let out = env.ok(&["receiver", "probe", "--name", "ERP", "--as", ADMIN]);
        assert!(
            out.contains("proposed profile: verifies_multiple_keys=false accepts_multiple_signatures=false (rerun with --accept"),
            "{out}"
        );
        assert!(
            out.contains("processed/Error: authentication-failed"),
            "{out}"
        );
        let r = env.json(&["receiver", "show", "--name", "ERP", "--json"]);
        assert_eq!(
            r["profile"]["accepts_multiple_signatures"], true,
            "not changed without --accept"
        );

        let report = env.json(&[
            "receiver", "probe", "--name", "ERP", "--accept", "--json", "--as", ADMIN,
        ]);
        assert_eq!(report["proposed"]["accepts_multiple_signatures"], false);
        let r = env.json(&["receiver", "show", "--name", "ERP", "--json"]);
        assert_eq!(r["profile"]["accepts_multiple_signatures"], false);
        assert_eq!(r["profile"]["verifies_multiple_keys"], false);

        // A receiver without an endpoint is refused in one line.
        env.ok(&[
            "receiver",
            "add",
            "--name",
            "CRM",
            "--admin",
            "eve@example.com",
            "--as",
            ADMIN,
        ]);
        env.fails(
            &["receiver", "probe", "--name", "CRM", "--as", ADMIN],
            1,
            &["has no AS2 endpoint"],
        );
    });
}

/// While the receiver's AS2 endpoint is down, its step stays due and is retried with back-off;
/// the receiver administrator can still confirm it by hand, after which no test message goes.
#[tokio::test]
async fn with_the_endpoint_down_a_person_still_confirms_by_hand() {
    use rekey_engine::{Catalog, Event, ProcedureId, StepStatus};
    use rekey_service::Service;
    use rekey_service::demo::{self, TENANT_ADMIN, receiver_admin};
    use rekey_store::as2::{As2Config, CheckOutcome};

    rekey_testdb::on_both(async |db| {
        let p = ProcedureId::DualTrust;
        let service = Service::new(db.store.clone(), Catalog::builtin()?);
        let clock = Utc::now();
        let s =
            demo::prepare_with(&service, p, 2048, clock - chrono::Duration::days(1), 30).await?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let mdn = party("receiver AS2 MDN signing");
        let txn = db.store.begin().await?;
        rekey_store::as2::set(
            &txn,
            s.tenant,
            &s.receiver_name,
            &As2Config {
                url: format!("http://127.0.0.1:{port}/as2"),
                as2_from: As2Id::parse("REKEY")?,
                as2_to: As2Id::parse("DOWN")?,
                mdn_certificate: mdn.cert,
                mic: DigestAlg::Sha256,
            },
            TENANT_ADMIN,
        )
        .await?;
        txn.commit().await?;
        let id = service
            .start(s.start_request(2048), TENANT_ADMIN, clock)
            .await?
            .renewal
            .id;
        let r = service
            .act(
                id,
                TENANT_ADMIN,
                Event::Approve {
                    step: "create-key-pair".into(),
                },
                clock,
            )
            .await?
            .renewal;
        let new_cert = r.new_cert.expect("new certificate");

        let first = service.as2_pass(clock, TIMEOUT).await?;
        let [check] = first.as_slice() else {
            panic!("one check expected: {first:?}");
        };
        assert_eq!(check.step, "trust-old-and-new");
        assert_eq!(check.outcome, CheckOutcome::Unreachable, "{}", check.detail);
        let next = check.next_at.expect("retried");
        assert_eq!(next - clock, rekey_service::as2::FIRST_BACKOFF);
        let second = service.as2_pass(next, TIMEOUT).await?;
        assert_eq!(
            second[0].next_at.map(|t| t - next),
            Some(rekey_service::as2::FIRST_BACKOFF * 2),
            "the wait doubles"
        );

        let event =
            rekey_service::complete_event("trust-old-and-new".into(), Some(&new_cert.to_string()))?;
        let r = service
            .act(id, &receiver_admin(p), event, next)
            .await?
            .renewal;
        assert!(matches!(
            r.step("trust-old-and-new").map(|st| &st.status),
            Some(StepStatus::Done { by, .. }) if by == &receiver_admin(p)
        ));
        let later = next + chrono::Duration::hours(2);
        assert!(
            service
                .as2_pass(later, TIMEOUT)
                .await?
                .iter()
                .all(|c| c.step != "trust-old-and-new"),
            "a step done by hand is not tested again"
        );
        Ok(())
    })
    .await;
}
