//! The one decision loop: decide a batch of commands for one SKU in order against its state,
//! append the accepted events as one batch with the version they were decided against, and
//! decide again when another writer got there first.
//!
//! Both ways of carrying out commands use it: the per-SKU writer ([`crate::writer`]) with its
//! queue as the batch and its cached state, and [`CommandHandler::execute`] with a batch of one
//! and a fresh load. The concurrency rules are therefore written once:
//! - a command whose idempotency key the SKU remembers gets its original answer, whatever
//!   deciding it again would say now;
//! - a command that names an expected version is refused unless the SKU is at it;
//! - refused commands write nothing; a batch that only refuses, decided on a cached state,
//!   first checks the stream for other writers' events, so a refusal never rests on a stale
//!   state;
//! - a lost race (wrong expected version) drops the state and decides the batch again on a
//!   fresh load, a bounded number of times, with a little jitter;
//! - a store that already holds some of the batch's event ids (retries of commands older than
//!   the remembered keys) is reported to the caller, who sorts the commands out one at a time.

use crate::command::{
    encode_events, versioned, CommandContext, CommandError, CommandOutcome, VersionedEvent,
};
use crate::handler::CommandHandler;
use crate::loaded::LoadedSku;
use crate::store::{AppendResult, EventStore, ExpectedVersion, StoreError, APPEND_EVENTS_MAX};
use chrono::{DateTime, Utc};
use ledger_domain::envelope::{NewEvent, Position};
use ledger_domain::{Sku, SkuCommand, SkuEvent, SkuSummary};
use std::time::Duration;

/// How many times a batch is decided again after losing a race to another writer of the same
/// SKU. Each loss means someone else's command succeeded, so a handful of retries keeps a busy
/// SKU moving; past that the caller gets a clear "try again" instead of an unbounded loop.
pub const COMMAND_CONFLICT_RETRIES_MAX: u32 = 8;

/// Upper bound of the random pause before a retry, multiplied by the attempt number. The jitter
/// spreads contending writers apart so they do not collide again in lockstep.
const CONFLICT_RETRY_JITTER_MS: u64 = 3;

/// One command of a batch, borrowed from whoever queued it.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub command: &'a SkuCommand,
    pub context: &'a CommandContext,
}

/// What the batch decided for one command.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Accepted: these events, with the balances right after them.
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

/// A batch decided against one state: a plan per command, and the events to append.
#[derive(Debug)]
pub struct BatchDecision {
    pub plans: Vec<Plan>,
    pub new_events: Vec<NewEvent>,
    /// True when any command was refused.
    pub refused: bool,
}

