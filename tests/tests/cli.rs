//! The command line: `inspect` on every local version, `verify` on a good and
//! a tampered output, `--help`.

use retrace_tests::{
    find_install, instrumented_312, libpython, require_install, rewriter, rewriter_instrument,
};

#[test]
fn inspect_312_is_instrumentable_and_json_round_trips() {
    let install = require_install("3.12");
    let lib = libpython(&install, "3.12");
    let out = rewriter(&["inspect", lib.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("support     instrumentable"), "{text}");
    assert!(text.contains("register layout at handler entry"));
    let out = rewriter(&["inspect", "--json", lib.to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["version"]["minor"], 12);
    assert_eq!(v["table"]["entries"].as_array().map(Vec::len), Some(256));
    assert!(v["dispatch_sites"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert_eq!(v["unsupported"].as_array().map(Vec::len), Some(0));
}

#[test]
fn inspect_other_versions_reports_what_is_not_supported() {
    let mut seen = 0;
    for series in ["3.11", "3.13"] {
        let Some(install) = find_install(series) else {
            eprintln!("note: no CPython {series} build found; skipping it");
            continue;
        };
        seen += 1;
        let lib = libpython(&install, series);
        let out = rewriter(&["inspect", lib.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{series}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("version     CPython {series}.")),
            "{text}"
        );
        assert!(text.contains("support     analysis only:"), "{text}");
        assert!(text.contains("opcode table"), "{series}: table reported");
        // instrument refuses with the same precise reasons and writes nothing.
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out");
        let out = rewriter_instrument(&lib, &out_dir, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("can be inspected but not instrumented yet"),
            "{stderr}"
        );
        assert!(!out_dir.exists());
    }
    assert!(
        seen > 0,
        "neither CPython 3.11 nor 3.13 is installed; install one with pyenv"
    );
}

#[test]
fn verify_accepts_the_output_and_rejects_tampering() {
    let inst = instrumented_312();
    let out = rewriter(&["verify", inst.dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("compared with the original"), "{stdout}");

    // A copy whose library changed after it was written is rejected.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("out");
    std::fs::create_dir_all(copy.join("lib")).unwrap();
    for f in [
        "lib/libpython3.12.so.1.0",
        "lib/libretrace_rt.so",
        "retrace-manifest.json",
    ] {
        std::fs::copy(inst.dir.join(f), copy.join(f)).unwrap();
    }
    let lib = copy.join("lib/libpython3.12.so.1.0");
    let mut bytes = std::fs::read(&lib).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&lib, &bytes).unwrap();
    let out = rewriter(&["verify", copy.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed since it was written"));

    // Not an output folder at all.
    let out = rewriter(&["verify", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a rewriter output folder"));
}

#[test]
fn help_lists_the_subcommands() {
    let out = rewriter(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["inspect", "instrument", "verify"] {
        assert!(text.contains(cmd), "{text}");
    }
}
