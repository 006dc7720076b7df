//! The verifier: what was sent, what was acknowledged, and what recovery must show.
//!
//! Each key is written by one writer at a time, with versions that only grow, so after a crash
//! a key must hold the newest acknowledged version or a later one that was in flight (outcome
//! unknown), never an older one, never a version that was refused, and never a torn value. An
//! MSET whose keys all live on one shard must be all-or-nothing. After each check the observed
//! state becomes the new baseline: in-flight versions that did not survive are dead, and seeing
//! one later is a resurrection.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::value;

/// At most this many failure descriptions are kept per check (the counters stay exact).
pub const MESSAGES_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unknown,
    Acked,
    Refused,
}

#[derive(Debug, Default, Clone)]
struct KeyState {
    /// The version seen at the last check (None: absent).
    floor: Option<u64>,
    writes: BTreeMap<u64, Outcome>,
}

#[derive(Debug, Clone)]
struct Batch {
    version: u64,
    keys: Vec<Vec<u8>>,
}

/// What was read back for one key.
#[derive(Debug, Clone)]
pub struct Observed {
    pub value: Option<Vec<u8>>,
    /// PTTL in ms: -1 no expiry, -2 absent.
    pub pttl_ms: i64,
    /// The server answered the read with an error (e.g. corruption detected on read).
    pub error: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Verdict {
    pub keys_checked: u64,
    pub acked_lost: u64,
    pub wrong_values: u64,
    pub torn_values: u64,
    pub unknown_keys: u64,
    pub refused_applied: u64,
    pub partial_batches: u64,
    pub ttl_mismatches: u64,
    /// Acknowledged writes the harness itself destroyed (a torn synced WAL block): expected,
    /// counted apart from `acked_lost`.
    pub acked_destroyed_by_injection: u64,
    /// Reads the server refused with an error (detection, not a wrong value).
    pub read_errors: u64,
    pub messages: Vec<String>,
}

impl Verdict {
    pub fn failures(&self) -> u64 {
        self.acked_lost
            + self.wrong_values
            + self.torn_values
            + self.unknown_keys
            + self.refused_applied
            + self.partial_batches
            + self.ttl_mismatches
    }

    fn note(&mut self, msg: String) {
        if self.messages.len() < MESSAGES_MAX {
            self.messages.push(msg);
        }
    }

