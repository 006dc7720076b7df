//! The bank model of the `bank` scenario: accounts with a known total, and every transfer a
//! client sent, with what its client learnt of it (acknowledged, refused, or unknown because
//! the daemon died before it answered).
//!
//! After a crash and restart the balances read back must be exactly the baseline plus every
//! acknowledged transfer plus SOME subset of the unknown ones, each applied wholly: a transfer
//! half applied breaks the total, a lost acknowledged one (or an applied refused one) leaves no
//! subset that fits. Each client has at most one transfer unanswered at a time, so the
//! unknown ones are few and every subset can be tried.

use std::collections::BTreeMap;

/// Unknown transfers tried exhaustively at most (2^this subsets); each client has at most one
/// in flight, so this bounds the clients of a run.
pub const UNKNOWN_TRANSFERS_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Sent, no answer yet.
    InFlight,
    Acked,
    /// An error answer: must not be applied.
    Refused,
    /// The connection died before the answer: applied wholly or not at all.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub from: usize,
    pub to: usize,
    pub amount: i64,
    pub fate: Fate,
}

/// What a check after recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The balances fit: these unknown transfers (ids) were applied, the others were not.
    Fits { applied: Vec<u64>, not_applied: u64 },
    /// The sum differs from the total: some transfer was applied in part.
    NotConserved {
        total_expected: i64,
        total_found: i64,
    },
    /// The total holds but no set of unknown transfers explains the balances: an acknowledged
    /// transfer was lost, a refused one applied, or updates were lost to a race. `diff` lists
    /// (account, found − expected from acknowledged transfers alone).
    NoFit { diff: Vec<(usize, i64)> },
    /// More unknown transfers than can be tried; only the total was checked (and held).
    TooManyUnknown { unknown: usize },
}

#[derive(Debug, Clone)]
pub struct Ledger {
    /// Balances last observed and verified (the baseline).
    pub base: Vec<i64>,
    pub total: i64,
    /// Transfers since the baseline, by id.
    pub transfers: BTreeMap<u64, Transfer>,
    next_id: u64,
    pub attempted: u64,
    pub acked: u64,
    pub refused: u64,
    pub unknown_applied: u64,
    pub unknown_not_applied: u64,
}

impl Ledger {
    pub fn new(balances: Vec<i64>) -> Ledger {
        let total = balances.iter().sum();
        Ledger {
            base: balances,
            total,
            transfers: BTreeMap::new(),
            next_id: 0,
            attempted: 0,
            acked: 0,
            refused: 0,
            unknown_applied: 0,
            unknown_not_applied: 0,
        }
    }

    /// Records a transfer about to be committed (before COMMIT / EXEC is sent); returns its id.
    pub fn attempt(&mut self, from: usize, to: usize, amount: i64) -> u64 {
        assert!(from != to && from < self.base.len() && to < self.base.len());
        let id = self.next_id;
        self.next_id += 1;
        self.attempted += 1;
        self.transfers.insert(
            id,
            Transfer {
                from,
                to,
                amount,
                fate: Fate::InFlight,
            },
        );
        id
    }

    pub fn resolve(&mut self, id: u64, fate: Fate) {
        assert!(fate != Fate::InFlight);
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        assert_eq!(t.fate, Fate::InFlight, "transfer {id} resolved twice");
        t.fate = fate;
        match fate {
            Fate::Acked => self.acked += 1,
            Fate::Refused => self.refused += 1,
            Fate::Unknown | Fate::InFlight => {}
        }
    }

    /// Balances if every acknowledged transfer since the baseline is applied.
    fn expected_acked(&self) -> Vec<i64> {
        let mut b = self.base.clone();
        for t in self.transfers.values().filter(|t| t.fate == Fate::Acked) {
            b[t.from] -= t.amount;
            b[t.to] += t.amount;
        }
        b
    }

    /// Whether a set of observed balances during load keeps the total (an audit).
    pub fn conserved(&self, sum: i64) -> bool {
        sum == self.total
    }

