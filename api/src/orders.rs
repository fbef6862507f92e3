//! Orders: reserve every line of an order all or nothing, and release or confirm every open
//! reservation of an order, across SKUs. The HTTP routes ([`crate::routes::orders`]) and the
//! brokers' order-event consumers call the public functions here: [`reserve_order`],
//! [`release_order`], [`confirm_order`], [`recover`].
//!
//! # Reserving an order is a saga
//! Each SKU is its own stream, and no append spans two streams, so an order of several SKUs
//! cannot be reserved in one transaction. The order reserve is a saga instead: the lines are
//! reserved one after the other through the SKUs' writers, each under a reservation id derived
//! from the key's owner, the key, the order and the line ([`line_reservation_id`]), so a retry
//! meets the holds of the first attempt again (a reserve under an existing id changes nothing)
//! instead of holding twice. When a line is short, the lines after it are only checked, not
//! held (holding units only to give them back at once would turn other orders away), the
//! answer — 409 naming every short line with what is available — is kept, and every line's
//! reservation is released (the compensation). A reservation id is unique forever within its
//! SKU, so a released line can never be held again under the same id, by a late retry or by
//! anything else.
//!
//! # The saga's record: a table in the store's database
//! The attempt is recorded in `api.order_sagas` before its first line is reserved, with its
//! lines (so their reservation ids), its state and, once decided, its answer. A table rather
//! than deriving the saga from the log: the log holds the lines' reservations but not the
//! order's lines that were never reserved, nor the request's fingerprint, nor which attempt an
//! interrupted run belonged to; reading them back from every SKU's stream would need the SKUs,
//! which only the request knows. The table is small (one row per order reserve), lives in the
//! database every deployment has (with EventStoreDB too: the read models' database), and its
//! row is the idempotency record of the order reserve: the same key with another request is
//! refused as for any command, and a retry gets the kept answer.
//!
//! One runner at a time per attempt: the runner holds a PostgreSQL session advisory lock on
//! the attempt, on a connection of its own, for as long as it runs; the server drops the lock
//! when the process dies, so "unfinished and unlocked" means "its runner is gone".
//!
//! # Crash safety
//! A process that dies in the middle leaves the row unfinished (`reserving` or
//! `compensating`). [`recover`] runs when the API starts, before it serves: every unfinished
//! attempt whose lock is free is compensated (its lines released), and its retry is answered
//! 409 `order-reserve-interrupted` (reserve again with a new key). A transient failure (the
//! store unavailable) answers 503 and leaves the attempt `reserving`: its retry with the same
//! key resumes it, and completes or compensates it. A release or confirm of the order also
//! compensates an unfinished attempt of it whose runner is gone. Holds with a time-to-live end
//! by themselves in any case.
//!
//! # Finding an order's reservations (release, confirm)
//! Two sources, united: the lines of the order's reserved attempts, from their records (exact
//! at once: no lag), and the reservations read model by order id, which also finds holds made
//! by single reserves that named the order. The read model trails the log, so a release right
//! after a single reserve could miss it: before reading it, the call waits (at most
//! [`READ_MODEL_WAIT_MS`]) until the reservations projection has passed the store's head as it
//! was when the call started, which every acknowledged reserve is at or before. When the
//! projection does not get there in time (stopped, far behind), the call goes on with what the
//! read model has and says so (`read_model_current: false`): releasing the rest is then a
//! retry away, and the answer never claims more than was done.

