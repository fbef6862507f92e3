//! The integration contract: every integration event type has a JSON Schema and an example under
//! `schemas/integration/`, no file names a type the code does not publish, every example
//! validates, and — what consumers rely on — every message the mapping produces validates
//! against its type's schema, alerts included.

use chrono::{TimeZone, Utc};
use jsonschema::Validator;
use ledger_domain::{
    Metadata, Position, RecordedEvent, ReorderPointSet, ReservationConfirmed, ReservationExpired,
    ReservationReleased, Sku, SkuDiscontinued, SkuEvent, SkuRegistered, SkuUpdated, StockAdjusted,
    StockReplenished, StockReserved, TransferCancelled, TransferDispatched, TransferReceived,
};
use ledger_integration::contract::topic;
use ledger_integration::{
    map_event, IntegrationEvent, IntegrationEventType, SkuFold, INTEGRATION_EVENT_TYPES,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const INTEGRATION_DIRECTORY: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/integration");

const SCHEMA_ID_PREFIX: &str = "https://inventory-ledger.invalid/schemas/integration/";

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{}: cannot be read: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: is not valid JSON: {error}", path.display()))
}

fn schema_path(event_type: IntegrationEventType) -> std::path::PathBuf {
    Path::new(INTEGRATION_DIRECTORY).join(format!("{}.schema.json", event_type.name()))
}

fn example_path(event_type: IntegrationEventType) -> std::path::PathBuf {
    Path::new(INTEGRATION_DIRECTORY)
        .join("examples")
        .join(format!("{}.json", event_type.name()))
}

fn validator(event_type: IntegrationEventType) -> Validator {
    let document = read_json(&schema_path(event_type));
    // Formats (uuid, date-time, uri-reference) are asserted, and an unknown format fails, so a
    // misspelt format cannot silently switch a check off.
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(&document)
        .unwrap_or_else(|error| panic!("{}: not a usable schema: {error}", event_type.name()))
}

fn validators() -> BTreeMap<IntegrationEventType, Validator> {
    INTEGRATION_EVENT_TYPES
        .iter()
        .map(|&t| (t, validator(t)))
        .collect()
}

fn assert_valid(
    validators: &BTreeMap<IntegrationEventType, Validator>,
    message: &Value,
    what: &str,
) {
    let event_type = message["type"]
        .as_str()
        .and_then(IntegrationEventType::from_name)
        .unwrap_or_else(|| panic!("{what}: unknown type in {message}"));
    let errors: Vec<String> = validators[&event_type]
        .iter_errors(message)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match {}: {errors:#?}\n{message:#}",
        event_type.name()
    );
}

#[test]
fn every_integration_event_type_has_a_schema_and_an_example_and_no_file_is_unknown() {
    let mut expected_schemas = BTreeSet::new();
    let mut expected_examples = BTreeSet::new();
    for &event_type in INTEGRATION_EVENT_TYPES {
        let document = read_json(&schema_path(event_type));
        assert_eq!(
            document["$id"],
            format!("{SCHEMA_ID_PREFIX}{}.schema.json", event_type.name()),
            "$id of {}",
            event_type.name()
        );
        assert_eq!(
            document["properties"]["type"]["const"],
            event_type.name(),
            "the schema of {} fixes its type",
            event_type.name()
        );
        assert!(
            example_path(event_type).is_file(),
            "no example for {}",
            event_type.name()
        );
        expected_schemas.insert(format!("{}.schema.json", event_type.name()));
        expected_examples.insert(format!("{}.json", event_type.name()));
    }
    let list = |folder: &Path| -> BTreeSet<String> {
        std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_type().unwrap().is_file())
            .map(|entry| entry.file_name().into_string().unwrap())
            .collect()
    };
    assert_eq!(list(Path::new(INTEGRATION_DIRECTORY)), expected_schemas);
    assert_eq!(
        list(&Path::new(INTEGRATION_DIRECTORY).join("examples")),
        expected_examples
    );
}

#[test]
fn every_example_validates_against_its_schema_and_reads_as_an_integration_event() {
    let validators = validators();
    for &event_type in INTEGRATION_EVENT_TYPES {
        let example = read_json(&example_path(event_type));
        assert_eq!(example["type"], event_type.name());
        assert_valid(
            &validators,
            &example,
            &format!("the example of {}", event_type.name()),
        );
        let _: IntegrationEvent = serde_json::from_value(example).expect("reads as an event");
    }
}

fn recorded(sku: &Sku, version: u64, event: &SkuEvent) -> RecordedEvent {
    RecordedEvent {
        event_id: uuid::Uuid::new_v4(),
        stream: sku.stream(),
        version,
        position: Position {
            commit: 100 + version,
            prepare: 100 + version,
        },
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        data: event.encode(),
        metadata: Metadata {
            correlation_id: (version % 2 == 0).then(|| format!("corr-{version}")),
            traceparent: (version % 3 == 0)
                .then(|| format!("00-{:032x}-{:016x}-01", version + 1, version + 1)),
            ..Metadata::default()
        },
        recorded_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::milliseconds(version as i64 * 1_234),
        hash: None,
    }
}

