//! Every piece of per-CPython-version knowledge, in one place.
//!
//! The analysis is generic: it looks things up by the names listed here and
//! verifies what it finds in the binary. When a new CPython release needs
//! different names or a different mechanism, this file is where it goes.

use crate::model::{DetourKind, FunctionRole, LabelRole, PyVersion, TableEntryKind};

/// How a version records the executing instruction in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstrField {
    /// 3.11/3.12: `prev_instr`, the last started instruction (index − 1 before the first).
    PrevInstr,
    /// 3.13+: `instr_ptr`, the current instruction.
    InstrPtr,
}

/// Where the eval loop keeps "the current frame" of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurrentFrameHome {
    /// A `_PyCFrame` local of the eval function (`cframe.current_frame`), 3.11/3.12.
    CFrameLocal {
        variable: &'static str,
        field: &'static str,
    },
    /// A field of the thread state (`tstate->current_frame`), 3.13+.
    ThreadStateField { field: &'static str },
}

/// Whether the rewriter can instrument a version or only analyse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Analysis and instrumentation.
    Instrument,
    /// `inspect` reports what it finds; `instrument` refuses with the reason.
    AnalyseOnly(&'static str),
}

/// Static, per-minor-version knowledge.
#[derive(Debug)]
pub struct VersionProfile {
    pub series: (u8, u8),
    pub support: Support,
    pub eval_function: &'static str,
    /// Name of the computed-goto table variable (the symbol gets a `.N` suffix).
    pub table_variable: &'static str,
    /// DWARF label prefix of the opcode handlers.
    pub handler_label_prefix: &'static str,
    /// Label of the shared handler of undefined opcodes.
    pub unknown_opcode_label: &'static str,
    /// Handler names whose table slots are never redirected, and why.
    pub never_redirected: &'static [(&'static str, TableEntryKind)],
    pub instr_field: InstrField,
    pub current_frame: CurrentFrameHome,
    /// Eval-function labels the analysis resolves.
    pub labels: &'static [(LabelRole, &'static str)],
    /// Out-of-line functions of the frame lifecycle and identity hooks.
    pub functions: &'static [(FunctionRole, &'static str)],
    /// Functions whose entries are detoured to runtime replacements.
    pub detours: &'static [(DetourKind, &'static str)],
    /// Static arrays copied into the descriptor: (inline cache sizes, deopt map).
    pub opcode_arrays: (&'static str, &'static str),
    /// `(struct, fields)` whose offsets the runtime needs; nested fields use `.`.
    pub struct_fields: &'static [(&'static str, &'static [&'static str])],
}

const LABELS_311_312: &[(LabelRole, &str)] = &[
    (LabelRole::StartFrame, "start_frame"),
    (LabelRole::ResumeFrame, "resume_frame"),
    (LabelRole::ResumeWithError, "resume_with_error"),
    (LabelRole::HandleEvalBreaker, "handle_eval_breaker"),
    (LabelRole::Error, "error"),
    (LabelRole::ExceptionUnwind, "exception_unwind"),
    (LabelRole::ExitUnwind, "exit_unwind"),
];

const PY311: VersionProfile = VersionProfile {
    series: (3, 11),
    support: Support::AnalyseOnly(
        "3.11 dispatches through DO_TRACING and keeps oparg in a caller-saved register; \
         its hook set is not implemented yet",
    ),
    eval_function: "_PyEval_EvalFrameDefault",
    table_variable: "opcode_targets",
    handler_label_prefix: "TARGET_",
    unknown_opcode_label: "_unknown_opcode",
    never_redirected: &[
        ("DO_TRACING", TableEntryKind::DoTracing),
        ("CACHE", TableEntryKind::Cache),
    ],
    instr_field: InstrField::PrevInstr,
    current_frame: CurrentFrameHome::CFrameLocal {
        variable: "cframe",
        field: "current_frame",
    },
    labels: LABELS_311_312,
    functions: &[
        (FunctionRole::EvalFrameDefault, "_PyEval_EvalFrameDefault"),
        (FunctionRole::FrameCopy, "_PyFrame_Copy"),
        (FunctionRole::ThreadStatePopFrame, "_PyThreadState_PopFrame"),
        (FunctionRole::HashPointer, "_Py_HashPointer"),
        (FunctionRole::Dealloc, "_Py_Dealloc"),
    ],
    detours: &[],
    opcode_arrays: ("_PyOpcode_Caches", "_PyOpcode_Deopt"),
    struct_fields: &[
        (
            "_PyInterpreterFrame",
            &[
                "f_func",
                "f_globals",
                "f_builtins",
                "f_locals",
                "f_code",
                "frame_obj",
                "previous",
                "prev_instr",
                "stacktop",
                "is_entry",
                "owner",
                "localsplus",
            ],
        ),
        ("_PyCFrame", &["use_tracing", "current_frame", "previous"]),
        (
            "_ts",
            &[
                "prev",
                "next",
                "interp",
                "cframe",
                "thread_id",
                "native_thread_id",
                "recursion_remaining",
            ],
        ),
        ("PyCodeObject", &["co_code_adaptive", "co_nlocalsplus"]),
    ],
};

