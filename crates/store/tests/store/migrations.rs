//! Schema migrations, connection settings, and the engine's tables.

use rekey_store::db::Backend;
use rekey_store::entity::{outbox, renewal, renewal_step, timer};
use rekey_store::migrate::{self, MIGRATIONS, Migration};
use rekey_store::{ConnectionTrait, StoreError};
use sea_orm::{ActiveValue::Set, DbBackend, EntityTrait, Statement};

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
        let tenant_id = uuid::Uuid::new_v4(); // no such tenant
        let now = rekey_store::db::now();
        let res = renewal::Entity::insert(renewal::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            tenant_id: Set(tenant_id),
            receiver_id: Set(None),
            alias: Set("a".into()),
            procedure: Set("dual-trust".into()),
            status: Set("running".into()),
            state: Set("{}".into()),
            version: Set(0),
            lease_owner: Set(None),
            lease_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(db.store.db())
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
        renewal::Entity::insert(renewal::ActiveModel {
            id: Set(rid),
            tenant_id: Set(t.as_uuid()),
            receiver_id: Set(None),
            alias: Set("signer".into()),
            procedure: Set("dual-trust".into()),
            status: Set("running".into()),
            state: Set(r#"{"step":1}"#.into()),
            version: Set(0),
            lease_owner: Set(Some("server-1".into())),
            lease_until: Set(Some(now)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        renewal_step::Entity::insert(renewal_step::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            renewal_id: Set(rid),
            tenant_id: Set(t.as_uuid()),
            step_key: Set("generate".into()),
            seed_step: Set("1".into()),
            kind: Set("action".into()),
            status: Set("pending".into()),
            state: Set("{}".into()),
            due_at: Set(Some(now)),
            done_by: Set(None),
            done_at: Set(None),
            version: Set(0),
            lease_owner: Set(None),
            lease_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        timer::Entity::insert(timer::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            tenant_id: Set(t.as_uuid()),
            renewal_id: Set(Some(rid)),
            kind: Set("reminder".into()),
            due_at: Set(now),
            status: Set("pending".into()),
            state: Set("{}".into()),
            attempts: Set(0),
            version: Set(0),
            lease_owner: Set(None),
            lease_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        let oid = uuid::Uuid::new_v4();
        outbox::Entity::insert(outbox::ActiveModel {
            id: Set(oid),
            tenant_id: Set(t.as_uuid()),
            renewal_id: Set(Some(rid)),
            message_id: Set(format!("<{oid}@rekey>")),
            recipients: Set(r#"["a@example.com"]"#.into()),
            subject: Set("due".into()),
            state: Set("{}".into()),
            status: Set("pending".into()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(None),
            version: Set(0),
            lease_owner: Set(None),
            lease_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            sent_at: Set(None),
        })
        .exec_without_returning(conn)
        .await?;
        let r = renewal::Entity::find_by_id(rid)
            .one(conn)
            .await?
            .ok_or("renewal")?;
        assert_eq!(r.state, r#"{"step":1}"#);
        assert_eq!(
            r.lease_until,
            Some(now),
            "timestamps must round-trip exactly"
        );
        assert_eq!(r.created_at, now);
        let o = outbox::Entity::find_by_id(oid)
            .one(conn)
            .await?
            .ok_or("outbox")?;
        assert_eq!(o.message_id, format!("<{oid}@rekey>"));
        // message_id is unique: the same mail cannot be queued twice.
        let dup = outbox::Entity::insert(outbox::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            message_id: Set(o.message_id.clone()),
            ..outbox::ActiveModel::from(o.clone())
        })
        .exec_without_returning(conn)
        .await;
        assert!(dup.is_err());
        Ok(())
    })
    .await;
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
