//! PKCS#12 import and export (the format CAs and administrators exchange keys in).
//!
//! RFC 7292 structures are declared here with `der` derives: no published `pkcs12` crate builds
//! with the `cms` version this workspace uses. Export writes what OpenSSL 3 writes by default:
//! the key in a PBES2 shrouded key bag and the certificates in a PBES2-encrypted safe (both
//! PBKDF2-HMAC-SHA256 + AES-256-CBC), integrity by an HMAC-SHA256 MAC keyed through the RFC 7292
//! appendix B KDF. Import checks the MAC before it decodes anything behind it, and refuses the
//! legacy `pbeWithSHAAnd…` (RC2, 3DES) schemes with a message saying how to re-export.
//!
//! Iteration counts are read from the file and so are bounded: a hostile file must not be able
//! to make an import run for hours.

use cms::content_info::{CmsVersion, ContentInfo};
use cms::encrypted_data::EncryptedData;
use cms::enveloped_data::EncryptedContentInfo;
use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
use hmac::{KeyInit, Mac};
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use zeroize::Zeroizing;

use crate::{Certificate, CryptoError, KeyPair, Result};

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.1");
const SHROUDED_KEY_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
const CERT_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.3");
const X509_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.22.1");
const LOCAL_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.21");
const PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
/// Arc of the legacy `pbeWithSHAAnd…` schemes (RC4, 3DES, 2DES, RC2) of RFC 7292 appendix C.
const PKCS12_PBE_ARC: &str = "1.2.840.113549.1.12.1.";
/// Arc of PBES1 (`pbeWithMD5AndDES-CBC` and friends).
const PBES1_ARC: &str = "1.2.840.113549.1.5.";

const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// Iterations rekey writes (OpenSSL 3's default for both the MAC and PBKDF2).
const EXPORT_ITERATIONS: u32 = 2048;
/// The most iterations an imported file may ask for, MAC and PBKDF2 alike.
pub const MAX_ITERATIONS: u32 = 1_000_000;

const LEGACY_HINT: &str = "re-export it with AES, e.g. `openssl pkcs12 -export -keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256`";

/// `PFX ::= SEQUENCE { version INTEGER {v3(3)}, authSafe ContentInfo, macData MacData OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
struct Pfx {
    version: u8,
    auth_safe: ContentInfo,
    #[asn1(optional = "true")]
    mac_data: Option<MacData>,
}

/// `MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 }`
#[derive(Clone, Debug, Sequence)]
struct MacData {
    mac: DigestInfo,
    mac_salt: OctetString,
    #[asn1(default = "one")]
    iterations: u32,
}

fn one() -> u32 {
    1
}

/// `DigestInfo ::= SEQUENCE { digestAlgorithm AlgorithmIdentifier, digest OCTET STRING }`
#[derive(Clone, Debug, Sequence)]
struct DigestInfo {
    algorithm: AlgorithmIdentifierOwned,
    digest: OctetString,
}

/// `SafeBag ::= SEQUENCE { bagId OID, bagValue [0] EXPLICIT ANY, bagAttributes SET OF … OPTIONAL }`
///
/// The attributes stay undecoded: import ignores them (friendlyName, localKeyId) and a producer's
/// unusual attribute must not make the file unreadable.
#[derive(Clone, Debug, Sequence)]
struct SafeBag {
    bag_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    bag_value: Any,
    #[asn1(optional = "true")]
    bag_attributes: Option<Any>,
}

/// `CertBag ::= SEQUENCE { certId OID, certValue [0] EXPLICIT OCTET STRING }` (x509Certificate).
#[derive(Clone, Debug, Sequence)]
struct CertBag {
    cert_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    cert_value: OctetString,
}

/// PKCS#8 `EncryptedPrivateKeyInfo`, the value of a pkcs8ShroudedKeyBag.
#[derive(Clone, Debug, Sequence)]
struct EncryptedPrivateKeyInfo {
    encryption_algorithm: AlgorithmIdentifierOwned,
    encrypted_data: OctetString,
}

