//! End to end through the built binary: each of the four procedures (`workflows/*.toml`) run
//! from the command line by three people — a tenant administrator, an integration developer and
//! a receiver administrator — each doing only the steps of their own role, found with
//! `rekey task list --as EMAIL --json`; and every refusal of `renewal`, `task` and `window` is
//! one line on stderr, exit 1, and changes nothing.
//!
//! downtime-window runs to completion too: after both administrators agree on a window that
//! starts a few seconds later, nothing is due until a timer opens it; `rekey scheduler run
//! --once` fires that timer, and the two steps inside the window follow.
//!
//! Each test runs on SQLite and, when `REKEY_TEST_POSTGRES_URL` is set, again on a fresh
//! `rekey_cli_<uuid>` PostgreSQL database named through `REKEY_DATABASE_URL`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::{Env, on_both, openssl};
use serde_json::Value;

const ADMIN: &str = "admin@t.example";
const DEV: &str = "dev@t.example";
const OPS: &str = "ops@r.example";
/// A receiver administrator of another receiver.
const OTHER_OPS: &str = "ops@other.example";
/// The three people and the role each holds, in the order they look at their tasks.
const PEOPLE: [(&str, &str); 3] = [
    (ADMIN, "tenant_admin"),
    (DEV, "integration_developer"),
    (OPS, "receiver_admin"),
];

const ALIAS: &str = "A";
/// The second alias the signer step lists without a key (prepared-second-alias).
const PREPARED: &str = "B";

/// What this file asks of the shared [`Env`] beyond running commands.
trait RenewalEnv {
    /// Everything a refused command must leave alone (see the impl).
    fn snapshot(&self, renewal: &str) -> String;
}

impl RenewalEnv for Env {
    /// Everything a refused command must leave alone: the renewal (`renewal show --json`: its
    /// steps, window and timestamps), the renewals there are, the queued emails, the keystore,
    /// the receivers' trust and the audit chain length.
    fn snapshot(&self, renewal: &str) -> String {
        [
            self.ok(&["renewal", "show", renewal, "--json"]),
            self.ok(&["renewal", "report", renewal]),
            self.ok(&["renewal", "list", "--json"]),
            self.ok(&["keystore", "list", "--json"]),
            self.ok(&["receiver", "list", "--json"]),
            self.ok(&["audit", "verify"]),
        ]
        .concat()
    }
}

/// The state before a run of refusals: each refusal is compared with it, so none may change
/// anything, and a run of them costs one snapshot each.
struct Unchanged<'a> {
    env: &'a Env,
    renewal: String,
    before: String,
}

impl<'a> Unchanged<'a> {
    fn new(env: &'a Env, renewal: &str) -> Self {
        Unchanged {
            env,
            renewal: renewal.to_string(),
            before: env.snapshot(renewal),
        }
    }

    /// Asserts that `args` is refused naming the problem (`needles`) and changes nothing.
    fn refused(&self, args: &[&str], needles: &[&str]) {
        self.env.refuses(args, needles);
        assert_eq!(
            self.env.snapshot(&self.renewal),
            self.before,
            "[{}] refused rekey {args:?} changed state",
            self.env.backend
        );
    }
}

/// One step of a procedure as `workflows/<id>.toml` defines it.
#[derive(Debug, Clone)]
struct StepDef {
    id: String,
    title: String,
    role: String,
    with_role: Option<String>,
    kind: String,
    action: Option<String>,
    task: Option<String>,
    notify: Option<String>,
    /// For informs: what the person told learns (the subject of their mail).
    told: Option<String>,
    only_when: Option<String>,
}

/// The steps of a procedure, read from the workflow file the binary embeds.
fn procedure(id: &str) -> Vec<StepDef> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("workflows")
        .join(format!("{id}.toml"));
    let text = std::fs::read_to_string(&path).expect("workflow file");
    let doc: toml::Value = toml::from_str(&text).expect("workflow TOML");
    let s = |v: &toml::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|v| StepDef {
            id: s(v, "id").expect("id"),
            title: s(v, "title").expect("title"),
            role: s(v, "role").expect("role"),
            with_role: s(v, "with_role"),
            kind: s(v, "kind").expect("kind"),
            action: s(v, "action"),
            task: s(v, "task"),
            notify: s(v, "notify"),
            told: s(v, "told"),
            only_when: s(v, "only_when"),
        })
        .collect()
}

fn email_of(role: &str) -> &'static str {
    PEOPLE
        .iter()
        .find(|(_, r)| *r == role)
        .map(|(e, _)| *e)
        .unwrap_or_else(|| panic!("no person holds role {role}"))
}