use crate::answer::{hex, RenderedAnswer};
use crate::problem::Problem;
use crate::state::AppState;
use axum::http::StatusCode;
use ledger_application::command::{CommandContext, CommandError, KeyScope, ReservationRights};
use ledger_domain::{
    Allocation, ConfirmReservation, DomainError, LocationId, OrderId, Quantity, Reason,
    ReleaseReservation, ReservationId, ReservationStatus, ReserveStock, Sku, SkuCommand,
    TtlSeconds,
};
use ledger_postgres::{Database, DatabaseError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most lines one order reserve takes. Each line is one command through a SKU's writer, one
/// after the other, so the bound keeps an order reserve's duration (and its record) small; a
/// basket larger than this is split into several orders by the caller.
pub const ORDER_LINES_MAX: usize = 100;

/// Most reservations one release or confirm of an order ends (one read-model page). An order
/// holds at most a few hundred lines; a larger one is finished by calling again.
pub const ORDER_RESERVATIONS_MAX: u64 = ledger_projections::PAGE_SIZE_MAX;

/// How long a release or confirm of an order waits for the reservations read model to reach
/// the log's head before it goes on with what the model has. A running projector catches up
/// within a batch (tens of milliseconds); two seconds covers a busy one without holding a
/// broker consumer for long when projections are stopped.
pub const READ_MODEL_WAIT_MS: u64 = 2_000;

/// How often that wait looks at the projection's checkpoint.
const READ_MODEL_POLL_MS: u64 = 20;

/// Most unfinished attempts one recovery pass compensates; the rest wait for the next start
/// (or for their retries). A crash leaves at most one per in-flight request.
pub const RECOVERY_SAGAS_MAX: i64 = 10_000;

/// Connections of the orders' pool: records are read and written a few times per order
/// reserve; the runners' locks are on connections of their own.
pub const ORDERS_POOL_SIZE: usize = 4;

/// The first half of every order-saga lock key ("ords"), so these locks never collide with
/// the event store's per-stream locks, the projections' locks or the migration lock.
pub const SAGA_LOCK_CLASS: i32 = 0x6f72_6473;

/// The principal recorded on events of compensations run by recovery.
pub const RECOVERY_PRINCIPAL: &str = "system:orders";

/// Test hook: the environment variable naming after how many reserved lines an order reserve
/// aborts the process, as a crash would. Honoured only by debug builds (the test builds);
/// release builds ignore it (and say so once at start).
pub const FAULT_CRASH_AFTER_LINES_VARIABLE: &str = "LEDGER_FAULT_ORDER_CRASH_AFTER_LINES";

/// The test hook's setting ([`FAULT_CRASH_AFTER_LINES_VARIABLE`]), read once at start.
#[cfg(debug_assertions)]
pub fn crash_after_lines_hook() -> Option<usize> {
    let value = std::env::var(FAULT_CRASH_AFTER_LINES_VARIABLE).ok()?;
    let lines = value.parse().ok()?;
    tracing::warn!(
        lines,
        "test hook: order reserves abort the process after this many lines"
    );
    Some(lines)
}

/// The test hook's setting: never, in a release build.
#[cfg(not(debug_assertions))]
pub fn crash_after_lines_hook() -> Option<usize> {
    if std::env::var_os(FAULT_CRASH_AFTER_LINES_VARIABLE).is_some() {
        tracing::warn!(
            "{FAULT_CRASH_AFTER_LINES_VARIABLE} is a test hook of debug builds; ignored"
        );
    }
    None
}

/// Who acts, for the events' metadata and the reservation rights.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The principal recorded on the events (a token's name, or `system:<worker>`).
    pub principal: String,
    /// Recorded on every event the call appends; a broker consumer passes the message's.
    pub correlation_id: Option<String>,
    /// What caused the call (a request id, a message id).
    pub causation_id: Option<String>,
    /// Whose reservations the actor may end: a client only its own, operators and workers
    /// any.
    pub rights: ReservationRights,
    /// The request's trace, recorded on the events (see [`CommandContext::traceparent`]).
    pub traceparent: Option<String>,
}

impl Actor {
    /// A system worker (a broker consumer, recovery): may end any reservation.
    pub fn system(principal: &str, correlation_id: Option<String>) -> Self {
        Self {
            principal: principal.to_owned(),
            correlation_id,
            causation_id: None,
            rights: ReservationRights::Any,
            traceparent: None,
        }
    }

    fn context(&self) -> CommandContext {
        CommandContext {
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            principal: Some(self.principal.clone()),
            idempotency_key: None,
            key_scope: KeyScope::Principal,
            fingerprint: None,
            expected_version: None,
            reservation_rights: self.rights,
            traceparent: self.traceparent.clone(),
        }
    }
}

/// One line of an order: like a single reserve (at one location, optionally with a
/// time-to-live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub location: LocationId,
    pub ttl_seconds: Option<TtlSeconds>,
}

/// An order reserve as the HTTP route hands it over.
#[derive(Debug, Clone)]
pub struct ReserveOrder {
    pub order_id: OrderId,
    pub lines: Vec<OrderLine>,
    /// The key's owner (`principal:<name>`) and the key.
    pub scope: String,
    pub idempotency_key: String,
    /// Method, path and canonical body, hashed: the same key with another request is refused.
    pub fingerprint: String,
    pub actor: Actor,
}

/// A line as recorded: the request's line and the reservation id it is held under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SagaLine {
    sku: Sku,
    reservation_id: String,
    quantity: u64,
    location: String,
    ttl_seconds: Option<u64>,
}

/// A line of a 201 answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HeldLine {
    /// The line's number in the request, from 1.
    pub line: u64,
    pub sku: String,
    pub reservation_id: String,
    pub quantity: u64,
    pub location: String,
    pub ttl_seconds: Option<u64>,
}

/// The answer to an order reserve that held every line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderReservedBody {
    pub order_id: String,
    pub lines: Vec<HeldLine>,
}

/// A short line of a 409 `order-insufficient-stock` answer.
#[derive(Debug, Clone, Serialize)]
pub struct ShortLine {
    pub line: u64,
    pub sku: String,
    pub location: String,
    pub requested: u64,
    pub available: u64,
}

/// What an attempt's record says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SagaStatus {
    Reserving,
    Compensating,
    Reserved,
    Refused,
    Released,
    Confirmed,
}

