//! The one error type of the crate. Operating failures (database, event store, an event this
//! code cannot read) are values; a runner records them as its last error and backs off.

use ledger_application::StoreError;
use ledger_domain::Position;
use ledger_postgres::DatabaseError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("read model database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Setup(#[from] DatabaseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown projection {name:?}; known projections are {known}")]
    UnknownProjection { name: String, known: String },
    #[error("event at {position} in stream {stream} cannot be projected: {message}")]
    Undecodable {
        position: Position,
        stream: String,
        message: String,
    },
    #[error(
        "the checkpoint of {projection} moved under this runner (expected {expected}, found \
         {found}); another runner or a rebuild got there first"
    )]
    StaleCheckpoint {
        projection: String,
        expected: String,
        found: String,
    },
    #[error("a stored {what} is out of range: {value}")]
    OutOfRange { what: &'static str, value: String },
    #[error("injected fault: {0}")]
    InjectedFault(&'static str),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A broker did not confirm a batch; the publisher backs off and publishes it again.
    #[error("integration events not confirmed: {0}")]
    Publish(#[from] ledger_integration::BrokerError),
}

/// Shows an optional checkpoint the way operators read positions: `COMMIT/PREPARE` or `start`.
pub(crate) fn show_position(position: Option<Position>) -> String {
    position.map_or_else(|| "start".to_owned(), |p| p.to_string())
}
