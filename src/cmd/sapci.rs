//! `rekey tenant check`, `rekey tenant show` and `rekey tenant sync`: a tenant backed by an SAP
//! Cloud Integration tenant (`[keystores.<tenant>] backend = "sap-ci"`), read live through its
//! API with [`rekey_service::sapci`]. `check` and `show` write nothing; `sync` records the
//! tenant's key pairs in rekey ([`rekey_service::sapci_sync`]). Nothing here writes to the SAP
//! tenant; the client secret is read from its file or variable and never printed.

use anyhow::{Result, bail};
use clap::Args;
use rekey_service::sapci::{Access, KeystoreEntry, Parameter, RoleCheck, SapCiClient};
use serde::Serialize;

use super::state::{print_json, print_table};
use crate::config::{Context, KeystoreSettings};

/// `rekey tenant check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also check the roles an integration flow needs (its parameters, deploy), with this
    /// flow's id.
    #[arg(long, value_name = "ID")]
    pub flow: Option<String>,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// `rekey tenant show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Also show this integration flow's externalized parameters (where its signer's
    /// Private Key Alias values are held).
    #[arg(long, value_name = "ID")]
    pub flow: Option<String>,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// `rekey tenant sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// `rekey tenant sync`: rekey's record of the tenant's keystore brought in line with the SAP
/// tenant; prints what was added, followed, held back for a running renewal, or skipped.
pub async fn sync(ctx: &Context, args: SyncArgs) -> Result<()> {
    let tenant = ctx.tenant().await?;
    let name = tenant.name.as_str().to_string();
    if !matches!(
        ctx.settings.keystores.get(&tenant.name),
        Some(KeystoreSettings::SapCi(_))
    ) {
        bail!(
            "tenant {name:?} is not an SAP Cloud Integration tenant: configure [keystores.{name}] with backend = \"sap-ci\" (see docs/sap-cloud-integration.md)"
        );
    }
    ctx.require_role(
        &tenant,
        &[rekey_engine::Role::TenantAdmin],
        None,
        "recording the SAP tenant's keystore",
    )
    .await?;
    let report = ctx
        .service()
        .await?
        .sync_sap_ci(tenant.id)
        .await
        .map_err(|e| anyhow::anyhow!("tenant {name:?}: {e}"))?;
    if args.json {
        return print_json(&report);
    }
    print!("{}", sync_lines(&name, &report));
    Ok(())
}

/// The lines `rekey tenant sync` and `rekey watch` print for a sync.
pub fn sync_lines(name: &str, r: &rekey_service::sapci_sync::SyncReport) -> String {
    use std::fmt::Write as _;
    let fp = |f: &Option<rekey_model::Fingerprint>| {
        f.map_or_else(|| "none".to_string(), |f| f.to_string())
    };
    let mut out = String::new();
    for d in &r.deleted {
        let _ = writeln!(
            out,
            "{name}: deleted   {} {} (rekey had retired it, or no renewal staged it)",
            d.alias,
            fp(&d.found)
        );
    }
    for d in &r.added {
        let _ = writeln!(out, "{name}: added     {} {}", d.alias, fp(&d.found));
    }
    for d in &r.changed {
        let _ = writeln!(
            out,
            "{name}: changed   {} {} (was {}; changed on the tenant)",
            d.alias,
            fp(&d.found),
            fp(&d.recorded)
        );
    }
    for d in &r.removed {
        let _ = writeln!(
            out,
            "{name}: removed   {} (was {}; gone from the tenant)",
            d.alias,
            fp(&d.recorded)
        );
    }
    for d in &r.held {
        let _ = writeln!(
            out,
            "{name}: HELD      {}: the tenant holds {}, rekey recorded {}; renewal {} touches it, so the record stays until it is cancelled or the tenant is put back",
            d.alias,
            fp(&d.found),
            fp(&d.recorded),
            d.renewal.map(|u| u.to_string()).unwrap_or_default()
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "{name}: skipped   {:?}: {}", s.alias, s.reason);
    }
    let _ = writeln!(
        out,
        "{name}: {} added, {} unchanged, {} changed, {} removed, {} held, {} skipped",
        r.added.len(),
        r.unchanged,
        r.changed.len(),
        r.removed.len(),
        r.held.len(),
        r.skipped.len()
    );
    out
}

/// The client for the `--tenant` tenant, refused unless it is configured as `sap-ci`.
async fn client(ctx: &Context) -> Result<(String, SapCiClient)> {
    let tenant = ctx.tenant().await?;
    let name = tenant.name.as_str().to_string();
    let Some(KeystoreSettings::SapCi(config)) = ctx.settings.keystores.get(&tenant.name) else {
        bail!(
            "tenant {name:?} is not an SAP Cloud Integration tenant: configure [keystores.{name}] with backend = \"sap-ci\" (see docs/sap-cloud-integration.md)"
        );
    };
    let client =
        SapCiClient::new(config.clone()).map_err(|e| anyhow::anyhow!("[keystores.{name}]: {e}"))?;
    Ok((name, client))
}

