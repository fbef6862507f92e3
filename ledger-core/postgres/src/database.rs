//! Connections: settings with explicit timeouts and the pool every PostgreSQL user of the
//! ledger shares the shape of (event store, snapshots, read models, idempotency keys), over TLS
//! as the connection string says ([`crate::tls`]).

use crate::tls::{TlsConnector, TlsSettings, TlsStream};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::time::Duration;

/// How long to wait for a new connection before calling the database unreachable. Local and
/// same-zone databases answer in milliseconds; five seconds covers a busy server without making
/// a health check or a request hang.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// How long a caller waits for a free pooled connection before the request fails fast with a
/// clear "pool exhausted" error instead of queueing without bound.
pub const POOL_WAIT_TIMEOUT_MS: u64 = 5_000;

/// TCP keepalive on every connection: a peer that vanished (a host gone, a dropped NAT entry)
/// is noticed within about idle + interval × retries instead of the kernel's two hours.
pub const KEEPALIVE_IDLE_MS: u64 = 30_000;
pub const KEEPALIVE_INTERVAL_MS: u64 = 10_000;
pub const KEEPALIVE_RETRIES: u32 = 3;

/// Unacknowledged data on a connection for this long closes it (Linux `TCP_USER_TIMEOUT`).
pub const TCP_USER_TIMEOUT_MS: u64 = 30_000;

/// Default statement timeout of the pools that serve requests (appends, loads, read-model
/// queries): a statement that runs longer is cancelled by the server, and an answer that does
/// not arrive within it plus [`DEADLINE_SLACK_MS`] (a stalled link) fails on the client side.
pub const STATEMENT_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// How much longer than the statement timeout the client waits before it gives up on a
/// connection itself: the server's own cancellation, when it can still answer, comes first.
pub const DEADLINE_SLACK_MS: u64 = 1_000;

/// Default connections per pool: enough to keep two cores busy with appends and reads waiting
/// on commits, small enough that several processes fit under PostgreSQL's default of 100.
pub const POOL_SIZE_DEFAULT: usize = 16;

/// Why the database could not be used. Each variant keeps the error underneath as its source.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The connection string does not parse: fix the configuration.
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The TLS settings (`sslmode`, `sslrootcert`) cannot be used: fix the configuration.
    #[error("invalid database TLS settings: {0}")]
    InvalidTls(String),
    /// The pool could not be built from the settings: fix the configuration.
    #[error("cannot build the connection pool: {0}")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// No connection could be had (server down, refused, pool exhausted): retry later.
    #[error("database unreachable: {0}")]
    Unreachable(#[source] deadpool_postgres::PoolError),
    /// A statement failed on a connection that works; `context` says which.
    #[error("database query failed ({context}): {source}")]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement did not answer within the pool's deadline (a runaway statement or a stalled
    /// connection); the connection was discarded.
    #[error(transparent)]
    Deadline(#[from] DeadlineExceeded),
    /// A schema migration failed; the transaction rolled back and nothing was changed.
    #[error("database migration failed: {context}: {source}")]
    Migration {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A migration's backfill found data it cannot convert (`context` says which migration
    /// and where); the transaction rolled back and nothing was changed. An operator has to
    /// look at the data named.
    #[error("database migration failed: {context}: {message}")]
    Backfill { context: String, message: String },
}

impl DatabaseError {
    /// A failed statement, named by what it was for.
    pub fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Query { context, source }
    }
}

/// A connection outside the pool ([`Database::connect_dedicated`]).
pub type DedicatedConnection = tokio_postgres::Connection<tokio_postgres::Socket, TlsStream>;

/// A connection pool plus the settings it was built from (the event store's listener opens a
/// dedicated connection of its own with the same settings).
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    /// How every connection of this database, pooled or dedicated, negotiates TLS and checks
    /// the server's certificate; built once from the connection string and shared by the
    /// pools derived from this one.
    tls: TlsConnector,
    pool: Pool,
    /// How long an operation on one of this pool's connections may take before the client
    /// gives up on it ([`Database::within_deadline`]); `None`: no deadline.
    deadline: Option<Duration>,
}

