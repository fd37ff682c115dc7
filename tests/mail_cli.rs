//! `rekey mail list|retry|send-due` through the built binary: the embedded default (`.eml` files
//! in `<data-dir>/outbox`), then SMTP configured by `REKEY_MAIL_*` against a loopback server.

mod common;

use std::path::Path;
use std::process::Output;

use chrono::{TimeZone, Utc};
use common::smtp::start_server;
use rekey_engine::{Catalog, ProcedureId};
use rekey_service::Service;
use rekey_service::demo;
use rekey_store::testing::{self, RawOutbox};
use rekey_store::{Kek, Store};
use uuid::Uuid;

fn rekey(data: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = common::rekey();
    c.arg("--data-dir").arg(data).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run rekey")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Vec<serde_json::Value> {
    serde_json::from_str(&ok(o)).expect("JSON list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_list_send_due_to_files_retry_and_smtp_from_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    ok(&rekey(&data, &["init"], &[]));

    // Real outbox rows: one renewal through the service on the CLI's database.
    let url = format!("sqlite://{}?mode=rwc", data.join("rekey.db").display());
    let store = Store::open(&url)
        .await
        .expect("open")
        .with_kek(Kek::from_file(&data.join("kek.key")).expect("kek"));
    let service = Service::new(store.clone(), Catalog::builtin().expect("workflows"));
    let start = Utc
        .with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date");
    demo::run_procedure(&service, ProcedureId::DualTrust, 2048, start)
        .await
        .expect("renewal");
    let rows = rekey_store::outbox::list(store.db(), None, None)
        .await
        .expect("outbox");
    let n = rows.len();
    assert!(n > 5, "{n}");

    let queued = json(&rekey(
        &data,
        &["mail", "list", "--state", "queued", "--json"],
        &[],
    ));
    assert_eq!(queued.len(), n);
    let table = ok(&rekey(&data, &["mail", "list"], &[]));
    assert!(table.starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), n + 1);

    // send-due with the embedded default: one .eml per row, named by its Message-ID.
    let out = ok(&rekey(&data, &["mail", "send-due"], &[]));
    assert!(
        out.contains(&format!("{n} sent, 0 to retry, 0 failed")),
        "{out}"
    );
    assert!(out.contains("files in"), "{out}");
    let outbox_dir = data.join("outbox");
    let files: Vec<_> = std::fs::read_dir(&outbox_dir)
        .expect("outbox dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(files.len(), n);
    for r in &rows {
        let path = outbox_dir.join(rekey_notifier::transport::file_name(&r.message_id));
        let eml = std::fs::read(&path).expect("eml per row");
        let text = String::from_utf8_lossy(&eml);
        assert!(
            text.contains(&format!("Message-ID: {}", r.message_id)),
            "{text}"
        );
        assert!(text.contains(&format!("To: {}", r.recipients)));
        let bare_lf = eml
            .iter()
            .enumerate()
            .filter(|(i, b)| **b == b'\n' && (*i == 0 || eml[i - 1] != b'\r'))
            .count();
        assert_eq!(bare_lf, 0, "CRLF only in {}", path.display());
    }
    let again = ok(&rekey(&data, &["mail", "send-due"], &[]));
    assert!(again.contains("0 sent, 0 to retry, 0 failed"), "{again}");
    assert_eq!(
        json(&rekey(
            &data,
            &["mail", "list", "--state", "sent", "--json"],
            &[]
        ))
        .len(),
        n
    );

    // A sent row is not sent twice; a failed one is queued again by `mail retry`.
    let sent_id = rows[0].id.to_string();
    let refused = rekey(&data, &["mail", "retry", &sent_id], &[]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("already sent"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let failed = &rows[1];
    testing::set_outbox_failed(store.db(), failed.id, "550 no such user")
        .await
        .expect("mark failed");
    let listed = json(&rekey(
        &data,
        &["mail", "list", "--state", "failed", "--json"],
        &[],
    ));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["last_error"], "550 no such user");
    let out = ok(&rekey(
        &data,
        &["mail", "retry", &failed.id.to_string()],
        &[],
    ));
    assert!(out.contains("queued mail"), "{out}");

    // This time through SMTP, configured by environment variables.
    let (sink, addr) = start_server("mx.cli.test");
    let port = addr.port();
    let env = [
        ("REKEY_MAIL_TRANSPORT", "smtp".to_string()),
        ("REKEY_MAIL_HOST", "127.0.0.1".to_string()),
        ("REKEY_MAIL_PORT", port.to_string()),
        ("REKEY_MAIL_TLS", "none".to_string()),
        ("REKEY_MAIL_FROM", "rekey@cli.test".to_string()),
    ];
    let out = ok(&rekey(&data, &["mail", "send-due"], &env));
    assert!(out.contains("1 sent, 0 to retry, 0 failed"), "{out}");
    assert!(
        out.contains(&format!("SMTP 127.0.0.1:{port} (none)")),
        "{out}"
    );
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, vec![failed.recipients.clone()]);
    assert!(
        String::from_utf8_lossy(&got[0].data)
            .contains(&format!("Message-ID: {}", failed.message_id))
    );
    let _ = store.close().await;
}

/// Regression: an outbox row the notifier could not parse (then: the engine's
/// `certificate_request`) was marked failed and reported to the tenant administrators as an
/// undeliverable address. Now it is an internal error: named on stderr, exit 1, marked failed
/// with the reason, and nobody is told to check an address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_outbox_row_is_an_internal_error_not_an_undeliverable_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "365");
    let url = format!("sqlite://{}?mode=rwc", data.join("rekey.db").display());
    let store = Store::open(&url).await.expect("open");
    let tenant = store.tenants().await.expect("tenants")[0].id;
    let id = Uuid::new_v4();
    let state = serde_json::json!({
        "notice": {"to": "tenant_admin", "kind": "carrier_pigeon", "step": "create-key-pair"},
        "renewal": Uuid::new_v4(), "procedure": "dual-trust", "alias": "A", "receiver": "R",
        "recipient": "admin@acme.example",
    });
    let now = Utc::now();
    let row = RawOutbox {
        id,
        tenant: tenant.as_uuid(),
        renewal: None,
        message_id: format!("<{}@rekey>", id.simple()),
        recipients: "admin@acme.example".into(),
        subject: "[rekey] by pigeon".into(),
        state: state.to_string(),
        at: now,
    };
    testing::queue_raw(store.db(), row)
        .await
        .expect("queue a row");

    let out = rekey(&data, &["mail", "send-due"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("internal error: unreadable outbox row {id}"))
            && err.contains("unknown notice kind \"carrier_pigeon\""),
        "{err}"
    );
    let all = json(&rekey(&data, &["mail", "list", "--json"], &[]));
    assert_eq!(all.len(), 1, "no report queued: {all:?}");
    assert_eq!(all[0]["status"], "failed");
    assert!(
        all[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("internal error: unreadable outbox row")),
        "{all:?}"
    );
    assert!(common::outbox_mails(&data).is_empty(), "nothing sent");
    let again = ok(&rekey(&data, &["mail", "send-due"], &[]));
    assert!(again.contains("0 sent, 0 to retry, 0 failed"), "{again}");
    let _ = store.close().await;
}

