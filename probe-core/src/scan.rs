//! Finding the descriptor of a rewritten libpython among the loaded objects.
//!
//! The rewriter adds no symbols, so the runtime walks every loaded object with
//! `dl_iterate_phdr` and looks at the start of each writable `PT_LOAD` segment
//! for the magic.

use crate::descriptor::{starts_with_magic, DescriptorError, LiveDescriptor};
use retrace_abi::Descriptor;
use std::ffi::{c_int, c_void, CStr};
use std::mem::size_of;

/// A writable segment of a loaded object whose first bytes are the magic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Path of the object as the loader reports it (empty for the executable).
    pub object: String,
    pub address: usize,
    pub memsz: u64,
    pub load_bias: u64,
}

/// A program header reduced to what the scan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_vaddr: u64,
    pub p_memsz: u64,
}

/// The run-time address of a segment that could hold a descriptor, if any.
pub fn descriptor_slot(load_bias: u64, segment: &Segment) -> Option<usize> {
    let writable_load = segment.p_type == libc::PT_LOAD && segment.p_flags & libc::PF_W != 0;
    if !writable_load || segment.p_memsz < size_of::<Descriptor>() as u64 {
        return None;
    }
    usize::try_from(load_bias.wrapping_add(segment.p_vaddr)).ok()
}

extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `&mut Vec<Candidate>` passed by `candidates` below,
    // exclusively borrowed for the duration of dl_iterate_phdr.
    let found = unsafe { &mut *(data as *mut Vec<Candidate>) };
    // SAFETY: the loader passes a valid dl_phdr_info for the current object.
    let info = unsafe { &*info };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers of a loaded object.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    for ph in phdrs {
        let segment = Segment {
            p_type: ph.p_type,
            p_flags: ph.p_flags,
            p_vaddr: ph.p_vaddr,
            p_memsz: ph.p_memsz,
        };
        let Some(address) = descriptor_slot(info.dlpi_addr, &segment) else {
            continue;
        };
        // SAFETY: a PT_LOAD segment of a loaded object is mapped from its
        // first byte for p_memsz (≥ descriptor size ≥ 8) bytes.
        if unsafe { starts_with_magic(address) } {
            let object = if info.dlpi_name.is_null() {
                String::new()
            } else {
                // SAFETY: the loader provides a NUL-terminated name.
                unsafe { CStr::from_ptr(info.dlpi_name) }
                    .to_string_lossy()
                    .into_owned()
            };
            found.push(Candidate {
                object,
                address,
                memsz: segment.p_memsz,
                load_bias: info.dlpi_addr,
            });
        }
    }
    0
}

/// Every writable segment of a loaded object that starts with the magic.
pub fn candidates() -> Vec<Candidate> {
    let mut found: Vec<Candidate> = Vec::new();
    // SAFETY: `collect` matches the callback signature and only uses `data` as
    // the vector passed here, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect),
            &mut found as *mut Vec<Candidate> as *mut c_void,
        );
    }
    found
}

/// The first valid descriptor among the candidates, with the reasons the others were rejected.
pub fn locate() -> (Option<LiveDescriptor>, Vec<(Candidate, DescriptorError)>) {
    let mut rejected = Vec::new();
    for candidate in candidates() {
        // SAFETY: the candidate is a mapped writable segment of a loaded
        // object, `memsz` bytes long; libpython is never unloaded.
        let result = unsafe {
            LiveDescriptor::validate(
                candidate.address,
                candidate.memsz,
                candidate.load_bias,
                false,
            )
        };
        match result {
            Ok(live) => return (Some(live), rejected),
            Err(e) => rejected.push((candidate, e)),
        }
    }
    (None, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(p_type: u32, p_flags: u32, p_memsz: u64) -> Segment {
        Segment {
            p_type,
            p_flags,
            p_vaddr: 0x6b5000,
            p_memsz,
        }
    }

    #[test]
    fn only_large_enough_writable_loads_qualify() {
        let big = size_of::<Descriptor>() as u64;
        let rw = libc::PF_R | libc::PF_W;
        assert_eq!(
            descriptor_slot(0x1000, &seg(libc::PT_LOAD, rw, big)),
            Some(0x6b6000)
        );
        assert_eq!(
            descriptor_slot(0, &seg(libc::PT_LOAD, libc::PF_R | libc::PF_X, big)),
            None
        );
        assert_eq!(descriptor_slot(0, &seg(libc::PT_DYNAMIC, rw, big)), None);
        assert_eq!(descriptor_slot(0, &seg(libc::PT_LOAD, rw, big - 1)), None);
    }

    #[test]
    fn a_vanilla_process_has_no_descriptor() {
        // The test binary contains the magic bytes in read-only data (the
        // abi constant), which must not be mistaken for a descriptor.
        assert_eq!(candidates(), Vec::new());
        let (found, rejected) = locate();
        assert!(found.is_none());
        assert!(rejected.is_empty());
    }
}
