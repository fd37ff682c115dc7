//! AS2 test messages (RFC 4130): the receiver's own system says whether it verifies what the
//! signer will send.
//!
//! [`send_test`] POSTs a test message built by `rekey_crypto::as2` to the receiver's AS2
//! endpoint, asks for a signed synchronous MDN and reads the answer into an [`As2Answer`]:
//! accepted (`processed`, the MDN's signature and MIC verified), refused (the receiver's
//! system answered, signed, that it did not accept the message — its words kept verbatim), or
//! no usable answer ([`As2Problem`]: endpoint down, timeout, HTTP error, an MDN that does not
//! verify). Only an accepted answer may confirm a step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rekey_crypto::as2::{As2Message, Disposition, Mdn, MdnError, micalg_name};
use rekey_crypto::{Certificate, DigestAlg};
use rekey_model::As2Id;
use serde::Serialize;
use thiserror::Error;

use crate::http::{self, HttpError};

/// How long a test message may take, connect to last byte of the MDN, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// First wait after an unsuccessful check of a step; doubled per attempt up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: chrono::Duration = chrono::Duration::minutes(1);
/// The longest wait between two checks of one step.
pub const MAX_BACKOFF: chrono::Duration = chrono::Duration::hours(1);

/// The wait after the `attempts`-th unsuccessful check.
pub fn backoff(attempts: i64) -> chrono::Duration {
    let shift = u32::try_from(attempts.clamp(1, 16) - 1).unwrap_or(0);
    (FIRST_BACKOFF * 2_i32.pow(shift)).min(MAX_BACKOFF)
}

/// The audit log's name for the receiver's system: who completed a step it confirmed.
pub fn system_actor(receiver: &str, endpoint: &As2Endpoint) -> String {
    format!("AS2 system of receiver {receiver} ({})", endpoint.as2_to)
}

/// A receiver's AS2 endpoint, as its profile holds it.
#[derive(Debug, Clone)]
pub struct As2Endpoint {
    /// Where messages are POSTed (`http://` or `https://`).
    pub url: String,
    /// rekey's side: the identifier the receiver knows the signer by.
    pub as2_from: As2Id,
    /// The receiver's identifier.
    pub as2_to: As2Id,
    /// The certificate the receiver signs its MDNs with.
    pub mdn_certificate: Certificate,
    /// The MIC algorithm asked for in the MDN.
    pub mic: DigestAlg,
}

/// What the receiver's system answered, verified.
#[derive(Debug, Clone)]
pub struct As2Answer {
    /// The verified MDN.
    pub mdn: Mdn,
    /// The raw MDN as received (`Content-Type` line, blank line, body): kept as evidence.
    pub raw: Vec<u8>,
}

impl As2Answer {
    /// Whether the receiver's system accepted the message.
    pub fn accepted(&self) -> bool {
        self.mdn.accepted()
    }

    /// The receiver's answer in its own words, for the receiver administrator.
    pub fn summary(&self) -> String {
        match &self.mdn.disposition {
            Disposition::Processed => "processed".to_string(),
            Disposition::Warning(w) | Disposition::Refused(w) => w.clone(),
        }
    }
}

/// Why a test message got no answer that says anything.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum As2Problem {
    /// The endpoint could not be reached or did not answer in time: worth retrying.
    #[error("the receiver's AS2 endpoint {url} did not answer: {reason}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The endpoint answered with an HTTP error instead of an MDN: worth retrying.
    #[error("the receiver's AS2 endpoint {url} answered HTTP {status} instead of an MDN: {body}")]
    HttpStatus {
        /// The endpoint.
        url: String,
        /// The status code.
        status: u16,
        /// The start of what it said.
        body: String,
    },
    /// The URL configured cannot be used.
    #[error(transparent)]
    Url(HttpError),
    /// The answer is not an MDN that verifies: it confirms nothing.
    #[error("the receiver's answer confirms nothing: {0}")]
    Mdn(#[from] MdnError),
}

