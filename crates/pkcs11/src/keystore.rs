//! One tenant's keystore on a PKCS#11 token: open (module, token, login), and the
//! [`KeyBackend`] operations, each idempotent by `CKA_ID` so a call repeated after a crash
//! finds what the first one did.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::{Decode, Encode};
use rekey_crypto::{
    Certificate, CryptoError, DigestAlg, KeyBackend, KeyBits, KeyHandle, KeyPair, RsaSigner,
    TokenKeyId, TokenObject,
};
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPrivateKeyRef, RsaPublicKeyRef};
use rsa::pkcs8::{EncodePublicKey, PrivateKeyInfoRef};
use zeroize::Zeroize;

use crate::{ID_PREFIX, PinSource, Pkcs11Config, Pkcs11Error, registry};

/// A tenant's keystore on a PKCS#11 token, logged in as the token's user.
///
/// One read-write session per keystore, used under a lock: a cryptoki `Session` may move
/// between threads but not be shared, and token calls are short. Before each operation the
/// session is checked to be open and logged in, and reopened or logged in again (reading the PIN
/// anew) if not: logged out, a private key is invisible, and a destroy or an adoption check
/// would wrongly find nothing.
pub struct Pkcs11Keystore {
    module: std::path::PathBuf,
    token: String,
    slot: Slot,
    pin: PinSource,
    p11: Pkcs11,
    session: Mutex<Session>,
}

impl fmt::Debug for Pkcs11Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Keystore")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("slot", &self.slot.id())
            .finish_non_exhaustive()
    }
}

