//! Issue 10: checkpoints and backups over HTTP.
//!
//! - `POST /api/v1/checkpoints` `{"kind": "full"|"incremental"|"snapshot", "parent"?}` → 201 meta
//! - `GET /api/v1/checkpoints`, `GET|DELETE /api/v1/checkpoints/{id}` (409 while a child uses it)
//! - `POST /api/v1/backups` `{"to": PATH|"s3://bucket/prefix", "kind": "full"|"incremental",
//!   "s3"?: {"endpoint", "access_key", "secret_key", "region"?, "part_size_bytes"?},
//!   "gcs"?: {"endpoint"?, "token"?, "chunk_size_bytes"?} (for `gs://bucket/prefix`),
//!   "azure"?: {"account", "key", "endpoint"?, "block_size_bytes"?} (for `az://container/prefix`)}` → 202
//!   `{"job": N}`: takes a full checkpoint, then uploads it on a std thread (network and
//!   compression never run on a shard) and deletes the checkpoint when done.
//! - `GET /api/v1/backups/jobs`, `GET /api/v1/backups/jobs/{id}`: progress, ETA, outcome.
//!
//! Metrics (registered on first use): `mantis_backup_uploaded_bytes_total`,
//! `mantis_backup_raw_bytes_total`, `mantis_backup_failures_total`,
//! `mantis_backup_last_success_timestamp_seconds`, `mantis_backup_running`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use mantis_backup::{
    AzureConfig, BackupOptions, DestinationConfigs, DestinationSpec, GcsConfig, S3Config,
};
use mantis_engine::checkpoint::{self, CheckpointKind, CheckpointMeta};
use mantis_engine::EngineError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{json_response, ApiError, HttpResponse};
use crate::server::Shared;

pub const ROUTE_CHECKPOINTS: &str = "checkpoints";
pub const ROUTE_BACKUPS: &str = "backups";
/// Finished jobs kept for `GET /api/v1/backups/jobs`; the oldest go first.
const JOBS_KEPT_MAX: usize = 64;
/// Backups running at once: one upload saturates the link and competes for the disk already.
const JOBS_RUNNING_MAX: usize = 1;

const CHECKPOINTS: &str = "/api/v1/checkpoints";
const BACKUPS: &str = "/api/v1/backups";
const JOBS: &str = "/api/v1/backups/jobs";

/// Answers the checkpoint and backup routes; `None` for other paths.
pub async fn route(
    shared: &Shared,
    req: Request<Incoming>,
    path: &str,
) -> Option<(&'static str, Result<HttpResponse, ApiError>)> {
    let method = req.method().clone();
    let id = path
        .strip_prefix(CHECKPOINTS)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|id| !id.is_empty());
    if path == CHECKPOINTS || path == "/api/v1/checkpoints/" {
        let answer = match method {
            Method::GET => list_checkpoints(shared),
            Method::POST => create_checkpoint(shared, req).await,
            _ => Err(ApiError::method_not_allowed("GET, POST")),
        };
        return Some((ROUTE_CHECKPOINTS, answer));
    }
    if let Some(id) = id {
        let answer = match method {
            Method::GET => get_checkpoint(shared, id),
            Method::DELETE => delete_checkpoint(shared, id),
            _ => Err(ApiError::method_not_allowed("GET, DELETE")),
        };
        return Some((ROUTE_CHECKPOINTS, answer));
    }
    if path == BACKUPS {
        let answer = match method {
            Method::POST => start_backup(shared, req).await,
            _ => Err(ApiError::method_not_allowed("POST")),
        };
        return Some((ROUTE_BACKUPS, answer));
    }
    if path == JOBS || path.starts_with("/api/v1/backups/jobs/") {
        let answer = match (method, path.strip_prefix("/api/v1/backups/jobs/")) {
            (Method::GET, None) => Ok(list_jobs()),
            (Method::GET, Some(id)) => get_job(id),
            _ => Err(ApiError::method_not_allowed("GET")),
        };
        return Some((ROUTE_BACKUPS, answer));
    }
    None
}

fn root(shared: &Shared) -> PathBuf {
    checkpoint::checkpoints_dir(&shared.config.data_dir)
}

