//! Request extractors that turn every malformed input into a problem that names what was wrong:
//! the JSON body (syntax, types, unknown fields, ranges, size) and the request's context
//! headers (request id, correlation id, idempotency key, If-Match).

use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// Largest request body accepted. Every command body is a few hundred bytes; 16 KiB leaves room
/// for long reasons and references while refusing accidental or hostile uploads early.
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024;

/// Longest accepted request id, correlation id or idempotency key header.
pub const HEADER_IDENTIFIER_LENGTH_MAX: usize = 128;

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
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("request bodies are limited to {REQUEST_BODY_BYTES_MAX} bytes"),
            )
        })?;
        // An empty body reads as `{}`: commands whose fields are all optional (release,
        // confirm) can then be sent without one. Required fields are still reported missing.
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "JSON expected",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        } else {
            bytes
        };
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::bad_request("malformed-json", format!("the body is not valid JSON: {e}"))
        })?;
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

/// The headers that shape how a command is carried out and recorded.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub correlation_id: String,
    pub idempotency_key: Option<String>,
    /// `If-Match: "<version>"`: `Some(v)` to append only at that version.
    pub if_match: Option<u64>,
}

/// The request id the observing middleware assigned, kept in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn identifier_header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= HEADER_IDENTIFIER_LENGTH_MAX
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
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
                    .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
                    .and_then(|v| v.parse::<u64>().ok())
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
        })
    }
}
