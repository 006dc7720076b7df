//! MULTI / EXEC / DISCARD / WATCH / UNWATCH with Redis's replies, and the routing of plain
//! writes through the transaction machinery (`crate::kvtxn`).
//!
//! EXEC locks every key its commands name plus the watched keys (X, owning shards, one global
//! order), checks the watches under those locks, runs the commands on an overlay of the values
//! read ([`super::txn_eval`]), applies every change with ONE `write_batch`, then releases.
//! Plain single-key writes run on the key's shard and lock only while a transaction is active
//! there; plain multi-key writes (MSET, MSETNX, DEL a b) run as one-command transactions. So
//! no write can land between EXEC's watch check and its write (docs/resp.md, "Transactions").

use mantis_engine::EngineHandle;

use super::args::{eq_ignore_case, wrong_arity};
use super::commands::{lookup, Spec};
use super::reply::Reply;
use super::session::Session;
use super::txn_eval::{command_keys, eval, is_data_command, Overlay};
use super::{keys, server_cmds, strings};
use crate::kvtxn::lockset::{lock_and_read, WatchCheck};
use crate::kvtxn::{plain, shard_state, TxnError};
use crate::server::{now_ms, Shared};

/// A connection's open transaction.
#[derive(Debug, Default)]
pub struct MultiState {
    pub queued: Vec<Vec<Vec<u8>>>,
    /// A command was refused while queuing: EXEC answers EXECABORT.
    pub aborted: bool,
}

/// Commands that act at once even inside MULTI.
pub fn runs_inside_multi(name: &str) -> bool {
    matches!(name, "multi" | "exec" | "discard" | "watch" | "quit")
}

pub fn is_txn_command(name: &str) -> bool {
    matches!(name, "multi" | "exec" | "discard" | "watch" | "unwatch")
}

/// Marks the open transaction (if any) as failed: a command was refused while queuing.
pub fn flag_abort(session: &mut Session) {
    if let Some(m) = session.multi.as_mut() {
        m.aborted = true;
    }
}

/// Queues a checked command of an open transaction.
pub fn queue(shared: &Shared, session: &mut Session, args: Vec<Vec<u8>>) -> Reply {
    let max = shared.config.multi_queued_commands_max;
    let Some(m) = session.multi.as_mut() else {
        return Reply::err("internal error: queue without MULTI");
    };
    if m.queued.len() >= max {
        m.aborted = true;
        return Reply::err(format!(
            "transaction queue full: multi_queued_commands_max is {max}"
        ));
    }
    m.queued.push(args);
    assert!(m.queued.len() <= max);
    Reply::Simple("QUEUED")
}

pub async fn run(
    shared: &Shared,
    session: &mut Session,
    name: &'static str,
    args: Vec<Vec<u8>>,
) -> Reply {
    match name {
        "multi" => {
            if session.multi.is_some() {
                return Reply::err("MULTI calls can not be nested");
            }
            session.multi = Some(MultiState::default());
            Reply::OK
        }
        "discard" => {
            if session.multi.take().is_none() {
                return Reply::err("DISCARD without MULTI");
            }
            forget_watches(&shared.engine, session).await;
            Reply::OK
        }
        "exec" => {
            let Some(m) = session.multi.take() else {
                return Reply::err("EXEC without MULTI");
            };
            if m.aborted {
                forget_watches(&shared.engine, session).await;
                return Reply::Error(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                );
            }
            exec(shared, session, m.queued).await
        }
        "watch" => {
            if session.multi.is_some() {
                return Reply::err("WATCH inside MULTI is not allowed");
            }
            watch(&shared.engine, session, &args[1..]).await
        }
        "unwatch" => {
            forget_watches(&shared.engine, session).await;
            Reply::OK
        }
        _ => super::args::unknown_command(&args),
    }
}

