//! The reservation expiry worker: ends reservations whose time-to-live has passed, through the
//! same command path as every client request. The domain re-checks the expiry against the
//! stream, and the idempotency key is derived from the reservation, so several API instances
//! running this worker at once append each expiry exactly once.

use ledger_application::command::{CommandContext, CommandError, KeyScope};
use ledger_domain::DomainError;
use ledger_domain::{ExpireReservation, SkuCommand};
use ledger_projections::ReadModels;
use std::time::Duration;
use tokio::sync::watch;

use crate::state::SharedState;

/// Most reservations one sweep expires; the next sweep picks up the rest.
pub const EXPIRY_SWEEP_RESERVATIONS_MAX: u64 = 500;

/// The principal recorded on expiry events.
pub const EXPIRY_PRINCIPAL: &str = "system:expiry";

/// Run until `shutdown` turns true, sweeping every `interval`. Stops between sweeps.
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
    let due = read_models
        .due_reservations(chrono::Utc::now(), EXPIRY_SWEEP_RESERVATIONS_MAX)
        .await?;
    let mut expired = 0;
    for (sku, reservation_id) in due {
        if *shutdown.borrow() {
            break;
        }
        let context = CommandContext {
            correlation_id: Some(format!("expiry:{sku}:{reservation_id}")),
            causation_id: None,
            principal: Some(EXPIRY_PRINCIPAL.to_owned()),
            idempotency_key: Some(format!("expire:{sku}:{reservation_id}")),
            // The system's own scope: no client can name (and so pre-empt) an expiry's key.
            key_scope: KeyScope::System,
            fingerprint: None,
            expected_version: None,
        };
        let command = SkuCommand::Expire(ExpireReservation {
            reservation_id: reservation_id.clone(),
        });
        match state.writers.execute(&sku, command, context).await {
            Ok(outcome) => {
                if !outcome.deduplicated {
                    expired += 1;
                    metrics::counter!("ledger_reservations_expired_total").increment(1);
                }
            }
            // The read model lags the stream: the reservation may have been released,
            // confirmed or expired (by another instance) meanwhile. Nothing to do then.
            Err(CommandError::Rejected(
                DomainError::ReservationClosed { .. }
                | DomainError::ReservationNotFound { .. }
                | DomainError::ReservationNotYetExpired { .. },
            )) => {}
            Err(error) => {
                tracing::warn!(%sku, %reservation_id, %error, "could not expire a reservation");
            }
        }
    }
    Ok(expired)
}
