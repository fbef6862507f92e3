//! The EventStoreDB/KurrentDB event store, over gRPC with the `kurrentdb` client: production
//! deployments keep every SKU's movements in its own stream (`sku-<SKU>`).
//!
//! How the port maps onto the server:
//! - Expected versions are the client's stream states; a refused append reports the stream's
//!   actual revision.
//! - Each event is stored as JSON with its id set explicitly, its type as the event type, and
//!   the envelope's metadata plus the schema version, the recorded time its writer chose and
//!   its hash chain link as JSON custom metadata (the server's own time is set at its commit,
//!   after the hash was computed, so it cannot be the time the hash covers).
//! - The store-wide log is `$all`, read and followed with a server-side stream-name prefix
//!   filter (`sku-` by default), so system streams and other applications' streams never reach
//!   a projector. `$all` positions (commit, prepare) are the port's positions unchanged, and
//!   only ever compared. Servers that send no position with stream reads (20.x) give
//!   [`Position::UNKNOWN`] there; a retried append's real position is then found in `$all`.
//! - A retried append is recognised by its event ids (see [`KurrentStore::append`]): at the
//!   slot its expected version names, with no window, or in the stream's last
//!   [`RETRY_SCAN_EVENTS_MAX`] events when it names none.
//! - Every call has an explicit deadline; TLS is whatever the connection string says, and the
//!   connection string must say it. Calls run as the connection string's user or
//!   [`KurrentOptions::credentials`]; a refusal names the right that was missing.
//! - Every call prefers the leader; a follower's "not leader" is followed to the leader within
//!   the call's deadline. Appends over [`APPEND_BYTES_MAX`] are refused before sending.
//! - The client cannot recover once its first connection attempt has failed: it is rebuilt.
//!   A subscription that drops is resubscribed from the last event it delivered.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ReadAllOptions,
    ReadStreamOptions, StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionEvent,
    SubscriptionFilter,
};
use ledger_application::store::answers::{AnswerBook, MemoryAnswers};
use ledger_application::store::{
    check_answered_append, check_append, clamp_read_count, set_answer_position, AnswerKey,
    AppendResult, Appended, EventStore, EventStream, ExpectedVersion, NewAnswer, StoreError,
    StoredAnswer,
};
use ledger_domain::chain::{to_microseconds, EventHash};
use ledger_domain::envelope::{Metadata, NewEvent, Position, RecordedEvent};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// Stream-name prefix of the ledger's streams: one stream per SKU, `sku-<SKU>`.
pub const SKU_STREAM_PREFIX: &str = "sku-";

/// Deadline of one call (an append, one page of a read). Appends on a healthy node take
/// milliseconds; five seconds rides out a leader election without holding an HTTP request
/// past a typical client timeout.
pub const OPERATION_DEADLINE_MS: u64 = 5_000;

/// How long [`KurrentStore::connect`] keeps trying to reach the server. Long enough for a node
/// that starts beside the API (compose) to come up; a process that still cannot connect fails
/// its start instead of serving errors.
pub const CONNECT_TIMEOUT_MS: u64 = 60_000;

/// Pause between two connection attempts while connecting.
const CONNECT_RETRY_DELAY_MS: u64 = 250;

/// How long the client waits for a node's answer to the server-features call it makes on
/// connecting (the `gossipTimeout` setting). A node that is up answers in milliseconds.
const NODE_PROBE_TIMEOUT_MS: u64 = 2_000;

/// Pause between the client's own attempts to select a node (`discoveryInterval`).
const DISCOVERY_INTERVAL_MS: u64 = 100;

/// Node-selection attempts per connection (`maxDiscoverAttempts`). The client spends its first
/// attempt choosing the node and only then calls it, so fewer than two never connects.
const DISCOVER_ATTEMPTS_MAX: u64 = 3;

/// HTTP/2 keep-alive ping interval and timeout: a connection that silently died (a node killed
/// without closing its sockets) is noticed within about twenty seconds, and a subscription on
/// it fails and resubscribes instead of waiting forever.
const KEEP_ALIVE_INTERVAL_MS: u64 = 10_000;
const KEEP_ALIVE_TIMEOUT_MS: u64 = 10_000;

/// How often one call is repeated after failures that prove nothing was written (a dead client,
/// a "not leader" answer). Two cover a leader change seen on a dead connection; an election
/// that is still going on fails the call as unavailable instead of spinning.
const CALL_REPEATS_MAX: u32 = 2;

/// The largest append the adapter sends: 1 MiB, the default maximum append size of 20.x to
/// 24.x servers (newer servers allow more). The server refuses a larger append as a whole; the
/// adapter refuses it first, with a message, rather than splitting it, because the events of
/// one append must stay atomic and it cannot tell which of them belong together.
pub const APPEND_BYTES_MAX: u64 = 1_048_576;

/// Which node the client prefers when the connection string does not say: the leader, since
/// every append must reach it and a follower's `$all` may lag behind what the leader has
/// acknowledged.
const NODE_PREFERENCE_DEFAULT: &str = "leader";

/// Pause before a dropped subscription subscribes again, so an outage is not a busy loop.
const SUBSCRIPTION_RETRY_DELAY_MS: u64 = 1_000;

/// Events read per page while looking for a retried append's ids in a stream's tail.
const RETRY_SCAN_PAGE_EVENTS: u64 = 256;

