//! Scenario (c), a hot SKU selling out: twice as many one-unit reserves as the SKU has stock,
//! from every connection at once. Exactly the stock must be reserved, every other request
//! refused with 409: one more would be an oversell. It runs right after the hot SKU scenario,
//! which has warmed the same path, so it has no warm-up of its own (one would eat the stock).

use super::Target;
use crate::closed_loop::{drive, ClosedLoop, Length, ScenarioResult};
use crate::http::{replenish, reserve_body, reserve_path};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct SelloutResult {
    pub requests: ScenarioResult,
    /// The SKU's stock; successful reservations must equal it exactly.
    pub stock: u64,
}

impl SelloutResult {
    /// More reservations succeeded than there was stock.
    pub fn oversold(&self) -> bool {
        self.requests.ok > self.stock
    }

    /// Exactly the stock was reserved and every other request refused.
    pub fn exact(&self) -> bool {
        self.requests.ok == self.stock && self.requests.errors == 0
    }

    pub fn verdict(&self) -> String {
        let r = &self.requests;
        let what = if self.exact() {
            "exactly the stock, zero oversell".to_owned()
        } else if self.oversold() {
            format!("OVERSOLD by {}", r.ok - self.stock)
        } else {
            format!(
                "MISMATCH: {} units left unsold with {} errors",
                self.stock - r.ok,
                r.errors
            )
        };
        format!(
            "sell-out: stock {}, {} requests, {} reserved, {} refused (409) — {what}",
            self.stock, r.requests, r.ok, r.refused
        )
    }
}

pub async fn run(target: &Target, stock: u64) -> Result<SelloutResult, String> {
    let stock = stock.max(1);
    eprintln!("(c) hot SKU selling out...");
    let sku = format!("SELL{}", target.run);
    replenish(&target.endpoint, &sku, stock).await?;
    let path = reserve_path(&sku);
    let requests = drive(
        ClosedLoop {
            name: "(c) hot SKU selling out".to_owned(),
            endpoint: target.endpoint.clone(),
            connections: target.connections,
            length: Length::Requests(stock * 2),
            request: Arc::new(move |i| (path.clone(), reserve_body(&format!("s{i}"), None))),
        },
        target.processes,
    )
    .await?;
    Ok(SelloutResult { requests, stock })
}
