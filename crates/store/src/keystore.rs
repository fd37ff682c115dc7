//! The outbound keystore: per tenant, entries addressed by alias, each an encrypted RSA private
//! key with its certificate chain, and a history per alias.
//!
//! Operations: add under a new alias; exchange keeping the alias (the old entry moves to
//! history); remove (to history; refused while a signer step lists the alias); restore an
//! entry from history (the current one, if any, moves to history). Private keys are sealed
//! with the [`Kek`] before they reach the database and opened only in [`private_key`] and
//! [`entry_private_key`]; plaintext key bytes live in `Zeroizing` buffers.

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, Fingerprint, KeyHandle, KeyPair, RsaSigner, TokenKeyId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};

use crate::audit::{self, AuditRecord};
use crate::db::now;
use crate::entity::{keystore_chain_cert, keystore_entry};
use crate::error::{Result, StoreError};
use crate::flows;
use crate::kek::{EntryAad, Kek};
use crate::tenants;
use rekey_model::{Alias, EntryId, TenantId};
use uuid::Uuid;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A private key with its certificate chain (end entity first), checked to belong together.
#[derive(Debug, Clone)]
pub struct KeyMaterial {
    key: KeyHandle,
    chain: Vec<Certificate>,
}

/// What `kek_id` holds for a key kept on a token (nothing was sealed).
pub(crate) const TOKEN_KEK_ID: &str = "token";

impl KeyMaterial {
    /// Pairs a key with its chain, refusing an empty chain, a key below 2048 bits, a key that
    /// does not match the first certificate, or a chain not linked issuer to subject.
    pub fn new(alias: &Alias, key: KeyPair, chain: Vec<Certificate>) -> Result<KeyMaterial> {
        Self::check(alias, &key, &chain)?;
        Ok(KeyMaterial {
            key: KeyHandle::Embedded(key),
            chain,
        })
    }

    /// Pairs a key held by a keystore backend (`signer` is the backend's signer for `key`)
    /// with its chain, with the checks of [`KeyMaterial::new`].
    pub fn from_handle(
        alias: &Alias,
        key: KeyHandle,
        signer: &dyn RsaSigner,
        chain: Vec<Certificate>,
    ) -> Result<KeyMaterial> {
        Self::check(alias, signer, &chain)?;
        Ok(KeyMaterial { key, chain })
    }

    /// A key that a remote keystore holds and signs with itself (an SAP Cloud Integration
    /// tenant), known to rekey by its certificate only: `id` is rekey's reference to it. The
    /// certificate is the remote system's own statement of the key, so there is no signer to
    /// check it against; an empty chain and an RSA key below 2048 bits are refused.
    pub fn remote(alias: &Alias, id: TokenKeyId, chain: Vec<Certificate>) -> Result<KeyMaterial> {
        let Some(leaf) = chain.first() else {
            return Err(StoreError::EmptyChain {
                alias: alias.clone(),
            });
        };
        let bits = leaf_bits(leaf);
        if bits < MIN_RSA_BITS {
            return Err(StoreError::KeyTooSmall {
                alias: alias.clone(),
                bits,
            });
        }
        Ok(KeyMaterial {
            key: KeyHandle::Token(id),
            chain,
        })
    }

    fn check(alias: &Alias, key: &dyn RsaSigner, chain: &[Certificate]) -> Result<()> {
        let Some(leaf) = chain.first() else {
            return Err(StoreError::EmptyChain {
                alias: alias.clone(),
            });
        };
        if key.bits() < MIN_RSA_BITS {
            return Err(StoreError::KeyTooSmall {
                alias: alias.clone(),
                bits: key.bits(),
            });
        }
        if !key.matches(leaf) {
            return Err(StoreError::KeyMismatch {
                alias: alias.clone(),
                subject: leaf.subject(),
                fingerprint: leaf.fingerprint().to_string(),
            });
        }
        rekey_crypto::check_chain(key, chain)?;
        Ok(())
    }

