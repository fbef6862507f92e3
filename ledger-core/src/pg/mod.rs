//! PostgreSQL plumbing shared by the event store adapter, the read models and the embedded
//! default: connection settings with explicit timeouts, the pool, versioned migrations, and the
//! private cluster the API starts when nothing else is configured.

pub mod cluster;
pub mod migrate;

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

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("database unreachable: {0}")]
    Unreachable(String),
    #[error("database migration failed: {0}")]
    Migration(String),
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
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DatabaseError::InvalidUrl(e.to_string()))?;
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
            .map_err(|e| DatabaseError::Pool(e.to_string()))?;
        Ok(Self { config, pool })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Check that the database answers.
    pub async fn ping(&self) -> Result<(), DatabaseError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| DatabaseError::Unreachable(e.to_string()))?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| DatabaseError::Unreachable(e.to_string()))?;
        Ok(())
    }
}
