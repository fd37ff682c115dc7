//! Identity across `rekey serve` processes on one database (SQLite file and PostgreSQL): a
//! session started by an email link on one instance is valid on another and after a restart;
//! a link page fetched from one instance is posted to another; API tokens expire, are listed
//! and revoked (401 saying which); a removed user's link, session and token stop at once; a
//! role is taken through the CLI and the API; bad input is refused naming it and changes
//! nothing; each removal is in the audit log.

mod common;

use chrono::{Duration, Utc};
use common::serve::{self, Answer, Served, request};
use common::{Acme, Env, on_both, runtime};
use rekey_notifier::links::{self, Task};
use serde_json::Value;

const ADMIN: &str = "admin@t.example";
const ADMIN2: &str = "admin2@t.example";
const DEV: &str = "dev@t.example";
const OPS: &str = "ops@r.example";

/// `init`, tenant `acme` with its administrator, key `A` in flow `F`/`S`, receiver `R`
/// trusting it, a developer; and a running renewal of `A` (its first task is the
/// administrator's).
fn setup(env: &Env) -> String {
    env.ok_all(
        &Acme {
            admin: ADMIN,
            subject: "CN=acme",
            receiver: Some((OPS, "--accepts-multiple-signatures")),
            ..Acme::default()
        }
        .commands(),
    );
    env.ok(&[
        "user",
        "add",
        "--email",
        DEV,
        "--role",
        "integration_developer",
    ]);
    let r = env.json(&[
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
        "--bits",
        "2048",
        "--as",
        ADMIN,
        "--json",
    ]);
    r["id"].as_str().expect("renewal id").to_string()
}

/// A `rekey serve` on the environment's database, on a free port.
fn serve(env: &Env) -> Served {
    let mut cmd = env.cmd();
    // Links name an unspecified address, so each instance answers whatever Host it is asked as.
    cmd.env("REKEY_SERVER_BASE_URL", "http://0.0.0.0:8080")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    serve::start(cmd).expect("rekey serve starts")
}

/// The tokens of the action links in the mail sent to `to` so far.
fn links_to(env: &Env, to: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(env.data().join("outbox")) else {
        return out;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let raw = std::fs::read_to_string(e.path()).expect("readable .eml");
        let text = raw.replace("=\r\n", "").replace("=3D", "=");
        if !text
            .lines()
            .any(|l| l.strip_prefix("To: ").is_some_and(|t| t.trim() == to))
        {
            continue;
        }
        for part in text.split("/tasks/").skip(1) {
            let token: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if token.len() == 43 && !out.contains(&token) {
                out.push(token);
            }
        }
    }
    out
}

fn csrf(page: &Answer) -> String {
    let marker = "name=\"csrf\" value=\"";
    let i = page.body.find(marker).expect("a CSRF field") + marker.len();
    page.body[i..].chars().take_while(|c| *c != '"').collect()
}

