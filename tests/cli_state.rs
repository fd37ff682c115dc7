//! End to end through the built binary: the stateful commands (`init`, `tenant`, `keystore`,
//! `flow`, `signer`, `receiver`, `user`, `sign --flow`, `audit verify`) on a fresh data
//! directory; every refusal is one line and changes nothing.
//!
//! Each test runs on SQLite and, when `REKEY_TEST_POSTGRES_URL` is set, again on a fresh
//! `rekey_cli_<uuid>` PostgreSQL database named through `REKEY_DATABASE_URL`.

mod common;

use std::process::Command;

use common::{Env, fx, on_both, runtime};
use rekey_store::ConnectionTrait;

const TAMPERED: i32 = 3;
/// The tenant administrator, who changes the keystore, flows and receivers (`--as`).
const ADMIN: &str = "alice@example.com";

/// What this file asks of the shared [`Env`] beyond running commands.
trait StateEnv {
    /// Everything a refused command must leave alone (see the impl).
    fn snapshot(&self) -> String;
}

impl StateEnv for Env {
    /// Everything a refused command must leave alone: the audit chain length and the
    /// listings.
    fn snapshot(&self) -> String {
        let audit = self.ok(&["audit", "verify"]);
        let keys = self.ok(&["keystore", "list", "--json", "--tenant", "acme"]);
        let flows = self.ok(&["flow", "list", "--json", "--tenant", "acme"]);
        let receivers = self.ok(&["receiver", "list", "--json", "--tenant", "acme"]);
        let users = self.ok(&["user", "list", "--json"]);
        format!("{audit}{keys}{flows}{receivers}{users}")
    }
}

