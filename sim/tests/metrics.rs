//! The metrics file's lines: one JSON object per step with a fixed set of keys in a fixed order,
//! the cross-check's figures and census counts on checked steps. Plots, notebooks and the CLI's
//! tests read these names; a refactor of the record types must not change them.

mod common;

use common::{data, Collect};
use halfscale_core::scaler::{LossScaler, ScalerConfig};
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::crosscheck::CrossCheck;
use halfscale_sim::metrics::MetricsWriter;
use halfscale_sim::train::{self, TrainConfig};
use halfscale_sim::Recipe;

/// The keys of a JSON object's top level, in the order they are written (strings in the
/// records hold no quotes or braces).
fn top_level_keys(line: &str) -> Vec<String> {
    let (mut depth, mut keys, mut chars) = (0, Vec::new(), line.chars().peekable());
    let mut expect_key = false;
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' => {
                depth += 1;
                expect_key = c == '{' && depth == 1;
            }
            '}' | ']' => depth -= 1,
            ',' if depth == 1 => expect_key = true,
            '"' => {
                let s: String = chars.by_ref().take_while(|&c| c != '"').collect();
                if expect_key && depth == 1 {
                    keys.push(s);
                    expect_key = false;
                }
            }
            _ => {}
        }
    }
    keys
}

#[test]
fn metrics_lines_keep_their_keys_order_and_census_fields() {
    // 2^100 overflows fp16 in the first backward: a skipped step with a first non-finite layer,
    // then clean steps as the scale backs off; every other step cross-checked.
    let huge = ScalerConfig {
        init_scale: 2f64.powi(100),
        ..ScalerConfig::pytorch()
    };
    let dir = std::env::temp_dir().join(format!("halfscale-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.jsonl");
    let mut backend = CpuBackend::new(Recipe::mixed_fp16(), 64);
    let mut scaler = LossScaler::new(huge).unwrap();
    let mut check = CrossCheck::new(
        Box::new(CpuBackend::new(Recipe::fp32(), 64)),
        &Recipe::mixed_fp16(),
    );
    let mut obs = Collect::default();
    let config = TrainConfig {
        max_batches: Some(4),
        check_every: 2,
        evaluate: false,
        ..TrainConfig::default()
    };
    train::train(
        &mut backend,
        &mut scaler,
        Some(&mut check),
        &data(),
        &config,
        &mut obs,
    )
    .unwrap();
    let mut w = MetricsWriter::create(&path).unwrap();
    for r in &obs.records {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let base = [
        "step", "epoch", "batch", "loss", "scale", "skipped", "found", "nan", "inf",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    // Step 0: skipped (inf), checked.
    assert_eq!(
        top_level_keys(lines[0]),
        with(&["first_non_finite", "check"]),
        "{}",
        lines[0]
    );
    // The scale is written as the f64 it is exactly (an f32 would print `1.2676506e30`).
    assert!(
        lines[0].starts_with("{\"step\":0,\"epoch\":0,\"batch\":0,\"loss\":")
            && lines[0]
                .contains("\"scale\":1.2676506002282294e+30,\"skipped\":true,\"found\":\"nan\"")
            && lines[0].contains("\"first_non_finite\":\"conv1\""),
        "{}",
        lines[0]
    );
    // The census counts, in their order (digits masked: the counts are the numerics' business).
    let masked: String = lines[0].chars().filter(|c| !c.is_ascii_digit()).collect();
    assert!(
        masked.contains(
            "\"census\":{\"total\":,\"zero\":,\"exact\":,\"rounded\":,\"subnormal\":,\"subnormal_inexact\":,\"flushed_to_zero\":,\"overflow\":,\"nan\":,\"inf\":,\"underflowed\":}"
        ),
        "{}",
        lines[0]
    );
    // Step 1: not checked; clean or not, no check object.
    assert!(!lines[1].contains("\"check\""), "{}", lines[1]);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let c = &v["check"]["layers"][3]["census"];
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut expected = [
        "total",
        "zero",
        "exact",
        "rounded",
        "subnormal",
        "subnormal_inexact",
        "flushed_to_zero",
        "overflow",
        "nan",
        "inf",
        "underflowed",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(
        top_level_keys(&v["check"]["logit_grad_census"].to_string()).len(),
        11
    );
    std::fs::remove_dir_all(&dir).ok();
}
