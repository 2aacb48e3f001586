//! Classic codecs on the same held-out signal, each swept over its quality knob: the
//! rate–distortion curves a Funnel model has to beat (feature `peers`).
//!
//! Every peer gets the held-out part (the last 20 % of whole windows, Funnel's split) and may
//! fit tables on the training part. Rates are the bytes each codec really produces, × 8 per
//! sample — except the PCA transform coder, whose rate is the ideal code length of its static
//! per-component tables (no coder, no header), as its name in the JSON says.

use std::fmt::Write as _;

use anyhow::{ensure, Context, Result};
use funnel_artifacts::metrics::Quality;
use funnel_artifacts::Windows;
use funnel_shared::stream::to_counts;
use serde::Serialize;

use super::Pca;

/// One operating point of a codec.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RdPoint {
    pub method: String,
    /// The knob's value, e.g. `abs=0.01σ`.
    pub setting: String,
    pub bits_per_sample: f64,
    pub prdn: f64,
    pub prd: f64,
    pub snr_db: f64,
    pub max_abs_error: f64,
}

impl RdPoint {
    fn new(method: &str, setting: String, bits: f64, samples: usize, original: &[f64], rebuilt: &[f64]) -> RdPoint {
        let as_windows = |v: &[f64]| Windows::new(v.len(), v.iter().map(|&x| x as f32).collect());
        let q = Quality::of(&as_windows(original), &as_windows(rebuilt), 1);
        RdPoint {
            method: method.to_string(),
            setting,
            bits_per_sample: bits / samples as f64,
            prdn: q.prdn,
            prd: q.prd,
            snr_db: q.snr_db,
            max_abs_error: q.max_abs_error,
        }
    }
}

/// The signal the peers code: one channel, split as Funnel splits it.
pub struct PeerInput<'a> {
    /// Training part, whole windows, original units.
    pub train: &'a [f64],
    /// Held-out part, whole windows, original units.
    pub held_out: &'a [f64],
    pub window: usize,
    /// Device counts per unit (the lossless baseline codes the device's integer samples).
    pub counts_per_unit: f32,
}

impl PeerInput<'_> {
    fn std(&self, part: &[f64]) -> f64 {
        let mean = part.iter().sum::<f64>() / part.len().max(1) as f64;
        (part.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / part.len().max(1) as f64).sqrt()
    }
}

/// zstd at its strongest level, as the classic pipelines use it.
pub fn zstd_bytes(bytes: &[u8]) -> Result<usize> {
    Ok(zstd::bulk::compress(bytes, 19).context("zstd")?.len())
}

fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Every peer's curve, in a fixed order.
pub fn all_peers(input: &PeerInput<'_>) -> Result<Vec<RdPoint>> {
    ensure!(input.held_out.len() >= input.window && input.window >= 2, "the held-out part has no whole window");
    let mut points = sz3(input)?;
    points.extend(dwt(input)?);
    points.extend(dct(input)?);
    points.extend(pca_truncated(input)?);
    points.extend(pca_transform_coder(input)?);
    points.extend(lossless_counts(input)?);
    Ok(points)
}

/// SZ3 (error-bounded prediction + quantization + its own entropy coding) at absolute error
/// bounds from 0.002 to 0.8 standard deviations of the held-out signal, with its default
/// predictor (interpolation + Lorenzo) and with Lorenzo + regression: each its own curve, so the
/// best of SZ3 is what Funnel is measured against.
pub fn sz3(input: &PeerInput<'_>) -> Result<Vec<RdPoint>> {
    let x = input.held_out;
    let data: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let sigma = input.std(x);
    let mut out = Vec::new();
    for (name, lorenzo) in [(SZ3, false), (SZ3_LORENZO, true)] {
        for rel in [0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.5, 0.8] {
            let (bytes, rebuilt) = sz3_at(&data, rel * sigma, lorenzo)?;
            out.push(RdPoint::new(name, format!("abs={rel}σ"), 8.0 * bytes as f64, x.len(), x, &rebuilt));
        }
    }
    Ok(out)
}

