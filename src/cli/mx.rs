//! `halfscale mx`: OCP Microscaling block quantization exactly as torchao 0.18's `to_mx` does it
//! (and `to_dtype` back), over a line protocol for tools and checkers.
//!
//! `mx quantize --elem E --scale-mode M`: every stdin line holds one block, 32 f32 bit patterns
//! (hexadecimal, at most 8 digits each, separated by blanks), and is answered `SS E0 E1 ... E31`:
//! the E8M0 scale and the 32 element codes, two upper-case hex digits each, elements unpacked (one
//! per byte, the code right-aligned: an FP4 code is `00`..`0F`, an FP6 code `00`..`3F`).
//!
//! `mx dequantize --elem E`: the reverse. Every line is `SS E0 ... E31` as `quantize` writes it
//! (at most 2 hex digits each; a code must fit the element's width) and is answered with the 32
//! f32 bit patterns of `to_dtype(..., torch.float32)`, 8 upper-case hex digits each.
//!
//! Blank lines are skipped. A malformed line gets a message on stderr with its line number and no
//! answer; the other lines are still answered; the exit status is then 2 (as `halfscale f16
//! batch`).

use clap::Subcommand;
use halfscale_core::e8m0::E8M0;
use halfscale_core::recipe::mx::{self, Element, MxBlock, ScaleMode, BLOCK_SIZE};
use std::fmt::Write as _;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  halfscale mx quantize --elem e4m3 --scale-mode floor < blocks.txt\n  halfscale mx dequantize --elem e2m1 < quantized.txt"
)]
pub struct Args {
    #[command(subcommand)]
    op: Op,
}

#[derive(Subcommand)]
enum Op {
    /// Read 32 f32 bit patterns per line, answer `SCALE E0 ... E31` (torchao 0.18 to_mx)
    #[command(
        long_about = "Reads one MX block per stdin line: 32 f32 bit patterns in hexadecimal (at most 8 digits each), separated by blanks. Answers each with `SS E0 ... E31`: the E8M0 scale and the 32 element codes, unpacked, two upper-case hex digits each, as torchao 0.18's to_mx(block, elem, 32, mode) computes them (torch 2.15, CPU).\nA malformed line gets a message on stderr with its line number; the others are still answered; the exit status is then 2."
    )]
    Quantize {
        /// Element format.
        #[arg(long, value_parser = parse_elem)]
        elem: Element,
        /// torchao's ScaleCalculationMode.
        #[arg(long = "scale-mode", value_parser = parse_mode)]
        scale_mode: ScaleMode,
    },
    /// Read `SCALE E0 ... E31` per line, answer the 32 f32 bit patterns (torchao 0.18 to_dtype)
    #[command(
        long_about = "Reads one quantized MX block per stdin line, `SS E0 ... E31` (hex, at most 2 digits each, element codes right-aligned and within the element's width), and answers each with the 32 dequantized values as f32 bit patterns (8 upper-case hex digits), as torchao 0.18's to_dtype(..., torch.float32) computes them: code value times 2^(SS - 127); scale FF gives the NaN 7FC00000.\nA malformed line gets a message on stderr with its line number; the others are still answered; the exit status is then 2."
    )]
    Dequantize {
        /// Element format.
        #[arg(long, value_parser = parse_elem)]
        elem: Element,
    },
}

fn parse_elem(s: &str) -> Result<Element, String> {
    Element::parse(s)
        .ok_or_else(|| format!("unknown element format `{s}`: use e4m3, e5m2, e3m2, e2m3 or e2m1"))
}

fn parse_mode(s: &str) -> Result<ScaleMode, String> {
    ScaleMode::parse(s)
        .ok_or_else(|| format!("unknown scale mode `{s}`: use floor, rceil, ceil or even"))
}

/// Why a line could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected {expected} hexadecimal fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("field {index} `{text}` is not a hexadecimal number of at most {digits} digits")]
    BadField {
        index: usize,
        text: String,
        digits: usize,
    },
    #[error("element code {code:02X} (field {index}) does not fit the {width} bits of {elem}")]
    CodeTooWide {
        index: usize,
        code: u8,
        width: u32,
        elem: &'static str,
    },
}

/// Parses exactly `N` hex fields of at most `digits` digits.
fn fields<const N: usize>(line: &str, digits: usize) -> Result<[u32; N], LineError> {
    let mut out = [0u32; N];
    let mut found = 0;
    for (index, text) in line.split_whitespace().enumerate() {
        found = index + 1;
        if index >= N {
            continue;
        }
        if text.is_empty() || text.len() > digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LineError::BadField {
                index,
                text: text.into(),
                digits,
            });
        }
        out[index] = u32::from_str_radix(text, 16).expect("checked hex digits");
    }
    if found != N {
        return Err(LineError::FieldCount { expected: N, found });
    }
    Ok(out)
}

