//! Order commands and the order's reservations: reserve every line of an order (all or
//! nothing), release or confirm every open reservation of an order, list them. The logic is
//! [`crate::orders`]'s; these handlers only read the request and render the answer.

use super::bodies::{self, bodies};
use crate::answer::fingerprint;
use crate::auth::{Permission, Principal};
use crate::contract::{self, CommandProblems, Conflict, Guarded, OrderHeaders, OrderPath};
use crate::contract::{PathProblems, QueryProblems};
use crate::extract::{
    Authorized, CommandRequest, OrderTarget, Query, Reading, RequestContext, Reserving,
};
use crate::orders::{
    self, Actor, OrderEnded, OrderLine, OrderReservedBody, ReserveOrder, ORDER_LINES_MAX,
};
use crate::problem::Problem;
use crate::routes::queries::{page_limit, ReservationsQuery, StatusFilter, RESERVATIONS_PAGE_MAX};
use crate::state::SharedState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ledger_application::command::ReservationRights;
use ledger_domain::{LocationId, Quantity, Reason, Sku, TtlSeconds, ValidationError};
use serde::Deserialize;

/// One line of an order reserve.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    #[schema(schema_with = contract::sku)]
    pub sku: Sku,
    #[schema(schema_with = contract::quantity)]
    pub quantity: Quantity,
    /// Hold the units at this location; `default` when absent.
    #[schema(schema_with = contract::location_or_null)]
    #[serde(default)]
    pub location: Option<LocationId>,
    /// Seconds until the line's hold expires by itself; no expiry when absent.
    #[schema(schema_with = contract::ttl_seconds_or_null)]
    #[serde(default)]
    pub ttl_seconds: Option<TtlSeconds>,
}

/// An order reserve's lines: 1 to [`ORDER_LINES_MAX`] of them (checked by the handler, since
/// serde reads any length).
fn order_lines() -> utoipa::openapi::schema::Array {
    use utoipa::PartialSchema;
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(OrderLineRequest::schema())
        .min_items(Some(1))
        .max_items(Some(ORDER_LINES_MAX))
        .description(Some(
            "The order's lines, each reserved at one location like a single reserve; the \
             same SKU may appear on several lines.",
        ))
        .build()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveOrderRequest {
    #[schema(schema_with = order_lines)]
    pub lines: Vec<OrderLineRequest>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseOrderRequest {
    /// Recorded on every release.
    #[schema(schema_with = contract::reason_or_null)]
    #[serde(default)]
    pub reason: Option<Reason>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmOrderRequest {}

/// An order spans several SKUs, so there is no one version an `If-Match` could name: the
/// header is refused rather than silently ignored.
fn refuse_if_match(context: &RequestContext) -> Result<(), Problem> {
    match context.if_match {
        None => Ok(()),
        Some(_) => Err(Problem::bad_request(
            "invalid-if-match",
            "an order command spans several SKUs; If-Match (one SKU's version) does not apply",
        )
        .with("field", "If-Match")),
    }
}

/// Who acts, from the request: the principal, its rights, the correlation and request ids.
fn actor(principal: &Principal, context: &RequestContext) -> Actor {
    Actor {
        principal: principal.name.clone(),
        correlation_id: Some(context.correlation_id.clone()),
        causation_id: Some(context.request_id.clone()),
        rights: if principal.role.allows(Permission::EndAnyReservation) {
            ReservationRights::Any
        } else {
            ReservationRights::OwnOnly
        },
        traceparent: context.traceparent.clone(),
    }
}

#[utoipa::path(
    post, path = "/v1/orders/{order_id}/reservations", tag = "commands",
    params(OrderPath, OrderHeaders),
    request_body(content = ReserveOrderRequest, description = contract::body_limits()),
    responses((status = 201, description = "Every line held; the answer lists each line's reservation", body = OrderReservedBody,
               headers(("Location" = String, description = "The order's reservations"))),
              Conflict, CommandProblems, Guarded)
)]
pub async fn reserve_order(
    State(state): State<SharedState>,
    authorized: Authorized<Reserving>,
    target: OrderTarget,
    request: CommandRequest<ReserveOrderRequest>,
) -> Response {
    let CommandRequest {
        body,
        context,
        method,
        path,
        canonical_body,
    } = request;
    if let Err(problem) = refuse_if_match(&context) {
        return problem.into_response();
    }
    if body.lines.is_empty() || body.lines.len() > ORDER_LINES_MAX {
        return Problem::validation(&ValidationError::new(
            "lines",
            format!(
                "has {} lines; an order reserve takes 1 to {ORDER_LINES_MAX}",
                body.lines.len()
            ),
        ))
        .into_response();
    }
    let principal = authorized.principal;
    let order_id = target.order_id;
    let location = format!("/v1/orders/{order_id}/reservations");
    let reserve = ReserveOrder {
        scope: format!("principal:{}", principal.name),
        idempotency_key: context
            .idempotency_key
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        fingerprint: fingerprint(method.as_str(), &path, &canonical_body),
        actor: actor(&principal, &context),
        order_id,
        lines: body
            .lines
            .into_iter()
            .map(|line| OrderLine {
                sku: line.sku,
                quantity: line.quantity,
                location: line.location.unwrap_or_default(),
                ttl_seconds: line.ttl_seconds,
            })
            .collect(),
    };
    // The saga runs in a task of its own: a client that hangs up (or the request timeout)
    // must not stop it between two lines.
    let running = tokio::spawn(async move { orders::reserve_order(&state, reserve).await });
    match running.await {
        Ok(Ok(mut answer)) => {
            if answer.status == StatusCode::CREATED {
                answer.location = Some(location);
            }
            answer.into_response()
        }
        Ok(Err(problem)) => problem.into_response(),
        Err(error) => Problem::internal(&error).into_response(),
    }
}

#[utoipa::path(
    post, path = "/v1/orders/{order_id}/release", tag = "commands",
    params(OrderPath, OrderHeaders),
    request_body(content = ReleaseOrderRequest, description = contract::body_limits()),
    responses((status = 200, description = "Every open reservation of the order released (what this call released, and what it found ended)", body = OrderEnded),
              CommandProblems, Guarded)
)]
pub async fn release_order(
    State(state): State<SharedState>,
    authorized: Authorized<Reserving>,
    target: OrderTarget,
    request: CommandRequest<ReleaseOrderRequest>,
) -> Result<Json<OrderEnded>, Problem> {
    refuse_if_match(&request.context)?;
    let actor = actor(&authorized.principal, &request.context);
    let reason = request.body.reason;
    let running = tokio::spawn(async move {
        orders::release_order(&state, &target.order_id, &actor, reason.as_ref()).await
    });
    Ok(Json(running.await.map_err(|e| Problem::internal(&e))??))
}

