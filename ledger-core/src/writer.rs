//! One writer per SKU: every command for a SKU in this process queues to a single task that
//! holds the SKU's state in memory, decides the queued commands one after the other against
//! it, and appends the accepted events of the whole queue as one batch with one expected
//! version.
//!
//! Why: without it, concurrent commands for a hot SKU each load the stream, decide, and race
//! to append; all but one lose, reload and retry, so a hot SKU serves a few dozen commands a
//! second. With it, a hot SKU costs one append per batch, and an idle SKU costs nothing after
//! its first load (no replay per command).
//!
//! Correctness does not rest on being the only writer: the batch's append still carries the
//! version the decisions were made against, so another process (or another writer after an
//! eviction) that appended in between makes the append fail, the cache is dropped, and the
//! batch is decided again on the reloaded state. Commands refused by a decision write nothing;
//! when a batch refuses something and appends nothing, the cache is first checked against the
//! stream so that a refusal never rests on a state another process has already changed.
//! Every command is answered only after its events are durable.

use crate::domain::{Sku, SkuCommand, SkuEvent, SkuSummary};
use crate::handler::{
    encode_events, versioned, CommandContext, CommandError, CommandHandler, CommandOutcome,
    LoadedSku, VersionedEvent, COMMAND_CONFLICT_RETRIES_MAX,
};
use crate::store::{EventStore, ExpectedVersion, StoreError, APPEND_EVENTS_MAX};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Commands waiting for one SKU's writer. When the queue is full, callers wait for room: a
/// flood on one SKU slows its own callers instead of growing memory without bound.
pub const WRITER_QUEUE_COMMANDS_MAX: usize = 4_096;

/// Most commands decided and appended as one batch. Each produces at most two events, so a
/// batch stays well inside one append ([`APPEND_EVENTS_MAX`]).
pub const WRITER_BATCH_COMMANDS_MAX: usize = 1_024;

/// A writer with nothing to do for this long stops and drops its cached state, so memory
/// follows the SKUs in use rather than every SKU ever touched.
pub const WRITER_IDLE_MS: u64 = 30_000;

/// Longest random pause before a batch is decided again after losing a race.
const CONFLICT_RETRY_JITTER_MS: u64 = 3;

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

enum Request {
    Command {
        command: SkuCommand,
        context: CommandContext,
        reply: Reply<CommandOutcome>,
    },
    Read {
        reply: Reply<SkuSummary>,
    },
}

type Registry = Arc<Mutex<HashMap<Sku, mpsc::Sender<Request>>>>;

/// The writers of every SKU in use in this process.
pub struct SkuWriters<S: ?Sized> {
    handler: CommandHandler<S>,
    writers: Registry,
}

impl<S: ?Sized> Clone for SkuWriters<S> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            writers: self.writers.clone(),
        }
    }
}

fn writer_stopped() -> CommandError {
    CommandError::Store(StoreError::Backend(
        "the SKU's writer stopped before answering".to_owned(),
    ))
}

impl<S: EventStore + ?Sized> SkuWriters<S> {
    pub fn new(handler: CommandHandler<S>) -> Self {
        Self {
            handler,
            writers: Arc::default(),
        }
    }

    pub fn handler(&self) -> &CommandHandler<S> {
        &self.handler
    }

    /// How many SKUs have a live writer (and a cached state) right now.
    pub fn active(&self) -> usize {
        self.writers.lock().expect("writer registry lock").len()
    }

    /// Carry out `command` through the SKU's writer; answered once its events are durable.
    pub async fn execute(
        &self,
        sku: &Sku,
        command: SkuCommand,
        context: CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.send(
            sku,
            Request::Command {
                command,
                context,
                reply,
            },
        )
        .await;
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    /// The SKU's balances now, including events other processes appended.
    pub async fn current(&self, sku: &Sku) -> Result<SkuSummary, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.send(sku, Request::Read { reply }).await;
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    async fn send(&self, sku: &Sku, mut request: Request) {
        loop {
            let sender = {
                let mut writers = self.writers.lock().expect("writer registry lock");
                writers
                    .entry(sku.clone())
                    .or_insert_with(|| self.spawn(sku.clone()))
                    .clone()
            };
            match sender.send(request).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    // The writer stopped (idle, or it failed): forget it and start another.
                    request = returned;
                    let mut writers = self.writers.lock().expect("writer registry lock");
                    if writers
                        .get(sku)
                        .is_some_and(|current| current.same_channel(&sender))
                    {
                        writers.remove(sku);
                    }
                }
            }
        }
    }

    fn spawn(&self, sku: Sku) -> mpsc::Sender<Request> {
        let (sender, receiver) = mpsc::channel(WRITER_QUEUE_COMMANDS_MAX);
        let writer = Writer {
            handler: self.handler.clone(),
            stream: sku.stream(),
            sku,
            cache: None,
        };
        tokio::spawn(writer.run(receiver, sender.clone(), self.writers.clone()));
        sender
    }
}

