//! Configuration and the opened state every stateful command works on.
//!
//! Settings come in layers, each overriding the one before:
//! 1. `config/default.toml`, embedded in the binary;
//! 2. a TOML file: `--config FILE` / `REKEY_CONFIG`, else `<data-dir>/rekey.toml` if present;
//! 3. `REKEY_...` environment variables;
//! 4. `--data-dir` on the command line (clap also reads it from `REKEY_DATA_DIR`).
//!
//! Every layer is parsed into the same typed [`Layer`] that refuses unknown keys, so a typo in
//! a file is an error naming the file, line and key rather than a silently ignored setting.
//! Secrets (the database password, the KEK) are never printed: [`DatabaseUrl`] redacts its
//! password in `Debug` and `Display`, and the KEK itself is not part of [`Settings`] at all;
//! only where it comes from is.
//!
//! [`open_context`] is the one way commands open the store: settings, KEK, migrations.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use rekey_model::{Email, ReceiverId, Role, TenantName};
use rekey_store::db::Backend;
use rekey_store::kek::KEK_ENV_VAR;
use rekey_store::{Kek, Store, Tenant};
use serde::Deserialize;

/// The embedded defaults (layer 1).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Name of the configuration file looked for in the data directory.
pub const CONFIG_FILE_NAME: &str = "rekey.toml";

/// Name of the KEK file in the data directory when none is configured.
pub const KEK_FILE_NAME: &str = "kek.key";

/// Name of the SQLite database file in the data directory when no URL is configured.
pub const DB_FILE_NAME: &str = "rekey.db";

/// Options every command accepts, before or after the subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Data directory: database, key-encryption key, configuration, mail outbox
    /// [default: ./rekey-data].
    #[arg(long, global = true, env = "REKEY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (TOML) [default: <data-dir>/rekey.toml when present].
    #[arg(long, global = true, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The tenant to work on; may be left out when there is exactly one.
    #[arg(long, global = true, env = "REKEY_TENANT", value_name = "NAME")]
    pub tenant: Option<String>,
    /// Who the audit log records for changes made by this command (an email address)
    /// [default: cli:<login name>].
    #[arg(long = "as", global = true, value_name = "EMAIL")]
    pub as_user: Option<String>,
}

/// A database URL. `Debug` and `Display` hide the password; [`DatabaseUrl::expose`] gives
/// the real URL to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL with its password, for connecting. Do not print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The database kind, by the URL's scheme.
    pub fn backend(&self) -> Result<Backend> {
        Backend::of_url(&self.0).map_err(|e| anyhow!("database URL {self}: {e}"))
    }

    /// The URL with `***` in place of a password.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                None => self.0.clone(),
            },
            None => self.0.clone(),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

/// Where the key-encryption key comes from. The key itself is never part of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// A key file (base64 of 32 bytes, mode 0600).
    File(PathBuf),
    /// The `REKEY_KEK` environment variable.
    Env,
}

impl fmt::Display for KekSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KekSource::File(p) => write!(f, "key file {}", p.display()),
            KekSource::Env => write!(f, "environment variable {KEK_ENV_VAR}"),
        }
    }
}

/// How mail leaves rekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Every message is written as a file into the outbox directory; nothing is sent.
    File,
    /// Messages are sent through the SMTP server of `[mail]` (host, port, tls, username,
    /// password).
    Smtp,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// STARTTLS, required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on the same host.
    None,
}

impl std::str::FromStr for MailTls {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(MailTls::Starttls),
            "tls" => Ok(MailTls::Tls),
            "none" => Ok(MailTls::None),
            other => Err(format!(
                "unknown TLS mode {other:?}; use \"starttls\", \"tls\" or \"none\""
            )),
        }
    }
}

/// A secret setting: the SMTP password, the metrics token. `Debug` and `Display` show `***`;
/// [`MailPassword::expose`] gives it to the one that uses it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct MailPassword(String);

impl MailPassword {
    /// The password. Do not print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MailPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailPassword(***)")
    }
}

impl fmt::Display for MailPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The `[mail]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// How mail is delivered.
    pub transport: MailTransport,
    /// Where the `file` transport writes messages.
    pub outbox_dir: PathBuf,
    /// The sender address.
    pub from: String,
    /// SMTP server host (transport `smtp`).
    pub host: Option<String>,
    /// SMTP port.
    pub port: u16,
    /// How the SMTP connection is secured.
    pub tls: MailTls,
    /// SMTP AUTH user name.
    pub username: Option<String>,
    /// SMTP AUTH password (never printed).
    pub password: Option<MailPassword>,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Address and port the HTTP server listens on.
    pub listen: SocketAddr,
    /// The address people reach rekey under (links in emails), without a trailing slash.
    pub base_url: String,
    /// How many days an API token made by `rekey user token` works unless it says otherwise
    /// (`None`: until revoked).
    pub api_token_days: Option<u32>,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>` (never printed).
    pub metrics_token: Option<MailPassword>,
    /// Whether `/metrics` labels certificates with tenant names and aliases.
    pub metrics_names: bool,
    /// Timeouts, body limit and rate limits of the HTTP server.
    pub limits: rekey_server::limits::Limits,
    /// How long a worker's claim (timers, mail, the watch's pass) holds before it must be
    /// renewed: a dead instance's work is taken over after about this long.
    pub lease: chrono::Duration,
    /// How often `rekey serve` runs the expiry watch (`None`: it does not).
    pub watch_interval: Option<Duration>,
    /// Whether that watch opens renewals or only tells the tenant administrators.
    pub watch_policy: rekey_service::watch::Policy,
}

/// The `[renewal]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalSettings {
    /// Start a renewal this many days before a signing certificate expires.
    pub renew_before_days: u32,
    /// How far back a new certificate's notBefore is dated from the engine's clock, so that a
    /// receiver whose clock is a little behind accepts the first messages (CAs do the same).
    pub clock_skew: chrono::Duration,
}

/// How `rekey serve` writes its log (see [`crate::logging`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the fields of the enclosing spans.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}; use \"text\" or \"json\""
            )),
        }
    }
}

/// The `[log]` section: `rekey serve`'s log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON lines on stderr.
    pub format: LogFormat,
    /// The filter when `RUST_LOG` is not set, in `RUST_LOG` syntax (`info`, `rekey=debug,warn`).
    pub level: String,
}

