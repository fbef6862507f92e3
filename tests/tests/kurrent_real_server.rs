//! The event store contract over the EventStoreDB/KurrentDB adapter against a real server, when
//! `EVENTSTORE_URL` names one at build time (e.g. `esdb://localhost:2113?tls=false`, or a
//! cluster with credentials: `esdb://admin:PASSWORD@node1:2113,node2:2113,node3:2113?tls=true`).
//! Without it the suite is not compiled, and one ignored test stands for it, so a run reports
//! the suite as ignored rather than passed (and fails if that test is run anyway).
//!
//! A real server is shared by every case and keeps what earlier runs wrote, while the contract
//! expects an empty store. Each case therefore gets a namespace of its own: a unique stream
//! prefix that the adapter's `$all` filter selects and that a thin wrapper adds to and strips
//! from stream names, so the case sees only its own streams.

#[cfg(not(eventstore_server))]
#[test]
#[ignore = "needs a real EventStoreDB/KurrentDB server: set EVENTSTORE_URL when building the tests"]
fn real_server_contract_needs_eventstore_url() {
    panic!(
        "no real server was configured: EVENTSTORE_URL (e.g. esdb://localhost:2113?tls=false) \
         was unset when this suite was built, so nothing against a real server was run"
    );
}

#[cfg(eventstore_server)]
mod namespaced {
    use async_trait::async_trait;
    use futures::StreamExt;
    use ledger_application::store::{
        AppendResult, EventStore, EventStream, ExpectedVersion, StoreError,
    };
    use ledger_domain::envelope::{NewEvent, Position, RecordedEvent};
    use ledger_kurrent::{KurrentOptions, KurrentStore};

    /// A real server may be starting beside the test run (compose); wait for it this long.
    const CONNECT_TIMEOUT_MS: u64 = 30_000;

    /// One contract case's view of the shared server: its own streams only.
    pub struct Namespaced {
        store: KurrentStore,
        prefix: String,
    }

    impl Namespaced {
        fn outer(&self, mut event: RecordedEvent) -> RecordedEvent {
            event.stream = event
                .stream
                .strip_prefix(&self.prefix)
                .expect("the filter lets only this namespace through")
                .to_owned();
            event
        }

        fn outer_error(&self, error: StoreError) -> StoreError {
            let strip = |stream: String| {
                stream
                    .strip_prefix(&self.prefix)
                    .map_or(stream.clone(), str::to_owned)
            };
            match error {
                StoreError::WrongExpectedVersion {
                    stream,
                    expected,
                    actual,
                } => StoreError::WrongExpectedVersion {
                    stream: strip(stream),
                    expected,
                    actual,
                },
                StoreError::IdempotencyMismatch { stream, event_id } => {
                    StoreError::IdempotencyMismatch {
                        stream: strip(stream),
                        event_id,
                    }
                }
                other => other,
            }
        }
    }

    #[async_trait]
    impl EventStore for Namespaced {
        async fn append(
            &self,
            stream: &str,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
        ) -> Result<AppendResult, StoreError> {
            self.store
                .append(&format!("{}{stream}", self.prefix), expected, events)
                .await
                .map_err(|e| self.outer_error(e))
        }

        async fn read_stream(
            &self,
            stream: &str,
            from_version: u64,
            max_count: u64,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            let events = self
                .store
                .read_stream(&format!("{}{stream}", self.prefix), from_version, max_count)
                .await?;
            Ok(events.into_iter().map(|e| self.outer(e)).collect())
        }

        async fn read_all(
            &self,
            after: Option<Position>,
            max_count: u64,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            let events = self.store.read_all(after, max_count).await?;
            Ok(events.into_iter().map(|e| self.outer(e)).collect())
        }

        async fn head_position(&self) -> Result<Option<Position>, StoreError> {
            self.store.head_position().await
        }

        fn subscribe_all(&self, after: Option<Position>) -> EventStream {
            let prefix = self.prefix.clone();
            Box::pin(self.store.subscribe_all(after).map(move |item| {
                item.map(|mut event| {
                    event.stream = event.stream[prefix.len()..].to_owned();
                    event
                })
            }))
        }
    }

    pub async fn store_on_the_real_server() -> (Namespaced, ()) {
        let url = std::env::var("EVENTSTORE_URL").expect("EVENTSTORE_URL was set at build time");
        let prefix = format!("t{}-", uuid::Uuid::new_v4().simple());
        let options = KurrentOptions {
            stream_prefix: prefix.clone(),
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            ..KurrentOptions::default()
        };
        let store = KurrentStore::connect(&url, options)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the server at EVENTSTORE_URL: {e}"));
        (Namespaced { store, prefix }, ())
    }
}

#[cfg(eventstore_server)]
ledger_tests::event_store_contract!(real_server, namespaced::store_on_the_real_server);
