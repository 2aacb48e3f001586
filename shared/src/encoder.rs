//! The whole quantized encoder: one window of i16 samples in, i16 latent codes out (the input
//! the device's counts at 16 bits, hidden activations int8; int8 weights, i16 where the codes
//! are made).

use crate::blob::{AccumulatorWidth, BlobError, EncoderSpec, Layer, ModelBlob, U8s};
use crate::decoder::QuantizedDecoder;
use crate::kernels::{
    conv1d, dense, multiply_by_quantized_multiplier, Accumulator, Requantize, CODE_RANGE, INPUT_LIMIT, INT8_RANGE,
};
use crate::wire::ModelId;

/// Why [`QuantizedEncoder::encode`] refused its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// `samples` is not `window × channels` long.
    WindowLength { expected: usize, found: usize },
    /// `scratch` is shorter than [`QuantizedEncoder::scratch_len`].
    ScratchTooSmall { needed: usize, found: usize },
    /// `codes` is not [`QuantizedEncoder::code_len`] long.
    CodesLength { expected: usize, found: usize },
    /// The partial window that ends a stream has as many samples as a window, or more.
    PartialWindow { samples: usize, window: usize },
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::WindowLength { expected, found } => {
                write!(f, "window has {found} samples, the model takes {expected}")
            }
            EncodeError::ScratchTooSmall { needed, found } => {
                write!(f, "scratch has {found} entries, the model needs {needed}")
            }
            EncodeError::CodesLength { expected, found } => {
                write!(f, "codes buffer has {found} entries, the model emits {expected}")
            }
            EncodeError::PartialWindow { samples, window } => {
                write!(f, "the partial window that ends a stream has {samples} samples, fewer than {window} expected")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// What [`QuantizedEncoder::encode`] observed besides the codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeReport {
    /// Some input sample was clamped: beyond the input's range (32,767 counts from the training
    /// mean), or at either end of i16, where the conversion to counts clips.
    pub input_saturated: bool,
}

/// A validated int8 encoder borrowing its parameters from a model blob.
#[derive(Clone, Debug)]
pub struct QuantizedEncoder<'a> {
    blob: ModelBlob<'a>,
}

impl<'a> QuantizedEncoder<'a> {
    /// Validates `blob` (see [`ModelBlob::parse`]).
    // Never inlined: parsing takes kilobytes of stack, which would otherwise stay in the frame
    // of the caller (a device's start-up) beside what it builds from the encoder.
    #[inline(never)]
    pub fn from_blob(blob: &'a [u8]) -> Result<Self, BlobError> {
        ModelBlob::parse(blob).map(|blob| QuantizedEncoder { blob })
    }

    pub fn model_id(&self) -> ModelId {
        self.blob.model_id
    }

    pub fn spec(&self) -> &EncoderSpec<'a> {
        &self.blob.spec
    }

    /// Samples per window per channel.
    pub fn window(&self) -> usize {
        self.blob.spec.window.into()
    }

    pub fn channels(&self) -> usize {
        self.blob.spec.channels.into()
    }

    pub fn code_len(&self) -> usize {
        self.blob.spec.code_len()
    }

    /// i16 scratch a stream of this model needs: the encoder's, and in a bounded stream that
    /// sends codes a window more and room for the integer decoder too.
    pub fn scratch_len(&self) -> usize {
        let spec = &self.blob.spec;
        match (spec.residual.is_some(), self.decoder()) {
            (true, Some(decoder)) => spec.input_len() + spec.scratch_len().max(decoder.scratch_len()),
            _ => spec.scratch_len(),
        }
    }

    /// The model's integer decoder, if its blob has one.
    pub fn decoder(&self) -> Option<QuantizedDecoder<'_, 'a>> {
        QuantizedDecoder::of(&self.blob.spec)
    }

    /// Encodes one window. `samples` is `[T][C]`, interleaved as sampled; `codes` receives
    /// [`Self::code_len`] codes. Never panics for any sample values: out-of-range inputs
    /// saturate and are reported.
    pub fn encode(&self, samples: &[i16], scratch: &mut [i16], codes: &mut [i16]) -> Result<EncodeReport, EncodeError> {
        let spec = &self.blob.spec;
        let (channels, window) = (self.channels(), self.window());
        if samples.len() != channels * window {
            return Err(EncodeError::WindowLength { expected: channels * window, found: samples.len() });
        }
        let needed = spec.scratch_len();
        if scratch.len() < needed {
            return Err(EncodeError::ScratchTooSmall { needed, found: scratch.len() });
        }
        if codes.len() != self.code_len() {
            return Err(EncodeError::CodesLength { expected: self.code_len(), found: codes.len() });
        }
        // Ping-pong buffers: `a` holds the input of the layer to run, `b` receives its output
        // (the last layer writes into `codes`). A single layer needs no `b`.
        let act = spec.max_activation_len();
        let (a, b) = scratch[..needed].split_at_mut(act.min(needed));
        let report = quantize_input(spec, samples, &mut a[..channels * window]);
        run_layers(&spec.layers, a, b, channels * window, spec.codes.dead_zones, codes);
        Ok(report)
    }
}

