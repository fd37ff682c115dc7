//! The shell end to end on SQLite and PostgreSQL: every procedure through the store, with the
//! reference receiver judging a probe after every step; refusals leave nothing behind.

use chrono::{TimeZone, Utc};
use rekey_engine::{Catalog, Event, ProcedureId, Refusal, RenewalStatus};
use rekey_service::demo::{self, DemoOptions, TENANT_ADMIN, receiver_admin};
use rekey_service::{Service, ServiceError};
use rekey_testdb::{TestDb, TestResult, on_both};

fn service(db: &TestDb) -> Service {
    Service::new(
        db.store.clone(),
        Catalog::builtin().expect("built-in workflows"),
    )
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date")
}

#[tokio::test]
async fn every_procedure_runs_through_the_store_and_no_probe_is_rejected_unexpectedly() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        let runs = demo::run(
            &s,
            &DemoOptions {
                procedures: ProcedureId::ALL.to_vec(),
                bits: 2048,
                start: t0(),
            },
        )
        .await?;
        for r in &runs {
            assert!(r.failures.is_empty(), "{}: {:?}", r.procedure, r.failures);
            assert_eq!(
                r.probes.len(),
                r.timeline.len() + 1,
                "{}: one probe before, one after each step",
                r.procedure
            );
            let last = r.probes.last().expect("probes");
            assert_eq!(last.signer_count, 1);
            if r.procedure == ProcedureId::DowntimeWindow {
                assert!(r.rejected() >= 1, "the downtime is real and measured");
                assert!(r.downtime.is_some());
            } else {
                assert_eq!(r.rejected(), 0, "{}", r.procedure);
            }
            // Informs emailed someone.
            assert!(
                r.timeline
                    .iter()
                    .filter(|t| t.kind == rekey_engine::StepKind::Inform)
                    .all(|t| !t.emails.is_empty()),
                "{}",
                r.procedure
            );
        }
        let dual = runs
            .iter()
            .find(|r| r.procedure == ProcedureId::DualSignature)
            .expect("ran");
        assert!(
            dual.probes.iter().any(|p| p.signer_count == 2),
            "dual-signature sends two signatures during the switch"
        );
        assert!(db.store.verify_audit().await.is_ok());
        let mails = rekey_store::outbox::list(db.store.db(), None, None)
            .await?
            .len();
        assert!(mails > 20, "{mails} emails queued");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn refusals_through_the_service_change_nothing() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        // Run dual-trust up to the receiver's task.
        let run = demo::run(
            &s,
            &DemoOptions {
                procedures: vec![ProcedureId::DualTrust],
                bits: 2048,
                start: t0(),
            },
        )
        .await?;
        let done = s.renewal(run[0].renewal).await?;
        assert_eq!(done.status, RenewalStatus::Completed);
        // A completed renewal refuses further steps; unknown users and renewals are named.
        let r = s
            .act(
                done.id,
                &receiver_admin(ProcedureId::DualTrust),
                Event::Approve {
                    step: "exchange-key-pair".into(),
                },
                t0(),
            )
            .await;
        assert!(
            matches!(r, Err(ServiceError::Refused(Refusal::Finished { .. }))),
            "{r:?}"
        );
        let r = s
            .act(done.id, "nobody@example.com", Event::Cancel, t0())
            .await;
        assert!(matches!(r, Err(ServiceError::UnknownUser(_))), "{r:?}");
        let r = s
            .act(uuid::Uuid::new_v4(), TENANT_ADMIN, Event::Cancel, t0())
            .await;
        assert!(matches!(r, Err(ServiceError::UnknownRenewal(_))), "{r:?}");
        let audit_before = db.store.audit_entries(0, 1_000_000).await?.len();
        let r = s.act(done.id, TENANT_ADMIN, Event::Rollback, t0()).await;
        assert!(
            matches!(r, Err(ServiceError::Refused(Refusal::Unsafe { .. }))),
            "rollback would break the receiver: {r:?}"
        );
        assert_eq!(
            db.store.audit_entries(0, 1_000_000).await?.len(),
            audit_before,
            "nothing was written"
        );
        Ok(())
    })
    .await;
}

