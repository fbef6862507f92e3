//! The projector runtime: one task per projection that takes the projection's lock, follows the
//! store-wide log from its checkpoint, and applies bounded batches, each with its checkpoint in
//! one transaction.
//!
//! A runner is a small state machine: create its schema (once), wait for the lock (standby),
//! then lead: load the checkpoint, subscribe, and apply batches until shutdown, an error (back
//! off, then load the checkpoint again and resubscribe) or the loss of the lock (back to
//! standby). Events taken from the subscription but not committed are simply read again after
//! a restart, because the subscription always restarts from the committed checkpoint.

use crate::batch::apply_page;
use crate::checkpoint;
use crate::error::ProjectionError;
use crate::lock::LockConnection;
use crate::projection::Projection;
use crate::publisher::Publisher;
use crate::schema;
use crate::schema_name::SchemaName;
use crate::webhook::{self, WebhookOptions};
use futures::{FutureExt, StreamExt};
use ledger_application::EventStore;
use ledger_domain::{Position, RecordedEvent};
use ledger_postgres::Database;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Most events one batch (one transaction) applies. Large enough that a catching-up runner
/// spends its time writing rather than committing, small enough that one transaction stays
/// short (well under a second) and holds few row locks while the API reads.
pub const BATCH_EVENTS_MAX: u64 = 500;

/// Connections of the runners' pool beyond one per runner: the checkpoint loads at start and
/// after failures, and the webhook deliverer.
pub const PROJECTOR_POOL_SPARE_CONNECTIONS: usize = 2;

/// How often a standby asks for a projection's lock. The holder's death is noticed by the
/// server at once; this bounds how long the projection then stands still.
pub const LOCK_RETRY_INTERVAL_MS: u64 = 1_000;

/// First pause after a failure; doubled after each further failure in a row.
pub const BACKOFF_INITIAL_MS: u64 = 100;

/// Longest pause between attempts, so a recovered database is noticed within half a minute.
pub const BACKOFF_MAX_MS: u64 = 30_000;

/// Counter: events applied (committed) per projection.
pub const METRIC_EVENTS_APPLIED: &str = "ledger_projection_events_applied_total";
/// Gauge: seconds the projection is behind the newest event it has seen (0 when caught up).
pub const METRIC_LAG_SECONDS: &str = "ledger_projection_lag_seconds";
/// Histogram: seconds per batch, from the transaction's start to its commit.
pub const METRIC_BATCH_DURATION_SECONDS: &str = "ledger_projection_batch_duration_seconds";
/// Counter: failed batches and subscription errors per projection.
pub const METRIC_ERRORS: &str = "ledger_projection_errors_total";
/// Gauge: the commit position of the projection's checkpoint after its last batch, to set
/// beside the log's head.
pub const METRIC_CHECKPOINT_COMMIT: &str = "ledger_projection_checkpoint_commit";

/// Failures to inject, for tests that prove crash safety. Batches are counted per runner from
/// 1, including batches that failed. A "crash" ends the runner's task at once, as a killed
/// process would: the open transaction is rolled back and the lock is released by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Crash after batch N's read model writes and checkpoint update, before its commit.
    pub crash_before_commit_at_batch: Option<u64>,
    /// Crash right after batch N commits, before the next batch is read.
    pub crash_after_commit_at_batch: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// The projections to run (names from [`crate::names`]).
    pub projections: Vec<&'static str>,
    /// Events per batch, at most [`BATCH_EVENTS_MAX`]; tests lower it to get many batches.
    pub batch_events_max: u64,
    /// How often a standby asks for the lock, in milliseconds.
    pub lock_retry_interval_ms: u64,
    pub faults: FaultPlan,
    /// Deliver low-stock notifications to a webhook; off (`None`) by default.
    pub webhook: Option<WebhookOptions>,
    /// Publishers of integration events to run beside the projections, each a runner of its
    /// own; none by default.
    pub publishers: Vec<Publisher>,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            projections: crate::names(),
            batch_events_max: BATCH_EVENTS_MAX,
            lock_retry_interval_ms: LOCK_RETRY_INTERVAL_MS,
            faults: FaultPlan::default(),
            webhook: None,
            publishers: Vec::new(),
        }
    }
}

