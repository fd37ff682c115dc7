//! A renewal's effects on an SAP Cloud Integration tenant, carried out inside the event's
//! transaction (every writer's lock held, as for a PKCS#11 token) and before the record
//! changes, so the record never claims what the tenant does not hold.
//!
//! Which procedures, and how:
//! - `prepared-second-alias` puts the new key under an alias of its own. The key is generated on
//!   the tenant (it never leaves it) under a pending alias rekey derives from the renewal and
//!   the event's version, then renamed to the prepared alias when the step says so; the old key
//!   is deleted after the commit that retires it, after a keystore backup
//!   ([`Service::reconcile_sap_ci`]).
//! - `dual-trust` and `downtime-window` exchange the key under the signer's alias. The API has
//!   no atomic generate-delete-rename: deleting the old key and renaming a generated one leaves
//!   a moment in which the alias holds no key and the flow cannot sign. The one call that
//!   replaces a key under its alias is a PKCS#12 import with `update=true`, which needs a key
//!   made outside the tenant. So rekey makes the new key itself (kept sealed under the KEK like
//!   an embedded key), hands the certificate to the receiver, and at the exchange backs the
//!   keystore up and imports the key over the old one in one call; its own copy is dropped in
//!   the same transaction, and from then on the tenant holds the only one. Neither procedure
//!   therefore has a gap, and `downtime-window` needs its window only for the receiver.
//!
//! Each call is written so that repeating it after a crash adopts what the first attempt did:
//! a pending alias that exists is adopted, a key already under its target alias is left, an
//! alias already holding the renewal's new key is not imported again, a retired key still on
//! the tenant is deleted by the next reconciliation, a pending key no renewal staged is deleted
//! too.
//!
//! A CA-signed key (`--ca-signed`): generated on the tenant, its certificate request read from
//! there and the CA's chain put on it before the rename; made by rekey for the exchanges, its
//! chain imported with it.
//!
//! Refused, at the start of a renewal, with a clear error: changing a signer step's aliases
//! (`dual-signature`: a parameter change and a deploy). Refused when asked:
//! rolling an exchanged or removed key back (its private key cannot be read from the tenant;
//! the backup rekey made before is the tenant administrator's to restore).

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, KeyHandle};
use rekey_engine::{Change, ProcedureId, Renewal};
use rekey_model::{Alias, Fingerprint};
use rekey_store::{DatabaseTransaction, keystore, pending};
use uuid::Uuid;

use crate::sapci::{KeyPairRequest, SapCiClient, SapCiError};
use crate::{Result, ServiceError};

use super::{Service, tenant_of};

/// The prefix of the aliases under which rekey generates a renewal's key on the tenant before
/// the key takes its place; `rekey tenant sync` does not record them.
pub const PENDING_PREFIX: &str = "rekey-pending-";

/// The pending alias of the key that event `version` of `renewal` generates.
pub fn pending_alias(renewal: Uuid, version: i64) -> String {
    format!("{PENDING_PREFIX}{}-{version}", renewal.simple())
}

/// The procedures rekey carries out on an SAP Cloud Integration tenant.
pub const SAP_CI_PROCEDURES: &[ProcedureId] = &[
    ProcedureId::PreparedSecondAlias,
    ProcedureId::DualTrust,
    ProcedureId::DowntimeWindow,
];

/// Whether `procedure`'s new key is generated on the tenant (it goes under an alias of its
/// own) rather than made by rekey and imported over the old one (it replaces the old key under
/// its alias, which only a PKCS#12 import does in one call).
pub(crate) fn generated_on_tenant(procedure: ProcedureId) -> bool {
    procedure == ProcedureId::PreparedSecondAlias
}

