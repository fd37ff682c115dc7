//! AS2 (RFC 4130) test messages and the signed MDNs that answer them.
//!
//! rekey sends a receiver's AS2 endpoint a small S/MIME `multipart/signed` message, signed
//! exactly as the signer will sign after a step, and reads the receiver's signed synchronous
//! MDN (RFC 3798 / RFC 8098) to learn whether that receiver's system verified it. An MDN says
//! something only when its own signature verifies under the receiver's MDN-signing certificate
//! and its `Received-Content-MIC` equals the MIC of what was sent; anything else confirms
//! nothing. Like the rest of this crate: bytes in, verdicts out, no I/O, no panics.

use base64::Engine;

use crate::verify::{CertSource, verify};
use crate::{Certificate, CryptoError, DigestAlg, Result, SignOptions, SignerSpec, sign};

/// A signed AS2 message, ready to be POSTed.
#[derive(Debug, Clone)]
pub struct As2Message {
    /// The HTTP `Content-Type` (`multipart/signed; protocol=...; micalg=...; boundary=...`).
    pub content_type: String,
    /// The HTTP body: the two MIME parts with their boundaries, CRLF line ends.
    pub body: Vec<u8>,
    /// The MIME entity that was signed (headers and content of the first part): the MIC is
    /// its digest, so it is kept to check the MIC the receiver reports, whatever the algorithm.
    pub signed_entity: Vec<u8>,
}

impl As2Message {
    /// The MIC of what was sent under `alg`: Base64 of the digest of the signed entity.
    pub fn mic(&self, alg: DigestAlg) -> String {
        base64::engine::general_purpose::STANDARD.encode(alg.digest(&self.signed_entity))
    }
}

/// The name of a digest in AS2 headers (`micalg`, `signed-receipt-micalg`): RFC 5751 spelling.
pub fn micalg_name(alg: DigestAlg) -> &'static str {
    match alg {
        DigestAlg::Sha256 => "sha-256",
        DigestAlg::Sha384 => "sha-384",
        DigestAlg::Sha512 => "sha-512",
    }
}

/// Reads a MIC algorithm as AS2 peers write it: `sha-256`, `sha256`, `SHA256`, ….
pub fn parse_micalg(name: &str) -> Option<DigestAlg> {
    let n: String = name
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    DigestAlg::ALL.into_iter().find(|d| d.name() == n)
}

/// Builds the AS2 message: `payload` as a `text/plain` binary part named `file_name`, signed
/// (detached) by every signer. The boundary is derived from the content and the time, so the
/// same inputs give the same bytes.
pub fn build_message(
    payload: &[u8],
    file_name: &str,
    signers: &[SignerSpec<'_>],
    opts: &SignOptions,
) -> Result<As2Message> {
    if file_name.is_empty()
        || !file_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(CryptoError::Content(format!(
            "AS2 file name {file_name:?} must be letters, digits, '.', '-' or '_'"
        )));
    }
    let first = signers.first().ok_or(CryptoError::NoSigner)?;
    // Content-Transfer-Encoding binary: receivers (pyas2lib among them) then hash the headers
    // and the bytes as they are, so both sides compute the same MIC without re-encoding.
    let mut entity = format!(
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\
         Content-Disposition: attachment; filename=\"{file_name}\"\r\n\r\n"
    )
    .into_bytes();
    entity.extend_from_slice(payload);
    let signature = sign(
        &entity,
        signers,
        &SignOptions {
            detached: true,
            ..*opts
        },
    )?;
    let stamp = DigestAlg::Sha256.digest(&[&entity[..], &signature[..]].concat());
    let boundary = format!(
        "----=_rekey_{}",
        hex::encode(stamp.get(..12).unwrap_or(&[]))
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&signature);
    let mut body = Vec::with_capacity(entity.len() + b64.len() + 512);
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(&entity);
    body.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    body.extend_from_slice(
        b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"; smime-type=signed-data\r\n\
          Content-Transfer-Encoding: base64\r\n\
          Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n",
    );
    for line in b64.as_bytes().chunks(76) {
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(As2Message {
        content_type: format!(
            "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg={}; boundary=\"{boundary}\"",
            micalg_name(first.digest)
        ),
        body,
        signed_entity: entity,
    })
}

/// The disposition an MDN reports (RFC 8098 §3.2.6), split into what rekey acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// `processed`: the receiver's system accepted the message (its signature verified).
    Processed,
    /// `processed/warning: ...`: accepted, with a warning.
    Warning(String),
    /// `processed/error: ...` or `failed/...`: refused; the modifier as the receiver wrote it
    /// (`authentication-failed`, `integrity-check-failed`, `decryption-failed`, …).
    Refused(String),
}

