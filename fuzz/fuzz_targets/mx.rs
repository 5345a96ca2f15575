//! MX block quantization (torchao 0.18 `to_mx`): the fast slice path `recipe::mx::quantize`
//! against the reference transcription `quantize_block` on arbitrary blocks (specials and
//! exponents steered near the scale modes' boundaries), dequantization of the result (no panic,
//! and a non-NaN scale gives back values no larger than the block's elements can round to), and
//! `halfscale mx quantize` / `dequantize`'s line parsers: a well-formed line answers what the
//! core computes, arbitrary text an answer or a `LineError`, never a panic.
//!
//! Input: `selector`, 32 little-endian f32, then free text for the parsers.
#![no_main]

use halfscale::cli::mx::{dequantize_line, quantize_line};
use halfscale_core::e8m0::E8M0;
use halfscale_core::recipe::mx::{self, Element, MxBlock, ScaleMode, BLOCK_SIZE};
use halfscale_fuzz::{steer_exponent, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let selector = input.u8();
    let elem = Element::ALL[usize::from(selector % 5)];
    let mode = ScaleMode::ALL[usize::from(selector / 5 % 4)];
    let steer = selector >= 128;
    let block: [f32; BLOCK_SIZE] = core::array::from_fn(|_| {
        let bits = input.u32();
        // Half the time all exponents within 16 of a random base: blocks whose amax sits near a
        // power of two with elements that round, underflow and saturate.
        let bits = if steer {
            steer_exponent(bits.into(), 23, 8, u64::from(selector & 0x7F) * 2, 16) as u32
        } else {
            bits
        };
        f32::from_bits(bits)
    });

    let reference = mx::quantize_block(&block, elem, mode);
    let mut scale = [E8M0::NAN];
    let mut codes = [0u8; BLOCK_SIZE];
    mx::quantize(&block, elem, mode, &mut scale, &mut codes).unwrap();
    let fast = MxBlock {
        scale: scale[0],
        codes,
    };
    assert_eq!(fast, reference, "{elem:?} {mode:?} {block:?}");
    for &c in &codes {
        assert!(
            u32::from(c) >> elem.width() == 0,
            "code {c:02X} wider than {elem:?}"
        );
    }

    let values = mx::dequantize_block(&reference, elem);
    assert_eq!(values.iter().all(|v| v.is_nan()), reference.scale.is_nan());

    // The CLI on the same block, as a well-formed line.
    let line: Vec<String> = block
        .iter()
        .map(|x| format!("{:08x}", x.to_bits()))
        .collect();
    let answer = quantize_line(&line.join(" "), elem, mode).unwrap();
    let expected: Vec<String> = core::iter::once(reference.scale.code())
        .chain(reference.codes)
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(answer, expected.join(" "));
    let back = dequantize_line(&answer, elem).unwrap();
    let expected: Vec<String> = values
        .iter()
        .map(|v| format!("{:08X}", v.to_bits()))
        .collect();
    assert_eq!(back, expected.join(" "));

    // Arbitrary text: an answer or an error.
    if let Ok(text) = core::str::from_utf8(input.rest()) {
        for line in text.lines() {
            let _ = quantize_line(line, elem, mode);
            let _ = dequantize_line(line, elem);
        }
    }
});
