//! The SAP Cloud Integration connector's client: a tenant's public OData V2 APIs reached with
//! an OAuth client-credentials token, over [`crate::http`] (no second HTTP stack). It owns the
//! protocol details of `../shared/design/CONNECTORS.md` part A — the token cached and fetched
//! again before it runs out (and once more on a 401), the CSRF token and its session cookies
//! for modifying calls (fetched again once on a 403), 429/503/423 ("keystore is locked")
//! retried with a bounded back-off that honours `Retry-After`, a deadline on every call,
//! `{"d":…}` envelopes, `/Date(ms)/` dates, hex aliases, and SAP's error bodies turned into
//! [`SapCiError`]s carrying SAP's own message text.
//!
//! It reads (keystore entries, an integration flow's externalized parameters) and probes
//! which API roles the client holds ([`SapCiClient::check`]); it must not log or return the
//! client secret or a token: `Debug` of [`ClientSecret`] is redacted, and log events carry the
//! call's name and status only.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rekey_crypto::Certificate;
use rekey_model::Fingerprint;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::http::{self, HttpAnswer, HttpError, Method};

/// The role that reads keystore entries and the deployed artifacts (CONNECTORS.md A1).
pub const ROLE_READ: &str = "MonitoringDataRead";
/// The role that adds, replaces and deletes keystore entries.
pub const ROLE_KEYSTORE_EDIT: &str = "SecurityMaterialEdit";
/// The role that configures artifacts (externalized parameters).
pub const ROLE_CONFIGURE: &str = "WorkspacePackagesConfigure";
/// The role that deploys and undeploys artifacts.
pub const ROLE_DEPLOY: &str = "WorkspaceArtifactsDeploy";

/// How long a call may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a call is sent when the tenant answers 429, 503 or 423.
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// The longest wait between two attempts, whatever `Retry-After` asks for.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first wait when the answer names none; doubled per attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Where the client secret is read from. Names only the place, so `Debug` shows no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file holding the secret; surrounding whitespace (a final newline) is ignored.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
    /// The BTP service key (JSON) the secret is the `clientsecret` of.
    ServiceKey(PathBuf),
}

impl SecretSource {
    /// Reads the secret, refusing a missing or empty file and an unset or empty variable.
    pub fn read(&self) -> Result<ClientSecret, SapCiError> {
        let (text, place) = match self {
            SecretSource::ServiceKey(path) => return Ok(ServiceKey::read(path)?.secret),
            SecretSource::File(path) => (
                std::fs::read_to_string(path).map_err(|e| SapCiError::Secret {
                    place: format!("file {}", path.display()),
                    reason: e.to_string(),
                })?,
                format!("file {}", path.display()),
            ),
            SecretSource::Env(var) => (
                std::env::var(var).map_err(|e| SapCiError::Secret {
                    place: format!("environment variable {var}"),
                    reason: match e {
                        std::env::VarError::NotPresent => "is not set".into(),
                        std::env::VarError::NotUnicode(_) => "is not valid UTF-8".into(),
                    },
                })?,
                format!("environment variable {var}"),
            ),
        };
        let secret = text.trim();
        if secret.is_empty() {
            return Err(SapCiError::Secret {
                place,
                reason: "is empty".into(),
            });
        }
        Ok(ClientSecret(secret.to_string()))
    }
}

/// A BTP service key of key type ClientId/Secret (CONNECTORS.md A1): `url`, `tokenurl`,
/// `clientid` and `clientsecret`, at the top level or nested under `"oauth"` (both are
/// accepted: which one the cockpit writes is unconfirmed).
#[derive(Debug, Clone)]
pub struct ServiceKey {
    /// `url`.
    pub url: String,
    /// `tokenurl`.
    pub token_url: String,
    /// `clientid`.
    pub client_id: String,
    /// `clientsecret`.
    pub secret: ClientSecret,
}

impl ServiceKey {
    /// Reads and parses the service key at `path`; errors name the file and the missing
    /// field, never a value.
    pub fn read(path: &std::path::Path) -> Result<Self, SapCiError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SapCiError::ServiceKey {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| SapCiError::ServiceKey {
            path: shown,
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("is not JSON (line {})", e.line()))?;
        let field = |k: &str| -> Result<String, String> {
            let found = v
                .get(k)
                .or_else(|| v.get("oauth").and_then(|o| o.get(k)))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty());
            found
                .map(str::to_string)
                .ok_or_else(|| format!("has no {k} (at the top level or under \"oauth\")"))
        };
        Ok(ServiceKey {
            url: field("url")?,
            token_url: field("tokenurl")?,
            client_id: field("clientid")?,
            secret: ClientSecret(field("clientsecret").map_err(|_| {
                "has no clientsecret (a certificate key? use key type ClientId/Secret)".to_string()
            })?),
        })
    }
}

/// The OAuth client secret, held only in memory while the client lives. `Debug` shows `***`.
#[derive(Clone)]
pub struct ClientSecret(String);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// How to reach one tenant, from `[keystores.<tenant>]` with `backend = "sap-ci"`: the
/// service key's `url` and `tokenurl`, its `clientid`, and where its `clientsecret` is kept
/// (never the secret itself, so this can be printed and compared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SapCiConfig {
    /// The service key's `url` (the API root is this plus `/api/v1`).
    pub url: String,
    /// The service key's `tokenurl`.
    pub token_url: String,
    /// The service key's `clientid`.
    pub client_id: String,
    /// Where the service key's `clientsecret` is read from.
    pub client_secret: SecretSource,
    /// The deadline of each HTTP exchange.
    pub timeout: Duration,
    /// How many times a call is sent while the tenant answers 429, 503 or 423.
    pub attempts: u32,
    /// The country (`C`) of keys rekey generates on the tenant when the certificate they
    /// replace names none: the tenant requires one in every generated key's subject.
    pub country: Option<String>,
}

impl SapCiConfig {
    /// The OData service root, `{url}/api/v1`, also when `url` already ends in `/api/v1`.
    pub fn api_root(&self) -> String {
        let base = self.url.trim_end_matches('/');
        let base = base.strip_suffix("/api/v1").unwrap_or(base);
        format!("{base}/api/v1")
    }
}