/// Most events of a stream's tail searched for a retried append's ids when the retry does not
/// name the slot its events went to: appends with `Any` or `StreamExists`, and a refused
/// append's ids found elsewhere (a reuse, refused). A retry with the expected version its first
/// attempt had (no stream, or an exact version; every append of the ledger's writers) is
/// recognised at that slot directly, with no window. The command handler also recognises
/// retries among a SKU's recent commands before it appends; this bound keeps one append from
/// reading a long stream.
pub const RETRY_SCAN_EVENTS_MAX: u64 = 4_096;

/// Most events of `$all` (filtered to names starting with the stream's) read backwards to find a
/// retried append's log position on servers whose stream reads carry none. A retry recognised
/// at all lies within the stream's last [`RETRY_SCAN_EVENTS_MAX`] events; twice that leaves room
/// for streams whose names extend this one's.
const LOCATE_SCAN_EVENTS_MAX: u64 = 2 * RETRY_SCAN_EVENTS_MAX;

/// Event ids this process has appended, remembered with their stream, to refuse an id reused
/// for another stream. The server deduplicates per stream only, and a global index of event ids
/// would cost a write per event; event ids derive from the stream name, so reuse across streams
/// can only come from a programming error, which this bounded memory catches where it is most
/// likely: within one process. 65,536 ids cost a few megabytes.
pub const RECENT_EVENT_IDS_MAX: usize = 65_536;

/// Content type of event data and metadata.
const JSON_CONTENT_TYPE: &str = "application/json";

/// Configuration of the KurrentDB store beyond the connection string.
#[derive(Debug, Clone)]
pub struct KurrentOptions {
    /// Stream-name prefix of the streams that make up the store-wide log. Tests give each
    /// case a prefix of its own to share one server.
    pub stream_prefix: String,
    /// Deadline of each call.
    pub operation_deadline_ms: u64,
    /// How long `connect` keeps trying.
    pub connect_timeout_ms: u64,
    /// The user every call runs as, when it is not in the connection string (a secure server
    /// refuses calls without one). Credentials given here win over the connection string's.
    pub credentials: Option<EventStoreCredentials>,
    /// The largest append sent, in bytes as the server counts them (data, custom metadata,
    /// and the type twice): larger ones are refused before anything is sent. Must not exceed
    /// the server's `MaxAppendSize`; see [`APPEND_BYTES_MAX`].
    pub append_bytes_max: u64,
}

/// A user name and password for a secure server. The password never shows in `Debug`.
#[derive(Clone)]
pub struct EventStoreCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for EventStoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStoreCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// What a call needs the server to allow, so that a refusal names the missing right.
#[derive(Debug, Clone, Copy)]
enum Right<'a> {
    ReadStream(&'a str),
    WriteStream(&'a str),
    ReadAll,
}

impl std::fmt::Display for Right<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReadStream(stream) => write!(f, "read stream {stream}"),
            Self::WriteStream(stream) => write!(f, "write to stream {stream}"),
            Self::ReadAll => f.write_str("read $all (the store-wide log)"),
        }
    }
}

impl Default for KurrentOptions {
    fn default() -> Self {
        Self {
            stream_prefix: SKU_STREAM_PREFIX.to_owned(),
            operation_deadline_ms: OPERATION_DEADLINE_MS,
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            credentials: None,
            append_bytes_max: APPEND_BYTES_MAX,
        }
    }
}

/// The envelope's metadata as stored in an event's custom metadata: the port's fields, plus the
/// schema version, which has no system field of its own, and the hash chain's fields: the
/// recorded time the writer chose (the server's own `created` is set at its commit, after the
/// hash was computed) and the event's hash. Events written before the chain carry neither.
#[derive(Serialize, Deserialize)]
struct StoredMetadata {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recorded_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<EventHash>,
    #[serde(flatten)]
    metadata: Metadata,
}

impl StoredMetadata {
    fn of(event: &NewEvent) -> Self {
        Self {
            schema_version: event.schema_version,
            recorded_at: Some(event.recorded_at),
            hash: Some(event.hash),
            metadata: event.metadata.clone(),
        }
    }
}

#[derive(Clone)]
pub struct KurrentStore {
    connection: Arc<Connection>,
    options: Arc<KurrentOptions>,
    /// The user named in the connection string, for naming it when the server refuses a call.
    url_user: Option<String>,
    /// See [`RECENT_EVENT_IDS_MAX`].
    recent_ids: Arc<Mutex<RecentIds>>,
    /// Where answers of keyed commands are kept: the server cannot keep them in the append's
    /// transaction, so they are written just after it (in memory unless a durable book is
    /// given with [`KurrentStore::with_answer_book`]).
    answers: Arc<dyn AnswerBook>,
}

/// The client, rebuilt when it can no longer connect. `generation` counts rebuilds so that
/// several calls failing on the same dead client rebuild it once.
struct Connection {
    settings: ClientSettings,
    current: Mutex<(u64, Client)>,
}

