//! Commands: each request becomes one command for one SKU, carried out by the command handler.
//! Idempotency (the `Idempotency-Key` header, or the reservation id of a reserve) is handled
//! here once for all commands.

use super::{etag, SkuStateBody};
use crate::answer::{fingerprint, RenderedAnswer};
use crate::auth::{Permission, Principal};
use crate::contract::{
    self, CommandHeaders, CommandProblems, Conflict, EntityTag, Guarded, NotFound,
    ReservationNotFound, ReservationPath, SkuPath, TransferPath,
};
use crate::extract::{
    Authorized, CommandRequest, Managing, RequestContext, Requirement, Reserving, SkuTarget,
};
use crate::problem::Problem;
use crate::state::SharedState;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger_application::command::{CommandContext, CommandOutcome, KeyScope, ReservationRights};
use ledger_domain::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplenishRequest {
    #[schema(schema_with = contract::quantity)]
    pub quantity: Quantity,
    /// The delivery's document: purchase order, receipt, transfer number.
    #[schema(schema_with = contract::reference_or_null)]
    pub reference: Option<Reference>,
    #[schema(schema_with = contract::location_or_null)]
    #[serde(default)]
    pub location: Option<LocationId>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// Your id for this hold; makes the request safe to retry (the same id with a different
    /// request is refused, 422 `idempotency-key-reused`). Generated when absent.
    #[schema(schema_with = contract::reservation_id_or_null)]
    pub reservation_id: Option<ReservationId>,
    #[schema(schema_with = contract::order_id_or_null)]
    pub order_id: Option<OrderId>,
    #[schema(schema_with = contract::quantity)]
    pub quantity: Quantity,
    /// Seconds until the hold expires by itself; no expiry when absent.
    #[schema(schema_with = contract::ttl_seconds_or_null)]
    pub ttl_seconds: Option<TtlSeconds>,
    /// Hold the units at this location only (a store's sale); `default` when neither this nor
    /// `allocation` is given.
    #[schema(schema_with = contract::location_or_null)]
    #[serde(default)]
    pub location: Option<LocationId>,
    /// Let the ledger choose the location (instead of `location`). The whole quantity is held
    /// at one location; the answer's `location` says which.
    #[schema(schema_with = contract::allocation_or_null)]
    #[serde(default)]
    pub allocation: Option<AllocationRequest>,
}

/// How a reserve may choose its location (described by `contract::allocation_or_null`).
#[derive(Debug, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum AllocationRequest {
    /// The first of `locations` (1 to 32, no repeats) with the whole quantity available.
    Preference { locations: Vec<LocationId> },
    /// The location with the most units available.
    MostAvailable,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[schema(schema_with = contract::reason_or_null)]
    pub reason: Option<Reason>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    /// Signed correction of on hand, e.g. -3 after a cycle count found three fewer.
    #[schema(schema_with = contract::adjustment_delta)]
    pub delta: AdjustmentDelta,
    #[schema(schema_with = contract::reason)]
    pub reason: Reason,
    #[schema(schema_with = contract::reference_or_null)]
    pub reference: Option<Reference>,
    #[schema(schema_with = contract::location_or_null)]
    #[serde(default)]
    pub location: Option<LocationId>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReorderPointRequest {
    #[schema(schema_with = contract::reorder_point)]
    pub reorder_point: ReorderPoint,
    #[schema(schema_with = contract::location_or_null)]
    #[serde(default)]
    pub location: Option<LocationId>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Your id for this transfer; makes the request safe to retry. Generated when absent.
    #[schema(schema_with = contract::transfer_id_or_null)]
    pub transfer_id: Option<TransferId>,
    /// Where the units leave (only units available there, not reserved, can leave).
    #[schema(schema_with = contract::location_required)]
    pub from_location: LocationId,
    /// Where the units go; not `from_location`.
    #[schema(schema_with = contract::location_required)]
    pub to_location: LocationId,
    #[schema(schema_with = contract::quantity)]
    pub quantity: Quantity,
    /// The dispatch note or other document.
    #[schema(schema_with = contract::reference_or_null)]
    pub reference: Option<Reference>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    #[schema(schema_with = contract::quantity_received_or_null)]
    pub quantity_received: Option<u64>,
    /// Why fewer units arrived than were dispatched; required then.
    #[schema(schema_with = contract::reason_or_null)]
    pub discrepancy_reason: Option<Reason>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelTransferRequest {
    #[schema(schema_with = contract::reason_or_null)]
    pub reason: Option<Reason>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(schema_with = contract::product_name)]
    pub name: ProductName,
    #[schema(schema_with = contract::unit)]
    pub unit: Unit,
    #[schema(schema_with = contract::attributes_or_null)]
    #[serde(default)]
    pub attributes: Option<Attributes>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCatalogueRequest {
    #[schema(schema_with = contract::product_name_or_null)]
    #[serde(default)]
    pub name: Option<ProductName>,
    #[schema(schema_with = contract::unit_or_null)]
    #[serde(default)]
    pub unit: Option<Unit>,
    #[schema(schema_with = contract::attributes_or_null)]
    #[serde(default)]
    pub attributes: Option<Attributes>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscontinueRequest {
    #[schema(schema_with = contract::reason_or_null)]
    #[serde(default)]
    pub reason: Option<Reason>,
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
    /// For a reserve: the location holding the units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// For a dispatch: the transfer's id (generated when the request had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
}

/// A command with how its success is answered.
pub struct Command {
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
    fn plain(target: SkuTarget, command: SkuCommand) -> Self {
        Self {
            sku: target.sku,
            command,
            success: StatusCode::OK,
            location: None,
            reservation_id: target.reservation_id.map(|id| id.to_string()),
            implicit_key: None,
        }
    }
}

/// A request body that names one command for the SKU (and reservation) of its path.
pub trait CommandBody: DeserializeOwned + Send + 'static {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem>;
}

impl CommandBody for ReplenishRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        Ok(Command::plain(
            target,
            SkuCommand::Replenish(ReplenishStock {
                quantity: self.quantity,
                reference: self.reference,
                location: self.location.unwrap_or_default(),
            }),
        ))
    }
}

