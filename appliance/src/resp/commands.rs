//! The RESP command table (names, arity, flags as COMMAND reports them) and dispatch: arity and
//! authentication checks, then the command's implementation, with metrics around it.

use std::time::Instant;

use super::args::{unknown_command, wrong_arity};
use super::reply::Reply;
use super::session::Session;
use super::{keys, server_cmds, strings};
use crate::server::Shared;

/// One command as COMMAND describes it. `arity` follows Redis: n = exactly n arguments
/// (including the name), -n = at least n.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
}

const fn spec(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        key_step: keys.2,
    }
}

const W: &[&str] = &["write"];
const WD: &[&str] = &["write", "denyoom"];
const R: &[&str] = &["readonly", "fast"];
const ADMIN: &[&str] = &["loading", "stale", "fast"];
const NOAUTH_OK: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth"];
const TXN: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const PAIRS: (i32, i32, i32) = (1, -1, 2);

/// Every command served, in the order COMMAND lists them.
pub const COMMANDS: &[Spec] = &[
    spec("ping", -1, ADMIN, NONE),
    spec("echo", 2, ADMIN, NONE),
    spec("quit", -1, NOAUTH_OK, NONE),
    spec("auth", -2, NOAUTH_OK, NONE),
    spec("hello", -1, NOAUTH_OK, NONE),
    spec("select", 2, ADMIN, NONE),
    spec("get", 2, R, ONE),
    spec("set", -3, WD, ONE),
    spec("setnx", 3, WD, ONE),
    spec("setex", 4, WD, ONE),
    spec("psetex", 4, WD, ONE),
    spec("getdel", 2, W, ONE),
    spec("getex", -2, W, ONE),
    spec("getset", 3, WD, ONE),
    spec("mget", -2, R, ALL),
    spec("mset", -3, WD, PAIRS),
    spec("msetnx", -3, WD, PAIRS),
    spec("del", -2, W, ALL),
    spec("unlink", -2, W, ALL),
    spec("exists", -2, R, ALL),
    spec("type", 2, R, ONE),
    spec("expire", -3, W, ONE),
    spec("pexpire", -3, W, ONE),
    spec("expireat", -3, W, ONE),
    spec("pexpireat", -3, W, ONE),
    spec("ttl", 2, R, ONE),
    spec("pttl", 2, R, ONE),
    spec("expiretime", 2, R, ONE),
    spec("pexpiretime", 2, R, ONE),
    spec("persist", 2, W, ONE),
    spec("incr", 2, WD, ONE),
    spec("decr", 2, WD, ONE),
    spec("incrby", 3, WD, ONE),
    spec("decrby", 3, WD, ONE),
    spec("incrbyfloat", 3, WD, ONE),
    spec("append", 3, WD, ONE),
    spec("strlen", 2, R, ONE),
    spec("scan", -2, &["readonly"], NONE),
    spec("dbsize", 1, R, NONE),
    spec("info", -1, &["loading", "stale"], NONE),
    spec("config", -2, &["admin", "loading", "stale"], NONE),
    spec("client", -2, &["loading", "stale"], NONE),
    spec("command", -1, &["loading", "stale"], NONE),
    spec("time", 1, ADMIN, NONE),
    spec("multi", 1, TXN, NONE),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        NONE,
    ),
    spec("discard", 1, TXN, NONE),
    spec("watch", -2, TXN, ALL),
    spec("unwatch", 1, TXN, NONE),
];

/// The command for `name`, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| name.eq_ignore_ascii_case(s.name.as_bytes()))
}

fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Commands a connection may send before it authenticated.
fn allowed_before_auth(name: &str) -> bool {
    matches!(name, "auth" | "hello" | "quit")
}

/// Runs one command. `args` is non-empty.
pub async fn execute(shared: &Shared, session: &mut Session, args: Vec<Vec<u8>>) -> Reply {
    assert!(!args.is_empty(), "empty commands are skipped by the caller");
    let started = Instant::now();
    let Some(spec) = lookup(&args[0]) else {
        super::multi::flag_abort(session);
        let reply = unknown_command(&args);
        if let Some(m) = shared.metrics.command_static("resp", "other") {
            m.observe(started.elapsed(), true);
        }
        return reply;
    };
    let audit = crate::monitoring::resp_audit_target(spec.name, spec.flags, &args);
    // Redis checks the arity before authentication; so do we, for identical replies.
    let reply = if !arity_ok(spec.arity, args.len()) {
        super::multi::flag_abort(session);
        wrong_arity(spec.name)
    } else if !session.authenticated && !allowed_before_auth(spec.name) {
        super::multi::flag_abort(session);
        Reply::Error("NOAUTH Authentication required.".into())
    } else if session.multi.is_some() && !super::multi::runs_inside_multi(spec.name) {
        super::multi::queue(shared, session, args)
    } else {
        run(shared, session, spec.name, args).await
    };
    crate::monitoring::audit_resp(
        session.client_id,
        session.authenticated,
        spec.name,
        audit,
        &reply,
    );
    // One clock read for the metrics and the slow log.
    let elapsed = started.elapsed();
    if let Some(m) = shared.metrics.command_static("resp", spec.name) {
        m.observe(elapsed, reply.is_error());
    }
    crate::monitoring::note_slow(
        "resp",
        spec.name,
        format_args!("client:{}", session.client_id),
        "",
        elapsed,
    );
    reply
}