/// A call's failure: what the port reports, and the client generation it happened on.
enum Failure {
    Client(kurrentdb::Error),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl Connection {
    fn new(settings: ClientSettings) -> Result<Self, StoreError> {
        let client = Client::new(settings.clone())
            .map_err(|e| StoreError::backend_because(format!("cannot create the client: {e}")))?;
        Ok(Self {
            settings,
            current: Mutex::new((0, client)),
        })
    }

    fn client(&self) -> (u64, Client) {
        self.current.lock().expect("client lock poisoned").clone()
    }

    /// Replace the client if `error` says it can never connect again. Its connection task ends
    /// when a connection attempt fails, after which every call on it reports a closed
    /// connection; nothing but a new client recovers.
    fn forget_if_dead(&self, generation: u64, error: &kurrentdb::Error) {
        if !matches!(
            error,
            kurrentdb::Error::ConnectionClosed | kurrentdb::Error::GrpcConnectionError(_)
        ) {
            return;
        }
        let mut current = self.current.lock().expect("client lock poisoned");
        if current.0 != generation {
            return;
        }
        match Client::new(self.settings.clone()) {
            Ok(client) => {
                tracing::info!(
                    generation = generation + 1,
                    "rebuilt the event store client"
                );
                *current = (generation + 1, client);
            }
            Err(error) => tracing::error!(%error, "cannot rebuild the event store client"),
        }
    }
}

#[derive(Default)]
struct RecentIds {
    streams: HashMap<Uuid, Arc<str>>,
    order: VecDeque<Uuid>,
}

impl RecentIds {
    fn check(&self, stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
        for event in events {
            if let Some(owner) = self.streams.get(&event.event_id) {
                if &**owner != stream {
                    return Err(StoreError::IdempotencyMismatch {
                        stream: stream.to_owned(),
                        event_id: event.event_id,
                    });
                }
            }
        }
        Ok(())
    }

    fn remember(&mut self, stream: &str, events: &[NewEvent]) {
        let stream: Arc<str> = Arc::from(stream);
        for event in events {
            if self
                .streams
                .insert(event.event_id, Arc::clone(&stream))
                .is_none()
            {
                self.order.push_back(event.event_id);
            }
            if self.order.len() > RECENT_EVENT_IDS_MAX {
                if let Some(oldest) = self.order.pop_front() {
                    self.streams.remove(&oldest);
                }
            }
        }
    }
}

/// Connection-string settings this adapter sets when the string leaves them out, so that no
/// library default decides a timeout silently.
fn explicit_settings(options: &KurrentOptions) -> [(&'static str, u64); 6] {
    [
        ("defaultDeadline", options.operation_deadline_ms),
        ("gossipTimeout", NODE_PROBE_TIMEOUT_MS),
        ("discoveryInterval", DISCOVERY_INTERVAL_MS),
        ("maxDiscoverAttempts", DISCOVER_ATTEMPTS_MAX),
        ("keepAliveInterval", KEEP_ALIVE_INTERVAL_MS),
        ("keepAliveTimeout", KEEP_ALIVE_TIMEOUT_MS),
    ]
}

/// The user name of a connection string's `USER:PASSWORD@`, if it has one.
fn user_in(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let user = userinfo.split(':').next()?;
    (!user.is_empty()).then(|| user.to_owned())
}

/// Parse `url`, insisting that it states TLS either way and filling in the timeouts it does
/// not state.
fn settings_from(url: &str, options: &KurrentOptions) -> Result<ClientSettings, StoreError> {
    let invalid =
        |why: String| StoreError::backend_because(format!("invalid event store URL: {why}"));
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let names: Vec<String> = query
        .split('&')
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(name, _)| name.to_ascii_lowercase())
        })
        .collect();
    if !names.iter().any(|name| name == "tls") {
        return Err(invalid(
            "say tls=true or tls=false; the client would otherwise assume TLS".to_owned(),
        ));
    }
    let mut full = url.to_owned();
    if !names.iter().any(|name| name == "nodepreference") {
        full.push(if full.contains('?') { '&' } else { '?' });
        full.push_str(&format!("nodePreference={NODE_PREFERENCE_DEFAULT}"));
    }
    for (name, value) in explicit_settings(options) {
        if !names.contains(&name.to_ascii_lowercase()) {
            full.push(if full.contains('?') { '&' } else { '?' });
            full.push_str(&format!("{name}={value}"));
        }
    }
    full.parse::<ClientSettings>()
        .map_err(|e| invalid(e.to_string()))
}

impl KurrentStore {
    /// Connect to the server at `url` (`esdb://host:2113?tls=false`, `kurrentdb://…`), trying
    /// for up to `options.connect_timeout_ms` so that a server still starting is waited for.
    pub async fn connect(url: &str, options: KurrentOptions) -> Result<Self, StoreError> {
        assert!(
            !options.stream_prefix.is_empty(),
            "an empty stream prefix would let system streams into the log"
        );
        let settings = settings_from(url, &options)?;
        tracing::info!(
            tls = settings.is_secure_mode_enabled(),
            hosts = settings.hosts().len(),
            "connecting to the event store"
        );
        let store = Self {
            connection: Arc::new(Connection::new(settings)?),
            options: Arc::new(options),
            url_user: user_in(url),
            recent_ids: Arc::new(Mutex::new(RecentIds::default())),
            answers: Arc::new(MemoryAnswers::new()),
        };
        store.wait_until_reachable().await?;
        Ok(store)
    }

    /// Keep answers of keyed commands in `book` (a durable one in production) instead of memory.
    pub fn with_answer_book(mut self, book: Arc<dyn AnswerBook>) -> Self {
        self.answers = book;
        self
    }

