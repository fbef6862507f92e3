//! Operational endpoints: liveness, readiness, metrics and the API description. None of them
//! needs a token, so that orchestrators and scrapers work without credentials; none reveals
//! stock data.

use crate::contract::HostProblems;
use crate::state::SharedState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::time::Duration;

/// How long a readiness check waits for each dependency before calling it down.
pub const READINESS_CHECK_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
}

#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    security(()),
    responses((status = 200, description = "The process is alive", body = HealthBody), HostProblems)
)]
pub async fn healthz() -> Json<HealthBody> {
    Json(HealthBody { status: "ok" })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DependencyBody {
    pub name: &'static str,
    pub ready: bool,
    /// Why the dependency is not ready.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadinessBody {
    /// `ready`, or `unavailable` when any dependency is down.
    pub status: &'static str,
    pub dependencies: Vec<DependencyBody>,
}

async fn check<F, E>(name: &'static str, probe: F) -> DependencyBody
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let error = match tokio::time::timeout(Duration::from_millis(READINESS_CHECK_TIMEOUT_MS), probe)
        .await
    {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {READINESS_CHECK_TIMEOUT_MS} ms")),
    };
    DependencyBody {
        name,
        ready: error.is_none(),
        error,
    }
}

#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    security(()),
    responses((status = 200, description = "The event store and the database answer", body = ReadinessBody),
              (status = 503, description = "A dependency is down; the body names it", body = ReadinessBody),
              HostProblems)
)]
pub async fn readyz(State(state): State<SharedState>) -> Response {
    let (store, database) = tokio::join!(
        check("event_store", async {
            state.store.head_position().await.map(drop)
        }),
        check("database", state.database.ping()),
    );
    let writes = check("event_store_writes", async {
        state.store.write_path_health()
    })
    .await;
    let dependencies = vec![store, database, writes];
    let ready = dependencies.iter().all(|d| d.ready);
    for dependency in dependencies.iter().filter(|d| !d.ready) {
        tracing::warn!(
            dependency = dependency.name,
            error = dependency.error.as_deref().unwrap_or_default(),
            "not ready"
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadinessBody {
        status: if ready { "ready" } else { "unavailable" },
        dependencies,
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    security(()),
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
              HostProblems)
)]
pub async fn metrics(State(state): State<SharedState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            ledger_startup::metrics::EXPOSITION_CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    security(()),
    responses((status = 200, description = "This API's OpenAPI 3.1 description", body = Object), HostProblems)
)]
pub async fn openapi(State(state): State<SharedState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.get().cloned().unwrap_or_default(),
    )
        .into_response()
}