/// `AB:CD:…` or `abcd…` → `abcd…`.
fn norm(fp: &str) -> String {
    fp.replace(':', "").to_ascii_lowercase()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `init`, a tenant, key `A`, flow `F` whose step `S` lists `A` (and, with `prepared`, `B`
/// without a key), receiver `R` trusting `A` with `flags`, and the three people.
fn setup(env: &Env, receiver_flags: &[&str], prepared: bool) {
    env.ok(&["init"]);
    env.ok(&["tenant", "add", "acme"]);
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    env.ok(&[
        "keystore",
        "generate",
        "--alias",
        ALIAS,
        "--bits",
        "2048",
        "--subject",
        "CN=acme signer,O=Acme",
        "--as",
        ADMIN,
    ]);
    env.ok(&["flow", "add", "--flow", "F", "--step", "S", "--as", ADMIN]);
    env.ok(&[
        "signer",
        "add-alias",
        "--flow",
        "F",
        "--step",
        "S",
        "--alias",
        ALIAS,
        "--as",
        ADMIN,
    ]);
    if prepared {
        env.ok(&[
            "signer",
            "add-alias",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            PREPARED,
            "--as",
            ADMIN,
        ]);
    }
    let mut add = vec![
        "receiver", "add", "--name", "R", "--admin", OPS, "--as", ADMIN,
    ];
    add.extend_from_slice(receiver_flags);
    env.ok(&add);
    env.ok(&[
        "receiver", "trust", "--name", "R", "--alias", ALIAS, "--as", ADMIN,
    ]);
    env.ok(&[
        "user",
        "add",
        "--email",
        DEV,
        "--role",
        "integration_developer",
    ]);
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

/// The SHA-256 fingerprint (normalised) of the certificate under `alias`.
fn fingerprint_of(env: &Env, alias: &str) -> Option<String> {
    env.json(&["keystore", "list", "--json"])
        .as_array()
        .expect("keystore list")
        .iter()
        .find(|e| e["alias"] == alias && e["has_key"] == true)
        .and_then(|e| e["fingerprint"].as_str())
        .map(norm)
}

/// `renewal start … --as admin`; returns the renewal id.
fn start(env: &Env, procedure: &str) -> String {
    let r = env.json(&[
        "renewal",
        "start",
        "--flow",
        "F",
        "--step",
        "S",
        "--alias",
        ALIAS,
        "--receiver",
        "R",
        "--procedure",
        procedure,
        "--bits",
        "2048",
        "--as",
        ADMIN,
        "--json",
    ]);
    assert_eq!(r["procedure"], procedure, "{r}");
    assert_eq!(r["status"], "running", "{r}");
    r["id"].as_str().expect("renewal id").to_string()
}

/// What the three people did while walking a renewal.
#[derive(Debug, Default)]
struct Walk {
    /// Step → who approved or completed it.
    done_by: BTreeMap<String, String>,
    /// Every task each person was shown: (email, step, verb).
    seen: Vec<(String, String, String)>,
    /// The new certificate the tasks named.
    new_certificate: Option<String>,
    /// Who proposed and who accepted the downtime window.
    proposed_by: Option<String>,
    accepted_by: Option<String>,
    window_start: Option<DateTime<Utc>>,
}

/// Each person in turn lists their tasks and does them, until a round in which nobody has
/// anything to do (the renewal is finished, or waits for something no person can do); records
/// it all in `w`. Returns `renewal show --json` at the end.
fn walk(env: &Env, id: &str, steps: &[StepDef], w: &mut Walk) -> Value {
    for _round in 0..50 {
        let mut acted = false;
        for (email, role) in PEOPLE {
            let tasks = env.json(&["task", "list", "--as", email, "--json"]);
            for t in tasks.as_array().expect("task list") {
                let step_id = t["step"].as_str().expect("step");
                let verb = t["verb"].as_str().expect("verb");
                let task_id = t["id"].as_str().expect("task id");
                assert_eq!(t["renewal"], id, "{t}");
                assert_eq!(task_id, format!("{id}:{step_id}"));
                let def = steps
                    .iter()
                    .find(|s| s.id == step_id)
                    .unwrap_or_else(|| panic!("task for a step not in the workflow: {t}"));
                // The task carries the role the person acts in: the step's owner, or for the
                // agreement the other party.
                assert_eq!(t["role"], role, "{t}");
                assert!(
                    def.role == role || def.with_role.as_deref() == Some(role),
                    "[{}] {email} ({role}) was shown a task of another role: {t}",
                    env.backend
                );
                w.seen.push((email.into(), step_id.into(), verb.into()));
                match verb {
                    "approve" => {
                        assert!(def.action.is_some(), "approve on a non-action step: {t}");
                        let out = env.ok(&["task", "approve", task_id, "--as", email]);
                        assert!(out.contains(&format!("done: {step_id}")), "{out}");
                        w.done_by.insert(step_id.into(), email.into());
                        acted = true;
                    }
                    "complete" => {
                        assert!(def.task.is_some(), "complete on a non-task step: {t}");
                        let fp = t["new_certificate"]
                            .as_str()
                            .unwrap_or_else(|| panic!("a task without the certificate: {t}"))
                            .to_string();
                        if let Some(known) = &w.new_certificate {
                            assert_eq!(known, &fp, "tasks name different certificates");
                        }
                        w.new_certificate = Some(fp.clone());
                        let out = env.ok(&[
                            "task",
                            "complete",
                            task_id,
                            "--as",
                            email,
                            "--fingerprint",
                            &fp,
                        ]);
                        assert!(out.contains(&format!("done: {step_id}")), "{out}");
                        w.done_by.insert(step_id.into(), email.into());
                        acted = true;
                    }
                    "agree" => {
                        assert_eq!(def.kind, "agreement", "{t}");
                        if role == "tenant_admin" && w.proposed_by.is_none() {
                            // Soon, so that its start passes during the test; whole seconds,
                            // as the command line carries it.
                            let start: DateTime<Utc> = rfc3339(Utc::now() + Duration::seconds(4))
                                .parse()
                                .expect("RFC 3339");
                            let out = env.ok(&[
                                "window",
                                "propose",
                                id,
                                "--start",
                                &rfc3339(start),
                                "--end",
                                &rfc3339(start + Duration::hours(1)),
                                "--as",
                                email,
                            ]);
                            assert!(out.contains("WindowProposed"), "{out}");
                            w.proposed_by = Some(email.into());
                            w.window_start = Some(start);
                            acted = true;
                        } else if role == "receiver_admin"
                            && w.proposed_by.is_some()
                            && w.accepted_by.is_none()
                        {
                            let out = env.ok(&["window", "accept", id, "--as", email]);
                            assert!(out.contains(&format!("done: {step_id}")), "{out}");
                            assert!(out.contains("WindowAgreed"), "{out}");
                            w.accepted_by = Some(email.into());
                            w.done_by.insert(step_id.into(), email.into());
                            acted = true;
                        }
                    }
                    other => panic!("unexpected verb {other:?}: {t}"),
                }
            }
        }
        if !acted {
            return env.json(&["renewal", "show", id, "--json"]);
        }
    }
    panic!("[{}] renewal {id} did not settle in 50 rounds", env.backend);
}

fn step_status<'a>(show: &'a Value, step: &str) -> &'a Value {
    show["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == step)
        .map(|s| &s["status"])
        .unwrap_or_else(|| panic!("no step {step} in {show}"))
}

/// A procedure walked to completion by the three people, then checked from the outside: the
/// keystore, a signature made as the step signs, the receiver's trust and the evidence report.
fn runs_to_completion(env: &Env, procedure_id: &str, flags: &[&str], prepared: bool) {
    let steps = procedure(procedure_id);
    setup(env, flags, prepared);
    let old_fp = fingerprint_of(env, ALIAS).expect("old key");
    env.ok(&[
        "keystore",
        "export-cert",
        "--alias",
        ALIAS,
        "--out",
        &env.p("old.pem"),
    ]);

    let id = start(env, procedure_id);
    if procedure_id == "downtime-window" {
        // The agreement waits for the key: accepting a window now is refused.
        Unchanged::new(env, &id).refused(
            &["window", "accept", &id, "--as", OPS],
            &["agree-downtime", "not due yet", "create-key-pair"],
        );
    }
    let mut w = Walk::default();
    let mut show = walk(env, &id, &steps, &mut w);
    if procedure_id == "downtime-window" {
        through_the_window(env, &id, &w, &show, &old_fp);
        show = walk(env, &id, &steps, &mut w);
    }
    assert_eq!(
        show["status"], "completed",
        "[{}] {procedure_id}: {show}",
        env.backend
    );
    assert_eq!(env.json(&["task", "list", "--json"]), Value::Array(vec![]));

    // Every action was approved and every task completed by the person holding its role; the
    // others had nothing to do.
    let new_fp = w
        .new_certificate
        .clone()
        .expect("a task named the new certificate");
    assert_eq!(norm(show["new_cert"].as_str().expect("new_cert")), new_fp);
    assert_eq!(norm(show["old_cert"].as_str().expect("old_cert")), old_fp);
    assert_ne!(new_fp, old_fp);
    for s in &steps {
        let skipped = prepared && s.only_when.as_deref() == Some("no_prepared_alias");
        let status = step_status(&show, &s.id);
        if skipped {
            assert_eq!(status["status"], "skipped", "{}: {status}", s.id);
            assert!(!w.done_by.contains_key(&s.id));
            continue;
        }
        assert_eq!(status["status"], "done", "{}: {status}", s.id);
        if s.action.is_some() || s.task.is_some() {
            let who = email_of(&s.role);
            assert_eq!(
                w.done_by.get(&s.id).map(String::as_str),
                Some(who),
                "{}",
                s.id
            );
            assert_eq!(status["by"], who, "{}: {status}", s.id);
        } else if s.kind == "agreement" {
            // Done when the other party accepts the proposed window.
            let who = w.accepted_by.as_deref().expect("window accepted");
            assert_eq!(w.done_by.get(&s.id).map(String::as_str), Some(who));
            assert_eq!(status["by"], who, "{}: {status}", s.id);
        } else {
            assert_eq!(status["by"], "rekey", "{}: {status}", s.id);
            assert!(!w.done_by.contains_key(&s.id), "{}", s.id);
        }
    }
    assert_eq!(
        w.done_by.len(),
        steps
            .iter()
            .filter(
                |s| (s.action.is_some() || s.task.is_some() || s.kind == "agreement")
                    && !(prepared && s.only_when.is_some())
            )
            .count()
    );
    for (email, role) in PEOPLE {
        let acted = w.seen.iter().any(|(e, _, _)| e == email);
        let owns = steps.iter().any(|s| {
            s.role == role
                && (s.action.is_some() || s.task.is_some())
                && !(prepared && s.only_when.is_some())
        });
        assert_eq!(acted, owns, "{email} ({role}) in {procedure_id}");
    }

    // The keystore: the new certificate under the alias the procedure puts it, the old key gone.
    let target = match show["new_alias"].as_str() {
        Some(a) => a.to_string(),
        None => ALIAS.to_string(),
    };
    match procedure_id {
        "dual-trust" | "downtime-window" => assert_eq!(target, ALIAS),
        "prepared-second-alias" => assert_eq!(target, PREPARED),
        _ => assert_ne!(target, ALIAS),
    }
    let keys = env.json(&["keystore", "list", "--json"]);
    let holding: Vec<&Value> = keys
        .as_array()
        .expect("keystore list")
        .iter()
        .filter(|e| e["fingerprint"].as_str().map(norm).as_deref() == Some(new_fp.as_str()))
        .collect();
    assert_eq!(holding.len(), 1, "{keys}");
    assert_eq!(holding[0]["alias"], target.as_str(), "{keys}");
    assert_eq!(holding[0]["has_key"], true);
    assert_eq!(holding[0]["key_bits"], 2048);
    assert_eq!(holding[0]["used_by"][0]["flow"], "F", "{keys}");
    assert!(
        keys.as_array()
            .expect("list")
            .iter()
            .all(|e| e["fingerprint"].as_str().map(norm).as_deref() != Some(old_fp.as_str())),
        "the old certificate is still current: {keys}"
    );

    // The receiver trusts exactly the new certificate.
    let r = env.json(&["receiver", "show", "--name", "R", "--json"]);
    let trusted: Vec<String> = r["trusted"]
        .as_array()
        .expect("trusted")
        .iter()
        .map(|c| norm(c["fingerprint"].as_str().expect("fingerprint")))
        .collect();
    assert_eq!(trusted, vec![new_fp.clone()], "{r}");

    // The step now signs with the new key alone, and that verifies against the new
    // certificate as exported — and not against the old one.
    std::fs::write(env.path("p"), b"<order>42</order>\n").expect("payload");
    let out = env.ok(&[
        "sign",
        "--flow",
        "F",
        "--step",
        "S",
        "--in",
        &env.p("p"),
        "--out",
        &env.p("o"),
        "--as",
        ADMIN,
    ]);
    assert!(
        out.contains(&format!("1 signature(s): {target}")),
        "[{}] {out}",
        env.backend
    );
    env.ok(&[
        "keystore",
        "export-cert",
        "--alias",
        &target,
        "--out",
        &env.p("new.pem"),
    ]);
    let v = env.ok(&["verify", "--in", &env.p("o"), "--trust", &env.p("new.pem")]);
    assert!(v.starts_with("accepted"), "{v}");
    assert!(
        norm(&v).contains(&new_fp),
        "verify names another signer: {v}"
    );
    let o = env.run(&["verify", "--in", &env.p("o"), "--trust", &env.p("old.pem")]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "the old certificate verifies the new signature: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // The evidence: every step with who did it, and the emails queued.
    let report = env.json(&["renewal", "report", &id]);
    assert_eq!(report["renewal"], id.as_str());
    assert_eq!(report["procedure"], procedure_id);
    assert_eq!(report["status"], "completed");
    assert_eq!(report["new_certificate_sha256"], new_fp.as_str());
    assert_eq!(report["old_certificate_sha256"], old_fp.as_str());
    let rsteps = report["steps"].as_array().expect("report steps");
    assert_eq!(
        rsteps.iter().map(|s| s["step"].clone()).collect::<Vec<_>>(),
        steps
            .iter()
            .map(|s| Value::from(s.id.as_str()))
            .collect::<Vec<_>>()
    );
    for (rs, s) in rsteps.iter().zip(&steps) {
        assert_eq!(rs["role"], s.role.as_str(), "{rs}");
        assert_eq!(&rs["status"], step_status(&show, &s.id), "{rs}");
        if rs["status"]["status"] == "done" {
            assert!(rs["status"]["at"].as_str().is_some(), "{rs}");
            if let Some(who) = w.done_by.get(&s.id) {
                assert_eq!(rs["status"]["by"], who.as_str(), "{rs}");
            }
        }
    }
    // Only downtime-window lets the receiver reject messages, and only inside the window.
    let downtime = &report["downtime"];
    if procedure_id == "downtime-window" {
        let at = |k: &str| -> DateTime<Utc> {
            downtime[k]
                .as_str()
                .unwrap_or_else(|| panic!("downtime {k}: {report}"))
                .parse()
                .expect("RFC 3339")
        };
        let (opened, began, ended) = (w.window_start.expect("window"), at("started"), at("ended"));
        assert!(opened <= began && began <= ended, "{downtime}");
        assert!(ended < opened + Duration::hours(1), "{downtime}");
    } else {
        assert_eq!(downtime["started"], Value::Null, "{report}");
        assert_eq!(downtime["ended"], Value::Null, "{report}");
    }
    let emails = report["emails"].as_array().expect("emails");
    let sent = |to: &str, subject: &str| {
        emails
            .iter()
            .any(|m| m["to"] == to && m["subject"] == subject && m["status"] == "queued")
    };
    for m in emails {
        let to = m["to"].as_str().expect("to");
        assert!(
            PEOPLE.iter().any(|(e, _)| *e == to),
            "mail to a stranger: {m}"
        );
        assert!(
            m["message_id"]
                .as_str()
                .is_some_and(|i| i.starts_with('<') && i.ends_with("@rekey>"))
        );
    }
    for s in &steps {
        if w.done_by.contains_key(&s.id) {
            let subject = format!("[rekey] Your step is due: {}", s.title);
            assert!(
                sent(email_of(&s.role), &subject),
                "no {subject:?} to {}: {report}",
                email_of(&s.role)
            );
        }
        if let Some(to) = &s.notify {
            // Written for the person told, not the sender's "Inform the …" title.
            let told = s.told.as_deref().expect("an inform says what is told");
            let subject = format!("[rekey] {ALIAS}: {told}");
            assert!(sent(email_of(to), &subject), "no {subject:?}: {report}");
        }
    }
    for (email, _) in PEOPLE {
        assert!(
            sent(email, &format!("[rekey] Renewal of {ALIAS} completed")),
            "{email} not told of completion: {report}"
        );
    }

    env.ok(&["audit", "verify"]);
}

#[test]
fn dual_trust_runs_to_completion_with_three_people() {
    on_both(|env| runs_to_completion(env, "dual-trust", &["--verifies-multiple-keys"], false));
}

#[test]
fn dual_signature_runs_to_completion_with_three_people() {
    on_both(|env| {
        runs_to_completion(
            env,
            "dual-signature",
            &["--accepts-multiple-signatures"],
            false,
        )
    });
}

#[test]
fn prepared_second_alias_runs_to_completion_with_three_people() {
    on_both(|env| {
        runs_to_completion(
            env,
            "prepared-second-alias",
            &["--accepts-multiple-signatures"],
            true,
        )
    });
}

/// downtime-window, after the walk settled: both administrators agreed on the window and the
/// renewal waits for it. Nothing is due — not even once the window's start has passed — until a
/// timer opens the window: `rekey scheduler run --once` fires it, and then the two steps inside
/// the window are due, each to its own person.
fn through_the_window(env: &Env, id: &str, w: &Walk, show: &Value, old_fp: &str) {
    assert_eq!(show["status"], "running", "{show}");
    assert_eq!(w.proposed_by.as_deref(), Some(ADMIN));
    assert_eq!(w.accepted_by.as_deref(), Some(OPS));
    assert_eq!(
        w.done_by.get("create-key-pair").map(String::as_str),
        Some(ADMIN)
    );
    assert!(
        w.seen
            .iter()
            .any(|(e, s, v)| e == OPS && s == "agree-downtime" && v == "agree"),
        "the receiver administrator was not shown the agreement: {:?}",
        w.seen
    );
    assert!(w.seen.iter().all(|(e, _, _)| e != DEV), "{:?}", w.seen);

    // The window is agreed, as proposed; not open.
    let start = w.window_start.expect("window proposed");
    let window = &show["window"];
    assert_eq!(window["agreed"], true, "{show}");
    assert_eq!(window["open"], false, "{show}");
    assert_eq!(window["proposer"], ADMIN, "{show}");
    assert_eq!(window["proposed_by"], "tenant_admin", "{show}");
    let shown: DateTime<Utc> = window["start"]
        .as_str()
        .expect("start")
        .parse()
        .expect("RFC 3339");
    assert_eq!(shown.timestamp(), start.timestamp());
    assert_eq!(step_status(show, "create-key-pair")["by"], ADMIN);
    assert_eq!(step_status(show, "agree-downtime")["status"], "done");
    assert_eq!(step_status(show, "agree-downtime")["by"], OPS);
    for s in ["exchange-key-pair", "switch-receiver"] {
        assert_eq!(step_status(show, s)["status"], "waiting", "{s}: {show}");
    }
    let new_fp = norm(show["new_cert"].as_str().expect("new certificate"));
    assert_ne!(new_fp, old_fp);

    // Once the start has passed, still nothing is due: only the timer opens the window.
    let wait = start - Utc::now() + Duration::milliseconds(500);
    if let Ok(wait) = wait.to_std() {
        std::thread::sleep(wait);
    }
    for (email, _) in PEOPLE {
        assert_eq!(
            env.json(&["task", "list", "--as", email, "--json"]),
            Value::Array(vec![]),
            "{email} has something due before the window opened"
        );
    }
    assert_eq!(env.json(&["task", "list", "--json"]), Value::Array(vec![]));
    let g = Unchanged::new(env, id);
    g.refused(
        &[
            "task",
            "approve",
            &format!("{id}:exchange-key-pair"),
            "--as",
            ADMIN,
        ],
        &["exchange-key-pair", "not due yet"],
    );
    g.refused(
        &[
            "task",
            "complete",
            &format!("{id}:switch-receiver"),
            "--as",
            OPS,
            "--fingerprint",
            &new_fp,
        ],
        &["switch-receiver", "not due yet"],
    );
    // The keystore and the receiver are untouched until the window.
    assert_eq!(fingerprint_of(env, ALIAS).as_deref(), Some(old_fp));
    let r = env.json(&["receiver", "show", "--name", "R", "--json"]);
    assert_eq!(
        norm(r["trusted"][0]["fingerprint"].as_str().expect("trusted")),
        old_fp
    );

    let report = env.json(&["renewal", "report", id]);
    assert_eq!(report["status"], "running");
    let emails = report["emails"].as_array().expect("emails");
    for (to, subject) in [
        (OPS, "[rekey] Downtime window proposed for A".to_string()),
        (ADMIN, "[rekey] Downtime window agreed for A".to_string()),
        (OPS, "[rekey] Downtime window agreed for A".to_string()),
    ] {
        assert!(
            emails
                .iter()
                .any(|m| m["to"] == to && m["subject"] == subject),
            "no {subject:?} to {to}: {report}"
        );
    }

    // The scheduler fires the window's opening; now the two window steps are due.
    let fired = env.json(&["scheduler", "run", "--once", "--json"]);
    assert!(fired["fired"].as_u64().is_some_and(|n| n >= 1), "{fired}");
    assert_eq!(fired["failed"], 0, "{fired}");
    let show = env.json(&["renewal", "show", id, "--json"]);
    assert_eq!(show["window"]["open"], true, "{show}");
    for (email, step, verb) in [
        (ADMIN, "exchange-key-pair", "approve"),
        (OPS, "switch-receiver", "complete"),
    ] {
        let tasks = env.json(&["task", "list", "--as", email, "--json"]);
        assert_eq!(tasks.as_array().map(Vec::len), Some(1), "{email}: {tasks}");
        assert_eq!(tasks[0]["step"], step, "{tasks}");
        assert_eq!(tasks[0]["verb"], verb, "{tasks}");
    }
    assert_eq!(
        env.json(&["task", "list", "--as", DEV, "--json"]),
        Value::Array(vec![])
    );
}

#[test]
fn downtime_window_runs_to_completion_with_three_people() {
    on_both(|env| runs_to_completion(env, "downtime-window", &[], false));
}

/// Everything a person can get wrong with a task, from the command line: each refusal is one
/// line naming the problem, exit 1, and leaves the renewal, keystore, receivers, emails and
/// audit log as they were. Afterwards the renewal still completes.
#[test]
fn refusals_are_one_line_exit_1_and_change_nothing() {
    on_both(|env| {
        let steps = procedure("dual-trust");
        setup(env, &["--verifies-multiple-keys"], false);
        // A receiver that trusts one key at a time and accepts one signature, with its own
        // administrator.
        env.ok(&[
            "receiver", "add", "--name", "Other", "--admin", OTHER_OPS, "--as", ADMIN,
        ]);
        env.ok(&[
            "receiver", "trust", "--name", "Other", "--alias", ALIAS, "--as", ADMIN,
        ]);
        env.ok(&[
            "user",
            "add",
            "--email",
            OTHER_OPS,
            "--role",
            "receiver_admin",
            "--receiver",
            "Other",
        ]);
        let old_fp = fingerprint_of(env, ALIAS).expect("old key");
        let id = start(env, "dual-trust");
        let create = format!("{id}:create-key-pair");
        let trust = format!("{id}:trust-old-and-new");
        let exchange = format!("{id}:exchange-key-pair");

        // Wrong role: the developer approves the tenant administrator's step.
        let g = Unchanged::new(env, &id);
        g.refused(
            &["task", "approve", &create, "--as", DEV],
            &["create-key-pair", "tenant_admin", "of this renewal", DEV],
        );
        // The receiver administrator, too.
        g.refused(
            &["task", "approve", &create, "--as", OPS],
            &["create-key-pair", "tenant_admin", "of this renewal", OPS],
        );
        // Out of order: a step that is not due.
        g.refused(
            &["task", "approve", &exchange, "--as", ADMIN],
            &["exchange-key-pair", "not due yet"],
        );
        g.refused(
            &[
                "task",
                "complete",
                &trust,
                "--as",
                OPS,
                "--fingerprint",
                &old_fp,
            ],
            &["trust-old-and-new", "not due yet"],
        );
        // Unknown task id formats, unknown step.
        g.refused(
            &["task", "approve", "create-key-pair", "--as", ADMIN],
            &["task id \"create-key-pair\"", "<renewal>:<step>"],
        );
        g.refused(
            &[
                "task",
                "approve",
                "not-a-uuid:create-key-pair",
                "--as",
                ADMIN,
            ],
            &["task id \"not-a-uuid:create-key-pair\"", "renewal id"],
        );
        g.refused(
            &[
                "task",
                "approve",
                &format!("{id}:no-such-step"),
                "--as",
                ADMIN,
            ],
            &["unknown step \"no-such-step\""],
        );
        let stranger = uuid::Uuid::new_v4();
        g.refused(
            &[
                "task",
                "approve",
                &format!("{stranger}:create-key-pair"),
                "--as",
                ADMIN,
            ],
            &["no renewal", &stranger.to_string()],
        );
        // `--as` omitted; an unknown user.
        g.refused(&["task", "approve", &create], &["--as EMAIL"]);
        g.refused(
            &["task", "approve", &create, "--as", "nobody@t.example"],
            &["no user nobody@t.example is registered"],
        );
        g.refused(
            &["task", "list", "--as", "nobody@t.example"],
            &["no user nobody@t.example is registered"],
        );
        // Incompatible procedures.
        let start_on = |receiver: &str, procedure: &str| {
            vec![
                "renewal".to_string(),
                "start".into(),
                "--flow".into(),
                "F".into(),
                "--step".into(),
                "S".into(),
                "--alias".into(),
                ALIAS.into(),
                "--receiver".into(),
                receiver.into(),
                "--procedure".into(),
                procedure.into(),
                "--bits".into(),
                "2048".into(),
                "--as".into(),
                ADMIN.into(),
            ]
        };
        let args = start_on("Other", "dual-trust");
        g.refused(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &[
                "procedure dual-trust is not allowed for this receiver",
                "cannot trust the old and the new certificate at the same time",
            ],
        );
        let args = start_on("R", "downtime-window");
        g.refused(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &[
                "procedure downtime-window is not allowed for this receiver",
                "without downtime",
            ],
        );
        // Only a tenant administrator starts a renewal.
        let mut args = start_on("R", "dual-trust");
        args.truncate(args.len() - 1);
        args.push(DEV.into());
        g.refused(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &["tenant_admin", "of this renewal", DEV],
        );
        // A window for a procedure without one.
        g.refused(
            &["window", "accept", &id, "--as", OPS],
            &["procedure dual-trust has no downtime window"],
        );

        // The tenant administrator creates the key; the receiver administrator's task is due.
        let out = env.ok(&["task", "approve", &create, "--as", ADMIN]);
        assert!(out.contains("done: create-key-pair"), "{out}");
        let g = Unchanged::new(env, &id);
        g.refused(
            &["task", "approve", &create, "--as", ADMIN],
            &["create-key-pair", "already done"],
        );
        let tasks = env.json(&["task", "list", "--as", OPS, "--json"]);
        assert_eq!(tasks.as_array().map(Vec::len), Some(1), "{tasks}");
        assert_eq!(tasks[0]["id"], trust.as_str());
        let new_fp = tasks[0]["new_certificate"]
            .as_str()
            .expect("new certificate")
            .to_string();
        // Wrong scope: the administrator of another receiver, with the right fingerprint, is
        // told no such renewal exists.
        assert_eq!(
            env.json(&["task", "list", "--as", OTHER_OPS, "--json"]),
            Value::Array(vec![])
        );
        g.refused(
            &[
                "task",
                "complete",
                &trust,
                "--as",
                OTHER_OPS,
                "--fingerprint",
                &new_fp,
            ],
            // It is not theirs to see: answered as unknown, naming no step or role.
            &["no renewal", &id],
        );
        // Wrong role for a task.
        g.refused(
            &[
                "task",
                "complete",
                &trust,
                "--as",
                DEV,
                "--fingerprint",
                &new_fp,
            ],
            &[
                "trust-old-and-new",
                "receiver_admin",
                "of this renewal",
                DEV,
            ],
        );
        // Wrong fingerprint (the old certificate's), missing fingerprint.
        g.refused(
            &[
                "task",
                "complete",
                &trust,
                "--as",
                OPS,
                "--fingerprint",
                &old_fp,
            ],
            &[
                "trust-old-and-new",
                &old_fp,
                "does not match the new certificate",
            ],
        );
        g.refused(
            &[
                "task",
                "complete",
                &trust,
                "--as",
                OPS,
                "--fingerprint",
                "zz",
            ],
            &[
                &trust,
                "fingerprint: character 1 (z, U+007A) is not a hex digit",
            ],
        );
        g.refused(
            &["task", "complete", &trust, "--as", OPS],
            &[&trust, "fingerprint: empty", "64 hex digits"],
        );
        // Approve a task, complete an action.
        g.refused(
            &["task", "approve", &trust, "--as", OPS],
            &["trust-old-and-new", "complete"],
        );

        // The refusals left the renewal as it was: it still runs to completion, by its people.
        let mut w = Walk::default();
        let show = walk(env, &id, &steps, &mut w);
        assert_eq!(show["status"], "completed", "{show}");
        assert_eq!(w.new_certificate.as_deref(), Some(new_fp.as_str()));
        assert_eq!(
            w.done_by.get("trust-old-and-new").map(String::as_str),
            Some(OPS)
        );
        assert_eq!(fingerprint_of(env, ALIAS).as_deref(), Some(new_fp.as_str()));
        // A finished renewal refuses further steps.
        env.refuses(
            &["task", "approve", &exchange, "--as", ADMIN],
            &["the renewal is completed"],
        );
        // The other receiver never noticed any of it.
        let other = env.json(&["receiver", "show", "--name", "Other", "--json"]);
        assert_eq!(
            norm(
                other["trusted"][0]["fingerprint"]
                    .as_str()
                    .expect("trusted")
            ),
            old_fp
        );
        assert_eq!(other["trusted"].as_array().map(Vec::len), Some(1));
    });
}

/// The receiver administrator confirms by typing the installed certificate's fingerprint: junk
/// around the right digits (an invisible zero-width space, markup) and an empty or missing value
/// are each refused naming the field and what is wrong, and leave the step due with nothing
/// recorded or mailed; the forms `openssl` prints and plain lower case still confirm. (A NUL
/// byte cannot reach a command line at all; the API and web tests cover it.)
#[test]
fn junk_padded_fingerprint_is_refused_and_changes_nothing() {
    on_both(|env| {
        let steps = procedure("dual-trust");
        setup(env, &["--verifies-multiple-keys"], false);
        let id = start(env, "dual-trust");
        let trust = format!("{id}:trust-old-and-new");
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:create-key-pair"),
            "--as",
            ADMIN,
        ]);
        let tasks = env.json(&["task", "list", "--as", OPS, "--json"]);
        assert_eq!(tasks[0]["id"], trust.as_str(), "{tasks}");
        let fp = tasks[0]["new_certificate"]
            .as_str()
            .expect("new certificate")
            .to_string();
        let mails = sent_mail(env).len();
        let g = Unchanged::new(env, &id);
        let complete = |value: &str, needles: &[&str]| {
            g.refused(
                &[
                    "task",
                    "complete",
                    &trust,
                    "--as",
                    OPS,
                    "--fingerprint",
                    value,
                ],
                needles,
            );
        };
        complete(
            &format!("{fp}\u{200B}"),
            &[
                &trust,
                "fingerprint: character 65",
                "U+200B",
                "not a hex digit",
            ],
        );
        complete(
            &format!("<b>{fp}</b>"),
            &[
                &trust,
                "fingerprint: character 1 (<, U+003C) is not a hex digit",
            ],
        );
        complete("", &[&trust, "fingerprint: empty", "64 hex digits"]);
        complete("  ", &[&trust, "fingerprint: empty", "64 hex digits"]);
        g.refused(
            &["task", "complete", &trust, "--as", OPS],
            &[&trust, "fingerprint: empty", "64 hex digits"],
        );
        let show = env.json(&["renewal", "show", &id, "--json"]);
        assert_eq!(
            step_status(&show, "trust-old-and-new")["status"],
            "due",
            "{show}"
        );
        assert_eq!(sent_mail(env).len(), mails, "a refusal mailed nobody");

        // Colon-separated upper case, as `openssl x509 -fingerprint -sha256` prints it.
        let colon_upper = fp
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let out = env.ok(&[
            "task",
            "complete",
            &trust,
            "--as",
            OPS,
            "--fingerprint",
            &colon_upper,
        ]);
        assert!(out.contains("done: trust-old-and-new"), "{out}");
        // The rest by its people; `walk` confirms remove-old-trust with plain lower case.
        let mut w = Walk::default();
        let show = walk(env, &id, &steps, &mut w);
        assert_eq!(show["status"], "completed", "{show}");
        assert_eq!(
            w.done_by.get("remove-old-trust").map(String::as_str),
            Some(OPS)
        );
        assert_eq!(w.new_certificate.as_deref(), Some(fp.as_str()));
    });
}

/// One `.eml` the file transport wrote.
struct Sent {
    to: String,
    /// The message with its quoted-printable bodies decoded (soft breaks and escapes undone).
    text: String,
    /// The message as written, for its attachments.
    raw: String,
}

/// Every `.eml` the file transport wrote so far.
fn sent_mail(env: &Env) -> Vec<Sent> {
    let Ok(dir) = std::fs::read_dir(env.data().join("outbox")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.filter_map(|e| e.ok()) {
        let raw = std::fs::read_to_string(e.path()).expect("readable .eml");
        // The bodies are quoted-printable: undo soft line breaks and the escapes used.
        let text = raw
            .replace("=\r\n", "")
            .replace("=3D", "=")
            .replace("=20", " ");
        let to = text
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap_or_default()
            .trim()
            .to_string();
        out.push(Sent { to, text, raw });
    }
    out
}

/// The decoded content of attachment `name` of a message, if it has one.
fn attachment(eml: &str, name: &str) -> Option<String> {
    use base64::Engine as _;
    let at = eml
        .find(&format!("filename=\"{name}\""))
        .or_else(|| eml.find(&format!("filename={name}")))?;
    let start = eml[..at].rfind("\r\n--")?;
    let part = &eml[start + 2..];
    let boundary = &part[..part.find("\r\n")?];
    let head_end = part.find("\r\n\r\n")?;
    let head = &part[..head_end];
    let body = &part[head_end + 4..];
    let body = &body[..body.find(&format!("\r\n{boundary}"))?];
    if head.to_ascii_lowercase().contains("base64") {
        let raw: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("Base64 attachment");
        Some(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        Some(format!("{body}\r\n"))
    }
}

/// Regression: the engine's `certificate_request` notice was not a kind the notifier knew, so
/// the CSR mail failed and the tenant administrator was told to check their address. Now the
/// CSR arrives by mail (and `openssl req -verify` accepts it), `rekey renewal csr` prints it,
/// the uploaded chain finishes the step, the receiver administrator's certificate attachment
/// carries the whole chain, and the renewal runs to completion.
#[test]
fn ca_signed_renewal_mails_the_csr_to_the_tenant_admin() {
    on_both(|env| {
        let steps = procedure("dual-signature");
        setup(env, &["--accepts-multiple-signatures"], false);
        let r = env.json(&[
            "renewal",
            "start",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            ALIAS,
            "--receiver",
            "R",
            "--procedure",
            "dual-signature",
            "--bits",
            "2048",
            "--ca-signed",
            "--as",
            ADMIN,
            "--json",
        ]);
        let id = r["id"].as_str().expect("renewal id").to_string();
        // Before the key exists there is no request to give.
        env.refuses(
            &["renewal", "csr", &id],
            &[&id, "no certificate request waiting"],
        );
        let task = format!("{id}:create-key-pair");
        env.ok(&["task", "approve", &task, "--as", ADMIN]);

        let sent = env.ok(&["mail", "send-due"]);
        assert!(sent.contains(" 0 failed"), "[{}] {sent}", env.backend);
        let mails = sent_mail(env);
        let csr_mail = mails
            .iter()
            .find(|m| m.to == ADMIN && m.text.contains("certificate-request.pem"))
            .unwrap_or_else(|| panic!("[{}] no CSR mail to {ADMIN}", env.backend));
        assert!(!mails.iter().any(|m| m.text.contains("Undeliverable")));
        assert!(
            csr_mail.text.contains("rekey renewal upload-cert"),
            "{}",
            csr_mail.text
        );
        let csr = attachment(&csr_mail.raw, "certificate-request.pem").expect("CSR attached");
        assert!(csr.contains("-----BEGIN CERTIFICATE REQUEST-----"), "{csr}");
        std::fs::write(env.path("mailed.csr"), &csr).expect("write");
        let verify = Command::new("openssl")
            .args(["req", "-in", &env.p("mailed.csr"), "-verify", "-noout"])
            .output()
            .expect("openssl runs");
        assert!(
            verify.status.success(),
            "openssl req -verify: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        // The same request from the command line.
        let printed = env.ok(&["renewal", "csr", &id]);
        assert_eq!(printed.trim(), csr.replace("\r\n", "\n").trim());

        let (leaf, ca) = openssl::ca_sign(env.dir.path(), &printed);
        std::fs::write(env.path("chain.pem"), format!("{leaf}{ca}")).expect("write chain");
        let out = env.ok(&[
            "renewal",
            "upload-cert",
            &id,
            "--cert",
            &env.p("chain.pem"),
            "--as",
            ADMIN,
        ]);
        assert!(out.contains("done: create-key-pair"), "{out}");
        // Once the chain is in, the request is no longer waiting.
        env.refuses(
            &["renewal", "csr", &id],
            &["no certificate request waiting"],
        );

        let mut w = Walk::default();
        let show = walk(env, &id, &steps, &mut w);
        assert_eq!(show["status"], "completed", "[{}] {show}", env.backend);

        let sent = env.ok(&["mail", "send-due"]);
        assert!(sent.contains(" 0 failed"), "[{}] {sent}", env.backend);
        let mails = sent_mail(env);
        let chain = mails
            .iter()
            .filter(|m| m.to == OPS)
            .find_map(|m| attachment(&m.raw, "certificate.pem"))
            .expect("the receiver administrator got the certificate");
        assert_eq!(
            chain.matches("-----BEGIN CERTIFICATE-----").count(),
            2,
            "leaf and CA: {chain}"
        );
        assert!(env.json(&["mail", "list", "--state", "failed", "--json"]) == Value::Array(vec![]));
    });
}

/// Regression: a receiver contact without an account was sent "now due for you" with a
/// personal link whose page then said "not due for you". Now their mail has no link and names
/// the command that gives them access; the registered receiver administrator's has the link.
#[test]
fn receiver_contact_without_an_account_gets_no_dead_link() {
    on_both(|env| {
        const CONTACT: &str = "contact@r.example";
        setup(
            env,
            &["--verifies-multiple-keys", "--admin", CONTACT],
            false,
        );
        let id = start(env, "dual-trust");
        let mut w = Walk::default();
        walk(env, &id, &procedure("dual-trust"), &mut w);
        env.ok(&["mail", "send-due"]);
        let mails = sent_mail(env);
        let due: Vec<&String> = mails
            .iter()
            .filter(|m| m.to == CONTACT && subject_of(m).contains("awaits access"))
            .map(|m| &m.text)
            .collect();
        assert!(!due.is_empty(), "[{}] the contact is told", env.backend);
        for m in due {
            assert!(!m.contains("/tasks/"), "no link for a contact: {m}");
            assert!(m.contains("no rekey account"), "{m}");
            assert!(
                m.contains(&format!(
                    "--email {CONTACT} --role receiver_admin --receiver R"
                )),
                "{m}"
            );
        }
        assert!(
            mails.iter().any(|m| m.to == OPS
                && m.text.contains("Your step is due")
                && m.text.contains("/tasks/")),
            "the registered receiver administrator gets the link"
        );
    });
}

/// Regression: reminders carried none of the original mail's attachments, escalations gave the
/// tenant administrator a link to a receiver step they cannot do, and inform subjects were
/// written for the sender ("Inform the integration developer", sent to the developer).
#[test]
fn reminders_carry_attachments_and_escalations_link_only_to_own_steps() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], false);
        start(env, "dual-signature");
        // The tenant administrator and the developer do their part, up to the receiver's switch.
        for _ in 0..10 {
            for email in [ADMIN, DEV] {
                let tasks = env.json(&["task", "list", "--as", email, "--json"]);
                for t in tasks.as_array().expect("task list") {
                    if t["verb"] == "approve" {
                        env.ok(&[
                            "task",
                            "approve",
                            t["id"].as_str().expect("id"),
                            "--as",
                            email,
                        ]);
                    }
                }
            }
        }
        let ops = env.json(&["task", "list", "--as", OPS, "--json"]);
        assert_eq!(ops[0]["step"], "switch-receiver", "{ops}");
        let later = |d: Duration| rfc3339(Utc::now() + d + Duration::hours(1));
        env.ok(&[
            "scheduler",
            "run",
            "--once",
            "--at",
            &later(Duration::days(2)),
        ]);
        env.ok(&[
            "scheduler",
            "run",
            "--once",
            "--at",
            &later(Duration::days(7)),
        ]);
        let sent = env.ok(&["mail", "send-due", "--at", &later(Duration::days(7))]);
        assert!(sent.contains(" 0 failed"), "{sent}");
        let mails = sent_mail(env);
        let find = |to: &str, subject: &str| -> Vec<&Sent> {
            mails
                .iter()
                .filter(|m| m.to == to && m.text.contains(&format!("Subject: {subject}")))
                .collect()
        };

        let due = find(OPS, "[rekey] Your step is due: Exchange the certificate");
        let reminder = find(OPS, "[rekey] Reminder: Exchange the certificate");
        let subjects: Vec<(&String, &str)> = mails
            .iter()
            .map(|m| {
                let subject = m.text.lines().find(|l| l.starts_with("Subject"));
                (&m.to, subject.unwrap_or_default())
            })
            .collect();
        assert_eq!(
            (due.len(), reminder.len()),
            (1, 1),
            "[{}] {sent} {subjects:?}",
            env.backend
        );
        for name in ["certificate.pem", "test-message.p7m"] {
            assert!(
                attachment(&due[0].raw, name).is_some(),
                "{name} in the first mail"
            );
            assert!(
                attachment(&reminder[0].raw, name).is_some(),
                "{name} in the reminder: {}",
                reminder[0].text
            );
        }
        assert!(
            reminder[0].text.contains("/tasks/"),
            "the owner's reminder links to the step"
        );

        let own = find(OPS, "[rekey] Overdue: Exchange the certificate");
        assert_eq!(own.len(), 1, "[{}]", env.backend);
        assert!(own[0].text.contains("/tasks/"));
        let told = find(
            ADMIN,
            "[rekey] Overdue at the receiver administrator: Exchange",
        );
        assert_eq!(told.len(), 1, "[{}] {subjects:?}", env.backend);
        assert!(
            !told[0].text.contains("/tasks/"),
            "no link to a step the admin cannot do"
        );
        assert!(
            told[0].text.contains("You cannot do this step yourself"),
            "{}",
            told[0].text
        );

        assert!(
            find(DEV, "[rekey] A: The new key is in the keystore").len() == 1,
            "the developer is told what happened: {subjects:?}"
        );
        for (_, subject) in &subjects {
            assert!(
                !subject.contains("Inform the"),
                "written for the sender: {subject}"
            );
        }
    });
}

