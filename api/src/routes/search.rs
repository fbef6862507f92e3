//! Finding SKUs by the start of their code, for people who remember part of it: served from
//! the stock levels read model, so a SKU appears once its first event has been projected.

use super::bodies::{self, bodies};
use crate::contract::{self, Guarded, SkuQueryProblems};
use crate::extract::{Authorized, Query, Reading};
use crate::problem::Problem;
use crate::state::SharedState;
use axum::extract::State;
use axum::Json;
use ledger_domain::Sku;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SkuSearchQuery {
    /// Only SKUs whose code starts with this (case-sensitive; it follows the SKU rules, so a
    /// prefix of a valid SKU is accepted). Absent: every SKU.
    #[param(value_type = Option<contract::SkuValue>, inline)]
    pub prefix: Option<String>,
    /// Page on: only SKUs after this one (the last SKU of the previous page).
    #[param(value_type = Option<contract::SkuValue>, inline)]
    pub after_sku: Option<String>,
    /// Most rows per page (default: the largest page).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

fn sku_parameter(field: &'static str, value: Option<&str>) -> Result<Option<Sku>, Problem> {
    value
        .map(|value| Sku::parse(value).map_err(|e| Problem::validation(&e).with("field", field)))
        .transpose()
}

#[utoipa::path(
    get, path = "/v1/skus", tag = "queries",
    params(SkuSearchQuery),
    responses((status = 200, description = "SKUs whose code starts with the prefix, with their balances from the stock levels read model, by SKU", body = Vec<bodies::StockLevel>),
              SkuQueryProblems, Guarded)
)]
pub async fn skus(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    Query(query): Query<SkuSearchQuery>,
) -> Result<Json<Vec<bodies::StockLevel>>, Problem> {
    let limit =
        super::queries::page_limit(query.limit, ledger_projections::PAGE_SIZE_MAX as usize)?;
    let prefix = sku_parameter("prefix", query.prefix.as_deref())?;
    let after = sku_parameter("after_sku", query.after_sku.as_deref())?;
    let rows = state
        .read_models
        .stock_levels_by_prefix(prefix.as_ref(), limit as u64, after.as_ref())
        .await?;
    Ok(Json(bodies(rows)))
}