/// Regression: the expiry watch's mail lost what the watch computed (fingerprint, procedure,
/// lead time, the command to start, why it did not open the renewal), read "in the renewal
/// of …" when none existed, and did not say when it was overdue.
#[test]
fn expiry_watch_mail_says_what_the_watch_computed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // Expires in 10 days: the latest safe start (lead time + 30 days' margin) is long past.
    common::tenant_with_key(&data, "10");
    let keys = json(&rekey(&data, &["keystore", "list", "--json"], &[]));
    let fp: String = keys[0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_lowercase();
    let watch = ok(&rekey(&data, &["watch", "--json"], &[]));
    assert!(watch.contains("notified"), "{watch}");
    ok(&rekey(&data, &["mail", "send-due"], &[]));
    let mails = common::outbox_mails(&data);
    assert_eq!(mails.len(), 1, "one tenant administrator");
    let m = &mails[0];
    assert!(
        m.contains("Subject: [rekey] Start renewing A (overdue)"),
        "{m}"
    );
    for needle in [
        fp.as_str(),
        "dual-signature",
        "Lead time:",
        "days margin",
        "Overdue by:",
        "No renewal of alias A exists, and it is overdue",
        "rekey --tenant acme renewal start --flow F --step S --alias A --receiver R \
         --procedure dual-signature --as admin@acme.example",
        "rekey did not open it itself because the watch runs with policy \"notify\"",
    ] {
        assert!(m.contains(needle), "{needle:?} not in {m}");
    }
    assert!(!m.contains("in the renewal of"), "{m}");
    assert!(!m.contains("/tasks/"), "no task exists to link to: {m}");
}

