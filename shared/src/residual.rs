//! Error-bounded coding of samples against a prediction of them (see `docs/bounded-mode.md`).
//!
//! Each sample's prediction is a given **base** (the decoder's reconstruction, or 0) plus a
//! closed-loop linear prediction from the residuals already rebuilt (`x′ − base`, most recent
//! first, Q12 coefficients), plus an **adaptive stage**: a normalized least-mean-squares
//! predictor of what the fixed prediction leaves, which learns within each segment what the
//! training part could not tell (a busier stretch, another sensor's noise). The sample's
//! difference from its prediction is quantized in bins of `2E′ + 1` counts, so that the
//! rebuilt sample is never more than `E′` counts from the input (`E′ = 0`: the input exactly,
//! differences wrapping in i16). The bins are rANS coded with the
//! coder of [`crate::entropy`]: the samples go in blocks (of the coder's [`ResidualSpec::block`]
//! samples), each block with the table
//! of its **class**, the class coded ahead of the block with a table of its own, so a busy
//! stretch does not pay a calm one's table. The sender takes the class that codes the block
//! in the fewest bits (by [`crate::entropy::class_cost`], so host and device choose alike); the
//! receiver reads it. A bin
//! of magnitude [`DIRECT`] or more is coded as the symbol of its octave followed by the bits
//! below its leading one ([`symbol_of`]): 55 symbols cover every bin, however wide the
//! residuals spread.
//!
//! The encoder and the decoder run the same integer arithmetic ([`residual_bins`] and
//! [`ResidualSpec::decode`]), so a sender knows exactly what a receiver rebuilds. Every segment
//! coded starts from an empty history: it decodes without the segments before it.

use crate::blob::{I16s, U16s};
use crate::entropy::{CodeTables, EntropyError, ValueReader, ValueWriter};
use crate::wire::MAX_BOUNDED_SAMPLES;
use serde::{Deserialize, Serialize};

/// Most prediction coefficients.
pub const MAX_PREDICTION_ORDER: usize = 4;
/// Fractional bits of the prediction coefficients.
pub const PREDICTION_BITS: u32 = 12;
/// Most weights of the adaptive stage.
pub const MAX_ADAPTIVE_ORDER: usize = 16;
/// Largest step shift of the adaptive stage (a step of `2^−15`).
pub const MAX_ADAPTIVE_SHIFT: u8 = 15;
/// Fractional bits of the adaptive stage's weights.
const ADAPTIVE_BITS: u32 = 14;
/// The adaptive stage's weights stay within ±16.
const WEIGHT_LIMIT: i32 = 1 << 18;
/// Most segments one call codes (a frame has at most 16, one per channel).
pub const MAX_SEGMENTS: usize = 64;

/// Which segments of a call run the adaptive stage: bit `s` for segment `s`.
pub type Adapted = u64;
/// Fewest samples per block (see [`ResidualSpec::block`]).
pub const MIN_BLOCK: u8 = 16;
/// Most samples per block.
pub const MAX_BLOCK: u8 = 64;
/// Most block classes.
pub const MAX_CLASSES: usize = 16;
/// Largest `E′`: bins of up to 65,535 counts.
pub const MAX_BOUND: u16 = i16::MAX as u16;
/// A block's level is its mean |bin| in units of 1/`LEVEL_SCALE`.
pub const LEVEL_SCALE: u32 = 16;
/// Bins of smaller magnitude are their own symbol.
pub const DIRECT: i16 = 16;
/// The octave of the smallest magnitude coded by octave: `DIRECT = 2^FIRST_OCTAVE`.
const FIRST_OCTAVE: u32 = 4;

/// The symbol of bin `q` and the raw bits that follow it, `(symbol, bits, how many)`: below
/// [`DIRECT`] in magnitude the bin itself and none; else `±(DIRECT + octave − 4)` (the sign of
/// `q`; octave = ⌊log2 |q|⌋, 4 to 15) and the `octave` bits of |q| below its leading one.
pub fn symbol_of(q: i16) -> (i16, u32, u32) {
    let magnitude = u32::from(q.unsigned_abs());
    if magnitude < DIRECT as u32 {
        return (q, 0, 0);
    }
    let octave = 31 - magnitude.leading_zeros();
    // Octaves 4 to 15: symbols 16 to 27.
    let symbol = DIRECT + (octave - FIRST_OCTAVE) as i16;
    (if q < 0 { -symbol } else { symbol }, magnitude - (1 << octave), octave)
}

/// Puts bin `q` (its symbol with table `table`, then its raw bits) in stack order.
fn put_bin(writer: &mut ValueWriter<'_, '_>, table: usize, q: i16) -> Result<(), EntropyError> {
    let (symbol, value, bits) = symbol_of(q);
    // Read back as: the symbol, the bits above the low 8, the low 8.
    if bits > 8 {
        writer.put_bits(value & 0xFF, 8)?;
        writer.put_bits(value >> 8, bits - 8)?;
    } else if bits > 0 {
        writer.put_bits(value, bits)?;
    }
    writer.put(table, symbol)
}

/// Takes a bin that [`put_bin`] put.
fn take_bin(reader: &mut ValueReader<'_, '_>, table: usize) -> Result<i16, EntropyError> {
    let symbol = reader.take(table)?;
    let size = i32::from(symbol).abs();
    if size < i32::from(DIRECT) {
        return Ok(symbol);
    }
    let octave = (size - i32::from(DIRECT)) as u32 + FIRST_OCTAVE;
    if octave > 15 {
        return Err(EntropyError::Inconsistent);
    }
    let below = match octave {
        9.. => {
            let high = reader.take_bits(octave - 8);
            (high << 8) | reader.take_bits(8)
        }
        _ => reader.take_bits(octave),
    };
    let magnitude = (1i32 << octave) + below as i32;
    // i16 holds −32768 but not +32768.
    i16::try_from(if symbol < 0 { -magnitude } else { magnitude }).map_err(|_| EntropyError::Inconsistent)
}

