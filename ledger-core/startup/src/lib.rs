//! The one place the ledger's binaries (`ledger-api`, `ledger-projector`, `ledger-replay`,
//! `ledger-bench`) turn settings into backends and logging. Each binary flattens the same clap
//! argument groups into its own command line, so a setting has one name, one environment
//! variable and one meaning everywhere, and the list of environment variables a binary reads
//! comes from clap itself.
//!
//! # Layout
//! - [`settings`]: the shared argument groups (backends, logging, projector selection) and the
//!   environment variables of a command.
//! - [`backends`]: open the event store and the database the settings name: the private
//!   cluster under the data folder by default, a shared PostgreSQL, EventStoreDB.
//! - [`logging`]: the one log subscriber (text or JSON lines).
//! - [`metrics`]: the one Prometheus recorder, shared by every binary that serves `/metrics`.
//! - [`traces`]: the optional OTLP span export and W3C `traceparent` handling, beside the log.

pub mod backends;
pub mod logging;
pub mod metrics;
pub mod settings;
pub mod traces;

pub use backends::{Backends, BackendsOptions, EmbeddedMode, StartupError};
pub use logging::{init_logging, LogFormat, LogOutput};
pub use settings::{
    environment_variables, BackendArguments, LogArguments, ProjectorArguments, ProjectorSelection,
    LOG_FILTER_VARIABLE,
};
pub use traces::{TraceExport, TRACE_VARIABLES};
