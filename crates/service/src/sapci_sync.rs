//! rekey's record of an SAP Cloud Integration tenant's keystore, kept true to the tenant.
//!
//! The tenant's keys live in the tenant: rekey records each key pair of its `system` keystore
//! by certificate (a [`KeyMaterial::remote`] entry), so that the expiry watch plans from the
//! tenant's real certificates and a renewal starts from what the tenant really holds.
//!
//! - **Sync** ([`Service::sync_sap_ci`], `rekey tenant sync`, and every watch pass): the
//!   tenant is read first, outside any transaction; then, under every writer's lock, each key
//!   pair the record lacks is added, a key changed or deleted on the tenant is exchanged or
//!   retired in the record — each audited as the tenant's doing — unless a running renewal
//!   touches the alias: then the record is left as it is and the difference reported, because
//!   the renewal's steps were judged against the record.
//! - **Before every action** on a running renewal ([`Service::check_sap_ci`]): the aliases the
//!   renewal touches are read from the tenant again; when one no longer holds the certificate
//!   rekey recorded (someone changed it by hand), the action is refused with both
//!   fingerprints, nothing changes, and the tenant administrators are told by mail.
//!
//! SAP-owned entries and entries that are certificates only are not signing keys of the
//! tenant administrator and are left out; an alias rekey cannot use as one of its own is
//! reported as skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rekey_engine::{Renewal, RenewalStatus};
use rekey_model::{Alias, Fingerprint, Grant, TenantId};
use rekey_store::keystore::TokenRefState;
use rekey_store::mail::{OutboxMail, TenantChangedMail};
use rekey_store::outbox::{self, OutboxMessage};
use rekey_store::{KeyMaterial, audit, keystore, renewals};
use serde::Serialize;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::sapci::{SapCiClient, SapCiConfig};
use crate::shell::commit;
use crate::{Result, Service, ServiceError};

/// Who the audit log names for a change found on the tenant.
pub const SYNC_ACTOR: &str = "sap-ci tenant (found by rekey)";

/// A tenant's connection settings and the client made from them on first use (the secret is
/// read then, so commands that never reach the tenant never read it).
#[derive(Debug, Clone)]
pub(crate) struct SapCiTenant {
    config: SapCiConfig,
    client: OnceCell<Arc<SapCiClient>>,
}

/// The SAP Cloud Integration tenants a [`Service`] reaches, by rekey tenant.
pub(crate) type SapCiTenants = HashMap<TenantId, SapCiTenant>;

impl SapCiTenant {
    /// Its connection settings.
    pub(crate) fn config(&self) -> &SapCiConfig {
        &self.config
    }
}

pub(crate) fn tenant(config: SapCiConfig) -> SapCiTenant {
    SapCiTenant {
        config,
        client: OnceCell::new(),
    }
}

/// One alias whose record and tenant differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The alias.
    pub alias: String,
    /// The certificate rekey recorded under it (`None`: none).
    pub recorded: Option<Fingerprint>,
    /// The certificate the tenant holds under it (`None`: no key pair).
    pub found: Option<Fingerprint>,
    /// The running renewal that touches the alias, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal: Option<Uuid>,
}

/// An entry of the tenant left out of the record, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The alias as the tenant spells it.
    pub alias: String,
    /// Why.
    pub reason: String,
}

/// What a sync found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Key pairs recorded for the first time.
    pub added: Vec<Difference>,
    /// Key pairs recorded as they were: how many.
    pub unchanged: usize,
    /// Aliases whose key the tenant changed: the record now follows.
    pub changed: Vec<Difference>,
    /// Aliases the tenant no longer holds: retired in the record.
    pub removed: Vec<Difference>,
    /// Differences left in place because a running renewal touches the alias.
    pub held: Vec<Difference>,
    /// Entries left out.
    pub skipped: Vec<Skipped>,
    /// Keys rekey deleted from the tenant first ([`Service::reconcile_sap_ci`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<Difference>,
}

impl Service {
    /// Makes `tenant`'s keystore the SAP Cloud Integration tenant `config` names: its keys are
    /// read from there ([`Service::sync_sap_ci`]) and checked before every action.
    pub fn with_sap_ci(mut self, tenant: TenantId, config: SapCiConfig) -> Self {
        Arc::make_mut(&mut self.sap_ci).insert(tenant, self::tenant(config));
        self
    }

    /// The tenants backed by SAP Cloud Integration.
    pub fn sap_ci_tenants(&self) -> Vec<TenantId> {
        self.sap_ci.keys().copied().collect()
    }