/// The security-relevant attributes of a private key object, as the token reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttributes {
    /// `CKA_SENSITIVE`: the private parts cannot be read.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key could be wrapped out of the token.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`: sensitive since it was made (false for an imported key).
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`: never extractable since it was made.
    pub never_extractable: bool,
    /// `CKA_LABEL`.
    pub label: String,
}

impl Pkcs11Keystore {
    /// Loads the module (once per process), finds the token by label, reads the PIN and logs
    /// in. Each failure names what was wrong: the module path, the labels found, the PIN file
    /// or variable, or that the PIN was refused.
    pub fn open(config: &Pkcs11Config) -> Result<Pkcs11Keystore, Pkcs11Error> {
        let p11 = registry::module(&config.module)?;
        let token = config.token_label.clone();
        let call = |op: &'static str| {
            let token = token.clone();
            move |e: Error| Pkcs11Error::Token {
                token,
                op,
                reason: e.to_string(),
            }
        };
        let mut found = Vec::new();
        let mut slot = None;
        for s in p11
            .get_slots_with_initialized_token()
            .map_err(call("listing slots"))?
        {
            let info = p11.get_token_info(s).map_err(call("reading token info"))?;
            let label = info.label().trim_end().to_owned();
            if label == config.token_label {
                if slot.is_some() {
                    // Keys must not land on whichever of two tokens the module lists first.
                    return Err(Pkcs11Error::AmbiguousToken {
                        label,
                        module: config.module.clone(),
                    });
                }
                slot = Some(s);
            }
            found.push(label);
        }
        let Some(slot) = slot else {
            return Err(Pkcs11Error::NoToken {
                label: config.token_label.clone(),
                module: config.module.clone(),
                found,
            });
        };
        let session = p11
            .open_rw_session(slot)
            .map_err(call("opening a session"))?;
        login(&session, &config.pin, &token)?;
        Ok(Pkcs11Keystore {
            module: config.module.clone(),
            token,
            slot,
            pin: config.pin.clone(),
            p11,
            session: Mutex::new(session),
        })
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token
    }

    /// The flags that show whether private key `id` can leave the token, and its label.
    pub fn attributes(&self, id: &TokenKeyId) -> Result<KeyAttributes, Pkcs11Error> {
        let s = self.session()?;
        let key = self.private_key(&s, id)?;
        let attrs = s
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Label,
                ],
            )
            .map_err(self.err("reading key attributes"))?;
        let mut out = KeyAttributes {
            sensitive: false,
            extractable: true,
            always_sensitive: false,
            never_extractable: false,
            label: String::new(),
        };
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => out.sensitive = v,
                Attribute::Extractable(v) => out.extractable = v,
                Attribute::AlwaysSensitive(v) => out.always_sensitive = v,
                Attribute::NeverExtractable(v) => out.never_extractable = v,
                Attribute::Label(l) => out.label = String::from_utf8_lossy(&l).into_owned(),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The keystore's session, open and logged in as the user.
    fn session(&self) -> Result<MutexGuard<'_, Session>, Pkcs11Error> {
        let mut s = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        match s.get_session_info() {
            Ok(info) if info.session_state() == SessionState::RwUser => {}
            // Logged out (by another session of this process, or the token's policy).
            Ok(_) => login(&s, &self.pin, &self.token)?,
            // Closed (the token was removed, the HSM restarted): open a new one.
            Err(Error::Pkcs11(
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
                _,
            )) => {
                *s = self
                    .p11
                    .open_rw_session(self.slot)
                    .map_err(self.err("reopening the session"))?;
                login(&s, &self.pin, &self.token)?;
            }
            Err(e) => return Err(self.err("C_GetSessionInfo")(e)),
        }
        Ok(s)
    }

    fn err(&self, op: &'static str) -> impl Fn(Error) -> Pkcs11Error + '_ {
        move |e| Pkcs11Error::Token {
            token: self.token.clone(),
            op,
            reason: e.to_string(),
        }
    }

    fn find(
        &self,
        s: &Session,
        class: Option<ObjectClass>,
        id: &TokenKeyId,
    ) -> Result<Vec<ObjectHandle>, Pkcs11Error> {
        let mut template = vec![Attribute::Id(id.as_bytes().to_vec())];
        if let Some(class) = class {
            template.push(Attribute::Class(class));
        }
        s.find_objects(&template)
            .map_err(self.err("finding objects"))
    }

    fn private_key(&self, s: &Session, id: &TokenKeyId) -> Result<ObjectHandle, Pkcs11Error> {
        self.find(s, Some(ObjectClass::PRIVATE_KEY), id)?
            .into_iter()
            .next()
            .ok_or_else(|| Pkcs11Error::NoKey {
                id: id.to_string(),
                token: self.token.clone(),
            })
    }

    fn generate_in(
        &self,
        bits: KeyBits,
        id: &TokenKeyId,
        label: &str,
    ) -> Result<KeyHandle, Pkcs11Error> {
        let s = self.session()?;
        if !self
            .find(&s, Some(ObjectClass::PRIVATE_KEY), id)?
            .is_empty()
        {
            return Ok(KeyHandle::Token(id.clone()));
        }
        // A public key left without its private half (an interrupted destroy) would be a
        // second public object under the id once the pair is made.
        for stale in self.find(&s, Some(ObjectClass::PUBLIC_KEY), id)? {
            s.destroy_object(stale)
                .map_err(self.err("destroying a stale public key"))?;
        }
        let bits = cryptoki::types::Ulong::try_from(bits.bits())
            .map_err(|e| Pkcs11Error::Key(e.to_string()))?;
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::ModulusBits(bits),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Id(id.as_bytes().to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            // A signing key signs only (SoftHSM2 defaults decrypt and unwrap to true).
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Id(id.as_bytes().to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
            .map_err(self.err("C_GenerateKeyPair"))?;
        Ok(KeyHandle::Token(id.clone()))
    }

    fn import_in(
        &self,
        key: &KeyPair,
        id: &TokenKeyId,
        label: &str,
    ) -> Result<KeyHandle, Pkcs11Error> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| Pkcs11Error::Key(e.to_string()))?;
        let info =
            PrivateKeyInfoRef::from_der(&der).map_err(|e| Pkcs11Error::Key(e.to_string()))?;
        let rsa = RsaPrivateKeyRef::from_der(info.private_key.as_bytes())
            .map_err(|e| Pkcs11Error::Key(e.to_string()))?;
        let int = |u: der::asn1::UintRef<'_>| u.as_bytes().to_vec();
        let id_bytes = id.as_bytes().to_vec();
        let label_bytes = label.as_bytes().to_vec();
        let s = self.session()?;
        if self
            .find(&s, Some(ObjectClass::PRIVATE_KEY), id)?
            .is_empty()
        {
            let mut template = [
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Unwrap(false),
                Attribute::Id(id_bytes.clone()),
                Attribute::Label(label_bytes.clone()),
                Attribute::Modulus(int(rsa.modulus)),
                Attribute::PublicExponent(int(rsa.public_exponent)),
                Attribute::PrivateExponent(int(rsa.private_exponent)),
                Attribute::Prime1(int(rsa.prime1)),
                Attribute::Prime2(int(rsa.prime2)),
                Attribute::Exponent1(int(rsa.exponent1)),
                Attribute::Exponent2(int(rsa.exponent2)),
                Attribute::Coefficient(int(rsa.coefficient)),
            ];
            let created = s.create_object(&template);
            // The private parts were copied into the template; wipe them whatever happened.
            for a in &mut template {
                if let Attribute::PrivateExponent(v)
                | Attribute::Prime1(v)
                | Attribute::Prime2(v)
                | Attribute::Exponent1(v)
                | Attribute::Exponent2(v)
                | Attribute::Coefficient(v) = a
                {
                    v.zeroize();
                }
            }
            created.map_err(self.err("creating the private key object"))?;
        }
        // Also on a retry: the first attempt may have stopped between the two objects.
        if self.find(&s, Some(ObjectClass::PUBLIC_KEY), id)?.is_empty() {
            s.create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::Id(id_bytes),
                Attribute::Label(label_bytes),
                Attribute::Modulus(int(rsa.modulus)),
                Attribute::PublicExponent(int(rsa.public_exponent)),
            ])
            .map_err(self.err("creating the public key object"))?;
        }
        Ok(KeyHandle::Token(id.clone()))
    }

    fn signer_for(&self, id: &TokenKeyId) -> Result<TokenSigner<'_>, Pkcs11Error> {
        let s = self.session()?;
        let key = self.private_key(&s, id)?;
        let attrs = s
            .get_attributes(
                key,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(self.err("reading the public key"))?;
        drop(s);
        let (mut n, mut e) = (None, None);
        for a in attrs {
            match a {
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                _ => {}
            }
        }
        let (Some(n), Some(e)) = (n, e) else {
            return Err(Pkcs11Error::Key(format!(
                "private key {id} on token {:?} does not show its modulus and public exponent",
                self.token
            )));
        };
        let spki = spki_der(&n, &e).map_err(Pkcs11Error::Key)?;
        Ok(TokenSigner {
            store: self,
            key,
            bits: modulus_bits(&n),
            spki,
        })
    }

    fn project_in(
        &self,
        id: &TokenKeyId,
        label: &str,
        cert: Option<&Certificate>,
    ) -> Result<(), Pkcs11Error> {
        let s = self.session()?;
        let keys: Vec<ObjectHandle> = [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY]
            .into_iter()
            .map(|c| self.find(&s, Some(c), id))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        if keys.is_empty() {
            return Err(Pkcs11Error::NoKey {
                id: id.to_string(),
                token: self.token.clone(),
            });
        }
        let relabel = [Attribute::Label(label.as_bytes().to_vec())];
        for k in keys {
            s.update_attributes(k, &relabel)
                .map_err(self.err("setting the label"))?;
        }
        let existing = self.find(&s, Some(ObjectClass::CERTIFICATE), id)?;
        let Some(cert) = cert else {
            for c in existing {
                s.update_attributes(c, &relabel)
                    .map_err(self.err("setting the certificate's label"))?;
            }
            return Ok(());
        };
        let mut have = false;
        for c in existing {
            let value = s
                .get_attributes(c, &[AttributeType::Value])
                .map_err(self.err("reading a certificate"))?;
            if value.contains(&Attribute::Value(cert.to_der().to_vec())) && !have {
                s.update_attributes(c, &relabel)
                    .map_err(self.err("setting the certificate's label"))?;
                have = true;
            } else {
                // Another certificate under this id (the key's earlier certificate).
                s.destroy_object(c)
                    .map_err(self.err("replacing a certificate"))?;
            }
        }
        if !have {
            let subject = x509_cert::Certificate::from_der(cert.to_der())
                .and_then(|c| c.tbs_certificate().subject().to_der())
                .map_err(|e| Pkcs11Error::Key(format!("certificate subject: {e}")))?;
            s.create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Id(id.as_bytes().to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Subject(subject),
                Attribute::Value(cert.to_der().to_vec()),
            ])
            .map_err(self.err("creating the certificate object"))?;
        }
        Ok(())
    }

    fn destroy_in(&self, id: &TokenKeyId) -> Result<(), Pkcs11Error> {
        let s = self.session()?;
        for o in self.find(&s, None, id)? {
            s.destroy_object(o).map_err(self.err("C_DestroyObject"))?;
        }
        Ok(())
    }

    fn objects_in(&self) -> Result<Vec<TokenObject>, Pkcs11Error> {
        let s = self.session()?;
        let keys = s
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .map_err(self.err("listing private keys"))?;
        let mut out = Vec::new();
        for k in keys {
            let attrs = s
                .get_attributes(k, &[AttributeType::Id, AttributeType::Label])
                .map_err(self.err("reading key attributes"))?;
            let (mut id, mut label) = (None, String::new());
            for a in attrs {
                match a {
                    Attribute::Id(v) => id = Some(v),
                    Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
                    _ => {}
                }
            }
            let Some(id) = id.filter(|i| i.starts_with(ID_PREFIX)) else {
                continue;
            };
            if let Ok(id) = TokenKeyId::new(id) {
                out.push(TokenObject { id, label });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

impl KeyBackend for Pkcs11Keystore {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    /// Generates the pair inside the token (sensitive, non-extractable, signing only), or
    /// adopts the private key already there under `id`, so a retried call never makes a
    /// second key.
    fn generate(
        &self,
        bits: KeyBits,
        id: &TokenKeyId,
        label: &str,
    ) -> rekey_crypto::Result<KeyHandle> {
        Ok(self.generate_in(bits, id, label)?)
    }

    /// Unwraps an existing key into the token as a sensitive, non-extractable object. The key
    /// existed outside the token before (in a PKCS#12 file, say) and may still exist there:
    /// callers must warn that the token cannot vouch for its history, unlike a key it
    /// generated (`CKA_ALWAYS_SENSITIVE` and `CKA_NEVER_EXTRACTABLE` are false for it). An
    /// id already present is adopted.
    fn import(
        &self,
        key: &KeyPair,
        id: &TokenKeyId,
        label: &str,
    ) -> rekey_crypto::Result<KeyHandle> {
        Ok(self.import_in(key, id, label)?)
    }

    fn signer<'a>(&'a self, key: &'a KeyHandle) -> rekey_crypto::Result<Box<dyn RsaSigner + 'a>> {
        match key {
            KeyHandle::Token(id) => Ok(Box::new(self.signer_for(id)?)),
            KeyHandle::Embedded(_) => Err(CryptoError::Backend(format!(
                "this tenant's keys are on PKCS#11 token {:?}, but the key given is one rekey \
                 holds itself; import it into the token first",
                self.token
            ))),
        }
    }

    fn project(
        &self,
        id: &TokenKeyId,
        label: &str,
        cert: Option<&Certificate>,
    ) -> rekey_crypto::Result<()> {
        Ok(self.project_in(id, label, cert)?)
    }

    fn destroy(&self, id: &TokenKeyId) -> rekey_crypto::Result<()> {
        Ok(self.destroy_in(id)?)
    }

    fn objects(&self) -> rekey_crypto::Result<Vec<TokenObject>> {
        Ok(self.objects_in()?)
    }
}

/// Logs `session` in as the user with the PIN read from `pin` now; a login this process already
/// holds on the token is fine.
fn login(session: &Session, pin: &PinSource, token: &str) -> Result<(), Pkcs11Error> {
    let secret = AuthPin::new(pin.read()?.into());
    match session.login(UserType::User, Some(&secret)) {
        // Login is per application and token: another keystore on this token logged in.
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(Error::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(Pkcs11Error::WrongPin {
                token: token.into(),
            })
        }
        Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked {
            token: token.into(),
        }),
        Err(e) => Err(Pkcs11Error::Token {
            token: token.into(),
            op: "C_Login",
            reason: e.to_string(),
        }),
    }
}

/// Signs with one private key object; the token hashes and pads.
struct TokenSigner<'a> {
    store: &'a Pkcs11Keystore,
    key: ObjectHandle,
    bits: usize,
    spki: Vec<u8>,
}

impl fmt::Debug for TokenSigner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("token", &self.store.token)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl RsaSigner for TokenSigner<'_> {
    fn public_key_der(&self) -> rekey_crypto::Result<Vec<u8>> {
        Ok(self.spki.clone())
    }

    fn bits(&self) -> usize {
        self.bits
    }

    fn sign_pkcs1v15(&self, digest: DigestAlg, message: &[u8]) -> rekey_crypto::Result<Vec<u8>> {
        let mechanism = match digest {
            DigestAlg::Sha256 => Mechanism::Sha256RsaPkcs,
            DigestAlg::Sha384 => Mechanism::Sha384RsaPkcs,
            DigestAlg::Sha512 => Mechanism::Sha512RsaPkcs,
        };
        let s = self.store.session()?;
        Ok(s.sign(&mechanism, self.key, message)
            .map_err(self.store.err("C_Sign"))?)
    }
}

/// The DER `SubjectPublicKeyInfo` of the RSA key with modulus `n` and exponent `e`
/// (big-endian), encoded as `KeyPair::public_key_der` encodes it so the two compare equal.
fn spki_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    let pkcs1 = RsaPublicKeyRef {
        modulus: der::asn1::UintRef::new(n).map_err(|e| e.to_string())?,
        public_exponent: der::asn1::UintRef::new(e).map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())?;
    let public = rsa::PublicKey::from_pkcs1_der(&pkcs1).map_err(|e| e.to_string())?;
    Ok(public
        .to_public_key_der()
        .map_err(|e| e.to_string())?
        .into_vec())
}

/// The size of modulus `n` in bits.
fn modulus_bits(n: &[u8]) -> usize {
    let n = match n.iter().position(|b| *b != 0) {
        Some(first) => &n[first..],
        None => return 0,
    };
    n.len() * 8 - n[0].leading_zeros() as usize
}
