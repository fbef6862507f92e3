//! What the OpenAPI description states beyond the handlers' types, built from the rules the
//! server enforces, so that the description promises neither more nor less than the server
//! accepts (a generated client then sends nothing the server refuses for its shape):
//! - value schemas for `schema_with` (SKUs, identifiers, free text, quantities, page limits,
//!   versions, header values), each made from the domain's or the extractors' own constants
//!   and predicates;
//! - the parameter sets that every route of a kind shares (the SKU path, the command headers),
//!   described once;
//! - the problem responses, one component per status, and [`Guarded`], the ones every `/v1`
//!   route can give;
//! - the bearer token scheme, and [`Contract`], which adds these components to the document.
//!
//! Rules that tie two inputs together (`from` before `to`, `as_of` or `at_version`, an
//! idempotency key naming one request) cannot be said in a schema; the parameters' and
//! headers' descriptions state them.

use crate::extract::{HEADER_IDENTIFIER_LENGTH_MAX, REQUEST_BODY_BYTES_MAX, VERSION_DIGITS_MAX};
use crate::problem::{PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX};
use ledger_application::history::HISTORY_PAGE_ENTRIES_MAX;
use ledger_domain::{
    is_text_character, OrderId, ReservationId, Sku, TransferId, ALLOCATION_LOCATIONS_MAX,
    ATTRIBUTES_MAX, ATTRIBUTE_NAME_LENGTH_MAX, ATTRIBUTE_VALUE_LENGTH_MAX, IDENTIFIER_LENGTH_MAX,
    LOCATION_LENGTH_MAX, PRODUCT_NAME_LENGTH_MAX, QUANTITY_MAX, REASON_LENGTH_MAX,
    REFERENCE_LENGTH_MAX, RESERVATION_TTL_SECONDS_MAX, SKU_LENGTH_MAX, UNIT_LENGTH_MAX,
};
use ledger_projections::PAGE_SIZE_MAX;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};

/// The security scheme's name in the description.
pub const BEARER_SCHEME: &str = "bearer";

// Patterns. JSON Schema patterns are ECMA-262 regular expressions; these use only what that
// dialect, Python's and Rust's `regex` read alike (classes, `\uXXXX` escapes, bounded repeats).

/// `^[A-Za-z0-9][A-Za-z0-9<extra>]{0,<max - 1>}$`: the domain's identifier rule (a letter or
/// digit first, then letters, digits and the type's extra characters).
pub fn identifier_pattern(extra: &[char], length_max: usize) -> String {
    assert!(
        extra.iter().all(|c| matches!(c, '-' | '_' | '.' | ':')),
        "extra identifier characters must be literal inside a character class"
    );
    assert!(length_max >= 1);
    // A `-` is literal at the end of a class.
    let mut alphabet: String = extra.iter().filter(|c| **c != '-').collect();
    if extra.contains(&'-') {
        alphabet.push('-');
    }
    format!("^[A-Za-z0-9][A-Za-z0-9{alphabet}]{{0,{}}}$", length_max - 1)
}

/// The body of a character class holding every character for which `include` holds, as
/// `\uXXXX` escapes and ranges.
///
/// # Panics
/// When such a character lies beyond the Basic Multilingual Plane, which `\uXXXX` cannot name.
fn character_class(include: impl Fn(char) -> bool) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for code in 0..=u32::from(char::MAX) {
        let included = char::from_u32(code).is_some_and(&include);
        match ranges.last_mut() {
            Some((_, end)) if included && *end + 1 == code => *end = code,
            _ if included => ranges.push((code, code)),
            _ => {}
        }
    }
    let mut class = String::new();
    for (start, end) in ranges {
        assert!(end <= 0xFFFF, "U+{end:X} cannot be written as \\uXXXX");
        class.push_str(&format!("\\u{start:04X}"));
        if end > start {
            class.push_str(&format!("-\\u{end:04X}"));
        }
    }
    class
}

/// Free text as the domain accepts it: only [`is_text_character`]s, at least one of them not
/// whitespace. The length is stated apart (`maxLength` counts characters, as the domain does).
pub fn text_pattern() -> &'static str {
    static PATTERN: OnceLock<String> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let refused = character_class(|c| !is_text_character(c));
        let blank_or_refused = character_class(|c| !is_text_character(c) || c.is_whitespace());
        format!("^[^{refused}]*[^{blank_or_refused}][^{refused}]*$")
    })
}

/// An identifier header (`Idempotency-Key`, `X-Correlation-Id`): visible ASCII characters.
pub fn header_identifier_pattern() -> String {
    format!("^[!-~]{{1,{HEADER_IDENTIFIER_LENGTH_MAX}}}$")
}

