//! Test harness: starts the real `mantisd` binary on free loopback ports with a data directory
//! on the ext4 root filesystem, waits for its sd_notify READY=1 (an event, not a sleep), and
//! offers redis-cli, raw RESP and raw HTTP clients against it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod webhook;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mantisd");
/// How long a daemon may take to recover and report READY=1.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts tried before giving up when a port taken between `free_port` and the bind fails one.
pub const START_ATTEMPTS_MAX: usize = 5;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails loudly (never skips) when a tool the tests drive is missing.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed: run `apt-get install -y redis-tools` (and systemd for \
         systemd-analyze); .ci/run installs them"
    );
}

pub struct Options {
    pub shards: usize,
    pub password: Option<String>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// No flags at all: the ports come from MANTIS_* variables, everything else is default,
    /// and the daemon runs in the data directory's parent (so `./data` is the data directory).
    pub bare: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shards: 2,
            password: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            bare: false,
        }
    }
}

/// A running mantisd with its data directory and notify socket.
pub struct Daemon {
    pub child: Option<Child>,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    pub pg: SocketAddr,
    pub data_dir: PathBuf,
    pub password: Option<String>,
    notify: UnixDatagram,
    _notify_dir: tempfile::TempDir,
    _data_tmp: Option<tempfile::TempDir>,
    opts_args: Vec<String>,
    opts_env: Vec<(String, String)>,
    shards: usize,
    bare: bool,
    /// Every datagram received on the notify socket so far.
    pub notifications: Vec<String>,
    log_path: PathBuf,
}

pub fn data_tempdir() -> tempfile::TempDir {
    // Direct I/O needs a real filesystem: /var/tmp is on the ext4 root, /tmp may be tmpfs.
    tempfile::tempdir_in("/var/tmp").unwrap()
}

impl Daemon {
    pub fn start(opts: Options) -> Daemon {
        let data = data_tempdir();
        let dir = data.path().join("data");
        let mut d = Daemon::start_in(&dir, opts);
        d._data_tmp = Some(data);
        d
    }

