//! Request extractors: what every route needs before it can act, each turning a bad input into
//! a problem that names what was wrong. A route's handler then only builds its command or query.
//! - [`Authorized`]: the principal, checked for the permission the route's type names.
//! - [`SkuTarget`]: the SKU (and reservation) the path names, validated; [`OrderTarget`]: the
//!   order.
//! - [`JsonBody`]: the JSON body (an object; syntax, types, unknown fields, ranges, size) and
//!   its canonical form.
//! - [`Query`]: the query string (types, ranges, unknown parameters), refused as a problem
//!   instead of axum's plain-text rejection.
//! - [`RequestContext`]: request id, correlation id, idempotency key, If-Match.
//! - [`CommandRequest`]: all a command needs from the request: context, method, path, body.
//!
//! What each of them accepts is stated in the OpenAPI description by [`crate::contract`], from
//! the same constants.

use crate::auth::{Permission, Principal};
use crate::problem::Problem;
use crate::state::SharedState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use ledger_domain::{ReservationId, Sku};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// Largest request body accepted. Every command body is a few hundred bytes; 16 KiB leaves room
/// for long reasons and references while refusing accidental or hostile uploads early.
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024;

/// Longest accepted request id, correlation id or idempotency key header.
pub const HEADER_IDENTIFIER_LENGTH_MAX: usize = 128;

/// Most digits of the version an `If-Match` names. Every 19-digit number fits a `u64`, and no
/// stream comes anywhere near 10^19 events; a fixed bound keeps the header's grammar (and its
/// pattern in the OpenAPI description) exact.
pub const VERSION_DIGITS_MAX: usize = 19;

/// The version an `If-Match` value names: an entity-tag as `ETag` sends it, `"7"` (`W/"7"`
/// reads the same), in canonical decimal (no sign, no leading zero) of at most
/// [`VERSION_DIGITS_MAX`] digits. Nothing else is read as a version: a lenient reading would
/// accept values the published grammar refuses.
pub fn if_match_version(value: &str) -> Option<u64> {
    let tag = value.strip_prefix("W/").unwrap_or(value);
    let digits = tag.strip_prefix('"')?.strip_suffix('"')?;
    let canonical = digits == "0" || !digits.starts_with('0');
    let well_formed = (1..=VERSION_DIGITS_MAX).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit());
    if canonical && well_formed {
        digits.parse().ok()
    } else {
        None
    }
}

/// Turns a JSON number with an integral value written as a float (`2.0`, `1e3`) into the
/// integer it equals. JSON Schema (and so the OpenAPI description) counts such numbers as
/// integers, so a client may send them wherever an integer is expected; canonical bodies then
/// also agree whichever way a retry writes the number. Only values an `i64` holds exactly are
/// converted; anything else stays a float and is refused by the field that expects an integer.
fn integral_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64()) {
                // 2^63 as an f64: the first value past `i64::MAX`.
                const I64_END: f64 = 9_223_372_036_854_775_808.0;
                if float.fract() == 0.0 && (-I64_END..I64_END).contains(&float) {
                    *value = Value::from(float as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(members) => members.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// A JSON body, deserialised with the path of the offending field on failure.
pub struct JsonBody<T> {
    pub value: T,
    /// The body as canonical JSON (sorted keys, no spaces): what idempotency fingerprints hash,
    /// so that a retry with different whitespace or key order still matches.
    pub canonical: String,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                        Problem::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body-too-large",
                            "Request body too large",
                            format!("request bodies are limited to {REQUEST_BODY_BYTES_MAX} bytes"),
                        )
                    }
                    other => Problem::bad_request(
                        "unreadable-body",
                        format!("the request body could not be read: {other}"),
                    ),
                })?;
        // The JSON content type is required even for an empty body: a web page can only send
        // a form's content types without asking first (a CORS preflight, which this API never
        // grants), so requiring JSON keeps other sites from posting to a local API.
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "JSON expected",
                "send `Content-Type: application/json` (also with an empty body)",
            ));
        }
        // An empty body reads as `{}`: commands whose fields are all optional (release,
        // confirm) can then be sent without one. Required fields are still reported missing.
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let mut parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::bad_request("malformed-json", format!("the body is not valid JSON: {e}"))
        })?;
        integral_numbers(&mut parsed);
        // Every body is an object. Serde would also read a struct from an array of its fields
        // in order (`[5, null]` as a replenishment), which no client is told to send.
        if !parsed.is_object() {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "The request is not valid",
                "the body must be a JSON object",
            )
            .with("field", ""));
        }
        let canonical = parsed.to_string();
        let value = serde_path_to_error::deserialize(parsed).map_err(|e| {
            let field = e.path().to_string();
            let message = e.inner().to_string();
            let detail = if field == "." {
                message
            } else {
                format!("{field}: {message}")
            };
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "The request is not valid",
                detail,
            )
            .with("field", if field == "." { String::new() } else { field })
        })?;
        Ok(Self { value, canonical })
    }
}