/// `renewal start … --ca-signed` for dual-signature, with `extra` flags; returns the id.
fn start_ca_signed(env: &Env, extra: &[&str]) -> String {
    let mut args = vec![
        "renewal",
        "start",
        "--flow",
        "F",
        "--step",
        "S",
        "--alias",
        ALIAS,
        "--receiver",
        "R",
        "--procedure",
        "dual-signature",
        "--bits",
        "2048",
        "--ca-signed",
        "--as",
        ADMIN,
        "--json",
    ];
    args.extend_from_slice(extra);
    let r = env.json(&args);
    r["id"].as_str().expect("renewal id").to_string()
}

/// A step of `renewal show --json`.
fn shown_step(show: &Value, step: &str) -> Value {
    show["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == step))
        .cloned()
        .unwrap_or_else(|| panic!("no step {step} in {show}"))
}

/// `2026-01-02T03:04:05Z` as the mails write it: `2026-01-02 03:04 UTC`.
fn mail_time(rfc3339: &Value) -> String {
    let t: DateTime<Utc> = rfc3339
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a time: {rfc3339}"));
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The value of the fact row `label` in a mail's text body (`  Label:   value`).
fn fact(m: &Sent, label: &str) -> Option<String> {
    m.text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("  {label}:")))
        .map(|v| v.trim().to_string())
}

