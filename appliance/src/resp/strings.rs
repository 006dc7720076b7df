//! String commands: GET/SET and friends, counters, APPEND, MGET/MSET. Every write is answered
//! after the engine returned, i.e. after the fdatasync that covers it. Read-modify-writes go
//! through `EngineHandle::update`, which runs atomically on the key's shard.

use futures::future::join_all;
use mantis_engine::{BatchOp, EngineError, EngineHandle, ValueEntry, WriteOp};

use super::args::{
    engine_error, eq_ignore_case, expiry_at_ms, format_f64, invalid_expire, not_float, not_integer,
    parse_f64, parse_i64, syntax_error, wrong_arity, ExpiryUnit,
};
use super::reply::Reply;
use crate::server::now_ms;

/// Whether an entry is still alive at `now_ms` (the engine filters expired entries too; this
/// guards the instant between its check and ours).
pub fn live(entry: &ValueEntry, now_ms: u64) -> bool {
    entry.expires_at_ms.is_none_or(|at| at > now_ms)
}

pub async fn run(engine: &EngineHandle, name: &'static str, mut args: Vec<Vec<u8>>) -> Reply {
    let result = match name {
        "get" => get(engine, &args[1]).await,
        "set" => set(engine, args).await,
        "setnx" => setnx(engine, args).await,
        "setex" | "psetex" => setex(engine, name, args).await,
        "getdel" => getdel(engine, std::mem::take(&mut args[1])).await,
        "getex" => getex(engine, args).await,
        "getset" => getset(engine, args).await,
        "mget" => mget(engine, &args[1..]).await,
        "mset" => mset(engine, args).await,
        "msetnx" => msetnx(engine, args).await,
        "incr" => incr_by(engine, name, std::mem::take(&mut args[1]), Ok(1)).await,
        "decr" => incr_by(engine, name, std::mem::take(&mut args[1]), Ok(-1)).await,
        "incrby" => {
            let delta = parse_i64(&args[2]).ok_or_else(not_integer);
            incr_by(engine, name, std::mem::take(&mut args[1]), delta).await
        }
        "decrby" => {
            let delta = match parse_i64(&args[2]) {
                None => Err(not_integer()),
                Some(d) => d
                    .checked_neg()
                    .ok_or_else(|| Reply::err("decrement would overflow")),
            };
            incr_by(engine, name, std::mem::take(&mut args[1]), delta).await
        }
        "incrbyfloat" => incr_by_float(engine, args).await,
        "append" => append(engine, args).await,
        "strlen" => strlen(engine, &args[1]).await,
        _ => return super::args::unknown_command(&args),
    };
    result.unwrap_or_else(|e| match e {
        Failure::Reply(r) => r,
        Failure::Engine(e) => engine_error(name, &e),
    })
}

