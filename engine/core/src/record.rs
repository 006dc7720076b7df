//! The engine's WAL record payload: one record holds one atomic batch of mutations (a single
//! put is a batch of one). The WAL frames and checksums it; this module only encodes the body.
//!
//! Layout (little endian), version 1 — see docs/formats.md:
//! `count u32`, then per mutation: `op u8` (1 = put, 2 = delete), `key_len u32`, key bytes,
//! and for a put: `expires_at_ms u64` (0 = never), `value_len u32`, value bytes.

/// WAL record kind of a mutation batch.
pub const RECORD_KIND_BATCH: u8 = 1;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One mutation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    Delete {
        key: Vec<u8>,
    },
}

impl Mutation {
    pub fn key(&self) -> &[u8] {
        match self {
            Mutation::Put { key, .. } | Mutation::Delete { key } => key,
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Mutation::Put { key, value, .. } => 1 + 4 + key.len() + 8 + 4 + value.len(),
            Mutation::Delete { key } => 1 + 4 + key.len(),
        }
    }
}

pub fn encode(batch: &[Mutation]) -> Vec<u8> {
    let len = 4 + batch.iter().map(Mutation::encoded_len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    for m in batch {
        match m {
            Mutation::Put {
                key,
                value,
                expires_at_ms,
            } => {
                out.push(OP_PUT);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&expires_at_ms.unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
            }
            Mutation::Delete { key } => {
                out.push(OP_DELETE);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
            }
        }
    }
    debug_assert_eq!(out.len(), len);
    out
}

/// Why a payload could not be decoded. The WAL's CRC passed, so this means a bug or a record
/// written by an incompatible version: recovery stops on it.
#[derive(Debug, thiserror::Error)]
#[error("undecodable batch record at byte {at}: {reason}")]
pub struct DecodeError {
    pub at: usize,
    pub reason: &'static str,
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError {
                at: self.at,
                reason: "truncated",
            })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

pub fn decode(buf: &[u8]) -> Result<Vec<Mutation>, DecodeError> {
    let mut r = Reader { buf, at: 0 };
    let count = r.u32()? as usize;
    // Each mutation takes at least 5 bytes: bound the allocation by what the buffer can hold.
    if count > buf.len() / 5 {
        return Err(DecodeError {
            at: 0,
            reason: "mutation count larger than the record",
        });
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.at;
        match r.u8()? {
            OP_PUT => {
                let key = r.bytes()?;
                let expires = r.u64()?;
                let value = r.bytes()?;
                out.push(Mutation::Put {
                    key,
                    value,
                    expires_at_ms: (expires != 0).then_some(expires),
                });
            }
            OP_DELETE => out.push(Mutation::Delete { key: r.bytes()? }),
            _ => {
                return Err(DecodeError {
                    at,
                    reason: "unknown mutation op",
                })
            }
        }
    }
    if r.at != buf.len() {
        return Err(DecodeError {
            at: r.at,
            reason: "trailing bytes",
        });
    }
    Ok(out)
}

/// Issue 10: WAL record kind of a mutation batch stamped with its commit time (for
/// point-in-time recovery): `committed_at_ms u64` (unix ms, little endian), then the kind-1
/// body. Kind-1 records stay readable; they carry no time.
pub const RECORD_KIND_TIMED_BATCH: u8 = 2;

/// Issue 10: encodes a kind-2 record (see [`RECORD_KIND_TIMED_BATCH`]).
pub fn encode_timed(committed_at_ms: u64, batch: &[Mutation]) -> Vec<u8> {
    let body = encode(batch);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&committed_at_ms.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Issue 10: the commit time a record carries: a timed batch (kind 2), and the two-phase
/// commit's Decision (kind 4) and Commit (kind 5), which carry the same time for one
/// transaction — so point-in-time recovery cuts a multi-shard transaction on every shard at
/// once (its Prepares carry no time; a Prepare left without its Commit and Decision is
/// aborted at open). `None` for kinds without a time.
pub fn committed_at_ms(kind: u8, payload: &[u8]) -> Option<u64> {
    use crate::twopc::record::{RECORD_KIND_TXN_COMMIT, RECORD_KIND_TXN_DECISION};
    let at = match kind {
        RECORD_KIND_TIMED_BATCH => 0,
        // Decision: txn u64, commit u8, committed_at_ms u64.
        RECORD_KIND_TXN_DECISION => 9,
        // Commit: txn u64, committed_at_ms u64.
        RECORD_KIND_TXN_COMMIT => 8,
        _ => return None,
    };
    let mut b = [0u8; 8];
    b.copy_from_slice(payload.get(at..at + 8)?);
    Some(u64::from_le_bytes(b))
}

/// Issue 10: the mutations of a batch record of either kind; `None` for other kinds.
pub fn decode_batch_kind(kind: u8, payload: &[u8]) -> Option<Result<Vec<Mutation>, DecodeError>> {
    match kind {
        RECORD_KIND_BATCH => Some(decode(payload)),
        RECORD_KIND_TIMED_BATCH => Some(match payload.get(8..) {
            Some(body) => decode(body).map_err(|e| DecodeError {
                at: e.at + 8,
                reason: e.reason,
            }),
            None => Err(DecodeError {
                at: 0,
                reason: "commit time cut short",
            }),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Point-in-time recovery cuts by these times: a two-phase commit's Decision and Commit
    /// carry the same one, its Prepare, Abort and End none.
    #[test]
    fn commit_times_of_two_phase_records() {
        use crate::twopc::record::TxnRecord;
        let at = 1_700_000_123_456;
        let decision = TxnRecord::Decision {
            txn: 7,
            commit: true,
            parallel: true,
            committed_at_ms: at,
            participants: vec![0, 1],
        };
        let commit = TxnRecord::Commit {
            txn: 7,
            committed_at_ms: at,
        };
        for r in [&decision, &commit] {
            assert_eq!(committed_at_ms(r.kind(), &r.encode()), Some(at), "{r:?}");
        }
        let prepare = TxnRecord::Prepare {
            txn: 7,
            coordinator: 0,
            writes: Vec::new(),
        };
        for r in [
            &prepare,
            &TxnRecord::Abort { txn: 7 },
            &TxnRecord::End { txn: 7 },
        ] {
            assert_eq!(committed_at_ms(r.kind(), &r.encode()), None, "{r:?}");
        }
        assert_eq!(committed_at_ms(commit.kind(), &[1, 2, 3]), None);
        assert_eq!(committed_at_ms(RECORD_KIND_BATCH, &encode(&[])), None);
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<Vec<u8>>(), any::<Vec<u8>>(), any::<Option<u64>>()).prop_map(
                |(key, value, e)| Mutation::Put {
                    key,
                    value,
                    expires_at_ms: e.filter(|&x| x != 0),
                }
            ),
            any::<Vec<u8>>().prop_map(|key| Mutation::Delete { key }),
        ]
    }

    #[test]
    fn timed_batch_round_trips_and_kind_one_stays_readable() {
        let batch = vec![Mutation::Delete { key: b"k".to_vec() }];
        let p = encode_timed(1_764_343_200_123, &batch);
        assert_eq!(
            committed_at_ms(RECORD_KIND_TIMED_BATCH, &p),
            Some(1_764_343_200_123)
        );
        assert_eq!(committed_at_ms(RECORD_KIND_BATCH, &p), None);
        assert_eq!(
            decode_batch_kind(RECORD_KIND_TIMED_BATCH, &p)
                .unwrap()
                .unwrap(),
            batch
        );
        let old = encode(&batch);
        assert_eq!(
            decode_batch_kind(RECORD_KIND_BATCH, &old).unwrap().unwrap(),
            batch
        );
        assert!(decode_batch_kind(RECORD_KIND_TIMED_BATCH, &p[..5])
            .unwrap()
            .is_err());
        assert!(decode_batch_kind(3, &p).is_none());
    }

    proptest! {
        #[test]
        fn round_trip(batch in proptest::collection::vec(mutation(), 0..20)) {
            prop_assert_eq!(decode(&encode(&batch)).unwrap(), batch);
        }

        #[test]
        fn decode_never_panics(buf in any::<Vec<u8>>()) {
            let _ = decode(&buf);
        }
    }
}
