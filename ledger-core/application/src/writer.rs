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

use crate::command::{CommandContext, CommandError, CommandOutcome};
use crate::decision::{answers, decide_and_append, Decided, Job};
use crate::handler::CommandHandler;
use crate::loaded::LoadedSku;
use crate::store::{EventStore, StoreError};
use ledger_domain::{Sku, SkuCommand, SkuSummary};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// Commands waiting for one SKU's writer. When the queue is full, callers wait for room: a
/// flood on one SKU slows its own callers instead of growing memory without bound.
pub const WRITER_QUEUE_COMMANDS_MAX: usize = 4_096;

/// Most commands decided and appended as one batch. Each produces at most two events, so a
/// batch stays well inside one append ([`crate::store::APPEND_EVENTS_MAX`]).
pub const WRITER_BATCH_COMMANDS_MAX: usize = 1_024;

/// A writer with nothing to do for this long stops and drops its cached state, so memory
/// follows the SKUs in use rather than every SKU ever touched.
pub const WRITER_IDLE_MS: u64 = 30_000;

/// Most writers (each with its SKU's cached state) one process keeps by default. A flood of
/// commands for distinct SKUs then evicts the least recently used idle writers instead of
/// growing memory without bound; an evicted SKU is simply loaded again when next used.
pub const WRITERS_MAX_DEFAULT: usize = 50_000;

/// Gauge: writers alive in this process.
pub const METRIC_WRITERS: &str = "ledger_sku_writers";
/// Counter: writers evicted because the cap was reached.
pub const METRIC_WRITERS_EVICTED: &str = "ledger_sku_writers_evicted_total";

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

enum Request {
    Command {
        command: Box<SkuCommand>,
        context: Box<CommandContext>,
        reply: Reply<CommandOutcome>,
        /// The caller's span (its request's, for a command over HTTP), so that the batch that
        /// serves the command shows up in the caller's trace. Cloning a span handle counts a
        /// reference; no allocation.
        caller: tracing::Span,
    },
    Read {
        reply: Reply<SkuSummary>,
    },
}

/// One registered writer: where its requests go, which writer it is (so a stopping writer
/// only removes itself), and when it was last asked for something.
struct Entry {
    sender: mpsc::Sender<Request>,
    id: u64,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    writers: HashMap<Sku, Entry>,
    /// Counts every use; an entry's `last_used` is this counter at its last use.
    clock: u64,
    next_id: u64,
}

impl Entries {
    /// Remove this writer's entry if it is still the registered one for `sku`.
    fn remove_own(&mut self, sku: &Sku, id: u64) {
        if self.writers.get(sku).is_some_and(|entry| entry.id == id) {
            self.writers.remove(sku);
        }
        metrics::gauge!(METRIC_WRITERS).set(self.writers.len() as f64);
    }

    /// Make room below `max` by evicting the least recently used writers with an empty queue,
    /// a tenth of the cap at once so that the scan is paid once per many new SKUs. An evicted
    /// writer finishes what it took and ends when its last sender is gone; a second writer for
    /// the same SKU meanwhile is safe (appends carry expected versions), only slower.
    fn evict_for(&mut self, max: usize) {
        if self.writers.len() < max {
            return;
        }
        let mut idle: Vec<(u64, Sku)> = self
            .writers
            .iter()
            .filter(|(_, entry)| entry.sender.capacity() == entry.sender.max_capacity())
            .map(|(sku, entry)| (entry.last_used, sku.clone()))
            .collect();
        let room = (max / 10).max(1);
        let excess = self.writers.len() + 1 - max;
        let evict = room.max(excess).min(idle.len());
        if evict < idle.len() {
            idle.select_nth_unstable(evict);
        }
        for (_, sku) in idle.into_iter().take(evict) {
            self.writers.remove(&sku);
        }
        metrics::counter!(METRIC_WRITERS_EVICTED).increment(evict as u64);
    }
}

type Registry = Arc<Mutex<Entries>>;

/// The writers of every SKU in use in this process.
pub struct SkuWriters<S: ?Sized> {
    handler: CommandHandler<S>,
    writers: Registry,
    writers_max: usize,
}

impl<S: ?Sized> Clone for SkuWriters<S> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            writers: self.writers.clone(),
            writers_max: self.writers_max,
        }
    }
}

fn writer_stopped() -> CommandError {
    CommandError::Store(StoreError::backend_because(
        "the SKU's writer stopped before answering",
    ))
}

impl<S: EventStore + ?Sized> SkuWriters<S> {
    pub fn new(handler: CommandHandler<S>) -> Self {
        Self {
            handler,
            writers: Arc::default(),
            writers_max: WRITERS_MAX_DEFAULT,
        }
    }

    /// Keep at most `max` writers (at least one); see [`WRITERS_MAX_DEFAULT`].
    pub fn with_writers_max(mut self, max: usize) -> Self {
        self.writers_max = max.max(1);
        self
    }

    pub fn handler(&self) -> &CommandHandler<S> {
        &self.handler
    }