fn checkpoint_error(e: EngineError) -> ApiError {
    match e {
        EngineError::CheckpointNotFound { .. } => ApiError::not_found(e.to_string()),
        EngineError::CheckpointInUse { .. } => {
            ApiError::new(StatusCode::CONFLICT, "checkpoint_in_use", e.to_string())
        }
        other => ApiError::from(other),
    }
}

fn meta_json(m: &CheckpointMeta) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("total_bytes".into(), json!(m.total_bytes()));
        obj.insert("own_bytes".into(), json!(m.own_bytes()));
    }
    v
}

fn list_checkpoints(shared: &Shared) -> Result<HttpResponse, ApiError> {
    let all = checkpoint::list(&root(shared)).map_err(checkpoint_error)?;
    let items: Vec<Value> = all.iter().map(meta_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "checkpoints": items }),
    ))
}

fn get_checkpoint(shared: &Shared, id: &str) -> Result<HttpResponse, ApiError> {
    let m = checkpoint::get(&root(shared), id).map_err(checkpoint_error)?;
    Ok(json_response(StatusCode::OK, &meta_json(&m)))
}

fn delete_checkpoint(shared: &Shared, id: &str) -> Result<HttpResponse, ApiError> {
    checkpoint::delete(&root(shared), id).map_err(checkpoint_error)?;
    Ok(json_response(StatusCode::OK, &json!({ "deleted": id })))
}

#[derive(Deserialize, Default)]
struct CheckpointRequest {
    kind: Option<String>,
    parent: Option<String>,
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))
}

async fn create_checkpoint(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body = super::kv::read_body(req, shared.config.http_body_bytes_max).await?;
    let r: CheckpointRequest = parse_body(&body)?;
    let kind_name = r.kind.as_deref().unwrap_or("full");
    let kind = CheckpointKind::parse(kind_name).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_kind",
            format!("kind {kind_name}: one of full, incremental, snapshot"),
        )
    })?;
    let m = shared
        .engine
        .checkpoint(&root(shared), kind, r.parent.as_deref())
        .await
        .map_err(checkpoint_error)?;
    Ok(json_response(StatusCode::CREATED, &meta_json(&m)))
}

#[derive(Deserialize, Default)]
struct S3Request {
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: Option<String>,
    part_size_bytes: Option<usize>,
    /// Issue 10: a PEM CA file on the daemon's host for an `https://` endpoint.
    ca_file: Option<std::path::PathBuf>,
}

/// Issue 10: a `gs://` destination's endpoint and token.
#[derive(Deserialize, Default)]
struct GcsRequest {
    endpoint: Option<String>,
    token: Option<String>,
    chunk_size_bytes: Option<usize>,
    /// Issue 10: a PEM CA file on the daemon's host for an `https://` endpoint.
    ca_file: Option<std::path::PathBuf>,
}

/// Issue 10: an `az://` destination's account, key and endpoint.
#[derive(Deserialize, Default)]
struct AzureRequest {
    account: String,
    key: String,
    endpoint: Option<String>,
    block_size_bytes: Option<usize>,
    /// Issue 10: a PEM CA file on the daemon's host for an `https://` endpoint.
    ca_file: Option<std::path::PathBuf>,
}

/// How fast a backup reads checkpoint files unless the request says otherwise: 1 GiB in
/// about 32 s, while the commits on the same disk keep their latency (docs/backup.md,
/// "Backup under load").
pub const BACKUP_READ_RATE_BYTES_PER_SEC_DEFAULT: u64 = 32 << 20;

/// The read limit of a backup asked for with `requested` (None: the default; 0: no limit).
fn read_rate(requested: Option<u64>) -> Option<u64> {
    Some(requested.unwrap_or(BACKUP_READ_RATE_BYTES_PER_SEC_DEFAULT)).filter(|&r| r > 0)
}

#[derive(Deserialize, Default)]
struct BackupRequest {
    to: String,
    kind: Option<String>,
    /// Reads of checkpoint files at most this fast; 0 for no limit.
    read_rate_bytes_per_sec_max: Option<u64>,
    s3: Option<S3Request>,
    gcs: Option<GcsRequest>,
    azure: Option<AzureRequest>,
}

