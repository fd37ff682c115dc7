//! The shell around rekey's engine.
//!
//! For every event: open one database transaction, load the renewal and the [`World`] from the
//! store, let the pure engine decide, carry out its effects (keystore, signer steps, recorded
//! receiver trust, outbox rows, timers, audit entries) and save the renewal — then commit, so a
//! step's effects and its state change land together or not at all.
//!
//! Every interface (CLI, HTTP, web inbox, demo) goes through [`Service`], so every one gets the
//! engine's role rules and refusals.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod as2;
mod cpu;
pub mod demo;
pub mod failpoint;
pub mod http;
pub mod sapci;
pub mod sapci_sync;
pub mod scheduler;
mod shell;
pub mod tokens;
pub mod watch;
mod world;

pub use shell::{
    As2CheckReport, CryptoCounts, DEFAULT_CLOCK_SKEW, MailQueued, Outcome, Recorded, RenderAnswer,
    SAP_CI_PROCEDURES, Service, SignRequest, StartRequest, TEST_PAYLOAD, TaskView,
};
pub use world::load_world;

use rekey_engine::{Event, Refusal};
use thiserror::Error;
use uuid::Uuid;

/// The event of a person confirming task `step` with the fingerprint they typed (`None`: the
/// field was left out). Every interface builds it here, so the CLI, the API and the web form
/// accept the same forms and refuse the same input — empty, padded with invisible characters
/// or markup, the wrong length — with the same words, before anything is loaded or changed.
pub fn complete_event(step: String, fingerprint: Option<&str>) -> Result<Event> {
    let fingerprint: rekey_model::Fingerprint =
        fingerprint
            .unwrap_or_default()
            .parse()
            .map_err(|e: rekey_model::FingerprintError| ServiceError::Field {
                field: "fingerprint",
                reason: e.to_string(),
            })?;
    Ok(Event::Complete { step, fingerprint })
}

/// Why a service call failed. On every error the transaction is rolled back: nothing changed.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The engine refused the event.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] rekey_store::StoreError),
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] rekey_crypto::CryptoError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// No such user.
    #[error("no user {0} is registered")]
    UnknownUser(String),
    /// No such renewal.
    #[error("no renewal {0}")]
    UnknownRenewal(Uuid),
    /// The alias already has a running renewal; a second would change the same signer steps
    /// and trust.
    #[error(
        "alias {alias} already has a running renewal {renewal}: finish or cancel it before starting another"
    )]
    AlreadyRunning {
        /// The alias.
        alias: String,
        /// The running renewal.
        renewal: Uuid,
    },
    /// Someone else changed the renewal at the same time; retrying is safe.
    #[error("renewal {0} was changed concurrently; try again")]
    Conflict(Uuid),
    /// Input that could not be used.
    #[error("{0}")]
    Input(String),
    /// One field of a request that could not be used, named so that an interface can point
    /// at it.
    #[error("{field}: {reason}")]
    Field {
        /// The field, as the request names it (`bits`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The tenant or receiver a request names is unknown, or the actor holds no role in it:
    /// both are answered alike, so nobody learns what another tenant holds.
    #[error("unknown tenant {0}")]
    UnknownScope(String),
    /// The actor is known in the scope but does not hold the role the request takes; says
    /// which role would do.
    #[error("{0}")]
    Forbidden(String),
    /// A well-formed request that does not apply to the renewal as it stands; says why.
    #[error("{0}")]
    NotApplicable(String),
    /// Stored state that cannot be read, or engine and store disagree.
    #[error("inconsistent state: {0}")]
    Corrupt(String),
    /// The SAP Cloud Integration tenant could not be read or refused a call.
    #[error("SAP Cloud Integration: {0}")]
    SapCi(crate::sapci::SapCiError),
    /// The SAP Cloud Integration tenant no longer holds what rekey recorded under the aliases
    /// a renewal touches: someone changed it outside rekey. Nothing was done.
    #[error("{}", tenant_changed(*renewal, differences))]
    TenantChanged {
        /// The renewal.
        renewal: Uuid,
        /// What differs.
        differences: Vec<crate::sapci_sync::Difference>,
    },
    /// Key generation or signing on the blocking pool did not finish (the runtime is shutting
    /// down); the transaction was rolled back.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

fn tenant_changed(renewal: Uuid, differences: &[crate::sapci_sync::Difference]) -> String {
    format!(
        "the SAP Cloud Integration tenant was changed outside rekey: {}; nothing was done for \
         renewal {renewal} and the tenant administrators were told. Put the tenant back as rekey \
         recorded it, or cancel the renewal (rekey renewal cancel {renewal}), run \
         `rekey tenant sync` and start again",
        crate::sapci_sync::describe(differences)
    )
}

/// Result alias.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
