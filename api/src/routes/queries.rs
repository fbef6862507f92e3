//! Queries. A SKU's state comes from its stream (strongly consistent, so its ETag is the
//! version an `If-Match` must name); lists and reports come from the read models; history and
//! as-of state always come from the event store, because auditors must see the record itself,
//! never a cache of it.

use super::bodies::{self, bodies};
use super::{etag, SkuStateBody};
use crate::contract::{
    self, EntityTag, Guarded, LocationPath, NotFound, PathProblems, QueryProblems,
    ReservationNotFound, ReservationPath, SkuPath, SkuQueryProblems, TransferPath,
};
use crate::extract::{Auditing, Authorized, Query, Reading, SkuTarget};
use crate::problem::Problem;
use crate::state::SharedState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ledger_application::history::{
    history as read_history, state_as_of, AsOf, HistoryError, HistoryFilter,
    HISTORY_PAGE_ENTRIES_MAX,
};
use ledger_domain::{ReservationStatus, Sku};
use serde::{Deserialize, Serialize};

/// Default number of history entries per page when the request names none.
pub const HISTORY_PAGE_ENTRIES_DEFAULT: u64 = 100;

/// Most reservations one page lists.
pub const RESERVATIONS_PAGE_MAX: usize = ledger_projections::PAGE_SIZE_MAX as usize;

impl From<HistoryError> for Problem {
    fn from(error: HistoryError) -> Self {
        match error {
            HistoryError::Store(error) => Problem::from(error),
            corrupt @ HistoryError::Undecodable { .. } => Problem::internal(&corrupt),
        }
    }
}

fn with_etag(body: SkuStateBody) -> Response {
    let tag = body.version.map(etag);
    let mut response = Json(body).into_response();
    if let Some(tag) = tag {
        if let Ok(value) = tag.parse() {
            response.headers_mut().insert(header::ETAG, value);
        }
    }
    response
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}", tag = "queries",
    params(SkuPath),
    responses((status = 200, description = "The SKU's balances; a SKU with no movements reads as zero", body = SkuStateBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version; absent before its first event"))),
              PathProblems, Guarded)
)]
pub async fn sku_state(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    target: SkuTarget,
) -> Result<Response, Problem> {
    let current = state.writers.current(&target.sku).await?;
    Ok(with_etag(SkuStateBody::from(&current)))
}

/// The SKU's state folded from its stream now (snapshot and tail).
async fn load(
    state: &SharedState,
    sku: &Sku,
) -> Result<ledger_application::loaded::LoadedSku, Problem> {
    state
        .writers
        .handler()
        .load(sku)
        .await
        .map_err(Problem::from)
}

/// One reservation as its SKU's stream has it now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReservationBody {
    pub sku: String,
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub ttl_seconds: Option<u64>,
    pub expires_at: Option<DateTime<Utc>>,
    /// open, released, expired or confirmed.
    pub status: String,
    /// The location holding (or that held) the units.
    pub location: String,
    /// The SKU's version this answer was read at (also the ETag).
    pub version: Option<u64>,
}

/// The reservation a reserve's `Location` header names, read from the SKU's stream (so it is
/// there the moment the reserve was answered, unlike the reservations read model).
#[utoipa::path(
    get, path = "/v1/skus/{sku}/reservations/{reservation_id}", tag = "queries",
    params(ReservationPath),
    responses((status = 200, description = "The reservation, from the SKU's stream", body = ReservationBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version"))),
              ReservationNotFound, PathProblems, Guarded)
)]
pub async fn reservation(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    target: SkuTarget,
) -> Result<Response, Problem> {
    let reservation_id = target.reservation().clone();
    let loaded = load(&state, &target.sku).await?;
    let Some(found) = loaded.state.reservations.get(reservation_id.as_str()) else {
        return Err(Problem::from(
            ledger_domain::DomainError::ReservationNotFound {
                reservation_id: reservation_id.to_string(),
            },
        ));
    };
    let version = loaded.state.version;
    let body = ReservationBody {
        sku: target.sku.to_string(),
        reservation_id: found.reservation_id.clone(),
        order_id: found.order_id.clone(),
        quantity: found.quantity,
        ttl_seconds: found.ttl_seconds,
        expires_at: found.expires_at,
        status: found.status.as_str().to_owned(),
        location: found.location.clone(),
        version,
    };
    Ok(tagged(body, version))
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Open,
    Released,
    Expired,
    Confirmed,
}

