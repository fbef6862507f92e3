//! Optional delivery of low-stock notifications to a webhook, off unless configured.
//!
//! One deliverer runs at a time (it takes its own advisory lock, like a projection). It reads
//! the outbox after its cursor, POSTs each notification as JSON, logs every attempt, retries a
//! failed one with bounded exponential backoff up to [`WEBHOOK_ATTEMPTS_MAX`] times, and then
//! moves its cursor past it, delivered or given up. Delivery is at least once (a crash between
//! a successful POST and the cursor update sends again), so every request carries the
//! notification id for the receiver to drop repeats. The cursor and the log live in their own
//! schema, not in the projection's, so a rebuild of the alerts never re-sends history: the
//! rebuilt outbox has the same ids.
//!
//! Every request is signed, so a receiver can tell the ledger's notifications from anyone
//! else's POSTs: header [`SIGNATURE_HEADER`] carries `t=<unix seconds>,v1=<hex>`, the
//! HMAC-SHA256 under the shared secret of the timestamp, a dot and the exact body bytes. The
//! timestamp is signed too, so a receiver that refuses old timestamps cannot be sent a captured
//! request again later. Redirects are not followed: a 3xx is a failed attempt like any other
//! refusal, so a receiver that moved (or a network that redirects) cannot send signed
//! notifications somewhere nobody configured.

use crate::error::ProjectionError;
use crate::lock::LockConnection;
use crate::read_models::{ReadModels, PAGE_SIZE_MAX};
use ledger_postgres::migrate::{migrate, Migration};
use ledger_postgres::Database;
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;

/// The header that carries each request's signature.
pub const SIGNATURE_HEADER: &str = "Ledger-Signature";

/// The header that carries the notification id, for receivers to drop repeats.
pub const NOTIFICATION_ID_HEADER: &str = "X-Ledger-Notification-Id";

/// Shortest secret accepted: HMAC is only as strong as its key, and a short one can be found
/// by trying candidates against a single captured request.
pub const WEBHOOK_SECRET_BYTES_MIN: usize = 16;

/// Attempts per notification before the deliverer gives up on it and moves on, so one
/// notification the receiver keeps refusing cannot hold back every later one.
pub const WEBHOOK_ATTEMPTS_MAX: u32 = 5;

/// How long one POST may take, connection included.
pub const WEBHOOK_TIMEOUT_MS: u64 = 5_000;

/// Pause after the first failed attempt; doubled after each further one, up to the maximum.
pub const WEBHOOK_RETRY_INITIAL_MS: u64 = 500;
pub const WEBHOOK_RETRY_MAX_MS: u64 = 30_000;

/// Notifications read from the outbox per round.
pub const WEBHOOK_BATCH_MAX: u64 = 100;

/// How often an idle deliverer looks for new notifications (and a standby for the lock).
pub const WEBHOOK_POLL_INTERVAL_MS: u64 = 1_000;

/// Longest error text kept per attempt in the delivery log.
const DELIVERY_ERROR_BYTES_MAX: usize = 500;

/// The name under which the deliverer takes its lock and records its migrations.
const DELIVERER_NAME: &str = "alert_webhook";

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "cursor and delivery log",
    sql: "
CREATE SCHEMA alert_webhook;

CREATE TABLE alert_webhook.cursor (
    singleton            boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    last_notification_id bigint      NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
INSERT INTO alert_webhook.cursor DEFAULT VALUES;

CREATE TABLE alert_webhook.deliveries (
    notification_id bigint      NOT NULL,
    attempt         integer     NOT NULL CHECK (attempt > 0),
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    url             text        NOT NULL,
    status_code     integer,
    error           text,
    delivered       boolean     NOT NULL,
    PRIMARY KEY (notification_id, attempt)
);
",
}];

/// The key shared with the receiver that signs every request. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A secret of at least [`WEBHOOK_SECRET_BYTES_MIN`] bytes (also clap's value parser).
    pub fn parse(secret: &str) -> Result<Self, String> {
        if secret.len() < WEBHOOK_SECRET_BYTES_MIN {
            return Err(format!(
                "the webhook secret must be at least {WEBHOOK_SECRET_BYTES_MIN} bytes long"
            ));
        }
        Ok(Self(secret.to_owned()))
    }

    fn key(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_bytes())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// The [`SIGNATURE_HEADER`] value for `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex of HMAC-SHA256(secret, "<timestamp>." + body)>`.
pub fn signature(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(body.len() + 24);
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&secret.key(), &signed);
    let hex: String = tag
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// Where to POST notifications (`http://`; TLS is left to a proxy in front of the receiver).
    pub url: String,
    /// Signs every request ([`signature`]).
    pub secret: WebhookSecret,
    pub attempts_max: u32,
    pub timeout_ms: u64,
    pub retry_initial_ms: u64,
}

impl WebhookOptions {
    pub fn new(url: impl Into<String>, secret: WebhookSecret) -> Self {
        Self {
            url: url.into(),
            secret,
            attempts_max: WEBHOOK_ATTEMPTS_MAX,
            timeout_ms: WEBHOOK_TIMEOUT_MS,
            retry_initial_ms: WEBHOOK_RETRY_INITIAL_MS,
        }
    }
}

/// One logged delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub notification_id: i64,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub delivered: bool,
}

pub(crate) async fn migrate_delivery(
    client: &mut tokio_postgres::Client,
) -> Result<(), ProjectionError> {
    migrate(client, DELIVERER_NAME, MIGRATIONS).await?;
    Ok(())
}

