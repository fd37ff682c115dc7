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
