//! The web inbox through the router (`oneshot`, SQLite and PostgreSQL): a link's page does not
//! use the link; forms need the CSRF token; the first form post uses the link and starts a
//! session (cookie HttpOnly, SameSite=Strict, Secure under https); refusals are shown escaped and
//! change nothing; signed-in pages need the session; the downtime window is proposed and
//! accepted through the forms.

use chrono::{Duration, Utc};
use rekey_engine::{Catalog, Event, ProcedureId, Renewal, StepStatus};
use rekey_notifier::links::{self, Task};
use rekey_server::axum::Router;
use rekey_server::axum::body::{Body, to_bytes};
use rekey_server::axum::http::{HeaderMap, Request, StatusCode, header};
use rekey_server::{AppState, app};
use rekey_service::demo::{self, TENANT_ADMIN, receiver_admin};
use rekey_service::{Service, StartRequest};
use rekey_testdb::{TestDb, TestResult, on_both};
use tower::ServiceExt;

type Err = Box<dyn std::error::Error + Send + Sync>;

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    /// The value of the first `name="csrf"` hidden input.
    fn csrf(&self) -> Result<String, Err> {
        let i = self
            .body
            .find("name=\"csrf\" value=\"")
            .ok_or("no CSRF field")?
            + "name=\"csrf\" value=\"".len();
        Ok(self.body[i..].chars().take_while(|c| *c != '"').collect())
    }

    /// `name=value` of the session cookie set by this answer.
    fn cookie(&self) -> Result<(String, String), Err> {
        let set = self
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("rekey_session="))
            .ok_or("no session cookie")?
            .to_string();
        let pair = set.split(';').next().ok_or("cookie")?.to_string();
        Ok((pair, set))
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<String>,
) -> Result<Page, Err> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(b))?,
        None => req.body(Body::empty())?,
    };
    let res = app.clone().oneshot(req).await?;
    let status = res.status();
    let headers = res.headers().clone();
    let body = String::from_utf8(to_bytes(res.into_body(), 10 << 20).await?.to_vec())?;
    Ok(Page {
        status,
        headers,
        body,
    })
}

struct Fixture {
    svc: Service,
    renewal: Renewal,
}

/// A renewal of `p` with its key generation approved.
async fn fixture(db: &TestDb, p: ProcedureId) -> Result<Fixture, Err> {
    let svc = Service::new(db.store.clone(), Catalog::builtin()?);
    let setup = demo::prepare(&svc, p, 2048, Utc::now()).await?;
    let o = svc
        .start(setup.start_request(2048), TENANT_ADMIN, Utc::now())
        .await?;
    let o = svc
        .act(
            o.renewal.id,
            TENANT_ADMIN,
            Event::Approve {
                step: "create-key-pair".into(),
            },
            Utc::now(),
        )
        .await?;
    Ok(Fixture {
        svc,
        renewal: o.renewal,
    })
}

async fn link(db: &TestDb, r: &Renewal, step: &str, to: &str) -> Result<String, Err> {
    let (t, _) = links::issue(
        db.store.db(),
        Task {
            tenant: r.tenant.as_uuid(),
            renewal: r.id,
            step,
            recipient: to,
        },
        Utc::now(),
        Duration::hours(1),
    )
    .await?;
    Ok(t.expose().to_string())
}

