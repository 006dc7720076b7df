//! Recovery of two-phase-commit transactions.
//!
//! During a shard's WAL replay ([`TxnReplay`]): a Prepare is held aside; its Commit applies the
//! writes at the Commit's LSN; its Abort drops them. A Commit whose Prepare is not replayed is
//! already in a segment (the Prepare stayed pinned until a flush covered the Commit, see
//! `pins.rs`). A Decision is remembered until its End.
//!
//! After every shard replayed ([`resolve_in_doubt`], from `Engine::open`, before the handle is
//! returned, so before any traffic): each prepared-but-undecided txn is resolved from its
//! coordinator's recovered decisions — a commit Decision commits it, none aborts it (presumed
//! abort) — and every Decision left without End is closed with an End.

use std::collections::{BTreeMap, HashMap};

use mantis_wal::WalRecord;

use super::record::TxnRecord;
use super::{txn_coordinator, OpenDecision, Prepared, ReplayedTxns, ShardTpc, TXN_SHARD_SHIFT};
use crate::engine::EngineHandle;
use crate::error::Result;
use crate::memtable::Memtable;
use crate::shard::write::mutation_to_entry;

/// Two-phase-commit state rebuilt while one shard's WAL replays.
#[derive(Default)]
pub(crate) struct TxnReplay {
    prepared: HashMap<u64, Prepared>,
    decisions: BTreeMap<u64, OpenDecision>,
    seen: ReplayedTxns,
    /// The oldest Prepare LSN among the txns committed during replay (0: none).
    committed_prepare_lsn_min: u64,
    /// The largest txn counter this shard coordinated, as far as its log knows.
    own_counter_max: u64,
}

impl TxnReplay {
    /// Replays one record of kind 3–7 of shard `shard` into `active`.
    pub fn replay(
        &mut self,
        shard: usize,
        active: &mut Memtable,
        rec: &WalRecord,
    ) -> std::result::Result<(), String> {
        let r = TxnRecord::decode(rec.kind, &rec.payload).map_err(|e| e.to_string())?;
        let txn = r.txn();
        match r {
            TxnRecord::Prepare {
                coordinator,
                writes,
                ..
            } => {
                let p = Prepared {
                    coordinator,
                    prepare_lsn: rec.lsn,
                    writes,
                };
                if self.prepared.insert(txn, p).is_some() {
                    return Err(format!("txn {txn:#x} prepared twice"));
                }
                self.seen.prepared.insert(txn);
            }
            TxnRecord::Commit { .. } => {
                self.seen.committed.insert(txn);
                if let Some(p) = self.prepared.remove(&txn) {
                    let min = self.committed_prepare_lsn_min;
                    if min == 0 || p.prepare_lsn < min {
                        self.committed_prepare_lsn_min = p.prepare_lsn;
                    }
                    for m in p.writes {
                        let (key, kind) = mutation_to_entry(m);
                        active.insert(key, rec.lsn, kind);
                    }
                }
            }
            TxnRecord::Abort { .. } => {
                self.seen.aborted.insert(txn);
                self.prepared.remove(&txn);
            }
            TxnRecord::Decision {
                commit,
                parallel,
                committed_at_ms,
                participants,
                ..
            } => {
                if txn_coordinator(txn) != shard {
                    return Err(format!("decision of txn {txn:#x} in a foreign log"));
                }
                self.note_own(txn);
                if commit {
                    self.decisions.insert(
                        txn,
                        OpenDecision {
                            txn,
                            committed_at_ms,
                            participants,
                            parallel,
                        },
                    );
                } else {
                    // A void: the parallel Decision before it no longer counts.
                    self.decisions.remove(&txn);
                }
            }
            TxnRecord::End { .. } => {
                self.note_own(txn);
                self.decisions.remove(&txn);
            }
        }
        Ok(())
    }

    fn note_own(&mut self, txn: u64) {
        let counter = txn & ((1u64 << TXN_SHARD_SHIFT) - 1);
        self.own_counter_max = self.own_counter_max.max(counter);
    }

    /// Hands the result to the shard: in-doubt txns stay prepared (pinned, keys guarded).
    pub fn finish(self, tpc: &ShardTpc) {
        for (txn, p) in self.prepared {
            tpc.hold_keys(&p.writes);
            tpc.pins.hold(p.prepare_lsn);
            tpc.prepared.borrow_mut().insert(txn, p);
        }
        *tpc.open_decisions.borrow_mut() = self.decisions.into_values().collect();
        *tpc.replayed.borrow_mut() = self.seen;
        if self.committed_prepare_lsn_min > 0 {
            tpc.pins.hold(self.committed_prepare_lsn_min);
            tpc.replay_pin_lsn.set(self.committed_prepare_lsn_min);
        }
        tpc.next_txn_counter.set(self.own_counter_max + 1);
    }
}

