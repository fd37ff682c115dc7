//! The tests' token harness: a SoftHSM2 token directory of their own, set up before the module
//! is first loaded, and the contract every keystore backend keeps.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, in `C_Initialize`, and a test may not change its own
//! environment (`set_var` is unsafe and the workspace forbids unsafe code). So each token test
//! re-runs itself as a child of this test binary with `SOFTHSM2_CONF` pointing at a fresh
//! directory; inside the child the tests' tokens share that one loaded module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{Duration, Utc};
use rekey_crypto::{
    CertSource, Certificate, DigestAlg, KeyBackend, KeyBits, KeyHandle, KeyPair, SignOptions,
    SignerSpec, TokenKeyId, certificate_request, certificate_request_pem, self_signed_at, sign,
    verify,
};
use rekey_pkcs11::{PinSource, Pkcs11Config, Pkcs11Keystore, fresh_key_id, init_token};

pub const SO_PIN: &str = "so-pin-1234";
pub const USER_PIN: &str = "user-pin-5678";
const DIR_ENV: &str = "REKEY_TEST_PKCS11_DIR";

/// The module the tests load, or `None` (after saying so) when it is not installed and this
/// is not CI; in CI a missing module fails the test.
pub fn module() -> Option<PathBuf> {
    let module = std::env::var_os("REKEY_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    if module.exists() {
        return Some(module);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "PKCS#11 module {} is missing: install the Debian package softhsm2 (or set \
         REKEY_TEST_PKCS11_MODULE)",
        module.display()
    );
    eprintln!(
        "SKIPPED: PKCS#11 module {} not found; install softhsm2 or set REKEY_TEST_PKCS11_MODULE",
        module.display()
    );
    None
}

/// A fresh SoftHSM2 token directory for the running test process.
pub struct Softhsm {
    pub module: PathBuf,
    pub dir: PathBuf,
}

impl Softhsm {
    /// Initialises token `label` and opens a keystore on it with the user PIN from a file.
    pub fn token(&self, label: &str) -> Pkcs11Keystore {
        init_token(&self.module, SO_PIN, USER_PIN, label).expect("init token");
        Pkcs11Keystore::open(&self.config(label)).expect("open keystore")
    }

    /// The configuration of token `label`, with its PIN in a file.
    pub fn config(&self, label: &str) -> Pkcs11Config {
        let pin = self.dir.join(format!("{label}.pin"));
        std::fs::write(&pin, format!("{USER_PIN}\n")).expect("write PIN file");
        Pkcs11Config {
            module: self.module.clone(),
            token_label: label.into(),
            pin: PinSource::File(pin),
        }
    }
}

/// Runs `body` with a SoftHSM2 of its own: in a child of this test binary (`test` is the
/// calling test's name) with `SOFTHSM2_CONF` set, so the module is first loaded with it.
pub fn on_softhsm(test: &str, body: impl FnOnce(&Softhsm)) {
    let Some(module) = module() else { return };
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        body(&Softhsm {
            module,
            dir: PathBuf::from(dir),
        });
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = rekey_pkcs11::softhsm_conf(tmp.path()).expect("softhsm2.conf");
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(DIR_ENV, tmp.path())
        .output()
        .expect("run the test in a child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test} failed on SoftHSM2 ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in the child:\n{stdout}\n{stderr}"
    );
}

/// `openssl`, which the tests use as the independent verifier.
pub fn openssl() -> Command {
    Command::new("openssl")
}

/// Runs a command; panics with its stderr when it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn self_signed(key: &dyn rekey_crypto::RsaSigner, cn: &str) -> Certificate {
    self_signed_at(
        key,
        &format!("CN={cn},O=rekey test"),
        Utc::now(),
        Duration::minutes(5),
        30,
    )
    .expect("self-signed certificate")
}

// ---- the contract: every property each backend keeps ----

/// A generated key signs CMS SignedData (every digest) that rekey's verifier and
/// `openssl cms -verify` both accept.
pub fn signs_cms_that_openssl_verifies(b: &dyn KeyBackend, dir: &Path) {
    let id = fresh_key_id();
    let handle = b
        .generate(KeyBits::B2048, &id, "cms-signer")
        .expect("generate");
    let signer = b.signer(&handle).expect("signer");
    assert_eq!(signer.bits(), 2048);
    let cert = self_signed(&*signer, "cms signer");
    assert!(
        signer.matches(&cert),
        "certificate carries the signer's key"
    );
    let content = b"EDI payload for the receiver\r\n";
    for digest in DigestAlg::ALL {
        let der = sign(
            content,
            &[SignerSpec {
                key: &*signer,
                chain: std::slice::from_ref(&cert),
                digest,
                include_certs: true,
                include_signing_time: true,
            }],
            &SignOptions {
                detached: false,
                signing_time: Utc::now(),
            },
        )
        .expect("sign");
        let v = verify(&der, None, &[], CertSource::EmbeddedAndSupplied).expect("verify");
        assert_eq!(v.content, content);
        assert_eq!(v.signers.len(), 1);
        assert!(v.signers[0].is_valid(), "{digest:?}: {:?}", v.signers[0]);

        let file = dir.join(format!("{}-{}.p7m", b.kind(), digest.name()));
        std::fs::write(&file, &der).expect("write p7m");
        let out = dir.join(format!("{}-{}.out", b.kind(), digest.name()));
        run_ok(
            openssl()
                .args(["cms", "-verify", "-noverify", "-inform", "DER", "-in"])
                .arg(&file)
                .arg("-out")
                .arg(&out),
        );
        assert_eq!(std::fs::read(&out).expect("openssl output"), content);
    }
}

