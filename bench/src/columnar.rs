//! `mantis-bench columnar` (issue 11): loads the same N generated rows into a columnar and a
//! row table through the bulk row API (the engine side of COPY), merges the columnar delta into chunks, then times a GROUP BY
//! aggregate and a filtered aggregate on both (best of `--rounds`, alternating tables), and,
//! when `python3 -c 'import duckdb'` works, the same queries in DuckDB on the same rows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use mantis_engine::{Engine, EngineConfig};
use mantis_sql::{Session, SqlEngine, StatementResult, Value};

use crate::error::BenchError;

#[derive(Args, Debug, Clone)]
pub struct ColumnarArgs {
    /// Directory for the engine data; must be on a real filesystem (not tmpfs).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Rows of the row table (default: `--rows`); its queries are slow, so big runs may
    /// give it fewer.
    #[arg(long)]
    pub row_rows: Option<usize>,
    /// Skip DuckDB even when its Python package is installed.
    #[arg(long)]
    pub no_duckdb: bool,
}

/// Rows per bulk call into the row table (each call is one atomic batch).
const ROW_COPY_ROWS: usize = 250_000;
/// Rows per bulk call into the columnar table: rows spread over the shards by hash and each
/// shard's share is cut into chunks, so 6.9 chunks per shard gives six full chunks and one
/// 90 % full (a little under full so that a share rarely spills into a tiny extra chunk);
/// at most `COPY_ROWS_MAX`.
fn columnar_copy_rows(shards: usize) -> usize {
    (CHUNK_ROWS * shards.max(1) * 69 / 10).min(mantis_sql::copy::COPY_ROWS_MAX)
}

/// `mantis_columnar::CHUNK_ROWS_MAX`.
const CHUNK_ROWS: usize = 65_536;
const CATS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];
const QUERIES: [(&str, &str); 2] = [
    (
        "group_by",
        "SELECT g, count(*), sum(v), avg(f) FROM T GROUP BY g",
    ),
    (
        "filtered",
        "SELECT count(*), sum(v), max(f) FROM T WHERE v < 100 AND cat = 'delta'",
    ),
];

fn row(i: usize) -> (usize, usize, &'static str, u64, f64) {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (
        i,
        (h % 100) as usize,
        CATS[((h >> 20) % 8) as usize],
        (h >> 32) % 10_000,
        ((h >> 40) % 1000) as f64 / 4.0,
    )
}

fn sql_err(phase: &'static str) -> impl Fn(mantis_sql::SqlError) -> BenchError {
    move |e| BenchError::Engine {
        phase,
        cause: e.to_string(),
    }
}

fn exec(s: &mut Session, q: &str, phase: &'static str) -> Result<Vec<StatementResult>, BenchError> {
    futures::executor::block_on(s.execute(q)).map_err(sql_err(phase))
}

/// Loads `rows` generated rows into `table` through the bulk row API (`Session::copy_rows`),
/// `per` rows per call; the time includes generating the values.
fn load(s: &mut Session, table: &str, rows: usize, per: usize) -> Result<Duration, BenchError> {
    let t = Instant::now();
    let mut i = 0;
    while i < rows {
        let n = per.min(rows - i);
        let batch: Vec<Vec<Value>> = (i..i + n)
            .map(|j| {
                let (id, g, cat, v, f) = row(j);
                vec![
                    Value::Int64(id as i64),
                    Value::Int32(g as i32),
                    Value::Text(cat.to_string()),
                    Value::Int64(v as i64),
                    Value::Float64(f),
                ]
            })
            .collect();
        futures::executor::block_on(s.copy_rows(table, &[], batch)).map_err(sql_err("load"))?;
        i += n;
    }
    Ok(t.elapsed())
}

fn best(s: &mut Session, q: &str, rounds: usize) -> Result<(Duration, String), BenchError> {
    let mut best = Duration::MAX;
    let mut shape = String::new();
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let r = exec(s, q, "query")?;
        best = best.min(t.elapsed());
        if let Some(StatementResult::Rows { rows, .. }) = r.last() {
            shape = format!("{} rows", rows.len());
        }
    }
    Ok((best, shape))
}

