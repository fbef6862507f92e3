//! What an order event does to the ledger: release, or confirm, every open hold of one order
//! across its SKUs.
//!
//! [`OrderActions`] is the port the order event consumers (`order_events`) call;
//! [`OrderCommands`] implements it with the order-level commands of [`crate::orders`], the same
//! release and confirm by order the HTTP routes serve: the order's holds are found from its
//! reserve records (no lag) and from the reservations read model (waited for up to its
//! catch-up bound), and ending a hold already ended changes nothing, so a message delivered
//! again is harmless even before the consumer's own record of it.

use crate::orders::{Actor, OrderEnded};
use crate::problem::Problem;
use crate::state::SharedState;
use async_trait::async_trait;
use ledger_domain::{OrderId, Reason};

/// The principal recorded on the events an order event causes.
pub const ORDER_EVENTS_PRINCIPAL: &str = "system:order-events";

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

/// [`OrderActions`] through the order-level commands of [`crate::orders`].
pub struct OrderCommands {
    state: SharedState,
}

impl OrderCommands {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

/// The system actor an order event acts as: it may end any hold of the order, and the events
/// it appends carry the message's correlation and causation.
fn actor(cause: &OrderCause) -> Actor {
    let mut actor = Actor::system(ORDER_EVENTS_PRINCIPAL, Some(cause.correlation_id.clone()));
    actor.causation_id = Some(cause.causation_id.clone());
    actor
}

/// What an order-level call did, as the consumers count it: no hold found at all is an order
/// the ledger has not seen (yet: the read model may trail a reserve made a moment ago).
fn outcome(ended: &OrderEnded) -> OrderOutcome {
    let changed = ended.ended.len() as u64;
    let unchanged = (ended.already_ended.len() + ended.refused.len()) as u64;
    if changed + unchanged == 0 {
        OrderOutcome::UnknownOrder
    } else {
        OrderOutcome::Done { changed, unchanged }
    }
}

/// A refusal of the order-level command: the ledger's own trouble (5xx, 429) may pass, a rule's
/// answer will not.
fn failure(problem: Problem) -> OrderActionError {
    let text = format!("{}: {}", problem.code, problem.detail);
    if problem.status.is_server_error() || problem.status.as_u16() == 429 {
        OrderActionError::Unavailable(text)
    } else {
        OrderActionError::Refused(text)
    }
}

#[async_trait]
impl OrderActions for OrderCommands {
    async fn release_order(
        &self,
        order_id: &OrderId,
        reason: Reason,
        cause: &OrderCause,
    ) -> Result<OrderOutcome, OrderActionError> {
        let ended =
            crate::orders::release_order(&self.state, order_id, &actor(cause), Some(&reason))
                .await
                .map_err(failure)?;
        Ok(outcome(&ended))
    }

    async fn confirm_order(
        &self,
        order_id: &OrderId,
        cause: &OrderCause,
    ) -> Result<OrderOutcome, OrderActionError> {
        let ended = crate::orders::confirm_order(&self.state, order_id, &actor(cause))
            .await
            .map_err(failure)?;
        let nothing_confirmed = ended.ended.is_empty()
            && ended.refused.is_empty()
            && !ended.already_ended.is_empty()
            && ended
                .already_ended
                .iter()
                .all(|r| r.status.as_deref() != Some("confirmed"));
        if nothing_confirmed {
            return Ok(OrderOutcome::NotConfirmable {
                reason: format!(
                    "every hold of order {order_id} was released or expired; nothing to confirm"
                ),
            });
        }
        Ok(outcome(&ended))
    }
}
