//! The hash-chained audit log: one entry per change, in the change's transaction; tampering
//! (modified, deleted, reordered entries) is detected and named; concurrent writers do not fork
//! the chain; several operations commit together or not at all.

use rekey_model::{FlowName, ReceiverName, StepName, TenantId, TenantName};
use rekey_store::audit::{self, AuditProblem};
use rekey_store::testing;
use rekey_store::{ReceiverProfile, StepOptions, StoreError};

use crate::common::{TestDb, alias, material, on_both, tenant};

/// Makes five audited changes; returns the tenant.
async fn five_changes(db: &TestDb) -> Result<TenantId, StoreError> {
    let t = tenant(db, "acme").await?;
    let f = FlowName::parse("Orders")?;
    db.store.add_flow(t, &f, "dev@example.com").await?;
    db.store
        .add_step(
            t,
            &f,
            &StepName::parse("sign")?,
            StepOptions::default(),
            "dev@example.com",
        )
        .await?;
    db.store
        .add_receiver(
            t,
            &ReceiverName::parse("gw")?,
            ReceiverProfile::default(),
            "admin@example.com",
        )
        .await?;
    let a = alias("signer");
    db.store
        .add_key(t, &a, &material(&a, "alpha")?, "admin@example.com")
        .await?;
    Ok(t)
}

fn expect_tampered(
    res: Result<rekey_store::AuditSummary, StoreError>,
    seq: i64,
    problem: AuditProblem,
) -> Result<(), String> {
    match res {
        Err(StoreError::AuditTampered { seq: s, problem: p }) if s == seq && p == problem => Ok(()),
        other => Err(format!(
            "expected tampering at {seq} ({problem:?}), got {other:?}"
        )),
    }
}