fn session_cookie(a: &Answer) -> String {
    a.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v)
        .find(|v| v.starts_with("rekey_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string()
}

fn get(s: &Served, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(&s.addr, "GET", path, headers, None).expect("GET answered")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn error_of(a: &Answer) -> String {
    // Bodies may be chunked; the JSON object is the part between the braces.
    let start = a.body.find('{').expect("a JSON body");
    let end = a.body.rfind('}').expect("a JSON body") + 1;
    let v: Value = serde_json::from_str(&a.body[start..end]).expect("JSON");
    v["error"].as_str().unwrap_or_default().to_string()
}

fn json_of(a: &Answer) -> Value {
    let start = a.body.find(['[', '{']).expect("a JSON body");
    let end = a.body.rfind([']', '}']).expect("a JSON body") + 1;
    serde_json::from_str(&a.body[start..end]).expect("JSON")
}

#[test]
fn sessions_links_and_tokens_across_instances_and_removal() {
    on_both(|env| {
        let rt = runtime();
        let renewal = setup(env);
        env.ok(&["mail", "send-due"]);
        let token = links_to(env, ADMIN)
            .pop()
            .expect("a link for the administrator");

        let a = serve(env);
        let b = serve(env);

        // The link page is fetched from A and posted to B: B accepts A's form.
        let page = get(&a, &format!("/tasks/{token}"), &[]);
        assert_eq!(page.status, 200, "[{}] {}", env.backend, page.body);
        let body = format!("csrf={}&action=signin", csrf(&page));
        let signed = request(
            &b.addr,
            "POST",
            &format!("/tasks/{token}"),
            &[],
            Some(&body),
        )
        .expect("POST answered");
        assert_eq!(signed.status, 303, "[{}] {}", env.backend, signed.body);
        let cookie = session_cookie(&signed);

        // The session made on B is valid on A.
        let inbox = get(&a, "/", &[("Cookie", &cookie)]);
        assert_eq!(inbox.status, 200, "[{}] {}", env.backend, inbox.body);
        assert!(inbox.body.contains(ADMIN), "{}", inbox.body);
        // A restart keeps it.
        let (status, log) = a.stop().expect("A stops");
        assert!(status.success(), "{log:?}");
        let a = serve(env);
        let inbox = get(&a, &format!("/renewals/{renewal}"), &[("Cookie", &cookie)]);
        assert_eq!(inbox.status, 200, "[{}] {}", env.backend, inbox.body);

        // API tokens: the CLI's expires after the configured lifetime (90 days by default).
        let t = env.ok(&["user", "token", "--email", ADMIN, "--label", "ci"]);
        let t = t.trim().to_string();
        let auth = bearer(&t);
        assert_eq!(
            get(&b, "/api/tasks", &[("Authorization", &auth)]).status,
            200
        );
        let listed = env.json(&["user", "tokens", "--email", ADMIN, "--json"]);
        let exp = listed[0]["expires_at"].as_str().expect("an expiry");
        let exp = chrono::DateTime::parse_from_rfc3339(exp).expect("a time");
        let days = (exp.with_timezone(&Utc) - Utc::now()).num_days();
        assert!((89..=90).contains(&days), "{days}");
        env.refuses(
            &["user", "token", "--email", ADMIN, "--days", "4000000000"],
            &["--days 4000000000 is too far in the future"],
        );
        // --days 0: until revoked.
        let forever = env.ok(&["user", "token", "--email", ADMIN, "--days", "0"]);
        let forever = forever.trim().to_string();
        let own = json_of(&get(
            &a,
            "/api/tokens",
            &[("Authorization", &bearer(&forever))],
        ));
        assert_eq!(own.as_array().map(Vec::len), Some(2), "{own}");
        assert!(
            own.as_array()
                .into_iter()
                .flatten()
                .any(|t| t["expires_at"].is_null())
        );

        // An expired token: 401 saying so.
        let store = env.store(&rt);
        let admin = rt
            .block_on(store.user_by_email(&rekey_model::Email::parse(ADMIN).expect("email")))
            .expect("admin");
        let old = rt
            .block_on(store.create_token_expiring(
                admin.id,
                "old",
                Some(rekey_store::db::now() - Duration::seconds(1)),
                "test",
            ))
            .expect("token");
        let r = get(&b, "/api/tasks", &[("Authorization", &bearer(&old.token))]);
        assert_eq!(r.status, 401);
        assert!(error_of(&r).contains("expired"), "{}", r.body);

        // Revoked through the API (its own) and the CLI: 401 saying so.
        let ci_id = listed[0]["id"].as_str().expect("id").to_string();
        let r = request(
            &a.addr,
            "DELETE",
            &format!("/api/tokens/{ci_id}"),
            &[("Authorization", &bearer(&forever))],
            None,
        )
        .expect("DELETE answered");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(json_of(&r)["revoked_at"].is_string(), "{}", r.body);
        let r = get(&b, "/api/tasks", &[("Authorization", &auth)]);
        assert_eq!(r.status, 401);
        assert!(error_of(&r).contains("revoked"), "{}", r.body);

        // Bad input: refused naming it, nothing changed.
        let audit = || rt.block_on(store.audit_entries(0, 100_000)).expect("audit");
        let before = audit().len();
        env.refuses(&["user", "token-revoke", "--id", "nonsense"], &["--id"]);
        env.refuses(
            &[
                "user",
                "token-revoke",
                "--id",
                &uuid::Uuid::new_v4().to_string(),
            ],
            &["no API token"],
        );
        env.refuses(
            &[
                "user",
                "remove",
                "--email",
                "nobody@t.example",
                "--as",
                ADMIN,
            ],
            &["unknown user nobody@t.example"],
        );
        env.refuses(
            &[
                "user",
                "revoke-role",
                "--email",
                DEV,
                "--role",
                "boss",
                "--as",
                ADMIN,
            ],
            &["--role"],
        );
        let r = request(
            &a.addr,
            "DELETE",
            &format!("/api/tokens/{}", uuid::Uuid::new_v4()),
            &[("Authorization", &bearer(&forever))],
            None,
        )
        .expect("DELETE answered");
        assert_eq!(r.status, 404, "{}", r.body);
        // Only the developer's or nobody's word: refused.
        env.refuses(&["user", "remove", "--email", ADMIN], &["give --as EMAIL"]);
        env.refuses(
            &["user", "remove", "--email", ADMIN, "--as", DEV],
            &["tenant_admin"],
        );
        // The last administrator of a tenant with a running renewal stays.
        env.refuses(
            &["user", "remove", "--email", ADMIN, "--as", ADMIN],
            &["last tenant_admin", "running renewal"],
        );
        assert_eq!(audit().len(), before, "a refusal changed nothing");

        // A second administrator; then the first is removed. Their unused link, session and
        // tokens stop at once, on both instances.
        env.ok(&["user", "add", "--email", ADMIN2, "--role", "tenant_admin"]);
        let (unused, _) = rt
            .block_on(links::issue(
                store.db(),
                Task {
                    tenant: admin_tenant(&rt, &store),
                    renewal: renewal.parse().expect("uuid"),
                    step: "create-key-pair",
                    recipient: ADMIN,
                },
                rekey_store::db::now(),
                Duration::hours(1),
            ))
            .expect("a link");
        let unused = unused.expose().to_string();
        assert_eq!(get(&a, &format!("/tasks/{unused}"), &[]).status, 200);
        env.ok(&["user", "remove", "--email", ADMIN, "--as", ADMIN2]);
        for s in [&a, &b] {
            assert_eq!(
                get(s, "/", &[("Cookie", &cookie)]).status,
                401,
                "session ended"
            );
            let r = get(s, "/api/tasks", &[("Authorization", &bearer(&forever))]);
            assert_eq!(r.status, 401, "token ended");
            assert_ne!(
                get(s, &format!("/tasks/{unused}"), &[]).status,
                200,
                "link ended"
            );
        }
        let users = env.json(&["user", "list", "--json"]);
        assert!(!users.to_string().contains(ADMIN), "{users}");

        // A role is taken through the API by the remaining administrator.
        let t2 = env.ok(&["user", "token", "--email", ADMIN2]);
        let auth2 = bearer(t2.trim());
        let body = format!(r#"{{"email":"{DEV}","role":"integration_developer","tenant":"acme"}}"#);
        let r = request(
            &b.addr,
            "POST",
            "/api/users/revoke-role",
            &[("Authorization", &auth2)],
            Some(&body),
        )
        .expect("POST answered");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(json_of(&r)["roles"], serde_json::json!([]));
        // Unknown role: 400 naming the field.
        let body = format!(r#"{{"email":"{DEV}","role":"boss","tenant":"acme"}}"#);
        let r = request(
            &b.addr,
            "POST",
            "/api/users/revoke-role",
            &[("Authorization", &auth2)],
            Some(&body),
        )
        .expect("POST answered");
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(json_of(&r)["field"], "role");
        // The last administrator cannot drop their own role while the renewal runs.
        env.refuses(
            &[
                "user",
                "revoke-role",
                "--email",
                ADMIN2,
                "--role",
                "tenant_admin",
                "--as",
                ADMIN2,
            ],
            &["last tenant_admin"],
        );

        // Removal through the API: a user of the caller's tenant goes; a user of another
        // tenant is answered exactly as an unknown one.
        env.ok(&[
            "user",
            "add",
            "--email",
            "dev2@t.example",
            "--role",
            "integration_developer",
        ]);
        let post = |path: &str, body: &str| {
            request(
                &b.addr,
                "POST",
                path,
                &[("Authorization", &auth2)],
                Some(body),
            )
            .expect("POST answered")
        };
        let r = post("/api/users/remove", r#"{"email":"dev2@t.example"}"#);
        assert_eq!(r.status, 200, "{}", r.body);
        let r = post("/api/users/remove", r#"{"email":"nobody@t.example"}"#);
        assert_eq!(
            (r.status, json_of(&r)["field"].clone()),
            (404, "email".into()),
            "{}",
            r.body
        );
        env.ok(&["tenant", "add", "other"]);
        env.ok(&[
            "user",
            "add",
            "--tenant",
            "other",
            "--email",
            "x@o.example",
            "--role",
            "tenant_admin",
        ]);
        let r = post("/api/users/remove", r#"{"email":"x@o.example"}"#);
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(!r.body.contains("other"), "{}", r.body);
        let r = post(
            "/api/users/revoke-role",
            r#"{"email":"x@o.example","role":"tenant_admin","tenant":"other"}"#,
        );
        assert_eq!(
            (r.status, json_of(&r)["field"].clone()),
            (404, "tenant".into()),
            "{}",
            r.body
        );

        // The audit log has each removal, by whom, as `rekey audit list` shows it.
        let entries = env.json(&["audit", "list", "--limit", "1000", "--json"]);
        let entries = entries.as_array().expect("a list").clone();
        let has = |action: &str, actor: &str, subject: &str| {
            entries.iter().any(|e| {
                e["action"] == action
                    && e["actor"] == actor
                    && e["subject"].as_str().is_some_and(|s| s.contains(subject))
            })
        };
        assert!(has("user.remove", ADMIN2, ADMIN));
        assert!(has("user.remove", ADMIN2, "dev2@t.example"));
        assert!(has("user.revoke", ADMIN2, DEV));
        assert!(has("user.token.revoke", ADMIN, ADMIN));

        for s in [a, b] {
            let (status, log) = s.stop().expect("stops");
            assert!(status.success(), "{log:?}");
        }
    });
}

fn admin_tenant(rt: &tokio::runtime::Runtime, store: &rekey_store::Store) -> uuid::Uuid {
    rt.block_on(store.tenants()).expect("tenants")[0]
        .id
        .as_uuid()
}
