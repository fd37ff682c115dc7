//! The harness the integration tests in `tests/` share: the `rekey` binary with nothing
//! inherited from the caller's environment, a fresh data directory (and, with PostgreSQL, a
//! fresh database) per test run on both back ends, the store fixtures, the tests' fixed clock,
//! a tenant with its administrator, a throwaway CA ([`openssl`]), `rekey serve` as a process
//! ([`serve`]) and an SMTP sink ([`smtp`]).
//!
//! Each test file includes it with `mod common;` and uses a part of it.

#![allow(dead_code)] // each test file uses a part

pub mod openssl;
pub mod serve;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, TimeZone, Utc};
use rekey_model::{Email, Grant, TenantName};
use rekey_store::Store;
use rekey_testdb::{PgDatabase, TestDb};
use serde_json::Value;
use uuid::Uuid;

/// Names the PostgreSQL server the tests also run on, when set.
pub const PG_ENV: &str = "REKEY_TEST_POSTGRES_URL";

/// Error type of the `async` set-up helpers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The settings the binary reads from the environment; a test sets the ones it means.
const REKEY_VARS: [&str; 16] = [
    "REKEY_CONFIG",
    "REKEY_DATA_DIR",
    "REKEY_DATABASE_URL",
    "REKEY_KEK",
    "REKEY_KEK_FILE",
    "REKEY_TENANT",
    "REKEY_MAIL_TRANSPORT",
    "REKEY_MAIL_HOST",
    "REKEY_SERVER_LISTEN",
    "REKEY_SERVER_BASE_URL",
    "REKEY_SERVER_API_TOKEN_DAYS",
    "REKEY_SERVER_METRICS_TOKEN",
    "REKEY_SERVER_METRICS_NAMES",
    "REKEY_RENEWAL_CLOCK_SKEW_MINUTES",
    "REKEY_LOG_FORMAT",
    "REKEY_LOG_LEVEL",
];

/// The built binary, with none of its `REKEY_*` settings inherited from the caller.
pub fn rekey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rekey"));
    for v in REKEY_VARS {
        c.env_remove(v);
    }
    c
}

/// A committed store fixture (`crates/store/tests/fixtures/<name>`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/store/tests/fixtures")
        .join(name)
}

/// [`fixture`] as a command-line argument.
pub fn fx(name: &str) -> String {
    fixture(name).display().to_string()
}

/// The tests' fixed "now": 2026-11-02 09:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0)
        .single()
        .expect("date")
}

/// Tenant `acme` with `admin` as its tenant administrator: (tenant, user).
pub async fn tenant_with_admin(db: &TestDb, admin: &str) -> Result<(Uuid, Uuid), BoxError> {
    let t = db
        .store
        .create_tenant(&TenantName::parse("acme")?, "test")
        .await?;
    let u = db.store.add_user(&Email::parse(admin)?, "test").await?;
    db.store
        .grant(u.id, Grant::TenantAdmin { tenant: t.id }, "test")
        .await?;
    Ok((t.id.as_uuid(), u.id.as_uuid()))
}

/// Tenant `acme` as the CLI builds it: its administrator (who adds the rest), key `A` listed by
/// signer step `F`/`S`, and optionally receiver `R` trusting it. One list of commands for the
/// tests and benchmarks that need a whole tenant, run however the caller runs the binary.
pub struct Acme<'a> {
    /// The tenant administrator's address.
    pub admin: &'a str,
    /// RSA size of key `A`.
    pub bits: &'a str,
    /// Days its certificate is valid, or the CLI's default.
    pub days: Option<&'a str>,
    /// Its certificate's subject.
    pub subject: &'a str,
    /// Receiver `R`, trusting key `A`: its administrator's address and profile flag
    /// (`--accepts-multiple-signatures` or `--verifies-multiple-keys`).
    pub receiver: Option<(&'a str, &'a str)>,
}

impl Default for Acme<'_> {
    fn default() -> Self {
        Acme {
            admin: "admin@acme.example",
            bits: "2048",
            days: None,
            subject: "CN=acme signer,O=Acme",
            receiver: Some(("ops@r.example", "--accepts-multiple-signatures")),
        }
    }
}

impl Acme<'_> {
    /// The commands, from `init`, each without `--data-dir` (and without `--tenant`: the CLI
    /// needs none while there is one tenant).
    pub fn commands(&self) -> Vec<Vec<String>> {
        let admin = self.admin;
        let mut key = vec!["keystore", "generate", "--alias", "A", "--bits", self.bits];
        if let Some(days) = self.days {
            key.extend(["--days", days]);
        }
        key.extend(["--subject", self.subject, "--as", admin]);
        let mut cmds: Vec<Vec<&str>> = vec![
            vec!["init"],
            vec!["tenant", "add", "acme"],
            vec!["user", "add", "--email", admin, "--role", "tenant_admin"],
            key,
            vec!["flow", "add", "--flow", "F", "--step", "S", "--as", admin],
            vec![
                "signer",
                "add-alias",
                "--flow",
                "F",
                "--step",
                "S",
                "--alias",
                "A",
                "--as",
                admin,
            ],
        ];
        if let Some((ops, profile)) = self.receiver {
            cmds.push(vec![
                "receiver", "add", "--name", "R", "--admin", ops, profile, "--as", admin,
            ]);
            cmds.push(vec![
                "receiver", "trust", "--name", "R", "--alias", "A", "--as", admin,
            ]);
        }
        cmds.into_iter()
            .map(|c| c.into_iter().map(String::from).collect())
            .collect()
    }
}

