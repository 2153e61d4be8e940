//! The hasher for maps whose keys an exporter chooses.
//!
//! Exporter addresses, observation domain ids, template ids and the addresses inside flow
//! records are all set by whoever can reach the flow port. An unkeyed multiplicative hash (Fx)
//! lets such a sender pick keys that land in one bucket group: the low bits of `(k ^ s) * K`
//! depend only on the low bits of `k`, so keys differing in their high bits probe the same
//! slots and every lookup walks the whole chain. These maps use foldhash's quality variant
//! instead: seeded at random per process and per map, so which keys collide cannot be worked
//! out from outside. It is "minimally DoS-resistant" by its authors' words, not cryptographic:
//! enough for keys a remote sender picks blind. Its fast variant cost nothing over Fx in the
//! roll-up bench but, for some per-map seeds, spread 1,024 keys differing only in their high
//! bits over as few as 150 of 1,024 buckets; the quality variant's final mix spreads them
//! uniformly in every run and costs the roll-up ~9 %. A first version that mixed every word with
//! murmur3's finalizer cost it 45 % (decision 0009).

/// `BuildHasher` for maps keyed by values an exporter controls.
pub type SeededState = foldhash::quality::RandomState;

/// A `HashMap` with [`SeededState`].
pub type SeededHashMap<K, V> = std::collections::HashMap<K, V, SeededState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

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
    fn maps_are_seeded_differently() {
        let (a, b) = (SeededState::default(), SeededState::default());
        assert_ne!(a.hash_one(42u32), b.hash_one(42u32));
    }
}
