//! Status enums whose text forms are exactly what the database's `status` columns hold:
//! [`RenewalStatus`] (`renewals.status`), [`TimerStatus`] (`timers.status`) and
//! [`OutboxStatus`] (`outbox.status`). Writing a status goes through `as_str`, reading one back
//! through `FromStr`, which refuses a value it does not know with an [`InvalidInput`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;

macro_rules! column_enum {
    (
        $(#[$doc:meta])* $name:ident, $what:literal,
        { $( $(#[$vdoc:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$( $name::$variant ),+];

            /// The value as the column holds it (and as JSON spells it).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        InvalidInput::new($what, s, format!("expected one of {}", known.join(", ")))
                    })
            }
        }
    };
}

column_enum!(
    /// Where a renewal stands overall (`renewals.status`, and `status` in its JSON state).
    RenewalStatus, "renewal status", {
        /// Steps remain.
        Running => "running",
        /// Every step is done.
        Completed => "completed",
        /// Cancelled before its point of no return; rekey's changes were undone.
        Cancelled => "cancelled",
        /// Rolled back after its point of no return.
        RolledBack => "rolled_back",
    }
);

column_enum!(
    /// Where a timer stands (`timers.status`).
    TimerStatus, "timer status", {
        /// Waiting for its time (or for a retry after a failed attempt).
        Pending => "pending",
        /// Fired: its step's effects were committed with it.
        Fired => "fired",
        /// Dropped because its renewal ended or moved on.
        Cancelled => "cancelled",
        /// Refused by the engine when fired (renewal finished, step gone), or unreadable.
        Stale => "stale",
        /// Given up after repeated failures.
        Failed => "failed",
    }
);

column_enum!(
    /// Where an outbox mail stands (`outbox.status`).
    OutboxStatus, "outbox status", {
        /// Waiting to be sent (or retried).
        Queued => "queued",
        /// Delivered to the SMTP server or the mail directory.
        Sent => "sent",
        /// Given up: the address was refused or every attempt failed.
        Failed => "failed",
    }
);
