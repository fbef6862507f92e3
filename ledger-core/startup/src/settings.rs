//! The settings every binary shares, as clap argument groups: each has one flag, one
//! environment variable and one meaning in every binary that flattens it.

use clap::Args;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the ledger's data lives: the same choice in every binary. Its `Debug` hides the URLs
/// (they may hold passwords) and the event store password.
#[derive(Clone, Args)]
pub struct BackendArguments {
    /// Folder of the embedded PostgreSQL cluster, used when DATABASE_URL is not set.
    #[arg(
        long,
        env = "LEDGER_DATA_DIR",
        default_value = ".ledger-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// A shared PostgreSQL (event store, read models, idempotency keys) instead of the embedded
    /// cluster. With EVENTSTORE_URL it holds everything but the events.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// EventStoreDB / KurrentDB holding the events (e.g. esdb://localhost:2113?tls=false).
    #[arg(long, env = "EVENTSTORE_URL", hide_env_values = true, global = true)]
    pub eventstore_url: Option<String>,

    /// The EventStoreDB / KurrentDB user, when not in EVENTSTORE_URL: a secure server refuses
    /// calls without one, and following the store-wide log ($all) needs an admin or a user in
    /// the read ACL of $all.
    #[arg(
        long,
        env = "EVENTSTORE_USERNAME",
        global = true,
        requires = "eventstore_password"
    )]
    pub eventstore_username: Option<String>,

    /// The password of EVENTSTORE_USERNAME.
    #[arg(
        long,
        env = "EVENTSTORE_PASSWORD",
        hide_env_values = true,
        global = true,
        requires = "eventstore_username"
    )]
    pub eventstore_password: Option<String>,
}

impl fmt::Debug for BackendArguments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "[redacted]");
        f.debug_struct("BackendArguments")
            .field("data_dir", &self.data_dir)
            .field("database_url", &hidden(&self.database_url))
            .field("eventstore_url", &hidden(&self.eventstore_url))
            .field("eventstore_username", &self.eventstore_username)
            .field("eventstore_password", &hidden(&self.eventstore_password))
            .finish()
    }
}

/// How a long-running binary logs.
#[derive(Debug, Clone, Args)]
pub struct LogArguments {
    /// Log format: human-readable text or one JSON object per line (on standard error; RUST_LOG
    /// sets the filter, default info).
    #[arg(long, env = "LEDGER_LOG_FORMAT", value_enum, default_value_t = crate::LogFormat::Text)]
    pub log_format: crate::LogFormat,
}

/// Which projections a process runs.
#[derive(Debug, Clone, Args)]
pub struct ProjectorArguments {
    /// Projections to run in this process: `all`, `none` (when a separate ledger-projector
    /// runs them), or a comma-separated list of names; `true` and `false` mean all and none.
    #[arg(long, env = "LEDGER_PROJECTORS", default_value = "all")]
    pub projectors: ProjectorSelection,
}

/// Which projections to run, as `LEDGER_PROJECTORS` says. Names are checked by the projections
/// crate, which knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectorSelection {
    All,
    None,
    Named(Vec<String>),
}

impl FromStr for ProjectorSelection {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let value = value.trim();
        Ok(match value.to_ascii_lowercase().as_str() {
            "" | "all" | "true" => Self::All,
            "none" | "false" => Self::None,
            _ => Self::Named(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        })
    }
}

impl fmt::Display for ProjectorSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::None => f.write_str("none"),
            Self::Named(names) => f.write_str(&names.join(",")),
        }
    }
}

/// The environment variable `tracing`'s filter reads in every binary that logs.
pub const LOG_FILTER_VARIABLE: &str = "RUST_LOG";

/// Every environment variable `command` reads through clap, in the order of its arguments
/// (subcommands included). Binaries that log add [`LOG_FILTER_VARIABLE`].
pub fn environment_variables(command: &clap::Command) -> Vec<String> {
    let mut names = Vec::new();
    collect_environment_variables(command, &mut names);
    names
}

fn collect_environment_variables(command: &clap::Command, names: &mut Vec<String>) {
    for argument in command.get_arguments() {
        if let Some(name) = argument.get_env().and_then(|name| name.to_str()) {
            if !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
    }
    for subcommand in command.get_subcommands() {
        collect_environment_variables(subcommand, names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projector_selection_reads_all_none_booleans_and_lists() {
        assert_eq!("all".parse(), Ok(ProjectorSelection::All));
        assert_eq!("true".parse(), Ok(ProjectorSelection::All));
        assert_eq!("FALSE".parse(), Ok(ProjectorSelection::None));
        assert_eq!("none".parse(), Ok(ProjectorSelection::None));
        assert_eq!(
            " stock_levels, reservations ,".parse(),
            Ok(ProjectorSelection::Named(vec![
                "stock_levels".to_owned(),
                "reservations".to_owned()
            ]))
        );
    }

    #[test]
    fn the_environment_variables_come_from_the_arguments() {
        #[derive(clap::Parser)]
        struct Both {
            #[command(flatten)]
            backends: BackendArguments,
            #[command(flatten)]
            log: LogArguments,
        }
        let names = environment_variables(&<Both as clap::CommandFactory>::command());
        assert_eq!(
            names,
            [
                "LEDGER_DATA_DIR",
                "DATABASE_URL",
                "EVENTSTORE_URL",
                "EVENTSTORE_USERNAME",
                "EVENTSTORE_PASSWORD",
                "LEDGER_LOG_FORMAT"
            ]
        );
    }
}