#[tokio::test]
async fn every_change_appends_one_chained_entry() {
    on_both(async |db| {
        let t = five_changes(db).await?;
        let entries = db.store.audit_entries(0, 100).await?;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            vec![
                "tenant.create",
                "flow.add",
                "flow.step.add",
                "receiver.add",
                "keystore.add"
            ]
        );
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(entries[0].prev_hash, audit::GENESIS_HASH);
        for w in entries.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        assert_eq!(entries[4].actor, "admin@example.com");
        assert_eq!(entries[4].subject, "alias signer");
        assert_eq!(entries[4].tenant, Some(t));
        assert!(entries[4].after.contains("SHA-256"), "{}", entries[4].after);
        // The stored hash is the canonical hash of the stored fields.
        let e = &entries[4];
        assert_eq!(
            e.hash,
            audit::entry_hash(
                &e.prev_hash,
                e.seq,
                e.at,
                &e.actor,
                &e.action,
                e.tenant,
                &e.subject,
                &e.before,
                &e.after
            )
        );
        let summary = db.store.verify_audit().await?;
        assert_eq!(summary.entries, 5);
        assert_eq!(summary.head_hash, entries[4].hash);
        assert_eq!(audit::tenant_entries(db.store.db(), t).await?.len(), 5);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_modified_entry_is_named() {
    on_both(async |db| {
        five_changes(db).await?;
        testing::tamper_audit_actor(db.store.db(), 2, "mallory@example.com", None).await?;
        expect_tampered(db.store.verify_audit().await, 2, AuditProblem::Modified)?;
        let msg = db
            .store
            .verify_audit()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("entry 2") && msg.contains("modified"), "{msg}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_modified_and_rehashed_entry_breaks_the_next_link() {
    on_both(async |db| {
        five_changes(db).await?;
        let conn = db.store.db();
        let e = audit::entries(conn, 1, 1)
            .await?
            .into_iter()
            .next()
            .ok_or("entry 2")?;
        let forged = audit::entry_hash(
            &e.prev_hash,
            e.seq,
            e.at,
            "mallory@example.com",
            &e.action,
            e.tenant,
            &e.subject,
            &e.before,
            &e.after,
        );
        testing::tamper_audit_actor(conn, 2, "mallory@example.com", Some(forged)).await?;
        expect_tampered(db.store.verify_audit().await, 3, AuditProblem::OutOfOrder)?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_deleted_entry_is_named() {
    on_both(async |db| {
        five_changes(db).await?;
        testing::delete_audit(db.store.db(), 3, 3).await?;
        expect_tampered(db.store.verify_audit().await, 3, AuditProblem::Missing)?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deleting_the_last_entries_is_detected() {
    on_both(async |db| {
        five_changes(db).await?;
        testing::delete_audit(db.store.db(), 4, i64::MAX).await?;
        expect_tampered(db.store.verify_audit().await, 4, AuditProblem::Missing)?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn reordered_entries_are_named() {
    on_both(async |db| {
        five_changes(db).await?;
        let conn = db.store.db();
        // Swap entries 2 and 3 (via a free sequence number).
        for (from, to) in [(2i64, -1i64), (3, 2), (-1, 3)] {
            testing::renumber_audit(conn, from, to).await?;
        }
        expect_tampered(db.store.verify_audit().await, 2, AuditProblem::OutOfOrder)?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn several_operations_commit_together_or_not_at_all() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let f = FlowName::parse("Orders")?;
        let s = StepName::parse("sign")?;
        db.store.add_flow(t, &f, "dev").await?;
        db.store
            .add_step(t, &f, &s, StepOptions::default(), "dev")
            .await?;
        let old = alias("old");
        db.store
            .add_row(
                t,
                &f,
                &s,
                &rekey_store::SignerParams {
                    alias: old.clone(),
                    digest: rekey_crypto::DigestAlg::Sha256,
                    include_certs: true,
                    include_signing_time: false,
                },
                "dev",
            )
            .await?;
        let audit_before = db.audit_len().await?;
        let new = alias("new");
        let kek = db.store.kek()?;

        // Dropped without commit: nothing of it stays.
        {
            let txn = db.store.begin().await?;
            rekey_store::keystore::add(&txn, kek, t, &new, &material(&new, "beta")?, "engine")
                .await?;
            rekey_store::flows::add_row_like(&txn, t, &f, &s, &new, &old, "engine").await?;
        }
        assert!(db.store.key_entries(t).await?.is_empty());
        assert_eq!(db.store.step(t, &f, &s).await?.aliases(), vec![old.clone()]);
        assert_eq!(db.audit_len().await?, audit_before);

        // A later step fails: the caller drops the transaction, the earlier step is undone too.
        {
            let txn = db.store.begin().await?;
            rekey_store::keystore::add(&txn, kek, t, &new, &material(&new, "beta")?, "engine")
                .await?;
            let err = rekey_store::flows::add_row_like(
                &txn,
                t,
                &f,
                &s,
                &new,
                &alias("missing"),
                "engine",
            )
            .await
            .err();
            assert!(
                matches!(err, Some(StoreError::UnknownSignerRow { .. })),
                "{err:?}"
            );
        }
        assert!(db.store.key_entries(t).await?.is_empty());
        assert_eq!(db.audit_len().await?, audit_before);

        // Committed: both changes and both audit entries.
        let txn = db.store.begin().await?;
        rekey_store::keystore::add(&txn, kek, t, &new, &material(&new, "beta")?, "engine").await?;
        rekey_store::flows::add_row_like(&txn, t, &f, &s, &new, &old, "engine").await?;
        txn.commit().await?;
        assert_eq!(db.store.key_entries(t).await?.len(), 1);
        assert_eq!(db.store.step(t, &f, &s).await?.aliases(), vec![old, new]);
        assert_eq!(db.audit_len().await?, audit_before + 2);
        db.store.verify_audit().await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_do_not_fork_the_chain() {
    on_both(async |db| {
        // Two independent pools, as two servers on one database would have.
        let stores = [db.store.clone(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..12 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                let name = TenantName::parse(&format!("tenant-{i}"))?;
                let t = store.create_tenant(&name, "load").await?;
                store.add_flow(t.id, &FlowName::parse("f")?, "load").await?;
                Ok::<_, StoreError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let summary = db.store.verify_audit().await?;
        assert_eq!(summary.entries, 24);
        let entries = db.store.audit_entries(0, 100).await?;
        assert_eq!(entries.len(), 24);
        assert_eq!(db.store.tenants().await?.len(), 12);
        Ok(())
    })
    .await;
}
