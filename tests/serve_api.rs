//! `rekey serve`'s router driven with `tower::ServiceExt::oneshot` against a real store (SQLite,
//! and PostgreSQL when `REKEY_TEST_POSTGRES_URL` is set): bearer tokens required, the engine's
//! role rule and fingerprint check through HTTP with nothing changed on refusal, JSON errors
//! without internals, the OpenAPI document listing every route (and every answer of the router
//! to a documented operation carrying a documented status and media type), the document valid
//! as OpenAPI 3.1 to an independent validator with real bodies matching its schemas, metrics,
//! security headers.

use std::collections::BTreeSet;
use std::sync::OnceLock;

mod common;

use chrono::Utc;
use common::openssl;
use rekey_engine::{Catalog, ProcedureId};
use rekey_model::Email;
use rekey_server::axum::Router;
use rekey_server::axum::body::{Body, to_bytes};
use rekey_server::axum::http::{Request, StatusCode, header};
use rekey_server::{AppState, api, app, openapi};
use rekey_service::Service;
use rekey_service::demo::{self, DEVELOPER, TENANT_ADMIN, receiver_admin};
use rekey_testdb::{TestDb, TestResult, on_both};
use serde_json::{Value, json};
use tower::ServiceExt;

type Err = Box<dyn std::error::Error + Send + Sync>;

struct Fixture {
    app: Router,
    admin: String,
    receiver: String,
    developer: String,
    receiver_name: String,
    alias: String,
    flow: String,
    step: String,
}

async fn token(db: &TestDb, email: &str) -> Result<String, Err> {
    let u = db.store.user_by_email(&Email::parse(email)?).await?;
    Ok(db
        .store
        .create_token(u.id, "test", "test")
        .await?
        .token
        .to_string())
}

async fn fixture(db: &TestDb) -> Result<Fixture, Err> {
    let svc = Service::new(db.store.clone(), Catalog::builtin()?);
    let setup = demo::prepare(&svc, ProcedureId::DualTrust, 2048, Utc::now()).await?;
    Ok(Fixture {
        admin: token(db, TENANT_ADMIN).await?,
        receiver: token(db, &receiver_admin(ProcedureId::DualTrust)).await?,
        developer: token(db, DEVELOPER).await?,
        receiver_name: setup.receiver_name.to_string(),
        alias: setup.alias.to_string(),
        flow: setup.flow.to_string(),
        step: setup.step.to_string(),
        app: app(AppState::new(svc, "http://rekey.test")?),
    })
}

/// One request; returns status, headers and the body as JSON (or a JSON string of the text).
async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, rekey_server::axum::http::HeaderMap, Value), Err> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&b)?))?,
        None => req.body(Body::empty())?,
    };
    let res = app.clone().oneshot(req).await?;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = to_bytes(res.into_body(), 10 << 20).await?;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    check_documented(method, path, status, media.as_deref())?;
    Ok((status, headers, v))
}

/// The document, built once.
fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(openapi::build)
}

/// The documented path template `path` is an instance of, if any.
fn template_of(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    document()["paths"].as_object()?.keys().find_map(|t| {
        let tsegs: Vec<&str> = t.split('/').collect();
        (tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty())))
        .then(|| t.clone())
    })
}

/// Every answer of the router to a documented operation carries a status code, and a media
/// type, that the document lists for that operation.
fn check_documented(
    method: &str,
    path: &str,
    status: StatusCode,
    media: Option<&str>,
) -> Result<(), Err> {
    let Some(template) = template_of(path) else {
        return Ok(());
    };
    let op = &document()["paths"][&template][method.to_ascii_lowercase()];
    if !op.is_object() {
        return Ok(());
    }
    let response = &op["responses"][status.as_str()];
    if !response.is_object() {
        return Err(format!("{method} {path}: {status} is not documented for {template}").into());
    }
    if let Some(media) = media
        && !response["content"][media].is_object()
    {
        return Err(format!(
            "{method} {path}: {status} answered {media}, documented {}",
            response["content"]
        )
        .into());
    }
    Ok(())
}

async fn start(f: &Fixture) -> Result<String, Err> {
    let (s, _, v) = call(
        &f.app,
        "POST",
        "/api/renewals",
        Some(&f.admin),
        Some(
            json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 2048}),
        ),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    Ok(v["renewal"]["id"].as_str().ok_or("renewal id")?.to_string())
}

