//! Running the SEMANTICS §21 conformance scripts (`python/conformance/`) from
//! the integration tests: one script per checklist area, one item per test,
//! selected on the command line (`area_b_coordinates.py item_11`).
//!
//! The scripts learn the discovered interpreters from the environment:
//! `RETRACE_TEST_PYTHON` (the interpreter for child processes: the
//! instrumented launcher, or the vanilla interpreter for vanilla items),
//! `RETRACE_TEST_VANILLA_PYTHON` and `RETRACE_TEST_VANILLA_HOME` (the vanilla
//! install of the same series).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{instrumented_312, require_install, scripts_dir, vanilla_python};

/// `tests/python/conformance`.
pub fn conformance_dir() -> PathBuf {
    scripts_dir().join("conformance")
}

/// Run `script item` with the instrumented 3.12 launcher and require `PASS item`.
pub fn run_item(script: &str, item: &str) {
    let inst = instrumented_312();
    run_script(&inst.launcher, &inst.install, script, &[item]);
}

/// Run `script item` with the vanilla 3.12 interpreter (no instrumentation) and require `PASS item`.
pub fn run_item_vanilla(script: &str, item: &str) {
    let install = require_install("3.12");
    let python = vanilla_python(&install, "3.12");
    run_script(&python, &install, script, &[item]);
}

/// Run `python script ARGS…` from a temporary directory; require exit 0 and a
/// `PASS <arg>` line for every argument. Returns stdout.
pub fn run_script(python: &Path, install: &Path, script: &str, args: &[&str]) -> String {
    let path = conformance_dir().join(script);
    let cwd = tempfile::tempdir().expect("temp dir");
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .current_dir(cwd.path())
        .env("RETRACE_TEST_PYTHON", python)
        .env(
            "RETRACE_TEST_VANILLA_PYTHON",
            vanilla_python(install, "3.12"),
        )
        .env("RETRACE_TEST_VANILLA_HOME", install)
        .output()
        .expect("spawn python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let passed = |item: &str| {
        stdout.lines().any(|l| {
            l.strip_prefix("PASS ")
                .and_then(|rest| rest.strip_prefix(item))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        })
    };
    assert!(
        out.status.success() && args.iter().all(|a| passed(a)),
        "{} {} {} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        python.display(),
        path.display(),
        args.join(" "),
        out.status,
    );
    stdout
}
