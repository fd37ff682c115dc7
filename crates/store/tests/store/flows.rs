//! Integration flows, signer steps and their Signer Parameters tables; alias usage; signing a
//! payload as a step does.

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use rekey_crypto::{CertSource, DigestAlg, SignerStatus};
use rekey_model::{Alias, FlowName, StepName, TenantId};
use rekey_store::{SignerParams, StepOptions, StoreError};

use crate::common::{TestDb, alias, cert, material, on_both, tenant};

fn params(a: &Alias, digest: DigestAlg, certs: bool, time: bool) -> SignerParams {
    SignerParams {
        alias: a.clone(),
        digest,
        include_certs: certs,
        include_signing_time: time,
    }
}

struct Names {
    flow: FlowName,
    step: StepName,
}

fn names(flow: &str, step: &str) -> Result<Names, rekey_model::InvalidInput> {
    Ok(Names {
        flow: FlowName::parse(flow)?,
        step: StepName::parse(step)?,
    })
}

async fn flow_with_step(
    db: &TestDb,
    t: TenantId,
    n: &Names,
    options: StepOptions,
) -> Result<(), StoreError> {
    if db.store.flow(t, &n.flow).await.is_err() {
        db.store.add_flow(t, &n.flow, "dev@example.com").await?;
    }
    db.store
        .add_step(t, &n.flow, &n.step, options, "dev@example.com")
        .await?;
    Ok(())
}