/// One tenant's keystore, from `[keystores.<tenant>]`. Tenants not named there use the
/// embedded keystore (keys encrypted under the KEK in the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeystoreSettings {
    /// Keys on a PKCS#11 token.
    Pkcs11(rekey_pkcs11::Pkcs11Config),
    /// An SAP Cloud Integration tenant's keystore, reached through its API (read by
    /// `rekey tenant check` and `rekey tenant show`).
    SapCi(rekey_service::sapci::SapCiConfig),
}

/// The resolved, typed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The database.
    pub database_url: DatabaseUrl,
    /// Where the key-encryption key comes from.
    pub kek: KekSource,
    /// `[mail]`.
    pub mail: MailSettings,
    /// `[server]`.
    pub server: ServerSettings,
    /// `[renewal]`.
    pub renewal: RenewalSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[timing.<tenant>]`: tenants whose reminder and escalation times differ from the
    /// procedures' own.
    pub timing: std::collections::BTreeMap<TenantName, Vec<TimingRule>>,
    /// `[keystores.<tenant>]`: the tenants whose keys are not in the embedded keystore.
    pub keystores: std::collections::BTreeMap<TenantName, KeystoreSettings>,
}

/// One layer of settings as written in TOML: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    kek_file: Option<PathBuf>,
    #[serde(default)]
    mail: MailLayer,
    #[serde(default)]
    server: ServerLayer,
    #[serde(default)]
    renewal: RenewalLayer,
    #[serde(default)]
    log: LogLayer,
    #[serde(default)]
    keystores: std::collections::BTreeMap<String, KeystoreLayer>,
    #[serde(default)]
    timing: std::collections::BTreeMap<String, TimingLayer>,
}

/// `[timing.<tenant>]`: reminder and escalation times of a tenant's steps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimingLayer {
    remind: Option<String>,
    escalate: Option<String>,
    #[serde(default)]
    steps: std::collections::BTreeMap<String, StepTimingLayer>,
}

/// `[timing.<tenant>.steps."<procedure>/<step>"]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepTimingLayer {
    remind: Option<String>,
    escalate: Option<String>,
}

/// One configured change of reminder and escalation times: on every timed step, or on one
/// procedure's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingRule {
    /// The step, as (procedure, step id); `None`: every timed step.
    pub step: Option<(rekey_engine::ProcedureId, String)>,
    /// Time from a step becoming due to its first reminder (and between reminders).
    pub remind: Option<chrono::Duration>,
    /// Time from a step becoming due to its escalation.
    pub escalate: Option<chrono::Duration>,
}

/// The built-in procedures with `rules` applied in order; errors name `section`.
pub fn timed_catalog(section: &str, rules: &[TimingRule]) -> Result<rekey_engine::Catalog> {
    let mut catalog = rekey_engine::Catalog::builtin()?;
    for r in rules {
        let (procedure, step) = match &r.step {
            Some((p, s)) => (Some(*p), Some(s.as_str())),
            None => (None, None),
        };
        catalog = catalog
            .with_timing(procedure, step, r.remind, r.escalate)
            .map_err(|e| anyhow!("{section}: {e}"))?;
    }
    Ok(catalog)
}