fn err(msg: impl Into<String>) -> CryptoError {
    CryptoError::Pkcs12(msg.into())
}

fn malformed(what: &str, e: impl std::fmt::Display) -> CryptoError {
    err(format!("not a readable PKCS#12 file: {what}: {e}"))
}

/// Reads a PKCS#12 (`.p12`/`.pfx`) file: its one RSA private key and its certificates, the
/// key's own certificate first, then its issuers as far as the file holds them.
///
/// The MAC is checked first; a wrong password is reported as such. Keys below 2048 bits and
/// non-RSA keys are refused as [`KeyPair::from_pkcs8_der`] refuses them.
pub fn import(der: &[u8], password: &str) -> Result<(KeyPair, Vec<Certificate>)> {
    let pfx = Pfx::from_der(der).map_err(|e| malformed("PFX", e))?;
    if pfx.version != 3 {
        return Err(err(format!(
            "unsupported PFX version {} (expected 3)",
            pfx.version
        )));
    }
    if pfx.auth_safe.content_type == ID_SIGNED_DATA {
        return Err(err(
            "public-key integrity mode (a signed authSafe) is not supported; export with a password MAC",
        ));
    }
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(err(format!(
            "authSafe content type {} is not data",
            pfx.auth_safe.content_type
        )));
    }
    let auth_safe_bytes = pfx
        .auth_safe
        .content
        .decode_as::<OctetString>()
        .map_err(|e| malformed("authSafe", e))?;
    let auth_safe_bytes = auth_safe_bytes.as_bytes();
    let mac_data = pfx.mac_data.as_ref().ok_or_else(|| {
        err("the file has no MAC, so its integrity and the password cannot be checked; export it with a MAC")
    })?;
    check_mac(mac_data, auth_safe_bytes, password)?;

    let contents: Vec<ContentInfo> =
        Vec::from_der(auth_safe_bytes).map_err(|e| malformed("AuthenticatedSafe", e))?;
    let mut keys: Vec<KeyPair> = Vec::new();
    let mut certs: Vec<Certificate> = Vec::new();
    for ci in &contents {
        let safe_contents: Zeroizing<Vec<u8>> = if ci.content_type == ID_DATA {
            let os = ci
                .content
                .decode_as::<OctetString>()
                .map_err(|e| malformed("SafeContents", e))?;
            Zeroizing::new(os.as_bytes().to_vec())
        } else if ci.content_type == ID_ENCRYPTED_DATA {
            let ed = ci
                .content
                .decode_as::<EncryptedData>()
                .map_err(|e| malformed("EncryptedData", e))?;
            let eci = &ed.enc_content_info;
            let ciphertext = eci
                .encrypted_content
                .as_ref()
                .ok_or_else(|| err("EncryptedData has no encrypted content"))?;
            decrypt(
                &eci.content_enc_alg,
                ciphertext.as_bytes(),
                password,
                "certificates",
            )?
        } else {
            return Err(err(format!(
                "unsupported safe of content type {} (only data and encrypted-data are read)",
                ci.content_type
            )));
        };
        let bags: Vec<SafeBag> =
            Vec::from_der(&safe_contents).map_err(|e| malformed("SafeContents", e))?;
        for bag in &bags {
            read_bag(bag, password, &mut keys, &mut certs)?;
        }
    }

    let key = match keys.len() {
        0 => return Err(err("the file holds no private key")),
        1 => keys.remove(0),
        n => {
            return Err(err(format!(
                "the file holds {n} private keys; rekey imports one key per file"
            )));
        }
    };
    let chain = order_chain(&key, certs)?;
    Ok((key, chain))
}

