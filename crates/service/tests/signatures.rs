//! Test messages are signed with no write transaction open: the procedures whose steps people
//! do (all but the downtime window, whose window the scheduler opens), owner-approved step by
//! step on SQLite and PostgreSQL, signs the test messages of a step that makes no key
//! outside the transaction (and only those of a step that makes one inside), and each test
//! message in the outbox is a SignedData over the test payload whose signatures verify, signed
//! by exactly the certificates the notice names at the step's time.

mod scheduler_common;

use chrono::Duration;
use rekey_crypto::{CertSource, decode_input, verify};
use rekey_engine::{ProcedureId, RenewalStatus};
use rekey_store::mail::{self, OutboxMail};
use rekey_testdb::{TestDb, TestResult, on_both};
use scheduler_common::*;

#[tokio::test]
async fn test_messages_are_signed_outside_the_transaction_and_verify() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db.store.clone());
        let mut outside = 0;
        let procedures = ProcedureId::ALL
            .into_iter()
            .filter(|p| *p != ProcedureId::DowntimeWindow);
        for (i, p) in procedures.enumerate() {
            let setup = setup(&db.store, p, t0()).await?;
            let mut now = t0() + Duration::hours(i as i64);
            let mut out = start(&s, &setup, false, now).await?;
            while out.renewal.status == RenewalStatus::Running {
                now += Duration::minutes(1);
                let before = s.crypto_counts();
                out = perform_next(&s, &out.renewal, now)
                    .await?
                    .ok_or("stuck: nothing due")?;
                let after = s.crypto_counts();
                if after.keys_inside == before.keys_inside {
                    assert_eq!(
                        after.signed_inside, before.signed_inside,
                        "{p}: a step that makes no key signed a test message inside its transaction"
                    );
                }
                outside += after.signed_outside - before.signed_outside;
            }
            assert_eq!(out.renewal.status, RenewalStatus::Completed, "{p}");
        }
        assert!(
            outside > 0,
            "no test message was signed outside a transaction"
        );

        let mut checked = 0;
        for row in rekey_store::outbox::list(db.store.db(), None, None).await? {
            let OutboxMail::Notice(m) = mail::parse(&row.state)? else {
                continue;
            };
            for t in &m.attachments.test_messages {
                let der = decode_input(t.base64.as_bytes())?;
                let v = verify(&der, None, &[], CertSource::EmbeddedAndSupplied)?;
                assert_eq!(v.content, rekey_service::TEST_PAYLOAD, "{}", row.message_id);
                assert!(
                    v.signers.iter().all(|s| s.is_valid()),
                    "{}: {:?}",
                    row.message_id,
                    v.signers
                );
                let mut signed_by: Vec<_> =
                    v.signers.iter().filter_map(|s| s.certificate).collect();
                signed_by.sort();
                let mut named: Vec<_> = m
                    .notice
                    .test_steps
                    .iter()
                    .find(|st| t.signer_steps.contains(&st.signer_step))
                    .map(|st| st.signers.clone())
                    .or_else(|| m.notice.test_message.clone())
                    .ok_or("a test message no notice asked for")?;
                named.sort();
                assert_eq!(signed_by, named, "{}", row.message_id);
                checked += 1;
            }
        }
        assert!(checked > 0, "no test message in the outbox");
        Ok(())
    })
    .await;
}