/// Issue 10: every remote destination's settings from the request body.
fn destination_configs(
    s3: Option<S3Config>,
    gcs: Option<GcsRequest>,
    azure: Option<AzureRequest>,
) -> DestinationConfigs {
    let gcs = gcs.map(|g| {
        let endpoint = g
            .endpoint
            .unwrap_or_else(|| "https://storage.googleapis.com".into());
        let mut cfg = GcsConfig::new(&endpoint, g.token);
        if let Some(chunk) = g.chunk_size_bytes {
            cfg.chunk_size_bytes = chunk;
        }
        cfg.ca_file = g.ca_file;
        cfg
    });
    let azure = azure.map(|a| {
        let mut cfg = AzureConfig::new(&a.account, &a.key);
        if let Some(endpoint) = a.endpoint {
            cfg.endpoint = endpoint;
        }
        if let Some(block) = a.block_size_bytes {
            cfg.block_size_bytes = block;
        }
        cfg.ca_file = a.ca_file;
        cfg
    });
    DestinationConfigs { s3, gcs, azure }
}

/// One backup job as `GET /api/v1/backups/jobs/{id}` shows it.
#[derive(Clone, Default)]
struct Job {
    id: u64,
    destination: String,
    kind: String,
    state: &'static str,
    checkpoint: Option<String>,
    backup: Option<String>,
    progress: Option<mantis_backup::Progress>,
    uploaded_bytes: u64,
    error: Option<String>,
    started_at_ms: u64,
    finished_at_ms: Option<u64>,
}

impl Job {
    fn json(&self) -> Value {
        let p = self.progress.clone();
        json!({
            "id": self.id,
            "destination": self.destination,
            "kind": self.kind,
            "state": self.state,
            "checkpoint": self.checkpoint,
            "backup": self.backup,
            "bytes_done": p.as_ref().map_or(0, |p| p.bytes_done),
            "bytes_total": p.as_ref().map_or(0, |p| p.bytes_total),
            "files_done": p.as_ref().map_or(0, |p| p.files_done),
            "files_total": p.as_ref().map_or(0, |p| p.files_total),
            "eta_secs": p.as_ref().and_then(|p| p.eta).map(|d| d.as_secs_f64()),
            "uploaded_bytes": self.uploaded_bytes,
            "error": self.error,
            "started_at_ms": self.started_at_ms,
            "finished_at_ms": self.finished_at_ms,
        })
    }
}

#[derive(Default)]
struct Jobs {
    next_id: u64,
    jobs: BTreeMap<u64, Job>,
}

fn jobs() -> &'static Mutex<Jobs> {
    static JOBS_TABLE: OnceLock<Mutex<Jobs>> = OnceLock::new();
    JOBS_TABLE.get_or_init(Mutex::default)
}

/// Runs `f` on the job table. A panic while holding the lock cannot leave a torn entry (each
/// update replaces fields whole), so a poisoned lock is taken over.
fn with_jobs<R>(f: impl FnOnce(&mut Jobs) -> R) -> R {
    let mut guard = jobs().lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

fn update_job(id: u64, f: impl FnOnce(&mut Job)) {
    with_jobs(|t| {
        if let Some(j) = t.jobs.get_mut(&id) {
            f(j);
        }
    });
}

fn list_jobs() -> HttpResponse {
    let items: Vec<Value> = with_jobs(|t| t.jobs.values().map(Job::json).collect());
    json_response(StatusCode::OK, &json!({ "jobs": items }))
}

fn get_job(id: &str) -> Result<HttpResponse, ApiError> {
    let n: u64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no backup job {id}")))?;
    let job = with_jobs(|t| t.jobs.get(&n).cloned())
        .ok_or_else(|| ApiError::not_found(format!("no backup job {id}")))?;
    Ok(json_response(StatusCode::OK, &job.json()))
}

/// Claims a job slot, or says why not.
fn register_job(destination: &str, kind: &str) -> Result<u64, ApiError> {
    with_jobs(|t| {
        let running = t.jobs.values().filter(|j| j.state == "running").count();
        if running >= JOBS_RUNNING_MAX {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "backup_running",
                "a backup is already running; wait for it (GET /api/v1/backups/jobs)",
            ));
        }
        t.next_id += 1;
        let id = t.next_id;
        t.jobs.insert(
            id,
            Job {
                id,
                destination: destination.to_string(),
                kind: kind.to_string(),
                state: "running",
                started_at_ms: mantis_engine::now_ms(),
                ..Job::default()
            },
        );
        while t.jobs.len() > JOBS_KEPT_MAX {
            let oldest_done = t.jobs.values().find(|j| j.state != "running").map(|j| j.id);
            match oldest_done {
                Some(old) => t.jobs.remove(&old),
                None => break,
            };
        }
        Ok(id)
    })
}

