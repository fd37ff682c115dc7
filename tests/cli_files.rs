//! End to end through the built binary: `rekey keygen`, `rekey sign`, `rekey verify`, every
//! flag and every exit code.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rekey_crypto::Certificate;

const REJECTED: i32 = 3;
const BAD_INPUT: i32 = 1;
const USAGE: i32 = 2;

fn rekey<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    common::rekey()
        .args(args)
        .output()
        .expect("runs the rekey binary")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a failure with exit `want` and a one-line message containing every `needle`.
fn assert_fails(o: &Output, want: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(code(o), want, "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
}

fn ok(o: &Output) {
    assert_eq!(code(o), 0, "stderr: {}", stderr(o));
}

fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A 2048-bit key and self-signed certificate made by `rekey keygen`.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = p(dir, &format!("{name}.key"));
    let cert = p(dir, &format!("{name}.crt"));
    ok(&rekey([
        "keygen",
        "--bits",
        "2048",
        "--subject",
        &format!("CN={name},O=rekey cli test"),
        "--key-out",
        s(&key),
        "--cert-out",
        s(&cert),
    ]));
    (key, cert)
}

fn signer_arg(key: &Path, cert: &Path) -> String {
    format!("{}:{}", s(key), s(cert))
}

#[test]
fn keygen_writes_private_key_0600_certificate_and_csr() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (key, cert, csr) = (p(d, "k.pem"), p(d, "c.pem"), p(d, "r.csr"));
    let out = rekey([
        "keygen",
        "--bits",
        "2048",
        "--subject",
        "CN=signer,O=Example",
        "--days",
        "30",
        "--key-out",
        s(&key),
        "--cert-out",
        s(&cert),
        "--csr-out",
        s(&csr),
    ]);
    ok(&out);
    assert!(stdout(&out).contains("RSA-2048"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let k = rekey_crypto::KeyPair::from_pem(&std::fs::read_to_string(&key).expect("key"))
        .expect("key parses");
    assert_eq!(k.bits(), 2048);
    let c = Certificate::from_pem(&std::fs::read_to_string(&cert).expect("cert")).expect("cert");
    assert!(k.matches(&c));
    assert_eq!(c.subject(), "CN=signer,O=Example");
    let days = (c.not_after() - c.not_before()).num_days();
    assert_eq!(days, 30);
    let csr_text = std::fs::read_to_string(&csr).expect("csr");
    assert!(csr_text.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    // The CSR is valid for OpenSSL.
    let v = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in", s(&csr)])
        .output()
        .expect("openssl (Debian package openssl) must be installed");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn keygen_defaults_to_3072_bits_and_365_days() {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, cert) = (p(dir.path(), "k.pem"), p(dir.path(), "c.pem"));
    ok(&rekey([
        "keygen",
        "--subject",
        "CN=defaults",
        "--key-out",
        s(&key),
        "--cert-out",
        s(&cert),
    ]));
    let k = rekey_crypto::KeyPair::from_pem(&std::fs::read_to_string(&key).expect("key"))
        .expect("key parses");
    assert_eq!(k.bits(), 3072);
    let c = Certificate::from_pem(&std::fs::read_to_string(&cert).expect("cert")).expect("cert");
    assert_eq!((c.not_after() - c.not_before()).num_days(), 365);
}

#[test]
fn keygen_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (key, cert) = (p(d, "k.pem"), p(d, "c.pem"));
    std::fs::write(&cert, "keep me").expect("write");
    let args = |force: bool| {
        let mut v = vec![
            "keygen".to_string(),
            "--bits".into(),
            "2048".into(),
            "--subject".into(),
            "CN=x".into(),
            "--key-out".into(),
            s(&key).into(),
            "--cert-out".into(),
            s(&cert).into(),
        ];
        if force {
            v.push("--force".into());
        }
        v
    };
    assert_fails(
        &rekey(args(false)),
        BAD_INPUT,
        &["c.pem", "already exists", "--force"],
    );
    assert_eq!(std::fs::read_to_string(&cert).expect("cert"), "keep me");
    assert!(!key.exists(), "nothing written when refusing");

    // --force overwrites, and an existing world-readable key file ends up 0600.
    std::fs::write(&key, "old").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    ok(&rekey(args(true)));
    assert!(
        std::fs::read_to_string(&cert)
            .expect("cert")
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn keygen_refuses_small_keys_bad_subjects_and_zero_days() {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, cert) = (p(dir.path(), "k.pem"), p(dir.path(), "c.pem"));
    let run = |extra: &[&str]| {
        let mut a = vec!["keygen", "--key-out", s(&key), "--cert-out", s(&cert)];
        a.extend_from_slice(extra);
        rekey(a)
    };
    assert_fails(
        &run(&["--bits", "1024", "--subject", "CN=x"]),
        BAD_INPUT,
        &["--bits", "1024", "2048, 3072 or 4096"],
    );
    assert_fails(
        &run(&["--subject", "nonsense"]),
        BAD_INPUT,
        &["--subject", "nonsense"],
    );
    assert_fails(
        &run(&["--bits", "2048", "--subject", "CN=x", "--days", "0"]),
        BAD_INPUT,
        &["validity"],
    );
    assert_eq!(code(&run(&["--bits", "lots", "--subject", "CN=x"])), USAGE);
    assert_eq!(code(&rekey(["keygen", "--subject", "CN=x"])), USAGE);
    assert!(!key.exists() && !cert.exists());
}

#[test]
fn sign_and_verify_with_every_flag_combination() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (k1, c1) = keygen(d, "one");
    let (k2, c2) = keygen(d, "two");
    let payload = p(d, "payload.xml");
    std::fs::write(&payload, b"<order id=\"42\"/>\n").expect("payload");
    let mut n = 0;
    let (_, c3) = keygen(d, "three");
    for (di, digest) in ["sha256", "sha384", "sha512"].into_iter().enumerate() {
        for flags in 0u8..16 {
            let (no_certs, no_time, detached, base64) = (
                flags & 1 != 0,
                flags & 2 != 0,
                flags & 4 != 0,
                flags & 8 != 0,
            );
            // Two signers for half the cases.
            let two = (usize::from(flags) + di).is_multiple_of(2);
            let out = p(d, &format!("s{n}.p7m"));
            n += 1;
            let mut args = vec![
                "sign".to_string(),
                "--signer".into(),
                signer_arg(&k1, &c1),
                "--digest".into(),
                digest.into(),
                "--in".into(),
                s(&payload).into(),
                "--out".into(),
                s(&out).into(),
            ];
            if two {
                args.extend(["--signer".into(), signer_arg(&k2, &c2)]);
            }
            for (on, flag) in [
                (no_certs, "--no-certs"),
                (no_time, "--no-signing-time"),
                (detached, "--detached"),
                (base64, "--base64"),
            ] {
                if on {
                    args.push(flag.into());
                }
            }
            ok(&rekey(&args));
            let bytes = std::fs::read(&out).expect("signed");
            assert_eq!(bytes.first() == Some(&0x30), !base64, "{args:?}");

            let mut vargs = vec![
                "verify".to_string(),
                "--in".into(),
                s(&out).into(),
                "--trust".into(),
                s(&c1).into(),
                "--json".into(),
            ];
            if detached {
                vargs.extend(["--content".into(), s(&payload).into()]);
            }
            let v = rekey(&vargs);
            ok(&v);
            let json: serde_json::Value = serde_json::from_slice(&v.stdout).expect("json");
            assert_eq!(json["accepted"], true);
            assert_eq!(json["attached"], !detached);
            let signers = json["signers"].as_array().expect("signers");
            assert_eq!(signers.len(), if two { 2 } else { 1 });
            for sgn in signers {
                assert_eq!(sgn["digest"], digest);
                assert_eq!(sgn["signing_time"].is_null(), no_time, "{sgn}");
            }
            // With only the first certificate trusted, the second signer has none.
            let statuses: Vec<_> = signers
                .iter()
                .map(|x| x["status"]["status"].clone())
                .collect();
            assert!(statuses.contains(&serde_json::json!("valid")));
            if two {
                assert!(statuses.contains(&serde_json::json!("no_certificate")));
            }
            // The embedded certificates must not count as trust.
            if !no_certs {
                let mut bad = vargs.clone();
                bad[4] = s(&c3).into();
                let r = rekey(&bad);
                assert_eq!(code(&r), REJECTED, "{}", stderr(&r));
            }
        }
    }
}

#[test]
fn verify_applies_the_receiver_rule() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (k1, c1) = keygen(d, "old");
    let (k2, c2) = keygen(d, "new");
    let payload = p(d, "p");
    std::fs::write(&payload, b"x").expect("payload");
    let both = p(d, "both.p7m");
    ok(&rekey([
        "sign",
        "--signer",
        &signer_arg(&k1, &c1),
        "--signer",
        &signer_arg(&k2, &c2),
        "--in",
        s(&payload),
        "--out",
        s(&both),
    ]));
    let one = p(d, "one.p7m");
    ok(&rekey([
        "sign",
        "--signer",
        &signer_arg(&k2, &c2),
        "--in",
        s(&payload),
        "--out",
        s(&one),
    ]));
    // Default: several signatures accepted; either trusted certificate is enough.
    for trust in [&c1, &c2] {
        let o = rekey(["verify", "--in", s(&both), "--trust", s(trust)]);
        ok(&o);
        assert!(stdout(&o).starts_with("accepted:"), "{}", stdout(&o));
    }
    ok(&rekey([
        "verify",
        "--in",
        s(&both),
        "--trust",
        s(&c1),
        "--accept-multiple-signatures",
    ]));
    // Several trust files, and a trust file holding both certificates.
    ok(&rekey([
        "verify",
        "--in",
        s(&both),
        "--trust",
        s(&c1),
        "--trust",
        s(&c2),
    ]));
    let bundle = p(d, "bundle.pem");
    std::fs::write(
        &bundle,
        [
            std::fs::read(&c1).expect("c1"),
            std::fs::read(&c2).expect("c2"),
        ]
        .concat(),
    )
    .expect("bundle");
    ok(&rekey(["verify", "--in", s(&one), "--trust", s(&bundle)]));
    // AS ABAP: exactly one signature.
    let o = rekey([
        "verify",
        "--in",
        s(&both),
        "--trust",
        s(&c1),
        "--single-signature-only",
    ]);
    assert_fails(&o, REJECTED, &["rejected", "2 signatures", "exactly one"]);
    ok(&rekey([
        "verify",
        "--in",
        s(&one),
        "--trust",
        s(&c2),
        "--single-signature-only",
    ]));
    // One signature, untrusted.
    assert_fails(
        &rekey(["verify", "--in", s(&one), "--trust", s(&c1)]),
        REJECTED,
        &["rejected", "no signature verifies"],
    );
    // JSON also on rejection, with the reason.
    let o = rekey(["verify", "--in", s(&one), "--trust", s(&c1), "--json"]);
    assert_eq!(code(&o), REJECTED);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(json["accepted"], false);
    assert_eq!(json["verdict"]["verdict"], "rejected");
    assert_eq!(json["signers"][0]["status"]["status"], "no_certificate");
    // The two profile flags exclude each other.
    let o = rekey([
        "verify",
        "--in",
        s(&one),
        "--trust",
        s(&c2),
        "--single-signature-only",
        "--accept-multiple-signatures",
    ]);
    assert_eq!(code(&o), USAGE);
}

