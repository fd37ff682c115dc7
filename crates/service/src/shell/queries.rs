//! Reads: renewals, the due tasks a person may act on, the world a renewal sees, and the actor
//! (a user's grants as the engine's roles). Nothing here writes.

use chrono::{DateTime, Utc};
use rekey_engine::{Actor, Renewal, StepStatus, World, access};
use rekey_model::{Email, Grant, RenewalStatus, Role, TenantId};
use rekey_store::renewals::Scope;
use rekey_store::{ConnectionTrait, pending, renewals, users};
use uuid::Uuid;

use crate::world::load_world;
use crate::{Result, ServiceError};

use super::{Service, TaskView, receiver_of, tenant_of};

impl Service {
    /// A renewal by id.
    pub async fn renewal(&self, id: Uuid) -> Result<Renewal> {
        Ok(self.load(self.store.db(), id).await?.0)
    }

    /// Every renewal of a tenant (or all), newest first.
    pub async fn renewals(&self, tenant: Option<TenantId>) -> Result<Vec<Renewal>> {
        Ok(renewals::list(self.store.db(), tenant).await?)
    }

    /// The world a renewal sees at `now`.
    pub async fn world(&self, r: &Renewal, now: DateTime<Utc>) -> Result<World> {
        self.world_of(self.store.db(), r, now).await
    }

    /// One page of the renewals the holder of `grants` may see (of `status` when given),
    /// newest first, after the renewal `after` — read by the database in the person's scope,
    /// not filtered from every renewal.
    pub async fn renewals_for(
        &self,
        grants: &[Grant],
        status: Option<RenewalStatus>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Renewal>> {
        Ok(renewals::page(
            self.store.db(),
            &Scope::of_grants(grants),
            status,
            after,
            Some(limit),
        )
        .await?)
    }

    /// Due steps of running renewals that `email` may act on (all due steps when `None`).
    /// Reads only running renewals, and for a person only those in their grants' scope.
    pub async fn tasks(&self, email: Option<&str>, role: Option<Role>) -> Result<Vec<TaskView>> {
        let actor = match email {
            Some(e) => Some(self.actor(self.store.db(), e).await?),
            None => None,
        };
        let scope = match &actor {
            Some(a) if !a.is_system() => Scope::of_grants(&a.grants),
            _ => Scope::All,
        };
        let mut out = Vec::new();
        for r in renewals::running_in(self.store.db(), &scope).await? {
            let def = self.catalog.get(r.procedure);
            for st in r.due_steps() {
                let Some(step) = def.step(&st.id) else {
                    continue;
                };
                let roles: Vec<Role> = access::step_roles(step).collect();
                if actor
                    .as_ref()
                    .is_some_and(|a| access::may_act(a, &r, step).is_none())
                    || role.is_some_and(|x| !roles.contains(&x))
                {
                    continue;
                }
                let verb = match (step.kind, step.action, step.task) {
                    (rekey_engine::StepKind::Agreement, _, _) => "agree",
                    (_, Some(_), _) => "approve",
                    (_, _, Some(_)) => "complete",
                    _ => "wait",
                };
                out.push(TaskView {
                    id: format!("{}:{}", r.id, step.id),
                    renewal: r.id,
                    procedure: r.procedure,
                    alias: r.alias.clone(),
                    step: step.id.clone(),
                    seed: step.seed.clone(),
                    title: step.title.clone(),
                    // For an agreement, the role the person takes part in it as.
                    role: roles
                        .iter()
                        .copied()
                        .find(|x| {
                            actor.as_ref().is_none_or(|a| access::holds(a, *x, &r))
                                && role.is_none_or(|want| want == *x)
                        })
                        .unwrap_or(step.role),
                    verb,
                    due_at: match st.status {
                        StepStatus::Due { due_at, .. } => Some(due_at),
                        _ => None,
                    },
                    new_certificate: step.task.and(r.new_cert.map(|c| c.to_string())),
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn actor(&self, conn: &impl ConnectionTrait, email: &str) -> Result<Actor> {
        if email == rekey_engine::machine::SYSTEM {
            return Ok(Actor::system());
        }
        let parsed = Email::parse(email).map_err(|e| ServiceError::Input(e.to_string()))?;
        let user = users::by_email(conn, &parsed).await.map_err(|e| match e {
            rekey_store::StoreError::UnknownUser { .. } => {
                ServiceError::UnknownUser(email.to_string())
            }
            other => other.into(),
        })?;
        Ok(Actor::new(user.email.to_string(), user.grants))
    }

    pub(super) async fn load(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> Result<(Renewal, i64)> {
        let loaded = renewals::load(conn, id)
            .await?
            .ok_or(ServiceError::UnknownRenewal(id))?;
        Ok((loaded.renewal, loaded.version))
    }

    /// The renewal's world at `now`; its pending certificate counts among those not valid yet
    /// when its notBefore is later, so that the guard judges a change that installs it the way
    /// a strict receiver would judge the messages signed after it.
    pub(super) async fn world_of(
        &self,
        conn: &impl ConnectionTrait,
        r: &Renewal,
        now: DateTime<Utc>,
    ) -> Result<World> {
        let mut world = load_world(
            conn,
            tenant_of(r),
            receiver_of(r),
            &r.alias,
            r.new_alias.as_ref(),
            now,
        )
        .await?;
        if let Some(cert) = pending::certificate(conn, r.id).await?
            && cert.not_before() > now
        {
            world.not_yet_valid.insert(cert.fingerprint());
        }
        Ok(world)
    }
}
