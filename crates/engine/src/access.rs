//! Who may see a renewal and who may act on its steps: the one rule every interface asks.
//!
//! A role is held in a scope ([`Grant`]): the tenant roles in the renewal's tenant, the
//! receiver administrator's in the renewal's receiver. A user may see a renewal when they hold
//! any role in its tenant or its receiver, and may act on a step when they hold the step's
//! role (or, for an agreement, the other party's) in that role's scope. The state machine
//! checks events with these functions; the service lists tasks and the server answers
//! requests with them, so no interface decides on its own.
//!
//! `signer` ([`Grant::Signer`]) is none of the people of a renewal: it lets its holder sign
//! as one flow's steps ([`may_sign`]) and nothing else — it sees no renewal, task, tenant or
//! receiver, and changes no tenant state.

use rekey_model::{FlowId, Grant, ReceiverId, Role, TenantId};

use crate::definition::StepDef;
use crate::machine::{Actor, Renewal};

/// Whether `grant` is `role` held in the scope that role has for a renewal of `tenant` towards
/// `receiver`: the tenant for the tenant roles, the receiver for `receiver_admin`.
pub fn grants(grant: &Grant, role: Role, tenant: TenantId, receiver: ReceiverId) -> bool {
    match (grant, role) {
        (Grant::TenantAdmin { tenant: t }, Role::TenantAdmin)
        | (Grant::IntegrationDeveloper { tenant: t }, Role::IntegrationDeveloper) => *t == tenant,
        (Grant::ReceiverAdmin { receiver: r }, Role::ReceiverAdmin) => *r == receiver,
        _ => false,
    }
}

/// Whether `actor` holds `role` in its scope for a renewal of `tenant` towards `receiver` (a
/// renewal that is about to start has no [`Renewal`] yet).
pub fn holds_in(actor: &Actor, role: Role, tenant: TenantId, receiver: ReceiverId) -> bool {
    actor
        .grants
        .iter()
        .any(|g| grants(g, role, tenant, receiver))
}

/// Whether `actor` holds `role` in its scope for `renewal`.
pub fn holds(actor: &Actor, role: Role, renewal: &Renewal) -> bool {
    holds_in(actor, role, renewal.tenant, renewal.receiver)
}

/// Whether `actor` may see `renewal` (and its tasks, mail and certificates): any role in its
/// tenant or its receiver. Anyone else is told the renewal does not exist.
pub fn may_see(actor: &Actor, renewal: &Renewal) -> bool {
    Role::PEOPLE
        .into_iter()
        .any(|role| holds(actor, role, renewal))
}

/// Whether `actor` may know of the tenant `tenant` and its receiver `receiver` at all: any
/// tenant role in the tenant, or the receiver's administrator. Anyone else is told they do
/// not exist, as they are told of renewals they may not see.
pub fn may_see_scope(actor: &Actor, tenant: TenantId, receiver: Option<ReceiverId>) -> bool {
    actor.grants.iter().any(|g| match g {
        Grant::TenantAdmin { tenant: t } | Grant::IntegrationDeveloper { tenant: t } => {
            *t == tenant
        }
        Grant::ReceiverAdmin { receiver: r } => Some(*r) == receiver,
        Grant::Signer { .. } => false,
    })
}

/// Whether `actor` knows of tenant `tenant` at all for signing: a tenant role in it, or
/// `signer` of one of its flows. A request about a tenant the actor does not know is answered
/// as one that does not exist; one about a flow of a known tenant that the actor may not sign
/// as is refused, without saying whether that flow exists.
pub fn knows_tenant(actor: &Actor, tenant: TenantId) -> bool {
    actor.grants.iter().any(|g| g.tenant() == Some(tenant))
}

/// Whether `actor` may sign payloads as the signer steps of flow `flow` of `tenant` sign
/// (`rekey sign --flow`, `POST /api/sign`): `signer` of that flow, or a tenant administrator
/// or integration developer of the tenant (who configure its signer steps anyway).
pub fn may_sign(actor: &Actor, tenant: TenantId, flow: FlowId) -> bool {
    actor.grants.iter().any(|g| match g {
        Grant::Signer { tenant: t, flow: f } => *t == tenant && *f == flow,
        Grant::TenantAdmin { tenant: t } | Grant::IntegrationDeveloper { tenant: t } => {
            *t == tenant
        }
        Grant::ReceiverAdmin { .. } => false,
    })
}

