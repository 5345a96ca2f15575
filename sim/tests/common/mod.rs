//! Shared by the loop's tests: a small learnable synthetic dataset and an observer that keeps
//! what the loop reports.
#![allow(dead_code)] // each test binary uses its own part

use halfscale_sim::dataset::{Dataset, Split, IMAGE_PIXELS};
use halfscale_sim::rng::SeededRng;
use halfscale_sim::train::{Observer, StepRecord};

/// Class `c` lights a 4x4 square at a class-specific place, plus noise.
pub fn synthetic(n: usize, seed: u64) -> Split {
    let mut rng = SeededRng::new(seed);
    let mut images = vec![0u8; n * IMAGE_PIXELS];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let c = rng.below(10) as usize;
        labels[i] = c as u8;
        let img = &mut images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS];
        for px in img.iter_mut() {
            *px = rng.below(40) as u8;
        }
        let (y0, x0) = (4 + (c / 5) * 10, 2 + (c % 5) * 5);
        for y in y0..y0 + 4 {
            for x in x0..x0 + 4 {
                img[y * 28 + x] = 255;
            }
        }
    }
    Split::from_bytes(&images, &labels).unwrap()
}

pub fn data() -> Dataset {
    Dataset {
        train: synthetic(256, 1),
        test: synthetic(64, 2),
    }
}

#[derive(Default)]
pub struct Collect {
    pub lines: Vec<String>,
    pub records: Vec<StepRecord>,
}

impl Observer for Collect {
    fn line(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }
    fn step(&mut self, record: &StepRecord) -> halfscale_sim::Result<()> {
        self.records.push(record.clone());
        Ok(())
    }
}
