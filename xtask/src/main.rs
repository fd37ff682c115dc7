//! `cargo xtask test`: installs what the test suite needs, starts PostgreSQL, runs every test.
//!
//! Kept free of dependencies so that it builds in a second on a fresh clone.

#![forbid(unsafe_code)]

#[cfg(test)]
mod tidy;

use std::env;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Debian packages the tests drive as peers: OpenSSL, GnuTLS and Bouncy Castle verify rekey's
/// CMS output; Chromium drives the web inbox.
const PACKAGES: &[&str] = &[
    "openssl",
    "gnutls-bin",
    "libbcprov-java",
    "libbcpkix-java",
    "libbcutil-java",
    "default-jdk-headless",
    "chromium",
    "chromium-driver",
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
    let url = env::var("REKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let status = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--workspace"])
        .args(extra)
        .env("REKEY_TEST_POSTGRES_URL", &url)
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
