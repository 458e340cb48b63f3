//! The reference generator's random numbers, draw for draw: `rand` 0.8's `SmallRng` on a
//! 64-bit target (xoshiro256++, seeded through PCG32 by `SeedableRng::seed_from_u64`) and the
//! sampling `Rng::gen_range` and `Rng::gen::<f32>` do over it. Written out here so that a
//! letter costs one step of the generator and a multiply: `rand`'s `gen_range` over `u8`
//! divides on every call to find its rejection zone, which made a bid cost ~500 ns.
//! The tests compare every draw with `rand`'s.

/// One event's generator.
pub(crate) struct EventRng {
    s: [u64; 4],
}

/// `gen_range(b'a'..=b'z')`'s rejection zone over `u32` draws (rand computes it per call).
const LETTER_ZONE: u32 = u32::MAX - ((u32::MAX - 26 + 1) % 26);

impl EventRng {
    /// `SmallRng::seed_from_u64(seed)`: rand_core's default, 32 bytes of PCG32 output.
    pub(crate) fn seeded(seed: u64) -> Self {
        const MUL: u64 = 6364136223846793005;
        const INC: u64 = 11634580027462260723;
        let mut state = seed;
        let mut pcg32 = || {
            state = state.wrapping_mul(MUL).wrapping_add(INC);
            let xorshifted = (((state >> 18) ^ state) >> 27) as u32;
            xorshifted.rotate_right((state >> 59) as u32)
        };
        let mut s = [0u64; 4];
        for word in &mut s {
            let (lo, hi) = (pcg32(), pcg32());
            *word = u64::from(lo) | (u64::from(hi) << 32);
        }
        match s == [0; 4] {
            true => Self::split_mix(0),
            false => Self { s },
        }
    }

    /// xoshiro256++'s own `seed_from_u64` (SplitMix64), which `from_seed` falls back to for an
    /// all-zero seed.
    fn split_mix(mut state: u64) -> Self {
        let mut s = [0u64; 4];
        for word in &mut s {
            state = state.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            *word = z ^ (z >> 31);
        }
        Self { s }
    }

    #[inline(always)]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    #[inline(always)]
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// `gen_range(0..n)` over `usize` or `u64` (`n > 0`).
    #[inline]
    pub(crate) fn below_u64(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = (n << n.leading_zeros()).wrapping_sub(1);
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) <= zone {
                return (m >> 64) as u64;
            }
        }
    }

    /// `gen_range(0..n)` over `usize`.
    #[inline]
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.below_u64(n as u64) as usize
    }

    /// `gen_range(0..n)` over `i32` or `u32`, and `choose` over a slice of `n` items.
    #[inline]
    pub(crate) fn below_u32(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let zone = (n << n.leading_zeros()).wrapping_sub(1);
        loop {
            let m = u64::from(self.next_u32()) * u64::from(n);
            if (m as u32) <= zone {
                return (m >> 32) as u32;
            }
        }
    }

    /// `slice.choose(rng)` (the slice is not empty).
    #[inline]
    pub(crate) fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below_u32(items.len() as u32) as usize]
    }

    /// `gen_range(b'a'..=b'z')`.
    #[inline(always)]
    pub(crate) fn letter(&mut self) -> u8 {
        loop {
            let m = u64::from(self.next_u32()) * 26;
            if (m as u32) <= LETTER_ZONE {
                return b'a' + (m >> 32) as u8;
            }
        }
    }

    /// `gen::<f32>()`: 24 random bits in [0, 1).
    #[inline]
    pub(crate) fn unit_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// Every kind of draw equals `rand`'s, over many seeds and bounds.
    #[test]
    fn draws_equal_rands_small_rng() {
        let items: Vec<u32> = (0..10_000).collect();
        for seed in (0..2_000u64).chain([u64::MAX, 1 << 63]) {
            let (mut ours, mut theirs) = (EventRng::seeded(seed), SmallRng::seed_from_u64(seed));
            for round in 0..20u64 {
                let n = 1 + seed.wrapping_mul(31).wrapping_add(round * 7919) % 100_000;
                assert_eq!(ours.letter(), theirs.gen_range(b'a'..=b'z'), "seed {seed}");
                assert_eq!(ours.below(n as usize), theirs.gen_range(0..n as usize), "seed {seed}");
                assert_eq!(ours.below_u64(n * 1_000_003), theirs.gen_range(0..n * 1_000_003), "seed {seed}");
                assert_eq!(ours.below_u32(10_000) as i32, theirs.gen_range(0..10000), "seed {seed}");
                assert_eq!(ours.choose(&items), items.choose(&mut theirs).unwrap(), "seed {seed}");
                assert_eq!(ours.unit_f32().to_bits(), theirs.gen::<f32>().to_bits(), "seed {seed}");
            }
        }
    }

    #[test]
    fn an_all_zero_seed_falls_back_as_rand_does() {
        let mut z = EventRng::split_mix(0);
        let mut theirs = rand::rngs::SmallRng::from_seed([0; 32]);
        for _ in 0..10 {
            assert_eq!(z.next_u64(), rand::RngCore::next_u64(&mut theirs));
        }
    }
}