/// The `Subject:` header of a sent mail, unfolded.
fn subject_of(m: &Sent) -> String {
    let mut lines = m.text.lines().skip_while(|l| !l.starts_with("Subject: "));
    let mut subject = lines.next().unwrap_or_default().to_string();
    for l in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        subject.push_str(l);
    }
    subject
}

/// Regression: the certificate-request mail said what to do but not by when. Now it gives the
/// due date of the step that waits for the CA-signed chain, as `renewal show` has it.
#[test]
fn certificate_request_mail_says_by_when() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], false);
        let id = start_ca_signed(env, &[]);
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:create-key-pair"),
            "--as",
            ADMIN,
        ]);
        let show = env.json(&["renewal", "show", &id, "--json"]);
        let step = shown_step(&show, "create-key-pair");
        assert_eq!(step["status"]["status"], "due", "{step}");
        let due = mail_time(&step["status"]["due_at"]);
        env.ok(&["mail", "send-due"]);
        let mails = sent_mail(env);
        let csr = mails
            .iter()
            .find(|m| m.to == ADMIN && subject_of(m).contains("Certificate request"))
            .unwrap_or_else(|| panic!("[{}] no CSR mail", env.backend));
        assert_eq!(fact(csr, "Due by"), Some(due.clone()), "{}", csr.text);
        assert!(
            csr.text
                .contains(&format!("sign certificate-request.pem by {due}")),
            "{}",
            csr.text
        );
    });
}

