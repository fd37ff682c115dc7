//! `rekey init`, `rekey tenant`, `rekey user` and `rekey audit`: the tenant state in the store,
//! from the shell; and the helpers the other state commands ([`super::keystore`],
//! [`super::flow`], [`super::receiver`]) share.
//!
//! Every change goes through `rekey_store`, in one transaction with its audit entry, so a
//! refused command has changed nothing. Errors are one line naming what was refused.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rekey_model::{Email, FlowName, Grant, ReceiverId, ReceiverName, Role, TenantName, TokenId};
use rekey_store::{Kek, StoreError, audit, flows, receivers, users};
use serde::Serialize;

use crate::config::{self, CONFIG_FILE_NAME, Context, GlobalArgs, KekSource, Settings};

/// Exit code of `rekey audit verify` when the audit log's hash chain is broken (as `rekey
/// verify` uses for a rejected message): 1 stays "could not check".
pub const EXIT_TAMPERED: u8 = 3;

/// Runs a future to completion on a fresh multi-threaded runtime (the CLI is synchronous).
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(f))
}

/// Opens the context for `global`, runs `f` with it, and reports tenants by name rather than
/// id in its errors.
pub(crate) fn with_ctx(
    global: &GlobalArgs,
    f: impl AsyncFnOnce(&Context) -> Result<()>,
) -> Result<ExitCode> {
    block_on(async {
        let ctx = config::open_context(global).await?;
        let result = f(&ctx).await;
        let _ = ctx.store.clone().close().await;
        result.map_err(|e| ctx.explain(e))?;
        Ok(ExitCode::SUCCESS)
    })?
}

/// Prints `v` as pretty JSON on standard output.
pub(crate) fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Reads a file, naming it and `what` it is meant to be on failure.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// A date as people read it in lists.
pub(crate) fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Prints rows as left-aligned columns under a header.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                out.push_str(&c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// `--json` for list and show commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonArg {
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

// --- init ---

/// `rekey init`.
#[derive(Debug, Args)]
#[command(
    after_help = "Creates the data directory (--data-dir, default ./rekey-data), a configuration \
file rekey.toml in it (unless one exists or --config names one), the key-encryption key file \
kek.key (mode 0600; an existing key file is never overwritten) and the database with its \
migrations. Running it again changes nothing and reports what it found."
)]
pub struct InitArgs {}

