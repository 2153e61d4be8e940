//! A fast hasher keyed with a per-process secret, for maps whose keys an exporter chooses.
//!
//! Exporter addresses, observation domain ids, template ids and the addresses inside flow
//! records are all set by whoever can reach the flow port. An unkeyed multiplicative hash (Fx)
//! lets such a sender pick keys that land in one bucket group: the low bits of `(k ^ s) * K`
//! depend only on the low bits of `k`, so keys differing in their high bits probe the same
//! slots and every lookup walks the whole chain. Here every word is mixed into the state with a
//! full-avalanche finalizer (murmur3's `fmix64`) starting from a random per-process seed, so
//! which keys collide cannot be worked out without the seed. It costs a few more multiplies
//! than Fx per word, which the roll-up bench shows as noise next to its cache misses; SipHash
//! (std's keyed default) costs several times more per short key.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// murmur3's 64-bit finalizer: every input bit affects every output bit.
#[inline(always)]
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The process's secret seed, drawn once from the OS-seeded `RandomState`.
fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x6e6d_7364_u64))
}

/// Hasher state; see the module doc.
#[derive(Clone, Copy)]
pub struct SeededHasher {
    state: u64,
}

impl SeededHasher {
    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.state = fmix64(self.state ^ word).wrapping_add(word.rotate_left(29));
    }
}

impl Hasher for SeededHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(w) ^ (rest.len() as u64) << 59);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }
}

/// `BuildHasher` for maps keyed by values an exporter controls. Every instance of a process
/// shares one seed, so maps can be cloned and compared.
#[derive(Clone, Copy, Debug)]
pub struct SeededState {
    seed: u64,
}

impl Default for SeededState {
    fn default() -> Self {
        SeededState {
            seed: process_seed(),
        }
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;
    #[inline]
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher { state: self.seed }
    }
}

/// A `HashMap` with [`SeededState`].
pub type SeededHashMap<K, V> = std::collections::HashMap<K, V, SeededState>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that differ only in their high bits: an unkeyed Fx hash puts all of them in the same
    /// bucket group of a small table; this one spreads them.
    #[test]
    fn high_bit_keys_spread_over_low_bits() {
        let s = SeededState::default();
        let mut buckets = std::collections::HashSet::new();
        for i in 0..1024u64 {
            buckets.insert(s.hash_one(i << 40) & 1023);
        }
        // 1024 keys into 1024 buckets: a uniform hash fills ~63 % of them.
        assert!(buckets.len() > 500, "only {} buckets used", buckets.len());
    }

    #[test]
    fn same_process_same_hash() {
        let a = SeededState::default();
        let b = SeededState::default();
        assert_eq!(a.hash_one(42u32), b.hash_one(42u32));
        assert_ne!(a.hash_one(42u32), a.hash_one(43u32));
    }
}
