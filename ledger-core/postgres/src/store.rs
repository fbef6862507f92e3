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
//! order never lets a late commit slip behind a reader's checkpoint. The transaction id of a
//! position is the cluster's plus the offset of the current log epoch (see [`crate::epochs`]),
//! so positions keep growing when the database is restored into another cluster.

use crate::database::{
    Database, DatabaseError, DeadlineExceeded, POOL_WAIT_TIMEOUT_MS, STATEMENT_TIMEOUT_MS_DEFAULT,
};
use crate::epochs::begin_epoch_if_outdated;
use crate::migrate::{migrate_with_backfills, Migration};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ledger_application::chain::link_recorded;
use ledger_application::store::{
    check_answered_append, check_append, clamp_read_count, set_answer_position, subscription,
    AnswerKey, AppendResult, Appended, Backlog, EventStore, EventStream, ExpectedVersion,
    NewAnswer, StoreError, StoredAnswer,
};
use ledger_domain::envelope::{Metadata, NewEvent, Position, RecordedEvent};
use ledger_domain::EventHash;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{AsyncMessage, Row};
use tracing::Instrument;

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
        name: "answers",
        sql: include_str!("../migrations/event_store/0003_answers.sql"),
    },
    Migration {
        version: 4,
        name: "hash_chain",
        sql: include_str!("../migrations/event_store/0004_hash_chain.sql"),
    },
    Migration {
        version: 5,
        name: "hash_chain_required",
        sql: include_str!("../migrations/event_store/0005_hash_chain_required.sql"),
    },
    Migration {
        version: 6,
        name: "epochs",
        sql: include_str!("../migrations/event_store/0006_epochs.sql"),
    },
];

/// The migration after whose script the chain of the events written before it is computed
/// (in Rust, with the code that computes it for new events), in the same transaction.
pub const CHAIN_BACKFILL_MIGRATION: i32 = 4;

/// Events the chain's backfill reads, hashes and updates at a time.
const CHAIN_BACKFILL_PAGE_EVENTS: i64 = 4_096;

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

/// How long a committer whose connection was lost in the middle of a commit keeps trying to
/// learn (on another connection) whether the commit landed, before it answers "unknown".
pub const COMMIT_RESOLUTION_MS: u64 = 10_000;

/// Pause before a committer that panicked is started again.
const COMMITTER_RESTART_DELAY_MS: u64 = 100;

/// The write path is reported unhealthy after this many group commits in a row failed, or this
/// many committer panics within [`HEALTH_WINDOW_MS`].
pub const UNHEALTHY_AFTER_FAILURES: u64 = 3;
const HEALTH_WINDOW_MS: u64 = 30_000;

/// Counter: committer tasks restarted after a panic.
pub const METRIC_COMMITTER_RESTARTS: &str = "ledger_group_committer_restarts_total";
/// Counter: group commits whose connection was lost after the commit was sent, by how the
/// outcome was resolved (`written`, `not_written`, `unknown`).
pub const METRIC_COMMIT_RESOLUTIONS: &str = "ledger_group_commit_resolutions_total";

/// A caught-up follower reads the log at most this often: under a steady stream of appends it
/// then reads (and a projector commits) one page of the last few milliseconds' events instead
/// of a page per group commit, at the cost of at most this much added delay.
pub const SUBSCRIPTION_READ_INTERVAL_MIN_MS: u64 = 20;

/// The channel appends notify on; followers wake on it instead of waiting for their next poll.
const NOTIFY_CHANNEL: &str = "event_store_appended";

/// Pause before the listener reconnects after losing its connection. Followers keep polling
/// meanwhile, so a longer pause only costs latency, never events.
const LISTENER_RECONNECT_DELAY_MS: u64 = 1_000;

const EVENT_COLUMNS: &str = "transaction_id, sequence, event_id, stream, version, event_type, \
                             schema_version, data, metadata, recorded_at, hash";

/// Lock the streams of a group commit in one global order (by lock key), so that two group
/// commits sharing streams queue instead of deadlocking. Class 1 is the streams' key space.
const LOCK_STREAMS_SQL: &str = "SELECT pg_advisory_xact_lock(1, k) \
     FROM unnest(ARRAY(SELECT DISTINCT hashtext(s) FROM unnest($1::text[]) AS s ORDER BY 1)) AS k";

const KNOWN_ANSWERS_SQL: &str = "SELECT k.scope, k.key, k.fingerprint, k.answer, \
     k.position_commit, k.position_prepare \
     FROM unnest($1::text[], $2::text[]) AS a(scope, key) \
     JOIN event_store.answers k ON k.scope = a.scope AND k.key = a.key";

const STREAM_VERSIONS_SQL: &str =
    "SELECT stream, version FROM event_store.streams WHERE stream = ANY($1::text[])";

/// The transaction's position (its id, taken here after the locks, plus the current epoch's
/// offset, read in the same statement: migration 0006) and the wall clock, which dates the
/// kept answers; whether the id is at least the one that began the epoch (otherwise the
/// database moved to another cluster under this process). Events carry their own recorded
/// time: their writer chose it (never before the stream's head) and their hash covers it.
const TRANSACTION_IDENTITY_SQL: &str = "SELECT pg_current_xact_id()::text::bigint + \
     e.position_offset, clock_timestamp(), pg_backend_pid(), \
     pg_current_xact_id()::text::bigint >= e.started_xid \
     FROM event_store.epochs e ORDER BY e.epoch DESC LIMIT 1";

const UPSERT_STREAMS_SQL: &str = "INSERT INTO event_store.streams AS s (stream, version) \
     SELECT * FROM unnest($1::text[], $2::bigint[]) \
     ON CONFLICT (stream) DO UPDATE SET version = excluded.version";