impl SagaStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reserving => "reserving",
            Self::Compensating => "compensating",
            Self::Reserved => "reserved",
            Self::Refused => "refused",
            Self::Released => "released",
            Self::Confirmed => "confirmed",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "reserving" => Self::Reserving,
            "compensating" => Self::Compensating,
            "reserved" => Self::Reserved,
            "refused" => Self::Refused,
            "released" => Self::Released,
            "confirmed" => Self::Confirmed,
            _ => return None,
        })
    }
}

/// An answer as kept in the record: status and body, rendered again for a retry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeptOrderAnswer {
    status: u16,
    body: serde_json::Value,
}

impl KeptOrderAnswer {
    fn of_problem(problem: &Problem) -> Self {
        Self {
            status: problem.status.as_u16(),
            body: problem.document(),
        }
    }

    fn render(&self) -> RenderedAnswer {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut answer = RenderedAnswer::json(status, &self.body);
        if status.is_client_error() || status.is_server_error() {
            answer.content_type = crate::problem::PROBLEM_CONTENT_TYPE.into();
        }
        answer
    }
}

/// An attempt's row.
struct SagaRecord {
    order_id: String,
    fingerprint: String,
    principal: String,
    correlation_id: Option<String>,
    lines: Vec<SagaLine>,
    status: SagaStatus,
    answer: Option<KeptOrderAnswer>,
}

/// The reservation id of line `line` (from 1) of an attempt: a digest of the key's owner, the
/// key and the order, so that a retry of the attempt finds its lines and another attempt (a
/// new key) never meets them. `order-<24 hex digits>-<line>` stays far inside the identifier
/// length whatever the order id is.
pub fn line_reservation_id(scope: &str, key: &str, order_id: &OrderId, line: u64) -> String {
    format!(
        "order-{}-{line}",
        &attempt_digest(scope, key, order_id)[..24]
    )
}

fn attempt_digest(scope: &str, key: &str, order_id: &OrderId) -> String {
    let mut hasher = Sha256::new();
    for part in ["order-reserve", scope, key, order_id.as_str()] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex(&hasher.finalize())
}

/// The advisory lock key of an attempt (second half; the first is [`SAGA_LOCK_CLASS`]).
fn lock_key(scope: &str, key: &str) -> i32 {
    let mut hasher = Sha256::new();
    for part in ["order-saga-lock", scope, key] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A dedicated connection holding one attempt's lock; dropping it closes the connection,
/// which gives the lock back whatever happened to the task that held it.
struct SagaLock {
    client: tokio_postgres::Client,
}

impl SagaLock {
    async fn connect(database: &Database) -> Result<Self, DatabaseError> {
        let mut config = database.config().clone();
        config.application_name(format!("order-saga pid {}", std::process::id()));
        let (client, connection) = database
            .connect_dedicated(&config)
            .await
            .map_err(DatabaseError::query("connect for an order saga's lock"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "order saga lock connection ended");
            }
        });
        Ok(Self { client })
    }

    /// Wait for the lock (bounded by the statement timeout of the orders' pool settings).
    async fn acquire(database: &Database, scope: &str, key: &str) -> Result<Self, DatabaseError> {
        let lock = Self::connect(database).await?;
        let timeout = database
            .deadline()
            .map_or(30_000, |deadline| deadline.as_millis() as u64);
        lock.client
            .batch_execute(&format!("SET statement_timeout = {timeout}"))
            .await
            .map_err(DatabaseError::query("set the saga lock's timeout"))?;
        lock.client
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&SAGA_LOCK_CLASS, &lock_key(scope, key)],
            )
            .await
            .map_err(DatabaseError::query("lock an order saga"))?;
        Ok(lock)
    }

    /// Take the lock if nobody holds it; `None` when a live runner does.
    async fn try_acquire(
        database: &Database,
        scope: &str,
        key: &str,
    ) -> Result<Option<Self>, DatabaseError> {
        let lock = Self::connect(database).await?;
        let row = lock
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&SAGA_LOCK_CLASS, &lock_key(scope, key)],
            )
            .await
            .map_err(DatabaseError::query("try an order saga's lock"))?;
        Ok(row.get::<_, bool>(0).then_some(lock))
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

async fn load_record(
    database: &Database,
    scope: &str,
    key: &str,
) -> Result<Option<SagaRecord>, Problem> {
    let row = database
        .with_client(async |client| {
            client
                .query_opt(
                    "SELECT order_id, fingerprint, principal, correlation_id, lines, status, \
                     answer FROM api.order_sagas WHERE scope = $1 AND idempotency_key = $2",
                    &[&scope, &key],
                )
                .await
                .map_err(DatabaseError::query("read an order saga"))
        })
        .await?;
    row.map(|row| record(&row)).transpose()
}

