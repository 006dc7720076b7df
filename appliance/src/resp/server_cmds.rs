//! Connection and server commands: PING, ECHO, QUIT, AUTH, HELLO, SELECT, INFO, CONFIG GET,
//! CLIENT, COMMAND, TIME, DBSIZE. Enough of them for redis-cli, redis-benchmark and the common
//! client libraries to connect and work unchanged.

use super::args::{engine_error, eq_ignore_case, parse_i64, printable, syntax_error};
use super::commands::COMMANDS;
use super::glob::glob_match;
use super::reply::{Protocol, Reply};
use super::session::Session;
use crate::server::Shared;

/// The Redis version we answer with: clients gate features on it, and we implement the 7.0
/// forms of the commands we serve.
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";

pub async fn run(
    shared: &Shared,
    session: &mut Session,
    name: &'static str,
    args: Vec<Vec<u8>>,
) -> Reply {
    match name {
        "ping" => match args.len() {
            1 => Reply::Simple("PONG"),
            2 => Reply::Bulk(args[1].clone()),
            _ => super::args::wrong_arity("ping"),
        },
        "echo" => Reply::Bulk(args[1].clone()),
        "quit" => {
            session.closing = true;
            Reply::OK
        }
        "auth" => auth(shared, session, &args[1..]),
        "hello" => hello(shared, session, &args[1..]),
        "select" => match parse_i64(&args[1]) {
            Some(0) => Reply::OK,
            Some(_) => Reply::err("DB index is out of range"),
            None => super::args::not_integer(),
        },
        "info" => info(shared, &args[1..]).await,
        "config" => config(shared, &args[1..]),
        "client" => client(session, &args[1..]),
        "command" => command(&args[1..]),
        "time" => time(),
        "dbsize" => match shared.engine.count_keys().await {
            Ok(n) => Reply::Int(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(e) => engine_error("dbsize", &e),
        },
        _ => super::args::unknown_command(&args),
    }
}

/// Compares without an early exit, so response timing does not reveal a prefix of the password.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_credentials(shared: &Shared, user: Option<&[u8]>, password: &[u8]) -> Result<(), Reply> {
    let Some(expected) = shared.config.password.as_deref() else {
        return Err(Reply::err(
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ));
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    if user_ok && constant_time_eq(password, expected.as_bytes()) {
        Ok(())
    } else {
        Err(Reply::Error(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        ))
    }
}

fn auth(shared: &Shared, session: &mut Session, args: &[Vec<u8>]) -> Reply {
    let result = match args {
        [password] => check_credentials(shared, None, password),
        [user, password] => check_credentials(shared, Some(user), password),
        _ => return syntax_error(),
    };
    match result {
        Ok(()) => {
            session.authenticated = true;
            Reply::OK
        }
        Err(reply) => {
            tracing::warn!(client = session.client_id, "authentication failed");
            reply
        }
    }
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
fn hello(shared: &Shared, session: &mut Session, args: &[Vec<u8>]) -> Reply {
    let mut protocol = session.protocol;
    let mut rest = args;
    if let Some((version, tail)) = args.split_first() {
        protocol = match parse_i64(version) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
            None => return Reply::err("Protocol version is not an integer or out of range"),
        };
        rest = tail;
    }
    let mut name = None;
    let mut i = 0;
    while i < rest.len() {
        if eq_ignore_case(&rest[i], "auth") && i + 2 < rest.len() {
            if let Err(reply) = check_credentials(shared, Some(&rest[i + 1]), &rest[i + 2]) {
                return reply;
            }
            session.authenticated = true;
            i += 3;
        } else if eq_ignore_case(&rest[i], "setname") && i + 1 < rest.len() {
            if let Err(reply) = validate_client_name(&rest[i + 1]) {
                return reply;
            }
            name = Some(rest[i + 1].clone());
            i += 2;
        } else {
            return Reply::err(format!(
                "Syntax error in HELLO option '{}'",
                printable(&rest[i], 64)
            ));
        }
    }
    if !session.authenticated {
        return Reply::Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        );
    }
    session.protocol = protocol;
    if name.is_some() {
        session.name = name;
    }
    Reply::Map(vec![
        (Reply::bulk_str("server"), Reply::bulk_str("redis")),
        (
            Reply::bulk_str("version"),
            Reply::bulk_str(REDIS_COMPAT_VERSION),
        ),
        (Reply::bulk_str("proto"), Reply::Int(protocol.version())),
        (
            Reply::bulk_str("id"),
            Reply::Int(i64::try_from(session.client_id).unwrap_or(i64::MAX)),
        ),
        (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
        (Reply::bulk_str("role"), Reply::bulk_str("master")),
        (Reply::bulk_str("modules"), Reply::Array(vec![])),
    ])
}

fn validate_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(Reply::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

fn client(session: &mut Session, args: &[Vec<u8>]) -> Reply {
    let sub = args[0].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"setname", 2) => match validate_client_name(&args[1]) {
            Ok(()) => {
                session.name = (!args[1].is_empty()).then(|| args[1].clone());
                Reply::OK
            }
            Err(reply) => reply,
        },
        (b"getname", 1) => session.name.clone().map_or(Reply::Null, Reply::Bulk),
        (b"id", 1) => Reply::Int(i64::try_from(session.client_id).unwrap_or(i64::MAX)),
        // Client libraries announce themselves (lib-name, lib-ver); we accept and ignore it.
        (b"setinfo", 3) => Reply::OK,
        (b"info", 1) => {
            let name = session
                .name
                .as_deref()
                .map(|n| printable(n, 256))
                .unwrap_or_default();
            Reply::Bulk(
                format!(
                    "id={} name={} db=0 resp={}\n",
                    session.client_id,
                    name,
                    session.protocol.version()
                )
                .into_bytes(),
            )
        }
        (b"setname" | b"getname" | b"id" | b"setinfo" | b"info", _) => Reply::err(format!(
            "wrong number of arguments for 'client|{}' command",
            printable(&sub, 32)
        )),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try CLIENT HELP.",
            printable(&args[0], 64)
        )),
    }
}

