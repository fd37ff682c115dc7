//! The digest algorithms a signer step may use, and their object identifiers.

use std::fmt;
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912::{
    ID_SHA_256, ID_SHA_384, ID_SHA_512, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION,
    SHA_384_WITH_RSA_ENCRYPTION, SHA_512_WITH_RSA_ENCRYPTION,
};
use sha2::Digest;

use crate::CryptoError;

/// Digest for a signature: SHA-256, SHA-384 or SHA-512, always with RSA PKCS#1 v1.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum DigestAlg {
    /// SHA-256 (the default).
    #[default]
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlg {
    /// Every supported algorithm.
    pub const ALL: [DigestAlg; 3] = [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512];

    /// Short lower-case name, as used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha256",
            DigestAlg::Sha384 => "sha384",
            DigestAlg::Sha512 => "sha512",
        }
    }

    /// The digest algorithm's OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlg::Sha256 => ID_SHA_256,
            DigestAlg::Sha384 => ID_SHA_384,
            DigestAlg::Sha512 => ID_SHA_512,
        }
    }

    /// The matching `shaNNNWithRSAEncryption` OID.
    pub fn rsa_signature_oid(self) -> ObjectIdentifier {
        match self {
            DigestAlg::Sha256 => SHA_256_WITH_RSA_ENCRYPTION,
            DigestAlg::Sha384 => SHA_384_WITH_RSA_ENCRYPTION,
            DigestAlg::Sha512 => SHA_512_WITH_RSA_ENCRYPTION,
        }
    }

    /// Looks an algorithm up by its digest OID.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.oid() == *oid)
    }

    /// Which digest a signature-algorithm OID implies: `Ok(None)` for plain `rsaEncryption`
    /// (OpenSSL writes it), an error for anything that is not RSA PKCS#1 v1.5.
    pub fn from_signature_oid(oid: &ObjectIdentifier) -> Result<Option<Self>, String> {
        if *oid == RSA_ENCRYPTION {
            return Ok(None);
        }
        Self::ALL
            .into_iter()
            .find(|d| d.rsa_signature_oid() == *oid)
            .map(Some)
            .ok_or_else(|| format!("unsupported signature algorithm {oid}"))
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            DigestAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            DigestAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for DigestAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigestAlg {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        match s.trim().to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => Ok(DigestAlg::Sha256),
            "sha384" => Ok(DigestAlg::Sha384),
            "sha512" => Ok(DigestAlg::Sha512),
            _ => Err(CryptoError::Digest(s.to_string())),
        }
    }
}

impl serde::Serialize for DigestAlg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for DigestAlg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