    /// From a PEM private key (PKCS#8 or PKCS#1) and PEM certificates (end entity first).
    pub fn from_pem(alias: &Alias, key_pem: &str, chain_pem: &str) -> Result<KeyMaterial> {
        let key = KeyPair::from_pem(key_pem)?;
        let chain = Certificate::parse_pem_chain(chain_pem)?;
        KeyMaterial::new(alias, key, chain)
    }

    /// From a PKCS#12 file and its password.
    pub fn from_pkcs12(alias: &Alias, der: &[u8], password: &str) -> Result<KeyMaterial> {
        let (key, chain) = rekey_crypto::pkcs12::import(der, password)?;
        KeyMaterial::new(alias, key, chain)
    }

    /// The private key, or its token reference.
    pub fn key(&self) -> &KeyHandle {
        &self.key
    }

    /// The chain, end entity first.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The end-entity certificate.
    pub fn certificate(&self) -> &Certificate {
        // `new` refuses an empty chain.
        &self.chain[0]
    }
}

/// Why an entry left the current position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveReason {
    /// Replaced by an exchange under the same alias.
    Exchanged,
    /// Removed from the keystore.
    Removed,
    /// Replaced by an entry restored from history.
    ReplacedByRestore,
}

impl ArchiveReason {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveReason::Exchanged => "exchanged",
            ArchiveReason::Removed => "removed",
            ArchiveReason::ReplacedByRestore => "replaced_by_restore",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "exchanged" => Some(ArchiveReason::Exchanged),
            "removed" => Some(ArchiveReason::Removed),
            "replaced_by_restore" => Some(ArchiveReason::ReplacedByRestore),
            _ => None,
        }
    }
}

/// A keystore entry (without its private key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreEntry {
    /// Its id.
    pub id: EntryId,
    /// The tenant.
    pub tenant: TenantId,
    /// The alias.
    pub alias: Alias,
    /// Whether this is the alias's current entry (else it is history).
    pub current: bool,
    /// SHA-256 of the end-entity certificate.
    pub fingerprint: Fingerprint,
    /// Subject of the end-entity certificate.
    pub subject: String,
    /// RSA modulus size.
    pub key_bits: u32,
    /// notBefore of the end-entity certificate.
    pub not_before: DateTime<Utc>,
    /// notAfter of the end-entity certificate.
    pub not_after: DateTime<Utc>,
    /// The chain, end entity first.
    pub chain: Vec<Certificate>,
    /// When the entry was stored.
    pub created_at: DateTime<Utc>,
    /// When it last changed (moved to or from history).
    pub updated_at: DateTime<Utc>,
    /// When it moved to history (None while current).
    pub archived_at: Option<DateTime<Utc>>,
    /// Why it moved to history.
    pub archived_reason: Option<ArchiveReason>,
}

impl KeystoreEntry {
    /// The end-entity certificate.
    pub fn certificate(&self) -> Option<&Certificate> {
        self.chain.first()
    }
}

fn describe(e: &KeystoreEntry) -> String {
    format!(
        "entry {} SHA-256 {} notAfter {}",
        e.id,
        e.fingerprint,
        e.not_after.format("%Y-%m-%d")
    )
}

async fn load_entry(
    conn: &impl ConnectionTrait,
    m: keystore_entry::Model,
) -> Result<KeystoreEntry> {
    let corrupt = |what: String| StoreError::Corrupt(format!("keystore entry {}: {what}", m.id));
    let certs = keystore_chain_cert::Entity::find()
        .filter(keystore_chain_cert::Column::EntryId.eq(m.id))
        .order_by_asc(keystore_chain_cert::Column::Position)
        .all(conn)
        .await?;
    let chain = certs
        .iter()
        .map(|c| Certificate::from_der(&c.der))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let alias = Alias::parse(&m.alias).map_err(|e| corrupt(e.to_string()))?;
    let fingerprint = m
        .fingerprint
        .parse::<Fingerprint>()
        .map_err(|e| corrupt(e.to_string()))?;
    let archived_reason = match &m.archived_reason {
        None => None,
        Some(r) => {
            Some(ArchiveReason::parse(r).ok_or_else(|| corrupt(format!("archive reason {r:?}")))?)
        }
    };
    Ok(KeystoreEntry {
        id: EntryId::from_uuid(m.id),
        tenant: TenantId::from_uuid(m.tenant_id),
        alias,
        current: m.is_current,
        fingerprint,
        subject: m.subject,
        key_bits: u32::try_from(m.key_bits).map_err(|e| corrupt(e.to_string()))?,
        not_before: m.not_before,
        not_after: m.not_after,
        chain,
        created_at: m.created_at,
        updated_at: m.updated_at,
        archived_at: m.archived_at,
        archived_reason,
    })
}

