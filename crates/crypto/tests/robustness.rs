//! No panic on any input: garbage, truncations, flipped bytes, unknown OIDs, empty signer sets
//! and absurd lengths all come back as errors (or per-signer failures), never as panics. Also
//! the refusals of keys and names, and the CSR / CA-chain round trip through OpenSSL.

mod common;

use chrono::Utc;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerInfos};
use common::{fixture, fixture_path, openssl, run_ok, signer, write};
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode};
use proptest::prelude::*;
use rekey_crypto::{
    CertSource, Certificate, CryptoError, DigestAlg, KeyBits, KeyPair, ReceiverProfile,
    SignOptions, SignerSpec, SignerStatus, check_chain, decode_input, judge, parse_subject, pkcs12,
    receiver_verdict, self_signed, sign, verify,
};

/// Everything that parses outside input, fed the same bytes; the result is irrelevant, only
/// that it returns.
fn feed_everything(bytes: &[u8]) {
    if let Ok(der) = decode_input(bytes) {
        let _ = verify(&der, None, &[], CertSource::EmbeddedAndSupplied);
        let _ = verify(&der, Some(b"content"), &[], CertSource::EmbeddedAndSupplied);
    }
    let _ = verify(bytes, Some(b"x"), &[], CertSource::EmbeddedAndSupplied);
    let _ = pkcs12::import(bytes, "pw");
    let _ = KeyPair::from_pkcs8_der(bytes);
    let _ = KeyPair::from_pem_or_der(bytes);
    let _ = Certificate::parse_any(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = KeyPair::from_pem(text);
        let _ = Certificate::parse_pem_chain(text);
        let _ = parse_subject(text);
        let _ = text.parse::<rekey_crypto::Fingerprint>();
        let _ = text.parse::<DigestAlg>();
    }
}

fn two_signer_message(detached: bool) -> (Vec<u8>, Vec<Certificate>) {
    let (k1, c1) = signer(1, "one");
    let (k2, c2) = signer(2, "two");
    let (a, b) = ([c1.clone()], [c2.clone()]);
    let der = sign(
        b"robust payload",
        &[
            SignerSpec {
                key: &k1,
                chain: &a,
                digest: DigestAlg::Sha256,
                include_certs: true,
                include_signing_time: true,
            },
            SignerSpec {
                key: &k2,
                chain: &b,
                digest: DigestAlg::Sha384,
                include_certs: true,
                include_signing_time: false,
            },
        ],
        &SignOptions {
            detached,
            signing_time: Utc::now(),
        },
    )
    .expect("signs");
    (der, vec![c1, c2])
}

#[test]
fn garbage_inputs_are_errors() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0x30],
        vec![0x30, 0x00],
        vec![0x30, 0x80, 0x00, 0x00],
        vec![0xff; 64],
        b"-----BEGIN PKCS7-----\n".to_vec(),
        b"-----BEGIN PKCS7-----\n!!!!\n-----END PKCS7-----\n".to_vec(),
        b"-----END PKCS7----------BEGIN PKCS7-----".to_vec(),
        b"-----BEGIN".to_vec(),
        b"not base64 at all \xc3\x28".to_vec(),
        "é".repeat(100).into_bytes(),
        b"MIIB".to_vec(),
    ];
    for c in &cases {
        feed_everything(c);
        let der = decode_input(c);
        if let Ok(der) = der {
            assert!(verify(&der, None, &[], CertSource::EmbeddedAndSupplied).is_err());
        }
    }
}

#[test]
fn huge_lengths_are_errors() {
    let cases: Vec<Vec<u8>> = vec![
        // SEQUENCE claiming 2^31-1 bytes.
        vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x06, 0x00],
        // SEQUENCE claiming 2^32-1 bytes, and an 8-byte length form.
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x03],
        vec![0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A ContentInfo whose OID is fine but whose [0] claims a gigabyte.
        [
            &[0x30, 0x13, 0x06, 0x09][..],
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02],
            &[0xa0, 0x84, 0x40, 0x00, 0x00, 0x00, 0x30, 0x00],
        ]
        .concat(),
        // Deep nesting.
        std::iter::repeat_n([0x30u8, 0x80], 10_000)
            .flatten()
            .collect(),
        std::iter::repeat_n(0x30u8, 100_000).collect(),
    ];
    for c in &cases {
        feed_everything(c);
        assert!(verify(c, None, &[], CertSource::EmbeddedAndSupplied).is_err());
        assert!(pkcs12::import(c, "pw").is_err());
    }
}

