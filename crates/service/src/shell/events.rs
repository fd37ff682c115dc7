//! Events in: [`Service::start`], [`Service::act`] / `act_in`, [`Service::upload_certificate`]
//! and [`Service::certificate_request`]. Each event is one transaction: load the renewal and its
//! world, ask the engine, hand the transition to the effects, commit.

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, KeyBits};
use rekey_engine::{Actor, Event, Refusal, Renewal, Role, StartParams, StepStatus, access};
use rekey_model::{Alias, RenewalStatus, TenantId};
use rekey_store::{ConnectionTrait, DatabaseTransaction, idempotency, keystore, pending, renewals};
use uuid::Uuid;

use crate::world::load_world;
use crate::{Result, ServiceError};

use super::signatures::TestSignatures;
use super::{Outcome, Service, StartRequest, commit, tenant_of};

impl Service {
    /// Starts a renewal as `actor` (a tenant administrator).
    #[tracing::instrument(
        name = "start",
        skip_all,
        fields(alias = %req.alias, procedure = req.procedure.map(tracing::field::display))
    )]
    pub async fn start(
        &self,
        req: StartRequest,
        actor_email: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        self.start_recorded(req, actor_email, now, None).await
    }

    /// [`Service::start`], storing `record`'s answer (an API call's, under its idempotency
    /// key) in the transaction that starts the renewal: the answer is stored exactly when the
    /// renewal is. A second answer for the same key fails, and nothing is started.
    pub async fn start_recorded(
        &self,
        req: StartRequest,
        actor_email: &str,
        now: DateTime<Utc>,
        record: Option<Recorded>,
    ) -> Result<Outcome> {
        // A tenant whose keys are in SAP Cloud Integration is read first, with no transaction
        // open, for a caller who may start there (anyone else is refused below, learning
        // nothing of the tenant).
        if self.sap_ci.contains_key(&req.tenant) {
            let actor = self.actor(self.store.db(), actor_email).await?;
            if actor.is_system()
                || access::holds_in(&actor, Role::TenantAdmin, req.tenant, req.receiver)
            {
                let mut aliases = vec![req.alias.clone()];
                aliases.extend(req.new_alias.clone());
                self.check_sap_ci_start(req.tenant, &aliases).await?;
            }
        }
        let txn = self.store.begin().await?;
        let actor = self.actor(&txn, actor_email).await?;
        // Who asks comes first: someone with no role in the tenant learns nothing of it, and
        // someone without the starting role learns nothing of what the request got wrong.
        if !actor.is_system() {
            if !access::may_see_scope(&actor, req.tenant, Some(req.receiver)) {
                return Err(ServiceError::UnknownScope(req.tenant.to_string()));
            }
            if !access::holds_in(&actor, Role::TenantAdmin, req.tenant, req.receiver) {
                return Err(Refusal::WrongRole {
                    step: "start".into(),
                    role: Role::TenantAdmin,
                    actor: actor.email.clone(),
                }
                .into());
            }
        }
        KeyBits::try_from(req.bits).map_err(|e| ServiceError::Field {
            field: "bits",
            reason: e.to_string(),
        })?;
        let alias = req.alias;
        let new_alias = req.new_alias;
        let world = load_world(
            &txn,
            req.tenant,
            req.receiver,
            &alias,
            new_alias.as_ref(),
            now,
        )
        .await?;
        let params = StartParams {
            id: Uuid::new_v4(),
            tenant: req.tenant,
            receiver: req.receiver,
            alias: alias.clone(),
            new_alias,
            procedure: req.procedure,
            auto_approve: req.auto_approve,
            ca_signed: req.ca_signed,
            bits: req.bits,
        };
        // What an SAP Cloud Integration tenant cannot finish is refused before it starts: a
        // procedure asked for by name before the engine looks at the request, one the profile
        // chooses once chosen.
        if self.sap_ci.contains_key(&req.tenant)
            && let Some(p) = req.procedure
        {
            super::remote::check_procedure(p)?;
        }
        let t = rekey_engine::start(self.catalog_for(req.tenant), params, &world, &actor, now)?;
        if self.sap_ci.contains_key(&req.tenant) {
            super::remote::check_procedure(t.renewal.procedure)?;
        }
        // Checked once the engine accepted the request (role, alias, procedure), so only someone
        // who may start a renewal learns of the running one; the index below makes it hold
        // across processes.
        if let Some(running) = self.running(&txn, req.tenant, &alias).await? {
            return Err(ServiceError::AlreadyRunning {
                alias: alias.to_string(),
                renewal: running,
            });
        }
        let inserted = renewals::insert(&txn, &t.renewal, req.tenant, req.receiver, now).await?;
        if !inserted {
            // Another process started one between the check above and this insert: the
            // database's one-live-renewal index refused ours.
            drop(txn);
            return match self.running(self.store.db(), req.tenant, &alias).await? {
                Some(running) => Err(ServiceError::AlreadyRunning {
                    alias: alias.to_string(),
                    renewal: running,
                }),
                // That renewal ended meanwhile: starting again may succeed.
                None => Err(ServiceError::Conflict(t.renewal.id)),
            };
        }
        let outcome = self
            .carry_out(&txn, t, &actor, 0, now, &TestSignatures::inside())
            .await?;
        if let Some(rec) = record {
            let (status, response) = (rec.render)(&outcome);
            let answer = idempotency::Answer {
                request_sha256: rec.request_sha256,
                status,
                response,
                created_at: now,
            };
            idempotency::record(&txn, rec.user, &rec.key, &answer).await?;
        }
        commit(txn).await?;
        self.after_commit(req.tenant).await;
        Ok(outcome)
    }

    /// The running renewal of `alias`, if there is one.
    async fn running(
        &self,
        conn: &impl ConnectionTrait,
        tenant: TenantId,
        alias: &Alias,
    ) -> Result<Option<Uuid>> {
        Ok(renewals::running(conn, tenant, alias).await?)
    }

    /// Applies one event to a renewal as `actor_email` (or `rekey` for timers).
    pub async fn act(
        &self,
        id: Uuid,
        actor_email: &str,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        // A tenant whose keys are in SAP Cloud Integration is read again before anything is
        // decided: an action judged against a record the tenant no longer matches is refused.
        // Cancelling and rolling back stay open, as the way out.
        if !self.sap_ci.is_empty() && !matches!(event, Event::Cancel | Event::Rollback) {
            let db = self.store.db();
            let (r, _) = self.load(db, id).await?;
            if self.sap_ci.contains_key(&r.tenant) {
                let actor = self.actor(db, actor_email).await?;
                visible_to(&actor, &r)?;
                if r.status == RenewalStatus::Running {
                    self.check_sap_ci(&r, now).await?;
                }
            }
        }
        let mut sigs = TestSignatures::deferring();
        let mut run = 0;
        loop {
            let txn = self.store.begin().await?;
            let outcome = self
                .act_in(&txn, id, actor_email, event.clone(), now, &sigs)
                .await?;
            let jobs = sigs.next_run(run);
            if jobs.is_empty() {
                commit(txn).await?;
                self.after_commit(outcome.renewal.tenant).await;
                return Ok(outcome);
            }
            // Rolled back: the run stands in for the one that uses the test messages it
            // asked for, signed now with no transaction open.
            drop(txn);
            sigs.sign_outside(
                self.store.backend(outcome.renewal.tenant),
                jobs,
                &self.crypto,
            )
            .await?;
            run += 1;
        }
    }

    /// [`Service::act`] inside a transaction the caller commits, so that the caller's own
    /// bookkeeping (the scheduler marking its timer fired) lands with the step or not at all.
    #[tracing::instrument(name = "renewal", skip_all, fields(renewal = %id, event = ?event))]
    pub(crate) async fn act_in(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        actor_email: &str,
        event: Event,
        now: DateTime<Utc>,
        sigs: &TestSignatures,
    ) -> Result<Outcome> {
        let actor = self.actor(txn, actor_email).await?;
        let (r, version) = self.load(txn, id).await?;
        visible_to(&actor, &r)?;
        let world = self.world_of(txn, &r, now).await?;
        let t = rekey_engine::apply(self.catalog_for(r.tenant), &r, &world, &actor, event, now)?;
        self.carry_out(txn, t, &actor, version, now, sigs).await
    }

    /// Uploads the CA-signed chain of a CA-signed renewal's new key (checked against the key),
    /// completing its key-generation step.
    pub async fn upload_certificate(
        &self,
        id: Uuid,
        actor_email: &str,
        chain: &[Certificate],
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let txn = self.store.begin().await?;
        let actor = self.actor(&txn, actor_email).await?;
        let (r, version) = self.load(&txn, id).await?;
        visible_to(&actor, &r)?;
        let tenant = tenant_of(&r);
        let mut world = self.world_of(&txn, &r, now).await?;
        let leaf = chain
            .first()
            .ok_or_else(|| ServiceError::Input("no certificate given".into()))?;
        let cert = leaf.fingerprint();
        if leaf.not_before() > now {
            // Accepted: the guard keeps every receiver from depending on it before then.
            world.not_yet_valid.insert(cert);
        }
        // The world holds the keys the renewal touches; a certificate some other alias already
        // holds is added, so that the engine refuses it as a renewal's new key.
        if let Some((holder, fp, _)) =
            keystore::current_with_certificate(&txn, tenant, &cert).await?
        {
            world.keystore.insert(holder, fp);
        }
        let event = Event::KeyReady { cert };
        // Ask the engine first: it checks the role and that a certificate is awaited.
        let t = rekey_engine::apply(self.catalog_for(r.tenant), &r, &world, &actor, event, now)?;
        self.check_validity(&r, leaf, now)?;
        let backend = self.store.backend(tenant);
        pending::set_chain(
            &txn,
            self.store.kek()?,
            tenant,
            id,
            backend.as_ref(),
            chain,
            &actor.email,
        )
        .await?;
        // A key generated on an SAP Cloud Integration tenant takes its chain there first.
        if let Some(client) = self.sap_ci_client(tenant).await?
            && super::remote::generated_on_tenant(r.procedure)
        {
            self.upload_chain_on_sap_ci(&client, &r, chain).await?;
        }
        let outcome = self
            .carry_out(&txn, t, &actor, version, now, &TestSignatures::inside())
            .await?;
        commit(txn).await?;
        self.after_commit(tenant).await;
        Ok(outcome)
    }

    /// Refuses an uploaded leaf that has expired at `now`, or that expires before the renewal's
    /// remaining steps are due to be done (each step's `due` after the steps it waits for): the
    /// receiver would reject its messages before or soon after it switched to the new key.
    fn check_validity(&self, r: &Renewal, leaf: &Certificate, now: DateTime<Utc>) -> Result<()> {
        let (not_before, not_after) = (leaf.not_before(), leaf.not_after());
        let named = || {
            format!(
                "certificate \"{}\" (SHA-256 {}), valid from {} to {},",
                leaf.subject(),
                leaf.fingerprint(),
                not_before.format("%Y-%m-%d %H:%M:%S UTC"),
                not_after.format("%Y-%m-%d %H:%M:%S UTC"),
            )
        };
        let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC");
        if not_after <= now {
            return Err(ServiceError::Input(format!(
                "{} has expired (it is now {}); upload a certificate the CA issued for the \
                 current request",
                named(),
                at(now)
            )));
        }
        let end = planned_end(self.catalog_for(r.tenant).get(r.procedure), r, now);
        if not_after <= end {
            return Err(ServiceError::Input(format!(
                "{} expires before the renewal's remaining steps are due to be done ({}); ask \
                 the CA for a certificate valid beyond that",
                named(),
                at(end)
            )));
        }
        Ok(())
    }

    /// The certificate signing request (PEM) of a CA-signed renewal's new key, while the
    /// renewal waits for its CA-signed chain; otherwise [`ServiceError::NotApplicable`] naming
    /// why none is waiting.
    pub async fn certificate_request(&self, id: Uuid) -> Result<String> {
        let r = self.renewal(id).await?;
        let none = |why: String| {
            ServiceError::NotApplicable(format!(
                "renewal {id} has no certificate request waiting: {why}"
            ))
        };
        if !r.ca_signed {
            return Err(none(
                "it is not a CA-signed renewal (its new key gets a self-signed certificate)".into(),
            ));
        }
        if let Some(cert) = &r.new_cert {
            return Err(none(format!(
                "the CA-signed certificate was already uploaded (SHA-256 {cert})"
            )));
        }
        if r.status != RenewalStatus::Running {
            return Err(none(format!("the renewal is {}", r.status.as_str())));
        }
        if let Some(pem) = pending::waiting_csr(self.store.db(), id).await? {
            return Ok(pem);
        }
        let step = self
            .catalog
            .get(r.procedure)
            .steps
            .iter()
            .find(|s| s.action == Some(rekey_engine::definition::ActionKind::GenerateKey))
            .map_or("create-key-pair", |s| s.id.as_str());
        Err(none(format!(
            "no request yet: the new key and its request are made when step \"{step}\" is \
             approved"
        )))
    }
}

