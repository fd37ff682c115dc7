//! Effects out: carries out a transition's effects against the store inside the event's
//! transaction — key generation (fed back to the engine), keystore, signer-step and trust
//! changes, timers, audit entries and mail (one outbox row per recipient, with a stable
//! Message-ID) — checks that the store now holds the world the engine computed, and saves the
//! renewal if its version is unchanged.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use rekey_crypto::{
    Certificate, Embedded, KeyBackend, KeyBits, KeyHandle, certificate_request,
    certificate_request_pem, self_signed_at,
};
use rekey_engine::{Actor, Change, Effect, Event, Notice, NoticeKind, Renewal, Transition, World};
use rekey_model::{Alias, Fingerprint, Role, TenantId};
use rekey_store::mail::{Access, Attachments, NoticeMail, OutboxMail, StepInfo, TestMessage};
use rekey_store::outbox::OutboxMessage;
use rekey_store::{
    ConnectionTrait, DatabaseTransaction, audit, flows, keystore, outbox, pending, receivers,
    renewals, timers, users,
};

use crate::{Result, ServiceError};

use super::signatures::{self, Job, TestSignatures, Wanted};
use super::{MailQueued, Outcome, Service, receiver_of, tenant_of};

/// Why a notice of an SAP Cloud Integration tenant carries no test message.
const NO_TEST_MESSAGE_SAP_CI: &str = "No test message is attached: the signing keys stay in the \
     SAP Cloud Integration tenant, which never lets a private key out, so rekey cannot sign one \
     with them. Ask the integration developer to send a message through the integration flow \
     and check that your system verifies it with the new configuration; rekey judged this step \
     from the certificates and the signer step's aliases.";

/// Who a transition's notices go to, read once per transition: the renewal's receiver (name,
/// contact addresses), its tenant's name and each role's holders. A transition changes none
/// of them (trust changes alter only the receiver's trusted certificates, which mail does
/// not read), and a transition with several notices would otherwise read them per notice.
#[derive(Default)]
struct People {
    receiver: Option<receivers::Receiver>,
    tenant_name: Option<rekey_model::TenantName>,
    holders: std::collections::HashMap<Role, Vec<String>>,
}

