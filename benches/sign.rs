//! `POST /api/sign` throughput through the real `rekey serve`: RSA-3072 signatures per second
//! with 1, 2, 4 and 8 concurrent clients, beside `openssl speed rsa3072` (one process, and
//! `-multi 2`) measured in the same run, and beside rekey's own CMS signing in this process
//! (the RSA operation without HTTP, database or JSON).
//!
//! A fresh data directory (SQLite) is made with the CLI as a user would: tenant `acme`, an
//! RSA-3072 key under alias `A`, flow `F` whose signer step `S` lists it, a service user holding
//! `signer` of `F` and their API token; `[server] api_requests_per_minute` is raised in the data
//! directory's `rekey.toml` so that the rate limit is not what is measured. Each client is a
//! thread with one keep-alive HTTP/1.1 connection, posting a 1 KiB payload (Base64 in the JSON
//! body) and asking for DER; every answer must be 200. One SignedData per client count is
//! checked with `openssl cms -verify` against the exported certificate. The server's CPU use is
//! its utime + stime from `/proc/<pid>/stat` over the interval, divided by the wall time; the
//! clients' (this process) likewise.
//!
//! `cargo bench --bench sign` (harness = false). `REKEY_BENCH_SECONDS` (default 10) is how long
//! each client count runs.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::BoxError;
use common::serve::{self, post_json};
use rekey_crypto::{DigestAlg, KeyBits, KeyPair, SignOptions, SignerSpec};

const ADMIN: &str = "admin@acme.example";
const SIGNER: &str = "erp-signer@acme.example";
/// Bytes of content per signature.
const PAYLOAD_LEN: usize = 1024;
/// Seconds each `openssl speed` run takes.
const OPENSSL_SECONDS: &str = "3";

/// Runs `args` on data directory `data` ([`common::try_in`]).
fn ok(data: &Path, args: &[&str]) -> Result<String, BoxError> {
    common::try_in(data, args)
}

/// Sets up `data` through the CLI; returns the signer's API token. Writes the certificate of
/// alias `A` to `cert`.
fn set_up(data: &Path, cert: &Path) -> Result<String, BoxError> {
    let acme = |args: &[&str]| -> Result<String, BoxError> {
        let mut v = args.to_vec();
        v.extend(["--tenant", "acme"]);
        ok(data, &v)
    };
    let setup = common::Acme {
        admin: ADMIN,
        bits: "3072",
        receiver: None,
        ..common::Acme::default()
    };
    for args in setup.commands() {
        ok(data, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    std::fs::write(cert, acme(&["keystore", "export-cert", "--alias", "A"])?)?;
    acme(&[
        "user", "add", "--email", SIGNER, "--role", "signer", "--flow", "F",
    ])?;
    let token = ok(data, &["user", "token", "--email", SIGNER, "--days", "1"])?
        .trim()
        .to_string();

    // The default 600 requests a minute per token and per address would be the bottleneck.
    let config = data.join("rekey.toml");
    let text = std::fs::read_to_string(&config)?;
    let mut found = false;
    let mut out = String::new();
    for line in text.lines() {
        if line
            .trim_start_matches(['#', ' '])
            .starts_with("api_requests_per_minute")
        {
            out.push_str("api_requests_per_minute = 1000000\n");
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        return Err("no api_requests_per_minute line in rekey.toml".into());
    }
    std::fs::write(&config, out)?;
    Ok(token)
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn, BoxError> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            addr: addr.to_string(),
            reader: BufReader::new(s),
        })
    }

    /// `POST path` with a JSON body; the status and the body.
    fn post(&mut self, path: &str, token: &str, body: &[u8]) -> Result<(u16, Vec<u8>), BoxError> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("status line {line:?}"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err("connection closed in the headers".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                match k.as_str() {
                    "content-length" => length = Some(v.parse::<usize>()?),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => close = v.contains("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length.ok_or("no Content-Length")?, 0);
            self.reader.read_exact(&mut body)?;
        }
        if close {
            *self = Conn::open(&self.addr)?;
        }
        Ok((status, body))
    }
}

/// utime + stime of process `pid` (`self` for this one), in seconds.
fn cpu_seconds(pid: &str, tick: f64) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are fixed.
    let rest = stat.rsplit_once(')').ok_or("/proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).ok_or("utime")?.parse()?;
    let stime: f64 = f.get(12).ok_or("stime")?.parse()?;
    Ok((utime + stime) / tick)
}

/// Busy and steal seconds of the whole machine (all cores) from `/proc/stat`.
fn machine_seconds(tick: f64) -> Result<(f64, f64), BoxError> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("no cpu line in /proc/stat")?;
    let f = line
        .split_whitespace()
        .skip(1)
        .map(str::parse::<f64>)
        .collect::<Result<Vec<_>, _>>()?;
    // user nice system idle iowait irq softirq steal ...
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    Ok((busy / tick, at(7) / tick))
}

/// The first three fields of `/proc/loadavg`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// What one client count measured.
struct Run {
    label: String,
    signatures: usize,
    per_second: f64,
    p50: f64,
    p99: f64,
    server_cores: f64,
    client_cores: f64,
    other_cores: f64,
    steal_cores: f64,
}

/// One client's latencies and the last SignedData it received.
type ClientResult = Result<(Vec<Duration>, Vec<u8>), BoxError>;

/// The running server and what every request sends it.
struct Target<'a> {
    addr: &'a str,
    token: &'a str,
    body: &'a [u8],
    pid: u32,
}