/// Refuses a renewal on an SAP Cloud Integration tenant that could not finish there.
pub(crate) fn check_procedure(procedure: ProcedureId) -> Result<()> {
    if !SAP_CI_PROCEDURES.contains(&procedure) {
        return Err(ServiceError::NotApplicable(format!(
            "procedure {procedure} cannot run on an SAP Cloud Integration tenant yet: rekey \
             carries out there only {}; changing a signer step's aliases (a parameter change \
             and a deploy of the flow) is not done by rekey on the tenant",
            SAP_CI_PROCEDURES
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

fn sap(e: SapCiError) -> ServiceError {
    ServiceError::SapCi(e)
}

/// The subject's attribute `key` (`CN`, `O`, …) from its RFC 4514 string form.
fn attribute(subject: &str, key: &str) -> Option<String> {
    subject.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().to_string())
    })
}

impl Service {
    /// Generates the renewal's new key on the tenant under its pending alias (or adopts the
    /// key a first attempt made there) and stages it with the certificate the tenant made —
    /// or, for a CA-signed renewal, with the tenant's certificate request, the chain to come
    /// ([`Service::upload_chain_on_sap_ci`]); then there is no certificate to return yet.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn generate_on_sap_ci(
        &self,
        txn: &DatabaseTransaction,
        client: &SapCiClient,
        r: &Renewal,
        version: i64,
        bits: u32,
        ca_signed: bool,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Fingerprint>> {
        check_procedure(r.procedure)?;
        let tenant = tenant_of(r);
        let old = keystore::find_current(txn, tenant, &r.alias).await?;
        let (subject, days) = match &old {
            Some(e) => (
                e.subject.clone(),
                (e.not_after - e.not_before).num_days().clamp(1, 3650),
            ),
            None => (format!("CN={}", r.alias), 365),
        };
        let target = r.new_alias.as_ref().unwrap_or(&r.alias);
        let country = attribute(&subject, "C")
            .or_else(|| {
                self.sap_ci
                    .get(&tenant)
                    .and_then(|t| t.config().country.clone())
            })
            .ok_or_else(|| {
                ServiceError::NotApplicable(format!(
                    "the tenant requires a country in a generated key's subject, and the \
                     certificate of {} ({subject}) names none: set country = \"..\" (two \
                     letters) in the tenant's [keystores.<tenant>] section",
                    r.alias
                ))
            })?;
        let alias = pending_alias(r.id, version);
        rekey_store::audit::lock_head(txn).await?;
        crate::failpoint::hit("before-token-generate");
        if client.keystore_entry(&alias).await.map_err(sap)?.is_none() {
            let not_before = now - self.clock_skew;
            client
                .generate_key_pair(&KeyPairRequest {
                    alias: alias.clone(),
                    bits,
                    common_name: attribute(&subject, "CN").unwrap_or_else(|| target.to_string()),
                    organization: attribute(&subject, "O"),
                    organization_unit: attribute(&subject, "OU"),
                    country,
                    not_before,
                    not_after: not_before + chrono::Duration::days(days),
                })
                .await
                .map_err(sap)?;
        }
        crate::failpoint::hit("after-token-generate");
        let listed = client
            .keystore_entry(&alias)
            .await
            .map_err(sap)?
            .ok_or_else(|| gone(&alias))?;
        let cert = client
            .certificate(&alias, listed.fingerprint)
            .await
            .map_err(sap)?
            .ok_or_else(|| gone(&alias))?;
        let fp = cert.fingerprint();
        let handle = KeyHandle::Token(crate::tokens::remote_key_id(tenant, &fp)?);
        let (chain, csr) = if ca_signed {
            let csr = client
                .signing_request(&alias)
                .await
                .map_err(sap)?
                .ok_or_else(|| gone(&alias))?;
            (Vec::new(), Some(csr))
        } else {
            (vec![cert], None)
        };
        pending::stage(
            txn,
            self.store.kek()?,
            tenant,
            r.id,
            target,
            &handle,
            self.store.backend(tenant).as_ref(),
            &chain,
            csr,
            actor,
        )
        .await?;
        Ok((!ca_signed).then_some(fp))
    }

    /// Puts the CA's `chain` on the renewal's pending key on the tenant (checked against the
    /// key's request before), unless a first attempt already did.
    pub(super) async fn upload_chain_on_sap_ci(
        &self,
        client: &SapCiClient,
        r: &Renewal,
        chain: &[Certificate],
    ) -> Result<()> {
        let leaf = chain
            .first()
            .ok_or_else(|| ServiceError::Input("no certificate given".into()))?
            .fingerprint();
        let prefix = format!("{PENDING_PREFIX}{}-", r.id.simple());
        let entries = client.keystore_entries().await.map_err(sap)?;
        let pending = entries
            .iter()
            .find(|e| e.alias.starts_with(&prefix))
            .ok_or_else(|| {
                ServiceError::NotApplicable(format!(
                    "the renewal's new key is no longer on the tenant under a {prefix}… alias; \
                     nothing was changed"
                ))
            })?;
        if pending.fingerprint == Some(leaf) {
            return Ok(());
        }
        let pem: String = chain.iter().map(Certificate::to_pem).collect();
        crate::failpoint::hit("before-remote-chain");
        match client.upload_chain(&pending.alias, &pem).await {
            Ok(()) => {}
            Err(SapCiError::Api {
                status: 409,
                message,
                ..
            }) => {
                // Answered with the entry itself, marked `notTrusted` (A7), or with a text.
                let message = if message.trim_start().starts_with('{') {
                    "trust path not established".to_string()
                } else {
                    message
                };
                return Err(ServiceError::NotApplicable(format!(
                    "the tenant refused the chain ({message}): its keystore holds no \
                     certificate the chain reaches; import the CA's certificate into the \
                     tenant's keystore, then upload the chain again; nothing was changed"
                )));
            }
            Err(e) => return Err(sap(e)),
        }
        crate::failpoint::hit("after-remote-chain");
        match client.keystore_entry(&pending.alias).await.map_err(sap)? {
            Some(e) if e.fingerprint == Some(leaf) => Ok(()),
            _ => Err(ServiceError::NotApplicable(format!(
                "the tenant accepted the chain for {} but does not list certificate {leaf} \
                 there; nothing was recorded",
                pending.alias
            ))),
        }
    }

    /// Carries out `change` of renewal `r` on the tenant, before the record changes.
    pub(super) async fn change_on_sap_ci(
        &self,
        txn: &DatabaseTransaction,
        client: &SapCiClient,
        r: &Renewal,
        change: &Change,
    ) -> Result<()> {
        match change {
            Change::AddKey { alias, cert } => {
                let entries = client.keystore_entries().await.map_err(sap)?;
                let holds = |a: &str| {
                    entries
                        .iter()
                        .find(|e| e.alias == a && e.is_key_pair())
                        .and_then(|e| e.fingerprint)
                };
                match holds(alias.as_str()) {
                    // Done by an attempt whose event did not commit.
                    Some(fp) if fp == *cert => return Ok(()),
                    Some(fp) => {
                        return Err(ServiceError::NotApplicable(format!(
                            "alias {alias} on the tenant already holds certificate {fp}, not the \
                             renewal's new key {cert}; nothing was changed"
                        )));
                    }
                    None => {}
                }
                let pending = entries
                    .iter()
                    .find(|e| e.fingerprint == Some(*cert) && e.alias.starts_with(PENDING_PREFIX))
                    .ok_or_else(|| {
                        ServiceError::NotApplicable(format!(
                            "the renewal's new key (certificate {cert}) is no longer on the \
                             tenant under a {PENDING_PREFIX}… alias; nothing was changed"
                        ))
                    })?;
                crate::failpoint::hit("before-remote-rename");
                client
                    .rename_entry(&pending.alias, alias.as_str())
                    .await
                    .map_err(sap)?;
                crate::failpoint::hit("after-remote-rename");
                Ok(())
            }
            // Deleted on the tenant after the commit that retires it
            // ([`Service::reconcile_sap_ci`]): until then the tenant signs with one key more,
            // which the receivers of this procedure accept, and a crash in between is repaired
            // by the next reconciliation rather than seen as a change by hand.
            Change::RemoveKey { .. } => Ok(()),
            // Records only: what a receiver trusts is not in the tenant.
            Change::Trust { .. } | Change::Distrust { .. } => Ok(()),
            Change::ExchangeKey { alias, cert } => {
                self.exchange_on_sap_ci(txn, client, r, alias, cert).await
            }
            Change::RestoreKey { alias, .. } => Err(ServiceError::NotApplicable(format!(
                "putting the earlier key back under alias {alias} on an SAP Cloud Integration \
                 tenant is not done by rekey: the tenant never lets a private key out, so rekey \
                 holds no copy of it; the tenant administrator can restore it from the keystore \
                 backup (backup_admin_system) rekey made before replacing or deleting it; \
                 nothing was changed"
            ))),
            Change::AddSignerAlias { alias, .. } | Change::RemoveSignerAlias { alias, .. } => {
                Err(ServiceError::NotApplicable(format!(
                    "changing which aliases a signer step lists ({alias}) on an SAP Cloud \
                     Integration tenant is not done by rekey yet: it is a parameter change and a \
                     deploy; nothing was changed"
                )))
            }
        }
    }

    /// Replaces the key under `alias` on the tenant with the renewal's new key (made by rekey,
    /// certificate `cert`) in one call: a PKCS#12 import with `update=true`, after a keystore
    /// backup that keeps the old key for the tenant administrator. An alias that already holds
    /// the new key was exchanged by an attempt whose event did not commit, and is left.
    async fn exchange_on_sap_ci(
        &self,
        txn: &DatabaseTransaction,
        client: &SapCiClient,
        r: &Renewal,
        alias: &Alias,
        cert: &Fingerprint,
    ) -> Result<()> {
        match client.keystore_entry(alias.as_str()).await.map_err(sap)? {
            Some(e) if e.fingerprint == Some(*cert) => return Ok(()),
            Some(e) if e.is_key_pair() => {}
            _ => {
                return Err(ServiceError::NotApplicable(format!(
                    "alias {alias} holds no key pair on the tenant, so there is nothing to \
                     exchange; nothing was changed"
                )));
            }
        }
        let p = pending::get(txn, self.store.kek()?, r.id)
            .await?
            .filter(|p| p.fingerprint() == Some(*cert))
            .ok_or_else(|| {
                ServiceError::Corrupt(format!(
                    "renewal {} has no pending key with certificate {cert} to import",
                    r.id
                ))
            })?;
        let KeyHandle::Embedded(key) = p.key else {
            return Err(ServiceError::Corrupt(format!(
                "the pending key of renewal {} is a reference, not a key rekey can import",
                r.id
            )));
        };
        // A transport password: the PKCS#12 file exists only inside this call.
        let password = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let pkcs12 = {
            let password = password.clone();
            let chain = p.chain;
            crate::cpu::blocking(move || rekey_crypto::pkcs12::export(&key, &chain, &password))
                .await??
        };
        client.backup().await.map_err(sap)?;
        crate::failpoint::hit("before-remote-import");
        client
            .import_key_pair(alias.as_str(), &pkcs12, &password, true)
            .await
            .map_err(sap)?;
        crate::failpoint::hit("after-remote-import");
        match client.keystore_entry(alias.as_str()).await.map_err(sap)? {
            Some(e) if e.fingerprint == Some(*cert) => Ok(()),
            found => Err(ServiceError::NotApplicable(format!(
                "the tenant accepted the new key for alias {alias} but lists {}; nothing was \
                 recorded",
                found
                    .and_then(|e| e.fingerprint)
                    .map_or_else(|| "no key".to_string(), |f| format!("certificate {f}"))
            ))),
        }
    }

    /// Deletes the renewal's pending key from the tenant, when it is still there under its
    /// pending alias (a key that took its place is the keystore's now).
    pub(super) async fn discard_on_sap_ci(
        &self,
        client: &SapCiClient,
        cert: &Fingerprint,
    ) -> Result<()> {
        let entries = client.keystore_entries().await.map_err(sap)?;
        for e in entries
            .iter()
            .filter(|e| e.fingerprint == Some(*cert) && e.alias.starts_with(PENDING_PREFIX))
        {
            client.delete_entry(&e.alias).await.map_err(sap)?;
        }
        Ok(())
    }
}

fn gone(alias: &str) -> ServiceError {
    ServiceError::NotApplicable(format!(
        "the key generated on the tenant under {alias} is not there any more; nothing was changed"
    ))
}

/// Whether `alias` is one of rekey's pending aliases.
pub fn is_pending(alias: &str) -> bool {
    alias.starts_with(PENDING_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_attributes_are_read_by_name() {
        let s = "CN=acme signer, O=Acme, C=DE";
        assert_eq!(attribute(s, "CN").as_deref(), Some("acme signer"));
        assert_eq!(attribute(s, "o").as_deref(), Some("Acme"));
        assert_eq!(attribute(s, "C").as_deref(), Some("DE"));
        assert_eq!(attribute(s, "OU"), None);
    }

    #[test]
    fn pending_aliases_name_renewal_and_version() {
        let id = Uuid::nil();
        let a = pending_alias(id, 3);
        assert_eq!(a, format!("{PENDING_PREFIX}{}-3", id.simple()));
        assert!(is_pending(&a));
        assert!(!is_pending("signer"));
    }
}
