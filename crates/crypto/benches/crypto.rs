//! `cargo bench -p rekey-crypto`: key generation, CMS signing and verification, next to the same
//! work done by OpenSSL in the same run, with the ratios. Medians over N runs; this is a
//! measurement to read, not a test that can fail on a slow machine.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rekey_crypto::{
    CertSource, Certificate, DigestAlg, KeyBits, KeyPair, SignOptions, SignerSpec, self_signed,
    sign, verify,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_n(n: usize, mut f: impl FnMut()) -> Duration {
    // One warm-up run, then n timed runs.
    f();
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

struct Row {
    what: String,
    n: usize,
    rekey: Duration,
    openssl: Option<(Duration, &'static str)>,
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Median wall time of running `openssl args…` as a process.
fn openssl_process(n: usize, args: &[&str]) -> Duration {
    time_n(n, || {
        let o = Command::new("openssl")
            .args(args)
            .output()
            .expect("runs openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    })
}

/// `openssl speed` per-operation times: (bits, sign, verify).
fn openssl_speed() -> Vec<(u32, Duration, Duration)> {
    let o = Command::new("openssl")
        .args(["speed", "-seconds", "2", "rsa2048", "rsa3072"])
        .output()
        .expect("runs openssl speed");
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .filter_map(|l| {
            // "rsa 2048 bits 0.000220s 0.000013s   4550.0  75000.0"
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 5 && f[0] == "rsa" && f[2] == "bits" {
                let bits = f[1].parse().ok()?;
                let s = f[3].trim_end_matches('s').parse::<f64>().ok()?;
                let v = f[4].trim_end_matches('s').parse::<f64>().ok()?;
                Some((bits, Duration::from_secs_f64(s), Duration::from_secs_f64(v)))
            } else {
                None
            }
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported, everything runs.
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = |n: usize| if quick { (n / 5).max(3) } else { n };
    let have_openssl = openssl_available();
    let dir = std::env::temp_dir().join(format!("rekey-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = |name: &str| dir.join(name).display().to_string();

    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let k1 = KeyPair::from_pem(&fixture("key1.pem")).expect("key1");
    let k2 = KeyPair::from_pem(&fixture("key2.pem")).expect("key2");
    let c1 = self_signed(&k1, "CN=bench one", start, 3650).expect("cert");
    let c2 = self_signed(&k2, "CN=bench two", start, 3650).expect("cert");
    let payload: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    for (name, text) in [
        ("k1.pem", fixture("key1.pem")),
        ("k2.pem", fixture("key2.pem")),
        ("c1.pem", c1.to_pem()),
        ("c2.pem", c2.to_pem()),
        ("cas.pem", c1.to_pem() + &c2.to_pem()),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    std::fs::write(dir.join("payload.bin"), &payload).expect("write");

    let mut rows = Vec::new();

    // Key generation (rsa's prime search has a wide spread: read the median with care).
    for (bits, n) in [(KeyBits::B2048, scale(15)), (KeyBits::B3072, scale(7))] {
        let rekey = time_n(n, || {
            black_box(KeyPair::generate(bits).expect("keygen"));
        });
        let openssl = have_openssl.then(|| {
            let b = format!("rsa_keygen_bits:{}", bits.bits());
            (
                openssl_process(
                    n,
                    &[
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        &b,
                        "-out",
                        &path("gen.pem"),
                    ],
                ),
                "openssl genpkey, per process",
            )
        });
        rows.push(Row {
            what: format!("keygen RSA-{}", bits.bits()),
            n,
            rekey,
            openssl,
        });
    }

    // CMS signing, 1 KiB, RSA-2048, SHA-256, certificates and signingTime included.
    let chain1 = [c1.clone()];
    let chain2 = [c2.clone()];
    let spec = |key, chain| SignerSpec {
        key,
        chain,
        digest: DigestAlg::Sha256,
        include_certs: true,
        include_signing_time: true,
    };
    let one = [spec(&k1, &chain1[..])];
    let two = [spec(&k1, &chain1[..]), spec(&k2, &chain2[..])];
    let opts = SignOptions {
        detached: false,
        signing_time: Utc::now(),
    };
    let n_sign = scale(100);
    let n_proc = scale(30);
    for (label, signers, extra) in [
        ("CMS sign, 1 signer, 1 KiB", &one[..], &[][..]),
        (
            "CMS sign, 2 signers, 1 KiB",
            &two[..],
            &["-signer", "c2.pem", "-inkey", "k2.pem"][..],
        ),
    ] {
        let rekey = time_n(n_sign, || {
            black_box(sign(&payload, signers, &opts).expect("signs"));
        });
        let openssl = have_openssl.then(|| {
            let mut args = vec![
                "cms".to_string(),
                "-sign".into(),
                "-binary".into(),
                "-nodetach".into(),
                "-outform".into(),
                "DER".into(),
                "-in".into(),
                path("payload.bin"),
                "-signer".into(),
                path("c1.pem"),
                "-inkey".into(),
                path("k1.pem"),
                "-out".into(),
                path(&format!("signed-{}.der", signers.len())),
            ];
            for pair in extra.chunks(2) {
                args.push(pair[0].to_string());
                args.push(path(pair[1]));
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            (
                openssl_process(n_proc, &refs),
                "openssl cms -sign, per process",
            )
        });
        rows.push(Row {
            what: label.to_string(),
            n: n_sign,
            rekey,
            openssl,
        });
    }

    // Verification of the 2-signer message (both signers checked).
    let der = sign(&payload, &two, &opts).expect("signs");
    let trusted = [c1.clone(), c2.clone()];
    let n_verify = scale(300);
    let rekey = time_n(n_verify, || {
        let v = verify(&der, None, &trusted, CertSource::SuppliedOnly).expect("verifies");
        assert!(v.signers.iter().all(|s| s.is_valid()));
        black_box(v);
    });
    let openssl = have_openssl.then(|| {
        (
            openssl_process(
                n_proc,
                &[
                    "cms",
                    "-verify",
                    "-binary",
                    "-inform",
                    "DER",
                    "-in",
                    &path("signed-2.der"),
                    "-CAfile",
                    &path("cas.pem"),
                    "-out",
                    &path("verified.bin"),
                ],
            ),
            "openssl cms -verify, per process",
        )
    });
    rows.push(Row {
        what: "CMS verify, 2 signers, 1 KiB".into(),
        n: n_verify,
        rekey,
        openssl,
    });

    // Process start-up, to read the per-process figures against.
    let startup = have_openssl.then(|| openssl_process(n_proc, &["version"]));

    println!();
    println!(
        "{:<32} {:>5} {:>12} {:>12} {:>9}  OpenSSL measured as",
        "what", "N", "rekey ms", "OpenSSL ms", "ratio"
    );
    for r in &rows {
        match r.openssl {
            Some((o, how)) => println!(
                "{:<32} {:>5} {:>12.3} {:>12.3} {:>8.2}x  {how}",
                r.what,
                r.n,
                ms(r.rekey),
                ms(o),
                r.rekey.as_secs_f64() / o.as_secs_f64()
            ),
            None => println!(
                "{:<32} {:>5} {:>12.3} {:>12} {:>9}",
                r.what,
                r.n,
                ms(r.rekey),
                "-",
                "-"
            ),
        }
    }
    if let Some(s) = startup {
        println!(
            "{:<32} {:>5} {:>12} {:>12.3} {:>9}  openssl version (process start-up alone)",
            "process start-up",
            n_proc,
            "-",
            ms(s),
            "-"
        );
    }

    // The RSA operations themselves, against `openssl speed` (no process overhead).
    if have_openssl {
        println!();
        println!("RSA private-key operation (sign) vs `openssl speed -seconds 2 rsa2048 rsa3072`:");
        let k3 = KeyPair::from_pem(&fixture("key3072.pem")).expect("key3072");
        let c3 = self_signed(&k3, "CN=bench 3072", start, 3650).expect("cert");
        let chain3 = [c3];
        let speed = openssl_speed();
        for (bits, key, chain) in [(2048u32, &k1, &chain1[..]), (3072, &k3, &chain3[..])] {
            // A signer without attributes' extra work is not available through the API; a CMS
            // signature over 1 KiB is one RSA private-key operation plus microseconds of DER.
            let s = [SignerSpec {
                key,
                chain,
                digest: DigestAlg::Sha256,
                include_certs: false,
                include_signing_time: false,
            }];
            let rekey_sign = time_n(n_sign, || {
                black_box(sign(&payload, &s, &opts).expect("signs"));
            });
            let signed = sign(&payload, &s, &opts).expect("signs");
            let certs: Vec<Certificate> = chain.to_vec();
            let rekey_verify = time_n(n_verify, || {
                black_box(verify(&signed, None, &certs, CertSource::SuppliedOnly).expect("ok"));
            });
            if let Some((_, os, ov)) = speed.iter().find(|(b, _, _)| *b == bits) {
                println!(
                    "  RSA-{bits}: sign {:.3} ms vs {:.3} ms ({:.1}x, {:.0}/s vs {:.0}/s); verify {:.3} ms vs {:.3} ms ({:.1}x)",
                    ms(rekey_sign),
                    ms(*os),
                    rekey_sign.as_secs_f64() / os.as_secs_f64(),
                    1.0 / rekey_sign.as_secs_f64(),
                    1.0 / os.as_secs_f64(),
                    ms(rekey_verify),
                    ms(*ov),
                    rekey_verify.as_secs_f64() / ov.as_secs_f64(),
                );
            }
        }
    } else {
        println!("\nopenssl not found (Debian package `openssl`): no comparison figures.");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