/// `If-Match`: the entity-tag of a version, as [`crate::extract::if_match_version`] reads it.
pub fn if_match_pattern() -> String {
    format!("^(W/)?\"(0|[1-9][0-9]{{0,{}}})\"$", VERSION_DIGITS_MAX - 1)
}

/// `ETag`: the entity-tag of the version the response shows.
pub fn entity_tag_pattern() -> &'static str {
    "^\"(0|[1-9][0-9]*)\"$"
}

// Value schemas, for `#[schema(schema_with = ...)]` and `#[param(schema_with = ...)]`.

fn string(length_max: usize, pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(length_max))
        .pattern(Some(pattern))
        .description(Some(description))
}

fn integer(minimum: i64, maximum: u64, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
        .description(Some(description))
}

/// The same schema that also admits `null`, which an optional body field accepts (serde reads
/// `null` as absent); the value constraints only apply to values of the first type.
fn or_null(schema: ObjectBuilder, base: Type) -> Object {
    schema
        .schema_type(SchemaType::from_iter([base, Type::Null]))
        .build()
}

pub fn sku() -> Object {
    string(
        SKU_LENGTH_MAX,
        &identifier_pattern(Sku::CHARACTERS_EXTRA, SKU_LENGTH_MAX),
        "A product code: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or \
         digit; case-sensitive.",
    )
    .examples(["SHOE-42"])
    .build()
}

fn reservation_id_schema() -> ObjectBuilder {
    string(
        IDENTIFIER_LENGTH_MAX,
        &identifier_pattern(ReservationId::CHARACTERS_EXTRA, IDENTIFIER_LENGTH_MAX),
        "A reservation's id, unique forever within its SKU: ASCII letters, digits, `-`, `_`, \
         `.` and `:`, starting with a letter or digit.",
    )
}

pub fn reservation_id() -> Object {
    reservation_id_schema().build()
}

/// A reserve's own reservation id: the description says what it does there.
pub fn reservation_id_or_null() -> Object {
    or_null(
        reservation_id_schema().description(Some(
            "Your id for this hold (ASCII letters, digits, `-`, `_`, `.` and `:`, starting with \
             a letter or digit); it makes the request safe to retry, and the same id with a \
             different request is refused (422 `idempotency-key-reused`). Generated when \
             absent.",
        )),
        Type::String,
    )
}

fn order_id_schema() -> ObjectBuilder {
    string(
        IDENTIFIER_LENGTH_MAX,
        &identifier_pattern(OrderId::CHARACTERS_EXTRA, IDENTIFIER_LENGTH_MAX),
        "The order the reservation holds stock for; the alphabet of a reservation id.",
    )
}

pub fn order_id() -> Object {
    order_id_schema().build()
}

pub fn order_id_or_null() -> Object {
    or_null(order_id_schema(), Type::String)
}

fn text(length_max: usize, description: &str) -> ObjectBuilder {
    string(length_max, text_pattern(), description)
}

const REASON_DESCRIPTION: &str =
    "Why, in words for an auditor: not blank, no control characters or line separators.";

pub fn reason() -> Object {
    text(REASON_LENGTH_MAX, REASON_DESCRIPTION).build()
}

pub fn reason_or_null() -> Object {
    or_null(text(REASON_LENGTH_MAX, REASON_DESCRIPTION), Type::String)
}

pub fn reference_or_null() -> Object {
    or_null(
        text(
            REFERENCE_LENGTH_MAX,
            "The outside document (purchase order, receipt, count sheet): not blank, no \
             control characters or line separators.",
        ),
        Type::String,
    )
}

fn location_schema(description: &str) -> ObjectBuilder {
    string(
        LOCATION_LENGTH_MAX,
        &identifier_pattern(Sku::CHARACTERS_EXTRA, LOCATION_LENGTH_MAX),
        description,
    )
}

/// An optional location of a command body.
pub fn location_or_null() -> Object {
    or_null(
        location_schema(
            "Where: a store or warehouse id (the SKU alphabet: ASCII letters, digits, `-`, `_` \
             and `.`, starting with a letter or digit); `default` when absent.",
        ),
        Type::String,
    )
}

/// A location named in a query.
pub fn location() -> Object {
    location_schema(
        "A store or warehouse id (the SKU alphabet: ASCII letters, digits, `-`, `_` and `.`, \
         starting with a letter or digit).",
    )
    .build()
}

/// An event's hash in its stream's hash chain, as history shows it.
pub fn event_hash_pattern() -> &'static str {
    "^[0-9a-f]{64}$"
}