async fn renewal(f: &Fixture, id: &str) -> Result<Value, Err> {
    let (s, _, v) = call(
        &f.app,
        "GET",
        &format!("/api/renewals/{id}"),
        Some(&f.admin),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    Ok(v)
}

fn step_status<'a>(r: &'a Value, step: &str) -> &'a Value {
    r["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == step))
        .map(|x| &x["status"])
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn every_api_route_requires_a_valid_bearer_token() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let id = uuid::Uuid::new_v4().to_string();
        for r in api::routes().iter().filter(|r| r.path.starts_with("/api/")) {
            let path = r
                .path
                .replace("{renewal}", &id)
                .replace("{id}", &id)
                .replace("{step}", "s");
            for tok in [None, Some("not-a-token"), Some("")] {
                let (s, h, v) = call(&f.app, r.method, &path, tok, None).await?;
                assert_eq!(
                    s,
                    StatusCode::UNAUTHORIZED,
                    "{} {path} with {tok:?}: {v}",
                    r.method
                );
                assert!(v["error"].is_string(), "{v}");
                assert!(h.contains_key(header::WWW_AUTHENTICATE));
            }
        }
        // The scheme is matched case-insensitively (RFC 7235); the token is not.
        let good = &f.admin;
        for scheme in ["bearer", "BEARER", "Bearer"] {
            let req = Request::builder()
                .uri("/api/tasks")
                .header(header::AUTHORIZATION, format!("{scheme} {good}"))
                .body(Body::empty())?;
            let res = f.app.clone().oneshot(req).await?;
            assert_eq!(res.status(), StatusCode::OK, "scheme {scheme:?}");
        }
        let req = Request::builder()
            .uri("/api/tasks")
            .header(header::AUTHORIZATION, format!("Basic {good}"))
            .body(Body::empty())?;
        let res = f.app.clone().oneshot(req).await?;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "another scheme");
        // Unauthenticated routes stay open.
        let (s, _, v) = call(&f.app, "GET", "/healthz", None, None).await?;
        assert_eq!((s, v), (StatusCode::OK, json!("ok\n")));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn wrong_role_is_refused_with_403_and_nothing_changes() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let id = start(&f).await?;
        let before = renewal(&f, &id).await?;
        let audit = db.audit_len().await?;
        // The receiver administrator and the developer may not approve the key generation.
        for tok in [&f.receiver, &f.developer] {
            let (s, _, v) = call(
                &f.app,
                "POST",
                &format!("/api/tasks/{id}/create-key-pair/approve"),
                Some(tok),
                None,
            )
            .await?;
            assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
            let msg = v["error"].as_str().ok_or("error text")?;
            assert!(
                msg.contains("tenant_admin") && msg.contains("create-key-pair"),
                "the engine's words: {msg}"
            );
        }
        // Nor start a renewal.
        let (s, _, v) = call(
            &f.app,
            "POST",
            "/api/renewals",
            Some(&f.receiver),
            Some(json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 2048})),
        )
        .await?;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(renewal(&f, &id).await?, before, "renewal unchanged");
        assert_eq!(db.audit_len().await?, audit, "nothing audited: nothing happened");
        // The owner may.
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(step_status(&v["renewal"], "create-key-pair")["status"], "done", "{v}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn wrong_fingerprint_is_refused_and_the_right_one_advances() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let id = start(&f).await?;
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _, tasks) = call(&f.app, "GET", "/api/tasks", Some(&f.receiver), None).await?;
        assert_eq!(s, StatusCode::OK);
        let task = tasks
            .as_array()
            .and_then(|t| t.iter().find(|t| t["step"] == "trust-old-and-new"))
            .ok_or("the receiver administrator's task is listed")?;
        let fp = task["new_certificate"]
            .as_str()
            .ok_or("fingerprint shown")?
            .to_string();
        let before = renewal(&f, &id).await?;
        let audit = db.audit_len().await?;
        let path = format!("/api/tasks/{id}/trust-old-and-new/complete");
        let wrong = "00".repeat(32);
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.receiver),
            Some(json!({"fingerprint": wrong})),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not match the new certificate")),
            "{v}"
        );
        // Bad input is named, not a crash.
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.receiver),
            Some(json!({"fingerprint": 5})),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(renewal(&f, &id).await?, before, "renewal unchanged");
        assert_eq!(db.audit_len().await?, audit);
        // The tenant administrator holds no receiver role.
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.admin),
            Some(json!({"fingerprint": fp})),
        )
        .await?;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.receiver),
            Some(json!({"fingerprint": fp.to_uppercase()})),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            step_status(&v["renewal"], "trust-old-and-new")["status"],
            "done",
            "{v}"
        );
        // Done twice: a conflict, in the engine's words.
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.receiver),
            Some(json!({"fingerprint": fp})),
        )
        .await?;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        Ok(())
    })
    .await;
}

