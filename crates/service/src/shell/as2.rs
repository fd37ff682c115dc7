//! The receiver confirms by itself: for a due receiver task whose receiver has an AS2 endpoint,
//! send a test message signed exactly as the signer will sign once the step is done, and let
//! the receiver's own system answer.
//!
//! - `processed` (signed MDN verified against the receiver's MDN certificate, MIC matching what
//!   was sent): the step is completed through the engine with the same event a person's
//!   `task complete --fingerprint` sends, by an actor the audit log names as the receiver's AS2
//!   system; the MDN is kept (`as2_checks.mdn`) and the audit entry carries its SHA-256.
//! - a verified refusal (`processed/error: authentication-failed`, …): the step stays due; the
//!   receiver's words are recorded (shown by `rekey renewal show` / the pass's report) and
//!   audited once per change.
//! - endpoint down, timeout, HTTP error, or an answer that does not verify: nothing is
//!   confirmed; the check is retried with back-off.
//!
//! A person can always complete the step by hand meanwhile; the pass then finds nothing due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rekey_crypto::as2::build_message;
use rekey_crypto::{Certificate, DigestAlg, KeyHandle, SignOptions, SignerSpec};
use rekey_engine::{Actor, Event, Renewal, RenewalStatus, StepStatus};
use rekey_model::{Fingerprint, Grant, Role};
use rekey_store::as2::{self as store_as2, CheckOutcome};
use rekey_store::lease::{self, Queue};
use rekey_store::mail::{As2Mail, OutboxMail};
use rekey_store::outbox::{self, OutboxMessage};
use rekey_store::{ConnectionTrait, audit, flows, receivers, renewals, users};
use serde::Serialize;
use uuid::Uuid;

use crate::as2::{As2Endpoint, As2Problem, backoff, send_test, system_actor};
use crate::{Result, ServiceError};

use super::{Service, TEST_PAYLOAD, commit, receiver_of, tenant_of};

/// The name of the AS2 test message's file part.
pub const TEST_FILE_NAME: &str = "rekey-test.txt";

/// What one check did.
#[derive(Debug, Clone, Serialize)]
pub struct As2CheckReport {
    /// The renewal.
    pub renewal: Uuid,
    /// The receiver step.
    pub step: String,
    /// The receiver.
    pub receiver: String,
    /// What the receiver's system answered, as recorded.
    pub outcome: CheckOutcome,
    /// Its words, or what went wrong.
    pub detail: String,
    /// Whether the step was completed by the answer.
    pub completed: bool,
    /// When the next check may go, if the step is still due.
    pub next_at: Option<DateTime<Utc>>,
}

