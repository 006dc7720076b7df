//! The read path: point lookups (memtables newest first, then segments newest first; the
//! first hit wins because the apply order guarantees newer sources hold newer versions) and
//! merged range scans.

use std::ops::Bound;
use std::rc::Rc;

use mantis_table::{Entry, EntryKind, SegmentIter};

use super::{live_value, MemRef, Shard};
use crate::error::{EngineError, Result};
use crate::event::now_ms;
use crate::shard::write::ValueEntry;

/// Work that runs over a shard's entries where they live (see `EngineHandle::scan_visit_on`):
/// built on the owning shard, fed every live entry of the range in key order, then turned
/// into a `Send` result for the caller.
pub trait ScanVisitor {
    type Output: Send + 'static;
    /// Takes one live entry; false stops the scan (for example after an error, which
    /// `finish` then reports).
    fn visit(&mut self, key: &[u8], value: &[u8]) -> bool;
    fn finish(self) -> Self::Output;
}

/// A key range for scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl ScanRange {
    pub fn all() -> Self {
        ScanRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let start = if prefix.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(prefix.to_vec())
        };
        ScanRange {
            start,
            end: prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
        }
    }

    /// The same range, restarted just after `key` (cursor-style paging).
    pub fn after(&self, key: &[u8]) -> Self {
        ScanRange {
            start: Bound::Excluded(key.to_vec()),
            end: self.end.clone(),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let lo = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let hi = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        lo && hi
    }
}

/// The smallest key greater than every key with this prefix, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One input of a merged scan.
enum Source {
    /// A memtable read by re-seeking after the last key returned: the active memtable may
    /// change between awaits, and a `BTreeMap` iterator cannot be held across them.
    Mem {
        table: MemRef,
        last: Option<Vec<u8>>,
        range: ScanRange,
    },
    Seg(SegmentIter),
}

impl Source {
    async fn next(&mut self, shard: usize) -> Result<Option<Entry>> {
        match self {
            Source::Mem { table, last, range } => {
                let start: Bound<&[u8]> = match last {
                    Some(k) => Bound::Excluded(k.as_slice()),
                    None => as_ref_bound(&range.start),
                };
                let t = table.borrow();
                let item = t
                    .next_in_range(start, as_ref_bound(&range.end))
                    .map(|(k, v)| Entry {
                        key: k.to_vec(),
                        lsn: v.lsn,
                        kind: v.kind.clone(),
                    });
                drop(t);
                if let Some(e) = &item {
                    *last = Some(e.key.clone());
                }
                Ok(item)
            }
            Source::Seg(it) => it.next().await.map_err(|e| EngineError::table(shard, e)),
        }
    }
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A k-way merge of sources given newest first: for each key, the newest source's version wins.
pub(crate) struct Merger {
    shard: usize,
    sources: Vec<Source>,
    heads: Vec<Option<Entry>>,
    started: bool,
}

impl Merger {
    /// A merge of the given segments only (compaction input), newest first.
    pub fn over_segments(
        shard: usize,
        segments: &[Rc<super::LiveSegment>],
        range: &ScanRange,
    ) -> Merger {
        let sources: Vec<Source> = segments
            .iter()
            .map(|s| {
                Source::Seg(
                    s.seg
                        .iter((as_ref_bound(&range.start), as_ref_bound(&range.end))),
                )
            })
            .collect();
        let n = sources.len();
        Merger {
            shard,
            sources,
            heads: vec![None; n],
            started: false,
        }
    }

    /// The next key in order with its newest version (tombstones included).
    pub async fn next(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            for (i, s) in self.sources.iter_mut().enumerate() {
                self.heads[i] = s.next(self.shard).await?;
            }
            self.started = true;
        }
        let Some(min_key) = self.heads.iter().flatten().map(|e| &e.key).min().cloned() else {
            return Ok(None);
        };
        let mut winner: Option<Entry> = None;
        for i in 0..self.sources.len() {
            if matches!(&self.heads[i], Some(e) if e.key == min_key) {
                let e = self.heads[i]
                    .take()
                    .ok_or_else(|| EngineError::Invalid("merge head vanished".into()))?;
                // Sources are newest first: the first one holding the key wins.
                winner.get_or_insert(e);
                self.heads[i] = self.sources[i].next(self.shard).await?;
            }
        }
        Ok(winner)
    }
}

