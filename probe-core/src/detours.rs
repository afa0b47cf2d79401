//! The runtime side of function detours: the replacements the rewritten
//! library's detours jump to, and their installation at start-up.
//!
//! * `_Py_HashPointer` → [`pointer_hash`] (SEMANTICS §10): the first hash of
//!   an aligned address is memoised in an [`IdentityMap`]; its value is the
//!   location hash of the nearest visible frame when the coordinate engine
//!   can name one ([`nearest_visible_location_hash`]), else `raw(p)`.
//! * `_Py_Dealloc` (a full replacement: the rewriter verified the body is
//!   `Py_TYPE(op)->tp_dealloc(op)`) → [`dealloc`]: the same call through the
//!   type, then the address is forgotten. Only frees through `_Py_Dealloc`
//!   forget (SEMANTICS errata 1: the 3.12 eval loop calls deallocators
//!   directly, and those addresses stay memoised).
//!
//! * `PyThreadState_Clear` → [`thread_state_clear`]: tells the observer the
//!   runtime installed (natural completion and the clear of scheduling state,
//!   SEMANTICS §15, §11.5), then runs the relocated original.
//! * `PyThreadState_SetAsyncExc` → [`set_async_exc`]: the `id` (a Retrace id
//!   or a native ident, SEMANTICS §9.5) is resolved to the native ident of
//!   the thread it names by the resolver the runtime installed, then the
//!   relocated original runs with it; an id naming no thread affects nothing
//!   (0).
//! * `PyThreadState_New` → [`thread_state_new`]: the relocated original, then
//!   the observer the runtime installed registers the new thread state with
//!   an id derived from the creating thread (SEMANTICS §9.4).
//!
//! All replacements run with the GIL held, so the map's `Mutex` is always
//! uncontended; it keeps the code sound without relying on that. No Python
//! code runs while the lock is held: the deallocator is called before the
//! lock is taken.
//!
//! The map is per process for now (SEMANTICS wants one per interpreter).

use crate::descriptor::LiveDescriptor;
use crate::identity_map::{raw, to_py_hash, IdentityMap};
use retrace_abi::{field, Descriptor, DetourInfo, DetourKind, ABSENT, MAX_DETOURS};
use std::ffi::c_void;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The process-wide identity memo.
static IDENTITY: Mutex<IdentityMap> = Mutex::new(IdentityMap::new());

/// `_object.ob_type` and `_typeobject.tp_dealloc`, set by [`install`].
static OB_TYPE: AtomicUsize = AtomicUsize::new(usize::MAX);
static TP_DEALLOC: AtomicUsize = AtomicUsize::new(usize::MAX);

fn identity() -> MutexGuard<'static, IdentityMap> {
    // A poisoned lock only means a panic elsewhere; the map stays usable.
    IDENTITY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Number of memoised addresses (for `_retrace._identity_map_len()`).
pub fn identity_map_len() -> usize {
    identity().len()
}

/// Where identity hashes get their location (SEMANTICS §10): set once by
/// the runtime's start-up to the engine's nearest-visible-frame hash.
static LOCATION: OnceLock<fn() -> Option<u64>> = OnceLock::new();

/// Installs the location source of [`pointer_hash`].
pub fn set_location_source(source: fn() -> Option<u64>) {
    let _ = LOCATION.set(source);
}

/// The location hash (SEMANTICS §9.3) of the current thread's thread-space
/// of the nearest frame visible in a walk (§6), as a Python hash; `None`
/// when there is no engine, no current thread, or no visible frame.
pub fn nearest_visible_location_hash() -> Option<i64> {
    LOCATION.get().and_then(|f| f()).map(|h| h as i64)
}

/// `pointer_hash(p)` of SEMANTICS §10 over `map`, with the location source
/// injected. `location` is consulted only for an aligned address not yet
/// memoised, and without the map borrowed, so it may take other locks.
pub fn pointer_hash_with(
    map: &Mutex<IdentityMap>,
    p: u64,
    location: impl FnOnce() -> Option<i64>,
) -> i64 {
    if p == 0 || p & 7 != 0 {
        return raw(p);
    }
    let lock = || map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = lock().get(p) {
        return v;
    }
    let v = match location() {
        Some(h) => to_py_hash(h as u64),
        None => raw(p),
    };
    let mut m = lock();
    if let Some(v) = m.get(p) {
        return v;
    }
    // On memory exhaustion the value is simply not memoised.
    let _ = m.insert(p, v);
    v
}

