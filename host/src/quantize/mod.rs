//! Post-training int8 quantization of a [`FloatEncoder`] into the `shared` model blob.
//!
//! Scheme (TFLite-style, see `shared::kernels`):
//! * weights: symmetric, one scale per output channel (`max |w| / (2^(b−1) − 1)`): int8 in
//!   hidden layers, i16 in the last layer (int8 weights put the codes of a fine rate a step
//!   off: the IMU's magnetometer at 2 bits/sample lost 19 % PRDN to them);
//! * accumulators: i32 where every sum fits whatever the input, else i64 (the layer that makes
//!   the codes straight from the 16-bit input);
//! * activations: asymmetric int8 per tensor, ranges calibrated by running the float encoder
//!   over calibration windows (ReLU outputs start at 0, so their zero point is −128);
//! * biases: int32 at scale `s_in · s_w[o]`;
//! * requantization: `s_in · s_w[o] / s_out` as a Q31 multiplier and a power-of-two shift;
//! * input: the device's i16 counts themselves, `q = (x − round(mean·cpu)) · 2^k` per channel
//!   within ±`INPUT_LIMIT`, the normalization `1/(cpu · std)` otherwise moved into the first
//!   layer's weights (a 13-bit input lost up to 27 % PRDN where the held-out part was far
//!   quieter than the training part, and clipped where it was louder);
//! * codes: the last layer's i16 output, `z = scale · (code − zero_point)` (int8 clipped the
//!   rare large code of a fine rate, and a window with one came back wrong);
//! * entropy coding: one table per latent fitted to the codes the int8 encoder itself makes of
//!   the calibration windows (see `OwnedCodeTables::fit`), stored in the blob.

mod decoder;

pub use decoder::with_decoder;

use anyhow::{bail, ensure, Context, Result};
use funnel_artifacts::blob::{model_id_of, OwnedCodeTables};
use funnel_artifacts::data::{Normalization, Windows};
use funnel_artifacts::net::{Activation, FloatEncoder, FloatLayer};
use funnel_artifacts::residual::OwnedResidualSpec;
use funnel_artifacts::Blob;
use funnel_shared::blob::{
    write_blob, AccumulatorWidth, CodeQuant, EncoderSpec, I16s, I32s, I8s, InputQuant, Layer, QuantLayer,
    RequantParams, U8s, Weights, MAX_LAYERS,
};
use funnel_shared::entropy::{PRECISION, TOTAL};
use funnel_shared::kernels::{DEAD_ZONE_BITS, INPUT_LIMIT};
use funnel_shared::stream::latent_base;
use funnel_shared::wire::MAX_CODES;

/// Real range `[min, max]` of a tensor mapped onto int8 `[-128, 127]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationQuant {
    pub scale: f64,
    pub zero_point: i8,
}

impl ActivationQuant {
    /// The affine map for `[min, max]`, widened to contain 0 so that zero padding and ReLU's
    /// floor are exact.
    pub fn for_range(min: f64, max: f64) -> ActivationQuant {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i8;
        ActivationQuant { scale, zero_point }
    }

    /// The codes' rate knob: steps `step` (≥ 1) times as wide over the calibrated range
    /// `[min, max]`, the zero point centred on it so that the fewer codes it now takes stay
    /// inside int8.
    pub fn coarsened(self, step: f64, min: f64, max: f64) -> ActivationQuant {
        if step == 1.0 {
            return self;
        }
        let scale = self.scale * step;
        let zero_point = (-(min + max) / 2.0 / scale).round().clamp(-128.0, 127.0) as i8;
        ActivationQuant { scale, zero_point }
    }

    pub fn quantize(&self, v: f64) -> i8 {
        (v / self.scale + f64::from(self.zero_point)).round().clamp(-128.0, 127.0) as i8
    }

    pub fn dequantize(&self, q: i8) -> f64 {
        self.scale * (f64::from(q) - f64::from(self.zero_point))
    }
}

/// A real multiplier as a Q31 value in `[2^30, 2^31)` and a power-of-two exponent, so that
/// `m ≈ multiplier · 2^(shift − 31)`. Multipliers too small to matter (below `2^-32`) become 0.
pub fn quantize_multiplier(m: f64) -> Result<(i32, i8)> {
    ensure!(m.is_finite() && m >= 0.0, "requantization multiplier {m} is not a finite non-negative number");
    if m < 2f64.powi(-32) {
        return Ok((0, 0));
    }
    let mut shift = m.log2().floor() as i32 + 1; // m = q · 2^shift, q in [0.5, 1)
    let mut q = (m / 2f64.powi(shift) * 2f64.powi(31)).round() as i64;
    // log2 rounding or the Q31 rounding can land q just outside [2^30, 2^31).
    while q >= 1 << 31 {
        q = (q + 1) / 2;
        shift += 1;
    }
    while q < 1 << 30 {
        q *= 2;
        shift -= 1;
    }
    if shift < -31 {
        return Ok((0, 0));
    }
    if shift > 30 {
        bail!("requantization multiplier {m} is too large for int8 (the calibrated range is degenerate)");
    }
    Ok((q as i32, shift as i8))
}

/// Coarsest code step [`quantize`] accepts: two codes over the calibrated range.
pub const MAX_CODE_STEP: f64 = 127.0;
/// Finest code step on a trained grid: half its step (finer codes than the network was
/// trained for help little).
pub const MIN_TRAINED_GRID_STEP: f64 = 0.5;

/// The input multiplier (device counts to input steps) used for `multiplier` (1 or more but on a
/// constant channel): the largest power of two not above it, so that distinct counts stay distinct and every count
/// reaches the network exactly. With the multiplier itself, each count was rounded to the
/// input's grid, an error of up to half an input step that no decoder can undo: the IMU's
/// magnetometer (2,048 counts/gauss, multiplier about 1.6) at 2 bits/sample lost 9 % PRDN to
/// the device path, held out.
fn exact_input_multiplier(multiplier: f64) -> f64 {
    2f64.powi(multiplier.log2().floor() as i32).min(multiplier)
}

/// `layer` (an encoder's first) with its weights on input channel `c` multiplied by
/// `factors[c]`: the part of a channel's input scaling that [`exact_input_multiplier`] leaves
/// to the network.
fn scaled_input_channels(layer: &FloatLayer, factors: &[f64]) -> FloatLayer {
    let mut scaled = layer.clone();
    let channels = factors.len().max(1);
    // How many consecutive weights fall on one input channel: a dense layer reads `[C][T]`
    // windows, a convolution's weights are `[out][C][kernel]`.
    let (weight, run) = match &mut scaled {
        FloatLayer::Dense { weight, in_features, .. } => (weight, *in_features / channels),
        FloatLayer::Conv1d { weight, kernel, .. } => (weight, *kernel),
    };
    for (i, w) in weight.iter_mut().enumerate() {
        let factor = factors.get(i / run.max(1) % channels).copied().unwrap_or(1.0);
        *w = (f64::from(*w) * factor) as f32;
    }
    scaled
}

