//! Fuzzes everything rekey parses from outside: `decode_input` + `verify` (CMS SignedData as
//! DER, PEM or Base64), `pkcs12::import`, private keys and certificates. The entry point is
//! shared with `crates/crypto/tests/fuzz_corpus.rs`, which replays the committed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rekey_crypto::fuzzing::parse_untrusted(data);
});
