//! Sign → verify round trips, the receiver rule, and refusals.

mod common;

use chrono::Utc;
use common::signer;
use rekey_crypto::{
    CertSource, CryptoError, DigestAlg, ReceiverProfile, SignOptions, SignerSpec, SignerStatus,
    Verdict, receiver_verdict, sign, verify,
};

fn opts(detached: bool) -> SignOptions {
    SignOptions {
        detached,
        signing_time: Utc::now(),
    }
}

#[test]
fn two_signers_attached_verify_each_signer() {
    let (k1, c1) = signer(1, "old");
    let (k2, c2) = signer(2, "new");
    let chain1 = [c1.clone()];
    let chain2 = [c2.clone()];
    let der = sign(
        b"payload",
        &[
            SignerSpec {
                key: &k1,
                chain: &chain1,
                digest: DigestAlg::Sha256,
                include_certs: true,
                include_signing_time: true,
            },
            SignerSpec {
                key: &k2,
                chain: &chain2,
                digest: DigestAlg::Sha512,
                include_certs: true,
                include_signing_time: false,
            },
        ],
        &opts(false),
    )
    .expect("signs");
    let v = verify(&der, None, &[], CertSource::EmbeddedAndSupplied).expect("parses");
    assert_eq!(v.content, b"payload");
    assert!(v.attached);
    assert_eq!(v.signers.len(), 2);
    assert!(
        v.signers.iter().all(|s| s.status == SignerStatus::Valid),
        "{:?}",
        v.signers
    );
    let fps: Vec<_> = v.signers.iter().filter_map(|s| s.certificate).collect();
    assert!(fps.contains(&c1.fingerprint()) && fps.contains(&c2.fingerprint()));
    assert_eq!(
        v.signers
            .iter()
            .filter(|s| s.signing_time.is_some())
            .count(),
        1
    );
}

#[test]
fn detached_needs_content_and_rejects_other_content() {
    let (k1, c1) = signer(1, "old");
    let chain = [c1.clone()];
    let spec = SignerSpec {
        key: &k1,
        chain: &chain,
        digest: DigestAlg::Sha384,
        include_certs: false,
        include_signing_time: true,
    };
    let der = sign(b"abc", &[spec], &opts(true)).expect("signs");
    assert!(matches!(
        verify(&der, None, &chain, CertSource::SuppliedOnly),
        Err(CryptoError::Content(_))
    ));
    let ok = verify(&der, Some(b"abc"), &chain, CertSource::SuppliedOnly).expect("parses");
    assert_eq!(ok.signers[0].status, SignerStatus::Valid);
    let bad = verify(&der, Some(b"abd"), &chain, CertSource::SuppliedOnly).expect("parses");
    assert_eq!(bad.signers[0].status, SignerStatus::DigestMismatch);
    // Without certificates in the message and none supplied, nothing can verify.
    let none = verify(&der, Some(b"abc"), &[], CertSource::EmbeddedAndSupplied).expect("parses");
    assert_eq!(none.signers[0].status, SignerStatus::NoCertificate);
}

#[test]
fn receiver_rule_follows_profile_and_trust() {
    let (k1, c1) = signer(1, "old");
    let (k2, c2) = signer(2, "new");
    let (c1s, c2s) = ([c1.clone()], [c2.clone()]);
    let both = sign(
        b"m",
        &[
            SignerSpec {
                key: &k1,
                chain: &c1s,
                digest: DigestAlg::Sha256,
                include_certs: true,
                include_signing_time: true,
            },
            SignerSpec {
                key: &k2,
                chain: &c2s,
                digest: DigestAlg::Sha256,
                include_certs: true,
                include_signing_time: true,
            },
        ],
        &opts(false),
    )
    .expect("signs");
    let multi = ReceiverProfile {
        verifies_multiple_keys: false,
        accepts_multiple_signatures: true,
    };
    let single = ReceiverProfile {
        verifies_multiple_keys: false,
        accepts_multiple_signatures: false,
    };
    let (v, _) = receiver_verdict(&both, None, &c1s, &multi, Utc::now()).expect("parses");
    assert_eq!(
        v,
        Verdict::Accepted {
            by: c1.fingerprint()
        }
    );
    let (v, _) = receiver_verdict(&both, None, &c2s, &multi, Utc::now()).expect("parses");
    assert_eq!(
        v,
        Verdict::Accepted {
            by: c2.fingerprint()
        }
    );
    let (v, _) = receiver_verdict(&both, None, &c1s, &single, Utc::now()).expect("parses");
    assert!(!v.is_accepted());
    // Certificates carried in the message are not trust.
    let (v, _) = receiver_verdict(&both, None, &[], &multi, Utc::now()).expect("parses");
    assert!(!v.is_accepted());
    let one = sign(
        b"m",
        &[SignerSpec {
            key: &k2,
            chain: &c2s,
            digest: DigestAlg::Sha256,
            include_certs: true,
            include_signing_time: true,
        }],
        &opts(false),
    )
    .expect("signs");
    let (v, _) = receiver_verdict(&one, None, &c1s, &single, Utc::now()).expect("parses");
    assert!(!v.is_accepted());
    let (v, _) = receiver_verdict(&one, None, &c2s, &single, Utc::now()).expect("parses");
    assert!(v.is_accepted());
}

