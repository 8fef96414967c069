//! Snowflakes and Discord's timestamp text (`2024-05-01T12:34:56.789000+00:00`), without a date crate.

use std::fmt::Write as _;

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds; snowflakes count from it.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Builds a snowflake: `ms since DISCORD_EPOCH << 22 | worker << 17 | process << 12 | increment`.
/// Times before the Discord epoch are clamped to it (Discord has none).
pub const fn snowflake(unix_ms: u64, worker: u8, process: u8, increment: u16) -> u64 {
    let since = unix_ms.saturating_sub(DISCORD_EPOCH_MS);
    (since << 22)
        | (((worker & 0x1F) as u64) << 17)
        | (((process & 0x1F) as u64) << 12)
        | ((increment & 0xFFF) as u64)
}

/// The creation time encoded in a snowflake, in Unix milliseconds.
pub const fn snowflake_unix_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: `(year, month, day)`.
pub const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix milliseconds of a UTC calendar time (for presets and tests).
pub const fn unix_ms(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> u64 {
    let days = days_from_civil(y, m, d);
    ((days * 86_400 + (hh * 3600 + mm * 60 + ss) as i64) * 1000) as u64
}

/// Appends a timestamp the way Discord writes them: microseconds, explicit `+00:00`.
pub fn write_timestamp(out: &mut String, unix_micros: u64) {
    let secs = unix_micros / 1_000_000;
    let micros = unix_micros % 1_000_000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

/// A message timestamp: snowflakes carry milliseconds, so the last three digits are `000`.
pub fn write_timestamp_ms(out: &mut String, unix_ms: u64) {
    write_timestamp(out, unix_ms * 1000);
}

/// Parses an ISO 8601 date-time into Unix microseconds: `YYYY-MM-DDTHH:MM:SS`, optional
/// fraction (up to 9 digits, kept to microseconds), then `Z`, `±HH:MM`, `±HHMM` or nothing
/// (UTC). A space may stand for the `T`; not for an offset's `+` (a `+` sent unescaped in a
/// query arrives as a space, and such a `before` is a form error).
pub fn parse_iso8601_us(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let year = num(0, 4)?;
    let (month, day) = (num(5, 2)?, num(8, 2)?);
    let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0u64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                micros = micros * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let offset_s: i64 = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1, 2)?;
            let om = match b.len() - (i + 3) {
                0 => 0,
                2 => num(i + 3, 2)?,
                3 if b[i + 3] == b':' => num(i + 4, 2)?,
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hh * 3600 + mm * 60 + ss) - offset_s;
    u64::try_from(secs).ok().map(|s| s * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(micros: u64) -> String {
        let mut s = String::new();
        write_timestamp(&mut s, micros);
        s
    }

    #[test]
    fn snowflake_layout() {
        // The example from Discord's documentation: 175928847299117063 is 2016-04-30 11:18:25.796 UTC,
        // worker 1, process 0, increment 7.
        let id = 175_928_847_299_117_063u64;
        assert_eq!(snowflake_unix_ms(id), 1_462_015_105_796);
        assert_eq!(snowflake(1_462_015_105_796, 1, 0, 7), id);
        // Fields do not bleed into each other.
        let s = snowflake(DISCORD_EPOCH_MS + 1, 31, 31, 4095);
        assert_eq!(s, (1 << 22) | (31 << 17) | (31 << 12) | 4095);
        assert_eq!(snowflake(0, 0, 0, 0), 0, "pre-epoch times clamp");
    }

    #[test]
    fn snowflakes_are_monotonic_in_time() {
        let mut prev = 0;
        for ms in (DISCORD_EPOCH_MS..DISCORD_EPOCH_MS + 5000).step_by(7) {
            // The low 22 bits never outweigh one millisecond.
            let lo = snowflake(ms, 31, 31, 4095);
            let hi = snowflake(ms + 1, 0, 0, 0);
            assert!(lo < hi);
            assert!(lo > prev);
            prev = lo;
        }
    }

    #[test]
    fn civil_round_trip() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    }

    #[test]
    fn timestamp_format() {
        assert_eq!(ts(0), "1970-01-01T00:00:00.000000+00:00");
        let ms = unix_ms(2024, 5, 1, 12, 34, 56) + 789;
        let mut s = String::new();
        write_timestamp_ms(&mut s, ms);
        assert_eq!(s, "2024-05-01T12:34:56.789000+00:00");
        // Microseconds are kept as they are, never rounded into the next second.
        assert_eq!(
            ts(unix_ms(2023, 12, 31, 23, 59, 59) * 1000 + 999_999),
            "2023-12-31T23:59:59.999999+00:00"
        );
        assert_eq!(
            ts(unix_ms(2024, 1, 1, 0, 0, 0) * 1000 + 1),
            "2024-01-01T00:00:00.000001+00:00"
        );
        // Past 2038 (32-bit time_t overflow) and a leap day.
        assert_eq!(
            ts(unix_ms(2040, 2, 29, 6, 7, 8) * 1000 + 9_000),
            "2040-02-29T06:07:08.009000+00:00"
        );
        assert_eq!(
            ts(unix_ms(2106, 2, 7, 6, 28, 16) * 1000),
            "2106-02-07T06:28:16.000000+00:00"
        );
    }

    #[test]
    fn timestamp_of_snowflake() {
        let id = 175_928_847_299_117_063u64;
        let mut s = String::new();
        write_timestamp_ms(&mut s, snowflake_unix_ms(id));
        assert_eq!(s, "2016-04-30T11:18:25.796000+00:00");
    }

    #[test]
    fn iso8601_parsing() {
        let us = |s: &str| parse_iso8601_us(s);
        let t = unix_ms(2024, 5, 1, 12, 34, 56) * 1000;
        assert_eq!(us("2024-05-01T12:34:56.789000+00:00"), Some(t + 789_000));
        assert_eq!(us("2024-05-01T12:34:56.789+00:00"), Some(t + 789_000));
        assert_eq!(us("2024-05-01T12:34:56.789123456Z"), Some(t + 789_123));
        assert_eq!(us("2024-05-01T12:34:56Z"), Some(t));
        assert_eq!(us("2024-05-01T12:34:56"), Some(t));
        assert_eq!(us("2024-05-01 12:34:56+00:00"), Some(t));
        assert_eq!(us("2024-05-01T14:34:56+02:00"), Some(t));
        assert_eq!(us("2024-05-01T10:34:56-0200"), Some(t));
        assert_eq!(us("2024-05-01T14:34:56+02"), Some(t));
        // Round trip with what the simulator writes.
        let mut s = String::new();
        write_timestamp(&mut s, t + 5);
        assert_eq!(us(&s), Some(t + 5));
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:34:56.Z",
            "2024-05-01T12:34:56.789000 00:00",
            "2024-05-01T12:34:56+0",
            "2024-05-01T12:34:56Zjunk",
            "1234567890123",
            "2024/05/01T12:34:56Z",
        ] {
            assert_eq!(us(bad), None, "{bad}");
        }
    }
}
