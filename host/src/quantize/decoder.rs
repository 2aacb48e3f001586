//! The integer decoder of a float decoder (`funnel_shared::decoder`), added to a quantized
//! model's blob: the same scheme as the encoder's (symmetric per-output weights, int32 biases,
//! int8 hidden activations calibrated on the training windows), its input the device's own
//! codes of those windows, its last layer i16 with as many weight bits as the accumulator
//! allows, and an output stage per channel that folds the normalization and the counts per
//! unit into one fixed-point multiplier and an offset.

use anyhow::{bail, ensure, Context, Result};
use funnel_artifacts::blob::model_id_of;
use funnel_artifacts::data::{Normalization, Windows};
use funnel_artifacts::net::{Activation, FloatLayer, NetLayer};
use funnel_artifacts::Blob;
use funnel_shared::blob::{
    write_blob, DecoderSpec, EncoderSpec, I32s, I8s, ModelBlob, OutputQuant, RequantParams, U8s,
};

use super::{
    blob_layers, device_codes, le_bytes, quantize_layer, quantize_multiplier, ActivationQuant, MAX_WEIGHT_BITS,
};

/// How far past the calibrated extremes the last layer's i16 output reaches before it
/// saturates (at 2, a window's values still resolve in 14 bits).
const OUTPUT_HEADROOM: f64 = 2.0;

/// The weighted layers of `decoder`; shape steps that keep the layout vanish. Upsampling has
/// no integer kernel yet: a `conv` model's decoder is refused.
fn weighted_layers(decoder: &[NetLayer]) -> Result<Vec<FloatLayer>> {
    let mut layers = Vec::new();
    for layer in decoder {
        match layer {
            NetLayer::Weighted(l) => layers.push(l.clone()),
            NetLayer::Reshape { .. } | NetLayer::Flatten => {}
            NetLayer::Upsample2 { .. } => {
                bail!("the integer decoder runs dense decoders (the transform and mlp architectures); this decoder upsamples")
            }
        }
    }
    ensure!(!layers.is_empty(), "the decoder has no layers");
    Ok(layers)
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
    let layers = weighted_layers(decoder)?;
    let parsed = ModelBlob::parse(blob.bytes()).expect("a Blob parses");
    let encoder = &parsed.spec;
    let (channels, window) = (usize::from(encoder.channels), usize::from(encoder.window));
    ensure!(
        layers[0].input_len() == encoder.code_len()
            && layers.last().map(FloatLayer::output_len) == Some(channels * window),
        "the decoder does not map this blob's {} codes to its {channels} × {window} window",
        encoder.code_len()
    );
    let codes_q = ActivationQuant { scale: f64::from(encoder.codes.scale), zero_point: encoder.codes.zero_point };

    // Calibration: every layer's output range over the decoded codes of the training windows.
    let codes = device_codes(blob, normalization, calibration)?;
    let mut ranges = vec![(f64::INFINITY, f64::NEG_INFINITY); layers.len()];
    for window_codes in codes.chunks_exact(encoder.code_len()) {
        let mut x: Vec<f32> = window_codes.iter().map(|&c| blob.dequantize(c)).collect();
        for (layer, range) in layers.iter().zip(&mut ranges) {
            x = layer.forward(&x);
            for &v in &x {
                *range = (range.0.min(f64::from(v)), range.1.max(f64::from(v)));
            }
        }
    }
    ensure!(ranges.iter().all(|r| r.0.is_finite() && r.1.is_finite()), "no finite decoder outputs to calibrate on");

    let mut owned = Vec::with_capacity(layers.len());
    let mut s_in = codes_q;
    // A code may be any i16.
    let mut input_magnitude = f64::from(i16::MAX) + 1.0 + f64::from(codes_q.zero_point).abs();
    for (i, (layer, &(min, max))) in layers.iter().zip(&ranges).enumerate() {
        let last = i + 1 == layers.len();
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
        let bits = if last { MAX_WEIGHT_BITS } else { 8 };
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
        layers: blob_layers(&layers, &owned)?,
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

    /// The integer decoder of a random transform and MLP network rebuilds, in counts, what the
    /// float decoder rebuilds from the same device codes, within a small fraction of the
    /// signal's range; a conv decoder is refused by name.
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
        for arch in [Arch::Transform, Arch::Mlp] {
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
        let conv = random_net(&ModelSpec::new(Arch::Conv, 1, 32, 8).unwrap(), 1);
        let e = weighted_layers(&conv.decoder).unwrap_err().to_string();
        assert!(e.contains("upsamples"), "{e}");
    }
}
