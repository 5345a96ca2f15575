//! `--plot FILE.svg|png`: loss, loss scale and gradient underflow rate over the steps, three
//! panels sharing the step axis (`plotters`).
//!
//! Both formats carry the same titles, axis labels and tick numbers. The PNG's text is drawn with
//! DejaVu Sans (`sim/assets/fonts`, Bitstream Vera licence), bundled and registered with
//! plotters' `ab_glyph` rasteriser, so the picture reads on its own on any machine.

use crate::error::{Result, SimError};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The curves, as `(step, value)` points.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    /// Mean training loss per step.
    pub loss: Vec<(f64, f64)>,
    /// Loss scale per step.
    pub scale: Vec<(f64, f64)>,
    /// Fraction of gradient elements underflowed (flushed or inexact subnormal) at the scale,
    /// on cross-checked steps.
    pub underflow: Vec<(f64, f64)>,
    /// FP8 recipes: each quantized tensor's scale per step, by tensor name (two more panels
    /// when present).
    pub tensor_scales: Vec<(String, Vec<(f64, f64)>)>,
    /// FP8 recipes: the fraction of all quantized elements saturated, per step.
    pub saturated: Vec<(f64, f64)>,
    /// FP8 recipes: the fraction of all quantized elements flushed to zero, per step.
    pub flushed: Vec<(f64, f64)>,
}

impl Curves {
    /// Adds a tensor's scale at a step.
    pub fn push_tensor_scale(&mut self, tensor: &str, step: f64, scale: f64) {
        match self.tensor_scales.iter_mut().find(|(t, _)| t == tensor) {
            Some((_, pts)) => pts.push((step, scale)),
            None => self
                .tensor_scales
                .push((tensor.to_string(), vec![(step, scale)])),
        }
    }
}

const SIZE: (u32, u32) = (1000, 900);
/// With the FP8 panels.
const SIZE_FP8: (u32, u32) = (1000, 1500);

/// Writes the chart; the format follows the extension (`svg` or `png`).
pub fn write(path: &Path, curves: &Curves) -> Result<()> {
    // plotters' errors are generic over the drawing backend: carried as their text.
    let err = |message: String| SimError::Output {
        path: path.to_path_buf(),
        source: message.into(),
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    register_font().map_err(err)?;
    let size = if curves.tensor_scales.is_empty() {
        SIZE
    } else {
        SIZE_FP8
    };
    match ext.as_deref() {
        Some("svg") => draw(SVGBackend::new(path, size).into_drawing_area(), curves).map_err(err),
        Some("png") => {
            draw(BitMapBackend::new(path, size).into_drawing_area(), curves).map_err(err)
        }
        _ => Err(err(
            "unsupported plot format: use a .svg or .png file name".into()
        )),
    }
}

/// The bundled font, registered once as plotters' "sans-serif".
fn register_font() -> std::result::Result<(), String> {
    static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| "the bundled font DejaVuSans.ttf does not parse".into())
}