/// Runs `args` on data directory `data`: its standard output, or an error naming the command
/// and its standard error (for benchmarks, which report rather than panic).
pub fn try_in(data: &Path, args: &[&str]) -> Result<String, BoxError> {
    let o = rekey().arg("--data-dir").arg(data).args(args).output()?;
    if !o.status.success() {
        return Err(format!("rekey {args:?}: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The mails the file transport wrote to `data`'s outbox directory, with quoted-printable
/// soft line breaks, `=3D` and `=20` undone so that a test can look for what a reader sees.
pub fn outbox_mails(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("outbox"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|t| {
                    t.replace("=\r\n", "")
                        .replace("=3D", "=")
                        .replace("=20", " ")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `args` on data directory `data`, failing the test on an error.
pub fn ok_in(data: &Path, args: &[String]) -> String {
    let o = rekey()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("runs the rekey binary");
    assert!(
        o.status.success(),
        "rekey {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A data directory with [`Acme`]'s default tenant, key `A` valid `days` days.
pub fn tenant_with_key(data: &Path, days: &str) {
    let acme = Acme {
        days: Some(days),
        ..Acme::default()
    };
    for args in acme.commands() {
        ok_in(data, &args);
    }
}

/// A fresh data directory, and with PostgreSQL a fresh database it points at.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pub backend: &'static str,
    _pg: Option<PgDatabase>,
}

impl Env {
    pub fn sqlite() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: None,
            backend: "sqlite",
            _pg: None,
        }
    }

    pub fn postgres(server: &str) -> Env {
        let pg = runtime()
            .block_on(PgDatabase::create(server, "rekey_cli"))
            .unwrap_or_else(|e| panic!("creates a test database on {server}: {e}"));
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: Some(pg.url().to_string()),
            backend: "postgres",
            _pg: Some(pg),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The binary with this environment's data directory (and database), nothing inherited
    /// that could point it elsewhere.
    pub fn cmd(&self) -> Command {
        let mut c = rekey();
        c.env("REKEY_DATA_DIR", self.data()).env("USER", "tester");
        if let Some(url) = &self.database_url {
            c.env("REKEY_DATABASE_URL", url);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .expect("runs the rekey binary")
    }

    /// Runs and asserts success; returns standard output.
    /// Runs each of `cmds` ([`Acme::commands`]) with [`Env::ok`].
    pub fn ok_all(&self, cmds: &[Vec<String>]) {
        for c in cmds {
            self.ok(&c.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "[{}] rekey {args:?}: {}",
            self.backend,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and asserts success; returns standard output read as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("[{}] rekey {args:?}: not JSON ({e}): {out}", self.backend))
    }

    /// Runs and asserts a one-line failure with exit `code` containing every needle.
    pub fn fails(&self, args: &[&str], code: i32, needles: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            o.status.code(),
            Some(code),
            "[{}] rekey {args:?}: {err}",
            self.backend
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        for n in needles {
            assert!(err.contains(n), "[{}] {n:?} not in {err:?}", self.backend);
        }
        err
    }

    /// Runs and asserts a refusal: exit 1, one line on stderr starting `rekey:` and containing
    /// every needle, nothing on stdout.
    pub fn refuses(&self, args: &[&str], needles: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            o.status.code(),
            Some(1),
            "[{}] rekey {args:?} should be refused: {err}",
            self.backend
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(err.starts_with("rekey: "), "{err:?}");
        for n in needles {
            assert!(
                err.contains(n),
                "[{}] rekey {args:?}: {n:?} not in {err:?}",
                self.backend
            );
        }
        assert!(
            o.stdout.is_empty(),
            "refused, yet printed: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        err
    }

    /// The store the binary uses, for looking behind its back.
    pub fn store(&self, rt: &tokio::runtime::Runtime) -> Store {
        let url = match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data().join("rekey.db").display()
            ),
        };
        rt.block_on(Store::open(&url)).expect("opens the store")
    }
}

/// Runs `body` on SQLite, then on PostgreSQL when configured.
pub fn on_both(body: impl Fn(&Env)) {
    body(&Env::sqlite());
    match std::env::var(PG_ENV) {
        Ok(server) => body(&Env::postgres(&server)),
        Err(_) => eprintln!("skipping PostgreSQL: {PG_ENV} not set"),
    }
}

/// A current-thread runtime for the few `async` calls a synchronous test makes.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