/// The configuration file `rekey init` writes: every key commented out at its default.
/// The configuration `rekey init` writes: the built-in defaults (`config/default.toml`, which
/// lists every key with what it means, SMTP included) with every setting commented out, so the
/// file names every key there is and changes nothing until a line is uncommented.
fn init_config() -> String {
    let mut out = String::from(
        "# rekey configuration, written by `rekey init`. Every setting is optional: each key \
         is listed\n# below with its default, commented out; uncomment a line to change it. \
         REKEY_... environment\n# variables override this file; unknown keys are refused.\n\n",
    );
    // The defaults' own header (the layers) is said above; its body follows.
    let body = config::DEFAULT_TOML
        .lines()
        .skip_while(|l| l.starts_with('#') || l.trim().is_empty());
    for line in body {
        let setting = line.split_once('=').is_some_and(|(k, _)| {
            let k = k.trim();
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        if setting {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `rekey init`.
pub fn init(global: &GlobalArgs, _args: InitArgs) -> Result<ExitCode> {
    block_on(init_async(global))?
}

async fn init_async(global: &GlobalArgs) -> Result<ExitCode> {
    let settings = Settings::load(global)?;
    let dir = &settings.data_dir;
    if dir.is_dir() {
        println!("found data directory {}", dir.display());
    } else {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        println!("created data directory {}", dir.display());
    }

    match &settings.config_file {
        Some(f) => println!("found configuration file {}", f.display()),
        None => {
            let path = dir.join(CONFIG_FILE_NAME);
            write_new(&path, init_config().as_bytes(), false)?;
            println!("created configuration file {}", path.display());
        }
    }

    match &settings.kek {
        KekSource::File(path) => {
            if path.exists() {
                let kek = Kek::from_file(path)?;
                println!(
                    "found key-encryption key {} (id {})",
                    path.display(),
                    kek.id()
                );
            } else {
                let kek = Kek::generate_file(path)?;
                println!(
                    "created key-encryption key {} (mode 0600, id {}); back it up: without it no \
                     stored private key can be read",
                    path.display(),
                    kek.id()
                );
            }
        }
        KekSource::Env => {
            let kek = settings.load_kek()?;
            println!(
                "using the key-encryption key from {} (id {})",
                rekey_store::kek::KEK_ENV_VAR,
                kek.id()
            );
        }
    }

    let existed = settings.sqlite_path().map(|p| p.exists());
    let store = config::open_store(&settings).await?;
    let m = store.migration().clone();
    let what = match existed {
        Some(false) => "created",
        _ if m.from == 0 => "created",
        _ => "found",
    };
    let applied = if m.applied.is_empty() {
        "schema up to date".to_string()
    } else {
        format!(
            "applied migration(s) {}",
            m.applied
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    println!(
        "{what} database {} (schema version {}; {applied})",
        settings.database_url, m.to
    );
    let tenants = store.tenants().await?;
    if tenants.is_empty() {
        println!("next: rekey tenant add NAME");
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a new file (never replacing one unless `force`); `mode 0600` is not needed for the
/// files written here (private keys never leave the store as files).
pub(crate) fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} already exists; use --force to overwrite it",
                path.display()
            )
        } else {
            anyhow!("cannot write {}: {e}", path.display())
        }
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

// --- tenant ---

/// `rekey tenant ...`.
#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant.
    Add {
        /// Its unique name.
        name: String,
    },
    /// List the tenants.
    List(JsonArg),
    /// Connect to the tenant's SAP Cloud Integration tenant ([keystores.<tenant>] backend =
    /// "sap-ci"): whether the client credentials work and which API roles are missing.
    /// Exits non-zero when the tenant is not usable.
    Check(super::sapci::CheckArgs),
    /// Read the tenant's SAP Cloud Integration keystore entries (and with --flow an
    /// integration flow's externalized parameters) live from the tenant.
    Show(super::sapci::ShowArgs),
    /// Record the key pairs of the tenant's SAP Cloud Integration keystore in rekey as the
    /// tenant holds them (the watch does this on every pass). A key changed or deleted there
    /// by hand is followed, unless a running renewal touches its alias: then it is reported
    /// and left. Takes the tenant administrator role (--as).
    Sync(super::sapci::SyncArgs),
}

/// `rekey tenant ...`.
pub fn tenant(global: &GlobalArgs, cmd: TenantCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        match cmd {
            TenantCmd::Add { name } => {
                let name = TenantName::parse(&name)?;
                let t = ctx.store.create_tenant(&name, &ctx.actor).await?;
                println!("created tenant {:?} (id {})", t.name.as_str(), t.id);
            }
            TenantCmd::List(j) => {
                let all = ctx.store.tenants().await?;
                if j.json {
                    print_json(&all)?;
                } else {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|t| vec![t.name.to_string(), t.id.to_string(), day(t.created_at)])
                        .collect();
                    print_table(&["tenant", "id", "created"], &rows);
                }
            }
            TenantCmd::Check(args) => super::sapci::check(ctx, args).await?,
            TenantCmd::Show(args) => super::sapci::show(ctx, args).await?,
            TenantCmd::Sync(args) => super::sapci::sync(ctx, args).await?,
        }
        Ok(())
    })
}

// --- user ---

/// `rekey user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Register a user (if new) and give them a role: tenant_admin or integration_developer of
    /// the tenant (--tenant), receiver_admin of a receiver (--receiver), or signer of a flow
    /// (--flow; a system that signs through `POST /api/sign` with the user's token).
    Add(UserAddArgs),
    /// List the users and their roles.
    List(JsonArg),
    /// Create an API token for a user; it is printed once, on standard output. It expires
    /// after [server] api_token_days (default 90) unless --days says otherwise.
    Token(UserTokenArgs),
    /// List a user's API tokens (ids, labels, expiry; never the secrets).
    Tokens(UserTokensArgs),
    /// Revoke an API token by id (from `rekey user tokens`); it stops working at once.
    TokenRevoke(TokenRevokeArgs),
    /// Take a role from a user (a tenant administrator of the role's tenant, --as EMAIL).
    RevokeRole(UserAddArgs),
    /// Remove a user: their roles, API tokens, web sessions and unused email links end at once
    /// (a tenant administrator of every tenant they hold a role in, --as EMAIL).
    Remove(UserEmailArgs),
}

/// `rekey user tokens`.
#[derive(Debug, Args)]
pub struct UserTokensArgs {
    /// The user's email address.
    #[arg(long)]
    pub email: String,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// `rekey user token-revoke`.
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id, from `rekey user tokens`.
    #[arg(long)]
    pub id: String,
}

/// `rekey user remove`.
#[derive(Debug, Args)]
pub struct UserEmailArgs {
    /// The user's email address.
    #[arg(long)]
    pub email: String,
}

/// `rekey user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The user's email address.
    #[arg(long)]
    pub email: String,
    /// tenant_admin, integration_developer, receiver_admin or signer.
    #[arg(long)]
    pub role: String,
    /// The receiver, for receiver_admin.
    #[arg(long, value_name = "NAME")]
    pub receiver: Option<String>,
    /// The flow, for signer: its holder may sign as that flow's steps and do nothing else.
    #[arg(long, value_name = "NAME")]
    pub flow: Option<String>,
}

