//! One outbox row → one email: subject, text and HTML bodies, attachments, headers.
//!
//! The row's content is the typed [`OutboxMail`] its producer wrote; every kind and every field
//! is matched here without a catch-all, so what is queued but not rendered does not compile.
//! Each mail says what happened, what the recipient must do (if anything) and by when.
//!
//! Pure: everything it needs (the row's content, the action link, the certificate's expiry, the
//! time) is passed in. Every body and text attachment leaves here with CRLF line endings only,
//! because lettre (≤ 0.11.23) dot-stuffs a leading `.` only after CRLF, not after a bare LF;
//! header values with CR or LF are refused, never cleaned up silently.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment as MailAttachment, Body, Mailbox, MultiPart, SinglePart};
use rekey_engine::{Notice, NoticeKind, Role};
use rekey_store::mail::{
    Access, As2Mail, AtRiskMail, Attachments, FailedMail, NoticeMail, OutboxMail,
    TenantChangedMail, TestMessage, WatchMail,
};
use uuid::Uuid;

use crate::{NotifierError, Result};

/// Does `kind` ask its recipient to act on a step (and so, for someone who may, carry a
/// link to it)? A certificate request is answered by uploading the chain, not on the page.
pub fn asks_for_action(kind: NoticeKind) -> bool {
    match kind {
        NoticeKind::StepDue
        | NoticeKind::Reminder
        | NoticeKind::Escalation
        | NoticeKind::WindowProposed => true,
        NoticeKind::Inform
        | NoticeKind::WindowAgreed
        | NoticeKind::Completed
        | NoticeKind::Cancelled
        | NoticeKind::RolledBack
        | NoticeKind::CertificateRequest => false,
    }
}

/// The task (renewal, step) a mail links to: only a notice that asks for action, sent to
/// someone who may do the step — never a link whose page would say "not due for you".
pub fn link_target(mail: &OutboxMail) -> Option<(Uuid, &str)> {
    match mail {
        OutboxMail::Notice(m) => match (&m.access, &m.step) {
            (Access::MayAct, Some(step)) if asks_for_action(m.notice.kind) => {
                Some((m.renewal, step.id.as_str()))
            }
            _ => None,
        },
        OutboxMail::ExpiryWatch(_)
        | OutboxMail::DeliveryFailed(_)
        | OutboxMail::As2Refused(_)
        | OutboxMail::AtRisk(_)
        | OutboxMail::TenantChanged(_) => None,
    }
}

/// Parses a row's `state` column; a row that cannot be read is a bug, reported as such.
pub fn parse(row: Uuid, json: &str) -> Result<OutboxMail> {
    rekey_store::mail::parse(json).map_err(|e| NotifierError::BadRow {
        id: row,
        reason: e.0,
    })
}

/// What a renderer needs besides the row.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    /// The row's content.
    pub mail: &'a OutboxMail,
    /// The row's subject.
    pub subject: &'a str,
    /// The recipient.
    pub recipient: &'a str,
    /// The task page's link with its token, when the mail carries one.
    pub link: Option<&'a str>,
    /// When that link stops working.
    pub link_expires_at: Option<DateTime<Utc>>,
    /// The server's base URL (for the API a person may use once a link has expired).
    pub base_url: &'a str,
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

fn role_name(role: Role) -> &'static str {
    match role {
        Role::TenantAdmin => "tenant administrator",
        Role::IntegrationDeveloper => "integration developer",
        Role::ReceiverAdmin => "receiver administrator",
        Role::Signer => "signer",
    }
}

/// Everything one mail says, before it is laid out as text and HTML.
struct MailText {
    headline: String,
    /// (label, value) rows shown in both bodies.
    facts: Vec<(&'static str, String)>,
    why: Option<String>,
    /// What the recipient must do, if anything, and by when.
    todo: String,
    notes: Vec<String>,
    attachments: Vec<Attachment>,
    fingerprint: Option<String>,
    /// Who the recipient is to rekey, for the footer.
    as_who: String,
}

/// Renders one row.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered> {
    let body = match input.mail {
        OutboxMail::Notice(m) => notice_body(m, input)?,
        OutboxMail::ExpiryWatch(w) => watch_body(w, input),
        OutboxMail::DeliveryFailed(f) => failed_body(f),
        OutboxMail::As2Refused(a) => as2_body(a),
        OutboxMail::AtRisk(a) => at_risk_body(a, input),
        OutboxMail::TenantChanged(t) => tenant_changed_body(t),
    };
    Ok(lay_out(input, body))
}

fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t > now {
        format!("in {}", human_duration(t - now))
    } else {
        format!("{} ago", human_duration(now - t))
    }
}

