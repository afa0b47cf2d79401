//! The word mixer and the hashing helpers built on it (SEMANTICS.md §9.1,
//! §9.2).
//!
//! Every id and hash the runtime exposes (thread ids, location hashes,
//! identity hashes) is derived with these functions, and recorded transcripts
//! depend on their exact output, so they follow the reference bit for bit.
//! The reference selects the mixer at build time: variant A (128-bit
//! product) on GCC/Clang 64-bit builds, variant B (64-bit only) on MSVC. The
//! runtime is built by rustc for x86-64, the equivalent of a GCC/Clang 64-bit
//! build, so [`DEFAULT_MIXER`] is A; B is kept so that its Appendix C
//! vectors stay checked and a B-compatible build is a one-constant change.
//!
//! Pure and dependency-free: usable in unit tests without a libpython.

/// First mixer constant `C1`.
pub const C1: u64 = 0xa076_1d64_78bd_642f;
/// Second mixer constant `C2`.
pub const C2: u64 = 0xe703_7ed1_a0b4_28db;
/// Inputs mixed to produce [`Mixer::init`].
pub const INIT_INPUTS: (u64, u64) = (0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344);
/// Tag or-ed into a non-zero call ordinal by [`Mixer::mix_frame`].
pub const ORD_TAG: u64 = 1 << 63;
/// Mask applied to an instruction coordinate by [`Mixer::mix_frame`].
pub const INSTR_MASK: u64 = (1 << 63) - 1;
/// The one word [`n`] never returns.
pub const WORD_MAX: u64 = u64::MAX;

/// Which build of the reference mixer to reproduce (§9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mixer {
    /// 128-bit product folded to 64 bits (GCC/Clang on 64-bit targets).
    A,
    /// 64-bit-only variant (MSVC builds of the reference).
    B,
}

/// The variant this runtime uses everywhere: rustc on x86-64 corresponds to a
/// GCC/Clang 64-bit build of the reference.
pub const DEFAULT_MIXER: Mixer = Mixer::A;

/// `N(h)`: maps `2^64 − 1` to `2^64 − 2`, every other word to itself (§0).
#[inline]
pub const fn n(h: u64) -> u64 {
    if h == WORD_MAX {
        WORD_MAX - 1
    } else {
        h
    }
}

