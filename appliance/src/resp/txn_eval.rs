//! The data commands of a transaction, run against an in-memory overlay of the keys it locked:
//! each command sees the effects of the ones before it, and the overlay's changes become ONE
//! `write_batch` at the end. Same replies as the direct implementations in `strings.rs` and
//! `keys.rs` (checked by `appliance/tests/resp_multi.rs` against redis-server).

use std::collections::{BTreeSet, HashMap};

use mantis_engine::{BatchOp, ValueEntry};

use super::args::{
    eq_ignore_case, expiry_at_ms, format_f64, invalid_expire, not_float, not_integer, parse_f64,
    parse_i64, syntax_error, wrong_arity, ExpiryUnit,
};
use super::commands::Spec;
use super::keys::{parse_expire_condition, ExpireCondition};
use super::reply::Reply;
use super::strings::{live, parse_set_options, Condition, NewExpiry};

/// The keys a command touches, from its table entry (first, last, step as COMMAND reports).
pub fn command_keys(spec: &Spec, args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if spec.first_key <= 0 || args.len() < 2 {
        return Vec::new();
    }
    let first = spec.first_key as usize;
    let last = if spec.last_key < 0 {
        args.len() as i64 + i64::from(spec.last_key)
    } else {
        i64::from(spec.last_key)
    };
    let step = spec.key_step.max(1) as usize;
    let last = usize::try_from(last).unwrap_or(0).min(args.len() - 1);
    (first..=last)
        .step_by(step)
        .map(|i| args[i].clone())
        .collect()
}

/// The locked keys' entries as they were read, plus what the transaction changed.
pub struct Overlay {
    entries: HashMap<Vec<u8>, Option<ValueEntry>>,
    dirty: BTreeSet<Vec<u8>>,
    now_ms: u64,
}

impl Overlay {
    pub fn new(entries: HashMap<Vec<u8>, Option<ValueEntry>>, now_ms: u64) -> Overlay {
        Overlay {
            entries,
            dirty: BTreeSet::new(),
            now_ms,
        }
    }

    /// The live entry of `key`. Every key a command names was locked and read first.
    pub(crate) fn get(&self, key: &[u8]) -> Option<ValueEntry> {
        let entry = self.entries.get(key);
        assert!(entry.is_some(), "key not locked by the transaction");
        entry
            .and_then(|e| e.clone())
            .filter(|e| live(e, self.now_ms))
    }

    pub(crate) fn put(&mut self, key: &[u8], value: Vec<u8>, expires_at_ms: Option<u64>) {
        let entry = match expires_at_ms {
            Some(at) if at <= self.now_ms => None,
            _ => Some(ValueEntry {
                value,
                expires_at_ms,
            }),
        };
        self.entries.insert(key.to_vec(), entry);
        self.dirty.insert(key.to_vec());
    }

    /// Removes `key`; true if it was live.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        let existed = self.get(key).is_some();
        if existed {
            self.entries.insert(key.to_vec(), None);
            self.dirty.insert(key.to_vec());
        }
        existed
    }

    /// The transaction's writes (one per changed key) and the keys they modify.
    pub fn into_writes(self) -> (Vec<BatchOp>, Vec<Vec<u8>>) {
        let mut ops = Vec::with_capacity(self.dirty.len());
        for key in &self.dirty {
            let op = match self.entries.get(key).and_then(|e| e.clone()) {
                Some(e) => BatchOp::Put {
                    key: key.clone(),
                    value: e.value,
                    expires_at_ms: e.expires_at_ms,
                },
                None => BatchOp::Delete { key: key.clone() },
            };
            ops.push(op);
        }
        (ops, self.dirty.into_iter().collect())
    }
}