/// `pointer_hash(p)` with the process-wide map and the engine's location.
pub fn pointer_hash(p: u64) -> i64 {
    MAYBE_HASHED.mark(p);
    pointer_hash_with(&IDENTITY, p, nearest_visible_location_hash)
}

/// A lock-free pre-filter for the deallocator: one bit per hash bucket of
/// addresses, set when an address may have been memoised (never cleared, so
/// a set bit only means "look in the map"). Nearly every freed object was
/// never hashed; for those the free costs one load instead of the map's lock
/// and lookup.
pub struct MaybeHashed {
    bits: [AtomicU64; MAYBE_HASHED_WORDS],
}

/// 2^20 bits (128 KiB).
const MAYBE_HASHED_WORDS: usize = 1 << 14;

impl MaybeHashed {
    pub const fn new() -> MaybeHashed {
        MaybeHashed {
            bits: [const { AtomicU64::new(0) }; MAYBE_HASHED_WORDS],
        }
    }

    fn position(p: u64) -> (usize, u64) {
        let h = (p >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44; // 20 bits
        ((h >> 6) as usize, 1u64 << (h & 63))
    }

    pub fn mark(&self, p: u64) {
        let (word, bit) = Self::position(p);
        if let Some(w) = self.bits.get(word) {
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    pub fn may_contain(&self, p: u64) -> bool {
        let (word, bit) = Self::position(p);
        self.bits
            .get(word)
            .is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0)
    }
}

impl Default for MaybeHashed {
    fn default() -> Self {
        MaybeHashed::new()
    }
}

/// The filter of the process-wide identity map.
static MAYBE_HASHED: MaybeHashed = MaybeHashed::new();

/// Forgets `p` after a free through the generic deallocator.
pub fn forget_with(map: &Mutex<IdentityMap>, p: u64) {
    if p != 0 && p & 7 == 0 {
        map.lock().unwrap_or_else(|e| e.into_inner()).remove(p);
    }
}

/// The relocated original `PyThreadState_Clear` (load address), set by [`install`].
static CLEAR_ORIGINAL: AtomicU64 = AtomicU64::new(0);

/// Called with the thread state before `PyThreadState_Clear` clears it.
static CLEAR_OBSERVER: OnceLock<fn(u64)> = OnceLock::new();

/// Installs the observer of thread-state clears (once; later calls are ignored).
pub fn set_thread_clear_observer(observer: fn(u64)) {
    let _ = CLEAR_OBSERVER.set(observer);
}

/// Replacement of `PyThreadState_Clear(PyThreadState *)`.
extern "C" fn thread_state_clear(tstate: *mut c_void) {
    if let Some(observer) = CLEAR_OBSERVER.get() {
        observer(tstate as u64);
    }
    let original = CLEAR_ORIGINAL.load(Ordering::Acquire);
    if original != 0 {
        // SAFETY: `install` stored the load address of the relocated entry of
        // this very function (the rewriter verified it is a callable copy
        // that jumps back into the original body), with the same signature.
        unsafe {
            let f: extern "C" fn(*mut c_void) = std::mem::transmute(original as usize);
            f(tstate);
        }
    }
}

/// The relocated original `PyThreadState_New` (load address), set by [`install`].
static NEW_ORIGINAL: AtomicU64 = AtomicU64::new(0);

/// Called with each thread state `PyThreadState_New` created.
static NEW_OBSERVER: OnceLock<fn(u64)> = OnceLock::new();

/// Installs the observer of `PyThreadState_New` (once; later calls are ignored).
pub fn set_thread_new_observer(observer: fn(u64)) {
    let _ = NEW_OBSERVER.set(observer);
}

/// Replacement of `PyThreadState *PyThreadState_New(PyInterpreterState *)`:
/// the original, then the observer with the new thread state.
extern "C" fn thread_state_new(interp: *mut c_void) -> *mut c_void {
    let original = NEW_ORIGINAL.load(Ordering::Acquire);
    if original == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: `install` stored the load address of the relocated entry of
    // this very function (the rewriter verified it is a callable copy that
    // jumps back into the original body), with the same signature.
    let created = unsafe {
        let f: extern "C" fn(*mut c_void) -> *mut c_void = std::mem::transmute(original as usize);
        f(interp)
    };
    if let (false, Some(observer)) = (created.is_null(), NEW_OBSERVER.get()) {
        observer(created as u64);
    }
    created
}

/// The relocated original `PyThreadState_SetAsyncExc` (load address), set by [`install`].
static SET_ASYNC_EXC_ORIGINAL: AtomicU64 = AtomicU64::new(0);

/// Maps the `id` of `PyThreadState_SetAsyncExc` to the native ident to pass
/// on (`None`: it names no thread).
static IDENT_RESOLVER: OnceLock<fn(u64) -> Option<u64>> = OnceLock::new();

/// Installs the resolver of `PyThreadState_SetAsyncExc` ids (once; later
/// calls are ignored). Without one, ids pass through unchanged.
pub fn set_ident_resolver(resolver: fn(u64) -> Option<u64>) {
    let _ = IDENT_RESOLVER.set(resolver);
}

/// Replacement of `int PyThreadState_SetAsyncExc(unsigned long id, PyObject *exc)`
/// (`unsigned long` is a word on the LP64 targets the rewriter supports).
extern "C" fn set_async_exc(id: u64, exc: *mut c_void) -> std::ffi::c_int {
    let target = match IDENT_RESOLVER.get() {
        Some(resolve) => match resolve(id) {
            Some(native) => native,
            None => return 0,
        },
        None => id,
    };
    let original = SET_ASYNC_EXC_ORIGINAL.load(Ordering::Acquire);
    if original == 0 {
        return 0;
    }
    // SAFETY: `install` stored the load address of the relocated entry of
    // this very function (the rewriter verified it is a callable copy that
    // jumps back into the original body), with the same signature.
    unsafe {
        let f: extern "C" fn(u64, *mut c_void) -> std::ffi::c_int =
            std::mem::transmute(original as usize);
        f(target, exc)
    }
}

/// Replacement of `_Py_HashPointer(const void *)`.
extern "C" fn hash_pointer(p: *const c_void) -> isize {
    pointer_hash(p as u64) as isize
}

/// `Py_TYPE(op)->tp_dealloc(op)` with the given field offsets.
///
/// # Safety
/// `op` points at a live object whose type pointer sits at `ob_type` and
/// whose type's deallocator slot sits at `tp_dealloc` (CPython's contract
/// for `_Py_Dealloc`).
pub unsafe fn call_tp_dealloc(op: *mut c_void, ob_type: usize, tp_dealloc: usize) {
    // SAFETY: guaranteed by the caller: both reads are fields of live objects.
    unsafe {
        let ty = *(op.cast::<u8>().add(ob_type).cast::<*const u8>());
        let f = *(ty
            .add(tp_dealloc)
            .cast::<Option<unsafe extern "C" fn(*mut c_void)>>());
        // CPython calls the slot unconditionally (a NULL slot crashes there too);
        // a NULL here is left alone rather than called.
        if let Some(f) = f {
            f(op);
        }
    }
}

/// Full replacement of `_Py_Dealloc(PyObject *)`.
extern "C" fn dealloc(op: *mut c_void) {
    let (ob_type, tp_dealloc) = (
        OB_TYPE.load(Ordering::Relaxed),
        TP_DEALLOC.load(Ordering::Relaxed),
    );
    // SAFETY: CPython calls `_Py_Dealloc` with an object whose refcount
    // reached zero; `install` only routes here after storing the offsets the
    // rewriter verified against this library's `_Py_Dealloc` body.
    unsafe { call_tp_dealloc(op, ob_type, tp_dealloc) };
    if MAYBE_HASHED.may_contain(op as u64) {
        forget_with(&IDENTITY, op as u64);
    }
}

/// What [`install`] did with each detour of the descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installed {
    Replaced(DetourKind),
    /// Unknown kind or missing offsets: the original keeps running.
    Skipped {
        index: usize,
        reason: &'static str,
    },
}

/// `replacement` for a detour whose replacement runs the relocated original:
/// stores the original's load address in `original`, or says why there is
/// no callable original (`missing`).
fn wrapping(
    info: &DetourInfo,
    descriptor: &LiveDescriptor,
    original: &AtomicU64,
    replacement: u64,
    missing: &'static str,
) -> Result<u64, &'static str> {
    if info.original == 0 || info.flags & retrace_abi::DETOUR_FULL_REPLACEMENT != 0 {
        return Err(missing);
    }
    original.store(
        info.original.wrapping_add(descriptor.info().load_bias),
        Ordering::Release,
    );
    Ok(replacement)
}

