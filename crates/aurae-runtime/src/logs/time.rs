//! RFC 3339 UTC timestamps with nanoseconds, formatted and parsed by hand: the writer formats
//! one per chunk it reads, so it has to be cheap, and the format is fixed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The length of a formatted timestamp (`2024-05-01T12:00:00.123456789Z`).
pub(super) const TIMESTAMP_LEN: usize = 30;

/// Appends `time` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`; times before 1970 are written as 1970.
pub(super) fn format(time: SystemTime, out: &mut Vec<u8>) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    push_digits(out, year, 4);
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    out.push(b'T');
    push_digits(out, rem / 3600, 2);
    out.push(b':');
    push_digits(out, rem / 60 % 60, 2);
    out.push(b':');
    push_digits(out, rem % 60, 2);
    out.push(b'.');
    push_digits(out, u64::from(since.subsec_nanos()), 9);
    out.push(b'Z');
}

/// Parses what [`format`] writes; the fraction may have 0 to 9 digits. `None` if it is not
/// such a timestamp.
pub(super) fn parse(text: &[u8]) -> Option<SystemTime> {
    let (&b'Z', text) = text.split_last()? else {
        return None;
    };
    if text.len() < 19 || text[4] != b'-' || text[7] != b'-' || text[10] != b'T' {
        return None;
    }
    if text[13] != b':' || text[16] != b':' {
        return None;
    }
    let year = digits(&text[0..4])?;
    let month = digits(&text[5..7])?;
    let day = digits(&text[8..10])?;
    let (hour, minute, second) = (
        digits(&text[11..13])?,
        digits(&text[14..16])?,
        digits(&text[17..19])?,
    );
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let nanos = match &text[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 10u64.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::new(secs, u32::try_from(nanos).ok()?))
}

fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

fn push_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days` for
/// non-negative days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01, for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(time: SystemTime) -> String {
        let mut out = Vec::new();
        format(time, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_times_are_formatted_as_rfc3339_utc() {
        assert_eq!(formatted(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 7);
        assert_eq!(formatted(t), "2024-02-29T12:34:56.000000007Z");
        assert_eq!(formatted(t).len(), TIMESTAMP_LEN);
    }

    #[test]
    fn timestamps_round_trip() {
        for secs in [
            0,
            951_782_400,
            1_709_210_096,
            4_102_444_799,
            253_402_300_799,
        ] {
            let t = UNIX_EPOCH + Duration::new(secs, 123_456_789);
            assert_eq!(parse(formatted(t).as_bytes()), Some(t));
        }
        let now = SystemTime::now();
        assert_eq!(parse(formatted(now).as_bytes()), Some(now));
    }

    #[test]
    fn short_fractions_parse_and_garbage_does_not() {
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 500_000_000);
        assert_eq!(parse(b"2024-02-29T12:34:56.5Z"), Some(t));
        for bad in [
            &b""[..],
            b"Z",
            b"2024-02-29T12:34:56",
            b"2024-02-29 12:34:56Z",
            b"2024-13-29T12:34:56Z",
            b"2024-02-29T12:34:56.Z",
            b"2024-02-29T12:34:56.1234567890Z",
            b"20x4-02-29T12:34:56Z",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
