//! The outbound keystore: add, exchange, remove, restore, history, encryption at rest, and
//! every refusal leaving the store unchanged.

use rekey_crypto::{CryptoError, DigestAlg, KeyPair};
use rekey_model::{FlowName, StepName, TenantId};
use rekey_store::testing;
use rekey_store::{ArchiveReason, Kek, KeyMaterial, SignerParams, StepOptions, StoreError};

use crate::common::{alias, cert, fixture, fixture_bytes, key, material, on_both, tenant};

#[tokio::test]
async fn add_then_read_back_and_decrypt() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let a = alias("signer-2026");
        let entry = db
            .store
            .add_key(t, &a, &material(&a, "alpha")?, "alice@example.com")
            .await?;
        let alpha_cert = cert("alpha")?;
        assert_eq!(entry.alias, a);
        assert!(entry.current);
        assert_eq!(entry.fingerprint, alpha_cert.fingerprint());
        assert_eq!(entry.key_bits, 2048);
        assert_eq!(entry.subject, alpha_cert.subject());
        assert_eq!(
            entry.not_after.timestamp(),
            alpha_cert.not_after().timestamp()
        );
        assert_eq!(
            entry.not_before.timestamp(),
            alpha_cert.not_before().timestamp()
        );

        let read = db.store.key_entry(t, &a).await?;
        assert_eq!(read, entry, "entry read back differs from the one written");
        assert_eq!(read.chain.len(), 1);
        assert_eq!(read.chain[0].to_der(), alpha_cert.to_der());

        let decrypted = db.store.private_key(t, &a).await?;
        assert_eq!(
            decrypted
                .as_embedded()
                .expect("embedded key")
                .to_pkcs8_der()?
                .as_slice(),
            key("alpha")?.to_pkcs8_der()?.as_slice()
        );
        // The expiry watch sees it before its notAfter, not after.
        let soon = rekey_store::keystore::expiring_before(
            db.store.db(),
            alpha_cert.not_after() + chrono::Duration::days(1),
        )
        .await?;
        assert_eq!(
            soon.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![entry.id]
        );
        let now = rekey_store::db::now();
        assert!(
            rekey_store::keystore::expiring_before(db.store.db(), now)
                .await?
                .is_empty()
        );
        assert_eq!(db.store.key_entries(t).await?, vec![entry]);
        assert!(db.store.key_history(t, &a).await?.is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn chain_pkcs1_and_pkcs12_inputs() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        // End entity signed by a CA: both certificates are kept, in order.
        let d = alias("delta");
        let m = KeyMaterial::from_pem(&d, &fixture("delta.key.pem"), &fixture("delta.chain.pem"))?;
        let e = db.store.add_key(t, &d, &m, "test").await?;
        let read = db.store.key_entry(t, &d).await?;
        assert_eq!(read.chain.len(), 2);
        assert_eq!(read.chain[1].to_der(), cert("ca")?.to_der());
        assert_eq!(read.fingerprint, e.fingerprint);

        // PKCS#1 PEM key.
        let b = alias("beta");
        let m = KeyMaterial::from_pem(
            &b,
            &fixture("beta.pkcs1.key.pem"),
            &fixture("beta.cert.pem"),
        )?;
        db.store.add_key(t, &b, &m, "test").await?;
        assert_eq!(
            db.store
                .private_key(t, &b)
                .await?
                .as_embedded()
                .expect("embedded key")
                .to_pkcs8_der()?
                .as_slice(),
            key("beta")?.to_pkcs8_der()?.as_slice()
        );

        // PKCS#12.
        let p = alias("from-p12");
        let m = KeyMaterial::from_pkcs12(&p, &fixture_bytes("alpha.p12"), "fixture-password")?;
        let e = db.store.add_key(t, &p, &m, "test").await?;
        assert_eq!(e.fingerprint, cert("alpha")?.fingerprint());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn exchange_remove_restore_keep_history() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let a = alias("signer");
        let first = db
            .store
            .add_key(t, &a, &material(&a, "alpha")?, "test")
            .await?;
        let second = db
            .store
            .exchange_key(t, &a, &material(&a, "beta")?, "test")
            .await?;
        assert_ne!(first.id, second.id);
        assert_eq!(
            db.store.key_entry(t, &a).await?.fingerprint,
            cert("beta")?.fingerprint()
        );
        let history = db.store.key_history(t, &a).await?;
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].id, first.id);
        assert!(!history[0].current);
        assert_eq!(history[0].archived_reason, Some(ArchiveReason::Exchanged));
        assert!(history[0].archived_at.is_some());
        // The signing key follows the exchange.
        assert_eq!(
            db.store
                .private_key(t, &a)
                .await?
                .as_embedded()
                .expect("embedded key")
                .to_pkcs8_der()?
                .as_slice(),
            key("beta")?.to_pkcs8_der()?.as_slice()
        );

        // Roll back: restore the first entry; the second goes to history.
        let restored = db.store.restore_key(t, &a, first.id, "test").await?;
        assert_eq!(restored.id, first.id);
        assert!(restored.current);
        assert_eq!(restored.archived_reason, None);
        assert_eq!(db.store.key_entry(t, &a).await?.id, first.id);
        assert_eq!(
            db.store
                .private_key(t, &a)
                .await?
                .as_embedded()
                .expect("embedded key")
                .to_pkcs8_der()?
                .as_slice(),
            key("alpha")?.to_pkcs8_der()?.as_slice()
        );
        let history = db.store.key_history(t, &a).await?;
        assert_eq!(
            history.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![second.id]
        );
        assert_eq!(
            history[0].archived_reason,
            Some(ArchiveReason::ReplacedByRestore)
        );

        // Remove: no current entry, both in history.
        let removed = db.store.remove_key(t, &a, "test").await?;
        assert_eq!(removed.id, first.id);
        assert_eq!(removed.archived_reason, Some(ArchiveReason::Removed));
        assert!(matches!(
            db.store.key_entry(t, &a).await,
            Err(StoreError::UnknownAlias { .. })
        ));
        assert!(db.store.key_entries(t).await?.is_empty());
        assert_eq!(db.store.key_history(t, &a).await?.len(), 2);

        // Restore with no current entry.
        db.store.restore_key(t, &a, second.id, "test").await?;
        assert_eq!(db.store.key_entry(t, &a).await?.id, second.id);
        assert_eq!(db.store.key_history(t, &a).await?.len(), 1);

        // The alias is free again after a remove: add works under it.
        db.store.remove_key(t, &a, "test").await?;
        db.store
            .add_key(t, &a, &material(&a, "gamma")?, "test")
            .await?;
        assert_eq!(
            db.store.key_entry(t, &a).await?.fingerprint,
            cert("gamma")?.fingerprint()
        );
        assert_eq!(db.store.key_history(t, &a).await?.len(), 2);
        db.store.verify_audit().await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn refusals_change_nothing() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let a = alias("signer");
        let entry = db
            .store
            .add_key(t, &a, &material(&a, "alpha")?, "test")
            .await?;
        let audit_before = db.audit_len().await?;

        // Duplicate alias.
        let err = db
            .store
            .add_key(t, &a, &material(&a, "beta")?, "test")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateAlias { .. })),
            "{err:?}"
        );
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("\"signer\"")
        );

        // Unknown alias for exchange / remove / restore.
        let other = alias("other");
        let err = db
            .store
            .exchange_key(t, &other, &material(&other, "beta")?, "test")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownAlias { .. })),
            "{err:?}"
        );
        let err = db.store.remove_key(t, &other, "test").await.err();
        assert!(
            matches!(err, Some(StoreError::UnknownAlias { .. })),
            "{err:?}"
        );
        // Restoring the current entry, or an entry of another alias, is not a history restore.
        let err = db.store.restore_key(t, &a, entry.id, "test").await.err();
        assert!(
            matches!(err, Some(StoreError::UnknownHistoryEntry { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .restore_key(t, &other, entry.id, "test")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownHistoryEntry { .. })),
            "{err:?}"
        );

        // Unknown tenant.
        let nobody = TenantId::from_uuid(uuid::Uuid::new_v4());
        let err = db
            .store
            .add_key(nobody, &other, &material(&other, "beta")?, "test")
            .await
            .err();
        assert!(matches!(err, Some(StoreError::UnknownTenant(_))), "{err:?}");

        assert_eq!(db.audit_len().await?, audit_before, "a refusal was audited");
        assert_eq!(db.store.key_entries(t).await?, vec![entry.clone()]);
        assert!(db.store.key_history(t, &a).await?.is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn bad_key_material_is_refused_with_typed_errors() {
    let a = alias("x");
    // Malformed PEM key.
    let err = KeyMaterial::from_pem(
        &a,
        &fixture("malformed.key.pem"),
        &fixture("alpha.cert.pem"),
    )
    .err();
    assert!(
        matches!(err, Some(StoreError::Crypto(CryptoError::MalformedKey(_)))),
        "{err:?}"
    );
    // Not PEM at all.
    let err = KeyMaterial::from_pem(&a, "hello", &fixture("alpha.cert.pem")).err();
    assert!(matches!(err, Some(StoreError::Crypto(_))), "{err:?}");
    // Malformed certificate.
    let err = KeyMaterial::from_pem(
        &a,
        &fixture("alpha.key.pem"),
        &fixture("malformed.cert.pem"),
    )
    .err();
    assert!(
        matches!(
            err,
            Some(StoreError::Crypto(CryptoError::MalformedCertificate(_)))
        ),
        "{err:?}"
    );
    // No certificate.
    let err = KeyMaterial::from_pem(&a, &fixture("alpha.key.pem"), "").err();
    assert!(
        matches!(
            err,
            Some(StoreError::Crypto(_) | StoreError::EmptyChain { .. })
        ),
        "{err:?}"
    );
    let alpha = match key("alpha") {
        Ok(k) => k,
        Err(e) => panic!("fixture: {e}"),
    };
    let err = KeyMaterial::new(&a, alpha, vec![]).err();
    assert!(
        matches!(err, Some(StoreError::EmptyChain { .. })),
        "{err:?}"
    );
    // Garbage PKCS#12, and the right file with a wrong password.
    let err = KeyMaterial::from_pkcs12(&a, &fixture_bytes("garbage.p12"), "x").err();
    assert!(
        matches!(err, Some(StoreError::Crypto(CryptoError::Pkcs12(_)))),
        "{err:?}"
    );
    let err = KeyMaterial::from_pkcs12(&a, &fixture_bytes("alpha.p12"), "wrong").err();
    assert!(matches!(err, Some(StoreError::Crypto(_))), "{err:?}");
    // Key and certificate that do not belong together.
    let err = KeyMaterial::from_pem(&a, &fixture("alpha.key.pem"), &fixture("beta.cert.pem")).err();
    assert!(
        matches!(err, Some(StoreError::KeyMismatch { .. })),
        "{err:?}"
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("does not match") && msg.contains(&cert_fp("beta")),
        "{msg}"
    );
    // RSA-1024.
    let err = KeyMaterial::from_pem(
        &a,
        &fixture("small1024.key.pem"),
        &fixture("small1024.cert.pem"),
    )
    .err();
    assert!(
        matches!(
            err,
            Some(
                StoreError::Crypto(CryptoError::KeySize(1024))
                    | StoreError::KeyTooSmall { bits: 1024, .. }
            )
        ),
        "{err:?}"
    );
    // A chain in the wrong order (CA first) does not match the key.
    let chain = format!("{}{}", fixture("ca.cert.pem"), fixture("delta.cert.pem"));
    let err = KeyMaterial::from_pem(&a, &fixture("delta.key.pem"), &chain).err();
    assert!(
        matches!(err, Some(StoreError::KeyMismatch { .. })),
        "{err:?}"
    );
    // A chain whose second certificate did not issue the first.
    let chain = format!("{}{}", fixture("delta.cert.pem"), fixture("beta.cert.pem"));
    let err = KeyMaterial::from_pem(&a, &fixture("delta.key.pem"), &chain).err();
    assert!(
        matches!(err, Some(StoreError::Crypto(CryptoError::Chain { .. }))),
        "{err:?}"
    );
}

fn cert_fp(name: &str) -> String {
    cert(name)
        .map(|c| c.fingerprint().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn removing_an_alias_a_signer_step_lists_is_refused_naming_the_steps() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let a = alias("signer");
        db.store
            .add_key(t, &a, &material(&a, "alpha")?, "test")
            .await?;
        for (flow, step) in [("Orders", "sign-orders"), ("Invoices", "sign-invoices")] {
            let f = FlowName::parse(flow)?;
            let s = StepName::parse(step)?;
            db.store.add_flow(t, &f, "test").await?;
            db.store
                .add_step(t, &f, &s, StepOptions::default(), "test")
                .await?;
            db.store
                .add_row(
                    t,
                    &f,
                    &s,
                    &SignerParams {
                        alias: a.clone(),
                        digest: DigestAlg::Sha256,
                        include_certs: true,
                        include_signing_time: true,
                    },
                    "test",
                )
                .await?;
        }
        let audit_before = db.audit_len().await?;
        let err = db.store.remove_key(t, &a, "test").await.err();
        match &err {
            Some(StoreError::AliasInUse { alias: got, uses }) => {
                assert_eq!(got, &a);
                let names: Vec<(String, String)> = uses
                    .iter()
                    .map(|u| (u.flow.to_string(), u.step.to_string()))
                    .collect();
                assert_eq!(
                    names,
                    vec![
                        ("Invoices".to_string(), "sign-invoices".to_string()),
                        ("Orders".to_string(), "sign-orders".to_string())
                    ]
                );
            }
            other => panic!("expected AliasInUse, got {other:?}"),
        }
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        for name in ["Invoices", "sign-invoices", "Orders", "sign-orders"] {
            assert!(msg.contains(name), "{msg} does not name {name}");
        }
        assert!(
            db.store.key_entry(t, &a).await?.current,
            "entry was removed anyway"
        );
        assert_eq!(db.audit_len().await?, audit_before);

        // Once no step lists it, it can go.
        for (flow, step) in [("Orders", "sign-orders"), ("Invoices", "sign-invoices")] {
            db.store
                .remove_row(
                    t,
                    &FlowName::parse(flow)?,
                    &StepName::parse(step)?,
                    &a,
                    "test",
                )
                .await?;
        }
        db.store.remove_key(t, &a, "test").await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn ciphertexts_are_bound_to_their_row_and_kek() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let a = alias("a");
        let b = alias("b");
        let ea = db
            .store
            .add_key(t, &a, &material(&a, "alpha")?, "test")
            .await?;
        let eb = db
            .store
            .add_key(t, &b, &material(&b, "beta")?, "test")
            .await?;

        // A store with another KEK cannot decrypt, and says so.
        let other = db.reopen().await?.with_kek(Kek::generate()?);
        let err = other.private_key(t, &a).await.err();
        assert!(matches!(err, Some(StoreError::Decrypt { .. })), "{err:?}");
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("key-encryption key")
        );
        // And a store without one refuses operations that need it.
        let none = db.reopen().await?;
        assert!(matches!(
            none.private_key(t, &a).await,
            Err(StoreError::NoKek)
        ));
        assert!(matches!(
            none.add_key(t, &alias("c"), &material(&alias("c"), "gamma")?, "test")
                .await,
            Err(StoreError::NoKek)
        ));

        // Copy a's ciphertext and nonce into b's row: b's key does not decrypt to a's.
        let conn = db.store.db();
        testing::copy_key_ciphertext(conn, ea.id, eb.id).await?;
        let err = db.store.private_key(t, &b).await.err();
        assert!(matches!(err, Some(StoreError::Decrypt { .. })), "{err:?}");
        // a itself still decrypts.
        db.store.private_key(t, &a).await?;
        Ok(())
    })
    .await;
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_plaintext_private_key_in_the_sqlite_files() {
    on_both(async |db| {
        let Some(path) = db.sqlite_path.clone() else {
            return Ok(()); // the PostgreSQL files are not ours to read
        };
        let t = tenant(db, "acme").await?;
        let a = alias("signer");
        db.store
            .add_key(t, &a, &material(&a, "alpha")?, "test")
            .await?;
        // Keep a second entry in history too.
        db.store
            .exchange_key(t, &a, &material(&a, "beta")?, "test")
            .await?;

        let mut files = Vec::new();
        for suffix in ["", "-wal"] {
            let p = format!("{}{suffix}", path.display());
            if let Ok(bytes) = std::fs::read(&p) {
                files.push((p, bytes));
            }
        }
        assert!(
            files.iter().any(|(p, _)| p.ends_with("-wal")),
            "no WAL file found"
        );
        let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();

        // Positive control: the certificate (stored in clear) is found, so we read the right bytes.
        assert!(
            contains(&all, cert("alpha")?.to_der()),
            "certificate not found: wrong files?"
        );

        for name in ["alpha", "beta"] {
            let k: KeyPair = key(name)?;
            let der = k.to_pkcs8_der()?;
            assert!(
                !contains(&all, &der),
                "{name}: whole PKCS#8 DER found on disk"
            );
            // A recognisable chunk from the middle of the key (inside the private exponent).
            let chunk = &der[der.len() / 2..der.len() / 2 + 32];
            assert!(
                !contains(&all, chunk),
                "{name}: a 32-byte chunk of the key found on disk"
            );
            let pem = k.to_pkcs8_pem()?;
            let line = pem.lines().nth(5).ok_or("pem line")?;
            assert!(
                !contains(&all, line.as_bytes()),
                "{name}: a PEM line found on disk"
            );
        }
        Ok(())
    })
    .await;
}
