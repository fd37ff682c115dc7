//! Interoperability with the verifiers and signers receivers really use, both directions:
//! rekey's multi-signer SignedData checked by OpenSSL (`openssl cms -verify`), GnuTLS
//! (`certtool --p7-verify`) and Bouncy Castle (`SignerInformation.verify`), and SignedData made
//! by `openssl cms -sign` checked by rekey. Tampered content and signatures must be rejected
//! everywhere. And the probes of `rekey demo --evidence` re-checked by all three, Bouncy Castle
//! with its default verifier, which refuses a signer certificate not valid at signingTime.
//!
//! The tools are required: a missing one fails the test and names the Debian package to
//! install (openssl, gnutls-bin, default-jdk-headless, libbcprov-java, libbcpkix-java,
//! libbcutil-java). Nothing is skipped silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use rekey_crypto::{
    CertSource, Certificate, DigestAlg, KeyPair, ReceiverProfile, SignOptions, SignerSpec,
    SignerStatus, receiver_verdict, self_signed, sign, verify,
};

// ---------------------------------------------------------------------------------------------
// Tools

fn require(program: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "interop test needs `{program}`: install the Debian package `{package}` \
         (apt-get install -y {package})"
    );
    Command::new(program)
}

fn openssl() -> Command {
    require("openssl", "openssl")
}

fn certtool() -> Command {
    require("certtool", "gnutls-bin")
}

const BC_JARS: [(&str, &str); 3] = [
    ("/usr/share/java/bcprov.jar", "libbcprov-java"),
    ("/usr/share/java/bcpkix.jar", "libbcpkix-java"),
    ("/usr/share/java/bcutil.jar", "libbcutil-java"),
];

/// Compiles tests/interop/BcVerify.java once per test run; returns the java classpath.
fn bouncy_castle_classpath() -> &'static str {
    static CP: OnceLock<String> = OnceLock::new();
    CP.get_or_init(|| {
        for (jar, package) in BC_JARS {
            assert!(
                Path::new(jar).exists(),
                "interop test needs {jar}: install the Debian package `{package}` \
                 (apt-get install -y {package})"
            );
        }
        let jars = BC_JARS.map(|(j, _)| j).join(":");
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bc-verify");
        std::fs::create_dir_all(&out_dir).expect("class dir");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/BcVerify.java");
        let o = require("javac", "default-jdk-headless")
            .arg("-cp")
            .arg(&jars)
            .arg("-d")
            .arg(&out_dir)
            .arg(&source)
            .output()
            .expect("runs javac");
        assert!(
            o.status.success(),
            "javac BcVerify.java failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        format!("{}:{jars}", out_dir.display())
    })
}

/// Runs a command; returns (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

fn run_ok(cmd: &mut Command) -> String {
    let (ok, text) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{text}");
    text
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/crypto/tests/fixtures")
        .join(name)
}

struct Signer {
    key: KeyPair,
    cert: Certificate,
    key_path: PathBuf,
    cert_path: PathBuf,
}

struct Fx {
    dir: tempfile::TempDir,
    signers: Vec<Signer>,
    /// Every signer's certificate in one PEM file: the CA file for OpenSSL and GnuTLS.
    all_certs: PathBuf,
    payload: Vec<u8>,
    payload_path: PathBuf,
    other_content_path: PathBuf,
}