struct Writer<S: ?Sized> {
    handler: CommandHandler<S>,
    sku: Sku,
    stream: String,
    /// The SKU as of its last known version; `None` after anything went wrong.
    cache: Option<LoadedSku>,
}

struct Job {
    command: SkuCommand,
    context: CommandContext,
    reply: Reply<CommandOutcome>,
}

/// What a batch decided for one command.
enum Plan {
    Accepted {
        events: Vec<VersionedEvent>,
        state: SkuSummary,
    },
    /// Already carried out (an identical reserve repeated): nothing to write.
    Unchanged(SkuSummary),
    /// A retry of a command whose key this SKU remembers: answer what it produced.
    Replay {
        first: u64,
        last: u64,
        state: SkuSummary,
    },
    Refused(CommandError),
}

impl<S: EventStore + ?Sized> Writer<S> {
    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<Request>,
        own: mpsc::Sender<Request>,
        registry: Registry,
    ) {
        let idle = Duration::from_millis(WRITER_IDLE_MS);
        loop {
            let first = match tokio::time::timeout(idle, receiver.recv()).await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(_) => {
                    {
                        let mut writers = registry.lock().expect("writer registry lock");
                        if writers
                            .get(&self.sku)
                            .is_some_and(|current| current.same_channel(&own))
                        {
                            writers.remove(&self.sku);
                        }
                    }
                    // No new request can arrive once closed; serve what slipped in meanwhile.
                    receiver.close();
                    let mut rest = Vec::new();
                    while let Ok(request) = receiver.try_recv() {
                        rest.push(request);
                    }
                    if !rest.is_empty() {
                        self.process(rest).await;
                    }
                    return;
                }
            };
            let mut batch = vec![first];
            while batch.len() < WRITER_BATCH_COMMANDS_MAX {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            metrics::histogram!("ledger_writer_batch_requests").record(batch.len() as f64);
            self.process(batch).await;
        }
    }

    #[tracing::instrument(name = "writer.batch", skip_all, fields(sku = %self.sku, requests = batch.len()))]
    async fn process(&mut self, batch: Vec<Request>) {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut reads = Vec::new();
        for request in batch {
            match request {
                Request::Command {
                    command,
                    context,
                    reply,
                } => jobs.push(Job {
                    command,
                    context,
                    reply,
                }),
                Request::Read { reply } => reads.push(reply),
            }
        }
        match self.decide_and_append(&jobs, !reads.is_empty()).await {
            Ok(Decided::Answered(loaded, plans, position)) => {
                let summary = loaded.state.summary();
                for (job, plan) in jobs.into_iter().zip(plans) {
                    let answer = match plan {
                        Plan::Accepted { events, state } => Ok(CommandOutcome {
                            state,
                            events,
                            position,
                            deduplicated: false,
                        }),
                        Plan::Unchanged(state) => Ok(CommandOutcome {
                            state,
                            events: Vec::new(),
                            position: None,
                            deduplicated: true,
                        }),
                        Plan::Replay { first, last, state } => {
                            self.handler.original_outcome(state, first, last).await
                        }
                        Plan::Refused(error) => Err(error),
                    };
                    let _ = job.reply.send(answer);
                }
                for reply in reads {
                    let _ = reply.send(Ok(summary.clone()));
                }
                self.cache = Some(*loaded);
            }
            Ok(Decided::OneByOne) => {
                // Some of the batch's event ids are already stored (retries of commands older
                // than the remembered keys): let the handler sort each command out on its own.
                self.cache = None;
                for job in jobs {
                    let answer = self
                        .handler
                        .execute(&self.sku, &job.command, &job.context)
                        .await;
                    let _ = job.reply.send(answer);
                }
                for reply in reads {
                    let answer = self
                        .handler
                        .load(&self.sku)
                        .await
                        .map(|l| l.state.summary());
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                self.cache = None;
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
                for reply in reads {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    async fn decide_and_append(
        &mut self,
        jobs: &[Job],
        must_refresh: bool,
    ) -> Result<Decided, CommandError> {
        let mut must_refresh = must_refresh;
        for attempt in 0..=COMMAND_CONFLICT_RETRIES_MAX {
            if attempt > 0 {
                let jitter = rand::random_range(0..=CONFLICT_RETRY_JITTER_MS * u64::from(attempt));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            let (mut loaded, fresh) = match self.cache.take() {
                Some(loaded) => (loaded, false),
                None => (self.handler.load(&self.sku).await?, true),
            };
            if must_refresh && !fresh {
                self.handler.refresh(&mut loaded).await?;
            }
            must_refresh = false;
            let base_version = loaded.state.version;
            let (plans, new_events, refused) = self.decide(&mut loaded, jobs);
            if new_events.is_empty() {
                if refused && !fresh && self.handler.refresh(&mut loaded).await? > 0 {
                    // Another process changed the SKU since it was cached: decide again.
                    self.cache = Some(loaded);
                    continue;
                }
                return Ok(Decided::Answered(Box::new(loaded), plans, None));
            }
            let expected = base_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            match self
                .handler
                .store()
                .append(&self.stream, expected, new_events)
                .await
            {
                Ok(result) if !result.deduplicated => {
                    if Some(result.version) != loaded.state.version {
                        return Err(CommandError::CorruptStream {
                            stream: self.stream.clone(),
                            message: format!(
                                "the store put the batch at version {}, the fold at {:?}",
                                result.version, loaded.state.version
                            ),
                        });
                    }
                    self.handler.maybe_snapshot(&mut loaded);
                    return Ok(Decided::Answered(
                        Box::new(loaded),
                        plans,
                        Some(result.position),
                    ));
                }
                Ok(_) | Err(StoreError::IdempotencyMismatch { .. }) => {
                    return Ok(Decided::OneByOne);
                }
                Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                    tracing::debug!(attempt, ?actual, "batch lost a race; deciding again");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(CommandError::ContentionRetriesExhausted {
            attempts: COMMAND_CONFLICT_RETRIES_MAX + 1,
        })
    }

    /// Decide every job in order against `loaded`, folding each accepted one into it before
    /// the next. Returns the plans, the events to append, and whether anything was refused.
    fn decide(
        &self,
        loaded: &mut LoadedSku,
        jobs: &[Job],
    ) -> (Vec<Plan>, Vec<crate::envelope::NewEvent>, bool) {
        let now = self.handler.now();
        let mut plans = Vec::with_capacity(jobs.len());
        let mut new_events = Vec::new();
        let mut refused = false;
        for job in jobs {
            if let Some(key) = job.context.idempotency_key.as_deref() {
                if let Some((first, last)) = loaded.remembered(key) {
                    plans.push(Plan::Replay {
                        first,
                        last,
                        state: loaded.state.summary(),
                    });
                    continue;
                }
            }
            if let Some(expected) = job.context.expected_version {
                if expected != loaded.state.version {
                    refused = true;
                    plans.push(Plan::Refused(CommandError::VersionMismatch {
                        expected,
                        actual: loaded.state.version,
                    }));
                    continue;
                }
            }
            let events: Vec<SkuEvent> = match loaded.state.decide(&job.command, now) {
                Ok(events) => events,
                Err(rejected) => {
                    refused = true;
                    plans.push(Plan::Refused(rejected.into()));
                    continue;
                }
            };
            if events.is_empty() {
                plans.push(Plan::Unchanged(loaded.state.summary()));
                continue;
            }
            let first = loaded.state.version.map_or(0, |v| v + 1);
            let encoded = encode_events(&self.stream, &events, &job.context);
            loaded.record_appended(&events, &encoded);
            if let Err(broken) = loaded.state.check_balances() {
                panic!(
                    "decide produced a state that breaks an invariant for {}: {broken}",
                    self.sku
                );
            }
            new_events.extend(encoded);
            assert!(new_events.len() <= APPEND_EVENTS_MAX);
            plans.push(Plan::Accepted {
                events: versioned(first, events),
                state: loaded.state.summary(),
            });
        }
        (plans, new_events, refused)
    }
}

enum Decided {
    /// Decided (and, if anything was accepted, durably appended): answer from the plans.
    Answered(Box<LoadedSku>, Vec<Plan>, Option<crate::envelope::Position>),
    /// The store recognised some of the batch's event ids: run the commands one by one.
    OneByOne,
}