/// The replacement for a detour, or why there is none.
fn replacement(
    kind: Option<DetourKind>,
    info: &DetourInfo,
    descriptor: &LiveDescriptor,
) -> Result<u64, &'static str> {
    match kind {
        Some(DetourKind::ThreadStateClear) => wrapping(
            info,
            descriptor,
            &CLEAR_ORIGINAL,
            thread_state_clear as *const () as u64,
            "PyThreadState_Clear has no callable original",
        ),
        Some(DetourKind::SetAsyncExc) => wrapping(
            info,
            descriptor,
            &SET_ASYNC_EXC_ORIGINAL,
            set_async_exc as *const () as u64,
            "PyThreadState_SetAsyncExc has no callable original",
        ),
        Some(DetourKind::ThreadStateNew) => wrapping(
            info,
            descriptor,
            &NEW_ORIGINAL,
            thread_state_new as *const () as u64,
            "PyThreadState_New has no callable original",
        ),
        Some(DetourKind::HashPointer) => Ok(hash_pointer as *const () as u64),
        Some(DetourKind::Dealloc) => {
            let o = descriptor.info().offsets;
            if o.object_ob_type == ABSENT || o.type_tp_dealloc == ABSENT {
                return Err("descriptor lacks ob_type/tp_dealloc offsets");
            }
            OB_TYPE.store(o.object_ob_type as usize, Ordering::Relaxed);
            TP_DEALLOC.store(o.type_tp_dealloc as usize, Ordering::Relaxed);
            Ok(dealloc as *const () as u64)
        }
        None => Err("unknown detour kind"),
    }
}