/// What recovery found and did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResolveReport {
    pub committed: usize,
    pub aborted: usize,
    pub decisions_closed: usize,
}

/// Resolves every in-doubt transaction of every shard (see the module doc).
pub(crate) async fn resolve_in_doubt(handle: &EngineHandle) -> Result<ResolveReport> {
    let mut in_doubt: Vec<(usize, u64, usize)> = Vec::new();
    let mut decisions: HashMap<u64, (usize, OpenDecision)> = HashMap::new();
    let mut replayed: Vec<ReplayedTxns> = Vec::with_capacity(handle.shard_count());
    for shard in 0..handle.shard_count() {
        let (prepared, open, seen) = handle
            .call_on(shard, |s| async move {
                let prepared: Vec<(u64, usize)> = s
                    .tpc
                    .prepared
                    .borrow()
                    .iter()
                    .map(|(&txn, p)| (txn, p.coordinator as usize))
                    .collect();
                (prepared, s.tpc.open_decisions.take(), s.tpc.replayed.take())
            })
            .await?;
        in_doubt.extend(prepared.into_iter().map(|(txn, c)| (shard, txn, c)));
        decisions.extend(open.into_iter().map(|d| (d.txn, (shard, d))));
        replayed.push(seen);
    }
    // Which open Decisions commit: a plain one always; a parallel one per `parallel_commits`.
    let committing: HashMap<u64, u64> = decisions
        .values()
        .filter(|(_, d)| !d.parallel || parallel_commits(d, &replayed))
        .map(|(_, d)| (d.txn, d.committed_at_ms))
        .collect();
    drop(replayed);
    let mut report = ResolveReport::default();
    in_doubt.sort_unstable();
    for (shard, txn, coordinator) in in_doubt {
        let decided = decisions
            .get(&txn)
            .filter(|(c, _)| *c == coordinator)
            .and_then(|_| committing.get(&txn).copied());
        tracing::info!(
            shard,
            txn,
            coordinator,
            commit = decided.is_some(),
            "resolving in-doubt transaction"
        );
        resolve_one(handle, shard, txn, decided).await?;
        match decided {
            Some(_) => report.committed += 1,
            None => report.aborted += 1,
        }
    }
    // Every participant's Commit or Abort is durable now: the decisions can be forgotten.
    let mut open: Vec<(usize, u64)> = decisions.into_values().map(|(c, d)| (c, d.txn)).collect();
    open.sort_unstable();
    for (coordinator, txn) in open {
        handle
            .call_on(coordinator, move |s| async move {
                s.tpc_end(txn, 0, false).await
            })
            .await??;
        report.decisions_closed += 1;
    }
    // No Decision is open any more: committed Prepares need stay only until a flush.
    for shard in 0..handle.shard_count() {
        handle
            .call_on(shard, |s| async move {
                s.tpc.pins.all_ends_durable();
                let lsn = s.tpc.replay_pin_lsn.replace(0);
                if lsn > 0 {
                    s.tpc.pins.release(lsn);
                }
            })
            .await?;
    }
    Ok(report)
}

/// Whether a parallel Decision found without End commits: yes iff some participant logged
/// its Commit (it was told, so every Prepare was durable), or no participant logged an Abort
/// and every participant's Prepare was recovered. A Prepare cannot have been recycled while
/// its Decision is open (pins.rs: it stays pinned until the End is durable), so a missing
/// one was never durable: the txn was never committed, and nobody was told it was.
fn parallel_commits(d: &OpenDecision, replayed: &[ReplayedTxns]) -> bool {
    let shard_of = |p: &u32| replayed.get(*p as usize);
    let any_commit = d
        .participants
        .iter()
        .filter_map(shard_of)
        .any(|r| r.committed.contains(&d.txn));
    if any_commit {
        return true;
    }
    let any_abort = d
        .participants
        .iter()
        .filter_map(shard_of)
        .any(|r| r.aborted.contains(&d.txn));
    let all_prepared = d
        .participants
        .iter()
        .all(|p| shard_of(p).is_some_and(|r| r.prepared.contains(&d.txn)));
    !any_abort && all_prepared
}

/// Commits (`decided`: the commit time) or aborts in-doubt `txn` on `shard`.
async fn resolve_one(
    handle: &EngineHandle,
    shard: usize,
    txn: u64,
    decided: Option<u64>,
) -> Result<()> {
    handle
        .call_on(shard, move |s| async move {
            match decided {
                Some(at_ms) => s.tpc_commit(txn, at_ms, None).await?,
                None => s.tpc_abort(txn).await?,
            }
            s.tpc
                .in_doubt_resolved
                .set(s.tpc.in_doubt_resolved.get() + 1);
            Ok::<_, crate::error::EngineError>(())
        })
        .await?
}