    async fn wait_until_reachable(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_millis(self.options.connect_timeout_ms);
        let mut last_error = String::from("no attempt finished");
        loop {
            let (generation, client) = self.connection.client();
            match tokio::time::timeout_at(deadline, client.server_info()).await {
                Ok(Ok(info)) => {
                    tracing::info!(version = %info.version(), "connected to the event store");
                    return Ok(());
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "event store not reachable yet");
                    self.connection.forget_if_dead(generation, &error);
                    last_error = error.to_string();
                }
                Err(_) => break,
            }
            let retry_at = Instant::now() + Duration::from_millis(CONNECT_RETRY_DELAY_MS);
            if retry_at >= deadline {
                break;
            }
            tokio::time::sleep_until(retry_at).await;
        }
        Err(StoreError::unavailable_because(format!(
            "no event store answered within {} ms: {last_error}",
            self.options.connect_timeout_ms
        )))
    }

    fn deadline(&self) -> Duration {
        Duration::from_millis(self.options.operation_deadline_ms)
    }

    fn filter(&self) -> SubscriptionFilter {
        SubscriptionFilter::on_stream_name().add_prefix(&self.options.stream_prefix)
    }

    /// Refuse an append larger than the server would take, counting as the server does.
    fn check_size(&self, stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
        let mut size_bytes: u64 = 0;
        for event in events {
            let metadata = StoredMetadata::of(event);
            let encoded = |value: serde_json::Result<Vec<u8>>| {
                value
                    .map(|bytes| bytes.len() as u64)
                    .map_err(|e| StoreError::InvalidAppend(e.to_string()))
            };
            size_bytes += encoded(serde_json::to_vec(&event.data))?
                + encoded(serde_json::to_vec(&metadata))?
                + 2 * event.event_type.len() as u64;
        }
        if size_bytes > self.options.append_bytes_max {
            return Err(StoreError::InvalidAppend(format!(
                "{stream}: an append of {} events and {size_bytes} bytes is over the event \
                 store's maximum append size of {} bytes; it must be sent as smaller appends",
                events.len(),
                self.options.append_bytes_max
            )));
        }
        Ok(())
    }

    /// The user calls run as, for messages: the options' or the connection string's.
    fn user(&self) -> Option<String> {
        self.options
            .credentials
            .as_ref()
            .map(|c| c.username.clone())
            .or_else(|| self.url_user.clone())
    }

    /// Run as the configured user, when the options name one (the connection string's user is
    /// the client's default already).
    fn credentials(&self) -> Option<kurrentdb::Credentials> {
        self.options
            .credentials
            .as_ref()
            .map(|c| kurrentdb::Credentials::new(c.username.clone(), c.password.clone()))
    }

    /// A refusal that names the right the call lacked and how to grant it.
    fn denied(&self, right: Right<'_>) -> StoreError {
        let what = right.to_string();
        let message = match self.user() {
            None => format!(
                "the event store refused to {what} without credentials: a secure server needs a \
                 user, given in the connection string (esdb://USER:PASSWORD@host:2113?tls=true) \
                 or as EVENTSTORE_USERNAME and EVENTSTORE_PASSWORD"
            ),
            Some(user) => {
                let grant = match right {
                    Right::ReadAll => {
                        "reading $all needs a member of $admins or $ops, or a user named in the \
                         read ACL of $all (the $$all stream's metadata); projectors and retry \
                         recognition read it"
                    }
                    Right::ReadStream(_) | Right::WriteStream(_) => {
                        "the stream's ACL, or the server's default ACL for user streams, must \
                         allow it"
                    }
                };
                format!(
                    "the event store user {user:?} may not {what} (or its password is wrong): \
                     {grant}"
                )
            }
        };
        StoreError::backend_because(message)
    }

    fn store_error(&self, error: kurrentdb::Error, right: Right<'_>) -> StoreError {
        use kurrentdb::Error as E;
        match error {
            E::AccessDenied => self.denied(right),
            E::ResourceDeleted => {
                let stream = match right {
                    Right::ReadStream(stream) | Right::WriteStream(stream) => stream,
                    Right::ReadAll => "$all",
                };
                StoreError::backend_because(format!(
                    "stream {stream} was deleted permanently in the event store (an operator's \
                     hard delete): it can be neither read nor written again, so its SKU's \
                     commands fail until the SKU is restored under a new name; its events stay \
                     in $all until a scavenge"
                ))
            }
            // The server's own limit, when it is below the adapter's.
            E::Grpc { message, .. } if message.contains("Maximum Append Size") => {
                StoreError::InvalidAppend(format!(
                    "the event store refused to {right}: {message} (lower \
                     append_bytes_max to the server's MaxAppendSize)"
                ))
            }
            E::DeadlineExceeded => StoreError::Timeout {
                timeout_ms: self.options.operation_deadline_ms,
            },
            E::ServerError(_)
            | E::ConnectionClosed
            | E::GrpcConnectionError(_)
            | E::NotLeaderException(_) => StoreError::unavailable(error),
            other => StoreError::backend("the event store refused the call", other),
        }
    }

    /// Run `call` with the current client under the operation deadline. A client that died
    /// (its first connection failed) is rebuilt and the call tried again, and so is a call a
    /// follower refused as "not leader" (the client then calls the leader it named): both
    /// failures happen before anything is written, so even an append is safe to repeat. All
    /// repeats stay within the one deadline.
    async fn call<T, F, Fut>(&self, right: Right<'_>, call: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let deadline = Instant::now() + self.deadline();
        let mut repeats = 0;
        loop {
            let (generation, client) = self.connection.client();
            let outcome = match tokio::time::timeout_at(deadline, call(client)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(StoreError::Timeout {
                        timeout_ms: self.options.operation_deadline_ms,
                    })
                }
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Store(error)) => return Err(error),
                Err(Failure::Client(error)) => {
                    // Both failures come before the node accepted anything: a dead client never
                    // sent the call, and a follower refuses a call that requires the leader
                    // without doing it. The client has already turned to the leader it named.
                    let repeatable = matches!(
                        error,
                        kurrentdb::Error::ConnectionClosed
                            | kurrentdb::Error::GrpcConnectionError(_)
                            | kurrentdb::Error::NotLeaderException(_)
                    );
                    if let kurrentdb::Error::NotLeaderException(leader) = &error {
                        tracing::info!(host = %leader.host, port = leader.port, "the node is not the leader; calling the leader");
                    }
                    self.connection.forget_if_dead(generation, &error);
                    if repeatable && repeats < CALL_REPEATS_MAX {
                        repeats += 1;
                        continue;
                    }
                    return Err(self.store_error(error, right));
                }
            }
        }
    }

    /// Up to `count` raw events of `stream` from `from` (forwards), or backwards from the end.
    async fn read_raw(
        &self,
        stream: &str,
        from: StreamPosition<u64>,
        backwards: bool,
        count: u64,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, StoreError> {
        let base = ReadStreamOptions::default().position(from);
        let options = if backwards {
            base.backwards()
        } else {
            base.forwards()
        }
        .max_count(count as usize)
        .deadline(self.deadline());
        let options = match self.credentials() {
            Some(credentials) => options.authenticated(credentials),
            None => options,
        };
        self.call(Right::ReadStream(stream), |client| {
            let options = options.clone();
            async move {
                let mut read = match client.read_stream(stream, &options).await {
                    Ok(read) => read,
                    Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                    Err(error) => return Err(Failure::Client(error)),
                };
                let mut events = Vec::new();
                loop {
                    match read.next().await {
                        Ok(Some(resolved)) => {
                            if let Some(event) = resolved.event {
                                events.push(event);
                            }
                        }
                        Ok(None) => return Ok(events),
                        Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                        Err(error) => return Err(Failure::Client(error)),
                    }
                }
            }
        })
        .await
    }

    /// Up to `count` raw events of the filtered `$all`, forwards from `from` or backwards from
    /// the end.
    async fn read_all_raw(
        &self,
        from: StreamPosition<kurrentdb::Position>,
        backwards: bool,
        count: u64,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, StoreError> {
        self.read_filtered_raw(self.filter(), from, backwards, count)
            .await
    }

    /// Up to `count` raw events of `$all` that `filter` keeps.
    async fn read_filtered_raw(
        &self,
        filter: SubscriptionFilter,
        from: StreamPosition<kurrentdb::Position>,
        backwards: bool,
        count: u64,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, StoreError> {
        let base = ReadAllOptions::default().position(from);
        let options = if backwards {
            base.backwards()
        } else {
            base.forwards()
        }
        .filter(filter)
        .max_count(count as usize)
        .deadline(self.deadline());
        let options = match self.credentials() {
            Some(credentials) => options.authenticated(credentials),
            None => options,
        };
        self.call(Right::ReadAll, |client| {
            let options = options.clone();
            async move {
                let mut read = client.read_all(&options).await.map_err(Failure::Client)?;
                let mut events = Vec::new();
                while let Some(resolved) = read.next().await.map_err(Failure::Client)? {
                    if let Some(event) = resolved.event {
                        events.push(event);
                    }
                }
                Ok(events)
            }
        })
        .await
    }

    /// Look for `events`' ids in the tail of `stream`. Returns the earlier append's result when
    /// they are all there as one run in order, nothing when none is there, and refuses ids that
    /// are only partly there. Also returns the stream's version, as a refused append reports it.
    async fn find_retry(
        &self,
        stream: &str,
        events: &[NewEvent],
    ) -> Result<(Option<AppendResult>, Option<u64>), StoreError> {
        let wanted: HashMap<Uuid, usize> = events
            .iter()
            .enumerate()
            .map(|(index, event)| (event.event_id, index))
            .collect();
        let mut found: Vec<Option<kurrentdb::RecordedEvent>> =
            (0..events.len()).map(|_| None).collect();
        let mut head = None;
        let mut from = StreamPosition::End;
        let mut scanned = 0;
        'pages: while scanned < RETRY_SCAN_EVENTS_MAX {
            let page = self
                .read_raw(stream, from, true, RETRY_SCAN_PAGE_EVENTS)
                .await?;
            let Some(last) = page.last() else { break };
            let next_revision = last.revision.checked_sub(1);
            for event in page {
                head = head.or(Some(event.revision));
                scanned += 1;
                if let Some(&index) = wanted.get(&event.id) {
                    let first = index == 0;
                    found[index] = Some(event);
                    if first {
                        // Everything of the batch lies at or after its first event.
                        break 'pages;
                    }
                }
            }
            match next_revision {
                Some(revision) => from = StreamPosition::Position(revision),
                None => break,
            }
        }
        if found.iter().all(Option::is_none) {
            return Ok((None, head));
        }
        let in_order = found.iter().enumerate().all(|(offset, event)| {
            event.as_ref().is_some_and(|event| {
                found[0]
                    .as_ref()
                    .is_some_and(|first| event.revision == first.revision + offset as u64)
            })
        });
        if !in_order {
            let event_id = events
                .iter()
                .zip(&found)
                .find(|(_, f)| f.is_some())
                .map(|(e, _)| e.event_id)
                .expect("at least one id was found");
            return Err(StoreError::IdempotencyMismatch {
                stream: stream.to_owned(),
                event_id,
            });
        }
        let last = found
            .last()
            .and_then(Option::as_ref)
            .expect("every id was found");
        let mut position = position_from(last.position);
        if !position.is_known() {
            position = self.locate(stream, last.id).await?;
        }
        let original = AppendResult {
            version: last.revision,
            position,
            deduplicated: true,
        };
        Ok((Some(original), head))
    }

    /// The `$all` position of event `event_id` of `stream`, for servers whose stream reads carry
    /// no positions. Reads `$all` backwards, filtered server-side to stream names starting with
    /// `stream`, at most [`LOCATE_SCAN_EVENTS_MAX`] events. An event further back than that
    /// gets the head of the filtered log instead: a position at or after the event, which
    /// keeps what a command's answer promises with it (read models that reach it include the
    /// command).
    async fn locate(&self, stream: &str, event_id: Uuid) -> Result<Position, StoreError> {
        let filter = SubscriptionFilter::on_stream_name().add_prefix(stream);
        let mut from = StreamPosition::End;
        let mut scanned = 0;
        while scanned < LOCATE_SCAN_EVENTS_MAX {
            let page = self
                .read_filtered_raw(filter.clone(), from, true, RETRY_SCAN_PAGE_EVENTS)
                .await?;
            let Some(last) = page.last() else { break };
            if let Some(found) = page
                .iter()
                .find(|event| event.id == event_id && event.stream_id() == stream)
            {
                return Ok(position_from(found.position));
            }
            scanned += page.len() as u64;
            // Whether a backwards read from a position includes the event at it or not, going
            // on from the page's last event never skips one; a page that brings nothing new
            // is the start of the log.
            if page.len() == 1 && from == StreamPosition::Position(last.position) {
                break;
            }
            from = StreamPosition::Position(last.position);
        }
        tracing::warn!(%stream, %event_id, "event not found near the log's head; answering with the head");
        self.head_position()
            .await?
            .ok_or_else(|| StoreError::backend_because(format!("{stream}: the log is empty")))
    }

    /// The append after the retry checks: write with the expected stream state.
    async fn write(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Result<AppendResult, Option<u64>>, StoreError> {
        let data = events
            .iter()
            .map(event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default()
            .stream_state(stream_state(expected))
            .deadline(self.deadline());
        let options = match self.credentials() {
            Some(credentials) => options.authenticated(credentials),
            None => options,
        };
        let written = self
            .call(Right::WriteStream(stream), |client| {
                let options = options.clone();
                let data = data.clone();
                async move {
                    match client.append_to_stream(stream, &options, data).await {
                        Ok(written) => Ok(Ok(written)),
                        Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                            Ok(Err(match current {
                                CurrentRevision::Current(revision) => Some(revision),
                                CurrentRevision::NoStream => None,
                            }))
                        }
                        Err(error) => Err(Failure::Client(error)),
                    }
                }
            })
            .await?;
        let written = match written {
            Ok(written) => written,
            Err(actual) => return Ok(Err(actual)),
        };
        let version = written.next_expected_version;
        let mut position = position_from(written.position);
        if position
            == (Position {
                commit: 0,
                prepare: 0,
            })
        {
            // The server may answer without a position; the log has it.
            let last = events.last().expect("an append carries events");
            position = self.locate(stream, last.event_id).await?;
        }
        Ok(Ok(AppendResult {
            version,
            position,
            deduplicated: false,
        }))
    }

    async fn append_checked(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, StoreError> {
        let slot = match expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(version) => Some(version + 1),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        };
        match slot {
            Some(slot) => {
                // Where the expected version says the events go: empty unless the stream has
                // grown past it, by these very events (a retry) or by others (a conflict).
                let at_slot = self
                    .read_raw(
                        stream,
                        StreamPosition::Position(slot),
                        false,
                        events.len() as u64,
                    )
                    .await?;
                if at_slot.len() == events.len()
                    && at_slot.iter().zip(events).all(|(s, e)| s.id == e.event_id)
                {
                    // These very events, where the expected version put them: a retry,
                    // recognised however long the stream has grown since.
                    let last = at_slot.last().expect("an append carries events");
                    let mut position = position_from(last.position);
                    if !position.is_known() {
                        position = self.locate(stream, last.id).await?;
                    }
                    return Ok(AppendResult {
                        version: last.revision,
                        position,
                        deduplicated: true,
                    });
                }
                if !at_slot.is_empty() {
                    let (original, head) = self.find_retry(stream, events).await?;
                    return original.ok_or_else(|| StoreError::WrongExpectedVersion {
                        stream: stream.to_owned(),
                        expected,
                        actual: head,
                    });
                }
            }
            None => {
                if let (Some(original), _) = self.find_retry(stream, events).await? {
                    return Ok(original);
                }
            }
        }
        match self.write(stream, expected, events).await? {
            Ok(result) => Ok(result),
            Err(actual) => {
                // Refused: either another writer got there first, or these very events did
                // (a retry racing its original).
                let (original, head) = self.find_retry(stream, events).await?;
                match original {
                    Some(original) => Ok(original),
                    None => Err(StoreError::WrongExpectedVersion {
                        stream: stream.to_owned(),
                        expected,
                        actual: head.or(actual),
                    }),
                }
            }
        }
    }
}

fn stream_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::NoStream => StreamState::NoStream,
        ExpectedVersion::Exact(version) => StreamState::StreamRevision(version),
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::StreamExists => StreamState::StreamExists,
    }
}

