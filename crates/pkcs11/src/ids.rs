//! The `CKA_ID`s rekey writes, so that a retried token call finds the object it made before and
//! reconciliation can tell rekey's objects (and which renewal made each) from anyone else's.
//!
//! Every id starts with [`ID_PREFIX`]. A renewal's key is `prefix ‖ renewal uuid (16 bytes) ‖
//! version (8 bytes, big-endian)`, deterministic so a generate repeated after a crash adopts the
//! key instead of making a second one; a key made outside a renewal is `prefix ‖ "c" ‖ 16
//! random bytes ‖ unix seconds (8 bytes, big-endian)`.

use std::time::{SystemTime, UNIX_EPOCH};

use rekey_crypto::TokenKeyId;
use uuid::Uuid;

/// The first bytes of every `CKA_ID` rekey writes.
pub const ID_PREFIX: &[u8] = b"rekey";

/// Marks an id made outside a renewal.
const FRESH_TAG: u8 = b'c';

/// What an id rekey wrote says about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyIdKind {
    /// Made by a renewal, at the renewal's `version`.
    Renewal {
        /// The renewal.
        renewal: Uuid,
        /// The renewal's version when the key was asked for.
        version: i64,
    },
    /// Made outside a renewal (keygen, import), at `made_at` (unix seconds).
    Fresh {
        /// When the id was made, in seconds since the Unix epoch.
        made_at: i64,
    },
}

/// The id of the key a renewal makes at `version`: the same inputs give the same id.
pub fn renewal_key_id(renewal: Uuid, version: i64) -> TokenKeyId {
    let mut bytes = Vec::with_capacity(ID_PREFIX.len() + 24);
    bytes.extend_from_slice(ID_PREFIX);
    bytes.extend_from_slice(renewal.as_bytes());
    bytes.extend_from_slice(&version.to_be_bytes());
    wrap(bytes)
}

/// A new random id for a key made outside a renewal, stamped with `now` (the caller's clock:
/// this crate reads none).
pub fn fresh_key_id(now: SystemTime) -> TokenKeyId {
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        // No OS randomness: a v4 UUID has its own source (and 122 random bits).
        random = *Uuid::new_v4().as_bytes();
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut bytes = Vec::with_capacity(ID_PREFIX.len() + 25);
    bytes.extend_from_slice(ID_PREFIX);
    bytes.push(FRESH_TAG);
    bytes.extend_from_slice(&random);
    bytes.extend_from_slice(&now.to_be_bytes());
    wrap(bytes)
}

/// What an id says, if rekey wrote it; `None` for any other id.
pub fn parse_key_id(id: &TokenKeyId) -> Option<KeyIdKind> {
    let rest = id.as_bytes().strip_prefix(ID_PREFIX)?;
    match rest.len() {
        24 => {
            let (uuid, version) = rest.split_at(16);
            Some(KeyIdKind::Renewal {
                renewal: Uuid::from_slice(uuid).ok()?,
                version: i64::from_be_bytes(version.try_into().ok()?),
            })
        }
        25 if rest[0] == FRESH_TAG => Some(KeyIdKind::Fresh {
            made_at: i64::from_be_bytes(rest[17..].try_into().ok()?),
        }),
        _ => None,
    }
}

fn wrap(bytes: Vec<u8>) -> TokenKeyId {
    match TokenKeyId::new(bytes) {
        Ok(id) => id,
        // The prefix alone makes the id non-empty.
        Err(_) => unreachable!("a prefixed id is never empty"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_ids_are_deterministic_and_parse_back() {
        let r = Uuid::new_v4();
        let a = renewal_key_id(r, 7);
        assert_eq!(a, renewal_key_id(r, 7));
        assert_ne!(a, renewal_key_id(r, 8));
        assert!(a.as_bytes().starts_with(ID_PREFIX));
        assert_eq!(
            parse_key_id(&a),
            Some(KeyIdKind::Renewal {
                renewal: r,
                version: 7
            })
        );
    }

    #[test]
    fn fresh_ids_differ_and_carry_their_time() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let a = fresh_key_id(now);
        let b = fresh_key_id(now);
        assert_ne!(a, b);
        let Some(KeyIdKind::Fresh { made_at }) = parse_key_id(&a) else {
            panic!("fresh id {a} did not parse as fresh");
        };
        assert_eq!(made_at, 1_800_000_000);
    }

    #[test]
    fn foreign_ids_are_not_rekeys() {
        for raw in [&b"\x01\x02"[..], b"rekex0123456789abcdef01234567", b"rekey"] {
            let id = TokenKeyId::new(raw.to_vec()).expect("non-empty");
            assert_eq!(parse_key_id(&id), None, "{id}");
        }
    }
}
