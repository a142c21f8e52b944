//! Structured log lines: `ts=<RFC 3339 UTC> level=<level> node=<i> shard=<k>
//! msg="<text>"`, one per line on stderr, greppable and parseable.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Log {
    pub node: u8,
    /// `None` for process-wide lines.
    pub shard: Option<u32>,
}

impl Log {
    pub fn info(&self, text: impl std::fmt::Display) {
        self.line("info", &text.to_string());
    }

    pub fn warn(&self, text: impl std::fmt::Display) {
        self.line("warn", &text.to_string());
    }

    pub fn error(&self, text: impl std::fmt::Display) {
        self.line("error", &text.to_string());
    }

    fn line(&self, level: &str, text: &str) {
        let shard = match self.shard {
            Some(shard) => format!(" shard={shard} group={shard}"),
            None => String::new(),
        };
        let text = text.replace('\\', "\\\\").replace('"', "\\\"");
        eprintln!("ts={} level={level} node={}{shard} msg=\"{text}\"", timestamp_now(), self.node);
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn timestamp_now() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
    }
}