#[utoipa::path(
    post, path = "/v1/orders/{order_id}/confirm", tag = "commands",
    params(OrderPath, OrderHeaders),
    request_body(content = ConfirmOrderRequest, description = contract::body_limits()),
    responses((status = 200, description = "Every open reservation of the order confirmed (what this call confirmed, and what it found ended)", body = OrderEnded),
              CommandProblems, Guarded)
)]
pub async fn confirm_order(
    State(state): State<SharedState>,
    authorized: Authorized<Reserving>,
    target: OrderTarget,
    request: CommandRequest<ConfirmOrderRequest>,
) -> Result<Json<OrderEnded>, Problem> {
    refuse_if_match(&request.context)?;
    let actor = actor(&authorized.principal, &request.context);
    let running =
        tokio::spawn(async move { orders::confirm_order(&state, &target.order_id, &actor).await });
    Ok(Json(running.await.map_err(|e| Problem::internal(&e))??))
}

#[utoipa::path(
    get, path = "/v1/orders/{order_id}/reservations", tag = "queries",
    params(OrderPath, ReservationsQuery),
    responses((status = 200, description = "The order's reservations on every SKU, by SKU and reservation id, from the reservations read model (which trails the log by a moment)", body = Vec<bodies::ReservationRow>),
              PathProblems, QueryProblems, Guarded)
)]
pub async fn order_reservations(
    State(state): State<SharedState>,
    _: Authorized<Reading>,
    target: OrderTarget,
    Query(query): Query<ReservationsQuery>,
) -> Result<Json<Vec<bodies::ReservationRow>>, Problem> {
    let limit = page_limit(query.limit, RESERVATIONS_PAGE_MAX)?;
    let rows = state
        .read_models
        .order_reservations(
            &target.order_id,
            query.status.map(StatusFilter::status),
            limit as u64,
        )
        .await?;
    Ok(Json(bodies(rows)))
}
