//! Pure time helpers: Discord snowflake ↔ Unix milliseconds, RFC 3339 parsing and formatting.
//!
//! No date crate: the civil-calendar math is Howard Hinnant's `days_from_civil` /
//! `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>), which is
//! exact for the proleptic Gregorian calendar and small enough to test exhaustively.

use std::time::{SystemTime, UNIX_EPOCH};

/// The first millisecond of 2015 (UTC): snowflake timestamps count from here.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Snowflakes are stored as SQLite INTEGER, so every ID we accept must fit in an i64.
const MAX_SNOWFLAKE: u64 = i64::MAX as u64;

/// The low 22 bits of a snowflake are worker, process and increment; the rest is time.
const TIMESTAMP_SHIFT: u32 = 22;

const MS_PER_DAY: u64 = 86_400_000;

/// The last millisecond of 9999-12-31: the latest instant a four-digit year can write.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// Which side of a range a date bound is on; it decides how a date becomes an ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// `after=` is exclusive on IDs, so a date D maps to the largest ID strictly
    /// before D's first millisecond: the range then starts *at* D.
    After,
    /// `before=` is exclusive on IDs, so a date D maps to the first ID of D: the
    /// range then ends strictly before D.
    Before,
}

/// A date or ID that could not be understood. The message names the input and says
/// what a valid one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error(
        "`{input}` is not an RFC 3339 date-time ({reason}); \
         write it like 2024-05-01T12:34:56Z or 2024-05-01T14:34:56.5+02:00"
    )]
    Malformed { input: String, reason: &'static str },
    #[error("`{input}` is out of range: {reason}")]
    OutOfRange { input: String, reason: &'static str },
    #[error(
        "`{input}` is not a snowflake ID ({reason}); \
         give a positive message ID or an RFC 3339 date such as 2024-05-01"
    )]
    BadId { input: String, reason: &'static str },
}

/// The Unix time (ms) at which the snowflake `id` was created.
pub fn snowflake_ms(id: u64) -> u64 {
    (id >> TIMESTAMP_SHIFT) + DISCORD_EPOCH_MS
}

/// The lowest snowflake created at Unix time `ms`. Times before the Discord epoch give 0;
/// times whose snowflake would not fit in 64 bits give the largest such timestamp's ID.
pub fn snowflake_from_ms(ms: u64) -> u64 {
    let since_epoch = ms.saturating_sub(DISCORD_EPOCH_MS);
    since_epoch.min(u64::MAX >> TIMESTAMP_SHIFT) << TIMESTAMP_SHIFT
}

/// Parses an RFC 3339 date-time (`2024-05-01T12:34:56.789Z`, `...+02:00`) into Unix ms.
///
/// Accepts `T`, `t` or a space between date and time, `Z`/`z` or `±HH:MM` offsets, a
/// leap second (`:60`, which rolls into the next minute), and a fraction of any length
/// (truncated to milliseconds, so parsing never rounds into the next millisecond).
pub fn parse_rfc3339(s: &str) -> Result<u64, TimeError> {
    let malformed = |reason| TimeError::Malformed {
        input: shorten(s),
        reason,
    };
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(malformed("too short"));
    }
    let (year, month, day) = parse_date(&b[..10]).map_err(malformed)?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(malformed("expected `T` between the date and the time"));
    }
    let hour = digits(&b[11..13]).ok_or(malformed("the hour must be two digits"))?;
    let minute = digits(&b[14..16]).ok_or(malformed("the minute must be two digits"))?;
    let second = digits(&b[17..19]).ok_or(malformed("the second must be two digits"))?;
    if b[13] != b':' || b[16] != b':' {
        return Err(malformed("expected HH:MM:SS"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(malformed("the time of day is out of range"));
    }

    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(malformed("expected digits after the decimal point"));
        }
        // Truncate rather than round: "…59.9999Z" must stay in second 59.
        for i in 0..3 {
            millis = millis * 10
                + frac
                    .get(i)
                    .filter(|_| i < len)
                    .map_or(0, |d| u64::from(d - b'0'));
        }
        rest = &frac[len..];
    }

    let offset_minutes: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2]).ok_or(malformed("the offset hour must be two digits"))?;
            let m = digits(&[*m1, *m2]).ok_or(malformed("the offset minute must be two digits"))?;
            if h > 23 || m > 59 {
                return Err(malformed("the offset is out of range"));
            }
            let minutes = (h * 60 + m) as i64;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        [] => {
            return Err(malformed(
                "missing the time zone: add `Z` or an offset like +02:00",
            ))
        }
        _ => {
            return Err(malformed(
                "expected `Z` or an offset like +02:00 at the end",
            ))
        }
    };

    let days = days_from_civil(year as i64, month, day);
    let local_seconds =
        days * 86_400 + (hour as i64) * 3_600 + (minute as i64) * 60 + second as i64;
    let utc_ms = (local_seconds - offset_minutes * 60) * 1_000 + millis as i64;
    u64::try_from(utc_ms).map_err(|_| TimeError::OutOfRange {
        input: shorten(s),
        reason: "it is before 1970-01-01T00:00:00Z",
    })
}