/// Runs `layers` on the `len` values at the start of `a`: hidden layers' int8 outputs
/// ping-pong between `a` and `b` (each at least as long as the largest), the last layer's i16
/// output ([`CODE_RANGE`], rounded with `dead_zones`, empty or one per output channel) goes to
/// `output`.
pub(crate) fn run_layers<'b>(
    layers: &[Layer<'_>],
    mut a: &'b mut [i16],
    mut b: &'b mut [i16],
    mut len: usize,
    dead_zones: U8s<'_>,
    output: &mut [i16],
) {
    let end = layers.len().saturating_sub(1);
    for (i, layer) in layers.iter().enumerate() {
        let q = layer.quant();
        let range = if i == end { CODE_RANGE } else { INT8_RANGE };
        let mut requant = Requantize::new(q.requant.multipliers, q.requant.shifts, q.output_zero_point, q.relu, range);
        if i == end {
            requant = requant.with_dead_zones(dead_zones);
        }
        if layer.upsamples() {
            upsample2(&a[..len], &mut b[..2 * len]);
            core::mem::swap(&mut a, &mut b);
            len *= 2;
        }
        let out_len = layer.output_len().unwrap_or(0);
        let out = if i == end { &mut output[..] } else { &mut b[..out_len] };
        let input = &a[..len];
        match q.accumulator {
            AccumulatorWidth::Bits32 => run_layer::<i32>(layer, &requant, input, out),
            AccumulatorWidth::Bits64 => run_layer::<i64>(layer, &requant, input, out),
        }
        core::mem::swap(&mut a, &mut b);
        len = out_len;
    }
}

/// Runs one layer's kernel on `input`, summing in `A`.
fn run_layer<A: Accumulator>(layer: &Layer<'_>, requant: &Requantize<'_>, input: &[i16], out: &mut [i16]) {
    match layer {
        Layer::Dense { q, .. } => dense::<A>(q.weights, q.bias, q.input_zero_point, requant, input, out),
        Layer::Conv1d { q, .. } | Layer::UpsampledConv1d { q, .. } => {
            let shape = layer.conv_shape().expect("conv layer has a shape");
            conv1d::<A>(&shape, q.weights, q.bias, q.input_zero_point, requant, input, out)
        }
    }
}

/// Nearest-neighbour ×2 upsampling of `[C][T]` `input` into `[C][2T]` `output`: channel-major,
/// that is each value twice in turn. Exact on quantized values, which keep their scale and
/// zero point.
fn upsample2(input: &[i16], output: &mut [i16]) {
    for (x, u) in input.iter().zip(output.chunks_exact_mut(2)) {
        u.fill(*x);
    }
}