impl CommandBody for ReserveRequest {
    /// A reserve creates a resource (201 with its `Location`), and its reservation id, when the
    /// client chose it, doubles as the idempotency key.
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let allocation = match (self.location, self.allocation) {
            (Some(_), Some(_)) => {
                return Err(Problem::validation(&ValidationError::new(
                    "allocation",
                    "give either `location` or `allocation`, not both",
                )))
            }
            (Some(location), None) => Allocation::At(location),
            (None, None) => Allocation::default(),
            (None, Some(AllocationRequest::MostAvailable)) => Allocation::MostAvailable,
            (None, Some(AllocationRequest::Preference { locations })) => {
                Allocation::preference(locations).map_err(|e| Problem::validation(&e))?
            }
        };
        let sku = target.sku;
        let reservation_id = self.reservation_id.clone().unwrap_or_else(|| {
            ReservationId::parse(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid reservation id")
        });
        Ok(Command {
            location: Some(format!("/v1/skus/{sku}/reservations/{reservation_id}")),
            reservation_id: Some(reservation_id.to_string()),
            implicit_key: self.reservation_id.map(|id| format!("reserve:{sku}:{id}")),
            command: SkuCommand::Reserve(ReserveStock {
                reservation_id,
                order_id: self.order_id,
                quantity: self.quantity,
                ttl_seconds: self.ttl_seconds,
                allocation,
            }),
            sku,
            success: StatusCode::CREATED,
        })
    }
}

impl CommandBody for ReleaseRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let reservation_id = target.reservation().clone();
        let command = SkuCommand::Release(ReleaseReservation {
            reservation_id,
            reason: self.reason,
        });
        Ok(Command::plain(target, command))
    }
}

impl CommandBody for ConfirmRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let reservation_id = target.reservation().clone();
        Ok(Command::plain(
            target,
            SkuCommand::Confirm(ConfirmReservation { reservation_id }),
        ))
    }
}

impl CommandBody for AdjustRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        Ok(Command::plain(
            target,
            SkuCommand::Adjust(AdjustStock {
                delta: self.delta,
                reason: self.reason,
                reference: self.reference,
                location: self.location.unwrap_or_default(),
            }),
        ))
    }
}

impl CommandBody for ReorderPointRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        Ok(Command::plain(
            target,
            SkuCommand::SetReorderPoint(SetReorderPoint {
                reorder_point: self.reorder_point,
                location: self.location.unwrap_or_default(),
            }),
        ))
    }
}

impl CommandBody for TransferRequest {
    /// A dispatch creates a resource (201 with its `Location`), and its transfer id, when the
    /// client chose it, doubles as the idempotency key.
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let sku = target.sku;
        let transfer_id = self.transfer_id.clone().unwrap_or_else(|| {
            TransferId::parse(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid transfer id")
        });
        let dispatch = DispatchTransfer {
            transfer_id: transfer_id.clone(),
            from_location: self.from_location,
            to_location: self.to_location,
            quantity: self.quantity,
            reference: self.reference,
        };
        Ok(Command {
            location: Some(format!("/v1/skus/{sku}/transfers/{transfer_id}")),
            reservation_id: None,
            implicit_key: self.transfer_id.map(|id| format!("transfer:{sku}:{id}")),
            command: SkuCommand::DispatchTransfer(dispatch),
            sku,
            success: StatusCode::CREATED,
        })
    }
}

