//! The API in its own process, as it runs in production: the real `ledger-api` binary on a
//! data folder of the bench's own, started on port 0 and stopped with SIGTERM (it then stops
//! its embedded cluster and exits 0). The bench's figures then separate the API's CPU from the
//! load generator's, and a restart on the same folder is a real restart.
//!
//! Nothing may outlive the bench: [`ApiProcess`] stops the API when dropped (a panic, or the
//! bench's Ctrl-C handler dropping the run), and a detached watcher stops the API and its
//! cluster should the bench be killed outright. [`DataFolder`] removes the folder when dropped.

use crate::cpu::Processes;
use crate::http::Endpoint;
use clap::Parser;
use rustix::process::{kill_process, Pid, Signal};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The API's binary, as cargo names it.
pub const API_BINARY_NAME: &str = "ledger-api";

/// The start of the line the API prints on standard output once it accepts connections.
const LISTENING_PREFIX: &str = "inventory ledger API listening on ";

/// The endpoint of an API that has not said where it listens yet (port 0 is never one).
const UNKNOWN_ENDPOINT_URL: &str = "http://127.0.0.1:0";

/// Where the API's standard error (its log) goes, inside the data folder.
const API_LOG_FILE: &str = "api.log";

/// How long the API may take to print its listening line. A first start on an empty folder
/// creates a PostgreSQL cluster (initdb, a few seconds on a small machine) and migrates it.
const START_TIMEOUT_SECONDS: u64 = 120;

/// How long the API may take to exit after SIGTERM: it finishes in-flight requests, stops its
/// workers between batches and stops the cluster, whose own wait is a minute at most.
const STOP_TIMEOUT_SECONDS: u64 = 90;

/// How often a stopping process is checked for having exited.
const EXIT_POLL_INTERVAL_MS: u64 = 50;

/// The data folder named when the API's arguments are only checked; nothing is created there.
const ARGUMENT_CHECK_DATA_DIR: &str = "ledger-bench-argument-check";

/// Lines of the API's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// A fresh folder under the system's temporary folder, removed with everything in it when
/// dropped. Declare it before the [`ApiProcess`] that uses it, so the process stops first.
pub struct DataFolder {
    path: PathBuf,
}

impl DataFolder {
    pub fn new(purpose: &str) -> Result<Self, String> {
        // Short, because the cluster's socket path inside it must stay under 108 bytes.
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("ledger-bench-{purpose}-{}", &id[..12]));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataFolder {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {error}", self.path.display());
        }
    }
}

/// How every API process of a run is started.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub binary: PathBuf,
    pub pool_size: usize,
    /// Arguments appended as given (`--api-argument`).
    pub extra_arguments: Vec<String>,
    /// How often the API's expiry worker sweeps, as the API reads its arguments (and
    /// environment, which it inherits), for the expiry scenario's report.
    pub expiry_interval_ms: u64,
}

impl ApiOptions {
    /// The binary given, or the `ledger-api` beside the bench's own executable; an error that
    /// says how to build it when it is missing.
    pub fn new(
        binary: Option<PathBuf>,
        pool_size: usize,
        extra_arguments: Vec<String>,
    ) -> Result<Self, String> {
        let binary = match binary {
            Some(binary) => binary,
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find the bench's own executable: {e}"))?
                .with_file_name(API_BINARY_NAME),
        };
        if !binary.is_file() {
            return Err(format!(
                "the API binary {} does not exist: build it with `cargo build --release -p \
                 ledger-api` (into the same target folder as the bench), or pass --api-binary",
                binary.display()
            ));
        }
        let mut options = Self {
            binary,
            pool_size,
            extra_arguments,
            expiry_interval_ms: 0,
        };
        // The API's own parser, on the arguments it will get: a mistyped `--api-argument`
        // fails here, before any process starts, and the report knows the settings in force.
        let program = std::iter::once(OsString::from(API_BINARY_NAME));
        let arguments = options.arguments(Path::new(ARGUMENT_CHECK_DATA_DIR));
        let config = ledger_api::config::Config::try_parse_from(program.chain(arguments))
            .map_err(|e| format!("the API's arguments: {e}"))?;
        options.expiry_interval_ms = config
            .expiry_interval_ms
            .max(ledger_api::startup::EXPIRY_INTERVAL_MS_MIN);
        Ok(options)
    }