/// SZ3 of `data` at absolute error bound `bound`, with its default predictor (interpolation +
/// Lorenzo) or Lorenzo + regression: the bytes it writes and what it rebuilds.
pub fn sz3_at(data: &[f32], bound: f64, lorenzo: bool) -> Result<(usize, Vec<f64>)> {
    use tensogram_sz3::{compress_with_config, decompress, CompressionAlgorithm, Config, DimensionedData, ErrorBound};
    let algorithm = match lorenzo {
        false => CompressionAlgorithm::InterpolationLorenzo,
        true => {
            CompressionAlgorithm::LorenzoRegression { lorenzo: true, lorenzo_second_order: false, regression: true }
        }
    };
    let dims = DimensionedData::build(&data).remainder_dim().context("SZ3 shape")?;
    let config = Config::new(ErrorBound::Absolute(bound)).compression_algorithm(algorithm);
    let bytes = compress_with_config(&dims, &config).context("SZ3 compress")?;
    let (_, rebuilt) = decompress::<f32, _>(bytes.as_slice()).context("SZ3 decompress")?;
    Ok((bytes.len(), rebuilt.data().iter().map(|&v| f64::from(v)).collect()))
}

/// Decomposition levels of the wavelet coder.
const DWT_LEVELS: usize = 5;

/// The wavelet coder's transform: 5-level CDF 9/7 (what PyWavelets and MATLAB call bior4.4,
/// JPEG 2000's lossy wavelet), periodization (as many coefficients as samples), with each
/// subband weighted so that a unit error on any coefficient costs the same energy in the signal
/// — what uniform quantization with one step assumes, and what an orthonormal transform gives
/// for free (this biorthogonal one is close to it; the weights make it exact).
struct WeightedDwt {
    /// `4`: the crate's chunk width for `f64` (256 bits / 64).
    transform: ndwt::dwt::driver::WaveletTransformPer<f64, 4>,
    len: usize,
    /// `(subband range, sqrt of its synthesis gain)`, covering `0..len`.
    subbands: Vec<(std::ops::Range<usize>, f64)>,
}

impl WeightedDwt {
    /// `len` must be a multiple of `2^DWT_LEVELS`.
    fn new(len: usize) -> WeightedDwt {
        let transform = ndwt::dwt::driver::WaveletTransformPer::new(ndwt::Wavelet::CDF9_7);
        // Layout: approximation, then details from the coarsest level to the finest.
        let mut bounds = vec![0, len >> DWT_LEVELS];
        for level in (1..=DWT_LEVELS).rev() {
            bounds.push(bounds.last().copied().unwrap_or(0) + (len >> level));
        }
        let mut dwt = WeightedDwt { transform, len, subbands: Vec::new() };
        dwt.subbands = bounds
            .windows(2)
            .map(|b| {
                let mut impulse = vec![0.0; len];
                impulse[b[0]] = 1.0;
                let response = dwt.synthesize_raw(&impulse);
                (b[0]..b[1], response.iter().map(|v| v * v).sum::<f64>().sqrt())
            })
            .collect();
        dwt
    }

    fn synthesize_raw(&self, coefficients: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.len];
        self.transform.inverse_multilevel_nd(coefficients, &mut out, &[self.len], &[0], DWT_LEVELS);
        out
    }

    /// Weighted coefficients of `x`.
    fn analyze(&self, x: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; self.len];
        self.transform.forward_multilevel_nd(x, &mut c, &[self.len], &[0], DWT_LEVELS);
        for (range, weight) in &self.subbands {
            c[range.clone()].iter_mut().for_each(|v| *v *= weight);
        }
        c
    }

    /// The signal of weighted coefficients.
    fn synthesize(&self, weighted: &[f64]) -> Vec<f64> {
        let mut c = weighted.to_vec();
        for (range, weight) in &self.subbands {
            c[range.clone()].iter_mut().for_each(|v| *v /= weight);
        }
        self.synthesize_raw(&c)
    }
}

