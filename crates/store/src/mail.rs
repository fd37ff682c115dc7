//! The content of an outbox row (its `state` column): the one contract between the code that
//! queues mail (the service's shell and its AS2 pass, the expiry watch, the notifier's failure
//! reports) and the notifier that renders it.
//!
//! A renewal's mail carries the engine's own [`Notice`] unchanged, so a notice kind the engine
//! produces is a kind the renderer must match; the renderer matches [`OutboxMail`] and
//! [`NoticeKind`] exhaustively and destructures each payload without `..`, so a kind or field
//! that is queued but not rendered fails to compile.
//!
//! Rows written before this type existed (no `"mail"` tag) are still read: [`parse`] converts
//! them. A row that is neither is reported as unreadable, never guessed at.

use chrono::{DateTime, Utc};
use rekey_engine::{Notice, NoticeKind, ProcedureId, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an outbox row sends.
// One value per row being queued or sent: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mail", rename_all = "snake_case")]
pub enum OutboxMail {
    /// A notice the engine produced for a renewal.
    Notice(NoticeMail),
    /// The expiry watch asks the tenant administrators to start a renewal.
    ExpiryWatch(WatchMail),
    /// An email could not be delivered; told to the tenant's administrators.
    DeliveryFailed(FailedMail),
    /// A receiver's AS2 system refused a step's test message; told to the receiver's
    /// administrators in its own words.
    As2Refused(As2Mail),
    /// The expiry watch warns every role of a renewal that a stalled step now puts the old
    /// certificate's expiry at risk.
    AtRisk(AtRiskMail),
    /// An action on a renewal was refused because its SAP Cloud Integration tenant no longer
    /// holds what rekey recorded; told to the tenant administrators.
    TenantChanged(TenantChangedMail),
}

/// A renewal's notice to one person, with everything the mail shows or attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeMail {
    /// The engine's notice, as produced.
    pub notice: Notice,
    /// The renewal.
    pub renewal: Uuid,
    /// Its procedure.
    pub procedure: ProcedureId,
    /// The alias renewed.
    pub alias: String,
    /// The receiver's name.
    pub receiver: String,
    /// The recipient's address.
    pub recipient: String,
    /// The step the notice is about.
    pub step: Option<StepInfo>,
    /// What the recipient may do about that step.
    pub access: Access,
    /// The renewal's new certificate, once there is one.
    pub new_certificate_fingerprint: Option<String>,
    /// Files the mail carries.
    pub attachments: Attachments,
}

/// The step a notice is about, as the recipient should read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInfo {
    /// Step id.
    pub id: String,
    /// Its title (the owner's view).
    pub title: String,
    /// Its number in the seed.
    pub seed: String,
    /// Who does it.
    pub role: Role,
    /// The other party, for an agreement.
    pub with_role: Option<Role>,
    /// For an inform: what the person told learns, written for them.
    pub told: Option<String>,
}

/// What the recipient may do about the notice's step; decides whether the mail carries an
/// action link, so that no link leads to a page that says "not due for you".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "access", rename_all = "snake_case")]
pub enum Access {
    /// A registered user holding the step's role: the mail carries a personal link.
    MayAct,
    /// Told only: the step is someone else's, or there is nothing to do.
    Informed,
    /// A receiver contact without a rekey account holding the role: no link; a tenant
    /// administrator gives access with `command`.
    Contact {
        /// The command that makes the contact the receiver's administrator.
        command: String,
    },
}

/// Files a notice carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachments {
    /// The new certificate with the issuers uploaded with it (PEM, leaf first).
    #[serde(default)]
    pub certificate_chain_pem: Option<String>,
    /// A test message, SignedData DER in Base64: the only one, when every affected signer
    /// step signs alike.
    #[serde(default)]
    pub test_message_base64: Option<String>,
    /// One test message per way the affected signer steps will sign, with the steps; when
    /// present, the mail attaches these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_messages: Vec<TestMessage>,
    /// The certificate signing request of a CA-signed renewal's new key, PEM.
    #[serde(default)]
    pub csr_pem: Option<String>,
    /// Why no test message is attached where the step would carry one (the keys stay in a
    /// system that cannot sign for rekey), in words for the recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_test_message: Option<String>,
}

