//! The fake SAP Cloud Integration tenant (`tests/fake-sap-ci/`) keeps its contract: this test
//! starts the fake once on loopback with the Python `cargo xtask test` provides
//! (`REKEY_TEST_PYTHON`, a venv with `cryptography`) and runs its contract tests
//! (`tests/fake-sap-ci/test_contract.py`, written from `../shared/design/CONNECTORS.md` part A)
//! against it over real HTTP, the runtime's CMS output checked by `openssl cms -verify`.
//! A failing contract test fails this test, with the Python output shown.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The contract tests' directory.
fn fake_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-sap-ci")
}

/// Ends the fake when the test ends, whether it passed or not.
struct Fake(Child);

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn fake_sap_ci_tenant_keeps_the_contract_of_connectors_md() {
    let Ok(python) = std::env::var("REKEY_TEST_PYTHON") else {
        eprintln!(
            "SKIPPED fake_sap_ci: REKEY_TEST_PYTHON is not set. Run the tests with `cargo xtask \
             test` (it creates target/xtask-venv with cryptography and exports its python), or \
             point REKEY_TEST_PYTHON at a python with cryptography==50.0.2 installed."
        );
        return;
    };
    let has_crypto = Command::new(&python)
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_crypto,
        "{python} (REKEY_TEST_PYTHON) cannot import cryptography: `cargo xtask test` installs \
         it (PYTHON_PACKAGES in xtask/src/main.rs)"
    );

    let mut child = Command::new(&python)
        .arg(fake_dir().join("fake_sap_ci.py"))
        .args(["--port", "0"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts the fake tenant");
    let stdout = child.stdout.take().expect("fake stdout");
    let mut stderr = child.stderr.take().expect("fake stderr");
    let fake = Fake(child);
    let mut ready = String::new();
    BufReader::new(stdout)
        .read_line(&mut ready)
        .expect("reads the fake's ready line");
    if ready.trim().is_empty() {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        panic!("the fake tenant did not start:\n{err}");
    }
    let line: serde_json::Value = serde_json::from_str(&ready).expect("ready line is JSON");
    assert_eq!(line["fake"], "sap-ci", "{ready}");
    assert!(
        line["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "the fake binds loopback only: {ready}"
    );

    let out = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_contract"])
        .current_dir(fake_dir())
        .env("FAKE_SAP_CI_READY", ready.trim())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("runs the contract tests");
    let report = String::from_utf8_lossy(&out.stderr);
    drop(fake);
    assert!(
        out.status.success(),
        "contract tests of the fake SAP Cloud Integration tenant failed:\n{report}"
    );
    let ran = report
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        ran >= 20 && report.trim_end().ends_with("OK"),
        "expected at least 20 contract tests to pass:\n{report}"
    );
}
