//! Scenario (e), expiry: many holds with a time-to-live, all due at about the same moment,
//! spread over many SKUs, ended by the API's expiry worker while the uncontended load of (a)
//! keeps running on other connections. The figure is the time from the moment the LAST hold
//! fell due until the reservations read model shows no hold open any more, so it includes the
//! projection's lag as well as the worker's own pace.
//!
//! A time-to-live is whole seconds from the moment the API decides the reserve, and creating
//! the holds takes a while, so each hold is sent with the time-to-live that brings it closest
//! to one planned due moment: all fall due within about a second of each other (the report
//! gives the spread the read model shows).

use super::uncontended::Skus;
use super::Target;
use crate::closed_loop::{drive, replenish_all, ClosedLoop, Length, ScenarioResult};
use crate::database::LedgerDatabase;
use crate::http::{reserve_body, reserve_path};
use chrono::{DateTime, Utc};
use ledger_projections::schema_name::SchemaName;
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The due moment is planned as if holds were created at this share of the uncontended rate,
/// so creating them ends before it even when the API is slower than in (a).
const CREATION_RATE_SHARE: f64 = 0.5;

/// The creation rate assumed when the uncontended rate is unknown.
const CREATION_RATE_UNKNOWN_PER_SECOND: f64 = 200.0;

/// Time between the planned end of creation and the due moment, for the projection to show
/// every hold before the first falls due.
const DUE_MARGIN_SECONDS: f64 = 5.0;

/// How often the open holds are counted: the resolution of the figure.
const POLL_INTERVAL_MS: u64 = 100;

/// How long the read model may take to show every created hold.
const PROJECTION_TIMEOUT_SECONDS: u64 = 120;