/// `fp` as `openssl x509 -fingerprint -sha256` prints it: upper case, colon-separated.
fn colon_upper(fp: &str) -> String {
    fp.to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The right digits padded with a NUL byte, a zero-width space or markup, and an empty or
/// absent value: each a 400 naming the field and what is wrong, with the step still due and
/// nothing recorded; the colon-separated upper-case and plain lower-case forms still confirm.
#[tokio::test]
async fn junk_padded_fingerprint_is_refused_and_changes_nothing() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let id = start(&f).await?;
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _, tasks) = call(&f.app, "GET", "/api/tasks", Some(&f.receiver), None).await?;
        assert_eq!(s, StatusCode::OK);
        let fp = tasks
            .as_array()
            .and_then(|t| t.iter().find(|t| t["step"] == "trust-old-and-new"))
            .and_then(|t| t["new_certificate"].as_str())
            .ok_or("the receiver administrator's task names the certificate")?
            .to_string();
        let before = renewal(&f, &id).await?;
        let audit = db.audit_len().await?;
        let path = format!("/api/tasks/{id}/trust-old-and-new/complete");
        let refusals = [
            (
                json!({"fingerprint": format!("{fp}\u{0}")}),
                "fingerprint: character 65 (\\0, U+0000) is not a hex digit",
            ),
            (
                json!({"fingerprint": format!("{fp}\u{200B}")}),
                "fingerprint: character 65",
            ),
            (
                json!({"fingerprint": format!("<b>{fp}</b>")}),
                "fingerprint: character 1 (<, U+003C) is not a hex digit",
            ),
            (json!({"fingerprint": ""}), "fingerprint: empty"),
            (json!({"fingerprint": " "}), "fingerprint: empty"),
            (json!({}), "fingerprint: empty"),
        ];
        for (body, needle) in refusals {
            let (s, _, v) =
                call(&f.app, "POST", &path, Some(&f.receiver), Some(body.clone())).await?;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
            let e = v["error"].as_str().ok_or("a JSON error")?;
            assert!(
                e.contains(needle) && e.contains("64 hex digits"),
                "{body}: {e}"
            );
            let now = renewal(&f, &id).await?;
            assert_eq!(step_status(&now, "trust-old-and-new")["status"], "due");
            assert_eq!(now, before, "{body} changed the renewal");
            assert_eq!(db.audit_len().await?, audit, "{body} was recorded");
        }
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.receiver),
            Some(json!({"fingerprint": colon_upper(&fp)})),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            step_status(&v["renewal"], "trust-old-and-new")["status"],
            "done",
            "{v}"
        );
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/exchange-key-pair/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/remove-old-trust/complete"),
            Some(&f.receiver),
            Some(json!({"fingerprint": fp.to_lowercase()})),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            step_status(&v["renewal"], "remove-old-trust")["status"],
            "done",
            "{v}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn unknown_and_bad_input_are_named_and_renewals_are_scoped() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let id = start(&f).await?;
        let unknown = uuid::Uuid::new_v4();
        let (s, _, v) = call(
            &f.app,
            "GET",
            &format!("/api/renewals/{unknown}"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, _, v) = call(&f.app, "GET", "/api/renewals/nope", Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/no-such-step/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, _, v) = call(
            &f.app,
            "POST",
            "/api/renewals",
            Some(&f.admin),
            Some(json!({"tenant": "demo"})),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("missing field")),
            "{v}"
        );
        let (s, _, v) = call(
            &f.app,
            "POST",
            "/api/renewals",
            Some(&f.admin),
            Some(json!({"tenant": "nosuch", "receiver": "x", "alias": "a"})),
        )
        .await?;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        // An alias is parsed where the request enters: a bad one (renewed or new) is a 400
        // naming it.
        for body in [
            json!({"tenant": "demo", "receiver": f.receiver_name, "alias": "bad alias!"}),
            json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "new_alias": "bad alias!"}),
        ] {
            let (s, _, v) = call(&f.app, "POST", "/api/renewals", Some(&f.admin), Some(body)).await?;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("alias") && e.contains("bad alias!")),
                "{v}"
            );
        }
        let (s, _, v) = call(&f.app, "GET", "/api/nothing", Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, _, v) = call(&f.app, "DELETE", "/api/tasks", Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
        assert!(v["error"].is_string(), "{v}");
        // Listing: the tenant's and the receiver's people see it.
        for tok in [&f.admin, &f.receiver, &f.developer] {
            let (s, _, v) = call(&f.app, "GET", "/api/renewals", Some(tok), None).await?;
            assert_eq!(s, StatusCode::OK);
            assert!(
                v.as_array()
                    .is_some_and(|a| a.iter().any(|r| r["id"] == id.as_str())),
                "{v}"
            );
        }
        // Cancel through the API, by its owner.
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/cancel"),
            Some(&f.receiver),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/cancel"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["renewal"]["status"], "cancelled");
        // A window on a dual-trust renewal is refused, not a crash.
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/window/propose"),
            Some(&f.admin),
            Some(json!({"start": "2030-01-01T22:00:00Z", "end": "2030-01-01T23:00:00Z"})),
        )
        .await?;
        assert!(s.is_client_error(), "{s} {v}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn openapi_lists_every_route_and_every_route_is_served() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let (s, _, doc) = call(&f.app, "GET", "/openapi.json", None, None).await?;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(doc, openapi::build());
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1.")),
            "{}",
            doc["openapi"]
        );
        // The document and the route table list the same operations.
        let routes = api::routes();
        let served: BTreeSet<(String, String)> = routes
            .iter()
            .map(|r| (r.method.to_ascii_lowercase(), r.path.clone()))
            .collect();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().ok_or("paths")? {
            for method in ops.as_object().ok_or("ops")?.keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(served, documented, "routes served vs documented");
        assert_eq!(served.len(), routes.len(), "every route once");
        let id = uuid::Uuid::new_v4().to_string();
        for r in &routes {
            let op = &doc["paths"][&r.path][r.method.to_ascii_lowercase()];
            let api = r.path.starts_with("/api/");
            assert_eq!(op["security"].is_array(), api, "{} {}", r.method, r.path);
            let responses = op["responses"].as_object().ok_or("responses")?;
            // Every response has a body, described by a schema.
            for (code, response) in responses {
                let content = response["content"].as_object().ok_or("content")?;
                assert!(
                    !content.is_empty() && content.values().all(|m| m["schema"].is_object()),
                    "{} {} {code}: {response}",
                    r.method,
                    r.path
                );
            }
            if api {
                for code in ["401", "500"] {
                    assert_eq!(
                        responses[code]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{} {} {code}",
                        r.method,
                        r.path
                    );
                }
            }
            // Served: the router answers something other than "no such route" / 405.
            let path = r
                .path
                .replace("{renewal}", &id)
                .replace("{id}", &id)
                .replace("{step}", "s");
            let (s, _, v) = call(&f.app, r.method, &path, Some(&f.admin), Some(json!({}))).await?;
            assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{} {path}", r.method);
            assert_ne!(
                v["error"], "no such route; see /openapi.json",
                "{} {path}",
                r.method
            );
            // And not with a method the document does not list.
            for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                if served.contains(&(other.to_ascii_lowercase(), r.path.clone())) {
                    continue;
                }
                let (s, _, v) = call(&f.app, other, &path, Some(&f.admin), None).await?;
                assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}: {v}");
            }
        }
        Ok(())
    })
    .await;
}

/// The Python interpreter `cargo xtask test` sets up (`target/xtask-venv`, with
/// openapi-spec-validator): an OpenAPI validator not written here.
fn test_python() -> Result<String, Err> {
    std::env::var("REKEY_TEST_PYTHON").map_err(|_| {
        "REKEY_TEST_PYTHON is not set: run the tests with `cargo xtask test` (it creates \
         target/xtask-venv with openapi-spec-validator and exports its python), or point it \
         at a python with openapi-spec-validator==0.9.0 installed"
            .into()
    })
}

