//! Two `rekey serve` OS processes on one PostgreSQL database, driven over HTTP through a whole
//! renewal, with a tenant's reminder time of a few seconds and mail going to an SMTP sink that
//! keeps every Message-ID. One instance is killed with SIGKILL midway (its leases on timers and
//! mail simply stop being renewed) and started again later. At the end: one renewal (the retry
//! of the creating call after the kill is answered from its Idempotency-Key), every step done
//! once, reminders kept coming while one instance was dead, and every mail the database holds
//! as sent was delivered exactly once. (A session or link made on one instance and used on the
//! other is `serve_identity.rs`'s.)
//!
//! PostgreSQL only (`REKEY_TEST_POSTGRES_URL`, set by `cargo xtask test`): several instances on
//! one SQLite file are not a deployment rekey supports.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::serve::{self, Answer, Served, json_request};
use common::smtp::{Sink, start_server};
use common::{Acme, Env, PG_ENV};
use serde_json::{Value, json};

const ADMIN: &str = "admin@t.example";
const OPS: &str = "ops@r.example";

/// Tenant `acme` with its administrator, key `A` in flow `F`/`S`, receiver `R` trusting it and
/// its administrator; reminders every 4 seconds for the tenant's steps.
fn setup(env: &Env) {
    env.ok_all(
        &Acme {
            admin: ADMIN,
            subject: "CN=acme",
            receiver: Some((OPS, "--verifies-multiple-keys")),
            ..Acme::default()
        }
        .commands(),
    );
    env.ok(&[
        "user",
        "add",
        "--email",
        OPS,
        "--role",
        "receiver_admin",
        "--receiver",
        "R",
    ]);
    let config = env.data().join("rekey.toml");
    let mut text = std::fs::read_to_string(&config).expect("rekey.toml");
    text.push_str("\n[timing.acme]\nremind = \"4s\"\n");
    std::fs::write(&config, text).expect("write rekey.toml");
}

/// A `rekey serve` on the environment's database: scheduler and dispatcher every second,
/// leases of 3 seconds, mail by SMTP to `smtp`.
fn serve(env: &Env, smtp: u16) -> Served {
    let mut cmd = env.cmd();
    cmd.env("REKEY_SERVER_BASE_URL", "http://0.0.0.0:8080")
        .env("REKEY_SERVER_LEASE_SECS", "3")
        .env("REKEY_SERVER_API_REQUESTS_PER_MINUTE", "6000")
        .env("REKEY_MAIL_TRANSPORT", "smtp")
        .env("REKEY_MAIL_HOST", "127.0.0.1")
        .env("REKEY_MAIL_PORT", smtp.to_string())
        .env("REKEY_MAIL_TLS", "none")
        .env("REKEY_MAIL_FROM", "rekey@two.test")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--scheduler-interval",
            "1",
            "--mail-interval",
            "1",
        ]);
    serve::start(cmd).expect("rekey serve starts")
}

fn call(s: &Served, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
    call_with(s, method, path, token, body, &[])
}

fn call_with(
    s: &Served,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Answer {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let body = body.map(|b| b.to_string());
    json_request(&s.addr, method, path, &headers, body.as_deref())
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", s.addr))
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", a.body))
}

/// The Message-ID and Subject of every message the sink received, in order.
fn received(sink: &Sink) -> Vec<(String, String)> {
    sink.messages()
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.data).replace("\r\n ", " ");
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            (header("Message-ID:"), header("Subject:"))
        })
        .collect()
}

fn reminders(sink: &Sink) -> usize {
    received(sink)
        .iter()
        .filter(|(_, s)| s.contains("Reminder"))
        .count()
}

