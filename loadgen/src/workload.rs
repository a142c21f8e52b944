//! What to send: the operation mix, the key chooser (uniform or YCSB
//! zipfian), object sizes, and a small fast random number generator. Pure
//! code: seeded, no clock, no I/O.

use std::fmt;

/// Keys are tracked in memory (two u32 versions each), so the key space has
/// a cap: 16 Mi keys is 128 MiB of state.
pub const KEYS_MAX: u64 = 16 * 1024 * 1024;
/// Every object is at least one verifiable body header long.
pub const OBJECT_BYTES_MIN: u64 = crate::body::BODY_HEADER_BYTES as u64;
/// Largest object the generator will produce (the S3 single-PUT limit).
pub const OBJECT_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;
pub const ZIPF_THETA_DEFAULT: f64 = 0.99;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Put,
    Get,
    List,
    Delete,
    Head,
    Multipart,
}

pub const OP_KINDS: usize = 6;
pub const ALL_OPS: [OpKind; OP_KINDS] =
    [OpKind::Put, OpKind::Get, OpKind::List, OpKind::Delete, OpKind::Head, OpKind::Multipart];

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::List => "list",
            OpKind::Delete => "delete",
            OpKind::Head => "head",
            OpKind::Multipart => "multipart",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// wyrand: one multiply per draw, passes PractRand; plenty for load shapes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x2d35_8dcc_aa6c_78a5)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [0, n); n > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// A 64-bit mix (splitmix64's finaliser), for deriving values from keys.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Debug, Clone)]
pub struct Mix {
    /// Cumulative weights, in `ALL_OPS` order.
    cumulative: [u32; OP_KINDS],
}

impl Mix {
    /// Parses `put=30,get=65,list=5`.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut weights = [0u32; OP_KINDS];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("mix entry {part:?} is not op=weight"))?;
            let op = ALL_OPS.iter().find(|op| op.name() == name.trim()).ok_or_else(|| {
                format!("unknown op {name:?} in --mix (ops: put get list delete head multipart)")
            })?;
            let w: u32 =
                weight.trim().parse().map_err(|_| format!("bad weight {weight:?} in --mix"))?;
            weights[op.index()] = w;
        }
        let mut cumulative = [0u32; OP_KINDS];
        let mut total = 0u32;
        for i in 0..OP_KINDS {
            total = total.checked_add(weights[i]).ok_or("mix weights overflow")?;
            cumulative[i] = total;
        }
        if total == 0 {
            return Err("--mix has no op with a weight above 0".into());
        }
        Ok(Mix { cumulative })
    }

    pub fn pick(&self, rng: &mut Rng) -> OpKind {
        let total = self.cumulative[OP_KINDS - 1];
        let r = rng.below(total as u64) as u32;
        let i = self.cumulative.iter().position(|&c| r < c).expect("r < total");
        ALL_OPS[i]
    }

    pub fn weight(&self, op: OpKind) -> u32 {
        let i = op.index();
        self.cumulative[i] - if i == 0 { 0 } else { self.cumulative[i - 1] }
    }
}

/// YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record
/// synthetic databases", SIGMOD 1994): rank 0 is the most popular.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

pub fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub fn new(items: u64, theta: f64) -> Zipfian {
        assert!(items >= 1);
        assert!(theta > 0.0 && theta < 1.0, "YCSB's generator needs 0 < theta < 1");
        let zeta_n = zeta(items, theta);
        let zeta_2 = zeta(2, theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipfian { items, theta, alpha: 1.0 / (1.0 - theta), zeta_n, eta }
    }

    pub fn next_rank(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let rank = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.items - 1)
    }

    /// Probability of rank 0 (the hottest key): 1 / zeta(n, theta).
    pub fn rank0_probability(&self) -> f64 {
        1.0 / self.zeta_n
    }
}

#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform {
        keys: u64,
    },
    /// Ranks are spread over the key space by `rank * stride mod keys`
    /// (stride coprime to keys: a permutation), so the hot keys are not
    /// neighbours in name order.
    Zipfian {
        zipf: Zipfian,
        stride: u64,
    },
}