#[test]
fn every_prefix_of_a_valid_message_is_an_error() {
    for detached in [false, true] {
        let (der, _) = two_signer_message(detached);
        let content: Option<&[u8]> = detached.then_some(b"robust payload");
        assert!(
            verify(&der, content, &[], CertSource::EmbeddedAndSupplied)
                .expect("whole message verifies")
                .signers
                .iter()
                .all(|s| s.is_valid())
        );
        for n in 0..der.len() {
            assert!(
                verify(&der[..n], content, &[], CertSource::EmbeddedAndSupplied).is_err(),
                "prefix {n} of {}",
                der.len()
            );
        }
        // The same through the PEM and Base64 front door.
        let b64 = rekey_crypto::to_base64(&der);
        for n in (0..b64.len()).step_by(7) {
            if let Ok(d) = decode_input(&b64.as_bytes()[..n]) {
                assert!(verify(&d, content, &[], CertSource::EmbeddedAndSupplied).is_err());
            }
        }
    }
}

#[test]
fn every_flipped_byte_is_an_error_or_a_failed_signer() {
    let (der, certs) = two_signer_message(false);
    for i in 0..der.len() {
        let mut bad = der.clone();
        bad[i] ^= 0x55;
        match verify(&bad, None, &certs, CertSource::SuppliedOnly) {
            Err(_) => {}
            Ok(v) => {
                // A flip inside DER can be harmless only in bytes no signature covers and the
                // verifier ignores; it must never make a signer valid for other content.
                if v.content == b"robust payload" {
                    continue;
                }
                assert!(v.signers.iter().all(|s| !s.is_valid()), "byte {i}");
            }
        }
    }
}

/// Replaces every occurrence of `from` with `to` (same length) in `der`.
fn replace_bytes(der: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= der.len() {
        if &der[i..i + from.len()] == from {
            der[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

#[test]
fn unknown_digest_oid_is_unsupported_not_a_panic() {
    let (k1, c1) = signer(1, "one");
    let chain = [c1.clone()];
    let mut der = sign(
        b"x",
        &[SignerSpec {
            key: &k1,
            chain: &chain,
            digest: DigestAlg::Sha512,
            include_certs: false,
            include_signing_time: false,
        }],
        &SignOptions {
            detached: false,
            signing_time: Utc::now(),
        },
    )
    .expect("signs");
    // id-sha512 2.16.840.1.101.3.4.2.3 → 2.16.840.1.101.3.4.2.99 (unassigned).
    let sha512 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    let unknown = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x63];
    assert!(replace_bytes(&mut der, &sha512, &unknown) >= 2);
    let v = verify(&der, None, &chain, CertSource::SuppliedOnly).expect("parses");
    assert!(
        matches!(&v.signers[0].status, SignerStatus::Unsupported(m) if m.contains("2.16.840.1.101.3.4.2.99")),
        "{:?}",
        v.signers[0].status
    );
    assert!(!judge(&v, &ReceiverProfile::default(), Utc::now()).is_accepted());
}

#[test]
fn unknown_signature_algorithm_and_content_type_are_reported() {
    let (k1, c1) = signer(1, "one");
    let chain = [c1.clone()];
    let der = sign(
        b"x",
        &[SignerSpec {
            key: &k1,
            chain: &chain,
            digest: DigestAlg::Sha256,
            include_certs: false,
            include_signing_time: false,
        }],
        &SignOptions {
            detached: false,
            signing_time: Utc::now(),
        },
    )
    .expect("signs");
    // sha256WithRSAEncryption 1.2.840.113549.1.1.11 → …1.1.99 (unassigned).
    let mut bad_sig = der.clone();
    let sha256_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    let unknown = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x63];
    // The certificate is not embedded, so the only occurrence is the SignerInfo's.
    assert_eq!(replace_bytes(&mut bad_sig, &sha256_rsa, &unknown), 1);
    let v = verify(&bad_sig, None, &chain, CertSource::SuppliedOnly).expect("parses");
    assert!(matches!(v.signers[0].status, SignerStatus::Unsupported(_)));

    // The outer content type signedData 1.2.840.113549.1.7.2 → envelopedData …7.3.
    let mut not_signed = der.clone();
    let signed_data_oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    let enveloped = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    assert_eq!(
        replace_bytes(&mut not_signed, &signed_data_oid, &enveloped),
        1
    );
    let e = verify(&not_signed, None, &chain, CertSource::SuppliedOnly).expect_err("refused");
    assert!(e.to_string().contains("is not signed-data"), "{e}");

    // eContentType id-data → an unassigned …7.99: contentType attribute no longer matches.
    let mut other_type = der;
    let data = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    let unknown_type = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x63];
    let replaced = replace_bytes(&mut other_type, &data, &unknown_type);
    assert!(replaced >= 1);
    let v = verify(&other_type, None, &chain, CertSource::SuppliedOnly).expect("parses");
    assert!(!v.signers[0].is_valid());
}

/// A SignedData with an empty SignerInfos SET, built by hand.
fn zero_signer_message(content: &[u8]) -> Vec<u8> {
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: Some(
                Any::encode_from(&OctetString::new(content).expect("octets")).expect("any"),
            ),
        },
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&sd).expect("any"),
    }
    .to_der()
    .expect("der")
}