async fn current_model(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    alias: &Alias,
) -> Result<Option<keystore_entry::Model>> {
    Ok(keystore_entry::Entity::find()
        .filter(keystore_entry::Column::TenantId.eq(tenant.as_uuid()))
        .filter(keystore_entry::Column::Alias.eq(alias.as_str()))
        .filter(keystore_entry::Column::IsCurrent.eq(true))
        .one(conn)
        .await?)
}

/// The current certificate of each of `tenant`'s aliases that is in `aliases` or begins with
/// `prefix`: alias, fingerprint and notBefore, read by the `(tenant_id, alias)` index without
/// loading chains — what a renewal's world needs, so that a step costs what it touches, not
/// the size of the tenant's keystore.
pub async fn current_certificates(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    aliases: &[Alias],
    prefix: Option<&str>,
) -> Result<Vec<(Alias, Fingerprint, DateTime<Utc>)>> {
    let mut which = Condition::any()
        .add(keystore_entry::Column::Alias.is_in(aliases.iter().map(|a| a.as_str().to_string())));
    if let Some(p) = prefix.filter(|p| !p.is_empty()) {
        // [p, p with its last character raised by one): a range the index serves on both
        // databases, where LIKE would depend on collation.
        let mut end: Vec<char> = p.chars().collect();
        if let Some(last) = end.pop() {
            end.push(char::from_u32(last as u32 + 1).unwrap_or(char::MAX));
        }
        which = which.add(
            Condition::all()
                .add(keystore_entry::Column::Alias.gte(p))
                .add(keystore_entry::Column::Alias.lt(end.into_iter().collect::<String>())),
        );
    }
    let models = keystore_entry::Entity::find()
        .filter(keystore_entry::Column::TenantId.eq(tenant.as_uuid()))
        .filter(keystore_entry::Column::IsCurrent.eq(true))
        .filter(which)
        .all(conn)
        .await?;
    models.into_iter().map(|m| certificate_of(&m)).collect()
}

/// The tenant's current entry holding certificate `fp`, under whichever alias (alias,
/// fingerprint, notBefore).
pub async fn current_with_certificate(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    fp: &Fingerprint,
) -> Result<Option<(Alias, Fingerprint, DateTime<Utc>)>> {
    keystore_entry::Entity::find()
        .filter(keystore_entry::Column::TenantId.eq(tenant.as_uuid()))
        .filter(keystore_entry::Column::IsCurrent.eq(true))
        .filter(keystore_entry::Column::Fingerprint.eq(fp.to_string()))
        .one(conn)
        .await?
        .map(|m| certificate_of(&m))
        .transpose()
}

fn certificate_of(m: &keystore_entry::Model) -> Result<(Alias, Fingerprint, DateTime<Utc>)> {
    let corrupt = |what: String| StoreError::Corrupt(format!("keystore entry {}: {what}", m.id));
    let alias = Alias::parse(&m.alias).map_err(|e| corrupt(e.to_string()))?;
    let fp = m
        .fingerprint
        .parse::<Fingerprint>()
        .map_err(|e| corrupt(e.to_string()))?;
    Ok((alias, fp, m.not_before))
}