impl Service {
    /// Carries out a transition's effects, feeding key generation back to the engine, then
    /// saves the renewal if nobody else changed it since `version`.
    pub(super) async fn carry_out(
        &self,
        txn: &DatabaseTransaction,
        first: Transition,
        actor: &Actor,
        version: i64,
        now: DateTime<Utc>,
        sigs: &TestSignatures,
    ) -> Result<Outcome> {
        let mut renewal = first.renewal;
        let mut effects = first.effects;
        let mut expected = first.world;
        let mut completed = first.completed;
        let mut mail = Vec::new();
        let mut people = People::default();
        // An SAP Cloud Integration tenant: keys and key changes are made there.
        let remote = self.sap_ci_client(tenant_of(&renewal)).await?;
        loop {
            let mut follow_up = None;
            for effect in effects {
                match effect {
                    Effect::GenerateKey { bits, ca_signed } => {
                        sigs.generated();
                        let made = match &remote {
                            Some(client)
                                if super::remote::generated_on_tenant(renewal.procedure) =>
                            {
                                self.generate_on_sap_ci(
                                    txn,
                                    client,
                                    &renewal,
                                    version,
                                    bits,
                                    ca_signed,
                                    &actor.email,
                                    now,
                                )
                                .await?
                            }
                            _ => {
                                // A key that will replace the old one under its alias on an SAP
                                // Cloud Integration tenant is made here and imported at the
                                // exchange (see shell/remote.rs for why).
                                let backend: Arc<dyn KeyBackend> = if remote.is_some() {
                                    super::remote::check_procedure(renewal.procedure)?;
                                    Arc::new(Embedded)
                                } else {
                                    self.store.backend(tenant_of(&renewal))
                                };
                                self.generate(
                                    txn,
                                    &renewal,
                                    version,
                                    bits,
                                    ca_signed,
                                    &actor.email,
                                    now,
                                    backend,
                                )
                                .await?
                            }
                        };
                        if let Some(cert) = made {
                            follow_up = Some(Event::KeyReady { cert });
                        }
                    }
                    Effect::Apply(change) => {
                        // The tenant first: the record never claims what it does not hold.
                        if let Some(client) = &remote {
                            self.change_on_sap_ci(txn, client, &renewal, &change)
                                .await?;
                        }
                        self.apply_change(txn, &renewal, &change, &actor.email)
                            .await?
                    }
                    Effect::DiscardPendingKey { cert } => {
                        if let Some(client) = &remote {
                            self.discard_on_sap_ci(client, &cert).await?;
                        }
                        pending::discard(txn, tenant_of(&renewal), renewal.id, &actor.email)
                            .await?;
                    }
                    Effect::Notify(n) => mail.extend(
                        self.queue(txn, &renewal, &n, now, sigs, &mut people)
                            .await?,
                    ),
                    Effect::Schedule { step, kind, at } => {
                        let tenant = tenant_of(&renewal);
                        timers::schedule(txn, tenant, renewal.id, step, kind, at, now).await?;
                    }
                    Effect::CancelTimers => timers::cancel_pending(txn, renewal.id, now).await?,
                    Effect::Audit { action, detail } => {
                        audit::append(
                            txn,
                            audit::AuditRecord {
                                actor: &actor.email,
                                action: &action,
                                tenant: Some(tenant_of(&renewal)),
                                subject: format!("renewal {} ({})", renewal.id, renewal.procedure),
                                before: String::new(),
                                after: detail,
                            },
                        )
                        .await?;
                    }
                }
                crate::failpoint::hit("after-effect");
            }
            // The store must now hold exactly the world the engine computed (which certificates
            // are not valid yet follows from the certificates, not from the effects).
            let actual = self.world_of(txn, &renewal, now).await?;
            let comparable = World {
                not_yet_valid: actual.not_yet_valid.clone(),
                ..expected.clone()
            };
            if comparable != actual {
                return Err(ServiceError::Corrupt(format!(
                    "store and engine disagree after the effects: engine {expected:?}, store {actual:?}"
                )));
            }
            let Some(event) = follow_up else { break };
            let t = rekey_engine::apply(
                self.catalog_for(renewal.tenant),
                &renewal,
                &actual,
                &Actor::system(),
                event,
                now,
            )?;
            renewal = t.renewal;
            effects = t.effects;
            expected = t.world;
            completed.extend(t.completed);
        }
        if !renewals::save_if_version(txn, &renewal, version, now).await? {
            return Err(ServiceError::Conflict(renewal.id));
        }
        Ok(Outcome {
            renewal,
            completed,
            mail,
        })
    }

    /// Generates the new key (self-signed certificate, or CSR for a CA) and stages it. Returns
    /// the certificate id when it is ready at once. The certificate is valid from the engine's
    /// `now` less the clock-skew allowance, never from the wall clock: a probe or message
    /// signed at `now` must find its certificate already valid.
    ///
    /// `backend` makes the key: the tenant's, or the embedded one for a key that an SAP Cloud
    /// Integration tenant will import. On a token its id is derived from the
    /// renewal and the version this event started from (written before the token call), so an
    /// event retried after a crash adopts the key the first attempt made instead of making a
    /// second one; a key whose event never commits is found and destroyed by
    /// [`Service::reconcile_tokens`].
    #[allow(clippy::too_many_arguments)]
    async fn generate(
        &self,
        txn: &DatabaseTransaction,
        r: &Renewal,
        version: i64,
        bits: u32,
        ca_signed: bool,
        actor: &str,
        now: DateTime<Utc>,
        backend: Arc<dyn KeyBackend>,
    ) -> Result<Option<Fingerprint>> {
        let tenant = tenant_of(r);
        let old = keystore::find_current(txn, tenant, &r.alias).await?;
        let (subject, days) = match &old {
            Some(e) => (
                e.subject.clone(),
                (e.not_after - e.not_before).num_days().clamp(1, 3650) as u32,
            ),
            None => (format!("CN={}", r.alias), 365),
        };
        let bits = KeyBits::try_from(bits)?;
        let target = r.new_alias.as_ref().unwrap_or(&r.alias);
        let id = crate::tokens::renewal_key_id(tenant, r.id, version)?;
        // Every writer's lock, before the token call: reconciliation waits for this event.
        rekey_store::audit::lock_head(txn).await?;
        let label = crate::tokens::pending_label(target);
        let on_token = backend.kind() != "embedded";
        if on_token {
            crate::failpoint::hit("before-token-generate");
        }
        let key = {
            let backend = backend.clone();
            crate::cpu::blocking(move || backend.generate(bits, &id, &label)).await??
        };
        if on_token {
            crate::failpoint::hit("after-token-generate");
        }
        self.crypto.key_inside();
        let signer = backend.signer(&key)?;
        if ca_signed {
            let csr = certificate_request_pem(&certificate_request(&*signer, &subject)?);
            pending::stage(
                txn,
                self.store.kek()?,
                tenant,
                r.id,
                target,
                &key,
                backend.as_ref(),
                &[],
                Some(csr),
                actor,
            )
            .await?;
            return Ok(None);
        }
        let cert = self_signed_at(&*signer, &subject, now, self.clock_skew, days)?;
        let id = cert.fingerprint();
        pending::stage(
            txn,
            self.store.kek()?,
            tenant,
            r.id,
            target,
            &key,
            backend.as_ref(),
            &[cert],
            None,
            actor,
        )
        .await?;
        Ok(Some(id))
    }