const INSERT_EVENTS_SQL: &str = "INSERT INTO event_store.events \
     (transaction_id, sequence, event_id, stream, version, event_type, schema_version, data, \
      metadata, recorded_at, hash) \
     SELECT $1::bigint, e.* FROM unnest($2::bigint[], $3::uuid[], $4::text[], \
         $5::bigint[], $6::text[], $7::integer[], $8::jsonb[], $9::jsonb[], \
         $10::timestamptz[], $11::bytea[]) AS e";

const INSERT_ANSWERS_SQL: &str = "INSERT INTO event_store.answers \
     (scope, key, fingerprint, answer, position_commit, position_prepare, recorded_at) \
     SELECT a.*, $7::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], \
         $5::bigint[], $6::bigint[]) AS a";

const FIND_RETRY_SQL: &str = "SELECT outcome, stream_version, last_transaction_id, \
     last_sequence, conflicting_event_id FROM event_store.find_retry($1, $2)";

const KEPT_ANSWERS_SQL: &str = "SELECT k.scope, k.key, k.fingerprint, k.answer, \
     k.position_commit, k.position_prepare \
     FROM unnest($1::text[], $2::text[]) AS a(scope, key) \
     JOIN event_store.answers k ON k.scope = a.scope AND k.key = a.key";

const FORGET_ANSWERS_SQL: &str = "DELETE FROM event_store.answers WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM event_store.answers WHERE recorded_at < $1 LIMIT $2))";

/// The visibility bound of the store-wide log: transactions below it have all ended. The
/// oldest running transaction's id plus the current epoch's offset, read in one statement
/// (evaluated once per statement).
const VISIBLE_BOUND: &str = "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
     + e.position_offset FROM event_store.epochs e ORDER BY e.epoch DESC LIMIT 1)";

/// How the store's own pools are shaped.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// Statement timeout (and, plus a little, client-side deadline) of appends and reads.
    pub statement_timeout: Duration,
    /// Connections of the pool that loads streams and reads the log; the committers have
    /// their own ([`GROUP_COMMITTERS`] + 1, with `synchronous_commit = on` whatever the
    /// server's default), so that reads never starve appends.
    pub read_pool_size: usize,
}

impl StoreSettings {
    /// The defaults, with a read pool as large as `database`'s.
    pub fn for_database(database: &Database) -> Self {
        Self {
            statement_timeout: Duration::from_millis(STATEMENT_TIMEOUT_MS_DEFAULT),
            read_pool_size: database.pool().status().max_size,
        }
    }
}

/// What the committers know of the write path's health.
#[derive(Default)]
struct Health {
    /// Group commits failed in a row (reset by a success).
    failures_in_a_row: AtomicU64,
    /// When committers panicked recently.
    panics: std::sync::Mutex<VecDeque<Instant>>,
    /// Test-only: panics still to inject, one per group commit.
    panics_to_inject: AtomicUsize,
}

