//! Integration flows and their CMS/PKCS#7 signer steps: step options (detached, Base64) and
//! the ordered Signer Parameters table (alias, digest, include certificates, include signing
//! time). Also alias usage (which steps list an alias) and signing a payload exactly as a step
//! would ([`sign_for_step`]).
//!
//! A row names an alias, not a keystore entry: the alias may have no key (a prepared second
//! alias); such rows are skipped when signing.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, DigestAlg, KeyBackend, KeyHandle, SignOptions, SignerSpec};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::audit::{self, AuditRecord};
use crate::db::now;
use crate::entity::{flow, receiver, signer_row, signer_step, signer_step_receiver};
use crate::error::{Result, StepRef, StoreError};
use crate::kek::Kek;
use crate::keystore::{self, KeystoreEntry};
use crate::tenants;
use rekey_model::{Alias, FlowId, FlowName, ReceiverId, ReceiverName, StepId, StepName, TenantId};

/// Options of a signer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct StepOptions {
    /// Content left out of the SignedData (sent separately).
    pub detached: bool,
    /// Output Base64 text instead of DER.
    pub base64: bool,
}

/// One row's parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignerParams {
    /// The keystore alias whose key signs.
    pub alias: Alias,
    /// Digest (SHA-256/384/512 with RSA).
    pub digest: DigestAlg,
    /// Put the signer's chain into the message.
    pub include_certs: bool,
    /// Sign a signingTime attribute.
    pub include_signing_time: bool,
}

/// A row of a Signer Parameters table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignerRow {
    /// Order in the table (ascending; gaps are allowed).
    pub position: i32,
    /// The row's parameters.
    #[serde(flatten)]
    pub params: SignerParams,
}

/// A signer step with its options and rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignerStep {
    /// Its id.
    pub id: StepId,
    /// The flow it belongs to.
    pub flow: FlowName,
    /// Its name.
    pub name: StepName,
    /// Its options.
    pub options: StepOptions,
    /// The Signer Parameters table, in order.
    pub rows: Vec<SignerRow>,
    /// The receivers its messages reach, by name. Empty: not recorded, taken to be the
    /// receiver a renewal names.
    pub receivers: Vec<ReceiverName>,
}

impl SignerStep {
    /// Where this step is.
    pub fn step_ref(&self) -> StepRef {
        StepRef {
            flow: self.flow.clone(),
            step: self.name.clone(),
        }
    }

    /// The aliases listed, in table order.
    pub fn aliases(&self) -> Vec<Alias> {
        self.rows.iter().map(|r| r.params.alias.clone()).collect()
    }
}

/// A flow with its signer steps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flow {
    /// Its id.
    pub id: FlowId,
    /// The tenant.
    pub tenant: TenantId,
    /// Its name.
    pub name: FlowName,
    /// Its signer steps, by name.
    pub steps: Vec<SignerStep>,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn row_from_model(m: &signer_row::Model) -> Result<SignerRow> {
    Ok(SignerRow {
        position: m.position,
        params: SignerParams {
            alias: Alias::parse(&m.alias)
                .map_err(|e| corrupt(format!("signer row {}: {e}", m.id)))?,
            digest: m
                .digest
                .parse::<DigestAlg>()
                .map_err(|e| corrupt(format!("signer row {}: {e}", m.id)))?,
            include_certs: m.include_certs,
            include_signing_time: m.include_signing_time,
        },
    })
}

fn describe_params(p: &SignerParams) -> String {
    format!(
        "alias {} {} certs={} signing_time={}",
        p.alias, p.digest, p.include_certs, p.include_signing_time
    )
}