async fn watch(engine: &EngineHandle, session: &mut Session, keys: &[Vec<u8>]) -> Reply {
    for key in keys {
        if session.watches.iter().any(|w| w.key == *key) {
            // Redis keeps the first WATCH of a key: a second one does not reset it.
            continue;
        }
        let shard = engine.shard_for(key);
        let k = key.clone();
        let handle = engine.clone();
        let answer = engine
            .run_on(shard, move || async move {
                let Some(version) = shard_state::watch(&k) else {
                    return Err(TxnError::WatchTableFull {
                        shard,
                        keys_max: shard_state::WATCHED_KEYS_MAX,
                    });
                };
                let live = match handle.get_entry(&k).await {
                    Ok(e) => e.is_some_and(|e| strings::live(&e, now_ms())),
                    Err(e) => {
                        shard_state::unwatch(&k);
                        return Err(e.into());
                    }
                };
                Ok(WatchCheck {
                    key: k,
                    version,
                    live_at_watch: live,
                })
            })
            .await;
        match answer.map_err(TxnError::from).and_then(|r| r) {
            Ok(check) => session.watches.push(check),
            Err(e) => return txn_error("watch", &e),
        }
    }
    Reply::OK
}

/// Ends the connection's watches on their shards (EXEC, DISCARD, UNWATCH, disconnect).
pub async fn forget_watches(engine: &EngineHandle, session: &mut Session) {
    let watches = std::mem::take(&mut session.watches);
    let calls = watches.into_iter().map(|w| {
        let shard = engine.shard_for(&w.key);
        engine.run_on(shard, move || async move { shard_state::unwatch(&w.key) })
    });
    // A failed message means the shard is stopping: its watch table goes with it.
    let _ = futures::future::join_all(calls.collect::<Vec<_>>()).await;
}

fn txn_error(command: &str, e: &TxnError) -> Reply {
    match e {
        // Retryable: the client may run the transaction again.
        TxnError::Lock(l) if l.is_retryable() => Reply::Error(format!("TRYAGAIN {l}")),
        TxnError::Engine(e) => super::args::engine_error(command, e),
        _ => Reply::err(e),
    }
}

async fn exec(shared: &Shared, session: &mut Session, queued: Vec<Vec<Vec<u8>>>) -> Reply {
    let watches = session.watches.clone();
    let reply = exec_locked(shared, session, queued, watches).await;
    forget_watches(&shared.engine, session).await;
    reply
}

fn spec_of(args: &[Vec<u8>]) -> Option<&'static Spec> {
    args.first().and_then(|n| lookup(n))
}

async fn exec_locked(
    shared: &Shared,
    session: &mut Session,
    queued: Vec<Vec<Vec<u8>>>,
    watches: Vec<WatchCheck>,
) -> Reply {
    let engine = &shared.engine;
    let mut keys = Vec::new();
    for args in &queued {
        if let Some(spec) = spec_of(args).filter(|s| is_data_command(s.name)) {
            keys.extend(command_keys(spec, args));
        }
    }
    let mut locked = match lock_and_read(engine, keys, watches).await {
        Ok(l) => l,
        Err(e) => return txn_error("exec", &e),
    };
    if locked.watch_failed {
        locked.held.release(Vec::new()).await;
        return Reply::NullArray;
    }
    let mut overlay = Overlay::new(std::mem::take(&mut locked.entries), now_ms());
    let mut replies = Vec::with_capacity(queued.len());
    for args in queued {
        let Some(spec) = spec_of(&args) else {
            replies.push(super::args::unknown_command(&args));
            continue;
        };
        let reply = if is_data_command(spec.name) {
            eval(&mut overlay, spec.name, &args)
        } else {
            run_keyless(shared, session, spec.name, args).await
        };
        replies.push(reply);
    }
    let (ops, modified) = overlay.into_writes();
    if !ops.is_empty() {
        if let Err(e) = engine.write_batch(ops).await {
            locked.held.release(modified).await;
            return super::args::engine_error("exec", &e);
        }
    }
    locked.held.release(modified).await;
    Reply::Array(replies)
}

