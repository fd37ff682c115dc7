//! Input errors and other tenants' objects through the router (`tower::ServiceExt::oneshot`
//! against a real store, SQLite and PostgreSQL): every refused input is a 4xx JSON body that
//! names the field, the caller's role is checked before the input, and a tenant or renewal the
//! caller holds no role in is answered exactly like one that does not exist (404), without
//! naming steps, roles or status. Nothing changes on any refusal.

mod common;

use chrono::Utc;
use rekey_engine::{Catalog, ProcedureId};
use rekey_model::{Email, Grant, TenantName};
use rekey_server::axum::Router;
use rekey_server::axum::body::{Body, to_bytes};
use rekey_server::axum::http::{Request, StatusCode, header};
use rekey_server::{AppState, app};
use rekey_service::Service;
use rekey_service::demo::{self, TENANT_ADMIN, receiver_admin};
use rekey_testdb::{TestDb, TestResult, on_both};
use serde_json::{Value, json};
use tower::ServiceExt;

type Err = Box<dyn std::error::Error + Send + Sync>;

async fn token(db: &TestDb, email: &str) -> Result<String, Err> {
    let u = db.store.user_by_email(&Email::parse(email)?).await?;
    Ok(db
        .store
        .create_token(u.id, "test", "test")
        .await?
        .token
        .to_string())
}

struct Fixture {
    app: Router,
    admin: String,
    receiver: String,
    /// The administrator of another tenant, `other`.
    stranger: String,
    receiver_name: String,
    alias: String,
}

async fn fixture(db: &TestDb) -> Result<Fixture, Err> {
    let svc = Service::new(db.store.clone(), Catalog::builtin()?);
    let setup = demo::prepare(&svc, ProcedureId::DualTrust, 2048, Utc::now()).await?;
    let other = db
        .store
        .create_tenant(&TenantName::parse("other")?, "test")
        .await?;
    let u = db
        .store
        .add_user(&Email::parse("admin@other.example")?, "test")
        .await?;
    db.store
        .grant(u.id, Grant::TenantAdmin { tenant: other.id }, "test")
        .await?;
    Ok(Fixture {
        admin: token(db, TENANT_ADMIN).await?,
        receiver: token(db, &receiver_admin(ProcedureId::DualTrust)).await?,
        stranger: token(db, "admin@other.example").await?,
        receiver_name: setup.receiver_name.to_string(),
        alias: setup.alias.to_string(),
        app: app(AppState::new(svc, "http://rekey.test")?),
    })
}

/// One request with a raw body; returns status, content type and the body as JSON (or a JSON
/// string of the text).
async fn raw(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, String, Value), Err> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app.clone().oneshot(req.body(Body::from(body))?).await?;
    let status = res.status();
    let media = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = to_bytes(res.into_body(), 10 << 20).await?;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, media, v))
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), Err> {
    let bytes = match body {
        Some(b) => serde_json::to_vec(&b)?,
        None => Vec::new(),
    };
    let (s, media, v) = raw(app, method, path, Some(token), "application/json", bytes).await?;
    assert!(
        media.starts_with("application/json"),
        "{method} {path}: {media} {v}"
    );
    Ok((s, v))
}

/// A 4xx JSON error naming `field`.
fn names_field(s: StatusCode, v: &Value, field: &str) {
    assert!(s.is_client_error(), "{s} {v}");
    assert_eq!(v["field"], field, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(field)),
        "the message names {field}: {v}"
    );
}

