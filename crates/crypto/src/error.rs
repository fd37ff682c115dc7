//! The crypto crate's error type.

use thiserror::Error;

/// Everything that can go wrong with keys, certificates and CMS messages.
///
/// Messages name what was wrong so that they can be shown to a person as they are.
#[derive(Debug, Error)]
pub enum CryptoError {
    /// RSA keys must be 2048, 3072 or 4096 bits.
    #[error("RSA key size {0} bits is not allowed: use 2048, 3072 or 4096")]
    KeySize(usize),
    /// Key generation or an RSA operation failed.
    #[error("RSA operation failed: {0}")]
    Rsa(String),
    /// Only RSA keys are supported.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A private key could not be parsed.
    #[error("malformed private key: {0}")]
    MalformedKey(String),
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// PEM input had no block of the expected kind.
    #[error("no {0} found in PEM input")]
    MissingPem(&'static str),
    /// A subject distinguished name could not be parsed.
    #[error("invalid subject {subject:?}: {reason}")]
    Subject {
        /// The subject as given.
        subject: String,
        /// Why it was refused.
        reason: String,
    },
    /// Validity period out of range.
    #[error("invalid validity: {0}")]
    Validity(String),
    /// A certificate does not belong to the private key it was paired with.
    #[error("certificate {subject} (SHA-256 {fingerprint}) does not match the private key")]
    KeyMismatch {
        /// Subject of the certificate.
        subject: String,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// A certificate chain is not linked issuer to subject.
    #[error("certificate chain broken at position {index}: {reason}")]
    Chain {
        /// Position in the chain (0 = end entity).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A typed or pasted fingerprint is not 32 bytes of hex in an accepted form.
    #[error(transparent)]
    Fingerprint(#[from] crate::FingerprintError),
    /// A digest algorithm name or OID is not supported.
    #[error("unsupported digest algorithm {0}: use sha256, sha384 or sha512")]
    Digest(String),
    /// Signing needs at least one signer.
    #[error("no signer: at least one key is needed to sign")]
    NoSigner,
    /// Two signers would produce the same SignerInfo.
    #[error("duplicate signer: certificate {0} is listed twice with the same digest")]
    DuplicateSigner(String),
    /// The input is not a CMS SignedData the verifier can read.
    #[error("malformed CMS message: {0}")]
    MalformedCms(String),
    /// Detached content was expected but not given, or given for attached content.
    #[error("content: {0}")]
    Content(String),
    /// PKCS#12 input could not be read or written.
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    /// A keystore backend (a PKCS#11 token, or a handle the backend cannot use) failed.
    #[error("keystore: {0}")]
    Backend(String),
    /// Encoding failed (internal; should not happen for valid input).
    #[error("encoding failed: {0}")]
    Encoding(String),
}

impl From<der::Error> for CryptoError {
    fn from(e: der::Error) -> Self {
        CryptoError::Encoding(e.to_string())
    }
}

/// Result alias for this crate.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
