//! The Postgres event store: the embedded default and single-database deployments.
//!
//! Appends go through group commit: concurrent appends (to any streams) queue, and each of a
//! few committer tasks takes whatever is queued and writes it with one call of
//! `event_store.append_batch`: one round trip, one transaction, one commit (one WAL flush),
//! with an outcome per append. Every append is answered only after its transaction committed.
//! There is no deliberate wait for company: a batch is what queued while the previous commit
//! was in flight, so a lone append is written at once and a busy store batches by itself.
//!
//! The store-wide log is ordered by (appending transaction id, sequence) and readers only see
//! events of transactions older than every running one. The migration scripts explain why that
//! order never lets a late commit slip behind a reader's checkpoint.

use crate::database::{Database, DatabaseError, POOL_WAIT_TIMEOUT_MS};
use crate::migrate::{migrate, Migration};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ledger_application::store::{
    check_answered_append, check_append, clamp_read_count, subscription, AnswerKey, AppendResult,
    Appended, EventStore, EventStream, ExpectedVersion, NewAnswer, StoreError, StoredAnswer,
};
use ledger_domain::envelope::{Metadata, NewEvent, Position, RecordedEvent};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("../migrations/event_store/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "append_batch",
        sql: include_str!("../migrations/event_store/0002_append_batch.sql"),
    },
    Migration {
        version: 3,
        name: "answers_and_set_based_appends",
        sql: include_str!("../migrations/event_store/0003_answers_and_set_based_appends.sql"),
    },
];

/// Committer tasks, each writing one batch (one transaction) at a time. More than one lets a
/// batch be prepared and sent while another waits for its commit to reach the disk; more than
/// a few only splits the queue into smaller batches.
pub const GROUP_COMMITTERS: usize = 3;

/// Most appends one group commit carries.
pub const GROUP_COMMIT_APPENDS_MAX: usize = 512;

/// A committer stops taking appends into its batch once it holds this many events, which keeps
/// one transaction short and its parameters within one message of a few megabytes.
pub const GROUP_COMMIT_EVENTS_MAX: usize = 4_096;

/// Appends waiting for a committer; callers wait for room beyond it.
const GROUP_COMMIT_QUEUE_MAX: usize = 8_192;

/// The channel appends notify on; followers wake on it instead of waiting for their next poll.
const NOTIFY_CHANNEL: &str = "event_store_appended";

/// Pause before the listener reconnects after losing its connection. Followers keep polling
/// meanwhile, so a longer pause only costs latency, never events.
const LISTENER_RECONNECT_DELAY_MS: u64 = 1_000;

const EVENT_COLUMNS: &str = "transaction_id, sequence, event_id, stream, version, event_type, \
                             schema_version, data, metadata, recorded_at";

const APPEND_REQUESTS_SQL: &str =
    "SELECT request, outcome, stream_version, last_transaction_id, last_sequence, \
     conflicting_event_id, answer_scope, answer_key, answer_fingerprint, answer \
     FROM event_store.append_requests($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                                      $14, $15, $16)";

const KEPT_ANSWERS_SQL: &str = "SELECT k.scope, k.key, k.fingerprint, k.answer \
     FROM unnest($1::text[], $2::text[]) AS a(scope, key) \
     JOIN event_store.answers k ON k.scope = a.scope AND k.key = a.key";

const FORGET_ANSWERS_SQL: &str = "DELETE FROM event_store.answers WHERE recorded_at < $1";

/// The visibility bound of the store-wide log: transactions below it have all ended.
const VISIBLE_BOUND: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

#[derive(Clone)]
pub struct PostgresStore {
    database: Database,
    /// Bumped by the listener task on every notification from an append.
    appended: watch::Receiver<u64>,
    /// Test-only fault injection: hold each append's transaction open for a random time up to
    /// this long before committing, to provoke out-of-order commits.
    commit_delay_max: Option<Duration>,
    /// Where appends queue for the committers.
    queue: mpsc::Sender<PendingAppend>,
}

