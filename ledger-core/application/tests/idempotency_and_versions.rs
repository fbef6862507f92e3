//! Idempotency keys and expected versions through the decision loop: a retried command gets its
//! original answer and appends nothing; a stale expected version is refused and appends nothing.

mod support;

use ledger_application::command::{CommandContext, CommandError};
use ledger_application::store::EventStore;
use ledger_domain::{DomainError, ReservationStatus};
use support::*;

// ---------------------------------------------------------------------------------------------
// Idempotency keys and expected versions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_command_retried_with_the_same_idempotency_key_returns_the_original_outcome_and_appends_nothing(
) {
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    let replenished = handler
        .execute(&sku, &replenish(10), &keyed("replenish-1"))
        .await
        .unwrap();
    let reserved = handler
        .execute(&sku, &reserve("r-1", 4), &keyed("reserve-1"))
        .await
        .unwrap();
    // Someone else moves the SKU on before the retries arrive.
    handler
        .execute(&sku, &replenish(5), &CommandContext::default())
        .await
        .unwrap();
    let head_before = store.head_position().await.unwrap();

    let reserve_retried = handler
        .execute(&sku, &reserve("r-1", 4), &keyed("reserve-1"))
        .await
        .unwrap();
    let replenish_retried = handler
        .execute(&sku, &replenish(10), &keyed("replenish-1"))
        .await
        .unwrap();

    assert!(reserve_retried.deduplicated);
    assert_eq!(reserve_retried.events, reserved.events);
    assert_eq!(reserve_retried.position, reserved.position);
    assert!(replenish_retried.deduplicated);
    assert_eq!(replenish_retried.events, replenished.events);
    assert_eq!(replenish_retried.position, replenished.position);
    assert_eq!(store.head_position().await.unwrap(), head_before);
    assert_eq!(stream_length(&store).await, 3);
    // The state reported with a recognised retry is the current one, not the one at the time.
    let current = handler.load(&sku).await.unwrap().state;
    assert_eq!(reserve_retried.state, current.summary());
    assert_eq!((current.on_hand, current.reserved), (15, 4));
}

#[tokio::test]
async fn a_release_retried_after_it_succeeded_returns_the_original_outcome_not_already_released() {
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    let unkeyed = CommandContext::default();
    handler
        .execute(&sku, &replenish(10), &unkeyed)
        .await
        .unwrap();
    handler
        .execute(&sku, &reserve("r-1", 4), &unkeyed)
        .await
        .unwrap();
    let released = handler
        .execute(&sku, &release("r-1"), &keyed("release-1"))
        .await
        .unwrap();

    let retried = handler
        .execute(&sku, &release("r-1"), &keyed("release-1"))
        .await
        .unwrap();

    assert!(retried.deduplicated);
    assert_eq!(retried.events, released.events);
    assert_eq!(retried.events[0].version, 2);
    assert_eq!(retried.position, released.position);
    assert_eq!(stream_length(&store).await, 3);
    // Without the key the same release is decided again, and refused: this is what the key
    // saves a client from after a timeout.
    let error = handler
        .execute(&sku, &release("r-1"), &unkeyed)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CommandError::Rejected(DomainError::ReservationClosed {
                status: ReservationStatus::Released,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(stream_length(&store).await, 3);
}

#[tokio::test]
async fn a_stale_expected_version_is_refused_with_version_mismatch_and_appends_nothing() {
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    handler
        .execute(&sku, &replenish(10), &at_version(None))
        .await
        .unwrap();
    handler
        .execute(&sku, &replenish(5), &at_version(Some(0)))
        .await
        .unwrap();
    let head_before = store.head_position().await.unwrap();

    let stale = handler
        .execute(&sku, &reserve("r-1", 4), &at_version(Some(0)))
        .await
        .unwrap_err();
    let expecting_no_stream = handler
        .execute(&sku, &reserve("r-1", 4), &at_version(None))
        .await
        .unwrap_err();

    assert!(
        matches!(
            stale,
            CommandError::VersionMismatch {
                expected: Some(0),
                actual: Some(1)
            }
        ),
        "{stale:?}"
    );
    assert!(
        matches!(
            expecting_no_stream,
            CommandError::VersionMismatch {
                expected: None,
                actual: Some(1)
            }
        ),
        "{expecting_no_stream:?}"
    );
    assert_eq!(store.head_position().await.unwrap(), head_before);
    assert_eq!(stream_length(&store).await, 2);
    // The current version is accepted, so the refusals above were about staleness alone.
    let current = handler
        .execute(&sku, &reserve("r-1", 4), &at_version(Some(1)))
        .await
        .unwrap();
    assert_eq!(current.state.version, Some(2));
}

#[tokio::test]
async fn a_retry_whose_expected_version_has_since_gone_stale_still_gets_its_original_outcome() {
    // A client that sent If-Match and timed out retries the same request; by then its own
    // command has moved the version on, and it must learn that the command succeeded rather
    // than be told the SKU changed.
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    handler
        .execute(&sku, &replenish(10), &CommandContext::default())
        .await
        .unwrap();
    let context = CommandContext {
        idempotency_key: Some("reserve-1".to_owned()),
        expected_version: Some(Some(0)),
        ..CommandContext::default()
    };
    let reserved = handler
        .execute(&sku, &reserve("r-1", 4), &context)
        .await
        .unwrap();

    let retried = handler
        .execute(&sku, &reserve("r-1", 4), &context)
        .await
        .unwrap();

    assert!(retried.deduplicated);
    assert_eq!(retried.events, reserved.events);
    assert_eq!(stream_length(&store).await, 2);
}
