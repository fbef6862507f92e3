//! A real PostgreSQL for tests, never a mock.
//!
//! With `DATABASE_URL` set, tests create their databases on that server (and drop them after).
//! Without it, the first test of the process starts a private cluster from the installed server
//! binaries in a temporary folder (run as `postgres` when we are root), on a Unix socket only;
//! a detached watcher stops it and deletes the folder when the test process exits.

use ledger_postgres::cluster::{ClusterOptions, PrivateCluster};
use ledger_postgres::Database;
use ledger_postgres::PostgresStore;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

/// Connections the private test cluster accepts. Tests run in parallel threads, each with its
/// own pool of up to [`TEST_POOL_SIZE`] plus a listener connection.
const TEST_CLUSTER_CONNECTIONS_MAX: u32 = 300;

/// Pool size for a test database: room for the concurrency tests' parallel appenders.
pub const TEST_POOL_SIZE: usize = 24;

enum Server {
    Shared(Box<tokio_postgres::Config>),
    Private(PrivateCluster),
}

impl Server {
    fn admin_config(&self) -> tokio_postgres::Config {
        match self {
            Self::Shared(config) => config.as_ref().clone(),
            Self::Private(cluster) => cluster.connection_config("postgres"),
        }
    }

    fn config_for(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = self.admin_config();
        config.dbname(dbname);
        config
    }
}

static SERVER: OnceCell<Server> = OnceCell::const_new();
static DATABASE_COUNTER: AtomicU64 = AtomicU64::new(0);

async fn server() -> &'static Server {
    SERVER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                let config = url
                    .parse()
                    .unwrap_or_else(|e| panic!("DATABASE_URL is not a valid PostgreSQL URL: {e}"));
                return Server::Shared(Box::new(config));
            }
            let folder = std::env::temp_dir().join(format!(
                "ledger-test-pg-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            let options = ClusterOptions {
                folder,
                durable: false,
                max_connections: TEST_CLUSTER_CONNECTIONS_MAX,
            };
            // The cluster is started from a plain thread with its own runtime: the test that
            // happens to start it may end (and its runtime with it) long before the others.
            let cluster = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for starting the test cluster");
                runtime.block_on(PrivateCluster::start(&options))
            })
            .join()
            .expect("the cluster start thread panicked")
            .unwrap_or_else(|e| panic!("cannot start a private PostgreSQL for the tests: {e}"));
            cluster
                .remove_when_process_exits()
                .unwrap_or_else(|e| panic!("cannot arrange the test cluster's removal: {e}"));
            Server::Private(cluster)
        })
        .await
}

async fn admin_execute(config: &tokio_postgres::Config, sql: &str) {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = driver.await;
}

/// A database of its own for one test. Dropped with the test on a shared server; on the private
/// cluster it goes away with the cluster.
pub struct TestDatabase {
    pub name: String,
    pub config: tokio_postgres::Config,
    shared_admin: Option<tokio_postgres::Config>,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = server().await;
        let name = format!(
            "ledger_test_{}_{}_{}",
            std::process::id(),
            DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        admin_execute(
            &server.admin_config(),
            &format!("CREATE DATABASE {name} TEMPLATE template0"),
        )
        .await;
        Self {
            config: server.config_for(&name),
            shared_admin: match server {
                Server::Shared(_) => Some(server.admin_config()),
                Server::Private(_) => None,
            },
            name,
        }
    }

    /// A database of its own on `cluster` (a private cluster the test started itself, e.g. to
    /// restore a dump into), named `name`; it goes away with the cluster.
    pub async fn create_on(cluster: &PrivateCluster, name: &str) -> Self {
        admin_execute(
            &cluster.connection_config("postgres"),
            &format!("CREATE DATABASE {name} TEMPLATE template0"),
        )
        .await;
        Self {
            config: cluster.connection_config(name),
            shared_admin: None,
            name: name.to_owned(),
        }
    }

    pub fn database(&self, pool_size: usize) -> Database {
        Database::from_config(self.config.clone(), pool_size).expect("a valid pool configuration")
    }

    /// Where this database's server is, for a [`crate::proxy::TcpProxy`] in front of it.
    pub fn upstream(&self) -> crate::proxy::Upstream {
        use tokio_postgres::config::Host;
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        match self.config.get_hosts().first() {
            Some(Host::Unix(path)) => {
                crate::proxy::Upstream::Unix(path.join(format!(".s.PGSQL.{port}")))
            }
            Some(Host::Tcp(host)) => {
                let address = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .ok()
                    .and_then(|mut addresses| addresses.next())
                    .unwrap_or_else(|| panic!("cannot resolve the test server {host}:{port}"));
                crate::proxy::Upstream::Tcp(address)
            }
            None => panic!("the test database's configuration names no host"),
        }
    }

    /// This database's connection settings, but through `proxy` (plain TCP on loopback).
    pub fn config_through(&self, proxy: &crate::proxy::TcpProxy) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(proxy.address().port())
            .user(self.config.get_user().unwrap_or("postgres"))
            .dbname(&self.name);
        if let Some(password) = self.config.get_password() {
            config.password(password);
        }
        config
    }

    /// [`TestDatabase::url`], but through `proxy`.
    pub fn url_through(&self, proxy: &crate::proxy::TcpProxy) -> String {
        let user = self.config.get_user().unwrap_or("postgres");
        let password = self
            .config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!(
            "postgresql://{user}{password}@127.0.0.1:{}/{}",
            proxy.address().port(),
            self.name
        )
    }

    /// A `postgresql://` URL for this database, for binaries under test that read `DATABASE_URL`.
    pub fn url(&self) -> String {
        use tokio_postgres::config::Host;
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string().replace('/', "%2F"),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        format!("postgresql://{user}@{host}:{port}/{}", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(admin) = self.shared_admin.take() else {
            return;
        };
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, where blocking on async work is not allowed:
        // do it from a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping a test database");
            runtime.block_on(admin_execute(&admin, &sql));
        })
        .join();
    }
}

/// A Postgres event store on a fresh database, with the database guard that keeps it alive.
pub async fn postgres_store() -> (PostgresStore, TestDatabase) {
    let test_database = TestDatabase::create().await;
    let store = PostgresStore::open(test_database.database(TEST_POOL_SIZE))
        .await
        .unwrap_or_else(|e| panic!("cannot open the Postgres event store: {e}"));
    (store, test_database)
}