/// Writes a new current entry for `alias` (the caller has made room for it).
async fn insert_entry(
    txn: &DatabaseTransaction,
    kek: &Kek,
    tenant: TenantId,
    alias: &Alias,
    material: &KeyMaterial,
) -> Result<KeystoreEntry> {
    let id = EntryId::random();
    let leaf = material.certificate();
    let sealed = seal(kek, &material.key, tenant, alias, id)?;
    let at = now();
    let key_bits = u32::try_from(leaf_bits(leaf)).unwrap_or(u32::MAX);
    let not_before = crate::db::to_micros(leaf.not_before());
    let not_after = crate::db::to_micros(leaf.not_after());
    keystore_entry::Entity::insert(keystore_entry::ActiveModel {
        id: Set(id.as_uuid()),
        tenant_id: Set(tenant.as_uuid()),
        alias: Set(alias.to_string()),
        is_current: Set(true),
        key_nonce: Set(sealed.nonce),
        key_ciphertext: Set(sealed.ciphertext),
        token_key_id: Set(sealed.token_key_id),
        kek_id: Set(sealed.kek_id),
        key_bits: Set(i32::try_from(key_bits).unwrap_or(i32::MAX)),
        fingerprint: Set(leaf.fingerprint().to_string()),
        subject: Set(leaf.subject()),
        not_before: Set(not_before),
        not_after: Set(not_after),
        created_at: Set(at),
        updated_at: Set(at),
        archived_at: Set(None),
        archived_reason: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    for (i, cert) in material.chain.iter().enumerate() {
        keystore_chain_cert::Entity::insert(keystore_chain_cert::ActiveModel {
            entry_id: Set(id.as_uuid()),
            position: Set(i32::try_from(i).unwrap_or(i32::MAX)),
            der: Set(cert.to_der().to_vec()),
        })
        .exec_without_returning(txn)
        .await?;
    }
    Ok(KeystoreEntry {
        id,
        tenant,
        alias: alias.clone(),
        current: true,
        fingerprint: leaf.fingerprint(),
        subject: leaf.subject(),
        key_bits,
        not_before,
        not_after,
        chain: material.chain.clone(),
        created_at: at,
        updated_at: at,
        archived_at: None,
        archived_reason: None,
    })
}

/// A key as it is written to a row: sealed under the KEK, or only its token reference.
pub(crate) struct Sealed {
    pub(crate) nonce: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) kek_id: String,
    pub(crate) token_key_id: Option<String>,
}

/// Seals an embedded key under the KEK, bound to tenant, alias and row id; a token key leaves
/// only its id (the database then holds no private-key bytes for it).
pub(crate) fn seal(
    kek: &Kek,
    key: &KeyHandle,
    tenant: TenantId,
    alias: &Alias,
    row: EntryId,
) -> Result<Sealed> {
    match key {
        KeyHandle::Embedded(k) => {
            let pkcs8 = k.to_pkcs8_der()?;
            let (nonce, ciphertext) = kek.seal(
                &EntryAad {
                    tenant,
                    alias,
                    entry: row,
                },
                &pkcs8,
            )?;
            Ok(Sealed {
                nonce: nonce.to_vec(),
                ciphertext,
                kek_id: kek.id(),
                token_key_id: None,
            })
        }
        KeyHandle::Token(id) => Ok(Sealed {
            nonce: Vec::new(),
            ciphertext: Vec::new(),
            kek_id: TOKEN_KEK_ID.into(),
            token_key_id: Some(id.to_string()),
        }),
    }
}

/// Opens what [`seal`] wrote.
#[allow(clippy::too_many_arguments)]
pub(crate) fn unseal(
    kek: &Kek,
    tenant: TenantId,
    alias: &Alias,
    row: EntryId,
    nonce: &[u8],
    ciphertext: &[u8],
    kek_id: &str,
    token_key_id: Option<&str>,
) -> Result<KeyHandle> {
    if let Some(id) = token_key_id {
        let id = TokenKeyId::from_hex(id)
            .map_err(|e| StoreError::Corrupt(format!("key of {alias} (row {row}): {e}")))?;
        return Ok(KeyHandle::Token(id));
    }
    let plaintext = kek
        .open(
            &EntryAad {
                tenant,
                alias,
                entry: row,
            },
            nonce,
            ciphertext,
        )
        .ok_or_else(|| StoreError::Decrypt {
            alias: alias.clone(),
            stored_kek: kek_id.to_string(),
            kek: kek.id(),
        })?;
    Ok(KeyHandle::Embedded(KeyPair::from_pkcs8_der(&plaintext)?))
}

/// The modulus size of the certificate's RSA key (the key's own size, wherever it is).
fn leaf_bits(leaf: &Certificate) -> usize {
    leaf.rsa_bits().unwrap_or(0)
}

/// Moves the current entry `id` to history.
async fn archive(txn: &DatabaseTransaction, id: EntryId, reason: ArchiveReason) -> Result<()> {
    let at = now();
    keystore_entry::Entity::update_many()
        .col_expr(keystore_entry::Column::IsCurrent, Expr::value(false))
        .col_expr(keystore_entry::Column::ArchivedAt, Expr::value(Some(at)))
        .col_expr(
            keystore_entry::Column::ArchivedReason,
            Expr::value(Some(reason.as_str().to_string())),
        )
        .col_expr(keystore_entry::Column::UpdatedAt, Expr::value(at))
        .filter(keystore_entry::Column::Id.eq(id.as_uuid()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Stores `material` under a new alias; refuses an alias that has a current entry.
pub async fn add(
    txn: &DatabaseTransaction,
    kek: &Kek,
    tenant: TenantId,
    alias: &Alias,
    material: &KeyMaterial,
    actor: &str,
) -> Result<KeystoreEntry> {
    audit::lock_head(txn).await?;
    tenants::ensure(txn, tenant).await?;
    if current_model(txn, tenant, alias).await?.is_some() {
        return Err(StoreError::DuplicateAlias {
            tenant,
            alias: alias.clone(),
        });
    }
    let entry = insert_entry(txn, kek, tenant, alias, material).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "keystore.add",
            tenant: Some(tenant),
            subject: format!("alias {alias}"),
            before: String::new(),
            after: describe(&entry),
        },
    )
    .await?;
    Ok(entry)
}

/// Replaces the alias's current entry with `material`, keeping the alias; the old entry moves
/// to history. Returns the new entry.
pub async fn exchange(
    txn: &DatabaseTransaction,
    kek: &Kek,
    tenant: TenantId,
    alias: &Alias,
    material: &KeyMaterial,
    actor: &str,
) -> Result<KeystoreEntry> {
    audit::lock_head(txn).await?;
    tenants::ensure(txn, tenant).await?;
    let old = current_model(txn, tenant, alias)
        .await?
        .ok_or_else(|| StoreError::UnknownAlias {
            tenant,
            alias: alias.clone(),
        })?;
    let old = load_entry(txn, old).await?;
    archive(txn, old.id, ArchiveReason::Exchanged).await?;
    let entry = insert_entry(txn, kek, tenant, alias, material).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "keystore.exchange",
            tenant: Some(tenant),
            subject: format!("alias {alias}"),
            before: describe(&old),
            after: describe(&entry),
        },
    )
    .await?;
    Ok(entry)
}

