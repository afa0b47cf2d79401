//! Validating a descriptor found in memory and accessing it safely afterwards.
//!
//! The descriptor is shared with machine code: dispatch stubs increment
//! `dispatch_counts` and read the hot flags without any locking, so the
//! runtime never forms a Rust reference to the whole struct. It copies the
//! fields the rewriter wrote (which never change) into [`DescriptorInfo`] once,
//! and touches the shared fields only through atomics.

use crate::location::{Layout, LocationError};
use retrace_abi::{field, Descriptor, HookInfo, HookKind, Offsets, ABI_VERSION, MAGIC, MAX_HOOKS};
use std::mem::{align_of, offset_of, size_of};
use std::ptr::{addr_of, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a block of memory starting with the magic is not a usable descriptor.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("segment holds {available} bytes, the descriptor needs {needed}")]
    TooSmall { available: u64, needed: u64 },
    #[error("descriptor at {address:#x} is not {align}-byte aligned")]
    Misaligned { address: usize, align: usize },
    #[error("memory at {address:#x} does not start with the RETRACE1 magic")]
    NoMagic { address: usize },
    #[error("ABI version {found}, this runtime implements {expected}")]
    AbiVersion { found: u32, expected: u32 },
    #[error("descriptor size {found}, this runtime expects {expected}")]
    Size { found: u32, expected: u32 },
    #[error(
        "self_address {recorded:#x} + load bias {bias:#x} does not match the actual address {actual:#x}"
    )]
    SelfAddress {
        recorded: u64,
        bias: u64,
        actual: u64,
    },
    #[error("hook_count {0} exceeds {MAX_HOOKS}")]
    HookCount(u32),
    #[error("invalid register layout: {0}")]
    Layout(#[from] LocationError),
}

/// One hook slot of the descriptor, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// `None` for an unused or unknown slot.
    pub kind: Option<HookKind>,
    pub arg: u32,
    /// Run-time address of the hooked instruction.
    pub address: u64,
}

/// The immutable part of a descriptor (written by the rewriter), copied once.
#[derive(Clone, Debug)]
pub struct DescriptorInfo {
    pub py_version_hex: u32,
    pub hooks: Vec<Hook>,
    pub layout: Layout,
    pub offsets: Offsets,
    pub input_sha256: [u8; 32],
    /// `_PyOpcode_Caches`, `_PyOpcode_Deopt` and the rewriter's per-opcode flags.
    pub opcode_caches: [u8; 256],
    pub opcode_deopt: [u8; 256],
    pub opcode_flags: [u8; 256],
    /// Load address of the stubs' raise entry (0: callback exceptions cannot
    /// propagate into the eval loop).
    pub raise_entry: u64,
    pub load_bias: u64,
    pub address: usize,
    /// The runtime's own zeroed descriptor (`RETRACE_RT_STANDALONE=1`), not a rewritten library's.
    pub standalone: bool,
}