/// A row read back; one that does not decode is ours to look at (500, logged).
fn record(row: &tokio_postgres::Row) -> Result<SagaRecord, Problem> {
    let corrupt = |what: &str, message: String| {
        Problem::internal(&format!(
            "api.order_sagas holds an unreadable {what}: {message}"
        ))
    };
    let lines: serde_json::Value = row.get("lines");
    let answer: Option<serde_json::Value> = row.get("answer");
    let status: &str = row.get("status");
    Ok(SagaRecord {
        order_id: row.get("order_id"),
        fingerprint: row.get("fingerprint"),
        principal: row.get("principal"),
        correlation_id: row.get("correlation_id"),
        lines: serde_json::from_value(lines).map_err(|e| corrupt("lines", e.to_string()))?,
        status: SagaStatus::parse(status).ok_or_else(|| corrupt("status", status.to_owned()))?,
        answer: answer
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt("answer", e.to_string()))?,
    })
}

/// Record a new attempt; `false` when another attempt holds (or is taking) stock for the order.
async fn insert_record(
    database: &Database,
    request: &ReserveOrder,
    lines: &[SagaLine],
) -> Result<bool, DatabaseError> {
    let lines = serde_json::to_value(lines).expect("saga lines serialise");
    database
        .with_client(async |client| {
            let inserted = client
                .execute(
                    "INSERT INTO api.order_sagas (scope, idempotency_key, order_id, fingerprint, \
                         principal, correlation_id, lines, status) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'reserving') ON CONFLICT DO NOTHING",
                    &[
                        &request.scope,
                        &request.idempotency_key,
                        &request.order_id.as_str(),
                        &request.fingerprint,
                        &request.actor.principal,
                        &request.actor.correlation_id,
                        &lines,
                    ],
                )
                .await
                .map_err(DatabaseError::query("record an order saga"))?;
            Ok(inserted == 1)
        })
        .await
}

/// Move an attempt from `from` to `to` (keeping `answer` when given); `false` when it was no
/// longer in `from`.
async fn advance(
    database: &Database,
    scope: &str,
    key: &str,
    from: SagaStatus,
    to: SagaStatus,
    answer: Option<&KeptOrderAnswer>,
) -> Result<bool, DatabaseError> {
    let answer = answer.map(|a| serde_json::to_value(a).expect("answers serialise"));
    database
        .with_client(async |client| {
            let updated = client
                .execute(
                    "UPDATE api.order_sagas SET status = $4, answer = coalesce($5, answer), \
                         updated_at = now() \
                     WHERE scope = $1 AND idempotency_key = $2 AND status = $3",
                    &[&scope, &key, &from.as_str(), &to.as_str(), &answer],
                )
                .await
                .map_err(DatabaseError::query("advance an order saga"))?;
            Ok(updated == 1)
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// Reserving an order
// ---------------------------------------------------------------------------------------------

/// Reserve every line of an order, all or nothing; the answer as rendered for HTTP (201 with
/// the held lines, 409 naming every short line, or a kept answer for a retry). `Err` is a
/// passing failure (503): the attempt stays open and its retry with the same key resumes it.
pub async fn reserve_order(
    state: &AppState,
    request: ReserveOrder,
) -> Result<RenderedAnswer, Problem> {
    let orders = &state.orders;
    let _lock =
        SagaLock::acquire(&orders.database, &request.scope, &request.idempotency_key).await?;
    let lines = saga_lines(&request);
    let record =
        match load_record(&orders.database, &request.scope, &request.idempotency_key).await? {
            Some(record) => record,
            None => {
                if !insert_record(&orders.database, &request, &lines).await? {
                    return Ok(RenderedAnswer::problem(&order_held_elsewhere(
                        &request.order_id,
                    )));
                }
                SagaRecord {
                    order_id: request.order_id.to_string(),
                    fingerprint: request.fingerprint.clone(),
                    principal: request.actor.principal.clone(),
                    correlation_id: request.actor.correlation_id.clone(),
                    lines,
                    status: SagaStatus::Reserving,
                    answer: None,
                }
            }
        };
    if record.fingerprint != request.fingerprint {
        return Ok(RenderedAnswer::problem(&Problem::from(
            CommandError::IdempotencyKeyReused {
                key: request.idempotency_key.clone(),
            },
        )));
    }
    let attempt = Attempt {
        state,
        scope: &request.scope,
        key: &request.idempotency_key,
        actor: &request.actor,
    };
    attempt.run(record).await
}

/// What a line of the request is recorded as.
fn saga_lines(request: &ReserveOrder) -> Vec<SagaLine> {
    request
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| SagaLine {
            sku: line.sku.clone(),
            reservation_id: line_reservation_id(
                &request.scope,
                &request.idempotency_key,
                &request.order_id,
                index as u64 + 1,
            ),
            quantity: line.quantity.get(),
            location: line.location.as_str().to_owned(),
            ttl_seconds: line.ttl_seconds.map(TtlSeconds::get),
        })
        .collect()
}

fn order_held_elsewhere(order_id: &OrderId) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "order-already-reserved",
        "The order is already reserved",
        "another reserve of this order (another Idempotency-Key) holds or is taking its stock; \
         release the order first, or retry with that request's key",
    )
    .with("order_id", order_id.as_str())
}