/// `init`, a tenant, a generated key, a flow whose signer step lists it.
fn setup(env: &Env) {
    env.ok(&["init"]);
    env.ok(&["tenant", "add", "acme"]);
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    env.ok(&[
        "keystore",
        "generate",
        "--alias",
        "signer-2026",
        "--bits",
        "2048",
        "--subject",
        "CN=acme signer,O=Acme",
        "--as",
        ADMIN,
    ]);
    env.ok(&[
        "flow", "add", "--flow", "Orders", "--step", "sign", "--as", ADMIN,
    ]);
    env.ok(&[
        "signer",
        "add-alias",
        "--flow",
        "Orders",
        "--step",
        "sign",
        "--alias",
        "signer-2026",
        "--as",
        ADMIN,
    ]);
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn newcomer_walk_signs_verifiably_and_audits() {
    on_both(|env| {
        let out = env.ok(&["init"]);
        assert!(out.contains("created data directory"), "{out}");
        assert!(out.contains("created key-encryption key"), "{out}");
        assert!(out.contains("created database"), "{out}");
        env.ok(&["tenant", "add", "acme"]);
        env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
        assert!(env.ok(&["tenant", "list"]).contains("acme"));

        env.ok(&[
            "keystore",
            "generate",
            "--alias",
            "signer-2026",
            "--bits",
            "2048",
            "--subject",
            "CN=acme signer,O=Acme",
            "--days",
            "400",
            "--as",
            "alice@example.com",
        ]);
        env.ok(&[
            "flow", "add", "--flow", "Orders", "--step", "sign", "--as", ADMIN,
        ]);
        env.ok(&[
            "signer",
            "add-alias",
            "--flow",
            "Orders",
            "--step",
            "sign",
            "--alias",
            "signer-2026",
            "--digest",
            "sha384",
            "--as",
            ADMIN,
        ]);
        // A prepared second alias without a key: listed, skipped when signing.
        env.ok(&[
            "signer",
            "add-alias",
            "--flow",
            "Orders",
            "--step",
            "sign",
            "--alias",
            "signer-2027",
            "--as",
            ADMIN,
        ]);

        let list = json(&env.ok(&["keystore", "list", "--json"]));
        let entries = list.as_array().expect("array");
        assert_eq!(entries.len(), 2, "{list}");
        assert_eq!(entries[0]["alias"], "signer-2026");
        assert_eq!(entries[0]["key_bits"], 2048);
        assert_eq!(entries[0]["used_by"][0]["flow"], "Orders");
        assert_eq!(entries[0]["used_by"][0]["step"], "sign");
        assert!(
            entries[0]["fingerprint"]
                .as_str()
                .is_some_and(|f| f.len() == 95)
        );
        assert!(entries[0]["not_after"].as_str().is_some());
        assert_eq!(entries[1]["alias"], "signer-2027");
        assert_eq!(entries[1]["has_key"], false);
        let text = env.ok(&["keystore", "list"]);
        assert!(text.contains("flow \"Orders\" step \"sign\""), "{text}");

        let show = json(&env.ok(&[
            "signer", "show", "--flow", "Orders", "--step", "sign", "--json",
        ]));
        assert_eq!(show["rows"][0]["digest"], "sha384");
        assert_eq!(show["rows"][0]["has_key"], true);
        assert_eq!(show["rows"][1]["has_key"], false);
        assert!(env.ok(&["flow", "list"]).contains("signer-2026 (sha384)"));

        env.ok(&[
            "receiver",
            "add",
            "--name",
            "ERP",
            "--admin",
            "Bob@Example.com",
            "--accepts-multiple-signatures",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "receiver",
            "trust",
            "--name",
            "ERP",
            "--alias",
            "signer-2026",
            "--as",
            ADMIN,
        ]);
        let r = json(&env.ok(&["receiver", "show", "--name", "ERP", "--json"]));
        assert_eq!(r["admin_emails"][0], "bob@example.com");
        assert_eq!(r["profile"]["accepts_multiple_signatures"], true);
        assert_eq!(r["profile"]["verifies_multiple_keys"], false);
        assert_eq!(r["trusted"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            json(&env.ok(&["receiver", "list", "--json"]))[0]["name"],
            "ERP"
        );

        env.ok(&[
            "user",
            "add",
            "--email",
            "dev@example.com",
            "--role",
            "integration_developer",
            "--tenant",
            "acme",
        ]);
        env.ok(&[
            "user",
            "add",
            "--email",
            "bob@example.com",
            "--role",
            "receiver_admin",
            "--receiver",
            "ERP",
        ]);
        let users = env.ok(&["user", "list"]);
        assert!(
            users.contains("receiver_admin of receiver \"ERP\""),
            "{users}"
        );
        assert!(
            users.contains("integration_developer of tenant \"acme\""),
            "{users}"
        );
        let token = env.ok(&["user", "token", "--email", "alice@example.com"]);
        let token = token.trim();
        assert!(token.len() >= 40 && !token.contains(' '), "{token:?}");
        let rt = runtime();
        let store = env.store(&rt);
        let owner = rt
            .block_on(store.user_for_token(token))
            .expect("token works");
        assert_eq!(owner.email.as_str(), "alice@example.com");

        // Sign as the step signs; check with OpenSSL and with rekey verify.
        std::fs::write(env.path("payload.xml"), b"<order>42</order>\n").expect("payload");
        let out = env.ok(&[
            "sign",
            "--flow",
            "Orders",
            "--step",
            "sign",
            "--in",
            &env.p("payload.xml"),
            "--out",
            &env.p("payload.p7m"),
            "--as",
            ADMIN,
        ]);
        assert!(out.contains("1 signature(s): signer-2026"), "{out}");
        assert!(out.contains("skipped (no key): signer-2027"), "{out}");
        env.ok(&[
            "keystore",
            "export-cert",
            "--alias",
            "signer-2026",
            "--out",
            &env.p("cert.pem"),
        ]);
        let o = Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(env.path("payload.p7m"))
            .arg("-CAfile")
            .arg(env.path("cert.pem"))
            .arg("-out")
            .arg(env.path("content.out"))
            .output()
            .expect("runs openssl");
        assert!(
            o.status.success(),
            "openssl cms -verify: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            std::fs::read(env.path("content.out")).expect("content"),
            b"<order>42</order>\n"
        );
        let v = env.ok(&[
            "verify",
            "--in",
            &env.p("payload.p7m"),
            "--trust",
            &env.p("cert.pem"),
        ]);
        assert!(v.starts_with("accepted"), "{v}");

        // The audit log records who did what; then tampering is detected.
        let entries = rt
            .block_on(store.audit_entries(0, 1000))
            .expect("audit entries");
        let generate = entries
            .iter()
            .find(|e| e.action.starts_with("keystore.") && e.subject.contains("signer-2026"))
            .expect("keystore entry audited");
        assert_eq!(generate.actor, "alice@example.com");
        assert!(
            entries
                .iter()
                .all(|e| e.actor == "alice@example.com" || e.actor == "cli:tester")
        );
        let n = entries.len();
        let ok = env.ok(&["audit", "verify"]);
        assert_eq!(ok.trim(), format!("audit log intact ({n} entries)"));

        rt.block_on(
            store
                .db()
                .execute_unprepared("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"),
        )
        .expect("tampers with the audit log");
        rt.block_on(store.close()).expect("close");
        env.fails(
            &["audit", "verify"],
            TAMPERED,
            &["audit log tampered with at entry 3", "modified"],
        );
    });
}

#[test]
fn init_is_idempotent_and_never_replaces_the_key() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let kek = env.data().join("kek.key");
    let before = std::fs::read(&kek).expect("kek file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kek).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(env.data().join("rekey.toml").exists());
    env.ok(&["tenant", "add", "acme"]);
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    let again = env.ok(&["init"]);
    for line in [
        "found data directory",
        "found configuration file",
        "found key-encryption key",
        "found database",
    ] {
        assert!(again.contains(line), "{line:?} not in {again}");
    }
    assert_eq!(std::fs::read(&kek).expect("kek file"), before);
    assert!(env.ok(&["tenant", "list"]).contains("acme"));

    // --data-dir after the subcommand works too.
    let other = env.path("elsewhere");
    let o = common::rekey()
        .args(["init", "--data-dir"])
        .arg(&other)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(other.join("kek.key").exists() && other.join("rekey.db").exists());
}

#[test]
fn commands_before_init_say_so() {
    let env = Env::sqlite();
    env.fails(&["tenant", "list"], 1, &["rekey init"]);
}

#[test]
fn config_file_with_unknown_key_is_refused_naming_it() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let path = env.data().join("rekey.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:9\"\nlistne = \"x\"\n",
    )
    .expect("write");
    env.fails(
        &["tenant", "list"],
        1,
        &[&path.display().to_string(), "line 3", "listne"],
    );
    let cfg = env.path("explicit.toml");
    std::fs::write(&cfg, "kek_fiel = \"/k\"\n").expect("write");
    env.fails(
        &["tenant", "list", "--config", &cfg.display().to_string()],
        1,
        &[&cfg.display().to_string(), "kek_fiel"],
    );
}

#[test]
fn tenant_may_be_left_out_only_when_there_is_one() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    env.fails(
        &["keystore", "list"],
        1,
        &["no tenants yet", "rekey tenant add"],
    );
    env.ok(&["tenant", "add", "acme"]);
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    env.ok(&["keystore", "list"]);
    env.ok(&["tenant", "add", "globex"]);
    env.fails(
        &["keystore", "list"],
        1,
        &["several tenants", "\"acme\"", "\"globex\"", "--tenant"],
    );
    env.ok(&["keystore", "list", "--tenant", "globex"]);
    env.fails(
        &["keystore", "list", "--tenant", "initech"],
        1,
        &["unknown tenant \"initech\"", "\"acme\"", "\"globex\""],
    );
    env.fails(
        &["tenant", "add", "acme"],
        1,
        &["tenant \"acme\" already exists"],
    );
}

