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

/// Commands waiting for one SKU's writer. When the queue is full, callers wait for room: a
/// flood on one SKU slows its own callers instead of growing memory without bound.
pub const WRITER_QUEUE_COMMANDS_MAX: usize = 4_096;

/// Most commands decided and appended as one batch. Each produces at most two events, so a
/// batch stays well inside one append ([`crate::store::APPEND_EVENTS_MAX`]).
pub const WRITER_BATCH_COMMANDS_MAX: usize = 1_024;

/// A writer with nothing to do for this long stops and drops its cached state, so memory
/// follows the SKUs in use rather than every SKU ever touched.
pub const WRITER_IDLE_MS: u64 = 30_000;

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

enum Request {
    Command {
        command: Box<SkuCommand>,
        context: Box<CommandContext>,
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
    CommandError::Store(StoreError::backend_because(
        "the SKU's writer stopped before answering",
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
                command: Box::new(command),
                context: Box::new(context),
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
            sku,
            cache: None,
        };
        tokio::spawn(writer.run(receiver, sender.clone(), self.writers.clone()));
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
        let mut queued = Vec::with_capacity(batch.len());
        let mut reads = Vec::new();
        for request in batch {
            match request {
                Request::Command {
                    command,
                    context,
                    reply,
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
