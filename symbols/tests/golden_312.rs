//! Golden test: the complete site map of the pyenv CPython 3.12.1 build
//! (`-O3 -g --enable-shared`) is pinned, so any change in what the analysis
//! derives from that binary shows up as a reviewable snapshot diff.

use std::path::PathBuf;

fn libpython_3121() -> PathBuf {
    let roots = [
        std::env::var("PYENV_ROOT").ok().map(PathBuf::from),
        std::env::var("HOME")
            .ok()
            .map(|h| PathBuf::from(h).join(".pyenv")),
        Some(PathBuf::from("/root/.pyenv")),
    ];
    for root in roots.into_iter().flatten() {
        let p = root.join("versions/3.12.1/lib/libpython3.12.so.1.0");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "the golden site map is pinned to pyenv's CPython 3.12.1 shared build; install it with \
         `PYTHON_CONFIGURE_OPTS=--enable-shared CFLAGS='-O3 -g' pyenv install 3.12.1`"
    )
}

#[test]
fn site_map_of_3_12_1() {
    let path = libpython_3121();
    let mut analysis = symbols::analyze_file(&path).expect("3.12.1 analyses");
    // Machine-independent: the path is where pyenv happens to live.
    analysis.library.path = "<pyenv>/versions/3.12.1/lib/libpython3.12.so.1.0".into();
    assert!(analysis.is_instrumentable(), "{:?}", analysis.unsupported);
    insta::assert_json_snapshot!("site_map_3_12_1", analysis);
}