/// The adaptive stage: `order` weights (Q14, from 0 in each segment) predicting the fixed
/// prediction's error from its last `order` rebuilt values, each step normalized by the power
/// of those values (rounded to a power of two, so the device divides by a shift) and scaled by
/// `2^−shift`. Order 0 is no adaptive stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adaptive {
    /// At most [`MAX_ADAPTIVE_ORDER`].
    pub order: u8,
    /// At most [`MAX_ADAPTIVE_SHIFT`]: larger learns slower and steadier.
    pub shift: u8,
}

/// How residuals are bounded, predicted and coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidualSpec<'a> {
    /// `E′` (at most [`MAX_BOUND`]): no rebuilt count differs from the input by more.
    pub max_error: u16,
    /// Closed-loop prediction coefficients, Q12, for the last rebuilt residuals (most recent
    /// first); at most [`MAX_PREDICTION_ORDER`], none for no prediction.
    #[serde(borrow)]
    pub prediction: I16s<'a>,
    /// The adaptive stage after the fixed prediction.
    pub adaptive: Adaptive,
    /// Samples per block ([`MIN_BLOCK`] to [`MAX_BLOCK`]): each segment is cut into blocks
    /// of this many (its last may be shorter), each coded in its own class, the class sent
    /// ahead of it. Shorter blocks follow the residuals' level closely and pay more class
    /// symbols: the fit chooses.
    pub block: u8,
    /// Ascending: there are `class_bounds.len() + 1` classes. The fit starts each block in the
    /// class of its level ([`block_class`]); the sender takes the cheapest class, so a stream
    /// depends only on their number.
    #[serde(borrow)]
    pub class_bounds: U16s<'a>,
    /// Table 0 codes the blocks' classes, table `1 + c` the bins' symbols ([`symbol_of`]) in
    /// class `c` (no lags).
    #[serde(borrow)]
    pub tables: CodeTables<'a>,
}

/// Why residuals could not be coded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResidualError {
    /// The spec breaks a rule (the message says which).
    Invalid(&'static str),
    /// The base and the samples differ in length, the segment is empty, there are more
    /// than [`MAX_SEGMENTS`] segments, or the spare room for a segment's bins is short.
    Length,
    /// The coder's output does not fit, or a payload is not what the encoder writes.
    Entropy(EntropyError),
}

impl core::fmt::Display for ResidualError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResidualError::Invalid(why) => write!(f, "residual spec: {why}"),
            ResidualError::Length => f.write_str(
                "the base and the samples differ in length, the segment is empty, there are over 64 segments, or the room for a segment's bins is short",
            ),
            ResidualError::Entropy(e) => write!(f, "residuals: {e}"),
        }
    }
}

impl core::error::Error for ResidualError {}

impl From<EntropyError> for ResidualError {
    fn from(e: EntropyError) -> Self {
        ResidualError::Entropy(e)
    }
}

/// The closed-loop quantizer alone (what the tables are fitted to): `E′` and the prediction.
#[derive(Clone, Copy, Debug)]
pub struct Quantizer<'a> {
    pub max_error: u16,
    pub prediction: I16s<'a>,
    pub adaptive: Adaptive,
}

impl Quantizer<'_> {
    pub fn check(&self) -> Result<(), ResidualError> {
        if self.max_error > MAX_BOUND {
            return Err(ResidualError::Invalid("the bound is at most 32767 counts"));
        }
        if self.prediction.len() > MAX_PREDICTION_ORDER {
            return Err(ResidualError::Invalid("at most 4 prediction coefficients"));
        }
        if usize::from(self.adaptive.order) > MAX_ADAPTIVE_ORDER {
            return Err(ResidualError::Invalid("at most 16 adaptive weights"));
        }
        if self.adaptive.shift > MAX_ADAPTIVE_SHIFT {
            return Err(ResidualError::Invalid("the adaptive step shift is at most 15"));
        }
        Ok(())
    }

    /// The sample rebuilt from bin `q` against prediction `p`.
    fn rebuild(&self, q: i16, p: i16) -> i16 {
        if self.max_error == 0 {
            return p.wrapping_add(q);
        }
        let width = 2 * i32::from(self.max_error) + 1;
        // Within E′ of an i16 input: clamping to i16 moves it towards the input.
        (i32::from(p) + i32::from(q) * width).clamp(i16::MIN.into(), i16::MAX.into()) as i16
    }

    /// The bin of `x` against prediction `p`: the rebuilt sample is within `E′` of `x`.
    fn bin(&self, x: i16, p: i16) -> i16 {
        if self.max_error == 0 {
            return x.wrapping_sub(p);
        }
        let e = i32::from(self.max_error);
        let d = i32::from(x) - i32::from(p);
        // |d| ≤ 65,535 and the width is at least 3: the bin fits i16.
        (d.signum() * ((d.abs() + e) / (2 * e + 1))) as i16
    }
}

fn clamp16(v: i64) -> i32 {
    v.clamp(i16::MIN.into(), i16::MAX.into()) as i32
}

