//! Percentiles of measured durations, in milliseconds.

use std::time::Duration;

/// The `fraction` percentile (nearest rank) of durations sorted ascending, in milliseconds;
/// zero when there are none.
pub fn percentile_ms(sorted: &[Duration], fraction: f64) -> f64 {
    assert!(
        sorted.windows(2).all(|pair| pair[0] <= pair[1]),
        "percentiles need sorted input"
    );
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    milliseconds(sorted[index])
}

pub fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The largest duration, in milliseconds; zero when there are none.
pub fn max_ms(sorted: &[Duration]) -> f64 {
    sorted.last().copied().map_or(0.0, milliseconds)
}
