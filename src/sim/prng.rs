//! The simulator's only source of randomness.
//!
//! xoshiro256** seeded through splitmix64, as recommended by its authors: fast,
//! 256 bits of state, and no dependency whose output could change under a
//! crate upgrade (a seed must replay the same run on every future build of the
//! same commit). Every draw uses integer arithmetic or IEEE-754 basic
//! operations only, so the sequence is the same on every platform.

/// A probability as an exact fraction, so fault knobs print and compare
/// exactly and need no floating point to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub numerator: u32,
    pub denominator: u32,
}

impl Ratio {
    pub fn new(numerator: u32, denominator: u32) -> Ratio {
        let ratio = Ratio { numerator, denominator };
        ratio.assert_valid();
        ratio
    }

    pub fn percent(percent: u32) -> Ratio {
        Ratio::new(percent, 100)
    }

    pub fn zero() -> Ratio {
        Ratio::new(0, 1)
    }

    pub fn one() -> Ratio {
        Ratio::new(1, 1)
    }

    pub fn is_zero(&self) -> bool {
        self.numerator == 0
    }

    pub fn assert_valid(&self) {
        assert!(self.denominator > 0, "ratio with a zero denominator");
        assert!(self.numerator <= self.denominator, "ratio above one");
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prng {
    state: [u64; 4],
}

impl Prng {
    pub fn new(seed: u64) -> Prng {
        // splitmix64 spreads any seed (0, 1, 2…) over the whole state; xoshiro
        // must never start from the all-zero state, and splitmix64 never
        // yields four zeroes in a row.
        let mut splitmix_state = seed;
        let mut state = [0u64; 4];
        for word in state.iter_mut() {
            *word = splitmix64(&mut splitmix_state);
        }
        assert!(state != [0; 4]);
        Prng { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    pub fn u128(&mut self) -> u128 {
        let high = self.next_u64() as u128;
        let low = self.next_u64() as u128;
        (high << 64) | low
    }

    /// Uniform in `lo..=hi`, without modulo bias.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        let value = lo + self.below(span + 1);
        assert!(value >= lo && value <= hi);
        value
    }

    /// Uniform in `0..len`.
    pub fn index(&mut self, len: usize) -> usize {
        assert!(len > 0, "index into an empty range");
        let index = self.below(len as u64) as usize;
        assert!(index < len);
        index
    }

    /// True with `probability`. Always consumes exactly one draw, whatever the
    /// ratio, so that turning a knob to zero does not shift later draws.
    pub fn chance(&mut self, probability: Ratio) -> bool {
        probability.assert_valid();
        self.below(u64::from(probability.denominator)) < u64::from(probability.numerator)
    }

    pub fn boolean(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Exponentially distributed with the given mean, rounded down. Always
    /// consumes exactly one draw.
    pub fn exponential(&mut self, mean: u64) -> u64 {
        // Uniform in (0, 1]: 53 random mantissa bits, never zero, so the
        // logarithm is finite. The largest result is about 36.7 × mean.
        let uniform = ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        assert!(uniform > 0.0 && uniform <= 1.0);
        let value = -ln(uniform) * mean as f64;
        assert!(value >= 0.0);
        // `as` saturates, so a huge mean cannot wrap.
        value as u64
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    pub fn bytes(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// An independent stream derived from this generator's current state and
    /// `label`, without advancing this generator: a subsystem that forks one
    /// stream per fault knob can gain a knob (a new label) without shifting
    /// the draws of any other knob or of the parent. The same state and the
    /// same label give the same stream, so labels must be distinct.
    pub fn fork(&self, label: u64) -> Prng {
        let mut mixer = label ^ 0x6a09_e667_f3bc_c908; // sqrt(2) bits: any odd constant works.
        let mut seed = splitmix64(&mut mixer);
        for word in self.state {
            mixer = seed ^ word;
            seed = splitmix64(&mut mixer);
        }
        Prng::new(seed)
    }

    /// Uniform in `0..n` by Lemire's multiply-and-reject: unbiased, and
    /// usually without a division.
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        let mut product = u128::from(self.next_u64()) * u128::from(n);
        let mut low = product as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(n);
                low = product as u64;
            }
        }
        let value = (product >> 64) as u64;
        assert!(value < n);
        value
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Natural logarithm from IEEE-754 basic operations only. `f64::ln` calls
/// the platform's libm, whose last-bit rounding differs between libc
/// versions; one differing delay would send a seed down another path.
fn ln(x: f64) -> f64 {
    assert!(x.is_normal() && x > 0.0);
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // Mantissa scaled into [1, 2), then into [√½, √2) so the series below
    // converges fast: |z| ≤ 0.1716.
    let mut mantissa = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if mantissa > std::f64::consts::SQRT_2 {
        mantissa /= 2.0;
        exponent += 1;
    }
    // ln(m) = 2·atanh(z) = 2·(z + z³/3 + z⁵/5 + …), z = (m − 1)/(m + 1).
    // 12 terms: 0.1716^25 < 1e-19, below f64 precision.
    let z = (mantissa - 1.0) / (mantissa + 1.0);
    let z_squared = z * z;
    let mut term = z;
    let mut sum = 0.0;
    for k in 0..12 {
        sum += term / (2 * k + 1) as f64;
        term *= z_squared;
    }
    exponent as f64 * std::f64::consts::LN_2 + 2.0 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_known_answer() {
        // Reference output of xoshiro256** from state {1, 2, 3, 4}; fails if
        // the update step differs from the published algorithm.
        let mut prng = Prng { state: [1, 2, 3, 4] };
        assert_eq!(prng.next_u64(), 11520);
        assert_eq!(prng.next_u64(), 0);
        assert_eq!(prng.next_u64(), 1509978240);
        assert_eq!(prng.next_u64(), 1215971899390074240);
    }

    #[test]
    fn splitmix_known_answer() {
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Prng::new(42);
        let mut b = Prng::new(42);
        let mut c = Prng::new(43);
        let a_draws: Vec<u64> = (0..1000).map(|_| a.next_u64()).collect();
        let b_draws: Vec<u64> = (0..1000).map(|_| b.next_u64()).collect();
        let c_draws: Vec<u64> = (0..1000).map(|_| c.next_u64()).collect();
        assert_eq!(a_draws, b_draws);
        assert_ne!(a_draws, c_draws);
    }

    #[test]
    fn range_bounds() {
        let mut prng = Prng::new(1);
        let mut seen = [false; 5];
        for _ in 0..10_000 {
            let value = prng.range_inclusive(10, 14);
            assert!((10..=14).contains(&value));
            seen[(value - 10) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "every value of a small range is drawn");
        assert_eq!(prng.range_inclusive(7, 7), 7);
        prng.range_inclusive(0, u64::MAX);
        let high = prng.range_inclusive(u64::MAX - 1, u64::MAX);
        assert!(high >= u64::MAX - 1);
    }

    #[test]
    fn range_unbiased_for_huge_spans() {
        // For n = 0.75 × 2^64 a plain multiply-shift maps two inputs to every
        // third output, so `value % 3` would split 50/25/25; rejection makes
        // it uniform.
        let mut prng = Prng::new(11);
        let n = 3u64 << 62;
        let mut residues = [0u32; 3];
        for _ in 0..30_000 {
            residues[(prng.range_inclusive(0, n - 1) % 3) as usize] += 1;
        }
        assert!(residues.iter().all(|&count| (9_000..=11_000).contains(&count)), "{residues:?}");
    }

    #[test]
    fn index_never_out_of_range() {
        let mut prng = Prng::new(2);
        for len in 1..200usize {
            for _ in 0..50 {
                assert!(prng.index(len) < len);
            }
        }
        assert_eq!(prng.index(1), 0);
    }

    #[test]
    fn chance_matches_probability() {
        let mut prng = Prng::new(3);
        let draws = 100_000;
        let hits = (0..draws).filter(|_| prng.chance(Ratio::percent(30))).count();
        // Standard deviation is ~145 hits; ±1500 fails only on a real bias.
        assert!((28_500..=31_500).contains(&hits), "hits {hits}");
        assert!((0..1000).all(|_| !prng.chance(Ratio::zero())));
        assert!((0..1000).all(|_| prng.chance(Ratio::one())));
        let rare = (0..draws).filter(|_| prng.chance(Ratio::new(1, 1000))).count();
        assert!((50..=150).contains(&rare), "rare {rare}");
    }

    #[test]
    fn exponential_mean() {
        let mut prng = Prng::new(4);
        let draws = 100_000u64;
        let sum: u64 = (0..draws).map(|_| prng.exponential(1000)).sum();
        // Rounding down lowers the mean by ~0.5.
        let mean = sum / draws;
        assert!((970..=1030).contains(&mean), "mean {mean}");
        assert_eq!(prng.exponential(0), 0);
    }

    #[test]
    fn ln_matches_libm() {
        let mut prng = Prng::new(5);
        for _ in 0..10_000 {
            let x = ((prng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let error = (ln(x) - x.ln()).abs();
            assert!(error <= 1e-14 * x.ln().abs().max(1.0), "x {x}");
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut prng = Prng::new(6);
        let mut items: Vec<u32> = (0..100).collect();
        prng.shuffle(&mut items);
        assert_ne!(items, (0..100).collect::<Vec<u32>>());
        items.sort();
        assert_eq!(items, (0..100).collect::<Vec<u32>>());
    }

    #[test]
    fn fork_is_independent_and_stable() {
        let parent = Prng::new(7);
        let before = parent.clone();
        let mut a = parent.fork(1);
        let mut b = parent.fork(2);
        assert_eq!(parent, before, "fork must not advance the parent");
        let mut a_again = parent.fork(1);
        assert_eq!(a.next_u64(), a_again.next_u64());
        assert_ne!(a.next_u64(), b.next_u64());
        let mut parent_draw = parent.clone();
        assert_ne!(parent_draw.next_u64(), parent.fork(0).next_u64());
    }

    #[test]
    fn bytes_fill_every_length() {
        let mut prng = Prng::new(8);
        for len in 0..40 {
            let mut buffer = vec![0u8; len];
            prng.bytes(&mut buffer);
            if len >= 16 {
                assert!(buffer.iter().any(|&b| b != 0));
            }
        }
        let mut a = Prng::new(9);
        let mut b = Prng::new(9);
        assert_eq!(a.u128(), b.u128());
    }
}
