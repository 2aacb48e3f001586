//! PNG plots (feature `plot`, plotters): held-out windows against their reconstruction, and a
//! decoded stream with its gaps.

use std::path::Path;

use anyhow::Result;
use funnel_artifacts::Windows;

use crate::codec::{CollectSink, SampleStatus};

/// Original vs. reconstruction of the first (up to) 4 of `original`'s windows, per channel, and
/// the error below. Both are `[C][T]` windows in original units.
pub fn plot_comparison(out: &Path, original: &Windows, reconstruction: &Windows, columns: &[String]) -> Result<()> {
    let channels = columns.len().max(1);
    let n = original.len().min(4);
    let t = original.dim / channels;
    let series =
        |w: &Windows, c: usize| -> Vec<f32> { (0..n).flat_map(|i| w.get(i)[c * t..(c + 1) * t].to_vec()).collect() };
    let chans: Vec<(Vec<f32>, Vec<f32>)> =
        (0..channels).map(|c| (series(original, c), series(reconstruction, c))).collect();
    draw_with_text_fallback(|text| draw_comparison(out, &chans, columns, t, text))
}

/// Runs `draw` with labels (`true`); if drawing text fails (no usable font on the machine), says
/// so and draws again without labels, so a plot is still written.
fn draw_with_text_fallback(draw: impl Fn(bool) -> Result<()>) -> Result<()> {
    draw(true).or_else(|e| {
        eprintln!("plot: drawing text failed ({e}); writing the plot without labels");
        draw(false)
    })
}

fn draw_comparison(
    out: &Path,
    chans: &[(Vec<f32>, Vec<f32>)],
    columns: &[String],
    window: usize,
    text: bool,
) -> Result<()> {
    use plotters::prelude::*;
    let plot_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    let root = BitMapBackend::new(out, (1400, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let (top, bottom) = root.split_vertically(500);
    let len = chans.first().map_or(0, |c| c.0.len());
    let bounds = |vals: &mut dyn Iterator<Item = f32>| {
        let (lo, hi) = vals.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((hi - lo) * 0.05).max(1e-6);
        (lo - pad, hi + pad)
    };
    let (lo, hi) = bounds(&mut chans.iter().flat_map(|(o, r)| o.iter().chain(r).copied()));
    let errs: Vec<Vec<f32>> = chans.iter().map(|(o, r)| o.iter().zip(r).map(|(a, b)| a - b).collect()).collect();
    let (elo, ehi) = bounds(&mut errs.iter().flatten().copied());
    let palette = [RGBColor(30, 30, 30), RGBColor(0, 90, 200), RGBColor(0, 140, 60), RGBColor(150, 0, 150)];

    let mut cb = ChartBuilder::on(&top);
    cb.margin(12).x_label_area_size(if text { 30 } else { 0 }).y_label_area_size(if text { 60 } else { 0 });
    if text {
        cb.caption("held-out: original (dark) vs reconstruction (red)", ("sans-serif", 22));
    }
    let mut chart = cb.build_cartesian_2d(0..len, lo..hi).map_err(|e| plot_err(&e))?;
    let mut mesh = chart.configure_mesh();
    if !text {
        mesh.disable_x_mesh().disable_y_mesh();
    }
    if text {
        mesh.y_desc("value").draw().map_err(|e| plot_err(&e))?;
    }
    for (c, (o, r)) in chans.iter().enumerate() {
        let oc = palette[c % palette.len()];
        let s = chart
            .draw_series(LineSeries::new(o.iter().enumerate().map(|(i, v)| (i, *v)), oc.stroke_width(2)))
            .map_err(|e| plot_err(&e))?;
        if text {
            s.label(format!("{} original", columns.get(c).map_or("", String::as_str)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], oc));
        }
        let s = chart
            .draw_series(LineSeries::new(r.iter().enumerate().map(|(i, v)| (i, *v)), RED.stroke_width(1)))
            .map_err(|e| plot_err(&e))?;
        if text && c == 0 {
            s.label("reconstruction").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        }
    }
    // Window boundaries.
    for b in (window..len).step_by(window.max(1)) {
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(b, lo), (b, hi)], BLACK.mix(0.25))))
            .map_err(|e| plot_err(&e))?;
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&e))?;
    }

    let mut cb = ChartBuilder::on(&bottom);
    cb.margin(12).x_label_area_size(if text { 30 } else { 0 }).y_label_area_size(if text { 60 } else { 0 });
    if text {
        cb.caption("error (original − reconstruction)", ("sans-serif", 18));
    }
    let mut chart = cb.build_cartesian_2d(0..len, elo..ehi).map_err(|e| plot_err(&e))?;
    if text {
        chart.configure_mesh().x_desc("sample").draw().map_err(|e| plot_err(&e))?;
    }
    for (c, e) in errs.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(e.iter().enumerate().map(|(i, v)| (i, *v)), palette[c % palette.len()]))
            .map_err(|e| plot_err(&e))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0, 0.0), (len, 0.0)], BLACK.mix(0.4))))
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}

/// Samples shown by [`plot_stream`].
pub const PLOT_SAMPLES: usize = 2048;

/// The first [`PLOT_SAMPLES`] reconstructed samples per channel; missing samples are gaps in
/// the lines over a shaded band.
pub fn plot_stream(out: &Path, columns: &[String], rec: &CollectSink) -> Result<()> {
    draw_with_text_fallback(|text| draw_stream(out, columns, rec, text))
}

fn draw_stream(out: &Path, columns: &[String], rec: &CollectSink, text: bool) -> Result<()> {
    use plotters::prelude::*;
    let plot_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    let channels = rec.channels.max(1);
    let len = rec.status.len().min(PLOT_SAMPLES);
    let first = rec.first_sample.unwrap_or(0) as usize;
    let finite = rec.values[..len * channels].iter().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi { (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)) } else { (-1.0, 1.0) };
    let root = BitMapBackend::new(out, (1400, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let mut cb = ChartBuilder::on(&root);
    cb.margin(12).x_label_area_size(if text { 30 } else { 0 }).y_label_area_size(if text { 60 } else { 0 });
    if text {
        cb.caption("decoded stream (shaded: missing frames)", ("sans-serif", 22));
    }
    let mut chart = cb.build_cartesian_2d(first..first + len.max(1), lo..hi).map_err(|e| plot_err(&e))?;
    if text {
        chart.configure_mesh().x_desc("sample index").draw().map_err(|e| plot_err(&e))?;
    }
    let missing = (0..len).filter(|&t| rec.status[t] == SampleStatus::Missing);
    chart
        .draw_series(
            missing.map(|t| Rectangle::new([(first + t, lo), (first + t + 1, hi)], RGBColor(255, 200, 200).filled())),
        )
        .map_err(|e| plot_err(&e))?;
    let palette = [RGBColor(0, 90, 200), RGBColor(0, 140, 60), RGBColor(150, 0, 150), RGBColor(30, 30, 30)];
    for c in 0..channels {
        let color = palette[c % palette.len()];
        // One line per run of present samples.
        let mut run: Vec<(usize, f32)> = Vec::new();
        for t in 0..=len {
            let v = if t < len { rec.values[t * channels + c] } else { f32::NAN };
            if v.is_finite() {
                run.push((first + t, v));
            } else if !run.is_empty() {
                let series =
                    chart.draw_series(LineSeries::new(std::mem::take(&mut run), color)).map_err(|e| plot_err(&e))?;
                if text && t == len {
                    let label = columns.get(c).cloned().unwrap_or_default();
                    series.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                }
            }
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&e))?;
    }
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}
