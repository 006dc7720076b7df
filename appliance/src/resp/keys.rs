//! Generic key commands: DEL/UNLINK, EXISTS, TYPE, the EXPIRE family, TTL, PERSIST and SCAN.

use std::ops::Bound;

use futures::future::join_all;
use mantis_engine::{EngineHandle, ScanRange, WriteOp};

use super::args::{
    engine_error, eq_ignore_case, expiry_at_ms, not_integer, parse_i64, parse_u64, syntax_error,
    ExpiryUnit,
};
use super::glob::{glob_match, literal_prefix};
use super::reply::Reply;
use super::session::Session;
use super::strings::{live, Failure};
use crate::server::now_ms;

/// Keys one SCAN call may examine (its COUNT), however large the client asks.
pub const SCAN_COUNT_MAX: usize = 100_000;
const SCAN_COUNT_DEFAULT: usize = 10;

type CmdResult = Result<Reply, Failure>;

pub async fn run(
    engine: &EngineHandle,
    session: &mut Session,
    name: &'static str,
    args: Vec<Vec<u8>>,
) -> Reply {
    if name != "scan" {
        return run_keyed(engine, name, args).await;
    }
    scan(engine, session, &args)
        .await
        .unwrap_or_else(|e| match e {
            Failure::Reply(r) => r,
            Failure::Engine(e) => engine_error(name, &e),
        })
}

/// Every command of this module but SCAN: none needs the connection's state.
pub async fn run_keyed(engine: &EngineHandle, name: &'static str, mut args: Vec<Vec<u8>>) -> Reply {
    let result = match name {
        "del" | "unlink" => del(engine, args).await,
        "exists" => exists(engine, &args[1..]).await,
        "type" => key_type(engine, &args[1]).await,
        "expire" => expire(engine, name, ExpiryUnit::Seconds, args).await,
        "pexpire" => expire(engine, name, ExpiryUnit::Millis, args).await,
        "expireat" => expire(engine, name, ExpiryUnit::UnixSeconds, args).await,
        "pexpireat" => expire(engine, name, ExpiryUnit::UnixMillis, args).await,
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => ttl(engine, name, &args[1]).await,
        "persist" => persist(engine, std::mem::take(&mut args[1])).await,
        _ => return super::args::unknown_command(&args),
    };
    result.unwrap_or_else(|e| match e {
        Failure::Reply(r) => r,
        Failure::Engine(e) => engine_error(name, &e),
    })
}

fn count_reply(n: usize) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

async fn del(engine: &EngineHandle, args: Vec<Vec<u8>>) -> CmdResult {
    let results = join_all(args.into_iter().skip(1).map(|k| engine.delete(k))).await;
    let mut removed = 0;
    for r in results {
        removed += usize::from(r?);
    }
    Ok(count_reply(removed))
}

async fn exists(engine: &EngineHandle, keys: &[Vec<u8>]) -> CmdResult {
    // Redis counts a key named twice twice.
    let results = join_all(keys.iter().map(|k| engine.get_entry(k))).await;
    let mut found = 0;
    for r in results {
        found += usize::from(r?.is_some());
    }
    Ok(count_reply(found))
}