impl DescriptorInfo {
    pub fn sha256_hex(&self) -> String {
        self.input_sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A validated descriptor living for the rest of the process.
pub struct LiveDescriptor {
    ptr: NonNull<Descriptor>,
    info: DescriptorInfo,
}

// SAFETY: the descriptor lives for the whole process (a mapped segment of a
// loaded library that is never unloaded, or a leaked allocation); the runtime
// only reads the immutable fields (copied into `info`) and accesses the shared
// ones through atomics, so sharing the pointer between threads is sound.
unsafe impl Send for LiveDescriptor {}
// SAFETY: see `Send`: every shared access goes through `AtomicU64`.
unsafe impl Sync for LiveDescriptor {}

/// Whether `address` holds the magic; `address` must point at ≥ 8 readable bytes.
///
/// # Safety
/// The caller guarantees 8 readable bytes at `address`.
pub unsafe fn starts_with_magic(address: usize) -> bool {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::ptr::read_unaligned(address as *const [u8; 8]) };
    bytes == MAGIC
}

impl LiveDescriptor {
    /// Checks the descriptor at `address` and snapshots its immutable fields.
    ///
    /// # Safety
    /// `address` must point at `available` readable and writable bytes that
    /// stay mapped for the rest of the process.
    pub unsafe fn validate(
        address: usize,
        available: u64,
        load_bias: u64,
        standalone: bool,
    ) -> Result<LiveDescriptor, DescriptorError> {
        let needed = size_of::<Descriptor>() as u64;
        if available < needed {
            return Err(DescriptorError::TooSmall { available, needed });
        }
        let align = align_of::<Descriptor>();
        if !address.is_multiple_of(align) {
            return Err(DescriptorError::Misaligned { address, align });
        }
        let ptr =
            NonNull::new(address as *mut Descriptor).ok_or(DescriptorError::NoMagic { address })?;
        let p = ptr.as_ptr();
        // SAFETY: `p` is aligned and points at `needed` readable bytes (checked
        // above, guaranteed by the caller). The fields read here are written
        // only by the rewriter, never concurrently.
        let (magic, abi_version, descriptor_size, self_address) = unsafe {
            (
                addr_of!((*p).magic).read(),
                addr_of!((*p).abi_version).read(),
                addr_of!((*p).descriptor_size).read(),
                addr_of!((*p).self_address).read(),
            )
        };
        if magic != MAGIC {
            return Err(DescriptorError::NoMagic { address });
        }
        if abi_version != ABI_VERSION {
            return Err(DescriptorError::AbiVersion {
                found: abi_version,
                expected: ABI_VERSION,
            });
        }
        if descriptor_size as u64 != needed {
            return Err(DescriptorError::Size {
                found: descriptor_size,
                expected: needed as u32,
            });
        }
        if self_address.wrapping_add(load_bias) != address as u64 {
            return Err(DescriptorError::SelfAddress {
                recorded: self_address,
                bias: load_bias,
                actual: address as u64,
            });
        }
        // SAFETY: as above; immutable fields of a validated descriptor.
        let (py_version_hex, hook_count, raw_hooks, registers, offsets, input_sha256) = unsafe {
            (
                addr_of!((*p).py_version_hex).read(),
                addr_of!((*p).hook_count).read(),
                addr_of!((*p).hooks).read(),
                addr_of!((*p).registers).read(),
                addr_of!((*p).offsets).read(),
                addr_of!((*p).input_sha256).read(),
            )
        };
        // SAFETY: as above.
        let (opcode_caches, opcode_deopt, opcode_flags, raise_entry) = unsafe {
            (
                addr_of!((*p).opcode_caches).read(),
                addr_of!((*p).opcode_deopt).read(),
                addr_of!((*p).opcode_flags).read(),
                addr_of!((*p).raise_entry).read(),
            )
        };
        if hook_count as usize > MAX_HOOKS {
            return Err(DescriptorError::HookCount(hook_count));
        }
        let layout = Layout::decode(&registers)?;
        let hooks = raw_hooks[..hook_count as usize]
            .iter()
            .map(|h: &HookInfo| Hook {
                kind: HookKind::from_u32(h.kind),
                arg: h.arg,
                address: h.address.wrapping_add(load_bias),
            })
            .collect();
        Ok(LiveDescriptor {
            ptr,
            info: DescriptorInfo {
                py_version_hex,
                hooks,
                layout,
                offsets,
                input_sha256,
                opcode_caches,
                opcode_deopt,
                opcode_flags,
                raise_entry: if raise_entry == 0 {
                    0
                } else {
                    raise_entry.wrapping_add(load_bias)
                },
                load_bias,
                address,
                standalone,
            },
        })
    }

    /// A zeroed descriptor owned by the runtime itself, for `RETRACE_RT_STANDALONE=1`.
    ///
    /// It lives on the heap, never in a `PT_LOAD` segment, so a later scan can
    /// never mistake it for a rewritten library's descriptor.
    pub fn standalone() -> Result<LiveDescriptor, DescriptorError> {
        let raw = Box::into_raw(Box::new(Descriptor::new()));
        let address = raw as usize;
        // SAFETY: `raw` is a fresh, exclusively owned allocation; it is leaked
        // (never freed), so it lives for the rest of the process.
        unsafe { (*raw).self_address = address as u64 };
        // SAFETY: a leaked, properly aligned allocation of a whole descriptor.
        unsafe { Self::validate(address, size_of::<Descriptor>() as u64, 0, true) }
    }

    pub fn info(&self) -> &DescriptorInfo {
        &self.info
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: every offset passed is that of a u64 field of the descriptor
        // (8-aligned because the descriptor is 64-aligned and the layout test
        // in retrace-abi pins the offsets); the memory lives for the process.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().cast::<u8>().add(offset).cast::<u64>()) }
    }

