//! Connections: settings with explicit timeouts and the pool every PostgreSQL user of the
//! ledger shares the shape of (event store, snapshots, read models, idempotency keys).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::time::Duration;
use tokio_postgres::NoTls;

/// How long to wait for a new connection before calling the database unreachable. Local and
/// same-zone databases answer in milliseconds; five seconds covers a busy server without making
/// a health check or a request hang.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// How long a caller waits for a free pooled connection before the request fails fast with a
/// clear "pool exhausted" error instead of queueing without bound.
pub const POOL_WAIT_TIMEOUT_MS: u64 = 5_000;

/// Default connections per pool: enough to keep two cores busy with appends and reads waiting
/// on commits, small enough that several processes fit under PostgreSQL's default of 100.
pub const POOL_SIZE_DEFAULT: usize = 16;

/// Why the database could not be used. Each variant keeps the error underneath as its source.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The connection string does not parse: fix the configuration.
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[source] tokio_postgres::Error),
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
    /// A schema migration failed; the transaction rolled back and nothing was changed.
    #[error("database migration failed: {context}: {source}")]
    Migration {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl DatabaseError {
    /// A failed statement, named by what it was for.
    pub fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Query { context, source }
    }
}

/// A connection pool plus the settings it was built from (the event store's listener opens a
/// dedicated connection of its own with the same settings).
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    pool: Pool,
}

impl Database {
    pub fn from_url(url: &str, pool_size: usize) -> Result<Self, DatabaseError> {
        let config: tokio_postgres::Config = url.parse().map_err(DatabaseError::InvalidUrl)?;
        Self::from_config(config, pool_size)
    }

    pub fn from_config(
        mut config: tokio_postgres::Config,
        pool_size: usize,
    ) -> Result<Self, DatabaseError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        }
        if config.get_application_name().is_none() {
            config.application_name("inventory-ledger");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
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
        Ok(Self { config, pool })
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
        Self::from_config(config, pool_size)
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
        client
            .simple_query("SELECT 1")
            .await
            .map_err(DatabaseError::query("ping"))?;
        Ok(())
    }
}
