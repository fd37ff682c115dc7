//! The one entry point the fuzz target (`fuzz/fuzz_targets/parse_inputs.rs`) and the corpus
//! replay test (`tests/fuzz_corpus.rs`) share, so that the committed corpus keeps exercising
//! exactly what is fuzzed. Not part of the supported API.

use crate::{CertSource, Certificate, KeyPair, decode_input, pkcs12, verify};

/// The password the seed PKCS#12 files are encrypted with, so that mutations reach past the MAC.
pub const PKCS12_PASSWORD: &str = "fuzz";
/// The detached content the seed detached messages were signed over.
pub const DETACHED_CONTENT: &[u8] = b"fuzz payload\n";

/// How deep an input got: lets the replay test check that the seeds still reach the verifier
/// and the PKCS#12 decryption, rather than all failing at the first byte.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// SignerInfos the verifier looked at.
    pub signers: usize,
    /// Of those, how many verified.
    pub valid_signers: usize,
    /// Whether a PKCS#12 import returned a key.
    pub pkcs12_key: bool,
    /// Certificates parsed by `Certificate::parse_any`.
    pub certificates: usize,
}

/// Feeds untrusted bytes to every parser of outside input: `decode_input` + `verify` (attached,
/// and detached with [`DETACHED_CONTENT`]), `pkcs12::import`, key and certificate parsing.
/// Must never panic, whatever `data` is.
pub fn parse_untrusted(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    if let Ok(der) = decode_input(data) {
        for content in [None, Some(DETACHED_CONTENT)] {
            if let Ok(v) = verify(&der, content, &[], CertSource::EmbeddedAndSupplied) {
                reached.signers += v.signers.len();
                reached.valid_signers += v.signers.iter().filter(|s| s.is_valid()).count();
            }
        }
    }
    if let Ok((key, chain)) = pkcs12::import(data, PKCS12_PASSWORD) {
        reached.pkcs12_key = key.bits() >= 2048 && !chain.is_empty();
    }
    let _ = KeyPair::from_pem_or_der(data);
    if let Ok(certs) = Certificate::parse_any(data) {
        reached.certificates = certs.len();
    }
    reached
}