impl Fx {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        let signers: Vec<Signer> = (1..=3)
            .map(|n| {
                let key_path = fixture_path(&format!("key{n}.pem"));
                let key = KeyPair::from_pem(&std::fs::read_to_string(&key_path).expect("key"))
                    .expect("fixture key");
                let cert = self_signed(&key, &format!("CN=interop {n},O=rekey"), start, 3650)
                    .expect("certificate");
                let cert_path = dir.path().join(format!("c{n}.pem"));
                std::fs::write(&cert_path, cert.to_pem()).expect("write cert");
                Signer {
                    key,
                    cert,
                    key_path,
                    cert_path,
                }
            })
            .collect();
        let all_certs = dir.path().join("all.pem");
        std::fs::write(
            &all_certs,
            signers.iter().map(|s| s.cert.to_pem()).collect::<String>(),
        )
        .expect("write CA file");
        // Binary, with CR LF and NUL, so that any text canonicalisation would show; 1000 bytes
        // so that no OCTET STRING header of the payload looks like a signature's.
        let payload: Vec<u8> = (0..1000u32)
            .map(|i| match i % 50 {
                10 => b'\r',
                11 => b'\n',
                12 => 0,
                _ => (i * 7 % 251) as u8,
            })
            .collect();
        let payload_path = dir.path().join("payload.bin");
        std::fs::write(&payload_path, &payload).expect("payload");
        let mut other = payload.clone();
        other[500] ^= 0x01;
        let other_content_path = dir.path().join("other.bin");
        std::fs::write(&other_content_path, &other).expect("other");
        Fx {
            dir,
            signers,
            all_certs,
            payload,
            payload_path,
            other_content_path,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Serial numbers as the tools print them: lower-case hex without leading zeros.
fn norm_serial(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase().replace(':', "");
    let t = s.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

/// Flips one byte inside every RSA-2048 signature value (the only 256-byte OCTET STRINGs in
/// these messages) — or only in the `which`-th one.
fn tamper_signature(der: &[u8], which: Option<usize>) -> Vec<u8> {
    let mut out = der.to_vec();
    let header = [0x04, 0x82, 0x01, 0x00];
    let at: Vec<usize> = der
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == header)
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "no signature found");
    for (n, i) in at.iter().enumerate() {
        if which.is_none_or(|w| w == n) {
            out[i + 4 + 100] ^= 0x01;
        }
    }
    out
}

/// Flips one byte of the encapsulated content.
fn tamper_content(der: &[u8], payload: &[u8]) -> Vec<u8> {
    let at = der
        .windows(payload.len())
        .position(|w| w == payload)
        .expect("content inside the message");
    let mut out = der.to_vec();
    out[at + 500] ^= 0x01;
    out
}

// ---------------------------------------------------------------------------------------------
// rekey's output, every variant

struct Variant {
    name: String,
    der: Vec<u8>,
    path: PathBuf,
    detached: bool,
    /// Indices into `Fx::signers`.
    signers: Vec<usize>,
}

fn rekey_variants(fx: &Fx) -> Vec<Variant> {
    let mut out = Vec::new();
    let when = Utc
        .with_ymd_and_hms(2027, 6, 1, 12, 0, 0)
        .single()
        .expect("date");
    let mut make =
        |name: String, rows: &[(usize, DigestAlg)], certs: bool, time: bool, det: bool| {
            let chains: Vec<[Certificate; 1]> = rows
                .iter()
                .map(|(i, _)| [fx.signers[*i].cert.clone()])
                .collect();
            let specs: Vec<SignerSpec<'_>> = rows
                .iter()
                .zip(&chains)
                .map(|((i, digest), chain)| SignerSpec {
                    key: &fx.signers[*i].key,
                    chain,
                    digest: *digest,
                    include_certs: certs,
                    include_signing_time: time,
                })
                .collect();
            let der = sign(
                &fx.payload,
                &specs,
                &SignOptions {
                    detached: det,
                    signing_time: when,
                },
            )
            .expect("signs");
            let path = fx.path(&format!("{name}.p7m"));
            std::fs::write(&path, &der).expect("write");
            out.push(Variant {
                name,
                der,
                path,
                detached: det,
                signers: rows.iter().map(|(i, _)| *i).collect(),
            });
        };
    for digest in DigestAlg::ALL {
        for certs in [true, false] {
            for time in [true, false] {
                for det in [false, true] {
                    let name = format!(
                        "rekey-{digest}-{}-{}-{}",
                        if certs { "certs" } else { "nocerts" },
                        if time { "time" } else { "notime" },
                        if det { "detached" } else { "attached" }
                    );
                    make(name, &[(0, digest), (1, digest)], certs, time, det);
                }
            }
        }
    }
    // Three signers with three different digests in one message.
    for det in [false, true] {
        make(
            format!("rekey-mixed-{}", if det { "detached" } else { "attached" }),
            &[
                (0, DigestAlg::Sha256),
                (1, DigestAlg::Sha384),
                (2, DigestAlg::Sha512),
            ],
            true,
            true,
            det,
        );
    }
    out
}

fn openssl_verify(fx: &Fx, msg: &Path, content: Option<&Path>) -> (bool, String) {
    let mut cmd = openssl();
    cmd.args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(msg)
        .arg("-CAfile")
        .arg(&fx.all_certs)
        .arg("-certfile")
        .arg(&fx.all_certs)
        .args(["-out", "/dev/null"]);
    if let Some(c) = content {
        cmd.arg("-content").arg(c);
    }
    run(&mut cmd)
}

#[test]
fn rekey_output_verifies_with_openssl() {
    let fx = Fx::new();
    for v in rekey_variants(&fx) {
        let content = v.detached.then_some(fx.payload_path.as_path());
        let (ok, text) = openssl_verify(&fx, &v.path, content);
        assert!(
            ok && text.contains("Verification successful"),
            "{}: {text}",
            v.name
        );

        // Tampered content.
        let (ok, text) = if v.detached {
            openssl_verify(&fx, &v.path, Some(&fx.other_content_path))
        } else {
            let t = fx.path(&format!("{}-tc.p7m", v.name));
            std::fs::write(&t, tamper_content(&v.der, &fx.payload)).expect("write");
            openssl_verify(&fx, &t, None)
        };
        assert!(!ok, "{}: OpenSSL accepted tampered content: {text}", v.name);
        // Each signer's signature tampered in turn.
        for which in 0..v.signers.len() {
            let t = fx.path(&format!("{}-ts{which}.p7m", v.name));
            std::fs::write(&t, tamper_signature(&v.der, Some(which))).expect("write");
            let (ok, text) = openssl_verify(&fx, &t, content);
            assert!(
                !ok,
                "{}: OpenSSL accepted bad signature {which}: {text}",
                v.name
            );
        }
    }
}

/// `certtool --p7-verify`: its exit code reflects only the last signer, so the per-signer
/// "Signature status" lines are parsed and paired with the "Signer's serial" lines (same
/// order). Returns (serial, ok, status line) per signer.
fn gnutls_verify(
    ca_file: &Path,
    msg: &Path,
    content: Option<&Path>,
    signer_cert: Option<&Path>,
) -> Vec<(String, bool, String)> {
    let mut cmd = certtool();
    cmd.args(["--p7-verify", "--inder", "--infile"])
        .arg(msg)
        .arg("--load-ca-certificate")
        .arg(ca_file);
    if let Some(c) = signer_cert {
        cmd.arg("--load-certificate").arg(c);
    }
    if let Some(c) = content {
        cmd.arg("--load-data").arg(c);
    }
    let (_, text) = run(&mut cmd);
    let serials: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Signer's serial:"))
        .map(norm_serial)
        .collect();
    let statuses: Vec<(bool, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Signature status:"))
        .map(|s| (s.trim() == "ok", s.trim().to_string()))
        .collect();
    assert_eq!(
        serials.len(),
        statuses.len(),
        "cannot pair certtool's signer lines:\n{text}"
    );
    serials
        .into_iter()
        .zip(statuses)
        .map(|(s, (ok, line))| (s, ok, line))
        .collect()
}

#[test]
fn rekey_output_verifies_with_gnutls() {
    let fx = Fx::new();
    for v in rekey_variants(&fx) {
        let content = v.detached.then_some(fx.payload_path.as_path());
        // Each signer with its own certificate loaded (needed when the message carries none).
        for &i in &v.signers {
            let s = &fx.signers[i];
            let serial = norm_serial(&s.cert.serial_hex());
            let lines = gnutls_verify(&fx.all_certs, &v.path, content, Some(&s.cert_path));
            assert_eq!(lines.len(), v.signers.len(), "{}: {lines:?}", v.name);
            let mine = lines
                .iter()
                .find(|(sn, _, _)| *sn == serial)
                .unwrap_or_else(|| panic!("{}: signer {serial} not listed: {lines:?}", v.name));
            assert!(
                mine.1,
                "{}: GnuTLS rejects signer {serial}: {}",
                v.name, mine.2
            );
        }
        // With the certificates in the message, every signer verifies in one run.
        let lines = gnutls_verify(&fx.all_certs, &v.path, content, None);
        assert_eq!(lines.len(), v.signers.len());
        let certs_embedded = !v.name.contains("nocerts");
        if certs_embedded {
            assert!(lines.iter().all(|l| l.1), "{}: {lines:?}", v.name);
        }

        // Tampered content: no signer verifies.
        let (msg, content_t) = if v.detached {
            (v.path.clone(), Some(fx.other_content_path.as_path()))
        } else {
            let t = fx.path(&format!("{}-gtc.p7m", v.name));
            std::fs::write(&t, tamper_content(&v.der, &fx.payload)).expect("write");
            (t, None)
        };
        for &i in &v.signers {
            let lines = gnutls_verify(
                &fx.all_certs,
                &msg,
                content_t,
                Some(&fx.signers[i].cert_path),
            );
            assert!(
                lines.iter().all(|l| !l.1),
                "{}: tampered content ok: {lines:?}",
                v.name
            );
        }
        // Tampered signature: exactly that signer fails.
        let t = fx.path(&format!("{}-gts.p7m", v.name));
        std::fs::write(&t, tamper_signature(&v.der, Some(0))).expect("write");
        let mut failed = 0;
        for &i in &v.signers {
            let s = &fx.signers[i];
            let serial = norm_serial(&s.cert.serial_hex());
            let lines = gnutls_verify(&fx.all_certs, &t, content, Some(&s.cert_path));
            if lines.iter().any(|l| l.0 == serial && !l.1) {
                failed += 1;
            }
        }
        assert_eq!(failed, 1, "{}: one tampered signature", v.name);
    }
}

/// Runs BcVerify over (message, content, certificates) jobs; returns per job the per-signer
/// results (serial, ok, detail).
fn bouncy_castle_verify(
    fx: &Fx,
    jobs: &[(PathBuf, Option<PathBuf>)],
) -> Vec<Vec<(String, bool, String)>> {
    let certs: Vec<PathBuf> = fx.signers.iter().map(|s| s.cert_path.clone()).collect();
    let jobs: Vec<(PathBuf, Option<PathBuf>, Vec<PathBuf>)> = jobs
        .iter()
        .map(|(m, c)| (m.clone(), c.clone(), certs.clone()))
        .collect();
    bouncy_castle_run(&fx.path("bc-jobs.txt"), &jobs)
}

/// Runs BcVerify over (message, content, certificate files) jobs written to `job_file`.
fn bouncy_castle_run(
    job_file: &Path,
    jobs: &[(PathBuf, Option<PathBuf>, Vec<PathBuf>)],
) -> Vec<Vec<(String, bool, String)>> {
    let cp = bouncy_castle_classpath();
    let text: String = jobs
        .iter()
        .map(|(m, c, certs)| {
            format!(
                "{}|{}|{}\n",
                m.display(),
                c.as_ref()
                    .map(|c| c.display().to_string())
                    .unwrap_or_default(),
                certs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    std::fs::write(job_file, text).expect("jobs");
    let out = run_ok(
        require("java", "default-jdk-headless")
            .arg("-cp")
            .arg(cp)
            .arg("BcVerify")
            .arg(job_file),
    );
    let mut results = vec![Vec::new(); jobs.len()];
    for line in out.lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(n), Some(serial), Some(verdict)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        let detail = parts.next().unwrap_or_default().to_string();
        if let Some(r) = results.get_mut(n - 1) {
            r.push((
                norm_serial(serial),
                verdict == "OK",
                format!("{verdict} {detail}"),
            ));
        }
    }
    results
}

#[test]
fn rekey_output_verifies_with_bouncy_castle() {
    let fx = Fx::new();
    let variants = rekey_variants(&fx);
    let mut jobs = Vec::new();
    for v in &variants {
        let content = v.detached.then(|| fx.payload_path.clone());
        jobs.push((v.path.clone(), content.clone()));
        // Tampered content.
        if v.detached {
            jobs.push((v.path.clone(), Some(fx.other_content_path.clone())));
        } else {
            let t = fx.path(&format!("{}-btc.p7m", v.name));
            std::fs::write(&t, tamper_content(&v.der, &fx.payload)).expect("write");
            jobs.push((t, None));
        }
        // Every signature tampered.
        let t = fx.path(&format!("{}-bts.p7m", v.name));
        std::fs::write(&t, tamper_signature(&v.der, None)).expect("write");
        jobs.push((t, content));
    }
    let results = bouncy_castle_verify(&fx, &jobs);
    for (vi, v) in variants.iter().enumerate() {
        let good = &results[vi * 3];
        let want: Vec<String> = v
            .signers
            .iter()
            .map(|&i| norm_serial(&fx.signers[i].cert.serial_hex()))
            .collect();
        assert_eq!(good.len(), want.len(), "{}: {good:?}", v.name);
        for (serial, ok, detail) in good {
            assert!(want.contains(serial), "{}: unknown signer {serial}", v.name);
            assert!(*ok, "{}: Bouncy Castle rejects {serial}: {detail}", v.name);
        }
        for (label, bad) in [
            ("content", &results[vi * 3 + 1]),
            ("signature", &results[vi * 3 + 2]),
        ] {
            assert_eq!(
                bad.len(),
                want.len(),
                "{} tampered {label}: {bad:?}",
                v.name
            );
            assert!(
                bad.iter().all(|(_, ok, _)| !ok),
                "{}: Bouncy Castle accepts tampered {label}: {bad:?}",
                v.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OpenSSL's output, verified by rekey

#[test]
fn openssl_output_verifies_with_rekey() {
    let fx = Fx::new();
    let mut n = 0;
    for signer_count in [1usize, 2] {
        for noattr in [false, true] {
            for attached in [false, true] {
                for md in ["sha256", "sha384"] {
                    n += 1;
                    let out = fx.path(&format!("openssl-{n}.p7m"));
                    let mut cmd = openssl();
                    cmd.args([
                        "cms", "-sign", "-binary", "-md", md, "-outform", "DER", "-in",
                    ])
                    .arg(&fx.payload_path)
                    .arg("-out")
                    .arg(&out);
                    for s in &fx.signers[..signer_count] {
                        cmd.arg("-signer")
                            .arg(&s.cert_path)
                            .arg("-inkey")
                            .arg(&s.key_path);
                    }
                    if noattr {
                        cmd.arg("-noattr");
                    }
                    if attached {
                        cmd.arg("-nodetach");
                    }
                    run_ok(&mut cmd);
                    let der = std::fs::read(&out).expect("openssl output");
                    let label = format!(
                        "openssl signers={signer_count} noattr={noattr} attached={attached} md={md}"
                    );
                    let content = (!attached).then_some(fx.payload.as_slice());
                    let trusted: Vec<Certificate> =
                        fx.signers.iter().map(|s| s.cert.clone()).collect();

                    let v = verify(&der, content, &trusted, CertSource::SuppliedOnly)
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert_eq!(v.attached, attached, "{label}");
                    assert_eq!(v.content, fx.payload, "{label}");
                    assert_eq!(v.signers.len(), signer_count, "{label}");
                    for s in &v.signers {
                        assert_eq!(s.status, SignerStatus::Valid, "{label}: {s:?}");
                        assert_eq!(s.digest, md, "{label}");
                        assert_eq!(s.signing_time.is_some(), !noattr, "{label}");
                    }
                    // With the embedded certificates only, too.
                    let v = verify(&der, content, &[], CertSource::EmbeddedAndSupplied)
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert!(v.signers.iter().all(|s| s.is_valid()), "{label}");
                    // The receiver rule with one trusted certificate.
                    let multi = ReceiverProfile {
                        verifies_multiple_keys: false,
                        accepts_multiple_signatures: true,
                    };
                    let (verdict, _) =
                        receiver_verdict(&der, content, &trusted[..1], &multi, Utc::now())
                            .expect("reads");
                    assert!(verdict.is_accepted(), "{label}: {verdict:?}");
                    let single = ReceiverProfile::default();
                    let (verdict, _) =
                        receiver_verdict(&der, content, &trusted[..1], &single, Utc::now())
                            .expect("reads");
                    assert_eq!(verdict.is_accepted(), signer_count == 1, "{label}");

                    // Tampered content: every signer fails.
                    let v = if attached {
                        verify(
                            &tamper_content(&der, &fx.payload),
                            None,
                            &trusted,
                            CertSource::SuppliedOnly,
                        )
                    } else {
                        let mut other = fx.payload.clone();
                        other[0] ^= 0x80;
                        verify(&der, Some(&other), &trusted, CertSource::SuppliedOnly)
                    }
                    .expect("still readable");
                    assert!(
                        v.signers.iter().all(|s| !s.is_valid()),
                        "{label}: {:?}",
                        v.signers
                    );
                    let (verdict, _) = receiver_verdict(
                        &tamper_content_or_detached(&der, &fx.payload, attached),
                        (!attached).then_some(&fx.payload[1..]),
                        &trusted,
                        &multi,
                        Utc::now(),
                    )
                    .expect("readable");
                    assert!(!verdict.is_accepted(), "{label}");

                    // Each signature tampered in turn: exactly that signer fails.
                    for which in 0..signer_count {
                        let bad = tamper_signature(&der, Some(which));
                        let v = verify(&bad, content, &trusted, CertSource::SuppliedOnly)
                            .expect("readable");
                        let failed = v.signers.iter().filter(|s| !s.is_valid()).count();
                        assert_eq!(failed, 1, "{label}: {:?}", v.signers);
                        assert!(
                            v.signers
                                .iter()
                                .any(|s| s.status == SignerStatus::BadSignature),
                            "{label}"
                        );
                    }
                }
            }
        }
    }
}

/// Attached: the message with one content byte flipped; detached: the message as it is (the
/// caller passes different content).
fn tamper_content_or_detached(der: &[u8], payload: &[u8], attached: bool) -> Vec<u8> {
    if attached {
        tamper_content(der, payload)
    } else {
        der.to_vec()
    }
}

// ---------------------------------------------------------------------------------------------
// `rekey demo --evidence`, re-checked by OpenSSL, GnuTLS and Bouncy Castle

/// One probe of the demo's evidence, written out for the tools.
struct DemoProbe {
    label: String,
    record: serde_json::Value,
    msg: PathBuf,
    trusted: Vec<PathBuf>,
    trusted_fps: Vec<String>,
    at: chrono::DateTime<Utc>,
}

fn demo_probes(dir: &Path) -> Vec<DemoProbe> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let evidence = dir.join("evidence");
    let out = Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(["demo", "--bits", "2048", "--evidence"])
        .arg(&evidence)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("REKEY_CONFIG")
        .output()
        .expect("rekey runs");
    assert!(
        out.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut probes = Vec::new();
    for procedure in [
        "dual-trust",
        "dual-signature",
        "prepared-second-alias",
        "downtime-window",
    ] {
        let text = std::fs::read_to_string(evidence.join(procedure).join("probes.jsonl"))
            .expect("probes.jsonl");
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let seq = record["seq"].as_u64().expect("seq");
            let label = format!("{procedure} probe {seq}");
            let msg = dir.join(format!("{procedure}-{seq}.p7m"));
            let der = b64
                .decode(record["signed_data_der_base64"].as_str().expect("der"))
                .expect("base64");
            std::fs::write(&msg, der).expect("write probe");
            let mut trusted = Vec::new();
            let mut trusted_fps = Vec::new();
            for (i, pem) in record["receiver"]["trusted_certificates_pem"]
                .as_array()
                .expect("trusted")
                .iter()
                .enumerate()
            {
                let pem = pem.as_str().expect("pem");
                let path = dir.join(format!("{procedure}-{seq}-trusted{i}.pem"));
                std::fs::write(&path, pem).expect("write cert");
                trusted.push(path);
                trusted_fps.push(
                    Certificate::from_pem(pem)
                        .expect("trusted certificate")
                        .fingerprint()
                        .to_string(),
                );
            }
            let at = record["at"]
                .as_str()
                .expect("at")
                .parse()
                .expect("RFC 3339");
            probes.push(DemoProbe {
                label,
                record,
                msg,
                trusted,
                trusted_fps,
                at,
            });
        }
    }
    assert_eq!(probes.len(), 33, "the demo's probes");
    probes
}

/// The receiver rule over one tool's per-signer results; checks it against rekey's verdict and
/// the evidence's claims (every probe accepted but the downtime window's, inside the window).
fn check_demo_verdict(tool: &str, p: &DemoProbe, signers_ok: &[bool], detail: &str) {
    let count = p.record["signer_count"].as_u64().expect("count") as usize;
    assert_eq!(
        signers_ok.len(),
        count,
        "{tool}, {}: signers found: {detail}",
        p.label
    );
    let multi = p.record["receiver"]["accepts_multiple_signatures"] == true;
    let accepted = (count == 1 || multi) && signers_ok.iter().any(|ok| *ok);
    let claimed = p.record["receiver_verdict"] == "accepted";
    let in_window = p.record["in_downtime_window"] == true;
    assert!(
        accepted || in_window,
        "{tool} rejects {} outside the downtime window: {detail}",
        p.label
    );
    assert_eq!(
        accepted, claimed,
        "{tool} and rekey's reference receiver disagree on {}: {detail}",
        p.label
    );
}

/// Every probe of `rekey demo --evidence` through Bouncy Castle's default
/// `SignerInformationVerifier` (the certificate must be valid at the probe's signingTime), under
/// the trust the probe records. New keys' certificates used to be dated by the wall clock while
/// the demo signs on its own clock, and Bouncy Castle rejected every probe a new key signed.
#[test]
fn demo_probes_pass_bouncy_castle_default_verifier() {
    let dir = tempfile::tempdir().expect("temp dir");
    let probes = demo_probes(dir.path());
    let jobs: Vec<(PathBuf, Option<PathBuf>, Vec<PathBuf>)> = probes
        .iter()
        .map(|p| (p.msg.clone(), None, p.trusted.clone()))
        .collect();
    let results = bouncy_castle_run(&dir.path().join("bc-demo-jobs.txt"), &jobs);
    // The last probe of each procedure is signed by the new key alone: checked here too.
    for (p, signers) in probes.iter().zip(&results) {
        let ok: Vec<bool> = signers.iter().map(|s| s.1).collect();
        check_demo_verdict("Bouncy Castle", p, &ok, &format!("{signers:?}"));
    }
}

/// The same probes through `openssl cms -verify` at the probe's time (`-attime`) with the
/// certificates the probe carries as CA file — each signature and each signer certificate's
/// validity is checked — and `certtool --p7-verify` (at the current time) against the
/// receiver's trusted certificates, signer by signer.
#[test]
fn demo_probes_pass_openssl_and_gnutls() {
    let dir = tempfile::tempdir().expect("temp dir");
    for p in demo_probes(dir.path()) {
        // OpenSSL: the certificates in the message, checked at `at`; trust by fingerprint.
        let embedded = dir.path().join("embedded.pem");
        run_ok(
            openssl()
                .args(["pkcs7", "-inform", "DER", "-print_certs", "-in"])
                .arg(&p.msg)
                .arg("-out")
                .arg(&embedded),
        );
        let signers_out = dir.path().join("signers.pem");
        let (ok, text) = run(openssl()
            .args([
                "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
            ])
            .arg("-in")
            .arg(&p.msg)
            .arg("-CAfile")
            .arg(&embedded)
            .arg("-attime")
            .arg(p.at.timestamp().to_string())
            .arg("-signer")
            .arg(&signers_out)
            .args(["-out", "/dev/null"]));
        assert!(ok, "OpenSSL rejects {} at its time: {text}", p.label);
        let signer_fps: Vec<String> = Certificate::parse_pem_chain(
            &std::fs::read_to_string(&signers_out).expect("signers written"),
        )
        .expect("signer certificates")
        .iter()
        .map(|c| c.fingerprint().to_string())
        .collect();
        let trusted_ok: Vec<bool> = signer_fps
            .iter()
            .map(|f| p.trusted_fps.contains(f))
            .collect();
        check_demo_verdict("OpenSSL", &p, &trusted_ok, &text);

        // GnuTLS: one trusted certificate at a time as CA file. (certtool looks a signer up by
        // issuer name only, and the old and the new certificate share their subject: with both
        // in one CA file it checks a signature with whichever comes first.)
        let mut by_signer: Vec<(String, bool)> = Vec::new();
        for ca in &p.trusted {
            for (serial, ok, _) in gnutls_verify(ca, &p.msg, None, None) {
                match by_signer.iter_mut().find(|(s, _)| *s == serial) {
                    Some(known) => known.1 |= ok,
                    None => by_signer.push((serial, ok)),
                }
            }
        }
        let ok: Vec<bool> = by_signer.iter().map(|s| s.1).collect();
        check_demo_verdict("GnuTLS", &p, &ok, &format!("{by_signer:?}"));
    }
}