/// An operation on a connection outlived its deadline; the connection was taken out of the
/// pool.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the database did not answer within {deadline_ms} ms")]
pub struct DeadlineExceeded {
    pub deadline_ms: u64,
}

impl Database {
    /// A pool on the database `url` names, with TLS as its `sslmode` and `sslrootcert` say.
    pub fn from_url(url: &str, pool_size: usize) -> Result<Self, DatabaseError> {
        let (rest, tls) = TlsSettings::split_url(url).map_err(DatabaseError::InvalidTls)?;
        let config: tokio_postgres::Config = rest.parse().map_err(DatabaseError::InvalidUrl)?;
        Self::from_config_with_tls(config, &tls, pool_size)
    }

    /// A pool with `config`, encrypting as its `sslmode` says but checking no certificate
    /// (tokio-postgres' settings know no more; use [`Database::from_url`] for that).
    pub fn from_config(
        config: tokio_postgres::Config,
        pool_size: usize,
    ) -> Result<Self, DatabaseError> {
        let tls = TlsSettings::from_config(&config);
        Self::from_config_with_tls(config, &tls, pool_size)
    }

    pub fn from_config_with_tls(
        mut config: tokio_postgres::Config,
        tls: &TlsSettings,
        pool_size: usize,
    ) -> Result<Self, DatabaseError> {
        let connector = tls.apply(&mut config).map_err(DatabaseError::InvalidTls)?;
        Self::build(config, connector, pool_size)
    }