/// One attempt, run by the holder of its lock.
struct Attempt<'a> {
    state: &'a AppState,
    scope: &'a str,
    key: &'a str,
    actor: &'a Actor,
}

/// How one line's reserve went.
enum LineOutcome {
    Held,
    Short(ShortLine),
    Refused(DomainError),
}

impl Attempt<'_> {
    /// Carry the attempt on from where its record says it is.
    async fn run(&self, record: SagaRecord) -> Result<RenderedAnswer, Problem> {
        match (record.status, &record.answer) {
            (SagaStatus::Reserving, _) => self.reserve_lines(&record).await,
            (SagaStatus::Compensating, Some(answer)) => {
                self.compensate(&record.lines).await?;
                self.advance(SagaStatus::Compensating, SagaStatus::Refused, None)
                    .await?;
                Ok(answer.render())
            }
            (_, Some(answer)) => Ok(answer.render()),
            (status, None) => Err(Problem::internal(&format!(
                "order saga {} is {} without an answer",
                record.order_id,
                status.as_str()
            ))),
        }
    }

    async fn advance(
        &self,
        from: SagaStatus,
        to: SagaStatus,
        answer: Option<&KeptOrderAnswer>,
    ) -> Result<bool, DatabaseError> {
        advance(
            &self.state.orders.database,
            self.scope,
            self.key,
            from,
            to,
            answer,
        )
        .await
    }

    /// Reserve the lines in order; at the first short one, check the rest without holding
    /// them, keep the refusal and compensate.
    async fn reserve_lines(&self, record: &SagaRecord) -> Result<RenderedAnswer, Problem> {
        let order_id = OrderId::parse(&record.order_id).map_err(|e| Problem::internal(&e))?;
        let mut short = Vec::new();
        let mut refused = None;
        for (index, line) in record.lines.iter().enumerate() {
            let number = index as u64 + 1;
            let holding = short.is_empty() && refused.is_none();
            let outcome = if holding {
                self.reserve_line(&order_id, line, number).await?
            } else {
                self.check_line(line, number).await?
            };
            match outcome {
                LineOutcome::Held => {
                    if holding && self.state.orders.crash_after_lines == Some(index + 1) {
                        tracing::error!(order_id = %order_id, "test hook: crashing mid-order");
                        std::process::abort();
                    }
                }
                LineOutcome::Short(line) => short.push(line),
                LineOutcome::Refused(error) => {
                    refused.get_or_insert((number, line.sku.clone(), error));
                }
            }
        }
        let problem = match refused {
            Some((number, sku, error)) => Some(
                Problem::from(error)
                    .with("order_id", order_id.as_str())
                    .with("line", number)
                    .with("sku", sku.as_str()),
            ),
            None if !short.is_empty() => Some(insufficient_stock(&order_id, &short)),
            None => None,
        };
        match problem {
            Some(problem) => self.refuse(record, &problem).await,
            None => self.complete(record, &order_id).await,
        }
    }

    async fn reserve_line(
        &self,
        order_id: &OrderId,
        line: &SagaLine,
        number: u64,
    ) -> Result<LineOutcome, Problem> {
        let command = SkuCommand::Reserve(ReserveStock {
            reservation_id: ReservationId::parse(&line.reservation_id)
                .map_err(|e| Problem::internal(&e))?,
            order_id: Some(order_id.clone()),
            quantity: Quantity::new(line.quantity).map_err(|e| Problem::internal(&e))?,
            ttl_seconds: line
                .ttl_seconds
                .map(|ttl| TtlSeconds::new(ttl as i64))
                .transpose()
                .map_err(|e| Problem::internal(&e))?,
            allocation: Allocation::At(
                LocationId::parse(&line.location).map_err(|e| Problem::internal(&e))?,
            ),
        });
        match self
            .state
            .writers
            .execute(&line.sku, command, self.actor.context())
            .await
        {
            Ok(_) => Ok(LineOutcome::Held),
            Err(CommandError::Rejected(DomainError::InsufficientStock { available, .. })) => {
                Ok(LineOutcome::Short(short_line(line, number, available)))
            }
            Err(CommandError::Rejected(other)) => Ok(LineOutcome::Refused(other)),
            Err(passing) => Err(Problem::from(passing)),
        }
    }

    /// Whether a line after a short one could be held now, without holding it.
    async fn check_line(&self, line: &SagaLine, number: u64) -> Result<LineOutcome, Problem> {
        let summary = self.state.writers.current(&line.sku).await?;
        if summary.discontinued {
            return Ok(LineOutcome::Refused(DomainError::SkuDiscontinued));
        }
        let available = summary
            .locations
            .get(&line.location)
            .map_or(0, |stock| stock.available());
        Ok(if available < line.quantity {
            LineOutcome::Short(short_line(line, number, available))
        } else {
            LineOutcome::Held
        })
    }

    /// Every line held: keep the 201 answer.
    async fn complete(
        &self,
        record: &SagaRecord,
        order_id: &OrderId,
    ) -> Result<RenderedAnswer, Problem> {
        let body = OrderReservedBody {
            order_id: order_id.to_string(),
            lines: record
                .lines
                .iter()
                .enumerate()
                .map(|(index, line)| HeldLine {
                    line: index as u64 + 1,
                    sku: line.sku.to_string(),
                    reservation_id: line.reservation_id.clone(),
                    quantity: line.quantity,
                    location: line.location.clone(),
                    ttl_seconds: line.ttl_seconds,
                })
                .collect(),
        };
        let answer = KeptOrderAnswer {
            status: StatusCode::CREATED.as_u16(),
            body: serde_json::to_value(&body).expect("answers serialise"),
        };
        if self
            .advance(SagaStatus::Reserving, SagaStatus::Reserved, Some(&answer))
            .await?
        {
            metrics::counter!("ledger_order_reserves_total", "outcome" => "reserved").increment(1);
            return Ok(answer.render());
        }
        // Someone else decided the attempt meanwhile (its lock was lost with a connection):
        // follow the record.
        self.follow_record().await
    }

    /// A line refused: keep the refusal, then release every line.
    async fn refuse(
        &self,
        record: &SagaRecord,
        problem: &Problem,
    ) -> Result<RenderedAnswer, Problem> {
        let answer = KeptOrderAnswer::of_problem(problem);
        if !self
            .advance(
                SagaStatus::Reserving,
                SagaStatus::Compensating,
                Some(&answer),
            )
            .await?
        {
            return self.follow_record().await;
        }
        self.compensate(&record.lines).await?;
        self.advance(SagaStatus::Compensating, SagaStatus::Refused, None)
            .await?;
        metrics::counter!("ledger_order_reserves_total", "outcome" => problem.code).increment(1);
        Ok(answer.render())
    }

    async fn follow_record(&self) -> Result<RenderedAnswer, Problem> {
        let record = load_record(&self.state.orders.database, self.scope, self.key)
            .await?
            .ok_or_else(|| Problem::internal(&"an order saga's record vanished"))?;
        // A compensation found half done is finished here (releasing again is harmless).
        Box::pin(self.run(record)).await
    }

    /// Release every line's reservation; a line never held, or already ended, is fine.
    async fn compensate(&self, lines: &[SagaLine]) -> Result<(), Problem> {
        let reason = Reason::parse("order not reservable in full").expect("a valid reason");
        for line in lines {
            let reservation_id =
                ReservationId::parse(&line.reservation_id).map_err(|e| Problem::internal(&e))?;
            let command = SkuCommand::Release(ReleaseReservation {
                reservation_id,
                reason: Some(reason.clone()),
            });
            let mut context = self.actor.context();
            // Compensation ends the attempt's own holds, whoever runs it.
            context.reservation_rights = ReservationRights::Any;
            match self
                .state
                .writers
                .execute(&line.sku, command, context)
                .await
            {
                Ok(_)
                | Err(CommandError::Rejected(
                    DomainError::ReservationNotFound { .. } | DomainError::ReservationClosed { .. },
                )) => {}
                Err(error) => return Err(Problem::from(error)),
            }
        }
        Ok(())
    }
}