#[tokio::test]
async fn input_errors_are_4xx_json_naming_the_field_after_the_role() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let audit = db.audit_len().await?;
        let body = |bits: Value| {
            json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": bits})
        };
        // Out of range: the tenant administrator is told which field.
        for bits in [json!(1024), json!(0), json!(5000)] {
            let (s, v) = call(&f.app, "POST", "/api/renewals", &f.admin, Some(body(bits))).await?;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
            names_field(s, &v, "bits");
        }
        // Not a number, or a negative one: the field again.
        for bits in [json!("big"), json!(-1)] {
            let (s, v) = call(&f.app, "POST", "/api/renewals", &f.admin, Some(body(bits))).await?;
            names_field(s, &v, "bits");
        }
        // Someone who may not start a renewal learns only that.
        let (s, v) = call(&f.app, "POST", "/api/renewals", &f.receiver, Some(body(json!(1024)))).await?;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v.get("field").is_none(), "{v}");
        // A missing field, an unknown one, a malformed alias or tenant.
        let (s, v) = call(&f.app, "POST", "/api/renewals", &f.admin, Some(json!({"tenant": "demo", "alias": "a"}))).await?;
        names_field(s, &v, "receiver");
        let mut extra = body(json!(2048));
        extra["colour"] = json!("blue");
        let (s, v) = call(&f.app, "POST", "/api/renewals", &f.admin, Some(extra)).await?;
        names_field(s, &v, "colour");
        let mut bad = body(json!(2048));
        bad["alias"] = json!("bad alias!");
        let (s, v) = call(&f.app, "POST", "/api/renewals", &f.admin, Some(bad)).await?;
        names_field(s, &v, "alias");
        let mut bad = body(json!(2048));
        bad["tenant"] = json!("");
        let (s, v) = call(&f.app, "POST", "/api/renewals", &f.admin, Some(bad)).await?;
        names_field(s, &v, "tenant");
        // A form that does not parse, and a body over the limit: JSON too, not plain text.
        let (s, media, v) = raw(&f.app, "POST", "/signout", None, "application/x-www-form-urlencoded", b"x=1".to_vec()).await?;
        assert!(media.starts_with("application/json"), "{media} {v}");
        names_field(s, &v, "csrf");
        let big = vec![b'a'; 3 << 20];
        for path in ["/signout", "/api/renewals"] {
            let (s, media, v) = raw(&f.app, "POST", path, Some(&f.admin), "application/x-www-form-urlencoded", big.clone()).await?;
            assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{path} {v}");
            assert!(media.starts_with("application/json"), "{path}: {media}");
            assert!(v["error"].is_string(), "{v}");
        }
        assert_eq!(db.audit_len().await?, audit, "nothing happened");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn other_tenants_objects_answer_404_as_if_they_did_not_exist() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let (s, v) = call(
            &f.app,
            "POST",
            "/api/renewals",
            &f.admin,
            Some(json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 2048})),
        )
        .await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("id")?.to_string();
        let before = call(&f.app, "GET", &format!("/api/renewals/{id}"), &f.admin, None).await?;
        let audit = db.audit_len().await?;
        let unknown = uuid::Uuid::new_v4();
        // Every event on the renewal, by another tenant's administrator, and the same on a
        // renewal that does not exist: the same status and words, the id aside.
        let events: [(&str, Option<Value>); 7] = [
            ("tasks/{}/create-key-pair/approve", None),
            ("tasks/{}/trust-old-and-new/complete", Some(json!({"fingerprint": "00".repeat(32)}))),
            ("renewals/{}/cancel", None),
            ("renewals/{}/rollback", None),
            ("renewals/{}/window/accept", None),
            ("renewals/{}/window/propose", Some(json!({"start": "2030-01-01T22:00:00Z", "end": "2030-01-01T23:00:00Z"}))),
            ("renewals/{}/certificate", Some(json!({"chain_pem": "-----BEGIN CERTIFICATE-----"}))),
        ];
        for (path, body) in events {
            let mine = format!("/api/{}", path.replace("{}", &id));
            let none = format!("/api/{}", path.replace("{}", &unknown.to_string()));
            let (s1, v1) = call(&f.app, "POST", &mine, &f.stranger, body.clone()).await?;
            let (s2, v2) = call(&f.app, "POST", &none, &f.stranger, body).await?;
            assert_eq!(s1, StatusCode::NOT_FOUND, "{mine}: {v1}");
            assert_eq!((s1, v1["error"].as_str().map(|e| e.replace(&id, "ID"))),
                       (s2, v2["error"].as_str().map(|e| e.replace(&unknown.to_string(), "ID"))),
                       "{mine}");
            let text = v1.to_string();
            for word in ["create-key-pair", "tenant_admin", "receiver_admin", "running", "not due", "step"] {
                assert!(!text.contains(word), "{mine} names {word:?}: {text}");
            }
        }
        for path in [format!("/api/renewals/{id}"), format!("/api/renewals/{id}/certificate-request")] {
            let (s, v) = call(&f.app, "GET", &path, &f.stranger, None).await?;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        }
        // Starting a renewal in the tenant: as if there were no tenant `demo`.
        let start = |tenant: &str, receiver: &str| {
            json!({"tenant": tenant, "receiver": receiver, "alias": f.alias, "bits": 2048})
        };
        let (s1, v1) = call(&f.app, "POST", "/api/renewals", &f.stranger, Some(start("demo", &f.receiver_name))).await?;
        let (s2, v2) = call(&f.app, "POST", "/api/renewals", &f.stranger, Some(start("demo", "no-such-receiver"))).await?;
        let (s3, v3) = call(&f.app, "POST", "/api/renewals", &f.stranger, Some(start("nosuch", "x"))).await?;
        assert_eq!(s1, StatusCode::NOT_FOUND, "{v1}");
        assert_eq!((s1, &v1), (s2, &v2));
        assert_eq!((s1, v1["error"].as_str().map(|e| e.replace("demo", "T"))),
                   (s3, v3["error"].as_str().map(|e| e.replace("nosuch", "T"))));
        assert_eq!(v1["field"], "tenant", "{v1}");
        assert_eq!(call(&f.app, "GET", &format!("/api/renewals/{id}"), &f.admin, None).await?, before);
        assert_eq!(db.audit_len().await?, audit, "nothing happened");
        Ok(())
    })
    .await;
}

