//! The seam between rekey and the place its private keys live.
//!
//! rekey signs (CMS SignedData, certificates, CSRs) through [`RsaSigner`], so the same code
//! signs with a key held in memory ([`KeyPair`]) and with a key that never leaves a PKCS#11
//! token. A [`KeyBackend`] is one tenant's keystore: the embedded one ([`Embedded`]: keys are
//! generated here and stored encrypted under the KEK) or a token backend (the `rekey-pkcs11`
//! crate). [`KeyHandle`] is what the store keeps of a key: the key itself, sealed by the store,
//! or only the token object's `CKA_ID`.

use std::fmt;

use crate::{Certificate, CryptoError, DigestAlg, KeyBits, KeyPair, Result};

/// Signs with an RSA private key wherever it is kept (RSASSA-PKCS1-v1_5).
pub trait RsaSigner: Send + Sync + fmt::Debug {
    /// The public key as a DER `SubjectPublicKeyInfo`.
    fn public_key_der(&self) -> Result<Vec<u8>>;

    /// Modulus size in bits.
    fn bits(&self) -> usize;

    /// The PKCS#1 v1.5 signature of `message`, which the signer hashes with `digest` (so a
    /// token's `CKM_SHA256_RSA_PKCS` fits directly).
    fn sign_pkcs1v15(&self, digest: DigestAlg, message: &[u8]) -> Result<Vec<u8>>;

    /// Whether `cert` carries this key's public half.
    fn matches(&self, cert: &Certificate) -> bool {
        match self.public_key_der() {
            Ok(spki) => cert.public_key_der().is_ok_and(|c| c == spki),
            Err(_) => false,
        }
    }
}

impl RsaSigner for KeyPair {
    fn public_key_der(&self) -> Result<Vec<u8>> {
        KeyPair::public_key_der(self)
    }

    fn bits(&self) -> usize {
        KeyPair::bits(self)
    }

    fn sign_pkcs1v15(&self, digest: DigestAlg, message: &[u8]) -> Result<Vec<u8>> {
        crate::sign::rsa_sign(self, digest, message)
    }
}

/// The first bytes of every `CKA_ID` rekey writes, so that it lists and touches only its own
/// objects on a token shared with other applications.
pub const TOKEN_ID_PREFIX: &[u8] = b"rekey";

/// The `CKA_ID` of a key object on a token: how rekey finds the private key, its public key
/// and its certificate object again (labels are for people and need not be unique).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKeyId(Vec<u8>);

impl TokenKeyId {
    /// Wraps raw `CKA_ID` bytes; refuses an empty id.
    pub fn new(bytes: Vec<u8>) -> Result<Self> {
        if bytes.is_empty() {
            return Err(CryptoError::Backend(
                "a token key id cannot be empty".into(),
            ));
        }
        Ok(TokenKeyId(bytes))
    }

    /// Parses the lowercase or uppercase hex form that [`fmt::Display`] writes.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text)
            .map_err(|e| CryptoError::Backend(format!("token key id {text:?}: {e}")))?;
        TokenKeyId::new(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for TokenKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for TokenKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKeyId({self})")
    }
}

/// What rekey holds of a private key.
// An embedded key is large, but handles are few and short-lived: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum KeyHandle {
    /// The key itself (the embedded keystore seals it under the KEK before storing it).
    Embedded(KeyPair),
    /// Only a reference: the key object stays on the tenant's token.
    Token(TokenKeyId),
}

impl KeyHandle {
    /// The key itself, for an embedded key.
    pub fn as_embedded(&self) -> Option<&KeyPair> {
        match self {
            KeyHandle::Embedded(k) => Some(k),
            KeyHandle::Token(_) => None,
        }
    }

    /// The token object's id, for a token key.
    pub fn token_id(&self) -> Option<&TokenKeyId> {
        match self {
            KeyHandle::Embedded(_) => None,
            KeyHandle::Token(id) => Some(id),
        }
    }
}

/// A key object rekey made on a token, as found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenObject {
    /// Its `CKA_ID`.
    pub id: TokenKeyId,
    /// Its `CKA_LABEL`.
    pub label: String,
}

/// One tenant's keystore: where its keys are generated, kept and used.
///
/// The engine and its guard never see this: they reason about aliases and certificates. The
/// shell asks the tenant's backend to generate, import, label and destroy keys, and to sign.
/// Token operations and database commits cannot share a transaction, so token calls are made
/// idempotent by id: [`KeyBackend::generate`] with an id that already exists adopts that
/// object instead of making a second key.
pub trait KeyBackend: Send + Sync + fmt::Debug {
    /// `embedded` or `pkcs11`, as configured.
    fn kind(&self) -> &'static str;

    /// A new key pair. Token backends create it under `id` and `label`, or adopt the key
    /// already there under `id` (a retry after a crash); the embedded backend ignores both.
    fn generate(&self, bits: KeyBits, id: &TokenKeyId, label: &str) -> Result<KeyHandle>;