/// A history page's entries. Each entry describes one event (version, position, ids, type,
/// movement, changes, balances after it, details, metadata, data); the schema states the
/// fields that an auditor checks the log with, and leaves the rest open.
pub fn history_entries() -> utoipa::openapi::schema::Array {
    let hash = or_null(
        string(
            ledger_domain::chain::EVENT_HASH_BYTES * 2,
            event_hash_pattern(),
            "The event's link in its stream's hash chain, in lower-case hexadecimal: \
             SHA-256 of the previous event's hash (32 zero bytes before the first) and this \
             event's canonical form (see the README, \"Tamper evidence\"). `null` for an event \
             its store keeps without one (EventStoreDB events written before the chain).",
        )
        .min_length(Some(ledger_domain::chain::EVENT_HASH_BYTES * 2)),
        Type::String,
    );
    let entry = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("version", version())
        .required("version")
        .property(
            "event_id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        )
        .required("event_id")
        .property(
            "recorded_at",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some(
                    "When the event was recorded, in microseconds; the hash covers it.",
                )),
        )
        .required("recorded_at")
        .property("hash", hash)
        .required("hash")
        .description(Some("One event of the SKU's stream, with its effect."));
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(entry)
        .description(Some(
            "Every movement with who caused it and the balances after it, in version order.",
        ))
        .build()
}

/// A reserve's allocation preference list.
pub fn allocation_locations() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(location_schema("A location, in order of preference."))
        .min_items(Some(1))
        .max_items(Some(ALLOCATION_LOCATIONS_MAX))
        .unique_items(true)
        .description(Some(
            "Where the units may be held, in order of preference; the first with the whole \
             quantity available holds it. No location twice.",
        ))
        .build()
}

/// A reserve's optional allocation: one object per policy, each closed (the server refuses
/// unknown members), or `null`.
pub fn allocation_or_null() -> Schema {
    let policy = |name: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([name]))
            .description(Some("How the location is chosen."))
    };
    let closed = || {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ))
    };
    let preference = closed()
        .property("policy", policy("preference"))
        .required("policy")
        .property("locations", allocation_locations())
        .required("locations")
        .description(Some(
            "At the first of `locations` that has the whole quantity available.",
        ));
    let most_available = closed()
        .property("policy", policy("most_available"))
        .required("policy")
        .description(Some("At the location with the most units available."));
    OneOfBuilder::new()
        .item(preference)
        .item(most_available)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "Let the ledger choose the location (instead of `location`, not with it). The whole \
             quantity is held at one location; the answer's `location` says which.",
        ))
        .build()
        .into()
}

fn transfer_id_schema() -> ObjectBuilder {
    string(
        IDENTIFIER_LENGTH_MAX,
        &identifier_pattern(TransferId::CHARACTERS_EXTRA, IDENTIFIER_LENGTH_MAX),
        "A transfer's id, unique forever within its SKU: ASCII letters, digits, `-`, `_`, `.` \
         and `:`, starting with a letter or digit.",
    )
}

pub fn transfer_id() -> Object {
    transfer_id_schema().build()
}

/// A dispatch's own transfer id.
pub fn transfer_id_or_null() -> Object {
    or_null(
        transfer_id_schema().description(Some(
            "Your id for this transfer (ASCII letters, digits, `-`, `_`, `.` and `:`, starting \
             with a letter or digit); it makes the request safe to retry. Generated when \
             absent.",
        )),
        Type::String,
    )
}

/// A required location of a command body.
pub fn location_required() -> Object {
    location_schema(
        "A store or warehouse id (the SKU alphabet: ASCII letters, digits, `-`, `_` and `.`, \
         starting with a letter or digit).",
    )
    .build()
}

pub fn quantity_received_or_null() -> Object {
    or_null(
        integer(
            0,
            QUANTITY_MAX,
            "Units that arrived, at most those dispatched; everything dispatched when absent. \
             Fewer needs `discrepancy_reason`.",
        ),
        Type::Integer,
    )
}

pub fn product_name() -> Object {
    text(
        PRODUCT_NAME_LENGTH_MAX,
        "The product's name: not blank, no control characters.",
    )
    .build()
}

pub fn product_name_or_null() -> Object {
    or_null(
        text(
            PRODUCT_NAME_LENGTH_MAX,
            "The product's new name (unchanged when absent): not blank, no control characters.",
        ),
        Type::String,
    )
}

pub fn unit() -> Object {
    text(
        UNIT_LENGTH_MAX,
        "The unit the SKU is counted in ('each', 'kg', 'box of 12').",
    )
    .build()
}

pub fn unit_or_null() -> Object {
    or_null(
        text(
            UNIT_LENGTH_MAX,
            "The new unit (unchanged when absent): not blank, no control characters.",
        ),
        Type::String,
    )
}

fn attributes_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(ATTRIBUTES_MAX))
        .property_names(Some(
            string(
                ATTRIBUTE_NAME_LENGTH_MAX,
                &identifier_pattern(Sku::CHARACTERS_EXTRA, ATTRIBUTE_NAME_LENGTH_MAX),
                "An attribute name: the SKU alphabet.",
            )
            .build(),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(ATTRIBUTE_VALUE_LENGTH_MAX))
                .pattern(Some("^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029]*$"))
                .description(Some(
                    "An attribute value: no control characters; may be empty.",
                )),
        ))
        .description(Some(description))
}