/// Moves the alias's current entry to history. Refused while a signer step lists the alias
/// ([`StoreError::AliasInUse`] names every flow and step). Returns the archived entry.
pub async fn remove(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    alias: &Alias,
    actor: &str,
) -> Result<KeystoreEntry> {
    remove_inner(txn, tenant, alias, actor, true).await
}

/// Moves the alias's current entry to history even though signer steps still list the alias.
///
/// Only for renewals: rows whose alias has no key are skipped when signing, which the
/// `prepared-second-alias` procedure relies on, and the engine's guard has already checked that
/// every step listing the alias still signs with a key the receiver trusts.
pub async fn retire(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    alias: &Alias,
    actor: &str,
) -> Result<KeystoreEntry> {
    remove_inner(txn, tenant, alias, actor, false).await
}

async fn remove_inner(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    alias: &Alias,
    actor: &str,
    refuse_in_use: bool,
) -> Result<KeystoreEntry> {
    audit::lock_head(txn).await?;
    tenants::ensure(txn, tenant).await?;
    let current =
        current_model(txn, tenant, alias)
            .await?
            .ok_or_else(|| StoreError::UnknownAlias {
                tenant,
                alias: alias.clone(),
            })?;
    let uses = flows::alias_usage(txn, tenant, alias).await?;
    if refuse_in_use && !uses.is_empty() {
        return Err(StoreError::AliasInUse {
            alias: alias.clone(),
            uses,
        });
    }
    let mut entry = load_entry(txn, current).await?;
    archive(txn, entry.id, ArchiveReason::Removed).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "keystore.remove",
            tenant: Some(tenant),
            subject: format!("alias {alias}"),
            before: describe(&entry),
            after: String::new(),
        },
    )
    .await?;
    entry.current = false;
    entry.archived_reason = Some(ArchiveReason::Removed);
    Ok(entry)
}