#[derive(Serialize)]
struct CheckReport<'a> {
    tenant: &'a str,
    url: &'a str,
    usable: bool,
    missing_roles: Vec<&'static str>,
    roles: &'a [RoleCheck],
}

/// `rekey tenant check`: whether the credentials work and which roles are missing; an
/// error (exit 1) when the tenant is not usable.
pub async fn check(ctx: &Context, args: CheckArgs) -> Result<()> {
    let (name, client) = client(ctx).await?;
    let roles = client
        .check(args.flow.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("tenant {name:?}: {e}"))?;
    let missing: Vec<&'static str> = roles
        .iter()
        .filter(|r| matches!(r.access, Access::Forbidden(_)))
        .map(|r| r.role)
        .collect();
    let failed: Vec<String> = roles
        .iter()
        .filter_map(|r| match &r.access {
            Access::Failed(e) => Some(format!("{}: {e}", r.role)),
            _ => None,
        })
        .collect();
    let usable = missing.is_empty() && failed.is_empty();
    if args.json {
        print_json(&CheckReport {
            tenant: &name,
            url: &client.config().url,
            usable,
            missing_roles: missing.clone(),
            roles: &roles,
        })?;
    } else {
        println!(
            "tenant {name:?}: SAP Cloud Integration at {}; the client credentials work",
            client.config().url
        );
        let rows: Vec<Vec<String>> = roles
            .iter()
            .map(|r| {
                let access = match &r.access {
                    Access::Allowed => "ok".to_string(),
                    Access::Forbidden(None) => "MISSING (403)".to_string(),
                    Access::Forbidden(Some(m)) => format!("MISSING (403: {m})"),
                    Access::Failed(e) => format!("FAILED ({e})"),
                    Access::NotChecked(why) => format!("not checked ({why})"),
                };
                vec![r.role.to_string(), access, r.what.to_string()]
            })
            .collect();
        print_table(&["role", "access", "needed to"], &rows);
    }
    if !missing.is_empty() {
        bail!(
            "tenant {name:?} is not usable: the API client lacks the role{} {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        );
    }
    if !failed.is_empty() {
        bail!(
            "tenant {name:?} could not be checked: {}",
            failed.join("; ")
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct ShowReport<'a> {
    tenant: &'a str,
    url: &'a str,
    entries: &'a [KeystoreEntry],
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<FlowReport<'a>>,
}

#[derive(Serialize)]
struct FlowReport<'a> {
    id: &'a str,
    parameters: &'a [Parameter],
}

/// `rekey tenant show`: the tenant's keystore entries and a flow's parameters, read now.
pub async fn show(ctx: &Context, args: ShowArgs) -> Result<()> {
    let (name, client) = client(ctx).await?;
    let fail = |e: rekey_service::sapci::SapCiError| anyhow::anyhow!("tenant {name:?}: {e}");
    let entries = client.keystore_entries().await.map_err(fail)?;
    let parameters = match &args.flow {
        Some(flow) => Some(client.parameters(flow).await.map_err(fail)?),
        None => None,
    };
    if args.json {
        return print_json(&ShowReport {
            tenant: &name,
            url: &client.config().url,
            entries: &entries,
            flow: args
                .flow
                .as_deref()
                .zip(parameters.as_deref())
                .map(|(id, p)| FlowReport { id, parameters: p }),
        });
    }
    let day = |d: Option<chrono::DateTime<chrono::Utc>>| {
        d.map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.alias.clone(),
                e.kind.clone(),
                e.owner.clone().unwrap_or_default(),
                day(e.not_before),
                day(e.not_after),
                e.fingerprint.map(|f| f.to_colon_hex()).unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "alias",
            "type",
            "owner",
            "not before",
            "not after",
            "sha-256",
        ],
        &rows,
    );
    if let (Some(flow), Some(parameters)) = (&args.flow, &parameters) {
        println!();
        println!(
            "integration flow {flow:?}, externalized parameters (designtime, active version):"
        );
        // A value naming a keystore entry (a signer alias) is shown with that entry.
        let rows: Vec<Vec<String>> = parameters
            .iter()
            .map(|p| {
                let entry = entries
                    .iter()
                    .find(|e| e.alias == p.value)
                    .map(|e| format!("{}, not after {}", e.kind, day(e.not_after)))
                    .unwrap_or_default();
                vec![
                    p.key.clone(),
                    p.value.clone(),
                    p.data_type.clone().unwrap_or_default(),
                    entry,
                ]
            })
            .collect();
        print_table(&["parameter", "value", "type", "keystore entry"], &rows);
    }
    Ok(())
}
