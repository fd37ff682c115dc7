//! Receivers: profile, administrator contacts, trusted certificates.

use rekey_model::{Email, ReceiverName, TenantId};
use rekey_store::{ReceiverProfile, StoreError};

use crate::common::{cert, on_both, tenant};

#[tokio::test]
async fn receiver_profile_contacts_and_trust() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let name = ReceiverName::parse("ACME AS2 gateway")?;
        let profile = ReceiverProfile {
            verifies_multiple_keys: false,
            accepts_multiple_signatures: true,
        };
        let r = db.store.add_receiver(t, &name, profile, "admin").await?;
        assert_eq!(r.profile, profile);

        let ops = Email::parse("ops@acme.example")?;
        let lead = Email::parse("Lead@ACME.example")?;
        db.store.add_receiver_admin(t, &name, &ops, "admin").await?;
        let r2 = db
            .store
            .add_receiver_admin(t, &name, &lead, "admin")
            .await?;
        assert_eq!(r2.admin_emails, vec![lead.clone(), ops.clone()]);

        let alpha = cert("alpha")?;
        let beta = cert("beta")?;
        let tc = db
            .store
            .trust_certificate(t, &name, &alpha, "receiver-admin")
            .await?;
        assert_eq!(tc.fingerprint, alpha.fingerprint());
        db.store
            .trust_certificate(t, &name, &beta, "receiver-admin")
            .await?;
        let mut expected = vec![alpha.fingerprint(), beta.fingerprint()];
        expected.sort();
        let trusted = db.store.trusted_certificates(t, &name).await?;
        assert_eq!(
            trusted.iter().map(|c| c.fingerprint).collect::<Vec<_>>(),
            expected
        );
        let stored_alpha = trusted
            .iter()
            .find(|c| c.fingerprint == alpha.fingerprint())
            .ok_or("alpha")?;
        assert_eq!(stored_alpha.certificate.to_der(), alpha.to_der());
        assert_eq!(stored_alpha.subject, alpha.subject());

        db.store
            .untrust_certificate(t, &name, &alpha.fingerprint(), "receiver-admin")
            .await?;
        let trusted = db.store.trusted_certificates(t, &name).await?;
        assert_eq!(
            trusted.iter().map(|c| c.fingerprint).collect::<Vec<_>>(),
            vec![beta.fingerprint()]
        );

        let new_profile = ReceiverProfile {
            verifies_multiple_keys: true,
            accepts_multiple_signatures: false,
        };
        let r3 = db
            .store
            .set_receiver_profile(t, &name, new_profile, "admin")
            .await?;
        assert_eq!(r3.profile, new_profile);
        db.store
            .remove_receiver_admin(t, &name, &ops, "admin")
            .await?;

        let shown = db.store.receiver(t, &name).await?;
        assert_eq!(shown.profile, new_profile);
        assert_eq!(shown.admin_emails, vec![lead]);
        assert_eq!(shown.trusted.len(), 1);
        assert_eq!(db.store.receiver_by_id(r.id).await?, shown);
        assert_eq!(db.store.receivers(t).await?, vec![shown]);
        db.store.verify_audit().await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn receiver_refusals_change_nothing() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let name = ReceiverName::parse("gateway")?;
        db.store
            .add_receiver(t, &name, ReceiverProfile::default(), "admin")
            .await?;
        let ops = Email::parse("ops@acme.example")?;
        db.store.add_receiver_admin(t, &name, &ops, "admin").await?;
        db.store
            .trust_certificate(t, &name, &cert("alpha")?, "admin")
            .await?;
        let before = db.store.receiver(t, &name).await?;
        let audit_before = db.audit_len().await?;

        let err = db
            .store
            .add_receiver(t, &name, ReceiverProfile::default(), "admin")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateReceiver { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .add_receiver_admin(t, &name, &ops, "admin")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateReceiverAdmin { .. })),
            "{err:?}"
        );
        let other = Email::parse("nobody@acme.example")?;
        let err = db
            .store
            .remove_receiver_admin(t, &name, &other, "admin")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownReceiverAdmin { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .trust_certificate(t, &name, &cert("alpha")?, "admin")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateTrustedCertificate { .. })),
            "{err:?}"
        );
        let beta_fp = cert("beta")?.fingerprint();
        let err = db
            .store
            .untrust_certificate(t, &name, &beta_fp, "admin")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownTrustedCertificate { .. })),
            "{err:?}"
        );
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains(&beta_fp.to_string())
        );

        let missing = ReceiverName::parse("missing")?;
        let err = db.store.receiver(t, &missing).await.err();
        assert!(
            matches!(err, Some(StoreError::UnknownReceiver { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .trust_certificate(t, &missing, &cert("beta")?, "admin")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownReceiver { .. })),
            "{err:?}"
        );
        let nobody = TenantId::from_uuid(uuid::Uuid::new_v4());
        let err = db.store.receiver(nobody, &name).await.err();
        assert!(matches!(err, Some(StoreError::UnknownTenant(_))), "{err:?}");
        // A receiver of one tenant is not visible from another.
        let t2 = tenant(db, "other").await?;
        let err = db.store.receiver(t2, &name).await.err();
        assert!(
            matches!(err, Some(StoreError::UnknownReceiver { .. })),
            "{err:?}"
        );

        assert_eq!(db.store.receiver(t, &name).await?, before);
        assert_eq!(
            db.audit_len().await?,
            audit_before + 1,
            "only the second tenant was audited"
        );
        Ok(())
    })
    .await;
}