fn notice_body(m: &NoticeMail, input: &RenderInput<'_>) -> Result<MailText> {
    // Destructured without `..`: a field added to the contract must be rendered (or
    // deliberately ignored here) before this compiles.
    let NoticeMail {
        notice:
            Notice {
                to,
                kind,
                step: _,
                attach_certificate: _,
                test_message: _,
                test_steps: _,
                due_at,
                refused,
            },
        renewal,
        procedure,
        alias,
        receiver,
        recipient,
        step,
        access,
        new_certificate_fingerprint,
        attachments:
            Attachments {
                certificate_chain_pem,
                test_message_base64,
                test_messages,
                csr_pem,
                no_test_message,
            },
    } = m;
    let kind = *kind;
    let now = input.now;
    let task = step.as_ref().map(|s| {
        if s.seed.is_empty() {
            s.title.clone()
        } else {
            format!("{} (step {})", s.title, s.seed)
        }
    });
    let task_name = task
        .clone()
        .unwrap_or_else(|| format!("the renewal of {alias}"));
    let owner = step
        .as_ref()
        .map_or("people concerned", |s| role_name(s.role));
    let headline = match kind {
        NoticeKind::StepDue => match access {
            Access::MayAct => {
                format!("A step of the renewal of {alias} is now due for you: {task_name}.")
            }
            Access::Contact { .. } => format!(
                "A step of the renewal of {alias} is now due for the administrator of receiver \
                 {receiver}, for which you are listed as a contact: {task_name}."
            ),
            Access::Informed => {
                format!("A step of the renewal of {alias} is now due for the {owner}: {task_name}.")
            }
        },
        NoticeKind::Inform => match step.as_ref().and_then(|s| s.told.as_deref()) {
            Some(told) => format!("For your information, in the renewal of {alias}: {told}."),
            None => format!("For your information, in the renewal of {alias}: {task_name}."),
        },
        NoticeKind::Reminder => format!("Reminder: {task_name} is still open."),
        NoticeKind::Escalation if refused.is_some() => format!(
            "rekey did not do {task_name} automatically: the renewal of {alias} was started to \
             carry out its actions without waiting for approval, but rekey's check that \
             {receiver} can still verify every message refused this one. The step waits for a \
             person."
        ),
        NoticeKind::Escalation => {
            let state = if due_at.is_some_and(|d| d < now) {
                "is overdue"
            } else {
                "needs attention"
            };
            match access {
                Access::Informed => {
                    format!("Escalation: {task_name}, a step of the {owner}, {state}.")
                }
                Access::MayAct | Access::Contact { .. } => {
                    format!("Escalation: {task_name} {state}.")
                }
            }
        }
        NoticeKind::WindowProposed => format!(
            "A downtime window was proposed for the renewal of {alias}; please review it and \
             accept it or propose another."
        ),
        NoticeKind::WindowAgreed => {
            format!("The downtime window for the renewal of {alias} was agreed.")
        }
        NoticeKind::Completed => format!("The renewal of {alias} is complete."),
        NoticeKind::Cancelled => format!("The renewal of {alias} was cancelled."),
        NoticeKind::RolledBack => format!("The renewal of {alias} was rolled back."),
        NoticeKind::CertificateRequest => format!(
            "The new key for alias {alias} is made and waits for a certificate from your \
             certificate authority."
        ),
    };

    let mut facts: Vec<(&'static str, String)> = Vec::new();
    if let Some(t) = &task {
        facts.push(("Task", t.clone()));
        if let Some(s) = step {
            let who = match s.with_role {
                Some(w) => format!("the {} with the {}", role_name(s.role), role_name(w)),
                None => format!("the {}", role_name(s.role)),
            };
            facts.push(("Done by", who));
        }
    }
    facts.push(("Renewal", format!("{renewal} ({procedure})")));
    facts.push(("Alias", alias.clone()));
    facts.push(("Receiver", receiver.clone()));
    if let Some(fp) = new_certificate_fingerprint {
        facts.push(("New certificate", fp.clone()));
    }
    if let Some(reason) = refused {
        facts.push(("Refused because", reason.clone()));
    }
    if let Some(due) = due_at {
        facts.push(("Due by", when(*due)));
        if *due < now {
            facts.push(("Overdue by", human_duration(now - *due)));
        } else if matches!(kind, NoticeKind::Reminder | NoticeKind::Escalation) {
            facts.push(("Time left", human_duration(*due - now)));
        }
    }

    let why = match (kind, input.certificate_expires_at) {
        (NoticeKind::Completed | NoticeKind::Cancelled | NoticeKind::RolledBack, _) => None,
        (_, Some(exp)) => Some(format!(
            "The certificate that signs for alias {alias} expires on {} ({}). Messages signed \
             with it after that date will be rejected by {receiver}, so the new key must be in \
             use before then; every step keeps {receiver} able to verify each message in the \
             meantime.",
            when(exp),
            relative(exp, now)
        )),
        (_, None) => Some(format!(
            "Until the renewal of {alias} completes, the signing key cannot be replaced without \
             risking messages that {receiver} cannot verify."
        )),
    };

    let mut attachments = Vec::new();
    let mut fingerprint = None;
    let mut notes: Vec<String> = Vec::new();
    if let Some(pem) = certificate_chain_pem {
        let chain = rekey_crypto::Certificate::parse_pem_chain(pem).map_err(|e| {
            NotifierError::Message(format!("the certificate to attach is not readable: {e}"))
        })?;
        let leaf = chain.first().ok_or_else(|| {
            NotifierError::Message("the certificate chain to attach is empty".into())
        })?;
        let fp = leaf.fingerprint().to_string();
        let issuers = match chain.len() {
            1 => String::new(),
            2 => ", followed by the certificate of its issuer,".into(),
            n => format!(", followed by the {} certificates of its issuers,", n - 1),
        };
        let confirm = if matches!(access, Access::MayAct) && asks_for_action(kind) {
            ", and give this fingerprint when you confirm the step"
        } else {
            ""
        };
        notes.push(format!(
            "The new certificate is attached as certificate.pem{issuers}. Its SHA-256 \
             fingerprint is\n  {fp}\nCompare it with the file before you install it in \
             {receiver}{confirm}."
        ));
        attachments.push(Attachment {
            filename: "certificate.pem".into(),
            content_type: "application/x-pem-file".into(),
            content: crlf(pem).into_bytes(),
        });
        fingerprint = Some(fp);
    }
    let single: Vec<TestMessage> = test_message_base64
        .iter()
        .map(|b| TestMessage {
            signer_steps: Vec::new(),
            base64: b.clone(),
        })
        .collect();
    let tests = if test_messages.is_empty() {
        &single
    } else {
        test_messages
    };
    for (i, t) in tests.iter().enumerate() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(t.base64.trim())
            .map_err(|e| NotifierError::Message(format!("the test message is not Base64: {e}")))?;
        // One message keeps the plain name; several are numbered, one per way of signing.
        let filename = if tests.len() == 1 {
            "test-message.p7m".to_string()
        } else {
            format!("test-message-{}.p7m", i + 1)
        };
        let steps = t.signer_steps.join(", ");
        notes.push(match (tests.len(), t.signer_steps.len()) {
            (_, 0) => format!(
                "A test message signed the way messages will be signed is attached as \
                 {filename} (CMS SignedData, DER). Check that your system verifies it with the \
                 new configuration."
            ),
            (1, 1) => format!(
                "A test message signed the way signer step {steps} will sign is attached as \
                 {filename} (CMS SignedData, DER). Check that your system verifies it with the \
                 new configuration."
            ),
            (1, _) => format!(
                "All signer steps that send to you ({steps}) will sign alike: a test message \
                 signed that way is attached as {filename} (CMS SignedData, DER). Check that \
                 your system verifies it with the new configuration."
            ),
            _ => format!(
                "{filename} (CMS SignedData, DER) is signed the way signer step(s) {steps} will \
                 sign. Check that your system verifies every attached test message with the new \
                 configuration."
            ),
        });
        attachments.push(Attachment {
            content_type: format!(
                "application/pkcs7-mime; smime-type=signed-data; name={filename}"
            ),
            filename,
            content: der,
        });
    }
    if let Some(why) = no_test_message {
        notes.push(why.clone());
    }
    if let Some(csr) = csr_pem {
        notes.push(
            "The certificate signing request for the new key is attached as \
             certificate-request.pem."
                .to_string(),
        );
        attachments.push(Attachment {
            filename: "certificate-request.pem".into(),
            content_type: "application/pkcs10".into(),
            content: crlf(csr).into_bytes(),
        });
    }
    if kind == NoticeKind::CertificateRequest && csr_pem.is_none() {
        return Err(NotifierError::Message(
            "a certificate request mail without the certificate request".into(),
        ));
    }

    let by = due_at
        .map(|d| format!(" by {}", when(d)))
        .unwrap_or_default();
    let todo = match (kind, access) {
        (_, Access::Contact { command }) if asks_for_action(kind) => format!(
            "You have no rekey account for receiver {receiver}, so this mail carries no link to \
             the step. To do it{by}, ask a tenant administrator to give you access; they run\n  \
             {command}\nThe mails after that carry a personal link."
        ),
        (_, Access::Contact { command }) => format!(
            "Nothing, for this mail. You get it as a contact of receiver {receiver}; to act on \
             its steps, ask a tenant administrator to give you access with\n  {command}"
        ),
        (NoticeKind::Escalation, _) if refused.is_some() => {
            let step_id = step.as_ref().map_or("", |s| s.id.as_str());
            let approve = if matches!(access, Access::MayAct) {
                format!(
                    "approve the step yourself{by}, with the link below or\n  rekey task approve \
                     {renewal}:{step_id} --as {recipient}\n"
                )
            } else {
                format!(
                    "ask the {owner} to approve the step{by} (`rekey task approve \
                     {renewal}:{step_id}`); "
                )
            };
            format!(
                "Put right what the reason above names (`rekey receiver show --name {receiver}` \
                 shows which certificates rekey records it trusts), then {approve}rekey checks the \
                 step again then, and also retries it by itself whenever another step of this \
                 renewal is done. If it cannot be put right, cancel the renewal (`rekey renewal \
                 cancel {renewal} --as {recipient}`), or roll it back once past the point of no \
                 return."
            )
        }
        (NoticeKind::CertificateRequest, _) => format!(
            "Have your certificate authority sign certificate-request.pem{by} (`openssl req -in \
             certificate-request.pem -verify -noout` checks it), then upload the certificate \
             followed by its issuers:\n  rekey renewal upload-cert {renewal} --cert chain.pem \
             --as {recipient}\nor POST it to {}/api/renewals/{renewal}/certificate. `rekey \
             renewal csr {renewal}` and the renewal's page show the request again.",
            input.base_url
        ),
        (NoticeKind::WindowProposed, Access::MayAct) => {
            "Open the link below and accept the window, or propose another.".to_string()
        }
        (k, Access::MayAct) if asks_for_action(k) => {
            format!("Open the link below and do the step{by}.")
        }
        (NoticeKind::StepDue | NoticeKind::Reminder | NoticeKind::Escalation, _) => {
            let cancel = if *to == Role::TenantAdmin {
                format!(
                    "; if it cannot be done, cancel the renewal (`rekey renewal cancel {renewal} \
                     --as {recipient}`), or roll it back once past the point of no return"
                )
            } else {
                String::new()
            };
            format!(
                "You cannot do this step yourself: it is the {owner}'s. Ask them to do it{by}{cancel}."
            )
        }
        _ => "Nothing: this mail is for your information.".to_string(),
    };
    if let Some(exp) = input.link_expires_at.filter(|_| input.link.is_some()) {
        let due = due_at
            .map(|d| format!(" (it is due by {})", when(d)))
            .unwrap_or_default();
        notes.push(format!(
            "The link works once, for you only, until {}. If it has expired before you have \
             done the step{due}, the next reminder brings a new one; or, with an API token (a \
             tenant administrator runs `rekey user token --email {recipient}`), `GET \
             {}/api/tasks` lists the step and {}/openapi.json says how to do it.",
            when(exp),
            input.base_url,
            input.base_url
        ));
    }
    let as_who = match access {
        Access::Contact { .. } => format!("a contact of receiver {receiver}"),
        Access::MayAct | Access::Informed => role_name(*to).to_string(),
    };
    Ok(MailText {
        headline,
        facts,
        why,
        todo,
        notes,
        attachments,
        fingerprint,
        as_who,
    })
}

