//! A tenant whose keys live on a PKCS#11 token, through the binary, on SoftHSM2:
//! - `rekey demo --keystore pkcs11` runs every procedure with its keys on a fresh token;
//!   `pkcs11-tool` (OpenSC) then lists them as sensitive and never extractable, and neither
//!   the database nor any other file of the data directory holds private-key bytes;
//! - a tenant pointed at a token by `[keystores.<tenant>]` generates and imports keys there,
//!   signs as its signer step signs (OpenSSL verifies), reconciles, and refuses a wrong PIN,
//!   an unknown token or an incomplete section with an error naming what was wrong.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when it is loaded, so each test gives the processes it
//! starts a configuration of its own (rekey sets no environment variable in its own process).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BoxError, rekey};

fn module() -> PathBuf {
    std::env::var_os("REKEY_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// Whether the token tests can run; in CI a missing module is a failure.
fn available() -> bool {
    if module().exists() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "the PKCS#11 module {} is missing (cargo xtask test installs softhsm2)",
        module().display()
    );
    eprintln!("skipping: no PKCS#11 module at {}", module().display());
    false
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "command failed: {}", text(&o));
    text(&o)
}

fn failed(o: Output) -> String {
    assert!(!o.status.success(), "command succeeded: {}", text(&o));
    text(&o)
}

/// The DER prefix of a PKCS#8 RSA private key (`PrivateKeyInfo` with version 0 and the
/// rsaEncryption algorithm), and the PEM labels of private keys.
const PRIVATE_KEY_MARKERS: &[&[u8]] = &[
    &[
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00, 0x04,
    ],
    b"PRIVATE KEY-----",
];

/// Files under `dir` (except SoftHSM2's own token store) that hold a private-key marker.
fn files_with_private_keys(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "softhsm") {
                    continue; // the token's own (encrypted) object store
                }
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && PRIVATE_KEY_MARKERS
                    .iter()
                    .any(|m| bytes.windows(m.len()).any(|w| w == *m))
            {
                found.push(p);
            }
        }
    }
    found
}

/// How many keystore rows of `tenant` hold an encrypted private key, read with rekey's store.
fn sealed_keys(data: &Path, tenant: &str) -> Result<u64, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let url = format!("sqlite://{}?mode=rw", data.join("rekey.db").display());
        let store = rekey_store::Store::open(&url).await?;
        let t = store
            .tenant_by_name(&rekey_model::TenantName::parse(tenant)?)
            .await?;
        let n = rekey_store::keystore::sealed_key_count(store.db(), t.id).await?;
        store.close().await?;
        Ok(n)
    })
}

/// `pkcs11-tool --list-objects` on a token, logged in.
fn list_objects(conf: &Path, label: &str, pin: &str) -> String {
    ok(Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", conf)
        .arg("--module")
        .arg(module())
        .args(["--token-label", label, "--login", "--pin", pin])
        .arg("--list-objects")
        .output()
        .expect("pkcs11-tool (apt-get install opensc)"))
}

/// Private key objects in `pkcs11-tool` output: (label, access line).
fn private_keys(listing: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = listing.lines().peekable();
    while let Some(l) = lines.next() {
        if !l.starts_with("Private Key Object") {
            continue;
        }
        let (mut label, mut access) = (String::new(), String::new());
        while let Some(next) = lines.peek() {
            if !next.starts_with(' ') {
                break;
            }
            let next = lines.next().unwrap_or_default().trim();
            if let Some(v) = next.strip_prefix("label:") {
                label = v.trim().to_string();
            } else if let Some(v) = next.strip_prefix("Access:") {
                access = v.trim().to_string();
            }
        }
        out.push((label, access));
    }
    out
}

