//! `rekey serve`'s HTTP limits, as a process with short `[server]` limits set through
//! `REKEY_SERVER_*`: a client trickling its headers is disconnected after the header timeout, a
//! body trickling past the request timeout is answered 408, a body over the limit 413 (declared
//! or chunked), rapid attempts on an emailed link and on the API with one token 429 with
//! `Retry-After` — each as the API's JSON error — and ordinary requests are unaffected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{self, Answer, request};
use serde_json::Value;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ADMIN: &str = "admin@acme.example";

fn rekey(data: &Path) -> Command {
    let mut c = common::rekey();
    c.arg("--data-dir").arg(data);
    c
}

fn ok(data: &Path, args: &[&str]) -> Res<String> {
    let o = rekey(data).args(args).output()?;
    if !o.status.success() {
        return Err(format!("rekey {args:?}: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(String::from_utf8(o.stdout)?)
}

/// The `error` of a JSON error body.
fn error_of(a: &Answer) -> Res<String> {
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        a.headers
    );
    // The body may be chunked: take the JSON object inside.
    let start = a.body.find('{').ok_or("no JSON")?;
    let end = a.body.rfind('}').ok_or("no JSON")?;
    let v: Value = serde_json::from_str(&a.body[start..=end])?;
    Ok(v["error"].as_str().ok_or("no error")?.to_string())
}

/// Writes `head` then reads the whole answer until the server closes.
fn raw(addr: &str, head: &str, then: Option<(&[u8], Duration)>) -> Res<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(head.as_bytes())?;
    if let Some((bytes, pause)) = then {
        std::thread::sleep(pause);
        let _ = s.write_all(bytes);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn slow_clients_big_bodies_and_rapid_attempts_are_refused_and_normal_use_is_not() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    ok(&data, &["init"])?;
    ok(&data, &["tenant", "add", "acme"])?;
    ok(
        &data,
        &["user", "add", "--email", ADMIN, "--role", "tenant_admin"],
    )?;
    let bearer = ok(&data, &["user", "token", "--email", ADMIN])?
        .trim()
        .to_string();
    let auth = format!("Bearer {bearer}");

    let mut cmd = rekey(&data);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-mail"])
        .env("REKEY_SERVER_HEADER_TIMEOUT_SECS", "1")
        .env("REKEY_SERVER_REQUEST_TIMEOUT_SECS", "2")
        .env("REKEY_SERVER_MAX_BODY_BYTES", "2048")
        .env("REKEY_SERVER_API_REQUESTS_PER_MINUTE", "8")
        .env("REKEY_SERVER_LINK_REQUESTS_PER_MINUTE", "3");
    let served = serve::start(cmd)?;
    let addr = served.addr.clone();
    let result = (|| -> Res<()> {
        // Normal use: the API with a token, health, a link page.
        for _ in 0..3 {
            let a = request(
                &addr,
                "GET",
                "/api/tasks",
                &[("Authorization", &auth)],
                None,
            )?;
            assert_eq!(a.status, 200, "{}", a.body);
        }
        for _ in 0..20 {
            assert_eq!(request(&addr, "GET", "/healthz", &[], None)?.status, 200);
        }

        // A client trickling its headers is disconnected after the header timeout (1 s).
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())?;
        let mut writer = s.try_clone()?;
        let started = Instant::now();
        let trickle = std::thread::spawn(move || {
            for i in 0..40 {
                std::thread::sleep(Duration::from_millis(250));
                if writer
                    .write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(800) && held < Duration::from_secs(5),
            "held {held:?}"
        );
        let answer = String::from_utf8_lossy(&buf);
        assert!(!answer.contains(" 200 "), "{answer}");
        let _ = trickle.join();

        // A body sent slower than the request timeout (2 s): 408 as JSON.
        let head = format!(
            "POST /api/renewals HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{"
        );
        let started = Instant::now();
        let text = raw(&addr, &head, Some((b"\"a\":", Duration::from_secs(4))))?;
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            text.contains("\"error\":\"the request was not done within 2 s\""),
            "{text}"
        );

        // A declared body over the limit: 413 as JSON, before it is read.
        let big = "x".repeat(4096);
        let a = request(
            &addr,
            "POST",
            "/api/renewals",
            &[("Authorization", &auth)],
            Some(&big),
        )?;
        assert_eq!(a.status, 413, "{}", a.body);
        assert_eq!(error_of(&a)?, "request body larger than 2048 bytes");
        // A chunked one, found over the limit while read: the same answer.
        let chunk = "y".repeat(3000);
        let head = format!(
            "POST /api/renewals HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             {:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        let text = raw(&addr, &head, None)?;
        assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
        assert!(
            text.contains("request body larger than 2048 bytes"),
            "{text}"
        );

        // Rapid attempts on a link: three a minute, the fourth is refused for 20 s.
        for i in 0..3 {
            let a = request(&addr, "GET", "/tasks/not-a-real-link", &[], None)?;
            assert_ne!(a.status, 429, "attempt {i}");
        }
        let a = request(&addr, "GET", "/tasks/not-a-real-link", &[], None)?;
        assert_eq!(a.status, 429, "{}", a.body);
        let after: u64 = a.header("retry-after").ok_or("Retry-After")?.parse()?;
        assert!((1..=20).contains(&after), "{after}");
        assert!(error_of(&a)?.contains("too many requests"), "{}", a.body);
        // Another link from the same address: its address has used its attempts too.
        let a = request(&addr, "POST", "/tasks/another-link", &[], Some("x=1"))?;
        assert_eq!(a.status, 429, "{}", a.body);

        // The API with one token: eight a minute (three used above, one by the 408, two by
        // the 413s); the ninth is refused, the rest of the server is not.
        let mut refused = None;
        for i in 0..10 {
            let a = request(
                &addr,
                "GET",
                "/api/tasks",
                &[("Authorization", &auth)],
                None,
            )?;
            if a.status == 429 {
                refused = Some((i, a));
                break;
            }
            assert_eq!(a.status, 200, "{}", a.body);
        }
        let (i, a) = refused.ok_or("the API never answered 429")?;
        assert!(i >= 1, "refused after {i}");
        assert!(a.header("retry-after").is_some(), "{:?}", a.headers);
        assert!(error_of(&a)?.contains("too many requests to the API"));
        assert_eq!(request(&addr, "GET", "/healthz", &[], None)?.status, 200);
        Ok(())
    })();
    let (status, log) = served.stop()?;
    result?;
    assert!(status.success(), "{log:?}");
    Ok(())
}

#[test]
fn a_bad_limit_is_refused_naming_its_key() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    ok(&data, &["init"])?;
    for (var, key) in [
        ("REKEY_SERVER_HEADER_TIMEOUT_SECS", "header_timeout_secs"),
        ("REKEY_SERVER_REQUEST_TIMEOUT_SECS", "request_timeout_secs"),
        ("REKEY_SERVER_MAX_BODY_BYTES", "max_body_bytes"),
    ] {
        let o = rekey(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(var, "0")
            .output()?;
        assert!(!o.status.success(), "{var}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("[server] {key} = 0")) && err.contains(var),
            "{err}"
        );
    }
    Ok(())
}