/// A receiver, a signer step and users for one CA-signed dual-trust renewal.
async fn ca_setup(
    db: &TestDb,
) -> Result<(rekey_service::StartRequest, String), Box<dyn std::error::Error + Send + Sync>> {
    use rekey_model::*;
    use rekey_store::*;
    let store = &db.store;
    let tenant = store
        .create_tenant(&TenantName::parse("acme")?, "test")
        .await?
        .id;
    let alias = Alias::parse("signer")?;
    let key = rekey_crypto::KeyPair::generate(rekey_crypto::KeyBits::B2048)?;
    let cert = rekey_crypto::self_signed(
        &key,
        "CN=acme signer",
        t0() - chrono::Duration::days(300),
        365,
    )?;
    store
        .add_key(
            tenant,
            &alias,
            &KeyMaterial::new(&alias, key, vec![cert.clone()])?,
            "test",
        )
        .await?;
    let (flow, step) = (FlowName::parse("orders")?, StepName::parse("sign")?);
    store.add_flow(tenant, &flow, "test").await?;
    store
        .add_step(
            tenant,
            &flow,
            &step,
            StepOptions {
                detached: false,
                base64: false,
            },
            "test",
        )
        .await?;
    let params = SignerParams {
        alias: alias.clone(),
        digest: rekey_crypto::DigestAlg::Sha256,
        include_certs: true,
        include_signing_time: true,
    };
    store.add_row(tenant, &flow, &step, &params, "test").await?;
    let rname = ReceiverName::parse("erp")?;
    let receiver = store
        .add_receiver(
            tenant,
            &rname,
            ReceiverProfile {
                verifies_multiple_keys: true,
                accepts_multiple_signatures: false,
            },
            "test",
        )
        .await?;
    store
        .trust_certificate(tenant, &rname, &cert, "test")
        .await?;
    for (email, grant) in [
        ("alice@acme.example", Grant::TenantAdmin { tenant }),
        (
            "ops@erp.example",
            Grant::ReceiverAdmin {
                receiver: receiver.id,
            },
        ),
    ] {
        let u = store.add_user(&Email::parse(email)?, "test").await?;
        store.grant(u.id, grant, "test").await?;
    }
    let req = rekey_service::StartRequest {
        tenant,
        receiver: receiver.id,
        alias: Alias::parse("signer")?,
        new_alias: None,
        procedure: None,
        bits: 2048,
        ca_signed: true,
        auto_approve: false,
    };
    Ok((req, "alice@acme.example".into()))
}

/// Has OpenSSL act as the CA: a CA key and certificate, and the CSR signed by it.
fn openssl_ca_sign(dir: &std::path::Path, csr_pem: &str) -> (String, String) {
    use std::process::Command;
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs (apt package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("req.csr"), csr_pem).expect("write csr");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=Test CA",
        "-days",
        "30",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "30",
    ]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
    (read("leaf.pem"), read("ca.pem"))
}

