//! The event contract: every (type, schema version) the code emits has a JSON Schema and an
//! example under `schemas/`, and code and schemas agree in both directions. Auditors, read models
//! and other services read the schemas, not the Rust, so a payload change that forgets its schema
//! must fail here rather than surprise them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use jsonschema::Validator;
use ledger_domain::{
    AdjustStock, AdjustmentDelta, Allocation, Attributes, Balances, CancelTransfer,
    ConfirmReservation, DecodeError, DiscontinueSku, DispatchTransfer, ExpireReservation,
    LocationId, OrderId, ProductName, Quantity, Reason, ReceiveTransfer, Reference, RegisterSku,
    ReleaseReservation, ReorderPoint, ReplenishStock, ReservationId, ReserveStock, SetReorderPoint,
    Sku, SkuCommand, SkuEvent, SkuState, TransferId, TtlSeconds, Unit, UpdateSku, EVENT_TYPES,
    IDENTIFIER_LENGTH_MAX, LOCATION_LENGTH_MAX, PRODUCT_NAME_LENGTH_MAX, QUANTITY_MAX,
    REASON_LENGTH_MAX, REFERENCE_LENGTH_MAX, RESERVATION_TTL_SECONDS_MAX, UNIT_LENGTH_MAX,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The folder holding `events/` and `examples/`, found from this crate's manifest so the test
/// does not depend on the directory cargo runs it from.
const SCHEMAS_DIRECTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");

/// The prefix of every schema's `$id`. The `.invalid` top-level domain is reserved, so the id
/// names the schema without pretending that anything can be fetched from it.
const SCHEMA_ID_PREFIX: &str = "https://inventory-ledger.invalid/schemas/events/";

/// The schema version every event type is written with today.
const CURRENT_VERSION: u32 = 2;

const JSON_SCHEMA_DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

fn schema_file_name(event_type: &str, schema_version: u32) -> String {
    format!("{event_type}.v{schema_version}.schema.json")
}

fn example_file_name(event_type: &str, schema_version: u32) -> String {
    format!("{event_type}.v{schema_version}.json")
}

/// A file under `schemas/` as named in failure messages: short and relative to the repository,
/// so the reader can open it directly.
struct ContractFile {
    path: PathBuf,
    name: String,
}

impl ContractFile {
    fn schema(event_type: &str, schema_version: u32) -> Self {
        Self::new("events", schema_file_name(event_type, schema_version))
    }

    fn example(event_type: &str, schema_version: u32) -> Self {
        Self::new("examples", example_file_name(event_type, schema_version))
    }

    fn new(folder: &str, file_name: String) -> Self {
        Self {
            path: Path::new(SCHEMAS_DIRECTORY).join(folder).join(&file_name),
            name: format!("schemas/{folder}/{file_name}"),
        }
    }

    fn read_json(&self) -> Value {
        let text = std::fs::read_to_string(&self.path)
            .unwrap_or_else(|error| panic!("{}: cannot be read: {error}", self.name));
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: is not valid JSON: {error}", self.name))
    }
}

/// One schema, read and compiled.
struct CompiledSchema {
    event_type: String,
    schema_version: u32,
    file: ContractFile,
    document: Value,
    validator: Validator,
}

fn compile_schema(event_type: &str, schema_version: u32) -> CompiledSchema {
    let file = ContractFile::schema(event_type, schema_version);
    let document = file.read_json();
    // Draft 2020-12 treats `format` as an annotation unless told otherwise; asserting it is what
    // makes a timestamp that is not RFC 3339 fail. Unknown formats are refused so that a
    // misspelt format name cannot silently switch a check off.
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(&document)
        .unwrap_or_else(|error| panic!("{}: is not a usable schema: {error}", file.name));
    CompiledSchema {
        event_type: event_type.to_owned(),
        schema_version,
        file,
        document,
        validator,
    }
}

/// The schema of every (type, version) the code emits, compiled once: the property test
/// validates many events, and compiling a schema per event would dominate its run time.
fn emitted_schemas() -> &'static [CompiledSchema] {
    static SCHEMAS: OnceLock<Vec<CompiledSchema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        EVENT_TYPES
            .iter()
            .map(|&(event_type, schema_version)| compile_schema(event_type, schema_version))
            .collect()
    })
}

fn emitted_schema(event_type: &str, schema_version: u32) -> &'static CompiledSchema {
    emitted_schemas()
        .iter()
        .find(|schema| schema.event_type == event_type && schema.schema_version == schema_version)
        .unwrap_or_else(|| {
            panic!(
                "the code emitted {event_type} v{schema_version}, which EVENT_TYPES does not list"
            )
        })
}

/// Every way `payload` breaks `schema`, each naming the schema file and the field, so a failure
/// says where to look without rerunning anything.
fn schema_violations(schema: &CompiledSchema, payload: &Value) -> Vec<String> {
    schema
        .validator
        .iter_errors(payload)
        .map(|error| {
            let location = error.instance_path().as_str();
            let field = if location.is_empty() {
                "the payload as a whole".to_owned()
            } else {
                format!("field `{}`", location.trim_start_matches('/'))
            };
            format!("{}: {field}: {error}", schema.file.name)
        })
        .collect()
}

