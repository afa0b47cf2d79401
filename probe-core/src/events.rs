//! The hook kinds the runtime counts and the names `_retrace._hook_counts()`
//! reports for them. What each hook does lives in [`crate::coords`].

use retrace_abi::HookKind;

/// Every hook kind, in ABI order.
pub const ALL_KINDS: [HookKind; 8] = [
    HookKind::EvalEntry,
    HookKind::StartFrame,
    HookKind::ThrowEntry,
    HookKind::EvalBreaker,
    HookKind::CurrentFrameStore,
    HookKind::FrameClearAndPop,
    HookKind::ThreadStatePopFrame,
    HookKind::FrameCopy,
];

/// The name `_retrace._hook_counts()` reports for a kind.
pub fn kind_name(kind: HookKind) -> &'static str {
    match kind {
        HookKind::EvalEntry => "eval_entry",
        HookKind::StartFrame => "start_frame",
        HookKind::ThrowEntry => "throw_entry",
        HookKind::EvalBreaker => "eval_breaker",
        HookKind::CurrentFrameStore => "current_frame_store",
        HookKind::FrameClearAndPop => "frame_clear_and_pop",
        HookKind::ThreadStatePopFrame => "thread_state_pop_frame",
        HookKind::FrameCopy => "frame_copy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = ALL_KINDS.iter().map(|&k| kind_name(k)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 8);
    }
}
