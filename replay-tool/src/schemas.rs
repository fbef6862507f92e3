//! The event contract (`schemas/events/*.schema.json`), embedded at build time and compiled
//! once, so `verify` checks every stored event against the same files the contract tests use.

use jsonschema::Validator;

/// Every schema the ledger publishes: (event type, schema version, schema text).
const SCHEMA_FILES: &[(&str, u32, &str)] = &[
    (
        "StockReplenished",
        1,
        include_str!("../../schemas/events/StockReplenished.v1.schema.json"),
    ),
    (
        "StockReserved",
        1,
        include_str!("../../schemas/events/StockReserved.v1.schema.json"),
    ),
    (
        "ReservationReleased",
        1,
        include_str!("../../schemas/events/ReservationReleased.v1.schema.json"),
    ),
    (
        "ReservationExpired",
        1,
        include_str!("../../schemas/events/ReservationExpired.v1.schema.json"),
    ),
    (
        "ReservationConfirmed",
        1,
        include_str!("../../schemas/events/ReservationConfirmed.v1.schema.json"),
    ),
    (
        "StockAdjusted",
        1,
        include_str!("../../schemas/events/StockAdjusted.v1.schema.json"),
    ),
    (
        "ReorderPointSet",
        1,
        include_str!("../../schemas/events/ReorderPointSet.v1.schema.json"),
    ),
    (
        "StockReplenished",
        2,
        include_str!("../../schemas/events/StockReplenished.v2.schema.json"),
    ),
    (
        "StockReserved",
        2,
        include_str!("../../schemas/events/StockReserved.v2.schema.json"),
    ),
    (
        "ReservationReleased",
        2,
        include_str!("../../schemas/events/ReservationReleased.v2.schema.json"),
    ),
    (
        "ReservationExpired",
        2,
        include_str!("../../schemas/events/ReservationExpired.v2.schema.json"),
    ),
    (
        "ReservationConfirmed",
        2,
        include_str!("../../schemas/events/ReservationConfirmed.v2.schema.json"),
    ),
    (
        "StockAdjusted",
        2,
        include_str!("../../schemas/events/StockAdjusted.v2.schema.json"),
    ),
    (
        "ReorderPointSet",
        2,
        include_str!("../../schemas/events/ReorderPointSet.v2.schema.json"),
    ),
    (
        "TransferDispatched",
        1,
        include_str!("../../schemas/events/TransferDispatched.v1.schema.json"),
    ),
    (
        "TransferReceived",
        1,
        include_str!("../../schemas/events/TransferReceived.v1.schema.json"),
    ),
    (
        "TransferCancelled",
        1,
        include_str!("../../schemas/events/TransferCancelled.v1.schema.json"),
    ),
    (
        "SkuRegistered",
        1,
        include_str!("../../schemas/events/SkuRegistered.v1.schema.json"),
    ),
    (
        "SkuUpdated",
        1,
        include_str!("../../schemas/events/SkuUpdated.v1.schema.json"),
    ),
    (
        "SkuDiscontinued",
        1,
        include_str!("../../schemas/events/SkuDiscontinued.v1.schema.json"),
    ),
];

/// The compiled schemas, looked up by event type and schema version.
pub struct EventSchemas {
    validators: Vec<(&'static str, u32, Validator)>,
}

impl EventSchemas {
    /// Compile every embedded schema. The files are part of this build, so a schema that does
    /// not compile is a programmer error.
    pub fn compile() -> Self {
        let validators = SCHEMA_FILES
            .iter()
            .map(|&(event_type, schema_version, text)| {
                let document: serde_json::Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("{event_type} v{schema_version}: not JSON: {e}"));
                // Formats are asserted (an RFC 3339 time must be one) and unknown formats
                // refused, as the contract tests do, so both judge events alike.
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .should_ignore_unknown_formats(false)
                    .build(&document)
                    .unwrap_or_else(|e| {
                        panic!("{event_type} v{schema_version}: not a usable schema: {e}")
                    });
                (event_type, schema_version, validator)
            })
            .collect();
        Self { validators }
    }

    /// `Ok` when `data` matches the schema of its type and version; otherwise why not.
    pub fn check(
        &self,
        event_type: &str,
        schema_version: u32,
        data: &serde_json::Value,
    ) -> Result<(), String> {
        let Some((_, _, validator)) = self
            .validators
            .iter()
            .find(|(t, v, _)| *t == event_type && *v == schema_version)
        else {
            return Err(format!(
                "no schema for {event_type} v{schema_version} under schemas/events"
            ));
        };
        match validator.iter_errors(data).next() {
            None => Ok(()),
            Some(error) => Err(format!(
                "{event_type} v{schema_version} violates its schema at {}: {error}",
                error.instance_path()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SCHEMA_FILES;
    use ledger_domain::{EVENT_TYPES, EVENT_TYPES_UPCAST};

    #[test]
    fn every_version_the_code_reads_has_its_schema_embedded() {
        for &(event_type, version) in EVENT_TYPES.iter().chain(EVENT_TYPES_UPCAST) {
            assert!(
                SCHEMA_FILES
                    .iter()
                    .any(|&(t, v, _)| t == event_type && v == version),
                "{event_type} v{version} is not embedded for verify"
            );
        }
    }
}
