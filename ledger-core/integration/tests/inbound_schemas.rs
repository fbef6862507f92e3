//! The inbound contract: every order event type the ledger consumes has a JSON Schema and an
//! example under `schemas/integration/inbound/`, no file names a type the code does not consume,
//! every example validates against its schema and is read by the consumers' reader, and the
//! reader refuses what the schemas refuse.

use ledger_integration::inbound::{
    OrderAction, OrderEventReader, OrderEventType, PoisonKind, ORDER_EVENT_TYPES,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const INBOUND_DIRECTORY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../schemas/integration/inbound"
);

const SCHEMA_ID_PREFIX: &str = "https://inventory-ledger.invalid/schemas/integration/inbound/";

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{}: cannot be read: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: is not valid JSON: {error}", path.display()))
}

fn schema_path(event_type: OrderEventType) -> PathBuf {
    Path::new(INBOUND_DIRECTORY).join(format!("{}.schema.json", event_type.name()))
}

fn example_path(event_type: OrderEventType) -> PathBuf {
    Path::new(INBOUND_DIRECTORY)
        .join("examples")
        .join(format!("{}.json", event_type.name()))
}

fn files(folder: &Path) -> BTreeSet<String> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect()
}

#[test]
fn every_order_event_type_has_a_schema_and_an_example_and_no_file_is_unknown() {
    let mut schemas = BTreeSet::new();
    let mut examples = BTreeSet::new();
    for &event_type in ORDER_EVENT_TYPES {
        let document = read_json(&schema_path(event_type));
        assert_eq!(
            document["$id"],
            format!("{SCHEMA_ID_PREFIX}{}.schema.json", event_type.name())
        );
        assert_eq!(document["properties"]["type"]["const"], event_type.name());
        assert_eq!(
            document,
            serde_json::from_str::<Value>(event_type.schema()).unwrap(),
            "the reader compiles the committed file of {}",
            event_type.name()
        );
        assert!(example_path(event_type).is_file());
        schemas.insert(format!("{}.schema.json", event_type.name()));
        examples.insert(format!("{}.json", event_type.name()));
    }
    assert_eq!(files(Path::new(INBOUND_DIRECTORY)), schemas);
    assert_eq!(
        files(&Path::new(INBOUND_DIRECTORY).join("examples")),
        examples
    );
}

#[test]
fn every_example_validates_and_is_read_with_its_order() {
    let reader = OrderEventReader::new();
    for &event_type in ORDER_EVENT_TYPES {
        let example = read_json(&example_path(event_type));
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .build(&read_json(&schema_path(event_type)))
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", event_type.name());
        let event = reader
            .read(example.to_string().as_bytes())
            .unwrap_or_else(|poison| panic!("{}: {poison}", event_type.name()));
        assert_eq!(event.event_type, event_type);
        assert_eq!(
            event.order_id,
            example["data"]["order_id"].as_str().unwrap()
        );
        assert_eq!(event.id, example["id"].as_str().unwrap());
        assert_eq!(event.source, example["source"].as_str().unwrap());
    }
}

#[test]
fn cancelled_and_payment_failed_release_while_payment_succeeded_and_completed_confirm() {
    let actions: Vec<(&str, OrderAction)> = ORDER_EVENT_TYPES
        .iter()
        .map(|t| (t.name(), t.action()))
        .collect();
    assert_eq!(
        actions,
        [
            ("order.cancelled.v1", OrderAction::Release),
            ("order.payment_failed.v1", OrderAction::Release),
            ("order.payment_succeeded.v1", OrderAction::Confirm),
            ("order.completed.v1", OrderAction::Confirm),
        ]
    );
}

#[test]
fn the_reader_refuses_what_the_schemas_refuse_and_says_why() {
    let reader = OrderEventReader::new();
    let valid = read_json(&example_path(OrderEventType::Cancelled));
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut message = valid.clone();
        change(&mut message);
        reader.read(message.to_string().as_bytes()).unwrap_err()
    };
    for (what, poison) in [
        (
            "no order",
            broken(&|m| {
                m["data"].as_object_mut().unwrap().remove("order_id");
            }),
        ),
        (
            "an order id with a space",
            broken(&|m| m["data"]["order_id"] = json!("ord 1")),
        ),
        ("an empty id", broken(&|m| m["id"] = json!(""))),
        (
            "specversion 0.3",
            broken(&|m| m["specversion"] = json!("0.3")),
        ),
        (
            "a time that is no time",
            broken(&|m| m["time"] = json!("soon")),
        ),
        (
            "XML data",
            broken(&|m| m["datacontenttype"] = json!("application/xml")),
        ),
        (
            "an empty reason",
            broken(&|m| m["data"]["reason"] = json!("")),
        ),
    ] {
        assert_eq!(poison.kind, PoisonKind::SchemaViolation, "{what}: {poison}");
        assert!(
            poison.reason.contains("order.cancelled.v1"),
            "{what}: {poison}"
        );
    }
    let unknown = broken(&|m| m["type"] = json!("order.cancelled.v2"));
    assert_eq!(unknown.kind, PoisonKind::UnknownType);
    assert!(unknown.reason.contains("order.cancelled.v2"), "{unknown}");
    let not_json = reader.read(b"\xff\xfe not json").unwrap_err();
    assert_eq!(not_json.kind, PoisonKind::InvalidJson);
}
