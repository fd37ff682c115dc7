//! Keys on a token and the database, kept consistent across a crash.
//!
//! A token call and a database commit cannot be one transaction. rekey makes them safe in
//! three ways:
//! - **Ids written before the call.** A key a renewal generates gets a `CKA_ID` derived from
//!   the tenant, the renewal and the version the event starts from — all in the database
//!   before the token is called — so an event retried after a crash finds the key the first
//!   attempt made and adopts it ([`rekey_crypto::KeyBackend::generate`]) instead of making a
//!   second one.
//! - **One writer around the call.** The event locks the audit head (every writer's lock)
//!   before the token call and holds it to its commit; [`Service::reconcile_tokens`] takes the
//!   same lock, so it never sees a key whose event is still running.
//! - **Reconciliation.** After every committed event of a token tenant, and by
//!   `rekey keystore reconcile`, the token is made to match the database: rekey's key objects
//!   no row refers to (their event never committed, or their renewal discarded them) are
//!   destroyed, and each referred key's label and certificate object are set from its entry.
//!   A row whose key object is missing is reported, never silently dropped.

use rekey_crypto::{Certificate, KeyBits, KeyPair, RsaSigner, TokenKeyId};
use rekey_model::{Alias, TenantId};
use rekey_store::keystore::{self, TokenRefState};
use rekey_store::{KeyMaterial, KeystoreEntry, audit};
use uuid::Uuid;

use crate::{Result, Service};

use rekey_crypto::TOKEN_ID_PREFIX as ID_PREFIX;

/// The id of the key that event `version` of `renewal` generates.
pub fn renewal_key_id(tenant: TenantId, renewal: Uuid, version: i64) -> Result<TokenKeyId> {
    key_id(tenant, renewal, version)
}

/// A fresh id for a key made outside a renewal (`rekey keystore generate` or `import`).
pub fn fresh_key_id(tenant: TenantId) -> Result<TokenKeyId> {
    key_id(tenant, Uuid::new_v4(), 0)
}

fn key_id(tenant: TenantId, key: Uuid, version: i64) -> Result<TokenKeyId> {
    let mut bytes = ID_PREFIX.to_vec();
    bytes.extend_from_slice(tenant.as_uuid().as_bytes());
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(&version.to_be_bytes());
    Ok(TokenKeyId::new(bytes)?)
}

/// rekey's reference to a key an SAP Cloud Integration tenant holds, by its certificate: the
/// same key under any alias is the same reference, and no token object has it.
pub fn remote_key_id(
    tenant: TenantId,
    certificate: &rekey_model::Fingerprint,
) -> Result<TokenKeyId> {
    let mut bytes = b"sap-ci".to_vec();
    bytes.extend_from_slice(tenant.as_uuid().as_bytes());
    bytes.extend_from_slice(certificate.as_bytes());
    Ok(TokenKeyId::new(bytes)?)
}

/// Whether a tenant's keystore has key objects to reconcile: a PKCS#11 token. The embedded
/// keystore holds its keys in the database, and an SAP Cloud Integration tenant is read and
/// checked instead ([`crate::sapci_sync`]).
fn has_objects(backend: &dyn rekey_crypto::KeyBackend) -> bool {
    backend.kind() != "embedded" && !backend.remote()
}

/// Whether token object `id` was made by rekey for `tenant`.
pub fn belongs_to(id: &TokenKeyId, tenant: TenantId) -> bool {
    id.as_bytes()
        .strip_prefix(ID_PREFIX)
        .is_some_and(|rest| rest.starts_with(tenant.as_uuid().as_bytes()))
}

/// The label of a renewal's new key until it enters the keystore.
pub fn pending_label(alias: &Alias) -> String {
    format!("{alias} (pending)")
}

/// The label a key object should carry: the alias itself for the current entry.
pub fn label(alias: &Alias, state: TokenRefState) -> String {
    match state {
        TokenRefState::Current => alias.to_string(),
        TokenRefState::History => format!("{alias} (history)"),
        TokenRefState::Pending => pending_label(alias),
    }
}

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciliation {
    /// Objects whose label or certificate object was set from the database.
    pub projected: usize,
    /// Key objects no row refers to, destroyed (hex ids).
    pub destroyed: Vec<String>,
    /// Rows whose key object is not on the token: `alias: hex id`. Signing with them fails
    /// until the object is restored on the token.
    pub missing: Vec<String>,
}

impl Service {
    /// Makes the tenant's token match the database (see the module documentation). Nothing
    /// to do for the embedded keystore.
    pub async fn reconcile_tokens(&self, tenant: TenantId) -> Result<Reconciliation> {
        self.reconcile(tenant, false).await
    }

