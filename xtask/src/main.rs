//! `cargo xtask test`: installs what the test suite needs, starts PostgreSQL, runs every test.
//!
//! Kept free of dependencies so that it builds in a second on a fresh clone.

#![forbid(unsafe_code)]

#[cfg(test)]
mod tidy;

use std::env;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Debian packages the tests drive as peers: OpenSSL, GnuTLS and Bouncy Castle verify rekey's
/// CMS output; Chromium drives the web inbox; SoftHSM2 is the PKCS#11 token the pkcs11 keystore
/// is tested on, and OpenSC's `pkcs11-tool` lists that token's objects independently.
const PACKAGES: &[&str] = &[
    "openssl",
    "gnutls-bin",
    "libbcprov-java",
    "libbcpkix-java",
    "libbcutil-java",
    "default-jdk-headless",
    "chromium",
    "chromium-driver",
    "python3-venv",
    "python3-pip",
    "softhsm2",
    "opensc",
];

/// The PKCS#11 module the token tests load (from the `softhsm2` package).
const PKCS11_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Python packages the tests run as independent checkers, installed into one virtual
/// environment (see [`python_venv`]): `openapi-spec-validator` validates `/openapi.json` as
/// OpenAPI 3.1, and `openapi-schema-validator` (which it is built on) checks real responses
/// against the document's schemas; `cryptography` gives the fake SAP Cloud Integration tenant
/// (`tests/fake-sap-ci/`) its keys, certificates, PKCS#12 and CMS signing; `pyas2lib` is the
/// AS2 receiver `tests/as2/receiver.py` wraps (its dependencies pinned too, so the oscrypto
/// version the harness works around is the one installed).
const PYTHON_PACKAGES: &[&str] = &[
    "openapi-spec-validator==0.9.0",
    "openapi-schema-validator==0.9.0",
    "pyas2lib==1.4.4",
    "oscrypto==1.3.0",
    "asn1crypto==1.5.1",
    "pyOpenSSL==26.4.0",
    "cryptography==50.0.2",
];

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("setup") => setup(),
        _ => {
            eprintln!(
                "usage: cargo xtask test [-- extra cargo test args]\n       cargo xtask setup"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn setup() -> Result<(), String> {
    install_packages()?;
    ensure_postgres()
}

fn test(extra: &[String]) -> Result<(), String> {
    setup()?;
    let python = python_venv()?;
    let url = env::var("REKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let status = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--workspace"])
        .args(extra)
        .env("REKEY_TEST_POSTGRES_URL", &url)
        .env("REKEY_TEST_PYTHON", &python)
        .env("REKEY_TEST_PKCS11_MODULE", PKCS11_MODULE)
        // Crash at every fail point of every procedure, not a sample.
        .env("REKEY_CRASH_FULL", "1")
        .status()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn install_packages() -> Result<(), String> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        return Err(format!(
            "missing packages {missing:?} and no apt-get to install them"
        ));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    run("apt-get", &args)
}

/// Creates `target/xtask-venv` (once) with [`PYTHON_PACKAGES`] and returns its `python`, which
/// the tests get as `REKEY_TEST_PYTHON`. The list installed is recorded in the venv, so a
/// package added to the list is installed on the next run.
fn python_venv() -> Result<PathBuf, String> {
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join("xtask-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("rekey-packages.txt");
    let wanted = PYTHON_PACKAGES.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && python.exists() {
        return Ok(python);
    }
    if !python.exists() {
        eprintln!("xtask: creating {}", venv.display());
        run("python3", &["-m", "venv", &venv.to_string_lossy()])?;
    }
    eprintln!("xtask: installing {}", PYTHON_PACKAGES.join(" "));
    let mut args = vec!["-m", "pip", "install", "-q", "--disable-pip-version-check"];
    args.extend(PYTHON_PACKAGES);
    run(&python.to_string_lossy(), &args)?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

fn ensure_postgres() -> Result<(), String> {
    if env::var("REKEY_TEST_POSTGRES_URL").is_ok() || postgres_up() {
        return Ok(());
    }
    let versions = std::fs::read_dir("/etc/postgresql").map_err(|_| {
        "PostgreSQL is not running on 127.0.0.1:5432 and is not installed".to_string()
    })?;
    for v in versions.flatten() {
        let v = v.file_name().to_string_lossy().to_string();
        eprintln!("xtask: starting PostgreSQL {v}");
        run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &v, "main", "start"],
        )?;
    }
    for _ in 0..30 {
        if postgres_up() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err("PostgreSQL did not come up on 127.0.0.1:5432".into())
}

fn postgres_up() -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], 5432).into(), Duration::from_secs(1)).is_ok()
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(cmd)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {} failed ({status})", args.join(" ")))
    }
}