/// A test message and the signer steps (`flow/step`) that will sign like it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestMessage {
    /// The signer steps; empty when not known.
    #[serde(default)]
    pub signer_steps: Vec<String>,
    /// SignedData DER in Base64.
    pub base64: String,
}

impl Attachments {
    /// No files.
    pub fn is_empty(&self) -> bool {
        self.certificate_chain_pem.is_none()
            && self.test_message_base64.is_none()
            && self.test_messages.is_empty()
            && self.csr_pem.is_none()
    }
}

/// What the expiry watch computed for an alias whose latest safe start has passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchMail {
    /// The recipient's address (a tenant administrator).
    pub recipient: String,
    /// The alias.
    pub alias: String,
    /// Its current certificate's SHA-256 fingerprint.
    pub fingerprint: String,
    /// Its notAfter.
    pub not_after: DateTime<Utc>,
    /// The procedure planned with (none when the receiver is not known: the longest).
    pub procedure: Option<ProcedureId>,
    /// The receiver, when the tenant has exactly one.
    pub receiver: Option<String>,
    /// Sum of the procedure's step lead times, in days.
    pub lead_days: i64,
    /// Margin kept before the lead time, in days.
    pub renew_before_days: i64,
    /// notAfter − lead − margin.
    pub latest_start: DateTime<Utc>,
    /// The command that starts the renewal.
    pub start_command: String,
    /// Why rekey did not open the renewal itself.
    pub not_opened_because: String,
}

/// A renewal whose overdue step leaves too little time before the old certificate expires:
/// the steps still to come, taken as planned from now, end after its notAfter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtRiskMail {
    /// The recipient's address.
    pub recipient: String,
    /// The recipient's roles in the renewal (a receiver contact without an account counts as
    /// its administrator).
    pub roles: Vec<Role>,
    /// The renewal.
    pub renewal: Uuid,
    /// Its procedure.
    pub procedure: ProcedureId,
    /// The alias renewed.
    pub alias: String,
    /// The receiver's name.
    pub receiver: String,
    /// The stalled step's id.
    pub step: String,
    /// Its title.
    pub step_title: String,
    /// Who owns it.
    pub step_role: Role,
    /// The command that does it (without `--as`).
    pub step_command: String,
    /// When it was due.
    pub due_at: DateTime<Utc>,
    /// The old certificate's SHA-256 fingerprint.
    pub fingerprint: String,
    /// Its notAfter.
    pub not_after: DateTime<Utc>,
    /// When the renewal ends if the stalled step is done now and every later step takes its
    /// planned time.
    pub finish_at: DateTime<Utc>,
    /// Titles of the steps after the stalled one, in order.
    pub remaining: Vec<String>,
}

/// A renewal stopped by a change made on its SAP Cloud Integration tenant outside rekey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantChangedMail {
    /// The tenant administrator told.
    pub recipient: String,
    /// The rekey tenant's name.
    pub tenant: String,
    /// The renewal.
    pub renewal: Uuid,
    /// Its procedure.
    pub procedure: ProcedureId,
    /// The alias renewed.
    pub alias: String,
    /// Each alias that differs.
    pub differences: Vec<AliasDifference>,
}

/// One alias whose key on the tenant is not the one rekey recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasDifference {
    /// The alias.
    pub alias: String,
    /// SHA-256 of the certificate rekey recorded (`None`: no key).
    pub recorded: Option<String>,
    /// SHA-256 of the certificate the tenant holds (`None`: no key pair).
    pub found: Option<String>,
}