/// The query string's parameters, deserialised into `T` (which refuses unknown parameters).
/// A query string that does not fit is a 400 problem (`invalid-query`) naming the parameter,
/// like every other refusal, instead of axum's plain-text rejection.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let message = e.inner().to_string();
            let (detail, field) = if field == "." {
                (message, String::new())
            } else {
                (format!("{field}: {message}"), field)
            };
            Problem::bad_request(
                "invalid-query",
                format!("the query string is not valid: {detail}"),
            )
            .with("field", field)
        })?;
        Ok(Self(value))
    }
}

/// The headers that shape how a command is carried out and recorded.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub correlation_id: String,
    pub idempotency_key: Option<String>,
    /// `If-Match: "<version>"`: `Some(v)` to append only at that version.
    pub if_match: Option<u64>,
    /// The trace the request's events are recorded in (see [`TraceParent`]).
    pub traceparent: Option<String>,
}

/// The request id the observing middleware assigned, kept in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The `traceparent` the observing middleware keeps for the request's events, in the request's
/// extensions: the request span's own when spans are exported (so that the projector batches
/// that apply the events join the request's trace), otherwise the caller's as it came, when
/// well formed. Never made up when nothing is exported, so that a request without the header
/// costs what it did.
#[derive(Debug, Clone)]
pub struct TraceParent(pub String);

/// Whether `value` is a well-formed request id, correlation id or idempotency key: 1 to
/// [`HEADER_IDENTIFIER_LENGTH_MAX`] visible ASCII characters. (The HTTP parser has already
/// removed the whitespace around a header's value.)
pub fn is_header_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= HEADER_IDENTIFIER_LENGTH_MAX
        && value.bytes().all(|b| b.is_ascii_graphic())
}

fn identifier_header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|v| is_header_identifier(v))
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid-header",
                format!(
                    "{name} must be 1 to {HEADER_IDENTIFIER_LENGTH_MAX} visible ASCII characters"
                ),
            )
            .with("field", name)
        })?;
    Ok(Some(text.to_owned()))
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let correlation_id =
            identifier_header(&parts.headers, "x-correlation-id")?.unwrap_or(request_id.clone());
        let idempotency_key = identifier_header(&parts.headers, "idempotency-key")?;
        let if_match = match parts.headers.get(header::IF_MATCH) {
            None => None,
            Some(value) => {
                let version = value
                    .to_str()
                    .ok()
                    .and_then(if_match_version)
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "invalid-if-match",
                            "If-Match must be a version as returned in ETag, e.g. \"7\"",
                        )
                        .with("field", "If-Match")
                    })?;
                Some(version)
            }
        };
        Ok(Self {
            request_id,
            correlation_id,
            idempotency_key,
            if_match,
            traceparent: parts.extensions.get::<TraceParent>().map(|t| t.0.clone()),
        })
    }
}

/// The permission a route needs, named by a type so that a handler's signature says it.
pub trait Requirement: Send + Sync + 'static {
    const PERMISSION: Permission;
}

/// SKU state, reservations, low-stock lists, alerts and projection status.
pub struct Reading;
/// Reserve, release, confirm.
pub struct Reserving;
/// Replenish, adjust, set reorder points.
pub struct Managing;
/// Histories and the movement ledger.
pub struct Auditing;

impl Requirement for Reading {
    const PERMISSION: Permission = Permission::Read;
}
impl Requirement for Reserving {
    const PERMISSION: Permission = Permission::Reserve;
}
impl Requirement for Managing {
    const PERMISSION: Permission = Permission::Manage;
}
impl Requirement for Auditing {
    const PERMISSION: Permission = Permission::Audit;
}