/// The wavelet coder: the weighted CDF 9/7 transform of the whole held-out signal (cut to a
/// multiple of 32 samples), every coefficient uniformly quantized with one step (0.005 to 2.5
/// standard deviations), zstd over the integers.
pub fn dwt(input: &PeerInput<'_>) -> Result<Vec<RdPoint>> {
    let x = &input.held_out[..input.held_out.len() >> DWT_LEVELS << DWT_LEVELS];
    ensure!(!x.is_empty(), "the held-out part is shorter than {} samples", 1 << DWT_LEVELS);
    let dwt = WeightedDwt::new(x.len());
    let coefficients = dwt.analyze(x);
    let sigma = input.std(x);
    let mut out = Vec::new();
    for rel in [0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.0, 1.6, 2.5] {
        let step = rel * sigma;
        let q: Vec<i32> = coefficients.iter().map(|c| (c / step).round() as i32).collect();
        let rebuilt = dwt.synthesize(&q.iter().map(|&v| f64::from(v) * step).collect::<Vec<_>>());
        let bits = 8.0 * zstd_bytes(&i32_bytes(&q))? as f64;
        out.push(RdPoint::new(DWT_ZSTD, format!("step={rel}σ"), bits, x.len(), x, &rebuilt));
    }
    Ok(out)
}

/// An orthonormal DCT-II per window, one uniform step for every coefficient (0.01 to 3
/// standard deviations), zstd over the integers.
pub fn dct(input: &PeerInput<'_>) -> Result<Vec<RdPoint>> {
    let (x, n) = (input.held_out, input.window);
    let mut planner = rustdct::DctPlanner::new();
    let (forward, inverse) = (planner.plan_dct2(n), planner.plan_dct3(n));
    let (s0, s) = ((1.0 / n as f64).sqrt(), (2.0 / n as f64).sqrt());
    let mut coefficients = x.to_vec();
    for w in coefficients.chunks_exact_mut(n) {
        forward.process_dct2(w);
        w[0] *= s0;
        w[1..].iter_mut().for_each(|c| *c *= s);
    }
    let sigma = input.std(x);
    let mut out = Vec::new();
    for rel in [0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.0, 3.0] {
        let step = rel * sigma;
        let q: Vec<i32> = coefficients.iter().map(|c| (c / step).round() as i32).collect();
        let mut rebuilt: Vec<f64> = q.iter().map(|&v| f64::from(v) * step).collect();
        for w in rebuilt.chunks_exact_mut(n) {
            // DCT-III is the inverse of the orthonormal DCT-II once the scales are undone.
            w[0] *= 2.0 * s0;
            w[1..].iter_mut().for_each(|c| *c *= s);
            inverse.process_dct3(w);
        }
        let bits = 8.0 * zstd_bytes(&i32_bytes(&q))? as f64;
        out.push(RdPoint::new(DCT_ZSTD, format!("step={rel}σ"), bits, x.len(), x, &rebuilt));
    }
    Ok(out)
}

/// `part` cut into whole windows.
fn windows_of(part: &[f64], window: usize) -> Windows {
    let whole = part.len() / window * window;
    Windows::new(window, part[..whole].iter().map(|&v| v as f32).collect())
}

/// PCA fitted on the training windows, truncated to K components, each coefficient sent as 8
/// bits over its training range — the linear twin of an autoencoder with K int8 codes.
pub fn pca_truncated(input: &PeerInput<'_>) -> Result<Vec<RdPoint>> {
    let (train, held) = (windows_of(input.train, input.window), windows_of(input.held_out, input.window));
    let mut out = Vec::new();
    for k in [1usize, 2, 4, 8, 16, 32, 64].into_iter().filter(|&k| k < input.window) {
        let pca = Pca::fit(&train, k)?;
        let projections: Vec<Vec<f64>> = train.iter().map(|w| pca.project(w)).collect();
        let ranges: Vec<(f64, f64)> = (0..k)
            .map(|j| {
                projections.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p[j]), hi.max(p[j])))
            })
            .collect();
        let mut rebuilt = Vec::with_capacity(held.data.len());
        for w in held.iter() {
            let z: Vec<f64> = pca
                .project(w)
                .iter()
                .zip(&ranges)
                .map(|(&v, &(lo, hi))| {
                    let step = ((hi - lo) / 255.0).max(f64::MIN_POSITIVE);
                    lo + ((v - lo) / step).round().clamp(0.0, 255.0) * step
                })
                .collect();
            rebuilt.extend(pca.reconstruct_code(&z).iter().map(|&v| f64::from(v)));
        }
        let bits = 8.0 * (k * held.len()) as f64;
        let x: Vec<f64> = held.data.iter().map(|&v| f64::from(v)).collect();
        out.push(RdPoint::new("PCA-K int8", format!("K={k}"), bits, x.len(), &x, &rebuilt));
    }
    Ok(out)
}

