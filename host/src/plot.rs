//! PNG plots (feature `plot`, plotters): held-out windows against their reconstruction, and a
//! decoded stream with its gaps.

use std::fmt::Display;
use std::ops::Range;
use std::path::Path;

use anyhow::Result;
use funnel_artifacts::Windows;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use crate::codec::{CollectSink, SampleStatus};
#[cfg(feature = "peers")]
use crate::eval::peers::RdReport;

/// Line colours, one per channel or method.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 90, 200),
    RGBColor(0, 140, 60),
    RGBColor(150, 0, 150),
    RGBColor(30, 30, 30),
    RGBColor(230, 120, 0),
    RGBColor(0, 170, 170),
    RGBColor(140, 90, 40),
    RGBColor(120, 120, 120),
];

/// A chart drawn into a PNG, with the coordinates of its two axes.
type Chart<'a, 'b, X, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>;

/// A plotters result as ours, naming the file being drawn.
fn drawn<T, E: Display>(result: std::result::Result<T, E>, out: &Path) -> Result<T> {
    result.map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", out.display()))
}

/// Axes, captions and legends in one style for every plot; without `text` (no usable font)
/// only the lines are drawn.
struct Style<'p> {
    out: &'p Path,
    text: bool,
}

impl Style<'_> {
    /// A chart on `area` with a caption and axis descriptions (when text can be drawn).
    fn chart<'a, 'b, X, Y>(
        &self,
        area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
        caption: (&str, u32),
        x: X,
        y: Y,
        (x_desc, y_desc): (&str, &str),
    ) -> Result<Chart<'a, 'b, X::CoordDescType, Y::CoordDescType>>
    where
        X: AsRangedCoord,
        Y: AsRangedCoord,
        X::CoordDescType: ValueFormatter<X::Value>,
        Y::CoordDescType: ValueFormatter<Y::Value>,
    {
        let mut builder = ChartBuilder::on(area);
        builder.margin(12);
        if self.text {
            builder.x_label_area_size(30).y_label_area_size(60).caption(caption.0, ("sans-serif", caption.1));
        }
        let mut chart = drawn(builder.build_cartesian_2d(x, y), self.out)?;
        if self.text {
            drawn(chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw(), self.out)?;
        }
        Ok(chart)
    }

    /// The legend of the series labelled so far.
    fn legend<'a, 'b: 'a, C: CoordTranslate>(&self, chart: &mut ChartContext<'a, BitMapBackend<'b>, C>) -> Result<()> {
        if self.text {
            let mut labels = chart.configure_series_labels();
            drawn(labels.background_style(WHITE.mix(0.8)).border_style(BLACK).draw(), self.out)?;
        }
        Ok(())
    }
}

/// `[lo, hi]` of `values` widened by 5 % on each side (a flat or empty series gets a unit range).
fn padded_range(values: impl Iterator<Item = f32>) -> Range<f32> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo < hi {
        let pad = 0.05 * (hi - lo);
        lo - pad..hi + pad
    } else if lo.is_finite() {
        lo - 1.0..lo + 1.0
    } else {
        -1.0..1.0
    }
}

/// A legend entry: a short line in `color`.
fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color)
}

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
    draw_with_text_fallback(|text| draw_comparison(&Style { out, text }, &chans, columns, t))
}

/// Runs `draw` with labels (`true`); if drawing text fails (no usable font on the machine), says
/// so and draws again without labels, so a plot is still written.
fn draw_with_text_fallback(draw: impl Fn(bool) -> Result<()>) -> Result<()> {
    draw(true).or_else(|e| {
        eprintln!("plot: drawing text failed ({e}); writing the plot without labels");
        draw(false)
    })
}

fn draw_comparison(style: &Style<'_>, chans: &[(Vec<f32>, Vec<f32>)], columns: &[String], window: usize) -> Result<()> {
    let out = style.out;
    let root = BitMapBackend::new(out, (1400, 800)).into_drawing_area();
    drawn(root.fill(&WHITE), out)?;
    let (top, bottom) = root.split_vertically(500);
    let len = chans.first().map_or(0, |c| c.0.len());
    let y = padded_range(chans.iter().flat_map(|(o, r)| o.iter().chain(r).copied()));
    let errs: Vec<Vec<f32>> = chans.iter().map(|(o, r)| o.iter().zip(r).map(|(a, b)| a - b).collect()).collect();
    let points = |v: &[f32]| v.iter().enumerate().map(|(i, v)| (i, *v)).collect::<Vec<_>>();

    let caption = ("held-out: original vs reconstruction (red)", 22);
    let mut chart = style.chart(&top, caption, 0..len, y.clone(), ("", "value"))?;
    for (c, (o, r)) in chans.iter().enumerate() {
        let color = PALETTE[c % PALETTE.len()];
        let s = drawn(chart.draw_series(LineSeries::new(points(o), color.stroke_width(2))), out)?;
        s.label(format!("{} original", columns.get(c).map_or("", String::as_str))).legend(legend_line(color));
        let s = drawn(chart.draw_series(LineSeries::new(points(r), RED.stroke_width(1))), out)?;
        if c == 0 {
            s.label("reconstruction").legend(legend_line(RED));
        }
    }
    // Window boundaries.
    for b in (window..len).step_by(window.max(1)) {
        drawn(
            chart.draw_series(std::iter::once(PathElement::new(vec![(b, y.start), (b, y.end)], BLACK.mix(0.25)))),
            out,
        )?;
    }
    style.legend(&mut chart)?;

    let y = padded_range(errs.iter().flatten().copied());
    let mut chart = style.chart(&bottom, ("error (original − reconstruction)", 18), 0..len, y, ("sample", ""))?;
    for (c, e) in errs.iter().enumerate() {
        drawn(chart.draw_series(LineSeries::new(points(e), PALETTE[c % PALETTE.len()])), out)?;
    }
    drawn(chart.draw_series(std::iter::once(PathElement::new(vec![(0, 0.0), (len, 0.0)], BLACK.mix(0.4)))), out)?;
    drawn(root.present(), out)
}