async fn flow_model(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    name: &FlowName,
) -> Result<flow::Model> {
    tenants::ensure(conn, tenant).await?;
    flow::Entity::find()
        .filter(flow::Column::TenantId.eq(tenant.as_uuid()))
        .filter(flow::Column::Name.eq(name.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownFlow {
            tenant,
            flow: name.clone(),
        })
}

async fn step_model(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    flow_name: &FlowName,
    step: &StepName,
) -> Result<signer_step::Model> {
    let f = flow_model(conn, tenant, flow_name).await?;
    signer_step::Entity::find()
        .filter(signer_step::Column::FlowId.eq(f.id))
        .filter(signer_step::Column::Name.eq(step.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownStep {
            flow: flow_name.clone(),
            step: step.clone(),
        })
}

async fn load_step(
    conn: &impl ConnectionTrait,
    flow_name: &FlowName,
    m: signer_step::Model,
) -> Result<SignerStep> {
    let rows = signer_row::Entity::find()
        .filter(signer_row::Column::StepId.eq(m.id))
        .order_by_asc(signer_row::Column::Position)
        .all(conn)
        .await?;
    let reached: Vec<Uuid> = signer_step_receiver::Entity::find()
        .filter(signer_step_receiver::Column::StepId.eq(m.id))
        .all(conn)
        .await?
        .into_iter()
        .map(|r| r.receiver_id)
        .collect();
    let mut receivers = Vec::with_capacity(reached.len());
    if !reached.is_empty() {
        for r in receiver::Entity::find()
            .filter(receiver::Column::Id.is_in(reached))
            .order_by_asc(receiver::Column::Name)
            .all(conn)
            .await?
        {
            receivers.push(ReceiverName::parse(&r.name).map_err(corrupt)?);
        }
    }
    Ok(SignerStep {
        id: StepId::from_uuid(m.id),
        flow: flow_name.clone(),
        name: StepName::parse(&m.name)
            .map_err(|e| corrupt(format!("signer step {}: {e}", m.id)))?,
        options: StepOptions {
            detached: m.detached,
            base64: m.base64,
        },
        rows: rows.iter().map(row_from_model).collect::<Result<_>>()?,
        receivers,
    })
}

async fn load_flow(conn: &impl ConnectionTrait, m: flow::Model) -> Result<Flow> {
    let name = FlowName::parse(&m.name).map_err(|e| corrupt(format!("flow {}: {e}", m.id)))?;
    let steps = signer_step::Entity::find()
        .filter(signer_step::Column::FlowId.eq(m.id))
        .order_by_asc(signer_step::Column::Name)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        out.push(load_step(conn, &name, s).await?);
    }
    Ok(Flow {
        id: FlowId::from_uuid(m.id),
        tenant: TenantId::from_uuid(m.tenant_id),
        name,
        steps: out,
    })
}

/// Creates a flow; refuses a name the tenant already uses.
pub async fn add_flow(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &FlowName,
    actor: &str,
) -> Result<Flow> {
    audit::lock_head(txn).await?;
    tenants::ensure(txn, tenant).await?;
    let taken = flow::Entity::find()
        .filter(flow::Column::TenantId.eq(tenant.as_uuid()))
        .filter(flow::Column::Name.eq(name.as_str()))
        .one(txn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::DuplicateFlow {
            tenant,
            flow: name.clone(),
        });
    }
    let id = FlowId::random();
    let at = now();
    flow::Entity::insert(flow::ActiveModel {
        id: Set(id.as_uuid()),
        tenant_id: Set(tenant.as_uuid()),
        name: Set(name.to_string()),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.add",
            tenant: Some(tenant),
            subject: format!("flow {name}"),
            before: String::new(),
            after: format!("id {id}"),
        },
    )
    .await?;
    Ok(Flow {
        id,
        tenant,
        name: name.clone(),
        steps: Vec::new(),
    })
}

/// Adds a signer step (with an empty table) to a flow.
pub async fn add_step(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    step: &StepName,
    options: StepOptions,
    actor: &str,
) -> Result<SignerStep> {
    audit::lock_head(txn).await?;
    let f = flow_model(txn, tenant, flow_name).await?;
    let taken = signer_step::Entity::find()
        .filter(signer_step::Column::FlowId.eq(f.id))
        .filter(signer_step::Column::Name.eq(step.as_str()))
        .one(txn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::DuplicateStep {
            flow: flow_name.clone(),
            step: step.clone(),
        });
    }
    let id = StepId::random();
    let at = now();
    signer_step::Entity::insert(signer_step::ActiveModel {
        id: Set(id.as_uuid()),
        tenant_id: Set(tenant.as_uuid()),
        flow_id: Set(f.id),
        name: Set(step.to_string()),
        detached: Set(options.detached),
        base64: Set(options.base64),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.step.add",
            tenant: Some(tenant),
            subject: format!("flow {flow_name} step {step}"),
            before: String::new(),
            after: format!("detached={} base64={}", options.detached, options.base64),
        },
    )
    .await?;
    Ok(SignerStep {
        id,
        flow: flow_name.clone(),
        name: step.clone(),
        options,
        rows: Vec::new(),
        receivers: Vec::new(),
    })
}