    /// The client of `tenant`'s SAP Cloud Integration tenant, made (and its secret read) on
    /// first use; `None` for a tenant with another keystore.
    pub async fn sap_ci_client(&self, tenant: TenantId) -> Result<Option<Arc<SapCiClient>>> {
        let Some(t) = self.sap_ci.get(&tenant) else {
            return Ok(None);
        };
        let client = t
            .client
            .get_or_try_init(|| async { SapCiClient::new(t.config.clone()).map(Arc::new) })
            .await
            .map_err(ServiceError::SapCi)?;
        Ok(Some(client.clone()))
    }

    /// Brings rekey's record of `tenant`'s keystore in line with its SAP Cloud Integration
    /// tenant (see the module documentation). Refused for a tenant with another keystore.
    pub async fn sync_sap_ci(&self, tenant: TenantId) -> Result<SyncReport> {
        let client = self.sap_ci_client(tenant).await?.ok_or_else(|| {
            ServiceError::Input(
                "this tenant's keystore is not an SAP Cloud Integration tenant \
                 (configure [keystores.<tenant>] backend = \"sap-ci\")"
                    .into(),
            )
        })?;
        let mut report = SyncReport {
            // What rekey itself still owes the tenant comes first: a key it retired is not a
            // key to record again.
            deleted: self.reconcile_sap_ci(tenant, false).await?,
            ..SyncReport::default()
        };
        // The tenant first, with no transaction open: its answers take network time.
        let mut found: BTreeMap<Alias, Fingerprint> = BTreeMap::new();
        for e in client
            .keystore_entries()
            .await
            .map_err(ServiceError::SapCi)?
        {
            // Not the tenant administrator's signing keys, or a renewal's key not yet in
            // its place (its renewal records it).
            if !e.is_key_pair() || e.owned_by_sap() || crate::shell::is_pending(&e.alias) {
                continue;
            }
            let alias = match Alias::parse(&e.alias) {
                Ok(a) => a,
                Err(err) => {
                    report.skipped.push(Skipped {
                        alias: e.alias.clone(),
                        reason: err.to_string(),
                    });
                    continue;
                }
            };
            let Some(fp) = e.fingerprint else {
                report.skipped.push(Skipped {
                    alias: e.alias.clone(),
                    reason: "the tenant states no SHA-256 fingerprint".into(),
                });
                continue;
            };
            found.insert(alias, fp);
        }
        let recorded_before: BTreeMap<Alias, Fingerprint> =
            keystore::list(self.store().db(), tenant)
                .await?
                .into_iter()
                .map(|e| (e.alias, e.fingerprint))
                .collect();
        let mut certificates = BTreeMap::new();
        for (alias, fp) in &found {
            if recorded_before.get(alias) != Some(fp) {
                match client.certificate(alias.as_str(), Some(*fp)).await {
                    Ok(Some(cert)) => {
                        certificates.insert(alias.clone(), cert);
                    }
                    // Deleted since the list: the next sync sees it gone.
                    Ok(None) => {}
                    Err(e) => return Err(ServiceError::SapCi(e)),
                }
            }
        }
        let txn = self.store().begin().await?;
        audit::lock_head(&txn).await?;
        let recorded: BTreeMap<Alias, Fingerprint> = keystore::list(&txn, tenant)
            .await?
            .into_iter()
            .map(|e| (e.alias, e.fingerprint))
            .collect();
        let touched = touched_aliases(&txn, tenant).await?;
        let kek = self.store().kek()?;
        for (alias, fp) in &found {
            let diff = Difference {
                alias: alias.to_string(),
                recorded: recorded.get(alias).copied(),
                found: Some(*fp),
                renewal: touched.get(alias).copied(),
            };
            if diff.recorded == diff.found {
                report.unchanged += 1;
                continue;
            }
            if diff.renewal.is_some() {
                report.held.push(diff);
                continue;
            }
            let Some(cert) = certificates.get(alias) else {
                continue;
            };
            let material = KeyMaterial::remote(
                alias,
                crate::tokens::remote_key_id(tenant, fp)?,
                vec![cert.clone()],
            )
            .map_err(ServiceError::Store);
            let material = match material {
                Ok(m) => m,
                Err(e) => {
                    report.skipped.push(Skipped {
                        alias: alias.to_string(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if diff.recorded.is_some() {
                keystore::exchange(&txn, kek, tenant, alias, &material, SYNC_ACTOR).await?;
                report.changed.push(diff);
            } else {
                keystore::add(&txn, kek, tenant, alias, &material, SYNC_ACTOR).await?;
                report.added.push(diff);
            }
        }
        for (alias, fp) in &recorded {
            if found.contains_key(alias) {
                continue;
            }
            let diff = Difference {
                alias: alias.to_string(),
                recorded: Some(*fp),
                found: None,
                renewal: touched.get(alias).copied(),
            };
            if diff.renewal.is_some() {
                report.held.push(diff);
                continue;
            }
            keystore::retire(&txn, tenant, alias, SYNC_ACTOR).await?;
            report.removed.push(diff);
        }
        commit(txn).await?;
        Ok(report)
    }

    /// Deletes from the tenant what rekey's record says is no longer there (every writer's
    /// lock held, so no event is half-way): a key a renewal retired whose alias has no current
    /// entry, still under that alias (the delete follows the commit that retired it, so a
    /// crash in between is repaired here), after a keystore backup; and a key under a pending
    /// alias that no running renewal has staged (its event never committed). Run after every
    /// committed event of such a tenant and before every sync. Returns what it deleted.
    pub async fn reconcile_sap_ci(
        &self,
        tenant: TenantId,
        after_event: bool,
    ) -> Result<Vec<Difference>> {
        let hit = |point| {
            if after_event {
                crate::failpoint::hit(point);
            }
        };
        let Some(client) = self.sap_ci_client(tenant).await? else {
            return Ok(Vec::new());
        };
        let txn = self.store().begin().await?;
        audit::lock_head(&txn).await?;
        let refs = keystore::token_refs(&txn, tenant).await?;
        let fp_of = |r: &keystore::TokenRef| r.certificate.as_ref().map(|c| c.fingerprint());
        let entries = client
            .keystore_entries()
            .await
            .map_err(ServiceError::SapCi)?;
        let mut doomed = Vec::new();
        for e in entries.iter().filter(|e| e.is_key_pair()) {
            let Some(fp) = e.fingerprint else { continue };
            if crate::shell::is_pending(&e.alias) {
                // A CA-signed key waiting for its chain is staged by its reference only.
                let id = crate::tokens::remote_key_id(tenant, &fp)?;
                let staged = refs.iter().any(|r| {
                    r.state != TokenRefState::History && (fp_of(r) == Some(fp) || r.id == id)
                });
                if !staged {
                    doomed.push((e.alias.clone(), fp, false));
                }
                continue;
            }
            let current = refs
                .iter()
                .any(|r| r.state == TokenRefState::Current && r.alias.as_str() == e.alias);
            let retired = refs.iter().any(|r| {
                r.state == TokenRefState::History
                    && r.alias.as_str() == e.alias
                    && fp_of(r) == Some(fp)
            });
            if retired && !current {
                doomed.push((e.alias.clone(), fp, true));
            }
        }
        let mut deleted = Vec::new();
        if doomed.iter().any(|(_, _, retired)| *retired) {
            // The tenant administrator can restore a retired key from the backup in the tenant.
            client.backup().await.map_err(ServiceError::SapCi)?;
        }
        for (alias, fp, retired) in doomed {
            hit("before-remote-delete");
            client
                .delete_entry(&alias)
                .await
                .map_err(ServiceError::SapCi)?;
            hit("after-remote-delete");
            audit::append(
                &txn,
                audit::AuditRecord {
                    actor: rekey_engine::machine::SYSTEM,
                    action: "sap-ci.delete",
                    tenant: Some(tenant),
                    subject: format!("alias {alias}"),
                    before: format!(
                        "certificate {fp} ({})",
                        if retired {
                            "retired by a renewal"
                        } else {
                            "staged by an event that never committed"
                        }
                    ),
                    after: String::new(),
                },
            )
            .await?;
            deleted.push(Difference {
                alias,
                recorded: None,
                found: Some(fp),
                renewal: None,
            });
        }
        commit(txn).await?;
        Ok(deleted)
    }

    /// Refuses an action on renewal `r` when its SAP Cloud Integration tenant no longer
    /// holds, under the aliases the renewal touches, the certificates rekey recorded (see the
    /// module documentation); tells the tenant administrators once per difference. Nothing
    /// for a tenant with another keystore.
    pub(crate) async fn check_sap_ci(&self, r: &Renewal, now: DateTime<Utc>) -> Result<()> {
        let Some(client) = self.sap_ci_client(r.tenant).await? else {
            return Ok(());
        };
        let mut aliases = vec![r.alias.clone()];
        aliases.extend(r.new_alias.clone());
        let mut differences = differences(self, &client, r.tenant, &aliases).await?;
        // The renewal's own new key in its place is rekey's doing: an event that renamed it
        // there and did not commit, which the action about to run adopts.
        differences.retain(|d| d.found.is_none() || d.found != r.new_cert);
        for d in &mut differences {
            d.renewal = Some(r.id);
        }
        if differences.is_empty() {
            return Ok(());
        }
        self.tell_tenant_changed(r, &differences, now).await?;
        Err(ServiceError::TenantChanged {
            renewal: r.id,
            differences,
        })
    }

    /// Refuses to start a renewal of `aliases` on an SAP Cloud Integration tenant that no
    /// longer holds what rekey recorded under them: the renewal would be planned from keys
    /// that are not there. Nothing for a tenant with another keystore.
    pub(crate) async fn check_sap_ci_start(
        &self,
        tenant: TenantId,
        aliases: &[Alias],
    ) -> Result<()> {
        let Some(client) = self.sap_ci_client(tenant).await? else {
            return Ok(());
        };
        let differences = differences(self, &client, tenant, aliases).await?;
        if differences.is_empty() {
            return Ok(());
        }
        Err(ServiceError::NotApplicable(format!(
            "the SAP Cloud Integration tenant does not match rekey's record: {}; run `rekey tenant \
             sync` to record what it holds, then start the renewal",
            describe(&differences)
        )))
    }

    async fn tell_tenant_changed(
        &self,
        r: &Renewal,
        differences: &[Difference],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let txn = self.store().begin().await?;
        let admins =
            rekey_store::users::holders(&txn, &Grant::TenantAdmin { tenant: r.tenant }).await?;
        let tenant_name = rekey_store::tenants::get(&txn, r.tenant).await?.name;
        let show =
            |f: &Option<Fingerprint>| f.map_or_else(|| "none".to_string(), |f| f.to_string());
        let key: Vec<String> = differences
            .iter()
            .map(|d| format!("{}={}>{}", d.alias, show(&d.recorded), show(&d.found)))
            .collect();
        let mut queued = 0;
        for u in &admins {
            let to = u.email.to_string();
            let mut parts = vec![r.id.to_string(), "tenant-changed".to_string()];
            parts.extend(key.iter().cloned());
            parts.push(to.clone());
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            let message = OutboxMessage {
                tenant: r.tenant,
                renewal: Some(r.id),
                message_id: outbox::message_id(&parts),
                recipient: to.clone(),
                subject: format!(
                    "[rekey] Renewal of {} stopped: the SAP Cloud Integration tenant was changed outside rekey",
                    r.alias
                ),
                mail: OutboxMail::TenantChanged(TenantChangedMail {
                    recipient: to,
                    tenant: tenant_name.to_string(),
                    renewal: r.id,
                    procedure: r.procedure,
                    alias: r.alias.to_string(),
                    differences: differences
                        .iter()
                        .map(|d| rekey_store::mail::AliasDifference {
                            alias: d.alias.clone(),
                            recorded: d.recorded.map(|f| f.to_string()),
                            found: d.found.map(|f| f.to_string()),
                        })
                        .collect(),
                }),
            };
            if outbox::enqueue(&txn, message, now).await? {
                queued += 1;
            }
        }
        if queued > 0 {
            audit::append(
                &txn,
                audit::AuditRecord {
                    actor: rekey_engine::machine::SYSTEM,
                    action: "sap-ci.changed",
                    tenant: Some(r.tenant),
                    subject: format!("renewal {}", r.id),
                    before: String::new(),
                    after: key.join(", "),
                },
            )
            .await?;
        }
        commit(txn).await?;
        Ok(())
    }
}

/// `differences` in words: what each alias holds on the tenant and what rekey recorded.
pub fn describe(differences: &[Difference]) -> String {
    let show = |f: &Option<Fingerprint>| {
        f.map_or_else(|| "no key pair".to_string(), |f| format!("certificate {f}"))
    };
    differences
        .iter()
        .map(|d| {
            format!(
                "alias {} holds {} on the tenant, rekey recorded {}",
                d.alias,
                show(&d.found),
                show(&d.recorded)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The aliases among `aliases` whose key pair on the tenant is not the certificate rekey
/// records as current (either may be absent).
async fn differences(
    service: &Service,
    client: &SapCiClient,
    tenant: TenantId,
    aliases: &[Alias],
) -> Result<Vec<Difference>> {
    let mut out = Vec::new();
    for alias in aliases {
        let found = client
            .keystore_entry(alias.as_str())
            .await
            .map_err(ServiceError::SapCi)?
            .filter(|e| e.is_key_pair())
            .and_then(|e| e.fingerprint);
        let recorded = keystore::find_current(service.store().db(), tenant, alias)
            .await?
            .map(|e| e.fingerprint);
        if found != recorded {
            out.push(Difference {
                alias: alias.to_string(),
                recorded,
                found,
                renewal: None,
            });
        }
    }
    Ok(out)
}

/// The aliases the tenant's running renewals touch (the renewed alias and the new one), with
/// the renewal.
async fn touched_aliases(
    conn: &impl sea_orm::ConnectionTrait,
    tenant: TenantId,
) -> Result<BTreeMap<Alias, Uuid>> {
    let scope = renewals::Scope::Of {
        tenants: vec![tenant],
        receivers: Vec::new(),
    };
    let mut out = BTreeMap::new();
    for r in renewals::running_in(conn, &scope).await? {
        if r.tenant != tenant || r.status != RenewalStatus::Running {
            continue;
        }
        out.insert(r.alias.clone(), r.id);
        if let Some(a) = &r.new_alias {
            out.insert(a.clone(), r.id);
        }
    }
    Ok(out)
}