/// What went wrong talking to the tenant. Texts carry SAP's own message where it sent one.
#[derive(Debug, Error)]
pub enum SapCiError {
    /// The client secret could not be read.
    #[error("client secret from {place} {reason}")]
    Secret {
        /// Which file or variable.
        place: String,
        /// Why not.
        reason: String,
    },
    /// The service key file could not be read or lacks a field.
    #[error("service key {path}: {reason}")]
    ServiceKey {
        /// The file.
        path: String,
        /// What is wrong (never a value from it).
        reason: String,
    },
    /// No answer (connection, TLS, deadline).
    #[error("{call}: {source}")]
    Http {
        /// The call, e.g. `GET /KeystoreEntries`.
        call: String,
        /// Why.
        source: HttpError,
    },
    /// The token endpoint refused the client credentials.
    #[error("the token endpoint refused the client credentials ({status}): {message}")]
    Credentials {
        /// HTTP status.
        status: u16,
        /// The endpoint's text.
        message: String,
    },
    /// The client lacks the API role the call needs.
    #[error(
        "{call}: forbidden (403): the API client lacks the role {role}{}",
        detail(message)
    )]
    Forbidden {
        /// The call.
        call: String,
        /// The role CONNECTORS.md A1 names for it.
        role: &'static str,
        /// SAP's text, when it sent one.
        message: Option<String>,
    },
    /// The keystore stayed locked (or the tenant busy) through every attempt.
    #[error("{call}: still {status} after {attempts} attempts: {message}")]
    Busy {
        /// The call.
        call: String,
        /// The last status (429, 503 or 423).
        status: u16,
        /// How many times it was sent.
        attempts: u32,
        /// SAP's text.
        message: String,
    },
    /// Any other error answer.
    #[error("{call}: {status}: {message}")]
    Api {
        /// The call.
        call: String,
        /// HTTP status.
        status: u16,
        /// SAP's text.
        message: String,
    },
    /// A success answer rekey cannot read.
    #[error("{call}: unexpected answer: {reason}")]
    Answer {
        /// The call.
        call: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A name rekey will not put into a URL.
    #[error("{what} {value:?}: {reason}")]
    Input {
        /// What the value is.
        what: &'static str,
        /// As given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

/// A cached access token.
#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
    lifetime: Duration,
}

impl Token {
    /// Usable for one more call: not within a tenth of its lifetime (at most a minute) of
    /// running out, so a call never starts with a token about to expire.
    fn fresh(&self, now: Instant) -> bool {
        let margin = (self.lifetime / 10).min(Duration::from_secs(60));
        now + margin < self.expires
    }
}

/// The CSRF token and the session cookies it belongs to.
#[derive(Clone, Default)]
struct Csrf {
    token: Option<String>,
    cookies: Vec<String>,
}

/// Counts of what the client did, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Access tokens fetched.
    pub tokens: u32,
    /// CSRF tokens fetched.
    pub csrf_fetches: u32,
    /// Calls sent again after 429, 503 or 423.
    pub retries: u32,
}

/// A client for one tenant. Holds the secret in memory; cheap to keep for a command's life.
pub struct SapCiClient {
    config: SapCiConfig,
    secret: ClientSecret,
    token: Mutex<Option<Token>>,
    csrf: Mutex<Option<Csrf>>,
    traffic: Mutex<Traffic>,
}

impl fmt::Debug for SapCiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SapCiClient")
            .field("config", &self.config)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// A body to send.
struct Body<'a> {
    content_type: &'a str,
    bytes: Vec<u8>,
}

impl SapCiClient {
    /// Reads the secret and makes a client; nothing is sent yet.
    pub fn new(config: SapCiConfig) -> Result<Self, SapCiError> {
        let secret = config.client_secret.read()?;
        Ok(SapCiClient {
            config,
            secret,
            token: Mutex::default(),
            csrf: Mutex::default(),
            traffic: Mutex::default(),
        })
    }

    /// The configuration it was made from.
    pub fn config(&self) -> &SapCiConfig {
        &self.config
    }

