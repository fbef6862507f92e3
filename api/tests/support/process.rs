//! A real `ledger-api` process for tests that need the binary itself (signals, several
//! processes, resource limits): started on a database with extra flags, waited for until it
//! prints where it listens, and killed when dropped — printing the end of its log when the
//! test failed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Log lines of each process kept for the failure report.
const LOG_TAIL_LINES: usize = 200;

/// Start-up: connect, migrate, bind, print the listening line.
const START_DEADLINE_MS: u64 = 60_000;

/// A stop finishes in-flight requests and the workers' current batches.
const STOP_DEADLINE_MS: u64 = 60_000;

const POLL_INTERVAL_MS: u64 = 20;

const LISTENING_PREFIX: &str = "inventory ledger API listening on ";

pub struct ApiProcess {
    pub label: &'static str,
    pub base: String,
    child: Option<Child>,
    /// The last [`LOG_TAIL_LINES`] lines of the process's stderr, filled by a reader thread
    /// that also keeps the pipe drained so that logging never blocks the server.
    log_tail: Arc<Mutex<VecDeque<String>>>,
}

impl ApiProcess {
    /// Start the binary on `database_url`, listening on a free loopback port, with `extra`
    /// flags, and wait for the line that says where it listens.
    pub async fn start(label: &'static str, database_url: &str, extra: &[&str]) -> Self {
        Self::start_with_environment(label, database_url, extra, &[]).await
    }

    /// [`ApiProcess::start`] with `environment` variables set (a test hook's, for example).
    pub async fn start_with_environment(
        label: &'static str,
        database_url: &str,
        extra: &[&str],
        environment: &[(&str, &str)],
    ) -> Self {
        let database_url = database_url.to_owned();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let environment: Vec<(String, String)> = environment
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            Self::start_blocking(label, &database_url, &extra, &environment)
        })
        .await
        .unwrap_or_else(|error| panic!("api process {label} did not start: {error}"))
    }

    fn start_blocking(
        label: &'static str,
        database_url: &str,
        extra: &[String],
        environment: &[(String, String)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-api"));
        for variable in ledger_api::config::environment_variables() {
            command.env_remove(variable);
        }
        command.envs(environment.iter().map(|(name, value)| (name, value)));
        let child = command
            .args(["--database-url", database_url])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the api binary starts");
        let mut process = Self {
            label,
            base: String::new(),
            child: Some(child),
            log_tail: Arc::default(),
        };
        let child = process.child.as_mut().expect("just spawned");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let tail = process.log_tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                if tail.len() == LOG_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        // The reader goes on draining stdout after the listening line, when nobody receives.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });

        let deadline = Instant::now() + Duration::from_millis(START_DEADLINE_MS);
        let mut banner = Vec::new();
        process.base = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = receiver.recv_timeout(remaining).unwrap_or_else(|error| {
                panic!(
                    "api process {label} printed no listening line ({error}); stdout: {banner:?}"
                )
            });
            if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                break url.trim().to_owned();
            }
            banner.push(line);
        };
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The `host:port` it listens on.
    pub fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the process is running").id()
    }

    /// Its resident memory now, in bytes (from `/proc`).
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process's status is readable");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .expect("VmRSS is listed")
    }

    /// Send a signal by name (`TERM`, `INT`), as an orchestrator or a terminal does.
    pub fn send_signal(&self, signal: &str) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed: {status}");
    }

    /// Wait up to `within` for the process to exit; its status.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("the process is running");
            if let Some(status) = child.try_wait().expect("waiting on the process works") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// Wait for the process to exit after SIGTERM and require exit status 0.
    pub fn wait_for_clean_exit(&mut self) {
        let label = self.label;
        match self.wait_for_exit(Duration::from_millis(STOP_DEADLINE_MS)) {
            Some(status) => assert!(
                status.success(),
                "api process {label} exited with {status} after SIGTERM"
            ),
            None => panic!("api process {label} did not stop within {STOP_DEADLINE_MS} ms"),
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let tail = self.log_tail.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!(
                "--- last {} log lines of api process {} ---",
                tail.len(),
                self.label
            );
            for line in tail.iter() {
                eprintln!("{line}");
            }
        }
    }
}
