//! The schema migration runner.
//!
//! Migrations are the plain `.sql` files of the top-level `migrations/` folder, embedded at build
//! time. At start-up [`migrate`] applies the ones the database lacks, in order, in one
//! transaction, and records each in `schema_version`. A database whose recorded version is
//! newer than the newest migration this binary knows is refused
//! ([`StoreError::SchemaTooNew`]): an old binary must not write to a schema it does not know.
//!
//! Migration files are portable SQL; statements end with `;` at the end of a line, and lines
//! that start with `--` are comments. Nothing here knows the tables the files create.

use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryOrder,
    Statement,
};

use crate::error::{Result, StoreError};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version: the file's number.
    pub version: i64,
    /// Its name: the rest of the file name.
    pub name: &'static str,
    /// The SQL text.
    pub sql: &'static str,
}

/// Every migration this binary knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "pending_keys",
        sql: include_str!("../../../migrations/0002_pending_keys.sql"),
    },
    Migration {
        version: 3,
        name: "one_live_renewal",
        sql: include_str!("../../../migrations/0003_one_live_renewal.sql"),
    },
    Migration {
        version: 4,
        name: "signer_step_receivers",
        sql: include_str!("../../../migrations/0004_signer_step_receivers.sql"),
    },
    Migration {
        version: 5,
        name: "drop_renewal_steps",
        sql: include_str!("../../../migrations/0005_drop_renewal_steps.sql"),
    },
    Migration {
        version: 6,
        name: "worker_leases",
        sql: include_str!("../../../migrations/0006_worker_leases.sql"),
    },
    Migration {
        version: 7,
        name: "token_keys",
        sql: include_str!("../../../migrations/0007_token_keys.sql"),
    },
    Migration {
        version: 8,
        name: "receiver_as2",
        sql: include_str!("../../../migrations/0008_receiver_as2.sql"),
    },
    Migration {
        version: 9,
        name: "idempotency_keys",
        sql: include_str!("../../../migrations/0009_idempotency_keys.sql"),
    },
    Migration {
        version: 10,
        name: "renewal_read_indexes",
        sql: include_str!("../../../migrations/0010_renewal_read_indexes.sql"),
    },
    Migration {
        version: 11,
        name: "sessions_secrets_token_expiry",
        sql: include_str!("../../../migrations/0011_sessions_secrets_token_expiry.sql"),
    },
    Migration {
        version: 12,
        name: "signer_role",
        sql: include_str!("../../../migrations/0012_signer_role.sql"),
    },
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Schema version before.
    pub from: i64,
    /// Schema version after.
    pub to: i64,
    /// Versions applied now.
    pub applied: Vec<i64>,
}

pub(crate) mod schema_version {
    //! Table `schema_version`: one row per applied migration (created by the runner).
    use sea_orm::entity::prelude::*;

    /// An applied migration.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "schema_version")]
    pub struct Model {
        /// Version number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        /// Migration name.
        pub name: String,
        /// When it was applied.
        pub applied_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Splits a migration file into statements: full-line `--` comments dropped, a statement ends
/// with a line that ends with `;`.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Brings the schema up to [`latest_version`], or refuses a database that is newer.
pub async fn migrate(db: &DatabaseConnection) -> Result<MigrationReport> {
    migrate_to(db, MIGRATIONS).await
}

/// [`migrate`] with an explicit list of migrations (tests use it to simulate other binaries).
pub async fn migrate_to(
    db: &DatabaseConnection,
    migrations: &[Migration],
) -> Result<MigrationReport> {
    let backend = db.get_database_backend();
    let binary = migrations.last().map_or(0, |m| m.version);
    // One transaction for the check and every pending migration. SQLite: BEGIN IMMEDIATE takes
    // the write lock at once; PostgreSQL: an advisory lock keeps two starting servers from
    // migrating at the same time (DDL is transactional on both).
    let txn = crate::db::begin_write(db).await?;
    if backend == DbBackend::Postgres {
        txn.execute_raw(Statement::from_string(
            backend,
            "SELECT pg_advisory_xact_lock(7265006) AS locked",
        ))
        .await?;
    }
    txn.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS schema_version (\
            version BIGINT PRIMARY KEY, \
            name TEXT NOT NULL, \
            applied_at TIMESTAMPTZ NOT NULL)",
    )
    .await?;
    let applied = schema_version::Entity::find()
        .order_by_asc(schema_version::Column::Version)
        .all(&txn)
        .await?;
    let from = applied.last().map_or(0, |m| m.version);
    if from > binary {
        return Err(StoreError::SchemaTooNew {
            database: from,
            binary,
        });
    }
    for row in &applied {
        match migrations.iter().find(|m| m.version == row.version) {
            Some(m) if m.name == row.name => {}
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "schema_version records migration {} ({:?}), which this binary does not have",
                    row.version, row.name
                )));
            }
        }
    }
    let mut done = Vec::new();
    for m in migrations.iter().filter(|m| m.version > from) {
        for stmt in statements(m.sql) {
            txn.execute_unprepared(&stmt)
                .await
                .map_err(|source| StoreError::Migration {
                    version: m.version,
                    name: m.name,
                    source,
                })?;
        }
        schema_version::Entity::insert(schema_version::ActiveModel {
            version: Set(m.version),
            name: Set(m.name.to_string()),
            applied_at: Set(crate::db::now()),
        })
        .exec_without_returning(&txn)
        .await?;
        done.push(m.version);
    }
    txn.commit().await?;
    Ok(MigrationReport {
        from,
        to: done.last().copied().unwrap_or(from),
        applied: done,
    })
}

/// The schema version recorded in the database (0 if none).
pub async fn current_version(db: &impl ConnectionTrait) -> Result<i64> {
    let last = schema_version::Entity::find()
        .order_by_desc(schema_version::Column::Version)
        .one(db)
        .await?;
    Ok(last.map_or(0, |m| m.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        let sql = "-- a comment;\nCREATE TABLE a (\n  x INTEGER\n);\n\nINSERT INTO a VALUES (1);\n-- end\n";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (\n  x INTEGER\n)".to_string(),
                "INSERT INTO a VALUES (1)".to_string()
            ]
        );
    }

    #[test]
    fn versions_increase() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last, "migration {} out of order", m.version);
            last = m.version;
            assert!(!statements(m.sql).is_empty());
        }
        assert_eq!(latest_version(), last);
    }
}