struct PendingAppend {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    answers: Vec<NewAnswer>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

impl PostgresStore {
    /// Queue an append for the committers and wait for its outcome.
    async fn enqueue(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        answers: Vec<NewAnswer>,
    ) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = PendingAppend {
            stream: stream.to_owned(),
            expected,
            events,
            answers,
            reply,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| StoreError::unavailable_because("the event store's committers stopped"))?;
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::backend_because(
                "a committer stopped before answering an append",
            ))
        })
    }

    /// Apply the event store's migrations and start listening for appends.
    pub async fn open(database: Database) -> Result<Self, DatabaseError> {
        let mut client = database.client().await?;
        migrate(&mut client, "event_store", MIGRATIONS).await?;
        drop(client);
        Ok(Self::start(database, None))
    }

    fn start(database: Database, commit_delay_max: Option<Duration>) -> Self {
        let (sender, appended) = watch::channel(0);
        tokio::spawn(listen(database.config().clone(), Arc::new(sender)));
        let (queue, receiver) = mpsc::channel(GROUP_COMMIT_QUEUE_MAX);
        let store = Self {
            database,
            appended,
            commit_delay_max,
            queue,
        };
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..GROUP_COMMITTERS {
            tokio::spawn(commit_loop(store.committer(), receiver.clone()));
        }
        store
    }

    /// A handle for a committer task: everything but the queue, so that the committers end
    /// once every store handle (and with it every sender) is gone.
    fn committer(&self) -> Committer {
        Committer {
            database: self.database.clone(),
            commit_delay_max: self.commit_delay_max,
        }
    }

    /// Fault injection for tests: delay every commit by a random time up to `delay_max`.
    pub fn with_commit_delay_for_tests(self, delay_max: Duration) -> Self {
        Self::start(self.database, Some(delay_max))
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        pooled(&self.database).await
    }

    /// How many events of the store-wide log lie after `after` (all when `None`), counting
    /// committed and not yet visible ones alike: an estimate for progress reports, cheap here
    /// and not part of the port.
    pub async fn count_after(&self, after: Option<Position>) -> Result<u64, StoreError> {
        let (commit, prepare) = position_param(after);
        let rows = self
            .query(
                "SELECT count(*) FROM event_store.events \
                 WHERE (transaction_id, sequence) > ($1, $2)",
                &[&commit, &prepare],
            )
            .await?;
        Ok(to_u64(rows[0].get(0)))
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(backend)?;
        client.query(&statement, params).await.map_err(backend)
    }
}

enum CallError {
    UniqueViolation,
    Store(StoreError),
}

impl From<tokio_postgres::Error> for CallError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Self::UniqueViolation
        } else {
            Self::Store(backend(error))
        }
    }
}

fn backend(error: tokio_postgres::Error) -> StoreError {
    if error.is_closed() || error.as_db_error().is_none() {
        return StoreError::unavailable(error);
    }
    let code = error.code().map_or("", |code| code.code()).to_owned();
    StoreError::backend(format_args!("PostgreSQL error {code}"), error)
}

fn encode_expected(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Exact(v) => i64::try_from(v).expect("stream versions stay below i64::MAX"),
        ExpectedVersion::NoStream => -1,
        ExpectedVersion::Any => -2,
        ExpectedVersion::StreamExists => -3,
    }
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).expect("stored versions, transaction ids and sequences are non-negative")
}

fn decode_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let metadata: serde_json::Value = row.get("metadata");
    let metadata: Metadata = serde_json::from_value(metadata)
        .map_err(|e| StoreError::backend("stored metadata is not readable", e))?;
    Ok(RecordedEvent {
        event_id: row.get("event_id"),
        stream: row.get("stream"),
        version: to_u64(row.get("version")),
        position: Position {
            commit: to_u64(row.get("transaction_id")),
            prepare: to_u64(row.get("sequence")),
        },
        event_type: row.get("event_type"),
        schema_version: row.get::<_, i32>("schema_version") as u32,
        data: row.get("data"),
        metadata,
        recorded_at: row.get("recorded_at"),
    })
}