    /// A runtime-written word of the descriptor, for the rest of the process.
    pub fn static_word(&self, offset: usize) -> &'static AtomicU64 {
        // SAFETY: as for `word`; the descriptor is never unmapped or freed
        // (a loaded library's segment, or a leaked allocation), so the
        // reference is valid for 'static.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().cast::<u8>().add(offset).cast::<u64>()) }
    }

    /// Publishes the two runtime entry points (before any flag enables them).
    pub fn set_entry_points(&self, rt_dispatch: u64, rt_hook: u64) {
        self.word(field::RT_DISPATCH)
            .store(rt_dispatch, Ordering::Release);
        self.word(field::RT_HOOK).store(rt_hook, Ordering::Release);
    }

    /// Publishes the record the stubs may fast-path (see `Descriptor::cur_record`).
    pub fn set_cur_record(&self, record: u64) {
        self.word(field::CUR_RECORD)
            .store(record, Ordering::Relaxed);
    }

    pub fn cur_record(&self) -> u64 {
        self.word(field::CUR_RECORD).load(Ordering::Relaxed)
    }

    pub fn set_slow_path(&self, on: bool) {
        self.word(field::SLOW_PATH)
            .store(u64::from(on), Ordering::Release);
    }

    pub fn set_hooks_enabled(&self, bits: u64) {
        self.word(field::HOOKS_ENABLED)
            .store(bits, Ordering::Release);
    }

    pub fn slow_path(&self) -> u64 {
        self.word(field::SLOW_PATH).load(Ordering::Relaxed)
    }

    pub fn hooks_enabled(&self) -> u64 {
        self.word(field::HOOKS_ENABLED).load(Ordering::Relaxed)
    }

    pub fn entry_points(&self) -> (u64, u64) {
        (
            self.word(field::RT_DISPATCH).load(Ordering::Relaxed),
            self.word(field::RT_HOOK).load(Ordering::Relaxed),
        )
    }

    /// The inline dispatch counters (stubs increment them without locking;
    /// with the GIL held there is one writer at a time).
    pub fn dispatch_counts(&self) -> [u64; 256] {
        let base = offset_of!(Descriptor, dispatch_counts);
        std::array::from_fn(|i| self.word(base + 8 * i).load(Ordering::Relaxed))
    }