/// What one runner of this process is doing, for in-process status and tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProjectorActivity {
    pub projection: String,
    /// True while this runner holds the projection's lock and applies events.
    pub leading: bool,
    /// Events this runner committed since it started.
    pub events_applied: u64,
    pub batches_applied: u64,
    pub last_error: Option<String>,
    /// True once the runner's task has ended (shutdown or an injected crash).
    pub finished: bool,
}

#[derive(Default)]
struct Activity {
    leading: AtomicBool,
    events_applied: AtomicU64,
    batches_applied: AtomicU64,
    last_error: Mutex<Option<String>>,
    finished: AtomicBool,
}

/// The runners of one process. Dropping it leaves the tasks running until shutdown is signalled.
pub struct ProjectorSet {
    tasks: Vec<JoinHandle<()>>,
    activity: Vec<(&'static str, Arc<Activity>)>,
}

impl ProjectorSet {
    /// Start one runner per projection in `options` (and the webhook deliverer when set). They
    /// stop between batches once `shutdown` holds `true` or its sender is dropped.
    pub fn spawn(
        store: Arc<dyn EventStore>,
        database: Database,
        options: ProjectorOptions,
        shutdown: watch::Receiver<bool>,
    ) -> ProjectorSet {
        describe_metrics();
        // The runners' own pool: their batches never wait behind the API's requests for a
        // connection (nor the requests behind them), and their commits need not wait for the
        // disk. A read model is derived data whose checkpoint commits in the same transaction:
        // if a crash loses the last batches, it loses their checkpoint with them and the
        // projection applies them again from the log; the disk's flushes are left to the event
        // store's appends, which do need them. (A webhook may then see a notification again
        // after a crash, as at-least-once delivery allows.)
        let database = database
            .with_session_settings(
                &[("synchronous_commit", "off")],
                options.projections.len()
                    + options.publishers.len()
                    + PROJECTOR_POOL_SPARE_CONNECTIONS,
            )
            .expect("a pool derived from a working one builds");
        let mut tasks = Vec::new();
        let mut activity = Vec::new();
        let mut appliers: Vec<Applier> = Vec::new();
        for name in &options.projections {
            let projection = crate::by_name(name).unwrap_or_else(|e| {
                panic!("ProjectorOptions names a projection that does not exist: {e}")
            });
            appliers.push(Applier::ReadModel(projection));
        }
        for publisher in &options.publishers {
            appliers.push(Applier::Publisher(Arc::new(publisher.clone())));
        }
        for applier in appliers {
            let name = applier.get().name();
            // Exported from the start, at zero: a panel's rate() of a counter that never rose
            // shows 0, not "no data".
            metrics::counter!(METRIC_ERRORS, "projection" => name).increment(0);
            metrics::counter!(METRIC_EVENTS_APPLIED, "projection" => name).increment(0);
            let shared = Arc::new(Activity::default());
            activity.push((name, shared.clone()));
            let runner = Runner {
                schema: SchemaName::live(name),
                projection: applier,
                store: store.clone(),
                database: database.clone(),
                batch_events_max: options.batch_events_max.clamp(1, BATCH_EVENTS_MAX),
                lock_retry: Duration::from_millis(options.lock_retry_interval_ms.max(1)),
                faults: options.faults.clone(),
                shutdown: shutdown.clone(),
                activity: shared,
                batches_attempted: 0,
            };
            tasks.push(tokio::spawn(runner.run()));
        }
        if let Some(webhook) = options.webhook.clone() {
            tasks.push(tokio::spawn(webhook::deliver(
                database.clone(),
                webhook,
                shutdown.clone(),
            )));
        }
        ProjectorSet { tasks, activity }
    }

