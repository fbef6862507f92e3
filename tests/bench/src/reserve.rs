//! Scenarios 1 and 2 and the sell-out: closed-loop reserves over many SKUs, on one hot SKU,
//! and on a hot SKU with stock for only half the requests, which must sell exactly its stock.

use crate::http::{drive, prepare_skus, replenish, ScenarioResult};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct ReserveResults {
    pub uncontended: ScenarioResult,
    pub hot: ScenarioResult,
    pub sellout: ScenarioResult,
    /// The sell-out SKU's stock; successful reservations must equal it exactly.
    pub sellout_stock: u64,
}

impl ReserveResults {
    pub fn oversold(&self) -> bool {
        self.sellout.ok != self.sellout_stock
    }

    pub fn rows(&self) -> [&ScenarioResult; 3] {
        [&self.uncontended, &self.hot, &self.sellout]
    }
}

pub async fn run(
    client: &reqwest::Client,
    base: &str,
    run: &str,
    connections: usize,
    requests: u64,
    skus: u64,
) -> ReserveResults {
    let skus = skus.max(1);
    eprintln!("preparing {skus} SKUs...");
    let prefix = format!("B{run}-");
    prepare_skus(
        client,
        base,
        &prefix,
        skus,
        requests / skus + 1,
        connections,
    )
    .await;
    let uncontended = drive(
        &format!("reserve, {skus} SKUs"),
        client,
        base,
        connections,
        requests,
        Arc::new(move |i| {
            (
                format!("/v1/skus/{prefix}{}/reservations", i % skus),
                json!({"reservation_id": format!("u{i}"), "quantity": 1}),
            )
        }),
    )
    .await;

    let hot_sku = format!("HOT{run}");
    replenish(client, base, &hot_sku, requests).await;
    let hot_path = format!("/v1/skus/{hot_sku}/reservations");
    let hot = drive(
        "reserve, one hot SKU",
        client,
        base,
        connections,
        requests,
        Arc::new(move |i| {
            (
                hot_path.clone(),
                json!({"reservation_id": format!("h{i}"), "quantity": 1}),
            )
        }),
    )
    .await;

    let sellout_stock = requests / 2;
    let sold_sku = format!("SELL{run}");
    replenish(client, base, &sold_sku, sellout_stock).await;
    let sold_path = format!("/v1/skus/{sold_sku}/reservations");
    let sellout = drive(
        "reserve, hot SKU selling out",
        client,
        base,
        connections,
        requests,
        Arc::new(move |i| {
            (
                sold_path.clone(),
                json!({"reservation_id": format!("s{i}"), "quantity": 1}),
            )
        }),
    )
    .await;
    ReserveResults {
        uncontended,
        hot,
        sellout,
        sellout_stock,
    }
}
