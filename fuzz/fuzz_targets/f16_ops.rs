//! Every binary16 arithmetic operation, comparison, min/max and nextUp/nextDown on fuzzed
//! operands, in every rounding mode and both tininess rules, against Berkeley SoftFloat (bits and
//! flags), rustc_apfloat (values) and the NaN styles.
//!
//! Input: `a b c` as little-endian u16 (6 bytes; missing bytes read as zero).
#![no_main]

use halfscale_core::half::f16;
use halfscale_fuzz::{narrow, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let (a, b, c) = (input.u16(), input.u16(), input.u16());
    narrow::check_arithmetic::<f16>(a, b, c);
    narrow::check_ordering::<f16>(a, b);
});
