//! [`Role`] and [`Grant`]: the three people of a renewal, the `signer` role of systems that
//! use rekey as their signer, and the scope each role is held in. One definition serves the
//! procedure files, the engine's role rule, the users table and every interface.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{FlowId, InvalidInput, ReceiverId, TenantId};

/// The roles a user can hold: the three people of a renewal ([`Role::PEOPLE`]) and `signer`.
/// The procedure files, the `user_roles.role` column and every interface spell them as
/// [`Role::as_str`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the outbound keystore and starts renewals (scope: tenant).
    TenantAdmin,
    /// Owns the signer steps' alias tables of the integration flows (scope: tenant).
    IntegrationDeveloper,
    /// Owns one receiving system (scope: receiver).
    ReceiverAdmin,
    /// Signs payloads as one flow's signer steps sign, and does nothing else (scope: a flow of
    /// a tenant). Held by the systems that use rekey as their signer (a service user's token),
    /// so that a renewal takes effect for them; never a person of a renewal.
    Signer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::TenantAdmin,
        Role::IntegrationDeveloper,
        Role::ReceiverAdmin,
        Role::Signer,
    ];

    /// The three people of a renewal: the roles procedure steps, task lists, mail and the
    /// swimlane know. `signer` is not one of them.
    pub const PEOPLE: [Role; 3] = [
        Role::TenantAdmin,
        Role::IntegrationDeveloper,
        Role::ReceiverAdmin,
    ];

    /// The role's name as stored and shown: `tenant_admin`, `integration_developer`,
    /// `receiver_admin`, `signer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::TenantAdmin => "tenant_admin",
            Role::IntegrationDeveloper => "integration_developer",
            Role::ReceiverAdmin => "receiver_admin",
            Role::Signer => "signer",
        }
    }

    /// Whether the role is one of the three people of a renewal ([`Role::PEOPLE`]).
    pub fn is_person(self) -> bool {
        Role::PEOPLE.contains(&self)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "tenant_admin" => Ok(Role::TenantAdmin),
            "integration_developer" => Ok(Role::IntegrationDeveloper),
            "receiver_admin" => Ok(Role::ReceiverAdmin),
            "signer" => Ok(Role::Signer),
            _ => Err(InvalidInput::new(
                "role",
                s,
                "use tenant_admin, integration_developer, receiver_admin or signer",
            )),
        }
    }
}

/// A role together with the scope it is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Grant {
    /// `tenant_admin` of a tenant.
    TenantAdmin {
        /// The tenant.
        tenant: TenantId,
    },
    /// `integration_developer` of a tenant.
    IntegrationDeveloper {
        /// The tenant.
        tenant: TenantId,
    },
    /// `receiver_admin` of a receiver.
    ReceiverAdmin {
        /// The receiver.
        receiver: ReceiverId,
    },
    /// `signer` of one flow of a tenant. The tenant is kept beside the flow so that the grant
    /// is checked against the tenant a request names without another lookup.
    Signer {
        /// The tenant the flow belongs to.
        tenant: TenantId,
        /// The flow.
        flow: FlowId,
    },
}

impl Grant {
    /// The role granted.
    pub fn role(&self) -> Role {
        match self {
            Grant::TenantAdmin { .. } => Role::TenantAdmin,
            Grant::IntegrationDeveloper { .. } => Role::IntegrationDeveloper,
            Grant::ReceiverAdmin { .. } => Role::ReceiverAdmin,
            Grant::Signer { .. } => Role::Signer,
        }
    }

    /// The tenant the role is held in, for the tenant roles and `signer`.
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Grant::TenantAdmin { tenant }
            | Grant::IntegrationDeveloper { tenant }
            | Grant::Signer { tenant, .. } => Some(*tenant),
            Grant::ReceiverAdmin { .. } => None,
        }
    }

    /// The flow the role is held in, for `signer`.
    pub fn flow(&self) -> Option<FlowId> {
        match self {
            Grant::Signer { flow, .. } => Some(*flow),
            _ => None,
        }
    }

    /// The receiver the role is held in, for `receiver_admin`.
    pub fn receiver(&self) -> Option<ReceiverId> {
        match self {
            Grant::ReceiverAdmin { receiver } => Some(*receiver),
            _ => None,
        }
    }

    /// The id of the scope (tenant, receiver or flow).
    pub fn scope_id(&self) -> uuid::Uuid {
        match self {
            Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => {
                tenant.as_uuid()
            }
            Grant::ReceiverAdmin { receiver } => receiver.as_uuid(),
            Grant::Signer { flow, .. } => flow.as_uuid(),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => {
                write!(f, "{} of tenant {tenant}", self.role())
            }
            Grant::ReceiverAdmin { receiver } => {
                write!(f, "{} of receiver {receiver}", self.role())
            }
            Grant::Signer { tenant, flow } => {
                write!(f, "{} of flow {flow} of tenant {tenant}", self.role())
            }
        }
    }
}
