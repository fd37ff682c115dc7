//! The receiver rule of rekey's invariant: would a receiver with this profile and this trust
//! store accept this message?

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::verify::{CertSource, Verification, verify};
use crate::{Certificate, Fingerprint, Result};

/// What a receiving system can do, as its administrator described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReceiverProfile {
    /// It can trust the old and the new certificate at the same time. This constrains what the
    /// receiver may trust, not how one message is judged.
    pub verifies_multiple_keys: bool,
    /// It accepts SignedData with several SignerInfos and checks the one it trusts (false for
    /// AS ABAP systems, which accept exactly one signature).
    pub accepts_multiple_signatures: bool,
}

/// A receiver's decision on one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Accepted: the signer whose certificate is trusted verified.
    Accepted {
        /// The trusted certificate that verified.
        by: Fingerprint,
    },
    /// Rejected, with the reason.
    Rejected {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// Whether the message was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted { .. })
    }
}

/// Applies the receiver rule to a message received at `received_at`: it is accepted when it
/// carries one SignerInfo (or the receiver accepts several) and at least one SignerInfo verifies
/// under a trusted certificate that was valid at the signer's signingTime and at receipt.
///
/// Only the trusted certificates are used: a certificate carried in the message proves nothing.
/// `received_at` comes from the caller's clock (the engine's, in a renewal).
pub fn receiver_verdict(
    der: &[u8],
    detached: Option<&[u8]>,
    trusted: &[Certificate],
    profile: &ReceiverProfile,
    received_at: DateTime<Utc>,
) -> Result<(Verdict, Verification)> {
    let v = verify(der, detached, trusted, CertSource::SuppliedOnly)?;
    Ok((judge(&v, profile, received_at), v))
}

/// The receiver rule over an existing verification (made with the trusted certificates only),
/// for a message received at `received_at`.
pub fn judge(v: &Verification, profile: &ReceiverProfile, received_at: DateTime<Utc>) -> Verdict {
    let n = v.signers.len();
    if n == 0 {
        return Verdict::Rejected {
            reason: "the message carries no signature".into(),
        };
    }
    if n > 1 && !profile.accepts_multiple_signatures {
        return Verdict::Rejected {
            reason: format!(
                "the message carries {n} signatures and the receiver accepts exactly one"
            ),
        };
    }
    let verified: Vec<_> = v.signers.iter().filter(|s| s.is_valid()).collect();
    if verified.is_empty() {
        return Verdict::Rejected {
            reason: "no signature verifies under a trusted certificate".into(),
        };
    }
    let mut problems = Vec::new();
    for s in verified {
        match (s.validity_problem(received_at), s.certificate) {
            (None, Some(by)) => return Verdict::Accepted { by },
            (Some(p), _) => problems.push(p),
            (None, None) => problems.push("internal: a valid signer without certificate".into()),
        }
    }
    Verdict::Rejected {
        reason: problems.join("; "),
    }
}
