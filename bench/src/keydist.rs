//! Key choosers of the YCSB workloads: uniform, zipfian and latest.
//!
//! Zipfian as in YCSB (θ = 0.99): item 0 is the most popular, item i has probability
//! proportional to 1 / (i + 1)^θ. Which key an item index names is decided by `keys::key`, which hashes the
//! index, so popular items are spread over the key space (YCSB's "scrambled" zipfian) without
//! a second hash here.

use rand::Rng;
use serde::Serialize;

/// YCSB's default skew.
pub const ZIPFIAN_THETA: f64 = 0.99;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Zipfian,
    /// Zipfian over recency: the most recently inserted key is the most popular (workload D).
    Latest,
}

/// Zipfian over `0..items`: item i with probability ∝ 1 / (i + 1)^θ, exactly, in constant
/// expected time. Rejection-inversion sampling (Hörmann and Derflinger, "Rejection-inversion to
/// generate variates from monotone discrete distributions", 1996; as in Apache Commons'
/// `RejectionInversionZipfSampler`). YCSB's closed form (Gray et al.) was tried first and its
/// third item came out 17 % too frequent in the distribution test.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    h_integral_x1: f64,
    h_integral_items: f64,
    s: f64,
}

/// log(1 + x) / x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x − 1) / x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

impl Zipfian {
    pub fn new(items: u64, theta: f64) -> Self {
        assert!(items >= 1, "a zipfian needs at least one item");
        assert!(
            theta > 0.0 && theta.is_finite(),
            "theta {theta} must be positive"
        );
        let mut z = Zipfian {
            items,
            theta,
            h_integral_x1: 0.0,
            h_integral_items: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_items = z.h_integral(items as f64 + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.theta * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.theta) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.theta)).max(-1.0);
        (helper1(t) * x).exp()
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        loop {
            let u = self.h_integral_items
                + rng.gen::<f64>() * (self.h_integral_x1 - self.h_integral_items);
            let x = self.h_integral_inverse(u);
            let k = ((x + 0.5) as u64).clamp(1, self.items);
            if (k as f64 - x) <= self.s || u >= self.h_integral(k as f64 + 0.5) - self.h(k as f64) {
                return k - 1;
            }
        }
    }

    /// The probability of item `i`.
    #[cfg(test)]
    pub fn probability(&self, i: u64) -> f64 {
        let zeta: f64 = (1..=self.items)
            .map(|k| 1.0 / (k as f64).powf(self.theta))
            .sum();
        1.0 / ((i + 1) as f64).powf(self.theta) / zeta
    }
}

/// Picks item indexes in `0..items` by a [`Distribution`].
#[derive(Debug, Clone)]
pub struct KeyChooser {
    dist: Distribution,
    items: u64,
    zipf: Option<Zipfian>,
}

impl KeyChooser {
    pub fn new(dist: Distribution, items: u64) -> Self {
        assert!(items > 0);
        let zipf = match dist {
            Distribution::Uniform => None,
            Distribution::Zipfian | Distribution::Latest => {
                Some(Zipfian::new(items, ZIPFIAN_THETA))
            }
        };
        KeyChooser { dist, items, zipf }
    }

    /// An index to read. `latest` is the highest index inserted so far (for `Latest`): the
    /// zipfian rank counts back from it, so fresh inserts are the hottest keys.
    pub fn next<R: Rng>(&self, rng: &mut R, latest: u64) -> u64 {
        match (&self.zipf, self.dist) {
            (Some(z), Distribution::Latest) => latest.saturating_sub(z.sample(rng)),
            (Some(z), _) => z.sample(rng).min(self.items - 1),
            (None, _) => rng.gen_range(0..self.items),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn zipfian_frequencies_follow_the_law() {
        let items = 1000;
        let z = Zipfian::new(items, ZIPFIAN_THETA);
        let mut rng = SmallRng::seed_from_u64(7);
        let samples = 2_000_000u64;
        let mut counts = vec![0u64; items as usize];
        for _ in 0..samples {
            let i = z.sample(&mut rng);
            assert!(i < items);
            counts[i as usize] += 1;
        }
        // The head of the distribution, where the counts are large enough to compare: each
        // rank within 5 % of its theoretical frequency.
        for (i, &count) in counts.iter().enumerate().take(10) {
            let expected = z.probability(i as u64) * samples as f64;
            let ratio = count as f64 / expected;
            assert!(
                (0.95..1.05).contains(&ratio),
                "rank {i}: {count} vs {expected:.0}"
            );
        }
        // The tail as a whole: ranks 100.. carry their theoretical mass within 3 %.
        let tail: u64 = counts[100..].iter().sum();
        let tail_expected: f64 =
            (100..items).map(|i| z.probability(i)).sum::<f64>() * samples as f64;
        let ratio = tail as f64 / tail_expected;
        assert!(
            (0.97..1.03).contains(&ratio),
            "tail {tail} vs {tail_expected:.0}"
        );
        // Skew: item 0 is hit about 1/H(n,θ) of the time, far more than uniform's 0.1 %.
        assert!(counts[0] as f64 / samples as f64 > 0.1);
    }

    #[test]
    fn uniform_covers_the_range_evenly() {
        let c = KeyChooser::new(Distribution::Uniform, 10);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[c.next(&mut rng, 0) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (9_000..11_000).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn latest_prefers_the_newest_index() {
        let c = KeyChooser::new(Distribution::Latest, 1000);
        let mut rng = SmallRng::seed_from_u64(3);
        let latest = 5_000;
        let mut newest = 0;
        for _ in 0..10_000 {
            let i = c.next(&mut rng, latest);
            assert!(i <= latest);
            if i == latest {
                newest += 1;
            }
        }
        assert!(newest > 1_000, "newest key picked {newest} times of 10 000");
    }
}
