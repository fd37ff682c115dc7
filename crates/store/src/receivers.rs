//! Receivers: the systems that verify a tenant's signed messages. Each has a name (unique per
//! tenant), a capability profile, its administrators' email contacts, and the certificates it
//! currently trusts as confirmed by its administrator.

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, Fingerprint};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};

use crate::audit::{self, AuditRecord};
use crate::db::{now, to_micros};
use crate::entity::{receiver, receiver_admin_email, receiver_trusted_cert};
use crate::error::{Result, StoreError};
use crate::tenants;
use rekey_model::{Email, ReceiverId, ReceiverName, TenantId};

/// What a receiver can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReceiverProfile {
    /// It can trust the old and the new certificate at the same time.
    pub verifies_multiple_keys: bool,
    /// It accepts a SignedData with several SignerInfos and checks the one it trusts.
    pub accepts_multiple_signatures: bool,
}

impl std::fmt::Display for ReceiverProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "verifies_multiple_keys={} accepts_multiple_signatures={}",
            self.verifies_multiple_keys, self.accepts_multiple_signatures
        )
    }
}

/// A certificate a receiver trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCertificate {
    /// SHA-256 of the certificate.
    pub fingerprint: Fingerprint,
    /// Its subject.
    pub subject: String,
    /// Its notAfter.
    pub not_after: DateTime<Utc>,
    /// The certificate.
    pub certificate: Certificate,
    /// When the trust was recorded.
    pub added_at: DateTime<Utc>,
}

/// A receiver with its contacts and trusted certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Its id.
    pub id: ReceiverId,
    /// The tenant.
    pub tenant: TenantId,
    /// Its name.
    pub name: ReceiverName,
    /// Its profile.
    pub profile: ReceiverProfile,
    /// Its administrators' contacts, sorted.
    pub admin_emails: Vec<Email>,
    /// The certificates it trusts, by fingerprint.
    pub trusted: Vec<TrustedCertificate>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) async fn model(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    name: &ReceiverName,
) -> Result<receiver::Model> {
    tenants::ensure(conn, tenant).await?;
    receiver::Entity::find()
        .filter(receiver::Column::TenantId.eq(tenant.as_uuid()))
        .filter(receiver::Column::Name.eq(name.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownReceiver {
            tenant,
            receiver: name.clone(),
        })
}

async fn trusted_of(
    conn: &impl ConnectionTrait,
    id: uuid::Uuid,
) -> Result<Vec<TrustedCertificate>> {
    receiver_trusted_cert::Entity::find()
        .filter(receiver_trusted_cert::Column::ReceiverId.eq(id))
        .order_by_asc(receiver_trusted_cert::Column::Fingerprint)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| {
            Ok(TrustedCertificate {
                fingerprint: m.fingerprint.parse().map_err(corrupt)?,
                subject: m.subject,
                not_after: m.not_after,
                certificate: Certificate::from_der(&m.der).map_err(corrupt)?,
                added_at: m.created_at,
            })
        })
        .collect()
}

