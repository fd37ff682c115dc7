//! Fail points for crash tests: `REKEY_FAILPOINT=<point>[:<n>]` makes the process abort
//! (`std::process::abort`, as abrupt as `kill -9` for the database) the `n`-th time (default
//! the first) it reaches `<point>`.
//!
//! Points, counted per process:
//! - `after-effect` — after the shell carried out one effect, before the next one (inside the
//!   transaction);
//! - `before-commit` — after every effect and the renewal's save, just before `COMMIT`;
//! - `after-commit` — just after `COMMIT`, before the caller hears of it;
//! - `before-token-generate` / `after-token-generate` — around a key generated on a tenant's
//!   PKCS#11 token, inside the event's transaction (never reached for the embedded keystore);
//! - `before-token-project` / `before-token-destroy` — in the reconciliation after a commit,
//!   before a key object's label and certificate are set, and before an orphan is destroyed;
//! - `before-remote-rename` / `after-remote-rename` — around a renewal's new key renamed into
//!   its alias on an SAP Cloud Integration tenant, inside the event's transaction (the
//!   generation there passes the `…-token-generate` points);
//! - `before-remote-delete` / `after-remote-delete` — in the SAP Cloud Integration
//!   reconciliation after a commit, around a retired or orphaned key's delete on the tenant.
//!
//! Without the variable every call is one atomic increment. This module must not do
//! anything else: no I/O besides reading the variable once and one line on stderr when it
//! fires.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Environment variable naming the fail point.
pub const ENV: &str = "REKEY_FAILPOINT";

/// The points the shell reaches.
pub const POINTS: &[&str] = &[
    "after-effect",
    "before-commit",
    "after-commit",
    "before-token-generate",
    "after-token-generate",
    "before-token-project",
    "before-token-destroy",
    "before-remote-rename",
    "after-remote-rename",
    "before-remote-delete",
    "after-remote-delete",
    "before-remote-import",
    "after-remote-import",
    "before-remote-chain",
    "after-remote-chain",
];

struct Armed {
    point: String,
    nth: u64,
}

/// Times each of [`POINTS`] was reached in this process.
static SEEN: [AtomicU64; POINTS.len()] = [const { AtomicU64::new(0) }; POINTS.len()];

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok()?;
            let (point, nth) = parse(&v)?;
            Some(Armed { point, nth })
        })
        .as_ref()
}

/// `point[:n]` with `n >= 1`; `None` for anything else (an unknown point never fires).
pub fn parse(v: &str) -> Option<(String, u64)> {
    let (point, nth) = match v.split_once(':') {
        Some((p, n)) => (p, n.trim().parse::<u64>().ok()?),
        None => (v, 1),
    };
    let point = point.trim();
    (nth >= 1 && POINTS.contains(&point)).then(|| (point.to_string(), nth))
}

/// Marks that the process reached `point`; aborts if this is the armed occurrence.
pub fn hit(point: &str) {
    let Some(i) = POINTS.iter().position(|p| *p == point) else {
        return;
    };
    let n = SEEN[i].fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(a) = armed()
        && a.point == point
        && n == a.nth
    {
        tracing::error!(point, n, "fail point reached; aborting");
        std::process::abort();
    }
}

/// How many times this process reached `point` (so a crash test knows how many there are).
pub fn seen(point: &str) -> u64 {
    POINTS
        .iter()
        .position(|p| *p == point)
        .map_or(0, |i| SEEN[i].load(Ordering::SeqCst))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_points() {
        assert_eq!(parse("after-effect:3"), Some(("after-effect".into(), 3)));
        assert_eq!(parse("before-commit"), Some(("before-commit".into(), 1)));
        assert_eq!(parse("after-effect:0"), None);
        assert_eq!(parse("after-effect:x"), None);
        assert_eq!(parse("somewhere:2"), None);
    }
}
