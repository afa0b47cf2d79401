//! The per-interpreter memo of deterministic identity hashes (SEMANTICS.md
//! §10): pointer → hash, plus `raw(p)`, the value used when no location
//! applies.
//!
//! Retrace replaces CPython's pointer hash; the first hash of an aligned
//! address is memoized so the value stays fixed until the object is freed
//! through the generic deallocator. The memo sits on the hashing hot path
//! and is consulted while the runtime must not fail, so it is a small
//! dedicated table rather than a `HashMap`:
//!
//! * Robin-Hood open addressing, capacity a power of two ≥ 16, doubled before
//!   the load would exceed 5/8, home slot `M(address, 0x9e3779b97f4a7c15) &
//!   mask` with the default mixer, backward-shift deletion (the reference's
//!   layout). The reference keeps each entry's probe length in the three zero
//!   low bits of the address; here the probe length is recomputed from the
//!   home slot, so any non-zero key works.
//! * Growth allocates with `try_reserve`: on memory exhaustion the insert is
//!   skipped (the caller then simply does not memoize), never an abort.
//!
//! Not synchronized: the caller holds the interpreter's lock (the GIL).

use crate::mixing::DEFAULT_MIXER;

/// Smallest capacity of an allocated table.
pub const MIN_CAPACITY: usize = 16;
/// Constant mixed with the address to find its home slot.
pub const INDEX_CONSTANT: u64 = 0x9e37_79b9_7f4a_7c15;
/// Maximum load, as `LOAD_NUM / LOAD_DEN` of the capacity.
const LOAD_NUM: usize = 5;
const LOAD_DEN: usize = 8;

/// `raw(p)`: `p` rotated right by 4 as a signed 64-bit value, −1 → −2 (the
/// hash CPython's own pointer hash would give).
#[inline]
pub const fn raw(p: u64) -> i64 {
    to_py_hash(p.rotate_right(4))
}

/// A word as a Python hash: reinterpreted as signed 64-bit, −1 → −2 (−1 is
/// CPython's error marker).
#[inline]
pub const fn to_py_hash(v: u64) -> i64 {
    match v as i64 {
        -1 => -2,
        h => h,
    }
}

/// Why [`IdentityMap::insert`] stored nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Address 0 is never memoized (and marks empty slots).
    #[error("address 0 cannot be memoized")]
    NullKey,
    /// Growing the table failed; the map is unchanged.
    #[error("out of memory growing the identity map to {0} slots")]
    OutOfMemory(usize),
}

/// One slot; `key == 0` means empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    key: u64,
    value: i64,
}

impl Slot {
    const EMPTY: Slot = Slot { key: 0, value: 0 };

    fn is_empty(self) -> bool {
        self.key == 0
    }
}

/// Pointer → identity hash memo of one interpreter.
#[derive(Debug, Default)]
pub struct IdentityMap {
    /// Empty (no allocation yet) or a power of two ≥ [`MIN_CAPACITY`] slots.
    slots: Vec<Slot>,
    len: usize,
}

impl IdentityMap {
    /// An empty map; allocates on the first insert.
    pub const fn new() -> Self {
        IdentityMap {
            slots: Vec::new(),
            len: 0,
        }
    }

    /// Number of memoized addresses.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is memoized.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slots (0 before the first insert).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The memoized hash of `key`, if any.
    pub fn get(&self, key: u64) -> Option<i64> {
        self.find(key).map(|i| self.slots[i].value)
    }

    /// Memoizes `value` for `key`, returning the value it replaces. On
    /// memory exhaustion nothing is stored and the map is unchanged.
    pub fn insert(&mut self, key: u64, value: i64) -> Result<Option<i64>, InsertError> {
        self.insert_with(key, value, try_alloc)
    }

    /// Forgets `key`, returning its hash if it was memoized.
    pub fn remove(&mut self, key: u64) -> Option<i64> {
        let mut hole = self.find(key)?;
        let removed = self.slots[hole].value;
        let mask = self.mask();
        // Backward shift: pull each following displaced entry one slot
        // closer to its home until an empty slot or an entry at home.
        loop {
            let next = (hole + 1) & mask;
            let s = self.slots[next];
            if s.is_empty() || self.distance(next, s.key) == 0 {
                break;
            }
            self.slots[hole] = s;
            hole = next;
        }
        self.slots[hole] = Slot::EMPTY;
        self.len -= 1;
        Some(removed)
    }