/// When a renewal's last step is due if every remaining step takes its full `due` after the
/// steps it waits for, starting at `now`; steps already done or skipped count as done `now`.
fn planned_end(def: &rekey_engine::Procedure, r: &Renewal, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut done_by: std::collections::HashMap<&str, DateTime<Utc>> = Default::default();
    let mut end = now;
    // Steps are listed after the steps they wait for.
    for step in &def.steps {
        let settled = matches!(
            r.step(&step.id).map(|s| &s.status),
            Some(StepStatus::Done { .. } | StepStatus::Skipped) | None
        ) || step.action == Some(rekey_engine::definition::ActionKind::GenerateKey);
        let start = step
            .after
            .iter()
            .filter_map(|a| done_by.get(a.as_str()).copied())
            .fold(now, DateTime::max);
        let at = if settled { now } else { start + step.due };
        end = end.max(at);
        done_by.insert(step.id.as_str(), at);
    }
    end
}

/// An API call's answer to store with the work it did, under the caller's idempotency key
/// (`rekey_store::idempotency`).
pub struct Recorded {
    /// The caller.
    pub user: Uuid,
    /// Their `Idempotency-Key`.
    pub key: String,
    /// SHA-256 (hex) of the request, to tell a retry from the key reused for another.
    pub request_sha256: String,
    /// The answer the call gives for the outcome.
    pub render: RenderAnswer,
}

/// Makes an API call's answer (status, body) from the outcome.
pub type RenderAnswer = Box<dyn FnOnce(&Outcome) -> (u16, String) + Send>;

/// Refuses a renewal `actor` may not see as if it did not exist, before the engine names its
/// steps, roles or status; rekey's own timers see every renewal.
fn visible_to(actor: &Actor, r: &Renewal) -> Result<()> {
    if actor.is_system() || access::may_see(actor, r) {
        Ok(())
    } else {
        Err(ServiceError::UnknownRenewal(r.id))
    }
}
