//! OpenSSL as the tests' outside party: a throwaway CA that signs the certificate requests
//! rekey emits, so a CA-signed renewal can be completed with a certificate rekey did not make.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};

/// Runs `openssl args` in `dir` and asserts that it succeeds.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA named `subject`, valid `days` days, as `ca.pem` and `ca.key` in `dir`.
fn new_ca(dir: &Path, subject: &str, days: &str) {
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-subj", subject, "-days", days,
        ],
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).expect("read")
}

/// A new CA in `dir` (`ca.pem`, `ca.key`) that signs `csr` for 30 days: (leaf PEM, CA PEM).
pub fn ca_sign(dir: &Path, csr: &str) -> (String, String) {
    std::fs::write(dir.join("req.csr"), csr).expect("write CSR");
    new_ca(dir, "/CN=Test CA", "30");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "30",
        ],
    );
    (read(dir, "leaf.pem"), read(dir, "ca.pem"))
}

/// A new CA in `dir` that signs `csr` valid exactly from `not_before` to `not_after` (`openssl
/// ca`, which, unlike `x509 -req`, takes both dates): the leaf followed by the CA, PEM.
pub fn ca_sign_dated(
    dir: &Path,
    csr: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> String {
    let write = |f: &str, s: &str| std::fs::write(dir.join(f), s).expect("write");
    write("req.csr", csr);
    write("index.txt", "");
    write("serial", "01\n");
    write(
        "ca.cnf",
        "[ca]\ndefault_ca = dated\n[dated]\ndatabase = index.txt\nnew_certs_dir = .\n\
         serial = serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
         [any]\ncommonName = optional\n",
    );
    new_ca(dir, "/CN=Dated CA", "90");
    let asn1 = |t: DateTime<Utc>| t.format("%Y%m%d%H%M%SZ").to_string();
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "req.csr",
            "-out",
            "leaf.pem",
            "-notext",
            "-preserveDN",
            "-startdate",
            &asn1(not_before),
            "-enddate",
            &asn1(not_after),
        ],
    );
    format!("{}{}", read(dir, "leaf.pem"), read(dir, "ca.pem"))
}