/// Normalizes and quantizes `[T][C]` i16 samples into the channels-first input `[C][T]`,
/// within ±[`INPUT_LIMIT`].
fn quantize_input(spec: &EncoderSpec<'_>, samples: &[i16], out: &mut [i16]) -> EncodeReport {
    let channels = usize::from(spec.channels);
    let window = usize::from(spec.window);
    let input = &spec.input;
    let mut saturated = false;
    for c in 0..channels {
        let offset = input.offsets.get(c);
        let (m, s) = (input.requant.multipliers.get(c), input.requant.shifts.get(c));
        for t in 0..window {
            let sample = samples[t * channels + c];
            let x = i32::from(sample).saturating_sub(offset);
            let q = multiply_by_quantized_multiplier(x, m, s);
            // A count at either end of i16 was clipped by the conversion to counts (or the ADC).
            saturated |= !(-INPUT_LIMIT..=INPUT_LIMIT).contains(&q) || sample == i16::MIN || sample == i16::MAX;
            // Within ±INPUT_LIMIT, so inside i16.
            out[c * window + t] = q.clamp(-INPUT_LIMIT, INPUT_LIMIT) as i16;
        }
    }
    EncodeReport { input_saturated: saturated }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use crate::blob::*;
    use crate::kernels::tests::Params;
    use crate::wire::ModelId;
    use std::vec::Vec;

    /// A tiny two-channel conv → dense encoder with hand-picked parameters.
    pub(crate) struct TinyModel {
        input: Params,
        offsets: Vec<u8>,
        conv: Params,
        dense: Params,
    }

    impl TinyModel {
        pub(crate) fn new() -> Self {
            TinyModel {
                // Channel 0: (x − 100) · 2 (the extreme counts saturate); channel 1: (x + 20) · 0.25.
                input: Params::new(&[], &[], &[1 << 30, 1 << 30], &[2, -1]),
                offsets: [100i32, -20].iter().flat_map(|v| v.to_le_bytes()).collect(),
                // 2 in channels → 3 out channels, kernel 3, stride 2, padding 1, length 8 → 4.
                conv: Params::new(
                    &(0..18).map(|i| (i as i8 - 9) * 7).collect::<Vec<_>>(),
                    &[10, -20, 30],
                    &[1 << 30, 1_500_000_000, 2_000_000_000],
                    &[-6, -7, -8],
                ),
                dense: Params::new(
                    &(0..24).map(|i| ((i * 37) % 255) as i8).collect::<Vec<_>>(),
                    &[5, -5],
                    &[1_200_000_000, 1_800_000_000],
                    &[-8, -9],
                ),
            }
        }

        pub(crate) fn spec(&self) -> EncoderSpec<'_> {
            // The conv's weights are int8, the dense layer's (the codes') i16: both kernels.
            let mut layers = heapless::Vec::new();
            layers
                .push(Layer::Conv1d {
                    in_channels: 2,
                    out_channels: 3,
                    in_len: 8,
                    kernel: 3,
                    stride: 2,
                    padding: 1,
                    q: self.conv.quant_layer(0, -128, true, false),
                })
                .unwrap();
            layers
                .push(Layer::Dense {
                    in_features: 12,
                    out_features: 2,
                    q: self.dense.quant_layer(-128, 4, false, true),
                })
                .unwrap();
            EncoderSpec {
                window: 8,
                channels: 2,
                counts_per_unit: 200.0,
                input: InputQuant {
                    offsets: I32s::new(&self.offsets).unwrap(),
                    requant: RequantParams {
                        multipliers: I32s::new(&self.input.multipliers).unwrap(),
                        shifts: I8s::new(&self.input.shifts),
                    },
                },
                layers,
                codes: CodeQuant { scale: 0.05, zero_point: 4, dead_zones: U8s::EMPTY },
                tables: None,
                residual: None,
                decoder: None,
            }
        }
    }

    pub(crate) fn blob_bytes(spec: &EncoderSpec<'_>) -> Vec<u8> {
        let mut buf = std::vec![0u8; 4096];
        let n = write_blob(spec, &mut buf, |_| ModelId([1, 2, 3, 4])).unwrap();
        buf.truncate(n);
        buf
    }

    /// The blob of [`TinyModel`] (window 8, 2 channels, 2 codes) for other modules' tests.
    pub(crate) fn tiny_blob() -> Vec<u8> {
        blob_bytes(&TinyModel::new().spec())
    }

    /// [`tiny_blob`] with its codes entropy coded by `tables`.
    pub(crate) fn tiny_blob_coded(tables: crate::entropy::CodeTables<'_>) -> Vec<u8> {
        blob_bytes(&EncoderSpec { tables: Some(tables), ..TinyModel::new().spec() })
    }

    #[test]
    fn blob_round_trips_and_borrows_in_place() {
        let model = TinyModel::new();
        let bytes = blob_bytes(&model.spec());
        let blob = ModelBlob::parse(&bytes).unwrap();
        assert_eq!(blob.spec, model.spec());
        assert_eq!(blob.model_id, ModelId([1, 2, 3, 4]));
        let Layer::Dense { q, .. } = blob.spec.layers[1] else { panic!() };
        let Weights::Int16(wide) = q.weights else { panic!("the dense layer's weights are i16") };
        let w = wide.slice(0, 1).as_ptr();
        assert!(bytes.as_ptr_range().contains(&w), "weights are read from the blob, not copied");
        assert_eq!(blob.spec.macs(), 3 * 4 * 6 + 24);
        assert_eq!(blob.spec.scratch_len(), 2 * 16);
    }

    #[test]
    fn damaged_blobs_are_refused_with_the_reason() {
        let model = TinyModel::new();
        let bytes = blob_bytes(&model.spec());
        for cut in [0, 5, HEADER_LEN, bytes.len() - 1] {
            assert!(matches!(ModelBlob::parse(&bytes[..cut]), Err(BlobError::Truncated { .. })), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 5] ^= 1;
        assert!(matches!(ModelBlob::parse(&flipped), Err(BlobError::ChecksumMismatch { .. })));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(ModelBlob::parse(&magic), Err(BlobError::BadMagic));
        for found in [BLOB_VERSION - 1, BLOB_VERSION + 1] {
            let mut version = bytes.clone();
            version[4..6].copy_from_slice(&found.to_le_bytes());
            assert_eq!(
                ModelBlob::parse(&version),
                Err(BlobError::UnsupportedVersion { found, supported: BLOB_VERSION })
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(ModelBlob::parse(&longer), Err(BlobError::TrailingBytes));
    }

    #[test]
    fn inconsistent_specs_are_refused() {
        let (zones, too_wide) = ([40u8, 127, 3], [40u8, 128]);
        let model = TinyModel::new();
        let mut spec = model.spec();
        spec.window = 9;
        assert!(matches!(spec.validate(), Err(BlobError::Invalid(_))));
        let mut spec = model.spec();
        spec.codes.zero_point = 0;
        assert!(matches!(spec.validate(), Err(BlobError::Invalid(_))));
        // Dead zones: none, or one per code of the last layer (2 here), each below half a step.
        let mut spec = model.spec();
        for (n, valid) in [(2, true), (1, false), (3, false)] {
            spec.codes.dead_zones = U8s::new(&zones[..n]).unwrap();
            assert_eq!(spec.validate().is_ok(), valid, "{n} dead zones");
        }
        spec.codes.dead_zones = U8s::new(&too_wide).unwrap();
        assert!(matches!(spec.validate(), Err(BlobError::Invalid(_))));
        let mut spec = model.spec();
        if let Layer::Dense { in_features, .. } = &mut spec.layers[1] {
            *in_features = 11;
        }
        assert!(matches!(spec.validate(), Err(BlobError::Invalid(_))));
        let mut buf = [0u8; 4096];
        assert!(write_blob(&spec, &mut buf, |_| ModelId::default()).is_err());
    }

    /// The spec of one dense layer (the codes) straight on `window` samples of one channel, with
    /// `p`'s weights (i16 when `wide`); the input and code scales are 1.
    fn one_dense_layer<'p>(p: &'p Params, window: u16, wide: bool) -> EncoderSpec<'p> {
        const OFFSET: [u8; 4] = [0; 4];
        let q = QuantLayer {
            weights: p.weights(wide),
            bias: I32s::new(&p.bias).unwrap(),
            requant: RequantParams { multipliers: I32s::new(&p.multipliers).unwrap(), shifts: I8s::new(&p.shifts) },
            input_zero_point: 0,
            output_zero_point: 0,
            relu: false,
            accumulator: AccumulatorWidth::Bits32,
        };
        let mut layers = heapless::Vec::new();
        let codes = p.bias.len() as u16 / 4;
        layers.push(Layer::Dense { in_features: window, out_features: codes, q }).unwrap();
        let input =
            RequantParams { multipliers: I32s::new(&p.multipliers[..4]).unwrap(), shifts: I8s::new(&p.shifts[..1]) };
        EncoderSpec {
            window,
            channels: 1,
            counts_per_unit: 1.0,
            input: InputQuant { offsets: I32s::new(&OFFSET).unwrap(), requant: input },
            layers,
            codes: CodeQuant { scale: 1.0, zero_point: 0, dead_zones: U8s::EMPTY },
            tables: None,
            residual: None,
            decoder: None,
        }
    }

    /// A blob of one dense layer (all weights 1) from `window` samples to `codes` codes.
    pub(crate) fn dense_blob(window: u16, codes: u16) -> Vec<u8> {
        let (n_in, n_out) = (usize::from(window), usize::from(codes));
        let ones = std::vec![1; n_in * n_out];
        let p = Params::new(&ones, &std::vec![0; n_out], &std::vec![1 << 30; n_out], &std::vec![0; n_out]);
        let spec = one_dense_layer(&p, window, false);
        blob_bytes(&spec)
    }

    /// One dense layer on the input: its i16 weights are accepted as long as no sum can
    /// overflow the accumulator, whatever the samples.
    #[test]
    fn weights_that_could_overflow_the_accumulator_are_refused() {
        let validate = |weight: i16, accumulator: AccumulatorWidth| {
            let p = Params::new(&[0; 64], &[0], &[1 << 30], &[0]).with_wide_weights(&[weight; 64]);
            let mut spec = one_dense_layer(&p, 64, true);
            if let Layer::Dense { q, .. } = &mut spec.layers[0] {
                q.accumulator = accumulator;
            }
            spec.validate()
        };
        // 64 taps × 1024 × 32767 ≤ 2^31 − 1 < 64 × 1025 × 32767.
        assert_eq!(validate(1024, AccumulatorWidth::Bits32), Ok(()));
        assert!(matches!(validate(1025, AccumulatorWidth::Bits32), Err(BlobError::Invalid(_))));
        assert!(matches!(validate(i16::MIN, AccumulatorWidth::Bits32), Err(BlobError::Invalid(_))));
        // In 64 bits any i16 weight fits.
        assert_eq!(validate(i16::MIN, AccumulatorWidth::Bits64), Ok(()));
    }

    /// Reference: the same model evaluated with plain i64 loops, layer by layer.
    fn reference_encode(model: &TinyModel, samples: &[i16]) -> Vec<i16> {
        let mbqm = |x: i64, m: i32, s: i8| {
            crate::kernels::multiply_by_quantized_multiplier(x.clamp(i32::MIN.into(), i32::MAX.into()) as i32, m, s)
                as i64
        };
        let spec = model.spec();
        // Input: [T][C] -> [C][T].
        let mut x = std::vec![0i64; 16];
        for c in 0..2 {
            for t in 0..8 {
                let q = mbqm(
                    i64::from(samples[t * 2 + c]) - i64::from(spec.input.offsets.get(c)),
                    spec.input.requant.multipliers.get(c),
                    spec.input.requant.shifts.get(c),
                );
                x[c * 8 + t] = q.clamp(-32767, 32767);
            }
        }
        let conv = &model.conv;
        let w = |p: &Params, i: usize| p.weights[i] as i8 as i64;
        let i32at = |v: &[u8], i: usize| i64::from(i32::from_le_bytes(v[4 * i..4 * i + 4].try_into().unwrap()));
        let mut h = std::vec![0i64; 12];
        for o in 0..3 {
            for t in 0..4 {
                let mut acc = i32at(&conv.bias, o);
                for c in 0..2 {
                    for k in 0..3 {
                        let pos = (2 * t + k) as i64 - 1;
                        if (0..8).contains(&pos) {
                            acc += w(conv, (o * 2 + c) * 3 + k) * x[c * 8 + pos as usize];
                        }
                    }
                }
                h[o * 4 + t] =
                    (mbqm(acc, i32at(&conv.multipliers, o) as i32, conv.shifts[o] as i8) - 128).clamp(-128, 127);
            }
        }
        let d = &model.dense;
        (0..2)
            .map(|o| {
                let acc = i32at(&d.bias, o) + (0..12).map(|i| w(d, o * 12 + i) * (h[i] + 128)).sum::<i64>();
                (mbqm(acc, i32at(&d.multipliers, o) as i32, d.shifts[o] as i8) + 4).clamp(-32768, 32767) as i16
            })
            .collect()
    }

    #[test]
    fn encoder_matches_layer_by_layer_reference() {
        let model = TinyModel::new();
        let bytes = blob_bytes(&model.spec());
        let enc = QuantizedEncoder::from_blob(&bytes).unwrap();
        let mut scratch = std::vec![0i16; enc.scratch_len()];
        let mut codes = [0i16; 2];
        let mut seed = 12345u64;
        for round in 0..300 {
            let samples: Vec<i16> = (0..16)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    // Mostly in range, sometimes extreme, to exercise saturation.
                    if round % 10 == 0 {
                        (seed >> 48) as i16
                    } else {
                        ((seed >> 56) as i8 as i16) + 60
                    }
                })
                .collect();
            enc.encode(&samples, &mut scratch, &mut codes).unwrap();
            assert_eq!(codes.to_vec(), reference_encode(&model, &samples), "round {round}");
        }
    }

    #[test]
    fn extreme_samples_saturate_and_are_reported() {
        let model = TinyModel::new();
        let bytes = blob_bytes(&model.spec());
        let enc = QuantizedEncoder::from_blob(&bytes).unwrap();
        let mut scratch = std::vec![0i16; enc.scratch_len()];
        let mut codes = [0i16; 2];
        // Channels interleaved: (channel 0, channel 1) per time step.
        let window = |c0: i16, c1: i16| [c0, c1].repeat(8);
        let mut saturated = |samples: Vec<i16>| enc.encode(&samples, &mut scratch, &mut codes).unwrap().input_saturated;
        for v in [i16::MIN, i16::MAX] {
            assert!(saturated(std::vec![v; 16]));
            // At the rail of i16 (clipped on the way to counts), though channel 1's input has room.
            assert!(saturated(window(100, v)));
        }
        // Channel 0's input is (x − 100) · 2: 20,000 counts lie beyond its 32,767, 16,000 do not.
        assert!(saturated(window(20_000, 0)));
        assert!(!saturated(window(16_000, 0)));
        assert!(!saturated(std::vec![100; 16]));
    }

    #[test]
    fn wrong_buffer_sizes_are_errors_not_panics() {
        let model = TinyModel::new();
        let bytes = blob_bytes(&model.spec());
        let enc = QuantizedEncoder::from_blob(&bytes).unwrap();
        let mut scratch = std::vec![0i16; enc.scratch_len()];
        let mut codes = [0i16; 2];
        assert_eq!(
            enc.encode(&[0; 15], &mut scratch, &mut codes),
            Err(EncodeError::WindowLength { expected: 16, found: 15 })
        );
        assert_eq!(
            enc.encode(&[0; 16], &mut scratch[..3], &mut codes),
            Err(EncodeError::ScratchTooSmall { needed: 32, found: 3 })
        );
        assert_eq!(
            enc.encode(&[0; 16], &mut scratch, &mut codes[..1]),
            Err(EncodeError::CodesLength { expected: 2, found: 1 })
        );
    }
}
