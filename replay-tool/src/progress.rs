//! A one-line progress report on standard error for the long commands (export, import): events
//! done and the rate, redrawn in place. Shown when standard error is a terminal or when asked
//! for (`--progress`), so that a redirected run's log is not filled with carriage returns.

use crate::output::events_per_second;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn: often enough to look alive, rarely enough to cost nothing.
pub const PROGRESS_REDRAW_INTERVAL_MS: u64 = 250;

pub struct Progress {
    /// What is being counted, e.g. `export`.
    label: &'static str,
    enabled: bool,
    started: Instant,
    /// When the line was last drawn (`None`: never).
    drawn_at: Option<Instant>,
}

impl Progress {
    /// A report on standard error, shown if `forced` or standard error is a terminal.
    pub fn on_stderr(label: &'static str, forced: bool) -> Self {
        Self {
            label,
            enabled: forced || std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn_at: None,
        }
    }

    /// No report at all.
    pub fn hidden(label: &'static str) -> Self {
        Self {
            enabled: false,
            ..Self::on_stderr(label, false)
        }
    }

    /// Whether anything was drawn.
    pub fn shown(&self) -> bool {
        self.drawn_at.is_some()
    }

    /// `events` are done; redraws the line when it is due.
    pub fn update(&mut self, events: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = self.drawn_at.is_none_or(|at| {
            now.duration_since(at) >= Duration::from_millis(PROGRESS_REDRAW_INTERVAL_MS)
        });
        if due {
            self.draw(events, now);
        }
    }

    /// The last redraw, ending the line.
    pub fn finish(&mut self, events: u64) {
        if self.enabled {
            self.draw(events, Instant::now());
            eprintln!();
        }
    }

    fn draw(&mut self, events: u64, now: Instant) {
        let elapsed = now.duration_since(self.started);
        let mut stderr = std::io::stderr().lock();
        // A progress line that cannot be written is not worth failing the command for.
        let _ = write!(
            stderr,
            "\r{}: {events} events, {:.1} s, {:.0} events/s ",
            self.label,
            elapsed.as_secs_f64(),
            events_per_second(events, elapsed)
        );
        let _ = stderr.flush();
        self.drawn_at = Some(now);
    }
}
