//! An in-memory double of the EventStoreDB/KurrentDB gRPC protocol, for testing the ledger's
//! event store adapter through the real client, on machines where no server can run.
//!
//! # Layout
//! - [`proto`]: the protocol subset, generated at build time from `proto/` (written for this
//!   project; field numbers follow the published definitions).
//! - `log`: the store itself — streams, the store-wide log, expected-revision checks and
//!   event-id idempotency as the server applies them — with no networking in it.
//! - `service`: the gRPC services over the log: server features, stream and `$all` reads,
//!   catch-up-then-live subscriptions to `$all`, appends.
//! - [`EventStoreDouble`]: the test's handle: start on 127.0.0.1, stop and restart on the same
//!   port (state survives, connections do not, as in a server crash), start later, and stall
//!   appends to provoke client deadlines. It also switches the double to behave as real
//!   servers do where they differ: a 20.x generation without stream-read positions
//!   ([`ServerGeneration`]), a secure node with users and the `$all` permission ([`User`]),
//!   cluster nodes sharing one log that answer "not leader" ([`EventStoreDouble::start_replica`]),
//!   a maximum append size, permanently deleted and truncated streams, and a server-side
//!   deduplication that forgets.
//!
//! Each incarnation of the server runs on its own thread and runtime, so stopping it drops every
//! connection and subscription at once, exactly what a client sees when a server dies.

mod log;
mod service;

/// The generated protocol types and service traits, nested as their protobuf packages are so
/// that the generated cross-package paths resolve.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    pub mod event_store {
        pub mod client {
            tonic::include_proto!("event_store.client");
            pub mod streams {
                tonic::include_proto!("event_store.client.streams");
            }
            pub mod server_features {
                tonic::include_proto!("event_store.client.server_features");
            }
        }
    }
    pub use event_store::client as shared;
    pub use event_store::client::{server_features, streams};
}

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

pub use log::{Log, DEDUPE_WINDOW_EVENTS_DEFAULT};

/// Where the double listens: loopback only, so a test server is never reachable from outside.
const LISTEN_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Connections the listener queues before accepting; tests open a handful.
const LISTEN_BACKLOG: u32 = 128;

/// How an append is held up, to make the client's deadline expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendStall {
    /// Wait this long before looking at the append: a client that gives up first leaves
    /// nothing written.
    BeforeWrite(Duration),
    /// Write at once, then wait this long before answering: the events are stored but the
    /// client never hears so, as when an answer is lost. A retry must then be recognised.
    AfterWrite(Duration),
}

/// Which server generation the double answers as, where their answers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerGeneration {
    /// Current servers (the protocol of 24.x): every event read from a stream carries its
    /// `$all` position.
    Current,
    /// The oldest gRPC servers (20.x): events read from a stream carry no position (the
    /// maximum value in both parts, and "no position" on the read), while `$all` reads,
    /// subscriptions and append answers still carry real ones.
    NoStreamReadPositions,
}

impl ServerGeneration {
    /// The version the double reports for this generation.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Self::Current => "24.10.0-double",
            Self::NoStreamReadPositions => "20.10.0-double",
        }
    }
}

/// A user of a secured double, as a secure server knows its users: a name and password, and
/// whether reading `$all` is allowed (a member of `$admins` or `$ops`, or named in the read ACL
/// of `$all`). Every user may read and write the ledger's streams, as the default ACL allows.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub reads_all: bool,
}

/// Test controls shared by every incarnation of the server.
#[derive(Debug)]
pub(crate) struct Controls {
    pub(crate) append_stall: Option<AppendStall>,
    pub(crate) generation: ServerGeneration,
    /// The users of a secured double; `None` for an insecure one, which lets every call in.
    pub(crate) users: Option<Vec<User>>,
    /// Where the leader is while this node is a follower; `None` while it leads (or stands
    /// alone). A follower answers calls that require the leader with "not leader" and the
    /// leader's endpoint, as a cluster node does.
    pub(crate) leader: Option<SocketAddr>,
    /// The server's maximum append size (`MaxAppendSize`), in bytes.
    pub(crate) append_bytes_max: u64,
}

