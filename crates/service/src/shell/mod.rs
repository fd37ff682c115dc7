//! [`Service`]: runs each event against the store in one transaction and carries out the
//! engine's effects inside it. Split by job: [`events`] takes events in (start, act, upload:
//! one transaction each), [`effects`] carries out what the engine decided against the store
//! (keystore, signer steps, trust, timers, mail, audit), [`queries`] reads (renewals, tasks,
//! the world, the actor), [`sign`] signs payloads as a flow's step for those who may. This
//! module holds the types they share and the commit.

mod as2;
mod effects;
mod events;

pub use events::{Recorded, RenderAnswer};
mod queries;
mod remote;
pub use remote::SAP_CI_PROCEDURES;
pub(crate) use remote::is_pending;
mod sign;
mod signatures;

pub use signatures::CryptoCounts;
pub(crate) use signatures::TestSignatures;

pub use sign::SignRequest;

use chrono::{DateTime, Utc};
use rekey_engine::{Catalog, NoticeKind, ProcedureId, Renewal};
use rekey_model::{Alias, ReceiverId, Role, TenantId};
use rekey_store::{DatabaseTransaction, Store};
use serde::Serialize;
use uuid::Uuid;

pub use as2::As2CheckReport;

use crate::Result;

/// The fixed payload of the test message a receiver administrator gets before switching.
pub const TEST_PAYLOAD: &[u8] =
    b"rekey test message: verify this with your receiver's new configuration\r\n";

/// Runs renewals against a store.
#[derive(Clone)]
pub struct Service {
    store: Store,
    catalog: Catalog,
    clock_skew: chrono::Duration,
    lease: chrono::Duration,
    /// Tenants whose reminder and escalation times are configured: their catalog.
    tenant_catalogs: std::sync::Arc<std::collections::HashMap<rekey_model::TenantId, Catalog>>,
    /// RSA operations of this service's transitions, inside and outside a transaction.
    crypto: std::sync::Arc<signatures::Counters>,
    /// Tenants whose keystore is an SAP Cloud Integration tenant.
    pub(crate) sap_ci: std::sync::Arc<crate::sapci_sync::SapCiTenants>,
}

/// How far back a new certificate's notBefore is dated from the engine's clock unless
/// configured otherwise: a receiver whose clock is up to an hour behind still accepts the first
/// messages signed with it.
pub const DEFAULT_CLOCK_SKEW: chrono::Duration = chrono::Duration::hours(1);

/// What starts a renewal.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Tenant.
    pub tenant: TenantId,
    /// Receiver whose trust must hold throughout.
    pub receiver: ReceiverId,
    /// Alias to renew, parsed where the request entered (CLI, API, web form).
    pub alias: Alias,
    /// Alias for the new key, where the procedure uses one.
    pub new_alias: Option<Alias>,
    /// Procedure, or `None` to let the profile choose.
    pub procedure: Option<ProcedureId>,
    /// RSA size of the new key.
    pub bits: u32,
    /// Key + CSR; the tenant administrator uploads the CA-signed chain.
    pub ca_signed: bool,
    /// Run owner-approved actions without waiting.
    pub auto_approve: bool,
}

/// One email queued by a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailQueued {
    /// Step that caused it.
    pub step: Option<String>,
    /// Why.
    pub kind: NoticeKind,
    /// Recipient address.
    pub to: String,
    /// Stable Message-ID.
    pub message_id: String,
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The renewal afterwards.
    pub renewal: Renewal,
    /// Steps completed, in order.
    pub completed: Vec<String>,
    /// Emails queued in the outbox.
    pub mail: Vec<MailQueued>,
}

/// A due step someone may act on.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// `<renewal>:<step>`, what `task complete|approve` take.
    pub id: String,
    /// Renewal.
    pub renewal: Uuid,
    /// Procedure.
    pub procedure: ProcedureId,
    /// Alias renewed.
    pub alias: Alias,
    /// Step id.
    pub step: String,
    /// Seed step number.
    pub seed: String,
    /// Step title.
    pub title: String,
    /// The role the person acts in (the owner's, or the other party's of an agreement).
    pub role: Role,
    /// What the person does: approve, complete, agree.
    pub verb: &'static str,
    /// Due date.
    pub due_at: Option<DateTime<Utc>>,
    /// The new certificate's fingerprint, for tasks that confirm it.
    pub new_certificate: Option<String>,
}

impl Service {
    /// A service over `store` running `catalog`'s procedures.
    pub fn new(store: Store, catalog: Catalog) -> Self {
        Service {
            store,
            catalog,
            clock_skew: DEFAULT_CLOCK_SKEW,
            lease: rekey_store::lease::DEFAULT_LENGTH,
            tenant_catalogs: Default::default(),
            crypto: Default::default(),
            sap_ci: Default::default(),
        }
    }

    /// The same service running `tenant`'s renewals with `catalog` (the same procedures with
    /// that tenant's reminder and escalation times, [`Catalog::with_timing`]).
    pub fn with_tenant_catalog(mut self, tenant: rekey_model::TenantId, catalog: Catalog) -> Self {
        std::sync::Arc::make_mut(&mut self.tenant_catalogs).insert(tenant, catalog);
        self
    }

    /// The procedures `tenant`'s renewals run: its own timing if configured, else the
    /// service's catalog.
    pub fn catalog_for(&self, tenant: rekey_model::TenantId) -> &Catalog {
        self.tenant_catalogs.get(&tenant).unwrap_or(&self.catalog)
    }

    /// The same service claiming timers and passes for `lease` at a time (renewed while the
    /// work runs), so another instance takes over a dead one's within about that long.
    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a claim of this service's workers holds before it must be renewed.
    pub fn lease(&self) -> chrono::Duration {
        self.lease
    }

    /// The same service issuing certificates with notBefore `skew` before the engine's clock
    /// (0 .. [`rekey_crypto::MAX_CLOCK_SKEW`]; a bad value is refused when a key is generated).
    pub fn with_clock_skew(mut self, skew: chrono::Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The procedures.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// RSA operations this service (and its clones) did for transitions so far: test messages
    /// signed inside a write transaction or outside one, keys generated inside one.
    pub fn crypto_counts(&self) -> CryptoCounts {
        self.crypto.read()
    }
}

/// Commits a service transaction, passing the crash-test fail points around `COMMIT`.
pub(crate) async fn commit(txn: DatabaseTransaction) -> Result<()> {
    crate::failpoint::hit("before-commit");
    txn.commit().await?;
    crate::failpoint::hit("after-commit");
    Ok(())
}

/// The renewal's tenant.
pub(crate) fn tenant_of(r: &Renewal) -> TenantId {
    r.tenant
}

/// The renewal's receiver.
pub(crate) fn receiver_of(r: &Renewal) -> ReceiverId {
    r.receiver
}