    /// What the client did so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic.lock().map(|t| *t).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut Traffic)) {
        if let Ok(mut t) = self.traffic.lock() {
            f(&mut t);
        }
    }

    /// A usable access token: the cached one, or a new one from the token endpoint.
    async fn access_token(&self) -> Result<String, SapCiError> {
        let cached = self.token.lock().ok().and_then(|t| t.clone());
        if let Some(t) = cached.filter(|t| t.fresh(Instant::now())) {
            return Ok(t.value);
        }
        let t = self.fetch_token().await?;
        let value = t.value.clone();
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some(t);
        }
        Ok(value)
    }

    fn forget_token(&self) {
        if let Ok(mut slot) = self.token.lock() {
            *slot = None;
        }
    }

    /// `POST {tokenurl}?grant_type=client_credentials`, client by HTTP Basic, the grant also
    /// in the form body (CONNECTORS.md A1); retried while the endpoint answers 429 or 503.
    async fn fetch_token(&self) -> Result<Token, SapCiError> {
        let call = "POST token endpoint".to_string();
        let sep = if self.config.token_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{sep}grant_type=client_credentials",
            self.config.token_url
        );
        // As the observed clients send it (CONNECTORS.md A1): `clientid:clientsecret` as they
        // stand in the service key, not form-encoded first.
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.config.client_id, self.secret.0));
        let headers = [
            ("authorization", format!("Basic {basic}")),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept", "application/json".to_string()),
        ];
        let mut attempt = 0;
        let answer = loop {
            let started = Instant::now();
            let answer = http::request(
                Method::Post,
                &url,
                &headers,
                b"grant_type=client_credentials".to_vec(),
                self.config.timeout,
            )
            .await
            .map_err(|source| SapCiError::Http {
                call: call.clone(),
                source,
            })?;
            if matches!(answer.status, 429 | 503) && attempt + 1 < self.config.attempts {
                self.back_off(&call, &answer, attempt).await;
                attempt += 1;
                continue;
            }
            self.count(|t| t.tokens += 1);
            break (answer, started);
        };
        let (answer, started) = answer;
        match answer.status {
            200 => {}
            400 | 401 | 403 => {
                return Err(SapCiError::Credentials {
                    status: answer.status,
                    message: error_text(&answer),
                });
            }
            status => {
                return Err(SapCiError::Api {
                    call,
                    status,
                    message: error_text(&answer),
                });
            }
        }
        let json: Value = serde_json::from_slice(&answer.body).map_err(|e| SapCiError::Answer {
            call: call.clone(),
            reason: format!("not JSON: {e}"),
        })?;
        let value = json
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SapCiError::Answer {
                call: call.clone(),
                reason: "no access_token".into(),
            })?
            .to_string();
        // expires_in as a number or a string; A1's default (43200 s) when absent.
        let seconds = match json.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(43_200);
        let lifetime = Duration::from_secs(seconds);
        Ok(Token {
            value,
            expires: started + lifetime,
            lifetime,
        })
    }

    /// Waits before attempt `attempt + 1`: `Retry-After` seconds when given, else an
    /// exponential back-off; never longer than [`MAX_BACKOFF`].
    async fn back_off(&self, call: &str, answer: &HttpAnswer, attempt: u32) {
        let wait = answer
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or_else(|| FIRST_BACKOFF * 2u32.saturating_pow(attempt.min(16)))
            .min(MAX_BACKOFF);
        tracing::info!(
            call = template(call),
            status = answer.status,
            attempt = attempt + 1,
            wait_ms = wait.as_millis() as u64,
            "SAP tenant busy; retrying"
        );
        self.count(|t| t.retries += 1);
        tokio::time::sleep(wait).await;
    }

    /// Sends `method path` to the API root with the bearer token and `extra` headers: a 401
    /// gets a new token once, 429/503/423 are retried with back-off.
    async fn send(
        &self,
        method: Method,
        path: &str,
        extra: &[(&str, String)],
        body: Option<&Body<'_>>,
    ) -> Result<HttpAnswer, SapCiError> {
        let call = call_name(method, path);
        let url = format!("{}{path}", self.config.api_root());
        let mut reauthorised = false;
        let mut attempt = 0;
        loop {
            let token = self.access_token().await?;
            let mut headers: Vec<(&str, String)> = vec![
                ("authorization", format!("Bearer {token}")),
                ("accept", "application/json".to_string()),
            ];
            headers.extend(extra.iter().cloned());
            // A PEM chain goes without a content type (A7).
            if let Some(b) = body
                && !b.content_type.is_empty()
            {
                headers.push(("content-type", b.content_type.to_string()));
            }
            let bytes = body.map(|b| b.bytes.clone()).unwrap_or_default();
            let answer = http::request(method, &url, &headers, bytes, self.config.timeout)
                .await
                .map_err(|source| SapCiError::Http {
                    call: call.clone(),
                    source,
                })?;
            match answer.status {
                401 if !reauthorised => {
                    tracing::info!(
                        call = template(&call),
                        "SAP tenant refused the token; fetching a new one"
                    );
                    self.forget_token();
                    reauthorised = true;
                }
                429 | 503 | 423 if attempt + 1 < self.config.attempts => {
                    self.back_off(&call, &answer, attempt).await;
                    attempt += 1;
                }
                429 | 503 | 423 => {
                    return Err(SapCiError::Busy {
                        call,
                        status: answer.status,
                        attempts: attempt + 1,
                        message: error_text(&answer),
                    });
                }
                _ => return Ok(answer),
            }
        }
    }

    /// The CSRF token and session cookies for modifying calls: `GET {root}/` with
    /// `X-CSRF-Token: Fetch`. A tenant that sends no token gets calls without one (A3).
    async fn csrf(&self) -> Result<Csrf, SapCiError> {
        if let Some(c) = self.csrf.lock().ok().and_then(|c| c.clone()) {
            return Ok(c);
        }
        let answer = self
            .send(
                Method::Get,
                "/",
                &[("x-csrf-token", "Fetch".to_string())],
                None,
            )
            .await?;
        self.count(|t| t.csrf_fetches += 1);
        if !(200..300).contains(&answer.status) {
            return Err(self.refusal(call_name(Method::Get, "/"), ROLE_READ, &answer));
        }
        let token = answer
            .header("x-csrf-token")
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("required"))
            .map(str::to_string);
        let cookies = answer
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .map(|c| c.trim().to_string())
            .filter(|c| c.contains('='))
            .collect();
        let c = Csrf { token, cookies };
        if let Ok(mut slot) = self.csrf.lock() {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    fn forget_csrf(&self) {
        if let Ok(mut slot) = self.csrf.lock() {
            *slot = None;
        }
    }

    /// A modifying call: CSRF token and cookies sent; on a 403 they are fetched again and
    /// the call sent once more (the token may have gone stale with its session).
    async fn modify(
        &self,
        method: Method,
        path: &str,
        body: &Body<'_>,
    ) -> Result<HttpAnswer, SapCiError> {
        let mut refetched = false;
        loop {
            let csrf = self.csrf().await?;
            let mut extra = Vec::new();
            if let Some(t) = &csrf.token {
                extra.push(("x-csrf-token", t.clone()));
            }
            if !csrf.cookies.is_empty() {
                extra.push(("cookie", csrf.cookies.join("; ")));
            }
            let answer = self.send(method, path, &extra, Some(body)).await?;
            if answer.status == 403 && !refetched {
                tracing::info!(
                    call = template(&call_name(method, path)),
                    "SAP tenant answered 403; fetching the CSRF token again"
                );
                self.forget_csrf();
                refetched = true;
                continue;
            }
            return Ok(answer);
        }
    }

    /// `GET path` of one entry or value: `None` when the tenant answers 404; any other answer
    /// but 200 is the tenant's refusal.
    async fn read(&self, path: &str) -> Result<Option<HttpAnswer>, SapCiError> {
        let answer = self.send(Method::Get, path, &[], None).await?;
        match answer.status {
            200 => Ok(Some(answer)),
            404 => Ok(None),
            _ => Err(self.refusal(call_name(Method::Get, path), ROLE_READ, &answer)),
        }
    }

    /// A modifying call that succeeds on any 2xx answer; anything else is the tenant's refusal
    /// of `call`, which needs `role`.
    async fn write(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        bytes: Vec<u8>,
        role: &'static str,
    ) -> Result<(), SapCiError> {
        let answer = self
            .modify(
                method,
                path,
                &Body {
                    content_type,
                    bytes,
                },
            )
            .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(self.refusal(call_name(method, path), role, &answer))
        }
    }

    /// The error for a refused answer of `call`, which needs `role`.
    fn refusal(&self, call: String, role: &'static str, answer: &HttpAnswer) -> SapCiError {
        if answer.status == 403 {
            let message = error_text(answer);
            SapCiError::Forbidden {
                call,
                role,
                message: (!message.is_empty() && message != "Forbidden").then_some(message),
            }
        } else {
            SapCiError::Api {
                call,
                status: answer.status,
                message: error_text(answer),
            }
        }
    }

    /// A GET answered with JSON, its `d` member unwrapped.
    async fn get_d(&self, path: &str, role: &'static str) -> Result<Value, SapCiError> {
        let answer = self.send(Method::Get, path, &[], None).await?;
        let call = call_name(Method::Get, path);
        if answer.status != 200 {
            return Err(self.refusal(call, role, &answer));
        }
        let json: Value = serde_json::from_slice(&answer.body).map_err(|e| SapCiError::Answer {
            call: call.clone(),
            reason: format!("not JSON: {e}"),
        })?;
        json.get("d").cloned().ok_or(SapCiError::Answer {
            call,
            reason: "no \"d\" envelope".into(),
        })
    }

    /// Gets a token, proving the client credentials work.
    pub async fn connect(&self) -> Result<(), SapCiError> {
        self.access_token().await.map(|_| ())
    }

    /// Every entry of the tenant's `system` keystore (`GET /KeystoreEntries`).
    pub async fn keystore_entries(&self) -> Result<Vec<KeystoreEntry>, SapCiError> {
        let path = "/KeystoreEntries";
        let d = self.get_d(path, ROLE_READ).await?;
        results(&d, path)?
            .iter()
            .map(|v| KeystoreEntry::from_json(v, path))
            .collect()
    }

    /// One entry by alias, through its hex alias (`GET /KeystoreEntries('{hex}')`); `None`
    /// when the tenant has no entry of that alias.
    pub async fn keystore_entry(&self, alias: &str) -> Result<Option<KeystoreEntry>, SapCiError> {
        check_alias(alias)?;
        let path = format!("/KeystoreEntries('{}')", hex_alias(alias));
        let call = call_name(Method::Get, &path);
        let Some(answer) = self.read(&path).await? else {
            return Ok(None);
        };
        let json: Value = serde_json::from_slice(&answer.body).map_err(|e| SapCiError::Answer {
            call: call.clone(),
            reason: format!("not JSON: {e}"),
        })?;
        let d = json.get("d").ok_or(SapCiError::Answer {
            call: call.clone(),
            reason: "no \"d\" envelope".into(),
        })?;
        KeystoreEntry::from_json(d, &call).map(Some)
    }

    /// The certificate of entry `alias` (`GET /KeystoreEntries('{hex}')/Certificate/$value`,
    /// PEM or DER); `None` when the tenant has no entry of that alias. Checked against the
    /// SHA-256 fingerprint the entry's metadata states, when `expected` gives it, so that what
    /// rekey records is the certificate the tenant lists.
    pub async fn certificate(
        &self,
        alias: &str,
        expected: Option<Fingerprint>,
    ) -> Result<Option<Certificate>, SapCiError> {
        check_alias(alias)?;
        let path = format!(
            "/KeystoreEntries('{}')/Certificate/$value",
            hex_alias(alias)
        );
        let call = call_name(Method::Get, &path);
        let Some(answer) = self.read(&path).await? else {
            return Ok(None);
        };
        let certs = Certificate::parse_any(&answer.body).map_err(|e| SapCiError::Answer {
            call: call.clone(),
            reason: format!("not a certificate: {e}"),
        })?;
        let Some(cert) = certs.into_iter().next() else {
            return Err(SapCiError::Answer {
                call,
                reason: "no certificate in the answer".into(),
            });
        };
        if let Some(fp) = expected
            && cert.fingerprint() != fp
        {
            return Err(SapCiError::Answer {
                call,
                reason: format!(
                    "the certificate's SHA-256 fingerprint is {}, the entry states {fp}",
                    cert.fingerprint()
                ),
            });
        }
        Ok(Some(cert))
    }

    /// Generates a key pair on the tenant (`POST /KeyPairGenerationRequests`, A7): the private
    /// key is made there and never leaves it; the tenant signs its certificate itself. The
    /// signature algorithm is sent as `SHA-256/RSA` and, when the tenant refuses that spelling
    /// (D4: both appear in SAP's documents), once more as `SHA256/RSA`.
    pub async fn generate_key_pair(&self, req: &KeyPairRequest) -> Result<(), SapCiError> {
        check_alias(&req.alias)?;
        let date = |t: DateTime<Utc>| format!("/Date({})/", t.timestamp_millis());
        let path = "/KeyPairGenerationRequests";
        let mut last = None;
        for algorithm in ["SHA-256/RSA", "SHA256/RSA"] {
            let mut body = serde_json::json!({
                "Hexalias": hex_alias(&req.alias),
                "Alias": req.alias,
                "KeyType": "RSA",
                "KeySize": req.bits,
                "SignatureAlgorithm": algorithm,
                "CommonName": req.common_name,
                "Country": req.country,
                "ValidNotBefore": date(req.not_before),
                "ValidNotAfter": date(req.not_after),
            });
            if let Some(o) = &req.organization {
                body["Organization"] = Value::String(o.clone());
            }
            if let Some(u) = &req.organization_unit {
                body["OrganizationUnit"] = Value::String(u.clone());
            }
            let answer = self
                .modify(
                    Method::Post,
                    path,
                    &Body {
                        content_type: "application/json;charset=utf-8",
                        bytes: body.to_string().into_bytes(),
                    },
                )
                .await?;
            if (200..300).contains(&answer.status) {
                return Ok(());
            }
            let text = error_text(&answer);
            let spelling = answer.status == 400 && text.contains(algorithm);
            last = Some(self.refusal(call_name(Method::Post, path), ROLE_KEYSTORE_EDIT, &answer));
            if !spelling {
                break;
            }
        }
        Err(last.unwrap_or_else(|| SapCiError::Answer {
            call: call_name(Method::Post, path),
            reason: "no attempt was made".into(),
        }))
    }

    /// Imports a key pair as a PKCS#12 file (`POST /KeyPairResources`, A7). With `update` the
    /// key and certificate under the existing `alias` are replaced in one call — the API's only
    /// exchange that keeps an alias without a moment in which it holds no key; without it the
    /// alias must be new. `password` opens `pkcs12` and is sent only in the request body.
    pub async fn import_key_pair(
        &self,
        alias: &str,
        pkcs12: &[u8],
        password: &str,
        update: bool,
    ) -> Result<(), SapCiError> {
        use base64::Engine as _;
        check_alias(alias)?;
        let path = format!("/KeyPairResources?update={update}");
        let body = serde_json::json!({
            "Hexalias": hex_alias(alias),
            "Alias": alias,
            "Password": password,
            "Resource": base64::engine::general_purpose::STANDARD.encode(pkcs12),
        });
        self.write(
            Method::Post,
            &path,
            "application/json;charset=utf-8",
            body.to_string().into_bytes(),
            ROLE_KEYSTORE_EDIT,
        )
        .await
    }

    /// The certificate signing request for key pair `alias`
    /// (`GET /KeystoreEntries('{hex}')/SigningRequest/$value`, A7), as PEM whether the tenant
    /// answers PEM or DER; `None` when the tenant has no entry of that alias.
    pub async fn signing_request(&self, alias: &str) -> Result<Option<String>, SapCiError> {
        check_alias(alias)?;
        let path = format!(
            "/KeystoreEntries('{}')/SigningRequest/$value",
            hex_alias(alias)
        );
        let call = call_name(Method::Get, &path);
        let Some(answer) = self.read(&path).await? else {
            return Ok(None);
        };
        let unreadable = |reason: String| SapCiError::Answer {
            call: call.clone(),
            reason,
        };
        // Read once, to refuse an answer that is no request before anyone sends it to a CA.
        rekey_crypto::certificate_request_public_key(&answer.body)
            .map_err(|e| unreadable(e.to_string()))?;
        match std::str::from_utf8(&answer.body) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
                Ok(Some(format!("{}\n", text.trim())))
            }
            _ => Ok(Some(rekey_crypto::certificate_request_pem(&answer.body))),
        }
    }

    /// Puts the CA's chain (`pem`, the key's certificate first) on key pair `alias`
    /// (`PUT /CertificateChainResources('{hex}')/$value`, A7, a PEM chain without a content
    /// type). The tenant refuses with 409 a chain that does not reach a certificate its
    /// keystore holds; rekey does not then answer for the administrator that the fingerprint
    /// was verified (`fingerprintVerified`), it reports the refusal.
    pub async fn upload_chain(&self, alias: &str, pem: &str) -> Result<(), SapCiError> {
        check_alias(alias)?;
        let path = format!("/CertificateChainResources('{}')/$value", hex_alias(alias));
        self.write(
            Method::Put,
            &path,
            "",
            pem.as_bytes().to_vec(),
            ROLE_KEYSTORE_EDIT,
        )
        .await
    }

    /// Renames entry `alias` to `new_alias` (`PUT /KeystoreEntries('{hex}')?renameAlias=…`
    /// with a property set to null, A7). The key stays the same key.
    pub async fn rename_entry(&self, alias: &str, new_alias: &str) -> Result<(), SapCiError> {
        check_alias(alias)?;
        check_alias(new_alias)?;
        let path = format!(
            "/KeystoreEntries('{}')?renameAlias={}",
            hex_alias(alias),
            query_value(new_alias)
        );
        self.write(
            Method::Put,
            &path,
            "application/json;charset=utf-8",
            br#"{"Status":null}"#.to_vec(),
            ROLE_KEYSTORE_EDIT,
        )
        .await
    }

    /// Deletes entry `alias` (`DELETE /KeystoreEntries('{hex}')`); `false` when the tenant
    /// holds no such entry (a repeated delete is not an error).
    pub async fn delete_entry(&self, alias: &str) -> Result<bool, SapCiError> {
        check_alias(alias)?;
        let path = format!("/KeystoreEntries('{}')", hex_alias(alias));
        let answer = self
            .modify(
                Method::Delete,
                &path,
                &Body {
                    content_type: "application/json;charset=utf-8",
                    bytes: Vec::new(),
                },
            )
            .await?;
        match answer.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.refusal(
                call_name(Method::Delete, &path),
                ROLE_KEYSTORE_EDIT,
                &answer,
            )),
        }
    }

    /// Backs up the tenant administrator's entries into `backup_admin_system`
    /// (`POST /KeystoreResources`, A7), overwriting the previous backup: before rekey deletes
    /// a key, so that the tenant administrator can restore it in the tenant.
    pub async fn backup(&self) -> Result<(), SapCiError> {
        let path = "/KeystoreResources";
        self.write(
            Method::Post,
            path,
            "application/json;charset=utf-8",
            br#"{"Name":"backup_admin_system"}"#.to_vec(),
            ROLE_KEYSTORE_EDIT,
        )
        .await
    }

    /// Sets externalized parameter `key` of flow `flow`'s active designtime version
    /// (`PUT …/$links/Configurations('{key}')`, A8; answered 202). Only the designtime
    /// configuration changes: the running flow uses it after [`SapCiClient::deploy_and_wait`].
    pub async fn set_parameter(
        &self,
        flow: &str,
        key: &str,
        value: &str,
    ) -> Result<(), SapCiError> {
        check_flow_id(flow)?;
        let path = format!(
            "/IntegrationDesigntimeArtifacts(Id='{flow}',Version='active')/$links/Configurations('{}')",
            query_value(key)
        );
        let body = serde_json::json!({"ParameterValue": value, "DataType": "xsd:string"});
        self.write(
            Method::Put,
            &path,
            "application/json;charset=utf-8",
            body.to_string().into_bytes(),
            ROLE_CONFIGURE,
        )
        .await
    }

    /// Deploys flow `flow`'s active designtime version and waits until the runtime runs it:
    /// the deploy task (`BuildAndDeployStatus`) until it is no longer `DEPLOYING`, then the
    /// runtime artifact until it is `STARTED` with a `DeployedOn` not before `asked` (the
    /// caller's clock when it asked; the runtime may still show the previous deployment, A8),
    /// polling every `poll` until `deadline` has passed. `ERROR` or a failed task is an error
    /// carrying the tenant's own text.
    pub async fn deploy_and_wait(
        &self,
        flow: &str,
        asked: DateTime<Utc>,
        poll: Duration,
        deadline: Duration,
    ) -> Result<Deployed, SapCiError> {
        check_flow_id(flow)?;
        let started = Instant::now();
        let path = format!("/DeployIntegrationDesigntimeArtifact?Id='{flow}'&Version='active'");
        let call = call_name(Method::Post, &path);
        let answer = self
            .modify(
                Method::Post,
                &path,
                &Body {
                    content_type: "application/json;charset=utf-8",
                    bytes: Vec::new(),
                },
            )
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(self.refusal(call, ROLE_DEPLOY, &answer));
        }
        // The task id as plain text, or in a `{"d":{"TaskId":…}}` envelope (D7).
        let text = String::from_utf8_lossy(&answer.body).trim().to_string();
        let task = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/d/TaskId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or(text);
        if task.is_empty() || task.contains(['\'', '/', '?', '#']) {
            return Err(SapCiError::Answer {
                call,
                reason: format!("no usable task id in {task:?}"),
            });
        }
        let timed_out = |what: &str| SapCiError::Answer {
            call: format!("deploy of {flow}"),
            reason: format!("{what} after {} s", deadline.as_secs()),
        };
        let status_path = format!("/BuildAndDeployStatus(TaskId='{task}')");
        loop {
            let d = self.get_d(&status_path, ROLE_DEPLOY).await?;
            let status = d.get("Status").and_then(Value::as_str).unwrap_or_default();
            if status.eq_ignore_ascii_case("SUCCESS") {
                break;
            }
            if !status.eq_ignore_ascii_case("DEPLOYING") {
                let error = self.runtime_error(flow).await.unwrap_or_default();
                return Err(SapCiError::Api {
                    call: format!("deploy of {flow}"),
                    status: 200,
                    message: format!("the deploy task ended {status}{}", detail(&Some(error))),
                });
            }
            if started.elapsed() > deadline {
                return Err(timed_out("still DEPLOYING"));
            }
            tokio::time::sleep(poll).await;
        }
        let runtime_path = format!("/IntegrationRuntimeArtifacts('{flow}')");
        loop {
            let answer = self.send(Method::Get, &runtime_path, &[], None).await?;
            if answer.status == 200 {
                let json: Value =
                    serde_json::from_slice(&answer.body).map_err(|e| SapCiError::Answer {
                        call: call_name(Method::Get, &runtime_path),
                        reason: format!("not JSON: {e}"),
                    })?;
                let d = json.get("d").cloned().unwrap_or(Value::Null);
                let s = |k: &str| {
                    d.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let deployed_on = parse_date(&s("DeployedOn"));
                let current = deployed_on.is_some_and(|t| t >= asked);
                match s("Status").to_ascii_uppercase().as_str() {
                    "STARTED" if current => {
                        return Ok(Deployed {
                            task,
                            version: s("Version"),
                            deployed_on,
                        });
                    }
                    "ERROR" if current => {
                        let error = self.runtime_error(flow).await?;
                        return Err(SapCiError::Api {
                            call: format!("deploy of {flow}"),
                            status: 200,
                            message: format!("the flow is in ERROR: {error}"),
                        });
                    }
                    _ => {}
                }
            } else if answer.status != 404 {
                return Err(self.refusal(
                    call_name(Method::Get, &runtime_path),
                    ROLE_READ,
                    &answer,
                ));
            }
            if started.elapsed() > deadline {
                return Err(timed_out("the flow was not STARTED"));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The runtime's error text of flow `flow` (`…/ErrorInformation/$value`), as the tenant
    /// sends it.
    async fn runtime_error(&self, flow: &str) -> Result<String, SapCiError> {
        let path = format!("/IntegrationRuntimeArtifacts('{flow}')/ErrorInformation/$value");
        let answer = self.send(Method::Get, &path, &[], None).await?;
        if answer.status != 200 {
            return Err(self.refusal(call_name(Method::Get, &path), ROLE_READ, &answer));
        }
        Ok(String::from_utf8_lossy(&answer.body).trim().to_string())
    }

    /// The externalized parameters of integration flow `flow`'s active designtime version
    /// (`GET /IntegrationDesigntimeArtifacts(Id='…',Version='active')/Configurations`).
    pub async fn parameters(&self, flow: &str) -> Result<Vec<Parameter>, SapCiError> {
        check_flow_id(flow)?;
        let path =
            format!("/IntegrationDesigntimeArtifacts(Id='{flow}',Version='active')/Configurations");
        let d = self.get_d(&path, ROLE_CONFIGURE).await?;
        results(&d, &path)?
            .iter()
            .map(|v| {
                let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                Ok(Parameter {
                    key: s("ParameterKey").ok_or_else(|| SapCiError::Answer {
                        call: call_name(Method::Get, &path),
                        reason: "a parameter without ParameterKey".into(),
                    })?,
                    value: s("ParameterValue").unwrap_or_default(),
                    data_type: s("DataType"),
                })
            })
            .collect()
    }

    /// Which of the API roles rekey uses the client holds, each found out by a call that
    /// needs it and changes nothing: the keystore read; a key-pair generation request without
    /// a common name (refused by the tenant as incomplete when the role is held, 403 when
    /// not; it also proves the CSRF protocol); with `flow`, that flow's parameters and a
    /// deploy request for an artifact id that cannot exist. The token must work first.
    pub async fn check(&self, flow: Option<&str>) -> Result<Vec<RoleCheck>, SapCiError> {
        self.connect().await?;
        let mut out = Vec::new();
        let read = match self.send(Method::Get, "/KeystoreEntries", &[], None).await {
            Ok(a) => judge(a.status, &a, 200..300),
            Err(e) => Access::Failed(e.to_string()),
        };
        out.push(RoleCheck {
            role: ROLE_READ,
            what: "read keystore entries (GET /KeystoreEntries)",
            access: read,
        });
        let probe = serde_json::json!({
            "Hexalias": "00",
            "Alias": PROBE_NAME,
            "KeyType": "RSA",
            "CommonName": "",
            "Country": "",
        });
        let edit = match self
            .modify(
                Method::Post,
                "/KeyPairGenerationRequests",
                &Body {
                    content_type: "application/json;charset=utf-8",
                    bytes: probe.to_string().into_bytes(),
                },
            )
            .await
        {
            // 400: the incomplete request reached validation, so the role is held.
            Ok(a) => judge(a.status, &a, 400..401),
            Err(e) => Access::Failed(e.to_string()),
        };
        out.push(RoleCheck {
            role: ROLE_KEYSTORE_EDIT,
            what: "change keystore entries (POST /KeyPairGenerationRequests, an incomplete request the tenant refuses)",
            access: edit,
        });
        match flow {
            Some(flow) => {
                let configure = match self.parameters(flow).await {
                    Ok(_) => Access::Allowed,
                    Err(SapCiError::Forbidden { message, .. }) => Access::Forbidden(message),
                    Err(e) => Access::Failed(e.to_string()),
                };
                out.push(RoleCheck {
                    role: ROLE_CONFIGURE,
                    what: "read and set the flow's externalized parameters",
                    access: configure,
                });
                let path = format!(
                    "/DeployIntegrationDesigntimeArtifact?Id='{PROBE_NAME}'&Version='active'"
                );
                let deploy = match self
                    .modify(
                        Method::Post,
                        &path,
                        &Body {
                            content_type: "application/json;charset=utf-8",
                            bytes: Vec::new(),
                        },
                    )
                    .await
                {
                    // 404 (or 400): no such artifact, after the role was checked.
                    Ok(a) => judge(a.status, &a, 400..405),
                    Err(e) => Access::Failed(e.to_string()),
                };
                out.push(RoleCheck {
                    role: ROLE_DEPLOY,
                    what: "deploy flows (POST /DeployIntegrationDesigntimeArtifact of an id that does not exist)",
                    access: deploy,
                });
            }
            None => {
                for (role, what) in [
                    (
                        ROLE_CONFIGURE,
                        "read and set a flow's externalized parameters",
                    ),
                    (ROLE_DEPLOY, "deploy flows"),
                ] {
                    out.push(RoleCheck {
                        role,
                        what,
                        access: Access::NotChecked("give --flow ID".into()),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The tenant's keystore as a [`rekey_crypto::KeyBackend`]: keys live in SAP Cloud
/// Integration, which signs with them itself. rekey never holds them, so generating or
/// importing through this backend and signing are refused with an error saying so, rather
/// than falling back to keys held by rekey: a renewal makes its key on the tenant through
/// [`SapCiClient`] instead, and [`crate::sapci_sync`] records the tenant's keys. It holds no
/// key objects, so token reconciliation finds nothing to do.
#[derive(Debug, Clone)]
pub struct SapCiKeystore {
    url: String,
}

impl SapCiKeystore {
    /// The keystore of the tenant at `config.url`.
    pub fn new(config: &SapCiConfig) -> Self {
        SapCiKeystore {
            url: config.url.clone(),
        }
    }

    fn refuse<T>(&self, what: &str) -> rekey_crypto::Result<T> {
        Err(rekey_crypto::CryptoError::Backend(format!(
            "this tenant's keys are in SAP Cloud Integration ({}); rekey cannot {what} there \
             outside a renewal: make or import the key in the tenant, then `rekey tenant sync` \
             records it",
            self.url
        )))
    }
}

impl rekey_crypto::KeyBackend for SapCiKeystore {
    fn kind(&self) -> &'static str {
        "sap-ci"
    }

    fn generate(
        &self,
        _bits: rekey_crypto::KeyBits,
        _id: &rekey_crypto::TokenKeyId,
        _label: &str,
    ) -> rekey_crypto::Result<rekey_crypto::KeyHandle> {
        self.refuse("generate a key")
    }

    fn import(
        &self,
        _key: &rekey_crypto::KeyPair,
        _id: &rekey_crypto::TokenKeyId,
        _label: &str,
    ) -> rekey_crypto::Result<rekey_crypto::KeyHandle> {
        self.refuse("import a key")
    }

    fn signer<'a>(
        &'a self,
        _key: &'a rekey_crypto::KeyHandle,
    ) -> rekey_crypto::Result<Box<dyn rekey_crypto::RsaSigner + 'a>> {
        self.refuse("sign")
    }

    fn project(
        &self,
        _id: &rekey_crypto::TokenKeyId,
        _label: &str,
        _cert: Option<&rekey_crypto::Certificate>,
    ) -> rekey_crypto::Result<()> {
        self.refuse("label a key")
    }

    fn destroy(&self, _id: &rekey_crypto::TokenKeyId) -> rekey_crypto::Result<()> {
        self.refuse("delete a key")
    }

    fn objects(&self) -> rekey_crypto::Result<Vec<rekey_crypto::TokenObject>> {
        Ok(Vec::new())
    }

    fn remote(&self) -> bool {
        true
    }
}

/// The alias and artifact id of [`SapCiClient::check`]'s probes, which the tenant refuses.
pub const PROBE_NAME: &str = "rekey_role_probe_does_not_exist";

fn judge(status: u16, answer: &HttpAnswer, expected: std::ops::Range<u16>) -> Access {
    if status == 403 {
        let m = error_text(answer);
        Access::Forbidden((!m.is_empty() && m != "Forbidden").then_some(m))
    } else if expected.contains(&status) || (200..300).contains(&status) && expected.start >= 400 {
        Access::Allowed
    } else {
        Access::Failed(format!("{status}: {}", error_text(answer)))
    }
}

/// One role and whether the client holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleCheck {
    /// The role (CONNECTORS.md A1).
    pub role: &'static str,
    /// What rekey needs it for, and how it was probed.
    pub what: &'static str,
    /// The outcome.
    pub access: Access,
}

/// Whether a role's probe passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "access", content = "detail", rename_all = "snake_case")]
pub enum Access {
    /// The call was allowed.
    Allowed,
    /// The tenant answered 403, with SAP's text when it sent one.
    Forbidden(Option<String>),
    /// The call failed otherwise (so the role is unknown).
    Failed(String),
    /// Not probed, and why.
    NotChecked(String),
}

/// A deployment the runtime runs, as [`SapCiClient::deploy_and_wait`] found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployed {
    /// The deploy task's id.
    pub task: String,
    /// The deployed version.
    pub version: String,
    /// When the runtime says it was deployed.
    pub deployed_on: Option<DateTime<Utc>>,
}

/// A key pair rekey asks the tenant to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairRequest {
    /// The alias it is generated under.
    pub alias: String,
    /// RSA size.
    pub bits: u32,
    /// Subject `CN`.
    pub common_name: String,
    /// Subject `O`, when the replaced certificate has one.
    pub organization: Option<String>,
    /// Subject `OU`, when the replaced certificate has one.
    pub organization_unit: Option<String>,
    /// Subject `C` (two letters; the tenant requires it).
    pub country: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

/// One externalized parameter of an integration flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parameter {
    /// `ParameterKey`.
    pub key: String,
    /// `ParameterValue`.
    pub value: String,
    /// `DataType`, e.g. `xsd:string`.
    pub data_type: Option<String>,
}

/// One entry of the tenant's keystore, as rekey reads it (CONNECTORS.md A6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeystoreEntry {
    /// `Alias`.
    pub alias: String,
    /// `Hexalias`, as the tenant spells it.
    pub hex_alias: String,
    /// `Type`: `Key Pair` or `Certificate`.
    pub kind: String,
    /// `Owner`: `Tenant Administrator` or `SAP`.
    pub owner: Option<String>,
    /// `KeyType`, e.g. `RSA`.
    pub key_type: Option<String>,
    /// `KeySize` in bits.
    pub key_size: Option<u32>,
    /// `ValidNotBefore`.
    pub not_before: Option<DateTime<Utc>>,
    /// `ValidNotAfter`.
    pub not_after: Option<DateTime<Utc>>,
    /// `SubjectDN`.
    pub subject: Option<String>,
    /// `IssuerDN`.
    pub issuer: Option<String>,
    /// `SerialNumber` (`0x…`).
    pub serial: Option<String>,
    /// `FingerprintSha256`, parsed.
    pub fingerprint: Option<Fingerprint>,
}

impl KeystoreEntry {
    /// Whether the entry is a key pair (`Type` `Key Pair`): the only kind a signer step signs
    /// with, and the only kind rekey records or changes.
    pub fn is_key_pair(&self) -> bool {
        self.kind.eq_ignore_ascii_case("Key Pair")
    }

    /// Whether SAP owns the entry (`Owner` `SAP`): rekey never records or changes it.
    pub fn owned_by_sap(&self) -> bool {
        self.owner
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("SAP"))
    }

    fn from_json(v: &Value, call: &str) -> Result<Self, SapCiError> {
        let bad = |reason: String| SapCiError::Answer {
            call: call.to_string(),
            reason,
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let alias = s("Alias").ok_or_else(|| bad("an entry without Alias".into()))?;
        let hex = s("Hexalias").ok_or_else(|| bad(format!("entry {alias:?} without Hexalias")))?;
        if !hex.eq_ignore_ascii_case(&hex_alias(&alias)) {
            return Err(bad(format!(
                "entry {alias:?}: Hexalias {hex} is not the alias in hex"
            )));
        }
        let date = |k: &str| -> Result<Option<DateTime<Utc>>, SapCiError> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(t)) => parse_date(t)
                    .map(Some)
                    .ok_or_else(|| bad(format!("entry {alias:?}: {k} {t:?} is not a date"))),
                Some(other) => Err(bad(format!("entry {alias:?}: {k} {other} is not a date"))),
            }
        };
        let fingerprint = match s("FingerprintSha256") {
            None => None,
            Some(f) => Some(f.parse::<Fingerprint>().map_err(|e| {
                bad(format!(
                    "entry {alias:?}: FingerprintSha256: {}",
                    e.reason()
                ))
            })?),
        };
        Ok(KeystoreEntry {
            kind: s("Type").unwrap_or_default(),
            owner: s("Owner"),
            key_type: s("KeyType"),
            key_size: v
                .get("KeySize")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            not_before: date("ValidNotBefore")?,
            not_after: date("ValidNotAfter")?,
            subject: s("SubjectDN"),
            issuer: s("IssuerDN"),
            serial: s("SerialNumber"),
            fingerprint,
            hex_alias: hex,
            alias,
        })
    }
}

