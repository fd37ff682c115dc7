//! The web inbox in headless Chromium (Debian `chromium` + `chromium-driver`, driven over
//! WebDriver): the receiver administrator opens the link from the email rekey sent, sees the
//! task and the new certificate's fingerprint, submits a wrong fingerprint (refused, nothing
//! changes), then the right one (the renewal advances); the tenant administrator signs in from
//! their own email and the renewal's timeline and swimlane show the step done by the receiver
//! administrator. Screenshots go to `target/browser-screenshots/`.

mod browser;

use std::path::{Path, PathBuf};

use browser::{Driver, Res};
use chrono::Utc;
use rekey_engine::{Catalog, Event, ProcedureId, StepStatus};
use rekey_notifier::{Dispatcher, Transport, links};
use rekey_server::{AppState, app};
use rekey_service::Service;
use rekey_service::demo::{self, TENANT_ADMIN, receiver_admin};
use rekey_testdb::TestDb;

/// Every action link in the `.eml` files of `dir` (quoted-printable soft breaks undone).
fn links_in(dir: &Path, base: &str) -> Res<Vec<String>> {
    let prefix = format!("{base}/tasks/");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(e?.path())?
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        let mut rest = text.as_str();
        while let Some(i) = rest.find(&prefix) {
            let tail = &rest[i + prefix.len()..];
            let token: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if token.len() == 43 && !out.contains(&token) {
                out.push(token);
            }
            rest = tail;
        }
    }
    Ok(out)
}

/// The emailed link that opens `step` for `recipient`.
fn link_for(
    rt: &tokio::runtime::Runtime,
    db: &TestDb,
    dir: &Path,
    base: &str,
    recipient: &str,
    step: &str,
) -> Res<String> {
    for token in links_in(dir, base)? {
        if let Ok(info) = rt.block_on(links::lookup(db.store.db(), &token, Utc::now()))
            && info.recipient == recipient
            && info.step == step
        {
            return Ok(format!("{base}/tasks/{token}"));
        }
    }
    Err(format!(
        "no emailed link for {recipient} / {step} in {}",
        dir.display()
    )
    .into())
}

fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

#[test]
fn receiver_admin_confirms_from_the_emailed_link_and_the_tenant_admin_sees_it() -> Res<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let db = rt.block_on(TestDb::sqlite())?;
    let svc = Service::new(db.store.clone(), Catalog::builtin()?);
    let p = ProcedureId::DualTrust;
    let setup = rt.block_on(demo::prepare(&svc, p, 2048, Utc::now()))?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app(AppState::new(svc.clone(), &base)?);
    rt.spawn(async move {
        let _ = rekey_server::axum::serve(listener, router).await;
    });

    // The tenant administrator starts the renewal and approves the new key (as on the CLI).
    let o = rt.block_on(svc.start(setup.start_request(2048), TENANT_ADMIN, Utc::now()))?;
    let id = o.renewal.id;
    rt.block_on(svc.act(
        id,
        TENANT_ADMIN,
        Event::Approve {
            step: "create-key-pair".into(),
        },
        Utc::now(),
    ))?;
    let fp = rt
        .block_on(svc.renewal(id))?
        .new_cert
        .ok_or("new certificate")?
        .to_string();

    // rekey mails the receiver administrator (as .eml files).
    let mail = tempfile::tempdir()?;
    let dispatcher = Dispatcher::new(
        db.store.db().clone(),
        Transport::file(mail.path()),
        "rekey@test.example",
        base.clone(),
    );
    rt.block_on(dispatcher.run_once(Utc::now()))?;
    let admin = receiver_admin(p);
    let link = link_for(&rt, &db, mail.path(), &base, &admin, "trust-old-and-new")?;
    let token = link.rsplit('/').next().ok_or("token")?.to_string();

    let driver = Driver::start()?;
    let b = driver.session()?;
    b.goto(&link)?;
    assert!(
        b.find("#task-title")?
            .text()?
            .contains("Configure the receiver"),
        "{}",
        b.source()?
    );
    assert_eq!(b.find("#recipient")?.text()?, admin);
    assert_eq!(
        b.find("#fingerprint")?.text()?,
        fp,
        "the page shows the fingerprint"
    );
    b.screenshot(&shots().join("1-receiver-admin-task.png"))?;
    assert!(
        rt.block_on(links::lookup(db.store.db(), &token, Utc::now()))
            .is_ok(),
        "showing the task does not use the link"
    );

    // A wrong fingerprint: refused in the engine's words, nothing changes.
    let audit = rt.block_on(db.audit_len())?;
    let before = rt.block_on(svc.renewal(id))?;
    b.find("#fingerprint-input")?.type_text(&"ab".repeat(32))?;
    b.find("#confirm")?.click()?;
    let err = b.wait_for("#error")?.text()?;
    assert!(err.contains("does not match the new certificate"), "{err}");
    b.screenshot(&shots().join("2-wrong-fingerprint-refused.png"))?;
    assert_eq!(rt.block_on(svc.renewal(id))?, before, "renewal unchanged");
    assert_eq!(rt.block_on(db.audit_len())?, audit, "nothing audited");
    assert!(
        rt.block_on(links::lookup(db.store.db(), &token, Utc::now()))
            .is_err(),
        "the link is used: the session carries on"
    );

    // The right one: the renewal advances.
    b.find("#fingerprint-input")?.type_text(&fp)?;
    b.find("#confirm")?.click()?;
    b.wait_for_url(&format!("/renewals/{id}"))?;
    assert_eq!(
        b.find("tr[data-step='trust-old-and-new']")?
            .attr("data-status")?
            .as_deref(),
        Some("done")
    );
    b.screenshot(&shots().join("3-receiver-admin-confirmed.png"))?;
    let after = rt.block_on(svc.renewal(id))?;
    assert!(
        matches!(
            &after.step("trust-old-and-new").ok_or("step")?.status,
            StepStatus::Done { by, .. } if *by == admin
        ),
        "{after:?}"
    );

    // The tenant administrator opens the link of their next step and sees the timeline.
    rt.block_on(dispatcher.run_once(Utc::now()))?;
    let link2 = link_for(
        &rt,
        &db,
        mail.path(),
        &base,
        TENANT_ADMIN,
        "exchange-key-pair",
    )?;
    let t = driver.session()?;
    t.goto(&link2)?;
    t.find("#open")?.click()?;
    t.wait_for_url(&format!("/renewals/{id}"))?;
    assert_eq!(t.find("#who")?.text()?, TENANT_ADMIN);
    let row = t.find("tr[data-step='trust-old-and-new']")?;
    assert_eq!(row.attr("data-status")?.as_deref(), Some("done"));
    assert!(row.text()?.contains(&admin), "{}", row.text()?);
    for (step, status) in [
        ("trust-old-and-new", "done"),
        ("exchange-key-pair", "current"),
        ("inform-exchanged", "next"),
    ] {
        assert_eq!(
            t.count(&format!(
                "#swimlane g[data-step='{step}'][data-status='{status}']"
            ))?,
            1,
            "swimlane marks {step} {status}"
        );
    }
    t.screenshot(&shots().join("4-tenant-admin-timeline.png"))?;
    Ok(())
}