async fn start_backup(shared: &Shared, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let body = super::kv::read_body(req, shared.config.http_body_bytes_max).await?;
    let r: BackupRequest = parse_body(&body)?;
    let spec = DestinationSpec::parse(&r.to)
        .map_err(|e| ApiError::bad_request("invalid_destination", e.to_string()))?;
    let kind = r.kind.clone().unwrap_or_else(|| "full".into());
    if kind != "full" && kind != "incremental" {
        return Err(ApiError::bad_request(
            "invalid_kind",
            format!("kind {kind}: one of full, incremental"),
        ));
    }
    let s3 = r.s3.map(|s| {
        let mut cfg = S3Config::new(&s.endpoint, &s.access_key, &s.secret_key);
        if let Some(region) = s.region {
            cfg.region = region;
        }
        if let Some(part) = s.part_size_bytes {
            cfg.part_size_bytes = part;
        }
        cfg.ca_file = s.ca_file;
        cfg
    });
    let configs = destination_configs(s3, r.gcs, r.azure);
    // Opened here so a bad endpoint or a missing credential is a 400, not a failed job.
    let dest = mantis_backup::open_destination_with(&spec, &configs)
        .map_err(|e| ApiError::bad_request("invalid_destination", e.to_string()))?;
    let job = register_job(&dest.describe(), &kind)?;
    let root = root(shared);
    let cp = match shared
        .engine
        .checkpoint(&root, CheckpointKind::Full, None)
        .await
    {
        Ok(cp) => cp,
        Err(e) => {
            finish_job(job, Err(e.to_string()), 0);
            return Err(checkpoint_error(e));
        }
    };
    update_job(job, |j| j.checkpoint = Some(cp.id.clone()));
    let opts = BackupOptions {
        incremental: kind == "incremental",
        read_rate_bytes_per_sec_max: read_rate(r.read_rate_bytes_per_sec_max),
        ..BackupOptions::default()
    };
    let spawned = std::thread::Builder::new()
        .name(format!("backup-{job}"))
        .spawn(move || upload(job, dest, root, cp, opts));
    if let Err(e) = spawned {
        finish_job(job, Err(format!("spawn upload thread: {e}")), 0);
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("spawn upload thread: {e}"),
        ));
    }
    let view = with_jobs(|t| t.jobs.get(&job).map(Job::json)).unwrap_or(Value::Null);
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "job": job, "status": view }),
    ))
}

/// The upload thread: the checkpoint goes up, then is deleted (the backup holds it now).
fn upload(
    job: u64,
    dest: Box<dyn mantis_backup::Destination>,
    root: PathBuf,
    cp: CheckpointMeta,
    opts: BackupOptions,
) {
    crate::background::lower_this_thread("backup upload", crate::background::BACKUP_UPLOAD_NICE);
    if let Some(m) = metrics() {
        m.running.set(1);
    }
    let result = mantis_backup::create_backup(dest.as_ref(), &root, &cp, &opts, &mut |p| {
        let p = p.clone();
        update_job(job, |j| j.progress = Some(p));
    });
    if let Err(e) = checkpoint::delete(&root, &cp.id) {
        tracing::warn!(checkpoint = %cp.id, error = %e, "could not delete the backup's checkpoint");
    }
    let bm = metrics();
    if let Some(bm) = bm {
        bm.running.set(0);
    }
    match result {
        Ok(m) => {
            let uploaded = m.uploaded_bytes();
            if let Some(bm) = bm {
                bm.uploaded.inc_by(uploaded);
                bm.raw.inc_by(m.raw_bytes());
                bm.last_success.set(mantis_engine::now_ms() as f64 / 1000.0);
            }
            update_job(job, |j| j.backup = Some(m.id.clone()));
            finish_job(job, Ok(()), uploaded);
        }
        Err(e) => {
            tracing::error!(job, error = %e, "backup failed");
            if let Some(bm) = bm {
                bm.failures.inc();
            }
            finish_job(job, Err(e.to_string()), 0);
        }
    }
}

