//! Argument parsing and error replies worded the way Redis words them, so that client
//! libraries that match on error text behave the same against MantisDB.

use mantis_engine::EngineError;

use super::reply::Reply;

/// The latest expiry accepted: 9999-12-31T23:59:59.999Z in Unix milliseconds (the engine's
/// limit; anything later is a client error, not a silent clamp).
pub const EXPIRES_AT_MS_MAX: u64 = 253_402_300_799_999;

pub fn not_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

pub fn not_float() -> Reply {
    Reply::err("value is not a valid float")
}

pub fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

pub fn wrong_arity(command: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{command}' command"))
}

pub fn invalid_expire(command: &str) -> Reply {
    Reply::err(format!("invalid expire time in '{command}' command"))
}

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' ` (Redis 7 wording).
pub fn unknown_command(args: &[Vec<u8>]) -> Reply {
    let name = args.first().map(|a| printable(a, 128)).unwrap_or_default();
    let mut text = format!("unknown command '{name}', with args beginning with: ");
    for a in args.iter().skip(1).take(8) {
        text.push_str(&format!("'{}' ", printable(a, 128)));
    }
    Reply::err(text)
}

/// A client-supplied byte string made safe to quote in an error line.
pub fn printable(bytes: &[u8], chars_max: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(chars_max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Strict integer parsing like Redis's `string2ll`: optional '-', digits, no '+', no spaces,
/// no leading zeros.
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, arg),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    if negative && digits == b"0" {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if negative {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

pub fn parse_u64(arg: &[u8]) -> Option<u64> {
    parse_i64(arg).and_then(|v| u64::try_from(v).ok())
}

/// A finite float; no surrounding spaces (Redis rejects them too).
pub fn parse_f64(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    v.is_finite().then_some(v)
}

/// Formats a float the way Redis prints INCRBYFLOAT results: shortest round-trip digits,
/// no exponent, no trailing ".0".
pub fn format_f64(v: f64) -> String {
    let text = format!("{v}");
    match text.strip_suffix(".0") {
        Some(t) => t.to_string(),
        None => text,
    }
}

pub fn eq_ignore_case(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Absolute expiry in Unix ms from a relative or absolute option value, or the Redis error.
pub fn expiry_at_ms(
    unit: ExpiryUnit,
    value: i64,
    now_ms: u64,
    command: &str,
) -> Result<u64, Reply> {
    let invalid = || invalid_expire(command);
    let value = u64::try_from(value).map_err(|_| invalid())?;
    let at = match unit {
        ExpiryUnit::Seconds => value
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(now_ms)),
        ExpiryUnit::Millis => value.checked_add(now_ms),
        ExpiryUnit::UnixSeconds => value.checked_mul(1000),
        ExpiryUnit::UnixMillis => Some(value),
    };
    at.filter(|&at| at <= EXPIRES_AT_MS_MAX).ok_or_else(invalid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryUnit {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

/// Maps an engine failure to the reply a Redis client expects for the same situation.
pub fn engine_error(command: &str, e: &EngineError) -> Reply {
    match e {
        EngineError::TtlOverflow { .. } => invalid_expire(command),
        EngineError::ValueTooLarge { len, max } => Reply::err(format!(
            "string exceeds maximum allowed size (value of {len} bytes, limit {max})"
        )),
        EngineError::ReadOnly { .. } => {
            // Redis answers MISCONF when its AOF fsync failed: writes refused, reads served.
            Reply::Error(format!("MISCONF {e}"))
        }
        EngineError::ShuttingDown => Reply::Error("SHUTDOWN the server is shutting down".into()),
        // Issue 7: `-ERR corruption ...`, never the damaged data (docs/resp.md).
        EngineError::Corruption { .. } => Reply::err(format!("corruption detected: {e}")),
        _ if e.is_disk_full() => Reply::Error(format!("DISKFULL {e}")),
        _ if e.is_client_error() => Reply::err(e),
        _ => {
            tracing::error!(command, error = %e, "engine error");
            Reply::err(format!("internal error: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"9223372036854775808"[..],
            b"+1",
            b" 1",
            b"01",
            b"-0",
            b"",
            b"-",
            b"1.0",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"10.5"), Some(10.5));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"inf"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(format_f64(10.5 + 0.1), "10.6");
        assert_eq!(format_f64(3.0), "3");
        assert_eq!(format_f64(-0.5), "-0.5");
    }

    #[test]
    fn expiry_arithmetic_rejects_overflow() {
        assert_eq!(
            expiry_at_ms(ExpiryUnit::Seconds, 10, 1_000, "set").unwrap(),
            11_000
        );
        assert_eq!(
            expiry_at_ms(ExpiryUnit::UnixMillis, 5, 1_000, "set").unwrap(),
            5
        );
        assert!(expiry_at_ms(ExpiryUnit::Seconds, -1, 0, "set").is_err());
        assert!(expiry_at_ms(ExpiryUnit::Seconds, i64::MAX, 0, "set").is_err());
        assert_eq!(
            expiry_at_ms(ExpiryUnit::UnixSeconds, i64::MAX / 100, 0, "expireat").unwrap_err(),
            invalid_expire("expireat")
        );
    }

    #[test]
    fn unknown_command_wording() {
        let r = unknown_command(&[b"FOO".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            r,
            Reply::Error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ".into())
        );
    }
}
