//! Verification of CMS SignedData from any producer, signer by signer.
//!
//! The `cms` crate has no verifier. This one decodes the SignedData, matches each SignerInfo's
//! identifier to a certificate, checks the messageDigest attribute against the content and
//! verifies the RSA signature over the signed attributes exactly as they were sent.

use chrono::{DateTime, Utc};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME};
use der::asn1::{Any, ObjectIdentifier};
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};
use serde::Serialize;
use signature::Verifier;

use crate::{Certificate, CryptoError, DigestAlg, Fingerprint, Result};

/// The outcome for one SignerInfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum SignerStatus {
    /// The signature verifies under the certificate named in the report.
    Valid,
    /// No available certificate matches the signer identifier.
    NoCertificate,
    /// The messageDigest attribute does not match the content.
    DigestMismatch,
    /// The RSA signature does not verify.
    BadSignature,
    /// Algorithms or attributes this verifier does not accept.
    Unsupported(String),
    /// The SignerInfo is structurally wrong (missing or repeated attributes, …).
    Malformed(String),
}

/// What was found for one SignerInfo, in the order the message carries them.
#[derive(Debug, Clone, Serialize)]
pub struct SignerReport {
    /// Position in the message's SignerInfos.
    pub index: usize,
    /// Human-readable signer identifier (issuer and serial, or key identifier).
    pub signer_id: String,
    /// Fingerprint of the certificate the signer was checked with, if one matched.
    pub certificate: Option<Fingerprint>,
    /// Subject of that certificate.
    pub subject: Option<String>,
    /// Digest algorithm name, or its OID when unknown.
    pub digest: String,
    /// The signingTime attribute, when present.
    pub signing_time: Option<DateTime<Utc>>,
    /// notBefore of that certificate.
    pub not_before: Option<DateTime<Utc>>,
    /// notAfter of that certificate.
    pub not_after: Option<DateTime<Utc>>,
    /// The verdict.
    pub status: SignerStatus,
}

impl SignerReport {
    /// Whether this signer's signature verified.
    pub fn is_valid(&self) -> bool {
        self.status == SignerStatus::Valid
    }

    /// Why the certificate this signer verified under was not valid when it signed (its
    /// signingTime, if it carries one) or when the message was received — what strict receivers
    /// (Bouncy Castle's default verifier, Java-based systems, OpenSSL's chain check) refuse even
    /// when the signature is good. `None` when it was valid at both times.
    pub fn validity_problem(&self, received_at: DateTime<Utc>) -> Option<String> {
        let (Some(from), Some(until)) = (self.not_before, self.not_after) else {
            return None;
        };
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let moments = self
            .signing_time
            .map(|t| ("signingTime", t))
            .into_iter()
            .chain([("receipt", received_at)]);
        for (what, at) in moments {
            if at < from || at > until {
                return Some(format!(
                    "signer certificate {} is not valid at {what} {} (valid {} .. {})",
                    self.subject.as_deref().unwrap_or("?"),
                    fmt(at),
                    fmt(from),
                    fmt(until)
                ));
            }
        }
        None
    }
}

/// Everything a verification found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Whether the content travelled inside the message.
    pub attached: bool,
    /// The signed content (from the message, or the detached content given).
    #[serde(skip)]
    pub content: Vec<u8>,
    /// Certificates the message carried.
    #[serde(skip)]
    pub embedded_certificates: Vec<Certificate>,
    /// One report per SignerInfo.
    pub signers: Vec<SignerReport>,
}

/// Which certificates a signer may be checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// Certificates carried in the message, then the ones supplied.
    EmbeddedAndSupplied,
    /// Only the supplied ones: how a receiver checks against its trust store.
    SuppliedOnly,
}