/// The `before` cursor that still includes every thread archived at `archive_timestamp` (an
/// archived-thread listing's `before` is exclusive, and threads may share an archive time):
/// the next millisecond, in Discord's own form (`2024-05-01T12:34:56.790000+00:00`).
/// `None` if the timestamp does not parse.
pub fn just_after(archive_timestamp: &str) -> Option<String> {
    let ms = parse_rfc3339(archive_timestamp).ok()? + 1;
    let text = format_rfc3339_ms(ms);
    Some(format!("{}000+00:00", text.strip_suffix('Z')?))
}

/// Formats Unix ms as `2024-05-01T12:34:56.789Z` (always UTC, always three fraction digits).
pub fn format_rfc3339_ms(unix_ms: u64) -> String {
    let days = (unix_ms / MS_PER_DAY) as i64;
    let ms_of_day = unix_ms % MS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let (secs, ms) = (ms_of_day / 1_000, ms_of_day % 1_000);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The current time as RFC 3339 UTC with milliseconds (a clock before 1970 reads as 1970).
pub fn now_rfc3339() -> String {
    format_rfc3339_ms(now_ms().min(MAX_RFC3339_MS))
}

/// The current Unix time in milliseconds (a clock before 1970 reads as 0).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a range bound given as a snowflake ID or a date.
///
/// A string of digits is a snowflake, used as is (it must be < 2^63, and > 0 for `Before`:
/// `after=0` is Discord's "from the beginning"). Anything
/// else must be an RFC 3339 date-time or a bare date (`2024-05-01`, meaning its midnight
/// UTC), converted according to `bound` (see [`Bound`]). A date before Discord existed is
/// fine as an `After` bound (it means "from the start") but is an empty `Before` range.
pub fn parse_id_or_date(s: &str, bound: Bound) -> Result<u64, TimeError> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        let bad = |reason| TimeError::BadId {
            input: shorten(s),
            reason,
        };
        let id: u64 = s.parse().map_err(|_| bad("it is larger than 2^63 - 1"))?;
        return match id {
            // Discord's own `after=0`: from the beginning.
            0 if bound == Bound::After => Ok(0),
            0 => Err(bad("IDs start at 1; no message is older than that")),
            id if id > MAX_SNOWFLAKE => Err(bad("it is larger than 2^63 - 1")),
            id => Ok(id),
        };
    }

    let ms = if s.len() == 10 {
        let (y, m, d) = parse_date(s.as_bytes()).map_err(|reason| TimeError::Malformed {
            input: shorten(s),
            reason,
        })?;
        let days = days_from_civil(y as i64, m, d);
        u64::try_from(days * MS_PER_DAY as i64).map_err(|_| TimeError::OutOfRange {
            input: shorten(s),
            reason: "it is before 1970-01-01",
        })?
    } else {
        parse_rfc3339(s)?
    };

    let out_of_range = |reason| TimeError::OutOfRange {
        input: shorten(s),
        reason,
    };
    if ms >= DISCORD_EPOCH_MS + ((MAX_SNOWFLAKE >> TIMESTAMP_SHIFT) + 1) {
        return Err(out_of_range(
            "it is past the last time a snowflake ID can encode",
        ));
    }
    match bound {
        // Every ID below the first one of `ms`; at or before the epoch that is "everything".
        Bound::After => Ok(snowflake_from_ms(ms).saturating_sub(1)),
        Bound::Before if ms <= DISCORD_EPOCH_MS => Err(out_of_range(
            "no message is older than Discord's epoch, 2015-01-01T00:00:00Z",
        )),
        Bound::Before => Ok(snowflake_from_ms(ms)),
    }
}

/// `YYYY-MM-DD` (exactly ten bytes) into a checked (year, month, day).
fn parse_date(b: &[u8]) -> Result<(u32, u32, u32), &'static str> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("expected the date as YYYY-MM-DD");
    }
    let year = digits(&b[..4]).ok_or("the year must be four digits")?;
    let month = digits(&b[5..7]).ok_or("the month must be two digits")?;
    let day = digits(&b[8..10]).ok_or("the day must be two digits")?;
    if !(1..=12).contains(&month) {
        return Err("the month must be 01 to 12");
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err("that day does not exist in that month");
    }
    Ok((year, month, day))
}

