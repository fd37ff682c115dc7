//! rekey's renewal procedures as a pure state machine.
//!
//! `workflows/*.toml` define the four procedures of the seed ([`definition`]); [`machine`]
//! runs one renewal through them: events in, new state and [`Effect`]s out. The guard checks
//! every change to what the signer produces or the receiver trusts against a model of the
//! receiver ([`world`]) and refuses any that would make it reject a message.
//!
//! Who may see a renewal and act on its steps is decided in one place, [`access`], for every
//! interface. The engine speaks the shared vocabulary of `rekey-model` (ids, aliases, roles,
//! fingerprints, statuses), never bare strings for them.
//!
//! This crate knows nothing of databases, mail, HTTP, cryptography or the clock: the shell
//! passes the time in and carries the effects out.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod choose;
pub mod definition;
pub mod machine;
pub mod world;

pub use definition::{Catalog, DefinitionError, Procedure, ProcedureId, Role, StepDef, StepKind};
pub use machine::{
    Actor, Effect, Event, Grant, Notice, NoticeKind, Renewal, RenewalStatus, StartParams,
    StepSigners, StepStatus, TimerKind, Transition, apply, start, task_test_signers,
};
pub use rekey_model::{Alias, Fingerprint, ReceiverId, TenantId};
pub use world::{Change, OtherReceiver, Profile, SignerStepModel, World};

use thiserror::Error;

/// Why the engine refused an event. Nothing changed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Refusal {
    /// The actor does not hold the step's role in the renewal's scope.
    #[error(
        "step {step}: only a user holding the {role} role of this renewal may do this, and {actor} does not"
    )]
    WrongRole {
        /// Step (or operation).
        step: String,
        /// Role needed.
        role: Role,
        /// Who tried.
        actor: String,
    },
    /// The step is not due yet.
    #[error("step {step} is not due yet: waiting for {waiting_for}")]
    NotDue {
        /// Step.
        step: String,
        /// What it waits for.
        waiting_for: String,
    },
    /// The step is already done.
    #[error("step {step} is already done")]
    AlreadyDone {
        /// Step.
        step: String,
    },
    /// The fingerprint given is not the new certificate's.
    #[error(
        "step {step}: fingerprint {given:?} does not match the new certificate; check the certificate installed in the receiver and give its SHA-256 fingerprint"
    )]
    WrongFingerprint {
        /// Step.
        step: String,
        /// What was given.
        given: String,
    },
    /// The change would make the receiver reject messages.
    #[error("step {step} refused: {reason}")]
    Unsafe {
        /// Step.
        step: String,
        /// Why the receiver would reject.
        reason: String,
    },
    /// The receiver's profile does not allow the procedure.
    #[error("procedure {procedure} is not allowed for this receiver: {reason}")]
    ProcedureNotAllowed {
        /// The procedure asked for.
        procedure: ProcedureId,
        /// Why not.
        reason: String,
    },
    /// No such step in the procedure.
    #[error("unknown step {step:?}")]
    UnknownStep {
        /// The id given.
        step: String,
    },
    /// The renewal is over.
    #[error("the renewal is {status}")]
    Finished {
        /// Its status.
        status: RenewalStatus,
    },
    /// Anything else the event got wrong.
    #[error("step {step}: {reason}")]
    Invalid {
        /// Step (or operation).
        step: String,
        /// What is wrong.
        reason: String,
    },
}