/// Whether [`eval`] implements `name` (the other commands of a transaction touch no key).
pub fn is_data_command(name: &str) -> bool {
    matches!(
        name,
        "get"
            | "set"
            | "setnx"
            | "setex"
            | "psetex"
            | "getdel"
            | "getex"
            | "getset"
            | "mget"
            | "mset"
            | "msetnx"
            | "incr"
            | "decr"
            | "incrby"
            | "decrby"
            | "incrbyfloat"
            | "append"
            | "strlen"
            | "del"
            | "unlink"
            | "exists"
            | "type"
            | "expire"
            | "pexpire"
            | "expireat"
            | "pexpireat"
            | "ttl"
            | "pttl"
            | "expiretime"
            | "pexpiretime"
            | "persist"
    )
}

/// Runs one data command (already checked for arity) on the overlay.
pub fn eval(ov: &mut Overlay, name: &str, args: &[Vec<u8>]) -> Reply {
    assert!(is_data_command(name), "not a data command: {name}");
    eval_inner(ov, name, args).unwrap_or_else(|r| r)
}

fn bulk_or_null(value: Option<Vec<u8>>) -> Reply {
    value.map_or(Reply::Null, Reply::Bulk)
}

fn count(n: usize) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn eval_inner(ov: &mut Overlay, name: &str, args: &[Vec<u8>]) -> Result<Reply, Reply> {
    let now = ov.now_ms;
    let key = &args[1];
    Ok(match name {
        "get" => bulk_or_null(ov.get(key).map(|e| e.value)),
        "set" => set(ov, args)?,
        "setnx" => {
            if ov.get(key).is_some() {
                Reply::Int(0)
            } else {
                ov.put(key, args[2].clone(), None);
                Reply::Int(1)
            }
        }
        "setex" | "psetex" => {
            let amount = parse_i64(&args[2]).ok_or_else(not_integer)?;
            if amount <= 0 {
                return Err(invalid_expire(name));
            }
            let unit = if name == "setex" {
                ExpiryUnit::Seconds
            } else {
                ExpiryUnit::Millis
            };
            let at = expiry_at_ms(unit, amount, now, name)?;
            ov.put(key, args[3].clone(), Some(at));
            Reply::OK
        }
        "getdel" => {
            let old = ov.get(key).map(|e| e.value);
            ov.delete(key);
            bulk_or_null(old)
        }
        "getex" => getex(ov, args)?,
        "getset" => {
            let old = ov.get(key).map(|e| e.value);
            ov.put(key, args[2].clone(), None);
            bulk_or_null(old)
        }
        "mget" => Reply::Array(
            args[1..]
                .iter()
                .map(|k| bulk_or_null(ov.get(k).map(|e| e.value)))
                .collect(),
        ),
        "mset" | "msetnx" => {
            if args.len().is_multiple_of(2) {
                return Err(wrong_arity(name));
            }
            let pairs = args[1..].chunks_exact(2);
            if name == "msetnx" && pairs.clone().any(|p| ov.get(&p[0]).is_some()) {
                return Ok(Reply::Int(0));
            }
            for p in pairs {
                ov.put(&p[0], p[1].clone(), None);
            }
            if name == "mset" {
                Reply::OK
            } else {
                Reply::Int(1)
            }
        }
        "incr" | "decr" | "incrby" | "decrby" => incr_by(ov, name, args)?,
        "incrbyfloat" => {
            let delta = parse_f64(&args[2]).ok_or_else(not_float)?;
            let (current, expires_at_ms) = match ov.get(key) {
                None => (0.0, None),
                Some(e) => (parse_f64(&e.value).ok_or_else(not_float)?, e.expires_at_ms),
            };
            let sum = current + delta;
            if !sum.is_finite() {
                return Err(Reply::err("increment would produce NaN or Infinity"));
            }
            let text = format_f64(sum).into_bytes();
            ov.put(key, text.clone(), expires_at_ms);
            Reply::Bulk(text)
        }
        "append" => {
            let (mut value, expires_at_ms) = ov
                .get(key)
                .map_or((Vec::new(), None), |e| (e.value, e.expires_at_ms));
            value.extend_from_slice(&args[2]);
            let len = value.len();
            ov.put(key, value, expires_at_ms);
            count(len)
        }
        "strlen" => count(ov.get(key).map_or(0, |e| e.value.len())),
        "del" | "unlink" => count(args[1..].iter().filter(|k| ov.delete(k)).count()),
        "exists" => count(args[1..].iter().filter(|k| ov.get(k).is_some()).count()),
        "type" => Reply::Simple(if ov.get(key).is_some() {
            "string"
        } else {
            "none"
        }),
        "expire" | "pexpire" | "expireat" | "pexpireat" => expire(ov, name, args)?,
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => ttl(ov, name, key),
        "persist" => match ov.get(key) {
            Some(e) if e.expires_at_ms.is_some() => {
                ov.put(key, e.value, None);
                Reply::Int(1)
            }
            _ => Reply::Int(0),
        },
        _ => return Err(super::args::unknown_command(args)),
    })
}

