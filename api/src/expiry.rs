//! The reservation expiry worker: ends reservations whose time-to-live has passed, through the
//! same command path as every client request. The domain re-checks the expiry against the
//! stream, and the idempotency key is derived from the reservation in the system's own key
//! scope, so several API instances running this worker at once append each expiry exactly once.
//!
//! Holds often fall due together (a flash sale's carts), so a sweep pages through the whole due
//! queue at once and hands each page's expiries to the SKUs' writers all together: a writer
//! then decides and appends all its SKU's due expiries as one batch, and the group commit
//! writes many SKUs' batches in one transaction.

use futures::StreamExt;
use ledger_application::command::{CommandContext, CommandError, KeyScope, ReservationRights};
use ledger_domain::DomainError;
use ledger_domain::{ExpireReservation, SkuCommand};
use ledger_projections::reservations::DueReservation;
use ledger_projections::ReadModels;
use std::time::Duration;
use tokio::sync::watch;

use crate::state::SharedState;

/// Due reservations one page of a sweep reads. A sweep reads pages until the queue is empty, so
/// this only bounds the memory and the time of one read.
pub const EXPIRY_PAGE_RESERVATIONS_MAX: u64 = 1_000;

/// Expiries in flight at once. Enough that every SKU of a page has its expiries queued at its
/// writer together (so they are decided as one batch); bounded so a huge queue cannot flood the
/// writers' queues.
pub const EXPIRIES_IN_FLIGHT_MAX: usize = 1_000;

/// The principal recorded on expiry events.
pub const EXPIRY_PRINCIPAL: &str = "system:expiry";

/// Run until `shutdown` turns true, sweeping every `interval`. Stops between pages.
pub async fn run(
    state: SharedState,
    read_models: ReadModels,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(error) = sweep(&state, &read_models, &shutdown).await {
            tracing::warn!(%error, "reservation expiry sweep failed; retrying next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Expire every due reservation the read model knows of; returns how many were expired.
pub async fn sweep(
    state: &SharedState,
    read_models: &ReadModels,
    shutdown: &watch::Receiver<bool>,
) -> Result<u64, ledger_projections::ProjectionError> {
    let now = chrono::Utc::now();
    let mut after: Option<DueReservation> = None;
    let mut expired = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let page = read_models
            .due_reservations_after(now, after.as_ref(), EXPIRY_PAGE_RESERVATIONS_MAX)
            .await?;
        let full = page.len() as u64 == EXPIRY_PAGE_RESERVATIONS_MAX;
        after = page.last().cloned();
        expired += futures::stream::iter(page)
            .map(|due| expire(state, due))
            .buffer_unordered(EXPIRIES_IN_FLIGHT_MAX)
            .filter(|&ended| futures::future::ready(ended))
            .count()
            .await as u64;
        if !full {
            break;
        }
    }
    Ok(expired)
}

/// Expire one due reservation; true when this call ended it.
async fn expire(state: &SharedState, due: DueReservation) -> bool {
    let DueReservation {
        sku,
        reservation_id,
        ..
    } = due;
    let context = CommandContext {
        correlation_id: Some(format!("expiry:{sku}:{reservation_id}")),
        causation_id: None,
        principal: Some(EXPIRY_PRINCIPAL.to_owned()),
        idempotency_key: Some(format!("expire:{sku}:{reservation_id}")),
        // The system's own scope: no client can name (and so pre-empt) an expiry's key.
        key_scope: KeyScope::System,
        fingerprint: None,
        expected_version: None,
        reservation_rights: ReservationRights::Any,
        traceparent: None,
    };
    let command = SkuCommand::Expire(ExpireReservation {
        reservation_id: reservation_id.clone(),
    });
    match state.writers.execute(&sku, command, context).await {
        Ok(outcome) => {
            if !outcome.deduplicated {
                metrics::counter!("ledger_reservations_expired_total").increment(1);
            }
            !outcome.deduplicated
        }
        // The read model lags the stream: the reservation may have been released,
        // confirmed or expired (by another instance) meanwhile. Nothing to do then.
        Err(CommandError::Rejected(
            DomainError::ReservationClosed { .. }
            | DomainError::ReservationNotFound { .. }
            | DomainError::ReservationNotYetExpired { .. },
        )) => false,
        Err(error) => {
            tracing::warn!(%sku, %reservation_id, %error, "could not expire a reservation");
            false
        }
    }
}
