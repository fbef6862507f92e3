//! The gRPC services over the double's log, and the server loop of one incarnation.

// `tonic::Status` is the error type the generated service traits prescribe; boxing it in the
// helpers would only be undone at every call site.
#![allow(clippy::result_large_err)]

use crate::log::{AppendOutcome, Expected, Filter, Proposed, Stored, StreamRead};
use crate::proto::server_features::server_features_server::{ServerFeatures, ServerFeaturesServer};
use crate::proto::server_features::{SupportedMethod, SupportedMethods};
use crate::proto::shared::{self, uuid as proto_uuid, StreamIdentifier};
use crate::proto::streams::streams_server::{Streams, StreamsServer};
use crate::proto::streams::{append_req, append_resp, read_req, read_resp};
use crate::proto::streams::{AppendReq, AppendResp, ReadReq, ReadResp};
use crate::{AppendStall, ServerGeneration, Shared};
use futures::Stream;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

/// Most events one append may carry; a real server limits an append's size too. Far above the
/// adapter's own bound, so only a broken client reaches it.
const APPEND_EVENTS_MAX: usize = 65_536;

/// Messages buffered per subscription before the double waits for the client to read.
const SUBSCRIPTION_BUFFER_MESSAGES: usize = 256;

/// Events a subscription sends per look at the log.
const SUBSCRIPTION_PAGE_EVENTS: usize = 128;

/// Events a subscription scans per look at the log, kept or not, so a sparse filter does not
/// hold the log's lock for long.
const SUBSCRIPTION_SCAN_EVENTS_MAX: usize = 4_096;

type ReadResponseStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;

/// Serve one incarnation until `stopped` fires, then drop its runtime: every connection and
/// subscription task dies with it, as with a crashed server.
pub(crate) fn run(
    shared: Arc<Shared>,
    address: SocketAddr,
    backlog: u32,
    bound: std::sync::mpsc::Sender<io::Result<()>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = bound.send(Err(error));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match listen(address, backlog) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = bound.send(Err(error));
                return;
            }
        };
        let _ = bound.send(Ok(()));
        let service = Service { shared };
        let server = tonic::transport::Server::builder()
            .add_service(ServerFeaturesServer::new(service.clone()))
            .add_service(StreamsServer::new(service))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::select! {
            result = server => {
                if let Err(error) = result {
                    tracing::error!(%error, "event store double stopped serving");
                }
            }
            _ = stopped => {}
        }
    });
    runtime.shutdown_background();
}

fn listen(address: SocketAddr, backlog: u32) -> io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // A restart binds the port the previous incarnation used; its closed connections may still
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

#[derive(Clone)]
struct Service {
    shared: Arc<Shared>,
}

impl Service {
    fn controls(&self) -> std::sync::MutexGuard<'_, crate::Controls> {
        self.shared
            .controls
            .lock()
            .expect("double controls lock poisoned")
    }

    /// Refuse a call that requires the leader while this node follows another, as a cluster
    /// node does: "not leader", with the leader's endpoint for the client to go to.
    fn require_leader(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let requires_leader = metadata
            .get("requires-leader")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let Some(leader) = self.controls().leader else {
            return Ok(());
        };
        if !requires_leader {
            return Ok(());
        }
        self.shared
            .not_leader_answers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut status = Status::not_found("Leader info available");
        let trailers = status.metadata_mut();
        trailers.insert("exception", MetadataValue::from_static("not-leader"));
        let host = MetadataValue::try_from(leader.ip().to_string())
            .map_err(|_| Status::internal("a leader address is ASCII"))?;
        trailers.insert("leader-endpoint-host", host);
        trailers.insert("leader-endpoint-port", MetadataValue::from(leader.port()));
        Err(status)
    }

    /// Check a call's credentials as a secure server does: no credentials are denied access,
    /// wrong ones are unauthenticated, and `$all` (`reads_all`) needs a user allowed to read it.
    fn authorize(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        reads_all: bool,
    ) -> Result<(), Status> {
        let controls = self.controls();
        let Some(users) = &controls.users else {
            return Ok(());
        };
        let Some((name, password)) = basic_credentials(metadata) else {
            return Err(access_denied());
        };
        let Some(user) = users.iter().find(|u| u.name == name) else {
            return Err(Status::unauthenticated("Bad credentials"));
        };
        if user.password != password {
            return Err(Status::unauthenticated("Bad credentials"));
        }
        if reads_all && !user.reads_all {
            return Err(access_denied());
        }
        Ok(())
    }
}

