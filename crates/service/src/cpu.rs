//! CPU-heavy crypto off the async workers: [`blocking`] runs key generation and signing on
//! tokio's blocking pool, so a renewal generating an RSA key (seconds of CPU) does not stall the
//! other requests and timers the same workers serve. Owns nothing else; callers pass in owned
//! data and get the result back.

use crate::{Result, ServiceError};

/// Runs `f` on the blocking pool and waits for it. A panic in `f` is passed on as a panic; a
/// task cancelled because the runtime is shutting down is [`ServiceError::Interrupted`].
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ServiceError::Interrupted(e.to_string())),
    }
}