    async fn apply_change(
        &self,
        txn: &DatabaseTransaction,
        r: &Renewal,
        change: &Change,
        actor: &str,
    ) -> Result<()> {
        let tenant = tenant_of(r);
        let kek = self.store.kek()?;
        match change {
            Change::AddKey { alias: a, cert } | Change::ExchangeKey { alias: a, cert } => {
                let exchange = matches!(change, Change::ExchangeKey { .. });
                match pending::get(txn, kek, r.id)
                    .await?
                    .filter(|p| p.fingerprint() == Some(*cert))
                {
                    Some(p) => {
                        let backend = self.store.backend(tenant);
                        // On a remote keystore the key is the tenant's (generated there, or
                        // imported before this, rekey's copy going with the pending row below),
                        // known by its final certificate.
                        let material = if backend.remote() {
                            keystore::KeyMaterial::remote(
                                a,
                                crate::tokens::remote_key_id(tenant, cert)?,
                                p.chain.clone(),
                            )?
                        } else {
                            p.material(backend.as_ref())?
                        };
                        if exchange {
                            keystore::exchange(txn, kek, tenant, a, &material, actor).await?;
                        } else {
                            keystore::add(txn, kek, tenant, a, &material, actor).await?;
                        }
                        pending::discard(txn, tenant, r.id, actor).await?;
                    }
                    None => self.restore(txn, tenant, a, cert, actor).await?,
                }
            }
            Change::RestoreKey { alias: a, cert } => {
                self.restore(txn, tenant, a, cert, actor).await?
            }
            Change::RemoveKey { alias: a } => {
                keystore::retire(txn, tenant, a, actor).await?;
            }
            Change::AddSignerAlias {
                alias: a,
                copy_from,
            } => {
                flows::add_alias_like_everywhere(txn, tenant, a, copy_from, actor).await?;
            }
            Change::RemoveSignerAlias { alias: a, keep } => {
                let keep = keep
                    .iter()
                    .map(|k| {
                        let (f, s) = k.split_once('/').unwrap_or((k, ""));
                        Ok(rekey_store::StepRef {
                            flow: rekey_model::FlowName::parse(f)
                                .map_err(|e| ServiceError::Corrupt(e.to_string()))?,
                            step: rekey_model::StepName::parse(s)
                                .map_err(|e| ServiceError::Corrupt(e.to_string()))?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                flows::remove_alias_everywhere(txn, tenant, a, &keep, actor).await?;
            }
            Change::Trust { cert } => {
                let c = self.certificate(txn, r, cert).await?;
                let name = receivers::by_id(txn, receiver_of(r)).await?.name;
                receivers::trust(txn, tenant, &name, &c, actor).await?;
            }
            Change::Distrust { cert } => {
                let name = receivers::by_id(txn, receiver_of(r)).await?.name;
                receivers::untrust(txn, tenant, &name, cert, actor).await?;
            }
        }
        Ok(())
    }

    /// Makes the history entry of `alias` with certificate `cert` current again.
    async fn restore(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
        a: &Alias,
        cert: &Fingerprint,
        actor: &str,
    ) -> Result<()> {
        let entry = keystore::history(txn, tenant, a)
            .await?
            .into_iter()
            .find(|e| e.fingerprint == *cert)
            .ok_or_else(|| {
                ServiceError::Corrupt(format!("no history entry of {a} holds certificate {cert}"))
            })?;
        keystore::restore(txn, tenant, a, entry.id, actor).await?;
        Ok(())
    }

    /// A certificate of the renewal (pending, current or history) by fingerprint.
    async fn certificate(
        &self,
        conn: &impl ConnectionTrait,
        r: &Renewal,
        cert: &Fingerprint,
    ) -> Result<Certificate> {
        Ok(self.key_and_cert(conn, r, cert).await?.1)
    }

    /// A certificate of the renewal with the issuers stored with it, leaf first.
    async fn chain(
        &self,
        conn: &impl ConnectionTrait,
        r: &Renewal,
        cert: &Fingerprint,
    ) -> Result<Vec<Certificate>> {
        let tenant = tenant_of(r);
        if let Some(p) = pending::get(conn, self.store.kek()?, r.id).await?
            && p.chain.first().is_some_and(|c| c.fingerprint() == *cert)
        {
            return Ok(p.chain);
        }
        for a in [Some(&r.alias), r.new_alias.as_ref()].into_iter().flatten() {
            let mut entries = keystore::history(conn, tenant, a).await?;
            entries.extend(keystore::find_current(conn, tenant, a).await?);
            if let Some(e) = entries.into_iter().find(|e| e.fingerprint == *cert) {
                return Ok(e.chain);
            }
        }
        Err(ServiceError::Corrupt(format!(
            "certificate {cert} is not known to renewal {}",
            r.id
        )))
    }

    pub(super) async fn key_and_cert(
        &self,
        conn: &impl ConnectionTrait,
        r: &Renewal,
        cert: &Fingerprint,
    ) -> Result<(KeyHandle, Certificate)> {
        let tenant = tenant_of(r);
        let kek = self.store.kek()?;
        if let Some(p) = pending::get(conn, kek, r.id).await?
            && let Some(c) = p.chain.first().filter(|c| c.fingerprint() == *cert)
        {
            return Ok((p.key.clone(), c.clone()));
        }
        for a in [Some(&r.alias), r.new_alias.as_ref()].into_iter().flatten() {
            let mut entries = keystore::history(conn, tenant, a).await?;
            entries.extend(keystore::find_current(conn, tenant, a).await?);
            if let Some(e) = entries.into_iter().find(|e| e.fingerprint == *cert) {
                let key = keystore::entry_private_key(conn, kek, tenant, e.id).await?;
                let c = e
                    .chain
                    .first()
                    .cloned()
                    .ok_or_else(|| ServiceError::Corrupt("entry without certificate".into()))?;
                return Ok((key, c));
            }
        }
        // A key the renewal does not touch but a signer step signs with alongside (another
        // keyed row of the same table).
        if let Some(e) = keystore::list(conn, tenant)
            .await?
            .into_iter()
            .find(|e| e.fingerprint == *cert)
        {
            let key = keystore::entry_private_key(conn, kek, tenant, e.id).await?;
            let c = e
                .chain
                .first()
                .cloned()
                .ok_or_else(|| ServiceError::Corrupt("entry without certificate".into()))?;
            return Ok((key, c));
        }
        Err(ServiceError::Corrupt(format!(
            "certificate {cert} is not known to renewal {}",
            r.id
        )))
    }

    /// Queues one outbox row per person holding the notice's role in scope (and, for the
    /// receiver administrator, per contact address of the receiver), each saying what that
    /// person may do: act through a link, only be told, or ask for access first.
    async fn queue(
        &self,
        txn: &DatabaseTransaction,
        r: &Renewal,
        n: &Notice,
        now: DateTime<Utc>,
        sigs: &TestSignatures,
        people: &mut People,
    ) -> Result<Vec<MailQueued>> {
        let tenant = tenant_of(r);
        let receiver = match &people.receiver {
            Some(rc) => rc.clone(),
            None => {
                let rc = receivers::by_id(txn, receiver_of(r)).await?;
                people.receiver = Some(rc.clone());
                rc
            }
        };
        let grant = match n.to {
            Role::TenantAdmin => rekey_model::Grant::TenantAdmin { tenant },
            Role::IntegrationDeveloper => rekey_model::Grant::IntegrationDeveloper { tenant },
            Role::ReceiverAdmin => rekey_model::Grant::ReceiverAdmin {
                receiver: receiver.id,
            },
            // The procedures are refused when read if a step names `signer`: no notice is
            // theirs.
            Role::Signer => {
                return Err(crate::ServiceError::Corrupt(format!(
                    "a notice to {} in renewal {}",
                    n.to, r.id
                )));
            }
        };
        let holders: Vec<String> = match people.holders.get(&n.to) {
            Some(h) => h.clone(),
            None => {
                let h: Vec<String> = users::holders(txn, &grant)
                    .await?
                    .into_iter()
                    .map(|u| u.email.to_string())
                    .collect();
                people.holders.insert(n.to, h.clone());
                h
            }
        };
        // (address, holds the role as a registered user)
        let mut to: Vec<(String, bool)> = holders.iter().map(|e| (e.clone(), true)).collect();
        if n.to == Role::ReceiverAdmin {
            to.extend(
                receiver
                    .admin_emails
                    .iter()
                    .map(|e| e.to_string())
                    .filter(|e| !holders.contains(e))
                    .map(|e| (e, false)),
            );
        }
        to.sort();
        to.dedup();
        let def = self.catalog.get(r.procedure);
        let step = n.step.as_deref().and_then(|s| def.step(s));
        let mut attachments = Attachments {
            certificate_chain_pem: match &n.attach_certificate {
                Some(c) => Some(
                    self.chain(txn, r, c)
                        .await?
                        .iter()
                        .map(Certificate::to_pem)
                        .collect(),
                ),
                None => None,
            },
            test_message_base64: None,
            test_messages: Vec::new(),
            no_test_message: None,
            csr_pem: match n.kind {
                NoticeKind::CertificateRequest => {
                    Some(pending::waiting_csr(txn, r.id).await?.ok_or_else(|| {
                        ServiceError::Corrupt(format!(
                            "renewal {} asks for a certificate but has no certificate request",
                            r.id
                        ))
                    })?)
                }
                _ => None,
            },
        };
        // One test message per way the affected signer steps will sign; the single-message
        // field keeps it when they all sign alike, for readers that know only one.
        let wants_test = n.test_message.is_some() || !n.test_steps.is_empty();
        attachments.test_messages = if wants_test && self.sap_ci.contains_key(&r.tenant) {
            attachments.no_test_message = Some(NO_TEST_MESSAGE_SAP_CI.to_string());
            Vec::new()
        } else if n.test_steps.is_empty() {
            match &n.test_message {
                Some(certs) => vec![TestMessage {
                    signer_steps: Vec::new(),
                    base64: self.test_message(txn, r, None, certs, now, sigs).await?,
                }],
                None => Vec::new(),
            }
        } else {
            self.test_messages(txn, r, &n.test_steps, now, sigs).await?
        };
        if let [only] = attachments.test_messages.as_slice() {
            attachments.test_message_base64 = Some(only.base64.clone());
        }
        let owner = step.is_some_and(|s| s.role == n.to || s.with_role == Some(n.to));
        if attachments.is_empty()
            && owner
            && matches!(n.kind, NoticeKind::Reminder | NoticeKind::Escalation)
        {
            attachments = self.original_attachments(txn, r, n).await?;
        }
        let ordinal = n.step.as_deref().and_then(|s| r.step(s)).map_or(0, |s| {
            if n.kind == NoticeKind::Reminder {
                s.reminders
            } else {
                0
            }
        });
        let title = step.map_or_else(|| format!("renewal of {}", r.alias), |s| s.title.clone());
        let role_name = |role: Role| match role {
            Role::TenantAdmin => "tenant administrator",
            Role::IntegrationDeveloper => "integration developer",
            Role::ReceiverAdmin => "receiver administrator",
            Role::Signer => "signer",
        };
        let subject = match n.kind {
            NoticeKind::StepDue => format!("[rekey] Your step is due: {title}"),
            NoticeKind::Escalation if n.refused.is_some() => {
                format!("[rekey] Refused automatically, needs you: {title}")
            }
            NoticeKind::Inform => match step.and_then(|s| s.told.as_deref()) {
                Some(told) => format!("[rekey] {}: {told}", r.alias),
                None => format!("[rekey] For your information: {title}"),
            },
            NoticeKind::Reminder => format!("[rekey] Reminder: {title}"),
            NoticeKind::Escalation => match step {
                Some(s) if !owner => {
                    format!("[rekey] Overdue at the {}: {title}", role_name(s.role))
                }
                _ => format!("[rekey] Overdue: {title}"),
            },
            NoticeKind::WindowProposed => {
                format!("[rekey] Downtime window proposed for {}", r.alias)
            }
            NoticeKind::WindowAgreed => format!("[rekey] Downtime window agreed for {}", r.alias),
            NoticeKind::Completed => format!("[rekey] Renewal of {} completed", r.alias),
            NoticeKind::Cancelled => format!("[rekey] Renewal of {} cancelled", r.alias),
            NoticeKind::RolledBack => format!("[rekey] Renewal of {} rolled back", r.alias),
            NoticeKind::CertificateRequest => {
                format!(
                    "[rekey] Certificate request for {}: have it signed and upload the chain",
                    r.alias
                )
            }
        };
        let mut kind = serde_json::to_value(n.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        // A refusal is its own mail: neither a later refusal for another reason nor the
        // step's overdue escalation is taken for a copy of it.
        if let Some(reason) = &n.refused {
            kind = format!("{kind}/refused/{reason}");
        }
        let tenant_name = match &people.tenant_name {
            Some(t) => t.clone(),
            None => {
                let t = rekey_store::tenants::get(txn, tenant).await?.name;
                people.tenant_name = Some(t.clone());
                t
            }
        };
        let mut out = Vec::new();
        for (email, registered) in to {
            let message_id = outbox::message_id(&[
                &r.id.to_string(),
                n.step.as_deref().unwrap_or("-"),
                &kind,
                &email,
                &ordinal.to_string(),
            ]);
            // A contact cannot act until given access: "your step is due" would not be true.
            let subject = match n.kind {
                NoticeKind::StepDue if !registered => format!(
                    "[rekey] {}: a step for {} awaits access",
                    r.alias, receiver.name
                ),
                _ => subject.clone(),
            };
            let access = if !registered {
                Access::Contact {
                    command: format!(
                        "rekey user add --tenant {tenant_name} --email {email} --role receiver_admin --receiver {}",
                        receiver.name
                    ),
                }
            } else if owner {
                Access::MayAct
            } else {
                Access::Informed
            };
            let mail = OutboxMail::Notice(NoticeMail {
                notice: n.clone(),
                renewal: r.id,
                procedure: r.procedure,
                alias: r.alias.to_string(),
                receiver: receiver.name.to_string(),
                recipient: email.clone(),
                step: step.map(|s| StepInfo {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    seed: s.seed.clone(),
                    role: s.role,
                    with_role: s.with_role,
                    told: s.told.clone(),
                }),
                access,
                new_certificate_fingerprint: r.new_cert.map(|c| c.to_string()),
                attachments: attachments.clone(),
            });
            let queued = outbox::enqueue(
                txn,
                OutboxMessage {
                    tenant,
                    renewal: Some(r.id),
                    message_id: message_id.clone(),
                    recipient: email.clone(),
                    subject,
                    mail,
                },
                now,
            )
            .await?;
            if !queued {
                continue; // the same notice to the same person is sent once
            }
            out.push(MailQueued {
                step: n.step.clone(),
                kind: n.kind,
                to: email,
                message_id,
            });
        }
        Ok(out)
    }

    /// The files of the first mail that asked `n`'s recipients to do `n`'s step (the step
    /// becoming due, or the certificate request), so that a reminder or escalation carries
    /// them again.
    async fn original_attachments(
        &self,
        txn: &DatabaseTransaction,
        r: &Renewal,
        n: &Notice,
    ) -> Result<Attachments> {
        let rows = outbox::of_renewal(txn, r.id).await?;
        let mut found = Attachments::default();
        for row in rows {
            let mail = rekey_store::mail::parse(&row.state)
                .map_err(|e| ServiceError::Corrupt(format!("outbox row {}: {e}", row.id)))?;
            if let OutboxMail::Notice(m) = mail
                && m.notice.to == n.to
                && m.notice.step == n.step
                && matches!(
                    m.notice.kind,
                    NoticeKind::StepDue | NoticeKind::CertificateRequest
                )
            {
                // The certificate request, when there is one, supersedes the bare step mail.
                let a = m.attachments;
                found.certificate_chain_pem =
                    a.certificate_chain_pem.or(found.certificate_chain_pem);
                found.test_message_base64 = a.test_message_base64.or(found.test_message_base64);
                if !a.test_messages.is_empty() {
                    found.test_messages = a.test_messages;
                }
                found.csr_pem = a.csr_pem.or(found.csr_pem);
            }
        }
        Ok(found)
    }

    /// One test message per group of signer steps that sign alike (same signers, same row
    /// parameters and options), in step order.
    async fn test_messages(
        &self,
        conn: &impl ConnectionTrait,
        r: &Renewal,
        steps: &[rekey_engine::StepSigners],
        now: DateTime<Utc>,
        sigs: &TestSignatures,
    ) -> Result<Vec<TestMessage>> {
        let tenant = tenant_of(r);
        let old_alias = &r.alias;
        let mut groups: Vec<(String, TestMessage)> = Vec::new();
        for st in steps {
            let (f, s) = st
                .signer_step
                .split_once('/')
                .ok_or_else(|| ServiceError::Corrupt(format!("signer step {}", st.signer_step)))?;
            let flow = rekey_model::FlowName::parse(f)
                .map_err(|e| ServiceError::Corrupt(e.to_string()))?;
            let name = rekey_model::StepName::parse(s)
                .map_err(|e| ServiceError::Corrupt(e.to_string()))?;
            let step = flows::step(conn, tenant, &flow, &name).await?;
            let params = step
                .rows
                .iter()
                .find(|row| row.params.alias == *old_alias)
                .map(|row| row.params.clone());
            let alike = format!("{:?} {params:?} {:?}", st.signers, step.options);
            match groups.iter_mut().find(|(k, _)| *k == alike) {
                Some((_, g)) => g.signer_steps.push(st.signer_step.clone()),
                None => {
                    let base64 = self
                        .test_message(conn, r, Some(&st.signer_step), &st.signers, now, sigs)
                        .await?;
                    groups.push((
                        alike,
                        TestMessage {
                            signer_steps: vec![st.signer_step.clone()],
                            base64,
                        },
                    ));
                }
            }
        }
        Ok(groups.into_iter().map(|(_, g)| g).collect())
    }

    /// A SignedData over [`TEST_PAYLOAD`] signed by exactly these certificates' keys, with the
    /// renewed alias's row parameters in `signer_step` (or the first step listing it), Base64;
    /// its signingTime is the engine's `now`.
    async fn test_message(
        &self,
        conn: &impl ConnectionTrait,
        r: &Renewal,
        signer_step: Option<&str>,
        certs: &[Fingerprint],
        now: DateTime<Utc>,
        sigs: &TestSignatures,
    ) -> Result<String> {
        let tenant = tenant_of(r);
        let old_alias = &r.alias;
        let mut params = None;
        for u in flows::alias_usage(conn, tenant, old_alias).await? {
            if signer_step.is_some_and(|s| s != format!("{}/{}", u.flow, u.step)) {
                continue;
            }
            let s = flows::step(conn, tenant, &u.flow, &u.step).await?;
            params = s
                .rows
                .iter()
                .find(|row| row.params.alias == *old_alias)
                .map(|row| row.params.clone());
            if params.is_some() {
                break;
            }
        }
        let (digest, include_certs, include_signing_time) = params
            .map_or((rekey_crypto::DigestAlg::Sha256, true, true), |p| {
                (p.digest, p.include_certs, p.include_signing_time)
            });
        let wanted = Wanted {
            tenant,
            certs: certs.to_vec(),
            digest,
            include_certs,
            include_signing_time,
            at: now,
        };
        if let Some(b64) = sigs.get(&wanted) {
            return Ok(b64);
        }
        let mut material = Vec::new();
        for c in certs {
            let (k, cert) = self.key_and_cert(conn, r, c).await?;
            material.push((k, [cert]));
        }
        let job = Job { wanted, material };
        if sigs.defers() {
            // This run is rolled back; the next one finds the message signed outside.
            sigs.want(job);
            return Ok(String::new());
        }
        signatures::sign_inside(self.store.backend(tenant), job, &self.crypto).await
    }
}