#[test]
fn imports_pkcs12_and_pem_and_manages_history() {
    on_both(|env| {
        setup(env);
        std::fs::write(env.path("pw"), "fixture-password\n").expect("pw");
        let out = env.ok(&[
            "keystore",
            "import",
            "--alias",
            "alpha",
            "--pkcs12",
            &fx("alpha.p12"),
            "--password-file",
            &env.p("pw"),
            "--as",
            ADMIN,
        ]);
        assert!(out.contains("imported alias alpha"), "{out}");
        env.ok(&[
            "keystore",
            "import",
            "--alias",
            "delta",
            "--key",
            &fx("delta.key.pem"),
            "--cert",
            &fx("delta.chain.pem"),
            "--as",
            ADMIN,
        ]);
        let pem = env.ok(&["keystore", "export-cert", "--alias", "delta"]);
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "{pem}");

        // Remove (not in use) → history → restore.
        let out = env.ok(&["keystore", "remove", "--alias", "alpha", "--as", ADMIN]);
        assert!(out.contains("moved to history"), "{out}");
        let hist = json(&env.ok(&["keystore", "history", "--alias", "alpha", "--json"]));
        let id = hist[0]["entry"].as_str().expect("entry id").to_string();
        assert_eq!(hist[0]["archived_reason"], "removed");
        env.fails(
            &["keystore", "export-cert", "--alias", "alpha"],
            1,
            &["alpha"],
        );
        env.ok(&[
            "keystore", "restore", "--alias", "alpha", "--entry", &id, "--as", ADMIN,
        ]);
        env.ok(&["keystore", "export-cert", "--alias", "alpha"]);

        // Trust from a file, then untrust by fingerprint.
        env.ok(&[
            "receiver",
            "add",
            "--name",
            "ERP",
            "--admin",
            "ops@example.com",
            "--as",
            ADMIN,
        ]);
        let out = env.ok(&[
            "receiver",
            "trust",
            "--name",
            "ERP",
            "--cert",
            &fx("beta.cert.pem"),
            "--as",
            ADMIN,
        ]);
        let fp = out
            .rsplit("SHA-256 ")
            .next()
            .expect("fingerprint")
            .trim()
            .to_string();
        env.fails(
            &[
                "receiver",
                "trust",
                "--name",
                "ERP",
                "--cert",
                &fx("beta.cert.pem"),
                "--as",
                ADMIN,
            ],
            1,
            &["already trusts"],
        );
        env.ok(&[
            "receiver",
            "untrust",
            "--name",
            "ERP",
            "--fingerprint",
            &fp,
            "--as",
            ADMIN,
        ]);
        env.fails(
            &[
                "receiver",
                "untrust",
                "--name",
                "ERP",
                "--fingerprint",
                &fp,
                "--as",
                ADMIN,
            ],
            1,
            &["does not trust"],
        );
        let r = json(&env.ok(&["receiver", "show", "--name", "ERP", "--json"]));
        assert_eq!(r["trusted"].as_array().map(Vec::len), Some(0));
    });
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    on_both(|env| {
        setup(env);
        env.ok(&[
            "receiver",
            "add",
            "--name",
            "ERP",
            "--admin",
            "ops@example.com",
            "--as",
            ADMIN,
        ]);
        std::fs::write(env.path("wrong-pw"), "not the password\n").expect("pw");
        let before = env.snapshot();

        let import_pem = |alias: &str, key: &str, cert: &str| {
            vec![
                "keystore".to_string(),
                "import".into(),
                "--alias".into(),
                alias.into(),
                "--key".into(),
                fx(key),
                "--cert".into(),
                fx(cert),
                "--as".into(),
                ADMIN.into(),
            ]
        };
        let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
            // Malformed PEM key, malformed certificate.
            (
                import_pem("x", "malformed.key.pem", "alpha.cert.pem"),
                vec!["key file", "malformed.key.pem"],
            ),
            (
                import_pem("x", "alpha.key.pem", "malformed.cert.pem"),
                vec!["certificate file", "malformed.cert.pem"],
            ),
            // Key and certificate that do not belong together.
            (
                import_pem("x", "alpha.key.pem", "beta.cert.pem"),
                vec!["does not match"],
            ),
            // RSA below 2048 bits, imported or generated.
            (
                import_pem("x", "small1024.key.pem", "small1024.cert.pem"),
                vec!["1024"],
            ),
            (
                strings(&[
                    "keystore", "generate", "--alias", "x", "--bits", "1024", "--as", ADMIN,
                ]),
                vec!["--bits", "1024", "2048"],
            ),
            // Duplicate alias.
            (
                import_pem("signer-2026", "alpha.key.pem", "alpha.cert.pem"),
                vec!["signer-2026", "already has a keystore entry"],
            ),
            (
                strings(&[
                    "keystore",
                    "generate",
                    "--alias",
                    "signer-2026",
                    "--bits",
                    "2048",
                    "--as",
                    ADMIN,
                ]),
                vec!["signer-2026", "already has a keystore entry"],
            ),
            // Malformed PKCS#12, wrong password.
            (
                strings(&[
                    "keystore",
                    "import",
                    "--alias",
                    "x",
                    "--pkcs12",
                    &fx("garbage.p12"),
                    "--as",
                    ADMIN,
                ]),
                vec!["PKCS#12 file", "garbage.p12"],
            ),
            (
                strings(&[
                    "keystore",
                    "import",
                    "--alias",
                    "x",
                    "--pkcs12",
                    &fx("alpha.p12"),
                    "--password-file",
                    &env.p("wrong-pw"),
                    "--as",
                    ADMIN,
                ]),
                vec!["PKCS#12 file", "alpha.p12"],
            ),
            // Unknown tenant, alias, flow, step, receiver, user.
            (
                strings(&["keystore", "list", "--tenant", "nope"]),
                vec!["unknown tenant \"nope\"", "\"acme\""],
            ),
            (
                strings(&["keystore", "export-cert", "--alias", "nope"]),
                vec!["tenant \"acme\": no keystore entry under alias \"nope\""],
            ),
            (
                strings(&["keystore", "remove", "--alias", "nope", "--as", ADMIN]),
                vec!["\"nope\""],
            ),
            (
                strings(&["signer", "show", "--flow", "Nope", "--step", "sign"]),
                vec!["unknown flow \"Nope\""],
            ),
            (
                strings(&[
                    "signer",
                    "add-alias",
                    "--flow",
                    "Nope",
                    "--step",
                    "sign",
                    "--alias",
                    "a",
                    "--as",
                    ADMIN,
                ]),
                vec!["unknown flow \"Nope\""],
            ),
            (
                strings(&[
                    "sign",
                    "--flow",
                    "Orders",
                    "--step",
                    "nope",
                    "--in",
                    &fx("alpha.cert.pem"),
                    "--out",
                    &env.p("never.p7m"),
                    "--as",
                    ADMIN,
                ]),
                vec!["no signer step \"nope\""],
            ),
            (
                strings(&["receiver", "show", "--name", "Nope"]),
                vec!["unknown receiver \"Nope\""],
            ),
            (
                strings(&[
                    "receiver",
                    "trust",
                    "--name",
                    "Nope",
                    "--alias",
                    "signer-2026",
                    "--as",
                    ADMIN,
                ]),
                vec!["unknown receiver \"Nope\""],
            ),
            (
                strings(&[
                    "user",
                    "add",
                    "--email",
                    "bob@example.com",
                    "--role",
                    "receiver_admin",
                    "--receiver",
                    "Nope",
                ]),
                vec!["unknown receiver \"Nope\""],
            ),
            (
                strings(&["user", "token", "--email", "nobody@example.com"]),
                vec!["unknown user nobody@example.com"],
            ),
            // Invalid email addresses.
            (
                strings(&[
                    "user",
                    "add",
                    "--email",
                    "not an email",
                    "--role",
                    "tenant_admin",
                ]),
                vec!["--email", "invalid email address"],
            ),
            (
                strings(&[
                    "receiver", "add", "--name", "R2", "--admin", "bob@", "--as", ADMIN,
                ]),
                vec!["--admin", "invalid email address"],
            ),
            (
                strings(&["tenant", "list", "--as", "someone"]),
                vec!["--as", "invalid email address"],
            ),
            // Removing a key a signer step still lists: refused, naming the steps.
            (
                strings(&[
                    "keystore",
                    "remove",
                    "--alias",
                    "signer-2026",
                    "--as",
                    ADMIN,
                ]),
                vec!["still listed by flow \"Orders\" step \"sign\""],
            ),
            // Duplicates elsewhere.
            (
                strings(&[
                    "flow", "add", "--flow", "Orders", "--step", "sign", "--as", ADMIN,
                ]),
                vec!["already has a signer step \"sign\""],
            ),
            (
                strings(&[
                    "receiver",
                    "add",
                    "--name",
                    "ERP",
                    "--admin",
                    "x@example.com",
                    "--as",
                    ADMIN,
                ]),
                vec!["receiver \"ERP\" already exists"],
            ),
            (
                strings(&[
                    "user",
                    "add",
                    "--email",
                    "alice@example.com",
                    "--role",
                    "tenant_admin",
                ]),
                vec!["already holds"],
            ),
            (
                strings(&[
                    "user",
                    "add",
                    "--email",
                    "carol@example.com",
                    "--role",
                    "boss",
                ]),
                vec!["--role", "invalid role"],
            ),
            (
                strings(&[
                    "keystore",
                    "generate",
                    "--alias",
                    "bad alias",
                    "--bits",
                    "2048",
                    "--as",
                    ADMIN,
                ]),
                vec!["--alias", "invalid alias"],
            ),
        ];
        for (args, needles) in &cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.fails(&args, 1, needles);
        }
        assert_eq!(
            env.snapshot(),
            before,
            "[{}] a refusal changed state",
            env.backend
        );
        assert!(!env.path("never.p7m").exists());
    });
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `keystore generate` dates the certificate's notBefore back by the clock-skew allowance
/// (`[renewal] clock_skew_minutes`, default 60), so that a receiver whose clock is a little
/// behind does not reject the first messages.
#[test]
fn keystore_generate_backdates_not_before_by_the_clock_skew() {
    on_both(|env| {
        env.ok(&["init"]);
        env.ok(&["tenant", "add", "acme"]);
        env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
        for (alias, config, minutes) in [("a", None, 60), ("b", Some(15), 15)] {
            if let Some(m) = config {
                std::fs::write(
                    env.data().join("rekey.toml"),
                    format!("[renewal]\nclock_skew_minutes = {m}\n"),
                )
                .expect("config");
            }
            let before = chrono::Utc::now();
            env.ok(&[
                "keystore", "generate", "--alias", alias, "--bits", "2048", "--as", ADMIN,
            ]);
            let after = chrono::Utc::now();
            let list = json(&env.ok(&["keystore", "list", "--json"]));
            let entry = list
                .as_array()
                .expect("list")
                .iter()
                .find(|e| e["alias"] == alias)
                .unwrap_or_else(|| panic!("{alias} listed: {list}"));
            let nb: chrono::DateTime<chrono::Utc> = entry["not_before"]
                .as_str()
                .expect("not_before")
                .parse()
                .expect("RFC 3339");
            let skew = chrono::Duration::minutes(minutes);
            assert!(
                nb >= before - skew - chrono::Duration::seconds(1) && nb <= after - skew,
                "[{}] {alias}: notBefore {nb} is not {minutes} minutes before {before}..{after}",
                env.backend
            );
        }
    });
}

