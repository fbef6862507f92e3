//! Errors of the tool and the exit codes they map to (documented in `--help`).

use ledger_application::history::HistoryError;
use ledger_application::StoreError;
use ledger_postgres::DatabaseError;
use ledger_projections::ProjectionError;
use ledger_startup::StartupError;

/// The exit codes of `ledger-replay`, as `--help` documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCodeName {
    /// The command did what was asked and found nothing wrong.
    Ok = 0,
    /// Verification found a difference, or a command failed for a reason not listed below.
    Failed = 1,
    /// The arguments were wrong (clap uses the same code for its own usage errors).
    Usage = 2,
    /// The SKU has no events, or the projection does not exist.
    NotFound = 3,
    /// The event store or the read model database could not be reached.
    Unreachable = 4,
    /// A rebuild was interrupted (Ctrl-C); run the same command again to resume it.
    Interrupted = 5,
}

impl ExitCodeName {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    /// The same error, its message led by what was being done.
    pub fn with_context(self, context: &str) -> Self {
        let lead = |message: String| format!("{context}: {message}");
        match self {
            Self::Usage(message) => Self::Usage(lead(message)),
            Self::NotFound(message) => Self::NotFound(lead(message)),
            Self::Unreachable(message) => Self::Unreachable(lead(message)),
            Self::Failed(message) => Self::Failed(lead(message)),
        }
    }

    pub fn exit_code(&self) -> ExitCodeName {
        match self {
            Self::Usage(_) => ExitCodeName::Usage,
            Self::NotFound(_) => ExitCodeName::NotFound,
            Self::Unreachable(_) => ExitCodeName::Unreachable,
            Self::Failed(_) => ExitCodeName::Failed,
        }
    }
}

impl From<StoreError> for ToolError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { .. } | StoreError::Timeout { .. } => {
                Self::Unreachable(format!("event store unreachable: {error}"))
            }
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<DatabaseError> for ToolError {
    fn from(error: DatabaseError) -> Self {
        match error {
            DatabaseError::InvalidUrl(_) | DatabaseError::InvalidTls(_) => {
                Self::Usage(error.to_string())
            }
            DatabaseError::Unreachable(_) | DatabaseError::Pool(_) | DatabaseError::Deadline(_) => {
                Self::Unreachable(error.to_string())
            }
            DatabaseError::Query { ref source, .. } if source.is_closed() => {
                Self::Unreachable(error.to_string())
            }
            DatabaseError::Query { .. }
            | DatabaseError::Migration { .. }
            | DatabaseError::Backfill { .. } => Self::Failed(error.to_string()),
        }
    }
}

impl From<StartupError> for ToolError {
    fn from(error: StartupError) -> Self {
        match error {
            StartupError::Config(_) => Self::Usage(error.to_string()),
            StartupError::Cluster(_) | StartupError::NoEmbeddedLedger { .. } => {
                Self::Unreachable(error.to_string())
            }
            StartupError::Database(database) => database.into(),
            StartupError::EventStore(store) => store.into(),
        }
    }
}

impl From<HistoryError> for ToolError {
    fn from(error: HistoryError) -> Self {
        match error {
            HistoryError::Store(store) => store.into(),
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<ProjectionError> for ToolError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::UnknownProjection { .. } => Self::NotFound(error.to_string()),
            ProjectionError::Store(store) => store.into(),
            ProjectionError::Setup(setup) => setup.into(),
            ProjectionError::Pool(_) => Self::Unreachable(error.to_string()),
            ProjectionError::Database(ref database) if database.is_closed() => {
                Self::Unreachable(error.to_string())
            }
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for ToolError {
    fn from(error: tokio_postgres::Error) -> Self {
        ProjectionError::from(error).into()
    }
}

impl From<std::io::Error> for ToolError {
    fn from(error: std::io::Error) -> Self {
        Self::Failed(format!("cannot write the output: {error}"))
    }
}