/// A command that touches exactly one key and needs nothing of its connection but whether it
/// authenticated: GET, SET, INCR, EXPIRE, `DEL k`, … A pipeline may run a run of these side
/// by side (see `conn.rs`).
pub struct Keyed {
    pub spec: &'static Spec,
    /// False for read-only commands.
    pub writes: bool,
}

impl Keyed {
    /// `Some` when `args` (a whole command, name first) is a well-formed single-key command.
    pub fn classify(args: &[Vec<u8>]) -> Option<Keyed> {
        let spec = lookup(args.first()?)?;
        if !arity_ok(spec.arity, args.len())
            || spec.first_key != 1
            || super::multi::is_txn_command(spec.name)
        {
            return None;
        }
        let one_key =
            spec.last_key == 1 || (spec.last_key == -1 && spec.key_step == 1 && args.len() == 2);
        if !one_key {
            return None;
        }
        let writes = !spec.flags.contains(&"readonly");
        Some(Keyed { spec, writes })
    }
}

/// What a command run side by side knows of its connection (a copy: the run's commands
/// cannot change it).
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub id: u64,
    pub authenticated: bool,
}

/// Runs a command [`Keyed::classify`] accepted, with the same replies and metrics as
/// [`execute`].
pub async fn execute_keyed(
    shared: &Shared,
    client: Client,
    keyed: &Keyed,
    args: Vec<Vec<u8>>,
) -> Reply {
    let authenticated = client.authenticated;
    let started = Instant::now();
    let name = keyed.spec.name;
    // Audited exactly as `execute` audits: a write run side by side is still a write.
    let audit = crate::monitoring::resp_audit_target(name, keyed.spec.flags, &args);
    let reply = if !authenticated {
        Reply::Error("NOAUTH Authentication required.".into())
    } else if keyed.writes {
        super::multi::plain_write(shared, keyed.spec, args).await
    } else if is_string_command(name) {
        strings::run(&shared.engine, name, args).await
    } else {
        keys::run_keyed(&shared.engine, name, args).await
    };
    crate::monitoring::audit_resp(client.id, authenticated, name, audit, &reply);
    // One clock read for the metrics and the slow log.
    let elapsed = started.elapsed();
    if let Some(m) = shared.metrics.command_static("resp", name) {
        m.observe(elapsed, reply.is_error());
    }
    crate::monitoring::note_slow(
        "resp",
        name,
        format_args!("client:{}", client.id),
        "",
        elapsed,
    );
    reply
}

pub fn is_string_command(name: &str) -> bool {
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
    )
}

async fn run(
    shared: &Shared,
    session: &mut Session,
    name: &'static str,
    args: Vec<Vec<u8>>,
) -> Reply {
    let engine = &shared.engine;
    if let Some(spec) = lookup(name.as_bytes())
        .filter(|s| s.flags.contains(&"write") && super::txn_eval::is_data_command(s.name))
    {
        return super::multi::plain_write(shared, spec, args).await;
    }
    match name {
        "multi" | "exec" | "discard" | "watch" | "unwatch" => {
            super::multi::run(shared, session, name, args).await
        }
        "ping" | "echo" | "quit" | "auth" | "hello" | "select" | "info" | "config" | "client"
        | "command" | "time" | "dbsize" => server_cmds::run(shared, session, name, args).await,
        _ if is_string_command(name) => strings::run(engine, name, args).await,
        "del" | "unlink" | "exists" | "type" | "expire" | "pexpire" | "expireat" | "pexpireat"
        | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "persist" | "scan" => {
            keys::run(engine, session, name, args).await
        }
        _ => unknown_command(&args),
    }
}

/// `(protocol, command)` pairs to pre-register in the metrics registry.
pub fn metric_names() -> Vec<(&'static str, &'static str)> {
    COMMANDS.iter().map(|s| ("resp", s.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_arity_follows_redis() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuch").is_none());
        assert!(arity_ok(2, 2) && !arity_ok(2, 3));
        assert!(arity_ok(-3, 3) && arity_ok(-3, 5) && !arity_ok(-3, 2));
    }

    fn args(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn keyed_accepts_single_key_data_commands_only() {
        let k = |w: &[&str]| Keyed::classify(&args(w)).map(|k| (k.spec.name, k.writes));
        assert_eq!(k(&["GET", "a"]), Some(("get", false)));
        assert_eq!(k(&["set", "a", "1", "EX", "5"]), Some(("set", true)));
        assert_eq!(k(&["incr", "a"]), Some(("incr", true)));
        assert_eq!(k(&["del", "a"]), Some(("del", true)));
        assert_eq!(k(&["exists", "a"]), Some(("exists", false)));
        // Several keys, no key, session state, wrong arity: run one at a time.
        assert_eq!(k(&["del", "a", "b"]), None);
        assert_eq!(k(&["mset", "a", "1"]), None);
        assert_eq!(k(&["scan", "0"]), None);
        assert_eq!(k(&["auth", "pw"]), None);
        assert_eq!(k(&["select", "0"]), None);
        assert_eq!(k(&["get"]), None);
        assert_eq!(k(&["get", "a", "b"]), None);
        assert_eq!(k(&["nosuch", "a"]), None);
        assert_eq!(k(&["watch", "a"]), None);
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        for (i, s) in COMMANDS.iter().enumerate() {
            assert_eq!(s.name, s.name.to_lowercase());
            assert!(
                COMMANDS[i + 1..].iter().all(|o| o.name != s.name),
                "{}",
                s.name
            );
        }
    }
}