fn position_param(position: Option<Position>) -> (i64, i64) {
    position.map_or((-1, -1), |p| {
        (
            i64::try_from(p.commit).unwrap_or(i64::MAX),
            i64::try_from(p.prepare).unwrap_or(i64::MAX),
        )
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    #[tracing::instrument(name = "event_store.append", skip_all, fields(stream, events = events.len()))]
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        check_append(&events)?;
        match self.enqueue(stream, expected, events, Vec::new()).await? {
            Appended::Written(Some(result)) => Ok(result),
            other => Err(StoreError::backend_because(format!(
                "an append without answers was answered {other:?}"
            ))),
        }
    }

    async fn append_answered(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        answers: Vec<NewAnswer>,
    ) -> Result<Appended, StoreError> {
        check_answered_append(&events, &answers)?;
        let stream = if events.is_empty() { "" } else { stream };
        self.enqueue(stream, expected, events, answers).await
    }

    async fn kept_answers(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError> {
        let scopes: Vec<&str> = keys.iter().map(|k| k.scope.as_str()).collect();
        let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        Ok(self
            .query(KEPT_ANSWERS_SQL, &[&scopes, &names])
            .await?
            .iter()
            .map(|row| StoredAnswer {
                key: AnswerKey {
                    scope: row.get(0),
                    key: row.get(1),
                },
                fingerprint: row.get(2),
                answer: row.get(3),
            })
            .collect())
    }

    async fn forget_answers(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(FORGET_ANSWERS_SQL)
            .await
            .map_err(backend)?;
        client
            .execute(&statement, &[&kept_before])
            .await
            .map_err(backend)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM event_store.events \
             WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3"
        );
        let from_version = i64::try_from(from_version).unwrap_or(i64::MAX);
        let limit = clamp_read_count(max_count) as i64;
        self.query(&sql, &[&stream, &from_version, &limit])
            .await?
            .iter()
            .map(decode_event)
            .collect()
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM event_store.events \
             WHERE (transaction_id, sequence) > ($1, $2) AND transaction_id < {VISIBLE_BOUND} \
             ORDER BY transaction_id, sequence LIMIT $3"
        );
        let (commit, prepare) = position_param(after);
        let limit = clamp_read_count(max_count) as i64;
        self.query(&sql, &[&commit, &prepare, &limit])
            .await?
            .iter()
            .map(decode_event)
            .collect()
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        let sql = format!(
            "SELECT transaction_id, sequence FROM event_store.events \
             WHERE transaction_id < {VISIBLE_BOUND} \
             ORDER BY transaction_id DESC, sequence DESC LIMIT 1"
        );
        Ok(self.query(&sql, &[]).await?.first().map(|row| Position {
            commit: to_u64(row.get(0)),
            prepare: to_u64(row.get(1)),
        }))
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventStream {
        subscription::follow(self.clone(), after, self.appended.clone())
    }
}

async fn pooled(database: &Database) -> Result<deadpool_postgres::Object, StoreError> {
    database.pool().get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Timeout(_) => StoreError::Timeout {
            timeout_ms: POOL_WAIT_TIMEOUT_MS,
        },
        other => StoreError::unavailable(other),
    })
}

/// What a committer task needs to write batches.
struct Committer {
    database: Database,
    commit_delay_max: Option<Duration>,
}

/// Take what is queued (at least one append, at most the batch bounds, one append per stream),
/// write it as one group commit, answer every append, repeat; end when every store handle is
/// gone. An append for a stream already in the batch waits for this committer's next batch, so
/// one transaction never holds two appends of one stream and their order is kept.
async fn commit_loop(committer: Committer, queue: Arc<Mutex<mpsc::Receiver<PendingAppend>>>) {
    let mut deferred: VecDeque<PendingAppend> = VecDeque::new();
    loop {
        let mut batch = Vec::new();
        let mut streams = HashSet::new();
        let mut events = 0;
        let mut still_deferred = VecDeque::new();
        while let Some(pending) = deferred.pop_front() {
            if batch.len() < GROUP_COMMIT_APPENDS_MAX
                && events < GROUP_COMMIT_EVENTS_MAX
                && (pending.stream.is_empty() || streams.insert(pending.stream.clone()))
            {
                events += pending.events.len();
                batch.push(pending);
            } else {
                still_deferred.push_back(pending);
            }
        }
        deferred = still_deferred;
        // Another committer may hold the queue while it waits for work: a committer that has
        // deferred appends to write does not wait for it (it would wait for new work that may
        // never come), it only tops its batch up when the queue is free.
        let queue = if batch.is_empty() {
            Some(queue.lock().await)
        } else {
            queue.try_lock().ok()
        };
        if let Some(mut queue) = queue {
            if batch.is_empty() {
                let Some(first) = queue.recv().await else {
                    return;
                };
                streams.insert(first.stream.clone());
                events += first.events.len();
                batch.push(first);
            }
            while batch.len() < GROUP_COMMIT_APPENDS_MAX && events < GROUP_COMMIT_EVENTS_MAX {
                let Ok(pending) = queue.try_recv() else {
                    break;
                };
                if pending.stream.is_empty() || streams.insert(pending.stream.clone()) {
                    events += pending.events.len();
                    batch.push(pending);
                } else {
                    deferred.push_back(pending);
                }
            }
        }
        metrics::histogram!("ledger_group_commit_appends").record(batch.len() as f64);
        committer.commit(batch).await;
    }
}