/// Changes a signer step's options.
pub async fn set_step_options(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    step: &StepName,
    options: StepOptions,
    actor: &str,
) -> Result<SignerStep> {
    audit::lock_head(txn).await?;
    let s = step_model(txn, tenant, flow_name, step).await?;
    let before = format!("detached={} base64={}", s.detached, s.base64);
    signer_step::Entity::update_many()
        .col_expr(signer_step::Column::Detached, Expr::value(options.detached))
        .col_expr(signer_step::Column::Base64, Expr::value(options.base64))
        .col_expr(signer_step::Column::UpdatedAt, Expr::value(now()))
        .filter(signer_step::Column::Id.eq(s.id))
        .exec(txn)
        .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.step.options",
            tenant: Some(tenant),
            subject: format!("flow {flow_name} step {step}"),
            before,
            after: format!("detached={} base64={}", options.detached, options.base64),
        },
    )
    .await?;
    let s = step_model(txn, tenant, flow_name, step).await?;
    load_step(txn, flow_name, s).await
}

/// A flow with its steps and tables ("show").
pub async fn flow(conn: &impl ConnectionTrait, tenant: TenantId, name: &FlowName) -> Result<Flow> {
    let m = flow_model(conn, tenant, name).await?;
    load_flow(conn, m).await
}

/// The id of the tenant's flow `name` (its steps and tables unread): what a check of who may
/// act on the flow needs.
pub async fn flow_id(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    name: &FlowName,
) -> Result<FlowId> {
    Ok(FlowId::from_uuid(flow_model(conn, tenant, name).await?.id))
}

/// Every flow of the tenant, by name, with steps and tables.
pub async fn flows(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Vec<Flow>> {
    tenants::ensure(conn, tenant).await?;
    let models = flow::Entity::find()
        .filter(flow::Column::TenantId.eq(tenant.as_uuid()))
        .order_by_asc(flow::Column::Name)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        out.push(load_flow(conn, m).await?);
    }
    Ok(out)
}

/// One signer step with its table.
pub async fn step(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    flow_name: &FlowName,
    step: &StepName,
) -> Result<SignerStep> {
    let m = step_model(conn, tenant, flow_name, step).await?;
    load_step(conn, flow_name, m).await
}

/// Inserts a row at the end of the table, or right after the row at `after` (the rows behind
/// it move down one place).
async fn insert_row(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    s: &signer_step::Model,
    params: &SignerParams,
    after: Option<i32>,
) -> Result<()> {
    let rows = signer_row::Entity::find()
        .filter(signer_row::Column::StepId.eq(s.id))
        .all(txn)
        .await?;
    if rows.iter().any(|r| r.alias == params.alias.as_str()) {
        return Err(StoreError::DuplicateSignerAlias {
            flow: flow_name.clone(),
            step: StepName::parse(&s.name).map_err(corrupt)?,
            alias: params.alias.clone(),
        });
    }
    let position = match after {
        Some(p) if rows.iter().any(|r| r.position == p + 1) => {
            // Two statements so that no two rows share a position at any moment (both
            // databases check UNIQUE (step_id, position) row by row): first out of the way to
            // negative positions, then back one place further down.
            signer_row::Entity::update_many()
                .col_expr(
                    signer_row::Column::Position,
                    Expr::col(signer_row::Column::Position).mul(-1).sub(1),
                )
                .filter(signer_row::Column::StepId.eq(s.id))
                .filter(signer_row::Column::Position.gt(p))
                .exec(txn)
                .await?;
            signer_row::Entity::update_many()
                .col_expr(
                    signer_row::Column::Position,
                    Expr::col(signer_row::Column::Position).mul(-1),
                )
                .filter(signer_row::Column::StepId.eq(s.id))
                .filter(signer_row::Column::Position.lt(0))
                .exec(txn)
                .await?;
            p + 1
        }
        Some(p) => p + 1,
        None => rows.iter().map(|r| r.position).max().map_or(0, |p| p + 1),
    };
    signer_row::Entity::insert(signer_row::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.as_uuid()),
        step_id: Set(s.id),
        position: Set(position),
        alias: Set(params.alias.to_string()),
        digest: Set(params.digest.name().to_string()),
        include_certs: Set(params.include_certs),
        include_signing_time: Set(params.include_signing_time),
        created_at: Set(now()),
    })
    .exec_without_returning(txn)
    .await?;
    touch_step(txn, s.id).await
}