#[test]
fn zero_signers_hand_made_is_rejected_by_the_rule() {
    let der = zero_signer_message(b"nobody signed this");
    assert!(ContentInfo::from_der(&der).is_ok());
    let (_, c1) = signer(1, "one");
    let (verdict, v) = receiver_verdict(&der, None, &[c1], &ReceiverProfile::default(), Utc::now())
        .expect("parses");
    assert!(v.signers.is_empty());
    assert!(!verdict.is_accepted());
}

#[test]
fn zero_signers_made_by_openssl_is_rejected_by_the_rule() {
    // `openssl crl2pkcs7 -nocrl` writes a degenerate SignedData: certificates, no signers.
    let dir = tempfile::tempdir().expect("tmp");
    let (_, c1) = signer(1, "one");
    let cert = write(dir.path(), "c.pem", c1.to_pem());
    let der = run_ok(
        openssl()
            .args(["crl2pkcs7", "-nocrl", "-outform", "DER", "-certfile"])
            .arg(&cert),
    );
    let (verdict, v) = receiver_verdict(
        &der,
        Some(b"anything"),
        std::slice::from_ref(&c1),
        &ReceiverProfile::default(),
        Utc::now(),
    )
    .expect("parses");
    assert!(v.signers.is_empty());
    assert_eq!(v.embedded_certificates, vec![c1]);
    assert!(!verdict.is_accepted(), "{verdict:?}");
}

#[test]
fn rsa_1024_is_refused_with_key_size() {
    assert!(matches!(
        KeyPair::from_pem(&fixture("key1024.pem")),
        Err(CryptoError::KeySize(1024))
    ));
    assert!(matches!(
        KeyBits::try_from(1024usize),
        Err(CryptoError::KeySize(1024))
    ));
    assert!(matches!(
        KeyBits::try_from(0u32),
        Err(CryptoError::KeySize(0))
    ));
    // Also as DER, and through the PEM-or-DER entry point.
    let der = run_ok(
        openssl()
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(fixture_path("key1024.pem")),
    );
    // PKCS#1 DER, as `openssl pkey -outform DER` writes it.
    let pkcs1 = run_ok(
        openssl()
            .args(["pkey", "-outform", "DER", "-in"])
            .arg(fixture_path("key1024.pem")),
    );
    let e = KeyPair::from_pem_or_der(&pkcs1);
    assert!(matches!(e, Err(CryptoError::KeySize(1024))), "{e:?}");
    let e = KeyPair::from_pkcs8_der(&der);
    assert!(matches!(e, Err(CryptoError::KeySize(1024))), "{e:?}");
    assert!(matches!(
        KeyPair::from_pem_or_der(&der),
        Err(CryptoError::KeySize(1024))
    ));
    // The accepted sizes are accepted.
    assert_eq!(
        KeyPair::from_pem(&fixture("key3072.pem"))
            .expect("3072 is fine")
            .bits(),
        3072
    );
}

