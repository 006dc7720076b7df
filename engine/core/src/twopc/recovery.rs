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
use super::{txn_coordinator, OpenDecision, Prepared, ShardTpc, TXN_SHARD_SHIFT};
use crate::engine::EngineHandle;
use crate::error::Result;
use crate::memtable::Memtable;
use crate::shard::write::mutation_to_entry;

/// Two-phase-commit state rebuilt while one shard's WAL replays.
#[derive(Default)]
pub(crate) struct TxnReplay {
    prepared: HashMap<u64, Prepared>,
    decisions: BTreeMap<u64, OpenDecision>,
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
            }
            TxnRecord::Commit { .. } => {
                if let Some(p) = self.prepared.remove(&txn) {
                    for m in p.writes {
                        let (key, kind) = mutation_to_entry(m);
                        active.insert(key, rec.lsn, kind);
                    }
                }
            }
            TxnRecord::Abort { .. } => {
                self.prepared.remove(&txn);
            }
            TxnRecord::Decision {
                commit,
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
                        },
                    );
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
    for shard in 0..handle.shard_count() {
        let (prepared, open) = handle
            .call_on(shard, |s| async move {
                let prepared: Vec<(u64, usize)> = s
                    .tpc
                    .prepared
                    .borrow()
                    .iter()
                    .map(|(&txn, p)| (txn, p.coordinator as usize))
                    .collect();
                (prepared, s.tpc.open_decisions.take())
            })
            .await?;
        in_doubt.extend(prepared.into_iter().map(|(txn, c)| (shard, txn, c)));
        decisions.extend(open.into_iter().map(|d| (d.txn, (shard, d))));
    }
    let mut report = ResolveReport::default();
    in_doubt.sort_unstable();
    for (shard, txn, coordinator) in in_doubt {
        let decided = decisions
            .get(&txn)
            .filter(|(c, _)| *c == coordinator)
            .map(|(_, d)| d.committed_at_ms);
        tracing::info!(
            shard,
            txn,
            coordinator,
            commit = decided.is_some(),
            "resolving in-doubt transaction"
        );
        match decided {
            Some(at_ms) => {
                handle
                    .call_on(shard, move |s| async move {
                        s.tpc_commit(txn, at_ms, None).await?;
                        s.tpc
                            .in_doubt_resolved
                            .set(s.tpc.in_doubt_resolved.get() + 1);
                        Ok::<_, crate::error::EngineError>(())
                    })
                    .await??;
                report.committed += 1;
            }
            None => {
                handle
                    .call_on(shard, move |s| async move {
                        s.tpc_abort(txn).await?;
                        s.tpc
                            .in_doubt_resolved
                            .set(s.tpc.in_doubt_resolved.get() + 1);
                        Ok::<_, crate::error::EngineError>(())
                    })
                    .await??;
                report.aborted += 1;
            }
        }
    }
    // Every participant's Commit is durable now: the decisions can be forgotten.
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
    Ok(report)
}