/// `rekey user token`.
#[derive(Debug, Args)]
pub struct UserTokenArgs {
    /// The user's email address.
    #[arg(long)]
    pub email: String,
    /// A label to recognise the token by.
    #[arg(long, default_value = "cli")]
    pub label: String,
    /// Days until the token expires (0: until revoked); default [server] api_token_days.
    #[arg(long)]
    pub days: Option<u32>,
}

#[derive(Serialize)]
struct GrantView {
    role: Role,
    tenant: Option<String>,
    receiver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<String>,
}

#[derive(Serialize)]
struct UserView {
    id: String,
    email: String,
    roles: Vec<GrantView>,
    created_at: DateTime<Utc>,
}

impl GrantView {
    fn describe(&self) -> String {
        if let (Some(f), Some(t)) = (&self.flow, &self.tenant) {
            return format!("{} of flow {f:?} (tenant {t:?})", self.role);
        }
        match (&self.receiver, &self.tenant) {
            (Some(r), Some(t)) => format!("{} of receiver {r:?} (tenant {t:?})", self.role),
            (Some(r), None) => format!("{} of receiver {r:?}", self.role),
            (None, Some(t)) => format!("{} of tenant {t:?}", self.role),
            (None, None) => self.role.to_string(),
        }
    }
}

/// `rekey user ...`.
pub fn user(global: &GlobalArgs, cmd: UserCmd) -> Result<ExitCode> {
    with_ctx(global, async |ctx| {
        match cmd {
            UserCmd::Add(a) => user_add(ctx, a).await?,
            UserCmd::List(j) => user_list(ctx, j.json).await?,
            UserCmd::Token(a) => {
                let email = Email::parse(&a.email).context("--email")?;
                let u = ctx.store.user_by_email(&email).await?;
                let (days, field) = match a.days {
                    Some(d) => (Some(d), "--days"),
                    None => (
                        ctx.settings.server.api_token_days,
                        "[server] api_token_days",
                    ),
                };
                let expires = match days.filter(|d| *d > 0) {
                    None => None,
                    Some(d) => Some(
                        chrono::Duration::try_days(d.into())
                            .and_then(|d| rekey_store::db::now().checked_add_signed(d))
                            .with_context(|| format!("{field} {d} is too far in the future"))?,
                    ),
                };
                let t = ctx
                    .store
                    .create_token_expiring(u.id, &a.label, expires, &ctx.actor)
                    .await?;
                let until = match expires {
                    Some(e) => format!("expires {}", e.format("%Y-%m-%d %H:%M UTC")),
                    None => "never expires".to_string(),
                };
                eprintln!(
                    "API token {} for {email} ({until}): shown once, store it now (only its SHA-256 is kept)",
                    t.id
                );
                println!("{}", t.token.as_str());
            }
            UserCmd::Tokens(a) => user_tokens(ctx, a).await?,
            UserCmd::TokenRevoke(a) => {
                let id: TokenId = a.id.parse().context("--id")?;
                ctx.store.revoke_token(id, &ctx.actor).await?;
                println!("revoked API token {id}");
            }
            UserCmd::RevokeRole(a) => user_revoke_role(ctx, a).await?,
            UserCmd::Remove(a) => user_remove(ctx, a).await?,
        }
        Ok(())
    })
}

async fn user_tokens(ctx: &Context, a: UserTokensArgs) -> Result<()> {
    let email = Email::parse(&a.email).context("--email")?;
    let u = ctx.store.user_by_email(&email).await?;
    let tokens = ctx.store.tokens(u.id).await?;
    if a.json {
        return print_json(&tokens);
    }
    let now = rekey_store::db::now();
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let state = match (t.revoked_at, t.expires_at) {
                (Some(r), _) => format!("revoked {}", day(r)),
                (None, Some(e)) if e <= now => format!("expired {}", day(e)),
                (None, Some(e)) => format!("expires {}", day(e)),
                (None, None) => "never expires".to_string(),
            };
            vec![t.id.to_string(), t.label.clone(), day(t.created_at), state]
        })
        .collect();
    print_table(&["id", "label", "created", "state"], &rows);
    Ok(())
}