/// What a receiver's AS2 system answered the test message of a step it must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct As2Mail {
    /// The recipient's address (an administrator or contact of the receiver).
    pub recipient: String,
    /// The renewal.
    pub renewal: Uuid,
    /// The alias renewed.
    pub alias: String,
    /// The receiver's name.
    pub receiver: String,
    /// The step's id.
    pub step: String,
    /// The step's title.
    pub step_title: String,
    /// The receiver's system's answer, verbatim (the MDN's disposition and text).
    pub answer: String,
    /// The certificates the test message was signed with (SHA-256).
    pub signed_by: String,
    /// The AS2 endpoint it went to.
    pub endpoint: String,
    /// When rekey sends the next test message.
    pub next_check: DateTime<Utc>,
    /// The new certificate's SHA-256.
    pub new_certificate_fingerprint: String,
}

/// A mail that could not be delivered, as reported to a tenant administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedMail {
    /// The administrator told.
    pub recipient: String,
    /// The undeliverable mail's Message-ID.
    pub message_id: String,
    /// Its recipient.
    pub failed_recipient: String,
    /// Its subject.
    pub subject: String,
    /// The server's answer.
    pub error: String,
    /// Its renewal, if any.
    pub renewal: Option<Uuid>,
    /// The alias concerned, if known.
    pub alias: Option<String>,
}

impl OutboxMail {
    /// The recipient's address.
    pub fn recipient(&self) -> &str {
        match self {
            OutboxMail::Notice(m) => &m.recipient,
            OutboxMail::ExpiryWatch(m) => &m.recipient,
            OutboxMail::DeliveryFailed(m) => &m.recipient,
            OutboxMail::As2Refused(m) => &m.recipient,
            OutboxMail::AtRisk(m) => &m.recipient,
            OutboxMail::TenantChanged(m) => &m.recipient,
        }
    }

    /// The state column's text.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a state column could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable outbox row: {0}")]
pub struct UnreadableMail(pub String);

/// Reads a state column, converting the untyped shape of earlier versions.
pub fn parse(json: &str) -> Result<OutboxMail, UnreadableMail> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| UnreadableMail(format!("not JSON: {e}")))?;
    if value.get("mail").is_some() {
        return serde_json::from_value(value).map_err(|e| UnreadableMail(e.to_string()));
    }
    let old: legacy::Row =
        serde_json::from_value(value).map_err(|e| UnreadableMail(format!("old shape: {e}")))?;
    old.convert().map_err(UnreadableMail)
}

/// The untyped shape rows had before [`OutboxMail`].
mod legacy {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Row {
        notice: OldNotice,
        renewal: Option<Uuid>,
        procedure: Option<ProcedureId>,
        alias: Option<String>,
        receiver: Option<String>,
        recipient: Option<String>,
        step_title: Option<String>,
        seed_step: Option<String>,
        new_certificate_fingerprint: Option<String>,
        certificate_pem: Option<String>,
        test_message_base64: Option<String>,
        csr_pem: Option<String>,
        failed: Option<OldFailed>,
        certificate_fingerprint: Option<String>,
        not_after: Option<DateTime<Utc>>,
        latest_start: Option<DateTime<Utc>>,
    }

    #[derive(Deserialize)]
    struct OldNotice {
        to: Role,
        kind: String,
        step: Option<String>,
        attach_certificate: Option<rekey_model::Fingerprint>,
        test_message: Option<Vec<rekey_model::Fingerprint>>,
        due_at: Option<DateTime<Utc>>,
    }

    #[derive(Deserialize)]
    struct OldFailed {
        message_id: String,
        recipient: String,
        subject: String,
        error: String,
    }