/// A segment's predictor state (both ends run it on the samples a receiver rebuilds): the
/// fixed prediction's history and the adaptive stage's weights and history. Every segment starts
/// from [`Predictor::new`].
struct Predictor<'q, 'a> {
    quantizer: &'q Quantizer<'a>,
    adapting: bool,
    /// Rebuilt residuals `x′ − base`, most recent first.
    history: [i32; MAX_PREDICTION_ORDER],
    /// The adaptive stage's weights, Q14.
    weights: [i32; MAX_ADAPTIVE_ORDER],
    /// The fixed prediction's rebuilt errors (within i16), twice over: the adaptive stage's
    /// `n` of them, most recent first, are `errors[at..at + n]` (each error is written at `at`
    /// and `at + n`, so the window moves by one index instead of shifting `n` values: the
    /// shift was a `memmove` call per sample, a tenth of a lossless frame's instructions).
    errors: [i32; 2 * MAX_ADAPTIVE_ORDER],
    /// Where the errors' window starts.
    at: usize,
    /// `1 + Σ g²` over the errors the adaptive stage uses.
    power: u64,
    /// The last prediction's two parts, fixed and adaptive, for the update.
    fixed: i64,
    adapted: i64,
}

impl<'q, 'a> Predictor<'q, 'a> {
    /// A segment's predictor, its adaptive stage running or not (see [`segment_bins`]).
    fn new(quantizer: &'q Quantizer<'a>, adapting: bool) -> Self {
        Predictor {
            adapting,
            quantizer,
            history: [0; MAX_PREDICTION_ORDER],
            weights: [0; MAX_ADAPTIVE_ORDER],
            errors: [0; 2 * MAX_ADAPTIVE_ORDER],
            at: 0,
            power: 1,
            fixed: 0,
            adapted: 0,
        }
    }

    fn order(&self) -> usize {
        if self.adapting {
            usize::from(self.quantizer.adaptive.order)
        } else {
            0
        }
    }

    /// The prediction of the next sample: `base`, plus the linear prediction from the history,
    /// plus the adaptive stage's, within i16.
    fn predict(&mut self, base: i16) -> i16 {
        let acc: i64 =
            self.quantizer.prediction.iter().zip(&self.history).map(|(c, &h)| i64::from(c) * i64::from(h)).sum();
        // |acc| < 4 · 2^15 · 2^17 and |adaptive| < 16 · 2^18 · 2^15: both fit i64 with room.
        self.fixed = (acc + (1 << (PREDICTION_BITS - 1))) >> PREDICTION_BITS;
        let n = self.order();
        let adaptive: i64 = self.weights[..n]
            .iter()
            .zip(&self.errors[self.at..self.at + n])
            .map(|(&w, &g)| i64::from(w) * i64::from(g))
            .sum();
        self.adapted = (adaptive + (1 << (ADAPTIVE_BITS - 1))) >> ADAPTIVE_BITS;
        (i64::from(base) + self.fixed + self.adapted).clamp(i16::MIN.into(), i16::MAX.into()) as i16
    }

    /// Takes in the sample `x` rebuilt against the last prediction: the adaptive stage learns
    /// from its error (with the values the prediction used), then both histories move on.
    fn push(&mut self, base: i16, x: i16) {
        let residual = i32::from(x) - i32::from(base);
        let n = self.order();
        if n > 0 {
            let errors = &self.errors[self.at..self.at + n];
            // k = ⌊log2 S⌋ of the power S = 1 + Σ g² (at most 16 · 2^30 + 1).
            let k = 63 - self.power.leading_zeros() as i32;
            let scale = ADAPTIVE_BITS as i32 - k - i32::from(self.quantizer.adaptive.shift);
            let error = i64::from(residual) - self.fixed;
            let u = clamp16(error - self.adapted);
            // Every g² < S < 2^(k+1), so |u · g · 2^scale| < 2^15 · 2^((k+1)/2) · 2^(14−k) ≤
            // 2^29 once some g ≠ 0 (k ≥ 1), and the steps and weights fit i32; shifted right
            // 31 or more, a product under 2^31 in magnitude is what a shift of 31 leaves.
            if scale >= 0 {
                for (w, &g) in self.weights[..n].iter_mut().zip(errors) {
                    *w = (*w + ((u * g) << scale)).clamp(-WEIGHT_LIMIT, WEIGHT_LIMIT);
                }
            } else {
                let down = (-scale).min(31);
                for (w, &g) in self.weights[..n].iter_mut().zip(errors) {
                    *w = (*w + ((u * g) >> down)).clamp(-WEIGHT_LIMIT, WEIGHT_LIMIT);
                }
            }
            let (leaving, entering) = (errors[n - 1], clamp16(error));
            self.power = self.power - (leaving * leaving) as u64 + (entering * entering) as u64;
            self.at = if self.at == 0 { n } else { self.at } - 1;
            (self.errors[self.at], self.errors[self.at + n]) = (entering, entering);
        }
        self.history.copy_within(0..MAX_PREDICTION_ORDER - 1, 1);
        self.history[0] = residual;
    }
}

/// The prediction base of sample `t`: `base[t]`, or 0 without a base.
fn base_at(base: Option<&[i16]>, t: usize) -> i16 {
    base.map_or(0, |b| b[t])
}

/// Checks that `base` (if any) covers `n` samples, that `segment` is not 0 and that there are
/// at most [`MAX_SEGMENTS`] segments.
fn check_lengths(base: Option<&[i16]>, n: usize, segment: usize) -> Result<(), ResidualError> {
    if base.is_some_and(|b| b.len() != n) || segment == 0 || n.div_ceil(segment) > MAX_SEGMENTS {
        return Err(ResidualError::Length);
    }
    Ok(())
}