    /// How many SKUs have a live writer (and a cached state) right now.
    pub fn active(&self) -> usize {
        self.writers
            .lock()
            .expect("writer registry lock")
            .writers
            .len()
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
                command: Box::new(command),
                context: Box::new(context),
                reply,
                caller: crate::spans::caller_span(),
            },
        )
        .await;
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    /// The SKU's balances now, including events other processes appended. A SKU without a
    /// writer is read from the store without starting one, so reads of many SKUs cost no
    /// tasks and no cached states.
    pub async fn current(&self, sku: &Sku) -> Result<SkuSummary, CommandError> {
        let sender = {
            let mut entries = self.writers.lock().expect("writer registry lock");
            entries.clock += 1;
            let clock = entries.clock;
            entries.writers.get_mut(sku).map(|entry| {
                entry.last_used = clock;
                entry.sender.clone()
            })
        };
        let Some(sender) = sender else {
            return Ok(self.handler.load(sku).await?.state.summary());
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(request)) = sender.send(Request::Read { reply }).await {
            // It stopped meanwhile: go the usual way (which starts a writer if need be).
            drop(request);
            return Ok(self.handler.load(sku).await?.state.summary());
        }
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    async fn send(&self, sku: &Sku, mut request: Request) {
        loop {
            let (sender, id) = {
                let mut entries = self.writers.lock().expect("writer registry lock");
                entries.clock += 1;
                let clock = entries.clock;
                if !entries.writers.contains_key(sku) {
                    entries.evict_for(self.writers_max);
                    entries.next_id += 1;
                    let id = entries.next_id;
                    let sender = self.spawn(sku.clone(), id);
                    entries.writers.insert(
                        sku.clone(),
                        Entry {
                            sender,
                            id,
                            last_used: clock,
                        },
                    );
                    metrics::gauge!(METRIC_WRITERS).set(entries.writers.len() as f64);
                }
                let entry = entries
                    .writers
                    .get_mut(sku)
                    .expect("present or inserted above");
                entry.last_used = clock;
                (entry.sender.clone(), entry.id)
            };
            match sender.send(request).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    // The writer stopped (idle, or it failed): forget it and start another.
                    request = returned;
                    self.writers
                        .lock()
                        .expect("writer registry lock")
                        .remove_own(sku, id);
                }
            }
        }
    }

    fn spawn(&self, sku: Sku, id: u64) -> mpsc::Sender<Request> {
        let (sender, receiver) = mpsc::channel(WRITER_QUEUE_COMMANDS_MAX);
        let writer = Writer {
            handler: self.handler.clone(),
            sku,
            cache: None,
        };
        tokio::spawn(writer.run(receiver, id, self.writers.clone()));
        sender
    }
}

/// One SKU's writer task: the only place in this process that decides the SKU's commands.
struct Writer<S: ?Sized> {
    handler: CommandHandler<S>,
    sku: Sku,
    /// The SKU as of its last known version; `None` after anything went wrong, so the next
    /// batch loads it afresh instead of deciding on a state that may be wrong.
    cache: Option<LoadedSku>,
}

/// A queued command and where its answer goes.
struct Queued {
    command: SkuCommand,
    context: CommandContext,
    reply: Reply<CommandOutcome>,
}

impl<S: EventStore + ?Sized> Writer<S> {
    async fn run(mut self, mut receiver: mpsc::Receiver<Request>, id: u64, registry: Registry) {
        let idle = Duration::from_millis(WRITER_IDLE_MS);
        loop {
            let first = match tokio::time::timeout(idle, receiver.recv()).await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(_) => {
                    registry
                        .lock()
                        .expect("writer registry lock")
                        .remove_own(&self.sku, id);
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

    async fn process(&mut self, batch: Vec<Request>) {
        let span = batch_span(&self.sku, &batch);
        self.process_in_span(batch).instrument(span).await;
    }

    async fn process_in_span(&mut self, batch: Vec<Request>) {
        let mut queued = Vec::with_capacity(batch.len());
        let mut reads = Vec::new();
        for request in batch {
            match request {
                Request::Command {
                    command,
                    context,
                    reply,
                    caller: _,
                } => queued.push(Queued {
                    command: *command,
                    context: *context,
                    reply,
                }),
                Request::Read { reply } => reads.push(reply),
            }
        }
        let jobs: Vec<Job<'_>> = queued
            .iter()
            .map(|q| Job {
                command: &q.command,
                context: &q.context,
            })
            .collect();
        let decided = decide_and_append(
            &self.handler,
            &self.sku,
            &mut self.cache,
            &jobs,
            !reads.is_empty(),
        )
        .await;
        drop(jobs);
        match decided {
            Ok(Decided::Answered {
                loaded,
                plans,
                position,
            }) => {
                let summary = loaded.state.summary();
                let answers = answers(&self.handler, plans, position).await;
                for (queued, answer) in queued.into_iter().zip(answers) {
                    let _ = queued.reply.send(answer);
                }
                for reply in reads {
                    let _ = reply.send(Ok(summary.clone()));
                }
                self.cache = Some(*loaded);
            }
            Ok(Decided::AlreadyStored { .. }) => {
                // Some of the batch's event ids are already stored (retries of commands older
                // than the remembered keys): sort each command out on its own, as a batch of
                // one on a fresh load.
                self.cache = None;
                for queued in queued {
                    let answer = self
                        .handler
                        .execute(&self.sku, &queued.command, &queued.context)
                        .await;
                    let _ = queued.reply.send(answer);
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
                for queued in queued {
                    let _ = queued.reply.send(Err(error.clone()));
                }
                for reply in reads {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// The span of one batch, with messaging-style batch semantics: a child of the first traced
/// command's caller (so that a command's trace runs request → writer batch → commit), and
/// following from the other callers (span links, once exported), since one batch serves
/// several requests. With no traced caller (commands of system workers, spans filtered out)
/// the batch is a root span, as it was before batches were joined to their callers.
fn batch_span(sku: &Sku, batch: &[Request]) -> tracing::Span {
    let mut callers = batch.iter().filter_map(|request| match request {
        Request::Command { caller, .. } if !caller.is_none() => Some(caller),
        _ => None,
    });
    let span = match callers.next() {
        Some(first) => {
            tracing::info_span!(parent: first, "writer.batch", sku = %sku, requests = batch.len())
        }
        None => {
            tracing::info_span!(parent: None, "writer.batch", sku = %sku, requests = batch.len())
        }
    };
    for caller in callers {
        span.follows_from(caller);
    }
    span
}
