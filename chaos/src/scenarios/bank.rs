//! Scenario 11 (issue 9): bank transfers across shards under SIGKILL. Two ledgers of accounts
//! with a known total — a SQL table `acct` (transfers as `BEGIN … COMMIT` over the PostgreSQL
//! wire) and RESP keys `bank:NNNN` (transfers as `MULTI DECRBY INCRBY EXEC`) — take concurrent
//! transfers, most of them across the two shards, so each commit runs two-phase commit through
//! the shards' WALs. Auditors read every balance in one transaction and check the total at
//! every observation. The daemon is SIGKILLed at a seeded random moment, restarted on the same
//! data directory, and the balances must be the last verified ones plus every acknowledged
//! transfer plus a subset of the unanswered ones, each wholly (`crate::ledger`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::bank_clients::{self as clients, resp_int, resp_key, Bank, Stats};
use super::{start_ready, Ctx, Scratch, CLIENT_TIMEOUT};
use crate::daemon::{Daemon, DaemonConfig};
use crate::error::{ChaosError, Result};
use crate::ledger::{Check, Ledger, UNKNOWN_TRANSFERS_MAX};
use crate::pg::{int_at, PgClient};
use crate::report::ScenarioReport;
use crate::resp::{Client, Reply};

/// Rows inserted by one INSERT statement at setup.
const INSERT_ROWS_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct BankOpts {
    pub seed: u64,
    pub iterations: u64,
    pub accounts: usize,
    pub sql_clients: usize,
    pub resp_clients: usize,
    pub balance_initial: i64,
    pub load_ms_min: u64,
    pub load_ms_max: u64,
}

impl BankOpts {
    pub fn new(seed: u64, iterations: u64) -> BankOpts {
        BankOpts {
            seed,
            iterations,
            accounts: 16,
            sql_clients: 3,
            resp_clients: 3,
            balance_initial: 1000,
            load_ms_min: 100,
            load_ms_max: 1200,
        }
    }
}

fn unexpected(seed: u64, command: &str, reply: String) -> ChaosError {
    ChaosError::UnexpectedReply {
        seed,
        command: command.into(),
        reply,
    }
}

fn pg_connect(d: &Daemon) -> Result<PgClient> {
    PgClient::connect(d.pg, CLIENT_TIMEOUT)
        .map_err(|source| ChaosError::Resp { addr: d.pg, source })
}

fn resp_connect(d: &Daemon) -> Result<Client> {
    Client::connect(d.resp, CLIENT_TIMEOUT).map_err(|source| ChaosError::Resp {
        addr: d.resp,
        source,
    })
}

/// Creates both ledgers with every account at `balance_initial`.
fn setup(d: &Daemon, o: &BankOpts) -> Result<()> {
    let mut pg = pg_connect(d)?;
    let mut run = |sql: &str| -> Result<()> {
        let a = pg
            .query(sql)
            .map_err(|source| ChaosError::Resp { addr: d.pg, source })?;
        match a.error {
            Some(e) => Err(unexpected(o.seed, sql, format!("{} {}", e.code, e.message))),
            None => Ok(()),
        }
    };
    run("CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT)")?;
    let ids: Vec<usize> = (0..o.accounts).collect();
    for chunk in ids.chunks(INSERT_ROWS_MAX) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, {})", o.balance_initial))
            .collect();
        run(&format!("INSERT INTO acct VALUES {}", rows.join(", ")))?;
    }
    let mut resp = resp_connect(d)?;
    let bal = o.balance_initial.to_string().into_bytes();
    let mut mset = vec![b"MSET".to_vec()];
    for a in 0..o.accounts {
        mset.push(resp_key(a));
        mset.push(bal.clone());
    }
    let r = resp.pipeline(&[mset]).map_err(|source| ChaosError::Resp {
        addr: d.resp,
        source,
    })?;
    if !r.first().is_some_and(Reply::is_ok) {
        return Err(unexpected(o.seed, "MSET", format!("{r:?}")));
    }
    Ok(())
}