impl As2Problem {
    /// Whether sending again later may help (the endpoint is down or failing), as opposed to
    /// an answer that was read and confirms nothing.
    pub fn transient(&self) -> bool {
        matches!(
            self,
            As2Problem::Unreachable { .. } | As2Problem::HttpStatus { .. }
        )
    }
}

/// The AS2 headers of a test message (RFC 4130 §6, §7.3): a signed synchronous MDN is asked for
/// with the endpoint's MIC algorithm.
pub fn headers(
    endpoint: &As2Endpoint,
    message: &As2Message,
    message_id: &str,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    vec![
        ("as2-version", "1.2".into()),
        ("as2-from", endpoint.as2_from.to_string()),
        ("as2-to", endpoint.as2_to.to_string()),
        ("message-id", format!("<{message_id}>")),
        ("subject", "rekey test message".into()),
        ("date", now.to_rfc2822()),
        ("mime-version", "1.0".into()),
        ("content-type", message.content_type.clone()),
        ("disposition-notification-to", endpoint.as2_from.to_string()),
        (
            "disposition-notification-options",
            format!(
                "signed-receipt-protocol=required, pkcs7-signature; signed-receipt-micalg=required, {}",
                micalg_name(endpoint.mic)
            ),
        ),
        (
            "user-agent",
            concat!("rekey/", env!("CARGO_PKG_VERSION")).into(),
        ),
    ]
}

/// Sends `message` (AS2 `Message-ID` `message_id`) and verifies the synchronous MDN.
pub async fn send_test(
    endpoint: &As2Endpoint,
    message: &As2Message,
    message_id: &str,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Result<As2Answer, As2Problem> {
    let answer = http::post(
        &endpoint.url,
        &headers(endpoint, message, message_id, now),
        message.body.clone(),
        timeout,
    )
    .await
    .map_err(|e| match e {
        HttpError::Url { .. } => As2Problem::Url(e),
        other => As2Problem::Unreachable {
            url: endpoint.url.clone(),
            reason: other.to_string(),
        },
    })?;
    if !(200..300).contains(&answer.status) {
        let text = String::from_utf8_lossy(&answer.body);
        return Err(As2Problem::HttpStatus {
            url: endpoint.url.clone(),
            status: answer.status,
            body: text
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        });
    }
    let content_type = answer.header("content-type").unwrap_or("").to_string();
    let mdn = rekey_crypto::as2::verify_mdn(
        &content_type,
        &answer.body,
        &endpoint.mdn_certificate,
        message,
        message_id,
    )?;
    let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    raw.extend_from_slice(&answer.body);
    Ok(As2Answer { mdn, raw })
}

/// One test message of a probe and what the receiver's system made of it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeMessage {
    /// What the message tests.
    pub purpose: String,
    /// The certificates whose keys signed it (SHA-256).
    pub signed_by: Vec<String>,
    /// `accepted`, `refused` or `no answer`.
    pub result: String,
    /// The receiver's words, or what went wrong.
    pub detail: String,
}

/// What a probe found: a proposed profile, and the evidence for it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The profile the answers support; `None` when they do not allow a conclusion (see
    /// `problem`).
    pub proposed: Option<ProposedProfile>,
    /// Why no profile is proposed.
    pub problem: Option<String>,
    /// Every message sent, in order.
    pub messages: Vec<ProbeMessage>,
}

/// The capability profile a probe proposes (`rekey_store::ReceiverProfile`'s two flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProposedProfile {
    /// A SignedData with several signatures, one by a trusted key, was accepted.
    pub accepts_multiple_signatures: bool,
    /// Single signatures by two different trusted keys were each accepted.
    pub verifies_multiple_keys: bool,
}

/// A key (wherever the tenant keeps it) and its certificate, to sign probe messages with.
pub type ProbeKey<'a> = (&'a dyn rekey_crypto::RsaSigner, Certificate);