    /// Brings an existing key (for instance from a PKCS#12 file) into the keystore.
    fn import(&self, key: &KeyPair, id: &TokenKeyId, label: &str) -> Result<KeyHandle>;

    /// A signer for `key`.
    fn signer<'a>(&'a self, key: &'a KeyHandle) -> Result<Box<dyn RsaSigner + 'a>>;

    /// Sets the label of token object `id` and, when `cert` is given, makes sure a certificate
    /// object with the same id holds it. Nothing for the embedded backend.
    fn project(&self, id: &TokenKeyId, label: &str, cert: Option<&Certificate>) -> Result<()>;

    /// Destroys the private key, public key and certificate objects with `id`; an id with no
    /// objects is not an error (the destroy may be a retry).
    fn destroy(&self, id: &TokenKeyId) -> Result<()>;

    /// The key objects rekey made on the token (by the id prefix rekey writes).
    fn objects(&self) -> Result<Vec<TokenObject>>;

    /// Whether keys live in a remote system that signs for itself and states each key's
    /// certificate (an SAP Cloud Integration tenant): rekey holds a reference and the
    /// certificate, and cannot check the one against the other by signing.
    fn remote(&self) -> bool {
        false
    }
}

/// The embedded keystore: keys are generated in this process and the store keeps them sealed
/// under the KEK. Token handles are refused with an error naming the id.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embedded;

impl KeyBackend for Embedded {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn generate(&self, bits: KeyBits, _id: &TokenKeyId, _label: &str) -> Result<KeyHandle> {
        Ok(KeyHandle::Embedded(KeyPair::generate(bits)?))
    }

    fn import(&self, key: &KeyPair, _id: &TokenKeyId, _label: &str) -> Result<KeyHandle> {
        Ok(KeyHandle::Embedded(key.clone()))
    }

    fn signer<'a>(&'a self, key: &'a KeyHandle) -> Result<Box<dyn RsaSigner + 'a>> {
        match key {
            KeyHandle::Embedded(k) => Ok(Box::new(k)),
            KeyHandle::Token(id) => Err(CryptoError::Backend(format!(
                "key {id} is on a PKCS#11 token, but this tenant's keystore is the embedded one; \
                 configure its pkcs11 keystore"
            ))),
        }
    }

    fn project(&self, _id: &TokenKeyId, _label: &str, _cert: Option<&Certificate>) -> Result<()> {
        Ok(())
    }

    fn destroy(&self, _id: &TokenKeyId) -> Result<()> {
        Ok(())
    }

    fn objects(&self) -> Result<Vec<TokenObject>> {
        Ok(Vec::new())
    }
}

impl<T: RsaSigner + ?Sized> RsaSigner for &T {
    fn public_key_der(&self) -> Result<Vec<u8>> {
        (**self).public_key_der()
    }

    fn bits(&self) -> usize {
        (**self).bits()
    }

    fn sign_pkcs1v15(&self, digest: DigestAlg, message: &[u8]) -> Result<Vec<u8>> {
        (**self).sign_pkcs1v15(digest, message)
    }
}

/// Adapts an [`RsaSigner`] to the RustCrypto signer traits the `x509-cert` builders want
/// (SHA-256 with RSA), so certificates and CSRs are signed by the same key wherever it is.
pub(crate) struct Sha256Signer<'a> {
    inner: &'a dyn RsaSigner,
    verifying: rsa::pkcs1v15::VerifyingKey<sha2::Sha256>,
}

impl<'a> Sha256Signer<'a> {
    pub(crate) fn new(inner: &'a dyn RsaSigner) -> Result<Self> {
        use rsa::pkcs8::DecodePublicKey;
        let public = rsa::PublicKey::from_public_key_der(&inner.public_key_der()?)
            .map_err(|e| CryptoError::Backend(format!("signer's public key: {e}")))?;
        Ok(Sha256Signer {
            inner,
            verifying: rsa::pkcs1v15::VerifyingKey::new(public),
        })
    }
}

impl signature::Keypair for Sha256Signer<'_> {
    type VerifyingKey = rsa::pkcs1v15::VerifyingKey<sha2::Sha256>;
    fn verifying_key(&self) -> Self::VerifyingKey {
        self.verifying.clone()
    }
}

impl spki::SignatureAlgorithmIdentifier for Sha256Signer<'_> {
    type Params = der::AnyRef<'static>;
    const SIGNATURE_ALGORITHM_IDENTIFIER: spki::AlgorithmIdentifier<Self::Params> =
        spki::AlgorithmIdentifier {
            oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            parameters: Some(der::AnyRef::NULL),
        };
}

impl signature::Signer<rsa::pkcs1v15::Signature> for Sha256Signer<'_> {
    fn try_sign(
        &self,
        msg: &[u8],
    ) -> std::result::Result<rsa::pkcs1v15::Signature, signature::Error> {
        let raw = self
            .inner
            .sign_pkcs1v15(DigestAlg::Sha256, msg)
            .map_err(|_| signature::Error::new())?;
        rsa::pkcs1v15::Signature::try_from(raw.as_slice())
    }
}