    /// What each runner is doing now.
    pub fn activity(&self) -> Vec<ProjectorActivity> {
        self.activity
            .iter()
            .map(|(name, a)| ProjectorActivity {
                projection: (*name).to_owned(),
                leading: a.leading.load(Ordering::Relaxed),
                events_applied: a.events_applied.load(Ordering::Relaxed),
                batches_applied: a.batches_applied.load(Ordering::Relaxed),
                last_error: a
                    .last_error
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone(),
                finished: a.finished.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Wait until every runner has ended (after shutdown, or an injected crash).
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a projector task panicked");
            }
        }
    }
}

fn describe_metrics() {
    metrics::describe_counter!(METRIC_EVENTS_APPLIED, "Events applied to a read model.");
    metrics::describe_gauge!(
        METRIC_LAG_SECONDS,
        metrics::Unit::Seconds,
        "How far a projection is behind the newest event it has seen."
    );
    metrics::describe_histogram!(
        METRIC_BATCH_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time to apply and commit one batch."
    );
    metrics::describe_counter!(METRIC_ERRORS, "Failed batches and subscription errors.");
    metrics::describe_gauge!(
        METRIC_CHECKPOINT_COMMIT,
        "Commit position of the projection's checkpoint after its last batch."
    );
}

/// Seconds from `recorded_at` to now, 0 for a moment in the future (clocks of two hosts).
fn seconds_since(recorded_at: chrono::DateTime<chrono::Utc>) -> f64 {
    (chrono::Utc::now() - recorded_at)
        .to_std()
        .map_or(0.0, |lag| lag.as_secs_f64())
}

/// Bounded exponential backoff.
struct Backoff {
    next_ms: u64,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next_ms: BACKOFF_INITIAL_MS,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = Duration::from_millis(self.next_ms);
        self.next_ms = (self.next_ms * 2).min(BACKOFF_MAX_MS);
        delay
    }

    fn reset(&mut self) {
        self.next_ms = BACKOFF_INITIAL_MS;
    }
}

/// Waits until shutdown is asked for. A dropped sender counts as a request: nobody is left to
/// ask, and a runner that could never be stopped would keep `join` waiting forever.
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn is_stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

enum Exit {
    Shutdown,
    LockLost,
    Crashed(ProjectionError),
    Failed(ProjectionError),
}

/// What a runner applies batches to: one of the registered read models, or a publisher (which
/// carries its broker and so is built at start-up rather than registered).
#[derive(Clone)]
enum Applier {
    ReadModel(&'static dyn Projection),
    Publisher(Arc<Publisher>),
}

impl Applier {
    fn get(&self) -> &dyn Projection {
        match self {
            Self::ReadModel(projection) => *projection,
            Self::Publisher(publisher) => &**publisher,
        }
    }
}

struct Runner {
    projection: Applier,
    schema: SchemaName,
    store: Arc<dyn EventStore>,
    database: Database,
    batch_events_max: u64,
    lock_retry: Duration,
    faults: FaultPlan,
    shutdown: watch::Receiver<bool>,
    activity: Arc<Activity>,
    batches_attempted: u64,
}

impl Runner {
    fn name(&self) -> &'static str {
        self.projection.get().name()
    }

    async fn run(mut self) {
        let span = tracing::info_span!("projector", projection = self.name());
        self.run_inner().instrument(span).await;
        self.activity.leading.store(false, Ordering::Relaxed);
        self.activity.finished.store(true, Ordering::Relaxed);
    }

