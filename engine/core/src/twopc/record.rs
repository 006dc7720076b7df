//! The WAL records of two-phase commit (issue 9). Each is the payload of one WAL record; the
//! WAL frames and checksums it. Layout (little endian) in docs/formats.md, "Two-phase commit
//! records". Kind 2 belongs to the timestamped batch (point-in-time recovery): ours are 3–7.

use crate::record::{self, DecodeError, Mutation};

/// A participant's writes, held invisible until the decision: `txn u64, coordinator u32`,
/// then the writes in the batch encoding of [`crate::record`].
pub const RECORD_KIND_TXN_PREPARE: u8 = 3;
/// The coordinator's decision: `txn u64, flag u8, committed_at_ms u64, participants_count
/// u32, participant u32 * count`. The flag is one of the `DECISION_FLAG_*` below.
pub const RECORD_KIND_TXN_DECISION: u8 = 4;

/// Decision flag 0: the transaction is void (aborted). Written after a parallel Decision
/// whose participant's vote failed in a way that may have left its Prepare on disk.
pub const DECISION_FLAG_VOID: u8 = 0;
/// Decision flag 1 (logs written before parallel commit): the commit point by itself.
pub const DECISION_FLAG_COMMIT: u8 = 1;
/// Decision flag 2 (parallel commit, issue 9): written alongside the Prepares; the
/// transaction is committed iff this record AND every named participant's Prepare are durable.
pub const DECISION_FLAG_PARALLEL: u8 = 2;
/// A participant applies its prepared writes: `txn u64, committed_at_ms u64`.
pub const RECORD_KIND_TXN_COMMIT: u8 = 5;
/// A participant drops its prepared writes: `txn u64`.
pub const RECORD_KIND_TXN_ABORT: u8 = 6;
/// The coordinator forgets the transaction (every participant committed): `txn u64`.
pub const RECORD_KIND_TXN_END: u8 = 7;

/// Participants of one transaction, at most: a batch touches each shard once, and shard ids
/// fit in the top byte of a transaction id.
pub const PARTICIPANTS_MAX: usize = 256;

/// One decoded two-phase-commit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnRecord {
    Prepare {
        txn: u64,
        coordinator: u32,
        writes: Vec<Mutation>,
    },
    Decision {
        txn: u64,
        commit: bool,
        /// With `commit`: a parallel-commit Decision ([`DECISION_FLAG_PARALLEL`]).
        parallel: bool,
        committed_at_ms: u64,
        participants: Vec<u32>,
    },
    Commit {
        txn: u64,
        committed_at_ms: u64,
    },
    Abort {
        txn: u64,
    },
    End {
        txn: u64,
    },
}

/// Whether `kind` is one of ours.
pub fn is_txn_kind(kind: u8) -> bool {
    (RECORD_KIND_TXN_PREPARE..=RECORD_KIND_TXN_END).contains(&kind)
}

impl TxnRecord {
    pub fn kind(&self) -> u8 {
        match self {
            TxnRecord::Prepare { .. } => RECORD_KIND_TXN_PREPARE,
            TxnRecord::Decision { .. } => RECORD_KIND_TXN_DECISION,
            TxnRecord::Commit { .. } => RECORD_KIND_TXN_COMMIT,
            TxnRecord::Abort { .. } => RECORD_KIND_TXN_ABORT,
            TxnRecord::End { .. } => RECORD_KIND_TXN_END,
        }
    }

    pub fn txn(&self) -> u64 {
        match self {
            TxnRecord::Prepare { txn, .. }
            | TxnRecord::Decision { txn, .. }
            | TxnRecord::Commit { txn, .. }
            | TxnRecord::Abort { txn }
            | TxnRecord::End { txn } => *txn,
        }
    }

