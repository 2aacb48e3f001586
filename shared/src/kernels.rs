//! Integer kernels (int8 or i16 weights) with int32 accumulation (int64 where a layer's sums
//! need it) and TFLite/gemmlowp fixed-point requantization.
//!
//! A real value `r` of a quantized tensor is `scale · (q − zero_point)`. Activations are held
//! as i16: the encoder's input (the device's counts, zero point 0) and its
//! codes (the last layer's output) use that width, while hidden layers' outputs are clamped to
//! the int8 range, as in TFLite; one kernel serves all of them. Weights are symmetric
//! (zero point 0) with one scale per output channel, so a layer's output is
//! `q_out = zp_out + M · (bias + Σ w · (x − zp_in))` where the real multiplier
//! `M = s_in · s_w[o] / s_out` is stored as a Q31 `multiplier` in `[2^30, 2^31)` and a power-of-two
//! `shift` (positive = left). The arithmetic is exactly gemmlowp's
//! `MultiplyByQuantizedMultiplier`, so results are identical on every target.

use crate::blob::{I32s, I8s, U8s, WeightRow, Weights};

/// `a · b / 2^31` rounded to the nearest, halves up (gemmlowp's nudge: `2^30`, or `1 − 2^30`
/// for a negative product), saturating the single overflow case `i32::MIN · i32::MIN`.
#[inline(always)]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Division (not a shift) truncates toward zero, as gemmlowp specifies.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded half away from zero (`exponent` in `0..=31`).
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// `x · multiplier · 2^shift / 2^31`, rounded, saturating (gemmlowp semantics).
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i8) -> i32 {
    let left = shift.max(0) as u32;
    let right = (-(shift.min(0) as i32)) as u32;
    let scaled = x.saturating_mul(1 << left);
    rounding_divide_by_pot(saturating_rounding_doubling_high_mul(scaled, multiplier), right)
}

/// `x · multiplier · 2^shift / 2^31` for a 64-bit accumulator, rounded half away from zero in
/// one step (exact), saturated to i32.
#[inline(never)]
pub fn multiply_by_quantized_multiplier_i64(x: i64, multiplier: i32, shift: i8) -> i32 {
    // shift in −31..=30 (blob validation): a right shift of 1..=62 bits.
    let right = (31 - i32::from(shift)).clamp(1, 62) as u32;
    let (magnitude, m) = (x.unsigned_abs(), u64::from(multiplier.unsigned_abs()));
    // |x|·m = high·2^32 + low (each product of 32-bit halves below 2^63, which 32-bit cores
    // multiply natively; an i128 product took three times the instructions), plus half of
    // 2^right to round, shifted right by `right`.
    let high = (magnitude >> 32) * m;
    let low = (magnitude & 0xFFFF_FFFF) * m + (1u64 << (right - 1));
    let high = high + (low >> 32);
    let quotient = match right {
        32.. => high >> (right - 32),
        // At least 2^32: saturated below.
        _ if high >> 31 != 0 => u64::MAX,
        _ => (high << (32 - right)) | ((low & 0xFFFF_FFFF) >> right),
    };
    match (x < 0) != (multiplier < 0) {
        true => -(quotient.min(1 << 31) as i64) as i32,
        false => quotient.min(i32::MAX as u64) as i32,
    }
}

/// A layer's accumulator: i32 as in gemmlowp, or i64 for a layer whose sums blob validation
/// cannot bound within i32 (the layer that makes the codes from the device's full 16-bit
/// counts with i16 weights: see [`crate::blob::AccumulatorWidth`]).
pub trait Accumulator: Copy {
    fn from_bias(bias: i32) -> Self;
    /// `self + Σ_i w[i] · (x[i] − zp)` over `min(w.len(), x.len())` elements.
    fn dot_row(self, w: WeightRow<'_>, x: &[i16], zp: i32) -> Self;
    /// `self · multiplier · 2^shift / 2^31`, rounded, saturated to i32.
    fn scale(self, multiplier: i32, shift: i8) -> i32;
}

impl Accumulator for i32 {
    #[inline(always)]
    fn from_bias(bias: i32) -> Self {
        bias
    }
    #[inline(always)]
    fn dot_row(self, w: WeightRow<'_>, x: &[i16], zp: i32) -> Self {
        dot_row(w, x, zp, self)
    }
    #[inline(always)]
    fn scale(self, multiplier: i32, shift: i8) -> i32 {
        multiply_by_quantized_multiplier(self, multiplier, shift)
    }
}

impl Accumulator for i64 {
    #[inline(always)]
    fn from_bias(bias: i32) -> Self {
        i64::from(bias)
    }
    /// Each product fits i32 (an i16 weight times an input at most 2^15 + 128 from its zero
    /// point), its sum is exact in i64 (blob validation bounds it).
    #[inline(always)]
    fn dot_row(self, w: WeightRow<'_>, x: &[i16], zp: i32) -> Self {
        match w {
            // The input's zero point is 0 (the encoder's first layer): on Cortex-M4/M7 two
            // products per SMLALD.
            #[cfg(funnel_dsp)]
            WeightRow::Int16(w) if zp == 0 => dsp::dot_wide_i64(w, x, self),
            _ => dot_row_i64_portable(w, x, zp, self),
        }
    }
    fn scale(self, multiplier: i32, shift: i8) -> i32 {
        multiply_by_quantized_multiplier_i64(self, multiplier, shift)
    }
}

/// The portable form of `i64`'s [`Accumulator::dot_row`], one element per step. Not inlined:
/// only the layer that makes the codes from the input sums in 64 bits, and inlined into every
/// kernel its loops took 5 KB more flash.
#[inline(never)]
pub fn dot_row_i64_portable(w: WeightRow<'_>, x: &[i16], zp: i32, acc: i64) -> i64 {
    let product = |w: i32, x: i16| i64::from(w * (i32::from(x) - zp));
    match w {
        WeightRow::Int8(w) => w.iter().zip(x).fold(acc, |acc, (&w, &x)| acc + product(i32::from(w as i8), x)),
        WeightRow::Int16(w) => w
            .chunks_exact(2)
            .zip(x)
            .fold(acc, |acc, (w, &x)| acc + product(i32::from(i16::from_le_bytes([w[0], w[1]])), x)),
    }
}

/// Per-output-channel requantization of an accumulator into an output range.
#[derive(Clone, Copy, Debug)]
pub struct Requantize<'a> {
    pub multipliers: I32s<'a>,
    pub shifts: I8s<'a>,
    pub output_zero_point: i32,
    /// Lowest output value: `output_zero_point` when ReLU is fused (real 0), else the floor of
    /// the layer's range ([`INT8_RANGE`] or [`CODE_RANGE`]).
    pub activation_min: i32,
    pub activation_max: i32,
    /// Empty, or each output channel's dead zone in 1/2^[`DEAD_ZONE_BITS`] of an output step
    /// (0: round half away from zero): see [`Requantize::with_dead_zones`].
    pub dead_zones: U8s<'a>,
}

