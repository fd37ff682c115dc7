//! Tenant state of rekey on SQLite and PostgreSQL: tenants, the outbound keystore (private keys
//! encrypted under a KEK that never enters the database), integration flows with CMS signer
//! steps, receivers, users and roles, API tokens, and the hash-chained audit log; plus the
//! engine's tables — [`renewals`], [`timers`], [`outbox`], [`link_tokens`] — with the one lease
//! claim workers use on them ([`lease`]), and ([`mail`]) the typed content of an outbox row
//! that the shell queues and the notifier renders.
//!
//! Layout: every table has one owner module ([`tenants`], [`keystore`], [`pending`],
//! [`flows`], [`receivers`], [`users`], [`sessions`], [`audit`], [`renewals`], [`timers`],
//! [`outbox`], [`link_tokens`]) with typed functions over a `DatabaseTransaction` or any
//! `ConnectionTrait`, so a caller can make several changes commit together; the sea-orm
//! entities are private to this crate. [`Store`] wraps a connection pool with one method per
//! common operation, each in its own transaction. [`testing`] holds writes only tests make.
//!
//! ```no_run
//! # async fn demo(store: &rekey_store::Store, tenant: rekey_model::TenantId,
//! #     flow: &rekey_model::FlowName, step: &rekey_model::StepName,
//! #     old: &rekey_model::Alias, new: &rekey_model::Alias,
//! #     material: &rekey_store::KeyMaterial) -> Result<(), rekey_store::StoreError> {
//! let txn = store.begin().await?;
//! rekey_store::keystore::add(&txn, store.kek()?, tenant, new, material, "engine").await?;
//! rekey_store::flows::add_row_like(&txn, tenant, flow, step, new, old, "engine").await?;
//! txn.commit().await?; // both changes and their audit entries, or neither
//! # Ok(()) }
//! ```
//!
//! Invariants, stated as absences: no plaintext private key and no KEK is ever written to the
//! database; no API token is stored, only its SHA-256; no mutating function commits on its
//! own; nothing outside this crate names a table's entity; nothing here knows workflows, HTTP or
//! mail delivery.

#![forbid(unsafe_code)]

pub mod as2;
pub mod audit;
pub mod db;
mod entity;
mod error;
pub mod flows;
pub mod idempotency;
pub mod kek;
pub mod keystore;
pub mod lease;
pub mod link_tokens;
pub mod mail;
pub mod migrate;
pub mod outbox;
pub mod pending;
pub mod receivers;
pub mod renewals;
pub mod sessions;
mod store;
pub mod tenants;
pub mod testing;
pub mod timers;
pub mod users;

pub use audit::{AuditEntry, AuditProblem, AuditSummary};
pub use error::{Result, StepRef, StoreError};
pub use flows::{
    Flow, OutputChoice, SignMaterial, SignedMessage, SignerParams, SignerRow, SignerStep,
    StepOptions,
};
pub use kek::{Kek, KekError};
pub use keystore::{ArchiveReason, KeyMaterial, KeystoreEntry};
pub use receivers::{Receiver, ReceiverProfile, TrustedCertificate};
pub use store::Store;
pub use tenants::Tenant;
pub use users::{ApiTokenInfo, NewApiToken, User};

/// Re-exported so callers can name transactions and connections without depending on sea-orm
/// themselves.
pub use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
