//! An anonymous mapping that holds a fake descriptor and code at run-time
//! addresses, so generated trampolines can be executed in the test process.

use retrace_abi::Descriptor;

pub struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    pub fn new(len: usize) -> Mapping {
        // SAFETY: anonymous private mapping, checked for failure.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        Mapping {
            base: base as *mut u8,
            len,
        }
    }
    pub fn addr(&self, off: usize) -> u64 {
        self.base as u64 + off as u64
    }
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len);
        // SAFETY: in bounds of our writable mapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(off), bytes.len()) }
    }
    pub fn protect_exec(&self, off: usize, len: usize) {
        // SAFETY: page-aligned sub-range of our mapping.
        let rc = unsafe {
            libc::mprotect(
                self.base.add(off) as *mut _,
                len,
                libc::PROT_READ | libc::PROT_EXEC,
            )
        };
        assert_eq!(rc, 0);
    }
    pub fn descriptor(&mut self) -> &mut Descriptor {
        // SAFETY: offset 0 holds a Descriptor we wrote; page aligned.
        unsafe { &mut *(self.base as *mut Descriptor) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.base as *mut _, self.len) };
    }
}
