//! Log epochs: positions of the Postgres store that survive a restore into another cluster.
//!
//! A position's commit half is the appending transaction's id plus the offset of the epoch it
//! was written in (migration 0006 explains why, and how readers and appenders read the offset
//! in the statements that take their ids). A database restored with `pg_restore` into a new
//! cluster, or moved to one by logical replication, keeps its rows but not the transaction
//! counter they came from; the store notices that when it opens (and an appender notices when
//! its transaction id is below the one that began the epoch) and begins a new epoch whose
//! offset puts every new position above every stored one. Epoch 0 has offset 0: logs written
//! before epochs existed keep every position.

use tokio_postgres::GenericClient;

/// Whether the database needs a new epoch: two index probes, only reading.
const OUTDATED_SQL: &str = "SELECT event_store.epoch_outdated()";

/// Begin a new epoch if (still) needed, under the epochs table's exclusive lock.
const BEGIN_SQL: &str = "SELECT epoch, position_offset, began FROM event_store.begin_epoch()";

/// The current epoch of a store's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    /// 0 for the database's first cluster, one more for each move found.
    pub number: i32,
    /// Added to the cluster's transaction ids to give the commit half of log positions.
    pub position_offset: i64,
    /// Whether this call began it.
    pub began: bool,
}

/// Begin a new epoch when the database moved to a cluster whose transaction counter is behind
/// its stored positions (or is another cluster than the one that began the current epoch);
/// otherwise change nothing. Each statement runs in a transaction of its own (`client` must not
/// be inside one): the cheap look only reads, so stores opening on a database that did not
/// move never wait for each other or hold back appends, and the begin takes the epochs' lock
/// before it reads them.
pub async fn begin_epoch_if_outdated<C: GenericClient>(
    client: &C,
) -> Result<Option<Epoch>, tokio_postgres::Error> {
    let outdated: Option<bool> = client.query_one(OUTDATED_SQL, &[]).await?.get(0);
    if outdated != Some(true) {
        return Ok(None);
    }
    let row = client.query_one(BEGIN_SQL, &[]).await?;
    let epoch = Epoch {
        number: row.get(0),
        position_offset: row.get(1),
        began: row.get(2),
    };
    if epoch.began {
        tracing::warn!(
            epoch = epoch.number,
            position_offset = epoch.position_offset,
            "the event store's database is on another cluster than its log's transaction ids \
             came from (restored or moved): began a new log epoch, new events follow every \
             stored one"
        );
    }
    Ok(Some(epoch))
}