/// `clients` threads posting the body for `secs`; one connection each (`keep_alive`) or one
/// per request. The last SignedData is written to `last`.
fn drive(
    target: &Target<'_>,
    clients: usize,
    keep_alive: bool,
    secs: f64,
    last: &Path,
) -> Result<Run, BoxError> {
    let Target {
        addr,
        token,
        body,
        pid,
    } = *target;
    let tick = clock_tick();
    let pid = pid.to_string();
    let failed = AtomicBool::new(false);
    let (s0, c0) = (cpu_seconds(&pid, tick)?, cpu_seconds("self", tick)?);
    let (m0, st0) = machine_seconds(tick)?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let results: Vec<ClientResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let failed = &failed;
                s.spawn(move || -> ClientResult {
                    let mut conn = if keep_alive {
                        Some(Conn::open(addr)?)
                    } else {
                        None
                    };
                    let mut lat = Vec::new();
                    let mut last = Vec::new();
                    while Instant::now() < until && !failed.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let (status, answer) = match conn.as_mut() {
                            Some(c) => c.post("/api/sign", token, body)?,
                            None => {
                                let a = post_json(addr, "/api/sign", token, body)?;
                                (a.status, a.body)
                            }
                        };
                        lat.push(t.elapsed());
                        if status != 200 {
                            failed.store(true, Ordering::Relaxed);
                            return Err(format!(
                                "POST /api/sign answered {status}: {}",
                                String::from_utf8_lossy(&answer)
                            )
                            .into());
                        }
                        last = answer;
                    }
                    Ok((lat, last))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a client panicked".into())))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let (s1, c1) = (cpu_seconds(&pid, tick)?, cpu_seconds("self", tick)?);
    let (m1, st1) = machine_seconds(tick)?;
    let mut lat = Vec::new();
    let mut answer = Vec::new();
    for r in results {
        let (l, a) = r?;
        lat.extend(l);
        if !a.is_empty() {
            answer = a;
        }
    }
    if lat.is_empty() {
        return Err("no signature in the interval".into());
    }
    std::fs::write(last, answer)?;
    lat.sort();
    Ok(Run {
        label: format!(
            "{clients}{}",
            if keep_alive {
                ""
            } else {
                " (new connection per request)"
            }
        ),
        signatures: lat.len(),
        per_second: lat.len() as f64 / wall,
        p50: quantile(&lat, 0.5),
        p99: quantile(&lat, 0.99),
        server_cores: (s1 - s0) / wall,
        client_cores: (c1 - c0) / wall,
        other_cores: ((m1 - m0) - (s1 - s0) - (c1 - c0)).max(0.0) / wall,
        steal_cores: (st1 - st0) / wall,
    })
}

/// `openssl cms -verify` of the DER SignedData `p7m` under `cert`; its content must be `payload`.
fn verify(p7m: &Path, cert: &Path, out: &Path, payload: &[u8]) -> Result<(), BoxError> {
    let o = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(p7m)
        .arg("-CAfile")
        .arg(cert)
        .arg("-out")
        .arg(out)
        .output()?;
    if !o.status.success() {
        return Err(format!(
            "openssl cms -verify refused the SignedData: {}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    if std::fs::read(out)? != payload {
        return Err("the verified content is not the payload".into());
    }
    Ok(())
}

/// RSA-3072 signatures per second `openssl speed` reports (summed over processes with
/// `-multi`).
fn openssl_speed(multi: Option<&str>) -> Result<f64, BoxError> {
    let mut cmd = Command::new("openssl");
    cmd.arg("speed");
    if let Some(n) = multi {
        cmd.args(["-multi", n]);
    }
    let o = cmd
        .args(["-seconds", OPENSSL_SECONDS, "rsa3072"])
        .output()?;
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        return Err(format!("openssl speed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    // The column headed `sign/s` of the line `rsa 3072 bits ...`.
    let header = text
        .lines()
        .rfind(|l| l.contains("sign/s"))
        .ok_or("no sign/s header in openssl speed's output")?;
    let column = header
        .split_whitespace()
        .position(|w| w == "sign/s")
        .ok_or("sign/s column")?;
    let row = text
        .lines()
        .rfind(|l| l.trim_start().starts_with("rsa") && l.contains("3072 bits"))
        .ok_or("no rsa 3072 line in openssl speed's output")?;
    let values = row.split_once("bits").ok_or("rsa line")?.1;
    Ok(values
        .split_whitespace()
        .nth(column)
        .ok_or("sign/s value")?
        .parse()?)
}

/// rekey's CMS signing in this process, no HTTP, database or JSON: one RSA-3072 signer with its
/// certificate and signingTime over the payload, as the step signs; signatures per second with
/// `threads` threads for `secs`, and this process's CPU milliseconds per signature.
fn in_process(
    key: &KeyPair,
    cert: &rekey_crypto::Certificate,
    payload: &[u8],
    threads: usize,
    secs: f64,
) -> Result<(f64, f64), BoxError> {
    let chain = std::slice::from_ref(cert);
    let tick = clock_tick();
    let c0 = cpu_seconds("self", tick)?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let counts: Vec<Result<usize, BoxError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || -> Result<usize, BoxError> {
                    let mut n = 0;
                    while Instant::now() < until {
                        let spec = SignerSpec {
                            key,
                            chain,
                            digest: DigestAlg::Sha256,
                            include_certs: true,
                            include_signing_time: true,
                        };
                        let opts = SignOptions {
                            detached: false,
                            signing_time: chrono::Utc::now(),
                        };
                        rekey_crypto::sign(payload, &[spec], &opts)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a signing thread panicked".into()))
            })
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self", tick)? - c0;
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    let total = total.max(1) as f64;
    Ok((total / wall, cpu * 1e3 / total))
}

/// Median milliseconds to read an RSA-3072 PKCS#8 key (what the server does per request, after
/// decrypting the keystore entry).
fn key_parse_ms(key: &KeyPair) -> Result<f64, BoxError> {
    let der = key.to_pkcs8_der()?;
    let mut t = Vec::new();
    for _ in 0..51 {
        let s = Instant::now();
        KeyPair::from_pkcs8_der(&der)?;
        t.push(s.elapsed());
    }
    t.sort();
    Ok(quantile(&t, 0.5))
}

fn main() -> Result<(), BoxError> {
    let secs: f64 = std::env::var("REKEY_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0_f64)
        .max(1.0);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cert = dir.path().join("A.pem");
    let token = set_up(&data, &cert)?;
    let payload: Vec<u8> = (0..PAYLOAD_LEN)
        .map(|i| b"0123456789abcdef"[i % 16])
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "flow": "F",
        "step": "S",
        "payload": STANDARD.encode(&payload),
        "encoding": "der",
    }))?;

    let load_before = loadavg();
    let openssl_one_before = openssl_speed(None)?;
    let openssl_two_before = openssl_speed(Some("2"))?;

    let mut cmd = common::rekey();
    cmd.arg("--data-dir").arg(&data).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-scheduler",
        "--no-mail",
    ]);
    let server = serve::start(cmd)?;
    let last = dir.path().join("last.p7m");
    let out = dir.path().join("verified.out");
    let target = Target {
        addr: &server.addr,
        token: &token,
        body: &body,
        pid: server.pid(),
    };
    // Warm-up: connections, the SQLite page cache, the blocking pool's threads.
    drive(&target, 2, true, 2.0, &last)?;
    verify(&last, &cert, &out, &payload)?;
    let mut runs = Vec::new();
    for (clients, keep_alive) in [(1, true), (2, true), (4, true), (8, true), (2, false)] {
        let run = drive(&target, clients, keep_alive, secs, &last)?;
        verify(&last, &cert, &out, &payload)?;
        runs.push(run);
    }
    let (status, log) = server.stop()?;
    if !status.success() {
        return Err(format!("rekey serve: {status}: {log:?}").into());
    }

    // The same signature without the server: RSA and CMS in this process.
    let key = KeyPair::generate(KeyBits::B3072)?;
    let own = rekey_crypto::self_signed(&key, "CN=bench,O=Acme", chrono::Utc::now(), 1)?;
    let parse_ms = key_parse_ms(&key)?;
    let inproc_one = in_process(&key, &own, &payload, 1, secs / 2.0)?;
    let inproc_two = in_process(&key, &own, &payload, 2, secs / 2.0)?;

    let openssl_one_after = openssl_speed(None)?;
    let openssl_two_after = openssl_speed(Some("2"))?;
    let one = (openssl_one_before + openssl_one_after) / 2.0;
    let two = (openssl_two_before + openssl_two_after) / 2.0;

    println!(
        "load average (/proc/loadavg) at the start: {load_before}; at the end: {}",
        loadavg()
    );
    println!(
        "`openssl speed -seconds {OPENSSL_SECONDS} rsa3072`: {openssl_one_before:.0}/s before, \
         {openssl_one_after:.0}/s after (mean {one:.0}/s); with `-multi 2`: \
         {openssl_two_before:.0}/s before, {openssl_two_after:.0}/s after (mean {two:.0}/s)"
    );
    println!();
    println!(
        "| clients | signatures | signatures/s | p50 ms | p99 ms | ÷ `openssl speed` | \
         ÷ `openssl speed -multi 2` | server CPU (cores) | server CPU ms per signature | \
         clients' CPU (cores) | other processes' CPU (cores) | steal (cores) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2}× | {:.2}× | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.label,
            r.signatures,
            r.per_second,
            r.p50,
            r.p99,
            r.per_second / one,
            r.per_second / two,
            r.server_cores,
            r.server_cores * 1e3 / r.per_second,
            r.client_cores,
            r.other_cores,
            r.steal_cores,
        );
    }
    println!();
    println!(
        "| rekey's CMS signing in this process (no HTTP, database, JSON) | signatures/s | \
         CPU ms per signature | ÷ `openssl speed` | ÷ `openssl speed -multi 2` |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (what, (v, ms)) in [("1 thread", inproc_one), ("2 threads", inproc_two)] {
        println!(
            "| {what} | {v:.0} | {ms:.2} | {:.2}× | {:.2}× |",
            v / one,
            v / two
        );
    }
    println!();
    println!("Reading an RSA-3072 PKCS#8 key (done per request): {parse_ms:.2} ms (median of 51)");
    Ok(())
}