async fn touch_step(txn: &DatabaseTransaction, id: Uuid) -> Result<()> {
    signer_step::Entity::update_many()
        .col_expr(signer_step::Column::UpdatedAt, Expr::value(now()))
        .filter(signer_step::Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Appends a row to a step's table; refuses an alias the step already lists.
pub async fn add_row(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    step_name: &StepName,
    params: &SignerParams,
    actor: &str,
) -> Result<SignerStep> {
    audit::lock_head(txn).await?;
    let s = step_model(txn, tenant, flow_name, step_name).await?;
    insert_row(txn, tenant, flow_name, &s, params, None).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.row.add",
            tenant: Some(tenant),
            subject: format!("flow {flow_name} step {step_name}"),
            before: String::new(),
            after: describe_params(params),
        },
    )
    .await?;
    load_step(txn, flow_name, s).await
}

/// Inserts a row for `new_alias` right after the row of `from_alias` in the same step, with
/// every other parameter copied from it (where the engine's model puts it too).
pub async fn add_row_like(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    step_name: &StepName,
    new_alias: &Alias,
    from_alias: &Alias,
    actor: &str,
) -> Result<SignerStep> {
    audit::lock_head(txn).await?;
    let s = step_model(txn, tenant, flow_name, step_name).await?;
    let source = signer_row::Entity::find()
        .filter(signer_row::Column::StepId.eq(s.id))
        .filter(signer_row::Column::Alias.eq(from_alias.as_str()))
        .one(txn)
        .await?
        .ok_or_else(|| StoreError::UnknownSignerRow {
            flow: flow_name.clone(),
            step: step_name.clone(),
            alias: from_alias.clone(),
        })?;
    let mut params = row_from_model(&source)?.params;
    params.alias = new_alias.clone();
    insert_row(txn, tenant, flow_name, &s, &params, Some(source.position)).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.row.add_like",
            tenant: Some(tenant),
            subject: format!("flow {flow_name} step {step_name}"),
            before: format!("copied from alias {from_alias}"),
            after: describe_params(&params),
        },
    )
    .await?;
    load_step(txn, flow_name, s).await
}

/// Removes the row of `alias` from a step's table.
pub async fn remove_row(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    step_name: &StepName,
    alias: &Alias,
    actor: &str,
) -> Result<SignerStep> {
    audit::lock_head(txn).await?;
    let s = step_model(txn, tenant, flow_name, step_name).await?;
    let row = signer_row::Entity::find()
        .filter(signer_row::Column::StepId.eq(s.id))
        .filter(signer_row::Column::Alias.eq(alias.as_str()))
        .one(txn)
        .await?
        .ok_or_else(|| StoreError::UnknownSignerRow {
            flow: flow_name.clone(),
            step: step_name.clone(),
            alias: alias.clone(),
        })?;
    let before = describe_params(&row_from_model(&row)?.params);
    signer_row::Entity::delete_by_id(row.id).exec(txn).await?;
    touch_step(txn, s.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.row.remove",
            tenant: Some(tenant),
            subject: format!("flow {flow_name} step {step_name}"),
            before,
            after: String::new(),
        },
    )
    .await?;
    load_step(txn, flow_name, s).await
}

