//! Email for rekey: renders the outbox rows the engine's shell queues, issues the single-use
//! action links they carry, and delivers them by SMTP or as `.eml` files.
//!
//! - [`render`] turns one outbox row into a subject, a text and an HTML body and attachments
//!   (the new certificate and the test message for the receiver administrator), then into a
//!   [`lettre::Message`] with the row's stable Message-ID, every line ending CRLF and no CR or
//!   LF in any header value.
//! - [`links`] issues, looks up and consumes action-link tokens: 256 random bits, only their
//!   SHA-256 stored, bound to one recipient and one task, expiring, usable once.
//! - [`transport`] delivers: SMTP (STARTTLS, implicit TLS or plain; AUTH; pooled) or files.
//! - [`dispatch`] claims due rows (safe with several rekey processes on one database), sends
//!   them and records the outcome: sent, retry later with back-off, or failed (and the
//!   tenant's administrators told).
//!
//! Invariants, stated as absences: nothing here changes a renewal, the keystore or trust; no
//! action-link token is stored, only its hash; no function reads the clock — time is passed in;
//! no SMTP password is ever printed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dispatch;
mod error;
pub mod links;
pub mod render;
pub mod transport;

pub use dispatch::{DispatchReport, Dispatched, Dispatcher, RetryPolicy};
pub use error::{NotifierError, Result, SendError};
pub use links::{LinkInfo, LinkToken};
pub use rekey_store::mail::OutboxMail;
pub use render::Rendered;
pub use transport::{SmtpSettings, TlsMode, Transport};