#[tokio::test]
async fn ca_signed_renewal_mails_the_csr_refuses_a_foreign_chain_and_completes() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        let (req, admin) = ca_setup(db).await?;
        let o = s.start(req, &admin, t0()).await?;
        let id = o.renewal.id;
        let o = s
            .act(
                id,
                &admin,
                Event::Approve {
                    step: "create-key-pair".into(),
                },
                t0(),
            )
            .await?;
        assert!(
            o.completed.is_empty(),
            "the step waits for the CA-signed certificate"
        );
        // The tenant administrator got the CSR by email.
        let rows = rekey_store::outbox::list(db.store.db(), None, None).await?;
        let csr = rows
            .iter()
            .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.state).ok())
            .find_map(|v| v["attachments"]["csr_pem"].as_str().map(String::from))
            .expect("a mail carries the CSR");
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        let dir = tempfile_dir();
        let (leaf, ca) = openssl_ca_sign(dir.path(), &csr);
        // A certificate another alias of the tenant holds — a key this renewal does not touch
        // — is refused as already in the keystore, and nothing changes.
        let tenant = db.store.tenants().await?[0].id;
        let other = rekey_model::Alias::parse("unrelated")?;
        let other_key = rekey_crypto::KeyPair::generate(rekey_crypto::KeyBits::B2048)?;
        let other_cert = rekey_crypto::self_signed(&other_key, "CN=other", t0(), 365)?;
        db.store
            .add_key(
                tenant,
                &other,
                &rekey_store::KeyMaterial::new(&other, other_key, vec![other_cert.clone()])?,
                "test",
            )
            .await?;
        let before = s.renewal(id).await?;
        let r = s.upload_certificate(id, &admin, &[other_cert], t0()).await;
        assert!(
            matches!(&r, Err(ServiceError::Refused(Refusal::Invalid { reason, .. }))
                if reason.contains("already in the keystore")),
            "{r:?}"
        );
        assert_eq!(s.renewal(id).await?, before);
        // A certificate for another key is refused and nothing changes.
        let foreign = rekey_crypto::Certificate::parse_pem_chain(&ca)?;
        let before = s.renewal(id).await?;
        let r = s.upload_certificate(id, &admin, &foreign, t0()).await;
        assert!(
            matches!(
                r,
                Err(ServiceError::Store(_)) | Err(ServiceError::Crypto(_))
            ),
            "{r:?}"
        );
        assert_eq!(s.renewal(id).await?, before);
        // Only the tenant administrator may upload.
        let chain = rekey_crypto::Certificate::parse_pem_chain(&format!("{leaf}{ca}"))?;
        let r = s
            .upload_certificate(id, "ops@erp.example", &chain, t0())
            .await;
        assert!(
            matches!(r, Err(ServiceError::Refused(Refusal::WrongRole { .. }))),
            "{r:?}"
        );
        let o = s.upload_certificate(id, &admin, &chain, t0()).await?;
        assert_eq!(
            o.completed.first().map(String::as_str),
            Some("create-key-pair")
        );
        let new_fp = o.renewal.new_cert.expect("new certificate");
        assert_eq!(new_fp, chain[0].fingerprint());
        // The rest of the renewal as the people do it.
        s.act(
            id,
            "ops@erp.example",
            Event::Complete {
                step: "trust-old-and-new".into(),
                fingerprint: new_fp,
            },
            t0(),
        )
        .await?;
        // openssl issued the leaf from the wall clock, after the engine's t0: until it is
        // valid, signing only with it would leave the receiver nothing it accepts.
        let exchange = Event::Approve {
            step: "exchange-key-pair".into(),
        };
        let r = s.act(id, &admin, exchange.clone(), t0()).await;
        assert!(
            matches!(&r, Err(ServiceError::Refused(Refusal::Unsafe { reason, .. }))
                if reason.contains("not begun yet")),
            "{r:?}"
        );
        let valid = chain[0].not_before() + chrono::Duration::minutes(1);
        s.act(id, &admin, exchange, valid).await?;
        let o = s
            .act(
                id,
                "ops@erp.example",
                Event::Complete {
                    step: "remove-old-trust".into(),
                    fingerprint: new_fp,
                },
                valid,
            )
            .await?;
        assert_eq!(o.renewal.status, RenewalStatus::Completed);
        // The keystore now holds the CA-signed chain under the old alias.
        let entry = db
            .store
            .key_entry(tenant, &rekey_model::Alias::parse("signer")?)
            .await?;
        assert_eq!(entry.fingerprint, new_fp);
        assert_eq!(entry.chain.len(), 2, "leaf and CA");
        Ok(())
    })
    .await;
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Lists read by the database in a person's scope: a receiver administrator sees the renewal
/// that reaches their receiver and no other, pages hand out every visible renewal once in the
/// order of the full list, and the per-state counts are the database's own.
#[tokio::test]
async fn renewal_pages_are_scoped_to_the_reader_and_cover_each_renewal_once() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        let runs = demo::run(
            &s,
            &DemoOptions {
                procedures: ProcedureId::ALL.to_vec(),
                bits: 2048,
                start: t0(),
            },
        )
        .await?;
        let all: Vec<uuid::Uuid> = s.renewals(None).await?.iter().map(|r| r.id).collect();
        assert_eq!(all.len(), 4);
        let admin = db
            .store
            .user_by_email(&rekey_model::Email::parse(TENANT_ADMIN)?)
            .await?;
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = s.renewals_for(&admin.grants, None, after, 1).await?;
            let Some(last) = page.last() else { break };
            assert_eq!(page.len(), 1, "limit 1");
            after = Some(last.id);
            paged.push(last.id);
        }
        assert_eq!(paged, all, "pages in list order, each renewal once");
        for run in &runs {
            let email = receiver_admin(run.procedure);
            let user = db
                .store
                .user_by_email(&rekey_model::Email::parse(&email)?)
                .await?;
            let mine = s.renewals_for(&user.grants, None, None, 100).await?;
            let ids: Vec<_> = mine.iter().map(|r| r.id).collect();
            assert_eq!(
                ids,
                vec![run.renewal],
                "{email} sees only their receiver's renewal"
            );
        }
        let running = s
            .renewals_for(&admin.grants, Some(RenewalStatus::Running), None, 100)
            .await?;
        assert!(running.is_empty(), "every demo renewal completed");
        assert!(s.tasks(Some(TENANT_ADMIN), None).await?.is_empty());
        let unknown = s
            .renewals_for(&admin.grants, None, Some(uuid::Uuid::new_v4()), 100)
            .await?;
        assert!(
            unknown.is_empty(),
            "a cursor naming no renewal ends the list"
        );
        let counts = rekey_store::renewals::count_by_status(db.store.db()).await?;
        let mut completed: Vec<_> = counts
            .iter()
            .filter(|(status, _, _)| status == "completed")
            .map(|(_, p, n)| (p.clone(), *n))
            .collect();
        completed.sort();
        let mut want: Vec<_> = ProcedureId::ALL
            .iter()
            .map(|p| (p.to_string(), 1))
            .collect();
        want.sort();
        assert_eq!(completed, want);
        Ok(())
    })
    .await;
}
