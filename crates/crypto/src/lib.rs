//! Keys, certificates and CMS/PKCS#7 SignedData for rekey.
//!
//! This crate is the only place that touches private-key bytes. It does no I/O: callers pass
//! bytes and the time in, and get bytes or verdicts out. Nothing here panics on input, however
//! malformed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod as2;
mod backend;
mod cert;
mod digest;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod key;
pub mod pkcs12;
mod receiver;
mod sign;
mod verify;

pub use backend::{
    Embedded, KeyBackend, KeyHandle, RsaSigner, TOKEN_ID_PREFIX, TokenKeyId, TokenObject,
};
pub use cert::{
    Certificate, MAX_CLOCK_SKEW, certificate_request, certificate_request_pem,
    certificate_request_public_key, check_chain, check_chain_for, fingerprint_of, parse_subject,
    self_signed, self_signed_at,
};
pub use digest::DigestAlg;
pub use error::{CryptoError, Result};
pub use key::{KeyBits, KeyPair};
pub use receiver::{ReceiverProfile, Verdict, judge, receiver_verdict};
pub use sign::{SignOptions, SignerSpec, sign, to_base64};
pub use verify::{CertSource, SignerReport, SignerStatus, Verification, decode_input, verify};
pub use zeroize::Zeroizing;

/// Fingerprints are part of the shared vocabulary ([`rekey_model`]); this crate computes them
/// ([`fingerprint_of`], [`Certificate::fingerprint`]).
pub use rekey_model::{Fingerprint, FingerprintError};
