//! `POST /api/sign` through the user's path: the real `rekey serve`, a service user given
//! `signer` of one flow and an API token with the CLI, payloads signed over HTTP and checked
//! with OpenSSL against the certificates the keystore exports — attached and detached, DER and
//! Base64, and following the step's Signer Parameters table as it is changed while the server
//! runs. Refusals (another flow, another tenant, bad input, a step with no key) are answered
//! with their status and the field, and change nothing; the signer can do nothing else, and
//! `rekey sign --flow` agrees with the API. One test, SQLite then PostgreSQL when configured.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Env;
use common::serve::{self, RawAnswer, post_json};
use serde_json::{Value, json};

const ADMIN: &str = "admin@acme.example";
const SIGNER: &str = "erp-signer@acme.example";
const PAYLOAD: &[u8] = b"<order>42</order>\r\n";

/// The command line on tenant `acme`.
fn acme<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--tenant", "acme"]);
    v
}

fn sign(addr: &str, token: &str, body: &Value) -> RawAnswer {
    let bytes = serde_json::to_vec(body).expect("JSON");
    post_json(addr, "/api/sign", token, &bytes).expect("POST /api/sign")
}

/// Asserts a refusal: `status`, a JSON error naming `field` (if given) and containing `needle`.
fn refused(a: &RawAnswer, status: u16, field: Option<&str>, needle: &str) {
    let v = a.json();
    assert_eq!(a.status, status, "{v}");
    assert_eq!(v["field"].as_str(), field, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{needle:?} not in {v}");
}

/// The SignedData as DER (decoding the Base64 answer), written to `name` in the test's folder.
fn save(env: &Env, name: &str, a: &RawAnswer) -> String {
    let der = if a
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain"))
    {
        STANDARD.decode(&a.body).expect("Base64 answer")
    } else {
        a.body.clone()
    };
    std::fs::write(env.path(name), der).expect("write");
    env.p(name)
}

/// `openssl cms -verify` of `p7m` under the certificates in `ca` (detached: with the payload).
fn verifies(env: &Env, p7m: &str, ca: &str, detached: bool) -> bool {
    let mut args = vec![
        "cms", "-verify", "-binary", "-inform", "DER", "-in", p7m, "-CAfile", ca,
    ];
    let content = env.p("payload.bin");
    if detached {
        args.extend(["-content", &content]);
    }
    let out = env.p("verified.out");
    args.extend(["-out", &out]);
    let ok = std::process::Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl")
        .status
        .success();
    if ok {
        assert_eq!(std::fs::read(&out).expect("content"), PAYLOAD);
    }
    ok
}

fn audit_len(env: &Env) -> usize {
    env.json(&["audit", "list", "--limit", "100000", "--json"])
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn a_signer_token_signs_as_its_flow_now_and_nothing_else() {
    common::on_both(|env| {
        env.ok(&["init"]);
        env.ok(&["tenant", "add", "acme"]);
        env.ok(&acme(&[
            "user",
            "add",
            "--email",
            ADMIN,
            "--role",
            "tenant_admin",
        ]));
        for alias in ["A", "B"] {
            // Distinct subjects, so OpenSSL finds each signer's own certificate.
            let subject = format!("CN=acme signer {alias},O=Acme");
            env.ok(&acme(&[
                "keystore",
                "generate",
                "--alias",
                alias,
                "--bits",
                "2048",
                "--subject",
                &subject,
                "--as",
                ADMIN,
            ]));
            let pem = env.ok(&acme(&["keystore", "export-cert", "--alias", alias]));
            std::fs::write(env.path(&format!("{alias}.pem")), pem).expect("cert");
        }
        std::fs::write(env.path("payload.bin"), PAYLOAD).expect("payload");
        // Flow F (the signer's) signs with A; its step E lists only an alias with no key; flow
        // G is another flow of the tenant.
        for (flow, step, alias) in [("F", "S", "A"), ("F", "E", "C"), ("G", "T", "A")] {
            env.ok(&acme(&[
                "flow", "add", "--flow", flow, "--step", step, "--as", ADMIN,
            ]));
            env.ok(&acme(&[
                "signer",
                "add-alias",
                "--flow",
                flow,
                "--step",
                step,
                "--alias",
                alias,
                "--as",
                ADMIN,
            ]));
        }
        env.ok(&["tenant", "add", "other"]);

        // The service user: signer of flow F, shown and audited like any other grant.
        let said = env.ok(&acme(&[
            "user", "add", "--email", SIGNER, "--role", "signer", "--flow", "F",
        ]));
        assert!(
            said.contains("signer of flow \"F\" (tenant \"acme\")"),
            "{said}"
        );
        let users = env.ok(&["user", "list"]);
        assert!(
            users.contains("signer of flow \"F\" (tenant \"acme\")"),
            "{users}"
        );
        let audit = env.ok(&["audit", "list"]);
        assert!(
            audit.contains("user.grant") && audit.contains("signer of flow"),
            "{audit}"
        );
        env.refuses(
            &acme(&[
                "user", "add", "--email", SIGNER, "--role", "signer", "--flow", "Nope",
            ]),
            &["unknown flow \"Nope\""],
        );
        env.refuses(
            &acme(&["user", "add", "--email", SIGNER, "--role", "signer"]),
            &["--role signer needs --flow"],
        );
        let token = env.ok(&["user", "token", "--email", SIGNER, "--days", "1"]);
        let token = token.trim();
        let admin = env.ok(&["user", "token", "--email", ADMIN, "--days", "1"]);
        let admin = admin.trim();

        let mut cmd = env.cmd();
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-scheduler",
            "--no-mail",
        ]);
        let served = serve::start(cmd).expect("rekey serve starts");
        let addr = served.addr.clone();
        let payload = STANDARD.encode(PAYLOAD);

        // Attached DER, the tenant left out (the signer holds a role in one tenant only).
        let a = sign(
            &addr,
            token,
            &json!({"flow": "F", "step": "S", "payload": payload}),
        );
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert!(
            a.header("content-type")
                .is_some_and(|c| c.starts_with("application/pkcs7-mime"))
        );
        assert_eq!(a.header("rekey-signers"), Some("A"));
        assert_eq!(a.header("rekey-signature-count"), Some("1"));
        assert_eq!(a.header("rekey-detached"), Some("false"));
        let p7m = save(env, "attached.p7m", &a);
        assert!(
            verifies(env, &p7m, &env.p("A.pem"), false),
            "attached DER verifies"
        );

        // Detached Base64, the tenant named.
        let body = json!({"tenant": "acme", "flow": "F", "step": "S", "payload": payload,
                          "detached": true, "encoding": "base64"});
        let a = sign(&addr, token, &body);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert!(
            a.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain"))
        );
        assert_eq!(a.header("rekey-detached"), Some("true"));
        let p7m = save(env, "detached.p7m", &a);
        let der = std::fs::read(&p7m).expect("der");
        assert!(
            !der.windows(PAYLOAD.len()).any(|w| w == PAYLOAD),
            "no eContent"
        );
        assert!(
            verifies(env, &p7m, &env.p("A.pem"), true),
            "detached verifies with -content"
        );
        assert!(
            !verifies(env, &p7m, &env.p("A.pem"), false),
            "and not without it"
        );

        // The step's table changes while the server runs: the next signature follows it.
        env.ok(&acme(&[
            "signer",
            "add-alias",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            "B",
            "--as",
            ADMIN,
        ]));
        let a = sign(
            &addr,
            token,
            &json!({"flow": "F", "step": "S", "payload": payload}),
        );
        assert_eq!(
            (a.header("rekey-signers"), a.header("rekey-signature-count")),
            (Some("A, B"), Some("2"))
        );
        let both = format!(
            "{}{}",
            std::fs::read_to_string(env.path("A.pem")).expect("A"),
            std::fs::read_to_string(env.path("B.pem")).expect("B")
        );
        std::fs::write(env.path("both.pem"), both).expect("both");
        let p7m = save(env, "two.p7m", &a);
        assert!(
            verifies(env, &p7m, &env.p("both.pem"), false),
            "two signatures verify"
        );
        env.ok(&acme(&[
            "signer",
            "remove-alias",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            "A",
            "--as",
            ADMIN,
        ]));
        let body = json!({"flow": "F", "step": "S", "payload": payload, "encoding": "der"});
        let a = sign(&addr, token, &body);
        assert_eq!(
            (a.header("rekey-signers"), a.header("rekey-signature-count")),
            (Some("B"), Some("1"))
        );
        let p7m = save(env, "new.p7m", &a);
        assert!(
            verifies(env, &p7m, &env.p("B.pem"), false),
            "the new key alone"
        );
        assert!(
            !verifies(env, &p7m, &env.p("A.pem"), false),
            "the old key is gone"
        );

        // Refusals, each naming what is wrong; none changes anything.
        let before = audit_len(env);
        let on = |flow: &str, step: &str| json!({"flow": flow, "step": step, "payload": payload});
        refused(
            &sign(&addr, token, &on("G", "T")),
            403,
            None,
            "signer role of that flow",
        );
        // A flow the signer may not sign as is refused alike whether it exists or not.
        refused(
            &sign(&addr, token, &on("Nope", "T")),
            403,
            None,
            "signer role of that flow",
        );
        refused(
            &sign(&addr, token, &on("F", "nope")),
            404,
            Some("step"),
            "no signer step \"nope\"",
        );
        refused(
            &sign(&addr, admin, &on("Nope", "T")),
            404,
            Some("flow"),
            "unknown flow \"Nope\"",
        );
        refused(
            &sign(&addr, token, &on("F", "E")),
            409,
            None,
            "none of its signer aliases (C) has a key",
        );
        // Another tenant is answered as one that does not exist.
        let mut body = on("F", "S");
        body["tenant"] = json!("other");
        let other = sign(&addr, token, &body);
        refused(&other, 404, Some("tenant"), "unknown tenant \"other\"");
        body["tenant"] = json!("absent");
        refused(
            &sign(&addr, token, &body),
            404,
            Some("tenant"),
            "unknown tenant \"absent\"",
        );
        let bad = |k: &str, v: Value| {
            let mut b = on("F", "S");
            b[k] = v;
            sign(&addr, token, &b)
        };
        refused(
            &bad("payload", json!("not base64!")),
            400,
            Some("payload"),
            "not Base64",
        );
        refused(
            &bad("payload", json!(42)),
            400,
            Some("payload"),
            "invalid type",
        );
        refused(
            &bad("encoding", json!("pem")),
            400,
            Some("encoding"),
            "der or base64",
        );
        refused(
            &bad("detached", json!("yes")),
            400,
            Some("detached"),
            "invalid type",
        );
        refused(
            &bad("colour", json!("blue")),
            400,
            Some("colour"),
            "unknown field",
        );
        refused(&bad("flow", json!("")), 400, Some("flow"), "flow");
        let missing = sign(&addr, token, &json!({"flow": "F", "payload": payload}));
        refused(&missing, 400, Some("step"), "missing field");

        // The signer does nothing else: no renewals, no tenant to start one in.
        let list = serve::request(
            &addr,
            "GET",
            "/api/renewals",
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
        .expect("GET /api/renewals");
        assert_eq!((list.status, list.body.trim()), (200, "[]"));
        let start = json!({"tenant": "acme", "receiver": "R", "alias": "B"});
        let a = post_json(
            &addr,
            "/api/renewals",
            token,
            &serde_json::to_vec(&start).expect("JSON"),
        )
        .expect("POST /api/renewals");
        refused(&a, 404, Some("tenant"), "unknown tenant");
        env.refuses(
            &acme(&[
                "keystore", "generate", "--alias", "X", "--bits", "2048", "--as", SIGNER,
            ]),
            &["only a user holding the tenant_admin role"],
        );
        assert_eq!(audit_len(env), before, "refusals changed nothing");

        // `rekey sign --flow` takes the same path and the same rule.
        let (input, out) = (env.p("payload.bin"), env.p("cli.p7m"));
        let cli = |flow: &str, who: &str| {
            acme(&[
                "sign",
                "--flow",
                flow,
                "--step",
                if flow == "F" { "S" } else { "T" },
                "--in",
                &input,
                "--out",
                &out,
                "--as",
                who,
            ])
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        };
        let args = cli("F", SIGNER);
        let said = env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(said.contains("1 signature(s): B"), "{said}");
        assert!(verifies(env, &out, &env.p("B.pem"), false));
        let args = cli("G", SIGNER);
        env.refuses(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &["signer role of that flow"],
        );
        env.refuses(
            &acme(&[
                "sign", "--flow", "F", "--step", "S", "--in", &input, "--out", &out,
            ]),
            &["give --as EMAIL"],
        );

        // Taking the role (audited) ends the signing at once.
        env.ok(&acme(&[
            "user",
            "revoke-role",
            "--email",
            SIGNER,
            "--role",
            "signer",
            "--flow",
            "F",
            "--as",
            ADMIN,
        ]));
        let audit = env.ok(&["audit", "list", "--limit", "1"]);
        assert!(
            audit.contains("user.revoke") && audit.contains("signer of flow"),
            "{audit}"
        );
        refused(
            &sign(&addr, token, &on("F", "S")),
            403,
            None,
            "no role that signs",
        );
        env.refuses(
            &acme(&[
                "sign", "--flow", "F", "--step", "S", "--in", &input, "--out", &out, "--as", SIGNER,
            ]),
            &["holds no role in tenant \"acme\""],
        );
        // Signer of flow G now; a tenant administrator takes that through the API.
        env.ok(&acme(&[
            "user", "add", "--email", SIGNER, "--role", "signer", "--flow", "G",
        ]));
        assert_eq!(sign(&addr, token, &on("G", "T")).status, 200);
        let take = json!({"email": SIGNER, "role": "signer", "tenant": "acme", "flow": "G"});
        let bytes = serde_json::to_vec(&take).expect("JSON");
        let a = post_json(&addr, "/api/users/revoke-role", admin, &bytes).expect("revoke-role");
        assert_eq!(
            (a.status, &a.json()["roles"]),
            (200, &json!([])),
            "{}",
            a.json()
        );
        refused(
            &sign(&addr, token, &on("G", "T")),
            403,
            None,
            "no role that signs",
        );

        let (status, log) = served.stop().expect("stops");
        assert!(status.success(), "{log:?}");
    });
}