fn short_line(line: &SagaLine, number: u64, available: u64) -> ShortLine {
    ShortLine {
        line: number,
        sku: line.sku.to_string(),
        location: line.location.clone(),
        requested: line.quantity,
        available,
    }
}

fn insufficient_stock(order_id: &OrderId, short: &[ShortLine]) -> Problem {
    let named: Vec<String> = short
        .iter()
        .map(|s| {
            format!(
                "line {} ({}): {} requested, {} available at {}",
                s.line, s.sku, s.requested, s.available, s.location
            )
        })
        .collect();
    Problem::new(
        StatusCode::CONFLICT,
        "order-insufficient-stock",
        "Insufficient stock for the order",
        format!(
            "nothing was held: {} of the order's lines cannot be reserved in full ({})",
            short.len(),
            named.join("; ")
        ),
    )
    .with("order_id", order_id.as_str())
    .with(
        "short_lines",
        serde_json::to_value(short).expect("short lines serialise"),
    )
}

fn interrupted(order_id: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "order-reserve-interrupted",
        "The order reserve was interrupted",
        "the server stopped while reserving this order; the lines it had held were released. \
         Reserve the order again with a new Idempotency-Key",
    )
    .with("order_id", order_id)
}

// ---------------------------------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------------------------------

/// Compensate every unfinished order reserve whose runner is gone (run at start, before
/// serving; safe with other instances running: a live runner's attempt is locked and left
/// alone). Optionally only those of one order. Returns how many were compensated.
pub async fn recover(state: &AppState, order_id: Option<&OrderId>) -> Result<u64, Problem> {
    let database = &state.orders.database;
    let order = order_id.map(OrderId::as_str);
    let rows = database
        .with_client(async |client| {
            client
                .query(
                    "SELECT scope, idempotency_key FROM api.order_sagas \
                     WHERE status IN ('reserving', 'compensating') \
                       AND ($1::text IS NULL OR order_id = $1) \
                     ORDER BY started_at LIMIT $2",
                    &[&order, &RECOVERY_SAGAS_MAX],
                )
                .await
                .map_err(DatabaseError::query("find unfinished order sagas"))
        })
        .await?;
    let mut compensated = 0;
    for row in rows {
        let scope: String = row.get(0);
        let key: String = row.get(1);
        let Some(_lock) = SagaLock::try_acquire(database, &scope, &key).await? else {
            continue;
        };
        let Some(record) = load_record(database, &scope, &key).await? else {
            continue;
        };
        let actor = Actor::system(RECOVERY_PRINCIPAL, record.correlation_id.clone());
        let attempt = Attempt {
            state,
            scope: &scope,
            key: &key,
            actor: &actor,
        };
        match record.status {
            SagaStatus::Reserving => {
                let answer = KeptOrderAnswer::of_problem(&interrupted(&record.order_id));
                if attempt
                    .advance(
                        SagaStatus::Reserving,
                        SagaStatus::Compensating,
                        Some(&answer),
                    )
                    .await?
                {
                    attempt.compensate(&record.lines).await?;
                    attempt
                        .advance(SagaStatus::Compensating, SagaStatus::Refused, None)
                        .await?;
                    compensated += 1;
                }
            }
            SagaStatus::Compensating => {
                attempt.compensate(&record.lines).await?;
                attempt
                    .advance(SagaStatus::Compensating, SagaStatus::Refused, None)
                    .await?;
                compensated += 1;
            }
            _ => continue,
        }
        tracing::info!(
            order_id = %record.order_id,
            principal = %record.principal,
            "compensated an interrupted order reserve"
        );
    }
    if compensated > 0 {
        metrics::counter!("ledger_order_reserves_recovered_total").increment(compensated);
    }
    Ok(compensated)
}

