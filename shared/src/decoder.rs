//! The integer decoder: a window's latent codes in, the window rebuilt in device counts out,
//! with the same int8 kernels as the encoder. The device runs it to know, to the count, what
//! the host will rebuild from the codes it sends (what an error-bounded stream's residuals are
//! taken against); the host runs the same code, so both rebuild the same counts.

use crate::blob::{DecoderSpec, EncoderSpec, U8s};
use crate::encoder::{run_layers, EncodeError};
use crate::kernels::multiply_by_quantized_multiplier;

/// A validated integer decoder borrowing its parameters from a model blob (see
/// [`crate::encoder::QuantizedEncoder::decoder`]).
#[derive(Clone, Debug)]
pub struct QuantizedDecoder<'s, 'a> {
    encoder: &'s EncoderSpec<'a>,
    decoder: DecoderSpec<'a>,
}

impl<'s, 'a> QuantizedDecoder<'s, 'a> {
    /// The decoder of a validated `encoder`'s blob, if it has one.
    pub(crate) fn of(encoder: &'s EncoderSpec<'a>) -> Option<Self> {
        encoder.decoder().map(|decoder| QuantizedDecoder { encoder, decoder })
    }

    /// i16 scratch [`Self::decode`] needs.
    pub fn scratch_len(&self) -> usize {
        self.decoder.scratch_len()
    }

    /// Multiply-accumulates per window.
    pub fn macs(&self) -> u64 {
        self.decoder.macs()
    }

