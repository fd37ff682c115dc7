//! `cargo bench -p rekey-pkcs11 --bench token`: RSA signatures per second on a SoftHSM2 token,
//! beside the embedded signer (rekey's own `KeyPair`) and `openssl speed`, measured in the same
//! run, with the ratios to OpenSSL. Medians over N timed signatures after a warm-up; a
//! measurement to read, not a test that can fail on a slow machine.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when it is first loaded, so the benchmark runs itself again
//! as a child with that variable pointing at a throw-away token directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rekey_crypto::{DigestAlg, KeyBackend, KeyBits, KeyPair, RsaSigner};
use rekey_pkcs11::{PinSource, Pkcs11Config, Pkcs11Keystore, fresh_key_id, init_token};

const DIR_ENV: &str = "REKEY_BENCH_PKCS11_DIR";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of one signature of a 1 KiB message (SHA-256), over `n` after one warm-up.
fn per_signature(n: usize, signer: &dyn RsaSigner) -> Duration {
    let message = vec![0x5a_u8; 1024];
    let sign = || {
        let sig = signer
            .sign_pkcs1v15(DigestAlg::Sha256, &message)
            .expect("sign");
        std::hint::black_box(sig);
    };
    sign();
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                sign();
                t.elapsed()
            })
            .collect(),
    )
}

/// `openssl speed` signatures per second by modulus size.
fn openssl_speed() -> Vec<(usize, f64)> {
    let Ok(o) = Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048", "rsa3072"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            // "rsa 2048 bits 0.000220s 0.000013s   4550.0  75000.0"
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 6 && f[0] == "rsa" && f[2] == "bits" {
                Some((f[1].parse().ok()?, f[5].parse().ok()?))
            } else {
                None
            }
        })
        .collect()
}

fn module() -> PathBuf {
    std::env::var_os("REKEY_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

fn main() {
    let module = module();
    if !module.exists() {
        eprintln!(
            "SKIPPED: PKCS#11 module {} not found; install softhsm2 or set REKEY_TEST_PKCS11_MODULE",
            module.display()
        );
        return;
    }
    let Some(dir) = std::env::var_os(DIR_ENV).map(PathBuf::from) else {
        // Parent: a token directory, then the measurement in a child that loads SoftHSM2 with it.
        let tmp = tempfile::tempdir().expect("tempdir");
        let conf = rekey_pkcs11::softhsm_conf(tmp.path()).expect("softhsm2.conf");
        let status = Command::new(std::env::current_exe().expect("bench binary"))
            .env("SOFTHSM2_CONF", conf)
            .env(DIR_ENV, tmp.path())
            .status()
            .expect("run the benchmark");
        std::process::exit(status.code().unwrap_or(1));
    };

    init_token(&module, "so-bench-1234", "user-bench-1234", "bench").expect("init token");
    let pin = dir.join("bench.pin");
    std::fs::write(&pin, "user-bench-1234").expect("PIN file");
    let store = Pkcs11Keystore::open(&Pkcs11Config {
        module: module.clone(),
        token_label: "bench".into(),
        pin: PinSource::File(pin),
    })
    .expect("open token");
    let speed = openssl_speed();

    println!(
        "RSA PKCS#1 v1.5 signatures (SHA-256, 1 KiB message), one thread; module {}",
        module.display()
    );
    println!();
    println!(
        "| key | N | token (PKCS#11) | embedded (rekey) | `openssl speed` | token ÷ OpenSSL | embedded ÷ OpenSSL |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (bits, n) in [(KeyBits::B2048, 400), (KeyBits::B3072, 150)] {
        let id = fresh_key_id();
        let handle = store
            .generate(bits, &id, "bench")
            .expect("generate on token");
        let token = store.signer(&handle).expect("token signer");
        let embedded = KeyPair::generate(bits).expect("generate embedded");
        let t = per_signature(n, &*token);
        let e = per_signature(n, &embedded);
        let rate = |d: Duration| 1.0 / d.as_secs_f64();
        let openssl = speed
            .iter()
            .find(|(b, _)| *b == bits.bits())
            .map(|(_, r)| *r);
        let (o, rt, re) = match openssl {
            Some(o) => (
                format!("{o:.0}/s"),
                format!("{:.2}×", rate(t) / o),
                format!("{:.2}×", rate(e) / o),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        println!(
            "| RSA-{} | {n} | {:.0}/s ({:.3} ms) | {:.0}/s ({:.3} ms) | {o} | {rt} | {re} |",
            bits.bits(),
            rate(t),
            t.as_secs_f64() * 1e3,
            rate(e),
            e.as_secs_f64() * 1e3,
        );
        drop(token);
        store.destroy(&id).expect("destroy");
    }
    println!();
    println!(
        "Ratios are signatures per second ÷ OpenSSL's: below 1 is slower than `openssl speed`."
    );
}