/// A history touching every movement, two locations, transfers, the catalogue, and alerts
/// closed both ways.
fn scripted_history() -> Vec<SkuEvent> {
    let at = |location: &str| location.to_owned();
    let expires_at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 15, 0).unwrap();
    let attributes = |colour: &str| BTreeMap::from([("colour".to_owned(), colour.to_owned())]);
    vec![
        SkuEvent::Registered(SkuRegistered {
            name: "Widget".into(),
            unit: "each".into(),
            attributes: attributes("red"),
        }),
        SkuEvent::ReorderPointSet(ReorderPointSet {
            reorder_point: 5,
            previous_reorder_point: 0,
            location: at("default"),
        }),
        SkuEvent::Replenished(StockReplenished {
            quantity: 10,
            reference: Some("po-1".into()),
            location: at("default"),
        }),
        SkuEvent::Replenished(StockReplenished {
            quantity: 4,
            reference: None,
            location: at("store.12"),
        }),
        SkuEvent::Reserved(StockReserved {
            reservation_id: "r-1".into(),
            order_id: Some("o-1".into()),
            quantity: 8,
            ttl_seconds: Some(900),
            expires_at: Some(expires_at),
            location: at("default"),
        }),
        SkuEvent::Reserved(StockReserved {
            reservation_id: "r-2".into(),
            order_id: None,
            quantity: 3,
            ttl_seconds: None,
            expires_at: None,
            location: at("store.12"),
        }),
        SkuEvent::Released(ReservationReleased {
            reservation_id: "r-2".into(),
            order_id: None,
            quantity: 3,
            reason: Some("cart abandoned".into()),
            location: at("store.12"),
        }),
        SkuEvent::Reserved(StockReserved {
            reservation_id: "r-3".into(),
            order_id: Some("o-3".into()),
            quantity: 4,
            ttl_seconds: None,
            expires_at: None,
            location: at("store.12"),
        }),
        SkuEvent::Expired(ReservationExpired {
            reservation_id: "r-1".into(),
            order_id: Some("o-1".into()),
            quantity: 8,
            expires_at,
            location: at("default"),
        }),
        SkuEvent::Confirmed(ReservationConfirmed {
            reservation_id: "r-3".into(),
            order_id: Some("o-3".into()),
            quantity: 4,
            location: at("store.12"),
        }),
        SkuEvent::Adjusted(StockAdjusted {
            delta: -7,
            reason: "damaged".into(),
            reference: None,
            location: at("default"),
        }),
        SkuEvent::ReorderPointSet(ReorderPointSet {
            reorder_point: 2,
            previous_reorder_point: 5,
            location: at("default"),
        }),
        SkuEvent::Adjusted(StockAdjusted {
            delta: -2,
            reason: "cycle count".into(),
            reference: Some("count-9".into()),
            location: at("default"),
        }),
        SkuEvent::Replenished(StockReplenished {
            quantity: 50,
            reference: None,
            location: at("default"),
        }),
        SkuEvent::Updated(SkuUpdated {
            name: "Widget, large".into(),
            unit: "each".into(),
            attributes: attributes("blue"),
        }),
        SkuEvent::TransferDispatched(TransferDispatched {
            transfer_id: "t-1".into(),
            from_location: at("default"),
            to_location: at("store.12"),
            quantity: 5,
            reference: Some("van 7".into()),
        }),
        SkuEvent::TransferReceived(TransferReceived {
            transfer_id: "t-1".into(),
            from_location: at("default"),
            to_location: at("store.12"),
            quantity_dispatched: 5,
            quantity_received: 4,
            discrepancy_reason: Some("one crushed".into()),
        }),
        SkuEvent::TransferDispatched(TransferDispatched {
            transfer_id: "t-2".into(),
            from_location: at("default"),
            to_location: at("store.12"),
            quantity: 3,
            reference: None,
        }),
        SkuEvent::TransferCancelled(TransferCancelled {
            transfer_id: "t-2".into(),
            from_location: at("default"),
            to_location: at("store.12"),
            quantity: 3,
            reason: None,
        }),
        SkuEvent::Discontinued(SkuDiscontinued {
            reason: Some("end of range".into()),
        }),
    ]
}