fn status_of(r: &Renewal, step: &str) -> String {
    match r.step(step).map(|s| &s.status) {
        Some(StepStatus::Done { .. }) => "done".into(),
        Some(StepStatus::Due { .. }) => "due".into(),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn link_page_csrf_session_cookie_escaping_and_confirm() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db, ProcedureId::DualTrust).await?;
        let id = f.renewal.id;
        let fp = f.renewal.new_cert.ok_or("new cert")?.to_string();
        let admin = receiver_admin(ProcedureId::DualTrust);
        let token = link(db, &f.renewal, "trust-old-and-new", &admin).await?;
        let app = app(AppState::new(f.svc.clone(), "http://rekey.test")?);

        let page = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(&fp), "fingerprint shown");
        assert!(
            page.headers[header::CONTENT_SECURITY_POLICY]
                .to_str()?
                .contains("default-src 'self'")
        );
        let csrf = page.csrf()?;
        links::lookup(db.store.db(), &token, Utc::now()).await?;

        // Without the right CSRF token: refused, the link still works.
        for bad in ["", "0000", &"a".repeat(csrf.len())] {
            let p = send(
                &app,
                "POST",
                &format!("/tasks/{token}"),
                None,
                Some(form(&[
                    ("csrf", bad),
                    ("action", "complete"),
                    ("fingerprint", &fp),
                ])),
            )
            .await?;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
            assert!(p.headers.get(header::SET_COOKIE).is_none());
        }
        links::lookup(db.store.db(), &token, Utc::now()).await?;
        assert_eq!(
            status_of(&f.svc.renewal(id).await?, "trust-old-and-new"),
            "due"
        );

        // A hostile fingerprint: refused naming its first character, shown escaped; the link is
        // used and a session begins.
        let before = f.svc.renewal(id).await?;
        let p = send(
            &app,
            "POST",
            &format!("/tasks/{token}"),
            None,
            Some(form(&[
                ("csrf", &csrf),
                ("action", "complete"),
                ("fingerprint", "<script>alert(1)</script>"),
            ])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
        assert!(
            p.body
                .contains("fingerprint: character 1 (&lt;, U+003C) is not a hex digit"),
            "{}",
            p.body
        );
        assert!(!p.body.contains("<script>"), "{}", p.body);
        let (cookie, set) = p.cookie()?;
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!set.contains("Secure"), "http base URL: {set}");
        assert_eq!(f.svc.renewal(id).await?, before, "nothing changed");
        assert!(
            links::lookup(db.store.db(), &token, Utc::now())
                .await
                .is_err()
        );
        let p = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        assert_eq!(p.status, StatusCode::GONE, "{}", p.body);
        assert!(p.body.contains("already used"), "{}", p.body);

        // Signed-in pages need the session.
        for path in ["/".to_string(), format!("/renewals/{id}")] {
            let p = send(&app, "GET", &path, None, None).await?;
            assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{path}");
            let p = send(&app, "GET", &path, Some("rekey_session=forged"), None).await?;
            assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{path}");
        }
        let inbox = send(&app, "GET", "/", Some(&cookie), None).await?;
        assert_eq!(inbox.status, StatusCode::OK);
        assert!(
            inbox
                .body
                .contains(&format!("/renewals/{id}/steps/trust-old-and-new")),
            "{}",
            inbox.body
        );
        let step = send(
            &app,
            "GET",
            &format!("/renewals/{id}/steps/trust-old-and-new"),
            Some(&cookie),
            None,
        )
        .await?;
        assert_eq!(step.status, StatusCode::OK);
        let session_csrf = step.csrf()?;
        assert_ne!(session_csrf, csrf);

        // The session's form needs the session's CSRF token.
        let path = format!("/renewals/{id}/steps/trust-old-and-new");
        let p = send(
            &app,
            "POST",
            &path,
            Some(&cookie),
            Some(form(&[
                ("csrf", &csrf),
                ("action", "complete"),
                ("fingerprint", &fp),
            ])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
        let p = send(
            &app,
            "POST",
            &path,
            None,
            Some(form(&[
                ("csrf", &session_csrf),
                ("action", "complete"),
                ("fingerprint", &fp),
            ])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_of(&f.svc.renewal(id).await?, "trust-old-and-new"),
            "due"
        );
        let p = send(
            &app,
            "POST",
            &path,
            Some(&cookie),
            Some(form(&[
                ("csrf", &session_csrf),
                ("action", "complete"),
                ("fingerprint", &fp),
            ])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        assert_eq!(p.headers[header::LOCATION], format!("/renewals/{id}"));
        assert_eq!(
            status_of(&f.svc.renewal(id).await?, "trust-old-and-new"),
            "done"
        );
        let page = send(&app, "GET", &format!("/renewals/{id}"), Some(&cookie), None).await?;
        assert!(page.body.contains("<svg id=\"swimlane\""));
        assert!(
            page.body
                .contains("data-step=\"trust-old-and-new\" data-status=\"done\"")
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cookies_are_secure_under_an_https_base_url() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db, ProcedureId::DualTrust).await?;
        let admin = receiver_admin(ProcedureId::DualTrust);
        let token = link(db, &f.renewal, "trust-old-and-new", &admin).await?;
        let app = app(AppState::new(f.svc.clone(), "https://rekey.example.com/")?);
        let page = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        let p = send(
            &app,
            "POST",
            &format!("/tasks/{token}"),
            None,
            Some(form(&[("csrf", &page.csrf()?), ("action", "signin")])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        let (_, set) = p.cookie()?;
        assert!(set.contains("; Secure"), "{set}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn downtime_window_is_proposed_and_accepted_through_the_forms() {
    on_both(async |db: &TestDb| -> TestResult {
        let p = ProcedureId::DowntimeWindow;
        let f = fixture(db, p).await?;
        let id = f.renewal.id;
        let app = app(AppState::new(f.svc.clone(), "http://rekey.test")?);
        let admin = receiver_admin(p);
        // The tenant administrator proposes from their link.
        let token = link(db, &f.renewal, "agree-downtime", TENANT_ADMIN).await?;
        let page = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        assert!(page.body.contains("id=\"propose\""), "{}", page.body);
        let start = (Utc::now() + Duration::days(3))
            .format("%Y-%m-%dT22:00")
            .to_string();
        let end = (Utc::now() + Duration::days(3))
            .format("%Y-%m-%dT23:00")
            .to_string();
        let r = send(
            &app,
            "POST",
            &format!("/tasks/{token}"),
            None,
            Some(form(&[
                ("csrf", &page.csrf()?),
                ("action", "propose"),
                ("start", "tomorrow"),
                ("end", &end),
            ])),
        )
        .await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("is not a time"), "{}", r.body);
        let (cookie, _) = r.cookie()?;
        let renewal_page =
            send(&app, "GET", &format!("/renewals/{id}"), Some(&cookie), None).await?;
        let r = send(
            &app,
            "POST",
            &format!("/renewals/{id}/window"),
            Some(&cookie),
            Some(form(&[
                ("csrf", &renewal_page.csrf()?),
                ("action", "propose"),
                ("start", &start),
                ("end", &end),
            ])),
        )
        .await?;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let w = f.svc.renewal(id).await?.window.ok_or("window proposed")?;
        assert!(!w.agreed);
        assert_eq!(w.start.format("%Y-%m-%dT%H:%M").to_string(), start);
        // The receiver administrator accepts from theirs.
        let token = link(db, &f.renewal, "agree-downtime", &admin).await?;
        let page = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        assert!(page.body.contains("id=\"accept\""), "{}", page.body);
        let r = send(
            &app,
            "POST",
            &format!("/tasks/{token}"),
            None,
            Some(form(&[("csrf", &page.csrf()?), ("action", "accept")])),
        )
        .await?;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert!(f.svc.renewal(id).await?.window.ok_or("window")?.agreed);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cross_site_form_posts_are_refused_and_use_nothing() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db, ProcedureId::DualTrust).await?;
        let admin = receiver_admin(ProcedureId::DualTrust);
        let token = link(db, &f.renewal, "trust-old-and-new", &admin).await?;
        let app = app(AppState::new(f.svc.clone(), "https://rekey.example.com")?);
        let page = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        let body = form(&[("csrf", &page.csrf()?), ("action", "signin")]);
        for (name, value) in [
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let req = Request::builder()
                .method("POST")
                .uri(format!("/tasks/{token}"))
                .header(header::HOST, "rekey.example.com")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(name, value)
                .body(Body::from(body.clone()))?;
            let res = app.clone().oneshot(req).await?;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name}: {value}");
            assert!(res.headers().get(header::SET_COOKIE).is_none());
        }
        links::lookup(db.store.db(), &token, Utc::now()).await?;
        // The same form from rekey's own origin goes through.
        let req = Request::builder()
            .method("POST")
            .uri(format!("/tasks/{token}"))
            .header(header::HOST, "rekey.example.com")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("origin", "https://rekey.example.com")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(body))?;
        let res = app.clone().oneshot(req).await?;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        Ok(())
    })
    .await;
}

/// Regression: no page showed a CA-signed renewal's certificate request. Now the renewal's
/// page shows it, with how to upload the chain, while the renewal waits for it.
#[tokio::test]
async fn renewal_page_shows_the_certificate_request_of_a_ca_signed_renewal() {
    on_both(async |db: &TestDb| -> TestResult {
        let p = ProcedureId::DualTrust;
        let svc = Service::new(db.store.clone(), Catalog::builtin()?);
        let setup = demo::prepare(&svc, p, 2048, Utc::now()).await?;
        let o = svc
            .start(
                StartRequest {
                    ca_signed: true,
                    ..setup.start_request(2048)
                },
                TENANT_ADMIN,
                Utc::now(),
            )
            .await?;
        let step = Event::Approve {
            step: "create-key-pair".into(),
        };
        let o = svc
            .act(o.renewal.id, TENANT_ADMIN, step, Utc::now())
            .await?;
        let id = o.renewal.id;
        let app = app(AppState::new(svc.clone(), "http://rekey.test")?);
        let token = link(db, &o.renewal, "create-key-pair", TENANT_ADMIN).await?;
        let page = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        let r = send(
            &app,
            "POST",
            &format!("/tasks/{token}"),
            None,
            Some(form(&[("csrf", &page.csrf()?), ("action", "signin")])),
        )
        .await?;
        let (cookie, _) = r.cookie()?;
        let page = send(&app, "GET", &format!("/renewals/{id}"), Some(&cookie), None).await?;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body
                .contains("<pre id=\"csr\">-----BEGIN CERTIFICATE REQUEST-----"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("rekey renewal upload-cert"),
            "{}",
            page.body
        );
        Ok(())
    })
    .await;
}

/// The task form re-shown with the refusal, the step still due on the renewal's page.
async fn refused_on_the_form(
    app: &Router,
    path: &str,
    cookie: &str,
    csrf: &str,
    value: &str,
    needle: &str,
) -> Result<(), Err> {
    let p = send(
        app,
        "POST",
        path,
        Some(cookie),
        Some(form(&[
            ("csrf", csrf),
            ("action", "complete"),
            ("fingerprint", value),
        ])),
    )
    .await?;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{value:?}: {}", p.body);
    assert!(p.body.contains("id=\"error\""), "{value:?}: {}", p.body);
    assert!(
        p.body.contains(needle),
        "{value:?}: {needle:?} not in {}",
        p.body
    );
    assert!(p.body.contains("64 hex digits"), "{}", p.body);
    assert!(
        p.body.contains("name=\"fingerprint\""),
        "the form again: {}",
        p.body
    );
    Ok(())
}

/// The right digits padded with a NUL byte, a zero-width space or markup, and an empty value,
/// typed into the task form: each re-shows the form naming the field and what is wrong, the step
/// stays due (the swimlane's current step) and nothing is recorded; the colon-separated upper-case and plain lower-case forms
/// still confirm.
#[tokio::test]
async fn junk_padded_fingerprint_is_refused_and_changes_nothing() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db, ProcedureId::DualTrust).await?;
        let id = f.renewal.id;
        let fp = f.renewal.new_cert.ok_or("new cert")?.to_string();
        let admin = receiver_admin(ProcedureId::DualTrust);
        let app = app(AppState::new(f.svc.clone(), "http://rekey.test")?);
        let before = f.svc.renewal(id).await?;
        let audit = db.audit_len().await?;

        // Through the mailed link: the first post signs in, the NUL-padded value is refused.
        let token = link(db, &f.renewal, "trust-old-and-new", &admin).await?;
        let page = send(&app, "GET", &format!("/tasks/{token}"), None, None).await?;
        let p = send(
            &app,
            "POST",
            &format!("/tasks/{token}"),
            None,
            Some(form(&[
                ("csrf", &page.csrf()?),
                ("action", "complete"),
                ("fingerprint", &format!("{fp}\0")),
            ])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
        assert!(
            p.body
                .contains("fingerprint: character 65 (\\0, U+0000) is not a hex digit"),
            "{}",
            p.body
        );
        let (cookie, _) = p.cookie()?;

        // Signed in, on the step's own form.
        let path = format!("/renewals/{id}/steps/trust-old-and-new");
        let csrf = send(&app, "GET", &path, Some(&cookie), None)
            .await?
            .csrf()?;
        for (value, needle) in [
            (format!("{fp}\u{200B}"), "fingerprint: character 65"),
            (
                format!("<b>{fp}</b>"),
                "fingerprint: character 1 (&lt;, U+003C) is not a hex digit",
            ),
            (String::new(), "fingerprint: empty"),
            ("   ".into(), "fingerprint: empty"),
        ] {
            refused_on_the_form(&app, &path, &cookie, &csrf, &value, needle).await?;
        }
        let page = send(&app, "GET", &format!("/renewals/{id}"), Some(&cookie), None).await?;
        assert!(
            page.body
                .contains("data-step=\"trust-old-and-new\" data-status=\"current\""),
            "{}",
            page.body
        );
        assert_eq!(f.svc.renewal(id).await?, before, "nothing changed");
        assert_eq!(db.audit_len().await?, audit, "nothing recorded");

        // As `openssl x509 -fingerprint -sha256` prints it.
        let colon_upper = fp
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let p = send(
            &app,
            "POST",
            &path,
            Some(&cookie),
            Some(form(&[
                ("csrf", &csrf),
                ("action", "complete"),
                ("fingerprint", &colon_upper),
            ])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        f.svc
            .act(
                id,
                TENANT_ADMIN,
                Event::Approve {
                    step: "exchange-key-pair".into(),
                },
                Utc::now(),
            )
            .await?;
        let p = send(
            &app,
            "POST",
            &format!("/renewals/{id}/steps/remove-old-trust"),
            Some(&cookie),
            Some(form(&[
                ("csrf", &csrf),
                ("action", "complete"),
                ("fingerprint", &fp.to_lowercase()),
            ])),
        )
        .await?;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        let page = send(&app, "GET", &format!("/renewals/{id}"), Some(&cookie), None).await?;
        for step in ["trust-old-and-new", "remove-old-trust"] {
            assert!(
                page.body
                    .contains(&format!("data-step=\"{step}\" data-status=\"done\"")),
                "{step}: {}",
                page.body
            );
        }
        Ok(())
    })
    .await;
}
