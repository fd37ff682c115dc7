//! A rekey tenant backed by an SAP Cloud Integration tenant (`backend = "sap-ci"`), through
//! the binary against the **fake** tenant of `tests/fake-sap-ci/` running as a real HTTP
//! server on loopback: `rekey tenant check` (credentials, roles, CSRF, lock back-off, token
//! renewal) and `rekey tenant show` (keystore entries and a flow's parameters, compared with
//! what the fake was seeded with). The secret never appears in output or logs.
//!
//! Each fake variant (default, fewer roles, one-second tokens, ...) is started once per run of
//! this test binary and shared; a test that changes a fake's settings or faults has a variant
//! of its own. Needs `REKEY_TEST_PYTHON` (a Python with `cryptography`, which `cargo xtask
//! test` provides); without it each test is skipped with a message.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{Env, runtime};
use rekey_service::http::{self, Method};
use rekey_service::sapci::{Access, SapCiClient, SapCiConfig, SecretSource};
use serde_json::{Value, json};

const SECRET: &str = "fake-secret";
const FLOW: &str = "Fake_Outbound_Signer";

/// A running fake: its base URL. The child and its stdin pipe live as long as the test
/// process; the wrapper exits when that pipe closes, so no fake outlives the run.
struct Fake {
    url: String,
    service_key: Value,
    _child: Child,
    _stdin: ChildStdin,
}

/// Starts the fake under a wrapper that exits when its standard input closes.
fn start(python: &str, args: &[&str]) -> Fake {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-sap-ci/fake_sap_ci.py");
    let wrapper = "import os, runpy, sys, threading\n\
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
        sys.argv = sys.argv[1:]\n\
        runpy.run_path(sys.argv[0], run_name='__main__')\n";
    let mut child = Command::new(python)
        .args(["-c", wrapper])
        .arg(&script)
        .args(["--port", "0"])
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starts the fake tenant");
    let stdin = child.stdin.take().expect("stdin");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("reads the ready line");
    let line: Value = serde_json::from_str(&ready)
        .unwrap_or_else(|e| panic!("the fake did not start ({e}): {ready:?}"));
    Fake {
        url: line["url"].as_str().expect("url").to_string(),
        service_key: line["service_key"].clone(),
        _child: child,
        _stdin: stdin,
    }
}

