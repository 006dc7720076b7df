//! Lock modes and the standard multi-granularity compatibility matrix (Gray et al.).

use serde::{Deserialize, Serialize};

/// A lock mode. Intention modes (IS, IX, SIX) are taken on ancestors so that a coarse lock
/// (a table X) conflicts with fine locks below it (row S) without scanning the rows.
#[allow(clippy::upper_case_acronyms)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum LockMode {
    /// Intention shared: some descendant is (or will be) locked S.
    #[default]
    IS = 0,
    /// Intention exclusive: some descendant is (or will be) locked X.
    IX = 1,
    /// Shared.
    S = 2,
    /// Shared + intention exclusive: read the whole subtree, write some descendants.
    SIX = 3,
    /// Exclusive.
    X = 4,
}

/// Number of lock modes; per-mode counters are arrays of this length.
pub const MODE_COUNT: usize = 5;

const COMPATIBLE: [[bool; MODE_COUNT]; MODE_COUNT] = [
    //  IS     IX     S      SIX    X
    [true, true, true, true, false],     // IS
    [true, true, false, false, false],   // IX
    [true, false, true, false, false],   // S
    [true, false, false, false, false],  // SIX
    [false, false, false, false, false], // X
];

// The least upper bound in the mode lattice IS < {IX, S} < SIX < X: what a holder of `a` that
// asks for `b` must end up holding (an upgrade).
const SUPREMUM: [[LockMode; MODE_COUNT]; MODE_COUNT] = {
    use LockMode::*;
    [
        [IS, IX, S, SIX, X],
        [IX, IX, SIX, SIX, X],
        [S, SIX, S, SIX, X],
        [SIX, SIX, SIX, SIX, X],
        [X, X, X, X, X],
    ]
};

impl LockMode {
    /// Every mode, in index order.
    pub const ALL: [LockMode; MODE_COUNT] = [
        LockMode::IS,
        LockMode::IX,
        LockMode::S,
        LockMode::SIX,
        LockMode::X,
    ];

    /// Index into per-mode arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether two different transactions may hold `self` and `other` on one resource at once.
    pub fn compatible(self, other: LockMode) -> bool {
        COMPATIBLE[self.index()][other.index()]
    }

    /// The weakest mode at least as strong as both.
    pub fn supremum(self, other: LockMode) -> LockMode {
        SUPREMUM[self.index()][other.index()]
    }

    /// Whether holding `self` already grants everything `other` would.
    pub fn covers(self, other: LockMode) -> bool {
        self.supremum(other) == self
    }

    /// The mode to hold on every ancestor before taking `self` on a resource.
    pub fn intention(self) -> LockMode {
        match self {
            LockMode::IS | LockMode::S => LockMode::IS,
            LockMode::IX | LockMode::SIX | LockMode::X => LockMode::IX,
        }
    }

    /// Whether `self` is compatible with every mode present in `counts` (granted per mode).
    pub fn compatible_with_counts(self, counts: &[u32; MODE_COUNT]) -> bool {
        LockMode::ALL
            .iter()
            .all(|m| counts[m.index()] == 0 || self.compatible(*m))
    }

    /// The conventional short name ("IS", "SIX", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::IS => "IS",
            LockMode::IX => "IX",
            LockMode::S => "S",
            LockMode::SIX => "SIX",
            LockMode::X => "X",
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