fn position_from(position: kurrentdb::Position) -> Position {
    Position {
        commit: position.commit,
        prepare: position.prepare,
    }
}

fn position_to(position: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: position.commit,
        prepare: position.prepare,
    }
}

fn event_data(event: &NewEvent) -> Result<EventData, StoreError> {
    let metadata = StoredMetadata::of(event);
    let encode = |e: serde_json::Error| StoreError::InvalidAppend(e.to_string());
    EventData::json(&event.event_type, &event.data)
        .map_err(encode)?
        .id(event.event_id)
        .metadata_as_json(&metadata)
        .map_err(encode)
}

fn decode(event: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let broken = |why: String| {
        StoreError::backend_because(format!(
            "event {} in {} at version {}: {why}",
            event.id,
            event.stream_id(),
            event.revision
        ))
    };
    if event.metadata.get("content-type").map(String::as_str) != Some(JSON_CONTENT_TYPE) {
        return Err(broken("its content type is not JSON".to_owned()));
    }
    let data = serde_json::from_slice(&event.data).map_err(|e| broken(e.to_string()))?;
    let stored: StoredMetadata =
        serde_json::from_slice(&event.custom_metadata).map_err(|e| broken(e.to_string()))?;
    Ok(RecordedEvent {
        event_id: event.id,
        stream: event.stream_id().to_owned(),
        version: event.revision,
        position: position_from(event.position),
        event_type: event.event_type.clone(),
        schema_version: stored.schema_version,
        data,
        metadata: stored.metadata,
        // Events written before the chain: the server's time, cut to what the chain covers.
        recorded_at: stored
            .recorded_at
            .unwrap_or_else(|| to_microseconds(event.created)),
        hash: stored.hash,
    })
}

