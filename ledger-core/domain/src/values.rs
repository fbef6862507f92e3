//! Validated values that commands are built from. A value that exists is valid: constructors
//! check the alphabet, the length and the range, and say precisely what was wrong otherwise.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest SKU accepted. Product codes in retail (GTIN, vendor codes with variant suffixes) stay
/// well under 40 characters; 64 leaves room while keeping stream names and index keys short.
pub const SKU_LENGTH_MAX: usize = 64;

/// Longest reservation id or order id. Clients send UUIDs (36 characters) or their own order
/// numbers with prefixes; 128 accepts both with room, and bounds what every event carries.
pub const IDENTIFIER_LENGTH_MAX: usize = 128;

/// Longest adjustment or release reason. A sentence or two for an auditor, not a document.
pub const REASON_LENGTH_MAX: usize = 500;

/// Longest external reference (purchase order, receipt, count sheet number).
pub const REFERENCE_LENGTH_MAX: usize = 128;

/// Largest quantity a single movement may carry. Far above any real pallet or container, and
/// small enough that sums of many movements stay far from `i64::MAX` (PostgreSQL `bigint`).
pub const QUANTITY_MAX: u64 = 1_000_000_000;

/// Largest on hand a SKU may reach. Keeps every balance representable as a PostgreSQL `bigint`
/// and in JSON numbers that JavaScript clients read exactly (below 2^53).
pub const ON_HAND_MAX: u64 = 1_000_000_000_000;

/// Longest time-to-live for a reservation: 30 days. Checkout holds last minutes; a longer hold
/// is a back order, which this ledger models as a reservation without a TTL.
pub const RESERVATION_TTL_SECONDS_MAX: u64 = 30 * 24 * 60 * 60;

/// Prefix of every SKU stream: the stream of SKU `ABC-1` is `sku-ABC-1`.
pub const SKU_STREAM_PREFIX: &str = "sku-";

/// Why a value was refused. `field` names the input so an API can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