impl Shard {
    /// The newest version of `key` (tombstones included), without the TTL check.
    pub(crate) async fn lookup(&self, key: &[u8]) -> Result<Option<EntryKind>> {
        // Issue 9: a decided 2PC write waiting for its Commit record is the newest version.
        if let Some(kind) = self.tpc.decided.get(key) {
            return Ok(Some(kind));
        }
        let segments = {
            let st = self.state.borrow();
            if let Some(v) = st.active.borrow().get(key) {
                return Ok(Some(v.kind.clone()));
            }
            for m in &st.frozen {
                if let Some(v) = m.borrow().get(key) {
                    return Ok(Some(v.kind.clone()));
                }
            }
            st.segments.clone()
        };
        for s in segments {
            match s.seg.get_located(key).await {
                Ok(Some((e, block))) => {
                    self.cold.tracker.borrow_mut().touch(s.r.id, block);
                    return Ok(Some(e.kind));
                }
                Ok(None) => {}
                Err(e) => {
                    if e.is_corruption() {
                        let event = crate::scrub::CorruptionEvent::from_table(self.id, &e);
                        self.integrity.record(event);
                    }
                    let err = EngineError::table(self.id, e);
                    if err.is_corruption() {
                        self.counters
                            .corruption_errors
                            .set(self.counters.corruption_errors.get() + 1);
                        tracing::error!(shard = self.id, error = %err, "corruption detected on read");
                    }
                    return Err(err);
                }
            }
        }
        Ok(None)
    }

    /// A merged view of every source in `range`, newest first.
    pub(crate) fn merger(&self, range: &ScanRange) -> Merger {
        let st = self.state.borrow();
        let mut sources = Vec::with_capacity(2 + st.frozen.len() + st.segments.len());
        // Issue 9: decided 2PC writes not yet applied are newer than the memtables.
        if let Some(decided) = self.tpc.decided.snapshot(range) {
            sources.push(Source::Mem {
                table: Rc::new(std::cell::RefCell::new(decided)),
                last: None,
                range: range.clone(),
            });
        }
        for m in std::iter::once(&st.active).chain(st.frozen.iter()) {
            sources.push(Source::Mem {
                table: m.clone(),
                last: None,
                range: range.clone(),
            });
        }
        for s in &st.segments {
            sources.push(Source::Seg(
                s.seg
                    .iter((as_ref_bound(&range.start), as_ref_bound(&range.end))),
            ));
        }
        let n = sources.len();
        Merger {
            shard: self.id,
            sources,
            heads: vec![None; n],
            started: false,
        }
    }

    /// Up to `limit` live entries of `range`, in key order.
    pub async fn scan(
        self: &Rc<Self>,
        range: &ScanRange,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, ValueEntry)>> {
        let now = now_ms();
        let mut merger = self.merger(range);
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(e) = merger.next().await? else { break };
            if let Some((value, expires_at_ms)) = live_value(&e.kind, now) {
                out.push((
                    e.key.clone(),
                    ValueEntry {
                        value: value.clone(),
                        expires_at_ms,
                    },
                ));
            }
            glommio::yield_if_needed().await;
        }
        Ok(out)
    }

    /// Hands each live entry of `range`, in key order, to `visit` on this shard without
    /// collecting them: a scan that filters or aggregates where the data lives sends back
    /// only its small result (issue 6). Stops early when `visit` returns false.
    pub async fn scan_visit(
        self: &Rc<Self>,
        range: &ScanRange,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let now = now_ms();
        let mut merger = self.merger(range);
        while let Some(e) = merger.next().await? {
            if let Some((value, _)) = live_value(&e.kind, now) {
                if !visit(&e.key, value) {
                    break;
                }
            }
            glommio::yield_if_needed().await;
        }
        Ok(())
    }

    /// Counts live keys (DBSIZE): a full merged scan.
    pub async fn count_live(self: &Rc<Self>) -> Result<u64> {
        let now = now_ms();
        let mut merger = self.merger(&ScanRange::all());
        let mut n = 0u64;
        while let Some(e) = merger.next().await? {
            if live_value(&e.kind, now).is_some() {
                n += 1;
            }
            glommio::yield_if_needed().await;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        let r = ScanRange::prefix(b"ab");
        assert!(r.contains(b"ab"));
        assert!(r.contains(b"ab\xff\xff"));
        assert!(!r.contains(b"ac"));
        assert!(!r.contains(b"aa\xff"));
        let r = ScanRange::prefix(b"a\xff");
        assert!(r.contains(b"a\xff\x00"));
        assert!(!r.contains(b"b"));
        let r = ScanRange::prefix(b"\xff\xff");
        assert_eq!(r.end, Bound::Unbounded);
        assert!(r.contains(b"\xff\xff\x01"));
    }
}
