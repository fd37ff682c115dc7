//! What only a PKCS#11 token shows: its objects as OpenSC's `pkcs11-tool` lists them, keys that
//! cannot leave it, the errors an operator meets when a tenant's token is misconfigured, and
//! several keystores sharing one module.

mod common;

use std::process::Command;

use chrono::{Duration, Utc};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::types::AuthPin;
use rekey_crypto::{KeyBackend, KeyBits, KeyHandle, KeyPair, self_signed_at};
use rekey_pkcs11::{PinSource, Pkcs11Config, Pkcs11Keystore, fresh_key_id};

use common::{USER_PIN, on_softhsm, run_ok};

fn pkcs11_tool() -> Command {
    let found = Command::new("sh")
        .args(["-c", "command -v pkcs11-tool"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`pkcs11-tool` is not installed: apt-get install -y opensc"
    );
    Command::new("pkcs11-tool")
}

#[test]
fn pkcs11_tool_lists_the_keys_as_sensitive_and_never_extractable() {
    on_softhsm(
        "pkcs11_tool_lists_the_keys_as_sensitive_and_never_extractable",
        |hsm| {
            let store = hsm.token("listed");
            let id = fresh_key_id();
            let h = store
                .generate(KeyBits::B2048, &id, "as2-signing")
                .expect("generate");
            let signer = store.signer(&h).expect("signer");
            let cert = self_signed_at(
                &*signer,
                "CN=as2 signing,O=rekey test",
                Utc::now(),
                Duration::minutes(5),
                30,
            )
            .expect("cert");
            drop(signer);
            // Projected with an earlier certificate, then twice (a retry) with a renewed one
            // for the same key: one certificate object, the latest.
            let signer = store.signer(&h).expect("signer");
            let earlier = self_signed_at(
                &*signer,
                "CN=as2 signing,O=rekey test",
                Utc::now() - Duration::days(40),
                Duration::minutes(5),
                30,
            )
            .expect("earlier cert");
            drop(signer);
            store
                .project(&id, "as2-signing-2025", Some(&earlier))
                .expect("project");
            for _ in 0..2 {
                store
                    .project(&id, "as2-signing-2026", Some(&cert))
                    .expect("project");
            }

            let attrs = store.attributes(&id).expect("attributes");
            assert!(attrs.sensitive, "{attrs:?}");
            assert!(!attrs.extractable, "{attrs:?}");
            assert!(
                attrs.always_sensitive && attrs.never_extractable,
                "{attrs:?}"
            );
            assert_eq!(attrs.label, "as2-signing-2026");

            let listing = run_ok(
                pkcs11_tool()
                    .arg("--module")
                    .arg(&hsm.module)
                    .args(["--token-label", "listed", "--login", "--pin", USER_PIN])
                    .arg("--list-objects"),
            );
            println!("{listing}");
            assert!(listing.contains("Private Key Object; RSA"), "{listing}");
            assert!(
                listing.contains("Public Key Object; RSA 2048 bits"),
                "{listing}"
            );
            assert_eq!(
                listing
                    .matches("Certificate Object; type = X.509 cert")
                    .count(),
                1,
                "{listing}"
            );
            let cert_file = hsm.dir.join("on-token.der");
            run_ok(
                pkcs11_tool()
                    .arg("--module")
                    .arg(&hsm.module)
                    .args(["--token-label", "listed", "--read-object", "--type", "cert"])
                    .args(["--id", &id.to_string(), "--output-file"])
                    .arg(&cert_file),
            );
            assert_eq!(
                std::fs::read(&cert_file).expect("certificate read back"),
                cert.to_der(),
                "the token holds the latest certificate"
            );
            assert_eq!(
                listing.matches("label:      as2-signing-2026").count(),
                3,
                "private key, public key and certificate carry the alias:\n{listing}"
            );
            assert!(listing.contains(&format!("ID:         {id}")), "{listing}");
            let private = listing
                .split("Private Key Object")
                .nth(1)
                .expect("private key listed");
            let access = private
                .lines()
                .find(|l| l.trim_start().starts_with("Access:"))
                .expect("access line");
            assert!(access.contains("sensitive"), "{access}");
            assert!(access.contains("never extractable"), "{access}");
            let flags: Vec<&str> = access
                .trim_start()
                .trim_start_matches("Access:")
                .split(',')
                .map(str::trim)
                .collect();
            assert!(!flags.contains(&"extractable"), "{access}");

            // The token does not give out the private exponent or the primes, even to its
            // logged-in user (pkcs11-tool cannot read private keys at all, so ask directly).
            let p11 = rekey_pkcs11::registry::module(&hsm.module).expect("module");
            let slot = p11
                .get_slots_with_initialized_token()
                .expect("slots")
                .into_iter()
                .find(|s| {
                    p11.get_token_info(*s)
                        .is_ok_and(|i| i.label().trim_end() == "listed")
                })
                .expect("token slot");
            let session = p11.open_ro_session(slot).expect("session");
            let key = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(id.as_bytes().to_vec()),
                ])
                .expect("find")
                .into_iter()
                .next()
                .expect("the private key");
            let secret = [
                AttributeType::PrivateExponent,
                AttributeType::Prime1,
                AttributeType::Prime2,
            ];
            let read = session.get_attributes(key, &secret).unwrap_or_default();
            assert!(
                read.is_empty(),
                "private parts were read out: {}",
                read.len()
            );
            let public = session
                .get_attributes(key, &[AttributeType::Modulus])
                .expect("modulus");
            assert_eq!(public.len(), 1, "the public modulus is readable");
        },
    );
}