fn check_identifier(
    field: &'static str,
    value: &str,
    length_max: usize,
    extra: &[char],
) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    let length = value.chars().count();
    if length > length_max {
        return Err(ValidationError::new(
            field,
            format!("is {length} characters long; at most {length_max} are allowed"),
        ));
    }
    let first = value.chars().next().expect("checked non-empty above");
    if !first.is_ascii_alphanumeric() {
        return Err(ValidationError::new(
            field,
            format!("must start with an ASCII letter or digit, not {first:?}"),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        let allowed: String = extra.iter().map(|c| format!(" '{c}'")).collect();
        return Err(ValidationError::new(
            field,
            format!("contains {bad:?}; allowed are ASCII letters, digits and{allowed}"),
        ));
    }
    Ok(())
}

/// A product code: 1 to [`SKU_LENGTH_MAX`] characters from ASCII letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit. Case-sensitive: `ab-1` and `AB-1` are two SKUs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub const CHARACTERS_EXTRA: &'static [char] = &['-', '_', '.'];

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        check_identifier("sku", value, SKU_LENGTH_MAX, Self::CHARACTERS_EXTRA)?;
        Ok(Self(value.to_owned()))
    }

    /// The SKU of a stream named `sku-<SKU>`, or `None` for any other stream.
    pub fn from_stream(stream: &str) -> Option<Self> {
        stream
            .strip_prefix(SKU_STREAM_PREFIX)
            .and_then(|sku| Self::parse(sku).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn stream(&self) -> String {
        format!("{SKU_STREAM_PREFIX}{}", self.0)
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sku {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// Longest location id: store and warehouse codes are short; the same bound as a SKU keeps
/// read-model keys small.
pub const LOCATION_LENGTH_MAX: usize = 64;

/// The location of every movement that names none: a deployment that never speaks of
/// locations keeps one balance per SKU, held here, and every event written before locations
/// existed is read as having happened here.
pub const DEFAULT_LOCATION: &str = "default";

/// Most locations one reserve may list in its allocation preference.
pub const ALLOCATION_LOCATIONS_MAX: usize = 32;

/// A store, warehouse or other place that holds stock: 1 to [`LOCATION_LENGTH_MAX`] characters
/// from the SKU alphabet (ASCII letters, digits, `-`, `_`, `.`), starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LocationId(String);

impl LocationId {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        check_identifier(
            "location",
            value,
            LOCATION_LENGTH_MAX,
            Sku::CHARACTERS_EXTRA,
        )?;
        Ok(Self(value.to_owned()))
    }

    /// [`DEFAULT_LOCATION`].
    pub fn default_location() -> Self {
        Self(DEFAULT_LOCATION.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LocationId {
    fn default() -> Self {
        Self::default_location()
    }
}

impl fmt::Display for LocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LocationId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const CHARACTERS_EXTRA: &'static [char] = &['-', '_', '.', ':'];

            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                check_identifier($field, value, IDENTIFIER_LENGTH_MAX, Self::CHARACTERS_EXTRA)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// Identifies one reservation within its SKU: 1 to [`IDENTIFIER_LENGTH_MAX`] characters from
    /// ASCII letters, digits, `-`, `_`, `.` and `:`. Unique forever within the SKU, so a retried
    /// reserve is recognised even after the reservation has ended.
    ReservationId,
    "reservation_id"
);

identifier!(
    /// The client's order that a reservation holds stock for; same alphabet as a reservation id.
    OrderId,
    "order_id"
);

identifier!(
    /// Identifies one transfer of a SKU between two of its locations; same alphabet as a
    /// reservation id. Unique forever within the SKU, so a retried dispatch is recognised.
    TransferId,
    "transfer_id"
);

/// Longest catalogue name of a SKU ("Trail shoe, blue, size 42").
pub const PRODUCT_NAME_LENGTH_MAX: usize = 200;

/// Longest unit of measure ("each", "kg", "box of 12").
pub const UNIT_LENGTH_MAX: usize = 32;

/// Most attributes one catalogue entry carries.
pub const ATTRIBUTES_MAX: usize = 32;

/// Longest attribute name; names use the SKU alphabet.
pub const ATTRIBUTE_NAME_LENGTH_MAX: usize = 64;

/// Longest attribute value.
pub const ATTRIBUTE_VALUE_LENGTH_MAX: usize = 256;

/// A catalogue entry's free attributes (colour, size, supplier code): at most
/// [`ATTRIBUTES_MAX`] of them, names from the SKU alphabet up to
/// [`ATTRIBUTE_NAME_LENGTH_MAX`] characters, values plain text up to
/// [`ATTRIBUTE_VALUE_LENGTH_MAX`] characters (empty allowed, no control characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Attributes(std::collections::BTreeMap<String, String>);

impl Attributes {
    pub fn new(
        attributes: std::collections::BTreeMap<String, String>,
    ) -> Result<Self, ValidationError> {
        let field = "attributes";
        if attributes.len() > ATTRIBUTES_MAX {
            return Err(ValidationError::new(
                field,
                format!(
                    "has {} entries; at most {ATTRIBUTES_MAX} are allowed",
                    attributes.len()
                ),
            ));
        }
        for (name, value) in &attributes {
            check_identifier(
                field,
                name,
                ATTRIBUTE_NAME_LENGTH_MAX,
                Sku::CHARACTERS_EXTRA,
            )
            .map_err(|e| ValidationError::new(field, format!("name {name:?} {}", e.message)))?;
            let length = value.chars().count();
            if length > ATTRIBUTE_VALUE_LENGTH_MAX {
                return Err(ValidationError::new(
                    field,
                    format!(
                        "{name} is {length} characters long; at most \
                         {ATTRIBUTE_VALUE_LENGTH_MAX} are allowed"
                    ),
                ));
            }
            if !value.chars().all(is_text_character) {
                return Err(ValidationError::new(
                    field,
                    format!("{name} must not contain control characters"),
                ));
            }
        }
        Ok(Self(attributes))
    }

    pub fn get(&self) -> &std::collections::BTreeMap<String, String> {
        &self.0
    }

    pub fn into_inner(self) -> std::collections::BTreeMap<String, String> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

/// Units moved by one command: 1 to [`QUANTITY_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u64);

impl Quantity {
    pub fn new(value: u64) -> Result<Self, ValidationError> {
        if value == 0 || value > QUANTITY_MAX {
            return Err(ValidationError::new(
                "quantity",
                format!("is {value}; it must be between 1 and {QUANTITY_MAX}"),
            ));
        }
        Ok(Self(value))
    }

    /// For inputs that arrive signed (JSON numbers): negative values are refused with the same
    /// message shape as out-of-range ones.
    pub fn from_signed(value: i64) -> Result<Self, ValidationError> {
        if value < 0 {
            return Err(ValidationError::new(
                "quantity",
                format!("is {value}; it must be between 1 and {QUANTITY_MAX}"),
            ));
        }
        Self::new(value as u64)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Self::from_signed(value).map_err(serde::de::Error::custom)
    }
}

/// A signed cycle-count correction: non-zero, at most [`QUANTITY_MAX`] either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AdjustmentDelta(i64);

impl AdjustmentDelta {
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if value == 0 || value.unsigned_abs() > QUANTITY_MAX {
            return Err(ValidationError::new(
                "delta",
                format!(
                    "is {value}; it must be non-zero and between -{QUANTITY_MAX} and {QUANTITY_MAX}"
                ),
            ));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for AdjustmentDelta {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

/// The threshold under which available stock opens a low-stock alert: 0 to [`QUANTITY_MAX`];
/// 0 means no alerting, since available is never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ReorderPoint(u64);

impl ReorderPoint {
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if value < 0 || value as u64 > QUANTITY_MAX {
            return Err(ValidationError::new(
                "reorder_point",
                format!("is {value}; it must be between 0 and {QUANTITY_MAX}"),
            ));
        }
        Ok(Self(value as u64))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ReorderPoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

/// A reservation's time-to-live in seconds: 1 to [`RESERVATION_TTL_SECONDS_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TtlSeconds(u64);

impl TtlSeconds {
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if value < 1 || value as u64 > RESERVATION_TTL_SECONDS_MAX {
            return Err(ValidationError::new(
                "ttl_seconds",
                format!("is {value}; it must be between 1 and {RESERVATION_TTL_SECONDS_MAX}"),
            ));
        }
        Ok(Self(value as u64))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for TtlSeconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

/// Whether free text (a reason, a reference) may contain `c`: anything but control characters
/// and the Unicode line and paragraph separators. U+2028/U+2029 are not control characters to
/// Unicode, yet they break lines in logs and terminals just the same. Text must also hold at
/// least one character that is not [`char::is_whitespace`].
pub fn is_text_character(c: char) -> bool {
    !(c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

fn check_text(field: &'static str, value: &str, length_max: usize) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty or blank"));
    }
    let length = value.chars().count();
    if length > length_max {
        return Err(ValidationError::new(
            field,
            format!("is {length} characters long; at most {length_max} are allowed"),
        ));
    }
    if !value.chars().all(is_text_character) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters (line breaks, tabs, NUL)",
        ));
    }
    Ok(())
}

macro_rules! text {
    ($(#[$doc:meta])* $name:ident, $field:literal, $length_max:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                check_text($field, value, $length_max)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

text!(
    /// Why stock was adjusted or a reservation released, in words for an auditor:
    /// 1 to [`REASON_LENGTH_MAX`] characters, not blank, no control characters.
    Reason,
    "reason",
    REASON_LENGTH_MAX
);

text!(
    /// An outside document a movement refers to (purchase order, receipt, count sheet):
    /// 1 to [`REFERENCE_LENGTH_MAX`] characters, not blank, no control characters.
    Reference,
    "reference",
    REFERENCE_LENGTH_MAX
);

text!(
    /// A SKU's name in the catalogue: 1 to [`PRODUCT_NAME_LENGTH_MAX`] characters, not blank,
    /// no control characters.
    ProductName,
    "name",
    PRODUCT_NAME_LENGTH_MAX
);

text!(
    /// The unit a SKU is counted in ("each", "kg", "box of 12"): 1 to [`UNIT_LENGTH_MAX`]
    /// characters, not blank, no control characters.
    Unit,
    "unit",
    UNIT_LENGTH_MAX
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_of_letters_digits_and_separators_is_accepted() {
        let sku = Sku::parse("Shoe-42_blue.XL").unwrap();
        assert_eq!(sku.stream(), "sku-Shoe-42_blue.XL");
        assert_eq!(Sku::from_stream("sku-Shoe-42_blue.XL"), Some(sku));
    }

    #[test]
    fn an_empty_sku_is_rejected() {
        let error = Sku::parse("").unwrap_err();
        assert_eq!(error.field, "sku");
        assert!(error.message.contains("empty"));
    }

    #[test]
    fn a_sku_longer_than_the_limit_is_rejected() {
        let error = Sku::parse(&"A".repeat(SKU_LENGTH_MAX + 1)).unwrap_err();
        assert!(error.message.contains("at most 64"), "{error}");
        assert!(Sku::parse(&"A".repeat(SKU_LENGTH_MAX)).is_ok());
    }

    #[test]
    fn a_sku_with_a_space_slash_or_non_ascii_letter_is_rejected() {
        for bad in ["AB 1", "AB/1", "Ä1", "AB%1", "-AB"] {
            let error = Sku::parse(bad).unwrap_err();
            assert_eq!(error.field, "sku", "{bad}");
        }
    }

    #[test]
    fn zero_negative_and_oversized_quantities_are_rejected() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::from_signed(-5).is_err());
        assert!(Quantity::new(QUANTITY_MAX + 1).is_err());
        assert_eq!(Quantity::new(QUANTITY_MAX).unwrap().get(), QUANTITY_MAX);
        let error = Quantity::from_signed(-5).unwrap_err();
        assert!(error.message.contains("-5"), "{error}");
    }

    #[test]
    fn a_zero_or_oversized_adjustment_is_rejected() {
        assert!(AdjustmentDelta::new(0).is_err());
        assert!(AdjustmentDelta::new(-(QUANTITY_MAX as i64) - 1).is_err());
        assert_eq!(AdjustmentDelta::new(-3).unwrap().get(), -3);
    }

    #[test]
    fn blank_or_multi_line_reasons_are_rejected() {
        assert!(Reason::parse("   ").is_err());
        assert!(Reason::parse("broken\nshelf").is_err());
        assert!(Reason::parse("broken\u{2028}shelf").is_err());
        assert!(Reason::parse(&"x".repeat(REASON_LENGTH_MAX + 1)).is_err());
        assert!(Reason::parse("damaged in transit").is_ok());
    }

    #[test]
    fn attributes_are_bounded_in_count_name_and_value() {
        let one = |name: &str, value: &str| {
            Attributes::new([(name.to_owned(), value.to_owned())].into_iter().collect())
        };
        assert!(one("colour", "blue").is_ok());
        assert!(one("colour", "").is_ok());
        assert!(one("", "blue").is_err());
        assert!(one("col our", "blue").is_err());
        assert!(one("colour", "blue\nred").is_err());
        assert!(one("colour", &"x".repeat(ATTRIBUTE_VALUE_LENGTH_MAX + 1)).is_err());
        let many = (0..=ATTRIBUTES_MAX)
            .map(|i| (format!("a{i}"), "v".to_owned()))
            .collect();
        assert!(Attributes::new(many).is_err());
    }

    #[test]
    fn identifiers_deserialize_only_when_valid() {
        assert!(serde_json::from_str::<ReservationId>("\"res:42\"").is_ok());
        assert!(serde_json::from_str::<ReservationId>("\"\"").is_err());
        assert!(serde_json::from_str::<Quantity>("-1").is_err());
        assert!(serde_json::from_str::<Quantity>("1.5").is_err());
    }
}