/// Decide every job in order against `loaded`, folding each accepted one into it before the
/// next, so each command sees the effects of the ones before it. Refused commands change
/// nothing. Pure apart from its arguments: `now` is the one moment the batch is decided at.
pub fn decide_batch(loaded: &mut LoadedSku, jobs: &[Job<'_>], now: DateTime<Utc>) -> BatchDecision {
    let stream = loaded.state.sku.stream();
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
        let events: Vec<SkuEvent> = match loaded.state.decide(job.command, now) {
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
        let encoded = encode_events(&stream, &events, job.context);
        loaded.record_appended(&events, &encoded);
        if let Err(broken) = loaded.state.check_balances() {
            panic!(
                "decide produced a state that breaks an invariant for {}: {broken}",
                loaded.state.sku
            );
        }
        new_events.extend(encoded);
        assert!(new_events.len() <= APPEND_EVENTS_MAX);
        plans.push(Plan::Accepted {
            events: versioned(first, events),
            state: loaded.state.summary(),
        });
    }
    BatchDecision {
        plans,
        new_events,
        refused,
    }
}

/// How a batch ended.
pub enum Decided {
    /// Decided (and, if anything was accepted, durably appended at `position`): answer each
    /// command from its plan. `loaded` is the SKU after the batch.
    Answered {
        loaded: Box<LoadedSku>,
        plans: Vec<Plan>,
        position: Option<Position>,
    },
    /// The store already holds some of the batch's event ids: what it said, and how many
    /// events the batch carried. Nothing was written; the commands must be sorted out one at a
    /// time.
    AlreadyStored {
        stored: Result<AppendResult, StoreError>,
        events: u64,
    },
}

/// Decide `jobs` against the SKU and append what they accept, retrying lost races.
///
/// `cache` is the SKU as last known (taken, and left `None` when it can no longer be trusted);
/// `must_refresh` asks for the stream's tail to be read first even on a cached state (a reader
/// in the batch wants the latest balances).
pub async fn decide_and_append<S: EventStore + ?Sized>(
    handler: &CommandHandler<S>,
    sku: &Sku,
    cache: &mut Option<LoadedSku>,
    jobs: &[Job<'_>],
    must_refresh: bool,
) -> Result<Decided, CommandError> {
    let stream = sku.stream();
    let mut must_refresh = must_refresh;
    for attempt in 0..=COMMAND_CONFLICT_RETRIES_MAX {
        if attempt > 0 {
            let jitter = rand::random_range(0..=CONFLICT_RETRY_JITTER_MS * u64::from(attempt));
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        let (mut loaded, fresh) = match cache.take() {
            Some(loaded) => (loaded, false),
            None => (handler.load(sku).await?, true),
        };
        if must_refresh && !fresh {
            handler.refresh(&mut loaded).await?;
        }
        must_refresh = false;
        let base_version = loaded.state.version;
        let decision = decide_batch(&mut loaded, jobs, handler.now());
        if decision.new_events.is_empty() {
            if decision.refused && !fresh && handler.refresh(&mut loaded).await? > 0 {
                // Another writer changed the SKU since it was cached: decide again.
                *cache = Some(loaded);
                continue;
            }
            return Ok(Decided::Answered {
                loaded: Box::new(loaded),
                plans: decision.plans,
                position: None,
            });
        }
        let expected = base_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = decision.new_events.len() as u64;
        match handler
            .store()
            .append(&stream, expected, decision.new_events)
            .await
        {
            Ok(result) if !result.deduplicated => {
                if Some(result.version) != loaded.state.version {
                    return Err(CommandError::CorruptStream {
                        stream,
                        message: format!(
                            "the store put the batch at version {}, the fold at {:?}",
                            result.version, loaded.state.version
                        ),
                    });
                }
                handler.maybe_snapshot(&mut loaded);
                return Ok(Decided::Answered {
                    loaded: Box::new(loaded),
                    plans: decision.plans,
                    position: Some(result.position),
                });
            }
            stored @ (Ok(_) | Err(StoreError::IdempotencyMismatch { .. })) => {
                return Ok(Decided::AlreadyStored { stored, events });
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

/// The answer a command gets from its plan; `position` is where its batch was appended.
pub async fn answer<S: EventStore + ?Sized>(
    handler: &CommandHandler<S>,
    plan: Plan,
    position: Option<Position>,
) -> Result<CommandOutcome, CommandError> {
    match plan {
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
        Plan::Replay { first, last, state } => handler.original_outcome(state, first, last).await,
        Plan::Refused(error) => Err(error),
    }
}

impl<S: EventStore + ?Sized> CommandHandler<S> {
    /// Carry out one command against the latest state of its SKU: the decision loop with a
    /// batch of one and nothing cached.
    #[tracing::instrument(
        name = "handler.execute",
        skip_all,
        fields(sku = %sku, command = command.name())
    )]
    pub async fn execute(
        &self,
        sku: &Sku,
        command: &SkuCommand,
        context: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let job = Job { command, context };
        match decide_and_append(self, sku, &mut None, &[job], false).await? {
            Decided::Answered {
                mut plans,
                position,
                ..
            } => {
                let plan = plans.pop().expect("a batch of one has one plan");
                answer(self, plan, position).await
            }
            Decided::AlreadyStored { stored, events } => {
                // The store recognised the event ids: a retry of a command that is already
                // stored, beyond the remembered keys. Report what it produced, as stored.
                let result = stored?;
                let now = self.load(sku).await?.state.summary();
                self.original_outcome(now, result.version + 1 - events, result.version)
                    .await
            }
        }
    }
}