/// Makes history entry `entry` of `alias` current again; the current entry, if any, moves to
/// history. Returns the restored entry.
pub async fn restore(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    alias: &Alias,
    entry: EntryId,
    actor: &str,
) -> Result<KeystoreEntry> {
    audit::lock_head(txn).await?;
    tenants::ensure(txn, tenant).await?;
    let unknown = || StoreError::UnknownHistoryEntry {
        tenant,
        alias: alias.clone(),
        entry,
    };
    let target = keystore_entry::Entity::find_by_id(entry.as_uuid())
        .one(txn)
        .await?
        .filter(|m| m.tenant_id == tenant.as_uuid() && m.alias == alias.as_str() && !m.is_current)
        .ok_or_else(unknown)?;
    let before = match current_model(txn, tenant, alias).await? {
        Some(cur) => {
            let cur = load_entry(txn, cur).await?;
            archive(txn, cur.id, ArchiveReason::ReplacedByRestore).await?;
            describe(&cur)
        }
        None => String::new(),
    };
    let at = now();
    keystore_entry::Entity::update_many()
        .col_expr(keystore_entry::Column::IsCurrent, Expr::value(true))
        .col_expr(
            keystore_entry::Column::ArchivedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            keystore_entry::Column::ArchivedReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(keystore_entry::Column::UpdatedAt, Expr::value(at))
        .filter(keystore_entry::Column::Id.eq(target.id))
        .exec(txn)
        .await?;
    let mut restored = load_entry(txn, target).await?;
    restored.current = true;
    restored.archived_at = None;
    restored.archived_reason = None;
    restored.updated_at = at;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "keystore.restore",
            tenant: Some(tenant),
            subject: format!("alias {alias}"),
            before,
            after: describe(&restored),
        },
    )
    .await?;
    Ok(restored)
}

/// The alias's current entry, or [`StoreError::UnknownAlias`].
pub async fn current(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    alias: &Alias,
) -> Result<KeystoreEntry> {
    find_current(conn, tenant, alias)
        .await?
        .ok_or_else(|| StoreError::UnknownAlias {
            tenant,
            alias: alias.clone(),
        })
}

/// The alias's current entry, if it has one.
pub async fn find_current(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    alias: &Alias,
) -> Result<Option<KeystoreEntry>> {
    match current_model(conn, tenant, alias).await? {
        Some(m) => Ok(Some(load_entry(conn, m).await?)),
        None => Ok(None),
    }
}

/// Every current entry of the tenant, by alias.
pub async fn list(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Vec<KeystoreEntry>> {
    tenants::ensure(conn, tenant).await?;
    let models = keystore_entry::Entity::find()
        .filter(keystore_entry::Column::TenantId.eq(tenant.as_uuid()))
        .filter(keystore_entry::Column::IsCurrent.eq(true))
        .order_by_asc(keystore_entry::Column::Alias)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        out.push(load_entry(conn, m).await?);
    }
    Ok(out)
}

/// The alias's history (entries no longer current), newest first.
pub async fn history(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    alias: &Alias,
) -> Result<Vec<KeystoreEntry>> {
    tenants::ensure(conn, tenant).await?;
    let models = keystore_entry::Entity::find()
        .filter(keystore_entry::Column::TenantId.eq(tenant.as_uuid()))
        .filter(keystore_entry::Column::Alias.eq(alias.as_str()))
        .filter(keystore_entry::Column::IsCurrent.eq(false))
        .order_by_desc(keystore_entry::Column::ArchivedAt)
        .order_by_desc(keystore_entry::Column::CreatedAt)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        out.push(load_entry(conn, m).await?);
    }
    Ok(out)
}