/// Probes what the receiver's AS2 system accepts, with test messages signed by:
/// each key in `trusted` alone (keys the receiver is recorded to trust; the first must be
/// accepted or nothing can be concluded); `untrusted` alone (a key it cannot trust; it must
/// be refused, or the system does not verify signatures at all); and the first trusted key
/// together with `untrusted` in one SignedData. A receiver that accepts the last checks the
/// signature it trusts among several (`accepts_multiple_signatures`); one that accepts two
/// different trusted keys alone can trust several at once (`verifies_multiple_keys`).
/// Anything not shown by an answer is proposed as `false`: a capability assumed wrongly
/// would let a procedure break the receiver.
pub async fn probe(
    endpoint: &As2Endpoint,
    trusted: &[ProbeKey<'_>],
    untrusted: &ProbeKey<'_>,
    now: DateTime<Utc>,
    timeout: Duration,
) -> ProbeReport {
    let mut messages = Vec::new();
    let mut send = async |purpose: &str, keys: &[&ProbeKey<'_>], n: usize| -> Option<bool> {
        let chains: Vec<[Certificate; 1]> = keys.iter().map(|(_, c)| [c.clone()]).collect();
        let specs: Vec<rekey_crypto::SignerSpec<'_>> = keys
            .iter()
            .zip(&chains)
            .map(|((k, _), chain)| rekey_crypto::SignerSpec {
                key: *k,
                chain,
                digest: endpoint.mic,
                include_certs: true,
                include_signing_time: true,
            })
            .collect();
        let signed_by = keys
            .iter()
            .map(|(_, c)| c.fingerprint().to_string())
            .collect();
        let built = rekey_crypto::as2::build_message(
            b"rekey capability probe\r\n",
            "rekey-probe.txt",
            &specs,
            &rekey_crypto::SignOptions {
                detached: true,
                signing_time: now,
            },
        );
        let (result, detail, verdict) = match built {
            Err(e) => ("no answer".to_string(), e.to_string(), None),
            Ok(message) => {
                let id = format!(
                    "probe.{n}.{}@rekey",
                    now.timestamp_nanos_opt().unwrap_or_default()
                );
                match send_test(endpoint, &message, &id, now, timeout).await {
                    Ok(a) if a.accepted() => ("accepted".into(), a.summary(), Some(true)),
                    Ok(a) => ("refused".into(), a.summary(), Some(false)),
                    Err(p) => ("no answer".into(), p.to_string(), None),
                }
            }
        };
        messages.push(ProbeMessage {
            purpose: purpose.to_string(),
            signed_by,
            result,
            detail,
        });
        verdict
    };
    let Some(first) = trusted.first() else {
        return ProbeReport {
            proposed: None,
            problem: Some("no key the receiver is recorded to trust: record one with `rekey receiver trust` first".into()),
            messages: Vec::new(),
        };
    };
    let baseline = send("one signature by a trusted key", &[first], 1).await;
    let stranger = send(
        "one signature by a key the receiver does not trust",
        &[untrusted],
        2,
    )
    .await;
    let both = send(
        "two signatures: a trusted key and one it does not trust",
        &[first, untrusted],
        3,
    )
    .await;
    let mut others = Vec::new();
    for (i, k) in trusted.iter().enumerate().skip(1) {
        others.push(send("one signature by another trusted key", &[k], 3 + i).await);
    }
    let problem = match (baseline, stranger, both) {
        (None, _, _) | (_, None, _) | (_, _, None) => Some(
            "the receiver's AS2 system did not answer every message with an MDN that verifies"
                .to_string(),
        ),
        (Some(false), _, _) => Some(
            "the receiver's AS2 system refused a message signed by the key it is recorded to \
             trust: check its partner configuration, or what rekey records it trusts"
                .to_string(),
        ),
        (_, Some(true), _) => Some(
            "the receiver's AS2 system accepted a key it cannot trust: it does not verify \
             signatures, so its answers say nothing about them"
                .to_string(),
        ),
        _ => None,
    };
    ProbeReport {
        proposed: problem.is_none().then(|| ProposedProfile {
            accepts_multiple_signatures: both == Some(true),
            verifies_multiple_keys: others.contains(&Some(true)),
        }),
        problem,
        messages,
    }
}
