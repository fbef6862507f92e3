//! What an order event does to the ledger: release, or confirm, every open hold of one order
//! across its SKUs.
//!
//! INTERIM, one place to swap: [`OrderActions`] is the port the order event consumers
//! (`order_events`) call, and [`ReadModelOrderActions`] a minimal implementation over
//! the pieces the ledger already has: the order's reservations from the reservations read model
//! (which records each hold's `order_id`), and the per-reservation release / confirm commands
//! through the SKUs' writers, each with an idempotency key derived from the hold, so that doing
//! it again changes nothing. When the order-level commands land, implement [`OrderActions`] for
//! them (or call them from here) and delete [`ReadModelOrderActions`]; nothing else changes.

use crate::state::SharedState;
use async_trait::async_trait;
use ledger_application::command::{CommandContext, CommandError, KeyScope, ReservationRights};
use ledger_domain::{
    ConfirmReservation, DomainError, OrderId, Reason, ReleaseReservation, ReservationId, Sku,
    SkuCommand,
};
use ledger_projections::schema_name::SchemaName;

/// The principal recorded on the events an order event causes.
pub const ORDER_EVENTS_PRINCIPAL: &str = "system:order-events";

/// Most holds one order may have for an order event to change them in one go. Orders have a
/// few lines; this bounds a query and the commands in flight for one message.
pub const ORDER_RESERVATIONS_MAX: i64 = 1_000;

/// What an order-level release or confirm did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// The order is known: `changed` holds were released or confirmed by this call,
    /// `unchanged` were already closed (by an earlier message, a client, the expiry).
    Done { changed: u64, unchanged: u64 },
    /// No reservation the ledger knows of names the order (it may not have been seen yet).
    UnknownOrder,
    /// The order is known, but none of its holds can be confirmed: each was released or expired.
    NotConfirmable { reason: String },
}

/// Why an order-level action failed; nothing is half-done that a retry would not finish, since
/// every per-hold command is keyed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderActionError {
    /// The ledger could not do it now (its store unreachable, heavy contention): a retry may
    /// succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The ledger will not do it (a rule refused, a stream an operator has to look at): a retry
    /// gives the same answer.
    #[error("{0}")]
    Refused(String),
}

/// Who and what caused an order-level action, for the events' metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCause {
    pub correlation_id: String,
    pub causation_id: String,
}

/// The order-level actions an order event triggers.
#[async_trait]
pub trait OrderActions: Send + Sync + 'static {
    /// End every open hold of `order_id` on every SKU, with `reason`.
    async fn release_order(
        &self,
        order_id: &OrderId,
        reason: Reason,
        cause: &OrderCause,
    ) -> Result<OrderOutcome, OrderActionError>;

    /// Confirm every open hold of `order_id` on every SKU.
    async fn confirm_order(
        &self,
        order_id: &OrderId,
        cause: &OrderCause,
    ) -> Result<OrderOutcome, OrderActionError>;
}

/// INTERIM: [`OrderActions`] over the reservations read model and the per-reservation commands.
/// The read model trails the log by a moment, so a hold reserved just now may not be listed yet
/// (the caller retries an unknown order a few times) and one listed open may be closed already
/// (its command is refused as closed, which counts as unchanged).
pub struct ReadModelOrderActions {
    state: SharedState,
}