pub fn attributes_or_null() -> Object {
    let description = "Free attributes (colour, size, supplier code): at most 32; names in the \
                       SKU alphabet; values up to 256 characters. Given, they replace the whole \
                       set; absent, none (register) or unchanged (update).";
    attributes_schema(description)
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .build()
}

pub fn quantity() -> Object {
    integer(1, QUANTITY_MAX, "Units moved by the command.").build()
}

pub fn reorder_point() -> Object {
    integer(
        0,
        QUANTITY_MAX,
        "Available stock below this opens a low-stock alert; 0 turns alerting off.",
    )
    .build()
}

pub fn ttl_seconds_or_null() -> Object {
    or_null(
        integer(
            1,
            RESERVATION_TTL_SECONDS_MAX,
            "Seconds until the hold expires by itself; no expiry when absent.",
        ),
        Type::Integer,
    )
}

/// A non-zero signed correction, at most [`QUANTITY_MAX`] either way: two ranges, since a
/// schema's bounds cannot leave out the zero between them.
pub fn adjustment_delta() -> Schema {
    let bound = i64::try_from(QUANTITY_MAX).expect("the quantity bound fits an i64");
    let range = |minimum: i64, maximum: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(minimum))
            .maximum(Some(maximum))
    };
    OneOfBuilder::new()
        .item(range(-bound, -1))
        .item(range(1, bound))
        .description(Some(
            "Signed correction of on hand, never 0, e.g. -3 after a cycle count found three \
             fewer.",
        ))
        .into()
}

pub fn page_limit() -> Object {
    integer(
        1,
        PAGE_SIZE_MAX,
        "Most rows to return (default: the largest page, unless the operation says otherwise).",
    )
    .build()
}

pub fn history_page_limit() -> Object {
    integer(
        1,
        HISTORY_PAGE_ENTRIES_MAX,
        "Most entries per page (default 100).",
    )
    .build()
}

pub fn version() -> Object {
    integer(0, u64::MAX, "A version of the SKU's stream.").build()
}

pub fn notification_id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(i64::MIN))
        .maximum(Some(i64::MAX))
        .description(Some("A notification id; ids are dense and increasing."))
        .build()
}

pub fn header_identifier() -> Object {
    string(
        HEADER_IDENTIFIER_LENGTH_MAX,
        &header_identifier_pattern(),
        "Visible ASCII characters.",
    )
    .build()
}

pub fn if_match() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(if_match_pattern()))
        .description(Some(
            "The entity-tag of a version as `ETag` sends it, e.g. `\"7\"`.",
        ))
        .examples(["\"7\""])
        .build()
}

/// The entity-tag of a version as `ETag` sends it.
fn entity_tag() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(entity_tag_pattern()))
        .build()
}

/// Types that stand for a value schema where the annotations need a type (parameters, with
/// `inline`, and response headers): `schema_with` would drop a parameter's description and
/// its required flag.
macro_rules! value_types {
    ($($(#[$doc:meta])* $name:ident => $schema:path;)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema().into()
            }
        }

        impl utoipa::ToSchema for $name {}
    )+};
}

value_types! {
    /// A SKU.
    SkuValue => sku;
    /// A reservation id.
    ReservationIdValue => reservation_id;
    /// A transfer id.
    TransferIdValue => transfer_id;
    /// An order id.
    OrderIdValue => order_id;
    /// A page size of a read-model query.
    PageLimit => page_limit;
    /// A page size of a history.
    HistoryPageLimit => history_page_limit;
    /// A version of a SKU's stream.
    Version => version;
    /// A location.
    LocationValue => location;
    /// A notification id.
    NotificationId => notification_id;
    /// An identifier header's value.
    HeaderIdentifier => header_identifier;
    /// An `If-Match` value.
    IfMatch => if_match;
    /// An `ETag` value.
    EntityTag => entity_tag;
}

