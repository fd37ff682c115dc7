//! The store's error type. Every refusal names what was refused and why, in words a person can
//! act on; a refused operation has changed nothing (its transaction is rolled back).

use rekey_crypto::CryptoError;
use sea_orm::DbErr;

use crate::kek::KekError;
use rekey_model::{
    Alias, Email, EntryId, FlowName, InvalidInput, ReceiverName, StepName, TenantId,
};

/// Where an alias is used: one signer step of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct StepRef {
    /// The flow.
    pub flow: FlowName,
    /// The signer step in it.
    pub step: StepName,
}

impl std::fmt::Display for StepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flow {:?} step {:?}",
            self.flow.as_str(),
            self.step.as_str()
        )
    }
}

fn list(uses: &[StepRef]) -> String {
    uses.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything the store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed (connection, SQL, constraint).
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A key, certificate or CMS operation failed (malformed PEM/PKCS#12, small key, ...).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The key-encryption key could not be loaded or used.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// A typed-in value was refused.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),

    /// The database URL is neither SQLite nor PostgreSQL.
    #[error(
        "unsupported database URL scheme {scheme:?}: use sqlite://PATH?mode=rwc or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl {
        /// The scheme found (the rest of the URL is not echoed: it may hold a password).
        scheme: String,
    },
    /// The database was migrated by a newer rekey.
    #[error(
        "database schema version {database} is newer than this rekey binary supports (up to {binary}); upgrade rekey"
    )]
    SchemaTooNew {
        /// Version recorded in the database.
        database: i64,
        /// Newest version this binary knows.
        binary: i64,
    },
    /// A migration failed; nothing of it was applied.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// Its version.
        version: i64,
        /// Its name.
        name: &'static str,
        /// The database error.
        source: DbErr,
    },
    /// An operation needs the key-encryption key but the store was opened without one.
    #[error("this operation needs the key-encryption key: give a key file or set REKEY_KEK")]
    NoKek,

    /// No tenant with this id or name.
    #[error("unknown tenant {0}")]
    UnknownTenant(String),
    /// A tenant with this name exists.
    #[error("tenant {0:?} already exists")]
    DuplicateTenant(String),

    /// The alias has no current keystore entry.
    #[error("tenant {tenant}: no keystore entry under alias {alias:?}")]
    UnknownAlias {
        /// The tenant.
        tenant: TenantId,
        /// The alias.
        alias: Alias,
    },
    /// The alias already has a current keystore entry.
    #[error(
        "tenant {tenant}: alias {alias:?} already has a keystore entry; exchange it or choose another alias"
    )]
    DuplicateAlias {
        /// The tenant.
        tenant: TenantId,
        /// The alias.
        alias: Alias,
    },
    /// No entry with this id in the alias's history.
    #[error("tenant {tenant}: alias {alias:?} has no entry {entry} in its history")]
    UnknownHistoryEntry {
        /// The tenant.
        tenant: TenantId,
        /// The alias.
        alias: Alias,
        /// The entry asked for.
        entry: EntryId,
    },
    /// No keystore entry (current or history) with this id in the tenant.
    #[error("tenant {tenant} has no keystore entry {entry}")]
    UnknownEntry {
        /// The tenant.
        tenant: TenantId,
        /// The entry asked for.
        entry: EntryId,
    },
    /// The private key does not belong to the first certificate of the chain.
    #[error(
        "alias {alias:?}: the private key does not match certificate {subject} (SHA-256 {fingerprint})"
    )]
    KeyMismatch {
        /// The alias being written.
        alias: Alias,
        /// Subject of the certificate.
        subject: String,
        /// Fingerprint of the certificate.
        fingerprint: String,
    },
    /// An RSA key below 2048 bits.
    #[error(
        "alias {alias:?}: RSA key of {bits} bits is too small; at least 2048 bits are required"
    )]
    KeyTooSmall {
        /// The alias being written.
        alias: Alias,
        /// The key's size.
        bits: usize,
    },
    /// A keystore entry needs at least its own certificate.
    #[error("alias {alias:?}: the certificate chain is empty; give at least the key's certificate")]
    EmptyChain {
        /// The alias being written.
        alias: Alias,
    },
    /// The private key of an entry cannot be decrypted with this KEK.
    #[error(
        "alias {alias:?}: the private key cannot be decrypted: it was encrypted under another key-encryption key (id {stored_kek}, this one is {kek}) or the row was tampered with"
    )]
    Decrypt {
        /// The alias.
        alias: Alias,
        /// The KEK id recorded with the ciphertext.
        stored_kek: String,
        /// The id of the KEK in use.
        kek: String,
    },
    /// Removing this entry would leave signer steps without their key.
    #[error(
        "alias {alias:?} is still listed by {}; remove it from those signer steps first",
        list(uses)
    )]
    AliasInUse {
        /// The alias.
        alias: Alias,
        /// Every signer step that lists it.
        uses: Vec<StepRef>,
    },

    /// No flow with this name.
    #[error("tenant {tenant}: unknown flow {flow:?}")]
    UnknownFlow {
        /// The tenant.
        tenant: TenantId,
        /// The flow.
        flow: FlowName,
    },
    /// A flow with this name exists.
    #[error("tenant {tenant}: flow {flow:?} already exists")]
    DuplicateFlow {
        /// The tenant.
        tenant: TenantId,
        /// The flow.
        flow: FlowName,
    },
    /// No signer step with this name in the flow.
    #[error("flow {flow:?} has no signer step {step:?}")]
    UnknownStep {
        /// The flow.
        flow: FlowName,
        /// The step.
        step: StepName,
    },
    /// A signer step with this name exists in the flow.
    #[error("flow {flow:?} already has a signer step {step:?}")]
    DuplicateStep {
        /// The flow.
        flow: FlowName,
        /// The step.
        step: StepName,
    },
    /// The signer step already lists the alias.
    #[error("flow {flow:?} step {step:?} already lists alias {alias:?}")]
    DuplicateSignerAlias {
        /// The flow.
        flow: FlowName,
        /// The step.
        step: StepName,
        /// The alias.
        alias: Alias,
    },
    /// The signer step does not list the alias.
    #[error("flow {flow:?} step {step:?} does not list alias {alias:?}")]
    UnknownSignerRow {
        /// The flow.
        flow: FlowName,
        /// The step.
        step: StepName,
        /// The alias.
        alias: Alias,
    },
    /// Signing found no row whose alias has a key.
    #[error(
        "flow {flow:?} step {step:?}: none of its signer aliases ({}) has a key in the keystore; nothing can sign",
        aliases.iter().map(Alias::as_str).collect::<Vec<_>>().join(", ")
    )]
    NoSignerResolves {
        /// The flow.
        flow: FlowName,
        /// The step.
        step: StepName,
        /// The aliases listed (possibly none).
        aliases: Vec<Alias>,
    },

    /// No receiver with this name.
    #[error("tenant {tenant}: unknown receiver {receiver:?}")]
    UnknownReceiver {
        /// The tenant.
        tenant: TenantId,
        /// The receiver.
        receiver: ReceiverName,
    },
    /// The receiver has no AS2 endpoint.
    #[error("receiver {receiver:?} has no AS2 endpoint")]
    NoAs2Endpoint {
        /// The receiver.
        receiver: ReceiverName,
    },
    /// A receiver with this name exists.
    #[error("tenant {tenant}: receiver {receiver:?} already exists")]
    DuplicateReceiver {
        /// The tenant.
        tenant: TenantId,
        /// The receiver.
        receiver: ReceiverName,
    },
    /// The receiver does not trust this certificate.
    #[error("receiver {receiver:?} does not trust a certificate with SHA-256 {fingerprint}")]
    UnknownTrustedCertificate {
        /// The receiver.
        receiver: ReceiverName,
        /// The fingerprint asked for.
        fingerprint: String,
    },
    /// The receiver already trusts this certificate.
    #[error("receiver {receiver:?} already trusts the certificate with SHA-256 {fingerprint}")]
    DuplicateTrustedCertificate {
        /// The receiver.
        receiver: ReceiverName,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// The address is not an administrator contact of the receiver.
    #[error("receiver {receiver:?} has no administrator contact {email}")]
    UnknownReceiverAdmin {
        /// The receiver.
        receiver: ReceiverName,
        /// The address.
        email: Email,
    },
    /// The address is already an administrator contact of the receiver.
    #[error("receiver {receiver:?} already has administrator contact {email}")]
    DuplicateReceiverAdmin {
        /// The receiver.
        receiver: ReceiverName,
        /// The address.
        email: Email,
    },
    /// No receiver with this id.
    #[error("unknown receiver {0}")]
    UnknownReceiverId(String),
    /// No flow with this id in the tenant (a `signer` grant's scope).
    #[error("unknown flow {0}")]
    UnknownFlowId(String),
    /// The signer step already records that its messages reach the receiver.
    #[error("flow {flow:?} step {step:?} already sends to receiver {receiver:?}")]
    DuplicateStepReceiver {
        /// The flow.
        flow: FlowName,
        /// The step.
        step: StepName,
        /// The receiver.
        receiver: ReceiverName,
    },
    /// The signer step does not record the receiver.
    #[error("flow {flow:?} step {step:?} does not list receiver {receiver:?}")]
    UnknownStepReceiver {
        /// The flow.
        flow: FlowName,
        /// The step.
        step: StepName,
        /// The receiver.
        receiver: ReceiverName,
    },

    /// No user with this id or email.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// A user with this email exists.
    #[error("a user with email {0} already exists")]
    DuplicateUser(Email),
    /// The user already holds this role in this scope.
    #[error("user {user} already holds {grant}")]
    DuplicateGrant {
        /// The user's email.
        user: Email,
        /// The grant (role and scope).
        grant: String,
    },
    /// The user does not hold this role in this scope.
    #[error("user {user} does not hold {grant}")]
    UnknownGrant {
        /// The user's email.
        user: Email,
        /// The grant (role and scope).
        grant: String,
    },
    /// No API token has the secret presented.
    #[error("unknown API token")]
    UnknownToken,
    /// The API token presented was revoked.
    #[error("this API token was revoked")]
    RevokedToken,
    /// The API token presented has expired.
    #[error("this API token has expired; ask for a new one")]
    ExpiredToken,
    /// No live API token has this id (or it is not the asker's).
    #[error("no API token {0} (unknown, already revoked, or not yours)")]
    UnknownTokenId(String),
    /// Taking this grant would leave a tenant with running renewals without an administrator.
    #[error(
        "{user} is the last tenant_admin of tenant {tenant}, which has {running} running renewal(s): \
         grant tenant_admin to someone else first (or finish the renewals)"
    )]
    LastTenantAdmin {
        /// The user.
        user: Email,
        /// The tenant.
        tenant: TenantId,
        /// How many renewals are running there.
        running: usize,
    },

    /// The audit log's hash chain is broken.
    #[error("audit log tampered with at entry {seq}: {problem}")]
    AuditTampered {
        /// Sequence number of the first bad entry.
        seq: i64,
        /// What is wrong with it.
        problem: crate::audit::AuditProblem,
    },
    /// Stored data could not be read back (corrupt row, unknown enum value).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_sentences() -> std::result::Result<(), InvalidInput> {
        let alias = Alias::parse("signer-2026")?;
        let uses = vec![
            StepRef {
                flow: FlowName::parse("Invoices")?,
                step: StepName::parse("sign")?,
            },
            StepRef {
                flow: FlowName::parse("Orders to ACME")?,
                step: StepName::parse("sign orders")?,
            },
        ];
        let e = StoreError::AliasInUse { alias, uses };
        assert_eq!(
            e.to_string(),
            "alias \"signer-2026\" is still listed by flow \"Invoices\" step \"sign\", \
             flow \"Orders to ACME\" step \"sign orders\"; remove it from those signer steps first"
        );
        let e = StoreError::NoSignerResolves {
            flow: FlowName::parse("Orders")?,
            step: StepName::parse("sign")?,
            aliases: vec![Alias::parse("a")?, Alias::parse("b")?],
        };
        assert_eq!(
            e.to_string(),
            "flow \"Orders\" step \"sign\": none of its signer aliases (a, b) has a key in the \
             keystore; nothing can sign"
        );
        let e = StoreError::SchemaTooNew {
            database: 7,
            binary: 3,
        };
        assert_eq!(
            e.to_string(),
            "database schema version 7 is newer than this rekey binary supports (up to 3); upgrade rekey"
        );
        Ok(())
    }
}