/// Every balance of both ledgers, read after a restart: (sql, resp) in account order.
fn read_balances(d: &Daemon, accounts: usize) -> std::result::Result<(Vec<i64>, Vec<i64>), String> {
    let mut pg = PgClient::connect(d.pg, CLIENT_TIMEOUT).map_err(|e| format!("PG connect: {e}"))?;
    let a = pg
        .query("SELECT id, bal FROM acct ORDER BY id")
        .map_err(|e| format!("PG read: {e}"))?;
    if let Some(e) = &a.error {
        return Err(format!("PG read refused: {} {}", e.code, e.message));
    }
    let mut sql = vec![None; accounts];
    for r in 0..a.rows.len() {
        match (int_at(&a, r, 0), int_at(&a, r, 1)) {
            (Some(id), Some(bal)) if (id as usize) < accounts => sql[id as usize] = Some(bal),
            other => return Err(format!("SQL row {r} unreadable: {other:?}")),
        }
    }
    let sql: Option<Vec<i64>> = sql.into_iter().collect();
    let sql = sql.ok_or_else(|| format!("SQL accounts missing: {} rows", a.rows.len()))?;
    let mut c =
        Client::connect(d.resp, CLIENT_TIMEOUT).map_err(|e| format!("RESP connect: {e}"))?;
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    let keys: Vec<Vec<u8>> = (0..accounts).map(resp_key).collect();
    mget.extend(keys.iter().map(|k| k.as_slice()));
    let resp = match c.call(&mget).map_err(|e| format!("RESP read: {e}"))? {
        Reply::Array(Some(items)) => items.iter().map(resp_int).collect::<Option<Vec<i64>>>(),
        other => return Err(format!("MGET answered {}", other.describe())),
    };
    let resp = resp.ok_or("a RESP account is missing or not a number")?;
    Ok((sql, resp))
}

/// Checks one ledger against what was read, records the verdict and rebases it.
fn judge(
    name: &str,
    ledger: &mut Ledger,
    found: Vec<i64>,
    iteration: u64,
    rep: &mut ScenarioReport,
) {
    let check = ledger.check(&found);
    rep.verdict.keys_checked += found.len() as u64;
    let at = format!("iteration {iteration}, {name} ledger");
    match &check {
        Check::Fits { .. } => {}
        Check::NotConserved {
            total_expected,
            total_found,
        } => {
            rep.verdict.partial_batches += 1;
            rep.fail(format!(
                "{at}: total {total_found} after recovery, expected {total_expected}: a transfer was applied in part; balances {found:?}"
            ));
        }
        Check::NoFit { diff } => {
            rep.verdict.acked_lost += 1;
            rep.fail(format!(
                "{at}: balances fit no set of unanswered transfers (account, found − expected with acknowledged transfers only): {diff:?}; transfers since the last check: {:?}",
                ledger.transfers
            ));
        }
        Check::TooManyUnknown { unknown } => rep.note(format!(
            "{at}: {unknown} unanswered transfers (> {UNKNOWN_TRANSFERS_MAX}): only the total was checked"
        )),
    }
    ledger.rebase(found, &check);
}

/// Reads both ledgers back after a restart and judges them; false if unreadable.
fn verify(d: &Daemon, bank: &Bank, iteration: u64, rep: &mut ScenarioReport) -> bool {
    match read_balances(d, bank.accounts) {
        Ok((sql, resp)) => {
            judge("SQL", &mut bank.sql(), sql, iteration, rep);
            judge("RESP", &mut bank.resp(), resp, iteration, rep);
            true
        }
        Err(e) => {
            rep.fail(format!("iteration {iteration}: read-back failed: {e}"));
            false
        }
    }
}

fn spawn_clients(d: &Daemon, bank: &Arc<Bank>, o: &BankOpts, round: u64) -> Vec<JoinHandle<()>> {
    bank.stop.store(false, Ordering::Relaxed);
    let mut handles = Vec::new();
    for c in 0..o.sql_clients {
        let (b, addr, id) = (Arc::clone(bank), d.pg, (round << 16) | c as u64);
        handles.push(std::thread::spawn(move || {
            clients::sql_transfers(addr, &b, id)
        }));
    }
    for c in 0..o.resp_clients {
        let (b, addr, id) = (Arc::clone(bank), d.resp, (round << 16) | c as u64);
        handles.push(std::thread::spawn(move || {
            clients::resp_transfers(addr, &b, id)
        }));
    }
    let (b, addr) = (Arc::clone(bank), d.pg);
    handles.push(std::thread::spawn(move || clients::sql_auditor(addr, &b)));
    let (b, addr) = (Arc::clone(bank), d.resp);
    handles.push(std::thread::spawn(move || clients::resp_auditor(addr, &b)));
    handles
}