/// Regression: an action `--auto-approve` should have carried out but the guard refused was
/// escalated to the tenant administrator as an ordinary "Overdue" step, without the guard's
/// reason. Now the mail says the step was refused automatically, gives the reason verbatim (as
/// `renewal show` records it) and what the administrator can do, by when.
#[test]
fn refused_automatic_action_mails_the_guards_reason() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], false);
        let id = start_ca_signed(env, &["--auto-approve"]);
        // While the CA signs, the receiver stops trusting the current certificate: adding the
        // new key would leave messages it cannot verify, so the guard refuses the next action.
        let old_fp = fingerprint_of(env, ALIAS).expect("current certificate");
        env.ok(&[
            "receiver",
            "untrust",
            "--name",
            "R",
            "--fingerprint",
            &old_fp,
            "--as",
            ADMIN,
        ]);
        let csr = env.ok(&["renewal", "csr", &id]);
        let (leaf, ca) = openssl::ca_sign(env.dir.path(), &csr);
        std::fs::write(env.path("chain.pem"), format!("{leaf}{ca}")).expect("write chain");
        env.ok(&[
            "renewal",
            "upload-cert",
            &id,
            "--cert",
            &env.p("chain.pem"),
            "--as",
            ADMIN,
        ]);
        let show = env.json(&["renewal", "show", &id, "--json"]);
        let blocked = shown_step(&show, "add-key-new-alias");
        let reason = blocked["blocked"]
            .as_str()
            .unwrap_or_else(|| panic!("[{}] the guard refused: {blocked}", env.backend))
            .to_string();
        let due = mail_time(&blocked["status"]["due_at"]);

        let sent = env.ok(&["mail", "send-due"]);
        assert!(sent.contains(" 0 failed"), "{sent}");
        let mails = sent_mail(env);
        let refused: Vec<&Sent> = mails
            .iter()
            .filter(|m| m.to == ADMIN && subject_of(m).contains("Refused automatically"))
            .collect();
        let subjects: Vec<String> = mails.iter().map(subject_of).collect();
        assert_eq!(refused.len(), 1, "[{}] {subjects:?}", env.backend);
        let m = refused[0];
        assert!(
            subject_of(m).contains("Add the new key pair to the keystore under a new alias"),
            "{}",
            subject_of(m)
        );
        assert!(!subject_of(m).contains("Overdue"), "{}", subject_of(m));
        assert!(m.text.contains("did not do"), "{}", m.text);
        assert!(m.text.contains("automatically"), "{}", m.text);
        assert_eq!(
            fact(m, "Refused because"),
            Some(reason),
            "[{}] the guard's reason verbatim in:\n{}",
            env.backend,
            m.text
        );
        assert_eq!(fact(m, "Due by"), Some(due), "{}", m.text);
        assert!(
            m.text.contains(&format!(
                "rekey task approve {id}:add-key-new-alias --as {ADMIN}"
            )),
            "{}",
            m.text
        );
        assert!(m.text.contains("rekey renewal cancel"), "{}", m.text);
        assert!(
            m.text.contains("/tasks/"),
            "the administrator's own step is linked"
        );
    });
}