impl KeyChooser {
    pub fn uniform(keys: u64) -> KeyChooser {
        KeyChooser::Uniform { keys }
    }

    pub fn zipfian(keys: u64, theta: f64) -> KeyChooser {
        let mut stride = 0x9e37_79b9_7f4a_7c15 % keys.max(1);
        while keys > 1 && gcd(stride, keys) != 1 {
            stride += 1;
        }
        KeyChooser::Zipfian { zipf: Zipfian::new(keys, theta), stride: stride.max(1) }
    }

    pub fn next_key(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyChooser::Uniform { keys } => rng.below(*keys),
            KeyChooser::Zipfian { zipf, stride } => {
                let rank = zipf.next_rank(rng);
                ((rank as u128 * *stride as u128) % zipf.items as u128) as u64
            }
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[derive(Debug, Clone, PartialEq)]
pub enum SizeDist {
    Fixed(u64),
    Uniform {
        min: u64,
        max: u64,
    },
    /// exp(N(ln median, sigma)), clamped to [OBJECT_BYTES_MIN, max].
    LogNormal {
        median: u64,
        sigma: f64,
        max: u64,
    },
}

impl SizeDist {
    /// `uniform:1KiB-1MiB` or `lognormal:MEDIAN:SIGMA:MAX`.
    pub fn parse(text: &str) -> Result<SizeDist, String> {
        if let Some(range) = text.strip_prefix("uniform:") {
            let (a, b) = range
                .split_once('-')
                .ok_or("uniform size needs MIN-MAX, e.g. uniform:1KiB-1MiB")?;
            let (min, max) = (parse_bytes(a)?, parse_bytes(b)?);
            if min > max {
                return Err(format!("uniform size range {text:?} has MIN above MAX"));
            }
            return SizeDist::Uniform { min, max }.checked();
        }
        if let Some(rest) = text.strip_prefix("lognormal:") {
            let parts: Vec<&str> = rest.split(':').collect();
            let [median, sigma, max] = parts[..] else {
                return Err(
                    "lognormal size needs MEDIAN:SIGMA:MAX, e.g. lognormal:64KiB:1.0:4MiB".into()
                );
            };
            let sigma: f64 = sigma.parse().map_err(|_| format!("bad sigma {sigma:?}"))?;
            if !(0.0..=4.0).contains(&sigma) {
                return Err("lognormal sigma must be within 0..=4".into());
            }
            return SizeDist::LogNormal {
                median: parse_bytes(median)?,
                sigma,
                max: parse_bytes(max)?,
            }
            .checked();
        }
        Err(format!("unknown --size-dist {text:?} (uniform:MIN-MAX or lognormal:MEDIAN:SIGMA:MAX)"))
    }

    pub fn checked(self) -> Result<SizeDist, String> {
        let (lo, hi) = match &self {
            SizeDist::Fixed(n) => (*n, *n),
            SizeDist::Uniform { min, max } => (*min, *max),
            SizeDist::LogNormal { median, max, .. } => (*median.min(max), *max),
        };
        if lo < OBJECT_BYTES_MIN || hi > OBJECT_BYTES_MAX {
            return Err(format!("object sizes must be within {OBJECT_BYTES_MIN} B..5 GiB (a verifiable header is {OBJECT_BYTES_MIN} B)"));
        }
        Ok(self)
    }

    pub fn max_bytes(&self) -> u64 {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { max, .. } | SizeDist::LogNormal { max, .. } => *max,
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { min, max } => min + rng.below(max - min + 1),
            SizeDist::LogNormal { median, sigma, max } => {
                // Box-Muller: one standard normal from two uniforms.
                let u1 = 1.0 - rng.next_f64();
                let u2 = rng.next_f64();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let size = (*median as f64) * (sigma * z).exp();
                (size as u64).clamp(OBJECT_BYTES_MIN, *max)
            }
        }
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed(n) => write!(f, "{}", format_bytes(*n)),
            SizeDist::Uniform { min, max } => {
                write!(f, "uniform:{}-{}", format_bytes(*min), format_bytes(*max))
            }
            SizeDist::LogNormal { median, sigma, max } => {
                write!(f, "lognormal:{}:{sigma}:{}", format_bytes(*median), format_bytes(*max))
            }
        }
    }
}