/// Waits up to 60 seconds for `done`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn step_status(r: &Value, step: &str) -> String {
    r["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == step))
        .and_then(|x| x["status"]["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn two_instances_one_killed_midway_do_every_step_timer_and_mail_once() {
    let Ok(server) = std::env::var(PG_ENV) else {
        eprintln!("skipping: {PG_ENV} not set");
        return;
    };
    let env = Env::postgres(&server);
    setup(&env);
    let admin = env
        .ok(&["user", "token", "--email", ADMIN])
        .trim()
        .to_string();
    let ops = env
        .ok(&["user", "token", "--email", OPS])
        .trim()
        .to_string();
    let (sink, smtp) = start_server("sink.two.test");
    let a = serve(&env, smtp.port());
    let b = serve(&env, smtp.port());

    let start = json!({"tenant": "acme", "receiver": "R", "alias": "A", "bits": 2048,
                       "procedure": "dual-trust"});
    let key = [("Idempotency-Key", "two-instances-1")];
    let created = call_with(
        &a,
        "POST",
        "/api/renewals",
        &admin,
        Some(start.clone()),
        &key,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = json_of(&created)["renewal"]["id"]
        .as_str()
        .expect("renewal id")
        .to_string();
    let renewal = |s: &Served| {
        let r = call(s, "GET", &format!("/api/renewals/{id}"), &admin, None);
        assert_eq!(r.status, 200, "{}", r.body);
        json_of(&r)
    };

    // The first step is the administrator's; its reminders come every 4 seconds.
    wait_for("a first reminder", || reminders(&sink) >= 1);
    // Instance A dies without a word, holding whatever leases it held.
    a.kill().expect("SIGKILL");
    let at_kill = reminders(&sink);
    // The client lost A's answer and retries on B with the same key: the same renewal.
    let retried = call_with(&b, "POST", "/api/renewals", &admin, Some(start), &key);
    assert!(retried.status < 300, "{}", retried.body);
    assert_eq!(
        json_of(&retried)["renewal"]["id"],
        id.as_str(),
        "{}",
        retried.body
    );
    assert_eq!(retried.header("idempotency-replayed"), Some("true"));
    // B alone keeps the timers going.
    wait_for("a reminder after the kill", || reminders(&sink) > at_kill);

    let approve = call(
        &b,
        "POST",
        &format!("/api/tasks/{id}/create-key-pair/approve"),
        &admin,
        None,
    );
    assert_eq!(approve.status, 200, "{}", approve.body);
    wait_for("the receiver's step", || {
        step_status(&renewal(&b), "trust-old-and-new") == "due"
    });
    let fp = renewal(&b)["new_cert"]
        .as_str()
        .expect("the new certificate's fingerprint")
        .to_string();

    // A comes back; the renewal goes on across both.
    let a = serve(&env, smtp.port());
    let body = Some(json!({ "fingerprint": fp }));
    let r = call(
        &a,
        "POST",
        &format!("/api/tasks/{id}/trust-old-and-new/complete"),
        &ops,
        body.clone(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &b,
        "POST",
        &format!("/api/tasks/{id}/exchange-key-pair/approve"),
        &admin,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &a,
        "POST",
        &format!("/api/tasks/{id}/remove-old-trust/complete"),
        &ops,
        body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(renewal(&b)["status"], "completed", "{}", renewal(&b));

    // Every queued mail goes out; then both stop.
    wait_for("the outbox to drain", || {
        let rows = env.json(&["mail", "list", "--json"]);
        rows.as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|m| m["status"] == "sent"))
    });
    let sent = env.json(&["mail", "list", "--json"]);
    for s in [a, b] {
        let (status, log) = s.stop().expect("stops");
        assert!(status.success(), "{log:?}");
    }

    // One renewal, every step done once.
    let all = env.json(&["renewal", "list", "--json"]);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let audit = env.json(&["audit", "list", "--limit", "1000", "--json"]);
    let mut done: BTreeMap<String, usize> = BTreeMap::new();
    for e in audit.as_array().into_iter().flatten() {
        // "create-key-pair (seed 1) by admin@t.example"
        if e["action"] == "step.done"
            && let Some(step) = e["after"].as_str().and_then(|a| a.split(' ').next())
        {
            *done.entry(step.to_string()).or_default() += 1;
        }
    }
    for step in [
        "create-key-pair",
        "trust-old-and-new",
        "exchange-key-pair",
        "remove-old-trust",
    ] {
        assert!(done.contains_key(step), "{step} not done: {done:?}");
    }
    assert!(
        done.values().all(|n| *n == 1),
        "a step done twice: {done:?}"
    );

    // Every mail the database holds as sent reached the sink exactly once, reminders included.
    let got = received(&sink);
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _) in &got {
        *ids.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let rows: Vec<&str> = sent
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["message_id"].as_str())
        .collect();
    assert_eq!(
        rows.len(),
        got.len(),
        "sent rows {rows:?} vs received {got:?}"
    );
    for m in &rows {
        assert!(ids.contains_key(m), "{m} marked sent, never received");
    }
    assert!(reminders(&sink) >= 2, "{got:?}");
}
