//! HTTP idempotency: a request with an `Idempotency-Key` is carried out once; a retry gets the
//! original status and body, appends nothing, and the same key with a different request is
//! refused. Keys are scoped to the principal and stored in PostgreSQL so that every API
//! instance sees them. Two identical requests at once: the second waits for the first's answer.

use crate::problem::Problem;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_postgres::migrate::{migrate, Migration};
use ledger_postgres::{Database, DatabaseError};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "idempotency_keys",
    sql: include_str!("../migrations/0001_idempotency.sql"),
}];

/// How long a duplicate waits for the first request with its key to finish. Commands finish in
/// milliseconds; past this the duplicate is told to retry instead of holding a connection.
const IN_FLIGHT_WAIT_MS: u64 = 10_000;

/// Pause between two looks at an in-flight key.
const IN_FLIGHT_POLL_MS: u64 = 5;

/// A key still marked in flight after this long belongs to a request that died with its
/// process; the next request with that key takes it over (safe: event ids derive from the key,
/// so a half-done command is recognised by the store, not repeated).
const IN_FLIGHT_STALE_MS: i64 = 30_000;

const CLAIM_SQL: &str = "INSERT INTO api.idempotency_keys (principal, key, fingerprint) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const LOOK_SQL: &str = "SELECT fingerprint, status_code, content_type, etag, location, body, \
                        (now() - started_at) > make_interval(secs => $3::double precision / 1000) \
                        FROM api.idempotency_keys WHERE principal = $1 AND key = $2";
const TAKE_OVER_SQL: &str = "UPDATE api.idempotency_keys SET started_at = now() \
                             WHERE principal = $1 AND key = $2 AND status_code IS NULL \
                             AND (now() - started_at) > make_interval(secs => $3::double precision / 1000)";
const COMPLETE_SQL: &str =
    "UPDATE api.idempotency_keys SET status_code = $3, content_type = $4, etag = $5, \
                            location = $6, body = $7, completed_at = now() \
                            WHERE principal = $1 AND key = $2";
const RELEASE_SQL: &str = "DELETE FROM api.idempotency_keys \
                           WHERE principal = $1 AND key = $2 AND status_code IS NULL";

/// A statement prepared once per pooled connection (one round trip per use, not two).
async fn prepared(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, Problem> {
    client.prepare_cached(sql).await.map_err(failed)
}

/// A response as stored and replayed.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub content_type: String,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl StoredResponse {
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json".into(),
            etag: None,
            location: None,
            body: body.to_string().into_bytes(),
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

impl IntoResponse for StoredResponse {
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

pub enum Claim {
    /// First with this key: carry the request out, then `complete` or `release`.
    Proceed,
    /// Already answered: send this again.
    Replay(StoredResponse),
}

#[derive(Clone)]
pub struct IdempotencyStore {
    database: Database,
}

pub fn fingerprint(method: &str, path: &str, canonical_body: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [method, path, canonical_body] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn failed(error: impl std::fmt::Display) -> Problem {
    Problem::unavailable(&error)
}

impl IdempotencyStore {
    /// Open the key table on a pool of its own whose commits do not wait for the disk.
    ///
    /// Why that is safe: a key row only saves work, the events are the truth. PostgreSQL writes
    /// its log in order, so a claim committed before a command's events is flushed by the
    /// events' own durable commit; only a completed answer can be lost in a crash, and then
    /// the retry runs the command again, which the SKU's writer recognises by its idempotency
    /// key (or the store by the key's event ids) and answers with the original outcome. Why it
    /// matters: two synchronous commits per keyed request would cost more than the command.
    pub async fn open(database: &Database, pool_size: usize) -> Result<Self, DatabaseError> {
        let mut config = database.config().clone();
        let options = match config.get_options() {
            Some(existing) => format!("{existing} -c synchronous_commit=off"),
            None => "-c synchronous_commit=off".to_owned(),
        };
        config.options(&options);
        let database = Database::from_config(config, pool_size)?;
        let mut client = database.client().await?;
        migrate(&mut client, "api", MIGRATIONS).await?;
        Ok(Self { database })
    }

    pub async fn claim(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claim, Problem> {
        let client = self.database.pool().get().await.map_err(failed)?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(IN_FLIGHT_WAIT_MS);
        loop {
            let inserted = client
                .execute(
                    &prepared(&client, CLAIM_SQL).await?,
                    &[&principal, &key, &fingerprint],
                )
                .await
                .map_err(failed)?;
            if inserted == 1 {
                return Ok(Claim::Proceed);
            }
            let row = client
                .query_opt(
                    &prepared(&client, LOOK_SQL).await?,
                    &[&principal, &key, &(IN_FLIGHT_STALE_MS as f64)],
                )
                .await
                .map_err(failed)?;
            let Some(row) = row else {
                // Released between our insert and our look: try to claim it again.
                continue;
            };
            let stored_fingerprint: String = row.get(0);
            if stored_fingerprint != fingerprint {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency-key-reused",
                    "Idempotency key reused for a different request",
                    "this Idempotency-Key was already used with a different method, path or \
                     body; use a new key for a new request",
                ));
            }
            if let Some(status) = row.get::<_, Option<i32>>(1) {
                return Ok(Claim::Replay(StoredResponse {
                    status: StatusCode::from_u16(status as u16)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    content_type: row.get::<_, Option<String>>(2).unwrap_or_default(),
                    etag: row.get(3),
                    location: row.get(4),
                    body: row.get::<_, Option<Vec<u8>>>(5).unwrap_or_default(),
                }));
            }
            let stale: bool = row.get(6);
            if stale {
                let taken = client
                    .execute(
                        &prepared(&client, TAKE_OVER_SQL).await?,
                        &[&principal, &key, &(IN_FLIGHT_STALE_MS as f64)],
                    )
                    .await
                    .map_err(failed)?;
                if taken == 1 {
                    return Ok(Claim::Proceed);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-flight",
                    "A request with this key is still being processed",
                    "another request with this Idempotency-Key has not finished yet; retry shortly",
                ));
            }
            tokio::time::sleep(Duration::from_millis(IN_FLIGHT_POLL_MS)).await;
        }
    }

    /// Store the answer for replay.
    pub async fn complete(
        &self,
        principal: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), Problem> {
        let client = self.database.pool().get().await.map_err(failed)?;
        client
            .execute(
                &prepared(&client, COMPLETE_SQL).await?,
                &[
                    &principal,
                    &key,
                    &i32::from(response.status.as_u16()),
                    &response.content_type,
                    &response.etag,
                    &response.location,
                    &response.body,
                ],
            )
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Forget a claim whose request failed on our side, so that a retry runs again.
    pub async fn release(&self, principal: &str, key: &str) {
        let result = async {
            let client = self.database.pool().get().await.map_err(failed)?;
            client
                .execute(&prepared(&client, RELEASE_SQL).await?, &[&principal, &key])
                .await
                .map_err(failed)
        }
        .await;
        if let Err(problem) = result {
            tracing::warn!(detail = %problem.detail, "could not release an idempotency key");
        }
    }
}