/// Checks each recorded answer against the document: its status and media type are documented
/// for the operation and its body validates against the documented schema (OpenAPI 3.1's
/// JSON Schema dialect, by openapi-schema-validator).
const CHECK_BODIES: &str = r#"
import json, sys
from openapi_schema_validator import OAS31Validator
doc = json.load(open(sys.argv[1]))
cases = json.load(open(sys.argv[2]))
failures = []
for c in cases:
    where = "%s %s -> %s %s" % (c["method"].upper(), c["path"], c["status"], c["media"])
    op = doc["paths"][c["path"]][c["method"]]
    response = op["responses"].get(c["status"])
    if response is None:
        failures.append(where + ": status not documented")
        continue
    media = response.get("content", {}).get(c["media"])
    if media is None:
        failures.append(where + ": media type not documented")
        continue
    schema = dict(media["schema"], components=doc["components"])
    errors = [e.message for e in OAS31Validator(schema).iter_errors(c["body"])]
    if errors:
        failures.append(where + ": " + "; ".join(errors[:3]))
print("%d bodies checked" % len(cases))
if failures:
    print("\n".join(failures))
    sys.exit(1)
"#;

/// One request, recorded for [`CHECK_BODIES`] as the documented operation it is an instance of.
async fn recorded(
    cases: &mut Vec<Value>,
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), Err> {
    let (s, h, v) = call(app, method, path, token, body).await?;
    let media = h
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .ok_or("no content type")?
        .trim()
        .to_string();
    let template = template_of(path).ok_or("not a documented path")?;
    cases.push(
        json!({"method": method.to_ascii_lowercase(), "path": template,
                      "status": s.as_str(), "media": media, "body": v}),
    );
    Ok((s, v))
}