/// Every (flow, step) whose table lists `alias`, sorted by flow then step.
pub async fn alias_usage(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    alias: &Alias,
) -> Result<Vec<StepRef>> {
    tenants::ensure(conn, tenant).await?;
    let rows = signer_row::Entity::find()
        .filter(signer_row::Column::TenantId.eq(tenant.as_uuid()))
        .filter(signer_row::Column::Alias.eq(alias.as_str()))
        .all(conn)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let steps: HashMap<Uuid, signer_step::Model> = signer_step::Entity::find()
        .filter(signer_step::Column::Id.is_in(rows.iter().map(|r| r.step_id)))
        .all(conn)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let flows: HashMap<Uuid, flow::Model> = flow::Entity::find()
        .filter(flow::Column::Id.is_in(steps.values().map(|s| s.flow_id)))
        .all(conn)
        .await?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let s = steps
            .get(&r.step_id)
            .ok_or_else(|| corrupt(format!("signer row {} has no step", r.id)))?;
        let f = flows
            .get(&s.flow_id)
            .ok_or_else(|| corrupt(format!("signer step {} has no flow", s.id)))?;
        out.push(StepRef {
            flow: FlowName::parse(&f.name).map_err(corrupt)?,
            step: StepName::parse(&s.name).map_err(corrupt)?,
        });
    }
    out.sort();
    Ok(out)
}

