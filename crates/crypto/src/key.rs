//! RSA private keys: generation, PEM/DER import and export.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use crate::{Certificate, CryptoError, Result};

/// The RSA modulus sizes rekey accepts; nothing below 2048 bits is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyBits {
    /// 2048 bits: the minimum.
    B2048,
    /// 3072 bits: the default.
    #[default]
    B3072,
    /// 4096 bits.
    B4096,
}

impl KeyBits {
    /// The size in bits.
    pub fn bits(self) -> usize {
        match self {
            KeyBits::B2048 => 2048,
            KeyBits::B3072 => 3072,
            KeyBits::B4096 => 4096,
        }
    }
}

impl TryFrom<usize> for KeyBits {
    type Error = CryptoError;
    fn try_from(bits: usize) -> Result<Self> {
        match bits {
            2048 => Ok(KeyBits::B2048),
            3072 => Ok(KeyBits::B3072),
            4096 => Ok(KeyBits::B4096),
            other => Err(CryptoError::KeySize(other)),
        }
    }
}

impl TryFrom<u32> for KeyBits {
    type Error = CryptoError;
    fn try_from(bits: u32) -> Result<Self> {
        KeyBits::try_from(bits as usize)
    }
}

/// An RSA private key (with its public half).
///
/// The key material is zeroized when the value is dropped; exports come back in
/// [`Zeroizing`] buffers so that copies are wiped too.
#[derive(Clone)]
pub struct KeyPair {
    inner: rsa::PrivateKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair(RSA-{})", self.bits())
    }
}

impl KeyPair {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate(bits: KeyBits) -> Result<Self> {
        let mut rng = rand::rngs::SysRng;
        let inner = rsa::PrivateKey::new(&mut rng, bits.bits())
            .map_err(|e| CryptoError::Rsa(e.to_string()))?;
        Ok(KeyPair { inner })
    }

    fn checked(inner: rsa::PrivateKey) -> Result<Self> {
        let bits = inner.size() * 8;
        KeyBits::try_from(bits)?;
        Ok(KeyPair { inner })
    }

    /// Reads a PKCS#8 `PrivateKeyInfo` (DER).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let inner = rsa::PrivateKey::from_pkcs8_der(der).map_err(classify_pkcs8)?;
        Self::checked(inner)
    }

    /// Reads a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM block.
    ///
    /// The text may hold other blocks and explanatory text around the key (combined PEM
    /// files, `openssl pkcs12 -nodes` output with its "Bag Attributes"); the first private-key
    /// block is used.
    pub fn from_pem(pem: &str) -> Result<Self> {
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(CryptoError::MalformedKey(
                "encrypted PEM private keys are not supported here; import them as PKCS#12".into(),
            ));
        }
        for label in ["EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY"] {
            if pem.contains(&format!("-----BEGIN {label}-----")) {
                return Err(CryptoError::UnsupportedKey(format!(
                    "a {label} block: only RSA keys are supported"
                )));
            }
        }
        if let Some(block) = pem_block_of(pem, "RSA PRIVATE KEY")? {
            let inner = rsa::PrivateKey::from_pkcs1_pem(block)
                .map_err(|e| CryptoError::MalformedKey(e.to_string()))?;
            return Self::checked(inner);
        }
        let Some(block) = pem_block_of(pem, "PRIVATE KEY")? else {
            return Err(CryptoError::MissingPem("PRIVATE KEY or RSA PRIVATE KEY"));
        };
        let inner = rsa::PrivateKey::from_pkcs8_pem(block).map_err(classify_pkcs8)?;
        Self::checked(inner)
    }

    /// Reads PEM or DER (PKCS#8, or PKCS#1 `RSAPrivateKey`), whichever the bytes are.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => Self::from_pem(text),
            _ => match Self::from_pkcs8_der(bytes) {
                // `openssl pkey -outform DER` writes PKCS#1 ("traditional") DER.
                Err(CryptoError::MalformedKey(why)) => {
                    match rsa::PrivateKey::from_pkcs1_der(bytes) {
                        Ok(inner) => Self::checked(inner),
                        Err(_) => Err(CryptoError::MalformedKey(why)),
                    }
                }
                other => other,
            },
        }
    }

    /// PKCS#8 `PrivateKeyInfo`, DER.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let doc = self
            .inner
            .to_pkcs8_der()
            .map_err(|e| CryptoError::Encoding(e.to_string()))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// PKCS#8 `PrivateKeyInfo`, PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let pem = self
            .inner
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| CryptoError::Encoding(e.to_string()))?;
        Ok(Zeroizing::new(pem.to_string()))
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.inner.size() * 8
    }

    /// The public key as a DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> Result<Vec<u8>> {
        let doc = self
            .inner
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| CryptoError::Encoding(e.to_string()))?;
        Ok(doc.into_vec())
    }

    /// Whether `cert` carries this key's public half.
    pub fn matches(&self, cert: &Certificate) -> bool {
        match self.public_key_der() {
            Ok(spki) => cert.public_key_der().is_ok_and(|c| c == spki),
            Err(_) => false,
        }
    }

    pub(crate) fn rsa(&self) -> &rsa::PrivateKey {
        &self.inner
    }
}

/// The first `-----BEGIN {label}-----` … `-----END {label}-----` block of `text`, if any.
fn pem_block_of<'a>(text: &'a str, label: &str) -> Result<Option<&'a str>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = text.find(&begin) else {
        return Ok(None);
    };
    let Some(end_rel) = text[start..].find(&end) else {
        return Err(CryptoError::MalformedKey(format!(
            "PEM block has no \"{end}\" line"
        )));
    };
    Ok(Some(&text[start..start + end_rel + end.len()]))
}

fn classify_pkcs8(e: rsa::pkcs8::Error) -> CryptoError {
    match e {
        rsa::pkcs8::Error::PublicKey(spki::Error::OidUnknown { oid }) => {
            CryptoError::UnsupportedKey(format!("algorithm {oid} is not RSA"))
        }
        other => CryptoError::MalformedKey(other.to_string()),
    }
}