/// Stores the replacement of every detour the descriptor lists into its
/// `detour_targets` slot, from which the detours jump.
pub fn install(descriptor: &LiveDescriptor) -> Vec<Installed> {
    let base = descriptor.info().address;
    // SAFETY: `LiveDescriptor` validated that a whole, aligned Descriptor
    // lives at `base`; `detour_count` and `detours` are written only by the
    // rewriter and never change.
    let count =
        unsafe { std::ptr::read((base + offset_of!(Descriptor, detour_count)) as *const u32) };
    let mut out = Vec::new();
    for index in 0..(count as usize).min(MAX_DETOURS) {
        // SAFETY: as above; `index < MAX_DETOURS` keeps the read inside `detours`.
        let info: DetourInfo = unsafe {
            std::ptr::read(
                (base + field::DETOURS + index * std::mem::size_of::<DetourInfo>())
                    as *const DetourInfo,
            )
        };
        let kind = DetourKind::from_u32(info.kind);
        match replacement(kind, &info, descriptor) {
            Ok(target) => {
                // SAFETY: the slot is an aligned u64 inside the descriptor; the
                // detours read it concurrently, hence the atomic store.
                let slot = unsafe {
                    AtomicU64::from_ptr((base + field::DETOUR_TARGETS + 8 * index) as *mut u64)
                };
                slot.store(target, Ordering::Release);
                out.extend(kind.map(Installed::Replaced));
            }
            Err(reason) => out.push(Installed::Skipped { index, reason }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_never_forgets_a_marked_address() {
        let f = MaybeHashed::new();
        let marked: Vec<u64> = (1..2000u64).map(|i| 0x7f00_0000_0000 + i * 48).collect();
        for &p in &marked {
            f.mark(p);
        }
        assert!(marked.iter().all(|&p| f.may_contain(p)));
        // Unmarked addresses are mostly filtered out (2^20 bits, 2000 set).
        let misses = (0..10_000u64)
            .map(|i| 0x5500_0000_0000 + i * 64)
            .filter(|&p| f.may_contain(p))
            .count();
        assert!(misses < 100, "{misses} false positives");
    }

    #[test]
    fn aligned_addresses_are_memoised_with_the_raw_fallback() {
        let map = Mutex::new(IdentityMap::new());
        let p = 0x7f00_1234_5670u64;
        let v = pointer_hash_with(&map, p, || None);
        assert_eq!(v, raw(p));
        assert_eq!(v, 0x07f0_0123_4567);
        assert_eq!(map.lock().unwrap().len(), 1);
        // A later location does not change a memoised value.
        assert_eq!(pointer_hash_with(&map, p, || Some(99)), v);
        forget_with(&map, p);
        assert_eq!(map.lock().unwrap().len(), 0);
        // After forgetting, a fresh value is computed.
        assert_eq!(pointer_hash_with(&map, p, || Some(99)), 99);
    }

    #[test]
    fn null_and_misaligned_addresses_are_not_memoised() {
        let map = Mutex::new(IdentityMap::new());
        assert_eq!(pointer_hash_with(&map, 0, || Some(5)), raw(0));
        assert_eq!(pointer_hash_with(&map, 0x1003, || Some(5)), raw(0x1003));
        assert_eq!(map.lock().unwrap().len(), 0);
        forget_with(&map, 0x1003);
    }

    #[test]
    fn location_minus_one_becomes_minus_two() {
        let map = Mutex::new(IdentityMap::new());
        assert_eq!(pointer_hash_with(&map, 0x1000, || Some(-1)), -2);
        // raw(p) == -1 for p = 0xffff...f rotated: p = !0 is misaligned; check -1 -> -2 on raw.
        assert_eq!(raw(u64::MAX), -2);
    }

    #[test]
    fn engine_hook_point_reports_no_location_yet() {
        assert_eq!(nearest_visible_location_hash(), None);
    }

    static FREED: AtomicU64 = AtomicU64::new(0);
    extern "C" fn fake_tp_dealloc(op: *mut c_void) {
        FREED.store(op as u64, Ordering::SeqCst);
    }

    #[test]
    fn tp_dealloc_is_called_through_the_type() {
        // A fake type with tp_dealloc at 0x30 and an object with ob_type at 8.
        let mut ty = [0u64; 8];
        ty[6] = fake_tp_dealloc as *const () as u64;
        let mut obj = [1u64, ty.as_mut_ptr() as u64];
        // SAFETY: the fake object and type have the described layout.
        unsafe { call_tp_dealloc(obj.as_mut_ptr().cast(), 8, 0x30) };
        assert_eq!(FREED.load(Ordering::SeqCst), obj.as_ptr() as u64);
    }

    /// A leaked descriptor with two detours.
    fn described(offsets: bool) -> LiveDescriptor {
        let mut d = Box::new(Descriptor::new());
        d.detour_count = 3;
        d.detours[0] = DetourInfo {
            kind: DetourKind::HashPointer as u32,
            flags: 0,
            site: 0x2d0990,
            original: 0x6b0000,
        };
        d.detours[1] = DetourInfo {
            kind: DetourKind::Dealloc as u32,
            flags: retrace_abi::DETOUR_FULL_REPLACEMENT,
            site: 0x1c9a10,
            original: 0,
        };
        d.detours[2] = DetourInfo {
            kind: 77,
            ..DetourInfo::default()
        };
        if offsets {
            d.offsets.object_ob_type = 8;
            d.offsets.type_tp_dealloc = 0x30;
        }
        let raw = Box::into_raw(d);
        // SAFETY: fresh exclusive allocation, leaked for the test process.
        unsafe {
            (*raw).self_address = raw as u64;
            LiveDescriptor::validate(
                raw as usize,
                std::mem::size_of::<Descriptor>() as u64,
                0,
                false,
            )
            .expect("valid test descriptor")
        }
    }

    fn targets(d: &LiveDescriptor) -> [u64; MAX_DETOURS] {
        // SAFETY: reads the leaked test descriptor.
        unsafe { (*(d.info().address as *const Descriptor)).detour_targets }
    }

    #[test]
    fn install_fills_the_target_slots() {
        let d = described(true);
        let done = install(&d);
        assert_eq!(
            done,
            vec![
                Installed::Replaced(DetourKind::HashPointer),
                Installed::Replaced(DetourKind::Dealloc),
                Installed::Skipped {
                    index: 2,
                    reason: "unknown detour kind"
                },
            ]
        );
        let t = targets(&d);
        assert_eq!(t[0], hash_pointer as *const () as u64);
        assert_eq!(t[1], dealloc as *const () as u64);
        assert_eq!(&t[2..], &[0; MAX_DETOURS - 2]);
    }

    #[test]
    fn dealloc_without_offsets_keeps_the_original() {
        let d = described(false);
        let done = install(&d);
        assert!(matches!(done[1], Installed::Skipped { index: 1, .. }));
        assert_eq!(targets(&d)[1], 0);
    }
}