impl TimingLayer {
    /// The tenant's rules, checked against the built-in procedures; errors name the section
    /// and the key that is wrong.
    fn resolve(self, name: &str) -> Result<(TenantName, Vec<TimingRule>)> {
        let section = format!("[timing.{name}]");
        let tenant = TenantName::parse(name).with_context(|| format!("{section}: tenant name"))?;
        let dur =
            |v: Option<String>, key: &str, section: &str| -> Result<Option<chrono::Duration>> {
                v.map(|v| {
                    rekey_engine::definition::parse_duration(&v)
                        .map_err(|e| anyhow!("{section} {key}: {e}"))
                        .and_then(|d| {
                            if d <= chrono::Duration::zero() {
                                bail!("{section} {key} = {v:?}: must be more than 0")
                            }
                            Ok(d)
                        })
                })
                .transpose()
            };
        let mut rules = vec![TimingRule {
            step: None,
            remind: dur(self.remind, "remind", &section)?,
            escalate: dur(self.escalate, "escalate", &section)?,
        }];
        for (key, st) in self.steps {
            let sub = format!("[timing.{name}.steps.\"{key}\"]");
            let (p, step) = key
                .split_once('/')
                .ok_or_else(|| anyhow!("{sub}: name a step as \"<procedure>/<step>\""))?;
            let procedure: rekey_engine::ProcedureId =
                p.parse().map_err(|e| anyhow!("{sub}: {e}"))?;
            rules.push(TimingRule {
                step: Some((procedure, step.to_string())),
                remind: dur(st.remind, "remind", &sub)?,
                escalate: dur(st.escalate, "escalate", &sub)?,
            });
        }
        timed_catalog(&section, &rules)?;
        Ok((tenant, rules))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreLayer {
    backend: Option<String>,
    module: Option<PathBuf>,
    token: Option<String>,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
    url: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    service_key_file: Option<PathBuf>,
    timeout_seconds: Option<u64>,
    country: Option<String>,
}

impl KeystoreLayer {
    /// The typed keystore of tenant `name`, or `None` for the embedded one; errors name the
    /// tenant's section and the key that is wrong.
    fn resolve(self, name: &str) -> Result<Option<(TenantName, KeystoreSettings)>> {
        let section = format!("[keystores.{name}]");
        let tenant = TenantName::parse(name).with_context(|| format!("{section}: tenant name"))?;
        let pkcs11_keys = self.module.is_some()
            || self.token.is_some()
            || self.pin_file.is_some()
            || self.pin_env.is_some();
        let sapci_keys = self.url.is_some()
            || self.token_url.is_some()
            || self.client_id.is_some()
            || self.client_secret_file.is_some()
            || self.client_secret_env.is_some()
            || self.service_key_file.is_some()
            || self.timeout_seconds.is_some()
            || self.country.is_some();
        let backend = self.backend.as_deref().map(str::trim);
        if pkcs11_keys && backend != Some("pkcs11") {
            bail!("{section}: module, token, pin_file and pin_env are for backend = \"pkcs11\"");
        }
        if sapci_keys && backend != Some("sap-ci") {
            bail!(
                "{section}: url, token_url, client_id, client_secret_file, client_secret_env, service_key_file, timeout_seconds and country are for backend = \"sap-ci\""
            );
        }
        match backend {
            None | Some("embedded") => Ok(None),
            Some("sap-ci") => Ok(Some((
                tenant,
                KeystoreSettings::SapCi(sapci(self, &section)?),
            ))),
            Some("pkcs11") => {
                let module = self.module.with_context(|| {
                    format!(
                        "{section}: backend \"pkcs11\" needs module (the PKCS#11 library's path)"
                    )
                })?;
                let token_label = non_empty(self.token).with_context(|| {
                    format!("{section}: backend \"pkcs11\" needs token (the token's label)")
                })?;
                let pin = match (self.pin_file, non_empty(self.pin_env)) {
                    (Some(f), None) => rekey_pkcs11::PinSource::File(f),
                    (None, Some(v)) => rekey_pkcs11::PinSource::Env(v.trim().to_string()),
                    (Some(_), Some(_)) => {
                        bail!("{section}: give pin_file or pin_env, not both")
                    }
                    (None, None) => bail!(
                        "{section}: backend \"pkcs11\" needs pin_file or pin_env (the user PIN is never written into the configuration)"
                    ),
                };
                Ok(Some((
                    tenant,
                    KeystoreSettings::Pkcs11(rekey_pkcs11::Pkcs11Config {
                        module,
                        token_label,
                        pin,
                    }),
                )))
            }
            Some(other) => {
                bail!(
                    "{section}: unknown backend {other:?}; use \"embedded\", \"pkcs11\" or \"sap-ci\""
                )
            }
        }
    }
}

/// The `sap-ci` keys of `[keystores.<tenant>]`: the service key's `url`, `tokenurl` and
/// `clientid`, and where its `clientsecret` is kept (a file or an environment variable, never
/// the configuration itself).
fn sapci(layer: KeystoreLayer, section: &str) -> Result<rekey_service::sapci::SapCiConfig> {
    use rekey_service::sapci::{DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT, SapCiConfig, SecretSource};
    let http_url = |key: &str, v: Option<String>, what: &str| -> Result<String> {
        let v = non_empty(v)
            .with_context(|| format!("{section}: backend \"sap-ci\" needs {key} ({what})"))?;
        let v = v.trim().to_string();
        rekey_service::http::parse_url(&v).map_err(|e| anyhow::anyhow!("{section}: {key}: {e}"))?;
        Ok(v)
    };
    let timeout = match layer.timeout_seconds {
        None => DEFAULT_TIMEOUT,
        Some(s) if (1..=600).contains(&s) => std::time::Duration::from_secs(s),
        Some(s) => bail!("{section}: timeout_seconds = {s}: use 1 to 600"),
    };
    // The tenant requires a country in every generated key's subject (CONNECTORS.md A7).
    let country = match non_empty(layer.country.clone()) {
        None => None,
        Some(c) => {
            let c = c.trim().to_string();
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
                bail!("{section}: country = {c:?}: use a two-letter ISO 3166 code such as \"DE\"");
            }
            Some(c)
        }
    };
    // The service key as BTP hands it over: url, tokenurl and clientid are taken from it
    // now; its clientsecret is read again by each command that connects, and not kept here.
    if let Some(path) = layer.service_key_file {
        if layer.url.is_some()
            || layer.token_url.is_some()
            || layer.client_id.is_some()
            || layer.client_secret_file.is_some()
            || layer.client_secret_env.is_some()
        {
            bail!(
                "{section}: service_key_file holds url, token_url, client_id and the client secret; give it alone, or the four without it"
            );
        }
        let key = rekey_service::sapci::ServiceKey::read(&path)
            .map_err(|e| anyhow::anyhow!("{section}: service_key_file: {e}"))?;
        let url = http_url("url", Some(key.url), "the service key's url")?;
        let token_url = http_url(
            "token_url",
            Some(key.token_url),
            "the service key's tokenurl",
        )?;
        return Ok(SapCiConfig {
            url,
            token_url,
            client_id: key.client_id,
            client_secret: SecretSource::ServiceKey(path),
            timeout,
            attempts: DEFAULT_ATTEMPTS,
            country,
        });
    }
    let url = http_url("url", layer.url, "the service key's url")?;
    let token_url = http_url("token_url", layer.token_url, "the service key's tokenurl")?;
    let client_id = non_empty(layer.client_id)
        .with_context(|| {
            format!("{section}: backend \"sap-ci\" needs client_id (the service key's clientid)")
        })?
        .trim()
        .to_string();
    let client_secret = match (layer.client_secret_file, non_empty(layer.client_secret_env)) {
        (Some(f), None) => SecretSource::File(f),
        (None, Some(v)) => SecretSource::Env(v.trim().to_string()),
        (Some(_), Some(_)) => {
            bail!("{section}: give client_secret_file or client_secret_env, not both")
        }
        (None, None) => bail!(
            "{section}: backend \"sap-ci\" needs client_secret_file or client_secret_env, or service_key_file (the client secret is never written into the configuration)"
        ),
    };
    Ok(SapCiConfig {
        url,
        token_url,
        client_id,
        client_secret,
        timeout,
        attempts: DEFAULT_ATTEMPTS,
        country,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MailLayer {
    transport: Option<MailTransport>,
    outbox_dir: Option<PathBuf>,
    from: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<MailTls>,
    username: Option<String>,
    password: Option<MailPassword>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerLayer {
    listen: Option<SocketAddr>,
    base_url: Option<String>,
    api_token_days: Option<u32>,
    metrics_token: Option<MailPassword>,
    metrics_names: Option<bool>,
    header_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_body_bytes: Option<usize>,
    api_requests_per_minute: Option<u32>,
    link_requests_per_minute: Option<u32>,
    lease_secs: Option<u32>,
    watch_interval_secs: Option<u64>,
    watch_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLayer {
    format: Option<LogFormat>,
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewalLayer {
    renew_before_days: Option<u32>,
    clock_skew_minutes: Option<u32>,
}

/// The HTTP limits of `[server]`, unset keys at [`rekey_server::limits::Limits::default`];
/// a timeout of 0 or a body limit under 1 KiB is refused, naming the key.
fn server_limits(l: &ServerLayer) -> Result<rekey_server::limits::Limits> {
    let d = rekey_server::limits::Limits::default();
    let secs = |v: Option<u64>, key: &str, var: &str, default: Duration| match v {
        None => Ok(default),
        Some(0) => Err(anyhow!(
            "[server] {key} = 0 (or {var}): a timeout of at least 1 second"
        )),
        Some(n) => Ok(Duration::from_secs(n)),
    };
    let max_body_bytes = l.max_body_bytes.unwrap_or(d.max_body_bytes);
    if max_body_bytes < 1024 {
        bail!(
            "[server] max_body_bytes = {max_body_bytes} (or REKEY_SERVER_MAX_BODY_BYTES): at least 1024"
        );
    }
    Ok(rekey_server::limits::Limits {
        header_read_timeout: secs(
            l.header_timeout_secs,
            "header_timeout_secs",
            "REKEY_SERVER_HEADER_TIMEOUT_SECS",
            d.header_read_timeout,
        )?,
        request_timeout: secs(
            l.request_timeout_secs,
            "request_timeout_secs",
            "REKEY_SERVER_REQUEST_TIMEOUT_SECS",
            d.request_timeout,
        )?,
        max_body_bytes,
        api_per_minute: l.api_requests_per_minute.unwrap_or(d.api_per_minute),
        link_per_minute: l.link_requests_per_minute.unwrap_or(d.link_per_minute),
    })
}

impl Layer {
    /// Parses TOML text; errors name `source`, the line and the offending key, on one line.
    fn parse(text: &str, source: &str) -> Result<Layer> {
        toml::from_str(text).map_err(|e| {
            let mut msg = format!("configuration file {source}");
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                msg.push_str(&format!(", line {line}"));
            }
            anyhow!("{msg}: {}", e.message().trim().replace('\n', " "))
        })
    }

    /// `self` with every key that `over` sets replaced.
    fn overlay(self, over: Layer) -> Layer {
        Layer {
            data_dir: over.data_dir.or(self.data_dir),
            database_url: over.database_url.or(self.database_url),
            kek_file: over.kek_file.or(self.kek_file),
            mail: MailLayer {
                transport: over.mail.transport.or(self.mail.transport),
                outbox_dir: over.mail.outbox_dir.or(self.mail.outbox_dir),
                from: over.mail.from.or(self.mail.from),
                host: over.mail.host.or(self.mail.host),
                port: over.mail.port.or(self.mail.port),
                tls: over.mail.tls.or(self.mail.tls),
                username: over.mail.username.or(self.mail.username),
                password: over.mail.password.or(self.mail.password),
            },
            server: ServerLayer {
                listen: over.server.listen.or(self.server.listen),
                base_url: over.server.base_url.or(self.server.base_url),
                api_token_days: over.server.api_token_days.or(self.server.api_token_days),
                metrics_token: over.server.metrics_token.or(self.server.metrics_token),
                metrics_names: over.server.metrics_names.or(self.server.metrics_names),
                header_timeout_secs: over
                    .server
                    .header_timeout_secs
                    .or(self.server.header_timeout_secs),
                request_timeout_secs: over
                    .server
                    .request_timeout_secs
                    .or(self.server.request_timeout_secs),
                max_body_bytes: over.server.max_body_bytes.or(self.server.max_body_bytes),
                api_requests_per_minute: over
                    .server
                    .api_requests_per_minute
                    .or(self.server.api_requests_per_minute),
                link_requests_per_minute: over
                    .server
                    .link_requests_per_minute
                    .or(self.server.link_requests_per_minute),
                lease_secs: over.server.lease_secs.or(self.server.lease_secs),
                watch_interval_secs: over
                    .server
                    .watch_interval_secs
                    .or(self.server.watch_interval_secs),
                watch_policy: over.server.watch_policy.or(self.server.watch_policy),
            },
            renewal: RenewalLayer {
                renew_before_days: over
                    .renewal
                    .renew_before_days
                    .or(self.renewal.renew_before_days),
                clock_skew_minutes: over
                    .renewal
                    .clock_skew_minutes
                    .or(self.renewal.clock_skew_minutes),
            },
            log: LogLayer {
                format: over.log.format.or(self.log.format),
                level: over.log.level.or(self.log.level),
            },
            // A tenant's section in a later layer replaces the whole section.
            timing: {
                let mut t = self.timing;
                t.extend(over.timing);
                t
            },
            keystores: {
                let mut k = self.keystores;
                k.extend(over.keystores);
                k
            },
        }
    }

    /// The `REKEY_...` variables as a layer (`REKEY_KEK` itself is handled by [`KekSource`]).
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer> {
        fn parsed<T: std::str::FromStr>(
            env: &dyn Fn(&str) -> Option<String>,
            name: &str,
        ) -> Result<Option<T>>
        where
            T::Err: fmt::Display,
        {
            match env(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|e| anyhow!("environment variable {name}={v:?}: {e}")),
            }
        }
        let transport = match env("REKEY_MAIL_TRANSPORT") {
            None => None,
            Some(v) => Some(match v.trim() {
                "file" => MailTransport::File,
                "smtp" => MailTransport::Smtp,
                other => bail!(
                    "environment variable REKEY_MAIL_TRANSPORT={other:?}: unknown mail transport; use \"file\" or \"smtp\""
                ),
            }),
        };
        Ok(Layer {
            // REKEY_DATA_DIR is read by clap as --data-dir, which wins over every layer.
            data_dir: None,
            database_url: env("REKEY_DATABASE_URL"),
            kek_file: env("REKEY_KEK_FILE").map(PathBuf::from),
            mail: MailLayer {
                transport,
                outbox_dir: env("REKEY_MAIL_OUTBOX_DIR").map(PathBuf::from),
                from: env("REKEY_MAIL_FROM"),
                host: env("REKEY_MAIL_HOST"),
                port: parsed(env, "REKEY_MAIL_PORT")?,
                tls: parsed(env, "REKEY_MAIL_TLS")?,
                username: env("REKEY_MAIL_USERNAME"),
                password: env("REKEY_MAIL_PASSWORD").map(MailPassword),
            },
            server: ServerLayer {
                listen: parsed(env, "REKEY_SERVER_LISTEN")?,
                base_url: env("REKEY_SERVER_BASE_URL"),
                api_token_days: parsed(env, "REKEY_SERVER_API_TOKEN_DAYS")?,
                metrics_token: env("REKEY_SERVER_METRICS_TOKEN").map(MailPassword),
                metrics_names: parsed(env, "REKEY_SERVER_METRICS_NAMES")?,
                header_timeout_secs: parsed(env, "REKEY_SERVER_HEADER_TIMEOUT_SECS")?,
                request_timeout_secs: parsed(env, "REKEY_SERVER_REQUEST_TIMEOUT_SECS")?,
                max_body_bytes: parsed(env, "REKEY_SERVER_MAX_BODY_BYTES")?,
                api_requests_per_minute: parsed(env, "REKEY_SERVER_API_REQUESTS_PER_MINUTE")?,
                link_requests_per_minute: parsed(env, "REKEY_SERVER_LINK_REQUESTS_PER_MINUTE")?,
                lease_secs: parsed(env, "REKEY_SERVER_LEASE_SECS")?,
                watch_interval_secs: parsed(env, "REKEY_SERVER_WATCH_INTERVAL_SECS")?,
                watch_policy: env("REKEY_SERVER_WATCH_POLICY"),
            },
            renewal: RenewalLayer {
                renew_before_days: parsed(env, "REKEY_RENEWAL_RENEW_BEFORE_DAYS")?,
                clock_skew_minutes: parsed(env, "REKEY_RENEWAL_CLOCK_SKEW_MINUTES")?,
            },
            log: LogLayer {
                format: parsed(env, "REKEY_LOG_FORMAT")?,
                level: env("REKEY_LOG_LEVEL"),
            },
            keystores: Default::default(),
            timing: Default::default(),
        })
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl Settings {
    /// Loads the settings for `global` from the defaults, the configuration file and the
    /// process environment.
    pub fn load(global: &GlobalArgs) -> Result<Settings> {
        Settings::load_with(global, &|name| std::env::var(name).ok())
    }

    /// As [`Settings::load`], reading environment variables through `env` (for tests).
    pub fn load_with(
        global: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let defaults = Layer::parse(DEFAULT_TOML, "(built-in defaults)")?;
        let default_dir = defaults
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./rekey-data"));

        // The file: named explicitly (must exist), or found in the data directory.
        let (file_layer, config_file) = match &global.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read configuration file {}", path.display())
                })?;
                (
                    Layer::parse(&text, &path.display().to_string())?,
                    Some(path.clone()),
                )
            }
            None => {
                let dir = global.data_dir.clone().unwrap_or(default_dir);
                let path = dir.join(CONFIG_FILE_NAME);
                match std::fs::read_to_string(&path) {
                    Ok(text) => (
                        Layer::parse(&text, &path.display().to_string())?,
                        Some(path),
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Layer::default(), None),
                    Err(e) => {
                        return Err(anyhow!(
                            "cannot read configuration file {}: {e}",
                            path.display()
                        ));
                    }
                }
            }
        };
        let merged = defaults.overlay(file_layer).overlay(Layer::from_env(env)?);

        let data_dir = global
            .data_dir
            .clone()
            .or(merged.data_dir)
            .unwrap_or_else(|| PathBuf::from("./rekey-data"));
        let database_url = DatabaseUrl(match non_empty(merged.database_url) {
            Some(url) => url.trim().to_string(),
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join(DB_FILE_NAME).display()
            ),
        });
        database_url.backend()?;

        // REKEY_KEK_FILE names a file explicitly; otherwise REKEY_KEK (an environment variable,
        // the highest layer) beats a key file from the configuration file or the default.
        let kek = match (env("REKEY_KEK_FILE"), env(KEK_ENV_VAR)) {
            (Some(f), _) if !f.trim().is_empty() => KekSource::File(PathBuf::from(f)),
            (_, Some(_)) => KekSource::Env,
            _ => KekSource::File(
                merged
                    .kek_file
                    .unwrap_or_else(|| data_dir.join(KEK_FILE_NAME)),
            ),
        };

        let limits = server_limits(&merged.server)?;
        let lease_secs = merged.server.lease_secs.unwrap_or(30);
        if !(3..=3600).contains(&lease_secs) {
            bail!(
                "[server] lease_secs = {lease_secs} (or REKEY_SERVER_LEASE_SECS): between 3 and 3600 seconds"
            );
        }
        let lease = chrono::Duration::seconds(i64::from(lease_secs));
        let watch_interval = match merged.server.watch_interval_secs.unwrap_or(3600) {
            0 => None,
            n => Some(Duration::from_secs(n)),
        };
        let watch_policy = match merged.server.watch_policy.as_deref().map(str::trim) {
            None | Some("notify") => rekey_service::watch::Policy::Notify,
            Some("open") => rekey_service::watch::Policy::Open,
            Some(other) => bail!(
                "[server] watch_policy = {other:?} (or REKEY_SERVER_WATCH_POLICY): use \"notify\" or \"open\""
            ),
        };
        let listen = merged
            .server
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let base_url = non_empty(merged.server.base_url)
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();

        let transport = merged.mail.transport.unwrap_or(MailTransport::File);
        let host = non_empty(merged.mail.host).map(|h| h.trim().to_string());
        if transport == MailTransport::Smtp && host.is_none() {
            bail!(
                "mail transport \"smtp\" needs [mail] host (or REKEY_MAIL_HOST): the SMTP server to send through"
            );
        }
        let tls = merged.mail.tls.unwrap_or(MailTls::Starttls);
        let username = non_empty(merged.mail.username);
        if username.is_some() && merged.mail.password.is_none() {
            bail!(
                "[mail] username is set but no password (set [mail] password or REKEY_MAIL_PASSWORD)"
            );
        }
        let skew_minutes = merged.renewal.clock_skew_minutes.unwrap_or(60);
        let max_skew = rekey_crypto::MAX_CLOCK_SKEW.num_minutes();
        if i64::from(skew_minutes) > max_skew {
            bail!(
                "[renewal] clock_skew_minutes = {skew_minutes} (or REKEY_RENEWAL_CLOCK_SKEW_MINUTES): at most {max_skew} minutes (a day)"
            );
        }
        let mut timing = std::collections::BTreeMap::new();
        for (name, layer) in merged.timing {
            let (tenant, rules) = layer.resolve(&name)?;
            timing.insert(tenant, rules);
        }
        let mut keystores = std::collections::BTreeMap::new();
        for (name, layer) in merged.keystores {
            if let Some((tenant, k)) = layer.resolve(&name)? {
                keystores.insert(tenant, k);
            }
        }
        Ok(Settings {
            keystores,
            timing,
            mail: MailSettings {
                transport,
                outbox_dir: merged
                    .mail
                    .outbox_dir
                    .unwrap_or_else(|| data_dir.join("outbox")),
                from: non_empty(merged.mail.from).unwrap_or_else(|| "rekey@localhost".into()),
                host,
                port: merged.mail.port.unwrap_or(match tls {
                    MailTls::Tls => 465,
                    MailTls::Starttls => 587,
                    MailTls::None => 25,
                }),
                tls,
                username,
                password: merged.mail.password,
            },
            server: ServerSettings {
                listen,
                base_url,
                api_token_days: merged.server.api_token_days.filter(|d| *d > 0),
                metrics_token: merged
                    .server
                    .metrics_token
                    .filter(|t| !t.expose().trim().is_empty()),
                metrics_names: merged.server.metrics_names.unwrap_or(false),
                limits,
                lease,
                watch_interval,
                watch_policy,
            },
            renewal: RenewalSettings {
                renew_before_days: merged.renewal.renew_before_days.unwrap_or(30),
                clock_skew: chrono::Duration::minutes(i64::from(skew_minutes)),
            },
            log: LogSettings {
                format: merged.log.format.unwrap_or(LogFormat::Text),
                level: non_empty(merged.log.level).unwrap_or_else(|| "info".into()),
            },
            data_dir,
            config_file,
            database_url,
            kek,
        })
    }

    /// The SQLite database file, when the database is SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        Some(PathBuf::from(path))
    }

    /// Loads the key-encryption key from its source.
    pub fn load_kek(&self) -> Result<Kek> {
        match &self.kek {
            KekSource::File(path) => {
                if !path.exists() {
                    bail!(
                        "no key-encryption key: {} does not exist and {KEK_ENV_VAR} is not set; run `rekey init` first",
                        path.display()
                    );
                }
                Ok(Kek::from_file(path)?)
            }
            KekSource::Env => Kek::load(None).map_err(Into::into),
        }
    }
}

/// What every stateful command works with: the settings and the opened store (with the KEK,
/// migrated), and who the audit log records as the actor.
#[derive(Debug)]
pub struct Context {
    /// The resolved settings.
    #[allow(dead_code)] // read by the server, scheduler and mail commands
    pub settings: Settings,
    /// The store, opened with the KEK.
    pub store: Store,
    /// The actor recorded in the audit log: `--as EMAIL`, else `cli:<login name>`.
    pub actor: String,
    /// The global options the context was opened with.
    pub global: GlobalArgs,
    /// Tenants resolved so far, to name them in error messages.
    seen: std::sync::Mutex<Vec<Tenant>>,
}

/// The audit actor for `global`: the `--as` address (validated), else `cli:<login name>`.
pub fn actor(global: &GlobalArgs) -> Result<String> {
    match &global.as_user {
        Some(e) => Ok(Email::parse(e).context("--as")?.to_string()),
        None => {
            let user = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "unknown".into());
            Ok(format!("cli:{user}"))
        }
    }
}

