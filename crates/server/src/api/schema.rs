//! The JSON bodies of the API as OpenAPI schemas, for the document only: request bodies are
//! the handlers' own types (in [`super::tasks`] and [`super::renewals`]); response bodies are
//! serialised from engine and service types that know nothing of OpenAPI, so this module
//! mirrors their JSON shape field by field, and says no other field comes
//! (`additionalProperties: false`). Nothing here is built at run time but the token and user
//! bodies ([`ApiToken`], [`UserRoles`]), which mirror no other type; `tests/serve_api.rs`
//! validates real responses against these schemas, so a field added to a response and not
//! here fails it.

use chrono::{DateTime, Utc};
use rekey_engine::ProcedureId;
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

/// Every error: `{"error": "..."}`, the message meant for the person or script that caused it.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Error {
    /// What is wrong and, where it helps, what to do.
    pub error: String,
    /// The request's field that is wrong (`bits`, `tenant`, `fingerprint`, ...), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// What an event on a renewal (window, cancel, rollback) answers: one list, documented once
/// for every such route.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, clippy::large_enum_variant)] // describes responses; never built
pub enum RenewalEventResponses {
    /// Done; what rekey did.
    #[response(status = 200, description = "Done; what rekey did")]
    Done(Outcome),
    /// Refused input.
    #[response(
        status = 400,
        description = "Bad body, not a renewal id, or input the engine refuses"
    )]
    BadInput(Error),
    /// No or unknown bearer token.
    #[response(status = 401, description = "No or unknown bearer token")]
    Unauthorized(Error),
    /// Missing role.
    #[response(
        status = 403,
        description = "The user does not hold the role this takes"
    )]
    Forbidden(Error),
    /// Unknown, or not the user's.
    #[response(
        status = 404,
        description = "Unknown renewal, or one the user holds no role in"
    )]
    NotFound(Error),
    /// Refused in this state.
    #[response(
        status = 409,
        description = "Refused in the renewal's current state, or changed concurrently"
    )]
    Conflict(Error),
    /// Internal error.
    #[response(status = 500, description = "Internal error (logged, not described)")]
    Internal(Error),
}

/// A procedure's name (the values of `rekey_engine::ProcedureId`).
#[derive(Serialize)]
pub struct Procedure;

impl PartialSchema for Procedure {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .description(Some("The procedure run"))
            .enum_values(Some(ProcedureId::ALL.iter().map(|p| p.as_str())))
            .into()
    }
}

impl ToSchema for Procedure {}

/// An RSA key size in bits.
pub struct Bits;

impl PartialSchema for Bits {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Integer))
            .description(Some("RSA key size in bits"))
            .enum_values(Some([2048, 3072, 4096]))
            .default(Some(3072.into()))
            .into()
    }
}

impl ToSchema for Bits {}

/// A role (the values of `rekey_engine::Role`).
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the outbound keystore.
    TenantAdmin,
    /// Owns the signer steps' alias tables.
    IntegrationDeveloper,
    /// Owns the receiving system.
    ReceiverAdmin,
}

/// A renewal's overall status.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalStatus {
    /// Steps remain.
    Running,
    /// Every step is done.
    Completed,
    /// Cancelled before its point of no return; rekey's changes were undone.
    Cancelled,
    /// Rolled back after its point of no return.
    RolledBack,
}

/// Where a step stands, tagged by `status`.
#[derive(ToSchema, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// Earlier steps (or the window) are not done yet.
    Waiting,
    /// Its owner should act.
    Due {
        /// When it became due.
        since: DateTime<Utc>,
        /// Its due date.
        due_at: DateTime<Utc>,
    },
    /// Finished.
    Done {
        /// When it became due.
        since: DateTime<Utc>,
        /// When it was done.
        at: DateTime<Utc>,
        /// Email of who did it, or `rekey`.
        by: String,
    },
    /// Not needed in this renewal (a condition was not met).
    Skipped,
}

/// One step's state.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepState {
    /// The step id.
    pub id: String,
    /// Its status.
    pub status: StepStatus,
    /// Reminders sent so far.
    pub reminders: u32,
    /// Whether it has escalated.
    pub escalated: bool,
    /// Roles emailed when this step ran or became due.
    pub notified: Vec<Role>,
    /// Why an automatic attempt was refused, if one was.
    #[schema(required = true)]
    pub blocked: Option<String>,
}

/// A change rekey applied, tagged by `op` (`add_key`, `exchange_key`, `remove_key`,
/// `restore_key`, `add_signer_alias`, `remove_signer_alias`, `trust`, `distrust`) with the
/// aliases, certificates and steps it concerns.
#[derive(ToSchema, Serialize)]
pub struct Change {
    /// Which change.
    pub op: String,
}

