//! [`Role`] and [`Grant`]: the three people of a renewal and the scope each role is held in.
//! One definition serves the procedure files, the engine's role rule, the users table and
//! every interface.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{InvalidInput, ReceiverId, TenantId};

/// The three people of a renewal, and the roles a user can hold. The procedure files, the
/// `user_roles.role` column and every interface spell them as [`Role::as_str`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the outbound keystore and starts renewals (scope: tenant).
    TenantAdmin,
    /// Owns the signer steps' alias tables of the integration flows (scope: tenant).
    IntegrationDeveloper,
    /// Owns one receiving system (scope: receiver).
    ReceiverAdmin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [
        Role::TenantAdmin,
        Role::IntegrationDeveloper,
        Role::ReceiverAdmin,
    ];

    /// The role's name as stored and shown: `tenant_admin`, `integration_developer`,
    /// `receiver_admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::TenantAdmin => "tenant_admin",
            Role::IntegrationDeveloper => "integration_developer",
            Role::ReceiverAdmin => "receiver_admin",
        }
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
            _ => Err(InvalidInput::new(
                "role",
                s,
                "use tenant_admin, integration_developer or receiver_admin",
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
}

impl Grant {
    /// The role granted.
    pub fn role(&self) -> Role {
        match self {
            Grant::TenantAdmin { .. } => Role::TenantAdmin,
            Grant::IntegrationDeveloper { .. } => Role::IntegrationDeveloper,
            Grant::ReceiverAdmin { .. } => Role::ReceiverAdmin,
        }
    }

    /// The tenant the role is held in, for the tenant roles.
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => Some(*tenant),
            Grant::ReceiverAdmin { .. } => None,
        }
    }

    /// The receiver the role is held in, for `receiver_admin`.
    pub fn receiver(&self) -> Option<ReceiverId> {
        match self {
            Grant::ReceiverAdmin { receiver } => Some(*receiver),
            _ => None,
        }
    }

    /// The id of the scope (tenant or receiver).
    pub fn scope_id(&self) -> uuid::Uuid {
        match self {
            Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => {
                tenant.as_uuid()
            }
            Grant::ReceiverAdmin { receiver } => receiver.as_uuid(),
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
        }
    }
}