impl CommandBody for ReceiveRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        if let Some(received) = self.quantity_received {
            if received > QUANTITY_MAX {
                return Err(Problem::validation(&ValidationError::new(
                    "quantity_received",
                    format!("is {received}; it must be between 0 and {QUANTITY_MAX}"),
                )));
            }
        }
        let transfer_id = target.transfer().clone();
        let command = SkuCommand::ReceiveTransfer(ReceiveTransfer {
            transfer_id,
            quantity_received: self.quantity_received,
            discrepancy_reason: self.discrepancy_reason,
        });
        Ok(Command::plain(target, command))
    }
}

impl CommandBody for CancelTransferRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let transfer_id = target.transfer().clone();
        let command = SkuCommand::CancelTransfer(CancelTransfer {
            transfer_id,
            reason: self.reason,
        });
        Ok(Command::plain(target, command))
    }
}

impl CommandBody for RegisterRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let command = SkuCommand::Register(RegisterSku {
            name: self.name,
            unit: self.unit,
            attributes: self.attributes.unwrap_or_default(),
        });
        Ok(Command::plain(target, command))
    }
}

impl CommandBody for UpdateCatalogueRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let command = SkuCommand::Update(UpdateSku {
            name: self.name,
            unit: self.unit,
            attributes: self.attributes,
        });
        Ok(Command::plain(target, command))
    }
}

impl CommandBody for DiscontinueRequest {
    fn into_command(self, target: SkuTarget) -> Result<Command, Problem> {
        let command = SkuCommand::Discontinue(DiscontinueSku {
            reason: self.reason,
        });
        Ok(Command::plain(target, command))
    }
}

/// Everything a command route takes from its request: the principal (allowed what `R`
/// requires), the SKU and reservation of the path, and the command request itself.
pub struct CommandCall<R, T> {
    authorized: Authorized<R>,
    target: SkuTarget,
    request: CommandRequest<T>,
}

impl<R: Requirement, T: DeserializeOwned + Send> FromRequest<SharedState> for CommandCall<R, T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, Problem> {
        let (mut parts, body) = request.into_parts();
        let authorized = Authorized::<R>::from_request_parts(&mut parts, state).await?;
        let target = SkuTarget::from_request_parts(&mut parts, state).await?;
        let request = CommandRequest::from_request(Request::from_parts(parts, body), state).await?;
        Ok(Self {
            authorized,
            target,
            request,
        })
    }
}

impl<R, T: CommandBody> CommandCall<R, T> {
    /// Carry the command out (once per idempotency key) and answer it.
    async fn carry_out(self, state: &SharedState) -> Response {
        let CommandRequest {
            body,
            context,
            method,
            path,
            canonical_body,
        } = self.request;
        let fingerprint = fingerprint(method.as_str(), &path, &canonical_body);
        let command = match body.into_command(self.target) {
            Ok(command) => command,
            Err(problem) => return problem.into_response(),
        };
        run(
            state,
            self.authorized.principal,
            context,
            fingerprint,
            command,
        )
        .await
        .into_response()
    }
}

/// Carry `command` out for `principal`. With an idempotency key (the header, or a reserve's
/// reservation id), the event store keeps the answer with the command's events: a retry gets
/// the same answer back, and the same key with another request is refused.
async fn run(
    state: &SharedState,
    principal: Principal,
    request: RequestContext,
    fingerprint: String,
    command: Command,
) -> RenderedAnswer {
    let idempotency_key = request
        .idempotency_key
        .clone()
        .or_else(|| command.implicit_key.clone());
    let context = CommandContext {
        correlation_id: Some(request.correlation_id.clone()),
        causation_id: Some(request.request_id.clone()),
        principal: Some(principal.name.clone()),
        fingerprint: idempotency_key.is_some().then_some(fingerprint),
        idempotency_key,
        key_scope: KeyScope::Principal,
        expected_version: request.if_match.map(Some),
        reservation_rights: if principal.role.allows(Permission::EndAnyReservation) {
            ReservationRights::Any
        } else {
            ReservationRights::OwnOnly
        },
        traceparent: request.traceparent.clone(),
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
            RenderedAnswer::problem(&problem)
        }
    }
}

