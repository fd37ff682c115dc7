//! [`Store`]: a connection pool, the optional KEK, and one method per operation. Each mutating
//! method runs the module function of the same name in its own write transaction (with its
//! audit entry) and commits; on error the transaction is rolled back and nothing changed.
//!
//! To make several changes commit together (the engine: keystore + signer table + workflow
//! state + outbox + audit), call [`Store::begin`] and the module functions
//! ([`crate::keystore`], [`crate::flows`], ...) with the transaction, then commit it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, Embedded, Fingerprint, KeyBackend, KeyHandle};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DatabaseTransaction};
use std::collections::HashMap;

use crate::audit::{self, AuditEntry, AuditSummary};
use crate::db;
use crate::error::{Result, StepRef, StoreError};
use crate::flows::{self, Flow, SignedMessage, SignerParams, SignerStep, StepOptions};
use crate::kek::Kek;
use crate::keystore::{self, KeyMaterial, KeystoreEntry};
use crate::migrate::{self, MigrationReport};
use crate::receivers::{self, Receiver, ReceiverProfile, TrustedCertificate};
use crate::tenants::{self, Tenant};
use crate::users::{self, ApiTokenInfo, NewApiToken, User};
use rekey_model::{
    Alias, Email, EntryId, FlowName, Grant, ReceiverId, ReceiverName, StepName, TenantId,
    TenantName, TokenId, UserId,
};

/// rekey's tenant state on SQLite or PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    kek: Option<Arc<Kek>>,
    backends: Arc<HashMap<TenantId, Arc<dyn KeyBackend>>>,
    migration: MigrationReport,
}

/// Runs `$body` (a future using `$txn`) in a write transaction and commits it.
macro_rules! in_txn {
    ($self:ident, |$txn:ident| $body:expr) => {{
        let $txn = $self.begin().await?;
        let out = $body.await?;
        $txn.commit().await?;
        Ok(out)
    }};
}

impl Store {
    /// Opens `sqlite://PATH?mode=rwc` or `postgres://...` and migrates the schema.
    pub async fn open(url: &str) -> Result<Store> {
        Store::connect(db::connect_options(url)?).await
    }

    /// Connects with explicit options (start from [`db::connect_options`]) and migrates.
    pub async fn connect(opts: ConnectOptions) -> Result<Store> {
        db::Backend::of_url(opts.get_url())?;
        let conn = Database::connect(opts).await?;
        let migration = migrate::migrate(&conn).await?;
        Ok(Store {
            db: conn,
            kek: None,
            backends: Arc::default(),
            migration,
        })
    }

    /// The same store, able to encrypt and decrypt private keys with `kek`.
    pub fn with_kek(mut self, kek: Kek) -> Store {
        self.kek = Some(Arc::new(kek));
        self
    }

    /// The same store, with `tenant`'s keys kept by `backend` (a PKCS#11 token) rather than
    /// the embedded keystore.
    pub fn with_backend(mut self, tenant: TenantId, backend: Arc<dyn KeyBackend>) -> Store {
        Arc::make_mut(&mut self.backends).insert(tenant, backend);
        self
    }

    /// The keystore backend of `tenant`: the configured one, else the embedded keystore.
    pub fn backend(&self, tenant: TenantId) -> Arc<dyn KeyBackend> {
        self.backends
            .get(&tenant)
            .cloned()
            .unwrap_or_else(|| Arc::new(Embedded))
    }

    /// The KEK, or [`StoreError::NoKek`].
    pub fn kek(&self) -> Result<&Kek> {
        self.kek.as_deref().ok_or(StoreError::NoKek)
    }

    /// The connection pool (for reads, and for module functions that take a connection).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// What the migration run at open did.
    pub fn migration(&self) -> &MigrationReport {
        &self.migration
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite). Pass it to module functions
    /// and commit it; dropping it rolls back.
    pub async fn begin(&self) -> Result<DatabaseTransaction> {
        Ok(db::begin_write(&self.db).await?)
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<()> {
        Ok(self.db.close().await?)
    }

    // --- tenants ---

    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &TenantName, actor: &str) -> Result<Tenant> {
        in_txn!(self, |txn| tenants::create(&txn, name, actor))
    }

    /// A tenant by id.
    pub async fn tenant(&self, id: TenantId) -> Result<Tenant> {
        tenants::get(&self.db, id).await
    }