#[test]
fn verify_reads_der_pem_and_base64_and_rejects_tampering() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (k, c) = keygen(d, "signer");
    let payload = p(d, "p");
    std::fs::write(&payload, b"the payload").expect("payload");
    let der = p(d, "m.der");
    ok(&rekey([
        "sign",
        "--signer",
        &signer_arg(&k, &c),
        "--in",
        s(&payload),
        "--out",
        s(&der),
    ]));
    let bytes = std::fs::read(&der).expect("der");
    let b64 = rekey_crypto::to_base64(&bytes);
    let pem = p(d, "m.pem");
    let mut text = String::from("-----BEGIN PKCS7-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(chunk).expect("ascii"));
        text.push('\n');
    }
    text.push_str("-----END PKCS7-----\n");
    std::fs::write(&pem, text).expect("pem");
    let b64_path = p(d, "m.b64");
    std::fs::write(&b64_path, &b64).expect("b64");
    for input in [&der, &pem, &b64_path] {
        ok(&rekey(["verify", "--in", s(input), "--trust", s(&c)]));
    }
    // Tampered content inside the message.
    let mut tampered = bytes.clone();
    let at = tampered
        .windows(11)
        .position(|w| w == b"the payload")
        .expect("content inside");
    tampered[at] ^= 1;
    let t = p(d, "t.der");
    std::fs::write(&t, &tampered).expect("t");
    assert_fails(
        &rekey(["verify", "--in", s(&t), "--trust", s(&c)]),
        REJECTED,
        &["rejected"],
    );
    // Tampered signature (the last bytes of the message are the signature value).
    let mut sig = bytes.clone();
    let n = sig.len();
    sig[n - 3] ^= 0x10;
    std::fs::write(&t, &sig).expect("t");
    assert_fails(
        &rekey(["verify", "--in", s(&t), "--trust", s(&c)]),
        REJECTED,
        &["rejected"],
    );

    // Detached: content needed, wrong content rejected.
    let det = p(d, "det.p7m");
    ok(&rekey([
        "sign",
        "--signer",
        &signer_arg(&k, &c),
        "--detached",
        "--in",
        s(&payload),
        "--out",
        s(&det),
    ]));
    assert_fails(
        &rekey(["verify", "--in", s(&det), "--trust", s(&c)]),
        BAD_INPUT,
        &["det.p7m", "detached", "--content"],
    );
    let other = p(d, "other");
    std::fs::write(&other, b"the paylo4d").expect("other");
    assert_fails(
        &rekey([
            "verify",
            "--in",
            s(&det),
            "--content",
            s(&other),
            "--trust",
            s(&c),
        ]),
        REJECTED,
        &["rejected"],
    );
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (k, c) = keygen(d, "a");
    let (_k2, c2) = keygen(d, "b");
    let payload = p(d, "p");
    std::fs::write(&payload, b"x").expect("payload");
    let out = p(d, "o.p7m");
    let sign = |signer: &str| {
        rekey([
            "sign",
            "--signer",
            signer,
            "--in",
            s(&payload),
            "--out",
            s(&out),
        ])
    };
    assert_fails(
        &sign(&format!("{}:{}", s(&p(d, "missing.pem")), s(&c))),
        BAD_INPUT,
        &["missing.pem", "key file"],
    );
    assert_fails(
        &sign(&format!("{}:{}", s(&k), s(&p(d, "nocert.pem")))),
        BAD_INPUT,
        &["nocert.pem"],
    );
    // A certificate given as key, a key given as certificate.
    assert_fails(
        &sign(&format!("{}:{}", s(&c), s(&c))),
        BAD_INPUT,
        &["a.crt", "PRIVATE KEY"],
    );
    assert_fails(
        &sign(&format!("{}:{}", s(&k), s(&k))),
        BAD_INPUT,
        &["a.key", "CERTIFICATE"],
    );
    assert_fails(
        &sign(&format!("{}:{}", s(&k), s(&c2))),
        BAD_INPUT,
        &["does not belong to the key"],
    );
    assert_fails(&sign("just-one-file"), BAD_INPUT, &["KEY_FILE:CERT_FILE"]);
    let small = format!(
        "{}/crates/crypto/tests/fixtures/key1024.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    assert_fails(
        &sign(&format!("{small}:{}", s(&c))),
        BAD_INPUT,
        &["key1024.pem", "1024"],
    );
    let ec = format!(
        "{}/crates/crypto/tests/fixtures/ec.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    assert_fails(
        &sign(&format!("{ec}:{}", s(&c))),
        BAD_INPUT,
        &["ec.pem", "not RSA"],
    );
    assert_fails(
        &rekey([
            "sign",
            "--signer",
            &signer_arg(&k, &c),
            "--in",
            s(&p(d, "nopayload")),
            "--out",
            s(&out),
        ]),
        BAD_INPUT,
        &["nopayload"],
    );
    assert_eq!(
        code(&rekey([
            "sign",
            "--signer",
            &signer_arg(&k, &c),
            "--digest",
            "md5",
            "--in",
            s(&payload),
            "--out",
            s(&out),
        ])),
        USAGE
    );
    assert_eq!(
        code(&rekey(["sign", "--in", s(&payload), "--out", s(&out)])),
        USAGE
    );

    // verify: unreadable message, garbage message, bad trust file.
    assert_fails(
        &rekey(["verify", "--in", s(&p(d, "none.p7m")), "--trust", s(&c)]),
        BAD_INPUT,
        &["none.p7m"],
    );
    let garbage = p(d, "garbage.p7m");
    std::fs::write(&garbage, [0x30, 0x03, 0x02, 0x01]).expect("g");
    assert_fails(
        &rekey(["verify", "--in", s(&garbage), "--trust", s(&c)]),
        BAD_INPUT,
        &["garbage.p7m", "malformed CMS"],
    );
    ok(&sign(&signer_arg(&k, &c)));
    assert_fails(
        &rekey(["verify", "--in", s(&out), "--trust", s(&payload)]),
        BAD_INPUT,
        &["trusted certificate file", "/p"],
    );
    assert_eq!(code(&rekey(["verify", "--in", s(&out)])), USAGE);
}