/// What a verified MDN said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mdn {
    /// The disposition.
    pub disposition: Disposition,
    /// The `Disposition:` field's value exactly as the receiver wrote it.
    pub disposition_text: String,
    /// `Original-Message-ID`, without angle brackets.
    pub original_message_id: Option<String>,
    /// `Received-Content-MIC` as written (`<base64>, <alg>`).
    pub received_mic: Option<String>,
    /// The human-readable first part of the report.
    pub text: String,
    /// The digest the MDN's signer used.
    pub signed_with: String,
}

impl Mdn {
    /// Whether the receiver's system accepted the message, the MIC having matched.
    pub fn accepted(&self) -> bool {
        matches!(
            self.disposition,
            Disposition::Processed | Disposition::Warning(_)
        )
    }
}

/// Why an answer to a test message confirms nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdnError {
    /// The answer is not a signed MDN.
    #[error("the answer is not a signed MDN: {0}")]
    NotSigned(String),
    /// The MDN is structurally unreadable.
    #[error("the MDN cannot be read: {0}")]
    Malformed(String),
    /// The MDN's signature does not verify under the receiver's MDN-signing certificate.
    #[error(
        "the MDN's signature does not verify under the receiver's certificate {certificate}: {reason}"
    )]
    Signature {
        /// Subject and fingerprint of the certificate tried.
        certificate: String,
        /// What the verifier found.
        reason: String,
    },
    /// The MDN answers another message.
    #[error("the MDN answers message {found:?}, not {sent}")]
    OtherMessage {
        /// The Original-Message-ID the MDN carries.
        found: Option<String>,
        /// The Message-ID sent.
        sent: String,
    },
    /// The receiver reports a MIC other than the one of what was sent.
    #[error(
        "the MDN's Received-Content-MIC {found:?} differs from the MIC of what was sent ({expected})"
    )]
    MicMismatch {
        /// What the MDN says.
        found: Option<String>,
        /// What rekey computed.
        expected: String,
    },
}

