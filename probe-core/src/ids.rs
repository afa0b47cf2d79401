//! Thread ids and location hashes (SEMANTICS.md §9.3, §9.4).
//!
//! Retrace replaces CPython's thread idents with deterministic ids derived
//! from the root seed (for threads without a parent) or from the creating
//! thread's id and visible coordinates, and exposes location hashes of a
//! thread-space's visible stack. This module holds those derivations as pure
//! functions over words; the runtime supplies the inputs it reads from the
//! interpreter (the `RETRACE_ROOT_SEED` bytes, the parent's visible frames, a
//! predicate telling whether another thread state holds an id).

use crate::mixing::{n, Mixer};

/// Bits 63–48 of an id hold the creating space's id (masked to 16 bits).
pub const SPACE_SHIFT: u32 = 48;
/// Mask applied to a space id before it is shifted into an id.
pub const SPACE_MASK: u64 = 0xFFFF;
/// Mask of the hash part (bits 47–0) of an id.
pub const HASH_MASK: u64 = 0x0000_FFFF_FFFF_FFFF;
/// Added to the retry constant after each id collision; also its first value.
pub const COLLISION_STEP: u64 = 0x9e37_79b9_7f4a_7c15;
/// Domain string absorbed before the root seed bytes.
pub const ROOT_SEED_DOMAIN: &[u8; 20] = b"retrace.root-seed.v2";
/// Domain string absorbed at the start of every thread seed.
pub const THREAD_ID_DOMAIN: &[u8; 20] = b"retrace.thread-id.v2";
/// Environment variable the caller reads the root seed bytes from.
pub const ROOT_SEED_VAR: &str = "RETRACE_ROOT_SEED";
/// Seed bytes used when [`ROOT_SEED_VAR`] is unset (an empty value is a
/// distinct seed, not this default).
pub const DEFAULT_ROOT_SEED: &[u8] = b"retrace";

/// One visible frame as the hashes see it: its instruction coordinate (as a
/// word; a negative coordinate in two's complement) and its call ordinal.
pub type FramePair = (u64, u64);

/// The thread state current on the OS thread creating a new thread state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent<'a> {
    /// The parent's Retrace id (0 if it has none yet).
    pub tid: u64,
    /// Id of the parent's current space (the child's id carries it).
    pub space_id: u32,
    /// The frames visible in the parent's current space, oldest first (§6).
    pub frames: &'a [FramePair],
}

/// `fix(x)`: `N(x)`, then 0 → 1, so an id is never 0 nor `2^64 − 1`.
#[inline]
pub const fn fix(x: u64) -> u64 {
    match n(x) {
        0 => 1,
        v => v,
    }
}

/// `compose(sid, h)`: the space id in bits 63–48 over a non-zero 48-bit hash.
#[inline]
pub const fn compose(sid: u32, h: u64) -> u64 {
    let mut bits = n(h) & HASH_MASK;
    if bits == 0 {
        bits = 1;
    }
    fix((((sid as u64) & SPACE_MASK) << SPACE_SHIFT) | bits)
}

/// `root_seed()` for the given seed bytes: the caller passes the value of
/// [`ROOT_SEED_VAR`] or [`DEFAULT_ROOT_SEED`] when it is unset.
pub fn root_seed(m: Mixer, seed: &[u8]) -> u64 {
    compose(0, m.absorb(m.absorb(m.init(), ROOT_SEED_DOMAIN), seed))
}

/// `thread_seed(P)`: derived from `root_seed` when there is no parent or the
/// parent has no id yet (its frames are then ignored), else from the parent's
/// id and its visible frames.
pub fn thread_seed(m: Mixer, root_seed: u64, parent: Option<&Parent<'_>>) -> u64 {
    let mut h = m.absorb(m.init(), THREAD_ID_DOMAIN);
    match parent {
        Some(p) if p.tid != 0 => {
            h = m.mix(h, p.tid);
            for &(instr, ord) in p.frames {
                h = m.mix_frame(h, instr, ord);
            }
        }
        _ => h = m.mix(h, root_seed),
    }
    fix(h)
}

/// `assign(child, P)`: the new thread's id. `held(id)` must tell whether
/// another thread state of the interpreter already holds `id`; each
/// collision re-mixes the id with a step constant that grows per retry.
///
/// Like the reference, the retry loop ends only when `held` returns false;
/// a finite set of live ids makes that certain in practice (2^48 candidates).
pub fn assign(
    m: Mixer,
    root_seed: u64,
    parent: Option<&Parent<'_>>,
    mut held: impl FnMut(u64) -> bool,
) -> u64 {
    let sid = parent.map_or(0, |p| p.space_id);
    let mut id = compose(sid, thread_seed(m, root_seed, parent));
    let mut k = COLLISION_STEP;
    while held(id) {
        id = compose(sid, m.mix(id, k));
        k = k.wrapping_add(COLLISION_STEP);
    }
    id
}