/// Why a command did not produce its normal reply.
pub enum Failure {
    /// A client error already worded as a reply.
    Reply(Reply),
    Engine(EngineError),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<Reply> for Failure {
    fn from(r: Reply) -> Self {
        Failure::Reply(r)
    }
}

type CmdResult = Result<Reply, Failure>;

fn bulk_or_null(value: Option<Vec<u8>>) -> Reply {
    value.map_or(Reply::Null, Reply::Bulk)
}

async fn get(engine: &EngineHandle, key: &[u8]) -> CmdResult {
    Ok(bulk_or_null(engine.get(key).await?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewExpiry {
    /// No TTL (SET without options clears an existing one).
    None,
    /// KEEPTTL.
    Keep,
    At(u64),
}

pub(crate) struct SetOptions {
    pub(crate) condition: Condition,
    pub(crate) get: bool,
    pub(crate) expiry: NewExpiry,
}

pub(crate) fn parse_set_options(opts: &[Vec<u8>], now: u64) -> Result<SetOptions, Reply> {
    let mut o = SetOptions {
        condition: Condition::Always,
        get: false,
        expiry: NewExpiry::None,
    };
    let mut expiry_given = false;
    let mut i = 0;
    while i < opts.len() {
        let word = &opts[i];
        let unit = [
            ("ex", ExpiryUnit::Seconds),
            ("px", ExpiryUnit::Millis),
            ("exat", ExpiryUnit::UnixSeconds),
            ("pxat", ExpiryUnit::UnixMillis),
        ]
        .into_iter()
        .find(|(w, _)| eq_ignore_case(word, w))
        .map(|(_, u)| u);
        if let Some(unit) = unit {
            let value = opts.get(i + 1).ok_or_else(syntax_error)?;
            if expiry_given {
                return Err(syntax_error());
            }
            let value = parse_i64(value).ok_or_else(not_integer)?;
            if value <= 0 {
                return Err(invalid_expire("set"));
            }
            o.expiry = NewExpiry::At(expiry_at_ms(unit, value, now, "set")?);
            expiry_given = true;
            i += 2;
            continue;
        }
        if eq_ignore_case(word, "nx") && o.condition != Condition::IfPresent {
            o.condition = Condition::IfAbsent;
        } else if eq_ignore_case(word, "xx") && o.condition != Condition::IfAbsent {
            o.condition = Condition::IfPresent;
        } else if eq_ignore_case(word, "get") {
            o.get = true;
        } else if eq_ignore_case(word, "keepttl") && !expiry_given {
            o.expiry = NewExpiry::Keep;
            expiry_given = true;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    Ok(o)
}

async fn set(engine: &EngineHandle, mut args: Vec<Vec<u8>>) -> CmdResult {
    let now = now_ms();
    let opts = parse_set_options(&args[3..], now)?;
    let value = std::mem::take(&mut args[2]);
    let key = std::mem::take(&mut args[1]);
    if opts.condition == Condition::Always && !opts.get && opts.expiry != NewExpiry::Keep {
        // The common case needs no read: a blind durable put.
        match opts.expiry {
            NewExpiry::At(at) if at <= now => {
                engine.delete(key).await?;
            }
            NewExpiry::At(at) => engine.put_expiring_at(key, value, Some(at)).await?,
            _ => engine.put_expiring_at(key, value, None).await?,
        }
        return Ok(Reply::OK);
    }
    let SetOptions {
        condition,
        get,
        expiry,
    } = opts;
    let (applied, old) = engine
        .update(key, move |old| {
            let old = old.filter(|e| live(e, now));
            let apply = match condition {
                Condition::Always => true,
                Condition::IfAbsent => old.is_none(),
                Condition::IfPresent => old.is_some(),
            };
            let expires_at_ms = match expiry {
                NewExpiry::None => None,
                NewExpiry::Keep => old.as_ref().and_then(|e| e.expires_at_ms),
                NewExpiry::At(at) => Some(at),
            };
            let old_value = old.map(|e| e.value);
            let op = match (apply, expires_at_ms) {
                (false, _) => WriteOp::Keep,
                (true, Some(at)) if at <= now => WriteOp::Delete,
                (true, _) => WriteOp::Put {
                    value,
                    expires_at_ms,
                },
            };
            Ok((op, (apply, old_value)))
        })
        .await?;
    Ok(if get {
        bulk_or_null(old)
    } else if applied {
        Reply::OK
    } else {
        Reply::Null
    })
}

async fn setnx(engine: &EngineHandle, mut args: Vec<Vec<u8>>) -> CmdResult {
    let now = now_ms();
    let value = std::mem::take(&mut args[2]);
    let applied = engine
        .update(std::mem::take(&mut args[1]), move |old| {
            if old.filter(|e| live(e, now)).is_some() {
                return Ok((WriteOp::Keep, false));
            }
            Ok((
                WriteOp::Put {
                    value,
                    expires_at_ms: None,
                },
                true,
            ))
        })
        .await?;
    Ok(Reply::Int(i64::from(applied)))
}

async fn setex(engine: &EngineHandle, name: &'static str, mut args: Vec<Vec<u8>>) -> CmdResult {
    let amount = parse_i64(&args[2]).ok_or_else(not_integer)?;
    if amount <= 0 {
        return Err(invalid_expire(name).into());
    }
    let unit = if name == "setex" {
        ExpiryUnit::Seconds
    } else {
        ExpiryUnit::Millis
    };
    let at = expiry_at_ms(unit, amount, now_ms(), name)?;
    let value = std::mem::take(&mut args[3]);
    engine
        .put_expiring_at(std::mem::take(&mut args[1]), value, Some(at))
        .await?;
    Ok(Reply::OK)
}

async fn getdel(engine: &EngineHandle, key: Vec<u8>) -> CmdResult {
    let now = now_ms();
    let old = engine
        .update(key, move |old| match old.filter(|e| live(e, now)) {
            Some(e) => Ok((WriteOp::Delete, Some(e.value))),
            None => Ok((WriteOp::Keep, None)),
        })
        .await?;
    Ok(bulk_or_null(old))
}

async fn getex(engine: &EngineHandle, mut args: Vec<Vec<u8>>) -> CmdResult {
    let now = now_ms();
    // None: leave the TTL alone; Some(None): PERSIST; Some(Some(at)): new expiry.
    let mut change: Option<Option<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        let word = &args[i];
        let unit = [
            ("ex", ExpiryUnit::Seconds),
            ("px", ExpiryUnit::Millis),
            ("exat", ExpiryUnit::UnixSeconds),
            ("pxat", ExpiryUnit::UnixMillis),
        ]
        .into_iter()
        .find(|(w, _)| eq_ignore_case(word, w))
        .map(|(_, u)| u);
        if change.is_some() {
            return Err(syntax_error().into());
        }
        if let Some(unit) = unit {
            let value = args.get(i + 1).ok_or_else(syntax_error)?;
            let value = parse_i64(value).ok_or_else(not_integer)?;
            if value <= 0 {
                return Err(invalid_expire("getex").into());
            }
            change = Some(Some(expiry_at_ms(unit, value, now, "getex")?));
            i += 2;
        } else if eq_ignore_case(word, "persist") {
            change = Some(None);
            i += 1;
        } else {
            return Err(syntax_error().into());
        }
    }
    let key = std::mem::take(&mut args[1]);
    let Some(new_expiry) = change else {
        return get(engine, &key).await;
    };
    let value = engine
        .update(key, move |old| {
            let Some(e) = old.filter(|e| live(e, now)) else {
                return Ok((WriteOp::Keep, None));
            };
            let op = match new_expiry {
                Some(at) if at <= now => WriteOp::Delete,
                _ if e.expires_at_ms == new_expiry => WriteOp::Keep,
                _ => WriteOp::Put {
                    value: e.value.clone(),
                    expires_at_ms: new_expiry,
                },
            };
            Ok((op, Some(e.value)))
        })
        .await?;
    Ok(bulk_or_null(value))
}

async fn getset(engine: &EngineHandle, mut args: Vec<Vec<u8>>) -> CmdResult {
    let now = now_ms();
    let value = std::mem::take(&mut args[2]);
    let old = engine
        .update(std::mem::take(&mut args[1]), move |old| {
            let old = old.filter(|e| live(e, now)).map(|e| e.value);
            Ok((
                WriteOp::Put {
                    value,
                    expires_at_ms: None,
                },
                old,
            ))
        })
        .await?;
    Ok(bulk_or_null(old))
}

async fn mget(engine: &EngineHandle, keys: &[Vec<u8>]) -> CmdResult {
    let values = join_all(keys.iter().map(|k| engine.get(k))).await;
    let mut items = Vec::with_capacity(values.len());
    for v in values {
        items.push(bulk_or_null(v?));
    }
    Ok(Reply::Array(items))
}

fn pairs_to_puts(args: Vec<Vec<u8>>) -> Vec<BatchOp> {
    let mut ops = Vec::with_capacity(args.len() / 2);
    let mut it = args.into_iter().skip(1);
    while let (Some(key), Some(value)) = (it.next(), it.next()) {
        ops.push(BatchOp::Put {
            key,
            value,
            expires_at_ms: None,
        });
    }
    ops
}

async fn mset(engine: &EngineHandle, args: Vec<Vec<u8>>) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(wrong_arity("mset").into());
    }
    engine.write_batch(pairs_to_puts(args)).await?;
    Ok(Reply::OK)
}

/// Sets all pairs only if none of the keys exists. The check and the batch are two steps: a
/// concurrent writer between them can make a key exist (documented in docs/resp.md).
async fn msetnx(engine: &EngineHandle, args: Vec<Vec<u8>>) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(wrong_arity("msetnx").into());
    }
    let keys: Vec<&Vec<u8>> = args.iter().skip(1).step_by(2).collect();
    let found = join_all(keys.iter().map(|k| engine.get(k))).await;
    for f in found {
        if f?.is_some() {
            return Ok(Reply::Int(0));
        }
    }
    engine.write_batch(pairs_to_puts(args)).await?;
    Ok(Reply::Int(1))
}

enum CounterError {
    NotInteger,
    Overflow,
}

async fn incr_by(
    engine: &EngineHandle,
    name: &str,
    key: Vec<u8>,
    delta: Result<i64, Reply>,
) -> CmdResult {
    let delta = delta?;
    let now = now_ms();
    let result = engine
        .update(key, move |old| {
            let old = old.filter(|e| live(e, now));
            let (current, expires_at_ms) = match &old {
                None => (0, None),
                Some(e) => match parse_i64(&e.value) {
                    Some(v) => (v, e.expires_at_ms),
                    None => return Ok((WriteOp::Keep, Err(CounterError::NotInteger))),
                },
            };
            match current.checked_add(delta) {
                None => Ok((WriteOp::Keep, Err(CounterError::Overflow))),
                Some(n) => Ok((
                    WriteOp::Put {
                        value: n.to_string().into_bytes(),
                        expires_at_ms,
                    },
                    Ok(n),
                )),
            }
        })
        .await?;
    match result {
        Ok(n) => Ok(Reply::Int(n)),
        Err(CounterError::NotInteger) => Err(not_integer().into()),
        Err(CounterError::Overflow) => Err(Reply::err(if name.starts_with("decr") {
            "decrement would overflow"
        } else {
            "increment or decrement would overflow"
        })
        .into()),
    }
}

async fn incr_by_float(engine: &EngineHandle, mut args: Vec<Vec<u8>>) -> CmdResult {
    let delta = parse_f64(&args[2]).ok_or_else(not_float)?;
    let now = now_ms();
    let result = engine
        .update(std::mem::take(&mut args[1]), move |old| {
            let old = old.filter(|e| live(e, now));
            let (current, expires_at_ms) = match &old {
                None => (0.0, None),
                Some(e) => match parse_f64(&e.value) {
                    Some(v) => (v, e.expires_at_ms),
                    None => return Ok((WriteOp::Keep, Err(not_float()))),
                },
            };
            let sum = current + delta;
            if !sum.is_finite() {
                return Ok((
                    WriteOp::Keep,
                    Err(Reply::err("increment would produce NaN or Infinity")),
                ));
            }
            let text = format_f64(sum).into_bytes();
            Ok((
                WriteOp::Put {
                    value: text.clone(),
                    expires_at_ms,
                },
                Ok(text),
            ))
        })
        .await?;
    Ok(Reply::Bulk(result?))
}

async fn append(engine: &EngineHandle, mut args: Vec<Vec<u8>>) -> CmdResult {
    let now = now_ms();
    let suffix = std::mem::take(&mut args[2]);
    let len = engine
        .update(std::mem::take(&mut args[1]), move |old| {
            let (mut value, expires_at_ms) = match old.filter(|e| live(e, now)) {
                Some(e) => (e.value, e.expires_at_ms),
                None => (Vec::new(), None),
            };
            value.extend_from_slice(&suffix);
            let len = value.len();
            Ok((
                WriteOp::Put {
                    value,
                    expires_at_ms,
                },
                len,
            ))
        })
        .await?;
    Ok(Reply::Int(i64::try_from(len).unwrap_or(i64::MAX)))
}

async fn strlen(engine: &EngineHandle, key: &[u8]) -> CmdResult {
    let len = engine.get(key).await?.map_or(0, |v| v.len());
    Ok(Reply::Int(i64::try_from(len).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn opts(words: &[&str]) -> Result<SetOptions, Reply> {
        let v: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        parse_set_options(&v, 1_000)
    }

    #[test]
    fn set_option_grammar() {
        let o = opts(&["NX", "EX", "10"]).unwrap();
        assert_eq!(o.condition, Condition::IfAbsent);
        assert_eq!(o.expiry, NewExpiry::At(11_000));
        let o = opts(&["xx", "get", "keepttl"]).unwrap();
        assert!(o.get);
        assert_eq!(o.expiry, NewExpiry::Keep);
        assert_eq!(opts(&["nx", "xx"]).err(), Some(syntax_error()));
        assert_eq!(opts(&["ex", "1", "px", "5"]).err(), Some(syntax_error()));
        assert_eq!(opts(&["ex", "1", "keepttl"]).err(), Some(syntax_error()));
        assert_eq!(opts(&["ex"]).err(), Some(syntax_error()));
        assert_eq!(opts(&["ex", "abc"]).err(), Some(not_integer()));
        assert_eq!(opts(&["ex", "0"]).err(), Some(invalid_expire("set")));
        assert_eq!(
            opts(&["ex", "9223372036854775807"]).err(),
            Some(invalid_expire("set"))
        );
        assert_eq!(opts(&["bogus"]).err(), Some(syntax_error()));
    }
}
