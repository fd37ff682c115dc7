//! `rekey serve --log-format json` as a process: a person signs in by the link in their email
//! and approves a step, an API client calls with its bearer token; every line of the log is a
//! JSON object, each request is logged with its method, route, status and latency, the step it
//! did with the renewal it belongs to; and no secret reaches the log — not
//! the bearer token, the session cookie, the link's token, the SMTP password nor the
//! key-encryption key.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{self, request};
use serde_json::Value;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The tenant administrator [`common::tenant_with_key`] makes.
const ADMIN: &str = "admin@acme.example";
const SMTP_PASSWORD: &str = "smtp-pw-4f1e9c2a";

fn rekey(data: &Path) -> Command {
    let mut c = common::rekey();
    c.arg("--data-dir").arg(data).env_remove("RUST_LOG");
    c
}

fn ok(data: &Path, args: &[&str]) -> Res<String> {
    let o = rekey(data).args(args).output()?;
    if !o.status.success() {
        return Err(format!("rekey {args:?}: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(String::from_utf8(o.stdout)?)
}

/// The link token in the first `.eml` to `to` that carries one, waiting up to 30 seconds for
/// the dispatcher to write it.
fn link_token(data: &Path, to: &str) -> Res<String> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        for e in std::fs::read_dir(data.join("outbox"))
            .into_iter()
            .flatten()
            .flatten()
        {
            // Quoted-printable: undo soft line breaks and the escaped `=`.
            let text = std::fs::read_to_string(e.path())?
                .replace("=\r\n", "")
                .replace("=3D", "=");
            if !text.lines().any(|l| l == format!("To: {to}")) {
                continue;
            }
            if let Some(i) = text.find("/tasks/") {
                let token: String = text[i + "/tasks/".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                if !token.is_empty() {
                    return Ok(token);
                }
            }
        }
        if Instant::now() > until {
            return Err(format!("no mail with a link to {to}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the first hidden `csrf` input of a page.
fn csrf(page: &str) -> Res<String> {
    const FIELD: &str = "name=\"csrf\" value=\"";
    let i = page.find(FIELD).ok_or("no CSRF field")? + FIELD.len();
    Ok(page[i..].chars().take_while(|c| *c != '"').collect())
}

/// The `span` (or an entry of `spans`) of a log line named `name`.
fn spans<'a>(line: &'a Value, name: &str) -> Vec<&'a Value> {
    line.get("span")
        .into_iter()
        .chain(line["spans"].as_array().into_iter().flatten())
        .filter(|s| s["name"] == name)
        .collect()
}

#[test]
fn json_log_has_request_and_renewal_spans_and_no_secret() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "365");
    let started: Value = serde_json::from_str(&ok(
        &data,
        &[
            "renewal",
            "start",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            "A",
            "--receiver",
            "R",
            "--procedure",
            "dual-signature",
            "--bits",
            "2048",
            "--as",
            ADMIN,
            "--json",
        ],
    )?)?;
    let renewal = started["id"].as_str().ok_or("renewal id")?.to_string();
    let bearer = ok(&data, &["user", "token", "--email", ADMIN])?
        .trim()
        .to_string();
    let kek = std::fs::read_to_string(data.join("kek.key"))?
        .trim()
        .to_string();
    assert!(!bearer.is_empty() && !kek.is_empty());

    let mut cmd = rekey(&data);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--mail-interval",
        "1",
        "--scheduler-interval",
        "1",
    ])
    .env("REKEY_MAIL_USERNAME", "rekey")
    .env("REKEY_MAIL_PASSWORD", SMTP_PASSWORD);
    let served = serve::start(cmd)?;
    let addr = served.addr.clone();

    let mut cookie = String::new();
    let mut token = String::new();
    let result = (|| -> Res<()> {
        // The tenant administrator follows the link in their email and approves the new key.
        token = link_token(&data, ADMIN)?;
        let page = request(&addr, "GET", &format!("/tasks/{token}"), &[], None)?;
        assert_eq!(page.status, 200, "{}", page.body);
        let form = format!("csrf={}&action=approve", csrf(&page.body)?);
        let done = request(&addr, "POST", &format!("/tasks/{token}"), &[], Some(&form))?;
        assert_eq!(done.status, 303, "{}", done.body);
        cookie = done
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .ok_or("no session cookie")?
            .to_string();
        assert!(cookie.starts_with("rekey_session="), "{cookie}");
        let inbox = request(&addr, "GET", "/", &[("Cookie", &cookie)], None)?;
        assert_eq!(inbox.status, 200, "{}", inbox.body);

        // An API client with its bearer token.
        let auth = format!("Bearer {bearer}");
        let shown = request(
            &addr,
            "GET",
            &format!("/api/renewals/{renewal}"),
            &[("Authorization", &auth)],
            None,
        )?;
        assert_eq!(shown.status, 200, "{}", shown.body);
        Ok(())
    })();
    let (status, log) = served.stop()?;
    result?;
    assert!(status.success(), "exit {status:?}: {log:?}");

    // Every line is one JSON object.
    let lines: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    assert!(lines.iter().all(Value::is_object), "{log:?}");

    // Each request's span: method, route (the link's template, not its token), status, latency.
    let request_span = |method: &str, path: &str, status: u64| {
        lines.iter().flat_map(|l| spans(l, "request")).any(|s| {
            s["method"] == method
                && s["path"] == path
                && s["status"] == status
                && s["latency_ms"].is_u64()
        })
    };
    assert!(request_span("GET", "/tasks/{token}", 200), "{log:?}");
    assert!(request_span("POST", "/tasks/{token}", 303), "{log:?}");
    assert!(request_span("GET", "/", 200), "{log:?}");
    assert!(request_span("GET", "/api/renewals/{id}", 200), "{log:?}");

    // The approval is logged as a step of its renewal.
    assert!(
        lines.iter().flat_map(|l| spans(l, "renewal")).any(|s| {
            s["renewal"] == renewal.as_str()
                && s["event"]
                    .as_str()
                    .is_some_and(|e| e.contains("create-key-pair"))
        }),
        "{log:?}"
    );

    // No secret anywhere in the log.
    let text = log.join("\n");
    let cookie_value = cookie.trim_start_matches("rekey_session=");
    for (what, secret) in [
        ("bearer token", bearer.as_str()),
        ("session cookie", cookie_value),
        ("link token", token.as_str()),
        ("SMTP password", SMTP_PASSWORD),
        ("key-encryption key", kek.as_str()),
    ] {
        assert!(
            secret.len() >= 8,
            "{what} too short to search for: {secret:?}"
        );
        assert!(!text.contains(secret), "{what} in the log:\n{text}");
    }
    Ok(())
}
