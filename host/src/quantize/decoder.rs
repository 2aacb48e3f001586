//! The integer decoder of a float decoder (`funnel_shared::decoder`), added to a quantized
//! model's blob: the same scheme as the encoder's (symmetric per-output weights, int32 biases,
//! int8 hidden activations calibrated on the training windows), its input the device's own
//! codes of those windows, its last layer i16 with as many weight bits as the accumulator
//! allows, and an output stage per channel that folds the normalization and the counts per
//! unit into one fixed-point multiplier and an offset. A conv decoder's nearest-neighbour
//! upsamplings go into the convolutions after them (`UpsampledConv1d`): upsampling keeps the
//! quantization.

use anyhow::{ensure, Context, Result};
use funnel_artifacts::blob::model_id_of;
use funnel_artifacts::data::{Normalization, Windows};
use funnel_artifacts::net::{Activation, FloatLayer, NetLayer};
use funnel_artifacts::Blob;
use funnel_shared::blob::{
    write_blob, DecoderSpec, EncoderSpec, I32s, I8s, ModelBlob, OutputQuant, RequantParams, U8s,
};

use super::{
    blob_layers, device_codes, le_bytes, quantize_layer, quantize_multiplier, ActivationQuant, WIDE_WEIGHT_BITS,
};

/// How far past the calibrated extremes the last layer's i16 output reaches before it
/// saturates (at 2, a window's values still resolve in 14 bits).
const OUTPUT_HEADROOM: f64 = 2.0;

/// A weighted layer of a float decoder, and whether an upsampling comes before it (the
/// blob's `UpsampledConv1d`).
struct DecoderStep {
    layer: FloatLayer,
    upsampled: bool,
}

impl DecoderStep {
    /// The float step on one window's values `x`.
    fn forward(&self, x: Vec<f32>) -> Vec<f32> {
        match self.upsampled {
            true => self.layer.forward(&x.iter().flat_map(|&v| [v, v]).collect::<Vec<_>>()),
            false => self.layer.forward(&x),
        }
    }
}

/// The weighted layers of `decoder`, each with the upsampling before it; shape steps that keep
/// the layout vanish.
fn decoder_steps(decoder: &[NetLayer]) -> Result<Vec<DecoderStep>> {
    let mut steps = Vec::new();
    let mut upsampled = false;
    for layer in decoder {
        match layer {
            NetLayer::Weighted(l) => {
                ensure!(
                    !upsampled || matches!(l, FloatLayer::Conv1d { .. }),
                    "the integer decoder upsamples before convolutions only; this decoder upsamples before a dense layer"
                );
                steps.push(DecoderStep { layer: l.clone(), upsampled });
                upsampled = false;
            }
            NetLayer::Reshape { .. } | NetLayer::Flatten => {}
            NetLayer::Upsample2 { .. } => {
                ensure!(!upsampled, "the integer decoder upsamples once before a convolution; this decoder twice");
                upsampled = true;
            }
        }
    }
    ensure!(!upsampled, "the decoder ends with an upsampling, which the integer decoder has no layer for");
    ensure!(!steps.is_empty(), "the decoder has no layers");
    Ok(steps)
}