impl Committer {
    #[tracing::instrument(name = "event_store.group_commit", skip_all, fields(appends = batch.len()))]
    async fn commit(&self, batch: Vec<PendingAppend>) {
        let mut batch = batch;
        // Each pass either writes the batch, or (when some keys were answered before) answers
        // those appends and writes nothing; the rest then go again. Bounded by the batch size.
        while !batch.is_empty() {
            match self.call(&batch, false).await {
                Ok(rows) => {
                    let mut outcomes = decode_outcomes(&rows, &batch);
                    let answered_before = outcomes
                        .iter()
                        .any(|o| matches!(o, Some(Ok(Appended::AnsweredBefore(_)))));
                    let mut rest = Vec::new();
                    for (pending, outcome) in batch.into_iter().zip(outcomes.drain(..)) {
                        match outcome {
                            Some(outcome) => {
                                let _ = pending.reply.send(outcome);
                            }
                            None if answered_before => rest.push(pending),
                            None => {
                                let _ = pending.reply.send(Err(StoreError::backend_because(
                                    "append_requests answered no row for an append",
                                )));
                            }
                        }
                    }
                    batch = rest;
                }
                Err(CallError::UniqueViolation) => {
                    // An event id (or an answer's key) of the batch was committed meanwhile by
                    // another transaction: the whole transaction rolled back. Write each append
                    // on its own, looking for retries first, where such a collision resolves
                    // to the original result.
                    for pending in batch {
                        let outcome = self.append_carefully(&pending).await;
                        let _ = pending.reply.send(outcome);
                    }
                    return;
                }
                Err(CallError::Store(error)) => {
                    for pending in batch {
                        let _ = pending.reply.send(Err(error.clone()));
                    }
                    return;
                }
            }
        }
    }

    /// One append on its own, with the look-up for retries first; asked once more after a
    /// unique violation (a concurrent identical append committed first).
    async fn append_carefully(&self, pending: &PendingAppend) -> Result<Appended, StoreError> {
        for _ in 0..2 {
            match self.call(std::slice::from_ref(pending), true).await {
                Ok(rows) => {
                    return decode_outcomes(&rows, std::slice::from_ref(pending))
                        .pop()
                        .flatten()
                        .unwrap_or_else(|| {
                            Err(StoreError::backend_because(
                                "append_requests answered no row for an append",
                            ))
                        })
                }
                Err(CallError::UniqueViolation) => continue,
                Err(CallError::Store(error)) => return Err(error),
            }
        }
        Err(StoreError::backend_because(
            "event ids collided twice in a row with a concurrent append",
        ))
    }

    async fn call(&self, batch: &[PendingAppend], careful: bool) -> Result<Vec<Row>, CallError> {
        let streams: Vec<&str> = batch.iter().map(|p| p.stream.as_str()).collect();
        let expected: Vec<i64> = batch.iter().map(|p| encode_expected(p.expected)).collect();
        let counts: Vec<i32> = batch.iter().map(|p| p.events.len() as i32).collect();
        let events = batch.iter().flat_map(|p| p.events.iter());
        let ids: Vec<uuid::Uuid> = events.clone().map(|e| e.event_id).collect();
        let indexes: Vec<i32> = batch
            .iter()
            .flat_map(|p| 0..p.events.len() as i32)
            .collect();
        let types: Vec<&str> = events.clone().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<i32> = events.clone().map(|e| e.schema_version as i32).collect();
        let data: Vec<&serde_json::Value> = events.clone().map(|e| &e.data).collect();
        let metadata: Vec<serde_json::Value> = events
            .map(|e| serde_json::to_value(&e.metadata).expect("metadata always serialises"))
            .collect();
        let mut answer_requests: Vec<i32> = Vec::new();
        let mut scopes: Vec<&str> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        let mut fingerprints: Vec<&str> = Vec::new();
        let mut bodies: Vec<&serde_json::Value> = Vec::new();
        let mut positioned: Vec<bool> = Vec::new();
        for (index, pending) in batch.iter().enumerate() {
            for answer in &pending.answers {
                answer_requests.push(index as i32 + 1);
                scopes.push(&answer.key.scope);
                keys.push(&answer.key.key);
                fingerprints.push(&answer.fingerprint);
                bodies.push(&answer.answer);
                positioned.push(answer.positioned);
            }
        }
        let params: [&(dyn ToSql + Sync); 16] = [
            &streams,
            &expected,
            &counts,
            &careful,
            &ids,
            &indexes,
            &types,
            &versions,
            &data,
            &metadata,
            &answer_requests,
            &scopes,
            &keys,
            &fingerprints,
            &bodies,
            &positioned,
        ];
        self.run(APPEND_REQUESTS_SQL, &params).await
    }