    /// Checks balances read after a restart (no client running: nothing is in flight; every
    /// transfer still in flight counts as unknown).
    pub fn check(&self, found: &[i64]) -> Check {
        assert_eq!(found.len(), self.base.len());
        let total_found: i64 = found.iter().sum();
        if total_found != self.total {
            return Check::NotConserved {
                total_expected: self.total,
                total_found,
            };
        }
        let expected = self.expected_acked();
        let diff: Vec<i64> = found.iter().zip(&expected).map(|(f, e)| f - e).collect();
        let unknown: Vec<(u64, Transfer)> = self
            .transfers
            .iter()
            .filter(|(_, t)| matches!(t.fate, Fate::Unknown | Fate::InFlight))
            .map(|(id, t)| (*id, *t))
            .collect();
        if unknown.len() > UNKNOWN_TRANSFERS_MAX {
            return Check::TooManyUnknown {
                unknown: unknown.len(),
            };
        }
        let mut delta = vec![0i64; found.len()];
        for mask in 0u32..(1u32 << unknown.len()) {
            delta.iter_mut().for_each(|d| *d = 0);
            for (i, (_, t)) in unknown.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    delta[t.from] -= t.amount;
                    delta[t.to] += t.amount;
                }
            }
            if delta == diff {
                let applied: Vec<u64> = unknown
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, (id, _))| *id)
                    .collect();
                let not_applied = (unknown.len() - applied.len()) as u64;
                return Check::Fits {
                    applied,
                    not_applied,
                };
            }
        }
        Check::NoFit {
            diff: diff
                .iter()
                .enumerate()
                .filter(|(_, d)| **d != 0)
                .map(|(a, d)| (a, *d))
                .collect(),
        }
    }

    /// Makes verified balances the new baseline and forgets the transfers before it.
    pub fn rebase(&mut self, found: Vec<i64>, check: &Check) {
        assert_eq!(found.len(), self.base.len());
        if let Check::Fits {
            applied,
            not_applied,
        } = check
        {
            self.unknown_applied += applied.len() as u64;
            self.unknown_not_applied += not_applied;
        }
        self.base = found;
        self.total = self.base.iter().sum();
        self.transfers.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(vec![100, 100, 100, 100])
    }

    #[test]
    fn acknowledged_transfers_must_be_applied() {
        let mut l = ledger();
        let a = l.attempt(0, 1, 10);
        l.resolve(a, Fate::Acked);
        assert!(matches!(l.check(&[90, 110, 100, 100]), Check::Fits { .. }));
        // Lost: the total still holds, but no subset explains it.
        assert_eq!(
            l.check(&[100, 100, 100, 100]),
            Check::NoFit {
                diff: vec![(0, 10), (1, -10)]
            }
        );
    }

    #[test]
    fn unknown_transfers_are_all_or_nothing() {
        let mut l = ledger();
        let a = l.attempt(0, 1, 10);
        l.resolve(a, Fate::Unknown);
        let b = l.attempt(2, 3, 7);
        l.resolve(b, Fate::Unknown);
        assert_eq!(
            l.check(&[90, 110, 100, 100]),
            Check::Fits {
                applied: vec![a],
                not_applied: 1
            }
        );
        assert!(matches!(l.check(&[100, 100, 93, 107]), Check::Fits { .. }));
        assert!(matches!(l.check(&[100, 100, 100, 100]), Check::Fits { .. }));
        // Half of a transfer: the total breaks.
        assert!(matches!(
            l.check(&[90, 100, 100, 100]),
            Check::NotConserved { .. }
        ));
        // Money moved that nobody sent.
        assert!(matches!(l.check(&[95, 105, 100, 100]), Check::NoFit { .. }));
    }

    #[test]
    fn refused_transfers_must_not_be_applied() {
        let mut l = ledger();
        let a = l.attempt(0, 1, 10);
        l.resolve(a, Fate::Refused);
        assert!(matches!(l.check(&[90, 110, 100, 100]), Check::NoFit { .. }));
        assert!(matches!(l.check(&[100, 100, 100, 100]), Check::Fits { .. }));
    }

    #[test]
    fn rebase_makes_the_observation_the_baseline() {
        let mut l = ledger();
        let a = l.attempt(0, 1, 10);
        l.resolve(a, Fate::Unknown);
        let found = vec![90, 110, 100, 100];
        let c = l.check(&found);
        l.rebase(found.clone(), &c);
        assert_eq!(l.unknown_applied, 1);
        assert!(l.transfers.is_empty());
        assert!(matches!(l.check(&found), Check::Fits { .. }));
    }
}