impl StatusFilter {
    pub(crate) fn status(self) -> ReservationStatus {
        match self {
            Self::Open => ReservationStatus::Open,
            Self::Released => ReservationStatus::Released,
            Self::Expired => ReservationStatus::Expired,
            Self::Confirmed => ReservationStatus::Confirmed,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReservationsQuery {
    /// Only reservations in this status.
    #[param(inline)]
    pub status: Option<StatusFilter>,
    /// Most reservations to list (default: the largest page).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}/reservations", tag = "queries",
    params(SkuPath, ReservationsQuery),
    responses((status = 200, description = "The SKU's reservations from the reservations read model", body = Vec<bodies::ReservationRow>),
              PathProblems, QueryProblems, Guarded)
)]
pub async fn reservations(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    target: SkuTarget,
    Query(query): Query<ReservationsQuery>,
) -> Result<Json<Vec<bodies::ReservationRow>>, Problem> {
    let limit = page_limit(query.limit, RESERVATIONS_PAGE_MAX)? as u64;
    let status = query.status.map(StatusFilter::status);
    let rows = state
        .read_models
        .reservations(&target.sku, status, limit)
        .await?;
    Ok(Json(bodies(rows)))
}

pub(crate) fn page_limit(requested: Option<usize>, max: usize) -> Result<usize, Problem> {
    match requested {
        None => Ok(max),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(limit) => Err(Problem::bad_request(
            "invalid-limit",
            format!("limit must be between 1 and {max}, got {limit}"),
        )
        .with("field", "limit")),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only movements recorded at or after this moment (RFC 3339); before `to` when both are
    /// given (400 `invalid-range` otherwise).
    pub from: Option<DateTime<Utc>>,
    /// Only movements recorded before this moment (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page on: only movements after this version (the previous page's `next_after_version`).
    #[param(value_type = Option<contract::Version>, inline)]
    pub after_version: Option<u64>,
    /// Most movements per page (default 100).
    #[param(value_type = Option<contract::HistoryPageLimit>, inline)]
    pub limit: Option<u64>,
    /// Also return the SKU's state as of this moment (RFC 3339), replayed from the stream. Not
    /// together with `at_version` (400 `conflicting-parameters`).
    pub as_of: Option<DateTime<Utc>>,
    /// Also return the SKU's state right after this version, replayed from the stream. Not
    /// together with `as_of`.
    #[param(value_type = Option<contract::Version>, inline)]
    pub at_version: Option<u64>,
    /// Only the movements at this location, each with that location's balances before and
    /// after it (instead of the SKU's).
    #[param(value_type = Option<contract::LocationValue>, inline)]
    pub location: Option<ledger_domain::LocationId>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryBody {
    pub sku: String,
    #[schema(schema_with = contract::history_entries)]
    pub entries: Vec<ledger_application::history::HistoryEntry>,
    /// Pass as `after_version` for the next page; absent on the last page.
    pub next_after_version: Option<u64>,
    /// The state as of `as_of` or `at_version`, when one was asked for.
    pub state: Option<SkuStateBody>,
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}/history", tag = "queries",
    params(SkuPath, HistoryQuery),
    responses((status = 200, description = "Movements replayed from the event store", body = HistoryBody),
              PathProblems, QueryProblems, Guarded)
)]
pub async fn history(
    State(state): State<SharedState>,
    _: Authorized<Auditing>,
    target: SkuTarget,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryBody>, Problem> {
    let sku = target.sku;
    let limit = match query.limit {
        None => HISTORY_PAGE_ENTRIES_DEFAULT,
        Some(limit) => page_limit(Some(limit as usize), HISTORY_PAGE_ENTRIES_MAX as usize)? as u64,
    };
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from >= to {
            return Err(
                Problem::bad_request("invalid-range", "`from` must be before `to`")
                    .with("field", "from"),
            );
        }
    }
    let as_of = match (query.as_of, query.at_version) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "conflicting-parameters",
                "give either `as_of` or `at_version`, not both",
            )
            .with("field", "as_of"))
        }
        (Some(moment), None) => Some(AsOf::Time(moment)),
        (None, Some(version)) => Some(AsOf::Version(version)),
        (None, None) => None,
    };
    let filter = HistoryFilter {
        from: query.from,
        to: query.to,
        after_version: query.after_version,
        limit,
        location: query.location.map(|l| l.as_str().to_owned()),
    };
    let resume = query.after_version.and_then(|version| {
        state
            .history_cursors
            .get(&sku, version, filter.location.as_deref())
    });
    let page = read_history(state.store.as_ref(), &sku, &filter, resume.as_ref()).await?;
    if let Some(cursor) = page.next.clone() {
        state.history_cursors.remember(&sku, cursor);
    }
    let past = match as_of {
        Some(as_of) => Some(SkuStateBody::from(
            &state_as_of(state.store.as_ref(), &sku, as_of)
                .await?
                .summary(),
        )),
        None => None,
    };
    Ok(Json(HistoryBody {
        sku: sku.to_string(),
        entries: page.entries,
        next_after_version: page.next_after_version,
        state: past,
    }))
}

