//! Commands: each request becomes one command for one SKU, carried out by the command handler.
//! Idempotency (the `Idempotency-Key` header, or the reservation id of a reserve) is handled
//! here once for all commands.

use super::{etag, parse_sku, SkuStateBody};
use crate::auth::{Permission, Principal};
use crate::extract::{JsonBody, RequestContext};
use crate::idempotency::{fingerprint, Claim, StoredResponse};
use crate::problem::{Problem, ProblemDocument};
use crate::state::SharedState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_core::domain::*;
use ledger_core::handler::{CommandContext, CommandOutcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplenishRequest {
    #[schema(value_type = u64, minimum = 1, maximum = 1_000_000_000)]
    pub quantity: Quantity,
    /// The delivery's document: purchase order, receipt, transfer number.
    #[schema(value_type = Option<String>, max_length = 128)]
    pub reference: Option<Reference>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// Your id for this hold; makes the request safe to retry. Generated when absent.
    #[schema(value_type = Option<String>, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    pub reservation_id: Option<ReservationId>,
    #[schema(value_type = Option<String>, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    pub order_id: Option<OrderId>,
    #[schema(value_type = u64, minimum = 1, maximum = 1_000_000_000)]
    pub quantity: Quantity,
    /// Seconds until the hold expires by itself; no expiry when absent.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2_592_000)]
    pub ttl_seconds: Option<TtlSeconds>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[schema(value_type = Option<String>, max_length = 500)]
    pub reason: Option<Reason>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    /// Signed correction of on hand, e.g. -3 after a cycle count found three fewer.
    #[schema(value_type = i64, minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: AdjustmentDelta,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Reason,
    #[schema(value_type = Option<String>, max_length = 128)]
    pub reference: Option<Reference>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReorderPointRequest {
    #[schema(value_type = u64, minimum = 0, maximum = 1_000_000_000)]
    pub reorder_point: ReorderPoint,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventBody {
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandResultBody {
    #[serde(flatten)]
    pub state: SkuStateBody,
    /// The store-wide position of the last event appended (`COMMIT/PREPARE`).
    pub position: Option<String>,
    pub events: Vec<EventBody>,
    /// True when nothing new was written because this repeated an earlier request.
    pub deduplicated: bool,
    /// For a reserve: the reservation's id (generated when the request had none).
    pub reservation_id: Option<String>,
}

struct Command {
    sku: Sku,
    command: SkuCommand,
    success: StatusCode,
    location: Option<String>,
    reservation_id: Option<String>,
    /// Used as the idempotency key when the request carries none (a reserve's reservation id).
    implicit_key: Option<String>,
}

impl Command {
    /// A command answered 200 with no new resource, as every command but reserve is.
    fn plain(sku: &str, command: SkuCommand) -> Result<Self, Problem> {
        Ok(Self {
            sku: parse_sku(sku)?,
            command,
            success: StatusCode::OK,
            location: None,
            reservation_id: None,
            implicit_key: None,
        })
    }

    fn for_reservation(mut self, reservation_id: &str) -> Self {
        self.reservation_id = Some(reservation_id.to_owned());
        self
    }
}

async fn run(
    state: &SharedState,
    principal: Principal,
    request: RequestContext,
    method: &str,
    path: &str,
    canonical_body: &str,
    command: Command,
) -> Response {
    let Some(key) = request
        .idempotency_key
        .clone()
        .or_else(|| command.implicit_key.clone())
    else {
        return execute(state, &principal, &request, None, command)
            .await
            .into_response();
    };
    let fingerprint = fingerprint(method, path, canonical_body);
    match state
        .idempotency
        .claim(&principal.name, &key, &fingerprint)
        .await
    {
        Err(problem) => problem.into_response(),
        Ok(Claim::Replay(stored)) => {
            metrics::counter!("ledger_idempotent_replays_total").increment(1);
            stored.into_response()
        }
        Ok(Claim::Proceed) => {
            let stored = execute(state, &principal, &request, Some(key.clone()), command).await;
            if stored.status.is_server_error() {
                state.idempotency.release(&principal.name, &key).await;
            } else if let Err(problem) = state
                .idempotency
                .complete(&principal.name, &key, &stored)
                .await
            {
                tracing::warn!(detail = %problem.detail, "could not store an idempotent response");
            }
            stored.into_response()
        }
    }
}

async fn execute(
    state: &SharedState,
    principal: &Principal,
    request: &RequestContext,
    idempotency_key: Option<String>,
    command: Command,
) -> StoredResponse {
    let context = CommandContext {
        correlation_id: Some(request.correlation_id.clone()),
        causation_id: Some(request.request_id.clone()),
        principal: Some(principal.name.clone()),
        idempotency_key,
        expected_version: request.if_match.map(Some),
    };
    let name = command.command.name();
    match state
        .writers
        .execute(&command.sku, command.command.clone(), context)
        .await
    {
        Ok(outcome) => {
            metrics::counter!("ledger_commands_total", "command" => name, "outcome" => "accepted")
                .increment(1);
            success(command, outcome)
        }
        Err(error) => {
            let problem = Problem::from(error);
            metrics::counter!("ledger_commands_total", "command" => name, "outcome" => problem.code)
                .increment(1);
            StoredResponse::problem(&problem)
        }
    }
}

fn success(command: Command, outcome: CommandOutcome) -> StoredResponse {
    let body = CommandResultBody {
        state: SkuStateBody::from(&outcome.state),
        position: outcome.position.map(|p| p.to_string()),
        events: outcome
            .events
            .iter()
            .map(|e| EventBody {
                version: e.version,
                event_type: e.event.event_type().to_owned(),
                data: e.event.encode(),
            })
            .collect(),
        deduplicated: outcome.deduplicated,
        reservation_id: command.reservation_id,
    };
    let mut stored = StoredResponse::json(
        command.success,
        &serde_json::to_value(&body).expect("response bodies serialise"),
    );
    stored.etag = outcome.state.version.map(etag);
    stored.location = command.location;
    stored
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/replenishments", tag = "commands",
    params(("sku" = String, Path, description = "The SKU"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the original answer"),
           ("If-Match" = Option<String>, Header, description = "Append only if the SKU is still at this version")),
    request_body = ReplenishRequest,
    responses((status = 200, description = "Stock added", body = CommandResultBody),
              (status = "4XX", description = "Refused; the problem says why", body = ProblemDocument, content_type = "application/problem+json"))
)]
pub async fn replenish(
    State(state): State<SharedState>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    request: RequestContext,
    body: JsonBody<ReplenishRequest>,
) -> Result<Response, Problem> {
    let principal = state.auth.authorize(&headers, Permission::Manage)?;
    let path = format!("/v1/skus/{sku}/replenishments");
    let command = Command::plain(
        &sku,
        SkuCommand::Replenish(ReplenishStock {
            quantity: body.value.quantity,
            reference: body.value.reference,
        }),
    )?;
    Ok(run(
        &state,
        principal,
        request,
        "POST",
        &path,
        &body.canonical,
        command,
    )
    .await)
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/reservations", tag = "commands",
    params(("sku" = String, Path, description = "The SKU"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the original answer; the reservation id does too"),
           ("If-Match" = Option<String>, Header, description = "Append only if the SKU is still at this version")),
    request_body = ReserveRequest,
    responses((status = 201, description = "Units held", body = CommandResultBody),
              (status = 409, description = "Insufficient stock (the problem carries `available`)", body = ProblemDocument, content_type = "application/problem+json"),
              (status = "4XX", description = "Refused; the problem says why", body = ProblemDocument, content_type = "application/problem+json"))
)]
pub async fn reserve(
    State(state): State<SharedState>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    request: RequestContext,
    body: JsonBody<ReserveRequest>,
) -> Result<Response, Problem> {
    let principal = state.auth.authorize(&headers, Permission::Reserve)?;
    let sku = parse_sku(&sku)?;
    let supplied = body.value.reservation_id.is_some();
    let reservation_id = match body.value.reservation_id {
        Some(id) => id,
        None => ReservationId::parse(&uuid::Uuid::new_v4().to_string())
            .expect("a UUID is a valid reservation id"),
    };
    let path = format!("/v1/skus/{sku}/reservations");
    let command = Command {
        location: Some(format!("/v1/skus/{sku}/reservations/{reservation_id}")),
        reservation_id: Some(reservation_id.to_string()),
        implicit_key: supplied.then(|| format!("reserve:{sku}:{reservation_id}")),
        command: SkuCommand::Reserve(ReserveStock {
            reservation_id,
            order_id: body.value.order_id,
            quantity: body.value.quantity,
            ttl_seconds: body.value.ttl_seconds,
        }),
        sku,
        success: StatusCode::CREATED,
    };
    Ok(run(
        &state,
        principal,
        request,
        "POST",
        &path,
        &body.canonical,
        command,
    )
    .await)
}

fn parse_reservation_id(value: &str) -> Result<ReservationId, Problem> {
    ReservationId::parse(value).map_err(|e| Problem::validation(&e))
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/reservations/{reservation_id}/release", tag = "commands",
    params(("sku" = String, Path, description = "The SKU"),
           ("reservation_id" = String, Path, description = "The reservation to end"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the original answer")),
    request_body(content = ReleaseRequest, description = "Optional; an empty body is allowed"),
    responses((status = 200, description = "Units returned to available", body = CommandResultBody),
              (status = "4XX", description = "Refused; the problem says why", body = ProblemDocument, content_type = "application/problem+json"))
)]
pub async fn release(
    State(state): State<SharedState>,
    Path((sku, reservation_id)): Path<(String, String)>,
    headers: HeaderMap,
    request: RequestContext,
    body: JsonBody<ReleaseRequest>,
) -> Result<Response, Problem> {
    let principal = state.auth.authorize(&headers, Permission::Reserve)?;
    let path = format!("/v1/skus/{sku}/reservations/{reservation_id}/release");
    let command = Command::plain(
        &sku,
        SkuCommand::Release(ReleaseReservation {
            reservation_id: parse_reservation_id(&reservation_id)?,
            reason: body.value.reason,
        }),
    )?
    .for_reservation(&reservation_id);
    Ok(run(
        &state,
        principal,
        request,
        "POST",
        &path,
        &body.canonical,
        command,
    )
    .await)
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/reservations/{reservation_id}/confirm", tag = "commands",
    params(("sku" = String, Path, description = "The SKU"),
           ("reservation_id" = String, Path, description = "The reservation whose units leave the building"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the original answer")),
    request_body(content = ConfirmRequest, description = "Optional; an empty body is allowed"),
    responses((status = 200, description = "On hand and reserved both dropped", body = CommandResultBody),
              (status = "4XX", description = "Refused; the problem says why", body = ProblemDocument, content_type = "application/problem+json"))
)]
pub async fn confirm(
    State(state): State<SharedState>,
    Path((sku, reservation_id)): Path<(String, String)>,
    headers: HeaderMap,
    request: RequestContext,
    body: JsonBody<ConfirmRequest>,
) -> Result<Response, Problem> {
    let principal = state.auth.authorize(&headers, Permission::Reserve)?;
    let path = format!("/v1/skus/{sku}/reservations/{reservation_id}/confirm");
    let command = Command::plain(
        &sku,
        SkuCommand::Confirm(ConfirmReservation {
            reservation_id: parse_reservation_id(&reservation_id)?,
        }),
    )?
    .for_reservation(&reservation_id);
    Ok(run(
        &state,
        principal,
        request,
        "POST",
        &path,
        &body.canonical,
        command,
    )
    .await)
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/adjustments", tag = "commands",
    params(("sku" = String, Path, description = "The SKU"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the original answer"),
           ("If-Match" = Option<String>, Header, description = "Append only if the SKU is still at this version")),
    request_body = AdjustRequest,
    responses((status = 200, description = "On hand corrected", body = CommandResultBody),
              (status = "4XX", description = "Refused; the problem says why", body = ProblemDocument, content_type = "application/problem+json"))
)]
pub async fn adjust(
    State(state): State<SharedState>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    request: RequestContext,
    body: JsonBody<AdjustRequest>,
) -> Result<Response, Problem> {
    let principal = state.auth.authorize(&headers, Permission::Manage)?;
    let path = format!("/v1/skus/{sku}/adjustments");
    let command = Command::plain(
        &sku,
        SkuCommand::Adjust(AdjustStock {
            delta: body.value.delta,
            reason: body.value.reason,
            reference: body.value.reference,
        }),
    )?;
    Ok(run(
        &state,
        principal,
        request,
        "POST",
        &path,
        &body.canonical,
        command,
    )
    .await)
}

#[utoipa::path(
    put, path = "/v1/skus/{sku}/reorder-point", tag = "commands",
    params(("sku" = String, Path, description = "The SKU"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the original answer"),
           ("If-Match" = Option<String>, Header, description = "Append only if the SKU is still at this version")),
    request_body = ReorderPointRequest,
    responses((status = 200, description = "Reorder point set", body = CommandResultBody),
              (status = "4XX", description = "Refused; the problem says why", body = ProblemDocument, content_type = "application/problem+json"))
)]
pub async fn set_reorder_point(
    State(state): State<SharedState>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    request: RequestContext,
    body: JsonBody<ReorderPointRequest>,
) -> Result<Response, Problem> {
    let principal = state.auth.authorize(&headers, Permission::Manage)?;
    let path = format!("/v1/skus/{sku}/reorder-point");
    let command = Command::plain(
        &sku,
        SkuCommand::SetReorderPoint(SetReorderPoint {
            reorder_point: body.value.reorder_point,
        }),
    )?;
    Ok(run(
        &state,
        principal,
        request,
        "PUT",
        &path,
        &body.canonical,
        command,
    )
    .await)
}
