//! A renewal's new key between generation and the keystore: encrypted like keystore entries,
//! invisible to signer steps, gone once installed or discarded.

use rekey_crypto::{
    Certificate, Fingerprint, KeyBackend, KeyHandle, certificate_request_public_key, check_chain,
    check_chain_for,
};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::audit::{self, AuditRecord};
use crate::db::now;
use crate::entity::pending_key;
use crate::error::{Result, StoreError};
use crate::kek::Kek;
use crate::keystore::KeyMaterial;
use crate::{ConnectionTrait, DatabaseTransaction};
use rekey_model::{Alias, EntryId, TenantId};

/// A pending key, decrypted.
#[derive(Debug, Clone)]
pub struct PendingKey {
    /// The renewal it belongs to.
    pub renewal: Uuid,
    /// The alias it is meant for.
    pub alias: Alias,
    /// The private key, or its token reference.
    pub key: KeyHandle,
    /// Its chain, end entity first (empty while a CSR waits for a CA).
    pub chain: Vec<Certificate>,
    /// The CSR, for CA-signed renewals.
    pub csr_pem: Option<String>,
}

impl PendingKey {
    /// Fingerprint of the certificate, once there is one.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.chain.first().map(Certificate::fingerprint)
    }

    /// The key with its chain, ready for the keystore (`backend` is the tenant's).
    pub fn material(&self, backend: &dyn KeyBackend) -> Result<KeyMaterial> {
        if let (true, KeyHandle::Token(id)) = (backend.remote(), &self.key) {
            return KeyMaterial::remote(&self.alias, id.clone(), self.chain.clone());
        }
        let signer = backend.signer(&self.key)?;
        KeyMaterial::from_handle(&self.alias, self.key.clone(), &*signer, self.chain.clone())
    }
}

fn pem_chain(chain: &[Certificate]) -> String {
    chain.iter().map(Certificate::to_pem).collect()
}

/// Stores a renewal's new key (one per renewal).
#[allow(clippy::too_many_arguments)]
pub async fn stage(
    txn: &DatabaseTransaction,
    kek: &Kek,
    tenant: TenantId,
    renewal: Uuid,
    alias: &Alias,
    key: &KeyHandle,
    backend: &dyn KeyBackend,
    chain: &[Certificate],
    csr_pem: Option<String>,
    actor: &str,
) -> Result<()> {
    audit::lock_head(txn).await?;
    // A remote keystore's key cannot sign here: its certificate is the remote system's own.
    if !chain.is_empty() && !backend.remote() {
        check_chain(&*backend.signer(key)?, chain)?;
    }
    let id = Uuid::new_v4();
    let sealed = crate::keystore::seal(kek, key, tenant, alias, EntryId::from_uuid(id))?;
    let at = now();
    let fingerprint = chain.first().map(|c| c.fingerprint().to_string());
    pending_key::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant.as_uuid()),
        renewal_id: Set(renewal),
        alias: Set(alias.to_string()),
        kek_id: Set(sealed.kek_id),
        key_nonce: Set(sealed.nonce),
        key_ciphertext: Set(sealed.ciphertext),
        token_key_id: Set(sealed.token_key_id),
        chain_pem: Set(pem_chain(chain)),
        csr_pem: Set(csr_pem),
        fingerprint: Set(fingerprint.clone()),
        created_at: Set(at),
        updated_at: Set(at),
    }
    .insert(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "pending_key.stage",
            tenant: Some(tenant),
            subject: format!("renewal {renewal} alias {alias}"),
            before: String::new(),
            after: fingerprint.unwrap_or_else(|| "awaiting CA-signed certificate".into()),
        },
    )
    .await?;
    Ok(())
}

/// The renewal's pending key, if any.
pub async fn get(
    conn: &impl ConnectionTrait,
    kek: &Kek,
    renewal: Uuid,
) -> Result<Option<PendingKey>> {
    let Some(m) = pending_key::Entity::find()
        .filter(pending_key::Column::RenewalId.eq(renewal))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let alias = Alias::parse(&m.alias)
        .map_err(|e| StoreError::Corrupt(format!("pending key {}: {e}", m.id)))?;
    let key = crate::keystore::unseal(
        kek,
        TenantId::from_uuid(m.tenant_id),
        &alias,
        EntryId::from_uuid(m.id),
        &m.key_nonce,
        &m.key_ciphertext,
        &m.kek_id,
        m.token_key_id.as_deref(),
    )?;
    let chain = if m.chain_pem.trim().is_empty() {
        Vec::new()
    } else {
        Certificate::parse_pem_chain(&m.chain_pem)?
    };
    Ok(Some(PendingKey {
        renewal,
        alias,
        key,
        chain,
        csr_pem: m.csr_pem,
    }))
}

