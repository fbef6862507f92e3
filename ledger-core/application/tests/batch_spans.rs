//! A writer batch that serves several callers joins their traces the way a batch of messages
//! does, while spans are exported: its span is a child of the first caller's span and follows
//! from (links to, once exported) each other caller's.

mod support;

use ledger_application::command::CommandContext;
use ledger_application::writer::SkuWriters;
use std::sync::{Arc, Mutex};
use support::*;
use tracing::span::{Attributes, Id};
use tracing::Instrument;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as a subscriber saw it: its name, its parent, and what it follows from.
#[derive(Debug, Clone)]
struct Seen {
    id: Id,
    name: &'static str,
    parent: Option<Id>,
    follows_from: Vec<Id>,
}

/// A layer that remembers every span's name, parent and follows-from relations.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let parent = context
            .span(id)
            .and_then(|span| span.parent().map(|parent| parent.id()));
        self.0.lock().unwrap().push(Seen {
            id: id.clone(),
            name: attributes.metadata().name(),
            parent,
            follows_from: Vec::new(),
        });
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, _: Context<'_, S>) {
        let mut seen = self.0.lock().unwrap();
        let span = seen
            .iter_mut()
            .rev()
            .find(|seen| seen.id == *id)
            .expect("a span seen before");
        span.follows_from.push(follows.clone());
    }
}

/// Two traced callers' commands served by one batch: the batch's span and the callers' ids.
fn batch_for_two_callers() -> (Seen, Option<Id>, Option<Id>) {
    let spans = Spans::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let first = tracing::info_span!("first caller");
    let second = tracing::info_span!("second caller");
    runtime().block_on(async {
        let (handler, _store) = handler_with_clock(TestClock::starting_at(start()));
        let writers = SkuWriters::new(handler);
        let the_sku = sku();
        // On one thread both commands are queued before the writer task first runs, so it
        // takes them as one batch.
        let (a, b) = futures::join!(
            writers
                .execute(&the_sku, replenish(5), CommandContext::default())
                .instrument(first.clone()),
            writers
                .execute(&the_sku, replenish(3), CommandContext::default())
                .instrument(second.clone()),
        );
        let (a, b) = (a.expect("replenished"), b.expect("replenished"));
        assert_eq!(a.position, b.position, "one batch, one append");
    });
    let seen = spans.0.lock().unwrap().clone();
    let batches: Vec<&Seen> = seen.iter().filter(|s| s.name == "writer.batch").collect();
    assert_eq!(batches.len(), 1, "{seen:?}");
    (batches[0].clone(), first.id(), second.id())
}

/// One test for both settings: joining is process-wide, and tests of one binary run at once.
#[test]
fn a_batch_joins_its_callers_only_while_spans_are_exported() {
    // Off (no export): the batch is a root and holds no handle on its callers' spans.
    ledger_application::spans::join_caller_spans(false);
    let (batch, _, _) = batch_for_two_callers();
    assert_eq!((batch.parent.clone(), batch.follows_from.len()), (None, 0));
    // On: a child of the first caller, following from the second.
    ledger_application::spans::join_caller_spans(true);
    let (batch, first, second) = batch_for_two_callers();
    ledger_application::spans::join_caller_spans(false);
    assert_eq!(batch.parent, first);
    assert_eq!(batch.follows_from, [second.expect("enabled")]);
}

#[test]
fn a_batch_without_traced_callers_is_a_root() {
    let spans = Spans::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    runtime().block_on(async {
        let (handler, _store) = handler_with_clock(TestClock::starting_at(start()));
        let writers = SkuWriters::new(handler);
        writers
            .execute(&sku(), replenish(5), CommandContext::default())
            .await
            .expect("replenished");
    });
    let seen = spans.0.lock().unwrap().clone();
    let batch = seen
        .iter()
        .find(|s| s.name == "writer.batch")
        .expect("a batch span");
    assert_eq!((batch.parent.clone(), batch.follows_from.len()), (None, 0));
}
