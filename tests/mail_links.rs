//! Action links on SQLite and PostgreSQL: 256-bit tokens stored only as SHA-256, bound to one
//! recipient and one task, looked up without being used, used exactly once (also under
//! concurrent requests), expiring after 72 hours, reissued.

mod common;

use chrono::Duration;
use common::{t0, tenant_with_admin};
use rekey_notifier::links::{self, DEFAULT_TTL, Task};
use rekey_testdb::{TestDb, TestResult, on_both};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_hashed_bound_single_use_expiring_and_reissued() {
    on_both(async |db: &TestDb| -> TestResult {
        let (tenant, user) = tenant_with_admin(db, "ops@acme.example").await?;
        let conn = db.store.db();
        let renewal = Uuid::new_v4();
        let task = Task {
            tenant,
            renewal,
            step: "switch-receiver",
            recipient: "ops@acme.example",
        };
        let (token, expires) = links::issue(conn, task, t0(), DEFAULT_TTL).await?;
        assert_eq!(expires, t0() + Duration::hours(72));
        let text = token.expose().to_string();
        assert_eq!(text.len(), 43, "256 bits in URL-safe Base64");
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert!(!format!("{token:?}").contains(&text), "Debug hides it");

        // Only the hash is stored.
        let stored = rekey_store::link_tokens::all(conn).await?;
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].token_sha256,
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        let dump = format!("{stored:?}");
        assert!(!dump.contains(&text));
        assert_eq!(
            stored[0].user_id,
            Some(user),
            "bound to the recipient's account"
        );

        // GET: look up without using, as often as needed.
        for _ in 0..2 {
            let info = links::lookup(conn, &text, t0() + Duration::hours(1)).await?;
            assert_eq!(info.renewal, renewal);
            assert_eq!(info.step, "switch-receiver");
            assert_eq!(info.recipient, "ops@acme.example");
            assert_eq!(info.used_at, None);
        }
        // POST: once.
        let used = links::consume(conn, &text, t0() + Duration::hours(2)).await?;
        assert_eq!(used.used_at, Some(t0() + Duration::hours(2)));
        for r in [
            links::consume(conn, &text, t0() + Duration::hours(3))
                .await
                .map(|_| ()),
            links::lookup(conn, &text, t0() + Duration::hours(3))
                .await
                .map(|_| ()),
        ] {
            let e = r.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("already used"), "{e}");
        }
        // Unknown tokens, and a token that differs in one character.
        let mut other = text.clone();
        other.replace_range(0..1, if text.starts_with('A') { "B" } else { "A" });
        for t in ["", "nope", other.as_str()] {
            let e = links::lookup(conn, t, t0())
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("not valid"), "{e}");
        }

        // Expiry: 72 hours.
        let (late, _) = links::issue(conn, task, t0(), DEFAULT_TTL).await?;
        links::lookup(conn, late.expose(), t0() + Duration::hours(71)).await?;
        let at = t0() + Duration::hours(72);
        for r in [
            links::lookup(conn, late.expose(), at).await.map(|_| ()),
            links::consume(conn, late.expose(), at).await.map(|_| ()),
        ] {
            let e = r.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("expired"), "{e}");
        }
        // Reissue: a fresh token for the same person and task; the old one stays dead.
        let (fresh, exp) = links::reissue(conn, late.expose(), at, DEFAULT_TTL).await?;
        assert_eq!(exp, at + Duration::hours(72));
        assert_ne!(fresh.expose(), late.expose());
        let info = links::consume(conn, fresh.expose(), at + Duration::hours(1)).await?;
        assert_eq!(
            (info.renewal, info.step.as_str()),
            (renewal, "switch-receiver")
        );
        assert!(
            links::lookup(conn, late.expose(), at - Duration::hours(1))
                .await
                .is_err(),
            "reissuing revokes the old token"
        );

        // A recipient without an account (a receiver's contact address) still gets a link.
        let (anon, _) = links::issue(
            conn,
            Task {
                recipient: "contact@receiver.example",
                ..task
            },
            t0(),
            DEFAULT_TTL,
        )
        .await?;
        let row = rekey_store::link_tokens::find(conn, &anon.hash()).await?;
        assert_eq!(row.and_then(|r| r.user_id), None);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_link_succeed_exactly_once() {
    on_both(async |db: &TestDb| -> TestResult {
        let (tenant, _) = tenant_with_admin(db, "ops@acme.example").await?;
        let task = Task {
            tenant,
            renewal: Uuid::new_v4(),
            step: "confirm",
            recipient: "ops@acme.example",
        };
        let (token, _) = links::issue(db.store.db(), task, t0(), DEFAULT_TTL).await?;
        let other = db.reopen().await?;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let conn = if i % 2 == 0 {
                db.store.db().clone()
            } else {
                other.db().clone()
            };
            let t = token.expose().to_string();
            set.spawn(async move { links::consume(&conn, &t, t0() + Duration::hours(1)).await });
        }
        let mut wins = 0;
        while let Some(r) = set.join_next().await {
            if r?.is_ok() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
        let _ = other.close().await;
        Ok(())
    })
    .await;
}
