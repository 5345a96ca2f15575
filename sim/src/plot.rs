//! `--plot FILE.svg|png`: loss, loss scale and gradient underflow rate over the steps, three
//! panels sharing the step axis (`plotters`).
//!
//! SVG carries titles and tick labels (the viewer renders the text). PNG is drawn without any
//! text: plotters needs a font rasteriser for text on bitmaps, and bundling one (and a font)
//! is not worth it for a quick-look image; use SVG for a labelled chart.

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
}

const SIZE: (u32, u32) = (1000, 900);

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
    match ext.as_deref() {
        Some("svg") => draw(
            SVGBackend::new(path, SIZE).into_drawing_area(),
            curves,
            true,
        )
        .map_err(err),
        Some("png") => draw(
            BitMapBackend::new(path, SIZE).into_drawing_area(),
            curves,
            false,
        )
        .map_err(err),
        _ => Err(err(
            "unsupported plot format: use a .svg or .png file name".into()
        )),
    }
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

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    c: &Curves,
    text: bool,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let steps = c
        .loss
        .iter()
        .chain(&c.scale)
        .map(|p| p.0)
        .fold(1.0f64, f64::max);
    let panels = root.split_evenly((3, 1));
    for panel in &panels {
        // A frame per panel, so the PNG (without axis text) still shows where each chart is.
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
        b.margin(12)
            .x_label_area_size(if text { 30 } else { 0 })
            .y_label_area_size(if text { 60 } else { 0 });
        if text {
            b.caption("training loss", ("sans-serif", 18));
        }
        let mut chart = b.build_cartesian_2d(0.0..steps, lo..hi).map_err(e)?;
        let mut mesh = chart.configure_mesh();
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e)?;
        chart
            .draw_series(LineSeries::new(finite(&c.loss), &BLUE))
            .map_err(e)?;
    }
    // Scale, logarithmic.
    {
        let (lo, hi) = range(&c.scale, true);
        let mut b = ChartBuilder::on(&panels[1]);
        b.margin(12)
            .x_label_area_size(if text { 30 } else { 0 })
            .y_label_area_size(if text { 60 } else { 0 });
        if text {
            b.caption("loss scale (log)", ("sans-serif", 18));
        }
        let mut chart = b
            .build_cartesian_2d(0.0..steps, (lo..hi).log_scale())
            .map_err(e)?;
        let mut mesh = chart.configure_mesh();
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e)?;
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
        b.margin(12)
            .x_label_area_size(if text { 30 } else { 0 })
            .y_label_area_size(if text { 60 } else { 0 });
        if text {
            b.caption(
                "gradient elements underflowed at the scale (fraction)",
                ("sans-serif", 18),
            );
        }
        let mut chart = b.build_cartesian_2d(0.0..steps, lo..hi).map_err(e)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("step");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e)?;
        chart
            .draw_series(LineSeries::new(finite(&c.underflow), &GREEN))
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}