impl Health {
    fn check(&self) -> Result<(), String> {
        let failures = self.failures_in_a_row.load(Ordering::Relaxed);
        if failures >= UNHEALTHY_AFTER_FAILURES {
            return Err(format!("the last {failures} group commits failed"));
        }
        let mut panics = self.panics.lock().unwrap_or_else(|p| p.into_inner());
        let window = Duration::from_millis(HEALTH_WINDOW_MS);
        while panics.front().is_some_and(|at| at.elapsed() > window) {
            panics.pop_front();
        }
        if panics.len() as u64 >= UNHEALTHY_AFTER_FAILURES {
            return Err(format!(
                "group committers panicked {} times in the last {} s",
                panics.len(),
                HEALTH_WINDOW_MS / 1_000
            ));
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct PostgresStore {
    /// The pool the store was opened with (migrations, counts).
    database: Database,
    /// Stream loads and log reads, bounded by the statement timeout.
    reads: Database,
    /// The committers' pool.
    commits: Database,
    settings: StoreSettings,
    health: Arc<Health>,
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
    /// The appender's span (a writer batch's), so that the group commit that writes the
    /// append shows up in the appender's trace; see [`Committer::commit`].
    caller: tracing::Span,
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
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
        let pending = PendingAppend {
            stream: stream.to_owned(),
            expected,
            events,
            answers,
            reply,
            caller: ledger_application::spans::caller_span(),
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| StoreError::unavailable_because("the event store's committers stopped"))?;
        match answer.await {
            Ok(outcome) => outcome,
            // The committer panicked with this append in its batch: whether the batch
            // committed is not known to anyone else, so look for the events themselves.
            Err(_) => self.committer().resolve_lost(stream, &ids, None).await,
        }
    }

    /// Apply the event store's migrations and start listening for appends.
    pub async fn open(database: Database) -> Result<Self, DatabaseError> {
        let settings = StoreSettings::for_database(&database);
        Self::open_with(database, settings).await
    }

    /// [`PostgresStore::open`] with the store's pools shaped by `settings`.
    pub async fn open_with(
        database: Database,
        settings: StoreSettings,
    ) -> Result<Self, DatabaseError> {
        let mut client = database.client().await?;
        migrate_with_backfills(
            &mut client,
            "event_store",
            MIGRATIONS,
            &[(CHAIN_BACKFILL_MIGRATION, backfill_chain)],
        )
        .await?;
        begin_epoch_if_outdated(&**client)
            .await
            .map_err(DatabaseError::query("beginning a log epoch"))?;
        drop(client);
        Self::start(database, settings, None)
    }

    fn start(
        database: Database,
        settings: StoreSettings,
        commit_delay_max: Option<Duration>,
    ) -> Result<Self, DatabaseError> {
        // Appends must be durable before they are answered, whatever the server's (or a shared
        // role's) default says: the committers' sessions set it themselves.
        let commits = database.with_statement_timeout(
            settings.statement_timeout + commit_delay_max.unwrap_or_default(),
            &[("synchronous_commit", "on")],
            GROUP_COMMITTERS + 1,
        )?;
        let reads = database.with_statement_timeout(
            settings.statement_timeout,
            &[],
            settings.read_pool_size,
        )?;
        let (sender, appended) = watch::channel(0);
        tokio::spawn(listen(database.clone(), Arc::new(sender)));
        let (queue, receiver) = mpsc::channel(GROUP_COMMIT_QUEUE_MAX);
        let store = Self {
            database,
            reads,
            health: Arc::default(),
            commits,
            appended,
            commit_delay_max,
            queue,
            settings,
        };
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..GROUP_COMMITTERS {
            tokio::spawn(supervise(store.committer(), receiver.clone()));
        }
        Ok(store)
    }

    /// A handle for a committer task: everything but the queue, so that the committers end
    /// once every store handle (and with it every sender) is gone.
    fn committer(&self) -> Committer {
        Committer {
            database: self.commits.clone(),
            commit_delay_max: self.commit_delay_max,
            health: self.health.clone(),
        }
    }

    /// Fault injection for tests: delay every commit by a random time up to `delay_max`.
    pub fn with_commit_delay_for_tests(self, delay_max: Duration) -> Result<Self, DatabaseError> {
        Self::start(self.database, self.settings, Some(delay_max))
    }

    /// Fault injection for tests: the next `count` group commits panic in their committer
    /// before writing anything (the committer is restarted; its callers are answered).
    pub fn inject_committer_panics_for_tests(&self, count: usize) {
        self.health.panics_to_inject.store(count, Ordering::Relaxed);
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// A setting as the committers' sessions see it (tests check the durability they force).
    pub async fn committer_setting(&self, name: &str) -> Result<String, StoreError> {
        let client = pooled(&self.commits).await?;
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .map_err(backend)?;
        Ok(row.get(0))
    }

    /// How many events of the store-wide log lie after `after` (all when `None`), counting
    /// committed and not yet visible ones alike: an estimate for progress reports, cheap here
    /// and not part of the port.
    pub async fn count_after(&self, after: Option<Position>) -> Result<u64, StoreError> {
        let (commit, prepare) = position_param(after);
        // On the unbounded pool: a count over a long log may take longer than a request may.
        let rows = query_on(
            &self.database,
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
        query_on(&self.reads, sql, params).await
    }
}

/// Run `sql` (prepared once per connection) on a connection of `database`, the checkout
/// included within its deadline; a connection that overran is discarded.
async fn query_on(
    database: &Database,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let mut slot = None;
    let outcome = database
        .within_deadline(async {
            let client = slot.insert(pooled(database).await?);
            let statement = client.prepare_cached(sql).await.map_err(backend)?;
            client.query(&statement, params).await.map_err(backend)
        })
        .await;
    match outcome {
        Ok(rows) => rows,
        Err(exceeded) => {
            if let Some(client) = slot.take() {
                Database::discard(client);
            }
            Err(overran(exceeded))
        }
    }
}

fn overran(exceeded: DeadlineExceeded) -> StoreError {
    StoreError::Timeout {
        timeout_ms: exceeded.deadline_ms,
    }
}

/// Answers kept longer than the retention are deleted in slices of this many rows, each its
/// own short transaction, so a large purge never holds locks or a snapshot for long.
const FORGET_ANSWERS_SLICE_ROWS: i64 = 10_000;

enum CallError {
    UniqueViolation,
    /// The transaction's id is below the one that began the log's epoch: the database is on
    /// another cluster than the one the epoch began on. Nothing was written.
    EpochOutdated,
    Store(StoreError),
    /// The connection failed (or overran its deadline) after the commit was sent: the batch
    /// may or may not have committed. `backend_pid` is the server process that ran it.
    CommitUnknown {
        error: StoreError,
        backend_pid: i32,
    },
}

impl CallError {
    /// What a caller is told when the failure reaches it. (An outdated epoch is handled by
    /// [`Committer::write`], which begins a new one and writes again; it reaches a caller only
    /// when the epoch is outdated again at once.)
    fn into_store_error(self) -> StoreError {
        match self {
            Self::Store(error) | Self::CommitUnknown { error, .. } => error,
            Self::UniqueViolation => {
                StoreError::backend_because("an event id or an answer's key is stored already")
            }
            Self::EpochOutdated => StoreError::unavailable_because(
                "the database is on another cluster than its log's epoch began on, and beginning \
                 a new epoch did not take; restart the processes that use it",
            ),
        }
    }
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
        hash: row
            .get::<_, Option<&[u8]>>("hash")
            .and_then(EventHash::from_slice),
    })
}

/// The chain of every event stored before it existed (migration 4), computed once: stream by
/// stream, in version order, from the genesis hash, with the code that seals new events.
fn backfill_chain<'a>(
    transaction: &'a tokio_postgres::Transaction<'a>,
) -> futures::future::BoxFuture<'a, Result<(), DatabaseError>> {
    Box::pin(async move {
        let failed = |source| DatabaseError::Migration {
            context: "event_store: computing the hash chain of stored events".to_owned(),
            source,
        };
        let streams = transaction
            .query(
                "SELECT DISTINCT stream FROM event_store.events ORDER BY stream",
                &[],
            )
            .await
            .map_err(failed)?;
        let select = format!(
            "SELECT {EVENT_COLUMNS} FROM event_store.events \
             WHERE stream = $1 AND version > $2 ORDER BY version LIMIT $3"
        );
        for row in streams {
            let stream: String = row.get(0);
            let mut head = EventHash::GENESIS;
            let mut after: i64 = -1;
            loop {
                let rows = transaction
                    .query(&select, &[&stream, &after, &CHAIN_BACKFILL_PAGE_EVENTS])
                    .await
                    .map_err(failed)?;
                let mut versions = Vec::with_capacity(rows.len());
                let mut hashes = Vec::with_capacity(rows.len());
                for row in &rows {
                    let recorded = decode_event(row).map_err(|error| DatabaseError::Backfill {
                        context: "event_store migration 4 (hash_chain)".to_owned(),
                        message: format!("{stream}: {error}"),
                    })?;
                    head = link_recorded(&head, &recorded);
                    versions.push(to_i64(recorded.version));
                    hashes.push(head.as_bytes().to_vec());
                }
                transaction
                    .execute(
                        "UPDATE event_store.events e SET hash = h.hash \
                         FROM unnest($2::bigint[], $3::bytea[]) AS h(version, hash) \
                         WHERE e.stream = $1 AND e.version = h.version",
                        &[&stream, &versions, &hashes],
                    )
                    .await
                    .map_err(failed)?;
                match versions.last() {
                    Some(last) if rows.len() as i64 == CHAIN_BACKFILL_PAGE_EVENTS => after = *last,
                    _ => break,
                }
            }
        }
        Ok(())
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
            .map(stored_answer)
            .collect())
    }