pub struct ExpiryPlan {
    pub holds: u64,
    pub skus: u64,
    pub timeout_seconds: u64,
    /// The rate (a) measured, to plan the due moment.
    pub uncontended_per_second: Option<f64>,
    /// How often the API's expiry worker sweeps, when the bench started the API.
    pub expiry_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExpiryResult {
    pub holds: u64,
    pub skus: u64,
    /// Creating the holds (not a target, but its rate and CPU are there to see).
    pub creation: ScenarioResult,
    /// What the read model shows of the holds once all are projected.
    pub due: DueTimes,
    /// From the last hold's due time until the read model showed none open (projection lag
    /// included); `None` when some were still open after the timeout.
    pub all_ended_after_last_due_seconds: Option<f64>,
    pub open_at_end: i64,
    pub expired_at_end: i64,
    pub timeout_seconds: u64,
    pub poll_interval_ms: u64,
    pub expiry_interval_ms: Option<u64>,
    /// The uncontended load that ran from before the first hold fell due until the end.
    pub background: ScenarioResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct DueTimes {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub spread_seconds: f64,
    pub ttl_seconds_min: i64,
    pub ttl_seconds_max: i64,
}

pub async fn run(
    target: &Target,
    database: &LedgerDatabase,
    background_skus: &Skus,
    plan: ExpiryPlan,
) -> Result<ExpiryResult, String> {
    let holds = plan.holds.max(1);
    let skus = plan.skus.clamp(1, holds);
    let prefix = format!("X{}-", target.run);
    let ids = format!("exp-{}-", target.run);
    eprintln!("(e) expiry: preparing {skus} SKUs...");
    replenish_all(
        &target.endpoint,
        &prefix,
        skus,
        holds / skus + 1,
        target.connections,
    )
    .await?;
    let creation = create_holds(target, &plan, &prefix, &ids, holds, skus).await?;
    if creation.ok == 0 {
        return Err(format!(
            "no hold was created ({} refused, {} errors)",
            creation.refused, creation.errors
        ));
    }
    let holds_read = HoldsQuery::new(database, &ids);
    let due = holds_read.wait_until_projected(creation.ok).await?;
    eprintln!(
        "(e) expiry: {} holds due between {} and {} (spread {:.2} s); background load on...",
        creation.ok, due.first, due.last, due.spread_seconds
    );
    let stop = Arc::new(AtomicBool::new(false));
    let background = tokio::spawn(drive(
        ClosedLoop {
            name: "(e) background uncontended load".to_owned(),
            endpoint: target.endpoint.clone(),
            connections: target.connections,
            length: Length::UntilStopped {
                stop: stop.clone(),
                longest: until(due.last) + Duration::from_secs(plan.timeout_seconds + 60),
            },
            request: background_skus.reserves("b"),
        },
        target.processes,
    ));
    let ended = holds_read
        .wait_until_none_open(due.last, plan.timeout_seconds)
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let background = background.await.expect("the background load panicked")?;
    let ended_at = ended?;
    let (open_at_end, expired_at_end) = holds_read.open_and_expired().await?;
    Ok(ExpiryResult {
        holds: creation.ok,
        skus,
        all_ended_after_last_due_seconds: ended_at
            .map(|at| (at - due.last).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6),
        creation,
        due,
        open_at_end,
        expired_at_end,
        timeout_seconds: plan.timeout_seconds,
        poll_interval_ms: POLL_INTERVAL_MS,
        expiry_interval_ms: plan.expiry_interval_ms,
        background,
    })
}

/// Create the holds, each with the time-to-live that makes it due closest to one planned
/// moment.
async fn create_holds(
    target: &Target,
    plan: &ExpiryPlan,
    prefix: &str,
    ids: &str,
    holds: u64,
    skus: u64,
) -> Result<ScenarioResult, String> {
    let rate = plan
        .uncontended_per_second
        .filter(|rate| *rate > 0.0)
        .map_or(CREATION_RATE_UNKNOWN_PER_SECOND, |rate| {
            rate * CREATION_RATE_SHARE
        });
    let lead_seconds = holds as f64 / rate + DUE_MARGIN_SECONDS;
    let due_at = Utc::now() + chrono::Duration::milliseconds((lead_seconds * 1000.0) as i64);
    eprintln!("(e) expiry: creating {holds} holds, planned due at {due_at}...");
    let (prefix, ids) = (prefix.to_owned(), ids.to_owned());
    drive(
        ClosedLoop {
            name: "(e) creating the holds".to_owned(),
            endpoint: target.endpoint.clone(),
            connections: target.connections,
            length: Length::Requests(holds),
            request: Arc::new(move |i| {
                (
                    reserve_path(&format!("{prefix}{}", i % skus)),
                    reserve_body(&format!("{ids}{i}"), Some(ttl_seconds_until(due_at))),
                )
            }),
        },
        target.processes,
    )
    .await
}

/// The whole seconds from now to `due_at`, rounded up (a hold is never due early), at least 1.
fn ttl_seconds_until(due_at: DateTime<Utc>) -> u64 {
    let milliseconds = (due_at - Utc::now()).num_milliseconds();
    u64::try_from(milliseconds).map_or(1, |ms| ms.div_ceil(1000).max(1))
}

/// The time from now until `moment`, zero when it has passed.
fn until(moment: DateTime<Utc>) -> Duration {
    (moment - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// The reservations read model's view of this run's holds.
struct HoldsQuery<'a> {
    database: &'a LedgerDatabase,
    table: String,
    /// `LIKE` pattern of the holds' reservation ids.
    pattern: String,
}

impl<'a> HoldsQuery<'a> {
    fn new(database: &'a LedgerDatabase, ids: &str) -> Self {
        let schema = SchemaName::live(ledger_projections::reservations::NAME);
        Self {
            database,
            table: format!("{schema}.reservations"),
            pattern: format!("{ids}%"),
        }
    }

    /// Wait until the read model shows `created` holds; their due times then.
    async fn wait_until_projected(&self, created: u64) -> Result<DueTimes, String> {
        let client = self.database.client().await?;
        let sql = format!(
            "SELECT count(*), min(expires_at), max(expires_at), min(ttl_seconds), \
                    max(ttl_seconds) \
               FROM {} WHERE reservation_id LIKE $1",
            self.table
        );
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(PROJECTION_TIMEOUT_SECONDS);
        loop {
            let row = client
                .query_one(&sql, &[&self.pattern])
                .await
                .map_err(|e| format!("counting the holds: {e}"))?;
            let shown: i64 = row.get(0);
            if shown as u64 >= created && created > 0 {
                let (first, last): (DateTime<Utc>, DateTime<Utc>) = (row.get(1), row.get(2));
                return Ok(DueTimes {
                    first,
                    last,
                    spread_seconds: (last - first).num_milliseconds() as f64 / 1000.0,
                    ttl_seconds_min: row.get(3),
                    ttl_seconds_max: row.get(4),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the reservations read model showed {shown} of {created} holds after \
                     {PROJECTION_TIMEOUT_SECONDS} s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }

    /// Count the open holds every [`POLL_INTERVAL_MS`] until none is left; when that was seen,
    /// or `None` when holds were still open `timeout_seconds` after `last_due`.
    async fn wait_until_none_open(
        &self,
        last_due: DateTime<Utc>,
        timeout_seconds: u64,
    ) -> Result<Option<DateTime<Utc>>, String> {
        let client = self.database.client().await?;
        // The same condition as the expiry worker's partial index, so the count reads it.
        let sql = format!(
            "SELECT count(*) FROM {} \
              WHERE status = 'open' AND expires_at IS NOT NULL AND reservation_id LIKE $1",
            self.table
        );
        let give_up = last_due + chrono::Duration::seconds(timeout_seconds as i64);
        let mut next = tokio::time::Instant::now();
        loop {
            let open: i64 = client
                .query_one(&sql, &[&self.pattern])
                .await
                .map_err(|e| format!("counting the open holds: {e}"))?
                .get(0);
            let now = Utc::now();
            if open == 0 {
                return Ok(Some(now));
            }
            if now > give_up {
                return Ok(None);
            }
            next =
                (next + Duration::from_millis(POLL_INTERVAL_MS)).max(tokio::time::Instant::now());
            tokio::time::sleep_until(next).await;
        }
    }

    async fn open_and_expired(&self) -> Result<(i64, i64), String> {
        let client = self.database.client().await?;
        let sql = format!(
            "SELECT count(*) FILTER (WHERE status = 'open'), \
                    count(*) FILTER (WHERE status = 'expired') \
               FROM {} WHERE reservation_id LIKE $1",
            self.table
        );
        let row = client
            .query_one(&sql, &[&self.pattern])
            .await
            .map_err(|e| format!("counting the holds: {e}"))?;
        Ok((row.get(0), row.get(1)))
    }
}

pub fn print(expiry: &ExpiryResult) {
    println!(
        "## (e) Expiry: {} holds over {} SKUs, all due within {:.2} s of each other \
         (time-to-live {}–{} s), ended by the expiry worker under the load of (a)",
        expiry.holds,
        expiry.skus,
        expiry.due.spread_seconds,
        expiry.due.ttl_seconds_min,
        expiry.due.ttl_seconds_max
    );
    println!(
        "the API's expiry worker sweeps every {} ms",
        crate::table::figure(expiry.expiry_interval_ms.map(|ms| ms as f64), 0)
    );
    crate::table::print_request_table(&[&expiry.creation, &expiry.background]);
    println!();
    match expiry.all_ended_after_last_due_seconds {
        Some(seconds) => println!(
            "every hold ended {seconds:.2} s after the last one fell due \
             (read model polled every {} ms; includes the projection's lag); {} expired",
            expiry.poll_interval_ms, expiry.expired_at_end
        ),
        None => println!(
            "NOT every hold ended: {} still open {} s after the last one fell due ({} expired)",
            expiry.open_at_end, expiry.timeout_seconds, expiry.expired_at_end
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_to_live_never_makes_a_hold_due_before_the_planned_moment() {
        let due_at = Utc::now() + chrono::Duration::milliseconds(2_500);
        assert_eq!(ttl_seconds_until(due_at), 3);
        assert_eq!(
            ttl_seconds_until(Utc::now() - chrono::Duration::seconds(5)),
            1
        );
    }
}