/// A self-signed certificate and a CSR made through the backend's signer verify.
pub fn issues_certificates_and_csrs(b: &dyn KeyBackend, dir: &Path) {
    let id = fresh_key_id();
    let handle = b
        .generate(KeyBits::B3072, &id, "csr-key")
        .expect("generate");
    let signer = b.signer(&handle).expect("signer");
    assert_eq!(signer.bits(), 3072);
    let cert = self_signed(&*signer, "certificate signer");
    let pem = dir.join(format!("{}-cert.pem", b.kind()));
    std::fs::write(&pem, cert.to_pem()).expect("write cert");
    // A self-signed certificate verifies against itself when its signature is right.
    run_ok(
        openssl()
            .args(["verify", "-partial_chain", "-CAfile"])
            .arg(&pem)
            .arg(&pem),
    );
    let csr = certificate_request(&*signer, "CN=csr for the CA,O=rekey test").expect("csr");
    let csr_pem = dir.join(format!("{}-req.pem", b.kind()));
    std::fs::write(&csr_pem, certificate_request_pem(&csr)).expect("write csr");
    let out = run_ok(
        openssl()
            .args(["req", "-verify", "-noout", "-in"])
            .arg(&csr_pem),
    );
    let _ = out;
}

/// A generate repeated with the same id (a retry after a crash) leaves one key: a token
/// backend adopts the first, so the public key is the same.
pub fn generate_again_adopts(b: &dyn KeyBackend) {
    let id = fresh_key_id();
    let first = b
        .generate(KeyBits::B2048, &id, "retried")
        .expect("generate");
    let again = b
        .generate(KeyBits::B2048, &id, "retried")
        .expect("generate again");
    let pk = |h: &KeyHandle| b.signer(h).expect("signer").public_key_der().expect("spki");
    let listed = b.objects().expect("objects");
    let under_id = listed.iter().filter(|o| o.id == id).count();
    match b.kind() {
        "embedded" => assert_eq!(under_id, 0, "the embedded backend keeps no objects"),
        _ => {
            assert_eq!(pk(&first), pk(&again), "the retry adopted the first key");
            assert_eq!(under_id, 1, "one key object under {id}: {listed:?}");
        }
    }
}

/// An existing key brought in signs with the same public key.
pub fn imports_existing_keys(b: &dyn KeyBackend) {
    let key = KeyPair::generate(KeyBits::B2048).expect("key");
    let id = fresh_key_id();
    let handle = b.import(&key, &id, "imported").expect("import");
    let again = b
        .import(&key, &id, "imported")
        .expect("import again adopts");
    for h in [&handle, &again] {
        let signer = b.signer(h).expect("signer");
        assert_eq!(
            signer.public_key_der().expect("spki"),
            key.public_key_der().expect("spki")
        );
        let cert = self_signed(&*signer, "imported");
        assert!(key.matches(&cert));
    }
    if b.kind() != "embedded" {
        let n = b
            .objects()
            .expect("objects")
            .iter()
            .filter(|o| o.id == id)
            .count();
        assert_eq!(n, 1, "one key object after a repeated import");
    }
}

/// Labels and certificates are projected idempotently.
pub fn projects_labels_and_certificates(b: &dyn KeyBackend) {
    let id = fresh_key_id();
    let handle = b.generate(KeyBits::B2048, &id, "before").expect("generate");
    let signer = b.signer(&handle).expect("signer");
    let cert = self_signed(&*signer, "projected");
    drop(signer);
    for _ in 0..2 {
        b.project(&id, "after", Some(&cert)).expect("project");
    }
    b.project(&id, "after", None)
        .expect("project without a certificate");
    for o in b.objects().expect("objects").iter().filter(|o| o.id == id) {
        assert_eq!(o.label, "after");
    }
}

/// Destroy removes the key and is idempotent; the id is gone from `objects`.
pub fn destroys_idempotently(b: &dyn KeyBackend) {
    let id = fresh_key_id();
    b.generate(KeyBits::B2048, &id, "doomed").expect("generate");
    b.destroy(&id).expect("destroy");
    b.destroy(&id).expect("destroy again");
    assert!(b.objects().expect("objects").iter().all(|o| o.id != id));
}

/// `objects` lists only keys under rekey's id prefix.
pub fn lists_only_rekey_objects(b: &dyn KeyBackend) {
    let foreign = TokenKeyId::new(b"someone else's key".to_vec()).expect("id");
    let ours = fresh_key_id();
    b.generate(KeyBits::B2048, &foreign, "foreign")
        .expect("generate foreign");
    b.generate(KeyBits::B2048, &ours, "ours")
        .expect("generate ours");
    let listed = b.objects().expect("objects");
    assert!(listed.iter().all(|o| o.id != foreign), "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|o| o.id.as_bytes().starts_with(rekey_pkcs11::ID_PREFIX))
    );
    if b.kind() != "embedded" {
        assert!(listed.iter().any(|o| o.id == ours && o.label == "ours"));
    }
}

/// Every property, in order.
pub fn contract(b: &dyn KeyBackend, dir: &Path) {
    signs_cms_that_openssl_verifies(b, dir);
    issues_certificates_and_csrs(b, dir);
    generate_again_adopts(b);
    imports_existing_keys(b);
    projects_labels_and_certificates(b);
    destroys_idempotently(b);
    lists_only_rekey_objects(b);
}