// Read-model queries: served from the projections, which trail the streams by their lag
// (see `/v1/projections`).

impl From<ledger_projections::ProjectionError> for Problem {
    fn from(error: ledger_projections::ProjectionError) -> Self {
        match error {
            ledger_projections::ProjectionError::UnknownProjection { .. } => Problem::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown-projection",
                "No such projection",
                error.to_string(),
            ),
            other => Problem::unavailable(&other),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SkuPageQuery {
    /// Page on: only SKUs after this one (the last SKU of the previous page).
    #[param(value_type = Option<contract::SkuValue>, inline)]
    pub after_sku: Option<String>,
    /// Most rows per page (default: the largest page).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

fn sku_page(query: &SkuPageQuery) -> Result<(u64, Option<ledger_domain::Sku>), Problem> {
    let limit = page_limit(query.limit, ledger_projections::PAGE_SIZE_MAX as usize)? as u64;
    let after = query
        .after_sku
        .as_deref()
        .map(|value| Sku::parse(value).map_err(|e| Problem::validation(&e)))
        .transpose()?;
    Ok((limit, after))
}

#[utoipa::path(
    get, path = "/v1/low-stock", tag = "queries",
    params(SkuPageQuery),
    responses((status = 200, description = "SKUs whose available stock is below their reorder point, by SKU", body = Vec<bodies::StockLevel>),
              SkuQueryProblems, Guarded)
)]
pub async fn low_stock(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    Query(query): Query<SkuPageQuery>,
) -> Result<Json<Vec<bodies::StockLevel>>, Problem> {
    let (limit, after) = sku_page(&query)?;
    let rows = state
        .read_models
        .stock_levels_below_reorder_point(limit, after.as_ref())
        .await?;
    Ok(Json(bodies(rows)))
}

#[utoipa::path(
    get, path = "/v1/alerts", tag = "queries",
    params(SkuPageQuery),
    responses((status = 200, description = "Open low-stock alerts, by SKU", body = Vec<bodies::LowStockAlert>),
              SkuQueryProblems, Guarded)
)]
pub async fn open_alerts(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    Query(query): Query<SkuPageQuery>,
) -> Result<Json<Vec<bodies::LowStockAlert>>, Problem> {
    let (limit, after) = sku_page(&query)?;
    let rows = state.read_models.open_alerts(limit, after.as_ref()).await?;
    Ok(Json(bodies(rows)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    /// Most rows (default: the largest page).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}/alerts", tag = "queries",
    params(SkuPath, LimitQuery),
    responses((status = 200, description = "The SKU's low-stock alerts, open and closed, newest first", body = Vec<bodies::LowStockAlert>),
              PathProblems, QueryProblems, Guarded)
)]
pub async fn sku_alerts(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    target: SkuTarget,
    Query(query): Query<LimitQuery>,
) -> Result<Json<Vec<bodies::LowStockAlert>>, Problem> {
    let limit = page_limit(query.limit, ledger_projections::PAGE_SIZE_MAX as usize)? as u64;
    let rows = state.read_models.alert_history(&target.sku, limit).await?;
    Ok(Json(bodies(rows)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MovementsQuery {
    /// Only movements recorded at or after this moment (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only movements recorded before this moment (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page on: only movements after this version.
    #[param(value_type = Option<contract::Version>, inline)]
    pub after_version: Option<u64>,
    /// Most movements per page (default 100).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}/movements", tag = "queries",
    params(SkuPath, MovementsQuery),
    responses((status = 200, description = "The SKU's rows of the movement ledger (a read model), in version order", body = Vec<bodies::Movement>),
              PathProblems, QueryProblems, Guarded)
)]
pub async fn movements(
    State(state): State<SharedState>,
    _: Authorized<Auditing>,
    target: SkuTarget,
    Query(query): Query<MovementsQuery>,
) -> Result<Json<Vec<bodies::Movement>>, Problem> {
    let limit = match query.limit {
        None => HISTORY_PAGE_ENTRIES_DEFAULT,
        Some(limit) => page_limit(Some(limit), ledger_projections::PAGE_SIZE_MAX as usize)? as u64,
    };
    let filter = ledger_projections::MovementFilter {
        from: query.from,
        to: query.to,
        after_version: query.after_version,
        limit,
    };
    let rows = state.read_models.movements(&target.sku, filter).await?;
    Ok(Json(bodies(rows)))
}

#[utoipa::path(
    get, path = "/v1/projections", tag = "queries",
    responses((status = 200, description = "Each projection's checkpoint, the store's head, lag and last error", body = Vec<bodies::ProjectionStatus>),
              Guarded)
)]
pub async fn projection_status(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
) -> Result<Json<Vec<bodies::ProjectionStatus>>, Problem> {
    let statuses = state.read_models.status(state.store.as_ref()).await?;
    Ok(Json(bodies(statuses)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    /// Only notifications with a larger id: the last id you processed (0 to start).
    #[param(value_type = Option<contract::NotificationId>, inline)]
    pub after_id: Option<i64>,
    /// Most notifications (default: the largest page).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/notifications", tag = "queries",
    params(NotificationsQuery),
    responses((status = 200, description = "The low-stock outbox in id order; consume exactly once by remembering the last id", body = Vec<bodies::Notification>),
              QueryProblems, Guarded)
)]
pub async fn notifications(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    Query(query): Query<NotificationsQuery>,
) -> Result<Json<Vec<bodies::Notification>>, Problem> {
    let limit = page_limit(query.limit, ledger_projections::PAGE_SIZE_MAX as usize)? as u64;
    let rows = state
        .read_models
        .notifications_after(query.after_id.unwrap_or(0), limit)
        .await?;
    Ok(Json(bodies(rows)))
}

/// A SKU's catalogue entry, from its stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CatalogueBody {
    pub sku: String,
    pub name: String,
    pub unit: String,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub discontinued: bool,
    /// The SKU's version this answer was read at (also the ETag).
    pub version: Option<u64>,
}

fn tagged<T: Serialize>(body: T, version: Option<u64>) -> Response {
    let mut response = Json(body).into_response();
    if let Some(tag) = version.map(etag).and_then(|t| t.parse().ok()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}/catalogue", tag = "queries",
    params(SkuPath),
    responses((status = 200, description = "The SKU's catalogue entry, from its stream", body = CatalogueBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version"))),
              NotFound, PathProblems, Guarded)
)]
pub async fn catalogue(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    target: SkuTarget,
) -> Result<Response, Problem> {
    let loaded = load(&state, &target.sku).await?;
    let Some(entry) = &loaded.state.catalogue else {
        return Err(Problem::from(ledger_domain::DomainError::SkuNotRegistered));
    };
    let version = loaded.state.version;
    Ok(tagged(
        CatalogueBody {
            sku: target.sku.to_string(),
            name: entry.name.clone(),
            unit: entry.unit.clone(),
            attributes: entry.attributes.clone(),
            discontinued: loaded.state.discontinued,
            version,
        },
        version,
    ))
}

/// One transfer as its SKU's stream has it now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransferBody {
    pub sku: String,
    pub transfer_id: String,
    pub from_location: String,
    pub to_location: String,
    pub quantity: u64,
    pub reference: Option<String>,
    /// in_transit, received or cancelled.
    pub status: String,
    pub quantity_received: Option<u64>,
    /// The SKU's version this answer was read at (also the ETag).
    pub version: Option<u64>,
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}/transfers/{transfer_id}", tag = "queries",
    params(TransferPath),
    responses((status = 200, description = "The transfer, from the SKU's stream", body = TransferBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version"))),
              NotFound, PathProblems, Guarded)
)]
pub async fn transfer(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    target: SkuTarget,
) -> Result<Response, Problem> {
    let transfer_id = target.transfer().clone();
    let loaded = load(&state, &target.sku).await?;
    let Some(found) = loaded.state.transfers.get(transfer_id.as_str()) else {
        return Err(Problem::from(
            ledger_domain::DomainError::TransferNotFound {
                transfer_id: transfer_id.to_string(),
            },
        ));
    };
    let version = loaded.state.version;
    Ok(tagged(
        TransferBody {
            sku: target.sku.to_string(),
            transfer_id: found.transfer_id.clone(),
            from_location: found.from_location.clone(),
            to_location: found.to_location.clone(),
            quantity: found.quantity,
            reference: found.reference.clone(),
            status: found.status.as_str().to_owned(),
            quantity_received: found.quantity_received,
            version,
        },
        version,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LocationStockQuery {
    /// Only SKUs whose available stock here is below their reorder point here.
    pub below_reorder_point: Option<bool>,
    /// Page on: only SKUs after this one (the last SKU of the previous page).
    #[param(value_type = Option<contract::SkuValue>, inline)]
    pub after_sku: Option<String>,
    /// Most rows per page (default: the largest page).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

/// The ETag of a location's stock list: it changes whenever any row of the location does, and
/// names the page asked for, so one value never stands for two different answers.
fn location_tag(changes: u64, query: &LocationStockQuery) -> String {
    format!(
        "\"{changes}-{}-{}-{}\"",
        u8::from(query.below_reorder_point.unwrap_or(false)),
        query.after_sku.as_deref().unwrap_or(""),
        query.limit.unwrap_or(0)
    )
}

#[utoipa::path(
    get, path = "/v1/locations/{location}/stock", tag = "queries",
    params(LocationPath, LocationStockQuery,
           ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a previous answer: 304 with no body when nothing changed since")),
    responses((status = 200, description = "Every SKU held at the location (a read model), by SKU", body = Vec<bodies::LocationStock>,
               headers(("ETag" = String, description = "Changes whenever any SKU's row at the location does"))),
              (status = 304, description = "Nothing changed since the `If-None-Match` tag"),
              PathProblems, SkuQueryProblems, Guarded)
)]
pub async fn location_stock(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    axum::extract::Path(location): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    Query(query): Query<LocationStockQuery>,
) -> Result<Response, Problem> {
    let location =
        ledger_domain::LocationId::parse(&location).map_err(|e| Problem::validation(&e))?;
    let (limit, after) = sku_page(&SkuPageQuery {
        after_sku: query.after_sku.clone(),
        limit: query.limit,
    })?;
    let changes = state.read_models.location_changes(&location).await?;
    let tag = location_tag(changes.unwrap_or(0), &query);
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == tag
        });
    if unchanged {
        let mut response = axum::http::StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = tag.parse() {
            response.headers_mut().insert(header::ETAG, value);
        }
        return Ok(response);
    }
    let rows = state
        .read_models
        .location_stock(
            &location,
            &ledger_projections::LocationStockFilter {
                below_reorder_point: query.below_reorder_point.unwrap_or(false),
                after_sku: after,
                limit,
            },
        )
        .await?;
    let mut response = Json(bodies::<_, bodies::LocationStock>(rows)).into_response();
    if let Ok(value) = tag.parse() {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[utoipa::path(
    get, path = "/v1/locations/{location}/alerts", tag = "queries",
    params(LocationPath, SkuPageQuery),
    responses((status = 200, description = "Open low-stock alerts at the location (its available against its reorder point), by SKU", body = Vec<bodies::LocationAlert>),
              PathProblems, SkuQueryProblems, Guarded)
)]
pub async fn location_alerts(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    axum::extract::Path(location): axum::extract::Path<String>,
    Query(query): Query<SkuPageQuery>,
) -> Result<Json<Vec<bodies::LocationAlert>>, Problem> {
    let location =
        ledger_domain::LocationId::parse(&location).map_err(|e| Problem::validation(&e))?;
    let (limit, after) = sku_page(&query)?;
    let rows = state
        .read_models
        .location_alerts(
            &location,
            false,
            after.as_ref().map(|sku| (sku, None)),
            limit,
        )
        .await?;
    Ok(Json(bodies(rows)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TransfersQuery {
    /// Only transfers from or to this location.
    #[param(value_type = Option<contract::LocationValue>, inline)]
    pub location: Option<ledger_domain::LocationId>,
    /// Most rows (default: the largest page).
    #[param(value_type = Option<contract::PageLimit>, inline)]
    pub limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/transfers", tag = "queries",
    params(TransfersQuery),
    responses((status = 200, description = "Transfers in transit (a read model), oldest dispatch first", body = Vec<bodies::Transfer>),
              QueryProblems, Guarded)
)]
pub async fn transfers_in_transit(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    Query(query): Query<TransfersQuery>,
) -> Result<Json<Vec<bodies::Transfer>>, Problem> {
    let limit = page_limit(query.limit, ledger_projections::PAGE_SIZE_MAX as usize)? as u64;
    let rows = state
        .read_models
        .transfers_in_transit(query.location.as_ref(), limit)
        .await?;
    Ok(Json(bodies(rows)))
}
