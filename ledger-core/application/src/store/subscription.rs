//! Catch-up-then-live following of the store-wide log, shared by the adapters that can only
//! read pages (memory, Postgres): read pages until one comes back short (caught up), then wait
//! for a wake-up signal or the polling interval, whichever comes first, and read again; but
//! not sooner than the adapter's minimum interval after the last read, so that under a steady
//! stream of appends a follower reads (and a projector commits) a few larger pages instead of
//! one small page per append.

use super::{EventStore, EventStream, StoreError, READ_EVENTS_MAX};
use ledger_domain::envelope::{Position, RecordedEvent};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// How often a caught-up follower reads again without a wake-up. Wake-ups (LISTEN/NOTIFY in
/// Postgres) make new events arrive promptly; polling is the fallback for a lost notification
/// or a dropped listener connection, and bounds how stale a follower can be: half a second.
pub const SUBSCRIPTION_POLL_INTERVAL_MS: u64 = 500;

/// Pause after a failed read before trying again, so a store outage does not become a spin.
const SUBSCRIPTION_RETRY_DELAY_MS: u64 = 1_000;

struct Follower<S> {
    store: S,
    after: Option<Position>,
    buffer: VecDeque<RecordedEvent>,
    wake: watch::Receiver<u64>,
    failed: bool,
    /// The last read came back short: wait for a wake-up before reading again.
    caught_up: bool,
    last_read: Option<tokio::time::Instant>,
    read_interval_min: Duration,
}

/// Follow `store`'s log after `after`, reading again when `wake` changes (or every
/// [`SUBSCRIPTION_POLL_INTERVAL_MS`]), at most once per `read_interval_min` while caught up.
pub fn follow<S: EventStore + Clone>(
    store: S,
    after: Option<Position>,
    wake: watch::Receiver<u64>,
    read_interval_min: Duration,
) -> EventStream {
    let follower = Follower {
        store,
        after,
        buffer: VecDeque::new(),
        wake,
        failed: false,
        caught_up: false,
        last_read: None,
        read_interval_min,
    };
    Box::pin(futures::stream::unfold(follower, |mut f| async move {
        loop {
            if let Some(event) = f.buffer.pop_front() {
                f.after = Some(event.position);
                return Some((Ok(event), f));
            }
            if f.failed {
                tokio::time::sleep(Duration::from_millis(SUBSCRIPTION_RETRY_DELAY_MS)).await;
                f.failed = false;
            }
            if f.caught_up {
                wait_for_wake(&mut f.wake).await;
                if let Some(last_read) = f.last_read {
                    tokio::time::sleep_until(last_read + f.read_interval_min).await;
                }
                f.caught_up = false;
            }
            // Mark the current signal as seen before reading, so a wake-up that arrives while
            // the read is in flight is not lost.
            f.wake.borrow_and_update();
            f.last_read = Some(tokio::time::Instant::now());
            match f.store.read_all(f.after, READ_EVENTS_MAX).await {
                Ok(page) => {
                    f.caught_up = (page.len() as u64) < READ_EVENTS_MAX;
                    f.buffer.extend(page);
                }
                Err(error) => {
                    f.failed = true;
                    return Some((Err::<RecordedEvent, StoreError>(error), f));
                }
            }
        }
    }))
}

async fn wait_for_wake(wake: &mut watch::Receiver<u64>) {
    let poll = Duration::from_millis(SUBSCRIPTION_POLL_INTERVAL_MS);
    match tokio::time::timeout(poll, wake.changed()).await {
        Ok(Ok(())) | Err(_) => {}
        // The signal's sender is gone (store shut down): fall back to plain polling.
        Ok(Err(_)) => tokio::time::sleep(poll).await,
    }
}
