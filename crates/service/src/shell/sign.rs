//! [`Service::sign`]: signing a payload as a flow's signer step signs it now, for a user
//! holding the right to — the one path of `rekey sign --flow` and `POST /api/sign`. This is
//! how a renewal takes effect for the systems that use rekey as their signer: they sign with
//! whatever the step's Signer Parameters table lists at the moment of the call.
//!
//! Who may sign is the engine's rule ([`rekey_engine::access::may_sign`]): `signer` of the
//! flow, or a tenant administrator or integration developer of its tenant. A tenant the actor
//! holds no role in is answered as unknown; a flow of a known tenant the actor may not sign as
//! is refused without saying whether it exists.

use chrono::{DateTime, Utc};
use rekey_engine::{Actor, access};
use rekey_model::{FlowName, StepName, TenantId};
use rekey_store::{OutputChoice, SignedMessage, StoreError, flows};

use super::Service;
use crate::{Result, ServiceError};

/// What to sign as: a tenant's flow and signer step, and how the output is laid out.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// The tenant.
    pub tenant: TenantId,
    /// The flow.
    pub flow: FlowName,
    /// The signer step of the flow.
    pub step: StepName,
    /// Attached or detached, DER or Base64; unset: as the step is configured.
    pub choice: OutputChoice,
}

impl Service {
    /// Signs `payload` as `req`'s step signs it now (one SignerInfo per listed alias that has
    /// a key), for the registered user `email`, at signingTime `now`. Refused with
    /// [`ServiceError::UnknownScope`] for a tenant the user holds no role in,
    /// [`ServiceError::Forbidden`] for a flow they may not sign as; an unknown flow or step is
    /// the store's `UnknownFlow` / `UnknownStep`, a step none of whose aliases has a key its
    /// `NoSignerResolves`. Signing changes nothing, so nothing is audited.
    pub async fn sign(
        &self,
        email: &str,
        req: &SignRequest,
        payload: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<SignedMessage> {
        let actor = self.actor(self.store.db(), email).await?;
        self.sign_as(&actor, req, payload, now).await
    }

    /// [`Service::sign`] for a caller whose roles were just read (an API token's user): the
    /// signing service's hot path reads them once per request, not twice.
    pub async fn sign_as(
        &self,
        actor: &Actor,
        req: &SignRequest,
        payload: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<SignedMessage> {
        let db = self.store.db();
        if !access::knows_tenant(actor, req.tenant) {
            return Err(ServiceError::UnknownScope(req.tenant.to_string()));
        }
        let forbidden = || {
            ServiceError::Forbidden(format!(
                "signing as flow {:?}: only a user holding the signer role of that flow, or \
                 tenant_admin or integration_developer of its tenant, may do this, and {} does not",
                req.flow.as_str(),
                actor.email
            ))
        };
        match flows::flow_id(db, req.tenant, &req.flow).await {
            Ok(id) if access::may_sign(actor, req.tenant, id) => {}
            Ok(_) => return Err(forbidden()),
            // Only those who may sign as every flow of the tenant learn that one is absent.
            Err(StoreError::UnknownFlow { .. }) if !access::may_sign_any(actor, req.tenant) => {
                return Err(forbidden());
            }
            Err(e) => return Err(e.into()),
        }
        let material = self
            .store
            .sign_material(req.tenant, &req.flow, &req.step, req.choice)
            .await?;
        // RSA signing (a token's, or ours) is CPU or device time: not on the async workers.
        let backend = self.store.backend(req.tenant);
        Ok(crate::cpu::blocking(move || material.sign(backend.as_ref(), &payload, now)).await??)
    }
}
