//! [`ProcedureId`]: the four renewal procedures of the seed, by the ids `workflows/*.toml`, the
//! command line, the API and the stored renewal state spell them with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The four procedures of the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcedureId {
    /// The receiver trusts old and new at the same time.
    DualTrust,
    /// The developer adds the new alias; two signatures during the switch.
    DualSignature,
    /// The signer step already lists a second alias.
    PreparedSecondAlias,
    /// Exactly one signature accepted: exchange inside an agreed downtime.
    DowntimeWindow,
}

impl ProcedureId {
    /// Every procedure, in the seed's order.
    pub const ALL: [ProcedureId; 4] = [
        ProcedureId::DualTrust,
        ProcedureId::DualSignature,
        ProcedureId::PreparedSecondAlias,
        ProcedureId::DowntimeWindow,
    ];

    /// The id as written in `workflows/` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcedureId::DualTrust => "dual-trust",
            ProcedureId::DualSignature => "dual-signature",
            ProcedureId::PreparedSecondAlias => "prepared-second-alias",
            ProcedureId::DowntimeWindow => "downtime-window",
        }
    }
}

impl fmt::Display for ProcedureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A procedure id that names none of the four procedures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown procedure {0:?}: expected one of dual-trust, dual-signature, prepared-second-alias, downtime-window"
)]
pub struct UnknownProcedure(pub String);

impl FromStr for ProcedureId {
    type Err = UnknownProcedure;
    fn from_str(s: &str) -> Result<Self, UnknownProcedure> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProcedure(s.to_string()))
    }
}
