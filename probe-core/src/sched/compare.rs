//! `cmp(target, current)` of SEMANTICS §14.6.

/// Where the current coordinate vector stands relative to a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetOrder {
    /// `cmp > 0`: not reached yet (includes a deeper target whose prefix matches).
    NotReached,
    /// `cmp == 0`: the exact target.
    Hit,
    /// `cmp < 0`: passed (includes a target that is a strict prefix of the
    /// current vector).
    Passed,
}

/// Lexicographic over the common length; if equal there, the shorter vector
/// is smaller.
pub fn compare_target(target: &[u64], current: &[u64]) -> TargetOrder {
    match target.cmp(current) {
        std::cmp::Ordering::Greater => TargetOrder::NotReached,
        std::cmp::Ordering::Equal => TargetOrder::Hit,
        std::cmp::Ordering::Less => TargetOrder::Passed,
    }
}