/// Alias usage for every alias of the tenant that any step lists (alias → steps).
pub async fn all_alias_usage(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
) -> Result<BTreeMap<Alias, Vec<StepRef>>> {
    let mut out: BTreeMap<Alias, Vec<StepRef>> = BTreeMap::new();
    for f in flows(conn, tenant).await? {
        for s in &f.steps {
            for r in &s.rows {
                out.entry(r.params.alias.clone())
                    .or_default()
                    .push(s.step_ref());
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}

/// For every step that lists `from_alias` and not yet `new_alias`, inserts a row for
/// `new_alias` right after it with the other parameters copied (a renewal changes every step
/// that uses the alias; a step that already lists `new_alias` keeps its row). Returns the steps
/// changed.
pub async fn add_alias_like_everywhere(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    new_alias: &Alias,
    from_alias: &Alias,
    actor: &str,
) -> Result<Vec<StepRef>> {
    let listed = alias_usage(txn, tenant, new_alias).await?;
    let uses: Vec<StepRef> = alias_usage(txn, tenant, from_alias)
        .await?
        .into_iter()
        .filter(|u| !listed.contains(u))
        .collect();
    for u in &uses {
        add_row_like(txn, tenant, &u.flow, &u.step, new_alias, from_alias, actor).await?;
    }
    Ok(uses)
}

/// Removes the rows of `alias` from every step that lists it, except the steps in `keep`.
/// Returns the steps changed.
pub async fn remove_alias_everywhere(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    alias: &Alias,
    keep: &[StepRef],
    actor: &str,
) -> Result<Vec<StepRef>> {
    let uses: Vec<StepRef> = alias_usage(txn, tenant, alias)
        .await?
        .into_iter()
        .filter(|u| !keep.contains(u))
        .collect();
    for u in &uses {
        remove_row(txn, tenant, &u.flow, &u.step, alias, actor).await?;
    }
    Ok(uses)
}

/// How one signing's output is laid out when the caller chooses (`rekey sign --flow
/// --detached`, `POST /api/sign`'s `detached` and `encoding`): `None` keeps what the step is
/// configured with. The signers are always the step's, as its table stands now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputChoice {
    /// Leave the content out (`true`) or carry it (`false`).
    pub detached: Option<bool>,
    /// Base64 text (`true`) or DER (`false`).
    pub base64: Option<bool>,
}

impl OutputChoice {
    /// The step's options with the caller's choices applied.
    pub fn apply(self, step: StepOptions) -> StepOptions {
        StepOptions {
            detached: self.detached.unwrap_or(step.detached),
            base64: self.base64.unwrap_or(step.base64),
        }
    }
}

/// A row of a step and the keystore entry its alias currently resolves to.
#[derive(Debug, Clone)]
pub struct ResolvedRow {
    /// The row.
    pub row: SignerRow,
    /// The alias's current entry, if it has one (rows without are skipped when signing).
    pub entry: Option<KeystoreEntry>,
}

/// What signing with this step would use, without decrypting anything.
pub async fn resolve_step(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    flow_name: &FlowName,
    step_name: &StepName,
) -> Result<(SignerStep, Vec<ResolvedRow>)> {
    let s = step(conn, tenant, flow_name, step_name).await?;
    let mut out = Vec::with_capacity(s.rows.len());
    for row in &s.rows {
        let entry = keystore::find_current(conn, tenant, &row.params.alias).await?;
        out.push(ResolvedRow {
            row: row.clone(),
            entry,
        });
    }
    Ok((s, out))
}

/// A payload signed as a step signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMessage {
    /// The DER `ContentInfo(SignedData)`.
    pub der: Vec<u8>,
    /// What the step emits: `der`, or its Base64 text when the step's `base64` option is on.
    pub output: Vec<u8>,
    /// The options used: the step's, with the caller's [`OutputChoice`] applied.
    pub options: StepOptions,
    /// Aliases that signed, in table order.
    pub signers: Vec<Alias>,
    /// Aliases listed but without a key, skipped.
    pub skipped: Vec<Alias>,
}

/// Signs `payload` with every row of the step whose alias has a current key (one SignedData,
/// one SignerInfo per such row); rows without a key are skipped. Fails with
/// [`StoreError::NoSignerResolves`] naming the flow and step if no row has a key.
#[allow(clippy::too_many_arguments)]
pub async fn sign_for_step(
    conn: &impl ConnectionTrait,
    kek: &Kek,
    backend: &dyn KeyBackend,
    tenant: TenantId,
    flow_name: &FlowName,
    step_name: &StepName,
    payload: &[u8],
    signing_time: DateTime<Utc>,
) -> Result<SignedMessage> {
    sign_for_step_as(
        conn,
        kek,
        backend,
        tenant,
        flow_name,
        step_name,
        payload,
        signing_time,
        OutputChoice::default(),
    )
    .await
}

/// [`sign_for_step`], with the output laid out as `choice` asks (attached or detached, DER or
/// Base64); the signers are the step's either way.
#[allow(clippy::too_many_arguments)]
pub async fn sign_for_step_as(
    conn: &impl ConnectionTrait,
    kek: &Kek,
    backend: &dyn KeyBackend,
    tenant: TenantId,
    flow_name: &FlowName,
    step_name: &StepName,
    payload: &[u8],
    signing_time: DateTime<Utc>,
    choice: OutputChoice,
) -> Result<SignedMessage> {
    sign_material(conn, kek, tenant, flow_name, step_name, choice)
        .await?
        .sign(backend, payload, signing_time)
}

/// What signing as a step takes, read from the database: the keys of the rows whose alias has
/// one now (each with the chain of the very entry it was decrypted from), their parameters
/// and the options. Reading it is I/O; [`SignMaterial::sign`] is CPU only, so a caller can run
/// it off the async workers.
#[derive(Debug)]
pub struct SignMaterial {
    keys: Vec<(KeyHandle, Vec<Certificate>, SignerParams)>,
    options: StepOptions,
    skipped: Vec<Alias>,
}

/// Reads what signing as the step takes now, laid out as `choice` asks; fails with
/// [`StoreError::NoSignerResolves`] naming the flow and step if no row's alias has a key.
pub async fn sign_material(
    conn: &impl ConnectionTrait,
    kek: &Kek,
    tenant: TenantId,
    flow_name: &FlowName,
    step_name: &StepName,
    choice: OutputChoice,
) -> Result<SignMaterial> {
    let (s, resolved) = resolve_step(conn, tenant, flow_name, step_name).await?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for r in resolved {
        match r.entry {
            Some(entry) => {
                // Decrypt the very entry whose chain was read, even if the alias changes
                // meanwhile, so key and certificate always belong together.
                let key = keystore::entry_private_key(conn, kek, tenant, entry.id).await?;
                keys.push((key, entry.chain, r.row.params));
            }
            None => skipped.push(r.row.params.alias),
        }
    }
    if keys.is_empty() {
        return Err(StoreError::NoSignerResolves {
            flow: flow_name.clone(),
            step: step_name.clone(),
            aliases: s.aliases(),
        });
    }
    Ok(SignMaterial {
        keys,
        options: choice.apply(s.options),
        skipped,
    })
}

impl SignMaterial {
    /// Signs `payload` with every key (one SignedData, one SignerInfo per key, in table
    /// order) through `backend`, at signingTime `signing_time`.
    pub fn sign(
        &self,
        backend: &dyn KeyBackend,
        payload: &[u8],
        signing_time: DateTime<Utc>,
    ) -> Result<SignedMessage> {
        let signers_of = self
            .keys
            .iter()
            .map(|(key, _, _)| backend.signer(key))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let specs: Vec<SignerSpec<'_>> = self
            .keys
            .iter()
            .zip(&signers_of)
            .map(|((_, chain, p), key)| SignerSpec {
                key: &**key,
                chain,
                digest: p.digest,
                include_certs: p.include_certs,
                include_signing_time: p.include_signing_time,
            })
            .collect();
        let der = rekey_crypto::sign(
            payload,
            &specs,
            &SignOptions {
                detached: self.options.detached,
                signing_time,
            },
        )?;
        let output = if self.options.base64 {
            rekey_crypto::to_base64(&der).into_bytes()
        } else {
            der.clone()
        };
        Ok(SignedMessage {
            der,
            output,
            options: self.options,
            signers: self.keys.iter().map(|(_, _, p)| p.alias.clone()).collect(),
            skipped: self.skipped.clone(),
        })
    }
}

async fn step_receiver_ids(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    flow_name: &FlowName,
    step: &StepName,
    receiver_name: &ReceiverName,
) -> Result<(signer_step::Model, receiver::Model)> {
    let s = step_model(conn, tenant, flow_name, step).await?;
    let r = receiver::Entity::find()
        .filter(receiver::Column::TenantId.eq(tenant.as_uuid()))
        .filter(receiver::Column::Name.eq(receiver_name.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownReceiver {
            tenant,
            receiver: receiver_name.clone(),
        })?;
    Ok((s, r))
}

/// Records that a signer step's messages reach a receiver, so that a renewal's guard judges
/// that receiver too.
pub async fn add_step_receiver(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    step: &StepName,
    receiver_name: &ReceiverName,
    actor: &str,
) -> Result<SignerStep> {
    audit::lock_head(txn).await?;
    let (s, r) = step_receiver_ids(txn, tenant, flow_name, step, receiver_name).await?;
    let exists = signer_step_receiver::Entity::find_by_id((s.id, r.id))
        .one(txn)
        .await?;
    if exists.is_some() {
        return Err(StoreError::DuplicateStepReceiver {
            flow: flow_name.clone(),
            step: step.clone(),
            receiver: receiver_name.clone(),
        });
    }
    signer_step_receiver::Entity::insert(signer_step_receiver::ActiveModel {
        step_id: Set(s.id),
        receiver_id: Set(r.id),
        tenant_id: Set(tenant.as_uuid()),
        created_at: Set(now()),
    })
    .exec_without_returning(txn)
    .await?;
    touch_step(txn, s.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.step.receiver.add",
            tenant: Some(tenant),
            subject: format!("flow {flow_name} step {step}"),
            before: String::new(),
            after: format!("sends to receiver {receiver_name}"),
        },
    )
    .await?;
    load_step(txn, flow_name, s).await
}

/// Records that a signer step's messages no longer reach a receiver.
pub async fn remove_step_receiver(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    flow_name: &FlowName,
    step: &StepName,
    receiver_name: &ReceiverName,
    actor: &str,
) -> Result<SignerStep> {
    audit::lock_head(txn).await?;
    let (s, r) = step_receiver_ids(txn, tenant, flow_name, step, receiver_name).await?;
    let res = signer_step_receiver::Entity::delete_by_id((s.id, r.id))
        .exec(txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::UnknownStepReceiver {
            flow: flow_name.clone(),
            step: step.clone(),
            receiver: receiver_name.clone(),
        });
    }
    touch_step(txn, s.id).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "flow.step.receiver.remove",
            tenant: Some(tenant),
            subject: format!("flow {flow_name} step {step}"),
            before: format!("sends to receiver {receiver_name}"),
            after: String::new(),
        },
    )
    .await?;
    load_step(txn, flow_name, s).await
}

/// The ids of the receivers a signer step's messages reach (empty: not recorded).
pub async fn step_receivers(conn: &impl ConnectionTrait, step: StepId) -> Result<Vec<ReceiverId>> {
    Ok(signer_step_receiver::Entity::find()
        .filter(signer_step_receiver::Column::StepId.eq(step.as_uuid()))
        .all(conn)
        .await?
        .into_iter()
        .map(|r| ReceiverId::from_uuid(r.receiver_id))
        .collect())
}