/// The value of a run of ASCII digits, or None if any byte is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(month) + 9) % 12; // March = 0, so the leap day ends the year
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Inputs are echoed in errors; keep an absurdly long or control-laden one readable.
fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = s.chars().take(MAX_CHARS).collect::<String>();
    out = out.escape_debug().to_string();
    if s.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn just_after_is_the_next_millisecond_in_discords_form() {
        assert_eq!(
            just_after("2024-05-01T12:34:56.789000+00:00").as_deref(),
            Some("2024-05-01T12:34:56.790000+00:00")
        );
        // The fraction is truncated first, so the whole millisecond stays before the cursor.
        assert_eq!(
            just_after("2024-05-01T23:59:59.999999+00:00").as_deref(),
            Some("2024-05-02T00:00:00.000000+00:00")
        );
        assert_eq!(
            just_after("2024-05-01T14:00:00+02:00").as_deref(),
            Some("2024-05-01T12:00:00.001000+00:00")
        );
        assert_eq!(just_after("yesterday"), None);
    }
    use proptest::prelude::*;

    #[test]
    fn snowflake_of_a_known_message() {
        // Discord's documentation example: 175928847299117063 = 2016-04-30T11:18:25.796Z.
        let id = 175_928_847_299_117_063;
        assert_eq!(snowflake_ms(id), 1_462_015_105_796);
        assert_eq!(
            format_rfc3339_ms(snowflake_ms(id)),
            "2016-04-30T11:18:25.796Z"
        );
        assert!(snowflake_from_ms(1_462_015_105_796) <= id);
        assert!(snowflake_from_ms(1_462_015_105_797) > id);
    }

    #[test]
    fn snowflake_from_ms_clamps_instead_of_overflowing() {
        assert_eq!(snowflake_from_ms(0), 0);
        assert_eq!(snowflake_from_ms(DISCORD_EPOCH_MS), 0);
        assert_eq!(snowflake_from_ms(DISCORD_EPOCH_MS + 1), 1 << 22);
        assert_eq!(snowflake_from_ms(u64::MAX) >> 22, u64::MAX >> 22);
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(DISCORD_EPOCH_MS),
            "2015-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_ms(1_714_566_896_789),
            "2024-05-01T12:34:56.789Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_ms(MAX_RFC3339_MS),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn parses_offsets_fractions_and_separators() {
        let base = 1_714_566_896_000; // 2024-05-01T12:34:56Z
        assert_eq!(parse_rfc3339("2024-05-01T12:34:56Z"), Ok(base));
        assert_eq!(parse_rfc3339("2024-05-01t12:34:56z"), Ok(base));
        assert_eq!(parse_rfc3339("2024-05-01 12:34:56Z"), Ok(base));
        assert_eq!(parse_rfc3339("2024-05-01T14:34:56+02:00"), Ok(base));
        assert_eq!(parse_rfc3339("2024-05-01T07:04:56-05:30"), Ok(base));
        assert_eq!(parse_rfc3339("2024-05-01T12:34:56.7Z"), Ok(base + 700));
        assert_eq!(parse_rfc3339("2024-05-01T12:34:56.78Z"), Ok(base + 780));
        assert_eq!(parse_rfc3339("2024-05-01T12:34:56.789Z"), Ok(base + 789));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:34:56.789999999999Z"),
            Ok(base + 789)
        );
        assert_eq!(parse_rfc3339("2024-05-01T12:34:60Z"), Ok(base + 4_000));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for (input, needle) in [
            ("", "too short"),
            ("yesterday", "too short"),
            ("2024-05-01", "too short"),
            ("2024-13-01T00:00:00Z", "month"),
            ("2023-02-29T00:00:00Z", "day does not exist"),
            ("2024-05-01X00:00:00Z", "`T`"),
            ("2024-05-01T24:00:00Z", "out of range"),
            ("2024-05-01T12:34:56", "too short"),
            ("2024-05-01T12:34:56 ", "`Z`"),
            ("2024-05-01T12:34:56.Z", "digits after"),
            ("2024-05-01T12:34:56+0200", "`Z` or an offset"),
            ("2024-05-01T12:34:56+24:00", "offset is out of range"),
            ("2024-05-01T12:34:5éZ", "second"),
            ("1969-12-31T23:59:59Z", "before 1970"),
        ] {
            let err = parse_rfc3339(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn id_or_date_takes_ids_as_they_are() {
        assert_eq!(parse_id_or_date("42", Bound::After), Ok(42));
        assert_eq!(parse_id_or_date(" 42 ", Bound::Before), Ok(42));
        assert_eq!(
            parse_id_or_date("9223372036854775807", Bound::After),
            Ok(MAX_SNOWFLAKE)
        );
        for bad in ["9223372036854775808", "99999999999999999999999"] {
            let err = parse_id_or_date(bad, Bound::After).unwrap_err();
            assert!(matches!(err, TimeError::BadId { .. }), "{bad}: {err}");
        }
        // `after=0` starts at the beginning, as in Discord's API; nothing is before 0.
        assert_eq!(parse_id_or_date("0", Bound::After), Ok(0));
        let err = parse_id_or_date("0", Bound::Before).unwrap_err();
        assert!(matches!(err, TimeError::BadId { .. }), "{err}");
        assert!(parse_id_or_date("-5", Bound::After).is_err());
        assert!(parse_id_or_date("", Bound::After).is_err());
    }

    #[test]
    fn after_a_date_starts_at_its_first_millisecond() {
        let d = parse_rfc3339("2024-05-01T00:00:00Z").unwrap();
        let after = parse_id_or_date("2024-05-01", Bound::After).unwrap();
        let before = parse_id_or_date("2024-05-01T00:00:00Z", Bound::Before).unwrap();
        // A message created exactly at D has an ID >= snowflake_from_ms(D).
        assert_eq!(after, snowflake_from_ms(d) - 1);
        assert_eq!(before, snowflake_from_ms(d));
        assert!(snowflake_ms(after) < d);
        assert_eq!(snowflake_ms(before), d);
        assert_eq!(
            parse_id_or_date("2024-05-01T02:00:00+02:00", Bound::Before),
            Ok(before)
        );
    }

    #[test]
    fn dates_outside_discords_lifetime() {
        assert_eq!(parse_id_or_date("2010-01-01", Bound::After), Ok(0));
        assert_eq!(parse_id_or_date("2015-01-01", Bound::After), Ok(0));
        assert!(parse_id_or_date("2015-01-01", Bound::Before).is_err());
        assert!(parse_id_or_date("9999-01-01", Bound::Before).is_err());
        assert!(parse_id_or_date("2024-02-30", Bound::Before).is_err());
    }

    #[test]
    fn errors_echo_long_input_shortened() {
        let long = "x".repeat(10_000);
        let err = parse_id_or_date(&long, Bound::After)
            .unwrap_err()
            .to_string();
        assert!(err.len() < 400, "{err}");
        let err = parse_rfc3339("\u{1b}[31m2024-05-01T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn now_is_well_formed() {
        let now = now_rfc3339();
        assert!(parse_rfc3339(&now).unwrap() > DISCORD_EPOCH_MS, "{now}");
    }

    #[test]
    fn civil_math_agrees_with_a_day_by_day_walk() {
        let (mut y, mut m, mut d) = (1970_i64, 1_u32, 1_u32);
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (y, m, d));
            assert_eq!(days_from_civil(y, m, d), days);
            d += 1;
            if d > days_in_month(y as u32, m) {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0..=MAX_RFC3339_MS) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339_ms(ms)), Ok(ms));
        }

        #[test]
        fn snowflake_ms_inverts_snowflake_from_ms(
            ms in DISCORD_EPOCH_MS..=DISCORD_EPOCH_MS + (MAX_SNOWFLAKE >> 22)
        ) {
            let id = snowflake_from_ms(ms);
            prop_assert!(id <= MAX_SNOWFLAKE);
            prop_assert_eq!(snowflake_ms(id), ms);
        }

        #[test]
        fn any_id_lies_inside_its_own_millisecond(id in 1..=MAX_SNOWFLAKE) {
            let ms = snowflake_ms(id);
            prop_assert!(snowflake_from_ms(ms) <= id);
            prop_assert!(id < snowflake_from_ms(ms + 1) || ms + 1 > DISCORD_EPOCH_MS + (MAX_SNOWFLAKE >> 22));
        }

        #[test]
        fn date_bounds_split_at_the_date(ms in DISCORD_EPOCH_MS + 1..MAX_RFC3339_MS.min(DISCORD_EPOCH_MS + (MAX_SNOWFLAKE >> 22))) {
            let date = format_rfc3339_ms(ms);
            let after = parse_id_or_date(&date, Bound::After).unwrap();
            let before = parse_id_or_date(&date, Bound::Before).unwrap();
            prop_assert_eq!(after + 1, before);
            prop_assert_eq!(snowflake_ms(before), ms);
            prop_assert!(snowflake_ms(after) < ms);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
            let _ = parse_id_or_date(&s, Bound::After);
            let _ = parse_id_or_date(&s, Bound::Before);
        }

        #[test]
        fn parsing_near_misses_never_panics(
            s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?"
        ) {
            if let Ok(ms) = parse_rfc3339(&s) {
                prop_assert!(ms <= MAX_RFC3339_MS + 86_400_000);
            }
        }
    }
}