#[test]
fn refuses_empty_duplicate_and_mismatched_signers() {
    let (k1, c1) = signer(1, "a");
    let (_k2, c2) = signer(2, "b");
    assert!(matches!(
        sign(b"x", &[], &opts(false)),
        Err(CryptoError::NoSigner)
    ));
    let chain = [c1.clone()];
    let s = SignerSpec {
        key: &k1,
        chain: &chain,
        digest: DigestAlg::Sha256,
        include_certs: true,
        include_signing_time: true,
    };
    assert!(matches!(
        sign(b"x", &[s, s], &opts(false)),
        Err(CryptoError::DuplicateSigner(_))
    ));
    let wrong = [c2];
    let m = SignerSpec {
        key: &k1,
        chain: &wrong,
        digest: DigestAlg::Sha256,
        include_certs: true,
        include_signing_time: true,
    };
    assert!(matches!(
        sign(b"x", &[m], &opts(false)),
        Err(CryptoError::KeyMismatch { .. })
    ));
}

#[test]
fn tampered_signature_is_bad() {
    let (k1, c1) = signer(1, "a");
    let chain = [c1.clone()];
    let s = SignerSpec {
        key: &k1,
        chain: &chain,
        digest: DigestAlg::Sha256,
        include_certs: true,
        include_signing_time: true,
    };
    let mut der = sign(b"hello", &[s], &opts(false)).expect("signs");
    let n = der.len();
    der[n - 5] ^= 0x01; // inside the signature value, the last field
    let v = verify(&der, None, &[], CertSource::EmbeddedAndSupplied).expect("parses");
    assert_eq!(v.signers[0].status, SignerStatus::BadSignature);
}

/// Strict receivers (Bouncy Castle's default verifier, Java-based systems) refuse a signer
/// whose certificate was not valid at the message's signingTime or is not valid at receipt;
/// the reference receiver must refuse the same messages.
#[test]
fn reference_receiver_rejects_a_signer_certificate_not_valid_at_signing_time_or_receipt() {
    use chrono::TimeZone;
    let k = common::key(1);
    let now = Utc
        .with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date");
    let hour = chrono::Duration::hours(1);
    let cert = rekey_crypto::self_signed_at(&k, "CN=fresh", now, hour, 30).expect("cert");
    let chain = [cert.clone()];
    let signed_at = |t| {
        sign(
            b"m",
            &[SignerSpec {
                key: &k,
                chain: &chain,
                digest: DigestAlg::Sha256,
                include_certs: true,
                include_signing_time: true,
            }],
            &SignOptions {
                detached: false,
                signing_time: t,
            },
        )
        .expect("signs")
    };
    let profile = ReceiverProfile::default();
    // Inside the clock-skew allowance: accepted.
    let (v, _) = receiver_verdict(&signed_at(now - hour), None, &chain, &profile, now - hour)
        .expect("parses");
    assert!(v.is_accepted(), "{v:?}");
    // Signed before notBefore: the signature is good, the certificate was not valid yet.
    let early = now - hour - chrono::Duration::seconds(1);
    let (v, report) =
        receiver_verdict(&signed_at(early), None, &chain, &profile, now).expect("parses");
    assert!(
        report.signers[0].is_valid(),
        "the signature itself verifies"
    );
    match v {
        Verdict::Rejected { reason } => {
            assert!(reason.contains("signingTime"), "{reason}");
            assert!(reason.contains("CN=fresh"), "{reason}");
        }
        other => panic!("accepted a certificate not yet valid at signingTime: {other:?}"),
    }
    // Received after notAfter.
    let late = now + chrono::Duration::days(31);
    let (v, _) = receiver_verdict(&signed_at(now), None, &chain, &profile, late).expect("parses");
    match v {
        Verdict::Rejected { reason } => assert!(reason.contains("receipt"), "{reason}"),
        other => panic!("accepted a certificate expired at receipt: {other:?}"),
    }
    // Without signingTime only the receipt counts.
    let no_time = sign(
        b"m",
        &[SignerSpec {
            key: &k,
            chain: &chain,
            digest: DigestAlg::Sha256,
            include_certs: true,
            include_signing_time: false,
        }],
        &opts(false),
    )
    .expect("signs");
    let (v, _) = receiver_verdict(&no_time, None, &chain, &profile, now).expect("parses");
    assert!(v.is_accepted(), "{v:?}");
}

#[test]
fn self_signed_at_backdates_not_before_by_the_skew_and_refuses_a_bad_skew() {
    use chrono::TimeZone;
    let k = common::key(1);
    let now = Utc
        .with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date");
    let skew = chrono::Duration::minutes(90);
    let c = rekey_crypto::self_signed_at(&k, "CN=x", now, skew, 365).expect("cert");
    assert_eq!(c.not_before(), now - skew);
    assert_eq!(c.not_after(), now + chrono::Duration::days(365));
    for bad in [
        chrono::Duration::minutes(-1),
        chrono::Duration::minutes(1441),
    ] {
        let e = rekey_crypto::self_signed_at(&k, "CN=x", now, bad, 365).expect_err("refused");
        assert!(
            matches!(e, CryptoError::Validity(_)) && e.to_string().contains("clock-skew"),
            "{e}"
        );
    }
}
