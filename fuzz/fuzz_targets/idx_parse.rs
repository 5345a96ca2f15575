//! The IDX parser (`halfscale_sim::idx::parse_u8`) on arbitrary bytes: an error, never a panic;
//! and whatever it accepts must be exactly what `encode_u8` writes back for its dims and data.
//!
//! Input: one byte choosing the expected rank (`ndims`), then the file's bytes. Inputs whose
//! rank byte is 0..=3 expect the header's own rank, so the parser's deeper checks are reached.
#![no_main]

use halfscale_sim::idx::{encode_u8, parse_u8};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&rank, bytes)) = data.split_first() else {
        return;
    };
    // Ranks 0..=3 are MNIST's, and also what a header byte usually says.
    let ndims = if rank < 4 {
        bytes.get(3).copied().unwrap_or(rank)
    } else {
        rank
    };
    if let Ok(array) = parse_u8(Path::new("fuzz.idx"), bytes, ndims) {
        assert_eq!(array.dims.len(), usize::from(ndims));
        let len: u128 = array.dims.iter().map(|&d| u128::from(d)).product();
        assert_eq!(len, array.data.len() as u128, "dims {:?}", array.dims);
        assert_eq!(encode_u8(&array.dims, &array.data), bytes);
    }
});
