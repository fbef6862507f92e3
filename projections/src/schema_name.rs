//! The one way a schema or projection name reaches SQL text: a validated identifier. Read model
//! schemas are named `rm_<projection>`, with a shadow (`__shadow`) that a rebuild fills and a
//! retired name (`__retired`) for the moment of a swap.

use std::fmt;

/// Prefix of every read model schema; keeps them apart from `event_store` and `public`.
pub const SCHEMA_PREFIX: &str = "rm_";

/// Suffix of the schema a rebuild fills before swapping it in.
pub const SHADOW_SUFFIX: &str = "__shadow";

/// Suffix a live schema takes for the moment between a rebuild's swap and its drop.
pub const RETIRED_SUFFIX: &str = "__retired";

/// PostgreSQL truncates identifiers longer than 63 bytes (NAMEDATALEN - 1); a longer name would
/// silently address a different schema, so it is refused instead.
pub const IDENTIFIER_BYTES_MAX: usize = 63;

/// A schema (or projection) name that is safe to splice into SQL unquoted: lower-case ASCII
/// letters, digits and `_`, starting with a letter, at most [`IDENTIFIER_BYTES_MAX`] bytes.
/// Splicing is unavoidable (identifiers cannot be bound parameters), so this type is the only
/// way a name reaches SQL text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SchemaName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid schema name: {reason}")]
pub struct InvalidSchemaName {
    pub name: String,
    pub reason: &'static str,
}

impl SchemaName {
    pub fn parse(name: &str) -> Result<Self, InvalidSchemaName> {
        check_identifier(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The live schema of a projection: `rm_<projection>`.
    pub fn live(projection: &str) -> Self {
        Self::parse(&format!("{SCHEMA_PREFIX}{projection}"))
            .expect("projection names are valid identifiers")
    }

    /// The shadow schema a rebuild of a projection fills: `rm_<projection>__shadow`.
    pub fn shadow(projection: &str) -> Self {
        Self::parse(&format!("{SCHEMA_PREFIX}{projection}{SHADOW_SUFFIX}"))
            .expect("projection names are short valid identifiers")
    }

    /// The schema a rebuild renames the old live schema to before dropping it.
    pub fn retired(projection: &str) -> Self {
        Self::parse(&format!("{SCHEMA_PREFIX}{projection}{RETIRED_SUFFIX}"))
            .expect("projection names are short valid identifiers")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn check_identifier(name: &str) -> Result<(), InvalidSchemaName> {
    let invalid = |reason| {
        Err(InvalidSchemaName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > IDENTIFIER_BYTES_MAX {
        return invalid("it is longer than 63 bytes, which PostgreSQL would truncate");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid("it must start with a lower-case ASCII letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return invalid("only lower-case ASCII letters, digits and '_' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_shadow_schema_names_follow_the_convention() {
        assert_eq!(SchemaName::live("stock_levels").as_str(), "rm_stock_levels");
        assert_eq!(
            SchemaName::shadow("stock_levels").as_str(),
            "rm_stock_levels__shadow"
        );
    }

    #[test]
    fn schema_names_that_could_break_out_of_sql_are_rejected() {
        for bad in [
            "",
            "Rm_x",
            "rm-x",
            "rm_x; DROP TABLE y",
            "rm_\"x\"",
            "1rm",
            "rm x",
            "rm_ä",
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(SchemaName::parse("rm_stock_levels__shadow").is_ok());
    }

    #[test]
    fn schema_names_longer_than_postgres_keeps_are_rejected() {
        let name = format!("r{}", "x".repeat(IDENTIFIER_BYTES_MAX));
        let error = SchemaName::parse(&name).unwrap_err();
        assert!(error.reason.contains("63"), "{error}");
        assert!(SchemaName::parse(&name[..IDENTIFIER_BYTES_MAX]).is_ok());
    }
}
