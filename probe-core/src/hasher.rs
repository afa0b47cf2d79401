//! A cheap hasher for pointer-keyed side tables.
//!
//! Side tables are keyed by addresses of interpreter structures (thread
//! states, frames). They need speed, not resistance to hash flooding, and the
//! keys are aligned, so the hash must move high-entropy bits into the low bits
//! that the table uses for bucket selection.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Odd 64-bit constant (from the golden ratio) for multiplicative hashing.
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Multiplicative hasher for `u64` keys.
#[derive(Default, Clone, Copy, Debug)]
pub struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        // Fold the well-mixed high half into the low bits used for buckets.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(K);
    }
}

/// A hash map keyed by an address.
pub type PtrMap<V> = HashMap<u64, V, BuildHasherDefault<PtrHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_keys_spread_over_low_bits() {
        let build = BuildHasherDefault::<PtrHasher>::default();
        // 80-byte frames on a data stack: the low 4 bits of every key are zero.
        let mut buckets = [0u32; 64];
        for i in 0..6400u64 {
            let h = build.hash_one(0x7f00_0000_0000u64 + i * 80);
            buckets[(h & 63) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min(), buckets.iter().max());
        assert!(min >= Some(&50) && max <= Some(&150), "{buckets:?}");
    }

    #[test]
    fn map_round_trips() {
        let mut m: PtrMap<u32> = PtrMap::default();
        for i in 0..1000u64 {
            m.insert(i * 16, i as u32);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.get(&(999 * 16)), Some(&999));
        assert_eq!(m.get(&8), None);
    }
}
