//! X.509 certificates: parsing, fingerprints, self-signed issuance, PKCS#10 requests and chain
//! checks.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use der::{Decode, DecodePem, Encode, EncodePem};
use sha2::{Digest, Sha256};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::TbsCertificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder, RequestBuilder};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use rekey_model::Fingerprint;

use crate::backend::Sha256Signer;
use crate::{CryptoError, Result, RsaSigner};

/// The SHA-256 fingerprint of DER bytes (a certificate's encoding): the name the engine, the
/// store and every interface give that certificate.
pub fn fingerprint_of(der: &[u8]) -> Fingerprint {
    Fingerprint::from_bytes(Sha256::digest(der).into())
}

/// A parsed X.509 certificate together with its original DER bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    parsed: x509_cert::Certificate,
    der: Vec<u8>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({}, {})", self.subject(), self.fingerprint())
    }
}

impl Certificate {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let parsed = x509_cert::Certificate::from_der(der)
            .map_err(|e| CryptoError::MalformedCertificate(e.to_string()))?;
        Ok(Certificate {
            parsed,
            der: der.to_vec(),
        })
    }

    /// Parses the first `CERTIFICATE` PEM block.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::parse_pem_chain(pem)?
            .into_iter()
            .next()
            .ok_or(CryptoError::MissingPem("CERTIFICATE"))
    }

    /// Parses every `CERTIFICATE` PEM block, in order; other blocks are ignored.
    pub fn parse_pem_chain(pem: &str) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        let mut rest = pem;
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        while let Some(start) = rest.find(BEGIN) {
            let Some(end_rel) = rest[start..].find(END) else {
                return Err(CryptoError::MalformedCertificate(
                    "PEM block has no END CERTIFICATE line".into(),
                ));
            };
            let end = start + end_rel + END.len();
            let block = &rest[start..end];
            let parsed = x509_cert::Certificate::from_pem(block)
                .map_err(|e| CryptoError::MalformedCertificate(e.to_string()))?;
            let der = parsed
                .to_der()
                .map_err(|e| CryptoError::MalformedCertificate(e.to_string()))?;
            out.push(Certificate { parsed, der });
            rest = &rest[end..];
        }
        if out.is_empty() {
            return Err(CryptoError::MissingPem("CERTIFICATE"));
        }
        Ok(out)
    }

    /// Reads PEM (possibly several certificates) or a single DER certificate.
    pub fn parse_any(bytes: &[u8]) -> Result<Vec<Self>> {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => Self::parse_pem_chain(text),
            _ => Ok(vec![Self::from_der(bytes)?]),
        }
    }

    /// The DER encoding.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// PEM with LF line endings.
    pub fn to_pem(&self) -> String {
        // Encoding a certificate we already parsed cannot fail for lack of input; fall back to
        // a hand-made block to stay panic-free regardless.
        self.parsed
            .to_pem(der::pem::LineEnding::LF)
            .unwrap_or_else(|_| pem_block("CERTIFICATE", &self.der))
    }

    /// SHA-256 of the DER encoding.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(&self.der)
    }

    /// The subject DN (RFC 4514 string form).
    pub fn subject(&self) -> String {
        self.parsed.tbs_certificate().subject().to_string()
    }

    /// The issuer DN (RFC 4514 string form).
    pub fn issuer(&self) -> String {
        self.parsed.tbs_certificate().issuer().to_string()
    }

    /// Serial number as hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(self.parsed.tbs_certificate().serial_number().as_bytes())
    }

    /// Start of validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        to_chrono(self.parsed.tbs_certificate().validity().not_before)
    }

    /// End of validity: what renewals are planned against.
    pub fn not_after(&self) -> DateTime<Utc> {
        to_chrono(self.parsed.tbs_certificate().validity().not_after)
    }

    /// The modulus size of the certificate's RSA key, if it is one.
    pub fn rsa_bits(&self) -> Option<usize> {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        let der = self.public_key_der().ok()?;
        rsa::PublicKey::from_public_key_der(&der)
            .ok()
            .map(|k| k.size() * 8)
    }

    /// The subject public key, DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> Result<Vec<u8>> {
        self.parsed
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| CryptoError::MalformedCertificate(e.to_string()))
    }

    /// The subjectKeyIdentifier extension's value, if present.
    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        let (_, ski) = self
            .parsed
            .tbs_certificate()
            .get_extension::<SubjectKeyIdentifier>()
            .ok()??;
        Some(ski.0.as_bytes().to_vec())
    }

    pub(crate) fn parsed(&self) -> &x509_cert::Certificate {
        &self.parsed
    }

    pub(crate) fn rsa_public_key(&self) -> Result<rsa::PublicKey> {
        let spki = self.parsed.tbs_certificate().subject_public_key_info();
        let der = spki
            .to_der()
            .map_err(|e| CryptoError::MalformedCertificate(e.to_string()))?;
        let spki_ref = SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| CryptoError::MalformedCertificate(e.to_string()))?;
        rsa::PublicKey::try_from(spki_ref)
            .map_err(|e| CryptoError::UnsupportedKey(format!("certificate key: {e}")))
    }
}

pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn to_chrono(t: Time) -> DateTime<Utc> {
    let d = t.to_unix_duration();
    DateTime::<Utc>::from_timestamp(d.as_secs() as i64, d.subsec_nanos()).unwrap_or_default()
}

fn to_time(t: DateTime<Utc>) -> Result<Time> {
    let secs = u64::try_from(t.timestamp())
        .map_err(|_| CryptoError::Validity(format!("{t} is before 1970")))?;
    Time::try_from(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .map_err(|e| CryptoError::Validity(format!("{t}: {e}")))
}

/// Parses an RFC 4514 distinguished name such as `CN=signer,O=Example`.
pub fn parse_subject(subject: &str) -> Result<Name> {
    if subject.trim().is_empty() {
        return Err(CryptoError::Subject {
            subject: subject.into(),
            reason: "empty".into(),
        });
    }
    Name::from_str(subject).map_err(|e| CryptoError::Subject {
        subject: subject.into(),
        reason: e.to_string(),
    })
}

/// An end-entity signing certificate issued by its own key.
struct SelfSignedSigner {
    subject: Name,
}

impl BuilderProfile for SelfSignedSigner {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    #[allow(clippy::vec_init_then_push)]
    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        // Each extension is built against the ones before it, so a `vec![]` literal cannot be used.
        let mut exts: Vec<Extension> = Vec::new();
        exts.push(ski.to_extension(tbs.subject(), &exts)?);
        exts.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(ski.0.clone()),
                ..Default::default()
            }
            .to_extension(tbs.subject(), &exts)?,
        );
        exts.push(
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            }
            .to_extension(tbs.subject(), &exts)?,
        );
        exts.push(
            KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation)
                .to_extension(tbs.subject(), &exts)?,
        );
        Ok(exts)
    }
}

/// Issues a self-signed X.509 v3 signing certificate for `key`, valid from `not_before` for
/// `days` days.
///
/// keyUsage is digitalSignature + nonRepudiation, basicConstraints CA:false, with subject and
/// authority key identifiers; the serial is random and positive; signed with SHA-256.
pub fn self_signed(
    key: &dyn RsaSigner,
    subject: &str,
    not_before: DateTime<Utc>,
    days: u32,
) -> Result<Certificate> {
    if days == 0 {
        return Err(CryptoError::Validity(
            "validity must be at least one day".into(),
        ));
    }
    issue(
        key,
        subject,
        not_before,
        not_before + chrono::Duration::days(i64::from(days)),
    )
}

/// The longest clock-skew allowance [`self_signed_at`] accepts: more would no longer be a
/// clock that is a little behind.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::days(1);

/// Issues a self-signed signing certificate as of `now` (the caller's clock, not the wall
/// clock): valid for `days` days from `now`, with notBefore backdated by `skew`, as CAs do, so
/// that a receiver whose clock is a little behind does not reject the first messages signed
/// with it (strict receivers check the certificate at signingTime and at receipt).
pub fn self_signed_at(
    key: &dyn RsaSigner,
    subject: &str,
    now: DateTime<Utc>,
    skew: chrono::Duration,
    days: u32,
) -> Result<Certificate> {
    if days == 0 {
        return Err(CryptoError::Validity(
            "validity must be at least one day".into(),
        ));
    }
    if skew < chrono::Duration::zero() || skew > MAX_CLOCK_SKEW {
        return Err(CryptoError::Validity(format!(
            "clock-skew allowance of {} minutes is outside 0 .. {} minutes",
            skew.num_minutes(),
            MAX_CLOCK_SKEW.num_minutes()
        )));
    }
    issue(
        key,
        subject,
        now - skew,
        now + chrono::Duration::days(i64::from(days)),
    )
}

