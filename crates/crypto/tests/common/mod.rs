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

/// Runs an external tool; a missing tool fails the test with the Debian package that provides it
/// (interop tests never skip silently: CI installs the tools).
pub fn tool(program: &str, package: &str) -> std::process::Command {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{program}` is not installed: install the Debian package `{package}` (apt-get install -y {package})"
    );
    std::process::Command::new(program)
}

/// `openssl`, from the Debian package `openssl`.
pub fn openssl() -> std::process::Command {
    tool("openssl", "openssl")
}

/// Runs a command and returns its stdout; panics with stderr when it fails.
pub fn run_ok(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn write(dir: &std::path::Path, name: &str, bytes: impl AsRef<[u8]>) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
