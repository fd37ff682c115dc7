//! CMS SignedData (RFC 5652) with one or several RSA signers over one payload.
//!
//! Built by hand from the `cms` crate's types rather than its builder: the builder panics on
//! duplicate SET members, always stamps the wall clock, and cannot omit signed attributes.

use chrono::{DateTime, Datelike, Utc};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier,
    SignerInfo, SignerInfos,
};
use const_oid::db::rfc5911::{
    ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME,
};
use der::Encode;
use der::asn1::{Any, GeneralizedTime, OctetString, SetOfVec, UtcTime};
use signature::{SignatureEncoding, Signer};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::{Attribute, AttributeValue};

use crate::{Certificate, CryptoError, DigestAlg, KeyPair, Result, RsaSigner};

/// One signer of a SignedData: one row of a signer step's Signer Parameters table, resolved.
#[derive(Debug, Clone, Copy)]
pub struct SignerSpec<'a> {
    /// The private key, wherever it is kept.
    pub key: &'a dyn RsaSigner,
    /// Its certificate first, then any issuers.
    pub chain: &'a [Certificate],
    /// Digest algorithm.
    pub digest: DigestAlg,
    /// Whether the chain goes into the message's certificate set.
    pub include_certs: bool,
    /// Whether a signingTime attribute is signed.
    pub include_signing_time: bool,
}

/// Options that apply to the whole SignedData.
#[derive(Debug, Clone, Copy)]
pub struct SignOptions {
    /// Leave the content out of the message (the receiver gets it separately).
    pub detached: bool,
    /// The time written into signingTime attributes; passed in so callers own the clock.
    pub signing_time: DateTime<Utc>,
}

/// Signs `content` with every signer and returns the DER `ContentInfo(SignedData)`.
///
/// SignerInfos are a DER SET and so come out sorted, not in the order given.
pub fn sign(content: &[u8], signers: &[SignerSpec<'_>], opts: &SignOptions) -> Result<Vec<u8>> {
    if signers.is_empty() {
        return Err(CryptoError::NoSigner);
    }
    let encap = EncapsulatedContentInfo {
        econtent_type: ID_DATA,
        econtent: if opts.detached {
            None
        } else {
            Some(Any::encode_from(&OctetString::new(content)?)?)
        },
    };

    let mut digest_algorithms = SetOfVec::<AlgorithmIdentifierOwned>::new();
    let mut certificates: Vec<CertificateChoices> = Vec::new();
    let mut signer_infos = SetOfVec::<SignerInfo>::new();
    let mut seen = Vec::new();

    for spec in signers {
        let Some(leaf) = spec.chain.first() else {
            return Err(CryptoError::Chain {
                index: 0,
                reason: "signer has no certificate".into(),
            });
        };
        if !spec.key.matches(leaf) {
            return Err(CryptoError::KeyMismatch {
                subject: leaf.subject(),
                fingerprint: leaf.fingerprint().to_string(),
            });
        }
        let identity = (leaf.fingerprint(), spec.digest);
        if seen.contains(&identity) {
            return Err(CryptoError::DuplicateSigner(leaf.fingerprint().to_string()));
        }
        seen.push(identity);

        let digest_alg = AlgorithmIdentifierOwned {
            oid: spec.digest.oid(),
            parameters: None,
        };
        if !digest_algorithms.iter().any(|d| d == &digest_alg) {
            digest_algorithms.insert(digest_alg.clone())?;
        }
        if spec.include_certs {
            for cert in spec.chain {
                let choice = CertificateChoices::Certificate(cert.parsed().clone());
                if !certificates.contains(&choice) {
                    certificates.push(choice);
                }
            }
        }

        let mut attrs = SignedAttributes::new();
        attrs.insert(attribute(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA)?)?)?;
        let message_digest = OctetString::new(spec.digest.digest(content))?;
        attrs.insert(attribute(
            ID_MESSAGE_DIGEST,
            Any::encode_from(&message_digest)?,
        )?)?;
        if spec.include_signing_time {
            attrs.insert(attribute(
                ID_SIGNING_TIME,
                signing_time(opts.signing_time)?,
            )?)?;
        }
        // The signature covers the attributes encoded as a SET OF (tag 0x31), not as the
        // [0] IMPLICIT field they travel in.
        let to_sign = attrs.to_der()?;
        let signature = spec.key.sign_pkcs1v15(spec.digest, &to_sign)?;

        let tbs = leaf.parsed().tbs_certificate();
        signer_infos.insert(SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer().clone(),
                serial_number: tbs.serial_number().clone(),
            }),
            digest_alg,
            signed_attrs: Some(attrs),
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: spec.digest.rsa_signature_oid(),
                parameters: Some(Any::null()),
            },
            signature: OctetString::new(signature)?,
            unsigned_attrs: None,
        })?;
    }

    let certificates = if certificates.is_empty() {
        None
    } else {
        Some(CertificateSet(SetOfVec::from_iter(certificates)?))
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms,
        encap_content_info: encap,
        certificates,
        crls: None,
        signer_infos: SignerInfos(signer_infos),
    };
    let info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    };
    Ok(info.to_der()?)
}

fn attribute(oid: const_oid::ObjectIdentifier, value: AttributeValue) -> Result<Attribute> {
    let mut values = SetOfVec::new();
    values.insert(value)?;
    Ok(Attribute { oid, values })
}

/// RFC 5652 §11.3: UTCTime for 1950–2049, GeneralizedTime otherwise.
fn signing_time(t: DateTime<Utc>) -> Result<Any> {
    let secs = u64::try_from(t.timestamp())
        .map_err(|_| CryptoError::Validity(format!("signing time {t} is before 1970")))?;
    let d = std::time::Duration::from_secs(secs);
    if t.year() < 2050 {
        Ok(Any::encode_from(&UtcTime::from_unix_duration(d)?)?)
    } else {
        Ok(Any::encode_from(&GeneralizedTime::from_unix_duration(d)?)?)
    }
}

pub(crate) fn rsa_sign(key: &KeyPair, digest: DigestAlg, msg: &[u8]) -> Result<Vec<u8>> {
    let k = key.rsa().clone();
    let sig = match digest {
        DigestAlg::Sha256 => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(k).try_sign(msg),
        DigestAlg::Sha384 => rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(k).try_sign(msg),
        DigestAlg::Sha512 => rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(k).try_sign(msg),
    }
    .map_err(|e| CryptoError::Rsa(e.to_string()))?;
    Ok(sig.to_vec())
}

/// Base64 (standard alphabet, no line breaks) of a DER message: the signer step's Base64 output.
pub fn to_base64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}
