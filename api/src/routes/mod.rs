//! HTTP routes, one file per group: commands that change stock, queries that read it, order
//! commands across SKUs and an order's reservations, the auditor's digests (anchor and inclusion
//! proofs), and the operational endpoints; [`bodies`] holds the response bodies served from the read models. Every route is registered through the OpenAPI router, so the served
//! API and `/openapi.json` cannot drift apart.

pub mod audit;
pub mod bodies;
pub mod commands;
pub mod operations;
pub mod orders;
pub mod queries;
pub mod search;

use crate::contract::Contract;
use crate::state::SharedState;
use ledger_domain::SkuSummary;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Inventory ledger API",
        description = "Reserve, release, confirm, replenish and adjust stock; every movement is an \
                       immutable event in the SKU's stream. Errors are RFC 9457 problem documents \
                       (`application/problem+json`) whose `type` is a stable URN. Every operation \
                       under `/v1` needs a bearer token unless the server runs open."
    ),
    modifiers(&Contract),
    tags(
        (name = "commands", description = "Change stock; each success appends events"),
        (name = "queries", description = "Read stock, reservations, history and alerts"),
        (name = "audit", description = "Anchors of the whole log and a SKU's inclusion proof in one, recomputed from the events"),
        (name = "operations", description = "Health, readiness, metrics, the API description")
    )
)]
struct ApiDoc;

pub fn router(state: SharedState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(commands::replenish))
        .routes(routes!(commands::reserve))
        .routes(routes!(commands::release))
        .routes(routes!(commands::confirm))
        .routes(routes!(commands::adjust))
        .routes(routes!(commands::set_reorder_point))
        .routes(routes!(commands::dispatch_transfer))
        .routes(routes!(commands::receive_transfer))
        .routes(routes!(commands::cancel_transfer))
        .routes(routes!(commands::register, commands::update_catalogue))
        .routes(routes!(commands::discontinue))
        .routes(routes!(search::skus))
        .routes(routes!(orders::reserve_order))
        .routes(routes!(orders::release_order))
        .routes(routes!(orders::confirm_order))
        .routes(routes!(orders::order_reservations))
        .routes(routes!(queries::catalogue))
        .routes(routes!(queries::transfer))
        .routes(routes!(queries::location_stock))
        .routes(routes!(queries::location_alerts))
        .routes(routes!(queries::transfers_in_transit))
        .routes(routes!(queries::sku_state))
        .routes(routes!(queries::reservations))
        .routes(routes!(queries::reservation))
        .routes(routes!(queries::history))
        .routes(routes!(queries::movements))
        .routes(routes!(queries::sku_alerts))
        .routes(routes!(queries::low_stock))
        .routes(routes!(queries::open_alerts))
        .routes(routes!(queries::notifications))
        .routes(routes!(queries::projection_status))
        .routes(routes!(audit::anchor))
        .routes(routes!(audit::anchor_proof))
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::metrics))
        .routes(routes!(operations::openapi))
        .with_state(state)
        .split_for_parts();
    (router, api)
}

/// A SKU's balances as every response reports them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SkuStateBody {
    pub sku: String,
    pub on_hand: u64,
    pub reserved: u64,
    /// On hand minus reserved; never negative.
    pub available: u64,
    pub reorder_point: u64,
    pub below_reorder_point: bool,
    pub open_reservations: u64,
    /// The stream's version (also the ETag); absent before the SKU's first event.
    pub version: Option<u64>,
    /// The balances at each location (the figures above are their sums).
    pub locations: std::collections::BTreeMap<String, LocationBalances>,
    /// Units in transit between locations (not in `on_hand` anywhere until received).
    pub in_transit: u64,
    /// Whether the SKU was discontinued (it then refuses replenishment and new reservations).
    pub discontinued: bool,
}

/// One location's balances of a SKU.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LocationBalances {
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub below_reorder_point: bool,
    /// Units on their way here.
    pub in_transit: u64,
}

impl From<&SkuSummary> for SkuStateBody {
    fn from(state: &SkuSummary) -> Self {
        Self {
            sku: state.sku.to_string(),
            on_hand: state.on_hand,
            reserved: state.reserved,
            available: state.available,
            reorder_point: state.reorder_point,
            below_reorder_point: state.below_reorder_point,
            open_reservations: state.open_reservations,
            version: state.version,
            locations: state
                .locations
                .iter()
                .map(|(name, stock)| {
                    let balances = LocationBalances {
                        on_hand: stock.on_hand,
                        reserved: stock.reserved,
                        available: stock.available(),
                        reorder_point: stock.reorder_point,
                        below_reorder_point: stock.is_below_reorder_point(),
                        in_transit: stock.in_transit,
                    };
                    (name.clone(), balances)
                })
                .collect(),
            in_transit: state.in_transit,
            discontinued: state.discontinued,
        }
    }
}

pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}