#[test]
fn the_demo_runs_every_procedure_with_its_keys_on_a_token() -> Result<(), BoxError> {
    if !available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("demo");
    let evidence = dir.path().join("evidence");
    let out = ok(rekey()
        .env_remove("SOFTHSM2_CONF")
        .arg("demo")
        .args(["--keystore", "pkcs11", "--bits", "2048"])
        .arg("--evidence")
        .arg(&evidence)
        .arg("--pkcs11-module")
        .arg(module())
        .arg("--data-dir")
        .arg(&data)
        .output()?);
    for p in [
        "dual-trust",
        "dual-signature",
        "prepared-second-alias",
        "downtime-window",
    ] {
        assert!(out.contains(&format!("{p}: ")), "{p} did not run: {out}");
    }
    assert!(
        out.contains("each sensitive and never extractable; no private-key bytes in the database"),
        "{out}"
    );
    assert!(!out.contains("FAILED"), "{out}");

    // Every probe the token signed that the demo's receiver accepted, OpenSSL verifies too.
    let mut verified = 0;
    for p in [
        "dual-trust",
        "dual-signature",
        "prepared-second-alias",
        "downtime-window",
    ] {
        let lines = std::fs::read_to_string(evidence.join(p).join("probes.jsonl"))?;
        for line in lines.lines() {
            let probe: serde_json::Value = serde_json::from_str(line)?;
            if probe["receiver_verdict"] != "accepted" {
                continue;
            }
            let der = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                probe["signed_data_der_base64"]
                    .as_str()
                    .ok_or("no message")?,
            )?;
            let msg = dir.path().join("probe.der");
            std::fs::write(&msg, der)?;
            let o = Command::new("openssl")
                .args(["cms", "-verify", "-noverify", "-inform", "DER", "-in"])
                .arg(&msg)
                .arg("-out")
                .arg(dir.path().join("probe.out"))
                .output()?;
            assert!(
                o.status.success(),
                "{p}: openssl refused a probe: {}",
                text(&o)
            );
            verified += 1;
        }
    }
    assert!(verified >= 30, "only {verified} probes verified");

    // The token, as OpenSC sees it: every key the demo made, none extractable.
    let conf = data.join("softhsm/softhsm2.conf");
    assert!(
        conf.exists(),
        "SoftHSM2's tokens stay in the data directory"
    );
    let label = std::fs::read_to_string(data.join("demo-token.label"))?;
    let pin = std::fs::read_to_string(data.join(format!("{}.pin", label.trim())))?;
    let keys = private_keys(&list_objects(&conf, label.trim(), pin.trim()));
    // Per procedure the old key and the new one.
    assert_eq!(keys.len(), 8, "{keys:?}");
    for (label, access) in &keys {
        assert!(
            access.contains("never extractable") && access.contains("sensitive"),
            "{label}: {access}"
        );
        assert!(!access.contains(", extractable"), "{label}: {access}");
    }
    // Current keys are labelled with their alias, earlier ones as history.
    assert!(
        keys.iter().any(|(l, _)| l.ends_with("(history)")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|(l, _)| l.starts_with("dual-trust-") && !l.contains(' '))
    );

    assert_eq!(
        sealed_keys(&data, "demo")?,
        0,
        "encrypted keys in the database"
    );
    assert_eq!(files_with_private_keys(&data), Vec::<PathBuf>::new());
    Ok(())
}

/// A data directory with tenant `acme` configured for a fresh SoftHSM2 token; returns the
/// SoftHSM2 configuration (every command needs it in its environment).
fn token_tenant(dir: &Path, token: &str) -> Result<PathBuf, BoxError> {
    let conf = rekey_pkcs11::softhsm_conf(&dir.join("softhsm"))?;
    ok(Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", token])
        .args(["--so-pin", "so-secret", "--pin", "user-secret"])
        .output()?);
    let data = dir.join("data");
    ok(rekey().arg("--data-dir").arg(&data).arg("init").output()?);
    std::fs::write(
        data.join("rekey.toml"),
        format!(
            "[keystores.acme]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken = \"{token}\"\npin_env = \"ACME_TOKEN_PIN\"\n",
            module().display()
        ),
    )?;
    Ok(conf)
}

fn on_token(dir: &Path, conf: &Path, pin: &str) -> Command {
    let mut c = rekey();
    c.env("SOFTHSM2_CONF", conf)
        .env("ACME_TOKEN_PIN", pin)
        .arg("--data-dir")
        .arg(dir.join("data"));
    c
}