    impl Row {
        pub(super) fn convert(self) -> Result<OutboxMail, String> {
            let recipient = self.recipient.clone().unwrap_or_default();
            if self.notice.kind == "delivery_failed" {
                let f = self
                    .failed
                    .ok_or("a delivery report without the failed mail")?;
                return Ok(OutboxMail::DeliveryFailed(FailedMail {
                    recipient,
                    message_id: f.message_id,
                    failed_recipient: f.recipient,
                    subject: f.subject,
                    error: f.error,
                    renewal: self.renewal,
                    alias: self.alias,
                }));
            }
            if self.renewal.is_none()
                && let (Some(fingerprint), Some(not_after), Some(latest_start)) = (
                    self.certificate_fingerprint,
                    self.not_after,
                    self.latest_start,
                )
            {
                let alias = self.alias.unwrap_or_default();
                return Ok(OutboxMail::ExpiryWatch(WatchMail {
                    recipient,
                    start_command: format!("rekey renewal start --alias {alias} …"),
                    alias,
                    fingerprint,
                    not_after,
                    procedure: self.procedure,
                    receiver: self.receiver,
                    lead_days: (not_after - latest_start).num_days(),
                    renew_before_days: 0,
                    latest_start,
                    not_opened_because: "rekey's watch only notifies (policy \"notify\")".into(),
                }));
            }
            let kind: NoticeKind =
                serde_json::from_value(serde_json::Value::String(self.notice.kind.clone()))
                    .map_err(|_| format!("unknown notice kind {:?}", self.notice.kind))?;
            let renewal = self.renewal.ok_or("a notice without a renewal")?;
            let procedure = self.procedure.ok_or("a notice without a procedure")?;
            let step = self.notice.step.clone().map(|id| StepInfo {
                title: self.step_title.clone().unwrap_or_else(|| id.clone()),
                seed: self.seed_step.clone().unwrap_or_default(),
                role: self.notice.to,
                with_role: None,
                told: None,
                id,
            });
            Ok(OutboxMail::Notice(NoticeMail {
                notice: Notice {
                    to: self.notice.to,
                    kind,
                    step: self.notice.step,
                    attach_certificate: self.notice.attach_certificate,
                    test_message: self.notice.test_message,
                    test_steps: Vec::new(),
                    due_at: self.notice.due_at,
                    refused: None,
                },
                renewal,
                procedure,
                alias: self.alias.unwrap_or_default(),
                receiver: self.receiver.unwrap_or_default(),
                recipient,
                step,
                // What these rows promised when they were queued: a link for action kinds.
                access: Access::MayAct,
                new_certificate_fingerprint: self.new_certificate_fingerprint,
                attachments: Attachments {
                    certificate_chain_pem: self.certificate_pem,
                    test_message_base64: self.test_message_base64,
                    test_messages: Vec::new(),
                    csr_pem: self.csr_pem,
                    no_test_message: None,
                },
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_rows_are_read_and_an_unknown_kind_is_reported() {
        let csr = r#"{"notice":{"to":"tenant_admin","kind":"certificate_request","step":"create-key-pair","attach_certificate":null,"test_message":null,"due_at":null},"renewal":"00000000-0000-0000-0000-000000000001","procedure":"dual-trust","alias":"A","receiver":"R","recipient":"a@t.example","step_title":"Create","seed_step":"1","csr_pem":"-----BEGIN CERTIFICATE REQUEST-----"}"#;
        match parse(csr) {
            Ok(OutboxMail::Notice(n)) => {
                assert_eq!(n.notice.kind, NoticeKind::CertificateRequest);
                assert!(n.attachments.csr_pem.is_some());
            }
            other => panic!("{other:?}"),
        }
        let watch = r#"{"notice":{"to":"tenant_admin","kind":"inform","step":null,"due_at":"2026-01-01T00:00:00Z"},"renewal":null,"procedure":null,"alias":"A","receiver":null,"step_title":"x","recipient":"a@t.example","certificate_fingerprint":"ab","not_after":"2026-03-01T00:00:00Z","latest_start":"2026-01-01T00:00:00Z","body":"b"}"#;
        assert!(matches!(parse(watch), Ok(OutboxMail::ExpiryWatch(_))));
        let bad = csr.replace("certificate_request", "carrier_pigeon");
        let e = parse(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unknown notice kind \"carrier_pigeon\""), "{e}");
        assert!(parse("{").is_err());
        assert!(parse(r#"{"mail":"fax"}"#).is_err());
    }
}