    fn build(
        mut config: tokio_postgres::Config,
        tls: TlsConnector,
        pool_size: usize,
    ) -> Result<Self, DatabaseError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        }
        if config.get_application_name().is_none() {
            config.application_name("inventory-ledger");
        }
        config.keepalives(true);
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            // tokio-postgres' default (the kernel's two hours) is far too long to notice a
            // peer that vanished; an explicit setting in the URL is kept.
            config.keepalives_idle(Duration::from_millis(KEEPALIVE_IDLE_MS));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_millis(KEEPALIVE_INTERVAL_MS));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_millis(TCP_USER_TIMEOUT_MS));
        }
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(Duration::from_millis(POOL_WAIT_TIMEOUT_MS)),
                create: Some(Duration::from_millis(CONNECT_TIMEOUT_MS)),
                recycle: Some(Duration::from_millis(CONNECT_TIMEOUT_MS)),
            })
            .build()
            .map_err(DatabaseError::Pool)?;
        Ok(Self {
            config,
            tls,
            pool,
            deadline: None,
        })
    }

    /// A connection of its own, outside the pool, with `config` (this database's settings,
    /// perhaps changed) and this database's TLS: for a listener or a lock holder that keeps
    /// its session. The caller drives the returned connection.
    pub async fn connect_dedicated(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, DedicatedConnection), tokio_postgres::Error> {
        config.connect(self.tls.clone()).await
    }

    /// Another pool on the same database whose statements time out after `timeout` on the
    /// server (`statement_timeout`) and whose operations ([`Database::within_deadline`]) fail
    /// on the client after `timeout` plus [`DEADLINE_SLACK_MS`], so that neither a runaway
    /// statement nor a stalled connection holds a caller for long. More `settings` may be
    /// given for the sessions (see [`Database::with_session_settings`]).
    pub fn with_statement_timeout(
        &self,
        timeout: Duration,
        settings: &[(&str, &str)],
        pool_size: usize,
    ) -> Result<Self, DatabaseError> {
        let millis = timeout.as_millis().to_string();
        let mut all: Vec<(&str, &str)> = vec![("statement_timeout", &millis)];
        all.extend_from_slice(settings);
        let mut database = self.with_session_settings(&all, pool_size)?;
        database.deadline = Some(timeout + Duration::from_millis(DEADLINE_SLACK_MS));
        Ok(database)
    }

    /// The client-side deadline of this pool's operations, if it has one.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Run `operation` within this pool's deadline (unbounded without one).
    pub async fn within_deadline<F: std::future::Future>(
        &self,
        operation: F,
    ) -> Result<F::Output, DeadlineExceeded> {
        match self.deadline {
            None => Ok(operation.await),
            Some(deadline) => tokio::time::timeout(deadline, operation)
                .await
                .map_err(|_| DeadlineExceeded {
                    deadline_ms: deadline.as_millis() as u64,
                }),
        }
    }

    /// Check out a connection and run `operation` on it, both within this pool's deadline; a
    /// connection whose operation overran is discarded (it may be stuck on a dead link).
    pub async fn with_client<T, E>(
        &self,
        operation: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DatabaseError>,
    {
        let mut slot = None;
        let outcome = self
            .within_deadline(async {
                let client = slot.insert(
                    self.pool
                        .get()
                        .await
                        .map_err(|e| E::from(DatabaseError::Unreachable(e)))?,
                );
                operation(client).await
            })
            .await;
        match outcome {
            Ok(result) => result,
            Err(exceeded) => {
                if let Some(client) = slot.take() {
                    Self::discard(client);
                }
                Err(DatabaseError::Deadline(exceeded).into())
            }
        }
    }

    /// Take a connection out of the pool for good: its last operation overran its deadline,
    /// so it may be stuck on a dead link, and handing it out again would stall the next caller.
    pub fn discard(client: deadpool_postgres::Object) {
        drop(deadpool_postgres::Object::take(client));
    }

    /// Another pool on the same database whose sessions start with `settings` (for example
    /// commits that do not wait for the disk), of `pool_size` connections: a separate pool,
    /// so that its users and this pool's never wait for each other's connections.
    pub fn with_session_settings(
        &self,
        settings: &[(&str, &str)],
        pool_size: usize,
    ) -> Result<Self, DatabaseError> {
        let mut config = self.config.clone();
        let mut options = config.get_options().unwrap_or_default().to_owned();
        for (name, value) in settings {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c {name}={value}"));
        }
        config.options(&options);
        Self::build(config, self.tls.clone(), pool_size)
    }

    /// A pooled connection, or [`DatabaseError::Unreachable`].
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DatabaseError> {
        self.pool.get().await.map_err(DatabaseError::Unreachable)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Check that the database answers.
    pub async fn ping(&self) -> Result<(), DatabaseError> {
        let client = self.pool.get().await.map_err(DatabaseError::Unreachable)?;
        let outcome = self.within_deadline(client.simple_query("SELECT 1")).await;
        match outcome {
            Ok(answer) => {
                answer.map_err(DatabaseError::query("ping"))?;
                Ok(())
            }
            Err(exceeded) => {
                Self::discard(client);
                Err(exceeded.into())
            }
        }
    }
}

/// How the event store's port sees a database failure: a deadline or an exhausted pool is a
/// timeout, an unreachable server or a lost connection is unavailability, the rest a backend
/// failure.
impl From<DatabaseError> for ledger_application::StoreError {
    fn from(error: DatabaseError) -> Self {
        use ledger_application::StoreError;
        match error {
            DatabaseError::Deadline(exceeded) => StoreError::Timeout {
                timeout_ms: exceeded.deadline_ms,
            },
            DatabaseError::Unreachable(deadpool_postgres::PoolError::Timeout(_)) => {
                StoreError::Timeout {
                    timeout_ms: POOL_WAIT_TIMEOUT_MS,
                }
            }
            DatabaseError::Unreachable(error) => StoreError::unavailable(error),
            DatabaseError::Query { source, .. } if source.is_closed() => {
                StoreError::unavailable(source)
            }
            other => StoreError::backend("database", other),
        }
    }
}