/// The maximum append size servers of 20.x to 24.x have by default: 1 MiB.
pub const APPEND_BYTES_MAX_DEFAULT: u64 = 1_048_576;

impl Default for Controls {
    fn default() -> Self {
        Self {
            append_stall: None,
            generation: ServerGeneration::Current,
            users: None,
            leader: None,
            append_bytes_max: APPEND_BYTES_MAX_DEFAULT,
        }
    }
}

/// State that outlives a restart: the stored events and the test controls.
pub(crate) struct Shared {
    /// The nodes of one simulated cluster share their log, as replication makes them agree.
    pub(crate) log: Arc<Log>,
    pub(crate) controls: Mutex<Controls>,
    /// "Not leader" answers given, for tests that must prove a leader change happened.
    pub(crate) not_leader_answers: std::sync::atomic::AtomicU64,
    /// Checkpoints and "fell behind" messages sent to subscriptions, likewise.
    pub(crate) checkpoints_sent: std::sync::atomic::AtomicU64,
    pub(crate) fell_behind_sent: std::sync::atomic::AtomicU64,
}

struct Running {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// One double of an EventStoreDB/KurrentDB node. Dropping it stops the server.
pub struct EventStoreDouble {
    shared: Arc<Shared>,
    address: SocketAddr,
    running: Option<Running>,
}

impl EventStoreDouble {
    /// A double serving at once on a free loopback port.
    pub fn start() -> io::Result<Self> {
        let mut double = Self::start_later()?;
        double.serve()?;
        Ok(double)
    }

    /// A double that has chosen its port but does not listen yet: connections are refused until
    /// [`serve`](Self::serve), as with a server that is still starting.
    pub fn start_later() -> io::Result<Self> {
        // Binding port 0 and closing again picks a free port; the double binds it again with
        // SO_REUSEADDR when it serves. Another process could take it in between, which on a
        // test machine's loopback is unlikely enough to accept.
        let probe = std::net::TcpListener::bind(SocketAddrV4::new(LISTEN_ADDRESS, 0))?;
        let address = probe.local_addr()?;
        drop(probe);
        Ok(Self::unstarted(address))
    }

    /// A double serving at once on `port` of the loopback interface, for running it as a
    /// stand-in server outside a test process.
    pub fn start_on_port(port: u16) -> io::Result<Self> {
        let mut double = Self::unstarted(SocketAddrV4::new(LISTEN_ADDRESS, port).into());
        double.serve()?;
        Ok(double)
    }

    fn unstarted(address: SocketAddr) -> Self {
        Self::unstarted_with(address, Arc::new(Log::new()), Controls::default())
    }

    fn unstarted_with(address: SocketAddr, log: Arc<Log>, controls: Controls) -> Self {
        Self {
            shared: Arc::new(Shared {
                log,
                controls: Mutex::new(controls),
                not_leader_answers: std::sync::atomic::AtomicU64::new(0),
                checkpoints_sent: std::sync::atomic::AtomicU64::new(0),
                fell_behind_sent: std::sync::atomic::AtomicU64::new(0),
            }),
            address,
            running: None,
        }
    }

    /// Another node of this node's cluster, serving at once on a free port: it shares the log
    /// (as replication would make it), the users and the server generation, and starts as a
    /// follower of this node.
    pub fn start_replica(&self) -> io::Result<Self> {
        let probe = std::net::TcpListener::bind(SocketAddrV4::new(LISTEN_ADDRESS, 0))?;
        let address = probe.local_addr()?;
        drop(probe);
        let controls = {
            let mine = self.controls();
            Controls {
                append_stall: None,
                generation: mine.generation,
                users: mine.users.clone(),
                leader: Some(self.address),
                append_bytes_max: mine.append_bytes_max,
            }
        };
        let mut replica = Self::unstarted_with(address, Arc::clone(&self.shared.log), controls);
        replica.serve()?;
        Ok(replica)
    }

    /// Become a follower of the node at `leader`: from now on calls that require the leader
    /// are answered "not leader", naming it.
    pub fn follow(&self, leader: SocketAddr) {
        self.controls().leader = Some(leader);
    }

    /// Become the leader (or a single node) again.
    pub fn lead(&self) {
        self.controls().leader = None;
    }

