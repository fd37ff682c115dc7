//! Where `rekey` logs: `tracing` events on stderr, formatted by `tracing-subscriber`.
//!
//! `rekey serve` logs as `[log]` says (text or JSON lines, `info` by default), with a span per
//! HTTP request (method, route, status, latency) and per renewal step, timer or mail, so every
//! line says what it belongs to; a span's end is logged with its timing. Every other command
//! logs only warnings and errors, as text: its answer is its output, not its log. `RUST_LOG`
//! overrides the level everywhere.
//!
//! What must not be logged is never given to `tracing`: request headers (bearer tokens, session
//! cookies), request paths (a link's token is part of its path; the route's template is logged
//! instead), configuration values (the SMTP password, the key-encryption key).

use anyhow::{Result, anyhow};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// Installs the process's subscriber: `format` on stderr, events at `default_level` and above
/// unless `RUST_LOG` says otherwise. A bad filter is an error naming where it came from.
pub fn init(format: LogFormat, default_level: &str) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| anyhow!("RUST_LOG={v:?}: {e}"))?
        }
        _ => EnvFilter::try_new(default_level)
            .map_err(|e| anyhow!("[log] level = {default_level:?} (or REKEY_LOG_LEVEL): {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::CLOSE);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| anyhow!("cannot install the logger: {e}"))
}
