//! Seeded hashing and a tiny PRNG (splitmix64): every simulated decision derives from these.
//!
//! Self-written so the simulator needs no `rand` dependency, and so that a decision is a pure
//! function of its inputs (seed, channel, message index, request identity) rather than of the
//! order in which concurrent requests happen to arrive.

/// One round of splitmix64: a strong 64-bit mixer (bijective, so distinct inputs never collide).
pub(crate) const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Order-sensitive combination of two words: `mix(a, b) != mix(b, a)` in general.
pub(crate) const fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ splitmix64(b).rotate_left(17))
}

/// Hashes bytes (FNV-1a, then splitmix64 to spread FNV's weak low bits).
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    splitmix64(h)
}

/// A splitmix64 stream. Cheap to create, so every message gets its own.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        // `splitmix64` adds the increment itself, so the state advances after mixing.
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in `0..n` (multiply-shift; the bias is negligible for our small `n`). `n` must be > 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`, with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Maps a hash to `[0, 1)`.
pub(crate) fn unit_f64(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_known_values() {
        // Reference values of splitmix64 seeded with 0 (Vigna's reference implementation).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn mix_is_order_sensitive_and_deterministic() {
        assert_ne!(mix(1, 2), mix(2, 1));
        assert_eq!(mix(7, 9), mix(7, 9));
        assert_ne!(hash_bytes(0, b"abc"), hash_bytes(1, b"abc"));
    }

    #[test]
    fn below_and_unit_stay_in_range() {
        let mut r = Rng::new(42);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[r.below(7) as usize] += 1;
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(Rng::new(3).range(5, 5), 5);
    }
}