/// Whether `actor` may sign as every flow of `tenant`, known or not: a tenant administrator or
/// integration developer. Only they are told that a flow does not exist.
pub fn may_sign_any(actor: &Actor, tenant: TenantId) -> bool {
    actor.grants.iter().any(|g| match g {
        Grant::TenantAdmin { tenant: t } | Grant::IntegrationDeveloper { tenant: t } => {
            *t == tenant
        }
        _ => false,
    })
}

/// Whether `actor` holds `role` for the tenant-wide state of `tenant` — its keystore, signer
/// steps and receivers, changed outside a renewal: a tenant role in that tenant, or
/// `receiver_admin` of `receiver` when the change is about that receiver (of that tenant).
pub fn holds_for(
    actor: &Actor,
    role: Role,
    tenant: TenantId,
    receiver: Option<ReceiverId>,
) -> bool {
    actor.grants.iter().any(|g| match (g, role) {
        (Grant::TenantAdmin { tenant: t }, Role::TenantAdmin)
        | (Grant::IntegrationDeveloper { tenant: t }, Role::IntegrationDeveloper) => *t == tenant,
        (Grant::ReceiverAdmin { receiver: r }, Role::ReceiverAdmin) => Some(*r) == receiver,
        _ => false,
    })
}

/// The roles that act on `step`: its owner's, then the other party's of an agreement.
pub fn step_roles(step: &StepDef) -> impl Iterator<Item = Role> {
    [Some(step.role), step.with_role].into_iter().flatten()
}

