//! The clients of the `bank` scenario: transfers as SQL transactions over the PostgreSQL wire
//! (`BEGIN; SELECT…; UPDATE a; UPDATE b; COMMIT`) and as RESP `MULTI DECRBY a x INCRBY b x
//! EXEC`, and auditors that read every balance in one transaction and check the total. Each
//! client thread ends when its connection dies (the daemon was killed) or `stop` is set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::CLIENT_TIMEOUT;
use crate::ledger::{Fate, Ledger};
use crate::pg::{int_at, Answer, PgClient};
use crate::resp::{Client, Reply};
use crate::value;

/// Violation messages kept, at most (the count goes on).
const VIOLATIONS_KEPT_MAX: usize = 50;
/// Largest amount moved by one transfer.
pub const AMOUNT_MAX: i64 = 50;

pub fn resp_key(account: usize) -> Vec<u8> {
    format!("bank:{account:04}").into_bytes()
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub sql_audits: u64,
    pub resp_audits: u64,
    /// Audits whose total (or row count, or a negative SQL balance) was wrong.
    pub audit_violations: u64,
    pub violations: Vec<String>,
    /// Transactions given up and retried, by SQLSTATE or RESP error prefix.
    pub retries: BTreeMap<String, u64>,
    /// SQL transfers rolled back by the client: the source balance was too small.
    pub overdrafts: u64,
    /// RESP transfers whose accounts are on different shards (so EXEC runs 2PC).
    pub resp_cross_shard: u64,
}

