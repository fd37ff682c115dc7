//! Errors of the notifier.

use thiserror::Error;
use uuid::Uuid;

/// Why a notifier operation failed.
#[derive(Debug, Error)]
pub enum NotifierError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] rekey_store::StoreError),
    /// An outbox row whose stored state cannot be read.
    #[error("outbox row {id}: {reason}")]
    BadRow {
        /// The row.
        id: Uuid,
        /// What is wrong with it.
        reason: String,
    },
    /// A header value carrying CR or LF, which would let it add headers or SMTP commands.
    #[error("refusing {field} {value:?}: a header value must not contain CR or LF")]
    HeaderInjection {
        /// Which header.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// An address that cannot be used.
    #[error("{field} {value:?} is not a usable email address: {reason}")]
    Address {
        /// Which header.
        field: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The message could not be built.
    #[error("cannot build the message: {0}")]
    Message(String),
    /// Transport settings that cannot be used.
    #[error("mail transport: {0}")]
    Config(String),
    /// No outbox row with this id.
    #[error("no mail {0} in the outbox")]
    UnknownMail(Uuid),
    /// A link token that is unknown, expired or used.
    #[error("{0}")]
    Link(String),
}

/// Why one delivery attempt failed: worth retrying (server down, 4xx) or not (5xx address
/// rejected, malformed message).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// Try again later.
    #[error("temporary failure: {0}")]
    Retryable(String),
    /// Retrying will not help.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The row itself cannot be read or rendered: a bug in rekey, not a delivery problem, so
    /// it is never reported as an undeliverable address.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias.
pub type Result<T, E = NotifierError> = std::result::Result<T, E>;