/// What the quantizer needs besides the float encoder: how device samples relate to its input.
#[derive(Clone, Debug)]
pub struct QuantizationInput<'a> {
    pub encoder: &'a FloatEncoder,
    pub normalization: &'a Normalization,
    /// Device counts per unit of the recording (`model.json` `counts_per_unit`).
    pub counts_per_unit: f32,
    /// Normalized `[C][T]` windows whose activations set the ranges (training windows).
    pub calibration: &'a Windows,
    /// The codes' quantization step over the finest one that covers their calibrated range
    /// (≥ 1), or over the trained grid (≥ [`MIN_TRAINED_GRID_STEP`]): the rate knob of a trained
    /// model.
    pub code_step: f64,
    /// The encoder was trained for a rate: its outputs are the codes on a grid of step 1 (see
    /// `funnel::train`), so the codes are `round(z / code_step)` with zero point 0, whatever
    /// range calibration sees.
    pub trained_grid: bool,
    /// The codes' dead zone, in steps (0 ≤ d < ½; a trained grid only): the device rounds a
    /// code's value `v` to `sign(v)·⌊|v| + ½ − d⌋` (see `funnel_shared::kernels::Requantize`).
    pub dead_zone: f64,
    /// What a code's bit is worth in squared error, in steps² per bit (0: nothing; a trained
    /// grid only): each code whose nonzero values cost `Δb` bits more than a zero in its
    /// fitted table gets the dead zone `dead_zone + rate_weight · Δb / 2`, up to
    /// [`MAX_RATE_DEAD_ZONE`] (see [`rate_dead_zones`]).
    pub rate_weight: f64,
    /// Windows per frame on the link: the code tables are fitted for frames of that many
    /// windows (see `OwnedCodeTables::fit`).
    pub windows_per_frame: usize,
}

/// Bits of the weights of a last layer (the encoder's makes the codes, the integer decoder's
/// the window).
pub const WIDE_WEIGHT_BITS: u32 = 16;

/// Symmetric per-output-channel weights of `bits` bits, the biases at the accumulator's scale
/// and the requantization of each output: `(weights, biases, multipliers, shifts)`.
type QuantizedWeights = (Vec<i32>, Vec<i32>, Vec<i32>, Vec<i8>);

fn quantize_weights(
    weight: &[f32],
    bias: &[f32],
    per_out: usize,
    bits: u32,
    s_in: f64,
    s_out: f64,
) -> Result<QuantizedWeights> {
    let top = f64::from((1u32 << (bits - 1)) - 1);
    let (mut w_q, mut b_q, mut mult, mut shift) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (o, row) in weight.chunks(per_out).enumerate() {
        let max_abs = row.iter().fold(0.0f64, |m, &w| m.max(f64::from(w).abs()));
        let s_w = if max_abs > 0.0 { max_abs / top } else { 1.0 };
        w_q.extend(row.iter().map(|&w| (f64::from(w) / s_w).round().clamp(-top, top) as i32));
        let b = (f64::from(bias[o]) / (s_in * s_w)).round();
        b_q.push(b.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32);
        let (m, s) = quantize_multiplier(s_in * s_w / s_out)?;
        mult.push(m);
        shift.push(s);
    }
    Ok((w_q, b_q, mult, shift))
}

/// Quantizes one layer that reads `s_in` (each input at most `input_magnitude` from its zero
/// point) and writes `out_q`, with weights of `bits` bits, summed in the narrowest accumulator
/// that holds every sum whatever the input (blob validation checks the same).
fn quantize_layer(
    layer: &FloatLayer,
    s_in: ActivationQuant,
    out_q: ActivationQuant,
    input_magnitude: f64,
    bits: u32,
) -> Result<OwnedLayer> {
    let (weight, bias, activation, taps) = match layer {
        FloatLayer::Dense { weight, bias, activation, in_features, .. } => (weight, bias, *activation, *in_features),
        FloatLayer::Conv1d { weight, bias, activation, in_channels, kernel, .. } => {
            (weight, bias, *activation, in_channels * kernel)
        }
    };
    let per_out = weight.len() / bias.len().max(1);
    let (w_q, b_q, mult, shift) = quantize_weights(weight, bias, per_out, bits, s_in.scale, out_q.scale)?;
    let largest = w_q.iter().map(|w| f64::from(*w).abs()).fold(0.0, f64::max);
    let largest_bias = b_q.iter().map(|b| f64::from(*b).abs()).fold(0.0, f64::max);
    let sums = largest_bias + taps as f64 * largest * input_magnitude;
    let accumulator = [AccumulatorWidth::Bits32, AccumulatorWidth::Bits64]
        .into_iter()
        .find(|a| sums <= a.max_sum() as f64)
        .context("a layer's sums are too large for even a 64-bit accumulator")?;
    let wide = bits > 8;
    let weights = match wide {
        true => w_q.iter().flat_map(|w| (*w as i16).to_le_bytes()).collect(),
        false => w_q.iter().map(|w| *w as i8 as u8).collect(),
    };
    Ok(OwnedLayer {
        wide,
        accumulator,
        weights,
        bias: le_bytes(&b_q),
        multipliers: le_bytes(&mult),
        shifts: shift.iter().map(|&s| s as u8).collect(),
        input_zero_point: s_in.zero_point,
        output_zero_point: out_q.zero_point,
        relu: activation == Activation::Relu,
    })
}

/// The blob's layers: `layers`' shapes with `owned`'s parameters, each `(layer, upsampled)`:
/// `upsampled` for a convolution an upsampling comes before (its `in_len` the upsampled
/// length), which becomes a [`Layer::UpsampledConv1d`].
fn blob_layers<'f, 'o>(
    layers: impl IntoIterator<Item = (&'f FloatLayer, bool)>,
    owned: &'o [OwnedLayer],
) -> Result<heapless::Vec<Layer<'o>, MAX_LAYERS>> {
    let narrow = |v: usize, what: &str| -> Result<u16> {
        u16::try_from(v).map_err(|_| anyhow::anyhow!("{what} {v} does not fit the blob format"))
    };
    let small = |v: usize, what: &str| -> Result<u8> {
        u8::try_from(v).map_err(|_| anyhow::anyhow!("conv {what} {v} does not fit the blob format"))
    };
    let mut out = heapless::Vec::new();
    for ((layer, upsampled), o) in layers.into_iter().zip(owned) {
        let q = o.quant();
        let l = match (layer, upsampled) {
            (FloatLayer::Dense { in_features, out_features, .. }, false) => Layer::Dense {
                in_features: narrow(*in_features, "dense input size")?,
                out_features: narrow(*out_features, "dense output size")?,
                q,
            },
            (FloatLayer::Dense { .. }, true) => bail!("an upsampling before a dense layer has no integer kernel"),
            (FloatLayer::Conv1d { in_channels, out_channels, kernel, stride, padding, in_len, .. }, false) => {
                Layer::Conv1d {
                    in_channels: narrow(*in_channels, "conv input channels")?,
                    out_channels: narrow(*out_channels, "conv output channels")?,
                    in_len: narrow(*in_len, "conv input length")?,
                    kernel: small(*kernel, "kernel")?,
                    stride: small(*stride, "stride")?,
                    padding: small(*padding, "padding")?,
                    q,
                }
            }
            (FloatLayer::Conv1d { in_channels, out_channels, kernel, stride, padding, in_len, .. }, true) => {
                ensure!(in_len % 2 == 0, "an upsampled convolution's input length {in_len} is odd");
                Layer::UpsampledConv1d {
                    in_channels: narrow(*in_channels, "conv input channels")?,
                    out_channels: narrow(*out_channels, "conv output channels")?,
                    in_len: narrow(in_len / 2, "conv input length")?,
                    kernel: small(*kernel, "kernel")?,
                    stride: small(*stride, "stride")?,
                    padding: small(*padding, "padding")?,
                    q,
                }
            }
        };
        out.push(l).map_err(|_| anyhow::anyhow!("more than {MAX_LAYERS} layers"))?;
    }
    Ok(out)
}