    pub fn reset_dispatch_counts(&self) {
        let base = offset_of!(Descriptor, dispatch_counts);
        for i in 0..256 {
            self.word(base + 8 * i).store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retrace_abi::{VarLocation, LOC_REG, LOC_STACK};

    const BIAS: u64 = 0x7f00_0000_0000;

    /// An owned heap descriptor, freed on drop.
    struct Fixture(*mut Descriptor);
    impl Fixture {
        fn address(&self) -> usize {
            self.0 as usize
        }
    }
    impl Drop for Fixture {
        fn drop(&mut self) {
            // SAFETY: created by Box::into_raw in `fixture`, dropped once.
            drop(unsafe { Box::from_raw(self.0) });
        }
    }

    /// A heap descriptor that claims to have been linked at `address - BIAS`.
    fn fixture(edit: impl FnOnce(&mut Descriptor)) -> Fixture {
        let mut d = Box::new(Descriptor::new());
        d.py_version_hex = 0x030c01f0;
        d.hook_count = 2;
        d.hooks[0] = HookInfo {
            kind: HookKind::StartFrame as u32,
            arg: 3,
            address: 0x10be99,
        };
        d.hooks[1] = HookInfo {
            kind: 42,
            arg: 0,
            address: 0x10,
        };
        d.registers.frame = VarLocation {
            kind: LOC_REG,
            value: 3,
        };
        d.registers.tstate = VarLocation {
            kind: LOC_STACK,
            value: 8,
        };
        d.input_sha256[0] = 0xab;
        d.input_sha256[31] = 0x01;
        let raw = Box::into_raw(d);
        // SAFETY: exclusively owned fresh allocation.
        unsafe {
            (*raw).self_address = (raw as u64).wrapping_sub(BIAS);
            edit(&mut *raw);
        }
        Fixture(raw)
    }

    fn check(f: &Fixture) -> Result<LiveDescriptor, DescriptorError> {
        // SAFETY: the fixture owns a whole live descriptor at this address.
        unsafe {
            LiveDescriptor::validate(f.address(), size_of::<Descriptor>() as u64, BIAS, false)
        }
    }

    #[test]
    fn accepts_a_well_formed_descriptor() {
        let f = fixture(|_| {});
        let live = check(&f).expect("valid");
        let info = live.info();
        assert_eq!(info.py_version_hex, 0x030c01f0);
        assert_eq!(info.hooks.len(), 2);
        assert_eq!(info.hooks[0].kind, Some(HookKind::StartFrame));
        assert_eq!(info.hooks[0].address, 0x10be99 + BIAS);
        assert_eq!(info.hooks[1].kind, None);
        assert_eq!(info.layout.frame, crate::location::Location::Reg(3));
        assert_eq!(info.layout.tstate, crate::location::Location::Stack(8));
        assert!(info.sha256_hex().starts_with("ab00"));
        assert!(info.sha256_hex().ends_with("01"));
        assert_eq!(info.sha256_hex().len(), 64);
    }

    #[test]
    fn rejects_each_inconsistency() {
        type Edit = fn(&mut Descriptor);
        let cases: Vec<(Edit, &str)> = vec![
            (|d| d.abi_version = 99, "ABI version 99"),
            (|d| d.descriptor_size = 64, "descriptor size 64"),
            (|d| d.self_address += 0x1000, "does not match"),
            (|d| d.hook_count = 65, "hook_count 65"),
            (
                |d| {
                    d.registers.oparg = VarLocation {
                        kind: LOC_REG,
                        value: 99,
                    }
                },
                "register number 99",
            ),
            (|d| d.registers.opcode.kind = 7, "unknown location kind 7"),
            (|d| d.magic[7] = b'2', "magic"),
        ];
        for (edit, expected) in cases {
            let f = fixture(edit);
            let err = check(&f).err().expect("must be rejected");
            assert!(err.to_string().contains(expected), "{err} vs {expected}");
        }
    }

    #[test]
    fn rejects_short_and_misaligned_memory() {
        let f = fixture(|_| {});
        let address = f.address();
        // SAFETY: only sizes and alignment are checked before any read fails.
        let short = unsafe { LiveDescriptor::validate(address, 64, BIAS, false) };
        assert!(matches!(short, Err(DescriptorError::TooSmall { .. })));
        // SAFETY: rejected on alignment before reading.
        let odd = unsafe { LiveDescriptor::validate(address + 8, 1 << 20, BIAS, false) };
        assert!(matches!(odd, Err(DescriptorError::Misaligned { .. })));
    }

    #[test]
    fn runtime_fields_are_written_in_place() {
        let f = fixture(|d| d.dispatch_counts[5] = 7);
        let live = check(&f).expect("valid");
        live.set_entry_points(0x1111, 0x2222);
        live.set_slow_path(true);
        live.set_hooks_enabled(u64::MAX);
        assert_eq!(live.entry_points(), (0x1111, 0x2222));
        assert_eq!((live.slow_path(), live.hooks_enabled()), (1, u64::MAX));
        assert_eq!(live.dispatch_counts()[5], 7);
        live.reset_dispatch_counts();
        assert_eq!(live.dispatch_counts(), [0; 256]);
        // The writes landed in the real struct at the ABI offsets.
        // SAFETY: reading plain fields of the boxed descriptor after the atomic stores.
        let (a, b, c) = unsafe {
            let p = f.0 as *const Descriptor;
            ((*p).rt_dispatch, (*p).slow_path, (*p).dispatch_counts[5])
        };
        assert_eq!((a, b, c), (0x1111, 1, 0));
    }

    #[test]
    fn standalone_descriptor_is_valid_and_empty() {
        let live = LiveDescriptor::standalone().expect("standalone descriptor validates");
        assert!(live.info().standalone);
        assert_eq!(live.info().hooks.len(), 0);
        assert_eq!(live.info().py_version_hex, 0);
        assert_eq!(live.dispatch_counts(), [0; 256]);
    }

    #[test]
    fn magic_probe() {
        let f = fixture(|_| {});
        // SAFETY: the fixture's address points at a whole descriptor.
        assert!(unsafe { starts_with_magic(f.address()) });
        let zero = [0u8; 8];
        // SAFETY: 8 readable bytes.
        assert!(!unsafe { starts_with_magic(zero.as_ptr() as usize) });
    }
}