#[test]
fn a_configured_tenant_generates_imports_and_signs_on_its_token() -> Result<(), BoxError> {
    if !available() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let conf = token_tenant(dir, "acme-signing")?;
    let run = |args: &[&str]| on_token(dir, &conf, "user-secret").args(args).output();
    ok(run(&["tenant", "add", "acme"])?);
    // The tenant administrator makes the changes (`--as`).
    ok(run(&[
        "user",
        "add",
        "--email",
        "admin@acme.example",
        "--role",
        "tenant_admin",
    ])?);
    ok(run(&[
        "keystore",
        "generate",
        "--alias",
        "A",
        "--bits",
        "2048",
        "--subject",
        "CN=acme,O=Acme",
        "--as",
        "admin@acme.example",
    ])?);

    // An existing key imported from PKCS#12 lands on the token, with a warning.
    let p12 = dir.join("old.p12");
    let key = dir.join("old.key");
    let cert = dir.join("old.pem");
    ok(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=imported"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?);
    ok(Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:"])
        .arg("-inkey")
        .arg(&key)
        .arg("-in")
        .arg(&cert)
        .arg("-out")
        .arg(&p12)
        .output()?);
    let p12_arg = p12.display().to_string();
    let imported = ok(run(&[
        "keystore",
        "import",
        "--alias",
        "B",
        "--pkcs12",
        &p12_arg,
        "--as",
        "admin@acme.example",
    ])?);
    assert!(
        imported.contains("existed outside the token"),
        "no warning on import: {imported}"
    );

    // The signer step signs on the token; OpenSSL verifies against the exported chain.
    ok(run(&[
        "flow",
        "add",
        "--flow",
        "F",
        "--step",
        "S",
        "--as",
        "admin@acme.example",
    ])?);
    for a in ["A", "B"] {
        ok(run(&[
            "signer",
            "add-alias",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            a,
            "--as",
            "admin@acme.example",
        ])?);
    }
    let payload = dir.join("payload.txt");
    std::fs::write(&payload, b"an order\r\n")?;
    let signed = dir.join("signed.p7m");
    let (p, s) = (payload.display().to_string(), signed.display().to_string());
    let said = ok(run(&[
        "sign",
        "--flow",
        "F",
        "--step",
        "S",
        "--in",
        &p,
        "--out",
        &s,
        "--as",
        "admin@acme.example",
    ])?);
    assert!(said.contains("2 signature(s)"), "{said}");
    let chain = dir.join("chain.pem");
    let mut pem = String::new();
    for a in ["A", "B"] {
        pem.push_str(&ok(run(&["keystore", "export-cert", "--alias", a])?));
    }
    std::fs::write(&chain, pem)?;
    let verified = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER"])
        .arg("-in")
        .arg(&signed)
        .arg("-CAfile")
        .arg(&chain)
        .arg("-purpose")
        .arg("any")
        .output()?;
    assert!(verified.status.success(), "openssl: {}", text(&verified));
    assert_eq!(verified.stdout, b"an order\r\n");

    // Both keys are on the token under their aliases; the database holds no key bytes.
    let keys = private_keys(&list_objects(&conf, "acme-signing", "user-secret"));
    let mut labels: Vec<&str> = keys.iter().map(|(l, _)| l.as_str()).collect();
    labels.sort_unstable();
    assert_eq!(labels, ["A", "B"], "{keys:?}");
    for (l, access) in &keys {
        assert!(access.contains("sensitive"), "{l}: {access}");
        assert!(!access.contains(", extractable"), "{l}: {access}");
    }
    assert_eq!(sealed_keys(&dir.join("data"), "acme")?, 0);
    assert_eq!(
        files_with_private_keys(&dir.join("data")),
        Vec::<PathBuf>::new()
    );

    let rec = ok(run(&["keystore", "reconcile"])?);
    assert!(rec.contains("2 key object(s) match"), "{rec}");

    // A key object destroyed on the token by hand is reported, not silently dropped.
    let id = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &conf)
        .arg("--module")
        .arg(module())
        .args([
            "--token-label",
            "acme-signing",
            "--login",
            "--pin",
            "user-secret",
        ])
        .args(["--delete-object", "--type", "privkey", "--label", "B"])
        .output()?;
    assert!(id.status.success(), "{}", text(&id));
    let missing = failed(run(&["keystore", "reconcile"])?);
    assert!(
        missing.contains("lacks the key object of 1 keystore row(s): B:"),
        "{missing}"
    );
    Ok(())
}

#[test]
fn a_misconfigured_token_is_refused_with_what_was_wrong() -> Result<(), BoxError> {
    if !available() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let conf = token_tenant(dir, "acme-signing")?;
    ok(on_token(dir, &conf, "user-secret")
        .args(["tenant", "add", "acme"])
        .output()?);

    let wrong_pin = failed(
        on_token(dir, &conf, "not-the-pin")
            .args(["keystore", "list"])
            .output()?,
    );
    assert!(wrong_pin.contains("[keystores.acme]"), "{wrong_pin}");
    assert!(wrong_pin.to_lowercase().contains("pin"), "{wrong_pin}");
    assert!(
        !wrong_pin.contains("not-the-pin"),
        "the PIN was printed: {wrong_pin}"
    );

    let toml = dir.join("data/rekey.toml");
    let good = std::fs::read_to_string(&toml)?;
    std::fs::write(&toml, good.replace("acme-signing", "no-such-token"))?;
    let unknown = failed(
        on_token(dir, &conf, "user-secret")
            .args(["keystore", "list"])
            .output()?,
    );
    assert!(
        unknown.contains("no-such-token") && unknown.contains("acme-signing"),
        "the error names the label asked for and the ones found: {unknown}"
    );

    std::fs::write(
        &toml,
        "[keystores.acme]\nbackend = \"pkcs11\"\ntoken = \"acme-signing\"\npin_env = \"X\"\n",
    )?;
    let incomplete = failed(
        on_token(dir, &conf, "user-secret")
            .args(["keystore", "list"])
            .output()?,
    );
    assert!(
        incomplete.contains("[keystores.acme]") && incomplete.contains("needs module"),
        "{incomplete}"
    );

    std::fs::write(&toml, "[keystores.acme]\nbackend = \"hsm\"\n")?;
    let unknown_backend = failed(
        on_token(dir, &conf, "user-secret")
            .args(["keystore", "list"])
            .output()?,
    );
    assert!(
        unknown_backend.contains("unknown backend \"hsm\""),
        "{unknown_backend}"
    );
    Ok(())
}