/// `POST /api/renewals` with an `Idempotency-Key`.
async fn start_with_key(
    f: &Fixture,
    key: &str,
    body: &Value,
) -> Result<(StatusCode, Option<String>, Value), Err> {
    let req = Request::builder()
        .method("POST")
        .uri("/api/renewals")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", key)
        .body(Body::from(serde_json::to_vec(body)?))?;
    let res = f.app.clone().oneshot(req).await?;
    let status = res.status();
    let replayed = res
        .headers()
        .get("idempotency-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = to_bytes(res.into_body(), 10 << 20).await?;
    Ok((status, replayed, serde_json::from_slice(&bytes)?))
}

/// A retry with the same `Idempotency-Key` and body (the client lost the first answer) gets the
/// first answer again — even after the renewal moved on — and starts nothing; the same key with
/// another body is refused (422) naming the header; a malformed key is refused (400).
#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_starts_nothing() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let body =
            json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 2048});
        let (s, replayed, first) = start_with_key(&f, "retry-1", &body).await?;
        assert_eq!((s, replayed), (StatusCode::CREATED, None), "{first}");
        let id = first["renewal"]["id"].as_str().ok_or("id")?.to_string();
        let audit = db.audit_len().await?;
        for _ in 0..2 {
            let (s, replayed, again) = start_with_key(&f, "retry-1", &body).await?;
            assert_eq!(s, StatusCode::CREATED, "{again}");
            assert_eq!(replayed.as_deref(), Some("true"));
            assert_eq!(again, first, "the first answer, byte for byte");
        }
        assert_eq!(db.audit_len().await?, audit, "nothing done again");
        let (s, list) = call(&f.app, "GET", "/api/renewals", &f.admin, None).await?;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        // The same key with another body: refused, naming the key; nothing started.
        let mut other = body.clone();
        other["bits"] = json!(3072);
        let (s, _, v) = start_with_key(&f, "retry-1", &other).await?;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], "Idempotency-Key", "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("retry-1")),
            "{v}"
        );
        // After the renewal was cancelled, the retry still gets the first answer, not a new
        // renewal.
        let (s, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/cancel"),
            &f.admin,
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _, again) = start_with_key(&f, "retry-1", &body).await?;
        assert_eq!((s, &again), (StatusCode::CREATED, &first));
        let (_, list) = call(&f.app, "GET", "/api/renewals", &f.admin, None).await?;
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        // A new key starts a new renewal.
        let (s, replayed, v) = start_with_key(&f, "retry-2", &body).await?;
        assert_eq!((s, replayed), (StatusCode::CREATED, None), "{v}");
        assert_ne!(v["renewal"]["id"], first["renewal"]["id"]);
        // A key that is not 1 to 255 visible characters.
        let (s, _, v) = start_with_key(&f, &"k".repeat(256), &body).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["field"], "Idempotency-Key", "{v}");
        Ok(())
    })
    .await;
}

