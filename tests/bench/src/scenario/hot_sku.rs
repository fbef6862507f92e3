//! Scenario (b), one hot SKU: every connection reserves one unit of the same SKU, whose stock
//! outlasts the run, so every request goes through that SKU's single writer.

use super::Target;
use crate::closed_loop::{Length, ScenarioResult};
use crate::http::{replenish, reserve_body, reserve_path};
use std::sync::Arc;

/// The hot SKU's stock: the largest quantity one replenishment may carry, far more than any run
/// reserves.
const HOT_SKU_STOCK: u64 = 1_000_000_000;

pub async fn run(target: &Target, length: Length) -> Result<ScenarioResult, String> {
    let name = "(b) one hot SKU".to_owned();
    let sku = format!("HOT{}", target.run);
    replenish(&target.endpoint, &sku, HOT_SKU_STOCK).await?;
    let path = reserve_path(&sku);
    let reserves = |id_prefix: &'static str| -> crate::closed_loop::RequestFor {
        let path = path.clone();
        Arc::new(move |i| (path.clone(), reserve_body(&format!("{id_prefix}{i}"), None)))
    };
    super::warm_up_and_drive(target, name, length, "h", reserves).await
}