fn watch_body(w: &WatchMail, input: &RenderInput<'_>) -> MailText {
    let WatchMail {
        recipient: _,
        alias,
        fingerprint,
        not_after,
        procedure,
        receiver,
        lead_days,
        renew_before_days,
        latest_start,
        start_command,
        not_opened_because,
    } = w;
    let now = input.now;
    let overdue = *latest_start < now;
    let headline = if overdue {
        format!(
            "No renewal of alias {alias} exists, and it is overdue: it should have started by {} \
             ({}). Its certificate expires on {} ({}).",
            when(*latest_start),
            relative(*latest_start, now),
            when(*not_after),
            relative(*not_after, now)
        )
    } else {
        format!(
            "It is time to renew alias {alias}: start the renewal by {}. Its certificate \
             expires on {} ({}).",
            when(*latest_start),
            when(*not_after),
            relative(*not_after, now)
        )
    };
    let receiver_name = receiver.as_deref().unwrap_or("the receiver");
    let mut facts: Vec<(&'static str, String)> = vec![
        ("Alias", alias.clone()),
        ("Certificate SHA-256", fingerprint.clone()),
        ("Expires", when(*not_after)),
        (
            "Procedure",
            procedure.map_or_else(
                || "not known: the tenant has several receivers (or none); planned with the longest".to_string(),
                |p| p.to_string(),
            ),
        ),
        ("Receiver", receiver.clone().unwrap_or_else(|| "not known".into())),
        (
            "Lead time",
            format!("{lead_days} days for the procedure's steps + {renew_before_days} days margin"),
        ),
        ("Start by", when(*latest_start)),
    ];
    if overdue {
        facts.push(("Overdue by", human_duration(now - *latest_start)));
    }
    MailText {
        headline,
        facts,
        why: Some(format!(
            "Messages signed with this certificate after {} will be rejected by {receiver_name}. \
             The renewal's steps take up to {lead_days} days, so it must start early enough for \
             every step to finish before then.",
            when(*not_after)
        )),
        todo: format!(
            "Start the renewal:\n  {start_command}\n(or with POST {}/api/renewals). rekey did not \
             open it itself because {not_opened_because}.",
            input.base_url
        ),
        notes: Vec::new(),
        attachments: Vec::new(),
        fingerprint: None,
        as_who: role_name(Role::TenantAdmin).to_string(),
    }
}

