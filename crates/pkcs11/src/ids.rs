//! Ids for key objects made outside rekey's renewals: the token tests, the benchmark and
//! tools. Every id rekey writes starts with [`ID_PREFIX`], so that [`crate::Pkcs11Keystore`]
//! lists and touches only rekey's objects; the ids of keys the service makes (deterministic
//! per renewal step, scoped to a tenant) are laid out by `rekey_service::tokens`.

use rekey_crypto::TokenKeyId;

pub use rekey_crypto::TOKEN_ID_PREFIX as ID_PREFIX;

/// A new random id: [`ID_PREFIX`] and 16 random bytes.
pub fn fresh_key_id() -> TokenKeyId {
    let mut bytes = ID_PREFIX.to_vec();
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        // No OS randomness: a v4 UUID has its own source (and 122 random bits).
        random = *uuid::Uuid::new_v4().as_bytes();
    }
    bytes.extend_from_slice(&random);
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
    fn fresh_ids_differ_and_carry_the_prefix() {
        let (a, b) = (fresh_key_id(), fresh_key_id());
        assert_ne!(a, b);
        assert!(a.as_bytes().starts_with(ID_PREFIX));
    }
}
