//! A private PostgreSQL cluster under a folder of ours, started from the server binaries
//! installed on the machine: the embedded default of the API and the throwaway cluster of the
//! tests. It listens on a Unix socket inside the folder only (no TCP port), trusts local
//! connections, and runs as the `postgres` user when we are root (PostgreSQL refuses root).
//!
//! Layout of the folder: `pgdata/` (the cluster), `socket/` (the Unix socket), `postgres.log`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

/// Where Debian and Ubuntu install server binaries, one folder per major version.
const DEBIAN_SERVER_BINARIES: &str = "/usr/lib/postgresql";

/// The database superuser created by `initdb`; the same name whoever runs the cluster.
pub const SUPERUSER: &str = "postgres";

/// How long `pg_ctl` may wait for the server to start or stop. A first start after a crash may
/// replay WAL; a minute covers that on a small machine.
const PG_CTL_WAIT_SECONDS: u32 = 60;

/// Unix socket paths are limited to 107 bytes (`sun_path`); the socket file is
/// `<folder>/socket/.s.PGSQL.5432`, so the folder must leave room for that suffix.
const SOCKET_PATH_BYTES_MAX: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
         {DEBIAN_SERVER_BINARIES}/*/bin. Install the server package (Debian/Ubuntu: \
         `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; macOS: \
         `brew install postgresql`), set LEDGER_PG_BIN to the folder holding them, or point \
         DATABASE_URL at an existing server"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `postgres` \
         user to run it as; create one (`useradd --system --home-dir /var/lib/postgresql postgres`) \
         or run as an ordinary user"
    )]
    NoPostgresUser,
    #[error("{path}: {message}")]
    Folder { path: PathBuf, message: String },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The folder that holds the cluster; created if missing, reused if it holds one already.
    pub folder: PathBuf,
    /// Durable clusters keep PostgreSQL's crash safety (fsync, full page writes). Throwaway
    /// test clusters turn it off: a test's data need not survive a power cut.
    pub durable: bool,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct PrivateCluster {
    folder: PathBuf,
    binaries: PathBuf,
    /// `Some("postgres")` when we are root and must run the server binaries as that user.
    run_as: Option<&'static str>,
}

impl PrivateCluster {
    /// The folder holding `initdb` and `pg_ctl`: `LEDGER_PG_BIN`, else PATH, else the newest
    /// major version under `/usr/lib/postgresql/*/bin`.
    pub fn find_binaries() -> Result<PathBuf, ClusterError> {
        let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        if let Some(dir) = std::env::var_os("LEDGER_PG_BIN").map(PathBuf::from) {
            return if has_tools(&dir) {
                Ok(dir)
            } else {
                Err(ClusterError::BinariesNotFound)
            };
        }
        if let Some(path) = std::env::var_os("PATH") {
            if let Some(dir) = std::env::split_paths(&path).find(|dir| has_tools(dir)) {
                return Ok(dir);
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_SERVER_BINARIES)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                has_tools(&bin).then_some((major, bin))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, bin)| bin)
            .ok_or(ClusterError::BinariesNotFound)
    }

    /// Create the cluster if the folder holds none, and start it unless it already runs.
    pub async fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        let binaries = Self::find_binaries()?;
        let run_as = if running_as_root() {
            if !user_exists(SUPERUSER).await {
                return Err(ClusterError::NoPostgresUser);
            }
            Some(SUPERUSER)
        } else {
            None
        };
        std::fs::create_dir_all(&options.folder).map_err(|e| folder_error(&options.folder, e))?;
        let folder = options
            .folder
            .canonicalize()
            .map_err(|e| folder_error(&options.folder, e))?;
        if folder.to_string_lossy().contains('\'') {
            return Err(ClusterError::Folder {
                path: folder,
                message: "the folder's path must not contain a single quote".into(),
            });
        }
        let cluster = Self {
            folder,
            binaries,
            run_as,
        };
        let socket_file = cluster.socket_dir().join(".s.PGSQL.5432");
        if socket_file.as_os_str().len() > SOCKET_PATH_BYTES_MAX {
            return Err(ClusterError::Folder {
                path: cluster.folder.clone(),
                message: format!(
                    "the socket path {} is longer than the {SOCKET_PATH_BYTES_MAX} bytes Unix \
                     sockets allow; choose a shorter data folder",
                    socket_file.display()
                ),
            });
        }
        std::fs::create_dir_all(cluster.socket_dir())
            .map_err(|e| folder_error(&cluster.socket_dir(), e))?;
        if let Some(user) = run_as {
            cluster
                .run(
                    "chown",
                    &["-R", &format!("{user}:"), &path_arg(&cluster.folder)],
                    false,
                )
                .await?;
        }
        if !cluster.data_dir().join("PG_VERSION").is_file() {
            let data_dir = path_arg(&cluster.data_dir());
            let mut args = vec![
                "-D",
                &data_dir,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ];
            if !options.durable {
                args.push("--no-sync");
            }
            cluster.run_tool("initdb", &args).await?;
        }
        if !cluster.is_running().await {
            let settings = cluster.server_settings(options);
            let data_dir = path_arg(&cluster.data_dir());
            let log = path_arg(&cluster.folder.join("postgres.log"));
            let wait = PG_CTL_WAIT_SECONDS.to_string();
            cluster
                .run_tool(
                    "pg_ctl",
                    &[
                        "-D", &data_dir, "-l", &log, "-w", "-t", &wait, "-o", &settings, "start",
                    ],
                )
                .await?;
        }
        Ok(cluster)
    }

    fn server_settings(&self, options: &ClusterOptions) -> String {
        let mut settings = format!(
            "-c listen_addresses='' -k '{}' -c unix_socket_permissions=0700 -c max_connections={}",
            self.socket_dir().display(),
            options.max_connections
        );
        if !options.durable {
            settings.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        settings
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    pub fn data_dir(&self) -> PathBuf {
        self.folder.join("pgdata")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.folder.join("socket")
    }

    /// Connection settings for `dbname` as the superuser over the cluster's socket.
    pub fn connection_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.socket_dir())
            .port(5432)
            .user(SUPERUSER)
            .dbname(dbname);
        config
    }

    pub async fn is_running(&self) -> bool {
        let data_dir = path_arg(&self.data_dir());
        self.run_tool("pg_ctl", &["-D", &data_dir, "status"])
            .await
            .is_ok()
    }

    /// Stop the server, letting running transactions finish cleanly first.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let data_dir = path_arg(&self.data_dir());
        let wait = PG_CTL_WAIT_SECONDS.to_string();
        self.run_tool(
            "pg_ctl",
            &["-D", &data_dir, "-w", "-t", &wait, "-m", "fast", "stop"],
        )
        .await
        .map(drop)
    }

    /// For throwaway clusters: a detached watcher stops the server and deletes the folder once
    /// the current process has exited, however it exits. It checks once a second.
    pub fn remove_when_process_exits(&self) -> Result<(), ClusterError> {
        let pg_ctl = self.binaries.join("pg_ctl");
        let as_user = self
            .run_as
            .map(|user| format!("runuser -u {user} -- "))
            .unwrap_or_default();
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             {as_user}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; \
             rm -rf '{folder}'",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            folder = self.folder.display(),
        );
        std::process::Command::new("setsid")
            .args(["-f", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| ClusterError::Command {
                command: "setsid sh".into(),
                output: e.to_string(),
            })
    }

    async fn run_tool(&self, tool: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let program = path_arg(&self.binaries.join(tool));
        self.run(&program, args, true).await
    }

    async fn run(
        &self,
        program: &str,
        args: &[&str],
        as_server_user: bool,
    ) -> Result<Output, ClusterError> {
        let mut command = match self.run_as.filter(|_| as_server_user) {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--", program]);
                command
            }
            None => Command::new(program),
        };
        command.args(args).stdin(std::process::Stdio::null());
        // Server tools must not inherit a working directory the server user cannot enter.
        command.current_dir(&self.folder);
        let described = format!("{program} {}", args.join(" "));
        let output = tokio::time::timeout(
            Duration::from_secs(u64::from(PG_CTL_WAIT_SECONDS) + 30),
            command.output(),
        )
        .await
        .map_err(|_| ClusterError::Command {
            command: described.clone(),
            output: "timed out".into(),
        })?
        .map_err(|e| ClusterError::Command {
            command: described.clone(),
            output: e.to_string(),
        })?;
        if output.status.success() {
            Ok(output)
        } else {
            let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            if text.is_empty() {
                text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            }
            let log = self.folder.join("postgres.log");
            if tool_is_pg_ctl(program) && log.is_file() {
                text.push_str(&format!(" (server log: {})", log.display()));
            }
            Err(ClusterError::Command {
                command: described,
                output: format!("{} {text}", output.status),
            })
        }
    }
}

fn tool_is_pg_ctl(program: &str) -> bool {
    program.ends_with("pg_ctl")
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn folder_error(path: &Path, error: std::io::Error) -> ClusterError {
    ClusterError::Folder {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

async fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}