/// Samples shown by [`plot_stream`].
pub const PLOT_SAMPLES: usize = 2048;

/// The first [`PLOT_SAMPLES`] reconstructed samples per channel; missing samples are gaps in
/// the lines over a shaded band.
pub fn plot_stream(out: &Path, columns: &[String], rec: &CollectSink) -> Result<()> {
    draw_with_text_fallback(|text| draw_stream(&Style { out, text }, columns, rec))
}

fn draw_stream(style: &Style<'_>, columns: &[String], rec: &CollectSink) -> Result<()> {
    let out = style.out;
    let channels = rec.channels.max(1);
    let len = rec.status.len().min(PLOT_SAMPLES);
    let first = rec.first_sample.unwrap_or(0) as usize;
    let y = padded_range(rec.values[..len * channels].iter().copied());
    let root = BitMapBackend::new(out, (1400, 500)).into_drawing_area();
    drawn(root.fill(&WHITE), out)?;
    let caption = ("decoded stream (shaded: missing frames)", 22);
    let mut chart = style.chart(&root, caption, first..first + len.max(1), y.clone(), ("sample index", ""))?;
    let missing = (0..len).filter(|&t| rec.status[t] == SampleStatus::Missing);
    let band =
        |t: usize| Rectangle::new([(first + t, y.start), (first + t + 1, y.end)], RGBColor(255, 200, 200).filled());
    drawn(chart.draw_series(missing.map(band)), out)?;
    for c in 0..channels {
        let color = PALETTE[c % PALETTE.len()];
        // One line per run of present samples.
        let mut run: Vec<(usize, f32)> = Vec::new();
        for t in 0..=len {
            let v = if t < len { rec.values[t * channels + c] } else { f32::NAN };
            if v.is_finite() {
                run.push((first + t, v));
            } else if !run.is_empty() {
                let series = drawn(chart.draw_series(LineSeries::new(std::mem::take(&mut run), color)), out)?;
                if t == len {
                    series.label(columns.get(c).cloned().unwrap_or_default()).legend(legend_line(color));
                }
            }
        }
    }
    style.legend(&mut chart)?;
    drawn(root.present(), out)
}

/// Lowest PRDN on the rate–distortion plot's axis.
#[cfg(feature = "peers")]
const MIN_PLOTTED_PRDN: f64 = 0.01;

/// PRDN (log axis) against bits per sample: one line per peer, Funnel's models as large red
/// points with their names. Points below 0.01 % PRDN (lossless coding) are left to the table.
#[cfg(feature = "peers")]
pub fn plot_rd(out: &Path, report: &RdReport) -> Result<()> {
    draw_with_text_fallback(|text| draw_rd(&Style { out, text }, report))
}

#[cfg(feature = "peers")]
fn draw_rd(style: &Style<'_>, report: &RdReport) -> Result<()> {
    let out = style.out;
    let all = || report.points.iter().chain(report.funnel.iter().map(|f| &f.point)).filter(|p| p.prdn > 0.0);
    let x_max = all().map(|p| p.bits_per_sample).fold(0.0f64, f64::max).min(16.0) * 1.05;
    let (lo, hi) = all().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.prdn), hi.max(p.prdn)));
    // A lossless point (PRDN near 0) would squash every lossy curve: the axis stops at 0.01 %.
    let lo = lo.max(MIN_PLOTTED_PRDN * 1.5);
    let (lo, hi) = if lo < hi { (lo / 1.5, hi * 1.5) } else { (0.1, 100.0) };
    let root = BitMapBackend::new(out, (1400, 850)).into_drawing_area();
    drawn(root.fill(&WHITE), out)?;
    let caption = format!("rate–distortion, held-out part of {} ({})", report.column, report.data);
    let x = 0f64..x_max.max(0.1);
    let descs = ("bits per sample", "PRDN % (log)");
    let mut chart = style.chart(&root, (&caption, 22), x, (lo..hi).log_scale(), descs)?;
    let mut methods: Vec<&str> = report.points.iter().map(|p| p.method.as_str()).collect();
    methods.dedup();
    for (i, method) in methods.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut curve: Vec<(f64, f64)> = report
            .points
            .iter()
            .filter(|p| p.method == *method && p.prdn >= lo && p.bits_per_sample <= x_max)
            .map(|p| (p.bits_per_sample, p.prdn))
            .collect();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        let series = drawn(chart.draw_series(LineSeries::new(curve.clone(), color.stroke_width(2))), out)?;
        series.label(*method).legend(legend_line(color));
        drawn(chart.draw_series(curve.iter().map(|&p| Circle::new(p, 3, color.filled()))), out)?;
    }
    for f in &report.funnel {
        let p = (f.point.bits_per_sample, f.point.prdn);
        drawn(chart.draw_series(std::iter::once(Circle::new(p, 8, RED.filled()))), out)?;
        if style.text {
            let label = format!("{} ({:.2} b/s, {:.1} %)", f.model, p.0, p.1);
            drawn(chart.draw_series(std::iter::once(Text::new(label, p, ("sans-serif", 15)))), out)?;
        }
    }
    style.legend(&mut chart)?;
    drawn(root.present(), out)
}