/// State shared by the clients and the scenario.
pub struct Bank {
    pub accounts: usize,
    pub shards: usize,
    pub seed: u64,
    pub sql: Mutex<Ledger>,
    pub resp: Mutex<Ledger>,
    pub stats: Mutex<Stats>,
    pub stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Bank {
    pub fn sql(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.sql)
    }
    pub fn resp(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.resp)
    }
    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    fn retry(&self, why: &str) {
        *self.stats().retries.entry(why.to_string()).or_default() += 1;
    }

    fn violation(&self, msg: String) {
        eprintln!("[bank seed {}] VIOLATION: {msg}", self.seed);
        let mut s = self.stats();
        s.audit_violations += 1;
        if s.violations.len() < VIOLATIONS_KEPT_MAX {
            s.violations.push(msg);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn pick_pair(rng: &mut SmallRng, accounts: usize) -> (usize, usize, i64) {
    let from = rng.gen_range(0..accounts);
    let to = (from + rng.gen_range(1..accounts)) % accounts;
    (from, to, rng.gen_range(1..=AMOUNT_MAX))
}

/// Why a statement failed, or `Ok` with its answer; `Err(None)` is a dead connection.
fn stmt(c: &mut PgClient, sql: &str) -> Result<Answer, Option<String>> {
    match c.query(sql) {
        Ok(a) => match &a.error {
            Some(e) => Err(Some(e.code.clone())),
            None => Ok(a),
        },
        Err(_) => Err(None),
    }
}

/// SQL transfer client: reads both balances, refuses an overdraft, writes the new balances
/// (client-computed, so a lost update would break the total) or, every other time, lets the
/// server compute them (`bal = bal - x WHERE bal >= x`); then COMMIT.
pub fn sql_transfers(addr: SocketAddr, bank: &Bank, client: u64) {
    let Ok(mut c) = PgClient::connect(addr, CLIENT_TIMEOUT) else {
        return;
    };
    let mut rng = SmallRng::seed_from_u64(bank.seed ^ client.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    while !bank.stopped() {
        let (from, to, amount) = pick_pair(&mut rng, bank.accounts);
        let server_side = rng.gen_bool(0.5);
        match sql_transfer_body(&mut c, from, to, amount, server_side) {
            Ok(true) => {}
            Ok(false) => {
                bank.stats().overdrafts += 1;
                if c.query("ROLLBACK").is_err() {
                    return;
                }
                continue;
            }
            Err(Some(code)) => {
                bank.retry(&code);
                if c.query("ROLLBACK").is_err() {
                    return;
                }
                continue;
            }
            Err(None) => return,
        }
        let id = bank.sql().attempt(from, to, amount);
        match c.query("COMMIT") {
            Ok(a) if a.error.is_none() && a.tags == ["COMMIT"] && a.status == b'I' => {
                bank.sql().resolve(id, Fate::Acked)
            }
            Ok(a) => {
                let why = a.error.map(|e| e.code).unwrap_or(a.tags.join(","));
                bank.retry(&format!("COMMIT {why}"));
                bank.sql().resolve(id, Fate::Refused);
                if a.status != b'I' && c.query("ROLLBACK").is_err() {
                    return;
                }
            }
            Err(_) => {
                bank.sql().resolve(id, Fate::Unknown);
                return;
            }
        }
    }
}

/// The statements before COMMIT; `Ok(false)`: overdraft, roll back.
fn sql_transfer_body(
    c: &mut PgClient,
    from: usize,
    to: usize,
    amount: i64,
    server_side: bool,
) -> Result<bool, Option<String>> {
    stmt(c, "BEGIN")?;
    if server_side {
        let a = stmt(
            c,
            &format!("UPDATE acct SET bal = bal - {amount} WHERE id = {from} AND bal >= {amount}"),
        )?;
        if a.tags != ["UPDATE 1"] {
            return Ok(false);
        }
        let b = stmt(
            c,
            &format!("UPDATE acct SET bal = bal + {amount} WHERE id = {to}"),
        )?;
        return Ok(b.tags == ["UPDATE 1"]);
    }
    let a = stmt(c, &format!("SELECT bal FROM acct WHERE id = {from}"))?;
    let b = stmt(c, &format!("SELECT bal FROM acct WHERE id = {to}"))?;
    let (Some(bal_from), Some(bal_to)) = (int_at(&a, 0, 0), int_at(&b, 0, 0)) else {
        return Err(Some("missing account row".into()));
    };
    if bal_from < amount {
        return Ok(false);
    }
    stmt(
        c,
        &format!(
            "UPDATE acct SET bal = {} WHERE id = {from}",
            bal_from - amount
        ),
    )?;
    stmt(
        c,
        &format!("UPDATE acct SET bal = {} WHERE id = {to}", bal_to + amount),
    )?;
    Ok(true)
}

/// RESP transfer client: `MULTI; DECRBY a x; INCRBY b x; EXEC` in one pipeline, accounts on
/// different shards four times in five.
pub fn resp_transfers(addr: SocketAddr, bank: &Bank, client: u64) {
    let Ok(mut c) = Client::connect(addr, CLIENT_TIMEOUT) else {
        return;
    };
    let mut rng = SmallRng::seed_from_u64(bank.seed ^ client.wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    while !bank.stopped() {
        let (from, mut to, amount) = pick_pair(&mut rng, bank.accounts);
        let want_cross = rng.gen_bool(0.8);
        for _ in 0..bank.accounts {
            let cross = value::shard_of(&resp_key(from), bank.shards)
                != value::shard_of(&resp_key(to), bank.shards);
            if cross == want_cross {
                break;
            }
            to = (to + 1) % bank.accounts;
            if to == from {
                to = (to + 1) % bank.accounts;
            }
        }
        if value::shard_of(&resp_key(from), bank.shards)
            != value::shard_of(&resp_key(to), bank.shards)
        {
            bank.stats().resp_cross_shard += 1;
        }
        let x = amount.to_string().into_bytes();
        let cmds = vec![
            vec![b"MULTI".to_vec()],
            vec![b"DECRBY".to_vec(), resp_key(from), x.clone()],
            vec![b"INCRBY".to_vec(), resp_key(to), x],
            vec![b"EXEC".to_vec()],
        ];
        let id = bank.resp().attempt(from, to, amount);
        match c.pipeline(&cmds).map(|mut r| r.pop()) {
            Ok(Some(Reply::Array(Some(items))))
                if items.len() == 2 && items.iter().all(|i| matches!(i, Reply::Int(_))) =>
            {
                bank.resp().resolve(id, Fate::Acked)
            }
            Ok(other) => {
                let why = match &other {
                    Some(Reply::Error(e)) => e.split(' ').next().unwrap_or("").to_string(),
                    Some(r) => r.describe(),
                    None => "no reply".into(),
                };
                bank.retry(&format!("EXEC {why}"));
                bank.resp().resolve(id, Fate::Refused);
            }
            Err(_) => {
                bank.resp().resolve(id, Fate::Unknown);
                return;
            }
        }
    }
}

/// SQL auditor: the whole table in one serializable statement (S locks on the table on every
/// shard), alternately as `sum(bal), count(*)` and as every row.
pub fn sql_auditor(addr: SocketAddr, bank: &Bank) {
    let Ok(mut c) = PgClient::connect(addr, CLIENT_TIMEOUT) else {
        return;
    };
    let total = bank.sql().total;
    let mut by_rows = false;
    while !bank.stopped() {
        by_rows = !by_rows;
        let q = if by_rows {
            "SELECT id, bal FROM acct"
        } else {
            "SELECT sum(bal), count(*) FROM acct"
        };
        let a = match stmt(&mut c, q) {
            Ok(a) => a,
            Err(Some(code)) => {
                bank.retry(&format!("audit {code}"));
                continue;
            }
            Err(None) => return,
        };
        let (sum, count, negative) = if by_rows {
            let bals: Vec<Option<i64>> = (0..a.rows.len()).map(|r| int_at(&a, r, 1)).collect();
            let sum = bals.iter().map(|b| b.unwrap_or(0)).sum::<i64>();
            let negative = bals.iter().any(|b| b.is_none_or(|b| b < 0));
            (Some(sum), Some(a.rows.len() as i64), negative)
        } else {
            (int_at(&a, 0, 0), int_at(&a, 0, 1), false)
        };
        bank.stats().sql_audits += 1;
        if sum != Some(total) || count != Some(bank.accounts as i64) || negative {
            bank.violation(format!(
                "SQL audit `{q}`: sum {sum:?} (total {total}), rows {count:?} (accounts {}), a negative or NULL balance: {negative}",
                bank.accounts
            ));
        }
    }
}

/// RESP auditor: `MULTI; GET every account; EXEC` (X locks on every key, all shards).
pub fn resp_auditor(addr: SocketAddr, bank: &Bank) {
    let Ok(mut c) = Client::connect(addr, CLIENT_TIMEOUT) else {
        return;
    };
    let total = bank.resp().total;
    let mut cmds = vec![vec![b"MULTI".to_vec()]];
    cmds.extend((0..bank.accounts).map(|a| vec![b"GET".to_vec(), resp_key(a)]));
    cmds.push(vec![b"EXEC".to_vec()]);
    while !bank.stopped() {
        let items = match c.pipeline(&cmds).map(|mut r| r.pop()) {
            Ok(Some(Reply::Array(Some(items)))) => items,
            Ok(other) => {
                let why = other.map(|r| r.describe()).unwrap_or_default();
                bank.retry(&format!("audit EXEC {why}"));
                continue;
            }
            Err(_) => return,
        };
        let bals: Vec<Option<i64>> = items.iter().map(resp_int).collect();
        bank.stats().resp_audits += 1;
        let sum: Option<i64> = bals.iter().copied().sum();
        if bals.len() != bank.accounts || sum != Some(total) {
            bank.violation(format!(
                "RESP audit MULTI/GET/EXEC: {} balances, sum {sum:?} (total {total})",
                bals.len()
            ));
        }
    }
}

/// An integer stored as a RESP bulk string.
pub fn resp_int(r: &Reply) -> Option<i64> {
    match r {
        Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}