/// The fake started with `args`, once per test binary run; `None` (skip) without Python.
fn fake(variant: &'static str, args: &[&str]) -> Option<&'static Fake> {
    static FAKES: OnceLock<Mutex<HashMap<&'static str, &'static Fake>>> = OnceLock::new();
    let Ok(python) = std::env::var("REKEY_TEST_PYTHON") else {
        eprintln!(
            "SKIPPED sap_ci: REKEY_TEST_PYTHON is not set (run `cargo xtask test`, or point it at \
             a python with cryptography==50.0.2)"
        );
        return None;
    };
    let mut map = FAKES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let f = map
        .entry(variant)
        .or_insert_with(|| Box::leak(Box::new(start(&python, args))));
    Some(*f)
}

/// One call to the fake's control or API endpoints.
fn call(method: Method, url: &str, body: Option<Value>) -> Value {
    let headers = [("content-type", "application/json".to_string())];
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let answer = runtime()
        .block_on(http::request(
            method,
            url,
            &headers,
            bytes,
            Duration::from_secs(10),
        ))
        .expect("the fake answers");
    assert!(answer.status < 300, "{url}: {}", answer.status);
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

/// The fake's audit of API calls since `since` (method, path, status, csrf, cookie).
fn audit(url: &str, since: u64) -> Vec<Value> {
    call(
        Method::Get,
        &format!("{url}/fake/audit?since={since}"),
        None,
    )["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn last_seq(url: &str) -> u64 {
    audit(url, 0)
        .last()
        .and_then(|c| c["seq"].as_u64())
        .unwrap_or(0)
}

/// A data directory with tenant `acme` configured as `sap-ci` for the fake at `url`, the
/// secret in a file holding `secret`.
fn tenant(url: &str, secret: &str) -> Env {
    let env = Env::sqlite();
    env.ok(&["init"]);
    env.ok(&["tenant", "add", "acme"]);
    let secret_file = env.path("client-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
    configure(
        &env,
        url,
        &format!("client_secret_file = {:?}", secret_file),
    );
    env
}

fn configure(env: &Env, url: &str, secret_line: &str) {
    std::fs::write(
        env.data().join("rekey.toml"),
        format!(
            "[keystores.acme]\nbackend = \"sap-ci\"\nurl = \"{url}\"\ntoken_url = \"{url}/oauth/token\"\nclient_id = \"fake-client\"\n{secret_line}\n"
        ),
    )
    .expect("configuration");
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs with debug logging, asserting that neither output nor log carries `secret`.
fn run_clean(env: &Env, args: &[&str], secret: &str) -> Output {
    let o = env
        .cmd()
        .env("RUST_LOG", "debug")
        .args(args)
        .output()
        .expect("runs rekey");
    let (out, err) = text(&o);
    assert!(
        !out.contains(secret) && !err.contains(secret),
        "the client secret leaked:\n{out}\n{err}"
    );
    o
}

#[test]
fn check_passes_and_show_lists_what_the_tenant_holds() {
    let Some(fake) = fake("default", &[]) else {
        return;
    };
    let url = fake.url.as_str();
    let env = tenant(url, SECRET);
    let since = last_seq(url);
    let o = run_clean(&env, &["tenant", "check", "--flow", FLOW], SECRET);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("the client credentials work"), "{out}");
    for role in [
        "MonitoringDataRead",
        "SecurityMaterialEdit",
        "WorkspacePackagesConfigure",
        "WorkspaceArtifactsDeploy",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(role))
            .unwrap_or_else(|| panic!("{role} not in {out}"));
        assert!(line.contains(" ok "), "{line}");
    }
    // The probes changed nothing: the keystore holds what it was seeded with, and the
    // modifying probes carried the CSRF token and the session cookie of the fetch.
    let calls = audit(url, since);
    let probe = calls
        .iter()
        .find(|c| c["path"] == "/api/v1/KeyPairGenerationRequests")
        .expect("the keystore-edit probe");
    assert_eq!(probe["status"], 400, "{probe}");
    assert!(
        probe["csrf_token"].is_string() && probe["session_cookie"] == true,
        "{probe}"
    );

    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    let seeded: BTreeMap<String, String> = state["keystores"]["system"]
        .as_object()
        .expect("system keystore")
        .iter()
        .map(|(alias, e)| {
            (
                alias.clone(),
                e["fingerprint_sha256"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seeded.keys().collect::<Vec<_>>(),
        ["sap_cloudintegrationcertificate", "signer"]
    );

    let shown = env.json(&["tenant", "show", "--flow", FLOW, "--json"]);
    let listed: BTreeMap<String, String> = shown["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["alias"].as_str().expect("alias").to_string(),
                e["fingerprint"].as_str().expect("fingerprint").to_string(),
            )
        })
        .collect();
    assert_eq!(listed.len(), seeded.len(), "{shown}");
    for (alias, fp) in &seeded {
        assert_eq!(
            listed[alias].to_ascii_uppercase().replace(':', ""),
            fp.replace(':', ""),
            "{alias}"
        );
    }
    let signer = shown["entries"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["alias"] == "signer"))
        .expect("signer");
    assert_eq!(signer["hex_alias"], "7369676E6572");
    assert_eq!(signer["kind"], "Key Pair");
    assert_eq!(signer["key_size"], 2048);
    assert_eq!(
        &signer["not_after"].as_str().expect("not_after")[..10],
        &state["keystores"]["system"]["signer"]["not_after"]
            .as_str()
            .expect("seeded not_after")[..10]
    );
    assert_eq!(
        shown["flow"]["parameters"],
        json!([{"key": "SIGNER_ALIAS", "value": "signer", "data_type": "xsd:string"}])
    );

    let table = env.ok(&["tenant", "show", "--flow", FLOW]);
    assert!(
        table.contains("signer") && table.contains("Key Pair"),
        "{table}"
    );
    let param = table
        .lines()
        .find(|l| l.starts_with("SIGNER_ALIAS"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        param.contains("signer") && param.contains("Key Pair, not after"),
        "{param}"
    );
}

#[test]
fn a_wrong_secret_is_refused_with_the_tenants_message() {
    let Some(fake) = fake("default", &[]) else {
        return;
    };
    let url = fake.url.as_str();
    let wrong = "not-the-fake-secret";
    let env = tenant(url, SECRET);
    configure(&env, url, "client_secret_env = \"ACME_SAP_SECRET\"");
    let o = env
        .cmd()
        .env("ACME_SAP_SECRET", wrong)
        .env("RUST_LOG", "debug")
        .args(["tenant", "check"])
        .output()
        .expect("runs");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("refused the client credentials (401): Bad credentials"),
        "{err}"
    );
    assert!(!out.contains(wrong) && !err.contains(wrong), "{out}{err}");

    // An unset variable is named, and nothing is sent.
    let o = env.run(&["tenant", "check"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("environment variable ACME_SAP_SECRET is not set"),
        "{err}"
    );
}

#[test]
fn a_missing_role_is_named_and_the_tenant_is_not_usable() {
    let Some(fake) = fake(
        "read-and-configure-only",
        &["--roles", "MonitoringDataRead,WorkspacePackagesConfigure"],
    ) else {
        return;
    };
    let url = fake.url.as_str();
    let env = tenant(url, SECRET);
    let o = run_clean(&env, &["tenant", "check", "--flow", FLOW], SECRET);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("lacks the roles SecurityMaterialEdit, WorkspaceArtifactsDeploy"),
        "{err}"
    );
    let line = |role: &str| {
        out.lines()
            .find(|l| l.starts_with(role))
            .unwrap_or_else(|| panic!("{role}: {out}"))
            .to_string()
    };
    assert!(
        line("SecurityMaterialEdit").contains("MISSING (403)"),
        "{out}"
    );
    assert!(
        line("WorkspaceArtifactsDeploy").contains("MISSING (403)"),
        "{out}"
    );
    assert!(line("MonitoringDataRead").contains(" ok "), "{out}");
    let report = {
        let o = env.run(&["tenant", "check", "--json"]);
        assert_eq!(o.status.code(), Some(1));
        serde_json::from_slice::<Value>(&o.stdout).expect("JSON report")
    };
    assert_eq!(report["usable"], false);
    assert_eq!(report["missing_roles"], json!(["SecurityMaterialEdit"]));

    // The spec's bare 403 body (`{"code":"Forbidden",…}` without "error") reads the same.
    call(
        Method::Post,
        &format!("{url}/fake/settings"),
        Some(json!({"forbidden_body": "bare"})),
    );
    let o = env.run(&["tenant", "check", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    assert_eq!(report["missing_roles"], json!(["SecurityMaterialEdit"]));
}

#[test]
fn a_locked_keystore_is_retried_with_back_off_then_given_up() {
    let Some(fake) = fake("locked", &[]) else {
        return;
    };
    let url = fake.url.as_str();
    let env = tenant(url, SECRET);
    // Two 503 "keystore is locked" answers: retried, then the check passes.
    call(
        Method::Post,
        &format!("{url}/fake/faults"),
        Some(json!({"status": 503, "calls": 2, "scope": "all"})),
    );
    let since = last_seq(url);
    env.ok(&["tenant", "check"]);
    let statuses: Vec<u64> = audit(url, since)
        .iter()
        .filter(|c| c["path"] == "/api/v1/KeystoreEntries")
        .map(|c| c["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [503, 503, 200]);

    // 429 with Retry-After: 1 is waited for.
    call(
        Method::Post,
        &format!("{url}/fake/faults"),
        Some(json!({"status": 429, "calls": 1, "scope": "reads"})),
    );
    let started = Instant::now();
    env.ok(&["tenant", "show"]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );

    // Locked for longer than the attempts last: SAP's text, non-zero exit.
    call(
        Method::Post,
        &format!("{url}/fake/faults"),
        Some(json!({"status": 503, "calls": 20, "scope": "reads"})),
    );
    let o = env.run(&["tenant", "show"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "GET /KeystoreEntries: still 503 after 5 attempts: Keystore is locked by another user"
        ),
        "{err}"
    );
    call(
        Method::Post,
        &format!("{url}/fake/faults"),
        Some(json!({"status": 503, "calls": 0, "scope": "reads"})),
    );
}

fn client_for(url: &str) -> SapCiClient {
    let dir = tempfile::tempdir().expect("dir");
    let file: PathBuf = dir.path().join("secret");
    std::fs::write(&file, SECRET).expect("secret");
    let client = SapCiClient::new(SapCiConfig {
        url: url.to_string(),
        token_url: format!("{url}/oauth/token"),
        client_id: "fake-client".into(),
        client_secret: SecretSource::File(file),
        timeout: Duration::from_secs(10),
        attempts: 5,
        country: None,
    })
    .expect("client");
    assert!(!format!("{client:?}").contains(SECRET));
    client
}

#[test]
fn csrf_is_sent_in_both_failure_modes_and_a_stale_token_is_fetched_once_more() {
    let Some(fake) = fake("csrf", &[]) else {
        return;
    };
    let url = fake.url.as_str();
    let env = tenant(url, SECRET);
    for mode in ["required-header", "plain"] {
        call(
            Method::Post,
            &format!("{url}/fake/settings"),
            Some(json!({"csrf": "required", "csrf_failure": mode})),
        );
        env.ok(&["tenant", "check", "--flow", FLOW]);
    }
    call(
        Method::Post,
        &format!("{url}/fake/settings"),
        Some(json!({"csrf": "optional"})),
    );
    env.ok(&["tenant", "check", "--flow", FLOW]);
    call(
        Method::Post,
        &format!("{url}/fake/settings"),
        Some(json!({"csrf": "required", "csrf_failure": "required-header"})),
    );

    // One client across a session that ends on the tenant: the next modifying call is
    // refused with 403, the token is fetched again, and the call is sent once more.
    let client = client_for(url);
    let rt = runtime();
    let edit = |roles: Vec<rekey_service::sapci::RoleCheck>| {
        roles
            .into_iter()
            .find(|r| r.role == "SecurityMaterialEdit")
            .expect("edit")
            .access
    };
    assert_eq!(
        edit(rt.block_on(client.check(None)).expect("check")),
        Access::Allowed
    );
    assert_eq!(client.traffic().csrf_fetches, 1);
    call(Method::Post, &format!("{url}/fake/csrf/invalidate"), None);
    let since = last_seq(url);
    assert_eq!(
        edit(rt.block_on(client.check(None)).expect("check")),
        Access::Allowed
    );
    assert_eq!(client.traffic().csrf_fetches, 2);
    let seen: Vec<(String, u64)> = audit(url, since)
        .iter()
        .filter(|c| c["path"] != "/api/v1/KeystoreEntries")
        .map(|c| {
            (
                format!(
                    "{} {}",
                    c["method"].as_str().unwrap_or(""),
                    c["path"].as_str().unwrap_or("")
                ),
                c["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("POST /api/v1/KeyPairGenerationRequests".to_string(), 403),
            ("GET /api/v1/".to_string(), 200),
            ("POST /api/v1/KeyPairGenerationRequests".to_string(), 400),
        ]
    );
}

#[test]
fn an_expiring_token_is_fetched_again_before_it_runs_out() {
    let Some(fake) = fake("short-tokens", &["--token-ttl", "1"]) else {
        return;
    };
    let url = fake.url.as_str();
    // Through the binary: two 429s (Retry-After: 1 each) outlast the one-second token, and
    // the retried call goes out with a new one, never with the expired one.
    let env = tenant(url, SECRET);
    call(
        Method::Post,
        &format!("{url}/fake/faults"),
        Some(json!({"status": 429, "calls": 2, "scope": "reads"})),
    );
    let since = last_seq(url);
    env.ok(&["tenant", "show"]);
    let calls = audit(url, since);
    let tokens = calls.iter().filter(|c| c["path"] == "/oauth/token").count();
    assert!(tokens >= 2, "{calls:?}");
    assert!(calls.iter().all(|c| c["status"] != 401), "{calls:?}");

    // A token the tenant ended early (401) is replaced once, and the call succeeds.
    let client = client_for(url);
    let rt = runtime();
    rt.block_on(client.connect()).expect("token");
    call(Method::Post, &format!("{url}/fake/tokens/expire"), None);
    let entries = rt.block_on(client.keystore_entries()).expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(client.traffic().tokens, 2);
}

#[test]
fn sap_ci_settings_are_checked_by_name() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let toml = env.data().join("rekey.toml");
    let cases = [
        (
            "[keystores.acme]\nbackend = \"sap-ci\"\nurl = \"https://x.example\"\ntoken_url = \"https://x.example/oauth/token\"\nclient_id = \"c\"\n",
            "needs client_secret_file or client_secret_env",
        ),
        (
            "[keystores.acme]\nbackend = \"sap-ci\"\nurl = \"https://x.example\"\ntoken_url = \"https://x.example/oauth/token\"\nclient_id = \"c\"\nclient_secret = \"inline\"\n",
            "unknown field `client_secret`",
        ),
        (
            "[keystores.acme]\nbackend = \"sap-ci\"\nurl = \"ftp://x.example\"\ntoken_url = \"https://x.example/t\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\n",
            "[keystores.acme]: url",
        ),
        (
            "[keystores.acme]\nurl = \"https://x.example\"\n",
            "are for backend = \"sap-ci\"",
        ),
        (
            "[keystores.acme]\nbackend = \"sap-ci\"\nservice_key_file = \"/nonexistent/key.json\"\n",
            "[keystores.acme]: service_key_file: service key /nonexistent/key.json: No such file",
        ),
        (
            "[keystores.acme]\nbackend = \"sap-ci\"\nservice_key_file = \"/nonexistent/key.json\"\nclient_id = \"c\"\n",
            "give it alone",
        ),
        (
            "[keystores.acme]\nbackend = \"sapci\"\n",
            "use \"embedded\", \"pkcs11\" or \"sap-ci\"",
        ),
        (
            "[keystores.acme]\nbackend = \"sap-ci\"\nurl = \"https://x.example\"\ntoken_url = \"https://x.example/oauth/token\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\ncountry = \"Germany\"\n",
            "[keystores.acme]: country = \"Germany\": use a two-letter ISO 3166 code",
        ),
    ];
    for (body, needle) in cases {
        std::fs::write(&toml, body).expect("write");
        let o = env.run(&["tenant", "list"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{body}: {err}");
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
        assert!(!err.contains("inline"), "{err}");
    }
    // A tenant not configured as sap-ci is told how.
    std::fs::remove_file(&toml).expect("rm");
    env.ok(&["tenant", "add", "acme"]);
    let o = env.run(&["tenant", "check"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("not an SAP Cloud Integration tenant"), "{err}");
}

/// A key operation outside a renewal on an `sap-ci` tenant is refused rather than done with a
/// key rekey would hold itself; the store is left without the alias.
#[test]
fn key_operations_on_a_sap_ci_tenant_are_refused_not_done_locally() {
    let env = tenant("http://127.0.0.1:9", SECRET);
    env.ok(&[
        "user",
        "add",
        "--email",
        "ops@acme.example",
        "--role",
        "tenant_admin",
        "--tenant",
        "acme",
    ]);
    env.refuses(
        &[
            "keystore",
            "generate",
            "--alias",
            "k",
            "--bits",
            "2048",
            "--as",
            "ops@acme.example",
        ],
        &[
            "keys are in SAP Cloud Integration",
            "cannot generate a key there outside a renewal",
            "`rekey tenant sync` records it",
        ],
    );
    env.refuses(
        &["keystore", "reconcile"],
        &[
            "keeps its keys in SAP Cloud Integration",
            "`rekey tenant sync` reconciles it",
        ],
    );
    let o = env.run(&["keystore", "list"]);
    let (listed, note) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{note}");
    assert!(!listed.contains("\nk "), "{listed}");
    assert!(note.contains("`rekey tenant show` reads them"), "{note}");
}

/// The service key as BTP hands it over (flat, or nested under "oauth"), named by
/// `service_key_file`: url, token URL, client id and secret all come from it.
#[test]
fn a_service_key_file_flat_or_nested_connects() {
    for (variant, form) in [("default", "flat"), ("nested-key", "nested")] {
        let args = ["--set", &format!("service_key_form={form}")];
        let Some(fake) = fake(variant, if form == "flat" { &[] } else { &args }) else {
            return;
        };
        assert_eq!(fake.service_key.get("oauth").is_some(), form == "nested");
        let env = tenant(&fake.url, SECRET);
        let key = env.path("service-key.json");
        std::fs::write(&key, fake.service_key.to_string()).expect("service key");
        std::fs::write(
            env.data().join("rekey.toml"),
            format!("[keystores.acme]\nbackend = \"sap-ci\"\nservice_key_file = {key:?}\n"),
        )
        .expect("configuration");
        let o = run_clean(&env, &["tenant", "check"], SECRET);
        assert_eq!(o.status.code(), Some(0), "{form}: {:?}", text(&o));
        let shown = env.json(&["tenant", "show", "--json"]);
        assert_eq!(shown["url"], fake.url.as_str(), "{form}");
    }
}

/// Client ids and secrets as BTP makes them (`!`, `|`, `$`, `=`, `:`) are sent as they stand.
#[test]
fn btp_style_client_ids_and_secrets_connect() {
    let (id, secret) = ("sb-7f3a!b1234|it!b56", "a1B2$c3=d4:e5/f6+g7");
    let Some(fake) = fake(
        "btp-style-client",
        &["--client-id", id, "--client-secret", secret],
    ) else {
        return;
    };
    let env = tenant(&fake.url, secret);
    std::fs::write(
        env.data().join("rekey.toml"),
        format!(
            "[keystores.acme]\nbackend = \"sap-ci\"\nurl = \"{u}\"\ntoken_url = \"{u}/oauth/token\"\nclient_id = \"{id}\"\nclient_secret_env = \"ACME_SAP_SECRET\"\n",
            u = fake.url
        ),
    )
    .expect("configuration");
    let o = env
        .cmd()
        .env("ACME_SAP_SECRET", secret)
        .args(["tenant", "check"])
        .output()
        .expect("runs");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(!out.contains(secret) && !err.contains(secret));
}

const ADMIN: &str = "admin@acme.example";

/// The SHA-256 fingerprint of `alias` in the fake's `system` keystore, as rekey prints it
/// (lowercase hex), or `None` when the alias holds nothing.
fn fake_fingerprint(url: &str, alias: &str) -> Option<String> {
    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    state["keystores"]["system"][alias]["fingerprint_sha256"]
        .as_str()
        .map(|f| f.replace(':', "").to_lowercase())
}

fn by_hand(url: &str, action: &str, body: Value) {
    call(
        Method::Post,
        &format!("{url}/fake/keystore/{action}"),
        Some(body),
    );
}

/// The record rekey keeps of `alias`: its current certificate's fingerprint.
fn recorded(env: &Env, alias: &str) -> Option<String> {
    let list = env.json(&["--tenant", "acme", "keystore", "list", "--json"]);
    list.as_array()
        .expect("entries")
        .iter()
        .find(|e| e["alias"] == alias && e["has_key"] == true)
        .and_then(|e| e["fingerprint"].as_str())
        .map(|f| f.replace(':', "").to_lowercase())
}

/// The whole observing side through the binary, against a fake of its own (it changes the
/// fake's keystore by hand): `rekey tenant sync` records the tenant's key pairs; the watch
/// syncs and plans from the tenant's real certificate, mailing the administrator; a key
/// exchanged by hand in the middle of a renewal makes the next action refused with both
/// fingerprints, changes nothing and is mailed to the tenant administrator once; sync holds
/// the difference while the renewal runs and follows it after the cancel; a start against a
/// tenant that differs from the record is refused; a tenant that cannot be read leaves the
/// watch planning from the last record.
#[test]
fn sync_records_the_tenant_the_watch_plans_from_it_and_a_change_by_hand_stops_a_renewal() {
    let Some(fake) = fake("sync", &[]) else {
        return;
    };
    let url = fake.url.as_str();
    let env = tenant(url, SECRET);
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    let seeded = fake_fingerprint(url, "signer").expect("the fake holds signer");

    // Who may record the tenant, and which tenants can be.
    env.refuses(&["tenant", "sync"], &["give --as EMAIL", "tenant_admin"]);
    env.ok(&["tenant", "add", "other"]);
    env.refuses(
        &["--tenant", "other", "tenant", "sync", "--as", ADMIN],
        &["\"other\" is not an SAP Cloud Integration tenant"],
    );
    assert_eq!(recorded(&env, "signer"), None, "nothing recorded yet");

    let out = run_clean(
        &env,
        &["--tenant", "acme", "tenant", "sync", "--as", ADMIN],
        SECRET,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("acme: added     signer {seeded}")),
        "{stdout}"
    );
    assert!(stdout.contains("1 added, 0 unchanged"), "{stdout}");
    // SAP's own certificate is not a key pair of the tenant administrator.
    assert!(
        !stdout.contains("sap_cloudintegrationcertificate"),
        "{stdout}"
    );
    assert_eq!(recorded(&env, "signer").as_deref(), Some(seeded.as_str()));

    // The signer step lists it, the receiver trusts it: the watch plans from the tenant's
    // 30-day certificate and tells the administrator now.
    let acme = |args: &[&str]| {
        let mut all = vec!["--tenant", "acme"];
        all.extend_from_slice(args);
        env.ok(&all)
    };
    signer_step_and_receiver(&env, &[MULTIPLE_SIGNATURES]);
    let watch = env.json(&["watch", "--json"]);
    assert_eq!(watch["synced"][0]["tenant_name"], "acme", "{watch}");
    assert_eq!(watch["synced"][0]["report"]["unchanged"], 1, "{watch}");
    let due = &watch["aliases"][0];
    assert_eq!(due["alias"], "signer", "{watch}");
    assert_eq!(due["fingerprint"], seeded.as_str(), "{watch}");
    assert_eq!(due["action"]["action"], "notified", "{watch}");
    env.ok(&["mail", "send-due"]);
    let sent = common::outbox_mails(&env.data());
    let notice = sent
        .iter()
        .find(|m| m.contains("Subject: [rekey] Start renewing signer"))
        .unwrap_or_else(|| panic!("no expiry notice: {sent:#?}"));
    assert!(notice.contains(&format!("To: {ADMIN}")), "{notice}");
    assert!(notice.contains(&seeded), "{notice}");

    // A renewal starts from the recorded key; then someone exchanges it by hand.
    let start = START_PREPARED;
    let r = env.json(&[start, &["--json"]].concat());
    let id = r["id"].as_str().expect("renewal id").to_string();
    let before = env.json(&["--tenant", "acme", "renewal", "show", &id, "--json"]);
    by_hand(url, "replace", json!({"alias": "signer"}));
    let by_hand_fp = fake_fingerprint(url, "signer").expect("replaced");
    assert_ne!(by_hand_fp, seeded);
    let task = format!("{id}:create-key-pair");
    let approve = [
        "--tenant",
        "acme",
        "task",
        "approve",
        task.as_str(),
        "--as",
        ADMIN,
    ];
    env.refuses(
        &approve,
        &[
            "the SAP Cloud Integration tenant was changed outside rekey",
            &format!("alias signer holds certificate {by_hand_fp} on the tenant, rekey recorded certificate {seeded}"),
            "nothing was done",
            &format!("rekey renewal cancel {id}"),
        ],
    );
    // Refused twice: nothing changed, and the administrator is told once.
    env.refuses(&approve, &["changed outside rekey"]);
    let after = env.json(&["--tenant", "acme", "renewal", "show", &id, "--json"]);
    assert_eq!(before, after, "the refused action changed the renewal");
    assert_eq!(recorded(&env, "signer").as_deref(), Some(seeded.as_str()));
    env.ok(&["mail", "send-due"]);
    let sent = common::outbox_mails(&env.data());
    let stopped: Vec<&String> = sent
        .iter()
        .filter(|m| m.contains("the SAP Cloud Integration tenant was changed outside rekey"))
        .collect();
    assert_eq!(stopped.len(), 1, "told once: {sent:#?}");
    for needle in [
        format!("To: {ADMIN}"),
        seeded.clone(),
        by_hand_fp.clone(),
        format!("renewal cancel {id}"),
        "tenant sync".to_string(),
    ] {
        assert!(
            stopped[0].contains(&needle),
            "{needle:?} not in {}",
            stopped[0]
        );
    }

    // While the renewal runs, sync reports the difference and keeps the record.
    let held = acme(&["tenant", "sync", "--as", ADMIN]);
    assert!(
        held.contains(&format!(
            "acme: HELD      signer: the tenant holds {by_hand_fp}, rekey recorded {seeded}; renewal {id}"
        )),
        "{held}"
    );
    assert_eq!(recorded(&env, "signer").as_deref(), Some(seeded.as_str()));
    // Cancelling stays open; then the record follows the tenant.
    acme(&["renewal", "cancel", &id, "--as", ADMIN]);
    let followed = acme(&["tenant", "sync", "--as", ADMIN]);
    assert!(
        followed.contains(&format!(
            "acme: changed   signer {by_hand_fp} (was {seeded}; changed on the tenant)"
        )),
        "{followed}"
    );
    assert_eq!(
        recorded(&env, "signer").as_deref(),
        Some(by_hand_fp.as_str())
    );

    // A key deleted by hand leaves the record; one made by hand but not yet recorded stops a
    // start, which names the way out.
    by_hand(url, "delete", json!({"alias": "signer"}));
    let removed = acme(&["tenant", "sync", "--as", ADMIN]);
    assert!(
        removed.contains(&format!(
            "acme: removed   signer (was {by_hand_fp}; gone from the tenant)"
        )),
        "{removed}"
    );
    assert_eq!(recorded(&env, "signer"), None);
    by_hand(
        url,
        "generate",
        json!({"alias": "signer", "key_size": 2048}),
    );
    let fresh = fake_fingerprint(url, "signer").expect("generated");
    env.refuses(
        start,
        &[
            &format!(
                "alias signer holds certificate {fresh} on the tenant, rekey recorded no key pair"
            ),
            "run `rekey tenant sync`",
        ],
    );
    assert!(
        env.json(&["--tenant", "acme", "renewal", "list", "--json"])
            .as_array()
            .is_some_and(|a| a.len() == 1),
        "no renewal was started"
    );

    // A tenant that cannot be read: the watch says so and plans from the record.
    std::fs::write(env.path("client-secret"), "not-the-secret\n").expect("secret");
    let blind = acme(&["watch"]);
    assert!(
        blind.contains("acme: SAP Cloud Integration tenant not read (")
            && blind.contains("planned from rekey's last record"),
        "{blind}"
    );
}

const DEV: &str = "dev@acme.example";
const OPS: &str = "ops@r.example";

/// The fake for the renewal test: `signer` (RSA 2048, 30 days) and a flow whose signer step
/// has two rows, each reading an exchange property set from an externalized parameter
/// (A9's documented route): `SIGNER_ALIAS` = `signer` and `SIGNER_ALIAS_2` = `signer_next`,
/// which holds no key yet (a row whose alias has no key does not sign: the fake's default).
fn renewal_fake() -> Option<&'static Fake> {
    let config = json!({
        "keystore": [{"alias": "signer", "key_size": 2048, "common_name": "acme signer",
                      "valid_days": 30}],
        "iflows": [{
            "id": FLOW,
            "version": "1.0.0",
            "parameters": [
                {"key": "SIGNER_ALIAS", "value": "signer"},
                {"key": "SIGNER_ALIAS_2", "value": "signer_next"}
            ],
            "properties": {"signerAlias": "{{SIGNER_ALIAS}}", "signerAlias2": "{{SIGNER_ALIAS_2}}"},
            "signer": {"rows": [
                {"alias": "${property.signerAlias}", "algorithm": "SHA256/RSA",
                 "include_certificates": true, "include_signing_time": true},
                {"alias": "${property.signerAlias2}", "algorithm": "SHA256/RSA",
                 "include_certificates": true, "include_signing_time": true}
            ], "payload_included": true},
            "deployed": true
        }]
    });
    // Written once, read once by the fake at its start-up.
    static CONFIG: OnceLock<String> = OnceLock::new();
    let path = CONFIG.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("rekey-fake-sap-ci-{}.json", std::process::id()));
        std::fs::write(&path, config.to_string()).expect("fake configuration");
        path.to_string_lossy().into_owned()
    });
    fake("renewal", &["--config", path.as_str()])
}

/// The tests that run renewals on the renewal fake take turns.
static RENEWAL_FAKE: Mutex<()> = Mutex::new(());

/// The renewal fake as it was seeded, give or take the key itself: a key under `signer`, none
/// under `signer_next`, no pending key (a finished renewal leaves its new key under
/// `signer_next`, which becomes the next run's `signer`).
fn reset_renewal_fake(url: &str) {
    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    let system = state["keystores"]["system"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for alias in system.keys().filter(|a| a.starts_with("rekey-pending-")) {
        by_hand(url, "delete", json!({"alias": alias}));
    }
    match (
        system.contains_key("signer"),
        system.contains_key("signer_next"),
    ) {
        (false, true) => by_hand(
            url,
            "rename",
            json!({"alias": "signer_next", "new_alias": "signer"}),
        ),
        (true, true) => by_hand(url, "delete", json!({"alias": "signer_next"})),
        (false, false) => by_hand(
            url,
            "generate",
            json!({"alias": "signer", "key_size": 2048}),
        ),
        (true, false) => {}
    }
}

/// Whether step `step` of renewal `id` is done, as `rekey renewal show` says.
fn step_done(env: &Env, id: &str, step: &str) -> bool {
    let shown = env.json(&["renewal", "show", id, "--json"]);
    shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == step)
        .is_some_and(|s| s["status"].to_string().contains("\"done\""))
}

/// A crash at every remote-call boundary of `prepared-second-alias` (the process aborts, as
/// abruptly as `kill -9`, through `REKEY_FAILPOINT`), then the person repeats what they did:
/// each time the renewal completes with exactly one key generated on the tenant, the new key
/// under the prepared alias and recorded so, the old key gone after a sync (the reconciliation
/// a crash skipped), no pending key left, and the deployed flow's probe accepted.
#[test]
fn a_crash_at_every_remote_call_boundary_resumes_consistently() {
    let Some(fake) = renewal_fake() else {
        return;
    };
    let url = fake.url.as_str();
    let _serial = RENEWAL_FAKE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("dir");
    let matrix: &[(&str, &[&str])] = &[
        (
            "create-key-pair",
            &[
                "before-token-generate",
                "after-token-generate",
                "before-commit",
                "after-commit",
            ],
        ),
        (
            "add-key-prepared-alias",
            &[
                "before-remote-rename",
                "after-remote-rename",
                "before-commit",
                "after-commit",
            ],
        ),
        (
            "remove-old-key",
            &[
                "before-commit",
                "after-commit",
                "before-remote-delete",
                "after-remote-delete",
            ],
        ),
    ];
    for (crash_step, points) in matrix {
        for point in *points {
            reset_renewal_fake(url);
            let since = last_seq(url);
            let env = Env::sqlite();
            renewal_env(&env, url);
            let r = env.json(&[START_PREPARED, &["--json"]].concat());
            let id = r["id"].as_str().expect("id").to_string();
            for (step, who) in [
                ("create-key-pair", ADMIN),
                ("add-key-prepared-alias", ADMIN),
                ("switch-receiver", OPS),
                ("remove-old-key", ADMIN),
            ] {
                let task = format!("{id}:{step}");
                let mut args = vec!["task", "approve", task.as_str(), "--as", who];
                let fp;
                if step == "switch-receiver" {
                    fp = env.json(&["renewal", "show", &id, "--json"])["new_cert"]
                        .as_str()
                        .expect("new certificate")
                        .to_string();
                    args = vec![
                        "task",
                        "complete",
                        task.as_str(),
                        "--fingerprint",
                        &fp,
                        "--as",
                        who,
                    ];
                }
                if step == *crash_step {
                    let o = env
                        .cmd()
                        .env("REKEY_FAILPOINT", point)
                        .args(&args)
                        .output()
                        .expect("runs");
                    assert!(
                        !o.status.success(),
                        "{step} at {point}: the fail point was not reached: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    // The person does it again, unless it was done before the crash.
                    if !step_done(&env, &id, step) {
                        env.ok(&args);
                    }
                } else {
                    env.ok(&args);
                }
            }
            let at = format!("crash in {crash_step} at {point}");
            let done = env.json(&["renewal", "show", &id, "--json"]);
            assert_eq!(done["status"], "completed", "{at}: {done}");
            let new = done["new_cert"]
                .as_str()
                .expect("new")
                .replace(':', "")
                .to_lowercase();
            // What a crash after the commit left undone, the next sync (or event) finishes.
            env.ok(&["tenant", "sync", "--as", ADMIN]);
            let state = call(Method::Get, &format!("{url}/fake/state"), None);
            let system = state["keystores"]["system"].as_object().expect("system");
            assert!(
                !system.contains_key("signer"),
                "{at}: old key still there: {state}"
            );
            assert!(
                !system.keys().any(|a| a.starts_with("rekey-pending-")),
                "{at}: a pending key was left: {state}"
            );
            assert_eq!(
                fake_fingerprint(url, "signer_next"),
                Some(new.clone()),
                "{at}"
            );
            assert_eq!(recorded(&env, "signer_next"), Some(new.clone()), "{at}");
            assert_eq!(recorded(&env, "signer"), None, "{at}");
            let generated = audit(url, since)
                .iter()
                .filter(|c| {
                    c["method"] == "POST"
                        && c["path"]
                            .as_str()
                            .is_some_and(|p| p.ends_with("/KeyPairGenerationRequests"))
                        && c["status"].as_u64().is_some_and(|s| s < 300)
                })
                .count();
            assert_eq!(generated, 1, "{at}: keys generated on the tenant");
            assert_eq!(probe(&env, url, dir.path()), ["signer_next"], "{at}");
        }
    }
}

/// What the tenant's deployed flow sends now, judged as receiver `R` would: the fake runtime
/// signs a payload; OpenSSL checks every signature (`-noverify`: no chain trust, and writes
/// the signers' certificates out); the message is accepted when one signer's certificate is
/// one the receiver trusts as rekey records it (`--accepts-multiple-signatures`). Returns the
/// aliases that signed.
fn probe(env: &Env, url: &str, dir: &Path) -> Vec<String> {
    let (aliases, signed_by, trusted) = probe_signers(env, url, dir);
    assert!(
        signed_by.iter().any(|f| trusted.contains(f)),
        "receiver R would reject the probe: signed by {signed_by:?} ({aliases:?}), trusts {trusted:?}"
    );
    aliases
}

/// The aliases that signed a probe of the deployed flow, the fingerprints of their
/// certificates (every signature checked by OpenSSL) and the certificates receiver `R`
/// trusts as rekey records them.
fn probe_signers(env: &Env, url: &str, dir: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let answer = runtime()
        .block_on(http::request(
            Method::Post,
            &format!("{url}/fake/runtime/{FLOW}/sign"),
            &[("content-type", "text/plain".to_string())],
            b"probe from the receiver's side".to_vec(),
            Duration::from_secs(10),
        ))
        .expect("the fake runtime answers");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let aliases: Vec<String> = answer
        .header("x-fake-signer-aliases")
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let message = dir.join("probe.p7m");
    let signers = dir.join("signers.pem");
    std::fs::write(&message, &answer.body).expect("probe");
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-noverify", "-in"])
        .arg(&message)
        .arg("-signer")
        .arg(&signers)
        .args(["-out", "/dev/null"])
        .output()
        .expect("runs openssl");
    assert!(
        out.status.success(),
        "a signature of the probe does not verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(&signers).expect("signer certificates");
    let signed_by: Vec<String> = rekey_crypto::Certificate::parse_pem_chain(&pem)
        .expect("certificates")
        .iter()
        .map(|c| c.fingerprint().to_string())
        .collect();
    let receiver = env.json(&[
        "--tenant", "acme", "receiver", "show", "--name", "R", "--json",
    ]);
    let trusted: Vec<String> = receiver["trusted"]
        .as_array()
        .expect("trusted")
        .iter()
        .filter_map(|t| t["fingerprint"].as_str())
        .map(|f| f.replace(':', "").to_lowercase())
        .collect();
    (aliases, signed_by, trusted)
}

/// `renewal start` of `prepared-second-alias` for `signer` into the prepared `signer_next`.
const START_PREPARED: &[&str] = &[
    "--tenant",
    "acme",
    "renewal",
    "start",
    "--flow",
    "F",
    "--step",
    "S",
    "--alias",
    "signer",
    "--receiver",
    "R",
    "--procedure",
    "prepared-second-alias",
    "--new-alias",
    "signer_next",
    "--bits",
    "2048",
    "--as",
    ADMIN,
];

/// Tenant `acme`'s signer step `F`/`S` listing `signer` and the prepared `signer_next` (no key
/// yet), and receiver `R` (administrator `OPS`, described by `receiver`'s flags) trusting
/// `signer`.
fn signer_step_and_receiver(env: &Env, receiver: &[&str]) {
    let acme = |args: &[&str]| env.ok(&[&["--tenant", "acme"], args].concat());
    acme(&["flow", "add", "--flow", "F", "--step", "S", "--as", ADMIN]);
    for alias in ["signer", "signer_next"] {
        acme(&[
            "signer",
            "add-alias",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            alias,
            "--as",
            ADMIN,
        ]);
    }
    acme(
        &[
            &[
                "receiver", "add", "--name", "R", "--admin", OPS, "--as", ADMIN,
            ],
            receiver,
        ]
        .concat(),
    );
    acme(&[
        "receiver", "trust", "--name", "R", "--alias", "signer", "--as", ADMIN,
    ]);
}

/// The receiver flag of `prepared-second-alias`'s receivers.
const MULTIPLE_SIGNATURES: &str = "--accepts-multiple-signatures";

/// Tenant `acme` on the renewal fake at `url` (`country = "DE"` for keys made there), its
/// three people, the tenant's keys recorded by a sync, signer step `F`/`S` listing `signer` and
/// the prepared `signer_next`, and receiver `R` (two signatures accepted) trusting `signer`.
fn renewal_env(env: &Env, url: &str) {
    renewal_env_for(env, url, &[MULTIPLE_SIGNATURES]);
}

/// [`renewal_env`] with receiver `R` described by `receiver`'s flags.
fn renewal_env_for(env: &Env, url: &str, receiver: &[&str]) {
    env.ok(&["init"]);
    env.ok(&["tenant", "add", "acme"]);
    let secret = env.path("client-secret");
    std::fs::write(&secret, SECRET).expect("secret");
    configure(
        env,
        url,
        &format!("client_secret_file = {secret:?}\ncountry = \"DE\""),
    );
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    env.ok(&[
        "user",
        "add",
        "--email",
        DEV,
        "--role",
        "integration_developer",
    ]);
    env.ok(&["tenant", "sync", "--as", ADMIN]);
    signer_step_and_receiver(env, receiver);
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
}

/// `prepared-second-alias` carried out on the (fake) tenant through the binary: the new key is
/// generated on the tenant, renamed into the signer step's prepared second alias, and the old
/// key deleted after a keystore backup; the deployed flow, probed after every step, signs as
/// the seed says and the receiver accepts every probe; the receiver administrator's mail says
/// why there is no test message; procedures the tenant cannot carry out are refused at start.
#[test]
fn prepared_second_alias_runs_on_the_tenant_and_every_probe_is_accepted() {
    let Some(fake) = renewal_fake() else {
        return;
    };
    let _serial = RENEWAL_FAKE.lock().unwrap_or_else(|p| p.into_inner());
    let url = fake.url.as_str();
    common::on_both(|env| walk_prepared_second_alias(url, env));
}

/// One run of [`prepared_second_alias_runs_on_the_tenant_and_every_probe_is_accepted`] on
/// `env`'s database.
fn walk_prepared_second_alias(url: &str, env: &Env) {
    reset_renewal_fake(url);
    renewal_env(env, url);
    let dir = tempfile::tempdir().expect("dir");
    let old = fake_fingerprint(url, "signer").expect("seeded");
    assert_eq!(probe(env, url, dir.path()), ["signer"]);

    // What the tenant cannot carry out is refused before anything starts.
    let dual_signature: Vec<&str> = START_PREPARED
        .iter()
        .map(|a| {
            if *a == "prepared-second-alias" {
                "dual-signature"
            } else {
                a
            }
        })
        .collect();
    env.refuses(
        &dual_signature,
        &["procedure dual-signature cannot run on an SAP Cloud Integration tenant yet"],
    );
    let r = env.json(&[START_PREPARED, &["--json"]].concat());
    let id = r["id"].as_str().expect("id").to_string();
    let step = |s: &str| format!("{id}:{s}");

    env.ok(&["task", "approve", &step("create-key-pair"), "--as", ADMIN]);
    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    let pending: Vec<&String> = state["keystores"]["system"]
        .as_object()
        .expect("system")
        .keys()
        .filter(|a| a.starts_with("rekey-pending-"))
        .collect();
    assert_eq!(pending.len(), 1, "one key generated on the tenant: {state}");
    let new = fake_fingerprint(url, pending[0]).expect("pending key");
    let shown = env.json(&["renewal", "show", &id, "--json"]);
    assert_eq!(
        shown["new_cert"]
            .as_str()
            .map(|f| f.replace(':', "").to_lowercase()),
        Some(new.clone()),
        "the renewal's new certificate is the one the tenant made: {shown}"
    );
    // The pending key is in no signer row: the flow still signs with the old key alone.
    assert_eq!(probe(env, url, dir.path()), ["signer"]);
    // Not recorded as a key of the tenant's own by a sync meanwhile.
    let synced = env.ok(&["tenant", "sync", "--as", ADMIN]);
    assert!(!synced.contains("rekey-pending-"), "{synced}");

    env.ok(&[
        "task",
        "approve",
        &step("add-key-prepared-alias"),
        "--as",
        ADMIN,
    ]);
    assert_eq!(fake_fingerprint(url, "signer_next"), Some(new.clone()));
    assert_eq!(recorded(env, "signer_next"), Some(new.clone()));
    // Two signatures from now on; the receiver still trusts only the old key, and accepts.
    assert_eq!(probe(env, url, dir.path()), ["signer", "signer_next"]);

    env.ok(&["mail", "send-due"]);
    env.ok(&[
        "task",
        "complete",
        &step("switch-receiver"),
        "--fingerprint",
        &new,
        "--as",
        OPS,
    ]);
    assert_eq!(probe(env, url, dir.path()), ["signer", "signer_next"]);

    env.ok(&["task", "approve", &step("remove-old-key"), "--as", ADMIN]);
    assert_eq!(fake_fingerprint(url, "signer"), None, "old key deleted");
    assert_eq!(probe(env, url, dir.path()), ["signer_next"]);
    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    assert_eq!(
        state["keystores"]["backup_admin_system"]["signer"]["fingerprint_sha256"]
            .as_str()
            .map(|f| f.replace(':', "").to_lowercase()),
        Some(old.clone()),
        "the old key is in the backup made before the delete: {state}"
    );
    let done = env.json(&["renewal", "show", &id, "--json"]);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(recorded(env, "signer"), None);

    // The receiver administrator was told why no test message came with the switch.
    env.ok(&["mail", "send-due"]);
    let sent = common::outbox_mails(&env.data());
    let switch = sent
        .iter()
        .find(|m| m.contains(&format!("To: {OPS}")) && m.contains("No test message is attached"))
        .unwrap_or_else(|| {
            panic!("no mail to {OPS} explaining the missing test message: {sent:#?}")
        });
    assert!(switch.contains(&new), "{switch}");
    assert!(!switch.contains("test-message.p7m"), "{switch}");
}

/// The receiver administrator completes task `task` naming certificate `fp`.
fn complete_as_ops(env: &Env, task: &str, fp: &str) {
    env.ok(&["task", "complete", task, "--fingerprint", fp, "--as", OPS]);
}

/// Starts `procedure` (one that exchanges the key under its alias) for `signer`; its id.
fn start_exchange(env: &Env, procedure: &str, extra: &[&str]) -> String {
    let mut args: Vec<&str> = Vec::new();
    let mut it = START_PREPARED.iter();
    while let Some(a) = it.next() {
        match *a {
            "--new-alias" => {
                it.next();
            }
            "prepared-second-alias" => args.push(procedure),
            other => args.push(other),
        }
    }
    args.extend(extra);
    args.push("--json");
    env.json(&args)["id"].as_str().expect("id").to_string()
}

/// The renewal's new certificate, as `renewal show` names it (lowercase hex).
fn new_cert(env: &Env, id: &str) -> String {
    env.json(&["renewal", "show", id, "--json"])["new_cert"]
        .as_str()
        .expect("new certificate")
        .replace(':', "")
        .to_lowercase()
}

/// The tenant's calls since audit sequence `since` that succeeded with `method` on a path
/// ending in `tail`.
fn calls(url: &str, since: u64, method: &str, tail: &str) -> usize {
    audit(url, since)
        .iter()
        .filter(|c| {
            c["method"] == method
                && c["path"].as_str().is_some_and(|p| {
                    p.split('?')
                        .next()
                        .is_some_and(|p| p.ends_with(tail) || p.contains(&format!("{tail}(")))
                })
                && c["status"].as_u64().is_some_and(|s| s < 300)
        })
        .count()
}

/// `dual-trust` and `downtime-window` exchange the key under the signer's own alias on the
/// (fake) tenant: rekey makes the new key, hands its certificate to the receiver, and at the
/// exchange backs the keystore up and imports the key over the old one with one PKCS#12 call
/// (`update=true`) — no delete, no moment without a key. The deployed flow, probed after every
/// step, signs with the old key until the exchange and with the new one from then on; every
/// probe of `dual-trust` is accepted, and `downtime-window`'s only rejection falls inside the
/// agreed window.
#[test]
fn an_exchange_under_the_alias_is_one_import_and_every_probe_outside_the_window_is_accepted() {
    let Some(fake) = renewal_fake() else {
        return;
    };
    let _serial = RENEWAL_FAKE.lock().unwrap_or_else(|p| p.into_inner());
    let url = fake.url.as_str();
    common::on_both(|env| walk_dual_trust(url, env));
    common::on_both(|env| walk_downtime_window(url, env));
}

/// One `dual-trust` run on `env`'s database.
fn walk_dual_trust(url: &str, env: &Env) {
    reset_renewal_fake(url);
    renewal_env_for(env, url, &["--verifies-multiple-keys"]);
    let dir = tempfile::tempdir().expect("dir");
    let old = fake_fingerprint(url, "signer").expect("seeded");
    let since = last_seq(url);
    let id = start_exchange(env, "dual-trust", &[]);
    let step = |s: &str| format!("{id}:{s}");

    env.ok(&["task", "approve", &step("create-key-pair"), "--as", ADMIN]);
    let new = new_cert(env, &id);
    assert_ne!(new, old);
    // Made by rekey: nothing on the tenant yet, which still signs with the old key.
    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    assert!(
        !state["keystores"]["system"]
            .as_object()
            .expect("system")
            .keys()
            .any(|a| a.starts_with("rekey-pending-")),
        "{state}"
    );
    assert_eq!(fake_fingerprint(url, "signer"), Some(old.clone()));
    assert_eq!(probe(env, url, dir.path()), ["signer"]);

    complete_as_ops(env, &step("trust-old-and-new"), &new);
    assert_eq!(probe(env, url, dir.path()), ["signer"]);

    env.ok(&["task", "approve", &step("exchange-key-pair"), "--as", ADMIN]);
    assert_eq!(fake_fingerprint(url, "signer"), Some(new.clone()));
    assert_eq!(recorded(env, "signer"), Some(new.clone()));
    let (_, signed_by, _) = probe_signers(env, url, dir.path());
    assert_eq!(
        signed_by,
        std::slice::from_ref(&new),
        "the tenant signs with the new key"
    );
    assert_eq!(probe(env, url, dir.path()), ["signer"]);
    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    assert_eq!(
        state["keystores"]["backup_admin_system"]["signer"]["fingerprint_sha256"]
            .as_str()
            .map(|f| f.replace(':', "").to_lowercase()),
        Some(old.clone()),
        "the old key is in the backup made before the exchange: {state}"
    );
    // Rolling back cannot put the old key back: the tenant never let it out.
    env.refuses(
        &["renewal", "rollback", &id, "--as", ADMIN],
        &["backup_admin_system", "nothing was changed"],
    );
    assert_eq!(fake_fingerprint(url, "signer"), Some(new.clone()));
    assert_eq!(recorded(env, "signer"), Some(new.clone()));
    assert_eq!(calls(url, since, "POST", "/KeyPairResources"), 1);
    assert_eq!(calls(url, since, "POST", "/KeyPairGenerationRequests"), 0);
    assert_eq!(calls(url, since, "DELETE", "/KeystoreEntries"), 0);

    complete_as_ops(env, &step("remove-old-trust"), &new);
    // The receiver trusts only the new certificate now, and accepts.
    assert_eq!(probe(env, url, dir.path()), ["signer"]);
    let done = env.json(&["renewal", "show", &id, "--json"]);
    assert_eq!(done["status"], "completed", "{done}");
    // A sync finds the tenant as rekey recorded it.
    let synced = env.ok(&["tenant", "sync", "--as", ADMIN]);
    assert!(synced.contains(" 0 changed, 0 removed, 0 held"), "{synced}");
    assert_eq!(recorded(env, "signer"), Some(new));
    env.ok(&["audit", "verify"]);
}

/// One `downtime-window` run on `env`'s database.
fn walk_downtime_window(url: &str, env: &Env) {
    reset_renewal_fake(url);
    renewal_env_for(env, url, &[]);
    let dir = tempfile::tempdir().expect("dir");
    let old = fake_fingerprint(url, "signer").expect("seeded");
    let id = start_exchange(env, "downtime-window", &[]);
    let step = |s: &str| format!("{id}:{s}");

    env.ok(&["task", "approve", &step("create-key-pair"), "--as", ADMIN]);
    let new = new_cert(env, &id);
    assert_eq!(probe(env, url, dir.path()), ["signer"]);
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start = chrono::Utc::now() + chrono::Duration::seconds(3);
    env.ok(&[
        "window",
        "propose",
        &id,
        "--start",
        &rfc(start),
        "--end",
        &rfc(start + chrono::Duration::hours(1)),
        "--as",
        ADMIN,
    ]);
    env.ok(&["window", "accept", &id, "--as", OPS]);
    // Outside the window the exchange is not due, and the tenant is untouched.
    env.refuses(
        &["task", "approve", &step("exchange-key-pair"), "--as", ADMIN],
        &["exchange-key-pair", "not due yet"],
    );
    assert_eq!(fake_fingerprint(url, "signer"), Some(old.clone()));
    assert_eq!(probe(env, url, dir.path()), ["signer"]);

    if let Ok(wait) = (start - chrono::Utc::now() + chrono::Duration::milliseconds(500)).to_std() {
        std::thread::sleep(wait);
    }
    env.ok(&["scheduler", "run", "--once"]);
    env.ok(&["task", "approve", &step("exchange-key-pair"), "--as", ADMIN]);
    assert_eq!(fake_fingerprint(url, "signer"), Some(new.clone()));
    // Inside the window: the tenant signs with the new key, which the receiver does not trust
    // yet — the one rejection the procedure allows.
    let (_, signed_by, trusted) = probe_signers(env, url, dir.path());
    assert_eq!(signed_by, std::slice::from_ref(&new));
    assert_eq!(trusted, std::slice::from_ref(&old));

    complete_as_ops(env, &step("switch-receiver"), &new);
    assert_eq!(probe(env, url, dir.path()), ["signer"]);
    let done = env.json(&["renewal", "show", &id, "--json"]);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(recorded(env, "signer"), Some(new));
}

/// A crash at every boundary of the exchange of `dual-trust` (around the PKCS#12 import and
/// the step's commit), then the person approves again: the renewal completes with the key
/// imported exactly once, the tenant and the record agree, and the probe is accepted.
#[test]
fn a_crash_around_the_import_resumes_without_a_second_import() {
    let Some(fake) = renewal_fake() else {
        return;
    };
    let url = fake.url.as_str();
    let _serial = RENEWAL_FAKE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("dir");
    for point in [
        "before-remote-import",
        "after-remote-import",
        "before-commit",
        "after-commit",
    ] {
        reset_renewal_fake(url);
        let since = last_seq(url);
        let env = Env::sqlite();
        renewal_env_for(&env, url, &["--verifies-multiple-keys"]);
        let id = start_exchange(&env, "dual-trust", &[]);
        let task = |s: &str| format!("{id}:{s}");
        env.ok(&["task", "approve", &task("create-key-pair"), "--as", ADMIN]);
        let new = new_cert(&env, &id);
        complete_as_ops(&env, &task("trust-old-and-new"), &new);
        let exchange = task("exchange-key-pair");
        let args = ["task", "approve", exchange.as_str(), "--as", ADMIN];
        let o = env
            .cmd()
            .env("REKEY_FAILPOINT", point)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            !o.status.success(),
            "{point}: the fail point was not reached: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if !step_done(&env, &id, "exchange-key-pair") {
            env.ok(&args);
        }
        complete_as_ops(&env, &task("remove-old-trust"), &new);
        let at = format!("crash at {point}");
        let done = env.json(&["renewal", "show", &id, "--json"]);
        assert_eq!(done["status"], "completed", "{at}: {done}");
        assert_eq!(fake_fingerprint(url, "signer"), Some(new.clone()), "{at}");
        assert_eq!(recorded(&env, "signer"), Some(new.clone()), "{at}");
        assert_eq!(
            calls(url, since, "POST", "/KeyPairResources"),
            1,
            "{at}: imports"
        );
        assert_eq!(calls(url, since, "DELETE", "/KeystoreEntries"), 0, "{at}");
        assert_eq!(probe(&env, url, dir.path()), ["signer"], "{at}");
    }
}

/// `renewal upload-cert` of `chain` for renewal `id`, by the tenant administrator.
fn upload_args<'a>(id: &'a str, chain: &'a Path) -> [&'a str; 7] {
    let chain = chain.to_str().expect("path");
    ["renewal", "upload-cert", id, "--cert", chain, "--as", ADMIN]
}

/// The one pending alias on the tenant.
fn pending_on_tenant(url: &str) -> String {
    let state = call(Method::Get, &format!("{url}/fake/state"), None);
    let pending: Vec<String> = state["keystores"]["system"]
        .as_object()
        .expect("system")
        .keys()
        .filter(|a| a.starts_with("rekey-pending-"))
        .cloned()
        .collect();
    assert_eq!(pending.len(), 1, "one pending key on the tenant: {state}");
    pending[0].clone()
}

/// Has a new throwaway CA in `dir` sign the request `renewal csr` prints for renewal `id`;
/// writes the chain (leaf, CA) to `dir/chain.pem` and returns (leaf fingerprint, CA PEM).
fn ca_signs(env: &Env, id: &str, dir: &Path) -> (String, String) {
    let csr = env.ok(&["renewal", "csr", id]);
    let (leaf, ca) = common::openssl::ca_sign(dir, &csr);
    std::fs::write(dir.join("chain.pem"), format!("{leaf}{ca}")).expect("chain");
    let fp = rekey_crypto::Certificate::parse_pem_chain(&leaf).expect("leaf")[0]
        .fingerprint()
        .to_string()
        .replace(':', "")
        .to_lowercase();
    (fp, ca)
}

/// CA-signed renewals on the (fake) tenant. `prepared-second-alias`: the key is generated on
/// the tenant and `renewal csr` prints the tenant's own request for it; a chain from a CA the
/// tenant's keystore does not know is refused with the tenant's answer and changes nothing;
/// once the tenant administrator added the CA's certificate there, the chain goes onto the
/// pending key, which becomes the prepared alias with its CA-signed certificate. `dual-trust`:
/// the request is rekey's, and the chain is imported with the key at the exchange. Every probe
/// accepted.
#[test]
fn ca_signed_keys_take_their_chain_on_the_tenant() {
    let Some(fake) = renewal_fake() else {
        return;
    };
    let url = fake.url.as_str();
    let _serial = RENEWAL_FAKE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("dir");

    reset_renewal_fake(url);
    let env = Env::sqlite();
    renewal_env(&env, url);
    let since = last_seq(url);
    let r = env.json(&[START_PREPARED, &["--ca-signed", "--json"]].concat());
    let id = r["id"].as_str().expect("id").to_string();
    let step = |s: &str| format!("{id}:{s}");
    env.ok(&["task", "approve", &step("create-key-pair"), "--as", ADMIN]);
    assert!(
        !step_done(&env, &id, "create-key-pair"),
        "waits for the chain"
    );
    let pending = pending_on_tenant(url);
    let ca_dir = tempfile::tempdir().expect("dir");
    let (leaf, ca) = ca_signs(&env, &id, ca_dir.path());
    assert_eq!(calls(url, since, "GET", "/SigningRequest/$value"), 1);
    // The request is for the key the tenant holds.
    let tenant_cert = runtime()
        .block_on(client_for(url).certificate(&pending, None))
        .expect("reads")
        .expect("pending certificate");
    let csr = env.ok(&["renewal", "csr", &id]);
    assert_eq!(
        rekey_crypto::certificate_request_public_key(csr.as_bytes()).expect("request"),
        tenant_cert.public_key_der().expect("public key")
    );
    let chain = ca_dir.path().join("chain.pem");
    let upload = upload_args(&id, &chain);
    let before = fake_fingerprint(url, &pending);
    env.refuses(
        &upload,
        &[
            "trust path not established",
            "import the CA's certificate",
            "nothing was changed",
        ],
    );
    assert_eq!(fake_fingerprint(url, &pending), before, "nothing changed");
    assert!(!step_done(&env, &id, "create-key-pair"));
    by_hand(
        url,
        "add-certificate",
        json!({"alias": "test-ca", "pem": ca}),
    );
    let out = env.ok(&upload);
    assert!(out.contains("done: create-key-pair"), "{out}");
    assert_eq!(fake_fingerprint(url, &pending), Some(leaf.clone()));
    assert_eq!(new_cert(&env, &id), leaf);
    env.ok(&[
        "task",
        "approve",
        &step("add-key-prepared-alias"),
        "--as",
        ADMIN,
    ]);
    assert_eq!(fake_fingerprint(url, "signer_next"), Some(leaf.clone()));
    assert_eq!(recorded(&env, "signer_next"), Some(leaf.clone()));
    assert_eq!(probe(&env, url, dir.path()), ["signer", "signer_next"]);
    complete_as_ops(&env, &step("switch-receiver"), &leaf);
    env.ok(&["task", "approve", &step("remove-old-key"), "--as", ADMIN]);
    assert_eq!(probe(&env, url, dir.path()), ["signer_next"]);
    let done = env.json(&["renewal", "show", &id, "--json"]);
    assert_eq!(done["status"], "completed", "{done}");
    by_hand(url, "delete", json!({"alias": "test-ca"}));

    reset_renewal_fake(url);
    let env = Env::sqlite();
    renewal_env_for(&env, url, &["--verifies-multiple-keys"]);
    let id = start_exchange(&env, "dual-trust", &["--ca-signed"]);
    let step = |s: &str| format!("{id}:{s}");
    env.ok(&["task", "approve", &step("create-key-pair"), "--as", ADMIN]);
    let ca_dir = tempfile::tempdir().expect("dir");
    let (leaf, _) = ca_signs(&env, &id, ca_dir.path());
    let chain = ca_dir.path().join("chain.pem");
    let out = env.ok(&upload_args(&id, &chain));
    assert!(out.contains("done: create-key-pair"), "{out}");
    complete_as_ops(&env, &step("trust-old-and-new"), &leaf);
    env.ok(&["task", "approve", &step("exchange-key-pair"), "--as", ADMIN]);
    assert_eq!(fake_fingerprint(url, "signer"), Some(leaf.clone()));
    let (_, signed_by, _) = probe_signers(&env, url, dir.path());
    assert_eq!(signed_by, std::slice::from_ref(&leaf));
    complete_as_ops(&env, &step("remove-old-trust"), &leaf);
    assert_eq!(probe(&env, url, dir.path()), ["signer"]);
    let done = env.json(&["renewal", "show", &id, "--json"]);
    assert_eq!(done["status"], "completed", "{done}");
}

/// A crash around the chain's upload to the tenant, then the tenant administrator uploads
/// again: the chain is put on the pending key once, and the step completes with it.
#[test]
fn a_crash_around_the_chain_upload_resumes_without_a_second_upload() {
    let Some(fake) = renewal_fake() else {
        return;
    };
    let url = fake.url.as_str();
    let _serial = RENEWAL_FAKE.lock().unwrap_or_else(|p| p.into_inner());
    for point in ["before-remote-chain", "after-remote-chain", "before-commit"] {
        reset_renewal_fake(url);
        let env = Env::sqlite();
        renewal_env(&env, url);
        let r = env.json(&[START_PREPARED, &["--ca-signed", "--json"]].concat());
        let id = r["id"].as_str().expect("id").to_string();
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:create-key-pair"),
            "--as",
            ADMIN,
        ]);
        let pending = pending_on_tenant(url);
        let ca_dir = tempfile::tempdir().expect("dir");
        let (leaf, ca) = ca_signs(&env, &id, ca_dir.path());
        by_hand(
            url,
            "add-certificate",
            json!({"alias": "test-ca", "pem": ca}),
        );
        let since = last_seq(url);
        let chain = ca_dir.path().join("chain.pem");
        let upload = upload_args(&id, &chain);
        let o = env
            .cmd()
            .env("REKEY_FAILPOINT", point)
            .args(upload)
            .output()
            .expect("runs");
        assert!(
            !o.status.success(),
            "{point}: the fail point was not reached"
        );
        assert!(!step_done(&env, &id, "create-key-pair"), "{point}");
        let out = env.ok(&upload);
        assert!(out.contains("done: create-key-pair"), "{point}: {out}");
        assert_eq!(
            fake_fingerprint(url, &pending),
            Some(leaf.clone()),
            "{point}"
        );
        assert_eq!(new_cert(&env, &id), leaf, "{point}");
        let uploads = calls(url, since, "PUT", "/CertificateChainResources");
        assert_eq!(
            uploads, 1,
            "{point}: uploads of the crashed and the repeated command"
        );
        by_hand(url, "delete", json!({"alias": "test-ca"}));
        env.ok(&["renewal", "cancel", &id, "--as", ADMIN]);
    }
}

/// Over the API, as through the CLI: an action on a renewal whose tenant cannot be read answers
/// 502 with the tenant's own text, and one whose tenant was changed by hand answers 409 naming
/// both certificates; neither changes the renewal.
#[test]
fn the_api_answers_an_unreadable_tenant_502_and_a_change_by_hand_409() {
    let Some(fake) = renewal_fake() else {
        return;
    };
    let url = fake.url.as_str();
    let _serial = RENEWAL_FAKE.lock().unwrap_or_else(|p| p.into_inner());
    reset_renewal_fake(url);
    let env = Env::sqlite();
    renewal_env(&env, url);
    let r = env.json(&[START_PREPARED, &["--json"]].concat());
    let id = r["id"].as_str().expect("id").to_string();
    let token = env.ok(&["user", "token", "--email", ADMIN]);
    let bearer = format!("Bearer {}", token.trim());
    // No expiry watch in this server: its pass would read the tenant and take the fault below.
    let config = env.data().join("rekey.toml");
    let mut text = std::fs::read_to_string(&config).expect("configuration");
    text.push_str("\n[server]\nwatch_interval_secs = 0\n");
    std::fs::write(&config, text).expect("configuration");
    let served = common::serve::start({
        let mut cmd = env.cmd();
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        cmd
    })
    .expect("rekey serve starts");
    let approve = |label: &str| {
        let a = common::serve::json_request(
            &served.addr,
            "POST",
            &format!("/api/tasks/{id}/create-key-pair/approve"),
            &[("authorization", bearer.as_str())],
            Some("{}"),
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        (a.status_line, a.body)
    };
    let before = env.json(&["renewal", "show", &id, "--json"]);

    call(
        Method::Post,
        &format!("{url}/fake/faults"),
        Some(json!({"status": 500, "calls": 1, "scope": "reads",
                    "message": "Internal error in the keystore service"})),
    );
    let (status, body) = approve("unreadable");
    assert!(status.contains(" 502 "), "{status}: {body}");
    assert!(
        body.contains("Internal error in the keystore service"),
        "{body}"
    );

    let seeded = fake_fingerprint(url, "signer").expect("seeded");
    by_hand(url, "replace", json!({"alias": "signer"}));
    let by_hand_fp = fake_fingerprint(url, "signer").expect("replaced");
    let (status, body) = approve("changed");
    assert!(status.contains(" 409 "), "{status}: {body}");
    for needle in [
        "changed outside rekey",
        seeded.as_str(),
        by_hand_fp.as_str(),
    ] {
        assert!(body.contains(needle), "{needle:?} not in {body}");
    }
    let _ = served.stop();
    assert_eq!(env.json(&["renewal", "show", &id, "--json"]), before);
}

/// The client's Integration Content calls against a fake of their own (they change the flow):
/// a parameter set changes only the designtime configuration until a deploy, which the client
/// follows through the deploy task and the runtime to `STARTED`; a deploy that ends in
/// `ERROR` is an error carrying the tenant's text; a parameter the flow does not externalize
/// is refused with the tenant's message; the task id is read in both documented answer forms.
#[test]
fn a_parameter_reaches_the_runtime_only_through_a_deploy_that_is_followed_to_started() {
    let Some(fake) = fake("deploy", &[]) else {
        return;
    };
    let url = fake.url.as_str();
    let client = client_for(url);
    let state = || call(Method::Get, &format!("{url}/fake/state"), None);
    let poll = Duration::from_millis(100);
    let deadline = Duration::from_secs(20);
    // A second of slack: the fake stamps DeployedOn with its own reading of the same clock.
    let asked = || chrono::Utc::now() - chrono::Duration::seconds(1);
    runtime().block_on(async {
        client
            .set_parameter(FLOW, "SIGNER_ALIAS", "signer_next")
            .await
            .expect("parameter set");
    });
    let s = state();
    assert_eq!(
        s["iflows"][FLOW]["designtime"]["SIGNER_ALIAS"], "signer_next",
        "{s}"
    );
    assert_eq!(
        s["iflows"][FLOW]["deployed"]["SIGNER_ALIAS"], "signer",
        "not deployed yet: {s}"
    );

    let deployed = runtime()
        .block_on(client.deploy_and_wait(FLOW, asked(), poll, deadline))
        .expect("deployed");
    assert!(!deployed.task.is_empty());
    let s = state();
    assert_eq!(s["iflows"][FLOW]["runtime"]["status"], "STARTED", "{s}");
    assert_eq!(
        s["iflows"][FLOW]["deployed"]["SIGNER_ALIAS"], "signer_next",
        "{s}"
    );

    // The other documented answer form of the deploy call.
    call(
        Method::Post,
        &format!("{url}/fake/settings"),
        Some(json!({"deploy_response": "json", "deploy_status_case": "title"})),
    );
    runtime()
        .block_on(client.deploy_and_wait(FLOW, asked(), poll, deadline))
        .expect("deployed with a JSON task id and title-case status");

    call(
        Method::Post,
        &format!("{url}/fake/deploy-failure"),
        Some(json!({"message": "Alias signer_next not found in keystore", "stage": "runtime"})),
    );
    let e = runtime()
        .block_on(client.deploy_and_wait(FLOW, asked(), poll, deadline))
        .expect_err("the flow ends in ERROR");
    assert!(
        e.to_string().contains("the flow is in ERROR")
            && e.to_string()
                .contains("Alias signer_next not found in keystore"),
        "{e}"
    );

    let e = runtime()
        .block_on(client.set_parameter(FLOW, "NOT_EXTERNALIZED", "x"))
        .expect_err("unknown parameter");
    assert!(
        e.to_string().contains("404") && e.to_string().contains("NOT_EXTERNALIZED"),
        "{e}"
    );
}