/// Regression companion of the API's 409: `rekey renewal csr` names why no request is
/// waiting, in the API's words — no request yet, the chain already uploaded, not a CA-signed
/// renewal — on one line of stderr with exit 1.
#[test]
fn renewal_csr_without_a_waiting_request_says_why() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], false);
        let id = start_ca_signed(env, &[]);
        let none = format!("renewal {id} has no certificate request waiting");
        env.refuses(
            &["renewal", "csr", &id],
            &[&none, "no request yet", "\"create-key-pair\""],
        );
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:create-key-pair"),
            "--as",
            ADMIN,
        ]);
        let csr = env.ok(&["renewal", "csr", &id]);
        let (leaf, ca) = openssl::ca_sign(env.dir.path(), &csr);
        std::fs::write(env.path("chain.pem"), format!("{leaf}{ca}")).expect("write chain");
        let chain = env.p("chain.pem");
        env.ok(&[
            "renewal",
            "upload-cert",
            &id,
            "--cert",
            &chain,
            "--as",
            ADMIN,
        ]);
        env.refuses(&["renewal", "csr", &id], &[&none, "already uploaded"]);
        env.ok(&["renewal", "cancel", &id, "--as", ADMIN]);
        let id = start(env, "dual-signature");
        env.refuses(
            &["renewal", "csr", &id],
            &[
                &format!("renewal {id} has no certificate request waiting"),
                "not a CA-signed renewal",
            ],
        );
    });
}

/// Regression: a receiver contact without an account got "Your step is due" although they
/// cannot act until given access. Their subject now says the step awaits access; the
/// registered receiver administrator's still says it is theirs.
#[test]
fn contact_subject_says_the_step_awaits_access() {
    on_both(|env| {
        const CONTACT: &str = "contact@r.example";
        setup(
            env,
            &["--verifies-multiple-keys", "--admin", CONTACT],
            false,
        );
        let id = start(env, "dual-trust");
        let mut w = Walk::default();
        walk(env, &id, &procedure("dual-trust"), &mut w);
        env.ok(&["mail", "send-due"]);
        let mails = sent_mail(env);
        let contact: Vec<String> = mails
            .iter()
            .filter(|m| m.to == CONTACT)
            .map(subject_of)
            .collect();
        assert!(
            contact
                .iter()
                .any(|s| s.contains("[rekey] A: a step for R awaits access")),
            "[{}] {contact:?}",
            env.backend
        );
        assert!(
            !contact.iter().any(|s| s.contains("Your step is due")),
            "[{}] {contact:?}",
            env.backend
        );
        assert!(
            mails
                .iter()
                .any(|m| m.to == OPS && subject_of(m).contains("Your step is due")),
            "the registered receiver administrator's subject is unchanged"
        );
    });
}

fn sleep_until(t: DateTime<Utc>) {
    if let Ok(wait) = (t - Utc::now() + Duration::milliseconds(300)).to_std() {
        std::thread::sleep(wait);
    }
}

/// downtime-window, half done when the window closes: the tenant administrator exchanged the
/// key inside the window, the receiver administrator had not switched when it closed. The
/// window steps were due by the close (not by the opening); the close escalates to both sides
/// by mail; the receiver's step stays due and can still be done after the close; the downtime
/// is measured until then, its end after the close.
#[test]
fn window_half_done_at_close_escalates_to_both_sides_and_records_the_real_downtime_end() {
    on_both(|env| {
        setup(env, &[], false);
        let id = start(env, "downtime-window");
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:create-key-pair"),
            "--as",
            ADMIN,
        ]);
        let opens: DateTime<Utc> = rfc3339(Utc::now() + Duration::seconds(3))
            .parse()
            .expect("RFC 3339");
        let closes = opens + Duration::seconds(6);
        env.ok(&[
            "window",
            "propose",
            &id,
            "--start",
            &rfc3339(opens),
            "--end",
            &rfc3339(closes),
            "--as",
            ADMIN,
        ]);
        env.ok(&["window", "accept", &id, "--as", OPS]);
        sleep_until(opens);
        env.json(&["scheduler", "run", "--once", "--json"]);
        let tasks = env.json(&["task", "list", "--as", OPS, "--json"]);
        assert_eq!(tasks[0]["step"], "switch-receiver", "{tasks}");
        let due: DateTime<Utc> = tasks[0]["due_at"]
            .as_str()
            .expect("due_at")
            .parse()
            .expect("RFC 3339");
        assert_eq!(due, closes, "a window step is due by the window's close");
        let fp = tasks[0]["new_certificate"]
            .as_str()
            .expect("new certificate")
            .to_string();
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:exchange-key-pair"),
            "--as",
            ADMIN,
        ]);
        env.ok(&["mail", "send-due"]);
        assert!(
            sent_mail(env).iter().all(|m| !m.text.contains("Overdue")),
            "no escalation before the close"
        );

        // The window closes with the receiver not yet switched.
        sleep_until(closes);
        let fired = env.json(&["scheduler", "run", "--once", "--json"]);
        assert_eq!(fired["failed"], 0, "{fired}");
        let show = env.json(&["renewal", "show", &id, "--json"]);
        assert_eq!(show["window"]["closed"], true, "{show}");
        assert_eq!(step_status(&show, "switch-receiver")["status"], "due");
        env.ok(&["mail", "send-due"]);
        let overdue: Vec<Sent> = sent_mail(env)
            .into_iter()
            .filter(|m| m.text.contains("Overdue"))
            .collect();
        for who in [ADMIN, OPS] {
            assert!(
                overdue
                    .iter()
                    .any(|m| m.to == who && m.text.contains("receiver system")),
                "[{}] no escalation mail to {who}: {:?}",
                env.backend,
                overdue.iter().map(|m| &m.text).collect::<Vec<_>>()
            );
        }
        let tasks = env.json(&["task", "list", "--as", OPS, "--json"]);
        assert_eq!(tasks[0]["step"], "switch-receiver", "still due: {tasks}");

        // The receiver administrator switches after the close: allowed, since it makes
        // verification work again, and that moment ends the downtime.
        let before_switch = Utc::now();
        env.ok(&[
            "task",
            "complete",
            &format!("{id}:switch-receiver"),
            "--as",
            OPS,
            "--fingerprint",
            &fp,
        ]);
        let report = env.json(&["renewal", "report", &id]);
        assert_eq!(report["status"], "completed", "{report}");
        let at = |k: &str| -> DateTime<Utc> {
            report["downtime"][k]
                .as_str()
                .unwrap_or_else(|| panic!("[{}] downtime {k}: {report}", env.backend))
                .parse()
                .expect("RFC 3339")
        };
        assert!(opens <= at("started") && at("started") < closes, "{report}");
        assert!(
            at("ended") > closes && at("ended") >= before_switch - Duration::seconds(1),
            "[{}] the downtime ends when the receiver switched, after the close: {report}",
            env.backend
        );
    });
}