/// Accepts DER, PEM (`PKCS7`, `CMS`) or Base64 and returns DER.
pub fn decode_input(bytes: &[u8]) -> Result<Vec<u8>> {
    use base64::Engine;
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CryptoError::MalformedCms("neither DER, PEM nor Base64".into()))?;
    let body: String = if let Some(start) = text.find("-----BEGIN") {
        let after = &text[start..];
        let header_end = after
            .find('\n')
            .ok_or_else(|| CryptoError::MalformedCms("PEM header has no line end".into()))?;
        let end = after
            .find("-----END")
            .ok_or_else(|| CryptoError::MalformedCms("PEM block has no END line".into()))?;
        if end < header_end {
            return Err(CryptoError::MalformedCms("PEM block is malformed".into()));
        }
        after[header_end..end].to_string()
    } else {
        text.to_string()
    };
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| CryptoError::MalformedCms(format!("not DER, and not valid Base64: {e}")))
}

/// Verifies every SignerInfo of a DER `ContentInfo(SignedData)`.
///
/// `detached` is the content for a message without eContent. An `Err` means the message
/// itself could not be read; per-signer failures are reported in [`Verification::signers`].
pub fn verify(
    der: &[u8],
    detached: Option<&[u8]>,
    certs: &[Certificate],
    source: CertSource,
) -> Result<Verification> {
    let info = ContentInfo::from_der(der).map_err(|e| CryptoError::MalformedCms(e.to_string()))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(CryptoError::MalformedCms(format!(
            "content type {} is not signed-data",
            info.content_type
        )));
    }
    let sd_der = info.content.to_der()?;
    let sd = SignedData::from_der(&sd_der).map_err(|e| CryptoError::MalformedCms(e.to_string()))?;

    let attached_content = match &sd.encap_content_info.econtent {
        None => None,
        Some(any) if any.tag() == Tag::OctetString => Some(any.value().to_vec()),
        Some(any) => {
            return Err(CryptoError::MalformedCms(format!(
                "eContent is a {} rather than an OCTET STRING",
                any.tag()
            )));
        }
    };
    let content = match (attached_content.as_ref(), detached) {
        (Some(a), Some(d)) if a.as_slice() != d => {
            return Err(CryptoError::Content(
                "the message carries its content and it differs from the content given".into(),
            ));
        }
        (Some(a), _) => a.clone(),
        (None, Some(d)) => d.to_vec(),
        (None, None) => {
            return Err(CryptoError::Content(
                "the message is detached: the signed content must be given".into(),
            ));
        }
    };

    let mut embedded = Vec::new();
    if let Some(set) = &sd.certificates {
        for choice in set.0.iter() {
            if let CertificateChoices::Certificate(c) = choice {
                embedded.push(Certificate::from_der(&c.to_der()?)?);
            }
        }
    }
    let candidates: Vec<&Certificate> = match source {
        CertSource::EmbeddedAndSupplied => embedded.iter().chain(certs.iter()).collect(),
        CertSource::SuppliedOnly => certs.iter().collect(),
    };

    let econtent_type = sd.encap_content_info.econtent_type;
    let signers = raw_signer_infos(&sd_der)?
        .iter()
        .enumerate()
        .map(|(index, raw)| check_signer(index, raw, &content, econtent_type, &candidates))
        .collect::<Result<Vec<_>>>()?;

    Ok(Verification {
        attached: attached_content.is_some(),
        content,
        embedded_certificates: embedded,
        signers,
    })
}

/// The SignerInfos of a SignedData as raw DER, in wire order (the decoded SET is re-sorted).
fn raw_signer_infos(sd_der: &[u8]) -> Result<Vec<Vec<u8>>> {
    let fields = children(sd_der)?;
    let last = fields
        .last()
        .ok_or_else(|| CryptoError::MalformedCms("empty SignedData".into()))?;
    if last.tag() != Tag::Set {
        return Err(CryptoError::MalformedCms("signerInfos is not a SET".into()));
    }
    children(&last.to_der()?)?
        .iter()
        .map(|a| a.to_der().map_err(CryptoError::from))
        .collect()
}

/// The elements inside a constructed TLV.
fn children(der: &[u8]) -> Result<Vec<Any>> {
    let outer = Any::from_der(der).map_err(|e| CryptoError::MalformedCms(e.to_string()))?;
    let mut reader =
        SliceReader::new(outer.value()).map_err(|e| CryptoError::MalformedCms(e.to_string()))?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(Any::decode(&mut reader).map_err(|e| CryptoError::MalformedCms(e.to_string()))?);
    }
    Ok(out)
}

