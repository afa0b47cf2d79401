//! Generated-corpus test: small programs (loops, recursion, generators,
//! coroutines, exceptions, callbacks, properties, closures, a function with
//! EXTENDED_ARG jumps, signal handlers, threads) record `_retrace.coordinates()`
//! transcripts cold and after warm-up, checked by `python/conformance/corpus.py`
//! against rules that hold regardless of specialisation (SEMANTICS §4–§8).
//! One test per program, each a run of the instrumented 3.12 interpreter.

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "corpus.py";

#[test]
fn program_loops() {
    run_item(SCRIPT, "program_loops");
}

#[test]
fn program_big_function() {
    run_item(SCRIPT, "program_big_function");
}

#[test]
fn program_exceptions() {
    run_item(SCRIPT, "program_exceptions");
}

#[test]
fn program_recursion() {
    run_item(SCRIPT, "program_recursion");
}

#[test]
fn program_generators() {
    run_item(SCRIPT, "program_generators");
}

#[test]
fn program_coroutines() {
    run_item(SCRIPT, "program_coroutines");
}

#[test]
fn program_callbacks() {
    run_item(SCRIPT, "program_callbacks");
}

#[test]
fn program_properties_getitem() {
    run_item(SCRIPT, "program_properties_getitem");
}

#[test]
fn program_closures() {
    run_item(SCRIPT, "program_closures");
}

#[test]
fn program_signals() {
    run_item(SCRIPT, "program_signals");
}

#[test]
fn program_threads() {
    run_item(SCRIPT, "program_threads");
}