/// A tenant whose step `F/S` lists `rows` (alias, whether it holds a key) in this order, and a
/// receiver `R` with `flags` trusting `renew`'s certificate; then an auto-approved renewal of
/// `renew`, the receiver administrator confirming every task shown with the new certificate's
/// fingerprint. Returns the renewal (`renewal show --json`).
fn renew_in_table(env: &Env, rows: &[(&str, bool)], renew: &str, flags: &[&str]) -> Value {
    env.ok(&["init"]);
    env.ok(&["tenant", "add", "acme"]);
    env.ok(&["user", "add", "--email", ADMIN, "--role", "tenant_admin"]);
    env.ok(&["flow", "add", "--flow", "F", "--step", "S", "--as", ADMIN]);
    for (alias, keyed) in rows {
        if *keyed {
            let subject = format!("CN={alias},O=Acme");
            env.ok(&[
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
            ]);
        }
        env.ok(&[
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
    let mut add = vec![
        "receiver", "add", "--name", "R", "--admin", OPS, "--as", ADMIN,
    ];
    add.extend_from_slice(flags);
    env.ok(&add);
    env.ok(&[
        "receiver", "trust", "--name", "R", "--alias", renew, "--as", ADMIN,
    ]);
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
    let r = env.json(&[
        "renewal",
        "start",
        "--flow",
        "F",
        "--step",
        "S",
        "--alias",
        renew,
        "--receiver",
        "R",
        "--auto-approve",
        "--bits",
        "2048",
        "--as",
        ADMIN,
        "--json",
    ]);
    let id = r["id"].as_str().expect("renewal id").to_string();
    for _ in 0..5 {
        let tasks = env.json(&["task", "list", "--as", OPS, "--json"]);
        let Some(t) = tasks.as_array().and_then(|t| t.first()).cloned() else {
            break;
        };
        let fp = t["new_certificate"]
            .as_str()
            .expect("certificate")
            .to_string();
        env.ok(&[
            "task",
            "complete",
            t["id"].as_str().expect("task id"),
            "--as",
            OPS,
            "--fingerprint",
            &fp,
        ]);
    }
    env.json(&["renewal", "show", &id, "--json"])
}

/// The aliases of `F/S`'s table in order, with whether each holds a key.
fn table(env: &Env) -> Vec<(String, bool)> {
    env.json(&["signer", "show", "--flow", "F", "--step", "S", "--json"])["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["alias"].as_str().expect("alias").to_string(),
                r["has_key"] == true,
            )
        })
        .collect()
}

/// Issue 11 §2: the store appended the copied row at the end of the Signer Parameters table
/// while the engine placed it right after the old row, so with any row after the renewed alias
/// the consistency check failed and the step could never complete. Tables of 1, 2 and 3 rows,
/// the other rows keyed (dual-signature: a new alias right after the old one) or not (the
/// prepared alias takes the key), the renewed alias in every position: each renewal completes
/// and the table keeps its order.
#[test]
fn adding_an_alias_puts_the_copy_right_after_the_old_row_in_every_table_position() {
    let env_flags = ["--accepts-multiple-signatures"];
    for n in 1..=3usize {
        for keyed in [true, false] {
            if n == 1 && !keyed {
                continue; // one row: nothing else to key
            }
            for pos in 0..n {
                let env = Env::sqlite();
                let names: Vec<String> = (0..n)
                    .map(|i| {
                        if i == pos {
                            "A".to_string()
                        } else {
                            format!("X{i}")
                        }
                    })
                    .collect();
                let rows: Vec<(&str, bool)> = names
                    .iter()
                    .map(|a| (a.as_str(), a == "A" || keyed))
                    .collect();
                let case = format!("{rows:?} renewing A");
                let show = renew_in_table(&env, &rows, "A", &env_flags);
                assert_eq!(show["status"], "completed", "{case}: {show}");
                let after = table(&env);
                let new_alias = show["new_alias"].as_str().expect("new alias").to_string();
                if keyed || n == 1 {
                    assert_eq!(show["procedure"], "dual-signature", "{case}");
                    // The new alias took the old one's place; the others kept theirs.
                    let mut expected: Vec<(String, bool)> =
                        rows.iter().map(|(a, k)| (a.to_string(), *k)).collect();
                    expected[pos] = (new_alias, true);
                    assert_eq!(after, expected, "{case}");
                } else {
                    assert_eq!(show["procedure"], "prepared-second-alias", "{case}");
                    // Same rows in the same order; the key moved from A to the prepared alias.
                    let expected: Vec<(String, bool)> = rows
                        .iter()
                        .map(|(a, _)| (a.to_string(), *a == new_alias))
                        .collect();
                    assert_eq!(after, expected, "{case}");
                }
            }
        }
    }
}

/// Issue 11 §2: with rows `k1`, `k2` (both keyed) and a receiver that accepts several
/// signatures and trusts only `k1`, `renewal start --alias k1 --auto-approve` failed with
/// `inconsistent state: certificate <k2's fingerprint> is not known to renewal …` (the test
/// message is signed by `k2`'s key too). The renewal now runs to completion, and `k2` signs
/// throughout.
#[test]
fn a_table_listing_a_second_keyed_alias_can_be_renewed() {
    on_both(|env| {
        let show = renew_in_table(
            env,
            &[("k1", true), ("k2", true)],
            "k1",
            &["--accepts-multiple-signatures"],
        );
        assert_eq!(show["status"], "completed", "[{}] {show}", env.backend);
        let new_alias = show["new_alias"].as_str().expect("new alias").to_string();
        assert_eq!(
            table(env),
            vec![(new_alias, true), ("k2".to_string(), true)],
            "[{}]",
            env.backend
        );
    });
}

/// Issue 11 §2: a free second alias found on one signer step was treated as prepared for every
/// step using the alias; the step that lacked it kept signing with the old key alone, and the
/// renewal got stuck at the receiver switch. Decided per step now: the developer's "add a
/// second alias" step adds it where it is missing, and the renewal completes.
#[test]
fn a_free_second_alias_on_one_signer_step_is_prepared_for_that_step_only() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], true);
        env.ok(&["flow", "add", "--flow", "F", "--step", "T", "--as", ADMIN]);
        env.ok(&[
            "signer",
            "add-alias",
            "--flow",
            "F",
            "--step",
            "T",
            "--alias",
            ALIAS,
            "--as",
            ADMIN,
        ]);
        let r = env.json(&[
            "renewal",
            "start",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            ALIAS,
            "--receiver",
            "R",
            "--auto-approve",
            "--bits",
            "2048",
            "--as",
            ADMIN,
            "--json",
        ]);
        assert_eq!(r["procedure"], "prepared-second-alias", "{r}");
        assert_eq!(r["new_alias"], PREPARED, "{r}");
        let id = r["id"].as_str().expect("id").to_string();
        let t = env.json(&["task", "list", "--as", OPS, "--json"]);
        let t = &t.as_array().expect("tasks")[0];
        assert_eq!(t["step"], "switch-receiver", "{t}");
        env.ok(&[
            "task",
            "complete",
            t["id"].as_str().expect("task id"),
            "--as",
            OPS,
            "--fingerprint",
            t["new_certificate"].as_str().expect("certificate"),
        ]);
        let show = env.json(&["renewal", "show", &id, "--json"]);
        assert_eq!(show["status"], "completed", "[{}] {show}", env.backend);
        assert_eq!(step_status(&show, "prepare-second-alias")["status"], "done");
        for step in ["S", "T"] {
            let rows: Vec<(String, bool)> = env
                .json(&["signer", "show", "--flow", "F", "--step", step, "--json"])["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|r| {
                    (
                        r["alias"].as_str().unwrap_or("").to_string(),
                        r["has_key"] == true,
                    )
                })
                .collect();
            assert_eq!(
                rows,
                vec![(ALIAS.to_string(), false), (PREPARED.to_string(), true)],
                "[{}] step {step}",
                env.backend
            );
        }
    });
}

/// Issue 11 §2: the guard checked only the receiver named at start although a renewal changes
/// every signer step listing the alias. Signer steps now record the receivers their messages
/// reach (`signer add-receiver`); a renewal whose alias also signs for a receiver it does not
/// switch is refused naming the step and the receiver — and, when the profiles differ, why no
/// one procedure is safe for all. Nothing is started.
#[test]
fn a_renewal_is_refused_when_its_alias_signs_for_a_receiver_it_does_not_switch() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], false);
        env.ok(&[
            "receiver",
            "add",
            "--name",
            "R2",
            "--admin",
            OTHER_OPS,
            "--verifies-multiple-keys",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "receiver", "trust", "--name", "R2", "--alias", ALIAS, "--as", ADMIN,
        ]);
        env.ok(&[
            "receiver",
            "add",
            "--name",
            "R3",
            "--admin",
            OTHER_OPS,
            "--accepts-multiple-signatures",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "receiver", "trust", "--name", "R3", "--alias", ALIAS, "--as", ADMIN,
        ]);
        env.ok(&["flow", "add", "--flow", "F", "--step", "T", "--as", ADMIN]);
        env.ok(&[
            "signer",
            "add-alias",
            "--flow",
            "F",
            "--step",
            "T",
            "--alias",
            ALIAS,
            "--as",
            ADMIN,
        ]);
        // Bad input names what is wrong and records nothing.
        env.refuses(
            &[
                "signer",
                "add-receiver",
                "--flow",
                "F",
                "--step",
                "T",
                "--receiver",
                "nosuch",
                "--as",
                ADMIN,
            ],
            &["unknown receiver", "nosuch"],
        );
        let out = env.ok(&[
            "signer",
            "add-receiver",
            "--flow",
            "F",
            "--step",
            "T",
            "--receiver",
            "R2",
            "--as",
            ADMIN,
        ]);
        assert!(out.contains("R2"), "{out}");
        env.refuses(
            &[
                "signer",
                "add-receiver",
                "--flow",
                "F",
                "--step",
                "T",
                "--receiver",
                "R2",
                "--as",
                ADMIN,
            ],
            &["already sends to receiver", "R2"],
        );
        let shown = env.json(&["signer", "show", "--flow", "F", "--step", "T", "--json"]);
        assert_eq!(shown["receivers"], serde_json::json!(["R2"]), "{shown}");

        let start = [
            "renewal",
            "start",
            "--flow",
            "F",
            "--step",
            "S",
            "--alias",
            ALIAS,
            "--receiver",
            "R",
            "--bits",
            "2048",
            "--as",
            ADMIN,
        ];
        env.refuses(
            &start,
            &["R2 (via signer step F/T)", "no procedure is safe for all"],
        );
        // Same profile, still not switched by this renewal.
        env.ok(&[
            "signer",
            "remove-receiver",
            "--flow",
            "F",
            "--step",
            "T",
            "--receiver",
            "R2",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "signer",
            "add-receiver",
            "--flow",
            "F",
            "--step",
            "T",
            "--receiver",
            "R3",
            "--as",
            ADMIN,
        ]);
        env.refuses(&start, &["R3 (via signer step F/T)", "does not switch"]);
        assert_eq!(
            env.json(&["renewal", "list", "--json"]),
            Value::Array(vec![])
        );
        // Once step T is recorded to send to R, the receiver this renewal switches, it starts.
        env.ok(&[
            "signer",
            "remove-receiver",
            "--flow",
            "F",
            "--step",
            "T",
            "--receiver",
            "R3",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "signer",
            "add-receiver",
            "--flow",
            "F",
            "--step",
            "T",
            "--receiver",
            "R",
            "--as",
            ADMIN,
        ]);
        env.ok(&start);
    });
}