/// Fraction bits of a dead zone: the output is computed this much finer before it is rounded.
pub const DEAD_ZONE_BITS: u32 = 8;

/// Output range of a hidden layer.
pub const INT8_RANGE: (i32, i32) = (i8::MIN as i32, i8::MAX as i32);
/// Largest magnitude of an input sample: the device's counts, offset and scaled by a power of
/// two per channel, keep their whole i16 resolution and range (a 13-bit input rounded a
/// seismometer's quiet part away and clipped its earthquake). A layer that reads them with
/// wide weights sums in i64 (see `blob::AccumulatorWidth`).
pub const INPUT_LIMIT: i32 = i16::MAX as i32;
/// Output range of the last layer: the codes, whose wide range lets a rare large code travel
/// (escaped by the entropy coder) instead of being clipped.
pub const CODE_RANGE: (i32, i32) = (i16::MIN as i32, i16::MAX as i32);

impl<'a> Requantize<'a> {
    /// Requantization into `range`, floored at the zero point when ReLU is fused.
    pub fn new(multipliers: I32s<'a>, shifts: I8s<'a>, output_zero_point: i8, relu: bool, range: (i32, i32)) -> Self {
        let output_zero_point = i32::from(output_zero_point);
        let activation_min = if relu { output_zero_point.max(range.0) } else { range.0 };
        let dead_zones = U8s::EMPTY;
        Requantize { multipliers, shifts, output_zero_point, activation_min, activation_max: range.1, dead_zones }
    }

    /// Rounds channel `c`'s output `v` (in steps from the zero point) to
    /// `sign(v)·⌊|v| + ½ − d⌋`, with `d = dead_zones[c] / 2^DEAD_ZONE_BITS` (below ½): every
    /// rounding threshold moves `d` away from zero, so values near zero, the commonest codes,
    /// become cheaper to entropy code, for a little more error (the decoder, tuned to such
    /// codes, learns where each code's values lie). A channel whose nonzero codes cost many
    /// bits more than a zero gets a wider one. `dead_zones` is empty or has one per channel;
    /// the layer's shifts must leave room for [`DEAD_ZONE_BITS`] more (blob validation checks
    /// both).
    pub fn with_dead_zones(self, dead_zones: U8s<'a>) -> Self {
        Requantize { dead_zones, ..self }
    }

    /// The dead zone of `channel` (0 when there are none).
    #[inline(always)]
    pub fn dead_zone(&self, channel: usize) -> u8 {
        if self.dead_zones.is_empty() {
            0
        } else {
            self.dead_zones.get(channel)
        }
    }

    #[inline(always)]
    pub fn apply<A: Accumulator>(&self, channel: usize, acc: A) -> i16 {
        self.apply_with(self.multipliers.get(channel), self.shifts.get(channel), self.dead_zone(channel), acc)
    }