/// Training windows of the transform coder start every this many samples.
const TRANSFORM_CODER_HOP: usize = 8;

/// PCA as a transform coder: every component of the training windows' covariance, each
/// coefficient uniformly quantized with one step (0.05 to 3.2 standard deviations of the
/// training part), coded with a static per-component table fitted on the training part — the
/// rate is the ideal code length of those tables (no coder overhead, no header).
pub fn pca_transform_coder(input: &PeerInput<'_>) -> Result<Vec<RdPoint>> {
    let window = input.window;
    let train = input.train;
    ensure!(train.len() > window, "the training part is shorter than one window");
    let hop_windows: Vec<f32> = (0..train.len() - window)
        .step_by(TRANSFORM_CODER_HOP)
        .flat_map(|i| train[i..i + window].iter().map(|&v| v as f32))
        .collect();
    let pca = Pca::fit(&Windows::new(window, hop_windows), window)?;
    let project = |w: &Windows| -> Vec<Vec<f64>> { w.iter().map(|w| pca.project(w)).collect() };
    let (train_z, held_z) = (project(&windows_of(train, window)), project(&windows_of(input.held_out, window)));
    let sigma = input.std(train);
    let x = &input.held_out[..held_z.len() * window];
    let mut out = Vec::new();
    for rel in [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2] {
        let step = rel * sigma;
        let quantize = |z: &[Vec<f64>]| -> Vec<Vec<i64>> {
            z.iter().map(|c| c.iter().map(|v| (v / step).round() as i64).collect()).collect()
        };
        let (qt, qh) = (quantize(&train_z), quantize(&held_z));
        let mut bits = 0.0f64;
        for j in 0..window {
            let all = qt.iter().chain(&qh).map(|c| c[j]);
            let (lo, hi) = all.fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            // Counts from the training part, +0.5 so a value seen only in the held-out part
            // still has a (long) code.
            let mut counts = vec![0.5f64; (hi - lo + 1) as usize];
            qt.iter().for_each(|c| counts[(c[j] - lo) as usize] += 1.0);
            let total: f64 = counts.iter().sum();
            bits += qh.iter().map(|c| -(counts[(c[j] - lo) as usize] / total).log2()).sum::<f64>();
        }
        let rebuilt: Vec<f64> = qh
            .iter()
            .flat_map(|c| {
                let z: Vec<f64> = c.iter().map(|&v| v as f64 * step).collect();
                pca.reconstruct_code(&z).into_iter().map(f64::from)
            })
            .collect();
        out.push(RdPoint::new(PCA_TRANSFORM_CODER, format!("step={rel}σ"), bits, x.len(), x, &rebuilt));
    }
    Ok(out)
}

/// The device's integer samples, lossless: i16 counts through zstd-19. Its error is only the
/// front end's rounding to counts.
pub fn lossless_counts(input: &PeerInput<'_>) -> Result<Vec<RdPoint>> {
    let x = input.held_out;
    let cpu = input.counts_per_unit;
    let counts: Vec<i16> = x.iter().map(|&v| to_counts(v as f32, cpu)).collect();
    let bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
    let rebuilt: Vec<f64> = counts.iter().map(|&c| f64::from(c) / f64::from(cpu)).collect();
    let bits = 8.0 * zstd_bytes(&bytes)? as f64;
    Ok(vec![RdPoint::new("zstd of device counts (lossless)", format!("{cpu} counts/unit"), bits, x.len(), x, &rebuilt)])
}

/// A Funnel model's device path on its held-out part, against the peers.
#[derive(Clone, Debug, Serialize)]
pub struct FunnelPoint {
    pub model: String,
    pub model_id: String,
    pub point: RdPoint,
    /// The peer with the lowest PRDN at the same bits per sample (interpolated), if any peer's
    /// sweep covers that rate.
    pub best_peer: Option<String>,
    pub best_peer_prdn: Option<f64>,
    /// Funnel's PRDN over the best peer's: below 1, Funnel wins at this rate.
    pub ratio_to_best_peer: Option<f64>,
    /// The best of the classic codecs ([`CLASSIC_PEERS`]) at this rate, and Funnel's ratio to
    /// it (issue 11's goal: at most 0.8).
    pub best_classic_peer: Option<String>,
    pub ratio_to_best_classic: Option<f64>,
    /// Funnel's ratio to the PCA transform coder at this rate (issue 11's goal: at most 0.9).
    pub ratio_to_pca_transform_coder: Option<f64>,
    /// What the stream headers cost this point (see [`HeaderShare`]), when measured.
    pub headers: Option<HeaderShare>,
}