fn read_bag(
    bag: &SafeBag,
    password: &str,
    keys: &mut Vec<KeyPair>,
    certs: &mut Vec<Certificate>,
) -> Result<()> {
    if bag.bag_id == CERT_BAG {
        let cb = bag
            .bag_value
            .decode_as::<CertBag>()
            .map_err(|e| malformed("CertBag", e))?;
        if cb.cert_id != X509_CERTIFICATE {
            return Err(err(format!(
                "certificate bag of type {} is not an X.509 certificate",
                cb.cert_id
            )));
        }
        let cert = Certificate::from_der(cb.cert_value.as_bytes())?;
        if !certs.contains(&cert) {
            certs.push(cert);
        }
    } else if bag.bag_id == SHROUDED_KEY_BAG {
        let epki = bag
            .bag_value
            .decode_as::<EncryptedPrivateKeyInfo>()
            .map_err(|e| malformed("shrouded key bag", e))?;
        let pkcs8 = decrypt(
            &epki.encryption_algorithm,
            epki.encrypted_data.as_bytes(),
            password,
            "private key",
        )?;
        keys.push(KeyPair::from_pkcs8_der(&pkcs8)?);
    } else if bag.bag_id == KEY_BAG {
        let pkcs8 = Zeroizing::new(bag.bag_value.to_der()?);
        keys.push(KeyPair::from_pkcs8_der(&pkcs8)?);
    }
    // CRL, secret and nested safe-contents bags carry nothing rekey keeps.
    Ok(())
}

/// The key's certificate first, then each issuer found in the file, then anything left over.
fn order_chain(key: &KeyPair, mut certs: Vec<Certificate>) -> Result<Vec<Certificate>> {
    let Some(leaf_at) = certs.iter().position(|c| key.matches(c)) else {
        return Err(if certs.is_empty() {
            err("the file holds no certificate for its private key")
        } else {
            err(format!(
                "none of the file's {} certificate(s) belongs to its private key",
                certs.len()
            ))
        });
    };
    let mut chain = vec![certs.remove(leaf_at)];
    while let Some(last) = chain.last() {
        if last.issuer() == last.subject() {
            break;
        }
        let issuer = last.issuer();
        match certs.iter().position(|c| c.subject() == issuer) {
            Some(i) => chain.push(certs.remove(i)),
            None => break,
        }
    }
    chain.extend(certs);
    Ok(chain)
}

/// Decrypts a PBES2 (PBKDF2) blob; refuses the legacy schemes and unbounded iteration counts.
fn decrypt(
    alg: &AlgorithmIdentifierOwned,
    ciphertext: &[u8],
    password: &str,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let oid = alg.oid.to_string();
    if oid.starts_with(PKCS12_PBE_ARC) {
        return Err(err(format!(
            "the {what} are encrypted with a legacy PKCS#12 scheme ({oid}, RC2/3DES), which rekey does not read; {LEGACY_HINT}"
        )));
    }
    if alg.oid != PBES2 {
        if oid.starts_with(PBES1_ARC) {
            return Err(err(format!(
                "the {what} are encrypted with PBES1 ({oid}), which rekey does not read; {LEGACY_HINT}"
            )));
        }
        return Err(err(format!(
            "the {what} are encrypted with unsupported algorithm {oid}; {LEGACY_HINT}"
        )));
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or_else(|| err("PBES2 without parameters"))?;
    let params = pkcs5::pbes2::Parameters::from_der(&params.to_der()?)
        .map_err(|e| err(format!("unsupported PBES2 parameters for the {what}: {e}")))?;
    match params.kdf.pbkdf2() {
        Some(p) if p.iteration_count > MAX_ITERATIONS => {
            return Err(err(format!(
                "the {what} ask for {} PBKDF2 iterations; rekey allows at most {MAX_ITERATIONS}",
                p.iteration_count
            )));
        }
        Some(_) => {}
        None => {
            return Err(err(format!(
                "the {what} use a key derivation other than PBKDF2 (scrypt?); {LEGACY_HINT}"
            )));
        }
    }
    // The MAC has already vouched for the password, so a failure here is a corrupt or
    // inconsistent file (or a producer that used different passwords for MAC and content).
    let plain = pkcs5::EncryptionScheme::Pbes2(params)
        .decrypt(password.as_bytes(), ciphertext)
        .map_err(|e| err(format!("cannot decrypt the {what}: {e}")))?;
    Ok(Zeroizing::new(plain))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MacAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl MacAlg {
    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [
            (ID_SHA1, MacAlg::Sha1),
            (ID_SHA256, MacAlg::Sha256),
            (ID_SHA384, MacAlg::Sha384),
            (ID_SHA512, MacAlg::Sha512),
        ]
        .into_iter()
        .find(|(o, _)| o == oid)
        .map(|(_, a)| a)
    }

    /// Output length `u` of RFC 7292 appendix B.
    fn output_len(self) -> usize {
        match self {
            MacAlg::Sha1 => 20,
            MacAlg::Sha256 => 32,
            MacAlg::Sha384 => 48,
            MacAlg::Sha512 => 64,
        }
    }

    /// Block length `v` of RFC 7292 appendix B.
    fn block_len(self) -> usize {
        match self {
            MacAlg::Sha1 | MacAlg::Sha256 => 64,
            MacAlg::Sha384 | MacAlg::Sha512 => 128,
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            MacAlg::Sha1 => run::<sha1::Sha1>(parts),
            MacAlg::Sha256 => run::<sha2::Sha256>(parts),
            MacAlg::Sha384 => run::<sha2::Sha384>(parts),
            MacAlg::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
            let mut m =
                <M as KeyInit>::new_from_slice(key).map_err(|e| err(format!("MAC key: {e}")))?;
            m.update(data);
            Ok(m.finalize().into_bytes().to_vec())
        }
        match self {
            MacAlg::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, data),
            MacAlg::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, data),
            MacAlg::Sha384 => run::<hmac::Hmac<sha2::Sha384>>(key, data),
            MacAlg::Sha512 => run::<hmac::Hmac<sha2::Sha512>>(key, data),
        }
    }
}

