//! Every bfloat16 arithmetic operation, comparison, min/max and nextUp/nextDown on fuzzed
//! operands, in every rounding mode and both tininess rules, against Berkeley SoftFloat (bits and
//! flags), rustc_apfloat (values) and the NaN styles.
//!
//! SoftFloat has no bfloat16 arithmetic: the oracle is its round-to-odd composition in f64.
//!
//! Input: `a b c` as little-endian u16 (6 bytes; missing bytes read as zero).
#![no_main]

use halfscale_core::half::bf16;
use halfscale_fuzz::{narrow, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let (a, b, c) = (input.u16(), input.u16(), input.u16());
    narrow::check_arithmetic::<bf16>(a, b, c);
    narrow::check_ordering::<bf16>(a, b);
});