fn set(ov: &mut Overlay, args: &[Vec<u8>]) -> Result<Reply, Reply> {
    let now = ov.now_ms;
    let opts = parse_set_options(&args[3..], now)?;
    let key = &args[1];
    let old = ov.get(key);
    let apply = match opts.condition {
        Condition::Always => true,
        Condition::IfAbsent => old.is_none(),
        Condition::IfPresent => old.is_some(),
    };
    let expires_at_ms = match opts.expiry {
        NewExpiry::None => None,
        NewExpiry::Keep => old.as_ref().and_then(|e| e.expires_at_ms),
        NewExpiry::At(at) => Some(at),
    };
    if apply {
        ov.put(key, args[2].clone(), expires_at_ms);
    }
    Ok(if opts.get {
        bulk_or_null(old.map(|e| e.value))
    } else if apply {
        Reply::OK
    } else {
        Reply::Null
    })
}

fn getex(ov: &mut Overlay, args: &[Vec<u8>]) -> Result<Reply, Reply> {
    let now = ov.now_ms;
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
            return Err(syntax_error());
        }
        if let Some(unit) = unit {
            let value = args.get(i + 1).ok_or_else(syntax_error)?;
            let value = parse_i64(value).ok_or_else(not_integer)?;
            if value <= 0 {
                return Err(invalid_expire("getex"));
            }
            change = Some(Some(expiry_at_ms(unit, value, now, "getex")?));
            i += 2;
        } else if eq_ignore_case(word, "persist") {
            change = Some(None);
            i += 1;
        } else {
            return Err(syntax_error());
        }
    }
    let key = &args[1];
    let Some(e) = ov.get(key) else {
        return Ok(Reply::Null);
    };
    if let Some(new_expiry) = change {
        if e.expires_at_ms != new_expiry {
            ov.put(key, e.value.clone(), new_expiry);
        }
    }
    Ok(Reply::Bulk(e.value))
}

fn incr_by(ov: &mut Overlay, name: &str, args: &[Vec<u8>]) -> Result<Reply, Reply> {
    let delta = match name {
        "incr" => 1,
        "decr" => -1,
        "incrby" => parse_i64(&args[2]).ok_or_else(not_integer)?,
        _ => parse_i64(&args[2])
            .ok_or_else(not_integer)?
            .checked_neg()
            .ok_or_else(|| Reply::err("decrement would overflow"))?,
    };
    let key = &args[1];
    let (current, expires_at_ms) = match ov.get(key) {
        None => (0, None),
        Some(e) => (
            parse_i64(&e.value).ok_or_else(not_integer)?,
            e.expires_at_ms,
        ),
    };
    let n = current.checked_add(delta).ok_or_else(|| {
        Reply::err(if name.starts_with("decr") {
            "decrement would overflow"
        } else {
            "increment or decrement would overflow"
        })
    })?;
    ov.put(key, n.to_string().into_bytes(), expires_at_ms);
    Ok(Reply::Int(n))
}