#[test]
fn ec_key_is_refused_clearly() {
    let e = KeyPair::from_pem(&fixture("ec.pem")).expect_err("EC refused");
    assert!(
        matches!(&e, CryptoError::UnsupportedKey(m) if m.contains("not RSA")),
        "{e:?}"
    );
    // SEC1 "EC PRIVATE KEY" blocks too.
    let sec1 = run_ok(openssl().args(["ec", "-in"]).arg(fixture_path("ec.pem")));
    let e = KeyPair::from_pem(&String::from_utf8_lossy(&sec1)).expect_err("EC refused");
    assert!(matches!(e, CryptoError::UnsupportedKey(_)), "{e:?}");
}

#[test]
fn malformed_pem_keys_are_errors() {
    let good = fixture("key1.pem");
    let cases = [
        String::new(),
        "-----BEGIN PRIVATE KEY-----\n".to_string(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string(),
        "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n".to_string(),
        good.replace("-----END PRIVATE KEY-----", ""),
        good[..good.len() / 2].to_string(),
        good.replace('A', "B"),
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_string(),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            .to_string(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
    ];
    for c in &cases {
        assert!(KeyPair::from_pem(c).is_err(), "{c:?}");
    }
    assert!(matches!(
        KeyPair::from_pem("hello"),
        Err(CryptoError::MissingPem(_))
    ));
    for n in 0..good.len() {
        let _ = KeyPair::from_pem(&good[..n]);
    }
}

#[test]
fn regression_from_pem_reads_the_key_block_of_a_combined_pem_file() {
    // `openssl pkcs12 -nodes` output and "key + certificate in one file" PEMs used to fail
    // because the whole text was handed to the single-block PEM parser.
    let (k, c) = signer(1, "combined");
    let text = format!(
        "Bag Attributes\n    localKeyID: 01 02\nsubject=CN = combined\n{}{}",
        c.to_pem(),
        *k.to_pkcs8_pem().expect("pem")
    );
    let k2 = KeyPair::from_pem(&text).expect("finds the key block");
    assert!(k2.matches(&c));
    assert_eq!(
        Certificate::parse_any(text.as_bytes()).expect("certs"),
        vec![c]
    );
}

#[test]
fn regression_from_pem_or_der_reads_pkcs1_der() {
    let der = run_ok(
        openssl()
            .args(["pkey", "-outform", "DER", "-in"])
            .arg(fixture_path("key2.pem")),
    );
    let k = KeyPair::from_pem_or_der(&der).expect("PKCS#1 DER is read");
    assert_eq!(
        k.public_key_der().expect("spki"),
        common::key(2).public_key_der().expect("spki")
    );
}

#[test]
fn certificate_parsing_never_panics() {
    let (_, c) = signer(1, "cert");
    let der = c.to_der().to_vec();
    for n in 0..der.len() {
        assert!(Certificate::parse_any(&der[..n]).is_err(), "prefix {n}");
        assert!(Certificate::from_der(&der[..n]).is_err());
    }
    let pem = c.to_pem();
    for n in 0..pem.len() {
        let _ = Certificate::parse_any(&pem.as_bytes()[..n]);
    }
    assert!(matches!(
        Certificate::parse_any(b"-----BEGIN CERTIFICATE-----\nMIIB\n"),
        Err(CryptoError::MalformedCertificate(_))
    ));
    assert!(matches!(
        Certificate::parse_any(b"-----BEGIN PRIVATE KEY-----\n"),
        Err(CryptoError::MissingPem("CERTIFICATE"))
    ));
}

#[test]
fn subject_dn_errors() {
    for bad in ["", "   ", "CN", "=x", "CN=a,,O=b", "NOPE=x"] {
        let e = parse_subject(bad).expect_err(bad);
        assert!(matches!(e, CryptoError::Subject { .. }), "{bad:?}: {e:?}");
    }
    let k = common::key(1);
    assert!(matches!(
        self_signed(&k, "CN", Utc::now(), 10),
        Err(CryptoError::Subject { .. })
    ));
    assert!(matches!(
        rekey_crypto::certificate_request(&k, ""),
        Err(CryptoError::Subject { .. })
    ));
    assert!(matches!(
        self_signed(&k, "CN=x", Utc::now(), 0),
        Err(CryptoError::Validity(_))
    ));
    assert!(parse_subject("CN=signer,O=Example,C=DE").is_ok());
}

#[test]
fn csr_passes_openssl_req_verify() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = common::key(2);
    let csr = rekey_crypto::certificate_request(&k, "CN=csr test,O=rekey,C=DE").expect("csr");
    let path = write(
        dir.path(),
        "r.csr",
        rekey_crypto::certificate_request_pem(&csr),
    );
    let out = openssl()
        .args(["req", "-verify", "-noout", "-in"])
        .arg(&path)
        .output()
        .expect("runs");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"),
        "{text}"
    );
    let subj = run_ok(
        openssl()
            .args(["req", "-noout", "-subject", "-in"])
            .arg(&path),
    );
    let subj = String::from_utf8_lossy(&subj);
    assert!(subj.contains("CN = csr test"), "{subj}");
}

