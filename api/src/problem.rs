//! RFC 9457 problem details: the one place where errors become HTTP responses. 4xx bodies
//! explain what was wrong and how to fix it; 5xx bodies reveal nothing, and the cause goes to
//! the log with the request id. The document's schema in the OpenAPI description is
//! [`crate::contract::problem`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_application::command::CommandError;
use ledger_application::store::StoreError;
use ledger_domain::{DomainError, ValidationError};
use serde_json::{Map, Value};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Problem types are URNs: stable identifiers a client can switch on.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:inventory-ledger:problem:";

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn validation(error: &ValidationError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            "The request is not valid",
            error.to_string(),
        )
        .with("field", error.field)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code,
            "The request is malformed",
            detail,
        )
    }

    /// A failure that is ours, not the client's: logged in full, answered with nothing.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal server error",
            "The server failed to handle this request. It has been logged; retry later or \
             report the request id.",
        )
    }

    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-unavailable",
            "Service unavailable",
            "A dependency of the server is unavailable. Retry later.",
        )
    }

    pub fn document(&self) -> Value {
        let mut document = Map::new();
        document.insert(
            "type".into(),
            Value::String(format!("{PROBLEM_TYPE_PREFIX}{}", self.code)),
        );
        document.insert("title".into(), Value::String(self.title.into()));
        document.insert("status".into(), Value::from(self.status.as_u16()));
        document.insert("detail".into(), Value::String(self.detail.clone()));
        for (key, value) in &self.extensions {
            document.insert(key.clone(), value.clone());
        }
        Value::Object(document)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.document().to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"inventory-ledger\""),
            );
        }
        response
    }
}

impl From<DomainError> for Problem {
    fn from(error: DomainError) -> Self {
        let detail = error.to_string();
        let code = error.code();
        match error {
            DomainError::InsufficientStock {
                requested,
                available,
                location,
            } => {
                let problem = Self::new(StatusCode::CONFLICT, code, "Insufficient stock", detail)
                    .with("requested", requested)
                    .with("available", available);
                match location {
                    Some(location) => problem.with("location", location),
                    None => problem,
                }
            }
            DomainError::ReservationNotFound { reservation_id } => {
                Self::new(StatusCode::NOT_FOUND, code, "Unknown reservation", detail)
                    .with("reservation_id", reservation_id)
            }
            DomainError::ReservationClosed {
                reservation_id,
                status,
            } => Self::new(
                StatusCode::CONFLICT,
                code,
                "Reservation already ended",
                detail,
            )
            .with("reservation_id", reservation_id)
            .with("reservation_status", status.as_str()),
            DomainError::ReservationIdConflict { reservation_id, .. } => Self::new(
                StatusCode::CONFLICT,
                code,
                "Reservation id already used for a different request",
                detail,
            )
            .with("reservation_id", reservation_id),
            DomainError::ReservationHeldByAnother { reservation_id } => Self::new(
                StatusCode::FORBIDDEN,
                code,
                "Reservation held by another principal",
                detail,
            )
            .with("reservation_id", reservation_id),
            DomainError::ReservationHasNoExpiry { .. }
            | DomainError::ReservationNotYetExpired { .. } => Self::new(
                StatusCode::CONFLICT,
                code,
                "Reservation cannot expire",
                detail,
            ),
            DomainError::AdjustmentBelowReserved {
                reserved, location, ..
            } => {
                let problem = Self::new(
                    StatusCode::CONFLICT,
                    code,
                    "Adjustment would leave less than reserved",
                    detail,
                )
                .with("reserved", reserved);
                match location {
                    Some(location) => problem.with("location", location),
                    None => problem,
                }
            }
            DomainError::OnHandLimitExceeded { limit, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "On hand limit exceeded",
                detail,
            )
            .with("limit", limit),
            DomainError::TransferWithinOneLocation { location } => Self::new(
                StatusCode::CONFLICT,
                code,
                "A transfer needs two locations",
                detail,
            )
            .with("location", location),
            DomainError::TransferNotFound { transfer_id } => {
                Self::new(StatusCode::NOT_FOUND, code, "Unknown transfer", detail)
                    .with("transfer_id", transfer_id)
            }
            DomainError::TransferClosed {
                transfer_id,
                status,
            } => Self::new(StatusCode::CONFLICT, code, "Transfer already ended", detail)
                .with("transfer_id", transfer_id)
                .with("transfer_status", status.as_str()),
            DomainError::TransferIdConflict { transfer_id, .. } => Self::new(
                StatusCode::CONFLICT,
                code,
                "Transfer id already used for a different request",
                detail,
            )
            .with("transfer_id", transfer_id),
            DomainError::ReceiptExceedsDispatch {
                transfer_id,
                dispatched,
                ..
            } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "More received than dispatched",
                detail,
            )
            .with("transfer_id", transfer_id)
            .with("dispatched", dispatched),
            DomainError::DiscrepancyReasonRequired {
                transfer_id,
                dispatched,
                ..
            } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "A short receipt needs a discrepancy reason",
                detail,
            )
            .with("transfer_id", transfer_id)
            .with("dispatched", dispatched),
            DomainError::SkuDiscontinued => {
                Self::new(StatusCode::CONFLICT, code, "SKU discontinued", detail)
            }
            DomainError::SkuAlreadyRegistered => Self::new(
                StatusCode::CONFLICT,
                code,
                "SKU already in the catalogue",
                detail,
            ),
            DomainError::SkuNotRegistered => Self::new(
                StatusCode::NOT_FOUND,
                code,
                "SKU not in the catalogue",
                detail,
            ),
        }
    }
}

impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(domain) => domain.into(),
            CommandError::VersionMismatch { expected, actual } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "version-mismatch",
                "The SKU changed since you read it",
                format!(
                    "If-Match expected version {}, but the SKU is at {}; read it again and retry",
                    expected.map_or("none".to_owned(), |v| v.to_string()),
                    actual.map_or("none".to_owned(), |v| v.to_string())
                ),
            )
            .with("current_version", actual),
            CommandError::ContentionRetriesExhausted { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contention",
                "The SKU is too busy right now",
                error.to_string(),
            ),
            CommandError::CorruptStream { .. } => Self::internal(&error),
            CommandError::IdempotencyKeyReused { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused for a different request",
                "this Idempotency-Key was already used with a different method, path or body; \
                 use a new key for a new request",
            ),
            CommandError::Store(store) => store.into(),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Timeout { .. } | StoreError::Unavailable { .. } => {
                Self::unavailable(&error)
            }
            StoreError::OutcomeUnknown { .. } => {
                tracing::warn!(%error, "the outcome of a command is unknown");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "outcome-unknown",
                    "Outcome unknown",
                    "the connection to the database was lost while the command was being \
                     committed, and whether it was applied could not be learned: retry with the \
                     same Idempotency-Key (a keyed command is applied at most once); without a \
                     key, read the SKU first",
                )
            }
            StoreError::IdempotencyMismatch { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused for a different request",
                error.to_string(),
            ),
            _ => Self::internal(&error),
        }
    }
}

/// The API's own tables (the order reserves' records): an unreachable or stalled database is
/// passing (503), anything else is ours (500).
impl From<ledger_postgres::DatabaseError> for Problem {
    fn from(error: ledger_postgres::DatabaseError) -> Self {
        use ledger_postgres::DatabaseError;
        match error {
            DatabaseError::Unreachable(_) | DatabaseError::Deadline(_) => Self::unavailable(&error),
            other => Self::internal(&other),
        }
    }
}
