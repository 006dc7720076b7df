//! Per-epoch access tracking of segment blocks. The current epoch's touched block ids are an
//! exact set; when the epoch closes the set is frozen into a binary fuse filter (`xorf`), so
//! the history costs about 18 bits per touched block instead of a hash-set entry. A block is
//! cold when its segment has existed for the whole window and no filter of the window (nor
//! the current set) contains it. Filters have false positives (1/65536 for 16-bit
//! fingerprints): a cold block can look touched and stay hot, never the reverse.

use std::collections::{HashMap, HashSet, VecDeque};

use xorf::{BinaryFuse16, Filter as _};

/// Touched blocks remembered per epoch; past this the epoch counts as touching everything
/// (nothing turns cold on an epoch we could not record).
pub const TOUCHED_PER_EPOCH_MAX: usize = 1 << 20;
/// Closed epochs kept; `cold_after_epochs` may not exceed it.
pub const EPOCH_HISTORY_MAX: usize = 1024;

/// One closed epoch's record.
enum Closed {
    /// Nothing touched.
    Empty,
    Filter(BinaryFuse16),
    /// The set overflowed `TOUCHED_PER_EPOCH_MAX` (or the filter could not be built).
    Everything,
}

impl Closed {
    fn contains(&self, id: u64) -> bool {
        match self {
            Closed::Empty => false,
            Closed::Filter(f) => f.contains(&id),
            Closed::Everything => true,
        }
    }
}

/// The id of block `block` of segment `segment_id`.
pub fn block_id(segment_id: u64, block: usize) -> u64 {
    // Mixed so that the filter sees well-spread keys (fuse construction needs distinct,
    // random-looking keys; sequential ids are fine but mixing costs nothing).
    let x = (segment_id << 24) ^ block as u64;
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) ^ segment_id
}

pub struct AccessTracker {
    /// The number of the current (open) epoch; epochs close 0, 1, 2, …
    epoch: u64,
    current: HashSet<u64>,
    current_overflowed: bool,
    /// Newest last.
    history: VecDeque<Closed>,
    /// Epoch in which each tracked segment appeared.
    born: HashMap<u64, u64>,
}

impl Default for AccessTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl AccessTracker {
    pub fn new() -> Self {
        AccessTracker {
            epoch: 0,
            current: HashSet::new(),
            current_overflowed: false,
            history: VecDeque::new(),
            born: HashMap::new(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts tracking a segment (new segments are never cold before a full window).
    pub fn segment_added(&mut self, segment_id: u64) {
        self.born.entry(segment_id).or_insert(self.epoch);
    }

    pub fn segment_removed(&mut self, segment_id: u64) {
        self.born.remove(&segment_id);
    }

    /// Forgets every segment not in `live`.
    pub fn retain_segments(&mut self, live: &[u64]) {
        self.born.retain(|id, _| live.contains(id));
    }

    pub fn touch(&mut self, segment_id: u64, block: usize) {
        if self.current.len() >= TOUCHED_PER_EPOCH_MAX {
            self.current_overflowed = true;
            return;
        }
        self.current.insert(block_id(segment_id, block));
    }

    /// Closes the current epoch: its set becomes a filter.
    pub fn close_epoch(&mut self) {
        let keys: Vec<u64> = self.current.drain().collect();
        let closed = if self.current_overflowed {
            Closed::Everything
        } else if keys.is_empty() {
            Closed::Empty
        } else {
            BinaryFuse16::try_from(keys.as_slice()).map_or(Closed::Everything, Closed::Filter)
        };
        self.current_overflowed = false;
        self.history.push_back(closed);
        while self.history.len() > EPOCH_HISTORY_MAX {
            self.history.pop_front();
        }
        self.epoch += 1;
    }

    /// Whether block `block` of `segment_id` went untouched for the last `window` closed
    /// epochs (and the current one) and its segment is at least that old.
    pub fn is_cold(&self, segment_id: u64, block: usize, window: usize) -> bool {
        assert!((1..=EPOCH_HISTORY_MAX).contains(&window), "window {window}");
        let Some(&born) = self.born.get(&segment_id) else {
            return false;
        };
        if self.epoch < born + window as u64 || self.history.len() < window {
            return false;
        }
        let id = block_id(segment_id, block);
        if self.current.contains(&id) || self.current_overflowed {
            return false;
        }
        !self
            .history
            .iter()
            .rev()
            .take(window)
            .any(|c| c.contains(id))
    }

    /// Bytes of memory the closed filters take (for the stats).
    pub fn history_bytes(&self) -> usize {
        self.history
            .iter()
            .map(|c| match c {
                Closed::Filter(f) => f.fingerprints.len() * 2,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_access_marks_exactly_the_untouched_blocks() {
        let mut t = AccessTracker::new();
        const BLOCKS: usize = 3000;
        for seg in 1..=3 {
            t.segment_added(seg);
        }
        // Epoch 0: everything read. Epochs 1-3: segment 1's even blocks, segment 2's blocks
        // divisible by 3 in epoch 2 only; segment 3 never again.
        for b in 0..BLOCKS {
            for seg in 1..=3 {
                t.touch(seg, b);
            }
        }
        t.close_epoch();
        for epoch in 1..=3 {
            for b in 0..BLOCKS {
                if b % 2 == 0 {
                    t.touch(1, b);
                }
                if epoch == 2 && b % 3 == 0 {
                    t.touch(2, b);
                }
            }
            t.close_epoch();
        }
        for b in 0..BLOCKS {
            assert_eq!(t.is_cold(1, b, 3), b % 2 == 1, "seg 1 block {b}");
            assert_eq!(t.is_cold(2, b, 3), b % 3 != 0, "seg 2 block {b}");
            assert!(t.is_cold(3, b, 3), "seg 3 block {b}");
            // Window 1 (only epoch 3): segment 2's epoch-2 reads are outside it.
            assert!(t.is_cold(2, b, 1));
            // Window 4 reaches epoch 0, when everything was read.
            assert!(!t.is_cold(3, b, 4));
        }
        // A read in the open epoch makes a block hot at once.
        t.touch(3, 7);
        assert!(!t.is_cold(3, 7, 3));
        // A segment younger than the window is never cold.
        t.segment_added(9);
        t.close_epoch();
        assert!(!t.is_cold(9, 0, 3));
        assert!(t.history_bytes() > 0);
    }

    #[test]
    fn overflowed_epoch_keeps_everything_hot() {
        let mut t = AccessTracker::new();
        t.segment_added(1);
        t.close_epoch();
        t.current_overflowed = true;
        t.close_epoch();
        assert!(!t.is_cold(1, 0, 1));
        t.close_epoch();
        assert!(t.is_cold(1, 0, 1));
        assert!(!t.is_cold(1, 0, 2));
    }
}