/// One entry (current or history) of the tenant by id.
pub async fn entry(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: EntryId,
) -> Result<KeystoreEntry> {
    let m = entry_model(conn, tenant, id).await?;
    load_entry(conn, m).await
}

async fn entry_model(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: EntryId,
) -> Result<keystore_entry::Model> {
    keystore_entry::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .filter(|m| m.tenant_id == tenant.as_uuid())
        .ok_or(StoreError::UnknownEntry { tenant, entry: id })
}

fn open_key(kek: &Kek, m: &keystore_entry::Model) -> Result<KeyHandle> {
    let alias = Alias::parse(&m.alias)
        .map_err(|e| StoreError::Corrupt(format!("keystore entry {}: {e}", m.id)))?;
    unseal(
        kek,
        TenantId::from_uuid(m.tenant_id),
        &alias,
        EntryId::from_uuid(m.id),
        &m.key_nonce,
        &m.key_ciphertext,
        &m.kek_id,
        m.token_key_id.as_deref(),
    )
}

/// Decrypts the private key of the alias's current entry.
pub async fn private_key(
    conn: &impl ConnectionTrait,
    kek: &Kek,
    tenant: TenantId,
    alias: &Alias,
) -> Result<KeyHandle> {
    let m = current_model(conn, tenant, alias)
        .await?
        .ok_or_else(|| StoreError::UnknownAlias {
            tenant,
            alias: alias.clone(),
        })?;
    open_key(kek, &m)
}

/// Decrypts the private key of any entry (current or history) of the tenant.
pub async fn entry_private_key(
    conn: &impl ConnectionTrait,
    kek: &Kek,
    tenant: TenantId,
    id: EntryId,
) -> Result<KeyHandle> {
    let m = entry_model(conn, tenant, id).await?;
    open_key(kek, &m)
}

/// Current entries of every tenant whose certificate expires before `before`, soonest first
/// (for the expiry watch).
pub async fn expiring_before(
    conn: &impl ConnectionTrait,
    before: DateTime<Utc>,
) -> Result<Vec<KeystoreEntry>> {
    let models = keystore_entry::Entity::find()
        .filter(keystore_entry::Column::IsCurrent.eq(true))
        .filter(keystore_entry::Column::NotAfter.lt(before))
        .order_by_asc(keystore_entry::Column::NotAfter)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        out.push(load_entry(conn, m).await?);
    }
    Ok(out)
}

/// How many current certificates expire within each of `within_days` of `now` (expired ones
/// count in every horizon), and the soonest notAfter: counted by the database on the expiry
/// index, so that an unlabelled metrics scrape does not read every entry.
pub async fn expiry_summary(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    within_days: &[u32],
) -> Result<(Vec<u64>, Option<DateTime<Utc>>)> {
    let mut counts = Vec::with_capacity(within_days.len());
    for d in within_days {
        let n = keystore_entry::Entity::find()
            .filter(keystore_entry::Column::IsCurrent.eq(true))
            .filter(
                keystore_entry::Column::NotAfter.lte(now + chrono::Duration::days(i64::from(*d))),
            )
            .count(conn)
            .await?;
        counts.push(n);
    }
    let soonest = keystore_entry::Entity::find()
        .select_only()
        .column(keystore_entry::Column::NotAfter)
        .filter(keystore_entry::Column::IsCurrent.eq(true))
        .order_by_asc(keystore_entry::Column::NotAfter)
        .limit(1)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await?;
    Ok((counts, soonest))
}