/// The stream headers' part of a Funnel point's bits. A stream sends a 32-byte header before
/// its first frame and then one every `header_interval` frames: a held-out part of a few frames
/// (the IMU's 2,560 samples are three) pays a whole header, which a long stream spreads over
/// 64 frames. The point's own rate counts what `funnel encode` sends for the part; this is the
/// same frames with the headers at their share of a long stream, and the ratios there.
#[derive(Clone, Debug, Serialize)]
pub struct HeaderShare {
    /// Bits per sample of the point that are stream headers.
    pub header_bits_per_sample: f64,
    /// The point's bits per sample with the headers at their long-stream share.
    pub long_stream_bits_per_sample: f64,
    pub long_stream_ratio_to_best_classic: Option<f64>,
    pub long_stream_ratio_to_pca_transform_coder: Option<f64>,
}

/// The classic codecs, as opposed to the PCA baselines and the lossless reference.
pub const CLASSIC_PEERS: [&str; 4] = [SZ3, SZ3_LORENZO, DWT_ZSTD, DCT_ZSTD];
const SZ3: &str = "SZ3";
const SZ3_LORENZO: &str = "SZ3 Lorenzo";
const DWT_ZSTD: &str = "DWT bior4.4 (CDF 9/7)+zstd";
const DCT_ZSTD: &str = "DCT/window+zstd";
/// The method name of [`pca_transform_coder`]'s points.
pub const PCA_TRANSFORM_CODER: &str = "PCA transform coder (ideal code length)";

/// Everything `funnel bench rd` measured.
#[derive(Clone, Debug, Serialize)]
pub struct RdReport {
    pub data: String,
    pub column: String,
    pub window: usize,
    pub held_out_samples: usize,
    pub points: Vec<RdPoint>,
    pub funnel: Vec<FunnelPoint>,
    /// The error-bounded residual coder swept over its bound, against SZ3 at the same bounds.
    pub bounded: super::bounded::BoundedReport,
}

impl FunnelPoint {
    /// `point` of a model against the best of `peers` at its bits per sample.
    pub fn against(model: String, model_id: String, point: RdPoint, peers: &[RdPoint]) -> FunnelPoint {
        let bits = point.bits_per_sample;
        let best = best_peer_at(peers, bits, &|_| true);
        let classic = best_peer_at(peers, bits, &|m| CLASSIC_PEERS.contains(&m));
        let pca = best_peer_at(peers, bits, &|m| m == PCA_TRANSFORM_CODER);
        FunnelPoint {
            model,
            model_id,
            ratio_to_best_peer: best.as_ref().map(|(_, b)| point.prdn / b),
            best_peer_prdn: best.as_ref().map(|(_, b)| *b),
            best_peer: best.map(|(m, _)| m),
            ratio_to_best_classic: classic.as_ref().map(|(_, b)| point.prdn / b),
            best_classic_peer: classic.map(|(m, _)| m),
            ratio_to_pca_transform_coder: pca.map(|(_, b)| point.prdn / b),
            point,
            headers: None,
        }
    }

    /// The point with its headers' share: `header_bits_per_sample` of its rate are stream
    /// headers, which a long stream sends `long_stream_header_bits_per_sample` of.
    pub fn with_headers(
        self,
        header_bits_per_sample: f64,
        long_stream_header_bits_per_sample: f64,
        peers: &[RdPoint],
    ) -> FunnelPoint {
        let bits = self.point.bits_per_sample - header_bits_per_sample + long_stream_header_bits_per_sample;
        let ratio = |keep: &dyn Fn(&str) -> bool| best_peer_at(peers, bits, keep).map(|(_, b)| self.point.prdn / b);
        let headers = HeaderShare {
            header_bits_per_sample,
            long_stream_bits_per_sample: bits,
            long_stream_ratio_to_best_classic: ratio(&|m| CLASSIC_PEERS.contains(&m)),
            long_stream_ratio_to_pca_transform_coder: ratio(&|m| m == PCA_TRANSFORM_CODER),
        };
        FunnelPoint { headers: Some(headers), ..self }
    }
}

