//! PKCS#12 import and export, against OpenSSL in both directions.

mod common;

use common::{fixture_path, openssl, run_ok, signer, write};
use rekey_crypto::{Certificate, CryptoError, KeyPair, pkcs12};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn export_import_round_trip() {
    let (k, c) = signer(1, "p12");
    let der = pkcs12::export(&k, std::slice::from_ref(&c), "s3cret").expect("exports");
    let (k2, chain) = pkcs12::import(&der, "s3cret").expect("imports");
    assert!(k2.matches(&c));
    assert_eq!(chain, vec![c]);
}

#[test]
fn rekey_export_is_read_by_openssl() {
    let dir = tempdir();
    let (k, c) = signer(2, "to openssl");
    let der = pkcs12::export(&k, std::slice::from_ref(&c), "pässword").expect("exports");
    let p12 = write(dir.path(), "f.p12", &der);
    let out = run_ok(openssl().args(["pkcs12", "-in"]).arg(&p12).args([
        "-passin",
        "pass:pässword",
        "-nodes",
    ]));
    let text = String::from_utf8(out).expect("PEM text");
    let key = KeyPair::from_pem(&text).expect("OpenSSL printed the private key");
    let cert = Certificate::from_pem(&text).expect("OpenSSL printed the certificate");
    assert_eq!(cert, c);
    assert!(key.matches(&c));
    // And OpenSSL reports the algorithms we claim to write (`-info` prints to stderr).
    let info = openssl()
        .args(["pkcs12", "-in"])
        .arg(&p12)
        .args(["-passin", "pass:pässword", "-info", "-noout"])
        .output()
        .expect("runs openssl");
    let info = String::from_utf8_lossy(&info.stderr);
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
    assert!(!info.contains("3DES") && !info.contains("RC2"), "{info}");
}

#[test]
fn openssl_default_export_is_imported() {
    let dir = tempdir();
    let (k, c) = signer(3, "from openssl");
    let cert = write(dir.path(), "c.pem", c.to_pem());
    let p12 = dir.path().join("f.p12");
    run_ok(
        openssl()
            .args(["pkcs12", "-export", "-inkey"])
            .arg(fixture_path("key3.pem"))
            .arg("-in")
            .arg(&cert)
            .args(["-passout", "pass:pw", "-name", "signer", "-out"])
            .arg(&p12),
    );
    let der = std::fs::read(&p12).expect("p12");
    let (k2, chain) = pkcs12::import(&der, "pw").expect("imports OpenSSL 3 defaults");
    assert!(k2.matches(&c) && k.matches(&c));
    assert_eq!(chain, vec![c]);
}

#[test]
fn openssl_export_with_ca_chain_orders_leaf_first() {
    let dir = tempdir();
    let (ca_key, ca) = signer(2, "Test CA");
    let _ = ca_key;
    let ca_pem = write(dir.path(), "ca.pem", ca.to_pem());
    let key = common::key(1);
    let csr = rekey_crypto::certificate_request(&key, "CN=leaf,O=rekey test").expect("csr");
    let csr_path = write(
        dir.path(),
        "leaf.csr",
        rekey_crypto::certificate_request_pem(&csr),
    );
    let leaf_path = dir.path().join("leaf.pem");
    run_ok(
        openssl()
            .args(["x509", "-req", "-in"])
            .arg(&csr_path)
            .arg("-CA")
            .arg(&ca_pem)
            .arg("-CAkey")
            .arg(fixture_path("key2.pem"))
            .args(["-CAcreateserial", "-days", "30", "-out"])
            .arg(&leaf_path),
    );
    let p12 = dir.path().join("f.p12");
    run_ok(
        openssl()
            .args(["pkcs12", "-export", "-inkey"])
            .arg(fixture_path("key1.pem"))
            .arg("-in")
            .arg(&leaf_path)
            .arg("-certfile")
            .arg(&ca_pem)
            .args(["-passout", "pass:pw", "-out"])
            .arg(&p12),
    );
    let (k, chain) = pkcs12::import(&std::fs::read(&p12).expect("p12"), "pw").expect("imports");
    assert_eq!(chain.len(), 2);
    assert!(k.matches(&chain[0]));
    assert_eq!(chain[1], ca);
    rekey_crypto::check_chain(&k, &chain).expect("CA-signed chain links");
    // Our export of the same chain reads back in the same order.
    let again = pkcs12::export(&k, &chain, "x").expect("exports");
    let (_, chain2) = pkcs12::import(&again, "x").expect("imports");
    assert_eq!(chain2, chain);
}

#[test]
fn wrong_password_is_a_mac_failure() {
    let (k, c) = signer(1, "p12");
    let der = pkcs12::export(&k, &[c], "right").expect("exports");
    let e = pkcs12::import(&der, "wrong").expect_err("must fail");
    assert!(
        matches!(&e, CryptoError::Pkcs12(m) if m.contains("wrong password") && m.contains("MAC")),
        "{e}"
    );
}

#[test]
fn truncated_file_fails_at_every_length() {
    let (k, c) = signer(1, "p12");
    let der = pkcs12::export(&k, &[c], "pw").expect("exports");
    for n in 0..der.len() {
        assert!(pkcs12::import(&der[..n], "pw").is_err(), "prefix {n}");
    }
}

