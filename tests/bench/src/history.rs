//! Writing long, valid SKU histories straight into the event store, much faster than through
//! HTTP: each event is decided by the domain (`SkuState::decide`) from a command, folded, and
//! encoded the way the command handler encodes it (`encode_events`), then appended in large
//! batches with the expected version. The command mix is a plausible day of a warehouse:
//! replenishments, a reorder point, reservations that are mostly confirmed and sometimes
//! released, and the odd cycle-count adjustment, so the read models (low-stock alerts included)
//! have real work to do.

use chrono::Utc;
use ledger_application::chain::seal;
use ledger_application::command::{encode_events, CommandContext};
use ledger_application::store::APPEND_EVENTS_MAX;
use ledger_application::{EventStore, ExpectedVersion};
use ledger_domain::EventHash;
use ledger_domain::NewEvent;
use ledger_domain::{
    AdjustStock, AdjustmentDelta, ConfirmReservation, OrderId, Quantity, Reason, Reference,
    ReleaseReservation, ReorderPoint, ReplenishStock, ReservationId, ReserveStock, SetReorderPoint,
    Sku, SkuCommand, SkuState,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Most appends in flight while writing histories. Each append is one transaction of up to
/// [`APPEND_EVENTS_MAX`] events; a few at once keep both cores of a small machine busy
/// without taking many of the cluster's shared connections.
pub const APPENDERS_MAX: usize = 4;

/// Open reservations a SKU may hold before the generator ends one instead of opening
/// another; keeps `reserved` and the open reservation table bounded on long streams.
const OPEN_RESERVATIONS_MAX: usize = 200;

/// Below this many available units the generator replenishes instead of reserving.
const AVAILABLE_LOW: u64 = 20;

/// The reorder point every generated SKU gets, so that low-stock alerts open and close.
const REORDER_POINT: i64 = 50;

/// The principal generated events are attributed to.
const PRINCIPAL: &str = "bench-generator";

/// A small deterministic pseudo-random sequence (xorshift64*): the same seed writes the same
/// history, and no generator crate is needed for a command mix.
struct Sequence(u64);

impl Sequence {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// One SKU's history being written: its state as folded so far and the open reservations in
/// the order they were opened (ended oldest first, as a warehouse ships).
pub struct SkuHistory {
    state: SkuState,
    stream: String,
    open: VecDeque<String>,
    commands: u64,
    random: Sequence,
    /// The hash of the last event generated: the next one chains to it.
    head_hash: EventHash,
}

impl SkuHistory {
    pub fn new(sku: Sku, seed: u64) -> Self {
        let stream = sku.stream();
        Self {
            state: SkuState::new(sku),
            stream,
            open: VecDeque::new(),
            commands: 0,
            random: Sequence::new(seed),
            head_hash: EventHash::GENESIS,
        }
    }

    pub fn state(&self) -> &SkuState {
        &self.state
    }

    /// Decide, fold and encode the next `count` events (one command each).
    pub fn next_events(&mut self, count: usize) -> Vec<NewEvent> {
        let now = Utc::now();
        let mut encoded = Vec::with_capacity(count);
        for _ in 0..count {
            let (command, context) = self.next_command();
            let events = self.state.decide(&command, now).unwrap_or_else(|e| {
                panic!("the generator chose a command the domain refuses: {e}")
            });
            assert_eq!(events.len(), 1, "every generated command is one event");
            let first_version = self.state.version.map_or(0, |v| v + 1);
            for event in &events {
                self.state.apply(event);
            }
            let mut sealed = encode_events(&self.stream, &events, &context);
            self.head_hash = seal(
                &self.stream,
                first_version,
                self.head_hash,
                now,
                &mut sealed,
            );
            encoded.extend(sealed);
        }
        if let Err(broken) = self.state.check_invariants() {
            panic!("a generated history breaks an invariant: {broken}");
        }
        encoded
    }

    fn next_command(&mut self) -> (SkuCommand, CommandContext) {
        self.commands += 1;
        let n = self.commands;
        let mut context = CommandContext {
            correlation_id: Some(uuid::Uuid::new_v4().to_string()),
            causation_id: Some(uuid::Uuid::new_v4().to_string()),
            principal: Some(PRINCIPAL.to_owned()),
            ..CommandContext::default()
        };
        let command = match self.state.version {
            None => self.replenish(n),
            Some(0) => SkuCommand::SetReorderPoint(SetReorderPoint {
                reorder_point: ReorderPoint::new(REORDER_POINT).expect("a valid reorder point"),
                location: ledger_domain::LocationId::default_location(),
            }),
            Some(_) => {
                let roll = self.random.between(0, 99);
                let available = self.state.available();
                if !self.open.is_empty() && (roll < 45 || self.open.len() >= OPEN_RESERVATIONS_MAX)
                {
                    let reservation = self.open.pop_front().expect("an open reservation");
                    let reservation_id =
                        ReservationId::parse(&reservation).expect("a valid reservation id");
                    if self.random.between(0, 9) < 7 {
                        SkuCommand::Confirm(ConfirmReservation { reservation_id })
                    } else {
                        SkuCommand::Release(ReleaseReservation {
                            reservation_id,
                            reason: Some(Reason::parse("cart abandoned").expect("a valid reason")),
                        })
                    }
                } else if available < AVAILABLE_LOW {
                    self.replenish(n)
                } else if roll < 48 {
                    // A cycle count finds one unit more or fewer; fewer only while free units
                    // remain, since on hand may not fall below reserved.
                    let delta = if roll % 2 == 0 { -1 } else { 1 };
                    SkuCommand::Adjust(AdjustStock {
                        delta: AdjustmentDelta::new(delta).expect("a valid delta"),
                        reason: Reason::parse("cycle count").expect("a valid reason"),
                        reference: Some(
                            Reference::parse(&format!("COUNT-{n}")).expect("a valid reference"),
                        ),
                        location: ledger_domain::LocationId::default_location(),
                    })
                } else {
                    let reservation = format!("r{n}");
                    let quantity = self.random.between(1, available.min(5));
                    context.idempotency_key =
                        Some(format!("reserve:{}:{reservation}", self.state.sku.as_str()));
                    self.open.push_back(reservation.clone());
                    SkuCommand::Reserve(ReserveStock {
                        reservation_id: ReservationId::parse(&reservation)
                            .expect("a valid reservation id"),
                        order_id: Some(
                            OrderId::parse(&format!("order-{n}")).expect("a valid order id"),
                        ),
                        quantity: Quantity::new(quantity).expect("a valid quantity"),
                        ttl_seconds: None,
                        allocation: ledger_domain::Allocation::default(),
                    })
                }
            }
        };
        (command, context)
    }

    fn replenish(&mut self, n: u64) -> SkuCommand {
        SkuCommand::Replenish(ReplenishStock {
            quantity: Quantity::new(self.random.between(500, 1_000)).expect("a valid quantity"),
            reference: Some(Reference::parse(&format!("PO-{n}")).expect("a valid reference")),
            location: ledger_domain::LocationId::default_location(),
        })
    }
}

/// Append `events` new events to `history`'s stream in batches of up to
/// [`APPEND_EVENTS_MAX`], each with the expected version.
pub async fn append(
    store: &dyn EventStore,
    history: &mut SkuHistory,
    events: u64,
) -> Result<(), String> {
    let stream = history.state().sku.stream();
    let mut remaining = events;
    while remaining > 0 {
        let count = remaining.min(APPEND_EVENTS_MAX as u64);
        let expected = history
            .state()
            .version
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let batch = history.next_events(count as usize);
        let appended = store
            .append(&stream, expected, batch)
            .await
            .map_err(|e| format!("appending to {stream}: {e}"))?;
        assert_eq!(
            Some(appended.version),
            history.state().version,
            "the store's version after an append disagrees with the generator's fold"
        );
        remaining -= count;
    }
    Ok(())
}

/// What writing a set of histories took.
#[derive(Debug, Clone, Serialize)]
pub struct HistoriesWritten {
    pub events: u64,
    pub streams: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// Write `events` events spread evenly over the SKUs `<prefix>0..<prefix><skus - 1>`, up to
/// `appenders` SKUs at a time.
pub async fn write_histories(
    store: Arc<dyn EventStore>,
    prefix: &str,
    skus: u64,
    events: u64,
    appenders: usize,
) -> Result<HistoriesWritten, String> {
    assert!(skus > 0, "histories need at least one SKU");
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..appenders.clamp(1, APPENDERS_MAX) {
        let (store, next, prefix) = (store.clone(), next.clone(), prefix.to_owned());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= skus {
                    return Ok::<(), String>(());
                }
                // The first `events % skus` SKUs take one event more, so the total is exact.
                let share = events / skus + u64::from(i < events % skus);
                let sku = Sku::parse(&format!("{prefix}{i}")).map_err(|e| e.to_string())?;
                let mut history = SkuHistory::new(sku, i);
                append(store.as_ref(), &mut history, share).await?;
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(HistoriesWritten {
        events,
        streams: skus.min(events),
        seconds,
        events_per_second: events as f64 / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_application::handler::CommandHandler;
    use ledger_application::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_written_history_loads_back_to_the_state_the_generator_folded() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let sku = Sku::parse("GEN-1").expect("a valid SKU");
        let mut history = SkuHistory::new(sku.clone(), 7);
        let events = APPEND_EVENTS_MAX as u64 * 2 + 5;
        append(store.as_ref(), &mut history, events)
            .await
            .expect("the history appends");
        let loaded = CommandHandler::new(store).load(&sku).await.expect("loads");
        assert_eq!(loaded.state.version, Some(events - 1));
        assert_eq!(&loaded.state, history.state());
        assert!(
            loaded.state.reservations.len() > 100,
            "reservations were made"
        );
    }

    #[tokio::test]
    async fn histories_spread_the_exact_event_count_over_the_skus() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let written = write_histories(store.clone(), "SPREAD-", 7, 1_000, 3)
            .await
            .expect("the histories append");
        assert_eq!(written.events, 1_000);
        let all = store.read_all(None, 4_096).await.expect("reads the log");
        assert_eq!(all.len(), 1_000);
    }
}