/// The closed loop over one segment's samples `chunk` (from an empty history; `base` the
/// segment's own, or none), the adaptive stage running or not: returns the sum of the bins'
/// magnitudes, and writes the bins to `aside` (2 bytes each, little-endian, at least as many
/// as the samples) when given, else over the samples.
// Not inlined: one copy of the loop serves both calls per segment (see `segment_bins`).
#[inline(never)]
fn segment_pass(
    quantizer: &Quantizer<'_>,
    base: Option<&[i16]>,
    chunk: &mut [i16],
    adapting: bool,
    mut aside: Option<&mut [u8]>,
) -> u64 {
    let mut predictor = Predictor::new(quantizer, adapting);
    let mut magnitude = 0u64;
    for (i, v) in chunk.iter_mut().enumerate() {
        let b = base_at(base, i);
        let p = predictor.predict(b);
        let q = quantizer.bin(*v, p);
        magnitude += u64::from(q.unsigned_abs());
        predictor.push(b, quantizer.rebuild(q, p));
        match aside.as_deref_mut() {
            Some(bins) => bins[2 * i..2 * i + 2].copy_from_slice(&q.to_le_bytes()),
            None => *v = q,
        }
    }
    magnitude
}

/// Replaces one segment's samples `chunk` by their bins against `base` (the segment's own, or
/// none), from an empty history. With an adaptive stage, the segment runs it only if that
/// makes its bins smaller in sum (a stretch it does not suit, or a bound that leaves it
/// little to learn from, then costs what it would without one): returns whether it does.
///
/// `spare` (2 bytes per sample; a frame's output buffer before its payload is coded into it)
/// holds the adaptive stage's bins while the samples are binned without it, so each way runs
/// once (running the chosen one a third time to write its bins was a third of a lossless
/// frame's instructions on the device: see the README).
pub fn segment_bins(
    quantizer: &Quantizer<'_>,
    base: Option<&[i16]>,
    chunk: &mut [i16],
    spare: &mut [u8],
) -> Result<bool, ResidualError> {
    if quantizer.adaptive.order == 0 {
        segment_pass(quantizer, base, chunk, false, None);
        return Ok(false);
    }
    let spare = spare.get_mut(..2 * chunk.len()).ok_or(ResidualError::Length)?;
    let with = segment_pass(quantizer, base, chunk, true, Some(&mut *spare));
    let without = segment_pass(quantizer, base, chunk, false, None);
    let adapting = with < without;
    if adapting {
        for (v, q) in chunk.iter_mut().zip(spare.chunks_exact(2)) {
            *v = i16::from_le_bytes([q[0], q[1]]);
        }
    }
    Ok(adapting)
}

/// Replaces `values` (samples) by their bins against `base` (none: 0), in segments of
/// `segment` samples (the last may be shorter; at most [`MAX_SEGMENTS`]), each from an empty
/// history ([`segment_bins`], `spare` as there: 2 bytes per sample of a segment): what
/// [`ResidualSpec::encode`] codes. Returns which segments run the adaptive stage.
pub fn residual_bins(
    quantizer: Quantizer<'_>,
    base: Option<&[i16]>,
    values: &mut [i16],
    segment: usize,
    spare: &mut [u8],
) -> Result<Adapted, ResidualError> {
    quantizer.check()?;
    check_lengths(base, values.len(), segment)?;
    let mut adapted: Adapted = 0;
    for (s, chunk) in values.chunks_mut(segment).enumerate() {
        let start = s * segment;
        let base = base.map(|b| &b[start..start + chunk.len()]);
        adapted |= Adapted::from(segment_bins(&quantizer, base, chunk, spare)?) << s;
    }
    Ok(adapted)
}

/// Symbols a bin may be ([`symbol_of`]): −27 to 27.
const SYMBOLS: usize = 2 * (DIRECT as usize + 15 - FIRST_OCTAVE as usize) + 1;

/// Most blocks [`ResidualSpec::code_bins`] codes in a call: a frame of at most
/// [`MAX_BOUNDED_SAMPLES`] samples in at most [`MAX_SEGMENTS`] segments, each cut on its own.
pub const MAX_BLOCKS: usize = MAX_BOUNDED_SAMPLES / MIN_BLOCK as usize + MAX_SEGMENTS;

/// The blocks of `block` samples of `bins` coded in segments of `segment`, in order.
fn blocks(bins: &[i16], segment: usize, block: usize) -> impl DoubleEndedIterator<Item = &[i16]> {
    bins.chunks(segment).flat_map(move |s| s.chunks(block))
}

/// A block's level: [`LEVEL_SCALE`] × its mean |bin|, rounded down.
pub fn block_level(bins: &[i16]) -> u32 {
    // At most MAX_BLOCK bins of at most 32,768: the sum fits.
    let sum: u32 = bins.iter().map(|q| u32::from(q.unsigned_abs())).sum();
    sum * LEVEL_SCALE / bins.len().max(1) as u32
}

/// The class a block's level puts it in under ascending `class_bounds` (see
/// [`ResidualSpec::class_bounds`]): the first bound its level does not exceed, or one past the
/// last. Where a fit starts each block; the sender takes the cheapest class instead.
pub fn block_class(bins: &[i16], class_bounds: impl IntoIterator<Item = u16>) -> usize {
    let level = block_level(bins);
    let mut class = 0;
    for bound in class_bounds {
        if level <= u32::from(bound) {
            break;
        }
        class += 1;
    }
    class
}

