//! [`ApiError`]: the one error type of every handler. It names the problem for the person or
//! script that caused it and hides internals: database, crypto and consistency failures are
//! logged on stderr and answered with `500 internal error`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rekey_engine::Refusal;
use rekey_notifier::NotifierError;
use rekey_service::ServiceError;
use rekey_store::StoreError;

/// An error answered as `{"error": "..."}` with a status code, and `"field": "..."` when
/// one field of the request is what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// What the client is told.
    pub message: String,
    /// The request's field that is wrong, if one is.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 about the request's `field`; the message names it too.
    pub fn field(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::bad_request(format!("{field}: {message}")).with_field(field)
    }

    /// This error, naming `field` as what is wrong.
    pub fn with_field(mut self, field: &str) -> ApiError {
        self.field = Some(field.to_string());
        self
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 500, after logging what really happened (never sent to the client).
    pub fn internal(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(detail = %detail, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = serde_json::Value::String(field);
        }
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rekey\""),
            );
        }
        res
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match &r {
            Refusal::WrongRole { .. } => StatusCode::FORBIDDEN,
            Refusal::UnknownStep { .. } => StatusCode::NOT_FOUND,
            Refusal::WrongFingerprint { .. }
            | Refusal::Invalid { .. }
            | Refusal::ProcedureNotAllowed { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::CONFLICT,
        };
        // The engine's words, verbatim: they say what is wrong and what to do.
        ApiError::new(status, r.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        use StoreError as S;
        let status = match &e {
            S::UnknownToken | S::RevokedToken | S::ExpiredToken => {
                return ApiError::unauthorized(e.to_string());
            }
            S::UnknownTenant(_)
            | S::UnknownAlias { .. }
            | S::UnknownHistoryEntry { .. }
            | S::UnknownEntry { .. }
            | S::UnknownFlow { .. }
            | S::UnknownStep { .. }
            | S::UnknownSignerRow { .. }
            | S::UnknownReceiver { .. }
            | S::UnknownTrustedCertificate { .. }
            | S::UnknownReceiverAdmin { .. }
            | S::UnknownReceiverId(_)
            | S::UnknownFlowId(_)
            | S::NoAs2Endpoint { .. }
            | S::UnknownStepReceiver { .. }
            | S::UnknownUser(_)
            | S::UnknownTokenId(_)
            | S::UnknownGrant { .. } => StatusCode::NOT_FOUND,
            S::DuplicateTenant(_)
            | S::DuplicateAlias { .. }
            | S::AliasInUse { .. }
            | S::DuplicateFlow { .. }
            | S::DuplicateStep { .. }
            | S::DuplicateSignerAlias { .. }
            | S::DuplicateReceiver { .. }
            | S::DuplicateTrustedCertificate { .. }
            | S::DuplicateReceiverAdmin { .. }
            | S::DuplicateStepReceiver { .. }
            | S::DuplicateUser(_)
            | S::DuplicateGrant { .. }
            | S::LastTenantAdmin { .. } => StatusCode::CONFLICT,
            S::Invalid(_)
            | S::KeyMismatch { .. }
            | S::KeyTooSmall { .. }
            | S::EmptyChain { .. } => StatusCode::BAD_REQUEST,
            // The step is well-formed but none of its aliases has a key now: its state, not
            // the request, is what must change.
            S::NoSignerResolves { .. } => StatusCode::CONFLICT,
            _ => return ApiError::internal(&e),
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Refused(r) => r.into(),
            ServiceError::Store(s) => s.into(),
            ServiceError::UnknownUser(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            ServiceError::UnknownRenewal(_) => ApiError::not_found(e.to_string()),
            ServiceError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            ServiceError::AlreadyRunning { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            ServiceError::Input(_) => ApiError::bad_request(e.to_string()),
            ServiceError::Field { field, .. } => {
                ApiError::bad_request(e.to_string()).with_field(field)
            }
            ServiceError::UnknownScope(_) => ApiError::not_found(e.to_string()),
            ServiceError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            ServiceError::NotApplicable(_) | ServiceError::TenantChanged { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            // The SAP tenant's own answer (never a secret): rekey could not reach or use it.
            ServiceError::SapCi(_) => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
            ServiceError::Crypto(_)
            | ServiceError::Database(_)
            | ServiceError::Corrupt(_)
            | ServiceError::Interrupted(_) => ApiError::internal(&e),
        }
    }
}

impl From<NotifierError> for ApiError {
    fn from(e: NotifierError) -> ApiError {
        match e {
            // The link's own words: not valid, expired on ..., already used on ...
            NotifierError::Link(msg) => ApiError::new(StatusCode::GONE, msg),
            NotifierError::Store(s) => s.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> ApiError {
        ApiError::internal(&e)
    }
}
