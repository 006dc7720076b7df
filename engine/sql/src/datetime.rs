//! Dates and timestamps in PostgreSQL's epoch (2000-01-01): civil-calendar conversions and
//! the ISO text formats.

use crate::error::{state, Result, SqlError};

pub const USEC_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const UNIX_TO_PG_DAYS: i64 = 10_957;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days) + UNIX_TO_PG_DAYS);
    // There is no year 0: year 0 is 1 BC, as PostgreSQL prints it.
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

pub fn format_timestamp(us: i64) -> String {
    let days = us.div_euclid(USEC_PER_DAY);
    let rem = us.rem_euclid(USEC_PER_DAY);
    let date = format_date(days as i32);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    let (h, mi, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if frac == 0 {
        format!("{date} {h:02}:{mi:02}:{s:02}")
    } else {
        let f = format!("{frac:06}");
        format!("{date} {h:02}:{mi:02}:{s:02}.{}", f.trim_end_matches('0'))
    }
}

fn bad(kind: &str, s: &str) -> SqlError {
    SqlError::new(
        state::INVALID_DATETIME,
        format!("invalid input syntax for type {kind}: \"{s}\""),
    )
}

/// Parses `YYYY-MM-DD` into days since 2000-01-01.
pub fn parse_date(s: &str) -> Result<i32> {
    let mut t = s.trim();
    let bc = t.len() > 3 && t[t.len() - 3..].eq_ignore_ascii_case(" bc");
    if bc {
        t = t[..t.len() - 3].trim_end();
    }
    let mut parts = t.splitn(3, '-');
    let y: i64 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| bad("date", s))?;
    if bc && y <= 0 {
        return Err(bad("date", s));
    }
    let y = if bc { 1 - y } else { y };
    let m: u32 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| bad("date", s))?;
    let d: u32 = parts
        .next()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| bad("date", s))?;
    if !(1..=12).contains(&m)
        || d == 0
        || d > days_in_month(y, m)
        || !(-4713..=294_276).contains(&y)
    {
        return Err(SqlError::new(
            "22008",
            format!("date/time field value out of range: \"{s}\""),
        ));
    }
    Ok((days_from_civil(y, m, d) - UNIX_TO_PG_DAYS) as i32)
}

/// Parses `YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]]` into microseconds since 2000-01-01.
pub fn parse_timestamp(s: &str) -> Result<i64> {
    let t = s.trim();
    let (date_part, time_part) = match t.find([' ', 'T']) {
        Some(i) => (&t[..i], t[i + 1..].trim()),
        None => (t, ""),
    };
    let days = i64::from(parse_date(date_part).map_err(|_| bad("timestamp", s))?);
    let mut us = 0i64;
    if !time_part.is_empty() {
        let time_part = time_part.trim_end_matches(['Z', 'z']);
        let mut it = time_part.splitn(3, ':');
        let h: i64 = it
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("timestamp", s))?;
        let mi: i64 = it
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("timestamp", s))?;
        let sec: f64 = match it.next() {
            Some(p) => p.parse().map_err(|_| bad("timestamp", s))?,
            None => 0.0,
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0.0..61.0).contains(&sec) {
            return Err(bad("timestamp", s));
        }
        us = (h * 3600 + mi * 60) * 1_000_000 + (sec * 1e6).round() as i64;
    }
    Ok(days * USEC_PER_DAY + us)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn epoch_and_round_trip() {
        assert_eq!(parse_date("2000-01-01").unwrap(), 0);
        assert_eq!(parse_date("1999-12-31").unwrap(), -1);
        assert_eq!(format_date(366), "2001-01-01");
        for d in [-800_000, -1, 0, 59, 60, 10_000, 2_000_000] {
            assert_eq!(parse_date(&format_date(d)).unwrap(), d);
        }
        let ts = parse_timestamp("2024-02-29 13:45:10.25").unwrap();
        assert_eq!(format_timestamp(ts), "2024-02-29 13:45:10.25");
        assert!(parse_date("2023-02-29").is_err());
        assert!(parse_date("nope").is_err());
    }
}