#[tokio::test]
async fn build_show_copy_and_remove_rows() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let n = names("Orders to ACME", "sign")?;
        flow_with_step(
            db,
            t,
            &n,
            StepOptions {
                detached: true,
                base64: false,
            },
        )
        .await?;
        let old = alias("old");
        let other = alias("other");
        db.store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&old, DigestAlg::Sha384, false, true),
                "dev",
            )
            .await?;
        db.store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&other, DigestAlg::Sha256, true, false),
                "dev",
            )
            .await?;
        let new = alias("new");
        let step = db
            .store
            .add_row_like(t, &n.flow, &n.step, &new, &old, "engine")
            .await?;
        // Right after the row it copies, where the engine's model puts it too.
        assert_eq!(
            step.aliases(),
            vec![old.clone(), new.clone(), other.clone()]
        );
        let copied = &step.rows[1].params;
        assert_eq!(
            copied,
            &params(&new, DigestAlg::Sha384, false, true),
            "not a copy of old's row"
        );

        let shown = db.store.flow(t, &n.flow).await?;
        assert_eq!(shown.name, n.flow);
        assert_eq!(shown.steps.len(), 1);
        assert_eq!(
            shown.steps[0].options,
            StepOptions {
                detached: true,
                base64: false
            }
        );
        assert_eq!(shown.steps[0], step);
        assert_eq!(db.store.flows(t).await?, vec![shown]);

        let step = db
            .store
            .remove_row(t, &n.flow, &n.step, &old, "engine")
            .await?;
        assert_eq!(step.aliases(), vec![new.clone(), other.clone()]);
        // Appending after a removal keeps the order of the rest.
        let step = db
            .store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&old, DigestAlg::Sha512, true, true),
                "dev",
            )
            .await?;
        assert_eq!(step.aliases(), vec![new, other, old]);

        let step = db
            .store
            .set_step_options(
                t,
                &n.flow,
                &n.step,
                StepOptions {
                    detached: false,
                    base64: true,
                },
                "dev",
            )
            .await?;
        assert_eq!(
            step.options,
            StepOptions {
                detached: false,
                base64: true
            }
        );
        db.store.verify_audit().await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn flow_refusals_change_nothing() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let n = names("Orders", "sign")?;
        flow_with_step(db, t, &n, StepOptions::default()).await?;
        let a = alias("a");
        db.store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&a, DigestAlg::Sha256, true, true),
                "dev",
            )
            .await?;
        let before = db.store.flow(t, &n.flow).await?;
        let audit_before = db.audit_len().await?;

        let err = db.store.add_flow(t, &n.flow, "dev").await.err();
        assert!(
            matches!(err, Some(StoreError::DuplicateFlow { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .add_step(t, &n.flow, &n.step, StepOptions::default(), "dev")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateStep { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&a, DigestAlg::Sha512, false, false),
                "dev",
            )
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateSignerAlias { .. })),
            "{err:?}"
        );
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("Orders") && msg.contains("sign") && msg.contains("\"a\""),
            "{msg}"
        );
        // Copying onto an alias the step lists, or from one it does not.
        let err = db
            .store
            .add_row_like(t, &n.flow, &n.step, &a, &a, "dev")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateSignerAlias { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .add_row_like(t, &n.flow, &n.step, &alias("n"), &alias("zz"), "dev")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownSignerRow { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .remove_row(t, &n.flow, &n.step, &alias("zz"), "dev")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownSignerRow { .. })),
            "{err:?}"
        );

        let missing = names("Nope", "nope")?;
        let err = db.store.flow(t, &missing.flow).await.err();
        assert!(
            matches!(err, Some(StoreError::UnknownFlow { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .add_step(t, &missing.flow, &n.step, StepOptions::default(), "dev")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownFlow { .. })),
            "{err:?}"
        );
        let err = db.store.step(t, &n.flow, &missing.step).await.err();
        assert!(
            matches!(err, Some(StoreError::UnknownStep { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .add_row(
                t,
                &n.flow,
                &missing.step,
                &params(&a, DigestAlg::Sha256, true, true),
                "dev",
            )
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownStep { .. })),
            "{err:?}"
        );
        let nobody = TenantId::from_uuid(uuid::Uuid::new_v4());
        let err = db.store.add_flow(nobody, &missing.flow, "dev").await.err();
        assert!(matches!(err, Some(StoreError::UnknownTenant(_))), "{err:?}");

        assert_eq!(db.store.flow(t, &n.flow).await?, before);
        assert_eq!(db.audit_len().await?, audit_before);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn alias_usage_lists_every_flow_and_step() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let t2 = tenant(db, "other-tenant").await?;
        let a = alias("shared");
        let placements = [("B-flow", "s1"), ("A-flow", "s2"), ("A-flow", "s1")];
        for (f, s) in placements {
            let n = names(f, s)?;
            flow_with_step(db, t, &n, StepOptions::default()).await?;
            db.store
                .add_row(
                    t,
                    &n.flow,
                    &n.step,
                    &params(&a, DigestAlg::Sha256, true, true),
                    "dev",
                )
                .await?;
        }
        // A step without the alias, and the same alias in another tenant, do not count.
        let n = names("A-flow", "s3")?;
        flow_with_step(db, t, &n, StepOptions::default()).await?;
        let n = names("A-flow", "s1")?;
        flow_with_step(db, t2, &n, StepOptions::default()).await?;
        db.store
            .add_row(
                t2,
                &n.flow,
                &n.step,
                &params(&a, DigestAlg::Sha256, true, true),
                "dev",
            )
            .await?;

        let uses: Vec<(String, String)> = db
            .store
            .alias_usage(t, &a)
            .await?
            .into_iter()
            .map(|u| (u.flow.to_string(), u.step.to_string()))
            .collect();
        assert_eq!(
            uses,
            vec![
                ("A-flow".into(), "s1".into()),
                ("A-flow".into(), "s2".into()),
                ("B-flow".into(), "s1".into())
            ]
        );
        assert!(db.store.alias_usage(t, &alias("unused")).await?.is_empty());

        // The engine's "every step that uses the alias" helpers, in one transaction.
        let new = alias("shared-2027");
        let txn = db.store.begin().await?;
        let changed =
            rekey_store::flows::add_alias_like_everywhere(&txn, t, &new, &a, "engine").await?;
        assert_eq!(changed.len(), 3);
        let removed =
            rekey_store::flows::remove_alias_everywhere(&txn, t, &a, &[], "engine").await?;
        assert_eq!(removed, changed);
        txn.commit().await?;
        assert_eq!(db.store.alias_usage(t, &new).await?.len(), 3);
        assert!(db.store.alias_usage(t, &a).await?.is_empty());
        assert_eq!(
            db.store.alias_usage(t2, &a).await?.len(),
            1,
            "other tenant touched"
        );
        let usage = rekey_store::flows::all_alias_usage(db.store.db(), t).await?;
        assert_eq!(usage.keys().cloned().collect::<Vec<_>>(), vec![new]);
        Ok(())
    })
    .await;
}

fn signing_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