/// The method among `peers` (those `keep` takes) with the lowest PRDN at `bits_per_sample`
/// (interpolated along its sweep), and that PRDN; `None` when no sweep reaches the rate.
fn best_peer_at(peers: &[RdPoint], bits_per_sample: f64, keep: &dyn Fn(&str) -> bool) -> Option<(String, f64)> {
    let mut best: Option<(String, f64)> = None;
    let mut methods: Vec<&str> = peers.iter().map(|p| p.method.as_str()).filter(|m| keep(m)).collect();
    methods.dedup();
    for method in methods {
        let curve: Vec<&RdPoint> = peers.iter().filter(|p| p.method == method).collect();
        if let Some(prdn) = prdn_at(&curve, bits_per_sample) {
            if best.as_ref().is_none_or(|(_, b)| prdn < *b) {
                best = Some((method.to_string(), prdn));
            }
        }
    }
    best
}

impl RdReport {
    /// Every point as a table, then each Funnel model against the best peer.
    pub fn table(&self) -> String {
        let mut s = format!(
            "rate–distortion on the held-out part of {} ({}): {} samples, window {}\n",
            self.data, self.column, self.held_out_samples, self.window
        );
        let _ = writeln!(
            s,
            "{:<40} {:<18} {:>9} {:>9} {:>8} {:>11}",
            "method", "setting", "bits/smp", "PRDN %", "SNR dB", "max |err|"
        );
        let rows = self.points.iter().chain(self.funnel.iter().map(|f| &f.point));
        for p in rows {
            let _ = writeln!(
                s,
                "{:<40} {:<18} {:>9.3} {:>9.3} {:>8.2} {:>11.5}",
                p.method, p.setting, p.bits_per_sample, p.prdn, p.snr_db, p.max_abs_error
            );
        }
        for f in &self.funnel {
            let _ = match (&f.best_peer, f.best_peer_prdn, f.ratio_to_best_peer) {
                (Some(peer), Some(prdn), Some(ratio)) => writeln!(
                    s,
                    "{} at {:.3} bits/sample: PRDN {:.2} % vs {:.2} % for the best peer ({peer}): ratio {:.2}{}; \
                     to the best classic codec {}, to the PCA transform coder {}",
                    f.model,
                    f.point.bits_per_sample,
                    f.point.prdn,
                    prdn,
                    ratio,
                    if ratio < 1.0 { " — Funnel wins" } else { " — the peer wins" },
                    f.ratio_to_best_classic.map_or("– (no sweep reaches this rate)".into(), |r| format!("{r:.2}")),
                    f.ratio_to_pca_transform_coder.map_or("–".into(), |r| format!("{r:.2}")),
                ),
                _ => writeln!(
                    s,
                    "{} at {:.3} bits/sample: no peer's sweep reaches this rate",
                    f.model, f.point.bits_per_sample
                ),
            };
            if let Some(h) = &f.headers {
                let ratio = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.2}"));
                let _ = writeln!(
                    s,
                    "  of which stream headers {:.3} bits/sample; with a long stream's share of headers {:.3} bits/sample: \
                     to the best classic codec {}, to the PCA transform coder {}",
                    h.header_bits_per_sample,
                    h.long_stream_bits_per_sample,
                    ratio(h.long_stream_ratio_to_best_classic),
                    ratio(h.long_stream_ratio_to_pca_transform_coder),
                );
            }
        }
        s.push_str(&self.bounded.table());
        s
    }
}