    /// The payload; the kind goes in the WAL record header ([`TxnRecord::kind`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.txn().to_le_bytes());
        match self {
            TxnRecord::Prepare {
                coordinator,
                writes,
                ..
            } => {
                out.extend_from_slice(&coordinator.to_le_bytes());
                out.extend_from_slice(&record::encode(writes));
            }
            TxnRecord::Decision {
                commit,
                parallel,
                committed_at_ms,
                participants,
                ..
            } => {
                assert!(participants.len() <= PARTICIPANTS_MAX);
                out.push(match (*commit, *parallel) {
                    (false, _) => DECISION_FLAG_VOID,
                    (true, false) => DECISION_FLAG_COMMIT,
                    (true, true) => DECISION_FLAG_PARALLEL,
                });
                out.extend_from_slice(&committed_at_ms.to_le_bytes());
                out.extend_from_slice(&(participants.len() as u32).to_le_bytes());
                for p in participants {
                    out.extend_from_slice(&p.to_le_bytes());
                }
            }
            TxnRecord::Commit {
                committed_at_ms, ..
            } => out.extend_from_slice(&committed_at_ms.to_le_bytes()),
            TxnRecord::Abort { .. } | TxnRecord::End { .. } => {}
        }
        out
    }

    /// Decodes the payload of a record of kind `kind`. Never panics on garbage.
    pub fn decode(kind: u8, buf: &[u8]) -> Result<TxnRecord, DecodeError> {
        let mut r = Cursor { buf, at: 0 };
        let txn = r.u64()?;
        let rec = match kind {
            RECORD_KIND_TXN_PREPARE => {
                let coordinator = r.u32()?;
                let writes = record::decode(r.rest()).map_err(|e| DecodeError {
                    at: r.at + e.at,
                    reason: e.reason,
                })?;
                return Ok(TxnRecord::Prepare {
                    txn,
                    coordinator,
                    writes,
                });
            }
            RECORD_KIND_TXN_DECISION => {
                let (commit, parallel) = match r.u8()? {
                    DECISION_FLAG_VOID => (false, false),
                    DECISION_FLAG_COMMIT => (true, false),
                    DECISION_FLAG_PARALLEL => (true, true),
                    _ => return Err(r.error("decision flag is not 0, 1 or 2")),
                };
                let committed_at_ms = r.u64()?;
                let count = r.u32()? as usize;
                if count > PARTICIPANTS_MAX || count > r.remaining() / 4 {
                    return Err(r.error("participant count larger than the record"));
                }
                let mut participants = Vec::with_capacity(count);
                for _ in 0..count {
                    participants.push(r.u32()?);
                }
                TxnRecord::Decision {
                    txn,
                    commit,
                    parallel,
                    committed_at_ms,
                    participants,
                }
            }
            RECORD_KIND_TXN_COMMIT => TxnRecord::Commit {
                txn,
                committed_at_ms: r.u64()?,
            },
            RECORD_KIND_TXN_ABORT => TxnRecord::Abort { txn },
            RECORD_KIND_TXN_END => TxnRecord::End { txn },
            _ => return Err(r.error("not a two-phase-commit record kind")),
        };
        if r.remaining() != 0 {
            return Err(r.error("trailing bytes"));
        }
        Ok(rec)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn error(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            at: self.at,
            reason,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.at..]
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        if self.remaining() < N {
            return Err(self.error("truncated"));
        }
        let mut b = [0u8; N];
        b.copy_from_slice(&self.buf[self.at..self.at + N]);
        self.at += N;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn put(k: &str, v: &str) -> Mutation {
        Mutation::Put {
            key: k.into(),
            value: v.into(),
            expires_at_ms: Some(7),
        }
    }

    fn round_trip(r: TxnRecord) {
        let bytes = r.encode();
        assert_eq!(TxnRecord::decode(r.kind(), &bytes).unwrap(), r);
        // Any truncation is refused, never misread.
        for cut in 0..bytes.len() {
            assert!(
                TxnRecord::decode(r.kind(), &bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(TxnRecord::decode(r.kind(), &longer).is_err());
    }

    #[test]
    fn prepare_round_trips() {
        let writes = vec![put("a", "1"), Mutation::Delete { key: b"b".to_vec() }];
        let r = TxnRecord::Prepare {
            txn: (3 << 56) | 42,
            coordinator: 3,
            writes,
        };
        assert_eq!(r.encode()[..12], [42, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0]);
        round_trip(r);
    }

    #[test]
    fn decision_round_trips() {
        let r = TxnRecord::Decision {
            txn: 9,
            commit: true,
            parallel: false,
            committed_at_ms: 1_700_000_000_000,
            participants: vec![0, 2, 5],
        };
        assert_eq!(r.encode().len(), 8 + 1 + 8 + 4 + 3 * 4);
        round_trip(r);
        round_trip(TxnRecord::Decision {
            txn: 11,
            commit: true,
            parallel: true,
            committed_at_ms: 1,
            participants: vec![1, 2],
        });
        round_trip(TxnRecord::Decision {
            txn: 10,
            commit: false,
            parallel: false,
            committed_at_ms: 0,
            participants: vec![],
        });
    }

    #[test]
    fn commit_abort_end_round_trip() {
        round_trip(TxnRecord::Commit {
            txn: u64::MAX,
            committed_at_ms: 5,
        });
        round_trip(TxnRecord::Abort { txn: 1 });
        round_trip(TxnRecord::End { txn: 2 });
    }

    #[test]
    fn foreign_kinds_and_bad_flags_are_refused() {
        let end = TxnRecord::End { txn: 1 }.encode();
        assert!(TxnRecord::decode(1, &end).is_err());
        assert!(TxnRecord::decode(2, &end).is_err());
        let mut d = TxnRecord::Decision {
            txn: 1,
            commit: true,
            parallel: true,
            committed_at_ms: 1,
            participants: vec![1],
        }
        .encode();
        assert_eq!(d[8], DECISION_FLAG_PARALLEL);
        d[8] = 3;
        assert!(TxnRecord::decode(RECORD_KIND_TXN_DECISION, &d).is_err());
    }

    proptest! {
        #[test]
        fn decode_of_garbage_never_panics(kind in 0u8..10, buf in any::<Vec<u8>>()) {
            let _ = TxnRecord::decode(kind, &buf);
        }

        #[test]
        fn huge_participant_counts_are_refused(txn in any::<u64>(), count in 257u32..) {
            let mut buf = txn.to_le_bytes().to_vec();
            buf.push(1);
            buf.extend_from_slice(&0u64.to_le_bytes());
            buf.extend_from_slice(&count.to_le_bytes());
            prop_assert!(TxnRecord::decode(RECORD_KIND_TXN_DECISION, &buf).is_err());
        }
    }
}
