//! The error-bounded residual coder (`funnel_shared::residual`) on a recording's held-out part,
//! swept over its bound, against SZ3 at the same absolute bounds and, lossless, against zstd
//! and FLAC of the same device counts: `funnel bench rd`'s bounded table (feature `peers`).
//!
//! The sweep measures the coder **without a network**: each sample is predicted from the samples
//! already rebuilt only, fitted to the training part at each bound. Its bytes are those of a
//! bounded stream (`docs/wire-format.md`): frames of [`SEGMENT`] samples with their payloads
//! exactly as the device makes them (`stream::bounded_payload`, raw when coding is not
//! shorter), each with its length and check, a last frame with its sample count, and a stream
//! header every 64 frames. Bounded models (`funnel train --max-error`, with latent codes or
//! without) are placed beside it by [`BoundedModelPoint`], their streams measured as `funnel
//! encode` sends them.

use std::fmt::Write as _;

use anyhow::{ensure, Context, Result};
use funnel_artifacts::residual::OwnedResidualSpec;
use funnel_shared::residual::MAX_BOUND;
use funnel_shared::stream::{bounded_payload, to_counts, StreamConfig};
use funnel_shared::wire::{
    encode_frame, encode_last_frame, stream_len, ModelId, StreamHeader, StreamLayout, MAX_FRAME_BODY, MAX_FRAME_LEN,
};
use serde::Serialize;

use super::peers::{sz3_at, zstd_bytes};
use super::BoundedMetrics;

/// Samples coded as one segment (from an empty prediction history): a 1,024-sample frame's
/// worth, as a frame would carry them.
pub const SEGMENT: usize = 1024;

/// The stream the sweep's bytes are counted in: one channel, frames of [`SEGMENT`] samples, a
/// header every 64 frames.
const BOUNDED_HEADER: StreamHeader = StreamHeader {
    stream_id: 0,
    restart: true,
    model_id: ModelId([0; 4]),
    session: 0,
    layout: StreamLayout {
        channels: 1,
        codes_per_window: 0,
        window: SEGMENT as u16,
        windows_per_frame: 1,
        entropy_coded: true,
        bounded: true,
    },
    header_interval: StreamConfig::DEFAULT.header_interval,
    frame: 0,
    start_sample: 0,
};

/// Bounds swept, as fractions of the held-out part's standard deviation (SZ3's sweep), and 0.
const RELATIVE_BOUNDS: [f64; 8] = [0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3];

/// One bound of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoundedPoint {
    /// `E′`, in device counts, and the same in the recording's units.
    pub bound_counts: u16,
    pub bound: f64,
    pub bits_per_sample: f64,
    /// Largest |rebuilt − device count| (at most `bound_counts`: checked).
    pub max_error_counts: u16,
    /// SZ3 (its better predictor) on the original samples at the same absolute bound (for 0:
    /// half a count, which rounds back to the same counts).
    pub sz3_bits_per_sample: f64,
    pub sz3_max_abs_error: f64,
}

/// The sweep, and lossless references.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoundedReport {
    pub counts_per_unit: f32,
    pub points: Vec<BoundedPoint>,
    /// zstd-19 and FLAC (`flacenc`, its default configuration: blocks of 4,096 samples) of the
    /// held-out device counts (i16): the lossless references.
    pub zstd_bits_per_sample: f64,
    pub flac_bits_per_sample: f64,
    /// The bounded models given to `funnel bench rd`, each on its own held-out part.
    pub models: Vec<BoundedModelPoint>,
}

