//! One active runner per projection across processes: a PostgreSQL session advisory lock held
//! on a dedicated connection for as long as the runner leads. When the holder dies its
//! connection closes and the server releases the lock; standbys retry on their own kept-open
//! connection and the first to ask takes over. A lease table would need clocks and renewals;
//! the session lock is released by the server exactly when the holder is gone.

use crate::error::ProjectionError;
use ledger_postgres::Database;
use tokio::task::JoinHandle;

/// The first half of every projection lock's key ("rmlk"), so these locks never collide with
/// the event store's per-stream locks (class 1) or the migration lock.
pub const LOCK_CLASS: i32 = 0x726d_6c6b;

/// Prefix of the application name a lock connection announces, so status pages can say which
/// process holds a projection (`pg_stat_activity.application_name`).
pub const APPLICATION_NAME_PREFIX: &str = "projector";

/// The second half of a projection's lock key: FNV-1a of its name, stable across builds.
pub fn lock_key(projection: &str) -> i32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = projection.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// A dedicated connection that asks for (and, once granted, holds) one projection's lock.
pub(crate) struct LockConnection {
    client: tokio_postgres::Client,
    driver: JoinHandle<()>,
    key: i32,
}

impl LockConnection {
    pub(crate) async fn connect(
        database: &Database,
        projection: &str,
    ) -> Result<Self, ProjectionError> {
        let mut config = database.config().clone();
        config.application_name(format!(
            "{APPLICATION_NAME_PREFIX} {projection} pid {}",
            std::process::id()
        ));
        let (client, connection) = database.connect_dedicated(&config).await?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "projection lock connection ended");
            }
        });
        Ok(Self {
            client,
            driver,
            key: lock_key(projection),
        })
    }

    /// Ask for the lock once; true when this connection holds it now.
    pub(crate) async fn try_lock(&self) -> Result<bool, ProjectionError> {
        let row = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LOCK_CLASS, &self.key],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Give the lock back so a standby takes over at once instead of at its next retry.
    pub(crate) async fn unlock(&self) -> Result<(), ProjectionError> {
        self.client
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&LOCK_CLASS, &self.key],
            )
            .await?;
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed() || self.driver.is_finished()
    }

    /// Completes when the connection ends, and with it the lock.
    pub(crate) async fn lost(&mut self) {
        if self.driver.is_finished() {
            return;
        }
        let _ = (&mut self.driver).await;
    }
}

impl Drop for LockConnection {
    fn drop(&mut self) {
        // Dropping the client ends the session, which releases the lock; the driver task then
        // finishes on its own. Aborting it as well makes sure nothing outlives the runner.
        self.driver.abort();
    }
}