fn join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.join();
    }
}

pub fn run(ctx: &Ctx, o: &BankOpts) -> Result<ScenarioReport> {
    assert!(o.accounts >= 2 && o.load_ms_min <= o.load_ms_max);
    assert!(
        o.sql_clients.max(o.resp_clients) <= UNKNOWN_TRANSFERS_MAX,
        "more clients than unanswered transfers the check can try"
    );
    let mut rep = ScenarioReport::new("bank", o.seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, "bank", o.seed)?;
    let mut d = Daemon::new(
        DaemonConfig::new(&ctx.mantisd, &scratch.data(), o.seed),
        &scratch.run(),
    )?;
    start_ready(&mut d, &mut rep)?;
    setup(&d, o)?;
    let initial = vec![o.balance_initial; o.accounts];
    let bank = Arc::new(Bank {
        accounts: o.accounts,
        shards: d.cfg.shards,
        seed: o.seed,
        sql: Ledger::new(initial.clone()).into(),
        resp: Ledger::new(initial).into(),
        stats: Stats::default().into(),
        stop: false.into(),
    });
    if !verify(&d, &bank, 0, &mut rep) {
        rep.finish(started);
        return Ok(rep);
    }
    let mut rng = SmallRng::seed_from_u64(o.seed);
    for i in 1..=o.iterations {
        let handles = spawn_clients(&d, &bank, o, i);
        // Not a wait for an event: the seeded load time IS the experiment (when the SIGKILL
        // lands in the transfers' commit protocol); readiness and checks below wait on events.
        std::thread::sleep(Duration::from_millis(
            rng.gen_range(o.load_ms_min..=o.load_ms_max),
        ));
        if !d.alive() {
            rep.fail(format!(
                "iteration {i}: mantisd died under load: {}",
                d.log_tail()
            ));
            bank.stop.store(true, Ordering::Relaxed);
            join(handles);
            break;
        }
        d.kill()?;
        rep.faults_injected += 1;
        join(handles);
        start_ready(&mut d, &mut rep)?;
        rep.iterations += 1;
        if !verify(&d, &bank, i, &mut rep) {
            break;
        }
    }
    if d.alive() {
        final_round(&mut d, &bank, o, &mut rep)?;
    }
    summarize(&bank, &mut rep);
    rep.finish(started);
    Ok(rep)
}

/// A last load phase that ends cleanly (every transfer answered), then a graceful stop and a
/// start: the flushed state must hold exactly the acknowledged transfers.
fn final_round(
    d: &mut Daemon,
    bank: &Arc<Bank>,
    o: &BankOpts,
    rep: &mut ScenarioReport,
) -> Result<()> {
    let handles = spawn_clients(d, bank, o, o.iterations + 1);
    // The load runs for a set time before the clean stop (the experiment's knob, not a wait).
    std::thread::sleep(Duration::from_millis(o.load_ms_min));
    bank.stop.store(true, Ordering::Relaxed);
    join(handles);
    d.stop()?;
    start_ready(d, rep)?;
    verify(d, bank, o.iterations + 1, rep);
    d.stop()?;
    Ok(())
}

fn summarize(bank: &Bank, rep: &mut ScenarioReport) {
    let st = bank.stats().clone();
    rep.verdict.wrong_values += st.audit_violations;
    for v in &st.violations {
        rep.fail(v.clone());
    }
    let (sql, resp) = (bank.sql().clone(), bank.resp().clone());
    rep.writes_attempted = sql.attempted + resp.attempted;
    rep.writes_acknowledged = sql.acked + resp.acked;
    rep.writes_refused = sql.refused + resp.refused;
    for (name, l) in [("SQL", &sql), ("RESP", &resp)] {
        rep.note(format!(
            "{name} transfers: {} committed (acknowledged), {} refused, unanswered at a kill: {} applied wholly, {} not at all; total now {}",
            l.acked, l.refused, l.unknown_applied, l.unknown_not_applied, l.total
        ));
    }
    rep.note(format!(
        "audits: {} SQL (one statement over the whole table), {} RESP (MULTI + GET of every account); violations: {}",
        st.sql_audits, st.resp_audits, st.audit_violations
    ));
    rep.note(format!(
        "RESP transfers across shards (2PC): {}; SQL transfers refused for overdraft by the client: {}; retried: {:?}",
        st.resp_cross_shard, st.overdrafts, st.retries
    ));
}