/// Whether the code can read (type, version) at all. An empty payload is never valid, so a
/// known type fails on its payload and an unknown one fails on its name. Older versions stay
/// on disk after a new one replaces them, so "known" means decodable, not currently emitted.
fn code_decodes(event_type: &str, schema_version: u32) -> bool {
    !matches!(
        SkuEvent::decode(event_type, schema_version, &Value::Null),
        Err(DecodeError::UnknownType { .. })
    )
}

/// The (type, version) named by a file in `schemas/<folder>/` that ends in `suffix`, or `None`
/// for a file named any other way.
fn parse_file_name(file_name: &str, suffix: &str) -> Option<(String, u32)> {
    let stem = file_name.strip_suffix(suffix)?;
    let (event_type, version) = stem.rsplit_once(".v")?;
    let schema_version = version.parse().ok()?;
    (!event_type.is_empty()).then(|| (event_type.to_owned(), schema_version))
}

/// The file names in `schemas/<folder>/`, sorted so failure messages are stable.
fn file_names(folder: &str) -> Vec<String> {
    let directory = Path::new(SCHEMAS_DIRECTORY).join(folder);
    let entries = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("schemas/{folder}: cannot be listed: {error}"));
    let mut names: Vec<String> = entries
        .map(|entry| {
            let entry = entry.unwrap_or_else(|error| panic!("schemas/{folder}: {error}"));
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_event_type_the_code_emits_has_a_schema_and_an_example() {
    let distinct: BTreeSet<_> = EVENT_TYPES.iter().collect();
    assert_eq!(
        distinct.len(),
        EVENT_TYPES.len(),
        "EVENT_TYPES lists a (type, version) twice: {EVENT_TYPES:?}"
    );
    let mut missing = Vec::new();
    for &(event_type, schema_version) in EVENT_TYPES {
        let schema = ContractFile::schema(event_type, schema_version);
        let example = ContractFile::example(event_type, schema_version);
        for file in [schema, example] {
            if !file.path.is_file() {
                missing.push(file.name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the code emits these event types but their contract files are missing:\n  {}",
        missing.join("\n  ")
    );
    // Compiling names the file of any schema that is not itself a valid draft 2020-12 schema.
    assert_eq!(emitted_schemas().len(), EVENT_TYPES.len());
}

#[test]
fn no_schema_or_example_exists_for_an_event_type_the_code_does_not_know() {
    let mut stray = Vec::new();
    for (folder, suffix) in [("events", ".schema.json"), ("examples", ".json")] {
        for file_name in file_names(folder) {
            let known = parse_file_name(&file_name, suffix)
                .is_some_and(|(event_type, version)| code_decodes(&event_type, version));
            if !known {
                stray.push(format!("schemas/{folder}/{file_name}"));
            }
        }
    }
    assert!(
        stray.is_empty(),
        "these files are named `<Type>.v<version>{{.schema,}}.json` for no (type, version) that \
         SkuEvent::decode reads, or are not named that way at all:\n  {}",
        stray.join("\n  ")
    );
}

#[test]
fn every_schema_names_itself_and_requires_every_field_it_allows() {
    // Optional values are written as null rather than left out, so a schema that lets a field
    // be absent describes payloads the code never writes, and one that allows unlisted fields
    // would let a renamed field pass unnoticed.
    let mut problems = Vec::new();
    for schema in emitted_schemas() {
        let document = &schema.document;
        let name = &schema.file.name;
        let file_name = schema_file_name(&schema.event_type, schema.schema_version);
        let expected_id = format!("{SCHEMA_ID_PREFIX}{file_name}");
        if document["$schema"] != JSON_SCHEMA_DRAFT_2020_12 {
            problems.push(format!(
                "{name}: `$schema` must be {JSON_SCHEMA_DRAFT_2020_12}"
            ));
        }
        if document["$id"] != expected_id.as_str() {
            problems.push(format!("{name}: `$id` must be {expected_id}"));
        }
        for keyword in ["title", "description"] {
            if document[keyword]
                .as_str()
                .is_none_or(|text| text.trim().is_empty())
            {
                problems.push(format!("{name}: `{keyword}` is missing or empty"));
            }
        }
        if document["type"] != "object" || document["additionalProperties"] != false {
            problems.push(format!(
                "{name}: must be `type: object` with `additionalProperties: false`"
            ));
        }
        let Some(properties) = document["properties"].as_object() else {
            problems.push(format!("{name}: `properties` is missing"));
            continue;
        };
        let declared: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let required: BTreeSet<&str> = document["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for field in declared.symmetric_difference(&required) {
            problems.push(format!(
                "{name}: field `{field}` must be both declared in `properties` and `required`"
            ));
        }
        for (field, specification) in properties {
            let described = specification["description"].as_str();
            if described.is_none_or(|text| text.trim().is_empty()) {
                problems.push(format!("{name}: field `{field}` has no description"));
            }
        }
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

#[test]
fn every_example_validates_against_its_schema_and_decodes() {
    // Every schema on disk is checked, not only the emitted ones: an older version must keep
    // decoding after a newer one replaces it.
    let mut pairs: BTreeSet<(String, u32)> = EVENT_TYPES
        .iter()
        .map(|&(event_type, version)| (event_type.to_owned(), version))
        .collect();
    pairs.extend(
        file_names("events")
            .iter()
            .filter_map(|file_name| parse_file_name(file_name, ".schema.json")),
    );
    let mut problems = Vec::new();
    for (event_type, schema_version) in &pairs {
        let (event_type, schema_version) = (event_type.as_str(), *schema_version);
        let schema = compile_schema(event_type, schema_version);
        let example_file = ContractFile::example(event_type, schema_version);
        let example = example_file.read_json();
        problems.extend(
            schema_violations(&schema, &example)
                .into_iter()
                .map(|violation| format!("{} does not validate: {violation}", example_file.name)),
        );
        let event = match SkuEvent::decode(event_type, schema_version, &example) {
            Ok(event) => event,
            Err(error) => {
                problems.push(format!(
                    "{}: SkuEvent::decode refused it: {error}",
                    example_file.name
                ));
                continue;
            }
        };
        // Only a current version re-encodes to itself; an older one is upcast on decode.
        let current = EVENT_TYPES
            .iter()
            .any(|&(emitted, version)| emitted == event_type && version == schema_version);
        if current {
            if (event.event_type(), event.schema_version()) != (event_type, schema_version) {
                problems.push(format!(
                    "{}: decoded as {} v{}",
                    example_file.name,
                    event.event_type(),
                    event.schema_version()
                ));
            }
            let encoded = event.encode();
            if encoded != example {
                problems.push(format!(
                    "{}: re-encoding the decoded event gives {encoded}, not the example",
                    example_file.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

fn sku() -> Sku {
    Sku::parse("SHOE-42-BLUE").unwrap()
}

fn start_of_test() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 10, 0, 0).unwrap()
}

fn reservation_id(value: &str) -> ReservationId {
    ReservationId::parse(value).unwrap()
}

fn replenish(quantity: u64, reference: Option<&str>) -> SkuCommand {
    SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(quantity).unwrap(),
        reference: reference.map(|value| Reference::parse(value).unwrap()),
        location: LocationId::default_location(),
    })
}

fn reserve(
    id: &str,
    order_id: Option<&str>,
    quantity: u64,
    ttl_seconds: Option<u64>,
) -> SkuCommand {
    SkuCommand::Reserve(ReserveStock {
        reservation_id: reservation_id(id),
        order_id: order_id.map(|value| OrderId::parse(value).unwrap()),
        quantity: Quantity::new(quantity).unwrap(),
        ttl_seconds: ttl_seconds.map(|value| TtlSeconds::new(value as i64).unwrap()),
        allocation: Allocation::default(),
    })
}

fn release(id: &str, reason: Option<&str>) -> SkuCommand {
    SkuCommand::Release(ReleaseReservation {
        reservation_id: reservation_id(id),
        reason: reason.map(|value| Reason::parse(value).unwrap()),
    })
}

fn expire(id: &str) -> SkuCommand {
    SkuCommand::Expire(ExpireReservation {
        reservation_id: reservation_id(id),
    })
}

fn confirm(id: &str) -> SkuCommand {
    SkuCommand::Confirm(ConfirmReservation {
        reservation_id: reservation_id(id),
    })
}

fn adjust(delta: i64, reason: &str, reference: Option<&str>) -> SkuCommand {
    SkuCommand::Adjust(AdjustStock {
        delta: AdjustmentDelta::new(delta).unwrap(),
        reason: Reason::parse(reason).unwrap(),
        reference: reference.map(|value| Reference::parse(value).unwrap()),
        location: LocationId::default_location(),
    })
}

fn dispatch(id: &str, from: &str, to: &str, quantity: u64, reference: Option<&str>) -> SkuCommand {
    SkuCommand::DispatchTransfer(DispatchTransfer {
        transfer_id: TransferId::parse(id).unwrap(),
        from_location: LocationId::parse(from).unwrap(),
        to_location: LocationId::parse(to).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        reference: reference.map(|r| Reference::parse(r).unwrap()),
    })
}

fn receive(id: &str, received: Option<u64>, reason: Option<&str>) -> SkuCommand {
    SkuCommand::ReceiveTransfer(ReceiveTransfer {
        transfer_id: TransferId::parse(id).unwrap(),
        quantity_received: received,
        discrepancy_reason: reason.map(|r| Reason::parse(r).unwrap()),
    })
}

fn cancel(id: &str, reason: Option<&str>) -> SkuCommand {
    SkuCommand::CancelTransfer(CancelTransfer {
        transfer_id: TransferId::parse(id).unwrap(),
        reason: reason.map(|r| Reason::parse(r).unwrap()),
    })
}

fn register(name: &str, unit: &str, attributes: &[(&str, &str)]) -> SkuCommand {
    SkuCommand::Register(RegisterSku {
        name: ProductName::parse(name).unwrap(),
        unit: Unit::parse(unit).unwrap(),
        attributes: Attributes::new(
            attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap(),
    })
}

fn set_reorder_point(reorder_point: u64) -> SkuCommand {
    SkuCommand::SetReorderPoint(SetReorderPoint {
        reorder_point: ReorderPoint::new(reorder_point as i64).unwrap(),
        location: LocationId::default_location(),
    })
}

/// A SKU driven through `decide` one command at a time, folding each accepted event as the
/// single writer does, and keeping every event it produced.
struct Session {
    state: SkuState,
    now: DateTime<Utc>,
    events: Vec<SkuEvent>,
}

impl Session {
    fn new() -> Self {
        Self {
            state: SkuState::new(sku()),
            now: start_of_test(),
            events: Vec::new(),
        }
    }

    fn run(&mut self, command: SkuCommand) {
        let events = self
            .state
            .decide(&command, self.now)
            .unwrap_or_else(|error| {
                panic!("the scenario's command {command:?} was refused: {error}")
            });
        assert!(
            !events.is_empty(),
            "the scenario's command {command:?} emitted nothing"
        );
        for event in events {
            self.state.apply(&event);
            self.events.push(event);
        }
    }
}

#[test]
fn every_event_the_code_emits_validates_against_its_schema() {
    // The scenario reaches every event type, each optional field both present and null, and the
    // limits of every value, since a schema and the code most often disagree at the edges.
    let longest_identifier = "R".repeat(IDENTIFIER_LENGTH_MAX);
    // Non-ASCII text checks that both sides count characters, not bytes.
    let longest_reason = "é".repeat(REASON_LENGTH_MAX);
    let longest_reference = "ü".repeat(REFERENCE_LENGTH_MAX);
    let ttl_max = RESERVATION_TTL_SECONDS_MAX;
    let delta_max = QUANTITY_MAX as i64;

    let mut session = Session::new();
    session.run(set_reorder_point(QUANTITY_MAX));
    session.run(set_reorder_point(0));
    session.run(replenish(QUANTITY_MAX, Some(&longest_reference)));
    session.run(replenish(100, None));
    session.run(reserve(
        "res-ttl:order",
        Some("ord-2026-000123"),
        5,
        Some(900),
    ));
    session.run(reserve(&longest_identifier, None, 3, None));
    session.run(reserve(
        "res_order.only",
        Some(&longest_identifier),
        2,
        None,
    ));
    session.run(reserve("res-ttl-only", None, 1, Some(ttl_max)));
    session.run(reserve("res-ship-1", Some("ord-2026-000124"), 4, Some(1)));
    session.run(reserve("0", None, QUANTITY_MAX, None));
    session.run(release(&longest_identifier, Some(&longest_reason)));
    session.run(release("res_order.only", None));
    session.run(confirm("res-ship-1"));
    session.run(confirm("0"));
    session.now += Duration::seconds(900);
    session.run(expire("res-ttl:order"));
    session.now += Duration::seconds(ttl_max as i64);
    session.run(expire("res-ttl-only"));
    session.run(adjust(
        delta_max,
        "Found a pallet booked to the wrong SKU",
        Some("COUNT-2026-03-14-B12"),
    ));
    session.run(adjust(-delta_max, &longest_reason, None));
    session.run(adjust(-3, "Three units damaged on shelf B-12", None));
    session.run(dispatch(
        "TR-1",
        "default",
        "store-12",
        10,
        Some(&longest_reference),
    ));
    session.run(replenish(QUANTITY_MAX, None));
    session.run(dispatch(
        &longest_identifier,
        "default",
        "wh-1",
        QUANTITY_MAX,
        None,
    ));
    session.run(dispatch("TR-3", "default", "wh-1", 1, None));
    session.run(dispatch("TR-4", "default", "wh-1", 2, None));
    session.run(receive("TR-1", Some(0), Some(&longest_reason)));
    session.run(receive(&longest_identifier, None, None));
    session.run(cancel("TR-3", Some("Truck broke down")));
    session.run(cancel("TR-4", None));
    session.run(register(
        "Trail shoe",
        "pair",
        &[("colour", "blue"), ("size", "")],
    ));
    session.run(SkuCommand::Update(UpdateSku {
        name: Some(ProductName::parse(&"n".repeat(PRODUCT_NAME_LENGTH_MAX)).unwrap()),
        unit: Some(Unit::parse(&"u".repeat(UNIT_LENGTH_MAX)).unwrap()),
        attributes: Some(Attributes::new(BTreeMap::new()).unwrap()),
    }));
    session.run(SkuCommand::Discontinue(DiscontinueSku {
        reason: Some(Reason::parse("Replaced").unwrap()),
    }));
    let mut other = Session::new();
    other.run(SkuCommand::Discontinue(DiscontinueSku { reason: None }));
    session.events.extend(other.events);

    let mut problems = Vec::new();
    // (type, field, whether the value was null) for every field of every emitted payload.
    let mut seen: BTreeSet<(&str, String, bool)> = BTreeSet::new();
    for event in &session.events {
        let (event_type, schema_version) = (event.event_type(), event.schema_version());
        let payload = event.encode();
        problems.extend(schema_violations(
            emitted_schema(event_type, schema_version),
            &payload,
        ));
        for (field, value) in payload.as_object().into_iter().flatten() {
            seen.insert((event_type, field.clone(), value.is_null()));
        }
    }
    for schema in emitted_schemas() {
        let event_type = schema.event_type.as_str();
        if !session
            .events
            .iter()
            .any(|event| event.event_type() == event_type)
        {
            problems.push(format!("the scenario never emits {event_type}"));
        }
        let properties = schema.document["properties"]
            .as_object()
            .into_iter()
            .flatten();
        for (field, specification) in properties {
            let nullable = specification["type"]
                .as_array()
                .is_some_and(|types| types.contains(&json!("null")));
            for null in [true, false].into_iter().filter(|&null| nullable || !null) {
                if !seen.contains(&(event_type, field.clone(), null)) {
                    let shape = if null { "null" } else { "set" };
                    problems.push(format!(
                        "the scenario never emits {event_type} with field `{field}` {shape}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

#[test]
fn a_payload_that_breaks_the_schema_is_refused_by_both() {
    // Each case starts from the valid example and breaks one field in a way that both the
    // schema and the payload structs must refuse.
    type Break = fn(&mut Value);
    let cases: [(&str, &str, Break); 8] = [
        ("StockReserved", "quantity", |payload| {
            payload["quantity"] = json!(-5)
        }),
        ("StockReplenished", "quantity", |payload| {
            payload.as_object_mut().unwrap().remove("quantity");
        }),
        ("StockAdjusted", "reason", |payload| {
            payload.as_object_mut().unwrap().remove("reason");
        }),
        ("ReservationExpired", "expires_at", |payload| {
            payload["expires_at"] = Value::Null
        }),
        ("ReservationExpired", "expires_at", |payload| {
            payload["expires_at"] = json!("yesterday at noon")
        }),
        ("StockAdjusted", "delta", |payload| {
            payload["delta"] = json!(1.5)
        }),
        ("ReservationConfirmed", "reservation_id", |payload| {
            payload["reservation_id"] = json!(42)
        }),
        ("ReorderPointSet", "reorder_point", |payload| {
            payload["reorder_point"] = json!("25")
        }),
    ];
    for (event_type, field, break_payload) in cases {
        let mut payload = ContractFile::example(event_type, CURRENT_VERSION).read_json();
        break_payload(&mut payload);
        let violations = schema_violations(emitted_schema(event_type, CURRENT_VERSION), &payload);
        assert!(
            violations.iter().any(|violation| violation.contains(field)),
            "{event_type} v1 with `{field}` broken ({payload}) should be refused by its schema \
             for `{field}`, but the schema reported: {violations:?}"
        );
        let decoded = SkuEvent::decode(event_type, CURRENT_VERSION, &payload);
        assert!(
            matches!(decoded, Err(DecodeError::Payload { .. })),
            "{event_type} v1 with `{field}` broken ({payload}) should be refused by \
             SkuEvent::decode, but it gave {decoded:?}"
        );
    }
}

/// Why the schema of `event_type` v1 and the rules in values.rs disagree about `field` holding
/// `value`, or `None` when they agree. The rest of the payload is the valid example, so the
/// field alone decides.
fn disagreement(event_type: &str, field: &str, value: Value, code_accepts: bool) -> Option<String> {
    let version = current_version(event_type);
    let mut payload = ContractFile::example(event_type, version).read_json();
    payload[field] = value.clone();
    let schema = emitted_schema(event_type, version);
    let schema_accepts = schema.validator.is_valid(&payload);
    let verdict = |accepts: bool| if accepts { "accepts" } else { "refuses" };
    (schema_accepts != code_accepts).then(|| {
        format!(
            "{}: field `{field}` = {value}: the schema {} it but the value type in values.rs {} it",
            schema.file.name,
            verdict(schema_accepts),
            verdict(code_accepts)
        )
    })
}

/// The schema version `event_type` is written with today.
fn current_version(event_type: &str) -> u32 {
    EVENT_TYPES
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|&(_, version)| version)
        .unwrap_or_else(|| panic!("{event_type} is not emitted"))
}

/// The events that carry a reservation id, an order id and a reservation's quantity.
const RESERVATION_EVENT_TYPES: [&str; 4] = [
    "StockReserved",
    "ReservationReleased",
    "ReservationExpired",
    "ReservationConfirmed",
];

#[test]
fn the_schemas_accept_exactly_the_values_that_commands_accept() {
    // The schemas restate the rules of values.rs in another language; these are the edges where
    // a restated rule drifts: bounds off by one, separators, white space that counts as blank,
    // control characters, and lengths counted in bytes instead of characters.
    let quantity_max = QUANTITY_MAX as i64;
    let ttl_max = RESERVATION_TTL_SECONDS_MAX as i64;
    let identifiers = [
        "",
        "a",
        "0",
        "Z9",
        "a-b_c.d:e",
        "-a",
        "_a",
        ".a",
        ":a",
        "a b",
        "a/b",
        "a#b",
        "ä",
        "aä",
        "a\n",
        "a\u{0}",
    ]
    .map(String::from)
    .into_iter()
    .chain([
        "A".repeat(IDENTIFIER_LENGTH_MAX),
        "A".repeat(IDENTIFIER_LENGTH_MAX + 1),
    ]);
    let texts = [
        "",
        " ",
        "   ",
        "\t",
        "ok",
        " padded ",
        "line\nbreak",
        "tab\there",
        "a\u{7f}",
        "a\u{85}",
        "\u{a0}",
        "\u{a0}x",
        "\u{2003}",
        "\u{2028}",
        "a\u{2028}b",
        "\u{3000}",
        "\u{feff}",
        "\u{180e}",
        "\u{200b}",
        "Größe passt nicht",
        "\u{1f4e6} box",
    ]
    .map(String::from)
    .into_iter()
    .chain([
        "é".repeat(REFERENCE_LENGTH_MAX),
        "é".repeat(REFERENCE_LENGTH_MAX + 1),
        "é".repeat(REASON_LENGTH_MAX),
        "é".repeat(REASON_LENGTH_MAX + 1),
    ]);

    let mut problems = Vec::new();
    let mut check = |event_type: &str, field: &str, value: Value, code_accepts: bool| {
        problems.extend(disagreement(event_type, field, value, code_accepts));
    };
    for quantity in [-1, 0, 1, quantity_max, quantity_max + 1] {
        let accepts = Quantity::from_signed(quantity).is_ok();
        for event_type in RESERVATION_EVENT_TYPES
            .into_iter()
            .chain(["StockReplenished"])
        {
            check(event_type, "quantity", json!(quantity), accepts);
        }
    }
    for delta in [
        -quantity_max - 1,
        -quantity_max,
        -1,
        0,
        1,
        quantity_max,
        quantity_max + 1,
    ] {
        let accepts = AdjustmentDelta::new(delta).is_ok();
        check("StockAdjusted", "delta", json!(delta), accepts);
    }
    for point in [-1, 0, 1, quantity_max, quantity_max + 1] {
        let accepts = ReorderPoint::new(point).is_ok();
        check("ReorderPointSet", "reorder_point", json!(point), accepts);
        check(
            "ReorderPointSet",
            "previous_reorder_point",
            json!(point),
            accepts,
        );
    }
    for ttl in [-1, 0, 1, ttl_max, ttl_max + 1] {
        let accepts = TtlSeconds::new(ttl).is_ok();
        check("StockReserved", "ttl_seconds", json!(ttl), accepts);
    }
    for identifier in identifiers.clone() {
        let location_accepted = LocationId::parse(&identifier).is_ok();
        for &(event_type, version) in EVENT_TYPES {
            let example = ContractFile::example(event_type, version).read_json();
            for field in ["location", "from_location", "to_location"] {
                if example.get(field).is_some() {
                    check(event_type, field, json!(identifier), location_accepted);
                }
            }
        }
        let transfer_id_accepted = TransferId::parse(&identifier).is_ok();
        for event_type in [
            "TransferDispatched",
            "TransferReceived",
            "TransferCancelled",
        ] {
            check(
                event_type,
                "transfer_id",
                json!(identifier),
                transfer_id_accepted,
            );
        }
    }
    for location in [
        "A".repeat(LOCATION_LENGTH_MAX),
        "A".repeat(LOCATION_LENGTH_MAX + 1),
    ] {
        let accepted = LocationId::parse(&location).is_ok();
        check("StockReplenished", "location", json!(location), accepted);
    }
    for identifier in identifiers {
        let reservation_id_accepted = ReservationId::parse(&identifier).is_ok();
        let order_id_accepted = OrderId::parse(&identifier).is_ok();
        for event_type in RESERVATION_EVENT_TYPES {
            check(
                event_type,
                "reservation_id",
                json!(identifier),
                reservation_id_accepted,
            );
            check(event_type, "order_id", json!(identifier), order_id_accepted);
        }
    }
    for text in texts {
        let reason_accepted = Reason::parse(&text).is_ok();
        let reference_accepted = Reference::parse(&text).is_ok();
        check("StockAdjusted", "reason", json!(text), reason_accepted);
        check(
            "ReservationReleased",
            "reason",
            json!(text),
            reason_accepted,
        );
        check(
            "StockAdjusted",
            "reference",
            json!(text),
            reference_accepted,
        );
        check(
            "StockReplenished",
            "reference",
            json!(text),
            reference_accepted,
        );
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// Short strings mixing the characters at the edges of the identifier and text rules with any
/// character at all, so that random draws often land on a boundary.
fn edge_string_strategy() -> impl Strategy<Value = String> {
    let edge_characters = proptest::sample::select(vec![
        'a', 'Z', '0', '-', '_', '.', ':', ' ', '/', '\t', '\n', '\u{0}', '\u{7f}', '\u{85}',
        '\u{a0}', '\u{2003}', '\u{2028}', '\u{3000}', '\u{feff}', 'é',
    ]);
    proptest::collection::vec(prop_oneof![3 => edge_characters, 1 => any::<char>()], 0..12)
        .prop_map(String::from_iter)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_schemas_and_the_values_agree_on_random_identifiers_and_text(
        text in edge_string_strategy()
    ) {
        let checks = [
            ("StockReserved", "reservation_id", ReservationId::parse(&text).is_ok()),
            ("StockReserved", "order_id", OrderId::parse(&text).is_ok()),
            ("StockAdjusted", "reason", Reason::parse(&text).is_ok()),
            ("StockReplenished", "reference", Reference::parse(&text).is_ok()),
        ];
        for (event_type, field, code_accepts) in checks {
            let disagreement = disagreement(event_type, field, json!(text), code_accepts);
            prop_assert!(disagreement.is_none(), "{}", disagreement.unwrap_or_default());
        }
    }
}

/// Reservation ids come mostly from a small pool, so that releases, expiries and confirmations
/// often find a reservation an earlier step opened; the rest are any valid id.
fn reservation_id_strategy() -> impl Strategy<Value = ReservationId> {
    prop_oneof![
        4 => (0..6u32).prop_map(|n| reservation_id(&format!("res-{n}"))),
        1 => "[A-Za-z0-9][A-Za-z0-9._:-]{0,127}".prop_map(|value| reservation_id(&value)),
    ]
}

fn order_id_strategy() -> impl Strategy<Value = Option<OrderId>> {
    proptest::option::of(
        "[A-Za-z0-9][A-Za-z0-9._:-]{0,127}".prop_map(|value| OrderId::parse(&value).unwrap()),
    )
}

fn quantity_strategy() -> impl Strategy<Value = Quantity> {
    prop_oneof![1..=50u64, 1..=QUANTITY_MAX, Just(QUANTITY_MAX)]
        .prop_map(|value| Quantity::new(value).unwrap())
}

/// Any printable Unicode text up to `length_max` characters; blank text is not a valid reason
/// or reference, so it is left out rather than built.
fn text_strategy(length_max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{1,{length_max}}}"))
        .unwrap()
        .prop_filter("reasons and references are never blank", |text| {
            !text.trim().is_empty()
        })
        // Line and paragraph separators are refused like line breaks, though Unicode does
        // not class them as control characters.
        .prop_filter("reasons and references are one line", |text| {
            !text.contains(['\u{2028}', '\u{2029}'])
        })
}

fn reason_strategy() -> impl Strategy<Value = Reason> {
    text_strategy(REASON_LENGTH_MAX).prop_map(|text| Reason::parse(&text).unwrap())
}

fn reference_strategy() -> impl Strategy<Value = Option<Reference>> {
    proptest::option::of(
        text_strategy(REFERENCE_LENGTH_MAX).prop_map(|text| Reference::parse(&text).unwrap()),
    )
}

fn ttl_strategy() -> impl Strategy<Value = Option<TtlSeconds>> {
    let ttl_max = RESERVATION_TTL_SECONDS_MAX as i64;
    proptest::option::of(
        prop_oneof![1..=ttl_max, Just(ttl_max)].prop_map(|value| TtlSeconds::new(value).unwrap()),
    )
}

fn delta_strategy() -> impl Strategy<Value = AdjustmentDelta> {
    let delta_max = QUANTITY_MAX as i64;
    prop_oneof![
        -50..=50i64,
        -delta_max..=delta_max,
        Just(delta_max),
        Just(-delta_max)
    ]
    .prop_filter_map("an adjustment is never zero", |value| {
        AdjustmentDelta::new(value).ok()
    })
}

/// A few locations, so that random commands meet at one often and spread over several.
fn location_strategy() -> impl Strategy<Value = LocationId> {
    proptest::sample::select(vec!["default", "store-12", "wh-1"])
        .prop_map(|name| LocationId::parse(name).unwrap())
}

fn allocation_strategy() -> impl Strategy<Value = Allocation> {
    prop_oneof![
        4 => location_strategy().prop_map(Allocation::At),
        1 => proptest::sample::subsequence(vec!["wh-1", "store-12", "default"], 1..=3)
            .prop_shuffle()
            .prop_map(|names| Allocation::preference(
                names.into_iter().map(|n| LocationId::parse(n).unwrap()).collect()
            ).unwrap()),
        1 => Just(Allocation::MostAvailable),
    ]
}

fn command_strategy() -> impl Strategy<Value = SkuCommand> {
    let reorder_point_max = QUANTITY_MAX as i64;
    prop_oneof![
           3 => (quantity_strategy(), reference_strategy(), location_strategy()).prop_map(
               |(quantity, reference, location)| {
                   SkuCommand::Replenish(ReplenishStock { quantity, reference, location })
               }
           ),
           4 => (
               reservation_id_strategy(),
               order_id_strategy(),
               quantity_strategy(),
               ttl_strategy(),
               allocation_strategy(),
           )
               .prop_map(|(reservation_id, order_id, quantity, ttl_seconds, allocation)| {
                   SkuCommand::Reserve(ReserveStock {
                       reservation_id,
                       order_id,
                       quantity,
                       ttl_seconds,
                       allocation,
                   })
               }),
           2 => (reservation_id_strategy(), proptest::option::of(reason_strategy())).prop_map(
               |(reservation_id, reason)| {
                   SkuCommand::Release(ReleaseReservation { reservation_id, reason })
               }
           ),
           2 => reservation_id_strategy()
               .prop_map(|reservation_id| SkuCommand::Expire(ExpireReservation { reservation_id })),
           2 => reservation_id_strategy()
               .prop_map(|reservation_id| SkuCommand::Confirm(ConfirmReservation { reservation_id })),
           2 => (delta_strategy(), reason_strategy(), reference_strategy(), location_strategy())
               .prop_map(|(delta, reason, reference, location)| {
                   SkuCommand::Adjust(AdjustStock { delta, reason, reference, location })
               }),
           1 => (
               prop_oneof![0..=100i64, 0..=reorder_point_max, Just(reorder_point_max)],
               location_strategy(),
           )
               .prop_map(|(value, location)| SkuCommand::SetReorderPoint(SetReorderPoint {
                   reorder_point: ReorderPoint::new(value).unwrap(),
                   location,
               })),
           2 => ((0..4u32), location_strategy(), location_strategy(), quantity_strategy(), reference_strategy())
               .prop_filter("two locations", |(_, from, to, _, _)| from != to)
               .prop_map(|(n, from, to, quantity, reference)| SkuCommand::DispatchTransfer(
                   DispatchTransfer {
    transfer_id: TransferId::parse(&format!("t-{n}")).unwrap(),
    from_location: from,
    to_location: to,
    quantity,
    reference,
    }
               )),
           2 => ((0..4u32), proptest::option::of(0..=QUANTITY_MAX), proptest::option::of(reason_strategy()))
               .prop_map(|(n, received, discrepancy_reason)| SkuCommand::ReceiveTransfer(ReceiveTransfer {
                   transfer_id: TransferId::parse(&format!("t-{n}")).unwrap(),
                   quantity_received: received,
                   discrepancy_reason,
               })),
           1 => ((0..4u32), proptest::option::of(reason_strategy())).prop_map(|(n, reason)| {
               SkuCommand::CancelTransfer(CancelTransfer {
                   transfer_id: TransferId::parse(&format!("t-{n}")).unwrap(),
                   reason,
               })
           }),
           1 => Just(register("Trail shoe", "pair", &[("colour", "blue")])),
           1 => Just(SkuCommand::Discontinue(DiscontinueSku { reason: None })),
       ]
}

/// How far the clock moves before a command is decided: often not at all, sometimes past any
/// time-to-live, so that expiries are both refused and accepted.
fn clock_advance_seconds_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(0i64),
        1 => 0..=3_600i64,
        1 => 0..=RESERVATION_TTL_SECONDS_MAX as i64,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_event_decided_from_random_commands_validates_against_its_schema(
        steps in proptest::collection::vec((clock_advance_seconds_strategy(), command_strategy()), 1..40)
    ) {
        let mut state = SkuState::new(sku());
        let mut now = start_of_test();
        for (clock_advance_seconds, command) in &steps {
            now += Duration::seconds(*clock_advance_seconds);
            // A refusal is a business rule doing its job; only accepted commands become facts.
            let Ok(events) = state.decide(command, now) else {
                continue;
            };
            for event in &events {
                let (event_type, schema_version) = (event.event_type(), event.schema_version());
                let payload = event.encode();
                let violations = schema_violations(emitted_schema(event_type, schema_version), &payload);
                prop_assert!(
                    violations.is_empty(),
                    "{:?} emitted {} v{} that breaks its schema:\n  {}\npayload: {}",
                    command, event_type, schema_version, violations.join("\n  "), payload
                );
                let decoded = SkuEvent::decode(event_type, schema_version, &payload)
                    .map_err(|error| error.to_string());
                prop_assert_eq!(decoded.as_ref(), Ok(event), "payload: {}", payload);
                state.apply(event);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// History pages resume their fold from balances alone: the balances folded from the events
    /// must be the state's balances after every event of any accepted command sequence.
    #[test]
    fn balances_folded_from_events_alone_equal_the_state_after_every_event(
        steps in proptest::collection::vec((clock_advance_seconds_strategy(), command_strategy()), 1..60)
    ) {
        let mut state = SkuState::new(sku());
        let mut balances = Balances::default();
        let mut now = start_of_test();
        for (clock_advance_seconds, command) in &steps {
            now += Duration::seconds(*clock_advance_seconds);
            let Ok(events) = state.decide(command, now) else {
                continue;
            };
            for event in &events {
                state.apply(event);
                balances.apply(event);
                prop_assert_eq!(balances, Balances::of(&state), "after {:?}", event);
                prop_assert_eq!(balances.available(), state.available());
            }
        }
    }
}