/// A renewal whose step is overdue, when the steps after it no longer fit before the old
/// certificate expires: `rekey watch` warns every role of the renewal (tenant administrator,
/// integration developer, the receiver's contact) once, each mail saying whose step it is and,
/// to its owner, the command that does it. Not while the step is still within its due time,
/// and not when the certificate outlives the remaining steps.
#[test]
fn watch_warns_every_role_when_a_stalled_step_endangers_the_expiry() {
    const ADMIN: &str = "admin@acme.example";
    let start = |data: &Path| -> String {
        ok(&rekey(
            data,
            &[
                "user",
                "add",
                "--email",
                "dev@acme.example",
                "--role",
                "integration_developer",
            ],
            &[],
        ));
        let o = ok(&rekey(
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
                "--json",
            ],
            &[],
        ));
        let r: serde_json::Value = serde_json::from_str(&o).expect("JSON");
        r["id"].as_str().expect("renewal id").to_string()
    };
    let at = |days: i64| (Utc::now() + chrono::Duration::days(days)).to_rfc3339();
    let at_risk = |data: &Path| -> Vec<String> {
        common::outbox_mails(data)
            .into_iter()
            .map(|m| m.replace("\r\n ", " "))
            .filter(|m| m.contains("at risk"))
            .collect()
    };

    // Expires in 20 days; dual-signature's steps take 21 days as planned.
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    common::tenant_with_key(&data, "20");
    let id = start(&data);
    // The first step (2 days) is not overdue yet: no warning, though the plan is tight.
    let calm = ok(&rekey(&data, &["watch", "--at", &at(1)], &[]));
    assert!(!calm.contains("AT RISK"), "{calm}");
    // Three days on, it is overdue, and the 19 days of steps after it end after the expiry.
    let out = ok(&rekey(&data, &["watch", "--at", &at(3)], &[]));
    assert!(out.contains("AT RISK"), "{out}");
    assert!(out.contains(&id), "{out}");
    assert!(out.contains("warned every role (3 email(s))"), "{out}");
    let again = ok(&rekey(&data, &["watch", "--at", &at(4)], &[]));
    assert!(again.contains("every role already warned"), "{again}");
    ok(&rekey(&data, &["mail", "send-due", "--at", &at(4)], &[]));
    let mails = at_risk(&data);
    assert_eq!(mails.len(), 3, "one per person, once: {mails:#?}");
    for who in [ADMIN, "dev@acme.example", "ops@r.example"] {
        let m = mails
            .iter()
            .find(|m| m.contains(&format!("To: {who}")))
            .unwrap_or_else(|| panic!("no warning to {who}: {mails:#?}"));
        for needle in [
            "Subject: [rekey] Renewal of A at risk:",
            "is overdue and the certificate expires",
            "The renewal of alias A is stalled",
            "Done now, the renewal ends:",
            "Steps after it:",
            id.as_str(),
        ] {
            assert!(
                m.contains(needle),
                "{needle:?} not in the mail to {who}: {m}"
            );
        }
    }
    let mail_to = |who: &str| {
        mails
            .iter()
            .find(|m| m.contains(&format!("To: {who}")))
            .cloned()
            .unwrap_or_default()
    };
    let owner = mail_to(ADMIN);
    assert!(
        owner.contains(&format!(
            "rekey task approve {id}:create-key-pair --as {ADMIN}"
        )),
        "the owner is told how to do the step: {owner}"
    );
    let dev = mail_to("dev@acme.example");
    assert!(dev.contains("Nothing is due from you yet"), "{dev}");
    assert!(!dev.contains("rekey task approve"), "{dev}");
    let audit = ok(&rekey(&data, &["audit", "list", "--json"], &[]));
    assert_eq!(audit.matches("watch.at_risk").count(), 1, "{audit}");

    // A certificate that outlives the remaining steps: overdue, but not at risk.
    let dir2 = tempfile::tempdir().expect("temp dir");
    let data2 = dir2.path().join("data");
    common::tenant_with_key(&data2, "60");
    start(&data2);
    let fine = ok(&rekey(&data2, &["watch", "--at", &at(3)], &[]));
    assert!(!fine.contains("AT RISK"), "{fine}");
}
