//! Schema migrations, connection settings, and the engine's tables.

use rekey_store::db::Backend;
use rekey_store::migrate::{self, MIGRATIONS, Migration};
use rekey_store::testing::{self, RawOutbox, RawRenewal};
use rekey_store::{ConnectionTrait, StoreError};
use rekey_store::{outbox, timers};
use sea_orm::{DbBackend, Statement};

use crate::common::{on_both, tenant};

#[tokio::test]
async fn fresh_database_is_at_latest_version_and_reopen_applies_nothing() {
    on_both(async |db| {
        let latest = migrate::latest_version();
        assert_eq!(db.store.migration().from, 0);
        assert_eq!(db.store.migration().to, latest);
        assert_eq!(
            db.store.migration().applied,
            MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
        );
        assert_eq!(migrate::current_version(db.store.db()).await?, latest);
        let again = db.reopen().await?;
        assert_eq!(again.migration().from, latest);
        assert!(again.migration().applied.is_empty());
        again.close().await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn newer_schema_is_refused_naming_both_versions() {
    on_both(async |db| {
        let latest = migrate::latest_version();
        let future = latest + 1;
        let backend = db.store.db().get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => format!(
                "INSERT INTO schema_version (version, name, applied_at) VALUES ({future}, 'from_the_future', NOW())"
            ),
            _ => format!(
                "INSERT INTO schema_version (version, name, applied_at) VALUES ({future}, 'from_the_future', '2030-01-01T00:00:00Z')"
            ),
        };
        db.store
            .db()
            .execute_raw(Statement::from_string(backend, sql))
            .await?;
        let err = db.reopen().await.err();
        match &err {
            Some(StoreError::SchemaTooNew { database, binary }) => {
                assert_eq!((*database, *binary), (future, latest));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains(&future.to_string()) && msg.contains(&latest.to_string()),
            "{msg}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_failing_migration_applies_nothing() {
    on_both(async |db| {
        let mut list: Vec<Migration> = MIGRATIONS.to_vec();
        let next = migrate::latest_version() + 1;
        list.push(Migration {
            version: next,
            name: "broken",
            sql: "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;\n",
        });
        let err = migrate::migrate_to(db.store.db(), &list).await.err();
        assert!(
            matches!(err, Some(StoreError::Migration { version, .. }) if version == next),
            "{err:?}"
        );
        assert_eq!(
            migrate::current_version(db.store.db()).await?,
            next - 1,
            "version recorded although the migration failed"
        );
        // The first statement of the failed migration was rolled back with it.
        let probe = db
            .store
            .db()
            .execute_unprepared("SELECT x FROM half_done")
            .await;
        assert!(probe.is_err(), "table of a failed migration exists");

        // A good next migration applies and is recorded.
        list.pop();
        list.push(Migration {
            version: next,
            name: "good",
            sql: "CREATE TABLE added_later (x INTEGER);\n",
        });
        let report = migrate::migrate_to(db.store.db(), &list).await?;
        assert_eq!(report.applied, vec![next]);
        db.store
            .db()
            .execute_unprepared("INSERT INTO added_later (x) VALUES (1)")
            .await?;
        // ...and the binary without it now refuses this database.
        let err = db.reopen().await.err();
        assert!(
            matches!(err, Some(StoreError::SchemaTooNew { .. })),
            "{err:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn sqlite_gets_wal_full_sync_busy_timeout_and_foreign_keys() {
    on_both(async |db| {
        if db.backend != Backend::Sqlite {
            return Ok(());
        }
        let conn = db.store.db();
        let pragma =
            async |name: &str| -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
                let row = conn
                    .query_one_raw(Statement::from_string(
                        DbBackend::Sqlite,
                        format!("PRAGMA {name}"),
                    ))
                    .await?
                    .ok_or("no row")?;
                let v: Result<String, _> = row.try_get_by_index(0);
                match v {
                    Ok(s) => Ok(s),
                    Err(_) => Ok(row.try_get_by_index::<i64>(0)?.to_string()),
                }
            };
        assert_eq!(pragma("journal_mode").await?.to_lowercase(), "wal");
        assert_eq!(pragma("synchronous").await?, "2", "synchronous is not FULL");
        assert_eq!(pragma("foreign_keys").await?, "1");
        assert_eq!(
            pragma("busy_timeout").await?,
            rekey_store::db::SQLITE_BUSY_TIMEOUT.as_millis().to_string()
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn foreign_keys_are_enforced() {
    on_both(async |db| {
        let now = rekey_store::db::now();
        let res = testing::insert_raw_renewal(
            db.store.db(),
            &RawRenewal {
                id: uuid::Uuid::new_v4(),
                tenant: uuid::Uuid::new_v4(), // no such tenant
                alias: "a".into(),
                procedure: "dual-trust".into(),
                status: "running".into(),
                state: "{}".into(),
                version: 0,
                lease_owner: None,
                lease_until: None,
                at: now,
            },
        )
        .await;
        assert!(res.is_err(), "row with unknown tenant accepted");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn engine_tables_round_trip() {
    on_both(async |db| {
        let t = tenant(db, "acme").await?;
        let now = rekey_store::db::now();
        let rid = uuid::Uuid::new_v4();
        let conn = db.store.db();
        let written = RawRenewal {
            id: rid,
            tenant: t.as_uuid(),
            alias: "signer".into(),
            procedure: "dual-trust".into(),
            status: "running".into(),
            state: r#"{"step":1}"#.into(),
            version: 0,
            lease_owner: Some("server-1".into()),
            lease_until: Some(now),
            at: now,
        };
        testing::insert_raw_renewal(conn, &written).await?;
        timers::schedule(
            conn,
            t,
            rid,
            Some("generate".into()),
            rekey_engine::TimerKind::Reminder,
            now,
            now,
        )
        .await?;
        let oid = uuid::Uuid::new_v4();
        let raw = RawOutbox {
            id: oid,
            tenant: t.as_uuid(),
            renewal: Some(rid),
            message_id: format!("<{oid}@rekey>"),
            recipients: "a@example.com".into(),
            subject: "due".into(),
            state: "{}".into(),
            at: now,
        };
        testing::queue_raw(conn, raw.clone()).await?;
        let r = testing::raw_renewal(conn, rid).await?.ok_or("renewal")?;
        assert_eq!(r, written, "state and timestamps must round-trip exactly");
        let timer = timers::of_renewal(conn, rid).await?;
        assert_eq!(timer.len(), 1);
        assert_eq!((timer[0].due_at, timer[0].kind.as_str()), (now, "reminder"));
        let o = outbox::get(conn, oid).await?.ok_or("outbox")?;
        assert_eq!(o.message_id, format!("<{oid}@rekey>"));
        assert_eq!(o.next_attempt_at, now);
        // message_id is unique: the same mail cannot be queued twice.
        let dup = testing::queue_raw(
            conn,
            RawOutbox {
                id: uuid::Uuid::new_v4(),
                ..raw
            },
        )
        .await;
        assert!(dup.is_err());
        Ok(())
    })
    .await;
}

/// Migration 5 drops the never-written `renewal_steps` and rebuilds `link_tokens` without
/// its `renewal_step_id`: the links issued before keep working.
#[tokio::test]
async fn dropping_renewal_steps_keeps_the_issued_links() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let conn = rekey_store::db::connect(&url).await.expect("connect");
    let before: Vec<Migration> = MIGRATIONS
        .iter()
        .copied()
        .filter(|m| m.version < 5)
        .collect();
    migrate::migrate_to(&conn, &before)
        .await
        .expect("migrations 1-4");
    let now = rekey_store::db::now();
    let tenant = uuid::Uuid::new_v4();
    for (sql, values) in [
        (
            "INSERT INTO tenants (id, name, created_at, updated_at) VALUES (?, 'acme', ?, ?)",
            vec![tenant.into(), now.into(), now.into()],
        ),
        (
            "INSERT INTO link_tokens (token_sha256, tenant_id, renewal_step_id, user_id, purpose, \
             expires_at, used_at, created_at) VALUES ('abc', ?, NULL, NULL, '{}', ?, NULL, ?)",
            vec![tenant.into(), now.into(), now.into()],
        ),
    ] {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await
        .expect("old rows");
    }
    let report = migrate::migrate_to(&conn, MIGRATIONS)
        .await
        .expect("migration 5");
    assert_eq!(report.applied.first(), Some(&5), "{report:?}");
    let link = rekey_store::link_tokens::find(&conn, "abc")
        .await
        .expect("read")
        .expect("the link survived");
    assert_eq!((link.tenant_id, link.expires_at), (tenant, now));
    for gone in [
        "SELECT COUNT(*) FROM renewal_steps",
        "SELECT renewal_step_id FROM link_tokens",
    ] {
        assert!(conn.execute_unprepared(gone).await.is_err(), "{gone}");
    }
}

#[tokio::test]
async fn unsupported_url_is_refused() {
    let err = rekey_store::Store::open("mysql://root:pw@localhost/x")
        .await
        .err();
    assert!(
        matches!(&err, Some(StoreError::UnsupportedUrl { scheme }) if scheme == "mysql"),
        "{err:?}"
    );
}

/// Migration 12 rebuilds `user_roles` (its role CHECK now allows `signer`): grants held before it
/// are kept and read back, on SQLite and on PostgreSQL.
#[tokio::test]
async fn the_signer_migration_keeps_the_grants_held_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let pg = match std::env::var("REKEY_TEST_POSTGRES_URL") {
        Ok(server) => Some(
            rekey_testdb::PgDatabase::create(&server, "rekey_migrate")
                .await
                .expect("a PostgreSQL test database"),
        ),
        Err(_) => None,
    };
    let urls = std::iter::once(sqlite).chain(pg.as_ref().map(|p| p.url().to_string()));
    let (tenant, user) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for url in urls {
        let conn = sea_orm::Database::connect(&url).await.expect("connects");
        let before: Vec<Migration> = MIGRATIONS
            .iter()
            .copied()
            .filter(|m| m.version < 12)
            .collect();
        migrate::migrate_to(&conn, &before)
            .await
            .expect("migrates to 11");
        // How each back end spells a UUID and a time (sea-orm keeps UUIDs as blobs in SQLite).
        let postgres = conn.get_database_backend() == DbBackend::Postgres;
        let id = |u: uuid::Uuid| {
            if postgres {
                format!("'{u}'::uuid")
            } else {
                format!("X'{}'", u.simple())
            }
        };
        let at = if postgres {
            "'2026-01-01T00:00:00Z'::timestamptz"
        } else {
            "'2026-01-01T00:00:00+00:00'"
        };
        for sql in [
            format!(
                "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ({}, 'acme', {at}, {at})",
                id(tenant)
            ),
            format!(
                "INSERT INTO users (id, email, created_at) VALUES ({}, 'alice@acme.example', {at})",
                id(user)
            ),
            format!(
                "INSERT INTO user_roles (user_id, role, scope_id, tenant_id, receiver_id, created_at) \
                 VALUES ({}, 'tenant_admin', {}, {}, NULL, {at})",
                id(user),
                id(tenant),
                id(tenant)
            ),
        ] {
            conn.execute_unprepared(&sql).await.expect(&sql);
        }
        conn.close().await.expect("closes");
        let store = rekey_store::Store::open(&url)
            .await
            .expect("opens and migrates");
        assert_eq!(store.migration().applied, vec![12]);
        let alice = store
            .user_by_email(&rekey_model::Email::parse("alice@acme.example").expect("email"))
            .await
            .expect("alice is still there");
        assert_eq!(
            alice.grants,
            vec![rekey_model::Grant::TenantAdmin {
                tenant: rekey_model::TenantId::from_uuid(tenant)
            }]
        );
        store.close().await.expect("closes");
    }
}