/// The keystore, flow, signer-table and receiver commands change what renewals guard, so they
/// check the actor's role like renewal steps do: without `--as`, as an unknown user, or as
/// someone without the role, the change is refused (one line naming what it takes) and nothing
/// changes; each role may do its own part.
#[test]
fn state_changes_take_the_actors_role() {
    on_both(|env| {
        const DEV: &str = "dev@example.com";
        const OPS: &str = "ops@example.com";
        const OTHER: &str = "admin@globex.example";
        setup(env);
        env.ok(&[
            "receiver", "add", "--name", "ERP", "--admin", OPS, "--as", ADMIN,
        ]);
        env.ok(&["tenant", "add", "globex"]);
        for args in [
            &[
                "user",
                "add",
                "--email",
                DEV,
                "--role",
                "integration_developer",
                "--tenant",
                "acme",
            ][..],
            &[
                "user",
                "add",
                "--email",
                OPS,
                "--role",
                "receiver_admin",
                "--receiver",
                "ERP",
                "--tenant",
                "acme",
            ],
            &[
                "user",
                "add",
                "--email",
                OTHER,
                "--role",
                "tenant_admin",
                "--tenant",
                "globex",
            ],
        ] {
            env.ok(args);
        }
        let on_acme = |args: &[&str]| {
            let mut v: Vec<String> = strings(args);
            v.extend(strings(&["--tenant", "acme"]));
            v
        };
        let generate = ["keystore", "generate", "--alias", "x", "--bits", "2048"];
        let remove = ["keystore", "remove", "--alias", "signer-2026"];
        let flow = ["flow", "add", "--flow", "Invoices", "--step", "sign"];
        let signer = [
            "signer",
            "add-alias",
            "--flow",
            "Orders",
            "--step",
            "sign",
            "--alias",
            "x",
        ];
        let receiver = ["receiver", "add", "--name", "CRM", "--admin", OPS];
        let trust = [
            "receiver",
            "trust",
            "--name",
            "ERP",
            "--alias",
            "signer-2026",
        ];
        let before = env.snapshot();
        let refused = |args: &[&str], who: Option<&str>, needles: &[&str]| {
            let mut v = on_acme(args);
            if let Some(w) = who {
                v.extend(strings(&["--as", w]));
            }
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            env.fails(&v, 1, needles);
            assert_eq!(
                env.snapshot(),
                before,
                "[{}] {v:?} changed state",
                env.backend
            );
        };
        for args in [&generate[..], &remove, &flow, &signer, &receiver, &trust] {
            refused(args, None, &["give --as EMAIL", "tenant \"acme\""]);
            refused(
                args,
                Some("nobody@example.com"),
                &["no user nobody@example.com is registered"],
            );
            // Another tenant's administrator holds no role here.
            refused(
                args,
                Some(OTHER),
                &["tenant \"acme\"", OTHER, "may do this"],
            );
        }
        // The developer owns the signer tables, not the keystore or the receivers.
        for args in [&generate[..], &remove, &receiver, &trust] {
            refused(args, Some(DEV), &["tenant_admin", DEV]);
        }
        // The receiver administrator records their own receiver's trust, nothing else.
        for args in [&generate[..], &remove, &flow, &signer, &receiver] {
            refused(args, Some(OPS), &["tenant_admin", OPS]);
        }
        // Each may do their own part.
        let ok = |args: &[&str], who: &str| {
            let mut v = on_acme(args);
            v.extend(strings(&["--as", who]));
            env.ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
        };
        ok(&flow, DEV);
        ok(&signer, DEV);
        ok(&trust, OPS);
        ok(
            &[
                "receiver",
                "untrust",
                "--name",
                "ERP",
                "--fingerprint",
                &fingerprint(env),
            ],
            OPS,
        );
        ok(&generate, ADMIN);
        ok(&receiver, ADMIN);
    });
}

