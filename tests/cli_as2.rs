//! `rekey receiver as2 set|remove` and `receiver show` through the built binary: the tenant
//! administrator records a receiver's AS2 endpoint, everyone who may see the receiver sees it,
//! bad input is refused in one line naming what was wrong and changes nothing.

mod common;

use common::{Env, on_both};
use rekey_crypto::{KeyBits, KeyPair, self_signed};

/// The tenant administrator, who records AS2 endpoints.
const ADMIN: &str = "admin@acme.example";

fn setup(env: &Env) {
    env.ok(&["init"]);
    env.ok(&["tenant", "add", "acme"]);
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    env.ok(&[
        "receiver",
        "add",
        "--name",
        "ERP",
        "--admin",
        "bob@example.com",
        "--as",
        ADMIN,
    ]);
    let key = KeyPair::generate(KeyBits::B2048).expect("key");
    let cert = self_signed(
        &key,
        "CN=ERP AS2 MDN signing",
        chrono::Utc::now() - chrono::Duration::days(1),
        365,
    )
    .expect("certificate");
    std::fs::write(env.path("mdn.pem"), cert.to_pem()).expect("write the certificate");
}

#[test]
fn the_as2_endpoint_is_set_shown_and_removed() {
    on_both(|env| {
        setup(env);
        let text = env.ok(&["receiver", "show", "--name", "ERP"]);
        assert!(text.contains("AS2: none"), "{text}");

        let mdn = env.p("mdn.pem");
        let base = [
            "receiver",
            "as2",
            "set",
            "--name",
            "ERP",
            "--url",
            "https://as2.erp.example/as2",
            "--as2-from",
            "ACME_SIGNER",
            "--as2-to",
            "ERP_PROD",
            "--mdn-cert",
            mdn.as_str(),
            "--as",
            ADMIN,
        ];
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
        let before = env.ok(&["audit", "verify"]);
        // Only the tenant administrator records it.
        env.fails(&base[..base.len() - 2], 1, &["--as", "tenant_admin"]);
        let mut as_bob = base.to_vec();
        let at = as_bob.len() - 1;
        as_bob[at] = "bob@example.com";
        env.fails(&as_bob, 1, &["tenant_admin"]);
        for (bad, value, needle) in [
            (
                "--url",
                "ftp://as2.erp.example/",
                "only http:// and https://",
            ),
            ("--as2-to", "ERP PROD", "AS2 identifier"),
            ("--as2-from", "", "AS2 identifier"),
            ("--mic", "md5", "md5"),
        ] {
            let mut args: Vec<&str> = base.to_vec();
            match args.iter().position(|a| *a == bad) {
                Some(i) => args[i + 1] = value,
                None => args.extend([bad, value]),
            }
            env.fails(&args, 1, &[needle]);
        }
        let mut missing = base.to_vec();
        let at = missing.len() - 3;
        missing[at] = "/nonexistent/mdn.pem";
        env.fails(&missing, 1, &["/nonexistent/mdn.pem"]);
        env.fails(
            &["receiver", "as2", "remove", "--name", "ERP", "--as", ADMIN],
            1,
            &["has no AS2 endpoint"],
        );
        assert_eq!(
            env.ok(&["audit", "verify"]),
            before,
            "refusals change nothing"
        );

        let out = env.ok(&base);
        assert!(
            out.contains("AS2 endpoint https://as2.erp.example/as2"),
            "{out}"
        );
        let r = env.json(&["receiver", "show", "--name", "ERP", "--json"]);
        assert_eq!(r["as2"]["url"], "https://as2.erp.example/as2");
        assert_eq!(r["as2"]["as2_from"], "ACME_SIGNER");
        assert_eq!(r["as2"]["as2_to"], "ERP_PROD");
        assert_eq!(r["as2"]["mic"], "sha256");
        assert_eq!(
            r["as2"]["mdn_certificate_subject"],
            "CN=ERP AS2 MDN signing"
        );
        let text = env.ok(&["receiver", "show", "--name", "ERP"]);
        assert!(
            text.contains("AS2: https://as2.erp.example/as2 as ACME_SIGNER to ERP_PROD"),
            "{text}"
        );

        // Replacing it is one audited change.
        let mut sha512 = base.to_vec();
        sha512.extend(["--mic", "sha512"]);
        env.ok(&sha512);
        let r = env.json(&["receiver", "show", "--name", "ERP", "--json"]);
        assert_eq!(r["as2"]["mic"], "sha512");

        env.ok(&["receiver", "as2", "remove", "--name", "ERP", "--as", ADMIN]);
        let r = env.json(&["receiver", "show", "--name", "ERP", "--json"]);
        assert!(r.get("as2").is_none(), "{r}");
        let audit = env.ok(&["audit", "verify"]);
        assert_ne!(audit, before);
    });
}