fn expire(ov: &mut Overlay, name: &str, args: &[Vec<u8>]) -> Result<Reply, Reply> {
    let now = ov.now_ms;
    let unit = match name {
        "expire" => ExpiryUnit::Seconds,
        "pexpire" => ExpiryUnit::Millis,
        "expireat" => ExpiryUnit::UnixSeconds,
        _ => ExpiryUnit::UnixMillis,
    };
    let amount = parse_i64(&args[2]).ok_or_else(not_integer)?;
    let cond = parse_expire_condition(&args[3..])?;
    let at = if amount <= 0 {
        0
    } else {
        expiry_at_ms(unit, amount, now, name)?
    };
    let key = &args[1];
    let Some(e) = ov.get(key) else {
        return Ok(Reply::Int(0));
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
        return Ok(Reply::Int(0));
    }
    ov.put(key, e.value, Some(at));
    Ok(Reply::Int(1))
}

fn ttl(ov: &Overlay, name: &str, key: &[u8]) -> Reply {
    let Some(entry) = ov.get(key) else {
        return Reply::Int(-2);
    };
    let Some(at) = entry.expires_at_ms else {
        return Reply::Int(-1);
    };
    let remaining_ms = at.saturating_sub(ov.now_ms);
    let value = match name {
        "ttl" => remaining_ms.saturating_add(500) / 1000,
        "pttl" => remaining_ms,
        "expiretime" => at / 1000,
        _ => at,
    };
    Reply::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn a(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn overlay(keys: &[&str]) -> Overlay {
        let entries = keys.iter().map(|k| (k.as_bytes().to_vec(), None)).collect();
        Overlay::new(entries, 1_000_000)
    }

    #[test]
    fn commands_see_earlier_commands_and_writes_collapse_per_key() {
        let mut ov = overlay(&["a", "b"]);
        assert_eq!(eval(&mut ov, "incr", &a(&["incr", "a"])), Reply::Int(1));
        assert_eq!(
            eval(&mut ov, "incrby", &a(&["incrby", "a", "4"])),
            Reply::Int(5)
        );
        assert_eq!(eval(&mut ov, "set", &a(&["set", "b", "x"])), Reply::OK);
        assert!(eval(&mut ov, "incr", &a(&["incr", "b"])).is_error());
        assert_eq!(eval(&mut ov, "del", &a(&["del", "b", "b"])), Reply::Int(1));
        assert_eq!(
            eval(&mut ov, "exists", &a(&["exists", "a", "a", "b"])),
            Reply::Int(2)
        );
        let (ops, modified) = ov.into_writes();
        assert_eq!(modified, a(&["a", "b"]));
        assert_eq!(
            ops,
            vec![
                BatchOp::Put {
                    key: b"a".to_vec(),
                    value: b"5".to_vec(),
                    expires_at_ms: None
                },
                BatchOp::Delete { key: b"b".to_vec() }
            ]
        );
    }

    #[test]
    fn expiry_in_the_past_deletes_and_ttl_counts_down() {
        let mut ov = overlay(&["k"]);
        eval(&mut ov, "set", &a(&["set", "k", "v", "px", "1500"]));
        assert_eq!(eval(&mut ov, "pttl", &a(&["pttl", "k"])), Reply::Int(1500));
        assert_eq!(eval(&mut ov, "ttl", &a(&["ttl", "k"])), Reply::Int(2));
        assert_eq!(
            eval(&mut ov, "expire", &a(&["expire", "k", "-1"])),
            Reply::Int(1)
        );
        assert_eq!(eval(&mut ov, "get", &a(&["get", "k"])), Reply::Null);
        let (ops, _) = ov.into_writes();
        assert_eq!(ops, vec![BatchOp::Delete { key: b"k".to_vec() }]);
    }

    #[test]
    fn keys_follow_the_command_table() {
        let spec = |n: &str| super::super::commands::lookup(n.as_bytes()).unwrap();
        assert_eq!(
            command_keys(spec("set"), &a(&["set", "k", "v", "EX", "1"])),
            a(&["k"])
        );
        assert_eq!(
            command_keys(spec("mset"), &a(&["mset", "a", "1", "b", "2"])),
            a(&["a", "b"])
        );
        assert_eq!(
            command_keys(spec("del"), &a(&["del", "a", "b"])),
            a(&["a", "b"])
        );
        assert!(command_keys(spec("ping"), &a(&["ping"])).is_empty());
    }
}
