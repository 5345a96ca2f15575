//! The seeded random stream: ChaCha8 (`rand_chacha`, portable and reproducible across platforms)
//! with the two derived draws the trainer needs written out here, so a reimplementation can
//! reproduce them bit for bit:
//!
//! - [`SeededRng::uniform`]: `lo + (hi - lo) * u` in f64 with `u = (next_u64 >> 11) * 2^-53`,
//!   rounded once to f32 (the initial weights).
//! - [`SeededRng::below`]: an unbiased integer in `0..n` by Lemire's widening multiply with
//!   rejection; [`SeededRng::shuffle`] is Fisher–Yates from the last element down (the epoch order).
//!
//! PyTorch's own generator (mt19937 + its `randperm`) is not reproduced: the seed fixes *our*
//! stream, not torch's.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded ChaCha8 stream.
#[derive(Clone, Debug)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    /// The stream for `seed` (`ChaCha8Rng::seed_from_u64`).
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The stream for `seed` positioned `word_pos` 32-bit words in, where
    /// [`Self::word_pos`] of another stream of the same seed stood: the draws that follow are
    /// the ones that stream would have made next (how a run resumes its epoch order).
    pub fn at(seed: u64, word_pos: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_word_pos(u128::from(word_pos));
        Self(rng)
    }

    /// How many 32-bit words of the stream have been consumed (`ChaCha8Rng::get_word_pos`).
    /// A stream of 2^64 words (2^66 bytes) is never reached by a run, so it fits a `u64`.
    pub fn word_pos(&self) -> u64 {
        u64::try_from(self.0.get_word_pos()).unwrap_or(u64::MAX)
    }

    /// The next 64 raw bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform value in `[lo, hi)`, computed in f64 and rounded to f32.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f32 {
        let u = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        (lo + (hi - lo) * u) as f32
    }

    /// An unbiased integer in `0..n` (`n > 0`), Lemire's method.
    pub fn below(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let n64 = u64::from(n);
        let threshold = (u32::MAX - n + 1) % n; // 2^32 mod n
        loop {
            let m = u64::from(self.0.next_u32()) * n64;
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}