/// The delivery log, oldest first (for operators and tests).
pub async fn delivery_log(
    database: &Database,
    limit: u64,
) -> Result<Vec<DeliveryAttempt>, ProjectionError> {
    let limit = limit.clamp(1, PAGE_SIZE_MAX) as i64;
    let client = database.pool().get().await?;
    let rows = client
        .query(
            "SELECT notification_id, attempt, status_code, error, delivered \
             FROM alert_webhook.deliveries ORDER BY notification_id, attempt LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| DeliveryAttempt {
            notification_id: row.get(0),
            attempt: row.get(1),
            status_code: row.get(2),
            error: row.get(3),
            delivered: row.get(4),
        })
        .collect())
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sleep unless shutdown comes first; true when it did.
async fn pause(shutdown: &watch::Receiver<bool>, delay: Duration) -> bool {
    let mut shutdown = shutdown.clone();
    tokio::select! {
        _ = stopped(&mut shutdown) => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// The deliverer's task: runs until shutdown.
pub(crate) async fn deliver(
    database: Database,
    options: WebhookOptions,
    shutdown: watch::Receiver<bool>,
) {
    let poll = Duration::from_millis(WEBHOOK_POLL_INTERVAL_MS);
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(options.timeout_ms))
        // A redirect is a refusal like any other: the signed notification goes to the
        // configured URL or nowhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; webhook delivery is off");
            return;
        }
    };
    loop {
        if *shutdown.borrow() || shutdown.has_changed().is_err() {
            return;
        }
        match lead(&database, &client, &options, &shutdown).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, "webhook deliverer failed; retrying"),
        }
        if pause(&shutdown, poll).await {
            return;
        }
    }
}

/// Take the lock (waiting as a standby), then deliver until shutdown.
async fn lead(
    database: &Database,
    http: &reqwest::Client,
    options: &WebhookOptions,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    let poll = Duration::from_millis(WEBHOOK_POLL_INTERVAL_MS);
    {
        let mut client = database.pool().get().await?;
        migrate_delivery(&mut client).await?;
    }
    let lock = LockConnection::connect(database, DELIVERER_NAME).await?;
    while !lock.try_lock().await? {
        if pause(shutdown, poll).await {
            return Ok(());
        }
    }
    let read_models = ReadModels::new(database.clone());
    loop {
        if lock.is_closed() {
            return Err(ProjectionError::InvalidArgument(
                "the webhook deliverer lost its lock connection".to_owned(),
            ));
        }
        let client = database.pool().get().await?;
        let cursor: i64 = client
            .query_one("SELECT last_notification_id FROM alert_webhook.cursor", &[])
            .await?
            .get(0);
        drop(client);
        let notifications = read_models
            .notifications_after(cursor, WEBHOOK_BATCH_MAX)
            .await?;
        if notifications.is_empty() {
            if pause(shutdown, poll).await {
                return Ok(());
            }
            continue;
        }
        for notification in notifications {
            let id = notification.notification_id;
            let mut delay = Duration::from_millis(options.retry_initial_ms);
            let body = serde_json::to_vec(&notification)
                .expect("a notification (plain fields) always encodes as JSON");
            for attempt in 1..=options.attempts_max.max(1) {
                let (status_code, error, delivered) = post(http, options, id, &body).await;
                if let Some(error) = &error {
                    tracing::warn!(notification_id = id, attempt, %error, "webhook delivery failed");
                }
                let client = database.pool().get().await?;
                client
                    .execute(
                        "INSERT INTO alert_webhook.deliveries \
                             (notification_id, attempt, url, status_code, error, delivered) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        &[
                            &id,
                            &(attempt as i32),
                            &options.url,
                            &status_code,
                            &error,
                            &delivered,
                        ],
                    )
                    .await?;
                if delivered {
                    break;
                }
                if attempt == options.attempts_max {
                    tracing::warn!(notification_id = id, "webhook gave up on a notification");
                    break;
                }
                if pause(shutdown, delay).await {
                    return Ok(());
                }
                delay = (delay * 2).min(Duration::from_millis(WEBHOOK_RETRY_MAX_MS));
            }
            let client = database.pool().get().await?;
            client
                .execute(
                    "UPDATE alert_webhook.cursor SET last_notification_id = $1, updated_at = now() \
                     WHERE last_notification_id < $1",
                    &[&id],
                )
                .await?;
        }
    }
}

/// One signed POST of `body`: (status code, error, delivered).
async fn post(
    http: &reqwest::Client,
    options: &WebhookOptions,
    id: i64,
    body: &[u8],
) -> (Option<i32>, Option<String>, bool) {
    let timestamp = chrono::Utc::now().timestamp();
    let outcome = http
        .post(&options.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(NOTIFICATION_ID_HEADER, id.to_string())
        .header(
            SIGNATURE_HEADER,
            signature(&options.secret, timestamp, body),
        )
        .body(body.to_vec())
        .send()
        .await;
    match outcome {
        Ok(response) if response.status().is_success() => {
            (Some(i32::from(response.status().as_u16())), None, true)
        }
        Ok(response) if response.status().is_redirection() => (
            Some(i32::from(response.status().as_u16())),
            Some(format!(
                "answered {}; redirects are not followed",
                response.status()
            )),
            false,
        ),
        Ok(response) => (
            Some(i32::from(response.status().as_u16())),
            Some(format!("answered {}", response.status())),
            false,
        ),
        Err(error) => (None, Some(truncate(error.to_string())), false),
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > DELIVERY_ERROR_BYTES_MAX {
        let mut cut = DELIVERY_ERROR_BYTES_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