/// When the current certificate under each alias expires, soonest first, as `(tenant, alias,
/// notAfter)`: one query reading three columns, no certificate decoded, so that a metrics
/// scrape stays cheap with many entries.
pub async fn current_expiries(
    conn: &impl ConnectionTrait,
) -> Result<Vec<(TenantId, Alias, DateTime<Utc>)>> {
    let rows = keystore_entry::Entity::find()
        .select_only()
        .column(keystore_entry::Column::TenantId)
        .column(keystore_entry::Column::Alias)
        .column(keystore_entry::Column::NotAfter)
        .filter(keystore_entry::Column::IsCurrent.eq(true))
        .order_by_asc(keystore_entry::Column::NotAfter)
        .into_tuple::<(uuid::Uuid, String, DateTime<Utc>)>()
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|(t, a, n)| {
            let alias = Alias::parse(&a)
                .map_err(|e| StoreError::Corrupt(format!("keystore alias {a:?}: {e}")))?;
            Ok((TenantId::from_uuid(t), alias, n))
        })
        .collect()
}

/// A key of the tenant kept on its token, as the database records it: what the token's
/// objects with this id should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    /// The token object's `CKA_ID`.
    pub id: TokenKeyId,
    /// The alias it belongs to.
    pub alias: Alias,
    /// Where it stands: current, history or pending.
    pub state: TokenRefState,
    /// Its certificate, once it has one.
    pub certificate: Option<Certificate>,
}

/// Where a token key stands in the keystore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefState {
    /// The alias's current entry.
    Current,
    /// A history entry (kept so that an exchange can be rolled back).
    History,
    /// A renewal's new key, not in the keystore yet.
    Pending,
}

/// Every token key the tenant's keystore entries (current and history) and pending keys refer
/// to. Reconciliation compares this with the token's objects.
pub async fn token_refs(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Vec<TokenRef>> {
    let corrupt = |row: Uuid, what: String| StoreError::Corrupt(format!("key row {row}: {what}"));
    let mut out = Vec::new();
    let entries = keystore_entry::Entity::find()
        .filter(keystore_entry::Column::TenantId.eq(tenant.as_uuid()))
        .filter(keystore_entry::Column::TokenKeyId.is_not_null())
        .all(conn)
        .await?;
    for m in entries {
        let Some(hex) = m.token_key_id.clone() else {
            continue;
        };
        let id = TokenKeyId::from_hex(&hex).map_err(|e| corrupt(m.id, e.to_string()))?;
        let current = m.is_current;
        let e = load_entry(conn, m).await?;
        out.push(TokenRef {
            id,
            alias: e.alias.clone(),
            state: if current {
                TokenRefState::Current
            } else {
                TokenRefState::History
            },
            certificate: e.chain.first().cloned(),
        });
    }
    let pending = crate::entity::pending_key::Entity::find()
        .filter(crate::entity::pending_key::Column::TenantId.eq(tenant.as_uuid()))
        .filter(crate::entity::pending_key::Column::TokenKeyId.is_not_null())
        .all(conn)
        .await?;
    for m in pending {
        let Some(hex) = m.token_key_id.clone() else {
            continue;
        };
        let id = TokenKeyId::from_hex(&hex).map_err(|e| corrupt(m.id, e.to_string()))?;
        let alias = Alias::parse(&m.alias).map_err(|e| corrupt(m.id, e.to_string()))?;
        let certificate = if m.chain_pem.trim().is_empty() {
            None
        } else {
            Certificate::parse_pem_chain(&m.chain_pem)?
                .into_iter()
                .next()
        };
        out.push(TokenRef {
            id,
            alias,
            state: TokenRefState::Pending,
            certificate,
        });
    }
    Ok(out)
}

/// How many keystore entries and pending keys of the tenant hold a sealed private key (for a
/// token tenant: none, the database holds no private-key bytes).
pub async fn sealed_key_count(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<u64> {
    use sea_orm::PaginatorTrait as _;
    let entries = keystore_entry::Entity::find()
        .filter(keystore_entry::Column::TenantId.eq(tenant.as_uuid()))
        .filter(keystore_entry::Column::TokenKeyId.is_null())
        .count(conn)
        .await?;
    let pending = crate::entity::pending_key::Entity::find()
        .filter(crate::entity::pending_key::Column::TenantId.eq(tenant.as_uuid()))
        .filter(crate::entity::pending_key::Column::TokenKeyId.is_null())
        .count(conn)
        .await?;
    Ok(entries + pending)
}
