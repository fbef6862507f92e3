//! Answers kept for keyed commands. A command that carries an idempotency key and a fingerprint
//! has its answer kept for its key, in the same transaction as its events where the store can
//! (PostgreSQL), so that a retry gets exactly the first answer back — refusals included — and
//! the same key with another request is refused. The kept form is this module's JSON: stable,
//! versioned, and independent of the in-memory types' layout.

use crate::command::{CommandError, CommandOutcome, VersionedEvent};
use ledger_domain::{DomainError, Position, SkuEvent, SkuSummary};
use serde::{Deserialize, Serialize};

/// The layout of a kept answer; an answer of another format is not replayed but decided again
/// (as if it had not been kept), so a format change never misreads an old answer.
pub const ANSWER_FORMAT: u32 = 1;

/// A kept answer, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptAnswer {
    pub format: u32,
    #[serde(flatten)]
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The command was carried out (or found already done).
    Done(DoneAnswer),
    /// The command was refused for a reason that stays true for this request.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneAnswer {
    pub state: SkuSummary,
    pub events: Vec<KeptEvent>,
    /// Filled in by the store when the command's events are appended.
    pub position: Option<Position>,
    pub deduplicated: bool,
}

/// An event of a kept answer, in its stored form (type, schema version, payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptEvent {
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
}

/// The refusals worth keeping: they depend on the request and the state it met, not on a
/// passing failure (a store outage is never kept, so its retry runs again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    Rejected(DomainError),
    VersionMismatch {
        expected: Option<u64>,
        actual: Option<u64>,
    },
}

impl KeptAnswer {
    /// The answer to keep for a command's result, or `None` when the result is not final (a
    /// store failure, contention: a retry must run the command again).
    pub fn of(result: &Result<CommandOutcome, CommandError>) -> Option<Self> {
        let answer = match result {
            Ok(outcome) => Answer::Done(DoneAnswer {
                state: outcome.state.clone(),
                events: outcome
                    .events
                    .iter()
                    .map(|versioned| KeptEvent {
                        version: versioned.version,
                        event_type: versioned.event.event_type().to_owned(),
                        schema_version: versioned.event.schema_version(),
                        data: versioned.event.encode(),
                    })
                    .collect(),
                position: outcome.position,
                deduplicated: outcome.deduplicated,
            }),
            Err(CommandError::Rejected(rejected)) => {
                Answer::Refused(Refusal::Rejected(rejected.clone()))
            }
            Err(CommandError::VersionMismatch { expected, actual }) => {
                Answer::Refused(Refusal::VersionMismatch {
                    expected: *expected,
                    actual: *actual,
                })
            }
            Err(_) => return None,
        };
        Some(Self {
            format: ANSWER_FORMAT,
            answer,
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a kept answer always serialises")
    }

    /// A kept answer read back, or `None` when it is of another format or does not decode
    /// (then the command is decided again rather than answered wrongly).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let kept: Self = serde_json::from_value(value.clone()).ok()?;
        (kept.format == ANSWER_FORMAT).then_some(kept)
    }

    /// The command's result again, as it was first answered.
    pub fn result(&self) -> Result<CommandOutcome, CommandError> {
        match &self.answer {
            Answer::Done(done) => {
                let events = done
                    .events
                    .iter()
                    .map(|kept| {
                        SkuEvent::decode(&kept.event_type, kept.schema_version, &kept.data)
                            .map(|event| VersionedEvent {
                                version: kept.version,
                                event,
                            })
                            .map_err(|e| CommandError::CorruptStream {
                                stream: done.state.sku.stream(),
                                message: format!("a kept answer holds an unreadable event: {e}"),
                            })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(CommandOutcome {
                    state: done.state.clone(),
                    events,
                    position: done.position,
                    deduplicated: done.deduplicated,
                })
            }
            Answer::Refused(Refusal::Rejected(rejected)) => {
                Err(CommandError::Rejected(rejected.clone()))
            }
            Answer::Refused(Refusal::VersionMismatch { expected, actual }) => {
                Err(CommandError::VersionMismatch {
                    expected: *expected,
                    actual: *actual,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::set_answer_position;
    use ledger_domain::{Sku, StockReplenished};

    fn outcome() -> CommandOutcome {
        CommandOutcome {
            state: ledger_domain::SkuState::new(Sku::parse("A-1").unwrap()).summary(),
            events: vec![VersionedEvent {
                version: 0,
                event: SkuEvent::Replenished(StockReplenished {
                    quantity: 5,
                    reference: None,
                    location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                }),
            }],
            position: None,
            deduplicated: false,
        }
    }

    #[test]
    fn an_answer_reads_back_as_the_result_it_was_kept_for() {
        let mut json = KeptAnswer::of(&Ok(outcome())).unwrap().to_json();
        let position = Position {
            commit: 7,
            prepare: 2,
        };
        set_answer_position(&mut json, position);
        let back = KeptAnswer::from_json(&json).unwrap().result().unwrap();
        assert_eq!(back.position, Some(position));
        assert_eq!(back.events, outcome().events);
        let refused = Err(CommandError::Rejected(DomainError::InsufficientStock {
            requested: 3,
            available: 1,
            location: None,
        }));
        let json = KeptAnswer::of(&refused).unwrap().to_json();
        assert!(matches!(
            KeptAnswer::from_json(&json).unwrap().result(),
            Err(CommandError::Rejected(
                DomainError::InsufficientStock { .. }
            ))
        ));
    }

    #[test]
    fn passing_failures_are_not_kept_and_other_formats_are_not_read() {
        let busy = Err(CommandError::ContentionRetriesExhausted { attempts: 9 });
        assert!(KeptAnswer::of(&busy).is_none());
        let mut json = KeptAnswer::of(&Ok(outcome())).unwrap().to_json();
        json["format"] = serde_json::json!(ANSWER_FORMAT + 1);
        assert!(KeptAnswer::from_json(&json).is_none());
    }
}
