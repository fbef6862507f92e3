//! `rebuild`: rebuild one projection (or all) through `ledger_projections::rebuild`, showing progress
//! as a bar on a terminal, as periodic lines otherwise, and a one-line summary at the end.

use crate::cli::{RebuildArguments, ReportFormat};
use crate::error::{ExitCodeName, ToolError};
use crate::output::events_per_second;
use crate::status::show;
use ledger_domain::Position;
use ledger_projections::{RebuildOptions, RebuildProgress, RebuildSummary};
use ledger_startup::Backends;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a non-terminal (a log file, CI) gets a progress line: often enough to show life,
/// rarely enough that a long rebuild does not flood the log.
pub const PROGRESS_LINE_INTERVAL_MS: u64 = 5_000;

/// How often the terminal bar is redrawn at most; pages can finish faster than a terminal
/// usefully repaints.
pub const PROGRESS_BAR_REDRAW_INTERVAL_MS: u64 = 100;

/// Characters of the bar itself.
const PROGRESS_BAR_WIDTH: usize = 30;

pub async fn run(
    backends: &Backends,
    arguments: RebuildArguments,
) -> Result<ExitCodeName, ToolError> {
    let names: Vec<String> = match &arguments.projection {
        Some(name) => {
            ledger_projections::by_name(name)?;
            vec![name.clone()]
        }
        None => ledger_projections::names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    // Ctrl-C asks the rebuild to stop after its current page; the shadow keeps its
    // checkpoint, so the next run resumes instead of starting over.
    let stop_requested = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop_requested = stop_requested.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop_requested.store(true, Ordering::SeqCst);
            }
        })
    };
    let mut summaries = Vec::new();
    let mut code = ExitCodeName::Ok;
    for name in &names {
        let total = estimate_remaining(backends, name).await;
        let reporter = Arc::new(Mutex::new(Reporter::new(
            arguments.quiet,
            std::io::stderr().is_terminal(),
            total,
        )));
        let progress = {
            let reporter = reporter.clone();
            let stop_requested = stop_requested.clone();
            Arc::new(move |progress: &RebuildProgress| {
                reporter
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .report(progress);
                if stop_requested.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        };
        let options = RebuildOptions {
            dry_run: arguments.dry_run,
            restart: arguments.restart,
            progress: Some(progress),
            ..RebuildOptions::default()
        };
        let result = ledger_projections::rebuild(
            backends.store.as_ref(),
            backends.database(),
            name,
            options,
        )
        .await;
        reporter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .finish();
        let summary = result?;
        if arguments.format == ReportFormat::Table {
            println!("{}", summary_line(&summary));
        }
        let interrupted = summary.interrupted;
        summaries.push(summary);
        if interrupted {
            code = ExitCodeName::Interrupted;
            break;
        }
    }
    watcher.abort();
    if arguments.format == ReportFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summaries).expect("summaries serialise")
        );
    }
    Ok(code)
}

/// Events the rebuild still has to apply, when the store can count them cheaply (PostgreSQL);
/// `None` elsewhere, and the progress shows no ETA.
async fn estimate_remaining(backends: &Backends, name: &str) -> Option<u64> {
    let events = backends.postgres_store()?;
    let resumed = ledger_projections::rebuild::shadow_checkpoint(backends.database(), name)
        .await
        .ok()?
        .flatten()
        .unwrap_or(Position {
            commit: 0,
            prepare: 0,
        });
    events.count_after(Some(resumed)).await.ok()
}

fn summary_line(summary: &RebuildSummary) -> String {
    let rate = events_per_second(
        summary.events_applied,
        Duration::from_millis(summary.duration_ms),
    );
    let outcome = if summary.interrupted {
        "interrupted; run again to resume".to_owned()
    } else if summary.swapped {
        "swapped in".to_owned()
    } else {
        "dry run, nothing swapped".to_owned()
    };
    let tables: Vec<String> = summary
        .tables
        .iter()
        .map(|t| format!("{} {}→{}", t.table, t.live_rows, t.rebuilt_rows))
        .collect();
    let resumed = summary
        .resumed_from
        .as_ref()
        .map(|p| format!(", resumed from {}", show(Some(p))))
        .unwrap_or_default();
    format!(
        "{}: {} events in {:.1} s ({:.0} events/s){}, checkpoint {}, {}{}",
        summary.projection,
        summary.events_applied,
        summary.duration_ms as f64 / 1000.0,
        rate,
        resumed,
        show(summary.checkpoint.as_ref()),
        outcome,
        if tables.is_empty() {
            String::new()
        } else {
            format!("; rows live→rebuilt: {}", tables.join(", "))
        }
    )
}

/// Draws progress: a bar redrawn in place on a terminal, a plain line every few seconds
/// otherwise, nothing with `--quiet`.
struct Reporter {
    quiet: bool,
    terminal: bool,
    total: Option<u64>,
    started: Instant,
    last_drawn: Option<Instant>,
    drew_bar: bool,
}

impl Reporter {
    fn new(quiet: bool, terminal: bool, total: Option<u64>) -> Self {
        Self {
            quiet,
            terminal,
            total,
            started: Instant::now(),
            last_drawn: None,
            drew_bar: false,
        }
    }

    fn report(&mut self, progress: &RebuildProgress) {
        if self.quiet {
            return;
        }
        let interval = Duration::from_millis(if self.terminal {
            PROGRESS_BAR_REDRAW_INTERVAL_MS
        } else {
            PROGRESS_LINE_INTERVAL_MS
        });
        if self.last_drawn.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        self.last_drawn = Some(Instant::now());
        let done = progress.events_applied;
        let rate = events_per_second(done, self.started.elapsed());
        let eta = match self.total {
            Some(total) if rate > 0.0 && total > done => {
                format!("ETA {:.0} s", (total - done) as f64 / rate)
            }
            Some(_) => "ETA 0 s".to_owned(),
            None => "ETA unknown".to_owned(),
        };
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let bar = match self.total {
                Some(total) if total > 0 => {
                    let filled = ((done.min(total) as f64 / total as f64)
                        * PROGRESS_BAR_WIDTH as f64) as usize;
                    format!(
                        "[{}{}]",
                        "#".repeat(filled),
                        "-".repeat(PROGRESS_BAR_WIDTH - filled)
                    )
                }
                _ => String::new(),
            };
            let _ = write!(
                err,
                "\r{} {bar} {done} events, {rate:.0} events/s, {eta}\x1b[K",
                progress.projection
            );
            self.drew_bar = true;
        } else {
            let _ = writeln!(
                err,
                "{}: {done} events applied, {rate:.0} events/s, {eta}, checkpoint {}",
                progress.projection,
                show(progress.checkpoint.as_ref())
            );
        }
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.drew_bar {
            let _ = writeln!(std::io::stderr());
        }
    }
}