    /// The arguments an API process on `data_dir` gets.
    fn arguments(&self, data_dir: &Path) -> Vec<OsString> {
        let mut arguments: Vec<OsString> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.into(),
            "--pool-size".into(),
            self.pool_size.to_string().into(),
        ];
        // The bench measures the ledger, not the abuse limits: all its load comes from one
        // address, which the per-address rate limit would cap. `--api-argument` may set one.
        if !self
            .extra_arguments
            .iter()
            .any(|a| a.starts_with("--rate-limit-per-second"))
        {
            arguments.extend(["--rate-limit-per-second".into(), "0".into()]);
        }
        arguments.extend(self.extra_arguments.iter().map(OsString::from));
        arguments
    }
}

/// A running API process. Dropped without [`ApiProcess::stop`], it is stopped all the same.
pub struct ApiProcess {
    /// `None` once the process has been stopped and reaped.
    child: Option<Child>,
    pub endpoint: Arc<Endpoint>,
    data_dir: PathBuf,
    expiry_interval_ms: u64,
}

impl ApiProcess {
    /// Start the API on `data_dir` (created, with its cluster, on first start) and wait until
    /// it listens.
    pub async fn start(options: &ApiOptions, data_dir: &Path) -> Result<Self, String> {
        // Until the API says where it listens; known before the process starts, so that
        // nothing can fail between starting it and owning it in the guard.
        let unknown_endpoint = Arc::new(Endpoint::parse(UNKNOWN_ENDPOINT_URL)?);
        let log_path = data_dir.join(API_LOG_FILE);
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut child = Command::new(&options.binary)
            .args(options.arguments(data_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own process group, so a Ctrl-C at the terminal reaches the bench only, which
            // then stops the API in order.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", options.binary.display()))?;
        let stdout = child.stdout.take().expect("standard output is piped");
        let mut process = Self {
            child: Some(child),
            endpoint: unknown_endpoint,
            data_dir: data_dir.to_owned(),
            expiry_interval_ms: options.expiry_interval_ms,
        };
        let url = match wait_for_listening(stdout).await {
            Ok(url) => url,
            Err(error) => return Err(process.start_failure(&error)),
        };
        process.endpoint = Arc::new(Endpoint::parse(&url)?);
        watch_for_bench_exit(process.pid(), data_dir)?;
        Ok(process)
    }

    /// How often its expiry worker sweeps.
    pub fn expiry_interval_ms(&self) -> u64 {
        self.expiry_interval_ms
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The API and its cluster's postmaster, for CPU accounting.
    pub fn processes(&self) -> Processes {
        Processes {
            api_pid: Some(self.pid()),
            postmaster_pid: postmaster_pid(&self.data_dir),
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(mut self) -> Result<(), String> {
        let mut child = self.child.take().expect("a running process");
        signal(child.id(), Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(STOP_TIMEOUT_SECONDS);
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return exit_result(status),
                Ok(None) => tokio::time::sleep(Duration::from_millis(EXIT_POLL_INTERVAL_MS)).await,
                Err(error) => return Err(format!("waiting for the API: {error}")),
            }
        }
        kill_and_reap(child, &self.data_dir);
        Err(format!(
            "the API did not exit within {STOP_TIMEOUT_SECONDS} s of SIGTERM and was killed"
        ))
    }

    /// The error for an API that did not come up, with the end of its log; the process and
    /// its cluster are stopped.
    fn start_failure(&mut self, error: &str) -> String {
        if let Some(child) = self.child.take() {
            stop_blocking(child, &self.data_dir);
        }
        let log = std::fs::read_to_string(self.data_dir.join(API_LOG_FILE)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("the API did not start: {error}\n--- end of its log ---\n{tail}")
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            eprintln!("stopping the API (pid {})...", child.id());
            stop_blocking(child, &self.data_dir);
        }
    }
}

/// Read the API's standard output until its listening line; the rest is read and dropped on
/// a thread of its own, so the pipe never fills.
async fn wait_for_listening(stdout: std::process::ChildStdout) -> Result<String, String> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                if let Some(sender) = sender.take() {
                    let _ = sender.send(url.trim().to_owned());
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(START_TIMEOUT_SECONDS), receiver).await {
        Ok(Ok(url)) => Ok(url),
        Ok(Err(_)) => Err("it exited before listening".to_owned()),
        Err(_) => Err(format!("not listening after {START_TIMEOUT_SECONDS} s")),
    }
}

/// The first line of the cluster's `postmaster.pid`, while the cluster runs.
fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("pgdata").join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // A process that has already exited cannot be signalled; that is what was wanted.
        let _ = kill_process(pid, signal);
    }
}

fn exit_result(status: ExitStatus) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("the API exited with {status}"))
    }
}

