//! `rekey serve` as a process: on the database `rekey demo` leaves behind it answers
//! `/healthz` and `/metrics`, its mail dispatcher delivers the queued mail (as `.eml` files),
//! and SIGTERM stops it cleanly (exit 0) after the current passes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn rekey(data: &Path) -> Command {
    let mut c = common::rekey();
    c.arg("--data-dir").arg(data);
    c
}

/// `GET path` on `addr`: (status line, body).
fn get(addr: &str, path: &str) -> Res<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

#[test]
fn serve_answers_delivers_mail_and_stops_on_sigterm() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let demo = rekey(&data)
        .args(["demo", "--procedure", "dual-trust"])
        .output()?;
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let mut child = rekey(&data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mail-interval",
            "1",
            "--scheduler-interval",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(Duration::from_secs(60))?;
        log.push(line.clone());
        if let Some(rest) = line.strip_prefix("rekey serve: listening on http://") {
            break rest.split_whitespace().next().ok_or("address")?.to_string();
        }
    };
    // No base_url configured: links follow the address actually bound.
    assert!(
        log.last()
            .is_some_and(|l| l.ends_with(&format!("(links use http://{addr})"))),
        "{log:?}"
    );
    let result = (|| -> Res<()> {
        let (status, body) = get(&addr, "/healthz")?;
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(body, "ok\n");
        let (status, body) = get(&addr, "/metrics")?;
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            body.contains("rekey_renewals{state=\"completed\",procedure=\"dual-trust\"} 1"),
            "{body}"
        );
        let (status, _) = get(&addr, "/openapi.json")?;
        assert!(status.contains(" 200 "), "{status}");
        // The dispatcher delivers what the demo queued.
        let outbox = data.join("outbox");
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let n = std::fs::read_dir(&outbox)
                .map(|d| d.count())
                .unwrap_or_default();
            if n > 0 {
                break;
            }
            assert!(
                Instant::now() < until,
                "no mail delivered to {}",
                outbox.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (_, body) = get(&addr, "/metrics")?;
        assert!(
            body.lines()
                .any(|l| l.starts_with("rekey_outbox_messages{status=\"sent\"} ")
                    && !l.ends_with(" 0")),
            "{body}"
        );
        Ok(())
    })();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(kill.success());
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            return Err("rekey serve did not stop within 30 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
        log.push(line);
    }
    result?;
    assert!(status.success(), "exit {status:?}: {log:?}");
    assert!(log.iter().any(|l| l == "rekey serve: stopped"), "{log:?}");
    Ok(())
}
