//! Shared helpers for the integration tests: finding real interpreters and
//! the built runtime, and running Python with the runtime preloaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A pyenv interpreter.
#[derive(Clone, Debug)]
pub struct Interpreter {
    pub python: PathBuf,
}

fn pyenv_root() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"))
}

/// Every `$(pyenv root)/versions/<series>.*/bin/python<series>` with a shared libpython.
pub fn interpreters(series: (u32, u32)) -> Vec<Interpreter> {
    let versions = pyenv_root().join("versions");
    let prefix = format!("{}.{}.", series.0, series.1);
    let exe = format!("python{}.{}", series.0, series.1);
    let lib = format!("libpython{}.{}.so.1.0", series.0, series.1);
    let Ok(dir) = std::fs::read_dir(&versions) else {
        return Vec::new();
    };
    let mut found: Vec<Interpreter> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.join("lib").join(&lib).is_file())
        .map(|p| Interpreter {
            python: p.join("bin").join(&exe),
        })
        .filter(|i| i.python.is_file())
        .collect();
    found.sort_by(|a, b| a.python.cmp(&b.python));
    found
}

/// The 3.12 interpreter the tests require, failing with a clear message if absent.
pub fn required_312() -> Interpreter {
    interpreters((3, 12)).into_iter().next().unwrap_or_else(|| {
        panic!(
            "no CPython 3.12 with a shared libpython found under {}/versions/3.12*/ \
             (set PYENV_ROOT); these tests need a real interpreter",
            pyenv_root().display()
        )
    })
}

/// `target/<profile>/libretrace_rt.so`, built by `cargo test -p probe-core`.
pub fn runtime_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let lib = profile_dir.join("libretrace_rt.so");
    assert!(
        lib.is_file(),
        "{} not found: build the cdylib with `cargo test -p probe-core`",
        lib.display()
    );
    lib
}

/// Runs `python args…` in `cwd` with the runtime preloaded and `env` set.
/// The RETRACE_* switches of the calling environment are cleared first.
pub fn run(interp: &Interpreter, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(&interp.python);
    cmd.args(args)
        .current_dir(cwd)
        .env("LD_PRELOAD", runtime_library())
        .env_remove("RETRACE_RT_STANDALONE")
        .env_remove("RETRACE_HOOKS")
        .env_remove("RETRACE_SLOW_PATH")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONSTARTUP");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", interp.python.display()))
}

/// Asserts a successful run and returns its stdout.
pub fn expect_ok(interp: &Interpreter, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        interp.python.display(),
        out.status
    );
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
    stdout
}