#[tokio::test]
async fn openapi_document_validates_as_openapi_3_1_and_real_bodies_match_it() {
    let python = match test_python() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let dir = tempfile::tempdir()?;
        // The document as served, validated as OpenAPI 3.1.
        let (s, _, doc) = call(&f.app, "GET", "/openapi.json", None, None).await?;
        assert_eq!(s, StatusCode::OK);
        let doc_file = dir.path().join("openapi.json");
        std::fs::write(&doc_file, serde_json::to_vec_pretty(&doc)?)?;
        let out = std::process::Command::new(&python)
            .args(["-m", "openapi_spec_validator"])
            .arg(&doc_file)
            .output()?;
        assert!(
            out.status.success(),
            "openapi-spec-validator refuses /openapi.json:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // Real answers of every operation, successes and refusals.
        let mut cases = Vec::new();
        let c = &mut cases;
        let (admin, receiver) = (Some(f.admin.as_str()), Some(f.receiver.as_str()));
        for path in ["/healthz", "/metrics", "/openapi.json"] {
            assert_eq!(recorded(c, &f.app, "GET", path, None, None).await?.0, StatusCode::OK);
        }
        let start = json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 2048});
        let (s, v) = recorded(c, &f.app, "POST", "/api/renewals", admin, Some(start.clone())).await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("id")?.to_string();
        let (s, _) = recorded(c, &f.app, "POST", "/api/renewals", admin, Some(start)).await?;
        assert_eq!(s, StatusCode::CONFLICT);
        let approve = format!("/api/tasks/{id}/create-key-pair/approve");
        assert_eq!(recorded(c, &f.app, "POST", &approve, receiver, None).await?.0, StatusCode::FORBIDDEN);
        assert_eq!(recorded(c, &f.app, "POST", &approve, admin, None).await?.0, StatusCode::OK);
        let (s, tasks) = recorded(c, &f.app, "GET", "/api/tasks", receiver, None).await?;
        assert_eq!(s, StatusCode::OK);
        assert!(tasks.as_array().is_some_and(|t| !t.is_empty()), "{tasks}");
        let complete = format!("/api/tasks/{id}/trust-old-and-new/complete");
        let wrong = json!({"fingerprint": "ab".repeat(32)});
        assert_eq!(recorded(c, &f.app, "POST", &complete, receiver, Some(wrong)).await?.0, StatusCode::BAD_REQUEST);
        let big = json!({"fingerprint": "a".repeat(3 << 20)});
        assert_eq!(recorded(c, &f.app, "POST", &complete, receiver, Some(big)).await?.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(recorded(c, &f.app, "GET", "/api/renewals", admin, None).await?.0, StatusCode::OK);
        assert_eq!(recorded(c, &f.app, "GET", &format!("/api/renewals/{id}"), admin, None).await?.0, StatusCode::OK);
        let unknown = format!("/api/renewals/{}", uuid::Uuid::new_v4());
        assert_eq!(recorded(c, &f.app, "GET", &unknown, admin, None).await?.0, StatusCode::NOT_FOUND);
        assert_eq!(recorded(c, &f.app, "GET", "/api/renewals/nope", admin, None).await?.0, StatusCode::BAD_REQUEST);
        assert_eq!(recorded(c, &f.app, "GET", "/api/tasks", Some("not-a-token"), None).await?.0, StatusCode::UNAUTHORIZED);
        let csr = format!("/api/renewals/{id}/certificate-request");
        assert_eq!(recorded(c, &f.app, "GET", &csr, admin, None).await?.0, StatusCode::CONFLICT);
        let chain = json!({"chain_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"});
        let upload = format!("/api/renewals/{id}/certificate");
        assert!(recorded(c, &f.app, "POST", &upload, admin, Some(chain)).await?.0.is_client_error());
        let window = json!({"start": "2030-01-01T22:00:00Z", "end": "2030-01-01T23:00:00Z"});
        let propose = format!("/api/renewals/{id}/window/propose");
        assert!(recorded(c, &f.app, "POST", &propose, admin, Some(window)).await?.0.is_client_error());
        let accept = format!("/api/renewals/{id}/window/accept");
        assert!(recorded(c, &f.app, "POST", &accept, admin, None).await?.0.is_client_error());
        let rollback = format!("/api/renewals/{id}/rollback");
        assert!(recorded(c, &f.app, "POST", &rollback, admin, None).await?.0.is_client_error());
        let cancel = format!("/api/renewals/{id}/cancel");
        assert_eq!(recorded(c, &f.app, "POST", &cancel, admin, None).await?.0, StatusCode::OK);

        // A CA-signed renewal: its certificate request as PEM.
        let start = json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias,
                           "bits": 2048, "ca_signed": true});
        let (s, v) = recorded(c, &f.app, "POST", "/api/renewals", admin, Some(start)).await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("id")?.to_string();
        let approve = format!("/api/tasks/{id}/create-key-pair/approve");
        assert_eq!(recorded(c, &f.app, "POST", &approve, admin, None).await?.0, StatusCode::OK);
        let csr = format!("/api/renewals/{id}/certificate-request");
        assert_eq!(recorded(c, &f.app, "GET", &csr, admin, None).await?.0, StatusCode::OK);

        // The downtime-window procedure: a window proposed and accepted.
        let p = ProcedureId::DowntimeWindow;
        let svc = Service::new(db.store.clone(), Catalog::builtin()?);
        let setup = demo::prepare(&svc, p, 2048, Utc::now()).await?;
        let receiver = token(db, &receiver_admin(p)).await?;
        let start = json!({"tenant": "demo", "receiver": setup.receiver_name.to_string(),
                           "alias": setup.alias, "procedure": "downtime-window", "bits": 2048});
        let (s, v) = recorded(c, &f.app, "POST", "/api/renewals", admin, Some(start)).await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("id")?.to_string();
        let approve = format!("/api/tasks/{id}/create-key-pair/approve");
        assert_eq!(recorded(c, &f.app, "POST", &approve, admin, None).await?.0, StatusCode::OK);
        let opens = Utc::now() + chrono::Duration::days(2);
        let window = json!({"start": opens.to_rfc3339(), "end": (opens + chrono::Duration::hours(1)).to_rfc3339()});
        let propose = format!("/api/renewals/{id}/window/propose");
        assert_eq!(recorded(c, &f.app, "POST", &propose, admin, Some(window)).await?.0, StatusCode::OK);
        let accept = format!("/api/renewals/{id}/window/accept");
        assert_eq!(recorded(c, &f.app, "POST", &accept, Some(&receiver), None).await?.0, StatusCode::OK);
        assert_eq!(recorded(c, &f.app, "GET", "/api/renewals", admin, None).await?.0, StatusCode::OK);

        // Signing as the fixture's step: DER, Base64, and a refusal naming the field
        // (tests/serve_sign.rs checks the SignedData itself with OpenSSL).
        let sign = json!({"tenant": "demo", "flow": f.flow, "step": f.step, "payload": "PGEvPg=="});
        assert_eq!(recorded(c, &f.app, "POST", "/api/sign", admin, Some(sign.clone())).await?.0, StatusCode::OK);
        let mut b64 = sign.clone();
        b64["encoding"] = json!("base64");
        assert_eq!(recorded(c, &f.app, "POST", "/api/sign", admin, Some(b64)).await?.0, StatusCode::OK);
        let mut bad = sign;
        bad["payload"] = json!("%%%");
        let (s, v) = recorded(c, &f.app, "POST", "/api/sign", admin, Some(bad)).await?;
        assert_eq!((s, &v["field"]), (StatusCode::BAD_REQUEST, &json!("payload")), "{v}");
        assert_eq!(recorded(c, &f.app, "POST", "/api/sign", Some(receiver.as_str()), Some(json!({"flow": f.flow, "step": f.step, "payload": ""}))).await?.0, StatusCode::FORBIDDEN);

        // Tokens and users: the developer lists and revokes their own token; the tenant
        // administrator takes the developer's role and removes the receiver administrator.
        let dev = Some(f.developer.as_str());
        let (s, own) = recorded(c, &f.app, "GET", "/api/tokens", dev, None).await?;
        assert_eq!(s, StatusCode::OK, "{own}");
        let own_id = own[0]["id"].as_str().ok_or("token id")?.to_string();
        let unknown_token = format!("/api/tokens/{}", uuid::Uuid::new_v4());
        assert_eq!(recorded(c, &f.app, "DELETE", &unknown_token, dev, None).await?.0, StatusCode::NOT_FOUND);
        assert_eq!(recorded(c, &f.app, "DELETE", "/api/tokens/nope", dev, None).await?.0, StatusCode::BAD_REQUEST);
        let revoke = format!("/api/tokens/{own_id}");
        assert_eq!(recorded(c, &f.app, "DELETE", &revoke, dev, None).await?.0, StatusCode::OK);
        assert_eq!(recorded(c, &f.app, "GET", "/api/tokens", dev, None).await?.0, StatusCode::UNAUTHORIZED);
        let take = json!({"email": DEVELOPER, "role": "integration_developer", "tenant": "demo"});
        assert_eq!(recorded(c, &f.app, "POST", "/api/users/revoke-role", admin, Some(take.clone())).await?.0, StatusCode::OK);
        assert_eq!(recorded(c, &f.app, "POST", "/api/users/revoke-role", admin, Some(take)).await?.0, StatusCode::NOT_FOUND);
        let bad = json!({"email": DEVELOPER, "role": "boss", "tenant": "demo"});
        assert_eq!(recorded(c, &f.app, "POST", "/api/users/revoke-role", admin, Some(bad)).await?.0, StatusCode::BAD_REQUEST);
        let gone = json!({"email": receiver_admin(ProcedureId::DualTrust)});
        assert_eq!(recorded(c, &f.app, "POST", "/api/users/remove", admin, Some(gone.clone())).await?.0, StatusCode::OK);
        assert_eq!(recorded(c, &f.app, "POST", "/api/users/remove", admin, Some(gone)).await?.0, StatusCode::NOT_FOUND);

        // Every operation answered at least once.
        let seen: BTreeSet<(String, String)> = cases
            .iter()
            .map(|c| (c["method"].as_str().unwrap_or("").to_string(), c["path"].as_str().unwrap_or("").to_string()))
            .collect();
        for r in api::routes() {
            assert!(seen.contains(&(r.method.to_ascii_lowercase(), r.path.clone())), "{} {} not exercised", r.method, r.path);
        }
        let cases_file = dir.path().join("cases.json");
        std::fs::write(&cases_file, serde_json::to_vec(&cases)?)?;
        let out = std::process::Command::new(&python)
            .args(["-c", CHECK_BODIES])
            .arg(&doc_file)
            .arg(&cases_file)
            .output()?;
        assert!(
            out.status.success(),
            "answers that do not match /openapi.json:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    })
    .await;
}