/// The problem document, for every refusal and failure.
pub fn problem() -> Schema {
    let member = |schema_type: Type, description: &str| {
        ObjectBuilder::new()
            .schema_type(schema_type)
            .description(Some(description))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "An RFC 9457 problem document. 4xx documents say what was wrong; 5xx documents \
             reveal nothing (the request id in `X-Request-Id` finds the cause in the logs). \
             Some problems add members of their own.",
        ))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^{PROBLEM_TYPE_PREFIX}[a-z0-9]+(-[a-z0-9]+)*$"
                )))
                .description(Some(
                    "A stable URN naming the kind of problem, e.g. \
                     `urn:inventory-ledger:problem:insufficient-stock`; switch on this.",
                )),
        )
        .property(
            "title",
            member(Type::String, "A short summary of the kind."),
        )
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(400))
                .maximum(Some(599))
                .description(Some("The HTTP status code.")),
        )
        .property("detail", member(Type::String, "What went wrong this time."))
        .property(
            "field",
            member(
                Type::String,
                "The offending input: a body field, parameter or header (empty when it \
                 cannot be named).",
            ),
        )
        .property(
            "requested",
            member(Type::Integer, "`insufficient-stock`: the units asked for."),
        )
        .property(
            "available",
            member(Type::Integer, "`insufficient-stock`: the units available."),
        )
        .property(
            "reserved",
            member(
                Type::Integer,
                "`adjustment-below-reserved`: the units reserved.",
            ),
        )
        .property(
            "limit",
            member(
                Type::Integer,
                "`on-hand-limit-exceeded`: the largest on hand.",
            ),
        )
        .property(
            "reservation_id",
            member(Type::String, "The reservation the problem is about."),
        )
        .property(
            "reservation_status",
            member(
                Type::String,
                "`reservation-closed`: how the reservation ended.",
            ),
        )
        .property(
            "order_id",
            member(Type::String, "The order the problem is about."),
        )
        .property(
            "short_lines",
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .property("line", member(Type::Integer, "The line's number, from 1."))
                        .property("sku", member(Type::String, "The line's SKU."))
                        .property("location", member(Type::String, "Where it was asked for."))
                        .property("requested", member(Type::Integer, "The units asked for."))
                        .property(
                            "available",
                            member(Type::Integer, "The units available there now."),
                        ),
                )
                .description(Some(
                    "`order-insufficient-stock`: every line that cannot be held in full.",
                )),
        )
        .property(
            "line",
            member(
                Type::Integer,
                "An order line refused for another reason than stock: its number, from 1.",
            ),
        )
        .property(
            "sku",
            member(
                Type::String,
                "The SKU of the order line the problem is about.",
            ),
        )
        .property(
            "current_version",
            or_null(
                member(
                    Type::Integer,
                    "`version-mismatch`: the SKU's version now (null: no events yet).",
                ),
                Type::Integer,
            ),
        )
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .into()
}

// Parameter sets shared by routes of one kind, for documentation only (the extractors in
// `crate::extract` read them).

/// The SKU a route's path names.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SkuPath {
    /// The SKU.
    #[param(value_type = SkuValue, inline)]
    pub sku: String,
}

/// The SKU and reservation a route's path names.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReservationPath {
    /// The SKU.
    #[param(value_type = SkuValue, inline)]
    pub sku: String,
    /// The reservation.
    #[param(value_type = ReservationIdValue, inline)]
    pub reservation_id: String,
}

/// The SKU and transfer a route's path names.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TransferPath {
    /// The SKU.
    #[param(value_type = SkuValue, inline)]
    pub sku: String,
    /// The transfer.
    #[param(value_type = TransferIdValue, inline)]
    pub transfer_id: String,
}

/// The order a route's path names.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrderPath {
    /// The order.
    #[param(value_type = OrderIdValue, inline)]
    pub order_id: String,
}

/// The headers an order command reads. (Optional headers are absent, never `null`.)
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OrderHeaders {
    /// Makes a retry safe: the same key again resumes (completes or compensates) the same
    /// attempt, or returns its answer, and never holds twice; the same key with another path
    /// or body is refused (422 `idempotency-key-reused`). Without it the attempt cannot be
    /// retried (a new one is refused while this one holds the order).
    #[param(rename = "Idempotency-Key", value_type = HeaderIdentifier, inline, required = false)]
    pub idempotency_key: Option<String>,
    /// Recorded in the events' metadata; the request id when absent.
    #[param(rename = "X-Correlation-Id", value_type = HeaderIdentifier, inline, required = false)]
    pub correlation_id: Option<String>,
}

/// The location a route's path names.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LocationPath {
    /// The location.
    #[param(value_type = LocationValue, inline)]
    pub location: String,
}

/// The headers every command reads. (Declared with the value's own type and `required =
/// false`: an optional header is absent, never `null`.)
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// Makes a retry return the original answer (status and body) without appending again. A
    /// key names one request of its principal: the same key with another method, path or body
    /// is refused (422 `idempotency-key-reused`).
    #[param(rename = "Idempotency-Key", value_type = HeaderIdentifier, inline, required = false)]
    pub idempotency_key: Option<String>,
    /// Append only if the SKU is still at this version (412 `version-mismatch` otherwise).
    #[param(rename = "If-Match", value_type = IfMatch, inline, required = false)]
    pub if_match: Option<String>,
    /// Recorded in the events' metadata; the request id when absent.
    #[param(rename = "X-Correlation-Id", value_type = HeaderIdentifier, inline, required = false)]
    pub correlation_id: Option<String>,
}