/// `openssl ca` with a CA of its own, in a fresh directory: signs `csr` for exactly
/// `not_before`..`not_after` (a CA whose clock is off, or a certificate issued long ago);
/// returns the chain PEM, leaf first.
fn ca_sign_dated(
    env: &Env,
    csr: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> String {
    let dir = tempfile::tempdir_in(env.dir.path()).expect("CA dir");
    openssl::ca_sign_dated(dir.path(), csr, not_before, not_after)
}

/// `renewal upload-cert` of `chain` as the tenant administrator.
fn upload_cert_args<'a>(id: &'a str, path: &'a str) -> [&'a str; 7] {
    ["renewal", "upload-cert", id, "--cert", path, "--as", ADMIN]
}

/// Regression: an uploaded CA-signed chain was not checked against the clock, so a leaf that
/// had already expired (or would expire before the renewal's remaining steps are due) became
/// the new key. Now the upload is refused naming the certificate and its validity, nothing
/// changes, the request still waits, and a certificate valid long enough is taken.
#[test]
fn upload_cert_refuses_an_expired_or_short_lived_certificate() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], false);
        let id = start_ca_signed(env, &[]);
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:create-key-pair"),
            "--as",
            ADMIN,
        ]);
        let csr = env.ok(&["renewal", "csr", &id]);
        let now = Utc::now();
        let unchanged = Unchanged::new(env, &id);
        let path = env.p("chain.pem");

        let (from, to) = (now - Duration::days(30), now - Duration::days(1));
        std::fs::write(&path, ca_sign_dated(env, &csr, from, to)).expect("write");
        let until = to.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        unchanged.refused(
            &upload_cert_args(&id, &path),
            &["\"CN=acme signer", "has expired", "valid from", &until],
        );

        // The remaining steps of dual-signature are due over more than two weeks.
        let (from, to) = (now - Duration::hours(1), now + Duration::days(3));
        std::fs::write(&path, ca_sign_dated(env, &csr, from, to)).expect("write");
        let until = to.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        unchanged.refused(
            &upload_cert_args(&id, &path),
            &[
                "\"CN=acme signer",
                &until,
                "expires before the renewal's remaining steps are due to be done",
            ],
        );
        assert_eq!(
            env.ok(&["renewal", "csr", &id]),
            csr,
            "the request still waits"
        );

        let (from, to) = (now - Duration::hours(1), now + Duration::days(60));
        std::fs::write(&path, ca_sign_dated(env, &csr, from, to)).expect("write");
        let out = env.ok(&upload_cert_args(&id, &path));
        assert!(out.contains("done: create-key-pair"), "{out}");
    });
}

/// A CA whose clock runs ahead issues a leaf valid only from tomorrow. The upload is taken, but
/// the guard judges the new certificate as a strict receiver would at each step's time: the
/// receiver administrator cannot switch the receiver to trusting only it before it is valid
/// (every message would then be rejected), and the refusal says why and changes nothing.
#[test]
fn certificate_not_yet_valid_is_accepted_but_no_receiver_depends_on_it_early() {
    on_both(|env| {
        setup(env, &["--accepts-multiple-signatures"], false);
        let id = start_ca_signed(env, &[]);
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:create-key-pair"),
            "--as",
            ADMIN,
        ]);
        let csr = env.ok(&["renewal", "csr", &id]);
        let now = Utc::now();
        let chain = ca_sign_dated(env, &csr, now + Duration::days(1), now + Duration::days(90));
        let path = env.p("chain.pem");
        std::fs::write(&path, chain).expect("write");
        let out = env.ok(&upload_cert_args(&id, &path));
        assert!(out.contains("done: create-key-pair"), "{out}");
        // Messages now carry the old and the new signature; the old one still verifies.
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:add-key-new-alias"),
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "task",
            "approve",
            &format!("{id}:add-signer-alias"),
            "--as",
            DEV,
        ]);
        let show = env.json(&["renewal", "show", &id, "--json"]);
        assert_eq!(
            shown_step(&show, "switch-receiver")["status"]["status"],
            "due",
            "{show}"
        );
        let fp = show["new_cert"]
            .as_str()
            .unwrap_or_else(|| panic!("new certificate in {show}"))
            .to_string();
        Unchanged::new(env, &id).refused(
            &[
                "task",
                "complete",
                &format!("{id}:switch-receiver"),
                "--as",
                OPS,
                "--fingerprint",
                &fp,
            ],
            &["switch-receiver", "validity has not begun yet"],
        );
    });
}

/// The aliases `F/S` lists.
fn listed(env: &Env) -> Vec<String> {
    env.json(&["signer", "show", "--flow", "F", "--step", "S", "--json"])["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["alias"].as_str().expect("alias").to_string())
        .collect()
}

/// `dual-signature` names the new key's alias after the old one with the date. Renewing again
/// replaces the date an earlier renewal appended instead of appending another, so the name
/// stays bounded however often the key is renewed; an alias too long to take any date is
/// refused at the start, naming it, with nothing changed — not accepted and then failing at
/// the first approval.
#[test]
fn dual_signature_aliases_do_not_grow_and_a_too_long_one_is_refused_at_start() {
    on_both(|env| {
        let steps = procedure("dual-signature");
        setup(env, &["--accepts-multiple-signatures"], false);
        let date = Utc::now().format("%Y%m%d").to_string();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let old = listed(env);
            assert_eq!(old.len(), 1, "{old:?}");
            let r = env.json(&[
                "renewal",
                "start",
                "--flow",
                "F",
                "--step",
                "S",
                "--alias",
                &old[0],
                "--receiver",
                "R",
                "--procedure",
                "dual-signature",
                "--bits",
                "2048",
                "--as",
                ADMIN,
                "--json",
            ]);
            let id = r["id"].as_str().expect("renewal id").to_string();
            let new = r["new_alias"].as_str().expect("new alias").to_string();
            assert!(
                new == format!("{ALIAS}-{date}") || new == format!("{ALIAS}-{date}-2"),
                "[{}] renewing {:?} named the new key {new:?}",
                env.backend,
                old[0]
            );
            let show = walk(env, &id, &steps, &mut Walk::default());
            assert_eq!(show["status"], "completed", "[{}] {show}", env.backend);
            assert_eq!(listed(env), vec![new.clone()]);
            seen.push(new);
        }
        // Renewed four times in one day: two names, taking turns.
        assert_eq!(seen[0], seen[2]);
        assert_eq!(seen[1], seen[3]);
        assert_ne!(seen[0], seen[1]);

        // A 56-character alias cannot take a date within 64 characters.
        let long = "L".repeat(56);
        env.ok(&[
            "keystore",
            "generate",
            "--alias",
            &long,
            "--bits",
            "2048",
            "--subject",
            "CN=long",
            "--as",
            ADMIN,
        ]);
        // Signed by its own step, for its own receiver (whose administrator is OPS too).
        env.ok(&[
            "receiver",
            "add",
            "--name",
            "R2",
            "--admin",
            OPS,
            "--accepts-multiple-signatures",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "user",
            "add",
            "--email",
            OPS,
            "--role",
            "receiver_admin",
            "--receiver",
            "R2",
        ]);
        env.ok(&["flow", "add", "--flow", "F", "--step", "T", "--as", ADMIN]);
        env.ok(&[
            "signer",
            "add-alias",
            "--flow",
            "F",
            "--step",
            "T",
            "--alias",
            &long,
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "signer",
            "add-receiver",
            "--flow",
            "F",
            "--step",
            "T",
            "--receiver",
            "R2",
            "--as",
            ADMIN,
        ]);
        env.ok(&[
            "receiver", "trust", "--name", "R2", "--alias", &long, "--as", ADMIN,
        ]);
        let before = env.ok(&["renewal", "list", "--json"]);
        let audit = env.ok(&["audit", "verify"]);
        env.refuses(
            &[
                "renewal",
                "start",
                "--flow",
                "F",
                "--step",
                "T",
                "--alias",
                &long,
                "--receiver",
                "R2",
                "--procedure",
                "dual-signature",
                "--bits",
                "2048",
                "--as",
                ADMIN,
            ],
            &[&format!("alias \"{long}\""), "at most 64", "--new-alias"],
        );
        assert_eq!(
            env.ok(&["renewal", "list", "--json"]),
            before,
            "nothing started"
        );
        assert_eq!(env.ok(&["audit", "verify"]), audit, "nothing audited");
        // Named, it renews.
        let r = env.json(&[
            "renewal",
            "start",
            "--flow",
            "F",
            "--step",
            "T",
            "--alias",
            &long,
            "--receiver",
            "R2",
            "--procedure",
            "dual-signature",
            "--bits",
            "2048",
            "--new-alias",
            "L2",
            "--as",
            ADMIN,
            "--json",
        ]);
        let show = walk(
            env,
            r["id"].as_str().expect("id"),
            &steps,
            &mut Walk::default(),
        );
        assert_eq!(show["status"], "completed", "[{}] {show}", env.backend);
    });
}
