//! Small formatting helpers shared by the commands.

use std::io::Write;

/// Terminal width assumed when `COLUMNS` is unset: wide enough for the fixed columns of the
/// history table plus a useful detail column.
pub const TERMINAL_COLUMNS_DEFAULT: usize = 100;

/// Narrowest detail column the history table keeps, however narrow the terminal.
pub const DETAIL_COLUMNS_MIN: usize = 16;

/// The terminal width from `COLUMNS`, else [`TERMINAL_COLUMNS_DEFAULT`].
pub fn terminal_columns() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(TERMINAL_COLUMNS_DEFAULT)
}

/// First characters that make a spreadsheet read a cell as a formula (the full-width forms
/// too, which some spreadsheets fold to their ASCII twins).
const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// One CSV field, quoted when it holds a separator, a quote or a line break (RFC 4180). A
/// field that a spreadsheet would run as a formula (clients write reasons, references and
/// correlation ids, so a cell like `=HYPERLINK(...)` is theirs to choose) is prefixed with a
/// single quote, which spreadsheets show as text; numbers, negative ones included, are left
/// as they are.
pub fn csv_field(value: &str) -> String {
    let neutralised;
    let value = if value.starts_with(FORMULA_STARTS) && value.parse::<f64>().is_err() {
        neutralised = format!("'{value}");
        neutralised.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Write one CSV record.
pub fn write_csv_record<W: Write>(out: &mut W, fields: &[String]) -> std::io::Result<()> {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    writeln!(out, "{}", line.join(","))
}

/// `value` cut to `width` characters, ending in an ellipsis when cut.
pub fn truncate(value: &str, width: usize) -> String {
    if value.chars().count() <= width {
        return value.to_owned();
    }
    let kept: String = value.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Events per second, guarded against a zero duration.
pub fn events_per_second(events: u64, duration: std::time::Duration) -> f64 {
    let seconds = duration.as_secs_f64();
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn formulas_are_neutralised_and_numbers_are_not() {
        assert_eq!(csv_field("=1+2"), "'=1+2");
        assert_eq!(csv_field("+1+2"), "'+1+2");
        assert_eq!(csv_field("-1+2"), "'-1+2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("＝1+2"), "'＝1+2");
        assert_eq!(
            csv_field("=HYPERLINK(\"https://example.invalid\",\"x\")"),
            "\"'=HYPERLINK(\"\"https://example.invalid\"\",\"\"x\"\")\""
        );
        assert_eq!(csv_field("-3"), "-3");
        assert_eq!(csv_field("+4"), "+4");
        assert_eq!(
            csv_field("cycle count, shelf 4"),
            "\"cycle count, shelf 4\""
        );
        assert_eq!(csv_field("a=b"), "a=b");
    }
}