    /// [`Service::reconcile_tokens`]; `after_event` arms the token fail points (the crash
    /// tests count events, not the keys a set-up adds).
    async fn reconcile(&self, tenant: TenantId, after_event: bool) -> Result<Reconciliation> {
        let hit = |point| {
            if after_event {
                crate::failpoint::hit(point);
            }
        };
        let backend = self.store().backend(tenant);
        let mut report = Reconciliation::default();
        if !has_objects(backend.as_ref()) {
            return Ok(report);
        }
        let txn = self.store().begin().await?;
        audit::lock_head(&txn).await?;
        let refs = keystore::token_refs(&txn, tenant).await?;
        let objects = {
            let backend = backend.clone();
            crate::cpu::blocking(move || backend.objects()).await??
        };
        for o in objects.iter().filter(|o| belongs_to(&o.id, tenant)) {
            match refs.iter().find(|r| r.id == o.id) {
                Some(r) => {
                    hit("before-token-project");
                    let want = label(&r.alias, r.state);
                    let (backend, id, cert) =
                        (backend.clone(), r.id.clone(), r.certificate.clone());
                    crate::cpu::blocking(move || backend.project(&id, &want, cert.as_ref()))
                        .await??;
                    report.projected += 1;
                }
                None => {
                    hit("before-token-destroy");
                    let (backend, id) = (backend.clone(), o.id.clone());
                    crate::cpu::blocking(move || backend.destroy(&id)).await??;
                    report.destroyed.push(o.id.to_string());
                }
            }
        }
        for r in &refs {
            if !objects.iter().any(|o| o.id == r.id) {
                report.missing.push(format!("{}: {}", r.alias, r.id));
            }
        }
        txn.commit().await?;
        if !report.missing.is_empty() {
            tracing::error!(
                tenant = %tenant,
                missing = ?report.missing,
                "keystore rows refer to key objects that are not on the token"
            );
        }
        Ok(report)
    }

    /// Reconciles a token tenant after a committed event (the callers of [`Service::act_in`]
    /// that commit themselves call it too). The event stands whatever happens
    /// here; a failure is logged and the next reconciliation repeats the work.
    pub async fn after_commit(&self, tenant: TenantId) {
        if self.sap_ci.contains_key(&tenant) {
            if let Err(e) = self.reconcile_sap_ci(tenant, true).await {
                tracing::warn!(tenant = %tenant, error = %e, "SAP Cloud Integration reconciliation failed; it is retried after the next event and by every sync");
            }
            return;
        }
        if !has_objects(self.store().backend(tenant).as_ref()) {
            return;
        }
        if let Err(e) = self.reconcile(tenant, true).await {
            tracing::warn!(tenant = %tenant, error = %e, "token reconciliation failed; it is retried after the next event");
        }
    }
}

/// Makes a key's certificate with the key's signer (wherever the key is).
pub type Certify =
    Box<dyn FnOnce(&dyn RsaSigner) -> rekey_crypto::Result<Certificate> + Send + 'static>;

/// A key entering the keystore outside a renewal.
// Made once per command; boxing the key would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum NewKey {
    /// Generated by the tenant's keystore (on its token, for a token tenant), certified by
    /// the closure (a self-signed certificate).
    Generate {
        /// RSA size.
        bits: KeyBits,
        /// Makes the certificate.
        certify: Certify,
    },
    /// An existing key and its chain (from a PKCS#12 file, or key and certificate files). For
    /// a token tenant the key is created on the token; copies of it outside remain.
    Import {
        /// The key.
        key: KeyPair,
        /// Its chain, end entity first.
        chain: Vec<Certificate>,
    },
}

impl Service {
    /// Adds a key under a new alias through the tenant's keystore backend, in one write
    /// transaction that holds every writer's lock across the token call (so reconciliation
    /// never destroys it half-way). A key made on the token whose entry then fails (wrong
    /// chain, alias taken meanwhile) is destroyed by the reconciliation that follows.
    pub async fn add_key(
        &self,
        tenant: TenantId,
        alias: &Alias,
        new: NewKey,
        actor: &str,
    ) -> Result<KeystoreEntry> {
        let out = self.add_key_in(tenant, alias, new, actor).await;
        if has_objects(self.store().backend(tenant).as_ref())
            && let Err(e) = self.reconcile(tenant, false).await
        {
            tracing::warn!(tenant = %tenant, error = %e, "token reconciliation failed; it is retried after the next event");
        }
        out
    }

    async fn add_key_in(
        &self,
        tenant: TenantId,
        alias: &Alias,
        new: NewKey,
        actor: &str,
    ) -> Result<KeystoreEntry> {
        let store = self.store();
        let backend = store.backend(tenant);
        let txn = store.begin().await?;
        audit::lock_head(&txn).await?;
        if keystore::find_current(&txn, tenant, alias).await?.is_some() {
            return Err(rekey_store::StoreError::DuplicateAlias {
                tenant,
                alias: alias.clone(),
            }
            .into());
        }
        let id = fresh_key_id(tenant)?;
        let label = alias.to_string();
        let (handle, chain) = match new {
            NewKey::Generate { bits, certify } => {
                let handle = {
                    let (backend, id, label) = (backend.clone(), id.clone(), label.clone());
                    crate::cpu::blocking(move || backend.generate(bits, &id, &label)).await??
                };
                let cert = certify(&*backend.signer(&handle)?)?;
                (handle, vec![cert])
            }
            NewKey::Import { key, chain } => (backend.import(&key, &id, &label)?, chain),
        };
        let material = {
            let signer = backend.signer(&handle)?;
            KeyMaterial::from_handle(alias, handle.clone(), &*signer, chain)?
        };
        let entry = keystore::add(&txn, store.kek()?, tenant, alias, &material, actor).await?;
        // Not a renewal's event: the crash tests' fail points count events' commits only.
        txn.commit().await?;
        Ok(entry)
    }
}
