//! Ids: UUIDs wrapped per kind, so that a flow id cannot be passed where a tenant id is
//! expected. Each serialises as the bare UUID text, as the database and the renewal state hold
//! it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::InvalidInput;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn random() -> Self {
                $name(Uuid::new_v4())
            }

            /// Wraps an existing UUID (as read from the database or an API path).
            pub const fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                Uuid::parse_str(s.trim())
                    .map($name)
                    .map_err(|e| InvalidInput::new($what, s, e.to_string()))
            }
        }
    };
}

uuid_id!(
    /// Identifies a tenant.
    TenantId,
    "tenant id"
);
uuid_id!(
    /// Identifies one keystore entry (current or in history).
    EntryId,
    "keystore entry id"
);
uuid_id!(
    /// Identifies an integration flow.
    FlowId,
    "flow id"
);
uuid_id!(
    /// Identifies a signer step of a flow.
    StepId,
    "signer step id"
);
uuid_id!(
    /// Identifies a receiver.
    ReceiverId,
    "receiver id"
);
uuid_id!(
    /// Identifies a user.
    UserId,
    "user id"
);
uuid_id!(
    /// Identifies an API token (not the secret itself).
    TokenId,
    "API token id"
);