/// The tenant a grant is held in.
async fn grant_tenant(ctx: &Context, g: &Grant) -> Result<rekey_model::TenantId> {
    Ok(match g {
        Grant::TenantAdmin { tenant }
        | Grant::IntegrationDeveloper { tenant }
        | Grant::Signer { tenant, .. } => *tenant,
        Grant::ReceiverAdmin { receiver } => ctx.store.receiver_by_id(*receiver).await?.tenant,
    })
}

async fn user_revoke_role(ctx: &Context, a: UserAddArgs) -> Result<()> {
    let email = Email::parse(&a.email).context("--email")?;
    let (grant, scope) = parse_grant(ctx, &a).await?;
    let tenant = ctx.store.tenant(grant_tenant(ctx, &grant).await?).await?;
    ctx.require_role(&tenant, &[Role::TenantAdmin], None, "taking a role")
        .await?;
    let u = ctx.store.user_by_email(&email).await?;
    let role = grant.role();
    ctx.store.revoke(u.id, grant, &ctx.actor).await?;
    println!("user {email}: no longer {role} of {scope}");
    Ok(())
}

async fn user_remove(ctx: &Context, a: UserEmailArgs) -> Result<()> {
    let email = Email::parse(&a.email).context("--email")?;
    let u = ctx.store.user_by_email(&email).await?;
    // The caller must administer every tenant the user holds a role in; a user without roles
    // is removed by whoever runs the CLI (like `rekey user add`).
    let mut seen = Vec::new();
    for g in &u.grants {
        let t = grant_tenant(ctx, g).await?;
        if !seen.contains(&t) {
            seen.push(t);
            let tenant = ctx.store.tenant(t).await?;
            ctx.require_role(&tenant, &[Role::TenantAdmin], None, "removing a user")
                .await?;
        }
    }
    ctx.store.remove_user(u.id, &ctx.actor).await?;
    println!(
        "removed user {email}: {} role(s) taken; API tokens, web sessions and email links ended",
        u.grants.len()
    );
    Ok(())
}

/// The grant `--role` (and `--receiver`) name in the context's tenant, and how to say it.
async fn parse_grant(ctx: &Context, a: &UserAddArgs) -> Result<(Grant, String)> {
    let role: Role = a.role.replace('-', "_").parse().context("--role")?;
    if a.flow.is_some() && role != Role::Signer {
        bail!("--flow only goes with --role signer");
    }
    Ok(match role {
        Role::Signer => {
            let Some(f) = &a.flow else {
                bail!("--role signer needs --flow NAME");
            };
            if a.receiver.is_some() {
                bail!("--receiver only goes with --role receiver_admin");
            }
            let tenant = ctx.tenant().await?;
            let name = FlowName::parse(f).context("--flow")?;
            let flow = ctx.store.flow(tenant.id, &name).await?;
            (
                Grant::Signer {
                    tenant: tenant.id,
                    flow: flow.id,
                },
                format!(
                    "flow {:?} (tenant {:?})",
                    name.as_str(),
                    tenant.name.as_str()
                ),
            )
        }
        Role::ReceiverAdmin => {
            let Some(r) = &a.receiver else {
                bail!("--role receiver_admin needs --receiver NAME");
            };
            let tenant = ctx.tenant().await?;
            let name = ReceiverName::parse(r).context("--receiver")?;
            let rec = ctx.store.receiver(tenant.id, &name).await?;
            (
                Grant::ReceiverAdmin { receiver: rec.id },
                format!(
                    "receiver {:?} (tenant {:?})",
                    name.as_str(),
                    tenant.name.as_str()
                ),
            )
        }
        Role::TenantAdmin | Role::IntegrationDeveloper => {
            if a.receiver.is_some() {
                bail!("--receiver only goes with --role receiver_admin");
            }
            let tenant = ctx.tenant().await?;
            let grant = if role == Role::TenantAdmin {
                Grant::TenantAdmin { tenant: tenant.id }
            } else {
                Grant::IntegrationDeveloper { tenant: tenant.id }
            };
            (grant, format!("tenant {:?}", tenant.name.as_str()))
        }
    })
}

async fn user_add(ctx: &Context, a: UserAddArgs) -> Result<()> {
    let email = Email::parse(&a.email).context("--email")?;
    let (grant, scope) = parse_grant(ctx, &a).await?;
    let role = grant.role();
    // Registering and granting commit together: a refused grant leaves no new user behind.
    let txn = ctx.store.begin().await?;
    let (user, new) = match users::by_email(&txn, &email).await {
        Ok(u) => (u, false),
        Err(StoreError::UnknownUser(_)) => (users::add(&txn, &email, &ctx.actor).await?, true),
        Err(e) => return Err(e.into()),
    };
    users::grant(&txn, user.id, grant, &ctx.actor).await?;
    txn.commit().await?;
    println!(
        "{} user {email}: {role} of {scope}",
        if new { "added" } else { "updated" }
    );
    Ok(())
}