fn describe_sid(sid: &SignerIdentifier) -> String {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(iasn) => format!(
            "issuer \"{}\" serial {}",
            iasn.issuer,
            hex::encode(iasn.serial_number.as_bytes())
        ),
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            format!("key id {}", hex::encode(ski.0.as_bytes()))
        }
    }
}

fn sid_matches(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(iasn) => {
            let tbs = cert.parsed().tbs_certificate();
            tbs.issuer() == &iasn.issuer && tbs.serial_number() == &iasn.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            cert.subject_key_id().as_deref() == Some(ski.0.as_bytes())
        }
    }
}

fn check_signer(
    index: usize,
    raw: &[u8],
    content: &[u8],
    econtent_type: ObjectIdentifier,
    candidates: &[&Certificate],
) -> Result<SignerReport> {
    let si = SignerInfo::from_der(raw).map_err(|e| CryptoError::MalformedCms(e.to_string()))?;
    let digest = DigestAlg::from_oid(&si.digest_alg.oid);
    let mut report = SignerReport {
        index,
        signer_id: describe_sid(&si.sid),
        certificate: None,
        subject: None,
        digest: digest.map_or_else(|| si.digest_alg.oid.to_string(), |d| d.name().to_string()),
        signing_time: None,
        not_before: None,
        not_after: None,
        status: SignerStatus::Valid,
    };
    let matching: Vec<&Certificate> = candidates
        .iter()
        .copied()
        .filter(|c| sid_matches(&si.sid, c))
        .collect();
    let Some(digest) = digest else {
        report.status =
            SignerStatus::Unsupported(format!("digest algorithm {}", si.digest_alg.oid));
        return Ok(report);
    };
    match DigestAlg::from_signature_oid(&si.signature_algorithm.oid) {
        Err(e) => {
            report.status = SignerStatus::Unsupported(e);
            return Ok(report);
        }
        Ok(Some(implied)) if implied != digest => {
            report.status = SignerStatus::Malformed(format!(
                "signature algorithm uses {implied} but the digest algorithm is {digest}"
            ));
            return Ok(report);
        }
        Ok(_) => {}
    }

    let signed_bytes: Vec<u8> = match &si.signed_attrs {
        None => content.to_vec(),
        Some(attrs) => {
            let expected = digest.digest(content);
            match check_attributes(attrs, &expected, econtent_type) {
                Ok(time) => report.signing_time = time,
                Err(status) => {
                    report.status = status;
                    if let Some(c) = matching.first() {
                        report.certificate = Some(c.fingerprint());
                        report.subject = Some(c.subject());
                    }
                    return Ok(report);
                }
            }
            raw_signed_attrs_as_set(raw)?
        }
    };

    if matching.is_empty() {
        report.status = SignerStatus::NoCertificate;
        return Ok(report);
    }
    // Several certificates can share issuer and serial (a re-issued certificate, or a forged
    // one in the message); the signer is valid if any of them verifies.
    let mut status = SignerStatus::BadSignature;
    let mut used = matching[0];
    for cert in &matching {
        match rsa_verify(cert, digest, &signed_bytes, si.signature.as_bytes()) {
            Ok(true) => {
                status = SignerStatus::Valid;
                used = cert;
                break;
            }
            Ok(false) => {}
            Err(reason) => status = SignerStatus::Unsupported(reason),
        }
    }
    report.certificate = Some(used.fingerprint());
    report.subject = Some(used.subject());
    report.not_before = Some(used.not_before());
    report.not_after = Some(used.not_after());
    report.status = status;
    Ok(report)
}