#[test]
fn an_imported_key_is_sensitive_but_not_always_sensitive() {
    on_softhsm(
        "an_imported_key_is_sensitive_but_not_always_sensitive",
        |hsm| {
            let store = hsm.token("imported");
            let key = KeyPair::generate(KeyBits::B2048).expect("key");
            let id = fresh_key_id();
            store.import(&key, &id, "from-p12").expect("import");
            let attrs = store.attributes(&id).expect("attributes");
            assert!(attrs.sensitive && !attrs.extractable, "{attrs:?}");
            assert!(
                !attrs.always_sensitive && !attrs.never_extractable,
                "the token knows the key was outside it: {attrs:?}"
            );
        },
    );
}

#[test]
fn misconfigured_tokens_are_refused_with_what_was_wrong() {
    on_softhsm(
        "misconfigured_tokens_are_refused_with_what_was_wrong",
        |hsm| {
            // Two tokens, so the unknown label's error lists both.
            rekey_pkcs11::init_token(&hsm.module, common::SO_PIN, USER_PIN, "alpha")
                .expect("alpha");
            rekey_pkcs11::init_token(&hsm.module, common::SO_PIN, USER_PIN, "beta").expect("beta");

            let wrong = hsm.dir.join("wrong.pin");
            std::fs::write(&wrong, "not-the-pin-0000\n").expect("pin file");
            let e = Pkcs11Keystore::open(&Pkcs11Config {
                pin: PinSource::File(wrong),
                ..hsm.config("alpha")
            })
            .expect_err("wrong PIN");
            let msg = e.to_string();
            assert!(msg.contains("wrong PIN") && msg.contains("alpha"), "{msg}");
            assert!(!msg.contains("not-the-pin"), "the PIN leaked: {msg}");

            let e = Pkcs11Keystore::open(&hsm.config("gamma")).expect_err("unknown label");
            let msg = e.to_string();
            assert!(msg.contains("\"gamma\""), "{msg}");
            assert!(
                msg.contains("\"alpha\"") && msg.contains("\"beta\""),
                "{msg}"
            );

            let e = Pkcs11Keystore::open(&Pkcs11Config {
                module: "/nonexistent/libpkcs11.so".into(),
                ..hsm.config("alpha")
            })
            .expect_err("no module");
            assert!(e.to_string().contains("/nonexistent/libpkcs11.so"), "{e}");
            let not_a_library = hsm.dir.join("alpha.pin");
            let e = Pkcs11Keystore::open(&Pkcs11Config {
                module: not_a_library.clone(),
                ..hsm.config("alpha")
            })
            .expect_err("not a library");
            assert!(
                e.to_string().contains(&not_a_library.display().to_string()),
                "{e}"
            );

            let missing = hsm.dir.join("missing.pin");
            let e = Pkcs11Keystore::open(&Pkcs11Config {
                pin: PinSource::File(missing.clone()),
                ..hsm.config("alpha")
            })
            .expect_err("missing PIN file");
            assert!(
                e.to_string().contains(&missing.display().to_string()),
                "{e}"
            );
            assert!(e.to_string().contains("does not exist"), "{e}");
            let empty = hsm.dir.join("empty.pin");
            std::fs::write(&empty, "\n").expect("empty pin file");
            let e = Pkcs11Keystore::open(&Pkcs11Config {
                pin: PinSource::File(empty),
                ..hsm.config("alpha")
            })
            .expect_err("empty PIN file");
            assert!(e.to_string().contains("is empty"), "{e}");
            let e = Pkcs11Keystore::open(&Pkcs11Config {
                pin: PinSource::Env("REKEY_TEST_PIN_THAT_IS_NOT_SET".into()),
                ..hsm.config("alpha")
            })
            .expect_err("unset PIN variable");
            assert!(
                e.to_string()
                    .contains("REKEY_TEST_PIN_THAT_IS_NOT_SET is not set"),
                "{e}"
            );

            // The right PIN opens it; Debug shows where the PIN is, not the PIN.
            let store = Pkcs11Keystore::open(&hsm.config("alpha")).expect("open");
            assert!(!format!("{store:?} {:?}", hsm.config("alpha")).contains(USER_PIN));

            // A key rekey holds itself is not this tenant's.
            let embedded = KeyHandle::Embedded(KeyPair::generate(KeyBits::B2048).expect("key"));
            let e = store.signer(&embedded).expect_err("embedded handle");
            assert!(e.to_string().contains("token"), "{e}");
            // An id with no key is named.
            let id = fresh_key_id();
            let e = store
                .signer(&KeyHandle::Token(id.clone()))
                .expect_err("no key");
            assert!(e.to_string().contains(&id.to_string()), "{e}");

            // A second token labelled "beta" (`init_token` refuses a label in use, so straight
            // through cryptoki): which one is meant?
            let p11 = rekey_pkcs11::registry::module(&hsm.module).expect("module");
            let free = p11
                .get_slots_with_token()
                .expect("slots")
                .into_iter()
                .find(|s| p11.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
                .expect("a free slot");
            p11.init_token(free, &AuthPin::new(common::SO_PIN.into()), "beta")
                .expect("second beta");
            let e = Pkcs11Keystore::open(&hsm.config("beta")).expect_err("two tokens");
            assert!(
                e.to_string().contains("two tokens are labelled \"beta\""),
                "{e}"
            );
        },
    );
}

#[test]
fn keystores_share_one_module_across_threads() {
    on_softhsm("keystores_share_one_module_across_threads", |hsm| {
        let a = hsm.token("tenant-a");
        let b = hsm.token("tenant-b");
        // A second keystore on tenant-a's token (the PIN is already logged in for it).
        let a2 = Pkcs11Keystore::open(&hsm.config("tenant-a")).expect("second keystore");
        let stores: [&Pkcs11Keystore; 3] = [&a, &b, &a2];
        std::thread::scope(|scope| {
            for (n, store) in stores.into_iter().enumerate() {
                scope.spawn(move || {
                    let id = fresh_key_id();
                    let h = store
                        .generate(KeyBits::B2048, &id, &format!("k{n}"))
                        .expect("generate");
                    let signer = store.signer(&h).expect("signer");
                    for i in 0..20 {
                        let msg = format!("message {i} from {n}");
                        let sig = signer
                            .sign_pkcs1v15(rekey_crypto::DigestAlg::Sha256, msg.as_bytes())
                            .expect("sign");
                        assert_eq!(sig.len(), 256);
                    }
                });
            }
        });
        // tenant-a's keys are visible through both of its keystores, not through tenant-b's.
        assert_eq!(a.objects().expect("objects").len(), 2);
        assert_eq!(a2.objects().expect("objects").len(), 2);
        assert_eq!(b.objects().expect("objects").len(), 1);
    });
}

#[test]
fn a_keystore_logs_in_again_after_the_token_logged_it_out() {
    on_softhsm(
        "a_keystore_logs_in_again_after_the_token_logged_it_out",
        |hsm| {
            let store = hsm.token("relogin");
            let id = fresh_key_id();
            let h = store
                .generate(KeyBits::B2048, &id, "kept")
                .expect("generate");

            // Log this process out of the token from another session (login is per process
            // and token, so the keystore's session is logged out too).
            let p11 = rekey_pkcs11::registry::module(&hsm.module).expect("module");
            let slot = p11
                .get_slots_with_initialized_token()
                .expect("slots")
                .into_iter()
                .find(|s| {
                    p11.get_token_info(*s)
                        .is_ok_and(|i| i.label().trim_end() == "relogin")
                })
                .expect("token slot");
            let other = p11.open_ro_session(slot).expect("session");
            other.logout().expect("logout");
            let private = [
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(id.as_bytes().to_vec()),
            ];
            assert!(
                other.find_objects(&private).expect("find").is_empty(),
                "logged out, the private key is invisible"
            );

            // The keystore notices and logs in again: the key is found, signs, and a destroy
            // really removes it rather than missing it.
            assert!(store.objects().expect("objects").iter().any(|o| o.id == id));
            let signer = store.signer(&h).expect("signer");
            signer
                .sign_pkcs1v15(rekey_crypto::DigestAlg::Sha256, b"after the logout")
                .expect("sign");
            drop(signer);
            store.destroy(&id).expect("destroy");
            assert!(
                other.find_objects(&private).expect("find").is_empty()
                    && store.objects().expect("objects").is_empty(),
                "the private key is gone"
            );
        },
    );
}
