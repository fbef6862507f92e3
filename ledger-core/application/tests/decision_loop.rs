//! The one decision loop against a plain reference model.
//!
//! Random command sequences run through the loop on the in-memory store, and after each command
//! the answer and the stored state must match what a few lines of independent bookkeeping
//! (`support::Model`) expect from the written rules. The sequences draw from a small pool of
//! reservation ids, order ids, quantities and TTLs, so that duplicates, conflicts, releases of
//! ended reservations and expiries (the clock advances between commands) happen often rather
//! than by luck. At the end the stored stream is replayed from scratch and must rebuild the same
//! state.
//!
//! Two ways in, one loop: [`CommandHandler::execute`] is the loop with a batch of one, and the
//! per-SKU writer runs queues of commands that arrive at once as one batch. Both are held to the
//! same model, commands with idempotency keys included. The batch decision's rules are also
//! pinned down one by one at the end (in order, each against the effects of the earlier ones,
//! refusals changing nothing).

mod support;

use chrono::{TimeZone, Utc};
use ledger_application::command::{
    Clock, CommandContext, CommandError, CommandOutcome, VersionedEvent,
};
use ledger_application::decision::{decide_batch, Job, KeptAnswers, Plan};
use ledger_application::loaded::LoadedSku;
use ledger_application::store::EventStore;
use ledger_application::writer::SkuWriters;
use ledger_domain::{
    AdjustStock, AdjustmentDelta, ConfirmReservation, DomainError, ExpireReservation, Quantity,
    Reason, ReleaseReservation, ReplenishStock, ReservationId, ReserveStock, SkuCommand, SkuEvent,
    SkuState, StockReplenished, StockReserved,
};
use proptest::collection::vec;
use proptest::prelude::*;
use support::*;

// ---------------------------------------------------------------------------------------------
// Property: single commands through the loop agree with the model
// ---------------------------------------------------------------------------------------------

/// The previous command sent, for `Step::RetryPrevious`.
struct Previous {
    command: PlainCommand,
    idempotency_key: String,
    /// The events the command appended, once it has appended any: a retry must get exactly
    /// these back and append nothing.
    appended: Option<Vec<VersionedEvent>>,
}

async fn run_against_model(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let clock = TestClock::starting_at(start());
    let (handler, store) = handler_with_clock(clock.clone());
    let sku = sku();
    let mut model = Model::default();
    let mut previous: Option<Previous> = None;

    for (index, step) in steps.iter().enumerate() {
        let (command, idempotency_key, appended_before) = match step {
            Step::AdvanceClock { seconds } => {
                clock.advance(*seconds);
                continue;
            }
            Step::Command(command) => (command.clone(), format!("step-{index}"), None),
            Step::ReserveAgain { reservation_id } => (
                model.request_again(reservation_id),
                format!("step-{index}"),
                None,
            ),
            Step::RetryPrevious => match &previous {
                None => continue,
                Some(previous) => (
                    previous.command.clone(),
                    previous.idempotency_key.clone(),
                    previous.appended.clone(),
                ),
            },
        };
        let context = format!("step {index} ({step:?}) at {}", clock.now());
        let command_context = CommandContext {
            idempotency_key: Some(idempotency_key.clone()),
            ..CommandContext::default()
        };
        let result = handler
            .execute(&sku, &command.to_sku_command(), &command_context)
            .await;

        let appended = match appended_before {
            // A retry of a command that appended: the original outcome, and the model must not
            // move, whatever deciding the command again would say now.
            Some(original) => {
                let outcome = result.map_err(|e| fail(&context, e))?;
                prop_assert!(outcome.deduplicated, "{}: retry not deduplicated", context);
                prop_assert_eq!(&outcome.events, &original, "{}: retry events", context);
                Some(original)
            }
            None => {
                let version_before = model.version();
                let expected = model.execute(&command, clock.now());
                check_outcome(&context, version_before, expected, result)?
            }
        };
        previous = Some(Previous {
            command,
            idempotency_key,
            appended,
        });
        assert_agrees_with_model(&handler, &model, &context).await?;
    }

    assert_replay_rebuilds_the_state(&handler, &store, &model).await
}

