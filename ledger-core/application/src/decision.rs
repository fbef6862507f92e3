//! The one decision loop: decide a batch of commands for one SKU in order against its state,
//! append the accepted events as one batch with the version they were decided against, and
//! decide again when another writer got there first.
//!
//! Both ways of carrying out commands use it: the per-SKU writer ([`crate::writer`]) with its
//! queue as the batch and its cached state, and [`CommandHandler::execute`] with a batch of one
//! and a fresh load. The concurrency rules are therefore written once:
//! - a command whose key has a kept answer gets exactly that answer (or, with another
//!   fingerprint, is refused as a reused key); commands that share a key within a batch get
//!   the first one's answer; a command whose key the SKU remembers from its events gets its
//!   original answer, whatever deciding it again would say now;
//! - the answers of keyed commands are kept with the batch's events, in the same append;
//! - a command that names an expected version is refused unless the SKU is at it;
//! - refused commands write nothing; a batch that only refuses, decided on a cached state,
//!   first checks the stream for other writers' events, so a refusal never rests on a stale
//!   state;
//! - a lost race (wrong expected version) drops the state and decides the batch again on a
//!   fresh load, a bounded number of times, with a little jitter;
//! - a store that already holds some of the batch's event ids (retries of commands older than
//!   the remembered keys) is reported to the caller, who sorts the commands out one at a time.

use crate::answer::KeptAnswer;
use crate::chain::{recording_time, seal};
use crate::command::{
    encode_events, versioned, CommandContext, CommandError, CommandOutcome, ReservationRights,
    VersionedEvent,
};
use crate::handler::CommandHandler;
use crate::loaded::LoadedSku;
use crate::store::{
    AnswerKey, AppendResult, Appended, EventStore, ExpectedVersion, NewAnswer, StoreError,
    StoredAnswer, APPEND_EVENTS_MAX,
};
use chrono::{DateTime, Utc};
use ledger_domain::envelope::{NewEvent, Position};
use ledger_domain::{scoped_key, DomainError, Sku, SkuCommand, SkuEvent, SkuSummary};
use std::collections::HashMap;
use std::time::Duration;

/// How many times a batch is decided again after losing a race to another writer of the same
/// SKU. Each loss means someone else's command succeeded, so a handful of retries keeps a busy
/// SKU moving; past that the caller gets a clear "try again" instead of an unbounded loop.
pub const COMMAND_CONFLICT_RETRIES_MAX: u32 = 8;

/// Upper bound of the random pause before a retry, multiplied by the attempt number. The jitter
/// spreads contending writers apart so they do not collide again in lockstep.
const CONFLICT_RETRY_JITTER_MS: u64 = 3;

/// Counter: commands answered as retries (a kept answer, the answer of an earlier command with
/// the same key in the batch, or what a remembered key's command produced).
pub const METRIC_IDEMPOTENT_REPLAYS: &str = "ledger_idempotent_replays_total";

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
    /// A retry of a command whose key this SKU remembers from its events: answer with the kept
    /// answer when there is one, otherwise with what the command produced.
    Replay {
        first: u64,
        last: u64,
        state: SkuSummary,
        key: Option<AnswerKey>,
        fingerprint: Option<String>,
    },
    /// The answer kept for the command's key.
    Kept(KeptAnswer),
    /// The same key as the command at this (earlier) index of the batch: the same answer.
    Follows(usize),
    Refused(CommandError),
}

/// A batch decided against one state: a plan per command, the events to append, and the
/// answers to keep with them.
#[derive(Debug)]
pub struct BatchDecision {
    pub plans: Vec<Plan>,
    pub new_events: Vec<NewEvent>,
    pub answers: Vec<NewAnswer>,
    /// True when any command was refused.
    pub refused: bool,
}

/// Answers already kept for some of a batch's keys, by scoped key (see [`scoped_key`]).
pub type KeptAnswers = HashMap<String, StoredAnswer>;

