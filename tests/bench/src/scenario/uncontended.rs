//! Scenario (a), uncontended: keyed reserves of one unit spread round-robin over many SKUs,
//! each replenished first, so no two requests in flight are likely to touch the same SKU. The
//! expiry scenario's background load and the degradation rounds run the same load.

use super::Target;
use crate::closed_loop::ScenarioResult;
use crate::closed_loop::{replenish_all, Length, RequestFor};
use crate::http::{reserve_body, reserve_path};
use std::sync::Arc;

/// Stock each SKU gets: far more than one SKU's share of any run (10,000 requests a second for
/// a minute over a single SKU would take 600,000), so no reserve is refused for want of stock.
pub const STOCK_PER_SKU: u64 = 1_000_000;

/// A set of replenished SKUs, `<prefix>0` to `<prefix><count - 1>`.
#[derive(Debug, Clone)]
pub struct Skus {
    prefix: String,
    count: u64,
}

impl Skus {
    /// Replenish `count` SKUs named after `prefix` with [`STOCK_PER_SKU`] each.
    pub async fn prepare(target: &Target, prefix: String, count: u64) -> Result<Self, String> {
        let count = count.max(1);
        eprintln!("  preparing {count} SKUs {prefix}*...");
        replenish_all(
            &target.endpoint,
            &prefix,
            count,
            STOCK_PER_SKU,
            target.connections,
        )
        .await?;
        Ok(Self { prefix, count })
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reserve `i` goes to SKU `i mod count` with reservation id `<id_prefix><i>`: a new key
    /// every time, so no request is answered from the idempotency record of another.
    pub fn reserves(&self, id_prefix: &str) -> RequestFor {
        let (prefix, count, id_prefix) = (self.prefix.clone(), self.count, id_prefix.to_owned());
        Arc::new(move |i| {
            (
                reserve_path(&format!("{prefix}{}", i % count)),
                reserve_body(&format!("{id_prefix}{i}"), None),
            )
        })
    }
}

/// Warm up on `skus`, then time the load for `length`.
pub async fn run(
    target: &Target,
    skus: &Skus,
    length: Length,
    name: String,
) -> Result<ScenarioResult, String> {
    super::warm_up_and_drive(target, name, length, "u", |prefix| skus.reserves(prefix)).await
}

pub fn name(skus: u64) -> String {
    format!("(a) uncontended reserve, {skus} SKUs")
}