/// A queued command that touches no key (PING, ECHO, TIME, INFO, ...): runs in its place.
async fn run_keyless(
    shared: &Shared,
    session: &mut Session,
    name: &'static str,
    args: Vec<Vec<u8>>,
) -> Reply {
    match name {
        "unwatch" => Reply::OK, // EXEC unwatches anyway
        "scan" => keys::run(&shared.engine, session, name, args).await,
        "multi" | "exec" | "discard" | "watch" => {
            Reply::err("Command not allowed inside a transaction")
        }
        _ => server_cmds::run(shared, session, name, args).await,
    }
}

/// Whether a plain write's reply means it changed its key (a refused SETNX, a DEL of nothing
/// or an EXPIRE of a missing key change nothing, and do not fail a WATCH, as in Redis).
fn modified(name: &str, set_with_get: bool, reply: &Reply) -> bool {
    match reply {
        Reply::Error(_) => false,
        Reply::Int(0) => !matches!(
            name,
            "setnx"
                | "msetnx"
                | "del"
                | "unlink"
                | "expire"
                | "pexpire"
                | "expireat"
                | "pexpireat"
                | "persist"
        ),
        Reply::Null => !(name == "getdel" || (name == "set" && !set_with_get)),
        _ => true,
    }
}

/// Runs a plain (non-transactional) write command outside MULTI.
pub async fn plain_write(shared: &Shared, spec: &'static Spec, args: Vec<Vec<u8>>) -> Reply {
    let name = spec.name;
    let keys = command_keys(spec, &args);
    let single = keys.first().filter(|k| keys.iter().all(|o| o == *k));
    let Some(key) = single.cloned() else {
        if matches!(name, "mset" | "msetnx") && args.len().is_multiple_of(2) {
            return wrong_arity(name);
        }
        // Several keys: a transaction of one command (atomic and isolated).
        return match exec_locked_plain(shared, args).await {
            Ok(r) => r,
            Err(e) => txn_error(name, &e),
        };
    };
    let set_with_get = args.iter().skip(3).any(|a| eq_ignore_case(a, "get"));
    // A GETEX without options only reads.
    let read_only = name == "getex" && args.len() == 2;
    let engine = shared.engine.clone();
    let reply = plain::guarded(&shared.engine, key, move || async move {
        let reply = if super::commands::is_string_command(name) {
            strings::run(&engine, name, args).await
        } else {
            keys::run_keyed(&engine, name, args).await
        };
        let changed = !read_only && modified(name, set_with_get, &reply);
        (reply, changed)
    })
    .await;
    reply.unwrap_or_else(|e| txn_error(name, &e))
}

async fn exec_locked_plain(shared: &Shared, args: Vec<Vec<u8>>) -> Result<Reply, TxnError> {
    let Some(spec) = spec_of(&args) else {
        return Ok(super::args::unknown_command(&args));
    };
    let keys = command_keys(spec, &args);
    let mut locked = lock_and_read(&shared.engine, keys, Vec::new()).await?;
    let mut overlay = Overlay::new(std::mem::take(&mut locked.entries), now_ms());
    let reply = eval(&mut overlay, spec.name, &args);
    let (ops, modified) = overlay.into_writes();
    let written = if ops.is_empty() {
        Ok(())
    } else {
        shared.engine.write_batch(ops).await
    };
    locked.held.release(modified).await;
    written?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_conditional_writes_do_not_count_as_modifications() {
        assert!(!modified("setnx", false, &Reply::Int(0)));
        assert!(modified("setnx", false, &Reply::Int(1)));
        assert!(!modified("del", false, &Reply::Int(0)));
        assert!(modified("incrby", false, &Reply::Int(0)));
        assert!(!modified("set", false, &Reply::Null));
        assert!(modified("set", true, &Reply::Null));
        assert!(!modified("getdel", false, &Reply::Null));
        assert!(!modified("incr", false, &Reply::err("x")));
    }
}