/// The key an answer is kept under for `context`, when the command's answer is to be kept (it
/// carries a key and a fingerprint).
fn answer_key(context: &CommandContext) -> Option<(AnswerKey, String)> {
    let key = context.idempotency_key.clone()?;
    let fingerprint = context.fingerprint.clone()?;
    Some((
        AnswerKey {
            scope: context.scope(),
            key,
        },
        fingerprint,
    ))
}

/// The plan for a keyed command from the answers known before deciding: a follower of an earlier
/// command of the batch with the same key, the kept answer, or a refusal of a reused key.
fn known_answer(
    job: &Job<'_>,
    scoped: &str,
    leaders: &HashMap<String, usize>,
    jobs: &[Job<'_>],
    kept: &KeptAnswers,
) -> Option<Plan> {
    let reused = || {
        Plan::Refused(CommandError::IdempotencyKeyReused {
            key: job.context.idempotency_key.clone().unwrap_or_default(),
        })
    };
    if let Some(&leader) = leaders.get(scoped) {
        return Some(
            if jobs[leader].context.fingerprint == job.context.fingerprint {
                Plan::Follows(leader)
            } else {
                reused()
            },
        );
    }
    let stored = kept.get(scoped)?;
    if job.context.fingerprint.as_deref() != Some(stored.fingerprint.as_str()) {
        return Some(reused());
    }
    // An answer of another format is not replayed; the command is decided again instead.
    KeptAnswer::from_json(&stored.answer).map(Plan::Kept)
}

/// Decide every job in order against `loaded`, folding each accepted one into it before the
/// next, so each command sees the effects of the ones before it. Refused commands change
/// nothing. `kept` holds answers the store already keeps for some of the batch's keys. Pure
/// apart from its arguments: `now` is the one moment the batch is decided at, `recorded_at`
/// the time its events are recorded with (see [`crate::chain::recording_time`]); accepted
/// events are sealed onto the SKU's chain as they are decided.
pub fn decide_batch(
    loaded: &mut LoadedSku,
    jobs: &[Job<'_>],
    now: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    kept: &KeptAnswers,
) -> BatchDecision {
    let stream = loaded.state.sku.stream();
    let mut plans = Vec::with_capacity(jobs.len());
    let mut new_events = Vec::new();
    let mut answers = Vec::new();
    let mut refused = false;
    let mut leaders: HashMap<String, usize> = HashMap::new();
    for (index, job) in jobs.iter().enumerate() {
        let scoped = job.context.scoped_key();
        if let Some(scoped) = scoped.as_deref() {
            // Answers are kept (and shared within a batch) only for commands with a
            // fingerprint; other keyed commands rely on the keys remembered from the events.
            if job.context.fingerprint.is_some() {
                if let Some(plan) = known_answer(job, scoped, &leaders, jobs, kept) {
                    plans.push(plan);
                    continue;
                }
                leaders.insert(scoped.to_owned(), index);
            }
            if let Some((first, last)) = loaded.remembered(scoped) {
                let (key, fingerprint) = answer_key(job.context).unzip();
                plans.push(Plan::Replay {
                    first,
                    last,
                    state: loaded.state.summary(),
                    key,
                    fingerprint,
                });
                continue;
            }
        }
        let moments = Moments { now, recorded_at };
        let plan = decide_one(loaded, &stream, job, moments, &mut new_events);
        refused |= matches!(plan, Plan::Refused(_));
        let keep = scoped.is_some_and(|scoped| !kept.contains_key(&scoped));
        if let (true, Some((key, fingerprint))) = (keep, answer_key(job.context)) {
            if let Some(answer) = answer_to_keep(&plan) {
                answers.push(NewAnswer {
                    key,
                    fingerprint,
                    answer: answer.to_json(),
                    positioned: matches!(plan, Plan::Accepted { .. }),
                });
            }
        }
        plans.push(plan);
    }
    BatchDecision {
        plans,
        new_events,
        answers,
        refused,
    }
}

/// When a batch is decided, and when its events are recorded.
#[derive(Debug, Clone, Copy)]
struct Moments {
    now: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

/// Decide one command against `loaded`; an accepted one is sealed onto the chain, folded in and
/// its events added to `new_events`.
fn decide_one(
    loaded: &mut LoadedSku,
    stream: &str,
    job: &Job<'_>,
    moments: Moments,
    new_events: &mut Vec<NewEvent>,
) -> Plan {
    let now = moments.now;
    if let Some(expected) = job.context.expected_version {
        if expected != loaded.state.version {
            return Plan::Refused(CommandError::VersionMismatch {
                expected,
                actual: loaded.state.version,
            });
        }
    }
    if let Err(refused) = check_reservation_rights(loaded, job) {
        return Plan::Refused(refused.into());
    }
    let events: Vec<SkuEvent> = match loaded.state.decide(job.command, now) {
        Ok(events) => events,
        Err(rejected) => return Plan::Refused(rejected.into()),
    };
    if events.is_empty() {
        return Plan::Unchanged(loaded.state.summary());
    }
    let first = loaded.state.version.map_or(0, |v| v + 1);
    let mut encoded = encode_events(stream, &events, job.context);
    seal(
        stream,
        first,
        loaded.head_hash(),
        moments.recorded_at,
        &mut encoded,
    );
    loaded.record_appended(&events, &encoded);
    if let Err(broken) = loaded.state.check_balances() {
        panic!(
            "decide produced a state that breaks an invariant for {}: {broken}",
            loaded.state.sku
        );
    }
    new_events.extend(encoded);
    assert!(new_events.len() <= APPEND_EVENTS_MAX);
    Plan::Accepted {
        events: versioned(first, events),
        state: loaded.state.summary(),
    }
}

/// A caller limited to its own reservations may only release or confirm one its principal
/// holds (nor reserve again under the id of one another principal holds). An open reservation without a recorded holder (made before holders were recorded,
/// or by a process without principals) may be ended by anyone allowed to reserve.
fn check_reservation_rights(loaded: &LoadedSku, job: &Job<'_>) -> Result<(), DomainError> {
    if job.context.reservation_rights != ReservationRights::OwnOnly {
        return Ok(());
    }
    let reservation_id = match job.command {
        // Reserving an id another principal holds would answer with their reservation.
        SkuCommand::Reserve(c) => c.reservation_id.as_str(),
        SkuCommand::Release(c) => c.reservation_id.as_str(),
        SkuCommand::Confirm(c) => c.reservation_id.as_str(),
        _ => return Ok(()),
    };
    match loaded.holder(reservation_id) {
        Some(holder) if Some(holder) != job.context.principal.as_deref() => {
            Err(DomainError::ReservationHeldByAnother {
                reservation_id: reservation_id.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// The answer a plan gives, when it is one to keep (the position of an accepted command is
/// filled in by the store when it appends).
fn answer_to_keep(plan: &Plan) -> Option<KeptAnswer> {
    let result = match plan {
        Plan::Accepted { events, state } => Ok(CommandOutcome {
            state: state.clone(),
            events: events.clone(),
            position: None,
            deduplicated: false,
        }),
        Plan::Unchanged(state) => Ok(CommandOutcome {
            state: state.clone(),
            events: Vec::new(),
            position: None,
            deduplicated: true,
        }),
        Plan::Refused(error) => Err(error.clone()),
        Plan::Replay { .. } | Plan::Kept(_) | Plan::Follows(_) => return None,
    };
    KeptAnswer::of(&result)
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
    let mut kept = KeptAnswers::new();
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
        // Recorded by the wall clock, as the stores recorded times before the writer chose
        // them; `handler.now()` is the decisions' clock, which tests move by hand.
        let recorded_at = recording_time(Utc::now(), loaded.head_recorded_at());
        let decision = decide_batch(&mut loaded, jobs, handler.now(), recorded_at, &kept);
        if decision.new_events.is_empty() {
            if decision.refused && !fresh && handler.refresh(&mut loaded).await? > 0 {
                // Another writer changed the SKU since it was cached: decide again.
                *cache = Some(loaded);
                continue;
            }
            if !decision.answers.is_empty() {
                // Keep the answers of the refused and unchanged commands.
                let kept_now = handler
                    .store()
                    .append_answered(&stream, ExpectedVersion::Any, Vec::new(), decision.answers)
                    .await?;
                if let Appended::AnsweredBefore(found) = kept_now {
                    remember(&mut kept, found);
                    *cache = Some(loaded);
                    continue;
                }
            }
            return Ok(Decided::Answered {
                loaded: Box::new(loaded),
                plans: decision.plans,
                position: None,
            });
        }
        let expected = base_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = decision.new_events.len() as u64;
        let appended = handler
            .store()
            .append_answered(&stream, expected, decision.new_events, decision.answers)
            .await;
        match appended {
            Ok(Appended::Written(Some(result))) if !result.deduplicated => {
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
            Ok(Appended::Written(Some(result))) => {
                return Ok(Decided::AlreadyStored {
                    stored: Ok(result),
                    events,
                });
            }
            Ok(Appended::Written(None)) => {
                return Err(CommandError::Store(StoreError::backend_because(
                    "the store appended no events for a batch that carried some",
                )));
            }
            Ok(Appended::AnsweredBefore(found)) => {
                // Some keys were answered meanwhile (by another process, or before the answers
                // this writer remembers): decide again, answering those from their kept answers.
                remember(&mut kept, found);
            }
            Err(error @ StoreError::IdempotencyMismatch { .. }) => {
                return Ok(Decided::AlreadyStored {
                    stored: Err(error),
                    events,
                });
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

fn remember(kept: &mut KeptAnswers, found: Vec<StoredAnswer>) {
    for answer in found {
        kept.insert(scoped_key(&answer.key.scope, &answer.key.key), answer);
    }
}

/// The answers the commands of a batch get from their plans, in order; `position` is where the
/// batch was appended.
pub async fn answers<S: EventStore + ?Sized>(
    handler: &CommandHandler<S>,
    plans: Vec<Plan>,
    position: Option<Position>,
) -> Vec<Result<CommandOutcome, CommandError>> {
    let mut answers: Vec<Result<CommandOutcome, CommandError>> = Vec::with_capacity(plans.len());
    for plan in plans {
        if matches!(plan, Plan::Replay { .. } | Plan::Kept(_) | Plan::Follows(_)) {
            metrics::counter!(METRIC_IDEMPOTENT_REPLAYS).increment(1);
        }
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
            Plan::Replay {
                first,
                last,
                state,
                key,
                fingerprint,
            } => replay(handler, state, first, last, key, fingerprint).await,
            Plan::Kept(kept) => kept.result(),
            Plan::Follows(leader) => answers[leader].clone(),
            Plan::Refused(error) => Err(error),
        };
        answers.push(answer);
    }
    answers
}

/// The answer to a retry the SKU remembers from its events: its kept answer when there is one
/// (refusing a reused key), otherwise what the command produced, read back from the stream.
async fn replay<S: EventStore + ?Sized>(
    handler: &CommandHandler<S>,
    state: SkuSummary,
    first: u64,
    last: u64,
    key: Option<AnswerKey>,
    fingerprint: Option<String>,
) -> Result<CommandOutcome, CommandError> {
    if let (Some(key), Some(fingerprint)) = (key, fingerprint) {
        let kept = handler
            .store()
            .kept_answers(std::slice::from_ref(&key))
            .await?;
        if let Some(stored) = kept.first() {
            if stored.fingerprint != fingerprint {
                return Err(CommandError::IdempotencyKeyReused { key: key.key });
            }
            if let Some(answer) = KeptAnswer::from_json(&stored.answer) {
                return answer.result();
            }
        }
    }
    handler.original_outcome(state, first, last).await
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
                plans, position, ..
            } => answers(self, plans, position)
                .await
                .pop()
                .expect("a batch of one has one answer"),
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