fn as2_body(a: &As2Mail) -> MailText {
    let As2Mail {
        recipient,
        renewal,
        alias,
        receiver,
        step,
        step_title,
        answer,
        signed_by,
        endpoint,
        next_check,
        new_certificate_fingerprint,
    } = a;
    MailText {
        headline: format!(
            "Your AS2 system refused rekey's test message for the renewal of {alias}: {step_title}."
        ),
        facts: vec![
            ("Your system answered", answer.clone()),
            ("Test message signed by", signed_by.clone()),
            ("Sent to", endpoint.clone()),
            ("Receiver", receiver.clone()),
            ("Renewal", renewal.to_string()),
            ("New certificate", new_certificate_fingerprint.clone()),
            ("Next test message", when(*next_check)),
        ],
        why: Some(format!(
            "The test message is signed exactly as {alias} will sign once this step is done. \
             Until your system accepts it, the step stays open: messages signed that way would \
             be refused too."
        )),
        todo: format!(
            "Install the new certificate (SHA-256 above) for this sender in your AS2 system. \
             rekey sends the test message again by itself and completes the step when your \
             system answers `processed`. You can also confirm the step yourself:\n  rekey task \
             complete {renewal}:{step} --fingerprint {new_certificate_fingerprint} --as {recipient}"
        ),
        notes: Vec::new(),
        attachments: Vec::new(),
        fingerprint: None,
        as_who: role_name(Role::ReceiverAdmin).to_string(),
    }
}