const PY312: VersionProfile = VersionProfile {
    series: (3, 12),
    support: Support::Instrument,
    eval_function: "_PyEval_EvalFrameDefault",
    table_variable: "opcode_targets",
    handler_label_prefix: "TARGET_",
    unknown_opcode_label: "_unknown_opcode",
    never_redirected: &[
        ("INSTRUMENTED_LINE", TableEntryKind::InstrumentedLine),
        ("CACHE", TableEntryKind::Cache),
        ("RESERVED", TableEntryKind::Reserved),
    ],
    instr_field: InstrField::PrevInstr,
    current_frame: CurrentFrameHome::CFrameLocal {
        variable: "cframe",
        field: "current_frame",
    },
    labels: LABELS_311_312,
    functions: &[
        (FunctionRole::EvalFrameDefault, "_PyEval_EvalFrameDefault"),
        (FunctionRole::FrameClearAndPop, "_PyEvalFrameClearAndPop"),
        (FunctionRole::ThreadStatePopFrame, "_PyThreadState_PopFrame"),
        (FunctionRole::FrameCopy, "_PyFrame_Copy"),
        (FunctionRole::FramePushAndInit, "_PyEvalFramePushAndInit"),
        (FunctionRole::HashPointer, "_Py_HashPointer"),
        (FunctionRole::Dealloc, "_Py_Dealloc"),
        (FunctionRole::ThreadStateClear, "PyThreadState_Clear"),
        (FunctionRole::SetAsyncExc, "PyThreadState_SetAsyncExc"),
        (FunctionRole::ThreadStateNew, "PyThreadState_New"),
    ],
    detours: &[
        (DetourKind::HashPointer, "_Py_HashPointer"),
        (DetourKind::Dealloc, "_Py_Dealloc"),
        (DetourKind::ThreadStateClear, "PyThreadState_Clear"),
        (DetourKind::SetAsyncExc, "PyThreadState_SetAsyncExc"),
        (DetourKind::ThreadStateNew, "PyThreadState_New"),
    ],
    opcode_arrays: ("_PyOpcode_Caches", "_PyOpcode_Deopt"),
    struct_fields: &[
        (
            "_PyInterpreterFrame",
            &[
                "f_code",
                "previous",
                "f_funcobj",
                "f_globals",
                "f_builtins",
                "f_locals",
                "frame_obj",
                "prev_instr",
                "stacktop",
                "return_offset",
                "owner",
                "localsplus",
            ],
        ),
        ("_PyCFrame", &["current_frame", "previous"]),
        (
            "_ts",
            &[
                "prev",
                "next",
                "id",
                "interp",
                "cframe",
                "thread_id",
                "native_thread_id",
                "py_recursion_remaining",
                "datastack_top",
                "datastack_limit",
            ],
        ),
        ("_is", &["threads.head", "ceval.eval_breaker", "eval_frame"]),
        (
            "PyCodeObject",
            &[
                "co_code_adaptive",
                "co_framesize",
                "co_nlocalsplus",
                "_co_firsttraceable",
            ],
        ),
        ("_object", &["ob_type"]),
        ("_typeobject", &["tp_dealloc"]),
    ],
};

const PY313: VersionProfile = VersionProfile {
    series: (3, 13),
    support: Support::AnalyseOnly(
        "3.13 keeps the current frame in tstate->current_frame and uses instr_ptr; \
         its hook set is not implemented yet",
    ),
    eval_function: "_PyEval_EvalFrameDefault",
    table_variable: "opcode_targets",
    handler_label_prefix: "TARGET_",
    unknown_opcode_label: "_unknown_opcode",
    never_redirected: &[
        ("INSTRUMENTED_LINE", TableEntryKind::InstrumentedLine),
        ("CACHE", TableEntryKind::Cache),
        ("RESERVED", TableEntryKind::Reserved),
    ],
    instr_field: InstrField::InstrPtr,
    current_frame: CurrentFrameHome::ThreadStateField {
        field: "current_frame",
    },
    labels: LABELS_311_312,
    functions: &[
        (FunctionRole::EvalFrameDefault, "_PyEval_EvalFrameDefault"),
        (FunctionRole::FrameClearAndPop, "_PyEval_FrameClearAndPop"),
        (FunctionRole::ThreadStatePopFrame, "_PyThreadState_PopFrame"),
        (FunctionRole::FrameCopy, "_PyFrame_Copy"),
        (FunctionRole::HashPointer, "Py_HashPointer"),
        (FunctionRole::Dealloc, "_Py_Dealloc"),
    ],
    detours: &[],
    opcode_arrays: ("_PyOpcode_Caches", "_PyOpcode_Deopt"),
    struct_fields: &[
        (
            "_PyInterpreterFrame",
            &[
                "f_executable",
                "previous",
                "f_funcobj",
                "f_globals",
                "f_builtins",
                "f_locals",
                "frame_obj",
                "instr_ptr",
                "stacktop",
                "return_offset",
                "owner",
                "localsplus",
            ],
        ),
        (
            "_ts",
            &[
                "prev",
                "next",
                "interp",
                "current_frame",
                "thread_id",
                "native_thread_id",
                "py_recursion_remaining",
                "eval_breaker",
                "datastack_top",
                "datastack_limit",
            ],
        ),
        (
            "PyCodeObject",
            &["co_code_adaptive", "co_framesize", "co_nlocalsplus"],
        ),
    ],
};

/// All versions the analysis knows, oldest first.
pub const PROFILES: &[&VersionProfile] = &[&PY311, &PY312, &PY313];

/// The profile for a version, if the series is known.
pub fn profile(version: PyVersion) -> Option<&'static VersionProfile> {
    PROFILES
        .iter()
        .copied()
        .find(|p| p.series == version.series())
}

/// "3.11, 3.12, 3.13" for error messages.
pub fn known_series() -> String {
    PROFILES
        .iter()
        .map(|p| format!("{}.{}", p.series.0, p.series.1))
        .collect::<Vec<_>>()
        .join(", ")
}