impl<'a> ResidualSpec<'a> {
    pub fn quantizer(&self) -> Quantizer<'a> {
        Quantizer { max_error: self.max_error, prediction: self.prediction, adaptive: self.adaptive }
    }

    pub fn classes(&self) -> usize {
        self.class_bounds.len() + 1
    }

    /// Checks every rule of the fields' documentation.
    pub fn validate(&self) -> Result<(), ResidualError> {
        self.quantizer().check()?;
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&self.block) {
            return Err(ResidualError::Invalid("a block holds 16 to 64 samples"));
        }
        if self.classes() > MAX_CLASSES {
            return Err(ResidualError::Invalid("at most 16 block classes"));
        }
        let bounds = &self.class_bounds;
        if (1..bounds.len()).any(|i| bounds.get(i) <= bounds.get(i - 1)) {
            return Err(ResidualError::Invalid("class bounds must rise"));
        }
        if !self.tables.lags.is_empty() {
            return Err(ResidualError::Invalid("residual tables are not predicted"));
        }
        self.tables.validate(self.classes() + 1).map_err(ResidualError::Invalid)
    }

    /// Codes `values` (samples, replaced by their bins) against `base` (none: 0), in segments
    /// of `segment` samples each from an empty history (the last may be shorter), into `out`
    /// (valid spec only: see [`Self::validate`]): [`residual_bins`], with `out` as its spare
    /// room (so at least 2 bytes per sample of a segment), then [`Self::code_bins`]. Returns
    /// the bytes written.
    pub fn encode(
        &self,
        base: Option<&[i16]>,
        values: &mut [i16],
        segment: usize,
        out: &mut [u8],
    ) -> Result<usize, ResidualError> {
        let adapted = residual_bins(self.quantizer(), base, values, segment, out)?;
        self.code_bins(values, adapted, segment, None, out)
    }

    /// Codes the bins [`residual_bins`] made, and which segments ran the adaptive stage, into
    /// `out`, behind a frame's latent `codes` coded with their `tables` when there are any (a
    /// stream whose residuals are taken against the integer decoder's rebuild: one rANS stream
    /// holds both, the codes first in reading order). Returns the bytes written; at most
    /// [`MAX_BLOCKS`] blocks ([`ResidualError::Length`] for more).
    pub fn code_bins(
        &self,
        bins: &[i16],
        adapted: Adapted,
        segment: usize,
        latent: Option<(CodeTables<'_>, &[i16])>,
        out: &mut [u8],
    ) -> Result<usize, ResidualError> {
        check_lengths(None, bins.len(), segment)?;
        let mut writer = ValueWriter::new(self.tables, out);
        let classes = self.block_classes(&writer, bins, segment)?;
        let block_len = usize::from(self.block);
        let mut b = blocks(bins, segment, block_len).count();
        // Last to first, so that the decoder reads each segment's choice, then each block's
        // class, then its bins. Blocks do not cross segments.
        for (s, chunk) in bins.chunks(segment).enumerate().rev() {
            for block in chunk.chunks(block_len).rev() {
                b -= 1;
                let class = usize::from(classes[b]);
                for &q in block.iter().rev() {
                    put_bin(&mut writer, 1 + class, q)?;
                }
                // At most 16 classes.
                writer.put(0, class as i16)?;
            }
            if self.adaptive.order > 0 {
                writer.put_bits(((adapted >> s) & 1) as u32, 1)?;
            }
        }
        let Some((tables, codes)) = latent else { return Ok(writer.finish()?) };
        let mut writer = writer.with_tables(tables);
        tables.put_codes(&mut writer, codes)?;
        Ok(writer.finish()?)
    }

    /// Each block's class (in [`blocks`] order): the one whose table codes its bins' symbols
    /// (their raw bits cost the same in every class) and the class itself in the fewest bits,
    /// by [`crate::entropy::class_cost`] (an escaped symbol 8 bits more per byte of its
    /// distance), the lowest on a tie. Class by class, each class's prices of the bins'
    /// symbols looked up once: pricing every bin in every class from the tables made a
    /// lossless frame 2.4 times dearer on the device, and a table of every class's prices
    /// took 3 KB more stack.
    #[inline(never)]
    fn block_classes(
        &self,
        writer: &ValueWriter<'_, '_>,
        bins: &[i16],
        segment: usize,
    ) -> Result<[u8; MAX_BLOCKS], ResidualError> {
        let (mut classes, mut costs) = ([0u8; MAX_BLOCKS], [u16::MAX; MAX_BLOCKS]);
        for class in 0..self.classes() {
            let table = writer.pricing(1 + class);
            let mut prices = [0u16; SYMBOLS];
            for (i, price) in prices.iter_mut().enumerate() {
                // At most 192 + 16 · 24 sixteenths: within u16.
                *price = table.cost(i as i16 - SYMBOLS as i16 / 2) as u16;
            }
            let class_price = writer.pricing(0).cost(class as i16);
            for (b, block) in blocks(bins, segment, usize::from(self.block)).enumerate() {
                let cost = costs.get_mut(b).ok_or(ResidualError::Length)?;
                // Symbols lie within ±27: an index below SYMBOLS; at most 65 prices: within u16.
                let sum = block.iter().fold(class_price, |sum, &q| {
                    sum + u32::from(prices[(symbol_of(q).0 + SYMBOLS as i16 / 2) as usize])
                });
                if sum < u32::from(*cost) {
                    (*cost, classes[b]) = (sum as u16, class as u8);
                }
            }
        }
        Ok(classes)
    }

    /// Rebuilds `out.len()` samples from `payload` (what [`Self::encode`] wrote with the same
    /// `base` and `segment`; valid spec only).
    pub fn decode(
        &self,
        payload: &[u8],
        base: Option<&[i16]>,
        segment: usize,
        out: &mut [i16],
    ) -> Result<(), ResidualError> {
        check_lengths(base, out.len(), segment)?;
        let adapted = self.read_bins(payload, None, segment, out)?;
        self.rebuild(base, out, segment, adapted)
    }

    /// Reads what [`Self::code_bins`] wrote: the latent codes into `latent`'s buffer (its
    /// length the number of codes) when given, the bins into `out`; returns which segments
    /// ran the adaptive stage. [`Self::rebuild`] then makes the samples of the bins.
    pub fn read_bins(
        &self,
        payload: &[u8],
        latent: Option<(CodeTables<'_>, &mut [i16])>,
        segment: usize,
        out: &mut [i16],
    ) -> Result<Adapted, ResidualError> {
        check_lengths(None, out.len(), segment)?;
        let mut reader = match latent {
            Some((tables, codes)) => {
                let mut reader = ValueReader::new(tables, payload)?;
                tables.take_codes(&mut reader, codes)?;
                reader.with_tables(self.tables)
            }
            None => ValueReader::new(self.tables, payload)?,
        };
        let mut adapted: Adapted = 0;
        for (s, chunk) in out.chunks_mut(segment).enumerate() {
            if self.adaptive.order > 0 {
                adapted |= Adapted::from(reader.take_bits(1)) << s;
            }
            for block in chunk.chunks_mut(usize::from(self.block)) {
                let class = usize::try_from(reader.take(0)?)
                    .ok()
                    .filter(|&c| c < self.classes())
                    .ok_or(ResidualError::Entropy(EntropyError::Inconsistent))?;
                for q in block.iter_mut() {
                    *q = take_bin(&mut reader, 1 + class)?;
                }
            }
        }
        reader.finish()?;
        Ok(adapted)
    }

    /// Replaces `values` (bins, as [`residual_bins`] made them, with the segments it says ran
    /// the adaptive stage) by the samples a receiver rebuilds from them: within `max_error` of
    /// the samples they were made from.
    pub fn rebuild(
        &self,
        base: Option<&[i16]>,
        values: &mut [i16],
        segment: usize,
        adapted: Adapted,
    ) -> Result<(), ResidualError> {
        check_lengths(base, values.len(), segment)?;
        let quantizer = self.quantizer();
        for (s, chunk) in values.chunks_mut(segment).enumerate() {
            let mut predictor = Predictor::new(&quantizer, (adapted >> s) & 1 == 1);
            for (i, v) in chunk.iter_mut().enumerate() {
                let b = base_at(base, s * segment + i);
                let p = predictor.predict(b);
                *v = quantizer.rebuild(*v, p);
                predictor.push(b, *v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use crate::entropy::tests::OwnedTables;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A table of `n` codes from `lo`, peaked at its middle.
    fn peaked(lo: i16, n: usize) -> (i16, Vec<u16>) {
        let mut f: Vec<u16> = (0..n).map(|j| 1 + (64 / (1 + j.abs_diff(n / 2))) as u16).collect();
        let rest = crate::entropy::TOTAL as u16 - f.iter().sum::<u16>();
        f[n / 2] += rest;
        (lo, f)
    }

    /// A residual spec's arrays, owned.
    pub(crate) struct Owned {
        prediction: Vec<u8>,
        adaptive: Adaptive,
        block: u8,
        bounds: Vec<u8>,
        tables: OwnedTables,
    }

    impl Owned {
        fn new(prediction: &[i16], bounds: &[u16], spans: &[(i16, usize)]) -> Owned {
            let classes = bounds.len() + 1;
            let mut tables = std::vec![peaked(-1, classes + 2)];
            tables.extend(spans.iter().cycle().take(classes).map(|&(lo, n)| peaked(lo, n)));
            Owned::with_tables(prediction, bounds, &tables)
        }

        /// The classes' table, then one per class, as `(lowest code, frequencies)`.
        pub(crate) fn with_tables(prediction: &[i16], bounds: &[u16], tables: &[(i16, Vec<u16>)]) -> Owned {
            Owned {
                prediction: prediction.iter().flat_map(|c| c.to_le_bytes()).collect(),
                adaptive: Adaptive::default(),
                block: 32,
                bounds: bounds.iter().flat_map(|c| c.to_le_bytes()).collect(),
                tables: OwnedTables::new(tables),
            }
        }

        /// The same with an adaptive stage.
        pub(crate) fn adapting(mut self, order: u8, shift: u8) -> Owned {
            self.adaptive = Adaptive { order, shift };
            self
        }

        /// The same with blocks of `block` samples.
        pub(crate) fn in_blocks_of(mut self, block: u8) -> Owned {
            self.block = block;
            self
        }

        pub(crate) fn spec(&self, max_error: u16) -> ResidualSpec<'_> {
            ResidualSpec {
                max_error,
                prediction: I16s::new(&self.prediction).unwrap(),
                adaptive: self.adaptive,
                block: self.block,
                class_bounds: U16s::new(&self.bounds).unwrap(),
                tables: self.tables.tables(),
            }
        }
    }

    /// The base a test passes: none for all zeros (what a stream without latent codes uses).
    fn base_of(base: &[i16]) -> Option<&[i16]> {
        base.iter().any(|&b| b != 0).then_some(base)
    }

    /// Signals with what breaks coders: steps, spikes, constant runs, full scale, clipping.
    fn signal() -> impl Strategy<Value = Vec<i16>> {
        let piece = prop_oneof![
            (any::<i16>(), 1usize..40).prop_map(|(v, n)| std::vec![v; n]),
            (any::<i16>(), -300i16..300, 1usize..60)
                .prop_map(|(v, step, n)| (0..n).map(|i| v.saturating_add(step.saturating_mul(i as i16))).collect()),
            prop::collection::vec(any::<i16>(), 1..20),
            (1usize..20).prop_map(|n| (0..n).map(|i| [i16::MAX, i16::MIN][i % 2]).collect()),
            (-50i16..50, 1usize..50).prop_map(|(v, n)| (0..n).map(|i| v + (i as i16 * 7) % 13 - 6).collect()),
        ];
        prop::collection::vec(piece, 1..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// The bound holds on every sample whatever the signal, base, prediction and tables;
        /// E′ = 0 gives the input back; the receiver rebuilds what the sender says it will.
        #[test]
        fn every_sample_is_within_the_bound(
            samples in signal(),
            base_kind in 0u8..3,
            max_error in prop_oneof![Just(0u16), Just(1), Just(2), 3u16..200, Just(MAX_BOUND)],
            prediction in prop::collection::vec(-9000i16..9000, 0..=MAX_PREDICTION_ORDER),
            adaptive in (0..=MAX_ADAPTIVE_ORDER as u8, 0..=MAX_ADAPTIVE_SHIFT),
            bounds in prop::collection::btree_set(0u16..400, 0..4),
            spans in prop::collection::vec((-40i16..10, 3usize..60), 1..4),
            segment in prop_oneof![Just(usize::MAX), 1usize..100],
            block in prop_oneof![Just(MIN_BLOCK), Just(32), Just(MAX_BLOCK), MIN_BLOCK..=MAX_BLOCK],
        ) {
            let n = samples.len();
            let segment = segment.max(n.div_ceil(MAX_SEGMENTS));
            let base: Vec<i16> = match base_kind {
                0 => std::vec![0; n],
                1 => samples.iter().map(|v| v.saturating_add(37)).collect(),
                _ => samples.iter().rev().copied().collect(),
            };
            let bounds: Vec<u16> = bounds.into_iter().collect();
            let owned = Owned::new(&prediction, &bounds, &spans).adapting(adaptive.0, adaptive.1).in_blocks_of(block);
            let spec = owned.spec(max_error);
            prop_assert_eq!(spec.validate(), Ok(()));
            let mut bins = samples.clone();
            let mut out = std::vec![0u8; 8 * n + 64];
            let len = spec.encode(base_of(&base), &mut bins, segment, &mut out).unwrap();
            let mut rebuilt = std::vec![0i16; n];
            spec.decode(&out[..len], base_of(&base), segment, &mut rebuilt).unwrap();
            for (x, r) in samples.iter().zip(&rebuilt) {
                prop_assert!(x.abs_diff(*r) <= max_error, "{} rebuilt as {}, bound {}", x, r, max_error);
            }
            if max_error == 0 {
                prop_assert_eq!(&rebuilt, &samples);
            }
        }

        /// A segment's bins with the adaptive stage never sum to more than without it.
        #[test]
        fn a_segment_adapts_only_when_that_makes_its_bins_smaller(
            samples in signal(),
            max_error in prop_oneof![Just(0u16), 1u16..100],
            prediction in prop::collection::vec(-9000i16..9000, 0..=MAX_PREDICTION_ORDER),
            order in 1..=MAX_ADAPTIVE_ORDER as u8,
            shift in 0..=MAX_ADAPTIVE_SHIFT,
        ) {
            let fixed = Owned::new(&prediction, &[], &[(-28, 57)]);
            let adapting = Owned::new(&prediction, &[], &[(-28, 57)]).adapting(order, shift);
            let sum = |owned: &Owned| {
                let mut bins = samples.clone();
                let mut spare = std::vec![0u8; 2 * bins.len()];
                let adapted = segment_bins(&owned.spec(max_error).quantizer(), None, &mut bins, &mut spare).unwrap();
                (adapted, bins.iter().map(|q| u64::from(q.unsigned_abs())).sum::<u64>())
            };
            let ((never, without), (adapted, with)) = (sum(&fixed), sum(&adapting));
            prop_assert!(!never);
            prop_assert!(with < without || (!adapted && with == without), "{} against {}", with, without);
        }

        /// Any bytes: the decoder answers, never panics.
        #[test]
        fn arbitrary_payloads_decode_or_are_refused(payload in prop::collection::vec(any::<u8>(), 0..80), n in 0usize..100) {
            let owned = Owned::new(&[4096, -1024], &[8, 40], &[(-8, 17)]);
            let spec = owned.spec(2);
            let mut out = std::vec![0i16; n];
            let _ = spec.decode(&payload, None, 37, &mut out);
        }
    }

    /// Each block takes the class whose table codes it in the fewest bits: a calm stretch the
    /// narrow table (which makes ±1 likely), a busy one the wide table, whatever their levels.
    #[test]
    fn blocks_take_their_cheapest_class() {
        let narrow = (-2, std::vec![16, 2000, 64, 2000, 16]);
        let owned = Owned::with_tables(&[4096], &[0], &[peaked(-1, 4), narrow, peaked(-100, 201)]);
        let spec = owned.spec(0);
        let calm: Vec<i16> = (0..64).map(|i| (i % 2) as i16).collect();
        let busy: Vec<i16> = (0..64).map(|i| ((i * 7919) % 2001) as i16 - 1000).collect();
        let (mut out, mut scratch) = ([0u8; 512], [0u8; 4]);
        let mut class_of =
            |bins: &[i16]| spec.block_classes(&ValueWriter::new(spec.tables, &mut scratch), bins, 32).unwrap()[0];
        let mut bins = calm.clone();
        let calm_bytes = spec.encode(None, &mut bins, 64, &mut out).unwrap();
        // Level ⌊16 · 31 / 32⌋ = 15, above the bound 0: the level's class would be 1.
        assert_eq!(block_level(&bins[..32]), 15);
        assert_eq!(class_of(&bins[..32]), 0);
        let mut bins = busy.clone();
        let busy_bytes = spec.encode(None, &mut bins, 64, &mut out).unwrap();
        assert_eq!(class_of(&bins[..32]), 1);
        assert!(calm_bytes * 8 < 2 * 64 && busy_bytes > 4 * calm_bytes, "{calm_bytes} and {busy_bytes} bytes");
    }

    /// A call of more blocks than a frame holds is refused, not cut short.
    #[test]
    fn more_blocks_than_a_frame_holds_are_refused() {
        let owned = Owned::new(&[], &[], &[(-28, 57)]).in_blocks_of(MIN_BLOCK);
        let spec = owned.spec(0);
        // 64 segments of 17 samples: 128 blocks of at most 16, as many as a frame holds; of
        // 33: 192.
        let bins = std::vec![1i16; 64 * 33];
        let mut out = std::vec![0u8; 8 * bins.len()];
        assert!(spec.code_bins(&bins[..64 * 17], 0, 17, None, &mut out).is_ok());
        assert_eq!(spec.code_bins(&bins, 0, 33, None, &mut out), Err(ResidualError::Length));
    }

    /// Every bin travels, the ends of the i16 range and both sides of each octave included.
    #[test]
    fn bins_of_every_size_round_trip() {
        let owned = Owned::new(&[], &[], &[(-28, 57)]);
        let spec = owned.spec(0);
        let mut edges: Vec<i16> = std::vec![i16::MIN, i16::MIN + 1, i16::MAX, 0, 15, -15, 16, -16];
        edges.extend((4..15).flat_map(|o| [(1i16 << o) - 1, 1 << o, -(1 << o), 1 - (1 << o)]));
        let mut out = [0u8; 1024];
        let mut writer = ValueWriter::new(spec.tables, &mut out);
        for &q in edges.iter().rev() {
            put_bin(&mut writer, 1, q).unwrap();
        }
        let n = writer.finish().unwrap();
        let mut reader = ValueReader::new(spec.tables, &out[..n]).unwrap();
        for &q in &edges {
            assert_eq!(take_bin(&mut reader, 1), Ok(q));
        }
        assert_eq!(reader.finish(), Ok(()));
        assert_eq!(symbol_of(-32768), (-27, 0, 15));
        assert_eq!(symbol_of(300), (20, 300 - 256, 8));
    }

    /// What the fixed prediction misses, the adaptive stage learns within the segment: a
    /// sine the spec knows nothing of codes in a quarter fewer bytes with it, lossless or bounded.
    #[test]
    fn the_adaptive_stage_learns_what_the_fixed_prediction_misses() {
        let sine: Vec<i16> =
            (0..1024).map(|t| (3000.0 * (t as f64 * 0.07).sin() + 40.0 * (t as f64 * 1.3).sin()) as i16).collect();
        for max_error in [0, 3] {
            let mut out = std::vec![0u8; 4096];
            let mut sizes = std::vec![];
            for order in [0, 8] {
                let owned = Owned::new(&[], &[4, 64, 400], &[(-28, 57)]).adapting(order, 4);
                let spec = owned.spec(max_error);
                let mut bins = sine.clone();
                let n = spec.encode(None, &mut bins, 1024, &mut out).unwrap();
                let mut back = std::vec![0i16; 1024];
                spec.decode(&out[..n], None, 1024, &mut back).unwrap();
                assert!(sine.iter().zip(&back).all(|(x, r)| x.abs_diff(*r) <= max_error));
                sizes.push(n);
            }
            assert!(4 * sizes[1] < 3 * sizes[0], "E′ = {max_error}: {} bytes adapting, {} not", sizes[1], sizes[0]);
        }
    }

    #[test]
    fn invalid_specs_are_refused() {
        let owned = Owned::new(&[1, 2, 3, 4, 5], &[3], &[(-2, 5)]);
        assert_eq!(owned.spec(1).validate(), Err(ResidualError::Invalid("at most 4 prediction coefficients")));
        let owned = Owned::new(&[], &[], &[(-2, 5)]).adapting(17, 0);
        assert_eq!(owned.spec(1).validate(), Err(ResidualError::Invalid("at most 16 adaptive weights")));
        let owned = Owned::new(&[], &[], &[(-2, 5)]).adapting(1, 16);
        assert_eq!(owned.spec(1).validate(), Err(ResidualError::Invalid("the adaptive step shift is at most 15")));
        let owned = Owned::new(&[], &[9, 3], &[(-2, 5)]);
        assert_eq!(owned.spec(1).validate(), Err(ResidualError::Invalid("class bounds must rise")));
        for block in [0, MIN_BLOCK - 1, MAX_BLOCK + 1] {
            let owned = Owned::new(&[], &[], &[(-2, 5)]).in_blocks_of(block);
            assert_eq!(owned.spec(1).validate(), Err(ResidualError::Invalid("a block holds 16 to 64 samples")));
        }
        let owned = Owned::new(&[], &[], &[(-2, 5)]);
        assert_eq!(
            owned.spec(MAX_BOUND + 1).validate(),
            Err(ResidualError::Invalid("the bound is at most 32767 counts"))
        );
        let mut more = Owned::new(&[], &[], &[(-2, 5)]);
        more.bounds = 7u16.to_le_bytes().to_vec();
        assert!(matches!(more.spec(0).validate(), Err(ResidualError::Invalid(_))), "two classes, one table");
        let mut out = [0u8; 8];
        let spec = Owned::new(&[], &[], &[(-2, 5)]);
        let e = spec.spec(0).encode(Some(&[0]), &mut [1, 2], 2, &mut out);
        assert_eq!(e, Err(ResidualError::Length));
        assert_eq!(spec.spec(0).encode(None, &mut [1, 2], 0, &mut out), Err(ResidualError::Length));
        // With an adaptive stage, a segment's bins need 2 bytes each of room aside.
        let adapting = Owned::new(&[], &[], &[(-2, 5)]).adapting(2, 4);
        let quantizer = adapting.spec(0).quantizer();
        let mut samples = [1i16, 2, 3, 4];
        assert_eq!(residual_bins(quantizer, None, &mut samples, 4, &mut out[..7]), Err(ResidualError::Length));
        assert_eq!(residual_bins(quantizer, None, &mut samples, 2, &mut out[..4]).map(|_| ()), Ok(()));
    }
}