/// `location_hash(T, S)` for a thread-space whose seed is `seed` (the
/// thread's id, `N`-normalized here), whose root counter is `root_counter`,
/// and whose visible frames are `frames`, oldest first.
pub fn location_hash(m: Mixer, seed: u64, root_counter: u64, frames: &[FramePair]) -> u64 {
    let mut h = n(seed);
    if root_counter != 0 {
        h = m.mix_frame(h, 0, root_counter);
    }
    for &(instr, ord) in frames {
        h = m.mix_frame(h, instr, ord);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixing::DEFAULT_MIXER;

    /// One column of Appendix C.
    struct Vectors {
        root_seed_retrace: u64,
        main_id_retrace: u64,
        main_id_smoke_a: u64,
        main_id_empty: u64,
        loc_rc0_two_frames: u64,
        loc_rc3_one_frame: u64,
        thread_seed_two_frames: u64,
        child_space0: u64,
        child_space1: u64,
        first_retry_space0: u64,
    }

    const A: Vectors = Vectors {
        root_seed_retrace: 0x0000_e290_cfa0_4305,
        main_id_retrace: 0x0000_9058_c016_e56b,
        main_id_smoke_a: 0x0000_64cf_81bd_a91e,
        main_id_empty: 0x0000_c181_654c_2eaa,
        loc_rc0_two_frames: 0xe68f_5483_ad96_da8e,
        loc_rc3_one_frame: 0xb563_9f58_967a_9f43,
        thread_seed_two_frames: 0xba50_2e76_82e6_6c60,
        child_space0: 0x0000_2e76_82e6_6c60,
        child_space1: 0x0001_2e76_82e6_6c60,
        first_retry_space0: 0x0000_f5d9_335c_1d77,
    };

    const B: Vectors = Vectors {
        root_seed_retrace: 0x0000_81b2_e239_d750,
        main_id_retrace: 0x0000_9439_9690_37a0,
        main_id_smoke_a: 0x0000_cb4b_828e_def1,
        main_id_empty: 0x0000_5f99_840e_986d,
        loc_rc0_two_frames: 0xa543_4755_1b48_426f,
        loc_rc3_one_frame: 0x25d6_426d_1f20_e61a,
        thread_seed_two_frames: 0x50e4_94b4_262c_8835,
        child_space0: 0x0000_94b4_262c_8835,
        child_space1: 0x0001_94b4_262c_8835,
        first_retry_space0: 0x0000_5f11_8dfc_cfa5,
    };

    const FRAMES: [FramePair; 2] = [(10, 0), (4, 2)];

    /// The main thread: created without a parent, nothing else holds an id.
    fn main_id(m: Mixer, seed: &[u8]) -> u64 {
        assign(m, root_seed(m, seed), None, |_| false)
    }

    fn check(m: Mixer, v: &Vectors) {
        assert_eq!(
            root_seed(m, DEFAULT_ROOT_SEED),
            v.root_seed_retrace,
            "root_seed"
        );
        let main = main_id(m, DEFAULT_ROOT_SEED);
        assert_eq!(main, v.main_id_retrace, "main id, seed retrace");
        assert_eq!(main_id(m, b"retrace"), main, "unset == retrace");
        assert_eq!(
            main_id(m, b"retrace-smoke-a"),
            v.main_id_smoke_a,
            "main id, smoke-a"
        );
        assert_eq!(main_id(m, b""), v.main_id_empty, "main id, empty seed");

        assert_eq!(
            location_hash(m, main, 0, &FRAMES),
            v.loc_rc0_two_frames,
            "location_hash rc 0"
        );
        assert_eq!(
            location_hash(m, main, 3, &FRAMES[..1]),
            v.loc_rc3_one_frame,
            "location_hash rc 3"
        );

        let rs = root_seed(m, DEFAULT_ROOT_SEED);
        let parent = |space_id| Parent {
            tid: main,
            space_id,
            frames: &FRAMES,
        };
        assert_eq!(
            thread_seed(m, rs, Some(&parent(0))),
            v.thread_seed_two_frames,
            "thread_seed"
        );
        assert_eq!(
            assign(m, rs, Some(&parent(0)), |_| false),
            v.child_space0,
            "child in space 0"
        );
        assert_eq!(
            assign(m, rs, Some(&parent(1)), |_| false),
            v.child_space1,
            "child in space 1"
        );
        // First retry: the natural id is held, the retried one is not.
        let natural = v.child_space0;
        let mut asked = Vec::new();
        let retried = assign(m, rs, Some(&parent(0)), |id| {
            asked.push(id);
            id == natural
        });
        assert_eq!(retried, v.first_retry_space0, "first collision retry");
        assert_eq!(asked, vec![natural, retried]);
    }

    #[test]
    fn appendix_c_variant_a() {
        check(Mixer::A, &A);
    }

    #[test]
    fn appendix_c_variant_b() {
        check(Mixer::B, &B);
    }

    #[test]
    fn checklist_item_45_main_thread_id() {
        // §21 item 45: GCC/Clang build, seed unset → 158710854247787.
        assert_eq!(
            main_id(DEFAULT_MIXER, DEFAULT_ROOT_SEED),
            158_710_854_247_787
        );
        assert_eq!(main_id(Mixer::B, DEFAULT_ROOT_SEED), 162_975_060_080_544);
    }

    #[test]
    fn checklist_item_46_seeds_separate_main_ids() {
        let m = DEFAULT_MIXER;
        let a = main_id(m, b"retrace-smoke-a");
        assert_eq!(a, main_id(m, b"retrace-smoke-a"));
        assert_ne!(a, main_id(m, b"retrace-smoke-b"));
        assert_ne!(a, main_id(m, DEFAULT_ROOT_SEED));
        assert_ne!(main_id(m, b""), main_id(m, DEFAULT_ROOT_SEED));
    }

    #[test]
    fn parent_without_id_uses_the_root_seed_and_ignores_frames() {
        let m = DEFAULT_MIXER;
        let rs = root_seed(m, DEFAULT_ROOT_SEED);
        let orphan = Parent {
            tid: 0,
            space_id: 0,
            frames: &FRAMES,
        };
        assert_eq!(thread_seed(m, rs, Some(&orphan)), thread_seed(m, rs, None));
    }

    #[test]
    fn compose_never_yields_zero_max_or_a_zero_hash_part() {
        assert_eq!(compose(0, 0), 1);
        assert_eq!(compose(0, 1 << 48), 1);
        assert_eq!(compose(7, 0), (7 << 48) | 1);
        // N(2^64-1) = 2^64-2: hash part all ones but the lowest bit.
        assert_eq!(compose(0xFFFF, u64::MAX), u64::MAX - 1);
        // Only the low 16 bits of the space id are kept.
        assert_eq!(compose(0x1_0002, 5), (2 << 48) | 5);
        assert_eq!(fix(0), 1);
        assert_eq!(fix(u64::MAX), u64::MAX - 1);
    }

    #[test]
    fn ids_carry_the_space_and_a_nonzero_hash() {
        let m = DEFAULT_MIXER;
        let rs = root_seed(m, DEFAULT_ROOT_SEED);
        for sid in [0u32, 1, 2, 0xFFFF, 0x1_2345] {
            let p = Parent {
                tid: 99,
                space_id: sid,
                frames: &FRAMES,
            };
            let id = assign(m, rs, Some(&p), |_| false);
            assert_eq!(id >> SPACE_SHIFT, u64::from(sid) & SPACE_MASK);
            assert_ne!(id & HASH_MASK, 0);
        }
    }

    #[test]
    fn retries_continue_until_an_id_is_free_and_stay_in_the_space() {
        let m = DEFAULT_MIXER;
        let rs = root_seed(m, DEFAULT_ROOT_SEED);
        let p = Parent {
            tid: 42,
            space_id: 3,
            frames: &[],
        };
        let mut asked = Vec::new();
        let id = assign(m, rs, Some(&p), |id| {
            asked.push(id);
            asked.len() <= 5
        });
        assert_eq!(asked.len(), 6);
        assert_eq!(*asked.last().unwrap_or(&0), id);
        let mut distinct = asked.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 6, "each retry yields a new id");
        assert!(asked.iter().all(|x| x >> SPACE_SHIFT == 3));
    }

    #[test]
    fn location_hash_depends_on_seed_counter_and_frames() {
        let m = DEFAULT_MIXER;
        let base = location_hash(m, 5, 0, &FRAMES);
        assert_ne!(base, location_hash(m, 6, 0, &FRAMES));
        assert_ne!(base, location_hash(m, 5, 1, &FRAMES));
        assert_ne!(base, location_hash(m, 5, 0, &[(10, 0), (4, 3)]));
        assert_ne!(base, location_hash(m, 5, 0, &[(4, 2), (10, 0)]));
        // No frames, counter 0: the normalized seed itself.
        assert_eq!(location_hash(m, u64::MAX, 0, &[]), u64::MAX - 1);
    }
}
