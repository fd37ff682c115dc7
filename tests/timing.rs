//! Reminder and escalation times as configuration (`[timing.<tenant>]`): a short reminder
//! time makes the scheduler send the reminder mail that early (read from the `.eml` the file
//! transport writes); a bad value is refused naming its key and changes nothing.

mod common;

use std::path::Path;
use std::process::Output;

use chrono::{Duration, Utc};

const ADMIN: &str = "admin@acme.example";

fn run(data: &Path, args: &[&str]) -> Output {
    common::rekey()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("runs rekey")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let o = run(data, args);
    assert!(
        o.status.success(),
        "rekey {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `.eml` files written so far.
fn emls(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("outbox"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

fn start(data: &Path) {
    ok(
        data,
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
        ],
    );
}

fn reminders(data: &Path, at: chrono::DateTime<Utc>) -> usize {
    let at = at.to_rfc3339();
    ok(data, &["scheduler", "run", "--once", "--at", &at]);
    ok(data, &["mail", "send-due", "--at", &at]);
    emls(data)
        .iter()
        .filter(|m| m.contains("Reminder: ") && m.contains("To: admin@acme.example"))
        .count()
}

#[test]
fn a_tenants_short_reminder_time_sends_the_reminder_that_early() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "365");
    let config = data.join("rekey.toml");
    let mut text = std::fs::read_to_string(&config).expect("rekey.toml");
    text.push_str(
        "\n[timing.acme]\nremind = \"1h\"\n\
         [timing.acme.steps.\"dual-trust/trust-old-and-new\"]\nremind = \"30m\"\n",
    );
    std::fs::write(&config, text).expect("write");
    let started = Utc::now();
    start(&data);
    // Not before the hour; by the hour (the procedure's own time is a day).
    assert_eq!(reminders(&data, started + Duration::minutes(30)), 0);
    assert_eq!(reminders(&data, started + Duration::minutes(70)), 1);
}

#[test]
fn without_configuration_the_procedures_own_times_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "365");
    let started = Utc::now();
    start(&data);
    assert_eq!(reminders(&data, started + Duration::minutes(70)), 0);
    assert_eq!(reminders(&data, started + Duration::hours(25)), 1);
}

#[test]
fn a_bad_timing_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "365");
    let config = data.join("rekey.toml");
    let original = std::fs::read_to_string(&config).expect("rekey.toml");
    for (section, needle) in [
        (
            "[timing.acme]\nremind = \"soon\"\n",
            "[timing.acme] remind: invalid duration \"soon\"",
        ),
        (
            "[timing.acme]\nremind = \"0m\"\n",
            "[timing.acme] remind = \"0m\": must be more than 0",
        ),
        (
            "[timing.acme]\nescalate = \"1d\"\n",
            "[timing.acme]: dual-trust: step \"create-key-pair\": timing must satisfy remind (1d) <= due (2d) <= escalate (1d)",
        ),
        (
            "[timing.acme.steps.\"dual-trust/no-such-step\"]\nremind = \"1h\"\n",
            "[timing.acme]: dual-trust: step \"no-such-step\": no such step",
        ),
        (
            "[timing.acme.steps.\"no-such-procedure/x\"]\nremind = \"1h\"\n",
            "[timing.acme.steps.\"no-such-procedure/x\"]",
        ),
        ("[timing.acme]\nremnid = \"1h\"\n", "remnid"),
    ] {
        std::fs::write(&config, format!("{original}\n{section}")).expect("write");
        let o = run(&data, &["renewal", "list"]);
        assert!(!o.status.success(), "{section}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    std::fs::write(&config, original).expect("write");
    let list = ok(&data, &["renewal", "list"]);
    assert!(
        !list.contains("dual-signature"),
        "nothing was started: {list}"
    );
}