    /// A tenant by name.
    pub async fn tenant_by_name(&self, name: &TenantName) -> Result<Tenant> {
        tenants::by_name(&self.db, name).await
    }

    /// Every tenant.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        tenants::list(&self.db).await
    }

    // --- keystore ---

    /// Stores key material under a new alias.
    pub async fn add_key(
        &self,
        tenant: TenantId,
        alias: &Alias,
        material: &KeyMaterial,
        actor: &str,
    ) -> Result<KeystoreEntry> {
        let kek = self.kek()?;
        in_txn!(self, |txn| keystore::add(
            &txn, kek, tenant, alias, material, actor
        ))
    }

    /// Exchanges the alias's entry, keeping the alias; the old entry moves to history.
    pub async fn exchange_key(
        &self,
        tenant: TenantId,
        alias: &Alias,
        material: &KeyMaterial,
        actor: &str,
    ) -> Result<KeystoreEntry> {
        let kek = self.kek()?;
        in_txn!(self, |txn| keystore::exchange(
            &txn, kek, tenant, alias, material, actor
        ))
    }

    /// Moves the alias's entry to history; refused while a signer step lists the alias.
    pub async fn remove_key(
        &self,
        tenant: TenantId,
        alias: &Alias,
        actor: &str,
    ) -> Result<KeystoreEntry> {
        in_txn!(self, |txn| keystore::remove(&txn, tenant, alias, actor))
    }

    /// Makes a history entry of the alias current again.
    pub async fn restore_key(
        &self,
        tenant: TenantId,
        alias: &Alias,
        entry: EntryId,
        actor: &str,
    ) -> Result<KeystoreEntry> {
        in_txn!(self, |txn| keystore::restore(
            &txn, tenant, alias, entry, actor
        ))
    }

    /// The alias's current entry.
    pub async fn key_entry(&self, tenant: TenantId, alias: &Alias) -> Result<KeystoreEntry> {
        keystore::current(&self.db, tenant, alias).await
    }

    /// Every current entry of the tenant.
    pub async fn key_entries(&self, tenant: TenantId) -> Result<Vec<KeystoreEntry>> {
        keystore::list(&self.db, tenant).await
    }

    /// The alias's history, newest first.
    pub async fn key_history(&self, tenant: TenantId, alias: &Alias) -> Result<Vec<KeystoreEntry>> {
        keystore::history(&self.db, tenant, alias).await
    }

    /// The private key of the alias's current entry: decrypted, or its token reference.
    pub async fn private_key(&self, tenant: TenantId, alias: &Alias) -> Result<KeyHandle> {
        keystore::private_key(&self.db, self.kek()?, tenant, alias).await
    }

    // --- flows ---

    /// Creates a flow.
    pub async fn add_flow(&self, tenant: TenantId, name: &FlowName, actor: &str) -> Result<Flow> {
        in_txn!(self, |txn| flows::add_flow(&txn, tenant, name, actor))
    }

    /// Adds a signer step to a flow.
    pub async fn add_step(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        options: StepOptions,
        actor: &str,
    ) -> Result<SignerStep> {
        in_txn!(self, |txn| flows::add_step(
            &txn, tenant, flow, step, options, actor
        ))
    }

    /// Changes a signer step's options.
    pub async fn set_step_options(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        options: StepOptions,
        actor: &str,
    ) -> Result<SignerStep> {
        in_txn!(self, |txn| flows::set_step_options(
            &txn, tenant, flow, step, options, actor
        ))
    }

    /// A flow with its steps and tables.
    pub async fn flow(&self, tenant: TenantId, name: &FlowName) -> Result<Flow> {
        flows::flow(&self.db, tenant, name).await
    }

    /// Every flow of the tenant.
    pub async fn flows(&self, tenant: TenantId) -> Result<Vec<Flow>> {
        flows::flows(&self.db, tenant).await
    }

    /// One signer step with its table.
    pub async fn step(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
    ) -> Result<SignerStep> {
        flows::step(&self.db, tenant, flow, step).await
    }

    /// Appends a row to a step's Signer Parameters table.
    pub async fn add_row(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        params: &SignerParams,
        actor: &str,
    ) -> Result<SignerStep> {
        in_txn!(self, |txn| flows::add_row(
            &txn, tenant, flow, step, params, actor
        ))
    }

    /// Appends a row for `new_alias` copying the other parameters from `from_alias`'s row.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_row_like(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        new_alias: &Alias,
        from_alias: &Alias,
        actor: &str,
    ) -> Result<SignerStep> {
        in_txn!(self, |txn| flows::add_row_like(
            &txn, tenant, flow, step, new_alias, from_alias, actor
        ))
    }

    /// Removes the row of `alias` from a step's table.
    pub async fn remove_row(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        alias: &Alias,
        actor: &str,
    ) -> Result<SignerStep> {
        in_txn!(self, |txn| flows::remove_row(
            &txn, tenant, flow, step, alias, actor
        ))
    }

    /// Records that a step's messages reach a receiver.
    pub async fn add_step_receiver(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        receiver: &ReceiverName,
        actor: &str,
    ) -> Result<SignerStep> {
        in_txn!(self, |txn| flows::add_step_receiver(
            &txn, tenant, flow, step, receiver, actor
        ))
    }

    /// Records that a step's messages no longer reach a receiver.
    pub async fn remove_step_receiver(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        receiver: &ReceiverName,
        actor: &str,
    ) -> Result<SignerStep> {
        in_txn!(self, |txn| flows::remove_step_receiver(
            &txn, tenant, flow, step, receiver, actor
        ))
    }

    /// Every (flow, step) that lists `alias`.
    pub async fn alias_usage(&self, tenant: TenantId, alias: &Alias) -> Result<Vec<StepRef>> {
        flows::alias_usage(&self.db, tenant, alias).await
    }

    /// Signs `payload` as the step would (see [`flows::sign_for_step`]).
    pub async fn sign_for_step(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        payload: &[u8],
        signing_time: DateTime<Utc>,
    ) -> Result<SignedMessage> {
        flows::sign_for_step(
            &self.db,
            self.kek()?,
            self.backend(tenant).as_ref(),
            tenant,
            flow,
            step,
            payload,
            signing_time,
        )
        .await
    }

    /// What signing as the step takes now, laid out as `choice` asks, to be signed with
    /// [`flows::SignMaterial::sign`] and [`Store::backend`] off the async workers. Who may sign
    /// is the service's question (`Service::sign`).
    pub async fn sign_material(
        &self,
        tenant: TenantId,
        flow: &FlowName,
        step: &StepName,
        choice: flows::OutputChoice,
    ) -> Result<flows::SignMaterial> {
        flows::sign_material(&self.db, self.kek()?, tenant, flow, step, choice).await
    }

    // --- receivers ---

    /// Creates a receiver.
    pub async fn add_receiver(
        &self,
        tenant: TenantId,
        name: &ReceiverName,
        profile: ReceiverProfile,
        actor: &str,
    ) -> Result<Receiver> {
        in_txn!(self, |txn| receivers::add(
            &txn, tenant, name, profile, actor
        ))
    }

    /// Changes a receiver's profile.
    pub async fn set_receiver_profile(
        &self,
        tenant: TenantId,
        name: &ReceiverName,
        profile: ReceiverProfile,
        actor: &str,
    ) -> Result<Receiver> {
        in_txn!(self, |txn| receivers::set_profile(
            &txn, tenant, name, profile, actor
        ))
    }

    /// A receiver by name.
    pub async fn receiver(&self, tenant: TenantId, name: &ReceiverName) -> Result<Receiver> {
        receivers::get(&self.db, tenant, name).await
    }

    /// A receiver by id.
    pub async fn receiver_by_id(&self, id: ReceiverId) -> Result<Receiver> {
        receivers::by_id(&self.db, id).await
    }

    /// Every receiver of the tenant.
    pub async fn receivers(&self, tenant: TenantId) -> Result<Vec<Receiver>> {
        receivers::list(&self.db, tenant).await
    }

    /// Adds an administrator contact to a receiver.
    pub async fn add_receiver_admin(
        &self,
        tenant: TenantId,
        name: &ReceiverName,
        email: &Email,
        actor: &str,
    ) -> Result<Receiver> {
        in_txn!(self, |txn| receivers::add_admin_email(
            &txn, tenant, name, email, actor
        ))
    }

    /// Removes an administrator contact from a receiver.
    pub async fn remove_receiver_admin(
        &self,
        tenant: TenantId,
        name: &ReceiverName,
        email: &Email,
        actor: &str,
    ) -> Result<Receiver> {
        in_txn!(self, |txn| receivers::remove_admin_email(
            &txn, tenant, name, email, actor
        ))
    }

    /// Records that a receiver trusts a certificate.
    pub async fn trust_certificate(
        &self,
        tenant: TenantId,
        name: &ReceiverName,
        cert: &Certificate,
        actor: &str,
    ) -> Result<TrustedCertificate> {
        in_txn!(self, |txn| receivers::trust(
            &txn, tenant, name, cert, actor
        ))
    }

    /// Records that a receiver no longer trusts a certificate.
    pub async fn untrust_certificate(
        &self,
        tenant: TenantId,
        name: &ReceiverName,
        fingerprint: &Fingerprint,
        actor: &str,
    ) -> Result<()> {
        in_txn!(self, |txn| receivers::untrust(
            &txn,
            tenant,
            name,
            fingerprint,
            actor
        ))
    }

    /// The certificates a receiver trusts.
    pub async fn trusted_certificates(
        &self,
        tenant: TenantId,
        name: &ReceiverName,
    ) -> Result<Vec<TrustedCertificate>> {
        receivers::trusted(&self.db, tenant, name).await
    }

    // --- users ---

    /// Registers a user.
    pub async fn add_user(&self, email: &Email, actor: &str) -> Result<User> {
        in_txn!(self, |txn| users::add(&txn, email, actor))
    }

    /// A user by id.
    pub async fn user(&self, id: UserId) -> Result<User> {
        users::get(&self.db, id).await
    }

    /// A user by email.
    pub async fn user_by_email(&self, email: &Email) -> Result<User> {
        users::by_email(&self.db, email).await
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<User>> {
        users::list(&self.db).await
    }

    /// Gives a user a role in a scope.
    pub async fn grant(&self, user: UserId, grant: Grant, actor: &str) -> Result<User> {
        in_txn!(self, |txn| users::grant(&txn, user, grant, actor))
    }

    /// Takes a role in a scope away from a user.
    pub async fn revoke(&self, user: UserId, grant: Grant, actor: &str) -> Result<User> {
        in_txn!(self, |txn| users::revoke(&txn, user, grant, actor))
    }

    /// Every user holding a grant.
    pub async fn holders(&self, grant: &Grant) -> Result<Vec<User>> {
        users::holders(&self.db, grant).await
    }

    /// Creates an API token; the secret is returned once.
    pub async fn create_token(
        &self,
        user: UserId,
        label: &str,
        actor: &str,
    ) -> Result<NewApiToken> {
        in_txn!(self, |txn| users::create_token(
            &txn, user, label, None, actor
        ))
    }

    /// Creates an API token that stops working at `expires_at` (`None`: never).
    pub async fn create_token_expiring(
        &self,
        user: UserId,
        label: &str,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        actor: &str,
    ) -> Result<NewApiToken> {
        in_txn!(self, |txn| users::create_token(
            &txn, user, label, expires_at, actor
        ))
    }

    /// Removes a user (roles, tokens, sessions, links); see [`users::remove`].
    pub async fn remove_user(&self, user: UserId, actor: &str) -> Result<User> {
        in_txn!(self, |txn| users::remove(&txn, user, actor))
    }

    /// The user a token belongs to.
    pub async fn user_for_token(&self, token: &str) -> Result<User> {
        users::user_for_token(&self.db, token, crate::db::now()).await
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, id: TokenId, actor: &str) -> Result<()> {
        in_txn!(self, |txn| users::revoke_token(&txn, id, None, actor))
    }

    /// Revokes a token of `owner`'s (someone revoking their own).
    pub async fn revoke_own_token(&self, owner: UserId, id: TokenId, actor: &str) -> Result<()> {
        in_txn!(self, |txn| users::revoke_token(
            &txn,
            id,
            Some(owner),
            actor
        ))
    }

    /// A user's tokens (no secrets).
    pub async fn tokens(&self, user: UserId) -> Result<Vec<ApiTokenInfo>> {
        users::tokens(&self.db, user).await
    }

    // --- audit ---

    /// Checks the audit chain; names the first bad entry.
    pub async fn verify_audit(&self) -> Result<AuditSummary> {
        audit::verify(&self.db).await
    }

    /// Audit entries after `after_seq`, at most `limit`.
    pub async fn audit_entries(&self, after_seq: i64, limit: u64) -> Result<Vec<AuditEntry>> {
        audit::entries(&self.db, after_seq, limit).await
    }
}