/// The certificate signing request of a renewal's pending key, while it waits for the CA-signed
/// chain (none once the chain is uploaded, or for a self-signed key). A CSR holds no secret, so
/// it is read without the key-encryption key.
pub async fn waiting_csr(conn: &impl ConnectionTrait, renewal: Uuid) -> Result<Option<String>> {
    Ok(pending_key::Entity::find()
        .filter(pending_key::Column::RenewalId.eq(renewal))
        .one(conn)
        .await?
        .filter(|m| m.chain_pem.trim().is_empty())
        .and_then(|m| m.csr_pem))
}

/// The certificate of a renewal's pending key, once it has one (self-signed, or the uploaded
/// CA-signed leaf). A certificate holds no secret, so it is read without the key-encryption key.
pub async fn certificate(
    conn: &impl ConnectionTrait,
    renewal: Uuid,
) -> Result<Option<Certificate>> {
    let Some(m) = pending_key::Entity::find()
        .filter(pending_key::Column::RenewalId.eq(renewal))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if m.chain_pem.trim().is_empty() {
        return Ok(None);
    }
    Ok(Certificate::parse_pem_chain(&m.chain_pem)?
        .into_iter()
        .next())
}

/// Sets the CA-signed chain of a pending key, after checking it belongs to the key.
pub async fn set_chain(
    txn: &DatabaseTransaction,
    kek: &Kek,
    tenant: TenantId,
    renewal: Uuid,
    backend: &dyn KeyBackend,
    chain: &[Certificate],
    actor: &str,
) -> Result<PendingKey> {
    audit::lock_head(txn).await?;
    let mut pending = get(txn, kek, renewal)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("renewal {renewal} has no pending key")))?;
    match (&pending.key, backend.remote()) {
        // Made here, for a remote keystore to import: checked against the key itself.
        (KeyHandle::Embedded(key), _) => check_chain(key, chain)?,
        // Held by a remote keystore, which cannot sign here: checked against the public key
        // of the request it made.
        (KeyHandle::Token(_), true) => {
            let request = pending.csr_pem.as_deref().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "renewal {renewal}'s remote key has no certificate request to check a chain against"
                ))
            })?;
            check_chain_for(&certificate_request_public_key(request.as_bytes())?, chain)?;
        }
        (KeyHandle::Token(_), false) => check_chain(&*backend.signer(&pending.key)?, chain)?,
    }
    let fingerprint = chain.first().map(|c| c.fingerprint().to_string());
    pending_key::Entity::update_many()
        .col_expr(
            pending_key::Column::ChainPem,
            sea_orm::sea_query::Expr::value(pem_chain(chain)),
        )
        .col_expr(
            pending_key::Column::Fingerprint,
            sea_orm::sea_query::Expr::value(fingerprint.clone()),
        )
        .col_expr(
            pending_key::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(pending_key::Column::RenewalId.eq(renewal))
        .exec(txn)
        .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "pending_key.certificate",
            tenant: Some(tenant),
            subject: format!("renewal {renewal}"),
            before: String::new(),
            after: fingerprint.unwrap_or_default(),
        },
    )
    .await?;
    pending.chain = chain.to_vec();
    Ok(pending)
}

/// Deletes the renewal's pending key (installed in the keystore, or the renewal cancelled).
pub async fn discard(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    renewal: Uuid,
    actor: &str,
) -> Result<bool> {
    audit::lock_head(txn).await?;
    let res = pending_key::Entity::delete_many()
        .filter(pending_key::Column::RenewalId.eq(renewal))
        .exec(txn)
        .await?;
    if res.rows_affected > 0 {
        audit::append(
            txn,
            AuditRecord {
                actor,
                action: "pending_key.discard",
                tenant: Some(tenant),
                subject: format!("renewal {renewal}"),
                before: String::new(),
                after: String::new(),
            },
        )
        .await?;
    }
    Ok(res.rows_affected > 0)
}
