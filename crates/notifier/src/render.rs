//! One outbox row → one email: subject, text and HTML bodies, attachments, headers.
//!
//! Pure: everything it needs (the row's state, the action link, the certificate's expiry, the
//! time) is passed in. Every body and text attachment leaves here with CRLF line endings only,
//! because lettre (≤ 0.11.23) dot-stuffs a leading `.` only after CRLF, not after a bare LF;
//! header values with CR or LF are refused, never cleaned up silently.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment as MailAttachment, Body, Mailbox, MultiPart, SinglePart};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{NotifierError, Result};

/// Why an email is sent: the engine's notice kinds, plus the notifier's own report of a mail
/// that could not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A step became due for the recipient.
    StepDue,
    /// For information.
    Inform,
    /// A due step is still open.
    Reminder,
    /// A step is overdue past escalation, or an automatic step was refused.
    Escalation,
    /// A downtime window was proposed.
    WindowProposed,
    /// The window was agreed.
    WindowAgreed,
    /// The renewal finished.
    Completed,
    /// The renewal was cancelled.
    Cancelled,
    /// The renewal was rolled back.
    RolledBack,
    /// An email could not be delivered (sent to the tenant's administrators).
    DeliveryFailed,
}

impl Kind {
    /// Does a notice of this kind ask the recipient to act on a step (and so carry a link)?
    pub fn asks_for_action(self) -> bool {
        matches!(
            self,
            Kind::StepDue | Kind::Reminder | Kind::Escalation | Kind::WindowProposed
        )
    }
}

/// The `notice` object of an outbox row's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeState {
    /// Recipient role (`tenant_admin`, `integration_developer`, `receiver_admin`).
    pub to: String,
    /// Why.
    pub kind: Kind,
    /// The step concerned.
    #[serde(default)]
    pub step: Option<String>,
    /// Fingerprint of the certificate to attach.
    #[serde(default)]
    pub attach_certificate: Option<String>,
    /// Fingerprints of the keys the test message is signed with.
    #[serde(default)]
    pub test_message: Option<Vec<String>>,
    /// Due date of the step.
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
}

/// A mail that could not be delivered, as reported to the tenant's administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedMail {
    /// Its Message-ID.
    pub message_id: String,
    /// Its recipient.
    pub recipient: String,
    /// Its subject.
    pub subject: String,
    /// The server's answer.
    pub error: String,
}

/// The JSON `state` of an outbox row, as the engine's shell writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailState {
    /// What the notice is.
    pub notice: NoticeState,
    /// The renewal.
    #[serde(default)]
    pub renewal: Option<Uuid>,
    /// Its procedure.
    #[serde(default)]
    pub procedure: Option<String>,
    /// The alias renewed.
    #[serde(default)]
    pub alias: Option<String>,
    /// The receiver's name.
    #[serde(default)]
    pub receiver: Option<String>,
    /// The recipient's address.
    #[serde(default)]
    pub recipient: Option<String>,
    /// The step's title.
    #[serde(default)]
    pub step_title: Option<String>,
    /// The step's number in the seed.
    #[serde(default)]
    pub seed_step: Option<String>,
    /// The renewal's new certificate, if there is one yet.
    #[serde(default)]
    pub new_certificate_fingerprint: Option<String>,
    /// The certificate to attach, PEM.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// The test message to attach, SignedData DER in Base64.
    #[serde(default)]
    pub test_message_base64: Option<String>,
    /// The certificate signing request, PEM, for a CA-signed key.
    #[serde(default)]
    pub csr_pem: Option<String>,
    /// The undeliverable mail, for [`Kind::DeliveryFailed`].
    #[serde(default)]
    pub failed: Option<FailedMail>,
}

impl MailState {
    /// Parses a row's `state` column.
    pub fn parse(row: Uuid, json: &str) -> Result<MailState> {
        serde_json::from_str(json).map_err(|e| NotifierError::BadRow {
            id: row,
            reason: format!("state: {e}"),
        })
    }
}

/// What a renderer needs besides the row.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    /// The row's state.
    pub state: &'a MailState,
    /// The row's subject.
    pub subject: &'a str,
    /// The recipient.
    pub recipient: &'a str,
    /// The task page's link with its token, when the notice asks for action.
    pub link: Option<&'a str>,
    /// When that link stops working.
    pub link_expires_at: Option<DateTime<Utc>>,
    /// When the alias's current certificate expires, if known.
    pub certificate_expires_at: Option<DateTime<Utc>>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// An attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// Content (text attachments already CRLF).
    pub content: Vec<u8>,
}