/// Parses `4096`, `4KiB`, `4K` (binary), `4KB` (decimal), up to GiB/GB.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 =
        digits.parse().map_err(|_| format!("bad size {text:?} (e.g. 4096, 4KiB, 1MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("unknown size unit in {text:?} (B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(multiplier).ok_or_else(|| format!("size {text:?} overflows"))
}

pub fn format_bytes(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_rank0_frequency_matches_theory() {
        // Fails if the generator's constants (zeta, eta, alpha) are wrong:
        // for n = 1000, theta = 0.99, rank 0 must get 1/zeta(1000) ≈ 13.4 %.
        let zipf = Zipfian::new(1000, ZIPF_THETA_DEFAULT);
        let mut rng = Rng::new(7);
        let samples = 1_000_000;
        let mut counts = vec![0u64; 1000];
        for _ in 0..samples {
            counts[zipf.next_rank(&mut rng) as usize] += 1;
        }
        let expected0 = zipf.rank0_probability();
        let observed0 = counts[0] as f64 / samples as f64;
        assert!(
            (observed0 - expected0).abs() < 0.01 * expected0 + 0.001,
            "rank 0: {observed0} vs {expected0}"
        );
        let expected1 = 0.5f64.powf(ZIPF_THETA_DEFAULT) * expected0;
        let observed1 = counts[1] as f64 / samples as f64;
        assert!(
            (observed1 - expected1).abs() < 0.02 * expected1,
            "rank 1: {observed1} vs {expected1}"
        );
        // The tail is used, and frequencies fall with rank.
        assert!(counts[999] > 0);
        assert!(counts[10] > counts[100] && counts[100] > counts[900]);
    }

    #[test]
    fn zipfian_keys_are_a_permutation_of_ranks() {
        let chooser = KeyChooser::zipfian(1000, 0.99);
        let KeyChooser::Zipfian { stride, .. } = chooser else { panic!() };
        let mut seen = vec![false; 1000];
        for rank in 0..1000u64 {
            seen[((rank * stride) % 1000) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn mix_picks_by_weight() {
        let mix = Mix::parse("put=30,get=65,list=5").unwrap();
        let mut rng = Rng::new(1);
        let mut counts = [0u32; OP_KINDS];
        for _ in 0..100_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert!((counts[OpKind::Get.index()] as i64 - 65_000).abs() < 1_000);
        assert!((counts[OpKind::List.index()] as i64 - 5_000).abs() < 500);
        assert_eq!(counts[OpKind::Delete.index()], 0);
        assert!(Mix::parse("put=0").is_err());
        assert!(Mix::parse("copy=3").is_err());
    }

    #[test]
    fn sizes_parse_and_stay_in_range() {
        assert_eq!(parse_bytes("4KiB").unwrap(), 4096);
        assert_eq!(parse_bytes("1MB").unwrap(), 1_000_000);
        assert!(parse_bytes("4 parsecs").is_err());
        let d = SizeDist::parse("uniform:1KiB-1MiB").unwrap();
        let ln = SizeDist::parse("lognormal:64KiB:1.0:4MiB").unwrap();
        let mut rng = Rng::new(3);
        let mut below_median = 0;
        for _ in 0..10_000 {
            let s = d.sample(&mut rng);
            assert!((1024..=1 << 20).contains(&s));
            let l = ln.sample(&mut rng);
            assert!((OBJECT_BYTES_MIN..=4 << 20).contains(&l));
            below_median += (l < 64 * 1024) as u32;
        }
        assert!((4_500..5_500).contains(&below_median), "median off: {below_median}");
        assert!(SizeDist::parse("uniform:8-16").is_err());
    }
}
