//! Integration tests of rekey-store, each against SQLite and (with `REKEY_TEST_POSTGRES_URL`)
//! PostgreSQL.

mod common;

mod audit;
mod flows;
mod keystore;
mod migrations;
mod receivers;
mod send;
mod statuses;
mod users;