#[test]
fn every_message_the_mapping_produces_validates_and_every_type_is_produced() {
    let validators = validators();
    let sku = Sku::parse("WIDGET.1").unwrap();
    let mut fold = SkuFold::default();
    let mut produced = BTreeSet::new();
    let mut close_reasons = BTreeSet::new();
    for (version, event) in scripted_history().iter().enumerate() {
        let stored = recorded(&sku, version as u64, event);
        let messages = map_event("urn:inventory-ledger", &sku, &stored, event, &mut fold);
        assert_eq!(
            messages[0].id, stored.event_id,
            "a movement's id is its event's id"
        );
        for message in &messages {
            assert_eq!(
                message.traceparent, stored.metadata.traceparent,
                "a message carries its event's trace context (alerts: the causing event's)"
            );
            let json = serde_json::to_value(message).unwrap();
            assert_valid(
                &validators,
                &json,
                &format!("the message for event {version}"),
            );
            assert_eq!(message.subject, "WIDGET.1");
            assert_eq!(message.topic(), topic(&message.event_type, "WIDGET.1"));
            assert!(
                message.topic().ends_with(".WIDGET%2E1"),
                "dots in a SKU stay inside one topic word"
            );
            produced.insert(IntegrationEventType::from_name(&message.event_type).unwrap());
            if let Some(reason) = message.data.get("close_reason") {
                close_reasons.insert(reason.as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(produced, INTEGRATION_EVENT_TYPES.iter().copied().collect());
    assert_eq!(
        close_reasons,
        BTreeSet::from(["recovered".to_owned(), "reorder_point_lowered".to_owned()])
    );
}

#[test]
fn balances_after_are_the_skus_and_the_locations_and_mapping_again_gives_the_same_messages() {
    let sku = Sku::parse("WIDGET-2").unwrap();
    let history = scripted_history();
    let stored: Vec<RecordedEvent> = history
        .iter()
        .enumerate()
        .map(|(version, event)| recorded(&sku, version as u64, event))
        .collect();
    let map_all = || {
        let mut fold = SkuFold::default();
        stored
            .iter()
            .zip(&history)
            .flat_map(|(recorded, event)| map_event("urn:test", &sku, recorded, event, &mut fold))
            .collect::<Vec<_>>()
    };
    let first = map_all();
    assert_eq!(
        first,
        map_all(),
        "a replay from the same fold publishes the same messages, ids included"
    );
    // After the fifth event (r-2 reserved at store.12): totals 14 on hand, 11 reserved; store.12
    // 4 on hand, 3 reserved.
    let reserved = first
        .iter()
        .find(|m| {
            m.data["reservation_id"] == "r-2" && m.event_type == "inventory.stock.reserved.v1"
        })
        .unwrap();
    assert_eq!(reserved.data["balances_after"]["on_hand"], 14);
    assert_eq!(reserved.data["balances_after"]["reserved"], 11);
    assert_eq!(reserved.data["balances_after"]["available"], 3);
    assert_eq!(reserved.data["location"], "store.12");
    assert_eq!(reserved.data["location_balances_after"]["on_hand"], 4);
    assert_eq!(reserved.data["location_balances_after"]["available"], 1);
    // That reserve took available (3) below the reorder point (5): the alert opens right after it.
    let position = first.iter().position(|m| m.id == reserved.id).unwrap();
    assert_eq!(
        first[position + 1].event_type,
        "inventory.low_stock_alert.opened.v1"
    );
    assert_eq!(
        first[position + 1].data["caused_by_event_id"],
        reserved.id.to_string()
    );
    let ids: BTreeSet<_> = first.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), first.len(), "every message has its own id");

    // A transfer shows the units in transit and both ends; its receipt shows the destination.
    let of_type = |name: &str| first.iter().find(|m| m.event_type == name).unwrap();
    let dispatched = of_type("inventory.transfer.dispatched.v1");
    assert_eq!(dispatched.data["in_transit_after"], 5);
    assert_eq!(
        dispatched.data["to_location_balances_after"]["in_transit"],
        5
    );
    let received = of_type("inventory.transfer.received.v1");
    assert_eq!(received.data["in_transit_after"], 0);
    assert_eq!(received.data["to_location_balances_after"]["in_transit"], 0);
    assert!(received.data.get("from_location_balances_after").is_none());
    assert_eq!(
        received.data["to_location_balances_after"]["on_hand"],
        dispatched.data["to_location_balances_after"]["on_hand"]
            .as_u64()
            .unwrap()
            + 4
    );
    // Only two locations: after the receipt, the source holds what the store does not.
    let number = |value: &Value| value.as_u64().unwrap();
    let source_after_receipt = number(&received.data["balances_after"]["on_hand"])
        - number(&received.data["to_location_balances_after"]["on_hand"]);
    let cancelled = of_type("inventory.transfer.cancelled.v1");
    assert_eq!(
        number(&cancelled.data["from_location_balances_after"]["on_hand"]),
        source_after_receipt,
        "a cancelled transfer's units are back at the source"
    );
    assert_eq!(
        of_type("inventory.sku.updated.v1").data["attributes"]["colour"],
        "blue"
    );
}