fn range(points: &[(f64, f64)], log: bool) -> (f64, f64) {
    let vals = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite() && (!log || *v > 0.0));
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return if log { (0.5, 2.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 2.0, hi * 2.0)
    } else if hi > lo {
        (lo.min(0.0), hi + 0.05 * (hi - lo))
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Curves) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let steps = c
        .loss
        .iter()
        .chain(&c.scale)
        .map(|p| p.0)
        .fold(1.0f64, f64::max);
    let fp8 = !c.tensor_scales.is_empty();
    let panels = root.split_evenly((if fp8 { 5 } else { 3 }, 1));
    for panel in &panels {
        // A frame per panel.
        let (w, h) = panel.dim_in_pixel();
        panel
            .draw(&Rectangle::new(
                [(0, 0), (w as i32 - 1, h as i32 - 1)],
                BLACK.mix(0.3).stroke_width(1),
            ))
            .map_err(e)?;
    }
    let finite = |v: &Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        v.iter().copied().filter(|p| p.1.is_finite()).collect()
    };
    // Loss.
    {
        let (lo, hi) = range(&c.loss, false);
        let mut b = ChartBuilder::on(&panels[0]);
        b.margin(12).x_label_area_size(30).y_label_area_size(60);
        b.caption("training loss", ("sans-serif", 18));
        let mut chart = b.build_cartesian_2d(0.0..steps, lo..hi).map_err(e)?;
        chart.configure_mesh().draw().map_err(e)?;
        chart
            .draw_series(LineSeries::new(finite(&c.loss), &BLUE))
            .map_err(e)?;
    }
    // Scale, logarithmic.
    {
        let (lo, hi) = range(&c.scale, true);
        let mut b = ChartBuilder::on(&panels[1]);
        b.margin(12).x_label_area_size(30).y_label_area_size(60);
        b.caption("loss scale (log)", ("sans-serif", 18));
        let mut chart = b
            .build_cartesian_2d(0.0..steps, (lo..hi).log_scale())
            .map_err(e)?;
        chart.configure_mesh().draw().map_err(e)?;
        let pts: Vec<(f64, f64)> = c
            .scale
            .iter()
            .copied()
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
            .collect();
        chart.draw_series(LineSeries::new(pts, &RED)).map_err(e)?;
    }
    // Underflow rate.
    {
        let (lo, hi) = range(&c.underflow, false);
        let mut b = ChartBuilder::on(&panels[2]);
        b.margin(12).x_label_area_size(30).y_label_area_size(60);
        b.caption(
            "gradient elements underflowed at the scale (fraction)",
            ("sans-serif", 18),
        );
        let mut chart = b.build_cartesian_2d(0.0..steps, lo..hi).map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(finite(&c.underflow), &GREEN))
            .map_err(e)?;
    }
    if fp8 {
        // Each quantized tensor's scale, logarithmic, one colour per tensor.
        let all: Vec<(f64, f64)> = c
            .tensor_scales
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
            .collect();
        let (lo, hi) = range(&all, true);
        let mut b = ChartBuilder::on(&panels[3]);
        b.margin(12).x_label_area_size(30).y_label_area_size(60);
        b.caption("FP8 scale per tensor (log)", ("sans-serif", 18));
        let mut chart = b
            .build_cartesian_2d(0.0..steps, (lo..hi).log_scale())
            .map_err(e)?;
        chart.configure_mesh().draw().map_err(e)?;
        for (i, (name, pts)) in c.tensor_scales.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .filter(|p| p.1 > 0.0 && p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts, colour))
                .map_err(e)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(e)?;
        // Saturated and flushed fractions of all quantized elements.
        let both: Vec<(f64, f64)> = c.saturated.iter().chain(&c.flushed).copied().collect();
        let (lo, hi) = range(&both, false);
        let mut b = ChartBuilder::on(&panels[4]);
        b.margin(12).x_label_area_size(30).y_label_area_size(60);
        b.caption(
            "FP8 elements saturated (red) and flushed to zero (blue), fraction",
            ("sans-serif", 18),
        );
        let mut chart = b.build_cartesian_2d(0.0..steps, lo..hi).map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(finite(&c.saturated), &RED))
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(finite(&c.flushed), &BLUE))
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dark pixels (each channel under 100) in a rectangle of an RGB buffer of width SIZE.0.
    fn dark(buf: &[u8], x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> usize {
        let w = SIZE.0 as usize;
        y.flat_map(|r| x.clone().map(move |c| (r as usize * w + c as usize) * 3))
            .filter(|&i| buf[i] < 100 && buf[i + 1] < 100 && buf[i + 2] < 100)
            .count()
    }

    #[test]
    fn the_png_carries_titles_and_tick_numbers() {
        register_font().unwrap();
        let curves = Curves {
            loss: (0..100)
                .map(|i| (i as f64, 2.3 / (1.0 + i as f64)))
                .collect(),
            scale: (0..100).map(|i| (i as f64, 65536.0)).collect(),
            underflow: (0..100).map(|i| (i as f64, 1e-3)).collect(),
            ..Curves::default()
        };
        let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        draw(
            BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area(),
            &curves,
        )
        .unwrap();
        // The first panel's title sits in its top band, centred; its y tick numbers left of the
        // plot; the last panel's x tick numbers and "step" under it. Lines and frames are thin
        // and grey or coloured, so dark pixels there are text.
        let title = dark(&buf, 350..650, 12..34);
        let y_ticks = dark(&buf, 12..60, 50..250);
        let x_ticks = dark(&buf, 80..980, 866..898);
        assert!(title > 20, "title pixels {title}");
        assert!(y_ticks > 20, "y tick pixels {y_ticks}");
        assert!(x_ticks > 20, "x tick pixels {x_ticks}");
    }
}
