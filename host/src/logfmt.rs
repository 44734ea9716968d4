//! The two formats of the binary's log lines on stderr.
//!
//! - `text` (the default): `[<ts> <LEVEL> <target>] <message>`, for people.
//! - `json`: one JSON object per line with the keys `ts` (RFC 3339 UTC with
//!   milliseconds), `level` (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`),
//!   `target` (the module, such as `posthandler_oauth2::token` for the
//!   plugin's lines) and `message`.
//!
//! Levels come from `RUST_LOG` (default `info`) or `--log-level`, which wins.
//! What goes into a message is each module's business; none logs a secret.

use std::io::Write;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format '{}' (expected text or json)",
                other.escape_debug()
            )),
        }
    }
}

/// One log record as a JSON line (without the newline).
pub fn json_line(ts: &str, level: log::Level, target: &str, message: &str) -> String {
    serde_json::json!({
        "ts": ts,
        "level": level.as_str(),
        "target": target,
        "message": message,
    })
    .to_string()
}

/// `time` as `2026-12-03T17:00:00.123Z` (UTC, milliseconds).
pub fn rfc3339_millis(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian calendar),
    // counting in 400-year eras that start on 0000-03-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Sets up the global logger on stderr.
pub fn init(format: LogFormat, level: Option<log::LevelFilter>) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(level) = level {
        builder.filter_level(level);
    }
    builder.target(env_logger::Target::Stderr);
    match format {
        LogFormat::Text => {
            builder.format_timestamp_millis();
        }
        LogFormat::Json => {
            builder.format(|buf, record| {
                let ts = rfc3339_millis(std::time::SystemTime::now());
                let line = json_line(
                    &ts,
                    record.level(),
                    record.target(),
                    &record.args().to_string(),
                );
                writeln!(buf, "{line}")
            });
        }
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_documented_keys_and_escape_the_message() {
        let line = json_line(
            "2026-12-03T17:00:00.000Z",
            log::Level::Info,
            "posthandler_oauth2::token",
            "a \"quoted\"\nline",
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["ts", "level", "target", "message"]);
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "a \"quoted\"\nline");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = |secs: u64, millis: u64| {
            rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + millis),
            )
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_796_317_200, 123), "2026-12-03T17:00:00.123Z");
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