// ---------------------------------------------------------------------------------------------
// Releasing and confirming an order
// ---------------------------------------------------------------------------------------------

/// One reservation of an order that a release or confirm ended, or found ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderReservationEnded {
    pub sku: String,
    pub reservation_id: String,
    /// The units it held (when this call ended it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    /// How it had ended (for one found ended already): released, expired or confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why it could not be ended (for one refused), e.g. `reservation-held-by-another`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What a release or confirm of an order did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderEnded {
    pub order_id: String,
    /// `released` or `confirmed`.
    pub action: String,
    /// The reservations this call ended, by SKU and reservation id.
    pub ended: Vec<OrderReservationEnded>,
    /// Reservations of the order found already ended (by an earlier call, expiry, …).
    pub already_ended: Vec<OrderReservationEnded>,
    /// Reservations this caller may not end (a client's, held by another principal).
    pub refused: Vec<OrderReservationEnded>,
    /// False when the reservations read model had not caught up with the log within
    /// [`READ_MODEL_WAIT_MS`]: a reservation made by a single reserve just now may have been
    /// missed (calling again finds it).
    pub read_model_current: bool,
}

/// How an order is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Release,
    Confirm,
}

/// Release every open reservation of `order_id`, on every SKU: the lines of its reserved order
/// reserves and the holds single reserves made for it. Idempotent: a second call ends nothing
/// more and lists what it found ended. `actor` says who acts (its rights: a client releases
/// only its own holds); `reason` is recorded on each release. `Err` is a passing failure
/// (the store unavailable): what was ended stays ended, and calling again finishes the rest.
pub async fn release_order(
    state: &AppState,
    order_id: &OrderId,
    actor: &Actor,
    reason: Option<&Reason>,
) -> Result<OrderEnded, Problem> {
    end_order(state, order_id, actor, Ending::Release, reason).await
}

/// Confirm every open reservation of `order_id`, on every SKU (the units leave: on hand and
/// reserved drop). Idempotent like [`release_order`], and found the same way.
pub async fn confirm_order(
    state: &AppState,
    order_id: &OrderId,
    actor: &Actor,
) -> Result<OrderEnded, Problem> {
    end_order(state, order_id, actor, Ending::Confirm, None).await
}