    /// Rebuilds one window from its `codes` into `samples` (`[T][C]`, interleaved as sampled,
    /// in device counts). Never panics for any codes: outputs beyond i16 saturate.
    pub fn decode(&self, codes: &[i16], scratch: &mut [i16], samples: &mut [i16]) -> Result<(), EncodeError> {
        let (channels, window) = (usize::from(self.encoder.channels), usize::from(self.encoder.window));
        if samples.len() != channels * window {
            return Err(EncodeError::WindowLength { expected: channels * window, found: samples.len() });
        }
        let needed = self.scratch_len();
        if scratch.len() < needed {
            return Err(EncodeError::ScratchTooSmall { needed, found: scratch.len() });
        }
        if codes.len() != self.encoder.code_len() {
            return Err(EncodeError::CodesLength { expected: self.encoder.code_len(), found: codes.len() });
        }
        let act = self.decoder.max_activation_len();
        let (a, rest) = scratch[..needed].split_at_mut(act);
        let (b, values) = rest.split_at_mut(act);
        a[..codes.len()].copy_from_slice(codes);
        run_layers(&self.decoder.layers, a, b, codes.len(), U8s::EMPTY, values);
        // `values` is `[C][T]` at the last layer's scale: to counts, `[T][C]`.
        let output = &self.decoder.output;
        for c in 0..channels {
            let (offset, m, s) =
                (output.offsets.get(c), output.requant.multipliers.get(c), output.requant.shifts.get(c));
            for t in 0..window {
                let x =
                    multiply_by_quantized_multiplier(i32::from(values[c * window + t]), m, s).saturating_add(offset);
                samples[t * channels + c] = x.clamp(i16::MIN.into(), i16::MAX.into()) as i16;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use crate::blob::*;
    use crate::encoder::tests::{blob_bytes, TinyModel};
    use crate::encoder::QuantizedEncoder;
    use crate::kernels::tests::{reference_mbqm, Params};
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A decoder for [`TinyModel`] (2 codes at zero point 4, window 8, 2 channels): dense 2 → 3
    /// with ReLU (int8, zero point −128), dense 3 → 16 (i16 weights and output), and an
    /// output stage per channel.
    pub(crate) struct TinyDecoder {
        hidden: Params,
        last: Params,
        output: Params,
        offsets: Vec<u8>,
    }

    impl TinyDecoder {
        pub(crate) fn new() -> Self {
            TinyDecoder {
                hidden: Params::new(
                    &[90, -40, 7, 127, -128, 33],
                    &[-300, 25, 4000],
                    &[1 << 30, 1_700_000_000, 2_100_000_000],
                    &[-2, -5, -9],
                ),
                last: Params::new(
                    &[0; 48],
                    &(0..16).map(|i| i * 1000 - 7000).collect::<Vec<_>>(),
                    &[1_300_000_000; 16],
                    &[0; 16],
                )
                .with_wide_weights(&(0..48).map(|i| ((i * 2731) % 20001 - 10000) as i16).collect::<Vec<_>>()),
                output: Params::new(&[], &[], &[1 << 30, 2_000_000_000], &[-3, 2]),
                offsets: [1000i32, -30000].iter().flat_map(|v| v.to_le_bytes()).collect(),
            }
        }

        pub(crate) fn spec(&self) -> DecoderSpec<'_> {
            let mut layers = heapless::Vec::new();
            layers
                .push(Layer::Dense {
                    in_features: 2,
                    out_features: 3,
                    q: self.hidden.quant_layer(4, -128, true, false),
                })
                .unwrap();
            layers
                .push(Layer::Dense { in_features: 3, out_features: 16, q: self.last.quant_layer(-128, 0, false, true) })
                .unwrap();
            DecoderSpec {
                layers,
                output: OutputQuant {
                    offsets: I32s::new(&self.offsets).unwrap(),
                    requant: RequantParams {
                        multipliers: I32s::new(&self.output.multipliers).unwrap(),
                        shifts: I8s::new(&self.output.shifts),
                    },
                },
            }
        }

        /// The window these parameters rebuild from `codes`, computed by hand from the
        /// definitions (wide integers, the reference requantization).
        fn reference(&self, codes: &[i16]) -> Vec<i16> {
            let hidden = reference_hidden(&self.hidden, codes, 3, -128);
            let values: Vec<i32> = (0..16)
                .map(|o| {
                    let w = |i: usize| {
                        i16::from_le_bytes([
                            self.last.wide_weights[2 * (o * 3 + i)],
                            self.last.wide_weights[2 * (o * 3 + i) + 1],
                        ])
                    };
                    let acc = i64::from(get(&self.last.bias, o))
                        + (0..3).map(|i| i64::from(w(i)) * (hidden[i] + 128)).sum::<i64>();
                    reference_mbqm(acc as i32, get(&self.last.multipliers, o), self.last.shifts[o] as i8)
                        .clamp(-32768, 32767)
                })
                .collect();
            reference_counts(&values, &self.output, &self.offsets)
        }
    }

    /// The `outputs` int8 values of a hidden dense layer with `params` and ReLU (output zero
    /// point `zero_point`) on [`TinyModel`]'s 2 `codes` (zero point 4), by the definition.
    fn reference_hidden(params: &Params, codes: &[i16], outputs: usize, zero_point: i32) -> Vec<i64> {
        (0..outputs)
            .map(|o| {
                let acc = i64::from(get(&params.bias, o))
                    + (0..2)
                        .map(|i| i64::from(params.weights[o * 2 + i] as i8) * (i64::from(codes[i]) - 4))
                        .sum::<i64>();
                let q = reference_mbqm(acc as i32, get(&params.multipliers, o), params.shifts[o] as i8);
                i64::from(q.saturating_add(zero_point).clamp(zero_point, 127))
            })
            .collect()
    }

    /// The little-endian i32 `i` of `b`.
    fn get(b: &[u8], i: usize) -> i32 {
        i32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
    }

    /// The 8 × 2 window in counts that the last layer's `values` (`[2][8]`) make through an
    /// output stage (`output`'s multipliers and shifts, `offsets`), by the definition.
    fn reference_counts(values: &[i32], output: &Params, offsets: &[u8]) -> Vec<i16> {
        (0..16)
            .map(|i| {
                let (t, c) = (i / 2, i % 2);
                let x = reference_mbqm(values[c * 8 + t], get(&output.multipliers, c), output.shifts[c] as i8);
                (i64::from(x) + i64::from(get(offsets, c))).clamp(-32768, 32767) as i16
            })
            .collect()
    }

    /// A conv decoder for [`TinyModel`], as `funnel quantize` makes of a conv model's: dense
    /// 2 → 8 with ReLU (int8 `[2][4]`, zero point −100), then an upsampled convolution: the
    /// `[2][4]` upsampled to `[2][8]`, kernel 3, padding 1, to `[2][8]` (i16 weights and
    /// output), and [`TinyDecoder`]'s output stage.
    pub(crate) struct TinyConvDecoder {
        hidden: Params,
        last: Params,
        stage: TinyDecoder,
    }

    impl TinyConvDecoder {
        pub(crate) fn new() -> Self {
            TinyConvDecoder {
                hidden: Params::new(
                    &[90, -40, 7, 127, -128, 33, 64, 64, -5, 100, 120, -120, 1, 2, -77, 50],
                    &[-300, 25, 4000, 0, 900, -2500, 60, 7],
                    &[1 << 30, 1_700_000_000, 2_100_000_000, 1 << 30, 1_500_000_000, 1 << 30, 2_000_000_000, 1 << 30],
                    &[-2, -5, -9, -1, -3, -4, -6, 0],
                ),
                last: Params::new(&[0; 12], &[-7000, 3000], &[1_300_000_000, 1_900_000_000], &[-10, -11])
                    .with_wide_weights(&(0..12).map(|i| ((i * 2731) % 20001 - 10000) as i16).collect::<Vec<_>>()),
                stage: TinyDecoder::new(),
            }
        }

        pub(crate) fn spec(&self) -> DecoderSpec<'_> {
            let mut layers = heapless::Vec::new();
            let hidden =
                Layer::Dense { in_features: 2, out_features: 8, q: self.hidden.quant_layer(4, -100, true, false) };
            layers.push(hidden).unwrap();
            let last = Layer::UpsampledConv1d {
                in_channels: 2,
                out_channels: 2,
                in_len: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
                q: self.last.quant_layer(-100, 0, false, true),
            };
            layers.push(last).unwrap();
            DecoderSpec { layers, ..self.stage.spec() }
        }

        /// The window these parameters rebuild from `codes`, by the definitions.
        fn reference(&self, codes: &[i16]) -> Vec<i16> {
            let hidden = reference_hidden(&self.hidden, codes, 8, -100);
            let upsampled = |c: usize, t: usize| hidden[c * 4 + t / 2];
            let w = |o: usize, c: usize, k: usize| {
                let i = 2 * ((o * 2 + c) * 3 + k);
                i64::from(i16::from_le_bytes([self.last.wide_weights[i], self.last.wide_weights[i + 1]]))
            };
            let values: Vec<i32> = (0..16)
                .map(|i| {
                    let (o, t) = (i / 8, i % 8);
                    let taps = (0..2).flat_map(|c| (0..3).map(move |k| (c, k)));
                    let in_range = taps.filter(|&(_, k)| (1..=8).contains(&(t + k)));
                    let acc = i64::from(get(&self.last.bias, o))
                        + in_range.map(|(c, k)| w(o, c, k) * (upsampled(c, t + k - 1) + 100)).sum::<i64>();
                    reference_mbqm(acc as i32, get(&self.last.multipliers, o), self.last.shifts[o] as i8)
                        .clamp(-32768, 32767)
                })
                .collect();
            reference_counts(&values, &self.stage.output, &self.stage.offsets)
        }
    }

    /// The postcard bytes of `decoder`, as a blob holds them.
    pub(crate) fn decoder_bytes(decoder: &DecoderSpec<'_>) -> Vec<u8> {
        let mut buf = std::vec![0u8; 4096];
        let len = decoder.write(&mut buf).unwrap();
        buf.truncate(len);
        buf
    }

    fn with_decoder(decoder: DecoderSpec<'_>) -> Vec<u8> {
        let (bytes, model) = (decoder_bytes(&decoder), TinyModel::new());
        let spec = EncoderSpec { decoder: Some(U8s::new(&bytes).unwrap()), ..model.spec() };
        blob_bytes(&spec)
    }

    proptest! {
        #[test]
        fn the_decoder_rebuilds_what_its_definition_says_for_any_codes(codes in proptest::array::uniform2(any::<i16>())) {
            let tiny = TinyDecoder::new();
            let bytes = with_decoder(tiny.spec());
            let encoder = QuantizedEncoder::from_blob(&bytes).unwrap();
            let decoder = encoder.decoder().unwrap();
            let mut scratch = std::vec![0i16; decoder.scratch_len()];
            let mut samples = [0i16; 16];
            decoder.decode(&codes, &mut scratch, &mut samples).unwrap();
            prop_assert_eq!(samples.to_vec(), tiny.reference(&codes));
        }

        #[test]
        fn an_upsampling_conv_decoder_rebuilds_what_its_definition_says(codes in proptest::array::uniform2(any::<i16>())) {
            let tiny = TinyConvDecoder::new();
            let bytes = with_decoder(tiny.spec());
            let encoder = QuantizedEncoder::from_blob(&bytes).unwrap();
            let decoder = encoder.decoder().unwrap();
            // Two buffers of the upsampled `[2][8]`, and the output.
            prop_assert_eq!(decoder.scratch_len(), 2 * 16 + 16);
            let mut scratch = std::vec![0i16; decoder.scratch_len()];
            let mut samples = [0i16; 16];
            decoder.decode(&codes, &mut scratch, &mut samples).unwrap();
            prop_assert_eq!(samples.to_vec(), tiny.reference(&codes));
        }
    }

    #[test]
    fn codes_at_the_ends_of_the_range_saturate_the_counts_instead_of_wrapping() {
        let tiny = TinyDecoder::new();
        let bytes = with_decoder(tiny.spec());
        let encoder = QuantizedEncoder::from_blob(&bytes).unwrap();
        let decoder = encoder.decoder().unwrap();
        let mut scratch = std::vec![0i16; decoder.scratch_len()];
        let mut samples = [0i16; 16];
        let mut extremes = Vec::new();
        for codes in [[i16::MIN, i16::MIN], [i16::MAX, i16::MIN], [i16::MIN, i16::MAX], [i16::MAX, i16::MAX]] {
            decoder.decode(&codes, &mut scratch, &mut samples).unwrap();
            assert_eq!(samples.to_vec(), tiny.reference(&codes));
            extremes.extend_from_slice(&samples);
        }
        assert!(extremes.contains(&i16::MIN) && extremes.contains(&i16::MAX), "{extremes:?}");
        assert_eq!(
            decoder.decode(&[0; 3], &mut scratch, &mut samples),
            Err(EncodeError::CodesLength { expected: 2, found: 3 })
        );
        assert_eq!(
            decoder.decode(&[0; 2], &mut scratch[..4], &mut samples),
            Err(EncodeError::ScratchTooSmall { needed: decoder.scratch_len(), found: 4 })
        );
        assert_eq!(
            decoder.decode(&[0; 2], &mut scratch, &mut samples[..15]),
            Err(EncodeError::WindowLength { expected: 16, found: 15 })
        );
        assert!(QuantizedEncoder::from_blob(&blob_bytes(&TinyModel::new().spec())).unwrap().decoder().is_none());
    }

    #[test]
    fn a_decoder_that_does_not_fit_its_encoder_is_refused() {
        let tiny = TinyDecoder::new();
        let model = TinyModel::new();
        let refused = |decoder: DecoderSpec<'_>| {
            let bytes = decoder_bytes(&decoder);
            let spec = EncoderSpec { decoder: Some(U8s::new(&bytes).unwrap()), ..model.spec() };
            match spec.validate() {
                Err(BlobError::Invalid(why)) => why,
                other => panic!("accepted: {other:?}"),
            }
        };
        // Reads 3 codes where the encoder makes 2.
        let mut d = tiny.spec();
        if let Layer::Dense { in_features, .. } = &mut d.layers[0] {
            *in_features = 3;
        }
        assert!(refused(d).contains("codes"));
        // Reads the codes at another zero point.
        let mut d = tiny.spec();
        if let Layer::Dense { q, .. } = &mut d.layers[0] {
            q.input_zero_point = 0;
        }
        assert!(refused(d).contains("zero point"));
        // Makes 15 values of a 16-value window.
        let mut d = tiny.spec();
        d.layers.pop();
        assert!(refused(d).contains("window of values"));
        // One output offset for two channels.
        let mut d = tiny.spec();
        d.output.offsets = I32s::new(&tiny.offsets[..4]).unwrap();
        assert!(refused(d).contains("offsets"));
        // Weights so large that a code at the end of the i16 range overflows the accumulator.
        let big = Params::new(&[], &[0; 3], &[1 << 30; 3], &[0; 3]).with_wide_weights(&[i16::MAX; 6]);
        let mut d = tiny.spec();
        if let Layer::Dense { q, .. } = &mut d.layers[0] {
            q.weights = big.weights(true);
        }
        assert!(refused(d).contains("overflow"));
    }
}
