//! Shared helpers for the end-to-end tests: discovering interpreters, building
//! an instrumented output once per test binary, and running Python against it.
//!
//! Interpreters are discovered under `$PYENV_ROOT` (default `~/.pyenv`, then
//! `/root/.pyenv`); a missing interpreter fails the test with a message that
//! says what to install, it never passes silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod conformance;

/// Candidate pyenv roots, in order.
pub fn pyenv_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(r) = std::env::var("PYENV_ROOT") {
        roots.push(PathBuf::from(r));
    }
    if let Ok(h) = std::env::var("HOME") {
        roots.push(Path::new(&h).join(".pyenv"));
    }
    roots.push(PathBuf::from("/root/.pyenv"));
    roots
}

/// The newest pyenv install of `series` (e.g. "3.12") that has a shared libpython.
pub fn find_install(series: &str) -> Option<PathBuf> {
    for root in pyenv_roots() {
        let Ok(entries) = std::fs::read_dir(root.join("versions")) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{series}.")))
                    && p.join("lib")
                        .join(format!("libpython{series}.so.1.0"))
                        .is_file()
            })
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Some(p);
        }
    }
    None
}

/// Like [`find_install`] but fails with instructions when absent.
pub fn require_install(series: &str) -> PathBuf {
    find_install(series).unwrap_or_else(|| {
        panic!(
            "no CPython {series} shared-library build found under {:?}; install one with \
             `PYTHON_CONFIGURE_OPTS='--enable-shared' CFLAGS='-O3 -g' pyenv install {series}` \
             or set PYENV_ROOT",
            pyenv_roots()
        )
    })
}

pub fn libpython(install: &Path, series: &str) -> PathBuf {
    install
        .join("lib")
        .join(format!("libpython{series}.so.1.0"))
}

pub fn vanilla_python(install: &Path, series: &str) -> PathBuf {
    install.join("bin").join(format!("python{series}"))
}

/// `target/<profile>` of this build (test binaries live in its `deps/`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub fn rewriter_bin() -> PathBuf {
    let p = target_dir().join("rewriter");
    assert!(
        p.is_file(),
        "{} not built; run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

pub fn runtime_lib() -> PathBuf {
    let p = target_dir().join("libretrace_rt.so");
    assert!(
        p.is_file(),
        "{} not built; run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

/// Directory with the Python scripts the tests run.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Run `rewriter` with `args`.
pub fn rewriter(args: &[&str]) -> Output {
    Command::new(rewriter_bin())
        .args(args)
        .output()
        .expect("spawn rewriter")
}

/// Run `rewriter instrument INPUT -o OUT_DIR --runtime <the built runtime> EXTRA…`.
pub fn rewriter_instrument(input: &Path, out_dir: &Path, extra: &[&str]) -> Output {
    let rt = runtime_lib();
    let mut args = vec![
        "instrument",
        input.to_str().expect("utf-8 path"),
        "-o",
        out_dir.to_str().expect("utf-8 path"),
        "--runtime",
        rt.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    rewriter(&args)
}

/// An instrumented output of the newest local CPython `series`, built once per test binary.
pub struct Instrumented {
    pub install: PathBuf,
    pub dir: PathBuf,
    pub launcher: PathBuf,
    pub series: String,
}

pub fn instrumented_312() -> &'static Instrumented {
    static ONCE: OnceLock<Instrumented> = OnceLock::new();
    ONCE.get_or_init(|| instrument("3.12"))
}

fn instrument(series: &str) -> Instrumented {
    let install = require_install(series);
    let base = target_dir().join("e2e");
    std::fs::create_dir_all(&base).expect("create target/e2e");
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".into());
    let dir = base.join(format!("{name}-{series}"));
    let out = rewriter_instrument(&libpython(&install, series), &dir, &["--force", "--quiet"]);
    assert!(
        out.status.success(),
        "rewriter instrument failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let launcher = dir.join("bin").join(format!("python{series}"));
    Instrumented {
        install,
        dir,
        launcher,
        series: series.to_string(),
    }
}

/// Run a Python interpreter with arguments and extra environment, from `cwd` (default: a temp dir).
pub fn run(python: &Path, args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Output {
    let tmp;
    let cwd = match cwd {
        Some(c) => c.to_path_buf(),
        None => {
            tmp = std::env::temp_dir();
            tmp
        }
    };
    let mut cmd = Command::new(python);
    cmd.args(args).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn python")
}

/// Run and require success; returns stdout.
pub fn run_ok(python: &Path, args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> String {
    let out = run(python, args, env, cwd);
    assert!(
        out.status.success(),
        "{} {:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        python.display(),
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
