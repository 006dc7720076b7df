//! [`SegmentIter`]: an async cursor over a key range of one segment.

use std::ops::Bound;
use std::rc::Rc;

use crate::block::Block;
use crate::entry::Entry;
use crate::error::Result;
use crate::index;
use crate::reader::Segment;

/// Yields a segment's entries within a range in key order, one block read at a time. After
/// an error it is finished (returns `Ok(None)`).
pub struct SegmentIter {
    segment: Rc<Segment>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    fill_cache: bool,
    /// The block being read and the position of the next entry in it.
    block: Option<Rc<Block>>,
    block_idx: usize,
    pos: usize,
    /// Whether the lower bound was applied (only to the first block read).
    positioned: bool,
    done: bool,
}

fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl SegmentIter {
    pub(crate) fn new(
        segment: Rc<Segment>,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        fill_cache: bool,
    ) -> Self {
        let block_idx = match range.0 {
            Bound::Included(k) | Bound::Excluded(k) => index::find_block(segment.blocks(), k),
            Bound::Unbounded => 0,
        };
        SegmentIter {
            segment,
            lower: owned(range.0),
            upper: owned(range.1),
            fill_cache,
            block: None,
            block_idx,
            pos: 0,
            positioned: false,
            done: false,
        }
    }

    /// The next entry, or `None` past the end of the range.
    pub async fn next(&mut self) -> Result<Option<Entry>> {
        while !self.done {
            let block = match &self.block {
                Some(block) => block.clone(),
                None => match self.load().await {
                    Ok(Some(block)) => block,
                    Ok(None) => {
                        self.done = true;
                        break;
                    }
                    Err(e) => {
                        self.done = true;
                        return Err(e);
                    }
                },
            };
            if self.pos >= block.len() {
                self.block = None;
                self.block_idx += 1;
                // Long scans over cached blocks never wait on I/O: yield between blocks.
                glommio::yield_if_needed().await;
                continue;
            }
            let past_end = match &self.upper {
                Bound::Included(u) => block.key(self.pos) > u.as_slice(),
                Bound::Excluded(u) => block.key(self.pos) >= u.as_slice(),
                Bound::Unbounded => false,
            };
            if past_end {
                self.done = true;
                break;
            }
            let entry = block.entry(self.pos);
            self.pos += 1;
            return Ok(Some(entry));
        }
        Ok(None)
    }

    /// Reads the block at `block_idx` and positions in it; `None` past the last block.
    async fn load(&mut self) -> Result<Option<Rc<Block>>> {
        if self.block_idx >= self.segment.blocks().len() {
            return Ok(None);
        }
        let block = self
            .segment
            .read_block(self.block_idx, self.fill_cache)
            .await?;
        self.pos = 0;
        if !self.positioned {
            self.positioned = true;
            self.pos = match &self.lower {
                Bound::Included(k) => block.seek(k),
                Bound::Excluded(k) => {
                    let i = block.seek(k);
                    if i < block.len() && block.key(i) == k.as_slice() {
                        i + 1
                    } else {
                        i
                    }
                }
                Bound::Unbounded => 0,
            };
        }
        self.block = Some(block.clone());
        Ok(Some(block))
    }
}