fn finish_job(job: u64, outcome: Result<(), String>, uploaded_bytes: u64) {
    update_job(job, |j| {
        j.finished_at_ms = Some(mantis_engine::now_ms());
        j.uploaded_bytes = uploaded_bytes;
        match outcome {
            Ok(()) => j.state = "succeeded",
            Err(e) => {
                j.state = "failed";
                j.error = Some(e);
            }
        }
    });
}

struct BackupMetrics {
    uploaded: prometheus::IntCounter,
    raw: prometheus::IntCounter,
    failures: prometheus::IntCounter,
    last_success: prometheus::Gauge,
    running: prometheus::IntGauge,
}

impl BackupMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        use prometheus::{Gauge, IntCounter, IntGauge};
        Ok(BackupMetrics {
            uploaded: IntCounter::new(
                "backup_uploaded_bytes_total",
                "Bytes of backup objects uploaded (compressed)",
            )?,
            raw: IntCounter::new(
                "backup_raw_bytes_total",
                "Bytes of data files covered by completed backups",
            )?,
            failures: IntCounter::new("backup_failures_total", "Backups that failed")?,
            last_success: Gauge::new(
                "backup_last_success_timestamp_seconds",
                "Unix time of the last successful backup",
            )?,
            running: IntGauge::new("backup_running", "1 while a backup uploads")?,
        })
    }
}

/// The backup metrics; None only if their (constant) definitions were invalid.
fn metrics() -> Option<&'static BackupMetrics> {
    static BACKUP_METRICS: OnceLock<Option<BackupMetrics>> = OnceLock::new();
    BACKUP_METRICS
        .get_or_init(|| {
            BackupMetrics::new()
                .map_err(|e| tracing::error!(error = %e, "backup metrics"))
                .ok()
        })
        .as_ref()
}

/// Registers the backup metrics with the daemon's registry (once; later calls are no-ops).
pub fn register_metrics(registry: &prometheus::Registry) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        let Some(m) = metrics() else { return };
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(m.uploaded.clone()),
            Box::new(m.raw.clone()),
            Box::new(m.failures.clone()),
            Box::new(m.last_success.clone()),
            Box::new(m.running.clone()),
        ];
        for c in collectors {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "backup metric not registered");
            }
        }
    });
}

/// Issue 10 (scheduling): starts a backup job for the scheduler, through the same job table
/// and upload thread as `POST /api/v1/backups`; the error says why no job started.
pub async fn start_job(
    shared: &Shared,
    dest: Box<dyn mantis_backup::Destination>,
    kind: &str,
    read_rate_bytes_per_sec_max: Option<u64>,
) -> Result<u64, String> {
    let job = register_job(&dest.describe(), kind).map_err(|e| e.message)?;
    let root = root(shared);
    let cp = match shared
        .engine
        .checkpoint(&root, CheckpointKind::Full, None)
        .await
    {
        Ok(cp) => cp,
        Err(e) => {
            finish_job(job, Err(e.to_string()), 0);
            return Err(format!("checkpoint: {e}"));
        }
    };
    update_job(job, |j| j.checkpoint = Some(cp.id.clone()));
    let opts = BackupOptions {
        incremental: kind == "incremental",
        read_rate_bytes_per_sec_max: read_rate(read_rate_bytes_per_sec_max),
        ..BackupOptions::default()
    };
    let spawned = std::thread::Builder::new()
        .name(format!("backup-{job}"))
        .spawn(move || upload(job, dest, root, cp, opts));
    if let Err(e) = spawned {
        finish_job(job, Err(format!("spawn upload thread: {e}")), 0);
        return Err(format!("spawn upload thread: {e}"));
    }
    Ok(job)
}

/// Issue 10 (scheduling): None while `job` runs; then the backup id, or the error.
pub fn job_outcome(job: u64) -> Option<Result<String, String>> {
    with_jobs(|t| {
        let Some(j) = t.jobs.get(&job) else {
            return Some(Err(format!("backup job {job} vanished from the job table")));
        };
        match j.state {
            "running" => None,
            "succeeded" => Some(Ok(j.backup.clone().unwrap_or_default())),
            _ => Some(Err(j
                .error
                .clone()
                .unwrap_or_else(|| "unknown error".into()))),
        }
    })
}