/// The parameters CONFIG GET knows, with their values.
fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let c = &shared.config;
    vec![
        // Durability is per write (fdatasync before the reply): the AOF-always equivalent.
        ("appendonly", "yes".into()),
        ("appendfsync", "always".into()),
        ("save", String::new()),
        ("databases", "1".into()),
        ("maxmemory", "0".into()),
        ("maxclients", c.connections_max.to_string()),
        ("port", c.resp_addr.port().to_string()),
        ("bind", c.resp_addr.ip().to_string()),
        (
            "timeout",
            c.idle_timeout.map_or(0, |d| d.as_secs()).to_string(),
        ),
        ("proto-max-bulk-len", c.value_bytes_max.to_string()),
        ("dir", c.data_dir.display().to_string()),
    ]
}

fn config(shared: &Shared, args: &[Vec<u8>]) -> Reply {
    let sub = args[0].to_ascii_lowercase();
    match sub.as_slice() {
        b"get" if args.len() >= 2 => {
            let params = config_params(shared);
            let mut pairs = Vec::new();
            for (name, value) in &params {
                if args[1..]
                    .iter()
                    .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
                {
                    pairs.push((
                        Reply::bulk_str(name),
                        Reply::Bulk(value.clone().into_bytes()),
                    ));
                }
            }
            Reply::Map(pairs)
        }
        b"get" => super::args::wrong_arity("config|get"),
        b"set" | b"resetstat" | b"rewrite" => Reply::err(format!(
            "CONFIG {} is not supported: settings come from the config file, MANTIS_* variables \
             and flags at start",
            printable(&args[0], 32).to_uppercase()
        )),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            printable(&args[0], 64)
        )),
    }
}

fn command_entry(spec: &super::commands::Spec) -> Reply {
    Reply::Array(vec![
        Reply::bulk_str(spec.name),
        Reply::Int(i64::from(spec.arity)),
        Reply::Array(
            spec.flags
                .iter()
                .map(|f| Reply::Status((*f).into()))
                .collect(),
        ),
        Reply::Int(i64::from(spec.first_key)),
        Reply::Int(i64::from(spec.last_key)),
        Reply::Int(i64::from(spec.key_step)),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

fn command(args: &[Vec<u8>]) -> Reply {
    let Some(sub) = args.first().map(|s| s.to_ascii_lowercase()) else {
        return Reply::Array(COMMANDS.iter().map(command_entry).collect());
    };
    match sub.as_slice() {
        b"count" => Reply::Int(i64::try_from(COMMANDS.len()).unwrap_or(i64::MAX)),
        b"info" => Reply::Array(
            args[1..]
                .iter()
                .map(|n| super::commands::lookup(n).map_or(Reply::NullArray, command_entry))
                .collect(),
        ),
        // redis-cli asks for documentation to show hints; having none is allowed.
        b"docs" => Reply::Map(vec![]),
        b"list" => Reply::Array(COMMANDS.iter().map(|s| Reply::bulk_str(s.name)).collect()),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            printable(&args[0], 64)
        )),
    }
}

fn time() -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(now.as_secs().to_string().into_bytes()),
        Reply::Bulk(now.subsec_micros().to_string().into_bytes()),
    ])
}

async fn info(shared: &Shared, args: &[Vec<u8>]) -> Reply {
    let wanted: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_lowercase())
        .collect();
    let all = wanted.is_empty() || wanted.iter().any(|w| w == "all" || w == "everything");
    let want = |section: &str| all || wanted.iter().any(|w| w == section || w == "default");
    let c = &shared.config;
    let mut text = String::new();
    if want("server") {
        text.push_str(&format!(
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nmantisdb_version:{}\r\n\
             redis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{}\r\nshards:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            c.resp_addr.port(),
            shared.uptime().as_secs(),
            shared.engine.shard_count(),
        ));
    }
    if want("clients") {
        text.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            shared.connections_open(),
            c.connections_max
        ));
    }
    if want("persistence") {
        text.push_str(
            "# Persistence\r\nloading:0\r\naof_enabled:1\r\nappendfsync:always\r\n\
             rdb_changes_since_last_save:0\r\n\r\n",
        );
    }
    if want("keyspace") {
        match shared.engine.count_keys().await {
            Ok(n) if n > 0 => text.push_str(&format!(
                "# Keyspace\r\ndb0:keys={n},expires=0,avg_ttl=0\r\n\r\n"
            )),
            Ok(_) => text.push_str("# Keyspace\r\n\r\n"),
            Err(e) => return engine_error("info", &e),
        }
    }
    Reply::Bulk(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn client_names_and_commands() {
        let mut s = Session::new(7, false);
        let args = |w: &[&str]| w.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(client(&mut s, &args(&["SETNAME", "worker-1"])), Reply::OK);
        assert_eq!(
            client(&mut s, &args(&["getname"])),
            Reply::Bulk(b"worker-1".to_vec())
        );
        assert!(client(&mut s, &args(&["setname", "has space"])).is_error());
        assert!(client(&mut s, &args(&["bogus"])).is_error());
        assert_eq!(client(&mut s, &args(&["id"])), Reply::Int(7));
        match command(&args(&["count"])) {
            Reply::Int(n) => assert_eq!(n as usize, COMMANDS.len()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(command(&args(&["docs"])), Reply::Map(_)));
    }
}