/// The SHA-256 fingerprint of `signer-2026`.
fn fingerprint(env: &Env) -> String {
    let list = json(&env.ok(&["keystore", "list", "--json", "--tenant", "acme"]));
    list.as_array()
        .and_then(|a| a.iter().find(|e| e["alias"] == "signer-2026"))
        .and_then(|e| e["fingerprint"].as_str())
        .expect("signer-2026 listed")
        .to_string()
}

/// `rekey init` writes a configuration that names every key there is — SMTP's and the
/// server's included — each with its default and what it means, commented out, so the file
/// changes nothing until a line is uncommented; rekey then runs with it.
#[test]
fn init_writes_every_key_commented() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let text = std::fs::read_to_string(env.data().join("rekey.toml")).expect("rekey.toml");
    for key in [
        "data_dir",
        "database_url",
        "kek_file",
        "transport",
        "outbox_dir",
        "from",
        "host",
        "port",
        "tls",
        "username",
        "password",
        "listen",
        "base_url",
        "metrics_token",
        "metrics_names",
        "header_timeout_secs",
        "request_timeout_secs",
        "max_body_bytes",
        "api_requests_per_minute",
        "link_requests_per_minute",
        "lease_secs",
        "watch_interval_secs",
        "watch_policy",
        "renew_before_days",
        "clock_skew_minutes",
        "format",
        "level",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("# {key} = "))),
            "{key} is not listed, commented:\n{text}"
        );
    }
    for section in ["[mail]", "[server]", "[renewal]", "[log]"] {
        assert!(text.lines().any(|l| l == section), "{section}:\n{text}");
    }
    for example in [
        "# [keystores.acme]",
        "# [timing.acme]",
        "# remind = ",
        "# escalate = ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(example)),
            "{example}:\n{text}"
        );
    }
    for line in text.lines() {
        assert!(
            line.is_empty() || line.starts_with('#') || line.starts_with('['),
            "an active setting: {line:?}"
        );
    }
    // Uncommenting a setting takes effect.
    let edited = text.replace("# renew_before_days = 30", "renew_before_days = 30");
    assert_ne!(edited, text);
    std::fs::write(env.data().join("rekey.toml"), edited).expect("write");
    env.ok(&["tenant", "add", "acme"]);
}
