//! Inputs the fuzz targets in `fuzz/` found, kept as tests so a fix stays fixed. Each names the
//! target and what it found. A bug found but not fixed yet would be kept here as an
//! `#[ignore]`d test whose note says who owns the fix.

use halfscale::sim::idx::parse_u8;
use halfscale::sim::SimError;
use std::path::Path;

/// `idx_parse`, input `03 | 00 00 08 03 1C 00 F7 F7 F7 F7 F7 F7 1C 00 00 00 1C` (the rank byte,
/// then the file): a rank-3 header whose dims multiply past u64. `parse_u8` multiplied the dims
/// unchecked, which panicked with overflow checks (tests, debug builds, the fuzzer) instead of
/// returning an error (fixed in `sim/src/idx.rs`: `SimError::DimsOverflow`).
#[test]
fn idx_dims_whose_product_overflows_are_an_error() {
    let file = [
        0x00, 0x00, 0x08, 0x03, 0x1C, 0x00, 0xF7, 0xF7, 0xF7, 0xF7, 0xF7, 0xF7, 0x1C, 0x00, 0x00,
        0x00, 0x1C,
    ];
    let parsed = std::panic::catch_unwind(|| parse_u8(Path::new("fuzz.idx"), &file, 3));
    assert!(
        matches!(parsed, Ok(Err(SimError::DimsOverflow { .. }))),
        "expected an error, got {parsed:?}"
    );
}

/// The same overflow where it wraps (builds without overflow checks): four dims of 2^16 multiply
/// to 2^64, which wraps to 0, so a bare header would be accepted as an array with no data.
#[test]
fn idx_dims_whose_product_wraps_to_zero_are_an_error() {
    let mut file = vec![0x00, 0x00, 0x08, 0x04];
    for _ in 0..4 {
        file.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    }
    let parsed = std::panic::catch_unwind(|| parse_u8(Path::new("fuzz.idx"), &file, 4));
    assert!(
        matches!(parsed, Ok(Err(SimError::DimsOverflow { .. }))),
        "expected an error, got {parsed:?}"
    );
}