fn issue(
    key: &dyn RsaSigner,
    subject: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<Certificate> {
    let name = parse_subject(subject)?;
    let validity = Validity::new(to_time(not_before)?, to_time(not_after)?);
    let serial = SerialNumber::generate(&mut rand::rng());
    let spki = spki_of(key)?;
    let signer = Sha256Signer::new(key)?;
    let builder =
        CertificateBuilder::new(SelfSignedSigner { subject: name }, serial, validity, spki)
            .map_err(|e| CryptoError::Encoding(e.to_string()))?;
    let cert = builder
        .build::<_, rsa::pkcs1v15::Signature>(&signer)
        .map_err(|e| CryptoError::Encoding(e.to_string()))?;
    let der = cert.to_der()?;
    Certificate::from_der(&der)
}

fn spki_of(key: &dyn RsaSigner) -> Result<SubjectPublicKeyInfoOwned> {
    SubjectPublicKeyInfoOwned::from_der(&key.public_key_der()?).map_err(CryptoError::from)
}

/// A PKCS#10 certificate signing request for `key`, DER; the tenant administrator has a CA sign
/// it and imports the result with [`check_chain`].
pub fn certificate_request(key: &dyn RsaSigner, subject: &str) -> Result<Vec<u8>> {
    let name = parse_subject(subject)?;
    let signer = Sha256Signer::new(key)?;
    let builder = RequestBuilder::new(name).map_err(|e| CryptoError::Encoding(e.to_string()))?;
    let req = builder
        .build::<_, rsa::pkcs1v15::Signature>(&signer)
        .map_err(|e| CryptoError::Encoding(e.to_string()))?;
    Ok(req.to_der()?)
}

/// PEM text of a DER certificate request.
pub fn certificate_request_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE REQUEST", der)
}

/// The public key (DER `SubjectPublicKeyInfo`) of a PKCS#10 certificate request, PEM or DER:
/// what a chain uploaded for a key held elsewhere (an SAP Cloud Integration tenant) must carry.
pub fn certificate_request_public_key(request: &[u8]) -> Result<Vec<u8>> {
    use x509_cert::request::CertReq;
    let req = match std::str::from_utf8(request) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => CertReq::from_pem(text.trim()),
        _ => CertReq::from_der(request),
    }
    .map_err(|e| CryptoError::Encoding(format!("certificate request: {e}")))?;
    Ok(req.info.public_key.to_der()?)
}

/// Checks that `chain[0]` belongs to `key` and that each further certificate issued the one
/// before it (by name and signature).
pub fn check_chain(key: &dyn RsaSigner, chain: &[Certificate]) -> Result<()> {
    check_chain_for(&key.public_key_der()?, chain)
}

/// [`check_chain`] for a key known by its public half only (DER `SubjectPublicKeyInfo`).
pub fn check_chain_for(public_key: &[u8], chain: &[Certificate]) -> Result<()> {
    let Some(leaf) = chain.first() else {
        return Err(CryptoError::Chain {
            index: 0,
            reason: "no certificate given".into(),
        });
    };
    if leaf.public_key_der().ok().as_deref() != Some(public_key) {
        return Err(CryptoError::KeyMismatch {
            subject: leaf.subject(),
            fingerprint: leaf.fingerprint().to_string(),
        });
    }
    for (i, pair) in chain.windows(2).enumerate() {
        let (child, issuer) = (&pair[0], &pair[1]);
        if child.parsed().tbs_certificate().issuer() != issuer.parsed().tbs_certificate().subject()
        {
            return Err(CryptoError::Chain {
                index: i + 1,
                reason: format!(
                    "{} did not issue {} (issuer is {})",
                    issuer.subject(),
                    child.subject(),
                    child.issuer()
                ),
            });
        }
        crate::verify::verify_certificate_signature(child, issuer).map_err(|reason| {
            CryptoError::Chain {
                index: i + 1,
                reason,
            }
        })?;
    }
    Ok(())
}