// Problem responses: one component per status, each a problem document.

/// One problem response: its component name, status, and what it means.
struct ProblemResponse {
    name: &'static str,
    status: u16,
    description: &'static str,
    /// A header that always comes with this response: its name and description.
    header: Option<(&'static str, &'static str)>,
}

const BAD_REQUEST: ProblemResponse = ProblemResponse {
    name: "BadRequest",
    status: 400,
    description: "The request cannot be read: a query string or path that does not parse \
                  (`invalid-query`, `invalid-path`), a page limit, range or combination of \
                  parameters refused (`invalid-limit`, `invalid-range`, \
                  `conflicting-parameters`), a malformed header (`invalid-header`, \
                  `invalid-if-match`) or a body that is not JSON (`malformed-json`, \
                  `unreadable-body`).",
    header: None,
};
const UNAUTHORIZED: ProblemResponse = ProblemResponse {
    name: "Unauthorized",
    status: 401,
    description: "No valid bearer token (`unauthorized`).",
    header: Some((
        "WWW-Authenticate",
        "The scheme to authenticate with: `Bearer`.",
    )),
};
const FORBIDDEN: ProblemResponse = ProblemResponse {
    name: "Forbidden",
    status: 403,
    description: "The token's role may not do this (`forbidden`), or the reservation is \
                  another principal's (`reservation-held-by-another`).",
    header: None,
};
const NOT_FOUND: ProblemResponse = ProblemResponse {
    name: "NotFound",
    status: 404,
    description: "No such reservation in this SKU (`reservation-not-found`), no such \
                  transfer (`transfer-not-found`), the SKU is not in the catalogue \
                  (`sku-not-registered`), or the SKU has no event at or before the anchor's \
                  position (`sku-not-in-log`).",
    header: None,
};
const CONFLICT: ProblemResponse = ProblemResponse {
    name: "Conflict",
    status: 409,
    description: "The SKU's state refuses the command: `insufficient-stock` (with `requested` \
                  and `available`), `reservation-closed`, `reservation-id-conflict`, \
                  `adjustment-below-reserved`, `transfer-closed`, `transfer-id-conflict`, \
                  `transfer-within-one-location`, \
                  `sku-discontinued`, `sku-already-registered`; for an order: \
                  `order-insufficient-stock` (with `short_lines`, every short line and what is \
                  available), `order-already-reserved` (another key holds the order), \
                  `order-reserve-interrupted` (the server stopped mid-way and released what it \
                  held: reserve again with a new key), or a line's own refusal with `line` and \
                  `sku`; for an inclusion proof: `log-position-ahead` (the log has not reached \
                  the position asked for).",
    header: None,
};
const PRECONDITION_FAILED: ProblemResponse = ProblemResponse {
    name: "PreconditionFailed",
    status: 412,
    description: "The SKU is no longer at the version `If-Match` names (`version-mismatch`, \
                  with `current_version`); read it again and retry.",
    header: None,
};
const CONTENT_TOO_LARGE: ProblemResponse = ProblemResponse {
    name: "ContentTooLarge",
    status: 413,
    description: "The body is larger than the server takes (`body-too-large`).",
    header: None,
};
const UNSUPPORTED_MEDIA_TYPE: ProblemResponse = ProblemResponse {
    name: "UnsupportedMediaType",
    status: 415,
    description: "The body was not sent as `application/json` (`unsupported-media-type`); \
                  the content type is required even with an empty body.",
    header: None,
};
const MISDIRECTED_REQUEST: ProblemResponse = ProblemResponse {
    name: "MisdirectedRequest",
    status: 421,
    description: "The `Host` header names a host this server does not answer to \
                  (`host-not-allowed`).",
    header: None,
};
const UNPROCESSABLE_CONTENT: ProblemResponse = ProblemResponse {
    name: "UnprocessableContent",
    status: 422,
    description: "A value breaks its rules (`validation-failed`, naming the `field`), the \
                  idempotency key was used for another request (`idempotency-key-reused`), \
                  on hand would pass its limit (`on-hand-limit-exceeded`), or a receipt does \
                  not fit its transfer (`receipt-exceeds-dispatch`, \
                  `discrepancy-reason-required`).",
    header: None,
};
const TOO_MANY_REQUESTS: ProblemResponse = ProblemResponse {
    name: "TooManyRequests",
    status: 429,
    description: "The principal (or, without a token, the client address) is over its rate \
                  limit (`rate-limited`).",
    header: Some(("Retry-After", "Seconds to wait before retrying.")),
};
const INTERNAL_SERVER_ERROR: ProblemResponse = ProblemResponse {
    name: "InternalServerError",
    status: 500,
    description: "The server failed (`internal-error`); the cause is in its logs.",
    header: None,
};
const SERVICE_UNAVAILABLE: ProblemResponse = ProblemResponse {
    name: "ServiceUnavailable",
    status: 503,
    description: "Try again shortly: the server is overloaded (`overloaded`, \
                  `too-many-connections`), the request took too long (`request-timeout`), a \
                  dependency is down (`service-unavailable`), the SKU is too busy \
                  (`contention`), or a command's outcome could not be learned \
                  (`outcome-unknown`: retry with the same `Idempotency-Key`).",
    header: Some(("Retry-After", "Seconds to wait before retrying.")),
};

