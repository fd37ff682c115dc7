//! Email for rekey: renders the outbox rows the engine's shell queues and delivers them.
//!
//! Rendering and SMTP/file delivery are not implemented yet; until then queued mail stays in
//! the `outbox` table, where `rekey renewal report` shows it.

#![forbid(unsafe_code)]