pub fn run(args: &ColumnarArgs) -> Result<(), BenchError> {
    let _ = std::fs::remove_dir_all(&args.dir);
    let engine = Engine::open(EngineConfig {
        data_dir: args.dir.join("mantis"),
        shards: args.shards,
        memtable_bytes_max: 64 << 20,
        block_cache_bytes: 512 << 20,
        ..EngineConfig::default()
    })
    .map_err(|e| BenchError::Engine {
        phase: "open",
        cause: e.to_string(),
    })?;
    let sql = futures::executor::block_on(SqlEngine::open(engine.handle()))
        .map_err(sql_err("sql open"))?;
    let mut s = sql.session();
    let cols = "id bigint, g int, cat text, v bigint, f double precision";
    exec(&mut s, &format!("CREATE TABLE rowt ({cols})"), "create")?;
    exec(
        &mut s,
        &format!("CREATE TABLE colt ({cols}) WITH (storage = 'columnar')"),
        "create",
    )?;
    let row_rows = args.row_rows.unwrap_or(args.rows);
    let col_per = columnar_copy_rows(args.shards);
    let load_row = load(&mut s, "rowt", row_rows, ROW_COPY_ROWS)?;
    let load_col = load(&mut s, "colt", args.rows, col_per)?;
    let t = Instant::now();
    exec(&mut s, "VACUUM colt", "merge")?;
    let merge = t.elapsed();
    println!(
        "rows: columnar {}, row table {row_rows}  shards {}",
        args.rows, args.shards
    );
    println!(
        "load via the bulk row API (Session::copy_rows): row table {:.1} s ({ROW_COPY_ROWS} rows per call, {:.0} rows/s), columnar {:.1} s ({col_per} rows per call: chunks directly, {:.0} rows/s)",
        load_row.as_secs_f64(),
        row_rows as f64 / load_row.as_secs_f64().max(1e-9),
        load_col.as_secs_f64(),
        args.rows as f64 / load_col.as_secs_f64().max(1e-9)
    );
    println!(
        "final VACUUM (merge of the remaining delta): {:.2} s",
        merge.as_secs_f64()
    );
    let duck = if args.no_duckdb {
        None
    } else {
        duckdb(&args.dir, args.rows, args.rounds)
    };
    println!("| query | columnar | row table | DuckDB |");
    println!("|---|---|---|---|");
    for (i, (name, q)) in QUERIES.iter().enumerate() {
        let (c, shape_c) = best(&mut s, &q.replace(" T", " colt"), args.rounds)?;
        let (r, shape_r) = best(&mut s, &q.replace(" T", " rowt"), args.rounds)?;
        if shape_c != shape_r {
            return Err(BenchError::Engine {
                phase: "compare",
                cause: format!("{name}: columnar {shape_c}, row {shape_r}"),
            });
        }
        let d = duck
            .as_ref()
            .and_then(|d| d.get(i))
            .map_or("n/a".to_string(), |ms| format!("{ms:.1} ms"));
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {d} |",
            c.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3
        );
    }
    drop(s);
    drop(sql);
    engine.shutdown().map_err(|e| BenchError::Engine {
        phase: "shutdown",
        cause: e.to_string(),
    })
}

/// DuckDB's best time per query (ms) on the same rows, or `None` when unavailable.
fn duckdb(dir: &Path, rows: usize, rounds: usize) -> Option<Vec<f64>> {
    let csv = dir.join("rows.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).ok()?);
    for i in 0..rows {
        let (id, g, cat, v, fl) = row(i);
        writeln!(f, "{id},{g},{cat},{v},{fl}").ok()?;
    }
    f.flush().ok()?;
    drop(f);
    let queries: Vec<String> = QUERIES.iter().map(|(_, q)| q.replace(" T", " t")).collect();
    let script = format!(
        "import duckdb, time, json\n\
         c = duckdb.connect()\n\
         c.execute('SET enable_progress_bar = false')\n\
         c.execute(\"CREATE TABLE t AS SELECT * FROM read_csv('{}', header=false, columns={{'id':'BIGINT','g':'INTEGER','cat':'VARCHAR','v':'BIGINT','f':'DOUBLE'}})\")\n\
         out = []\n\
         for q in {:?}:\n    best = 1e9\n    for _ in range({}):\n        t = time.perf_counter(); c.execute(q).fetchall(); best = min(best, time.perf_counter() - t)\n    out.append(best * 1e3)\n\
         print(json.dumps(out))\n",
        csv.display(),
        queries,
        rounds.max(1)
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "duckdb: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    // The last line: DuckDB draws a progress bar on stdout when a statement takes > 2 s
    // (loading 10M rows on a busy machine), which made the whole output unparsable.
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).ok()
}