/// Starts a renewal of the fixture's alias with a 4096-bit key: its key generation takes long
/// enough to be caught in the middle.
async fn start_4096(f: &Fixture) -> Result<String, Err> {
    let body =
        json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 4096});
    let (s, _, v) = call(&f.app, "POST", "/api/renewals", Some(&f.admin), Some(body)).await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    Ok(v["renewal"]["id"].as_str().ok_or("renewal id")?.to_string())
}

/// A started write runs to its end when the client goes away (the request future is dropped,
/// as a closed connection drops it): the approval that generates the key is not rolled back.
#[tokio::test]
async fn a_started_write_finishes_after_the_client_goes_away() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        // Key generation takes a random time; try again (after cancelling) in the rare case
        // it finished before the client gave up.
        for _ in 0..5 {
            let id = start_4096(&f).await?;
            let approve = format!("/api/tasks/{id}/create-key-pair/approve");
            // Give up mid-request: after authentication and loading (well under the
            // timeout), during key generation (seconds).
            let gone = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                call(&f.app, "POST", &approve, Some(&f.admin), None),
            )
            .await;
            if gone.is_ok() {
                let cancel = format!("/api/renewals/{id}/cancel");
                let (s, _, v) = call(&f.app, "POST", &cancel, Some(&f.admin), None).await?;
                assert_eq!(s, StatusCode::OK, "{v}");
                continue;
            }
            for _ in 0..600 {
                if step_status(&renewal(&f, &id).await?, "create-key-pair")["status"] == "done" {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            return Err("the approval was abandoned with its client".into());
        }
        Err("key generation never outlasted the client".into())
    })
    .await;
}

