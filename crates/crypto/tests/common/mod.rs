//! Shared fixtures for the crypto crate's tests.
#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use rekey_crypto::{Certificate, KeyPair, self_signed};

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn key(n: u32) -> KeyPair {
    KeyPair::from_pem(&fixture(&format!("key{n}.pem"))).expect("fixture key parses")
}

/// A fixture key with a fresh self-signed certificate.
pub fn signer(n: u32, cn: &str) -> (KeyPair, Certificate) {
    let k = key(n);
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    let c = self_signed(&k, &format!("CN={cn},O=rekey test"), start, 3650).expect("self-signed");
    (k, c)
}
