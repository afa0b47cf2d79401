//! Edits of the `.dynamic` entry list held by the builder: adding a `DT_NEEDED` library and
//! setting `DT_RUNPATH`. The builder regenerates `.dynstr`, `DT_STRTAB` and `DT_STRSZ` itself
//! (they are "Auto" entries), so only the entry list changes here.

use object::build::elf::Dynamic;
use object::build::ByteString;
use object::elf;

use super::EmitError;

/// Reject strings the dynamic string table cannot hold.
pub(crate) fn check_string(what: &'static str, value: &str) -> Result<(), EmitError> {
    if value.is_empty() || value.as_bytes().contains(&0) {
        return Err(EmitError::InvalidString {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Insert `DT_NEEDED soname` right after the last existing `DT_NEEDED` (or first, if there is
/// none), so that the original libraries keep their search order. Adding a library that is
/// already needed is a no-op: a duplicate entry would only load the same object twice in the
/// lookup scope. Returns whether an entry was added.
pub(crate) fn add_needed(dynamics: &mut Vec<Dynamic<'_>>, soname: &str) -> Result<bool, EmitError> {
    check_string("DT_NEEDED soname", soname)?;
    let mut insert_at = 0;
    for (index, entry) in dynamics.iter().enumerate() {
        if let Dynamic::String { tag, val } = entry {
            if *tag == elf::DT_NEEDED {
                if val.as_slice() == soname.as_bytes() {
                    return Ok(false);
                }
                insert_at = index + 1;
            }
        }
    }
    dynamics.insert(
        insert_at,
        Dynamic::String {
            tag: elf::DT_NEEDED,
            val: ByteString::from(soname.as_bytes().to_vec()),
        },
    );
    Ok(true)
}

/// Make `DT_RUNPATH` equal `runpath`: replace every existing `DT_RUNPATH`, or add one after the
/// `DT_NEEDED`/`DT_SONAME` block if there is none. An existing `DT_RPATH` is left alone: when a
/// `DT_RUNPATH` exists the loader ignores `DT_RPATH` anyway.
pub(crate) fn set_runpath(dynamics: &mut Vec<Dynamic<'_>>, runpath: &str) -> Result<(), EmitError> {
    check_string("DT_RUNPATH", runpath)?;
    let mut found = false;
    let mut insert_at = 0;
    for (index, entry) in dynamics.iter_mut().enumerate() {
        if let Dynamic::String { tag, val } = entry {
            if *tag == elf::DT_RUNPATH {
                *val = ByteString::from(runpath.as_bytes().to_vec());
                found = true;
            } else if *tag == elf::DT_NEEDED || *tag == elf::DT_SONAME || *tag == elf::DT_RPATH {
                insert_at = index + 1;
            }
        }
    }
    if !found {
        dynamics.insert(
            insert_at,
            Dynamic::String {
                tag: elf::DT_RUNPATH,
                val: ByteString::from(runpath.as_bytes().to_vec()),
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needed(name: &'static str) -> Dynamic<'static> {
        Dynamic::String {
            tag: elf::DT_NEEDED,
            val: name.into(),
        }
    }

    fn tags(dynamics: &[Dynamic<'_>]) -> Vec<i64> {
        dynamics.iter().map(|d| d.tag().0).collect()
    }

    #[test]
    fn needed_goes_after_existing_needed_and_is_idempotent() {
        let mut d = vec![
            needed("libm.so.6"),
            needed("libc.so.6"),
            Dynamic::Integer {
                tag: elf::DT_INIT,
                val: 1,
            },
        ];
        assert!(add_needed(&mut d, "libx.so").unwrap());
        assert!(!add_needed(&mut d, "libx.so").unwrap());
        assert_eq!(d.len(), 4);
        assert_eq!(d[2], needed("libx.so"));
        assert_eq!(tags(&d)[3], elf::DT_INIT.0);
    }

    #[test]
    fn runpath_replaced_or_added() {
        let mut d = vec![needed("libc.so.6")];
        set_runpath(&mut d, "$ORIGIN").unwrap();
        assert_eq!(tags(&d), vec![elf::DT_NEEDED.0, elf::DT_RUNPATH.0]);
        set_runpath(&mut d, "/x").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[1],
            Dynamic::String {
                tag: elf::DT_RUNPATH,
                val: "/x".into()
            }
        );
    }

    #[test]
    fn bad_strings_rejected() {
        let mut d = Vec::new();
        assert!(matches!(
            add_needed(&mut d, ""),
            Err(EmitError::InvalidString { .. })
        ));
        assert!(matches!(
            set_runpath(&mut d, "a\0b"),
            Err(EmitError::InvalidString { .. })
        ));
        assert!(d.is_empty());
    }
}