    /// How many checkpoints filtered subscriptions were sent, and how often a live
    /// subscription was told it fell behind.
    pub fn subscription_notices_sent(&self) -> (u64, u64) {
        (
            self.shared
                .checkpoints_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            self.shared
                .fell_behind_sent
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// How many calls this node answered with "not leader".
    pub fn not_leader_answers(&self) -> u64 {
        self.shared
            .not_leader_answers
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Start serving on the double's port; does nothing when it already serves.
    pub fn serve(&mut self) -> io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let (stop, stopped) = oneshot::channel();
        let (bound, is_bound) = std::sync::mpsc::channel();
        let shared = Arc::clone(&self.shared);
        let address = self.address;
        let thread = std::thread::Builder::new()
            .name(format!("eventstore-double-{}", address.port()))
            .spawn(move || service::run(shared, address, LISTEN_BACKLOG, bound, stopped))?;
        match is_bound.recv() {
            Ok(Ok(())) => {
                self.running = Some(Running { stop, thread });
                Ok(())
            }
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "the double's server thread ended before binding",
                ))
            }
        }
    }

    /// Stop serving, as a crash would: the listener closes and every open connection and
    /// subscription is dropped. Stored events are kept for a later [`serve`](Self::serve).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            let _ = running.thread.join();
        }
    }

    /// Stop, then serve again on the same port with the same events.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.serve()
    }

    pub fn is_serving(&self) -> bool {
        self.running.is_some()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A connection string for the double: a single insecure node.
    pub fn url(&self) -> String {
        format!("esdb://{}?tls=false", self.address)
    }

    /// Hold up every later append as `stall` says, until [`clear_append_stall`](Self::clear_append_stall).
    pub fn stall_appends(&self, stall: AppendStall) {
        self.controls().append_stall = Some(stall);
    }

    pub fn clear_append_stall(&self) {
        self.controls().append_stall = None;
    }

    /// Require credentials from now on, as a secure server does: calls without them are denied,
    /// calls with a wrong password are unauthenticated, and only `users` that may read `$all`
    /// read or follow it. The server-features call stays open, as on a real server.
    pub fn require_credentials(&self, users: Vec<User>) {
        self.controls().users = Some(users);
    }

    /// Refuse appends larger than `bytes` from now on, as a server configured with that
    /// maximum append size does.
    pub fn limit_append_size(&self, bytes: u64) {
        self.controls().append_bytes_max = bytes;
    }

    /// Answer from now on as a server of `generation` does.
    pub fn answer_as(&self, generation: ServerGeneration) {
        self.controls().generation = generation;
    }

    /// The stored events of `stream`, as event ids in revision order; for tests that check for
    /// duplicates on the server side, below the adapter.
    pub fn stream_event_ids(&self, stream: &str) -> Vec<uuid::Uuid> {
        self.shared.log.stream_event_ids(stream.as_bytes())
    }

    /// Delete `stream` permanently, as an operator's hard delete (tombstone) does: reads and
    /// appends are refused with "stream deleted"; its events stay in `$all`.
    pub fn delete_stream_permanently(&self, stream: &str) {
        self.shared.log.tombstone(stream.as_bytes());
    }

    /// Truncate `stream` before `revision`, as setting `$tb` in its metadata does: reads no
    /// longer return the events below it.
    pub fn truncate_stream_before(&self, stream: &str, revision: u64) {
        self.shared.log.truncate_before(stream.as_bytes(), revision);
    }

    /// Let the double's own recognition of retried `Any` and `StreamExists` appends look at
    /// the last `events` of a stream only (0: never), as a real server's best-effort cache
    /// forgets (default [`DEDUPE_WINDOW_EVENTS_DEFAULT`]).
    pub fn forget_writes_older_than(&self, events: u64) {
        self.shared.log.set_dedupe_window(events);
    }

    /// How many append calls reached the server, including refused and idempotent ones.
    pub fn appends_received(&self) -> u64 {
        self.shared.log.appends_received()
    }

    fn controls(&self) -> std::sync::MutexGuard<'_, Controls> {
        self.shared
            .controls
            .lock()
            .expect("double controls lock poisoned")
    }
}

impl Drop for EventStoreDouble {
    fn drop(&mut self) {
        self.stop();
    }
}
