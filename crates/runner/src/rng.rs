//! A tiny counter-based generator. Random draws are a pure function of `(seed, stream, counter)`, which
//! is what makes a resumed job draw the same batches as an uninterrupted one without saving any state.

/// SplitMix64's finaliser: a good 64-bit mix, enough for sampling batches and initial weights.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `counter`-th draw of stream `stream` under `seed`.
pub fn draw(seed: u64, stream: u64, counter: u64) -> u64 {
    mix(mix(seed ^ mix(stream)).wrapping_add(counter))
}

/// A uniform index below `n` (n > 0).
pub fn index(seed: u64, stream: u64, counter: u64, n: usize) -> usize {
    // Multiply-shift instead of modulo: unbiased enough for n far below 2^64 and cheaper.
    ((draw(seed, stream, counter) as u128 * n as u128) >> 64) as usize
}

/// A sequential generator for weight initialisation.
pub struct SeqRng {
    seed: u64,
    counter: u64,
}

impl SeqRng {
    pub fn new(seed: u64) -> SeqRng {
        SeqRng { seed, counter: 0 }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.counter += 1;
        draw(self.seed, 0x5EED, self.counter)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_pure_and_spread() {
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 2, 4));
        assert_ne!(draw(1, 2, 3), draw(2, 2, 3));
        let mut counts = [0usize; 10];
        for i in 0..10_000 {
            counts[index(7, 1, i, 10)] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        let mut r = SeqRng::new(3);
        let xs: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