const PROBLEM_RESPONSES: [ProblemResponse; 13] = [
    BAD_REQUEST,
    UNAUTHORIZED,
    FORBIDDEN,
    NOT_FOUND,
    CONFLICT,
    PRECONDITION_FAILED,
    CONTENT_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    MISDIRECTED_REQUEST,
    UNPROCESSABLE_CONTENT,
    TOO_MANY_REQUESTS,
    INTERNAL_SERVER_ERROR,
    SERVICE_UNAVAILABLE,
];

impl ProblemResponse {
    fn component(&self) -> Response {
        let mut response = ResponseBuilder::new()
            .description(self.description)
            .content(
                PROBLEM_CONTENT_TYPE,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            );
        if let Some((name, description)) = self.header {
            response = response.header(
                name,
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some(description))
                    .build(),
            );
        }
        response.build()
    }

    fn reference(&self) -> (String, RefOr<Response>) {
        (
            self.status.to_string(),
            RefOr::Ref(Ref::from_response_name(self.name)),
        )
    }
}

macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident = [$($response:ident),+];)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                [$($response.reference()),+].into_iter().collect()
            }
        }
    )+};
}

problem_responses! {
    /// What every `/v1` route can answer whatever its input: no or a bad token, a role that
    /// may not, a foreign `Host`, the rate limit, a failure, overload.
    Guarded = [UNAUTHORIZED, FORBIDDEN, MISDIRECTED_REQUEST, TOO_MANY_REQUESTS,
               INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE];
    /// What a route that reads a SKU (or reservation) from its path adds: a path that does not
    /// decode (400), a SKU or reservation id that breaks its rules (422).
    PathProblems = [BAD_REQUEST, UNPROCESSABLE_CONTENT];
    /// What a route with query parameters adds: one that does not parse, is out of range or
    /// unknown (400).
    QueryProblems = [BAD_REQUEST];
    /// What a route paging by SKU adds: `after_sku` breaks the SKU rules (422).
    SkuQueryProblems = [BAD_REQUEST, UNPROCESSABLE_CONTENT];
    /// What every command adds: bad headers or JSON (400), a stale `If-Match` (412), a body too
    /// large (413) or not sent as JSON (415), a value that breaks its rules or a reused
    /// idempotency key (422).
    CommandProblems = [BAD_REQUEST, PRECONDITION_FAILED, CONTENT_TOO_LARGE,
                       UNSUPPORTED_MEDIA_TYPE, UNPROCESSABLE_CONTENT];
    /// The state of the SKU refuses the command (409).
    Conflict = [CONFLICT];
    /// The reservation the path names does not exist (404).
    ReservationNotFound = [NOT_FOUND];
    /// The transfer (or catalogue entry) the path names does not exist (404).
    NotFound = [NOT_FOUND];
    /// The operational endpoints: only the host check stands in front of them.
    HostProblems = [MISDIRECTED_REQUEST];
}

/// Adds what the routes' annotations refer to: the problem schema and responses, and the
/// bearer scheme (required by every operation that does not say otherwise).
pub struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("Problem".to_owned(), RefOr::T(problem()));
        for response in PROBLEM_RESPONSES {
            components
                .responses
                .insert(response.name.to_owned(), RefOr::T(response.component()));
        }
        components.security_schemes.insert(
            BEARER_SCHEME.to_owned(),
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token configured with a role (LEDGER_TOKENS); required unless the \
                         server runs open.",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            BEARER_SCHEME,
            Vec::<String>::new(),
        )]);
    }
}

/// The request body's description, with the limits every command body shares.
pub fn body_limits() -> String {
    format!(
        "Sent as `application/json` (required even for an empty body), at most \
         {REQUEST_BODY_BYTES_MAX} bytes."
    )
}

#[cfg(test)]
mod tests {
    //! Each pattern against the rule it states: strings drawn from an alphabet that mixes what
    //! the rule allows with what it refuses must be judged the same by both, and strings drawn
    //! from the pattern itself must be accepted by the rule.

    use super::*;
    use crate::extract::{if_match_version, is_header_identifier};
    use ledger_domain::{Reason, Reference};
    use proptest::prelude::*;
    use proptest::string::string_regex;

