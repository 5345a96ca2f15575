//! Replays `fixtures/mx_torchao.txt.gz`, recorded from torch 2.15 + torchao 0.18 by
//! `scripts/fixtures/record_mx.py`: `to_mx` in every element format and scale mode (zero,
//! subnormal, infinite, NaN, huge and tiny blocks, element ties, random blocks and random bit
//! patterns), `to_dtype`, the scale at every power-of-two boundary, and `amax_to_scale`.

use std::io::Read;

use halfscale_core::e8m0::E8M0;
use halfscale_core::recipe::mx::{self, Element, MxBlock, ScaleMode, BLOCK_SIZE};
use halfscale_core::recipe::torchao_tensorwise_scale;

fn fixture() -> String {
    let gz = include_bytes!("fixtures/mx_torchao.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("the fixture is gzip'd UTF-8");
    text
}

fn hex32(s: &str) -> u32 {
    u32::from_str_radix(s, 16).unwrap()
}

/// `SS` followed by 32 two-digit codes, no blanks.
fn packed_block(s: &str) -> MxBlock {
    assert_eq!(s.len(), 2 * (BLOCK_SIZE + 1), "{s}");
    let byte = |i: usize| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    MxBlock {
        scale: E8M0::from_code(byte(0)),
        codes: core::array::from_fn(|i| byte(i + 1)),
    }
}

struct Counts {
    q: usize,
    d: usize,
    r: usize,
    t: usize,
}

#[test]
fn torchao_to_mx_to_dtype_and_amax_to_scale_bit_for_bit() {
    let text = fixture();
    let mut blocks: Vec<[f32; BLOCK_SIZE]> = Vec::new();
    let mut n = Counts {
        q: 0,
        d: 0,
        r: 0,
        t: 0,
    };
    let mut failures = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut f = line.split(' ');
        match f.next().unwrap() {
            "B" => {
                let words: Vec<f32> = f.map(|w| f32::from_bits(hex32(w))).collect();
                blocks.push(words.try_into().unwrap());
            }
            "Q" => {
                let elem = Element::parse(f.next().unwrap()).unwrap();
                let mode = ScaleMode::parse(f.next().unwrap()).unwrap();
                let index: usize = f.next().unwrap().parse().unwrap();
                let expected = packed_block(f.next().unwrap());
                let reference = mx::quantize_block(&blocks[index], elem, mode);
                let mut scale = [E8M0::NAN];
                let mut codes = [0u8; BLOCK_SIZE];
                mx::quantize(&blocks[index], elem, mode, &mut scale, &mut codes).unwrap();
                let fast = MxBlock {
                    scale: scale[0],
                    codes,
                };
                if reference != expected || fast != expected {
                    failures.push(format!(
                        "Q {elem:?} {mode:?} block {index}: torchao {expected:02X?}\n reference {reference:02X?}\n fast {fast:02X?}"
                    ));
                }
                n.q += 1;
            }
            "D" => {
                let elem = Element::parse(f.next().unwrap()).unwrap();
                let block = packed_block(f.next().unwrap());
                let expected: Vec<u32> = f.map(hex32).collect();
                let got: Vec<u32> = mx::dequantize_block(&block, elem)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                if got != expected {
                    failures.push(format!(
                        "D {elem:?} {block:02X?}: torchao {expected:08X?}\n got {got:08X?}"
                    ));
                }
                n.d += 1;
            }
            "R" => {
                let amax = f32::from_bits(hex32(f.next().unwrap()));
                let mut block = [0.0f32; BLOCK_SIZE];
                block[0] = amax;
                for elem in Element::ALL {
                    for mode in ScaleMode::ALL {
                        let expected = u8::from_str_radix(f.next().unwrap(), 16).unwrap();
                        let got = mx::quantize_block(&block, elem, mode).scale.code();
                        if got != expected {
                            failures.push(format!(
                                "R {elem:?} {mode:?} amax {:08X}: torchao {expected:02X} got {got:02X}",
                                amax.to_bits()
                            ));
                        }
                    }
                }
                n.r += 1;
            }
            "T" => {
                let amax = f32::from_bits(hex32(f.next().unwrap()));
                for (max, pow2) in [
                    (448.0, false),
                    (448.0, true),
                    (57344.0, false),
                    (57344.0, true),
                ] {
                    let expected = hex32(f.next().unwrap());
                    let got = torchao_tensorwise_scale(amax, max, pow2).to_bits();
                    if got != expected {
                        failures.push(format!(
                            "T max {max} pow2 {pow2} amax {:08X}: torchao {expected:08X} got {got:08X}",
                            amax.to_bits()
                        ));
                    }
                }
                n.t += 1;
            }
            other => panic!("unknown record {other}"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
    // The fixture really holds what the header says: every combination, many boundaries.
    assert_eq!(n.q, blocks.len() * 20);
    assert!(blocks.len() > 200 && n.d > 300 && n.r > 2000 && n.t > 1000);
}
