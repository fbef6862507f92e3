//! Whether the batches of the write path (a SKU writer's batch, the store's group commit) join
//! their callers' spans. They do when spans are exported, so that a command's trace runs
//! request → writer batch → commit; otherwise each batch span is a root, as a log needs no more,
//! and no command carries a handle on its caller's span (keeping it alive until the batch
//! ends). Off until the process that exports spans turns it on.

use std::sync::atomic::{AtomicBool, Ordering};

static JOIN_CALLER_SPANS: AtomicBool = AtomicBool::new(false);

/// Turn joining on (a process that exports spans) or off.
pub fn join_caller_spans(on: bool) {
    JOIN_CALLER_SPANS.store(on, Ordering::Relaxed);
}

/// The caller's span to join a batch to: the current span while joining is on, none otherwise.
pub fn caller_span() -> tracing::Span {
    if JOIN_CALLER_SPANS.load(Ordering::Relaxed) {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}