#[tokio::test]
async fn sign_for_step_uses_rows_with_keys_and_skips_the_rest() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let n = names("Orders", "sign")?;
        flow_with_step(db, t, &n, StepOptions::default()).await?;
        let old = alias("old");
        let prepared = alias("prepared"); // listed, no key yet
        db.store
            .add_key(t, &old, &material(&old, "alpha")?, "admin")
            .await?;
        db.store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&old, DigestAlg::Sha256, true, true),
                "dev",
            )
            .await?;
        db.store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&prepared, DigestAlg::Sha512, true, false),
                "dev",
            )
            .await?;
        let payload = b"<order id=\"42\"/>";

        let signed = db
            .store
            .sign_for_step(t, &n.flow, &n.step, payload, signing_time())
            .await?;
        assert_eq!(signed.signers, vec![old.clone()]);
        assert_eq!(signed.skipped, vec![prepared.clone()]);
        assert_eq!(signed.output, signed.der);
        let v = rekey_crypto::verify(
            &signed.der,
            None,
            &[cert("alpha")?],
            CertSource::SuppliedOnly,
        )?;
        assert!(v.attached);
        assert_eq!(v.content, payload);
        assert_eq!(v.signers.len(), 1);
        assert_eq!(v.signers[0].status, SignerStatus::Valid);
        assert_eq!(v.signers[0].certificate, Some(cert("alpha")?.fingerprint()));
        assert_eq!(v.signers[0].signing_time, Some(signing_time()));

        // Putting a key under the prepared alias starts dual signatures.
        db.store
            .add_key(t, &prepared, &material(&prepared, "beta")?, "admin")
            .await?;
        let signed = db
            .store
            .sign_for_step(t, &n.flow, &n.step, payload, signing_time())
            .await?;
        assert_eq!(signed.signers, vec![old.clone(), prepared.clone()]);
        assert!(signed.skipped.is_empty());
        let v = rekey_crypto::verify(
            &signed.der,
            None,
            &[cert("alpha")?, cert("beta")?],
            CertSource::SuppliedOnly,
        )?;
        assert_eq!(v.signers.len(), 2);
        assert!(v.signers.iter().all(|s| s.is_valid()), "{:?}", v.signers);
        let digests: Vec<&str> = {
            let mut d: Vec<&str> = v.signers.iter().map(|s| s.digest.as_str()).collect();
            d.sort();
            d
        };
        assert_eq!(digests, vec!["sha256", "sha512"]);

        // Detached + Base64: the output is Base64 text of a SignedData without the content.
        db.store
            .set_step_options(
                t,
                &n.flow,
                &n.step,
                StepOptions {
                    detached: true,
                    base64: true,
                },
                "dev",
            )
            .await?;
        let signed = db
            .store
            .sign_for_step(t, &n.flow, &n.step, payload, signing_time())
            .await?;
        let text = String::from_utf8(signed.output.clone())?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(compact)?,
            signed.der
        );
        let v = rekey_crypto::verify(
            &signed.der,
            Some(payload),
            &[cert("alpha")?, cert("beta")?],
            CertSource::SuppliedOnly,
        )?;
        assert!(!v.attached);
        assert!(v.signers.iter().all(|s| s.is_valid()));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn signing_with_no_resolvable_row_names_the_step() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let n = names("Orders", "sign-orders")?;
        flow_with_step(db, t, &n, StepOptions::default()).await?;
        // No rows at all.
        let err = db
            .store
            .sign_for_step(t, &n.flow, &n.step, b"x", signing_time())
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::NoSignerResolves { .. })),
            "{err:?}"
        );
        // Rows whose aliases have no key.
        let ghost = alias("ghost");
        db.store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&ghost, DigestAlg::Sha256, true, true),
                "dev",
            )
            .await?;
        let err = db
            .store
            .sign_for_step(t, &n.flow, &n.step, b"x", signing_time())
            .await
            .err();
        let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(err, Some(StoreError::NoSignerResolves { .. })),
            "{err:?}"
        );
        assert!(
            msg.contains("Orders") && msg.contains("sign-orders") && msg.contains("ghost"),
            "{msg}"
        );
        // A removed key no longer signs either.
        let a = alias("was-here");
        db.store
            .add_key(t, &a, &material(&a, "gamma")?, "admin")
            .await?;
        db.store.remove_key(t, &a, "admin").await?;
        db.store
            .add_row(
                t,
                &n.flow,
                &n.step,
                &params(&a, DigestAlg::Sha256, true, true),
                "dev",
            )
            .await?;
        let err = db
            .store
            .sign_for_step(t, &n.flow, &n.step, b"x", signing_time())
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::NoSignerResolves { .. })),
            "{err:?}"
        );
        Ok(())
    })
    .await;
}