/// Compare the handler's answer with the model's, and return the events appended if any.
fn check_outcome(
    context: &str,
    version_before: Option<u64>,
    expected: Result<Expected, DomainError>,
    actual: Result<CommandOutcome, CommandError>,
) -> Result<Option<Vec<VersionedEvent>>, TestCaseError> {
    match (expected, actual) {
        (Ok(Expected::Appends(event)), Ok(outcome)) => {
            let version = version_before.map_or(0, |v| v + 1);
            let expected_events = vec![VersionedEvent { version, event }];
            prop_assert!(!outcome.deduplicated, "{}: marked deduplicated", context);
            prop_assert_eq!(&outcome.events, &expected_events, "{}: events", context);
            prop_assert!(outcome.position.is_some(), "{}: no position", context);
            prop_assert_eq!(outcome.state.version, Some(version), "{}", context);
            Ok(Some(outcome.events))
        }
        (Ok(Expected::Unchanged), Ok(outcome)) => {
            prop_assert!(outcome.deduplicated, "{}: not deduplicated", context);
            prop_assert!(
                outcome.events.is_empty(),
                "{}: {:?}",
                context,
                outcome.events
            );
            prop_assert_eq!(outcome.position, None, "{}: position", context);
            Ok(None)
        }
        (Err(expected), Err(CommandError::Rejected(actual))) => {
            prop_assert_eq!(actual, expected, "{}: rejection", context);
            Ok(None)
        }
        (expected, actual) => Err(fail(
            context,
            format!("the model expected {expected:?}, the handler answered {actual:?}"),
        )),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: MODEL_PROPERTY_CASES,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_handler_agrees_with_the_reference_model_after_every_command(
        steps in vec(step(), 1..=STEPS_MAX)
    ) {
        runtime().block_on(run_against_model(steps))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Property: queues decided as one batch agree with the model
// ---------------------------------------------------------------------------------------------

/// What an answer says, in terms the model also speaks.
fn observed(answer: &Result<CommandOutcome, CommandError>) -> Result<(Answer, Balances), String> {
    match answer {
        Ok(outcome) => Ok((
            Answer::Done {
                events: outcome.events.clone(),
                deduplicated: outcome.deduplicated,
            },
            Balances::of(&outcome.state),
        )),
        Err(CommandError::Rejected(rejected)) => {
            Err(format!("{:?}", Answer::Rejected(rejected.clone())))
        }
        Err(other) => Err(format!("error {other}")),
    }
}

/// Queue each of `queues` at a fresh single writer, every command of a queue at once (so they
/// meet in one batch), and let the model carry the same commands out one by one. Every answer,
/// the balances it reports, and the final stream must be what the model says.
async fn compare_batches_with_model(
    queues: Vec<Vec<(PlainCommand, Option<String>)>>,
) -> Result<(), TestCaseError> {
    let clock = TestClock::starting_at(start());
    let (handler, store) = handler_with_clock(clock.clone());
    let writers = SkuWriters::new(handler.clone());
    let the_sku = sku();
    let mut model = Model::default();
    for (index, queue) in queues.into_iter().enumerate() {
        let sent = queue.iter().map(|(command, key)| {
            let context = CommandContext {
                idempotency_key: key.clone(),
                ..CommandContext::default()
            };
            writers.execute(&the_sku, command.to_sku_command(), context)
        });
        let answers = futures::future::join_all(sent).await;
        for (position, ((command, key), answer)) in queue.iter().zip(answers).enumerate() {
            let context = format!("queue {index} command {position} ({command:?}, key {key:?})");
            let expected = model.execute_keyed(command, key.as_deref(), clock.now());
            match (expected, observed(&answer)) {
                (Answer::Rejected(expected), Err(actual)) => {
                    prop_assert_eq!(
                        actual,
                        format!("{:?}", Answer::Rejected(expected)),
                        "{}",
                        context
                    );
                }
                (expected @ Answer::Done { .. }, Ok((actual, balances))) => {
                    prop_assert_eq!(actual, expected, "{}: answer", context);
                    prop_assert_eq!(balances, model.balances(), "{}: balances", context);
                }
                (expected, actual) => {
                    return Err(fail(
                        context,
                        format!("the model expected {expected:?}, the writer answered {actual:?}"),
                    ))
                }
            }
        }
        clock.advance(20);
    }
    let current = writers
        .current(&the_sku)
        .await
        .map_err(|e| fail("current", e))?;
    prop_assert_eq!(
        Balances::of(&current),
        model.balances(),
        "balances at the end"
    );
    let stored = store
        .read_stream(&the_sku.stream(), 0, READ_EVENTS_MAX)
        .await
        .map_err(|e| fail("reading the stream", e))?;
    prop_assert_eq!(stored.len(), model.events.len(), "stream length");
    assert_replay_rebuilds_the_state(&handler, &store, &model).await
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: BATCH_PROPERTY_CASES,
        ..ProptestConfig::default()
    })]

    #[test]
    fn queues_decided_as_one_batch_agree_with_the_reference_model(
        queues in vec(vec(keyed_command(), 1..=25), 1..=4)
    ) {
        runtime().block_on(compare_batches_with_model(queues))?;
    }
}

// ---------------------------------------------------------------------------------------------
// The batch decision, rule by rule
// ---------------------------------------------------------------------------------------------

fn batch_now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 17, 9, 30, 0).unwrap()
}

fn given(events: &[SkuEvent]) -> SkuState {
    let mut state = SkuState::new(sku());
    for event in events {
        state.apply(event);
    }
    state
}

fn replenished(quantity: u64) -> SkuEvent {
    SkuEvent::Replenished(StockReplenished {
        quantity,
        reference: None,
        location: ledger_domain::DEFAULT_LOCATION.to_owned(),
    })
}

fn reserved(reservation_id: &str, quantity: u64) -> SkuEvent {
    SkuEvent::Reserved(StockReserved {
        reservation_id: reservation_id.to_owned(),
        order_id: None,
        quantity,
        ttl_seconds: None,
        expires_at: None,
        location: ledger_domain::DEFAULT_LOCATION.to_owned(),
    })
}