/// For drops and failed starts, where nothing can be awaited: SIGTERM, wait, and kill if the
/// API does not exit in time.
fn stop_blocking(mut child: Child, data_dir: &Path) {
    signal(child.id(), Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(STOP_TIMEOUT_SECONDS);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(EXIT_POLL_INTERVAL_MS));
    }
    kill_and_reap(child, data_dir);
}

/// Kill the API outright; its cluster then still runs, so stop that too (SIGQUIT is
/// PostgreSQL's immediate shutdown).
fn kill_and_reap(mut child: Child, data_dir: &Path) {
    let _ = child.kill();
    let _ = child.wait();
    if let Some(postmaster) = postmaster_pid(data_dir) {
        signal(postmaster, Signal::QUIT);
        let deadline = Instant::now() + Duration::from_secs(STOP_TIMEOUT_SECONDS);
        while Path::new(&format!("/proc/{postmaster}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(EXIT_POLL_INTERVAL_MS));
        }
    }
}

/// The watcher's script, with the bench's pid, the API's pid and the data folder as `$1`, `$2`
/// and `$3`. It ends as soon as the API has exited while the bench lives (a normal stop, or a
/// restart on the same folder); if the bench disappears first, it stops the API (checking by
/// its command line that the pid is still that API), kills what is left of the cluster, and
/// removes the folder. It checks once a second.
const WATCHER_SCRIPT: &str = r#"
while [ -d "/proc/$1" ] && [ -d "/proc/$2" ]; do sleep 1; done
[ -d "/proc/$1" ] && exit 0
if tr '\0' '\n' < "/proc/$2/cmdline" 2>/dev/null | grep -qxF -- "$3"; then
  kill -TERM "$2"
  n=0; while [ -d "/proc/$2" ] && [ $n -lt 60 ]; do sleep 1; n=$((n+1)); done
  [ -d "/proc/$2" ] && kill -KILL "$2"
fi
postmaster=$(head -n 1 "$3/pgdata/postmaster.pid" 2>/dev/null)
[ -n "$postmaster" ] && kill -QUIT "$postmaster" 2>/dev/null && sleep 2
rm -rf "$3"
"#;

/// Start the detached watcher for an API the bench might not live to stop.
fn watch_for_bench_exit(api_pid: u32, data_dir: &Path) -> Result<(), String> {
    Command::new("setsid")
        .args(["-f", "sh", "-c", WATCHER_SCRIPT, "ledger-bench-watcher"])
        .arg(std::process::id().to_string())
        .arg(api_pid.to_string())
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // `setsid -f` forks the watcher and returns at once; waiting reaps it.
        .status()
        .map_err(|e| format!("starting the watcher (setsid): {e}"))
        .and_then(|status| {
            status
                .success()
                .then_some(())
                .ok_or_else(|| format!("starting the watcher (setsid): {status}"))
        })
}
