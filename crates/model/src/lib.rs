//! rekey's domain vocabulary, one type per word, at the bottom of the workspace.
//!
//! Every value a person or another program hands rekey — an alias, a name, an email address, a
//! role, a certificate fingerprint, a procedure, an id — is parsed once at the edge into one of these types,
//! with an [`InvalidInput`] (or [`FingerprintError`]) naming what was wrong; past the edge no
//! code cleans up or re-checks text. The status enums spell exactly what the database's
//! `status` columns hold.
//!
//! This crate does no I/O and knows nothing of databases, HTTP, mail or cryptography: the
//! engine, the store and the crypto crate all build on it, so each word has one owner.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod fingerprint;
mod ids;
mod input;
mod names;
mod procedure;
mod role;
mod status;

pub use fingerprint::{Fingerprint, FingerprintError};
pub use ids::{EntryId, FlowId, ReceiverId, StepId, TenantId, TokenId, UserId};
pub use input::InvalidInput;
pub use names::{Alias, As2Id, Email, FlowName, ReceiverName, StepName, TenantName};
pub use procedure::{ProcedureId, UnknownProcedure};
pub use role::{Grant, Role};
pub use status::{OutboxStatus, RenewalStatus, TimerStatus};
