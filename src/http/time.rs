//! Calendar arithmetic for the three timestamp formats S3 speaks, without a
//! clock: every function takes the time as an argument.
//!
//! - `x-amz-date` / `X-Amz-Date`: ISO 8601 basic, `20130524T000000Z`.
//! - XML bodies: ISO 8601 extended with milliseconds, `2013-05-24T00:00:00.000Z`.
//! - `Date` / `Last-Modified` headers: IMF-fixdate, `Fri, 24 May 2013 00:00:00 GMT`.
//!
//! Days are converted with Howard Hinnant's `days_from_civil` algorithm
//! (proleptic Gregorian, exact for every year we can represent).

/// Seconds in a day.
const DAY_SECONDS: i64 = 86_400;

/// Days since 1970-01-01 of the civil date `year-month-day`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month 1–12, day 1–31) of a day count since 1970.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |value, digit| value * 10 + u32::from(digit - b'0')))
}

/// Parses an `x-amz-date` (`YYYYMMDDTHHMMSSZ`, exactly 16 bytes) into Unix
/// seconds. `None` for anything else, including impossible dates.
pub fn parse_amz_date(text: &[u8]) -> Option<i64> {
    if text.len() != 16 || text.get(8) != Some(&b'T') || text.get(15) != Some(&b'Z') {
        return None;
    }
    let year = digits(text.get(0..4)?)?;
    let month = digits(text.get(4..6)?)?;
    let day = digits(text.get(6..8)?)?;
    let hour = digits(text.get(9..11)?)?;
    let minute = digits(text.get(11..13)?)?;
    let second = digits(text.get(13..15)?)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60 admits a leap second as written by a client; it is one second late.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let seconds = i64::from(hour * 3600 + minute * 60 + second);
    Some(days_from_civil(year, month, day) * DAY_SECONDS + seconds)
}

/// `2013-05-24T00:00:00.000Z` for a time in Unix milliseconds (S3 XML).
pub fn format_iso8601_ms(unix_ms: i64, out: &mut Vec<u8>) {
    let seconds = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(DAY_SECONDS));
    let second_of_day = seconds.rem_euclid(DAY_SECONDS);
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    out.extend_from_slice(text.as_bytes());
}

/// `Fri, 24 May 2013 00:00:00 GMT` (IMF-fixdate, RFC 9110 §5.6.7) for a
/// time in Unix seconds: the `Date` and `Last-Modified` headers.
pub fn format_http_date(unix_secs: i64, out: &mut Vec<u8>) {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix_secs.div_euclid(DAY_SECONDS);
    let (year, month, day) = civil_from_days(days);
    let second_of_day = unix_secs.rem_euclid(DAY_SECONDS);
    // 1970-01-01 was a Thursday; rem_euclid keeps the index in 0..7.
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[(month - 1) as usize];
    let text = format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    out.extend_from_slice(text.as_bytes());
}

/// Parses an IMF-fixdate (`Fri, 24 May 2013 00:00:00 GMT`, the form every
/// current client sends in `If-Modified-Since` and friends) into Unix
/// seconds. `None` for anything else (RFC 9110 lets a recipient ignore a
/// conditional header whose date it cannot parse).
pub fn parse_http_date(text: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let text = text.trim_ascii();
    if text.len() != 29 || text.get(3) != Some(&b',') || !text.ends_with(b" GMT") {
        return None;
    }
    let day = digits(text.get(5..7)?)?;
    let month_name = text.get(8..11)?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year = i64::from(digits(text.get(12..16)?)?);
    let (hour, minute, second) =
        (digits(text.get(17..19)?)?, digits(text.get(20..22)?)?, digits(text.get(23..25)?)?);
    if text.get(19) != Some(&b':') || text.get(22) != Some(&b':') {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let seconds = i64::from(hour * 3600 + minute * 60 + second);
    Some(days_from_civil(year, month, day) * DAY_SECONDS + seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails if parsing drifts from formatting, or accepts a malformed date.
    #[test]
    fn http_date_round_trip() {
        for seconds in [0i64, 1_369_353_600, 1_796_187_924, 4_102_444_799] {
            let mut text = Vec::new();
            format_http_date(seconds, &mut text);
            assert_eq!(parse_http_date(&text), Some(seconds), "{}", String::from_utf8_lossy(&text));
        }
        assert_eq!(parse_http_date(b"Fri, 24 May 2013 00:00:00 GMT"), Some(1_369_353_600));
        for bad in [
            &b"Fri, 31 Feb 2013 00:00:00 GMT"[..],
            b"Fri, 24 Mey 2013 00:00:00 GMT",
            b"yesterday",
            b"",
        ] {
            assert_eq!(parse_http_date(bad), None);
        }
    }

    /// Fails if the day arithmetic is off anywhere in a 1,000-year span (the
    /// round trip) or at the published anchors (the SigV4 example date).
    #[test]
    fn civil_round_trip_and_anchors() {
        for days in (-200_000..200_000).step_by(7) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(parse_amz_date(b"19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(b"20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(parse_amz_date(b"20000229T235959Z"), Some(951_868_799));
    }

    /// Fails if an impossible or misshapen date is accepted.
    #[test]
    fn bad_amz_dates_are_rejected() {
        for bad in [
            &b"20130524T000000"[..],
            b"20130524T000000z",
            b"2013-05-24T00:00",
            b"20130229T000000Z",
            b"21000229T000000Z",
            b"20131301T000000Z",
            b"20130500T000000Z",
            b"20130524T240000Z",
            b"2013052AT000000Z",
            b"20130524X000000Z",
            b"",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_amz_date(b"20240229T000000Z").is_some());
    }

    /// Fails if the header or XML formats drift (clients parse both strictly).
    #[test]
    fn formats() {
        let mut out = Vec::new();
        format_http_date(1_369_353_600, &mut out);
        assert_eq!(out, b"Fri, 24 May 2013 00:00:00 GMT");
        out.clear();
        format_http_date(784_111_777, &mut out);
        assert_eq!(out, b"Sun, 06 Nov 1994 08:49:37 GMT");
        out.clear();
        format_iso8601_ms(1_369_353_600_123, &mut out);
        assert_eq!(out, b"2013-05-24T00:00:00.123Z");
        out.clear();
        format_iso8601_ms(1_255_369_830_000, &mut out);
        assert_eq!(out, b"2009-10-12T17:50:30.000Z");
    }
}