/// PRDN of `curve` at `bits_per_sample`, interpolated linearly in log–log between its two
/// nearest points; `None` outside the swept range.
pub fn prdn_at(curve: &[&RdPoint], bits_per_sample: f64) -> Option<f64> {
    let mut points: Vec<(f64, f64)> = curve.iter().map(|p| (p.bits_per_sample, p.prdn)).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points.windows(2).find_map(|pair| {
        let ((b0, p0), (b1, p1)) = (pair[0], pair[1]);
        if !(b0 <= bits_per_sample && bits_per_sample <= b1) || b0 <= 0.0 || p0 <= 0.0 || p1 <= 0.0 {
            return None;
        }
        let t = if b1 > b0 { (bits_per_sample.ln() - b0.ln()) / (b1.ln() - b0.ln()) } else { 0.0 };
        Some((p0.ln() + t * (p1.ln() - p0.ln())).exp())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth test signal with some noise-like detail.
    fn signal(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (i as f64 * 0.05).sin() + 0.3 * (i as f64 * 0.31).cos() + 0.05 * ((i * 7919) % 101) as f64 / 101.0)
            .collect()
    }

    fn input<'a>(train: &'a [f64], held: &'a [f64]) -> PeerInput<'a> {
        PeerInput { train, held_out: held, window: 64, counts_per_unit: 1000.0 }
    }

    #[test]
    fn every_curve_trades_bits_for_error() {
        let x = signal(64 * 60);
        let (train, held) = x.split_at(64 * 48);
        let points = all_peers(&input(train, held)).unwrap();
        let mut methods: Vec<&str> = points.iter().map(|p| p.method.as_str()).collect();
        methods.dedup();
        assert_eq!(methods.len(), 7, "{methods:?}");
        for method in &methods[..6] {
            let curve: Vec<&RdPoint> = points.iter().filter(|p| p.method == *method).collect();
            let finest = curve.iter().map(|p| p.prdn).fold(f64::INFINITY, f64::min);
            let coarsest = curve.iter().map(|p| p.prdn).fold(0.0, f64::max);
            let most_bits = curve.iter().map(|p| p.bits_per_sample).fold(0.0, f64::max);
            let fewest_bits = curve.iter().map(|p| p.bits_per_sample).fold(f64::INFINITY, f64::min);
            assert!(finest < 0.5 * coarsest && fewest_bits < 0.5 * most_bits, "{method}: {curve:?}");
            assert!(curve.iter().all(|p| p.prdn.is_finite() && p.bits_per_sample > 0.0), "{method}");
        }
        // The finest settings are close to exact; lossless is exact up to the count rounding.
        let lossless = points.last().unwrap();
        assert!(lossless.max_abs_error <= 0.5 / 1000.0 + 1e-9, "{lossless:?}");
    }

    #[test]
    fn transforms_invert_exactly_without_quantization() {
        // A step so small that quantization does not matter: the transforms must round-trip.
        let x = signal(64 * 20);
        let (train, held) = x.split_at(64 * 16);
        for p in
            dct(&input(train, held)).unwrap().iter().take(1).chain(dwt(&input(train, held)).unwrap().iter().take(1))
        {
            assert!(p.prdn < 1.0, "{p:?}");
        }
    }

    #[test]
    fn interpolation_is_log_log_and_bounded() {
        let p = |b: f64, e: f64| RdPoint {
            method: "m".into(),
            setting: String::new(),
            bits_per_sample: b,
            prdn: e,
            prd: e,
            snr_db: 0.0,
            max_abs_error: 0.0,
        };
        let (a, b) = (p(1.0, 10.0), p(4.0, 2.5));
        let curve = [&b, &a];
        assert!((prdn_at(&curve, 2.0).unwrap() - 5.0).abs() < 1e-9); // halfway in log–log
        assert_eq!(prdn_at(&curve, 0.5), None);
        assert_eq!(prdn_at(&curve, 8.0), None);
    }

    #[test]
    fn weighted_subbands_cost_the_same_per_unit_error() {
        let n = 64 * 32;
        let dwt = WeightedDwt::new(n);
        assert_eq!(dwt.subbands.len(), DWT_LEVELS + 1);
        assert_eq!(dwt.subbands.last().unwrap().0.end, n);
        // Anywhere in any subband, a unit weighted error costs unit energy.
        for (range, _) in &dwt.subbands {
            for pos in [range.start, (range.start + range.end) / 2, range.end - 1] {
                let mut c = vec![0.0; n];
                c[pos] = 1.0;
                let energy: f64 = dwt.synthesize(&c).iter().map(|v| v * v).sum();
                assert!((energy - 1.0).abs() < 1e-9, "subband {range:?} at {pos}: {energy}");
            }
        }
        let x = signal(n);
        let back = dwt.synthesize(&dwt.analyze(&x));
        assert!(x.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-9));
    }
}