async fn key_type(engine: &EngineHandle, key: &[u8]) -> CmdResult {
    Ok(match engine.get_entry(key).await? {
        Some(_) => Reply::Simple("string"),
        None => Reply::Simple("none"),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpireCondition {
    Always,
    /// NX: only when the key has no expiry.
    NoExpiry,
    /// XX: only when it has one.
    HasExpiry,
    /// GT: only when the new expiry is later (no expiry counts as infinitely late).
    Later,
    /// LT: only when the new expiry is earlier.
    Earlier,
}

pub(crate) fn parse_expire_condition(opts: &[Vec<u8>]) -> Result<ExpireCondition, Reply> {
    let mut cond = ExpireCondition::Always;
    for word in opts {
        let next = [
            ("nx", ExpireCondition::NoExpiry),
            ("xx", ExpireCondition::HasExpiry),
            ("gt", ExpireCondition::Later),
            ("lt", ExpireCondition::Earlier),
        ]
        .into_iter()
        .find(|(w, _)| eq_ignore_case(word, w))
        .map(|(_, c)| c)
        .ok_or_else(|| {
            Reply::err(format!(
                "Unsupported option {}",
                super::args::printable(word, 64)
            ))
        })?;
        let compatible = matches!(
            (cond, next),
            (ExpireCondition::Always, _)
                | (
                    ExpireCondition::HasExpiry,
                    ExpireCondition::Later | ExpireCondition::Earlier
                )
                | (
                    ExpireCondition::Later | ExpireCondition::Earlier,
                    ExpireCondition::HasExpiry
                )
        );
        if !compatible {
            return Err(Reply::err(
                "NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        // XX combined with GT/LT keeps the comparison (XX is implied by it for GT).
        if next != ExpireCondition::HasExpiry || cond == ExpireCondition::Always {
            cond = next;
        }
    }
    Ok(cond)
}

async fn expire(
    engine: &EngineHandle,
    name: &'static str,
    unit: ExpiryUnit,
    mut args: Vec<Vec<u8>>,
) -> CmdResult {
    let amount = parse_i64(&args[2]).ok_or_else(not_integer)?;
    let cond = parse_expire_condition(&args[3..])?;
    let now = now_ms();
    // A time in the past (or a non-positive relative one) deletes the key, like Redis.
    let at = if amount <= 0 {
        0
    } else {
        expiry_at_ms(unit, amount, now, name)?
    };
    let applied = engine
        .update(std::mem::take(&mut args[1]), move |old| {
            let Some(e) = old.filter(|e| live(e, now)) else {
                return Ok((WriteOp::Keep, false));
            };
            let allowed = match (cond, e.expires_at_ms) {
                (ExpireCondition::Always, _) => true,
                (ExpireCondition::NoExpiry, current) => current.is_none(),
                (ExpireCondition::HasExpiry, current) => current.is_some(),
                (ExpireCondition::Later, Some(current)) => at > current,
                (ExpireCondition::Later, None) => false,
                (ExpireCondition::Earlier, Some(current)) => at < current,
                (ExpireCondition::Earlier, None) => true,
            };
            if !allowed {
                return Ok((WriteOp::Keep, false));
            }
            if at <= now {
                return Ok((WriteOp::Delete, true));
            }
            Ok((
                WriteOp::Put {
                    value: e.value,
                    expires_at_ms: Some(at),
                },
                true,
            ))
        })
        .await?;
    Ok(Reply::Int(i64::from(applied)))
}

async fn ttl(engine: &EngineHandle, name: &str, key: &[u8]) -> CmdResult {
    let now = now_ms();
    let Some(entry) = engine.get_entry(key).await?.filter(|e| live(e, now)) else {
        return Ok(Reply::Int(-2));
    };
    let Some(at) = entry.expires_at_ms else {
        return Ok(Reply::Int(-1));
    };
    let remaining_ms = at.saturating_sub(now);
    let value = match name {
        // Redis rounds the remaining seconds to the nearest.
        "ttl" => remaining_ms.saturating_add(500) / 1000,
        "pttl" => remaining_ms,
        "expiretime" => at / 1000,
        _ => at,
    };
    Ok(Reply::Int(i64::try_from(value).unwrap_or(i64::MAX)))
}

async fn persist(engine: &EngineHandle, key: Vec<u8>) -> CmdResult {
    let now = now_ms();
    let removed = engine
        .update(key, move |old| match old.filter(|e| live(e, now)) {
            Some(e) if e.expires_at_ms.is_some() => Ok((
                WriteOp::Put {
                    value: e.value,
                    expires_at_ms: None,
                },
                true,
            )),
            _ => Ok((WriteOp::Keep, false)),
        })
        .await?;
    Ok(Reply::Int(i64::from(removed)))
}

struct ScanOptions {
    pattern: Option<Vec<u8>>,
    count: usize,
    /// TYPE filter: only "string" keys exist here, so any other type matches nothing.
    strings_only_ok: bool,
}

fn parse_scan_options(opts: &[Vec<u8>]) -> Result<ScanOptions, Reply> {
    let mut o = ScanOptions {
        pattern: None,
        count: SCAN_COUNT_DEFAULT,
        strings_only_ok: true,
    };
    let mut i = 0;
    while i < opts.len() {
        let value = opts.get(i + 1).ok_or_else(syntax_error)?;
        if eq_ignore_case(&opts[i], "match") {
            o.pattern = Some(value.clone());
        } else if eq_ignore_case(&opts[i], "count") {
            let n = parse_i64(value).ok_or_else(not_integer)?;
            if n < 1 {
                return Err(syntax_error());
            }
            o.count = usize::try_from(n)
                .unwrap_or(SCAN_COUNT_MAX)
                .min(SCAN_COUNT_MAX);
        } else if eq_ignore_case(&opts[i], "type") {
            o.strings_only_ok = eq_ignore_case(value, "string");
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    Ok(o)
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

async fn scan(engine: &EngineHandle, session: &mut Session, args: &[Vec<u8>]) -> CmdResult {
    let cursor = parse_u64(&args[1]).ok_or_else(|| Reply::err("invalid cursor"))?;
    let opts = parse_scan_options(&args[2..])?;
    let prefix = opts
        .pattern
        .as_deref()
        .map(literal_prefix)
        .unwrap_or_default();
    let start = if cursor == 0 {
        if prefix.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(prefix.clone())
        }
    } else {
        let after = session
            .cursors
            .resume(cursor)
            .ok_or_else(|| Reply::err("invalid cursor"))?;
        Bound::Excluded(after)
    };
    let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
    let batch = engine.scan(ScanRange { start, end }, opts.count).await?;
    let next_cursor = match batch.last() {
        Some((last, _)) if batch.len() == opts.count => session.cursors.open(last.clone()),
        _ => 0,
    };
    let now = now_ms();
    let keys = batch
        .into_iter()
        .filter(|(_, e)| live(e, now) && opts.strings_only_ok)
        .filter(|(k, _)| opts.pattern.as_deref().is_none_or(|p| glob_match(p, k)))
        .map(|(k, _)| Reply::Bulk(k))
        .collect();
    Ok(Reply::Array(vec![
        Reply::Bulk(next_cursor.to_string().into_bytes()),
        Reply::Array(keys),
    ]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn words(w: &[&str]) -> Vec<Vec<u8>> {
        w.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn expire_conditions() {
        assert_eq!(
            parse_expire_condition(&words(&["nx"])).unwrap(),
            ExpireCondition::NoExpiry
        );
        assert_eq!(
            parse_expire_condition(&words(&["xx", "gt"])).unwrap(),
            ExpireCondition::Later
        );
        assert!(parse_expire_condition(&words(&["nx", "xx"])).is_err());
        assert!(parse_expire_condition(&words(&["gt", "lt"])).is_err());
        assert!(parse_expire_condition(&words(&["zz"])).is_err());
    }

    #[test]
    fn scan_options_and_prefix_end() {
        let o = parse_scan_options(&words(&["MATCH", "a*", "COUNT", "50"])).unwrap();
        assert_eq!(o.pattern.as_deref(), Some(&b"a*"[..]));
        assert_eq!(o.count, 50);
        assert!(parse_scan_options(&words(&["COUNT", "0"])).is_err());
        assert!(parse_scan_options(&words(&["MATCH"])).is_err());
        assert_eq!(
            parse_scan_options(&words(&["COUNT", "99999999"]))
                .unwrap()
                .count,
            SCAN_COUNT_MAX
        );
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
