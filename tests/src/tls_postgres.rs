//! A real PostgreSQL that speaks TLS, for the tests of the adapter's `sslmode` handling.
//!
//! Each [`TlsCluster`] is a private throwaway cluster of its own (the shared test cluster
//! listens on a Unix socket only, where TLS does not apply): it listens on a free loopback
//! port with `ssl=on`, its certificates come from the compose topology's own generator
//! (`compose/generate-certificates.sh`, so that script is exercised too), and its `pg_hba.conf`
//! accepts TCP connections over TLS only (`hostssl`), as a production server should. A second
//! CA, which signed nothing this server presents, stands for a wrong root certificate.

use ledger_postgres::cluster::PrivateCluster;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The server user when we are root (PostgreSQL refuses to run as root).
const SERVER_USER: &str = "postgres";

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_WAIT_SECONDS: &str = "60";

/// Who may connect: the Unix socket (for the harness), and TCP over TLS only.
const PG_HBA: &str = "\
local   all  all                trust
hostssl all  all  127.0.0.1/32  trust
";

pub struct TlsCluster {
    folder: PathBuf,
    binaries: PathBuf,
    run_as: Option<&'static str>,
    port: u16,
}

impl TlsCluster {
    /// Create and start a cluster; panics with the reason when it cannot.
    pub fn start() -> Self {
        let binaries = PrivateCluster::find_binaries()
            .unwrap_or_else(|e| panic!("the TLS tests need PostgreSQL's server binaries: {e}"));
        let run_as = running_as_root().then_some(SERVER_USER);
        let folder = std::env::temp_dir().join(format!(
            "ledger-tls-pg-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(folder.join("socket")).expect("the cluster's folder");
        let port = free_port();
        let cluster = Self {
            folder,
            binaries,
            run_as,
            port,
        };
        if let Some(user) = run_as {
            run(Command::new("chown").args(["-R", user, &cluster.path("")]));
        }
        let server_uid = match run_as {
            Some(user) => text_of(Command::new("id").args(["-u", user])),
            None => text_of(Command::new("id").arg("-u")),
        };
        for set in ["certificates", "foreign"] {
            run(Command::new("sh")
                .arg(generator())
                .arg(cluster.folder.join(set))
                .env("POSTGRES_UID", &server_uid)
                .env("EVENTSTORE_UID", &server_uid));
        }
        cluster.run_tool(
            "initdb",
            &[
                "-D",
                &cluster.path("pgdata"),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let hba = cluster.folder.join("pg_hba.conf");
        std::fs::write(&hba, PG_HBA).expect("pg_hba.conf");
        let settings = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k '{socket}' -c hba_file='{hba}' \
             -c ssl=on -c ssl_cert_file='{certificate}' -c ssl_key_file='{key}' \
             -c fsync=off -c max_connections=50",
            socket = cluster.path("socket"),
            hba = hba.display(),
            certificate = cluster.path("certificates/postgres/server.crt"),
            key = cluster.path("certificates/postgres/server.key"),
        );
        cluster.run_tool(
            "pg_ctl",
            &[
                "-D",
                &cluster.path("pgdata"),
                "-l",
                &cluster.path("postgres.log"),
                "-w",
                "-t",
                PG_CTL_WAIT_SECONDS,
                "-o",
                &settings,
                "start",
            ],
        );
        cluster
    }

    /// A URL for database `postgres` as the superuser at `host` (a name or address that
    /// reaches this server's loopback port), with `parameters` as its query.
    pub fn url(&self, host: &str, parameters: &str) -> String {
        format!(
            "postgresql://postgres@{host}:{}/postgres?{parameters}",
            self.port
        )
    }

    /// The CA that signed this server's certificate.
    pub fn root_certificate(&self) -> PathBuf {
        self.folder.join("certificates/ca/ca.crt")
    }

    /// A CA that signed nothing this server presents.
    pub fn foreign_root_certificate(&self) -> PathBuf {
        self.folder.join("foreign/ca/ca.crt")
    }

    fn path(&self, relative: &str) -> String {
        self.folder.join(relative).display().to_string()
    }

    fn run_tool(&self, tool: &str, args: &[&str]) {
        let program = self.binaries.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command.args(args).current_dir(&self.folder);
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        if !output.status.success() {
            let log = std::fs::read_to_string(self.folder.join("postgres.log")).unwrap_or_default();
            panic!(
                "{tool} failed: {}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let program = self.binaries.join("pg_ctl");
        let data = self.path("pgdata");
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .current_dir(&self.folder)
            .output();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/generate-certificates.sh")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn running_as_root() -> bool {
    text_of(Command::new("id").arg("-u")) == "0"
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn text_of(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