    /// [`Self::apply`] with the channel's multiplier, shift and dead zone already looked up
    /// (kernels hoist them out of their loops over positions).
    #[inline(always)]
    pub fn apply_with<A: Accumulator>(&self, multiplier: i32, shift: i8, dead_zone: u8, acc: A) -> i16 {
        let scaled = match dead_zone {
            0 => acc.scale(multiplier, shift),
            dead_zone => {
                // The output in 1/256 steps (rounded), then floored past the moved threshold.
                let fine = acc.scale(multiplier, shift + DEAD_ZONE_BITS as i8);
                let half = 1i64 << (DEAD_ZONE_BITS - 1);
                let magnitude = (i64::from(fine).abs() + half - i64::from(dead_zone)) >> DEAD_ZONE_BITS;
                // At most 2^23: an i32.
                let magnitude = magnitude as i32;
                if fine < 0 {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        let q = scaled.saturating_add(self.output_zero_point);
        // Both bounds lie inside the i16 range.
        q.clamp(self.activation_min, self.activation_max) as i16
    }
}

/// `acc + Σ_i w[i] · (x[i] − zp)` over `min(w.len(), x.len())` elements, wrapping like the
/// int32 accumulator of the reference (exact for every valid blob: blob validation bounds the
/// sum, see `blob::MAX_ACCUMULATOR`). On Cortex-M4/M7 (`cfg(funnel_dsp)`, set by `build.rs` for
/// `thumbv7em-*`) four elements go through SXTB16/PKHBT/SSUB16/SMLAD per step, with the same
/// result.
#[inline(always)]
pub fn dot(w: &[u8], x: &[i16], zp: i32, acc: i32) -> i32 {
    #[cfg(funnel_dsp)]
    {
        dsp::dot(w, x, zp, acc)
    }
    #[cfg(not(funnel_dsp))]
    {
        dot_portable(w, x, zp, acc)
    }
}

/// [`dot`] over a run of weights as stored: int8, or i16 (two little-endian bytes each).
#[inline(always)]
pub fn dot_row(w: WeightRow<'_>, x: &[i16], zp: i32, acc: i32) -> i32 {
    match w {
        WeightRow::Int8(w) => dot(w, x, zp, acc),
        WeightRow::Int16(w) => dot_wide(w, x, zp, acc),
    }
}

/// `acc + Σ_i w[i] · (x[i] − zp)` with i16 weights (`w` holds two little-endian bytes each),
/// wrapping like [`dot`]. On Cortex-M4/M7 two elements go through one SSUB16 and one SMLAD
/// per step: weights and inputs are both halfword pairs already.
#[inline(always)]
pub fn dot_wide(w: &[u8], x: &[i16], zp: i32, acc: i32) -> i32 {
    #[cfg(funnel_dsp)]
    {
        dsp::dot_wide(w, x, zp, acc)
    }
    #[cfg(not(funnel_dsp))]
    {
        dot_wide_portable(w, x, zp, acc)
    }
}

/// The portable form of [`dot_wide`], one element per step.
#[inline(always)]
pub fn dot_wide_portable(w: &[u8], x: &[i16], zp: i32, acc: i32) -> i32 {
    w.chunks_exact(2)
        .zip(x)
        .fold(acc, |acc, (w, &x)| acc.wrapping_add(i32::from(i16::from_le_bytes([w[0], w[1]])) * (i32::from(x) - zp)))
}

/// The portable form of [`dot`], one element per step.
#[inline(always)]
pub fn dot_portable(w: &[u8], x: &[i16], zp: i32, acc: i32) -> i32 {
    w.iter().zip(x).fold(acc, |acc, (&w, &x)| acc.wrapping_add(i32::from(w as i8) * (i32::from(x) - zp)))
}

#[cfg(funnel_dsp)]
#[allow(unsafe_code)]
mod dsp {
    /// Four products per step: SXTB16 splits the weights into sign-extended halfword pairs
    /// (bytes 0,2 and, rotated, 1,3), PKHBT/PKHTB regroup them as (0,1) and (2,3) to match the
    /// input halfwords, SSUB16 takes the zero point off each input halfword (exact: a layer's
    /// input is either the zero-point-0 samples or an int8 activation, so |x − zp| <= 255
    /// where zp is not 0), and SMLAD adds both halfword products to the accumulator. SMLAD's
    /// 32-bit sum wraps (it only sets the sticky Q flag), exactly as the portable
    /// `wrapping_add` chain, and addition modulo 2^32 does not depend on the order.
    #[inline(always)]
    pub fn dot(w: &[u8], x: &[i16], zp: i32, mut acc: i32) -> i32 {
        let n = w.len().min(x.len());
        let (w, x) = (&w[..n], &x[..n]);
        let split = n & !3;
        let zp2 = ((zp as u32) & 0xFFFF) * 0x0001_0001;
        for (wc, xc) in w[..split].chunks_exact(4).zip(x[..split].chunks_exact(4)) {
            let wv = u32::from_le_bytes([wc[0], wc[1], wc[2], wc[3]]);
            let x01 = u32::from(xc[0] as u16) | (u32::from(xc[1] as u16) << 16);
            let x23 = u32::from(xc[2] as u16) | (u32::from(xc[3] as u16) << 16);
            // SAFETY: register-only DSP instructions (ARMv7E-M, present on every thumbv7em
            // core); no memory access, no stack, flags other than Q and GE untouched (GE is
            // read by no code Rust emits). `out` operands never share a register with the
            // inputs.
            unsafe {
                core::arch::asm!(
                    "sxtb16 {w02}, {w}",
                    "sxtb16 {w13}, {w}, ror #8",
                    "pkhbt {w01}, {w02}, {w13}, lsl #16",
                    "pkhtb {w23}, {w13}, {w02}, asr #16",
                    "ssub16 {x01}, {x01}, {zp2}",
                    "ssub16 {x23}, {x23}, {zp2}",
                    "smlad {acc}, {w01}, {x01}, {acc}",
                    "smlad {acc}, {w23}, {x23}, {acc}",
                    w = in(reg) wv,
                    zp2 = in(reg) zp2,
                    x01 = inout(reg) x01 => _,
                    x23 = inout(reg) x23 => _,
                    acc = inout(reg) acc,
                    w02 = out(reg) _,
                    w13 = out(reg) _,
                    w01 = out(reg) _,
                    w23 = out(reg) _,
                    options(pure, nomem, nostack),
                );
            }
        }
        super::dot_portable(&w[split..], &x[split..], zp, acc)
    }

    /// Two products per step: the weights and the inputs are halfword pairs as stored; SSUB16
    /// takes the zero point off each input halfword (exact, as in [`dot`]) and SMLAD adds both
    /// products, wrapping as the portable chain does.
    #[inline(always)]
    pub fn dot_wide(w: &[u8], x: &[i16], zp: i32, mut acc: i32) -> i32 {
        let n = (w.len() / 2).min(x.len());
        let (w, x) = (&w[..2 * n], &x[..n]);
        let split = n & !1;
        let zp2 = ((zp as u32) & 0xFFFF) * 0x0001_0001;
        for (wc, xc) in w[..2 * split].chunks_exact(4).zip(x[..split].chunks_exact(2)) {
            let wv = u32::from_le_bytes([wc[0], wc[1], wc[2], wc[3]]);
            let xv = u32::from(xc[0] as u16) | (u32::from(xc[1] as u16) << 16);
            // SAFETY: register-only DSP instructions, as in `dot`.
            unsafe {
                core::arch::asm!(
                    "ssub16 {x}, {x}, {zp2}",
                    "smlad {acc}, {w}, {x}, {acc}",
                    w = in(reg) wv,
                    zp2 = in(reg) zp2,
                    x = inout(reg) xv => _,
                    acc = inout(reg) acc,
                    options(pure, nomem, nostack),
                );
            }
        }
        super::dot_wide_portable(&w[2 * split..], &x[split..], zp, acc)
    }

    /// `acc + Σ w[i] · x[i]` with i16 weights into a 64-bit sum: SMLALD adds both halfword
    /// products of a pair to it, exactly (each product fits i32, the sum i64).
    #[inline(always)]
    pub fn dot_wide_i64(w: &[u8], x: &[i16], acc: i64) -> i64 {
        // The same walk over halfword pairs as `dot_wide`'s (a shared iterator cost the DSP
        // image 255 instructions per window of `models/ecg`).
        let n = (w.len() / 2).min(x.len());
        let (w, x) = (&w[..2 * n], &x[..n]);
        let split = n & !1;
        let (mut lo, mut hi) = (acc as u32, (acc >> 32) as u32);
        for (wc, xc) in w[..2 * split].chunks_exact(4).zip(x[..split].chunks_exact(2)) {
            let wv = u32::from_le_bytes([wc[0], wc[1], wc[2], wc[3]]);
            let xv = u32::from(xc[0] as u16) | (u32::from(xc[1] as u16) << 16);
            // SAFETY: a register-only DSP instruction, as in `dot`.
            unsafe {
                core::arch::asm!(
                    "smlald {lo}, {hi}, {w}, {x}",
                    w = in(reg) wv,
                    x = in(reg) xv,
                    lo = inout(reg) lo,
                    hi = inout(reg) hi,
                    options(pure, nomem, nostack),
                );
            }
        }
        let acc = (i64::from(hi) << 32) | i64::from(lo);
        super::dot_row_i64_portable(crate::blob::WeightRow::Int16(&w[2 * split..]), &x[split..], 0, acc)
    }
}

/// Dense layer: `output[o] = requant(bias[o] + Σ_i weights[o·n_in + i] · (input[i] − zp_in))`,
/// summed in `A`.
///
/// Shapes are checked by blob validation; slices of other lengths are a caller bug and panic.
pub fn dense<A: Accumulator>(
    weights: Weights<'_>,
    bias: I32s<'_>,
    input_zero_point: i8,
    requant: &Requantize<'_>,
    input: &[i16],
    output: &mut [i16],
) {
    let n_in = input.len();
    assert_eq!(weights.len(), n_in * output.len(), "dense weight shape");
    let zp = i32::from(input_zero_point);
    for (o, out) in output.iter_mut().enumerate() {
        *out = requant.apply(o, A::from_bias(bias.get(o)).dot_row(weights.row(o * n_in, n_in), input, zp));
    }
}

/// Geometry of a 1-D convolution over channels-first `[C][T]` tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub in_len: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv1dShape {
    /// Output length, or `None` when the kernel does not fit the padded input or stride is 0.
    pub fn out_len(&self) -> Option<usize> {
        let padded = self.in_len + 2 * self.padding;
        if self.stride == 0 || self.kernel == 0 || self.kernel > padded {
            return None;
        }
        Some((padded - self.kernel) / self.stride + 1)
    }
}

/// Conv1d layer with zero padding (padding positions hold real 0, i.e. `zp_in`, and so add
/// nothing), summed in `A`. Weights are `[out][in][kernel]`.
pub fn conv1d<A: Accumulator>(
    shape: &Conv1dShape,
    weights: Weights<'_>,
    bias: I32s<'_>,
    input_zero_point: i8,
    requant: &Requantize<'_>,
    input: &[i16],
    output: &mut [i16],
) {
    let out_len = shape.out_len().expect("validated conv shape");
    assert_eq!(input.len(), shape.in_channels * shape.in_len, "conv input shape");
    assert_eq!(output.len(), shape.out_channels * out_len, "conv output shape");
    assert_eq!(weights.len(), shape.out_channels * shape.in_channels * shape.kernel, "conv weight shape");
    let zp = i32::from(input_zero_point);
    let (kernel, in_len, padding) = (shape.kernel, shape.in_len, shape.padding);
    let per_out = shape.in_channels * kernel;
    for o in 0..shape.out_channels {
        // Weights of this output channel, `[in][kernel]`, and its requantization.
        let w_o = weights.row(o * per_out, per_out);
        let (b, m, sh, dz) = (bias.get(o), requant.multipliers.get(o), requant.shifts.get(o), requant.dead_zone(o));
        let out_o = &mut output[o * out_len..(o + 1) * out_len];
        for (t, out) in out_o.iter_mut().enumerate() {
            // Taps k with 0 <= t·stride + k − padding < in_len.
            let start = t * shape.stride;
            let k_lo = padding.saturating_sub(start);
            let k_hi = (in_len + padding).saturating_sub(start).min(kernel);
            let mut acc = A::from_bias(b);
            // With padding wider than the kernel a window can lie entirely in the padding.
            if k_hi > k_lo {
                let x0 = start + k_lo - padding;
                let taps = k_hi - k_lo;
                for (c, x_c) in input.chunks_exact(in_len).enumerate() {
                    acc = acc.dot_row(w_o.slice(c * kernel + k_lo, taps), &x_c[x0..x0 + taps], zp);
                }
            }
            *out = requant.apply_with(m, sh, dz, acc);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Test data owning the little-endian bytes that `I32s`/`I8s`/`I16s` borrow.
    pub(crate) struct Params {
        pub weights: Vec<u8>,
        /// The same weights as i16.
        pub wide_weights: Vec<u8>,
        pub bias: Vec<u8>,
        pub multipliers: Vec<u8>,
        pub shifts: Vec<u8>,
    }

    impl Params {
        pub fn new(weights: &[i8], bias: &[i32], multipliers: &[i32], shifts: &[i8]) -> Self {
            Params {
                weights: weights.iter().map(|&w| w as u8).collect(),
                wide_weights: weights.iter().flat_map(|&w| i16::from(w).to_le_bytes()).collect(),
                bias: bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
                multipliers: multipliers.iter().flat_map(|b| b.to_le_bytes()).collect(),
                shifts: shifts.iter().map(|&s| s as u8).collect(),
            }
        }
        /// Wide weights of their own (any i16 values), in place of the int8 ones.
        pub fn with_wide_weights(mut self, weights: &[i16]) -> Self {
            self.wide_weights = weights.iter().flat_map(|w| w.to_le_bytes()).collect();
            self
        }
        pub fn weights(&self, wide: bool) -> Weights<'_> {
            match wide {
                false => Weights::Int8(I8s::new(&self.weights)),
                true => Weights::Int16(crate::blob::I16s::new(&self.wide_weights).unwrap()),
            }
        }
        /// A blob layer's parameters from these (the weights i16 when `wide`).
        pub fn quant_layer(&self, zp_in: i8, zp_out: i8, relu: bool, wide: bool) -> crate::blob::QuantLayer<'_> {
            crate::blob::QuantLayer {
                weights: self.weights(wide),
                bias: I32s::new(&self.bias).unwrap(),
                requant: crate::blob::RequantParams {
                    multipliers: I32s::new(&self.multipliers).unwrap(),
                    shifts: I8s::new(&self.shifts),
                },
                input_zero_point: zp_in,
                output_zero_point: zp_out,
                relu,
                accumulator: crate::blob::AccumulatorWidth::Bits32,
            }
        }
        pub fn requant(&self, zp_out: i8, relu: bool, range: (i32, i32)) -> Requantize<'_> {
            Requantize::new(I32s::new(&self.multipliers).unwrap(), I8s::new(&self.shifts), zp_out, relu, range)
        }
    }

    /// Exact reference in i128 arithmetic with gemmlowp's two rounding steps.
    pub(crate) fn reference_mbqm(x: i32, m: i32, shift: i8) -> i32 {
        let left = shift.max(0) as u32;
        let right = (-(shift.min(0) as i32)) as u32;
        let scaled = (i64::from(x) << left).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i128;
        let prod = scaled * i128::from(m);
        let round_div = |v: i128, d: i128| -> i128 {
            let q = v.abs() + d / 2;
            let r = q / d;
            if v < 0 {
                -r
            } else {
                r
            }
        };
        // gemmlowp rounds the high word half toward +inf, the power-of-two division half away.
        let high = (prod + (1i128 << 30)).div_euclid(1i128 << 31).clamp(i128::from(i32::MIN), i128::from(i32::MAX));
        round_div(high, 1i128 << right) as i32
    }

    #[test]
    fn a_dead_zone_moves_every_rounding_threshold_away_from_zero() {
        // M = 0.5 · 2^-4: the output is acc / 32, exact in 1/256 steps (acc · 8).
        let (m, shift) = ([0u8; 0], [0u8; 0]);
        let plain = Requantize::new(I32s::new(&m).unwrap(), I8s::new(&shift), 3, false, CODE_RANGE);
        for dead_zone in [0u8, 1, 51, 100, 127] {
            for acc in -4000..=4000 {
                let v = f64::from(acc) / 32.0;
                let d = f64::from(dead_zone) / 256.0;
                // Without a dead zone, gemmlowp's rounding; with one, exactly on a moved
                // threshold the floor keeps the code nearer zero.
                let want = match dead_zone {
                    0 => f64::from(multiply_by_quantized_multiplier(acc, 1 << 30, -4)),
                    _ => (v.abs() + 0.5 - d).floor() * v.signum(),
                };
                assert_eq!(
                    f64::from(plain.apply_with(1 << 30, -4, dead_zone, acc)),
                    want + 3.0,
                    "acc {acc}, dead zone {dead_zone}"
                );
                // The 64-bit accumulator rounds halves away from zero in one step.
                let want64 = (v.abs() + 0.5 - d).floor() * v.signum();
                assert_eq!(f64::from(plain.apply_with(1 << 30, -4, dead_zone, i64::from(acc))), want64 + 3.0);
            }
        }
        // Saturated, not wrapped, at the ends of the range.
        assert_eq!(plain.apply_with(i32::MAX, 10, 51, i32::MAX), i16::MAX);
        assert_eq!(plain.apply_with(i32::MAX, 10, 51, i32::MIN), i16::MIN);
    }

    #[test]
    fn each_channel_rounds_with_its_own_dead_zone() {
        // Three channels of M = 0.5 · 2^-4 (acc / 32), dead zones 0, ¼ and 100/256 of a step.
        let m: Vec<u8> = [1i32 << 30; 3].iter().flat_map(|m| m.to_le_bytes()).collect();
        let shift = [(-4i8) as u8; 3];
        let zones = [0u8, 64, 100];
        let requant = Requantize::new(I32s::new(&m).unwrap(), I8s::new(&shift), 0, false, CODE_RANGE)
            .with_dead_zones(U8s::new(&zones).unwrap());
        // 0.6875 of a step: 1 without a dead zone, 0 below the thresholds moved to 0.75 and 0.89.
        let acc = 22;
        assert_eq!([0, 1, 2].map(|c| requant.apply(c, acc)), [1, 0, 0]);
        let acc = 26; // 0.8125: past ¾, short of 0.5 + 100/256 = 0.89
        assert_eq!([0, 1, 2].map(|c| requant.apply(c, acc)), [1, 1, 0]);
        assert_eq!([0, 1, 2].map(|c| requant.apply(c, -acc)), [-1, -1, 0]);
        // Without dead zones every channel rounds half away from zero.
        let plain = Requantize::new(I32s::new(&m).unwrap(), I8s::new(&shift), 0, false, CODE_RANGE);
        assert_eq!([0, 1, 2].map(|c| plain.apply(c, 22)), [1, 1, 1]);
    }

    #[test]
    fn known_requantization_values() {
        // M = 0.5 (Q31 2^30, shift 0): 10 -> 5, 11 -> 5.5 -> 6, and -11 -> -5.5 -> -5 because
        // gemmlowp's high-word multiply rounds halves toward +inf.
        assert_eq!(multiply_by_quantized_multiplier(10, 1 << 30, 0), 5);
        assert_eq!(multiply_by_quantized_multiplier(11, 1 << 30, 0), 6);
        assert_eq!(multiply_by_quantized_multiplier(-11, 1 << 30, 0), -5);
        // With a right shift the half lands in the power-of-two division, which rounds away.
        assert_eq!(multiply_by_quantized_multiplier(-11, 1 << 30, -1), -3); // -2.75 -> -3
        assert_eq!(multiply_by_quantized_multiplier(-6, 1 << 30, -1), -2); // -1.5 -> -2
                                                                           // M = 0.75 · 2^-3.
        assert_eq!(multiply_by_quantized_multiplier(1000, 3 << 29, -3), 94); // 93.75
                                                                             // Left shift saturates instead of wrapping.
        assert_eq!(multiply_by_quantized_multiplier(i32::MAX, i32::MAX, 4), i32::MAX - 1); // (2^31-1)^2 / 2^31
        assert_eq!(multiply_by_quantized_multiplier(i32::MIN, i32::MAX, 4), i32::MIN + 1);
        assert_eq!(saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
    }

    proptest! {
        #[test]
        fn requantization_matches_exact_reference(x in any::<i32>(), m in (1i32 << 30)..i32::MAX, shift in -31i8..=8) {
            prop_assert_eq!(multiply_by_quantized_multiplier(x, m, shift), reference_mbqm(x, m, shift));
        }
    }

    /// The requantization of an exact sum `acc`: in a 64-bit accumulator (`wide_acc`) one
    /// rounding of the exact quotient, half away from zero, saturated; in gemmlowp's 32-bit one
    /// the sum wraps, then gemmlowp's two roundings.
    fn reference_requantize(acc: i64, wide_acc: bool, m: i32, shift: i8) -> i32 {
        if !wide_acc {
            return reference_mbqm(acc as i32, m, shift);
        }
        let (product, divisor) = (i128::from(acc) * i128::from(m), 1i128 << (31 - i32::from(shift)));
        let quotient = (product.abs() + divisor / 2) / divisor * product.signum();
        quotient.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
    }

    #[test]
    fn wide_requantization_rounds_halves_away_from_zero_and_saturates() {
        // M = 0.5: ±1 → ±0.5 → ±1, ±3 → ±1.5 → ±2.
        assert_eq!([1, -1, 3, -3].map(|x| multiply_by_quantized_multiplier_i64(x, 1 << 30, 0)), [1, -1, 2, -2]);
        for x in [i64::MIN, i64::MIN + 1, -(1 << 46), -1, 0, 1, 1 << 46, i64::MAX] {
            for m in [1 << 30, 1_500_000_000, i32::MAX] {
                for shift in [-31, -12, 0, 15, 16, 30] {
                    let want = reference_requantize(x, true, m, shift);
                    assert_eq!(multiply_by_quantized_multiplier_i64(x, m, shift), want, "{x} · {m} · 2^{shift}");
                }
            }
        }
        assert_eq!(multiply_by_quantized_multiplier_i64(i64::MIN, i32::MAX, 30), i32::MIN);
        assert_eq!(multiply_by_quantized_multiplier_i64(i64::MAX, i32::MAX, 30), i32::MAX);
    }

    proptest! {
        #[test]
        fn wide_requantization_matches_exact_reference(x in any::<i64>(), m in (1i32 << 30)..i32::MAX, shift in -31i8..=30) {
            prop_assert_eq!(multiply_by_quantized_multiplier_i64(x, m, shift), reference_requantize(x, true, m, shift));
        }

        /// Sums of the sizes a layer makes, where most outputs do not saturate.
        #[test]
        fn wide_requantization_of_layer_sized_sums_matches_exact_reference(
            x in -(1i64 << 44)..(1i64 << 44), m in (1i32 << 30)..i32::MAX, shift in -31i8..=0,
        ) {
            prop_assert_eq!(multiply_by_quantized_multiplier_i64(x, m, shift), reference_requantize(x, true, m, shift));
        }
    }

    /// Straightforward reference: i64 accumulation, float-free, no slicing tricks.
    #[allow(clippy::too_many_arguments)]
    fn reference_dense(
        w: &[i16],
        b: &[i32],
        zp_in: i8,
        m: &[i32],
        s: &[i8],
        zp_out: i8,
        relu: bool,
        range: (i32, i32),
        x: &[i16],
        wide_acc: bool,
    ) -> Vec<i16> {
        (0..b.len())
            .map(|o| {
                let acc: i64 = i64::from(b[o])
                    + (0..x.len())
                        .map(|i| i64::from(w[o * x.len() + i]) * (i64::from(x[i]) - i64::from(zp_in)))
                        .sum::<i64>();
                let y = i64::from(reference_requantize(acc, wide_acc, m[o], s[o])) + i64::from(zp_out);
                y.clamp(if relu { i64::from(zp_out) } else { range.0.into() }, range.1.into()) as i16
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn reference_conv(
        sh: &Conv1dShape,
        w: &[i16],
        b: &[i32],
        zp_in: i8,
        m: &[i32],
        s: &[i8],
        zp_out: i8,
        relu: bool,
        range: (i32, i32),
        x: &[i16],
        wide_acc: bool,
    ) -> Vec<i16> {
        let out_len = sh.out_len().unwrap();
        let mut y = std::vec![0i16; sh.out_channels * out_len];
        for o in 0..sh.out_channels {
            for t in 0..out_len {
                let mut acc = i64::from(b[o]);
                for c in 0..sh.in_channels {
                    for k in 0..sh.kernel {
                        let pos = (t * sh.stride + k) as i64 - sh.padding as i64;
                        if pos >= 0 && (pos as usize) < sh.in_len {
                            let xv = i64::from(x[c * sh.in_len + pos as usize]) - i64::from(zp_in);
                            acc += i64::from(w[(o * sh.in_channels + c) * sh.kernel + k]) * xv;
                        }
                    }
                }
                let v = i64::from(reference_requantize(acc, wide_acc, m[o], s[o])) + i64::from(zp_out);
                y[o * out_len + t] =
                    v.clamp(if relu { i64::from(zp_out) } else { range.0.into() }, range.1.into()) as i16;
            }
        }
        y
    }

    /// A layer's input: the encoder's first layer reads samples within ±[`INPUT_LIMIT`] at zero
    /// point 0, the others int8 activations at any zero point.
    fn layer_input(n: usize, first: bool, zp: i8, next: &mut impl FnMut() -> u32) -> (Vec<i16>, i8) {
        match first {
            true => {
                ((0..n).map(|_| ((next() % (2 * INPUT_LIMIT as u32 + 1)) as i32 - INPUT_LIMIT) as i16).collect(), 0)
            }
            false => ((0..n).map(|_| i16::from(next() as i8)).collect(), zp),
        }
    }

    /// [`Params`] for weights given as i16 values (int8 ones when they all fit).
    fn params(w: &[i16], b: &[i32], m: &[i32], s: &[i8]) -> Params {
        let narrow: Vec<i8> = w.iter().map(|&v| v as i8).collect();
        Params::new(&narrow, b, m, s).with_wide_weights(w)
    }

    fn layer_strategy(
        n_in: std::ops::Range<usize>,
        n_out: std::ops::Range<usize>,
    ) -> impl Strategy<Value = (usize, usize)> {
        (n_in, n_out)
    }

    proptest! {
        #[test]
        fn dense_matches_reference(
            (n_in, n_out) in layer_strategy(1..40, 1..12),
            seed in any::<u64>(),
            zp_in in any::<i8>(), zp_out in any::<i8>(), relu in any::<bool>(), first in any::<bool>(), last in any::<bool>(),
            wide in any::<bool>(), wide_acc in any::<bool>(),
        ) {
            let mut rng = seed;
            let mut next = || { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (rng >> 33) as u32 };
            // i16 weights (when `wide`) span their range: the sums wrap, as the reference's do.
            let w: Vec<i16> = (0..n_in * n_out).map(|_| if wide { next() as i16 } else { i16::from(next() as i8) }).collect();
            let (x, zp_in) = layer_input(n_in, first, zp_in, &mut next);
            let range = if last { CODE_RANGE } else { INT8_RANGE };
            let b: Vec<i32> = (0..n_out).map(|_| (next() as i32) >> 12).collect();
            let m: Vec<i32> = (0..n_out).map(|_| (1 << 30) + (next() as i32 & 0x3fff_ffff)).collect();
            let s: Vec<i8> = (0..n_out).map(|_| -((next() % 16) as i8)).collect();
            let p = params(&w, &b, &m, &s);
            let mut y = std::vec![0i16; n_out];
            let (wq, bq, requant) = (p.weights(wide), I32s::new(&p.bias).unwrap(), p.requant(zp_out, relu, range));
            match wide_acc {
                false => dense::<i32>(wq, bq, zp_in, &requant, &x, &mut y),
                true => dense::<i64>(wq, bq, zp_in, &requant, &x, &mut y),
            }
            prop_assert_eq!(y, reference_dense(&w, &b, zp_in, &m, &s, zp_out, relu, range, &x, wide_acc));
        }

        #[test]
        fn conv1d_matches_reference(
            in_channels in 1..4usize, out_channels in 1..6usize, in_len in 1..40usize,
            kernel in 1..8usize, stride in 1..4usize, padding in 0..4usize,
            seed in any::<u64>(), zp_in in any::<i8>(), zp_out in any::<i8>(), relu in any::<bool>(),
            first in any::<bool>(), last in any::<bool>(), wide in any::<bool>(), wide_acc in any::<bool>(),
        ) {
            let sh = Conv1dShape { in_channels, out_channels, in_len, kernel, stride, padding };
            prop_assume!(sh.out_len().is_some());
            let mut rng = seed;
            let mut next = || { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (rng >> 33) as u32 };
            let w: Vec<i16> = (0..out_channels * in_channels * kernel)
                .map(|_| if wide { next() as i16 } else { i16::from(next() as i8) })
                .collect();
            let (x, zp_in) = layer_input(in_channels * in_len, first, zp_in, &mut next);
            let range = if last { CODE_RANGE } else { INT8_RANGE };
            let b: Vec<i32> = (0..out_channels).map(|_| (next() as i32) >> 12).collect();
            let m: Vec<i32> = (0..out_channels).map(|_| (1 << 30) + (next() as i32 & 0x3fff_ffff)).collect();
            let s: Vec<i8> = (0..out_channels).map(|_| -((next() % 16) as i8)).collect();
            let p = params(&w, &b, &m, &s);
            let mut y = std::vec![0i16; out_channels * sh.out_len().unwrap()];
            let (wq, bq, requant) = (p.weights(wide), I32s::new(&p.bias).unwrap(), p.requant(zp_out, relu, range));
            match wide_acc {
                false => conv1d::<i32>(&sh, wq, bq, zp_in, &requant, &x, &mut y),
                true => conv1d::<i64>(&sh, wq, bq, zp_in, &requant, &x, &mut y),
            }
            prop_assert_eq!(y, reference_conv(&sh, &w, &b, zp_in, &m, &s, zp_out, relu, range, &x, wide_acc));
        }
    }

    #[test]
    fn extreme_inputs_saturate_instead_of_wrapping() {
        // All-max weights and inputs far from the zero point: the accumulator is large and the
        // output must clamp at 127 / -128 (or the ReLU floor), never wrap.
        let n = 64;
        let w = std::vec![127i8; 2 * n];
        let x = std::vec![127i16; n];
        let p = Params::new(&w, &[0, -1_000_000_000], &[i32::MAX, i32::MAX], &[0, 0]);
        let mut y = [0i16; 2];
        let (wq, bq) = (p.weights(false), I32s::new(&p.bias).unwrap());
        dense::<i32>(wq, bq, -128, &p.requant(-5, false, INT8_RANGE), &x, &mut y);
        assert_eq!(y, [127, -128]);
        dense::<i32>(wq, bq, -128, &p.requant(-5, true, INT8_RANGE), &x, &mut y);
        assert_eq!(y, [127, -5]);
        // Codes clamp at the i16 range instead, in either accumulator.
        dense::<i32>(wq, bq, -128, &p.requant(-5, false, CODE_RANGE), &x, &mut y);
        assert_eq!(y, [i16::MAX, i16::MIN]);
        dense::<i64>(wq, bq, -128, &p.requant(-5, false, CODE_RANGE), &x, &mut y);
        assert_eq!(y, [i16::MAX, i16::MIN]);
    }
}
