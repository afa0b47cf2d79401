//! Bad input gets a one-line error naming the problem and the fix, a non-zero
//! exit, and nothing written.

use retrace_tests::{
    find_install, instrumented_312, libpython, require_install, rewriter_instrument,
};
use std::path::{Path, PathBuf};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Run `instrument INPUT -o <tmp>/out` and check the failure contract.
    fn expect_failure(&self, input: &Path, needle: &str) {
        let out_dir = self.path("out");
        let out = rewriter_instrument(input, &out_dir, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "must fail for {}: {stderr}",
            input.display()
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(
            lines.len(),
            1,
            "exactly one error line expected, got:\n{stderr}"
        );
        assert!(
            lines[0].contains(needle),
            "error should mention {needle:?}: {}",
            lines[0]
        );
        assert!(!out_dir.exists(), "nothing may be written on failure");
        let leftovers: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".rewriter"))
            .collect();
        assert!(leftovers.is_empty(), "staging folders left behind");
    }
}

#[test]
fn non_elf_file() {
    let c = Case::new();
    let p = c.path("notes.txt");
    std::fs::write(&p, b"this is not a shared library\n").unwrap();
    c.expect_failure(&p, "not an ELF file");
}

#[test]
fn non_libpython_elf_executable() {
    Case::new().expect_failure(Path::new("/bin/ls"), "not a libpython");
}

#[test]
fn non_libpython_shared_library() {
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("libc.so.6 not found in the usual multiarch places");
    Case::new().expect_failure(&libc, "not a libpython");
}

#[test]
fn stripped_libpython() {
    let install = require_install("3.12");
    let c = Case::new();
    let stripped = c.path("libpython3.12.so.1.0");
    let st = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(libpython(&install, "3.12"))
        .arg(&stripped)
        .status()
        .expect("objcopy (binutils) is required for this test");
    assert!(st.success());
    c.expect_failure(&stripped, "no DWARF");
}

#[test]
fn truncated_libpython() {
    let install = require_install("3.12");
    let c = Case::new();
    let data = std::fs::read(libpython(&install, "3.12")).unwrap();
    let p = c.path("libpython3.12.so.1.0");
    std::fs::write(&p, &data[..data.len() / 3]).unwrap();
    c.expect_failure(&p, "truncated");
}

#[test]
fn already_instrumented_library() {
    let inst = instrumented_312();
    let lib = inst.dir.join("lib").join("libpython3.12.so.1.0");
    Case::new().expect_failure(&lib, "already instrumented");
}

#[test]
fn unsupported_version() {
    let install = find_install("3.10").expect(
        "this test needs CPython 3.10 (a supported-looking libpython of an unsupported version); \
         install one with pyenv (--enable-shared)",
    );
    Case::new().expect_failure(&libpython(&install, "3.10"), "is not supported");
}

#[test]
fn unwritable_output_folder() {
    let install = require_install("3.12");
    let c = Case::new();
    // A regular file where a parent folder is needed: not writable even for root.
    let blocker = c.path("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let out_dir = blocker.join("out");
    let out = rewriter_instrument(&libpython(&install, "3.12"), &out_dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("blocker"), "names the path: {stderr}");
    assert_eq!(std::fs::read(&blocker).unwrap(), b"");
}

#[test]
fn existing_output_needs_force() {
    let install = require_install("3.12");
    let c = Case::new();
    let out_dir = c.path("out");
    let lib = libpython(&install, "3.12");
    let run = |force: bool| {
        let extra: &[&str] = if force {
            &["--quiet", "--force"]
        } else {
            &["--quiet"]
        };
        rewriter_instrument(&lib, &out_dir, extra)
    };
    assert!(run(false).status.success());
    let manifest = out_dir.join("retrace-manifest.json");
    let before = std::fs::read(&manifest).unwrap();
    let again = run(false);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        before,
        "existing output untouched"
    );
    assert!(run(true).status.success(), "--force replaces it");
}

#[test]
fn non_rewriter_folder_is_never_replaced() {
    let install = require_install("3.12");
    let c = Case::new();
    let out_dir = c.path("mine");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("precious.txt"), b"keep").unwrap();
    let out = rewriter_instrument(&libpython(&install, "3.12"), &out_dir, &["--force"]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(out_dir.join("precious.txt")).unwrap(),
        b"keep"
    );
}