async fn load(conn: &impl ConnectionTrait, m: receiver::Model) -> Result<Receiver> {
    let admin_emails = receiver_admin_email::Entity::find()
        .filter(receiver_admin_email::Column::ReceiverId.eq(m.id))
        .order_by_asc(receiver_admin_email::Column::Email)
        .all(conn)
        .await?
        .into_iter()
        .map(|e| Email::parse(&e.email).map_err(corrupt))
        .collect::<Result<Vec<_>>>()?;
    Ok(Receiver {
        id: ReceiverId::from_uuid(m.id),
        tenant: TenantId::from_uuid(m.tenant_id),
        name: ReceiverName::parse(&m.name).map_err(corrupt)?,
        profile: ReceiverProfile {
            verifies_multiple_keys: m.verifies_multiple_keys,
            accepts_multiple_signatures: m.accepts_multiple_signatures,
        },
        admin_emails,
        trusted: trusted_of(conn, m.id).await?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

async fn touch(txn: &DatabaseTransaction, id: uuid::Uuid) -> Result<()> {
    receiver::Entity::update_many()
        .col_expr(receiver::Column::UpdatedAt, Expr::value(now()))
        .filter(receiver::Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Creates a receiver; refuses a name the tenant already uses.
pub async fn add(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    profile: ReceiverProfile,
    actor: &str,
) -> Result<Receiver> {
    audit::lock_head(txn).await?;
    tenants::ensure(txn, tenant).await?;
    let taken = receiver::Entity::find()
        .filter(receiver::Column::TenantId.eq(tenant.as_uuid()))
        .filter(receiver::Column::Name.eq(name.as_str()))
        .one(txn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::DuplicateReceiver {
            tenant,
            receiver: name.clone(),
        });
    }
    let id = ReceiverId::random();
    let at = now();
    receiver::Entity::insert(receiver::ActiveModel {
        id: Set(id.as_uuid()),
        tenant_id: Set(tenant.as_uuid()),
        name: Set(name.to_string()),
        verifies_multiple_keys: Set(profile.verifies_multiple_keys),
        accepts_multiple_signatures: Set(profile.accepts_multiple_signatures),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.add",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: String::new(),
            after: profile.to_string(),
        },
    )
    .await?;
    Ok(Receiver {
        id,
        tenant,
        name: name.clone(),
        profile,
        admin_emails: Vec::new(),
        trusted: Vec::new(),
        created_at: at,
        updated_at: at,
    })
}

/// Changes a receiver's profile.
pub async fn set_profile(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    profile: ReceiverProfile,
    actor: &str,
) -> Result<Receiver> {
    audit::lock_head(txn).await?;
    let m = model(txn, tenant, name).await?;
    let before = ReceiverProfile {
        verifies_multiple_keys: m.verifies_multiple_keys,
        accepts_multiple_signatures: m.accepts_multiple_signatures,
    };
    receiver::Entity::update_many()
        .col_expr(
            receiver::Column::VerifiesMultipleKeys,
            Expr::value(profile.verifies_multiple_keys),
        )
        .col_expr(
            receiver::Column::AcceptsMultipleSignatures,
            Expr::value(profile.accepts_multiple_signatures),
        )
        .filter(receiver::Column::Id.eq(m.id))
        .exec(txn)
        .await?;
    touch(txn, m.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.profile",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: before.to_string(),
            after: profile.to_string(),
        },
    )
    .await?;
    get(txn, tenant, name).await
}

/// A receiver by name.
pub async fn get(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    name: &ReceiverName,
) -> Result<Receiver> {
    let m = model(conn, tenant, name).await?;
    load(conn, m).await
}

/// A receiver by id.
pub async fn by_id(conn: &impl ConnectionTrait, id: ReceiverId) -> Result<Receiver> {
    let m = receiver::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownReceiverId(id.to_string()))?;
    load(conn, m).await
}

/// Every receiver of the tenant, by name.
pub async fn list(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Vec<Receiver>> {
    tenants::ensure(conn, tenant).await?;
    let models = receiver::Entity::find()
        .filter(receiver::Column::TenantId.eq(tenant.as_uuid()))
        .order_by_asc(receiver::Column::Name)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        out.push(load(conn, m).await?);
    }
    Ok(out)
}

/// Adds an administrator contact.
pub async fn add_admin_email(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    email: &Email,
    actor: &str,
) -> Result<Receiver> {
    audit::lock_head(txn).await?;
    let m = model(txn, tenant, name).await?;
    let exists = receiver_admin_email::Entity::find_by_id((m.id, email.to_string()))
        .one(txn)
        .await?;
    if exists.is_some() {
        return Err(StoreError::DuplicateReceiverAdmin {
            receiver: name.clone(),
            email: email.clone(),
        });
    }
    receiver_admin_email::Entity::insert(receiver_admin_email::ActiveModel {
        receiver_id: Set(m.id),
        email: Set(email.to_string()),
        created_at: Set(now()),
    })
    .exec_without_returning(txn)
    .await?;
    touch(txn, m.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.admin.add",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: String::new(),
            after: format!("admin contact {email}"),
        },
    )
    .await?;
    load(txn, m).await
}

/// Removes an administrator contact.
pub async fn remove_admin_email(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    email: &Email,
    actor: &str,
) -> Result<Receiver> {
    audit::lock_head(txn).await?;
    let m = model(txn, tenant, name).await?;
    let res = receiver_admin_email::Entity::delete_by_id((m.id, email.to_string()))
        .exec(txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::UnknownReceiverAdmin {
            receiver: name.clone(),
            email: email.clone(),
        });
    }
    touch(txn, m.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.admin.remove",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: format!("admin contact {email}"),
            after: String::new(),
        },
    )
    .await?;
    load(txn, m).await
}

/// Records that the receiver trusts `cert` (as confirmed by its administrator).
pub async fn trust(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    cert: &Certificate,
    actor: &str,
) -> Result<TrustedCertificate> {
    audit::lock_head(txn).await?;
    let m = model(txn, tenant, name).await?;
    let fingerprint = cert.fingerprint();
    let exists = receiver_trusted_cert::Entity::find_by_id((m.id, fingerprint.to_string()))
        .one(txn)
        .await?;
    if exists.is_some() {
        return Err(StoreError::DuplicateTrustedCertificate {
            receiver: name.clone(),
            fingerprint: fingerprint.to_string(),
        });
    }
    let at = now();
    let not_after = to_micros(cert.not_after());
    receiver_trusted_cert::Entity::insert(receiver_trusted_cert::ActiveModel {
        receiver_id: Set(m.id),
        fingerprint: Set(fingerprint.to_string()),
        der: Set(cert.to_der().to_vec()),
        subject: Set(cert.subject()),
        not_after: Set(not_after),
        created_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    touch(txn, m.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.trust.add",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: String::new(),
            after: format!("trusts {} SHA-256 {fingerprint}", cert.subject()),
        },
    )
    .await?;
    Ok(TrustedCertificate {
        fingerprint,
        subject: cert.subject(),
        not_after,
        certificate: cert.clone(),
        added_at: at,
    })
}

/// Records that the receiver no longer trusts the certificate with this fingerprint.
pub async fn untrust(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    fingerprint: &Fingerprint,
    actor: &str,
) -> Result<()> {
    audit::lock_head(txn).await?;
    let m = model(txn, tenant, name).await?;
    let res = receiver_trusted_cert::Entity::delete_by_id((m.id, fingerprint.to_string()))
        .exec(txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::UnknownTrustedCertificate {
            receiver: name.clone(),
            fingerprint: fingerprint.to_string(),
        });
    }
    touch(txn, m.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.trust.remove",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: format!("trusts SHA-256 {fingerprint}"),
            after: String::new(),
        },
    )
    .await?;
    Ok(())
}

/// The certificates the receiver trusts, by fingerprint.
pub async fn trusted(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    name: &ReceiverName,
) -> Result<Vec<TrustedCertificate>> {
    let m = model(conn, tenant, name).await?;
    trusted_of(conn, m.id).await
}