/// `blob` with the integer decoder of `decoder` (the float decoder tuned to `blob`'s codes),
/// calibrated on the codes `blob`'s encoder makes of `calibration` (normalized `[C][T]`
/// training windows).
pub fn with_decoder(
    blob: &Blob,
    decoder: &[NetLayer],
    normalization: &Normalization,
    calibration: &Windows,
) -> Result<Blob> {
    let steps = decoder_steps(decoder)?;
    let parsed = ModelBlob::parse(blob.bytes()).expect("a Blob parses");
    let encoder = &parsed.spec;
    let (channels, window) = (usize::from(encoder.channels), usize::from(encoder.window));
    ensure!(
        steps[0].layer.input_len() == encoder.code_len()
            && steps.last().map(|s| s.layer.output_len()) == Some(channels * window),
        "the decoder does not map this blob's {} codes to its {channels} × {window} window",
        encoder.code_len()
    );
    let codes_q = ActivationQuant { scale: f64::from(encoder.codes.scale), zero_point: encoder.codes.zero_point };

    // Calibration: every layer's output range over the decoded codes of the training windows.
    let codes = device_codes(blob, normalization, calibration)?;
    let mut ranges = vec![(f64::INFINITY, f64::NEG_INFINITY); steps.len()];
    for window_codes in codes.chunks_exact(encoder.code_len()) {
        let mut x: Vec<f32> = window_codes.iter().map(|&c| blob.dequantize(c)).collect();
        for (step, range) in steps.iter().zip(&mut ranges) {
            x = step.forward(x);
            for &v in &x {
                *range = (range.0.min(f64::from(v)), range.1.max(f64::from(v)));
            }
        }
    }
    ensure!(ranges.iter().all(|r| r.0.is_finite() && r.1.is_finite()), "no finite decoder outputs to calibrate on");

    let mut owned = Vec::with_capacity(steps.len());
    let mut s_in = codes_q;
    // A code may be any i16.
    let mut input_magnitude = f64::from(i16::MAX) + 1.0 + f64::from(codes_q.zero_point).abs();
    for (i, (step, &(min, max))) in steps.iter().zip(&ranges).enumerate() {
        let (layer, last) = (&step.layer, i + 1 == steps.len());
        let out_q = match last {
            true => {
                let largest = min.abs().max(max.abs()) * OUTPUT_HEADROOM;
                ActivationQuant {
                    scale: if largest > 0.0 { largest / f64::from(i16::MAX) } else { 1.0 },
                    zero_point: 0,
                }
            }
            false => ActivationQuant::for_range(if layer.activation() == Activation::Relu { 0.0 } else { min }, max),
        };
        let bits = if last { WIDE_WEIGHT_BITS } else { 8 };
        owned.push(quantize_layer(layer, s_in, out_q, input_magnitude, bits)?);
        s_in = out_q;
        input_magnitude = 255.0;
    }

    // Output: counts = (value · std + mean) · cpu, value = s_out · q.
    let cpu = f64::from(encoder.counts_per_unit);
    let (mut offsets, mut multipliers, mut shifts) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..channels {
        let (mean, std) = (f64::from(normalization.mean[c]), f64::from(normalization.std[c]));
        let offset = (mean * cpu).round();
        ensure!(offset.abs() < f64::from(i32::MAX), "channel {c}: mean {mean} is out of the device's range");
        offsets.push(offset as i32);
        let (m, s) = quantize_multiplier(s_in.scale * std * cpu)?;
        multipliers.push(m);
        shifts.push(s as u8);
    }
    let (offsets, multipliers) = (le_bytes(&offsets), le_bytes(&multipliers));
    let decoder = DecoderSpec {
        layers: blob_layers(steps.iter().map(|s| (&s.layer, s.upsampled)), &owned)?,
        output: OutputQuant {
            offsets: I32s::new(&offsets).expect("4 bytes per offset"),
            requant: RequantParams {
                multipliers: I32s::new(&multipliers).expect("4 bytes per multiplier"),
                shifts: I8s::new(&shifts),
            },
        },
    };
    let weights: usize = owned.iter().map(|o| o.weights.len() + 3 * o.bias.len() + 64).sum();
    let mut bytes = vec![0u8; weights + 16 * channels + 64];
    let len = decoder.write(&mut bytes).context("cannot serialize the integer decoder")?;
    bytes.truncate(len);
    let spec = EncoderSpec { decoder: Some(U8s::new(&bytes).expect("bytes")), ..parsed.spec.clone() };
    let mut buf = vec![0u8; blob.len() + bytes.len() + 64];
    let len = write_blob(&spec, &mut buf, model_id_of).context("cannot write the model blob with its decoder")?;
    buf.truncate(len);
    Ok(Blob::from_bytes(buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::random_net;
    use crate::quantize::{quantize, QuantizationInput};
    use funnel_artifacts::spec::{Arch, ModelSpec};

    /// The integer decoder of a random transform, MLP and conv network (its upsamplings in
    /// the blob's upsampled convolutions) rebuilds, in counts, what the float decoder rebuilds
    /// from the same device codes, within a small fraction of the signal's range.
    #[test]
    fn the_integer_decoder_tracks_the_float_decoder() {
        let (channels, window, cpu) = (2, 16, 200.0f32);
        let normalization = Normalization { mean: vec![1.5, -40.0], std: vec![0.5, 20.0] };
        let raw: Vec<f32> = (0..64)
            .flat_map(|w| {
                (0..channels * window).map(move |i| {
                    let (c, t) = (i / window, i % window);
                    let phase = (w * 5 + t) as f32 * 0.2;
                    if c == 0 {
                        1.5 + 0.7 * phase.sin()
                    } else {
                        -40.0 + 25.0 * (0.7 * phase).cos()
                    }
                })
            })
            .collect();
        let raw = Windows::new(channels * window, raw);
        let calibration = normalization.normalize(&raw);
        for arch in [Arch::Transform, Arch::Mlp, Arch::Conv] {
            let spec = ModelSpec::new(arch, channels, window, 8).unwrap();
            let net = random_net(&spec, 7);
            let blob = quantize(&QuantizationInput {
                encoder: &net.float_encoder(),
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
            let blob = with_decoder(&blob, &net.decoder, &normalization, &calibration).unwrap();
            let encoder = blob.encoder();
            let decoder = encoder.decoder().expect("the blob has its decoder");
            let codes = device_codes(&blob, &normalization, &calibration).unwrap();
            let mut scratch = vec![0i16; decoder.scratch_len()];
            let mut counts = vec![0i16; channels * window];
            let (mut worst, mut spread) = (0.0f64, (f64::INFINITY, f64::NEG_INFINITY));
            for window_codes in codes.chunks_exact(8) {
                decoder.decode(window_codes, &mut scratch, &mut counts).unwrap();
                let latent: Vec<f32> = window_codes.iter().map(|&c| blob.dequantize(c)).collect();
                let mut float = net.decode(&latent);
                normalization.denormalize_in_place(&mut float);
                for (i, &x) in counts.iter().enumerate() {
                    let (t, c) = (i / channels, i % channels);
                    let expected = f64::from(float[c * window + t]) * f64::from(cpu);
                    worst = worst.max((f64::from(x) - expected).abs() / f64::from(normalization.std[c]));
                    spread = (spread.0.min(expected), spread.1.max(expected));
                }
            }
            // In counts per unit of standard deviation (200 here): int8 hidden activations
            // put the output within 2 % of a standard deviation (measured: 1.2 % and 0.9 %).
            assert!(worst < 0.02 * f64::from(cpu), "{arch}: {worst} counts per std off the float decoder");
            assert!(spread.1 - spread.0 > 100.0, "{arch}: the float decoder's output barely varies: {spread:?}");
        }
    }
}