impl ReadModelOrderActions {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    /// The order's holds: (SKU, reservation, status), at most [`ORDER_RESERVATIONS_MAX`].
    async fn holds(
        &self,
        order_id: &OrderId,
    ) -> Result<Vec<(Sku, ReservationId, String)>, OrderActionError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            OrderActionError::Unavailable(format!("cannot read the order's reservations: {e}"))
        };
        let schema = SchemaName::live(ledger_projections::reservations::NAME);
        let sql = format!(
            "SELECT sku, reservation_id, status FROM {schema}.reservations \
             WHERE order_id = $1 ORDER BY sku, reservation_id LIMIT $2"
        );
        let client = self
            .state
            .read_models
            .database()
            .client()
            .await
            .map_err(|e| unavailable(&e))?;
        let rows = client
            .query(&sql, &[&order_id.as_str(), &(ORDER_RESERVATIONS_MAX + 1)])
            .await
            .map_err(|e| unavailable(&e))?;
        if rows.len() as i64 > ORDER_RESERVATIONS_MAX {
            return Err(OrderActionError::Refused(format!(
                "order {order_id} has more than {ORDER_RESERVATIONS_MAX} reservations"
            )));
        }
        rows.iter()
            .map(|row| {
                let sku = Sku::parse(row.get("sku"));
                let reservation = ReservationId::parse(row.get("reservation_id"));
                match (sku, reservation) {
                    (Ok(sku), Ok(reservation)) => Ok((sku, reservation, row.get("status"))),
                    _ => Err(OrderActionError::Refused(
                        "the reservations read model holds an invalid SKU or reservation id"
                            .to_owned(),
                    )),
                }
            })
            .collect()
    }

    /// Run one keyed per-hold command; `Ok(true)` when it changed the hold now.
    async fn execute(
        &self,
        sku: &Sku,
        command: SkuCommand,
        key: String,
        cause: &OrderCause,
    ) -> Result<bool, OrderActionError> {
        let context = CommandContext {
            correlation_id: Some(cause.correlation_id.clone()),
            causation_id: Some(cause.causation_id.clone()),
            principal: Some(ORDER_EVENTS_PRINCIPAL.to_owned()),
            idempotency_key: Some(key),
            // The system's own scope: no client can name (and so pre-empt) these keys.
            key_scope: KeyScope::System,
            fingerprint: None,
            expected_version: None,
            reservation_rights: ReservationRights::Any,
        };
        match self.state.writers.execute(sku, command, context).await {
            Ok(outcome) => Ok(!outcome.deduplicated),
            Err(CommandError::Rejected(
                DomainError::ReservationClosed { .. } | DomainError::ReservationNotFound { .. },
            )) => Ok(false),
            Err(
                error @ (CommandError::Store(_) | CommandError::ContentionRetriesExhausted { .. }),
            ) => Err(OrderActionError::Unavailable(format!("{sku}: {error}"))),
            Err(error) => Err(OrderActionError::Refused(format!("{sku}: {error}"))),
        }
    }

    /// Run `command_for` on every open hold of the order, all at once; every hold is tried even
    /// when one fails, and the first failure is returned (a retry redoes only the failed ones,
    /// the others being keyed).
    async fn on_open_holds(
        &self,
        holds: &[(Sku, ReservationId, String)],
        command_for: impl Fn(&Sku, &ReservationId) -> (SkuCommand, String),
        cause: &OrderCause,
    ) -> Result<OrderOutcome, OrderActionError> {
        let open: Vec<_> = holds.iter().filter(|(_, _, s)| s == "open").collect();
        let results = futures::future::join_all(open.iter().map(|(sku, reservation, _)| {
            let (command, key) = command_for(sku, reservation);
            self.execute(sku, command, key, cause)
        }))
        .await;
        let mut changed = 0;
        for result in results {
            changed += u64::from(result?);
        }
        Ok(OrderOutcome::Done {
            changed,
            unchanged: holds.len() as u64 - changed,
        })
    }
}

#[async_trait]
impl OrderActions for ReadModelOrderActions {
    async fn release_order(
        &self,
        order_id: &OrderId,
        reason: Reason,
        cause: &OrderCause,
    ) -> Result<OrderOutcome, OrderActionError> {
        let holds = self.holds(order_id).await?;
        if holds.is_empty() {
            return Ok(OrderOutcome::UnknownOrder);
        }
        let command_for = |sku: &Sku, reservation: &ReservationId| {
            (
                SkuCommand::Release(ReleaseReservation {
                    reservation_id: reservation.clone(),
                    reason: Some(reason.clone()),
                }),
                format!("order-release:{sku}:{reservation}"),
            )
        };
        self.on_open_holds(&holds, command_for, cause).await
    }

    async fn confirm_order(
        &self,
        order_id: &OrderId,
        cause: &OrderCause,
    ) -> Result<OrderOutcome, OrderActionError> {
        let holds = self.holds(order_id).await?;
        if holds.is_empty() {
            return Ok(OrderOutcome::UnknownOrder);
        }
        if !holds
            .iter()
            .any(|(_, _, status)| status == "open" || status == "confirmed")
        {
            return Ok(OrderOutcome::NotConfirmable {
                reason: format!(
                    "every hold of order {order_id} was released or expired; nothing to confirm"
                ),
            });
        }
        let command_for = |sku: &Sku, reservation: &ReservationId| {
            (
                SkuCommand::Confirm(ConfirmReservation {
                    reservation_id: reservation.clone(),
                }),
                format!("order-confirm:{sku}:{reservation}"),
            )
        };
        self.on_open_holds(&holds, command_for, cause).await
    }
}