fn id(value: &str) -> ReservationId {
    ReservationId::parse(value).unwrap()
}

fn confirm(reservation_id: &str) -> SkuCommand {
    SkuCommand::Confirm(ConfirmReservation {
        reservation_id: id(reservation_id),
    })
}

fn expire(reservation_id: &str) -> SkuCommand {
    SkuCommand::Expire(ExpireReservation {
        reservation_id: id(reservation_id),
    })
}

fn adjust(delta: i64) -> SkuCommand {
    SkuCommand::Adjust(AdjustStock {
        delta: AdjustmentDelta::new(delta).unwrap(),
        reason: Reason::parse("cycle count").unwrap(),
        reference: None,
        location: ledger_domain::LocationId::default_location(),
    })
}

fn plain_reserve(reservation_id: &str, quantity: u64) -> SkuCommand {
    SkuCommand::Reserve(ReserveStock {
        reservation_id: id(reservation_id),
        order_id: None,
        quantity: Quantity::new(quantity).unwrap(),
        ttl_seconds: None,
        allocation: ledger_domain::Allocation::default(),
    })
}

fn plain_release(reservation_id: &str) -> SkuCommand {
    SkuCommand::Release(ReleaseReservation {
        reservation_id: id(reservation_id),
        reason: None,
    })
}

fn plain_replenish(quantity: u64) -> SkuCommand {
    SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
        location: ledger_domain::LocationId::default_location(),
    })
}

/// Decide `commands` as one batch against `state`; each command's events, or its rejection.
fn decide(
    state: &mut SkuState,
    commands: &[SkuCommand],
) -> Vec<Result<Vec<SkuEvent>, DomainError>> {
    let context = CommandContext::default();
    let jobs: Vec<Job<'_>> = commands
        .iter()
        .map(|command| Job {
            command,
            context: &context,
        })
        .collect();
    let mut loaded = LoadedSku::new(state.clone());
    let decision = decide_batch(
        &mut loaded,
        &jobs,
        batch_now(),
        batch_now(),
        &KeptAnswers::new(),
    );
    *state = loaded.state;
    decision
        .plans
        .into_iter()
        .map(|plan| match plan {
            Plan::Accepted { events, .. } => Ok(events
                .into_iter()
                .map(|e: VersionedEvent| e.event)
                .collect()),
            Plan::Unchanged(_) => Ok(Vec::new()),
            Plan::Refused(CommandError::Rejected(rejected)) => Err(rejected),
            other => panic!("a batch without keys or versions planned {other:?}"),
        })
        .collect()
}

#[test]
fn a_batch_is_decided_in_order_and_rejected_commands_change_nothing() {
    let mut state = given(&[replenished(3)]);

    let results = decide(
        &mut state,
        &[
            plain_reserve("r-1", 2),
            plain_reserve("r-2", 2),
            plain_reserve("r-3", 1),
        ],
    );

    assert_eq!(
        results,
        vec![
            Ok(vec![reserved("r-1", 2)]),
            Err(DomainError::InsufficientStock {
                requested: 2,
                available: 1,
                location: Some(ledger_domain::DEFAULT_LOCATION.to_owned()),
            }),
            Ok(vec![reserved("r-3", 1)]),
        ]
    );
    assert_eq!(
        state,
        given(&[replenished(3), reserved("r-1", 2), reserved("r-3", 1)]),
        "the state is the given one with exactly the accepted events folded"
    );
    assert_eq!(state.available(), 0);
    assert!(!state.reservations.contains_key("r-2"));
    assert_eq!(state.check_invariants(), Ok(()));
}

#[test]
fn a_batch_decides_each_command_against_the_effects_of_the_earlier_ones() {
    let mut state = given(&[]);

    let results = decide(
        &mut state,
        &[
            plain_reserve("r-1", 5),
            plain_replenish(5),
            plain_reserve("r-1", 5),
            plain_release("r-1"),
            plain_reserve("r-1", 5),
            confirm("r-1"),
            adjust(-1),
        ],
    );

    let outcomes: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().map(Vec::len).map_err(DomainError::code))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            Err("insufficient-stock"),
            Ok(1),
            Ok(1),
            Ok(1),
            // The same request again after the release is recognised as a retry.
            Ok(0),
            Err("reservation-closed"),
            Ok(1),
        ]
    );
    assert_eq!(state.version, Some(3));
    assert_eq!((state.on_hand, state.reserved), (4, 0));
    assert_eq!(state.check_invariants(), Ok(()));
}

#[test]
fn a_batch_of_only_rejected_commands_leaves_the_state_as_it_was() {
    let before = given(&[replenished(2), reserved("r-1", 2)]);
    let mut state = before.clone();

    let results = decide(
        &mut state,
        &[
            plain_reserve("r-2", 1),
            plain_release("r-9"),
            adjust(-1),
            expire("r-1"),
        ],
    );

    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert_eq!(state, before);
}