impl Service {
    /// One pass over the running renewals: every due receiver task whose receiver has an AS2
    /// endpoint and whose check is due (never checked, or its back-off over) gets a test message.
    /// One instance at a time runs it (the `as2` job's lease); when another holds it, the pass
    /// does nothing.
    pub async fn as2_pass(
        &self,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<As2CheckReport>> {
        let db = self.store.db();
        let owner = format!("as2@{}", std::process::id());
        let held = lease::claim(db, Queue::Job(lease::AS2), &owner, now, self.lease, 1).await?;
        if held.rows == 0 {
            return Ok(Vec::new());
        }
        // Renewed while the checks run (each waits up to `timeout` for a receiver).
        let kept = lease::keep(
            db.clone(),
            Queue::Job(lease::AS2),
            held.token.clone(),
            now,
            self.lease,
        );
        let pass = self.as2_checks(now, timeout).await;
        drop(kept);
        let released = lease::release(db, lease::AS2, &held.token).await;
        let out = pass?;
        released?;
        Ok(out)
    }

    async fn as2_checks(
        &self,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<As2CheckReport>> {
        let db = self.store.db();
        let mut out = Vec::new();
        for r in renewals::list(db, None).await? {
            if r.status != RenewalStatus::Running || r.new_cert.is_none() {
                continue;
            }
            let Some(endpoint) = store_as2::by_receiver(db, receiver_of(&r).as_uuid()).await?
            else {
                continue;
            };
            let def = self.catalog.get(r.procedure);
            let due: Vec<String> = r
                .steps
                .iter()
                .filter(|s| matches!(s.status, StepStatus::Due { .. }))
                .filter(|s| {
                    def.step(&s.id)
                        .is_some_and(|d| d.task.is_some() && d.role == Role::ReceiverAdmin)
                })
                .map(|s| s.id.clone())
                .collect();
            for step in due {
                if let Some(c) = store_as2::check(db, r.id, &step).await?
                    && c.next_at > now
                {
                    continue;
                }
                let endpoint = As2Endpoint {
                    url: endpoint.config.url.clone(),
                    as2_from: endpoint.config.as2_from.clone(),
                    as2_to: endpoint.config.as2_to.clone(),
                    mdn_certificate: endpoint.config.mdn_certificate.clone(),
                    mic: endpoint.config.mic,
                };
                // One step's failure (a conflict with a person acting at the same moment, the
                // database) does not keep the others from being checked; it is tried next pass.
                match self.as2_check(&r, &step, &endpoint, now, timeout).await {
                    Ok(report) => out.push(report),
                    Err(e) => {
                        tracing::warn!(renewal = %r.id, step, error = %e, "AS2 check failed");
                    }
                }
            }
        }
        Ok(out)
    }

    /// Sends one test message for `step` of `r` and acts on the answer.
    pub async fn as2_check(
        &self,
        r: &Renewal,
        step: &str,
        endpoint: &As2Endpoint,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<As2CheckReport> {
        let db = self.store.db();
        let receiver = receivers::by_id(db, receiver_of(r)).await?;
        let Some(new_cert) = r.new_cert else {
            return Err(ServiceError::Corrupt(format!(
                "renewal {} has a due receiver step but no new certificate",
                r.id
            )));
        };
        let world = self.world_of(db, r, now).await?;
        let signers =
            rekey_engine::task_test_signers(self.catalog_for(r.tenant), r, &world, step, now)
                .and_then(|groups| groups.into_iter().next())
                .ok_or_else(|| {
                    ServiceError::Corrupt(format!(
                        "renewal {}: step {step} has no signer step to test",
                        r.id
                    ))
                })?;
        let (digest, include_certs, include_signing_time) =
            self.signer_params(db, r, &signers.signer_step).await?;
        let mut material: Vec<(KeyHandle, [Certificate; 1])> = Vec::new();
        for c in &signers.signers {
            let (k, cert) = self.key_and_cert(db, r, c).await?;
            material.push((k, [cert]));
        }
        // Signed by the tenant's keystore: on its token, for a token tenant.
        let backend = self.store.backend(tenant_of(r));
        let message = crate::cpu::blocking(move || {
            let keys = material
                .iter()
                .map(|(key, _)| backend.signer(key))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let specs: Vec<SignerSpec<'_>> = material
                .iter()
                .zip(&keys)
                .map(|((_, chain), key)| SignerSpec {
                    key: &**key,
                    chain,
                    digest,
                    include_certs,
                    include_signing_time,
                })
                .collect();
            build_message(
                TEST_PAYLOAD,
                TEST_FILE_NAME,
                &specs,
                &SignOptions {
                    detached: true,
                    signing_time: now,
                },
            )
        })
        .await??;
        let attempt = store_as2::check(db, r.id, step)
            .await?
            .map_or(1, |c| c.attempts + 1);
        let message_id = format!("{}.{step}.{attempt}@rekey", r.id.simple());
        let answer = send_test(endpoint, &message, &message_id, now, timeout).await;
        let who = system_actor(receiver.name.as_str(), endpoint);
        let subject = format!("renewal {} ({})", r.id, r.procedure);
        let signed_by = describe(&signers.signers);

        let (outcome, detail, mdn) = match &answer {
            Ok(a) if a.accepted() => {
                let digest_hex = hex_sha256(&a.raw);
                let txn = self.store.begin().await?;
                audit::append(
                    &txn,
                    audit::AuditRecord {
                        actor: &who,
                        action: "receiver.as2.mdn",
                        tenant: Some(tenant_of(r)),
                        subject: subject.clone(),
                        before: String::new(),
                        after: format!(
                            "step {step}: test message {message_id} signed by {signed_by} \
                             answered \"{}\" (MDN signed by {}, MIC verified); MDN SHA-256 \
                             {digest_hex} kept as evidence",
                            a.mdn.disposition_text,
                            endpoint.mdn_certificate.subject()
                        ),
                    },
                )
                .await?;
                let actor = Actor::new(
                    who.clone(),
                    vec![Grant::ReceiverAdmin {
                        receiver: receiver.id,
                    }],
                );
                let event = Event::Complete {
                    step: step.to_string(),
                    fingerprint: new_cert,
                };
                match self.act_as(&txn, r.id, &actor, event, now).await {
                    Ok(_) => {
                        store_as2::record_check(
                            &txn,
                            r.id,
                            step,
                            CheckOutcome::Accepted,
                            &a.summary(),
                            Some(&a.raw),
                            now,
                        )
                        .await?;
                        commit(txn).await?;
                        return Ok(As2CheckReport {
                            renewal: r.id,
                            step: step.to_string(),
                            receiver: receiver.name.to_string(),
                            outcome: CheckOutcome::Accepted,
                            detail: a.summary(),
                            completed: true,
                            next_at: None,
                        });
                    }
                    Err(ServiceError::Refused(refusal)) => {
                        drop(txn);
                        (
                            CheckOutcome::NotCompleted,
                            format!(
                                "the receiver's system accepted the test message, but: {refusal}"
                            ),
                            Some(a.raw.clone()),
                        )
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(a) => (
                CheckOutcome::Refused,
                format!(
                    "the receiver's AS2 system answered \"{}\" to a test message signed by \
                     {signed_by}{}",
                    a.summary(),
                    if a.mdn.text.is_empty() {
                        String::new()
                    } else {
                        format!(" (\"{}\")", a.mdn.text)
                    }
                ),
                Some(a.raw.clone()),
            ),
            Err(p) if p.transient() => (CheckOutcome::Unreachable, p.to_string(), None),
            Err(p @ As2Problem::Url(_)) => (CheckOutcome::Unreachable, p.to_string(), None),
            Err(p) => (CheckOutcome::Unverified, p.to_string(), None),
        };
        let txn = self.store.begin().await?;
        let previous = store_as2::check(&txn, r.id, step).await?;
        let attempts = previous.as_ref().map_or(0, |c| c.attempts) + 1;
        let next_at = now + backoff(attempts);
        // Audited (and a refusal told to the receiver's administrators) when what the
        // receiver's system says changes, not on every retry.
        if previous
            .as_ref()
            .is_none_or(|c| c.outcome != outcome || c.detail != detail)
        {
            if outcome == CheckOutcome::Refused
                && let Ok(a) = &answer
            {
                let mail = RefusalMail {
                    receiver: &receiver,
                    step,
                    answer: a,
                    signed_by: &signed_by,
                    endpoint: &endpoint.url,
                    next_at,
                    new_cert,
                };
                self.tell_receiver_admins(&txn, r, &mail, now).await?;
            }
            audit::append(
                &txn,
                audit::AuditRecord {
                    actor: &who,
                    action: "receiver.as2.check",
                    tenant: Some(tenant_of(r)),
                    subject,
                    before: previous
                        .map(|c| format!("{}: {}", c.outcome, c.detail))
                        .unwrap_or_default(),
                    after: format!("step {step}: {outcome}: {detail}"),
                },
            )
            .await?;
        }
        store_as2::record_check(&txn, r.id, step, outcome, &detail, mdn.as_deref(), next_at)
            .await?;
        commit(txn).await?;
        tracing::info!(renewal = %r.id, step, outcome = %outcome, "AS2 check");
        Ok(As2CheckReport {
            renewal: r.id,
            step: step.to_string(),
            receiver: receiver.name.to_string(),
            outcome,
            detail,
            completed: false,
            next_at: Some(next_at),
        })
    }

    /// Queues the receiver's system's refusal, verbatim, to every administrator and contact of
    /// the receiver (one row each, a stable Message-ID per answer).
    async fn tell_receiver_admins(
        &self,
        txn: &rekey_store::DatabaseTransaction,
        r: &Renewal,
        m: &RefusalMail<'_>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let def = self.catalog.get(r.procedure);
        let title = def
            .step(m.step)
            .map_or_else(|| m.step.to_string(), |d| d.title.clone());
        let grant = Grant::ReceiverAdmin {
            receiver: m.receiver.id,
        };
        let mut to: Vec<String> = users::holders(txn, &grant)
            .await?
            .into_iter()
            .map(|u| u.email.to_string())
            .chain(m.receiver.admin_emails.iter().map(ToString::to_string))
            .collect();
        to.sort();
        to.dedup();
        let answer = if m.answer.mdn.text.is_empty() {
            m.answer.summary()
        } else {
            format!("{} (\"{}\")", m.answer.summary(), m.answer.mdn.text)
        };
        for recipient in to {
            let id = r.id.to_string();
            let message_id = outbox::message_id(&[&id, m.step, "as2", &answer, &recipient]);
            let mail = OutboxMail::As2Refused(As2Mail {
                recipient: recipient.clone(),
                renewal: r.id,
                alias: r.alias.to_string(),
                receiver: m.receiver.name.to_string(),
                step: m.step.to_string(),
                step_title: title.clone(),
                answer: answer.clone(),
                signed_by: m.signed_by.to_string(),
                endpoint: m.endpoint.to_string(),
                next_check: m.next_at,
                new_certificate_fingerprint: m.new_cert.to_string(),
            });
            outbox::enqueue(
                txn,
                OutboxMessage {
                    tenant: tenant_of(r),
                    renewal: Some(r.id),
                    message_id,
                    recipient,
                    subject: format!(
                        "[rekey] Your AS2 system refused the test message: {title} ({})",
                        r.alias
                    ),
                    mail,
                },
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Applies `event` as `actor` (not looked up among users: the receiver's system) inside the
    /// caller's transaction; otherwise exactly [`Service::act_in`].
    async fn act_as(
        &self,
        txn: &rekey_store::DatabaseTransaction,
        id: Uuid,
        actor: &Actor,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<super::Outcome> {
        let (r, version) = self.load(txn, id).await?;
        let world = self.world_of(txn, &r, now).await?;
        let t = rekey_engine::apply(self.catalog_for(r.tenant), &r, &world, actor, event, now)?;
        self.carry_out(
            txn,
            t,
            actor,
            version,
            now,
            &super::signatures::TestSignatures::inside(),
        )
        .await
    }

    /// The renewed alias's row parameters in `signer_step` (`flow/step`), as a test message
    /// of the shell signs with them.
    async fn signer_params(
        &self,
        conn: &impl ConnectionTrait,
        r: &Renewal,
        signer_step: &str,
    ) -> Result<(DigestAlg, bool, bool)> {
        let (f, s) = signer_step
            .split_once('/')
            .ok_or_else(|| ServiceError::Corrupt(format!("signer step {signer_step}")))?;
        let flow =
            rekey_model::FlowName::parse(f).map_err(|e| ServiceError::Corrupt(e.to_string()))?;
        let name =
            rekey_model::StepName::parse(s).map_err(|e| ServiceError::Corrupt(e.to_string()))?;
        let step = flows::step(conn, tenant_of(r), &flow, &name).await?;
        Ok(step
            .rows
            .iter()
            .find(|row| row.params.alias == r.alias)
            .or_else(|| step.rows.first())
            .map_or((DigestAlg::Sha256, true, true), |row| {
                (
                    row.params.digest,
                    row.params.include_certs,
                    row.params.include_signing_time,
                )
            }))
    }
}

/// What [`Service::tell_receiver_admins`] tells.
struct RefusalMail<'a> {
    receiver: &'a rekey_store::Receiver,
    step: &'a str,
    answer: &'a crate::as2::As2Answer,
    signed_by: &'a str,
    endpoint: &'a str,
    next_at: DateTime<Utc>,
    new_cert: Fingerprint,
}

fn describe(certs: &[Fingerprint]) -> String {
    certs
        .iter()
        .map(|c| format!("SHA-256 {c}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn hex_sha256(bytes: &[u8]) -> String {
    DigestAlg::Sha256
        .digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