/// Fits the coder to the training part's device counts at each bound and codes the held-out
/// part's, in segments of [`SEGMENT`] samples.
pub fn bounded_sweep(train: &[f64], held_out: &[f64], counts_per_unit: f32) -> Result<BoundedReport> {
    ensure!(!train.is_empty() && !held_out.is_empty(), "the bounded sweep needs a training and a held-out part");
    let counts = |x: &[f64]| -> Vec<i16> { x.iter().map(|&v| to_counts(v as f32, counts_per_unit)).collect() };
    let (train_counts, held_counts) = (counts(train), counts(held_out));
    let n = held_counts.len();
    let mean = held_out.iter().sum::<f64>() / n as f64;
    let sigma = (held_out.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    let mut bounds: Vec<u16> = std::iter::once(0)
        .chain(
            RELATIVE_BOUNDS
                .iter()
                .map(|rel| (rel * sigma * f64::from(counts_per_unit)).round().clamp(0.0, f64::from(MAX_BOUND)) as u16),
        )
        .collect();
    bounds.dedup();
    let mut points = Vec::new();
    for bound_counts in bounds {
        let fitted = OwnedResidualSpec::fit(&train_counts, None, bound_counts, SEGMENT)
            .with_context(|| format!("fitting the residual coder for a bound of {bound_counts} counts"))?;
        let spec = fitted.spec();
        let (mut bytes, mut max_error_counts) = (0u64, 0u16);
        let (mut payload, mut frame) = ([0u8; MAX_FRAME_BODY], [0u8; MAX_FRAME_LEN]);
        let frames = held_counts.len().div_ceil(SEGMENT);
        for (f, segment) in held_counts.chunks(SEGMENT).enumerate() {
            let m = segment.len();
            let mut values = segment.to_vec();
            let len = bounded_payload(&spec, &mut values, m, None, &mut payload);
            // Raw, `values` holds what the receiver takes; coded, it decodes the payload.
            if len < 2 * m {
                spec.decode(&payload[..len], None, m, &mut values)?;
            }
            max_error_counts =
                segment.iter().zip(&values).map(|(x, r)| x.abs_diff(*r)).fold(max_error_counts, u16::max);
            // A stream that ends inside a frame ends with a last frame, which says its length.
            let written = match m < SEGMENT {
                true => encode_last_frame(&BOUNDED_HEADER, f as u32, false, m as u32, &payload[..len], &mut frame),
                false => encode_frame(&BOUNDED_HEADER, f as u32, false, &payload[..len], &mut frame),
            };
            bytes += written.context("internal: a bounded frame")? as u64;
        }
        // The headers: `stream_len` of frames of no bytes.
        bytes += stream_len(frames as u64, 0, BOUNDED_HEADER.header_interval, BOUNDED_HEADER.start_sample);
        ensure!(
            max_error_counts <= bound_counts,
            "internal: a sample is {max_error_counts} counts off, over the bound"
        );
        let sz3 = Sz3AtBound::measure(held_out, bound_counts, counts_per_unit)?;
        points.push(BoundedPoint {
            bound_counts,
            bound: sz3.bound,
            bits_per_sample: 8.0 * bytes as f64 / n as f64,
            max_error_counts,
            sz3_bits_per_sample: sz3.bits_per_sample,
            sz3_max_abs_error: sz3.max_abs_error,
        });
    }
    let (zstd_bits_per_sample, flac_bits_per_sample) = lossless_references(&held_counts)?;
    Ok(BoundedReport { counts_per_unit, points, zstd_bits_per_sample, flac_bits_per_sample, models: Vec::new() })
}

/// SZ3 (its better predictor) on `samples` (a recording's units) at the absolute bound of
/// `bound_counts` device counts (for 0: half a count, which rounds back to the same counts).
struct Sz3AtBound {
    /// The bound in the recording's units.
    bound: f64,
    bits_per_sample: f64,
    max_abs_error: f64,
}

impl Sz3AtBound {
    fn measure(samples: &[f64], bound_counts: u16, counts_per_unit: f32) -> Result<Sz3AtBound> {
        let bound = f64::from(bound_counts) / f64::from(counts_per_unit);
        let sz3_bound = if bound_counts == 0 { 0.5 / f64::from(counts_per_unit) } else { bound };
        let data: Vec<f32> = samples.iter().map(|&v| v as f32).collect();
        let (bytes, rebuilt) = sz3_at(&data, sz3_bound, false)?;
        let max_abs_error = samples.iter().zip(&rebuilt).map(|(x, r)| (x - r).abs()).fold(0.0, f64::max);
        Ok(Sz3AtBound { bound, bits_per_sample: 8.0 * bytes as f64 / samples.len() as f64, max_abs_error })
    }
}

/// zstd-19 and FLAC of `counts` (device counts, i16), in bits per sample.
fn lossless_references(counts: &[i16]) -> Result<(f64, f64)> {
    let n = counts.len() as f64;
    let raw: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
    Ok((8.0 * zstd_bytes(&raw)? as f64 / n, 8.0 * flac_bytes(counts)? as f64 / n))
}

/// A bounded model (`funnel train --max-error`) placed in the bounded table: its stream of its
/// own held-out part (the split of its window), against SZ3 at its bound on the same samples
/// and, lossless, zstd-19 and FLAC of the same counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoundedModelPoint {
    pub model: String,
    pub model_id: String,
    /// The frames carry latent codes (else the samples alone).
    pub latent_codes: bool,
    pub held_out_samples: usize,
    /// The blob's bound, in device counts and in the recording's units.
    pub bound_counts: u16,
    pub bound: f64,
    pub stream: BoundedMetrics,
    pub sz3_bits_per_sample: f64,
    pub sz3_max_abs_error: f64,
    /// zstd-19 and FLAC of the held-out counts, for a lossless model (bound 0).
    pub zstd_bits_per_sample: Option<f64>,
    pub flac_bits_per_sample: Option<f64>,
}

impl BoundedModelPoint {
    /// `stream`, a model's bounded stream of `held_out` (one channel, its units; at
    /// `counts_per_unit` with a bound of `bound_counts`), against the peers.
    pub fn against_peers(
        model: String,
        model_id: String,
        latent_codes: bool,
        held_out: &[f64],
        counts_per_unit: f32,
        bound_counts: u16,
        stream: BoundedMetrics,
    ) -> Result<BoundedModelPoint> {
        let sz3 = Sz3AtBound::measure(held_out, bound_counts, counts_per_unit)?;
        let (zstd, flac) = match bound_counts {
            0 => {
                let counts: Vec<i16> = held_out.iter().map(|&v| to_counts(v as f32, counts_per_unit)).collect();
                let (zstd, flac) = lossless_references(&counts)?;
                (Some(zstd), Some(flac))
            }
            _ => (None, None),
        };
        Ok(BoundedModelPoint {
            model,
            model_id,
            latent_codes,
            held_out_samples: held_out.len(),
            bound_counts,
            bound: sz3.bound,
            stream,
            sz3_bits_per_sample: sz3.bits_per_sample,
            sz3_max_abs_error: sz3.max_abs_error,
            zstd_bits_per_sample: zstd,
            flac_bits_per_sample: flac,
        })
    }
}