    /// Unhealthy when the last group commits all failed or committers keep panicking.
    fn write_path_health(&self) -> Result<(), String> {
        self.health.check()
    }

    async fn forget_answers(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = pooled(&self.database).await?;
        let statement = client
            .prepare_cached(FORGET_ANSWERS_SQL)
            .await
            .map_err(backend)?;
        let mut forgotten = 0;
        loop {
            let deleted = client
                .execute(&statement, &[&kept_before, &FORGET_ANSWERS_SLICE_ROWS])
                .await
                .map_err(backend)?;
            forgotten += deleted;
            if deleted < FORGET_ANSWERS_SLICE_ROWS as u64 {
                return Ok(forgotten);
            }
        }
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

    /// One query that counts without shipping the events: a status call stays cheap however
    /// far behind its projection is.
    async fn backlog(
        &self,
        after: Option<Position>,
        count_max: u64,
    ) -> Result<Backlog, StoreError> {
        let sql = format!(
            "SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM event_store.events \
             WHERE (transaction_id, sequence) > ($1, $2) AND transaction_id < {VISIBLE_BOUND} \
             ORDER BY transaction_id, sequence LIMIT $3) AS ahead"
        );
        let (commit, prepare) = position_param(after);
        let limit = i64::try_from(count_max.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self.query(&sql, &[&commit, &prepare, &limit]).await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::backend_because("a count returned no row"))?;
        let counted = to_u64(row.get(0));
        Ok(Backlog {
            events: counted.min(count_max),
            capped: counted > count_max,
            oldest_recorded_at: row.get(1),
        })
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventStream {
        subscription::follow(
            self.clone(),
            after,
            self.appended.clone(),
            Duration::from_millis(SUBSCRIPTION_READ_INTERVAL_MIN_MS),
        )
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
#[derive(Clone)]
struct Committer {
    database: Database,
    commit_delay_max: Option<Duration>,
    health: Arc<Health>,
}

/// Run a committer, and start it again whenever it panics, until every store handle is gone.
/// The appends of the batch it held are answered by their callers' look-up (see
/// `PostgresStore::enqueue`); the queue itself is never lost.
async fn supervise(committer: Committer, queue: Arc<Mutex<mpsc::Receiver<PendingAppend>>>) {
    loop {
        let task = tokio::spawn(commit_loop(committer.clone(), queue.clone()));
        match task.await {
            Ok(()) => return,
            Err(error) if error.is_panic() => {
                tracing::error!(%error, "a group committer panicked; starting it again");
                metrics::counter!(METRIC_COMMITTER_RESTARTS).increment(1);
                committer
                    .health
                    .panics
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(Instant::now());
                tokio::time::sleep(Duration::from_millis(COMMITTER_RESTART_DELAY_MS)).await;
            }
            Err(_) => return, // cancelled: the runtime is shutting down
        }
    }
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
        let inject = committer
            .health
            .panics_to_inject
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if inject {
            panic!("injected committer panic (a test asked for it)");
        }
        committer.commit(batch).await;
    }
}

/// The outcome of each append of a batch: `None` for an append that wrote nothing because other
/// appends' keys were answered before (it goes again in the next pass).
type Outcomes = Vec<Option<Result<Appended, StoreError>>>;

impl Committer {
    /// Write `batch` in the span of a group commit, which joins its appenders' traces the way a
    /// batch of messages does: a child of the first traced appender, following from (linked
    /// to, once exported) the others.
    async fn commit(&self, batch: Vec<PendingAppend>) {
        let mut callers = batch.iter().map(|p| &p.caller).filter(|c| !c.is_none());
        let span = match callers.next() {
            Some(first) => {
                tracing::info_span!(parent: first, "event_store.group_commit", appends = batch.len())
            }
            None => {
                tracing::info_span!(parent: None, "event_store.group_commit", appends = batch.len())
            }
        };
        for caller in callers {
            span.follows_from(caller);
        }
        self.commit_in_span(batch).instrument(span).await;
    }

    async fn commit_in_span(&self, batch: Vec<PendingAppend>) {
        let mut batch = batch;
        // Each pass either writes the batch, or (when some keys were answered before) answers
        // those appends and writes nothing; the rest then go again. Bounded by the batch size.
        while !batch.is_empty() {
            match self.write(&batch, false).await {
                Ok(mut outcomes) => {
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
                                    "the group commit left an append unanswered",
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
                Err(error @ (CallError::Store(_) | CallError::EpochOutdated)) => {
                    let error = error.into_store_error();
                    self.note(false);
                    for pending in batch {
                        let _ = pending.reply.send(Err(error.clone()));
                    }
                    return;
                }
                Err(CallError::CommitUnknown { error, backend_pid }) => {
                    self.note(false);
                    for pending in batch {
                        let ids: Vec<uuid::Uuid> =
                            pending.events.iter().map(|e| e.event_id).collect();
                        let outcome = if ids.is_empty() {
                            // Only answers (refusals): deciding again is harmless.
                            Err(error.clone())
                        } else {
                            self.resolve_lost(&pending.stream, &ids, Some(backend_pid))
                                .await
                        };
                        let _ = pending.reply.send(outcome);
                    }
                    return;
                }
            }
        }
        self.note(true);
    }

    /// Remember whether a group commit worked, for [`PostgresStore::write_path_health`].
    fn note(&self, worked: bool) {
        if worked {
            self.health.failures_in_a_row.store(0, Ordering::Relaxed);
        } else {
            self.health
                .failures_in_a_row
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Learn whether an append whose commit was sent (or whose committer died) landed, from
    /// its events' ids, on another connection: first end the server process that ran it (if
    /// it still runs, it may yet commit), then look. Tries for [`COMMIT_RESOLUTION_MS`]; a
    /// database that stays unreachable leaves the outcome unknown.
    async fn resolve_lost(
        &self,
        stream: &str,
        ids: &[uuid::Uuid],
        backend_pid: Option<i32>,
    ) -> Result<Appended, StoreError> {
        let started = Instant::now();
        let mut last_error = String::from("no attempt finished");
        while started.elapsed() < Duration::from_millis(COMMIT_RESOLUTION_MS) {
            match self.look_for(ids, backend_pid).await {
                Ok(found) => {
                    let outcome = if found.is_empty() {
                        metrics::counter!(METRIC_COMMIT_RESOLUTIONS, "outcome" => "not_written")
                            .increment(1);
                        Err(StoreError::unavailable_because(format!(
                            "the connection was lost during the commit of {stream}, which did \
                             not land; nothing was written"
                        )))
                    } else {
                        metrics::counter!(METRIC_COMMIT_RESOLUTIONS, "outcome" => "written")
                            .increment(1);
                        let last = found
                            .iter()
                            .max_by_key(|row| row.1)
                            .expect("found is not empty");
                        Ok(Appended::Written(Some(AppendResult {
                            version: last.1,
                            position: last.2,
                            deduplicated: false,
                        })))
                    };
                    return outcome;
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        metrics::counter!(METRIC_COMMIT_RESOLUTIONS, "outcome" => "unknown").increment(1);
        Err(StoreError::OutcomeUnknown {
            message: format!(
                "the connection was lost during the commit of {stream} and the database could \
                 not be asked afterwards ({last_error})"
            ),
        })
    }

    /// One attempt of [`Committer::resolve_lost`]: the stored events among `ids`.
    async fn look_for(
        &self,
        ids: &[uuid::Uuid],
        backend_pid: Option<i32>,
    ) -> Result<Vec<(uuid::Uuid, u64, Position)>, StoreError> {
        let mut slot = None;
        let outcome = self
            .database
            .within_deadline(async {
                let client = slot.insert(pooled(&self.database).await?);
                if let Some(pid) = backend_pid {
                    client
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE pid = $1 AND pid <> pg_backend_pid()",
                            &[&pid],
                        )
                        .await
                        .map_err(backend)?;
                    // Wait for it to be gone: until then its transaction may still commit.
                    for _ in 0..100 {
                        let running = client
                            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
                            .await
                            .map_err(backend)?;
                        if running.is_none() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                client
                    .query(
                        "SELECT event_id, version, transaction_id, sequence \
                         FROM event_store.events WHERE event_id = ANY($1)",
                        &[&ids],
                    )
                    .await
                    .map_err(backend)
            })
            .await;
        let rows = match outcome {
            Ok(rows) => rows?,
            Err(exceeded) => {
                if let Some(client) = slot.take() {
                    Database::discard(client);
                }
                return Err(overran(exceeded));
            }
        };
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    to_u64(row.get(1)),
                    Position {
                        commit: to_u64(row.get(2)),
                        prepare: to_u64(row.get(3)),
                    },
                )
            })
            .collect())
    }

    /// One append on its own, with the look-up for retries first; asked once more after a
    /// unique violation (a concurrent identical append committed first).
    async fn append_carefully(&self, pending: &PendingAppend) -> Result<Appended, StoreError> {
        for _ in 0..2 {
            match self.write(std::slice::from_ref(pending), true).await {
                Ok(mut outcomes) => {
                    return outcomes.pop().flatten().unwrap_or_else(|| {
                        Err(StoreError::backend_because(
                            "the group commit left an append unanswered",
                        ))
                    })
                }
                Err(CallError::UniqueViolation) => continue,
                Err(error @ (CallError::Store(_) | CallError::EpochOutdated)) => {
                    return Err(error.into_store_error())
                }
                Err(CallError::CommitUnknown { error, backend_pid }) => {
                    let ids: Vec<uuid::Uuid> = pending.events.iter().map(|e| e.event_id).collect();
                    if ids.is_empty() {
                        return Err(error);
                    }
                    return self
                        .resolve_lost(&pending.stream, &ids, Some(backend_pid))
                        .await;
                }
            }
        }
        Err(StoreError::backend_because(
            "event ids collided twice in a row with a concurrent append",
        ))
    }

    /// Write `batch` (distinct streams) in one transaction of two round trips:
    ///
    /// 1. lock the streams in one global order (an advisory lock, taken before the transaction
    ///    gets its id: see migration 0001 for why that keeps the log in version order within a
    ///    stream), look for keys answered before, read the streams' versions, then take the
    ///    transaction id and the time (and, `careful`, look for stored retries first);
    /// 2. (decided here) write the new versions, the events and the answers, notify, commit.
    ///
    /// An append whose expected version does not hold writes nothing and is answered after the
    /// commit: with its original result when its events are stored already, otherwise with
    /// the stream's version.
    async fn write(&self, batch: &[PendingAppend], careful: bool) -> Result<Outcomes, CallError> {
        let mut slot = None;
        let mut stage = Stage::default();
        let outcome = self
            .database
            .within_deadline(async {
                let client = slot.insert(pooled(&self.database).await.map_err(CallError::Store)?);
                match self.write_on(client, batch, careful, &mut stage).await {
                    // The database moved under this process: begin the epoch that puts new
                    // positions above the stored ones (its transaction rolled back, nothing
                    // was written), then write the batch once more.
                    Err(CallError::EpochOutdated) => {
                        begin_epoch_if_outdated(&***client)
                            .await
                            .map_err(|e| CallError::Store(backend(e)))?;
                        self.write_on(client, batch, careful, &mut stage).await
                    }
                    other => other,
                }
            })
            .await;
        match (outcome, stage.backend_pid) {
            (Ok(Err(CallError::Store(error @ StoreError::Unavailable { .. }))), Some(pid))
                if stage.commit_sent =>
            {
                Err(CallError::CommitUnknown {
                    error,
                    backend_pid: pid,
                })
            }
            (Ok(result), _) => result,
            (Err(exceeded), pid) => {
                if let Some(client) = slot.take() {
                    Database::discard(client);
                }
                match pid {
                    Some(pid) if stage.commit_sent => Err(CallError::CommitUnknown {
                        error: overran(exceeded),
                        backend_pid: pid,
                    }),
                    // The commit was never sent: the server rolls the transaction back when it
                    // notices the connection is gone, so nothing was written.
                    _ => Err(CallError::Store(overran(exceeded))),
                }
            }
        }
    }

    /// The body of [`Committer::write`] on `client`; `stage` says how far it got.
    async fn write_on(
        &self,
        client: &mut deadpool_postgres::Object,
        batch: &[PendingAppend],
        careful: bool,
        stage: &mut Stage,
    ) -> Result<Outcomes, CallError> {
        let transaction = deadpool_postgres::ClientWrapper::transaction(client).await?;
        let mut outcomes: Outcomes = (0..batch.len()).map(|_| None).collect();
        if careful {
            for (index, pending) in batch.iter().enumerate() {
                if !pending.events.is_empty() {
                    outcomes[index] = find_retry(&*transaction, pending).await?;
                }
            }
        }
        let plan = self.lock_and_read(&transaction, batch, &outcomes).await?;
        if let Some(known) = plan.answered_before {
            drop(transaction); // rolls back: nothing was written
            return Ok(known);
        }
        stage.backend_pid = Some(plan.backend_pid);
        let appended = write_plan(&transaction, batch, &plan, &outcomes).await?;
        if appended {
            transaction
                .execute("SELECT pg_notify($1, '')", &[&NOTIFY_CHANNEL])
                .await?;
        }
        if let Some(delay_max) = self.commit_delay_max {
            let delay = delay_max.mul_f64(rand::random::<f64>());
            transaction
                .execute("SELECT pg_sleep($1)", &[&delay.as_secs_f64()])
                .await?;
        }
        stage.commit_sent = true;
        transaction.commit().await?;
        // Committed: from here on every append's own outcome is known or looked up on its
        // own, and a failed look-up fails only that append.
        for (index, pending) in batch.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            outcomes[index] = Some(match plan.requests[index] {
                Decision::Written {
                    last,
                    last_sequence,
                } => Ok(Appended::Written(Some(AppendResult {
                    version: last,
                    position: Position {
                        commit: plan.transaction_id,
                        prepare: last_sequence,
                    },
                    deduplicated: false,
                }))),
                Decision::AnswersOnly => Ok(Appended::Written(None)),
                Decision::Refused { actual } => match find_retry(&***client, pending).await {
                    Ok(Some(original)) => original,
                    Ok(None) => Err(StoreError::WrongExpectedVersion {
                        stream: pending.stream.clone(),
                        expected: pending.expected,
                        actual,
                    }),
                    Err(CallError::Store(error) | CallError::CommitUnknown { error, .. }) => {
                        Err(error)
                    }
                    Err(CallError::UniqueViolation) => Err(StoreError::backend_because(
                        "looking for a retry violated a unique index",
                    )),
                    Err(error @ CallError::EpochOutdated) => Err(error.into_store_error()),
                },
            });
        }
        Ok(outcomes)
    }

    /// Step 1 of [`Committer::write`]: locks, answers known before, versions, transaction id.
    async fn lock_and_read(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        batch: &[PendingAppend],
        outcomes: &Outcomes,
    ) -> Result<Plan, CallError> {
        let streams: Vec<&str> = batch
            .iter()
            .map(|p| p.stream.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        let (scopes, keys): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .flat_map(|p| p.answers.iter())
            .map(|a| (a.key.scope.as_str(), a.key.key.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .unzip();
        let lock = transaction.prepare_cached(LOCK_STREAMS_SQL).await?;
        let known = transaction.prepare_cached(KNOWN_ANSWERS_SQL).await?;
        let versions = transaction.prepare_cached(STREAM_VERSIONS_SQL).await?;
        let identity = transaction.prepare_cached(TRANSACTION_IDENTITY_SQL).await?;
        let lock_parameters: [&(dyn ToSql + Sync); 1] = [&streams];
        let known_parameters: [&(dyn ToSql + Sync); 2] = [&scopes, &keys];
        // Issued together so they travel in one round trip; they run in this order.
        let (locked, known, versions, identity) = futures::join!(
            transaction.execute(&lock, &lock_parameters),
            transaction.query(&known, &known_parameters),
            transaction.query(&versions, &lock_parameters),
            transaction.query_one(&identity, &[]),
        );
        locked?;
        let identity = identity?;
        if !identity.get::<_, bool>(3) {
            return Err(CallError::EpochOutdated);
        }
        let known = known?;
        if !known.is_empty() {
            return Ok(Plan::answered_before(batch, &known));
        }
        let current: HashMap<String, u64> = versions?
            .iter()
            .map(|row| (row.get::<_, String>(0), to_u64(row.get(1))))
            .collect();
        let mut plan = Plan::decide(
            batch,
            outcomes,
            &current,
            to_u64(identity.get(0)),
            identity.get(1),
        );
        plan.backend_pid = identity.get(2);
        Ok(plan)
    }
}

/// What the group commit does with each append, decided from the streams' versions.
#[derive(Debug, Clone, Copy)]
enum Decision {
    /// Its events are written; the last one has this version and sequence.
    Written { last: u64, last_sequence: u64 },
    /// It only keeps answers (refused or unchanged commands).
    AnswersOnly,
    /// Its expected version does not hold (the stream is at `actual`): nothing is written.
    Refused { actual: Option<u64> },
}

/// The decisions of one group commit.
struct Plan {
    requests: Vec<Decision>,
    /// The first version of each written append's events.
    first_versions: Vec<u64>,
    transaction_id: u64,
    recorded_at: DateTime<Utc>,
    /// Set when keys of the batch were answered before: then nothing is written, and these
    /// are the outcomes (`None` for the appends to send again).
    answered_before: Option<Outcomes>,
    /// The server process running the transaction.
    backend_pid: i32,
}

/// How far a group commit got, for deciding what a failure means.
#[derive(Debug, Default)]
struct Stage {
    /// The server process running the transaction, once known.
    backend_pid: Option<i32>,
    /// Whether the commit was sent: only then can a lost connection hide a commit.
    commit_sent: bool,
}

impl Plan {
    fn answered_before(batch: &[PendingAppend], rows: &[Row]) -> Self {
        let mut outcomes: Outcomes = (0..batch.len()).map(|_| None).collect();
        for row in rows {
            let answer = stored_answer(row);
            for (index, pending) in batch.iter().enumerate() {
                if !pending.answers.iter().any(|a| a.key == answer.key) {
                    continue;
                }
                match &mut outcomes[index] {
                    Some(Ok(Appended::AnsweredBefore(found))) => found.push(answer.clone()),
                    slot => *slot = Some(Ok(Appended::AnsweredBefore(vec![answer.clone()]))),
                }
            }
        }
        Self {
            requests: Vec::new(),
            first_versions: Vec::new(),
            transaction_id: 0,
            recorded_at: Utc::now(),
            answered_before: Some(outcomes),
            backend_pid: 0,
        }
    }

    /// Check each append's expected version against its stream's current version; sequences
    /// are the events' ordinals in the transaction, in batch order.
    fn decide(
        batch: &[PendingAppend],
        outcomes: &Outcomes,
        current: &HashMap<String, u64>,
        transaction_id: u64,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        let mut requests = Vec::with_capacity(batch.len());
        let mut first_versions = Vec::with_capacity(batch.len());
        let mut sequence = 0u64;
        for (pending, outcome) in batch.iter().zip(outcomes) {
            let count = pending.events.len() as u64;
            let actual = current.get(&pending.stream).copied();
            let holds = outcome.is_none()
                && match pending.expected {
                    ExpectedVersion::NoStream => actual.is_none(),
                    ExpectedVersion::Exact(v) => actual == Some(v),
                    ExpectedVersion::Any => true,
                    ExpectedVersion::StreamExists => actual.is_some(),
                };
            let first = actual.map_or(0, |v| v + 1);
            first_versions.push(first);
            requests.push(if count == 0 {
                Decision::AnswersOnly
            } else if holds {
                sequence += count;
                Decision::Written {
                    last: first + count - 1,
                    last_sequence: sequence,
                }
            } else {
                Decision::Refused { actual }
            });
        }
        Self {
            requests,
            first_versions,
            transaction_id,
            recorded_at,
            answered_before: None,
            backend_pid: 0,
        }
    }
}

/// Step 2 of [`Committer::write`]: the new versions, the events and the answers, each one
/// statement, issued together. Returns whether any event was written.
async fn write_plan(
    transaction: &deadpool_postgres::Transaction<'_>,
    batch: &[PendingAppend],
    plan: &Plan,
    outcomes: &Outcomes,
) -> Result<bool, CallError> {
    let mut stream_names: Vec<&str> = Vec::new();
    let mut stream_versions: Vec<i64> = Vec::new();
    let mut rows = EventRows::default();
    let mut answers = AnswerRows::default();
    for (index, pending) in batch.iter().enumerate() {
        if outcomes[index].is_some() {
            continue;
        }
        let position = match plan.requests[index] {
            Decision::Written {
                last,
                last_sequence,
            } => {
                stream_names.push(&pending.stream);
                stream_versions.push(to_i64(last));
                let first_sequence = last_sequence + 1 - pending.events.len() as u64;
                for (offset, event) in pending.events.iter().enumerate() {
                    let offset = offset as u64;
                    rows.push(
                        event,
                        &pending.stream,
                        plan.first_versions[index] + offset,
                        first_sequence + offset,
                    );
                }
                Some(Position {
                    commit: plan.transaction_id,
                    prepare: last_sequence,
                })
            }
            Decision::AnswersOnly => None,
            Decision::Refused { .. } => continue,
        };
        for answer in &pending.answers {
            answers.push(answer, position);
        }
    }
    let transaction_id = to_i64(plan.transaction_id);
    let streams = transaction.prepare_cached(UPSERT_STREAMS_SQL).await?;
    let events = transaction.prepare_cached(INSERT_EVENTS_SQL).await?;
    let kept = transaction.prepare_cached(INSERT_ANSWERS_SQL).await?;
    let stream_parameters: [&(dyn ToSql + Sync); 2] = [&stream_names, &stream_versions];
    let event_parameters: [&(dyn ToSql + Sync); 11] = [
        &transaction_id,
        &rows.sequences,
        &rows.ids,
        &rows.streams,
        &rows.versions,
        &rows.types,
        &rows.schema_versions,
        &rows.data,
        &rows.metadata,
        &rows.recorded_at,
        &rows.hashes,
    ];
    let answer_parameters: [&(dyn ToSql + Sync); 7] = [
        &answers.scopes,
        &answers.keys,
        &answers.fingerprints,
        &answers.bodies,
        &answers.position_commits,
        &answers.position_prepares,
        &plan.recorded_at,
    ];
    // Issued together so they travel in one round trip.
    let (streams, events, kept) = futures::join!(
        transaction.execute(&streams, &stream_parameters),
        transaction.execute(&events, &event_parameters),
        transaction.execute(&kept, &answer_parameters),
    );
    streams?;
    events?;
    kept?;
    Ok(!rows.ids.is_empty())
}

/// The events of a group commit, column by column.
#[derive(Default)]
struct EventRows<'a> {
    sequences: Vec<i64>,
    ids: Vec<uuid::Uuid>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    data: Vec<&'a serde_json::Value>,
    /// Serialised straight into the statement's parameter (no JSON tree built first).
    metadata: Vec<Json<&'a Metadata>>,
    recorded_at: Vec<DateTime<Utc>>,
    hashes: Vec<&'a [u8]>,
}

impl<'a> EventRows<'a> {
    fn push(&mut self, event: &'a NewEvent, stream: &'a str, version: u64, sequence: u64) {
        self.sequences.push(to_i64(sequence));
        self.ids.push(event.event_id);
        self.streams.push(stream);
        self.versions.push(to_i64(version));
        self.types.push(&event.event_type);
        self.schema_versions.push(event.schema_version as i32);
        self.data.push(&event.data);
        self.metadata.push(Json(&event.metadata));
        self.recorded_at.push(event.recorded_at);
        self.hashes.push(event.hash.as_bytes());
    }
}

/// The answers of a group commit, column by column, with the positions to put into them.
#[derive(Default)]
struct AnswerRows<'a> {
    scopes: Vec<&'a str>,
    keys: Vec<&'a str>,
    fingerprints: Vec<&'a str>,
    bodies: Vec<&'a serde_json::Value>,
    position_commits: Vec<Option<i64>>,
    position_prepares: Vec<Option<i64>>,
}

impl<'a> AnswerRows<'a> {
    fn push(&mut self, answer: &'a NewAnswer, position: Option<Position>) {
        let position = position.filter(|_| answer.positioned);
        self.scopes.push(&answer.key.scope);
        self.keys.push(&answer.key.key);
        self.fingerprints.push(&answer.fingerprint);
        self.bodies.push(&answer.answer);
        self.position_commits
            .push(position.map(|p| to_i64(p.commit)));
        self.position_prepares
            .push(position.map(|p| to_i64(p.prepare)));
    }
}

/// A kept answer read back, its position (kept in its own columns) put into it.
fn stored_answer(row: &Row) -> StoredAnswer {
    let mut answer: serde_json::Value = row.get(3);
    let commit: Option<i64> = row.get(4);
    let prepare: Option<i64> = row.get(5);
    if let (Some(commit), Some(prepare)) = (commit, prepare) {
        set_answer_position(
            &mut answer,
            Position {
                commit: to_u64(commit),
                prepare: to_u64(prepare),
            },
        );
    }
    StoredAnswer {
        key: AnswerKey {
            scope: row.get(0),
            key: row.get(1),
        },
        fingerprint: row.get(2),
        answer,
    }
}

/// The original result of `pending` when its event ids are stored already (a retry).
async fn find_retry<C: tokio_postgres::GenericClient>(
    client: &C,
    pending: &PendingAppend,
) -> Result<Option<Result<Appended, StoreError>>, CallError> {
    // Rare (a retry, a lost race): not worth a prepared statement per connection.
    let ids: Vec<uuid::Uuid> = pending.events.iter().map(|e| e.event_id).collect();
    let row = client
        .query_opt(FIND_RETRY_SQL, &[&pending.stream, &ids])
        .await?;
    Ok(row.map(|row| decode_retry(&row, &pending.stream)))
}

fn decode_retry(row: &Row, stream: &str) -> Result<Appended, StoreError> {
    let outcome: &str = row.get("outcome");
    match outcome {
        "duplicate" => Ok(Appended::Written(Some(AppendResult {
            version: to_u64(row.get("stream_version")),
            position: Position {
                commit: to_u64(row.get("last_transaction_id")),
                prepare: to_u64(row.get("last_sequence")),
            },
            deduplicated: true,
        }))),
        "idempotency_mismatch" => Err(StoreError::IdempotencyMismatch {
            stream: stream.to_owned(),
            event_id: row.get("conflicting_event_id"),
        }),
        other => Err(StoreError::backend_because(format!(
            "find_retry answered an unknown outcome {other:?}"
        ))),
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).expect("versions, sequences and transaction ids stay below i64::MAX")
}

/// Keep a dedicated connection listening for append notifications and bump `appended` on each,
/// reconnecting after a pause when the connection is lost, until every follower and the store
/// itself are gone.
async fn listen(database: Database, appended: Arc<watch::Sender<u64>>) {
    loop {
        if let Err(error) = listen_once(&database, &appended).await {
            tracing::warn!(%error, "event store listener lost its connection; followers poll until it is back");
        }
        tokio::select! {
            _ = appended.closed() => return,
            _ = tokio::time::sleep(Duration::from_millis(LISTENER_RECONNECT_DELAY_MS)) => {}
        }
    }
}

async fn listen_once(
    database: &Database,
    appended: &Arc<watch::Sender<u64>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = database.connect_dedicated(database.config()).await?;
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