    async fn run_inner(&mut self) {
        let mut backoff = Backoff::new();
        while let Err(error) = self.migrate().await {
            self.note_error(&error, false).await;
            if self.pause(backoff.next()).await {
                return;
            }
        }
        let mut connection: Option<LockConnection> = None;
        loop {
            if is_stopping(&self.shutdown) {
                return;
            }
            let mut lock = match connection.take() {
                Some(lock) if !lock.is_closed() => lock,
                _ => match LockConnection::connect(&self.database, self.name()).await {
                    Ok(lock) => lock,
                    Err(error) => {
                        self.note_error(&error, false).await;
                        if self.pause(backoff.next()).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            match lock.try_lock().await {
                Ok(true) => {}
                Ok(false) => {
                    connection = Some(lock);
                    if self.pause(self.lock_retry).await {
                        return;
                    }
                    continue;
                }
                Err(error) => {
                    self.note_error(&error, false).await;
                    if self.pause(backoff.next()).await {
                        return;
                    }
                    continue;
                }
            }
            backoff.reset();
            tracing::info!("took the projection's lock; applying events");
            self.activity.leading.store(true, Ordering::Relaxed);
            let exit = self.lead(&mut lock).await;
            self.activity.leading.store(false, Ordering::Relaxed);
            match exit {
                Exit::Shutdown => {
                    if let Err(error) = lock.unlock().await {
                        tracing::debug!(%error, "could not give the lock back; closing its connection releases it");
                    }
                    tracing::info!("stopped");
                    return;
                }
                Exit::LockLost => {
                    tracing::warn!("lost the projection's lock connection; standing by");
                }
                Exit::Crashed(error) => {
                    tracing::error!(%error, "runner crashed");
                    self.set_last_error(&error);
                    return;
                }
                Exit::Failed(_) => unreachable!("lead handles failures itself"),
            }
        }
    }

    async fn migrate(&self) -> Result<(), ProjectionError> {
        let mut client = self.database.pool().get().await?;
        schema::migrate_live(&mut client, self.projection.get()).await?;
        Ok(())
    }

    /// Apply batches while holding the lock; failures back off and start over from the
    /// committed checkpoint.
    async fn lead(&mut self, lock: &mut LockConnection) -> Exit {
        let mut backoff = Backoff::new();
        loop {
            match self.follow(lock, &mut backoff).await {
                Exit::Failed(error) => {
                    self.note_error(&error, true).await;
                    if self.pause(backoff.next()).await {
                        return Exit::Shutdown;
                    }
                    if lock.is_closed() {
                        return Exit::LockLost;
                    }
                }
                exit => return exit,
            }
        }
    }

    async fn follow(&mut self, lock: &mut LockConnection, backoff: &mut Backoff) -> Exit {
        let mut checkpoint = match self.load_checkpoint().await {
            Ok(checkpoint) => checkpoint,
            Err(error) => return Exit::Failed(error),
        };
        let mut events = self.store.subscribe_all(checkpoint);
        let mut shutdown = self.shutdown.clone();
        loop {
            let first = tokio::select! {
                biased;
                _ = stop_requested(&mut shutdown) => return Exit::Shutdown,
                _ = lock.lost() => return Exit::LockLost,
                item = events.next() => item,
            };
            let mut batch: Vec<RecordedEvent> = Vec::new();
            match first {
                None => {
                    return Exit::Failed(ProjectionError::InvalidArgument(
                        "the event store's subscription ended".to_owned(),
                    ))
                }
                Some(Err(error)) => {
                    // The subscription retries by itself after a pause; say so and wait on.
                    self.note_error(&error.into(), true).await;
                    continue;
                }
                Some(Ok(event)) => batch.push(event),
            }
            // Take what the subscription already holds, without waiting for more: a batch
            // never delays an event to fill up.
            let mut more_ready = false;
            while (batch.len() as u64) < self.batch_events_max {
                match events.next().now_or_never() {
                    Some(Some(Ok(event))) => batch.push(event),
                    Some(Some(Err(error))) => {
                        self.note_error(&error.into(), true).await;
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            if batch.len() as u64 == self.batch_events_max {
                more_ready = true;
            }
            if lock.is_closed() {
                return Exit::LockLost;
            }
            self.batches_attempted += 1;
            match self.apply(checkpoint, &batch).await {
                Ok(next) => {
                    if let Some(position) = next {
                        metrics::gauge!(METRIC_CHECKPOINT_COMMIT, "projection" => self.name())
                            .set(position.commit as f64);
                    }
                    checkpoint = next;
                    backoff.reset();
                }
                Err(error @ ProjectionError::InjectedFault(_)) => return Exit::Crashed(error),
                Err(error) => {
                    // Nothing of the batch committed: the lag is now how long its first event
                    // has waited, and it grows with every failed attempt (a publisher whose
                    // broker is down shows its lag here rather than the last good value).
                    metrics::gauge!(METRIC_LAG_SECONDS, "projection" => self.name())
                        .set(seconds_since(batch[0].recorded_at));
                    return Exit::Failed(error);
                }
            }
            let lag_seconds = if more_ready {
                batch
                    .last()
                    .map_or(0.0, |last| seconds_since(last.recorded_at))
            } else {
                0.0
            };
            metrics::gauge!(METRIC_LAG_SECONDS, "projection" => self.name()).set(lag_seconds);
            if self.faults.crash_after_commit_at_batch == Some(self.batches_attempted) {
                return Exit::Crashed(ProjectionError::InjectedFault(
                    "crash between batches, after a commit",
                ));
            }
            if is_stopping(&self.shutdown) {
                return Exit::Shutdown;
            }
        }
    }

    async fn load_checkpoint(&self) -> Result<Option<Position>, ProjectionError> {
        let client = self.database.pool().get().await?;
        let checkpoint = checkpoint::load(&**client, &self.schema, self.name()).await?;
        Ok(checkpoint.position)
    }

    /// Apply one batch in its own span. The span joins the traces of the requests that caused
    /// the batch's events (the `traceparent` in their metadata), the way a consumer's batch of
    /// messages does: a child of the first, linked to the others. Without an export nothing
    /// is read from the events.
    async fn apply(
        &self,
        checkpoint: Option<Position>,
        batch: &[RecordedEvent],
    ) -> Result<Option<Position>, ProjectionError> {
        // A root of its own, not a child of the runner's span, which lives as long as the
        // runner: its trace would otherwise hold every batch ever applied.
        let span = tracing::info_span!(
            parent: None,
            "projector.batch",
            projection = self.name(),
            events = batch.len(),
            otel.kind = tracing::field::Empty,
        );
        if ledger_startup::traces::exporting() {
            span.record("otel.kind", "consumer");
            ledger_startup::traces::join_traces(
                &span,
                batch
                    .iter()
                    .filter_map(|e| e.metadata.traceparent.as_deref()),
            );
        }
        self.apply_in_span(checkpoint, batch).instrument(span).await
    }

    async fn apply_in_span(
        &self,
        checkpoint: Option<Position>,
        batch: &[RecordedEvent],
    ) -> Result<Option<Position>, ProjectionError> {
        let started = Instant::now();
        let mut client = self.database.pool().get().await?;
        // The runners' pool commits without waiting for the disk (see `ProjectorSet::spawn`).
        let transaction = client.transaction().await?;
        let next = apply_page(
            &transaction,
            self.projection.get(),
            &self.schema,
            checkpoint,
            batch,
        )
        .await?;
        if self.faults.crash_before_commit_at_batch == Some(self.batches_attempted) {
            // Dropping the transaction rolls it back, as a crash before commit would.
            return Err(ProjectionError::InjectedFault(
                "crash after the read model writes, before commit",
            ));
        }
        transaction.commit().await?;
        let name = self.name();
        metrics::counter!(METRIC_EVENTS_APPLIED, "projection" => name)
            .increment(batch.len() as u64);
        metrics::histogram!(METRIC_BATCH_DURATION_SECONDS, "projection" => name)
            .record(started.elapsed().as_secs_f64());
        self.activity
            .events_applied
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.activity
            .batches_applied
            .fetch_add(1, Ordering::Relaxed);
        Ok(next)
    }

    /// Sleep for `delay` unless shutdown comes first; true when it did.
    async fn pause(&self, delay: Duration) -> bool {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = stop_requested(&mut shutdown) => true,
            _ = tokio::time::sleep(delay) => is_stopping(&self.shutdown),
        }
    }

    fn set_last_error(&self, error: &ProjectionError) {
        *self
            .activity
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
    }

    /// Log, count and remember an error; with `persist`, also record it in the checkpoint row
    /// (best effort: the database may be what failed).
    async fn note_error(&self, error: &ProjectionError, persist: bool) {
        tracing::warn!(%error, "projection error; backing off");
        metrics::counter!(METRIC_ERRORS, "projection" => self.name()).increment(1);
        self.set_last_error(error);
        if !persist {
            return;
        }
        let recorded = async {
            let client = self.database.pool().get().await?;
            checkpoint::record_error(&**client, &self.schema, self.name(), &error.to_string()).await
        };
        if let Err(record_error) = recorded.await {
            tracing::debug!(%record_error, "could not record the error beside the checkpoint");
        }
    }
}
