//! RFC 3339 timestamps without a clock: parsing with full validation, and the fixed
//! nanosecond UTC form custos assigns at sequencing (`2026-11-23T11:49:39.123456789Z`).
//!
//! Times are carried as nanoseconds since the Unix epoch in an `i128`, which covers every
//! RFC 3339 year (0000–9999) without overflow.

/// Nanoseconds in one second.
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with exactly nine fraction digits.
///
/// Returns `None` for instants outside years 0000–9999, which RFC 3339 cannot express.
pub fn format_utc_nanos(nanos: i128) -> Option<String> {
    let secs = nanos.div_euclid(NANOS_PER_SEC);
    let frac = nanos.rem_euclid(NANOS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).ok()?);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    ))
}

/// Parses an RFC 3339 `date-time` (e.g. `2026-11-23T11:49:39Z`, `2026-11-23t11:49:39.5+01:00`)
/// into nanoseconds since the Unix epoch. Fractions beyond nanoseconds are rejected rather
/// than silently rounded. A leap second (`:60`) is accepted and counted as the next second.
pub fn parse_rfc3339(s: &str) -> Result<i128, String> {
    let b = s.as_bytes();
    let err = |what: &str| Err(format!("`{s}` is not an RFC 3339 date-time: {what}"));
    if b.len() < 20 {
        return err("too short (expected YYYY-MM-DDTHH:MM:SS followed by Z or an offset)");
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter()
            .try_fold(0i64, |acc, c| Some(acc * 10 + i64::from(c - b'0')))
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return err("date or time fields are not digits");
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return err("date must be YYYY-MM-DD followed by T");
    }
    if b[13] != b':' || b[16] != b':' {
        return err("time must be HH:MM:SS");
    }
    if !(1..=12).contains(&month) {
        return err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return err("day out of range for the month");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return err("time of day out of range");
    }
    let mut i = 19;
    let mut frac_nanos: i128 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return err("empty fraction of a second");
        }
        if digits > 9 {
            return err("fraction of a second finer than nanoseconds");
        }
        for &c in &b[start..i] {
            frac_nanos = frac_nanos * 10 + i128::from(c - b'0');
        }
        for _ in digits..9 {
            frac_nanos *= 10;
        }
    }
    let offset_secs: i64 = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return err("offset must be +HH:MM or -HH:MM");
            }
            let oh = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let om = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            if oh > 23 || om > 59 {
                return err("offset out of range");
            }
            let total = oh * 3600 + om * 60;
            if *sign == b'-' { -total } else { total }
        }
        _ => return err("expected Z or an offset such as +01:00 after the time"),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok(i128::from(secs) * NANOS_PER_SEC + frac_nanos)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<i128, ()>) {
        assert_eq!(parse_rfc3339(input).map_err(|_| ()), expect, "{input}");
    }

    #[test]
    fn parses_and_rejects() {
        check("1970-01-01T00:00:00Z", Ok(0));
        check("1970-01-01T00:00:01.5Z", Ok(1_500_000_000));
        check("1970-01-01T01:00:00+01:00", Ok(0));
        check("1969-12-31T23:59:59.999999999Z", Ok(-1));
        check("2000-02-29T00:00:00Z", Ok(951_782_400 * NANOS_PER_SEC));
        check("2026-11-23t11:49:39z", Ok(1_795_434_579 * NANOS_PER_SEC));
        check("1900-02-29T00:00:00Z", Err(()));
        check("2026-13-01T00:00:00Z", Err(()));
        check("2026-11-23T24:00:00Z", Err(()));
        check("2026-11-23T11:49:39", Err(()));
        check("2026-11-23T11:49:39.Z", Err(()));
        check("2026-11-23T11:49:39.1234567891Z", Err(()));
        check("2026-11-23T11:49:39+1:00", Err(()));
        check("2026-11-23 11:49:39Z trailing", Err(()));
        check("２０２６-11-23T11:49:39Z", Err(()));
        check("", Err(()));
    }

    #[test]
    fn formats_with_nine_digits_and_round_trips() {
        assert_eq!(
            format_utc_nanos(0).as_deref(),
            Some("1970-01-01T00:00:00.000000000Z")
        );
        for n in [
            -1i128,
            0,
            1,
            951_782_400 * NANOS_PER_SEC + 7,
            1_795_434_579_123_456_789,
            253_402_300_799 * NANOS_PER_SEC + 999_999_999,
        ] {
            let s = format_utc_nanos(n).expect("in range");
            assert_eq!(parse_rfc3339(&s), Ok(n), "{s}");
        }
        assert_eq!(format_utc_nanos(253_402_300_800 * NANOS_PER_SEC), None);
    }
}
