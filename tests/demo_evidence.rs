//! `rekey demo --evidence` end to end, and an independent re-check of its evidence with
//! OpenSSL: every probe's signatures are verified by `openssl cms`, the signer certificates it
//! reports are matched against the trust recorded in the probe, and the receiver rule is applied
//! again here — without rekey's verifier or verdicts.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn fingerprint_of_pem(dir: &Path, pem: &str) -> String {
    let f = dir.join("c.pem");
    std::fs::write(&f, pem).expect("write cert");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&f)
        .output()
        .expect("openssl x509 runs (apt package openssl)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split('=')
        .nth(1)
        .unwrap_or("")
        .trim()
        .replace(':', "")
        .to_lowercase()
}

/// The receiver rule, decided from OpenSSL's output only.
fn openssl_verdict(dir: &Path, probe: &Value) -> bool {
    let der = B64
        .decode(probe["signed_data_der_base64"].as_str().expect("der"))
        .expect("base64");
    let msg = dir.join("probe.der");
    std::fs::write(&msg, der).expect("write probe");
    let signers = dir.join("signers.pem");
    let content = dir.join("content.out");
    let status = Command::new("openssl")
        .args(["cms", "-verify", "-noverify", "-inform", "DER", "-in"])
        .arg(&msg)
        .arg("-signer")
        .arg(&signers)
        .arg("-out")
        .arg(&content)
        .output()
        .expect("openssl cms runs (apt package openssl)");
    if !status.status.success() {
        return false;
    }
    let payload = B64
        .decode(probe["content_base64"].as_str().expect("content"))
        .expect("base64");
    assert_eq!(
        std::fs::read(&content).expect("content written"),
        payload,
        "signed content is the probe payload"
    );
    let signer_pems = std::fs::read_to_string(&signers).expect("signers written");
    let signer_fps: Vec<String> = signer_pems
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(|b| fingerprint_of_pem(dir, b))
        .collect();
    let trusted: Vec<String> = probe["receiver"]["trusted_certificates_pem"]
        .as_array()
        .expect("trusted list")
        .iter()
        .map(|p| fingerprint_of_pem(dir, p.as_str().expect("pem")))
        .collect();
    let count = probe["signer_count"].as_u64().expect("count") as usize;
    assert_eq!(
        count,
        signer_fps.len(),
        "signer_count matches what OpenSSL finds"
    );
    let multi = probe["receiver"]["accepts_multiple_signatures"]
        .as_bool()
        .expect("flag");
    (count == 1 || multi) && signer_fps.iter().any(|f| trusted.contains(f))
}

/// Runs `rekey demo --bits 2048` with `extra` arguments, its data and evidence under `dir`,
/// and asserts that it succeeds: the evidence directory and what the demo printed.
fn run_demo(dir: &Path, extra: &[&str]) -> (std::path::PathBuf, String) {
    let evidence = dir.join("evidence");
    let out = common::rekey()
        .args(["demo", "--bits", "2048"])
        .args(extra)
        .arg("--evidence")
        .arg(&evidence)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .expect("rekey runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (evidence, stdout)
}

#[test]
fn demo_evidence_holds_under_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (evidence, stdout) = run_demo(dir.path(), &[]);
    for line in [
        "dual-trust: 8 probes, 0 rejected",
        "dual-signature: 12 probes, 0 rejected",
        "prepared-second-alias: 7 probes, 0 rejected",
    ] {
        assert!(
            stdout.contains(line),
            "summary line {line:?} missing:\n{stdout}"
        );
    }
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let seeds = [
        ("dual-trust", vec!["1", "2", "3", "4", "5", "6", "7"]),
        (
            "dual-signature",
            vec!["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"],
        ),
        ("prepared-second-alias", vec!["1", "2", "3", "4", "5", "6"]),
        ("downtime-window", vec!["1", "2", "3", "4.1", "4.2"]),
    ];
    for (procedure, expected_seeds) in seeds {
        check_evidence(&evidence, &work, procedure, &expected_seeds);
    }
}