/// Key generation does not stall the runtime: on this test's single-threaded runtime, a
/// request that needs no database (`/openapi.json`; the approval's transaction may hold
/// SQLite's one connection) keeps being answered while an approval generates a 4096-bit key.
#[tokio::test]
async fn key_generation_does_not_stall_other_requests() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let id = start_4096(&f).await?;
        let approve = format!("/api/tasks/{id}/create-key-pair/approve");
        let (app, admin) = (f.app.clone(), f.admin.clone());
        let t = std::time::Instant::now();
        let write = tokio::spawn(async move {
            call(&app, "POST", &approve, Some(&admin), None)
                .await
                .map(|r| r.0)
        });
        let mut slowest = std::time::Duration::ZERO;
        let mut answered = 0;
        while !write.is_finished() {
            // Timed with the pause: a blocked runtime wakes this task late from either.
            let t = std::time::Instant::now();
            let (s, _, _) = call(&f.app, "GET", "/openapi.json", None, None).await?;
            assert_eq!(s, StatusCode::OK);
            answered += 1;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            slowest = slowest.max(t.elapsed());
        }
        let took = t.elapsed();
        assert_eq!(write.await??, StatusCode::OK);
        assert!(
            slowest < took / 2 && answered > 1,
            "approval took {took:?}; {answered} requests answered meanwhile, the slowest in {slowest:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn metrics_and_security_headers() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        start(&f).await?;
        // By default no tenant name or alias is exposed: certificates are counted.
        let (s, _, v) = call(&f.app, "GET", "/metrics", None, None).await?;
        assert_eq!(s, StatusCode::OK);
        let plain = v.as_str().ok_or("text")?;
        assert!(
            !plain.contains("demo") && !plain.contains(&f.alias),
            "{plain}"
        );
        assert!(
            plain.contains("rekey_certificates_expiring{within_days=\"30\"} "),
            "{plain}"
        );
        assert!(
            plain.contains("rekey_certificate_days_to_expiry_min "),
            "{plain}"
        );
        // Behind a token when one is configured.
        let svc = Service::new(db.store.clone(), Catalog::builtin()?);
        let guarded = app(AppState::new(svc.clone(), "http://rekey.test")?
            .with_metrics(Some("metrics-secret".into()), false));
        for tok in [None, Some("wrong"), Some(f.admin.as_str())] {
            let (s, h, v) = call(&guarded, "GET", "/metrics", tok, None).await?;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{tok:?}: {v}");
            assert!(v["error"].is_string() && h.contains_key(header::WWW_AUTHENTICATE));
        }
        let (s, _, _) = call(&guarded, "GET", "/metrics", Some("metrics-secret"), None).await?;
        assert_eq!(s, StatusCode::OK);
        // Names when configured.
        let named = app(AppState::new(svc, "http://rekey.test")?.with_metrics(None, true));
        let (s, h, v) = call(&named, "GET", "/metrics", None, None).await?;
        assert_eq!(s, StatusCode::OK);
        let text = v.as_str().ok_or("text")?;
        assert!(
            text.contains("rekey_renewals{state=\"running\",procedure=\"dual-trust\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rekey_tasks_due{role=\"tenant_admin\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rekey_tasks_overdue{role=\"tenant_admin\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("rekey_outbox_messages{status=\"queued\"} "),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with(&format!(
                "rekey_certificate_days_to_expiry{{tenant=\"demo\",alias=\"{}\"}} ",
                f.alias
            ))),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().ok_or("value")?;
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(
            h[header::CONTENT_TYPE]
                .to_str()?
                .starts_with("text/plain; version=0.0.4")
        );
        for path in ["/metrics", "/api/tasks", "/", "/tasks/bogus"] {
            let (_, h, _) = call(&f.app, "GET", path, None, None).await?;
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str()?;
            assert!(
                csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
                "{csp}"
            );
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn downtime_window_through_the_api_and_refused_rollback_changes_nothing() {
    on_both(async |db: &TestDb| -> TestResult {
        let p = ProcedureId::DowntimeWindow;
        let svc = Service::new(db.store.clone(), Catalog::builtin()?);
        let setup = demo::prepare(&svc, p, 2048, Utc::now()).await?;
        let app = app(AppState::new(svc, "http://rekey.test")?);
        let admin = token(db, TENANT_ADMIN).await?;
        let receiver = token(db, &receiver_admin(p)).await?;
        let (s, _, v) = call(
            &app,
            "POST",
            "/api/renewals",
            Some(&admin),
            Some(json!({"tenant": "demo", "receiver": setup.receiver_name.to_string(),
                        "alias": setup.alias, "procedure": "downtime-window", "bits": 2048})),
        )
        .await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("id")?.to_string();
        let (s, _, v) = call(
            &app,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            Some(&admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let start = Utc::now() + chrono::Duration::days(2);
        let window = json!({"start": start.to_rfc3339(), "end": (start + chrono::Duration::hours(1)).to_rfc3339()});
        let (s, _, v) = call(&app, "POST", &format!("/api/renewals/{id}/window/propose"), Some(&admin), Some(json!({"start": "soon"}))).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, _, v) = call(&app, "POST", &format!("/api/renewals/{id}/window/propose"), Some(&admin), Some(window)).await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["renewal"]["window"]["agreed"], false, "{v}");
        // The proposer cannot accept their own proposal; the other party can.
        let (s, _, v) = call(&app, "POST", &format!("/api/renewals/{id}/window/accept"), Some(&admin), None).await?;
        assert!(s.is_client_error(), "{s} {v}");
        let (s, _, v) = call(&app, "POST", &format!("/api/renewals/{id}/window/accept"), Some(&receiver), None).await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["renewal"]["window"]["agreed"], true, "{v}");
        // Rollback before the point of no return is refused and changes nothing.
        let before = call(&app, "GET", &format!("/api/renewals/{id}"), Some(&admin), None).await?.2;
        let audit = db.audit_len().await?;
        let (s, _, v) = call(&app, "POST", &format!("/api/renewals/{id}/rollback"), Some(&admin), None).await?;
        assert!(s.is_client_error(), "{s} {v}");
        assert!(v["error"].is_string(), "{v}");
        assert_eq!(call(&app, "GET", &format!("/api/renewals/{id}"), Some(&admin), None).await?.2, before);
        assert_eq!(db.audit_len().await?, audit);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn certificate_upload_refuses_garbage_and_a_renewal_that_awaits_none() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let id = start(&f).await?;
        let path = format!("/api/renewals/{id}/certificate");
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.admin),
            Some(json!({"chain_pem": "hello"})),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.admin),
            Some(json!({"chain_pem": pem})),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        // A real certificate, but this renewal generates its own key: refused, nothing changes.
        let key = rekey_crypto::KeyPair::generate(rekey_crypto::KeyBits::B2048)?;
        let cert = rekey_crypto::self_signed(&key, "CN=stranger", Utc::now(), 30)?;
        let before = renewal(&f, &id).await?;
        let audit = db.audit_len().await?;
        let (s, _, v) = call(
            &f.app,
            "POST",
            &path,
            Some(&f.admin),
            Some(json!({"chain_pem": cert.to_pem()})),
        )
        .await?;
        assert!(s.is_client_error(), "{s} {v}");
        assert_eq!(renewal(&f, &id).await?, before);
        assert_eq!(db.audit_len().await?, audit);
        Ok(())
    })
    .await;
}

/// Regression: no API route returned a CA-signed renewal's certificate request. Now
/// `GET /api/renewals/{id}/certificate-request` serves it (PEM) while the renewal waits for
/// the chain, and says why when there is none.
#[tokio::test]
async fn ca_signed_renewal_serves_its_certificate_request() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let (s, _, v) = call(
            &f.app,
            "POST",
            "/api/renewals",
            Some(&f.admin),
            Some(
                json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias,
                "bits": 2048, "ca_signed": true}),
            ),
        )
        .await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("renewal id")?.to_string();
        let path = format!("/api/renewals/{id}/certificate-request");
        // No key yet, so no request: said so, with the step that makes it.
        let (s, _, v) = call(&f.app, "GET", &path, Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("no certificate request waiting")
                    && e.contains("create-key-pair")),
            "{v}"
        );
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, h, v) = call(&f.app, "GET", &path, Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            h.get(header::CONTENT_TYPE).map(|c| c.as_bytes()),
            Some(&b"application/pkcs10"[..])
        );
        let pem = v.as_str().ok_or("PEM text")?;
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
        Ok(())
    })
    .await;
}