/// The role in which `actor` may act on `step` of `renewal` — the owner's if they hold it,
/// else the other party's of an agreement — or `None` when they may not act on it.
pub fn may_act(actor: &Actor, renewal: &Renewal, step: &StepDef) -> Option<Role> {
    step_roles(step).find(|role| holds(actor, *role, renewal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::Catalog;
    use crate::machine::RenewalStatus;
    use crate::{ProcedureId, StepKind};
    use rekey_model::Alias;
    use uuid::Uuid;

    fn ids() -> (TenantId, ReceiverId, TenantId, ReceiverId) {
        let t = |n: u128| TenantId::from_uuid(Uuid::from_u128(n));
        let r = |n: u128| ReceiverId::from_uuid(Uuid::from_u128(n));
        (t(1), r(2), t(3), r(4))
    }

    fn renewal(tenant: TenantId, receiver: ReceiverId) -> Renewal {
        let at = chrono::DateTime::UNIX_EPOCH;
        Renewal {
            id: Uuid::from_u128(9),
            tenant,
            receiver,
            procedure: ProcedureId::DowntimeWindow,
            alias: Alias::parse("signing").expect("alias"),
            new_alias: None,
            auto_approve: false,
            ca_signed: false,
            bits: 2048,
            old_cert: None,
            new_cert: None,
            generating: false,
            generation_approved_by: None,
            prepared_on: Vec::new(),
            steps: Vec::new(),
            status: RenewalStatus::Running,
            applied: Vec::new(),
            window: None,
            downtime: Default::default(),
            started_at: at,
            updated_at: at,
        }
    }

    fn actor(grants: Vec<Grant>) -> Actor {
        Actor::new("someone@example.com", grants)
    }

    #[test]
    fn each_role_counts_only_in_its_own_scope() {
        let (t, r, other_t, other_r) = ids();
        let ren = renewal(t, r);
        let cases = [
            (Grant::TenantAdmin { tenant: t }, Some(Role::TenantAdmin)),
            (
                Grant::IntegrationDeveloper { tenant: t },
                Some(Role::IntegrationDeveloper),
            ),
            (
                Grant::ReceiverAdmin { receiver: r },
                Some(Role::ReceiverAdmin),
            ),
            (Grant::TenantAdmin { tenant: other_t }, None),
            (Grant::IntegrationDeveloper { tenant: other_t }, None),
            (Grant::ReceiverAdmin { receiver: other_r }, None),
            // A signer of one of the tenant's flows is none of a renewal's people.
            (
                Grant::Signer {
                    tenant: t,
                    flow: rekey_model::FlowId::from_uuid(Uuid::from_u128(5)),
                },
                None,
            ),
            // A receiver id that happens to equal the tenant's is still another scope.
            (
                Grant::ReceiverAdmin {
                    receiver: ReceiverId::from_uuid(t.as_uuid()),
                },
                None,
            ),
        ];
        for (grant, held) in cases {
            let a = actor(vec![grant]);
            for role in Role::ALL {
                assert_eq!(
                    holds(&a, role, &ren),
                    held == Some(role),
                    "{grant} as {role}"
                );
            }
            assert_eq!(may_see(&a, &ren), held.is_some(), "{grant} sees");
        }
        assert!(!may_see(&Actor::system(), &ren), "rekey holds no role");
        assert!(!may_see(&actor(Vec::new()), &ren));
    }

    #[test]
    fn the_owner_acts_as_owner_and_an_agreement_also_takes_the_other_party() {
        let (t, r, _, other_r) = ids();
        let ren = renewal(t, r);
        let catalog = Catalog::builtin().expect("built-in procedures");
        let def = catalog.get(ProcedureId::DowntimeWindow);
        let agreement = def
            .steps
            .iter()
            .find(|s| s.kind == StepKind::Agreement)
            .expect("an agreement step");
        let task = def
            .steps
            .iter()
            .find(|s| s.kind == StepKind::Task || s.task.is_some())
            .expect("a receiver task");
        let owner = actor(vec![Grant::TenantAdmin { tenant: t }]);
        let receiver_admin = actor(vec![Grant::ReceiverAdmin { receiver: r }]);
        let both = actor(vec![
            Grant::ReceiverAdmin { receiver: r },
            Grant::TenantAdmin { tenant: t },
        ]);
        let elsewhere = actor(vec![Grant::ReceiverAdmin { receiver: other_r }]);
        let other = agreement.with_role.expect("the other party");
        let holder_of = |role: Role| match role {
            Role::TenantAdmin => &owner,
            Role::ReceiverAdmin => &receiver_admin,
            Role::IntegrationDeveloper | Role::Signer => {
                unreachable!("no agreement with the developer or a signer")
            }
        };
        assert_eq!(
            may_act(holder_of(agreement.role), &ren, agreement),
            Some(agreement.role)
        );
        assert_eq!(may_act(holder_of(other), &ren, agreement), Some(other));
        // Holding both, a person takes part as the owner.
        assert_eq!(may_act(&both, &ren, agreement), Some(agreement.role));
        assert_eq!(may_act(&elsewhere, &ren, agreement), None);
        // A receiver task is the receiver administrator's alone.
        assert_eq!(
            may_act(&receiver_admin, &ren, task),
            Some(Role::ReceiverAdmin)
        );
        assert_eq!(may_act(&owner, &ren, task), None);
        assert_eq!(may_act(&elsewhere, &ren, task), None);
    }

    #[test]
    fn a_signer_signs_as_its_flow_only_and_the_tenant_roles_as_every_flow() {
        let (t, r, other_t, _) = ids();
        let flow = |n: u128| rekey_model::FlowId::from_uuid(Uuid::from_u128(n));
        let (a, b) = (flow(10), flow(11));
        let signer = actor(vec![Grant::Signer { tenant: t, flow: a }]);
        assert!(may_sign(&signer, t, a));
        assert!(!may_sign(&signer, t, b), "another flow of the tenant");
        assert!(
            !may_sign(&signer, other_t, a),
            "the same flow id in another tenant"
        );
        assert!(!may_sign_any(&signer, t));
        assert!(knows_tenant(&signer, t) && !knows_tenant(&signer, other_t));
        // It changes no tenant state and sees no scope.
        for role in Role::ALL {
            assert!(!holds_for(&signer, role, t, Some(r)), "{role}");
        }
        assert!(!may_see_scope(&signer, t, Some(r)));
        for g in [
            Grant::TenantAdmin { tenant: t },
            Grant::IntegrationDeveloper { tenant: t },
        ] {
            let a_ = actor(vec![g]);
            assert!(may_sign(&a_, t, a) && may_sign(&a_, t, b) && may_sign_any(&a_, t));
            assert!(!may_sign(&a_, other_t, a));
        }
        let receiver_admin = actor(vec![Grant::ReceiverAdmin { receiver: r }]);
        assert!(!may_sign(&receiver_admin, t, a));
        assert!(!knows_tenant(&receiver_admin, t));
    }
}
