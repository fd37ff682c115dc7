//! Users, roles and API tokens.

use base64::Engine as _;
use rekey_model::{Email, Grant, ReceiverId, ReceiverName, TenantId, UserId};
use rekey_store::testing;
use rekey_store::{ReceiverProfile, StoreError};
use sha2::{Digest, Sha256};

use crate::common::{on_both, tenant};

#[tokio::test]
async fn users_roles_and_holders() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let r = db
            .store
            .add_receiver(
                t,
                &ReceiverName::parse("gw")?,
                ReceiverProfile::default(),
                "admin",
            )
            .await?;
        let alice = db
            .store
            .add_user(&Email::parse("Alice@Example.com")?, "root")
            .await?;
        assert_eq!(alice.email.as_str(), "alice@example.com");
        let bob = db
            .store
            .add_user(&Email::parse("bob@example.com")?, "root")
            .await?;

        db.store
            .grant(alice.id, Grant::TenantAdmin { tenant: t }, "root")
            .await?;
        db.store
            .grant(alice.id, Grant::IntegrationDeveloper { tenant: t }, "root")
            .await?;
        let b = db
            .store
            .grant(bob.id, Grant::ReceiverAdmin { receiver: r.id }, "root")
            .await?;
        assert_eq!(b.grants, vec![Grant::ReceiverAdmin { receiver: r.id }]);

        let a = db
            .store
            .user_by_email(&Email::parse("ALICE@example.com")?)
            .await?;
        assert!(a.holds(&Grant::TenantAdmin { tenant: t }));
        assert!(a.holds(&Grant::IntegrationDeveloper { tenant: t }));
        assert!(!a.holds(&Grant::ReceiverAdmin { receiver: r.id }));
        assert_eq!(db.store.user(alice.id).await?, a);

        let holders = db
            .store
            .holders(&Grant::ReceiverAdmin { receiver: r.id })
            .await?;
        assert_eq!(
            holders.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![bob.id]
        );
        let holders = db.store.holders(&Grant::TenantAdmin { tenant: t }).await?;
        assert_eq!(
            holders.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![alice.id]
        );
        // Roles are scoped: another tenant's admin role is a different grant.
        let t2 = tenant(db, "other").await?;
        assert!(
            db.store
                .holders(&Grant::TenantAdmin { tenant: t2 })
                .await?
                .is_empty()
        );

        let members = rekey_store::users::tenant_members(db.store.db(), t).await?;
        assert_eq!(members.len(), 2);

        let a = db
            .store
            .revoke(alice.id, Grant::IntegrationDeveloper { tenant: t }, "root")
            .await?;
        assert_eq!(a.grants, vec![Grant::TenantAdmin { tenant: t }]);
        assert_eq!(db.store.users().await?.len(), 2);
        db.store.verify_audit().await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn user_refusals_change_nothing() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let alice = db
            .store
            .add_user(&Email::parse("alice@example.com")?, "root")
            .await?;
        db.store
            .grant(alice.id, Grant::TenantAdmin { tenant: t }, "root")
            .await?;
        let audit_before = db.audit_len().await?;

        // Invalid email: refused while parsing, with a clear message.
        let err = Email::parse("alice at example.com").err();
        let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            msg.starts_with("invalid email address \"alice at example.com\""),
            "{msg}"
        );
        let as_store: Option<StoreError> = err.map(StoreError::from);
        assert!(matches!(as_store, Some(StoreError::Invalid(_))));

        let err = db
            .store
            .add_user(&Email::parse("ALICE@example.com")?, "root")
            .await
            .err();
        assert!(matches!(err, Some(StoreError::DuplicateUser(_))), "{err:?}");
        let err = db
            .store
            .grant(alice.id, Grant::TenantAdmin { tenant: t }, "root")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::DuplicateGrant { .. })),
            "{err:?}"
        );
        let err = db
            .store
            .revoke(alice.id, Grant::IntegrationDeveloper { tenant: t }, "root")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownGrant { .. })),
            "{err:?}"
        );
        let ghost = UserId::from_uuid(uuid::Uuid::new_v4());
        let err = db
            .store
            .grant(ghost, Grant::TenantAdmin { tenant: t }, "root")
            .await
            .err();
        assert!(matches!(err, Some(StoreError::UnknownUser(_))), "{err:?}");
        let err = db
            .store
            .user_by_email(&Email::parse("bob@example.com")?)
            .await
            .err();
        assert!(matches!(err, Some(StoreError::UnknownUser(_))), "{err:?}");
        let nowhere = TenantId::from_uuid(uuid::Uuid::new_v4());
        let err = db
            .store
            .grant(alice.id, Grant::TenantAdmin { tenant: nowhere }, "root")
            .await
            .err();
        assert!(matches!(err, Some(StoreError::UnknownTenant(_))), "{err:?}");
        let no_receiver = ReceiverId::from_uuid(uuid::Uuid::new_v4());
        let err = db
            .store
            .grant(
                alice.id,
                Grant::ReceiverAdmin {
                    receiver: no_receiver,
                },
                "root",
            )
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownReceiverId(_))),
            "{err:?}"
        );

        assert_eq!(db.audit_len().await?, audit_before);
        assert_eq!(
            db.store.user(alice.id).await?.grants,
            vec![Grant::TenantAdmin { tenant: t }]
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn api_tokens_are_stored_as_hashes_only() {
    on_both(async |db| {
        let alice = db
            .store
            .add_user(&Email::parse("alice@example.com")?, "root")
            .await?;
        let bob = db
            .store
            .add_user(&Email::parse("bob@example.com")?, "root")
            .await?;
        let new = db
            .store
            .create_token(alice.id, "laptop", "alice@example.com")
            .await?;
        let token: String = new.token.to_string();
        assert_eq!(token.len(), 43);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token)?;
        assert_eq!(raw.len(), 32, "not 256 bits");
        let other = db
            .store
            .create_token(bob.id, "ci", "bob@example.com")
            .await?;
        assert_ne!(other.token.as_str(), token);

        assert_eq!(db.store.user_for_token(&token).await?.id, alice.id);
        assert_eq!(db.store.user_for_token(&other.token).await?.id, bob.id);

        // Only the SHA-256 is stored; the token appears in no column.
        let rows = testing::api_token_rows(db.store.db()).await?;
        assert_eq!(rows.len(), 2);
        let (_, sha256, _) = rows
            .iter()
            .find(|(id, _, _)| *id == new.id.as_uuid())
            .ok_or("row")?;
        assert_eq!(*sha256, hex::encode(Sha256::digest(token.as_bytes())));
        for (_, _, all) in &rows {
            assert!(!all.contains(&token) && !all.contains(other.token.as_str()));
        }

        // Unknown and revoked tokens do not authenticate.
        let err = db.store.user_for_token("not-a-token").await.err();
        assert!(matches!(err, Some(StoreError::UnknownToken)), "{err:?}");
        db.store.revoke_token(new.id, "alice@example.com").await?;
        let err = db.store.user_for_token(&token).await.err();
        assert!(matches!(err, Some(StoreError::RevokedToken)), "{err:?}");
        let err = db
            .store
            .revoke_token(new.id, "alice@example.com")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownTokenId(_))),
            "{err:?}"
        );
        assert_eq!(db.store.user_for_token(&other.token).await?.id, bob.id);

        let listed = db.store.tokens(alice.id).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].label, "laptop");
        assert!(listed[0].revoked_at.is_some());
        assert_eq!(listed[0].expires_at, None);
        // The secret is not in the Debug output of the creation result either.
        assert!(!format!("{other:?}").contains(other.token.as_str()));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn tokens_expire_and_owners_revoke_only_their_own() {
    on_both(async |db| {
        let alice = db
            .store
            .add_user(&Email::parse("alice@example.com")?, "root")
            .await?;
        let bob = db
            .store
            .add_user(&Email::parse("bob@example.com")?, "root")
            .await?;
        let now = rekey_store::db::now();
        let past = db
            .store
            .create_token_expiring(
                alice.id,
                "old",
                Some(now - chrono::Duration::seconds(1)),
                "root",
            )
            .await?;
        let live = db
            .store
            .create_token_expiring(
                alice.id,
                "new",
                Some(now + chrono::Duration::days(1)),
                "root",
            )
            .await?;
        let err = db.store.user_for_token(&past.token).await.err();
        assert!(matches!(err, Some(StoreError::ExpiredToken)), "{err:?}");
        assert_eq!(db.store.user_for_token(&live.token).await?.id, alice.id);
        let listed = db.store.tokens(alice.id).await?;
        assert!(listed.iter().all(|t| t.expires_at.is_some()));

        // Bob cannot revoke Alice's token (answered as unknown); nothing changes.
        let err = db
            .store
            .revoke_own_token(bob.id, live.id, "bob@example.com")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::UnknownTokenId(_))),
            "{err:?}"
        );
        assert_eq!(db.store.user_for_token(&live.token).await?.id, alice.id);
        db.store
            .revoke_own_token(alice.id, live.id, "alice@example.com")
            .await?;
        let err = db.store.user_for_token(&live.token).await.err();
        assert!(matches!(err, Some(StoreError::RevokedToken)), "{err:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn removing_a_user_ends_tokens_sessions_and_links_and_keeps_an_admin() {
    use rekey_store::{link_tokens, sessions};
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let alice = db
            .store
            .add_user(&Email::parse("alice@example.com")?, "root")
            .await?;
        let bob = db
            .store
            .add_user(&Email::parse("bob@example.com")?, "root")
            .await?;
        db.store
            .grant(alice.id, Grant::TenantAdmin { tenant: t }, "root")
            .await?;
        db.store
            .grant(bob.id, Grant::TenantAdmin { tenant: t }, "root")
            .await?;
        let token = db.store.create_token(bob.id, "ci", "root").await?;
        let now = rekey_store::db::now();
        let later = now + chrono::Duration::hours(1);
        sessions::insert(
            db.store.db(),
            "bob-session",
            &sessions::SessionRow {
                email: "bob@example.com".into(),
                csrf: "c".into(),
                expires_at: later,
            },
            now,
        )
        .await?;
        link_tokens::insert(
            db.store.db(),
            link_tokens::NewLink {
                token_sha256: "bob-link".into(),
                tenant: t.as_uuid(),
                user: Some(bob.id.as_uuid()),
                purpose: "{}".into(),
                expires_at: later,
            },
            now,
        )
        .await?;
        // A running renewal in the tenant.
        testing::insert_raw_renewal(
            db.store.db(),
            &testing::RawRenewal {
                id: uuid::Uuid::new_v4(),
                tenant: t.as_uuid(),
                alias: "sig".into(),
                procedure: "self_signed".into(),
                status: "running".into(),
                state: "{}".into(),
                version: 0,
                lease_owner: None,
                lease_until: None,
                at: now,
            },
        )
        .await?;

        // Bob goes: Alice is still an administrator.
        let audit_before = db.store.audit_entries(0, 10_000).await?.len();
        db.store.remove_user(bob.id, "alice@example.com").await?;
        let err = db.store.user(bob.id).await.err();
        assert!(matches!(err, Some(StoreError::UnknownUser(_))), "{err:?}");
        let err = db.store.user_for_token(&token.token).await.err();
        assert!(matches!(err, Some(StoreError::UnknownToken)), "{err:?}");
        assert_eq!(
            sessions::get(db.store.db(), "bob-session", now).await?,
            None
        );
        let link = link_tokens::find(db.store.db(), "bob-link")
            .await?
            .ok_or("link")?;
        assert!(link.used_at.is_some() && link.user_id.is_none());
        let entries = db.store.audit_entries(0, 10_000).await?;
        let new: Vec<_> = entries[audit_before..]
            .iter()
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(new, ["user.revoke", "user.remove"]);

        // Alice is the last administrator of a tenant with a running renewal: refused,
        // nothing changed (no audit entry, the role still held).
        let err = db
            .store
            .revoke(alice.id, Grant::TenantAdmin { tenant: t }, "root")
            .await
            .err();
        assert!(
            matches!(err, Some(StoreError::LastTenantAdmin { running: 1, .. })),
            "{err:?}"
        );
        let err = db.store.remove_user(alice.id, "root").await.err();
        assert!(
            matches!(err, Some(StoreError::LastTenantAdmin { .. })),
            "{err:?}"
        );
        assert!(
            db.store
                .user(alice.id)
                .await?
                .holds(&Grant::TenantAdmin { tenant: t })
        );
        assert_eq!(
            db.store.audit_entries(0, 10_000).await?.len(),
            entries.len()
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn sessions_expire_and_the_shared_secret_is_made_once() {
    use rekey_store::sessions;
    on_both(async |db| {
        let now = rekey_store::db::now();
        let row = sessions::SessionRow {
            email: "a@example.com".into(),
            csrf: "c".into(),
            expires_at: now + chrono::Duration::minutes(1),
        };
        sessions::insert(db.store.db(), "s1", &row, now).await?;
        assert_eq!(
            sessions::get(db.store.db(), "s1", now).await?,
            Some(row.clone())
        );
        // Past its end it is refused and gone.
        let after = now + chrono::Duration::minutes(2);
        assert_eq!(sessions::get(db.store.db(), "s1", after).await?, None);
        assert_eq!(sessions::get(db.store.db(), "s1", now).await?, None);
        sessions::insert(db.store.db(), "s2", &row, now).await?;
        sessions::delete(db.store.db(), "s2").await?;
        assert_eq!(sessions::get(db.store.db(), "s2", now).await?, None);
        // Inserting prunes the expired.
        sessions::insert(db.store.db(), "s3", &row, now).await?;
        sessions::insert(db.store.db(), "s4", &row, after).await?;
        assert_eq!(
            sessions::get(db.store.db(), "s3", now).await?,
            None,
            "not pruned"
        );

        // Two instances asking at once agree on one secret, the first stored.
        let (a, b) = tokio::join!(
            sessions::shared_secret(db.store.db(), "x", b"aaaa", now),
            sessions::shared_secret(db.store.db(), "x", b"bbbb", now)
        );
        let (a, b) = (a?, b?);
        assert_eq!(a, b);
        assert_eq!(
            sessions::shared_secret(db.store.db(), "x", b"cccc", now).await?,
            a
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_signer_grant_is_scoped_to_a_flow_of_its_tenant() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let other = tenant(db, "other").await?;
        let flow = db
            .store
            .add_flow(t, &rekey_model::FlowName::parse("Orders")?, "admin")
            .await?;
        let erp = db
            .store
            .add_user(&Email::parse("erp@acme.example")?, "root")
            .await?;
        let grant = Grant::Signer {
            tenant: t,
            flow: flow.id,
        };
        let u = db.store.grant(erp.id, grant, "root").await?;
        assert_eq!(u.grants, vec![grant]);
        assert_eq!(
            db.store.user(erp.id).await?.grants,
            vec![grant],
            "read back"
        );
        let holders = db.store.holders(&grant).await?;
        assert_eq!(
            holders.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![erp.id]
        );
        let members = rekey_store::users::tenant_members(db.store.db(), t).await?;
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].1, vec![grant]);

        // A flow named with another tenant is no scope at all: refused, nothing written.
        let before = db.audit_len().await?;
        let wrong = Grant::Signer {
            tenant: other,
            flow: flow.id,
        };
        let err = db.store.grant(erp.id, wrong, "root").await.err();
        assert!(matches!(err, Some(StoreError::UnknownFlowId(_))), "{err:?}");
        assert_eq!(db.audit_len().await?, before);

        let u = db.store.revoke(erp.id, grant, "root").await?;
        assert!(u.grants.is_empty());
        Ok(())
    })
    .await;
}