/// Checks contentType and messageDigest; returns the signingTime if present.
fn check_attributes(
    attrs: &cms::signed_data::SignedAttributes,
    expected_digest: &[u8],
    econtent_type: ObjectIdentifier,
) -> std::result::Result<Option<DateTime<Utc>>, SignerStatus> {
    let single =
        |oid: ObjectIdentifier, name: &str| -> std::result::Result<Option<Any>, SignerStatus> {
            let found: Vec<_> = attrs.iter().filter(|a| a.oid == oid).collect();
            match found.as_slice() {
                [] => Ok(None),
                [a] if a.values.len() == 1 => Ok(a.values.get(0).cloned()),
                _ => Err(SignerStatus::Malformed(format!(
                    "{name} attribute must appear once with one value"
                ))),
            }
        };
    let digest = single(ID_MESSAGE_DIGEST, "messageDigest")?
        .ok_or_else(|| SignerStatus::Malformed("signed attributes lack messageDigest".into()))?;
    let digest = digest
        .decode_as::<der::asn1::OctetString>()
        .map_err(|e| SignerStatus::Malformed(format!("messageDigest: {e}")))?;
    let ctype = single(ID_CONTENT_TYPE, "contentType")?
        .ok_or_else(|| SignerStatus::Malformed("signed attributes lack contentType".into()))?;
    let ctype = ctype
        .decode_as::<ObjectIdentifier>()
        .map_err(|e| SignerStatus::Malformed(format!("contentType: {e}")))?;
    if ctype != econtent_type {
        return Err(SignerStatus::Malformed(format!(
            "contentType attribute {ctype} differs from eContentType {econtent_type}"
        )));
    }
    if digest.as_bytes() != expected_digest {
        return Err(SignerStatus::DigestMismatch);
    }
    let time = match single(ID_SIGNING_TIME, "signingTime")? {
        None => None,
        Some(any) => {
            let t = x509_cert::time::Time::from_der(
                &any.to_der()
                    .map_err(|e| SignerStatus::Malformed(format!("signingTime: {e}")))?,
            )
            .map_err(|e| SignerStatus::Malformed(format!("signingTime: {e}")))?;
            let d = t.to_unix_duration();
            DateTime::<Utc>::from_timestamp(d.as_secs() as i64, 0)
        }
    };
    Ok(time)
}

/// The signed attributes exactly as sent, re-tagged from `[0] IMPLICIT` to `SET OF` (0x31):
/// re-encoding the decoded set would sort it and break signatures of producers that did not.
fn raw_signed_attrs_as_set(signer_info_der: &[u8]) -> Result<Vec<u8>> {
    let fields = children(signer_info_der)?;
    // version, sid, digestAlgorithm, then [0] signedAttrs.
    let attrs = fields
        .get(3)
        .filter(|a| {
            a.tag()
                == Tag::ContextSpecific {
                    constructed: true,
                    number: der::TagNumber(0),
                }
        })
        .ok_or_else(|| CryptoError::MalformedCms("signedAttrs not found where expected".into()))?;
    let mut bytes = attrs.to_der()?;
    if let Some(first) = bytes.first_mut() {
        *first = 0x31;
    }
    Ok(bytes)
}

fn rsa_verify(
    cert: &Certificate,
    digest: DigestAlg,
    msg: &[u8],
    sig: &[u8],
) -> std::result::Result<bool, String> {
    let key = cert.rsa_public_key().map_err(|e| e.to_string())?;
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
        return Ok(false);
    };
    let ok = match digest {
        DigestAlg::Sha256 => {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(msg, &sig)
        }
        DigestAlg::Sha384 => {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key).verify(msg, &sig)
        }
        DigestAlg::Sha512 => {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key).verify(msg, &sig)
        }
    };
    Ok(ok.is_ok())
}

/// Verifies that `issuer` signed `child` (used for CA-signed chains).
pub(crate) fn verify_certificate_signature(
    child: &Certificate,
    issuer: &Certificate,
) -> std::result::Result<(), String> {
    let parsed = child.parsed();
    let tbs = parsed
        .tbs_certificate()
        .to_der()
        .map_err(|e| e.to_string())?;
    let alg = &parsed.signature_algorithm().oid;
    let digest = DigestAlg::from_signature_oid(alg)?
        .ok_or_else(|| "certificate signature algorithm names no digest".to_string())?;
    let sig = parsed
        .signature()
        .as_bytes()
        .ok_or_else(|| "certificate signature has unused bits".to_string())?;
    if rsa_verify(issuer, digest, &tbs, sig)? {
        Ok(())
    } else {
        Err(format!(
            "signature of {} does not verify under {}",
            child.subject(),
            issuer.subject()
        ))
    }
}
