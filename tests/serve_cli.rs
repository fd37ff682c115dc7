//! `rekey serve` as a process: on the database `rekey demo` leaves behind it answers
//! `/healthz` and `/metrics`, its mail dispatcher delivers the queued mail (as `.eml` files),
//! and SIGTERM stops it cleanly (exit 0) after the current passes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{self, request};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn rekey(data: &Path) -> Command {
    let mut c = common::rekey();
    c.arg("--data-dir").arg(data);
    c
}

/// `GET path` on `addr`: (status line, body).
fn get(addr: &str, path: &str) -> Res<(String, String)> {
    let a = request(addr, "GET", path, &[], None)?;
    Ok((a.status_line, a.body))
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
    let mut cmd = rekey(&data);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mail-interval",
        "1",
        "--scheduler-interval",
        "1",
    ]);
    let served = serve::start(cmd)?;
    let addr = served.addr.clone();
    // No base_url configured: links follow the address actually bound.
    assert_eq!(
        served.log.last(),
        Some(&format!(
            "rekey serve: listening on http://{addr} (links use http://{addr})"
        )),
        "{:?}",
        served.log
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
    let (status, log) = served.stop()?;
    result?;
    assert!(status.success(), "exit {status:?}: {log:?}");
    assert!(log.iter().any(|l| l == "rekey serve: stopped"), "{log:?}");
    Ok(())
}

/// `rekey serve` runs the expiry watch itself every `[server] watch_interval_secs`: a key
/// expiring in 10 days is past its latest safe start, and the tenant administrator's mail
/// arrives without anyone running `rekey watch`.
#[test]
fn serve_runs_the_expiry_watch_on_its_interval() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "10");
    let mut cmd = rekey(&data);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--mail-interval", "1"])
        .env("REKEY_SERVER_WATCH_INTERVAL_SECS", "1");
    let served = serve::start(cmd)?;
    let outbox = data.join("outbox");
    let until = Instant::now() + Duration::from_secs(60);
    let mail = loop {
        let found = std::fs::read_dir(&outbox)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|m| m.contains("Subject: [rekey] Start renewing A"));
        if let Some(m) = found {
            break Some(m);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, log) = served.stop()?;
    let mail = mail.ok_or_else(|| format!("no expiry mail: {log:?}"))?;
    assert!(mail.contains("To: admin@acme.example"), "{mail}");
    assert!(status.success(), "{log:?}");
    // Told once, however many passes ran.
    let n = std::fs::read_dir(&outbox)?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|m| m.contains("Subject: [rekey] Start renewing A"))
        .count();
    assert_eq!(n, 1);
    Ok(())
}

/// With `[server] watch_interval_secs = 0` serve leaves the watch to `rekey watch`; a bad
/// policy or lease is refused naming its key.
#[test]
fn serve_watch_and_lease_settings_are_checked() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let init = rekey(&data).arg("init").output()?;
    assert!(init.status.success());
    for (var, value, needle) in [
        (
            "REKEY_SERVER_WATCH_POLICY",
            "maybe",
            "[server] watch_policy = \"maybe\"",
        ),
        ("REKEY_SERVER_LEASE_SECS", "1", "[server] lease_secs = 1"),
    ] {
        let o = rekey(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(var, value)
            .output()?;
        assert!(!o.status.success(), "{var}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle) && err.contains(var), "{err}");
    }
    Ok(())
}
