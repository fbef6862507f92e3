//! A real API server for each test: the `api` crate's own start-up on port 0, over a fresh
//! PostgreSQL database, driven over real HTTP.

#![allow(dead_code)]

pub mod process;

use clap::Parser;
use ledger_api::config::Config;
use ledger_api::startup::{self, Running};
use ledger_tests::postgres::TestDatabase;
use serde_json::Value;
use std::time::Duration;

/// Longest a test waits for the read models to catch up before failing.
pub const CONVERGENCE_DEADLINE_MS: u64 = 20_000;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    running: Option<Running>,
    database: TestDatabase,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Self {
        let database = TestDatabase::create().await;
        let url = database.url();
        let mut args = vec![
            "api",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--pool-size",
            "24",
            "--expiry-interval-ms",
            "100",
        ];
        args.extend_from_slice(extra);
        let config = Config::try_parse_from(args).expect("test configuration parses");
        let running = startup::start(config).await.expect("the API starts");
        Self {
            base: format!("http://{}", running.address),
            client: reqwest::Client::new(),
            running: Some(running),
            database,
        }
    }

    /// The URL of the server's database, for tests that reach into it.
    pub fn database_url(&self) -> String {
        self.database.url()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let (status, body, _) = read(response).await;
        (status, body)
    }

    /// Poll `path` until `done` holds for its JSON body, or fail at the deadline.
    pub async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CONVERGENCE_DEADLINE_MS);
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not converge within {CONVERGENCE_DEADLINE_MS} ms; last: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SKUs with a loaded writer in the server now.
    pub fn writers_active(&self) -> usize {
        self.running.as_ref().expect("running").writers_active()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

pub async fn read(response: reqwest::Response) -> (u16, Value, reqwest::header::HeaderMap) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body, headers)
}

/// The SKU's history entries, straight from the event store.
pub async fn history(server: &TestServer, sku: &str) -> Vec<Value> {
    let (status, body) = server
        .get(&format!("/v1/skus/{sku}/history?limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().expect("entries").clone()
}