/// Verifies a synchronous MDN received in answer to `sent` (whose AS2 `Message-ID` was
/// `message_id`): its signature against `receiver_cert` only (never a certificate it carries),
/// the original message id, and — when the receiver says `processed` — its MIC against what was
/// sent. A refusal (`processed/error: authentication-failed`, …) is a verified answer, returned
/// as `Ok` with [`Disposition::Refused`]; MIC rules do not apply to it (a receiver that could
/// not verify the signature reports no MIC).
pub fn verify_mdn(
    content_type: &str,
    body: &[u8],
    receiver_cert: &Certificate,
    sent: &As2Message,
    message_id: &str,
) -> std::result::Result<Mdn, MdnError> {
    let (mime, params) = parse_content_type(content_type);
    if mime != "multipart/signed" {
        return Err(MdnError::NotSigned(format!("Content-Type is {mime}")));
    }
    let boundary = param(&params, "boundary")
        .ok_or_else(|| MdnError::Malformed("multipart/signed without a boundary".into()))?;
    let parts = split_multipart(body, boundary).map_err(MdnError::Malformed)?;
    let [report, sig_part] = parts.as_slice() else {
        return Err(MdnError::Malformed(format!(
            "multipart/signed has {} parts, not 2",
            parts.len()
        )));
    };
    let (sig_headers, sig_body) = split_entity(sig_part).map_err(MdnError::Malformed)?;
    let (sig_type, _) = parse_content_type(header(&sig_headers, "content-type").unwrap_or(""));
    if sig_type != "application/pkcs7-signature" && sig_type != "application/x-pkcs7-signature" {
        return Err(MdnError::NotSigned(format!("second part is {sig_type}")));
    }
    let signature = decode_body(&sig_headers, sig_body).map_err(MdnError::Malformed)?;
    let certificate = format!(
        "{} (SHA-256 {})",
        receiver_cert.subject(),
        receiver_cert.fingerprint()
    );
    let verification = verify(
        &signature,
        Some(report),
        std::slice::from_ref(receiver_cert),
        CertSource::SuppliedOnly,
    )
    .map_err(|e| MdnError::Signature {
        certificate: certificate.clone(),
        reason: e.to_string(),
    })?;
    let signed_with = match verification.signers.as_slice() {
        [one] if one.is_valid() => one.digest.clone(),
        [one] => {
            return Err(MdnError::Signature {
                certificate,
                reason: format!("{} ({:?})", one.signer_id, one.status),
            });
        }
        more => {
            return Err(MdnError::Signature {
                certificate,
                reason: format!("{} signers where one was expected", more.len()),
            });
        }
    };

    // The signed part: multipart/report with a text part and the disposition notification.
    let (report_headers, report_body) = split_entity(report).map_err(MdnError::Malformed)?;
    let (report_type, report_params) =
        parse_content_type(header(&report_headers, "content-type").unwrap_or(""));
    if report_type != "multipart/report" {
        return Err(MdnError::Malformed(format!(
            "signed part is {report_type}, not multipart/report"
        )));
    }
    let inner = param(&report_params, "boundary")
        .ok_or_else(|| MdnError::Malformed("multipart/report without a boundary".into()))?;
    let mut text = String::new();
    let mut fields = None;
    for part in split_multipart(report_body, inner).map_err(MdnError::Malformed)? {
        let (h, b) = split_entity(part).map_err(MdnError::Malformed)?;
        let (t, _) = parse_content_type(header(&h, "content-type").unwrap_or("text/plain"));
        let decoded = decode_body(&h, b).map_err(MdnError::Malformed)?;
        if t == "message/disposition-notification" {
            fields = Some(parse_headers(&decoded).map_err(MdnError::Malformed)?);
        } else if text.is_empty() && t.starts_with("text/") {
            text = String::from_utf8_lossy(&decoded).trim().to_string();
        }
    }
    let fields = fields
        .ok_or_else(|| MdnError::Malformed("no message/disposition-notification part".into()))?;
    let disposition_text = header(&fields, "disposition")
        .ok_or_else(|| MdnError::Malformed("no Disposition field".into()))?
        .to_string();
    let original_message_id = header(&fields, "original-message-id").map(|v| {
        v.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    });
    if original_message_id.as_deref() != Some(message_id) {
        return Err(MdnError::OtherMessage {
            found: original_message_id,
            sent: message_id.to_string(),
        });
    }
    let received_mic = header(&fields, "received-content-mic").map(|v| v.trim().to_string());
    let disposition = parse_disposition(&disposition_text);
    if matches!(
        disposition,
        Disposition::Processed | Disposition::Warning(_)
    ) {
        let (value, alg) = received_mic
            .as_deref()
            .and_then(|m| m.split_once(','))
            .map(|(v, a)| (v.trim(), parse_micalg(a)))
            .unwrap_or(("", None));
        let expected = alg.map(|a| sent.mic(a));
        if expected.as_deref() != Some(value) {
            return Err(MdnError::MicMismatch {
                found: received_mic,
                expected: expected.unwrap_or_else(|| {
                    format!(
                        "{}, {}",
                        sent.mic(DigestAlg::Sha256),
                        micalg_name(DigestAlg::Sha256)
                    )
                }),
            });
        }
    }
    Ok(Mdn {
        disposition,
        disposition_text,
        original_message_id,
        received_mic,
        text,
        signed_with,
    })
}

/// `automatic-action/MDN-sent-automatically; processed/error: authentication-failed` →
/// [`Disposition::Refused`] with `processed/error: authentication-failed`.
fn parse_disposition(value: &str) -> Disposition {
    let outcome = value.rsplit(';').next().unwrap_or("").trim();
    let (kind, modifier) = match outcome.split_once(':') {
        Some((k, m)) => (k.trim().to_ascii_lowercase(), m.trim()),
        None => (outcome.to_ascii_lowercase(), ""),
    };
    match kind.as_str() {
        "processed" if modifier.is_empty() => Disposition::Processed,
        "processed/warning" => Disposition::Warning(outcome.to_string()),
        _ => Disposition::Refused(outcome.to_string()),
    }
}