    pub fn absorb(&mut self, other: &Verdict) {
        self.keys_checked += other.keys_checked;
        self.acked_lost += other.acked_lost;
        self.wrong_values += other.wrong_values;
        self.torn_values += other.torn_values;
        self.unknown_keys += other.unknown_keys;
        self.refused_applied += other.refused_applied;
        self.partial_batches += other.partial_batches;
        self.ttl_mismatches += other.ttl_mismatches;
        self.acked_destroyed_by_injection += other.acked_destroyed_by_injection;
        self.read_errors += other.read_errors;
        for m in &other.messages {
            self.note(m.clone());
        }
    }
}

#[derive(Debug, Default)]
pub struct Model {
    keys: BTreeMap<Vec<u8>, KeyState>,
    batches: Vec<Batch>,
    pub writes_attempted: u64,
    pub writes_acked: u64,
    pub writes_refused: u64,
}

/// How strict a check is about acknowledged versions that are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Any acknowledged version missing is a failure.
    Forbidden,
    /// The harness destroyed synced WAL data: a missing acknowledged version is counted in
    /// `acked_destroyed_by_injection`, the other checks stay strict.
    Injected,
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl Model {
    pub fn attempt(&mut self, keys: &[Vec<u8>], version: u64) {
        for k in keys {
            let st = self.keys.entry(k.clone()).or_default();
            if let Some(last) = st.writes.keys().next_back() {
                assert!(*last < version, "versions of a key must grow");
            }
            st.writes.insert(version, Outcome::Unknown);
        }
        if keys.len() > 1 {
            self.batches.push(Batch {
                version,
                keys: keys.to_vec(),
            });
        }
        self.writes_attempted += 1;
    }

    pub fn resolve(&mut self, keys: &[Vec<u8>], version: u64, outcome: Outcome) {
        for k in keys {
            if let Some(w) = self
                .keys
                .get_mut(k)
                .and_then(|st| st.writes.get_mut(&version))
            {
                *w = outcome;
            }
        }
        match outcome {
            Outcome::Acked => self.writes_acked += 1,
            Outcome::Refused => self.writes_refused += 1,
            Outcome::Unknown => {}
        }
    }

    pub fn tracked_keys(&self) -> Vec<Vec<u8>> {
        self.keys.keys().cloned().collect()
    }

    /// Checks `observed` (one entry per tracked key) and `all_keys` (a full SCAN), then makes
    /// the observed state the new baseline.
    pub fn check(
        &mut self,
        observed: &BTreeMap<Vec<u8>, Observed>,
        all_keys: &[Vec<u8>],
        loss: Loss,
        seed: u64,
    ) -> Verdict {
        let mut v = Verdict::default();
        let mut seen: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
        for (key, st) in &self.keys {
            v.keys_checked += 1;
            let Some(obs) = observed.get(key) else {
                v.acked_lost += 1;
                v.note(format!("seed {seed}: key {} was not read back", show(key)));
                continue;
            };
            if let Some(e) = &obs.error {
                v.read_errors += 1;
                v.note(format!("seed {seed}: key {} read error: {e}", show(key)));
                continue;
            }
            let found = check_key(key, st, obs, loss, seed, &mut v);
            seen.insert(key.clone(), found);
        }
        self.check_batches(&seen, seed, &mut v);
        for k in all_keys {
            if !self.keys.contains_key(k) {
                v.unknown_keys += 1;
                v.note(format!("seed {seed}: key {} was never written", show(k)));
            }
        }
        for (key, st) in self.keys.iter_mut() {
            // A key that could not be read keeps its pending writes for the next check.
            if let Some(found) = seen.get(key) {
                st.floor = *found;
                st.writes.clear();
            }
        }
        self.batches.clear();
        v
    }

    fn check_batches(&self, seen: &BTreeMap<Vec<u8>, Option<u64>>, seed: u64, v: &mut Verdict) {
        for b in &self.batches {
            let applied = b
                .keys
                .iter()
                .filter(|k| seen.get(*k).copied().flatten() >= Some(b.version))
                .count();
            if b.keys.iter().any(|k| !seen.contains_key(k)) {
                continue;
            }
            if applied != 0 && applied != b.keys.len() {
                v.partial_batches += 1;
                v.note(format!(
                    "seed {seed}: MSET version {} on one shard applied to {applied} of {} keys",
                    b.version,
                    b.keys.len()
                ));
            }
        }
    }
}

/// Checks one key; returns the version found (None: absent or unreadable).
fn check_key(
    key: &[u8],
    st: &KeyState,
    obs: &Observed,
    loss: Loss,
    seed: u64,
    v: &mut Verdict,
) -> Option<u64> {
    let newest_acked = st
        .writes
        .iter()
        .rev()
        .find(|(_, o)| **o == Outcome::Acked)
        .map(|(ver, _)| *ver)
        .or(st.floor);
    let found = match &obs.value {
        None => None,
        Some(bytes) => match value::decode(key, bytes) {
            Ok(d) => Some(d),
            Err(why) => {
                v.torn_values += 1;
                v.note(format!("seed {seed}: key {} torn: {why}", show(key)));
                return None;
            }
        },
    };
    let version = found.map(|d| d.version);
    if version < newest_acked {
        if loss == Loss::Injected {
            v.acked_destroyed_by_injection += 1;
        } else {
            v.acked_lost += 1;
            v.note(format!(
                "seed {seed}: key {} lost acknowledged version {newest_acked:?}, found {version:?}",
                show(key)
            ));
        }
    }
    let d = found?;
    let legit = st.floor == Some(d.version)
        || matches!(
            st.writes.get(&d.version),
            Some(Outcome::Acked | Outcome::Unknown)
        );
    if st.writes.get(&d.version) == Some(&Outcome::Refused) {
        v.refused_applied += 1;
        v.note(format!(
            "seed {seed}: key {} holds version {} whose write was refused",
            show(key),
            d.version
        ));
    } else if !(legit || loss == Loss::Injected && d.version < st.floor.unwrap_or(0)) {
        v.wrong_values += 1;
        v.note(format!(
            "seed {seed}: key {} holds version {} that is not a live write (floor {:?})",
            show(key),
            d.version,
            st.floor
        ));
    }
    let ttl_ok = if d.ttl {
        obs.pttl_ms > 0
    } else {
        obs.pttl_ms == -1
    };
    if !ttl_ok {
        v.ttl_mismatches += 1;
        v.note(format!(
            "seed {seed}: key {} version {} ttl flag {} but PTTL {}",
            show(key),
            d.version,
            d.ttl,
            obs.pttl_ms
        ));
    }
    Some(d.version)
}

/// What a read-back found: per key, every key SCAN listed (None: SCAN refused), read errors.
pub type ReadBack = (BTreeMap<Vec<u8>, Observed>, Option<Vec<Vec<u8>>>, u64);

/// Reads every tracked key (GET + PTTL, pipelined) and the full key list.
pub fn read_back(
    client: &mut crate::resp::Client,
    keys: &[Vec<u8>],
    keys_max: usize,
) -> std::io::Result<ReadBack> {
    use crate::resp::Reply;
    let mut cmds = Vec::with_capacity(keys.len() * 2);
    for k in keys {
        cmds.push(vec![b"GET".to_vec(), k.clone()]);
        cmds.push(vec![b"PTTL".to_vec(), k.clone()]);
    }
    let replies = client.pipeline(&cmds)?;
    let mut out = BTreeMap::new();
    let mut read_errors = 0u64;
    for (k, pair) in keys.iter().zip(replies.chunks(2)) {
        let (value, error) = match &pair[0] {
            Reply::Bulk(v) => (v.clone(), None),
            other => {
                read_errors += 1;
                (None, Some(other.describe()))
            }
        };
        let pttl_ms = match pair.get(1) {
            Some(Reply::Int(n)) => *n,
            _ => -3,
        };
        out.insert(
            k.clone(),
            Observed {
                value,
                pttl_ms,
                error,
            },
        );
    }
    // A SCAN refused with an error (corruption found while scanning) is a detection: the
    // never-written-key check is then skipped (`None`).
    let all = match crate::resp::scan_all(client, keys_max) {
        Ok(all) => Some(all),
        Err(e) if e.kind() == std::io::ErrorKind::Other => None,
        Err(e) => return Err(e),
    };
    Ok((out, all, read_errors))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn obs(key: &[u8], version: Option<u64>, ttl: bool) -> Observed {
        Observed {
            value: version.map(|v| value::encode(key, v, ttl, 10)),
            pttl_ms: if ttl { 1000 } else { -1 },
            error: None,
        }
    }

    #[test]
    fn lost_wrong_and_partial_are_counted() {
        let mut m = Model::default();
        let (a, b) = (b"a".to_vec(), b"b".to_vec());
        m.attempt(std::slice::from_ref(&a), 1);
        m.resolve(std::slice::from_ref(&a), 1, Outcome::Acked);
        m.attempt(&[a.clone(), b.clone()], 2);
        // Lost: a acked at 1, read absent; batch 2 partial is not flagged when nothing applied.
        let observed = BTreeMap::from([
            (a.clone(), obs(&a, None, false)),
            (b.clone(), obs(&b, None, false)),
        ]);
        let v = m.check(&observed, &[], Loss::Forbidden, 7);
        assert_eq!(v.acked_lost, 1);
        assert_eq!(v.partial_batches, 0);
        // Partial batch: version 3 on a only.
        m.attempt(&[a.clone(), b.clone()], 3);
        let observed = BTreeMap::from([
            (a.clone(), obs(&a, Some(3), false)),
            (b.clone(), obs(&b, None, false)),
        ]);
        let v = m.check(&observed, &[b"zzz".to_vec()], Loss::Forbidden, 7);
        assert_eq!(v.partial_batches, 1);
        assert_eq!(v.unknown_keys, 1);
        // Resurrection: version 2 (dead after the first check) must not come back.
        let observed = BTreeMap::from([
            (a.clone(), obs(&a, Some(2), false)),
            (b.clone(), obs(&b, None, false)),
        ]);
        let v = m.check(&observed, &[], Loss::Forbidden, 7);
        assert_eq!(v.acked_lost, 1, "older than the floor");
        assert_eq!(v.wrong_values, 1);
    }
}