/// The evidence of `procedure` under `evidence`, checked with OpenSSL in `work`: the timeline
/// lists `expected_seeds` in order, a probe before the first step and after each, OpenSSL's
/// verdict on every probe is rekey's, only `downtime-window` has rejections and only inside
/// its window, and the last probe is signed by the new key alone, which the receiver trusts
/// instead of the old.
fn check_evidence(evidence: &Path, work: &Path, procedure: &str, expected_seeds: &[&str]) {
    let pdir = evidence.join(procedure);
    let probes: Vec<Value> = std::fs::read_to_string(pdir.join("probes.jsonl"))
        .expect("probes.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let timeline: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(pdir.join("timeline.json")).expect("timeline.json"),
    )
    .expect("JSON array");
    let got: Vec<&str> = timeline
        .iter()
        .map(|t| t["seed_step"].as_str().expect("seed_step"))
        .collect();
    assert_eq!(
        got, expected_seeds,
        "{procedure}: the timeline lists the seed's steps in order"
    );
    for t in &timeline {
        for field in [
            "step",
            "role",
            "kind",
            "performed_by",
            "started_at",
            "completed_at",
            "emails",
        ] {
            assert!(
                !t[field].is_null(),
                "{procedure}: timeline entry lacks {field}"
            );
        }
    }
    assert_eq!(
        probes.len(),
        timeline.len() + 1,
        "{procedure}: a probe before the first step and after each"
    );
    assert!(probes[0]["after_step"].is_null());
    for (i, p) in probes.iter().enumerate() {
        assert_eq!(p["seq"].as_u64(), Some(i as u64));
        let independent = openssl_verdict(work, p);
        let claimed = p["receiver_verdict"] == "accepted";
        assert_eq!(
            independent, claimed,
            "{procedure}: probe {i}: OpenSSL's verdict differs from rekey's"
        );
        if procedure == "downtime-window" {
            assert!(
                claimed || p["in_downtime_window"] == true,
                "{procedure}: probe {i} rejected outside the window"
            );
        } else {
            assert!(claimed, "{procedure}: probe {i} rejected");
            assert_eq!(p["in_downtime_window"], false);
        }
    }
    let last = probes.last().expect("probes");
    assert_eq!(
        last["signer_count"], 1,
        "{procedure}: the last probe has one signature"
    );
    assert_eq!(last["receiver_verdict"], "accepted");
    let first_signer = &probes[0]["receiver"]["trusted_certificates_pem"][0];
    let last_trusted = &last["receiver"]["trusted_certificates_pem"];
    assert_eq!(last_trusted.as_array().map(Vec::len), Some(1));
    assert_ne!(
        &last_trusted[0], first_signer,
        "{procedure}: the receiver ends trusting the new certificate, not the old"
    );
}