fn success(command: Command, outcome: CommandOutcome) -> RenderedAnswer {
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
        location: outcome.events.iter().find_map(|e| match &e.event {
            SkuEvent::Reserved(reserved) => Some(reserved.location.clone()),
            _ => None,
        }),
        transfer_id: match &command.command {
            SkuCommand::DispatchTransfer(dispatch) => Some(dispatch.transfer_id.to_string()),
            _ => None,
        },
    };
    let mut stored = RenderedAnswer::json(command.success, &body);
    stored.etag = outcome.state.version.map(etag);
    stored.location = command.location;
    stored
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/replenishments", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = ReplenishRequest, description = contract::body_limits()),
    responses((status = 200, description = "Stock added", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              Conflict, CommandProblems, Guarded)
)]
pub async fn replenish(
    State(state): State<SharedState>,
    call: CommandCall<Managing, ReplenishRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/reservations", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = ReserveRequest, description = contract::body_limits()),
    responses((status = 201, description = "Units held", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"),
                       ("Location" = String, description = "The reservation's path"))),
              Conflict, CommandProblems, Guarded)
)]
pub async fn reserve(
    State(state): State<SharedState>,
    call: CommandCall<Reserving, ReserveRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/reservations/{reservation_id}/release", tag = "commands",
    params(ReservationPath, CommandHeaders),
    request_body(content = ReleaseRequest, description = contract::body_limits()),
    responses((status = 200, description = "Units returned to available", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              ReservationNotFound, Conflict, CommandProblems, Guarded)
)]
pub async fn release(
    State(state): State<SharedState>,
    call: CommandCall<Reserving, ReleaseRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/reservations/{reservation_id}/confirm", tag = "commands",
    params(ReservationPath, CommandHeaders),
    request_body(content = ConfirmRequest, description = contract::body_limits()),
    responses((status = 200, description = "On hand and reserved both dropped", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              ReservationNotFound, Conflict, CommandProblems, Guarded)
)]
pub async fn confirm(
    State(state): State<SharedState>,
    call: CommandCall<Reserving, ConfirmRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/adjustments", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = AdjustRequest, description = contract::body_limits()),
    responses((status = 200, description = "On hand corrected", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              Conflict, CommandProblems, Guarded)
)]
pub async fn adjust(
    State(state): State<SharedState>,
    call: CommandCall<Managing, AdjustRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    put, path = "/v1/skus/{sku}/reorder-point", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = ReorderPointRequest, description = contract::body_limits()),
    responses((status = 200, description = "Reorder point set", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              CommandProblems, Guarded)
)]
pub async fn set_reorder_point(
    State(state): State<SharedState>,
    call: CommandCall<Managing, ReorderPointRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/transfers", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = TransferRequest, description = contract::body_limits()),
    responses((status = 201, description = "Units left the source and are in transit", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"),
                       ("Location" = String, description = "The transfer's path"))),
              Conflict, CommandProblems, Guarded)
)]
pub async fn dispatch_transfer(
    State(state): State<SharedState>,
    call: CommandCall<Managing, TransferRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/transfers/{transfer_id}/receive", tag = "commands",
    params(TransferPath, CommandHeaders),
    request_body(content = ReceiveRequest, description = contract::body_limits()),
    responses((status = 200, description = "The units arrived at the destination", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              NotFound, Conflict, CommandProblems, Guarded)
)]
pub async fn receive_transfer(
    State(state): State<SharedState>,
    call: CommandCall<Managing, ReceiveRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/transfers/{transfer_id}/cancel", tag = "commands",
    params(TransferPath, CommandHeaders),
    request_body(content = CancelTransferRequest, description = contract::body_limits()),
    responses((status = 200, description = "The units are back at the source", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              NotFound, Conflict, CommandProblems, Guarded)
)]
pub async fn cancel_transfer(
    State(state): State<SharedState>,
    call: CommandCall<Managing, CancelTransferRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    put, path = "/v1/skus/{sku}/catalogue", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = RegisterRequest, description = contract::body_limits()),
    responses((status = 200, description = "The SKU is in the catalogue (the same entry again changes nothing)", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              Conflict, CommandProblems, Guarded)
)]
pub async fn register(
    State(state): State<SharedState>,
    call: CommandCall<Managing, RegisterRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    patch, path = "/v1/skus/{sku}/catalogue", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = UpdateCatalogueRequest, description = contract::body_limits()),
    responses((status = 200, description = "The catalogue entry changed (or already read so)", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              NotFound, CommandProblems, Guarded)
)]
pub async fn update_catalogue(
    State(state): State<SharedState>,
    call: CommandCall<Managing, UpdateCatalogueRequest>,
) -> Response {
    call.carry_out(&state).await
}

#[utoipa::path(
    post, path = "/v1/skus/{sku}/discontinue", tag = "commands",
    params(SkuPath, CommandHeaders),
    request_body(content = DiscontinueRequest, description = contract::body_limits()),
    responses((status = 200, description = "The SKU takes no replenishment or new reservations from now on", body = CommandResultBody,
               headers(("ETag" = inline(EntityTag), description = "The SKU's version after the command"))),
              CommandProblems, Guarded)
)]
pub async fn discontinue(
    State(state): State<SharedState>,
    call: CommandCall<Managing, DiscontinueRequest>,
) -> Response {
    call.carry_out(&state).await
}
