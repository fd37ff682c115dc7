//! Fingerprints computed here are the shared vocabulary's: the SHA-256 of the DER encoding,
//! read back by the one parser from the forms people copy.

use chrono::{TimeZone, Utc};
use rekey_crypto::{Fingerprint, KeyBits, KeyPair, fingerprint_of, self_signed};

#[test]
fn a_certificates_fingerprint_is_the_sha256_of_its_der_and_parses_back() {
    let key = KeyPair::generate(KeyBits::try_from(2048u32).expect("size")).expect("key");
    let at = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let cert = self_signed(&key, "CN=fingerprint", at, 30).expect("certificate");
    let fp = cert.fingerprint();
    assert_eq!(fp, fingerprint_of(cert.to_der()));
    // SHA-256 of "abc", the FIPS 180-2 test vector.
    assert_eq!(
        fingerprint_of(b"abc").to_string(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(fp.to_string().parse::<Fingerprint>().ok(), Some(fp));
    assert_eq!(fp.to_colon_hex().parse::<Fingerprint>().ok(), Some(fp));
    assert_eq!(
        format!("sha256 Fingerprint={}", fp.to_colon_hex())
            .parse::<Fingerprint>()
            .ok(),
        Some(fp)
    );
}