/// `rekey demo --keystore sap-ci-fake`: the procedures an SAP Cloud Integration tenant carries
/// out run against the FAKE tenant of `tests/fake-sap-ci` (started by the demo), every probe
/// signed by the fake's runtime from the deployed flow, and the evidence holds under OpenSSL as
/// for the embedded keystore; `dual-signature` asked for by name is refused, and so is an
/// interpreter without the `cryptography` package, saying how to get one.
#[test]
fn demo_on_the_fake_sap_tenant_holds_under_openssl() {
    let Ok(python) = std::env::var("REKEY_TEST_PYTHON") else {
        eprintln!("SKIPPED: REKEY_TEST_PYTHON is not set (run `cargo xtask test`)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (evidence, stdout) = run_demo(
        dir.path(),
        &["--keystore", "sap-ci-fake", "--python", &python],
    );
    for line in [
        "a FAKE SAP Cloud Integration tenant at http://127.0.0.1:",
        "dual-trust: 8 probes, 0 rejected",
        "prepared-second-alias: 7 probes, 0 rejected",
        "downtime-window: 6 probes, 1 rejected (all inside the agreed window",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert!(!evidence.join("dual-signature").exists());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    for (procedure, seeds) in [
        ("dual-trust", vec!["1", "2", "3", "4", "5", "6", "7"]),
        ("prepared-second-alias", vec!["1", "2", "3", "4", "5", "6"]),
        ("downtime-window", vec!["1", "2", "3", "4.1", "4.2"]),
    ] {
        check_evidence(&evidence, &work, procedure, &seeds);
    }

    let refused = common::rekey()
        .args(["demo", "--keystore", "sap-ci-fake", "--python", &python])
        .args(["--procedure", "dual-signature", "--data-dir"])
        .arg(dir.path().join("other"))
        .output()
        .expect("rekey runs");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not carried out on an SAP Cloud Integration tenant"),
        "{err}"
    );
    let no_python = common::rekey()
        .args(["demo", "--keystore", "sap-ci-fake", "--python", "false"])
        .arg("--data-dir")
        .arg(dir.path().join("third"))
        .output()
        .expect("rekey runs");
    let err = String::from_utf8_lossy(&no_python.stderr);
    assert_eq!(no_python.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`cryptography`") && err.contains("cargo xtask test"),
        "{err}"
    );
    assert!(!dir.path().join("third").exists(), "nothing made");
}

#[test]
fn demo_refuses_an_unknown_procedure_and_small_keys() {
    for (args, needle) in [
        (vec!["demo", "--procedure", "nope"], "unknown procedure"),
        (vec!["demo", "--bits", "1024"], "1024"),
    ] {
        let out = common::rekey().args(&args).output().expect("rekey runs");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A renewal's new certificate is dated by the engine's clock — in the demo, its simulated
/// clock — less the configured clock-skew allowance (default an hour), never by the wall clock:
/// a strict receiver checks it at the signingTime of messages signed on that clock.
#[test]
fn new_certificate_not_before_is_engine_clock_minus_skew() {
    let start = "2026-03-01T10:00:00Z";
    for (config, skew_minutes) in [(None, 60), (Some("[renewal]\nclock_skew_minutes = 5\n"), 5)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        if let Some(c) = config {
            std::fs::write(data.join("rekey.toml"), c).expect("config");
        }
        let evidence = dir.path().join("evidence");
        let out = common::rekey()
            .args(["demo", "--procedure", "dual-trust", "--bits", "2048"])
            .args(["--start", start, "--evidence"])
            .arg(&evidence)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("rekey runs");
        assert!(
            out.status.success(),
            "demo failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pdir = evidence.join("dual-trust");
        let timeline: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(pdir.join("timeline.json")).expect("timeline.json"),
        )
        .expect("JSON array");
        let generated: chrono::DateTime<chrono::Utc> = timeline
            .iter()
            .find(|t| t["step"] == "create-key-pair")
            .and_then(|t| t["completed_at"].as_str())
            .expect("key generation in the timeline")
            .parse()
            .expect("RFC 3339");
        assert!(
            generated
                >= start
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .expect("start")
        );
        let probes = std::fs::read_to_string(pdir.join("probes.jsonl")).expect("probes");
        let last: Value =
            serde_json::from_str(probes.lines().last().expect("a probe")).expect("JSON");
        let new = rekey_crypto::Certificate::from_pem(
            last["receiver"]["trusted_certificates_pem"][0]
                .as_str()
                .expect("the new certificate"),
        )
        .expect("certificate");
        assert_eq!(
            new.not_before(),
            generated - chrono::Duration::minutes(skew_minutes),
            "notBefore is the engine's time of key generation less {skew_minutes} minutes"
        );
    }
}

#[test]
fn demo_refuses_a_clock_skew_over_a_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(
        data.join("rekey.toml"),
        "[renewal]\nclock_skew_minutes = 5000\n",
    )
    .expect("config");
    let out = common::rekey()
        .args(["demo", "--procedure", "dual-trust", "--bits", "2048"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("rekey runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clock_skew_minutes = 5000") && err.contains("at most 1440"),
        "{err}"
    );
    assert!(
        !data.join("rekey.db").exists(),
        "nothing was created: {:?}",
        std::fs::read_dir(&data).map(|d| d.count())
    );
}

#[test]
fn demo_refuses_a_start_that_is_not_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = common::rekey()
        .args(["demo", "--start", "yesterday", "--data-dir"])
        .arg(&data)
        .output()
        .expect("rekey runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--start") && err.contains("yesterday"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was created");
}

/// The decoded bytes of the attachment `name` of a MIME message written by the file transport.
fn eml_attachment(eml: &str, name: &str) -> Option<Vec<u8>> {
    let at = eml.find(&format!("filename=\"{name}\""))?;
    let start = eml[..at].rfind("\r\n--")? + 2;
    let part = &eml[start..];
    let boundary = &part[..part.find("\r\n")?];
    let body = &part[part.find("\r\n\r\n")? + 4..];
    let body = &body[..body.find(&format!("\r\n{boundary}"))?];
    let raw: String = body.split_whitespace().collect();
    B64.decode(raw).ok()
}

/// Every `signingTime` in a DER SignedData, as `openssl cms -print` reads it.
fn openssl_signing_times(dir: &Path, der: &[u8]) -> Vec<chrono::DateTime<chrono::Utc>> {
    let f = dir.join("test-message.p7m");
    std::fs::write(&f, der).expect("write test message");
    let out = Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(&f)
        .output()
        .expect("openssl cms runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let mut times = Vec::new();
    while let Some(l) = lines.next() {
        if !l.contains("signingTime") {
            continue;
        }
        let t = lines
            .find_map(|l| l.trim().strip_prefix("UTCTIME:"))
            .unwrap_or_else(|| panic!("a UTCTIME after signingTime in {text}"));
        let t = chrono::NaiveDateTime::parse_from_str(t, "%b %e %H:%M:%S %Y GMT")
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        times.push(t.and_utc());
    }
    times
}

/// The test message attached to the receiver administrator's mail is signed on the engine's
/// clock — in the demo, its simulated clock, months away from the wall clock: its CMS
/// signingTime, read by OpenSSL from the mail `rekey mail send-due` writes, is the moment the
/// step it follows (add-signer-alias) was done in the demo's timeline.
#[test]
fn demo_test_message_signing_time_is_the_simulated_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let evidence = dir.path().join("evidence");
    let rekey = || {
        let mut c = common::rekey();
        c.arg("--data-dir").arg(&data);
        c
    };
    let out = rekey()
        .args(["demo", "--procedure", "dual-signature", "--bits", "2048"])
        .args(["--start", "2026-03-01T10:00:00Z", "--evidence"])
        .arg(&evidence)
        .output()
        .expect("rekey runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rekey()
        .args(["mail", "send-due", "--at", "2026-04-01T00:00:00Z"])
        .output()
        .expect("rekey runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let timeline: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(evidence.join("dual-signature/timeline.json")).expect("timeline"),
    )
    .expect("JSON array");
    let done: chrono::DateTime<chrono::Utc> = timeline
        .iter()
        .find(|t| t["step"] == "add-signer-alias")
        .and_then(|t| t["completed_at"].as_str())
        .and_then(|t| t.parse().ok())
        .expect("add-signer-alias in the timeline");

    let mails: Vec<String> = std::fs::read_dir(data.join("outbox"))
        .expect("outbox")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("readable .eml"))
        .collect();
    let due = mails
        .iter()
        .find(|m| {
            m.contains("To: admin@dual-signature.receiver.example")
                && m.contains("Subject: [rekey] Your step is due: Exchange the certificate")
        })
        .expect("the receiver administrator's step mail");
    let der = eml_attachment(due, "test-message.p7m").expect("test message attached");
    let times = openssl_signing_times(dir.path(), &der);
    assert_eq!(times.len(), 2, "old and new signature");
    assert!(
        times.iter().all(|t| *t == done),
        "signingTime {times:?}, add-signer-alias done at {done}"
    );
}
