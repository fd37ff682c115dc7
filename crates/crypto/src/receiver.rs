//! The receiver rule of rekey's invariant: would a receiver with this profile and this trust
//! store accept this message?

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

/// Applies the receiver rule to a message: it is accepted when it carries one SignerInfo (or the
/// receiver accepts several) and at least one SignerInfo verifies under a trusted certificate.
///
/// Only the trusted certificates are used: a certificate carried in the message proves nothing.
pub fn receiver_verdict(
    der: &[u8],
    detached: Option<&[u8]>,
    trusted: &[Certificate],
    profile: &ReceiverProfile,
) -> Result<(Verdict, Verification)> {
    let v = verify(der, detached, trusted, CertSource::SuppliedOnly)?;
    Ok((judge(&v, profile), v))
}

/// The receiver rule over an existing verification (made with the trusted certificates only).
pub fn judge(v: &Verification, profile: &ReceiverProfile) -> Verdict {
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
    match v.signers.iter().find(|s| s.is_valid()) {
        Some(s) => match s.certificate {
            Some(by) => Verdict::Accepted { by },
            None => Verdict::Rejected {
                reason: "internal: a valid signer without certificate".into(),
            },
        },
        None => Verdict::Rejected {
            reason: "no signature verifies under a trusted certificate".into(),
        },
    }
}