/// The password as RFC 7292 wants it for its KDF: a BMPString (UTF-16BE) with a two-byte NUL.
fn bmp_password(password: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
    for unit in password.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// RFC 7292 appendix B.2 key derivation, for `id` 3 (MAC key) here.
fn pkcs12_kdf(
    alg: MacAlg,
    password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u32,
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let u = alg.output_len();
    let v = alg.block_len();
    let d = vec![id; v];
    let stretch = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let n = v * src.len().div_ceil(v);
        src.iter().copied().cycle().take(n).collect()
    };
    let mut i_buf = Zeroizing::new(stretch(salt));
    i_buf.extend_from_slice(&stretch(password));
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    while out.len() < len {
        let mut a = alg.hash(&[&d, &i_buf]);
        for _ in 1..iterations {
            a = alg.hash(&[&a]);
        }
        let take = (len - out.len()).min(u);
        out.extend_from_slice(&a[..take]);
        if out.len() >= len {
            break;
        }
        // B = A repeated to v bytes; each v-byte block I_j becomes (I_j + B + 1) mod 2^(8v).
        let b: Vec<u8> = a.iter().copied().cycle().take(v).collect();
        for block in i_buf.chunks_mut(v) {
            let mut carry: u16 = 1;
            for k in (0..block.len()).rev() {
                carry += u16::from(block[k]) + u16::from(b[k]);
                block[k] = (carry & 0xff) as u8;
                carry >>= 8;
            }
        }
    }
    out
}

fn mac_over(
    alg: MacAlg,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    data: &[u8],
) -> Result<Vec<u8>> {
    let key = pkcs12_kdf(alg, password, salt, 3, iterations, alg.output_len());
    alg.hmac(&key, data)
}