/// A GET of `path` with `host` (if any) on `app`: status, headers, body text.
async fn get_with_host(
    app: &Router,
    path: &str,
    host: Option<&str>,
) -> Result<(StatusCode, rekey_server::axum::http::HeaderMap, String), Err> {
    let mut req = Request::builder().uri(path);
    if let Some(h) = host {
        req = req.header(header::HOST, h);
    }
    let res = app.clone().oneshot(req.body(Body::empty())?).await?;
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = to_bytes(res.into_body(), 1 << 20).await?;
    Ok((
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// The server answers only for its base URL's host (421 otherwise), sends HSTS under an https
/// base URL, and refuses a form posted with `Origin: null` as one from another site.
#[tokio::test]
async fn host_hsts_and_origin_null() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let (s, h, _) = get_with_host(&f.app, "/healthz", Some("rekey.test")).await?;
        assert_eq!(s, StatusCode::OK);
        assert!(
            h.get(header::STRICT_TRANSPORT_SECURITY).is_none(),
            "no HSTS over http"
        );
        let (s, _, _) = get_with_host(&f.app, "/healthz", Some("REKEY.test")).await?;
        assert_eq!(s, StatusCode::OK, "host names are case-insensitive");
        for host in ["evil.example", "rekey.test:8443", "127.0.0.1"] {
            for path in ["/healthz", "/api/tasks", "/", "/metrics"] {
                let (s, h, body) = get_with_host(&f.app, path, Some(host)).await?;
                assert_eq!(s, StatusCode::MISDIRECTED_REQUEST, "{host} {path}: {body}");
                assert!(
                    h[header::CONTENT_TYPE]
                        .to_str()?
                        .starts_with("application/json")
                );
                assert!(body.contains("rekey.test"), "{body}");
            }
        }
        let svc = Service::new(db.store.clone(), Catalog::builtin()?);
        let https = app(AppState::new(svc, "https://rekey.example.com")?);
        for path in ["/healthz", "/", "/api/tasks", "/nothing"] {
            let (_, h, _) = get_with_host(&https, path, Some("rekey.example.com")).await?;
            let hsts = h
                .get(header::STRICT_TRANSPORT_SECURITY)
                .ok_or("HSTS under https")?
                .to_str()?;
            assert!(hsts.starts_with("max-age="), "{hsts}");
        }
        // A form posted with `Origin: null` (a sandboxed frame, a data: page) and no
        // Sec-Fetch-Site is refused as coming from another site, before its CSRF token is read.
        let req = Request::builder()
            .method("POST")
            .uri("/tasks/some-link-token")
            .header(header::HOST, "rekey.example.com")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, "null")
            .body(Body::from("csrf=x&action=signin"))?;
        let res = https.clone().oneshot(req).await?;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers().get(header::SET_COOKIE).is_none());
        let page = String::from_utf8_lossy(&to_bytes(res.into_body(), 1 << 20).await?).into_owned();
        assert!(page.contains("another site"), "{page}");
        Ok(())
    })
    .await;
}

/// `GET /api/renewals` pages: `limit` bounds a page, a full page names the next in `Link`,
/// `status` filters, another tenant's administrator sees none of it, and each wrong query
/// parameter is a 400 naming it.
#[tokio::test]
async fn renewal_list_pages_filters_and_names_a_wrong_query_parameter() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let start =
            json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 2048});
        let (s, v) = call(&f.app, "POST", "/api/renewals", &f.admin, Some(start)).await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("renewal id")?.to_string();
        let get = |path: String, token: String| {
            let app = f.app.clone();
            async move {
                let req = Request::builder()
                    .uri(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())?;
                let res = app.oneshot(req).await?;
                let status = res.status();
                let link = res
                    .headers()
                    .get(header::LINK)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let bytes = to_bytes(res.into_body(), 10 << 20).await?;
                Ok::<_, Err>((status, link, serde_json::from_slice::<Value>(&bytes)?))
            }
        };
        let (s, link, v) = get("/api/renewals?limit=1".into(), f.admin.clone()).await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v[0]["id"], id.as_str(), "{v}");
        let link = link.ok_or("a full page names the next")?;
        assert_eq!(
            link,
            format!("</api/renewals?after={id}&limit=1>; rel=\"next\"")
        );
        let next = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .ok_or("link")?;
        let (s, link, v) = get(next.into(), f.admin.clone()).await?;
        assert_eq!(
            (s, v.as_array().map(Vec::len)),
            (StatusCode::OK, Some(0)),
            "{v}"
        );
        assert!(link.is_none(), "the last page names no next");
        let (_, _, v) = get("/api/renewals?status=running".into(), f.admin.clone()).await?;
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        let (_, _, v) = get("/api/renewals?status=completed".into(), f.admin.clone()).await?;
        assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
        let (_, _, v) = get("/api/renewals".into(), f.stranger.clone()).await?;
        assert_eq!(
            v.as_array().map(Vec::len),
            Some(0),
            "another tenant's renewals: {v}"
        );
        let (_, _, v) = get("/api/renewals".into(), f.receiver.clone()).await?;
        assert_eq!(v[0]["id"], id.as_str(), "the receiver's administrator: {v}");
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=many", "limit"),
            ("status=done", "status"),
            ("after=nope", "after"),
            ("colour=blue", "colour"),
        ] {
            let (s, _, v) = get(format!("/api/renewals?{query}"), f.admin.clone()).await?;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
            names_field(s, &v, field);
        }
        Ok(())
    })
    .await;
}