/// A real server's answer for a stream deleted permanently.
fn stream_deleted(stream: &[u8]) -> Status {
    let name = String::from_utf8_lossy(stream).into_owned();
    let mut status = Status::failed_precondition(format!("Event stream '{name}' is deleted."));
    let trailers = status.metadata_mut();
    trailers.insert("exception", MetadataValue::from_static("stream-deleted"));
    if let Ok(value) = MetadataValue::try_from(name) {
        trailers.insert("stream-name", value);
    }
    status
}

/// A real server's refusal of an append past its maximum size.
fn append_size_exceeded(size_bytes_max: u64) -> Status {
    let mut status =
        Status::invalid_argument(format!("Maximum Append Size of {size_bytes_max} Exceeded."));
    let trailers = status.metadata_mut();
    trailers.insert(
        "exception",
        MetadataValue::from_static("maximum-append-size-exceeded"),
    );
    trailers.insert("maximum-append-size", MetadataValue::from(size_bytes_max));
    status
}

/// A real server's refusal: permission denied, with its exception name in the trailers.
fn access_denied() -> Status {
    let mut status = Status::permission_denied("Access Denied");
    status
        .metadata_mut()
        .insert("exception", MetadataValue::from_static("access-denied"));
    status
}

/// The user name and password of a `Basic` authorization header.
fn basic_credentials(metadata: &tonic::metadata::MetadataMap) -> Option<(String, String)> {
    use base64::Engine;
    let header = metadata.get("authorization")?.to_str().ok()?;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

#[tonic::async_trait]
impl ServerFeatures for Service {
    async fn get_supported_methods(
        &self,
        _request: Request<shared::Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let streams = "event_store.client.streams.streams";
        let methods = ["read", "append"]
            .into_iter()
            .map(|name| SupportedMethod {
                method_name: name.to_owned(),
                service_name: streams.to_owned(),
                features: Vec::new(),
            })
            .collect();
        Ok(Response::new(SupportedMethods {
            methods,
            event_store_server_version: self.controls().generation.version().to_owned(),
        }))
    }
}

#[tonic::async_trait]
impl Streams for Service {
    type ReadStream = ReadResponseStream;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<Self::ReadStream>, Status> {
        let reads_all = matches!(
            request
                .get_ref()
                .options
                .as_ref()
                .and_then(|o| o.stream_option.as_ref()),
            Some(read_req::options::StreamOption::All(_))
        );
        self.authorize(request.metadata(), reads_all)?;
        self.require_leader(request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("a read needs options"))?;
        let ids_as_text = !matches!(
            options
                .uuid_option
                .as_ref()
                .and_then(|u| u.content.as_ref()),
            Some(read_req::options::uuid_option::Content::Structured(_))
        );
        let backwards =
            options.read_direction == read_req::options::ReadDirection::Backwards as i32;
        let filter = filter_of(options.filter_option)?;
        let stream_option = options
            .stream_option
            .ok_or_else(|| Status::invalid_argument("a read needs a stream or $all"))?;
        let count = match options.count_option {
            Some(read_req::options::CountOption::Count(count)) => count,
            Some(read_req::options::CountOption::Subscription(_)) => {
                return self.subscribe(stream_option, filter, ids_as_text);
            }
            None => return Err(Status::invalid_argument("a read needs a count")),
        };
        let messages: Vec<Result<ReadResp, Status>> = match stream_option {
            read_req::options::StreamOption::Stream(options) => {
                let identifier = options
                    .stream_identifier
                    .ok_or_else(|| Status::invalid_argument("a stream read needs a stream"))?;
                use read_req::options::stream_options::RevisionOption;
                let from = match options.revision_option {
                    Some(RevisionOption::Revision(revision)) => Some(revision),
                    Some(RevisionOption::Start(_)) if backwards => Some(0),
                    Some(RevisionOption::End(_)) if !backwards => Some(u64::MAX),
                    Some(RevisionOption::Start(_)) | Some(RevisionOption::End(_)) | None => None,
                };
                match self
                    .shared
                    .log
                    .read_stream(&identifier.stream_name, from, backwards, count)
                {
                    StreamRead::Deleted => return Err(stream_deleted(&identifier.stream_name)),
                    StreamRead::NotFound => vec![Ok(ReadResp {
                        content: Some(read_resp::Content::StreamNotFound(
                            read_resp::StreamNotFound {
                                stream_identifier: Some(identifier),
                            },
                        )),
                    })],
                    StreamRead::Events(events) => {
                        let positioned = self.controls().generation == ServerGeneration::Current;
                        events
                            .iter()
                            .map(|e| {
                                Ok(if positioned {
                                    event_message(e, ids_as_text)
                                } else {
                                    unpositioned_event_message(e, ids_as_text)
                                })
                            })
                            .collect()
                    }
                }
            }
            read_req::options::StreamOption::All(options) => {
                use read_req::options::all_options::AllOption;
                let (from, from_end) = match options.all_option {
                    Some(AllOption::Position(p)) => {
                        (Some((p.commit_position, p.prepare_position)), false)
                    }
                    Some(AllOption::End(_)) => (None, !backwards),
                    Some(AllOption::Start(_)) if backwards => (Some((0, 0)), false),
                    Some(AllOption::Start(_)) | None => (None, false),
                };
                self.shared
                    .log
                    .read_all(from, from_end, backwards, &filter, count)
                    .iter()
                    .map(|e| Ok(event_message(e, ids_as_text)))
                    .collect()
            }
        };
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        self.authorize(request.metadata(), false)?;
        self.require_leader(request.metadata())?;
        let mut incoming = request.into_inner();
        let options = match incoming.message().await? {
            Some(AppendReq {
                content: Some(append_req::Content::Options(options)),
            }) => options,
            _ => {
                return Err(Status::invalid_argument(
                    "an append starts with its options",
                ))
            }
        };
        let stream = options
            .stream_identifier
            .ok_or_else(|| Status::invalid_argument("an append needs a stream"))?
            .stream_name;
        use append_req::options::ExpectedStreamRevision;
        let expected = match options.expected_stream_revision {
            Some(ExpectedStreamRevision::Revision(revision)) => Expected::Revision(revision),
            Some(ExpectedStreamRevision::NoStream(_)) => Expected::NoStream,
            Some(ExpectedStreamRevision::Any(_)) => Expected::Any,
            Some(ExpectedStreamRevision::StreamExists(_)) => Expected::StreamExists,
            None => {
                return Err(Status::invalid_argument(
                    "an append needs an expected revision",
                ))
            }
        };
        let mut events = Vec::new();
        let mut size_bytes: u64 = 0;
        let size_bytes_max = self.controls().append_bytes_max;
        while let Some(message) = incoming.message().await? {
            let Some(append_req::Content::ProposedMessage(proposed)) = message.content else {
                return Err(Status::invalid_argument(
                    "only the first message of an append carries options",
                ));
            };
            if events.len() == APPEND_EVENTS_MAX {
                return Err(Status::invalid_argument("too many events in one append"));
            }
            let id = proposed
                .id
                .ok_or_else(|| Status::invalid_argument("a proposed event needs an id"))
                .and_then(uuid_from_proto)?;
            // A real server counts data, custom metadata and the type (two bytes a character)
            // against its maximum append size, and refuses the whole append past it.
            let type_length = proposed.metadata.get("type").map_or(0, String::len) as u64;
            size_bytes += proposed.data.len() as u64
                + proposed.custom_metadata.len() as u64
                + 2 * type_length;
            if size_bytes > size_bytes_max {
                return Err(append_size_exceeded(size_bytes_max));
            }
            events.push(Proposed {
                id,
                metadata: proposed.metadata,
                custom_metadata: proposed.custom_metadata.into(),
                data: proposed.data.into(),
            });
        }
        let stall = self
            .shared
            .controls
            .lock()
            .expect("double controls lock poisoned")
            .append_stall;
        if let Some(AppendStall::BeforeWrite(delay)) = stall {
            tokio::time::sleep(delay).await;
        }
        let outcome = self.shared.log.append(stream.clone(), expected, events);
        if outcome == AppendOutcome::StreamDeleted {
            return Err(stream_deleted(&stream));
        }
        if let Some(AppendStall::AfterWrite(delay)) = stall {
            tokio::time::sleep(delay).await;
        }
        Ok(Response::new(append_response(outcome)))
    }
}

impl Service {
    /// A catch-up-then-live subscription to `$all`: confirmation, every kept event after the
    /// start, a caught-up message, then each new kept event as it is written.
    fn subscribe(
        &self,
        stream_option: read_req::options::StreamOption,
        filter: Filter,
        ids_as_text: bool,
    ) -> Result<Response<ReadResponseStream>, Status> {
        use read_req::options::all_options::AllOption;
        let read_req::options::StreamOption::All(options) = stream_option else {
            return Err(Status::unimplemented(
                "the double supports subscriptions to $all only",
            ));
        };
        let (from, from_end) = match options.all_option {
            Some(AllOption::Position(p)) => (Some((p.commit_position, p.prepare_position)), false),
            Some(AllOption::End(_)) => (None, true),
            Some(AllOption::Start(_)) | None => (None, false),
        };
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER_MESSAGES);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let cursor = shared.log.subscription_start(from, from_end);
            follow(shared, cursor, filter, ids_as_text, sender).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

async fn follow(
    shared: Arc<Shared>,
    mut cursor: usize,
    filter: Filter,
    ids_as_text: bool,
    sender: mpsc::Sender<Result<ReadResp, Status>>,
) {
    let confirmation = ReadResp {
        content: Some(read_resp::Content::Confirmation(
            read_resp::SubscriptionConfirmation {
                subscription_id: uuid::Uuid::new_v4().to_string(),
            },
        )),
    };
    if sender.send(Ok(confirmation)).await.is_err() {
        return;
    }
    let mut length = shared.log.watch_length();
    let mut caught_up = false;
    loop {
        // Mark the current length as seen before reading, so a write during the read wakes
        // the next wait instead of being missed.
        let seen = *length.borrow_and_update();
        let (page, next) = shared.log.page_from(
            cursor,
            &filter,
            SUBSCRIPTION_PAGE_EVENTS,
            SUBSCRIPTION_SCAN_EVENTS_MAX,
        );
        cursor = next;
        for event in &page {
            if sender
                .send(Ok(event_message(event, ids_as_text)))
                .await
                .is_err()
            {
                return;
            }
        }
        // A filtered subscription reports how far it has scanned, as a real server's
        // checkpoints do: often past the last event it delivered.
        if !filter.prefixes.is_empty() {
            if let Some((commit, prepare)) = cursor
                .checked_sub(1)
                .and_then(|i| shared.log.position_at(i))
            {
                let checkpoint = ReadResp {
                    content: Some(read_resp::Content::Checkpoint(read_resp::Checkpoint {
                        commit_position: commit,
                        prepare_position: prepare,
                        timestamp: Some(std::time::SystemTime::now().into()),
                    })),
                };
                if sender.send(Ok(checkpoint)).await.is_err() {
                    return;
                }
                shared
                    .checkpoints_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if cursor < seen {
            // Live, but more than a page behind the log: a real server says it fell behind
            // and catches up again before going live.
            if caught_up {
                caught_up = false;
                let message = ReadResp {
                    content: Some(read_resp::Content::FellBehind(read_resp::FellBehind {
                        timestamp: Some(std::time::SystemTime::now().into()),
                        stream_revision: None,
                        position: None,
                    })),
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
                shared
                    .fell_behind_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            continue;
        }
        if !caught_up {
            caught_up = true;
            let position =
                shared
                    .log
                    .last_position()
                    .map(|(commit, prepare)| read_resp::Position {
                        commit_position: commit,
                        prepare_position: prepare,
                    });
            let message = ReadResp {
                content: Some(read_resp::Content::CaughtUp(read_resp::CaughtUp {
                    timestamp: Some(std::time::SystemTime::now().into()),
                    stream_revision: None,
                    position,
                })),
            };
            if sender.send(Ok(message)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = length.changed() => if changed.is_err() { return },
            _ = sender.closed() => return,
        }
    }
}

fn filter_of(option: Option<read_req::options::FilterOption>) -> Result<Filter, Status> {
    use read_req::options::filter_options::Filter as Kind;
    use read_req::options::FilterOption;
    let Some(FilterOption::Filter(options)) = option else {
        return Ok(Filter::default());
    };
    let (on_event_type, expression) = match options.filter {
        Some(Kind::StreamIdentifier(expression)) => (false, expression),
        Some(Kind::EventType(expression)) => (true, expression),
        None => return Ok(Filter::default()),
    };
    if !expression.regex.is_empty() {
        return Err(Status::unimplemented(
            "the double filters by prefix only, not by regular expression",
        ));
    }
    Ok(Filter {
        on_event_type,
        prefixes: expression.prefix,
    })
}

fn event_message(event: &Stored, ids_as_text: bool) -> ReadResp {
    let id = if ids_as_text {
        proto_uuid::Value::String(event.id.to_string())
    } else {
        let bits = event.id.as_u128();
        proto_uuid::Value::Structured(proto_uuid::Structured {
            most_significant_bits: (bits >> 64) as u64 as i64,
            least_significant_bits: bits as u64 as i64,
        })
    };
    let recorded = read_resp::read_event::RecordedEvent {
        id: Some(shared::Uuid { value: Some(id) }),
        stream_identifier: Some(StreamIdentifier {
            stream_name: event.stream.clone(),
        }),
        stream_revision: event.revision,
        prepare_position: event.prepare,
        commit_position: event.commit,
        metadata: event.metadata.clone(),
        custom_metadata: event.custom_metadata.to_vec(),
        data: event.data.to_vec(),
    };
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(recorded),
            link: None,
            position: Some(read_resp::read_event::Position::CommitPosition(
                event.commit,
            )),
        })),
    }
}

/// An event read from a stream as the oldest gRPC servers send it: without its log position.
fn unpositioned_event_message(event: &Stored, ids_as_text: bool) -> ReadResp {
    let mut message = event_message(event, ids_as_text);
    if let Some(read_resp::Content::Event(read)) = &mut message.content {
        if let Some(recorded) = &mut read.event {
            recorded.commit_position = u64::MAX;
            recorded.prepare_position = u64::MAX;
        }
        read.position = Some(read_resp::read_event::Position::NoPosition(
            shared::Empty {},
        ));
    }
    message
}

fn append_response(outcome: AppendOutcome) -> AppendResp {
    use append_resp::wrong_expected_version as wrong;
    let result = match outcome {
        AppendOutcome::Success { revision, position } => {
            append_resp::Result::Success(append_resp::Success {
                current_revision_option: Some(
                    append_resp::success::CurrentRevisionOption::CurrentRevision(revision),
                ),
                position_option: Some(append_resp::success::PositionOption::Position(
                    append_resp::Position {
                        commit_position: position.0,
                        prepare_position: position.1,
                    },
                )),
            })
        }
        AppendOutcome::StreamDeleted => unreachable!("a deleted stream is answered as an error"),
        AppendOutcome::WrongExpectedVersion { current, expected } => {
            append_resp::Result::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                current_revision_option: Some(match current {
                    Some(revision) => wrong::CurrentRevisionOption::CurrentRevision(revision),
                    None => wrong::CurrentRevisionOption::CurrentNoStream(shared::Empty {}),
                }),
                expected_revision_option: Some(match expected {
                    Expected::Revision(r) => wrong::ExpectedRevisionOption::ExpectedRevision(r),
                    Expected::NoStream => {
                        wrong::ExpectedRevisionOption::ExpectedNoStream(shared::Empty {})
                    }
                    Expected::Any => wrong::ExpectedRevisionOption::ExpectedAny(shared::Empty {}),
                    Expected::StreamExists => {
                        wrong::ExpectedRevisionOption::ExpectedStreamExists(shared::Empty {})
                    }
                }),
            })
        }
    };
    AppendResp {
        result: Some(result),
    }
}

fn uuid_from_proto(id: shared::Uuid) -> Result<uuid::Uuid, Status> {
    match id.value {
        Some(proto_uuid::Value::Structured(s)) => {
            let high = u128::from(s.most_significant_bits as u64) << 64;
            let low = u128::from(s.least_significant_bits as u64);
            Ok(uuid::Uuid::from_u128(high | low))
        }
        Some(proto_uuid::Value::String(text)) => text
            .parse()
            .map_err(|_| Status::invalid_argument(format!("{text:?} is not a UUID"))),
        None => Err(Status::invalid_argument("an event id is empty")),
    }
}