#[test]
fn check_chain_with_an_openssl_ca_signed_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_, ca) = signer(3, "Test CA");
    let ca_pem = write(dir.path(), "ca.pem", ca.to_pem());
    let key = common::key(1);
    let csr = rekey_crypto::certificate_request(&key, "CN=leaf,O=rekey test").expect("csr");
    let csr_path = write(
        dir.path(),
        "leaf.csr",
        rekey_crypto::certificate_request_pem(&csr),
    );
    let leaf_pem = run_ok(
        openssl()
            .args(["x509", "-req", "-in"])
            .arg(&csr_path)
            .arg("-CA")
            .arg(&ca_pem)
            .arg("-CAkey")
            .arg(fixture_path("key3.pem"))
            .args(["-set_serial", "7", "-days", "30"]),
    );
    let leaf = Certificate::from_pem(&String::from_utf8_lossy(&leaf_pem)).expect("leaf");
    assert_eq!(leaf.issuer(), ca.subject());
    check_chain(&key, &[leaf.clone(), ca.clone()]).expect("chain links");
    check_chain(&key, std::slice::from_ref(&leaf)).expect("leaf alone matches the key");

    // The wrong certificate for the key.
    let e = check_chain(&common::key(2), &[leaf.clone(), ca.clone()]).expect_err("mismatch");
    assert!(matches!(e, CryptoError::KeyMismatch { .. }), "{e:?}");
    // The wrong issuer: another CA with the same name but a different key.
    let (_, fake_ca) = signer(2, "Test CA");
    let e = check_chain(&key, &[leaf.clone(), fake_ca]).expect_err("bad signature");
    assert!(matches!(e, CryptoError::Chain { index: 1, .. }), "{e:?}");
    // An unrelated issuer name.
    let (_, other) = signer(2, "Other CA");
    let e = check_chain(&key, &[leaf, other]).expect_err("wrong issuer");
    assert!(matches!(e, CryptoError::Chain { index: 1, .. }), "{e:?}");
    assert!(matches!(
        check_chain(&key, &[]),
        Err(CryptoError::Chain { index: 0, .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        feed_everything(&bytes);
    }

    #[test]
    fn random_der_prefixed_bytes_never_panic(
        tag in prop_oneof![Just(0x30u8), Just(0x31), Just(0xa0), Just(0x04), Just(0x06)],
        len in any::<u32>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![tag, 0x84];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&body);
        feed_everything(&bytes);
    }

    #[test]
    fn mutated_valid_message_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (der, certs) = cached_message();
        let mut bad = der.clone();
        for (at, byte) in edits {
            let i = at.index(bad.len());
            bad[i] = byte;
        }
        let _ = verify(&bad, None, certs, CertSource::SuppliedOnly);
        let _ = verify(&bad, None, &[], CertSource::EmbeddedAndSupplied);
    }
}

fn cached_message() -> &'static (Vec<u8>, Vec<Certificate>) {
    static MSG: std::sync::OnceLock<(Vec<u8>, Vec<Certificate>)> = std::sync::OnceLock::new();
    MSG.get_or_init(|| two_signer_message(false))
}