/// Owned parameters of one layer; [`EncoderSpec`] borrows them.
struct OwnedLayer {
    /// One byte per weight, or two (little-endian) when `wide`.
    weights: Vec<u8>,
    wide: bool,
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    shifts: Vec<u8>,
    input_zero_point: i8,
    output_zero_point: i8,
    relu: bool,
    accumulator: AccumulatorWidth,
}

impl OwnedLayer {
    fn quant(&self) -> QuantLayer<'_> {
        QuantLayer {
            weights: match self.wide {
                false => Weights::Int8(I8s::new(&self.weights)),
                true => Weights::Int16(I16s::new(&self.weights).expect("2 bytes per weight")),
            },
            bias: I32s::new(&self.bias).expect("4 bytes per bias"),
            requant: RequantParams {
                multipliers: I32s::new(&self.multipliers).expect("4 bytes per multiplier"),
                shifts: I8s::new(&self.shifts),
            },
            input_zero_point: self.input_zero_point,
            output_zero_point: self.output_zero_point,
            relu: self.relu,
            accumulator: self.accumulator,
        }
    }
}

fn le_bytes(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A real-valued `(min, max)`.
type Range = (f64, f64);

/// `[min, max]` of every layer's output over the calibration windows.
fn calibrate(encoder: &FloatEncoder, windows: &Windows) -> Result<Vec<Range>> {
    ensure!(!windows.is_empty(), "no calibration windows");
    let mut ranges = vec![(f64::INFINITY, f64::NEG_INFINITY); encoder.layers.len()];
    for w in windows.iter() {
        ensure!(w.iter().all(|v| v.is_finite()), "calibration data contains a non-finite value");
        for (range, out) in ranges.iter_mut().zip(encoder.forward_all(w)) {
            for v in out {
                *range = (range.0.min(f64::from(v)), range.1.max(f64::from(v)));
            }
        }
    }
    Ok(ranges)
}

/// Quantizes the encoder into a blob, validated by the same parser the firmware uses. Writes
/// nothing: the caller decides where the blob goes once it has measured it.
/// Checks `q.dead_zone` and `q.rate_weight`.
fn check_rounding(q: &QuantizationInput<'_>) -> Result<()> {
    ensure!(
        (0.0..MAX_DEAD_ZONE).contains(&q.dead_zone),
        "the codes' dead zone must be at least 0 and below {MAX_DEAD_ZONE} of a step (got {})",
        q.dead_zone
    );
    ensure!(
        q.rate_weight.is_finite() && q.rate_weight >= 0.0,
        "the codes' rate weight must be at least 0 (got {})",
        q.rate_weight
    );
    ensure!(
        q.trained_grid || (q.dead_zone == 0.0 && q.rate_weight == 0.0),
        "a dead zone needs a model trained for a rate (its codes' grid)"
    );
    Ok(())
}

/// A dead zone in steps as the blob holds it (1/256 of a step, below 128).
fn dead_zone_units(dead_zone: f64) -> u8 {
    (dead_zone * f64::from(1u32 << DEAD_ZONE_BITS)).round().min(127.0) as u8
}

/// Each code's dead zone in `blob`, in steps (empty: none): its output channel's.
pub fn code_dead_zones(blob: &Blob) -> Vec<f64> {
    let zones = blob.encoder().spec().codes.dead_zones;
    let per_channel = blob.latent() / zones.len().max(1);
    let step = f64::from(1u32 << DEAD_ZONE_BITS);
    zones.iter().flat_map(|z| core::iter::repeat_n(f64::from(z) / step, per_channel)).collect()
}

/// Largest dead zone, in steps (exclusive): at ½ the code 0 would take in ±1.
pub const MAX_DEAD_ZONE: f64 = 0.5;
/// Largest dead zone [`rate_dead_zones`] gives a code: past it a code rarely leaves 0 at all.
pub const MAX_RATE_DEAD_ZONE: f64 = 0.45;

/// The dead zone of each output channel of `blob`'s last layer, in steps, from its code
/// tables: the rate–distortion-optimised rounding of each code between 0 and ±1 (rounding
/// `v` to 0 adds `(2|v| − 1)` steps² of error and saves `Δb` bits, worth it below
/// `|v| = ½ + rate_weight · Δb / 2`), where `Δb` is what ±1 costs over 0 in the code's own
/// table, averaged over the window classes and over a channel's codes; the same dead zone
/// then moves every threshold of the code, as its table falls off about as fast further out.
/// A code sent as its difference from an earlier window (a predicted latent) keeps
/// `dead_zone`. Measured in Python on the PCA codes of four recordings (window 32, held out,
/// tables fitted on the training part): at 0.5 bits/sample 2–4 % less PRDN than the best
/// single dead zone, within 2 % of a search of each code's rounding against its table.
pub fn rate_dead_zones(blob: &Blob, dead_zone: f64, rate_weight: f64) -> Vec<f64> {
    let channels = blob.encoder().spec().layers.last().map_or(0, |l| l.quant().requant.shifts.len());
    let Some(tables) = blob.code_tables() else { return vec![dead_zone; channels] };
    let latents = blob.latent();
    let bits = |class: usize, latent: usize, value: i16| {
        let (freq, escaped) = tables.frequency(class, latent, value);
        f64::from(PRECISION) - f64::from(freq).log2() + if escaped { 8.0 } else { 0.0 }
    };
    let extra_bits = |latent: usize| -> f64 {
        if tables.lag(latent) != 0 {
            return 0.0;
        }
        (0..tables.class_count())
            .map(|c| {
                let weight = f64::from(tables.class_frequency(c)) / f64::from(TOTAL);
                weight * ((bits(c, latent, 1) + bits(c, latent, -1)) / 2.0 - bits(c, latent, 0))
            })
            .sum()
    };
    let per_channel = latents / channels.max(1);
    (0..channels)
        .map(|c| {
            let mean =
                (c * per_channel..(c + 1) * per_channel).map(extra_bits).sum::<f64>() / per_channel.max(1) as f64;
            (dead_zone + rate_weight * mean.max(0.0) / 2.0).min(MAX_RATE_DEAD_ZONE.max(dead_zone))
        })
        .collect()
}

pub fn quantize(q: &QuantizationInput<'_>) -> Result<Blob> {
    check_rounding(q)?;
    let enc = q.encoder;
    let channels = enc.channels;
    ensure!(
        q.normalization.channels() == channels,
        "normalization has {} channels, encoder {}",
        q.normalization.channels(),
        channels
    );
    ensure!(
        enc.layers.len() <= MAX_LAYERS,
        "the encoder has {} layers; the device supports {MAX_LAYERS}",
        enc.layers.len()
    );
    ensure!(enc.latent() <= MAX_CODES, "latent size {} exceeds the {MAX_CODES} codes a frame carries", enc.latent());
    ensure!(q.calibration.dim == channels * enc.window, "calibration windows do not match the encoder input");
    let finest = if q.trained_grid { MIN_TRAINED_GRID_STEP } else { 1.0 };
    ensure!(
        q.code_step.is_finite() && (finest..=MAX_CODE_STEP).contains(&q.code_step),
        "the code step must be between {finest} and {MAX_CODE_STEP} (got {})",
        q.code_step
    );
    let cpu = f64::from(q.counts_per_unit);
    ensure!(cpu.is_finite() && cpu > 0.0, "counts_per_unit must be positive (got {cpu})");

    let ranges = calibrate(enc, q.calibration)?;
    // Input: the device's counts themselves, `q = (x − offset) · 2^k` with k ≥ 0 per channel,
    // the channel of the largest σ (in counts) passing unchanged, smaller ones scaled up to at
    // most its σ; the rest of the normalization, `1/(cpu · σ · s_in)` over 2^k (in [1, 2)),
    // moves into the first layer's weights on the channel (see [`exact_input_multiplier`]).
    // Every count reaches the network exactly, and the input saturates only where the counts
    // themselves do (±32,767 from the training mean): a 13-bit input spanning 4× the training
    // part's extremes took 61-count steps on a seismometer whose held-out part was quiet, and
    // clipped another's earthquake.
    // A channel constant over the calibration windows has the normalization's stand-in σ of 1
    // (in the recording's units, whatever they are), which must not set the scale.
    let varies =
        |c: usize| q.calibration.iter().any(|w| w[c * enc.window..(c + 1) * enc.window].iter().any(|&v| v != 0.0));
    let stds = || (0..channels).map(|c| f64::from(q.normalization.std[c]));
    let widest = match (0..channels).any(varies) {
        true => stds().enumerate().filter(|&(c, _)| varies(c)).map(|(_, s)| s).fold(0.0, f64::max),
        false => stds().fold(0.0, f64::max),
    };
    ensure!(widest.is_finite() && widest > 0.0, "the normalization's standard deviations must be positive");
    let input_q = ActivationQuant { scale: 1.0 / (cpu * widest), zero_point: 0 };
    let mut offsets = Vec::with_capacity(channels);
    let (mut in_mult, mut in_shift, mut leftover) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..channels {
        let (mean, std) = (f64::from(q.normalization.mean[c]), f64::from(q.normalization.std[c]));
        ensure!(std.is_finite() && std > 0.0, "channel {c}: the normalization's standard deviation must be positive");
        let offset = (mean * cpu).round();
        ensure!(offset.abs() < f64::from(i32::MAX), "channel {c}: mean {mean} is out of the device's range");
        offsets.push(offset as i32);
        // 1 / (cpu · std · s_in), exactly 1 on the widest channel (below 1 only on a constant one).
        let multiplier = widest / std;
        let exact = exact_input_multiplier(multiplier);
        let (m, s) = quantize_multiplier(exact)?;
        in_mult.push(m);
        in_shift.push(s as u8);
        leftover.push(multiplier / exact);
    }
    let first = enc.layers.first().map(|layer| scaled_input_channels(layer, &leftover));

    let mut owned = Vec::with_capacity(enc.layers.len());
    let mut acts = Vec::with_capacity(enc.layers.len());
    let mut s_in = input_q;
    for (i, (layer, &(min, max))) in enc.layers.iter().zip(&ranges).enumerate() {
        let layer = match (i, &first) {
            (0, Some(first)) => first,
            _ => layer,
        };
        let min = if layer.activation() == Activation::Relu { 0.0 } else { min };
        let mut out_q = ActivationQuant::for_range(min, max);
        if i + 1 == enc.layers.len() {
            out_q = match q.trained_grid {
                true => ActivationQuant { scale: q.code_step, zero_point: 0 },
                false => out_q.coarsened(q.code_step, min, max),
            };
        }
        let input_magnitude = if i == 0 { f64::from(INPUT_LIMIT) } else { 255.0 };
        let bits = if i + 1 == enc.layers.len() { WIDE_WEIGHT_BITS } else { 8 };
        owned.push(quantize_layer(layer, s_in, out_q, input_magnitude, bits)?);
        acts.push(out_q);
        s_in = out_q;
    }

    let offsets = le_bytes(&offsets);
    let in_mult = le_bytes(&in_mult);
    let codes = acts.last().copied().unwrap_or(input_q);
    let window =
        u16::try_from(enc.window).map_err(|_| anyhow::anyhow!("window {} too long for the device", enc.window))?;
    let channel_count = u8::try_from(channels).map_err(|_| anyhow::anyhow!("{channels} channels are too many"))?;
    // The blob with the codes' dead zones `zones` (one per output channel) and `tables`.
    let write = |zones: &[u8], tables: Option<&OwnedCodeTables>| -> Result<Blob> {
        let spec = EncoderSpec {
            window,
            channels: channel_count,
            counts_per_unit: q.counts_per_unit,
            input: InputQuant {
                offsets: I32s::new(&offsets).expect("4 bytes per offset"),
                requant: RequantParams {
                    multipliers: I32s::new(&in_mult).expect("4 bytes each"),
                    shifts: I8s::new(&in_shift),
                },
            },
            layers: blob_layers(enc.layers.iter().map(|l| (l, false)), &owned)?,
            codes: CodeQuant {
                scale: codes.scale as f32,
                zero_point: codes.zero_point,
                dead_zones: if zones.iter().all(|&z| z == 0) { U8s::EMPTY } else { U8s::new(zones).expect("bytes") },
            },
            tables: tables.map(OwnedCodeTables::tables),
            residual: None,
            decoder: None,
        };
        let table_bytes = spec.tables.map_or(0, |t| 2 * t.lowest.len() + 2 * t.cumulative.len());
        let weights: usize = owned.iter().map(|o| o.weights.len() + o.bias.len() * 3 + 64).sum();
        let mut buf = vec![0u8; 64 + weights + 64 * channels + zones.len() + table_bytes + 16];
        let len = write_blob(&spec, &mut buf, model_id_of).context("cannot write the model blob")?;
        buf.truncate(len);
        // Parse it back exactly as the device will.
        Ok(Blob::from_bytes(buf)?)
    };
    // The blob with `zones`, and code tables fitted to the codes it makes.
    let with_tables = |zones: &[u8]| -> Result<Blob> {
        let codes = fitting_codes(&write(zones, None)?, q.normalization, q.calibration, q.windows_per_frame)?;
        write(zones, Some(&OwnedCodeTables::fit(&codes, enc.latent(), q.windows_per_frame)))
    };
    let out_channels = owned.last().map_or(0, |l| l.shifts.len());
    let blob = with_tables(&vec![dead_zone_units(q.dead_zone); out_channels])?;
    match q.rate_weight {
        0.0 => Ok(blob),
        // The rounding that weighs each code's bits needs tables, which need codes: the codes
        // of the single dead zone give the tables, whose costs give the dead zones, whose codes
        // give the tables sent.
        weight => {
            let zones: Vec<u8> = rate_dead_zones(&blob, q.dead_zone, weight).into_iter().map(dead_zone_units).collect();
            with_tables(&zones)
        }
    }
}

/// `blob` made bounded: its streams carry the samples, each within `max_error` counts (0:
/// exactly), coded by a residual coder fitted to `train_counts` (the training part as device
/// counts, `[T][C]`) as it will be sent: frames of `window × windows_per_frame` samples per
/// channel, each channel's a segment coded from an empty history (see
/// `funnel_shared::residual`). When `blob` has an integer decoder, its frames carry the codes
/// too and the residuals are taken against the decoder's rebuild of them, on which the coder
/// is fitted.
pub fn bounded_blob(blob: &Blob, train_counts: &[i16], max_error: u16, windows_per_frame: u8) -> Result<Blob> {
    let channels = blob.channels();
    let span = blob.window() * usize::from(windows_per_frame);
    let rows = train_counts.len() / channels.max(1);
    ensure!(rows > 0, "no training samples to fit the residual coder to");
    // Whole frames, each channel's samples together; a training part shorter than a frame is
    // one segment.
    let segment = span.min(rows);
    let frames = train_counts.chunks_exact(segment * channels);
    let mut samples = Vec::with_capacity(rows / segment * segment * channels);
    for frame in frames.clone() {
        samples.extend((0..channels).flat_map(|c| frame.iter().skip(c).step_by(channels).copied()));
    }
    let encoder = blob.encoder();
    let base = match encoder.decoder() {
        None => None,
        Some(decoder) => {
            let (window, k) = (blob.window(), blob.latent());
            // A window of counts, and the encoder's or the decoder's scratch (see `latent_base`).
            let mut scratch = vec![0i16; window * channels + encoder.scratch_len().max(decoder.scratch_len())];
            let mut codes = vec![0i16; segment.div_ceil(window) * k];
            let mut base = vec![0i16; samples.len()];
            for (frame, base) in frames.zip(base.chunks_exact_mut(segment * channels)) {
                // A frame shorter than a window (a short training part) is padded as a stream's
                // last window is.
                let mut padded = frame.to_vec();
                let last = padded[padded.len() - channels..].to_vec();
                padded.resize(codes.len() / k * window * channels, 0);
                padded[frame.len()..].chunks_exact_mut(channels).for_each(|p| p.copy_from_slice(&last));
                for (w, codes) in padded.chunks_exact(window * channels).zip(codes.chunks_exact_mut(k)) {
                    encoder.encode(w, &mut scratch, codes).context("the int8 encoder refused a training window")?;
                }
                latent_base(&encoder, &codes, segment, &mut scratch, base)
                    .context("the integer decoder refused a training frame")?;
            }
            Some(base)
        }
    };
    let fitted = OwnedResidualSpec::fit(&samples, base.as_deref(), max_error, segment)
        .with_context(|| format!("cannot fit the residual coder for a bound of {max_error} counts"))?;
    let parsed = funnel_shared::blob::ModelBlob::parse(blob.bytes()).expect("a Blob parses");
    let spec = EncoderSpec { residual: Some(fitted.spec()), ..parsed.spec };
    let mut buf = vec![0u8; blob.len() + fitted.spec().tables.cumulative.len() * 4 + 1024];
    let len = write_blob(&spec, &mut buf, model_id_of).context("cannot write the bounded model blob")?;
    buf.truncate(len);
    Ok(Blob::from_bytes(buf)?)
}

/// Copies of the training windows the code tables are fitted to: the windows themselves and
/// the same samples cut again 1/8, 2/8, … of a window later. The device meets every offset of
/// a stream, and eight times the windows estimate the tables better: measured held out on the
/// IMU's acc_z (training part 316 windows of 32 samples), the same models' codes at 0.5, 1 and
/// 2 bits/sample took 4–6 % fewer bits than with tables fitted to the windows alone.
pub const TABLE_PHASES: usize = 8;
/// Most windows the code tables are fitted to: a long training part gets fewer shifted copies
/// (none past this many windows of its own).
pub const MAX_TABLE_WINDOWS: usize = 24_576;

/// The codes the code tables are fitted to ([`OwnedCodeTables::fit`]): the device's codes of
/// `windows` (consecutive normalized `[C][T]` windows) and of up to [`TABLE_PHASES`] − 1
/// copies of them shifted by a fraction of a window ([`Windows::shifted`]), each copy cut to
/// whole frames of `windows_per_frame` and the unshifted windows last, so that no frame
/// straddles two copies and a latent's prediction from the windows before stays within one.
pub fn fitting_codes(
    blob: &Blob,
    normalization: &Normalization,
    windows: &Windows,
    windows_per_frame: usize,
) -> Result<Vec<i16>> {
    let mut codes = shifted_codes(blob, normalization, windows, windows_per_frame)?;
    codes.extend(device_codes(blob, normalization, windows)?);
    Ok(codes)
}

/// [`fitting_codes`] but the windows' own codes, which come after these: the codes of the
/// shifted copies alone (none for a long `windows`).
pub fn shifted_codes(
    blob: &Blob,
    normalization: &Normalization,
    windows: &Windows,
    windows_per_frame: usize,
) -> Result<Vec<i16>> {
    let (window, per_frame) = (blob.window(), windows_per_frame.max(1));
    let phases = TABLE_PHASES.min(window).min((MAX_TABLE_WINDOWS / windows.len().max(1)).max(1));
    let mut codes = Vec::new();
    for phase in 1..phases {
        let shifted = windows.shifted(blob.channels(), phase * window / phases);
        let whole = shifted.len() / per_frame * per_frame;
        codes.extend(device_codes(blob, normalization, &shifted.slice(0..whole))?);
    }
    Ok(codes)
}

/// The codes the device's int8 encoder makes of `windows` (normalized `[C][T]`), window after
/// window: the samples converted back to device counts first, as the device would read them.
pub fn device_codes(blob: &Blob, normalization: &Normalization, windows: &Windows) -> Result<Vec<i16>> {
    let encoder = blob.encoder();
    let mut scratch = vec![0i16; encoder.scratch_len()];
    let mut codes = vec![0i16; windows.len() * blob.latent()];
    for (w, out) in windows.iter().zip(codes.chunks_exact_mut(blob.latent().max(1))) {
        let mut values = w.to_vec();
        normalization.denormalize_in_place(&mut values);
        encoder
            .encode(&blob.window_counts(&values), &mut scratch, out)
            .context("the int8 encoder refused a calibration window")?;
    }
    Ok(codes)
}

/// The bytes of `blob` with one weight of its first layer changed by one (the first whose change
/// the format check accepts) and its CRC repaired; with `new_id`, its model id too, so that it
/// is another valid model of the same structure. For tests of model mismatches.
#[cfg(test)]
pub(crate) fn with_one_weight_changed(blob: &Blob, new_id: bool) -> Vec<u8> {
    use funnel_shared::blob::{Weights, HEADER_LEN, TRAILER_LEN};
    let bytes = blob.bytes();
    let first = blob.encoder().spec().layers[0].quant().weights;
    let (start, len) = match first {
        Weights::Int8(w) => (w.slice(0, 1).as_ptr(), w.len()),
        Weights::Int16(w) => (w.slice(0, 1).as_ptr(), 2 * w.len()),
    };
    let start = start as usize - bytes.as_ptr() as usize;
    (start..start + len)
        .map(|at| {
            let mut changed = bytes.to_vec();
            changed[at] ^= 1;
            let n = changed.len();
            if new_id {
                let id = model_id_of(&changed[HEADER_LEN..n - TRAILER_LEN]);
                changed[6..10].copy_from_slice(&id.0);
            }
            let crc = funnel_shared::wire::CRC32.checksum(&changed[..n - TRAILER_LEN]);
            changed[n - TRAILER_LEN..].copy_from_slice(&crc.to_le_bytes());
            changed
        })
        .find(|changed| funnel_shared::blob::ModelBlob::parse(changed).is_ok())
        .expect("a weight whose change keeps the blob valid")
}

/// A one-layer dense encoder (`window` samples → `latent` codes) quantized on a sine, with its
/// normalization: a small real blob for codec tests and the fuzzers (`fuzz/`).
pub fn dense_blob(window: usize, latent: usize) -> (Blob, Normalization) {
    let encoder = FloatEncoder {
        channels: 1,
        window,
        layers: vec![FloatLayer::Dense {
            in_features: window,
            out_features: latent,
            weight: (0..window * latent).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect(),
            bias: (0..latent).map(|o| (o % 3) as f32 * 0.1 - 0.1).collect(),
            activation: Activation::Identity,
        }],
    };
    let normalization = Normalization { mean: vec![0.5], std: vec![2.0] };
    let calibration = Windows::new(window, (0..64 * window).map(|i| ((i as f32) * 0.37).sin() * 2.0).collect());
    let input = QuantizationInput {
        encoder: &encoder,
        normalization: &normalization,
        counts_per_unit: 100.0,
        calibration: &calibration,
        code_step: 1.0,
        trained_grid: false,
        dead_zone: 0.0,
        rate_weight: 0.0,
        windows_per_frame: 4,
    };
    (quantize(&input).expect("a valid encoder"), normalization)
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_shared::kernels::multiply_by_quantized_multiplier;
    use funnel_shared::stream::to_counts;

    /// The codes the tables are fitted to: each shifted copy of the windows in whole frames,
    /// then the windows themselves; a long training part gets fewer copies.
    #[test]
    fn the_tables_are_fitted_to_shifted_copies_in_whole_frames_then_the_windows() {
        let (blob, normalization) = dense_blob(16, 4);
        let (latent, per_frame) = (blob.latent(), 4);
        let series: Vec<f32> = (0..16 * 41).map(|i| ((i as f32) * 0.21).sin() * 1.5).collect();
        let windows = Windows::new(16, series.clone());
        let codes = fitting_codes(&blob, &normalization, &windows, per_frame).unwrap();
        // 7 copies of 40 windows (10 frames each), then the 41 windows.
        assert_eq!(codes.len(), (7 * 40 + 41) * latent);
        let own = device_codes(&blob, &normalization, &windows).unwrap();
        assert_eq!(&codes[7 * 40 * latent..], &own[..]);
        // The third copy starts 3/8 of a window (6 samples) later.
        let third = Windows::new(16, series[6..6 + 40 * 16].to_vec());
        let third = device_codes(&blob, &normalization, &third).unwrap();
        assert_eq!(&codes[2 * 40 * latent..3 * 40 * latent], &third[..]);
        // MAX_TABLE_WINDOWS / 2 windows: one shifted copy; one window more: none.
        let many = MAX_TABLE_WINDOWS / 2;
        let windows = Windows::new(16, (0..16 * (many + 1)).map(|i| ((i as f32) * 0.21).sin()).collect());
        let codes = fitting_codes(&blob, &normalization, &windows.slice(0..many), 1).unwrap();
        assert_eq!(codes.len(), (2 * many - 1) * latent);
        assert_eq!(fitting_codes(&blob, &normalization, &windows, 1).unwrap().len(), (many + 1) * latent);
    }

    #[test]
    fn multipliers_round_trip() {
        for m in [1e-9, 0.000123, 0.25, 0.5, 0.75, 0.999_999_999_9, 1.0, 3.7, 1000.0] {
            let (q, s) = quantize_multiplier(m).unwrap();
            let back = f64::from(q) * 2f64.powi(i32::from(s) - 31);
            assert!((back - m).abs() <= m * 1e-9, "{m}: {q} << {s} = {back}");
            assert!((1 << 30..=i32::MAX).contains(&q));
            // 1000 · m through the integer path.
            let y = multiply_by_quantized_multiplier(1000, q, s);
            assert!((f64::from(y) - 1000.0 * m).abs() <= 0.5 + 1e-9, "{m}: {y}");
        }
        assert_eq!(quantize_multiplier(0.0).unwrap(), (0, 0));
        assert!(quantize_multiplier(f64::NAN).is_err());
        assert!(quantize_multiplier(1e12).is_err());
    }

    #[test]
    fn activation_ranges_contain_zero() {
        let a = ActivationQuant::for_range(0.5, 2.0);
        assert_eq!(a.zero_point, -128);
        assert_eq!(a.quantize(0.0), -128);
        let b = ActivationQuant::for_range(-1.0, 1.0);
        assert!(b.dequantize(b.quantize(0.0)).abs() < 1e-12);
        assert_eq!(b.quantize(10.0), 127);
    }

    /// A random conv → dense encoder: the int8 encoder (shared crate, device arithmetic) must
    /// track the float encoder within a few quantization steps.
    #[test]
    fn int8_encoder_tracks_the_float_encoder() {
        let mut seed = 42u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let (channels, window) = (2, 32);
        let conv = FloatLayer::Conv1d {
            in_channels: 2,
            out_channels: 4,
            kernel: 5,
            stride: 2,
            padding: 2,
            in_len: 32,
            weight: (0..4 * 2 * 5).map(|_| rnd() * 0.5).collect(),
            bias: (0..4).map(|_| rnd() * 0.1).collect(),
            activation: Activation::Relu,
        };
        let dense = FloatLayer::Dense {
            in_features: 64,
            out_features: 6,
            weight: (0..64 * 6).map(|_| rnd() * 0.3).collect(),
            bias: (0..6).map(|_| rnd() * 0.1).collect(),
            activation: Activation::Identity,
        };
        let encoder = FloatEncoder { channels, window, layers: vec![conv, dense] };
        let normalization = Normalization { mean: vec![1.5, -0.25], std: vec![0.5, 2.0] };
        let cpu = 256.0f32;
        // Windows in original units, [C][T]: smooth waves with offsets near the means.
        let raw: Vec<f32> = (0..40)
            .flat_map(|w| {
                (0..channels * window).map(move |i| {
                    let (c, t) = (i / window, i % window);
                    let phase = (w * 7 + t) as f32 * 0.3 + c as f32;
                    if c == 0 {
                        1.5 + 0.8 * phase.sin()
                    } else {
                        -0.25 + 3.0 * phase.cos()
                    }
                })
            })
            .collect();
        let raw = Windows::new(channels * window, raw);
        let calibration = normalization.normalize(&raw);
        let blob = quantize(&QuantizationInput {
            encoder: &encoder,
            normalization: &normalization,
            counts_per_unit: cpu,
            calibration: &calibration,
            code_step: 1.0,
            trained_grid: false,
            dead_zone: 0.0,
            rate_weight: 0.0,
            windows_per_frame: 4,
        })
        .unwrap();
        let device = blob.encoder();
        let codes_q = device.spec().codes;
        let mut scratch = vec![0i16; device.scratch_len()];
        let mut codes = vec![0i16; 6];
        let mut worst = 0.0f64;
        let mut range = (f64::INFINITY, f64::NEG_INFINITY);
        for (w_raw, w_norm) in raw.iter().zip(calibration.iter()) {
            let samples: Vec<i16> = (0..window)
                .flat_map(|t| (0..channels).map(move |c| (t, c)))
                .map(|(t, c)| to_counts(w_raw[c * window + t], cpu))
                .collect();
            let report = device.encode(&samples, &mut scratch, &mut codes).unwrap();
            assert!(!report.input_saturated);
            for (z, &q) in encoder.forward(w_norm).iter().zip(&codes) {
                let zq = f64::from(codes_q.scale) * (f64::from(q) - f64::from(codes_q.zero_point));
                worst = worst.max((zq - f64::from(*z)).abs());
                range = (range.0.min(f64::from(*z)), range.1.max(f64::from(*z)));
            }
        }
        let step = (range.1 - range.0) / 255.0;
        assert!(worst < 4.0 * step, "int8 codes deviate by {worst}, code step {step}");
    }

    /// `encoder` quantized on its trained grid of step 1, at `counts_per_unit`.
    fn quantized_on_a_trained_grid(
        encoder: &FloatEncoder,
        normalization: &Normalization,
        counts_per_unit: f32,
        calibration: &Windows,
    ) -> Blob {
        quantize(&QuantizationInput {
            encoder,
            normalization,
            counts_per_unit,
            calibration,
            code_step: 1.0,
            trained_grid: true,
            dead_zone: 0.0,
            rate_weight: 0.0,
            windows_per_frame: 4,
        })
        .unwrap()
    }

    /// The device's input for `counts` (less the channel's offset) on channel `c` of `blob`.
    fn device_input(blob: &Blob, c: usize, counts: i32) -> i32 {
        let requant = blob.encoder().spec().input.requant;
        multiply_by_quantized_multiplier(counts, requant.multipliers.get(c), requant.shifts.get(c))
    }

    /// Every count reaches the network exactly: the channel of the largest σ passes its counts
    /// unchanged, a quieter one is scaled by a power of two, the rest of each channel's scaling
    /// moved into the first layer's weights on it. The device's codes still follow the float
    /// encoder's.
    #[test]
    fn every_count_reaches_the_network_exactly() {
        assert_eq!(exact_input_multiplier(1.0), 1.0);
        assert_eq!(exact_input_multiplier(1.7), 1.0);
        assert_eq!(exact_input_multiplier(100.0), 64.0);
        let window = 4;
        // Output o reads sample o of channel 0 and of channel 1, both weighted 1.
        let encoder = FloatEncoder {
            channels: 2,
            window,
            layers: vec![FloatLayer::Dense {
                in_features: 2 * window,
                out_features: window,
                weight: (0..window * 2 * window)
                    .map(|i| f32::from(i % (2 * window) % window == i / (2 * window)))
                    .collect(),
                bias: vec![0.0; window],
                activation: Activation::Identity,
            }],
        };
        // Channel 0: steps of 1/10 over ±2 σ of 1; channel 1: steps of 1/10 over ±150 σ of 100:
        // channel 1 (10 counts per unit, σ 1,000 counts) passes as it is, channel 0 (σ 10 counts)
        // is multiplied by 64, its weights by the 100/64 left.
        let normalization = Normalization { mean: vec![0.0, 0.0], std: vec![1.0, 100.0] };
        let cpu = 10.0f32;
        let raw: Vec<f32> = (0..64)
            .flat_map(|w| {
                (0..2 * window).map(move |i| {
                    let phase = (w * window + i % window) as f32 * 0.37;
                    let (amplitude, c) = if i < window { (2.0, 0) } else { (150.0, 1) };
                    (amplitude * (phase + c as f32).sin() * cpu).round() / cpu
                })
            })
            .collect();
        let raw = Windows::new(2 * window, raw);
        let calibration = normalization.normalize(&raw);
        let blob = quantized_on_a_trained_grid(&encoder, &normalization, cpu, &calibration);
        let input = |c: usize, counts: i32| device_input(&blob, c, counts);
        for counts in -40..=40 {
            assert_eq!(input(0, counts), 64 * counts, "channel 0, {counts} counts");
            assert_eq!(input(1, counts), counts, "channel 1, {counts} counts");
        }
        // Output o is u₀ + u₁ (normalized samples o of both channels), its code the rounding of
        // it: the device's arithmetic (the weights' rounding) moves it by far less than the
        // 1.56× a misplaced leftover scaling would.
        let codes = device_codes(&blob, &normalization, &calibration).unwrap();
        for (w, c) in calibration.iter().zip(codes.chunks(window)) {
            for (z, &code) in encoder.forward(w).iter().zip(c) {
                assert!((f64::from(*z) - f64::from(code)).abs() <= 0.51, "{z} → {code}");
            }
        }
    }

    /// A channel constant over the training part (the normalization's stand-in σ of 1, in the
    /// recording's units) does not set the input's scale: the varying channel beside it, of σ
    /// 0.01, still passes its counts exactly.
    #[test]
    fn a_constant_channel_does_not_set_the_input_scale() {
        let window = 4;
        let encoder = FloatEncoder {
            channels: 2,
            window,
            layers: vec![FloatLayer::Dense {
                in_features: 2 * window,
                out_features: 2,
                weight: (0..4 * window).map(|i| ((i * 5 % 7) as f32 - 3.0) / 4.0).collect(),
                bias: vec![0.0; 2],
                activation: Activation::Identity,
            }],
        };
        let normalization = Normalization { mean: vec![0.0, 5.0], std: vec![0.01, 1.0] };
        // Channel 0 varies (normalized within ±2), channel 1 is its mean throughout (0).
        let calibration = Windows::new(
            2 * window,
            (0..32 * 2 * window)
                .map(|i| if i % (2 * window) < window { 2.0 * ((i as f32) * 0.37).sin() } else { 0.0 })
                .collect(),
        );
        let blob = quantized_on_a_trained_grid(&encoder, &normalization, 1000.0, &calibration);
        for counts in [-30, -1, 0, 1, 17, 30] {
            assert_eq!(device_input(&blob, 0, counts), counts, "channel 0, {counts} counts");
        }
    }

    /// A network trained for a rate: its outputs are the codes on a grid of step 1, so the device
    /// codes are `round(z / step)` with zero point 0, however narrow the calibrated range.
    #[test]
    fn a_trained_grid_keeps_its_step_and_a_zero_point_of_zero() {
        let window = 8;
        let encoder = FloatEncoder {
            channels: 1,
            window,
            layers: vec![FloatLayer::Dense {
                in_features: window,
                out_features: 2,
                weight: (0..2 * window).map(|i| if i < window { 4.0 } else { -1.5 }).collect(),
                bias: vec![0.3, 2.0],
                activation: Activation::Identity,
            }],
        };
        let normalization = Normalization { mean: vec![0.0], std: vec![1.0] };
        // Noise, so that no code is predicted from the windows before (see `rate_dead_zones`).
        let noise = |i: u64| {
            // splitmix64
            let z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % 2000) as f32 / 1000.0 - 1.0
        };
        let calibration = Windows::new(window, (0..40 * window as u64).map(noise).collect());
        let input = |code_step: f64, dead_zone: f64, rate_weight: f64| QuantizationInput {
            encoder: &encoder,
            normalization: &normalization,
            counts_per_unit: 1000.0,
            calibration: &calibration,
            code_step,
            trained_grid: true,
            dead_zone,
            rate_weight,
            windows_per_frame: 4,
        };
        let roundings = [(MIN_TRAINED_GRID_STEP, 0.0, 0.0), (1.0, 0.0, 0.0), (3.0, 0.0, 0.0), (1.0, 0.25, 0.0)];
        for (step, dead_zone, rate_weight) in
            roundings.into_iter().chain([(3.0, 0.4, 0.0), (1.0, 0.0, 0.2), (3.0, 0.1, 0.5)])
        {
            let blob = quantize(&input(step, dead_zone, rate_weight)).unwrap();
            assert_eq!((blob.dequantize(0), blob.dequantize(1)), (0.0, step as f32));
            // One dead zone for both codes, or each its own from what its nonzero values cost.
            let zones = match code_dead_zones(&blob) {
                zones if zones.is_empty() => vec![0.0; 2],
                zones => zones,
            };
            let within = |z: f64| (z - dead_zone).abs() < 0.5 / 256.0;
            match rate_weight {
                0.0 => assert!(zones.iter().all(|&z| within(z)), "{zones:?}"),
                _ => assert!(
                    zones.iter().all(|&z| z > dead_zone - 0.5 / 256.0 && z < MAX_RATE_DEAD_ZONE + 0.5 / 256.0)
                        && !zones.iter().all(|&z| within(z)),
                    "{zones:?}"
                ),
            }
            let codes = device_codes(&blob, &normalization, &calibration).unwrap();
            let mut off = 0;
            for (w, c) in calibration.iter().zip(codes.chunks(2)) {
                for ((z, &code), zone) in encoder.forward(w).iter().zip(c).zip(&zones) {
                    let v = f64::from(*z) / step;
                    // The dead zone moves every rounding threshold away from zero.
                    let want = (v.abs() + 0.5 - zone).floor() * v.signum();
                    assert!((want - f64::from(code)).abs() <= 1.0, "step {step}: z {z} → {code}, want {want}");
                    off += usize::from(want != f64::from(code));
                }
            }
            assert!(off * 20 < codes.len(), "step {step}: {off} of {} codes off by one", codes.len());
        }
        // A trained grid goes finer than its step 1 down to MIN_TRAINED_GRID_STEP, no further;
        // a dead zone stays below half a step, and needs the trained grid.
        let e = quantize(&input(0.25, 0.0, 0.0));
        assert!(e.unwrap_err().to_string().contains("between 0.5 and 127"));
        let e = quantize(&input(1.0, 0.5, 0.0));
        assert!(e.unwrap_err().to_string().contains("dead zone"));
        let e = quantize(&input(1.0, 0.0, -0.1));
        assert!(e.unwrap_err().to_string().contains("rate weight"));
        let e = quantize(&QuantizationInput { trained_grid: false, ..input(1.0, 0.25, 0.0) });
        assert!(e.unwrap_err().to_string().contains("dead zone"));
        let e = quantize(&QuantizationInput { trained_grid: false, ..input(1.0, 0.0, 0.1) });
        assert!(e.unwrap_err().to_string().contains("dead zone"));
    }

    /// The layer that makes the codes gets i16 weights, summed in 64 bits where its sums need
    /// them (any i16 weight on the 16-bit input, over 8 taps or 256); int8 weights on int8
    /// activations keep the 32-bit accumulator, on the input not past 516 taps.
    #[test]
    fn each_layer_sums_in_the_narrowest_accumulator_that_holds_its_sums() {
        for window in [8, 256] {
            let (blob, _) = dense_blob(window, 2);
            let encoder = blob.encoder();
            let Layer::Dense { q, .. } = &encoder.spec().layers[0] else { panic!("a dense layer") };
            assert!(matches!(q.weights, Weights::Int16(_)), "window {window}: i16 weights");
            assert_eq!(q.weights.max_abs(), 32767, "window {window}: all 16 bits");
            assert_eq!(q.accumulator, AccumulatorWidth::Bits64, "window {window}");
        }
        let hidden = FloatLayer::Dense {
            in_features: 1024,
            out_features: 2,
            weight: vec![0.5; 2048],
            bias: vec![0.0; 2],
            activation: Activation::Relu,
        };
        let act = ActivationQuant { scale: 0.01, zero_point: -128 };
        // 1024 × 127 × 255 < 2^31.
        let layer = quantize_layer(&hidden, act, act, 255.0, 8).unwrap();
        assert_eq!(layer.accumulator, AccumulatorWidth::Bits32);
        // The same layer on the input: 1024 × 127 × 32767 > 2^31.
        let layer = quantize_layer(&hidden, act, act, f64::from(INPUT_LIMIT), 8).unwrap();
        assert_eq!(layer.accumulator, AccumulatorWidth::Bits64);
    }

    #[test]
    fn a_blob_whose_id_is_not_its_payload_hash_is_refused() {
        let (blob, _) = dense_blob(8, 2);
        // Change one weight and repair the CRC: the format check passes, the id check does not.
        let e = Blob::from_bytes(with_one_weight_changed(&blob, false)).unwrap_err();
        assert!(matches!(e, funnel_artifacts::blob::BlobCheckError::IdMismatch { .. }), "{e}");
        assert!(e.to_string().contains(&blob.model_id().to_string()), "{e}");
    }
}