/// The items of an OData V2 collection: `{"d":{"results":[…]}}` (or V1's bare array).
fn results<'a>(d: &'a Value, path: &str) -> Result<&'a Vec<Value>, SapCiError> {
    d.get("results")
        .and_then(Value::as_array)
        .or_else(|| d.as_array())
        .ok_or_else(|| SapCiError::Answer {
            call: call_name(Method::Get, path),
            reason: "no \"results\" in the collection".into(),
        })
}

fn call_name(method: Method, path: &str) -> String {
    let m = match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
    };
    let path = path.split('?').next().unwrap_or(path);
    format!("{m} {path}")
}

/// A call's name for logs: key predicates (hex aliases, flow ids) left out, as log lines
/// carry route templates, never the values in a path.
fn template(call: &str) -> String {
    let mut out = String::with_capacity(call.len());
    let mut depth = 0usize;
    for c in call.chars() {
        match c {
            '(' => {
                if depth == 0 {
                    out.push_str("(…)");
                }
                depth += 1;
            }
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// An alias in the URL form the API keys entries by: its UTF-8 bytes in hex (A4).
pub fn hex_alias(alias: &str) -> String {
    alias.bytes().map(|b| format!("{b:02X}")).collect()
}

fn check_alias(alias: &str) -> Result<(), SapCiError> {
    if alias.is_empty() || alias.chars().count() > 250 {
        return Err(SapCiError::Input {
            what: "alias",
            value: alias.into(),
            reason: "must have 1 to 250 characters",
        });
    }
    Ok(())
}

/// A query parameter's value, percent-encoded except for RFC 3986's unreserved characters.
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Flow ids go into `Id='…'` unencoded (A8), so only plain names are accepted.
fn check_flow_id(flow: &str) -> Result<(), SapCiError> {
    if flow.is_empty()
        || !flow
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(SapCiError::Input {
            what: "integration flow id",
            value: flow.into(),
            reason: "use letters, digits, '_', '-' and '.' only",
        });
    }
    Ok(())
}

/// `/Date(ms)/`, `/Date(ms+0000)/` (offset ignored: ms are UTC) or ISO-8601 (A2).
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        let digits_end = inner
            .char_indices()
            .find(|&(i, c)| i > 0 && (c == '+' || c == '-'))
            .map_or(inner.len(), |(i, _)| i);
        let (ms, offset) = inner.split_at(digits_end);
        let offset_ok = offset.is_empty()
            || (offset.len() == 5 && offset[1..].chars().all(|c| c.is_ascii_digit()));
        if !offset_ok {
            return None;
        }
        return DateTime::from_timestamp_millis(ms.parse().ok()?);
    }
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// SAP's message from an error answer: OData `{"error":{"message":{"value"}}}`, the bare
/// `{"code","message"}` form, OAuth's `error_description`, an XML `<message>`, or the text.
fn error_text(answer: &HttpAnswer) -> String {
    let body = String::from_utf8_lossy(&answer.body);
    if let Ok(v) = serde_json::from_str::<Value>(&body) {
        let odata = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
        let message = odata.get("message");
        let text = message
            .and_then(|m| m.get("value"))
            .and_then(Value::as_str)
            .or_else(|| message.and_then(Value::as_str))
            .or_else(|| v.get("error_description").and_then(Value::as_str))
            .or_else(|| v.get("error").and_then(Value::as_str))
            .or_else(|| odata.get("code").and_then(Value::as_str));
        if let Some(t) = text {
            return clip(t);
        }
    }
    if let Some(start) = body.find("<message")
        && let Some(open_end) = body[start..].find('>')
        && let Some(close) = body[start..].find("</message>")
        && open_end < close
    {
        return clip(&body[start + open_end + 1..start + close]);
    }
    let t = body.trim();
    if t.is_empty() {
        http_reason(answer.status).to_string()
    } else {
        clip(t)
    }
}

fn clip(t: &str) -> String {
    let t = t.trim();
    let mut out: String = t.chars().filter(|c| !c.is_control()).take(300).collect();
    if t.chars().count() > 300 {
        out.push('…');
    }
    out
}

fn http_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        423 => "Locked",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "no message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> HttpAnswer {
        HttpAnswer {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A tenant that accepts the connection and never answers costs one deadline, not a hang.
    #[tokio::test]
    async fn a_silent_tenant_is_given_up_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                open.push(tcp);
            }
        });
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").expect("secret");
        let client = SapCiClient::new(SapCiConfig {
            url: format!("http://127.0.0.1:{port}"),
            token_url: format!("http://127.0.0.1:{port}/oauth/token"),
            client_id: "c".into(),
            client_secret: SecretSource::File(secret),
            timeout: Duration::from_secs(1),
            attempts: 3,
            country: None,
        })
        .expect("client");
        let started = Instant::now();
        let e = client.keystore_entries().await.expect_err("no answer");
        assert!(
            matches!(
                e,
                SapCiError::Http {
                    source: HttpError::Timeout(1),
                    ..
                }
            ),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn logged_calls_leave_key_predicates_out() {
        assert_eq!(
            template("GET /IntegrationDesigntimeArtifacts(Id='x',Version='active')/Configurations"),
            "GET /IntegrationDesigntimeArtifacts(…)/Configurations"
        );
        assert_eq!(template("GET /KeystoreEntries"), "GET /KeystoreEntries");
    }

    #[test]
    fn dates_in_every_documented_form() {
        let want = DateTime::from_timestamp_millis(1_496_732_924_000).expect("date");
        for t in [
            "/Date(1496732924000)/",
            "/Date(1496732924000+0000)/",
            "2017-06-06T07:08:44Z",
        ] {
            assert_eq!(parse_date(t), Some(want), "{t}");
        }
        for t in ["/Date(x)/", "/Date(1+00)/", "yesterday", ""] {
            assert_eq!(parse_date(t), None, "{t}");
        }
    }

    #[test]
    fn hex_aliases_are_utf8_hex_as_the_docs_show() {
        assert_eq!(
            hex_alias("smtp.mail.yahoo.com"),
            "736D74702E6D61696C2E7961686F6F2E636F6D"
        );
        assert_eq!(hex_alias("my alias"), "6D7920616C696173");
    }

    #[test]
    fn sap_error_texts_in_each_shape() {
        let wrapped = r#"{"error":{"code":"Not Found","message":{"lang":"en","value":"Alias 'x' not found in the keystore"}}}"#;
        assert_eq!(
            error_text(&answer(404, wrapped)),
            "Alias 'x' not found in the keystore"
        );
        let bare = r#"{"code":"Forbidden","message":{"lang":"en","value":null}}"#;
        assert_eq!(error_text(&answer(403, bare)), "Forbidden");
        let oauth = r#"{"error":"unauthorized","error_description":"Bad credentials"}"#;
        assert_eq!(error_text(&answer(401, oauth)), "Bad credentials");
        let xml =
            r#"<error><code>x</code><message xml:lang="en">Keystore is locked</message></error>"#;
        assert_eq!(error_text(&answer(503, xml)), "Keystore is locked");
        assert_eq!(error_text(&answer(503, "")), "Service Unavailable");
    }

    #[test]
    fn a_token_is_renewed_before_it_runs_out() {
        let now = Instant::now();
        let t = Token {
            value: String::new(),
            expires: now + Duration::from_secs(100),
            lifetime: Duration::from_secs(100),
        };
        assert!(t.fresh(now));
        assert!(!t.fresh(now + Duration::from_secs(91)));
    }

    #[test]
    fn service_keys_flat_or_nested_under_oauth() {
        let flat = r#"{"clientid":"c","clientsecret":"s3","url":"https://t","tokenurl":"https://a/oauth/token"}"#;
        let nested = format!(r#"{{"oauth":{flat}}}"#);
        for text in [flat, nested.as_str()] {
            let k = ServiceKey::parse(text).expect("parsed");
            assert_eq!(
                (k.url.as_str(), k.token_url.as_str(), k.client_id.as_str()),
                ("https://t", "https://a/oauth/token", "c")
            );
            assert!(!format!("{k:?}").contains("s3"));
        }
        let cert = r#"{"clientid":"c","certificate":"x","key":"PRIVATE-KEY-TEXT","url":"u","tokenurl":"t"}"#;
        let e = ServiceKey::parse(cert).expect_err("no secret");
        assert!(
            e.contains("clientsecret") && !e.contains("PRIVATE-KEY-TEXT"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_redacted_and_flow_ids_checked() {
        let s = ClientSecret("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(check_flow_id("Fake_Outbound_Signer").is_ok());
        for bad in ["", "a'b", "a/b", "a b"] {
            assert!(check_flow_id(bad).is_err(), "{bad}");
        }
    }
}