/// Opens the settings and the store (applying migrations) with the KEK for `global`.
pub async fn open_context(global: &GlobalArgs) -> Result<Context> {
    let settings = Settings::load(global)?;
    let actor = actor(global)?;
    if settings.sqlite_path().is_some() && !settings.data_dir.is_dir() {
        bail!(
            "data directory {} does not exist; run `rekey init` first (or give --data-dir)",
            settings.data_dir.display()
        );
    }
    if let Some(db) = settings.sqlite_path()
        && !db.exists()
    {
        bail!(
            "database {} does not exist; run `rekey init` first",
            db.display()
        );
    }
    let kek = settings.load_kek()?;
    let store = attach_keystores(open_store(&settings).await?.with_kek(kek), &settings).await?;
    Ok(Context {
        settings,
        store,
        actor,
        global: global.clone(),
        seen: std::sync::Mutex::default(),
    })
}

impl Context {
    /// The service commands run renewals with: `[renewal] clock_skew_minutes`, `[server]
    /// lease_secs`, each configured tenant's `[timing.<tenant>]` and each SAP Cloud Integration
    /// tenant's `[keystores.<tenant>]` (a section naming a tenant that does not exist yet is
    /// skipped).
    pub async fn service(&self) -> Result<rekey_service::Service> {
        let mut service =
            rekey_service::Service::new(self.store.clone(), rekey_engine::Catalog::builtin()?)
                .with_clock_skew(self.settings.renewal.clock_skew)
                .with_lease(self.settings.server.lease);
        for (name, rules) in &self.settings.timing {
            let tenant = match self.store.tenant_by_name(name).await {
                Ok(t) => t,
                Err(rekey_store::StoreError::UnknownTenant { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let catalog = timed_catalog(&format!("[timing.{name}]"), rules)?;
            service = service.with_tenant_catalog(tenant.id, catalog);
        }
        for (name, k) in &self.settings.keystores {
            let KeystoreSettings::SapCi(config) = k else {
                continue;
            };
            let tenant = match self.store.tenant_by_name(name).await {
                Ok(t) => t,
                Err(rekey_store::StoreError::UnknownTenant { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            service = service.with_sap_ci(tenant.id, config.clone());
        }
        Ok(service)
    }
}

/// `store` with each configured tenant's keystore opened and attached (see
/// [`KeystoreSettings`]). A section naming a tenant that does not exist yet is skipped: the
/// tenant gets its keystore from the first command after `rekey tenant add`.
pub async fn attach_keystores(mut store: Store, settings: &Settings) -> Result<Store> {
    for (name, k) in &settings.keystores {
        let tenant = match store.tenant_by_name(name).await {
            Ok(t) => t,
            Err(rekey_store::StoreError::UnknownTenant { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        match k {
            KeystoreSettings::Pkcs11(config) => {
                let keystore = rekey_pkcs11::Pkcs11Keystore::open(config).with_context(|| {
                    format!("[keystores.{name}]: cannot open the tenant's PKCS#11 token")
                })?;
                store = store.with_backend(tenant.id, std::sync::Arc::new(keystore));
            }
            // Read live by `rekey tenant check` and `rekey tenant show`; key operations are
            // refused until rekey acts on the tenant, never done with keys rekey holds.
            KeystoreSettings::SapCi(config) => {
                store = store.with_backend(
                    tenant.id,
                    std::sync::Arc::new(rekey_service::sapci::SapCiKeystore::new(config)),
                );
            }
        }
    }
    Ok(store)
}

/// Connections in a SQLite pool. sea-orm gives a SQLite pool one connection unless told
/// otherwise, which makes every request's reads queue behind each other and behind any write
/// transaction (`cargo bench --bench sign`: 4 concurrent signers reach 10–20 % more signatures
/// per second with 4). Writers still take SQLite's one write lock (`BEGIN IMMEDIATE`, busy
/// timeout) as several processes on one file already do; WAL readers do not wait for it.
const SQLITE_CONNECTIONS: u32 = 4;

/// Opens (creating a SQLite file if needed) and migrates the database, without a KEK.
pub async fn open_store(settings: &Settings) -> Result<Store> {
    let open = || format!("cannot open database {}", settings.database_url);
    let mut opts =
        rekey_store::db::connect_options(settings.database_url.expose()).with_context(open)?;
    if settings.sqlite_path().is_some() {
        opts.max_connections(SQLITE_CONNECTIONS);
    }
    Store::connect(opts).await.with_context(open)
}

impl Context {
    /// The tenant named by `--tenant`, or the only tenant there is.
    pub async fn tenant(&self) -> Result<Tenant> {
        let t = resolve_tenant(&self.store, self.global.tenant.as_deref()).await?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(t.clone());
        }
        Ok(t)
    }

    /// Refuses unless `--as` names a registered user holding one of `roles` for `tenant`'s
    /// state (`receiver_admin`: of `receiver`), with the engine's rule
    /// ([`rekey_engine::access::holds_for`]): the keystore, signer-table and receiver commands
    /// change what renewals guard, so they are done by someone entitled to, as renewal steps
    /// are. `what` names the change in the refusal.
    pub async fn require_role(
        &self,
        tenant: &Tenant,
        roles: &[Role],
        receiver: Option<ReceiverId>,
        what: &str,
    ) -> Result<()> {
        let names = roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        let tname = tenant.name.as_str();
        let Some(email) = &self.global.as_user else {
            bail!(
                "give --as EMAIL: {what} takes a registered user holding the {names} role of tenant {tname:?}"
            );
        };
        let email = Email::parse(email).context("--as")?;
        let user = match self.store.user_by_email(&email).await {
            Ok(u) => u,
            Err(rekey_store::StoreError::UnknownUser(_)) => {
                bail!("no user {email} is registered")
            }
            Err(e) => return Err(e.into()),
        };
        let actor = rekey_engine::Actor::new(user.email.to_string(), user.grants);
        if roles
            .iter()
            .any(|r| rekey_engine::access::holds_for(&actor, *r, tenant.id, receiver))
        {
            Ok(())
        } else {
            bail!(
                "{what}: only a user holding the {names} role of tenant {tname:?} may do this, and {email} does not"
            )
        }
    }

    /// `e` as one line, with `tenant <id>` of every tenant resolved so far written as
    /// `tenant "<name>"` (the store's messages name tenants by id).
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let mut msg = format!("{e:#}");
        if let Ok(seen) = self.seen.lock() {
            for t in seen.iter() {
                msg = msg.replace(
                    &format!("tenant {}", t.id),
                    &format!("tenant {:?}", t.name.as_str()),
                );
            }
        }
        anyhow!(msg)
    }
}

/// The tenant `name`, or the only one when `name` is `None`; errors list the tenants.
pub async fn resolve_tenant(store: &Store, name: Option<&str>) -> Result<Tenant> {
    let all = store.tenants().await.context("cannot list tenants")?;
    let names = || {
        all.iter()
            .map(|t| format!("{:?}", t.name.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => {
            let n = TenantName::parse(n).context("--tenant")?;
            match all.iter().find(|t| t.name == n) {
                Some(t) => Ok(t.clone()),
                None if all.is_empty() => bail!(
                    "unknown tenant {:?}: there are no tenants yet; create one with `rekey tenant add NAME`",
                    n.as_str()
                ),
                None => bail!("unknown tenant {:?}; tenants: {}", n.as_str(), names()),
            }
        }
        None => match all.as_slice() {
            [only] => Ok(only.clone()),
            [] => bail!("there are no tenants yet; create one with `rekey tenant add NAME`"),
            _ => bail!(
                "there are several tenants ({}); choose one with --tenant NAME",
                names()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn global(dir: &std::path::Path) -> GlobalArgs {
        GlobalArgs {
            data_dir: Some(dir.to_path_buf()),
            ..GlobalArgs::default()
        }
    }

    #[test]
    fn defaults() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.data_dir, dir.path());
        assert_eq!(
            s.database_url.expose(),
            format!("sqlite://{}/rekey.db?mode=rwc", dir.path().display())
        );
        assert_eq!(s.kek, KekSource::File(dir.path().join("kek.key")));
        assert_eq!(s.mail.transport, MailTransport::File);
        assert_eq!(s.mail.outbox_dir, dir.path().join("outbox"));
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.server.base_url, "http://127.0.0.1:8080");
        assert_eq!(s.renewal.renew_before_days, 30);
        assert_eq!(s.renewal.clock_skew, chrono::Duration::hours(1));
        assert_eq!(s.config_file, None);
        Ok(())
    }

    #[test]
    fn clock_skew_from_file_and_env_and_too_large_is_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join(CONFIG_FILE_NAME);
        std::fs::write(&file, "[renewal]\nclock_skew_minutes = 5\n")?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.renewal.clock_skew, chrono::Duration::minutes(5));
        let env = |n: &str| (n == "REKEY_RENEWAL_CLOCK_SKEW_MINUTES").then(|| "0".to_string());
        let s = Settings::load_with(&global(dir.path()), &env)?;
        assert_eq!(s.renewal.clock_skew, chrono::Duration::zero());
        std::fs::write(&file, "[renewal]\nclock_skew_minutes = 1441\n")?;
        let e = Settings::load_with(&global(dir.path()), &no_env).expect_err("too large");
        assert!(e.to_string().contains("clock_skew_minutes = 1441"), "{e}");
        assert!(e.to_string().contains("at most 1440"), "{e}");
        std::fs::write(&file, "[renewal]\nclock_skew_minutes = -5\n")?;
        let e = Settings::load_with(&global(dir.path()), &no_env).expect_err("negative");
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("-5"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn log_format_and_level_from_file_then_env() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.log.level, "info");
        let file = dir.path().join(CONFIG_FILE_NAME);
        std::fs::write(&file, "[log]\nformat = \"json\"\nlevel = \"debug\"\n")?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.log.level, "debug");
        let env = |n: &str| match n {
            "REKEY_LOG_FORMAT" => Some("text".to_string()),
            "REKEY_LOG_LEVEL" => Some("warn".to_string()),
            _ => None,
        };
        let s = Settings::load_with(&global(dir.path()), &env)?;
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.log.level, "warn");
        let env = |n: &str| (n == "REKEY_LOG_FORMAT").then(|| "xml".to_string());
        let e = Settings::load_with(&global(dir.path()), &env).expect_err("unknown format");
        assert!(e.to_string().contains("REKEY_LOG_FORMAT"), "{e}");
        Ok(())
    }

    #[test]
    fn metrics_token_and_names_from_file_and_env_never_printed() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(
            (s.server.metrics_token.is_none(), s.server.metrics_names),
            (true, false)
        );
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "[server]\nmetrics_token = \"file-secret\"\nmetrics_names = true\n",
        )?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(
            s.server.metrics_token.as_ref().map(|t| t.expose()),
            Some("file-secret")
        );
        assert!(s.server.metrics_names);
        let env = |n: &str| match n {
            "REKEY_SERVER_METRICS_TOKEN" => Some("env-secret".to_string()),
            "REKEY_SERVER_METRICS_NAMES" => Some("false".to_string()),
            _ => None,
        };
        let s = Settings::load_with(&global(dir.path()), &env)?;
        assert_eq!(
            s.server.metrics_token.as_ref().map(|t| t.expose()),
            Some("env-secret")
        );
        assert!(!s.server.metrics_names);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("env-secret") && !shown.contains("file-secret"),
            "{shown}"
        );
        Ok(())
    }

    #[test]
    fn api_token_days_default_file_env_and_zero_for_never() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.server.api_token_days, Some(90));
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "[server]\napi_token_days = 7\n",
        )?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.server.api_token_days, Some(7));
        let env = |n: &str| (n == "REKEY_SERVER_API_TOKEN_DAYS").then(|| "0".to_string());
        let s = Settings::load_with(&global(dir.path()), &env)?;
        assert_eq!(s.server.api_token_days, None, "0: until revoked");
        let bad = |n: &str| (n == "REKEY_SERVER_API_TOKEN_DAYS").then(|| "soon".to_string());
        let err = Settings::load_with(&global(dir.path()), &bad)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("REKEY_SERVER_API_TOKEN_DAYS"), "{err}");
        Ok(())
    }

    #[test]
    fn file_then_env() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "kek_file = \"/k\"\n[renewal]\nrenew_before_days = 10\n[server]\nlisten = \"0.0.0.0:9000\"\n",
        )?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.renewal.renew_before_days, 10);
        assert_eq!(s.kek, KekSource::File(PathBuf::from("/k")));
        assert_eq!(s.server.base_url, "http://0.0.0.0:9000");
        assert_eq!(s.config_file, Some(dir.path().join(CONFIG_FILE_NAME)));

        let env = |n: &str| match n {
            "REKEY_RENEWAL_RENEW_BEFORE_DAYS" => Some("5".to_string()),
            "REKEY_DATABASE_URL" => Some("postgres://u:hunter2@h:5432/db".to_string()),
            "REKEY_KEK" => Some("x".to_string()),
            _ => None,
        };
        let s = Settings::load_with(&global(dir.path()), &env)?;
        assert_eq!(s.renewal.renew_before_days, 5);
        assert_eq!(s.kek, KekSource::Env);
        assert_eq!(s.database_url.backend()?, Backend::Postgres);
        let shown = format!("{s:?} {}", s.database_url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://u:***@h:5432/db"), "{shown}");
        Ok(())
    }

    #[test]
    fn unknown_keys_name_file_and_key() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[mail]\ntransport = \"file\"\nsmtp_hots = \"x\"\n")?;
        let g = GlobalArgs {
            config: Some(path.clone()),
            ..global(dir.path())
        };
        let err = Settings::load_with(&g, &no_env)
            .err()
            .map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("smtp_hots"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        Ok(())
    }

    #[test]
    fn bad_env_is_named() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let env = |n: &str| (n == "REKEY_SERVER_LISTEN").then(|| "nowhere".to_string());
        let err = Settings::load_with(&global(dir.path()), &env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("REKEY_SERVER_LISTEN"), "{err}");
        Ok(())
    }

    #[test]
    fn smtp_settings_from_file_and_env_and_the_password_is_never_shown() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "[mail]\ntransport = \"smtp\"\nhost = \"smtp.example\"\ntls = \"tls\"\nusername = \"rekey\"\npassword = \"hunter2\"\n",
        )?;
        let s = Settings::load_with(&global(dir.path()), &no_env)?;
        assert_eq!(s.mail.transport, MailTransport::Smtp);
        assert_eq!(s.mail.host.as_deref(), Some("smtp.example"));
        assert_eq!(s.mail.tls, MailTls::Tls);
        assert_eq!(s.mail.port, 465);
        assert_eq!(
            s.mail.password.as_ref().map(|p| p.expose()),
            Some("hunter2")
        );
        assert!(!format!("{s:?}").contains("hunter2"));

        let env = |n: &str| match n {
            "REKEY_MAIL_PORT" => Some("2525".to_string()),
            "REKEY_MAIL_TLS" => Some("starttls".to_string()),
            "REKEY_MAIL_PASSWORD" => Some("s3cret".to_string()),
            _ => None,
        };
        let s = Settings::load_with(&global(dir.path()), &env)?;
        assert_eq!((s.mail.port, s.mail.tls), (2525, MailTls::Starttls));
        assert!(!format!("{s:?}").contains("s3cret"));

        let bad = |n: &str| (n == "REKEY_MAIL_TLS").then(|| "ssl".to_string());
        let err = Settings::load_with(&global(dir.path()), &bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("REKEY_MAIL_TLS"), "{err}");

        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "[mail]\ntransport = \"smtp\"\n",
        )?;
        let err = Settings::load_with(&global(dir.path()), &no_env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("host"), "{err}");
        Ok(())
    }

    #[test]
    fn embedded_defaults_parse() -> Result<()> {
        Layer::parse(DEFAULT_TOML, "defaults")?;
        Ok(())
    }
}