fn check_mac(mac_data: &MacData, data: &[u8], password: &str) -> Result<()> {
    let oid = &mac_data.mac.algorithm.oid;
    let alg = MacAlg::from_oid(oid)
        .ok_or_else(|| err(format!("unsupported MAC digest algorithm {oid}")))?;
    let iterations = mac_data.iterations;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(err(format!(
            "MAC iteration count {iterations} is outside 1..={MAX_ITERATIONS}"
        )));
    }
    let salt = mac_data.mac_salt.as_bytes();
    let expected = mac_data.mac.digest.as_bytes();
    let mut candidates = vec![bmp_password(password)];
    if password.is_empty() {
        // OpenSSL MACs an empty password either as a lone NUL pair or as no bytes at all.
        candidates.push(Zeroizing::new(Vec::new()));
    }
    for pw in &candidates {
        let got = mac_over(alg, pw, salt, iterations, data)?;
        if constant_time_eq(&got, expected) {
            return Ok(());
        }
    }
    Err(err("wrong password or corrupted file (MAC check failed)"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    use rand::TryRng;
    let mut buf = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| CryptoError::Encoding(format!("random source: {e}")))?;
    Ok(buf)
}

fn pbes2_encrypt(plaintext: &[u8], password: &str) -> Result<(AlgorithmIdentifierOwned, Vec<u8>)> {
    let salt = random_bytes::<16>()?;
    let iv = random_bytes::<16>()?;
    let params =
        pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(EXPORT_ITERATIONS, &salt, iv)
            .map_err(|e| CryptoError::Encoding(format!("PBES2 parameters: {e}")))?;
    let ciphertext = params
        .encrypt(password.as_bytes(), plaintext)
        .map_err(|e| CryptoError::Encoding(format!("PBES2 encryption: {e}")))?;
    let alg = AlgorithmIdentifierOwned {
        oid: PBES2,
        parameters: Some(Any::encode_from(&params)?),
    };
    Ok((alg, ciphertext))
}

fn local_key_id(leaf: &Certificate) -> Result<Any> {
    // OpenSSL pairs key and certificate through localKeyID; it uses the certificate's SHA-1.
    let id = OctetString::new(sha1::Sha1::digest(leaf.to_der()).to_vec())?;
    let mut values = SetOfVec::new();
    values.insert(Any::encode_from(&id)?)?;
    let mut attrs = SetOfVec::<Attribute>::new();
    attrs.insert(Attribute {
        oid: LOCAL_KEY_ID,
        values,
    })?;
    Ok(Any::encode_from(&attrs)?)
}

