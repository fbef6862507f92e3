//! Scenarios (a3) and (b3): (a) and (b) again with three locations per SKU. Every SKU is first
//! replenished at each of its three locations, and each reserve names one of them, so the
//! per-location balances, the location's reorder point and the `locations` read model are all
//! on the path. Run right after (a) and (b) on the same API, the pair of figures says what the
//! location dimension costs (the tracked target: no more than 10 %).

use super::{warm_up_and_drive, Target};
use crate::closed_loop::{drive, ClosedLoop, Length, RequestFor, ScenarioResult};
use crate::http::{replenish_path, reserve_path};
use serde::Serialize;
use std::sync::Arc;

/// The locations every SKU of these scenarios is stocked at.
pub const LOCATIONS: [&str; 3] = ["store-1", "store-2", "warehouse-1"];

/// Stock per (SKU, location) of (a3): as in (a), far more than any run reserves.
const STOCK_PER_LOCATION: u64 = super::uncontended::STOCK_PER_SKU;

/// Stock per location of the hot SKU of (b3).
const HOT_STOCK_PER_LOCATION: u64 = 1_000_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct LocationsResult {
    pub uncontended: ScenarioResult,
    pub hot_sku: ScenarioResult,
}

pub fn uncontended_name(skus: u64) -> String {
    format!(
        "(a3) uncontended reserve, {skus} SKUs × {} locations",
        LOCATIONS.len()
    )
}

pub fn hot_sku_name() -> String {
    format!("(b3) one hot SKU × {} locations", LOCATIONS.len())
}

/// Prepare `skus` SKUs at three locations each and a hot SKU at three locations, then time (a3)
/// and (b3) for `length` each.
pub async fn run(target: &Target, skus: u64, length: Length) -> Result<LocationsResult, String> {
    let skus = skus.max(1);
    let prefix = format!("L{}-", target.run);
    eprintln!(
        "  preparing {skus} SKUs {prefix}* at {} locations...",
        LOCATIONS.len()
    );
    replenish_at_locations(target, &prefix, skus, STOCK_PER_LOCATION).await?;
    let uncontended = warm_up_and_drive(
        target,
        uncontended_name(skus),
        length.clone(),
        "r",
        |id_prefix| reserves(prefix.clone(), skus, id_prefix),
    )
    .await?;
    let hot = format!("LHOT{}", target.run);
    eprintln!(
        "  preparing the hot SKU {hot} at {} locations...",
        LOCATIONS.len()
    );
    replenish_at_locations(target, &hot, 1, HOT_STOCK_PER_LOCATION).await?;
    let hot_sku = warm_up_and_drive(target, hot_sku_name(), length, "r", |id_prefix| {
        reserves(hot.clone(), 1, id_prefix)
    })
    .await?;
    Ok(LocationsResult {
        uncontended,
        hot_sku,
    })
}

/// The SKU of request `i` when `count` SKUs are named `<prefix>0` to `<prefix><count - 1>` (a
/// count of one is the prefix itself, the hot SKU).
fn sku(prefix: &str, count: u64, i: u64) -> String {
    if count == 1 {
        prefix.to_owned()
    } else {
        format!("{prefix}{}", i % count)
    }
}

/// Request `i` goes to SKU `i mod count`, at the location that moves on by one every pass over
/// the SKUs (and with every request on the hot SKU), so each location gets a third of the load.
fn location(count: u64, i: u64) -> &'static str {
    LOCATIONS[((i / count) % LOCATIONS.len() as u64) as usize]
}

fn reserves(prefix: String, count: u64, id_prefix: &'static str) -> RequestFor {
    Arc::new(move |i| {
        (
            reserve_path(&sku(&prefix, count, i)),
            format!(
                r#"{{"reservation_id":"{id_prefix}{i}","quantity":1,"location":"{}"}}"#,
                location(count, i)
            ),
        )
    })
}

/// Replenish every one of `count` SKUs at every location with `stock` units; every request must
/// succeed.
async fn replenish_at_locations(
    target: &Target,
    prefix: &str,
    count: u64,
    stock: u64,
) -> Result<(), String> {
    let places = LOCATIONS.len() as u64;
    let requests = count * places;
    let prefix = prefix.to_owned();
    let result = drive(
        ClosedLoop {
            name: format!("replenish {count} SKUs at {places} locations"),
            endpoint: target.endpoint.clone(),
            connections: target.connections.min(requests as usize),
            length: Length::Requests(requests),
            request: Arc::new(move |i| {
                (
                    replenish_path(&sku(&prefix, count, i / places)),
                    format!(
                        r#"{{"quantity":{stock},"location":"{}"}}"#,
                        LOCATIONS[(i % places) as usize]
                    ),
                )
            }),
        },
        crate::cpu::Processes::default(),
    )
    .await?;
    if result.ok != requests {
        return Err(format!(
            "replenishing {count} SKUs at {places} locations: {} succeeded, {} refused, {} failed",
            result.ok, result.refused, result.errors
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_location_gets_a_third_of_each_skus_requests() {
        let count = 4;
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..count * 3 {
            *seen
                .entry((sku("P", count, i), location(count, i)))
                .or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 12, "every (SKU, location) pair once: {seen:?}");
        assert!((0..3).all(|i| location(1, i) == LOCATIONS[i as usize]));
    }
}
