//! How an email leaves rekey: SMTP (lettre, pooled; STARTTLS, implicit TLS or plain; AUTH) or
//! the file transport, which writes each message as `<message-id>.eml` into a directory so
//! that trying rekey needs no mail server.
//!
//! Failures are classified for the dispatcher: connection problems, timeouts, TLS problems,
//! 4xx answers and rejected credentials (a configuration fault that is fixed by fixing the
//! configuration, not the mail) are [`SendError::Retryable`]; other 5xx answers (address
//! rejected, message refused) are [`SendError::Permanent`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{NotifierError, Result, SendError};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (required; port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or in tests.
    None,
}

impl std::str::FromStr for TlsMode {
    type Err = NotifierError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(TlsMode::Starttls),
            "tls" => Ok(TlsMode::Tls),
            "none" => Ok(TlsMode::None),
            other => Err(NotifierError::Config(format!(
                "unknown TLS mode {other:?}; use \"starttls\", \"tls\" or \"none\""
            ))),
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsMode::Starttls => "starttls",
            TlsMode::Tls => "tls",
            TlsMode::None => "none",
        })
    }
}

/// SMTP settings. `Debug` does not show the password.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Server host name (also the name its certificate must carry).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// AUTH user name; no AUTH when `None`.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<String>,
    /// Extra trusted root certificates (PEM), e.g. a private CA or a test certificate.
    pub root_certificates_pem: Vec<String>,
    /// Connection and command timeout.
    pub timeout: Duration,
    /// Connections kept in the pool.
    pub pool_size: u32,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("root_certificates", &self.root_certificates_pem.len())
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl SmtpSettings {
    /// Settings for `host:port` with `tls`, no AUTH, 30 s timeout, a pool of 4.
    pub fn new(host: impl Into<String>, port: u16, tls: TlsMode) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port,
            tls,
            username: None,
            password: None,
            root_certificates_pem: Vec::new(),
            timeout: Duration::from_secs(30),
            pool_size: 4,
        }
    }
}

/// A way to deliver email.
#[derive(Clone)]
pub enum Transport {
    /// Write `.eml` files into a directory.
    File(PathBuf),
    /// Send through an SMTP server.
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>, String),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::File(d) => write!(f, "Transport::File({})", d.display()),
            Transport::Smtp(_, desc) => write!(f, "Transport::Smtp({desc})"),
        }
    }
}

impl Transport {
    /// The file transport writing into `dir` (created when needed).
    pub fn file(dir: impl Into<PathBuf>) -> Transport {
        Transport::File(dir.into())
    }

    /// An SMTP transport. Connects lazily, on the first send.
    pub fn smtp(s: &SmtpSettings) -> Result<Transport> {
        if s.host.trim().is_empty() {
            return Err(NotifierError::Config("no SMTP host configured".into()));
        }
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(s.port)
            .timeout(Some(s.timeout))
            .pool_config(PoolConfig::new().max_size(s.pool_size.max(1)));
        if s.tls != TlsMode::None {
            let mut p = TlsParameters::builder(s.host.clone());
            for pem in &s.root_certificates_pem {
                let c = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| NotifierError::Config(format!("extra root certificate: {e}")))?;
                p = p.add_root_certificate(c);
            }
            let p = p
                .build_rustls()
                .map_err(|e| NotifierError::Config(format!("TLS: {e}")))?;
            b = b.tls(match s.tls {
                TlsMode::Tls => Tls::Wrapper(p),
                _ => Tls::Required(p),
            });
        } else {
            b = b.tls(Tls::None);
        }
        match (&s.username, &s.password) {
            (Some(u), Some(p)) => b = b.credentials(Credentials::new(u.clone(), p.clone())),
            (Some(_), None) => {
                return Err(NotifierError::Config(
                    "an SMTP user name is configured but no password".into(),
                ));
            }
            _ => {}
        }
        let desc = format!("{}:{} ({})", s.host, s.port, s.tls);
        Ok(Transport::Smtp(Box::new(b.build()), desc))
    }

    /// One line saying where mail goes.
    pub fn describe(&self) -> String {
        match self {
            Transport::File(d) => format!("files in {}", d.display()),
            Transport::Smtp(_, desc) => format!("SMTP {desc}"),
        }
    }

    /// Delivers `msg`, whose Message-ID is `message_id`.
    pub async fn send(&self, msg: Message, message_id: &str) -> Result<(), SendError> {
        match self {
            Transport::File(dir) => write_file(dir, &msg.formatted(), message_id).map_err(|e| {
                SendError::Retryable(format!("cannot write to {}: {e}", dir.display()))
            }),
            Transport::Smtp(t, _) => match t.send(msg).await {
                Ok(_) => Ok(()),
                Err(e) => Err(classify(&e)),
            },
        }
    }
}

/// `<abc@rekey>` → `abc@rekey.eml`; anything but `[A-Za-z0-9@._-]` becomes `_`.
pub fn file_name(message_id: &str) -> String {
    let inner = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let safe: String = inner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.eml", safe.trim_start_matches('.'))
}

/// Writes the message once: to a temporary name, then renamed; an existing file of the same
/// Message-ID means it was delivered already.
fn write_file(dir: &Path, bytes: &[u8], message_id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = dir.join(file_name(message_id));
    if target.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!(".{}.tmp", file_name(message_id)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &target)
}

fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let msg = e.to_string();
    if e.is_permanent() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        // Rejected credentials or a required AUTH/TLS: the configuration is wrong, not the mail.
        if matches!(code.as_str(), "530" | "534" | "535" | "538") {
            return SendError::Retryable(msg);
        }
        return SendError::Permanent(msg);
    }
    SendError::Retryable(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name("<0a1b@rekey>"), "0a1b@rekey.eml");
        assert_eq!(file_name("<../../etc/x>"), "_.._etc_x.eml");
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!("STARTTLS".parse::<TlsMode>().ok(), Some(TlsMode::Starttls));
        assert_eq!("tls".parse::<TlsMode>().ok(), Some(TlsMode::Tls));
        assert!("ssl".parse::<TlsMode>().is_err());
    }

    #[test]
    fn password_is_not_printed() {
        let mut s = SmtpSettings::new("smtp.example", 587, TlsMode::Starttls);
        s.username = Some("u".into());
        s.password = Some("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