    /// Starts on an existing (or new) data directory; the caller keeps the directory alive.
    pub fn start_in(data_dir: &Path, opts: Options) -> Daemon {
        let notify_dir = tempfile::tempdir().unwrap();
        let notify_path = notify_dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut d = Daemon {
            child: None,
            resp: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            pg: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: data_dir.to_path_buf(),
            password: opts.password.clone(),
            notify,
            log_path: notify_dir.path().join("mantisd.log"),
            _notify_dir: notify_dir,
            _data_tmp: None,
            opts_args: opts.extra_args.clone(),
            opts_env: opts.env.clone(),
            shards: opts.shards,
            bare: opts.bare,
            notifications: Vec::new(),
        };
        // `free_port` releases each port before mantisd binds it, so another test's daemon or
        // a client's ephemeral port can take it in between (seen in CI: "pg_addr …: address
        // already in use"). Such a start fails before READY; it is retried on fresh ports.
        for attempt in 1..=START_ATTEMPTS_MAX {
            d.spawn(&notify_path);
            match d.poll_notification("READY=1", START_TIMEOUT) {
                Ok(()) => return d,
                Err(exit)
                    if exit.contains("address already in use") && attempt < START_ATTEMPTS_MAX =>
                {
                    d.child = None;
                    d.notifications.clear();
                    d.resp = SocketAddr::from(([127, 0, 0, 1], free_port()));
                    d.http = SocketAddr::from(([127, 0, 0, 1], free_port()));
                    d.pg = SocketAddr::from(([127, 0, 0, 1], free_port()));
                }
                Err(exit) => panic!("{exit}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(&mut self, notify_path: &Path) {
        let log = std::fs::File::create(&self.log_path).unwrap();
        let mut cmd = Command::new(BIN);
        if self.bare {
            let cwd = self.data_dir.parent().unwrap();
            cmd.current_dir(cwd)
                .env("MANTIS_RESP_ADDR", self.resp.to_string())
                .env("MANTIS_HTTP_ADDR", self.http.to_string())
                .env("MANTIS_PG_ADDR", self.pg.to_string());
        } else {
            self.add_flags(&mut cmd);
        }
        cmd.env("NOTIFY_SOCKET", notify_path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(pw) = &self.password {
            cmd.env("MANTIS_PASSWORD", pw);
        }
        for (k, v) in &self.opts_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    fn add_flags(&self, cmd: &mut Command) {
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--resp-addr")
            .arg(self.resp.to_string())
            .arg("--http-addr")
            .arg(self.http.to_string())
            .arg("--pg-addr")
            .arg(self.pg.to_string())
            .arg("--shards")
            .arg(self.shards.to_string())
            .arg("--pin-cpus")
            .arg("false")
            .arg("--memtable-bytes-max")
            .arg((8 << 20).to_string())
            .arg("--wal-segment-bytes")
            .arg((8 << 20).to_string())
            .args(&self.opts_args);
    }

    /// The daemon's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until a notify datagram containing `needle` arrived (or was seen before).
    pub fn wait_for_notification(&mut self, needle: &str, within: Duration) {
        if let Err(exit) = self.poll_notification(needle, within) {
            panic!("{exit}");
        }
    }

    /// As `wait_for_notification`, but an exit of mantisd before `needle` is returned (with
    /// its status and log) rather than a panic.
    fn poll_notification(&mut self, needle: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        loop {
            if self
                .notifications
                .iter()
                .any(|n| n.lines().any(|l| l == needle))
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    return Err(format!(
                        "mantisd exited ({status}) before sending {needle}; log:\n{}",
                        self.log()
                    ));
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {needle} within {within:?}; got {:?}; log:\n{}",
                self.notifications,
                self.log()
            );
            match self.notify.recv(&mut buf) {
                Ok(n) => self
                    .notifications
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                // EINTR: a signal reached this thread (the test process's threads receive
                // those aimed at the process) before a datagram did; CI saw it once. Retry.
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the process to exit, failing after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "mantisd did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait: the graceful path. Returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(60))
    }

    /// Starts again on the same data directory and ports.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(
                status.success(),
                "exit status {status}; log:\n{}",
                self.log()
            );
        }
        self.notifications.clear();
        let notify_path = self._notify_dir.path().join("notify.sock");
        self.spawn(&notify_path);
        self.wait_for_notification("READY=1", START_TIMEOUT);
    }

    /// Runs redis-cli with `args` against this daemon and returns stdout (trailing newline
    /// trimmed). Panics if redis-cli itself fails to run.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args, None);
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    }

    pub fn cli_raw(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.resp.port().to_string());
        if let Some(pw) = &self.password {
            cmd.arg("--no-auth-warning").arg("-a").arg(pw);
        }
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("redis-cli runs");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("redis-cli {args:?} did not finish within {IO_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait_with_output().unwrap()
    }

    pub fn resp_client(&self) -> RespClient {
        RespClient::connect(self.resp)
    }

    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(pw) = &self.password {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                all.push(("Authorization".into(), format!("Bearer {pw}")));
            }
        }
        http_request(self.http, method, path, &all, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw RESP connection for byte-exact tests (pipelining, malformed frames).
pub struct RespClient {
    pub stream: TcpStream,
}

impl RespClient {
    pub fn connect(addr: SocketAddr) -> RespClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RespClient { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Encodes and sends one command.
    pub fn command(&mut self, args: &[&[u8]]) {
        self.send(&encode(args));
    }

    /// Reads until the received bytes equal `expected` in length, and returns them.
    pub fn read_exact_len(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).unwrap();
        buf
    }

    /// Reads one complete RESP reply (any type) and returns its raw bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_value(&mut out);
        out
    }

    fn read_line(&mut self, out: &mut Vec<u8>) -> Vec<u8> {
        let start = out.len();
        let mut byte = [0u8; 1];
        loop {
            self.stream.read_exact(&mut byte).unwrap();
            out.push(byte[0]);
            if out.len() >= 2 && out[out.len() - 2..] == *b"\r\n" && out.len() - start >= 2 {
                return out[start..out.len() - 2].to_vec();
            }
        }
    }

    fn read_value(&mut self, out: &mut Vec<u8>) {
        let line = self.read_line(out);
        let n: i64 = std::str::from_utf8(&line[1..])
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        match line[0] {
            b'$' | b'=' if n >= 0 => {
                let mut data = vec![0u8; n as usize + 2];
                self.stream.read_exact(&mut data).unwrap();
                out.extend_from_slice(&data);
            }
            b'*' | b'~' | b'>' => (0..n.max(0)).for_each(|_| self.read_value(out)),
            b'%' => (0..n.max(0) * 2).for_each(|_| self.read_value(out)),
            _ => {}
        }
    }

    /// Reads until the server closes; returns everything received.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out);
        out
    }

    /// Whether the server closed the connection (a read returns 0 within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf), Ok(0) | Err(_))
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (Connection: close), response read to the end.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a large body: ignore EPIPE.
    let _ = stream.write_all(body);
    read_http_response(&mut stream)
}

pub fn read_http_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_http_response(&raw)
}

pub fn parse_http_response(raw: &[u8]) -> HttpResponse {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Polls `f` until it returns true, failing after `within`. For conditions that have no event
/// to wait on (a TTL running out).
pub fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