/// Splits `type/subtype; a=b; c="d"` into the lower-cased type and its parameters.
fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = split_params(value).into_iter();
    let mime = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (mime, params)
}

/// Splits on `;` outside quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            ';' if !quoted => out.push(std::mem::take(&mut current)),
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    out.push(current);
    out
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The body parts of a multipart body, each exactly as it travelled (RFC 2046 §5.1.1: the line
/// end before a delimiter belongs to the delimiter).
fn split_multipart<'a>(
    body: &'a [u8],
    boundary: &str,
) -> std::result::Result<Vec<&'a [u8]>, String> {
    if boundary.is_empty() {
        return Err("empty boundary".into());
    }
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // Positions of delimiter lines: at the start of the body or after a line end.
    let mut marks = Vec::new();
    let mut i = 0;
    while let Some(found) = find(body.get(i..).unwrap_or(&[]), delimiter) {
        let at = i + found;
        if at == 0 || body.get(at - 1) == Some(&b'\n') {
            let after = at + delimiter.len();
            let closing = body.get(after..after + 2) == Some(b"--");
            marks.push((at, after, closing));
            if closing {
                break;
            }
        }
        i = at + delimiter.len();
    }
    let mut parts = Vec::new();
    for pair in marks.windows(2) {
        let [(_, start_after, closing), (next_at, _, _)] = pair else {
            continue;
        };
        if *closing {
            break;
        }
        // Skip the rest of the delimiter line.
        let rest = body.get(*start_after..*next_at).unwrap_or(&[]);
        let line_end = find(rest, b"\n").map(|p| p + 1).unwrap_or(rest.len());
        let mut part = rest.get(line_end..).unwrap_or(&[]);
        // Drop the line end that belongs to the next delimiter.
        part = part.strip_suffix(b"\n").unwrap_or(part);
        part = part.strip_suffix(b"\r").unwrap_or(part);
        parts.push(part);
    }
    if !marks.last().is_some_and(|m| m.2) {
        return Err(format!(
            "multipart body has no closing boundary --{boundary}--"
        ));
    }
    Ok(parts)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a MIME entity into its parsed headers and its body.
/// Header fields, in order, names as written.
type Fields = Vec<(String, String)>;

fn split_entity(entity: &[u8]) -> std::result::Result<(Fields, &[u8]), String> {
    let (head, body) = if let Some(p) = find(entity, b"\r\n\r\n") {
        (&entity[..p], entity.get(p + 4..).unwrap_or(&[]))
    } else if let Some(p) = find(entity, b"\n\n") {
        (&entity[..p], entity.get(p + 2..).unwrap_or(&[]))
    } else if entity.starts_with(b"\r\n") || entity.starts_with(b"\n") {
        (&entity[..0], entity.get(1..).unwrap_or(&[]))
    } else {
        (entity, &entity[..0])
    };
    Ok((parse_headers(head)?, body))
}

/// Header fields (unfolded), in order.
fn parse_headers(head: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(head).map_err(|_| "header fields are not UTF-8".to_string())?;
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => return Err("header block starts with a continuation line".into()),
            }
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {line:?} has no ':'"))?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

fn decode_body(headers: &[(String, String)], body: &[u8]) -> std::result::Result<Vec<u8>, String> {
    match header(headers, "content-transfer-encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("base64") => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| format!("Base64 body: {e}"))
        }
        Some("quoted-printable") => Err("quoted-printable bodies are not supported".into()),
        _ => Ok(body.to_vec()),
    }
}