/// Answers one `quantize` line: `SS E0 ... E31`, without a newline.
pub fn quantize_line(line: &str, elem: Element, mode: ScaleMode) -> Result<String, LineError> {
    let words = fields::<BLOCK_SIZE>(line, 8)?;
    let block = words.map(f32::from_bits);
    let mut scale = [E8M0::NAN];
    let mut codes = [0u8; BLOCK_SIZE];
    mx::quantize(&block, elem, mode, &mut scale, &mut codes).expect("one whole block");
    let mut out = String::with_capacity(3 * (BLOCK_SIZE + 1));
    write!(out, "{:02X}", scale[0].code()).expect("a String takes any write");
    for code in codes {
        write!(out, " {code:02X}").expect("a String takes any write");
    }
    Ok(out)
}

/// Answers one `dequantize` line: 32 f32 bit patterns, without a newline.
pub fn dequantize_line(line: &str, elem: Element) -> Result<String, LineError> {
    let words = fields::<{ BLOCK_SIZE + 1 }>(line, 2)?;
    let mut codes = [0u8; BLOCK_SIZE];
    for (index, (code, &word)) in codes.iter_mut().zip(&words[1..]).enumerate() {
        let word = word as u8;
        if u32::from(word) >> elem.width() != 0 {
            return Err(LineError::CodeTooWide {
                index: index + 1,
                code: word,
                width: elem.width(),
                elem: elem.name(),
            });
        }
        *code = word;
    }
    let block = MxBlock {
        scale: E8M0::from_code(words[0] as u8),
        codes,
    };
    let values = mx::dequantize_block(&block, elem);
    let mut out = String::with_capacity(9 * BLOCK_SIZE);
    for (i, v) in values.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        write!(out, "{sep}{:08X}", v.to_bits()).expect("a String takes any write");
    }
    Ok(out)
}

pub fn run(args: Args) -> ExitCode {
    match args.op {
        Op::Quantize { elem, scale_mode } => {
            super::f16_batch::answer_lines(|line| quantize_line(line, elem, scale_mode))
        }
        Op::Dequantize { elem } => {
            super::f16_batch::answer_lines(|line| dequantize_line(line, elem))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(words: &[u32; 32]) -> String {
        words
            .iter()
            .map(|w| format!("{w:08X}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_block_of_ones_is_scale_2_to_the_minus_8_in_e4m3_floor() {
        // amax 1.0: exponent 0 - 8 -> E8M0 code 119; 1.0 / 2^-8 = 256 = E4M3 0x78.
        let answer = quantize_line(&block(&[0x3F80_0000; 32]), Element::E4M3, ScaleMode::Floor);
        let expected = format!("77{}", " 78".repeat(32));
        assert_eq!(answer.unwrap(), expected);
    }

    #[test]
    fn dequantize_reverses_it() {
        let line = format!("77{}", " 78".repeat(32));
        let answer = dequantize_line(&line, Element::E4M3).unwrap();
        assert_eq!(answer, vec!["3F800000"; 32].join(" "));
    }

    #[test]
    fn malformed_lines_are_errors() {
        let short = vec!["0"; 31].join(" ");
        assert_eq!(
            quantize_line(&short, Element::E4M3, ScaleMode::Floor),
            Err(LineError::FieldCount {
                expected: 32,
                found: 31
            })
        );
        let long = vec!["0"; 33].join(" ");
        assert!(matches!(
            quantize_line(&long, Element::E4M3, ScaleMode::Floor),
            Err(LineError::FieldCount { found: 33, .. })
        ));
        let bad = format!("{} 1FFFFFFFF", vec!["0"; 31].join(" "));
        assert!(matches!(
            quantize_line(&bad, Element::E4M3, ScaleMode::Floor),
            Err(LineError::BadField { index: 31, .. })
        ));
        let sign = format!("+1 {}", vec!["0"; 31].join(" "));
        assert!(matches!(
            quantize_line(&sign, Element::E4M3, ScaleMode::Floor),
            Err(LineError::BadField { index: 0, .. })
        ));
        let wide = format!("7F 40{}", " 00".repeat(31));
        assert_eq!(
            dequantize_line(&wide, Element::E3M2),
            Err(LineError::CodeTooWide {
                index: 1,
                code: 0x40,
                width: 6,
                elem: "e3m2"
            })
        );
        assert!(dequantize_line(&format!("7F{}", " 10".repeat(32)), Element::E2M1).is_err());
        assert!(dequantize_line(&format!("7F{}", " 0F".repeat(32)), Element::E2M1).is_ok());
    }
}