/// Mixer A: `p = (s ⊕ C1) × (v ⊕ C2)` as 128 bits, `low64(p) ⊕ high64(p)`.
#[inline]
pub const fn mix_a(s: u64, v: u64) -> u64 {
    let p = ((s ^ C1) as u128) * ((v ^ C2) as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Mixer B: the 64-bit-only variant of §9.1.
#[inline]
pub const fn mix_b(s: u64, v: u64) -> u64 {
    let mut a = s ^ C1;
    let mut b = v ^ C2;
    a ^= a >> 32;
    b ^= b >> 32;
    a = a.wrapping_mul(C2);
    b = b.wrapping_mul(C1);
    a ^ b ^ (a >> 32) ^ (b >> 32)
}

impl Mixer {
    /// `M(s, v)` for this variant.
    #[inline]
    pub const fn mix(self, s: u64, v: u64) -> u64 {
        match self {
            Mixer::A => mix_a(s, v),
            Mixer::B => mix_b(s, v),
        }
    }

    /// `N(M(h, v))`, the step every helper below repeats.
    #[inline]
    const fn step(self, h: u64, v: u64) -> u64 {
        n(self.mix(h, v))
    }

    /// `INIT = N(M(0x243f6a8885a308d3, 0x13198a2e03707344))`.
    #[inline]
    pub const fn init(self) -> u64 {
        self.step(INIT_INPUTS.0, INIT_INPUTS.1)
    }

    /// `absorb(h, bytes)`: the byte length, then each full 8-byte chunk as a
    /// little-endian word, then a 1–7 byte tail zero-extended little-endian,
    /// each mixed in with `N(M(h, ·))`.
    pub fn absorb(self, h: u64, bytes: &[u8]) -> u64 {
        // usize is at most 64 bits on every supported target.
        let mut h = self.step(h, bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = self.step(h, u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            h = self.step(h, u64::from_le_bytes(word));
        }
        h
    }

    /// `mix_frame(h, instr, ord)`: the instruction coordinate with its top bit
    /// cleared, then (only when `ord ≠ 0`) the ordinal tagged with bit 63.
    ///
    /// `instr` is the coordinate as a word; a negative coordinate (e.g. −1
    /// before the first instruction on 3.11/3.12) is passed as its two's
    /// complement (`c as u64`).
    #[inline]
    pub const fn mix_frame(self, h: u64, instr: u64, ord: u64) -> u64 {
        let mut h = self.step(h, instr & INSTR_MASK);
        if ord != 0 {
            h = self.step(h, ORD_TAG | ord);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_only_moves_the_maximum_word() {
        assert_eq!(n(u64::MAX), u64::MAX - 1);
        assert_eq!(n(u64::MAX - 1), u64::MAX - 1);
        assert_eq!(n(0), 0);
        assert_eq!(n(12345), 12345);
    }

    #[test]
    fn appendix_c_mixer_vectors_variant_a() {
        assert_eq!(Mixer::A.mix(0, 0), 0x1ff5_c292_3a78_8d2c);
        assert_eq!(Mixer::A.mix(1, 2), 0xf785_8b38_a849_9be9);
        assert_eq!(Mixer::A.init(), 0x1e86_5780_c4fc_0eb8);
    }

    #[test]
    fn appendix_c_mixer_vectors_variant_b() {
        assert_eq!(Mixer::B.mix(0, 0), 0x9afa_db46_0e9c_13b9);
        assert_eq!(Mixer::B.mix(1, 2), 0x30e2_9d50_f5c5_2466);
        assert_eq!(Mixer::B.init(), 0x3924_182a_d199_0c3a);
    }

    #[test]
    fn default_is_the_128_bit_variant() {
        assert_eq!(DEFAULT_MIXER, Mixer::A);
    }

    #[test]
    fn mixer_is_order_sensitive() {
        for m in [Mixer::A, Mixer::B] {
            assert_ne!(m.mix(1, 2), m.mix(2, 1));
        }
    }

    /// Absorb written out step by step from the §9.2 text, independently of
    /// the chunking code above.
    fn absorb_by_hand(m: Mixer, mut h: u64, bytes: &[u8]) -> u64 {
        h = n(m.mix(h, bytes.len() as u64));
        let mut i = 0;
        while i < bytes.len() {
            let mut w = 0u64;
            for (k, b) in bytes[i..bytes.len().min(i + 8)].iter().enumerate() {
                w |= u64::from(*b) << (8 * k);
            }
            h = n(m.mix(h, w));
            i += 8;
        }
        h
    }

    #[test]
    fn absorb_matches_the_spec_text_for_all_tail_lengths() {
        let data: Vec<u8> = (1u8..=40).collect();
        for m in [Mixer::A, Mixer::B] {
            for len in 0..=data.len() {
                let bytes = &data[..len];
                assert_eq!(
                    m.absorb(m.init(), bytes),
                    absorb_by_hand(m, m.init(), bytes),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn absorb_distinguishes_empty_from_a_zero_byte_and_lengths() {
        let m = DEFAULT_MIXER;
        let h = m.init();
        // "" mixes only the length 0; "\0" mixes length 1 then tail word 0.
        assert_eq!(m.absorb(h, b""), n(m.mix(h, 0)));
        assert_ne!(m.absorb(h, b""), m.absorb(h, b"\0"));
        assert_ne!(m.absorb(h, b"\0"), m.absorb(h, b"\0\0"));
        // An 8-byte input has no tail step.
        let eight = *b"abcdefgh";
        let expected = n(m.mix(n(m.mix(h, 8)), u64::from_le_bytes(eight)));
        assert_eq!(m.absorb(h, &eight), expected);
    }

    #[test]
    fn mix_frame_masks_the_instruction_and_skips_ordinal_zero() {
        for m in [Mixer::A, Mixer::B] {
            let h = m.init();
            assert_eq!(m.mix_frame(h, 10, 0), n(m.mix(h, 10)));
            assert_eq!(
                m.mix_frame(h, 10, 2),
                n(m.mix(n(m.mix(h, 10)), ORD_TAG | 2))
            );
            // Bit 63 of the instruction is dropped: −1 and 2^63 − 1 agree.
            assert_eq!(m.mix_frame(h, u64::MAX, 0), m.mix_frame(h, INSTR_MASK, 0));
            assert_ne!(m.mix_frame(h, 10, 0), m.mix_frame(h, 10, 1));
        }
    }
}