/// The bytes of a FLAC stream of `counts` (one 16-bit channel), headers included.
fn flac_bytes(counts: &[i16]) -> Result<usize> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| anyhow::anyhow!("FLAC configuration: {e:?}"))?;
    let samples: Vec<i32> = counts.iter().map(|&c| i32::from(c)).collect();
    // The sample rate only goes into the header.
    let source = flacenc::source::MemSource::from_samples(&samples, 1, 16, 8000);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| anyhow::anyhow!("FLAC encoding: {e:?}"))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|e| anyhow::anyhow!("FLAC encoding: {e:?}"))?;
    Ok(sink.as_slice().len())
}

impl BoundedReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "error-bounded coding of the device counts ({} per unit), the residual coder without a network \
             fitted at each bound, the bounded stream's bytes (frames of {SEGMENT} samples, lengths, checks and headers included):\n",
            self.counts_per_unit
        );
        let _ = writeln!(
            s,
            "{:>9} {:>12} {:>10} {:>10} {:>10} {:>7}",
            "E counts", "E", "bits/smp", "max err", "SZ3", "ratio"
        );
        for p in &self.points {
            let _ = writeln!(
                s,
                "{:>9} {:>12.6} {:>10.3} {:>10} {:>10.3} {:>7.2}",
                p.bound_counts,
                p.bound,
                p.bits_per_sample,
                p.max_error_counts,
                p.sz3_bits_per_sample,
                p.bits_per_sample / p.sz3_bits_per_sample
            );
        }
        let _ = writeln!(
            s,
            "lossless references, the device counts: zstd-19 {:.3} bits/sample, FLAC {:.3}",
            self.zstd_bits_per_sample, self.flac_bits_per_sample
        );
        for m in &self.models {
            let _ = write!(
                s,
                "{} (bounded, {}): {:.3} bits/sample at E = {} counts ({}) on its held-out part of {} samples, \
                 largest error {} counts; SZ3 at the same bound {:.3}: ratio {:.2}{}",
                m.model,
                if m.latent_codes { "latent codes and residuals" } else { "the samples alone" },
                m.stream.bits_per_sample,
                m.bound_counts,
                m.bound,
                m.held_out_samples,
                m.stream.max_abs_error_counts,
                m.sz3_bits_per_sample,
                m.stream.bits_per_sample / m.sz3_bits_per_sample,
                if m.stream.bits_per_sample < m.sz3_bits_per_sample { " — Funnel wins" } else { " — SZ3 wins" }
            );
            let _ = match (m.zstd_bits_per_sample, m.flac_bits_per_sample) {
                (Some(zstd), Some(flac)) => writeln!(s, "; zstd-19 {zstd:.3}, FLAC {flac:.3}"),
                _ => writeln!(s),
            };
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bound holds on every held-out sample, more error buys fewer bits (an adaptive
    /// coder's rate may wobble by a few percent from one bound to the next: each bound's coder
    /// is chosen on the training part, and with twelve adaptive stages to choose from the
    /// largest bound here sent 0.833 bits/sample against 0.793 at the one before, 6 bytes of
    /// 1,200 samples), and a bound of 0 gives the counts back while spending fewer bits than
    /// zstd on them.
    #[test]
    fn the_sweep_keeps_its_bounds_and_trades_bits_for_error() {
        let noise = |t: u32| {
            let h = (t.wrapping_mul(0x9E37_79B1) ^ t >> 3).wrapping_mul(0x85EB_CA77);
            f64::from((h ^ h >> 13) % 1000) / 1000.0 - 0.5
        };
        let x: Vec<f64> = (0..6000u32).map(|t| (f64::from(t) / 30.0).sin() * 1.5 + 0.02 * noise(t)).collect();
        let (train, held) = x.split_at(4800);
        let report = bounded_sweep(train, held, 1000.0).unwrap();
        assert!(report.points.len() >= 5, "{report:?}");
        assert_eq!(report.points[0].bound_counts, 0);
        for pair in report.points.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(b.bound_counts > a.bound_counts && b.bits_per_sample < 1.07 * a.bits_per_sample, "{report:?}");
        }
        let (first, last) = (&report.points[0], report.points.last().unwrap());
        assert!(last.bits_per_sample < 0.3 * first.bits_per_sample, "{report:?}");
        assert!(report.points.iter().all(|p| p.max_error_counts <= p.bound_counts));
        assert!(report.points[0].bits_per_sample < report.zstd_bits_per_sample, "{report:?}");
        assert!(report.flac_bits_per_sample > 0.0 && report.flac_bits_per_sample < 16.0, "{report:?}");
        assert!(report.table().contains("zstd-19"));
    }
}