#[test]
fn verify_help_documents_the_exit_codes() {
    let o = rekey(["verify", "--help"]);
    ok(&o);
    let help = stdout(&o);
    for needle in [
        "Exit codes",
        "0  accepted",
        "1  bad input",
        "2  usage",
        "3  rejected",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}

/// `rekey verify` judges as strict receivers do: a good signature by a certificate that has
/// expired by the time the message is checked, or that was not yet valid at its signingTime,
/// is rejected, with the reason.
#[test]
fn verify_rejects_a_signer_certificate_not_valid_at_signing_time_or_now() {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().expect("tmp");
    let pem = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/crypto/tests/fixtures/key1.pem"),
    )
    .expect("fixture key");
    let key = rekey_crypto::KeyPair::from_pem(&pem).expect("key");
    let at = |y, m, d| {
        chrono::Utc
            .with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("date")
    };
    let cases = [
        // Valid 2020-01-01 .. 2020-01-11, signed inside: expired now.
        ("expired", at(2020, 1, 1), at(2020, 1, 5), "receipt"),
        // Valid from 2020-01-01, signed the day before.
        ("early", at(2020, 1, 1), at(2019, 12, 31), "signingTime"),
    ];
    for (name, not_before, signed, needle) in cases {
        let days = if name == "expired" { 10 } else { 36500 };
        let cert = rekey_crypto::self_signed(&key, "CN=strict", not_before, days).expect("cert");
        let chain = [cert.clone()];
        let der = rekey_crypto::sign(
            b"order",
            &[rekey_crypto::SignerSpec {
                key: &key,
                chain: &chain,
                digest: rekey_crypto::DigestAlg::Sha256,
                include_certs: true,
                include_signing_time: true,
            }],
            &rekey_crypto::SignOptions {
                detached: false,
                signing_time: signed,
            },
        )
        .expect("signs");
        let msg = p(dir.path(), &format!("{name}.p7m"));
        let trust = p(dir.path(), &format!("{name}.pem"));
        std::fs::write(&msg, der).expect("write");
        std::fs::write(&trust, cert.to_pem()).expect("write");
        assert_fails(
            &rekey(["verify", "--in", s(&msg), "--trust", s(&trust)]),
            REJECTED,
            &["rejected", "CN=strict", "not valid at", needle],
        );
        let o = rekey(["verify", "--in", s(&msg), "--trust", s(&trust), "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(
            json["signers"][0]["status"]["status"], "valid",
            "the signature itself verifies"
        );
        assert_eq!(json["accepted"], false);
    }
}