fn at_risk_body(a: &AtRiskMail, input: &RenderInput<'_>) -> MailText {
    let AtRiskMail {
        recipient,
        roles,
        renewal,
        procedure,
        alias,
        receiver,
        step,
        step_title,
        step_role,
        step_command,
        due_at,
        fingerprint,
        not_after,
        finish_at,
        remaining,
    } = a;
    let now = input.now;
    let owner = role_name(*step_role);
    let mut facts: Vec<(&'static str, String)> = vec![
        ("Renewal", format!("{renewal} ({procedure})")),
        ("Alias", alias.clone()),
        ("Receiver", receiver.clone()),
        ("Overdue step", format!("{step_title} (the {owner}'s)")),
        (
            "Was due",
            format!("{} ({})", when(*due_at), relative(*due_at, now)),
        ),
        ("Old certificate SHA-256", fingerprint.clone()),
        (
            "It expires",
            format!("{} ({})", when(*not_after), relative(*not_after, now)),
        ),
        ("Done now, the renewal ends", when(*finish_at)),
    ];
    if !remaining.is_empty() {
        facts.push(("Steps after it", remaining.join("; ")));
    }
    let owns = roles.contains(step_role);
    let todo = if owns {
        format!(
            "Do the step now: it is yours (step {step}, in your inbox at {}/inbox):\n  \
             {step_command} --as {recipient}",
            input.base_url
        )
    } else if roles.contains(&Role::TenantAdmin) {
        format!(
            "Reach the {owner} who must do \"{step_title}\" now. If it cannot be done in time, \
             decide with the receiver how to keep messages verifiable past {} (for example a \
             shorter procedure: rekey renewal cancel {renewal} while it can still be undone, then \
             a new renewal).",
            when(*not_after)
        )
    } else {
        format!(
            "Nothing is due from you yet; the {owner} must do \"{step_title}\" first. Be ready \
             for your step, and tell the tenant administrator if you can help it finish sooner."
        )
    };
    MailText {
        headline: format!(
            "The renewal of alias {alias} is stalled: \"{step_title}\" was due {}, and the \
             certificate it replaces expires on {} — before the renewal can end as planned.",
            relative(*due_at, now),
            when(*not_after)
        ),
        facts,
        why: Some(format!(
            "Messages signed with the old certificate after {} are rejected by {receiver}. Even \
             if the overdue step is done now, the steps after it take until {} as planned.",
            when(*not_after),
            when(*finish_at)
        )),
        todo,
        notes: Vec::new(),
        attachments: Vec::new(),
        fingerprint: None,
        as_who: roles
            .iter()
            .map(|r| role_name(*r))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn tenant_changed_body(t: &TenantChangedMail) -> MailText {
    let TenantChangedMail {
        recipient,
        tenant,
        renewal,
        procedure,
        alias,
        differences,
    } = t;
    let show = |f: &Option<String>, none: &str| f.clone().unwrap_or_else(|| none.to_string());
    let mut facts: Vec<(&'static str, String)> = vec![
        ("Renewal", format!("{renewal} ({procedure})")),
        ("Alias renewed", alias.clone()),
    ];
    for d in differences {
        facts.push(("Alias on the tenant", d.alias.clone()));
        facts.push(("  rekey recorded", show(&d.recorded, "no key")));
        facts.push(("  the tenant holds", show(&d.found, "no key pair")));
    }
    MailText {
        headline: format!(
            "rekey stopped the renewal of {alias}: the SAP Cloud Integration tenant was changed \
             outside rekey."
        ),
        facts,
        why: Some(
            "Every step of a renewal is judged against the keys rekey recorded on the tenant. \
             A key created, exchanged or deleted there by hand makes that judgement wrong, so \
             rekey refuses the renewal's next action rather than let the receiver get a message \
             it cannot verify."
                .to_string(),
        ),
        todo: format!(
            "Find out who changed the tenant's keystore and why. Either put the key back as rekey \
             recorded it (SHA-256 above) and repeat the refused action, or cancel the renewal, \
             bring rekey's record up to date and start again:\n  rekey --tenant {tenant} renewal \
             cancel {renewal} --as {recipient}\n  rekey --tenant {tenant} tenant sync\n  \
             rekey tenant show --tenant {tenant}"
        ),
        notes: Vec::new(),
        attachments: Vec::new(),
        fingerprint: None,
        as_who: role_name(Role::TenantAdmin).to_string(),
    }
}

fn failed_body(f: &FailedMail) -> MailText {
    let FailedMail {
        recipient: _,
        message_id,
        failed_recipient,
        subject,
        error,
        renewal,
        alias,
    } = f;
    let mut facts: Vec<(&'static str, String)> = vec![
        ("To", failed_recipient.clone()),
        ("Subject", subject.clone()),
        ("Message-ID", message_id.clone()),
        ("Error", error.clone()),
    ];
    if let Some(r) = renewal {
        facts.push(("Renewal", r.to_string()));
    }
    if let Some(a) = alias {
        facts.push(("Alias", a.clone()));
    }
    MailText {
        headline: "An email from rekey could not be delivered.".into(),
        facts,
        why: Some(
            "The recipient did not get the email, so a step of a renewal may wait for someone \
             who does not know about it."
                .into(),
        ),
        todo: "Check the address and tell them, or fix the address and queue the mail again \
               with `rekey mail retry <id>` (`rekey mail list --state failed` shows the id)."
            .into(),
        notes: Vec::new(),
        attachments: Vec::new(),
        fingerprint: None,
        as_who: role_name(Role::TenantAdmin).to_string(),
    }
}

fn lay_out(input: &RenderInput<'_>, b: MailText) -> Rendered {
    let footer = format!(
        "This message was sent by rekey to {} as {}.",
        input.recipient, b.as_who
    );
    // Plain text.
    let mut text = String::new();
    let _ = writeln!(text, "Hello,\n\n{}\n", b.headline);
    let width = b.facts.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (label, value) in &b.facts {
        let _ = writeln!(text, "  {:<width$} {value}", format!("{label}:"));
    }
    let _ = writeln!(text, "\nWhat to do: {}", b.todo);
    if let Some(w) = &b.why {
        let _ = writeln!(text, "\nWhy it matters: {w}");
    }
    if let Some(link) = input.link {
        let _ = writeln!(text, "\nOpen the task: {link}");
    }
    for note in &b.notes {
        let _ = writeln!(text, "\n{note}");
    }
    let _ = writeln!(text, "\n-- \n{footer}");

    // HTML: every value escaped.
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body>",
        html_escape(input.subject)
    );
    let _ = writeln!(html, "<p>Hello,</p>\n<p>{}</p>", html_escape(&b.headline));
    if !b.facts.is_empty() {
        let _ = writeln!(html, "<table>");
        for (label, value) in &b.facts {
            let _ = writeln!(
                html,
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                html_escape(label),
                html_escape(value)
            );
        }
        let _ = writeln!(html, "</table>");
    }
    let _ = writeln!(
        html,
        "<p><strong>What to do:</strong> {}</p>",
        html_escape(&b.todo).replace('\n', "<br>\n")
    );
    if let Some(w) = &b.why {
        let _ = writeln!(
            html,
            "<p><strong>Why it matters:</strong> {}</p>",
            html_escape(w)
        );
    }
    if let Some(link) = input.link {
        let l = html_escape(link);
        let _ = writeln!(html, "<p><a href=\"{l}\">Open the task</a><br>{l}</p>");
    }
    for note in &b.notes {
        let _ = writeln!(html, "<p>{}</p>", html_escape(note).replace('\n', "<br>\n"));
    }
    let _ = writeln!(
        html,
        "<hr><p><small>{}</small></p>\n</body></html>",
        html_escape(&footer)
    );
    Rendered {
        subject: input.subject.to_string(),
        text: crlf(&text),
        html: crlf(&html),
        attachments: b.attachments,
        certificate_fingerprint: b.fingerprint,
    }
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
    use rekey_store::mail::StepInfo;

    fn notice(kind: NoticeKind) -> OutboxMail {
        OutboxMail::Notice(NoticeMail {
            notice: Notice {
                to: Role::ReceiverAdmin,
                kind,
                step: Some("switch-receiver".into()),
                attach_certificate: None,
                test_message: None,
                test_steps: Vec::new(),
                due_at: Some(DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000)),
                refused: None,
            },
            renewal: Uuid::nil(),
            procedure: rekey_engine::ProcedureId::DualTrust,
            alias: "orders <&> \"x\"".into(),
            receiver: "acme".into(),
            recipient: "a@b.example".into(),
            step: Some(StepInfo {
                id: "switch-receiver".into(),
                title: "Receiver trusts the new certificate".into(),
                seed: "3".into(),
                role: Role::ReceiverAdmin,
                with_role: None,
                told: None,
            }),
            access: Access::MayAct,
            new_certificate_fingerprint: None,
            attachments: Attachments::default(),
        })
    }

    fn input<'a>(mail: &'a OutboxMail, now: DateTime<Utc>) -> RenderInput<'a> {
        RenderInput {
            mail,
            subject: "[rekey] Reminder",
            recipient: "a@b.example",
            link: link_target(mail).map(|_| "https://rekey.example/tasks/abc"),
            link_expires_at: Some(now + Duration::hours(72)),
            base_url: "https://rekey.example",
            certificate_expires_at: Some(now + Duration::days(30)),
            now,
        }
    }

    fn due(m: &OutboxMail) -> DateTime<Utc> {
        match m {
            OutboxMail::Notice(n) => n.notice.due_at.unwrap_or_default(),
            _ => DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    /// Every signer step that sends to the receiver signs alike: one test message, and the
    /// mail says so naming the steps. When they differ: one numbered message per way.
    #[test]
    fn test_messages_say_which_signer_steps_they_stand_for() -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"der");
        let mut m = notice(NoticeKind::StepDue);
        let set = |m: &mut OutboxMail, groups: Vec<Vec<&str>>| {
            if let OutboxMail::Notice(n) = m {
                n.attachments.test_messages = groups
                    .into_iter()
                    .map(|g| TestMessage {
                        signer_steps: g.into_iter().map(String::from).collect(),
                        base64: b64.clone(),
                    })
                    .collect();
            }
        };
        set(&mut m, vec![vec!["F/S", "F/T"]]);
        let r = render(&input(&m, due(&m)))?;
        let text = r.text.replace("\r\n", " ");
        assert!(
            text.contains("All signer steps that send to you (F/S, F/T) will sign alike"),
            "{text}"
        );
        let names: Vec<&str> = r.attachments.iter().map(|a| a.filename.as_str()).collect();
        assert_eq!(names, vec!["test-message.p7m"]);
        set(&mut m, vec![vec!["F/S"], vec!["F/T"]]);
        let r = render(&input(&m, due(&m)))?;
        let text = r.text.replace("\r\n", " ");
        assert!(
            text.contains(
                "test-message-2.p7m (CMS SignedData, DER) is signed the way signer step(s) F/T"
            ),
            "{text}"
        );
        let names: Vec<&str> = r.attachments.iter().map(|a| a.filename.as_str()).collect();
        assert_eq!(names, vec!["test-message-1.p7m", "test-message-2.p7m"]);
        Ok(())
    }

    #[test]
    fn crlf_normalises_every_ending() {
        assert_eq!(crlf("a\nb\r\nc\rd\n.\n"), "a\r\nb\r\nc\r\nd\r\n.\r\n");
        assert_eq!(crlf("\r\r\n\n"), "\r\n\r\n\r\n");
    }

    #[test]
    fn reminder_says_how_overdue_with_link_and_expiry() -> Result<()> {
        let m = notice(NoticeKind::Reminder);
        let now = due(&m) + Duration::days(2) + Duration::hours(3);
        let r = render(&input(&m, now))?;
        assert!(r.text.contains("Overdue by: 2 days 3 hours"), "{}", r.text);
        assert!(r.text.contains("https://rekey.example/tasks/abc"));
        assert!(
            r.text
                .contains("If it has expired before you have done the step")
        );
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
    fn an_as2_refusal_tells_the_receivers_words_and_how_to_go_on() -> Result<()> {
        let now = Utc::now();
        let m = OutboxMail::As2Refused(As2Mail {
            recipient: "ops@erp.example".into(),
            renewal: Uuid::nil(),
            alias: "signer-2026".into(),
            receiver: "ERP".into(),
            step: "switch-receiver".into(),
            step_title: "Exchange the certificate in the receiver system".into(),
            answer: "processed/Error: authentication-failed <b>".into(),
            signed_by: "SHA-256 ab".into(),
            endpoint: "https://as2.erp.example/as2".into(),
            next_check: now,
            new_certificate_fingerprint: "ab:cd".into(),
        });
        assert_eq!(link_target(&m), None);
        let r = render(&input(&m, now))?;
        assert!(
            r.text
                .contains("processed/Error: authentication-failed <b>"),
            "{}",
            r.text
        );
        assert!(
            r.html.contains("authentication-failed &lt;b&gt;"),
            "{}",
            r.html
        );
        assert!(
            r.text.contains("rekey task complete 00000000-0000-0000-0000-000000000000:switch-receiver --fingerprint ab:cd"),
            "{}",
            r.text
        );
        Ok(())
    }

    #[test]
    fn header_values_with_cr_or_lf_are_refused() -> Result<()> {
        let m = notice(NoticeKind::StepDue);
        let now = Utc::now();
        let mut r = render(&input(&m, now))?;
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
    fn every_kind_renders_what_happened_what_to_do_and_why() -> Result<()> {
        use NoticeKind::*;
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_001);
        let mut mails: Vec<OutboxMail> = [
            StepDue,
            Inform,
            Reminder,
            Escalation,
            WindowProposed,
            WindowAgreed,
            Completed,
            Cancelled,
            RolledBack,
        ]
        .into_iter()
        .map(notice)
        .collect();
        let mut csr = notice(CertificateRequest);
        if let OutboxMail::Notice(n) = &mut csr {
            n.attachments.csr_pem = Some(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            );
        }
        mails.push(csr);
        mails.push(OutboxMail::DeliveryFailed(FailedMail {
            recipient: "a@b.example".into(),
            message_id: "<m@rekey>".into(),
            failed_recipient: "gone@x.example".into(),
            subject: "s".into(),
            error: "550 no such user".into(),
            renewal: Some(Uuid::nil()),
            alias: Some("orders".into()),
        }));
        for m in &mails {
            let r = render(&input(m, now))?;
            for body in [&r.text, &r.html] {
                assert!(
                    body.contains("00000000-0000-0000-0000-000000000000"),
                    "{m:?}"
                );
                assert!(body.contains("What to do:"), "{m:?}");
                assert!(!body.replace("\r\n", "").contains(['\r', '\n']), "{m:?}");
            }
            let (final_kind, action) = match m {
                OutboxMail::Notice(n) => (
                    matches!(n.notice.kind, Completed | Cancelled | RolledBack),
                    asks_for_action(n.notice.kind),
                ),
                _ => (false, false),
            };
            assert_eq!(r.text.contains("Why it matters"), !final_kind, "{m:?}");
            assert_eq!(r.text.contains("/tasks/"), action, "{m:?}");
            if let OutboxMail::Notice(_) = m {
                assert!(r.text.contains("acme") && r.text.contains("receiver administrator"));
            } else {
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
    fn a_contact_without_an_account_gets_no_link_and_the_command_for_access() -> Result<()> {
        let mut m = notice(NoticeKind::StepDue);
        if let OutboxMail::Notice(n) = &mut m {
            n.access = Access::Contact {
                command: "rekey user add --tenant t --email a@b.example --role receiver_admin --receiver acme".into(),
            };
        }
        assert_eq!(link_target(&m), None);
        let r = render(&input(&m, Utc::now()))?;
        assert!(!r.text.contains("/tasks/"), "{}", r.text);
        assert!(r.text.contains("no rekey account"), "{}", r.text);
        assert!(
            r.text
                .contains("rekey user add --tenant t --email a@b.example")
        );
        Ok(())
    }

    #[test]
    fn a_refused_automatic_action_says_so_with_the_guards_reason() -> Result<()> {
        let mut m = notice(NoticeKind::Escalation);
        let reason = "step x refused: signer step F/S: no signature <trusted> & \"y\"";
        if let OutboxMail::Notice(n) = &mut m {
            n.notice.refused = Some(reason.into());
        }
        let now = due(&m) - Duration::days(1);
        let r = render(&input(&m, now))?;
        assert!(r.text.contains("did not do") && r.text.contains("automatically"));
        assert!(
            r.text.contains(&format!("Refused because: {reason}")),
            "{}",
            r.text
        );
        assert!(!r.text.contains("is overdue") && !r.text.contains("needs attention"));
        assert!(r.text.contains("rekey task approve 00000000-0000-0000-0000-000000000000:switch-receiver --as a@b.example"), "{}", r.text);
        assert!(
            r.html
                .contains("no signature &lt;trusted&gt; &amp; &quot;y&quot;")
        );
        Ok(())
    }

    #[test]
    fn a_certificate_request_mail_without_its_request_is_a_bug() {
        let m = notice(NoticeKind::CertificateRequest);
        assert!(render(&input(&m, Utc::now())).is_err());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::minutes(45)), "45 minutes");
        assert_eq!(human_duration(Duration::hours(25)), "1 day 1 hour");
        assert_eq!(human_duration(Duration::days(3)), "3 days");
        assert_eq!(human_duration(Duration::zero()), "0 minutes");
    }
}