/// Regression: `GET /api/renewals/{id}/certificate-request` answered 400 Bad Request when no
/// request was waiting, although the request itself was well-formed. Now it is 409 Conflict
/// with the API's JSON error naming why: no request yet, the chain already uploaded, or not a
/// CA-signed renewal.
#[tokio::test]
async fn certificate_request_not_waiting_is_409_naming_why() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let start_with = async |ca_signed: bool| -> Result<String, Err> {
            let (s, _, v) = call(
                &f.app,
                "POST",
                "/api/renewals",
                Some(&f.admin),
                Some(
                    json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias,
                    "bits": 2048, "ca_signed": ca_signed}),
                ),
            )
            .await?;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            Ok(v["renewal"]["id"].as_str().ok_or("renewal id")?.to_string())
        };
        let refused = async |id: &str, why: &str| -> TestResult {
            let path = format!("/api/renewals/{id}/certificate-request");
            let (s, h, v) = call(&f.app, "GET", &path, Some(&f.admin), None).await?;
            assert_eq!(s, StatusCode::CONFLICT, "{v}");
            assert_eq!(
                h.get(header::CONTENT_TYPE).map(|c| c.as_bytes()),
                Some(&b"application/json"[..])
            );
            let e = v["error"].as_str().unwrap_or_default();
            assert!(
                e.contains(&format!("renewal {id} has no certificate request waiting"))
                    && e.contains(why),
                "{why:?} in {v}"
            );
            Ok(())
        };

        let id = start_with(true).await?;
        refused(&id, "no request yet").await?;
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let path = format!("/api/renewals/{id}/certificate-request");
        let (s, _, csr) = call(&f.app, "GET", &path, Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::OK, "{csr}");
        let ca = tempfile::tempdir()?;
        let (leaf, ca_pem) = openssl::ca_sign(ca.path(), csr.as_str().ok_or("PEM text")?);
        let chain = format!("{leaf}{ca_pem}");
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/certificate"),
            Some(&f.admin),
            Some(json!({ "chain_pem": chain })),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        refused(&id, "already uploaded").await?;

        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/cancel"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = start_with(false).await?;
        refused(&id, "not a CA-signed renewal").await?;
        Ok(())
    })
    .await;
}

/// Issue 11 §2: ten parallel `POST /api/renewals` for one alias all returned 201, and so did a
/// later start one at a time; completing both left one stuck and the receiver trusting a
/// retired key. Exactly one may start; every other start is 409 naming the running renewal,
/// and nothing else was created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_starts_of_one_alias_create_exactly_one_renewal() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let body =
            json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias, "bits": 2048});
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (app, admin, body) = (f.app.clone(), f.admin.clone(), body.clone());
            set.spawn(async move {
                call(&app, "POST", "/api/renewals", Some(&admin), Some(body))
                    .await
                    .map(|(s, _, v)| (s, v))
                    .map_err(|e| e.to_string())
            });
        }
        let mut answers = Vec::new();
        while let Some(r) = set.join_next().await {
            answers.push(r??);
        }
        let created: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(created.len(), 1, "exactly one start succeeds: {answers:?}");
        let id = created[0]["renewal"]["id"].as_str().ok_or("renewal id")?;
        for (s, v) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_eq!(*s, StatusCode::CONFLICT, "{v}");
            let msg = v["error"].as_str().ok_or("error text")?;
            assert!(
                msg.contains(id) && msg.contains("already has a running renewal"),
                "the refusal names the running renewal {id}: {msg}"
            );
        }
        let (s, _, v) = call(&f.app, "GET", "/api/renewals", Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v.as_array().map(Vec::len),
            Some(1),
            "one renewal exists: {v}"
        );
        // A later start, one at a time, is refused the same way and changes nothing.
        let before = renewal(&f, id).await?;
        let audit = db.audit_len().await?;
        let (s, _, v) = call(
            &f.app,
            "POST",
            "/api/renewals",
            Some(&f.admin),
            Some(body.clone()),
        )
        .await?;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(id)), "{v}");
        assert_eq!(renewal(&f, id).await?, before);
        assert_eq!(
            db.audit_len().await?,
            audit,
            "nothing audited: nothing happened"
        );
        // Once it is over (cancelled here), the alias can be renewed again.
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/cancel"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _, v) = call(&f.app, "POST", "/api/renewals", Some(&f.admin), Some(body)).await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        Ok(())
    })
    .await;
}

/// Regression: the API's upload route took a CA-signed leaf that had already expired. It now
/// answers 400 naming the certificate and its validity, and the request still waits.
#[tokio::test]
async fn certificate_upload_refuses_an_expired_leaf() {
    on_both(async |db: &TestDb| -> TestResult {
        let f = fixture(db).await?;
        let (s, _, v) = call(
            &f.app,
            "POST",
            "/api/renewals",
            Some(&f.admin),
            Some(
                json!({"tenant": "demo", "receiver": f.receiver_name, "alias": f.alias,
                "bits": 2048, "ca_signed": true}),
            ),
        )
        .await?;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["renewal"]["id"].as_str().ok_or("renewal id")?.to_string();
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            Some(&f.admin),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let request = format!("/api/renewals/{id}/certificate-request");
        let (s, _, csr) = call(&f.app, "GET", &request, Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::OK, "{csr}");
        let now = Utc::now();
        let ca = tempfile::tempdir()?;
        let expired = openssl::ca_sign_dated(
            ca.path(),
            csr.as_str().ok_or("PEM text")?,
            now - chrono::Duration::days(30),
            now - chrono::Duration::days(1),
        );
        let (s, _, v) = call(
            &f.app,
            "POST",
            &format!("/api/renewals/{id}/certificate"),
            Some(&f.admin),
            Some(json!({ "chain_pem": expired })),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let error = v["error"].as_str().ok_or("error text")?;
        assert!(
            error.contains("has expired") && error.contains("valid from"),
            "{error}"
        );
        let (s, _, again) = call(&f.app, "GET", &request, Some(&f.admin), None).await?;
        assert_eq!(s, StatusCode::OK, "the request still waits: {again}");
        assert_eq!(again, csr);
        Ok(())
    })
    .await;
}