    /// Run one append statement as its own transaction (with the test-only commit delay).
    async fn run(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, CallError> {
        let mut client = pooled(&self.database).await.map_err(CallError::Store)?;
        let statement = client.prepare_cached(sql).await?;
        match self.commit_delay_max {
            None => Ok(client.query(&statement, params).await?),
            Some(delay_max) => {
                let transaction = client.transaction().await?;
                let rows = transaction.query(&statement, params).await?;
                let delay = delay_max.mul_f64(rand::random::<f64>());
                transaction
                    .execute("SELECT pg_sleep($1)", &[&delay.as_secs_f64()])
                    .await?;
                transaction.commit().await?;
                Ok(rows)
            }
        }
    }
}

/// The outcome of each append of `batch` from the function's rows: `None` for an append the
/// function wrote nothing for because other appends' keys were answered before (it goes again).
fn decode_outcomes(
    rows: &[Row],
    batch: &[PendingAppend],
) -> Vec<Option<Result<Appended, StoreError>>> {
    let mut outcomes: Vec<Option<Result<Appended, StoreError>>> =
        (0..batch.len()).map(|_| None).collect();
    for row in rows {
        let index = row.get::<_, i32>("request") as usize - 1;
        let pending = &batch[index];
        let outcome: &str = row.get("outcome");
        if outcome == "answered_before" {
            let answer = StoredAnswer {
                key: AnswerKey {
                    scope: row.get("answer_scope"),
                    key: row.get("answer_key"),
                },
                fingerprint: row.get("answer_fingerprint"),
                answer: row.get("answer"),
            };
            match &mut outcomes[index] {
                Some(Ok(Appended::AnsweredBefore(found))) => found.push(answer),
                slot => *slot = Some(Ok(Appended::AnsweredBefore(vec![answer]))),
            }
            continue;
        }
        outcomes[index] = Some(decode_outcome(row, &pending.stream, pending.expected));
    }
    outcomes
}

fn decode_outcome(
    row: &Row,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<Appended, StoreError> {
    let outcome: &str = row.get("outcome");
    match outcome {
        "answered" => Ok(Appended::Written(None)),
        "appended" | "duplicate" => Ok(Appended::Written(Some(AppendResult {
            version: to_u64(row.get("stream_version")),
            position: Position {
                commit: to_u64(row.get("last_transaction_id")),
                prepare: to_u64(row.get("last_sequence")),
            },
            deduplicated: outcome == "duplicate",
        }))),
        "wrong_expected_version" => Err(StoreError::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected,
            actual: row.get::<_, Option<i64>>("stream_version").map(to_u64),
        }),
        "idempotency_mismatch" => Err(StoreError::IdempotencyMismatch {
            stream: stream.to_owned(),
            event_id: row.get("conflicting_event_id"),
        }),
        other => Err(StoreError::backend_because(format!(
            "the append function answered an unknown outcome {other:?}"
        ))),
    }
}

/// Keep a dedicated connection listening for append notifications and bump `appended` on each,
/// reconnecting after a pause when the connection is lost, until every follower and the store
/// itself are gone.
async fn listen(config: tokio_postgres::Config, appended: Arc<watch::Sender<u64>>) {
    loop {
        if let Err(error) = listen_once(&config, &appended).await {
            tracing::warn!(%error, "event store listener lost its connection; followers poll until it is back");
        }
        tokio::select! {
            _ = appended.closed() => return,
            _ = tokio::time::sleep(Duration::from_millis(LISTENER_RECONNECT_DELAY_MS)) => {}
        }
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    appended: &Arc<watch::Sender<u64>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let notify = appended.clone();
    let mut driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message? {
                AsyncMessage::Notification(_) => notify.send_modify(|count| *count += 1),
                _ => continue,
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    client
        .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await?;
    // Notifications sent while this listener was down are lost: wake everyone once to re-read.
    appended.send_modify(|count| *count += 1);
    tokio::select! {
        _ = appended.closed() => {
            driver.abort();
            Ok(())
        }
        result = &mut driver => match result {
            Ok(result) => result,
            Err(join) => {
                tracing::warn!(error = %join, "event store listener task ended abnormally");
                Ok(())
            }
        },
    }
}