#[async_trait]
impl EventStore for KurrentStore {
    /// Append with the expected stream state. A retried append is recognised by its event ids
    /// before anything is written, where the port needs the original result: at the slot the
    /// expected version names when that slot is taken, in the stream's tail for `Any` and
    /// `StreamExists`, and after any refusal. The server's own deduplication covers the rest
    /// (two identical appends racing). Ids already used for another stream by this process are
    /// refused.
    #[tracing::instrument(name = "kurrent.append", skip(self, events), fields(events = events.len(), %expected))]
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        check_append(&events)?;
        self.check_size(stream, &events)?;
        self.recent_ids
            .lock()
            .expect("recent ids lock poisoned")
            .check(stream, &events)?;
        let result = self.append_checked(stream, expected, &events).await?;
        self.recent_ids
            .lock()
            .expect("recent ids lock poisoned")
            .remember(stream, &events);
        Ok(result)
    }

    #[tracing::instrument(name = "kurrent.read_stream", skip(self))]
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let count = clamp_read_count(max_count);
        let events = self
            .read_raw(stream, StreamPosition::Position(from_version), false, count)
            .await?;
        if let Some(first) = events.first() {
            // A stream truncated (`$tb`) or soft-deleted and written again starts past its
            // first versions; folding its rest would give a SKU a wrong balance.
            if first.revision > from_version {
                return Err(StoreError::backend_because(format!(
                    "stream {stream} has no events before version {} (truncated or deleted \
                     in the event store by an operator): the ledger needs every event of a SKU \
                     and will not fold part of one",
                    first.revision
                )));
            }
        }
        events.iter().map(decode).collect()
    }

    #[tracing::instrument(name = "kurrent.read_all", skip(self))]
    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let count = clamp_read_count(max_count);
        // A forwards read of $all from a position includes the event at it; ask for one more
        // and drop what is not strictly after.
        let (from, extra) = match after {
            Some(after) => (StreamPosition::Position(position_to(after)), 1),
            None => (StreamPosition::Start, 0),
        };
        self.read_all_raw(from, false, count + extra)
            .await?
            .iter()
            .filter(|event| after.is_none_or(|after| position_from(event.position) > after))
            .take(count as usize)
            .map(decode)
            .collect()
    }

    #[tracing::instrument(name = "kurrent.head_position", skip(self))]
    /// Answers are kept in the answer book just after the events are appended (the server has
    /// no transaction spanning both); a crash in between loses the kept answer, and a retry is
    /// then recognised by its events' ids instead.
    async fn append_answered(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        answers: Vec<NewAnswer>,
    ) -> Result<Appended, StoreError> {
        check_answered_append(&events, &answers)?;
        let keys: Vec<AnswerKey> = answers.iter().map(|a| a.key.clone()).collect();
        if !keys.is_empty() {
            let before = self.answers.find(&keys).await?;
            if !before.is_empty() {
                return Ok(Appended::AnsweredBefore(before));
            }
        }
        let result = if events.is_empty() {
            None
        } else {
            Some(self.append(stream, expected, events).await?)
        };
        if !answers.is_empty() {
            let kept = answers
                .into_iter()
                .map(|mut answer| {
                    if let (true, Some(result)) = (answer.positioned, result) {
                        set_answer_position(&mut answer.answer, result.position);
                    }
                    StoredAnswer {
                        key: answer.key,
                        fingerprint: answer.fingerprint,
                        answer: answer.answer,
                    }
                })
                .collect();
            if let Err(error) = self.answers.keep(kept).await {
                // The events are durable; only the exact replay of these answers is lost.
                tracing::warn!(%error, %stream, "could not keep the answers of an append");
            }
        }
        Ok(Appended::Written(result))
    }

    async fn kept_answers(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError> {
        self.answers.find(keys).await
    }

    async fn forget_answers(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.answers.forget_before(kept_before).await
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        Ok(self
            .read_all_raw(StreamPosition::End, true, 1)
            .await?
            .first()
            .map(|event| position_from(event.position)))
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventStream {
        let follower = Follower {
            store: self.clone(),
            after,
            subscription: None,
            failed: false,
        };
        Box::pin(futures::stream::unfold(follower, Follower::next))
    }
}

/// A catch-up-then-live subscription to the filtered `$all` that survives drops: after a
/// failure it reports the error, pauses, and subscribes again strictly after the last event it
/// delivered, so the consumer sees every event once.
struct Follower {
    store: KurrentStore,
    after: Option<Position>,
    /// The live subscription and the client generation it runs on.
    subscription: Option<(u64, kurrentdb::Subscription)>,
    failed: bool,
}

impl Follower {
    async fn next(mut self) -> Option<(Result<RecordedEvent, StoreError>, Self)> {
        loop {
            if self.failed {
                tokio::time::sleep(Duration::from_millis(SUBSCRIPTION_RETRY_DELAY_MS)).await;
                self.failed = false;
            }
            let (generation, subscription) = match &mut self.subscription {
                Some((generation, subscription)) => (*generation, subscription),
                None => {
                    let (generation, client) = self.store.connection.client();
                    let from = self.after.map_or(StreamPosition::Start, |p| {
                        StreamPosition::Position(position_to(p))
                    });
                    // No retry options: the client's own resubscription is off, so every drop
                    // comes here and resumes from the position this follower delivered last.
                    let options = SubscribeToAllOptions::default()
                        .position(from)
                        .filter(self.store.filter());
                    let options = match self.store.credentials() {
                        Some(credentials) => options.authenticated(credentials),
                        None => options,
                    };
                    let subscription = client.subscribe_to_all(&options).await;
                    let (generation, subscription) =
                        self.subscription.insert((generation, subscription));
                    (*generation, subscription)
                }
            };
            let error = match subscription.next_subscription_event().await {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    let Some(event) = resolved.event.as_ref() else {
                        continue;
                    };
                    match decode(event) {
                        // A server may repeat the start position; never deliver twice.
                        Ok(event) if self.after.is_some_and(|after| event.position <= after) => {
                            continue
                        }
                        Ok(event) => {
                            self.after = Some(event.position);
                            return Some((Ok(event), self));
                        }
                        // An undecodable event must not be skipped silently: report it, and
                        // retry from before it, so a projector stops at it visibly.
                        Err(error) => error,
                    }
                }
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, after = ?self.after, "event store subscription dropped");
                    self.store.connection.forget_if_dead(generation, &error);
                    self.store.store_error(error, Right::ReadAll)
                }
            };
            self.subscription = None;
            self.failed = true;
            return Some((Err(error), self));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_string_must_state_tls() {
        let options = KurrentOptions::default();
        assert!(settings_from("esdb://localhost:2113", &options).is_err());
        let settings = settings_from("esdb://localhost:2113?tls=false", &options).unwrap();
        assert!(!settings.is_secure_mode_enabled());
        assert_eq!(
            settings.gossip_timeout(),
            Duration::from_millis(NODE_PROBE_TIMEOUT_MS)
        );
        assert_eq!(
            settings.node_preference(),
            kurrentdb::NodePreference::Leader
        );
        let follower = settings_from(
            "esdb://localhost:2113?tls=false&nodePreference=follower",
            &options,
        )
        .unwrap();
        assert_eq!(
            follower.node_preference(),
            kurrentdb::NodePreference::Follower
        );
    }

    #[test]
    fn the_user_of_a_connection_string_is_found_for_messages() {
        assert_eq!(
            user_in("esdb://ledger:secret@a:2113,b:2113?tls=true").as_deref(),
            Some("ledger")
        );
        assert_eq!(user_in("esdb://a:2113?tls=true"), None);
    }

    #[test]
    fn settings_in_the_connection_string_win_over_the_adapters() {
        let options = KurrentOptions::default();
        let settings = settings_from(
            "esdb://localhost:2113?tls=true&gossipTimeout=7000",
            &options,
        )
        .unwrap();
        assert!(settings.is_secure_mode_enabled());
        assert_eq!(settings.gossip_timeout(), Duration::from_millis(7_000));
    }

    #[test]
    fn metadata_round_trips_with_the_recorded_time_and_the_hash() {
        let recorded_at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2030, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(7);
        let stored = StoredMetadata {
            schema_version: 2,
            recorded_at: Some(recorded_at),
            hash: Some(EventHash([0xa5; 32])),
            metadata: Metadata {
                principal: Some("p".into()),
                ..Metadata::default()
            },
        };
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["hash"], serde_json::json!("a5".repeat(32)));
        let back: StoredMetadata = serde_json::from_value(json).unwrap();
        assert_eq!(back.recorded_at, Some(recorded_at));
        assert_eq!(back.hash, stored.hash);
        assert_eq!(back.metadata, stored.metadata);
    }

    #[test]
    fn metadata_round_trips_with_the_schema_version() {
        let stored = StoredMetadata {
            schema_version: 2,
            recorded_at: None,
            hash: None,
            metadata: Metadata {
                correlation_id: Some("c".into()),
                causation_id: None,
                principal: Some("p".into()),
                idempotency_key: Some("k".into()),
                idempotency_scope: None,
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            },
        };
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "schema_version": 2, "correlation_id": "c", "principal": "p", "idempotency_key": "k",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            })
        );
        let back: StoredMetadata = serde_json::from_value(json).unwrap();
        assert_eq!(back.metadata, stored.metadata);
    }
}