/// A rendered email, before headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject.
    pub subject: String,
    /// Plain text body, CRLF.
    pub text: String,
    /// HTML body, CRLF.
    pub html: String,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// SHA-256 fingerprint of the attached certificate, shown in the body.
    pub certificate_fingerprint: Option<String>,
}

/// `s` with every line ending (CRLF, lone CR, lone LF) made CRLF.
pub fn crlf(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// Refuses a header value carrying CR or LF.
pub fn check_header(field: &'static str, value: &str) -> Result<()> {
    if value.contains(['\r', '\n']) {
        return Err(NotifierError::HeaderInjection {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "2 days 3 hours", "45 minutes".
pub fn human_duration(d: Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, minutes) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let unit = |n: i64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(unit(days, "day"));
    }
    if hours > 0 {
        parts.push(unit(hours, "hour"));
    }
    if days == 0 && (minutes > 0 || parts.is_empty()) {
        parts.push(unit(minutes, "minute"));
    }
    parts.join(" ")
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn role_name(role: &str) -> &str {
    match role {
        "tenant_admin" => "tenant administrator",
        "integration_developer" => "integration developer",
        "receiver_admin" => "receiver administrator",
        other => other,
    }
}

/// Renders one row.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered> {
    let st = input.state;
    let n = &st.notice;
    let alias = st.alias.as_deref().unwrap_or("(unknown alias)");
    let receiver = st.receiver.as_deref().unwrap_or("(unknown receiver)");
    let task = st.step_title.as_deref().map(|t| match &st.seed_step {
        Some(seed) if !seed.is_empty() => format!("{t} (step {seed})"),
        _ => t.to_string(),
    });
    let task_name = task
        .clone()
        .unwrap_or_else(|| format!("renewal of {alias}"));
    let headline = match n.kind {
        Kind::StepDue => {
            format!("A step of the renewal of {alias} is now due for you: {task_name}.")
        }
        Kind::Inform => format!("For your information, in the renewal of {alias}: {task_name}."),
        Kind::Reminder => format!("Reminder: {task_name} is still open."),
        Kind::Escalation => format!("Escalation: {task_name} needs attention."),
        Kind::WindowProposed => format!(
            "A downtime window was proposed for the renewal of {alias}; please review it and accept it."
        ),
        Kind::WindowAgreed => format!("The downtime window for the renewal of {alias} was agreed."),
        Kind::Completed => format!("The renewal of {alias} is complete."),
        Kind::Cancelled => format!("The renewal of {alias} was cancelled."),
        Kind::RolledBack => format!("The renewal of {alias} was rolled back."),
        Kind::DeliveryFailed => "An email from rekey could not be delivered.".to_string(),
    };

    // (label, value) rows shown in both bodies.
    let mut facts: Vec<(&str, String)> = Vec::new();
    if let Some(f) = &st.failed {
        facts.push(("To", f.recipient.clone()));
        facts.push(("Subject", f.subject.clone()));
        facts.push(("Message-ID", f.message_id.clone()));
        facts.push(("Error", f.error.clone()));
    }
    if let Some(t) = &task {
        facts.push(("Task", t.clone()));
    }
    if let Some(r) = st.renewal {
        let procedure = st
            .procedure
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        facts.push(("Renewal", format!("{r}{procedure}")));
    }
    if st.alias.is_some() {
        facts.push(("Alias", alias.to_string()));
    }
    if st.receiver.is_some() {
        facts.push(("Receiver", receiver.to_string()));
    }
    if let Some(due) = n.due_at {
        facts.push(("Due by", when(due)));
        if matches!(n.kind, Kind::Reminder | Kind::Escalation) {
            let overdue = input.now - due;
            if overdue > Duration::zero() {
                facts.push(("Overdue by", human_duration(overdue)));
            } else {
                facts.push(("Time left", human_duration(-overdue)));
            }
        }
    }

    let why = match (n.kind, input.certificate_expires_at) {
        (Kind::DeliveryFailed, _) => Some(
            "The recipient did not get the email, so a step of a renewal may wait for someone who \
             does not know about it. Check the address and tell them, or fix the address and run \
             `rekey mail retry`."
                .to_string(),
        ),
        (Kind::Completed | Kind::Cancelled | Kind::RolledBack, _) => None,
        (_, Some(exp)) => {
            let left = exp - input.now;
            let rel = if left > Duration::zero() {
                format!("in {}", human_duration(left))
            } else {
                format!("{} ago", human_duration(-left))
            };
            Some(format!(
                "The certificate that signs for alias {alias} expires on {} ({rel}). Messages \
                 signed with it after that date will be rejected by {receiver}, so the new key must \
                 be in use before then; every step keeps {receiver} able to verify each message \
                 in the meantime.",
                when(exp)
            ))
        }
        (_, None) => Some(format!(
            "Until the renewal of {alias} completes, the signing key cannot be replaced without \
             risking messages that {receiver} cannot verify."
        )),
    };

    let mut attachments = Vec::new();
    let mut fingerprint = None;
    let mut notes: Vec<String> = Vec::new();
    if let Some(pem) = &st.certificate_pem {
        let cert = rekey_crypto::Certificate::from_pem(pem).map_err(|e| {
            NotifierError::Message(format!("the certificate to attach is not readable: {e}"))
        })?;
        let fp = cert.fingerprint().to_string();
        notes.push(format!(
            "The new certificate is attached as certificate.pem. Its SHA-256 fingerprint is\n  \
             {fp}\nCompare it with the file before you install it in {receiver}, and give this \
             fingerprint when you confirm the step."
        ));
        attachments.push(Attachment {
            filename: "certificate.pem".into(),
            content_type: "application/x-pem-file".into(),
            content: crlf(pem).into_bytes(),
        });
        fingerprint = Some(fp);
    }
    if let Some(b64) = &st.test_message_base64 {
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| NotifierError::Message(format!("the test message is not Base64: {e}")))?;
        notes.push(
            "A test message signed the way messages will be signed is attached as \
             test-message.p7m (CMS SignedData, DER). Check that your system verifies it with the \
             new configuration."
                .to_string(),
        );
        attachments.push(Attachment {
            filename: "test-message.p7m".into(),
            content_type: "application/pkcs7-mime; smime-type=signed-data; name=test-message.p7m"
                .into(),
            content: der,
        });
    }
    if let Some(csr) = &st.csr_pem {
        notes.push(
            "The certificate signing request for the new key is attached as \
             certificate-request.pem; have it signed by your CA and upload the chain."
                .to_string(),
        );
        attachments.push(Attachment {
            filename: "certificate-request.pem".into(),
            content_type: "application/pkcs10".into(),
            content: crlf(csr).into_bytes(),
        });
    }

    let footer = format!(
        "This message was sent by rekey to {} as {}.",
        input.recipient,
        role_name(&n.to)
    );

    // Plain text.
    let mut text = String::new();
    let _ = writeln!(text, "Hello,\n\n{headline}\n");
    let width = facts.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (label, value) in &facts {
        let _ = writeln!(text, "  {:<width$} {value}", format!("{label}:"));
    }
    if let Some(w) = &why {
        let _ = writeln!(text, "\nWhy it matters: {w}");
    }
    for note in &notes {
        let _ = writeln!(text, "\n{note}");
    }
    if let Some(link) = input.link {
        let _ = writeln!(text, "\nOpen the task: {link}");
        if let Some(exp) = input.link_expires_at {
            let _ = writeln!(
                text,
                "(The link works once, for you only, until {}.)",
                when(exp)
            );
        }
    }
    let _ = writeln!(text, "\n-- \n{footer}");

    // HTML: every value escaped.
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body>",
        html_escape(input.subject)
    );
    let _ = writeln!(html, "<p>Hello,</p>\n<p>{}</p>", html_escape(&headline));
    if !facts.is_empty() {
        let _ = writeln!(html, "<table>");
        for (label, value) in &facts {
            let _ = writeln!(
                html,
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                html_escape(label),
                html_escape(value)
            );
        }
        let _ = writeln!(html, "</table>");
    }
    if let Some(w) = &why {
        let _ = writeln!(
            html,
            "<p><strong>Why it matters:</strong> {}</p>",
            html_escape(w)
        );
    }
    for note in &notes {
        let _ = writeln!(html, "<p>{}</p>", html_escape(note).replace('\n', "<br>\n"));
    }
    if let Some(link) = input.link {
        let l = html_escape(link);
        let _ = writeln!(html, "<p><a href=\"{l}\">Open the task</a><br>{l}</p>");
        if let Some(exp) = input.link_expires_at {
            let _ = writeln!(
                html,
                "<p><small>The link works once, for you only, until {}.</small></p>",
                html_escape(&when(exp))
            );
        }
    }
    let _ = writeln!(
        html,
        "<hr><p><small>{}</small></p>\n</body></html>",
        html_escape(&footer)
    );

    Ok(Rendered {
        subject: input.subject.to_string(),
        text: crlf(&text),
        html: crlf(&html),
        attachments,
        certificate_fingerprint: fingerprint,
    })
}

fn mailbox(field: &'static str, value: &str) -> Result<Mailbox> {
    check_header(field, value)?;
    value
        .parse::<Mailbox>()
        .map_err(|e| NotifierError::Address {
            field,
            value: value.to_string(),
            reason: e.to_string(),
        })
}

/// Headers of one email.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// `From` (an address, or `Name <address>`).
    pub from: &'a str,
    /// `To`: one address.
    pub to: &'a str,
    /// The row's stable Message-ID, `<...@rekey>`.
    pub message_id: &'a str,
    /// `Date`.
    pub date: DateTime<Utc>,
}