async fn end_order(
    state: &AppState,
    order_id: &OrderId,
    actor: &Actor,
    ending: Ending,
    reason: Option<&Reason>,
) -> Result<OrderEnded, Problem> {
    // An attempt of this order whose runner is gone never answered 201: its holds go.
    recover(state, Some(order_id)).await?;
    let read_model_current = wait_for_read_model(state).await?;
    let candidates = order_reservations(state, order_id).await?;
    let mut answer = OrderEnded {
        order_id: order_id.to_string(),
        action: match ending {
            Ending::Release => "released",
            Ending::Confirm => "confirmed",
        }
        .to_owned(),
        ended: Vec::new(),
        already_ended: Vec::new(),
        refused: Vec::new(),
        read_model_current,
    };
    for (sku, reservation_id, listed) in candidates {
        let mut entry = OrderReservationEnded {
            sku: sku.to_string(),
            reservation_id,
            quantity: None,
            status: None,
            problem: None,
        };
        if let Some(status) = listed.filter(|status| *status != ReservationStatus::Open) {
            // Ended before this call (and a reservation never opens again): nothing to send.
            entry.status = Some(status.as_str().to_owned());
            answer.already_ended.push(entry);
            continue;
        }
        let id = ReservationId::parse(&entry.reservation_id).map_err(|e| Problem::internal(&e))?;
        let command = match ending {
            Ending::Release => SkuCommand::Release(ReleaseReservation {
                reservation_id: id,
                reason: reason.cloned(),
            }),
            Ending::Confirm => SkuCommand::Confirm(ConfirmReservation { reservation_id: id }),
        };
        match state.writers.execute(&sku, command, actor.context()).await {
            Ok(outcome) => {
                entry.quantity = outcome.events.iter().find_map(|e| match &e.event {
                    ledger_domain::SkuEvent::Released(r) => Some(r.quantity),
                    ledger_domain::SkuEvent::Confirmed(c) => Some(c.quantity),
                    _ => None,
                });
                answer.ended.push(entry);
            }
            Err(CommandError::Rejected(DomainError::ReservationClosed { status, .. })) => {
                entry.status = Some(status.as_str().to_owned());
                answer.already_ended.push(entry);
            }
            Err(CommandError::Rejected(rejected)) => {
                entry.problem = Some(rejected.code().to_owned());
                answer.refused.push(entry);
            }
            Err(passing) => return Err(Problem::from(passing)),
        }
    }
    if answer.refused.is_empty() {
        close_attempts(state, order_id, ending).await?;
    }
    metrics::counter!("ledger_order_endings_total", "action" => answer.action.clone()).increment(1);
    Ok(answer)
}

/// The order's reserved attempts are over: the order id is free for a new reserve.
async fn close_attempts(
    state: &AppState,
    order_id: &OrderId,
    ending: Ending,
) -> Result<(), DatabaseError> {
    let to = match ending {
        Ending::Release => SagaStatus::Released,
        Ending::Confirm => SagaStatus::Confirmed,
    };
    state
        .orders
        .database
        .with_client(async |client| {
            client
                .execute(
                    "UPDATE api.order_sagas SET status = $2, updated_at = now() \
                     WHERE order_id = $1 AND status = 'reserved'",
                    &[&order_id.as_str(), &to.as_str()],
                )
                .await
                .map_err(DatabaseError::query("close an order's sagas"))?;
            Ok(())
        })
        .await
}

/// Wait until the reservations read model has passed the log's head as it is now; false when
/// it did not within [`READ_MODEL_WAIT_MS`].
async fn wait_for_read_model(state: &AppState) -> Result<bool, Problem> {
    let Some(head) = state.store.head_position().await? else {
        return Ok(true);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(READ_MODEL_WAIT_MS);
    loop {
        let checkpoint = state.read_models.reservations_checkpoint().await?;
        if checkpoint.is_some_and(|position| position >= head) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "the reservations read model did not reach the log's head in time; ending an \
                 order with what it has"
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(READ_MODEL_POLL_MS)).await;
    }
}

/// The order's reservations, each once, by SKU and reservation id, with the status the read
/// model has for it (`None` when it does not list it yet): the lines of its attempts that held
/// their lines (reserved, or since released or confirmed as a whole), from their records, and
/// every reservation the read model has for the order.
async fn order_reservations(
    state: &AppState,
    order_id: &OrderId,
) -> Result<Vec<(Sku, String, Option<ReservationStatus>)>, Problem> {
    let mut found: BTreeMap<(Sku, String), Option<ReservationStatus>> = BTreeMap::new();
    let rows = state
        .orders
        .database
        .with_client(async |client| {
            client
                .query(
                    "SELECT lines FROM api.order_sagas \
                     WHERE order_id = $1 AND status IN ('reserved', 'released', 'confirmed')",
                    &[&order_id.as_str()],
                )
                .await
                .map_err(DatabaseError::query("read an order's sagas"))
        })
        .await?;
    for row in rows {
        let lines: Vec<SagaLine> =
            serde_json::from_value(row.get(0)).map_err(|e| Problem::internal(&e))?;
        for line in lines {
            found.insert((line.sku, line.reservation_id), None);
        }
    }
    let listed = state
        .read_models
        .order_reservations(order_id, None, ORDER_RESERVATIONS_MAX)
        .await?;
    for row in listed {
        found.insert((row.sku, row.reservation_id), Some(row.status));
    }
    Ok(found
        .into_iter()
        .map(|((sku, id), status)| (sku, id, status))
        .collect())
}