/// The downtime window of the `downtime-window` procedure.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Opens.
    pub start: DateTime<Utc>,
    /// Closes.
    pub end: DateTime<Utc>,
    /// Role that proposed it.
    pub proposed_by: Role,
    /// Email of the proposer.
    pub proposer: String,
    /// Whether the other party accepted.
    pub agreed: bool,
    /// Whether it is open now.
    pub open: bool,
    /// Whether it has closed.
    pub closed: bool,
}

/// Interruption measured inside the window.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Downtime {
    /// First moment the receiver rejected a message.
    #[schema(required = true)]
    pub started: Option<DateTime<Utc>>,
    /// Back to acceptance.
    #[schema(required = true)]
    pub ended: Option<DateTime<Utc>>,
}

/// A renewal: its steps, who did them, what is due.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// Id.
    pub id: Uuid,
    /// Tenant id.
    pub tenant: String,
    /// Receiver id.
    pub receiver: String,
    /// The procedure run.
    pub procedure: Procedure,
    /// The alias renewed.
    pub alias: String,
    /// The alias the new key goes under, for procedures that use a second alias.
    #[schema(required = true)]
    pub new_alias: Option<String>,
    /// Whether actions run without approval.
    pub auto_approve: bool,
    /// Whether the new certificate comes from a CA.
    pub ca_signed: bool,
    /// Key size in bits.
    pub bits: u32,
    /// SHA-256 fingerprint (hex) of the certificate under `alias` when the renewal started.
    #[schema(required = true)]
    pub old_cert: Option<String>,
    /// SHA-256 fingerprint (hex) of the new certificate, once generated or uploaded.
    #[schema(required = true)]
    pub new_cert: Option<String>,
    /// Whether key generation was requested and not yet reported.
    pub generating: bool,
    /// Who approved the key generation.
    #[schema(required = true)]
    pub generation_approved_by: Option<String>,
    /// Signer steps (`flow/step`) that already listed `new_alias` when the renewal started;
    /// absent when none did.
    #[schema(required = false)]
    pub prepared_on: Vec<String>,
    /// Per-step state, in definition order.
    pub steps: Vec<StepState>,
    /// Overall status.
    pub status: RenewalStatus,
    /// Changes rekey applied, in order (for cancel and rollback).
    pub applied: Vec<Change>,
    /// The downtime window, once proposed.
    #[schema(required = true)]
    pub window: Option<Window>,
    /// Measured interruption.
    pub downtime: Downtime,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One email a call queued.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailQueued {
    /// Step that caused it.
    #[schema(required = true)]
    pub step: Option<String>,
    /// Why it is sent (`step_due`, `inform`, `reminder`, `escalation`, `window_proposed`,
    /// `window_agreed`, `completed`, `cancelled`, `rolled_back`, `certificate_request`).
    pub kind: String,
    /// Recipient address.
    pub to: String,
    /// Stable Message-ID.
    pub message_id: String,
}

/// What a call did: the renewal afterwards, the steps it completed, the mail it queued.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The renewal afterwards.
    pub renewal: Renewal,
    /// Steps completed, in order.
    pub completed: Vec<String>,
    /// Emails queued in the outbox.
    pub mail: Vec<MailQueued>,
}

/// A due step the user may act on.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// `<renewal>:<step>`, what `rekey task complete|approve` take.
    pub id: String,
    /// Renewal.
    pub renewal: Uuid,
    /// Procedure.
    pub procedure: Procedure,
    /// Alias renewed.
    pub alias: String,
    /// Step id.
    pub step: String,
    /// Seed step number.
    pub seed: String,
    /// Step title.
    pub title: String,
    /// The role the user acts in.
    pub role: Role,
    /// What the user does: `approve`, `complete` or `agree`.
    pub verb: String,
    /// Due date.
    #[schema(required = true)]
    pub due_at: Option<DateTime<Utc>>,
    /// The new certificate's fingerprint, for tasks that confirm it.
    #[schema(required = true)]
    pub new_certificate: Option<String>,
}

/// An API token as its user sees it (never the secret). Built at run time from
/// [`rekey_store::users::ApiTokenInfo`].
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Its id, what `DELETE /api/tokens/{id}` takes.
    pub id: Uuid,
    /// The label given at creation.
    pub label: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `null`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; `null`: it was not.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<rekey_store::users::ApiTokenInfo> for ApiToken {
    fn from(t: rekey_store::users::ApiTokenInfo) -> ApiToken {
        ApiToken {
            id: t.id.as_uuid(),
            label: t.label,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A user and the roles they hold (after a change). Built at run time.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserRoles {
    /// Their email address.
    pub email: String,
    /// Their roles, as `role of scope` (e.g. `tenant_admin of tenant <id>`).
    pub roles: Vec<String>,
}

impl UserRoles {
    /// `u`'s roles.
    pub fn of(u: &rekey_store::User) -> UserRoles {
        UserRoles {
            email: u.email.to_string(),
            roles: u.grants.iter().map(ToString::to_string).collect(),
        }
    }
}