/// The principal behind the request, allowed what `R` requires (401 or 403 otherwise).
pub struct Authorized<R> {
    pub principal: Principal,
    requirement: PhantomData<R>,
}

impl<R: Requirement> FromRequestParts<SharedState> for Authorized<R> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Problem> {
        let principal = state.auth.authorize(&parts.headers, R::PERMISSION)?;
        Ok(Self {
            principal,
            requirement: PhantomData,
        })
    }
}

/// The SKU a route's path names, and the reservation when it names one; both validated (422
/// naming the field otherwise).
pub struct SkuTarget {
    pub sku: Sku,
    pub reservation_id: Option<ReservationId>,
    pub transfer_id: Option<ledger_domain::TransferId>,
}

impl<S: Send + Sync> FromRequestParts<S> for SkuTarget {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| Problem::bad_request("invalid-path", "the path is not valid UTF-8"))?;
        let mut sku = None;
        let mut reservation_id = None;
        let mut transfer_id = None;
        for (name, value) in &params {
            match name {
                "sku" => sku = Some(Sku::parse(value).map_err(|e| Problem::validation(&e))?),
                "reservation_id" => {
                    reservation_id =
                        Some(ReservationId::parse(value).map_err(|e| Problem::validation(&e))?)
                }
                "transfer_id" => {
                    transfer_id = Some(
                        ledger_domain::TransferId::parse(value)
                            .map_err(|e| Problem::validation(&e))?,
                    )
                }
                _ => {}
            }
        }
        let sku = sku.expect("SkuTarget is only used on routes with a {sku} segment");
        Ok(Self {
            sku,
            reservation_id,
            transfer_id,
        })
    }
}

/// The order a route's path names, validated (422 naming the field otherwise).
pub struct OrderTarget {
    pub order_id: ledger_domain::OrderId,
}

impl<S: Send + Sync> FromRequestParts<S> for OrderTarget {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| Problem::bad_request("invalid-path", "the path is not valid UTF-8"))?;
        let value = params
            .iter()
            .find_map(|(name, value)| (name == "order_id").then_some(value))
            .expect("OrderTarget is only used on routes with an {order_id} segment");
        let order_id = ledger_domain::OrderId::parse(value).map_err(|e| Problem::validation(&e))?;
        Ok(Self { order_id })
    }
}

/// Everything a command takes from its request: the context headers, and what the idempotency
/// fingerprint covers (method, path, canonical body) beside the parsed body.
pub struct CommandRequest<T> {
    pub body: T,
    pub context: RequestContext,
    pub method: Method,
    pub path: String,
    pub canonical_body: String,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for CommandRequest<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (mut parts, body) = request.into_parts();
        let context = RequestContext::from_request_parts(&mut parts, state).await?;
        let method = parts.method.clone();
        let path = decoded_path(&mut parts, state).await?;
        let body = JsonBody::<T>::from_request(Request::from_parts(parts, body), state).await?;
        Ok(Self {
            body: body.value,
            context,
            method,
            path,
            canonical_body: body.canonical,
        })
    }
}

/// The request's path with its parameters percent-decoded (the route's template with each
/// `{name}` replaced by its value), so that a retry whose client encodes a `:` differently
/// still has the same fingerprint.
async fn decoded_path<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, Problem> {
    let Some(template) = parts.extensions.get::<MatchedPath>().cloned() else {
        return Ok(parts.uri.path().to_owned());
    };
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| Problem::bad_request("invalid-path", "the path is not valid UTF-8"))?;
    let mut path = template.as_str().to_owned();
    for (name, value) in &params {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    Ok(path)
}

impl SkuTarget {
    /// The reservation the path names.
    ///
    /// # Panics
    /// On a route without a `{reservation_id}` segment.
    pub fn reservation(&self) -> &ReservationId {
        self.reservation_id
            .as_ref()
            .expect("only routes with a {reservation_id} segment ask for it")
    }

    pub fn transfer(&self) -> &ledger_domain::TransferId {
        self.transfer_id
            .as_ref()
            .expect("only routes with a {transfer_id} segment ask for it")
    }
}
