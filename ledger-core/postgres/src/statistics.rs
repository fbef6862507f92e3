//! Keeps the planner's statistics of the ledger's tables fresh while they grow.
//!
//! Why: every hot statement is planned once per pooled connection (prepared statements, and the
//! statements inside the append function, whose plans PL/pgSQL caches). A plan made while a
//! table was empty (a fresh database) assumes it is tiny and may scan it whole; it lives on in
//! the connection until the table's statistics change, which invalidates it. The server's own
//! autovacuum analyzes a table only after a tenth of it changed, and visits each database only
//! once per `autovacuum_naptime` (a minute by default), so a process started on an empty
//! database ran for minutes on plans made for empty tables, at a fraction of its speed.
//!
//! So the keeper looks every few seconds at how much each table changed since it was last
//! analyzed and runs `ANALYZE` itself when the change is large relative to the table (or the
//! table was never analyzed). One process at a time does it (an advisory lock), against any
//! PostgreSQL, embedded or shared.

use crate::database::Database;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the keeper looks at the tables. Short enough that a fresh database is analyzed
/// within seconds of filling up; each look is one small catalog query.
pub const STATISTICS_CHECK_INTERVAL_MS: u64 = 2_000;

/// A table is analyzed once this many rows changed since its last analysis, plus
/// [`ANALYZE_CHANGED_FRACTION`] of its rows: a fresh table is analyzed as soon as it holds a
/// thousand rows, a growing one each time it grew by about a third.
pub const ANALYZE_CHANGED_ROWS_MIN: i64 = 1_000;

/// See [`ANALYZE_CHANGED_ROWS_MIN`]. Plans change with the order of magnitude of a table, not
/// with its last few percent, so a third keeps them right while analyses (a sample of up to
/// 30,000 rows each) stay rare: about twenty on the way from empty to ten million rows. (The
/// event store's JSON payload columns are left out of analyses altogether, migration 0003: no
/// statement filters on them, and sampling them cost most of an analysis.)
pub const ANALYZE_CHANGED_FRACTION: f64 = 0.33;

/// The advisory lock (class "ledger-statistics", one key) that lets one process analyze at a
/// time; the others skip that round. A session lock: see [`analyze_stale`].
const STATISTICS_LOCK_KEY: i64 = 0x6c65_6467_6572_7374;

/// The ledger's tables: the event store, kept answers, snapshots and every read model schema.
const WATCHED_SCHEMAS: &str = "schemaname IN ('event_store', 'answers', 'snapshots') \
                               OR schemaname LIKE 'rm\\_%'";

/// Tables whose statistics are stale: never analyzed, or changed by more than the thresholds.
fn stale_tables_sql() -> String {
    format!(
        "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables \
         WHERE ({WATCHED_SCHEMAS}) AND ( \
             (last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > 0) \
             OR n_mod_since_analyze >= $1::bigint + $2::float8 * n_live_tup) \
         ORDER BY schemaname, relname"
    )
}

/// Start the keeper; it stops when `shutdown` turns true (or its sender is gone).
pub fn spawn(database: Database, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_millis(STATISTICS_CHECK_INTERVAL_MS);
        loop {
            if let Err(error) = analyze_stale(&database).await {
                tracing::warn!(%error, "could not refresh table statistics; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                result = shutdown.wait_for(|stop| *stop) => {
                    let _ = result;
                    return;
                }
            }
        }
    })
}

/// Analyze every stale table now, unless another process is doing it; returns the tables
/// analyzed, in order.
///
/// Each `ANALYZE` runs on its own, outside any transaction block, so it holds a transaction id
/// only for the moment it writes its statistics. The store-wide log is visible up to the oldest
/// running transaction that has an id (`VISIBLE_BOUND` in the store), so one transaction
/// around all the analyses held every projector and publisher back for as long as they took
/// together (up to a second on a busy machine, every few seconds while tables grow). The
/// lock is therefore a session lock, released at the end; a connection whose release is not
/// certain is closed instead of going back to the pool.
pub async fn analyze_stale(database: &Database) -> Result<Vec<String>, tokio_postgres::Error> {
    let Ok(client) = database.pool().get().await else {
        return Ok(Vec::new());
    };
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&STATISTICS_LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(Vec::new());
    }
    let analyzed = analyze_each(&client).await;
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&STATISTICS_LOCK_KEY])
        .await
        .map(|row| row.get::<_, bool>(0));
    if analyzed.is_err() || !matches!(unlocked, Ok(true)) {
        // The session might still hold the lock: close the connection, which releases it.
        drop(deadpool_postgres::Object::take(client));
    }
    analyzed
}

/// Find the stale tables and analyze them one by one, each in a transaction of its own.
async fn analyze_each(
    client: &tokio_postgres::Client,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let stale: Vec<String> = client
        .query(
            &stale_tables_sql(),
            &[&ANALYZE_CHANGED_ROWS_MIN, &ANALYZE_CHANGED_FRACTION],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in &stale {
        // `table` comes from the catalog, quoted by format('%I.%I').
        client.batch_execute(&format!("ANALYZE {table}")).await?;
        tracing::debug!(%table, "analyzed");
    }
    Ok(stale)
}
