//! A TCP proxy a test puts between a client and a real server (PostgreSQL, over TCP or its Unix
//! socket) to make the network misbehave on cue: stall every connection (bytes stop flowing,
//! sockets stay open, as on a black-holed link), cut every connection, or lose the connection
//! right around a transaction's `COMMIT`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;

/// Where the proxy connects to.
#[derive(Debug, Clone)]
pub enum Upstream {
    Tcp(SocketAddr),
    /// A Unix socket file, e.g. a private cluster's `<socket dir>/.s.PGSQL.5432`.
    Unix(PathBuf),
}

/// What happens to the next client message that carries a `COMMIT`.
const COMMIT_PASS: u8 = 0;
/// Forward it, then lose the connection before the server's answer comes back: the commit
/// lands, the client cannot know.
const COMMIT_FORWARD_THEN_CUT: u8 = 1;
/// Lose the connection instead of forwarding it: the transaction is rolled back.
const COMMIT_DROP_AND_CUT: u8 = 2;

struct Control {
    /// True while no byte may flow.
    stalled: watch::Sender<bool>,
    /// Bumped to close every connection open at that moment.
    cuts: watch::Sender<u64>,
    commit_fault: AtomicU8,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

/// A running proxy; it stops when dropped.
pub struct TcpProxy {
    address: SocketAddr,
    control: Arc<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listen on a free loopback port and forward every connection to `upstream`.
    pub async fn start(upstream: Upstream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let control = Arc::new(Control {
            stalled: watch::channel(false).0,
            cuts: watch::channel(0).0,
            commit_fault: AtomicU8::new(COMMIT_PASS),
            accepted: AtomicU64::new(0),
        });
        let shared = control.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(relay(client, upstream.clone(), shared.clone()));
            }
        });
        Self {
            address,
            control,
            task,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stop (`true`) or resume (`false`) every byte in both directions, on open connections
    /// and new ones alike.
    pub fn stall(&self, stalled: bool) {
        self.control.stalled.send_replace(stalled);
    }

    /// Close every connection open now; later ones work.
    pub fn cut(&self) {
        self.control.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// The next client message carrying `COMMIT` is forwarded, then that connection is lost
    /// before the answer comes back.
    pub fn cut_after_next_commit(&self) {
        self.control
            .commit_fault
            .store(COMMIT_FORWARD_THEN_CUT, Ordering::SeqCst);
    }

    /// The next client message carrying `COMMIT` is not forwarded, and that connection is lost.
    pub fn drop_next_commit(&self) {
        self.control
            .commit_fault
            .store(COMMIT_DROP_AND_CUT, Ordering::SeqCst);
    }

    /// Whether the armed commit fault has happened.
    pub fn commit_fault_pending(&self) -> bool {
        self.control.commit_fault.load(Ordering::SeqCst) != COMMIT_PASS
    }

    pub fn connections_accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

async fn connect(upstream: &Upstream) -> std::io::Result<Box<dyn Stream>> {
    Ok(match upstream {
        Upstream::Tcp(address) => Box::new(TcpStream::connect(address).await?),
        Upstream::Unix(path) => Box::new(UnixStream::connect(path).await?),
    })
}

async fn relay(client: TcpStream, upstream: Upstream, control: Arc<Control>) {
    let mut cuts = control.cuts.subscribe();
    cuts.mark_unchanged();
    let mut stalled = control.stalled.subscribe();
    if stalled.wait_for(|stalled| !*stalled).await.is_err() {
        return;
    }
    let Ok(server) = connect(&upstream).await else {
        return;
    };
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    // Set when a commit fault fires: from then on nothing reaches the client.
    let severed = Arc::new(AtomicBool::new(false));
    let to_server = pump(
        Box::new(client_read),
        Box::new(server_write),
        control.clone(),
        severed.clone(),
        true,
    );
    let to_client = pump(
        Box::new(server_read),
        Box::new(client_write),
        control.clone(),
        severed,
        false,
    );
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
        _ = cuts.changed() => {}
    }
}

/// Copy `from` to `to` until either ends, holding bytes while stalled. Towards the server an
/// armed commit fault applies and, when it fires, sets `severed`; towards the client nothing
/// is written once `severed` is set. Returning drops (closes) the connection.
async fn pump(
    mut from: Box<dyn AsyncRead + Send + Unpin>,
    mut to: Box<dyn AsyncWrite + Send + Unpin>,
    control: Arc<Control>,
    severed: Arc<AtomicBool>,
    towards_server: bool,
) {
    let mut stalled = control.stalled.subscribe();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        let chunk = &buffer[..read];
        if !towards_server && severed.load(Ordering::SeqCst) {
            return;
        }
        if towards_server && contains(chunk, b"COMMIT") {
            let fault = control.commit_fault.swap(COMMIT_PASS, Ordering::SeqCst);
            if fault == COMMIT_DROP_AND_CUT {
                severed.store(true, Ordering::SeqCst);
                return;
            }
            if fault == COMMIT_FORWARD_THEN_CUT {
                severed.store(true, Ordering::SeqCst);
                let _ = to.write_all(chunk).await;
                let _ = to.flush().await;
                // Let the server read it before its connection goes.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