/// Writes `key` and `chain` (its certificate first) as a password-protected PKCS#12 file that
/// OpenSSL 3, Java and Windows read: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and
/// certificates, HMAC-SHA256 integrity.
pub fn export(key: &KeyPair, chain: &[Certificate], password: &str) -> Result<Vec<u8>> {
    let Some(leaf) = chain.first() else {
        return Err(CryptoError::Chain {
            index: 0,
            reason: "no certificate given".into(),
        });
    };
    if !key.matches(leaf) {
        return Err(CryptoError::KeyMismatch {
            subject: leaf.subject(),
            fingerprint: leaf.fingerprint().to_string(),
        });
    }
    let key_id = local_key_id(leaf)?;

    let mut cert_bags = Vec::with_capacity(chain.len());
    for (i, cert) in chain.iter().enumerate() {
        let bag = CertBag {
            cert_id: X509_CERTIFICATE,
            cert_value: OctetString::new(cert.to_der())?,
        };
        cert_bags.push(SafeBag {
            bag_id: CERT_BAG,
            bag_value: Any::encode_from(&bag)?,
            bag_attributes: (i == 0).then(|| key_id.clone()),
        });
    }
    let cert_safe = Zeroizing::new(cert_bags.to_der()?);
    let (cert_alg, cert_ct) = pbes2_encrypt(&cert_safe, password)?;
    let encrypted_certs = EncryptedData {
        version: CmsVersion::V0,
        enc_content_info: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: cert_alg,
            encrypted_content: Some(OctetString::new(cert_ct)?),
        },
        unprotected_attrs: None,
    };

    let pkcs8 = key.to_pkcs8_der()?;
    let (key_alg, key_ct) = pbes2_encrypt(&pkcs8, password)?;
    let shrouded = EncryptedPrivateKeyInfo {
        encryption_algorithm: key_alg,
        encrypted_data: OctetString::new(key_ct)?,
    };
    let key_bags = vec![SafeBag {
        bag_id: SHROUDED_KEY_BAG,
        bag_value: Any::encode_from(&shrouded)?,
        bag_attributes: Some(key_id),
    }];
    let key_safe = key_bags.to_der()?;

    let auth_safe: Vec<ContentInfo> = vec![
        ContentInfo {
            content_type: ID_ENCRYPTED_DATA,
            content: Any::encode_from(&encrypted_certs)?,
        },
        ContentInfo {
            content_type: ID_DATA,
            content: Any::encode_from(&OctetString::new(key_safe)?)?,
        },
    ];
    let auth_safe_bytes = auth_safe.to_der()?;

    let mac_salt = random_bytes::<16>()?;
    let mac = mac_over(
        MacAlg::Sha256,
        &bmp_password(password),
        &mac_salt,
        EXPORT_ITERATIONS,
        &auth_safe_bytes,
    )?;
    let pfx = Pfx {
        version: 3,
        auth_safe: ContentInfo {
            content_type: ID_DATA,
            content: Any::encode_from(&OctetString::new(auth_safe_bytes)?)?,
        },
        mac_data: Some(MacData {
            mac: DigestInfo {
                algorithm: AlgorithmIdentifierOwned {
                    oid: ID_SHA256,
                    parameters: Some(Any::null()),
                },
                digest: OctetString::new(mac)?,
            },
            mac_salt: OctetString::new(mac_salt.to_vec())?,
            iterations: EXPORT_ITERATIONS,
        }),
    };
    Ok(pfx.to_der()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7292 KDF against a vector computed with OpenSSL's `PKCS12_key_gen_uni`
    /// (password "smeg", salt 0A58CF64530D823F, id 1, 1 iteration, SHA-1, 24 bytes), the
    /// classic test vector published with OpenSSL's and BouncyCastle's test suites.
    #[test]
    fn kdf_matches_published_vector() {
        let salt = hex::decode("0A58CF64530D823F").expect("hex");
        let key = pkcs12_kdf(MacAlg::Sha1, &bmp_password("smeg"), &salt, 1, 1, 24);
        assert_eq!(
            hex::encode_upper(&*key),
            "8AAAE6297B6CB04642AB5B077851284EB7128F1A2A7FBCA3"
        );
        // SHA-256, MAC id, 100 iterations, a non-ASCII password (vector checked against
        // OpenSSL's `PKCS12_key_gen_utf8` by the RustCrypto pkcs12 crate's tests).
        let salt = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let key = pkcs12_kdf(MacAlg::Sha256, &bmp_password("ge@äheim"), &salt, 3, 100, 32);
        assert_eq!(
            hex::encode(&*key),
            "136355ed9434516682534f46d63956db5ff06b844702c2c1f3b46321e2524a4d"
        );
    }

    #[test]
    fn absurd_iteration_counts_are_refused_before_any_work() {
        for iterations in [0, MAX_ITERATIONS + 1, u32::MAX] {
            let mac_data = MacData {
                mac: DigestInfo {
                    algorithm: AlgorithmIdentifierOwned {
                        oid: ID_SHA256,
                        parameters: None,
                    },
                    digest: OctetString::new(vec![0u8; 32]).expect("octets"),
                },
                mac_salt: OctetString::new(vec![1u8; 8]).expect("octets"),
                iterations,
            };
            let e = check_mac(&mac_data, b"data", "pw").expect_err("refused");
            assert!(e.to_string().contains("iteration count"), "{e}");
        }
    }

    #[test]
    fn legacy_and_unknown_encryption_is_refused_with_the_reexport_hint() {
        for oid in [
            "1.2.840.113549.1.12.1.3",
            "1.2.840.113549.1.12.1.6",
            "1.2.840.113549.1.5.3",
            "1.2.3.4",
        ] {
            let alg = AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new(oid).expect("oid"),
                parameters: None,
            };
            let e = decrypt(&alg, b"", "pw", "certificates").expect_err("refused");
            assert!(
                e.to_string()
                    .contains("-keypbe AES-256-CBC -certpbe AES-256-CBC"),
                "{e}"
            );
        }
    }
}
