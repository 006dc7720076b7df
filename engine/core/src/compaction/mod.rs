//! Compaction *strategy*: decides which segments to merge. The merge itself is done by the
//! shard's maintenance worker (`shard/maintenance.rs`); keeping the choice apart makes it a
//! pure function that tests can drive with any shape of segment list.
//!
//! Size-tiered over an age-ordered list: segments are kept newest first, and only a run of
//! *adjacent* segments may be merged, so that "newer shadows older" still holds for the merged
//! output placed where the run was. Among the runs of `MERGE_WIDTH`, the one with the smallest
//! total size is chosen: merging similar small files first bounds write amplification, and big
//! old files are rewritten only when the small ones have grown into their size class.

use crate::manifest::SegmentRef;

/// How many adjacent segments one compaction merges at most.
pub const MERGE_WIDTH: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPlan {
    /// Index (in the newest-first list) of the newest segment of the run.
    pub start: usize,
    /// Number of adjacent segments to merge.
    pub count: usize,
    /// The run includes the oldest segment: nothing older can hold a key a tombstone hides,
    /// so tombstones and expired values are dropped instead of carried along.
    pub drop_tombstones: bool,
}

/// Chooses a compaction when the shard holds more than `segments_max` segments.
pub fn choose(segments: &[SegmentRef], segments_max: usize) -> Option<CompactionPlan> {
    if segments.len() <= segments_max.max(1) {
        return None;
    }
    let width = MERGE_WIDTH.min(segments.len()).max(2);
    let (start, _) = (0..=segments.len() - width)
        .map(|i| {
            (
                i,
                segments[i..i + width]
                    .iter()
                    .map(|s| s.size_bytes)
                    .sum::<u64>(),
            )
        })
        .min_by_key(|&(i, total)| (total, std::cmp::Reverse(i)))?;
    Some(CompactionPlan {
        start,
        count: width,
        drop_tombstones: start + width == segments.len(),
    })
}

/// A plan that merges every segment into one (an operator's or a test's explicit request).
pub fn choose_full(segments: &[SegmentRef]) -> Option<CompactionPlan> {
    if segments.len() < 2 {
        return None;
    }
    Some(CompactionPlan {
        start: 0,
        count: segments.len(),
        drop_tombstones: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(sizes: &[u64]) -> Vec<SegmentRef> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| SegmentRef {
                id: 100 - i as u64,
                size_bytes: s,
                entries: 1,
                lsn_max: 100 - i as u64,
            })
            .collect()
    }

    #[test]
    fn nothing_to_do_under_the_limit() {
        assert_eq!(choose(&segs(&[1, 2, 3]), 8), None);
    }

    #[test]
    fn merges_the_smallest_adjacent_run() {
        let s = segs(&[10, 10, 10, 10, 1000, 5000, 9000, 1, 1, 1]);
        let plan = choose(&s, 8);
        assert_eq!(
            plan,
            Some(CompactionPlan {
                start: 0,
                count: 4,
                drop_tombstones: false
            })
        );
    }

    #[test]
    fn oldest_run_drops_tombstones() {
        let s = segs(&[900, 900, 900, 900, 900, 1, 1, 1, 1]);
        let plan = choose(&s, 8).unwrap_or_else(|| panic!("a plan"));
        assert_eq!(plan.start, 5);
        assert!(plan.drop_tombstones);
    }

    #[test]
    fn full_compaction_takes_everything() {
        assert_eq!(choose_full(&segs(&[1])), None);
        assert_eq!(
            choose_full(&segs(&[1, 2])),
            Some(CompactionPlan {
                start: 0,
                count: 2,
                drop_tombstones: true
            })
        );
    }
}