/// The email for `r`: `multipart/mixed` of `multipart/alternative` (text, HTML) and the
/// attachments, with the row's Message-ID. Refuses CR or LF in any header value.
pub fn message(env: Envelope<'_>, r: &Rendered) -> Result<Message> {
    check_header("subject", &r.subject)?;
    check_header("Message-ID", env.message_id)?;
    let from = mailbox("from", env.from)?;
    let to = mailbox("to", env.to)?;
    if !(env.message_id.starts_with('<') && env.message_id.ends_with('>')) {
        return Err(NotifierError::Message(format!(
            "Message-ID {:?} is not of the form <...>",
            env.message_id
        )));
    }
    let mut body = MultiPart::mixed().multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::plain(crlf(&r.text)))
            .singlepart(SinglePart::html(crlf(&r.html))),
    );
    for a in &r.attachments {
        check_header("attachment file name", &a.filename)?;
        let ct = ContentType::parse(&a.content_type)
            .map_err(|e| NotifierError::Message(format!("content type {}: {e}", a.content_type)))?;
        let content = match std::str::from_utf8(&a.content) {
            // Text attachments: CRLF again, whatever the caller built.
            Ok(text) if !a.content_type.starts_with("application/pkcs7") => Body::new(crlf(text)),
            _ => Body::new(a.content.clone()),
        };
        body = body.singlepart(MailAttachment::new(a.filename.clone()).body(content, ct));
    }
    Message::builder()
        .from(from)
        .to(to)
        .subject(r.subject.clone())
        .message_id(Some(env.message_id.to_string()))
        .date(std::time::SystemTime::from(env.date))
        .multipart(body)
        .map_err(|e| NotifierError::Message(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kind: Kind) -> MailState {
        MailState {
            notice: NoticeState {
                to: "receiver_admin".into(),
                kind,
                step: Some("switch-receiver".into()),
                attach_certificate: None,
                test_message: None,
                due_at: Some(DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000)),
            },
            renewal: Some(Uuid::nil()),
            procedure: Some("dual-trust".into()),
            alias: Some("orders <&> \"x\"".into()),
            receiver: Some("acme".into()),
            recipient: Some("a@b.example".into()),
            step_title: Some("Receiver trusts the new certificate".into()),
            seed_step: Some("3".into()),
            new_certificate_fingerprint: None,
            certificate_pem: None,
            test_message_base64: None,
            csr_pem: None,
            failed: None,
        }
    }

    fn input<'a>(st: &'a MailState, now: DateTime<Utc>) -> RenderInput<'a> {
        RenderInput {
            state: st,
            subject: "[rekey] Reminder",
            recipient: "a@b.example",
            link: Some("https://rekey.example/tasks/abc"),
            link_expires_at: Some(now + Duration::hours(72)),
            certificate_expires_at: Some(now + Duration::days(30)),
            now,
        }
    }

    #[test]
    fn crlf_normalises_every_ending() {
        assert_eq!(crlf("a\nb\r\nc\rd\n.\n"), "a\r\nb\r\nc\r\nd\r\n.\r\n");
        assert_eq!(crlf("\r\r\n\n"), "\r\n\r\n\r\n");
    }

    #[test]
    fn reminder_says_how_overdue_with_link_and_expiry() -> Result<()> {
        let st = state(Kind::Reminder);
        let due = st.notice.due_at.unwrap_or_default();
        let now = due + Duration::days(2) + Duration::hours(3);
        let r = render(&input(&st, now))?;
        assert!(r.text.contains("Overdue by: 2 days 3 hours"), "{}", r.text);
        assert!(r.text.contains("https://rekey.example/tasks/abc"));
        assert!(
            r.text
                .contains("Receiver trusts the new certificate (step 3)")
        );
        assert!(r.text.contains("expires on"), "{}", r.text);
        assert!(r.text.contains("in 30 days"), "{}", r.text);
        assert!(!r.text.replace("\r\n", "").contains('\n'));
        // HTML escapes the alias.
        assert!(
            r.html.contains("orders &lt;&amp;&gt; &quot;x&quot;"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("orders <&>"));
        Ok(())
    }

    #[test]
    fn header_values_with_cr_or_lf_are_refused() -> Result<()> {
        let st = state(Kind::StepDue);
        let now = Utc::now();
        let mut r = render(&input(&st, now))?;
        let env = Envelope {
            from: "rekey@localhost",
            to: "a@b.example",
            message_id: "<x@rekey>",
            date: now,
        };
        message(env, &r)?;
        r.subject = "hi\r\nBcc: evil@x.example".into();
        let e = message(env, &r)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("subject") && e.contains("CR or LF"), "{e}");
        r.subject = "ok".into();
        for (from, to) in [
            ("Rekey\n <rekey@localhost>", "a@b.example"),
            ("rekey@localhost", "a@b.example\r\nRCPT TO:<e@x>"),
            ("rekey@localhost", "a@b.example\n"),
        ] {
            let env = Envelope { from, to, ..env };
            let e = message(env, &r)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("CR or LF"), "{e}");
        }
        Ok(())
    }

    #[test]
    fn every_kind_renders_what_is_due_for_which_renewal_and_why() -> Result<()> {
        use Kind::*;
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_001);
        for kind in [
            StepDue,
            Inform,
            Reminder,
            Escalation,
            WindowProposed,
            WindowAgreed,
            Completed,
            Cancelled,
            RolledBack,
            DeliveryFailed,
        ] {
            let mut st = state(kind);
            if kind == DeliveryFailed {
                st.failed = Some(FailedMail {
                    message_id: "<m@rekey>".into(),
                    recipient: "gone@x.example".into(),
                    subject: "s".into(),
                    error: "550 no such user".into(),
                });
            }
            let mut i = input(&st, now);
            if !kind.asks_for_action() {
                i.link = None;
            }
            let r = render(&i)?;
            for body in [&r.text, &r.html] {
                assert!(
                    body.contains("00000000-0000-0000-0000-000000000000"),
                    "{kind:?}"
                );
                assert!(body.contains("acme"), "{kind:?}");
                assert!(body.contains("receiver administrator"), "{kind:?}");
                assert!(!body.replace("\r\n", "").contains(['\r', '\n']), "{kind:?}");
            }
            let final_kind = matches!(kind, Completed | Cancelled | RolledBack);
            assert_eq!(r.text.contains("Why it matters"), !final_kind, "{kind:?}");
            assert_eq!(
                r.text.contains("/tasks/"),
                kind.asks_for_action(),
                "{kind:?}"
            );
            assert_eq!(
                r.text.contains("Overdue by"),
                matches!(kind, Reminder | Escalation),
                "{kind:?}"
            );
            if kind == DeliveryFailed {
                assert!(r.text.contains("550 no such user") && r.text.contains("gone@x.example"));
            }
            message(
                Envelope {
                    from: "rekey <rekey@localhost>",
                    to: "a@b.example",
                    message_id: "<x@rekey>",
                    date: now,
                },
                &r,
            )?;
        }
        Ok(())
    }

    #[test]
    fn a_ca_signed_key_step_attaches_the_csr_with_crlf() -> Result<()> {
        let mut st = state(Kind::StepDue);
        st.csr_pem = Some(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
        );
        let r = render(&input(&st, Utc::now()))?;
        let csr = r
            .attachments
            .iter()
            .find(|a| a.filename == "certificate-request.pem")
            .map(|a| a.content.clone())
            .unwrap_or_default();
        assert!(csr.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----\r\nAAAA\r\n"));
        assert!(r.text.contains("certificate-request.pem"));
        Ok(())
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::minutes(45)), "45 minutes");
        assert_eq!(human_duration(Duration::hours(25)), "1 day 1 hour");
        assert_eq!(human_duration(Duration::days(3)), "3 days");
        assert_eq!(human_duration(Duration::zero()), "0 minutes");
    }
}