async fn user_list(ctx: &Context, json: bool) -> Result<()> {
    let tenants: HashMap<_, _> = ctx
        .store
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name.to_string()))
        .collect();
    let mut receiver_names: HashMap<ReceiverId, (String, String)> = HashMap::new();
    let mut views = Vec::new();
    for u in ctx.store.users().await? {
        let mut roles = Vec::new();
        for g in &u.grants {
            roles.push(match g {
                Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => {
                    GrantView {
                        role: g.role(),
                        tenant: tenants.get(tenant).cloned(),
                        receiver: None,
                        flow: None,
                    }
                }
                Grant::Signer { tenant, flow } => {
                    let name = flows::flows(ctx.store.db(), *tenant)
                        .await?
                        .into_iter()
                        .find(|f| f.id == *flow)
                        .map(|f| f.name.to_string())
                        .unwrap_or_else(|| flow.to_string());
                    GrantView {
                        role: g.role(),
                        tenant: tenants.get(tenant).cloned(),
                        receiver: None,
                        flow: Some(name),
                    }
                }
                Grant::ReceiverAdmin { receiver } => {
                    if !receiver_names.contains_key(receiver) {
                        let r = receivers::by_id(ctx.store.db(), *receiver).await?;
                        let t = tenants.get(&r.tenant).cloned().unwrap_or_default();
                        receiver_names.insert(*receiver, (r.name.to_string(), t));
                    }
                    let (r, t) = receiver_names.get(receiver).cloned().unwrap_or_default();
                    GrantView {
                        role: g.role(),
                        tenant: Some(t),
                        receiver: Some(r),
                        flow: None,
                    }
                }
            });
        }
        views.push(UserView {
            id: u.id.to_string(),
            email: u.email.to_string(),
            roles,
            created_at: u.created_at,
        });
    }
    if json {
        return print_json(&views);
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let roles = v
                .roles
                .iter()
                .map(GrantView::describe)
                .collect::<Vec<_>>()
                .join("; ");
            vec![v.email.clone(), roles]
        })
        .collect();
    print_table(&["user", "roles"], &rows);
    Ok(())
}

// --- audit ---

/// `rekey audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the audit log's hash chain: exit 0 when intact, 3 naming the first bad entry.
    Verify,
    /// Show the newest audit entries (who did what, when), oldest of them first.
    List {
        /// How many of the newest entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the result as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
}

/// `rekey audit ...`.
pub fn audit(global: &GlobalArgs, cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::List { limit, json } => block_on(async {
            let settings = Settings::load(global)?;
            if let Some(db) = settings.sqlite_path()
                && !db.exists()
            {
                bail!(
                    "database {} does not exist; run `rekey init` first",
                    db.display()
                );
            }
            let store = config::open_store(&settings).await?;
            let all = audit::entries(store.db(), 0, i64::MAX as u64).await;
            store.close().await?;
            let all = all?;
            let newest = &all[all.len().saturating_sub(limit)..];
            if json {
                print_json(newest)?;
            } else {
                let rows: Vec<Vec<String>> = newest
                    .iter()
                    .map(|e| {
                        vec![
                            e.seq.to_string(),
                            e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            e.actor.clone(),
                            e.action.clone(),
                            e.subject.clone(),
                            e.before.clone(),
                            e.after.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "seq", "at (UTC)", "actor", "action", "subject", "before", "after",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        })?,
        AuditCmd::Verify => block_on(async {
            // No KEK needed to check the chain: open the database only.
            let settings = Settings::load(global)?;
            if let Some(db) = settings.sqlite_path()
                && !db.exists()
            {
                bail!(
                    "database {} does not exist; run `rekey init` first",
                    db.display()
                );
            }
            let store = config::open_store(&settings).await?;
            let result = audit::verify(store.db()).await;
            store.close().await?;
            match result {
                Ok(s) => {
                    println!("audit log intact ({} entries)", s.entries);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ StoreError::AuditTampered { .. }) => {
                    eprintln!("rekey: {e}");
                    Ok(ExitCode::from(EXIT_TAMPERED))
                }
                Err(e) => Err(anyhow!(e).context("cannot check the audit log")),
            }
        })?,
    }
}