    fn regex(pattern: &str) -> regex::Regex {
        regex::Regex::new(pattern).expect("the pattern compiles")
    }

    /// Strings the pattern matches (the generator takes no anchors; every pattern is anchored
    /// at both ends anyway).
    fn drawn_from(pattern: &str) -> impl Strategy<Value = String> {
        let body = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$'));
        string_regex(body.expect("an anchored pattern")).expect("a pattern proptest can draw from")
    }

    /// Strings of up to `length_max` characters from letters, digits, the punctuation the
    /// rules name, and characters they refuse (spaces, controls, separators, non-ASCII).
    fn mixed(length_max: usize) -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            4 => prop::char::range('a', 'z'),
            2 => prop::char::range('0', '9'),
            2 => prop::sample::select(vec![
                '-', '_', '.', ':', '"', '/', 'W', '+', ' ', '\t', '\n', '\u{0}', '\u{7f}',
                '\u{85}', '\u{a0}', '\u{2028}', '\u{3000}', 'é', '日', '\u{1F600}', '~', '!',
            ]),
        ];
        prop::collection::vec(pieces, 0..=length_max).prop_map(|c| c.into_iter().collect())
    }

    fn within(value: &str, length_max: usize) -> bool {
        (1..=length_max).contains(&value.chars().count())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_sku_schema_accepts_what_the_domain_accepts(value in mixed(SKU_LENGTH_MAX + 2)) {
            let schema = regex(&identifier_pattern(Sku::CHARACTERS_EXTRA, SKU_LENGTH_MAX));
            let stated = schema.is_match(&value) && within(&value, SKU_LENGTH_MAX);
            prop_assert_eq!(stated, Sku::parse(&value).is_ok(), "{:?}", value);
        }

        #[test]
        fn the_identifier_schema_accepts_what_the_domain_accepts(
            value in mixed(IDENTIFIER_LENGTH_MAX + 2),
        ) {
            let pattern =
                identifier_pattern(ReservationId::CHARACTERS_EXTRA, IDENTIFIER_LENGTH_MAX);
            let stated = regex(&pattern).is_match(&value) && within(&value, IDENTIFIER_LENGTH_MAX);
            prop_assert_eq!(stated, ReservationId::parse(&value).is_ok(), "{:?}", value);
            prop_assert_eq!(stated, OrderId::parse(&value).is_ok(), "{:?}", value);
        }

        #[test]
        fn the_text_schema_accepts_what_the_domain_accepts(value in mixed(12)) {
            let stated = regex(text_pattern()).is_match(&value);
            prop_assert_eq!(stated, Reason::parse(&value).is_ok(), "{:?}", value);
            prop_assert_eq!(stated, Reference::parse(&value).is_ok(), "{:?}", value);
        }

        #[test]
        fn text_drawn_from_the_schema_is_accepted(value in drawn_from(text_pattern())) {
            prop_assume!(within(&value, REASON_LENGTH_MAX));
            prop_assert!(Reason::parse(&value).is_ok(), "{:?}", value);
        }

        #[test]
        fn the_if_match_schema_accepts_what_the_server_reads(
            value in prop_oneof![mixed(24), drawn_from(&if_match_pattern())],
        ) {
            let stated = regex(&if_match_pattern()).is_match(&value);
            prop_assert_eq!(stated, if_match_version(&value).is_some(), "{:?}", value);
        }

        #[test]
        fn the_header_identifier_schema_accepts_what_the_server_reads(
            value in mixed(HEADER_IDENTIFIER_LENGTH_MAX + 2),
        ) {
            let stated = regex(&header_identifier_pattern()).is_match(&value);
            prop_assert_eq!(stated, is_header_identifier(&value), "{:?}", value);
        }
    }

    #[test]
    fn identifier_patterns_put_the_dash_last() {
        assert_eq!(
            identifier_pattern(Sku::CHARACTERS_EXTRA, SKU_LENGTH_MAX),
            "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
        );
        assert_eq!(
            identifier_pattern(ReservationId::CHARACTERS_EXTRA, IDENTIFIER_LENGTH_MAX),
            "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
        );
    }

    #[test]
    fn versions_are_read_from_entity_tags_only() {
        assert_eq!(if_match_version("\"7\""), Some(7));
        assert_eq!(if_match_version("W/\"0\""), Some(0));
        assert_eq!(
            if_match_version("\"9999999999999999999\""),
            Some(9_999_999_999_999_999_999)
        );
        for refused in [
            "7",
            "\"07\"",
            "\"+7\"",
            "\"\"",
            "\"7",
            "*",
            "\"7\", \"8\"",
            "\"18446744073709551615\"",
        ] {
            assert_eq!(if_match_version(refused), None, "{refused}");
        }
    }
}