/// What a receiver's AS2 system would need to answer a test message: the parsed parts of a
/// signed AS2 message, for tests and for a reference receiver.
pub fn open_message(content_type: &str, body: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let (mime, params) = parse_content_type(content_type);
    if mime != "multipart/signed" {
        return Err(CryptoError::Content(format!("Content-Type is {mime}")));
    }
    let boundary =
        param(&params, "boundary").ok_or_else(|| CryptoError::Content("no boundary".into()))?;
    let parts = split_multipart(body, boundary).map_err(CryptoError::Content)?;
    let [entity, sig] = parts.as_slice() else {
        return Err(CryptoError::Content(format!(
            "{} parts, not 2",
            parts.len()
        )));
    };
    let (h, b) = split_entity(sig).map_err(CryptoError::Content)?;
    let signature = decode_body(&h, b).map_err(CryptoError::Content)?;
    Ok((entity.to_vec(), signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyBits, KeyPair, self_signed};
    use chrono::{Duration, TimeZone, Utc};

    fn now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn party(cn: &str) -> (KeyPair, Certificate) {
        let key = KeyPair::generate(KeyBits::B2048).expect("key");
        let cert =
            self_signed(&key, &format!("CN={cn}"), now() - Duration::days(1), 365).expect("cert");
        (key, cert)
    }

    fn spec<'a>(key: &'a KeyPair, chain: &'a [Certificate]) -> SignerSpec<'a> {
        SignerSpec {
            key,
            chain,
            digest: DigestAlg::Sha256,
            include_certs: true,
            include_signing_time: true,
        }
    }

    fn opts() -> SignOptions {
        SignOptions {
            detached: true,
            signing_time: now(),
        }
    }

    /// Builds the signed MDN a receiver would answer, the way an AS2 server lays it out.
    fn mdn(
        key: &KeyPair,
        cert: &Certificate,
        message_id: &str,
        disposition: &str,
        mic: Option<&str>,
    ) -> (String, Vec<u8>) {
        let mut fields = format!(
            "Reporting-UA: test\r\nOriginal-Recipient: rfc822; them\r\n\
             Final-Recipient: rfc822; them\r\nOriginal-Message-ID: <{message_id}>\r\n\
             Disposition: automatic-action/MDN-sent-automatically; {disposition}\r\n"
        );
        if let Some(m) = mic {
            fields.push_str(&format!("Received-content-MIC: {m}\r\n"));
        }
        let report = format!(
            "Content-Type: multipart/report; report-type=disposition-notification;\r\n \
             boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\n\
             The message was received.\r\n--inner\r\n\
             Content-Type: message/disposition-notification\r\n\r\n{fields}\r\n--inner--\r\n"
        );
        let chain = [cert.clone()];
        let sig = sign(report.as_bytes(), &[spec(key, &chain)], &opts()).expect("sign");
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig);
        let body = format!(
            "--outer\r\n{report}\r\n--outer\r\nContent-Type: application/pkcs7-signature; \
             name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--outer--\r\n"
        );
        (
            "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; \
             boundary=\"outer\""
                .into(),
            body.into_bytes(),
        )
    }

    #[test]
    fn message_signature_verifies_over_the_first_part() {
        let (key, cert) = party("sender");
        let chain = [cert.clone()];
        let msg =
            build_message(b"hello\r\n", "test.txt", &[spec(&key, &chain)], &opts()).expect("build");
        assert!(msg.content_type.starts_with("multipart/signed;"));
        let (entity, sig) = open_message(&msg.content_type, &msg.body).expect("open");
        assert_eq!(entity, msg.signed_entity);
        let v = verify(&sig, Some(&entity), &[cert], CertSource::SuppliedOnly).expect("verify");
        assert!(v.signers.iter().all(|s| s.is_valid()));
    }

    #[test]
    fn processed_mdn_with_the_right_mic_is_accepted() {
        let (key, cert) = party("sender");
        let (rkey, rcert) = party("receiver");
        let chain = [cert];
        let msg = build_message(b"x", "t.txt", &[spec(&key, &chain)], &opts()).expect("build");
        let mic = format!("{}, sha256", msg.mic(DigestAlg::Sha256));
        let (ct, body) = mdn(&rkey, &rcert, "m1@rekey", "processed", Some(&mic));
        let answer = verify_mdn(&ct, &body, &rcert, &msg, "m1@rekey").expect("verified");
        assert_eq!(answer.disposition, Disposition::Processed);
        assert!(answer.accepted());
        assert_eq!(answer.text, "The message was received.");
    }

    #[test]
    fn refusal_is_reported_as_the_receiver_wrote_it() {
        let (key, cert) = party("sender");
        let (rkey, rcert) = party("receiver");
        let chain = [cert];
        let msg = build_message(b"x", "t.txt", &[spec(&key, &chain)], &opts()).expect("build");
        let (ct, body) = mdn(
            &rkey,
            &rcert,
            "m1@rekey",
            "processed/Error: authentication-failed",
            None,
        );
        let answer = verify_mdn(&ct, &body, &rcert, &msg, "m1@rekey").expect("verified");
        assert_eq!(
            answer.disposition,
            Disposition::Refused("processed/Error: authentication-failed".into())
        );
        assert!(!answer.accepted());
    }

    #[test]
    fn mdn_signed_by_another_key_confirms_nothing() {
        let (key, cert) = party("sender");
        let (_, rcert) = party("receiver");
        let (okey, ocert) = party("receiver"); // same name, other key
        let chain = [cert];
        let msg = build_message(b"x", "t.txt", &[spec(&key, &chain)], &opts()).expect("build");
        let mic = format!("{}, sha-256", msg.mic(DigestAlg::Sha256));
        let (ct, body) = mdn(&okey, &ocert, "m1@rekey", "processed", Some(&mic));
        let err = verify_mdn(&ct, &body, &rcert, &msg, "m1@rekey").expect_err("refused");
        assert!(matches!(err, MdnError::Signature { .. }), "{err}");
    }

    #[test]
    fn mic_mismatch_confirms_nothing() {
        let (key, cert) = party("sender");
        let (rkey, rcert) = party("receiver");
        let chain = [cert];
        let msg = build_message(b"x", "t.txt", &[spec(&key, &chain)], &opts()).expect("build");
        let other = build_message(b"y", "t.txt", &[spec(&key, &chain)], &opts()).expect("b");
        let mic = format!("{}, sha256", other.mic(DigestAlg::Sha256));
        let (ct, body) = mdn(&rkey, &rcert, "m1@rekey", "processed", Some(&mic));
        let err = verify_mdn(&ct, &body, &rcert, &msg, "m1@rekey").expect_err("refused");
        assert!(matches!(err, MdnError::MicMismatch { .. }), "{err}");
        // No MIC at all on a `processed` answer is no confirmation either.
        let (ct, body) = mdn(&rkey, &rcert, "m1@rekey", "processed", None);
        let err = verify_mdn(&ct, &body, &rcert, &msg, "m1@rekey").expect_err("refused");
        assert!(matches!(err, MdnError::MicMismatch { .. }), "{err}");
    }

    #[test]
    fn tampered_report_or_other_message_confirms_nothing() {
        let (key, cert) = party("sender");
        let (rkey, rcert) = party("receiver");
        let chain = [cert];
        let msg = build_message(b"x", "t.txt", &[spec(&key, &chain)], &opts()).expect("build");
        let (ct, body) = mdn(&rkey, &rcert, "m1@rekey", "processed/Error: x", None);
        let tampered = String::from_utf8(body.clone())
            .expect("ascii")
            .replace("processed/Error: x", "processed         ")
            .into_bytes();
        let err = verify_mdn(&ct, &tampered, &rcert, &msg, "m1@rekey").expect_err("refused");
        assert!(matches!(err, MdnError::Signature { .. }), "{err}");
        let err = verify_mdn(&ct, &body, &rcert, &msg, "m2@rekey").expect_err("refused");
        assert!(matches!(err, MdnError::OtherMessage { .. }), "{err}");
        let err = verify_mdn("text/plain", b"ok", &rcert, &msg, "m1@rekey").expect_err("refused");
        assert!(matches!(err, MdnError::NotSigned(_)), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        let (key, cert) = party("sender");
        let chain = [cert.clone()];
        let msg = build_message(b"x", "t.txt", &[spec(&key, &chain)], &opts()).expect("build");
        for body in [
            &b""[..],
            b"--b",
            b"--b\r\n",
            b"--b\r\n\r\n--b--",
            b"--b\r\nX\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!\r\n--b--",
        ] {
            let r = verify_mdn("multipart/signed; boundary=b", body, &cert, &msg, "m");
            assert!(r.is_err());
        }
        assert!(parse_micalg("SHA-384") == Some(DigestAlg::Sha384));
    }
}
