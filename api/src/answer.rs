//! How a command's result becomes an HTTP answer (status, body, ETag, Location), and the
//! fingerprint of a keyed request. The answers of keyed commands are kept by the event store
//! with the commands' events (see `ledger_application::answer`): a retry gets back the same
//! result, which renders to the same status and body, because rendering depends only on the
//! result and on the request, which the fingerprint proves is the same.

use crate::problem::Problem;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_postgres::migrate::Migration;
use ledger_postgres::{Database, DatabaseError};
use sha2::{Digest, Sha256};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "idempotency_keys",
        sql: include_str!("../migrations/0001_idempotency.sql"),
    },
    Migration {
        version: 2,
        name: "answers_kept_with_events",
        sql: include_str!("../migrations/0002_answers_kept_with_events.sql"),
    },
    Migration {
        version: 3,
        name: "order_sagas",
        sql: include_str!("../migrations/0003_order_sagas.sql"),
    },
];

/// A command's answer, rendered.
#[derive(Debug, Clone)]
pub struct RenderedAnswer {
    pub status: StatusCode,
    pub content_type: String,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl RenderedAnswer {
    pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Self {
        Self {
            status,
            content_type: "application/json".into(),
            etag: None,
            location: None,
            body: serde_json::to_vec(body).expect("response bodies serialise"),
        }
    }

    pub fn problem(problem: &Problem) -> Self {
        Self {
            status: problem.status,
            content_type: crate::problem::PROBLEM_CONTENT_TYPE.into(),
            etag: None,
            location: None,
            body: problem.document().to_string().into_bytes(),
        }
    }
}

impl IntoResponse for RenderedAnswer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&self.content_type) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        if let Some(value) = self.etag.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::ETAG, value);
        }
        if let Some(value) = self.location.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::LOCATION, value);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub fn fingerprint(method: &str, path: &str, canonical_body: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [method, path, canonical_body] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex(&hasher.finalize())
}

/// Lower-case hexadecimal, without a formatting call per byte (this runs for every keyed
/// request).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// The API's own tables: once the claim-and-complete table of keyed requests (now dropped),
/// and the order reserves' records ([`crate::orders`]).
pub async fn migrate_api_tables(database: &Database) -> Result<(), DatabaseError> {
    let mut client = database.client().await?;
    ledger_postgres::migrate::migrate(&mut client, "api", MIGRATIONS).await
}