    /// Forgets everything, keeping the allocation.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::EMPTY);
        self.len = 0;
    }

    /// `insert` with the allocator injected, so exhaustion is testable.
    fn insert_with(
        &mut self,
        key: u64,
        value: i64,
        alloc: impl FnOnce(usize) -> Option<Vec<Slot>>,
    ) -> Result<Option<i64>, InsertError> {
        if key == 0 {
            return Err(InsertError::NullKey);
        }
        if let Some(i) = self.find(key) {
            return Ok(Some(std::mem::replace(&mut self.slots[i].value, value)));
        }
        if (self.len + 1) * LOAD_DEN > self.slots.len() * LOAD_NUM {
            let want = (self.slots.len() * 2).max(MIN_CAPACITY);
            let fresh = alloc(want).ok_or(InsertError::OutOfMemory(want))?;
            self.rehash_into(fresh);
        }
        self.place(Slot { key, value });
        self.len += 1;
        Ok(None)
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn home(&self, key: u64) -> usize {
        // Truncation is intended: only the bits under the mask matter.
        (DEFAULT_MIXER.mix(key, INDEX_CONSTANT) as usize) & self.mask()
    }

    /// Probe length of `key` stored at slot `i`.
    fn distance(&self, i: usize, key: u64) -> usize {
        i.wrapping_sub(self.home(key)) & self.mask()
    }

    fn find(&self, key: u64) -> Option<usize> {
        if key == 0 || self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(key);
        // An entry closer to its home than we are to ours proves absence.
        for d in 0..self.slots.len() {
            let s = self.slots[i];
            if s.is_empty() || self.distance(i, s.key) < d {
                return None;
            }
            if s.key == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Robin-Hood placement of an absent key; the table has a free slot.
    fn place(&mut self, mut entry: Slot) {
        let mask = self.mask();
        let mut i = self.home(entry.key);
        let mut d = 0;
        loop {
            let s = self.slots[i];
            if s.is_empty() {
                self.slots[i] = entry;
                return;
            }
            let sd = self.distance(i, s.key);
            if sd < d {
                // Take from the rich: the resident moves on in our place.
                self.slots[i] = entry;
                entry = s;
                d = sd;
            }
            i = (i + 1) & mask;
            d += 1;
        }
    }

    fn rehash_into(&mut self, fresh: Vec<Slot>) {
        let old = std::mem::replace(&mut self.slots, fresh);
        for s in old.into_iter().filter(|s| !s.is_empty()) {
            self.place(s);
        }
    }
}

/// An all-empty table of `n` slots, or `None` if memory is exhausted.
fn try_alloc(n: usize) -> Option<Vec<Slot>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, Slot::EMPTY);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Checks every structural invariant; returns a description of the first
    /// violation.
    fn check_invariants(m: &IdentityMap) -> Result<(), String> {
        let cap = m.slots.len();
        if cap != 0 && (!cap.is_power_of_two() || cap < MIN_CAPACITY) {
            return Err(format!("capacity {cap} is not a power of two >= 16"));
        }
        if m.len * LOAD_DEN > cap * LOAD_NUM {
            return Err(format!("load {}/{cap} exceeds 5/8", m.len));
        }
        let occupied: Vec<usize> = (0..cap).filter(|&i| !m.slots[i].is_empty()).collect();
        if occupied.len() != m.len {
            return Err(format!("len {} but {} occupied", m.len, occupied.len()));
        }
        let mut keys: Vec<u64> = occupied.iter().map(|&i| m.slots[i].key).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() != m.len {
            return Err("duplicate key".into());
        }
        for &i in &occupied {
            let d = m.distance(i, m.slots[i].key);
            // No gap between an entry and its home slot.
            for back in 1..=d {
                if m.slots[(i + cap - back) % cap].is_empty() {
                    return Err(format!("gap before slot {i} (distance {d})"));
                }
            }
            // Robin-Hood ordering: the next entry is at most one further.
            let j = (i + 1) % cap;
            if !m.slots[j].is_empty() && m.distance(j, m.slots[j].key) > d + 1 {
                return Err(format!("probe length jumps after slot {i}"));
            }
        }
        Ok(())
    }

    #[test]
    fn raw_rotates_and_avoids_minus_one() {
        assert_eq!(raw(0), 0);
        assert_eq!(raw(0x10), 1);
        assert_eq!(raw(0x7f00_1234_5670), 0x07f0_0123_4567);
        // Low nibble moves to the top: 0x...8 → bit 63 set → negative.
        assert_eq!(raw(8), i64::MIN);
        assert_eq!(raw(u64::MAX), -2);
        assert_eq!(to_py_hash(u64::MAX), -2);
        assert_eq!(to_py_hash(u64::MAX - 1), -2);
        assert_eq!(to_py_hash(5), 5);
        assert_eq!(to_py_hash(1 << 63), i64::MIN);
    }

    #[test]
    fn empty_map_allocates_lazily() {
        let mut m = IdentityMap::new();
        assert_eq!(m.capacity(), 0);
        assert_eq!(m.get(0x1000), None);
        assert_eq!(m.remove(0x1000), None);
        assert_eq!(m.insert(0x1000, 7), Ok(None));
        assert_eq!(m.capacity(), MIN_CAPACITY);
        assert_eq!(m.get(0x1000), Some(7));
        assert_eq!(m.insert(0x1000, 9), Ok(Some(7)));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn null_key_is_refused() {
        let mut m = IdentityMap::new();
        assert_eq!(m.insert(0, 1), Err(InsertError::NullKey));
        assert_eq!(m.get(0), None);
        assert!(m.is_empty());
    }

    #[test]
    fn grows_before_exceeding_five_eighths() {
        let mut m = IdentityMap::new();
        for k in 1..=10u64 {
            m.insert(k * 16, k as i64).expect("insert");
        }
        assert_eq!(m.capacity(), 16, "10/16 is exactly 5/8");
        m.insert(11 * 16, 11).expect("insert");
        assert_eq!(m.capacity(), 32, "11/16 would exceed 5/8");
        for k in 12..=20u64 {
            m.insert(k * 16, k as i64).expect("insert");
        }
        assert_eq!(m.capacity(), 32);
        m.insert(21 * 16, 21).expect("insert");
        assert_eq!(m.capacity(), 64);
        for k in 1..=21u64 {
            assert_eq!(m.get(k * 16), Some(k as i64));
        }
        check_invariants(&m).expect("invariants");
    }

    #[test]
    fn exhaustion_skips_the_insert_and_keeps_the_map() {
        let mut m = IdentityMap::new();
        assert_eq!(
            m.insert_with(0x40, 1, |_| None),
            Err(InsertError::OutOfMemory(16))
        );
        assert!(m.is_empty());
        for k in 1..=10u64 {
            m.insert(k * 8, 0).expect("insert");
        }
        assert_eq!(
            m.insert_with(0x1000, 1, |_| None),
            Err(InsertError::OutOfMemory(32))
        );
        assert_eq!(m.len(), 10);
        assert_eq!(m.capacity(), 16);
        assert_eq!(m.get(0x1000), None);
        // Replacing an existing key needs no allocation.
        assert_eq!(m.insert_with(8, 5, |_| None), Ok(Some(0)));
        check_invariants(&m).expect("invariants");
    }

    #[test]
    fn clear_forgets_everything() {
        let mut m = IdentityMap::new();
        for k in 1..=30u64 {
            m.insert(k * 8, 1).expect("insert");
        }
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.get(8), None);
        check_invariants(&m).expect("invariants");
    }

    #[test]
    fn home_slot_uses_the_reference_index() {
        let mut m = IdentityMap::new();
        m.insert(0x7f12_3456_7890, 3).expect("insert");
        let i = m.find(0x7f12_3456_7890).expect("present");
        let home = (DEFAULT_MIXER.mix(0x7f12_3456_7890, INDEX_CONSTANT) as usize) & 15;
        assert_eq!(i, home, "first entry sits at its home slot");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, i64),
        Remove(u64),
        Get(u64),
    }

    /// Mostly aligned addresses from a small pool (so keys repeat, collide
    /// and get removed), plus arbitrary non-zero words.
    fn key() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => (1u64..200).prop_map(|k| 0x7f00_0000_0000 + k * 16),
            1 => 1u64..,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (key(), any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => key().prop_map(Op::Remove),
            2 => key().prop_map(Op::Get),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn behaves_like_a_hash_map(ops in prop::collection::vec(op(), 1..600)) {
            let mut m = IdentityMap::new();
            let mut model: HashMap<u64, i64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(m.insert(k, v), Ok(model.insert(k, v)));
                    }
                    Op::Remove(k) => prop_assert_eq!(m.remove(k), model.remove(&k)),
                    Op::Get(k) => prop_assert_eq!(m.get(k), model.get(&k).copied()),
                }
                prop_assert_eq!(m.len(), model.len());
                if let Err(e) = check_invariants(&m) {
                    return Err(TestCaseError::fail(e));
                }
            }
            for (k, v) in &model {
                prop_assert_eq!(m.get(*k), Some(*v));
            }
        }

        #[test]
        fn drains_back_to_empty(keys in prop::collection::hash_set(1u64.., 1..300)) {
            let mut m = IdentityMap::new();
            for &k in &keys {
                prop_assert_eq!(m.insert(k, raw(k)), Ok(None));
            }
            let grown = m.capacity();
            prop_assert!(keys.len() * 8 <= grown * 5);
            for &k in &keys {
                prop_assert_eq!(m.remove(k), Some(raw(k)));
                prop_assert_eq!(m.get(k), None);
                if let Err(e) = check_invariants(&m) {
                    return Err(TestCaseError::fail(e));
                }
            }
            prop_assert!(m.is_empty());
            prop_assert_eq!(m.capacity(), grown, "the table never shrinks");
        }
    }
}