#[test]
fn flipped_byte_fails_without_panic() {
    let (k, c) = signer(1, "p12");
    let der = pkcs12::export(&k, &[c], "pw").expect("exports");
    for i in 0..der.len() {
        let mut bad = der.clone();
        bad[i] ^= 0x40;
        // Either an error, or (in ignorable places such as attributes) still the same key.
        if let Ok((k2, _)) = pkcs12::import(&bad, "pw") {
            assert!(k2.matches(&pkcs12::import(&der, "pw").expect("ok").1[0]));
        }
    }
}

#[test]
fn legacy_3des_file_is_refused_with_reexport_hint() {
    let dir = tempdir();
    let (_, c) = signer(1, "legacy");
    let cert = write(dir.path(), "c.pem", c.to_pem());
    let p12 = dir.path().join("legacy.p12");
    run_ok(
        openssl()
            .args(["pkcs12", "-export", "-inkey"])
            .arg(fixture_path("key1.pem"))
            .arg("-in")
            .arg(&cert)
            .args([
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
                "-passout",
                "pass:pw",
                "-out",
            ])
            .arg(&p12),
    );
    let e = pkcs12::import(&std::fs::read(&p12).expect("p12"), "pw").expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("legacy") && msg.contains("-keypbe AES-256-CBC -certpbe AES-256-CBC"),
        "{msg}"
    );
    // The MAC is still checked first: a wrong password says so, not "legacy".
    let e = pkcs12::import(&std::fs::read(&p12).expect("p12"), "nope").expect_err("refused");
    assert!(e.to_string().contains("MAC check failed"), "{e}");
}

#[test]
fn small_rsa_key_in_p12_is_refused() {
    let dir = tempdir();
    let cert = dir.path().join("c.pem");
    run_ok(
        openssl()
            .args(["req", "-x509", "-key"])
            .arg(fixture_path("key1024.pem"))
            .args(["-subj", "/CN=small", "-days", "2", "-out"])
            .arg(&cert),
    );
    let p12 = dir.path().join("small.p12");
    run_ok(
        openssl()
            .args(["pkcs12", "-export", "-inkey"])
            .arg(fixture_path("key1024.pem"))
            .arg("-in")
            .arg(&cert)
            .args(["-passout", "pass:pw", "-out"])
            .arg(&p12),
    );
    let e = pkcs12::import(&std::fs::read(&p12).expect("p12"), "pw").expect_err("refused");
    assert!(matches!(e, CryptoError::KeySize(1024)), "{e}");
}

#[test]
fn export_refuses_a_certificate_of_another_key() {
    let (k1, _) = signer(1, "a");
    let (_, c2) = signer(2, "b");
    assert!(matches!(
        pkcs12::export(&k1, &[c2], "pw"),
        Err(CryptoError::KeyMismatch { .. })
    ));
    assert!(pkcs12::export(&k1, &[], "pw").is_err());
}

#[test]
fn garbage_is_refused() {
    for input in [
        &b""[..],
        b"\x30",
        b"\x30\x80",
        b"hello",
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
    ] {
        assert!(matches!(
            pkcs12::import(input, "pw"),
            Err(CryptoError::Pkcs12(_))
        ));
    }
}

#[test]
fn empty_password_both_directions() {
    let dir = tempdir();
    let (k, c) = signer(1, "empty password");
    let cert = write(dir.path(), "c.pem", c.to_pem());
    let p12 = dir.path().join("openssl-empty.p12");
    run_ok(
        openssl()
            .args(["pkcs12", "-export", "-inkey"])
            .arg(fixture_path("key1.pem"))
            .arg("-in")
            .arg(&cert)
            .args(["-passout", "pass:", "-out"])
            .arg(&p12),
    );
    let (k2, chain) =
        pkcs12::import(&std::fs::read(&p12).expect("p12"), "").expect("imports empty password");
    assert!(k2.matches(&c) && chain == vec![c.clone()]);
    assert!(pkcs12::import(&std::fs::read(&p12).expect("p12"), "x").is_err());

    let ours = write(
        dir.path(),
        "rekey-empty.p12",
        pkcs12::export(&k, std::slice::from_ref(&c), "").expect("exports"),
    );
    let out = run_ok(
        openssl()
            .args(["pkcs12", "-in"])
            .arg(&ours)
            .args(["-passin", "pass:", "-nodes"]),
    );
    let text = String::from_utf8(out).expect("PEM text");
    assert!(KeyPair::from_pem(&text).expect("key").matches(&c));
}

#[test]
fn rekey_export_is_read_by_java_keytool() {
    let dir = tempdir();
    let (k, c) = signer(2, "to java");
    let p12 = write(
        dir.path(),
        "f.p12",
        pkcs12::export(&k, std::slice::from_ref(&c), "changeit").expect("exports"),
    );
    let out = run_ok(
        common::tool("keytool", "default-jdk-headless")
            .args([
                "-list",
                "-v",
                "-storetype",
                "PKCS12",
                "-storepass",
                "changeit",
                "-keystore",
            ])
            .arg(&p12),
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("PrivateKeyEntry"), "{text}");
    assert!(text.contains("CN=to java"), "{text}");
}
